/*
 * --inetd: answer one HTTP check on stdin/stdout, for an unchanged
 * xinetd service entry of the classic checker.
 */
#ifndef PGBDR_INETD_H
#define PGBDR_INETD_H

#include "agent.h"

/* How long a client may take to send its request when no config says. */
#define INETD_DEFAULT_TIMEOUT_MS 2000

/* Point stderr at /dev/null: under xinetd it is the client's socket. */
void inetd_quiet_stderr(void);

/* Returns the process exit code. */
int inetd_serve(struct agent *a, int in_fd, int out_fd);

/* The config did not load: answer the check with a 503 that says why. */
int inetd_serve_config_error(const char *message, int in_fd, int out_fd);

#endif
