/*
 * The daemon context and the node table: starts a poller per node,
 * judges every finished round with evaluate(), keeps the cached
 * statuses fail-closed between rounds (staleness tick), applies the
 * maintenance file the moment it appears or goes, and elects the
 * write leader over the cluster view.
 */
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "etcd.h"
#include "evaluate.h"
#include "lag.h"
#include "membership.h"
#include "peer_lag.h"
#include "peer_view.h"
#include "poller.h"
#include "splitbrain.h"
#include "systemd.h"

const int probe_duration_bounds_ms[PROBE_DURATION_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500,
};

static void count_probe(struct node *n, const struct node_facts *facts, int check_ms)
{
	if (facts->outcome == PROBE_CONNECT_WAITING)
		return; /* no round ran */
	n->probes++;
	if (facts->outcome != PROBE_OK && facts->outcome < PROBE_OUTCOME_COUNT)
		n->probe_errors[facts->outcome]++;
	for (int i = 0; i < PROBE_DURATION_BUCKETS; i++)
		if (check_ms <= probe_duration_bounds_ms[i])
			n->probe_duration_buckets[i]++;
	n->probe_duration_sum += check_ms / 1000.0;
}

/*
 * The configured name, else the catalog's local node name once a probe
 * has read it, else the host name. Until a good probe has shown which,
 * the name is pending (said so in /status); once settled it stays, so
 * that a node going down and up keeps its /node/NAME and metric labels.
 */
static void node_refresh_name(struct node *n, const struct node_facts *facts)
{
	const char *name = n->cfg->name;
	bool settled = facts && facts->outcome == PROBE_OK;

	if (!name[0] && facts && facts->catalog_name[0])
		name = facts->catalog_name;
	if (name[0]) {
		settled = true;
	} else {
		if (n->judged.name[0] && (!n->judged.name_pending || !settled))
			return;
		name = n->agent->hostname;
	}
	n->judged.name_pending = !settled;
	n->judged_read.name_pending = !settled;
	snprintf(n->judged.name, sizeof(n->judged.name), "%s", name);
	snprintf(n->judged_read.name, sizeof(n->judged_read.name), "%s", name);
}

static void log_transition(const struct agent *a, const struct node_status *before,
			   const struct node_status *after)
{
	if (before->state == after->state && before->weight == after->weight)
		return;
	if (before->last_probe_at_ms == 0 && after->last_probe_at_ms != 0)
		return; /* the first verdict is logged as such */
	log_info(&a->log, "node %s: %s %d%% -> %s %d%%%s%s", after->name,
		 state_name(before->state), before->weight, state_name(after->state),
		 after->weight, after->reason[0] ? ": " : "", after->reason);
}

/*
 * Two physical primaries are never both writable: the stale one (or,
 * when the timelines cannot tell, both) is published read-only, with
 * the reason naming both.
 */
static void guard_split_brain(const struct node *n, struct node_status *next)
{
	const struct node_status *others[MAX_NODES];
	char why[REASON_MAX];
	int k = 0;

	if (!split_brain_candidate(&n->judged))
		return; /* the usual case: no table to build */
	/* n_nodes <= MAX_NODES: the config rejects more */
	for (int i = 0; i < n->agent->n_nodes && k < MAX_NODES; i++)
		if (n->agent->nodes[i] != n)
			others[k++] = &n->agent->nodes[i]->judged;
	if (!split_brain_blocks_writes(&n->judged, others, k, why, sizeof(why)))
		return;
	next->read_only = true;
	snprintf(next->reason, sizeof(next->reason), "%s", why);
}

/* What responders see: the verdict, maintenance, and the leader flag. */
static void publish(struct node *n)
{
	struct agent *a = n->agent;
	struct node_status next = n->judged;

	guard_split_brain(n, &next);
	next.maintenance = a->maintenance;
	status_apply_maintenance(&next);
	next.write_leader = a->write_leader[0] && strcmp(next.name, a->write_leader) == 0;
	n->readable = state_is_serving(n->judged_read.state) && !a->maintenance;
	log_transition(a, &n->status, &next);
	n->status = next;
	a->status_seq++;
}

