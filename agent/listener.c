/*
 * Listening sockets. allow_from is checked here, before any responder
 * sees the connection, so no listener can forget it.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "listener.h"

struct listener {
	struct evconnlistener *evl;
	const struct cidr_list *allow;
	const struct logger *log;
	const int *fd_reserve;
	const char *what;
	listener_accept_cb cb;
	void *cb_arg;
	struct listener_stats stats;
	struct log_limit accept_errors;
	struct event *resume; /* re-enables accepting after a failure */
};

/* How long accepting pauses after accept() failed (out of fds, memory). */
#define ACCEPT_PAUSE_MS 100

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct listener *l = arg;
	struct rlimit rl;

	/* descriptors are handed out lowest first: fd counts those in use */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)fd + (rlim_t)*l->fd_reserve >= rl.rlim_cur) {
		l->stats.fd_reserve_refusals++;
		evutil_closesocket(fd);
		return;
	}
	if (!cidr_list_allows(l->allow, sa)) {
		l->stats.refused++;
		evutil_closesocket(fd);
		return;
	}
	l->stats.accepted++;
	l->cb(l->cb_arg, fd, sa, socklen);
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
	struct timeval pause = { .tv_sec = 0, .tv_usec = ACCEPT_PAUSE_MS * 1000 };

	log_limited(l->log, &l->accept_errors, LOG_LEVEL_WARNING, "%s listener: accept failed: %s",
		    l->what, strerror(errno));
	l->stats.accept_failures++;
	evconnlistener_disable(evl);
	evtimer_add(l->resume, &pause);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	evconnlistener_enable(l->evl);
}

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
			      const struct cidr_list *allow, const struct logger *log,
			      const int *fd_reserve, const char *what,
			      listener_accept_cb cb, void *arg, char *err, size_t errlen)
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
	l->allow = allow;
	l->log = log;
	l->fd_reserve = fd_reserve;
	l->what = what;
	l->cb = cb;
	l->cb_arg = arg;
	l->evl = evconnlistener_new_bind(base, on_accept, l,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
					 LEV_OPT_CLOSE_ON_EXEC,
					 1024, (struct sockaddr *)&ss, (int)len);
	if (!l->evl) {
		snprintf(err, errlen, "cannot listen on %s:%d for %s: %s",
			 addr->host[0] ? addr->host : "*", addr->port, what, strerror(errno));
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
	if (l->resume)
		event_free(l->resume);
	evconnlistener_free(l->evl);
	free(l);
}

const struct listener_stats *listener_stats(const struct listener *l)
{
	return &l->stats;
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
