/*
 * Unit tests for agent/answer.c: one table of duties x node states x
 * limits, one cmocka test per row, so a failure names the rule that
 * broke. Each row gives the whole expected answer: pass, drain, state,
 * weight and the exact reason (the failed condition on a failure).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "answer.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MB(n) ((int64_t)(n) * 1024 * 1024)
#define NOW 100000
#define STALE_AFTER 5000
#define FRESH .checked_at_ms = NOW - 500, .last_probe_at_ms = NOW - 500
#define LAG(b) .lag_bytes_known = true, .lag_bytes = (b)
#define SECS(s) .lag_seconds_known = true, .lag_seconds = (s)

/* ---- node states: the served status and the read judgement ---- */

struct state_case {
	struct node_status status;
	struct node_status read_status;
	bool readable;
	int priority;
};

#define SAME(...) .status = { __VA_ARGS__ }, .read_status = { __VA_ARGS__ }

static const struct state_case leader = {
	SAME(.name = "node1", .flavor = FLAVOR_BDR, .state = STATE_READY, .weight = 100,
	     .write_leader = true, LAG(0), SECS(0.0), FRESH),
	.readable = true, .priority = 1
};
static const struct state_case replica = {
	SAME(.name = "node2", .flavor = FLAVOR_BDR, .state = STATE_READY, .weight = 100,
	     LAG(MB(1)), SECS(0.5), FRESH),
	.readable = true, .priority = 2
};
static const struct state_case degraded = {
	SAME(.name = "node3", .flavor = FLAVOR_BDR, .state = STATE_DEGRADED, .weight = 55,
	     LAG(MB(40)), SECS(12.0), FRESH, .reason = "replication lag 40MB, weight 55%"),
	.readable = true, .priority = 3
};
static const struct state_case lag_down = {
	SAME(.name = "node4", .flavor = FLAVOR_BDR, .state = STATE_DOWN, .weight = 0,
	     LAG(MB(80)), FRESH, .reason = "replication lag 80MB > 64MB")
};
static const struct state_case unreachable = {
	SAME(.name = "node5", .flavor = FLAVOR_BDR, .state = STATE_DOWN,
	     .checked_at_ms = NOW - 9000, .last_probe_at_ms = NOW - 500,
	     .reason = "could not connect: Connection refused")
};
static const struct state_case never = {
	SAME(.name = "node5", .flavor = FLAVOR_BDR, .state = STATE_DOWN,
	     .last_probe_at_ms = NOW - 500, .reason = "")
};
static const struct state_case draining = {
	.status = { .name = "node6", .flavor = FLAVOR_BDR, .state = STATE_DRAINING, .weight = 100,
		    .maintenance = true, LAG(0), FRESH, .reason = "maintenance file present" },
	.read_status = { .name = "node6", .flavor = FLAVOR_BDR, .state = STATE_READY,
			 .weight = 100, LAG(0), FRESH },
	.readable = false
};
static const struct state_case draining_leader = {
	.status = { .name = "node1", .flavor = FLAVOR_BDR, .state = STATE_DRAINING, .weight = 100,
		    .write_leader = true, .maintenance = true, LAG(0), FRESH,
		    .reason = "maintenance file present" },
	.read_status = { .name = "node1", .flavor = FLAVOR_BDR, .state = STATE_READY,
			 .weight = 100, LAG(0), FRESH },
	.readable = false
};
static const struct state_case standby = {
	.status = { .name = "node7", .flavor = FLAVOR_PHYSICAL, .state = STATE_DOWN,
		    .read_only = true, LAG(MB(2)), FRESH,
		    .reason = "read-only node (policy read_only = down)" },
	.read_status = { .name = "node7", .flavor = FLAVOR_PHYSICAL, .state = STATE_READY,
			 .weight = 100, .read_only = true, LAG(MB(2)), FRESH },
	.readable = true
};
static const struct state_case unknown_lag = {
	SAME(.name = "node8", .flavor = FLAVOR_BDR, .state = STATE_READY, .weight = 10, FRESH,
	     .reason = "lag unknown, weight 10%"),
	.readable = true
};
static const struct state_case plain = {
	SAME(.name = "node9", .flavor = FLAVOR_PLAIN, .state = STATE_READY, .weight = 100, FRESH),
	.readable = true
};
static const struct state_case stale = {
	SAME(.name = "node10", .flavor = FLAVOR_BDR, .state = STATE_DOWN,
	     .checked_at_ms = NOW - 7000, .last_probe_at_ms = NOW - 7000,
	     .reason = "no good probe for 7s")
};

/* ---- clusters ---- */