static void publish_all(struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		publish(a->nodes[i]);
}

bool agent_catalog_view(const struct agent *a)
{
	return a->n_nodes == 1 && a->nodes[0]->cfg->classic;
}

static int64_t track_since(int64_t since, bool now_true, int64_t now_ms)
{
	if (!now_true)
		return 0;
	return since ? since : now_ms;
}

/*
 * Per-node mode: an agent watching one node alone. Its node's own lag
 * comes from the peers its catalog names (peer_lag), and an isolated
 * node (no peer replicates with it) takes no writes: alone, the agent
 * cannot tell whether it is the survivor or the one cut off.
 */
static bool per_node(const struct agent *a)
{
	return a->n_nodes == 1;
}

static bool isolated_alone(const struct agent *a, const struct node *node)
{
	return per_node(a) && node->status.isolated && state_is_serving(node->status.state);
}

/*
 * An agent that watches one node and no peers cannot tell whether some
 * other agent names another node: it names its own only when the
 * config says this node is alone (leader_without_peers).
 */
static bool may_lead_alone(const struct agent *a, const struct node *node)
{
	return a->etcd || a->n_nodes > 1 || node->n_peers > 0 || a->config.leader_without_peers;
}

/*
 * In catalog mode every node's agent must reach the same answer from
 * its own catalog, and none of them knows its peers' priorities: so
 * priorities are ignored there and names alone decide.
 */
static int collect_candidates(struct agent *a, int64_t now, struct leader_candidate *c, int max)
{
	int n = 0;

	/* node->status is published (maintenance applied) before any election */
	for (int i = 0; i < a->n_nodes && n < max; i++) {
		struct node *node = a->nodes[i];

		node->eligible_since_ms = track_since(node->eligible_since_ms,
						      status_write_eligible(&node->status) &&
						      may_lead_alone(a, node) &&
						      !isolated_alone(a, node), now);
		c[n++] = (struct leader_candidate){
			.name = node->judged.name,
			.priority = agent_catalog_view(a) ? 0 : node->cfg->priority,
			.eligible = node->eligible_since_ms != 0,
			.eligible_since_ms = node->eligible_since_ms,
		};
	}
	if (!agent_catalog_view(a))
		return n;
	for (int i = 0; i < a->nodes[0]->n_peers && n < max; i++) {
		struct node *node = a->nodes[0];

		c[n++] = (struct leader_candidate){
			.name = node->peers[i].fact.name,
			.priority = 0,
			.eligible = node->peers[i].fact.up,
			.eligible_since_ms = node->peers[i].up_since_ms,
		};
	}
	return n;
}

/*
 * PGD elects its own write leader (group routing, raft): when a serving
 * node's catalog names one we know, that choice wins over ours, so that
 * HAProxy and PGD's own proxies never disagree. Returns "" otherwise.
 */
static const char *catalog_choice(const struct agent *a, const struct leader_candidate *c, int n)
{
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node *node = a->nodes[i];

		if (!node->catalog_write_leader[0] || !state_is_serving(node->judged.state))
			continue;
		for (int j = 0; j < n; j++)
			if (strcmp(c[j].name, node->catalog_write_leader) == 0)
				return node->catalog_write_leader;
	}
	return "";
}

static void follow_catalog_choice(const struct agent *a, struct leader_candidate *c, int n)
{
	const char *choice = catalog_choice(a, c, n);

	if (!choice[0])
		return;
	for (int i = 0; i < n; i++)
		if (strcmp(c[i].name, choice) != 0)
			c[i].eligible = false;
}

/*
 * No election before every node has answered once (or could not
 * within a round): otherwise whichever node happens to answer first
 * would win, and two agents started together could disagree.
 */
static bool view_is_complete(const struct agent *a, int64_t now)
{
	return agent_all_probed(a) ||
	       now - a->started_at_ms > a->config.timeout_ms + a->config.interval_ms;
}

