/*
 * libFuzzer harness for the whole HTTP path of the agent: the request
 * parser (http_parser.c), the connection handling (http_server.c), the
 * routing (http.c) and the renderers (render.c, metrics.c), driven by
 * the agent's own event loop.
 *
 * Once per process: load a small config (three [node.*] sections
 * pointing at 127.0.0.1 port 1; the pollers are never started, so no
 * PostgreSQL is needed), agent_init(), give the nodes hand-made
 * statuses (ready, degraded with lag, down), and start
 * http_server_new() on 127.0.0.1 port 0.
 *
 * Each input is one client connection: write the input, shutdown
 * (SHUT_WR), and run the loop until the agent closes (2 s at most).
 * The connection is a socketpair handed to http_server_adopt() (fast,
 * and no ephemeral port runs out), except every 64th input, which goes
 * over loopback TCP through the listener (accept, allow_from), as do
 * all of them with FUZZ_HTTP_TRANSPORT=tcp (none with =pair).
 *
 * Checked, once the agent has closed:
 * - the output is a sequence of complete HTTP/1.0 or 1.1 replies, each
 *   with exactly one Content-Length, matching its body (no body after a
 *   HEAD);
 * - the replies are those the input calls for, found by running
 *   http_parse_request() over it as the server does: one per request
 *   up to the first one that closes (HTTP/1.0 without keep-alive,
 *   "Connection: close"), a malformed one (400 then close; 505 for a
 *   version other than HTTP/1.x) or an
 *   unfinished one (no reply); after a request with a body the rest is
 *   only checked for its framing;
 * - no descriptor or memory is left behind (fd count, LeakSanitizer).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "http.h"
#include "http_parser.h"
#include "http_server.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

#define REPLY_CAP (4 * 1024 * 1024)
#define WAIT_MS 2000
#define MAX_INPUT (256 * 1024)
#define MAX_EXPECTED 512
#define TCP_EVERY 64

static const char config_text[] =
	"[agent]\n"
	"http_listen = 127.0.0.1:9\n"   /* not used: the harness binds port 0 */
	"allow_from = 127.0.0.0/8, ::1\n"
	"interval = 1s\n"
	"timeout = 1s\n"
	"stale_after = 1d\n"
	"client_timeout = 1s\n"
	"log_level = error\n"
	"allow_root = yes\n"
	"[policy]\n"
	"drain_lag = 16MB\n"
	"max_lag = 64MB\n"
	"[node.n1]\n"
	"host = 127.0.0.1\nport = 1\ndbname = app\nuser = mon\npriority = 10\n"
	"[node.n2]\n"
	"dsn = host=127.0.0.1 port=1 dbname=app user=mon\npriority = 20\n"
	"[node.n3]\n"
	"host = 127.0.0.1\nport = 1\nflavor = physical\n";

static struct agent agent;
static int port;
static bool always_tcp, always_pair;

struct exchange {
	int fd;
	const uint8_t *data;
	size_t size, written;
	bool shut;
	uint8_t *reply;
	size_t reply_len;
	bool eof;      /* clean close by the agent */
	bool reset;    /* ECONNRESET: what we read may be cut short */
	bool timeout;
	struct event *rev, *wev, *timer;
};

/* What the input calls for, by http_parse_request(). */
struct expected {
	int count;                 /* replies in order */
	bool head[MAX_EXPECTED];   /* the reply to a HEAD: no body */
	int code[MAX_EXPECTED];    /* 400 (505) for a malformed request, else 0 (any) */
	bool exact;                /* false: more replies may follow, framing only */
};

/* ---- setup ------------------------------------------------------------ */

