/*
 * Two physical primaries: the one promoted last is on a newer timeline
 * and is the one its standbys follow; the other is stale and must stop
 * taking writes. Timelines are read from the WAL file name of the
 * current position, which any role may compute. If they are equal or
 * unknown, the agent cannot tell which is which, so neither writes.
 */
#include <stdio.h>

#include "splitbrain.h"

static bool is_writable_primary(const struct node_status *st)
{
	return st->flavor == FLAVOR_PHYSICAL && state_is_serving(st->state) && !st->read_only;
}

bool split_brain_candidate(const struct node_status *st)
{
	return is_writable_primary(st);
}

bool split_brain_blocks_writes(const struct node_status *self,
			       const struct node_status *const *others, int n_others,
			       char *reason, size_t len)
{
	if (!is_writable_primary(self))
		return false;
	for (int i = 0; i < n_others; i++) {
		const struct node_status *o = others[i];

		if (!o || o == self || !is_writable_primary(o))
			continue;
		if (self->timeline > 0 && o->timeline > 0 && self->timeline > o->timeline)
			continue;
		if (self->timeline > 0 && o->timeline > self->timeline)
			snprintf(reason, len, "split brain: %s and %s are both primaries; %s is on"
				 " the newer timeline %d (this one: %d), so this one takes no writes",
				 self->name, o->name, o->name, o->timeline, self->timeline);
		else
			snprintf(reason, len, "split brain: %s and %s are both primaries and their"
				 " timelines cannot tell the stale one: neither takes writes",
				 self->name, o->name);
		return true;
	}
	return false;
}
