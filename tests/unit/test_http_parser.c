/*
 * Unit tests for the HTTP request-head parser (agent/http_parser.c):
 * what HAProxy and tools send is accepted, framing is read right, and
 * everything malformed is refused rather than guessed at.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parser.h"

struct parse_case {
	const char *input;
	enum http_parse_result result;
	const char *method;
	const char *path;
	const char *query;
	int minor;
	bool keep_alive;
	size_t content_length;
};

static const struct parse_case cases[] = {
	/* HAProxy's default probe */
	{ "OPTIONS / HTTP/1.0\r\n\r\n", HTTP_PARSE_OK, "OPTIONS", "/", "", 0, false, 0 },
	/* http-check send meth GET uri /write ver HTTP/1.1 hdr Host x */
	{ "GET /write HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", HTTP_PARSE_OK, "GET",
	  "/write", "", 1, false, 0 },
	{ "GET /node/n1?lag=16MB HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_PARSE_OK, "GET", "/node/n1",
	  "lag=16MB", 1, true, 0 },
	{ "HEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", HTTP_PARSE_OK, "HEAD", "/", "", 0,
	  true, 0 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", HTTP_PARSE_OK, "GET", "/",
	  "", 1, false, 0 },
	{ "GET /node/a%2Db HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_PARSE_OK, "GET", "/node/a-b", "", 1,
	  true, 0 },
	{ "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_PARSE_OK, "OPTIONS", "/", "", 1, true, 0 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", HTTP_PARSE_OK, "POST",
	  "/", "", 1, true, 5 },
	{ "GET / HTTP/1.1\nHost: x\n\n", HTTP_PARSE_OK, "GET", "/", "", 1, true, 0 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", HTTP_PARSE_OK, "GET", "/", "", 1,
	  true, 0 },
	/* the same Content-Length twice is one length */
	{ "POST / HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", HTTP_PARSE_OK,
	  "POST", "/", "", 0, false, 2 },
	/* HTTP/1.0 needs no Host; a later 1.x minor is served as 1.1 */
	{ "GET / HTTP/1.0\r\n\r\n", HTTP_PARSE_OK, "GET", "/", "", 0, false, 0 },
	{ "GET / HTTP/1.2\r\nHost: x\r\n\r\n", HTTP_PARSE_OK, "GET", "/", "", 2, true, 0 },
	/* incomplete: wait for more */
	{ .input = "GET / HTTP/1.1\r\nHost: x\r\n", .result = HTTP_PARSE_INCOMPLETE },
	{ .input = "", .result = HTTP_PARSE_INCOMPLETE },
	/* malformed */
	{ .input = "garbage\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET  / HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1 \r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/2.0\r\n\r\n", .result = HTTP_PARSE_BAD_VERSION },
	{ .input = "GET / HTTP/0.9\r\n\r\n", .result = HTTP_PARSE_BAD_VERSION },
	{ .input = "GET / HTTP/3.0\r\nHost: x\r\n\r\n", .result = HTTP_PARSE_BAD_VERSION },
	{ .input = "GET / HTTP/1.10\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/11\r\n\r\n", .result = HTTP_PARSE_BAD },
	/* RFC 9112: conflicting lengths, a bare CR, Host missing or repeated */
	{ .input = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	  .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\rHost: x\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.x\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET relative HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET http://h/ HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "G(T / HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET /%zz HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET /%4 HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET /%00 HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET /a%2fb HTTP/1.1\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nNoColon\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\n: value\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nContent-Length: \r\n\r\n", .result = HTTP_PARSE_BAD },
	{ .input = "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", .result = HTTP_PARSE_BAD },
};

static void test_parse_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		struct http_request req;
		enum http_parse_result r = http_parse_request(c->input, strlen(c->input), &req);

		if (r != c->result)
			fail_msg("case %zu (%s): result %d, want %d", i, c->input, r, c->result);
		if (r != HTTP_PARSE_OK)
			continue;
		assert_string_equal(req.method, c->method);
		assert_string_equal(req.path, c->path);
		assert_string_equal(req.query, c->query);
		assert_int_equal(req.minor_version, c->minor);
		if (req.keep_alive != c->keep_alive)
			fail_msg("case %zu (%s): keep_alive %d", i, c->input, req.keep_alive);
		assert_int_equal(req.content_length, c->content_length);
	}
}

static void test_head_len_leaves_the_next_request(void **state)
{
	const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_request req;

	assert_int_equal(http_parse_request(two, strlen(two), &req), HTTP_PARSE_OK);
	assert_string_equal(req.path, "/a");
	assert_int_equal(req.head_len, strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
	assert_int_equal(http_parse_request(two + req.head_len, strlen(two) - req.head_len, &req),
			 HTTP_PARSE_OK);
	assert_string_equal(req.path, "/b");
}

static void test_nul_in_head_is_bad(void **state)
{
	const char in[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	struct http_request req;

	assert_int_equal(http_parse_request(in, sizeof(in) - 1, &req), HTTP_PARSE_BAD);
}

static void test_oversized_head(void **state)
{
	size_t len = HTTP_MAX_HEAD + 10;
	char *big = malloc(len);
	struct http_request req;

	assert_non_null(big);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', len - 19);
	assert_int_equal(http_parse_request(big, len, &req), HTTP_PARSE_TOO_LARGE);
	/* just under the limit, still incomplete */
	assert_int_equal(http_parse_request(big, HTTP_MAX_HEAD - 1, &req), HTTP_PARSE_INCOMPLETE);
	free(big);
}

static void test_chunked_is_flagged(void **state)
{
	const char *in = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct http_request req;

	assert_int_equal(http_parse_request(in, strlen(in), &req), HTTP_PARSE_OK);
	assert_true(req.chunked);
}

static void test_truncation_never_succeeds_early(void **state)
{
	const char *in = "GET /node/n1?lag=1MB HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	size_t len = strlen(in);
	struct http_request req;

	for (size_t cut = 0; cut < len - 1; cut++) {
		enum http_parse_result r = http_parse_request(in, cut, &req);

		if (r == HTTP_PARSE_OK)
			fail_msg("a head cut at %zu parsed as complete", cut);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_head_len_leaves_the_next_request),
		cmocka_unit_test(test_nul_in_head_is_bad),
		cmocka_unit_test(test_oversized_head),
		cmocka_unit_test(test_chunked_is_flagged),
		cmocka_unit_test(test_truncation_never_succeeds_early),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
