/*
 * The leader lease in etcd: a client of etcd's v3 JSON gateway on the
 * agent's event loop. It campaigns for one candidate node (the one the
 * agent finds fit to lead), keeps the lease alive while it holds the
 * key, gives the key up the moment the candidate changes, and watches
 * the key otherwise. What it learned is a lease_facts; cluster.c's
 * lease_leader() decides who may be named from it.
 */
#ifndef PGBDR_ETCD_H
#define PGBDR_ETCD_H

#include <stdint.h>

#include "cluster.h"
#include "config.h"
#include "log.h"

struct event_base;
struct evdns_base;
struct etcd_client;

/* Called after every reply, so that the agent re-decides at once. */
typedef void (*etcd_changed_cb)(void *arg);

struct etcd_client *etcd_new(struct event_base *base, struct evdns_base *dns,
			     const struct etcd_config *cfg, int64_t handover_ms,
			     struct logger *log, etcd_changed_cb cb, void *arg);
/*
 * Clean shutdown: revoke the lease, if any, so that the key goes now
 * and not after ttl. Runs the event loop until etcd answers or
 * max_wait_ms passes, whichever is first; call it once the loop has
 * stopped and nothing else should answer clients. Nothing is named
 * leader by this client afterwards.
 */
void etcd_resign(struct etcd_client *c, int64_t max_wait_ms);
/* Frees the client; a lease it still holds lapses after ttl. */
void etcd_free(struct etcd_client *c);
void etcd_start(struct etcd_client *c);

/* The node to campaign for; "" gives up the key at once if held. */
void etcd_set_candidate(struct etcd_client *c, const char *name);

const struct lease_facts *etcd_facts(const struct etcd_client *c);
const struct lease_policy *etcd_policy(const struct etcd_client *c);

struct etcd_stats {
	const char *key;
	const char *endpoint;        /* "http://HOST:PORT" in use */
	int64_t lease_id;            /* 0 when none */
	uint64_t requests;
	uint64_t failures;
	uint64_t acquired;           /* times this agent took the key */
};

void etcd_get_stats(const struct etcd_client *c, struct etcd_stats *out);

#endif
