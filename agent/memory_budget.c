/*
 * The client memory budget (see memory_budget.h): plain accounting, no
 * allocation of its own.
 */
#include <event2/buffer.h>

#include "memory_budget.h"

void memory_budget_init(struct memory_budget *b, size_t limit)
{
	b->limit = limit;
	b->held = 0;
	b->peak = 0;
	b->shed = 0;
}

bool memory_budget_fits(const struct memory_budget *b, size_t more)
{
	return b->held <= b->limit && more <= b->limit - b->held;
}

bool memory_budget_spent(const struct memory_budget *b)
{
	return b->held > b->limit;
}

void memory_budget_take(struct memory_budget *b, size_t n)
{
	b->held += n;
	if (b->held > b->peak)
		b->peak = b->held;
}

void memory_budget_give(struct memory_budget *b, size_t n)
{
	b->held -= n < b->held ? n : b->held;
}

void memory_budget_reset_peak(struct memory_budget *b)
{
	b->peak = b->held;
}

void memory_budget_on_buffer(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			     void *arg)
{
	struct memory_budget *b = arg;

	(void)buf;
	memory_budget_take(b, info->n_added);
	memory_budget_give(b, info->n_deleted);
}
