/*
 * /metrics in the Prometheus text format (version 0.0.4): node state,
 * weight, lag, probe durations and errors, listener counters.
 */
#ifndef PGBDR_METRICS_H
#define PGBDR_METRICS_H

#include "agent.h"

struct evbuffer;

void metrics_render(const struct agent *a, struct evbuffer *out);

#endif
