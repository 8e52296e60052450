/*
 * Unit tests for agent/units.c: every unit, the boundaries of every
 * range, overflow, and the junk that must be refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <cmocka.h>

#include "units.h"

static void assert_size(const char *text, int64_t expected)
{
	int64_t v = -12345;

	if (parse_size(text, &v) != 0)
		fail_msg("parse_size(\"%s\") failed", text);
	if (v != expected)
		fail_msg("parse_size(\"%s\") = %lld, expected %lld", text,
			 (long long)v, (long long)expected);
}

static void assert_bad_size(const char *text)
{
	int64_t v = -12345;

	if (parse_size(text, &v) == 0)
		fail_msg("parse_size(\"%s\") accepted, gave %lld", text, (long long)v);
}

static void test_size_units(void **state)
{
	(void)state;
	assert_size("0", 0);
	assert_size("100", 100);
	assert_size("100B", 100);
	assert_size("100b", 100);
	assert_size("1kB", 1024);
	assert_size("1KB", 1024);
	assert_size("1k", 1024);
	assert_size("1K", 1024);
	assert_size("1KiB", 1024);
	assert_size("16MB", 16 * 1024 * 1024);
	assert_size("16mb", 16 * 1024 * 1024);
	assert_size("16M", 16 * 1024 * 1024);
	assert_size("16MiB", 16 * 1024 * 1024);
	assert_size("2GB", INT64_C(2) << 30);
	assert_size("2G", INT64_C(2) << 30);
	assert_size("2GiB", INT64_C(2) << 30);
	assert_size("3TB", INT64_C(3) << 40);
	assert_size("3T", INT64_C(3) << 40);
	assert_size("3TiB", INT64_C(3) << 40);
}

static void test_size_spacing_and_decimals(void **state)
{
	(void)state;
	assert_size("16 MB", 16 * 1024 * 1024);
	assert_size("16   MB", 16 * 1024 * 1024);
	assert_size(" 16MB ", 16 * 1024 * 1024);
	assert_size("1.5kB", 1536);
	assert_size("1.5GB", INT64_C(3) << 29);
	assert_size("0.5MB", 512 * 1024);
	/* fractions of a byte round to the nearest byte */
	assert_size("1.3kB", 1331);
	assert_size("1.6", 2);
	/* digits past the sixth decimal are ignored, not junk */
	assert_size("1.0000001kB", 1024);
	assert_size("007MB", 7 * 1024 * 1024);
}

static void test_size_limits(void **state)
{
	(void)state;
	assert_size("9223372036854775807", INT64_MAX);
	assert_bad_size("9223372036854775808");
	assert_bad_size("99999999999999999999999");
	assert_size("8388607TB", INT64_C(8388607) << 40);
	assert_bad_size("8388608TB");
	assert_bad_size("9007199254740992kB");
	/* the rounding of the fraction must not overflow either */
	assert_size("8191.9999GB", INT64_C(8191) * (INT64_C(1) << 30) +
		    (INT64_C(9999) * (INT64_C(1) << 30) + 5000) / 10000);
	assert_size("9223372036854775807.4", INT64_MAX);
	assert_bad_size("9223372036854775807.6");
}

static void test_size_junk(void **state)
{
	(void)state;
	assert_bad_size("");
	assert_bad_size("   ");
	assert_bad_size("MB");
	assert_bad_size("-1");
	assert_bad_size("-1MB");
	assert_bad_size("+1MB");
	assert_bad_size("16MBx");
	assert_bad_size("16 M B");
	assert_bad_size("16PB");
	assert_bad_size("16 bytes");
	assert_bad_size("1e3");
	assert_bad_size("0x10");
	assert_bad_size("inf");
	assert_bad_size("nan");
	assert_bad_size(".5MB");
	assert_bad_size("5.MB");
	assert_bad_size("1..5MB");
	assert_bad_size("1,5MB");
	assert_bad_size("16MB 1");
	assert_bad_size("16ms");
}

static void assert_duration(const char *text, int64_t expected)
{
	int64_t v = -12345;

	if (parse_duration_ms(text, &v) != 0)
		fail_msg("parse_duration_ms(\"%s\") failed", text);
	if (v != expected)
		fail_msg("parse_duration_ms(\"%s\") = %lld, expected %lld", text,
			 (long long)v, (long long)expected);
}

static void assert_bad_duration(const char *text)
{
	int64_t v = -12345;

	if (parse_duration_ms(text, &v) == 0)
		fail_msg("parse_duration_ms(\"%s\") accepted, gave %lld", text, (long long)v);
}

