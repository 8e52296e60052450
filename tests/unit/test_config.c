/*
 * Unit tests for agent/config.c: the classic database.ini, a config
 * with every key, the example config, and every error path with its
 * exact line and key. No error message may ever show a password.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "ini_reader.h"

#define INI_TEST_CAP INI_MAX_FILE_BYTES

/* The secret planted in error-path inputs; no message may contain it. */
#define SECRET "s3cr3t"

/* The classic checker's database.ini, as its README shows it, unindented. */
static const char classic_ini[] =
	"[postgresql]\n"
	"host=localhost\n"
	"database=suppliers\n"
	"user=postgres\n"
	"password=postgres\n";

struct loaded {
	char path[64];
	struct agent_config cfg;
	struct config_error err;
	char formatted[1024];
	int rc;
};

static void write_temp(const char *text, char *path, size_t len)
{
	int fd;
	size_t n = strlen(text);

	snprintf(path, len, "/tmp/pgbdr-test-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

/* Loads text from a temp file; the caller frees l->cfg. */
static void load_text(const char *text, struct loaded *l)
{
	write_temp(text, l->path, sizeof(l->path));
	l->rc = config_load(l->path, &l->cfg, &l->err);
	config_error_format(&l->err, l->formatted, sizeof(l->formatted));
	unlink(l->path);
}

static void load_ok(const char *text, struct loaded *l)
{
	load_text(text, l);
	if (l->rc != 0)
		fail_msg("config_load failed: %s", l->formatted);
}

static const struct node_config *node_named(const struct agent_config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n_nodes; i++)
		if (strcmp(cfg->nodes[i].name, name) == 0)
			return &cfg->nodes[i];
	fail_msg("no node '%s'", name);
	return NULL;
}

static void assert_param(const struct node_config *node, const char *key, const char *value)
{
	const char *got = node_config_param(node, key);

	if (!value) {
		if (got)
			fail_msg("%s = '%s', expected unset", key, got);
		return;
	}
	if (!got)
		fail_msg("%s unset, expected '%s'", key, value);
	assert_string_equal(got, value);
}

/* keywords/values are NULL-terminated and agree with n_params. */
static void assert_params_terminated(const struct node_config *node)
{
	assert_non_null(node->keywords);
	assert_non_null(node->values);
	for (int i = 0; i < node->n_params; i++) {
		assert_non_null(node->keywords[i]);
		assert_non_null(node->values[i]);
		assert_true(node->values[i][0] != '\0');
	}
	assert_null(node->keywords[node->n_params]);
	assert_null(node->values[node->n_params]);
}

static void assert_default_agent(const struct agent_config *cfg)
{
	assert_true(cfg->http_listen.enabled);
	assert_string_equal(cfg->http_listen.host, "0.0.0.0");
	assert_int_equal(cfg->http_listen.port, 9200);
	assert_false(cfg->agent_listen.enabled);
	assert_false(cfg->spoe_listen.enabled);
	assert_int_equal(cfg->allow_from.count, 0);
	assert_int_equal(cfg->interval_ms, 1000);
	assert_int_equal(cfg->timeout_ms, 2000);
	assert_int_equal(cfg->policy.stale_after_ms, 4000);
	assert_int_equal(cfg->policy.rise, 1);
	assert_int_equal(cfg->policy.fall, 1);
	assert_null(cfg->maintenance_file);
	assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
	assert_null(cfg->user);
	assert_false(cfg->allow_root);
	assert_int_equal(cfg->agent_send_wait_ms, 500);
	assert_int_equal(cfg->leader_return_delay_ms, 10000);
	assert_int_equal(cfg->leader_handover_ms, 2000);
	assert_int_equal(cfg->spoe_max_frame_size, 16380);
	assert_int_equal(cfg->spoe_max_fragmented, 1024 * 1024);
	assert_int_equal(cfg->max_clients, 10000);
	assert_int_equal(cfg->max_connecting, 16);
	assert_int_equal(cfg->client_timeout_ms, 5000);
	assert_int_equal(cfg->policy.drain_lag, 0);
	assert_int_equal(cfg->policy.max_lag, 0);
	assert_true(cfg->policy.max_lag_time == 0.0);
	assert_int_equal(cfg->policy.min_weight, 10);
	assert_int_equal(cfg->policy.read_only, READ_ONLY_DOWN);
	assert_int_equal(cfg->peer_lag, PEER_LAG_CATALOG);
}

static void assert_classic(const struct loaded *l)
{
	const struct node_config *node;

	assert_int_equal(l->cfg.n_nodes, 1);
	node = &l->cfg.nodes[0];
	assert_true(node->classic);
	assert_string_equal(node->name, "");
	assert_int_equal(node->priority, 100);
	assert_int_equal(node->flavor, FLAVOR_AUTO);
	assert_param(node, "host", "localhost");
	assert_param(node, "dbname", "suppliers");
	assert_param(node, "database", NULL);
	assert_param(node, "user", "postgres");
	assert_param(node, "password", "postgres");
	assert_param(node, "application_name", "pgbdr-agent");
	assert_int_equal(node->n_params, 5);
	assert_params_terminated(node);
	assert_default_agent(&l->cfg);
}

static void test_classic_database_ini(void **state)
{
	struct loaded l;

	(void)state;
	load_ok(classic_ini, &l);
	assert_classic(&l);
	assert_int_equal(l.cfg.nodes[0].line, 1);
	assert_string_equal(l.cfg.path, l.path);
	config_free(&l.cfg);
	assert_null(l.cfg.nodes);
	assert_int_equal(l.cfg.n_nodes, 0);
	config_free(&l.cfg); /* twice is harmless */
}

/*
 * The README shows the file indented by four spaces. Indentation is
 * ignored, so a verbatim copy loads too instead of gluing every line
 * after the first onto host as inih's continuation lines would.
 */
static void test_classic_indented_crlf(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("    [postgresql]\n"
		"    host=localhost\n"
		"    database=suppliers\n"
		"    user=postgres\n"
		"    password=postgres\n", &l);
	assert_classic(&l);
	config_free(&l.cfg);

	load_ok("[postgresql]\r\nhost=localhost\r\ndatabase=suppliers\r\n"
		"user=postgres\r\npassword=postgres\r\n", &l);
	assert_classic(&l);
	config_free(&l.cfg);

	/* a byte-order mark from a Windows editor */
	load_ok("\xEF\xBB\xBF[postgresql]\nhost=localhost\ndatabase=suppliers\n"
		"user=postgres\npassword=postgres", &l);
	assert_classic(&l);
	config_free(&l.cfg);
}

static const char full_ini[] =
	"# every key\n"                                         /* 1 */
	"[agent]\n"
	"http_listen = 127.0.0.1:9300\n"
	"agent_listen = *:9301\n"
	"spoe_listen = [::1]:9302\n"                            /* 5 */
	"allow_from = 10.0.0.0/8, 192.168.0.0/16 ::1\n"
	"interval = 500ms\n"
	"timeout = 1.5s\n"
	"stale_after = 10s\n"
	"rise = 3\n"                                            /* 10 */
	"fall = 2\n"
	"maintenance_file = /etc/pgbdr-agent/maintenance\n"
	"log_level = debug\n"
	"user = pgbdr\n"
	"allow_root = yes\n"                                    /* 15 */
	"agent_send_wait = 250ms\n"
	"leader_return_delay = 1min\n"
	"leader_handover = 3s\n"
	"spoe_max_frame_size = 16kB\n"
	"spoe_max_fragmented = 4MB\n"                           /* 20 */
	"max_clients = 500\n"
	"client_timeout = 30s\n"
	"\n"
	"[policy]\n"
	"drain_lag = 16MB\n"                                    /* 25 */
	"max_lag = 64MB\n"
	"max_lag_time = 1.5min\n"
	"min_weight = 5\n"
	"read_only = ready\n"
	"\n"                                                    /* 30 */
	"[node.node2]\n"
	"dsn = host=10.0.0.2 port=5433 dbname=app user=mon\n"
	"priority = 200\n"
	"flavor = pgd\n"
	"sslmode = require\n"                                   /* 35 */
	"\n"
	"[postgresql]\n"
	"host = /var/run/postgresql\n"
	"dbname = app\n"
	"name = local-1\n"                                      /* 40 */
	"priority = 10\n"
	"flavor = bdr\n"
	"connect_timeout = 3\n";

static void test_full_config(void **state)
{
	struct loaded l;
	const struct agent_config *cfg = &l.cfg;
	const struct node_config *local, *node2;

	(void)state;
	load_ok(full_ini, &l);

	assert_true(cfg->http_listen.enabled);
	assert_string_equal(cfg->http_listen.host, "127.0.0.1");
	assert_int_equal(cfg->http_listen.port, 9300);
	assert_true(cfg->agent_listen.enabled);
	assert_string_equal(cfg->agent_listen.host, "");
	assert_int_equal(cfg->agent_listen.port, 9301);
	assert_true(cfg->spoe_listen.enabled);
	assert_string_equal(cfg->spoe_listen.host, "::1");
	assert_int_equal(cfg->spoe_listen.port, 9302);
	assert_int_equal(cfg->allow_from.count, 3);
	assert_int_equal(cfg->allow_from.items[2].family, AF_INET6);
	assert_int_equal(cfg->interval_ms, 500);
	assert_int_equal(cfg->timeout_ms, 1500);
	assert_int_equal(cfg->policy.stale_after_ms, 10000);
	assert_int_equal(cfg->policy.rise, 3);
	assert_int_equal(cfg->policy.fall, 2);
	assert_string_equal(cfg->maintenance_file, "/etc/pgbdr-agent/maintenance");
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(cfg->user, "pgbdr");
	assert_true(cfg->allow_root);
	assert_int_equal(cfg->agent_send_wait_ms, 250);
	assert_int_equal(cfg->leader_return_delay_ms, 60000);
	assert_int_equal(cfg->leader_handover_ms, 3000);
	assert_int_equal(cfg->spoe_max_frame_size, 16384);
	assert_int_equal(cfg->spoe_max_fragmented, 4 * 1024 * 1024);
	assert_int_equal(cfg->max_clients, 500);
	assert_int_equal(cfg->client_timeout_ms, 30000);
	assert_int_equal(cfg->policy.drain_lag, 16 * 1024 * 1024);
	assert_int_equal(cfg->policy.max_lag, 64 * 1024 * 1024);
	assert_true(cfg->policy.max_lag_time == 90.0);
	assert_int_equal(cfg->policy.min_weight, 5);
	assert_int_equal(cfg->policy.read_only, READ_ONLY_READY);

	/* [postgresql] first, whatever its place in the file */
	assert_int_equal(cfg->n_nodes, 2);
	local = &cfg->nodes[0];
	node2 = &cfg->nodes[1];
	assert_true(local->classic);
	assert_string_equal(local->name, "local-1");
	assert_int_equal(local->line, 37);
	assert_int_equal(local->priority, 10);
	assert_int_equal(local->flavor, FLAVOR_BDR);
	assert_param(local, "host", "/var/run/postgresql");
	assert_param(local, "dbname", "app");
	assert_param(local, "connect_timeout", "3");
	assert_param(local, "application_name", "pgbdr-agent");
	assert_int_equal(local->n_params, 4);
	assert_params_terminated(local);

	assert_false(node2->classic);
	assert_string_equal(node2->name, "node2");
	assert_int_equal(node2->line, 31);
	assert_int_equal(node2->priority, 200);
	assert_int_equal(node2->flavor, FLAVOR_PGD);
	assert_param(node2, "host", "10.0.0.2");
	assert_param(node2, "port", "5433");
	assert_param(node2, "dbname", "app");
	assert_param(node2, "user", "mon");
	assert_param(node2, "sslmode", "require");
	assert_param(node2, "application_name", "pgbdr-agent");
	assert_param(node2, "password", NULL);
	assert_int_equal(node2->n_params, 6);
	assert_params_terminated(node2);
	config_free(&l.cfg);
}

/* Single keys override the dsn's values in either order; "" unsets. */
static void test_dsn_and_overrides(void **state)
{
	struct loaded l;
	const struct node_config *a, *b;

	(void)state;
	load_ok("[node.a]\n"
		"port = 6000\n"
		"dsn = host=h1 port=5433 dbname=x user=u password=pw sslmode=prefer\n"
		"sslmode =\n"
		"Database = y\n"
		"[node.b]\n"
		"dsn = postgresql://mon@db.example.com:5434/app?sslmode=require&application_name=mine\n",
		&l);
	assert_int_equal(l.cfg.n_nodes, 2);
	a = node_named(&l.cfg, "a");
	assert_param(a, "host", "h1");
	assert_param(a, "port", "6000");
	assert_param(a, "dbname", "y");
	assert_param(a, "user", "u");
	assert_param(a, "password", "pw");
	assert_param(a, "sslmode", NULL);
	assert_param(a, "application_name", "pgbdr-agent");
	assert_int_equal(a->n_params, 6);
	assert_params_terminated(a);

	b = node_named(&l.cfg, "b");
	assert_param(b, "host", "db.example.com");
	assert_param(b, "port", "5434");
	assert_param(b, "dbname", "app");
	assert_param(b, "user", "mon");
	assert_param(b, "sslmode", "require");
	assert_param(b, "application_name", "mine");
	assert_int_equal(b->n_params, 6);
	assert_params_terminated(b);
	assert_null(node_config_param(b, "nosuchkey"));
	config_free(&l.cfg);

	/* [postgresql] takes a dsn too */
	load_ok("[postgresql]\ndsn = host=h2 dbname=d2\nname = me\n", &l);
	assert_string_equal(l.cfg.nodes[0].name, "me");
	assert_param(&l.cfg.nodes[0], "host", "h2");
	assert_param(&l.cfg.nodes[0], "dbname", "d2");
	config_free(&l.cfg);
}

static void test_application_name(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("[postgresql]\napplication_name = haproxy-check\n", &l);
	assert_param(&l.cfg.nodes[0], "application_name", "haproxy-check");
	assert_int_equal(l.cfg.nodes[0].n_params, 1);
	config_free(&l.cfg);

	/* set but empty counts as not set */
	load_ok("[postgresql]\napplication_name =\n", &l);
	assert_param(&l.cfg.nodes[0], "application_name", "pgbdr-agent");
	assert_int_equal(l.cfg.nodes[0].n_params, 1);
	config_free(&l.cfg);
}

static void test_node_order_and_empty_sections(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("[node.zeta]\n"
		"[agent]\n"
		"[node.alpha]\n"
		"host = a\n"
		"[postgresql]\n"
		"[node.mid.dle_1-x]\n"
		"[policy]\n", &l);
	assert_int_equal(l.cfg.n_nodes, 4);
	assert_true(l.cfg.nodes[0].classic);
	assert_int_equal(l.cfg.nodes[0].line, 5);
	assert_string_equal(l.cfg.nodes[1].name, "zeta");
	assert_int_equal(l.cfg.nodes[1].line, 1);
	assert_string_equal(l.cfg.nodes[2].name, "alpha");
	assert_string_equal(l.cfg.nodes[3].name, "mid.dle_1-x");
	/* a node with no keys still gets libpq defaults and a name for itself */
	assert_int_equal(l.cfg.nodes[1].n_params, 1);
	assert_param(&l.cfg.nodes[1], "application_name", "pgbdr-agent");
	assert_params_terminated(&l.cfg.nodes[1]);
	assert_default_agent(&l.cfg);
	config_free(&l.cfg);
}

static void test_many_nodes(void **state)
{
	char text[4096];
	size_t off = 0;
	struct loaded l;

	(void)state;
	for (int i = 0; i < 40; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"[node.n%d]\nhost = h%d\npriority = %d\n", i, i, i);
	load_ok(text, &l);
	assert_int_equal(l.cfg.n_nodes, 40);
	for (int i = 0; i < 40; i++) {
		char name[16], host[16];

		snprintf(name, sizeof(name), "n%d", i);
		snprintf(host, sizeof(host), "h%d", i);
		assert_string_equal(l.cfg.nodes[i].name, name);
		assert_int_equal(l.cfg.nodes[i].priority, i);
		assert_param(&l.cfg.nodes[i], "host", host);
	}
	config_free(&l.cfg);
}

static void test_syntax_niceties(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("; a comment\n"
		"# another\n"
		"\n"
		"[ POSTGRESQL ] ; trailing comment\n"
		"HOST = db1 ; inline comment\n"
		"user: mon\n"
		"password = p#w\n"
		"[Agent]\n"
		"Interval = 2s\n"
		"http_listen = off\n"
		"maintenance_file =\n"
		"user =\n"
		"allow_from =\n"
		"log_level = WARNING\n"
		"[NODE.MixedCase]\n"
		"FLAVOR = Physical\n", &l);
	assert_int_equal(l.cfg.n_nodes, 2);
	assert_param(&l.cfg.nodes[0], "host", "db1");
	assert_param(&l.cfg.nodes[0], "user", "mon");
	assert_param(&l.cfg.nodes[0], "password", "p#w");
	assert_string_equal(l.cfg.nodes[1].name, "MixedCase");
	assert_int_equal(l.cfg.nodes[1].flavor, FLAVOR_PHYSICAL);
	assert_int_equal(l.cfg.interval_ms, 2000);
	assert_false(l.cfg.http_listen.enabled);
	assert_null(l.cfg.maintenance_file);
	assert_null(l.cfg.user);
	assert_int_equal(l.cfg.allow_from.count, 0);
	assert_int_equal(l.cfg.log_level, LOG_LEVEL_WARNING);
	/* stale_after follows interval: 2 * 2s + 2s */
	assert_int_equal(l.cfg.policy.stale_after_ms, 6000);
	config_free(&l.cfg);
}

/* A DSN with SSL file paths: 400 characters on one line. */
static void test_long_dsn_line(void **state)
{
	char dsn[401], text[512];
	struct loaded l;
	int n;

	(void)state;
	n = snprintf(dsn, sizeof(dsn), "host=db1.example.com port=5432 dbname=app user=mon "
		     "sslmode=verify-full sslrootcert=/etc/ssl/pg/");
	memset(dsn + n, 'r', sizeof(dsn) - 1 - (size_t)n - strlen(" sslkey=/k"));
	snprintf(dsn + sizeof(dsn) - 1 - strlen(" sslkey=/k"), strlen(" sslkey=/k") + 1, " sslkey=/k");
	assert_int_equal(strlen(dsn), 400);
	snprintf(text, sizeof(text), "[node.a]\r\ndsn = %s\r\n", dsn);
	load_ok(text, &l);
	assert_param(&l.cfg.nodes[0], "host", "db1.example.com");
	assert_param(&l.cfg.nodes[0], "sslkey", "/k");
	assert_int_equal(strlen(node_config_param(&l.cfg.nodes[0], "sslrootcert")),
			 strlen(dsn) - strlen("host=db1.example.com port=5432 dbname=app user=mon "
					      "sslmode=verify-full sslrootcert= sslkey=/k"));
	config_free(&l.cfg);

	/* and as the last line, without a newline */
	snprintf(text, sizeof(text), "[node.a]\ndsn = %s", dsn);
	load_ok(text, &l);
	assert_param(&l.cfg.nodes[0], "sslkey", "/k");
	config_free(&l.cfg);
}

/* A line may be as long as the file cap allows; a longer file is refused. */
static void test_huge_line_and_file(void **state)
{
	size_t big = 300 * 1000;
	char *text = malloc(INI_TEST_CAP + 64);
	struct loaded l;

	(void)state;
	assert_non_null(text);
	strcpy(text, "[postgresql]\npassword=");
	memset(text + strlen(text), 'x', big);
	strcpy(text + strlen("[postgresql]\npassword=") + big, "\nhost=h\n");
	load_ok(text, &l);
	assert_int_equal(strlen(node_config_param(&l.cfg.nodes[0], "password")), big);
	assert_param(&l.cfg.nodes[0], "host", "h");
	config_free(&l.cfg);

	/* over the cap: comment lines until it is full */
	strcpy(text, "[postgresql]\nhost=h\n");
	for (size_t n = strlen(text); n < INI_TEST_CAP + 10; n += 10)
		strcpy(text + n, "#23456789\n");
	load_text(text, &l);
	assert_int_equal(l.rc, -1);
	assert_non_null(strstr(l.err.message, "larger than 1MB"));
	assert_string_equal(l.err.file, l.path);
	free(text);
}

/* A temporary directory with files; names relative to it. */
struct tree {
	char dir[64];
	char paths[8][128];
	int n;
};

static const char *tree_file(struct tree *t, const char *name, const char *text, int mode)
{
	char *path = t->paths[t->n++];
	char dir[sizeof(t->dir)];
	FILE *f;

	if (!t->dir[0]) {
		snprintf(t->dir, sizeof(t->dir), "/tmp/pgbdr-test-tree-XXXXXX");
		assert_non_null(mkdtemp(t->dir));
	}
	memcpy(dir, t->dir, sizeof(dir));
	snprintf(path, sizeof(t->paths[0]), "%s/%s", dir, name);
	if (strchr(name, '/')) {
		char sub[128];

		snprintf(sub, sizeof(sub), "%s/%.*s", dir, (int)(strchr(name, '/') - name), name);
		mkdir(sub, 0700);
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite(text, 1, strlen(text), f);
	fclose(f);
	chmod(path, (mode_t)mode);
	return path;
}

static void tree_remove(struct tree *t)
{
	char sub[128];

	for (int i = t->n - 1; i >= 0; i--)
		unlink(t->paths[i]);
	snprintf(sub, sizeof(sub), "%s/conf.d", t->dir);
	rmdir(sub);
	rmdir(t->dir);
}

static bool report_has(const struct config_report *r, const char *text)
{
	for (int i = 0; i < r->n_lines; i++)
		if (strstr(r->lines[i], text))
			return true;
	return false;
}

/* %include (relative to the including file) and include_dir in name order. */
static void test_include(void **state)
{
	struct tree t = { 0 };
	struct agent_config cfg;
	struct config_error err;
	const char *main_path;

	(void)state;
	tree_file(&t, "agent.ini", "[agent]\ninterval = 3s\n", 0600);
	tree_file(&t, "conf.d/20-b.ini", "[node.b]\nhost = b\n", 0600);
	tree_file(&t, "conf.d/10-a.conf", "[node.a]\nhost = a\n", 0600);
	tree_file(&t, "conf.d/30-c.ini~", "[node.c]\nhost = c\n", 0600);
	tree_file(&t, "conf.d/.40-d.ini", "[node.d]\nhost = d\n", 0600);
	main_path = tree_file(&t, "main.ini",
			      "[postgresql]\nhost = local\n"
			      "%include agent.ini\n"
			      "port = 5433\n"          /* back in [postgresql] */
			      "include_dir = conf.d\n", 0600);
	if (config_load(main_path, &cfg, &err) != 0) {
		char msg[600];

		config_error_format(&err, msg, sizeof(msg));
		fail_msg("%s", msg);
	}
	assert_int_equal(cfg.interval_ms, 3000);
	assert_int_equal(cfg.n_nodes, 3);
	assert_param(&cfg.nodes[0], "port", "5433");
	assert_string_equal(cfg.nodes[1].name, "a");
	assert_string_equal(cfg.nodes[2].name, "b");
	config_free(&cfg);
	tree_remove(&t);
}

/* Errors in an included file name that file and its line; all are listed. */
static void test_include_errors(void **state)
{
	struct tree t = { 0 };
	struct agent_config cfg;
	struct config_error err;
	struct config_report report;
	const char *main_path, *inc;
	char where[256];

	(void)state;
	inc = tree_file(&t, "node.ini", "[node.b]\nhost = b\nbogus = 1\nflavor = nope\n", 0600);
	main_path = tree_file(&t, "main.ini", "[postgresql]\nhost = a\n%include node.ini\n"
			      "[agent]\ninterval = fast\n%include main.ini\n", 0600);
	assert_int_equal(config_load_report(main_path, &cfg, &err, &report), -1);
	assert_string_equal(err.file, inc);
	assert_int_equal(err.line, 3);
	assert_string_equal(err.key, "bogus");
	assert_int_equal(report.n_errors, 4);
	assert_int_equal(report.n_lines, 4);
	snprintf(where, sizeof(where), "%s:3: key 'bogus': ", inc);
	assert_non_null(strstr(report.lines[0], where));
	snprintf(where, sizeof(where), "%s:4: key 'flavor': unknown flavor 'nope'", inc);
	assert_non_null(strstr(report.lines[1], where));
	snprintf(where, sizeof(where), "%s:5: key 'interval': invalid duration", main_path);
	assert_non_null(strstr(report.lines[2], where));
	snprintf(where, sizeof(where), "%s:6: 'main.ini' includes itself", main_path);
	if (!strstr(report.lines[3], "includes itself") || !strstr(report.lines[3], main_path))
		fail_msg("%s", report.lines[3]);
	config_report_free(&report);
	tree_remove(&t);
}

/* Every error of a file, not just the first, each with its line. */
static void test_every_error_reported(void **state)
{
	struct tree t = { 0 };
	struct agent_config cfg;
	struct config_error err;
	struct config_report report;
	const char *path;

	(void)state;
	path = tree_file(&t, "many.ini", "[postgresql]\nhots = x\n[agent]\ninterval = 0\n"
			 "junk line\n[bogus]\nignored = 1\n[policy]\nmin_weight = 200\n", 0600);
	assert_int_equal(config_load_report(path, &cfg, &err, &report), -1);
	assert_int_equal(err.line, 2);
	assert_int_equal(report.n_errors, 5);
	assert_true(report_has(&report, ":2: key 'hots'"));
	assert_true(report_has(&report, ":4: key 'interval'"));
	assert_true(report_has(&report, ":5: syntax error"));
	assert_true(report_has(&report, ":6: unknown section [bogus]"));
	assert_false(report_has(&report, "ignored"));
	assert_true(report_has(&report, ":9: key 'min_weight'"));
	config_report_free(&report);
	tree_remove(&t);
}

/* A NUL byte is an error naming file:line, not a silently cut value. */
static void test_nul_byte(void **state)
{
	static const char text[] = "[postgresql]\nhost=a\npassword=ab\0cd\n";
	char path[64];
	struct agent_config cfg;
	struct config_error err;
	FILE *f;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/pgbdr-test-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fwrite(text, 1, sizeof(text) - 1, f);
	fclose(f);
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_string_equal(err.file, path);
	assert_int_equal(err.line, 3);
	assert_non_null(strstr(err.message, "NUL byte"));
	unlink(path);
}

/* Devices, FIFOs and directories fail at once instead of being read forever. */
static void test_not_regular_files(void **state)
{
	char fifo[64] = "/tmp/pgbdr-test-fifo-XXXXXX";
	const char *paths[] = { "/dev/zero", "/dev/urandom", fifo, "/tmp" };
	struct agent_config cfg;
	struct config_error err;

	(void)state;
	assert_non_null(mkdtemp(fifo));
	rmdir(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		assert_int_equal(config_load(paths[i], &cfg, &err), -1);
		assert_string_equal(err.file, paths[i]);
		if (!strstr(err.message, "not a regular file") && !strstr(err.message, "directory"))
			fail_msg("%s: %s", paths[i], err.message);
	}
	unlink(fifo);
}

/* Warnings: a password others can read, a loose passfile. Never errors. */
static void test_secret_warnings(void **state)
{
	struct tree t = { 0 };
	struct agent_config cfg;
	struct config_error err;
	struct config_report report;
	const char *path, *passfile;
	char text[256];

	(void)state;
	passfile = tree_file(&t, "pgpass", "*:*:*:*:x\n", 0644);
	snprintf(text, sizeof(text), "[agent]\nuser = nobody\n[node.a]\nhost=a\npassfile=%s\n"
		 "[node.b]\ndsn=host=b sslpassword=" SECRET "\n", passfile);
	path = tree_file(&t, "open.ini", text, 0644);
	assert_int_equal(config_load_report(path, &cfg, &err, &report), 0);
	assert_int_equal(report.n_errors, 0);
	assert_int_equal(report.n_warnings, 2);
	assert_true(report_has(&report, "readable by every user"));
	assert_true(report_has(&report, "passfile"));
	for (int i = 0; i < report.n_lines; i++)
		assert_null(strstr(report.lines[i], SECRET));
	config_report_free(&report);
	config_free(&cfg);

	/* 0640 and a 0600 passfile: nothing to say */
	chmod(path, 0640);
	chmod(passfile, 0600);
	assert_int_equal(config_load_report(path, &cfg, &err, &report), 0);
	assert_int_equal(report.n_warnings, 0);
	config_report_free(&report);
	config_free(&cfg);
	tree_remove(&t);
}

static void test_stale_after_and_lag_limits(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("[postgresql]\n[agent]\ninterval = 500ms\ntimeout = 3s\n", &l);
	assert_int_equal(l.cfg.policy.stale_after_ms, 4000);
	config_free(&l.cfg);

	load_ok("[postgresql]\n[agent]\ninterval = 1s\nstale_after = 1001ms\n", &l);
	assert_int_equal(l.cfg.policy.stale_after_ms, 1001);
	config_free(&l.cfg);

	/* max_lag alone is fine; drain_lag just below it too */
	load_ok("[postgresql]\n[policy]\nmax_lag = 1GB\nmax_lag_time = 30\n", &l);
	assert_int_equal(l.cfg.policy.max_lag, INT64_C(1) << 30);
	assert_int_equal(l.cfg.policy.drain_lag, 0);
	assert_true(l.cfg.policy.max_lag_time == 30.0);
	config_free(&l.cfg);

	load_ok("[postgresql]\n[policy]\ndrain_lag = 1023\nmax_lag = 1kB\n"
		"min_weight = 0\nmax_lag_time = 250ms\n", &l);
	assert_int_equal(l.cfg.policy.drain_lag, 1023);
	assert_int_equal(l.cfg.policy.min_weight, 0);
	assert_true(l.cfg.policy.max_lag_time == 0.25);
	config_free(&l.cfg);
}

/* Range ends that must be accepted. */
static void test_boundaries_accepted(void **state)
{
	struct loaded l;

	(void)state;
	load_ok("[postgresql]\n[agent]\ninterval = 100ms\ntimeout = 100ms\n"
		"rise = 100\nfall = 100\nspoe_max_frame_size = 256\n"
		"max_clients = 1000000\nagent_send_wait = 0\n"
		"leader_return_delay = 0\nleader_handover = 0\nclient_timeout = 100ms\n"
		"[policy]\nmin_weight = 100\n", &l);
	assert_int_equal(l.cfg.interval_ms, 100);
	assert_int_equal(l.cfg.timeout_ms, 100);
	assert_int_equal(l.cfg.policy.rise, 100);
	assert_int_equal(l.cfg.policy.fall, 100);
	assert_int_equal(l.cfg.spoe_max_frame_size, 256);
	assert_int_equal(l.cfg.max_clients, 1000000);
	assert_int_equal(l.cfg.agent_send_wait_ms, 0);
	assert_int_equal(l.cfg.leader_return_delay_ms, 0);
	assert_int_equal(l.cfg.leader_handover_ms, 0);
	assert_int_equal(l.cfg.policy.min_weight, 100);
	config_free(&l.cfg);

	load_ok("[postgresql]\npriority = 0\nport = 65535\n[node.x]\npriority = 1000000\n"
		"port = 5432,,5433\n[agent]\nspoe_max_frame_size = 16777215\n", &l);
	assert_int_equal(l.cfg.nodes[0].priority, 0);
	assert_int_equal(l.cfg.nodes[1].priority, 1000000);
	assert_param(&l.cfg.nodes[1], "port", "5432,,5433");
	assert_int_equal(l.cfg.spoe_max_frame_size, 16777215);
	config_free(&l.cfg);
}

/* ---- error paths ----------------------------------------------------- */

struct error_case {
	const char *name;
	const char *text;
	int line;            /* 0: not tied to a line */
	const char *key;     /* "": not tied to a key */
	const char *message; /* must appear in err.message */
};

#define PG "[postgresql]\nhost=localhost\n" /* lines 1-2 */

static struct error_case error_cases[] = {
	/* sections */
	{ "unknown_section", PG "[foo]\nx=1\n", 3, "", "unknown section [foo]" },
	{ "unknown_section_without_keys", PG "[agent]\n[pgsql]\n", 4, "", "unknown section [pgsql]" },
	{ "section_trailing_text", "[agent] junk\n" PG, 1, "", "after the section header" },
	{ "key_outside_section", "host=localhost\n" PG, 1, "host", "outside of any section" },
	{ "duplicate_postgresql", PG "[agent]\n[postgresql]\n", 4, "",
	  "duplicate section [postgresql] (first at line 1)" },
	{ "duplicate_agent", PG "[agent]\n[policy]\n[agent]\n", 5, "",
	  "duplicate section [agent] (first at line 3)" },
	{ "duplicate_policy", PG "[policy]\n[policy]\n", 4, "",
	  "duplicate section [policy] (first at line 3)" },
	{ "duplicate_node", "[node.a]\nhost=a\n[node.b]\nhost=b\n[node.a]\nhost=c\n", 5, "",
	  "duplicate section [node.a] (first at line 1)" },
	{ "node_name_empty", PG "[node.]\n", 3, "", "invalid node name ''" },
	{ "node_name_space", PG "[node.a b]\n", 3, "", "invalid node name 'a b'" },
	{ "node_name_slash", PG "[node.a/b]\nhost=x\n", 3, "", "invalid node name 'a/b'" },
	{ "node_name_utf8", PG "[node.n\xC3\xA9]\n", 3, "", "invalid node name" },
	{ "node_name_64_chars", PG "[node.a123456789012345678901234567890123456789012345678901234567890123]\n",
	  3, "", "invalid node name" },
	{ "node_name_way_too_long", PG "[node.a12345678901234567890123456789012345678901234567890123456789"
	  "01234567890123456789012345678901234567890123456789012345678901234567890]\n",
	  3, "", "invalid node name" },
	{ "classic_name_bad", PG "name=a:b\n", 3, "name", "invalid node name 'a:b'" },
	{ "classic_name_empty", PG "name=\n", 3, "name", "empty value" },
	{ "classic_name_clash", "[node.a]\nhost=a\n[postgresql]\nname=a\n", 4, "name",
	  "also the name of [node.a] at line 1" },
	{ "no_nodes", "[agent]\ninterval=1s\n", 0, "", "no node to monitor" },
	{ "no_nodes_empty_file", "", 0, "", "no node to monitor" },

	/* syntax */
	{ "syntax_no_equals", PG "this is not a key\n", 3, "", "syntax error" },
	{ "syntax_unclosed_section", PG "[agent\ninterval=1s\n", 3, "", "syntax error" },
	{ "syntax_comment_in_section", PG "[agent ; x]\n", 3, "", "syntax error" },
	{ "syntax_before_bad_key", PG "oops\nbogus=1\n", 3, "", "syntax error" },
	{ "bad_key_before_syntax", PG "bogus=1\noops\n", 3, "bogus", "unknown key" },
	{ "include_no_file", PG "%include\n", 3, "", "%include needs a file name" },
	{ "include_missing", PG "%include /nonexistent/pgbdr.ini\n", 3, "",
	  "included file '/nonexistent/pgbdr.ini': cannot open: No such file" },
	{ "include_device", PG "%include /dev/zero\n", 3, "", "not a regular file" },
	{ "include_dir_missing", PG "include_dir = /nonexistent/conf.d\n", 3, "include_dir",
	  "cannot read directory '/nonexistent/conf.d'" },
	{ "include_dir_empty", PG "include_dir =\n", 3, "include_dir", "empty value" },


	/* unknown keys */
	{ "unknown_key_agent", PG "[agent]\ninterval=1s\nbogus=1\n", 5, "bogus", "unknown key in [agent]" },
	{ "policy_key_in_agent", PG "[agent]\nmax_lag=1MB\n", 4, "max_lag", "unknown key in [agent]" },
	{ "unknown_key_policy", PG "[policy]\nmax_lagg=1MB\n", 4, "max_lagg", "unknown key in [policy]" },
	{ "agent_key_in_policy", PG "[policy]\ninterval=1s\n", 4, "interval", "unknown key in [policy]" },
	{ "unknown_key_postgresql", "[postgresql]\nhost=x\nhots=y\n", 3, "hots", "libpq" },
	{ "unknown_key_node", PG "[node.a]\ndsn=host=a\nfoo=1\n", 5, "foo", "libpq" },
	{ "name_in_node_section", PG "[node.a]\nname=b\n", 4, "name", "unknown key" },
	{ "very_long_key", PG "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1\n",
	  3, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "unknown key" },

	/* duplicate keys */
	{ "duplicate_agent_key", PG "[agent]\ninterval=1s\ninterval=2s\n", 5, "interval",
	  "given twice in [agent] (first at line 4)" },
	{ "duplicate_policy_key", PG "[policy]\nmin_weight=1\nMIN_WEIGHT=2\n", 5, "MIN_WEIGHT",
	  "given twice in [policy] (first at line 4)" },
	{ "duplicate_libpq_key", PG "host=other\n", 3, "host", "host given twice in this section (first at line 2)" },
	{ "database_and_dbname", PG "database=a\ndbname=b\n", 4, "dbname", "dbname given twice" },
	{ "duplicate_priority", PG "priority=1\npriority=2\n", 4, "priority", "given twice" },
	{ "duplicate_flavor", PG "flavor=bdr\nflavor=pgd\n", 4, "flavor", "given twice" },
	{ "duplicate_dsn", "[node.a]\ndsn=host=a\ndsn=host=b\n", 3, "dsn", "given twice" },
	{ "duplicate_name", PG "name=a\nname=b\n", 4, "name", "given twice" },

	/* [agent] values */
	{ "http_listen_bad", PG "[agent]\nhttp_listen=nonsense\n", 4, "http_listen",
	  "invalid listen address 'nonsense'" },
	{ "agent_listen_port_0", PG "[agent]\nagent_listen=host:0\n", 4, "agent_listen",
	  "invalid listen address 'host:0'" },
	{ "spoe_listen_no_port", PG "[agent]\nspoe_listen=[::1]\n", 4, "spoe_listen",
	  "invalid listen address '[::1]'" },
	{ "allow_from_bad_prefix", PG "[agent]\nallow_from=10.0.0.0/8, 10.0.0.0/33\n", 4, "allow_from",
	  "invalid address list '10.0.0.0/8, 10.0.0.0/33'" },
	{ "allow_from_bad_address", PG "[agent]\nallow_from=db.example.com\n", 4, "allow_from",
	  "invalid address list" },
	{ "interval_junk", PG "[agent]\ninterval=fast\n", 4, "interval", "invalid duration 'fast'" },
	{ "interval_too_small", PG "[agent]\ninterval=99ms\n", 4, "interval",
	  "99ms is out of range (100ms to 1h)" },
	{ "interval_too_big", PG "[agent]\ninterval=2h\n", 4, "interval", "out of range" },
	{ "interval_negative", PG "[agent]\ninterval=-1s\n", 4, "interval", "invalid duration" },
	{ "interval_empty", PG "[agent]\ninterval=\n", 4, "interval", "empty value" },
	{ "timeout_junk", PG "[agent]\ntimeout=2 seconds\n", 4, "timeout", "invalid duration '2 seconds'" },
	{ "timeout_too_small", PG "[agent]\ntimeout=0.05\n", 4, "timeout", "out of range (100ms to 1h)" },
	{ "stale_after_junk", PG "[agent]\nstale_after=soon\n", 4, "stale_after", "invalid duration 'soon'" },
	{ "stale_after_not_above_interval", PG "[agent]\nstale_after=2s\ninterval=2s\n", 4, "stale_after",
	  "stale_after (2s) must be longer than interval (2s)" },
	{ "rise_zero", PG "[agent]\nrise=0\n", 4, "rise", "integer from 1 to 100, not '0'" },
	{ "rise_too_big", PG "[agent]\nrise=101\n", 4, "rise", "integer from 1 to 100" },
	{ "fall_zero", PG "[agent]\nfall=0\n", 4, "fall", "integer from 1 to 100, not '0'" },
	{ "fall_junk", PG "[agent]\nfall=2x\n", 4, "fall", "not '2x'" },
	{ "log_level_bad", PG "[agent]\nlog_level=verbose\n", 4, "log_level",
	  "error, warning, info or debug, not 'verbose'" },
	{ "log_level_empty", PG "[agent]\nlog_level=\n", 4, "log_level", "empty value" },
	{ "allow_root_bad", PG "[agent]\nallow_root=maybe\n", 4, "allow_root", "not 'maybe'" },
	{ "agent_send_wait_too_big", PG "[agent]\nagent_send_wait=61s\n", 4, "agent_send_wait",
	  "out of range (0ms to 1min)" },
	{ "agent_send_wait_junk", PG "[agent]\nagent_send_wait=x\n", 4, "agent_send_wait", "invalid duration" },
	{ "leader_return_delay_negative", PG "[agent]\nleader_return_delay=-1s\n", 4,
	  "leader_return_delay", "invalid duration '-1s'" },
	{ "leader_return_delay_too_big", PG "[agent]\nleader_return_delay=2d\n", 4,
	  "leader_return_delay", "out of range (0ms to 1d)" },
	{ "leader_handover_junk", PG "[agent]\nleader_handover=later\n", 4, "leader_handover",
	  "invalid duration 'later'" },
	{ "leader_handover_too_big", PG "[agent]\nleader_handover=61min\n", 4, "leader_handover",
	  "out of range (0ms to 1h)" },
	{ "spoe_max_frame_size_small", PG "[agent]\nspoe_max_frame_size=255\n", 4, "spoe_max_frame_size",
	  "255 is out of range (256B to 16777215B)" },
	{ "spoe_max_frame_size_big", PG "[agent]\nspoe_max_frame_size=16MB\n", 4, "spoe_max_frame_size",
	  "16MB is out of range (256B to 16777215B)" },
	{ "spoe_max_frame_size_junk", PG "[agent]\nspoe_max_frame_size=big\n", 4, "spoe_max_frame_size",
	  "invalid size 'big'" },
	{ "spoe_max_fragmented_small", PG "[agent]\nspoe_max_fragmented=100\n", 4, "spoe_max_fragmented",
	  "out of range (256B to 1GB)" },
	{ "spoe_max_fragmented_big", PG "[agent]\nspoe_max_fragmented=2GB\n", 4, "spoe_max_fragmented",
	  "out of range" },
	{ "max_clients_zero", PG "[agent]\nmax_clients=0\n", 4, "max_clients", "integer from 1 to 1000000" },
	{ "max_clients_big", PG "[agent]\nmax_clients=1000001\n", 4, "max_clients", "not '1000001'" },
	{ "max_connecting_zero", PG "[agent]\nmax_connecting=0\n", 4, "max_connecting",
	  "integer from 1 to 10000" },
	{ "max_connecting_junk", PG "[agent]\nmax_connecting=many\n", 4, "max_connecting", "not 'many'" },
	{ "client_timeout_zero", PG "[agent]\nclient_timeout=0\n", 4, "client_timeout", "out of range" },
	{ "client_timeout_junk", PG "[agent]\nclient_timeout=5 s s\n", 4, "client_timeout", "invalid duration" },

	/* [policy] values */
	{ "drain_lag_junk", PG "[policy]\ndrain_lag=lots\n", 4, "drain_lag", "invalid size 'lots'" },
	{ "max_lag_negative", PG "[policy]\nmax_lag=-1MB\n", 4, "max_lag", "invalid size '-1MB'" },
	{ "max_lag_overflow", PG "[policy]\nmax_lag=8388608TB\n", 4, "max_lag", "invalid size" },
	{ "max_lag_time_junk", PG "[policy]\nmax_lag_time=soon\n", 4, "max_lag_time", "invalid duration 'soon'" },
	{ "max_lag_time_negative", PG "[policy]\nmax_lag_time=-5\n", 4, "max_lag_time", "invalid duration" },
	{ "max_lag_time_too_big", PG "[policy]\nmax_lag_time=366d\n", 4, "max_lag_time", "out of range" },
	{ "min_weight_big", PG "[policy]\nmin_weight=101\n", 4, "min_weight", "integer from 0 to 100" },
	{ "min_weight_negative", PG "[policy]\nmin_weight=-1\n", 4, "min_weight", "not '-1'" },
	{ "read_only_bad", PG "[policy]\nread_only=maybe\n", 4, "read_only", "down or ready, not 'maybe'" },
	{ "read_only_empty", PG "[policy]\nread_only=\n", 4, "read_only", "empty value" },
	{ "peer_lag_bad", PG "[agent]\npeer_lag=maybe\n", 4, "peer_lag", "catalog or off, not 'maybe'" },
	{ "peer_lag_empty", PG "[agent]\npeer_lag=\n", 4, "peer_lag", "empty value" },
	{ "drain_lag_without_max_lag", PG "[policy]\nmin_weight=5\ndrain_lag=16MB\n", 5, "drain_lag",
	  "drain_lag (16MB) needs max_lag" },
	{ "drain_lag_above_max_lag", PG "[policy]\nmax_lag=8MB\ndrain_lag=16MB\n", 5, "drain_lag",
	  "drain_lag (16MB) must be less than max_lag (8MB)" },
	{ "drain_lag_just_above_max_lag", PG "[policy]\nmax_lag=8MB\ndrain_lag=8388609\n", 5, "drain_lag",
	  "drain_lag (8388609B) must be less than max_lag (8MB)" },
	{ "drain_lag_equal_max_lag", PG "[policy]\ndrain_lag=8MB\nmax_lag=8MB\n", 4, "drain_lag",
	  "must be less than max_lag" },

	/* node values */
	{ "priority_junk", PG "priority=high\n", 3, "priority", "integer from 0 to 1000000" },
	{ "priority_negative", PG "priority=-1\n", 3, "priority", "not '-1'" },
	{ "priority_big", "[node.a]\npriority=1000001\n", 2, "priority", "not '1000001'" },
	{ "priority_empty", "[node.a]\npriority=\n", 2, "priority", "empty value" },
	{ "flavor_bad", "[node.a]\nflavor=oracle\n", 2, "flavor", "unknown flavor 'oracle'" },
	{ "flavor_empty", PG "flavor=\n", 3, "flavor", "empty value" },
	{ "port_junk", PG "port=abc\n", 3, "port", "invalid port 'abc'" },
	{ "port_big", "[node.a]\nport=5432,70000\n", 2, "port", "invalid port '5432,70000'" },
	{ "dsn_empty", "[node.a]\ndsn=\n", 2, "dsn", "empty value" },
	{ "dsn_not_conninfo", "[node.a]\ndsn=mydb\n", 2, "dsn", "not a valid libpq connection string" },
	{ "dsn_unknown_keyword", "[node.a]\nhost=x\ndsn=hots=a\n", 3, "dsn", "invalid connection option" },
	{ "dsn_unterminated_quote", "[node.a]\ndsn=host='a\n", 2, "dsn", "unterminated quoted string" },
	{ "dsn_bad_uri", "[node.a]\ndsn=postgresql://[::1/db\n", 2, "dsn", "not a valid libpq" },
	{ "dsn_uri_port_big", "[node.a]\ndsn=postgres://u@h:99999/db\n", 2, "dsn",
	  "invalid port '99999' in the dsn" },
	{ "dsn_port_junk", "[node.a]\ndsn=host=h port=54x2\n", 2, "dsn", "invalid port '54x2'" },
	{ "dsn_host_bad", "[node.a]\ndsn=host=db/1\n", 2, "dsn", "invalid host 'db/1' in the dsn" },
	{ "dsn_uri_host_bad", "[node.a]\ndsn=postgres://u@h%20x/db\n", 2, "dsn", "invalid host" },
	{ "dsn_hostaddr_bad", "[node.a]\ndsn=hostaddr=db1\n", 2, "dsn", "invalid hostaddr 'db1'" },
	{ "host_bad", PG "[node.a]\nhost=a b\n", 4, "host", "invalid host 'a b'" },
	{ "hostaddr_bad", PG "[node.a]\nhostaddr=10.0.0.300\n", 4, "hostaddr", "invalid hostaddr" },
};

static void run_error_case(void **state)
{
	const struct error_case *c = *state;
	struct loaded l;
	char where[96];

	load_text(c->text, &l);
	if (l.rc != -1)
		fail_msg("%s: config_load accepted the file", c->name);
	if (l.err.line != c->line)
		fail_msg("%s: line %d, expected %d (%s)", c->name, l.err.line, c->line, l.formatted);
	if (strcmp(l.err.key, c->key) != 0)
		fail_msg("%s: key '%s', expected '%s' (%s)", c->name, l.err.key, c->key, l.formatted);
	if (!strstr(l.err.message, c->message))
		fail_msg("%s: message lacks \"%s\": %s", c->name, c->message, l.formatted);

	/* "FILE:LINE: key 'KEY': MESSAGE", parts omitted when unknown */
	assert_string_equal(l.err.file, l.path);
	if (c->line > 0)
		snprintf(where, sizeof(where), "%s:%d: ", l.path, c->line);
	else
		snprintf(where, sizeof(where), "%s: ", l.path);
	if (strncmp(l.formatted, where, strlen(where)) != 0)
		fail_msg("%s: formatted '%s' does not start with '%s'", c->name, l.formatted, where);
	if (c->key[0]) {
		snprintf(where, sizeof(where), "key '%s': ", c->key);
		assert_non_null(strstr(l.formatted, where));
	} else {
		assert_null(strstr(l.formatted, "key '"));
	}
	assert_non_null(strstr(l.formatted, l.err.message));

	/* a failed load leaves nothing behind */
	assert_null(l.cfg.nodes);
	assert_int_equal(l.cfg.n_nodes, 0);
	assert_null(l.cfg.path);
	config_free(&l.cfg);
}

static void test_missing_file(void **state)
{
	struct agent_config cfg;
	struct config_error err;
	char formatted[512];
	const char *path = "/nonexistent/pgbdr-agent/database.ini";

	(void)state;
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_string_equal(err.file, path);
	assert_int_equal(err.line, 0);
	assert_string_equal(err.key, "");
	assert_non_null(strstr(err.message, "cannot open"));
	assert_non_null(strstr(err.message, "No such file"));
	config_error_format(&err, formatted, sizeof(formatted));
	assert_true(strncmp(formatted, "/nonexistent/pgbdr-agent/database.ini: cannot open: ",
			    strlen("/nonexistent/pgbdr-agent/database.ini: cannot open: ")) == 0);
	assert_null(cfg.nodes);
	config_free(&cfg);
}

static void test_unreadable_file(void **state)
{
	struct agent_config cfg;
	struct config_error err;

	(void)state;
	/* a directory opens but cannot be read */
	assert_int_equal(config_load("/tmp", &cfg, &err), -1);
	assert_string_equal(err.file, "/tmp");
	assert_true(err.message[0] != '\0');
	config_free(&cfg);
}

/* Inputs whose errors sit right next to a password. */
static const char *const secret_inputs[] = {
	"[node.a]\ndsn=host=a password=" SECRET " junk\n",
	"[node.a]\ndsn=host=a " SECRET "\n",
	"[node.a]\ndsn=password=" SECRET " hots=x\n",
	"[node.a]\ndsn=host=a password='" SECRET "\n",
	"[node.a]\ndsn=postgres://u:" SECRET "%zz@h/db\n",
	"[node.a]\ndsn=postgresql://u:" SECRET "@[::1/db\n",
	"[node.a]\ndsn=postgresql://u@h/db?password=" SECRET "&x\n",
	"[node.a]\ndsn=postgresql://u@h/db?password=" SECRET "%00\n",
	"[node.a]\ndsn=" SECRET "\n",
	"[postgresql]\npassword=" SECRET "\npassword=" SECRET "2\n",
	"[postgresql]\nsslpassword=" SECRET "\nsslpassword=" SECRET "2\n",
	"[postgresql]\ndsn=password=" SECRET "\ndsn=password=" SECRET "\n",
	"[postgresql]\n[agent]\npassword=" SECRET "\n",
	"[postgresql]\n[policy]\npassword=" SECRET "\n",
	"password=" SECRET "\n[postgresql]\n",
	"[postgresql]\npassword " SECRET "\n",
	"[postgresql]\npasword=" SECRET "\n",
	"[postgresql]\npassword=" SECRET
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nhost=a\nhost=b\n",
	"[node.a]\ndsn=postgres://u:" SECRET "@h:99999/db\n",
	"[node.a]\ndsn=host=a,b/c password=" SECRET "\n",
	"[agent]\npassword=" SECRET "\n",
	"[node.a]\npassword=" SECRET "\n[node.a]\n",
	"[node.a]\npassword=" SECRET "\nflavor=nope\n",
};

static void test_password_never_in_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(secret_inputs) / sizeof(secret_inputs[0]); i++) {
		struct loaded l;

		load_text(secret_inputs[i], &l);
		if (l.rc != -1)
			fail_msg("input %zu was accepted", i);
		if (strstr(l.formatted, SECRET) || strstr(l.err.message, SECRET) ||
		    strstr(l.err.key, SECRET))
			fail_msg("input %zu leaks the password: %s", i, l.formatted);
		config_free(&l.cfg);
	}
}

