/*
 * The SPOP responder for HAProxy's SPOE filter. One bufferevent per
 * HAProxy connection and a small state machine: HAPROXY-HELLO first,
 * then NOTIFY frames (fragmented ones reassembled) until either side
 * disconnects. Every NOTIFY is answered at once from the cached node
 * table, so ACKs leave in arrival order and never wait on PostgreSQL.
 * The codec (spoe/spop.h) parses and encodes; this file moves bytes,
 * enforces SPOP's own limits and picks the variables. What every
 * protocol shares (allow_from, max_clients, the connection list, the
 * linger at close) is the listener's (listener.c), and the counters
 * are plain data in struct agent, which metrics.c renders.
 *
 * Memory: what clients can make the agent hold (reassembly buffers of
 * fragmented NOTIFYs, ACKs queued to clients that do not read) counts
 * against the agent's client memory budget (memory_budget.h), which
 * HTTP output shares. Past it, a new reassembly is refused
 * with DISCONNECT 13 (resource allocation error) and a client that has
 * left a backlog unread is shed the same way, its backlog dropped. A
 * reassembly buffer is returned once its message is complete, and after
 * a burst the freed heap goes back to the system (malloc_trim).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ask.h"
#include "clock.h"
#include "listener.h"
#include "spop.h"
#include "spop_server.h"

/*
 * A client that sends NOTIFYs but does not read the ACKs would make
 * us buffer without end: past this many unsent bytes we stop reading
 * from it until its output drains.
 */
#define OUTPUT_PAUSE_BYTES (256 * 1024)

/*
 * The kernel's share: a client that does not read would otherwise let
 * its socket's send buffer autotune to megabytes, and hundreds of them
 * push the whole TCP stack into memory pressure, slowing every other
 * client. ACKs are small; HAProxy reads them at once.
 */
#define SOCKET_SEND_BUFFER (64 * 1024)

/* Hand freed heap back this long after a burst of held memory or connections ended. */
#define TRIM_DELAY_MS 1000
#define TRIM_MIN_BYTES ((size_t)4 << 20)
#define TRIM_MIN_CONNECTIONS 64

/*
 * Input is consumed frame by frame as it arrives, so the input buffer
 * holds at most one partial frame plus one socket read; this bound
 * only guards against that assumption breaking.
 */
#define INPUT_SLACK_BYTES (64 * 1024)

/*
 * Idle time between frames belongs to HAProxy once the connection has
 * carried an answer: 2.6 closes after its "timeout idle", 3.1+ keeps
 * SPOP connections in its server pool and ignores "timeout idle", so a
 * timer of ours would close connections it is about to reuse. TCP
 * keepalive (these values) reaps a peer that vanished.
 */
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_PROBES 3

/* After our last frame and FIN, how long we wait for the client's FIN. */
#define LINGER_MS 1000

#define NODE_ARG "node"
#define DUTY_ARG "duty"
#define STATUS_MESSAGE "pgbdr-status"
#define PEER_NAME_MAX 80
#define SHOWN_NAME_MAX 64

enum conn_state {
	CONN_AWAIT_HELLO,  /* only HAPROXY-HELLO (or DISCONNECT) is valid */
	CONN_READY,        /* handshake done: NOTIFY in, ACK out */
	CONN_CLOSING,      /* last frame queued: flush it, discard input; then the listener lingers */
};

struct spop_conn {
	struct listener_conn lc; /* first: the listener allocates and links it */
	struct spop_server *server;
	/*
	 * One timer serves each state in turn: no complete frame within
	 * client_timeout (no timer while an answered connection is idle
	 * between frames), then a bound on flushing.
	 * A bufferevent read timeout would not do for the first: any
	 * byte resets it, so a client trickling a frame would never
	 * time out.
	 */
	struct event *timer;
	enum conn_state state;
	uint32_t max_frame_size;  /* ours until the HELLO, then negotiated */
	bool read_paused;         /* the client is not reading our ACKs */
	bool answered;            /* an ACK went out: HAProxy owns the idle time */
	bool peer_closed;         /* EOF seen: no FIN to wait for */
	struct spop_reasm reasm;
	uint8_t *reasm_buf;       /* allocated at a fragment, freed at the message's end */
	char peer[PEER_NAME_MAX];
};

