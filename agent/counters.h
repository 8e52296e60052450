/*
 * Counters as plain data, like HAProxy's counters-t.h: each listener and
 * each protocol bumps its own, which struct agent owns, and metrics.c
 * reads them there. No getters and no server handles: whoever reads
 * counters depends on this header alone, so the reader of /metrics
 * never has to include the servers that serve /metrics.
 */
#ifndef PGBDR_COUNTERS_H
#define PGBDR_COUNTERS_H

#include <stdint.h>

enum listener_kind {
	LISTENER_HTTP,
	LISTENER_AGENTCHECK,
	LISTENER_SPOP,
	LISTENER_KINDS,
};

/* What accept() hands over, counted by the listener for every protocol. */
struct listener_counters {
	uint64_t accepted;            /* served: past allow_from, the fd reserve and max_clients */
	uint64_t refused;             /* closed at once: allow_from does not list the client */
	uint64_t over_capacity;       /* closed at once: max_clients connections open */
	uint64_t fd_reserve_refusals; /* closed at once: the fds left are the pollers' */
	uint64_t accept_failures;     /* accept() failed, e.g. out of file descriptors */
	uint64_t setup_failures;      /* out of memory setting a connection up */
	uint64_t open;                /* connections open now (a gauge) */
};

struct http_counters {
	uint64_t requests;
	uint64_t timeouts;            /* no complete request within client_timeout */
	uint64_t shed;                /* closed, backlog dropped: over the memory budget */
	uint64_t responses[6];        /* by class: [2] = 2xx ... [5] = 5xx */
};

struct agentcheck_counters {
	uint64_t replies;
	uint64_t bad_requests;
};

/* frames_in slots: types 0..3 (UNSET, HAPROXY-HELLO, -DISCONNECT, NOTIFY), then any other */
#define SPOP_FRAME_SLOTS 5
/* disconnects slots: status codes 0..13, then any other code */
#define SPOP_STATUS_SLOTS 15

struct spop_counters {
	uint64_t timeouts;            /* no complete frame within client_timeout */
	uint64_t frames_in[SPOP_FRAME_SLOTS];
	uint64_t hellos_sent;
	uint64_t acks_sent;
	uint64_t disconnects[SPOP_STATUS_SLOTS]; /* AGENT-DISCONNECT sent, by status */
	uint64_t healthchecks;        /* HELLOs from option spop-check */
	uint64_t messages;            /* pgbdr-status messages answered */
	uint64_t unknown_messages;    /* other messages, acknowledged without actions */
	uint64_t reassembled;         /* NOTIFYs rebuilt from fragments */
	uint64_t aborted;             /* fragmented NOTIFYs that HAProxy cancelled */
	uint64_t acks_truncated;      /* ACKs that could not carry every action */
};

struct agent_counters {
	struct listener_counters listeners[LISTENER_KINDS];
	struct http_counters http;
	struct agentcheck_counters agentcheck;
	struct spop_counters spop;
	uint64_t reloads;
	uint64_t reload_failures;
};

/* The listener label of /metrics: "http", "agent-check", "spop". */
const char *listener_kind_name(enum listener_kind kind);

#endif