static void test_duration_units(void **state)
{
	(void)state;
	assert_duration("500ms", 500);
	assert_duration("500MS", 500);
	assert_duration("0ms", 0);
	assert_duration("1s", 1000);
	assert_duration("1S", 1000);
	assert_duration("2min", 120000);
	assert_duration("2m", 120000);
	assert_duration("2MIN", 120000);
	assert_duration("1h", 3600000);
	assert_duration("1d", 86400000);
	/* a bare number is seconds, as the classic checker's plain numbers */
	assert_duration("3", 3000);
	assert_duration("0", 0);
	assert_duration("1.5", 1500);
}

static void test_duration_decimals_and_spacing(void **state)
{
	(void)state;
	assert_duration("1.5s", 1500);
	assert_duration("0.1s", 100);
	assert_duration("1.5min", 90000);
	assert_duration("0.5h", 1800000);
	assert_duration("2 s", 2000);
	assert_duration(" 250 ms ", 250);
	/* below a millisecond rounds to the nearest one */
	assert_duration("0.0004s", 0);
	assert_duration("0.0005s", 1);
	assert_duration("1.4ms", 1);
}

static void test_duration_limits(void **state)
{
	(void)state;
	assert_duration("9223372036854775807ms", INT64_MAX);
	assert_bad_duration("9223372036854775808ms");
	assert_duration("9223372036854775s", INT64_C(9223372036854775000));
	assert_bad_duration("9223372036854776s");
	assert_duration("106751991167d", INT64_C(106751991167) * 86400000);
	assert_bad_duration("106751991168d");
}

static void test_duration_junk(void **state)
{
	(void)state;
	assert_bad_duration("");
	assert_bad_duration(" ");
	assert_bad_duration("s");
	assert_bad_duration("-1s");
	assert_bad_duration("+1s");
	assert_bad_duration("1x");
	assert_bad_duration("1sec");
	assert_bad_duration("1 s s");
	assert_bad_duration("1ms5");
	assert_bad_duration("1e3ms");
	assert_bad_duration("1.s");
	assert_bad_duration("1MB");
	assert_bad_duration("1us");
}

static void assert_bool(const char *text, bool expected)
{
	bool v = !expected;

	if (parse_bool(text, &v) != 0)
		fail_msg("parse_bool(\"%s\") failed", text);
	if (v != expected)
		fail_msg("parse_bool(\"%s\") gave %d", text, v);
}

static void test_bool(void **state)
{
	bool v = true;

	(void)state;
	assert_bool("yes", true);
	assert_bool("YES", true);
	assert_bool("true", true);
	assert_bool("True", true);
	assert_bool("on", true);
	assert_bool("ON", true);
	assert_bool("1", true);
	assert_bool("no", false);
	assert_bool("No", false);
	assert_bool("false", false);
	assert_bool("FALSE", false);
	assert_bool("off", false);
	assert_bool("Off", false);
	assert_bool("0", false);
	assert_bool(" yes ", true);

	assert_int_equal(parse_bool("", &v), -1);
	assert_int_equal(parse_bool("y", &v), -1);
	assert_int_equal(parse_bool("yess", &v), -1);
	assert_int_equal(parse_bool("2", &v), -1);
	assert_int_equal(parse_bool("on off", &v), -1);
	assert_int_equal(parse_bool("enable", &v), -1);
	assert_true(v); /* untouched on failure */
}