static void elect_locally(struct agent *a, int64_t now)
{
	/* every node, and in catalog mode its peers: n_nodes <= MAX_NODES */
	struct leader_candidate c[MAX_NODES + MAX_PEERS];
	int n = collect_candidates(a, now, c, (int)(sizeof(c) / sizeof(c[0])));

	follow_catalog_choice(a, c, n);
	leader_elect(c, n, &a->leader_policy, now, &a->leader);
}

/*
 * The node this agent campaigns for in etcd: its own node while fit
 * (one agent per node), else the one its own election names.
 */
static const char *campaign_candidate(const struct agent *a)
{
	if (a->n_nodes == 1)
		return a->nodes[0]->eligible_since_ms ? a->nodes[0]->judged.name : "";
	return a->leader.leader;
}

/* With [etcd]: the lease holder, if fencing allows and it is fit here. */
static void lease_choice(struct agent *a, int64_t now, char *out, size_t len)
{
	const char *name;
	const struct node *node;

	etcd_set_candidate(a->etcd, campaign_candidate(a));
	name = lease_leader(etcd_facts(a->etcd), etcd_policy(a->etcd), now,
			    a->no_leader_reason, sizeof(a->no_leader_reason));
	node = name[0] ? agent_find_node(a, name) : NULL;
	if (node && !node->eligible_since_ms) {
		snprintf(a->no_leader_reason, sizeof(a->no_leader_reason),
			 "etcd names %s, which is not fit to lead", name);
		name = "";
	}
	snprintf(out, len, "%s", name);
}

static void local_choice(struct agent *a, char *out, size_t len)
{
	snprintf(out, len, "%s", a->leader.leader);
	if (a->leader.pending[0])
		snprintf(a->no_leader_reason, sizeof(a->no_leader_reason),
			 "handing over to %s", a->leader.pending);
	else if (a->n_nodes == 1 && isolated_alone(a, a->nodes[0]))
		snprintf(a->no_leader_reason, sizeof(a->no_leader_reason),
			 "%s is isolated (no peer replicates with it): it takes no writes",
			 a->nodes[0]->status.name);
	else if (a->n_nodes == 1 && !may_lead_alone(a, a->nodes[0]))
		snprintf(a->no_leader_reason, sizeof(a->no_leader_reason),
			 "no peers known to elect among (leader_without_peers = no)");
	else
		snprintf(a->no_leader_reason, sizeof(a->no_leader_reason), "none yet");
}

static void update_leader(struct agent *a)
{
	int64_t now = clock_ms();
	char next[NODE_NAME_MAX];

	if (!view_is_complete(a, now))
		return;
	elect_locally(a, now);
	if (a->etcd)
		lease_choice(a, now, next, sizeof(next));
	else
		local_choice(a, next, sizeof(next));
	if (strcmp(next, a->write_leader) == 0)
		return;
	log_info(&a->log, "write leader: %s -> %s%s%s", a->write_leader[0] ? a->write_leader : "(none)",
		 next[0] ? next : "(none)", next[0] ? "" : ": ", next[0] ? "" : a->no_leader_reason);
	snprintf(a->write_leader, sizeof(a->write_leader), "%s", next);
	publish_all(a);
}

static void on_etcd_reply(void *arg)
{
	update_leader(arg);
}

/*
 * The peers this round's catalog names, each keeping its "up since"
 * across rounds (matched by name). Sized to the catalog: a node whose
 * catalog names none, as most in a central agent's fleet, holds nothing.
 * Out of memory, the list is dropped rather than kept stale (fail
 * closed): an agent that knows no peer does not lead alone.
 */
static void remember_peers(struct node *n, const struct node_facts *facts, int64_t now)
{
	int count = facts->n_peers < MAX_PEERS ? facts->n_peers : MAX_PEERS;
	struct node_peer *next = NULL;

	if (count > 0 && !(next = calloc((size_t)count, sizeof(*next))))
		count = 0;
	for (int i = 0; i < count; i++) {
		int64_t since = 0;

		for (int j = 0; j < n->n_peers; j++)
			if (strcmp(n->peers[j].fact.name, facts->peers[i].name) == 0)
				since = n->peers[j].up_since_ms;
		next[i].fact = facts->peers[i];
		next[i].up_since_ms = track_since(since, facts->peers[i].up, now);
	}
	free(n->peers);
	n->peers = next;
	n->n_peers = count;
}

