/*
 * Per-node mode's lag: an agent watching one node asks that node's
 * peers how far they have sent to it. A BDR 1/2 or pglogical node
 * cannot measure its own staleness; its peers' slots for it can. The
 * peers are found in the node's own catalog (probe_take_peer_dsns),
 * each gets a bounded, read-only connection of its own (a poller
 * running the same flavor's probe), and lag_from_peers() reads their
 * outgoing streams, as in central mode.
 */
#ifndef PGBDR_PEER_LAG_H
#define PGBDR_PEER_LAG_H

#include "config.h"
#include "log.h"
#include "poller.h"
#include "status.h"

struct event_base;
struct evdns_base;
struct peer_lag;

/* log must outlive it. */
struct peer_lag *peer_lag_new(struct event_base *base, struct evdns_base *dns,
			      const struct logger *log);

/*
 * After one of the node's rounds: follow the catalog's peer set in
 * facts (start, keep or stop a connection per peer), then fill facts'
 * lag from the peers' last rounds. The node's own connection settings
 * (user, password, sslmode, timeouts...) are used for the peers, with
 * the catalog's address. A peer that cannot be asked, or has not
 * answered, leaves the lag unknown, and facts->lag_unknown_why names
 * it. name is the node's, for the logs.
 */
void peer_lag_apply(struct peer_lag *pl, const struct node_config *node_cfg,
		    const struct poller_settings *settings, const char *name,
		    struct node_facts *facts);

/* How many peers it reads (each may hold two sockets); 0 for NULL. */
int peer_lag_count(const struct peer_lag *pl);

/* Stops every peer connection, without waiting on the servers. */
void peer_lag_free(struct peer_lag *pl);

#endif