struct spop_server {
	struct agent *agent;
	struct listener *listener;
	/* One outgoing frame at a time: the loop is single-threaded. */
	uint8_t *scratch;
	size_t scratch_cap;
	uint32_t max_frame_size;
	size_t max_fragmented;    /* 0: fragmentation not announced */
	const char *capabilities;
	struct timeval client_timeout;
	int64_t linger_ms;
	struct spop_counters *counters;              /* the agent's */
	const struct listener_counters *connections; /* the agent's: how many are open */

	struct memory_budget *budget; /* the agent's, shared with HTTP */
	int open_peak;            /* since the last trim */
	struct event *trim_timer;
};

static const struct logger *conn_log(const struct spop_conn *c)
{
	return &c->server->agent->log;
}

/* ---- the memory budget -------------------------------------------- */

static void note_open(struct spop_server *s)
{
	if ((int)s->connections->open > s->open_peak)
		s->open_peak = (int)s->connections->open;
}

static void release_reasm_buffer(struct spop_conn *c)
{
	if (!c->reasm_buf)
		return;
	free(c->reasm_buf);
	c->reasm_buf = NULL;
	memory_budget_give(c->server->budget, c->reasm.cap);
	spop_reasm_init(&c->reasm, NULL, 0);
}

/* After a burst (much memory or many connections, now gone), trim the heap. */
static void maybe_trim_later(struct spop_server *s)
{
	struct timeval tv = ms_to_timeval(TRIM_DELAY_MS);
	bool memory_burst = s->budget->peak >= TRIM_MIN_BYTES &&
			    s->budget->held < s->budget->peak / 4;
	bool connection_burst = s->open_peak >= TRIM_MIN_CONNECTIONS &&
				(int)s->connections->open < s->open_peak / 4;

	if ((memory_burst || connection_burst) && !evtimer_pending(s->trim_timer, NULL))
		evtimer_add(s->trim_timer, &tv);
}

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
	struct spop_server *s = arg;

	malloc_trim(0);
	memory_budget_reset_peak(s->budget);
	s->open_peak = (int)s->connections->open;
}

/* ---- connection lifetime -------------------------------------------- */

static size_t output_length(const struct spop_conn *c)
{
	return listener_conn_output_length(&c->lc);
}

/* The listener's close callback: what is SPOP's own. */
static void on_close(struct listener_conn *lc)
{
	struct spop_conn *c = (struct spop_conn *)lc;

	release_reasm_buffer(c);
	if (c->timer)
		event_free(c->timer);
	maybe_trim_later(c->server);
}

static void arm_timer(struct spop_conn *c, const struct timeval *tv)
{
	evtimer_add(c->timer, tv);
}

/*
 * After the last frame went out, the listener sends our FIN and reads
 * until the client's: closing with unread input would make the kernel
 * answer with a reset, which can destroy the DISCONNECT frame in
 * flight. A shed client is not read from again: only the timer ends
 * its linger.
 */
static void conn_settle(struct spop_conn *c)
{
	if (c->state != CONN_CLOSING || output_length(c) > 0)
		return;
	if (c->peer_closed) {
		listener_conn_close(&c->lc);
		return;
	}
	evtimer_del(c->timer);
	listener_conn_linger(&c->lc, c->server->linger_ms,
			     (bufferevent_get_enabled(c->lc.bev) & EV_READ) != 0);
}

/* Queue nothing more; what is queued still goes out. */
static void conn_finish(struct spop_conn *c)
{
	c->state = CONN_CLOSING;
	if (c->read_paused) {
		c->read_paused = false;
		bufferevent_enable(c->lc.bev, EV_READ);
	}
	arm_timer(c, &c->server->client_timeout);
}

static void conn_send(struct spop_conn *c, const uint8_t *frame, ssize_t len)
{
	if (len > 0)
		evbuffer_add(bufferevent_get_output(c->lc.bev), frame, (size_t)len);
}

static size_t status_slot(enum spop_status status)
{
	unsigned code = (unsigned)status;

	return code < SPOP_STATUS_SLOTS - 1 ? code : SPOP_STATUS_SLOTS - 1;
}

