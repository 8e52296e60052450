/*
 * A bounded number of connection attempts in flight, granted in FIFO
 * order. Opening a PostgreSQL connection is the expensive part of a
 * probe (the server forks a backend, and SCRAM is computed on both
 * sides, the agent's part synchronously inside PQconnectPoll): when
 * hundreds of nodes connect at once every attempt slows down together
 * until none finishes within timeout. With a bound, an attempt that
 * starts has the machine's attention, and its timeout starts when it
 * starts. The queue is plain data with no I/O: the grant callback is
 * the owner's, and must not call back into the queue (the poller's
 * only schedules itself).
 */
#ifndef PGBDR_CONNECT_SLOTS_H
#define PGBDR_CONNECT_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

enum connect_slot_state {
	SLOT_NONE,     /* neither holds a slot nor waits for one */
	SLOT_WAITING,  /* queued */
	SLOT_HOLDING,  /* may connect now */
};

struct connect_waiter {
	enum connect_slot_state state;
	struct connect_waiter *prev, *next; /* the queue, while SLOT_WAITING */
	/* called when a queued waiter is granted a slot (it is SLOT_HOLDING then) */
	void (*granted)(void *owner);
	void *owner;
};

struct connect_slots {
	int limit;                 /* at least 1 */
	int in_use;                /* waiters SLOT_HOLDING */
	int waiting;               /* waiters SLOT_WAITING */
	struct connect_waiter *head, *tail;
	uint64_t granted_total;    /* slots handed out, at once or from the queue */
	uint64_t queued_total;     /* attempts that had to wait */
};

void connect_slots_init(struct connect_slots *s, int limit);

/* A waiter in SLOT_NONE with its callback. */
void connect_waiter_init(struct connect_waiter *w, void (*granted)(void *owner), void *owner);

/*
 * Ask for a slot: true when w holds one (now or already); false when it
 * is queued (or already was), and granted() will say when it holds one.
 * A free slot is taken at once only when nobody waits, so that the
 * queue stays first come, first served.
 */
bool connect_slots_acquire(struct connect_slots *s, struct connect_waiter *w);

/*
 * w is done with the queue, whatever its state: a slot it holds is
 * released (the attempt succeeded, failed or timed out) and goes to the
 * first waiter; a queued w leaves the queue. Afterwards w is SLOT_NONE.
 */
void connect_slots_leave(struct connect_slots *s, struct connect_waiter *w);

/* After a reload: a higher limit grants waiters at once; a lower one
 * lets the attempts in flight finish. limit < 1 counts as 1. */
void connect_slots_set_limit(struct connect_slots *s, int limit);

#endif
