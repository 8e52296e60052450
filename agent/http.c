/*
 * HTTP checks. evhttp parses and frames (Content-Length, keep-alive,
 * HTTP/1.0 close, 400 on malformed input, header size limits); this
 * file only routes. Every answer comes from the cached node table, so
 * a check costs no PostgreSQL work and never waits on a node.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "evaluate.h"
#include "http.h"
#include "metrics.h"
#include "render.h"

#define HTTP_MAX_HEADERS_SIZE 16384
#define HTTP_MAX_BODY_SIZE 4096

struct http_server {
	struct agent *agent;
	struct evhttp *evh;
	struct evhttp_bound_socket *bound;
	struct http_stats stats;
};

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
		return n->status.write_leader && state_is_serving(n->status.state);
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
		const char *leader = agent_write_leader(a);

		evbuffer_add_printf(r->body, "not the write leader (leader: %s)\n",
				    leader[0] ? leader : "none yet");
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

enum http_method http_method_from_name(const char *name)
{
	if (strcmp(name, "GET") == 0)
		return HTTP_METHOD_GET;
	if (strcmp(name, "HEAD") == 0)
		return HTTP_METHOD_HEAD;
	if (strcmp(name, "OPTIONS") == 0)
		return HTTP_METHOD_OPTIONS;
	return HTTP_METHOD_OTHER;
}

static enum http_method method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return HTTP_METHOD_GET;
	case EVHTTP_REQ_HEAD:
		return HTTP_METHOD_HEAD;
	case EVHTTP_REQ_OPTIONS:
		return HTTP_METHOD_OPTIONS;
	default:
		return HTTP_METHOD_OTHER;
	}
}

/*
 * libevent 2.1 has no public hook between accept() and evhttp, so
 * allow_from is checked on the first request of a connection. A
 * refused peer gets its socket shut down before the reply is queued:
 * evhttp then cleans up through its normal error path and the client
 * receives not one byte.
 */
static bool refuse_if_not_allowed(struct http_server *s, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (s->agent->config.allow_from.count == 0)
		return false;
	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    cidr_list_allows(&s->agent->config.allow_from, (struct sockaddr *)&ss))
		return false;
	s->stats.refused++;
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	evhttp_send_reply(req, 403, "Forbidden", NULL);
	return true;
}

/*
 * evhttp leaves Content-Length out of HTTP/1.0 replies (it closes
 * instead) and out of HEAD replies, and sends a HEAD body if given
 * one. Checkers that read the length got that wrong from the classic
 * script already, so every reply states it, and HEAD sends no body.
 */
static void send_reply(struct evhttp_request *req, struct http_reply *reply)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	char length[24];

	snprintf(length, sizeof(length), "%zu", evbuffer_get_length(reply->body));
	evhttp_add_header(headers, "Content-Type", reply->content_type);
	evhttp_add_header(headers, "Content-Length", length);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	if (reply->allow)
		evhttp_add_header(headers, "Allow", reply->allow);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(reply->body, evbuffer_get_length(reply->body));
	evhttp_send_reply(req, reply->code, reply->reason, reply->body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct http_server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct http_reply reply = { 0 };
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

	if (refuse_if_not_allowed(s, req))
		return;
	s->stats.requests++;
	reply.body = evbuffer_new();
	if (!reply.body) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (!path || path[0] != '/')
		reply_text(&reply, 400, "Bad Request", "bad request target");
	else
		http_route(s->agent, method_of(req), path, evhttp_uri_get_query(uri), &reply);

	send_reply(req, &reply);
	if (reply.code >= 200 && reply.code < 600)
		s->stats.responses[reply.code / 100]++;
	evbuffer_free(reply.body);
}

struct http_server *http_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct timeval timeout = {
		.tv_sec = a->config.client_timeout_ms / 1000,
		.tv_usec = (a->config.client_timeout_ms % 1000) * 1000,
	};

	if (!s || !(s->evh = evhttp_new(a->base))) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	s->agent = a;
	/* accept every method so that we can answer 405, not 501 */
	evhttp_set_allowed_methods(s->evh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(s->evh, HTTP_MAX_HEADERS_SIZE);
	evhttp_set_max_body_size(s->evh, HTTP_MAX_BODY_SIZE);
	evhttp_set_timeout_tv(s->evh, &timeout);
	evhttp_set_gencb(s->evh, on_request, s);

	s->bound = evhttp_bind_socket_with_handle(s->evh, addr->host[0] ? addr->host : "0.0.0.0",
						  (ev_uint16_t)addr->port);
	if (!s->bound) {
		snprintf(err, errlen, "cannot listen on %s:%d for http: %s",
			 addr->host[0] ? addr->host : "*", addr->port, strerror(errno));
		http_server_free(s);
		return NULL;
	}
	return s;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	if (s->evh)
		evhttp_free(s->evh);
	free(s);
}

const struct http_stats *http_server_stats(const struct http_server *s)
{
	return &s->stats;
}
