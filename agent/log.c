/*
 * Log output. One line per event, with a UTC timestamp and the level,
 * so that journald, syslog relays and humans can all read it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "ERROR",
	[LOG_LEVEL_WARNING] = "WARNING",
	[LOG_LEVEL_INFO] = "INFO",
	[LOG_LEVEL_DEBUG] = "DEBUG",
};

void log_init(struct logger *lg, enum log_level level)
{
	lg->level = level;
	lg->silent = false;
}

void log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
{
	char line[1024];
	char stamp[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (lg && (lg->silent || level > lg->level))
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* libpq messages end in newlines; keep one event on one line */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000),
		level_names[level], line);
}

void log_redact_conninfo(const char *msg, char *buf, size_t len)
{
	static const char key[] = "password";
	size_t out = 0;

	if (len == 0)
		return;
	while (*msg && out + 1 < len) {
		if (strncasecmp(msg, key, sizeof(key) - 1) == 0) {
			const char *p = msg + sizeof(key) - 1;

			while (*p == ' ')
				p++;
			if (*p == '=') {
				int n = snprintf(buf + out, len - out, "password=***");
				out += (size_t)n < len - out ? (size_t)n : len - out - 1;
				p++;
				while (*p == ' ')
					p++;
				if (*p == '\'') {
					for (p++; *p && *p != '\''; p++)
						if (*p == '\\' && p[1])
							p++;
					if (*p)
						p++;
				} else {
					while (*p && *p != ' ' && *p != '&')
						p++;
				}
				msg = p;
				continue;
			}
		}
		buf[out++] = *msg++;
	}
	buf[out] = '\0';
}
