/*
 * Loading the INI configuration: the classic database.ini ([postgresql]
 * only) and the full format with [agent], [policy] and [node.NAME].
 * Anything unknown is an error, and every error names the file, the
 * line and the key, but never a password.
 *
 * ini_reader.c splits the files into items; this file gives them
 * meaning. It reads on after an error, so that --check-config can list
 * every error at once, and follows "%include FILE" and
 * "include_dir = DIR" (files in name order), with errors naming the
 * included file and its line. An included file starts outside any
 * section; after it, the including file's section goes on.
 *
 * Adding a section: a SECTION_ kind, a case in open_section() and one
 * in on_key(); its keys can go in the settings table.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "ini_reader.h"

#define DEFAULT_PRIORITY 100
#define MAX_PRIORITY 1000000
#define APPLICATION_NAME "pgbdr-agent"

#define MS_PER_S INT64_C(1000)
#define MS_PER_H (3600 * MS_PER_S)
#define MS_PER_D (24 * MS_PER_H)

#define MAX_INCLUDE_DEPTH 8    /* %include inside %include... */
#define MAX_FILES 256          /* files read in all, includes counted */
#define MAX_ERRORS 100         /* reported; the rest are counted */

enum section_kind {
	SECTION_NONE = 0,
	SECTION_SKIP,       /* a header that was in error: its keys are ignored */
	SECTION_POSTGRESQL,
	SECTION_AGENT,
	SECTION_POLICY,
	SECTION_NODE,
	SECTION_ETCD,
};

enum setting_type {
	TYPE_LISTEN,    /* struct listen_addr */
	TYPE_CIDR,      /* struct cidr_list */
	TYPE_DURATION,  /* int64_t milliseconds */
	TYPE_SECONDS,   /* double seconds, written as a duration */
	TYPE_INT,       /* int */
	TYPE_SIZE,      /* int64_t bytes */
	TYPE_BOOL,      /* bool */
	TYPE_STRING,    /* char *, NULL when empty */
	TYPE_LOG_LEVEL, /* enum log_level */
	TYPE_LOG_DEST,  /* enum log_destination */
	TYPE_READ_ONLY, /* enum read_only_policy */
	TYPE_PEER_LAG,  /* enum peer_lag_mode */
};

/* One [agent] or [policy] key: where it lives in agent_config, its bounds. */
struct setting {
	enum section_kind section;
	const char *name;
	enum setting_type type;
	size_t offset;
	int64_t min, max; /* ms for durations, bytes for sizes */
};

#define AGENT(name, type, field, min, max) \
	{ SECTION_AGENT, name, type, offsetof(struct agent_config, field), min, max }
#define POLICY(name, type, field, min, max) \
	{ SECTION_POLICY, name, type, offsetof(struct agent_config, policy.field), min, max }
#define ETCD(name, type, field, min, max) \
	{ SECTION_ETCD, name, type, offsetof(struct agent_config, etcd.field), min, max }

