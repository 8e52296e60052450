/*
 * libFuzzer harness for the SPOP codec (spoe/spop.c): the path a byte
 * stream from HAProxy takes through agent/spop_server.c, plus
 * round-trip checks of the encoders against the decoders.
 *
 * Input: one option byte, then a stream of frames.
 *   bits 0-1  reassembly cap: 0 (fragmentation not announced), 64, 1024, 65536
 *   bits 2-3  max-frame-size: 256, 1024, 16380, 65535
 *   bits 4-5  how many pieces a complete NOTIFY is re-cut into (1-4)
 *
 * Every frame is copied into a buffer of exactly its size, so that
 * AddressSanitizer sees any read past its end. Any broken invariant
 * aborts: libFuzzer records the input as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spop.h"

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

static const size_t reasm_caps[] = { 0, 64, 1024, 65536 };
static const uint32_t frame_sizes[] = { 256, 1024, 16380, 65535 };

/* The largest frame an encoder writes for us: our biggest max-frame-size. */
#define SCRATCH_CAP (SPOP_FRAME_LEN_SIZE + 65535)
static uint8_t scratch[SCRATCH_CAP];

/* ---- values and varints --------------------------------------------- */

/*
 * decode(bytes) = v  =>  encode(v) = bytes, but for the tag's flag bits,
 * which only BOOL uses: the encoding of every other type is canonical.
 */
static void check_value_roundtrip(const uint8_t *enc, size_t n, const struct spop_value *v)
{
	uint8_t buf[1 + SPOP_VARINT_MAX + 16];
	uint8_t tag = (uint8_t)(enc[0] & 0x0F);
	struct spop_value back;
	size_t m;

	if (v->type == SPOP_T_BOOL)
		tag |= (uint8_t)(enc[0] & 0x10);
	CHECK(spop_value_size(v) == n);
	if (v->type == SPOP_T_STRING || v->type == SPOP_T_BINARY) {
		/* the header only: the bytes are a view of enc itself */
		size_t hdr = n - v->u.str.len;

		CHECK(v->u.str.len <= n);
		CHECK(hdr >= 2 && hdr <= 1 + SPOP_VARINT_MAX);
		CHECK(v->u.str.len == 0 || v->u.str.ptr == (const char *)enc + hdr);
		CHECK(spop_varint_encode(v->u.str.len, buf, sizeof(buf)) == hdr - 1);
		CHECK(memcmp(buf, enc + 1, hdr - 1) == 0);
		return;
	}
	CHECK(n <= sizeof(buf));
	m = spop_value_encode(v, buf, sizeof(buf));
	CHECK(m == n);
	CHECK(buf[0] == tag);
	CHECK(memcmp(buf + 1, enc + 1, n - 1) == 0);
	/* and a cap one byte short writes nothing */
	CHECK(spop_value_encode(v, buf, n - 1) == 0);
	CHECK(spop_value_decode(buf, m, &back) == m);
	CHECK(back.type == v->type);
}

static void check_varints(const uint8_t *data, size_t len)
{
	uint8_t buf[SPOP_VARINT_MAX];
	uint64_t v = 0, w;
	size_t n, m;

	/* decode at the start of the input, re-encode, compare */
	n = spop_varint_decode(data, len, &v);
	CHECK(n <= SPOP_VARINT_MAX && n <= len);
	if (n > 0) {
		CHECK(spop_varint_size(v) == n);
		m = spop_varint_encode(v, buf, sizeof(buf));
		CHECK(m == n && memcmp(buf, data, n) == 0);
		CHECK(spop_varint_encode(v, buf, n - 1) == 0);
	}
	/* encode 64 bits taken from the input, decode, compare */
	if (len >= 8) {
		memcpy(&v, data, 8);
		m = spop_varint_encode(v, buf, sizeof(buf));
		CHECK(m == spop_varint_size(v) && m > 0);
		CHECK(spop_varint_decode(buf, m, &w) == m && w == v);
		/* a truncated encoding never decodes */
		CHECK(spop_varint_decode(buf, m - 1, &w) == 0);
	}
}

/* ---- NOTIFY ----------------------------------------------------------- */

