/*
 * Write-leader election: deterministic (priority, then name), sticky
 * (a healthy leader keeps the role), with a delayed return for a
 * preferred node and a handover gap so that a proxy never sees two
 * leaders at once. Stickiness ends after return_delay, so agents with
 * different histories converge on one name.
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

static bool settled(const struct leader_candidate *c, const struct leader_policy *policy,
		    int64_t now_ms)
{
	return c->eligible && now_ms - c->eligible_since_ms >= policy->return_delay_ms;
}

/* The preferred node among those eligible for at least return_delay. */
static const struct leader_candidate *best_settled(const struct leader_candidate *c, int n,
						   const struct leader_policy *policy,
						   int64_t now_ms)
{
	const struct leader_candidate *best = NULL;

	for (int i = 0; i < n; i++)
		if (settled(&c[i], policy, now_ms) && (!best || preferred(&c[i], best)))
			best = &c[i];
	return best;
}

/*
 * Who should lead now, given who leads (or is about to). The holder
 * keeps the role while eligible, unless a node preferred over it (by
 * priority, then name: equal priorities still order) has been eligible
 * for return_delay. Without an eligible holder, a settled node goes
 * before one that has just come up. So once every agent has seen the
 * same facts for return_delay, each names the preferred eligible node,
 * whatever it named before: the choice converges.
 */
static const struct leader_candidate *desired_leader(const struct leader_candidate *c, int n,
						     const struct leader_policy *policy,
						     int64_t now_ms, const char *holder)
{
	const struct leader_candidate *current = find(c, n, holder);
	const struct leader_candidate *best = best_settled(c, n, policy, now_ms);

	if (current && current->eligible)
		return best && preferred(best, current) ? best : current;
	return best ? best : best_eligible(c, n);
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

static void ms_text(int64_t ms, char *buf, size_t len)
{
	snprintf(buf, len, "%lld.%llds", (long long)(ms / 1000), (long long)(ms % 1000 / 100));
}

const char *lease_leader(const struct lease_facts *f, const struct lease_policy *policy,
			 int64_t now_ms, char *why, size_t len)
{
	int64_t valid = policy->ttl_ms / 2;
	int64_t settle = valid + policy->handover_ms;
	int64_t seen = f->held ? f->renewed_at_ms : f->read_at_ms;
	char age[32];

	if (!seen || now_ms - seen >= valid) {
		ms_text(seen ? now_ms - seen : 0, age, sizeof(age));
		if (f->held)
			snprintf(why, len, "etcd unreachable: lease not renewed for %s%s%s", age,
				 f->error[0] ? ": " : "", f->error);
		else if (seen)
			snprintf(why, len, "etcd unreachable: no answer for %s%s%s", age,
				 f->error[0] ? ": " : "", f->error);
		else
			snprintf(why, len, "etcd not reached yet%s%s", f->error[0] ? ": " : "",
				 f->error);
		return "";
	}
	if (!f->key_present) {
		snprintf(why, len, "nobody holds the etcd leader key");
		return "";
	}
	if (!f->holder[0]) {
		snprintf(why, len, "the etcd leader key does not hold a node name");
		return "";
	}
	if (now_ms - f->holder_since_ms < settle) {
		ms_text(settle - (now_ms - f->holder_since_ms), age, sizeof(age));
		snprintf(why, len, "%s takes the etcd lease in %s", f->holder, age);
		return "";
	}
	return f->holder;
}

const char *lease_state_name(const struct lease_facts *f, const struct lease_policy *policy,
			     int64_t now_ms)
{
	int64_t valid = policy->ttl_ms / 2;

	if (f->held && now_ms - f->renewed_at_ms < valid)
		return "held";
	if (!f->read_at_ms || now_ms - f->read_at_ms >= valid)
		return "unreachable";
	return f->key_present ? "taken" : "free";
}
