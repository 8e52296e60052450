/*
 * Unit tests for the probes' judgement of catalog rows and for central
 * mode's lag and membership: each parser is fed result rows built with
 * libpq's own PGresult constructors, holding what the real catalogs
 * return (BDR 1.0's node_status codes, PGD's peer_state_name values,
 * pglogical's subscription and slot rows), one cmocka test per table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lag.h"
#include "membership.h"
#include "peer_view.h"
#include "probe.h"
#include "splitbrain.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MB(n) ((int64_t)(n) * 1024 * 1024)
#define MAX_COLS 24

/* One row of n columns; NULL values are SQL NULLs. */
static PGresult *make_row(int n, const char *const *values)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[MAX_COLS];
	char names[MAX_COLS][8];

	assert_non_null(res);
	assert_true(n <= MAX_COLS);
	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		attrs[i].name = names[i];
		attrs[i].typid = 25; /* text */
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	assert_true(PQsetResultAttrs(res, n, attrs));
	for (int i = 0; i < n; i++)
		assert_true(PQsetvalue(res, 0, i, (char *)values[i],
				       values[i] ? (int)strlen(values[i]) : -1));
	return res;
}

static void parse_row(const struct probe_ops *ops, const struct conn_caps *caps, int n,
		      const char *const *values, struct node_facts *facts)
{
	PGresult *res = make_row(n, values);

	memset(facts, 0, sizeof(*facts));
	facts->outcome = PROBE_OK;
	ops->parse(res, caps, facts);
	PQclear(res);
}

/* ==== BDR 1/2: bdr.bdr_nodes.node_status (bdr.h BDR_NODE_STATUS_*) ==== */

struct status_case {
	const char *status;
	bool healthy;
	const char *problem;
};

static const struct status_case bdr_status_cases[] = {
	{ "r", true, "" },
	{ "b", false, "node is joining: beginning to join (status b)" },
	{ "i", false, "node is joining: copying initial data (status i)" },
	{ "c", false, "node is joining: catching up (status c)" },
	{ "o", false, "node is joining: creating outbound slots (status o)" },
	{ "k", false, "node has parted from the BDR group (status k)" },
	{ "", false, "local node not found in bdr.bdr_nodes" },
	{ "x", false, "unknown BDR node status 'x'" },
	{ "rr", false, "unknown BDR node status 'rr'" },
};

static void test_judge_node_status(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bdr_status_cases); i++) {
		const struct status_case *c = &bdr_status_cases[i];
		struct node_facts f = { .healthy = true };

		judge_node_status(c->status, &f);
		if (f.healthy != c->healthy || strcmp(f.problem, c->problem) != 0)
			fail_msg("status '%s': healthy %d \"%s\", want %d \"%s\"", c->status,
				 f.healthy, f.problem, c->healthy, c->problem);
	}
}

/*
 * The BDR probe's columns: local name, node_status, active, read-only,
 * slots, slots down, their names, outgoing streams, incoming streams,
 * peer list. Rows as a three-node BDR 1.0 group shows them to bdrnode1.
 */
#define BDR_COLS 11
struct bdr_case {
	const char *name;
	const char *row[BDR_COLS];
	bool healthy;
	bool read_only;
	bool lag_known;
	int64_t lag;
	bool out_known;
	int64_t out_lag;
	int n_incoming;
	const char *reason; /* problem or impairment */
	bool isolated;
};

