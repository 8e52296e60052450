/*
 * Physical split brain: two servers of one streaming cluster both out of
 * recovery (a standby promoted while the old primary still runs). Only
 * one may ever take writes. Pure: statuses in, a verdict out.
 */
#ifndef PGBDR_SPLITBRAIN_H
#define PGBDR_SPLITBRAIN_H

#include <stddef.h>

#include "status.h"

/*
 * Whether self must not take writes because another physical primary
 * is serving too. The one on the strictly highest timeline (it was
 * promoted last) keeps writing; when timelines cannot tell, neither
 * does. reason (len bytes) names both nodes when true is returned.
 */
/*
 * Whether st takes part in the guard at all: a serving, writable
 * physical primary. Only such a node's changes can change another's
 * verdict, so a fleet of other flavors never pays for the guard.
 */
bool split_brain_candidate(const struct node_status *st);

bool split_brain_blocks_writes(const struct node_status *self,
			       const struct node_status *const *others, int n_others,
			       char *reason, size_t len);

#endif
