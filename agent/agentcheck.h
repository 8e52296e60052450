/*
 * The agent-check responder (agent_listen) for HAProxy's
 * `agent-check`: one line per connection with a health word, an admin
 * word and a weight, read from the cached status.
 */
#ifndef PGBDR_AGENTCHECK_H
#define PGBDR_AGENTCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "units.h"

struct agentcheck_server;

/*
 * The reply line, '\n'-terminated, for a request line such as
 * "node2", "node2 write" or "" (the default node). Pure: no I/O.
 */
void agentcheck_format_reply(const struct agent *a, const char *request,
			     char *buf, size_t len);

struct agentcheck_server *agentcheck_server_new(struct agent *a, const struct listen_addr *addr,
						char *err, size_t errlen);
/* Closes every connection too. Counters: struct agent (counters.h). */
void agentcheck_server_free(struct agentcheck_server *s);

#endif
