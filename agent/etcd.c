/*
 * etcd leader-lease client (see etcd.h). One request at a time, driven
 * by a 100 ms timer and by each reply: give up the key if the
 * candidate changed, renew the lease at ttl/3, read the key every
 * poll period, and when nobody holds it, grant a lease and put the key
 * in one transaction that succeeds only if the key does not exist.
 * Any failure moves to the next endpoint. Requests time out, replies
 * are size-capped, and parsing is in etcd_proto.c. On a clean shutdown
 * the lease is revoked, with a bounded wait, so that the key goes at
 * once instead of after ttl.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "etcd.h"
#include "etcd_proto.h"

enum etcd_op {
	OP_NONE = 0,
	OP_RANGE,
	OP_GRANT,
	OP_CAMPAIGN,
	OP_KEEPALIVE,
	OP_REVOKE,
};

struct etcd_client {
	struct event_base *base;
	struct evdns_base *dns;
	struct logger *log;
	etcd_changed_cb changed;
	void *changed_arg;

	struct etcd_endpoint endpoints[ETCD_MAX_ENDPOINTS];
	int n_endpoints;
	int current;
	char endpoint_text[300];
	char key[512];
	struct lease_policy policy;
	int64_t poll_ms;
	int64_t request_timeout_ms;

	struct evhttp_connection *conn;   /* to endpoints[current] */
	struct evhttp_request *req;       /* in flight, or NULL */
	enum etcd_op op;
	int64_t sent_at_ms;
	int64_t quiet_until_ms;           /* after a failure: no request before */
	bool rotate;                      /* use the next endpoint before the next request */
	int64_t read_tried_at_ms;
	struct event *timer;
	struct event *deadline;           /* of the request in flight */

	char candidate[NODE_NAME_MAX];
	int64_t lease_id;
	int64_t lease_granted_at_ms;
	int64_t create_revision;          /* of the key last seen */
	struct lease_facts facts;

	uint64_t requests;
	uint64_t failures;
	uint64_t acquired;
	char last_warning[REASON_MAX];    /* what was logged last, and when */
	int64_t last_warning_at_ms;
	bool resigning;                   /* etcd_resign(): only the revoke runs */
};

static void step(struct etcd_client *c);

static const char *op_path(enum etcd_op op)
{
	switch (op) {
	case OP_RANGE:
		return "/v3/kv/range";
	case OP_GRANT:
		return "/v3/lease/grant";
	case OP_CAMPAIGN:
		return "/v3/kv/txn";
	case OP_KEEPALIVE:
		return "/v3/lease/keepalive";
	case OP_REVOKE:
		return "/v3/lease/revoke";
	case OP_NONE:
		break;
	}
	return "/";
}

static void describe_endpoint(struct etcd_client *c)
{
	const struct etcd_endpoint *ep = &c->endpoints[c->current];

	snprintf(c->endpoint_text, sizeof(c->endpoint_text), strchr(ep->host, ':') ?
		 "http://[%s]:%d" : "http://%s:%d", ep->host, ep->port);
}

static struct evhttp_connection *connection(struct etcd_client *c)
{
	const struct etcd_endpoint *ep = &c->endpoints[c->current];
	struct timeval tv = ms_to_timeval(c->request_timeout_ms);

	if (c->conn)
		return c->conn;
	c->conn = evhttp_connection_base_new(c->base, c->dns, ep->host, (unsigned short)ep->port);
	if (!c->conn)
		return NULL;
	evhttp_connection_set_timeout_tv(c->conn, &tv);
	evhttp_connection_set_retries(c->conn, 0);
	evhttp_connection_set_max_body_size(c->conn, ETCD_REPLY_MAX);
	evhttp_connection_set_max_headers_size(c->conn, 16384);
	return c->conn;
}

/* Drop the connection and use the next endpoint from the next request on. */
static void next_endpoint(struct etcd_client *c)
{
	if (c->conn)
		evhttp_connection_free(c->conn);
	c->conn = NULL;
	c->current = (c->current + 1) % c->n_endpoints;
	describe_endpoint(c);
}

