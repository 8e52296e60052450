/*
 * etcd v3 gateway bodies and replies (see etcd_proto.h). json-c does
 * the parsing, with a depth limit; numbers arrive as decimal strings
 * (int64 in JSON) and are read strictly.
 */
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_proto.h"

#define JSON_DEPTH 16

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Returns the encoded length, or -1 when out is too small. */
static int base64_encode(const char *in, size_t n, char *out, size_t len)
{
	size_t o = 0;

	if ((n + 2) / 3 * 4 + 1 > len)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* Decodes into out (NUL-terminated); -1 on bad input or no room. */
static int base64_decode(const char *in, char *out, size_t len)
{
	size_t n = strlen(in), o = 0;

	if (n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			v[k] = in[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_value(in[i + k]);
			if (v[k] < 0)
				return -1;
		}
		for (int k = 0; k < 3; k++) {
			if (in[i + k + 1] == '=')
				break;
			if (o + 1 >= len)
				return -1;
			out[o++] = (char)(k == 0 ? (v[0] << 2) | (v[1] >> 4) :
					  k == 1 ? ((v[1] & 15) << 4) | (v[2] >> 2) :
						   ((v[2] & 3) << 6) | v[3]);
		}
	}
	out[o] = '\0';
	return (int)o;
}

static int finish(int n, size_t len)
{
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int etcd_body_grant(char *buf, size_t len, int64_t ttl_s)
{
	return finish(snprintf(buf, len, "{\"TTL\": \"%lld\"}", (long long)ttl_s), len);
}

int etcd_body_lease(char *buf, size_t len, int64_t lease)
{
	return finish(snprintf(buf, len, "{\"ID\": \"%lld\"}", (long long)lease), len);
}

int etcd_body_range(char *buf, size_t len, const char *key)
{
	char k[ETCD_BODY_MAX / 2];

	if (base64_encode(key, strlen(key), k, sizeof(k)) < 0)
		return -1;
	return finish(snprintf(buf, len, "{\"key\": \"%s\"}", k), len);
}

int etcd_body_campaign(char *buf, size_t len, const char *key, const char *value,
		       int64_t lease)
{
	char k[ETCD_BODY_MAX / 3], v[ETCD_BODY_MAX / 6];

	if (base64_encode(key, strlen(key), k, sizeof(k)) < 0 ||
	    base64_encode(value, strlen(value), v, sizeof(v)) < 0)
		return -1;
	return finish(snprintf(buf, len,
			       "{\"compare\": [{\"key\": \"%s\", \"target\": \"CREATE\", "
			       "\"create_revision\": \"0\"}], "
			       "\"success\": [{\"request_put\": {\"key\": \"%s\", "
			       "\"value\": \"%s\", \"lease\": \"%lld\"}}]}",
			       k, k, v, (long long)lease), len);
}

/* Printable ASCII only, cut to the buffer: the text ends up in reasons. */
static void copy_message(char *dst, size_t len, const char *prefix, const char *src)
{
	size_t o = (size_t)snprintf(dst, len, "%s", prefix);

	for (; src && *src && o + 1 < len; src++)
		dst[o++] = isprint((unsigned char)*src) ? *src : '?';
	if (o < len)
		dst[o] = '\0';
}

static bool only_blanks(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)s[i]))
			return false;
	return true;
}

