/*
 * The SPOP agent for HAProxy's SPOE filter (spoe_listen): answers
 * NOTIFY pgbdr-status with an ACK that sets the node and cluster
 * variables, read from the cached status only.
 */
#ifndef PGBDR_SPOP_SERVER_H
#define PGBDR_SPOP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "units.h"

struct spop_server;

/* Bind and serve; NULL with err filled when the address is unusable. */
struct spop_server *spop_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
/* Closes every connection too. Counters: struct agent (counters.h). */
void spop_server_free(struct spop_server *s);

/*
 * After a reload: spoe_max_frame_size, spoe_max_fragmented and
 * client_timeout apply to new connections (and to every timer armed
 * from now on); open connections keep the frame size they negotiated.
 */
void spop_server_reconfigure(struct spop_server *s, const struct agent_config *cfg,
			     const struct logger *log);

#endif