static const struct bdr_case bdr_cases[] = {
	{ "ready, two peers: own lag unknown, outgoing reported",
	  { "bdrnode1", "r", "t", "f", "2", "0", NULL,
	    "bdrnode1>bdrnode2\x1f" "0\x1e" "bdrnode1>bdrnode3\x1f" "8388608",
	    "bdrnode2>bdrnode1\x1e" "bdrnode3>bdrnode1",
	    "bdrnode2\x1ftrue\x1e" "bdrnode3\x1ftrue" },
	  true, false, false, 0, true, MB(8), 2, "", false },
	{ "lone node: nothing comes in, lag 0",
	  { "bdrnode1", "r", "t", "f", "0", "0", NULL, NULL, NULL, NULL },
	  true, false, true, 0, false, 0, 0, "", false },
	{ "read-only (node_read_only, recovery or default_transaction_read_only)",
	  { "bdrnode1", "r", "t", "t", "0", "0", NULL, NULL, NULL, NULL },
	  true, true, true, 0, false, 0, 0, "", false },
	{ "joining",
	  { "bdrnode1", "i", "t", "f", "0", "0", NULL, NULL, NULL, NULL },
	  false, false, true, 0, false, 0, 0, "node is joining: copying initial data (status i)", false },
	{ "not active in this database",
	  { "bdrnode1", "r", "f", "f", "0", "0", NULL, NULL, NULL, NULL },
	  false, false, true, 0, false, 0, 0, "BDR is not active in this database", false },
	{ "one of two peers not streaming, its slot's lag unknown",
	  { "bdrnode1", "r", "t", "f", "2", "1", "bdrnode2",
	    "bdrnode1>bdrnode2\x1f\x1e" "bdrnode1>bdrnode3\x1f" "0",
	    "bdrnode2>bdrnode1\x1e" "bdrnode3>bdrnode1",
	    "bdrnode2\x1f" "false\x1f" "false\x1e" "bdrnode3\x1f" "true\x1f" "false" },
	  true, false, false, 0, true, 0, 2, "1 of 2 peers not replicating: bdrnode2", false },
	{ "no peer streaming: isolated (dead peers, cut off, or parted by them)",
	  { "bdrnode3", "r", "t", "f", "2", "2", "bdrnode1, bdrnode2",
	    "bdrnode3>bdrnode1\x1f\x1e" "bdrnode3>bdrnode2\x1f",
	    "bdrnode1>bdrnode3\x1e" "bdrnode2>bdrnode3",
	    "bdrnode1\x1f" "false\x1f" "false\x1e" "bdrnode2\x1f" "false\x1f" "false" },
	  true, false, false, 0, false, 0, 2,
	  "no peer replicating with this node: bdrnode1, bdrnode2", true },
	{ "a parted peer: its slot gone, not an incoming stream",
	  { "bdrnode1", "r", "t", "f", "1", "0", NULL, "bdrnode1>bdrnode2\x1f" "0",
	    "bdrnode2>bdrnode1", "bdrnode2\x1f" "true\x1f" "false\x1e"
	    "bdrnode3\x1f" "false\x1f" "true" },
	  true, false, false, 0, true, 0, 1, "", false },
};

static void test_bdr_rows(void **state)
{
	struct conn_caps caps = { .flavor = FLAVOR_BDR, .server_version = 90400 };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bdr_cases); i++) {
		const struct bdr_case *c = &bdr_cases[i];
		struct node_facts f;
		const char *reason;

		parse_row(&probe_bdr_ops, &caps, BDR_COLS, c->row, &f);
		reason = !f.healthy ? f.problem : f.impaired ? f.impairment : "";
		if (f.healthy != c->healthy || f.read_only != c->read_only ||
		    f.lag_bytes_known != c->lag_known || f.lag_bytes != c->lag ||
		    f.out_lag_bytes_known != c->out_known || f.out_lag_bytes != c->out_lag ||
		    f.n_incoming != c->n_incoming || strcmp(reason, c->reason) != 0 ||
		    f.isolated != c->isolated)
			fail_msg("%s: healthy %d ro %d lag %d/%lld out %d/%lld in %d iso %d \"%s\"",
				 c->name, f.healthy, f.read_only, f.lag_bytes_known,
				 (long long)f.lag_bytes, f.out_lag_bytes_known,
				 (long long)f.out_lag_bytes, f.n_incoming, f.isolated, reason);
	}
}

/* ==== PGD: bdr.local_node_summary.peer_state_name / peer_target_state_name ==== */

struct pgd_state_case {
	const char *state;
	const char *target;
	bool healthy;
	bool read_only;
	const char *problem;
};

