/*
 * The answer to "is this node fit for this duty, within these limits":
 * the rules behind every protocol's reply, decided here once. Each
 * failure names the condition that failed, so that a 503 body, an
 * agent-check "down #reason" and the SPOE reason variable say the same.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "answer.h"
#include "evaluate.h"
#include "units.h"

static const char *const duty_names[DUTY_COUNT] = {
	[DUTY_ANY] = "any",
	[DUTY_WRITE] = "write",
	[DUTY_READ] = "read",
	[DUTY_REPLICA] = "replica",
	[DUTY_RUNNING] = "running",
};

const char *duty_name(enum duty d)
{
	return d >= 0 && d < DUTY_COUNT ? duty_names[d] : "unknown";
}

int duty_from_name(const char *name, enum duty *out)
{
	for (int d = 0; d < DUTY_COUNT; d++) {
		if (strcasecmp(name, duty_names[d]) == 0) {
			*out = (enum duty)d;
			return 0;
		}
	}
	return -1;
}

int answer_limit_parse(const char *key, const char *value, struct answer_limits *limits)
{
	int64_t n;

	if (strcmp(key, "lag") == 0) {
		if (parse_size(value, &n) != 0)
			return -1;
		limits->lag_bytes = n;
		return 0;
	}
	if (strcmp(key, "lag_time") == 0) {
		if (parse_duration_ms(value, &n) != 0 || n < 0)
			return -1;
		limits->lag_seconds = (double)n / 1000.0;
		return 0;
	}
	return 1;
}

static void fail(struct answer *out, const char *reason)
{
	out->pass = false;
	snprintf(out->reason, sizeof(out->reason), "%s", reason);
}

static const char *reason_or_state(const struct node_status *st)
{
	return st->reason[0] ? st->reason : state_name(st->state);
}

/* The classic check: ready or degraded; maintenance drains. */
static void check_any(const struct answer_node *n, struct answer *out)
{
	const struct node_status *st = n->status;

	if (state_is_serving(st->state))
		return;
	out->drain = st->state == STATE_DRAINING;
	fail(out, reason_or_state(st));
}

/* The write role is binary: the leader, serving, and nobody else. */
static void check_write(const struct answer_node *n, const struct answer_cluster *c,
			struct answer *out)
{
	const struct node_status *st = n->status;
	const char *leader = c->write_leader ? c->write_leader : "";
	const char *none_why = c->no_leader_reason ? c->no_leader_reason : "";

	if (st->write_leader && state_is_serving(st->state))
		return;
	out->pass = false;
	if (!state_is_serving(st->state))
		snprintf(out->reason, sizeof(out->reason), "not the write leader: %s",
			 reason_or_state(st));
	else if (!leader[0] && none_why[0] && strcmp(none_why, "none yet") != 0)
		snprintf(out->reason, sizeof(out->reason),
			 "not the write leader (leader: none: %s)", none_why);
	else
		snprintf(out->reason, sizeof(out->reason), "not the write leader (leader: %s)",
			 leader[0] ? leader : "none yet");
}

/* Reads: read-only nodes count, a draining node takes no new ones. */
static void check_read(const struct answer_node *n, struct answer *out)
{
	const struct node_status *rd = n->read_status;

	if (n->readable)
		return;
	if (n->status->maintenance && state_is_serving(rd->state)) {
		out->drain = true;
		fail(out, reason_or_state(n->status));
		return;
	}
	fail(out, reason_or_state(rd));
}

static bool is_write_leader(const struct answer_node *n, const struct answer_cluster *c)
{
	return n->status->write_leader ||
	       (c->write_leader && c->write_leader[0] &&
		strcmp(c->write_leader, n->status->name) == 0);
}

static void check_replica(const struct answer_node *n, const struct answer_cluster *c,
			  struct answer *out)
{
	check_read(n, out);
	if (out->pass && is_write_leader(n, c))
		fail(out, "the write leader is not a replica");
}

/* PostgreSQL answered its last probe, and that probe is fresh. */
static void check_running(const struct answer_node *n, const struct answer_cluster *c,
			  struct answer *out)
{
	const struct node_status *st = n->status;
	char age[32];

