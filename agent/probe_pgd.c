/*
 * EDB Postgres Distributed: BDR 3.7, PGD 4 and PGD 5. One query reads
 * the local node's join state, PGD's own verdict on its slots, the
 * outgoing slots (lag), the incoming subscriptions, Raft consensus and,
 * on PGD 5, the group's write leader. The catalogs of the three
 * versions differ in a few columns; detection found which ones exist.
 * A monitoring role needs bdr_monitor (sql/grants/pgd.sql).
 *
 * bdr.node_slots are outgoing: how far each peer is behind this node.
 * They are reported keyed "this>peer", and a central agent reads them
 * as the peer's lag; this node's own lag is its peers' "peer>this". Alone
 * (per-node mode) it is read on the peers this node subscribes to, found
 * through bdr.node_summary.interface_connstr; unknown when one of them
 * cannot be asked, and 0 when it subscribes to none.
 */
#include <stdio.h>
#include <string.h>

#include "probe.h"

enum {
	COL_LOCAL_NAME,
	COL_STATE,
	COL_TARGET_STATE,
	COL_NODE_KIND,
	COL_READ_ONLY,
	COL_SLOTS_STATUS,
	COL_SLOTS_MESSAGE,
	COL_SLOTS,
	COL_SLOTS_IDLE,
	COL_OUTGOING,
	COL_INCOMING,
	COL_SUBS_DISABLED,
	COL_SUBS_DOWN,
	COL_SUBS_REPLICATING,
	COL_RAFT_GROUPS,
	COL_RAFT_PROBLEM,
	COL_RAFT_SELF,
	COL_RAFT_PEERS,
	COL_WRITE_LEAD,
	COL_PEER_LIST,
	COL_PEER_DSNS,
	N_COLS
};

/*
 * The query is put together from these parts. The group slot (never
 * connected by design) and, from PGD 4, the decoding worker's slot are
 * not peers. replay_lag is NULL on an idle, caught-up slot, hence 0
 * seconds when no byte is outstanding.
 */
#define PGD_LOCAL \
	"WITH l AS (SELECT node_id, node_name, node_group_name, peer_state_name," \
	"   peer_target_state_name, %s AS node_kind FROM bdr.local_node_summary LIMIT 1)," \
	" slots AS (SELECT target_name, active, replay_lag_bytes, replay_lag" \
	"   FROM bdr.node_slots WHERE NOT is_group_slot %s AND target_name IS NOT NULL)," \
	" subs AS (SELECT sub_name, origin_name, sub_enabled, subscription_status" \
	"   FROM bdr.subscription_summary)," \
	" mon AS (%s)," \
	" raft AS (%s)," \
	" rg AS (SELECT grp, count(*) FILTER (WHERE state = 'RAFT_LEADER') AS n_leaders," \
	"   string_agg(node_name::text, ', ' ORDER BY node_name)" \
	"     FILTER (WHERE state = 'RAFT_LEADER') AS leaders," \
	"   min(node_id) FILTER (WHERE state = 'RAFT_LEADER') AS leader_id" \
	"   FROM raft WHERE grp IN (SELECT grp FROM raft WHERE node_id = (SELECT node_id FROM l))" \
	"   GROUP BY grp)"

