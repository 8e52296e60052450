/*
 * The cluster view and the write leader. Election is a pure function
 * of the candidates, the previous leader state and the clock, so two
 * agents with the same config and the same view pick the same node,
 * and every rule has a unit test.
 */
#ifndef PGBDR_CLUSTER_H
#define PGBDR_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

struct leader_candidate {
	const char *name;
	int priority;               /* lower is preferred */
	bool eligible;              /* serving, writable, not draining */
	int64_t eligible_since_ms;  /* monotonic; 0 when not eligible */
};

struct leader_policy {
	/* A preferred node that comes back takes the role only after it
	 * has been eligible this long: one good probe is no reason to
	 * move every writer. */
	int64_t return_delay_ms;
	/* Between one leader and the next, nobody leads for this long, so
	 * that HAProxy has seen the old one go before the new one comes:
	 * never two write targets at once. */
	int64_t handover_ms;
};

struct leader_state {
	char leader[NODE_NAME_MAX];   /* "" while there is none */
	char pending[NODE_NAME_MAX];  /* next leader, during a handover */
	int64_t pending_until_ms;
	bool ever_led;                /* a first election needs no handover */
};

/* Update st for now_ms; returns true if st->leader changed. */
bool leader_elect(const struct leader_candidate *c, int n,
		  const struct leader_policy *policy, int64_t now_ms,
		  struct leader_state *st);

/* Whether a node's status makes it a write candidate. */
bool status_write_eligible(const struct node_status *st);

#endif