/* AGENT-DISCONNECT with status, then close. */
static void conn_disconnect(struct spop_conn *c, enum spop_status status)
{
	struct spop_server *s = c->server;
	ssize_t len = spop_encode_agent_disconnect(s->scratch, s->scratch_cap, status, NULL);

	if (status != SPOP_STATUS_NORMAL)
		log_debug(conn_log(c), "spop %s: disconnecting: %s (%d)", c->peer,
			  spop_status_text(status), (int)status);
	conn_send(c, s->scratch, len);
	s->counters->disconnects[status_slot(status)]++;
	conn_finish(c);
}

/* ---- HELLO and DISCONNECT -------------------------------------------- */

static void on_haproxy_hello(struct spop_conn *c, const struct spop_frame *f)
{
	struct spop_server *s = c->server;
	struct spop_haproxy_hello hello;
	enum spop_status status;
	uint32_t size;

	status = spop_decode_haproxy_hello(f->payload, f->payload_len, &hello);
	if (status == SPOP_OK)
		status = spop_validate_hello(&hello);
	if (status != SPOP_OK) {
		conn_disconnect(c, status);
		return;
	}
	/* Validated: HAProxy's size is at least 256, and so is ours. */
	size = hello.max_frame_size < s->max_frame_size ? (uint32_t)hello.max_frame_size
							: s->max_frame_size;
	conn_send(c, s->scratch,
		  spop_encode_agent_hello(s->scratch, s->scratch_cap, size, s->capabilities));
	s->counters->hellos_sent++;
	if (hello.healthcheck) {
		/* option spop-check: HAProxy closes after the AGENT-HELLO. */
		s->counters->healthchecks++;
		conn_finish(c);
		return;
	}
	c->max_frame_size = size;
	c->state = CONN_READY;
}

static void on_haproxy_disconnect(struct spop_conn *c, const struct spop_frame *f)
{
	struct spop_disconnect d;

	if (spop_decode_disconnect(f->payload, f->payload_len, &d) == SPOP_OK && d.has_status &&
	    d.status_code != SPOP_STATUS_NORMAL)
		log_debug(conn_log(c), "spop %s: HAProxy disconnects: %.*s (%u)", c->peer,
			  (int)d.message.len, d.message.ptr, (unsigned)d.status_code);
	/* HAProxy waits for our DISCONNECT before it closes. */
	conn_disconnect(c, SPOP_STATUS_NORMAL);
}

/* ---- NOTIFY ---------------------------------------------------------- */

static bool set_var(struct spop_builder *b, const char *name, struct spop_value value)
{
	return spop_ack_set_var(b, SPOP_SCOPE_TXN, name, &value);
}

/*
 * The most useful variables come first: when a small negotiated
 * frame cannot hold them all, the ACK still carries those.
 */
static bool put_answer_vars(struct spop_builder *b, const struct answer *ans)
{
	return set_var(b, "ready", spop_bool(ans->pass)) &&
	       set_var(b, "weight", spop_int32(ans->weight)) &&
	       set_var(b, "state", spop_cstring(state_name(ans->state))) &&
	       set_var(b, "node", spop_cstring(ans->node));
}

static bool put_answer_details(struct spop_builder *b, const struct answer *ans)
{
	/* Unknown lag is left unset, never reported as 0. */
	if (ans->lag_bytes_known && !set_var(b, "lag_bytes", spop_int64(ans->lag_bytes)))
		return false;
	return set_var(b, "reason", spop_cstring(ans->reason));
}

static bool put_cluster_vars(struct spop_builder *b, const struct agent *a)
{
	const struct node *best = ask_best_node(a, DUTY_ANY);

	return set_var(b, "write_node", spop_cstring(agent_write_leader(a))) &&
	       set_var(b, "best_node", spop_cstring(best ? best->status.name : "")) &&
	       set_var(b, "ready_nodes", spop_int32(agent_ready_nodes(a)));
}

/*
 * The name as it may be shown in a variable that ends up in headers
 * or logs: printable ASCII only, and not too long.
 */