static void failed(struct etcd_client *c, const char *what)
{
	int64_t now = clock_ms();

	c->failures++;
	/* a new kind of failure is logged (at most once a second), a lasting
	 * one every 10 s: etcd down must not flood the log */
	if ((strcmp(c->last_warning, what) != 0 && now - c->last_warning_at_ms >= 1000) ||
	    now - c->last_warning_at_ms >= 10000) {
		log_warning(c->log, "etcd %s%s: %s (%llu failures so far)", c->endpoint_text,
			    op_path(c->op), what, (unsigned long long)c->failures);
		snprintf(c->last_warning, sizeof(c->last_warning), "%s", what);
		c->last_warning_at_ms = now;
	}
	snprintf(c->facts.error, sizeof(c->facts.error), "%s %s", c->endpoint_text, what);
	c->quiet_until_ms = now + (c->n_endpoints > 1 ? 100 : c->poll_ms);
	/* not from inside libevent's callback: step() switches endpoints */
	c->rotate = true;
}

static void lost_lease(struct etcd_client *c, const char *why)
{
	if (c->facts.held)
		log_warning(c->log, "etcd: gave up the leader key for %s: %s",
			    c->facts.holder, why);
	c->facts.held = false;
	c->lease_id = 0;
}

static void took_range(struct etcd_client *c, const struct etcd_kv *kv, int64_t now)
{
	struct lease_facts *f = &c->facts;

	f->read_at_ms = c->sent_at_ms;
	if (!kv->present || kv->create_revision != c->create_revision) {
		f->holder_since_ms = now;
		c->create_revision = kv->present ? kv->create_revision : 0;
	}
	f->key_present = kv->present;
	snprintf(f->holder, sizeof(f->holder), "%s", kv->value);
	if (f->held && (!kv->present || kv->lease != c->lease_id))
		lost_lease(c, "the key is no longer under our lease");
	else if (!f->held && kv->present && c->lease_id && kv->lease == c->lease_id &&
		 strcmp(kv->value, c->candidate) == 0 && c->candidate[0]) {
		/* our campaign went through though its reply was lost */
		f->held = true;
		f->renewed_at_ms = c->lease_granted_at_ms;
	}
}

static void took_grant(struct etcd_client *c, int64_t lease)
{
	c->lease_id = lease;
	c->lease_granted_at_ms = c->sent_at_ms;
}

static void took_campaign(struct etcd_client *c, bool won, int64_t now)
{
	struct lease_facts *f = &c->facts;

	if (!won) {
		/* someone else was faster: their key shows at the next read */
		c->read_tried_at_ms = 0;
		return;
	}
	f->held = true;
	f->renewed_at_ms = c->lease_granted_at_ms;
	f->read_at_ms = c->sent_at_ms;
	f->key_present = true;
	snprintf(f->holder, sizeof(f->holder), "%s", c->candidate);
	f->holder_since_ms = now;
	c->create_revision = -1; /* unknown until the next read, which keeps holder_since */
	c->acquired++;
	log_info(c->log, "etcd: took the leader key %s for %s", c->key, c->candidate);
}

static void took_keepalive(struct etcd_client *c, int64_t ttl_s)
{
	if (ttl_s <= 0) {
		lost_lease(c, "the lease expired");
		return;
	}
	c->facts.renewed_at_ms = c->sent_at_ms;
}

/* One reply: parse it for its op; returns 0, or -1 with err filled. */
static int take_reply(struct etcd_client *c, const char *body, size_t len, int64_t now,
		      char *err, size_t errlen)
{
	struct etcd_kv kv;
	int64_t lease, ttl;
	bool won;

	switch (c->op) {
	case OP_RANGE:
		if (etcd_parse_range(body, len, &kv, err, errlen) < 0)
			return -1;
		if (c->create_revision == -1 && kv.present && kv.lease == c->lease_id)
			c->create_revision = kv.create_revision;
		took_range(c, &kv, now);
		return 0;
	case OP_GRANT:
		if (etcd_parse_grant(body, len, &lease, &ttl, err, errlen) < 0)
			return -1;
		took_grant(c, lease);
		return 0;
	case OP_CAMPAIGN:
		if (etcd_parse_txn(body, len, &won, err, errlen) < 0) {
			c->lease_id = 0; /* e.g. "requested lease not found" */
			return -1;
		}
		took_campaign(c, won, now);
		return 0;
	case OP_KEEPALIVE:
		if (etcd_parse_keepalive(body, len, &ttl, err, errlen) < 0)
			return -1;
		took_keepalive(c, ttl);
		return 0;
	case OP_REVOKE:
		if (etcd_parse_ok(body, len, err, errlen) < 0)
			return -1;
		c->lease_id = 0;
		c->facts.key_present = false;
		c->facts.holder[0] = '\0';
		c->facts.holder_since_ms = now;
		c->create_revision = 0;
		return 0;
	case OP_NONE:
		break;
	}
	snprintf(err, errlen, "reply without a request");
	return -1;
}

