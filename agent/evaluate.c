/*
 * The evaluator: the one place that decides whether HAProxy may send a
 * node traffic. A probe round's facts are judged on their own first (the
 * raw verdict), then smoothed with rise/fall hysteresis so that a single
 * noisy probe cannot flap a backend; maintenance is applied on top by
 * status_apply_maintenance(), which the agent calls on what it publishes.
 * No I/O, no clock, no globals: the poller passes the time in, so every
 * rule can be exercised by a table in tests/unit/test_evaluate.c.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "evaluate.h"
#include "units.h"

/* Longest text a reason can hold; also bounds reads of fact strings. */
#define TEXT_MAX (REASON_MAX - 1)

#define MAINTENANCE_REASON "maintenance file present"

/* What one probe round says on its own, before hysteresis. */
struct verdict {
	enum node_state state;
	int weight;
	char reason[REASON_MAX];
};

static size_t utf8_sequence_length(unsigned char lead)
{
	if ((lead & 0xE0) == 0xC0)
		return 2;
	if ((lead & 0xF0) == 0xE0)
		return 3;
	if ((lead & 0xF8) == 0xF0)
		return 4;
	return 1;
}

/*
 * Truncation cuts bytes, not characters. Reasons go out in JSON and HTTP
 * headers, where half a UTF-8 character makes the whole line invalid, so
 * drop a multibyte sequence that the cut left incomplete.
 */
static void drop_incomplete_utf8_tail(char *s)
{
	size_t len = strlen(s);
	size_t lead = len;

	while (lead > 0 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80)
		lead--;
	if (lead == 0)
		return;
	lead--;
	if (len - lead < utf8_sequence_length((unsigned char)s[lead]))
		s[lead] = '\0';
}

