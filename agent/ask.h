/*
 * The daemon's side of answer.h: puts a question to the node table.
 * Builds answer.c's const view of a node from struct node and the
 * agent's leader and clock, so that every responder asks the same way.
 */
#ifndef PGBDR_ASK_H
#define PGBDR_ASK_H

#include "agent.h"
#include "answer.h"

/* The answer for node n (limits may be NULL). */
void ask_node(const struct agent *a, const struct node *n, enum duty duty,
	      const struct answer_limits *limits, struct answer *out);

/*
 * The node that answers best for a duty (answer_better), and its
 * answer; NULL, with out->node "", when no node passes.
 */
const struct node *ask_best(const struct agent *a, enum duty duty,
			    const struct answer_limits *limits, struct answer *out);

/*
 * The node that best takes a duty with no limits: for "any" the serving
 * node with the least known lag (unknown lag ranks after any known lag,
 * then priority, then name); NULL when none passes.
 */
const struct node *ask_best_node(const struct agent *a, enum duty duty);

#endif
