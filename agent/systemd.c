/*
 * sd_notify() from libsystemd. The watchdog is pinged by a timer in
 * the event loop itself, so a stuck loop (the one thing that would
 * silence every check) is what systemd notices and restarts.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "systemd.h"

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

void systemd_start_watchdog(struct systemd_state *sd, struct event_base *base)
{
	uint64_t usec = 0;
	struct timeval tv;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	/* twice per period, as sd_watchdog_enabled(3) advises */
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	sd->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
	if (sd->watchdog)
		event_add(sd->watchdog, &tv);
	sd_notify(0, "WATCHDOG=1");
}

void systemd_stop_watchdog(struct systemd_state *sd)
{
	if (sd->watchdog)
		event_free(sd->watchdog);
	sd->watchdog = NULL;
}

static void format_summary(const struct systemd_summary *sum, char *buf, size_t len)
{
	snprintf(buf, len, "STATUS=%d/%d nodes ready, write leader %s%s", sum->ready_nodes,
		 sum->n_nodes, sum->write_leader[0] ? sum->write_leader : "none",
		 sum->maintenance ? ", maintenance" : "");
}

void systemd_update(struct systemd_state *sd, const struct systemd_summary *sum)
{
	char status[sizeof(sd->status)];

	if (!sd->listening)
		return;
	format_summary(sum, status, sizeof(status));
	if (!sd->ready_sent && sum->all_probed) {
		sd->ready_sent = true;
		snprintf(sd->status, sizeof(sd->status), "%s", status);
		sd_notifyf(0, "READY=1\n%s", status);
		return;
	}
	if (sd->ready_sent && strcmp(status, sd->status) != 0) {
		snprintf(sd->status, sizeof(sd->status), "%s", status);
		sd_notify(0, status);
	}
}

void systemd_ready_again(struct systemd_state *sd, const struct systemd_summary *sum)
{
	sd->ready_sent = false;
	systemd_update(sd, sum);
}

void systemd_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

void systemd_notify_reloading(void)
{
	sd_notify(0, "RELOADING=1");
}
