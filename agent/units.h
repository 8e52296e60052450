/*
 * Parsing and printing of the value types that config files and
 * request parameters use: sizes ("16MB"), durations ("1s", "500ms"),
 * booleans, bounded integers, listen addresses and CIDR lists.
 * Pure functions, no allocation except cidr_list_parse.
 */
#ifndef PGBDR_UNITS_H
#define PGBDR_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Sizes use PostgreSQL's convention: 1024-based, units B, kB, MB, GB, TB
 * (case-insensitive, optional space, K/M/G/T and KiB/MiB/... accepted).
 * A bare number is bytes. Returns 0 on success, -1 on a bad value.
 */
int parse_size(const char *s, int64_t *out);

/*
 * Durations: "500ms", "1s", "1.5s", "2min", "1h"; a bare number is
 * seconds, as in the classic checker's habit of plain numbers.
 */
int parse_duration_ms(const char *s, int64_t *out);

int parse_bool(const char *s, bool *out);
int parse_long(const char *s, long min, long max, long *out);

/*
 * "80MB", "1.5GB", "512B": the largest unit in which the value is at
 * least 1, rounded to one decimal (".0" dropped), so values that are
 * not round print approximately: 83886081 gives "80MB".
 */
void format_size(int64_t bytes, char *buf, size_t len);

/* "1.5s", "2min", "100ms": the same rounding, units d, h, min, s, ms. */
void format_duration_ms(int64_t ms, char *buf, size_t len);

struct listen_addr {
	bool enabled;
	char host[256]; /* numeric or name; "" means any */
	int port;
};

/*
 * "0.0.0.0:9200", "[::1]:9201", "*:9200", ":9200" or a bare "9200"
 * (any address); "" or "off" disables.
 */
int parse_listen_addr(const char *s, struct listen_addr *out);

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int prefix;
};

struct cidr_list {
	struct cidr *items; /* owned; free with cidr_list_free */
	int count;          /* 0 = allow everyone */
};

/* Comma or space separated; a bare address is a host route. */
int cidr_list_parse(const char *s, struct cidr_list *out);
void cidr_list_free(struct cidr_list *list);
bool cidr_list_allows(const struct cidr_list *list, const struct sockaddr *sa);

#endif