/* libpq's own words survive the redaction, so the error stays useful. */
static void test_dsn_error_keeps_libpq_wording(void **state)
{
	struct loaded l;

	(void)state;
	load_text("[node.a]\ndsn=host=a password=" SECRET " junk\n", &l);
	assert_int_equal(l.rc, -1);
	assert_non_null(strstr(l.err.message, "missing \"=\" after \"...\""));
	assert_null(strstr(l.err.message, "\n"));
	config_free(&l.cfg);
}

static void test_error_format(void **state)
{
	struct config_error err;
	char buf[512];
	char small[12];

	(void)state;
	memset(&err, 0, sizeof(err));
	snprintf(err.file, sizeof(err.file), "/etc/a.ini");
	err.line = 7;
	snprintf(err.key, sizeof(err.key), "interval");
	snprintf(err.message, sizeof(err.message), "bad");
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "/etc/a.ini:7: key 'interval': bad");

	err.key[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "/etc/a.ini:7: bad");

	err.line = 0;
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "/etc/a.ini: bad");

	snprintf(err.key, sizeof(err.key), "k");
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "/etc/a.ini: key 'k': bad");

	err.file[0] = '\0';
	err.line = 3;
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "line 3: key 'k': bad");

	err.line = 0;
	err.key[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "bad");

	snprintf(err.file, sizeof(err.file), "/etc/pgbdr-agent/pgbdr-agent.ini");
	err.line = 12345;
	config_error_format(&err, small, sizeof(small));
	assert_string_equal(small, "/etc/pgbdr-");
}