static const struct setting settings[] = {
	AGENT("http_listen", TYPE_LISTEN, http_listen, 0, 0),
	AGENT("agent_listen", TYPE_LISTEN, agent_listen, 0, 0),
	AGENT("spoe_listen", TYPE_LISTEN, spoe_listen, 0, 0),
	AGENT("allow_from", TYPE_CIDR, allow_from, 0, 0),
	AGENT("interval", TYPE_DURATION, interval_ms, 100, MS_PER_H),
	AGENT("timeout", TYPE_DURATION, timeout_ms, 100, MS_PER_H),
	AGENT("stale_after", TYPE_DURATION, policy.stale_after_ms, 100, MS_PER_D),
	AGENT("rise", TYPE_INT, policy.rise, 1, 100),
	AGENT("fall", TYPE_INT, policy.fall, 1, 100),
	AGENT("maintenance_file", TYPE_STRING, maintenance_file, 0, 0),
	AGENT("log_level", TYPE_LOG_LEVEL, log_level, 0, 0),
	AGENT("log_destination", TYPE_LOG_DEST, log_destination, 0, 0),
	AGENT("user", TYPE_STRING, user, 0, 0),
	AGENT("allow_root", TYPE_BOOL, allow_root, 0, 0),
	AGENT("agent_send_wait", TYPE_DURATION, agent_send_wait_ms, 0, 60 * MS_PER_S),
	AGENT("leader_return_delay", TYPE_DURATION, leader_return_delay_ms, 0, MS_PER_D),
	AGENT("leader_handover", TYPE_DURATION, leader_handover_ms, 0, MS_PER_H),
	AGENT("leader_without_peers", TYPE_BOOL, leader_without_peers, 0, 0),
	AGENT("peer_lag", TYPE_PEER_LAG, peer_lag, 0, 0),
	AGENT("spoe_max_frame_size", TYPE_SIZE, spoe_max_frame_size, 256, 16777215),
	AGENT("spoe_max_fragmented", TYPE_SIZE, spoe_max_fragmented, 256, INT64_C(1) << 30),
	AGENT("max_clients", TYPE_INT, max_clients, 1, 1000000),
	AGENT("max_connecting", TYPE_INT, max_connecting, 1, 10000),
	AGENT("client_timeout", TYPE_DURATION, client_timeout_ms, 100, MS_PER_H),
	POLICY("drain_lag", TYPE_SIZE, drain_lag, 0, INT64_MAX),
	POLICY("max_lag", TYPE_SIZE, max_lag, 0, INT64_MAX),
	POLICY("max_lag_time", TYPE_SECONDS, max_lag_time, 0, 365 * MS_PER_D),
	POLICY("min_weight", TYPE_INT, min_weight, 0, 100),
	POLICY("read_only", TYPE_READ_ONLY, read_only, 0, 0),
	ETCD("endpoints", TYPE_STRING, endpoints, 0, 0),
	ETCD("cluster", TYPE_STRING, cluster, 0, 0),
	ETCD("prefix", TYPE_STRING, prefix, 0, 0),
	ETCD("ttl", TYPE_DURATION, ttl_ms, 2 * MS_PER_S, MS_PER_H),
	POLICY("raft_grace", TYPE_DURATION, raft_grace_ms, 0, MS_PER_H),
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

struct param {
	char *key;
	char *value;
	int line;
};

struct param_list {
	struct param *items;
	int count;
	int cap;
};

/* A node while its section is read; turned into a node_config at the end. */
struct node_build {
	struct node_config node;  /* everything but the libpq params */
	struct param_list dsn;    /* non-empty values from dsn = */
	struct param_list keys;   /* single keys; "" means unset */
	int dsn_line;
	int priority_line;
	int flavor_line;
	int name_line;
};

/* A file read, for messages about it after it is closed. */
struct file_seen {
	char *path;
	dev_t dev;
	ino_t ino;
	bool open;             /* on the include stack now */
	bool has_secret;       /* holds a password or sslpassword */
};

struct parser {
	const char *path;      /* the file being read */
	int line;              /* of the item being handled */
	int file_index;        /* into files */
	bool failed;
	int n_errors;
	struct config_error *err;
	struct config_report *report; /* NULL: first error only */
	struct file_seen files[MAX_FILES];
	int n_files;
	int depth;
	struct agent_config *cfg;
	PQconninfoOption *libpq_options; /* the libpq keyword list */

	enum section_kind section;
	int agent_line;        /* header lines, 0 = section absent */
	int policy_line;
	int etcd_line;
	int classic_line;
	struct node_build classic;
	struct node_build *nodes;
	int n_nodes;
	int current;           /* index into nodes, -1 = classic */
	int setting_line[N_SETTINGS];
	const char *setting_file[N_SETTINGS];
	const char *classic_name_file;
};

static void report_add(struct config_report *r, const char *text)
{
	char **lines;
	char *copy;

	if (!r || r->n_lines >= MAX_ERRORS + 2)
		return;
	copy = strdup(text);
	lines = realloc(r->lines, (size_t)(r->n_lines + 1) * sizeof(*lines));
	if (!copy || !lines) {
		free(copy);
		if (lines)
			r->lines = lines;
		return;
	}
	r->lines = lines;
	r->lines[r->n_lines++] = copy;
}

/*
 * Records an error in file:line (the first one also in p->err, every
 * one in the report) and goes on; returns 0, the "not applied" value.
 */
__attribute__((format(printf, 5, 0)))
static int vfail_in(struct parser *p, const char *file, int line, const char *key,
		    const char *fmt, va_list ap)
{
	struct config_error e;
	char text[sizeof(e.file) + sizeof(e.key) + sizeof(e.message) + 32];

	p->n_errors++;
	if (p->report)
		p->report->n_errors++;
	if (p->n_errors > MAX_ERRORS + 1)
		return 0;
	memset(&e, 0, sizeof(e));
	if (p->n_errors == MAX_ERRORS + 1) {
		snprintf(e.message, sizeof(e.message), "too many errors; stopped listing them");
	} else {
		snprintf(e.file, sizeof(e.file), "%s", file ? file : "");
		e.line = line;
		snprintf(e.key, sizeof(e.key), "%s", key ? key : "");
		vsnprintf(e.message, sizeof(e.message), fmt, ap);
	}
	if (!p->failed)
		*p->err = e;
	p->failed = true;
	config_error_format(&e, text, sizeof(text));
	report_add(p->report, text);
	return 0;
}

__attribute__((format(printf, 5, 6)))
static int fail_in(struct parser *p, const char *file, int line, const char *key,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_in(p, file, line, key, fmt, ap);
	va_end(ap);
	return 0;
}

/* An error at a line of the file being read. */
__attribute__((format(printf, 4, 5)))
static int fail_at(struct parser *p, int line, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_in(p, p->path, line, key, fmt, ap);
	va_end(ap);
	return 0;
}

/* A warning: listed in the report, never a failure. */
__attribute__((format(printf, 3, 4)))
static void warn_in(struct parser *p, const char *file, const char *fmt, ...)
{
	char msg[512], text[1024];
	va_list ap;

	if (!p->report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(text, sizeof(text), "%s: warning: %s", file, msg);
	report_add(p->report, text);
	p->report->n_warnings++;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *p, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_in(p, p->path, p->line, key, fmt, ap);
	va_end(ap);
	return 0;
}

static void scrub_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void param_list_free(struct param_list *list)
{
	for (int i = 0; i < list->count; i++) {
		free(list->items[i].key);
		scrub_free(list->items[i].value);
	}
	free(list->items);
	memset(list, 0, sizeof(*list));
}

static struct param *param_find(struct param_list *list, const char *key)
{
	for (int i = 0; i < list->count; i++)
		if (strcmp(list->items[i].key, key) == 0)
			return &list->items[i];
	return NULL;
}

static int param_add(struct param_list *list, const char *key, const char *value, int line)
{
	struct param *item;

	if (list->count == list->cap) {
		int cap = list->cap ? list->cap * 2 : 8;
		struct param *items = realloc(list->items, (size_t)cap * sizeof(*items));

		if (!items)
			return -1;
		list->items = items;
		list->cap = cap;
	}
	item = &list->items[list->count];
	item->key = strdup(key);
	item->value = strdup(value);
	item->line = line;
	if (!item->key || !item->value) {
		free(item->key);
		scrub_free(item->value);
		return -1;
	}
	list->count++;
	return 0;
}

/* name is validated, so this never cuts; strnlen just proves it. */
static void copy_node_name(char *dst, const char *name)
{
	size_t n = strnlen(name, NODE_NAME_MAX - 1);

	memcpy(dst, name, n);
	dst[n] = '\0';
}

static void node_build_init(struct node_build *b, const char *name, bool classic, int line)
{
	memset(b, 0, sizeof(*b));
	copy_node_name(b->node.name, name);
	b->node.classic = classic;
	b->node.line = line;
	b->node.priority = DEFAULT_PRIORITY;
	b->node.flavor = FLAVOR_AUTO;
}

static void node_build_free(struct node_build *b)
{
	param_list_free(&b->dsn);
	param_list_free(&b->keys);
}

static void set_defaults(struct agent_config *cfg)
{
	cfg->http_listen.enabled = true;
	snprintf(cfg->http_listen.host, sizeof(cfg->http_listen.host), "0.0.0.0");
	cfg->http_listen.port = 9200;
	cfg->interval_ms = 1000;
	cfg->timeout_ms = 2000;
	cfg->policy.drain_lag = 0;
	cfg->policy.max_lag = 0;
	cfg->policy.max_lag_time = 0;
	cfg->policy.min_weight = 10;
	cfg->policy.read_only = READ_ONLY_DOWN;
	/* PGD Proxy's consensus grace is 6 s to 12 s */
	cfg->policy.raft_grace_ms = 6 * MS_PER_S;
	cfg->policy.rise = 1;
	cfg->policy.fall = 1;
	cfg->policy.stale_after_ms = 0; /* derived after loading */
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->allow_root = false;
	cfg->agent_send_wait_ms = 500;
	cfg->leader_return_delay_ms = 10 * MS_PER_S;
	/* HAProxy's default check inter: long enough for it to see the old leader go */
	cfg->leader_handover_ms = 2 * MS_PER_S;
	cfg->spoe_max_frame_size = 16380;
	cfg->spoe_max_fragmented = 1024 * 1024;
	cfg->max_clients = 10000;
	/* a few connections forking and authenticating at once: see connect_slots.h */
	cfg->max_connecting = 16;
	cfg->client_timeout_ms = 5 * MS_PER_S;
	cfg->etcd.ttl_ms = 10 * MS_PER_S;
	cfg->peer_lag = PEER_LAG_CATALOG;
}

/* [A-Za-z0-9_.-]{1,63}: safe in URLs, HAProxy variables and logs. */
static bool valid_node_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

static struct node_build *current_node(struct parser *p)
{
	return p->current < 0 ? &p->classic : &p->nodes[p->current];
}

static int open_node_section(struct parser *p, const char *name)
{
	struct node_build *nodes;

	if (!valid_node_name(name))
		return fail(p, "", "invalid node name '%.64s' in [node.NAME]: use 1 to 63 "
			    "letters, digits, '_', '.' or '-'", name);
	for (int i = 0; i < p->n_nodes; i++) {
		if (strcmp(p->nodes[i].node.name, name) == 0)
			return fail(p, "", "duplicate section [node.%s] (first at line %d)",
				    name, p->nodes[i].node.line);
	}
	if (p->n_nodes >= MAX_NODE_SECTIONS)
		return fail(p, "", "too many [node.NAME] sections: at most %d", MAX_NODE_SECTIONS);
	nodes = realloc(p->nodes, (size_t)(p->n_nodes + 1) * sizeof(*nodes));
	if (!nodes)
		return fail(p, "", "out of memory");
	p->nodes = nodes;
	node_build_init(&p->nodes[p->n_nodes], name, false, p->line);
	p->current = p->n_nodes++;
	p->section = SECTION_NODE;
	return 1;
}

/* [agent], [policy] and [postgresql] may each appear once. */
static int open_single_section(struct parser *p, const char *name,
			       enum section_kind kind, int *seen_line)
{
	if (*seen_line)
		return fail(p, "", "duplicate section [%s] (first at line %d)",
			    name, *seen_line);
	*seen_line = p->line;
	p->section = kind;
	return 1;
}

static int open_known_section(struct parser *p, const char *name)
{
	if (strcasecmp(name, "agent") == 0)
		return open_single_section(p, "agent", SECTION_AGENT, &p->agent_line);
	if (strcasecmp(name, "policy") == 0)
		return open_single_section(p, "policy", SECTION_POLICY, &p->policy_line);
	if (strcasecmp(name, "etcd") == 0)
		return open_single_section(p, "etcd", SECTION_ETCD, &p->etcd_line);
	if (strcasecmp(name, "postgresql") == 0) {
		if (!open_single_section(p, "postgresql", SECTION_POSTGRESQL, &p->classic_line))
			return 0;
		node_build_init(&p->classic, "", true, p->line);
		p->current = -1;
		return 1;
	}
	if (strncasecmp(name, "node.", 5) == 0)
		return open_node_section(p, name + 5);
	return fail(p, "", "unknown section [%.64s] (expected [postgresql], [agent], "
		    "[policy], [etcd] or [node.NAME])", name);
}

/* A section in error is skipped whole: its keys would only add noise. */
static void open_section(struct parser *p, const char *name)
{
	if (!open_known_section(p, name))
		p->section = SECTION_SKIP;
}

static int set_string(struct parser *p, const char *key, const char *value, char **dst)
{
	char *copy = NULL;

	if (*value) {
		copy = strdup(value);
		if (!copy)
			return fail(p, key, "out of memory");
	}
	free(*dst);
	*dst = copy;
	return 1;
}

static int set_duration(struct parser *p, const struct setting *s, const char *key,
			const char *value, int64_t *ms)
{
	char lo[32], hi[32];

	if (parse_duration_ms(value, ms) < 0)
		return fail(p, key, "invalid duration '%.64s' (expected e.g. 500ms, 2s, "
			    "1.5min, 1h; a bare number is seconds)", value);
	if (*ms < s->min || *ms > s->max) {
		format_duration_ms(s->min, lo, sizeof(lo));
		format_duration_ms(s->max, hi, sizeof(hi));
		return fail(p, key, "%.64s is out of range (%s to %s)", value, lo, hi);
	}
	return 1;
}

/* A bound for a message: "16MB" when that is exact, else the bytes. */
static void format_bound(int64_t bytes, char *buf, size_t len)
{
	int64_t back;

	format_size(bytes, buf, len);
	if (parse_size(buf, &back) < 0 || back != bytes)
		snprintf(buf, len, "%" PRId64 "B", bytes);
}

static int set_size(struct parser *p, const struct setting *s, const char *key,
		    const char *value, int64_t *bytes)
{
	char lo[32], hi[32];

	if (parse_size(value, bytes) < 0)
		return fail(p, key, "invalid size '%.64s' (expected e.g. 16MB, 512kB, "
			    "1.5GB; a bare number is bytes)", value);
	if (*bytes < s->min || *bytes > s->max) {
		format_bound(s->min, lo, sizeof(lo));
		format_bound(s->max, hi, sizeof(hi));
		return fail(p, key, "%.64s is out of range (%s to %s)", value, lo, hi);
	}
	return 1;
}

static int set_log_level(struct parser *p, const char *key, const char *value,
			 enum log_level *dst)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {
		{ "error", LOG_LEVEL_ERROR },
		{ "warning", LOG_LEVEL_WARNING },
		{ "warn", LOG_LEVEL_WARNING },
		{ "info", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG },
	};

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcasecmp(value, levels[i].name) == 0) {
			*dst = levels[i].level;
			return 1;
		}
	}
	return fail(p, key, "must be error, warning, info or debug, not '%.64s'", value);
}

