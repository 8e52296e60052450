/*
 * loadgen: a small epoll load generator for pgbdr-agent's three
 * listeners (and for the classic xinetd checker, which speaks the same
 * HTTP). One thread, non-blocking sockets, one JSON line per run.
 *
 *   cc -O2 -o loadgen bench/loadgen.c
 *   loadgen -m MODE -p PORT [options]
 *
 * MODE
 *   http      a new connection per request, as HAProxy's checks do:
 *             connect, send the request (default "OPTIONS / HTTP/1.0",
 *             HAProxy's default probe), read until the server closes
 *   http-ka   keep-alive: one connection per client, GET / HTTP/1.1,
 *             replies framed by Content-Length
 *   agent     agent-check: connect, send the -s string if any, read the
 *             line until the server closes
 *   spop      SPOP: one HAPROXY-HELLO per connection, then NOTIFY
 *             "pgbdr-status" frames, up to -n in flight per connection,
 *             ACKs matched by stream-id/frame-id (any order)
 *
 * Options
 *   -h ADDR    server IPv4 address (127.0.0.1)
 *   -p PORT    server port
 *   -c N       concurrent clients (connections) (1)
 *   -d SECS    measured duration (3)
 *   -w SECS    warm-up before measuring, not recorded (0.5)
 *   -r RATE    open loop: RATE requests/s in total, spread evenly over
 *              the clients (0 = closed loop: each client sends its next
 *              request as soon as the previous one is answered)
 *   -n DEPTH   spop: NOTIFYs in flight per connection (1)
 *   -u PATH    http, http-ka: request path (/)
 *   -s STR     agent: agent-send string ("" = send nothing);
 *              spop: value of the "node" argument (none by default)
 *   -H         hold: set up -c connections (http-ka and spop: one
 *              exchange each; http and agent: just connected), print
 *              {"ready":...} once all are up, keep them idle for -d
 *              seconds, then print the result line
 *   -l LABEL   copied into the JSON line
 *
 * Latency is measured from the start of a request (connect() for http
 * and agent, the write of the request for http-ka and spop) to its
 * complete reply, in microseconds. The JSON line gives throughput over
 * the measured window and p50/p90/p99/p99.9/max latency.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_HTTP, M_HTTP_KA, M_AGENT, M_SPOP };

enum state {
	S_WAIT,       /* scheduled: not connected or idle between requests */
	S_CONNECTING, /* connect() in progress, request to write */
	S_READING,    /* request sent, reading the reply */
	S_HELLO,      /* spop: HELLO sent, waiting for AGENT-HELLO */
	S_READY,      /* spop: handshake done; http-ka: connected and idle */
};

#define RBUF 16384
#define WBUF 16384
#define RING 1024 /* spop: max in flight per connection */

struct conn {
	int fd;
	int idx;
	enum state st;
	uint64_t t_req;         /* start of the current request (ns) */
	uint64_t next_at;       /* open loop: when the next request is due */
	bool in_heap;
	bool held;              /* hold mode: setup done */
	bool got_data;
	char first[64];         /* http/agent: the first bytes of the reply */
	size_t first_len;
	char *rbuf;
	size_t rlen;
	char *wbuf;
	size_t wlen, woff;
	/* spop */
	uint32_t next_stream;
	int inflight;
	uint64_t sent_at[RING];
	uint32_t sent_stream[RING];
};

/* ---- options and global state ------------------------------------ */

static enum mode mode = M_HTTP;
static const char *mode_name = "http";
static struct sockaddr_in server;
static int conc = 1;
static double duration = 3.0, warmup = 0.5, rate = 0;
static int depth = 1;
static const char *path = "/";
static const char *send_str = "";
static bool hold;
static const char *label = "";

static int ep;
static struct conn *conns;
static uint64_t t0, t_measure, t_end;
static volatile sig_atomic_t stop_now;

/* results */
static uint64_t *lat;
static size_t nlat, caplat;
static uint64_t n_ok, n_notok, n_errors, n_resets, n_late, n_sent_measured;
static uint64_t n_hold_closed;
static uint64_t n_all; /* every completed request, warm-up included */
static uint64_t codes[600];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void record(uint64_t t_start, bool ok)
{
	uint64_t t = now_ns();

	n_all++;
	if (t_start < t_measure || t > t_end)
		return;
	if (ok)
		n_ok++;
	else
		n_notok++;
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 1 << 20;
		lat = realloc(lat, caplat * sizeof(*lat));
		if (!lat)
			die("realloc");
	}
	lat[nlat++] = t - t_start;
}

