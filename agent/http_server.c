/*
 * The HTTP transport: framing, pipelining and the deadlines of one
 * connection; http.c decides the replies, and the listener (listener.c)
 * owns what every protocol shares: allow_from, max_clients, the
 * connection list and the linger at close. Written on bufferevents
 * rather than evhttp because a health endpoint must hold its limits
 * whatever a client does, and libevent 2.1's evhttp offers no hook for
 * them: an absolute deadline for a request head (a client sending one
 * byte a second would otherwise hold a slot forever), and a bound on
 * replies queued for a client that does not read.
 *
 * Memory: replies queued to clients count against the agent's client
 * memory budget (memory_budget.h), shared with SPOP. A reply that does
 * not fit first sheds the HTTP clients that leave a backlog unread (the
 * largest first: their backlog is dropped and they are closed); if it
 * still does not fit and the client has replies unsent, it becomes a
 * short 503 and the connection closes. A client with nothing unsent is
 * answered: it reads, and its reply goes to the socket at once.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "http.h"
#include "http_parser.h"
#include "http_server.h"
#include "listener.h"
#include "memory_budget.h"

/*
 * Past this much unsent output, stop reading: the client is not reading.
 * It only stops the next request being parsed, never a reply however
 * large; kept low because every request read from a client that does
 * not read is a reply rendered for nobody.
 */
#define OUTPUT_PAUSE_BYTES (64 * 1024)

/* Request bodies are never used; small ones are skipped, larger ones close. */
#define MAX_SKIPPED_BODY 4096

/* How long a closing connection drains what the client still sends. */
#define LINGER_MS 1000

/*
 * The kernel's share: a client that does not read would otherwise let
 * its socket's send buffer autotune to megabytes, each worth hundreds of
 * replies rendered for nobody. A health check's reply is a few hundred
 * bytes, /metrics and /status a few kB.
 */
#define SOCKET_SEND_BUFFER (64 * 1024)

/* What a reply adds beyond its body: the status line and headers. */
#define REPLY_HEAD_BYTES 512

struct http_conn {
	struct listener_conn lc; /* first: the listener allocates and links it */
	struct http_server *server;
	struct event *deadline; /* the next request head must arrive by then */
	bool closing;           /* last reply queued: close once it is written */
	bool finished;          /* answered and done on the fast path: free it */
};

struct http_server {
	struct agent *agent;
	struct listener *listener;
	struct memory_budget *budget; /* the agent's, shared with SPOP */
	struct http_counters *counters; /* the agent's */
};

static size_t output_length(const struct http_conn *c)
{
	return listener_conn_output_length(&c->lc);
}

/* The listener's close callback: what is HTTP's own. */
static void on_close(struct listener_conn *lc)
{
	struct http_conn *c = (struct http_conn *)lc;

	if (c->deadline)
		event_free(c->deadline);
}

static void arm_deadline(struct http_conn *c)
{
	struct timeval tv = ms_to_timeval(c->server->agent->config.client_timeout_ms);

	evtimer_add(c->deadline, &tv);
}

/*
 * A closing connection with unread input would be reset by close(),
 * which can destroy the reply in flight (a 400 for an oversized head,
 * say): the listener lingers instead.
 */
static void linger(struct http_conn *c)
{
	evtimer_del(c->deadline);
	listener_conn_linger(&c->lc, LINGER_MS, true);
}

/*
 * Queue a formatted reply packed into the output's chains. A reply
 * built by small appends sits in chains of 1 kB and more however short
 * it is, and a client that does not read makes us hold every one: the
 * budget counts bytes, so the memory behind them should not be many
 * times that. Those small chains are copied, packed. From the first
 * large one on (the per-node text of /metrics, handed over by
 * reference) the rest is moved as it is: copying that chain cost a
 * fleet's /metrics a second buffer of its size on every GET, and with
 * two such buffers glibc gave the heap back after each reply and
 * faulted it in again on the next (725 page faults a GET at 1000
 * nodes, 8 without the copy). Not evbuffer_remove_buffer() for that
 * one chain: after moving it, it appends zero bytes, and libevent sizes
 * the chain it adds for them like the one before, megabytes.
 */
#define MOVE_FROM_CHAIN_BYTES 65536

static void queue_tight(struct evbuffer *out, struct evbuffer *bytes)
{
	struct evbuffer_iovec v[16];
	/*
	 * The whole length, not -1: with -1 evbuffer_peek() stops at 16
	 * chains and says 16, and the chains past them were lost (a large
	 * /metrics or /status arrived cut short).
	 */
	int n = evbuffer_peek(bytes, (ev_ssize_t)evbuffer_get_length(bytes), NULL, v, 16);

	for (int i = 0; i < n && n <= 16; i++) {
		if (v[i].iov_len >= MOVE_FROM_CHAIN_BYTES ||
		    evbuffer_add(out, v[i].iov_base, v[i].iov_len) != 0)
			break;
		evbuffer_drain(bytes, v[i].iov_len);
	}
	evbuffer_add_buffer(out, bytes); /* whatever is left, as it is */
}

