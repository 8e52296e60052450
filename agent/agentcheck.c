/*
 * agent-check. HAProxy connects, writes its agent-send string if it
 * has one, reads one line and closes. Every reply names a health word
 * and an admin word, so the agent always undoes an admin state it set
 * earlier (only the agent can lift a DRAIN it caused). Nothing a client
 * sent is echoed raw: a name in a reply is made printable UTF-8 first,
 * and a request that ends with the client's FIN instead of "\n" still
 * gets its answer.
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentcheck.h"
#include "ask.h"
#include "clock.h"
#include "listener.h"
#include "scrub.h"
#include "units.h"

#define REQUEST_MAX 256

struct agentcheck_server {
	struct agent *agent;
	struct listener *listener;
	struct agentcheck_counters *counters; /* the agent's */
};

struct agentcheck_conn {
	struct listener_conn lc; /* first: the listener allocates and links it */
	struct agentcheck_server *server;
	struct event *wait_timer; /* for a client that never sends its line */
	bool replied;
};

struct request {
	char node[NODE_NAME_MAX];
	enum duty duty;
	bool duty_given;
	struct answer_limits limits;
	bool bad;
};

/* One word after the node: a duty, once, or a limit ("lag=16MB"). */
static bool parse_word(char *word, struct request *req)
{
	char *eq = strchr(word, '=');
	enum duty duty;

	if (eq) {
		*eq = '\0';
		return answer_limit_parse(word, eq + 1, &req->limits) == 0;
	}
	if (req->duty_given || duty_from_name(word, &duty) != 0)
		return false;
	req->duty = duty;
	req->duty_given = true;
	return true;
}

/* "NAME [DUTY] [lag=SIZE] [lag_time=DURATION]", split as HAProxy splits words. */
static void parse_request(const char *line, struct request *req)
{
	char copy[REQUEST_MAX + 1];
	char *save = NULL;
	char *word;
	int n = 0;

	memset(req, 0, sizeof(*req));
	req->duty = DUTY_ANY;
	req->limits = ANSWER_NO_LIMITS;
	snprintf(copy, sizeof(copy), "%s", line);
	for (word = strtok_r(copy, " \t,\r\n", &save); word;
	     word = strtok_r(NULL, " \t,\r\n", &save), n++) {
		if (n == 0)
			snprintf(req->node, sizeof(req->node), "%s", word);
		else if (!parse_word(word, req))
			req->bad = true;
	}
}

