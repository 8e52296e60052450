/*
 * The agent's configuration: loading and validating the INI file
 * (classic database.ini included), with errors that name file, line
 * and key. The loaded struct is immutable after config_load().
 */
#ifndef PGBDR_CONFIG_H
#define PGBDR_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "units.h"

struct node_config {
	char name[NODE_NAME_MAX]; /* [node.NAME]; "" for [postgresql] */
	bool classic;             /* came from [postgresql] */
	int line;                 /* line of the section header */

	/*
	 * libpq connection parameters, NULL-terminated parallel arrays
	 * ready for PQconnectStartParams(). Owned by the config.
	 */
	char **keywords;
	char **values;
	int n_params;

	int priority;             /* lower wins the write-leader role */
	enum flavor flavor;       /* FLAVOR_AUTO unless forced */
	bool flavor_set;          /* a flavor key was given (auto included) */
};

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_destination {
	LOG_TO_STDERR = 0, /* systemd's journal takes stderr as it is */
	LOG_TO_SYSLOG,
};

/* Per-node mode: where a node's own lag comes from when only its peers know it. */
enum peer_lag_mode {
	PEER_LAG_CATALOG = 0, /* ask the peers the node's catalog names */
	PEER_LAG_OFF,         /* leave it unknown */
};

#define ETCD_MAX_ENDPOINTS 8

/*
 * [node.NAME] sections one agent may monitor; with [postgresql], one
 * more node. A config with more is rejected rather than cut: the
 * agent's per-node tables (the split-brain guard, the peer view, the
 * election) are sized for them.
 */
#define MAX_NODE_SECTIONS 1024
#define MAX_NODES (MAX_NODE_SECTIONS + 1)

struct etcd_endpoint {
	char host[256];
	int port;
};

/* [etcd]: the write leader is whoever holds PREFIX CLUSTER /leader. */
struct etcd_config {
	bool enabled;                    /* the section is present */
	char *endpoints;                 /* as written; parsed below */
	struct etcd_endpoint endpoint[ETCD_MAX_ENDPOINTS];
	int n_endpoints;
	char *cluster;
	char *prefix;                    /* default "/pgbdr-agent/" */
	int64_t ttl_ms;                  /* default 10 s */
};

struct agent_config {
	char *path;

	struct listen_addr http_listen;  /* default 0.0.0.0:9200 */
	struct listen_addr agent_listen; /* default off */
	struct listen_addr spoe_listen;  /* default off */
	struct cidr_list allow_from;     /* empty = any */

	int64_t interval_ms;             /* default 1000 */
	int64_t timeout_ms;              /* default 2000 */
	struct policy policy;            /* includes rise, fall, stale_after */

	char *maintenance_file;          /* NULL = none */
	enum log_level log_level;        /* default info */
	enum log_destination log_destination; /* default stderr */
	char *user;                      /* NULL = keep privileges */
	bool allow_root;

	int64_t agent_send_wait_ms;      /* agent-check: wait for agent-send */
	int64_t leader_return_delay_ms;  /* preferred leader's comeback delay */
	int64_t leader_handover_ms;      /* no leader between two leaders */
	bool leader_without_peers;       /* one node, no peer list: may lead */
	enum peer_lag_mode peer_lag;     /* default catalog */
	int64_t spoe_max_frame_size;     /* our max-frame-size */
	int64_t spoe_max_fragmented;     /* cap for reassembled NOTIFY */
	int max_clients;                 /* per listener */
	int max_connecting;              /* node connection attempts in flight */
	int64_t client_timeout_ms;       /* idle/unfinished request timeout */

	struct etcd_config etcd;

	struct node_config *nodes;       /* owned */
	int n_nodes;
};

struct config_error {
	char file[256];
	int line;        /* 0 when not tied to a line */
	char key[64];    /* "" when not tied to a key */
	char message[256];
};

/*
 * Every error (formatted like config_error_format) and every warning
 * ("FILE: warning: ...") of one load, in the order found.
 */
struct config_report {
	char **lines;
	int n_lines;
	int n_errors;
	int n_warnings;
};

/* 0 on success; -1 with *err filled. cfg is zeroed first and left freeable. */
int config_load(const char *path, struct agent_config *cfg, struct config_error *err);

/* config_load() that also lists every error and warning in *report. */
int config_load_report(const char *path, struct agent_config *cfg, struct config_error *err,
		       struct config_report *report);
void config_report_free(struct config_report *report);
void config_free(struct agent_config *cfg);

/* "FILE:LINE: key 'KEY': MESSAGE" (parts omitted when unknown). */
void config_error_format(const struct config_error *err, char *buf, size_t len);

/* Value of a libpq keyword in a node's params, or NULL. */
const char *node_config_param(const struct node_config *node, const char *keyword);

#endif
