/*
 * Unit tests for agent/peer_dsn.c and the probe's peer-DSN column: a
 * catalog DSN gives the peer's address and nothing else (no user, no
 * password, no sslmode); socket paths, garbage and oversized values
 * make the peer unusable rather than reaching this node.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "peer_dsn.h"
#include "probe.h"

static struct peer_address filter(const char *dsn)
{
	struct peer_address a;

	memset(&a, 0x5a, sizeof(a));
	snprintf(a.name, sizeof(a.name), "peer");
	peer_dsn_filter(dsn, &a);
	return a;
}

/* No byte of the secret anywhere in the result. */
static void assert_no_secret(const struct peer_address *a, const char *secret)
{
	assert_null(memmem(a, sizeof(*a), secret, strlen(secret)));
}

static void test_keyword_dsn(void **state)
{
	struct peer_address a = filter("host=db2.example port=5433 dbname=app user=repl"
				       " password=s3cret-pw sslmode=disable application_name=x");

	(void)state;
	assert_true(a.usable);
	assert_string_equal(a.name, "peer");
	assert_string_equal(a.host, "db2.example");
	assert_string_equal(a.port, "5433");
	assert_string_equal(a.dbname, "app");
	assert_string_equal(a.hostaddr, "");
	assert_no_secret(&a, "s3cret-pw");
	assert_no_secret(&a, "repl");
}

static void test_uri_dsn(void **state)
{
	struct peer_address a = filter("postgresql://repl:s3cret-pw@10.0.0.2:6432/bdrdb?sslmode=require");

	(void)state;
	assert_true(a.usable);
	assert_string_equal(a.host, "10.0.0.2");
	assert_string_equal(a.port, "6432");
	assert_string_equal(a.dbname, "bdrdb");
	assert_no_secret(&a, "s3cret-pw");
}

static void test_hostaddr_and_lists(void **state)
{
	struct peer_address a = filter("hostaddr=10.0.0.3 dbname=app");
	struct peer_address b = filter("host=a.example,b.example port=5432,5433 dbname=app");

	(void)state;
	assert_true(a.usable);
	assert_string_equal(a.hostaddr, "10.0.0.3");
	assert_string_equal(a.host, "");
	assert_true(b.usable);
	assert_string_equal(b.host, "a.example,b.example");
	assert_string_equal(b.port, "5432,5433");
}

/* Anything that would not reach the peer over the network is refused, whole. */
static void test_unusable(void **state)
{
	static const char *const bad[] = {
		"dbname=app",                               /* local socket: this node */
		"host=/var/run/postgresql dbname=app",      /* a path on the peer's host */
		"host=@abstract dbname=app",
		"host=a.example,/tmp dbname=app",
		"host=a.example, dbname=app",
		"host=a.example port=54x2 dbname=app",
		"host=a.example nosuchkeyword=1",           /* does not parse */
		"host='a b' dbname=app",                     /* no address has a space */
		"host=a.example dbname='x\x01y'",
		"",
		"postgresql://",
	};
	char long_host[600];
	struct peer_address a;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a = filter(bad[i]);
		if (a.usable || a.host[0] || a.port[0] || a.dbname[0] || a.hostaddr[0])
			fail_msg("usable or partly kept: \"%s\"", bad[i]);
	}
	memset(long_host, 'h', sizeof(long_host));
	memcpy(long_host, "host=", 5);
	long_host[sizeof(long_host) - 1] = '\0';
	a = filter(long_host);
	assert_false(a.usable);
	a = filter(NULL);
	assert_false(a.usable);
}

/* The probe's column: name, chr(31), DSN, chr(30) between peers. */
static PGresult *one_text_column(const char *value)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attr = { .name = (char *)"c", .typid = 25, .typlen = -1, .atttypmod = -1 };

	assert_true(PQsetResultAttrs(res, 1, &attr));
	assert_true(PQsetvalue(res, 0, 0, (char *)value, value ? (int)strlen(value) : -1));
	return res;
}

static void test_probe_column(void **state)
{
	PGresult *res = one_text_column("node2\x1fhost=10.0.0.2 password=pw1 dbname=bdr\x1e"
					"node3\x1f" "dbname=bdr\x1e" "node4\x1e");
	struct node_facts f;

	(void)state;
	memset(&f, 0, sizeof(f));
	probe_take_peer_dsns(res, 0, true, &f);
	PQclear(res);
	assert_int_equal(f.peer_dsns, PEER_DSNS_READ);
	assert_int_equal(f.n_peer_addrs, 3);
	assert_string_equal(f.peer_addrs[0].name, "node2");
	assert_true(f.peer_addrs[0].usable);
	assert_string_equal(f.peer_addrs[0].host, "10.0.0.2");
	assert_string_equal(f.peer_addrs[1].name, "node3");
	assert_false(f.peer_addrs[1].usable);
	assert_string_equal(f.peer_addrs[2].name, "node4");
	assert_false(f.peer_addrs[2].usable);
	assert_null(memmem(&f, sizeof(f), "pw1", 3));

	res = one_text_column(NULL);
	memset(&f, 0, sizeof(f));
	probe_take_peer_dsns(res, 0, false, &f);
	PQclear(res);
	assert_int_equal(f.peer_dsns, PEER_DSNS_HIDDEN);
	assert_int_equal(f.n_peer_addrs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyword_dsn),
		cmocka_unit_test(test_uri_dsn),
		cmocka_unit_test(test_hostaddr_and_lists),
		cmocka_unit_test(test_unusable),
		cmocka_unit_test(test_probe_column),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
