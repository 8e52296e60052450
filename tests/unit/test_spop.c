/*
 * Unit tests for the SPOP codec: byte vectors from the protocol
 * description, frames as HAProxy 2.6 sends them, and hostile input
 * (truncation at every offset, garbage) that must fail cleanly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "spop.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Byte vectors are written as string literals for readability. */
#define LIT_LEN(s) (sizeof(s) - 1)

/* ---- helpers --------------------------------------------------------- */

/*
 * Build a frame the way HAProxy would, independently of the builder
 * under test (only the separately tested varint encoder is shared).
 */
static size_t make_frame(uint8_t *out, size_t cap, uint8_t type,
			 uint32_t flags, uint64_t sid, uint64_t fid,
			 const void *payload, size_t plen)
{
	size_t n = 4;

	out[n++] = type;
	out[n++] = (uint8_t)(flags >> 24);
	out[n++] = (uint8_t)(flags >> 16);
	out[n++] = (uint8_t)(flags >> 8);
	out[n++] = (uint8_t)flags;
	n += spop_varint_encode(sid, out + n, cap - n);
	n += spop_varint_encode(fid, out + n, cap - n);
	assert_true(n + plen <= cap);
	if (plen > 0)
		memcpy(out + n, payload, plen);
	n += plen;
	out[0] = (uint8_t)((n - 4) >> 24);
	out[1] = (uint8_t)((n - 4) >> 16);
	out[2] = (uint8_t)((n - 4) >> 8);
	out[3] = (uint8_t)(n - 4);
	return n;
}

static void patch_len(uint8_t *frame, size_t total)
{
	uint32_t n = (uint32_t)(total - 4);

	frame[0] = (uint8_t)(n >> 24);
	frame[1] = (uint8_t)(n >> 16);
	frame[2] = (uint8_t)(n >> 8);
	frame[3] = (uint8_t)n;
}

/* Walk a whole NOTIFY payload, counting messages and args. */
static enum spop_status walk_notify(const uint8_t *p, size_t len,
				    int *n_msgs, int *n_args)
{
	struct spop_notify_iter it;
	struct spop_message msg;
	struct spop_arg arg;

	*n_msgs = 0;
	*n_args = 0;
	spop_notify_iter_init(&it, p, len);
	while (spop_notify_next(&it, &msg)) {
		(*n_msgs)++;
		while (spop_message_next_arg(&msg, &arg))
			(*n_args)++;
	}
	return it.status;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* ---- varints ------------------------------------------------------------- */

struct varint_vector {
	uint64_t value;
	const char *bytes;
	size_t len;
};

#define VV(v, b) { (v), (b), LIT_LEN(b) }

static const struct varint_vector varint_vectors[] = {
	VV(0, "\x00"),
	VV(1, "\x01"),
	VV(239, "\xef"),
	VV(240, "\xf0\x00"),
	VV(2287, "\xff\x7f"),
	VV(2288, "\xf0\x80\x00"),
	VV(16380, "\xfc\xf0\x06"),
	VV(264431, "\xff\xff\x7f"),
	VV(264432, "\xf0\x80\x80\x00"),
	VV(33818863, "\xff\xff\xff\x7f"),
	VV(33818864, "\xf0\x80\x80\x80\x00"),
	VV(4328786159ULL, "\xff\xff\xff\xff\x7f"),
	VV(4328786160ULL, "\xf0\x80\x80\x80\x80\x00"),
	VV(554084600047ULL, "\xff\xff\xff\xff\xff\x7f"),
	VV(554084600048ULL, "\xf0\x80\x80\x80\x80\x80\x00"),
	VV(70922828777711ULL, "\xff\xff\xff\xff\xff\xff\x7f"),
	VV(70922828777712ULL, "\xf0\x80\x80\x80\x80\x80\x80\x00"),
	VV(9078122083518703ULL, "\xff\xff\xff\xff\xff\xff\xff\x7f"),
	VV(9078122083518704ULL, "\xf0\x80\x80\x80\x80\x80\x80\x80\x00"),
	VV(1161999626690365679ULL, "\xff\xff\xff\xff\xff\xff\xff\xff\x7f"),
	VV(1161999626690365680ULL,
	   "\xf0\x80\x80\x80\x80\x80\x80\x80\x80\x00"),
	VV(UINT64_MAX - 1, "\xfe\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e"),
	VV(UINT64_MAX, "\xff\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e"),
};

static void test_varint_vectors(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(varint_vectors); i++) {
		const struct varint_vector *vv = &varint_vectors[i];
		uint8_t buf[16];
		uint64_t back = 0;

		assert_int_equal(spop_varint_size(vv->value), vv->len);
		assert_int_equal(spop_varint_encode(vv->value, buf, sizeof(buf)),
				 vv->len);
		assert_memory_equal(buf, vv->bytes, vv->len);
		assert_int_equal(spop_varint_decode((const uint8_t *)vv->bytes,
						    vv->len, &back), vv->len);
		assert_true(back == vv->value);
	}
}

static void test_varint_16380(void **state)
{
	uint8_t buf[4] = { 0 };
	uint64_t v = 0;

	assert_int_equal(spop_varint_encode(16380, buf, sizeof(buf)), 3);
	assert_int_equal(buf[0], 0xfc);
	assert_int_equal(buf[1], 0xf0);
	assert_int_equal(buf[2], 0x06);
	/* Trailing bytes belong to whatever follows. */
	buf[3] = 0x42;
	assert_int_equal(spop_varint_decode(buf, 4, &v), 3);
	assert_int_equal(v, 16380);
}

static void test_varint_roundtrip_powers(void **state)
{
	for (int bit = 0; bit < 64; bit++) {
		uint64_t base = (uint64_t)1 << bit;
		uint64_t cands[3] = { base - 1, base, base + 1 };

		for (int j = 0; j < 3; j++) {
			uint8_t buf[SPOP_VARINT_MAX];
			uint64_t back = 0;
			size_t n = spop_varint_encode(cands[j], buf, sizeof(buf));

			assert_true(n >= 1 && n <= SPOP_VARINT_MAX);
			assert_int_equal(spop_varint_decode(buf, n, &back), n);
			assert_true(back == cands[j]);
		}
	}
}

static void test_varint_encode_too_small(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(varint_vectors); i++) {
		uint8_t buf[16];

		memset(buf, 0xAA, sizeof(buf));
		assert_int_equal(spop_varint_encode(varint_vectors[i].value,
						    buf, varint_vectors[i].len - 1), 0);
		for (size_t j = 0; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0xAA);
	}
}

static void test_varint_decode_truncated(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(varint_vectors); i++) {
		const struct varint_vector *vv = &varint_vectors[i];
		uint64_t v = 12345;

		for (size_t k = 0; k < vv->len; k++)
			assert_int_equal(spop_varint_decode(
				(const uint8_t *)vv->bytes, k, &v), 0);
		assert_int_equal(v, 12345);
	}
}

static void test_varint_decode_overlong_and_overflow(void **state)
{
	static const uint8_t eleven[11] = {
		0xf0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
	};
	static const uint8_t all_cont[16] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	/* Ten bytes whose sum exceeds UINT64_MAX. */
	static const uint8_t over1[10] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0e,
	};
	static const uint8_t over2[10] = {
		0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f,
	};
	static const uint8_t over3[10] = {
		0xf0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10,
	};
	uint64_t v = 7;

	assert_int_equal(spop_varint_decode(eleven, sizeof(eleven), &v), 0);
	assert_int_equal(spop_varint_decode(all_cont, sizeof(all_cont), &v), 0);
	assert_int_equal(spop_varint_decode(all_cont, 10, &v), 0);
	assert_int_equal(spop_varint_decode(over1, sizeof(over1), &v), 0);
	assert_int_equal(spop_varint_decode(over2, sizeof(over2), &v), 0);
	assert_int_equal(spop_varint_decode(over3, sizeof(over3), &v), 0);
	assert_int_equal(v, 7);
}

