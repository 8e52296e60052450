/*
 * --inetd: answer one HTTP check on stdin/stdout, for an unchanged
 * xinetd service entry of the classic checker.
 */
#ifndef PGBDR_INETD_H
#define PGBDR_INETD_H

#include "agent.h"

/* Returns the process exit code. */
int inetd_serve(struct agent *a, int in_fd, int out_fd);

#endif
