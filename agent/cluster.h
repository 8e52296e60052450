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

/*
 * The leader lease held in etcd, as one agent has seen it. Times are
 * this agent's monotonic clock; a request counts from when it was sent,
 * since its reply may describe any moment after that.
 */
struct lease_facts {
	bool held;                    /* this agent's lease holds the key */
	int64_t renewed_at_ms;        /* last successful grant or keepalive */
	int64_t read_at_ms;           /* last successful read; 0 = never */
	bool key_present;
	char holder[NODE_NAME_MAX];   /* the key's node; "" if not a node name */
	int64_t holder_since_ms;      /* since when this very key is seen */
	char error[REASON_MAX];       /* the last failure, "" after a success */
};

struct lease_policy {
	int64_t ttl_ms;
	int64_t handover_ms;
};

/*
 * Fencing: who this agent may name write leader now, "" for nobody,
 * with why (when nobody) in why. The holder's own agent names it while
 * a renewal sent less than ttl/2 ago succeeded (the lease lives at
 * least ttl past it); another agent while a read sent less than ttl/2
 * ago showed the key. A new key is named only after ttl/2 + handover:
 * by then every agent has stopped naming the previous holder and every
 * proxy has seen it go.
 */
const char *lease_leader(const struct lease_facts *f, const struct lease_policy *policy,
			 int64_t now_ms, char *why, size_t len);

/*
 * The lease as one word for /status, /metrics and --once: "held" (this
 * agent holds it, renewed in time), "taken" (another holds it),
 * "free" (nobody), "unreachable" (no recent answer from etcd).
 */
const char *lease_state_name(const struct lease_facts *f, const struct lease_policy *policy,
			     int64_t now_ms);

/* Whether a node's status makes it a write candidate. */
bool status_write_eligible(const struct node_status *st);

#endif
