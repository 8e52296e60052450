/*
 * Prometheus exposition. Names are stable and prefixed pgbdr_; the only
 * labels are the configured node names, flavors, fixed state and error
 * kinds, and listener names, so cardinality is bounded by the config.
 * Units follow Prometheus' conventions: base units in the name
 * (_seconds, _bytes), fractions as 0-1 _ratio, counters _total, and
 * the standard process_start_time_seconds.
 */
#include <event2/buffer.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "counters.h"
#include "etcd.h"
#include "listener.h"
#include "metrics.h"

static void header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- per-node families ----------------------------------------------
 *
 * These are nearly all of /metrics (about 1.5 kB per node), so they are
 * written into one flat buffer with plain copies, and handed to the
 * reply without a copy: one evbuffer_add_printf() per piece and a
 * one-byte evbuffer_add() per label character made a fleet's /metrics
 * cost tens of milliseconds.
 */

struct text {
	char *buf;
	size_t len, cap;
	bool failed;            /* out of memory: the text is incomplete */
};

static bool text_reserve(struct text *t, size_t more)
{
	size_t cap = t->cap ? t->cap : 4096;
	char *grown;

	if (t->failed)
		return false;
	if (t->len + more <= t->cap)
		return true;
	while (cap < t->len + more)
		cap *= 2;
	grown = realloc(t->buf, cap);
	if (!grown) {
		t->failed = true;
		return false;
	}
	t->buf = grown;
	t->cap = cap;
	return true;
}

static void put(struct text *t, const char *s, size_t n)
{
	if (!text_reserve(t, n))
		return;
	memcpy(t->buf + t->len, s, n);
	t->len += n;
}