/* More nodes than the agent's tables hold: rejected, never cut. */
static void test_too_many_nodes(void **state)
{
	char text[MAX_NODES * 32];
	size_t used = 0;
	struct loaded l;

	(void)state;
	for (int i = 0; i < MAX_NODE_SECTIONS; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "[node.n%d]\nhost=h\n", i);
	load_ok(text, &l);
	assert_int_equal(l.cfg.n_nodes, MAX_NODE_SECTIONS);
	config_free(&l.cfg);
	snprintf(text + used, sizeof(text) - used, "[node.one_more]\nhost=h\n");
	load_text(text, &l);
	assert_int_equal(l.rc, -1);
	assert_non_null(strstr(l.formatted, "too many [node.NAME] sections: at most 1024"));
}

static void test_peer_lag(void **state)
{
	struct loaded l;

	(void)state;
	load_ok(PG "[agent]\npeer_lag = OFF\n", &l);
	assert_int_equal(l.cfg.peer_lag, PEER_LAG_OFF);
	config_free(&l.cfg);
	load_ok(PG "[agent]\npeer_lag = catalog\n", &l);
	assert_int_equal(l.cfg.peer_lag, PEER_LAG_CATALOG);
	config_free(&l.cfg);
}

static void test_config_free_zeroed(void **state)
{
	struct agent_config cfg;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	config_free(&cfg);
	config_free(NULL);
}

