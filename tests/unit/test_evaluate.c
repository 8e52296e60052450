/*
 * Unit tests for agent/evaluate.c: one table per public function, one
 * cmocka test per row, so a failure names the rule that broke. Sequences
 * feed each status back in as prev to test rise/fall over time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "evaluate.h"
#include "units.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MB(n) ((int64_t)(n) * 1024 * 1024)
#define NOW 100000
#define PREV_CHECKED_AT 99000

/* Facts builders. Good facts report PGD so a flavor update is visible. */
#define PROBED .outcome = PROBE_OK, .flavor = FLAVOR_PGD
#define GOOD PROBED, .healthy = true
#define UNHEALTHY(why) PROBED, .problem = why
#define LAG(b) .lag_bytes_known = true, .lag_bytes = (b)
#define SECS(s) .lag_seconds_known = true, .lag_seconds = (s)
#define CAUGHT_UP LAG(0), SECS(0.0)
/* Failed rounds carry junk that evaluate() must ignore. */
#define FAILED(o) .outcome = (o), .flavor = FLAVOR_PLAIN, .read_only = true, \
		  LAG(MB(1)), SECS(1.0)
#define BAD FAILED(PROBE_CONNECT_FAILED)

/* ---- policies ---- */

#define LAG_LIMITS .drain_lag = MB(16), .max_lag = MB(64), .max_lag_time = 10.0, \
		   .min_weight = 10, .stale_after_ms = 5000

static const struct policy base = { LAG_LIMITS, .read_only = READ_ONLY_DOWN,
				    .rise = 1, .fall = 1 };
static const struct policy ro_ready = { LAG_LIMITS, .read_only = READ_ONLY_READY,
					.rise = 1, .fall = 1 };
static const struct policy fall2 = { LAG_LIMITS, .rise = 1, .fall = 2 };
static const struct policy rise2 = { LAG_LIMITS, .rise = 2, .fall = 1 };
static const struct policy rise3 = { LAG_LIMITS, .rise = 3, .fall = 1 };
static const struct policy rise3_fall2 = { LAG_LIMITS, .rise = 3, .fall = 2 };
static const struct policy zero_rise_fall = { LAG_LIMITS, .rise = 0, .fall = 0 };
static const struct policy no_limits = { .rise = 1, .fall = 1 };
static const struct policy raft6 = { LAG_LIMITS, .raft_grace_ms = 6000, .rise = 1, .fall = 1 };
static const struct policy drain_only = { .drain_lag = MB(16), .min_weight = 10,
					  .rise = 1, .fall = 1 };

/* ---- previous statuses ---- */

#define PREV_COMMON .name = "node1", .flavor = FLAVOR_BDR, .write_leader = true, \
		    .checked_at_ms = PREV_CHECKED_AT, .last_probe_at_ms = PREV_CHECKED_AT, \
		    .check_ms = 12, .ever_up = true

static const struct node_status prev_never = { .name = "node1" };
static const struct node_status prev_ready = { PREV_COMMON, .state = STATE_READY,
					       .weight = 100, .good_streak = 4 };
static const struct node_status prev_failing = { PREV_COMMON, .state = STATE_READY,
						 .weight = 100, .bad_streak = 1,
						 .reason = "failing 1/2: connection failed" };
static const struct node_status prev_degraded = {
	PREV_COMMON, .state = STATE_DEGRADED, .weight = 55, .good_streak = 4,
	LAG(MB(40)), .reason = "replication lag 40MB, weight 55%" };
static const struct node_status prev_raft_5s = { PREV_COMMON, .state = STATE_DEGRADED,
	.weight = 100, .good_streak = 4, .raft_leaderless_since_ms = NOW - 5000 };
static const struct node_status prev_raft_7s = { PREV_COMMON, .state = STATE_DEGRADED,
	.weight = 100, .good_streak = 4, .raft_leaderless_since_ms = NOW - 7000 };
static const struct node_status prev_draining = {
	PREV_COMMON, .state = STATE_DRAINING, .weight = 100, .good_streak = 4,
	.maintenance = true, .reason = "maintenance file present" };

static void expect_verdict(const char *what, const struct node_status *got,
			   enum node_state state, int weight, const char *reason)
{
	if (got->state != state)
		fail_msg("%s: state %s, want %s (reason \"%s\")", what,
			 state_name(got->state), state_name(state), got->reason);
	if (got->weight != weight)
		fail_msg("%s: weight %d, want %d", what, got->weight, weight);
	if (strcmp(got->reason, reason) != 0)
		fail_msg("%s: reason \"%s\", want \"%s\"", what, got->reason, reason);
}

/* ==== evaluate(): one probe round ==== */

struct eval_case {
	const char *name;
	struct node_facts facts;
	const struct policy *policy;
	const struct node_status *prev;
	bool maintenance;
	enum node_state want_state;
	int want_weight;
	const char *want_reason; /* the whole text; "" for none */
};

