/*
 * The daemon context and the node table: starts a poller per node,
 * judges every finished round with evaluate(), and keeps the cached
 * statuses fail-closed between rounds (staleness tick).
 */
#include <event2/dns.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "evaluate.h"
#include "poller.h"

static void node_refresh_name(struct node *n, const struct node_facts *facts)
{
	const char *name = n->cfg->name;

	if (!name[0] && facts && facts->catalog_name[0])
		name = facts->catalog_name;
	if (!name[0]) {
		if (n->status.name[0])
			return;
		name = n->agent->hostname;
	}
	snprintf(n->status.name, sizeof(n->status.name), "%s", name);
}

static void log_transition(const struct agent *a, const struct node_status *before,
			   const struct node_status *after)
{
	if (before->state == after->state && before->weight == after->weight)
		return;
	log_info(&a->log, "node %s: %s %d%% -> %s %d%%%s%s", after->name,
		 state_name(before->state), before->weight, state_name(after->state),
		 after->weight, after->reason[0] ? ": " : "", after->reason);
}

static void on_round_finished(void *arg, const struct node_facts *facts, int check_ms)
{
	struct node *n = arg;
	struct agent *a = n->agent;
	struct node_status next;

	evaluate(facts, &a->config.policy, &n->status, a->maintenance, clock_ms(), &next);
	next.check_ms = check_ms;
	log_transition(a, &n->status, &next);
	n->status = next;
	node_refresh_name(n, facts);
	n->probed = true;

	if (a->exit_after_first_round && agent_all_probed(a))
		event_base_loopbreak(a->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	int64_t now = clock_ms();

	for (int i = 0; i < a->n_nodes; i++) {
		struct node *n = &a->nodes[i];
		struct node_status before = n->status;

		if (evaluate_staleness(&n->status, &a->config.policy, now))
			log_transition(a, &before, &n->status);
	}
}

static int create_nodes(struct agent *a)
{
	struct poller_settings settings = {
		.interval_ms = a->config.interval_ms,
		.timeout_ms = a->config.timeout_ms,
	};

	a->n_nodes = a->config.n_nodes;
	a->nodes = calloc((size_t)a->n_nodes, sizeof(*a->nodes));
	if (!a->nodes)
		return -1;
	for (int i = 0; i < a->n_nodes; i++) {
		struct node *n = &a->nodes[i];

		n->agent = a;
		n->cfg = &a->config.nodes[i];
		n->status.flavor = n->cfg->flavor;
		snprintf(n->status.reason, sizeof(n->status.reason), "no probe finished yet");
		node_refresh_name(n, NULL);
		n->poller = poller_new(a->base, a->dns, n->cfg, &settings, &a->log,
				       n->status.name, on_round_finished, n);
		if (!n->poller)
			return -1;
	}
	return 0;
}

static struct evdns_base *create_resolver(struct event_base *base)
{
	struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);

	/* no usable resolv.conf: /etc/hosts still answers "localhost" */
	if (!dns) {
		dns = evdns_base_new(base, 0);
		if (dns)
			evdns_base_load_hosts(dns, NULL);
	}
	return dns;
}

int agent_init(struct agent *a, struct agent_config *config)
{
	struct timeval tick = { .tv_sec = 0, .tv_usec = 100 * 1000 };

	memset(a, 0, sizeof(*a));
	a->config = *config;
	memset(config, 0, sizeof(*config));
	log_init(&a->log, a->config.log_level);
	a->started_at_ms = clock_ms();
	if (gethostname(a->hostname, sizeof(a->hostname) - 1) != 0)
		snprintf(a->hostname, sizeof(a->hostname), "localhost");

	a->base = event_base_new();
	if (!a->base)
		return -1;
	a->dns = create_resolver(a->base);
	if (create_nodes(a) < 0)
		return -1;
	a->tick = event_new(a->base, -1, EV_PERSIST, on_tick, a);
	if (!a->tick || event_add(a->tick, &tick) != 0)
		return -1;
	return 0;
}

void agent_start_pollers(struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		poller_start(a->nodes[i].poller);
}

static void on_first_round_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

void agent_run_first_round(struct agent *a)
{
	/* a round cannot outlast timeout; the margin covers loop latency */
	int64_t ms = a->config.timeout_ms + 500;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	struct event *limit = evtimer_new(a->base, on_first_round_timeout, a->base);

	a->exit_after_first_round = true;
	agent_start_pollers(a);
	if (limit)
		evtimer_add(limit, &tv);
	event_base_dispatch(a->base);
	if (limit)
		event_free(limit);
	a->exit_after_first_round = false;
}

void agent_free(struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		poller_free(a->nodes[i].poller);
	free(a->nodes);
	a->nodes = NULL;
	if (a->tick)
		event_free(a->tick);
	if (a->dns)
		evdns_base_free(a->dns, 0);
	if (a->base)
		event_base_free(a->base);
	config_free(&a->config);
}

const struct node *agent_find_node(const struct agent *a, const char *name)
{
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node *n = &a->nodes[i];

		if (strcmp(n->status.name, name) == 0 ||
		    (n->cfg->name[0] && strcmp(n->cfg->name, name) == 0))
			return n;
	}
	return NULL;
}

const struct node *agent_default_node(const struct agent *a)
{
	return a->n_nodes > 0 ? &a->nodes[a->default_node] : NULL;
}

bool agent_all_probed(const struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		if (!a->nodes[i].probed)
			return false;
	return true;
}