static void test_long(void **state)
{
	long v = 0;

	(void)state;
	assert_int_equal(parse_long("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_long("0", 0, 100, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_long("100", 0, 100, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(parse_long("-5", -10, 10, &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(parse_long(" 7 ", 0, 10, &v), 0);
	assert_int_equal(v, 7);

	v = 99;
	assert_int_equal(parse_long("101", 0, 100, &v), -1);
	assert_int_equal(parse_long("-1", 0, 100, &v), -1);
	assert_int_equal(parse_long("", 0, 100, &v), -1);
	assert_int_equal(parse_long("  ", 0, 100, &v), -1);
	assert_int_equal(parse_long("12abc", 0, 100, &v), -1);
	assert_int_equal(parse_long("abc", 0, 100, &v), -1);
	assert_int_equal(parse_long("1.5", 0, 100, &v), -1);
	assert_int_equal(parse_long("1 2", 0, 100, &v), -1);
	assert_int_equal(parse_long("99999999999999999999", LONG_MIN, LONG_MAX, &v), -1);
	assert_int_equal(parse_long("-99999999999999999999", LONG_MIN, LONG_MAX, &v), -1);
	assert_int_equal(v, 99);
	assert_int_equal(parse_long("9223372036854775807", LONG_MIN, LONG_MAX, &v), 0);
	assert_true(v == LONG_MAX);
}

static void assert_format_size(int64_t bytes, const char *expected)
{
	char buf[32];

	format_size(bytes, buf, sizeof(buf));
	if (strcmp(buf, expected) != 0)
		fail_msg("format_size(%lld) = \"%s\", expected \"%s\"",
			 (long long)bytes, buf, expected);
}

static void test_format_size(void **state)
{
	char small[4];

	(void)state;
	assert_format_size(0, "0B");
	assert_format_size(100, "100B");
	assert_format_size(1023, "1023B");
	assert_format_size(1024, "1kB");
	assert_format_size(1536, "1.5kB");
	assert_format_size(83886080, "80MB");
	assert_format_size(INT64_C(3) << 29, "1.5GB");
	assert_format_size(INT64_C(1) << 40, "1TB");
	assert_format_size(INT64_C(1024) << 40, "1024TB");
	assert_format_size(INT64_MAX, "8388608TB");
	assert_format_size(-1536, "-1.5kB");
	assert_format_size(INT64_MIN, "-8388608TB");
	/* not round: rounded to a tenth of the largest unit */
	assert_format_size(83886081, "80MB");
	assert_format_size(1025, "1kB");
	assert_format_size(1100, "1.1kB");
	assert_format_size(64 * 1024 * 1024 + 6 * 1024 * 1024, "70MB");
	assert_format_size(67 * 1024 * 1024 + 512 * 1024, "67.5MB");
	/* a unit is used only from one whole of it */
	assert_format_size(1024 * 1024 - 1, "1024kB");

	format_size(83886080, small, sizeof(small));
	assert_string_equal(small, "80M");
}

static void test_format_size_round_trip(void **state)
{
	static const int64_t values[] = {
		0, 1, 512, 1024, 1536, 16 * 1024 * 1024, INT64_C(5) << 39,
		INT64_C(7) << 40,
	};
	char buf[32];
	int64_t back;

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		format_size(values[i], buf, sizeof(buf));
		assert_int_equal(parse_size(buf, &back), 0);
		assert_true(back == values[i]);
	}
}

static void assert_format_duration(int64_t ms, const char *expected)
{
	char buf[32];

	format_duration_ms(ms, buf, sizeof(buf));
	if (strcmp(buf, expected) != 0)
		fail_msg("format_duration_ms(%lld) = \"%s\", expected \"%s\"",
			 (long long)ms, buf, expected);
}

static void test_format_duration(void **state)
{
	int64_t back;
	char buf[32];

	(void)state;
	assert_format_duration(0, "0ms");
	assert_format_duration(100, "100ms");
	assert_format_duration(999, "999ms");
	assert_format_duration(1000, "1s");
	assert_format_duration(1500, "1.5s");
	assert_format_duration(60000, "1min");
	assert_format_duration(90000, "1.5min");
	assert_format_duration(3600000, "1h");
	assert_format_duration(86400000, "1d");
	assert_format_duration(365 * INT64_C(86400000), "365d");

	format_duration_ms(90000, buf, sizeof(buf));
	assert_int_equal(parse_duration_ms(buf, &back), 0);
	assert_true(back == 90000);
}

static void assert_listen(const char *text, const char *host, int port)
{
	struct listen_addr a;

	if (parse_listen_addr(text, &a) != 0)
		fail_msg("parse_listen_addr(\"%s\") failed", text);
	assert_true(a.enabled);
	assert_string_equal(a.host, host);
	assert_int_equal(a.port, port);
}

static void assert_bad_listen(const char *text)
{
	struct listen_addr a;

	if (parse_listen_addr(text, &a) == 0)
		fail_msg("parse_listen_addr(\"%s\") accepted", text);
	assert_false(a.enabled);
}

static void test_listen_addr(void **state)
{
	struct listen_addr a;
	char long_host[300];

	(void)state;
	assert_listen("0.0.0.0:9200", "0.0.0.0", 9200);
	assert_listen("127.0.0.1:1", "127.0.0.1", 1);
	assert_listen("[::1]:9201", "::1", 9201);
	assert_listen("[::]:65535", "::", 65535);
	assert_listen("[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", 80);
	assert_listen("*:9200", "", 9200);
	assert_listen(":9200", "", 9200);
	assert_listen("9200", "", 9200);
	assert_listen("localhost:9200", "localhost", 9200);
	assert_listen("db-1.example.com:9202", "db-1.example.com", 9202);

	memset(&a, 0x55, sizeof(a));
	assert_int_equal(parse_listen_addr("", &a), 0);
	assert_false(a.enabled);
	assert_int_equal(a.port, 0);
	assert_int_equal(parse_listen_addr("off", &a), 0);
	assert_false(a.enabled);
	assert_int_equal(parse_listen_addr("OFF", &a), 0);
	assert_false(a.enabled);

	assert_bad_listen("localhost");
	assert_bad_listen("localhost:");
	assert_bad_listen("localhost:0");
	assert_bad_listen("localhost:65536");
	assert_bad_listen("localhost:99999999999");
	assert_bad_listen("localhost:-1");
	assert_bad_listen("localhost:+80");
	assert_bad_listen("localhost:80x");
	assert_bad_listen("localhost: 80");
	assert_bad_listen(":abc");
	assert_bad_listen("0");
	assert_bad_listen("65536");
	assert_bad_listen("::1:9200");
	assert_bad_listen("[::1]");
	assert_bad_listen("[::1]9200");
	assert_bad_listen("[::1:9200");
	assert_bad_listen("[]:9200");
	assert_bad_listen("[10.0.0.1]:9200");
	assert_bad_listen("[zz::1]:9200");
	assert_bad_listen("bad host:9200");
	assert_bad_listen("host/x:9200");
	assert_bad_listen("**:9200");

	memset(long_host, 'a', sizeof(long_host));
	snprintf(long_host + 280, 20, ":9200");
	assert_bad_listen(long_host);
}

static struct sockaddr_in v4(const char *text)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, text, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6 v6(const char *text)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
	return sin6;
}