/* ---- the shipped example ---------------------------------------------- */

static const char *const documented_keys[] = {
	"http_listen", "agent_listen", "spoe_listen", "allow_from", "interval",
	"timeout", "stale_after", "rise", "fall", "maintenance_file", "log_level",
	"log_destination",
	"user", "allow_root", "agent_send_wait", "leader_return_delay", "leader_handover",
	"leader_without_peers", "peer_lag",
	"spoe_max_frame_size", "spoe_max_fragmented", "max_clients",
	"client_timeout", "drain_lag", "max_lag", "max_lag_time", "min_weight",
	"read_only",
};

static char *read_example(void)
{
	const char *dir = getenv("PGBDR_TEST_DATA");
	char path[1024];
	FILE *f;
	char *text;
	long n;

	snprintf(path, sizeof(path), "%s/../../haproxy-examples/pgbdr-agent.ini",
		 dir ? dir : "tests/unit");
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return text;
}

static void test_example_loads(void **state)
{
	char *text = read_example();
	struct loaded l;

	(void)state;
	load_ok(text, &l);
	assert_int_equal(l.cfg.n_nodes, 1);
	assert_true(l.cfg.nodes[0].classic);
	assert_default_agent(&l.cfg);
	config_free(&l.cfg);
	free(text);
}

