/*
 * The vocabulary shared by probes, the evaluator and the responders:
 * what a probe found out about a node (facts), how the operator wants
 * that judged (policy), and the judged, cached result (node_status).
 * Nothing here does I/O.
 */
#ifndef PGBDR_STATUS_H
#define PGBDR_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#define NODE_NAME_MAX 64
#define REASON_MAX 256

enum flavor {
	FLAVOR_AUTO = 0, /* config only: detect from pg_extension */
	FLAVOR_BDR,      /* BDR 1/2 */
	FLAVOR_PGD,      /* BDR 3.x, PGD 4/5 */
	FLAVOR_PGLOGICAL,
	FLAVOR_SPOCK,
	FLAVOR_LOGICAL,  /* native logical replication */
	FLAVOR_PHYSICAL, /* streaming primary or standby */
	FLAVOR_PLAIN,
	FLAVOR_COUNT
};

enum node_state {
	STATE_DOWN = 0, /* zero so that a fresh status fails closed */
	STATE_READY,
	STATE_DEGRADED,
	STATE_DRAINING,
};

/* Why a probe round produced no usable facts. */
enum probe_outcome {
	PROBE_OK = 0,
	PROBE_NOT_YET,       /* no probe has finished since start */
	PROBE_RESOLVE_FAILED,
	PROBE_CONNECT_FAILED,
	PROBE_CONNECT_TIMEOUT,
	PROBE_QUERY_TIMEOUT,
	PROBE_QUERY_FAILED,
	PROBE_CONNECTION_LOST,
	/* no round ran: waiting for a connection slot (max_connecting); not a probe */
	PROBE_CONNECT_WAITING,
	PROBE_OUTCOME_COUNT
};

const char *probe_outcome_name(enum probe_outcome o);

#define MAX_PEERS 32
/* "source>receiver" of two node names, or a slot name */
#define STREAM_KEY_MAX (2 * NODE_NAME_MAX + 2)

/* A peer as the local node's catalog sees it. */
struct peer_fact {
	char name[NODE_NAME_MAX];
	bool up; /* member in good standing and replicating with us */
	bool parted; /* recorded as parted from the group, for good */
};

/*
 * A replication stream leaving this node and how far its receiver is
 * behind this node (the receiver's staleness, not this node's). to is
 * a key the receiver also reports among its incoming streams: for
 * BDR/PGD "source>receiver", for pglogical the slot's name.
 */
struct outgoing_fact {
	char to[STREAM_KEY_MAX];
	bool lag_known;
	int64_t lag_bytes;
};

/*
 * Where a peer can be reached, as this node's catalog records it, with
 * everything but the address taken out (peer_dsn.c): the catalog's DSN
 * may hold a replication password, which is never kept. usable is
 * false when the DSN names no network address (a local socket on the
 * peer's host, garbage): the peer is then known but cannot be asked.
 */
#define PEER_HOST_MAX 256
struct peer_address {
	char name[NODE_NAME_MAX];
	bool usable;
	char host[PEER_HOST_MAX];
	char hostaddr[PEER_HOST_MAX];
	char port[32];
	char dbname[NODE_NAME_MAX];
};

/* Whether the probe read the peers' addresses from the catalog. */
enum peer_dsns {
	PEER_DSNS_NONE = 0, /* the flavor's probe does not read them */
	PEER_DSNS_HIDDEN,   /* the role may not read the catalog that holds them */
	PEER_DSNS_READ,
};

/*
 * What one probe round learned. A probe fills only what its flavor can
 * tell; *_known flags keep "unknown" apart from zero.
 */
struct node_facts {
	enum probe_outcome outcome;
	char error[REASON_MAX];   /* outcome != PROBE_OK: short cause */

	enum flavor flavor;
	char catalog_name[NODE_NAME_MAX]; /* local node name from the catalog */

	/*
	 * The flavor's own verdict on the local node. healthy=false means
	 * the node must not take traffic (joining, parted, subscription
	 * down...); problem says why.
	 */
	bool healthy;
	char problem[REASON_MAX];