static void set_status(struct node *n, enum node_state state, int weight, int64_t lag,
		       const char *reason)
{
	struct node_status *st = &n->judged;

	st->state = state;
	st->weight = weight;
	st->lag_bytes_known = lag >= 0;
	st->lag_bytes = lag >= 0 ? lag : 0;
	st->lag_seconds_known = lag >= 0;
	st->lag_seconds = lag >= 0 ? 1.5 : 0;
	snprintf(st->reason, sizeof(st->reason), "%s", reason);
	st->checked_at_ms = st->last_probe_at_ms = clock_ms();
	st->check_ms = 3;
	st->good_streak = state == STATE_DOWN ? 0 : 5;
	st->bad_streak = state == STATE_DOWN ? 5 : 0;
	st->ever_up = true;
	n->judged_read = *st;
	n->status = *st;
	n->readable = state != STATE_DOWN;
	n->probed = true;
	n->probes = 7;
	n->probe_duration_buckets[2] = 7;
	n->probe_duration_sum = 0.021;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz_http-XXXXXX";
	struct agent_config cfg;
	struct config_error err;
	struct listen_addr la = { .enabled = true, .host = "127.0.0.1", .port = 0 };
	struct timeval tick = { 0, 150 * 1000 };
	const char *transport = getenv("FUZZ_HTTP_TRANSPORT");
	char errbuf[300];
	int fd;

	signal(SIGPIPE, SIG_IGN);
	always_tcp = transport && strcmp(transport, "tcp") == 0;
	always_pair = transport && strcmp(transport, "pair") == 0;
	fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, config_text, sizeof(config_text) - 1) == (ssize_t)sizeof(config_text) - 1);
	close(fd);
	if (config_load(path, &cfg, &err) != 0) {
		config_error_format(&err, errbuf, sizeof(errbuf));
		fprintf(stderr, "fuzz_http: %s\n", errbuf);
		abort();
	}
	unlink(path);
	CHECK(agent_init(&agent, &cfg) == 0);
	CHECK(agent.n_nodes == 3);
	set_status(agent.nodes[0], STATE_READY, 100, 1024, "");
	set_status(agent.nodes[1], STATE_DEGRADED, 37, 40 << 20,
		   "replication lag 40MB > 16MB \"drain\"\n<tag>\\");
	set_status(agent.nodes[2], STATE_DOWN, 0, -1, "connection refused: port 1");

	agent.http = http_server_new(&agent, &la, errbuf, sizeof(errbuf));
	if (!agent.http) {
		fprintf(stderr, "fuzz_http: %s\n", errbuf);
		abort();
	}
	port = http_server_port(agent.http);
	CHECK(port > 0);
	/* one tick: the leader is elected by the agent itself, from the statuses */
	event_base_loopexit(agent.base, &tick);
	event_base_dispatch(agent.base);
	return 0;
}

/* ---- one exchange ------------------------------------------------------ */

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	x->timeout = true;
	event_base_loopbreak(agent.base);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	while (x->written < x->size) {
		ssize_t n = send(fd, x->data + x->written, x->size - x->written, MSG_NOSIGNAL);

		if (n > 0) {
			x->written += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		/* the agent closed already: nothing more to send */
		x->written = x->size;
	}
	if (!x->shut) {
		shutdown(fd, SHUT_WR);
		x->shut = true;
	}
	event_del(x->wev);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct exchange *x = arg;

	for (;;) {
		uint8_t discard[4096];
		uint8_t *dst = x->reply_len < REPLY_CAP ? x->reply + x->reply_len : discard;
		size_t room = x->reply_len < REPLY_CAP ? REPLY_CAP - x->reply_len : sizeof(discard);
		ssize_t n = recv(fd, dst, room, 0);

		if (n > 0) {
			if (dst != discard)
				x->reply_len += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n == 0)
			x->eof = true;
		else
			x->reset = true;
		event_base_loopbreak(agent.base);
		return;
	}
}

static int connect_tcp(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 || errno == EINPROGRESS);
	return fd;
}

static int connect_pair(void)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(http_server_adopt(agent.http, sv[1]) == 0);
	return sv[0];
}

/* ---- what the input calls for ------------------------------------------ */

