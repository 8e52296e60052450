/*
 * Secret removal and UTF-8/control-character sanitising of text that
 * comes from a server. One pass, bounded by the input and the output
 * sizes; no allocation.
 */
#include <stdbool.h>
#include <string.h>

#include "scrub.h"

/* A secret cut by an upstream truncation still hides from this length. */
#define SCRUB_MIN_PREFIX 3

static const char MASK[] = "***";

void secret_list_add(struct secret_list *s, const char *secret)
{
	if (!secret || !secret[0] || s->n >= SCRUB_MAX_SECRETS)
		return;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->items[i], secret) == 0)
			return;
	s->items[s->n++] = secret;
}

/*
 * How many input bytes a secret covers at in[0..left): its length on a
 * full match, what is left on a match cut by the end of the input, or 0.
 */
static size_t secret_at(const char *in, size_t left, const struct secret_list *s)
{
	for (int i = 0; s && i < s->n; i++) {
		size_t n = strlen(s->items[i]);

		if (n <= left && memcmp(in, s->items[i], n) == 0)
			return n;
		if (n > left && left >= SCRUB_MIN_PREFIX && memcmp(in, s->items[i], left) == 0)
			return left;
	}
	return 0;
}

/* Length of a valid UTF-8 sequence at in[0..left) (RFC 3629), or 0. */
static size_t utf8_length(const unsigned char *in, size_t left)
{
	unsigned char c = in[0];
	size_t n;
	unsigned min_second = 0x80, max_second = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			min_second = 0xA0;  /* overlong */
		else if (c == 0xED)
			max_second = 0x9F;  /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			min_second = 0x90;
		else if (c == 0xF4)
			max_second = 0x8F;  /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n > left || in[1] < min_second || in[1] > max_second)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((in[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

static bool put(char *out, size_t len, size_t *o, const char *bytes, size_t n)
{
	if (*o + n + 1 > len)
		return false;
	memcpy(out + *o, bytes, n);
	*o += n;
	return true;
}

size_t scrub_text(char *out, size_t len, const char *in, size_t in_len,
		  const struct secret_list *secrets)
{
	size_t o = 0, i = 0;

	if (len == 0)
		return 0;
	while (i < in_len) {
		const unsigned char *u = (const unsigned char *)in + i;
		size_t hidden = secret_at(in + i, in_len - i, secrets);
		size_t n;
		bool fits;

		if (hidden) {
			fits = put(out, len, &o, MASK, sizeof(MASK) - 1);
			n = hidden;
		} else if (*u < 0x20 || *u == 0x7f) {
			fits = put(out, len, &o, " ", 1);
			n = 1;
		} else if ((n = utf8_length(u, in_len - i)) != 0) {
			fits = put(out, len, &o, in + i, n);
		} else {
			fits = put(out, len, &o, "?", 1);
			n = 1;
		}
		if (!fits)
			break;
		i += n;
	}
	out[o] = '\0';
	return o;
}
