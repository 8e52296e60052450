/*
 * A node's own staleness from its peers' side. One agent watching every
 * node (central mode) can read, in each peer's slots, how far that peer
 * has got in sending to this node: that is what this node has not yet
 * applied, the figure a reader routed to it sees. Pure: facts in, facts
 * out.
 */
#ifndef PGBDR_LAG_H
#define PGBDR_LAG_H

#include "peer_view.h"
#include "status.h"

/*
 * Fill facts' lag from the peers' outgoing streams that match its
 * incoming keys: the worst of them, and of what the node measured
 * itself. Only when every incoming stream is found among the peers,
 * each with a known lag; otherwise facts keep what the probe found
 * (unknown, unless it could measure). Returns true if it set the lag.
 */
bool lag_from_peers(struct node_facts *facts, const struct peer_view *const *peers,
		    int n_peers);

#endif
