/*
 * The judgement: turns a probe's facts into a node status under the
 * operator's policy, with rise/fall hysteresis. Pure functions only;
 * every rule here has a table-driven unit test.
 */
#ifndef PGBDR_EVALUATE_H
#define PGBDR_EVALUATE_H

#include "status.h"

/*
 * Judge one finished probe round. prev is the status before this
 * round (a zeroed status for a node never judged). now_ms is the
 * monotonic clock. name, flavor and write_leader are carried over from
 * prev; the caller owns them. Maintenance is not judged here: the
 * caller applies it on top (status_apply_maintenance), so that it can
 * change at once, between probes.
 */
void evaluate(const struct node_facts *facts, const struct policy *policy,
	      const struct node_status *prev, int64_t now_ms, struct node_status *out);

/*
 * Fail closed between probes: a status whose last good probe is older
 * than stale_after becomes down, whatever fall says. Returns true if
 * it changed the status.
 */
bool evaluate_staleness(struct node_status *st, const struct policy *policy,
			int64_t now_ms);

/*
 * Drain a serving node when st->maintenance is set: the agent applies
 * it to what it publishes, so that a maintenance change takes effect
 * at once, without waiting for the next probe.
 */
void status_apply_maintenance(struct node_status *st);

/* 100 below drain_lag, linear down to min_weight at max_lag. */
int weight_for_lag(const struct policy *policy, int64_t lag_bytes);

/*
 * A per-request tightening (HTTP ?lag=): true if the node's known lag
 * is within max_lag_bytes. Unknown lag passes only for flavors that
 * have no replication to lag behind (plain).
 */
bool status_within_lag(const struct node_status *st, int64_t max_lag_bytes);

#endif