/*
 * The last reply of a connection (HAProxy's checks: one request, then
 * close). Written at once, not through the bufferevent (which would
 * enable EV_WRITE, wait for epoll, write, then disable it); and when
 * the client has sent nothing more, closed at once: with no unread
 * input, close() sends a FIN, not a reset, so there is nothing to
 * linger for. Returns false when the slow path must take over.
 */
static bool finish_fast(struct http_conn *c, struct evbuffer *reply_bytes)
{
	evutil_socket_t fd = bufferevent_getfd(c->lc.bev);
	char peek;

	if (evbuffer_get_length(bufferevent_get_output(c->lc.bev)) > 0)
		return false; /* earlier replies still queued: keep the order */
	while (evbuffer_get_length(reply_bytes) > 0)
		if (evbuffer_write(reply_bytes, fd) <= 0)
			return false;
	c->closing = true;
	evtimer_del(c->deadline);
	if (evbuffer_get_length(bufferevent_get_input(c->lc.bev)) > 0 ||
	    recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
		linger(c); /* unread input: a close now would reset */
	else
		c->finished = true;
	return true;
}

/* Out of memory for a reply: stop serving this client, close when flushed. */
static void give_up(struct http_conn *c)
{
	c->closing = true;
	evtimer_del(c->deadline);
	bufferevent_disable(c->lc.bev, EV_READ);
}

/* The connection's last reply: the fast path if it can, else queued. */
static void respond_and_close(struct http_conn *c, int minor_version,
			      const struct http_reply *reply, bool head_only)
{
	struct evbuffer *out = bufferevent_get_output(c->lc.bev);
	struct evbuffer *bytes = evbuffer_new();

	if (!bytes) {
		http_format_reply(minor_version, reply, head_only, false, out);
	} else {
		http_format_reply(minor_version, reply, head_only, false, bytes);
		if (!finish_fast(c, bytes))
			queue_tight(out, bytes); /* what was not written */
		evbuffer_free(bytes);
		if (c->closing)
			return;
	}
	give_up(c);
}

static void respond(struct http_conn *c, const struct http_request *req, int minor_version,
		    struct http_reply *reply, bool keep_alive)
{
	bool head_only = req && strcmp(req->method, "HEAD") == 0;

	if (reply->code >= 200 && reply->code < 600)
		c->server->counters->responses[reply->code / 100]++;
	if (keep_alive) {
		struct evbuffer *bytes = evbuffer_new();

		if (!bytes) {
			http_format_reply(minor_version, reply, head_only, true,
					  bufferevent_get_output(c->lc.bev));
			return;
		}
		http_format_reply(minor_version, reply, head_only, true, bytes);
		queue_tight(bufferevent_get_output(c->lc.bev), bytes);
		evbuffer_free(bytes);
	} else {
		respond_and_close(c, minor_version, reply, head_only);
	}
}

static void respond_parse_error(struct http_conn *c, enum http_parse_result result)
{
	struct http_reply reply = { .body = evbuffer_new() };

	if (!reply.body) {
		give_up(c);
		return;
	}
	http_reply_parse_error(&reply, result);
	respond(c, NULL, 1, &reply, false);
	evbuffer_free(reply.body);
}

/*
 * Drop a client that does not read: its backlog goes, and so does the
 * connection (a close, as nothing it is sent would be read).
 */
static void shed(struct http_conn *c)
{
	c->server->counters->shed++;
	c->server->budget->shed++;
	evbuffer_drain(bufferevent_get_output(c->lc.bev), output_length(c));
	give_up(c);
	c->finished = true;
}

/*
 * Room for a reply of `bytes` on c: when the budget cannot take it,
 * the other HTTP clients with an unread backlog are shed, the largest
 * backlog first, until it can. Returns false if it still cannot.
 */
static bool make_room(struct http_conn *c, size_t bytes)
{
	struct http_server *s = c->server;

	/* (a finished connection has nothing unsent: it is never picked) */
	while (!memory_budget_fits(s->budget, bytes)) {
		struct listener_conn *worst = listener_largest_backlog(s->listener, &c->lc,
								       CLIENT_BACKLOG_SHED_BYTES);

		if (!worst)
			return false;
		s->counters->shed++;
		s->budget->shed++;
		listener_conn_close(worst);
	}
	return true;
}

static void over_budget_reply(struct http_reply *reply)
{
	evbuffer_drain(reply->body, evbuffer_get_length(reply->body));
	evbuffer_add_printf(reply->body, "over the client memory budget: try again\n");
	reply->code = 503;
	reply->reason = "Service Unavailable";
	reply->content_type = "text/plain; charset=utf-8";
	reply->allow = NULL;
}

static void serve_request(struct http_conn *c, const struct http_request *req)
{
	struct http_reply reply = { .body = evbuffer_new() };
	/* a body we did not read leaves the stream unframed: close after */
	bool keep_alive = req->keep_alive && !req->chunked &&
			  req->content_length <= MAX_SKIPPED_BODY;

	if (!reply.body) {
		give_up(c);
		return;
	}
	c->server->counters->requests++;
	http_route(c->server->agent, http_method_from_name(req->method), req->path,
		   req->query, &reply);
	/* a client with nothing unsent reads: its reply goes out at once */
	if (!make_room(c, evbuffer_get_length(reply.body) + REPLY_HEAD_BYTES) &&
	    output_length(c) > 0) {
		if (output_length(c) >= CLIENT_BACKLOG_SHED_BYTES) {
			evbuffer_free(reply.body);
			shed(c);
			return;
		}
		over_budget_reply(&reply);
		keep_alive = false;
	}
	respond(c, req, req->minor_version, &reply, keep_alive);
	evbuffer_free(reply.body);
	if (keep_alive)
		arm_deadline(c);
}

/* Serve every complete request in the input (pipelining), in order. */
static void process_input(struct http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->lc.bev);

	while (!c->closing) {
		size_t len = evbuffer_get_length(in);
		size_t look = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
		struct http_request req;
		enum http_parse_result r;

		if (len == 0)
			return;
		if (evbuffer_get_length(bufferevent_get_output(c->lc.bev)) > OUTPUT_PAUSE_BYTES) {
			bufferevent_disable(c->lc.bev, EV_READ);
			return;
		}
		r = http_parse_request((const char *)evbuffer_pullup(in, (ssize_t)look), look, &req);
		if (r == HTTP_PARSE_INCOMPLETE)
			return;
		if (r != HTTP_PARSE_OK) {
			respond_parse_error(c, r);
			return;
		}
		/* a small body is skipped whole, so the next request starts clean */
		if (!req.chunked && req.content_length <= MAX_SKIPPED_BODY) {
			if (len < req.head_len + req.content_length)
				return;
			evbuffer_drain(in, req.head_len + req.content_length);
		} else {
			evbuffer_drain(in, req.head_len);
		}
		serve_request(c, &req);
	}
}

