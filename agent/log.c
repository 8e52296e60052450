/*
 * Log output. One line per event, with a UTC timestamp and the level,
 * so that journald, syslog relays and humans can all read it.
 *
 * Under systemd, stderr is a stream to journald, which stores every
 * line at the unit's default priority unless the line starts with an
 * sd-daemon(3) "<N>" prefix. So when JOURNAL_STREAM names the very
 * stream stderr is (systemd.exec(5)), each line gets that prefix and
 * loses the timestamp journald records anyway.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *const level_names[] = {
	[LOG_LEVEL_ERROR] = "ERROR",
	[LOG_LEVEL_WARNING] = "WARNING",
	[LOG_LEVEL_INFO] = "INFO",
	[LOG_LEVEL_DEBUG] = "DEBUG",
};

#define LOG_LIMIT_WINDOW_MS 10000

static const int syslog_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARNING] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/* Whether JOURNAL_STREAM ("DEVICE:INODE") is the stream on stderr. */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	int used = 0;

	if (!env || sscanf(env, "%ju:%ju%n", &dev, &ino, &used) != 2 || env[used] != '\0')
		return false;
	if (fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void log_init(struct logger *lg, enum log_level level, enum log_destination destination)
{
	lg->level = level;
	lg->destination = destination;
	lg->silent = false;
	lg->journal = stderr_is_journal();
	if (destination == LOG_TO_SYSLOG)
		openlog("pgbdr-agent", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void emit(const struct logger *lg, enum log_level level, char *line)
{
	char stamp[32];
	struct timeval tv;
	struct tm tm;

	/* libpq messages end in newlines; keep one event on one line */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (lg && lg->destination == LOG_TO_SYSLOG) {
		syslog(syslog_priorities[level], "%s", line);
		return;
	}
	if (lg && lg->journal) {
		fprintf(stderr, "<%d>%s %s\n", syslog_priorities[level], level_names[level], line);
		return;
	}
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000),
		level_names[level], line);
}

static bool enabled(const struct logger *lg, enum log_level level)
{
	return !lg || (!lg->silent && level <= lg->level);
}

void log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!enabled(lg, level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	emit(lg, level, line);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_limited(const struct logger *lg, struct log_limit *limit, enum log_level level,
		 const char *fmt, ...)
{
	char line[1024];
	int64_t now = monotonic_ms();
	size_t used;
	va_list ap;

	if (!enabled(lg, level))
		return;
	if (limit->window_start_ms && now - limit->window_start_ms < LOG_LIMIT_WINDOW_MS) {
		limit->suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	used = strlen(line);
	if (limit->suppressed && used < sizeof(line))
		snprintf(line + used, sizeof(line) - used, " (%u similar messages suppressed)",
			 limit->suppressed);
	limit->window_start_ms = now;
	limit->suppressed = 0;
	emit(lg, level, line);
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