static const struct answer_cluster led_by_1 = { "node1", "", NOW, STALE_AFTER };
static const struct answer_cluster led_by_2 = { "node2", "", NOW, STALE_AFTER };
static const struct answer_cluster no_leader_yet = { "", "none yet", NOW, STALE_AFTER };
static const struct answer_cluster no_leader_etcd = { "", "etcd unreachable", NOW, STALE_AFTER };

#define NO_LIMITS { -1, -1.0 }
#define LAG_LIMIT(b) { (b), -1.0 }
#define TIME_LIMIT(s) { -1, (s) }

struct answer_case {
	const char *name;
	const struct state_case *node;
	const struct answer_cluster *cluster;
	enum duty duty;
	struct answer_limits limits;
	bool pass;
	bool drain;
	enum node_state state;
	int weight;
	const char *reason; /* the whole text */
};

static const struct answer_case cases[] = {
	/* any: the classic check */
	{ "any: ready", &leader, &led_by_1, DUTY_ANY, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "any: degraded serves at its weight", &degraded, &led_by_1, DUTY_ANY, NO_LIMITS,
	  true, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%" },
	{ "any: down names its reason", &lag_down, &led_by_1, DUTY_ANY, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "replication lag 80MB > 64MB" },
	{ "any: maintenance drains", &draining, &led_by_1, DUTY_ANY, NO_LIMITS,
	  false, true, STATE_DRAINING, 0, "maintenance file present" },
	{ "any: read-only standby is down by policy", &standby, &led_by_1, DUTY_ANY, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "read-only node (policy read_only = down)" },
	{ "any: down without a reason says down", &never, &led_by_1, DUTY_ANY, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "down" },
	/* any, with limits */
	{ "any: lag within the limit", &replica, &led_by_1, DUTY_ANY, LAG_LIMIT(MB(16)),
	  true, false, STATE_READY, 100, "" },
	{ "any: lag over the limit", &degraded, &led_by_1, DUTY_ANY, LAG_LIMIT(MB(16)),
	  false, false, STATE_DOWN, 0, "lag 40MB > 16MB" },
	{ "any: lag equal to the limit passes", &replica, &led_by_1, DUTY_ANY, LAG_LIMIT(MB(1)),
	  true, false, STATE_READY, 100, "" },
	{ "any: a ready node over a tiny limit is down, not ready", &replica, &led_by_1, DUTY_ANY,
	  LAG_LIMIT(1024), false, false, STATE_DOWN, 0, "lag 1MB > 1kB" },
	{ "any: unknown lag fails a limit", &unknown_lag, &led_by_1, DUTY_ANY, LAG_LIMIT(MB(1024)),
	  false, false, STATE_DOWN, 0, "lag unknown > 1GB" },
	{ "any: plain has nothing to lag behind", &plain, &led_by_1, DUTY_ANY, LAG_LIMIT(0),
	  true, false, STATE_READY, 100, "" },
	{ "any: lag_time within", &degraded, &led_by_1, DUTY_ANY, TIME_LIMIT(30.0),
	  true, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%" },
	{ "any: lag_time over", &degraded, &led_by_1, DUTY_ANY, TIME_LIMIT(5.0),
	  false, false, STATE_DOWN, 0, "lag_time 12s > 5s" },
	{ "any: unknown lag_time fails", &unknown_lag, &led_by_1, DUTY_ANY, TIME_LIMIT(5.0),
	  false, false, STATE_DOWN, 0, "lag_time unknown > 5s" },
	{ "any: plain passes lag_time", &plain, &led_by_1, DUTY_ANY, TIME_LIMIT(0.0),
	  true, false, STATE_READY, 100, "" },
	{ "any: the down reason beats the limit", &lag_down, &led_by_1, DUTY_ANY, LAG_LIMIT(MB(1)),
	  false, false, STATE_DOWN, 0, "replication lag 80MB > 64MB" },

	/* write: binary, never a drain */
	{ "write: the leader", &leader, &led_by_1, DUTY_WRITE, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "write: only the published leader flag counts",
	  &degraded, &(struct answer_cluster){ "node3", "", NOW, STALE_AFTER }, DUTY_WRITE,
	  NO_LIMITS, false, false, STATE_DOWN, 0, "not the write leader (leader: node3)" },
	{ "write: another node leads", &replica, &led_by_1, DUTY_WRITE, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not the write leader (leader: node1)" },
	{ "write: no leader yet", &replica, &no_leader_yet, DUTY_WRITE, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not the write leader (leader: none yet)" },
	{ "write: no leader, and why", &replica, &no_leader_etcd, DUTY_WRITE, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not the write leader (leader: none: etcd unreachable)" },
	{ "write: a down node", &lag_down, &led_by_1, DUTY_WRITE, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not the write leader: replication lag 80MB > 64MB" },
	{ "write: the leader in maintenance is down, not drained", &draining_leader, &led_by_1,
	  DUTY_WRITE, NO_LIMITS, false, false, STATE_DOWN, 0,
	  "not the write leader: maintenance file present" },
	{ "write: the leader within a lag limit", &leader, &led_by_1, DUTY_WRITE, LAG_LIMIT(0),
	  true, false, STATE_READY, 100, "" },

	/* read: read-only nodes count, maintenance drains */
	{ "read: the leader reads too", &leader, &led_by_1, DUTY_READ, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "read: a read-only standby", &standby, &led_by_1, DUTY_READ, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "read: degraded at its weight", &degraded, &led_by_1, DUTY_READ, NO_LIMITS,
	  true, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%" },
	{ "read: maintenance drains", &draining, &led_by_1, DUTY_READ, NO_LIMITS,
	  false, true, STATE_DRAINING, 0, "maintenance file present" },
	{ "read: down", &unreachable, &led_by_1, DUTY_READ, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "could not connect: Connection refused" },
	{ "read: standby over a lag limit", &standby, &led_by_1, DUTY_READ, LAG_LIMIT(MB(1)),
	  false, false, STATE_DOWN, 0, "lag 2MB > 1MB" },
	{ "read: standby unknown lag_time fails", &standby, &led_by_1, DUTY_READ, TIME_LIMIT(1.0),
	  false, false, STATE_DOWN, 0, "lag_time unknown > 1s" },

	/* replica: reads, and not the write leader */
	{ "replica: a replica", &replica, &led_by_1, DUTY_REPLICA, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "replica: the leader is not one", &leader, &led_by_1, DUTY_REPLICA, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "the write leader is not a replica" },
	{ "replica: by the cluster's leader name", &replica, &led_by_2, DUTY_REPLICA, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "the write leader is not a replica" },
	{ "replica: a standby", &standby, &led_by_1, DUTY_REPLICA, NO_LIMITS,
	  true, false, STATE_READY, 100, "" },
	{ "replica: within the lag limit", &replica, &led_by_1, DUTY_REPLICA, LAG_LIMIT(MB(16)),
	  true, false, STATE_READY, 100, "" },
	{ "replica: over the lag limit", &degraded, &led_by_1, DUTY_REPLICA, LAG_LIMIT(MB(16)),
	  false, false, STATE_DOWN, 0, "lag 40MB > 16MB" },
	{ "replica: maintenance drains", &draining, &led_by_1, DUTY_REPLICA, NO_LIMITS,
	  false, true, STATE_DRAINING, 0, "maintenance file present" },

	/* running: PostgreSQL answered, whatever its role or lag */
	{ "running: down by lag, but running", &lag_down, &led_by_1, DUTY_RUNNING, LAG_LIMIT(0),
	  true, false, STATE_DOWN, 100, "replication lag 80MB > 64MB" },
	{ "running: draining is running", &draining, &led_by_1, DUTY_RUNNING, NO_LIMITS,
	  true, false, STATE_DRAINING, 100, "maintenance file present" },
	{ "running: last probe failed", &unreachable, &led_by_1, DUTY_RUNNING, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not running: could not connect: Connection refused" },
	{ "running: never reached", &never, &led_by_1, DUTY_RUNNING, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not running: never reached" },
	{ "running: stale", &stale, &led_by_1, DUTY_RUNNING, NO_LIMITS,
	  false, false, STATE_DOWN, 0, "not running: last good probe 7s ago" },
};

static void test_answer_case(void **state)
{
	const struct answer_case *c = *state;
	struct answer_node view = { &c->node->status, &c->node->read_status, c->node->readable,
				    c->node->priority };
	struct answer got;

	answer_for(&view, c->cluster, c->duty, &c->limits, &got);
	if (got.pass != c->pass)
		fail_msg("pass %d, want %d (reason \"%s\")", got.pass, c->pass, got.reason);
	if (got.drain != c->drain)
		fail_msg("drain %d, want %d", got.drain, c->drain);
	if (got.state != c->state)
		fail_msg("state %s, want %s", state_name(got.state), state_name(c->state));
	if (got.weight != c->weight)
		fail_msg("weight %d, want %d", got.weight, c->weight);
	if (strcmp(got.reason, c->reason) != 0)
		fail_msg("reason \"%s\", want \"%s\"", got.reason, c->reason);
	assert_string_equal(got.node, c->node->status.name);
	assert_int_equal(got.duty, c->duty);
}

/* ---- picking the best node for a duty ---- */

static void pick(const struct state_case *const *nodes, size_t n, const struct answer_cluster *c,
		 enum duty duty, struct answer_limits lim, struct answer *best)
{
	memset(best, 0, sizeof(*best));
	for (size_t i = 0; i < n; i++) {
		struct answer_node v = { &nodes[i]->status, &nodes[i]->read_status,
					 nodes[i]->readable, nodes[i]->priority };
		struct answer a;

		answer_for(&v, c, duty, &lim, &a);
		if (i == 0 || answer_better(&a, best))
			*best = a;
	}
}

static void test_best_replica_is_least_lagged_within_limit(void **state)
{
	const struct state_case *nodes[] = { &leader, &degraded, &replica, &unknown_lag, &lag_down };
	struct answer best;

	(void)state;
	pick(nodes, ARRAY_SIZE(nodes), &led_by_1, DUTY_REPLICA, (struct answer_limits)NO_LIMITS, &best);
	assert_true(best.pass);
	assert_string_equal(best.node, "node2"); /* 1MB beats 40MB, unknown; leader excluded */
	pick(nodes, ARRAY_SIZE(nodes), &led_by_2, DUTY_REPLICA, (struct answer_limits)NO_LIMITS, &best);
	assert_string_equal(best.node, "node3"); /* node2 leads now: the next least lagged */
	pick(nodes, ARRAY_SIZE(nodes), &led_by_2, DUTY_REPLICA,
	     (struct answer_limits)LAG_LIMIT(MB(16)), &best);
	assert_false(best.pass); /* node3 is over 16MB, node8's lag is unknown */
	pick(nodes, ARRAY_SIZE(nodes), &led_by_1, DUTY_WRITE, (struct answer_limits)NO_LIMITS, &best);
	assert_true(best.pass);
	assert_string_equal(best.node, "node1");
}

static void test_better_breaks_ties_by_priority_then_name(void **state)
{
	struct answer x = { .node = "b", .pass = true, LAG(0), .priority = 1 };
	struct answer y = { .node = "a", .pass = true, LAG(0), .priority = 2 };

	(void)state;
	assert_true(answer_better(&x, &y));
	y.priority = 1;
	assert_true(answer_better(&y, &x));
	assert_false(answer_better(&x, &x));
}

static void test_duty_names(void **state)
{
	enum duty d;

	(void)state;
	for (int i = 0; i < DUTY_COUNT; i++) {
		assert_int_equal(duty_from_name(duty_name((enum duty)i), &d), 0);
		assert_int_equal(d, i);
	}
	assert_int_equal(duty_from_name("WRITE", &d), 0);
	assert_int_equal(d, DUTY_WRITE);
	assert_int_equal(duty_from_name("primary", &d), -1);
	assert_int_equal(duty_from_name("", &d), -1);
}

static void test_limit_parse(void **state)
{
	struct answer_limits lim = ANSWER_NO_LIMITS;

	(void)state;
	assert_int_equal(answer_limit_parse("lag", "16MB", &lim), 0);
	assert_int_equal(lim.lag_bytes, MB(16));
	assert_int_equal(answer_limit_parse("lag", "1048576", &lim), 0);
	assert_int_equal(lim.lag_bytes, MB(1));
	assert_int_equal(answer_limit_parse("lag_time", "500ms", &lim), 0);
	assert_true(lim.lag_seconds == 0.5);
	assert_int_equal(answer_limit_parse("lag_time", "3", &lim), 0);
	assert_true(lim.lag_seconds == 3.0);
	assert_int_equal(answer_limit_parse("lag", "-5", &lim), -1);
	assert_int_equal(answer_limit_parse("lag", "abc", &lim), -1);
	assert_int_equal(answer_limit_parse("lag_time", "soon", &lim), -1);
	assert_int_equal(answer_limit_parse("other", "1", &lim), 1);
}

int main(void)
{
	struct CMUnitTest table[ARRAY_SIZE(cases)];
	const struct CMUnitTest others[] = {
		cmocka_unit_test(test_best_replica_is_least_lagged_within_limit),
		cmocka_unit_test(test_better_breaks_ties_by_priority_then_name),
		cmocka_unit_test(test_duty_names),
		cmocka_unit_test(test_limit_parse),
	};
	int failed = 0;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		table[i] = (struct CMUnitTest){ .name = cases[i].name,
						.test_func = test_answer_case,
						.initial_state = (void *)&cases[i] };
	failed += cmocka_run_group_tests_name("answer_for", table, NULL, NULL);
	failed += cmocka_run_group_tests_name("picking and parsing", others, NULL, NULL);
	return failed ? 1 : 0;
}