static void on_reply(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;
	char err[REASON_MAX];
	int code = req ? evhttp_request_get_response_code(req) : 0;
	struct evbuffer *in = req ? evhttp_request_get_input_buffer(req) : NULL;
	size_t len = in ? evbuffer_get_length(in) : 0;
	const char *body = in && len ? (const char *)evbuffer_pullup(in, (ssize_t)len) : "";

	c->req = NULL;
	evtimer_del(c->deadline);
	if (c->resigning) {
		if (code == 200 && etcd_parse_ok(body, len, err, sizeof(err)) == 0)
			log_info(c->log, "etcd: revoked the lease; the leader key is free");
		else
			log_warning(c->log, "etcd: revoking the lease failed (%s); the key "
				    "lapses after ttl", code ? "etcd refused" : "no answer");
		c->op = OP_NONE;
		c->lease_id = 0;
		event_base_loopbreak(c->base);
		return;
	}
	if (code == 0) {
		failed(c, "no answer (connection failed or timed out)");
	} else if (code != 200) {
		snprintf(err, sizeof(err), "HTTP %d", code);
		if (c->op == OP_CAMPAIGN && etcd_parse_ok(body, len, err, sizeof(err)) < 0)
			c->lease_id = 0; /* e.g. "requested lease not found" */
		failed(c, err);
	} else if (!body || take_reply(c, body, len, clock_ms(), err, sizeof(err)) < 0) {
		failed(c, body ? err : "out of memory");
	} else {
		c->facts.error[0] = '\0';
	}
	c->op = OP_NONE;
	if (c->changed)
		c->changed(c->changed_arg);
	step(c);
}

/*
 * libevent's timeouts count from the last byte; a server that trickles
 * bytes would hold a request for ever. This one counts from the send.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_client *c = arg;

	if (!c->req)
		return;
	evhttp_cancel_request(c->req);
	c->req = NULL;
	if (c->resigning) {
		log_warning(c->log, "etcd: no answer to the lease revoke in time; the key "
			    "lapses after ttl");
		c->op = OP_NONE;
		event_base_loopbreak(c->base);
		return;
	}
	/* failed() also drops the connection, which a cancel leaves unusable */
	failed(c, "no complete answer in time");
	c->op = OP_NONE;
	if (c->changed)
		c->changed(c->changed_arg);
}

static int body_for(struct etcd_client *c, enum etcd_op op, char *buf, size_t len)
{
	switch (op) {
	case OP_RANGE:
		return etcd_body_range(buf, len, c->key);
	case OP_GRANT:
		return etcd_body_grant(buf, len, (c->policy.ttl_ms + 999) / 1000);
	case OP_CAMPAIGN:
		return etcd_body_campaign(buf, len, c->key, c->candidate, c->lease_id);
	case OP_KEEPALIVE:
	case OP_REVOKE:
		return etcd_body_lease(buf, len, c->lease_id);
	case OP_NONE:
		break;
	}
	return -1;
}

static void send_request(struct etcd_client *c, enum etcd_op op)
{
	char body[ETCD_BODY_MAX];
	struct evhttp_connection *conn = connection(c);
	struct evhttp_request *req;
	struct timeval tv = ms_to_timeval(c->request_timeout_ms);

	c->op = op;
	if (body_for(c, op, body, sizeof(body)) < 0 || !conn ||
	    !(req = evhttp_request_new(on_reply, c))) {
		failed(c, "cannot build the request");
		c->op = OP_NONE;
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
			  c->endpoints[c->current].host);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	c->requests++;
	c->sent_at_ms = clock_ms();
	if (op == OP_RANGE)
		c->read_tried_at_ms = c->sent_at_ms;
	c->req = req;
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, op_path(op)) != 0) {
		/* libevent has freed req */
		c->req = NULL;
		failed(c, "cannot send the request");
		c->op = OP_NONE;
		return;
	}
	evtimer_add(c->deadline, &tv);
}

/* What to ask etcd next, if anything. */
static enum etcd_op next_op(const struct etcd_client *c, int64_t now)
{
	const struct lease_facts *f = &c->facts;
	bool read_fresh = f->read_at_ms && now - f->read_at_ms < c->poll_ms;

	if (f->held && strcmp(c->candidate, f->holder) != 0)
		return OP_REVOKE;
	if (f->held && now - f->renewed_at_ms >= c->policy.ttl_ms / 3)
		return OP_KEEPALIVE;
	if (now - c->read_tried_at_ms >= c->poll_ms)
		return OP_RANGE;
	if (f->held || !c->candidate[0] || !read_fresh || f->key_present)
		return OP_NONE;
	/* a lease granted long ago may be about to lapse: take a fresh one */
	if (!c->lease_id || now - c->lease_granted_at_ms >= c->policy.ttl_ms / 3)
		return OP_GRANT;
	return OP_CAMPAIGN;
}