static void printable_name(struct spop_str name, char *out, size_t outlen)
{
	size_t n = name.len < outlen - 1 ? name.len : outlen - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name.ptr[i];

		out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[n] = '\0';
}

/* What a pgbdr-status message asks: arguments node, duty, lag, lag_time. */
struct question {
	bool named;              /* a non-empty "node" */
	struct spop_str node;
	bool duty_given;
	enum duty duty;
	struct answer_limits limits;
	const char *bad;         /* the argument that could not be read */
};

static bool is_text(const struct spop_value *v)
{
	return v->type == SPOP_T_STRING || v->type == SPOP_T_BINARY;
}

/* A text argument as a C string; false when too long or with a NUL inside. */
static bool text_arg(const struct spop_value *v, char *out, size_t outlen)
{
	if (!is_text(v) || v->u.str.len >= outlen || memchr(v->u.str.ptr, '\0', v->u.str.len))
		return false;
	memcpy(out, v->u.str.ptr, v->u.str.len);
	out[v->u.str.len] = '\0';
	return true;
}

static bool int_arg(const struct spop_value *v, int64_t *out)
{
	switch (v->type) {
	case SPOP_T_INT32:
		*out = v->u.i32;
		return true;
	case SPOP_T_UINT32:
		*out = v->u.u32;
		return true;
	case SPOP_T_INT64:
		*out = v->u.i64;
		return true;
	case SPOP_T_UINT64:
		*out = v->u.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->u.u64;
		return true;
	default:
		return false;
	}
}

/* lag (a size, or bytes as an integer) and lag_time (a duration, or seconds). */
static bool limit_arg(const char *key, const struct spop_value *v, struct answer_limits *lim)
{
	char text[32];
	int64_t n;

	if (v->type == SPOP_T_NULL)
		return true; /* a sample HAProxy could not fetch: no limit */
	if (int_arg(v, &n)) {
		if (n < 0)
			return false;
		if (strcmp(key, "lag") == 0)
			lim->lag_bytes = n;
		else
			lim->lag_seconds = (double)n;
		return true;
	}
	return text_arg(v, text, sizeof(text)) && answer_limit_parse(key, text, lim) == 0;
}

static void read_question(struct spop_message *msg, struct question *q)
{
	struct spop_arg arg;
	char word[16];

	memset(q, 0, sizeof(*q));
	q->node = (struct spop_str){ "", 0 };
	q->limits = ANSWER_NO_LIMITS;
	while (spop_message_next_arg(msg, &arg)) {
		if (spop_str_eq(arg.name, NODE_ARG)) {
			/* HAProxy sends NULL for a sample it could not fetch: the default */
			if (is_text(&arg.value) && arg.value.u.str.len > 0) {
				q->named = true;
				q->node = arg.value.u.str;
			}
		} else if (spop_str_eq(arg.name, DUTY_ARG)) {
			if (arg.value.type == SPOP_T_NULL || (is_text(&arg.value) && arg.value.u.str.len == 0))
				continue;
			if (!text_arg(&arg.value, word, sizeof(word)) ||
			    duty_from_name(word, &q->duty) != 0)
				q->bad = DUTY_ARG;
			else
				q->duty_given = true;
		} else if (spop_str_eq(arg.name, "lag") || spop_str_eq(arg.name, "lag_time")) {
			const char *key = spop_str_eq(arg.name, "lag") ? "lag" : "lag_time";

			if (!limit_arg(key, &arg.value, &q->limits))
				q->bad = key;
		}
	}
}

static const struct node *find_node_by_arg(const struct agent *a, struct spop_str name)
{
	char cname[NODE_NAME_MAX];

	/* Too long for a node name, or with a NUL inside: no such node. */
	if (name.len >= sizeof(cname) || memchr(name.ptr, '\0', name.len))
		return NULL;
	memcpy(cname, name.ptr, name.len);
	cname[name.len] = '\0';
	return agent_find_node(a, cname);
}

/* A question that cannot be answered: not ready, and why. */
static bool put_refusal(struct spop_builder *b, const struct agent *a, const char *reason)
{
	return set_var(b, "ready", spop_bool(false)) && set_var(b, "weight", spop_int32(0)) &&
	       set_var(b, "state", spop_cstring("unknown")) && set_var(b, "node", spop_cstring("")) &&
	       put_cluster_vars(b, a) && set_var(b, "reason", spop_cstring(reason));
}

