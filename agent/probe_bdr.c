/*
 * BDR 1/2: the local node's row in bdr.bdr_nodes, whether BDR is
 * active in this database, and the slots peers replicate through.
 * Needs SELECT on bdr.bdr_nodes and bdr.bdr_node_slots, and for the
 * slots' positions EXECUTE on sql/grants/bdr.sql's function.
 *
 * The slots here are outgoing: how far each peer is behind this node.
 * They are reported as such, keyed "this>peer", and a central agent
 * reads them as the peer's lag. This node's own lag is what its peers'
 * slots for it say ("peer>this" on each peer); alone, it is unknown
 * while it has peers, and 0 without any.
 */
#include <string.h>

#include <stdio.h>

#include "probe.h"

enum {
	COL_LOCAL_NAME,
	COL_NODE_STATUS,
	COL_ACTIVE,
	COL_READ_ONLY,
	COL_PEERS,
	COL_PEERS_DOWN,
	COL_PEERS_DOWN_NAMES,
	COL_OUTGOING,
	COL_INCOMING,
	COL_PEER_LIST,
	COL_PEER_DSNS,
	N_COLS
};

/*
 * The SQL is assembled from a few fixed parts chosen per connection:
 * node_read_only only exists from BDR 1.0 on, and BDR 1 runs on 9.4
 * where the LSN functions still carry "xlog" names. The slots' replay
 * positions come from sql/grants/bdr.sql's SECURITY DEFINER function
 * when the role may run it: pg_stat_replication, under bdr_node_slots,
 * shows them to superusers only on 9.4/9.6 (and on 10+ to
 * pg_read_all_stats). Otherwise from the view, NULL if hidden: unknown,
 * not 0, hence the CASE (GREATEST() skips a NULL argument).
 */
#define BDR_SELECT \
	"SELECT l.name, n.node_status, bdr.bdr_is_active_in_db(), COALESCE(%s, false)" \
	"   OR pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'," \
	" (SELECT count(*) FROM bdr.bdr_node_slots)::int," \
	" (SELECT count(*) FROM bdr.bdr_node_slots WHERE NOT walsender_active)::int," \
	" (SELECT string_agg(node_name, ', ' ORDER BY node_name) FROM bdr.bdr_node_slots" \
	"   WHERE NOT walsender_active)," \
	" (SELECT string_agg(l.name || '>' || node_name || chr(31)" \
	"   || CASE WHEN replay_location IS NOT NULL THEN GREATEST(0, %s)::bigint::text" \
	"   ELSE '' END, chr(30) ORDER BY node_name)" \
	"   FROM %s)," \
	" (SELECT string_agg(p.node_name || '>' || l.name, chr(30) ORDER BY p.node_name)" \
	"   FROM bdr.bdr_nodes p WHERE p.node_name <> l.name AND p.node_status = 'r')," \
	" (SELECT string_agg(p.node_name || chr(31) ||" \
	"   (p.node_status = 'r' AND COALESCE(s.walsender_active, false))::text || chr(31) ||" \
	"   (p.node_status = 'k')::text, chr(30) ORDER BY p.node_name) FROM bdr.bdr_nodes p" \
	"   LEFT JOIN bdr.bdr_node_slots s ON s.node_name = p.node_name" \
	"   WHERE p.node_name <> l.name)," \
	" %s" \
	" FROM (SELECT bdr.bdr_get_local_node_name() AS name) l" \
	" LEFT JOIN bdr.bdr_nodes n ON n.node_name = l.name"

/*
 * Where each ready peer can be reached: the DSN this node's own
 * replication uses for it (bdr.bdr_connections.conn_dsn; node_local_dsn
 * is the peer's view of itself, often a local socket there). Read only
 * for the per-node lag, and filtered to an address at once.
 */
#define PEER_DSNS \
	"(SELECT string_agg(p.node_name || chr(31) || COALESCE((SELECT c.conn_dsn" \
	"   FROM bdr.bdr_connections c WHERE c.conn_sysid = p.node_sysid" \
	"   AND c.conn_timeline = p.node_timeline AND c.conn_dboid = p.node_dboid" \
	"   ORDER BY c.conn_dsn LIMIT 1), ''), chr(30) ORDER BY p.node_name)" \
	"   FROM bdr.bdr_nodes p WHERE p.node_name <> l.name AND p.node_status = 'r')"

