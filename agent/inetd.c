/*
 * One check per process, as xinetd runs it. Unlike the classic
 * checker, the request is read (bounded in size and time) and routed
 * like any other, so /node/NAME, ?lag= and HEAD work here too, and the
 * reply carries an exact Content-Length.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "inetd.h"

#define INETD_MAX_REQUEST 16384

struct inetd_request {
	char method[16];
	char target[1024];
	int minor_version; /* HTTP/1.x */
};

/* Read until the blank line that ends the headers, EOF, or the deadline. */
static ssize_t read_request(int fd, char *buf, size_t cap, int64_t timeout_ms)
{
	size_t len = 0;
	int64_t deadline = clock_ms() + timeout_ms;

	while (len < cap - 1) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - clock_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			break;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

static int parse_request_line(const char *buf, struct inetd_request *req)
{
	char version[16];
	int major;

	if (sscanf(buf, "%15s %1023s %15s", req->method, req->target, version) != 3)
		return -1;
	if (sscanf(version, "HTTP/%d.%d", &major, &req->minor_version) != 2 || major != 1)
		return -1;
	return req->target[0] == '/' ? 0 : -1;
}

static void write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void send_reply(int fd, const struct inetd_request *req, const struct http_reply *r,
		       enum http_method method)
{
	struct evbuffer *out = evbuffer_new();
	size_t body_len = evbuffer_get_length(r->body);

	if (!out)
		return;
	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\nContent-Type: %s\r\n"
			    "Content-Length: %zu\r\nCache-Control: no-store\r\n",
			    req->minor_version, r->code, r->reason, r->content_type, body_len);
	if (r->allow)
		evbuffer_add_printf(out, "Allow: %s\r\n", r->allow);
	evbuffer_add_printf(out, "Connection: close\r\n\r\n");
	if (method != HTTP_METHOD_HEAD)
		evbuffer_add_buffer(out, r->body);
	write_all(fd, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
}

int inetd_serve(struct agent *a, int in_fd, int out_fd)
{
	char buf[INETD_MAX_REQUEST];
	struct inetd_request req = { .method = "GET", .target = "/", .minor_version = 0 };
	struct http_reply reply = { 0 };
	enum http_method method = HTTP_METHOD_GET;
	ssize_t len = read_request(in_fd, buf, sizeof(buf), a->config.client_timeout_ms);
	char *query;

	reply.body = evbuffer_new();
	if (!reply.body)
		return 1;
	/* a client that sends nothing gets the classic answer for "/" */
	if (len > 0 && parse_request_line(buf, &req) != 0) {
		reply.code = 400;
		reply.reason = "Bad Request";
		reply.content_type = "text/plain; charset=utf-8";
		evbuffer_add_printf(reply.body, "bad request\n");
	} else {
		method = http_method_from_name(req.method);
		query = strchr(req.target, '?');
		if (query)
			*query++ = '\0';
		agent_run_first_round(a);
		http_route(a, method, req.target, query, &reply);
	}
	send_reply(out_fd, &req, &reply, method);
	evbuffer_free(reply.body);
	return 0;
}
