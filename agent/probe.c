/*
 * Connection detection and the helpers every flavor's parser uses.
 * Detection reads pg_catalog only (readable by any role), so it works
 * for a least-privilege monitoring role and for emulated catalogs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_dsn.h"
#include "probe.h"

/* Catalog probes for the detect query: pg_catalog only, readable by anyone. */
#define HAS_REL(nsp, rel) \
	" EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace" \
	"   WHERE n.nspname = '" nsp "' AND c.relname = '" rel "')"
#define HAS_COL(nsp, rel, col) \
	" EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid" \
	"   JOIN pg_namespace n ON n.oid = c.relnamespace" \
	"   WHERE n.nspname = '" nsp "' AND c.relname = '" rel "'" \
	"   AND a.attname = '" col "' AND NOT a.attisdropped)"
#define HAS_PROC(nsp, proc) \
	" EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace" \
	"   WHERE n.nspname = '" nsp "' AND p.proname = '" proc "')"

/* Whether the role may read all n of the named tables (a quoted list). */
#define READABLE(nsp, rels, n) \
	" (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace" \
	"   WHERE n.nspname = '" nsp "' AND c.relname IN (" rels ")" \
	"   AND has_schema_privilege(n.oid, 'USAGE')" \
	"   AND has_table_privilege(c.oid, 'SELECT')) = " #n

/* Whether the column exists and the role may read it. */
#define READABLE_COL(nsp, rel, col) \
	" EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid" \
	"   JOIN pg_namespace n ON n.oid = c.relnamespace" \
	"   WHERE n.nspname = '" nsp "' AND c.relname = '" rel "'" \
	"   AND a.attname = '" col "' AND NOT a.attisdropped" \
	"   AND has_schema_privilege(n.oid, 'USAGE')" \
	"   AND has_column_privilege(c.oid, a.attnum, 'SELECT'))"

/* The detect query's columns, in order. */
enum {
	DET_VERSION,
	DET_IN_RECOVERY,
	DET_BDR1,
	DET_PGD,
	DET_PGLOGICAL,
	DET_SPOCK,
	DET_SUBSCRIPTIONS,
	DET_WALSENDERS,
	DET_BDR_READ_ONLY,
	DET_LOGICAL_SLOTS,
	DET_PGD_NODE_KIND,
	DET_PGD_DECODER_SLOT,
	DET_PGD_RAFT,
	DET_PGD_RAFT_GROUP,
	DET_PGD_MONITOR,
	DET_PGD_ROUTING,
	DET_ORIGINS_READABLE,
	DET_SUPERUSER,
	DET_SPOCK_RECEIVER_LAG,
	DET_BDR_SLOT_POSITIONS,
	DET_BDR_PEER_DSNS,
	DET_PGL_PEER_DSNS,
	DET_PGD_PEER_DSNS,
	DET_N_COLS
};

const char *probe_detect_query(void)
{
	/*
	 * Catalog lookups instead of to_regclass(): a schema the role
	 * has no USAGE on makes to_regclass() raise instead of NULL.
	 * Subscriptions and slots are counted in this database only:
	 * pg_subscription is shared by the whole cluster. It does not
	 * exist before 10 (BDR 1/2 run on 9.4/9.6), and naming it would
	 * fail the whole query there, hence query_to_xml(), which parses
	 * its text only when the CASE gets to run it.
	 */
	return "SELECT current_setting('server_version_num')::int,"
	       " pg_is_in_recovery(),"
	       HAS_PROC("bdr", "bdr_get_local_node_name") ","
	       HAS_REL("bdr", "local_node_summary") ","
	       HAS_REL("pglogical", "local_node") ","
	       HAS_REL("spock", "local_node") ","
	       " CASE WHEN current_setting('server_version_num')::int >= 100000 THEN"
	       "   (xpath('/row/n/text()', query_to_xml('SELECT count(subdbid) AS n"
	       "   FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database"
	       "   WHERE datname = current_database())', false, true, '')))[1]::text::int"
	       "   ELSE 0 END,"
	       " (SELECT count(*) FROM pg_stat_replication)::int,"
	       HAS_COL("bdr", "bdr_nodes", "node_read_only") ","
	       " (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"
	       "   AND plugin = 'pgoutput' AND database = current_database())::int,"
	       HAS_COL("bdr", "node_summary", "node_kind_name") ","
	       HAS_COL("bdr", "node_slots", "is_decoder_slot") ","
	       HAS_REL("bdr", "group_raft_details") ","
	       HAS_COL("bdr", "group_raft_details", "node_group_name") ","
	       HAS_PROC("bdr", "monitor_local_replslots") ","
	       HAS_REL("bdr", "node_group_routing_summary") ","
	       " EXISTS (SELECT 1 FROM pg_class c JOIN pg_proc p"
	       "   ON p.proname = 'pg_show_replication_origin_status'"
	       "   WHERE c.relname = 'pg_replication_origin_status'"
	       "   AND c.relnamespace = p.pronamespace"
	       "   AND has_table_privilege(c.oid, 'SELECT')"
	       "   AND has_function_privilege(p.oid, 'EXECUTE')),"
	       " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
	       HAS_COL("spock", "lag_tracker", "last_received_lsn") ","
	       " EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
	       "   WHERE n.nspname = 'pgbdr_agent' AND p.proname = 'bdr_slot_positions'"
	       "   AND has_schema_privilege(n.oid, 'USAGE')"
	       "   AND has_function_privilege(p.oid, 'EXECUTE')),"
	       READABLE("bdr", "'bdr_connections'", 1) ","
	       READABLE("pglogical", "'node_interface', 'subscription'", 2) ","
	       READABLE_COL("bdr", "node_summary", "interface_connstr");
}

