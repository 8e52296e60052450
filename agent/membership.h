/*
 * A node's membership from its peers' side. BDR 1.0 records a part in
 * the catalogs of the nodes that remain (node_status 'k'); the parted
 * node itself may never hear of it and go on calling itself ready. One
 * agent watching every node (central mode) reads it there. Pure: facts
 * in, facts out.
 */
#ifndef PGBDR_MEMBERSHIP_H
#define PGBDR_MEMBERSHIP_H

#include "peer_view.h"
#include "status.h"

/*
 * Mark facts unhealthy ("parted from the group") when a peer vouches
 * for it: a peer probed now, healthy by its own catalog, that this node
 * lists among its own peers, and whose catalog records this node as
 * parted and not also as a member under the same name. Returns true if
 * it did; an earlier problem is kept.
 */
bool parted_by_peers(struct node_facts *facts, const struct peer_view *const *peers,
		     int n_peers);

#endif
