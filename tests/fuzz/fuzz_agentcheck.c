/*
 * libFuzzer harness for the agent-check reply (agent/agentcheck.c):
 * agentcheck_format_reply() on a fuzzed request line against a small
 * hand-built node table.
 *
 * Input: a header that builds the table, then the request line.
 *   byte 0   number of nodes (1-4)
 *   byte 1   default node
 *   byte 2   write leader (an index, or none)
 *   per node: state, weight (mod 101), flags, then two length-prefixed
 *            strings: the status name (if flags bit 0, else the config
 *            name) and the reason
 *   the rest the request line, as the server hands it over (without
 *            its '\n'; the line may still hold '\r' or anything else)
 *
 * Checked: the reply is one line ending in '\n', with a health word
 * (up/down) and an admin word (ready/drain) first, as HAProxy needs to
 * undo what the agent set; and, for short requests, the reply the
 * contract (design.md 3, agent-check) gives.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent.h"
#include "agentcheck.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

#define MAX_NODES 4
/* as in agentcheck.c: reply() */
#define REPLY_LEN (REASON_MAX + NODE_NAME_MAX + 64)

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t take_byte(struct input *in)
{
	if (in->left == 0)
		return 0;
	in->left--;
	return *in->p++;
}

/* A length-prefixed string, cut to fit out (and at a NUL). */
static void take_string(struct input *in, char *out, size_t outlen)
{
	size_t n = take_byte(in), i;

	if (n > in->left)
		n = in->left;
	for (i = 0; i < n && i + 1 < outlen && in->p[i]; i++)
		out[i] = (char)in->p[i];
	out[i] = '\0';
	in->p += n;
	in->left -= n;
}

static void check_shape(const char *reply)
{
	size_t n = strlen(reply);
	const char *nl = strchr(reply, '\n');
	const char *admin;

	CHECK(n > 0 && n < REPLY_LEN);
	/* one line: HAProxy ignores a line without its end */
	CHECK(nl == reply + n - 1);
	CHECK(strchr(reply, '\r') == NULL);
	if (strncmp(reply, "up ", 3) == 0) {
		admin = reply + 3;
	} else {
		CHECK(strncmp(reply, "down ", 5) == 0);
		admin = reply + 5;
		/* the reason is one '#' word group after the admin word */
		CHECK(strncmp(admin, "ready #", 7) == 0);
	}
	CHECK(strncmp(admin, "ready", 5) == 0 || strcmp(admin, "drain\n") == 0);
	if (strncmp(reply, "up ready", 8) == 0) {
		int w = -1, used = 0;

		CHECK(sscanf(reply, "up ready %d%%\n%n", &w, &used) == 1);
		CHECK(w >= 0 && w <= 100 && (size_t)used == n);
	}
}

/* Words as HAProxy splits them (and as the request parser does). */
static int split_words(const char *line, char words[3][NODE_NAME_MAX + 8])
{
	int n = 0;

	while (*line) {
		size_t len;

		line += strspn(line, " \t,\r\n");
		if (!*line)
			break;
		len = strcspn(line, " \t,\r\n");
		if (n < 3) {
			size_t k = len < NODE_NAME_MAX + 7 ? len : NODE_NAME_MAX + 7;

			memcpy(words[n], line, k);
			words[n][k] = '\0';
		}
		n++;
		line += len;
	}
	return n;
}

/* A word the request grammar knows after the node name: a duty or a limit. */
static bool grammar_word(const char *w)
{
	static const char *const duties[] = { "any", "write", "read", "replica", "running" };

	for (size_t i = 0; i < sizeof(duties) / sizeof(duties[0]); i++)
		if (strcasecmp(w, duties[i]) == 0)
			return true;
	return strncasecmp(w, "lag=", 4) == 0 || strncasecmp(w, "lag_time=", 9) == 0;
}

static const struct node *model_find(const struct agent *a, const char *name)
{
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node *n = a->nodes[i];

		if (strcmp(n->status.name, name) == 0 ||
		    (n->cfg->name[0] && strcmp(n->cfg->name, name) == 0))
			return n;
	}
	return NULL;
}