static void put_s(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* Label values are config names, but escape as the format requires. */
static void put_label(struct text *t, const char *s)
{
	size_t plain;

	while (*s) {
		plain = strcspn(s, "\\\"\n");
		put(t, s, plain);
		s += plain;
		if (!*s)
			break;
		put(t, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
		s++;
	}
}

static const char *u64_text(char buf[24], uint64_t v)
{
	char *p = buf + 23;

	*p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	return p;
}

static void text_header(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP ", 7);
	put_s(t, name);
	put(t, " ", 1);
	put_s(t, help);
	put(t, "\n# TYPE ", 8);
	put_s(t, name);
	put(t, " ", 1);
	put_s(t, type);
	put(t, "\n", 1);
}

static void node_sample(struct text *t, const char *metric, const struct node *n,
			const char *extra_label, const char *extra_value, const char *value)
{
	put_s(t, metric);
	put(t, "{node=\"", 7);
	put_label(t, n->status.name);
	if (extra_label) {
		put(t, "\",", 2);
		put_s(t, extra_label);
		put(t, "=\"", 2);
		put_label(t, extra_value);
	}
	put(t, "\"} ", 3);
	put_s(t, value);
	put(t, "\n", 1);
}

static void render_node_states(const struct agent *a, struct text *out)
{
	static const enum node_state states[] = { STATE_READY, STATE_DEGRADED,
						  STATE_DRAINING, STATE_DOWN };

	text_header(out, "pgbdr_node_state", "gauge",
		    "1 for the state the node is in (ready, degraded, draining, down).");
	for (int i = 0; i < a->n_nodes; i++)
		for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
			node_sample(out, "pgbdr_node_state", a->nodes[i], "state",
				    state_name(states[s]),
				    a->nodes[i]->status.state == states[s] ? "1" : "0");
}

/* The info pattern: constant 1, the node's flavor (as detected or forced) as a label. */
static void render_node_info(const struct agent *a, struct text *out)
{
	text_header(out, "pgbdr_node_info", "gauge",
		    "Always 1; the node's flavor (detected, or forced by the config) is a label.");
	for (int i = 0; i < a->n_nodes; i++)
		node_sample(out, "pgbdr_node_info", a->nodes[i], "flavor",
			    flavor_name(a->nodes[i]->status.flavor), "1");
}

static void render_node_gauges(const struct agent *a, struct text *out)
{
	char v[48];

	text_header(out, "pgbdr_node_up", "gauge", "1 when the node takes traffic (ready or degraded).");
	for (int i = 0; i < a->n_nodes; i++)
		node_sample(out, "pgbdr_node_up", a->nodes[i], NULL, NULL,
			    state_is_serving(a->nodes[i]->status.state) ? "1" : "0");
	text_header(out, "pgbdr_node_weight_ratio", "gauge",
		    "Weight given to HAProxy, as a fraction (0-1) of the configured server weight.");
	for (int i = 0; i < a->n_nodes; i++) {
		snprintf(v, sizeof(v), "%.2f", a->nodes[i]->status.weight / 100.0);
		node_sample(out, "pgbdr_node_weight_ratio", a->nodes[i], NULL, NULL, v);
	}
	text_header(out, "pgbdr_node_write_leader", "gauge", "1 on the current write leader.");
	for (int i = 0; i < a->n_nodes; i++)
		node_sample(out, "pgbdr_node_write_leader", a->nodes[i], NULL, NULL,
			    a->nodes[i]->status.write_leader ? "1" : "0");
	/* unknown lag is absent, not 0: an alert on it must not see "no lag" */
	text_header(out, "pgbdr_node_lag_bytes", "gauge",
		    "Worst replication lag concerning the node, bytes.");
	for (int i = 0; i < a->n_nodes; i++) {
		if (!a->nodes[i]->status.lag_bytes_known)
			continue;
		snprintf(v, sizeof(v), "%lld", (long long)a->nodes[i]->status.lag_bytes);
		node_sample(out, "pgbdr_node_lag_bytes", a->nodes[i], NULL, NULL, v);
	}
	text_header(out, "pgbdr_node_lag_seconds", "gauge",
		    "Worst replication lag concerning the node, seconds.");
	for (int i = 0; i < a->n_nodes; i++) {
		if (!a->nodes[i]->status.lag_seconds_known)
			continue;
		snprintf(v, sizeof(v), "%.3f", a->nodes[i]->status.lag_seconds);
		node_sample(out, "pgbdr_node_lag_seconds", a->nodes[i], NULL, NULL, v);
	}
}

static void render_probe_histogram(const struct agent *a, struct text *out)
{
	char le[PROBE_DURATION_BUCKETS][16], v[48];

	/* the bucket bounds, once per rendering rather than once per sample */
	for (int b = 0; b < PROBE_DURATION_BUCKETS; b++)
		snprintf(le[b], sizeof(le[b]), "%g", probe_duration_bounds_ms[b] / 1000.0);
	text_header(out, "pgbdr_probe_duration_seconds", "histogram", "Duration of probe rounds.");
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node *n = a->nodes[i];

		for (int b = 0; b < PROBE_DURATION_BUCKETS; b++)
			node_sample(out, "pgbdr_probe_duration_seconds_bucket", n, "le", le[b],
				    u64_text(v, n->probe_duration_buckets[b]));
		node_sample(out, "pgbdr_probe_duration_seconds_bucket", n, "le", "+Inf",
			    u64_text(v, n->probes));
		snprintf(v, sizeof(v), "%.6f", n->probe_duration_sum);
		node_sample(out, "pgbdr_probe_duration_seconds_sum", n, NULL, NULL, v);
		node_sample(out, "pgbdr_probe_duration_seconds_count", n, NULL, NULL,
			    u64_text(v, n->probes));
	}
	text_header(out, "pgbdr_probe_errors_total", "counter", "Failed probe rounds by kind.");
	for (int i = 0; i < a->n_nodes; i++)
		for (int k = PROBE_RESOLVE_FAILED; k <= PROBE_CONNECTION_LOST; k++)
			node_sample(out, "pgbdr_probe_errors_total", a->nodes[i], "kind",
				    probe_outcome_name((enum probe_outcome)k),
				    u64_text(v, a->nodes[i]->probe_errors[k]));
}

static void free_text(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

/* About 1.6 kB a node: one allocation in the usual case. */
#define NODE_TEXT_BYTES 2048

static void render_nodes(const struct agent *a, struct evbuffer *out)
{
	struct text t = { 0 };

	text_reserve(&t, (size_t)a->n_nodes * NODE_TEXT_BYTES + 8192);
	render_node_states(a, &t);
	render_node_info(a, &t);
	render_node_gauges(a, &t);
	render_probe_histogram(a, &t);
	if (!t.failed && evbuffer_add_reference(out, t.buf, t.len, free_text, NULL) == 0)
		return;
	free(t.buf);
	/* never a family cut in the middle: none of the nodes' rather than part */
	evbuffer_add_printf(out, "# out of memory: the per-node metrics are left out\n");
}

static void listener_sample(struct evbuffer *out, const char *metric, enum listener_kind kind,
			    const char *extra, unsigned long long value)
{
	evbuffer_add_printf(out, "%s{listener=\"%s\"%s} %llu\n", metric, listener_kind_name(kind),
			    extra ? extra : "", value);
}

/* Which listeners are on: only those have samples. */
static void listeners_on(const struct agent *a, bool on[LISTENER_KINDS])
{
	on[LISTENER_HTTP] = a->http != NULL;
	on[LISTENER_AGENTCHECK] = a->agentcheck != NULL;
	on[LISTENER_SPOP] = a->spop != NULL;
}

/* One sample per listener on, of one listener counter. */
static void render_listener_counter(const struct agent *a, struct evbuffer *out,
				    const char *metric, const char *type, const char *help,
				    size_t offset)
{
	bool on[LISTENER_KINDS];

	listeners_on(a, on);
	header(out, metric, type, help);
	for (int k = 0; k < LISTENER_KINDS; k++) {
		const char *c = (const char *)&a->counters.listeners[k] + offset;

		if (!on[k])
			continue;
		listener_sample(out, metric, k, NULL, *(const uint64_t *)c);
	}
}

/* What every listener counts at accept, before and beside its protocol. */
static void render_accept(const struct agent *a, struct evbuffer *out)
{
	static const struct {
		const char *metric, *type, *help;
		size_t offset;
	} rows[] = {
		{ "pgbdr_listener_accepted_total", "counter",
		  "Connections served, by listener: past allow_from, the file descriptor reserve "
		  "and max_clients.", offsetof(struct listener_counters, accepted) },
		{ "pgbdr_listener_refused_total", "counter",
		  "Clients closed without a reply because allow_from does not list them.",
		  offsetof(struct listener_counters, refused) },
		{ "pgbdr_listener_over_capacity_total", "counter",
		  "Clients closed at once because max_clients connections were open.",
		  offsetof(struct listener_counters, over_capacity) },
		{ "pgbdr_listener_fd_reserve_refused_total", "counter",
		  "Clients closed at once because the file descriptors left are kept for the "
		  "node pollers.", offsetof(struct listener_counters, fd_reserve_refusals) },
		{ "pgbdr_listener_accept_failures_total", "counter",
		  "accept() failures, such as out of file descriptors; accepting then pauses "
		  "for 100 ms.", offsetof(struct listener_counters, accept_failures) },
		{ "pgbdr_listener_setup_failures_total", "counter",
		  "Connections closed at once because setting them up ran out of memory.",
		  offsetof(struct listener_counters, setup_failures) },
		{ "pgbdr_listener_connections_open", "gauge", "Connections open now, by listener.",
		  offsetof(struct listener_counters, open) },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		render_listener_counter(a, out, rows[i].metric, rows[i].type, rows[i].help,
					rows[i].offset);
}

static void render_listeners(const struct agent *a, struct evbuffer *out)
{
	const struct http_counters *h = a->http ? &a->counters.http : NULL;
	const struct agentcheck_counters *ac = a->agentcheck ? &a->counters.agentcheck : NULL;
	const struct listener_counters *l = a->counters.listeners;
	bool on[LISTENER_KINDS];

	listeners_on(a, on);
	header(out, "pgbdr_listener_requests_total", "counter", "Requests answered, by listener.");
	if (h)
		listener_sample(out, "pgbdr_listener_requests_total", LISTENER_HTTP, NULL, h->requests);
	if (ac)
		listener_sample(out, "pgbdr_listener_requests_total", LISTENER_AGENTCHECK, NULL,
				ac->replies);
	header(out, "pgbdr_listener_connections_total", "counter",
	       "Connections taken from accept() past allow_from and the file descriptor reserve, "
	       "by listener: those served and those closed over max_clients.");
	for (int k = 0; k < LISTENER_KINDS; k++)
		if (on[k])
			listener_sample(out, "pgbdr_listener_connections_total", k, NULL,
					l[k].accepted + l[k].over_capacity);
	header(out, "pgbdr_listener_errors_total", "counter",
	       "Failed requests, by listener: for http every 4xx reply (malformed request, "
	       "unknown path or method) and every request timed out; for agent-check every "
	       "bad request; for both, clients closed at once over max_clients.");
	if (h)
		listener_sample(out, "pgbdr_listener_errors_total", LISTENER_HTTP, NULL,
				h->responses[4] + l[LISTENER_HTTP].over_capacity + h->timeouts);
	if (ac)
		listener_sample(out, "pgbdr_listener_errors_total", LISTENER_AGENTCHECK, NULL,
				ac->bad_requests + l[LISTENER_AGENTCHECK].over_capacity);
	header(out, "pgbdr_http_responses_total", "counter", "HTTP responses by status class.");
	for (int c = 2; h && c <= 5; c++) {
		char extra[32];

		snprintf(extra, sizeof(extra), ",code=\"%dxx\"", c);
		listener_sample(out, "pgbdr_http_responses_total", LISTENER_HTTP, extra,
				h->responses[c]);
	}
}

/* ---- SPOP ------------------------------------------------------------ */

static void plain_sample(struct evbuffer *out, const char *name, const char *label,
			 const char *value, unsigned long long n)
{
	if (label)
		evbuffer_add_printf(out, "%s{%s=\"%s\"} %llu\n", name, label, value, n);
	else
		evbuffer_add_printf(out, "%s %llu\n", name, n);
}

static void render_spop_frames(const struct spop_counters *st, struct evbuffer *out)
{
	static const char *const in_names[SPOP_FRAME_SLOTS] = {
		"unset", "haproxy-hello", "haproxy-disconnect", "notify", "other",
	};
	uint64_t disconnects = 0;
	char code[8];

	header(out, "pgbdr_spop_frames_received_total", "counter",
	       "SPOP frames received, by type (unset: fragment continuations).");
	for (int i = 0; st && i < SPOP_FRAME_SLOTS; i++)
		plain_sample(out, "pgbdr_spop_frames_received_total", "type", in_names[i],
			     st->frames_in[i]);
	for (int i = 0; st && i < SPOP_STATUS_SLOTS; i++)
		disconnects += st->disconnects[i];
	header(out, "pgbdr_spop_frames_sent_total", "counter", "SPOP frames sent, by type.");
	if (st) {
		plain_sample(out, "pgbdr_spop_frames_sent_total", "type", "agent-hello",
			     st->hellos_sent);
		plain_sample(out, "pgbdr_spop_frames_sent_total", "type", "agent-disconnect",
			     disconnects);
		plain_sample(out, "pgbdr_spop_frames_sent_total", "type", "ack", st->acks_sent);
	}
	header(out, "pgbdr_spop_disconnects_total", "counter",
	       "AGENT-DISCONNECT frames sent, by SPOP status code (0 is a normal close).");
	for (int i = 0; st && i < SPOP_STATUS_SLOTS; i++) {
		if (i < SPOP_STATUS_SLOTS - 1)
			snprintf(code, sizeof(code), "%d", i);
		else
			snprintf(code, sizeof(code), "other");
		plain_sample(out, "pgbdr_spop_disconnects_total", "status", code,
			     st->disconnects[i]);
	}
}

static void render_spop_messages(const struct spop_counters *st, struct evbuffer *out)
{
	header(out, "pgbdr_spop_messages_total", "counter",
	       "NOTIFY messages: pgbdr-status answered, others acknowledged without actions.");
	if (st) {
		plain_sample(out, "pgbdr_spop_messages_total", "message", "pgbdr-status",
			     st->messages);
		plain_sample(out, "pgbdr_spop_messages_total", "message", "other",
			     st->unknown_messages);
	}
	header(out, "pgbdr_spop_fragmented_total", "counter", "Fragmented NOTIFYs, by outcome.");
	if (st) {
		plain_sample(out, "pgbdr_spop_fragmented_total", "result", "reassembled",
			     st->reassembled);
		plain_sample(out, "pgbdr_spop_fragmented_total", "result", "aborted", st->aborted);
	}
	header(out, "pgbdr_spop_acks_truncated_total", "counter",
	       "ACKs that could not carry every action within the negotiated frame size.");
	if (st)
		plain_sample(out, "pgbdr_spop_acks_truncated_total", NULL, NULL, st->acks_truncated);
	header(out, "pgbdr_spop_healthchecks_total", "counter",
	       "HELLOs from HAProxy's option spop-check.");
	if (st)
		plain_sample(out, "pgbdr_spop_healthchecks_total", NULL, NULL, st->healthchecks);
}

/* The SPOP names predate the listener families; kept for the dashboards using them. */
static void render_spop_connections(const struct agent *a, struct evbuffer *out)
{
	const struct listener_counters *l = a->spop ? &a->counters.listeners[LISTENER_SPOP] : NULL;

	header(out, "pgbdr_spop_connections_total", "counter", "SPOP connections accepted.");
	if (l)
		plain_sample(out, "pgbdr_spop_connections_total", NULL, NULL, l->accepted);
	header(out, "pgbdr_spop_connections_open", "gauge", "SPOP connections open now.");
	if (l)
		plain_sample(out, "pgbdr_spop_connections_open", NULL, NULL,
			     l->open);
	header(out, "pgbdr_spop_refused_total", "counter",
	       "SPOP clients closed at once: not in allow_from, or over max_clients.");
	if (l) {
		plain_sample(out, "pgbdr_spop_refused_total", "reason", "allow_from", l->refused);
		plain_sample(out, "pgbdr_spop_refused_total", "reason", "max_clients",
			     l->over_capacity);
	}
	header(out, "pgbdr_spop_timeouts_total", "counter",
	       "SPOP connections closed after client_timeout without a complete frame.");
	if (l)
		plain_sample(out, "pgbdr_spop_timeouts_total", NULL, NULL, a->counters.spop.timeouts);
}

/*
 * The SPOP counters (frames by type, disconnects by status code,
 * connections, refusals); with the listener off the metric headers are
 * still there, so the names always are.
 */
static void render_spop(const struct agent *a, struct evbuffer *out)
{
	const struct spop_counters *st = a->spop ? &a->counters.spop : NULL;

	render_spop_connections(a, out);
	render_spop_frames(st, out);
	render_spop_messages(st, out);
}

static void render_agent(const struct agent *a, struct evbuffer *out)
{
	header(out, "pgbdr_build_info", "gauge", "Always 1; the version is a label.");
	evbuffer_add_printf(out, "pgbdr_build_info{version=\"%s\"} 1\n", PGBDR_VERSION);
	header(out, "process_start_time_seconds", "gauge",
	       "Start time of the process since the Unix epoch, in seconds.");
	evbuffer_add_printf(out, "process_start_time_seconds %.3f\n",
			    (double)(wall_clock_ms() - (clock_ms() - a->started_at_ms)) / 1000.0);
	header(out, "pgbdr_maintenance", "gauge", "1 while the maintenance file exists.");
	evbuffer_add_printf(out, "pgbdr_maintenance %d\n", a->maintenance ? 1 : 0);
	header(out, "pgbdr_ready_nodes", "gauge", "Nodes that take traffic.");
	evbuffer_add_printf(out, "pgbdr_ready_nodes %d\n", agent_ready_nodes(a));
	header(out, "pgbdr_connecting", "gauge",
	       "Node connection attempts in flight now (at most max_connecting).");
	evbuffer_add_printf(out, "pgbdr_connecting %d\n", a->connect_slots.in_use);
	header(out, "pgbdr_connect_waiting", "gauge",
	       "Nodes waiting for a connection slot (max_connecting) now; each is down meanwhile.");
	evbuffer_add_printf(out, "pgbdr_connect_waiting %d\n", a->connect_slots.waiting);
	header(out, "pgbdr_reloads_total", "counter", "Configuration reloads by result.");
	evbuffer_add_printf(out, "pgbdr_reloads_total{result=\"ok\"} %llu\n",
			    (unsigned long long)a->counters.reloads);
	evbuffer_add_printf(out, "pgbdr_reloads_total{result=\"rejected\"} %llu\n",
			    (unsigned long long)a->counters.reload_failures);
}

static void render_etcd(const struct agent *a, struct evbuffer *out)
{
	const char *lease;
	struct etcd_stats st;

	if (!a->etcd)
		return;
	lease = lease_state_name(etcd_facts(a->etcd), etcd_policy(a->etcd), clock_ms());
	etcd_get_stats(a->etcd, &st);
	header(out, "pgbdr_etcd_reachable", "gauge",
	       "1 while etcd answered within ttl/2 (the lease can be trusted).");
	evbuffer_add_printf(out, "pgbdr_etcd_reachable %d\n", strcmp(lease, "unreachable") != 0);
	header(out, "pgbdr_etcd_lease_held", "gauge",
	       "1 while this agent holds the leader key under a live lease.");
	evbuffer_add_printf(out, "pgbdr_etcd_lease_held %d\n", strcmp(lease, "held") == 0);
	header(out, "pgbdr_etcd_leader_key_present", "gauge",
	       "1 when the last read showed someone holding the leader key.");
	evbuffer_add_printf(out, "pgbdr_etcd_leader_key_present %d\n",
			    etcd_facts(a->etcd)->key_present);
	header(out, "pgbdr_etcd_requests_total", "counter", "Requests sent to etcd.");
	evbuffer_add_printf(out, "pgbdr_etcd_requests_total %llu\n",
			    (unsigned long long)st.requests);
	header(out, "pgbdr_etcd_failures_total", "counter",
	       "etcd requests that failed (no answer, HTTP error, bad reply).");
	evbuffer_add_printf(out, "pgbdr_etcd_failures_total %llu\n",
			    (unsigned long long)st.failures);
	header(out, "pgbdr_etcd_acquired_total", "counter", "Times this agent took the leader key.");
	evbuffer_add_printf(out, "pgbdr_etcd_acquired_total %llu\n",
			    (unsigned long long)st.acquired);
}

static void render_client_memory(const struct agent *a, struct evbuffer *out)
{
	const struct memory_budget *b = &a->client_memory;

	header(out, "pgbdr_client_memory_bytes", "gauge",
	       "Memory clients make the agent hold now: SPOP reassembly buffers and output "
	       "queued to clients (SPOP and HTTP).");
	evbuffer_add_printf(out, "pgbdr_client_memory_bytes %zu\n", b->held);
	header(out, "pgbdr_client_memory_budget_bytes", "gauge",
	       "The cap on pgbdr_client_memory_bytes; past it clients are shed.");
	evbuffer_add_printf(out, "pgbdr_client_memory_budget_bytes %zu\n", b->limit);
	header(out, "pgbdr_client_memory_shed_total", "counter",
	       "Client connections shed (SPOP DISCONNECT 13, HTTP closed) to stay within the "
	       "memory budget.");
	evbuffer_add_printf(out, "pgbdr_client_memory_shed_total %llu\n",
			    (unsigned long long)b->shed);
}

void metrics_render(const struct agent *a, struct evbuffer *out)
{
	render_agent(a, out);
	render_nodes(a, out);
	render_listeners(a, out);
	render_accept(a, out);
	render_etcd(a, out);
	render_client_memory(a, out);
	render_spop(a, out);
}