/* A NUL-free, NUL-terminated copy of a view, for the C-string encoders. */
static void cstr_of(struct spop_str s, char *out, size_t outlen)
{
	size_t n = 0;

	for (size_t i = 0; i < s.len && n + 1 < outlen; i++)
		if (s.ptr[i] != '\0')
			out[n++] = s.ptr[i];
	out[n] = '\0';
}

/* Reads back what spop_ack_set_var / unset_var wrote. */
static void check_ack(const uint8_t *frame, size_t len, uint64_t sid, uint64_t fid,
		      uint32_t max_frame_size, unsigned actions)
{
	struct spop_frame f;
	const uint8_t *p, *end;
	unsigned seen = 0;

	CHECK(spop_frame_decode(frame, len, &f) == SPOP_OK);
	CHECK(len - SPOP_FRAME_LEN_SIZE <= max_frame_size);
	CHECK(f.type == SPOP_FRAME_ACK && f.flags == SPOP_FLAG_FIN);
	CHECK(f.stream_id == sid && f.frame_id == fid);
	p = f.payload;
	end = f.payload + f.payload_len;
	while (p < end) {
		uint8_t action;
		uint64_t name_len;
		size_t h, n;

		CHECK(end - p >= 3);
		action = p[0];
		CHECK(action == SPOP_ACTION_SET_VAR || action == SPOP_ACTION_UNSET_VAR);
		CHECK(p[1] == (action == SPOP_ACTION_SET_VAR ? 3 : 2));
		CHECK(p[2] == SPOP_SCOPE_TXN);
		p += 3;
		/* the name: a varint length and bytes, cut at 63 for HAProxy 2.6 */
		h = spop_varint_decode(p, (size_t)(end - p), &name_len);
		CHECK(h > 0);
		CHECK(name_len > 0 && name_len <= 63 && name_len <= (uint64_t)(end - p) - h);
		p += h + (size_t)name_len;
		if (action == SPOP_ACTION_SET_VAR) {
			struct spop_value val;

			n = spop_value_decode(p, (size_t)(end - p), &val);
			CHECK(n > 0);
			check_value_roundtrip(p, n, &val);
			p += n;
		}
		seen++;
	}
	CHECK(p == end);
	CHECK(seen == actions);
}

/*
 * Iterate a NOTIFY payload as answer_notify() does. Every message that
 * spop_notify_next() accepted must yield exactly nb_args args. Args
 * become set-var actions in an ACK, which is then decoded back.
 */
static enum spop_status walk_notify(const uint8_t *payload, size_t len, uint64_t sid,
				    uint64_t fid, uint32_t max_frame_size)
{
	struct spop_notify_iter it;
	struct spop_message msg;
	struct spop_builder b;
	unsigned actions = 0;
	bool full = false;
	ssize_t n;

	spop_builder_init(&b, scratch, SCRATCH_CAP);
	CHECK(spop_ack_begin(&b, sid, fid, max_frame_size));
	spop_notify_iter_init(&it, payload, len);
	while (spop_notify_next(&it, &msg)) {
		struct spop_arg arg;
		unsigned got = 0;

		CHECK(msg.nb_args <= 255 && msg.args_left == msg.nb_args);
		CHECK(msg.name.len <= len);
		while (spop_message_next_arg(&msg, &arg)) {
			const uint8_t *enc;
			size_t vlen;
			struct spop_value again;
			char name[80];

			got++;
			CHECK((const uint8_t *)arg.name.ptr >= payload);
			CHECK((const uint8_t *)arg.name.ptr + arg.name.len <= payload + len);
			/* the value follows the name: find and re-check its encoding */
			enc = (const uint8_t *)arg.name.ptr + arg.name.len;
			CHECK(enc >= payload && enc < payload + len);
			vlen = spop_value_decode(enc, (size_t)(payload + len - enc), &again);
			CHECK(vlen > 0 && again.type == arg.value.type);
			check_value_roundtrip(enc, vlen, &arg.value);
			if (full)
				continue;
			cstr_of(arg.name, name, 64);
			if (!name[0])
				snprintf(name, sizeof(name), "arg");
			if (spop_ack_set_var(&b, SPOP_SCOPE_TXN, name, &arg.value)) {
				actions++;
			} else {
				full = true;
			}
		}
		CHECK(got == msg.nb_args && msg.args_left == 0);
		if (!full && msg.nb_args == 0) {
			char name[80];

			cstr_of(msg.name, name, 64);
			if (name[0] && spop_ack_unset_var(&b, SPOP_SCOPE_TXN, name))
				actions++;
		}
	}
	if (it.status != SPOP_OK) {
		spop_frame_cancel(&b);
		CHECK(b.len == 0 && !b.in_frame);
		return it.status;
	}
	n = spop_frame_finish(&b);
	CHECK(n > 0 && (size_t)n == b.len);
	check_ack(scratch, (size_t)n, sid, fid, max_frame_size, actions);
	return SPOP_OK;
}

