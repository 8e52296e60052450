/*
 * The daemon context: the one struct that owns all mutable state (the
 * event loop, the loaded config, the node table with each node's
 * cached status and poller, and the listeners). Responders get a
 * const view of the node table; only agent.c writes statuses.
 */
#ifndef PGBDR_AGENT_H
#define PGBDR_AGENT_H

#include <stdbool.h>

#include "config.h"
#include "log.h"
#include "status.h"

struct event_base;
struct evdns_base;
struct event;
struct poller;
struct http_server;

struct node {
	struct agent *agent;
	const struct node_config *cfg; /* owned by agent->config */
	struct node_status status;
	struct poller *poller;
	bool probed;                   /* at least one round finished */
};

struct agent {
	struct event_base *base;
	struct evdns_base *dns;
	struct agent_config config;
	struct logger log;

	struct node *nodes;            /* owned, config->n_nodes entries */
	int n_nodes;
	int default_node;              /* index: what "/" reports */

	struct http_server *http;
	struct event *tick;            /* staleness and maintenance checks */
	bool maintenance;
	char hostname[NODE_NAME_MAX];
	int64_t started_at_ms;

	/* --once / --inetd: stop the loop when every node has been probed */
	bool exit_after_first_round;
};

/* Takes ownership of *config (it is moved, then zeroed). */
int agent_init(struct agent *a, struct agent_config *config);
void agent_start_pollers(struct agent *a);
void agent_free(struct agent *a);

/* Run the loop until every node has finished one round or timeout passes. */
void agent_run_first_round(struct agent *a);

const struct node *agent_find_node(const struct agent *a, const char *name);
const struct node *agent_default_node(const struct agent *a);
bool agent_all_probed(const struct agent *a);

#endif