/* ---- typed data ------------------------------------------------------ */

static void test_value_bool(void **state)
{
	struct spop_value t = spop_bool(true), f = spop_bool(false), out;
	uint8_t buf[2];

	assert_int_equal(spop_value_encode(&t, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 0x11);
	assert_int_equal(spop_value_encode(&f, buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 0x01);

	assert_int_equal(spop_value_decode((const uint8_t *)"\x11", 1, &out), 1);
	assert_int_equal(out.type, SPOP_T_BOOL);
	assert_true(out.u.b);
	assert_int_equal(spop_value_decode((const uint8_t *)"\x01", 1, &out), 1);
	assert_int_equal(out.type, SPOP_T_BOOL);
	assert_false(out.u.b);
}

static void test_value_negative_int64(void **state)
{
	static const char minus_one[] =
		"\x04\xff\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e";
	struct spop_value v = spop_int64(-1), out;
	uint8_t buf[16];

	assert_int_equal(spop_value_encode(&v, buf, sizeof(buf)), 11);
	assert_memory_equal(buf, minus_one, 11);
	assert_int_equal(spop_value_decode(buf, 11, &out), 11);
	assert_int_equal(out.type, SPOP_T_INT64);
	assert_true(out.u.i64 == -1);

	v = spop_int64(INT64_MIN);
	assert_int_equal(spop_value_encode(&v, buf, sizeof(buf)), 11);
	assert_int_equal(spop_value_decode(buf, 11, &out), 11);
	assert_true(out.u.i64 == INT64_MIN);
}

static void test_value_integers(void **state)
{
	struct spop_value out, v;
	uint8_t buf[16];
	size_t n;

	/* INT32 is sign-extended on the wire, as HAProxy reads it back. */
	v = spop_int32(-2);
	n = spop_value_encode(&v, buf, sizeof(buf));
	assert_int_equal(n, 11);
	assert_memory_equal(buf, "\x02\xfe\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e", 11);
	assert_int_equal(spop_value_decode(buf, n, &out), n);
	assert_int_equal(out.type, SPOP_T_INT32);
	assert_int_equal(out.u.i32, -2);

	v = spop_uint32(UINT32_MAX);
	n = spop_value_encode(&v, buf, sizeof(buf));
	assert_int_equal(spop_value_decode(buf, n, &out), n);
	assert_int_equal(out.type, SPOP_T_UINT32);
	assert_true(out.u.u32 == UINT32_MAX);

	v = spop_uint64(UINT64_MAX);
	n = spop_value_encode(&v, buf, sizeof(buf));
	assert_int_equal(n, 11);
	assert_int_equal(spop_value_decode(buf, n, &out), n);
	assert_true(out.u.u64 == UINT64_MAX);

	/* An INT32 tag carrying 2^31 or a UINT32 carrying 2^32 is bogus. */
	buf[0] = SPOP_T_INT32;
	n = 1 + spop_varint_encode((uint64_t)INT32_MAX + 1, buf + 1, 15);
	assert_int_equal(spop_value_decode(buf, n, &out), 0);
	buf[0] = SPOP_T_UINT32;
	n = 1 + spop_varint_encode((uint64_t)UINT32_MAX + 1, buf + 1, 15);
	assert_int_equal(spop_value_decode(buf, n, &out), 0);
}

static void test_value_string_is_a_view(void **state)
{
	static const uint8_t in[] = "\x08\x05hello\x09\x03\x00\x01\x02";
	struct spop_value out;
	size_t n;

	n = spop_value_decode(in, LIT_LEN(in), &out);
	assert_int_equal(n, 7);
	assert_int_equal(out.type, SPOP_T_STRING);
	assert_ptr_equal(out.u.str.ptr, (const char *)in + 2);
	assert_int_equal(out.u.str.len, 5);

	assert_int_equal(spop_value_decode(in + n, LIT_LEN(in) - n, &out), 5);
	assert_int_equal(out.type, SPOP_T_BINARY);
	assert_ptr_equal(out.u.str.ptr, (const char *)in + n + 2);
	assert_memory_equal(out.u.str.ptr, "\x00\x01\x02", 3);

	/* Length runs past the buffer. */
	assert_int_equal(spop_value_decode(in, 6, &out), 0);
}

static void test_value_null_ip(void **state)
{
	static const uint8_t v4[] = "\x06\x7f\x00\x00\x01";
	static const uint8_t v6[] =
		"\x07\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01";
	struct spop_value out;
	uint8_t buf[32];

	assert_int_equal(spop_value_decode((const uint8_t *)"\x00", 1, &out), 1);
	assert_int_equal(out.type, SPOP_T_NULL);
	assert_int_equal(spop_value_decode(v4, LIT_LEN(v4), &out), 5);
	assert_int_equal(out.type, SPOP_T_IPV4);
	assert_memory_equal(out.u.ipv4, "\x7f\x00\x00\x01", 4);
	assert_int_equal(spop_value_encode(&out, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, v4, 5);
	assert_int_equal(spop_value_decode(v6, LIT_LEN(v6), &out), 17);
	assert_int_equal(out.type, SPOP_T_IPV6);
	assert_int_equal(out.u.ipv6[15], 1);
	assert_int_equal(spop_value_decode(v6, 16, &out), 0);
	assert_int_equal(spop_value_decode(v4, 4, &out), 0);
}

static void test_value_reserved_types(void **state)
{
	struct spop_value out;
	struct spop_value bogus = { .type = (enum spop_type)10 };
	uint8_t buf[8];

	for (uint8_t t = 10; t <= 15; t++) {
		uint8_t in[4] = { t, 0, 0, 0 };

		assert_int_equal(spop_value_decode(in, sizeof(in), &out), 0);
	}
	assert_int_equal(spop_value_decode(buf, 0, &out), 0);
	assert_int_equal(spop_value_encode(&bogus, buf, sizeof(buf)), 0);
}

static void test_value_encode_too_small(void **state)
{
	struct spop_value s = spop_cstring("hello");
	uint8_t buf[16];

	for (size_t cap = 0; cap < 7; cap++) {
		memset(buf, 0xAA, sizeof(buf));
		assert_int_equal(spop_value_encode(&s, buf, cap), 0);
		for (size_t j = cap; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0xAA);
	}
	assert_int_equal(spop_value_encode(&s, buf, 7), 7);
	assert_memory_equal(buf, "\x08\x05hello", 7);

	s = spop_cstring("z");
	assert_int_equal(spop_value_encode(&s, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "\x08\x01z", 3);
	s = spop_cstring("");
	assert_int_equal(spop_value_encode(&s, buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "\x08\x00", 2);
}

/* ---- frame extraction and headers ------------------------------------ */

static void test_frame_extract(void **state)
{
	uint8_t buf[64] = { 0 };
	size_t need = 0;
	enum spop_status st;

	assert_int_equal(spop_frame_extract(buf, 0, 16380, &need, &st),
			 SPOP_EXTRACT_NEED_MORE);
	assert_int_equal(need, 4);
	assert_int_equal(spop_frame_extract(buf, 3, 16380, &need, &st),
			 SPOP_EXTRACT_NEED_MORE);
	assert_int_equal(need, 4);

	buf[3] = 20;
	assert_int_equal(spop_frame_extract(buf, 4, 16380, &need, &st),
			 SPOP_EXTRACT_NEED_MORE);
	assert_int_equal(need, 24);
	assert_int_equal(spop_frame_extract(buf, 23, 16380, &need, &st),
			 SPOP_EXTRACT_NEED_MORE);
	assert_int_equal(spop_frame_extract(buf, 24, 16380, &need, &st),
			 SPOP_EXTRACT_READY);
	assert_int_equal(need, 24);
	assert_int_equal(spop_frame_extract(buf, 64, 16380, &need, &st),
			 SPOP_EXTRACT_READY);
	assert_int_equal(need, 24);

	/* LEN equal to the max is fine; one more is status 3. */
	assert_int_equal(spop_frame_extract(buf, 4, 20, &need, &st),
			 SPOP_EXTRACT_NEED_MORE);
	assert_int_equal(spop_frame_extract(buf, 4, 19, &need, &st),
			 SPOP_EXTRACT_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);

	buf[0] = 0xff;
	assert_int_equal(spop_frame_extract(buf, 4, 16380, &need, &st),
			 SPOP_EXTRACT_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);

	/* Shorter than any frame header. */
	buf[0] = 0;
	buf[3] = 6;
	assert_int_equal(spop_frame_extract(buf, 4, 16380, &need, &st),
			 SPOP_EXTRACT_ERROR);
	assert_int_equal(st, SPOP_STATUS_INVALID);
}

static void test_frame_decode_header_rules(void **state)
{
	uint8_t buf[64];
	struct spop_frame f;
	size_t n;

	n = make_frame(buf, sizeof(buf), SPOP_FRAME_NOTIFY, 0, 300, 2, "ab", 2);
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_OK);
	assert_int_equal(f.type, SPOP_FRAME_NOTIFY);
	assert_int_equal(f.flags, 0);
	assert_int_equal(f.stream_id, 300);
	assert_int_equal(f.frame_id, 2);
	assert_int_equal(f.payload_len, 2);
	assert_ptr_equal(f.payload, buf + n - 2);

	/* LEN disagreeing with the bytes given. */
	assert_int_equal(spop_frame_decode(buf, n - 1, &f), SPOP_STATUS_INVALID);
	buf[3]++;
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_STATUS_INVALID);

	/* HELLO must be unfragmented and use ids 0. */
	n = make_frame(buf, sizeof(buf), SPOP_FRAME_HAPROXY_HELLO, 0, 0, 0, NULL, 0);
	assert_int_equal(spop_frame_decode(buf, n, &f),
			 SPOP_STATUS_FRAG_NOT_SUPPORTED);
	n = make_frame(buf, sizeof(buf), SPOP_FRAME_HAPROXY_DISCONNECT,
		       SPOP_FLAG_FIN, 1, 0, NULL, 0);
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_STATUS_INVALID);
	n = make_frame(buf, sizeof(buf), SPOP_FRAME_HAPROXY_HELLO,
		       SPOP_FLAG_FIN, 0, 0, NULL, 0);
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_OK);

	/* Unknown types may be skipped by the caller, so they decode. */
	n = make_frame(buf, sizeof(buf), 42, SPOP_FLAG_FIN, 1, 1, "x", 1);
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_OK);
	assert_int_equal(f.type, 42);
	assert_string_equal(spop_frame_type_name(42), "unknown");
	assert_string_equal(spop_frame_type_name(SPOP_FRAME_ACK), "ACK");

	/* A stream-id varint cut by the end of the frame. */
	memcpy(buf, "\x00\x00\x00\x07\x03\x00\x00\x00\x01\xf0\x80", 11);
	assert_int_equal(spop_frame_decode(buf, 11, &f), SPOP_STATUS_INVALID);
}

