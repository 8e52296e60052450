/*
 * Native logical replication (PUBLICATION / SUBSCRIPTION, PostgreSQL
 * 10+). As a subscriber, every subscription of this database must be
 * enabled and have its apply worker running, and tables still in their
 * initial copy degrade the node. As a publisher, each pgoutput slot of
 * this database should have its subscriber connected. Reads
 * pg_subscription's public columns (never subconninfo), so pg_monitor
 * and, for the apply backlog, pg_replication_origin_status suffice.
 */
#include <stdio.h>

#include "probe.h"

enum {
	COL_SUBS,
	COL_SUBS_DISABLED,
	COL_SUBS_NO_WORKER,
	COL_SUBS_RUNNING,
	COL_TABLES_SYNCING,
	COL_SLOTS,
	COL_SLOTS_IDLE,
	COL_LAG_BYTES,
	COL_LAG_SECONDS,
	COL_READ_ONLY,
	COL_OUTGOING,
	COL_INCOMING,
	N_COLS
};

/*
 * pg_stat_subscription cannot tell lag: an idle publisher sends no
 * keepalives, so its timestamps age while nothing is behind, and its
 * latest_end_lsn is only what the worker itself last reported. What the
 * subscriber can measure is its apply backlog: received, but not yet
 * applied (the subscription's replication origin, "pg_<oid>"). Data the
 * publisher has not sent yet shows on the publisher, in its slot, which
 * a central agent reads (the subscription's slot name is the key). The
 * slots here are outgoing, the subscribers' lag: reported apart. With no
 * subscription the node waits for nothing, lag 0; with one whose backlog
 * cannot be read, unknown. Tables still in their initial copy make the
 * node unfit for reads.
 */
#define LOGICAL_SELECT(applied) \
	"WITH subs AS (SELECT s.oid AS subid, s.subname, s.subslotname, s.subenabled, w.pid," \
	"   w.received_lsn, w.last_msg_send_time" \
	"   FROM pg_subscription s LEFT JOIN pg_stat_subscription w" \
	"     ON w.subid = s.oid AND w.relid IS NULL" \
	"   WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))," \
	" applied AS (" applied ")," \
	" backlog AS (SELECT CASE WHEN s.received_lsn IS NOT NULL AND a.remote_lsn IS NOT NULL" \
	"   THEN GREATEST(0, pg_wal_lsn_diff(s.received_lsn, a.remote_lsn)) END AS bytes," \
	"   s.last_msg_send_time FROM subs s JOIN applied a ON a.subid = s.subid" \
	"   WHERE s.pid IS NOT NULL)," \
	" slots AS (SELECT slot_name, active, CASE WHEN pg_is_in_recovery() THEN NULL" \
	"   ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) END AS lag" \
	"   FROM pg_replication_slots WHERE slot_type = 'logical' AND plugin = 'pgoutput'" \
	"   AND database = current_database())" \
	" SELECT (SELECT count(*) FROM subs)::int," \
	" (SELECT string_agg(subname::text, ', ' ORDER BY subname) FROM subs" \
	"   WHERE NOT subenabled)," \
	" (SELECT string_agg(subname::text, ', ' ORDER BY subname) FROM subs" \
	"   WHERE subenabled AND pid IS NULL)," \
	" (SELECT count(*) FROM subs WHERE pid IS NOT NULL)::int," \
	" (SELECT count(*) FROM pg_subscription_rel WHERE srsubid IN (SELECT subid FROM subs)" \
	"   AND srsubstate NOT IN ('r', 's'))::int," \
	" (SELECT count(*) FROM slots)::int," \
	" (SELECT string_agg(slot_name::text, ', ' ORDER BY slot_name) FROM slots" \
	"   WHERE NOT active)," \
	" CASE WHEN (SELECT count(*) FROM subs) = 0 THEN 0" \
	"   WHEN (SELECT count(bytes) FROM backlog) = (SELECT count(*) FROM subs)" \
	"   THEN (SELECT max(bytes) FROM backlog)::bigint END," \
	" (SELECT max(CASE WHEN bytes = 0 THEN 0" \
	"   ELSE extract(epoch FROM now() - last_msg_send_time) END) FROM backlog)," \
	" pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'," \
	" (SELECT string_agg(slot_name::text || chr(31) || CASE WHEN lag IS NOT NULL THEN GREATEST(0, lag)::bigint::text ELSE '' END," \
	"   chr(30) ORDER BY slot_name) FROM slots)," \
	" (SELECT string_agg(subslotname::text, chr(30) ORDER BY subslotname) FROM subs" \
	"   WHERE subslotname IS NOT NULL)"

#define APPLIED_ORIGINS \
	"SELECT s.subid, o.remote_lsn FROM subs s" \
	" JOIN pg_replication_origin_status o ON o.external_id = 'pg_' || s.subid"
#define APPLIED_UNKNOWN "SELECT NULL::oid AS subid, NULL::pg_lsn AS remote_lsn WHERE false"

static const char *logical_query(const struct conn_caps *caps, char *buf, size_t len)
{
	if (caps->can_read_origins)
		return LOGICAL_SELECT(APPLIED_ORIGINS);
	return LOGICAL_SELECT(APPLIED_UNKNOWN);
}

/*
 * A disabled subscription is the operator's decision: down. A missing
 * worker (enabled, usually because the publisher is unreachable and the
 * worker keeps restarting) degrades while another subscription still
 * applies; with none applying this node receives nothing at all.
 */
static void judge_subscriptions(const PGresult *res, struct node_facts *facts)
{
	if (!pq_is_null(res, COL_SUBS_DISABLED)) {
		facts_set_problem(facts, "subscription disabled: %s",
				  pq_text(res, COL_SUBS_DISABLED));
		return;
	}
	probe_judge_stalled_subscriptions(res, COL_SUBS_NO_WORKER, COL_SUBS_RUNNING,
					  "subscription worker not running:", facts);
}

static void logical_parse(const PGresult *res, const struct conn_caps *caps,
			  struct node_facts *facts)
{
	long long syncing;

	(void)caps;
	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	facts->healthy = true;
	facts->read_only = pq_bool(res, COL_READ_ONLY);
	facts->peers_total = (int)pq_int64(res, COL_SLOTS);
	probe_take_lag_bytes(res, COL_LAG_BYTES, facts);
	probe_take_lag_seconds(res, COL_LAG_SECONDS, facts);
	probe_take_outgoing(res, COL_OUTGOING, facts);
	probe_take_incoming(res, COL_INCOMING, facts);

	judge_subscriptions(res, facts);
	syncing = pq_int64(res, COL_TABLES_SYNCING);
	if (syncing > 0)
		facts_set_problem(facts, "initial copy of %lld table%s: not ready for reads",
				  syncing, syncing == 1 ? "" : "s");
	probe_take_idle_slots(res, COL_SLOTS_IDLE, "slot not streaming:", facts);
}

const struct probe_ops probe_logical_ops = {
	.flavor = FLAVOR_LOGICAL,
	.query = logical_query,
	.parse = logical_parse,
};
