/*
 * Privileges. pgbdr-agent needs no privilege at all once its sockets
 * are bound: its PostgreSQL role is a monitoring role and it writes
 * nothing. Running on as root would only widen what a parser bug
 * could reach, so root must be asked for explicitly.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privileges.h"

/*
 * Started directly as an unprivileged user (as the shipped unit does),
 * a process is dumpable: a crash would write the passwords it holds
 * into a core file. Not dumpable also makes /proc/PID/mem and ptrace
 * root's only.
 */
int privileges_no_core_dumps(void)
{
	return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int privileges_check_start(const struct agent_config *cfg, char *err, size_t errlen)
{
	if (geteuid() != 0 || cfg->user || cfg->allow_root)
		return 0;
	snprintf(err, errlen, "%s: refusing to run as root: set [agent] user = NAME to drop "
		 "privileges after binding, or allow_root = yes", cfg->path);
	return -1;
}

int privileges_drop(const struct agent_config *cfg, char *err, size_t errlen)
{
	struct passwd *pw;

	if (!cfg->user)
		return 0;
	errno = 0;
	pw = getpwnam(cfg->user);
	if (!pw) {
		snprintf(err, errlen, "user %s: %s", cfg->user,
			 errno ? strerror(errno) : "no such user");
		return -1;
	}
	if (geteuid() != 0) {
		if (getuid() == pw->pw_uid)
			return 0;
		snprintf(err, errlen, "cannot switch to user %s: not running as root", cfg->user);
		return -1;
	}
	/* groups first: after setuid() we could no longer change them */
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		snprintf(err, errlen, "cannot switch to user %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	/* paranoia: a setuid() that left a way back is no drop at all */
	if (setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after switching to %s", cfg->user);
		return -1;
	}
	/* libpq finds ~/.pgpass through HOME: make it the new user's */
	setenv("HOME", pw->pw_dir, 1);
	setenv("USER", pw->pw_name, 1);
	setenv("LOGNAME", pw->pw_name, 1);
	return 0;
}

static bool config_holds_password(const struct agent_config *cfg)
{
	for (int i = 0; i < cfg->n_nodes; i++) {
		const char *pw = node_config_param(&cfg->nodes[i], "password");

		if (pw && pw[0])
			return true;
	}
	return false;
}

void privileges_warn_readable_secrets(const struct agent_config *cfg, const struct logger *log)
{
	struct stat st;

	if (!cfg->path || stat(cfg->path, &st) != 0 || !(st.st_mode & S_IROTH))
		return;
	if (config_holds_password(cfg))
		log_warning(log, "%s holds a password and is readable by every user; "
			    "chmod 640 it, or move the password to a .pgpass file", cfg->path);
}
