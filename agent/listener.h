/*
 * A bound TCP listener shared by the HTTP, agent-check and SPOP
 * responders: it resolves the listen address, enforces allow_from
 * (a refused client is closed without a byte and counted) and hands
 * accepted sockets to its owner.
 */
#ifndef PGBDR_LISTENER_H
#define PGBDR_LISTENER_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "log.h"
#include "units.h"

struct event_base;
struct listener;

typedef void (*listener_accept_cb)(void *arg, evutil_socket_t fd,
				   struct sockaddr *sa, int socklen);

struct listener_stats {
	uint64_t accepted;
	uint64_t refused; /* by allow_from */
	uint64_t accept_failures; /* accept() failed, e.g. out of file descriptors */
	uint64_t fd_reserve_refusals; /* closed at once: the fds left are the pollers' */
};

/*
 * allow, log and fd_reserve must outlive the listener. A client whose
 * descriptor falls within the last *fd_reserve of the open files limit
 * is closed at once: those are kept for the node pollers, so that a
 * client flood is refused before a probe ever fails with EMFILE.
 */
struct listener *listener_new(struct event_base *base, const struct listen_addr *addr,
			      const struct cidr_list *allow, const struct logger *log,
			      const int *fd_reserve, const char *what,
			      listener_accept_cb cb, void *arg, char *err, size_t errlen);
void listener_free(struct listener *l);
const struct listener_stats *listener_stats(const struct listener *l);

/* The bound port (useful when the config asked for port 0). */
int listener_port(const struct listener *l);

#endif
