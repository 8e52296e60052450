/*
 * Logging: levelled, timestamped lines on stderr. Callers never pass
 * passwords; conninfo strings go through log_redact_conninfo first.
 */
#ifndef PGBDR_LOG_H
#define PGBDR_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct logger {
	enum log_level level;
	bool silent; /* --inetd: stderr is the client's socket */
};

void log_init(struct logger *lg, enum log_level level);

void log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(lg, ...) log_msg((lg), LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(lg, ...) log_msg((lg), LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(lg, ...) log_msg((lg), LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(lg, ...) log_msg((lg), LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * Copy msg into buf with "password=..." values masked, for libpq
 * messages that might echo a conninfo back.
 */
void log_redact_conninfo(const char *msg, char *buf, size_t len);

#endif