/* ---- HAPROXY-HELLO --------------------------------------------------- */

/* HAPROXY-HELLO as HAProxy 2.6.12 sends it for a regular connection. */
static const uint8_t hello_26[] =
	"\x00\x00\x00\x81"                       /* LEN = 129 */
	"\x01" "\x00\x00\x00\x01" "\x00" "\x00"  /* HELLO, FIN, ids 0 */
	"\x12" "supported-versions" "\x08\x03" "2.0"
	"\x0e" "max-frame-size" "\x03\xfc\xf0\x06"
	"\x0c" "capabilities" "\x08\x10" "pipelining,async"
	"\x09" "engine-id" "\x08\x24" "3b5d9f3e-7a1c-4c2e-9f7d-1a2b3c4d5e6f";

/* ... and for "option spop-check": empty capabilities, no engine-id. */
static const uint8_t hello_check[] =
	"\x00\x00\x00\x4e"                       /* LEN = 78 */
	"\x01" "\x00\x00\x00\x01" "\x00" "\x00"
	"\x12" "supported-versions" "\x08\x03" "2.0"
	"\x0e" "max-frame-size" "\x03\xfc\xf0\x06"
	"\x0c" "capabilities" "\x08\x00"
	"\x0b" "healthcheck" "\x11";

static void decode_hello_frame(const uint8_t *buf, size_t len,
			       struct spop_haproxy_hello *h)
{
	struct spop_frame f;
	size_t need;
	enum spop_status st;

	assert_int_equal(spop_frame_extract(buf, len, 16380, &need, &st),
			 SPOP_EXTRACT_READY);
	assert_int_equal(need, len);
	assert_int_equal(spop_frame_decode(buf, len, &f), SPOP_OK);
	assert_int_equal(f.type, SPOP_FRAME_HAPROXY_HELLO);
	assert_int_equal(spop_decode_haproxy_hello(f.payload, f.payload_len, h),
			 SPOP_OK);
}

static void test_hello_haproxy_26(void **state)
{
	struct spop_haproxy_hello h;

	decode_hello_frame(hello_26, LIT_LEN(hello_26), &h);
	assert_int_equal(h.present, SPOP_HELLO_HAS_VERSIONS |
			 SPOP_HELLO_HAS_MAX_FRAME_SIZE |
			 SPOP_HELLO_HAS_CAPABILITIES | SPOP_HELLO_HAS_ENGINE_ID);
	assert_true(spop_str_eq(h.supported_versions, "2.0"));
	assert_int_equal(h.max_frame_size, 16380);
	assert_true(spop_str_eq(h.capabilities, "pipelining,async"));
	assert_true(spop_str_eq(h.engine_id,
				"3b5d9f3e-7a1c-4c2e-9f7d-1a2b3c4d5e6f"));
	assert_false(h.healthcheck);
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);
	assert_int_equal(spop_parse_capabilities(h.capabilities),
			 SPOP_CAP_PIPELINING | SPOP_CAP_ASYNC);
}

static void test_hello_healthcheck(void **state)
{
	struct spop_haproxy_hello h;

	decode_hello_frame(hello_check, LIT_LEN(hello_check), &h);
	assert_true(h.healthcheck);
	assert_true(h.present & SPOP_HELLO_HAS_HEALTHCHECK);
	assert_true(h.present & SPOP_HELLO_HAS_CAPABILITIES);
	assert_false(h.present & SPOP_HELLO_HAS_ENGINE_ID);
	assert_int_equal(h.capabilities.len, 0);
	assert_int_equal(spop_parse_capabilities(h.capabilities), 0);
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);
}

static struct spop_haproxy_hello good_hello(void)
{
	struct spop_haproxy_hello h = {
		.present = SPOP_HELLO_HAS_VERSIONS | SPOP_HELLO_HAS_MAX_FRAME_SIZE,
		.supported_versions = SPOP_STR_LIT("2.0"),
		.max_frame_size = 16380,
		.capabilities = SPOP_STR_LIT(""),
		.engine_id = SPOP_STR_LIT(""),
	};
	return h;
}

