/*
 * Unit tests for agent/connect_slots.c: slots are granted first come,
 * first served; never more than the limit are held; a slot comes back
 * whichever way the attempt ended (connected, failed, timed out: all
 * leave the queue the same way) and goes to the first waiter; a waiter
 * freed while queued is never granted; a reload's new limit applies.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "connect_slots.h"

#define N 8

/* Records the order in which waiters are granted. */
static int granted_order[64];
static int n_granted;

static void on_granted(void *owner)
{
	granted_order[n_granted++] = (int)(intptr_t)owner;
}

static void setup_waiters(struct connect_waiter w[N])
{
	n_granted = 0;
	for (int i = 0; i < N; i++)
		connect_waiter_init(&w[i], on_granted, (void *)(intptr_t)i);
}

static void test_bound_then_fifo(void **state)
{
	struct connect_slots s;
	struct connect_waiter w[N];

	(void)state;
	setup_waiters(w);
	connect_slots_init(&s, 2);
	assert_true(connect_slots_acquire(&s, &w[0]));
	assert_true(connect_slots_acquire(&s, &w[1]));
	for (int i = 2; i < N; i++)
		assert_false(connect_slots_acquire(&s, &w[i]));
	assert_int_equal(s.in_use, 2);
	assert_int_equal(s.waiting, N - 2);
	/* asking again changes nothing, and keeps the place in the queue */
	assert_true(connect_slots_acquire(&s, &w[0]));
	assert_false(connect_slots_acquire(&s, &w[2]));
	assert_int_equal(s.waiting, N - 2);

	/* every release hands the slot to the oldest waiter, never more than 2 held */
	for (int i = 0; i < N; i++) {
		connect_slots_leave(&s, &w[i]);
		assert_true(s.in_use <= 2);
	}
	assert_int_equal(n_granted, N - 2);
	for (int i = 0; i < N - 2; i++)
		assert_int_equal(granted_order[i], i + 2);
	assert_int_equal(s.in_use, 0);
	assert_int_equal(s.waiting, 0);
	assert_null(s.head);
	assert_null(s.tail);
}

/* The poller leaves the queue on success, failure and timeout alike. */
static void test_release_on_each_outcome(void **state)
{
	static const char *const outcome[] = { "connected", "failed", "timed out" };
	struct connect_slots s;
	struct connect_waiter w[N];

	(void)state;
	setup_waiters(w);
	connect_slots_init(&s, 1);
	assert_true(connect_slots_acquire(&s, &w[0]));
	for (int i = 1; i <= 3; i++)
		assert_false(connect_slots_acquire(&s, &w[i]));
	for (int i = 0; i < 3; i++) {
		/* the holder's attempt ends (outcome[i]): the next waiter holds it */
		connect_slots_leave(&s, &w[i]);
		assert_int_equal(w[i].state, SLOT_NONE);
		assert_int_equal(w[i + 1].state, SLOT_HOLDING);
		assert_int_equal(n_granted, i + 1);
		assert_int_equal(s.in_use, 1);
		print_message("slot passed on after an attempt %s\n", outcome[i]);
	}
	/* a node that failed may ask again, and goes to the back */
	assert_false(connect_slots_acquire(&s, &w[0]));
	connect_slots_leave(&s, &w[3]);
	assert_int_equal(granted_order[n_granted - 1], 0);
}

static void test_freed_waiter_never_granted(void **state)
{
	struct connect_slots s;
	struct connect_waiter w[N];

	(void)state;
	setup_waiters(w);
	connect_slots_init(&s, 1);
	assert_true(connect_slots_acquire(&s, &w[0]));
	for (int i = 1; i < 5; i++)
		assert_false(connect_slots_acquire(&s, &w[i]));
	/* freed while queued: the head, the middle and the tail */
	connect_slots_leave(&s, &w[1]);
	connect_slots_leave(&s, &w[3]);
	connect_slots_leave(&s, &w[4]);
	assert_int_equal(s.waiting, 1);
	assert_int_equal(n_granted, 0);
	assert_int_equal(s.in_use, 1);
	connect_slots_leave(&s, &w[0]);
	assert_int_equal(n_granted, 1);
	assert_int_equal(granted_order[0], 2);
	connect_slots_leave(&s, &w[2]);
	assert_int_equal(n_granted, 1);
	assert_int_equal(s.in_use, 0);
	assert_null(s.head);
	/* leaving twice, or without ever asking, is harmless */
	connect_slots_leave(&s, &w[2]);
	connect_slots_leave(&s, &w[5]);
	assert_int_equal(s.in_use, 0);
	assert_int_equal(s.waiting, 0);
}

/* A free slot is not taken past a waiter: first come, first served. */
static void test_no_overtaking(void **state)
{
	struct connect_slots s;
	struct connect_waiter w[N];

	(void)state;
	setup_waiters(w);
	connect_slots_init(&s, 1);
	assert_true(connect_slots_acquire(&s, &w[0]));
	assert_false(connect_slots_acquire(&s, &w[1]));
	connect_slots_set_limit(&s, 1);
	assert_false(connect_slots_acquire(&s, &w[2]));
	connect_slots_leave(&s, &w[0]);
	assert_int_equal(w[1].state, SLOT_HOLDING);
	assert_int_equal(w[2].state, SLOT_WAITING);
}

static void test_set_limit(void **state)
{
	struct connect_slots s;
	struct connect_waiter w[N];

	(void)state;
	setup_waiters(w);
	connect_slots_init(&s, 0);
	assert_int_equal(s.limit, 1);
	assert_true(connect_slots_acquire(&s, &w[0]));
	for (int i = 1; i < N; i++)
		assert_false(connect_slots_acquire(&s, &w[i]));
	/* raised: waiters are granted at once, in order */
	connect_slots_set_limit(&s, 4);
	assert_int_equal(s.in_use, 4);
	assert_int_equal(n_granted, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(granted_order[i], i + 1);
	/* lowered: those in flight finish, nobody new starts until under it */
	connect_slots_set_limit(&s, 2);
	connect_slots_leave(&s, &w[0]);
	connect_slots_leave(&s, &w[1]);
	assert_int_equal(n_granted, 3);
	assert_int_equal(s.in_use, 2);
	connect_slots_leave(&s, &w[2]);
	assert_int_equal(n_granted, 4);
	assert_int_equal(granted_order[3], 4);
	assert_int_equal(s.in_use, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_then_fifo),
		cmocka_unit_test(test_release_on_each_outcome),
		cmocka_unit_test(test_freed_waiter_never_granted),
		cmocka_unit_test(test_no_overtaking),
		cmocka_unit_test(test_set_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