/* reason must be a REASON_MAX buffer that no argument overlaps. */
static void set_reason(char *reason, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(char *reason, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(reason, REASON_MAX, fmt, ap);
	va_end(ap);
	if (n < 0)
		reason[0] = '\0';
	drop_incomplete_utf8_tail(reason);
}

/*
 * reason = head "; " tail, leaving out empty parts. Either part may be
 * reason itself, hence the copies. Fact strings are read with a bound in
 * case a probe left one unterminated.
 */
static void join_reasons(char *reason, const char *head, const char *tail)
{
	char h[REASON_MAX];
	char t[REASON_MAX];

	set_reason(h, "%.*s", TEXT_MAX, head);
	set_reason(t, "%.*s", TEXT_MAX, tail);
	set_reason(reason, "%s%s%s", h, h[0] && t[0] ? "; " : "", t);
}

static int clamp_int(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Streaks only grow while a node holds still; never let them wrap. */
static int next_streak(int n)
{
	return n < INT_MAX ? n + 1 : n;
}

/* Draining still counts as up: it finishes what it has. */
static bool state_is_up(enum node_state s)
{
	return s != STATE_DOWN;
}

static const char *outcome_text(enum probe_outcome outcome)
{
	switch (outcome) {
	case PROBE_NOT_YET:
		return "no probe finished yet";
	case PROBE_RESOLVE_FAILED:
		return "cannot resolve host";
	case PROBE_CONNECT_FAILED:
		return "connection failed";
	case PROBE_CONNECT_TIMEOUT:
		return "connect timeout";
	case PROBE_QUERY_TIMEOUT:
		return "probe timeout";
	case PROBE_QUERY_FAILED:
		return "probe query failed";
	case PROBE_CONNECTION_LOST:
		return "connection lost";
	case PROBE_CONNECT_WAITING:
		return "waiting for a connection slot";
	case PROBE_OK:
	case PROBE_OUTCOME_COUNT:
		break;
	}
	return "probe failed";
}

static void set_verdict(struct verdict *v, enum node_state state, int weight)
{
	v->state = state;
	v->weight = weight;
	v->reason[0] = '\0';
}

/* A failed round measured nothing: old lag must not pass for current. */
static void forget_lag(struct node_status *st)
{
	st->lag_bytes_known = false;
	st->lag_bytes = 0;
	st->lag_seconds_known = false;
	st->lag_seconds = 0;
	st->out_lag_bytes_known = false;
	st->out_lag_bytes = 0;
}

static void judge_failed_probe(const struct node_facts *facts, struct verdict *v)
{
	set_verdict(v, STATE_DOWN, 0);
	if (facts->error[0])
		set_reason(v->reason, "%.*s", TEXT_MAX, facts->error);
	else
		set_reason(v->reason, "%s", outcome_text(facts->outcome));
}

static void record_facts(const struct node_facts *facts, int64_t now_ms,
			 struct node_status *out)
{
	/* AUTO is a config value; a probe that reports it did not detect. */
	if (facts->flavor != FLAVOR_AUTO)
		out->flavor = facts->flavor;
	out->read_only = facts->read_only;
	out->isolated = facts->isolated;
	out->timeline = facts->timeline;
	out->lag_bytes_known = facts->lag_bytes_known;
	out->lag_bytes = facts->lag_bytes;
	out->lag_seconds_known = facts->lag_seconds_known;
	out->lag_seconds = facts->lag_seconds;
	out->out_lag_bytes_known = facts->out_lag_bytes_known;
	out->out_lag_bytes = facts->out_lag_bytes;
	out->checked_at_ms = now_ms;
}

static bool lag_bytes_over_max(const struct node_facts *facts,
			       const struct policy *policy)
{
	return policy->max_lag > 0 && facts->lag_bytes_known &&
	       facts->lag_bytes > policy->max_lag;
}

static bool lag_seconds_over_max(const struct node_facts *facts,
				 const struct policy *policy)
{
	return policy->max_lag_time > 0 && facts->lag_seconds_known &&
	       facts->lag_seconds > policy->max_lag_time;
}

/*
 * "replication lag 80MB > 64MB". Just over the limit both sides can
 * round to the same text, and "64MB > 64MB" reads as a bug; print exact
 * bytes then.
 */
static void set_lag_bytes_reason(char *reason, int64_t lag, int64_t max)
{
	char lag_text[32];
	char max_text[32];

	format_size(lag, lag_text, sizeof(lag_text));
	format_size(max, max_text, sizeof(max_text));
	if (strcmp(lag_text, max_text) == 0)
		set_reason(reason, "replication lag %" PRId64 "B > %" PRId64 "B",
			   lag, max);
	else
		set_reason(reason, "replication lag %s > %s", lag_text, max_text);
}

/* "replication lag 12.0s > 10.0s", with more decimals when needed to differ. */
static void set_lag_seconds_reason(char *reason, double lag, double max)
{
	char lag_text[48];
	char max_text[48];
	int decimals = 0;

	do {
		decimals++;
		snprintf(lag_text, sizeof(lag_text), "%.*f", decimals, lag);
		snprintf(max_text, sizeof(max_text), "%.*f", decimals, max);
	} while (strcmp(lag_text, max_text) == 0 && decimals < 6);
	set_reason(reason, "replication lag %ss > %ss", lag_text, max_text);
}

/*
 * Unknown is not zero: with a lag limit set, a node whose lag cannot be
 * measured must not pass for caught up. A time limit is also met by a
 * byte lag known to be 0 (nothing outstanding, nothing to wait for).
 */
static bool lag_unknown_under_limit(const struct node_facts *facts,
				    const struct policy *policy)
{
	bool bytes_zero = facts->lag_bytes_known && facts->lag_bytes == 0;

	if (policy->max_lag > 0 && !facts->lag_bytes_known)
		return true;
	return policy->max_lag_time > 0 && !facts->lag_seconds_known && !bytes_zero;
}

/*
 * The node may serve: how much, given its lag and impairments. Unknown
 * lag under a limit serves at min_weight only, degraded, so that a node
 * the agent cannot judge takes the least traffic a lagging one would;
 * so does an isolated one (no peer replicates with it).
 */
static void judge_serving(const struct node_facts *facts,
			  const struct policy *policy, struct verdict *v)
{
	int weight = 100;

	if (lag_unknown_under_limit(facts, policy)) {
		set_verdict(v, STATE_DEGRADED, clamp_int(policy->min_weight, 0, 100));
		set_reason(v->reason, "replication lag unknown, weight %d%% (a lag limit is set)%s%.*s",
			   v->weight, facts->lag_unknown_why[0] ? ": " : "", TEXT_MAX / 2,
			   facts->lag_unknown_why);
	} else {
		if (facts->lag_bytes_known)
			weight = weight_for_lag(policy, facts->lag_bytes);
		set_verdict(v, STATE_READY, weight);
	}

	if (weight < 100) {
		char lag_text[32];

		format_size(facts->lag_bytes, lag_text, sizeof(lag_text));
		set_reason(v->reason, "replication lag %s, weight %d%%",
			   lag_text, weight);
		v->state = STATE_DEGRADED;
	}
	if (facts->raft_leaderless) {
		char text[REASON_MAX];

		set_reason(text, "%.*s (within raft_grace)", TEXT_MAX / 2,
			   facts->raft_text[0] ? facts->raft_text : "raft has no leader");
		join_reasons(v->reason, v->reason, text);
		v->state = STATE_DEGRADED;
	}
	if (facts->impaired) {
		join_reasons(v->reason, v->reason,
			     facts->impairment[0] ? facts->impairment : "impaired");
		v->state = STATE_DEGRADED;
	}
	if (facts->isolated) {
		int floor_weight = clamp_int(policy->min_weight, 0, 100);
		char text[REASON_MAX];

		v->state = STATE_DEGRADED;
		if (v->weight > floor_weight) {
			v->weight = floor_weight;
			set_reason(text, "isolated, weight %d%%", floor_weight);
			join_reasons(v->reason, v->reason, text);
		}
	}
}

/*
 * PGD's Raft without a leader: every election passes through it, and
 * PGD's own proxy keeps routing for its consensus grace. The node serves
 * on, degraded, until raft_grace has passed since it was first seen.
 */
static void track_raft(const struct node_facts *facts, const struct node_status *prev,
		       int64_t now_ms, struct node_status *out)
{
	if (!facts->raft_leaderless)
		out->raft_leaderless_since_ms = 0;
	else if (!prev->raft_leaderless_since_ms)
		out->raft_leaderless_since_ms = now_ms;
}

static bool raft_grace_over(const struct node_facts *facts, const struct policy *policy,
			    const struct node_status *st, int64_t now_ms)
{
	return facts->raft_leaderless && now_ms - st->raft_leaderless_since_ms >= policy->raft_grace_ms;
}

static void judge_facts(const struct node_facts *facts, const struct policy *policy,
			const struct node_status *st, int64_t now_ms, struct verdict *v)
{
	set_verdict(v, STATE_DOWN, 0);
	if (!facts->healthy)
		set_reason(v->reason, "%.*s", TEXT_MAX,
			   facts->problem[0] ? facts->problem : "node reports unhealthy");
	else if (raft_grace_over(facts, policy, st, now_ms))
		set_reason(v->reason, "%.*s for %.1fs (raft_grace %.1fs)", TEXT_MAX / 2,
			   facts->raft_text[0] ? facts->raft_text : "raft has no leader",
			   (double)(now_ms - st->raft_leaderless_since_ms) / 1000.0,
			   (double)policy->raft_grace_ms / 1000.0);
	else if (facts->read_only && policy->read_only == READ_ONLY_DOWN)
		set_reason(v->reason, "read-only node (policy read_only = down)");
	else if (lag_bytes_over_max(facts, policy))
		set_lag_bytes_reason(v->reason, facts->lag_bytes, policy->max_lag);
	else if (lag_seconds_over_max(facts, policy))
		set_lag_seconds_reason(v->reason, facts->lag_seconds,
				       policy->max_lag_time);
	else
		judge_serving(facts, policy, v);
}

static void take_verdict(struct node_status *out, const struct verdict *v)
{
	out->state = v->state;
	out->weight = v->weight;
	memcpy(out->reason, v->reason, REASON_MAX);
}

/*
 * HAProxy's rise/fall: a node changes sides only after a run of probes.
 * rise or fall <= 0 act as 1 without clamping, as a streak is at least 1
 * by the time it is compared.
 */
static void apply_hysteresis(const struct node_status *prev,
			     const struct policy *policy, const struct verdict *v,
			     struct node_status *out)
{
	int rise = policy->rise;
	int fall = policy->fall;
	bool was_up = state_is_up(prev->state);

	if (state_is_up(v->state)) {
		out->good_streak = next_streak(prev->good_streak);
		out->bad_streak = 0;
		if (was_up || out->good_streak >= rise) {
			take_verdict(out, v);
			out->ever_up = true;
		} else {
			out->state = STATE_DOWN;
			out->weight = 0;
			set_reason(out->reason, "rising: %d/%d good probes",
				   out->good_streak, rise);
		}
		return;
	}

	out->bad_streak = next_streak(prev->bad_streak);
	out->good_streak = 0;
	if (was_up && out->bad_streak < fall) {
		out->state = prev->state;
		out->weight = prev->weight;
		set_reason(out->reason, "failing %d/%d: %s", out->bad_streak,
			   fall, v->reason);
	} else {
		take_verdict(out, v);
	}
}

/*
 * Maintenance drains whatever is still up, including a node held up by
 * fall. A down node stays down: it cannot finish existing sessions either.
 */
void status_apply_maintenance(struct node_status *out)
{
	if (!out->maintenance || out->state == STATE_DOWN)
		return;
	out->state = STATE_DRAINING;
	join_reasons(out->reason, MAINTENANCE_REASON, out->reason);
}

void evaluate(const struct node_facts *facts, const struct policy *policy,
	      const struct node_status *prev, int64_t now_ms, struct node_status *out)
{
	/* Copied first so that a caller may judge a status in place. */
	const struct node_status before = *prev;
	struct verdict v;

	*out = before;
	out->last_probe_at_ms = now_ms;
	out->maintenance = false; /* the caller's to apply, on what it publishes */

	if (facts->outcome == PROBE_OK) {
		record_facts(facts, now_ms, out);
		track_raft(facts, &before, now_ms, out);
		judge_facts(facts, policy, out, now_ms, &v);
	} else {
		forget_lag(out);
		judge_failed_probe(facts, &v);
	}
	apply_hysteresis(&before, policy, &v, out);
}

bool evaluate_staleness(struct node_status *st, const struct policy *policy,
			int64_t now_ms)
{
	int64_t age_ms = now_ms - st->checked_at_ms;

	if (policy->stale_after_ms <= 0 || st->state == STATE_DOWN)
		return false;
	if (st->checked_at_ms == 0)
		set_reason(st->reason, "status stale: no good probe yet");
	else if (age_ms > policy->stale_after_ms)
		set_reason(st->reason, "status stale: last good probe %.1fs ago",
			   (double)age_ms / 1000.0);
	else
		return false;

	st->state = STATE_DOWN;
	st->weight = 0;
	/* Old successes say nothing about now: coming back takes rise fresh ones. */
	st->good_streak = 0;
	return true;
}

int weight_for_lag(const struct policy *policy, int64_t lag_bytes)
{
	int64_t drain = policy->drain_lag;
	int64_t max = policy->max_lag;
	int floor_weight = clamp_int(policy->min_weight, 0, 100);
	double weight;

	if (drain <= 0 || lag_bytes <= drain)
		return 100;
	if (max <= drain || lag_bytes >= max)
		return floor_weight;

	weight = 100.0 - (100.0 - floor_weight) * (double)(lag_bytes - drain) /
			 (double)(max - drain);
	/* weight is positive here, so adding a half rounds to nearest. */
	return clamp_int((int)(weight + 0.5), floor_weight, 100);
}

bool status_within_lag(const struct node_status *st, int64_t max_lag_bytes)
{
	if (st->lag_bytes_known)
		return st->lag_bytes <= max_lag_bytes;
	/*
	 * Unknown lag fails closed, except where nothing can lag: a plain
	 * server, or a physical primary (a standby's lag is just unmeasured).
	 */
	return st->flavor == FLAVOR_PLAIN ||
	       (st->flavor == FLAVOR_PHYSICAL && !st->read_only);
}
