/*
 * Central mode's membership: a part that only the peers' catalogs
 * record. Kept apart from the probes (one node each) and from
 * evaluate() (one node's facts), like lag.c, since it needs two nodes.
 */
#include <stdio.h>
#include <string.h>

#include "membership.h"

static bool lists_peer(const struct node_facts *f, const char *name)
{
	for (int i = 0; i < f->n_peers && i < MAX_PEERS; i++)
		if (strncmp(f->peers[i].name, name, NODE_NAME_MAX) == 0)
			return true;
	return false;
}

/* Whether p's catalog records name as parted, and only as parted. */
static bool records_parted(const struct peer_view *p, const char *name)
{
	bool parted = false;

	for (int i = 0; i < p->n_peers; i++) {
		if (strncmp(p->peers[i].name, name, NODE_NAME_MAX) != 0)
			continue;
		if (!p->peers[i].parted)
			return false;
		parted = true;
	}
	return parted;
}

bool parted_by_peers(struct node_facts *facts, const struct peer_view *const *peers,
		     int n_peers)
{
	const char *self = facts->catalog_name;

	if (facts->outcome != PROBE_OK || !facts->healthy || !self[0])
		return false;
	for (int i = 0; i < n_peers; i++) {
		const struct peer_view *p = peers[i];

		if (!p || !p->probed_ok || !p->healthy || !p->catalog_name[0] ||
		    strncmp(p->catalog_name, self, NODE_NAME_MAX) == 0)
			continue;
		if (!lists_peer(facts, p->catalog_name) || !records_parted(p, self))
			continue;
		facts->healthy = false;
		snprintf(facts->problem, sizeof(facts->problem),
			 "node parted from the group, as %.*s's catalog records", NODE_NAME_MAX,
			 p->catalog_name);
		return true;
	}
	return false;
}
