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
	COL_LAG_BYTES,
	COL_READ_ONLY,
	COL_PEER_LIST,
	N_COLS
};

/*
 * show_subscription_status() is called once through the CTE; its
 * provider_dsn column is never selected, since it may hold a password.
 */
#define PGLOGICAL_SELECT(lag_expr) \
	"WITH subs AS (SELECT subscription_name, status, provider_node" \
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
	" (SELECT max(lag)::bigint FROM slots WHERE active)," \
	" pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'," \
	" (SELECT string_agg(n.node_name || chr(31) || EXISTS (SELECT 1 FROM subs" \
	"   WHERE subs.provider_node = n.node_name AND subs.status = 'replicating')::text," \
	"   chr(30) ORDER BY n.node_name) FROM pglogical.node n" \
	"   WHERE n.node_id NOT IN (SELECT node_id FROM pglogical.local_node))"

static const char *pglogical_query(const struct conn_caps *caps, char *buf, size_t len)
{
	if (caps->server_version >= 100000)
		return PGLOGICAL_SELECT("pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)");
	return PGLOGICAL_SELECT("pg_xlog_location_diff(pg_current_xlog_location(), confirmed_flush_lsn)");
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
	probe_take_lag_bytes(res, COL_LAG_BYTES, facts);
	probe_take_peers(res, COL_PEER_LIST, facts);

	if (pq_is_null(res, COL_LOCAL_NAME))
		facts_set_problem(facts, "no pglogical local node in this database");
	else if (!pq_is_null(res, COL_SUBS_FAILED))
		facts_set_problem(facts, "subscription %s", pq_text(res, COL_SUBS_FAILED));
	probe_judge_stalled_subscriptions(res, COL_SUBS_DOWN, COL_SUBS_REPLICATING,
					  "subscription", facts);
	probe_take_idle_slots(res, COL_SLOTS_IDLE, "peer slot not streaming:", facts);
}

const struct probe_ops probe_pglogical_ops = {
	.flavor = FLAVOR_PGLOGICAL,
	.query = pglogical_query,
	.parse = pglogical_parse,
};