static const struct pgd_state_case pgd_state_cases[] = {
	{ "ACTIVE", "ACTIVE", true, false, "" },
	{ "BDR_PEER_STATE_ACTIVE", "", true, false, "" },
	{ "STANDBY", "STANDBY", true, true, "" },
	{ "STANDBY", "ACTIVE", false, false, "joining: STANDBY" },
	{ "JOINING", "ACTIVE", false, false, "joining: JOINING" },
	{ "CATCHUP", "ACTIVE", false, false, "joining: CATCHUP" },
	{ "PROMOTING", "ACTIVE", false, false, "joining: PROMOTING" },
	{ "CREATED", "ACTIVE", false, false, "not joined to a PGD group: CREATED" },
	{ "PART_START", "PARTED", false, false, "parting: PART_START" },
	{ "PARTED", "PARTED", false, false, "parted from the PGD group: PARTED" },
	{ "", "", false, false, "PGD node state unknown" },
};

static void test_judge_local_state(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(pgd_state_cases); i++) {
		const struct pgd_state_case *c = &pgd_state_cases[i];
		struct node_facts f = { .healthy = true };

		judge_local_state(c->state, c->target, &f);
		if (f.healthy != c->healthy || f.read_only != c->read_only ||
		    strcmp(f.problem, c->problem) != 0)
			fail_msg("%s/%s: healthy %d ro %d \"%s\"", c->state, c->target, f.healthy,
				 f.read_only, f.problem);
	}
}

/* ==== PGD: node kind (PGD 5 node_kind_name; 3.7/4 the group's node_group_type) ==== */

struct pgd_kind_case {
	const char *kind;
	bool healthy;
	bool read_only;
	const char *problem;
};

static const struct pgd_kind_case pgd_kind_cases[] = {
	{ "data", true, false, "" },
	{ "", true, false, "" },                 /* 3.7/4 in a global or data group */
	{ "subscriber-only", true, true, "" },   /* never writable, never elected */
	{ "standby", true, false, "" },          /* judged by its join state */
	{ "witness", false, false, "witness node: it stores no data and takes no traffic" },
};

static void test_judge_node_kind(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(pgd_kind_cases); i++) {
		const struct pgd_kind_case *c = &pgd_kind_cases[i];
		struct node_facts f = { .healthy = true };

		judge_node_kind(c->kind, &f);
		if (f.healthy != c->healthy || f.read_only != c->read_only ||
		    strcmp(f.problem, c->problem) != 0)
			fail_msg("%s: healthy %d ro %d \"%s\"", c->kind, f.healthy, f.read_only,
				 f.problem);
	}
}

/* ==== pglogical: show_subscription_status() and pglogical_output slots ==== */

/*
 * Columns: local node, subs, failed, down, replicating, slots, idle
 * slots, outgoing, incoming, read-only, peer list, tables syncing.
 */
#define PGL_COLS 13
struct pgl_case {
	const char *name;
	const char *row[PGL_COLS];
	bool healthy;
	bool lag_known;
	bool out_known;
	int64_t out_lag;
	const char *reason;
};

static const struct pgl_case pgl_cases[] = {
	{ "provider only: nothing comes in, lag 0; its subscriber's slot is outgoing",
	  { "provider", "0", NULL, NULL, "0", "1", NULL,
	    "pgl_app_provider_sub1\x1f" "33554432", NULL, "f", NULL, "0" },
	  true, true, true, MB(32), "" },
	{ "subscriber alone: its own lag is its provider's to tell",
	  { "subscriber", "1", NULL, NULL, "1", "0", NULL, NULL, "pgl_app_provider_sub1", "f",
	    "provider\x1ftrue", "0" },
	  true, false, false, 0, "" },
	{ "table being resynchronized: not ready for reads",
	  { "subscriber", "1", NULL, NULL, "1", "0", NULL, NULL, "pgl_app_provider_sub1", "f",
	    "provider\x1ftrue", "2" },
	  false, false, false, 0, "synchronizing 2 table(s): not ready for reads" },
	{ "subscription initializing",
	  { "subscriber", "1", "sub1 is initializing", NULL, "0", "0", NULL, NULL,
	    "pgl_app_provider_sub1", "f", "provider\x1f" "false", "0" },
	  false, false, false, 0, "subscription sub1 is initializing" },
};

