/*
 * libFuzzer harness for the etcd gateway replies (agent/etcd_proto.c):
 * the input is one reply body, handed to every parser as it arrives
 * from the network (not NUL-terminated, any bytes).
 *
 * Checked: no crash, no leak; errors are terminated, printable, one
 * line; a parsed range names either a valid node name or nothing; a
 * grant has a lease and a positive TTL; a keepalive TTL is never
 * negative.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_proto.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static void check_error(int rc, const char *err, size_t len)
{
	if (rc == 0)
		return;
	CHECK(rc == -1);
	CHECK(memchr(err, '\0', len));
	for (const char *p = err; *p; p++)
		CHECK(isprint((unsigned char)*p));
}

static void check_name(const struct etcd_kv *kv)
{
	if (!kv->valid_name) {
		CHECK(kv->value[0] == '\0');
		return;
	}
	CHECK(kv->present && kv->value[0]);
	for (const char *p = kv->value; *p; p++)
		CHECK(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy: ASan catches any read past the reply */
	char *body = malloc(size ? size : 1);
	char err[REASON_MAX];
	struct etcd_kv kv;
	int64_t lease, ttl;
	bool won;
	int rc;

	if (!body)
		return 0;
	memcpy(body, data, size);

	rc = etcd_parse_range(body, size, &kv, err, sizeof(err));
	check_error(rc, err, sizeof(err));
	if (rc == 0)
		check_name(&kv);
	rc = etcd_parse_grant(body, size, &lease, &ttl, err, sizeof(err));
	check_error(rc, err, sizeof(err));
	if (rc == 0)
		CHECK(lease != 0 && ttl > 0);
	rc = etcd_parse_keepalive(body, size, &ttl, err, sizeof(err));
	check_error(rc, err, sizeof(err));
	if (rc == 0)
		CHECK(ttl >= 0);
	rc = etcd_parse_txn(body, size, &won, err, sizeof(err));
	check_error(rc, err, sizeof(err));
	CHECK(rc == 0 || !won);
	check_error(etcd_parse_ok(body, size, err, sizeof(err)), err, sizeof(err));
	free(body);
	return 0;
}
