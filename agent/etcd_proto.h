/*
 * The etcd v3 JSON gateway's wire format, without I/O: request bodies
 * for the leader lease (grant, keepalive, revoke, range, the campaign
 * transaction) and strict parsers for the replies. Keys and values
 * travel base64-encoded. Replies are foreign input: every parser
 * bounds depth and size and turns anything unexpected into an error.
 */
#ifndef PGBDR_ETCD_PROTO_H
#define PGBDR_ETCD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Longer replies are refused: ours are a few hundred bytes. */
#define ETCD_REPLY_MAX 65536
#define ETCD_BODY_MAX 1024

/* Request bodies; each returns 0, or -1 when buf is too small. */
int etcd_body_grant(char *buf, size_t len, int64_t ttl_s);
int etcd_body_lease(char *buf, size_t len, int64_t lease); /* keepalive, revoke */
int etcd_body_range(char *buf, size_t len, const char *key);
/* Put key = value under lease, only if the key does not exist. */
int etcd_body_campaign(char *buf, size_t len, const char *key, const char *value,
		       int64_t lease);

/* The leader key as a range reply shows it. */
struct etcd_kv {
	bool present;
	bool valid_name;              /* the value is a node name */
	char value[NODE_NAME_MAX];    /* "" unless valid_name */
	int64_t lease;
	int64_t create_revision;
};

/* Each returns 0, or -1 with err filled (one line, bounded). */
int etcd_parse_grant(const char *body, size_t len, int64_t *lease, int64_t *ttl_s,
		     char *err, size_t errlen);
/* *ttl_s is 0 when the lease is gone. */
int etcd_parse_keepalive(const char *body, size_t len, int64_t *ttl_s,
			 char *err, size_t errlen);
int etcd_parse_range(const char *body, size_t len, struct etcd_kv *kv,
		     char *err, size_t errlen);
int etcd_parse_txn(const char *body, size_t len, bool *succeeded, char *err, size_t errlen);
/* Any reply that only needs to be well-formed JSON (revoke). */
int etcd_parse_ok(const char *body, size_t len, char *err, size_t errlen);

#endif