/* A frame built by hand: the builder only writes FIN frames. */
static size_t make_frame(uint8_t *buf, size_t cap, uint8_t type, uint32_t flags, uint64_t sid,
			 uint64_t fid, const uint8_t *payload, size_t len)
{
	size_t n = SPOP_FRAME_LEN_SIZE + 5 + spop_varint_size(sid) + spop_varint_size(fid) + len;
	size_t off = SPOP_FRAME_LEN_SIZE;
	uint32_t body = (uint32_t)(n - SPOP_FRAME_LEN_SIZE);

	CHECK(n <= cap);
	buf[0] = (uint8_t)(body >> 24);
	buf[1] = (uint8_t)(body >> 16);
	buf[2] = (uint8_t)(body >> 8);
	buf[3] = (uint8_t)body;
	buf[off++] = type;
	buf[off++] = (uint8_t)(flags >> 24);
	buf[off++] = (uint8_t)(flags >> 16);
	buf[off++] = (uint8_t)(flags >> 8);
	buf[off++] = (uint8_t)flags;
	off += spop_varint_encode(sid, buf + off, cap - off);
	off += spop_varint_encode(fid, buf + off, cap - off);
	if (len)
		memcpy(buf + off, payload, len);
	return off + len;
}

/*
 * Cut a complete NOTIFY payload into pieces (NOTIFY without FIN, then
 * UNSET frames, the last with FIN), feed them through a fresh
 * reassembler, and expect the payload back byte for byte.
 */
static void check_refragment(const uint8_t *payload, size_t len, uint64_t sid, uint64_t fid,
			     unsigned pieces)
{
	size_t cap = len + 1;
	uint8_t *rbuf = malloc(cap);
	size_t fcap = SPOP_FRAME_LEN_SIZE + 5 + 2 * SPOP_VARINT_MAX + len;
	uint8_t *fbuf = malloc(fcap);
	struct spop_reasm r;
	size_t start = 0;

	CHECK(rbuf && fbuf);
	spop_reasm_init(&r, rbuf, cap);
	for (unsigned i = 0; i < pieces; i++) {
		bool last = i + 1 == pieces;
		size_t end = last ? len : (len * (i + 1)) / pieces;
		struct spop_frame f;
		const uint8_t *out;
		size_t out_len, n;
		enum spop_status st;
		enum spop_reasm_result res;

		n = make_frame(fbuf, fcap, i == 0 ? SPOP_FRAME_NOTIFY : SPOP_FRAME_UNSET,
			       last ? SPOP_FLAG_FIN : 0, sid, fid, payload + start, end - start);
		CHECK(spop_frame_decode(fbuf, n, &f) == SPOP_OK);
		CHECK(f.payload_len == end - start);
		res = spop_reasm_feed(&r, &f, &out, &out_len, &st);
		if (!last) {
			CHECK(res == SPOP_REASM_IN_PROGRESS && r.active);
		} else {
			CHECK(res == SPOP_REASM_COMPLETE && st == SPOP_OK && !r.active);
			CHECK(out_len == len);
			CHECK(len == 0 || memcmp(out, payload, len) == 0);
		}
		start = end;
	}
	free(fbuf);
	free(rbuf);
}

/* ---- HELLO and DISCONNECT --------------------------------------------- */

