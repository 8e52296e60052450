/*
 * systemd integration: READY=1 once the listeners are bound and every
 * node has been probed once, STATUS= lines with the cluster summary,
 * and WATCHDOG=1 pings from the event loop. Without NOTIFY_SOCKET
 * (not under systemd) every call here is a cheap no-op. It knows the
 * agent only through a summary, so that the agent can include it.
 */
#ifndef PGBDR_SYSTEMD_H
#define PGBDR_SYSTEMD_H

#include <stdbool.h>

struct event;
struct event_base;

/* What STATUS= says, and whether READY=1 may go out. */
struct systemd_summary {
	int ready_nodes;
	int n_nodes;
	const char *write_leader; /* "" when there is none */
	bool maintenance;
	bool all_probed;
};

/* READY=1 goes out once the listeners are bound and every node has
 * been probed; STATUS= only when the summary changes */
struct systemd_state {
	bool listening;
	bool ready_sent;
	char status[160];
	struct event *watchdog;
};

/* Start the watchdog timer if WatchdogSec= is set for the unit. */
void systemd_start_watchdog(struct systemd_state *sd, struct event_base *base);
void systemd_stop_watchdog(struct systemd_state *sd);

/* Call after each probe round and state change; sends READY=1 once. */
void systemd_update(struct systemd_state *sd, const struct systemd_summary *sum);
/* After a reload: READY=1 again, which ends the RELOADING=1 state. */
void systemd_ready_again(struct systemd_state *sd, const struct systemd_summary *sum);

/* STOPPING=1 before a clean exit, RELOADING=1 around a reload. */
void systemd_notify_stopping(void);
void systemd_notify_reloading(void);

#endif
