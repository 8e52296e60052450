/*
 * The read budget of one poller turn. libpq's pqReadData() keeps
 * calling recv() for as long as data keeps arriving, into a buffer it
 * sizes from the message header: a server streaming a 100 MB message
 * holds the loop for all of it and makes the agent touch every byte.
 * libpq has no hook for its reads, so this file interposes recv(): the
 * executable's definition comes first for libpq's calls as well. While
 * a poller runs libpq on its socket, recv() on that one socket fails
 * with EAGAIN once the turn's allowance is spent, which libpq takes as
 * "nothing more for now"; every other call goes straight to the system
 * call. <sys/socket.h> stays out: with _FORTIFY_SOURCE it defines an
 * inline recv() of its own.
 */
#include <errno.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "read_budget.h"

ssize_t recv(int fd, void *buf, size_t len, int flags);

/* One event loop, one thread: at most one budget is open at a time. */
static int budget_fd = -1;
static size_t budget_left;

void read_budget_begin(int fd, size_t bytes)
{
	budget_fd = fd;
	budget_left = bytes;
}

void read_budget_end(void)
{
	budget_fd = -1;
	budget_left = 0;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	long n;

	if (fd == budget_fd && fd >= 0) {
		if (budget_left == 0) {
			errno = EAGAIN;
			return -1;
		}
		if (len > budget_left)
			len = budget_left;
	}
	n = syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
	if (n > 0 && fd == budget_fd)
		budget_left -= (size_t)n;
	return (ssize_t)n;
}