/* HAProxy reads up to the end of line: keep the reason on one line, printable. */
static void format_down(char *buf, size_t len, const char *reason)
{
	snprintf(buf, len, "down ready #%s\n", reason);
	for (char *p = buf; p[0] && p[1]; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/*
 * The answer as HAProxy's words: up at its weight, a drain for
 * maintenance (never for the write role, which answer.c never
 * drains), else down with the failed condition.
 */
static void format_answer(const struct answer *ans, char *buf, size_t len)
{
	if (ans->pass)
		snprintf(buf, len, "up ready %d%%\n", ans->weight);
	else if (ans->drain)
		snprintf(buf, len, "up drain\n");
	else
		format_down(buf, len, ans->reason[0] ? ans->reason : "down");
}

void agentcheck_format_reply(const struct agent *a, const char *request,
			     char *buf, size_t len)
{
	struct request req;
	struct answer ans;
	const struct node *n;

	parse_request(request, &req);
	if (req.bad) {
		format_down(buf, len, "bad request: expected NODE [DUTY] [lag=SIZE] [lag_time=DURATION]");
		return;
	}
	n = req.node[0] ? agent_find_node(a, req.node) : agent_default_node(a);
	if (!n) {
		char name[NODE_NAME_MAX];
		char reason[NODE_NAME_MAX + 16];

		/* the client's bytes: no control characters, valid UTF-8 */
		scrub_text(name, sizeof(name), req.node, strlen(req.node), NULL);
		snprintf(reason, sizeof(reason), "unknown node %s", name);
		format_down(buf, len, reason);
		return;
	}
	ask_node(a, n, req.duty, &req.limits, &ans);
	format_answer(&ans, buf, len);
}

/* The listener's close callback: what is agent-check's own. */
static void on_close(struct listener_conn *lc)
{
	struct agentcheck_conn *c = (struct agentcheck_conn *)lc;

	if (c->wait_timer)
		event_free(c->wait_timer);
}

static void on_written(struct bufferevent *bev, void *arg)
{
	struct agentcheck_conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		listener_conn_close(&c->lc);
}

static void on_event(struct bufferevent *bev, short what, void *arg);

static void reply(struct agentcheck_conn *c, const char *request)
{
	char line[REASON_MAX + NODE_NAME_MAX + 64];

	if (c->replied)
		return;
	c->replied = true;
	c->server->counters->replies++;
	if (c->wait_timer)
		event_del(c->wait_timer);
	agentcheck_format_reply(c->server->agent, request, line, sizeof(line));
	bufferevent_disable(c->lc.bev, EV_READ);
	bufferevent_setcb(c->lc.bev, NULL, on_written, on_event, c);
	bufferevent_write(c->lc.bev, line, strlen(line));
}

/*
 * Take the request from the input: a line, or what came before the
 * wait expired (an agent-send string without its "\n" still names a
 * node: answering it for the default node would be a wrong answer).
 * A NUL inside makes it a bad request rather than a shorter name.
 */
static void reply_to_input(struct agentcheck_conn *c, size_t len)
{
	struct evbuffer *in = bufferevent_get_input(c->lc.bev);
	char line[REQUEST_MAX + 1];

	if (len > REQUEST_MAX) {
		c->server->counters->bad_requests++;
		reply(c, "bad request line too long");
		return;
	}
	evbuffer_remove(in, line, len);
	line[len] = '\0';
	if (memchr(line, '\0', len)) {
		c->server->counters->bad_requests++;
		reply(c, "bad request with a NUL byte");
		return;
	}
	reply(c, line);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct agentcheck_conn *c = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_input(bev));

	/* a request cut by the client's FIN, without "\n": answer what came */
	if ((what & BEV_EVENT_EOF) && !c->replied && pending > 0) {
		reply_to_input(c, pending);
		return;
	}
	/* error or timeout: nothing more to say to this client */
	listener_conn_close(&c->lc);
}

static void on_readable(struct bufferevent *bev, void *arg)
{
	struct agentcheck_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);

	if (eol.pos >= 0)
		reply_to_input(c, (size_t)eol.pos);
	else if (evbuffer_get_length(in) > REQUEST_MAX)
		reply_to_input(c, evbuffer_get_length(in));
}

static void on_wait_expired(evutil_socket_t fd, short what, void *arg)
{
	struct agentcheck_conn *c = arg;

	reply_to_input(c, evbuffer_get_length(bufferevent_get_input(c->lc.bev)));
}

/* The listener's open callback: timeouts and callbacks of a new client. */
static int on_open(void *arg, struct listener_conn *lc, const struct sockaddr *sa, int socklen)
{
	struct agentcheck_server *s = arg;
	struct agentcheck_conn *c = (struct agentcheck_conn *)lc;
	const struct agent_config *cfg = &s->agent->config;
	struct timeval io_timeout = ms_to_timeval(cfg->client_timeout_ms);
	struct timeval wait = ms_to_timeval(cfg->agent_send_wait_ms);

	c->server = s;
	/* with one node too: its agent-send line may ask about writes */
	c->wait_timer = evtimer_new(s->agent->base, on_wait_expired, c);
	if (!c->wait_timer)
		return -1;
	evtimer_add(c->wait_timer, &wait);
	bufferevent_set_timeouts(c->lc.bev, &io_timeout, &io_timeout);
	bufferevent_setcb(c->lc.bev, on_readable, NULL, on_event, c);
	bufferevent_enable(c->lc.bev, EV_READ);
	return 0;
}

/* A reply is one line: no memory budget, the kernel's send buffer. */
static const struct listener_protocol agentcheck_protocol = {
	.conn_size = sizeof(struct agentcheck_conn),
	.open = on_open,
	.close = on_close,
};

struct agentcheck_server *agentcheck_server_new(struct agent *a, const struct listen_addr *addr,
						char *err, size_t errlen)
{
	struct agentcheck_server *s = calloc(1, sizeof(*s));
	struct listener_setup setup = agent_listener_setup(a, LISTENER_AGENTCHECK,
							   &agentcheck_protocol, s);

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->agent = a;
	s->counters = &a->counters.agentcheck;
	s->listener = listener_new(a->base, addr, &setup, err, errlen);
	if (!s->listener) {
		free(s);
		return NULL;
	}
	return s;
}

void agentcheck_server_free(struct agentcheck_server *s)
{
	if (!s)
		return;
	listener_free(s->listener);
	free(s);
}