static void test_pglogical_rows(void **state)
{
	struct conn_caps caps = { .flavor = FLAVOR_PGLOGICAL, .server_version = 150000 };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(pgl_cases); i++) {
		const struct pgl_case *c = &pgl_cases[i];
		struct node_facts f;
		const char *reason;

		parse_row(&probe_pglogical_ops, &caps, PGL_COLS, c->row, &f);
		reason = !f.healthy ? f.problem : f.impaired ? f.impairment : "";
		if (f.healthy != c->healthy || f.lag_bytes_known != c->lag_known ||
		    (c->lag_known && f.lag_bytes != 0) || f.out_lag_bytes_known != c->out_known ||
		    f.out_lag_bytes != c->out_lag || strcmp(reason, c->reason) != 0)
			fail_msg("%s: healthy %d lag %d/%lld out %d/%lld \"%s\"", c->name, f.healthy,
				 f.lag_bytes_known, (long long)f.lag_bytes, f.out_lag_bytes_known,
				 (long long)f.out_lag_bytes, reason);
	}
}

/* ==== central mode: a node's lag from its peers' slots for it ==== */

static struct node_facts peer_with(const char *to, bool known, int64_t lag)
{
	struct node_facts f = { .outcome = PROBE_OK, .n_outgoing = 1 };

	snprintf(f.outgoing[0].to, sizeof(f.outgoing[0].to), "%s", to);
	f.outgoing[0].lag_known = known;
	f.outgoing[0].lag_bytes = lag;
	return f;
}

struct central_case {
	const char *name;
	int n_incoming;
	const char *incoming[2];
	int n_peers;
	struct node_facts peers[2];
	bool want_set;
	int64_t want_lag;
};