static int set_log_destination(struct parser *p, const char *key, const char *value,
			       enum log_destination *dst)
{
	if (strcasecmp(value, "stderr") == 0)
		*dst = LOG_TO_STDERR;
	else if (strcasecmp(value, "syslog") == 0)
		*dst = LOG_TO_SYSLOG;
	else
		return fail(p, key, "must be stderr or syslog, not '%.64s'", value);
	return 1;
}

static int set_read_only(struct parser *p, const char *key, const char *value,
			 enum read_only_policy *dst)
{
	if (strcasecmp(value, "down") == 0)
		*dst = READ_ONLY_DOWN;
	else if (strcasecmp(value, "ready") == 0)
		*dst = READ_ONLY_READY;
	else
		return fail(p, key, "must be down or ready, not '%.64s'", value);
	return 1;
}

static int set_peer_lag(struct parser *p, const char *key, const char *value,
			enum peer_lag_mode *dst)
{
	if (strcasecmp(value, "catalog") == 0)
		*dst = PEER_LAG_CATALOG;
	else if (strcasecmp(value, "off") == 0)
		*dst = PEER_LAG_OFF;
	else
		return fail(p, key, "must be catalog or off, not '%.64s'", value);
	return 1;
}

/* Parses value into the field that s describes. */
static int store_setting(struct parser *p, const struct setting *s,
			 const char *key, const char *value)
{
	void *field = (char *)p->cfg + s->offset;
	int64_t ms;
	long n;

	switch (s->type) {
	case TYPE_LISTEN:
		if (parse_listen_addr(value, field) < 0)
			return fail(p, key, "invalid listen address '%.64s' (expected HOST:PORT, "
				    "[IPv6]:PORT, *:PORT, or empty for off)", value);
		return 1;
	case TYPE_CIDR: {
		struct cidr_list list;

		if (cidr_list_parse(value, &list) < 0)
			return fail(p, key, "invalid address list '%.64s' (expected addresses "
				    "or CIDR ranges separated by commas, e.g. 10.0.0.0/8, ::1)",
				    value);
		cidr_list_free(field);
		*(struct cidr_list *)field = list;
		return 1;
	}
	case TYPE_DURATION:
		return set_duration(p, s, key, value, field);
	case TYPE_SECONDS:
		if (!set_duration(p, s, key, value, &ms))
			return 0;
		*(double *)field = (double)ms / 1000.0;
		return 1;
	case TYPE_INT:
		if (parse_long(value, (long)s->min, (long)s->max, &n) < 0)
			return fail(p, key, "must be an integer from %ld to %ld, not '%.64s'",
				    (long)s->min, (long)s->max, value);
		*(int *)field = (int)n;
		return 1;
	case TYPE_SIZE:
		return set_size(p, s, key, value, field);
	case TYPE_BOOL:
		if (parse_bool(value, field) < 0)
			return fail(p, key, "must be yes/no, true/false, on/off or 1/0, "
				    "not '%.64s'", value);
		return 1;
	case TYPE_STRING:
		return set_string(p, key, value, field);
	case TYPE_LOG_LEVEL:
		return set_log_level(p, key, value, field);
	case TYPE_LOG_DEST:
		return set_log_destination(p, key, value, field);
	case TYPE_READ_ONLY:
		return set_read_only(p, key, value, field);
	case TYPE_PEER_LAG:
		return set_peer_lag(p, key, value, field);
	}
	return fail(p, key, "internal error: unhandled setting type");
}