static void test_hello_validation_codes(void **state)
{
	struct spop_haproxy_hello h;

	h = good_hello();
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);

	h = good_hello();
	h.present &= ~SPOP_HELLO_HAS_VERSIONS;
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_NO_VERSION);

	h = good_hello();
	h.supported_versions = SPOP_STR_LIT("1.0");
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_VERSION);
	h.supported_versions = SPOP_STR_LIT("");
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_VERSION);

	h = good_hello();
	h.present &= ~SPOP_HELLO_HAS_MAX_FRAME_SIZE;
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_NO_FRAME_SIZE);

	h = good_hello();
	h.max_frame_size = 255;
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_FRAME_SIZE);
	h.max_frame_size = 0;
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_FRAME_SIZE);
	h.max_frame_size = (uint64_t)UINT32_MAX + 1;
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_FRAME_SIZE);
	h.max_frame_size = 256;
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);

	/* Missing or empty capabilities are accepted, never status 7. */
	h = good_hello();
	h.present &= ~SPOP_HELLO_HAS_CAPABILITIES;
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);
	h.present |= SPOP_HELLO_HAS_CAPABILITIES;
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);
}

static void test_hello_decoded_value_types(void **state)
{
	struct spop_haproxy_hello h;
	static const uint8_t neg_size[] =
		"\x12" "supported-versions" "\x08\x03" "2.0"
		"\x0e" "max-frame-size" "\x04\xff\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e";
	static const uint8_t u64_size[] =
		"\x0e" "max-frame-size" "\x05\xfc\xf0\x06"
		"\x07" "unknown" "\x09\x02zz"
		"\x12" "supported-versions" "\x08\x08" "1.0, 2.0";
	static const uint8_t int_version[] =
		"\x12" "supported-versions" "\x03\x02"
		"\x0e" "max-frame-size" "\x03\xfc\xf0\x06";
	static const uint8_t bad_caps[] =
		"\x0c" "capabilities" "\x03\x01";
	static const uint8_t bad_hc[] =
		"\x0b" "healthcheck" "\x08\x01" "1";
	static const uint8_t dup_size[] =
		"\x12" "supported-versions" "\x08\x03" "2.0"
		"\x0e" "max-frame-size" "\x03\xfc\xf0\x06"
		"\x0e" "max-frame-size" "\x08\x03" "big";
	static const uint8_t no_version[] =
		"\x0e" "max-frame-size" "\x03\xfc\xf0\x06";

	assert_int_equal(spop_decode_haproxy_hello(neg_size, LIT_LEN(neg_size), &h),
			 SPOP_OK);
	assert_true(h.present & SPOP_HELLO_HAS_MAX_FRAME_SIZE);
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_FRAME_SIZE);

	assert_int_equal(spop_decode_haproxy_hello(u64_size, LIT_LEN(u64_size), &h),
			 SPOP_OK);
	assert_int_equal(h.max_frame_size, 16380);
	assert_int_equal(spop_validate_hello(&h), SPOP_OK);

	/* The last occurrence of a key wins, even when unusable. */
	assert_int_equal(spop_decode_haproxy_hello(dup_size, LIT_LEN(dup_size), &h),
			 SPOP_OK);
	assert_int_equal(h.max_frame_size, 0);
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_FRAME_SIZE);

	assert_int_equal(spop_decode_haproxy_hello(int_version,
						   LIT_LEN(int_version), &h), SPOP_OK);
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_BAD_VERSION);

	assert_int_equal(spop_decode_haproxy_hello(no_version,
						   LIT_LEN(no_version), &h), SPOP_OK);
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_NO_VERSION);

	assert_int_equal(spop_decode_haproxy_hello(bad_caps, LIT_LEN(bad_caps), &h),
			 SPOP_STATUS_INVALID);
	assert_int_equal(spop_decode_haproxy_hello(bad_hc, LIT_LEN(bad_hc), &h),
			 SPOP_STATUS_INVALID);

	/* An empty KV list decodes; validation then names what is missing. */
	assert_int_equal(spop_decode_haproxy_hello(NULL, 0, &h), SPOP_OK);
	assert_int_equal(h.present, 0);
	assert_int_equal(spop_validate_hello(&h), SPOP_STATUS_NO_VERSION);
}

static void test_versions_support_2_0(void **state)
{
	static const char *yes[] = {
		"2.0", "1.0, 2.0", "1.0,2.0", " 2.0 ", "2.0,1.0", "2.1", "\t2.0",
		"3.0, 2.0",
	};
	static const char *no[] = {
		"", "1.0", "1.5, 1.0", "20", "2.", ".0", "2.0x", "12.0", "x2.0",
		"2,0", "3.0", ",", "2.0.1", "99999999999.0",
	};

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		struct spop_str s = { yes[i], strlen(yes[i]) };

		assert_true(spop_versions_support_2_0(s));
	}
	for (size_t i = 0; i < ARRAY_LEN(no); i++) {
		struct spop_str s = { no[i], strlen(no[i]) };

		assert_false(spop_versions_support_2_0(s));
	}
}

static void test_parse_capabilities(void **state)
{
	static const struct {
		const char *in;
		unsigned want;
	} cases[] = {
		{ "", 0 },
		{ "pipelining", SPOP_CAP_PIPELINING },
		{ "pipelining,async", SPOP_CAP_PIPELINING | SPOP_CAP_ASYNC },
		{ " pipelining , async ,fragmentation ",
		  SPOP_CAP_PIPELINING | SPOP_CAP_ASYNC | SPOP_CAP_FRAGMENTATION },
		{ "fragmentation", SPOP_CAP_FRAGMENTATION },
		{ "foo,async,,bar", SPOP_CAP_ASYNC },
		{ "pipeliningx,asyn", 0 },
		{ ",,,", 0 },
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct spop_str s = { cases[i].in, strlen(cases[i].in) };

		assert_int_equal(spop_parse_capabilities(s), cases[i].want);
	}
}

static void test_hello_truncated_every_offset(void **state)
{
	const size_t n = LIT_LEN(hello_26);
	const unsigned full = SPOP_HELLO_HAS_VERSIONS |
		SPOP_HELLO_HAS_MAX_FRAME_SIZE | SPOP_HELLO_HAS_CAPABILITIES |
		SPOP_HELLO_HAS_ENGINE_ID;
	uint8_t buf[sizeof(hello_26)];

	for (size_t k = 0; k < n; k++) {
		struct spop_frame f;
		struct spop_haproxy_hello h;
		size_t need;
		enum spop_status st;

		/* As received: the LEN prefix promises more. */
		assert_int_not_equal(spop_frame_extract(hello_26, k, 16380,
							&need, &st),
				     SPOP_EXTRACT_READY);
		assert_int_not_equal(spop_frame_decode(hello_26, k, &f), SPOP_OK);

		/* As if the sender had lied about LEN: still no full HELLO. */
		memcpy(buf, hello_26, k);
		if (k < 4)
			continue;
		patch_len(buf, k);
		if (spop_frame_decode(buf, k, &f) != SPOP_OK)
			continue;
		st = spop_decode_haproxy_hello(f.payload, f.payload_len, &h);
		if (st == SPOP_OK)
			assert_true(h.present != full);
		else
			assert_int_equal(st, SPOP_STATUS_INVALID);
	}
}

/* ---- HAPROXY-DISCONNECT / AGENT-DISCONNECT --------------------------- */