static enum flavor choose_flavor(const struct conn_caps *caps)
{
	if (caps->has_pgd)
		return FLAVOR_PGD;
	if (caps->has_bdr1)
		return FLAVOR_BDR;
	if (caps->has_spock)
		return FLAVOR_SPOCK;
	if (caps->has_pglogical)
		return FLAVOR_PGLOGICAL;
	/* a standby carries its primary's pg_subscription, but applies nothing */
	if (caps->in_recovery)
		return FLAVOR_PHYSICAL;
	if (caps->n_subscriptions > 0 || caps->n_logical_slots > 0)
		return FLAVOR_LOGICAL;
	if (caps->n_walsenders > 0)
		return FLAVOR_PHYSICAL;
	return FLAVOR_PLAIN;
}

static void parse_pgd_caps(const PGresult *res, struct conn_caps *caps)
{
	caps->pgd_has_node_kind = pq_bool(res, DET_PGD_NODE_KIND);
	caps->pgd_has_decoder_slot = pq_bool(res, DET_PGD_DECODER_SLOT);
	caps->pgd_has_raft = pq_bool(res, DET_PGD_RAFT);
	caps->pgd_raft_has_group = pq_bool(res, DET_PGD_RAFT_GROUP);
	caps->pgd_has_monitor = pq_bool(res, DET_PGD_MONITOR);
	caps->pgd_has_routing = pq_bool(res, DET_PGD_ROUTING);
	caps->pgd_peer_dsns = pq_bool(res, DET_PGD_PEER_DSNS);
}

int probe_detect_parse(const PGresult *res, enum flavor forced, bool require_bdr,
		       struct conn_caps *caps, char *err, size_t errlen)
{
	if (PQntuples(res) != 1 || PQnfields(res) != DET_N_COLS) {
		snprintf(err, errlen, "unexpected result from the detect query");
		return -1;
	}
	memset(caps, 0, sizeof(*caps));
	caps->server_version = (int)pq_int64(res, DET_VERSION);
	caps->in_recovery = pq_bool(res, DET_IN_RECOVERY);
	caps->has_bdr1 = pq_bool(res, DET_BDR1);
	caps->has_pgd = pq_bool(res, DET_PGD);
	caps->has_pglogical = pq_bool(res, DET_PGLOGICAL);
	caps->has_spock = pq_bool(res, DET_SPOCK);
	caps->n_subscriptions = (int)pq_int64(res, DET_SUBSCRIPTIONS);
	caps->n_walsenders = (int)pq_int64(res, DET_WALSENDERS);
	caps->bdr_has_read_only = pq_bool(res, DET_BDR_READ_ONLY);
	caps->n_logical_slots = (int)pq_int64(res, DET_LOGICAL_SLOTS);
	caps->can_read_origins = pq_bool(res, DET_ORIGINS_READABLE);
	caps->is_superuser = pq_bool(res, DET_SUPERUSER);
	caps->spock_receiver_lag = pq_bool(res, DET_SPOCK_RECEIVER_LAG);
	caps->bdr_slot_positions = pq_bool(res, DET_BDR_SLOT_POSITIONS);
	caps->bdr_peer_dsns = pq_bool(res, DET_BDR_PEER_DSNS);
	caps->pglogical_peer_dsns = pq_bool(res, DET_PGL_PEER_DSNS);
	parse_pgd_caps(res, caps);
	caps->flavor = forced != FLAVOR_AUTO ? forced : choose_flavor(caps);
	if (require_bdr && caps->flavor != FLAVOR_BDR && caps->flavor != FLAVOR_PGD) {
		snprintf(err, errlen, "no BDR in this database: a [postgresql] section checks BDR;"
			 " set flavor = auto (or the setup's flavor) to check a %s server",
			 flavor_name(caps->flavor));
		return -1;
	}
	if (!probe_for_flavor(caps->flavor)) {
		snprintf(err, errlen, "flavor %s is not supported by this build",
			 flavor_name(caps->flavor));
		return -1;
	}
	return 0;
}