/* Types for which an empty value means "off" or "none". */
static bool empty_allowed(enum setting_type type)
{
	return type == TYPE_LISTEN || type == TYPE_CIDR || type == TYPE_STRING;
}

static int agent_or_policy_key(struct parser *p, const char *key,
			       const char *lower, const char *value)
{
	const char *section = p->section == SECTION_AGENT ? "agent" :
			      p->section == SECTION_ETCD ? "etcd" : "policy";

	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];

		if (s->section != p->section || strcmp(s->name, lower) != 0)
			continue;
		if (p->setting_line[i])
			return fail(p, key, "given twice in [%s] (first at line %d)",
				    section, p->setting_line[i]);
		p->setting_line[i] = p->line;
		p->setting_file[i] = p->path;
		if (*value == '\0' && !empty_allowed(s->type))
			return fail(p, key, "empty value (remove the line to get the default)");
		return store_setting(p, s, key, value);
	}
	return fail(p, key, "unknown key in [%s]", section);
}

static const PQconninfoOption *libpq_option(const struct parser *p, const char *keyword)
{
	for (const PQconninfoOption *o = p->libpq_options; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0)
			return o;
	return NULL;
}

/*
 * libpq's conninfo errors quote the offending piece of the string, and
 * that piece can be a password ("missing = after "s3cret""). Keep the
 * wording, blank out quoted text longer than one character.
 */
static void redact_quoted(const char *src, char *dst, size_t len)
{
	size_t out = 0;

	if (len == 0)
		return;
	while (*src && out + 6 <= len) {
		const char *close = *src == '"' ? strchr(src + 1, '"') : NULL;

		if (close && close - src > 2) {
			memcpy(dst + out, "\"...\"", 5);
			out += 5;
			src = close + 1;
		} else if (close) {
			/* "=" or "]": copied whole, so its closing quote opens nothing */
			while (src <= close)
				dst[out++] = *src++;
		} else {
			if (*src != '\n')
				dst[out++] = *src;
			src++;
		}
	}
	dst[out] = '\0';
}

static bool valid_port_list(const char *value);

static bool is_secret_keyword(const char *keyword)
{
	return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* A host name (RFC 1123 letters, digits, '-', '.', and '_'), up to 253 characters. */
static bool valid_host_name(const char *s, size_t n)
{
	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
	}
	return true;
}