#define PGD_SELECT \
	" SELECT l.node_name, l.peer_state_name, l.peer_target_state_name, l.node_kind," \
	" pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'," \
	" (SELECT status FROM mon LIMIT 1), (SELECT message FROM mon LIMIT 1)," \
	" (SELECT count(*) FROM slots)::int," \
	" (SELECT string_agg(target_name::text, ', ' ORDER BY target_name) FROM slots" \
	"   WHERE NOT active)," \
	" (SELECT string_agg(l.node_name || '>' || target_name || chr(31)" \
	"   || CASE WHEN replay_lag_bytes IS NOT NULL" \
	"   THEN GREATEST(0, replay_lag_bytes)::bigint::text ELSE '' END, chr(30)" \
	"   ORDER BY target_name) FROM slots)," \
	" (SELECT string_agg(DISTINCT origin_name || '>' || l.node_name, chr(30)) FROM subs" \
	"   WHERE sub_enabled AND origin_name IS NOT NULL)," \
	" (SELECT string_agg(sub_name::text, ', ' ORDER BY sub_name) FROM subs" \
	"   WHERE NOT sub_enabled)," \
	" (SELECT string_agg(sub_name || ' from ' || COALESCE(origin_name::text, '?') || ' is '" \
	"   || COALESCE(subscription_status, 'unknown'), ', ' ORDER BY sub_name) FROM subs" \
	"   WHERE sub_enabled AND subscription_status IS DISTINCT FROM 'replicating')," \
	" (SELECT count(*) FROM subs WHERE sub_enabled" \
	"   AND subscription_status = 'replicating')::int," \
	" (SELECT count(*) FROM rg)::int," \
	" (SELECT CASE WHEN n_leaders = 0 THEN 'raft has no leader'" \
	"   ELSE 'raft has ' || n_leaders || ' leaders: ' || leaders END" \
	"   || CASE WHEN grp <> '' THEN ' in group ' || grp ELSE '' END" \
	"   FROM rg WHERE n_leaders <> 1 ORDER BY grp LIMIT 1)," \
	" (SELECT rg.leaders FROM rg JOIN raft r ON r.grp = rg.grp AND r.node_id = l.node_id" \
	"   WHERE rg.n_leaders = 1 AND r.leader_id IS DISTINCT FROM rg.leader_id LIMIT 1)," \
	" (SELECT string_agg(DISTINCT r.node_name::text, ', ') FROM rg" \
	"   JOIN raft r ON r.grp = rg.grp WHERE rg.n_leaders = 1 AND r.node_id <> l.node_id" \
	"   AND r.state IS NOT NULL AND r.leader_id IS DISTINCT FROM rg.leader_id)," \
	" %s," \
	" (SELECT string_agg(p.node_name || chr(31) || (p.peer_state_name = 'ACTIVE' AND %s" \
	"   AND EXISTS (SELECT 1 FROM slots s WHERE s.target_name = p.node_name AND s.active))::text," \
	"   chr(30) ORDER BY p.node_name) FROM bdr.node_summary p WHERE p.node_id <> l.node_id)," \
	" %s" \
	" FROM (SELECT 1) one LEFT JOIN l ON true"

/*
 * PGD 5 names the kind of node. BDR 3.7 and PGD 4 have no node kinds,
 * but a node in a group of type subscriber-only only receives changes:
 * its group's node_group_type says so. The column is read by name
 * through to_jsonb(), so a catalog without it reads as a data node.
 */
#define KIND_PGD5 "node_kind_name::text"
#define KIND_GROUP_TYPE \
	"(SELECT CASE WHEN to_jsonb(g) ->> 'node_group_type' = 'subscriber-only'" \
	"   THEN 'subscriber-only' END FROM bdr.node_group g" \
	"   WHERE g.node_group_name = local_node_summary.node_group_name LIMIT 1)"
#define PEER_IS_DATA_PGD5 "COALESCE(p.node_kind_name::text, 'data') = 'data'"
#define MONITOR_SQL "SELECT status::text, message::text FROM bdr.monitor_local_replslots()"
#define MONITOR_NONE "SELECT NULL::text AS status, NULL::text AS message WHERE false"
#define RAFT_NONE \
	"SELECT ''::text AS grp, 0::oid AS node_id, ''::name AS node_name," \
	" ''::text AS state, 0::oid AS leader_id WHERE false"
#define ROUTING_PGD5 \
	"(SELECT write_lead::text FROM bdr.node_group_routing_summary r" \
	"   WHERE r.node_group_name = l.node_group_name LIMIT 1)"

/*
 * Where each peer this node subscribes to can be reached: the interface
 * PGD itself connects to (bdr.node_summary.interface_connstr). Only the
 * origins of enabled subscriptions: their slots for this node are its
 * lag. One row per name, should a catalog list a node twice. Read only
 * for the per-node lag, and filtered to an address at once.
 */
#define PEER_DSNS \
	"(SELECT string_agg(d, chr(30) ORDER BY d) FROM (SELECT DISTINCT ON (p.node_name)" \
	"   p.node_name || chr(31) || COALESCE(p.interface_connstr::text, '') AS d" \
	"   FROM bdr.node_summary p WHERE p.node_id <> l.node_id AND p.node_name IN" \
	"   (SELECT origin_name FROM subs WHERE sub_enabled)" \
	"   ORDER BY p.node_name, p.interface_connstr) x)"

