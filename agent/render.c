/*
 * Status renderings. The JSON writer is a handful of helpers rather
 * than a library: the document is small, flat and fixed in shape.
 * Connection details come from the node's libpq parameters, and the
 * password is never among the ones printed.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "ask.h"
#include "clock.h"
#include "etcd.h"
#include "render.h"
#include "units.h"

static void format_lag(const struct node_status *st, char *buf, size_t len)
{
	if (st->lag_bytes_known)
		format_size(st->lag_bytes, buf, len);
	else
		snprintf(buf, len, "unknown");
}

static void status_line(const char *state, int weight, const struct node_status *st,
			const char *duty, const char *reason, struct evbuffer *out)
{
	char lag[32];

	format_lag(st, lag, sizeof(lag));
	evbuffer_add_printf(out, "%s %s weight=%d%% lag=%s", state, st->name, weight, lag);
	if (st->lag_seconds_known)
		evbuffer_add_printf(out, " lag_time=%.1fs", st->lag_seconds);
	evbuffer_add_printf(out, " flavor=%s", flavor_name(st->flavor));
	if (st->write_leader)
		evbuffer_add_printf(out, " write_leader");
	if (duty)
		evbuffer_add_printf(out, " duty=%s", duty);
	if (reason[0])
		evbuffer_add_printf(out, ": %s", reason);
	evbuffer_add(out, "\n", 1);
}

void render_status_line(const struct node *n, struct evbuffer *out)
{
	const struct node_status *st = &n->status;

	status_line(state_name(st->state), st->weight, st, NULL, st->reason, out);
}

void render_answer_line(const struct answer *ans, const struct node_status *st,
			struct evbuffer *out)
{
	status_line(state_name(ans->state), ans->weight, st,
		    ans->duty == DUTY_ANY ? NULL : duty_name(ans->duty), ans->reason, out);
}

void render_json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			evbuffer_add_printf(out, "\\%c", c);
		else if (c < 0x20)
			evbuffer_add_printf(out, "\\u%04x", c);
		else
			evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

static void json_key(struct evbuffer *out, const char *key)
{
	render_json_string(out, key);
	evbuffer_add(out, ": ", 2);
}

static void json_string_field(struct evbuffer *out, const char *key, const char *value)
{
	json_key(out, key);
	if (value)
		render_json_string(out, value);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add(out, ", ", 2);
}

static void render_node_json(const struct node *n, struct evbuffer *out)
{
	const struct node_status *st = &n->status;
	char when[40];

	evbuffer_add(out, "{", 1);
	json_string_field(out, "name", st->name);
	if (st->name_pending)
		json_string_field(out, "name_note", "not known yet: the host name until a probe"
				  " reads the catalog's local node name");
	json_string_field(out, "flavor", flavor_name(st->flavor));
	json_string_field(out, "state", state_name(st->state));
	evbuffer_add_printf(out, "\"weight\": %d, ", st->weight);
	if (st->lag_bytes_known)
		evbuffer_add_printf(out, "\"lag_bytes\": %lld, ", (long long)st->lag_bytes);
	else
		evbuffer_add_printf(out, "\"lag_bytes\": null, ");
	if (st->out_lag_bytes_known)
		evbuffer_add_printf(out, "\"outgoing_lag_bytes\": %lld, ",
				    (long long)st->out_lag_bytes);
	else
		evbuffer_add_printf(out, "\"outgoing_lag_bytes\": null, ");
	if (st->lag_seconds_known)
		evbuffer_add_printf(out, "\"lag_seconds\": %.3f, ", st->lag_seconds);
	else
		evbuffer_add_printf(out, "\"lag_seconds\": null, ");
	evbuffer_add_printf(out, "\"read_only\": %s, ", st->read_only ? "true" : "false");
	evbuffer_add_printf(out, "\"readable\": %s, ", n->readable ? "true" : "false");
	json_string_field(out, "reason", st->reason);
	evbuffer_add_printf(out, "\"write_leader\": %s, ", st->write_leader ? "true" : "false");
	evbuffer_add_printf(out, "\"maintenance\": %s, ", st->maintenance ? "true" : "false");
	if (st->checked_at_ms) {
		format_mono_as_iso8601(st->checked_at_ms, when, sizeof(when));
		json_string_field(out, "checked_at", when);
	} else {
		json_string_field(out, "checked_at", NULL);
	}
	evbuffer_add_printf(out, "\"check_ms\": %d, ", st->check_ms);
	json_string_field(out, "host", node_config_param(n->cfg, "host"));
	json_string_field(out, "port", node_config_param(n->cfg, "port"));
	json_string_field(out, "dbname", node_config_param(n->cfg, "dbname"));
	json_key(out, "user");
	if (node_config_param(n->cfg, "user"))
		render_json_string(out, node_config_param(n->cfg, "user"));
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add(out, "}", 1);
}

/* "etcd": the leader key, its holder and this agent's lease. */
static void render_etcd_json(const struct agent *a, struct evbuffer *out)
{
	const struct lease_facts *f = etcd_facts(a->etcd);
	struct etcd_stats st;
	char id[32];

	etcd_get_stats(a->etcd, &st);
	json_key(out, "etcd");
	evbuffer_add(out, "{", 1);
	json_string_field(out, "key", st.key);
	json_string_field(out, "endpoint", st.endpoint);
	json_string_field(out, "lease", lease_state_name(f, etcd_policy(a->etcd), clock_ms()));
	json_string_field(out, "holder", f->key_present && f->holder[0] ? f->holder : NULL);
	snprintf(id, sizeof(id), "%lld", (long long)st.lease_id);
	json_string_field(out, "lease_id", st.lease_id ? id : NULL);
	json_key(out, "error");
	if (f->error[0])
		render_json_string(out, f->error);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add(out, "}, ", 3);
}

