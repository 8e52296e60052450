/*
 * SPOP, the Stream Processing Offload Protocol spoken by HAProxy's SPOE
 * filter: a codec for its varints, typed data, frames and payloads.
 * Pure code: no sockets, no I/O, no allocation. Decoded strings are
 * views into the caller's input buffer; encoders write into a buffer
 * the caller passes and never past its capacity.
 */
#ifndef PGBDR_SPOP_H
#define PGBDR_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* Status codes of DISCONNECT frames; every decode error maps to one. */
enum spop_status {
	SPOP_OK = 0,
	SPOP_STATUS_NORMAL = 0,
	SPOP_STATUS_IO = 1,
	SPOP_STATUS_TIMEOUT = 2,
	SPOP_STATUS_TOO_BIG = 3,
	SPOP_STATUS_INVALID = 4,
	SPOP_STATUS_NO_VERSION = 5,
	SPOP_STATUS_NO_FRAME_SIZE = 6,
	SPOP_STATUS_NO_CAPABILITIES = 7,
	SPOP_STATUS_BAD_VERSION = 8,
	SPOP_STATUS_BAD_FRAME_SIZE = 9,
	SPOP_STATUS_FRAG_NOT_SUPPORTED = 10,
	SPOP_STATUS_INTERLACED_FRAMES = 11,
	SPOP_STATUS_FRAMEID_NOT_FOUND = 12,
	SPOP_STATUS_RES_ALLOC = 13,
	SPOP_STATUS_UNKNOWN = 99,
};

enum spop_frame_type {
	SPOP_FRAME_UNSET = 0,               /* fragment continuation */
	SPOP_FRAME_HAPROXY_HELLO = 1,
	SPOP_FRAME_HAPROXY_DISCONNECT = 2,
	SPOP_FRAME_NOTIFY = 3,
	SPOP_FRAME_AGENT_HELLO = 101,
	SPOP_FRAME_AGENT_DISCONNECT = 102,
	SPOP_FRAME_ACK = 103,
};

#define SPOP_FLAG_FIN   0x00000001u
#define SPOP_FLAG_ABORT 0x00000002u

enum spop_type {
	SPOP_T_NULL = 0,
	SPOP_T_BOOL = 1,
	SPOP_T_INT32 = 2,
	SPOP_T_UINT32 = 3,
	SPOP_T_INT64 = 4,
	SPOP_T_UINT64 = 5,
	SPOP_T_IPV4 = 6,
	SPOP_T_IPV6 = 7,
	SPOP_T_STRING = 8,
	SPOP_T_BINARY = 9,
};

enum spop_scope {
	SPOP_SCOPE_PROC = 0,
	SPOP_SCOPE_SESS = 1,
	SPOP_SCOPE_TXN = 2,
	SPOP_SCOPE_REQ = 3,
	SPOP_SCOPE_RES = 4,
};

enum spop_action_type {
	SPOP_ACTION_SET_VAR = 1,
	SPOP_ACTION_UNSET_VAR = 2,
};

#define SPOP_VARINT_MAX       10   /* bytes of the longest 64-bit varint */
#define SPOP_FRAME_LEN_SIZE   4    /* the length prefix, not counted in LEN */
#define SPOP_FRAME_MIN_LEN    7    /* TYPE + FLAGS + two 1-byte varints */
#define SPOP_MIN_FRAME_SIZE   256  /* smallest max-frame-size peers may use */

/* Capability bits, from spop_parse_capabilities(). */
#define SPOP_CAP_PIPELINING    (1u << 0)
#define SPOP_CAP_ASYNC         (1u << 1)
#define SPOP_CAP_FRAGMENTATION (1u << 2)

/* A view of bytes owned by someone else; not NUL-terminated. */
struct spop_str {
	const char *ptr;
	size_t len;
};

#define SPOP_STR_LIT(s) ((struct spop_str){ (s), sizeof(s) - 1 })

struct spop_value {
	enum spop_type type;
	union {
		bool b;
		int32_t i32;
		uint32_t u32;
		int64_t i64;
		uint64_t u64;
		uint8_t ipv4[4];    /* network order */
		uint8_t ipv6[16];
		struct spop_str str; /* STRING and BINARY */
	} u;
};

/* A decoded frame; payload points into the decoded buffer. */
struct spop_frame {
	uint8_t type;
	uint32_t flags;
	uint64_t stream_id;
	uint64_t frame_id;
	const uint8_t *payload;
	size_t payload_len;
};

/* A bounded read cursor. Decoders never read at or past end. */
struct spop_reader {
	const uint8_t *p;
	const uint8_t *end;
};

/* ---- strings and values ---------------------------------------- */

bool spop_str_eq(struct spop_str s, const char *cstr);

static inline struct spop_value spop_null(void)
{
	return (struct spop_value){ .type = SPOP_T_NULL };
}

static inline struct spop_value spop_bool(bool b)
{
	return (struct spop_value){ .type = SPOP_T_BOOL, .u.b = b };
}

