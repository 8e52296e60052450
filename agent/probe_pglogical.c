/*
 * pglogical 2: the local node must exist and its subscriptions must be
 * replicating; the pglogical slots on this node tell whether the peers
 * are connected and how far behind they read.
 *
 * A subscription the operator disabled (or one still initializing, or
 * unknown) takes the node down. One that is "down" (enabled, but its
 * apply worker is not running: usually its provider is unreachable)
 * only degrades the node while another subscription still replicates;
 * with none replicating the node is cut off from every peer and cannot
 * tell whether it is the survivor or the partitioned one, so it is down.
 *
 * Lag: the pglogical slots here are outgoing, how far each subscriber is
 * behind this node; they are reported keyed by slot name, and a central
 * agent reads them as the subscriber's lag. The node's own lag comes
 * from its providers' slots for its subscriptions (the same slot names);
 * alone it is unknown while it subscribes, and 0 when it does not.
 * A table being resynchronized makes the node unfit for reads.
 */
#include <stdio.h>

#include "probe.h"

enum {
	COL_LOCAL_NAME,
	COL_SUBS,
	COL_SUBS_FAILED,
	COL_SUBS_DOWN,
	COL_SUBS_REPLICATING,
	COL_SLOTS,
	COL_SLOTS_IDLE,
	COL_OUTGOING,
	COL_INCOMING,
	COL_READ_ONLY,
	COL_PEER_LIST,
	COL_SYNCING,
	COL_PEER_DSNS,
	N_COLS
};

/*
 * show_subscription_status() is called once through the CTE; its
 * provider_dsn column is never selected, since it may hold a password.
 */
#define PGLOGICAL_SELECT(lag_expr) \
	"WITH subs AS (SELECT subscription_name, status, provider_node, slot_name" \
	"   FROM pglogical.show_subscription_status())," \
	" slots AS (SELECT slot_name, active, " lag_expr " AS lag" \
	"   FROM pg_replication_slots WHERE plugin = 'pglogical_output')" \
	" SELECT (SELECT n.node_name FROM pglogical.local_node l" \
	"   JOIN pglogical.node n ON n.node_id = l.node_id)," \
	" (SELECT count(*) FROM subs)::int," \
	" (SELECT string_agg(subscription_name || ' is ' || status, ', '" \
	"   ORDER BY subscription_name) FROM subs WHERE status NOT IN ('replicating', 'down'))," \
	" (SELECT string_agg(subscription_name || ' from '" \
	"   || COALESCE(provider_node, '?') || ' is down', ', '" \
	"   ORDER BY subscription_name) FROM subs WHERE status = 'down')," \
	" (SELECT count(*) FROM subs WHERE status = 'replicating')::int," \
	" (SELECT count(*) FROM slots)::int," \
	" (SELECT string_agg(slot_name::text, ', ' ORDER BY slot_name) FROM slots WHERE NOT active)," \
	" (SELECT string_agg(slot_name::text || chr(31) || CASE WHEN lag IS NOT NULL THEN GREATEST(0, lag)::bigint::text ELSE '' END," \
	"   chr(30) ORDER BY slot_name) FROM slots)," \
	" (SELECT string_agg(slot_name::text, chr(30) ORDER BY slot_name) FROM subs)," \
	" pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'," \
	" (SELECT string_agg(n.node_name || chr(31) || EXISTS (SELECT 1 FROM subs" \
	"   WHERE subs.provider_node = n.node_name AND subs.status = 'replicating')::text," \
	"   chr(30) ORDER BY n.node_name) FROM pglogical.node n" \
	"   WHERE n.node_id NOT IN (SELECT node_id FROM pglogical.local_node))," \
	" (SELECT count(*) FROM pglogical.local_sync_status" \
	"   WHERE sync_relname IS NOT NULL AND sync_status NOT IN ('r', 'y'))::int," \
	" %s"

/*
 * Where each provider of this node's enabled subscriptions can be
 * reached: the interface the subscription connects through. Read only
 * for the per-node lag, and filtered to an address at once.
 */
#define PEER_DSNS \
	"(SELECT string_agg(n.node_name || chr(31) || i.if_dsn, chr(30) ORDER BY n.node_name)" \
	"   FROM pglogical.subscription s JOIN pglogical.node_interface i" \
	"   ON i.if_id = s.sub_origin_if JOIN pglogical.node n ON n.node_id = s.sub_origin" \
	"   WHERE s.sub_enabled AND s.sub_target IN (SELECT node_id FROM pglogical.local_node))"

static const char *pglogical_query(const struct conn_caps *caps, char *buf, size_t len)
{
	snprintf(buf, len, PGLOGICAL_SELECT("%s"),
		 caps->server_version >= 100000 ?
		 "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)" :
		 "pg_xlog_location_diff(pg_current_xlog_location(), confirmed_flush_lsn)",
		 caps->pglogical_peer_dsns ? PEER_DSNS : "NULL::text");
	return buf;
}

static void pglogical_parse(const PGresult *res, const struct conn_caps *caps,
			    struct node_facts *facts)
{
	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	facts->healthy = true;
	snprintf(facts->catalog_name, sizeof(facts->catalog_name), "%s",
		 pq_text(res, COL_LOCAL_NAME));
	facts->read_only = pq_bool(res, COL_READ_ONLY);
	facts->peers_total = (int)pq_int64(res, COL_SLOTS);
	probe_take_outgoing(res, COL_OUTGOING, facts);
	probe_take_incoming(res, COL_INCOMING, facts);
	probe_take_peers(res, COL_PEER_LIST, facts);
	probe_take_peer_dsns(res, COL_PEER_DSNS, caps->pglogical_peer_dsns, facts);

	if (pq_is_null(res, COL_LOCAL_NAME))
		facts_set_problem(facts, "no pglogical local node in this database");
	else if (!pq_is_null(res, COL_SUBS_FAILED))
		facts_set_problem(facts, "subscription %s", pq_text(res, COL_SUBS_FAILED));
	else if (pq_int64(res, COL_SYNCING) > 0)
		facts_set_problem(facts, "synchronizing %lld table(s): not ready for reads",
				  pq_int64(res, COL_SYNCING));
	probe_judge_stalled_subscriptions(res, COL_SUBS_DOWN, COL_SUBS_REPLICATING,
					  "subscription", facts);
	probe_take_idle_slots(res, COL_SLOTS_IDLE, "peer slot not streaming:", facts);
}

const struct probe_ops probe_pglogical_ops = {
	.flavor = FLAVOR_PGLOGICAL,
	.query = pglogical_query,
	.parse = pglogical_parse,
};
