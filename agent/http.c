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

#include "evaluate.h"
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
 * ?lag=SIZE, the only parameter: -1 when absent, -2 when malformed.
 * Other parameters are ignored so that cache-busters do no harm.
 */
static int64_t lag_limit_from_query(const char *query)
{
	struct evkeyvalq params = { 0 };
	const char *value;
	int64_t limit = -1;

	if (!query || !query[0])
		return -1;
	if (evhttp_parse_query_str(query, &params) != 0)
		return -2;
	value = evhttp_find_header(&params, "lag");
	if (value && parse_size(value, &limit) != 0)
		limit = -2;
	evhttp_clear_headers(&params);
	return limit;
}

/* What a request asks of a node: take traffic, take writes, serve reads. */
enum duty {
	DUTY_SERVE,
	DUTY_WRITE,
	DUTY_READ,
};

static bool node_fit_for(const struct agent *a, const struct node *n, enum duty duty)
{
	switch (duty) {
	case DUTY_WRITE:
		return agent_write_verdict(a, n, NULL, 0);
	case DUTY_READ:
		return n->readable;
	case DUTY_SERVE:
		break;
	}
	return state_is_serving(n->status.state);
}

static void reply_node(const struct agent *a, const struct node *n, enum duty duty,
		       int64_t lag_limit, struct http_reply *r)
{
	bool ok = node_fit_for(a, n, duty);

	if (ok && lag_limit >= 0 && !status_within_lag(&n->status, lag_limit))
		ok = false;
	if (ok)
		set_reply(r, 200, "OK");
	else
		set_reply(r, 503, "Service Unavailable");
	render_status_line(n, r->body);
	if (duty == DUTY_WRITE && !n->status.write_leader) {
		char why[REASON_MAX];

		agent_write_verdict(a, n, why, sizeof(why));
		evbuffer_add_printf(r->body, "%s\n", why);
	}
}

static void route_node(const struct agent *a, const struct node *n, const char *name,
		       enum duty duty, const char *query, struct http_reply *r)
{
	int64_t lag_limit = lag_limit_from_query(query);

	if (lag_limit == -2) {
		reply_text(r, 400, "Bad Request", "invalid lag parameter");
		return;
	}
	if (!n) {
		set_reply(r, 404, "Not Found");
		evbuffer_add_printf(r->body, "unknown node %s\n", name);
		return;
	}
	reply_node(a, n, duty, lag_limit, r);
}

/* "/node/NAME", "/node/NAME/write", "/node/NAME/read" */
static void route_named_node(const struct agent *a, const char *rest, const char *query,
			     struct http_reply *r)
{
	char name[NODE_NAME_MAX];
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
	enum duty duty = DUTY_SERVE;

	if (len == 0 || len >= sizeof(name)) {
		reply_text(r, 404, "Not Found", "not found");
		return;
	}
	memcpy(name, rest, len);
	name[len] = '\0';
	if (slash && strcmp(slash, "/write") == 0)
		duty = DUTY_WRITE;
	else if (slash && strcmp(slash, "/read") == 0)
		duty = DUTY_READ;
	else if (slash) {
		reply_text(r, 404, "Not Found", "not found");
		return;
	}
	route_node(a, agent_find_node(a, name), name, duty, query, r);
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
	if (strcmp(path, "/") == 0) {
		route_node(a, agent_default_node(a), "", DUTY_SERVE, query, r);
	} else if (strcmp(path, "/write") == 0) {
		route_node(a, agent_default_node(a), "", DUTY_WRITE, query, r);
	} else if (strcmp(path, "/read") == 0) {
		route_node(a, agent_default_node(a), "", DUTY_READ, query, r);
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
	} else if (strcmp(path, "/live") == 0) {
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