/*
 * Central mode: the other nodes' last facts tell how far each of them
 * has got in sending to this one, and whether they have parted it from
 * their group. Facts of a failed round carry no streams and no peers,
 * so a peer that is down cannot vouch for anything.
 */
static void take_peer_view(const struct node *n, struct node_facts *facts)
{
	const struct peer_view *peers[MAX_NODES];
	int k = 0;

	for (int i = 0; i < n->agent->n_nodes && k < MAX_NODES; i++)
		if (n->agent->nodes[i] != n && n->agent->nodes[i]->view)
			peers[k++] = n->agent->nodes[i]->view;
	parted_by_peers(facts, peers, k);
	lag_from_peers(facts, peers, k);
}

static struct systemd_summary systemd_summary_of(const struct agent *a)
{
	return (struct systemd_summary){
		.ready_nodes = agent_ready_nodes(a),
		.n_nodes = a->n_nodes,
		.write_leader = agent_write_leader(a),
		.maintenance = a->maintenance,
		.all_probed = agent_all_probed(a),
	};
}

static void notify_systemd(struct agent *a)
{
	struct systemd_summary sum = systemd_summary_of(a);

	systemd_update(&a->systemd, &sum);
}

void agent_serving(struct agent *a)
{
	a->systemd.listening = true;
	systemd_start_watchdog(&a->systemd, a->base);
}

void agent_stop_serving(struct agent *a)
{
	systemd_stop_watchdog(&a->systemd);
}

void agent_reload_done(struct agent *a)
{
	struct systemd_summary sum = systemd_summary_of(a);

	systemd_ready_again(&a->systemd, &sum);
}

static struct poller_settings poller_settings_of(struct agent *a);

/*
 * A poller needs one socket, two while libpq moves to the next address;
 * the loop, evdns, inotify and the log need a few more.
 */
static int fd_reserve_for(int n_nodes)
{
	return 32 + 2 * n_nodes;
}

/* Per-node mode: the node's own lag from the peers its catalog names. */
static void take_peer_lag(struct node *n, struct node_facts *facts)
{
	struct agent *a = n->agent;
	struct poller_settings settings = poller_settings_of(a);

	if (!per_node(a) || a->config.peer_lag != PEER_LAG_CATALOG) {
		peer_lag_free(n->peer_lag);
		n->peer_lag = NULL;
		return;
	}
	if (!n->peer_lag && !(n->peer_lag = peer_lag_new(a->base, a->dns, &a->log)))
		return;
	peer_lag_apply(n->peer_lag, n->cfg, &settings, n->judged.name, facts);
	/* the peers' sockets, as many as the catalog names, join the reserve */
	a->fd_reserve = fd_reserve_for(a->n_nodes) + 2 * peer_lag_count(n->peer_lag);
}

/*
 * Keep what this round tells the other nodes. Out of memory, the node
 * keeps no view: its peers then cannot read their lag from it, which
 * makes that lag unknown, not zero.
 */
static void keep_view(struct node *n, const struct node_facts *probed)
{
	peer_view_free(n->view);
	n->view = peer_view_new(probed);
}