static json_object *parse(const char *body, size_t len, char *err, size_t errlen)
{
	json_tokener *tok;
	json_object *obj;

	if (len > ETCD_REPLY_MAX) {
		snprintf(err, errlen, "reply too long (%zu bytes)", len);
		return NULL;
	}
	tok = json_tokener_new_ex(JSON_DEPTH);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, body, (int)len);
	if (!obj || json_tokener_get_error(tok) != json_tokener_success ||
	    !only_blanks(body + json_tokener_get_parse_end(tok),
			 len - json_tokener_get_parse_end(tok))) {
		snprintf(err, errlen, "reply is not one JSON document");
		json_object_put(obj);
		obj = NULL;
	} else if (!json_object_is_type(obj, json_type_object)) {
		snprintf(err, errlen, "reply is not a JSON object");
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* {"error": "...", "code": N}: the gateway's way of saying no. */
static bool gateway_error(json_object *obj, char *err, size_t errlen)
{
	json_object *e;

	if (!json_object_object_get_ex(obj, "error", &e))
		return false;
	copy_message(err, errlen, "etcd: ",
		     json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "error");
	return true;
}

/* An int64 field: a decimal string (or a JSON integer); absent is 0. */
static int get_int64(json_object *obj, const char *key, int64_t *out)
{
	json_object *v;
	const char *s;
	char *end;
	long long n;

	*out = 0;
	if (!obj || !json_object_object_get_ex(obj, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*out = json_object_get_int64(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	if (!isdigit((unsigned char)s[0]) && s[0] != '-')
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = n;
	return 0;
}

static int malformed(json_object *obj, char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "malformed %s reply", what);
	json_object_put(obj);
	return -1;
}

int etcd_parse_grant(const char *body, size_t len, int64_t *lease, int64_t *ttl_s,
		     char *err, size_t errlen)
{
	json_object *obj = parse(body, len, err, errlen);

	if (!obj)
		return -1;
	if (gateway_error(obj, err, errlen)) {
		json_object_put(obj);
		return -1;
	}
	if (get_int64(obj, "ID", lease) < 0 || get_int64(obj, "TTL", ttl_s) < 0 ||
	    *lease == 0 || *ttl_s <= 0)
		return malformed(obj, err, errlen, "lease grant");
	json_object_put(obj);
	return 0;
}

int etcd_parse_keepalive(const char *body, size_t len, int64_t *ttl_s,
			 char *err, size_t errlen)
{
	json_object *obj = parse(body, len, err, errlen);
	json_object *result;

	if (!obj)
		return -1;
	if (gateway_error(obj, err, errlen)) {
		json_object_put(obj);
		return -1;
	}
	if (!json_object_object_get_ex(obj, "result", &result) ||
	    !json_object_is_type(result, json_type_object) ||
	    get_int64(result, "TTL", ttl_s) < 0)
		return malformed(obj, err, errlen, "lease keepalive");
	if (*ttl_s < 0)
		*ttl_s = 0;
	json_object_put(obj);
	return 0;
}

static bool valid_name(const char *s)
{
	if (!s[0])
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
			return false;
	return true;
}

static int take_kv(json_object *kv, struct etcd_kv *out)
{
	json_object *v;
	char value[NODE_NAME_MAX];

	if (!json_object_is_type(kv, json_type_object) ||
	    get_int64(kv, "lease", &out->lease) < 0 ||
	    get_int64(kv, "create_revision", &out->create_revision) < 0)
		return -1;
	out->present = true;
	if (json_object_object_get_ex(kv, "value", &v) &&
	    json_object_is_type(v, json_type_string) &&
	    base64_decode(json_object_get_string(v), value, sizeof(value)) > 0 &&
	    valid_name(value)) {
		out->valid_name = true;
		snprintf(out->value, sizeof(out->value), "%s", value);
	}
	return 0;
}

int etcd_parse_range(const char *body, size_t len, struct etcd_kv *kv,
		     char *err, size_t errlen)
{
	json_object *obj = parse(body, len, err, errlen);
	json_object *kvs;

	memset(kv, 0, sizeof(*kv));
	if (!obj)
		return -1;
	if (gateway_error(obj, err, errlen)) {
		json_object_put(obj);
		return -1;
	}
	if (!json_object_object_get_ex(obj, "kvs", &kvs)) {
		json_object_put(obj);
		return 0;
	}
	if (!json_object_is_type(kvs, json_type_array) || json_object_array_length(kvs) > 1 ||
	    (json_object_array_length(kvs) == 1 &&
	     take_kv(json_object_array_get_idx(kvs, 0), kv) < 0)) {
		memset(kv, 0, sizeof(*kv));
		return malformed(obj, err, errlen, "range");
	}
	json_object_put(obj);
	return 0;
}

int etcd_parse_txn(const char *body, size_t len, bool *succeeded, char *err, size_t errlen)
{
	json_object *obj = parse(body, len, err, errlen);
	json_object *v;

	*succeeded = false;
	if (!obj)
		return -1;
	if (gateway_error(obj, err, errlen)) {
		json_object_put(obj);
		return -1;
	}
	if (!json_object_object_get_ex(obj, "header", &v))
		return malformed(obj, err, errlen, "transaction");
	if (json_object_object_get_ex(obj, "succeeded", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return malformed(obj, err, errlen, "transaction");
		*succeeded = json_object_get_boolean(v);
	}
	json_object_put(obj);
	return 0;
}

int etcd_parse_ok(const char *body, size_t len, char *err, size_t errlen)
{
	json_object *obj = parse(body, len, err, errlen);

	if (!obj)
		return -1;
	if (gateway_error(obj, err, errlen)) {
		json_object_put(obj);
		return -1;
	}
	json_object_put(obj);
	return 0;
}
