/*
 * sd_notify() from libsystemd. The watchdog is pinged by a timer in
 * the event loop itself, so a stuck loop (the one thing that would
 * silence every check) is what systemd notices and restarts.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "agent.h"
#include "systemd.h"

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

void systemd_start_watchdog(struct agent *a)
{
	uint64_t usec = 0;
	struct timeval tv;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	/* twice per period, as sd_watchdog_enabled(3) advises */
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	a->watchdog = event_new(a->base, -1, EV_PERSIST, on_watchdog, a);
	if (a->watchdog)
		event_add(a->watchdog, &tv);
	sd_notify(0, "WATCHDOG=1");
}

void systemd_stop_watchdog(struct agent *a)
{
	if (a->watchdog)
		event_free(a->watchdog);
	a->watchdog = NULL;
}

static void format_summary(const struct agent *a, char *buf, size_t len)
{
	const char *leader = agent_write_leader(a);

	snprintf(buf, len, "STATUS=%d/%d nodes ready, write leader %s%s", agent_ready_nodes(a),
		 a->n_nodes, leader[0] ? leader : "none",
		 a->maintenance ? ", maintenance" : "");
}

void systemd_update(struct agent *a)
{
	char status[sizeof(a->sd_status)];

	if (!a->listening)
		return;
	format_summary(a, status, sizeof(status));
	if (!a->sd_ready_sent && agent_all_probed(a)) {
		a->sd_ready_sent = true;
		snprintf(a->sd_status, sizeof(a->sd_status), "%s", status);
		sd_notifyf(0, "READY=1\n%s", status);
		return;
	}
	if (a->sd_ready_sent && strcmp(status, a->sd_status) != 0) {
		snprintf(a->sd_status, sizeof(a->sd_status), "%s", status);
		sd_notify(0, status);
	}
}

void systemd_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void systemd_notify_reloading(void)
{
	sd_notify(0, "RELOADING=1");
}