static void on_round_finished(void *arg, const struct node_facts *probed, int check_ms)
{
	struct node *n = arg;
	struct agent *a = n->agent;
	struct policy read_policy = a->config.policy;
	int64_t now = clock_ms();
	struct node_facts judged_facts = *probed;
	const struct node_facts *facts = &judged_facts;
	struct node_status before = n->judged;

	keep_view(n, probed);
	take_peer_view(n, &judged_facts);
	take_peer_lag(n, &judged_facts);
	read_policy.read_only = READ_ONLY_READY;
	count_probe(n, facts, check_ms);
	evaluate(facts, &a->config.policy, &n->judged, now, &n->judged);
	evaluate(facts, &read_policy, &n->judged_read, now, &n->judged_read);
	n->judged.check_ms = check_ms;
	node_refresh_name(n, facts);
	/* while Raft elects, the last known write leader stays (raft_grace) */
	if (facts->outcome == PROBE_OK) {
		remember_peers(n, facts, now);
		if (!facts->raft_leaderless || facts->catalog_write_leader[0])
			snprintf(n->catalog_write_leader, sizeof(n->catalog_write_leader), "%s",
				 facts->catalog_write_leader);
	}
	/*
	 * A primary seen (or gone) now can end (or give back) another's
	 * write role: then all of them. Otherwise this node alone, so that
	 * a round costs the same with 10 nodes or 1000.
	 */
	if (split_brain_candidate(&before) || split_brain_candidate(&n->judged))
		publish_all(a);
	else
		publish(n);
	if (!n->probed)
		log_info(&a->log, "node %s: first verdict: %s %d%%%s%s (flavor %s)",
			 n->status.name, state_name(n->status.state), n->status.weight,
			 n->status.reason[0] ? ": " : "", n->status.reason,
			 flavor_name(n->status.flavor));
	n->probed = true;
	update_leader(a);
	notify_systemd(a);

	if (a->exit_after_first_round && agent_all_probed(a))
		event_base_loopbreak(a->base);
}

static void set_maintenance(struct agent *a, bool on)
{
	if (on == a->maintenance)
		return;
	a->maintenance = on;
	log_info(&a->log, "maintenance file %s %s", a->config.maintenance_file,
		 on ? "present: draining" : "removed: back in service");
	publish_all(a);
	update_leader(a);
	notify_systemd(a);
}

static void check_maintenance(struct agent *a)
{
	struct stat st;

	if (a->config.maintenance_file)
		set_maintenance(a, stat(a->config.maintenance_file, &st) == 0);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	char buf[4096];

	/* which event does not matter: the file's existence is the state */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	check_maintenance(a);
}

/*
 * Watch the directory, not the file: the file comes and goes, and an
 * editor may replace it by rename. Without a watch (no directory yet,
 * no inotify) the tick checks it instead.
 */
static void watch_maintenance_file(struct agent *a)
{
	char *copy;
	int wd;

	a->inotify_fd = -1;
	if (!a->config.maintenance_file)
		return;
	copy = strdup(a->config.maintenance_file);
	a->inotify_fd = copy ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
	if (a->inotify_fd >= 0) {
		wd = inotify_add_watch(a->inotify_fd, dirname(copy),
				       IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
				       IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
		a->inotify_ev = wd >= 0 ? event_new(a->base, a->inotify_fd, EV_READ | EV_PERSIST,
						    on_inotify, a) : NULL;
		if (!a->inotify_ev || event_add(a->inotify_ev, NULL) != 0) {
			log_warning(&a->log, "cannot watch %s (%s): checking it every 100 ms",
				    a->config.maintenance_file, strerror(errno));
			close(a->inotify_fd);
			a->inotify_fd = -1;
		}
	}
	free(copy);
	check_maintenance(a);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	int64_t now = clock_ms();

	if (a->inotify_fd < 0)
		check_maintenance(a);
	for (int i = 0; i < a->n_nodes; i++) {
		struct node *n = a->nodes[i];

		evaluate_staleness(&n->judged_read, &a->config.policy, now);
		if (evaluate_staleness(&n->judged, &a->config.policy, now))
			publish(n);
	}
	update_leader(a);
	notify_systemd(a);
}

static struct poller_settings poller_settings_of(struct agent *a)
{
	return (struct poller_settings){
		.interval_ms = a->config.interval_ms,
		.timeout_ms = a->config.timeout_ms,
		.slots = &a->connect_slots,
	};
}

/*
 * Each node is allocated on its own, so its address is stable for as
 * long as it is monitored: its poller calls back with it, and reads its
 * config through it, across reloads.
 */
static struct node *node_new(struct agent *a, const struct node_config *cfg)
{
	struct poller_settings settings = poller_settings_of(a);
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->agent = a;
	n->cfg = cfg;
	n->judged.flavor = cfg->flavor;
	snprintf(n->judged.reason, sizeof(n->judged.reason), "no probe finished yet");
	n->judged_read = n->judged;
	node_refresh_name(n, NULL);
	n->status = n->judged;
	n->poller = poller_new(a->base, a->dns, &n->cfg, &settings, &a->log, n->judged.name,
			       on_round_finished, n);
	if (!n->poller) {
		free(n);
		return NULL;
	}
	return n;
}

static void node_free(struct node *n)
{
	if (!n)
		return;
	poller_free(n->poller);
	peer_lag_free(n->peer_lag);
	peer_view_free(n->view);
	free(n->peers);
	free(n);
}

static int create_nodes(struct agent *a)
{
	a->n_nodes = a->config.n_nodes;
	a->fd_reserve = fd_reserve_for(a->n_nodes);
	a->nodes = calloc((size_t)a->n_nodes + 1, sizeof(*a->nodes));
	if (!a->nodes)
		return -1;
	for (int i = 0; i < a->n_nodes; i++)
		if (!(a->nodes[i] = node_new(a, &a->config.nodes[i])))
			return -1;
	return 0;
}

static struct evdns_base *create_resolver(struct event_base *base)
{
	struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);

	/* no usable resolv.conf: /etc/hosts still answers "localhost" */
	if (!dns) {
		dns = evdns_base_new(base, 0);
		if (dns)
			evdns_base_load_hosts(dns, NULL);
	}
	return dns;
}

