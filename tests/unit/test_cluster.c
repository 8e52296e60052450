/*
 * Unit tests for write-leader election (agent/cluster.c): determinism,
 * stickiness, the delayed return of a preferred node, the handover
 * gap that keeps a proxy from ever seeing two leaders, and convergence
 * of agents whose histories differ.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.h"

#define RETURN_DELAY 10000
#define HANDOVER 2000

static const struct leader_policy policy = {
	.return_delay_ms = RETURN_DELAY,
	.handover_ms = HANDOVER,
};

/* three nodes: a (priority 1), b (priority 2), c (priority 2) */
struct view {
	struct leader_candidate c[3];
};

static void view_init(struct view *v)
{
	v->c[0] = (struct leader_candidate){ .name = "a", .priority = 1 };
	v->c[1] = (struct leader_candidate){ .name = "b", .priority = 2 };
	v->c[2] = (struct leader_candidate){ .name = "c", .priority = 2 };
}

static void set_eligible(struct view *v, int i, bool on, int64_t since)
{
	v->c[i].eligible = on;
	v->c[i].eligible_since_ms = on ? since : 0;
}

static void all_eligible(struct view *v, int64_t since)
{
	for (int i = 0; i < 3; i++)
		set_eligible(v, i, true, since);
}

static void test_first_election_is_immediate_and_by_priority(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	assert_true(leader_elect(v.c, 3, &policy, 1000, &st));
	assert_string_equal(st.leader, "a");
	assert_string_equal(st.pending, "");
}

static void test_equal_priority_breaks_ties_by_name(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	set_eligible(&v, 0, false, 0);
	leader_elect(v.c, 3, &policy, 1000, &st);
	assert_string_equal(st.leader, "b");
}

static void test_order_of_candidates_does_not_matter(void **state)
{
	struct view v;
	struct leader_candidate reversed[3];
	struct leader_state st1 = { 0 }, st2 = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	set_eligible(&v, 0, false, 0);
	for (int i = 0; i < 3; i++)
		reversed[i] = v.c[2 - i];
	leader_elect(v.c, 3, &policy, 1000, &st1);
	leader_elect(reversed, 3, &policy, 1000, &st2);
	assert_string_equal(st1.leader, st2.leader);
}

static void test_no_eligible_node_means_no_leader(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	assert_false(leader_elect(v.c, 3, &policy, 1000, &st));
	assert_string_equal(st.leader, "");
}

static void test_failover_withdraws_at_once_and_grants_after_handover(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	set_eligible(&v, 0, false, 0);

	assert_true(leader_elect(v.c, 3, &policy, 5000, &st));
	assert_string_equal(st.leader, "");
	assert_string_equal(st.pending, "b");

	leader_elect(v.c, 3, &policy, 5000 + HANDOVER - 1, &st);
	assert_string_equal(st.leader, "");

	assert_true(leader_elect(v.c, 3, &policy, 5000 + HANDOVER, &st));
	assert_string_equal(st.leader, "b");
	assert_string_equal(st.pending, "");
}

static void test_healthy_leader_keeps_role_when_preferred_returns(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	set_eligible(&v, 0, false, 0);
	leader_elect(v.c, 3, &policy, 1000, &st);
	assert_string_equal(st.leader, "b");

	set_eligible(&v, 0, true, 2000);
	assert_false(leader_elect(v.c, 3, &policy, 2000 + RETURN_DELAY - 1, &st));
	assert_string_equal(st.leader, "b");
}

static void test_preferred_node_returns_after_delay_with_handover(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	set_eligible(&v, 0, false, 0);
	leader_elect(v.c, 3, &policy, 1000, &st);
	set_eligible(&v, 0, true, 2000);

	assert_true(leader_elect(v.c, 3, &policy, 2000 + RETURN_DELAY, &st));
	assert_string_equal(st.leader, "");
	assert_string_equal(st.pending, "a");
	leader_elect(v.c, 3, &policy, 2000 + RETURN_DELAY + HANDOVER, &st);
	assert_string_equal(st.leader, "a");
}