	/* Serving but impaired (peer disconnected, slot WARNING...). */
	bool impaired;
	char impairment[REASON_MAX];

	/*
	 * It has peers and none replicates with it: it cannot tell their
	 * failure from its own isolation, or from a part only they know
	 * of. It serves, at min_weight at most.
	 */
	bool isolated;

	bool read_only;

	/*
	 * This node's own staleness: changes made elsewhere and not yet
	 * applied here. 0 when nothing comes in; unknown when something
	 * does and this node alone cannot measure it.
	 */
	bool lag_bytes_known;
	int64_t lag_bytes;
	bool lag_seconds_known;
	double lag_seconds;

	/* How far the peers are behind this node: information only. */
	bool out_lag_bytes_known;
	int64_t out_lag_bytes;
	int n_outgoing;
	struct outgoing_fact outgoing[MAX_PEERS];
	/* Keys of the streams coming in, matched against peers' outgoing. */
	int n_incoming;
	char incoming[MAX_PEERS][STREAM_KEY_MAX];

	int peers_total;
	int peers_down;

	/* physical: the timeline of a primary's current WAL, 0 when unknown */
	int timeline;

	/* PGD: Raft has no leader now (an election, or lost consensus). */
	bool raft_leaderless;
	char raft_text[REASON_MAX]; /* which group, for the reason */

	/* PGD/raft can name the write leader itself; empty when not. */
	char catalog_write_leader[NODE_NAME_MAX];

	/* The cluster as this node's catalog sees it (flavors that can). */
	int n_peers;
	struct peer_fact peers[MAX_PEERS];

	/*
	 * Per-node mode: the peers this node's own lag must be read from
	 * (they alone know how far they have sent to it), and where they
	 * are. lag_unknown_why says which peer could not tell, for the
	 * reason of an unknown lag.
	 */
	enum peer_dsns peer_dsns;
	int n_peer_addrs;
	struct peer_address peer_addrs[MAX_PEERS];
	char lag_unknown_why[REASON_MAX];
};

enum read_only_policy {
	READ_ONLY_DOWN = 0,
	READ_ONLY_READY,
};

struct policy {
	int64_t drain_lag;        /* bytes; <= 0 disables draining by lag */
	int64_t max_lag;          /* bytes; <= 0 disables */
	double max_lag_time;      /* seconds; <= 0 disables */
	int min_weight;           /* 0..100, weight reached at max_lag */
	enum read_only_policy read_only;
	int rise;
	int fall;
	int64_t stale_after_ms;
	int64_t raft_grace_ms;    /* PGD: serve on this long while Raft elects */
};

struct node_status {
	char name[NODE_NAME_MAX];
	bool name_pending;        /* the host name until a probe tells the real one */
	enum flavor flavor;
	enum node_state state;
	int weight;               /* 0..100 */
	bool lag_bytes_known;
	int64_t lag_bytes;
	bool lag_seconds_known;
	double lag_seconds;
	bool out_lag_bytes_known; /* how far the peers are behind this node */
	int64_t out_lag_bytes;
	bool read_only;
	bool isolated;            /* no peer replicates with it (facts->isolated) */
	char reason[REASON_MAX];  /* empty when plainly ready */
	bool write_leader;
	bool maintenance;

	/* Monotonic clock (clock_ms()); renderers convert to wall time. */
	int64_t checked_at_ms;    /* end of the last good probe, 0 if none */
	int64_t last_probe_at_ms; /* end of the last probe, good or bad */
	int check_ms;             /* duration of the last probe */

	int timeline;             /* physical primary's timeline, 0 unknown */

	/* since when PGD's Raft has had no leader, 0 while it has one */
	int64_t raft_leaderless_since_ms;

	/* hysteresis counters */
	int good_streak;
	int bad_streak;
	bool ever_up;
};

const char *flavor_name(enum flavor f);
int flavor_from_name(const char *name, enum flavor *out); /* 0 ok, -1 unknown */
const char *state_name(enum node_state s);

static inline bool state_is_serving(enum node_state s)
{
	return s == STATE_READY || s == STATE_DEGRADED;
}

#endif
