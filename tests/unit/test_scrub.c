/*
 * Unit tests for agent/scrub.c: secrets masked wherever they appear
 * (also cut short by truncation), control characters blanked, invalid
 * UTF-8 replaced, truncation on a character boundary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "scrub.h"

static const char *scrub(const char *in, const struct secret_list *s, size_t len)
{
	static char out[256];

	scrub_text(out, len, in, strlen(in), s);
	return out;
}

static void test_secret_masked(void **state)
{
	struct secret_list s = { 0 };

	(void)state;
	secret_list_add(&s, "S3cret-42");
	secret_list_add(&s, "");
	secret_list_add(&s, NULL);
	assert_int_equal(s.n, 1);
	assert_string_equal(scrub("password authentication failed: S3cret-42", &s, 256),
			    "password authentication failed: ***");
	assert_string_equal(scrub("S3cret-42S3cret-42 x", &s, 256), "****** x");
	/* cut short by an upstream truncation */
	assert_string_equal(scrub("echo S3cre", &s, 256), "echo ***");
	/* too short a tail to tell apart from ordinary text */
	assert_string_equal(scrub("echo S3", &s, 256), "echo S3");
}

static void test_two_secrets(void **state)
{
	struct secret_list s = { 0 };

	(void)state;
	secret_list_add(&s, "pw-one");
	secret_list_add(&s, "ssl-two");
	secret_list_add(&s, "pw-one");
	assert_int_equal(s.n, 2);
	assert_string_equal(scrub("a pw-one b ssl-two c", &s, 256), "a *** b *** c");
}

static void test_controls_blanked(void **state)
{
	(void)state;
	assert_string_equal(scrub("line1\nline2\r\x1b[31mred\x7f", NULL, 256),
			    "line1 line2  [31mred ");
}

static void test_nul_inside(void **state)
{
	char out[32];

	(void)state;
	scrub_text(out, sizeof(out), "a\0b", 3, NULL);
	assert_string_equal(out, "a b");
}

static void test_utf8(void **state)
{
	(void)state;
	/* valid multi-byte characters pass */
	assert_string_equal(scrub("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", NULL, 256),
			    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* Latin-1, a lone continuation, overlong, surrogate, truncated */
	assert_string_equal(scrub("caf\xe9", NULL, 256), "caf?");
	assert_string_equal(scrub("\x80x", NULL, 256), "?x");
	assert_string_equal(scrub("\xc0\xaf", NULL, 256), "??");
	assert_string_equal(scrub("\xed\xa0\x80", NULL, 256), "???");
	assert_string_equal(scrub("ab\xe2\x82", NULL, 256), "ab??");
	assert_string_equal(scrub("\xf4\x90\x80\x80", NULL, 256), "????");
}

static void test_truncation_on_boundary(void **state)
{
	(void)state;
	/* 5 bytes of room: "ab" + the 3-byte euro sign does not fit with NUL */
	assert_string_equal(scrub("ab\xe2\x82\xac", NULL, 5), "ab");
	assert_string_equal(scrub("abcdef", NULL, 4), "abc");
	assert_string_equal(scrub("abcdef", NULL, 1), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_masked),
		cmocka_unit_test(test_two_secrets),
		cmocka_unit_test(test_controls_blanked),
		cmocka_unit_test(test_nul_inside),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_truncation_on_boundary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