#define LAG_WAL "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_location)"
#define LAG_XLOG "pg_xlog_location_diff(pg_current_xlog_location(), replay_location)"
#define SLOTS_VIEW "bdr.bdr_node_slots"
#define SLOTS_FUNCTION "pgbdr_agent.bdr_slot_positions()"

static const char *bdr_query(const struct conn_caps *caps, char *buf, size_t len)
{
	snprintf(buf, len, BDR_SELECT,
		 caps->bdr_has_read_only ? "n.node_read_only" : "false",
		 caps->server_version >= 100000 ? LAG_WAL : LAG_XLOG,
		 caps->bdr_slot_positions ? SLOTS_FUNCTION : SLOTS_VIEW,
		 caps->bdr_peer_dsns ? PEER_DSNS : "NULL::text");
	return buf;
}

/* BDR's node_status codes (bdr.h, BDR_NODE_STATUS_*). */
static const char *join_phase(char code)
{
	switch (code) {
	case 'b':
		return "beginning to join";
	case 'i':
		return "copying initial data";
	case 'c':
		return "catching up";
	case 'o':
		return "creating outbound slots";
	default:
		return NULL;
	}
}

void judge_node_status(const char *status, struct node_facts *facts)
{
	const char *phase;

	if (status[0] == 'r' && status[1] == '\0')
		return;
	if (status[0] == '\0') {
		facts_set_problem(facts, "local node not found in bdr.bdr_nodes");
		return;
	}
	if (status[0] == 'k') {
		facts_set_problem(facts, "node has parted from the BDR group (status k)");
		return;
	}
	phase = join_phase(status[0]);
	if (phase)
		facts_set_problem(facts, "node is joining: %s (status %c)", phase, status[0]);
	else
		facts_set_problem(facts, "unknown BDR node status '%s'", status);
}

/*
 * Some peers not streaming from this node: it serves, impaired. None of
 * them: either they are all gone, or this node is cut off, or they have
 * parted it from the group (BDR records the part in their catalogs, not
 * always in the parted node's own). Down would take the last survivor
 * of a group out; ready at full weight would send a parted node full
 * traffic. So it is isolated: serving at min_weight at most, and a
 * central agent reads the part itself in the peers' catalogs.
 */
void judge_bdr_peer_slots(int total, int down, const char *names, struct node_facts *facts)
{
	if (down <= 0)
		return;
	if (down < total) {
		facts_set_impairment(facts, "%d of %d peers not replicating: %s", down, total,
				     names);
		return;
	}
	facts->isolated = true;
	facts_set_impairment(facts, "no peer replicating with this node: %s", names);
}

static void bdr_parse(const PGresult *res, const struct conn_caps *caps,
		      struct node_facts *facts)
{
	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	snprintf(facts->catalog_name, sizeof(facts->catalog_name), "%s",
		 pq_text(res, COL_LOCAL_NAME));
	facts->healthy = true;
	facts->read_only = pq_bool(res, COL_READ_ONLY);
	facts->peers_total = (int)pq_int64(res, COL_PEERS);
	facts->peers_down = (int)pq_int64(res, COL_PEERS_DOWN);
	probe_take_outgoing(res, COL_OUTGOING, facts);
	probe_take_incoming(res, COL_INCOMING, facts);
	probe_take_peers(res, COL_PEER_LIST, facts);
	probe_take_peer_dsns(res, COL_PEER_DSNS, caps->bdr_peer_dsns, facts);

	judge_node_status(pq_text(res, COL_NODE_STATUS), facts);
	if (!pq_bool(res, COL_ACTIVE))
		facts_set_problem(facts, "BDR is not active in this database");
	judge_bdr_peer_slots(facts->peers_total, facts->peers_down,
			 pq_text(res, COL_PEERS_DOWN_NAMES), facts);
}

const struct probe_ops probe_bdr_ops = {
	.flavor = FLAVOR_BDR,
	.query = bdr_query,
	.parse = bdr_parse,
};