static inline struct spop_value spop_int32(int32_t v)
{
	return (struct spop_value){ .type = SPOP_T_INT32, .u.i32 = v };
}

static inline struct spop_value spop_uint32(uint32_t v)
{
	return (struct spop_value){ .type = SPOP_T_UINT32, .u.u32 = v };
}

static inline struct spop_value spop_int64(int64_t v)
{
	return (struct spop_value){ .type = SPOP_T_INT64, .u.i64 = v };
}

static inline struct spop_value spop_uint64(uint64_t v)
{
	return (struct spop_value){ .type = SPOP_T_UINT64, .u.u64 = v };
}

static inline struct spop_value spop_string(const char *ptr, size_t len)
{
	return (struct spop_value){ .type = SPOP_T_STRING,
				    .u.str = { ptr, len } };
}

static inline struct spop_value spop_cstring(const char *s)
{
	return spop_string(s, strlen(s));
}

/* ---- varints ---------------------------------------------------- */

size_t spop_varint_size(uint64_t v);

/* Returns bytes written, or 0 (nothing written) if cap is too small. */
size_t spop_varint_encode(uint64_t v, uint8_t *buf, size_t cap);

/*
 * Returns bytes consumed, or 0 if the input is truncated, longer than
 * SPOP_VARINT_MAX bytes or does not fit in 64 bits.
 */
size_t spop_varint_decode(const uint8_t *buf, size_t len, uint64_t *v);

/* ---- typed data --------------------------------------------------- */

/* Same conventions as the varint functions. */
size_t spop_value_size(const struct spop_value *v);
size_t spop_value_encode(const struct spop_value *v, uint8_t *buf, size_t cap);
size_t spop_value_decode(const uint8_t *buf, size_t len, struct spop_value *v);

/* ---- frames --------------------------------------------------------- */

enum spop_extract {
	SPOP_EXTRACT_NEED_MORE,   /* wait until *frame_len bytes are buffered */
	SPOP_EXTRACT_READY,       /* the first *frame_len bytes are a frame */
	SPOP_EXTRACT_ERROR,       /* *status says why; disconnect */
};

/*
 * For a stream reader: given the len bytes buffered so far, tell how
 * many bytes the next frame takes, prefix included. max_frame_size
 * bounds the LEN field, as negotiated (or as we announce it before
 * the handshake).
 */
enum spop_extract spop_frame_extract(const uint8_t *buf, size_t len,
				     uint32_t max_frame_size,
				     size_t *frame_len,
				     enum spop_status *status);

/*
 * Decode one whole frame, prefix included (as spop_frame_extract
 * delimited it). Unknown frame types are returned as they are, since
 * the protocol lets a receiver skip them; HELLO and DISCONNECT frames
 * must carry FIN and zero ids.
 */
enum spop_status spop_frame_decode(const uint8_t *buf, size_t len,
				   struct spop_frame *f);

const char *spop_frame_type_name(uint8_t type);
const char *spop_status_text(int status);

/* ---- KV lists (HELLO, DISCONNECT) ----------------------------------- */

struct spop_kv_iter {
	struct spop_reader rd;
	enum spop_status status;   /* SPOP_OK unless stopped on an error */
};

void spop_kv_iter_init(struct spop_kv_iter *it, const uint8_t *payload,
		       size_t len);
/* False at the end of the list or on error (then it->status is set). */
bool spop_kv_next(struct spop_kv_iter *it, struct spop_str *key,
		  struct spop_value *val);

/* ---- HAPROXY-HELLO ------------------------------------------------ */

#define SPOP_HELLO_HAS_VERSIONS       (1u << 0)
#define SPOP_HELLO_HAS_MAX_FRAME_SIZE (1u << 1)
#define SPOP_HELLO_HAS_CAPABILITIES   (1u << 2)
#define SPOP_HELLO_HAS_ENGINE_ID      (1u << 3)
#define SPOP_HELLO_HAS_HEALTHCHECK    (1u << 4)

struct spop_haproxy_hello {
	unsigned present;               /* SPOP_HELLO_HAS_* */
	struct spop_str supported_versions; /* empty if not a STRING */
	uint64_t max_frame_size;        /* 0 if not a non-negative integer */
	struct spop_str capabilities;
	struct spop_str engine_id;
	bool healthcheck;
};

/*
 * Decode the KV list; unknown keys are skipped. A wrongly typed
 * version or frame size is recorded as present but unusable, so that
 * spop_validate_hello() can name the problem precisely.
 */
enum spop_status spop_decode_haproxy_hello(const uint8_t *payload,
					   size_t len,
					   struct spop_haproxy_hello *h);

/*
 * SPOP_OK, or the status to DISCONNECT with. Capabilities are never
 * required: HAProxy's spop-check sends an empty string.
 */
enum spop_status spop_validate_hello(const struct spop_haproxy_hello *h);

/* Whether a "Major.Minor, ..." list offers SPOP 2.0. */
bool spop_versions_support_2_0(struct spop_str versions);

/* SPOP_CAP_* bits found in a comma-separated list; unknown ones ignored. */
unsigned spop_parse_capabilities(struct spop_str caps);