static void on_hello(const struct spop_frame *f, uint32_t our_max)
{
	struct spop_haproxy_hello h;
	enum spop_status st = spop_decode_haproxy_hello(f->payload, f->payload_len, &h);
	struct spop_frame back;
	struct spop_kv_iter it;
	struct spop_str key;
	struct spop_value val;
	unsigned caps, seen = 0;
	uint32_t size;
	ssize_t n;

	if (st != SPOP_OK)
		return;
	CHECK(h.supported_versions.ptr && h.capabilities.ptr && h.engine_id.ptr);
	caps = spop_parse_capabilities(h.capabilities);
	CHECK((caps & ~(SPOP_CAP_PIPELINING | SPOP_CAP_ASYNC | SPOP_CAP_FRAGMENTATION)) == 0);
	(void)spop_versions_support_2_0(h.supported_versions);
	if (spop_validate_hello(&h) != SPOP_OK)
		return;
	CHECK(h.max_frame_size >= SPOP_MIN_FRAME_SIZE && h.max_frame_size <= UINT32_MAX);
	/* as on_haproxy_hello(): negotiate, answer, and read our answer back */
	size = h.max_frame_size < our_max ? (uint32_t)h.max_frame_size : our_max;
	n = spop_encode_agent_hello(scratch, SCRATCH_CAP, size, "pipelining,fragmentation");
	CHECK(n > 0);
	CHECK(spop_frame_decode(scratch, (size_t)n, &back) == SPOP_OK);
	CHECK(back.type == SPOP_FRAME_AGENT_HELLO && back.flags == SPOP_FLAG_FIN);
	spop_kv_iter_init(&it, back.payload, back.payload_len);
	while (spop_kv_next(&it, &key, &val)) {
		if (spop_str_eq(key, "version"))
			CHECK(val.type == SPOP_T_STRING && spop_str_eq(val.u.str, "2.0"));
		else if (spop_str_eq(key, "max-frame-size"))
			CHECK(val.type == SPOP_T_UINT32 && val.u.u32 == size);
		else
			CHECK(spop_str_eq(key, "capabilities") && val.type == SPOP_T_STRING);
		seen++;
	}
	CHECK(it.status == SPOP_OK && seen == 3);
	/* our AGENT-HELLO fits a frame of the size it announces */
	CHECK((size_t)n - SPOP_FRAME_LEN_SIZE <= size);
}

static void on_disconnect(const struct spop_frame *f)
{
	struct spop_disconnect d, back_d;
	struct spop_frame back;
	char message[256];
	ssize_t n;

	if (spop_decode_disconnect(f->payload, f->payload_len, &d) != SPOP_OK)
		return;
	CHECK(d.message.ptr != NULL);
	/* echo it as an AGENT-DISCONNECT and read that back */
	cstr_of(d.message, message, sizeof(message));
	n = spop_encode_agent_disconnect(scratch, SCRATCH_CAP,
					 (enum spop_status)(d.has_status ? d.status_code : 0),
					 message[0] ? message : NULL);
	CHECK(n > 0);
	CHECK(spop_frame_decode(scratch, (size_t)n, &back) == SPOP_OK);
	CHECK(back.type == SPOP_FRAME_AGENT_DISCONNECT);
	CHECK(spop_decode_disconnect(back.payload, back.payload_len, &back_d) == SPOP_OK);
	CHECK(back_d.has_status && back_d.has_message);
	CHECK(back_d.status_code == (d.has_status ? d.status_code : 0));
	if (message[0])
		CHECK(spop_str_eq(back_d.message, message));
	/* every status has a text, unknown ones included */
	CHECK(spop_status_text((int)back_d.status_code) != NULL);
}

/* ---- the stream ------------------------------------------------------- */

struct session {
	uint32_t max_frame_size;
	unsigned pieces;
	struct spop_reasm reasm;
	uint8_t *reasm_buf;
	bool hello_done;
};

