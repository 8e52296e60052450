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
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "poller.h"
#include "probe.h"

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

struct poller {
	struct event_base *base;
	struct evdns_base *dns;
	const struct node_config *cfg;
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
	/* the latest result of the query in flight; the final one is what
	 * counts, and it may arrive some reads before libpq's closing NULL */
	PGresult *pending;

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

	bool in_round;
	int64_t round_started_ms;
	int failed_rounds;
	uint32_t jitter;	/* xorshift32 state for the retry spacing */
};

static void start_round(struct poller *p);
static void on_io(evutil_socket_t fd, short what, void *arg);

static struct timeval ms_to_timeval(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

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

static void drop_connection(struct poller *p)
{
	PQclear(p->pending);
	p->pending = NULL;
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

static void fail_round(struct poller *p, enum probe_outcome outcome,
		       const char *fmt, ...)
{
	struct node_facts facts = { .outcome = outcome };
	char raw[sizeof(facts.error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* libpq errors can quote the conninfo back */
	log_redact_conninfo(raw, facts.error, sizeof(facts.error));
	for (char *c = facts.error; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
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

static const char *first_line(const char *msg, char *buf, size_t len)
{
	size_t n = strcspn(msg, "\n");

	if (n >= len)
		n = len - 1;
	memcpy(buf, msg, n);
	buf[n] = '\0';
	return buf;
}

#define PROBE_STATEMENT "pgbdr_probe"

/* After PQsend*(): wait for the answer, or fail if the send did not go. */
static void await_result(struct poller *p, int sent, enum poller_phase phase)
{
	char msg[REASON_MAX];

	if (!sent) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   first_line(PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	p->phase = phase;
	/* a pending flush needs write readiness as well */
	watch(p, PQflush(p->conn) == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void send_probe(struct poller *p)
{
	char buf[PROBE_QUERY_MAX];

	if (!p->probe)
		await_result(p, PQsendQuery(p->conn, probe_detect_query()), PHASE_DETECTING);
	else if (!p->prepared)
		await_result(p, PQsendPrepare(p->conn, PROBE_STATEMENT,
					      p->probe->query(&p->caps, buf, sizeof(buf)), 0, NULL),
			     PHASE_PREPARING);
	else
		await_result(p, PQsendQueryPrepared(p->conn, PROBE_STATEMENT, 0, NULL, NULL, NULL, 0),
			     PHASE_PROBING);
}

static void handle_detect_result(struct poller *p, const PGresult *res)
{
	char err[REASON_MAX];

	if (probe_detect_parse(res, p->cfg->flavor, &p->caps, err, sizeof(err)) < 0) {
		fail_round(p, PROBE_QUERY_FAILED, "%s", err);
		return;
	}
	p->probe = probe_for_flavor(p->caps.flavor);
	log_debug(p->log, "node %s: PostgreSQL %d, flavor %s", p->name,
		  p->caps.server_version, flavor_name(p->caps.flavor));
	send_probe(p);
}

static void handle_probe_result(struct poller *p, const PGresult *res)
{
	struct node_facts facts = { .outcome = PROBE_OK, .flavor = p->caps.flavor };

	p->probe->parse(res, &p->caps, &facts);
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

	if (!primary)
		primary = first_line(PQresultErrorMessage(res), msg, sizeof(msg));
	fail_round(p, PROBE_QUERY_FAILED, "%s query failed: %s", what, primary);
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

/* Drain what arrived; act only once the whole query result is in. */
static void read_results(struct poller *p)
{
	char msg[REASON_MAX];

	if (!PQconsumeInput(p->conn)) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   first_line(PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	while (!PQisBusy(p->conn)) {
		PGresult *res = PQgetResult(p->conn);

		if (!res) {
			PGresult *final = p->pending;

			p->pending = NULL;
			handle_final_result(p, final);
			return;
		}
		PQclear(p->pending);
		p->pending = res;
	}
	watch(p, EV_READ);
}

/* Between rounds the server may close on us (restart, idle kill). */
static void check_idle_connection(struct poller *p)
{
	char msg[REASON_MAX];
	PGresult *res;
	PGnotify *note;

	if (!PQconsumeInput(p->conn) || PQstatus(p->conn) != CONNECTION_OK) {
		fail_round(p, PROBE_CONNECTION_LOST, "connection lost: %s",
			   first_line(PQerrorMessage(p->conn), msg, sizeof(msg)));
		return;
	}
	while ((note = PQnotifies(p->conn)) != NULL)
		PQfreemem(note);
	while (!PQisBusy(p->conn) && (res = PQgetResult(p->conn)) != NULL)
		PQclear(res);
	watch(p, EV_READ);
}

static void continue_connect(struct poller *p)
{
	char msg[REASON_MAX];

	switch (PQconnectPoll(p->conn)) {
	case PGRES_POLLING_READING:
		watch(p, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(p, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(p->conn, 1) != 0) {
			fail_round(p, PROBE_CONNECT_FAILED, "cannot make the connection non-blocking");
			break;
		}
		send_probe(p);
		break;
	default:
		fail_round(p, PROBE_CONNECT_FAILED, "connection failed: %s",
			   first_line(PQerrorMessage(p->conn), msg, sizeof(msg)));
		break;
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;

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

static void start_connect(struct poller *p)
{
	const char *kw[64];
	const char *val[64];
	int n = 0;

	for (int i = 0; i < p->cfg->n_params && n < 62; i++) {
		kw[n] = p->cfg->keywords[i];
		val[n] = p->cfg->values[i];
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
	if (PQstatus(p->conn) == CONNECTION_BAD) {
		char msg[REASON_MAX];

		fail_round(p, PROBE_CONNECT_FAILED, "connection failed: %s",
			   first_line(PQerrorMessage(p->conn), msg, sizeof(msg)));
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
	const char *host = node_config_param(p->cfg, "host");
	unsigned char buf[sizeof(struct in6_addr)];

	if (!host || !host[0] || host[0] == '/' || host[0] == '@')
		return NULL;
	if (node_config_param(p->cfg, "hostaddr") || strchr(host, ','))
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
	const char *host = node_config_param(p->cfg, "host");
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
			   node_config_param(p->cfg, "host"), ms);
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

static void start_round(struct poller *p)
{
	struct timeval tv = ms_to_timeval(p->settings.timeout_ms);

	p->in_round = true;
	p->round_started_ms = clock_ms();
	evtimer_add(p->deadline, &tv);
	if (p->phase == PHASE_CONNECTED)
		send_probe(p);
	else
		begin_connect(p);
}

static void on_next_round(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;

	if (!p->in_round)
		start_round(p);
}

struct poller *poller_new(struct event_base *base, struct evdns_base *dns,
			  const struct node_config *cfg,
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

void poller_rebind(struct poller *p, const struct node_config *cfg, const char *name,
		   void *arg)
{
	p->cfg = cfg;
	p->name = name;
	p->cb_arg = arg;
}

void poller_set_settings(struct poller *p, const struct poller_settings *settings)
{
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
	if (p->deadline)
		event_free(p->deadline);
	if (p->next_round)
		event_free(p->next_round);
	free(p);
}