static void test_decode_haproxy_disconnect(void **state)
{
	static const uint8_t frame[] =
		"\x00\x00\x00\x36"
		"\x02" "\x00\x00\x00\x01" "\x00" "\x00"
		"\x0b" "status-code" "\x03\x02"
		"\x07" "message" "\x08\x12" "a timeout occurred"
		"\x03" "foo" "\x00";
	struct spop_frame f;
	struct spop_disconnect d;

	assert_int_equal(spop_frame_decode(frame, LIT_LEN(frame), &f), SPOP_OK);
	assert_int_equal(f.type, SPOP_FRAME_HAPROXY_DISCONNECT);
	assert_int_equal(spop_decode_disconnect(f.payload, f.payload_len, &d),
			 SPOP_OK);
	assert_true(d.has_status);
	assert_int_equal(d.status_code, SPOP_STATUS_TIMEOUT);
	assert_true(d.has_message);
	assert_true(spop_str_eq(d.message, "a timeout occurred"));

	assert_int_equal(spop_decode_disconnect(
		(const uint8_t *)"\x0b" "status-code" "\x08\x00", 14, &d),
		SPOP_STATUS_INVALID);
	assert_int_equal(spop_decode_disconnect(
		(const uint8_t *)"\x0b" "status-code", 12, &d),
		SPOP_STATUS_INVALID);
	/* A status code wider than UINT32. */
	assert_int_equal(spop_decode_disconnect(
		(const uint8_t *)"\x0b" "status-code" "\x05\xf0\x80\x80\x80\x80\x00",
		19, &d), SPOP_STATUS_INVALID);
	assert_int_equal(spop_decode_disconnect(NULL, 0, &d), SPOP_OK);
	assert_false(d.has_status);
	assert_false(d.has_message);
}

static void test_encode_agent_disconnect_bytes(void **state)
{
	static const uint8_t want[] =
		"\x00\x00\x00\x2f"                       /* LEN = 47 */
		"\x66" "\x00\x00\x00\x01" "\x00" "\x00"  /* 102, FIN, ids 0 */
		"\x0b" "status-code" "\x03\x03"
		"\x07" "message" "\x08\x10" "frame is too big";
	uint8_t buf[128];
	struct spop_frame f;
	struct spop_disconnect d;
	ssize_t n;

	n = spop_encode_agent_disconnect(buf, sizeof(buf), SPOP_STATUS_TOO_BIG,
					 NULL);
	assert_int_equal(n, LIT_LEN(want));
	assert_memory_equal(buf, want, LIT_LEN(want));

	n = spop_encode_agent_disconnect(buf, sizeof(buf), SPOP_STATUS_INVALID,
					 "bad");
	assert_true(n > 0);
	assert_int_equal(spop_frame_decode(buf, (size_t)n, &f), SPOP_OK);
	assert_int_equal(f.type, SPOP_FRAME_AGENT_DISCONNECT);
	assert_int_equal(spop_decode_disconnect(f.payload, f.payload_len, &d),
			 SPOP_OK);
	assert_int_equal(d.status_code, 4);
	assert_true(spop_str_eq(d.message, "bad"));
}

/* ---- AGENT-HELLO ------------------------------------------------------- */

static void test_encode_agent_hello_bytes(void **state)
{
	static const uint8_t want[] =
		"\x00\x00\x00\x40"                       /* LEN = 64 */
		"\x65" "\x00\x00\x00\x01" "\x00" "\x00"  /* 101, FIN, ids 0 */
		"\x07" "version" "\x08\x03" "2.0"
		"\x0e" "max-frame-size" "\x03\xfc\xf0\x06"
		"\x0c" "capabilities" "\x08\x0a" "pipelining";
	uint8_t buf[128];
	ssize_t n;

	n = spop_encode_agent_hello(buf, sizeof(buf), 16380, "pipelining");
	assert_int_equal(n, LIT_LEN(want));
	assert_memory_equal(buf, want, LIT_LEN(want));
}

static void test_encoders_buffer_too_small(void **state)
{
	uint8_t buf[160];
	ssize_t full_hello, full_disc;

	full_hello = spop_encode_agent_hello(buf, sizeof(buf), 16380,
					     "pipelining,async");
	full_disc = spop_encode_agent_disconnect(buf, sizeof(buf),
						 SPOP_STATUS_BAD_VERSION, NULL);
	assert_true(full_hello > 0 && full_disc > 0);

	for (size_t cap = 0; cap < (size_t)full_hello; cap++) {
		memset(buf, 0xAA, sizeof(buf));
		assert_int_equal(spop_encode_agent_hello(buf, cap, 16380,
							 "pipelining,async"), -1);
		for (size_t j = cap; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0xAA);
	}
	assert_int_equal(spop_encode_agent_hello(buf, (size_t)full_hello, 16380,
						 "pipelining,async"), full_hello);

	for (size_t cap = 0; cap < (size_t)full_disc; cap++) {
		memset(buf, 0xAA, sizeof(buf));
		assert_int_equal(spop_encode_agent_disconnect(
			buf, cap, SPOP_STATUS_BAD_VERSION, NULL), -1);
		for (size_t j = cap; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0xAA);
	}
}

/* ---- NOTIFY ---------------------------------------------------------- */

/* Two messages; the second one has unnamed args, as "args src" gives. */
static const uint8_t notify_payload[] =
	"\x0c" "pgbdr-status" "\x01"
		"\x04" "node" "\x08\x03" "db1"
	"\x05" "probe" "\x03"
		"\x00" "\x04\xff\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e"
		"\x00" "\x06\x7f\x00\x00\x01"
		"\x00" "\x00";
#define NOTIFY_FIRST_MSG_LEN 24

static void test_notify_messages(void **state)
{
	uint8_t buf[128];
	struct spop_frame f;
	struct spop_notify_iter it;
	struct spop_message msg;
	struct spop_arg arg;
	size_t n;

	n = make_frame(buf, sizeof(buf), SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN,
		       4660, 1, notify_payload, LIT_LEN(notify_payload));
	assert_int_equal(spop_frame_decode(buf, n, &f), SPOP_OK);
	assert_int_equal(f.stream_id, 4660);
	assert_int_equal(f.frame_id, 1);

	spop_notify_iter_init(&it, f.payload, f.payload_len);
	assert_true(spop_notify_next(&it, &msg));
	assert_true(spop_str_eq(msg.name, "pgbdr-status"));
	assert_int_equal(msg.nb_args, 1);
	assert_true(spop_message_next_arg(&msg, &arg));
	assert_true(spop_str_eq(arg.name, "node"));
	assert_int_equal(arg.value.type, SPOP_T_STRING);
	assert_true(spop_str_eq(arg.value.u.str, "db1"));
	assert_false(spop_message_next_arg(&msg, &arg));

	assert_true(spop_notify_next(&it, &msg));
	assert_true(spop_str_eq(msg.name, "probe"));
	assert_int_equal(msg.nb_args, 3);
	assert_true(spop_message_next_arg(&msg, &arg));
	assert_int_equal(arg.name.len, 0);
	assert_int_equal(arg.value.type, SPOP_T_INT64);
	assert_true(arg.value.u.i64 == -1);
	assert_true(spop_message_next_arg(&msg, &arg));
	assert_int_equal(arg.name.len, 0);
	assert_int_equal(arg.value.type, SPOP_T_IPV4);
	assert_memory_equal(arg.value.u.ipv4, "\x7f\x00\x00\x01", 4);
	assert_true(spop_message_next_arg(&msg, &arg));
	assert_int_equal(arg.value.type, SPOP_T_NULL);
	assert_false(spop_message_next_arg(&msg, &arg));

	assert_false(spop_notify_next(&it, &msg));
	assert_int_equal(it.status, SPOP_OK);
}

static void test_notify_skipping_args(void **state)
{
	struct spop_notify_iter it;
	struct spop_message msg;

	/* A caller that ignores the first message's args still finds the next. */
	spop_notify_iter_init(&it, notify_payload, LIT_LEN(notify_payload));
	assert_true(spop_notify_next(&it, &msg));
	assert_true(spop_notify_next(&it, &msg));
	assert_true(spop_str_eq(msg.name, "probe"));
	assert_false(spop_notify_next(&it, &msg));
	assert_int_equal(it.status, SPOP_OK);
}