int agent_init(struct agent *a, struct agent_config *config)
{
	struct timeval tick = ms_to_timeval(100);

	memset(a, 0, sizeof(*a));
	a->inotify_fd = -1;
	a->config = *config;
	memset(config, 0, sizeof(*config));
	log_init(&a->log, a->config.log_level, a->config.log_destination);
	a->started_at_ms = clock_ms();
	memory_budget_init(&a->client_memory, CLIENT_MEMORY_BUDGET);
	a->leader_policy.return_delay_ms = a->config.leader_return_delay_ms;
	a->leader_policy.handover_ms = a->config.leader_handover_ms;
	if (gethostname(a->hostname, sizeof(a->hostname) - 1) != 0)
		snprintf(a->hostname, sizeof(a->hostname), "localhost");

	a->base = event_base_new();
	if (!a->base)
		return -1;
	a->dns = create_resolver(a->base);
	connect_slots_init(&a->connect_slots, a->config.max_connecting);
	if (create_nodes(a) < 0)
		return -1;
	a->tick = event_new(a->base, -1, EV_PERSIST, on_tick, a);
	if (!a->tick || event_add(a->tick, &tick) != 0)
		return -1;
	if (a->config.etcd.enabled &&
	    !(a->etcd = etcd_new(a->base, a->dns, &a->config.etcd, a->config.leader_handover_ms,
				 &a->log, on_etcd_reply, a)))
		return -1;
	snprintf(a->no_leader_reason, sizeof(a->no_leader_reason), "none yet");
	watch_maintenance_file(a);
	return 0;
}

/* Same node, same connection: name, flavor and every libpq parameter. */
static bool same_node(const struct node_config *x, const struct node_config *y)
{
	if (strcmp(x->name, y->name) != 0 || x->flavor != y->flavor ||
	    x->n_params != y->n_params || x->classic != y->classic)
		return false;
	for (int i = 0; i < x->n_params; i++)
		if (strcmp(x->keywords[i], y->keywords[i]) != 0 ||
		    strcmp(x->values[i], y->values[i]) != 0)
			return false;
	return true;
}

static int find_kept_node(const struct agent *a, const struct node_config *cfg, const bool *taken)
{
	for (int j = 0; j < a->n_nodes; j++)
		if (!taken[j] && same_node(a->nodes[j]->cfg, cfg))
			return j;
	return -1;
}

