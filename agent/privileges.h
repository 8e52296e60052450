/*
 * Running with the least privilege: refuse root unless told, drop to
 * the configured user once the listeners are bound, and warn when a
 * password sits in a file that others can read.
 */
#ifndef PGBDR_PRIVILEGES_H
#define PGBDR_PRIVILEGES_H

#include <stddef.h>

#include "config.h"
#include "log.h"

/*
 * No core dump, no ptrace by other users: the process holds passwords.
 * Called first thing, before the config is read; 0 or -1 (errno).
 */
int privileges_no_core_dumps(void);

/* 0 if the daemon may start with these ids and this config, else -1 and why. */
int privileges_check_start(const struct agent_config *cfg, char *err, size_t errlen);

/* Switch to cfg->user (no-op without one). 0 on success, else -1 and why. */
int privileges_drop(const struct agent_config *cfg, char *err, size_t errlen);

/* Warn about a world-readable config file that holds a password. */
void privileges_warn_readable_secrets(const struct agent_config *cfg, const struct logger *log);

#endif
