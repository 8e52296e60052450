/*
 * Listening sockets and the connections they accepted. allow_from,
 * the fd reserve and max_clients are checked here, before any responder
 * sees the connection, and every connection is linked here until it
 * closes: no listener can forget a limit, and shutdown frees them all.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "listener.h"

struct listener {
	struct event_base *base;
	struct evconnlistener *evl;
	struct listener_setup setup;
	LIST_HEAD(, listener_conn) conns;
	struct log_limit accept_errors;
	struct event *resume; /* re-enables accepting after a failure */
};

/* How long accepting pauses after accept() failed (out of fds, memory). */
#define ACCEPT_PAUSE_MS 100

const char *listener_kind_name(enum listener_kind kind)
{
	static const char *const names[LISTENER_KINDS] = { "http", "agent-check", "spop" };

	return kind < LISTENER_KINDS ? names[kind] : "?";
}

size_t listener_conn_output_length(const struct listener_conn *lc)
{
	return evbuffer_get_length(bufferevent_get_output(lc->bev));
}

void listener_conn_close(struct listener_conn *lc)
{
	struct listener *l = lc->listener;

	LIST_REMOVE(lc, link);
	l->setup.counters->open--;
	l->setup.protocol->close(lc);
	if (lc->output_watch) {
		evbuffer_remove_cb_entry(bufferevent_get_output(lc->bev), lc->output_watch);
		memory_budget_give(l->setup.budget, listener_conn_output_length(lc));
	}
	if (lc->linger_timer)
		event_free(lc->linger_timer);
	bufferevent_free(lc->bev);
	free(lc);
}

/* ---- linger ---------------------------------------------------------- */

static void on_linger_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	evbuffer_drain(in, evbuffer_get_length(in));
}

/* The client's FIN, an error or a timeout: nothing left to wait for. */
static void on_linger_event(struct bufferevent *bev, short what, void *arg)
{
	listener_conn_close(arg);
}

static void on_linger_timer(evutil_socket_t fd, short what, void *arg)
{
	listener_conn_close(arg);
}

void listener_conn_linger(struct listener_conn *lc, int64_t linger_ms, bool read_until_fin)
{
	struct timeval tv = ms_to_timeval(linger_ms);

	on_linger_read(lc->bev, lc);
	bufferevent_setcb(lc->bev, on_linger_read, NULL, on_linger_event, lc);
	shutdown(bufferevent_getfd(lc->bev), SHUT_WR);
	if (read_until_fin)
		bufferevent_enable(lc->bev, EV_READ);
	else
		bufferevent_disable(lc->bev, EV_READ);
	evtimer_add(lc->linger_timer, &tv);
}

struct listener_conn *listener_largest_backlog(struct listener *l,
					       const struct listener_conn *except,
					       size_t min_bytes)
{
	struct listener_conn *worst = NULL, *o;

	LIST_FOREACH(o, &l->conns, link)
		if (o != except && listener_conn_output_length(o) >= min_bytes &&
		    (!worst || listener_conn_output_length(o) > listener_conn_output_length(worst)))
			worst = o;
	return worst;
}

/* ---- accepting ------------------------------------------------------- */

static struct listener_conn *conn_new(struct listener *l, evutil_socket_t fd)
{
	const struct listener_setup *st = &l->setup;
	struct listener_conn *lc = calloc(1, st->protocol->conn_size);

	if (!lc) {
		evutil_closesocket(fd);
		return NULL;
	}
	lc->listener = l;
	/* made now, so that lingering later cannot fail and free lc under its caller */
	lc->linger_timer = evtimer_new(l->base, on_linger_timer, lc);
	lc->bev = lc->linger_timer ? bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE)
				   : NULL;
	if (!lc->bev) {
		evutil_closesocket(fd);
		if (lc->linger_timer)
			event_free(lc->linger_timer);
		free(lc);
		return NULL;
	}
	if (st->protocol->budgeted) {
		lc->output_watch = evbuffer_add_cb(bufferevent_get_output(lc->bev),
						   memory_budget_on_buffer, st->budget);
		if (!lc->output_watch) {
			bufferevent_free(lc->bev);
			event_free(lc->linger_timer);
			free(lc);
			return NULL;
		}
	}
	LIST_INSERT_HEAD(&l->conns, lc, link);
	st->counters->open++;
	return lc;
}

