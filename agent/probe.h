/*
 * Probes: the only SQL the agent runs. A connection is first
 * "detected" once (server version, flavor, catalog columns), then the
 * flavor's probe query runs every interval and its result is parsed
 * into node_facts. Nothing here does I/O; the poller sends the text.
 */
#ifndef PGBDR_PROBE_H
#define PGBDR_PROBE_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "status.h"

/* What one connection learned at connect time; stable until reconnect. */
struct conn_caps {
	int server_version;        /* server_version_num */
	bool in_recovery;
	bool has_bdr1;             /* bdr.bdr_get_local_node_name() exists */
	bool has_pgd;              /* bdr.local_node_summary exists */
	bool has_pglogical;
	bool has_spock;
	int n_subscriptions;       /* pg_subscription rows of this database */
	int n_walsenders;          /* rows in pg_stat_replication */
	int n_logical_slots;       /* pgoutput slots of this database */
	bool can_read_origins;     /* may read pg_replication_origin_status */
	bool is_superuser;         /* the monitoring role needs far less */
	/* spock.lag_tracker is the receiver's view (5.0: last_received_lsn) */
	bool spock_receiver_lag;
	bool bdr_has_read_only;    /* bdr.bdr_nodes.node_read_only (BDR >= 1.0) */
	/* sql/grants/bdr.sql's pgbdr_agent.bdr_slot_positions(), executable */
	bool bdr_slot_positions;
	/* may read the peers' DSNs: bdr.bdr_connections, pglogical's
	 * node_interface and subscription (for per-node lag) */
	bool bdr_peer_dsns;
	bool pglogical_peer_dsns;
	/* PGD catalog shape: 3.7, 4 and 5 differ in these */
	bool pgd_has_node_kind;    /* bdr.node_summary.node_kind_name (5) */
	bool pgd_has_decoder_slot; /* bdr.node_slots.is_decoder_slot (4, 5) */
	bool pgd_has_raft;         /* bdr.group_raft_details */
	bool pgd_raft_has_group;   /* bdr.group_raft_details.node_group_name (5) */
	bool pgd_has_monitor;      /* bdr.monitor_local_replslots() */
	bool pgd_has_routing;      /* bdr.node_group_routing_summary (5) */
	bool pgd_peer_dsns;        /* may read bdr.node_summary.interface_connstr */
	enum flavor flavor;        /* detected, or forced by the config */
};

/* Room for the longest probe query any flavor builds. */
#define PROBE_QUERY_MAX 8192

struct probe_ops {
	enum flavor flavor;
	/*
	 * The query for this connection: fixed text picked by version, or
	 * text built into buf (len bytes) when the combinations are many.
	 */
	const char *(*query)(const struct conn_caps *caps, char *buf, size_t len);
	/* Fill facts from a PGRES_TUPLES_OK result of that query. */
	void (*parse)(const PGresult *res, const struct conn_caps *caps,
		      struct node_facts *facts);
};

const char *probe_detect_query(void);

/*
 * Parse the detect result into caps and choose the flavor (forced
 * wins). require_bdr is the classic [postgresql] section without a
 * flavor key: a BDR check, as the classic checker was, so a database
 * without BDR is an error that names the flavor setting. Returns 0, or
 * -1 with a reason in err.
 */
int probe_detect_parse(const PGresult *res, enum flavor forced, bool require_bdr,
		       struct conn_caps *caps, char *err, size_t errlen);

/* The probe for a flavor; never NULL for a detected flavor. */
const struct probe_ops *probe_for_flavor(enum flavor flavor);

/* Shared helpers for the per-flavor parsers. */
bool probe_result_shape_ok(const PGresult *res, int nfields,
			   struct node_facts *facts);
bool pq_is_null(const PGresult *res, int col);
bool pq_bool(const PGresult *res, int col);
long long pq_int64(const PGresult *res, int col);
double pq_double(const PGresult *res, int col);
const char *pq_text(const PGresult *res, int col); /* "" for NULL */