static bool valid_ip(const char *s, size_t n)
{
	char buf[64];
	unsigned char addr[16];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/*
 * host: comma-separated entries, each empty (the default), a socket
 * directory ("/..." or "@..."), an IP address or a host name.
 */
static bool valid_host_list(const char *value)
{
	const char *s = value;

	for (;;) {
		size_t n = strcspn(s, ",");

		if (n > 0 && s[0] != '/' && s[0] != '@' && !valid_ip(s, n) &&
		    !valid_host_name(s, n))
			return false;
		if (s[n] == '\0')
			return true;
		s += n + 1;
	}
}

static bool valid_hostaddr_list(const char *value)
{
	const char *s = value;

	for (;;) {
		size_t n = strcspn(s, ",");

		if (n > 0 && !valid_ip(s, n))
			return false;
		if (s[n] == '\0')
			return true;
		s += n + 1;
	}
}

/* The values of a dsn that libpq would only reject at connection time. */
static int dsn_value_ok(struct parser *p, const char *key, const char *keyword,
			const char *value)
{
	if (strcmp(keyword, "port") == 0 && !valid_port_list(value))
		return fail(p, key, "invalid port '%.64s' in the dsn (1 to 65535)", value);
	if (strcmp(keyword, "host") == 0 && !valid_host_list(value))
		return fail(p, key, "invalid host '%.64s' in the dsn", value);
	if (strcmp(keyword, "hostaddr") == 0 && !valid_hostaddr_list(value))
		return fail(p, key, "invalid hostaddr '%.64s' in the dsn", value);
	return 1;
}

/* dsn = <conninfo or URI>: keep its non-empty values, never echo it. */
static int node_dsn(struct parser *p, struct node_build *b, const char *key,
		    const char *value)
{
	char *errmsg = NULL;
	char safe[160];
	PQconninfoOption *opts;
	int ok = 1;

	if (*value == '\0')
		return fail(p, key, "empty value (give a connection string or URI)");
	opts = PQconninfoParse(value, &errmsg);
	if (!opts) {
		redact_quoted(errmsg ? errmsg : "out of memory", safe, sizeof(safe));
		PQfreemem(errmsg);
		return fail(p, key, "not a valid libpq connection string or URI: %s", safe);
	}
	b->dsn_line = p->line;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (ok && !dsn_value_ok(p, key, o->keyword, o->val))
			ok = 0;
		if (is_secret_keyword(o->keyword))
			p->files[p->file_index].has_secret = true;
		if (ok && o->val[0] && param_add(&b->dsn, o->keyword, o->val, p->line) < 0)
			ok = fail(p, key, "out of memory");
		explicit_bzero(o->val, strlen(o->val));
	}
	PQconninfoFree(opts);
	return ok;
}

/*
 * port may list several ports for several hosts ("5432,5433"); each
 * non-empty entry must be a TCP port. libpq would only say so at the
 * first connection attempt, --check-config should say it now.
 */
static bool valid_port_list(const char *value)
{
	const char *s = value;

	for (;;) {
		size_t n = strcspn(s, ",");

		if (n > 0) {
			char port[8];
			long v;

			if (n >= sizeof(port))
				return false;
			memcpy(port, s, n);
			port[n] = '\0';
			if (parse_long(port, 1, 65535, &v) < 0)
				return false;
		}
		if (s[n] == '\0')
			return true;
		s += n + 1;
	}
}

/* host, dbname, password...: any keyword libpq knows. */
static int node_libpq_key(struct parser *p, struct node_build *b, const char *key,
			  const char *lower, const char *value)
{
	/* The classic checker handed "database" to psycopg2, which means dbname. */
	const char *keyword = strcmp(lower, "database") == 0 ? "dbname" : lower;
	const struct param *prev;

	if (!libpq_option(p, keyword))
		return fail(p, key, "unknown key (neither a pgbdr-agent node setting nor "
			    "a libpq connection keyword)");
	prev = param_find(&b->keys, keyword);
	if (prev)
		return fail(p, key, "%s given twice in this section (first at line %d)",
			    keyword, prev->line);
	if (strcmp(keyword, "port") == 0 && !valid_port_list(value))
		return fail(p, key, "invalid port '%.64s' (1 to 65535, or a comma-separated "
			    "list for several hosts)", value);
	if (strcmp(keyword, "host") == 0 && !valid_host_list(value))
		return fail(p, key, "invalid host '%.64s' (host names, IP addresses or "
			    "socket directories, separated by commas)", value);
	if (strcmp(keyword, "hostaddr") == 0 && !valid_hostaddr_list(value))
		return fail(p, key, "invalid hostaddr '%.64s' (IP addresses, separated "
			    "by commas)", value);
	if (is_secret_keyword(keyword) && *value)
		p->files[p->file_index].has_secret = true;
	if (param_add(&b->keys, keyword, value, p->line) < 0)
		return fail(p, key, "out of memory");
	return 1;
}

static int twice(struct parser *p, const char *key, int *seen_line)
{
	if (*seen_line)
		return fail(p, key, "given twice in this section (first at line %d)", *seen_line);
	*seen_line = p->line;
	return 1;
}

static int node_key(struct parser *p, const char *key, const char *lower, const char *value)
{
	struct node_build *b = current_node(p);
	long n;

	if (*value == '\0' && (strcmp(lower, "priority") == 0 ||
				strcmp(lower, "flavor") == 0 ||
				(strcmp(lower, "name") == 0 && b->node.classic)))
		return fail(p, key, "empty value (remove the line to get the default)");
	if (strcmp(lower, "priority") == 0) {
		if (!twice(p, key, &b->priority_line))
			return 0;
		if (parse_long(value, 0, MAX_PRIORITY, &n) < 0)
			return fail(p, key, "must be an integer from 0 to %d (lower is preferred), "
				    "not '%.64s'", MAX_PRIORITY, value);
		b->node.priority = (int)n;
		return 1;
	}
	if (strcmp(lower, "flavor") == 0) {
		if (!twice(p, key, &b->flavor_line))
			return 0;
		if (flavor_from_name(value, &b->node.flavor) < 0)
			return fail(p, key, "unknown flavor '%.64s' (auto, bdr, pgd, pglogical, "
				    "spock, logical, physical or plain)", value);
		b->node.flavor_set = true;
		return 1;
	}
	if (strcmp(lower, "dsn") == 0) {
		if (!twice(p, key, &b->dsn_line))
			return 0;
		return node_dsn(p, b, key, value);
	}
	if (strcmp(lower, "name") == 0 && b->node.classic) {
		if (!twice(p, key, &b->name_line))
			return 0;
		p->classic_name_file = p->path;
		if (!valid_node_name(value))
			return fail(p, key, "invalid node name '%.64s': use 1 to 63 letters, "
				    "digits, '_', '.' or '-'", value);
		copy_node_name(b->node.name, value);
		return 1;
	}
	return node_libpq_key(p, b, key, lower, value);
}

/* One "key = value" line, already trimmed. */
static int on_key(struct parser *p, const char *name, const char *value)
{
	char lower[64];
	size_t n = strlen(name);

	if (p->section == SECTION_SKIP)
		return 1;
	if (n >= sizeof(lower))
		return fail(p, name, "unknown key");
	/* Keys are case-insensitive, as in the classic checker's ConfigParser. */
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);

	switch (p->section) {
	case SECTION_SKIP:
		return 1;
	case SECTION_NONE:
		return fail(p, name, "key outside of any section (start the file with "
			    "[postgresql], [agent], [policy] or [node.NAME])");
	case SECTION_AGENT:
	case SECTION_POLICY:
	case SECTION_ETCD:
		return agent_or_policy_key(p, name, lower, value);
	case SECTION_POSTGRESQL:
	case SECTION_NODE:
		return node_key(p, name, lower, value);
	}
	return fail(p, name, "internal error: no section");
}

