/*
 * Write-leader election: deterministic (priority, then name), sticky
 * (a healthy leader keeps the role), with a delayed return for a
 * preferred node and a handover gap so that a proxy never sees two
 * leaders at once.
 */
#include <stdio.h>
#include <string.h>

#include "cluster.h"

bool status_write_eligible(const struct node_status *st)
{
	return state_is_serving(st->state) && !st->read_only;
}

static bool preferred(const struct leader_candidate *a, const struct leader_candidate *b)
{
	if (a->priority != b->priority)
		return a->priority < b->priority;
	return strcmp(a->name, b->name) < 0;
}

static const struct leader_candidate *find(const struct leader_candidate *c, int n,
					   const char *name)
{
	for (int i = 0; name[0] && i < n; i++)
		if (strcmp(c[i].name, name) == 0)
			return &c[i];
	return NULL;
}

static const struct leader_candidate *best_eligible(const struct leader_candidate *c, int n)
{
	const struct leader_candidate *best = NULL;

	for (int i = 0; i < n; i++)
		if (c[i].eligible && (!best || preferred(&c[i], best)))
			best = &c[i];
	return best;
}

/*
 * Who should lead now, given who leads (or is about to): the holder
 * keeps the role while eligible, unless a node of strictly better
 * priority has been eligible for return_delay.
 */
static const struct leader_candidate *desired_leader(const struct leader_candidate *c, int n,
						     const struct leader_policy *policy,
						     int64_t now_ms, const char *holder)
{
	const struct leader_candidate *current = find(c, n, holder);
	const struct leader_candidate *best = best_eligible(c, n);

	if (!current || !current->eligible)
		return best;
	if (best && best->priority < current->priority &&
	    now_ms - best->eligible_since_ms >= policy->return_delay_ms)
		return best;
	return current;
}

static void set_name(char *dst, const char *name)
{
	snprintf(dst, NODE_NAME_MAX, "%s", name ? name : "");
}

bool leader_elect(const struct leader_candidate *c, int n,
		  const struct leader_policy *policy, int64_t now_ms,
		  struct leader_state *st)
{
	const char *holder = st->pending[0] ? st->pending : st->leader;
	const struct leader_candidate *want = desired_leader(c, n, policy, now_ms, holder);
	char before[NODE_NAME_MAX];

	set_name(before, st->leader);
	if (want && strcmp(want->name, st->leader) == 0) {
		st->pending[0] = '\0';
	} else if (!want) {
		st->leader[0] = '\0';
		st->pending[0] = '\0';
	} else if (strcmp(want->name, st->pending) != 0) {
		/* a new choice: withdraw the role now, grant it after the gap */
		bool gap = st->ever_led && policy->handover_ms > 0;

		st->leader[0] = '\0';
		set_name(st->pending, want->name);
		st->pending_until_ms = now_ms + (gap ? policy->handover_ms : 0);
	}
	if (st->pending[0] && now_ms >= st->pending_until_ms) {
		set_name(st->leader, st->pending);
		st->pending[0] = '\0';
	}
	if (st->leader[0])
		st->ever_led = true;
	return strcmp(before, st->leader) != 0;
}
