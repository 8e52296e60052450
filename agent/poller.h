/*
 * The node poller: one persistent, non-blocking libpq connection per
 * node, driven by the event loop. Every interval it runs a probe round
 * (resolve, connect and detect if needed, then the flavor's query)
 * bounded by one timeout, and hands the facts to its owner.
 */
#ifndef PGBDR_POLLER_H
#define PGBDR_POLLER_H

#include <stdint.h>

#include "config.h"
#include "log.h"
#include "status.h"

struct event_base;
struct evdns_base;
struct poller;

typedef void (*poller_result_cb)(void *arg, const struct node_facts *facts,
				 int check_ms);

struct connect_slots;

struct poller_settings {
	int64_t interval_ms;
	int64_t timeout_ms; /* bounds a whole round: resolve, connect and query */
	/*
	 * Shared by the owner's pollers (it outlives them), NULL for no
	 * bound: a round that must connect first waits for a slot, and its
	 * timeout starts when it gets one. While it waits, the poller calls
	 * back every interval with PROBE_CONNECT_WAITING (no round ran).
	 */
	struct connect_slots *slots;
};

/*
 * *cfg, log and name must outlive the poller. The config is read
 * through cfg at every use: a reload replaces the config, and the owner
 * (a node, whose address is stable) points *cfg at the new one.
 */
struct poller *poller_new(struct event_base *base, struct evdns_base *dns,
			  const struct node_config *const *cfg,
			  const struct poller_settings *settings,
			  const struct logger *log, const char *name,
			  poller_result_cb cb, void *arg);

/* Run the first round now; later rounds follow every interval. */
void poller_start(struct poller *p);

/* After a reload: timing changes apply from the next round. */
void poller_set_settings(struct poller *p, const struct poller_settings *settings);

/* Closes the connection without waiting on the server. */
void poller_free(struct poller *p);

#endif