/*
 * A named node gets the answer about it; a duty without a node gets
 * the node that answers it best (the one to route to); neither, the
 * default node's classic answer.
 */
static bool put_status_actions(struct spop_builder *b, const struct agent *a,
			       struct spop_message *msg)
{
	struct question q;
	struct answer ans;
	char reason[REASON_MAX];

	read_question(msg, &q);
	if (q.bad) {
		snprintf(reason, sizeof(reason), "bad argument %s", q.bad);
		return put_refusal(b, a, reason);
	}
	if (q.named) {
		const struct node *n = find_node_by_arg(a, q.node);
		char shown[SHOWN_NAME_MAX];

		if (!n) {
			printable_name(q.node, shown, sizeof(shown));
			snprintf(reason, sizeof(reason), "unknown node %s", shown);
			return put_refusal(b, a, reason);
		}
		ask_node(a, n, q.duty, &q.limits, &ans);
	} else if (q.duty_given) {
		ask_best(a, q.duty, &q.limits, &ans);
	} else {
		const struct node *n = agent_default_node(a);

		if (!n)
			return put_refusal(b, a, "no node");
		ask_node(a, n, q.duty, &q.limits, &ans);
	}
	return put_answer_vars(b, &ans) && put_cluster_vars(b, a) && put_answer_details(b, &ans);
}

static void answer_notify(struct spop_conn *c, uint64_t stream_id, uint64_t frame_id,
			  const uint8_t *payload, size_t len)
{
	struct spop_server *s = c->server;
	struct spop_notify_iter it;
	struct spop_message msg;
	struct spop_builder b;
	bool full = false;

	spop_builder_init(&b, s->scratch, s->scratch_cap);
	if (!spop_ack_begin(&b, stream_id, frame_id, c->max_frame_size)) {
		conn_disconnect(c, SPOP_STATUS_RES_ALLOC);
		return;
	}
	spop_notify_iter_init(&it, payload, len);
	while (spop_notify_next(&it, &msg)) {
		if (!spop_str_eq(msg.name, STATUS_MESSAGE)) {
			s->counters->unknown_messages++;
			continue;
		}
		s->counters->messages++;
		/* We never fragment an ACK: what does not fit is left out. */
		if (!full && !put_status_actions(&b, s->agent, &msg))
			full = true;
	}
	if (it.status != SPOP_OK) {
		spop_frame_cancel(&b);
		conn_disconnect(c, it.status);
		return;
	}
	if (full)
		s->counters->acks_truncated++;
	conn_send(c, s->scratch, spop_frame_finish(&b));
	s->counters->acks_sent++;
	c->answered = true;
}

/*
 * The reassembly buffer costs memory only while a connection has a
 * fragmented message in flight, and only within the budget.
 */
static bool ensure_reasm_buffer(struct spop_conn *c, const struct spop_frame *f)
{
	struct spop_server *s = c->server;
	size_t cap = s->max_fragmented;

	if (c->reasm_buf || cap == 0 || f->type != SPOP_FRAME_NOTIFY ||
	    (f->flags & (SPOP_FLAG_FIN | SPOP_FLAG_ABORT)))
		return true;
	if (!memory_budget_fits(s->budget, cap))
		return false;
	c->reasm_buf = malloc(cap);
	if (!c->reasm_buf)
		return false;
	memory_budget_take(s->budget, cap);
	spop_reasm_init(&c->reasm, c->reasm_buf, cap);
	return true;
}

/*
 * DISCONNECT 13, and nothing more read from this client: its input
 * would cost CPU to discard, and TCP flow control stops it instead.
 */
static void conn_shed(struct spop_conn *c)
{
	c->server->budget->shed++;
	evbuffer_drain(bufferevent_get_output(c->lc.bev), output_length(c));
	release_reasm_buffer(c);
	conn_disconnect(c, SPOP_STATUS_RES_ALLOC);
	/* the linger that follows waits for its timer, not for the client's FIN */
	bufferevent_disable(c->lc.bev, EV_READ);
}