static void render_cluster_json(const struct agent *a, struct evbuffer *out)
{
	const struct node *best = ask_best_node(a, DUTY_ANY);
	const struct node *replica = ask_best_node(a, DUTY_REPLICA);
	const char *leader = agent_write_leader(a);

	json_string_field(out, "write_node", leader[0] ? leader : NULL);
	json_string_field(out, "write_node_reason", leader[0] ? NULL : a->no_leader_reason);
	if (a->etcd)
		render_etcd_json(a, out);
	json_string_field(out, "best_node", best ? best->status.name : NULL);
	json_string_field(out, "best_replica", replica ? replica->status.name : NULL);
	evbuffer_add_printf(out, "\"ready_nodes\": %d, ", agent_ready_nodes(a));
	evbuffer_add_printf(out, "\"maintenance\": %s, ", a->maintenance ? "true" : "false");
	if (!agent_catalog_view(a))
		return;
	json_key(out, "peers");
	evbuffer_add(out, "[", 1);
	for (int i = 0; i < a->nodes[0]->n_peers; i++) {
		const struct peer_fact *p = &a->nodes[0]->peers[i].fact;

		evbuffer_add_printf(out, "%s{", i ? ", " : "");
		json_string_field(out, "name", p->name);
		evbuffer_add_printf(out, "\"up\": %s}", p->up ? "true" : "false");
	}
	evbuffer_add(out, "], ", 3);
}

void render_status_json(const struct agent *a, struct evbuffer *out)
{
	const struct node *def = agent_default_node(a);

	evbuffer_add_printf(out, "{\"version\": \"%s\", ", PGBDR_VERSION);
	json_string_field(out, "default_node", def ? def->status.name : NULL);
	evbuffer_add_printf(out, "\"uptime_seconds\": %.1f, ",
			    (double)(clock_ms() - a->started_at_ms) / 1000.0);
	render_cluster_json(a, out);
	json_key(out, "nodes");
	evbuffer_add(out, "[", 1);
	for (int i = 0; i < a->n_nodes; i++) {
		if (i > 0)
			evbuffer_add(out, ", ", 2);
		render_node_json(a->nodes[i], out);
	}
	evbuffer_add(out, "]}\n", 3);
}

static void render_leader_lines(const struct agent *a, struct evbuffer *out)
{
	const char *leader = agent_write_leader(a);
	const struct lease_facts *f;
	struct etcd_stats st;

	if (leader[0])
		evbuffer_add_printf(out, "write leader: %s\n", leader);
	else
		evbuffer_add_printf(out, "write leader: none (%s)\n", a->no_leader_reason);
	if (!a->etcd)
		return;
	f = etcd_facts(a->etcd);
	etcd_get_stats(a->etcd, &st);
	evbuffer_add_printf(out, "etcd lease: %s, holder %s, key %s at %s%s%s\n",
			    lease_state_name(f, etcd_policy(a->etcd), clock_ms()),
			    f->key_present && f->holder[0] ? f->holder : "none", st.key, st.endpoint,
			    f->error[0] ? ": " : "", f->error);
}

