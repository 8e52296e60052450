/*
 * libFuzzer harness for the probe parsers (agent/probe*.c) and the
 * scrubbing of server text (agent/scrub.c), fed with what a server
 * sends: PostgreSQL v3 backend messages, as tests/integration/fake_pg.py
 * answers in each of its modes (the seed corpus). No server and no
 * connection: a small decoder turns RowDescription and DataRow messages
 * into a PGresult built in memory (PQmakeEmptyPGresult,
 * PQsetResultAttrs, PQsetvalue), and every CommandComplete hands it to
 * the detect parser and to every flavor's parser. ErrorResponse and
 * NoticeResponse text goes through scrub_text() with a secret.
 *
 * Checked: scrubbed text never holds the secret, a control character or
 * invalid UTF-8; every text field of the facts is NUL-terminated within
 * its array.
 */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "scrub.h"
#include "status.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

#define SECRET "S3cret-fuzz"
#define MAX_FIELDS 64
#define MAX_ROWS 256
#define NAME_MAX_LEN 64

struct reader {
	const uint8_t *p;
	size_t left;
};

static bool take(struct reader *r, size_t n, const uint8_t **out)
{
	if (r->left < n)
		return false;
	*out = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

static bool take_u16(struct reader *r, unsigned *v)
{
	const uint8_t *b;

	if (!take(r, 2, &b))
		return false;
	*v = (unsigned)b[0] << 8 | b[1];
	return true;
}

static bool take_i32(struct reader *r, int32_t *v)
{
	const uint8_t *b;

	if (!take(r, 4, &b))
		return false;
	*v = (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
	return true;
}

static bool valid_utf8(const unsigned char *s)
{
	while (*s) {
		size_t n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 ? 2 : (*s & 0xF0) == 0xE0 ? 3 :
			   (*s & 0xF8) == 0xF0 ? 4 : 0;

		if (n == 0 || (n == 1 && (*s < 0x20 || *s == 0x7f)))
			return false;
		for (size_t i = 1; i < n; i++)
			if ((s[i] & 0xC0) != 0x80)
				return false;
		s += n;
	}
	return true;
}

static void check_scrubbed(const char *in, size_t len)
{
	struct secret_list secrets = { 0 };
	char out[REASON_MAX];

	secret_list_add(&secrets, SECRET);
	scrub_text(out, sizeof(out), in, len, &secrets);
	CHECK(strnlen(out, sizeof(out)) < sizeof(out));
	CHECK(!strstr(out, SECRET));
	CHECK(valid_utf8((const unsigned char *)out));
}

/* ErrorResponse / NoticeResponse: fields of a type byte and a C string. */
static void on_error_fields(struct reader *body)
{
	while (body->left > 1) {
		const uint8_t *nul = memchr(body->p + 1, '\0', body->left - 1);
		size_t len = nul ? (size_t)(nul - body->p - 1) : body->left - 1;

		check_scrubbed((const char *)body->p + 1, len);
		body->p += len + 1 + (nul ? 1 : 0);
		body->left -= len + 1 + (nul ? 1 : 0);
	}
}

static PGresult *on_row_description(struct reader *body)
{
	PGresAttDesc attrs[MAX_FIELDS];
	char names[MAX_FIELDS][NAME_MAX_LEN];
	unsigned n;
	PGresult *res;

	if (!take_u16(body, &n) || n > MAX_FIELDS)
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *nul = memchr(body->p, '\0', body->left);
		const uint8_t *rest;
		size_t len;

		if (!nul)
			return NULL;
		len = (size_t)(nul - body->p);
		snprintf(names[i], sizeof(names[i]), "%.*s", (int)len, (const char *)body->p);
		body->p += len + 1;
		body->left -= len + 1;
		if (!take(body, 18, &rest))
			return NULL;
		attrs[i] = (PGresAttDesc){ .name = names[i], .typid = 25, .typlen = -1,
					   .atttypmod = -1 };
	}
	res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	if (res && !PQsetResultAttrs(res, (int)n, n ? attrs : NULL)) {
		PQclear(res);
		return NULL;
	}
	return res;
}

static void on_data_row(PGresult *res, struct reader *body)
{
	int row = PQntuples(res);
	unsigned n;

	if (row >= MAX_ROWS || !take_u16(body, &n) || (int)n != PQnfields(res))
		return;
	for (unsigned c = 0; c < n; c++) {
		int32_t len;
		const uint8_t *value;

		if (!take_i32(body, &len))
			return;
		if (len < 0) {
			PQsetvalue(res, row, (int)c, NULL, -1);
			continue;
		}
		if (!take(body, (size_t)len, &value))
			return;
		PQsetvalue(res, row, (int)c, (char *)value, len);
	}
}

static void check_facts_text(const struct node_facts *f)
{
	CHECK(strnlen(f->error, sizeof(f->error)) < sizeof(f->error));
	CHECK(strnlen(f->problem, sizeof(f->problem)) < sizeof(f->problem));
	CHECK(strnlen(f->impairment, sizeof(f->impairment)) < sizeof(f->impairment));
	CHECK(strnlen(f->catalog_name, sizeof(f->catalog_name)) < sizeof(f->catalog_name));
	CHECK(f->n_peers >= 0 && f->n_peers <= MAX_PEERS);
	for (int i = 0; i < f->n_peers; i++)
		CHECK(strnlen(f->peers[i].name, sizeof(f->peers[i].name)) <
		      sizeof(f->peers[i].name));
}

/* What the poller does with a final result: detect, then every flavor's parse. */
static void parse_everywhere(const PGresult *res)
{
	struct conn_caps caps;
	char err[REASON_MAX];

	/* as a node section, then as the classic section that requires BDR */
	for (int require_bdr = 0; require_bdr < 2; require_bdr++)
		if (probe_detect_parse(res, FLAVOR_AUTO, require_bdr, &caps, err, sizeof(err)) < 0)
			CHECK(strnlen(err, sizeof(err)) < sizeof(err));
	for (int f = FLAVOR_AUTO + 1; f < FLAVOR_COUNT; f++) {
		const struct probe_ops *ops = probe_for_flavor((enum flavor)f);
		struct node_facts facts = { .outcome = PROBE_OK, .flavor = (enum flavor)f };

		if (!ops)
			continue;
		memset(&caps, 0, sizeof(caps));
		caps.flavor = (enum flavor)f;
		caps.server_version = 150000;
		ops->parse(res, &caps, &facts);
		check_facts_text(&facts);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader in = { data, size };
	PGresult *res = NULL;

	while (in.left >= 5) {
		uint8_t type = in.p[0];
		int32_t len;
		struct reader body;
		const uint8_t *b;

		in.p++;
		in.left--;
		if (!take_i32(&in, &len) || len < 4 || !take(&in, (size_t)len - 4, &b))
			break;
		body = (struct reader){ b, (size_t)len - 4 };
		if (type == 'E' || type == 'N') {
			on_error_fields(&body);
		} else if (type == 'T') {
			PQclear(res);
			res = on_row_description(&body);
		} else if (type == 'D' && res) {
			on_data_row(res, &body);
		} else if (type == 'C' && res) {
			parse_everywhere(res);
			PQclear(res);
			res = NULL;
		}
	}
	PQclear(res);
	return 0;
}