static int setting_index(const char *name)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* The line where a setting was given, or 0. */
static int setting_line(const struct parser *p, const char *name)
{
	int i = setting_index(name);

	return i < 0 ? 0 : p->setting_line[i];
}

/* The file where a setting was given. */
static const char *setting_file(const struct parser *p, const char *name)
{
	int i = setting_index(name);

	return i < 0 || !p->setting_file[i] ? p->files[0].path : p->setting_file[i];
}

static void check_stale_after(struct parser *p)
{
	struct agent_config *cfg = p->cfg;
	int line = setting_line(p, "stale_after");
	char stale[32], interval[32];

	if (!line) {
		/* two missed rounds plus one slow probe */
		cfg->policy.stale_after_ms = 2 * cfg->interval_ms + cfg->timeout_ms;
		return;
	}
	if (cfg->policy.stale_after_ms <= cfg->interval_ms) {
		format_duration_ms(cfg->policy.stale_after_ms, stale, sizeof(stale));
		format_duration_ms(cfg->interval_ms, interval, sizeof(interval));
		fail_in(p, setting_file(p, "stale_after"), line, "stale_after", "stale_after (%s) must be longer than "
			"interval (%s), or every node would go stale between probes",
			stale, interval);
	}
}

static void check_lag_limits(struct parser *p)
{
	const struct policy *pol = &p->cfg->policy;
	char drain[32], max[32];

	if (pol->drain_lag <= 0 || pol->max_lag > pol->drain_lag)
		return;
	format_bound(pol->drain_lag, drain, sizeof(drain));
	if (pol->max_lag <= 0) {
		fail_in(p, setting_file(p, "drain_lag"), setting_line(p, "drain_lag"), "drain_lag",
			"drain_lag (%s) needs max_lag, the lag at which the weight "
			"reaches min_weight; max_lag is not set", drain);
		return;
	}
	format_bound(pol->max_lag, max, sizeof(max));
	fail_in(p, setting_file(p, "drain_lag"), setting_line(p, "drain_lag"), "drain_lag",
		"drain_lag (%s) must be less than max_lag (%s)", drain, max);
}

/* The classic section's name= must not take a [node.NAME]'s name. */
static void check_names(struct parser *p)
{
	if (!p->classic_line || !p->classic.node.name[0])
		return;
	for (int i = 0; i < p->n_nodes; i++) {
		if (strcmp(p->nodes[i].node.name, p->classic.node.name) == 0) {
			fail_in(p, p->classic_name_file, p->classic.name_line, "name",
				"node name '%s' is also the name of [node.%s] at line %d",
				p->classic.node.name, p->nodes[i].node.name,
				p->nodes[i].node.line);
			return;
		}
	}
}

/* "http://HOST:PORT" (HOST may be a bracketed IPv6 address). */
static bool parse_etcd_endpoint(const char *s, size_t n, struct etcd_endpoint *ep)
{
	char text[300];
	char *host, *colon;
	long port;

	if (n < 8 || n >= sizeof(text) || strncasecmp(s, "http://", 7) != 0)
		return false;
	memcpy(text, s + 7, n - 7);
	text[n - 7] = '\0';
	host = text;
	colon = strrchr(host, ':');
	if (!colon || colon == host || strpbrk(host, "/?#@ \t"))
		return false;
	*colon = '\0';
	if (parse_long(colon + 1, 1, 65535, &port) < 0)
		return false;
	if (host[0] == '[') {
		size_t len = strlen(host);

		if (len < 3 || host[len - 1] != ']')
			return false;
		host[len - 1] = '\0';
		host++;
	}
	if (strlen(host) >= sizeof(ep->host))
		return false;
	snprintf(ep->host, sizeof(ep->host), "%s", host);
	ep->port = (int)port;
	return true;
}

static void parse_etcd_endpoints(struct parser *p)
{
	struct etcd_config *e = &p->cfg->etcd;
	int line = setting_line(p, "endpoints");
	const char *s = e->endpoints;

	for (;;) {
		size_t lead = strspn(s, " \t");
		size_t n;

		s += lead;
		n = strcspn(s, ",");
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (e->n_endpoints == ETCD_MAX_ENDPOINTS) {
			fail_at(p, line, "endpoints", "more than %d endpoints", ETCD_MAX_ENDPOINTS);
			return;
		}
		if (!parse_etcd_endpoint(s, n, &e->endpoint[e->n_endpoints])) {
			fail_at(p, line, "endpoints", "invalid endpoint '%.*s' (expected a "
				"comma-separated list of http://HOST:PORT)", (int)(n > 64 ? 64 : n), s);
			return;
		}
		e->n_endpoints++;
		s += strcspn(s, ",");
		if (*s == '\0')
			return;
		s++;
	}
}

/* [etcd] needs endpoints and cluster; prefix and ttl have defaults. */
static void check_etcd(struct parser *p)
{
	struct etcd_config *e = &p->cfg->etcd;

	if (!p->etcd_line)
		return;
	e->enabled = true;
	if (!e->endpoints) {
		fail_at(p, p->etcd_line, "endpoints", "[etcd] needs endpoints "
			"(a comma-separated list of http://HOST:PORT)");
		return;
	}
	if (!e->cluster) {
		fail_at(p, p->etcd_line, "cluster", "[etcd] needs cluster (the name in the "
			"leader key)");
		return;
	}
	if (strpbrk(e->cluster, "/ \t")) {
		fail_at(p, setting_line(p, "cluster"), "cluster",
			"must not contain '/' or blanks");
		return;
	}
	if (!e->prefix && !(e->prefix = strdup("/pgbdr-agent/"))) {
		fail_at(p, p->etcd_line, "prefix", "out of memory");
		return;
	}
	parse_etcd_endpoints(p);
}

static void validate(struct parser *p)
{
	if (!p->classic_line && p->n_nodes == 0) {
		fail_in(p, p->files[0].path, 0, "", "no node to monitor: add a [postgresql] "
			"or a [node.NAME] section");
		return;
	}
	check_stale_after(p);
	check_lag_limits(p);
	check_names(p);
	check_etcd(p);
}