static void count_error(void)
{
	uint64_t t = now_ns();

	if (t >= t_measure && t <= t_end)
		n_errors++;
}

/* ---- a binary min-heap of connections by next_at ------------------ */

static struct conn **heap;
static int heap_n;

static void heap_swap(int a, int b)
{
	struct conn *t = heap[a];

	heap[a] = heap[b];
	heap[b] = t;
}

static void heap_push(struct conn *c, uint64_t at)
{
	int i;

	if (c->in_heap)
		return; /* one pending entry per conn: the one already queued stands */
	c->next_at = at;
	c->in_heap = true;
	i = heap_n++;
	heap[i] = c;
	while (i > 0) {
		int p = (i - 1) / 2;

		if (heap[p]->next_at <= heap[i]->next_at)
			break;
		heap_swap(p, i);
		i = p;
	}
}

static struct conn *heap_pop(void)
{
	struct conn *top = heap[0];
	int i = 0;

	heap[0] = heap[--heap_n];
	for (;;) {
		int l = 2 * i + 1, r = l + 1, m = i;

		if (l < heap_n && heap[l]->next_at < heap[m]->next_at)
			m = l;
		if (r < heap_n && heap[r]->next_at < heap[m]->next_at)
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
	top->in_heap = false;
	return top;
}

/* ---- SPOP encoding ------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	if (v < 240) {
		p[n++] = (uint8_t)v;
		return n;
	}
	p[n++] = (uint8_t)(v | 0xF0);
	v = (v - 240) >> 4;
	while (v >= 128) {
		p[n++] = (uint8_t)(v | 0x80);
		v = (v - 128) >> 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v;
	unsigned shift = 4;

	if (*pos >= len)
		return -1;
	v = p[(*pos)++];
	if (v < 240) {
		*out = v;
		return 0;
	}
	for (;;) {
		uint8_t b;

		if (*pos >= len || shift > 63)
			return -1;
		b = p[(*pos)++];
		v += (uint64_t)b << shift;
		shift += 7;
		if (b < 128)
			break;
	}
	*out = v;
	return 0;
}

static size_t put_str(uint8_t *p, const char *s)
{
	size_t n = put_varint(p, strlen(s));

	memcpy(p + n, s, strlen(s));
	return n + strlen(s);
}

/* frame header; returns the offset where the payload starts */
static size_t frame_begin(uint8_t *p, uint8_t type, uint64_t stream, uint64_t frame)
{
	size_t n = 4;

	p[n++] = type;
	p[n++] = 0;
	p[n++] = 0;
	p[n++] = 0;
	p[n++] = 1; /* FIN */
	n += put_varint(p + n, stream);
	n += put_varint(p + n, frame);
	return n;
}

static size_t frame_end(uint8_t *p, size_t n)
{
	uint32_t len = htonl((uint32_t)(n - 4));

	memcpy(p, &len, 4);
	return n;
}

static size_t encode_hello(uint8_t *p)
{
	size_t n = frame_begin(p, 1, 0, 0);

	n += put_str(p + n, "supported-versions");
	p[n++] = 8;
	n += put_str(p + n, "2.0");
	n += put_str(p + n, "max-frame-size");
	p[n++] = 3;
	n += put_varint(p + n, 16380);
	n += put_str(p + n, "capabilities");
	p[n++] = 8;
	n += put_str(p + n, "pipelining");
	n += put_str(p + n, "engine-id");
	p[n++] = 8;
	n += put_str(p + n, "pgbdr-loadgen");
	return frame_end(p, n);
}

static size_t encode_notify(uint8_t *p, uint64_t stream)
{
	size_t n = frame_begin(p, 3, stream, 1);

	n += put_str(p + n, "pgbdr-status");
	if (send_str[0]) {
		p[n++] = 1;
		n += put_str(p + n, "node");
		p[n++] = 8;
		n += put_str(p + n, send_str);
	} else {
		p[n++] = 0;
	}
	return frame_end(p, n);
}

/* ---- connections --------------------------------------------------- */

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = S_WAIT;
	c->rlen = 0;
	c->wlen = c->woff = 0;
	c->inflight = 0;
	c->first_len = 0;
	c->got_data = false;
}

static void set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0)
		die("epoll_ctl mod");
}

