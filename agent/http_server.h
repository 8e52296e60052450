/*
 * The HTTP listener (http_listen): the transport under http.c's
 * replies. Its counters are plain data in struct agent (counters.h);
 * its limits and connections belong to its listener (listener.h).
 */
#ifndef PGBDR_HTTP_SERVER_H
#define PGBDR_HTTP_SERVER_H

#include "agent.h"

struct http_server;

/*
 * Bind http_listen (or addr) and serve. NULL with err filled when the
 * address is unusable; http_server_free() closes every connection.
 */
struct http_server *http_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
void http_server_free(struct http_server *s);

/* For tests and fuzzing: a connected socket (a socketpair), and the bound port. */
int http_server_adopt(struct http_server *s, int fd);
int http_server_port(const struct http_server *s);

#endif
