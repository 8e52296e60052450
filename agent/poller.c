/*
 * The node poller. A small state machine on libpq's async API:
 *
 *   IDLE -> RESOLVING -> CONNECTING -> DETECTING -> PREPARING -> PROBING -> CONNECTED
 *                                                                  ^            |
 *                                                                  +------------+
 *
 * The flavor's probe is prepared once per connection: planning it
 * costs PostgreSQL more than running it, and it runs every interval.
 * A round starts every interval and must end within timeout, whatever
 * phase it is in; a round that fails drops the connection, so the next
 * one starts clean. No call here can block: names are resolved with
 * evdns (libpq's own getaddrinfo() would stall the loop on a dead DNS
 * server) and the connection is polled, never waited on.
 *
 * A node may be hostile (or a man in the middle may speak for it), so
 * nothing it sends can hold the loop or the memory: results arrive one
 * row at a time and a round stops past PROBE_MAX_ROWS rows or
 * PROBE_MAX_REPLY_BYTES bytes; one callback reads at most READ_PER_TURN
 * bytes (read_budget.c) and handles at most RESULTS_PER_TURN results
 * before yielding to the other events; a COPY
 * answer is a protocol error that drops the connection; notices go to
 * the logger, rate-limited; and every piece of server text is scrubbed
 * (secrets, control characters, invalid UTF-8) where it enters.
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <linux/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "clock.h"
#include "connect_slots.h"
#include "poller.h"
#include "probe.h"
#include "read_budget.h"
#include "scrub.h"

enum poller_phase {
	PHASE_IDLE,       /* no connection */
	PHASE_RESOLVING,
	PHASE_CONNECTING,
	PHASE_DETECTING,  /* connected, learning version and flavor */
	PHASE_PREPARING,  /* preparing the flavor's probe statement */
	PHASE_PROBING,
	PHASE_CONNECTED,  /* between rounds, watching for a dropped link */
};

#define RESOLVED_MAX 4
#define NODE_HOST_MAX 255

/* What a probe answer may cost; real ones are a few rows of a few KB. */
#define PROBE_MAX_ROWS 4096
#define PROBE_MAX_REPLY_BYTES (4 << 20)
/* Bytes read from a node's socket per callback: well under a millisecond. */
#define READ_PER_TURN (64 << 10)
/* Results handled per callback before the loop serves others. */
#define RESULTS_PER_TURN 256
#define NOTICE_MAX 200

struct poller {
	struct event_base *base;
	struct evdns_base *dns;
	const struct node_config *const *cfg; /* the owner's: see poller_new() */
	struct poller_settings settings;
	const struct logger *log;
	const char *name;
	poller_result_cb cb;
	void *cb_arg;

	enum poller_phase phase;
	PGconn *conn;
	struct conn_caps caps;
	const struct probe_ops *probe; /* NULL until detected */
	bool prepared;                 /* the probe statement exists on conn */
	unsigned statement_gen;        /* names each prepared probe statement */
	int rounds_since_detect;       /* re-detect the flavor every few rounds */
	/* the latest result of the query in flight; the final one is what
	 * counts, and it may arrive some reads before libpq's closing NULL */
	PGresult *pending;
	int rows;                      /* rows of the query in flight */
	bool accumulating;             /* pending collects single-row results */
	/* TCP bytes read from conn when the round (or the connection) began */
	uint64_t bytes_baseline;
	struct log_limit notice_limit;

	struct event *io;
	int io_fd;
	short io_what;
	struct event *deadline;
	struct event *next_round;
	struct evdns_getaddrinfo_request *dns_req;
	/*
	 * Resolved addresses, as libpq wants them for a name with several:
	 * hostaddr "a1,a2" with host "name,name", so that libpq still tries
	 * each in turn (localhost is ::1 and 127.0.0.1) and still checks
	 * .pgpass and certificates against the name.
	 */
	char hostaddr[RESOLVED_MAX * (INET6_ADDRSTRLEN + 1)];
	char host_repeated[RESOLVED_MAX * (NODE_HOST_MAX + 1)];

	/* a connection attempt in flight holds one of settings.slots */
	struct connect_waiter slot;

	bool in_round;
	int64_t round_started_ms;
	int failed_rounds;
	uint32_t jitter;	/* xorshift32 state for the retry spacing */
};

