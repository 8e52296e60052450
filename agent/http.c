/*
 * HTTP routing: which reply a request gets. Every answer comes from
 * the cached node table, so a check costs no PostgreSQL work and never
 * waits on a node. Shared by the listener (http_server.c) and --inetd.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ask.h"
#include "http.h"
#include "metrics.h"
#include "render.h"

static const char *const TEXT_PLAIN = "text/plain; charset=utf-8";

static void set_reply(struct http_reply *r, int code, const char *reason)
{
	r->code = code;
	r->reason = reason;
	r->content_type = TEXT_PLAIN;
}

static void reply_text(struct http_reply *r, int code, const char *reason, const char *text)
{
	set_reply(r, code, reason);
	evbuffer_add_printf(r->body, "%s\n", text);
}

/*
 * ?lag=SIZE and ?lag_time=DURATION tighten the answer for one request.
 * Other parameters are ignored so that cache-busters do no harm.
 * Returns the name of a malformed limit, else NULL.
 */
static const char *limits_from_query(const char *query, struct answer_limits *limits)
{
	static const char *const keys[] = { "lag", "lag_time" };
	struct evkeyvalq params = { 0 };
	const char *bad = NULL;

	*limits = ANSWER_NO_LIMITS;
	if (!query || !query[0])
		return NULL;
	if (evhttp_parse_query_str(query, &params) != 0)
		return "query";
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !bad; i++) {
		const char *value = evhttp_find_header(&params, keys[i]);

		if (value && answer_limit_parse(keys[i], value, limits) != 0)
			bad = keys[i];
	}
	evhttp_clear_headers(&params);
	return bad;
}

/* The answer, formatted: 200 on a pass, 503 with the failed condition. */
static void reply_node(const struct agent *a, const struct node *n, enum duty duty,
		       const struct answer_limits *limits, struct http_reply *r)
{
	struct answer ans;

	ask_node(a, n, duty, limits, &ans);
	if (ans.pass)
		set_reply(r, 200, "OK");
	else
		set_reply(r, 503, "Service Unavailable");
	render_answer_line(&ans, &n->status, r->body);
}

static void route_node(const struct agent *a, const struct node *n, const char *name,
		       enum duty duty, const char *query, struct http_reply *r)
{
	struct answer_limits limits;
	const char *bad = limits_from_query(query, &limits);

	if (bad) {
		set_reply(r, 400, "Bad Request");
		evbuffer_add_printf(r->body, "invalid %s parameter\n", bad);
		return;
	}
	if (!n) {
		set_reply(r, 404, "Not Found");
		evbuffer_add_printf(r->body, "unknown node %s\n", name);
		return;
	}
	reply_node(a, n, duty, &limits, r);
}

/* "/node/NAME", "/node/NAME/DUTY" (write, read, replica, running, any) */
static void route_named_node(const struct agent *a, const char *rest, const char *query,
			     struct http_reply *r)
{
	char name[NODE_NAME_MAX];
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
	enum duty duty = DUTY_ANY;

	if (len == 0 || len >= sizeof(name) || (slash && duty_from_name(slash + 1, &duty) != 0)) {
		reply_text(r, 404, "Not Found", "not found");
		return;
	}
	memcpy(name, rest, len);
	name[len] = '\0';
	route_node(a, agent_find_node(a, name), name, duty, query, r);
}

/*
 * The paths that ask about the default node, with the duty each asks
 * for; the Patroni names mean what Patroni's REST API says of them.
 */
static const struct {
	const char *path;
	enum duty duty;
} duty_paths[] = {
	{ "/", DUTY_ANY },
	{ "/write", DUTY_WRITE },
	{ "/read", DUTY_READ },
	{ "/replica", DUTY_REPLICA },
	/* Patroni: the primary holding the leader lock */
	{ "/primary", DUTY_WRITE },
	{ "/read-write", DUTY_WRITE },
	{ "/leader", DUTY_WRITE },
	/* Patroni: a replica or the primary */
	{ "/read-only", DUTY_READ },
	/* Patroni: running and serving, not too far behind (?lag=) */
	{ "/readiness", DUTY_READ },
	/* Patroni: PostgreSQL is up and running, whatever its role */
	{ "/health", DUTY_RUNNING },
};

