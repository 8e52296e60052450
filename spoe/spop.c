/*
 * SPOP codec: varints, typed data, frame headers, HELLO/DISCONNECT
 * KV lists, NOTIFY messages, ACK actions and NOTIFY fragment
 * reassembly. See spop.h for the contract; doc/SPOE.txt in HAProxy
 * for the protocol.
 */
#include "spop.h"

#include <strings.h>

/* ---- small helpers ------------------------------------------------- */

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int64_t u64_to_i64(uint64_t v)
{
	if (v <= (uint64_t)INT64_MAX)
		return (int64_t)v;
	return -(int64_t)(~v) - 1;
}

bool spop_str_eq(struct spop_str s, const char *cstr)
{
	size_t n = strlen(cstr);

	return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

static bool str_caseeq(struct spop_str s, const char *cstr)
{
	size_t n = strlen(cstr);

	return s.len == n && (n == 0 || strncasecmp(s.ptr, cstr, n) == 0);
}

/* ---- varints ------------------------------------------------------- */

size_t spop_varint_size(uint64_t v)
{
	size_t n = 1;

	if (v < 240)
		return 1;
	v = (v - 240) >> 4;
	while (v >= 128) {
		n++;
		v = (v - 128) >> 7;
	}
	return n + 1;
}

size_t spop_varint_encode(uint64_t v, uint8_t *buf, size_t cap)
{
	size_t n = spop_varint_size(v);
	size_t i = 0;

	if (n > cap)
		return 0;
	if (v < 240) {
		buf[0] = (uint8_t)v;
		return 1;
	}
	buf[i++] = (uint8_t)((v & 0xFF) | 0xF0);
	v = (v - 240) >> 4;
	while (v >= 128) {
		buf[i++] = (uint8_t)((v & 0xFF) | 0x80);
		v = (v - 128) >> 7;
	}
	buf[i++] = (uint8_t)v;
	return i;
}

/*
 * Every byte is added whole (marker bits included) at its shift: that
 * undoes the subtractions of the encoder, which is why no two byte
 * strings decode to the same value and only overflow needs checking.
 */
size_t spop_varint_decode(const uint8_t *buf, size_t len, uint64_t *v)
{
	uint64_t acc;
	unsigned shift = 4;
	size_t i;

	if (len == 0)
		return 0;
	acc = buf[0];
	if (acc < 240) {
		*v = acc;
		return 1;
	}
	for (i = 1; i < len && i < SPOP_VARINT_MAX; i++) {
		uint64_t byte = buf[i];
		uint64_t add;

		if (byte > (UINT64_MAX >> shift))
			return 0;
		add = byte << shift;
		if (acc > UINT64_MAX - add)
			return 0;
		acc += add;
		if (byte < 128) {
			*v = acc;
			return i + 1;
		}
		shift += 7;
	}
	return 0;
}

/* ---- reader -------------------------------------------------------- */

static void reader_init(struct spop_reader *rd, const uint8_t *p, size_t len)
{
	/* (NULL, 0) is a valid empty payload, but NULL + 0 is not valid C. */
	rd->p = p;
	rd->end = len > 0 ? p + len : p;
}

static size_t reader_left(const struct spop_reader *rd)
{
	return (size_t)(rd->end - rd->p);
}

static bool read_u8(struct spop_reader *rd, uint8_t *out)
{
	if (rd->p >= rd->end)
		return false;
	*out = *rd->p++;
	return true;
}

static bool read_be32(struct spop_reader *rd, uint32_t *out)
{
	if (reader_left(rd) < 4)
		return false;
	*out = load_be32(rd->p);
	rd->p += 4;
	return true;
}

static bool read_varint(struct spop_reader *rd, uint64_t *out)
{
	size_t n = spop_varint_decode(rd->p, reader_left(rd), out);

	if (n == 0)
		return false;
	rd->p += n;
	return true;
}

static bool read_bytes(struct spop_reader *rd, void *out, size_t n)
{
	if (reader_left(rd) < n)
		return false;
	memcpy(out, rd->p, n);
	rd->p += n;
	return true;
}

/* A length-prefixed byte string, returned as a view. */
static bool read_str(struct spop_reader *rd, struct spop_str *s)
{
	uint64_t len;

	if (!read_varint(rd, &len) || len > reader_left(rd))
		return false;
	s->ptr = (const char *)rd->p;
	s->len = (size_t)len;
	rd->p += len;
	return true;
}

/* ---- typed data ---------------------------------------------------- */

static bool read_int32(struct spop_reader *rd, int32_t *out)
{
	uint64_t raw;
	int64_t v;

	/* Signed values travel sign-extended to 64 bits. */
	if (!read_varint(rd, &raw))
		return false;
	v = u64_to_i64(raw);
	if (v < INT32_MIN || v > INT32_MAX)
		return false;
	*out = (int32_t)v;
	return true;
}

static bool read_uint32(struct spop_reader *rd, uint32_t *out)
{
	uint64_t raw;

	if (!read_varint(rd, &raw) || raw > UINT32_MAX)
		return false;
	*out = (uint32_t)raw;
	return true;
}

static bool read_value(struct spop_reader *rd, struct spop_value *v)
{
	uint8_t tag;
	uint64_t raw;

	if (!read_u8(rd, &tag))
		return false;
	memset(v, 0, sizeof(*v));
	v->type = (enum spop_type)(tag & 0x0F);
	switch (v->type) {
	case SPOP_T_NULL:
		return true;
	case SPOP_T_BOOL:
		v->u.b = (tag & 0x10) != 0;
		return true;
	case SPOP_T_INT32:
		return read_int32(rd, &v->u.i32);
	case SPOP_T_UINT32:
		return read_uint32(rd, &v->u.u32);
	case SPOP_T_INT64:
		if (!read_varint(rd, &raw))
			return false;
		v->u.i64 = u64_to_i64(raw);
		return true;
	case SPOP_T_UINT64:
		return read_varint(rd, &v->u.u64);
	case SPOP_T_IPV4:
		return read_bytes(rd, v->u.ipv4, sizeof(v->u.ipv4));
	case SPOP_T_IPV6:
		return read_bytes(rd, v->u.ipv6, sizeof(v->u.ipv6));
	case SPOP_T_STRING:
	case SPOP_T_BINARY:
		return read_str(rd, &v->u.str);
	}
	return false;  /* types 10-15 are reserved */
}

size_t spop_value_decode(const uint8_t *buf, size_t len, struct spop_value *v)
{
	struct spop_reader rd;

	reader_init(&rd, buf, len);
	if (!read_value(&rd, v))
		return 0;
	return (size_t)(rd.p - buf);
}

/* Signed integers go out sign-extended, as HAProxy reads them back. */
static uint64_t value_varint(const struct spop_value *v)
{
	switch (v->type) {
	case SPOP_T_INT32:
		return (uint64_t)(int64_t)v->u.i32;
	case SPOP_T_UINT32:
		return v->u.u32;
	case SPOP_T_INT64:
		return (uint64_t)v->u.i64;
	default:
		return v->u.u64;
	}
}

size_t spop_value_size(const struct spop_value *v)
{
	switch (v->type) {
	case SPOP_T_NULL:
	case SPOP_T_BOOL:
		return 1;
	case SPOP_T_INT32:
	case SPOP_T_UINT32:
	case SPOP_T_INT64:
	case SPOP_T_UINT64:
		return 1 + spop_varint_size(value_varint(v));
	case SPOP_T_IPV4:
		return 1 + 4;
	case SPOP_T_IPV6:
		return 1 + 16;
	case SPOP_T_STRING:
	case SPOP_T_BINARY:
		return 1 + spop_varint_size(v->u.str.len) + v->u.str.len;
	}
	return 0;
}

size_t spop_value_encode(const struct spop_value *v, uint8_t *buf, size_t cap)
{
	size_t n = spop_value_size(v);

	if (n == 0 || n > cap)
		return 0;
	buf[0] = (uint8_t)v->type;
	switch (v->type) {
	case SPOP_T_NULL:
		break;
	case SPOP_T_BOOL:
		if (v->u.b)
			buf[0] |= 0x10;
		break;
	case SPOP_T_INT32:
	case SPOP_T_UINT32:
	case SPOP_T_INT64:
	case SPOP_T_UINT64:
		spop_varint_encode(value_varint(v), buf + 1, cap - 1);
		break;
	case SPOP_T_IPV4:
		memcpy(buf + 1, v->u.ipv4, 4);
		break;
	case SPOP_T_IPV6:
		memcpy(buf + 1, v->u.ipv6, 16);
		break;
	case SPOP_T_STRING:
	case SPOP_T_BINARY: {
		size_t hdr = spop_varint_encode(v->u.str.len, buf + 1, cap - 1);

		if (v->u.str.len > 0)
			memcpy(buf + 1 + hdr, v->u.str.ptr, v->u.str.len);
		break;
	}
	}
	return n;
}

/* The value as a non-negative integer, whatever integer type carried it. */
static bool value_as_unsigned(const struct spop_value *v, uint64_t *out)
{
	switch (v->type) {
	case SPOP_T_INT32:
		if (v->u.i32 < 0)
			return false;
		*out = (uint64_t)v->u.i32;
		return true;
	case SPOP_T_UINT32:
		*out = v->u.u32;
		return true;
	case SPOP_T_INT64:
		if (v->u.i64 < 0)
			return false;
		*out = (uint64_t)v->u.i64;
		return true;
	case SPOP_T_UINT64:
		*out = v->u.u64;
		return true;
	default:
		return false;
	}
}

/* ---- frames -------------------------------------------------------- */

enum spop_extract spop_frame_extract(const uint8_t *buf, size_t len,
				     uint32_t max_frame_size,
				     size_t *frame_len,
				     enum spop_status *status)
{
	uint32_t n;

	*status = SPOP_OK;
	if (len < SPOP_FRAME_LEN_SIZE) {
		*frame_len = SPOP_FRAME_LEN_SIZE;
		return SPOP_EXTRACT_NEED_MORE;
	}
	n = load_be32(buf);
	/* Refuse before buffering: the peer would make us wait forever. */
	if (n > max_frame_size) {
		*status = SPOP_STATUS_TOO_BIG;
		return SPOP_EXTRACT_ERROR;
	}
	if (n < SPOP_FRAME_MIN_LEN) {
		*status = SPOP_STATUS_INVALID;
		return SPOP_EXTRACT_ERROR;
	}
	*frame_len = SPOP_FRAME_LEN_SIZE + (size_t)n;
	return len >= *frame_len ? SPOP_EXTRACT_READY : SPOP_EXTRACT_NEED_MORE;
}

static bool is_connection_frame(uint8_t type)
{
	return type == SPOP_FRAME_HAPROXY_HELLO ||
	       type == SPOP_FRAME_HAPROXY_DISCONNECT ||
	       type == SPOP_FRAME_AGENT_HELLO ||
	       type == SPOP_FRAME_AGENT_DISCONNECT;
}

enum spop_status spop_frame_decode(const uint8_t *buf, size_t len,
				   struct spop_frame *f)
{
	struct spop_reader rd;

	if (len < SPOP_FRAME_LEN_SIZE + SPOP_FRAME_MIN_LEN ||
	    load_be32(buf) != len - SPOP_FRAME_LEN_SIZE)
		return SPOP_STATUS_INVALID;

	reader_init(&rd, buf + SPOP_FRAME_LEN_SIZE, len - SPOP_FRAME_LEN_SIZE);
	if (!read_u8(&rd, &f->type) || !read_be32(&rd, &f->flags) ||
	    !read_varint(&rd, &f->stream_id) ||
	    !read_varint(&rd, &f->frame_id))
		return SPOP_STATUS_INVALID;
	f->payload = rd.p;
	f->payload_len = reader_left(&rd);

	/* HELLO and DISCONNECT "cannot be fragmented" and carry no ids. */
	if (is_connection_frame(f->type)) {
		if (!(f->flags & SPOP_FLAG_FIN))
			return SPOP_STATUS_FRAG_NOT_SUPPORTED;
		if (f->stream_id != 0 || f->frame_id != 0)
			return SPOP_STATUS_INVALID;
	}
	return SPOP_OK;
}

const char *spop_frame_type_name(uint8_t type)
{
	switch (type) {
	case SPOP_FRAME_UNSET:              return "UNSET";
	case SPOP_FRAME_HAPROXY_HELLO:      return "HAPROXY-HELLO";
	case SPOP_FRAME_HAPROXY_DISCONNECT: return "HAPROXY-DISCONNECT";
	case SPOP_FRAME_NOTIFY:             return "NOTIFY";
	case SPOP_FRAME_AGENT_HELLO:        return "AGENT-HELLO";
	case SPOP_FRAME_AGENT_DISCONNECT:   return "AGENT-DISCONNECT";
	case SPOP_FRAME_ACK:                return "ACK";
	}
	return "unknown";
}

const char *spop_status_text(int status)
{
	switch (status) {
	case SPOP_STATUS_NORMAL:             return "normal";
	case SPOP_STATUS_IO:                 return "I/O error";
	case SPOP_STATUS_TIMEOUT:            return "a timeout occurred";
	case SPOP_STATUS_TOO_BIG:            return "frame is too big";
	case SPOP_STATUS_INVALID:            return "invalid frame received";
	case SPOP_STATUS_NO_VERSION:         return "version value not found";
	case SPOP_STATUS_NO_FRAME_SIZE:      return "max-frame-size value not found";
	case SPOP_STATUS_NO_CAPABILITIES:    return "capabilities value not found";
	case SPOP_STATUS_BAD_VERSION:        return "unsupported version";
	case SPOP_STATUS_BAD_FRAME_SIZE:     return "max-frame-size too big or too small";
	case SPOP_STATUS_FRAG_NOT_SUPPORTED: return "payload fragmentation is not supported";
	case SPOP_STATUS_INTERLACED_FRAMES:  return "invalid interlaced frames";
	case SPOP_STATUS_FRAMEID_NOT_FOUND:  return "frame-id not found";
	case SPOP_STATUS_RES_ALLOC:          return "resource allocation error";
	}
	return "an unknown error occurred";
}

/* ---- KV lists ------------------------------------------------------ */

void spop_kv_iter_init(struct spop_kv_iter *it, const uint8_t *payload,
		       size_t len)
{
	reader_init(&it->rd, payload, len);
	it->status = SPOP_OK;
}

bool spop_kv_next(struct spop_kv_iter *it, struct spop_str *key,
		  struct spop_value *val)
{
	if (it->status != SPOP_OK || reader_left(&it->rd) == 0)
		return false;
	if (!read_str(&it->rd, key) || !read_value(&it->rd, val)) {
		it->status = SPOP_STATUS_INVALID;
		return false;
	}
	return true;
}

/* ---- HAPROXY-HELLO ------------------------------------------------- */

static bool hello_take_string(const struct spop_value *val,
			      struct spop_str *out)
{
	if (val->type != SPOP_T_STRING)
		return false;
	*out = val->u.str;
	return true;
}

static enum spop_status hello_take(struct spop_haproxy_hello *h,
				   struct spop_str key,
				   const struct spop_value *val)
{
	if (spop_str_eq(key, "supported-versions")) {
		h->present |= SPOP_HELLO_HAS_VERSIONS;
		if (!hello_take_string(val, &h->supported_versions))
			h->supported_versions = (struct spop_str){ "", 0 };
	} else if (spop_str_eq(key, "max-frame-size")) {
		h->present |= SPOP_HELLO_HAS_MAX_FRAME_SIZE;
		if (!value_as_unsigned(val, &h->max_frame_size))
			h->max_frame_size = 0;
	} else if (spop_str_eq(key, "capabilities")) {
		h->present |= SPOP_HELLO_HAS_CAPABILITIES;
		if (!hello_take_string(val, &h->capabilities))
			return SPOP_STATUS_INVALID;
	} else if (spop_str_eq(key, "engine-id")) {
		h->present |= SPOP_HELLO_HAS_ENGINE_ID;
		if (!hello_take_string(val, &h->engine_id))
			return SPOP_STATUS_INVALID;
	} else if (spop_str_eq(key, "healthcheck")) {
		h->present |= SPOP_HELLO_HAS_HEALTHCHECK;
		if (val->type != SPOP_T_BOOL)
			return SPOP_STATUS_INVALID;
		h->healthcheck = val->u.b;
	}
	return SPOP_OK;
}

enum spop_status spop_decode_haproxy_hello(const uint8_t *payload,
					   size_t len,
					   struct spop_haproxy_hello *h)
{
	struct spop_kv_iter it;
	struct spop_str key;
	struct spop_value val;

	memset(h, 0, sizeof(*h));
	h->supported_versions = h->capabilities = h->engine_id =
		(struct spop_str){ "", 0 };
	spop_kv_iter_init(&it, payload, len);
	while (spop_kv_next(&it, &key, &val)) {
		enum spop_status st = hello_take(h, key, &val);

		if (st != SPOP_OK)
			return st;
	}
	return it.status;
}

enum spop_status spop_validate_hello(const struct spop_haproxy_hello *h)
{
	if (!(h->present & SPOP_HELLO_HAS_VERSIONS))
		return SPOP_STATUS_NO_VERSION;
	if (!spop_versions_support_2_0(h->supported_versions))
		return SPOP_STATUS_BAD_VERSION;
	if (!(h->present & SPOP_HELLO_HAS_MAX_FRAME_SIZE))
		return SPOP_STATUS_NO_FRAME_SIZE;
	if (h->max_frame_size < SPOP_MIN_FRAME_SIZE ||
	    h->max_frame_size > UINT32_MAX)
		return SPOP_STATUS_BAD_FRAME_SIZE;
	/* No capability check: spop-check sends "", and we need none. */
	return SPOP_OK;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Split the next comma-separated item off *list, without its
 * surrounding blanks. False once the list is used up.
 */
static bool next_list_item(struct spop_str *list, struct spop_str *item)
{
	const char *p, *end, *comma;

	if (list->len == 0)
		return false;
	p = list->ptr;
	end = p + list->len;
	comma = memchr(p, ',', list->len);
	if (comma) {
		list->ptr = comma + 1;
		list->len = (size_t)(end - comma - 1);
		end = comma;
	} else {
		list->ptr = end;
		list->len = 0;
	}
	while (p < end && is_blank(*p))
		p++;
	while (end > p && is_blank(end[-1]))
		end--;
	item->ptr = p;
	item->len = (size_t)(end - p);
	return true;
}

/* Parse up to 9 digits, so that the value cannot overflow. */
static bool parse_small_number(const char **p, const char *end,
			       unsigned *out)
{
	unsigned v = 0;
	int digits = 0;

	while (*p < end && **p >= '0' && **p <= '9') {
		if (++digits > 9)
			return false;
		v = v * 10 + (unsigned)(**p - '0');
		(*p)++;
	}
	*out = v;
	return digits > 0;
}

static bool parse_version(struct spop_str item, unsigned *major,
			  unsigned *minor)
{
	const char *p = item.ptr, *end = item.ptr + item.len;

	if (!parse_small_number(&p, end, major))
		return false;
	if (p >= end || *p != '.')
		return false;
	p++;
	if (!parse_small_number(&p, end, minor))
		return false;
	return p == end;
}

/*
 * A major version announced by HAProxy implies all its minor versions,
 * so any "2.x" offers 2.0.
 */
bool spop_versions_support_2_0(struct spop_str versions)
{
	struct spop_str item;
	unsigned major, minor;

	while (next_list_item(&versions, &item)) {
		if (parse_version(item, &major, &minor) && major == 2)
			return true;
	}
	return false;
}

unsigned spop_parse_capabilities(struct spop_str caps)
{
	struct spop_str item;
	unsigned flags = 0;

	while (next_list_item(&caps, &item)) {
		if (str_caseeq(item, "pipelining"))
			flags |= SPOP_CAP_PIPELINING;
		else if (str_caseeq(item, "async"))
			flags |= SPOP_CAP_ASYNC;
		else if (str_caseeq(item, "fragmentation"))
			flags |= SPOP_CAP_FRAGMENTATION;
	}
	return flags;
}

/* ---- HAPROXY-DISCONNECT -------------------------------------------- */

static enum spop_status disconnect_take(struct spop_disconnect *d,
					struct spop_str key,
					const struct spop_value *val)
{
	uint64_t code;

	if (spop_str_eq(key, "status-code")) {
		if (!value_as_unsigned(val, &code) || code > UINT32_MAX)
			return SPOP_STATUS_INVALID;
		d->has_status = true;
		d->status_code = (uint32_t)code;
	} else if (spop_str_eq(key, "message")) {
		if (val->type != SPOP_T_STRING)
			return SPOP_STATUS_INVALID;
		d->has_message = true;
		d->message = val->u.str;
	}
	return SPOP_OK;
}

enum spop_status spop_decode_disconnect(const uint8_t *payload, size_t len,
					struct spop_disconnect *d)
{
	struct spop_kv_iter it;
	struct spop_str key;
	struct spop_value val;

	memset(d, 0, sizeof(*d));
	d->message = (struct spop_str){ "", 0 };
	spop_kv_iter_init(&it, payload, len);
	while (spop_kv_next(&it, &key, &val)) {
		enum spop_status st = disconnect_take(d, key, &val);

		if (st != SPOP_OK)
			return st;
	}
	return it.status;
}

/* ---- NOTIFY -------------------------------------------------------- */

void spop_notify_iter_init(struct spop_notify_iter *it,
			   const uint8_t *payload, size_t len)
{
	reader_init(&it->rd, payload, len);
	it->status = SPOP_OK;
}

static bool read_arg(struct spop_reader *rd, struct spop_arg *arg)
{
	return read_str(rd, &arg->name) && read_value(rd, &arg->value);
}

bool spop_notify_next(struct spop_notify_iter *it, struct spop_message *msg)
{
	struct spop_reader *rd = &it->rd;
	const uint8_t *args_start;
	struct spop_arg scratch;
	uint8_t nb_args;
	unsigned i;

	if (it->status != SPOP_OK || reader_left(rd) == 0)
		return false;
	if (!read_str(rd, &msg->name) || !read_u8(rd, &nb_args))
		goto invalid;
	args_start = rd->p;
	for (i = 0; i < nb_args; i++) {
		if (!read_arg(rd, &scratch))
			goto invalid;
	}
	msg->nb_args = msg->args_left = nb_args;
	msg->args.p = args_start;
	msg->args.end = rd->p;
	return true;

invalid:
	it->status = SPOP_STATUS_INVALID;
	return false;
}

bool spop_message_next_arg(struct spop_message *msg, struct spop_arg *arg)
{
	if (msg->args_left == 0 || !read_arg(&msg->args, arg))
		return false;
	msg->args_left--;
	return true;
}

/* ---- fragment reassembly ------------------------------------------- */

void spop_reasm_init(struct spop_reasm *r, uint8_t *buf, size_t cap)
{
	r->buf = buf;
	r->cap = buf ? cap : 0;
	spop_reasm_reset(r);
}

void spop_reasm_reset(struct spop_reasm *r)
{
	r->len = 0;
	r->stream_id = 0;
	r->frame_id = 0;
	r->active = false;
}

static enum spop_reasm_result reasm_fail(struct spop_reasm *r,
					 enum spop_status *status,
					 enum spop_status why)
{
	spop_reasm_reset(r);
	*status = why;
	return SPOP_REASM_ERROR;
}

static bool reasm_append(struct spop_reasm *r, const struct spop_frame *f)
{
	if (f->payload_len > r->cap - r->len)
		return false;
	if (f->payload_len > 0)
		memcpy(r->buf + r->len, f->payload, f->payload_len);
	r->len += f->payload_len;
	return true;
}

static bool reasm_same_ids(const struct spop_reasm *r,
			   const struct spop_frame *f)
{
	return f->stream_id == r->stream_id && f->frame_id == r->frame_id;
}

/* The first frame of a message, with nothing in progress. */
static enum spop_reasm_result reasm_start(struct spop_reasm *r,
					  const struct spop_frame *f,
					  const uint8_t **payload,
					  size_t *payload_len,
					  enum spop_status *status)
{
	if (f->flags & SPOP_FLAG_ABORT)
		return SPOP_REASM_ABORTED;
	/* A continuation of nothing: HAProxy and we disagree on state. */
	if (f->type == SPOP_FRAME_UNSET)
		return reasm_fail(r, status, SPOP_STATUS_INVALID);
	if (f->flags & SPOP_FLAG_FIN) {
		*payload = f->payload;
		*payload_len = f->payload_len;
		return SPOP_REASM_COMPLETE;
	}
	if (r->cap == 0)
		return reasm_fail(r, status, SPOP_STATUS_FRAG_NOT_SUPPORTED);
	r->active = true;
	r->stream_id = f->stream_id;
	r->frame_id = f->frame_id;
	if (!reasm_append(r, f))
		return reasm_fail(r, status, SPOP_STATUS_TOO_BIG);
	return SPOP_REASM_IN_PROGRESS;
}

/* HAProxy 2.6 sends a fragmented NOTIFY without interleaving others. */
static enum spop_reasm_result reasm_continue(struct spop_reasm *r,
					     const struct spop_frame *f,
					     const uint8_t **payload,
					     size_t *payload_len,
					     enum spop_status *status)
{
	if (f->type != SPOP_FRAME_UNSET || !reasm_same_ids(r, f))
		return reasm_fail(r, status, SPOP_STATUS_INTERLACED_FRAMES);
	if (f->flags & SPOP_FLAG_ABORT) {
		spop_reasm_reset(r);
		return SPOP_REASM_ABORTED;
	}
	if (!reasm_append(r, f))
		return reasm_fail(r, status, SPOP_STATUS_TOO_BIG);
	if (!(f->flags & SPOP_FLAG_FIN))
		return SPOP_REASM_IN_PROGRESS;
	*payload = r->buf;
	*payload_len = r->len;
	spop_reasm_reset(r);
	return SPOP_REASM_COMPLETE;
}

enum spop_reasm_result spop_reasm_feed(struct spop_reasm *r,
				       const struct spop_frame *f,
				       const uint8_t **payload,
				       size_t *payload_len,
				       enum spop_status *status)
{
	*status = SPOP_OK;
	*payload = NULL;
	*payload_len = 0;
	if (f->type != SPOP_FRAME_NOTIFY && f->type != SPOP_FRAME_UNSET)
		return reasm_fail(r, status, SPOP_STATUS_INVALID);
	if (r->active)
		return reasm_continue(r, f, payload, payload_len, status);
	return reasm_start(r, f, payload, payload_len, status);
}

/* ---- encoding ------------------------------------------------------ */

void spop_builder_init(struct spop_builder *b, uint8_t *buf, size_t cap)
{
	b->buf = buf;
	b->cap = buf ? cap : 0;
	b->len = 0;
	b->frame_start = 0;
	b->frame_limit = 0;
	b->in_frame = false;
}

static size_t builder_room(const struct spop_builder *b)
{
	return b->frame_limit - b->len;
}

static bool put_u8(struct spop_builder *b, uint8_t v)
{
	if (builder_room(b) < 1)
		return false;
	b->buf[b->len++] = v;
	return true;
}

static bool put_be32(struct spop_builder *b, uint32_t v)
{
	if (builder_room(b) < 4)
		return false;
	store_be32(b->buf + b->len, v);
	b->len += 4;
	return true;
}

static bool put_varint(struct spop_builder *b, uint64_t v)
{
	size_t n = spop_varint_encode(v, b->buf + b->len, builder_room(b));

	b->len += n;
	return n > 0;
}

static bool put_str(struct spop_builder *b, const char *s)
{
	size_t n = strlen(s);

	if (!put_varint(b, n) || builder_room(b) < n)
		return false;
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	return true;
}

static bool put_value(struct spop_builder *b, const struct spop_value *v)
{
	size_t n = spop_value_encode(v, b->buf + b->len, builder_room(b));

	b->len += n;
	return n > 0;
}

/* Undo a partial add so that the open frame stays well formed. */
static bool rollback(struct spop_builder *b, size_t mark)
{
	b->len = mark;
	return false;
}

bool spop_frame_begin(struct spop_builder *b, uint8_t type,
		      uint64_t stream_id, uint64_t frame_id,
		      uint32_t max_frame_size)
{
	size_t start = b->len;
	size_t room = b->cap - start;

	if (b->in_frame || room < SPOP_FRAME_LEN_SIZE)
		return false;
	b->frame_start = start;
	if (room - SPOP_FRAME_LEN_SIZE > max_frame_size)
		b->frame_limit = start + SPOP_FRAME_LEN_SIZE + max_frame_size;
	else
		b->frame_limit = b->cap;

	b->len += SPOP_FRAME_LEN_SIZE;  /* patched by spop_frame_finish */
	if (!put_u8(b, type) || !put_be32(b, SPOP_FLAG_FIN) ||
	    !put_varint(b, stream_id) || !put_varint(b, frame_id))
		return rollback(b, start);
	b->in_frame = true;
	return true;
}

ssize_t spop_frame_finish(struct spop_builder *b)
{
	size_t total;

	if (!b->in_frame)
		return -1;
	total = b->len - b->frame_start;
	store_be32(b->buf + b->frame_start,
		   (uint32_t)(total - SPOP_FRAME_LEN_SIZE));
	b->in_frame = false;
	return (ssize_t)total;
}

void spop_frame_cancel(struct spop_builder *b)
{
	if (!b->in_frame)
		return;
	b->len = b->frame_start;
	b->in_frame = false;
}

bool spop_put_kv(struct spop_builder *b, const char *key,
		 const struct spop_value *val)
{
	size_t mark = b->len;

	if (!b->in_frame || !key)
		return false;
	if (!put_str(b, key) || !put_value(b, val))
		return rollback(b, mark);
	return true;
}

bool spop_ack_begin(struct spop_builder *b, uint64_t stream_id,
		    uint64_t frame_id, uint32_t max_frame_size)
{
	return spop_frame_begin(b, SPOP_FRAME_ACK, stream_id, frame_id,
				max_frame_size);
}

static bool scope_is_valid(enum spop_scope scope)
{
	return scope >= SPOP_SCOPE_PROC && scope <= SPOP_SCOPE_RES;
}

bool spop_ack_set_var(struct spop_builder *b, enum spop_scope scope,
		      const char *name, const struct spop_value *val)
{
	size_t mark = b->len;

	if (!b->in_frame || !name || !scope_is_valid(scope))
		return false;
	if (!put_u8(b, SPOP_ACTION_SET_VAR) || !put_u8(b, 3) ||
	    !put_u8(b, (uint8_t)scope) || !put_str(b, name) ||
	    !put_value(b, val))
		return rollback(b, mark);
	return true;
}

bool spop_ack_unset_var(struct spop_builder *b, enum spop_scope scope,
			const char *name)
{
	size_t mark = b->len;

	if (!b->in_frame || !name || !scope_is_valid(scope))
		return false;
	if (!put_u8(b, SPOP_ACTION_UNSET_VAR) || !put_u8(b, 2) ||
	    !put_u8(b, (uint8_t)scope) || !put_str(b, name))
		return rollback(b, mark);
	return true;
}

ssize_t spop_encode_agent_hello(uint8_t *buf, size_t cap,
				uint32_t max_frame_size,
				const char *capabilities)
{
	struct spop_builder b;
	struct spop_value version = spop_cstring("2.0");
	struct spop_value size = spop_uint32(max_frame_size);
	struct spop_value caps = spop_cstring(capabilities ? capabilities : "");

	spop_builder_init(&b, buf, cap);
	if (!spop_frame_begin(&b, SPOP_FRAME_AGENT_HELLO, 0, 0, UINT32_MAX) ||
	    !spop_put_kv(&b, "version", &version) ||
	    !spop_put_kv(&b, "max-frame-size", &size) ||
	    !spop_put_kv(&b, "capabilities", &caps))
		return -1;
	return spop_frame_finish(&b);
}

ssize_t spop_encode_agent_disconnect(uint8_t *buf, size_t cap,
				     enum spop_status status,
				     const char *message)
{
	struct spop_builder b;
	struct spop_value code = spop_uint32((uint32_t)status);
	struct spop_value msg =
		spop_cstring(message ? message : spop_status_text(status));

	spop_builder_init(&b, buf, cap);
	if (!spop_frame_begin(&b, SPOP_FRAME_AGENT_DISCONNECT, 0, 0,
			      UINT32_MAX) ||
	    !spop_put_kv(&b, "status-code", &code) ||
	    !spop_put_kv(&b, "message", &msg))
		return -1;
	return spop_frame_finish(&b);
}