static void test_lag_from_peers(void **state)
{
	const struct central_case cases[] = {
		{ "one provider, 32MB behind", 1, { "n1>n2" }, 1,
		  { peer_with("n1>n2", true, MB(32)) }, true, MB(32) },
		{ "the worst of two providers", 2, { "n1>n2", "n3>n2" }, 2,
		  { peer_with("n1>n2", true, MB(1)), peer_with("n3>n2", true, MB(5)) }, true, MB(5) },
		{ "a provider not watched: unknown", 2, { "n1>n2", "n3>n2" }, 1,
		  { peer_with("n1>n2", true, MB(1)) }, false, 0 },
		{ "a provider's slot lag unknown: unknown", 1, { "n1>n2" }, 1,
		  { peer_with("n1>n2", false, 0) }, false, 0 },
		{ "another receiver's slot is not ours", 1, { "n1>n2" }, 1,
		  { peer_with("n1>n3", true, MB(9)) }, false, 0 },
		{ "nothing comes in: the probe's own figure stays", 0, { NULL }, 1,
		  { peer_with("n2>n1", true, MB(9)) }, false, 0 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct central_case *c = &cases[i];
		struct node_facts f = { .outcome = PROBE_OK, .n_incoming = c->n_incoming };
		struct peer_view *views[2] = { peer_view_new(&c->peers[0]),
					       peer_view_new(&c->peers[1]) };
		const struct peer_view *peers[2] = { views[0], views[1] };
		bool set;

		assert_non_null(views[0]);
		assert_non_null(views[1]);
		for (int k = 0; k < c->n_incoming; k++)
			snprintf(f.incoming[k], STREAM_KEY_MAX, "%s", c->incoming[k]);
		set = lag_from_peers(&f, peers, c->n_peers);
		peer_view_free(views[0]);
		peer_view_free(views[1]);
		if (set != c->want_set || f.lag_bytes_known != c->want_set ||
		    (set && f.lag_bytes != c->want_lag))
			fail_msg("%s: set %d known %d lag %lld", c->name, set, f.lag_bytes_known,
				 (long long)f.lag_bytes);
	}
}

/* What a node keeps of a round for the others: exactly what it found, or nothing. */
static void test_peer_view(void **state)
{
	struct node_facts full = { .outcome = PROBE_OK, .healthy = true, .n_peers = MAX_PEERS,
				   .n_outgoing = MAX_PEERS };
	struct node_facts failed = full;
	struct node_facts bogus = { .outcome = PROBE_OK, .n_peers = -3, .n_outgoing = 1000 };
	struct peer_view *v;

	(void)state;
	snprintf(full.catalog_name, sizeof(full.catalog_name), "n1");
	for (int i = 0; i < MAX_PEERS; i++) {
		snprintf(full.peers[i].name, NODE_NAME_MAX, "p%d", i);
		full.peers[i].parted = i % 2;
		snprintf(full.outgoing[i].to, STREAM_KEY_MAX, "n1>p%d", i);
		full.outgoing[i].lag_known = true;
		full.outgoing[i].lag_bytes = i * 1000;
	}
	v = peer_view_new(&full);
	assert_non_null(v);
	assert_true(v->probed_ok && v->healthy);
	assert_string_equal(v->catalog_name, "n1");
	assert_int_equal(v->n_peers, MAX_PEERS);
	assert_int_equal(v->n_outgoing, MAX_PEERS);
	for (int i = 0; i < MAX_PEERS; i++) {
		assert_memory_equal(&v->peers[i], &full.peers[i], sizeof(full.peers[i]));
		assert_memory_equal(&v->outgoing[i], &full.outgoing[i], sizeof(full.outgoing[i]));
	}
	peer_view_free(v);

	/* a failed round vouches for nothing, whatever its arrays hold */
	failed.outcome = PROBE_QUERY_TIMEOUT;
	v = peer_view_new(&failed);
	assert_non_null(v);
	assert_false(v->probed_ok);
	assert_int_equal(v->n_peers, 0);
	assert_int_equal(v->n_outgoing, 0);
	peer_view_free(v);

	/* counts out of range are clamped, never trusted */
	v = peer_view_new(&bogus);
	assert_non_null(v);
	assert_int_equal(v->n_peers, 0);
	assert_int_equal(v->n_outgoing, MAX_PEERS);
	peer_view_free(v);
}

/* ==== central mode: a part recorded only in the peers' catalogs ==== */

struct member {
	const char *name;
	bool parted;
};

/* A node's facts as its probe leaves them: its name and its peer list. */
static struct node_facts node_seeing(const char *self, bool healthy, int n,
				     const struct member *peers)
{
	struct node_facts f = { .outcome = PROBE_OK, .healthy = healthy, .n_peers = n };

	snprintf(f.catalog_name, sizeof(f.catalog_name), "%s", self);
	for (int i = 0; i < n; i++) {
		snprintf(f.peers[i].name, sizeof(f.peers[i].name), "%s", peers[i].name);
		f.peers[i].up = !peers[i].parted;
		f.peers[i].parted = peers[i].parted;
	}
	return f;
}

static void test_parted_by_peers(void **state)
{
	static const struct member n3_sees[] = { { "n1", false }, { "n2", false } };
	static const struct member k[] = { { "n2", false }, { "n3", true } };
	static const struct member r[] = { { "n2", false }, { "n3", false } };
	static const struct member twice[] = { { "n3", true }, { "n3", false } };
	static const struct member other[] = { { "n2", false }, { "n4", true } };
	struct node_facts n1_k = node_seeing("n1", true, 2, k);
	struct node_facts n1_r = node_seeing("n1", true, 2, r);
	struct node_facts n1_k_unhealthy = node_seeing("n1", false, 2, k);
	struct node_facts n1_k_failed = node_seeing("n1", true, 2, k);
	struct node_facts n1_twice = node_seeing("n1", true, 2, twice);
	struct node_facts n1_other = node_seeing("n1", true, 2, other);
	struct node_facts n5_k = node_seeing("n5", true, 2, k);
	const struct {
		const char *name;
		const struct node_facts *peer;
		bool self_healthy;
		bool want;
	} cases[] = {
		{ "a healthy peer records the part", &n1_k, true, true },
		{ "the peer still has it as a member", &n1_r, true, false },
		{ "a peer not healthy itself cannot vouch", &n1_k_unhealthy, true, false },
		{ "a peer whose probe failed cannot vouch", &n1_k_failed, true, false },
		{ "parted and member under one name: not parted", &n1_twice, true, false },
		{ "another node parted", &n1_other, true, false },
		{ "a node this one does not list as a peer", &n5_k, true, false },
		{ "already unhealthy: the earlier problem stays", &n1_k, false, false },
	};

	(void)state;
	n1_k_failed.outcome = PROBE_QUERY_FAILED;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct node_facts f = node_seeing("n3", cases[i].self_healthy, 2, n3_sees);
		struct peer_view *view = peer_view_new(cases[i].peer);
		const struct peer_view *peers[1] = { view };
		bool set;

		assert_non_null(view);
		set = parted_by_peers(&f, peers, 1);
		peer_view_free(view);

		if (set != cases[i].want || f.healthy != (cases[i].self_healthy && !set) ||
		    (set && strcmp(f.problem, "node parted from the group, as n1's catalog records")))
			fail_msg("%s: set %d healthy %d \"%s\"", cases[i].name, set, f.healthy,
				 f.problem);
	}
}

