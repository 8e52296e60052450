/*
 * Physical (streaming) replication: a primary is writable; a standby
 * is read-only and measured against what its primary last reported.
 * A primary also reports its timeline, which tells a promoted standby
 * from the stale primary it replaced (splitbrain.c).
 * A standby's WAL receiver columns need pg_monitor (pg_read_all_stats).
 */
#include <string.h>

#include "probe.h"

enum {
	COL_IN_RECOVERY,
	COL_RECEIVER_STATUS,
	COL_LAG_BYTES,
	COL_LAG_SECONDS,
	COL_READ_ONLY,
	COL_TIMELINE,
	N_COLS
};

/*
 * latest_end_lsn is the primary's WAL end from its last keepalive, so
 * the difference to the replay position is the real byte lag. The
 * replay timestamp alone would count an idle primary as lag, hence 0
 * when everything received is replayed.
 */
#define PHYSICAL_SELECT(diff, receive, replay, walfile, current) \
	"SELECT pg_is_in_recovery()," \
	" (SELECT status FROM pg_stat_wal_receiver)," \
	" CASE WHEN pg_is_in_recovery() AND " replay "() IS NOT NULL THEN GREATEST(0, " diff "(" \
	"   COALESCE((SELECT latest_end_lsn FROM pg_stat_wal_receiver), " receive "()), " \
	    replay "()))::bigint END," \
	" CASE WHEN pg_is_in_recovery() THEN CASE WHEN " receive "() = " replay "() THEN 0" \
	"   ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END END," \
	" current_setting('default_transaction_read_only') = 'on'," \
	" CASE WHEN NOT pg_is_in_recovery() THEN ('x' || substr(" walfile "(" current "()), 1, 8))" \
	"   ::bit(32)::int END"

static const char *physical_query(const struct conn_caps *caps, char *buf, size_t len)
{
	if (caps->server_version >= 100000)
		return PHYSICAL_SELECT("pg_wal_lsn_diff", "pg_last_wal_receive_lsn",
				       "pg_last_wal_replay_lsn", "pg_walfile_name", "pg_current_wal_lsn");
	return PHYSICAL_SELECT("pg_xlog_location_diff", "pg_last_xlog_receive_location",
			       "pg_last_xlog_replay_location", "pg_xlogfile_name",
			       "pg_current_xlog_location");
}

static void physical_parse(const PGresult *res, const struct conn_caps *caps,
			   struct node_facts *facts)
{
	const char *receiver;

	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	facts->healthy = true;
	facts->read_only = pq_bool(res, COL_IN_RECOVERY) || pq_bool(res, COL_READ_ONLY);
	facts->timeline = (int)pq_int64(res, COL_TIMELINE);
	if (!pq_bool(res, COL_IN_RECOVERY)) {
		/* a primary has nothing to lag behind */
		facts->lag_bytes_known = true;
		facts->lag_seconds_known = true;
		return;
	}

	probe_take_lag_bytes(res, COL_LAG_BYTES, facts);
	probe_take_lag_seconds(res, COL_LAG_SECONDS, facts);
	receiver = pq_text(res, COL_RECEIVER_STATUS);
	if (receiver[0] == '\0')
		facts_set_problem(facts, "standby is not receiving WAL from a primary");
	else if (strcmp(receiver, "streaming") != 0)
		facts_set_problem(facts, "standby WAL receiver is %s, not streaming", receiver);
}

const struct probe_ops probe_physical_ops = {
	.flavor = FLAVOR_PHYSICAL,
	.query = physical_query,
	.parse = physical_parse,
};
