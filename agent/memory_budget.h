/*
 * One budget for the memory clients can make the agent hold: SPOP
 * reassembly buffers and the output queued to clients that do not read,
 * SPOP and HTTP alike. struct agent owns it; each server adds and
 * takes away what it holds, and sheds clients when it is spent.
 */
#ifndef PGBDR_MEMORY_BUDGET_H
#define PGBDR_MEMORY_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct evbuffer_cb_info;

/* Reassembly buffers and unsent output of every client connection together. */
#define CLIENT_MEMORY_BUDGET ((size_t)32 << 20)

/*
 * A client with this much output unsent is not reading (HAProxy reads
 * its replies at once): when the budget is spent, such a client goes
 * first, its backlog dropped.
 */
#define CLIENT_BACKLOG_SHED_BYTES (16 * 1024)

struct memory_budget {
	size_t limit;
	size_t held;
	size_t peak;          /* since memory_budget_reset_peak() */
	uint64_t shed;        /* client connections shed to stay within it */
};

void memory_budget_init(struct memory_budget *b, size_t limit);

/* Whether `more` bytes can be held on top of what is held now. */
bool memory_budget_fits(const struct memory_budget *b, size_t more);
bool memory_budget_spent(const struct memory_budget *b);

void memory_budget_take(struct memory_budget *b, size_t n);
void memory_budget_give(struct memory_budget *b, size_t n);
void memory_budget_reset_peak(struct memory_budget *b);

/*
 * An evbuffer callback (evbuffer_add_cb, arg: the budget) that keeps
 * the budget in step with an output buffer's length. Whoever removes
 * the callback gives back the bytes still in the buffer.
 */
void memory_budget_on_buffer(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			     void *arg);

#endif
