/*
 * The HTTP responder for HAProxy's `option httpchk` and for people:
 * routes a request to a reply built from the cached status only. The
 * routing is shared by the evhttp listener and by --inetd.
 */
#ifndef PGBDR_HTTP_H
#define PGBDR_HTTP_H

#include <stddef.h>

#include "agent.h"
#include "units.h"

struct evbuffer;
struct http_server;

enum http_method {
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_OPTIONS,
	HTTP_METHOD_OTHER, /* known to HTTP but not served here: 405 */
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

struct http_stats {
	uint64_t requests;
	uint64_t refused;       /* by allow_from */
	uint64_t responses[6];  /* by class: [2] = 2xx ... [5] = 5xx */
};

const struct http_stats *http_server_stats(const struct http_server *s);

/* Bind and serve; NULL with err filled when the address is unusable. */
struct http_server *http_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
void http_server_free(struct http_server *s);

#endif