/* What the contract says, for requests short enough to need no cutting. */
static void check_model(const struct agent *a, const char *request, const char *reply)
{
	char words[3][NODE_NAME_MAX + 8];
	const struct node *n;
	bool write = false;
	int count;

	if (strlen(request) > 200)
		return;
	count = split_words(request, words);
	if (count > 2 || (count == 2 && strcasecmp(words[1], "write") != 0)) {
		/*
		 * NAME [DUTY] [lag=SIZE] [lag_time=DURATION] (answer.c): this
		 * model checks only that a second word outside that grammar
		 * is refused; the grammar's answers are tests/unit/test_answer.c's.
		 */
		if (!grammar_word(words[1]))
			CHECK(strncmp(reply, "down ready #", 12) == 0);
		return;
	}
	if (count >= 1 && strlen(words[0]) >= NODE_NAME_MAX)
		return; /* cut to a node name's size: out of the contract */
	write = count == 2;
	n = count == 0 ? a->nodes[a->default_node] : model_find(a, words[0]);
	if (!n) {
		CHECK(strncmp(reply, "down ready #unknown node", 24) == 0);
		return;
	}
	if (write) {
		/* binary: up on a serving leader, down everywhere else, never drain */
		if (n->status.write_leader && state_is_serving(n->status.state))
			CHECK(strcmp(reply, "up ready 100%\n") == 0);
		else
			CHECK(strncmp(reply, "down ready #not the write leader", 32) == 0);
	} else if (n->status.state == STATE_DRAINING) {
		CHECK(strcmp(reply, "up drain\n") == 0);
	} else if (!state_is_serving(n->status.state)) {
		CHECK(strncmp(reply, "down ready #", 12) == 0);
	} else {
		char want[32];

		snprintf(want, sizeof(want), "up ready %d%%\n", n->status.weight);
		CHECK(strcmp(reply, want) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct node_config cfgs[MAX_NODES];
	struct node nodes[MAX_NODES];
	struct node *table[MAX_NODES];
	static struct agent a;
	char reply[REPLY_LEN];
	char *request;
	int leader;

	memset(&a, 0, sizeof(a));
	memset(cfgs, 0, sizeof(cfgs));
	memset(nodes, 0, sizeof(nodes));
	a.n_nodes = 1 + take_byte(&in) % MAX_NODES;
	a.default_node = take_byte(&in) % a.n_nodes;
	leader = take_byte(&in) % (MAX_NODES + 1);
	a.nodes = table;
	for (int i = 0; i < a.n_nodes; i++) {
		struct node *n = &nodes[i];
		uint8_t flags;

		table[i] = n;
		n->agent = &a;
		n->cfg = &cfgs[i];
		snprintf(cfgs[i].name, sizeof(cfgs[i].name), "node%d", i + 1);
		n->status.state = (enum node_state)(take_byte(&in) % 4);
		n->status.weight = take_byte(&in) % 101;
		flags = take_byte(&in);
		take_string(&in, n->status.name, sizeof(n->status.name));
		if (!(flags & 1) || !n->status.name[0])
			snprintf(n->status.name, sizeof(n->status.name), "%s", cfgs[i].name);
		if (flags & 2)
			cfgs[i].name[0] = '\0'; /* [postgresql]: named by the catalog */
		take_string(&in, n->status.reason, sizeof(n->status.reason));
	}
	if (leader < a.n_nodes) {
		snprintf(a.write_leader, sizeof(a.write_leader), "%s", nodes[leader].status.name);
		nodes[leader].status.write_leader = true;
	}

	/* exactly sized, so that a read past its end is seen */
	request = malloc(in.left + 1);
	CHECK(request);
	memcpy(request, in.p, in.left);
	request[in.left] = '\0';

	memset(reply, 'X', sizeof(reply));
	agentcheck_format_reply(&a, request, reply, sizeof(reply));
	CHECK(memchr(reply, '\0', sizeof(reply)) != NULL);
	check_shape(reply);
	check_model(&a, request, reply);

	/* what the server sends on its own: timeout, and a too long line */
	agentcheck_format_reply(&a, "", reply, sizeof(reply));
	check_shape(reply);
	agentcheck_format_reply(&a, "bad request line too long", reply, sizeof(reply));
	check_shape(reply);
	CHECK(strncmp(reply, "down ready #", 12) == 0);
	free(request);
	return 0;
}
