/*
 * The SPOP agent for HAProxy's SPOE filter (spoe_listen): answers
 * NOTIFY pgbdr-status with an ACK that sets the node and cluster
 * variables, read from the cached status only.
 */
#ifndef PGBDR_SPOP_SERVER_H
#define PGBDR_SPOP_SERVER_H

#include <stddef.h>

#include "agent.h"
#include "units.h"

struct spop_server;

/* Bind and serve; NULL with err filled when the address is unusable. */
struct spop_server *spop_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
void spop_server_free(struct spop_server *s);

#endif
