/*
 * nullserver: the cheapest possible server for the same exchange, as a
 * control for bench/run.sh's latency runs. What it measures is the floor
 * this machine, its kernel and loadgen set (scheduling delays from other
 * tenants, loopback TCP, loadgen itself): a p99 the agent shares with
 * the null server is not the agent's.
 *
 *   nullserver -m line|http -p PORT
 *
 * line: on accept, write "up ready 100%\n" and close (agent-check, one node)
 * http: read until the end of the request head, write a fixed 200 reply
 *       with a correct Content-Length, close
 * One thread, epoll, non-blocking; runs until SIGTERM. On SIGUSR1 it prints
 * the number of replies written so far, one line on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char LINE[] = "up ready 100%\n";
static const char HTTP[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
			   "Connection: close\r\n\r\nready\n";

static volatile sig_atomic_t dump;
static unsigned long long served;

static void on_usr1(int sig)
{
	(void)sig;
	dump = 1;
}

struct conn {
	int fd;
	size_t len;
	char buf[2048];
};

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event e = { .events = EPOLLIN }, evs[256];
	struct rlimit rl;
	int opt, port = 0, http = 0, one = 1, l, ep;

	while ((opt = getopt(argc, argv, "m:p:")) != -1) {
		if (opt == 'm')
			http = strcmp(optarg, "http") == 0;
		else if (opt == 'p')
			port = atoi(optarg);
	}
	if (port <= 0) {
		fprintf(stderr, "usage: nullserver -m line|http -p PORT\n");
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	a.sin_port = htons((unsigned short)port);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4096) < 0) {
		perror("nullserver: bind");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, on_usr1);
	ep = epoll_create1(0);
	e.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &e);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, 50);

		if (dump) {
			dump = 0;
			printf("%llu\n", served);
			fflush(stdout);
		}

		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			ssize_t r;

			if (!c) {
				int fd;

				while ((fd = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (!http) {
						if (write(fd, LINE, sizeof(LINE) - 1) > 0)
							served++;
						close(fd);
						continue;
					}
					c = calloc(1, sizeof(*c));
					c->fd = fd;
					e.events = EPOLLIN;
					e.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
				}
				continue;
			}
			r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
			if (r > 0) {
				c->len += (size_t)r;
				c->buf[c->len] = '\0';
				if (!strstr(c->buf, "\r\n\r\n") && c->len < sizeof(c->buf) - 1)
					continue;
				if (write(c->fd, HTTP, sizeof(HTTP) - 1) > 0)
					served++;
			} else if (r < 0 && errno == EAGAIN) {
				continue;
			}
			close(c->fd);
			free(c);
		}
	}
}
