/*
 * Loading the INI configuration: the classic database.ini ([postgresql]
 * only) and the full format with [agent], [policy] and [node.NAME].
 * Anything unknown is an error, and every error names the file, the
 * line and the key, but never a password.
 *
 * libinih does the key = value parsing. Two of its limits shape this
 * file: the handler is not told the line number, and a section header
 * that no key follows never reaches the handler at all (the Debian
 * build lacks INI_CALL_HANDLER_ON_NEW_SECTION, and cuts section names
 * at 49 characters). So our reader counts lines and recognises section
 * headers itself, on the raw line, and the handler only sees keys.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <libpq-fe.h>

#include "config.h"

#define DEFAULT_PRIORITY 100
#define MAX_PRIORITY 1000000
#define APPLICATION_NAME "pgbdr-agent"

#define MS_PER_S INT64_C(1000)
#define MS_PER_H (3600 * MS_PER_S)
#define MS_PER_D (24 * MS_PER_H)

enum section_kind {
	SECTION_NONE = 0,
	SECTION_POSTGRESQL,
	SECTION_AGENT,
	SECTION_POLICY,
	SECTION_NODE,
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
	AGENT("spoe_max_frame_size", TYPE_SIZE, spoe_max_frame_size, 256, 16777215),
	AGENT("spoe_max_fragmented", TYPE_SIZE, spoe_max_fragmented, 256, INT64_C(1) << 30),
	AGENT("max_clients", TYPE_INT, max_clients, 1, 1000000),
	AGENT("client_timeout", TYPE_DURATION, client_timeout_ms, 100, MS_PER_H),
	POLICY("drain_lag", TYPE_SIZE, drain_lag, 0, INT64_MAX),
	POLICY("max_lag", TYPE_SIZE, max_lag, 0, INT64_MAX),
	POLICY("max_lag_time", TYPE_SECONDS, max_lag_time, 0, 365 * MS_PER_D),
	POLICY("min_weight", TYPE_INT, min_weight, 0, 100),
	POLICY("read_only", TYPE_READ_ONLY, read_only, 0, 0),
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

struct parser {
	const char *path;
	FILE *file;
	int line;              /* of the line last handed to inih */
	bool failed;
	struct config_error *err;
	struct agent_config *cfg;
	PQconninfoOption *libpq_options; /* the libpq keyword list */

	enum section_kind section;
	int agent_line;        /* header lines, 0 = section absent */
	int policy_line;
	int classic_line;
	struct node_build classic;
	struct node_build *nodes;
	int n_nodes;
	int current;           /* index into nodes, -1 = classic */
	int setting_line[N_SETTINGS];
};

__attribute__((format(printf, 4, 0)))
static int vfail_at(struct parser *p, int line, const char *key,
		    const char *fmt, va_list ap)
{
	if (p->failed)
		return 0;
	p->failed = true;
	p->err->line = line;
	snprintf(p->err->key, sizeof(p->err->key), "%s", key ? key : "");
	vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
	return 0;
}

/* Records the first error only; returns 0, inih's "stop" value. */
__attribute__((format(printf, 4, 5)))
static int fail_at(struct parser *p, int line, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_at(p, line, key, fmt, ap);
	va_end(ap);
	return 0;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *p, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_at(p, p->line, key, fmt, ap);
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
	cfg->client_timeout_ms = 5 * MS_PER_S;
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

static int open_section(struct parser *p, const char *name)
{
	if (strcasecmp(name, "agent") == 0)
		return open_single_section(p, "agent", SECTION_AGENT, &p->agent_line);
	if (strcasecmp(name, "policy") == 0)
		return open_single_section(p, "policy", SECTION_POLICY, &p->policy_line);
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
		    "[policy] or [node.NAME])", name);
}

/*
 * A "[...]" line, split the way inih splits it: the name ends at the
 * first ']', unless an inline comment (" ;") comes first, in which case
 * inih itself reports a syntax error on this line and we leave it be.
 */
static int section_header(struct parser *p, const char *line)
{
	const char *start = line + 1;
	const char *end = start;
	const char *rest;
	char name[128];
	size_t n;

	while (*end && *end != ']' &&
	       !(*end == ';' && end > start && isspace((unsigned char)end[-1])))
		end++;
	if (*end != ']')
		return 1;
	for (rest = end + 1; isspace((unsigned char)*rest); rest++)
		;
	if (*rest && *rest != ';' && *rest != '#')
		return fail(p, "", "unexpected text after the section header");

	while (start < end && isspace((unsigned char)*start))
		start++;
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - start);
	if (n >= sizeof(name))
		n = sizeof(name) - 1; /* still too long for any valid section */
	memcpy(name, start, n);
	name[n] = '\0';
	return open_section(p, name);
}

/*
 * inih's reader: fgets plus the line count, a check that the line fit
 * (inih would silently split a longer one into two), and section
 * headers. Leading whitespace is dropped, so that an indented file
 * (as the classic README shows it) reads the same and no line is
 * mistaken for a continuation of the previous value.
 */