static void step(struct etcd_client *c)
{
	int64_t now = clock_ms();
	enum etcd_op op;

	if (c->req || c->resigning || now < c->quiet_until_ms)
		return;
	if (c->rotate) {
		c->rotate = false;
		next_endpoint(c);
	}
	op = next_op(c, now);
	if (op == OP_REVOKE) {
		log_info(c->log, "etcd: giving up the leader key for %s (%s)", c->facts.holder,
			 c->candidate[0] ? "another candidate" : "not fit to lead");
		/* whatever etcd answers, this agent stops naming it now */
		c->facts.held = false;
	}
	if (op != OP_NONE)
		send_request(c, op);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	step(arg);
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

struct etcd_client *etcd_new(struct event_base *base, struct evdns_base *dns,
			     const struct etcd_config *cfg, int64_t handover_ms,
			     struct logger *log, etcd_changed_cb cb, void *arg)
{
	struct etcd_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base = base;
	c->dns = dns;
	c->log = log;
	c->changed = cb;
	c->changed_arg = arg;
	memcpy(c->endpoints, cfg->endpoint, sizeof(c->endpoints));
	c->n_endpoints = cfg->n_endpoints > 0 ? cfg->n_endpoints : 1;
	describe_endpoint(c);
	snprintf(c->key, sizeof(c->key), "%s%s/leader", cfg->prefix ? cfg->prefix : "",
		 cfg->cluster ? cfg->cluster : "");
	c->policy.ttl_ms = cfg->ttl_ms;
	c->policy.handover_ms = handover_ms;
	c->poll_ms = clamp(cfg->ttl_ms / 6, 100, 1000);
	c->request_timeout_ms = clamp(cfg->ttl_ms / 4, 300, 2000);
	c->timer = event_new(base, -1, EV_PERSIST, on_timer, c);
	c->deadline = evtimer_new(base, on_deadline, c);
	if (!c->timer || !c->deadline) {
		etcd_free(c);
		return NULL;
	}
	return c;
}

void etcd_start(struct etcd_client *c)
{
	struct timeval tv = ms_to_timeval(100);

	event_add(c->timer, &tv);
	step(c);
}

void etcd_set_candidate(struct etcd_client *c, const char *name)
{
	if (strcmp(c->candidate, name) == 0)
		return;
	snprintf(c->candidate, sizeof(c->candidate), "%s", name);
	step(c);
}

const struct lease_facts *etcd_facts(const struct etcd_client *c)
{
	return &c->facts;
}

const struct lease_policy *etcd_policy(const struct etcd_client *c)
{
	return &c->policy;
}

void etcd_get_stats(const struct etcd_client *c, struct etcd_stats *out)
{
	out->key = c->key;
	out->endpoint = c->endpoint_text;
	out->lease_id = c->facts.held ? c->lease_id : 0;
	out->requests = c->requests;
	out->failures = c->failures;
	out->acquired = c->acquired;
}

void etcd_resign(struct etcd_client *c, int64_t max_wait_ms)
{
	struct timeval limit;

	if (!c || !c->lease_id)
		return;
	event_del(c->timer);
	if (c->req) {
		/* a cancelled request leaves its connection unusable */
		evhttp_cancel_request(c->req);
		c->req = NULL;
		evtimer_del(c->deadline);
		if (c->conn)
			evhttp_connection_free(c->conn);
		c->conn = NULL;
	}
	if (c->facts.held)
		log_info(c->log, "etcd: shutting down: giving up the leader key for %s",
			 c->facts.holder);
	c->facts.held = false;
	c->resigning = true;
	if (max_wait_ms < c->request_timeout_ms)
		c->request_timeout_ms = max_wait_ms;
	send_request(c, OP_REVOKE);
	if (!c->req)
		return;
	/* the request's own deadline ends the wait; this is the backstop */
	limit = ms_to_timeval(max_wait_ms + 100);
	event_base_loopexit(c->base, &limit);
	event_base_dispatch(c->base);
}

void etcd_free(struct etcd_client *c)
{
	if (!c)
		return;
	if (c->req && c->conn)
		evhttp_cancel_request(c->req);
	if (c->conn)
		evhttp_connection_free(c->conn);
	if (c->timer)
		event_free(c->timer);
	if (c->deadline)
		event_free(c->deadline);
	free(c);
}
