/*
 * The daemon context: the one struct that owns all mutable state (the
 * event loop, the loaded config, the node table with each node's
 * cached status and poller, and the listeners). Responders get a
 * const view of the node table; only agent.c writes statuses.
 */
#ifndef PGBDR_AGENT_H
#define PGBDR_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.h"
#include "config.h"
#include "connect_slots.h"
#include "counters.h"
#include "listener.h"
#include "log.h"
#include "memory_budget.h"
#include "status.h"
#include "systemd.h"

struct event_base;
struct evdns_base;
struct event;
struct poller;
struct peer_lag;
struct peer_view;
struct http_server;
struct spop_server;
struct agentcheck_server;
struct etcd_client;

/* Upper bounds of the probe duration histogram, in milliseconds. */
#define PROBE_DURATION_BUCKETS 11
extern const int probe_duration_bounds_ms[PROBE_DURATION_BUCKETS];

/* A peer the node's catalog names, and since when it has been up (0: not up). */
struct node_peer {
	struct peer_fact fact;
	int64_t up_since_ms;
};

struct node {
	struct agent *agent;
	const struct node_config *cfg; /* owned by agent->config */
	/*
	 * judged is evaluate()'s verdict; status is what responders serve:
	 * judged plus maintenance and the write-leader flag, so that those
	 * two can change at once, without waiting for a probe.
	 */
	struct node_status judged;
	struct node_status status;
	/* The same judgement with read_only = ready: what /read serves. */
	struct node_status judged_read;
	bool readable;
	/* what the last round tells the other nodes (central mode); owned, NULL before one */
	struct peer_view *view;
	struct poller *poller;
	/* per-node mode: connections to the peers that know this node's lag */
	struct peer_lag *peer_lag;
	bool probed;                   /* at least one round finished */
	int64_t eligible_since_ms;     /* write candidate since, 0 if not */

	/* probe history for /metrics */
	uint64_t probes;
	uint64_t probe_errors[PROBE_OUTCOME_COUNT];
	uint64_t probe_duration_buckets[PROBE_DURATION_BUCKETS];
	double probe_duration_sum;

	/* the write leader the node's own catalog names (PGD routing) */
	char catalog_write_leader[NODE_NAME_MAX];

	/* the cluster as this node's catalog sees it: owned, n_peers entries, NULL if none */
	int n_peers;
	struct node_peer *peers;
};

struct agent {
	struct event_base *base;
	struct evdns_base *dns;
	struct agent_config config;
	struct logger log;

	struct node **nodes;           /* owned, config->n_nodes entries, each allocated */
	int n_nodes;
	/* connection attempts in flight, shared by every poller (max_connecting) */
	struct connect_slots connect_slots;
	/* open files kept for the pollers and the loop: listeners refuse clients first */
	int fd_reserve;
	/* what clients make the agent hold, SPOP and HTTP together */
	struct memory_budget client_memory;
	int default_node;              /* index: what "/" reports */

	struct http_server *http;
	struct spop_server *spop;
	struct agentcheck_server *agentcheck;
	struct event *tick;            /* staleness and maintenance checks */
	bool maintenance;
	int inotify_fd;                /* -1 when the maintenance file is not watched */
	struct event *inotify_ev;

	struct leader_state leader;     /* this agent's own election */
	struct leader_policy leader_policy;
	struct etcd_client *etcd;      /* [etcd]: the lease decides; else NULL */
	char write_leader[NODE_NAME_MAX]; /* what every responder serves */
	char no_leader_reason[REASON_MAX]; /* why write_leader is "" */
	char hostname[NODE_NAME_MAX];
	int64_t started_at_ms;

	struct systemd_state systemd;

	/* every listener's and protocol's, as plain data: metrics.c reads them */
	struct agent_counters counters;

	/* bumped whenever a status is published (every probe round, leader
	 * and maintenance changes): lets a poller tell a new answer from an
	 * old one (/compact) */
	uint64_t status_seq;

	/* --once / --inetd: stop the loop when every node has been probed */
	bool exit_after_first_round;
};

/* Takes ownership of *config (it is moved, then zeroed). */
int agent_init(struct agent *a, struct agent_config *config);
void agent_start_pollers(struct agent *a);

/*
 * Switch to a new, already validated config (moved from *next): kept
 * nodes keep their connections, added nodes start, removed ones stop.
 * Listeners are not touched. Returns 0, or -1 with the old config kept.
 */
int agent_reload(struct agent *a, struct agent_config *next);
/*
 * Clean shutdown, once the listeners are closed: give up what others
 * wait for (the etcd lease), waiting at most about a second.
 */
void agent_resign(struct agent *a);
void agent_free(struct agent *a);

/*
 * The listeners are bound: from now on systemd hears READY=1 (once
 * every node was probed), STATUS= lines and watchdog pings.
 */
void agent_serving(struct agent *a);
void agent_stop_serving(struct agent *a);
/* After SIGHUP, whatever came of it: READY=1 again ends RELOADING=1. */
void agent_reload_done(struct agent *a);

/* Run the loop until every node has finished one round or timeout passes. */
void agent_run_first_round(struct agent *a);

/*
 * A listener of this agent for a protocol: allow_from, max_clients and
 * the fd reserve are read live (a reload applies), and the counters
 * are the agent's. arg goes to the protocol's callbacks.
 */
struct listener_setup agent_listener_setup(struct agent *a, enum listener_kind kind,
					   const struct listener_protocol *protocol, void *arg);

const struct node *agent_find_node(const struct agent *a, const char *name);

/* The write leader's name, "" when there is none (yet). */
const char *agent_write_leader(const struct agent *a);


/* How many nodes are serving (ready or degraded). */
int agent_ready_nodes(const struct agent *a);

/* Whether the cluster view comes from the local node's catalog. */
bool agent_catalog_view(const struct agent *a);
const struct node *agent_default_node(const struct agent *a);
bool agent_all_probed(const struct agent *a);

#endif