static bool route_duty_path(const struct agent *a, const char *path, const char *query,
			    struct http_reply *r)
{
	for (size_t i = 0; i < sizeof(duty_paths) / sizeof(duty_paths[0]); i++) {
		if (strcmp(path, duty_paths[i].path) == 0) {
			route_node(a, agent_default_node(a), "", duty_paths[i].duty, query, r);
			return true;
		}
	}
	return false;
}

void http_route(const struct agent *a, enum http_method method, const char *path,
		const char *query, struct http_reply *r)
{
	static const char node_prefix[] = "/node/";

	if (method == HTTP_METHOD_UNKNOWN) {
		reply_text(r, 501, "Not Implemented", "method not implemented");
		return;
	}
	if (method == HTTP_METHOD_OTHER) {
		reply_text(r, 405, "Method Not Allowed", "method not allowed");
		r->allow = "GET, HEAD, OPTIONS";
		return;
	}
	if (route_duty_path(a, path, query, r)) {
		return;
	} else if (strncmp(path, node_prefix, sizeof(node_prefix) - 1) == 0) {
		route_named_node(a, path + sizeof(node_prefix) - 1, query, r);
	} else if (strcmp(path, "/status") == 0) {
		set_reply(r, 200, "OK");
		r->content_type = "application/json";
		render_status_json(a, r->body);
	} else if (strcmp(path, "/compact") == 0) {
		set_reply(r, 200, "OK");
		render_status_compact(a, r->body);
	} else if (strcmp(path, "/metrics") == 0) {
		set_reply(r, 200, "OK");
		r->content_type = "text/plain; version=0.0.4; charset=utf-8";
		metrics_render(a, r->body);
	} else if (strcmp(path, "/live") == 0 || strcmp(path, "/liveness") == 0) {
		/* answered by the event loop itself: it runs (Patroni's /liveness) */
		reply_text(r, 200, "OK", "alive");
	} else {
		reply_text(r, 404, "Not Found", "not found");
	}
}

/* The other methods RFC 9110 defines, and PATCH (RFC 5789). */
static const char *const other_methods[] = { "POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH" };

enum http_method http_method_from_name(const char *name)
{
	if (strcmp(name, "GET") == 0)
		return HTTP_METHOD_GET;
	if (strcmp(name, "HEAD") == 0)
		return HTTP_METHOD_HEAD;
	if (strcmp(name, "OPTIONS") == 0)
		return HTTP_METHOD_OPTIONS;
	for (size_t i = 0; i < sizeof(other_methods) / sizeof(other_methods[0]); i++)
		if (strcmp(name, other_methods[i]) == 0)
			return HTTP_METHOD_OTHER;
	return HTTP_METHOD_UNKNOWN;
}

void http_format_reply(int minor_version, const struct http_reply *r, bool head_only,
		       bool keep_alive, struct evbuffer *out)
{
	size_t body_len = evbuffer_get_length(r->body);

	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n"
			    "Content-Type: %s\r\n"
			    "Content-Length: %zu\r\n"
			    "Cache-Control: no-store\r\n",
			    minor_version >= 1 ? 1 : 0, r->code, r->reason, r->content_type, body_len);
	if (r->allow)
		evbuffer_add_printf(out, "Allow: %s\r\n", r->allow);
	/* 1.0 needs keep-alive said out loud; 1.1 needs close said */
	if (!keep_alive)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (minor_version == 0)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
	if (!head_only)
		evbuffer_add_buffer(out, r->body);
}

void http_reply_parse_error(struct http_reply *r, enum http_parse_result result)
{
	if (result == HTTP_PARSE_BAD_VERSION)
		reply_text(r, 505, "HTTP Version Not Supported", "HTTP/1.0 and HTTP/1.1 only");
	else if (result == HTTP_PARSE_TOO_LARGE)
		reply_text(r, 400, "Bad Request", "request head too large");
	else
		reply_text(r, 400, "Bad Request", "malformed request");
}
