/*
 * The HTTP responder for HAProxy's `option httpchk` and for people:
 * routes a request to a reply built from the cached status only, and
 * frames replies. Shared by the listener (http_server.c) and --inetd.
 */
#ifndef PGBDR_HTTP_H
#define PGBDR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "http_parser.h"
#include "units.h"

struct evbuffer;

enum http_method {
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_OPTIONS,
	HTTP_METHOD_OTHER, /* known to HTTP but not served here: 405 */
	HTTP_METHOD_UNKNOWN, /* a token HTTP does not define: 501 */
};

struct http_reply {
	int code;
	const char *reason;
	const char *content_type;
	const char *allow;       /* Allow header for 405, else NULL */
	struct evbuffer *body;   /* caller-owned, filled by http_route */
};

/* path without the query; query may be NULL. */
void http_route(const struct agent *a, enum http_method method, const char *path,
		const char *query, struct http_reply *reply);

enum http_method http_method_from_name(const char *name);

/* The reply to a head http_parse_request() refused: 400, or 505 for the version. */
void http_reply_parse_error(struct http_reply *r, enum http_parse_result result);

/*
 * Status line, headers (always an exact Content-Length) and, unless
 * head_only, the body, which is moved out of r->body.
 */
void http_format_reply(int minor_version, const struct http_reply *r, bool head_only,
		       bool keep_alive, struct evbuffer *out);

#endif