void render_status_table(const struct agent *a, struct evbuffer *out)
{
	evbuffer_add_printf(out, "%-20s %-10s %-9s %6s %10s %9s  %s\n", "NODE", "FLAVOR",
			    "STATE", "WEIGHT", "LAG", "LAG_TIME", "REASON");
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node_status *st = &a->nodes[i]->status;
		char lag[32], lag_time[32];

		format_lag(st, lag, sizeof(lag));
		if (st->lag_seconds_known)
			snprintf(lag_time, sizeof(lag_time), "%.1fs", st->lag_seconds);
		else
			snprintf(lag_time, sizeof(lag_time), "unknown");
		evbuffer_add_printf(out, "%-20s %-10s %-9s %5d%% %10s %9s  %s%s\n", st->name,
				    flavor_name(st->flavor), state_name(st->state), st->weight,
				    lag, lag_time, st->write_leader ? "[write leader] " : "",
				    st->reason);
	}
	render_leader_lines(a, out);
}

/*
 * The compact rendering, made for haproxy-examples/pgbdr.lua: a line
 * per record, words separated by one space, no quoting, so that a
 * poller can parse it with a pattern per line and bound what it reads.
 *
 *     pgbdr-compact 1
 *     seq 1234                  status_seq: grows with every publish
 *     staleness_ms 180          age of the oldest node status
 *     write_node node1          "-" when there is none
 *     best_node node2           "-" when no node serves
 *     best_replica node3        the same for duty "replica" (not the leader)
 *     ready_nodes 3
 *     node NAME STATE WEIGHT WRITE LAG_BYTES   (WRITE 0/1, LAG "-" if unknown)
 *     end 3                     the node count again: a cut reply lacks it
 *
 * A node's status age counts from its last probe, good or bad: a node
 * found down a moment ago has a fresh status. A node never probed ages
 * from the agent's start.
 */
static void compact_word(struct evbuffer *out, const char *s)
{
	if (!s || !s[0]) {
		evbuffer_add(out, "-", 1);
		return;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		/* names come from catalogs too: keep each one a single word */
		evbuffer_add(out, c > 0x20 && c < 0x7f ? (const char *)s : "?", 1);
	}
}

static int64_t compact_staleness_ms(const struct agent *a, int64_t now)
{
	int64_t oldest = 0;

	for (int i = 0; i < a->n_nodes; i++) {
		int64_t at = a->nodes[i]->status.last_probe_at_ms;
		int64_t age = now - (at ? at : a->started_at_ms);

		if (age > oldest)
			oldest = age;
	}
	return oldest;
}

void render_status_compact(const struct agent *a, struct evbuffer *out)
{
	const struct node *best = ask_best_node(a, DUTY_ANY);
	const struct node *replica = ask_best_node(a, DUTY_REPLICA);

	evbuffer_add_printf(out, "pgbdr-compact 1\nseq %llu\nstaleness_ms %lld\nwrite_node ",
			    (unsigned long long)a->status_seq,
			    (long long)compact_staleness_ms(a, clock_ms()));
	compact_word(out, agent_write_leader(a));
	evbuffer_add_printf(out, "\nbest_node ");
	compact_word(out, best ? best->status.name : NULL);
	evbuffer_add_printf(out, "\nbest_replica ");
	compact_word(out, replica ? replica->status.name : NULL);
	evbuffer_add_printf(out, "\nready_nodes %d\n", agent_ready_nodes(a));
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node_status *st = &a->nodes[i]->status;

		evbuffer_add(out, "node ", 5);
		compact_word(out, st->name);
		evbuffer_add_printf(out, " %s %d %d ", state_name(st->state), st->weight,
				    st->write_leader ? 1 : 0);
		if (st->lag_bytes_known)
			evbuffer_add_printf(out, "%lld\n", (long long)st->lag_bytes);
		else
			evbuffer_add(out, "-\n", 2);
	}
	evbuffer_add_printf(out, "end %d\n", a->n_nodes);
}