/* queue bytes and try to send them now */
static int conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->wlen + len > WBUF)
		return -1;
	memcpy(c->wbuf + c->wlen, data, len);
	c->wlen += len;
	while (c->woff < c->wlen) {
		ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EAGAIN || errno == ENOTCONN) {
				set_events(c, EPOLLIN | EPOLLOUT);
				return 0;
			}
			return -1;
		}
		c->woff += (size_t)w;
	}
	c->wlen = c->woff = 0;
	return 0;
}

static void schedule_next(struct conn *c, uint64_t now);
static void start_request(struct conn *c, uint64_t now);

/* A failure: count it, close, retry after 1 ms (no spinning). */
static void conn_fail(struct conn *c)
{
	if (c->held)
		n_hold_closed++;
	else
		count_error();
	conn_close(c);
	c->held = false;
	heap_push(c, now_ns() + 1000000);
}

static int conn_open(struct conn *c)
{
	struct epoll_event e = { .data.ptr = c };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	if (mode == M_HTTP_KA || mode == M_SPOP)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&server, sizeof(server)) < 0 && errno != EINPROGRESS)
		return -1;
	c->st = S_CONNECTING;
	e.events = EPOLLIN | EPOLLOUT;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
		die("epoll_ctl add");
	return 0;
}

static void send_notifies(struct conn *c, int count, uint64_t now)
{
	uint8_t buf[WBUF];
	size_t n = 0;

	for (int i = 0; i < count && n + 512 < sizeof(buf); i++) {
		uint32_t sid = c->next_stream++;

		c->sent_at[sid % RING] = now;
		c->sent_stream[sid % RING] = sid;
		c->inflight++;
		n += encode_notify(buf + n, sid);
	}
	if (n && conn_write(c, buf, n) < 0)
		conn_fail(c);
}

/* The request that starts at "now", per mode. */
static void start_request(struct conn *c, uint64_t now)
{
	char req[512];
	int len;

	switch (mode) {
	case M_HTTP:
	case M_AGENT:
		c->t_req = now;
		if (conn_open(c) < 0)
			conn_fail(c);
		return;
	case M_HTTP_KA:
		if (c->fd < 0) {
			if (conn_open(c) < 0) {
				conn_fail(c);
				return;
			}
			c->t_req = now;
			return; /* the request goes out once connected */
		}
		c->t_req = now;
		c->st = S_READING;
		len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
		if (conn_write(c, req, (size_t)len) < 0)
			conn_fail(c);
		return;
	case M_SPOP:
		if (c->fd < 0) {
			if (conn_open(c) < 0)
				conn_fail(c);
			return;
		}
		if (c->st != S_READY)
			return;
		if (rate > 0) {
			if (c->inflight < depth)
				send_notifies(c, 1, now);
			else
				n_late++; /* cannot send yet: the ACK that frees a slot sends it */
		} else {
			send_notifies(c, depth - c->inflight, now);
		}
		return;
	}
}

/* open loop: the client's next slot; closed loop: at once */
static void schedule_next(struct conn *c, uint64_t now)
{
	if (hold)
		return;
	if (rate <= 0) {
		start_request(c, now);
		return;
	}
	{
		uint64_t period = (uint64_t)(1e9 * conc / rate);
		uint64_t at = c->next_at + period;

		if (at < now) {
			n_late++;
			at = now;
		}
		heap_push(c, at);
	}
}

static void hold_done(struct conn *c)
{
	c->held = true;
}

static void on_connected(struct conn *c, uint64_t now)
{
	char req[512];
	int len;
	uint8_t hello[256];

	set_events(c, EPOLLIN);
	switch (mode) {
	case M_HTTP:
		if (hold) {
			c->st = S_READY;
			hold_done(c);
			return;
		}
		c->st = S_READING;
		len = snprintf(req, sizeof(req), "OPTIONS %s HTTP/1.0\r\n\r\n", path);
		if (conn_write(c, req, (size_t)len) < 0)
			conn_fail(c);
		return;
	case M_AGENT:
		c->st = S_READING;
		if (hold) {
			hold_done(c);
			return;
		}
		if (send_str[0] && conn_write(c, send_str, strlen(send_str)) < 0)
			conn_fail(c);
		return;
	case M_HTTP_KA:
		c->st = S_READING;
		len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
		if (conn_write(c, req, (size_t)len) < 0)
			conn_fail(c);
		return;
	case M_SPOP:
		c->st = S_HELLO;
		if (conn_write(c, hello, encode_hello(hello)) < 0)
			conn_fail(c);
		return;
	}
	(void)now;
}