static bool listen_addr_equal(const struct listen_addr *x, const struct listen_addr *y)
{
	return x->enabled == y->enabled && x->port == y->port && strcmp(x->host, y->host) == 0;
}

static void warn_about_restart_only_changes(struct agent *a, const struct agent_config *next)
{
	if ((a->config.user == NULL) != (next->user == NULL) ||
	    (a->config.user && strcmp(a->config.user, next->user) != 0))
		log_warning(&a->log, "reload: user changes only on restart");
	if (!listen_addr_equal(&a->config.http_listen, &next->http_listen) ||
	    !listen_addr_equal(&a->config.agent_listen, &next->agent_listen) ||
	    !listen_addr_equal(&a->config.spoe_listen, &next->spoe_listen))
		log_warning(&a->log, "reload: listen addresses change only on restart; "
			    "the listeners stay as they are");
}

/* Undo a rebuild that could not finish: free the nodes it made. */
static void drop_fresh_nodes(struct node **nodes, const bool *fresh, int n)
{
	for (int i = 0; i < n; i++)
		if (fresh[i])
			node_free(nodes[i]);
}

/*
 * Build the new node table: nodes whose connection parameters did not
 * change keep their poller, connection and status history (and their
 * address: the poller follows the node's new cfg by itself); new ones
 * start polling; the rest are stopped. Every new node is made before
 * anything changes, so that running out of memory keeps the old table.
 */
static int rebuild_nodes(struct agent *a, struct agent_config *next, int *added, int *removed)
{
	struct node **nodes = calloc((size_t)next->n_nodes + 1, sizeof(*nodes));
	bool *taken = calloc((size_t)a->n_nodes + 1, sizeof(*taken));
	bool *fresh = calloc((size_t)next->n_nodes + 1, sizeof(*fresh));

	if (!nodes || !taken || !fresh)
		goto fail;
	for (int i = 0; i < next->n_nodes; i++) {
		int j = find_kept_node(a, &next->nodes[i], taken);

		if (j >= 0) {
			taken[j] = true;
			nodes[i] = a->nodes[j];
			continue;
		}
		fresh[i] = true;
		if (!(nodes[i] = node_new(a, &next->nodes[i]))) {
			drop_fresh_nodes(nodes, fresh, i);
			goto fail;
		}
	}
	*removed = 0;
	for (int j = 0; j < a->n_nodes; j++) {
		if (!taken[j]) {
			log_info(&a->log, "reload: node %s removed", a->nodes[j]->status.name);
			node_free(a->nodes[j]);
			(*removed)++;
		}
	}
	free(a->nodes);
	a->nodes = nodes;
	a->n_nodes = next->n_nodes;
	a->fd_reserve = fd_reserve_for(a->n_nodes);
	free(taken);

	/* from here on, a->config must be the new one: pollers read it */
	config_free(&a->config);
	a->config = *next;
	memset(next, 0, sizeof(*next));
	connect_slots_set_limit(&a->connect_slots, a->config.max_connecting);

	*added = 0;
	for (int i = 0; i < a->n_nodes; i++) {
		struct node *n = a->nodes[i];
		struct poller_settings settings = poller_settings_of(a);

		n->cfg = &a->config.nodes[i];
		if (fresh[i]) {
			log_info(&a->log, "reload: node %s added", n->status.name);
			poller_start(n->poller);
			(*added)++;
		} else {
			poller_set_settings(n->poller, &settings);
		}
	}
	free(fresh);
	return 0;
fail:
	free(nodes);
	free(taken);
	free(fresh);
	return -1;
}

static void unwatch_maintenance_file(struct agent *a)
{
	if (a->inotify_ev)
		event_free(a->inotify_ev);
	a->inotify_ev = NULL;
	if (a->inotify_fd >= 0)
		close(a->inotify_fd);
	a->inotify_fd = -1;
}

