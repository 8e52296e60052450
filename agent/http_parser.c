/*
 * HTTP/1.x request heads, strictly (RFC 9112): a bad request line, a
 * header line without a colon, a NUL, a bare CR, an obsolete line
 * folding, conflicting Content-Length values, an HTTP/1.1 request
 * without exactly one Host or an absurd size is an error, not something
 * to guess about; a well-formed version other than 1.x is told apart
 * (505). Strictness costs nothing here: HAProxy and monitoring tools
 * send plain, valid heads.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_parser.h"

/* What the header lines said, beyond the request fields. */
struct header_state {
	bool asked_close;
	bool asked_keep_alive;
	int hosts;
	bool has_length;
};

/* Where the head ends (after its blank line), or 0 if not there yet. */
static size_t find_head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* RFC 9110 token characters, for the method. */
static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode %XX; a bad escape or an encoded NUL or '/' is an error. */
static int percent_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -1;
			hi = hex_value(in[i + 1]);
			lo = hex_value(in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			if (c == '\0' || c == '/')
				return -1;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

static int parse_target(const char *target, size_t len, struct http_request *req)
{
	const char *q = memchr(target, '?', len);
	size_t path_len = q ? (size_t)(q - target) : len;

	/* OPTIONS * asks about the server as a whole: answer as for "/" */
	if (len == 1 && target[0] == '*') {
		snprintf(req->path, sizeof(req->path), "/");
		req->query[0] = '\0';
		return 0;
	}
	if (len == 0 || target[0] != '/')
		return -1;
	if (percent_decode(target, path_len, req->path, sizeof(req->path)) < 0)
		return -1;
	if (q) {
		size_t qlen = len - path_len - 1;

		if (qlen >= sizeof(req->query))
			return -1;
		memcpy(req->query, q + 1, qlen);
		req->query[qlen] = '\0';
	} else {
		req->query[0] = '\0';
	}
	return 0;
}

/* "METHOD SP target SP HTTP/1.x", nothing more, nothing less. */
static int parse_request_line(const char *line, size_t len, struct http_request *req)
{
	const char *sp1 = memchr(line, ' ', len);
	const char *sp2;
	size_t mlen, tlen;

	if (!sp1)
		return -1;
	mlen = (size_t)(sp1 - line);
	if (mlen == 0 || mlen >= sizeof(req->method))
		return -1;
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)line[i]))
			return -1;
	memcpy(req->method, line, mlen);
	req->method[mlen] = '\0';

	sp2 = memchr(sp1 + 1, ' ', len - mlen - 1);
	if (!sp2)
		return -1;
	tlen = (size_t)(sp2 - sp1 - 1);
	if (tlen == 0 || tlen >= HTTP_MAX_TARGET)
		return -1;
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)sp1[1 + i] <= ' ' || sp1[1 + i] == 0x7f)
			return -1;
	if (parse_target(sp1 + 1, tlen, req) < 0)
		return -1;

	len -= (size_t)(sp2 + 1 - line);
	if (len != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 || !isdigit((unsigned char)sp2[6]) ||
	    sp2[7] != '.' || !isdigit((unsigned char)sp2[8]))
		return -1;
	req->minor_version = sp2[8] - '0';
	return sp2[6] == '1' ? 0 : 1;
}

/* Digits only, no overflow, and every copy the same: framing errors are how requests get smuggled. */
static int parse_content_length(const char *value, size_t vlen, struct http_request *req,
				struct header_state *h)
{
	size_t n = 0;

	if (vlen == 0 || vlen > 12)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (!isdigit((unsigned char)value[i]))
			return -1;
		n = n * 10 + (size_t)(value[i] - '0');
	}
	if (h->has_length && n != req->content_length)
		return -1;
	h->has_length = true;
	req->content_length = n;
	return 0;
}

static bool header_has_token(const char *value, size_t len, const char *token)
{
	size_t tlen = strlen(token);

	for (size_t i = 0; i + tlen <= len; i++) {
		bool starts = i == 0 || value[i - 1] == ',' || value[i - 1] == ' ' ||
			      value[i - 1] == '\t';
		bool ends = i + tlen == len || value[i + tlen] == ',' || value[i + tlen] == ' ' ||
			    value[i + tlen] == '\t';

		if (starts && ends && strncasecmp(value + i, token, tlen) == 0)
			return true;
	}
	return false;
}

static int parse_header_line(const char *line, size_t len, struct http_request *req,
			     struct header_state *h)
{
	const char *colon = memchr(line, ':', len);
	const char *value;
	size_t nlen, vlen;

	/* a leading space would be an obsolete folded continuation */
	if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
		return -1;
	nlen = (size_t)(colon - line);
	for (size_t i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)line[i]))
			return -1;
	value = colon + 1;
	vlen = len - nlen - 1;
	while (vlen && (*value == ' ' || *value == '\t')) {
		value++;
		vlen--;
	}
	while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		vlen--;

	if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
		h->asked_close |= header_has_token(value, vlen, "close");
		h->asked_keep_alive |= header_has_token(value, vlen, "keep-alive");
	} else if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
		return parse_content_length(value, vlen, req, h);
	} else if (nlen == 4 && strncasecmp(line, "Host", 4) == 0) {
		h->hosts++;
	} else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
		req->chunked = true;
	}
	return 0;
}

/* A CR anywhere but right before a LF (RFC 9112 2.2). */
static bool has_bare_cr(const char *buf, size_t end)
{
	for (size_t i = 0; i < end; i++)
		if (buf[i] == '\r' && (i + 1 >= end || buf[i + 1] != '\n'))
			return true;
	return false;
}

enum http_parse_result http_parse_request(const char *buf, size_t len,
					  struct http_request *req)
{
	size_t end = find_head_end(buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
	struct header_state h = { 0 };
	bool first = true;
	size_t pos = 0;

	if (!end)
		return len >= HTTP_MAX_HEAD ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_INCOMPLETE;
	if (memchr(buf, '\0', end) || has_bare_cr(buf, end))
		return HTTP_PARSE_BAD;
	memset(req, 0, sizeof(*req));
	req->head_len = end;

	while (pos < end) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', end - pos);
		size_t line_len = (size_t)(nl - line);

		pos += line_len + 1;
		if (line_len && line[line_len - 1] == '\r')
			line_len--;
		if (line_len == 0)
			break; /* the blank line */
		if (first) {
			int version = parse_request_line(line, line_len, req);

			if (version < 0)
				return HTTP_PARSE_BAD;
			if (version > 0)
				return HTTP_PARSE_BAD_VERSION;
			first = false;
		} else if (parse_header_line(line, line_len, req, &h) < 0) {
			return HTTP_PARSE_BAD;
		}
	}
	if (first)
		return HTTP_PARSE_BAD; /* a blank line and nothing else */
	/* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; more is an error in any version */
	if (h.hosts > 1 || (req->minor_version >= 1 && h.hosts == 0))
		return HTTP_PARSE_BAD;
	req->keep_alive = req->minor_version >= 1 ? !h.asked_close
						  : h.asked_keep_alive && !h.asked_close;
	return HTTP_PARSE_OK;
}