static void test_notify_truncated_every_offset(void **state)
{
	uint8_t frame[128], buf[128];
	size_t n;
	int msgs, args;

	n = make_frame(frame, sizeof(frame), SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN,
		       4660, 1, notify_payload, LIT_LEN(notify_payload));
	assert_int_equal(walk_notify(notify_payload, LIT_LEN(notify_payload),
				     &msgs, &args), SPOP_OK);
	assert_int_equal(msgs, 2);
	assert_int_equal(args, 4);

	for (size_t k = 0; k < n; k++) {
		struct spop_frame f;
		size_t need;
		enum spop_status st;

		assert_int_not_equal(spop_frame_extract(frame, k, 16380, &need,
							&st),
				     SPOP_EXTRACT_READY);
		assert_int_not_equal(spop_frame_decode(frame, k, &f), SPOP_OK);

		if (k < 4)
			continue;
		memcpy(buf, frame, k);
		patch_len(buf, k);
		if (spop_frame_decode(buf, k, &f) != SPOP_OK)
			continue;
		st = walk_notify(f.payload, f.payload_len, &msgs, &args);
		if (f.payload_len == 0 || f.payload_len == NOTIFY_FIRST_MSG_LEN) {
			/* Cut exactly between messages: fewer, never all. */
			assert_int_equal(st, SPOP_OK);
			assert_true(msgs < 2);
		} else {
			assert_int_equal(st, SPOP_STATUS_INVALID);
		}
	}
}

static void test_notify_malformed(void **state)
{
	int msgs, args;

	/* Name longer than the payload. */
	assert_int_equal(walk_notify((const uint8_t *)"\xc8" "abc", 4,
				     &msgs, &args), SPOP_STATUS_INVALID);
	/* NB-ARGS promises more args than there are. */
	assert_int_equal(walk_notify((const uint8_t *)"\x01" "m" "\x02"
				     "\x00" "\x00", 5, &msgs, &args),
			 SPOP_STATUS_INVALID);
	/* Reserved data type in an arg. */
	assert_int_equal(walk_notify((const uint8_t *)"\x01" "m" "\x01"
				     "\x00" "\x0a", 5, &msgs, &args),
			 SPOP_STATUS_INVALID);
	assert_int_equal(msgs, 0);
	/* The iterator stays stopped once it hit an error. */
	{
		struct spop_notify_iter it;
		struct spop_message msg;

		/* What follows the bad arg would parse as a message. */
		static const uint8_t in[] =
			"\x01" "m" "\x01" "\x00" "\x0a"
			"\x01" "n" "\x00";

		spop_notify_iter_init(&it, in, LIT_LEN(in));
		assert_false(spop_notify_next(&it, &msg));
		assert_int_equal(it.status, SPOP_STATUS_INVALID);
		assert_false(spop_notify_next(&it, &msg));
		assert_int_equal(it.status, SPOP_STATUS_INVALID);
	}
}

/* ---- ACK ---------------------------------------------------------------- */

static void add_test_actions(struct spop_builder *b)
{
	struct spop_value up = spop_bool(true);
	struct spop_value lag = spop_int64(-1);
	struct spop_value node = spop_cstring("db1");
	struct spop_value w = spop_uint32(300);
	struct spop_value n = spop_int32(-2);

	assert_true(spop_ack_set_var(b, SPOP_SCOPE_TXN, "up", &up));
	assert_true(spop_ack_set_var(b, SPOP_SCOPE_SESS, "lag", &lag));
	assert_true(spop_ack_set_var(b, SPOP_SCOPE_REQ, "node", &node));
	assert_true(spop_ack_set_var(b, SPOP_SCOPE_RES, "w", &w));
	assert_true(spop_ack_set_var(b, SPOP_SCOPE_PROC, "n", &n));
	assert_true(spop_ack_unset_var(b, SPOP_SCOPE_TXN, "old"));
}

static const uint8_t ack_want[] =
	"\x00\x00\x00\x4d"                           /* LEN = 77 */
	"\x67" "\x00\x00\x00\x01" "\xfc\x03" "\x07"  /* ACK, FIN, 300, 7 */
	"\x01\x03\x02" "\x02" "up" "\x11"
	"\x01\x03\x01" "\x03" "lag" "\x04\xff\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e"
	"\x01\x03\x03" "\x04" "node" "\x08\x03" "db1"
	"\x01\x03\x04" "\x01" "w" "\x03\xfc\x03"
	"\x01\x03\x00" "\x01" "n" "\x02\xfe\xf0\xfe\xfe\xfe\xfe\xfe\xfe\xfe\x0e"
	"\x02\x02\x02" "\x03" "old";

static void test_ack_bytes(void **state)
{
	uint8_t buf[128];
	struct spop_builder b;

	spop_builder_init(&b, buf, sizeof(buf));
	assert_true(spop_ack_begin(&b, 300, 7, 16380));
	add_test_actions(&b);
	assert_int_equal(spop_frame_finish(&b), LIT_LEN(ack_want));
	assert_memory_equal(buf, ack_want, LIT_LEN(ack_want));
}

static void test_ack_empty_and_back_to_back(void **state)
{
	static const uint8_t empty_ack[] =
		"\x00\x00\x00\x07" "\x67" "\x00\x00\x00\x01" "\x01" "\x02";
	uint8_t buf[128];
	struct spop_builder b;
	struct spop_value v = spop_bool(false);
	struct spop_frame f;

	spop_builder_init(&b, buf, sizeof(buf));
	assert_true(spop_ack_begin(&b, 1, 2, 16380));
	assert_int_equal(spop_frame_finish(&b), 11);
	assert_memory_equal(buf, empty_ack, 11);

	/* A second frame goes right after the first one. */
	assert_true(spop_ack_begin(&b, 3, 4, 16380));
	assert_true(spop_ack_set_var(&b, SPOP_SCOPE_TXN, "x", &v));
	assert_int_equal(spop_frame_finish(&b), 11 + 6);
	assert_int_equal(b.len, 11 + 17);
	assert_int_equal(spop_frame_decode(buf + 11, 17, &f), SPOP_OK);
	assert_int_equal(f.stream_id, 3);
	assert_int_equal(f.frame_id, 4);
	assert_memory_equal(f.payload, "\x01\x03\x02\x01x\x01", 6);
}