static void expect_replies(const uint8_t *data, size_t size, struct expected *e)
{
	size_t off = 0;

	memset(e, 0, sizeof(*e));
	e->exact = true;
	while (off < size && e->count < MAX_EXPECTED) {
		struct http_request req;
		size_t look = size - off < HTTP_MAX_HEAD ? size - off : HTTP_MAX_HEAD;
		enum http_parse_result r = http_parse_request((const char *)data + off, look, &req);

		if (r == HTTP_PARSE_INCOMPLETE)
			return; /* the agent waits for the rest, sees EOF, closes */
		if (r != HTTP_PARSE_OK) {
			e->code[e->count++] = r == HTTP_PARSE_BAD_VERSION ? 505 : 400;
			return;
		}
		/* the parser's own contract */
		CHECK(req.head_len > 0 && req.head_len <= look);
		CHECK(memchr(req.method, '\0', sizeof(req.method)) && req.method[0]);
		CHECK(req.path[0] == '/' && memchr(req.path, '\0', sizeof(req.path)));
		CHECK(memchr(req.query, '\0', sizeof(req.query)) != NULL);
		CHECK(req.minor_version >= 0 && req.minor_version <= 9);

		e->head[e->count] = strcmp(req.method, "HEAD") == 0;
		e->code[e->count] = 0;
		if (req.content_length > 0 || req.chunked) {
			/* whether and how the body is skipped is the server's business */
			e->exact = false;
			return;
		}
		e->count++;
		if (!req.keep_alive)
			return;
		off += req.head_len;
	}
	if (e->count == MAX_EXPECTED)
		e->exact = false;
}

/* ---- checking what came back ------------------------------------------ */

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *s)
{
	size_t n = strlen(s);

	for (; p + n <= end; p++)
		if (memcmp(p, s, n) == 0)
			return p;
	return NULL;
}

static bool starts_reply(const uint8_t *p, const uint8_t *end)
{
	return p == end || (end - p >= 9 && memcmp(p, "HTTP/1.", 7) == 0);
}

/* Content-Length of a header block; -1 if absent; two of them fail. */
static long content_length(const uint8_t *line, const uint8_t *end)
{
	long value = -1;

	while (line < end) {
		const uint8_t *eol = find(line, end, "\r\n");
		size_t n;

		if (!eol)
			eol = end;
		n = (size_t)(eol - line);
		if (n > 15 && strncasecmp((const char *)line, "Content-Length:", 15) == 0) {
			char num[32];
			size_t k = n - 15 < sizeof(num) - 1 ? n - 15 : sizeof(num) - 1;
			char *stop;

			CHECK(value == -1);
			memcpy(num, line + 15, k);
			num[k] = '\0';
			value = strtol(num, &stop, 10);
			CHECK(stop != num && value >= 0);
			while (*stop == ' ')
				stop++;
			CHECK(*stop == '\0');
		}
		line = eol + 2;
	}
	return value;
}

static void dump(const char *what, const struct exchange *x, const uint8_t *at)
{
	size_t off = (size_t)(at - x->reply);

	fprintf(stderr, "fuzz_http: %s, at byte %zu of %zu received (eof %d, reset %d):\n%.*s\n",
		what, off, x->reply_len, x->eof, x->reset,
		(int)(x->reply_len - off < 600 ? x->reply_len - off : 600), (const char *)at);
}

