/*
 * The HTTP listener (http_listen): the transport under http.c's
 * replies. Its counters are plain data in struct agent (counters.h).
 */
#ifndef PGBDR_HTTP_SERVER_H
#define PGBDR_HTTP_SERVER_H

#include <stddef.h>

#include "agent.h"
#include "units.h"

struct http_server;

/* Bind and serve; NULL with err filled when the address is unusable. */
struct http_server *http_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
/* Closes every connection too. */
void http_server_free(struct http_server *s);

/* Serve an already connected socket (socketpair in tests and fuzzing). */
int http_server_adopt(struct http_server *s, int fd);
int http_server_port(const struct http_server *s);

#endif