static bool allows4(const struct cidr_list *list, const char *addr)
{
	struct sockaddr_in sin = v4(addr);

	return cidr_list_allows(list, (const struct sockaddr *)&sin);
}

static bool allows6(const struct cidr_list *list, const char *addr)
{
	struct sockaddr_in6 sin6 = v6(addr);

	return cidr_list_allows(list, (const struct sockaddr *)&sin6);
}

static void test_cidr_parse(void **state)
{
	struct cidr_list list;

	(void)state;
	assert_int_equal(cidr_list_parse("10.0.0.0/8, 192.168.1.7 ::1,2001:db8::/32", &list), 0);
	assert_int_equal(list.count, 4);
	assert_int_equal(list.items[0].family, AF_INET);
	assert_int_equal(list.items[0].prefix, 8);
	assert_int_equal(list.items[1].family, AF_INET);
	assert_int_equal(list.items[1].prefix, 32);
	assert_int_equal(list.items[2].family, AF_INET6);
	assert_int_equal(list.items[2].prefix, 128);
	assert_int_equal(list.items[3].family, AF_INET6);
	assert_int_equal(list.items[3].prefix, 32);
	cidr_list_free(&list);
	assert_null(list.items);
	assert_int_equal(list.count, 0);

	assert_int_equal(cidr_list_parse("", &list), 0);
	assert_int_equal(list.count, 0);
	assert_int_equal(cidr_list_parse(" , ,\t", &list), 0);
	assert_int_equal(list.count, 0);

	/* many entries, to grow the array */
	assert_int_equal(cidr_list_parse("1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 5.5.5.5,"
					 "6.6.6.6,7.7.7.7,8.8.8.8,9.9.9.9", &list), 0);
	assert_int_equal(list.count, 9);
	assert_true(allows4(&list, "9.9.9.9"));
	cidr_list_free(&list);

	/* boundary prefixes */
	assert_int_equal(cidr_list_parse("0.0.0.0/0 ::/0 1.2.3.4/32 ::1/128", &list), 0);
	assert_int_equal(list.count, 4);
	cidr_list_free(&list);
}

static void test_cidr_parse_bad(void **state)
{
	static const char *const bad[] = {
		"10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/a",
		"10.0.0.0/8x", "10.0.0.0/0008", "10.1/8", "10.0.0.256", "1.2.3.4.5",
		"localhost", "10.0.0.0/8/8", "::1::2", "gggg::1", "10.0.0.0/8, junk",
		"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128/extra-long-junk",
		"10.0.0.0 /8",
	};
	struct cidr_list list;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		list.items = (struct cidr *)&list; /* must be reset, not freed */
		list.count = 7;
		if (cidr_list_parse(bad[i], &list) == 0)
			fail_msg("cidr_list_parse(\"%s\") accepted", bad[i]);
		assert_null(list.items);
		assert_int_equal(list.count, 0);
	}
}

