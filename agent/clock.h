/*
 * Clocks: monotonic milliseconds for timers and staleness, and the
 * conversion to wall time for what users read.
 */
#ifndef PGBDR_CLOCK_H
#define PGBDR_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

int64_t clock_ms(void);      /* monotonic */
int64_t wall_clock_ms(void); /* CLOCK_REALTIME */

/* A duration in milliseconds as the struct timeval libevent's timers take. */
struct timeval ms_to_timeval(int64_t ms);

/* ISO-8601 UTC with milliseconds, for a monotonic timestamp. */
void format_mono_as_iso8601(int64_t mono_ms, char *buf, size_t len);

#endif