/* The BDR probe's peer list: up, and parted ('k') from the third field. */
static void test_bdr_peer_list(void **state)
{
	static const char *const row[BDR_COLS] = {
		"bdrnode1", "r", "t", "f", "1", "0", NULL, "bdrnode1>bdrnode2\x1f" "0",
		"bdrnode2>bdrnode1",
		"bdrnode2\x1f" "true\x1f" "false\x1e" "bdrnode3\x1f" "false\x1f" "true\x1e"
		"bdrnode4\x1f" "false"
	};
	struct conn_caps caps = { .flavor = FLAVOR_BDR, .server_version = 90400 };
	struct node_facts f;

	(void)state;
	parse_row(&probe_bdr_ops, &caps, BDR_COLS, row, &f);
	assert_int_equal(f.n_peers, 3);
	assert_string_equal(f.peers[0].name, "bdrnode2");
	assert_true(f.peers[0].up && !f.peers[0].parted);
	assert_string_equal(f.peers[1].name, "bdrnode3");
	assert_true(!f.peers[1].up && f.peers[1].parted);
	/* two fields only (other flavors): never parted */
	assert_string_equal(f.peers[2].name, "bdrnode4");
	assert_true(!f.peers[2].up && !f.peers[2].parted);
}

/* ==== physical split brain: two primaries, told apart by timeline ==== */

#define PRIMARY(n, tl) { .name = n, .flavor = FLAVOR_PHYSICAL, .state = STATE_READY, \
			 .weight = 100, .timeline = (tl) }