/* Set *_known and value from a nullable column. */
void probe_take_lag_bytes(const PGresult *res, int col, struct node_facts *facts);
void probe_take_lag_seconds(const PGresult *res, int col, struct node_facts *facts);

/*
 * Peers come as one text column: name, chr(31), 'true'/'false' (up),
 * optionally chr(31), 'true'/'false' (parted), and chr(30) between
 * peers; control characters cannot clash with names.
 */
void probe_take_peers(const PGresult *res, int col, struct node_facts *facts);

/*
 * Outgoing streams come the same way: key, chr(31), lag in bytes (empty
 * when unknown), chr(30) between streams; their worst lag becomes the
 * outgoing figure. Incoming keys are separated by chr(30). A node with
 * no incoming stream has nothing to wait for: its own lag is then 0,
 * otherwise it stays unknown unless the probe measured it.
 */
void probe_take_outgoing(const PGresult *res, int col, struct node_facts *facts);
void probe_take_incoming(const PGresult *res, int col, struct node_facts *facts);

/*
 * The peers' DSNs come as name, chr(31), DSN, chr(30) between peers,
 * and are filtered at once to their addresses (peer_dsn.h); readable
 * false (the role may not read them) records that instead.
 */
void probe_take_peer_dsns(const PGresult *res, int col, bool readable,
			  struct node_facts *facts);

/*
 * The rule every flavor shares for subscriptions that are not applying
 * although enabled (a provider out of reach): while another one still
 * replicates, the node is impaired; when none does, it cannot tell a
 * dead peer from its own isolation, so it is down. what names them
 * ("subscription", "subscription worker not running"); a NULL list
 * column means none. An earlier problem is kept (facts_set_problem).
 */
void probe_judge_stalled_subscriptions(const PGresult *res, int col_list, int col_applying,
				       const char *what, struct node_facts *facts);

/*
 * Replication slots on this node that nobody streams from (a peer or
 * subscriber gone): the node serves on, impaired. what names them
 * ("peer slot not streaming:"); a NULL list column means none.
 */
void probe_take_idle_slots(const PGresult *res, int col_list, const char *what,
			   struct node_facts *facts);

/*
 * The node cannot serve, and why: printf into a REASON_MAX buffer,
 * truncating safely. The first problem wins (it is the one to fix
 * first): a later call changes nothing, so a probe states its checks in
 * the order they matter and never tests whether one came before.
 */
void facts_set_problem(struct node_facts *facts, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void facts_set_impairment(struct node_facts *facts, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Like facts_set_impairment, but appends to an earlier one: "a; b". */
void facts_add_impairment(struct node_facts *facts, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The parsers' judgement of catalog values, pure so that tests can feed
 * them the rows real catalogs hold (tests/unit/test_probe.c).
 */
/* BDR 1/2 bdr.bdr_nodes.node_status of the local node ("" when missing). */
void judge_node_status(const char *status, struct node_facts *facts);
/*
 * BDR 1/2 peer slots: total, how many have no walsender (down), and
 * their names. Some down: impaired; all: isolated (serving at
 * min_weight at most).
 */
void judge_bdr_peer_slots(int total, int down, const char *names, struct node_facts *facts);
/* PGD peer_state_name and peer_target_state_name of the local node. */
void judge_local_state(const char *state, const char *target, struct node_facts *facts);
/*
 * PGD node kind ("" when unknown; on 3.7/4 "subscriber-only" from the
 * group's node_group_type): a subscriber-only node only receives
 * changes, so it is read-only; a witness stores no data.
 */
void judge_node_kind(const char *kind, struct node_facts *facts);

extern const struct probe_ops probe_bdr_ops;
extern const struct probe_ops probe_pgd_ops;
extern const struct probe_ops probe_pglogical_ops;
extern const struct probe_ops probe_spock_ops;
extern const struct probe_ops probe_logical_ops;
extern const struct probe_ops probe_physical_ops;
extern const struct probe_ops probe_plain_ops;

#endif