static char *read_line(char *buf, int size, void *user)
{
	struct parser *p = user;
	size_t n, skip;

	if (p->failed || !fgets(buf, size, p->file)) {
		if (!p->failed && ferror(p->file))
			fail_at(p, p->line + 1, "", "read error: %s", strerror(errno));
		return NULL;
	}
	p->line++;
	n = strlen(buf);
	if (n == (size_t)size - 1 && buf[n - 1] != '\n') {
		int c = getc(p->file);

		if (c == '\r')
			c = getc(p->file);
		if (c != '\n' && c != EOF) {
			fail(p, "", "line longer than %d characters (split a long dsn "
			     "into separate keys)", size - 1);
			return NULL;
		}
	}
	skip = 0;
	if (p->line == 1 && strncmp(buf, "\xEF\xBB\xBF", 3) == 0)
		skip = 3;
	while (isspace((unsigned char)buf[skip]) && buf[skip] != '\n')
		skip++;
	memmove(buf, buf + skip, strlen(buf + skip) + 1);
	if (buf[0] == '[' && !section_header(p, buf))
		return NULL;
	return buf;
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
	const char *section = p->section == SECTION_AGENT ? "agent" : "policy";

	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];

		if (s->section != p->section || strcmp(s->name, lower) != 0)
			continue;
		if (p->setting_line[i])
			return fail(p, key, "given twice in [%s] (first at line %d)",
				    section, p->setting_line[i]);
		p->setting_line[i] = p->line;
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
		if (!o->val)
			continue;
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
		if (!valid_node_name(value))
			return fail(p, key, "invalid node name '%.64s': use 1 to 63 letters, "
				    "digits, '_', '.' or '-'", value);
		copy_node_name(b->node.name, value);
		return 1;
	}
	return node_libpq_key(p, b, key, lower, value);
}

/* inih's handler: one "key = value" line, already trimmed. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	char lower[64];
	size_t n = strlen(name);

	(void)section; /* ours is p->section: inih cuts long names */
	if (p->failed)
		return 0;
	if (n >= sizeof(lower))
		return fail(p, name, "unknown key");
	/* Keys are case-insensitive, as in the classic checker's ConfigParser. */
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);

	switch (p->section) {
	case SECTION_NONE:
		return fail(p, name, "key outside of any section (start the file with "
			    "[postgresql], [agent], [policy] or [node.NAME])");
	case SECTION_AGENT:
	case SECTION_POLICY:
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
		fail_at(p, line, "stale_after", "stale_after (%s) must be longer than "
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
		fail_at(p, setting_line(p, "drain_lag"), "drain_lag",
			"drain_lag (%s) needs max_lag, the lag at which the weight "
			"reaches min_weight; max_lag is not set", drain);
		return;
	}
	format_bound(pol->max_lag, max, sizeof(max));
	fail_at(p, setting_line(p, "drain_lag"), "drain_lag",
		"drain_lag (%s) must be less than max_lag (%s)", drain, max);
}

/* The classic section's name= must not take a [node.NAME]'s name. */
static void check_names(struct parser *p)
{
	if (!p->classic_line || !p->classic.node.name[0])
		return;
	for (int i = 0; i < p->n_nodes; i++) {
		if (strcmp(p->nodes[i].node.name, p->classic.node.name) == 0) {
			fail_at(p, p->classic.name_line, "name",
				"node name '%s' is also the name of [node.%s] at line %d",
				p->classic.node.name, p->nodes[i].node.name,
				p->nodes[i].node.line);
			return;
		}
	}
}

static void validate(struct parser *p)
{
	if (!p->classic_line && p->n_nodes == 0) {
		fail_at(p, 0, "", "no node to monitor: add a [postgresql] or a "
			"[node.NAME] section");
		return;
	}
	check_stale_after(p);
	check_lag_limits(p);
	check_names(p);
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
}

/* Runs inih over the open file; fills p->err on the first error. */
static void parse_file(struct parser *p)
{
	int rc;

	rc = ini_parse_stream(read_line, p, on_key, p);
	/*
	 * inih returns the first line it found fault with: a syntax error,
	 * or a line where on_key returned 0. A syntax error before our own
	 * first error wins, as it is the first thing to fix.
	 */
	if (rc > 0 && (!p->failed || rc < p->err->line)) {
		p->failed = false;
		fail_at(p, rc, "", "syntax error: expected [section], key = value, "
			"or a comment starting with ';' or '#'");
	} else if (rc < 0 && !p->failed) {
		fail_at(p, 0, "", "cannot parse: %s", rc == -2 ? "out of memory" : "error");
	}
}

int config_load(const char *path, struct agent_config *cfg, struct config_error *err)
{
	struct parser p;
	char iobuf[BUFSIZ];
	char *msg = NULL;

	memset(cfg, 0, sizeof(*cfg));
	memset(err, 0, sizeof(*err));
	memset(&p, 0, sizeof(p));
	snprintf(err->file, sizeof(err->file), "%s", path);
	p.path = path;
	p.err = err;
	p.cfg = cfg;
	p.current = -1;
	set_defaults(cfg);

	cfg->path = strdup(path);
	/*
	 * The keyword list without defaults: PQconndefaults() also reads the
	 * environment and the service file, and fails when PGSERVICE names
	 * a missing service, which is no fault of this file.
	 */
	p.libpq_options = PQconninfoParse("", &msg);
	PQfreemem(msg);
	if (!cfg->path || !p.libpq_options) {
		fail_at(&p, 0, "", "out of memory");
		goto out;
	}
	p.file = fopen(path, "r");
	if (!p.file) {
		fail_at(&p, 0, "", "cannot open: %s", strerror(errno));
		goto out;
	}
	/* Our own stdio buffer, so that the passwords it held can be wiped. */
	setvbuf(p.file, iobuf, _IOFBF, sizeof(iobuf));
	parse_file(&p);
	fclose(p.file);
	explicit_bzero(iobuf, sizeof(iobuf));

	if (!p.failed)
		validate(&p);
	if (!p.failed)
		finish(&p);
out:
	parser_free(&p);
	if (p.failed) {
		config_free(cfg);
		return -1;
	}
	return 0;
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