/* http and agent: the reply ends when the server closes */
static void finish_close_mode(struct conn *c, bool reset)
{
	bool ok = false;

	if (!c->got_data) {
		conn_fail(c);
		return;
	}
	if (reset && now_ns() >= t_measure)
		n_resets++;
	c->first[c->first_len < sizeof(c->first) ? c->first_len : sizeof(c->first) - 1] = '\0';
	if (mode == M_HTTP) {
		if (strncmp(c->first, "HTTP/1.", 7) == 0 && c->first_len >= 12) {
			int code = atoi(c->first + 9);

			ok = code >= 200 && code < 400;
			if (code > 0 && code < 600 && c->t_req >= t_measure)
				codes[code]++;
		}
	} else {
		ok = strncasecmp(c->first, "up", 2) == 0;
	}
	record(c->t_req, ok);
	conn_close(c);
	schedule_next(c, now_ns());
}

static void read_close_mode(struct conn *c)
{
	char buf[4096];

	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof(buf), 0);

		if (r > 0) {
			size_t take = sizeof(c->first) - 1 - c->first_len;

			if ((size_t)r < take)
				take = (size_t)r;
			memcpy(c->first + c->first_len, buf, take);
			c->first_len += take;
			c->got_data = true;
			continue;
		}
		if (r == 0) {
			if (c->held) {
				n_hold_closed++;
				c->held = false;
				conn_close(c);
				return;
			}
			finish_close_mode(c, false);
			return;
		}
		if (errno == EAGAIN)
			return;
		if (errno == ECONNRESET && !c->held) {
			finish_close_mode(c, true);
			return;
		}
		conn_fail(c);
		return;
	}
}

/* http-ka: one reply framed by Content-Length */
static int parse_ka_reply(struct conn *c)
{
	char *end, *p;
	size_t head, body = 0;
	int code;

	c->rbuf[c->rlen < RBUF ? c->rlen : RBUF - 1] = '\0';
	end = strstr(c->rbuf, "\r\n\r\n");
	if (!end)
		return c->rlen >= RBUF - 1 ? -1 : 0;
	head = (size_t)(end - c->rbuf) + 4;
	for (p = c->rbuf; p && p < end; p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			body = strtoul(p + 15, NULL, 10);
	}
	if (c->rlen < head + body)
		return 0;
	code = strncmp(c->rbuf, "HTTP/1.", 7) == 0 ? atoi(c->rbuf + 9) : 0;
	if (code > 0 && code < 600 && c->t_req >= t_measure)
		codes[code]++;
	record(c->t_req, code >= 200 && code < 400);
	memmove(c->rbuf, c->rbuf + head + body, c->rlen - head - body);
	c->rlen -= head + body;
	c->st = S_READY;
	if (hold) {
		hold_done(c);
		return 1;
	}
	schedule_next(c, now_ns());
	return 1;
}

static void read_ka(struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - 1 - c->rlen, 0);

		if (r > 0) {
			c->rlen += (size_t)r;
			if (parse_ka_reply(c) < 0) {
				conn_fail(c);
				return;
			}
			continue;
		}
		if (r < 0 && errno == EAGAIN)
			return;
		/* closed: the server may close an idle keep-alive connection */
		if (c->held) {
			n_hold_closed++;
			c->held = false;
			conn_close(c);
			return;
		}
		if (c->st == S_READY) {
			conn_close(c);
			heap_push(c, now_ns());
			return;
		}
		conn_fail(c);
		return;
	}
}