static void start_round(struct poller *p);
static void on_io(evutil_socket_t fd, short what, void *arg);

static void unwatch(struct poller *p)
{
	if (p->io) {
		event_free(p->io);
		p->io = NULL;
	}
	p->io_fd = -1;
	p->io_what = 0;
}

/* libpq may switch sockets while connecting (one per address tried). */
static void watch(struct poller *p, short what)
{
	int fd = PQsocket(p->conn);

	if (p->io && (fd != p->io_fd || what != p->io_what))
		unwatch(p);
	if (!p->io) {
		p->io = event_new(p->base, fd, what, on_io, p);
		p->io_fd = fd;
		p->io_what = what;
	}
	event_add(p->io, NULL);
}

/* The attempt is over (connected, failed, timed out): the next waiter may go. */
static void release_slot(struct poller *p)
{
	if (p->settings.slots && p->slot.state == SLOT_HOLDING)
		connect_slots_leave(p->settings.slots, &p->slot);
}

static void drop_connection(struct poller *p)
{
	release_slot(p);
	PQclear(p->pending);
	p->pending = NULL;
	p->rows = 0;
	p->accumulating = false;
	unwatch(p);
	if (p->dns_req) {
		struct evdns_getaddrinfo_request *req = p->dns_req;

		p->dns_req = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (p->conn) {
		/* non-blocking mode: the Terminate message is sent if it fits */
		PQfinish(p->conn);
		p->conn = NULL;
	}
	p->probe = NULL;
	p->prepared = false;
	p->phase = PHASE_IDLE;
}

static void schedule_next_round(struct poller *p, int64_t delay_ms)
{
	struct timeval tv = ms_to_timeval(delay_ms < 0 ? 0 : delay_ms);

	evtimer_add(p->next_round, &tv);
}

static uint32_t next_jitter(struct poller *p)
{
	uint32_t x = p->jitter;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	p->jitter = x;
	return x;
}

/*
 * Failed rounds back off to between one and two intervals, drawn at
 * random each time: enough to thin the connection attempts against a
 * struggling server, short enough that a recovered node is seen within
 * two intervals. The random part matters after an outage of many nodes
 * at once (a PostgreSQL host or a network path): their pollers failed
 * together, and without it they would all retry, and reconnect to the
 * recovered servers, in the same millisecond.
 */
static int64_t next_round_delay(struct poller *p)
{
	int64_t spacing = p->settings.interval_ms;

	if (p->failed_rounds > 1)
		spacing += next_jitter(p) % (uint32_t)(p->settings.interval_ms + 1);
	return p->round_started_ms + spacing - clock_ms();
}

static void finish_round(struct poller *p, const struct node_facts *facts)
{
	int check_ms = (int)(clock_ms() - p->round_started_ms);

	p->in_round = false;
	evtimer_del(p->deadline);
	p->failed_rounds = facts->outcome == PROBE_OK ? 0 : p->failed_rounds + 1;
	schedule_next_round(p, next_round_delay(p));
	p->cb(p->cb_arg, facts, check_ms);
}

static void fail_round(struct poller *p, enum probe_outcome outcome,
		       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Every secret of the node: configured, and the one libpq actually used. */
static void node_secrets(const struct poller *p, struct secret_list *s)
{
	memset(s, 0, sizeof(*s));
	secret_list_add(s, node_config_param(*p->cfg, "password"));
	secret_list_add(s, node_config_param(*p->cfg, "sslpassword"));
	if (p->conn)
		secret_list_add(s, PQpass(p->conn));
}

/* Server text as it enters: its first line, scrubbed, within len. */
static const char *server_text(const struct poller *p, const char *msg, char *buf, size_t len)
{
	struct secret_list s;

	node_secrets(p, &s);
	scrub_text(buf, len, msg, strcspn(msg, "\n"), &s);
	return buf;
}

static void fail_round(struct poller *p, enum probe_outcome outcome,
		       const char *fmt, ...)
{
	struct node_facts facts = { .outcome = outcome };
	char raw[sizeof(facts.error)], redacted[sizeof(facts.error)];
	struct secret_list secrets;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* libpq errors can quote the conninfo back */
	log_redact_conninfo(raw, redacted, sizeof(redacted));
	node_secrets(p, &secrets);
	scrub_text(facts.error, sizeof(facts.error), redacted, strlen(redacted), &secrets);
	log_debug(p->log, "node %s: %s", p->name, facts.error);

	drop_connection(p);
	if (p->in_round) {
		finish_round(p, &facts);
	} else {
		/* lost between rounds: report now, reconnect at once */
		p->round_started_ms = clock_ms();
		p->failed_rounds++;
		schedule_next_round(p, 0);
		p->cb(p->cb_arg, &facts, 0);
	}
}

/*
 * TCP bytes read so far from the connection (received by the kernel,
 * less what still waits in its buffer); false for other sockets.
 */
static bool bytes_received(const struct poller *p, uint64_t *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int fd = p->conn ? PQsocket(p->conn) : -1;
	int unread = 0;

	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received) ||
	    ioctl(fd, FIONREAD, &unread) != 0 || unread < 0 ||
	    (uint64_t)unread > ti.tcpi_bytes_received)
		return false;
	*out = ti.tcpi_bytes_received - (uint64_t)unread;
	return true;
}