/* Sets key unless it already has a non-empty value. */
static int set_default_param(struct param_list *list, const char *key, const char *value)
{
	struct param *old = param_find(list, key);
	char *copy;

	if (!old)
		return param_add(list, key, value, 0);
	if (old->value[0])
		return 0;
	copy = strdup(value);
	if (!copy)
		return -1;
	free(old->value);
	old->value = copy;
	return 0;
}

/*
 * The dsn's values, then the single keys over them ("" removes one),
 * then application_name, so that the nodes see who is connecting.
 */
static int merge_params(const struct node_build *b, struct param_list *out)
{
	for (int i = 0; i < b->dsn.count; i++)
		if (param_add(out, b->dsn.items[i].key, b->dsn.items[i].value, 0) < 0)
			return -1;
	for (int i = 0; i < b->keys.count; i++) {
		const struct param *k = &b->keys.items[i];
		struct param *old = param_find(out, k->key);

		if (old) {
			char *value = strdup(k->value);

			if (!value)
				return -1;
			scrub_free(old->value);
			old->value = value;
		} else if (param_add(out, k->key, k->value, 0) < 0) {
			return -1;
		}
	}
	return set_default_param(out, "application_name", APPLICATION_NAME);
}

/* Moves the merged, non-empty params into NULL-terminated arrays. */
static int finish_node(const struct node_build *b, struct node_config *node)
{
	struct param_list merged = { 0 };
	int n = 0;

	*node = b->node;
	node->keywords = NULL;
	node->values = NULL;
	node->n_params = 0;
	if (merge_params(b, &merged) < 0)
		goto fail;
	node->keywords = calloc((size_t)merged.count + 1, sizeof(char *));
	node->values = calloc((size_t)merged.count + 1, sizeof(char *));
	if (!node->keywords || !node->values)
		goto fail;
	for (int i = 0; i < merged.count; i++) {
		if (merged.items[i].value[0] == '\0')
			continue;
		node->keywords[n] = merged.items[i].key;
		node->values[n] = merged.items[i].value;
		merged.items[i].key = NULL;
		merged.items[i].value = NULL;
		n++;
	}
	node->n_params = n;
	for (int i = 0; i < merged.count; i++) {
		free(merged.items[i].key);
		scrub_free(merged.items[i].value);
	}
	free(merged.items);
	return 0;
fail:
	param_list_free(&merged);
	return -1;
}

static void finish(struct parser *p)
{
	struct agent_config *cfg = p->cfg;
	int total = p->n_nodes + (p->classic_line ? 1 : 0);

	cfg->nodes = calloc((size_t)total, sizeof(*cfg->nodes));
	if (!cfg->nodes) {
		fail_at(p, 0, "", "out of memory");
		return;
	}
	if (p->classic_line) {
		if (finish_node(&p->classic, &cfg->nodes[cfg->n_nodes]) < 0)
			goto oom;
		cfg->n_nodes++;
	}
	for (int i = 0; i < p->n_nodes; i++) {
		if (finish_node(&p->nodes[i], &cfg->nodes[cfg->n_nodes]) < 0)
			goto oom;
		cfg->n_nodes++;
	}
	return;
oom:
	fail_at(p, 0, "", "out of memory");
}

static void parser_free(struct parser *p)
{
	node_build_free(&p->classic);
	for (int i = 0; i < p->n_nodes; i++)
		node_build_free(&p->nodes[i]);
	free(p->nodes);
	PQconninfoFree(p->libpq_options);
	for (int i = 0; i < p->n_files; i++)
		free(p->files[i].path);
}

static void parse_path(struct parser *p, const char *path);

/* A path as written in file `from`, made relative to from's directory. */
static char *resolve_path(const char *from, const char *path)
{
	const char *slash = strrchr(from, '/');
	size_t dir = slash ? (size_t)(slash - from) + 1 : 0;
	char *out;

	if (path[0] == '/' || dir == 0)
		return strdup(path);
	out = malloc(dir + strlen(path) + 1);
	if (out) {
		memcpy(out, from, dir);
		strcpy(out + dir, path);
	}
	return out;
}

/*
 * Reads an included file where the %include stands. It starts outside
 * any section; afterwards the including file's section goes on.
 */
static void include_file(struct parser *p, const char *written)
{
	enum section_kind section = p->section;
	int current = p->current;
	const char *path = p->path;
	int line = p->line, index = p->file_index;
	char *full = resolve_path(path, written);

	if (!full) {
		fail(p, "", "out of memory");
		return;
	}
	if (p->depth >= MAX_INCLUDE_DEPTH) {
		fail(p, "", "%%include nested more than %d deep", MAX_INCLUDE_DEPTH);
	} else {
		p->section = SECTION_NONE;
		parse_path(p, full);
	}
	free(full);
	p->section = section;
	p->current = current;
	p->path = path;
	p->line = line;
	p->file_index = index;
}

