/*
 * Unit tests for the etcd side of the write leader: the [etcd] config
 * section (defaults, endpoints, errors with file:line:key) and the
 * gateway's wire format (request bodies, reply parsing), including
 * hostile replies that must be refused, never trusted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "etcd_proto.h"

static int load(const char *text, struct agent_config *cfg, char *msg, size_t len)
{
	char path[64];
	struct config_error err;
	int fd, rc;

	snprintf(path, sizeof(path), "/tmp/pgbdr-test-etcd-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	memset(&err, 0, sizeof(err));
	rc = config_load(path, cfg, &err);
	config_error_format(&err, msg, len);
	unlink(path);
	return rc;
}

#define NODE "[node.a]\nhost=127.0.0.1\n"

static void test_config_defaults_and_endpoints(void **state)
{
	struct agent_config cfg;
	char msg[512];

	assert_int_equal(load(NODE "[etcd]\nendpoints = http://10.0.0.1:2379, http://[::1]:2380 ,"
			      "http://etcd.example:12379\ncluster = main\n", &cfg, msg, sizeof(msg)), 0);
	assert_true(cfg.etcd.enabled);
	assert_int_equal(cfg.etcd.n_endpoints, 3);
	assert_string_equal(cfg.etcd.endpoint[0].host, "10.0.0.1");
	assert_int_equal(cfg.etcd.endpoint[0].port, 2379);
	assert_string_equal(cfg.etcd.endpoint[1].host, "::1");
	assert_int_equal(cfg.etcd.endpoint[1].port, 2380);
	assert_string_equal(cfg.etcd.endpoint[2].host, "etcd.example");
	assert_string_equal(cfg.etcd.cluster, "main");
	assert_string_equal(cfg.etcd.prefix, "/pgbdr-agent/");
	assert_int_equal(cfg.etcd.ttl_ms, 10000);
	config_free(&cfg);

	assert_int_equal(load(NODE "[etcd]\nendpoints = http://h:1\ncluster = c\nprefix = /x/\n"
			      "ttl = 3s\n", &cfg, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.etcd.prefix, "/x/");
	assert_int_equal(cfg.etcd.ttl_ms, 3000);
	config_free(&cfg);

	assert_int_equal(load(NODE, &cfg, msg, sizeof(msg)), 0);
	assert_false(cfg.etcd.enabled);
	config_free(&cfg);
}

struct bad_case {
	const char *text;
	const char *where;     /* "file:LINE: key 'KEY'" part */
	const char *words;
};

static void test_config_errors_name_line_and_key(void **state)
{
	static const struct bad_case cases[] = {
		{ NODE "[etcd]\ncluster = c\n", ":3: key 'endpoints'", "needs endpoints" },
		{ NODE "[etcd]\nendpoints = http://h:1\n", ":3: key 'cluster'", "needs cluster" },
		{ NODE "[etcd]\nendpoints = https://h:1\ncluster = c\n", ":4: key 'endpoints'",
		  "invalid endpoint" },
		{ NODE "[etcd]\nendpoints = http://h:1,http://h\ncluster = c\n",
		  ":4: key 'endpoints'", "'http://h'" },
		{ NODE "[etcd]\nendpoints = http://h:70000\ncluster = c\n", ":4: key 'endpoints'",
		  "invalid endpoint" },
		{ NODE "[etcd]\nendpoints = http://h:1,\ncluster = c\n", ":4: key 'endpoints'",
		  "invalid endpoint" },
		{ NODE "[etcd]\nendpoints = http://u:pw@h:1\ncluster = c\n", ":4: key 'endpoints'",
		  "invalid endpoint" },
		{ NODE "[etcd]\nendpoints = http://h:1\ncluster = a/b\n", ":5: key 'cluster'",
		  "must not contain" },
		{ NODE "[etcd]\nendpoints = http://h:1\ncluster = c\nttl = 1s\n", ":6: key 'ttl'",
		  "" },
		{ NODE "[etcd]\nendpoints = http://h:1\ncluster = c\nlease = 3s\n", ":6: key 'lease'",
		  "unknown key in [etcd]" },
		{ NODE "[etcd]\ncluster = c\n[etcd]\n", ":5", "duplicate section [etcd]" },
	};
	struct agent_config cfg;
	char msg[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (load(cases[i].text, &cfg, msg, sizeof(msg)) == 0)
			fail_msg("case %zu loaded", i);
		if (!strstr(msg, cases[i].where) || !strstr(msg, cases[i].words))
			fail_msg("case %zu: '%s' lacks '%s' or '%s'", i, msg, cases[i].where,
				 cases[i].words);
		config_free(&cfg);
	}
}

static void test_request_bodies(void **state)
{
	char buf[ETCD_BODY_MAX];

	assert_int_equal(etcd_body_grant(buf, sizeof(buf), 10), 0);
	assert_string_equal(buf, "{\"TTL\": \"10\"}");
	assert_int_equal(etcd_body_lease(buf, sizeof(buf), 7587869837), 0);
	assert_string_equal(buf, "{\"ID\": \"7587869837\"}");
	assert_int_equal(etcd_body_range(buf, sizeof(buf), "/p/c/leader"), 0);
	assert_string_equal(buf, "{\"key\": \"L3AvYy9sZWFkZXI=\"}");
	assert_int_equal(etcd_body_campaign(buf, sizeof(buf), "/p/c/leader", "node1", 42), 0);
	assert_non_null(strstr(buf, "\"target\": \"CREATE\", \"create_revision\": \"0\""));
	assert_non_null(strstr(buf, "\"value\": \"bm9kZTE=\", \"lease\": \"42\""));
	assert_int_equal(etcd_body_grant(buf, 5, 10), -1);
}

