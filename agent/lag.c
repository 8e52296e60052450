/*
 * Central mode's lag: a node's staleness read from its peers' slots.
 * Kept apart from the probes (one node each) and from evaluate() (one
 * node's facts), since it is the one judgement that needs two nodes.
 */
#include <string.h>

#include "lag.h"

/* The peer stream for key: 1 found with a known lag, 0 not found, -1 unknown lag. */
static int find_stream(const char *key, const struct peer_view *const *peers, int n_peers,
		       int64_t *lag)
{
	for (int i = 0; i < n_peers; i++) {
		const struct peer_view *p = peers[i];

		if (!p || !p->probed_ok)
			continue;
		for (int j = 0; j < p->n_outgoing; j++) {
			if (strncmp(p->outgoing[j].to, key, STREAM_KEY_MAX) != 0)
				continue;
			if (!p->outgoing[j].lag_known)
				return -1;
			*lag = p->outgoing[j].lag_bytes;
			return 1;
		}
	}
	return 0;
}

bool lag_from_peers(struct node_facts *facts, const struct peer_view *const *peers,
		    int n_peers)
{
	int64_t worst = facts->lag_bytes_known ? facts->lag_bytes : 0;

	if (facts->outcome != PROBE_OK || facts->n_incoming <= 0)
		return false;
	for (int i = 0; i < facts->n_incoming && i < MAX_PEERS; i++) {
		int64_t lag = 0;

		if (find_stream(facts->incoming[i], peers, n_peers, &lag) <= 0)
			return false;
		if (lag > worst)
			worst = lag;
	}
	facts->lag_bytes_known = true;
	facts->lag_bytes = worst;
	if (worst > 0 && facts->lag_seconds_known && facts->lag_seconds == 0)
		facts->lag_seconds_known = false;
	return true;
}
