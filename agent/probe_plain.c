/*
 * A plain PostgreSQL server: reachable and writable. Needs no grant.
 * It replicates from nowhere, so it has nothing to lag behind: lag 0.
 */
#include "probe.h"

static const char *plain_query(const struct conn_caps *caps, char *buf, size_t len)
{
	return "SELECT pg_is_in_recovery(),"
	       " current_setting('default_transaction_read_only') = 'on'";
}

static void plain_parse(const PGresult *res, const struct conn_caps *caps,
			struct node_facts *facts)
{
	if (!probe_result_shape_ok(res, 2, facts))
		return;
	facts->healthy = true;
	facts->read_only = pq_bool(res, 0) || pq_bool(res, 1);
	facts->lag_bytes_known = true;
	facts->lag_seconds_known = true;
}

const struct probe_ops probe_plain_ops = {
	.flavor = FLAVOR_PLAIN,
	.query = plain_query,
	.parse = plain_parse,
};