/*
 * Over budget, a client that leaves a backlog unread goes first: its
 * backlog is dropped and it is shed. Returns false if shed.
 */
static bool within_budget(struct spop_conn *c)
{
	if (!memory_budget_spent(c->server->budget) || output_length(c) < CLIENT_BACKLOG_SHED_BYTES)
		return true;
	conn_shed(c);
	return false;
}

static void on_notify_frame(struct spop_conn *c, const struct spop_frame *f)
{
	const uint8_t *payload;
	size_t len;
	enum spop_status status;

	if (!ensure_reasm_buffer(c, f)) {
		conn_shed(c);
		return;
	}
	switch (spop_reasm_feed(&c->reasm, f, &payload, &len, &status)) {
	case SPOP_REASM_IN_PROGRESS:
		return;
	case SPOP_REASM_ABORTED:
		/* The stream is gone on HAProxy's side: nobody waits for an ACK. */
		c->server->counters->aborted++;
		release_reasm_buffer(c);
		return;
	case SPOP_REASM_ERROR:
		conn_disconnect(c, status);
		return;
	case SPOP_REASM_COMPLETE:
		if (c->reasm_buf && payload == c->reasm_buf)
			c->server->counters->reassembled++;
		answer_notify(c, f->stream_id, f->frame_id, payload, len);
		release_reasm_buffer(c);
		return;
	}
}

/* ---- frame dispatch -------------------------------------------------- */

static void count_frame_in(struct spop_server *s, uint8_t type)
{
	size_t slot = type < SPOP_FRAME_SLOTS - 1 ? type : SPOP_FRAME_SLOTS - 1;

	s->counters->frames_in[slot]++;
}

static void on_frame_before_hello(struct spop_conn *c, const struct spop_frame *f)
{
	switch (f->type) {
	case SPOP_FRAME_HAPROXY_HELLO:
		on_haproxy_hello(c, f);
		break;
	case SPOP_FRAME_HAPROXY_DISCONNECT:
		on_haproxy_disconnect(c, f);
		break;
	default:
		/* NOTIFY before HELLO, or a type we do not know */
		conn_disconnect(c, SPOP_STATUS_INVALID);
		break;
	}
}

static void on_frame_ready(struct spop_conn *c, const struct spop_frame *f)
{
	switch (f->type) {
	case SPOP_FRAME_NOTIFY:
	case SPOP_FRAME_UNSET:
		on_notify_frame(c, f);
		break;
	case SPOP_FRAME_HAPROXY_DISCONNECT:
		on_haproxy_disconnect(c, f);
		break;
	default:
		/* a second HELLO, an agent's frame type, or an unknown one */
		conn_disconnect(c, SPOP_STATUS_INVALID);
		break;
	}
}

/* buf holds exactly one frame, as spop_frame_extract delimited it. */
static void handle_frame(struct spop_conn *c, const uint8_t *buf, size_t len)
{
	struct spop_frame f;
	enum spop_status status = spop_frame_decode(buf, len, &f);

	count_frame_in(c->server, buf[SPOP_FRAME_LEN_SIZE]);
	if (status != SPOP_OK) {
		conn_disconnect(c, status);
		return;
	}
	if (c->state == CONN_AWAIT_HELLO)
		on_frame_before_hello(c, &f);
	else
		on_frame_ready(c, &f);
}

static bool accepts_frames(const struct spop_conn *c)
{
	return c->state == CONN_AWAIT_HELLO || c->state == CONN_READY;
}

static void pause_reading(struct spop_conn *c)
{
	c->read_paused = true;
	bufferevent_disable(c->lc.bev, EV_READ);
}