#define S(lit) lit, sizeof(lit) - 1

static void test_parse_replies(void **state)
{
	char err[128];
	int64_t lease, ttl;
	bool won;
	struct etcd_kv kv;

	assert_int_equal(etcd_parse_grant(S("{\"header\":{},\"ID\":\"4111120381264841991\","
					    "\"TTL\":\"5\"}\n"), &lease, &ttl, err, sizeof(err)), 0);
	assert_true(lease == INT64_C(4111120381264841991));
	assert_int_equal(ttl, 5);

	assert_int_equal(etcd_parse_keepalive(S("{\"result\":{\"header\":{},\"ID\":\"1\","
						"\"TTL\":\"5\"}}"), &ttl, err, sizeof(err)), 0);
	assert_int_equal(ttl, 5);
	/* a revoked or expired lease: no TTL */
	assert_int_equal(etcd_parse_keepalive(S("{\"result\":{\"header\":{},\"ID\":\"1\"}}"),
					      &ttl, err, sizeof(err)), 0);
	assert_int_equal(ttl, 0);

	assert_int_equal(etcd_parse_range(S("{\"header\":{},\"kvs\":[{\"key\":\"L3AvYy9sZWFkZXI=\","
					    "\"create_revision\":\"2\",\"mod_revision\":\"2\","
					    "\"version\":\"1\",\"value\":\"bm9kZTE=\",\"lease\":\"77\"}],"
					    "\"count\":\"1\"}"), &kv, err, sizeof(err)), 0);
	assert_true(kv.present && kv.valid_name);
	assert_string_equal(kv.value, "node1");
	assert_int_equal(kv.lease, 77);
	assert_int_equal(kv.create_revision, 2);
	assert_int_equal(etcd_parse_range(S("{\"header\":{}}"), &kv, err, sizeof(err)), 0);
	assert_false(kv.present);

	assert_int_equal(etcd_parse_txn(S("{\"header\":{},\"succeeded\":true}"), &won,
					err, sizeof(err)), 0);
	assert_true(won);
	assert_int_equal(etcd_parse_txn(S("{\"header\":{}}"), &won, err, sizeof(err)), 0);
	assert_false(won);
}

/* Replies a broken or hostile gateway might send: all refused. */
static void test_hostile_replies(void **state)
{
	static const char *const bad_range[] = {
		"",
		"{",
		"[]",
		"null",
		"{\"kvs\": 5}",
		"{\"kvs\": [1]}",
		"{\"kvs\": [{\"lease\": {}}]}",
		"{\"kvs\": [{\"lease\": \"12x\"}]}",
		"{\"kvs\": [{\"lease\": \"99999999999999999999999\"}]}",
		"{\"kvs\": [{}, {}]}",
		"{\"error\": \"etcdserver: request timed out\", \"code\": 14}",
		"{\"header\":{}} trailing",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
	};
	char err[128];
	struct etcd_kv kv;
	int64_t lease, ttl;
	bool won;
	char *big;

	for (size_t i = 0; i < sizeof(bad_range) / sizeof(bad_range[0]); i++)
		if (etcd_parse_range(bad_range[i], strlen(bad_range[i]), &kv, err, sizeof(err)) == 0)
			fail_msg("accepted '%s'", bad_range[i]);
	/* the gateway's own error text is passed on, printable and bounded */
	assert_int_equal(etcd_parse_range(S("{\"error\":\"no\\nway\\u0001\"}"), &kv,
					  err, sizeof(err)), -1);
	assert_string_equal(err, "etcd: no?way?");

	/* a value that is not a node name names nobody */
	assert_int_equal(etcd_parse_range(S("{\"kvs\":[{\"value\":\"bm9kZSAx\",\"lease\":\"1\"}]}"),
					  &kv, err, sizeof(err)), 0);
	assert_true(kv.present && !kv.valid_name);
	assert_string_equal(kv.value, "");
	assert_int_equal(etcd_parse_range(S("{\"kvs\":[{\"value\":\"!!!!\",\"lease\":\"1\"}]}"),
					  &kv, err, sizeof(err)), 0);
	assert_false(kv.valid_name);

	assert_int_equal(etcd_parse_grant(S("{\"ID\":\"0\",\"TTL\":\"5\"}"), &lease, &ttl,
					  err, sizeof(err)), -1);
	assert_int_equal(etcd_parse_grant(S("{\"ID\":\"3\"}"), &lease, &ttl, err, sizeof(err)), -1);
	assert_int_equal(etcd_parse_keepalive(S("{\"ID\":\"3\"}"), &ttl, err, sizeof(err)), -1);
	assert_int_equal(etcd_parse_txn(S("{\"header\":{},\"succeeded\":\"yes\"}"), &won,
					err, sizeof(err)), -1);
	assert_false(won);
	assert_int_equal(etcd_parse_txn(S("{\"succeeded\":true}"), &won, err, sizeof(err)), -1);

	big = malloc(ETCD_REPLY_MAX + 2);
	assert_non_null(big);
	memset(big, ' ', ETCD_REPLY_MAX + 1);
	big[0] = '{';
	big[ETCD_REPLY_MAX] = '}';
	assert_int_equal(etcd_parse_ok(big, ETCD_REPLY_MAX + 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_and_endpoints),
		cmocka_unit_test(test_config_errors_name_line_and_key),
		cmocka_unit_test(test_request_bodies),
		cmocka_unit_test(test_parse_replies),
		cmocka_unit_test(test_hostile_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
