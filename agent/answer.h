/*
 * The one answer every protocol gives: for a node, a duty and optional
 * limits, whether the node passes, at what weight, and why (on a
 * failure, the condition that failed). HTTP, agent-check, SPOP and the
 * Lua endpoint only format an answer; none of them decides. Pure: it
 * reads a const view of one node's statuses and the cluster's leader,
 * with the clock passed in, and fills a struct.
 */
#ifndef PGBDR_ANSWER_H
#define PGBDR_ANSWER_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

/* What the asker wants the node for. */
enum duty {
	DUTY_ANY = 0, /* the classic check: ready or degraded */
	DUTY_WRITE,   /* the write leader */
	DUTY_READ,    /* serves reads (read-only nodes count), not draining */
	DUTY_REPLICA, /* serves reads and is not the write leader */
	DUTY_RUNNING, /* PostgreSQL answered its last probe, whatever its role */
	DUTY_COUNT
};

const char *duty_name(enum duty d);
/* "any", "write", "read", "replica", "running" (case-insensitive); 0 ok, -1 unknown. */
int duty_from_name(const char *name, enum duty *out);

/* Per-request tightenings; a negative value means no limit. */
struct answer_limits {
	int64_t lag_bytes;
	double lag_seconds;
};

#define ANSWER_NO_LIMITS ((struct answer_limits){ .lag_bytes = -1, .lag_seconds = -1.0 })

/*
 * One limit from a request: key "lag" takes a size ("16MB", bare
 * bytes), "lag_time" a duration ("5s", "500ms", bare seconds). Returns
 * 0 when set, 1 when the key is not a limit, -1 on a bad value.
 */
int answer_limit_parse(const char *key, const char *value, struct answer_limits *limits);

/* One node as the responders see it (agent.h's struct node, flattened). */
struct answer_node {
	const struct node_status *status;      /* served: maintenance and leader flag applied */
	const struct node_status *read_status; /* judged with read_only = ready */
	bool readable;                         /* read_status serving and no maintenance */
	int priority;                          /* write-leader preference, lower first */
};

/* The cluster facts an answer may need, and the clock. */
struct answer_cluster {
	const char *write_leader;     /* "" when there is none */
	const char *no_leader_reason; /* why there is none; "none yet" before the first choice */
	int64_t now_ms;               /* monotonic, as status checked_at_ms */
	int64_t stale_after_ms;
};

struct answer {
	char node[NODE_NAME_MAX]; /* the node answered for, "" when none */
	enum duty duty;
	bool pass;
	/* on a failure: the node is only draining (maintenance), not down */
	bool drain;
	/* the state the answer reports: the node's own when it passes */
	enum node_state state;
	int weight;               /* 0..100; 0 on a failure */
	/* for ranking and the lag in replies */
	bool lag_bytes_known;
	int64_t lag_bytes;
	int priority;
	/* pass: why the node is not plainly ready ("" if it is); fail: the failed condition */
	char reason[REASON_MAX];
};

/* The answer for one node. */
void answer_for(const struct answer_node *node, const struct answer_cluster *cluster,
		enum duty duty, const struct answer_limits *limits, struct answer *out);

/*
 * Whether answer x is a better pick than y for the same duty: a pass
 * before a failure, then a known lag before an unknown one, the lower
 * lag, the lower priority, the name. Picks the best node for a duty.
 */
bool answer_better(const struct answer *x, const struct answer *y);

#endif
