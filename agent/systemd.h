/*
 * systemd integration: READY=1 once the listeners are bound and every
 * node has been probed once, STATUS= lines with the cluster summary,
 * and WATCHDOG=1 pings from the event loop. Without NOTIFY_SOCKET
 * (not under systemd) every call here is a cheap no-op.
 */
#ifndef PGBDR_SYSTEMD_H
#define PGBDR_SYSTEMD_H

struct agent;

/* Start the watchdog timer if WatchdogSec= is set for the unit. */
void systemd_start_watchdog(struct agent *a);
void systemd_stop_watchdog(struct agent *a);

/* Call after each probe round and state change; sends READY=1 once. */
void systemd_update(struct agent *a);

/* STOPPING=1 before a clean exit, RELOADING=1 around a reload. */
void systemd_notify_stopping(void);
void systemd_notify_reloading(void);

#endif
