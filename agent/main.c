/*
 * pgbdr-agent: command line, modes (daemon, --once, --inetd,
 * --check-config) and signal handling around the daemon context.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "agent.h"
#include "agentcheck.h"
#include "http_server.h"
#include "inetd.h"
#include "privileges.h"
#include "render.h"
#include "spop_server.h"
#include "systemd.h"

#define DEFAULT_CONFIG "/etc/pgbdr-agent/pgbdr-agent.ini"

enum run_mode {
	MODE_DAEMON,
	MODE_CHECK_CONFIG,
	MODE_ONCE,
	MODE_INETD,
};

struct options {
	const char *config_path;
	enum run_mode mode;
	bool json;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: pgbdr-agent [-c FILE] [--check-config | --once [--json] | --inetd]\n"
		"\n"
		"Health agent for HAProxy in front of PostgreSQL multi-master clusters.\n"
		"\n"
		"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
		"      --check-config  validate the configuration and exit 0 or 1\n"
		"      --once          probe every node once, print the status, exit 0 if\n"
		"                      the default node is ready or degraded, else 1\n"
		"      --json          with --once: print the /status JSON document\n"
		"      --inetd         answer one HTTP check on stdin/stdout (xinetd)\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "once", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "inetd", no_argument, NULL, 'i' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->config_path = DEFAULT_CONFIG;
	while ((c = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'k':
			o->mode = MODE_CHECK_CONFIG;
			break;
		case 'o':
			o->mode = MODE_ONCE;
			break;
		case 'j':
			o->json = true;
			break;
		case 'i':
			o->mode = MODE_INETD;
			break;
		case 'V':
			printf("pgbdr-agent %s\n", PGBDR_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pgbdr-agent: unexpected argument: %s\n", argv[optind]);
		return -1;
	}
	if (o->json && o->mode != MODE_ONCE) {
		fprintf(stderr, "pgbdr-agent: --json goes with --once\n");
		return -1;
	}
	return 0;
}

/* --check-config lists every error and warning; the other modes the first error. */
static int load_config(const char *path, struct agent_config *cfg, enum run_mode mode)
{
	struct config_error err;
	struct config_report report;
	char msg[600];
	int rc;

	rc = config_load_report(path, cfg, &err, &report);
	if (mode == MODE_CHECK_CONFIG) {
		for (int i = 0; i < report.n_lines; i++)
			fprintf(stderr, "pgbdr-agent: %s\n", report.lines[i]);
		if (report.n_errors > report.n_lines)
			fprintf(stderr, "pgbdr-agent: %d errors in all\n", report.n_errors);
	}
	config_report_free(&report);
	if (rc == 0)
		return 0;
	config_error_format(&err, msg, sizeof(msg));
	if (mode == MODE_INETD) {
		/* syslog is where xinetd's own logs go */
		openlog("pgbdr-agent", LOG_PID, LOG_DAEMON);
		syslog(LOG_ERR, "%s", msg);
		closelog();
		inetd_serve_config_error(msg, STDIN_FILENO, STDOUT_FILENO);
	} else if (mode != MODE_CHECK_CONFIG) {
		fprintf(stderr, "pgbdr-agent: %s\n", msg);
	}
	return -1;
}

static void print_buffer(struct evbuffer *buf, FILE *out)
{
	size_t len = evbuffer_get_length(buf);

	fwrite(evbuffer_pullup(buf, -1), 1, len, out);
	fflush(out);
}

static int run_once(struct agent *a, bool json)
{
	struct evbuffer *out = evbuffer_new();
	const struct node *def;

	if (!out)
		return 1;
	agent_run_first_round(a);
	if (json)
		render_status_json(a, out);
	else
		render_status_table(a, out);
	print_buffer(out, stdout);
	evbuffer_free(out);
	def = agent_default_node(a);
	return def && state_is_serving(def->status.state) ? 0 : 1;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;

	log_info(&a->log, "received %s, shutting down", strsignal((int)sig));
	systemd_notify_stopping();
	event_base_loopexit(a->base, NULL);
}

/*
 * SIGHUP: validate the file first; an invalid one changes nothing, and
 * the error (file, line, key) goes to the log for the operator.
 */
static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;
	struct agent_config next;
	struct config_error err;
	char msg[600];

	log_info(&a->log, "received SIGHUP, reloading %s", a->config.path);
	systemd_notify_reloading();
	if (config_load(a->config.path, &next, &err) < 0) {
		a->counters.reload_failures++;
		config_error_format(&err, msg, sizeof(msg));
		log_error(&a->log, "reload rejected, keeping the running configuration: %s", msg);
		agent_reload_done(a);
		return;
	}
	if (agent_reload(a, &next) == 0) {
		a->counters.reloads++;
		if (a->spop)
			spop_server_reconfigure(a->spop, &a->config, &a->log);
		privileges_warn_readable_secrets(&a->config, &a->log);
	} else {
		a->counters.reload_failures++;
	}
	agent_reload_done(a);
}