	if (st->checked_at_ms == 0) {
		out->pass = false;
		snprintf(out->reason, sizeof(out->reason), "not running: %s",
			 st->reason[0] ? st->reason : "never reached");
	} else if (st->last_probe_at_ms > st->checked_at_ms) {
		out->pass = false;
		snprintf(out->reason, sizeof(out->reason), "not running: %s",
			 reason_or_state(st));
	} else if (c->stale_after_ms > 0 && c->now_ms - st->checked_at_ms > c->stale_after_ms) {
		format_duration_ms(c->now_ms - st->checked_at_ms, age, sizeof(age));
		out->pass = false;
		snprintf(out->reason, sizeof(out->reason), "not running: last good probe %s ago",
			 age);
	}
}

/* Unknown lag passes a limit only where nothing can lag (as status_within_lag). */
static bool nothing_to_lag(const struct node_status *st)
{
	return st->flavor == FLAVOR_PLAIN || (st->flavor == FLAVOR_PHYSICAL && !st->read_only);
}

static void check_limits(const struct node_status *st, const struct answer_limits *lim,
			 struct answer *out)
{
	char have[32], limit[32];

	if (lim->lag_bytes >= 0 && !status_within_lag(st, lim->lag_bytes)) {
		format_size(lim->lag_bytes, limit, sizeof(limit));
		if (st->lag_bytes_known)
			format_size(st->lag_bytes, have, sizeof(have));
		snprintf(out->reason, sizeof(out->reason), "lag %s > %s",
			 st->lag_bytes_known ? have : "unknown", limit);
		out->pass = false;
		return;
	}
	if (lim->lag_seconds < 0)
		return;
	format_duration_ms((int64_t)(lim->lag_seconds * 1000.0 + 0.5), limit, sizeof(limit));
	if (st->lag_seconds_known && st->lag_seconds > lim->lag_seconds) {
		format_duration_ms((int64_t)(st->lag_seconds * 1000.0 + 0.5), have, sizeof(have));
		snprintf(out->reason, sizeof(out->reason), "lag_time %s > %s", have, limit);
		out->pass = false;
	} else if (!st->lag_seconds_known && !nothing_to_lag(st)) {
		snprintf(out->reason, sizeof(out->reason), "lag_time unknown > %s", limit);
		out->pass = false;
	}
}

/* Which judgement a duty reads: reads are judged with read-only nodes ready. */
static const struct node_status *status_for(const struct answer_node *n, enum duty duty)
{
	return duty == DUTY_READ || duty == DUTY_REPLICA ? n->read_status : n->status;
}

static void check_duty(const struct answer_node *n, const struct answer_cluster *c,
		       enum duty duty, struct answer *out)
{
	switch (duty) {
	case DUTY_WRITE:
		check_write(n, c, out);
		break;
	case DUTY_READ:
		check_read(n, out);
		break;
	case DUTY_REPLICA:
		check_replica(n, c, out);
		break;
	case DUTY_RUNNING:
		check_running(n, c, out);
		break;
	case DUTY_ANY:
	default:
		check_any(n, out);
		break;
	}
}

void answer_for(const struct answer_node *n, const struct answer_cluster *c,
		enum duty duty, const struct answer_limits *limits, struct answer *out)
{
	const struct node_status *st = status_for(n, duty);
	struct answer_limits none = ANSWER_NO_LIMITS;

	memset(out, 0, sizeof(*out));
	snprintf(out->node, sizeof(out->node), "%s", n->status->name);
	out->duty = duty;
	out->pass = true;
	out->priority = n->priority;
	out->lag_bytes_known = st->lag_bytes_known;
	out->lag_bytes = st->lag_bytes;
	check_duty(n, c, duty, out);
	/* the health of the process alone: no lag limit applies */
	if (out->pass && duty != DUTY_RUNNING)
		check_limits(st, limits ? limits : &none, out);
	if (!out->pass) {
		out->state = out->drain ? STATE_DRAINING : STATE_DOWN;
		out->weight = 0;
		return;
	}
	out->state = st->state;
	out->weight = duty == DUTY_WRITE || duty == DUTY_RUNNING ? 100 : st->weight;
	snprintf(out->reason, sizeof(out->reason), "%s", st->reason);
}

bool answer_better(const struct answer *x, const struct answer *y)
{
	if (x->pass != y->pass)
		return x->pass;
	if (x->lag_bytes_known != y->lag_bytes_known)
		return x->lag_bytes_known;
	if (x->lag_bytes_known && x->lag_bytes != y->lag_bytes)
		return x->lag_bytes < y->lag_bytes;
	if (x->priority != y->priority)
		return x->priority < y->priority;
	return strcmp(x->node, y->node) < 0;
}