/* Handle every complete frame buffered; a partial one waits for more. */
static void process_input(struct spop_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->lc.bev);
	bool progressed = false;

	while (accepts_frames(c)) {
		size_t avail = evbuffer_get_length(in);
		enum spop_status status;
		size_t frame_len;
		const uint8_t *p;

		if (!within_budget(c))
			break;
		if (output_length(c) > OUTPUT_PAUSE_BYTES) {
			pause_reading(c);
			break;
		}
		if (avail < SPOP_FRAME_LEN_SIZE)
			break;
		/* The length prefix alone tells the frame size, or that it is too big. */
		p = evbuffer_pullup(in, SPOP_FRAME_LEN_SIZE);
		if (spop_frame_extract(p, SPOP_FRAME_LEN_SIZE, c->max_frame_size, &frame_len,
				       &status) == SPOP_EXTRACT_ERROR) {
			conn_disconnect(c, status);
			break;
		}
		if (avail < frame_len)
			break;
		p = evbuffer_pullup(in, (ev_ssize_t)frame_len);
		if (!p) {
			conn_disconnect(c, SPOP_STATUS_RES_ALLOC);
			break;
		}
		handle_frame(c, p, frame_len);
		evbuffer_drain(in, frame_len);
		progressed = true;
	}
	if (!accepts_frames(c))
		evbuffer_drain(in, evbuffer_get_length(in));
	else if (c->answered && evbuffer_get_length(in) == 0 && !c->reasm.active)
		evtimer_del(c->timer);
	else if (progressed || !evtimer_pending(c->timer, NULL))
		arm_timer(c, &c->server->client_timeout);
}

/* ---- libevent callbacks ---------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct spop_conn *c = arg;

	process_input(c);
	conn_settle(c);
}

/* Called each time the output buffer has been flushed completely. */
static void on_write(struct bufferevent *bev, void *arg)
{
	struct spop_conn *c = arg;

	if (c->read_paused) {
		c->read_paused = false;
		bufferevent_enable(c->lc.bev, EV_READ);
		/* Frames may be waiting already: no read event would announce them. */
		process_input(c);
	}
	conn_settle(c);
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
	struct spop_conn *c = arg;

	if (events & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		/* A reset, or output that made no progress for client_timeout */
		listener_conn_close(&c->lc);
		return;
	}
	if (events & BEV_EVENT_EOF) {
		/*
		 * A client may half-close after its last NOTIFY and still
		 * read the ACKs; a truncated frame is simply dropped.
		 */
		c->peer_closed = true;
		if (c->state != CONN_CLOSING)
			conn_finish(c);
		conn_settle(c);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct spop_conn *c = arg;

	if (!accepts_frames(c)) {
		listener_conn_close(&c->lc);
		return;
	}
	c->server->counters->timeouts++;
	conn_disconnect(c, SPOP_STATUS_TIMEOUT);
	conn_settle(c);
}

/* ---- accepting -------------------------------------------------------- */

static void format_peer(const struct sockaddr *sa, int socklen, char *out, size_t outlen)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getnameinfo(sa, (socklen_t)socklen, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, outlen, "?");
	else if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%s", host, port);
	else
		snprintf(out, outlen, "%s:%s", host, port);
}