static void test_same_priority_returns_by_name_after_delay(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	set_eligible(&v, 2, true, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	assert_string_equal(st.leader, "c");

	/* b sorts first by name at the same priority: it takes the role,
	 * but only once it has been eligible for return_delay */
	set_eligible(&v, 1, true, 1000);
	leader_elect(v.c, 3, &policy, 1000 + RETURN_DELAY - 1, &st);
	assert_string_equal(st.leader, "c");
	leader_elect(v.c, 3, &policy, 1000 + RETURN_DELAY, &st);
	assert_string_equal(st.pending, "b");
	leader_elect(v.c, 3, &policy, 1000 + RETURN_DELAY + HANDOVER, &st);
	assert_string_equal(st.leader, "b");
}

static void test_failover_prefers_a_settled_node(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	set_eligible(&v, 1, true, 1);
	set_eligible(&v, 2, true, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	assert_string_equal(st.leader, "b");

	/* a has just come up when b fails: c, settled, goes first, so that
	 * an agent that saw a flip does not pick a node others still doubt */
	set_eligible(&v, 0, true, 20000);
	set_eligible(&v, 1, false, 0);
	leader_elect(v.c, 3, &policy, 20001, &st);
	assert_string_equal(st.pending, "c");
}

/*
 * One agent's history: its leader_state and, per node, since when it
 * has seen the node eligible (each agent tracks that itself).
 */
struct sim_agent {
	struct leader_state st;
	int64_t since[3];
};

static void sim_restart(struct sim_agent *ag)
{
	memset(ag, 0, sizeof(*ag));
}

static void sim_step(struct sim_agent *ag, const bool eligible[3], int64_t now)
{
	struct view v;

	view_init(&v);
	for (int i = 0; i < 3; i++) {
		if (!eligible[i])
			ag->since[i] = 0;
		else if (!ag->since[i])
			ag->since[i] = now;
		set_eligible(&v, i, eligible[i], ag->since[i]);
		/* equal priorities, as peers read from a catalog have */
		v.c[i].priority = 0;
	}
	leader_elect(v.c, 3, &policy, now, &ag->st);
}

/* What each agent sees from a time on, and whether it restarts then. */
struct sim_event {
	int64_t at_ms;
	int agent;          /* 0 or 1 */
	bool eligible[3];   /* a, b, c as that agent sees them */
	bool restart;
};

struct sim_case {
	const char *name;
	struct sim_event events[8];
	int n_events;
};

#define ALL { true, true, true }
#define NOT_A { false, true, true }

static const struct sim_case divergent_cases[] = {
	{ "a flip seen by agent 0 only, then agent 1 restarts", {
		{ 0, 0, ALL, false }, { 0, 1, ALL, false },
		{ 20000, 0, NOT_A, false }, { 25000, 0, ALL, false },
		{ 27000, 1, ALL, true },
	}, 5 },
	{ "a flip seen by agent 0 only, agent 0 restarts during the return delay", {
		{ 0, 0, ALL, false }, { 0, 1, ALL, false },
		{ 20000, 0, NOT_A, false }, { 25000, 0, ALL, false },
		{ 27000, 0, ALL, true },
	}, 5 },
	{ "started apart: agent 1 starts while a is down, a comes back", {
		{ 0, 0, ALL, false }, { 5000, 0, NOT_A, false },
		{ 9000, 1, NOT_A, true }, { 12000, 0, ALL, false }, { 12000, 1, ALL, false },
	}, 5 },
	{ "both restart at different times after a long outage of a", {
		{ 0, 0, NOT_A, false }, { 0, 1, NOT_A, false },
		{ 30000, 0, ALL, true }, { 31000, 1, ALL, false },
		{ 33000, 1, ALL, true },
	}, 5 },
};

static void run_divergent_case(const struct sim_case *sc)
{
	struct sim_agent ag[2];
	bool view[2][3] = { { false, false, false }, { false, false, false } };
	int64_t last_change = 0;
	int64_t end;
	int next = 0;

	sim_restart(&ag[0]);
	sim_restart(&ag[1]);
	for (int i = 0; i < sc->n_events; i++)
		if (sc->events[i].at_ms > last_change)
			last_change = sc->events[i].at_ms;
	end = last_change + RETURN_DELAY + HANDOVER;
	for (int64_t now = 0; now <= end; now += 100) {
		while (next < sc->n_events && sc->events[next].at_ms <= now) {
			const struct sim_event *e = &sc->events[next++];

			if (e->restart)
				sim_restart(&ag[e->agent]);
			memcpy(view[e->agent], e->eligible, sizeof(view[0]));
		}
		sim_step(&ag[0], view[0], now);
		sim_step(&ag[1], view[1], now);
	}
	/* same facts for return_delay + handover: one name, the preferred one */
	if (strcmp(ag[0].st.leader, "a") != 0 || strcmp(ag[1].st.leader, "a") != 0)
		fail_msg("%s: agents name '%s' and '%s', want 'a' and 'a'", sc->name,
			 ag[0].st.leader, ag[1].st.leader);
}

static void test_divergent_histories_converge(void **state)
{
	for (size_t i = 0; i < sizeof(divergent_cases) / sizeof(divergent_cases[0]); i++)
		run_divergent_case(&divergent_cases[i]);
}

static void test_pending_leader_lost_during_handover_is_replaced(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	set_eligible(&v, 0, false, 0);
	leader_elect(v.c, 3, &policy, 2000, &st);
	assert_string_equal(st.pending, "b");

	set_eligible(&v, 1, false, 0);
	leader_elect(v.c, 3, &policy, 2500, &st);
	assert_string_equal(st.leader, "");
	assert_string_equal(st.pending, "c");
	/* the gap restarts for the new choice */
	leader_elect(v.c, 3, &policy, 2500 + HANDOVER - 1, &st);
	assert_string_equal(st.leader, "");
	leader_elect(v.c, 3, &policy, 2500 + HANDOVER, &st);
	assert_string_equal(st.leader, "c");
}

static void test_old_leader_back_during_handover_does_not_flap(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	set_eligible(&v, 0, false, 0);
	leader_elect(v.c, 3, &policy, 2000, &st);
	set_eligible(&v, 0, true, 2100);
	leader_elect(v.c, 3, &policy, 2000 + HANDOVER, &st);
	assert_string_equal(st.leader, "b");
}

static void test_everyone_down_then_back(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	all_eligible(&v, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	for (int i = 0; i < 3; i++)
		set_eligible(&v, i, false, 0);
	assert_true(leader_elect(v.c, 3, &policy, 2000, &st));
	assert_string_equal(st.leader, "");
	assert_string_equal(st.pending, "");

	set_eligible(&v, 2, true, 3000);
	leader_elect(v.c, 3, &policy, 3000, &st);
	assert_string_equal(st.leader, "");
	leader_elect(v.c, 3, &policy, 3000 + HANDOVER, &st);
	assert_string_equal(st.leader, "c");
}

static void test_write_eligibility(void **state)
{
	struct node_status st = { .state = STATE_READY };

	assert_true(status_write_eligible(&st));
	st.state = STATE_DEGRADED;
	assert_true(status_write_eligible(&st));
	st.read_only = true;
	assert_false(status_write_eligible(&st));
	st.read_only = false;
	st.state = STATE_DRAINING;
	assert_false(status_write_eligible(&st));
	st.state = STATE_DOWN;
	assert_false(status_write_eligible(&st));
}


/* ---- the etcd lease: fencing (lease_leader) ---- */

#define TTL 9000
static const struct lease_policy lease_pol = { .ttl_ms = TTL, .handover_ms = HANDOVER };

/* A key this agent read at 'read_at', holding 'holder' since 'since'. */
static struct lease_facts seen(const char *holder, int64_t read_at, int64_t since)
{
	struct lease_facts f = { .read_at_ms = read_at, .holder_since_ms = since };

	f.key_present = holder != NULL;
	snprintf(f.holder, sizeof(f.holder), "%s", holder ? holder : "");
	return f;
}

struct lease_case {
	const char *name;
	struct lease_facts facts;
	int64_t now;
	const char *leader;      /* expected */
	const char *why;         /* a word the reason must contain, when no leader */
};

static void test_lease_fencing_table(void **state)
{
	struct lease_facts held = seen("a", 100000, 50000);
	struct lease_facts held_stale = held;
	struct lease_facts err = seen("a", 100000, 50000);
	const int64_t settle = TTL / 2 + HANDOVER;

	held.held = true;
	held.renewed_at_ms = 100000;
	held_stale.held = true;
	held_stale.renewed_at_ms = 100000;
	snprintf(err.error, sizeof(err.error), "connection refused");

	const struct lease_case cases[] = {
		{ "never reached", seen(NULL, 0, 0), 1000, "", "not reached" },
		{ "free key", seen(NULL, 100000, 100000), 100100, "", "nobody" },
		{ "settled holder, fresh read", seen("a", 100000, 50000), 100100, "a", NULL },
		{ "read just inside ttl/2", seen("a", 100000, 50000), 100000 + TTL / 2 - 1, "a",
		  NULL },
		{ "read at ttl/2: stale", seen("a", 100000, 50000), 100000 + TTL / 2, "",
		  "unreachable" },
		{ "new key: not before ttl/2 + handover", seen("a", 100000 + settle - 1, 100000),
		  100000 + settle - 1, "", "takes the etcd lease" },
		{ "new key, settled", seen("a", 100000 + settle, 100000), 100000 + settle, "a",
		  NULL },
		{ "not a node name", seen("", 100000, 50000), 100100, "", "node name" },
		{ "holder renewed in time", held, 100000 + TTL / 2 - 1, "a", NULL },
		{ "holder not renewed for ttl/2", held_stale, 100000 + TTL / 2, "",
		  "not renewed" },
		{ "unreachable says why", err, 100000 + TTL, "", "connection refused" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct lease_case *lc = &cases[i];
		char why[REASON_MAX] = "";
		const char *got = lease_leader(&lc->facts, &lease_pol, lc->now, why, sizeof(why));

		if (strcmp(got, lc->leader) != 0)
			fail_msg("%s: leader '%s', want '%s'", lc->name, got, lc->leader);
		if (lc->why && !strstr(why, lc->why))
			fail_msg("%s: reason '%s' lacks '%s'", lc->name, why, lc->why);
	}
}

static void test_lease_state_names(void **state)
{
	struct lease_facts f = seen(NULL, 0, 0);

	assert_string_equal(lease_state_name(&f, &lease_pol, 1000), "unreachable");
	f = seen(NULL, 1000, 1000);
	assert_string_equal(lease_state_name(&f, &lease_pol, 1100), "free");
	f = seen("b", 1000, 1000);
	assert_string_equal(lease_state_name(&f, &lease_pol, 1100), "taken");
	f.held = true;
	f.renewed_at_ms = 1000;
	assert_string_equal(lease_state_name(&f, &lease_pol, 1100), "held");
	assert_string_equal(lease_state_name(&f, &lease_pol, 1000 + TTL / 2), "unreachable");
}

/*
 * Two agents, one holds the key and loses etcd, the other reads it: at
 * no time do both name a leader that differs, through the old key's
 * lapse (ttl after the last renewal) and a new key taken at once.
 */
static void test_lease_never_two_names(void **state)
{
	const int64_t renewed = 10000, lapse = renewed + TTL;
	struct lease_facts holder = seen("a", renewed, 0);
	struct lease_facts reader = seen("a", renewed, 0);

	holder.held = true;
	holder.renewed_at_ms = renewed;
	for (int64_t now = renewed; now < lapse + 3 * TTL; now += 50) {
		char w1[REASON_MAX], w2[REASON_MAX];
		const char *x, *y;

		/* the reader reads every 100 ms; etcd answers until the lapse
		 * with "a", from then on with "b" (taken at the lapse) */
		if (now % 100 == 0) {
			bool new_key = now >= lapse;

			if (new_key && strcmp(reader.holder, "b") != 0)
				reader = seen("b", now, now);
			reader.read_at_ms = now;
		}
		x = lease_leader(&holder, &lease_pol, now, w1, sizeof(w1));
		y = lease_leader(&reader, &lease_pol, now, w2, sizeof(w2));
		if (x[0] && y[0] && strcmp(x, y) != 0)
			fail_msg("at %lld: '%s' and '%s'", (long long)now, x, y);
	}
	assert_string_equal(lease_leader(&reader, &lease_pol, lapse + 3 * TTL - 100, NULL, 0), "b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_election_is_immediate_and_by_priority),
		cmocka_unit_test(test_equal_priority_breaks_ties_by_name),
		cmocka_unit_test(test_order_of_candidates_does_not_matter),
		cmocka_unit_test(test_no_eligible_node_means_no_leader),
		cmocka_unit_test(test_failover_withdraws_at_once_and_grants_after_handover),
		cmocka_unit_test(test_healthy_leader_keeps_role_when_preferred_returns),
		cmocka_unit_test(test_preferred_node_returns_after_delay_with_handover),
		cmocka_unit_test(test_same_priority_returns_by_name_after_delay),
		cmocka_unit_test(test_failover_prefers_a_settled_node),
		cmocka_unit_test(test_divergent_histories_converge),
		cmocka_unit_test(test_pending_leader_lost_during_handover_is_replaced),
		cmocka_unit_test(test_old_leader_back_during_handover_does_not_flap),
		cmocka_unit_test(test_everyone_down_then_back),
		cmocka_unit_test(test_write_eligibility),
		cmocka_unit_test(test_lease_fencing_table),
		cmocka_unit_test(test_lease_state_names),
		cmocka_unit_test(test_lease_never_two_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
