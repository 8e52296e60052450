/*
 * Connection detection and the helpers every flavor's parser uses.
 * Detection reads pg_catalog only (readable by any role), so it works
 * for a least-privilege monitoring role and for emulated catalogs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

const char *probe_detect_query(void)
{
	/*
	 * Catalog lookups instead of to_regclass(): a schema the role
	 * has no USAGE on makes to_regclass() raise instead of NULL.
	 */
	return "SELECT current_setting('server_version_num')::int,"
	       " pg_is_in_recovery(),"
	       " EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
	       "   WHERE n.nspname = 'bdr' AND p.proname = 'bdr_get_local_node_name'),"
	       " EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	       "   WHERE n.nspname = 'bdr' AND c.relname = 'local_node_summary'),"
	       " EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	       "   WHERE n.nspname = 'pglogical' AND c.relname = 'local_node'),"
	       " EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	       "   WHERE n.nspname = 'spock' AND c.relname = 'local_node'),"
	       " (SELECT count(*) FROM pg_stat_subscription)::int,"
	       " (SELECT count(*) FROM pg_stat_replication)::int,"
	       " EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
	       "   JOIN pg_namespace n ON n.oid = c.relnamespace"
	       "   WHERE n.nspname = 'bdr' AND c.relname = 'bdr_nodes'"
	       "   AND a.attname = 'node_read_only' AND NOT a.attisdropped)";
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
	if (caps->n_subscriptions > 0)
		return FLAVOR_LOGICAL;
	if (caps->in_recovery || caps->n_walsenders > 0)
		return FLAVOR_PHYSICAL;
	return FLAVOR_PLAIN;
}

int probe_detect_parse(const PGresult *res, enum flavor forced,
		       struct conn_caps *caps, char *err, size_t errlen)
{
	if (PQntuples(res) != 1 || PQnfields(res) != 9) {
		snprintf(err, errlen, "unexpected result from the detect query");
		return -1;
	}
	memset(caps, 0, sizeof(*caps));
	caps->server_version = (int)pq_int64(res, 0);
	caps->in_recovery = pq_bool(res, 1);
	caps->has_bdr1 = pq_bool(res, 2);
	caps->has_pgd = pq_bool(res, 3);
	caps->has_pglogical = pq_bool(res, 4);
	caps->has_spock = pq_bool(res, 5);
	caps->n_subscriptions = (int)pq_int64(res, 6);
	caps->n_walsenders = (int)pq_int64(res, 7);
	caps->bdr_has_read_only = pq_bool(res, 8);
	caps->flavor = forced != FLAVOR_AUTO ? forced : choose_flavor(caps);
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
		&probe_physical_ops,
		&probe_pglogical_ops,
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
		p += strcspn(p, "\x1e");
		if (*p)
			p++;
		if (peer->name[0])
			facts->n_peers++;
	}
}