/* spop: process every complete frame in the buffer */
static void read_spop(struct conn *c)
{
	uint64_t now;

	for (;;) {
		ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);

		if (r > 0) {
			c->rlen += (size_t)r;
			if (c->rlen < RBUF)
				continue;
		} else if (r == 0 || errno != EAGAIN) {
			if (c->held)
				n_hold_closed++;
			else
				count_error();
			c->held = false;
			conn_close(c);
			if (!hold)
				heap_push(c, now_ns() + 1000000);
			return;
		}
		break;
	}
	now = now_ns();
	{
		size_t off = 0;
		int acked = 0;

		while (c->rlen - off >= 4) {
			uint32_t flen;
			const uint8_t *f = (const uint8_t *)c->rbuf + off + 4;
			size_t pos = 5;
			uint64_t sid, fid;

			memcpy(&flen, c->rbuf + off, 4);
			flen = ntohl(flen);
			if (flen > RBUF - 4 || flen < 7) {
				conn_fail(c);
				return;
			}
			if (c->rlen - off < 4 + flen)
				break;
			off += 4 + flen;
			if (get_varint(f, flen, &pos, &sid) < 0 || get_varint(f, flen, &pos, &fid) < 0) {
				conn_fail(c);
				return;
			}
			if (f[0] == 101 && c->st == S_HELLO) {
				c->st = S_READY;
				if (hold) {
					hold_done(c);
					continue;
				}
				if (rate <= 0)
					send_notifies(c, depth, now);
				else if (c->next_at <= now)
					heap_push(c, now);
				continue;
			}
			if (f[0] == 103 && c->st == S_READY) {
				uint32_t slot = (uint32_t)(sid % RING);

				if (c->sent_stream[slot] != (uint32_t)sid || fid != 1 || c->inflight <= 0) {
					fprintf(stderr, "loadgen: unexpected ACK %llu/%llu\n",
						(unsigned long long)sid, (unsigned long long)fid);
					conn_fail(c);
					return;
				}
				c->sent_stream[slot] = UINT32_MAX;
				c->inflight--;
				record(c->sent_at[slot], true);
				acked++;
				continue;
			}
			/* DISCONNECT or anything unexpected */
			conn_fail(c);
			return;
		}
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
		if (acked && !hold && c->fd >= 0) {
			if (rate <= 0)
				send_notifies(c, acked, now);
			else if (c->inflight < depth && c->next_at <= now && !c->in_heap)
				heap_push(c, now); /* a send was held back by the depth cap */
		}
	}
}

static void on_event(struct conn *c, uint32_t ev)
{
	uint64_t now = now_ns();

	if (c->st == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			conn_fail(c);
			return;
		}
		if (!(ev & (EPOLLOUT | EPOLLIN)))
			return;
		on_connected(c, now);
		if (c->fd < 0)
			return;
		if (mode == M_HTTP && hold)
			return;
	}
	if ((ev & EPOLLOUT) && c->wlen > c->woff) {
		if (conn_write(c, "", 0) < 0) {
			conn_fail(c);
			return;
		}
		if (c->wlen == 0)
			set_events(c, EPOLLIN);
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	switch (mode) {
	case M_HTTP:
	case M_AGENT:
		read_close_mode(c);
		break;
	case M_HTTP_KA:
		read_ka(c);
		break;
	case M_SPOP:
		read_spop(c);
		break;
	}
}