static void on_notify(struct session *s, const struct spop_frame *f)
{
	const uint8_t *payload;
	size_t len;
	enum spop_status st;
	enum spop_reasm_result res;
	bool was_active = s->reasm.active;

	res = spop_reasm_feed(&s->reasm, f, &payload, &len, &st);
	switch (res) {
	case SPOP_REASM_IN_PROGRESS:
		CHECK(s->reasm.active && s->reasm.len <= s->reasm.cap);
		return;
	case SPOP_REASM_ABORTED:
	case SPOP_REASM_ERROR:
		CHECK(!s->reasm.active);
		CHECK(res == SPOP_REASM_ABORTED || st != SPOP_OK);
		return;
	case SPOP_REASM_COMPLETE:
		break;
	}
	CHECK(!s->reasm.active && st == SPOP_OK);
	if (was_active)
		CHECK(payload == s->reasm_buf && len <= s->reasm.cap);
	else
		CHECK(payload == f->payload && len == f->payload_len);
	/* walk it, and if it was well formed, fragment it again ourselves */
	if (walk_notify(payload, len, f->stream_id, f->frame_id, s->max_frame_size) == SPOP_OK &&
	    len > 0)
		check_refragment(payload, len, f->stream_id, f->frame_id, s->pieces);
}

static void on_frame(struct session *s, const uint8_t *buf, size_t len)
{
	struct spop_frame f;
	enum spop_status st = spop_frame_decode(buf, len, &f);

	CHECK(spop_frame_type_name(buf[SPOP_FRAME_LEN_SIZE]) != NULL);
	if (st != SPOP_OK) {
		CHECK(spop_status_text(st) != NULL);
		return;
	}
	CHECK(f.payload >= buf + SPOP_FRAME_LEN_SIZE + SPOP_FRAME_MIN_LEN);
	CHECK(f.payload + f.payload_len == buf + len);
	switch (f.type) {
	case SPOP_FRAME_HAPROXY_HELLO:
		CHECK(f.stream_id == 0 && f.frame_id == 0 && (f.flags & SPOP_FLAG_FIN));
		on_hello(&f, s->max_frame_size);
		s->hello_done = true;
		break;
	case SPOP_FRAME_HAPROXY_DISCONNECT:
		on_disconnect(&f);
		break;
	case SPOP_FRAME_NOTIFY:
	case SPOP_FRAME_UNSET:
		on_notify(s, &f);
		break;
	default:
		/* the server disconnects; the codec has no more to say */
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session s;
	size_t off;
	uint8_t opt;

	if (size < 1)
		return 0;
	opt = data[0];
	data++;
	size--;
	check_varints(data, size);

	memset(&s, 0, sizeof(s));
	s.max_frame_size = frame_sizes[(opt >> 2) & 3];
	s.pieces = 1 + ((opt >> 4) & 3);
	if (reasm_caps[opt & 3] > 0) {
		s.reasm_buf = malloc(reasm_caps[opt & 3]);
		CHECK(s.reasm_buf);
	}
	spop_reasm_init(&s.reasm, s.reasm_buf, reasm_caps[opt & 3]);

	for (off = 0; off < size;) {
		enum spop_status st, st4;
		size_t frame_len = 0, frame_len4 = 0;
		enum spop_extract ex, ex4;
		uint8_t *copy;

		ex = spop_frame_extract(data + off, size - off, s.max_frame_size, &frame_len, &st);
		/* the server decides from the 4-byte prefix alone: same answer */
		ex4 = spop_frame_extract(data + off, size - off < 4 ? size - off : 4,
					 s.max_frame_size, &frame_len4, &st4);
		if (ex == SPOP_EXTRACT_ERROR) {
			CHECK(ex4 == SPOP_EXTRACT_ERROR && st4 == st && st != SPOP_OK);
			break;
		}
		CHECK(ex4 != SPOP_EXTRACT_ERROR && frame_len4 == frame_len);
		if (ex == SPOP_EXTRACT_NEED_MORE) {
			CHECK(frame_len > size - off);
			break;
		}
		CHECK(frame_len >= SPOP_FRAME_LEN_SIZE + SPOP_FRAME_MIN_LEN);
		CHECK(frame_len - SPOP_FRAME_LEN_SIZE <= s.max_frame_size);
		CHECK(frame_len <= size - off);
		copy = malloc(frame_len);
		CHECK(copy);
		memcpy(copy, data + off, frame_len);
		on_frame(&s, copy, frame_len);
		free(copy);
		off += frame_len;
	}
	free(s.reasm_buf);
	return 0;
}
