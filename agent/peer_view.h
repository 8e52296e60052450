/*
 * What one node's last probe round tells about the others: whether it
 * answered and is healthy, its catalog name, its peers as it sees them,
 * and how far it has sent to each of them. Central mode keeps one per
 * node for the other nodes' rounds (lag.c, membership.c); per-node mode
 * one per peer it asks (peer_lag.c). A compact copy, sized to what the
 * round found: the full facts are 34 kB of fixed arrays, and a fleet of
 * 1000 nodes would keep 34 MB of them for a few hundred bytes each.
 */
#ifndef PGBDR_PEER_VIEW_H
#define PGBDR_PEER_VIEW_H

#include <stdbool.h>

#include "status.h"

struct peer_view {
	bool probed_ok;                 /* the round's outcome was PROBE_OK */
	bool healthy;
	char catalog_name[NODE_NAME_MAX];
	int n_peers;
	int n_outgoing;
	const struct peer_fact *peers;        /* n_peers, in the same allocation */
	const struct outgoing_fact *outgoing; /* n_outgoing, in the same allocation */
};

/* One allocation, owned by the caller (peer_view_free); NULL when out of memory. */
struct peer_view *peer_view_new(const struct node_facts *facts);
void peer_view_free(struct peer_view *view);

#endif