struct listener_conn *listener_adopt(struct listener *l, evutil_socket_t fd,
				     const struct sockaddr *sa, int socklen)
{
	const struct listener_setup *st = &l->setup;
	struct listener_conn *lc;

	if (st->counters->open >= (uint64_t)*st->max_clients) {
		st->counters->over_capacity++;
		evutil_closesocket(fd);
		return NULL;
	}
	evutil_make_socket_nonblocking(fd);
	if (st->protocol->send_buffer > 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &st->protocol->send_buffer,
			   sizeof(st->protocol->send_buffer));
	lc = conn_new(l, fd);
	if (lc && st->protocol->open(st->arg, lc, sa, socklen) == 0) {
		st->counters->accepted++;
		return lc;
	}
	if (lc)
		listener_conn_close(lc);
	st->counters->setup_failures++;
	log_limited(st->log, &l->accept_errors, LOG_LEVEL_WARNING,
		    "%s listener: cannot set up a connection: out of memory",
		    listener_kind_name(st->kind));
	return NULL;
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct listener *l = arg;
	struct listener_counters *c = l->setup.counters;
	struct rlimit rl;

	/* descriptors are handed out lowest first: fd counts those in use */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)fd + (rlim_t)*l->setup.fd_reserve >= rl.rlim_cur) {
		c->fd_reserve_refusals++;
		evutil_closesocket(fd);
		return;
	}
	if (!cidr_list_allows(l->setup.allow, sa)) {
		c->refused++;
		evutil_closesocket(fd);
		return;
	}
	listener_adopt(l, fd, sa, socklen);
}

/*
 * Out of file descriptors, the listening socket stays readable and
 * accept() keeps failing: without a pause the loop would spin on it
 * and starve every client already connected. The kernel keeps the
 * waiting connections in the backlog meanwhile.
 */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct timeval pause = ms_to_timeval(ACCEPT_PAUSE_MS);

	log_limited(l->setup.log, &l->accept_errors, LOG_LEVEL_WARNING,
		    "%s listener: accept failed: %s", listener_kind_name(l->setup.kind),
		    strerror(errno));
	l->setup.counters->accept_failures++;
	evconnlistener_disable(evl);
	evtimer_add(l->resume, &pause);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	evconnlistener_enable(l->evl);
}

/* ---- the listener ------------------------------------------------------ */

static int resolve_listen_addr(const struct listen_addr *addr, struct sockaddr_storage *ss,
			       socklen_t *len, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char port[16];
	int rc;

	snprintf(port, sizeof(port), "%d", addr->port);
	rc = getaddrinfo(addr->host[0] ? addr->host : "0.0.0.0", port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "cannot resolve listen address %s: %s", addr->host,
			 gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

struct listener *listener_new(struct event_base *base, const struct listen_addr *addr,
			      const struct listener_setup *setup, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct listener *l;

	if (resolve_listen_addr(addr, &ss, &len, err, errlen) < 0)
		return NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->base = base;
	l->setup = *setup;
	LIST_INIT(&l->conns);
	l->evl = evconnlistener_new_bind(base, on_accept, l,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
					 LEV_OPT_CLOSE_ON_EXEC,
					 1024, (struct sockaddr *)&ss, (int)len);
	if (!l->evl) {
		snprintf(err, errlen, "cannot listen on %s:%d for %s: %s",
			 addr->host[0] ? addr->host : "*", addr->port,
			 listener_kind_name(setup->kind), strerror(errno));
		free(l);
		return NULL;
	}
	l->resume = evtimer_new(base, on_resume, l);
	if (!l->resume) {
		snprintf(err, errlen, "out of memory");
		listener_free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	return l;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	evconnlistener_free(l->evl);
	while (!LIST_EMPTY(&l->conns))
		listener_conn_close(LIST_FIRST(&l->conns));
	if (l->resume)
		event_free(l->resume);
	free(l);
}

int listener_port(const struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = evconnlistener_get_fd(l->evl);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