static void reset_byte_budget(struct poller *p)
{
	uint64_t n;

	p->bytes_baseline = bytes_received(p, &n) ? n : 0;
}

/* Whether the server sent more than a probe answer may take; fails the round if so. */
static bool over_budget(struct poller *p)
{
	uint64_t n;

	if (!bytes_received(p, &n) || n - p->bytes_baseline <= PROBE_MAX_REPLY_BYTES)
		return false;
	fail_round(p, PROBE_QUERY_FAILED, "protocol error: the server sent over %d bytes",
		   PROBE_MAX_REPLY_BYTES);
	return true;
}

/* Server notices go to the log: scrubbed, one line, rate-limited per node. */
static void on_notice(void *arg, const char *message)
{
	struct poller *p = arg;
	char line[NOTICE_MAX];

	server_text(p, message, line, sizeof(line));
	log_limited(p->log, &p->notice_limit, LOG_LEVEL_INFO, "node %s: server notice: %s",
		    p->name, line);
}

/*
 * A node can change under a live connection (it joins BDR, gets a
 * subscription): every REDETECT_EVERY rounds the round starts with the
 * detect query again (one cheap catalog read), and a changed catalog
 * prepares the probe anew under a new statement name.
 */
#define REDETECT_EVERY 5

static const char *statement_name(const struct poller *p, char *buf, size_t len)
{
	snprintf(buf, len, "pgbdr_probe_%u", p->statement_gen);
	return buf;
}

