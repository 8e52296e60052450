/*
 * libFuzzer harness for the configuration (agent/config.c) and the
 * value parsers it uses (agent/units.c).
 *
 * The whole input is loaded as a config file (through a memfd, by its
 * /proc/self/fd path, so that config_load() reads it with fopen as it
 * reads a real file). Then the input is cut at '\n' and NUL bytes, and
 * every slice goes, NUL-terminated in a buffer of its exact size, to
 * each value parser.
 *
 * Checked: no crash, no leak (config_free always), errors name a line
 * within the file and format to a terminated string; a loaded config
 * has at least one node with NULL-terminated libpq parameters; sizes
 * and durations print back to text that parses to about the same
 * value; listen addresses and CIDR lists keep their invariants.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "units.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static int memfd = -1;
static char memfd_path[64];

static void check_loaded(const struct agent_config *cfg)
{
	CHECK(cfg->n_nodes >= 1 && cfg->nodes);
	CHECK(cfg->path && strcmp(cfg->path, memfd_path) == 0);
	CHECK(cfg->interval_ms > 0 && cfg->timeout_ms > 0);
	CHECK(cfg->policy.stale_after_ms > cfg->interval_ms);
	CHECK(cfg->policy.min_weight >= 0 && cfg->policy.min_weight <= 100);
	CHECK(cfg->max_clients > 0);
	CHECK(cfg->allow_from.count >= 0);
	CHECK(cfg->allow_from.count == 0 || cfg->allow_from.items);
	for (int i = 0; i < cfg->n_nodes; i++) {
		const struct node_config *n = &cfg->nodes[i];

		CHECK(memchr(n->name, '\0', sizeof(n->name)) != NULL);
		CHECK(n->n_params >= 0 && n->keywords && n->values);
		CHECK(n->keywords[n->n_params] == NULL && n->values[n->n_params] == NULL);
		for (int j = 0; j < n->n_params; j++) {
			CHECK(n->keywords[j] && n->values[j] && n->values[j][0]);
			CHECK(node_config_param(n, n->keywords[j]) != NULL);
		}
		/* the agent names itself to the nodes */
		CHECK(node_config_param(n, "application_name") != NULL);
		/* no two [node.NAME] share a name */
		for (int j = 0; j < i; j++)
			CHECK(!n->name[0] || strcmp(n->name, cfg->nodes[j].name) != 0);
	}
}

static void load_config(const uint8_t *data, size_t size)
{
	struct agent_config cfg;
	struct config_error err;
	char msg[700];
	size_t lines = 1;

	CHECK(ftruncate(memfd, 0) == 0);
	CHECK(pwrite(memfd, data, size, 0) == (ssize_t)size);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';

	memset(&cfg, 0xA5, sizeof(cfg)); /* config_load must not trust it */
	if (config_load(memfd_path, &cfg, &err) == 0) {
		check_loaded(&cfg);
	} else {
		CHECK(err.line >= 0 && (size_t)err.line <= lines + 1);
		CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
		CHECK(memchr(err.key, '\0', sizeof(err.key)) != NULL);
		CHECK(err.message[0] != '\0');
		config_error_format(&err, msg, sizeof(msg));
		CHECK(strlen(msg) < sizeof(msg));
		config_error_format(&err, msg, 8);
		CHECK(strlen(msg) < 8);
		/* freeable after a failure too, and twice */
		config_free(&cfg);
	}
	config_free(&cfg);
}

/* parse(format(v)) gives v back within format's rounding (a tenth of a unit). */
static void check_scaled_roundtrip(int64_t v, void (*format)(int64_t, char *, size_t),
				   int (*parse)(const char *, int64_t *))
{
	char buf[48], tiny[4];
	int64_t back;

	format(v, buf, sizeof(buf));
	CHECK(strlen(buf) < sizeof(buf) - 1);
	format(v, tiny, sizeof(tiny));
	CHECK(strlen(tiny) < sizeof(tiny));
	/* near INT64_MAX the rounded value may not fit any more */
	if (v < 0 || v > ((int64_t)1 << 62))
		return;
	CHECK(parse(buf, &back) == 0);
	CHECK(back >= 0);
	{
		int64_t diff = back > v ? back - v : v - back;

		/* at most half a tenth of the unit, i.e. 5% of the value */
		CHECK(diff <= v / 20 + 1);
	}
}

