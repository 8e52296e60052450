/*
 * Per-node mode's lag, read from the peers: see peer_lag.h. One poller
 * per peer the catalog names, kept while the peer's name and address
 * stay the same, replaced when they change, stopped when the peer goes
 * from the catalog. The pollers are the node's own (poller.c), so a
 * peer is bounded like a node: the same timeout, row and byte limits,
 * no blocking call, scrubbed text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lag.h"
#include "peer_lag.h"
#include "peer_view.h"

struct peer_conn {
	struct peer_address addr;
	struct node_config cfg;        /* owned copies, wiped when freed */
	const struct node_config *cfg_ref; /* &cfg: what the poller reads */
	char label[2 * NODE_NAME_MAX + 16];
	struct poller *poller;
	bool answered;                 /* a round has finished */
	enum probe_outcome outcome;    /* the last one's */
	char error[REASON_MAX];
	struct peer_view *view;        /* owned; NULL when out of memory */
};

struct peer_lag {
	struct event_base *base;
	struct evdns_base *dns;
	const struct logger *log;
	int n;
	struct peer_conn *peers[MAX_PEERS];
};

/* The catalog names where the peer is; the operator, who we are. */
static bool address_keyword(const char *kw)
{
	return strcmp(kw, "host") == 0 || strcmp(kw, "hostaddr") == 0 ||
	       strcmp(kw, "port") == 0 || strcmp(kw, "dbname") == 0;
}

static void free_cfg(struct node_config *cfg)
{
	for (int i = 0; i < cfg->n_params; i++) {
		if (cfg->values[i])
			explicit_bzero(cfg->values[i], strlen(cfg->values[i]));
		free(cfg->keywords[i]);
		free(cfg->values[i]);
	}
	free(cfg->keywords);
	free(cfg->values);
	cfg->keywords = cfg->values = NULL;
	cfg->n_params = 0;
}

static int add_param(struct node_config *cfg, const char *kw, const char *value)
{
	if (!value || !value[0])
		return 0;
	cfg->keywords[cfg->n_params] = strdup(kw);
	cfg->values[cfg->n_params] = strdup(value);
	cfg->n_params++;
	return cfg->keywords[cfg->n_params - 1] && cfg->values[cfg->n_params - 1] ? 0 : -1;
}

/* The node's settings with the peer's address; dbname defaults to the node's. */
static int build_cfg(struct peer_conn *pc, const struct node_config *node, enum flavor flavor)
{
	const struct peer_address *a = &pc->addr;
	size_t cap = (size_t)node->n_params + 5;
	int rc = 0;

	memset(&pc->cfg, 0, sizeof(pc->cfg));
	snprintf(pc->cfg.name, sizeof(pc->cfg.name), "%s", a->name);
	pc->cfg.flavor = flavor;
	pc->cfg.flavor_set = true;
	pc->cfg.keywords = calloc(cap, sizeof(char *));
	pc->cfg.values = calloc(cap, sizeof(char *));
	if (!pc->cfg.keywords || !pc->cfg.values)
		return -1;
	for (int i = 0; i < node->n_params && rc == 0; i++)
		if (!address_keyword(node->keywords[i]))
			rc = add_param(&pc->cfg, node->keywords[i], node->values[i]);
	if (rc == 0)
		rc = add_param(&pc->cfg, "host", a->host);
	if (rc == 0)
		rc = add_param(&pc->cfg, "hostaddr", a->hostaddr);
	if (rc == 0)
		rc = add_param(&pc->cfg, "port", a->port);
	if (rc == 0)
		rc = add_param(&pc->cfg, "dbname",
			       a->dbname[0] ? a->dbname : node_config_param(node, "dbname"));
	return rc;
}

static void peer_conn_free(struct peer_conn *pc)
{
	if (!pc)
		return;
	poller_free(pc->poller);
	free_cfg(&pc->cfg);
	peer_view_free(pc->view);
	free(pc);
}

static void on_peer_round(void *arg, const struct node_facts *facts, int check_ms)
{
	struct peer_conn *pc = arg;

	(void)check_ms;
	pc->outcome = facts->outcome;
	snprintf(pc->error, sizeof(pc->error), "%s", facts->error);
	peer_view_free(pc->view);
	pc->view = peer_view_new(facts);
	pc->answered = true;
}

static struct peer_conn *peer_conn_new(struct peer_lag *pl, const struct peer_address *addr,
				       const struct node_config *node,
				       const struct poller_settings *settings,
				       const char *name, enum flavor flavor)
{
	struct peer_conn *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->addr = *addr;
	snprintf(pc->label, sizeof(pc->label), "%s (peer of %s)", addr->name, name);
	if (!addr->usable)
		return pc; /* known, but cannot be asked */
	pc->cfg_ref = &pc->cfg;
	if (build_cfg(pc, node, flavor) < 0 ||
	    !(pc->poller = poller_new(pl->base, pl->dns, &pc->cfg_ref, settings, pl->log, pc->label,
				      on_peer_round, pc))) {
		peer_conn_free(pc);
		return NULL;
	}
	log_info(pl->log, "node %s: reading its lag from peer %s", name, addr->name);
	poller_start(pc->poller);
	return pc;
}