static void test_ack_misuse(void **state)
{
	uint8_t buf[64];
	struct spop_builder b;
	struct spop_value v = spop_bool(true);

	spop_builder_init(&b, buf, sizeof(buf));
	assert_int_equal(spop_frame_finish(&b), -1);
	assert_false(spop_ack_set_var(&b, SPOP_SCOPE_TXN, "x", &v));
	assert_false(spop_put_kv(&b, "k", &v));

	assert_true(spop_ack_begin(&b, 1, 1, 16380));
	assert_false(spop_ack_begin(&b, 2, 2, 16380));
	assert_false(spop_ack_set_var(&b, (enum spop_scope)5, "x", &v));
	assert_false(spop_ack_unset_var(&b, (enum spop_scope)5, "x"));
	assert_false(spop_ack_set_var(&b, SPOP_SCOPE_TXN, NULL, &v));
	assert_int_equal(b.len, 11);

	spop_frame_cancel(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(spop_frame_finish(&b), -1);
}

/*
 * Actions that do not fit leave the frame as it was, so the caller can
 * still send the actions that did.
 */
static void test_ack_incremental_overflow(void **state)
{
	uint8_t buf[64];
	struct spop_builder b;
	struct spop_value v = spop_cstring("0123456789");
	struct spop_frame f;
	ssize_t n;
	int added = 0;

	memset(buf, 0xAA, sizeof(buf));
	spop_builder_init(&b, buf, 50);
	assert_true(spop_ack_begin(&b, 1, 1, 16380));
	while (spop_ack_set_var(&b, SPOP_SCOPE_TXN, "v", &v))
		added++;
	/* Header 11 bytes, each set-var 5 + 12 = 17: two fit in 50. */
	assert_int_equal(added, 2);
	assert_int_equal(b.len, 11 + 2 * 17);
	assert_true(spop_ack_unset_var(&b, SPOP_SCOPE_TXN, "v"));
	assert_false(spop_ack_unset_var(&b, SPOP_SCOPE_TXN, "v"));
	n = spop_frame_finish(&b);
	assert_int_equal(n, 11 + 2 * 17 + 5);
	for (size_t j = 50; j < sizeof(buf); j++)
		assert_int_equal(buf[j], 0xAA);
	assert_int_equal(spop_frame_decode(buf, (size_t)n, &f), SPOP_OK);
	assert_int_equal(f.payload_len, 2 * 17 + 5);

	/*
	 * The negotiated max-frame-size bounds LEN even in a big buffer:
	 * an unset-var (5 bytes) misses by one.
	 */
	spop_builder_init(&b, buf, sizeof(buf));
	assert_true(spop_ack_begin(&b, 1, 1, 7 + 17 + 4));
	assert_true(spop_ack_set_var(&b, SPOP_SCOPE_TXN, "v", &v));
	assert_false(spop_ack_unset_var(&b, SPOP_SCOPE_TXN, "v"));
	assert_int_equal(spop_frame_finish(&b), 4 + 7 + 17);

	/* Not even the header fits. */
	spop_builder_init(&b, buf, 10);
	assert_false(spop_ack_begin(&b, 1, 1, 16380));
	assert_int_equal(b.len, 0);
	assert_int_equal(spop_frame_finish(&b), -1);
	spop_builder_init(&b, buf, 3);
	assert_false(spop_ack_begin(&b, 1, 1, 16380));
}

static void test_ack_every_capacity(void **state)
{
	uint8_t buf[sizeof(ack_want) + 8];

	for (size_t cap = 0; cap < LIT_LEN(ack_want); cap++) {
		struct spop_builder b;
		struct spop_value up = spop_bool(true);
		bool ok;

		memset(buf, 0xAA, sizeof(buf));
		spop_builder_init(&b, buf, cap);
		ok = spop_ack_begin(&b, 300, 7, 16380) &&
		     spop_ack_set_var(&b, SPOP_SCOPE_TXN, "up", &up);
		if (ok) {
			struct spop_frame f;
			ssize_t n = spop_frame_finish(&b);

			/* A shorter but complete, decodable frame. */
			assert_true(n > 0 && (size_t)n <= cap);
			assert_int_equal(spop_frame_decode(buf, (size_t)n, &f),
					 SPOP_OK);
		}
		for (size_t j = cap; j < sizeof(buf); j++)
			assert_int_equal(buf[j], 0xAA);
	}
}

/* ---- fragment reassembly --------------------------------------------- */

static enum spop_reasm_result feed(struct spop_reasm *r, uint8_t type,
				   uint32_t flags, uint64_t sid, uint64_t fid,
				   const void *payload, size_t len,
				   const uint8_t **out, size_t *out_len,
				   enum spop_status *st)
{
	uint8_t frame[256];
	struct spop_frame f;
	size_t n = make_frame(frame, sizeof(frame), type, flags, sid, fid,
			      payload, len);

	assert_int_equal(spop_frame_decode(frame, n, &f), SPOP_OK);
	return spop_reasm_feed(r, &f, out, out_len, st);
}

static void test_reasm_split_everywhere(void **state)
{
	const uint8_t *p = notify_payload;
	const size_t plen = LIT_LEN(notify_payload);
	uint8_t store[128];
	struct spop_reasm r;
	const uint8_t *out;
	size_t out_len;
	enum spop_status st;
	int msgs, args;

	spop_reasm_init(&r, store, sizeof(store));
	/* Three fragments, cut at every pair of points (mid-value too). */
	for (size_t a = 0; a <= plen; a++) {
		for (size_t c = a; c <= plen; c++) {
			assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 9, 3, p, a,
					      &out, &out_len, &st),
					 SPOP_REASM_IN_PROGRESS);
			assert_int_equal(feed(&r, SPOP_FRAME_UNSET, 0, 9, 3, p + a,
					      c - a, &out, &out_len, &st),
					 SPOP_REASM_IN_PROGRESS);
			assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN,
					      9, 3, p + c, plen - c, &out,
					      &out_len, &st),
					 SPOP_REASM_COMPLETE);
			assert_int_equal(st, SPOP_OK);
			assert_int_equal(out_len, plen);
			assert_memory_equal(out, p, plen);
			assert_false(r.active);
		}
	}
	assert_int_equal(walk_notify(out, out_len, &msgs, &args), SPOP_OK);
	assert_int_equal(msgs, 2);
}

static void test_reasm_unfragmented_passthrough(void **state)
{
	uint8_t frame[64];
	struct spop_frame f;
	struct spop_reasm r;
	const uint8_t *out;
	size_t out_len, n;
	enum spop_status st;

	/* Without any reassembly buffer, whole frames still pass. */
	spop_reasm_init(&r, NULL, 0);
	n = make_frame(frame, sizeof(frame), SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN,
		       1, 1, "\x01m\x00", 3);
	assert_int_equal(spop_frame_decode(frame, n, &f), SPOP_OK);
	assert_int_equal(spop_reasm_feed(&r, &f, &out, &out_len, &st),
			 SPOP_REASM_COMPLETE);
	assert_ptr_equal(out, f.payload);
	assert_int_equal(out_len, 3);

	/* ... but a fragment means we never announced fragmentation. */
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "x", 1,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_FRAG_NOT_SUPPORTED);
}

static void test_reasm_interlaced(void **state)
{
	uint8_t store[64];
	struct spop_reasm r;
	const uint8_t *out;
	size_t out_len;
	enum spop_status st;

	spop_reasm_init(&r, store, sizeof(store));
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "ab", 2,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN, 1, 2, "c", 1,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_INTERLACED_FRAMES);
	assert_false(r.active);

	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "ab", 2,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, 0, 2, 1, "c", 1,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_INTERLACED_FRAMES);

	/* A new NOTIFY while one is still being reassembled. */
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "ab", 2,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 5, 5, "c", 1,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_INTERLACED_FRAMES);

	/* A continuation of nothing, or a frame that is no NOTIFY. */
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN, 1, 1, "c", 1,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_INVALID);
	assert_int_equal(feed(&r, SPOP_FRAME_ACK, SPOP_FLAG_FIN, 1, 1, "", 0,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_INVALID);
}

static void test_reasm_over_cap(void **state)
{
	uint8_t store[10];
	struct spop_reasm r;
	const uint8_t *out;
	size_t out_len;
	enum spop_status st;

	spop_reasm_init(&r, store, sizeof(store));
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "abcdef", 6,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN, 1, 1, "ghijk",
			      5, &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);
	assert_false(r.active);

	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "abcdefghijk", 11,
			      &out, &out_len, &st), SPOP_REASM_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);

	/* Exactly the cap is fine. */
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 1, 1, "abcdef", 6,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN, 1, 1, "ghij",
			      4, &out, &out_len, &st), SPOP_REASM_COMPLETE);
	assert_int_equal(out_len, 10);
	assert_memory_equal(out, "abcdefghij", 10);
}

