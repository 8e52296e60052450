/*
 * The SPOP agent for HAProxy's SPOE filter (spoe_listen): answers
 * NOTIFY pgbdr-status with an ACK that sets the node and cluster
 * variables, read from the cached status only.
 */
#ifndef PGBDR_SPOP_SERVER_H
#define PGBDR_SPOP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "units.h"

struct spop_server;
struct listener_stats;

/* frames_in slots: types 0..3 (UNSET, HAPROXY-HELLO, -DISCONNECT, NOTIFY), then any other */
#define SPOP_SERVER_FRAME_SLOTS 5
/* disconnects slots: status codes 0..13, then any other code */
#define SPOP_SERVER_STATUS_SLOTS 15

struct spop_server_stats {
	uint64_t accepted;          /* connections taken (allow_from passed) */
	uint64_t refused_busy;      /* closed at once: max_clients reached */
	uint64_t timeouts;          /* no complete frame within client_timeout */
	uint64_t frames_in[SPOP_SERVER_FRAME_SLOTS];
	uint64_t hellos_sent;
	uint64_t acks_sent;
	uint64_t disconnects[SPOP_SERVER_STATUS_SLOTS]; /* AGENT-DISCONNECT sent, by status */
	uint64_t healthchecks;      /* HELLOs from option spop-check */
	uint64_t messages;          /* pgbdr-status messages answered */
	uint64_t unknown_messages;  /* other messages, acknowledged without actions */
	uint64_t reassembled;       /* NOTIFYs rebuilt from fragments */
	uint64_t aborted;           /* fragmented NOTIFYs that HAProxy cancelled */
	uint64_t acks_truncated;    /* ACKs that could not carry every action */
	int open;                   /* connections open now */
};

/* Bind and serve; NULL with err filled when the address is unusable. */
struct spop_server *spop_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen);
void spop_server_free(struct spop_server *s);

/*
 * After a reload: spoe_max_frame_size, spoe_max_fragmented and
 * client_timeout apply to new connections (and to every timer armed
 * from now on); open connections keep the frame size they negotiated.
 */
void spop_server_reconfigure(struct spop_server *s, const struct agent_config *cfg,
			     const struct logger *log);

struct evbuffer;

/*
 * Append the SPOP counters to /metrics (frames by type, disconnects by
 * status code, connections, refusals); s may be NULL (listener off),
 * which still emits the metric headers so the names are always there.
 */
void spop_server_render_metrics(const struct spop_server *s, struct evbuffer *out);

const struct spop_server_stats *spop_server_stats(const struct spop_server *s);
/* The listener's own counters: fd reserve refusals, accept failures. */
const struct listener_stats *spop_server_listener_stats(const struct spop_server *s);

/* The bound port (useful when the config asked for port 0). */
int spop_server_port(const struct spop_server *s);

#endif
