/*
 * A bound TCP listener shared by the HTTP, agent-check and SPOP
 * responders. Everything that is the same for the three lives here, so
 * that no responder can forget it or get it differently: allow_from and
 * the pollers' fd reserve at accept (a refused client is closed without
 * a byte and counted), max_clients, the list of open connections (freed
 * with the listener), the memory budget of what each connection queues,
 * and the linger that closes a connection without a reset. The
 * responders keep only their protocol.
 */
#ifndef PGBDR_LISTENER_H
#define PGBDR_LISTENER_H

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "counters.h"
#include "log.h"
#include "memory_budget.h"
#include "units.h"

struct bufferevent;
struct event;
struct event_base;
struct evbuffer_cb_entry;
struct listener;

/*
 * The head of every responder's connection struct (its first member):
 * the listener allocates conn_size bytes, links them in its list and
 * frees them.
 */
struct listener_conn {
	LIST_ENTRY(listener_conn) link;
	struct listener *listener;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *output_watch; /* keeps the memory budget */
	struct event *linger_timer;
};

/* Set up a new connection (callbacks, timers); -1 drops it. */
typedef int (*listener_open_cb)(void *arg, struct listener_conn *lc,
				const struct sockaddr *sa, int socklen);
/* Free what the responder holds for lc: not lc itself, nor its bufferevent. */
typedef void (*listener_close_cb)(struct listener_conn *lc);

/* What a responder tells its listener about its protocol. */
struct listener_protocol {
	size_t conn_size;             /* at least sizeof(struct listener_conn) */
	int send_buffer;              /* SO_SNDBUF of each client socket; 0: the kernel's */
	bool budgeted;                /* each connection's output counts against the budget */
	listener_open_cb open;
	listener_close_cb close;
};

struct listener_setup {
	enum listener_kind kind;
	const struct listener_protocol *protocol;
	void *arg;                    /* for protocol->open */
	/* these must outlive the listener; they are read at each accept */
	const struct cidr_list *allow;
	const int *max_clients;
	/*
	 * A client whose descriptor falls within the last *fd_reserve of
	 * the open files limit is closed at once: those are kept for the
	 * node pollers, so that a client flood is refused before a probe
	 * ever fails with EMFILE.
	 */
	const int *fd_reserve;
	const struct logger *log;
	struct listener_counters *counters;
	struct memory_budget *budget; /* for a budgeted protocol */
};

struct listener *listener_new(struct event_base *base, const struct listen_addr *addr,
			      const struct listener_setup *setup, char *err, size_t errlen);
/* Closes every open connection too. */
void listener_free(struct listener *l);

/*
 * Serve an already connected socket (socketpair in tests and fuzzing)
 * as if accepted: max_clients applies. Takes ownership of fd. Returns
 * the connection, or NULL when it was closed.
 */
struct listener_conn *listener_adopt(struct listener *l, evutil_socket_t fd,
				     const struct sockaddr *sa, int socklen);

/* Close at once: the responder's close callback, then the socket. */
void listener_conn_close(struct listener_conn *lc);

/*
 * Closing a socket with unread input makes the kernel send a reset,
 * which can destroy the reply still in flight. So the write side is
 * shut and the listener takes the connection over: it discards what
 * the client still sends and closes at the client's FIN (when
 * read_until_fin) or after linger_ms, whichever comes first. The
 * responder hears of it again only through its close callback, never
 * before this returns.
 */
void listener_conn_linger(struct listener_conn *lc, int64_t linger_ms, bool read_until_fin);

size_t listener_conn_output_length(const struct listener_conn *lc);

/*
 * The open connection, other than except, with the largest unsent
 * output of at least min_bytes: the one to shed first when the memory
 * budget is spent. NULL when there is none.
 */
struct listener_conn *listener_largest_backlog(struct listener *l,
					       const struct listener_conn *except,
					       size_t min_bytes);

/* The bound port (useful when the config asked for port 0). */
int listener_port(const struct listener *l);

#endif