/* The listener's open callback: socket options, state and callbacks of a new client. */
static int on_open(void *arg, struct listener_conn *lc, const struct sockaddr *sa, int socklen)
{
	struct spop_server *s = arg;
	struct spop_conn *c = (struct spop_conn *)lc;
	evutil_socket_t fd = bufferevent_getfd(lc->bev);
	int one = 1;
	int keep_idle = KEEPALIVE_IDLE_S, keep_intvl = KEEPALIVE_INTERVAL_S;
	int keep_cnt = KEEPALIVE_PROBES;

	c->server = s;
	c->timer = evtimer_new(s->agent->base, on_timer, c);
	if (!c->timer)
		return -1;
	c->state = CONN_AWAIT_HELLO;
	c->max_frame_size = s->max_frame_size;
	spop_reasm_init(&c->reasm, NULL, 0);
	if (sa)
		format_peer(sa, socklen, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "?");
	/* Small ACKs must leave at once: HAProxy's stream is waiting. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* An idle connection has no timer (see process_input): keepalive
	 * finds the HAProxy that vanished without closing it. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keep_idle, sizeof(keep_idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &keep_intvl, sizeof(keep_intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &keep_cnt, sizeof(keep_cnt));

	bufferevent_setcb(c->lc.bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->lc.bev, EV_READ, 0,
				 SPOP_FRAME_LEN_SIZE + (size_t)s->max_frame_size + INPUT_SLACK_BYTES);
	bufferevent_setwatermark(c->lc.bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(c->lc.bev, NULL, &s->client_timeout);
	bufferevent_enable(c->lc.bev, EV_READ | EV_WRITE);
	arm_timer(c, &s->client_timeout);
	note_open(s);
	return 0;
}

/* ---- the server --------------------------------------------------------- */

static const struct listener_protocol spop_protocol = {
	.conn_size = sizeof(struct spop_conn),
	.send_buffer = SOCKET_SEND_BUFFER,
	.budgeted = true,
	.open = on_open,
	.close = on_close,
};

static int64_t linger_ms_for(const struct agent_config *cfg)
{
	return cfg->client_timeout_ms < LINGER_MS ? cfg->client_timeout_ms : LINGER_MS;
}

struct spop_server *spop_server_new(struct agent *a, const struct listen_addr *addr,
				    char *err, size_t errlen)
{
	const struct agent_config *cfg = &a->config;
	struct spop_server *s = calloc(1, sizeof(*s));
	struct listener_setup setup = agent_listener_setup(a, LISTENER_SPOP, &spop_protocol, s);

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->agent = a;
	s->budget = &a->client_memory;
	s->counters = &a->counters.spop;
	s->connections = &a->counters.listeners[LISTENER_SPOP];
	s->max_frame_size = (uint32_t)cfg->spoe_max_frame_size;
	s->max_fragmented = cfg->spoe_max_fragmented > 0 ? (size_t)cfg->spoe_max_fragmented : 0;
	s->capabilities = s->max_fragmented > 0 ? "pipelining,fragmentation" : "pipelining";
	s->client_timeout = ms_to_timeval(cfg->client_timeout_ms);
	s->linger_ms = linger_ms_for(cfg);
	s->scratch_cap = SPOP_FRAME_LEN_SIZE + (size_t)s->max_frame_size;
	s->scratch = malloc(s->scratch_cap);
	s->trim_timer = evtimer_new(a->base, on_trim, s);
	if (!s->scratch || !s->trim_timer) {
		snprintf(err, errlen, "out of memory");
		if (s->trim_timer)
			event_free(s->trim_timer);
		free(s->scratch);
		free(s);
		return NULL;
	}
	s->listener = listener_new(a->base, addr, &setup, err, errlen);
	if (!s->listener) {
		event_free(s->trim_timer);
		free(s->scratch);
		free(s);
		return NULL;
	}
	return s;
}

/* SIGHUP: new connections (and new reassemblies) take the new settings. */
void spop_server_reconfigure(struct spop_server *s, const struct agent_config *cfg,
			     const struct logger *log)
{
	size_t frame = (size_t)cfg->spoe_max_frame_size;
	size_t fragmented = cfg->spoe_max_fragmented > 0 ? (size_t)cfg->spoe_max_fragmented : 0;

	/* the scratch buffer never shrinks: open connections keep their frame size */
	if (SPOP_FRAME_LEN_SIZE + frame > s->scratch_cap) {
		uint8_t *bigger = realloc(s->scratch, SPOP_FRAME_LEN_SIZE + frame);

		if (!bigger) {
			log_error(log, "reload: spoe_max_frame_size stays %u: out of memory",
				  (unsigned)s->max_frame_size);
			frame = s->max_frame_size;
		} else {
			s->scratch = bigger;
			s->scratch_cap = SPOP_FRAME_LEN_SIZE + frame;
		}
	}
	if (frame != s->max_frame_size || fragmented != s->max_fragmented)
		log_info(log, "reload: spop max-frame-size %zu, fragmented messages up to %zu bytes, "
			 "for new connections", frame, fragmented);
	s->max_frame_size = (uint32_t)frame;
	s->max_fragmented = fragmented;
	s->capabilities = fragmented > 0 ? "pipelining,fragmentation" : "pipelining";
	s->client_timeout = ms_to_timeval(cfg->client_timeout_ms);
	s->linger_ms = linger_ms_for(cfg);
}

void spop_server_free(struct spop_server *s)
{
	if (!s)
		return;
	listener_free(s->listener); /* closes every connection, which may arm the trim */
	event_free(s->trim_timer);
	free(s->scratch);
	free(s);
}
