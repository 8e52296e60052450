/*
 * The connect slot queue (see connect_slots.h): a counter and a doubly
 * linked FIFO of waiters that live in their owners (no allocation), so
 * that leaving the queue, as a freed poller does, is O(1).
 */
#include <stddef.h>

#include "connect_slots.h"

void connect_slots_init(struct connect_slots *s, int limit)
{
	*s = (struct connect_slots){ .limit = limit < 1 ? 1 : limit };
}

void connect_waiter_init(struct connect_waiter *w, void (*granted)(void *owner), void *owner)
{
	*w = (struct connect_waiter){ .state = SLOT_NONE, .granted = granted, .owner = owner };
}

static void enqueue(struct connect_slots *s, struct connect_waiter *w)
{
	w->state = SLOT_WAITING;
	w->next = NULL;
	w->prev = s->tail;
	if (s->tail)
		s->tail->next = w;
	else
		s->head = w;
	s->tail = w;
	s->waiting++;
	s->queued_total++;
}

static void unlink_waiter(struct connect_slots *s, struct connect_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		s->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		s->tail = w->prev;
	w->prev = w->next = NULL;
	s->waiting--;
}

static void hold(struct connect_slots *s, struct connect_waiter *w)
{
	w->state = SLOT_HOLDING;
	s->in_use++;
	s->granted_total++;
}

/* Free slots go to the head of the queue. */
static void grant_waiters(struct connect_slots *s)
{
	while (s->head && s->in_use < s->limit) {
		struct connect_waiter *w = s->head;

		unlink_waiter(s, w);
		hold(s, w);
		if (w->granted)
			w->granted(w->owner);
	}
}

bool connect_slots_acquire(struct connect_slots *s, struct connect_waiter *w)
{
	if (w->state == SLOT_HOLDING)
		return true;
	if (w->state == SLOT_WAITING)
		return false;
	if (!s->head && s->in_use < s->limit) {
		hold(s, w);
		return true;
	}
	enqueue(s, w);
	return false;
}

void connect_slots_leave(struct connect_slots *s, struct connect_waiter *w)
{
	if (w->state == SLOT_WAITING) {
		unlink_waiter(s, w);
	} else if (w->state == SLOT_HOLDING) {
		s->in_use--;
		w->state = SLOT_NONE;
		grant_waiters(s);
	}
	w->state = SLOT_NONE;
}

void connect_slots_set_limit(struct connect_slots *s, int limit)
{
	s->limit = limit < 1 ? 1 : limit;
	grant_waiters(s);
}