static int start_listeners(struct agent *a)
{
	char err[300];

	a->http = http_server_new(a, &a->config.http_listen, err, sizeof(err));
	if (a->http && a->config.agent_listen.enabled)
		a->agentcheck = agentcheck_server_new(a, &a->config.agent_listen, err, sizeof(err));
	if (a->http && (!a->config.agent_listen.enabled || a->agentcheck) &&
	    a->config.spoe_listen.enabled)
		a->spop = spop_server_new(a, &a->config.spoe_listen, err, sizeof(err));
	if (!a->http || (a->config.agent_listen.enabled && !a->agentcheck) ||
	    (a->config.spoe_listen.enabled && !a->spop)) {
		log_error(&a->log, "%s", err);
		return -1;
	}
	return 0;
}

static void stop_listeners(struct agent *a)
{
	spop_server_free(a->spop);
	a->spop = NULL;
	agentcheck_server_free(a->agentcheck);
	a->agentcheck = NULL;
	http_server_free(a->http);
	a->http = NULL;
}

static void log_listen_addr(const struct agent *a, const char *what,
			    const struct listen_addr *addr)
{
	if (addr->enabled)
		log_info(&a->log, "%s on %s:%d", what, addr->host[0] ? addr->host : "*",
			 addr->port);
}

/*
 * Each client and each node costs one fd, and the common default soft
 * limit (1024) is far below what one agent in front of a busy HAProxy
 * may see; the hard limit is what the operator allowed.
 */
static void raise_fd_limit(const struct agent *a)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warning(&a->log, "cannot raise the open files limit: %s", strerror(errno));
}

static int run_daemon(struct agent *a)
{
	struct event *sigterm, *sigint, *sighup;
	char err[400];
	int rc = 0;

	if (privileges_check_start(&a->config, err, sizeof(err)) < 0) {
		log_error(&a->log, "%s", err);
		return 1;
	}
	raise_fd_limit(a);
	if (start_listeners(a) < 0) {
		stop_listeners(a);
		return 1;
	}
	/* bound: nothing below needs root any more */
	if (privileges_drop(&a->config, err, sizeof(err)) < 0) {
		log_error(&a->log, "%s", err);
		stop_listeners(a);
		return 1;
	}
	privileges_warn_readable_secrets(&a->config, &a->log);
	sigterm = evsignal_new(a->base, SIGTERM, on_stop_signal, a);
	sigint = evsignal_new(a->base, SIGINT, on_stop_signal, a);
	sighup = evsignal_new(a->base, SIGHUP, on_reload_signal, a);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	evsignal_add(sighup, NULL);

	log_info(&a->log, "pgbdr-agent %s: %d node(s)", PGBDR_VERSION, a->n_nodes);
	log_listen_addr(a, "http", &a->config.http_listen);
	log_listen_addr(a, "agent-check", &a->config.agent_listen);
	log_listen_addr(a, "spop", &a->config.spoe_listen);
	agent_serving(a);
	agent_start_pollers(a);
	event_base_dispatch(a->base);

	agent_stop_serving(a);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	/* nobody can be told "leader" by this agent past this point */
	stop_listeners(a);
	agent_resign(a);
	return rc;
}

int main(int argc, char **argv)
{
	struct options opts = { 0 };
	struct agent_config cfg;
	struct agent agent;
	int rc;

	if (privileges_no_core_dumps() != 0)
		fprintf(stderr, "pgbdr-agent: cannot disable core dumps: %s\n", strerror(errno));
	if (parse_options(argc, argv, &opts) < 0)
		return 2;
	/* xinetd connects stderr to the client too: nothing may go there */
	if (opts.mode == MODE_INETD)
		inetd_quiet_stderr();
	if (load_config(opts.config_path, &cfg, opts.mode) < 0)
		return 1;
	if (opts.mode == MODE_CHECK_CONFIG) {
		printf("%s: configuration OK, %d node(s)\n", opts.config_path, cfg.n_nodes);
		config_free(&cfg);
		return 0;
	}
	/* one probe decides: hysteresis needs a history these modes lack */
	if (opts.mode == MODE_ONCE || opts.mode == MODE_INETD) {
		cfg.policy.rise = 1;
		cfg.policy.fall = 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (agent_init(&agent, &cfg) < 0) {
		fprintf(stderr, "pgbdr-agent: cannot initialise the event loop\n");
		agent_free(&agent);
		return 1;
	}
	/* xinetd connects stderr to the client too; --once prints its own */
	if (opts.mode == MODE_INETD)
		agent.log.silent = true;
	else if (opts.mode == MODE_ONCE && agent.log.level > LOG_LEVEL_WARNING)
		agent.log.level = LOG_LEVEL_WARNING;
	switch (opts.mode) {
	case MODE_ONCE:
		rc = run_once(&agent, opts.json);
		break;
	case MODE_INETD:
		rc = inetd_serve(&agent, STDIN_FILENO, STDOUT_FILENO);
		break;
	default:
		rc = run_daemon(&agent);
		break;
	}
	agent_free(&agent);
	return rc;
}
