/*
 * The HTTP/1.x request-head parser shared by the HTTP listener and
 * --inetd. Pure: bytes in, a parsed request or an error out. Health
 * checks are GET/HEAD/OPTIONS without bodies, so this parses just the
 * head and the few headers that decide framing.
 */
#ifndef PGBDR_HTTP_PARSER_H
#define PGBDR_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEAD 16384
#define HTTP_MAX_TARGET 1024

enum http_parse_result {
	HTTP_PARSE_OK,
	HTTP_PARSE_INCOMPLETE, /* no blank line yet, and under the size limit */
	HTTP_PARSE_BAD,        /* malformed: answer 400 and close */
	HTTP_PARSE_TOO_LARGE,  /* head over HTTP_MAX_HEAD: 400 and close */
	HTTP_PARSE_BAD_VERSION, /* a well-formed HTTP/N.x other than 1.x: 505 and close */
};

struct http_request {
	char method[16];
	char path[HTTP_MAX_TARGET];  /* percent-decoded, without the query */
	char query[HTTP_MAX_TARGET]; /* raw, without '?'; "" when none */
	int minor_version;           /* HTTP/1.minor */
	bool keep_alive;             /* what the client asked for */
	size_t content_length;       /* body bytes that follow the head */
	bool chunked;                /* a chunked body: not read, so the connection closes */
	size_t head_len;             /* bytes of the head, blank line included */
};

/*
 * Parse the head at the start of buf (len bytes, not NUL-terminated).
 * On HTTP_PARSE_OK, req->head_len tells how much to consume.
 */
enum http_parse_result http_parse_request(const char *buf, size_t len,
					  struct http_request *req);

#endif
