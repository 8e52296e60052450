/*
 * One check per process, as xinetd runs it. Unlike the classic
 * checker, the request is read (bounded in size and time) and routed
 * like any other, so /node/NAME, ?lag= and HEAD work here too, and the
 * reply carries an exact Content-Length.
 *
 * xinetd hands the client's socket in as stdout and stderr alike, so
 * nothing but the reply may be written to either: stderr goes to
 * /dev/null before anything can print there (libpq's default notice
 * processor, a library's complaint), and a config error is the 503's
 * body, not a line on stderr in front of the status line.
 */
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "http_parser.h"
#include "inetd.h"

/* Read until the blank line that ends the head, EOF, the size limit or the deadline. */
static size_t read_request(int fd, char *buf, size_t cap, int64_t timeout_ms)
{
	size_t len = 0;
	int64_t deadline = clock_ms() + timeout_ms;
	struct http_request req;

	while (len < cap) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - clock_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (http_parse_request(buf, len, &req) != HTTP_PARSE_INCOMPLETE)
			break;
	}
	return len;
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

void inetd_quiet_stderr(void)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fd != STDERR_FILENO) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
}

/*
 * Read and answer one request. a is NULL when the config could not be
 * loaded: every well-formed request then gets a 503 saying why.
 */
static int serve(struct agent *a, const char *config_error, int in_fd, int out_fd,
		 int64_t timeout_ms)
{
	char buf[HTTP_MAX_HEAD];
	struct http_request req = { .method = "GET", .path = "/" };
	struct http_reply reply = { 0 };
	struct evbuffer *out = evbuffer_new();
	enum http_parse_result parsed;
	size_t len = read_request(in_fd, buf, sizeof(buf), timeout_ms);

	reply.body = evbuffer_new();
	if (!reply.body || !out) {
		if (out)
			evbuffer_free(out);
		if (reply.body)
			evbuffer_free(reply.body);
		return 1;
	}
	/* a client that sends nothing gets the classic answer for "/" */
	if (len > 0 && (parsed = http_parse_request(buf, len, &req)) != HTTP_PARSE_OK) {
		http_reply_parse_error(&reply, parsed);
		req.minor_version = 1;
		strcpy(req.method, "GET");
	} else if (!a) {
		reply.code = 503;
		reply.reason = "Service Unavailable";
		reply.content_type = "text/plain; charset=utf-8";
		evbuffer_add_printf(reply.body, "down: configuration error: %s\n", config_error);
	} else {
		agent_run_first_round(a);
		http_route(a, http_method_from_name(req.method), req.path, req.query, &reply);
	}
	http_format_reply(req.minor_version, &reply, strcmp(req.method, "HEAD") == 0, false, out);
	write_all(out_fd, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
	evbuffer_free(reply.body);
	return a ? 0 : 1;
}

int inetd_serve(struct agent *a, int in_fd, int out_fd)
{
	return serve(a, NULL, in_fd, out_fd, a->config.client_timeout_ms);
}

int inetd_serve_config_error(const char *message, int in_fd, int out_fd)
{
	return serve(NULL, message, in_fd, out_fd, INETD_DEFAULT_TIMEOUT_MS);
}
