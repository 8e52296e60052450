/*
 * Names of flavors and states, as they appear in configs, logs,
 * HTTP bodies, JSON and SPOP variables.
 */
#include <strings.h>

#include "status.h"

static const char *const flavor_names[FLAVOR_COUNT] = {
	[FLAVOR_AUTO] = "auto",
	[FLAVOR_BDR] = "bdr",
	[FLAVOR_PGD] = "pgd",
	[FLAVOR_PGLOGICAL] = "pglogical",
	[FLAVOR_SPOCK] = "spock",
	[FLAVOR_LOGICAL] = "logical",
	[FLAVOR_PHYSICAL] = "physical",
	[FLAVOR_PLAIN] = "plain",
};

const char *flavor_name(enum flavor f)
{
	if ((int)f < 0 || f >= FLAVOR_COUNT)
		return "unknown";
	return flavor_names[f];
}

int flavor_from_name(const char *name, enum flavor *out)
{
	for (int f = 0; f < FLAVOR_COUNT; f++) {
		if (strcasecmp(name, flavor_names[f]) == 0) {
			*out = (enum flavor)f;
			return 0;
		}
	}
	return -1;
}

const char *state_name(enum node_state s)
{
	switch (s) {
	case STATE_READY:
		return "ready";
	case STATE_DEGRADED:
		return "degraded";
	case STATE_DRAINING:
		return "draining";
	case STATE_DOWN:
		break;
	}
	return "down";
}

const char *probe_outcome_name(enum probe_outcome o)
{
	static const char *const names[PROBE_OUTCOME_COUNT] = {
		[PROBE_OK] = "ok",
		[PROBE_NOT_YET] = "not_yet",
		[PROBE_RESOLVE_FAILED] = "resolve",
		[PROBE_CONNECT_FAILED] = "connect",
		[PROBE_CONNECT_TIMEOUT] = "connect_timeout",
		[PROBE_QUERY_TIMEOUT] = "query_timeout",
		[PROBE_QUERY_FAILED] = "query",
		[PROBE_CONNECTION_LOST] = "connection_lost",
		[PROBE_CONNECT_WAITING] = "connect_waiting",
	};

	if ((int)o < 0 || o >= PROBE_OUTCOME_COUNT)
		return "unknown";
	return names[o];
}