static bool same_address(const struct peer_address *x, const struct peer_address *y)
{
	return x->usable == y->usable && strcmp(x->name, y->name) == 0 &&
	       strcmp(x->host, y->host) == 0 && strcmp(x->hostaddr, y->hostaddr) == 0 &&
	       strcmp(x->port, y->port) == 0 && strcmp(x->dbname, y->dbname) == 0;
}

/* The peer connection for addr: kept if the catalog still says the same. */
static struct peer_conn *take_kept(struct peer_lag *pl, const struct peer_address *addr,
				   enum flavor flavor)
{
	for (int i = 0; i < pl->n; i++) {
		struct peer_conn *pc = pl->peers[i];

		if (pc && same_address(&pc->addr, addr) &&
		    (!pc->poller || pc->cfg.flavor == flavor)) {
			pl->peers[i] = NULL;
			return pc;
		}
	}
	return NULL;
}

/* Follow the catalog's peer set: keep, start and stop connections. */
static void follow_catalog(struct peer_lag *pl, const struct node_config *node,
			   const struct poller_settings *settings, const char *name,
			   const struct node_facts *facts)
{
	struct peer_conn *next[MAX_PEERS] = { 0 };
	int n = 0;

	for (int i = 0; i < facts->n_peer_addrs && i < MAX_PEERS; i++) {
		const struct peer_address *addr = &facts->peer_addrs[i];
		struct peer_conn *pc = take_kept(pl, addr, facts->flavor);

		if (!pc)
			pc = peer_conn_new(pl, addr, node, settings, name, facts->flavor);
		else if (pc->poller)
			poller_set_settings(pc->poller, settings);
		if (pc)
			next[n++] = pc;
	}
	for (int i = 0; i < pl->n; i++) {
		if (pl->peers[i] && pl->peers[i]->poller)
			log_info(pl->log, "node %s: peer %s left the catalog (or moved)", name,
				 pl->peers[i]->addr.name);
		peer_conn_free(pl->peers[i]);
	}
	memcpy(pl->peers, next, sizeof(next));
	pl->n = n;
}

/* Why the peers could not tell: the first peer that failed, else the stream none reports. */
static void explain_unknown(const struct peer_lag *pl, struct node_facts *facts)
{
	char *why = facts->lag_unknown_why;
	size_t len = sizeof(facts->lag_unknown_why);

	if (facts->peer_dsns == PEER_DSNS_HIDDEN) {
		snprintf(why, len, "the role may not read the peers' DSNs in the catalog"
			 " (see sql/grants/%s.sql)", flavor_name(facts->flavor));
		return;
	}
	for (int i = 0; i < pl->n; i++) {
		const struct peer_conn *pc = pl->peers[i];

		if (!pc->poller)
			snprintf(why, len, "peer %s: its catalog DSN names no network address",
				 pc->addr.name);
		else if (!pc->answered)
			snprintf(why, len, "peer %s: no answer yet", pc->addr.name);
		else if (pc->outcome != PROBE_OK)
			snprintf(why, len, "peer %s unreachable: %s", pc->addr.name,
				 pc->error[0] ? pc->error : probe_outcome_name(pc->outcome));
		else
			continue;
		return;
	}
	if (pl->n == 0)
		snprintf(why, len, "no peer address in the catalog");
	else
		snprintf(why, len, "no peer reports how far it has sent to this node");
}

void peer_lag_apply(struct peer_lag *pl, const struct node_config *node_cfg,
		    const struct poller_settings *settings, const char *name,
		    struct node_facts *facts)
{
	const struct peer_view *peers[MAX_PEERS];
	int k = 0;

	if (facts->outcome != PROBE_OK)
		return; /* keep the connections: the node may be back next round */
	follow_catalog(pl, node_cfg, settings, name, facts);
	if (facts->lag_bytes_known || facts->n_incoming <= 0 ||
	    facts->peer_dsns == PEER_DSNS_NONE)
		return;
	for (int i = 0; i < pl->n; i++)
		if (pl->peers[i]->answered && pl->peers[i]->view)
			peers[k++] = pl->peers[i]->view;
	if (!lag_from_peers(facts, peers, k))
		explain_unknown(pl, facts);
}

struct peer_lag *peer_lag_new(struct event_base *base, struct evdns_base *dns,
			      const struct logger *log)
{
	struct peer_lag *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->base = base;
	pl->dns = dns;
	pl->log = log;
	return pl;
}

int peer_lag_count(const struct peer_lag *pl)
{
	return pl ? pl->n : 0;
}

void peer_lag_free(struct peer_lag *pl)
{
	if (!pl)
		return;
	for (int i = 0; i < pl->n; i++)
		peer_conn_free(pl->peers[i]);
	free(pl);
}
