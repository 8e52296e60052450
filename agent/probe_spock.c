/*
 * Spock (pgEdge), a pglogical descendant: the local node must exist and
 * its subscriptions must be replicating (spock.sub_show_status()); lag
 * comes from spock.lag_tracker, and the spock slots on this node tell
 * whether the peers are connected. Subscriptions are judged as for
 * pglogical: disabled, initializing or unknown is down; "down" (worker
 * not running, usually an unreachable provider) only degrades while
 * another subscription still replicates. spock.readonly (user or all)
 * makes the node read-only, like default_transaction_read_only.
 */
#include <stdio.h>

#include "probe.h"

enum {
	COL_LOCAL_NAME,
	COL_SUBS_FAILED,
	COL_SUBS_DOWN,
	COL_SUBS_REPLICATING,
	COL_SLOTS,
	COL_SLOTS_IDLE,
	COL_LAG_BYTES,
	COL_LAG_SECONDS,
	COL_READ_ONLY,
	COL_PEER_LIST,
	COL_INCOMING,
	N_COLS
};

/*
 * Lag: Spock 5's spock.lag_tracker is kept on the receiving node, one
 * row per origin, from its own apply progress: the rows whose
 * receiver_name is this node are its staleness. Only replication_lag
 * and replication_lag_bytes are read; the other columns changed between
 * releases. Some releases count an idle subscription's lag time from its
 * last commit, so with no byte outstanding the lag is 0 seconds. Earlier
 * releases keep lag_tracker on the sending side (the peers' lag) or have
 * none (before 3.1.4): the node's own lag is unknown there, and 0 only
 * without subscriptions. provider_dsn is never selected: it may hold a
 * password.
 */
#define SPOCK_SELECT(lag_rows) \
	"WITH subs AS (SELECT subscription_name, status, provider_node" \
	"   FROM spock.sub_show_status())," \
	" slots AS (SELECT slot_name, active FROM pg_replication_slots" \
	"   WHERE plugin IN ('spock_output', 'spock') AND database = current_database())," \
	" me AS (SELECT n.node_name FROM spock.local_node l JOIN spock.node n ON n.node_id = l.node_id)," \
	" lag AS (" lag_rows ")" \
	" SELECT (SELECT node_name FROM me)," \
	" (SELECT string_agg(subscription_name || ' is ' || status, ', '" \
	"   ORDER BY subscription_name) FROM subs" \
	"   WHERE status NOT IN ('replicating', 'down'))," \
	" (SELECT string_agg(subscription_name || ' from '" \
	"   || COALESCE(provider_node, '?') || ' is down', ', '" \
	"   ORDER BY subscription_name) FROM subs WHERE status = 'down')," \
	" (SELECT count(*) FROM subs WHERE status = 'replicating')::int," \
	" (SELECT count(*) FROM slots)::int," \
	" (SELECT string_agg(slot_name::text, ', ' ORDER BY slot_name) FROM slots" \
	"   WHERE NOT active)," \
	" (SELECT max(bytes)::bigint FROM lag)," \
	" (SELECT max(CASE WHEN bytes = 0 THEN 0 ELSE extract(epoch FROM delay) END)" \
	"   FROM lag)," \
	" pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'" \
	"   OR COALESCE(current_setting('spock.readonly', true), 'off') NOT IN ('off', '')," \
	" (SELECT string_agg(n.node_name || chr(31) || EXISTS (SELECT 1 FROM subs" \
	"   WHERE subs.provider_node = n.node_name AND subs.status = 'replicating')::text," \
	"   chr(30) ORDER BY n.node_name) FROM spock.node n" \
	"   WHERE n.node_id NOT IN (SELECT node_id FROM spock.local_node))," \
	" (SELECT string_agg(subscription_name::text, chr(30) ORDER BY subscription_name)" \
	"   FROM subs)"

#define LAG_RECEIVER \
	"SELECT replication_lag_bytes AS bytes, replication_lag AS delay FROM spock.lag_tracker" \
	" WHERE receiver_name = (SELECT node_name FROM me)"
#define LAG_UNKNOWN "SELECT NULL::bigint AS bytes, NULL::interval AS delay WHERE false"

static const char *spock_query(const struct conn_caps *caps, char *buf, size_t len)
{
	return caps->spock_receiver_lag ? SPOCK_SELECT(LAG_RECEIVER) : SPOCK_SELECT(LAG_UNKNOWN);
}

static void judge_subscriptions(const PGresult *res, struct node_facts *facts)
{
	if (!pq_is_null(res, COL_SUBS_FAILED)) {
		facts_set_problem(facts, "subscription %s", pq_text(res, COL_SUBS_FAILED));
		return;
	}
	probe_judge_stalled_subscriptions(res, COL_SUBS_DOWN, COL_SUBS_REPLICATING,
					  "subscription", facts);
}

static void spock_parse(const PGresult *res, const struct conn_caps *caps,
			struct node_facts *facts)
{
	(void)caps;
	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	facts->healthy = true;
	snprintf(facts->catalog_name, sizeof(facts->catalog_name), "%s",
		 pq_text(res, COL_LOCAL_NAME));
	facts->read_only = pq_bool(res, COL_READ_ONLY);
	facts->peers_total = (int)pq_int64(res, COL_SLOTS);
	probe_take_lag_bytes(res, COL_LAG_BYTES, facts);
	probe_take_lag_seconds(res, COL_LAG_SECONDS, facts);
	probe_take_peers(res, COL_PEER_LIST, facts);
	probe_take_incoming(res, COL_INCOMING, facts);

	if (pq_is_null(res, COL_LOCAL_NAME))
		facts_set_problem(facts, "no spock local node in this database");
	else
		judge_subscriptions(res, facts);
	probe_take_idle_slots(res, COL_SLOTS_IDLE, "peer slot not streaming:", facts);
}

const struct probe_ops probe_spock_ops = {
	.flavor = FLAVOR_SPOCK,
	.query = spock_query,
	.parse = spock_parse,
};
