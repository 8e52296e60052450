/*
 * A compact copy of what a round tells about the others: see
 * peer_view.h. One allocation holds the struct and both arrays, so a
 * view has one owner and one free.
 */
#include <stdlib.h>
#include <string.h>

#include "peer_view.h"

static int bounded_count(int n)
{
	return n < 0 ? 0 : n > MAX_PEERS ? MAX_PEERS : n;
}

struct peer_view *peer_view_new(const struct node_facts *facts)
{
	bool ok = facts->outcome == PROBE_OK;
	int n_peers = ok ? bounded_count(facts->n_peers) : 0;
	int n_outgoing = ok ? bounded_count(facts->n_outgoing) : 0;
	size_t peers_size = sizeof(struct peer_fact) * (size_t)n_peers;
	size_t outgoing_size = sizeof(struct outgoing_fact) * (size_t)n_outgoing;
	struct peer_view *v = malloc(sizeof(*v) + outgoing_size + peers_size);
	struct outgoing_fact *outgoing;
	struct peer_fact *peers;

	if (!v)
		return NULL;
	/* outgoing first: the struct's alignment suits its int64_t */
	outgoing = (struct outgoing_fact *)(v + 1);
	peers = (struct peer_fact *)((char *)outgoing + outgoing_size);
	memcpy(outgoing, facts->outgoing, outgoing_size);
	memcpy(peers, facts->peers, peers_size);
	*v = (struct peer_view){
		.probed_ok = ok,
		.healthy = facts->healthy,
		.n_peers = n_peers,
		.n_outgoing = n_outgoing,
		.peers = peers,
		.outgoing = outgoing,
	};
	memcpy(v->catalog_name, facts->catalog_name, NODE_NAME_MAX);
	v->catalog_name[NODE_NAME_MAX - 1] = '\0';
	return v;
}

void peer_view_free(struct peer_view *view)
{
	free(view);
}