static void test_split_brain(void **state)
{
	static const struct node_status old_tl1 = PRIMARY("pg1", 1);
	static const struct node_status new_tl2 = PRIMARY("pg2", 2);
	static const struct node_status other_tl1 = PRIMARY("pg2", 1);
	static const struct node_status unknown = PRIMARY("pg2", 0);
	static const struct node_status standby = { .name = "pg3", .flavor = FLAVOR_PHYSICAL,
						    .state = STATE_READY, .read_only = true };
	static const struct node_status down = { .name = "pg4", .flavor = FLAVOR_PHYSICAL,
						 .state = STATE_DOWN, .timeline = 3 };
	const struct {
		const char *name;
		const struct node_status *self;
		const struct node_status *other;
		bool blocked;
		const char *reason;
	} cases[] = {
		{ "stale primary on the older timeline", &old_tl1, &new_tl2, true,
		  "split brain: pg1 and pg2 are both primaries; pg2 is on the newer timeline 2"
		  " (this one: 1), so this one takes no writes" },
		{ "promoted primary on the newer timeline", &new_tl2, &old_tl1, false, "" },
		{ "same timeline: neither", &old_tl1, &other_tl1, true,
		  "split brain: pg1 and pg2 are both primaries and their timelines cannot tell"
		  " the stale one: neither takes writes" },
		{ "timeline unknown: neither", &new_tl2, &unknown, true,
		  "split brain: pg2 and pg2 are both primaries and their timelines cannot tell"
		  " the stale one: neither takes writes" },
		{ "a standby is no second primary", &old_tl1, &standby, false, "" },
		{ "a down primary is no second primary", &old_tl1, &down, false, "" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char reason[REASON_MAX] = "";
		const struct node_status *others[1] = { cases[i].other };
		bool blocked = split_brain_blocks_writes(cases[i].self, others, 1, reason,
							 sizeof(reason));

		if (blocked != cases[i].blocked || strcmp(reason, cases[i].reason) != 0)
			fail_msg("%s: blocked %d \"%s\"", cases[i].name, blocked, reason);
	}
}

/* ==== PGD: the peers' addresses for the per-node lag ==== */

/* The query with every catalog fact on fits the poller's buffer, whole. */
static void test_pgd_query_fits(void **state)
{
	struct conn_caps caps = {
		.flavor = FLAVOR_PGD, .pgd_has_node_kind = true, .pgd_has_decoder_slot = true,
		.pgd_has_raft = true, .pgd_raft_has_group = true, .pgd_has_monitor = true,
		.pgd_has_routing = true, .pgd_peer_dsns = true,
	};
	char buf[PROBE_QUERY_MAX];
	const char *q = probe_pgd_ops.query(&caps, buf, sizeof(buf));

	(void)state;
	assert_true(strlen(q) < sizeof(buf) - 1);
	assert_non_null(strstr(q, "interface_connstr"));
	assert_non_null(strstr(q, "LEFT JOIN l ON true"));
	caps.pgd_peer_dsns = false;
	q = probe_pgd_ops.query(&caps, buf, sizeof(buf));
	assert_null(strstr(q, "interface_connstr"));
}

static void test_pgd_peer_dsns(void **state)
{
	struct conn_caps caps = { .flavor = FLAVOR_PGD, .pgd_has_raft = true,
				  .pgd_peer_dsns = true };
	const char *row[] = {
		"n1", "ACTIVE", "ACTIVE", "data", "f", NULL, NULL, "1", "",
		"n1>n2\x1f" "0", "n2>n1", NULL, NULL, "1", "1", NULL, NULL, NULL, NULL,
		"n2\x1ft", "n2\x1fhost=10.0.0.2 port=5433 dbname=app user=r password=secret",
	};
	struct node_facts f;

	(void)state;
	parse_row(&probe_pgd_ops, &caps, (int)ARRAY_SIZE(row), row, &f);
	assert_true(f.healthy);
	assert_string_equal(f.problem, "");
	assert_int_equal(f.peer_dsns, PEER_DSNS_READ);
	assert_int_equal(f.n_peer_addrs, 1);
	assert_string_equal(f.peer_addrs[0].name, "n2");
	assert_true(f.peer_addrs[0].usable);
	assert_string_equal(f.peer_addrs[0].host, "10.0.0.2");
	assert_string_equal(f.peer_addrs[0].port, "5433");
	assert_string_equal(f.peer_addrs[0].dbname, "app");

	caps.pgd_peer_dsns = false;
	row[20] = NULL;
	parse_row(&probe_pgd_ops, &caps, (int)ARRAY_SIZE(row), row, &f);
	assert_int_equal(f.peer_dsns, PEER_DSNS_HIDDEN);
	assert_int_equal(f.n_peer_addrs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_judge_node_status),
		cmocka_unit_test(test_bdr_rows),
		cmocka_unit_test(test_judge_node_kind),
		cmocka_unit_test(test_judge_local_state),
		cmocka_unit_test(test_pglogical_rows),
		cmocka_unit_test(test_lag_from_peers),
		cmocka_unit_test(test_peer_view),
		cmocka_unit_test(test_parted_by_peers),
		cmocka_unit_test(test_bdr_peer_list),
		cmocka_unit_test(test_split_brain),
		cmocka_unit_test(test_pgd_query_fits),
		cmocka_unit_test(test_pgd_peer_dsns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
