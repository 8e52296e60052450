/*
 * Clock helpers. Status timestamps are monotonic so that a wall-clock
 * jump can neither make a stale status look fresh nor the reverse.
 */
#include <stdio.h>
#include <time.h>

#include "clock.h"

static int64_t read_clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_ms(void)
{
	return read_clock_ms(CLOCK_MONOTONIC);
}

int64_t wall_clock_ms(void)
{
	return read_clock_ms(CLOCK_REALTIME);
}

struct timeval ms_to_timeval(int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
			      .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

void format_mono_as_iso8601(int64_t mono_ms, char *buf, size_t len)
{
	int64_t wall = wall_clock_ms() - (clock_ms() - mono_ms);
	time_t secs = (time_t)(wall / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(wall % 1000));
}