/*
 * PGD 5 runs Raft per group (top group and data subgroups); 3.7 and 4
 * have one Raft instance, seen here as one unnamed group.
 */
static const char *raft_source(const struct conn_caps *caps)
{
	if (!caps->pgd_has_raft)
		return RAFT_NONE;
	if (caps->pgd_raft_has_group)
		return "SELECT node_group_name::text AS grp, node_id, node_name, state, leader_id"
		       " FROM bdr.group_raft_details";
	return "SELECT ''::text AS grp, node_id, node_name, state, leader_id"
	       " FROM bdr.group_raft_details";
}

/*
 * The text depends on seven catalog facts, too many combinations for
 * fixed strings, so it is built into the caller's buffer.
 */
static const char *pgd_query(const struct conn_caps *caps, char *buf, size_t len)
{
	snprintf(buf, len, PGD_LOCAL PGD_SELECT,
		 caps->pgd_has_node_kind ? KIND_PGD5 : KIND_GROUP_TYPE,
		 caps->pgd_has_decoder_slot ? "AND NOT is_decoder_slot" : "",
		 caps->pgd_has_monitor ? MONITOR_SQL : MONITOR_NONE,
		 raft_source(caps),
		 caps->pgd_has_routing ? ROUTING_PGD5 : "NULL::text",
		 caps->pgd_has_node_kind ? PEER_IS_DATA_PGD5 : "true",
		 caps->pgd_peer_dsns ? PEER_DSNS : "NULL::text");
	return buf;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/*
 * peer_state_name (bdr.node_summary). STANDBY is where every join
 * passes; a node that stays there (target STANDBY) is a logical
 * standby, which serves reads only.
 */
void judge_local_state(const char *state, const char *target, struct node_facts *facts)
{
	static const char *const joining[] = {
		"JOIN_START", "JOINING", "CATCHUP", "PROMOTE", "PROMOTING", NULL
	};
	static const char *const parting[] = {
		"PART_START", "PARTING", "PART_CATCHUP", NULL
	};

	/* some releases print the enum's full name */
	if (strncmp(state, "BDR_PEER_STATE_", 15) == 0)
		state += 15;
	if (strcmp(state, "ACTIVE") == 0)
		return;
	if (strcmp(state, "STANDBY") == 0 && (!target[0] || strstr(target, "STANDBY")))
		facts->read_only = true;
	else if (strcmp(state, "STANDBY") == 0 || in_list(state, joining))
		facts_set_problem(facts, "joining: %s", state);
	else if (strcmp(state, "NONE") == 0 || strcmp(state, "CREATED") == 0)
		facts_set_problem(facts, "not joined to a PGD group: %s", state);
	else if (in_list(state, parting))
		facts_set_problem(facts, "parting: %s", state);
	else if (strcmp(state, "PARTED") == 0)
		facts_set_problem(facts, "parted from the PGD group: PARTED");
	else
		facts_set_problem(facts, "PGD node state %s", state[0] ? state : "unknown");
}

/*
 * bdr.monitor_local_replslots(): PGD says CRITICAL as soon as one peer
 * slot is inactive, which is what every survivor sees when one peer
 * dies. That is the peer's trouble, not this node's, so it degrades;
 * UNKNOWN means "not part of any group" and takes the node down.
 */
static void judge_slots_status(const PGresult *res, struct node_facts *facts)
{
	const char *status = pq_text(res, COL_SLOTS_STATUS);
	const char *message = pq_text(res, COL_SLOTS_MESSAGE);

	if (pq_is_null(res, COL_SLOTS_STATUS) || strcmp(status, "OK") == 0)
		return;
	if (strcmp(status, "WARNING") == 0 || strcmp(status, "CRITICAL") == 0)
		facts_add_impairment(facts, "replication slots %s: %s", status, message);
	else
		facts_set_problem(facts, "replication slots %s: %s", status, message);
}

/*
 * A subscription the operator disabled takes the node out. One that is
 * down while another still replicates means its origin is unreachable:
 * this node serves on, degraded. With none replicating the node is cut
 * off and cannot tell whether it is the survivor or the partitioned one.
 */
static void judge_subscriptions(const PGresult *res, struct node_facts *facts)
{
	if (!pq_is_null(res, COL_SUBS_DISABLED))
		facts_set_problem(facts, "subscription disabled: %s", pq_text(res, COL_SUBS_DISABLED));
	probe_judge_stalled_subscriptions(res, COL_SUBS_DOWN, COL_SUBS_REPLICATING,
					  "subscription", facts);
}

/*
 * Raft must have exactly one leader per group, followed by every node.
 * Several leaders: consensus is broken, and this node goes down. No
 * leader is what every election looks like for a moment: it is
 * reported as such, and evaluate() keeps the node serving for
 * raft_grace (as PGD's own proxy does) before failing closed. Without
 * group_raft_details consensus cannot be confirmed at all: down.
 */
#define RAFT_NO_LEADER "raft has no leader"

static void judge_raft(const PGresult *res, const struct conn_caps *caps,
		       struct node_facts *facts)
{
	const char *problem = pq_text(res, COL_RAFT_PROBLEM);

	if (!caps->pgd_has_raft)
		facts_set_problem(facts, "raft: bdr.group_raft_details is missing: consensus unknown");
	else if (pq_int64(res, COL_RAFT_GROUPS) == 0)
		facts_set_problem(facts, "raft: no consensus status for this node");
	else if (strncmp(problem, RAFT_NO_LEADER, strlen(RAFT_NO_LEADER)) == 0) {
		facts->raft_leaderless = true;
		snprintf(facts->raft_text, sizeof(facts->raft_text), "%s", problem);
	}
	else if (!pq_is_null(res, COL_RAFT_PROBLEM))
		facts_set_problem(facts, "%s", problem);
	else if (!pq_is_null(res, COL_RAFT_SELF))
		facts_set_problem(facts, "raft: this node does not follow leader %s",
				  pq_text(res, COL_RAFT_SELF));
	if (!pq_is_null(res, COL_RAFT_PEERS))
		facts_add_impairment(facts, "raft: %s not following the leader",
			       pq_text(res, COL_RAFT_PEERS));
}

static void judge_peer_slots(const PGresult *res, struct node_facts *facts)
{
	const char *idle = pq_text(res, COL_SLOTS_IDLE);
	int n = 1;

	if (!idle[0])
		return;
	for (const char *p = idle; (p = strstr(p, ", ")) != NULL; p += 2)
		n++;
	facts->peers_down = n;
	facts_add_impairment(facts, "%d of %d peers not streaming: %s", n, facts->peers_total, idle);
}

void judge_node_kind(const char *kind, struct node_facts *facts)
{
	if (strcmp(kind, "subscriber-only") == 0)
		facts->read_only = true;
	else if (strcmp(kind, "witness") == 0)
		facts_set_problem(facts, "witness node: it stores no data and takes no traffic");
}

static void pgd_parse(const PGresult *res, const struct conn_caps *caps,
		      struct node_facts *facts)
{
	if (!probe_result_shape_ok(res, N_COLS, facts))
		return;
	facts->healthy = true;
	snprintf(facts->catalog_name, sizeof(facts->catalog_name), "%s",
		 pq_text(res, COL_LOCAL_NAME));
	snprintf(facts->catalog_write_leader, sizeof(facts->catalog_write_leader), "%s",
		 pq_text(res, COL_WRITE_LEAD));
	facts->read_only = pq_bool(res, COL_READ_ONLY);
	facts->peers_total = (int)pq_int64(res, COL_SLOTS);
	probe_take_outgoing(res, COL_OUTGOING, facts);
	probe_take_incoming(res, COL_INCOMING, facts);
	probe_take_peers(res, COL_PEER_LIST, facts);
	probe_take_peer_dsns(res, COL_PEER_DSNS, caps->pgd_peer_dsns, facts);

	if (pq_is_null(res, COL_LOCAL_NAME)) {
		facts_set_problem(facts, "no local PGD node in this database");
		return;
	}
	judge_local_state(pq_text(res, COL_STATE), pq_text(res, COL_TARGET_STATE), facts);
	judge_node_kind(pq_text(res, COL_NODE_KIND), facts);
	judge_subscriptions(res, facts);
	judge_slots_status(res, facts);
	judge_raft(res, caps, facts);
	judge_peer_slots(res, facts);
}

const struct probe_ops probe_pgd_ops = {
	.flavor = FLAVOR_PGD,
	.query = pgd_query,
	.parse = pgd_parse,
};
