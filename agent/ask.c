/*
 * Asking the node table: the glue between struct agent and the pure
 * answer_for(). Nothing is decided here.
 */
#include <stdio.h>
#include <string.h>

#include "ask.h"
#include "clock.h"

static void view_of(const struct node *n, struct answer_node *v)
{
	v->status = &n->status;
	v->read_status = &n->judged_read;
	v->readable = n->readable;
	v->priority = n->cfg->priority;
}

static void cluster_of(const struct agent *a, struct answer_cluster *c)
{
	c->write_leader = agent_write_leader(a);
	c->no_leader_reason = a->no_leader_reason;
	c->now_ms = clock_ms();
	c->stale_after_ms = a->config.policy.stale_after_ms;
}

void ask_node(const struct agent *a, const struct node *n, enum duty duty,
	      const struct answer_limits *limits, struct answer *out)
{
	struct answer_node v;
	struct answer_cluster c;

	view_of(n, &v);
	cluster_of(a, &c);
	answer_for(&v, &c, duty, limits, out);
}

const struct node *ask_best(const struct agent *a, enum duty duty,
			    const struct answer_limits *limits, struct answer *out)
{
	const struct node *best = NULL;
	struct answer_cluster c;
	char why[REASON_MAX];

	cluster_of(a, &c);
	memset(out, 0, sizeof(*out));
	out->duty = duty;
	for (int i = 0; i < a->n_nodes; i++) {
		struct answer_node v;
		struct answer ans;

		view_of(a->nodes[i], &v);
		answer_for(&v, &c, duty, limits, &ans);
		if (!best || answer_better(&ans, out)) {
			best = a->nodes[i];
			*out = ans;
		}
	}
	if (best && out->pass)
		return best;
	/* none passes: say so, with the nearest miss's failed condition */
	if (best)
		snprintf(why, sizeof(why), "no node fit for %s (%.64s: %.160s)", duty_name(duty),
			 out->node, out->reason);
	else
		snprintf(why, sizeof(why), "no node fit for %s", duty_name(duty));
	memcpy(out->reason, why, sizeof(why));
	out->node[0] = '\0';
	out->pass = false;
	out->weight = 0;
	out->state = STATE_DOWN;
	return NULL;
}

const struct node *ask_best_node(const struct agent *a, enum duty duty)
{
	struct answer ans;

	return ask_best(a, duty, NULL, &ans);
}
