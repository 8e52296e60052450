/*
 * Logging: levelled, timestamped lines on stderr. Callers never pass
 * passwords; conninfo strings go through log_redact_conninfo first.
 */
#ifndef PGBDR_LOG_H
#define PGBDR_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct logger {
	enum log_level level;
	enum log_destination destination;
	bool silent; /* --inetd: stderr is the client's socket */
	bool journal; /* stderr is journald's stream: "<N>" priority prefixes */
};

void log_init(struct logger *lg, enum log_level level, enum log_destination destination);

/*
 * For errors that can repeat at the rate of a loop (accept failures,
 * misbehaving clients): at most one line per window per call site,
 * then a count of what was suppressed. The owner keeps the struct.
 */
struct log_limit {
	int64_t window_start_ms;
	unsigned suppressed;
};

void log_limited(const struct logger *lg, struct log_limit *limit, enum log_level level,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

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