static void check_listen(const char *s)
{
	struct listen_addr la;

	memset(&la, 0x5A, sizeof(la));
	if (parse_listen_addr(s, &la) == 0) {
		CHECK(memchr(la.host, '\0', sizeof(la.host)) != NULL);
		if (la.enabled)
			CHECK(la.port >= 1 && la.port <= 65535);
		else
			CHECK(la.port == 0 && la.host[0] == '\0');
	} else {
		CHECK(!la.enabled);
	}
}

static void check_cidr(const char *s, const uint8_t *addr_bytes, size_t n)
{
	struct cidr_list list;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	uint8_t raw[16] = { 0 };

	memcpy(raw, addr_bytes, n < 16 ? n : 16);
	memcpy(&sin.sin_addr, raw, 4);
	memcpy(&sin6.sin6_addr, raw, 16);

	if (cidr_list_parse(s, &list) != 0) {
		CHECK(list.items == NULL && list.count == 0);
		return;
	}
	CHECK(list.count >= 0 && (list.count == 0 || list.items));
	for (int i = 0; i < list.count; i++) {
		const struct cidr *c = &list.items[i];
		struct sockaddr_in self4 = { .sin_family = AF_INET };
		struct sockaddr_in6 self6 = { .sin6_family = AF_INET6 };

		CHECK(c->family == AF_INET || c->family == AF_INET6);
		CHECK(c->prefix >= 0 && c->prefix <= (c->family == AF_INET ? 32 : 128));
		/* a network allows its own address */
		if (c->family == AF_INET) {
			memcpy(&self4.sin_addr, c->addr, 4);
			CHECK(cidr_list_allows(&list, (struct sockaddr *)&self4));
		} else {
			memcpy(&self6.sin6_addr, c->addr, 16);
			CHECK(cidr_list_allows(&list, (struct sockaddr *)&self6));
		}
	}
	(void)cidr_list_allows(&list, (struct sockaddr *)&sin);
	(void)cidr_list_allows(&list, (struct sockaddr *)&sin6);
	/* an IPv4-mapped IPv6 peer (a dual-stack listener) */
	raw[10] = raw[11] = 0xff;
	memset(raw, 0, 10);
	memcpy(&sin6.sin6_addr, raw, 16);
	(void)cidr_list_allows(&list, (struct sockaddr *)&sin6);
	if (list.count == 0)
		CHECK(cidr_list_allows(&list, (struct sockaddr *)&sin));
	cidr_list_free(&list);
	CHECK(list.items == NULL && list.count == 0);
	cidr_list_free(&list);
}

static void check_values(const char *s, const uint8_t *rest, size_t rest_len)
{
	int64_t v;
	bool b;
	long l;

	if (parse_size(s, &v) == 0) {
		CHECK(v >= 0);
		check_scaled_roundtrip(v, format_size, parse_size);
	}
	if (parse_duration_ms(s, &v) == 0) {
		CHECK(v >= 0);
		check_scaled_roundtrip(v, format_duration_ms, parse_duration_ms);
	}
	(void)parse_bool(s, &b);
	if (parse_long(s, -1000, 1000000, &l) == 0)
		CHECK(l >= -1000 && l <= 1000000);
	if (parse_long(s, LONG_MIN, LONG_MAX, &l) == 0) {
		char buf[32];
		long again;

		snprintf(buf, sizeof(buf), "%ld", l);
		CHECK(parse_long(buf, LONG_MIN, LONG_MAX, &again) == 0 && again == l);
	}
	check_listen(s);
	check_cidr(s, rest, rest_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	memfd = memfd_create("fuzz_config.ini", MFD_CLOEXEC);
	if (memfd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t start = 0;

	if (size > 65536)
		return 0;
	load_config(data, size);

	/* values: every line (and NUL-separated piece) on its own */
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n' && data[i] != '\0')
			continue;
		{
			size_t n = i - start;
			char *s = malloc(n + 1);

			CHECK(s);
			memcpy(s, data + start, n);
			s[n] = '\0';
			check_values(s, data + i, size - i);
			/* and the value part of "key = value" */
			{
				char *eq = strchr(s, '=');

				if (eq)
					check_values(eq + 1 + strspn(eq + 1, " \t"), data, size);
			}
			free(s);
		}
		start = i + 1;
	}
	return 0;
}