static void test_cidr_allows_v4(void **state)
{
	struct cidr_list list;

	(void)state;
	assert_int_equal(cidr_list_parse("10.0.0.0/9, 192.168.1.7", &list), 0);
	assert_true(allows4(&list, "10.0.0.1"));
	assert_true(allows4(&list, "10.127.255.255"));
	assert_false(allows4(&list, "10.128.0.0"));
	assert_false(allows4(&list, "11.0.0.1"));
	assert_true(allows4(&list, "192.168.1.7"));
	assert_false(allows4(&list, "192.168.1.8"));
	/* IPv4 clients of a dual-stack socket */
	assert_true(allows6(&list, "::ffff:10.1.2.3"));
	assert_true(allows6(&list, "::ffff:192.168.1.7"));
	assert_false(allows6(&list, "::ffff:10.200.0.1"));
	/* not mapped: ::a01:203 is not 10.1.2.3 */
	assert_false(allows6(&list, "::10.1.2.3"));
	assert_false(allows6(&list, "::1"));
	cidr_list_free(&list);

	/* host bits past the prefix are ignored */
	assert_int_equal(cidr_list_parse("10.1.2.3/8", &list), 0);
	assert_true(allows4(&list, "10.200.0.1"));
	cidr_list_free(&list);
}

static void test_cidr_allows_v6(void **state)
{
	struct cidr_list list;

	(void)state;
	assert_int_equal(cidr_list_parse("2001:db8::/33 ::1", &list), 0);
	assert_true(allows6(&list, "2001:db8::1"));
	assert_true(allows6(&list, "2001:db8:7fff::1"));
	assert_false(allows6(&list, "2001:db8:8000::1"));
	assert_true(allows6(&list, "::1"));
	assert_false(allows6(&list, "::2"));
	assert_false(allows4(&list, "127.0.0.1"));
	cidr_list_free(&list);

	/* an IPv6 entry for the mapped range also covers IPv4 clients */
	assert_int_equal(cidr_list_parse("::ffff:10.0.0.0/104", &list), 0);
	assert_true(allows4(&list, "10.9.9.9"));
	assert_false(allows4(&list, "11.9.9.9"));
	cidr_list_free(&list);

	assert_int_equal(cidr_list_parse("0.0.0.0/0", &list), 0);
	assert_true(allows4(&list, "203.0.113.9"));
	assert_true(allows6(&list, "::ffff:203.0.113.9"));
	assert_false(allows6(&list, "2001:db8::1"));
	cidr_list_free(&list);

	assert_int_equal(cidr_list_parse("::/0", &list), 0);
	assert_true(allows6(&list, "2001:db8::1"));
	assert_true(allows4(&list, "203.0.113.9"));
	cidr_list_free(&list);
}

static void test_cidr_empty_and_other_families(void **state)
{
	struct cidr_list empty = { NULL, 0 };
	struct cidr_list list;
	struct sockaddr_un sun;

	(void)state;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;

	assert_true(allows4(&empty, "203.0.113.9"));
	assert_true(allows6(&empty, "2001:db8::1"));
	assert_true(cidr_list_allows(&empty, (const struct sockaddr *)&sun));
	assert_true(cidr_list_allows(NULL, (const struct sockaddr *)&sun));

	assert_int_equal(cidr_list_parse("0.0.0.0/0 ::/0", &list), 0);
	assert_false(cidr_list_allows(&list, (const struct sockaddr *)&sun));
	assert_false(cidr_list_allows(&list, NULL));
	cidr_list_free(&list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_units),
		cmocka_unit_test(test_size_spacing_and_decimals),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_size_junk),
		cmocka_unit_test(test_duration_units),
		cmocka_unit_test(test_duration_decimals_and_spacing),
		cmocka_unit_test(test_duration_limits),
		cmocka_unit_test(test_duration_junk),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_long),
		cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_format_size_round_trip),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_listen_addr),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_parse_bad),
		cmocka_unit_test(test_cidr_allows_v4),
		cmocka_unit_test(test_cidr_allows_v6),
		cmocka_unit_test(test_cidr_empty_and_other_families),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