static void check_replies(const struct exchange *x, const struct expected *e)
{
	const uint8_t *p = x->reply, *end = x->reply + x->reply_len;
	int n = 0;

	if (x->reply_len >= REPLY_CAP)
		return;
	while (p < end) {
		const uint8_t *start = p, *head_end, *line_end;
		bool known = n < e->count;
		bool head = known && e->head[n];
		int code;
		long cl;

		head_end = find(p, end, "\r\n\r\n");
		if (!head_end && x->reset)
			return; /* cut short by a reset */
		if (!head_end || !starts_reply(p, end) || p[8] != ' ')
			dump("not an HTTP/1.x reply", x, p);
		CHECK(head_end && starts_reply(p, end));
		CHECK(p[7] == '0' || p[7] == '1');
		CHECK(p[8] == ' ' && p[9] >= '1' && p[9] <= '5' && p[10] >= '0' && p[10] <= '9' &&
		      p[11] >= '0' && p[11] <= '9' && p[12] == ' ');
		code = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
		line_end = find(p, head_end + 2, "\r\n");
		cl = content_length(line_end + 2, head_end + 2);
		if (cl < 0)
			dump("a reply without Content-Length", x, start);
		CHECK(cl >= 0); /* every reply states its length (design.md 3, HTTP) */
		if (known && e->code[n] && e->code[n] != code)
			dump("not the status the request calls for", x, start);
		CHECK(!known || !e->code[n] || e->code[n] == code);
		if (!known && e->exact)
			dump("a reply the input does not call for", x, start);
		CHECK(known || !e->exact);
		p = head_end + 4;
		if (head) {
			if (!starts_reply(p, end))
				dump("a body after the reply to a HEAD", x, start);
			CHECK(starts_reply(p, end));
		} else if (!known) {
			/* unmodelled (after a request body): a body, or none after a HEAD */
			if ((size_t)cl <= (size_t)(end - p) && starts_reply(p + cl, end)) {
				p += cl;
			} else if (!starts_reply(p, end)) {
				if (x->reset)
					return;
				dump("the body does not match its Content-Length", x, start);
				CHECK(!"a body that matches Content-Length");
			}
		} else if ((size_t)cl > (size_t)(end - p)) {
			if (x->reset)
				return;
			dump("the body is shorter than its Content-Length", x, start);
			CHECK(!"a complete body");
		} else {
			p += cl;
			if (!starts_reply(p, end))
				dump("bytes after the body", x, start);
			CHECK(starts_reply(p, end));
		}
		n++;
	}
	if (x->eof && e->exact && n != e->count) {
		fprintf(stderr, "fuzz_http: %d replies, the input calls for %d\n", n, e->count);
		dump("the replies", x, x->reply);
		CHECK(n == e->count);
	}
}

static int count_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 4096; fd++)
		n += fcntl(fd, F_GETFD) != -1;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *reply;
	static unsigned iterations;
	static int base_fds;
	struct exchange x = { 0 };
	struct expected e;
	struct timeval wait = { 0, WAIT_MS * 1000 };

	if (size > MAX_INPUT)
		return 0;
	if (!reply) {
		reply = malloc(REPLY_CAP);
		CHECK(reply);
	}
	expect_replies(data, size, &e);
	x.data = data;
	x.size = size;
	x.reply = reply;
	x.fd = always_tcp || (!always_pair && iterations % TCP_EVERY == 0) ? connect_tcp()
									   : connect_pair();

	x.rev = event_new(agent.base, x.fd, EV_READ | EV_PERSIST, on_readable, &x);
	x.wev = event_new(agent.base, x.fd, EV_WRITE | EV_PERSIST, on_writable, &x);
	x.timer = evtimer_new(agent.base, on_timeout, &x);
	CHECK(x.rev && x.wev && x.timer);
	event_add(x.rev, NULL);
	event_add(x.wev, NULL);
	evtimer_add(x.timer, &wait);
	event_base_dispatch(agent.base);

	event_free(x.rev);
	event_free(x.wev);
	event_free(x.timer);
	close(x.fd);
	/* let the agent see the close and free the connection */
	event_base_loop(agent.base, EVLOOP_NONBLOCK);
	event_base_loop(agent.base, EVLOOP_NONBLOCK);

	if (x.timeout && getenv("FUZZ_HTTP_DEBUG"))
		fprintf(stderr, "fuzz_http: no close within %d ms (sent %zu of %zu, got %zu)\n",
			WAIT_MS, x.written, x.size, x.reply_len);
	/* the agent must close: no request is left waiting once the input ends */
	if (x.timeout)
		dump("the agent did not close", &x, x.reply);
	CHECK(!x.timeout);
	check_replies(&x, &e);

	/* connections must not pile up: the agent closed its side */
	if (iterations++ % 512 == 0) {
		int fds = count_fds();

		if (!base_fds)
			base_fds = fds;
		if (fds > base_fds + 16)
			fprintf(stderr, "fuzz_http: %d fds open, %d at the start\n", fds, base_fds);
		CHECK(fds <= base_fds + 16);
	}
	return 0;
}