/* ---- HAPROXY-DISCONNECT -------------------------------------------- */

struct spop_disconnect {
	bool has_status;
	bool has_message;
	uint32_t status_code;
	struct spop_str message;
};

enum spop_status spop_decode_disconnect(const uint8_t *payload, size_t len,
					struct spop_disconnect *d);

/* ---- NOTIFY ----------------------------------------------------------- */

struct spop_message {
	struct spop_str name;
	unsigned nb_args;
	unsigned args_left;
	struct spop_reader args;   /* already validated by spop_notify_next */
};

struct spop_arg {
	struct spop_str name;      /* empty for an unnamed arg */
	struct spop_value value;
};

struct spop_notify_iter {
	struct spop_reader rd;
	enum spop_status status;   /* SPOP_OK unless stopped on an error */
};

void spop_notify_iter_init(struct spop_notify_iter *it,
			   const uint8_t *payload, size_t len);

/*
 * Next message of a NOTIFY payload. The whole message, args included,
 * is validated here, so a caller may skip its args or read them with
 * spop_message_next_arg(), which then cannot fail. False at the end
 * or on error (then it->status is set).
 */
bool spop_notify_next(struct spop_notify_iter *it, struct spop_message *msg);
bool spop_message_next_arg(struct spop_message *msg, struct spop_arg *arg);

/* ---- fragment reassembly ---------------------------------------------- */

enum spop_reasm_result {
	SPOP_REASM_IN_PROGRESS,   /* wait for more fragments */
	SPOP_REASM_COMPLETE,      /* the message is in *payload */
	SPOP_REASM_ABORTED,       /* HAProxy cancelled it: nothing to ACK */
	SPOP_REASM_ERROR,         /* *status says why; disconnect */
};

/*
 * Reassembles a fragmented NOTIFY. The caller owns both this struct
 * and buf, which must outlive it; the reassembler never allocates or
 * frees. cap (the cap on a reassembled payload) of 0 means we did not
 * announce "fragmentation", so any fragment is an error.
 */
struct spop_reasm {
	uint8_t *buf;
	size_t cap;
	size_t len;
	uint64_t stream_id;
	uint64_t frame_id;
	bool active;
};

void spop_reasm_init(struct spop_reasm *r, uint8_t *buf, size_t cap);
void spop_reasm_reset(struct spop_reasm *r);

/*
 * Feed every NOTIFY and UNSET frame here. On COMPLETE the payload is
 * either the frame's own (unfragmented case, no copy) or r->buf; it
 * stays valid until the next feed or reset. After COMPLETE, ABORTED
 * or ERROR the reassembler is idle again.
 */
enum spop_reasm_result spop_reasm_feed(struct spop_reasm *r,
				       const struct spop_frame *f,
				       const uint8_t **payload,
				       size_t *payload_len,
				       enum spop_status *status);

/* ---- encoding frames ------------------------------------------------- */

/*
 * Writes frames, one at a time, into a caller buffer: begin, add,
 * finish. Each add either fits entirely or leaves the frame as it was,
 * so a caller can stop adding when the frame is full and still send
 * what it has. Several frames may be written back to back.
 */
struct spop_builder {
	uint8_t *buf;
	size_t cap;
	size_t len;           /* bytes of finished frames plus the open one */
	size_t frame_start;   /* offset of the open frame's length prefix */
	size_t frame_limit;   /* the open frame may not grow past this */
	bool in_frame;
};

void spop_builder_init(struct spop_builder *b, uint8_t *buf, size_t cap);

/*
 * Open a frame with FIN set (we never send fragments). LEN may not
 * exceed max_frame_size. False, and no frame open, if the header does
 * not fit.
 */
bool spop_frame_begin(struct spop_builder *b, uint8_t type,
		      uint64_t stream_id, uint64_t frame_id,
		      uint32_t max_frame_size);

/* Close the open frame: bytes of the whole frame, or -1 if none open. */
ssize_t spop_frame_finish(struct spop_builder *b);

/* Drop the open frame, e.g. to replace it with a DISCONNECT. */
void spop_frame_cancel(struct spop_builder *b);

bool spop_put_kv(struct spop_builder *b, const char *key,
		 const struct spop_value *val);

bool spop_ack_begin(struct spop_builder *b, uint64_t stream_id,
		    uint64_t frame_id, uint32_t max_frame_size);

/* HAProxy 2.6 cuts variable names at 63 characters. */
bool spop_ack_set_var(struct spop_builder *b, enum spop_scope scope,
		      const char *name, const struct spop_value *val);
bool spop_ack_unset_var(struct spop_builder *b, enum spop_scope scope,
			const char *name);

/* One-shot encoders: bytes written, or -1 if cap is too small. */
ssize_t spop_encode_agent_hello(uint8_t *buf, size_t cap,
				uint32_t max_frame_size,
				const char *capabilities);
ssize_t spop_encode_agent_disconnect(uint8_t *buf, size_t cap,
				     enum spop_status status,
				     const char *message);

#endif