static void test_reasm_abort(void **state)
{
	uint8_t store[64];
	struct spop_reasm r;
	const uint8_t *out;
	size_t out_len;
	enum spop_status st;

	spop_reasm_init(&r, store, sizeof(store));
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 7, 7, "abc", 3,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, 0, 7, 7, "def", 3,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET,
			      SPOP_FLAG_ABORT | SPOP_FLAG_FIN, 7, 7, "", 0,
			      &out, &out_len, &st), SPOP_REASM_ABORTED);
	assert_int_equal(st, SPOP_OK);
	assert_false(r.active);
	assert_int_equal(r.len, 0);

	/* The aborted bytes do not leak into the next message. */
	assert_int_equal(feed(&r, SPOP_FRAME_NOTIFY, 0, 8, 1, "xy", 2,
			      &out, &out_len, &st), SPOP_REASM_IN_PROGRESS);
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET, SPOP_FLAG_FIN, 8, 1, "z", 1,
			      &out, &out_len, &st), SPOP_REASM_COMPLETE);
	assert_int_equal(out_len, 3);
	assert_memory_equal(out, "xyz", 3);

	/* An abort with nothing in progress is simply dropped. */
	assert_int_equal(feed(&r, SPOP_FRAME_UNSET,
			      SPOP_FLAG_ABORT | SPOP_FLAG_FIN, 9, 9, "", 0,
			      &out, &out_len, &st), SPOP_REASM_ABORTED);
}

/* ---- garbage ------------------------------------------------------------- */

static bool status_is_protocol_code(enum spop_status st)
{
	return (st >= SPOP_STATUS_NORMAL && st <= SPOP_STATUS_RES_ALLOC) ||
	       st == SPOP_STATUS_UNKNOWN;
}

static void test_garbage_input(void **state)
{
	uint64_t seed = 0x9E3779B97F4A7C15ULL;
	uint8_t junk[96], frame[128], store[64];
	struct spop_reasm r;

	spop_reasm_init(&r, store, sizeof(store));
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rng_next(&seed) % sizeof(junk));
		struct spop_frame f;
		struct spop_haproxy_hello h;
		struct spop_disconnect d;
		struct spop_value v;
		const uint8_t *out;
		size_t need, out_len, n;
		enum spop_status st;
		int msgs, args;

		for (size_t i = 0; i < len; i++)
			junk[i] = (uint8_t)rng_next(&seed);
		/* Bias towards small length prefixes so frames decode. */
		if (iter & 1) {
			n = make_frame(frame, sizeof(frame),
				       (uint8_t)(rng_next(&seed) % 4),
				       (uint32_t)(rng_next(&seed) % 4), 0, 0,
				       junk, len);
		} else {
			memcpy(frame, junk, len);
			n = len;
		}

		if (spop_frame_extract(frame, n, 16380, &need, &st) ==
		    SPOP_EXTRACT_ERROR)
			assert_true(st == SPOP_STATUS_TOO_BIG ||
				    st == SPOP_STATUS_INVALID);
		st = spop_frame_decode(frame, n, &f);
		assert_true(status_is_protocol_code(st));
		if (st == SPOP_OK) {
			assert_true(f.payload >= frame &&
				    f.payload + f.payload_len == frame + n);
			if (f.type == SPOP_FRAME_NOTIFY ||
			    f.type == SPOP_FRAME_UNSET) {
				enum spop_reasm_result rr =
					spop_reasm_feed(&r, &f, &out, &out_len, &st);

				if (rr == SPOP_REASM_ERROR)
					assert_true(st != SPOP_OK);
				else
					assert_int_equal(st, SPOP_OK);
			}
		}

		st = spop_decode_haproxy_hello(junk, len, &h);
		assert_true(st == SPOP_OK || st == SPOP_STATUS_INVALID);
		if (st == SPOP_OK)
			assert_true(status_is_protocol_code(spop_validate_hello(&h)));
		st = spop_decode_disconnect(junk, len, &d);
		assert_true(st == SPOP_OK || st == SPOP_STATUS_INVALID);
		st = walk_notify(junk, len, &msgs, &args);
		assert_true(st == SPOP_OK || st == SPOP_STATUS_INVALID);
		assert_true((size_t)msgs <= len);
		n = spop_value_decode(junk, len, &v);
		assert_true(n <= len);
	}
}

static void test_known_garbage(void **state)
{
	static const uint8_t ones[16] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	struct spop_haproxy_hello h;
	struct spop_frame f;
	int msgs, args;
	size_t need;
	enum spop_status st;

	assert_int_equal(spop_decode_haproxy_hello(ones, sizeof(ones), &h),
			 SPOP_STATUS_INVALID);
	assert_int_equal(walk_notify(ones, sizeof(ones), &msgs, &args),
			 SPOP_STATUS_INVALID);
	assert_int_equal(spop_frame_decode(ones, sizeof(ones), &f),
			 SPOP_STATUS_INVALID);
	assert_int_equal(spop_frame_extract(ones, sizeof(ones), 16380, &need, &st),
			 SPOP_EXTRACT_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);
	/* An HTTP request sent to the SPOP port. */
	assert_int_equal(spop_frame_extract((const uint8_t *)"GET / HTTP/1.0\r\n",
					    16, 16380, &need, &st),
			 SPOP_EXTRACT_ERROR);
	assert_int_equal(st, SPOP_STATUS_TOO_BIG);
}

/* ---- status text ------------------------------------------------------- */

static void test_status_text(void **state)
{
	static const int codes[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	const char *unknown = spop_status_text(99);

	assert_string_equal(spop_status_text(SPOP_STATUS_TOO_BIG),
			    "frame is too big");
	assert_string_equal(spop_status_text(SPOP_STATUS_NORMAL), "normal");
	for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
		const char *t = spop_status_text(codes[i]);

		assert_true(strlen(t) > 0);
		assert_string_not_equal(t, unknown);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(t, spop_status_text(codes[j]));
	}
	assert_string_equal(spop_status_text(12345), unknown);
	assert_string_equal(spop_status_text(-1), unknown);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint_vectors),
		cmocka_unit_test(test_varint_16380),
		cmocka_unit_test(test_varint_roundtrip_powers),
		cmocka_unit_test(test_varint_encode_too_small),
		cmocka_unit_test(test_varint_decode_truncated),
		cmocka_unit_test(test_varint_decode_overlong_and_overflow),
		cmocka_unit_test(test_value_bool),
		cmocka_unit_test(test_value_negative_int64),
		cmocka_unit_test(test_value_integers),
		cmocka_unit_test(test_value_string_is_a_view),
		cmocka_unit_test(test_value_null_ip),
		cmocka_unit_test(test_value_reserved_types),
		cmocka_unit_test(test_value_encode_too_small),
		cmocka_unit_test(test_frame_extract),
		cmocka_unit_test(test_frame_decode_header_rules),
		cmocka_unit_test(test_hello_haproxy_26),
		cmocka_unit_test(test_hello_healthcheck),
		cmocka_unit_test(test_hello_validation_codes),
		cmocka_unit_test(test_hello_decoded_value_types),
		cmocka_unit_test(test_versions_support_2_0),
		cmocka_unit_test(test_parse_capabilities),
		cmocka_unit_test(test_hello_truncated_every_offset),
		cmocka_unit_test(test_decode_haproxy_disconnect),
		cmocka_unit_test(test_encode_agent_disconnect_bytes),
		cmocka_unit_test(test_encode_agent_hello_bytes),
		cmocka_unit_test(test_encoders_buffer_too_small),
		cmocka_unit_test(test_notify_messages),
		cmocka_unit_test(test_notify_skipping_args),
		cmocka_unit_test(test_notify_truncated_every_offset),
		cmocka_unit_test(test_notify_malformed),
		cmocka_unit_test(test_ack_bytes),
		cmocka_unit_test(test_ack_empty_and_back_to_back),
		cmocka_unit_test(test_ack_misuse),
		cmocka_unit_test(test_ack_incremental_overflow),
		cmocka_unit_test(test_ack_every_capacity),
		cmocka_unit_test(test_reasm_split_everywhere),
		cmocka_unit_test(test_reasm_unfragmented_passthrough),
		cmocka_unit_test(test_reasm_interlaced),
		cmocka_unit_test(test_reasm_over_cap),
		cmocka_unit_test(test_reasm_abort),
		cmocka_unit_test(test_garbage_input),
		cmocka_unit_test(test_known_garbage),
		cmocka_unit_test(test_status_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