const struct probe_ops *probe_for_flavor(enum flavor flavor)
{
	static const struct probe_ops *const all[] = {
		&probe_bdr_ops,
		&probe_pgd_ops,
		&probe_pglogical_ops,
		&probe_spock_ops,
		&probe_logical_ops,
		&probe_physical_ops,
		&probe_plain_ops,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i]->flavor == flavor)
			return all[i];
	return NULL;
}

bool probe_result_shape_ok(const PGresult *res, int nfields, struct node_facts *facts)
{
	if (PQntuples(res) == 1 && PQnfields(res) == nfields)
		return true;
	facts->outcome = PROBE_QUERY_FAILED;
	snprintf(facts->error, sizeof(facts->error),
		 "probe returned %d rows of %d columns, expected 1 of %d",
		 PQntuples(res), PQnfields(res), nfields);
	return false;
}

bool pq_is_null(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col);
}

bool pq_bool(const PGresult *res, int col)
{
	return !pq_is_null(res, col) && PQgetvalue(res, 0, col)[0] == 't';
}

long long pq_int64(const PGresult *res, int col)
{
	return pq_is_null(res, col) ? 0 : strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

double pq_double(const PGresult *res, int col)
{
	return pq_is_null(res, col) ? 0.0 : strtod(PQgetvalue(res, 0, col), NULL);
}

const char *pq_text(const PGresult *res, int col)
{
	return pq_is_null(res, col) ? "" : PQgetvalue(res, 0, col);
}

void probe_take_lag_bytes(const PGresult *res, int col, struct node_facts *facts)
{
	facts->lag_bytes_known = !pq_is_null(res, col);
	facts->lag_bytes = facts->lag_bytes_known ? pq_int64(res, col) : 0;
	if (facts->lag_bytes < 0)
		facts->lag_bytes = 0;
}

void probe_take_lag_seconds(const PGresult *res, int col, struct node_facts *facts)
{
	facts->lag_seconds_known = !pq_is_null(res, col);
	facts->lag_seconds = facts->lag_seconds_known ? pq_double(res, col) : 0.0;
	if (facts->lag_seconds < 0)
		facts->lag_seconds = 0;
}

void facts_set_problem(struct node_facts *facts, const char *fmt, ...)
{
	va_list ap;

	if (!facts->healthy)
		return; /* the first problem is the one to fix first */
	facts->healthy = false;
	va_start(ap, fmt);
	vsnprintf(facts->problem, sizeof(facts->problem), fmt, ap);
	va_end(ap);
}

void facts_set_impairment(struct node_facts *facts, const char *fmt, ...)
{
	va_list ap;

	facts->impaired = true;
	va_start(ap, fmt);
	vsnprintf(facts->impairment, sizeof(facts->impairment), fmt, ap);
	va_end(ap);
}

void facts_add_impairment(struct node_facts *facts, const char *fmt, ...)
{
	size_t used = facts->impaired ? strnlen(facts->impairment, REASON_MAX - 1) : 0;
	va_list ap;

	if (used > 0 && used + 2 < REASON_MAX - 1) {
		memcpy(facts->impairment + used, "; ", 3);
		used += 2;
	}
	facts->impaired = true;
	if (used >= REASON_MAX - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(facts->impairment + used, REASON_MAX - used, fmt, ap);
	va_end(ap);
}

void probe_take_peers(const PGresult *res, int col, struct node_facts *facts)
{
	const char *p = pq_text(res, col);

	facts->n_peers = 0;
	while (*p && facts->n_peers < MAX_PEERS) {
		struct peer_fact *peer = &facts->peers[facts->n_peers];
		size_t name_len = strcspn(p, "\x1f\x1e");

		snprintf(peer->name, sizeof(peer->name), "%.*s", (int)name_len, p);
		p += name_len;
		peer->up = p[0] == '\x1f' && p[1] == 't';
		peer->parted = false;
		if (p[0] == '\x1f') {
			p += 1 + strcspn(p + 1, "\x1f\x1e");
			peer->parted = p[0] == '\x1f' && p[1] == 't';
		}
		p += strcspn(p, "\x1e");
		if (*p)
			p++;
		if (peer->name[0])
			facts->n_peers++;
	}
}

void probe_take_peer_dsns(const PGresult *res, int col, bool readable,
			  struct node_facts *facts)
{
	const char *p = pq_text(res, col);

	facts->n_peer_addrs = 0;
	facts->peer_dsns = readable ? PEER_DSNS_READ : PEER_DSNS_HIDDEN;
	while (readable && *p && facts->n_peer_addrs < MAX_PEERS) {
		struct peer_address *a = &facts->peer_addrs[facts->n_peer_addrs];
		size_t name_len = strcspn(p, "\x1f\x1e");
		size_t dsn_len;
		char dsn[1024];

		snprintf(a->name, sizeof(a->name), "%.*s", (int)name_len, p);
		p += name_len;
		dsn_len = p[0] == '\x1f' ? strcspn(p + 1, "\x1e") : 0;
		/* a DSN cut short is no DSN: the filter rejects an empty one */
		snprintf(dsn, sizeof(dsn), "%.*s", dsn_len < sizeof(dsn) ? (int)dsn_len : 0,
			 p + 1);
		peer_dsn_filter(dsn, a);
		explicit_bzero(dsn, sizeof(dsn));
		p += dsn_len ? dsn_len + 1 : strcspn(p, "\x1e");
		if (*p)
			p++;
		if (a->name[0])
			facts->n_peer_addrs++;
	}
}

void probe_judge_stalled_subscriptions(const PGresult *res, int col_list, int col_applying,
				       const char *what, struct node_facts *facts)
{
	if (pq_is_null(res, col_list))
		return;
	if (pq_int64(res, col_applying) > 0)
		facts_add_impairment(facts, "%s %s", what, pq_text(res, col_list));
	else
		facts_set_problem(facts, "no subscription replicating: %s %s", what,
				  pq_text(res, col_list));
}

void probe_take_idle_slots(const PGresult *res, int col_list, const char *what,
			   struct node_facts *facts)
{
	if (pq_is_null(res, col_list))
		return;
	facts->peers_down = 1;
	facts_add_impairment(facts, "%s %s", what, pq_text(res, col_list));
}

void probe_take_outgoing(const PGresult *res, int col, struct node_facts *facts)
{
	const char *p = pq_text(res, col);

	facts->n_outgoing = 0;
	facts->out_lag_bytes_known = false;
	facts->out_lag_bytes = 0;
	while (*p && facts->n_outgoing < MAX_PEERS) {
		struct outgoing_fact *o = &facts->outgoing[facts->n_outgoing];
		size_t key_len = strcspn(p, "\x1f\x1e");
		char *end;

		snprintf(o->to, sizeof(o->to), "%.*s", (int)key_len, p);
		p += key_len;
		o->lag_known = false;
		o->lag_bytes = 0;
		if (*p == '\x1f' && p[1] >= '0' && p[1] <= '9') {
			long long v = strtoll(p + 1, &end, 10);

			o->lag_known = true;
			o->lag_bytes = v < 0 ? 0 : v;
		}
		p += strcspn(p, "\x1e");
		if (*p)
			p++;
		if (!o->to[0])
			continue;
		if (o->lag_known && (!facts->out_lag_bytes_known || o->lag_bytes > facts->out_lag_bytes)) {
			facts->out_lag_bytes_known = true;
			facts->out_lag_bytes = o->lag_bytes;
		}
		facts->n_outgoing++;
	}
}

void probe_take_incoming(const PGresult *res, int col, struct node_facts *facts)
{
	const char *p = pq_text(res, col);

	facts->n_incoming = 0;
	while (*p && facts->n_incoming < MAX_PEERS) {
		size_t key_len = strcspn(p, "\x1e");

		snprintf(facts->incoming[facts->n_incoming], STREAM_KEY_MAX, "%.*s", (int)key_len, p);
		p += key_len;
		if (*p)
			p++;
		if (facts->incoming[facts->n_incoming][0])
			facts->n_incoming++;
	}
	if (facts->n_incoming == 0 && !facts->lag_bytes_known) {
		facts->lag_bytes_known = true;
		facts->lag_bytes = 0;
		facts->lag_seconds_known = true;
		facts->lag_seconds = 0;
	}
}
