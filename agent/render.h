/*
 * Renderings of the cached status for people and programs: the
 * one-line check body, the /status JSON and the --once table. They
 * read the node table and write into an evbuffer; no I/O.
 */
#ifndef PGBDR_RENDER_H
#define PGBDR_RENDER_H

#include "agent.h"
#include "answer.h"

struct evbuffer;

/* "ready node1 weight=100% lag=0B lag_time=0.0s flavor=bdr: reason\n" */
void render_status_line(const struct node *n, struct evbuffer *out);

/*
 * The line for an answer about node status st: the answer's state
 * (down or draining when it fails), weight and reason, the node's lag
 * and flavor, and " duty=NAME" for any duty but the classic one:
 * "down node2 weight=0% lag=40MB flavor=bdr duty=read: lag 40MB > 16MB\n"
 */
void render_answer_line(const struct answer *ans, const struct node_status *st,
			struct evbuffer *out);

/* The /status document (see README "/status"). */
void render_status_json(const struct agent *a, struct evbuffer *out);

/*
 * The /compact document, for pollers without a JSON parser (the HAProxy
 * Lua script): one "key value..." record per line, see render.c.
 */
void render_status_compact(const struct agent *a, struct evbuffer *out);

/* The --once table. */
void render_status_table(const struct agent *a, struct evbuffer *out);

/* A JSON string literal, escaped, with quotes. */
void render_json_string(struct evbuffer *out, const char *s);

#endif