static void on_readable(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	process_input(c);
	if (c->finished)
		listener_conn_close(&c->lc);
}

static void on_written(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			linger(c);
		return;
	}
	/* the client caught up: go on with what it already sent */
	bufferevent_enable(bev, EV_READ);
	process_input(c);
	if (c->finished)
		listener_conn_close(&c->lc);
}

/*
 * A client may send its requests and then shut its write side
 * (nc -N, pipelining scripts): what it sent is still answered, and the
 * replies already queued still go out, before the connection closes.
 */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		c->server->counters->timeouts++;
	if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
		process_input(c);
		give_up(c);
		if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
			return;
	}
	listener_conn_close(&c->lc);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	c->server->counters->timeouts++;
	listener_conn_close(&c->lc);
}

/* The listener's open callback: deadlines and callbacks of a new client. */
static int on_open(void *arg, struct listener_conn *lc, const struct sockaddr *sa, int socklen)
{
	struct http_server *s = arg;
	struct http_conn *c = (struct http_conn *)lc;
	struct timeval write_timeout = ms_to_timeval(s->agent->config.client_timeout_ms);

	c->server = s;
	c->deadline = evtimer_new(s->agent->base, on_deadline, c);
	if (!c->deadline)
		return -1;
	/* a client that stops reading its replies is dropped after this */
	bufferevent_set_timeouts(c->lc.bev, NULL, &write_timeout);
	bufferevent_setcb(c->lc.bev, on_readable, on_written, on_event, c);
	bufferevent_enable(c->lc.bev, EV_READ);
	arm_deadline(c);
	return 0;
}

static const struct listener_protocol http_protocol = {
	.conn_size = sizeof(struct http_conn),
	.send_buffer = SOCKET_SEND_BUFFER,
	.budgeted = true,
	.open = on_open,
	.close = on_close,
};

int http_server_adopt(struct http_server *s, int fd)
{
	return listener_adopt(s->listener, fd, NULL, 0) ? 0 : -1;
}

struct http_server *http_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	struct listener_setup setup = agent_listener_setup(a, LISTENER_HTTP, &http_protocol, s);

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->agent = a;
	s->budget = &a->client_memory;
	s->counters = &a->counters.http;
	s->listener = listener_new(a->base, addr, &setup, err, errlen);
	if (!s->listener) {
		free(s);
		return NULL;
	}
	return s;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	listener_free(s->listener);
	free(s);
}

int http_server_port(const struct http_server *s)
{
	return listener_port(s->listener);
}