/* include_dir = DIR: its *.ini and *.conf files, in (byte) name order. */
static int include_name(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	if (d->d_name[0] == '.')
		return 0;
	return (n > 4 && strcmp(d->d_name + n - 4, ".ini") == 0) ||
	       (n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static void include_dir(struct parser *p, const char *key, const char *written)
{
	struct dirent **names = NULL;
	char *dir;
	int n;

	if (*written == '\0') {
		fail(p, key, "empty value (give a directory)");
		return;
	}
	dir = resolve_path(p->path, written);
	if (!dir) {
		fail(p, key, "out of memory");
		return;
	}
	n = scandir(dir, &names, include_name, by_name);
	if (n < 0) {
		fail(p, key, "cannot read directory '%.128s': %s", written, strerror(errno));
	} else {
		for (int i = 0; i < n; i++) {
			char *file = malloc(strlen(dir) + strlen(names[i]->d_name) + 2);

			if (file) {
				sprintf(file, "%s/%s", dir, names[i]->d_name);
				include_file(p, file);
				free(file);
			}
			free(names[i]);
		}
		free(names);
	}
	free(dir);
}

static void handle_item(struct parser *p, const struct ini_item *item)
{
	p->line = item->line;
	switch (item->kind) {
	case INI_SECTION:
		open_section(p, item->name);
		break;
	case INI_INCLUDE:
		include_file(p, item->name);
		break;
	case INI_KEY:
		if (strcasecmp(item->name, "include_dir") == 0)
			include_dir(p, item->name, item->value);
		else
			on_key(p, item->name, item->value);
		break;
	case INI_ERROR:
		fail(p, "", "%s", item->error);
		break;
	case INI_END:
		break;
	}
}

/* Registers path as read (and open); -1 with an error for a loop or too many. */
static int enter_file(struct parser *p, const char *path, const struct ini_reader *r)
{
	struct file_seen *f;

	for (int i = 0; i < p->n_files; i++) {
		if (p->files[i].open && p->files[i].dev == r->dev && p->files[i].ino == r->ino)
			return fail(p, "", "'%.128s' includes itself", path) - 1;
	}
	if (p->n_files >= MAX_FILES)
		return fail(p, "", "more than %d files included", MAX_FILES) - 1;
	f = &p->files[p->n_files];
	f->path = strdup(path);
	if (!f->path)
		return fail(p, "", "out of memory") - 1;
	f->dev = r->dev;
	f->ino = r->ino;
	f->open = true;
	p->file_index = p->n_files++;
	return 0;
}

/* Reads one file, item by item, errors and all. */
static void parse_path(struct parser *p, const char *path)
{
	struct ini_reader r;
	struct ini_item item;
	char why[160];
	int index;

	if (ini_open(&r, path, why, sizeof(why)) < 0) {
		if (p->n_files == 0)
			fail_in(p, path, 0, "", "%s", why);
		else
			fail(p, "", "included file '%.128s': %s", path, why);
		return;
	}
	if (enter_file(p, path, &r) < 0) {
		ini_close(&r);
		return;
	}
	index = p->file_index;
	p->path = p->files[index].path;
	p->depth++;
	do {
		ini_next(&r, &item);
		p->path = p->files[index].path;
		p->file_index = index;
		handle_item(p, &item);
	} while (item.kind != INI_END && p->n_errors <= MAX_ERRORS);
	p->depth--;
	p->files[index].open = false;
	ini_close(&r);
}
/* Warnings about secrets others can read, and about running as root. */
static void warn_secrets(struct parser *p)
{
	const struct agent_config *cfg = p->cfg;
	struct stat st;

	for (int i = 0; i < p->n_files; i++) {
		const struct file_seen *f = &p->files[i];

		if (f->has_secret && stat(f->path, &st) == 0 && (st.st_mode & S_IROTH))
			warn_in(p, f->path, "holds a password and is readable by every user: "
				"chmod 640 it (owner root, group of the agent's user), or move "
				"the password to a passfile");
	}
	for (int i = 0; i < cfg->n_nodes; i++) {
		const char *passfile = node_config_param(&cfg->nodes[i], "passfile");
		const char *sslkey = node_config_param(&cfg->nodes[i], "sslkey");

		if (passfile && stat(passfile, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
			warn_in(p, p->files[0].path, "passfile %.128s is readable by others than "
				"its owner: libpq ignores such a file (chmod 600 it)", passfile);
		if (sslkey && stat(sslkey, &st) == 0 && (st.st_mode & S_IROTH))
			warn_in(p, p->files[0].path, "sslkey %.128s is readable by every user "
				"(chmod 600 it)", sslkey);
	}
	if (geteuid() == 0 && !cfg->user)
		warn_in(p, p->files[0].path, "[agent] user is not set: started as root, the "
			"agent %s (set user = pgbdr-agent, or start it as that user, as the "
			"systemd unit does)", cfg->allow_root ? "keeps running as root" :
			"refuses to start");
}

int config_load(const char *path, struct agent_config *cfg, struct config_error *err)
{
	return config_load_report(path, cfg, err, NULL);
}

int config_load_report(const char *path, struct agent_config *cfg, struct config_error *err,
		       struct config_report *report)
{
	struct parser *p = calloc(1, sizeof(*p));
	char *msg = NULL;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	memset(err, 0, sizeof(*err));
	if (report)
		memset(report, 0, sizeof(*report));
	if (!p) {
		snprintf(err->file, sizeof(err->file), "%s", path);
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -1;
	}
	p->path = path;
	p->err = err;
	p->report = report;
	p->cfg = cfg;
	p->current = -1;
	set_defaults(cfg);

	cfg->path = strdup(path);
	/*
	 * The keyword list without defaults: PQconndefaults() also reads the
	 * environment and the service file, and fails when PGSERVICE names
	 * a missing service, which is no fault of this file.
	 */
	p->libpq_options = PQconninfoParse("", &msg);
	PQfreemem(msg);
	if (!cfg->path || !p->libpq_options) {
		fail_in(p, path, 0, "", "out of memory");
		goto out;
	}
	parse_path(p, path);
	if (p->n_files == 0)
		goto out;
	p->path = p->files[0].path;
	if (!p->failed)
		validate(p);
	if (!p->failed)
		finish(p);
	if (!p->failed)
		warn_secrets(p);
out:
	rc = p->failed ? -1 : 0;
	parser_free(p);
	free(p);
	if (rc < 0)
		config_free(cfg);
	return rc;
}

void config_report_free(struct config_report *report)
{
	if (!report)
		return;
	for (int i = 0; i < report->n_lines; i++)
		free(report->lines[i]);
	free(report->lines);
	memset(report, 0, sizeof(*report));
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < cfg->n_nodes; i++) {
		struct node_config *node = &cfg->nodes[i];

		for (int j = 0; j < node->n_params; j++) {
			free(node->keywords[j]);
			scrub_free(node->values[j]);
		}
		free(node->keywords);
		free(node->values);
	}
	free(cfg->nodes);
	free(cfg->path);
	free(cfg->maintenance_file);
	free(cfg->user);
	free(cfg->etcd.endpoints);
	free(cfg->etcd.cluster);
	free(cfg->etcd.prefix);
	cidr_list_free(&cfg->allow_from);
	memset(cfg, 0, sizeof(*cfg));
}

/* Appends to buf at *off, keeping it terminated when it fills up. */
__attribute__((format(printf, 4, 5)))
static void append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off += (size_t)n;
}

void config_error_format(const struct config_error *err, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (err->file[0])
		append(buf, len, &off, "%s", err->file);
	if (err->line > 0)
		append(buf, len, &off, err->file[0] ? ":%d" : "line %d", err->line);
	if (off > 0)
		append(buf, len, &off, ": ");
	if (err->key[0])
		append(buf, len, &off, "key '%s': ", err->key);
	append(buf, len, &off, "%s", err->message);
}

const char *node_config_param(const struct node_config *node, const char *keyword)
{
	for (int i = 0; i < node->n_params; i++)
		if (strcmp(node->keywords[i], keyword) == 0)
			return node->values[i];
	return NULL;
}