static const struct eval_case eval_cases[] = {
	/* Rule 2a: every way a probe can fail is down, with its own text. */
	{ "not yet probed", { FAILED(PROBE_NOT_YET) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "no probe finished yet" },
	{ "resolve failed", { FAILED(PROBE_RESOLVE_FAILED) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "cannot resolve host" },
	{ "connect failed", { FAILED(PROBE_CONNECT_FAILED) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "connection failed" },
	{ "connect timeout", { FAILED(PROBE_CONNECT_TIMEOUT) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "connect timeout" },
	{ "query timeout", { FAILED(PROBE_QUERY_TIMEOUT) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "probe timeout" },
	{ "query failed", { FAILED(PROBE_QUERY_FAILED) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "probe query failed" },
	{ "connection lost", { FAILED(PROBE_CONNECTION_LOST) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "connection lost" },
	{ "waiting for a connection slot", { FAILED(PROBE_CONNECT_WAITING) }, &base, &prev_ready,
	  false, STATE_DOWN, 0, "waiting for a connection slot" },
	{ "unknown outcome", { FAILED((enum probe_outcome)99) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "probe failed" },
	{ "probe error text wins",
	  { FAILED(PROBE_CONNECT_FAILED), .error = "could not connect: Connection refused" },
	  &base, &prev_ready, false, STATE_DOWN, 0, "could not connect: Connection refused" },

	/* Rule 2b: what a successful probe found. */
	{ "healthy, no lag", { GOOD, CAUGHT_UP }, &base, &prev_ready, false, STATE_READY, 100, "" },
	{ "undetected flavor keeps the old one", { .outcome = PROBE_OK, .healthy = true, CAUGHT_UP }, &base,
	  &prev_ready, false, STATE_READY, 100, "" },
	{ "unhealthy", { UNHEALTHY("node is parting") },
	  &base, &prev_ready, false, STATE_DOWN, 0, "node is parting" },
	{ "unhealthy without a problem text", { UNHEALTHY("") },
	  &base, &prev_ready, false, STATE_DOWN, 0, "node reports unhealthy" },
	{ "unhealthy beats lag", { UNHEALTHY("joining"), LAG(MB(80)) },
	  &base, &prev_ready, false, STATE_DOWN, 0, "joining" },
	{ "read-only, policy down", { GOOD, CAUGHT_UP, .read_only = true }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "read-only node (policy read_only = down)" },
	{ "read-only, policy ready", { GOOD, CAUGHT_UP, .read_only = true }, &ro_ready, &prev_ready,
	  false, STATE_READY, 100, "" },
	{ "read-only, policy ready, lag still counts", { GOOD, SECS(1.0), .read_only = true, LAG(MB(40)) },
	  &ro_ready, &prev_ready, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%" },
	{ "read-only down beats lag", { GOOD, SECS(1.0), .read_only = true, LAG(MB(80)) },
	  &base, &prev_ready, false, STATE_DOWN, 0, "read-only node (policy read_only = down)" },

	/* Lag in bytes: drain_lag 16MB, max_lag 64MB, min_weight 10. */
	{ "lag below drain_lag", { GOOD, SECS(1.0), LAG(MB(1)) }, &base, &prev_ready, false,
	  STATE_READY, 100, "" },
	{ "lag exactly drain_lag", { GOOD, SECS(1.0), LAG(MB(16)) }, &base, &prev_ready, false,
	  STATE_READY, 100, "" },
	{ "lag one byte above drain_lag rounds to 100", { GOOD, SECS(1.0), LAG(MB(16) + 1) }, &base,
	  &prev_ready, false, STATE_READY, 100, "" },
	{ "lag midway", { GOOD, SECS(1.0), LAG(MB(40)) }, &base, &prev_ready, false,
	  STATE_DEGRADED, 55, "replication lag 40MB, weight 55%" },
	{ "lag exactly max_lag", { GOOD, SECS(1.0), LAG(MB(64)) }, &base, &prev_ready, false,
	  STATE_DEGRADED, 10, "replication lag 64MB, weight 10%" },
	{ "lag one byte above max_lag", { GOOD, SECS(1.0), LAG(MB(64) + 1) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "replication lag 67108865B > 67108864B" },
	{ "lag half a MB above max_lag", { GOOD, SECS(1.0), LAG(MB(64) + MB(1) / 2) }, &base,
	  &prev_ready, false, STATE_DOWN, 0, "replication lag 64.5MB > 64MB" },
	{ "lag far above max_lag", { GOOD, SECS(1.0), LAG(MB(80)) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "replication lag 80MB > 64MB" },
	{ "bytes reported before seconds", { GOOD, LAG(MB(80)), SECS(12.0) }, &base,
	  &prev_ready, false, STATE_DOWN, 0, "replication lag 80MB > 64MB" },
	{ "drain_lag without max_lag", { GOOD, SECS(1.0), LAG(MB(20)) }, &drain_only, &prev_ready,
	  false, STATE_DEGRADED, 10, "replication lag 20MB, weight 10%" },

	/* Lag in time: max_lag_time 10s. */
	{ "lag exactly max_lag_time", { GOOD, LAG(MB(1)), SECS(10.0) }, &base, &prev_ready, false,
	  STATE_READY, 100, "" },
	{ "lag above max_lag_time", { GOOD, LAG(MB(1)), SECS(12.0) }, &base, &prev_ready, false,
	  STATE_DOWN, 0, "replication lag 12.0s > 10.0s" },
	{ "lag just above max_lag_time shows enough decimals", { GOOD, LAG(MB(1)), SECS(10.001) }, &base,
	  &prev_ready, false, STATE_DOWN, 0, "replication lag 10.001s > 10.000s" },

	/*
	 * Unknown is not zero: under a lag limit it serves at min_weight,
	 * degraded, whatever values were left beside the flags.
	 */
	{ "unknown lag under max_lag serves at min_weight",
	  { GOOD, .lag_bytes = 0, .lag_seconds = 0 }, &base, &prev_ready, false,
	  STATE_DEGRADED, 10, "replication lag unknown, weight 10% (a lag limit is set)" },
	{ "unknown bytes under max_lag, seconds known",
	  { GOOD, SECS(0.0), .lag_bytes = 0 }, &base, &prev_ready, false,
	  STATE_DEGRADED, 10, "replication lag unknown, weight 10% (a lag limit is set)" },
	{ "unknown seconds under max_lag_time, some bytes outstanding",
	  { GOOD, LAG(MB(1)) }, &base, &prev_ready, false,
	  STATE_DEGRADED, 10, "replication lag unknown, weight 10% (a lag limit is set)" },
	{ "unknown seconds, nothing outstanding", { GOOD, LAG(0) }, &base, &prev_ready,
	  false, STATE_READY, 100, "" },
	{ "unknown lag with only drain_lag", { GOOD }, &drain_only, &prev_ready, false,
	  STATE_READY, 100, "" },
	{ "unknown lag with no limits", { GOOD }, &no_limits, &prev_ready, false,
	  STATE_READY, 100, "" },
	{ "unknown lag and impaired", { GOOD, .impaired = true, .impairment = "peer down" },
	  &base, &prev_ready, false, STATE_DEGRADED, 10,
	  "replication lag unknown, weight 10% (a lag limit is set); peer down" },
	/* PGD Raft without a leader: serve on for raft_grace, then down. */
	{ "raft leaderless, first seen", { GOOD, CAUGHT_UP, .raft_leaderless = true }, &raft6,
	  &prev_ready, false, STATE_DEGRADED, 100, "raft has no leader (within raft_grace)" },
	{ "raft leaderless within raft_grace", { GOOD, CAUGHT_UP, .raft_leaderless = true },
	  &raft6, &prev_raft_5s, false, STATE_DEGRADED, 100,
	  "raft has no leader (within raft_grace)" },
	{ "raft leaderless past raft_grace", { GOOD, CAUGHT_UP, .raft_leaderless = true,
					       .raft_text = "raft has no leader in group dc1" }, &raft6,
	  &prev_raft_7s, false, STATE_DOWN, 0, "raft has no leader in group dc1 for 7.0s (raft_grace 6.0s)" },
	{ "raft leader back", { GOOD, CAUGHT_UP }, &raft6, &prev_raft_7s, false, STATE_READY, 100,
	  "" },
	{ "raft_grace 0 fails closed at once", { GOOD, CAUGHT_UP, .raft_leaderless = true },
	  &base, &prev_ready, false, STATE_DOWN, 0,
	  "raft has no leader for 0.0s (raft_grace 0.0s)" },
	{ "limits disabled", { GOOD, LAG(MB(9000)), SECS(9999) }, &no_limits, &prev_ready,
	  false, STATE_READY, 100, "" },

	/* Impaired: still serving, degraded, weight from lag alone. */
	{ "impaired without lag", { GOOD, CAUGHT_UP, .impaired = true,
				    .impairment = "peer node2 disconnected" },
	  &base, &prev_ready, false, STATE_DEGRADED, 100, "peer node2 disconnected" },
	{ "impaired with lag", { GOOD, SECS(1.0), LAG(MB(40)), .impaired = true,
				 .impairment = "peer node2 disconnected" },
	  &base, &prev_ready, false, STATE_DEGRADED, 55,
	  "replication lag 40MB, weight 55%; peer node2 disconnected" },
	{ "impaired without a text", { GOOD, CAUGHT_UP, .impaired = true }, &base, &prev_ready, false,
	  STATE_DEGRADED, 100, "impaired" },

	/* Isolated (no peer replicates with it): serving, at min_weight at most. */
	{ "isolated, caught up", { GOOD, CAUGHT_UP, .impaired = true, .isolated = true,
				   .impairment = "no peer replicating with this node: node2, node3" },
	  &base, &prev_ready, false, STATE_DEGRADED, 10,
	  "no peer replicating with this node: node2, node3; isolated, weight 10%" },
	{ "isolated and lagging", { GOOD, SECS(1.0), LAG(MB(40)), .isolated = true },
	  &base, &prev_ready, false, STATE_DEGRADED, 10,
	  "replication lag 40MB, weight 55%; isolated, weight 10%" },
	{ "isolated, lag unknown: min_weight already", { GOOD, .isolated = true },
	  &base, &prev_ready, false, STATE_DEGRADED, 10,
	  "replication lag unknown, weight 10% (a lag limit is set)" },
	{ "isolated without lag limits", { GOOD, .isolated = true }, &no_limits, &prev_ready,
	  false, STATE_DEGRADED, 0, "isolated, weight 0%" },
	{ "isolated past max_lag: down", { GOOD, LAG(MB(80)), .isolated = true }, &base,
	  &prev_ready, false, STATE_DOWN, 0, "replication lag 80MB > 64MB" },
	{ "isolated and parted: down", { UNHEALTHY("node has parted from the BDR group (status k)"),
					 .isolated = true }, &base, &prev_ready, false, STATE_DOWN, 0,
	  "node has parted from the BDR group (status k)" },

	/* Rule 3, single steps (sequences are further down). */
	{ "first good probe with rise 1", { GOOD, CAUGHT_UP }, &base, &prev_never, false,
	  STATE_READY, 100, "" },
	{ "first good probe with rise 3", { GOOD, CAUGHT_UP }, &rise3, &prev_never, false,
	  STATE_DOWN, 0, "rising: 1/3 good probes" },
	{ "up node skips rise", { GOOD, CAUGHT_UP }, &rise3, &prev_ready, false, STATE_READY, 100, "" },
	{ "draining counts as up", { GOOD, CAUGHT_UP }, &rise3, &prev_draining, false,
	  STATE_READY, 100, "" },
	{ "up node with no good streak skips rise", { GOOD, CAUGHT_UP }, &rise3, &prev_failing, false,
	  STATE_READY, 100, "" },
	{ "fall 2, first bad keeps ready", { BAD }, &fall2, &prev_ready, false,
	  STATE_READY, 100, "failing 1/2: connection failed" },
	{ "fall 2, first bad keeps degraded weight", { BAD }, &fall2, &prev_degraded, false,
	  STATE_DEGRADED, 55, "failing 1/2: connection failed" },
	{ "fall 2, unhealthy is a bad probe", { UNHEALTHY("parted") },
	  &fall2, &prev_ready, false, STATE_READY, 100, "failing 1/2: parted" },
	{ "fall 2, second bad goes down", { BAD }, &fall2, &prev_failing, false,
	  STATE_DOWN, 0, "connection failed" },
	{ "fall 2, no grace for a down node", { BAD }, &fall2, &prev_never, false,
	  STATE_DOWN, 0, "connection failed" },
	{ "fall 1 goes down at once", { BAD }, &base, &prev_degraded, false,
	  STATE_DOWN, 0, "connection failed" },
	{ "rise 0 acts as 1", { GOOD, CAUGHT_UP }, &zero_rise_fall, &prev_never, false,
	  STATE_READY, 100, "" },
	{ "fall 0 acts as 1", { BAD }, &zero_rise_fall, &prev_ready, false,
	  STATE_DOWN, 0, "connection failed" },

	/* Rule 4: maintenance drains what is up and leaves down alone. */
	{ "maintenance, ready", { GOOD, CAUGHT_UP }, &base, &prev_ready, true,
	  STATE_DRAINING, 100, "maintenance file present" },
	{ "maintenance, degraded", { GOOD, SECS(1.0), LAG(MB(40)) }, &base, &prev_ready, true,
	  STATE_DRAINING, 55, "maintenance file present; replication lag 40MB, weight 55%" },
	{ "maintenance, down", { BAD }, &base, &prev_ready, true,
	  STATE_DOWN, 0, "connection failed" },
	{ "maintenance, still rising", { GOOD, CAUGHT_UP }, &rise3, &prev_never, true,
	  STATE_DOWN, 0, "rising: 1/3 good probes" },
	{ "maintenance, held up by fall", { BAD }, &fall2, &prev_ready, true,
	  STATE_DRAINING, 100, "maintenance file present; failing 1/2: connection failed" },
	{ "maintenance, draining held up by fall", { BAD }, &fall2, &prev_draining, true,
	  STATE_DRAINING, 100, "maintenance file present; failing 1/2: connection failed" },
	{ "maintenance removed", { GOOD, CAUGHT_UP }, &base, &prev_draining, false,
	  STATE_READY, 100, "" },
};

/* What every round must do whatever the verdict (rules 1 and 2). */
static void expect_bookkeeping(const char *what, const struct node_facts *facts,
			       const struct node_status *prev, bool maintenance,
			       const struct node_status *got)
{
	if (strcmp(got->name, prev->name) != 0 || got->write_leader != prev->write_leader ||
	    got->check_ms != prev->check_ms)
		fail_msg("%s: name, write_leader or check_ms not carried over", what);
	if (got->last_probe_at_ms != NOW)
		fail_msg("%s: last_probe_at_ms not set", what);
	if (got->maintenance != maintenance)
		fail_msg("%s: maintenance flag %d, want %d", what, got->maintenance, maintenance);
	if (got->state == STATE_DOWN && got->weight != 0)
		fail_msg("%s: down with weight %d", what, got->weight);
	if (got->state != STATE_DOWN && !got->ever_up)
		fail_msg("%s: up but ever_up not set", what);
	if (prev->ever_up && !got->ever_up)
		fail_msg("%s: ever_up cleared", what);

	if (facts->outcome != PROBE_OK) {
		if (got->lag_bytes_known || got->lag_seconds_known)
			fail_msg("%s: a failed probe left lag known", what);
		if (got->flavor != prev->flavor || got->read_only != prev->read_only ||
		    got->checked_at_ms != prev->checked_at_ms)
			fail_msg("%s: a failed probe changed flavor, read_only or checked_at", what);
		return;
	}
	if (got->flavor != (facts->flavor == FLAVOR_AUTO ? prev->flavor : facts->flavor) ||
	    got->read_only != facts->read_only || got->checked_at_ms != NOW)
		fail_msg("%s: flavor, read_only or checked_at not taken from the probe", what);
	if (got->lag_bytes_known != facts->lag_bytes_known ||
	    got->lag_bytes != facts->lag_bytes ||
	    got->lag_seconds_known != facts->lag_seconds_known ||
	    got->lag_seconds != facts->lag_seconds)
		fail_msg("%s: lag not copied from the probe", what);
}

/* What the agent publishes: the judgement, then maintenance on top. */
static void judge(const struct node_facts *facts, const struct policy *policy,
		  const struct node_status *prev, bool maintenance, int64_t now_ms,
		  struct node_status *out)
{
	evaluate(facts, policy, prev, now_ms, out);
	out->maintenance = maintenance;
	status_apply_maintenance(out);
}

static void test_eval_case(void **state)
{
	const struct eval_case *c = *state;
	struct node_status out;

	memset(&out, 0x5a, sizeof(out));
	judge(&c->facts, c->policy, c->prev, c->maintenance, NOW, &out);
	expect_verdict(c->name, &out, c->want_state, c->want_weight, c->want_reason);
	expect_bookkeeping(c->name, &c->facts, c->prev, c->maintenance, &out);
}

/* ==== evaluate() over successive rounds: rise and fall ==== */

static const struct node_facts f_good = { GOOD, CAUGHT_UP };
static const struct node_facts f_bad = { BAD };
static const struct node_facts f_lag40 = { GOOD, SECS(1.0), LAG(MB(40)) };

struct step {
	const struct node_facts *facts;
	bool maintenance;
	enum node_state want_state;
	int want_weight;
	const char *want_reason;
	int want_good;
	int want_bad;
};

#define MAX_STEPS 8

struct sequence {
	const char *name;
	const struct policy *policy;
	struct step steps[MAX_STEPS]; /* ends at the first step without facts */
};

static const struct sequence sequences[] = {
	{ "rise 3 needs three good probes", &rise3, {
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 2/3 good probes", 2, 0 },
		{ &f_good, false, STATE_READY, 100, "", 3, 0 },
		{ &f_good, false, STATE_READY, 100, "", 4, 0 },
	} },
	{ "a bad probe restarts rise", &rise3, {
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 2/3 good probes", 2, 0 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 1 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
	} },
	{ "rise 3 again after going down", &rise3, {
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 2/3 good probes", 2, 0 },
		{ &f_good, false, STATE_READY, 100, "", 3, 0 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 1 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
	} },
	{ "rise 2 with a lagging node", &rise2, {
		{ &f_lag40, false, STATE_DOWN, 0, "rising: 1/2 good probes", 1, 0 },
		{ &f_lag40, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%", 2, 0 },
	} },
	{ "fall 2: one bad probe is tolerated", &fall2, {
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_bad, false, STATE_READY, 100, "failing 1/2: connection failed", 0, 1 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 2 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 3 },
	} },
	{ "fall 2: a good probe resets the count", &fall2, {
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_bad, false, STATE_READY, 100, "failing 1/2: connection failed", 0, 1 },
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_bad, false, STATE_READY, 100, "failing 1/2: connection failed", 0, 1 },
	} },
	{ "fall 2 keeps the degraded weight", &fall2, {
		{ &f_lag40, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%", 1, 0 },
		{ &f_bad, false, STATE_DEGRADED, 55, "failing 1/2: connection failed", 0, 1 },
		{ &f_lag40, false, STATE_DEGRADED, 55, "replication lag 40MB, weight 55%", 1, 0 },
	} },
	{ "rise 3, fall 2: a node held up by fall recovers at once", &rise3_fall2, {
		{ &f_good, false, STATE_DOWN, 0, "rising: 1/3 good probes", 1, 0 },
		{ &f_good, false, STATE_DOWN, 0, "rising: 2/3 good probes", 2, 0 },
		{ &f_good, false, STATE_READY, 100, "", 3, 0 },
		{ &f_bad, false, STATE_READY, 100, "failing 1/2: connection failed", 0, 1 },
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
	} },
	{ "fall 1 goes down at once", &base, {
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 1 },
	} },
	{ "rise and fall 0 act as 1", &zero_rise_fall, {
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_bad, false, STATE_DOWN, 0, "connection failed", 0, 1 },
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
	} },
	{ "maintenance on and off", &base, {
		{ &f_good, false, STATE_READY, 100, "", 1, 0 },
		{ &f_good, true, STATE_DRAINING, 100, "maintenance file present", 2, 0 },
		{ &f_lag40, true, STATE_DRAINING, 55,
		  "maintenance file present; replication lag 40MB, weight 55%", 3, 0 },
		{ &f_good, false, STATE_READY, 100, "", 4, 0 },
	} },
};

/*
 * Runs the sequence twice, once judging in place (out == prev) as a
 * poller may, so that aliasing cannot change a result.
 */
static void run_sequence(const struct sequence *seq, bool in_place)
{
	struct node_status prev = { .name = "node1" };
	struct node_status out;
	char what[160];

	for (int i = 0; i < MAX_STEPS && seq->steps[i].facts; i++) {
		const struct step *s = &seq->steps[i];
		struct node_status *dst = in_place ? &prev : &out;

		snprintf(what, sizeof(what), "%s, step %d%s", seq->name, i + 1,
			 in_place ? " (in place)" : "");
		judge(s->facts, seq->policy, &prev, s->maintenance, NOW + i * 1000, dst);
		expect_verdict(what, dst, s->want_state, s->want_weight, s->want_reason);
		if (dst->good_streak != s->want_good || dst->bad_streak != s->want_bad)
			fail_msg("%s: streaks good %d bad %d, want %d %d", what,
				 dst->good_streak, dst->bad_streak, s->want_good, s->want_bad);
		prev = *dst;
	}
}

static void test_sequence(void **state)
{
	run_sequence(*state, false);
	run_sequence(*state, true);
}

/* ==== evaluate_staleness() ==== */

struct stale_case {
	const char *name;
	enum node_state state;
	int64_t checked_at_ms;
	int64_t stale_after_ms;
	int64_t now_ms;
	bool want_changed;
	const char *want_reason; /* when changed */
};

static const struct stale_case stale_cases[] = {
	{ "fresh", STATE_READY, 100000, 5000, 101000, false, NULL },
	{ "exactly at the limit", STATE_READY, 100000, 5000, 105000, false, NULL },
	{ "one ms over the limit", STATE_READY, 100000, 5000, 105001, true,
	  "status stale: last good probe 5.0s ago" },
	{ "well over the limit", STATE_READY, 100000, 5000, 105200, true,
	  "status stale: last good probe 5.2s ago" },
	{ "never probed", STATE_READY, 0, 5000, 1000, true,
	  "status stale: no good probe yet" },
	{ "degraded goes stale", STATE_DEGRADED, 100000, 5000, 106000, true,
	  "status stale: last good probe 6.0s ago" },
	{ "draining goes stale", STATE_DRAINING, 100000, 5000, 106000, true,
	  "status stale: last good probe 6.0s ago" },
	{ "already down", STATE_DOWN, 100000, 5000, 900000, false, NULL },
	{ "stale_after disabled", STATE_READY, 100000, 0, 900000, false, NULL },
	{ "stale_after negative", STATE_READY, 100000, -1, 900000, false, NULL },
};

static void test_stale_case(void **state)
{
	const struct stale_case *c = *state;
	struct policy policy = base;
	struct node_status st = { .name = "node1", .state = c->state, .weight = 55,
				  .checked_at_ms = c->checked_at_ms, .good_streak = 7,
				  .reason = "connection failed" };
	struct node_status before = st;
	bool changed;

	policy.stale_after_ms = c->stale_after_ms;
	changed = evaluate_staleness(&st, &policy, c->now_ms);
	if (changed != c->want_changed)
		fail_msg("%s: returned %d, want %d", c->name, changed, c->want_changed);
	if (!changed) {
		if (memcmp(&st, &before, sizeof(st)) != 0)
			fail_msg("%s: status touched although unchanged", c->name);
		return;
	}
	expect_verdict(c->name, &st, STATE_DOWN, 0, c->want_reason);
	if (st.good_streak != 0)
		fail_msg("%s: good_streak %d survived staleness", c->name, st.good_streak);
	if (st.checked_at_ms != c->checked_at_ms)
		fail_msg("%s: checked_at_ms changed", c->name);
}

/* A stale node must earn rise fresh probes, not reuse its old streak. */
static void test_stale_then_rise(void **state)
{
	struct node_status st = prev_ready;

	(void)state;
	assert_true(evaluate_staleness(&st, &rise2, PREV_CHECKED_AT + 6000));
	evaluate(&f_good, &rise2, &st, PREV_CHECKED_AT + 6500, &st);
	expect_verdict("stale then good", &st, STATE_DOWN, 0, "rising: 1/2 good probes");
	evaluate(&f_good, &rise2, &st, PREV_CHECKED_AT + 7000, &st);
	expect_verdict("stale then good twice", &st, STATE_READY, 100, "");
}

/* ==== weight_for_lag() ==== */

struct weight_case {
	const char *name;
	int64_t drain_lag;
	int64_t max_lag;
	int min_weight;
	int64_t lag;
	int want;
};

static const struct weight_case weight_cases[] = {
	{ "drain_lag 0 disables", 0, MB(64), 10, MB(1000), 100 },
	{ "drain_lag negative disables", -1, MB(64), 10, MB(1000), 100 },
	{ "no lag", MB(16), MB(64), 10, 0, 100 },
	{ "at drain_lag", MB(16), MB(64), 10, MB(16), 100 },
	{ "one byte over drain_lag", MB(16), MB(64), 10, MB(16) + 1, 100 },
	{ "midpoint", MB(16), MB(64), 10, MB(40), 55 },
	{ "at max_lag", MB(16), MB(64), 10, MB(64), 10 },
	{ "over max_lag", MB(16), MB(64), 10, MB(65), 10 },
	{ "rounds up, not truncates", 100, 400, 0, 110, 97 },
	{ "rounds down", 100, 400, 0, 120, 93 },
	{ "rounds to 100 near drain_lag", 1000, 4000, 0, 1010, 100 },
	{ "first step below 100", 1000, 4000, 0, 1020, 99 },
	{ "max_lag 0 with drain_lag", MB(16), 0, 10, MB(17), 10 },
	{ "max_lag below drain_lag", MB(16), MB(8), 20, MB(17), 20 },
	{ "max_lag below drain_lag, under drain", MB(16), MB(8), 20, MB(12), 100 },
	{ "min_weight over 100 clamps", 100, 200, 150, 150, 100 },
	{ "min_weight negative clamps", 100, 200, -20, 200, 0 },
	{ "min_weight negative, midpoint", 100, 200, -20, 150, 50 },
};

static void test_weight_case(void **state)
{
	const struct weight_case *c = *state;
	struct policy policy = { .drain_lag = c->drain_lag, .max_lag = c->max_lag,
				 .min_weight = c->min_weight };
	int got = weight_for_lag(&policy, c->lag);

	if (got != c->want)
		fail_msg("%s: weight %d, want %d", c->name, got, c->want);
}

/* ==== status_within_lag() ==== */

struct within_case {
	const char *name;
	enum flavor flavor;
	bool read_only;
	bool lag_known;
	int64_t lag;
	int64_t max;
	bool want;
};

static const struct within_case within_cases[] = {
	{ "known, under", FLAVOR_BDR, false, true, MB(1), MB(16), true },
	{ "known, equal", FLAVOR_BDR, false, true, MB(16), MB(16), true },
	{ "known, over", FLAVOR_BDR, false, true, MB(16) + 1, MB(16), false },
	{ "known standby, over", FLAVOR_PHYSICAL, true, true, MB(17), MB(16), false },
	{ "known plain, over", FLAVOR_PLAIN, false, true, MB(17), MB(16), false },
	{ "unknown plain", FLAVOR_PLAIN, false, false, 0, 0, true },
	{ "unknown plain, read-only", FLAVOR_PLAIN, true, false, 0, 0, true },
	{ "unknown physical primary", FLAVOR_PHYSICAL, false, false, 0, 0, true },
	{ "unknown physical standby", FLAVOR_PHYSICAL, true, false, 0, 0, false },
	{ "unknown bdr", FLAVOR_BDR, false, false, 0, MB(16), false },
	{ "unknown pgd", FLAVOR_PGD, false, false, 0, MB(16), false },
	{ "unknown pglogical", FLAVOR_PGLOGICAL, false, false, 0, MB(16), false },
	{ "unknown spock", FLAVOR_SPOCK, false, false, 0, MB(16), false },
	{ "unknown logical", FLAVOR_LOGICAL, false, false, 0, MB(16), false },
	{ "unknown, never probed", FLAVOR_AUTO, false, false, 0, MB(16), false },
};

static void test_within_case(void **state)
{
	const struct within_case *c = *state;
	struct node_status st = { .flavor = c->flavor, .read_only = c->read_only,
				  .lag_bytes_known = c->lag_known, .lag_bytes = c->lag };
	bool got = status_within_lag(&st, c->max);

	if (got != c->want)
		fail_msg("%s: %d, want %d", c->name, got, c->want);
}

/* ==== rule 5: reasons always fit ==== */

static void fill(char *buf, size_t len, const char *unit)
{
	size_t n = strlen(unit);
	size_t at = 0;

	while (at + n < len) {
		memcpy(buf + at, unit, n);
		at += n;
	}
	buf[at] = '\0';
}

static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int more = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 :
			   (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;

		if (more < 0)
			return false;
		for (p++; more > 0; more--, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static void test_long_problem_is_truncated(void **state)
{
	struct node_facts facts = { UNHEALTHY("") };
	struct node_status out;

	(void)state;
	fill(facts.problem, sizeof(facts.problem), "p");
	judge(&facts, &fall2, &prev_ready, true, NOW, &out);
	assert_int_equal(strlen(out.reason), REASON_MAX - 1);
	assert_true(strncmp(out.reason, "maintenance file present; failing 1/2: ppp",
			    strlen("maintenance file present; failing 1/2: ppp")) == 0);
	/* Fields after reason survive the long text. */
	assert_true(out.write_leader);
	assert_true(out.maintenance);
	assert_int_equal(out.checked_at_ms, NOW);
}

static void test_long_error_fits_exactly(void **state)
{
	struct node_facts facts = { BAD };
	struct node_status out;

	(void)state;
	fill(facts.error, sizeof(facts.error), "e");
	evaluate(&facts, &base, &prev_ready, NOW, &out);
	assert_string_equal(out.reason, facts.error);
}

static void test_long_impairment_with_lag(void **state)
{
	struct node_facts facts = { GOOD, SECS(1.0), LAG(MB(40)), .impaired = true };
	struct node_status out;

	(void)state;
	fill(facts.impairment, sizeof(facts.impairment), "i");
	judge(&facts, &base, &prev_ready, true, NOW, &out);
	assert_int_equal(out.state, STATE_DRAINING);
	assert_int_equal(strlen(out.reason), REASON_MAX - 1);
	assert_true(strstr(out.reason, "; replication lag 40MB, weight 55%; iii") != NULL);
}

/* A cut must not leave half a character: the reason ends up in JSON. */
static void test_truncation_keeps_utf8_whole(void **state)
{
	struct node_facts facts = { UNHEALTHY("") };
	struct node_status out;

	(void)state;
	/* "failing 1/2: x" is 14 bytes; 145 bytes remain, an odd number. */
	facts.problem[0] = 'x';
	fill(facts.problem + 1, sizeof(facts.problem) - 1, "\xc3\xa9");
	evaluate(&facts, &fall2, &prev_ready, NOW, &out);
	assert_int_equal(strlen(out.reason), REASON_MAX - 2);
	assert_true(valid_utf8(out.reason));
}

#define TABLE_GROUP(group, table, func)                                        \
	do {                                                                   \
		struct CMUnitTest tests_[ARRAY_SIZE(table)];                   \
		for (size_t i_ = 0; i_ < ARRAY_SIZE(table); i_++)              \
			tests_[i_] = (struct CMUnitTest){                      \
				.name = (table)[i_].name, .test_func = (func), \
				.initial_state = (void *)&(table)[i_] };       \
		failed += cmocka_run_group_tests_name(group, tests_, NULL, NULL); \
	} while (0)

int main(void)
{
	const struct CMUnitTest others[] = {
		cmocka_unit_test(test_stale_then_rise),
		cmocka_unit_test(test_long_problem_is_truncated),
		cmocka_unit_test(test_long_error_fits_exactly),
		cmocka_unit_test(test_long_impairment_with_lag),
		cmocka_unit_test(test_truncation_keeps_utf8_whole),
	};
	int failed = 0;

	TABLE_GROUP("evaluate", eval_cases, test_eval_case);
	TABLE_GROUP("rise and fall", sequences, test_sequence);
	TABLE_GROUP("staleness", stale_cases, test_stale_case);
	TABLE_GROUP("weight_for_lag", weight_cases, test_weight_case);
	TABLE_GROUP("status_within_lag", within_cases, test_within_case);
	failed += cmocka_run_group_tests_name("reasons and staleness", others, NULL, NULL);
	return failed ? 1 : 0;
}
