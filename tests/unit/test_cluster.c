/*
 * Unit tests for write-leader election (agent/cluster.c): determinism,
 * stickiness, the delayed return of a preferred node, and the handover
 * gap that keeps a proxy from ever seeing two leaders.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

static void test_same_priority_does_not_preempt(void **state)
{
	struct view v;
	struct leader_state st = { 0 };

	view_init(&v);
	set_eligible(&v, 2, true, 1);
	leader_elect(v.c, 3, &policy, 1000, &st);
	assert_string_equal(st.leader, "c");

	/* b sorts first by name but has the same priority: c stays */
	set_eligible(&v, 1, true, 1000);
	leader_elect(v.c, 3, &policy, 1000 + 10 * RETURN_DELAY, &st);
	assert_string_equal(st.leader, "c");
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
		cmocka_unit_test(test_same_priority_does_not_preempt),
		cmocka_unit_test(test_pending_leader_lost_during_handover_is_replaced),
		cmocka_unit_test(test_old_leader_back_during_handover_does_not_flap),
		cmocka_unit_test(test_everyone_down_then_back),
		cmocka_unit_test(test_write_eligibility),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