/* After PQsend*(): wait for the answer, or fail if the send did not go. */
static void await_result(struct poller *p, int sent, enum poller_phase phase)
{
	char msg[REASON_MAX];

	if (!sent) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   server_text(p, PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	p->phase = phase;
	/* a pending flush needs write readiness as well */
	watch(p, PQflush(p->conn) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

/* Rows come one at a time, so that no answer is held whole before it is counted. */
static int row_by_row(PGconn *conn, int sent)
{
	if (sent)
		PQsetSingleRowMode(conn);
	return sent;
}

static void send_probe(struct poller *p)
{
	char buf[PROBE_QUERY_MAX];
	char name[32];

	if (!p->probe || p->rounds_since_detect >= REDETECT_EVERY)
		await_result(p, row_by_row(p->conn, PQsendQuery(p->conn, probe_detect_query())),
			     PHASE_DETECTING);
	else if (!p->prepared)
		await_result(p, PQsendPrepare(p->conn, statement_name(p, name, sizeof(name)),
					      p->probe->query(&p->caps, buf, sizeof(buf)), 0, NULL),
			     PHASE_PREPARING);
	else
		await_result(p, row_by_row(p->conn, PQsendQueryPrepared(p->conn,
					statement_name(p, name, sizeof(name)), 0, NULL, NULL, NULL, 0)),
			     PHASE_PROBING);
}

static void handle_detect_result(struct poller *p, const PGresult *res)
{
	char err[REASON_MAX];
	struct conn_caps before = p->caps;
	bool require_bdr = (*p->cfg)->classic && !(*p->cfg)->flavor_set;

	if (probe_detect_parse(res, (*p->cfg)->flavor, require_bdr, &p->caps, err,
			       sizeof(err)) < 0) {
		fail_round(p, PROBE_QUERY_FAILED, "%s", err);
		return;
	}
	if (p->probe && memcmp(&before, &p->caps, sizeof(before)) != 0) {
		p->prepared = false;
		p->statement_gen++;
	}
	if (!p->probe || before.flavor != p->caps.flavor)
		log_info(p->log, "node %s: PostgreSQL %d, flavor %s%s", p->name,
			 p->caps.server_version, flavor_name(p->caps.flavor),
			 p->probe ? " (changed)" : "");
	if (!p->probe && p->caps.is_superuser)
		log_warning(p->log, "node %s: connected as a superuser; a monitoring role with"
			    " the grants in sql/grants/ is enough", p->name);
	p->probe = probe_for_flavor(p->caps.flavor);
	p->rounds_since_detect = 0;
	send_probe(p);
}

/*
 * Scrub a fixed-size field of the facts in place. Its size is checked
 * against the copy at compile time, so no field is ever cut short.
 */
#define SCRUB_FIELD_MAX REASON_MAX
#define SCRUB_FIELD(p, field)                                                        \
	do {                                                                          \
		_Static_assert(sizeof(field) <= SCRUB_FIELD_MAX,                      \
			       #field " does not fit scrub_in_place()'s copy");       \
		scrub_in_place(p, field, sizeof(field));                              \
	} while (0)

/* Catalog strings are server text too: they end up in reasons. */
static void scrub_in_place(const struct poller *p, char *text, size_t len)
{
	char copy[SCRUB_FIELD_MAX];

	server_text(p, text, copy, len);
	memcpy(text, copy, strlen(copy) + 1);
}

static void handle_probe_result(struct poller *p, const PGresult *res)
{
	struct node_facts facts = { .outcome = PROBE_OK, .flavor = p->caps.flavor };

	p->probe->parse(res, &p->caps, &facts);
	SCRUB_FIELD(p, facts.problem);
	SCRUB_FIELD(p, facts.impairment);
	SCRUB_FIELD(p, facts.catalog_name);
	SCRUB_FIELD(p, facts.catalog_write_leader);
	for (int i = 0; i < facts.n_peers && i < MAX_PEERS; i++)
		SCRUB_FIELD(p, facts.peers[i].name);
	p->phase = PHASE_CONNECTED;
	watch(p, EV_READ);
	finish_round(p, &facts);
}

/*
 * A failed statement drops the connection: the catalog may have
 * changed under us (an upgrade, a dropped extension), and the next
 * round detects and prepares everything again on a clean session.
 */
static void handle_query_error(struct poller *p, const PGresult *res)
{
	char msg[REASON_MAX];
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *what = p->phase == PHASE_DETECTING ? "detect" :
			   p->phase == PHASE_PREPARING ? "prepare probe" : "probe";

	server_text(p, primary ? primary : PQresultErrorMessage(res), msg, sizeof(msg));
	fail_round(p, PROBE_QUERY_FAILED, "%s query failed: %s", what, msg);
}

static void handle_prepared(struct poller *p)
{
	p->prepared = true;
	send_probe(p);
}

static void handle_final_result(struct poller *p, PGresult *res)
{
	ExecStatusType want = p->phase == PHASE_PREPARING ? PGRES_COMMAND_OK : PGRES_TUPLES_OK;

	if (!res)
		fail_round(p, PROBE_QUERY_FAILED, "query returned no result");
	else if (PQresultStatus(res) != want)
		handle_query_error(p, res);
	else if (p->phase == PHASE_DETECTING)
		handle_detect_result(p, res);
	else if (p->phase == PHASE_PREPARING)
		handle_prepared(p);
	else
		handle_probe_result(p, res);
	PQclear(res);
}

/*
 * In COPY state libpq hands out the same COPY result forever: the probe
 * never asks for one, so it is a protocol error, and the connection
 * goes (PQfinish ends it without waiting on the server).
 */
static bool is_copy(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_COPY_OUT || st == PGRES_COPY_IN || st == PGRES_COPY_BOTH;
}

static void fail_copy(struct poller *p, PGresult *res)
{
	PQclear(res);
	fail_round(p, PROBE_QUERY_FAILED, "protocol error: the server answered with COPY");
}

/* Append one single-row result to pending; -1 when that ended the round. */
static int add_row(struct poller *p, PGresult *row)
{
	if (!p->accumulating) {
		PQclear(p->pending);
		p->pending = PQcopyResult(row, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
		p->accumulating = p->pending != NULL;
	} else {
		int r = PQntuples(p->pending);

		for (int c = 0; c < PQnfields(row) && p->accumulating; c++) {
			bool null = PQgetisnull(row, 0, c);

			p->accumulating = PQsetvalue(p->pending, r, c, null ? NULL : PQgetvalue(row, 0, c),
						     null ? -1 : PQgetlength(row, 0, c));
		}
	}
	PQclear(row);
	if (!p->accumulating) {
		fail_round(p, PROBE_QUERY_FAILED, "out of memory reading the probe's rows");
		return -1;
	}
	if (++p->rows > PROBE_MAX_ROWS) {
		fail_round(p, PROBE_QUERY_FAILED, "protocol error: the server sent over %d rows",
			   PROBE_MAX_ROWS);
		return -1;
	}
	return 0;
}

/* Keep what counts of one result; -1 when it ended the round. */
static int take_result(struct poller *p, PGresult *res)
{
	if (is_copy(res)) {
		fail_copy(p, res);
		return -1;
	}
	if (PQresultStatus(res) == PGRES_SINGLE_TUPLE)
		return add_row(p, res);
	if (p->accumulating && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0) {
		/* the end of a single-row stream: the rows collected are the answer */
		PQclear(res);
		p->accumulating = false;
		return 0;
	}
	PQclear(p->pending);
	p->pending = res;
	p->accumulating = false;
	p->rows = 0;
	return 0;
}

/* More is buffered than one turn may take: come back after the other events. */
static void yield_turn(struct poller *p)
{
	if (p->io)
		event_active(p->io, EV_READ, 0);
}

/* Drain what arrived; act only once the whole query result is in. */
static void read_results(struct poller *p)
{
	char msg[REASON_MAX];

	if (!PQconsumeInput(p->conn)) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   server_text(p, PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	if (over_budget(p))
		return;
	for (int n = 0; n < RESULTS_PER_TURN; n++) {
		PGresult *res;

		if (PQisBusy(p->conn)) {
			watch(p, EV_READ);
			return;
		}
		res = PQgetResult(p->conn);
		if (!res) {
			PGresult *final = p->pending;

			p->pending = NULL;
			p->rows = 0;
			p->accumulating = false;
			handle_final_result(p, final);
			return;
		}
		if (take_result(p, res) < 0)
			return;
	}
	yield_turn(p);
}

/* Between rounds the server may close on us (restart, idle kill). */
static void check_idle_connection(struct poller *p)
{
	char msg[REASON_MAX];
	PGresult *res;
	PGnotify *note;

	if (!PQconsumeInput(p->conn) || PQstatus(p->conn) != CONNECTION_OK) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   server_text(p, PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	if (over_budget(p))
		return;
	for (int n = 0; n < RESULTS_PER_TURN; n++) {
		if ((note = PQnotifies(p->conn)) != NULL) {
			PQfreemem(note);
			continue;
		}
		if (PQisBusy(p->conn) || (res = PQgetResult(p->conn)) == NULL) {
			watch(p, EV_READ);
			return;
		}
		if (is_copy(res)) {
			fail_copy(p, res);
			return;
		}
		PQclear(res);
	}
	yield_turn(p);
}

static void continue_connect(struct poller *p)
{
	char msg[REASON_MAX];

	if (over_budget(p))
		return;
	switch (PQconnectPoll(p->conn)) {
	case PGRES_POLLING_READING:
		watch(p, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(p, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		release_slot(p);
		if (PQsetnonblocking(p->conn, 1) != 0) {
			fail_round(p, PROBE_CONNECT_FAILED, "cannot make the connection non-blocking");
			break;
		}
		send_probe(p);
		break;
	default:
		fail_round(p, PROBE_CONNECT_FAILED, "connection failed: %s",
			   server_text(p, PQerrorMessage(p->conn), msg, sizeof(msg)));
		break;
	}
}

static void handle_io(struct poller *p, short what)
{
	if ((what & EV_WRITE) && p->phase != PHASE_CONNECTING && PQflush(p->conn) == 1) {
		watch(p, EV_READ | EV_WRITE);
		return;
	}
	switch (p->phase) {
	case PHASE_CONNECTING:
		continue_connect(p);
		break;
	case PHASE_DETECTING:
	case PHASE_PREPARING:
	case PHASE_PROBING:
		read_results(p);
		break;
	case PHASE_CONNECTED:
		check_idle_connection(p);
		break;
	case PHASE_IDLE:
	case PHASE_RESOLVING:
		break;
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;

	read_budget_begin(PQsocket(p->conn), READ_PER_TURN);
	handle_io(p, what);
	read_budget_end();
}

static void start_connect(struct poller *p)
{
	const char *kw[64];
	const char *val[64];
	int n = 0;

	for (int i = 0; i < (*p->cfg)->n_params && n < 62; i++) {
		kw[n] = (*p->cfg)->keywords[i];
		val[n] = (*p->cfg)->values[i];
		if (p->hostaddr[0] && strcmp(kw[n], "host") == 0)
			val[n] = p->host_repeated;
		n++;
	}
	if (p->hostaddr[0]) {
		kw[n] = "hostaddr";
		val[n++] = p->hostaddr;
	}
	kw[n] = NULL;
	val[n] = NULL;

	p->conn = PQconnectStartParams(kw, val, 0);
	if (!p->conn) {
		fail_round(p, PROBE_CONNECT_FAILED, "out of memory starting a connection");
		return;
	}
	PQsetNoticeProcessor(p->conn, on_notice, p);
	p->bytes_baseline = 0; /* a new socket counts from zero */
	if (PQstatus(p->conn) == CONNECTION_BAD) {
		char msg[REASON_MAX];

		fail_round(p, PROBE_CONNECT_FAILED, "connection failed: %s",
			   server_text(p, PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	p->phase = PHASE_CONNECTING;
	/* libpq's protocol: start as if PQconnectPoll had asked to write */
	watch(p, EV_WRITE);
}

/*
 * Only a single host name needs us: sockets, numeric addresses, an
 * explicit hostaddr and multi-host lists are handed to libpq as they are.
 */
static const char *host_to_resolve(const struct poller *p)
{
	const char *host = node_config_param(*p->cfg, "host");
	unsigned char buf[sizeof(struct in6_addr)];

	if (!host || !host[0] || host[0] == '/' || host[0] == '@')
		return NULL;
	if (node_config_param(*p->cfg, "hostaddr") || strchr(host, ','))
		return NULL;
	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return NULL;
	return host;
}

static void append_address(struct poller *p, const struct evutil_addrinfo *ai,
			   const char *host)
{
	char addr[INET6_ADDRSTRLEN];
	size_t used = strlen(p->hostaddr);
	size_t used_host = strlen(p->host_repeated);

	if (ai->ai_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
			  addr, sizeof(addr));
	else if (ai->ai_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr,
			  addr, sizeof(addr));
	else
		return;
	snprintf(p->hostaddr + used, sizeof(p->hostaddr) - used, "%s%s", used ? "," : "", addr);
	snprintf(p->host_repeated + used_host, sizeof(p->host_repeated) - used_host, "%s%s",
		 used_host ? "," : "", host);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct poller *p = arg;
	const char *host = node_config_param(*p->cfg, "host");
	int n = 0;

	if (result == EVUTIL_EAI_CANCEL)
		return; /* drop_connection() already moved on */
	p->dns_req = NULL;
	if (result != 0 || !res) {
		fail_round(p, PROBE_RESOLVE_FAILED, "cannot resolve host %s: %s", host,
			   evutil_gai_strerror(result));
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	p->hostaddr[0] = '\0';
	p->host_repeated[0] = '\0';
	for (const struct evutil_addrinfo *ai = res; ai && n < RESOLVED_MAX; ai = ai->ai_next, n++)
		append_address(p, ai, host);
	evutil_freeaddrinfo(res);
	start_connect(p);
}

static void begin_connect(struct poller *p)
{
	const char *host = host_to_resolve(p);
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct evdns_getaddrinfo_request *req;

	p->hostaddr[0] = '\0';
	p->host_repeated[0] = '\0';
	if (!host || !p->dns || strlen(host) > NODE_HOST_MAX) {
		start_connect(p);
		return;
	}
	p->phase = PHASE_RESOLVING;
	/* the callback may run before this returns (hosts file, cache) */
	req = evdns_getaddrinfo(p->dns, host, NULL, &hints, on_resolved, p);
	if (req && p->phase == PHASE_RESOLVING)
		p->dns_req = req;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	long long ms = (long long)p->settings.timeout_ms;

	switch (p->phase) {
	case PHASE_RESOLVING:
		fail_round(p, PROBE_RESOLVE_FAILED, "cannot resolve host %s within %lldms",
			   node_config_param(*p->cfg, "host"), ms);
		break;
	case PHASE_CONNECTING:
	case PHASE_DETECTING:
	case PHASE_PREPARING:
		fail_round(p, PROBE_CONNECT_TIMEOUT, "connect timeout after %lldms", ms);
		break;
	default:
		fail_round(p, PROBE_QUERY_TIMEOUT, "probe timeout: no answer within %lldms", ms);
		break;
	}
}

/* Whether a connection attempt may start now; if not, p is queued. */
static bool take_slot(struct poller *p)
{
	return !p->settings.slots || connect_slots_acquire(p->settings.slots, &p->slot);
}

/*
 * No round runs while the poller waits for a slot, but the owner hears
 * every interval that the node is down and why (fail closed: a node
 * that cannot be checked is not served), until the slot comes.
 */
static void report_waiting(struct poller *p)
{
	const struct connect_slots *s = p->settings.slots;
	struct node_facts facts = { .outcome = PROBE_CONNECT_WAITING };

	snprintf(facts.error, sizeof(facts.error),
		 "waiting for a connection slot (%d of max_connecting %d in flight, %d waiting)",
		 s->in_use, s->limit, s->waiting);
	schedule_next_round(p, p->settings.interval_ms);
	p->cb(p->cb_arg, &facts, 0);
}

/* From the slot queue: start the round from the loop, not from inside the queue. */
static void on_slot_granted(void *owner)
{
	struct poller *p = owner;

	evtimer_del(p->next_round);
	event_active(p->next_round, EV_TIMEOUT, 1);
}

static void start_round(struct poller *p)
{
	struct timeval tv = ms_to_timeval(p->settings.timeout_ms);

	if (p->phase != PHASE_CONNECTED && !take_slot(p)) {
		report_waiting(p);
		return;
	}
	p->in_round = true;
	p->round_started_ms = clock_ms();
	evtimer_add(p->deadline, &tv);
	p->rounds_since_detect++;
	if (p->phase == PHASE_CONNECTED) {
		reset_byte_budget(p);
		send_probe(p);
	} else {
		begin_connect(p);
	}
}

static void on_next_round(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;

	if (!p->in_round)
		start_round(p);
}

struct poller *poller_new(struct event_base *base, struct evdns_base *dns,
			  const struct node_config *const *cfg,
			  const struct poller_settings *settings,
			  const struct logger *log, const char *name,
			  poller_result_cb cb, void *arg)
{
	struct poller *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->base = base;
	p->dns = dns;
	p->cfg = cfg;
	p->settings = *settings;
	p->log = log;
	p->name = name;
	p->cb = cb;
	p->cb_arg = arg;
	p->io_fd = -1;
	connect_waiter_init(&p->slot, on_slot_granted, p);
	/* distinct per poller and per run; xorshift needs a non-zero state */
	p->jitter = ((uint32_t)(uintptr_t)p ^ (uint32_t)clock_ms()) | 1;
	p->deadline = evtimer_new(base, on_deadline, p);
	p->next_round = evtimer_new(base, on_next_round, p);
	if (!p->deadline || !p->next_round) {
		poller_free(p);
		return NULL;
	}
	return p;
}

void poller_set_settings(struct poller *p, const struct poller_settings *settings)
{
	if (p->settings.slots && p->settings.slots != settings->slots)
		connect_slots_leave(p->settings.slots, &p->slot);
	p->settings = *settings;
}

/*
 * The first round starts at a random point of the first interval: an
 * agent watching many nodes does not open every connection in the same
 * millisecond (hundreds of backends forking and authenticating at once
 * can take longer than timeout, and then every attempt fails together).
 */
void poller_start(struct poller *p)
{
	schedule_next_round(p, next_jitter(p) % (uint32_t)(p->settings.interval_ms + 1));
}

void poller_free(struct poller *p)
{
	if (!p)
		return;
	drop_connection(p);
	if (p->settings.slots)
		connect_slots_leave(p->settings.slots, &p->slot);
	if (p->deadline)
		event_free(p->deadline);
	if (p->next_round)
		event_free(p->next_round);
	free(p);
}