/*
 * In [agent] and [policy], "#key = value" lines show the defaults.
 * Uncommented, they must load and change nothing, and there must be
 * one for every key.
 */
static void test_example_documents_defaults(void **state)
{
	char *text = read_example();
	char *out = calloc(1, strlen(text) + 2);
	char *o = out;
	bool in_settings = false;
	int uncommented = 0;
	struct loaded l;

	(void)state;
	assert_non_null(out);
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (line[0] == '[')
			in_settings = strcmp(line, "[agent]") == 0 || strcmp(line, "[policy]") == 0;
		if (in_settings && line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' &&
		    strstr(line, " =")) {
			line++;
			uncommented++;
		}
		o += sprintf(o, "%s\n", line);
	}
	assert_int_equal(uncommented, (int)(sizeof(documented_keys) / sizeof(documented_keys[0])));
	for (size_t i = 0; i < sizeof(documented_keys) / sizeof(documented_keys[0]); i++) {
		char needle[64];

		snprintf(needle, sizeof(needle), "\n%s =", documented_keys[i]);
		if (!strstr(out, needle))
			fail_msg("the example does not document %s", documented_keys[i]);
	}
	load_ok(out, &l);
	assert_default_agent(&l.cfg);
	config_free(&l.cfg);
	free(out);
	free(text);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_classic_database_ini),
		cmocka_unit_test(test_classic_indented_crlf),
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_dsn_and_overrides),
		cmocka_unit_test(test_application_name),
		cmocka_unit_test(test_node_order_and_empty_sections),
		cmocka_unit_test(test_many_nodes),
		cmocka_unit_test(test_syntax_niceties),
		cmocka_unit_test(test_long_dsn_line),
		cmocka_unit_test(test_huge_line_and_file),
		cmocka_unit_test(test_include),
		cmocka_unit_test(test_include_errors),
		cmocka_unit_test(test_every_error_reported),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_not_regular_files),
		cmocka_unit_test(test_secret_warnings),
		cmocka_unit_test(test_stale_after_and_lag_limits),
		cmocka_unit_test(test_boundaries_accepted),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_unreadable_file),
		cmocka_unit_test(test_password_never_in_errors),
		cmocka_unit_test(test_dsn_error_keeps_libpq_wording),
		cmocka_unit_test(test_error_format),
		cmocka_unit_test(test_too_many_nodes),
		cmocka_unit_test(test_peer_lag),
		cmocka_unit_test(test_config_free_zeroed),
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_example_documents_defaults),
	};
	const size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
	const size_t n_errors = sizeof(error_cases) / sizeof(error_cases[0]);
	struct CMUnitTest *tests = calloc(n_fixed + n_errors, sizeof(*tests));
	int rc;

	if (!tests)
		return 1;
	memcpy(tests, fixed, sizeof(fixed));
	/* one named test per error case, so a failure says which */
	for (size_t i = 0; i < n_errors; i++) {
		tests[n_fixed + i].name = error_cases[i].name;
		tests[n_fixed + i].test_func = run_error_case;
		tests[n_fixed + i].initial_state = &error_cases[i];
	}
	rc = _cmocka_run_group_tests("test_config", tests, n_fixed + n_errors, NULL, NULL);
	free(tests);
	return rc;
}