/* ---- main ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	size_t i;

	if (!nlat)
		return 0;
	i = (size_t)(p * (double)(nlat - 1) + 0.5);
	return (double)lat[i] / 1000.0;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_now = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen -m http|http-ka|agent|spop -p PORT [-h ADDR] [-c N] "
			"[-d SECS] [-w SECS] [-r RATE] [-n DEPTH] [-u PATH] [-s STR] [-H] [-l LABEL]\n");
	exit(2);
}

static int held_count(void)
{
	int n = 0;

	for (int i = 0; i < conc; i++)
		n += conns[i].held;
	return n;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	struct epoll_event evs[512];
	int opt, port = 0;
	const char *host = "127.0.0.1";
	bool announced = false;
	bool use_pwait2 = true;

	while ((opt = getopt(argc, argv, "m:h:p:c:d:w:r:n:u:s:Hl:")) != -1) {
		switch (opt) {
		case 'm':
			mode_name = optarg;
			if (!strcmp(optarg, "http"))
				mode = M_HTTP;
			else if (!strcmp(optarg, "http-ka"))
				mode = M_HTTP_KA;
			else if (!strcmp(optarg, "agent"))
				mode = M_AGENT;
			else if (!strcmp(optarg, "spop"))
				mode = M_SPOP;
			else
				usage();
			break;
		case 'h': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'n': depth = atoi(optarg); break;
		case 'u': path = optarg; break;
		case 's': send_str = optarg; break;
		case 'H': hold = true; break;
		case 'l': label = optarg; break;
		default: usage();
		}
	}
	if (port <= 0 || conc < 1 || depth < 1 || depth > RING / 2 || duration <= 0)
		usage();
	memset(&server, 0, sizeof(server));
	server.sin_family = AF_INET;
	server.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
		usage();

	/* one fd per client, plus slack */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	conns = calloc((size_t)conc, sizeof(*conns));
	heap = calloc((size_t)conc, sizeof(*heap));
	if (!conns || !heap)
		die("calloc");

	t0 = now_ns();
	if (hold) {
		/* measure nothing; stay up until -d after all are ready */
		t_measure = t0;
		t_end = UINT64_MAX;
	} else {
		t_measure = t0 + (uint64_t)(warmup * 1e9);
		t_end = t_measure + (uint64_t)(duration * 1e9);
	}
	for (int i = 0; i < conc; i++) {
		struct conn *c = &conns[i];

		c->fd = -1;
		c->idx = i;
		c->next_stream = 1;
		if (mode == M_HTTP_KA || mode == M_SPOP) {
			c->rbuf = malloc(RBUF);
			if (!c->rbuf)
				die("malloc");
		}
		c->wbuf = malloc(WBUF);
		if (!c->wbuf)
			die("malloc");
		memset(c->sent_stream, 0xff, sizeof(c->sent_stream));
		/* open loop: spread the clients' first requests over one period */
		if (rate > 0)
			heap_push(c, t0 + (uint64_t)(1e9 * i / rate));
		else
			heap_push(c, t0);
	}

	for (;;) {
		uint64_t now = now_ns();
		struct timespec ts;
		int64_t wait_ns;
		int n;

		if (stop_now)
			break;
		if (hold) {
			if (!announced && held_count() == conc) {
				announced = true;
				printf("{\"ready\": true, \"connections\": %d}\n", conc);
				fflush(stdout);
				t_end = now + (uint64_t)(duration * 1e9);
			}
		}
		if (now >= t_end)
			break;
		while (heap_n && heap[0]->next_at <= now) {
			struct conn *c = heap_pop();

			if (mode == M_SPOP && c->fd >= 0 && c->st != S_READY)
				continue; /* handshake pending: it sends on AGENT-HELLO */
			if (mode == M_SPOP && rate > 0 && c->fd >= 0) {
				uint64_t period = (uint64_t)(1e9 * conc / rate);

				start_request(c, now);
				c->next_at += period;
				if (c->next_at < now) {
					c->next_at = now; /* no burst to catch up */
				}
				heap_push(c, c->next_at);
				continue;
			}
			start_request(c, now);
		}
		wait_ns = heap_n ? (int64_t)(heap[0]->next_at - now) : 100000000;
		if (wait_ns > 100000000)
			wait_ns = 100000000;
		if (wait_ns < 0)
			wait_ns = 0;
		if (t_end - now < (uint64_t)wait_ns)
			wait_ns = (int64_t)(t_end - now);
		ts.tv_sec = wait_ns / 1000000000;
		ts.tv_nsec = wait_ns % 1000000000;
		if (use_pwait2) {
			n = epoll_pwait2(ep, evs, 512, &ts, NULL);
			if (n < 0 && errno == ENOSYS) {
				use_pwait2 = false;
				continue;
			}
		} else {
			n = epoll_wait(ep, evs, 512, (int)((wait_ns + 999999) / 1000000));
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->fd >= 0)
				on_event(c, evs[i].events);
		}
	}

	{
		uint64_t t_stop = now_ns();
		double window = hold ? 0 : ((t_stop < t_end ? t_stop : t_end) - t_measure) / 1e9;
		uint64_t done = n_ok + n_notok;

		qsort(lat, nlat, sizeof(*lat), cmp_u64);
		printf("{\"label\": \"%s\", \"mode\": \"%s\", \"port\": %d, \"concurrency\": %d, "
		       "\"depth\": %d, \"rate_target\": %.0f, \"hold\": %s, \"duration_s\": %.3f, "
		       "\"requests\": %llu, \"all_requests\": %llu, \"ok\": %llu, \"not_ok\": %llu, \"errors\": %llu, "
		       "\"resets\": %llu, \"late\": %llu, \"throughput\": %.1f, "
		       "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
		       "\"max_us\": %.1f, \"held\": %d, \"closed_while_held\": %llu, \"codes\": {",
		       label, mode_name, port, conc, depth, rate, hold ? "true" : "false", window,
		       (unsigned long long)done, (unsigned long long)n_all, (unsigned long long)n_ok,
		       (unsigned long long)n_notok, (unsigned long long)n_errors,
		       (unsigned long long)n_resets, (unsigned long long)n_late,
		       window > 0 ? (double)done / window : 0.0, pct(0.50), pct(0.90), pct(0.99),
		       pct(0.999), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0,
		       hold ? held_count() : 0, (unsigned long long)n_hold_closed);
		{
			const char *sep = "";

			for (int i = 0; i < 600; i++)
				if (codes[i]) {
					printf("%s\"%d\": %llu", sep, i, (unsigned long long)codes[i]);
					sep = ", ";
				}
		}
		printf("}}\n");
		(void)n_sent_measured;
	}
	return 0;
}