int agent_reload(struct agent *a, struct agent_config *next)
{
	int added = 0, removed = 0;

	warn_about_restart_only_changes(a, next);
	unwatch_maintenance_file(a);
	if (rebuild_nodes(a, next, &added, &removed) < 0) {
		log_error(&a->log, "reload: out of memory, keeping the old configuration");
		config_free(next);
		watch_maintenance_file(a);
		return -1;
	}
	if (a->log.destination != a->config.log_destination)
		log_warning(&a->log, "reload: log_destination changes only on restart");
	if (a->config.etcd.enabled != (a->etcd != NULL))
		log_warning(&a->log, "reload: [etcd] changes only on restart");
	a->log.level = a->config.log_level;
	a->leader_policy.return_delay_ms = a->config.leader_return_delay_ms;
	a->leader_policy.handover_ms = a->config.leader_handover_ms;
	a->default_node = 0;
	watch_maintenance_file(a);
	publish_all(a);
	update_leader(a);
	log_info(&a->log, "configuration reloaded from %s: %d node(s), %d added, %d removed",
		 a->config.path ? a->config.path : "?", a->n_nodes, added, removed);
	return 0;
}

void agent_start_pollers(struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		poller_start(a->nodes[i]->poller);
	/* --once and --inetd look, they never campaign */
	if (a->etcd && !a->exit_after_first_round)
		etcd_start(a->etcd);
}

static void on_first_round_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

void agent_run_first_round(struct agent *a)
{
	/* a round cannot outlast timeout; the margin covers loop latency */
	int64_t ms = a->config.timeout_ms + 500;
	struct timeval tv = ms_to_timeval(ms);
	struct event *limit = evtimer_new(a->base, on_first_round_timeout, a->base);

	a->exit_after_first_round = true;
	agent_start_pollers(a);
	if (limit)
		evtimer_add(limit, &tv);
	event_base_dispatch(a->base);
	if (limit)
		event_free(limit);
	a->exit_after_first_round = false;
	update_leader(a);
}

void agent_resign(struct agent *a)
{
	if (a->etcd)
		etcd_resign(a->etcd, 1000);
}

void agent_free(struct agent *a)
{
	for (int i = 0; a->nodes && i < a->n_nodes; i++)
		node_free(a->nodes[i]);
	free(a->nodes);
	a->nodes = NULL;
	etcd_free(a->etcd);
	a->etcd = NULL;
	unwatch_maintenance_file(a);
	if (a->tick)
		event_free(a->tick);
	if (a->dns)
		evdns_base_free(a->dns, 0);
	if (a->base)
		event_base_free(a->base);
	config_free(&a->config);
}

struct listener_setup agent_listener_setup(struct agent *a, enum listener_kind kind,
					   const struct listener_protocol *protocol, void *arg)
{
	return (struct listener_setup){
		.kind = kind,
		.protocol = protocol,
		.arg = arg,
		.budget = &a->client_memory,
		.allow = &a->config.allow_from,
		.max_clients = &a->config.max_clients,
		.fd_reserve = &a->fd_reserve,
		.log = &a->log,
		.counters = &a->counters.listeners[kind],
	};
}

const struct node *agent_find_node(const struct agent *a, const char *name)
{
	for (int i = 0; i < a->n_nodes; i++) {
		const struct node *n = a->nodes[i];

		if (strcmp(n->status.name, name) == 0 ||
		    (n->cfg->name[0] && strcmp(n->cfg->name, name) == 0))
			return n;
	}
	return NULL;
}

const struct node *agent_default_node(const struct agent *a)
{
	return a->n_nodes > 0 ? a->nodes[a->default_node] : NULL;
}

bool agent_all_probed(const struct agent *a)
{
	for (int i = 0; i < a->n_nodes; i++)
		if (!a->nodes[i]->probed)
			return false;
	return true;
}

const char *agent_write_leader(const struct agent *a)
{
	return a->write_leader;
}

int agent_ready_nodes(const struct agent *a)
{
	int count = 0;

	for (int i = 0; i < a->n_nodes; i++)
		count += state_is_serving(a->nodes[i]->status.state);
	return count;
}
