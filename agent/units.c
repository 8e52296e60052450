/*
 * Value types shared by the config file and request parameters: sizes,
 * durations, booleans, bounded integers, listen addresses and CIDR
 * lists. Everything here is pure parsing and printing; callers decide
 * what an error means for them.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "units.h"

struct unit {
	const char *name;
	uint64_t mult;
};

/*
 * Fraction digits kept when scaling "1.5GB": six keep the product with
 * the largest multiplier (2^40) inside 64 bits, and finer precision
 * than a millionth of a unit means nothing for sizes or timeouts.
 */
#define FRACTION_DIGITS 6

/* A plain unsigned decimal: digits, optionally "." and more digits. */
struct decimal {
	uint64_t whole;
	uint64_t frac;  /* numerator over frac_den */
	uint64_t frac_den;
};

static const char *skip_space(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* Length of s without trailing whitespace. */
static size_t trimmed_len(const char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return n;
}

static bool word_equals(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/*
 * Reads digits[.digits] at *p. No sign, no exponent, no hex: strtod
 * would take "inf", "1e3" and "0x10", none of which is a size.
 */
static int read_decimal(const char **p, struct decimal *d)
{
	const char *s = *p;
	int kept = 0;

	d->whole = 0;
	d->frac = 0;
	d->frac_den = 1;
	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		uint64_t digit = (uint64_t)(*s - '0');

		if (d->whole > (UINT64_MAX - digit) / 10)
			return -1;
		d->whole = d->whole * 10 + digit;
	}
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		for (; isdigit((unsigned char)*s); s++) {
			if (kept == FRACTION_DIGITS)
				continue;
			d->frac = d->frac * 10 + (uint64_t)(*s - '0');
			d->frac_den *= 10;
			kept++;
		}
	}
	*p = s;
	return 0;
}

/* d * mult rounded to the nearest integer, or -1 past INT64_MAX. */
static int scale_decimal(const struct decimal *d, uint64_t mult, int64_t *out)
{
	uint64_t whole, frac;

	if (d->whole > (uint64_t)INT64_MAX / mult)
		return -1;
	whole = d->whole * mult;
	frac = (d->frac * mult + d->frac_den / 2) / d->frac_den;
	if (frac > (uint64_t)INT64_MAX - whole)
		return -1;
	*out = (int64_t)(whole + frac);
	return 0;
}

/*
 * NUMBER [spaces] [UNIT], with surrounding whitespace allowed. An empty
 * unit takes bare_mult. The unit must be one whole table entry.
 */
static int parse_scaled(const char *s, const struct unit *units,
			uint64_t bare_mult, int64_t *out)
{
	struct decimal d;
	const char *unit;
	size_t unit_len;

	s = skip_space(s);
	if (read_decimal(&s, &d) < 0)
		return -1;
	unit = skip_space(s);
	unit_len = trimmed_len(unit);
	if (unit_len == 0)
		return scale_decimal(&d, bare_mult, out);
	for (const struct unit *u = units; u->name; u++) {
		if (word_equals(unit, unit_len, u->name))
			return scale_decimal(&d, u->mult, out);
	}
	return -1;
}

#define KB ((uint64_t)1024)

static const struct unit size_units[] = {
	{ "b", 1 },
	{ "k", KB }, { "kb", KB }, { "kib", KB },
	{ "m", KB * KB }, { "mb", KB * KB }, { "mib", KB * KB },
	{ "g", KB * KB * KB }, { "gb", KB * KB * KB }, { "gib", KB * KB * KB },
	{ "t", KB * KB * KB * KB }, { "tb", KB * KB * KB * KB },
	{ "tib", KB * KB * KB * KB },
	{ NULL, 0 },
};

int parse_size(const char *s, int64_t *out)
{
	return parse_scaled(s, size_units, 1, out);
}

#define MS_PER_S ((uint64_t)1000)
#define MS_PER_MIN (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_MIN)
#define MS_PER_D (24 * MS_PER_H)

static const struct unit duration_units[] = {
	{ "ms", 1 },
	{ "s", MS_PER_S },
	{ "min", MS_PER_MIN }, { "m", MS_PER_MIN },
	{ "h", MS_PER_H },
	{ "d", MS_PER_D },
	{ NULL, 0 },
};

int parse_duration_ms(const char *s, int64_t *out)
{
	return parse_scaled(s, duration_units, MS_PER_S, out);
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t n;

	s = skip_space(s);
	n = trimmed_len(s);
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (word_equals(s, n, yes[i])) {
			*out = true;
			return 0;
		}
		if (word_equals(s, n, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	s = skip_space(s);
	if (*s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *skip_space(end) != '\0')
		return -1;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * The largest unit in which the value is at least one, rounded to a
 * tenth; ".0" is dropped. Values below the smallest unit print as
 * plain numbers with the fallback suffix.
 */
static void format_scaled(int64_t value, const struct unit *units,
			  const char *fallback, char *buf, size_t len)
{
	const char *sign = value < 0 ? "-" : "";
	/* -(value + 1) + 1: no overflow for INT64_MIN */
	uint64_t mag = value < 0 ? (uint64_t)(-(value + 1)) + 1 : (uint64_t)value;

	if (len == 0)
		return;
	for (const struct unit *u = units; u->name; u++) {
		uint64_t q = mag / u->mult;
		uint64_t r = mag % u->mult;
		uint64_t tenths = q * 10 + (r * 10 + u->mult / 2) / u->mult;

		if (q == 0)
			continue;
		if (tenths % 10 == 0)
			snprintf(buf, len, "%s%" PRIu64 "%s", sign, tenths / 10, u->name);
		else
			snprintf(buf, len, "%s%" PRIu64 ".%" PRIu64 "%s", sign,
				 tenths / 10, tenths % 10, u->name);
		return;
	}
	snprintf(buf, len, "%s%" PRIu64 "%s", sign, mag, fallback);
}

void format_size(int64_t bytes, char *buf, size_t len)
{
	static const struct unit units[] = {
		{ "TB", KB * KB * KB * KB },
		{ "GB", KB * KB * KB },
		{ "MB", KB * KB },
		{ "kB", KB },
		{ NULL, 0 },
	};

	format_scaled(bytes, units, "B", buf, len);
}

void format_duration_ms(int64_t ms, char *buf, size_t len)
{
	static const struct unit units[] = {
		{ "d", MS_PER_D },
		{ "h", MS_PER_H },
		{ "min", MS_PER_MIN },
		{ "s", MS_PER_S },
		{ NULL, 0 },
	};

	format_scaled(ms, units, "ms", buf, len);
}

/* 1..65535, digits only: "+80" or " 80" in a listen address is a typo. */
static int parse_port(const char *s, int *out)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 65535)
			return -1;
	}
	if (v < 1)
		return -1;
	*out = (int)v;
	return 0;
}

/* A host name or IPv4 literal: letters, digits, '.', '-', '_'. */
static bool valid_host_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '-' && c != '_')
			return false;
	}
	return true;
}

static bool all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* "[v6]:port": the brackets are what tell the port apart from the address. */
static int parse_bracketed(const char *s, struct listen_addr *out)
{
	const char *close = strchr(s, ']');
	size_t n;
	struct in6_addr addr;

	if (!close || close[1] != ':')
		return -1;
	n = (size_t)(close - (s + 1));
	if (n == 0 || n >= sizeof(out->host))
		return -1;
	memcpy(out->host, s + 1, n);
	out->host[n] = '\0';
	if (inet_pton(AF_INET6, out->host, &addr) != 1)
		return -1;
	return parse_port(close + 2, &out->port);
}

int parse_listen_addr(const char *s, struct listen_addr *out)
{
	const char *colon;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (*s == '\0' || strcasecmp(s, "off") == 0)
		return 0;
	if (s[0] == '[') {
		if (parse_bracketed(s, out) < 0)
			goto bad;
		out->enabled = true;
		return 0;
	}
	/* A bare port number means every address, like ":9200". */
	if (all_digits(s)) {
		if (parse_port(s, &out->port) < 0)
			goto bad;
		out->enabled = true;
		return 0;
	}
	colon = strchr(s, ':');
	if (!colon || strchr(colon + 1, ':'))
		goto bad; /* no port, or an IPv6 address without brackets */
	n = (size_t)(colon - s);
	if (n == 1 && s[0] == '*')
		n = 0;
	else if (n > 0 && (n >= sizeof(out->host) || !valid_host_name(s, n)))
		goto bad;
	memcpy(out->host, s, n);
	out->host[n] = '\0';
	if (parse_port(colon + 1, &out->port) < 0)
		goto bad;
	out->enabled = true;
	return 0;
bad:
	memset(out, 0, sizeof(*out));
	return -1;
}

/* Zero the bits past the prefix, so "10.1.2.3/8" means 10.0.0.0/8. */
static void mask_host_bits(uint8_t *addr, int bytes, int prefix)
{
	for (int i = 0; i < bytes; i++) {
		int keep = prefix - i * 8;

		if (keep >= 8)
			continue;
		addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xFF << (8 - keep));
	}
}

/* One "addr[/prefix]" token of at most len characters. */
static int parse_cidr(const char *tok, size_t len, struct cidr *out)
{
	char text[INET6_ADDRSTRLEN + 8];
	char *slash;
	int bytes;

	if (len >= sizeof(text))
		return -1;
	memcpy(text, tok, len);
	text[len] = '\0';
	slash = strchr(text, '/');
	if (slash)
		*slash = '\0';

	memset(out, 0, sizeof(*out));
	out->family = strchr(text, ':') ? AF_INET6 : AF_INET;
	bytes = out->family == AF_INET6 ? 16 : 4;
	if (inet_pton(out->family, text, out->addr) != 1)
		return -1;
	out->prefix = bytes * 8;
	if (slash) {
		long prefix;

		if (!all_digits(slash + 1) || strlen(slash + 1) > 3)
			return -1;
		prefix = strtol(slash + 1, NULL, 10);
		if (prefix > bytes * 8)
			return -1;
		out->prefix = (int)prefix;
	}
	mask_host_bits(out->addr, bytes, out->prefix);
	return 0;
}

int cidr_list_parse(const char *s, struct cidr_list *out)
{
	static const char separators[] = ", \t\r\n";
	int cap = 0;

	out->items = NULL;
	out->count = 0;
	for (;;) {
		size_t len;

		s += strspn(s, separators);
		if (*s == '\0')
			return 0;
		len = strcspn(s, separators);
		if (out->count == cap) {
			int ncap = cap ? cap * 2 : 4;
			struct cidr *items = realloc(out->items, (size_t)ncap * sizeof(*items));

			if (!items)
				goto fail;
			out->items = items;
			cap = ncap;
		}
		if (parse_cidr(s, len, &out->items[out->count]) < 0)
			goto fail;
		out->count++;
		s += len;
	}
fail:
	cidr_list_free(out);
	return -1;
}

void cidr_list_free(struct cidr_list *list)
{
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

static bool prefix_matches(const uint8_t *net, const uint8_t *addr, int prefix)
{
	int full = prefix / 8;
	int rest = prefix % 8;

	if (memcmp(net, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net[full] ^ addr[full]) & (uint8_t)(0xFF << (8 - rest))) == 0;
}

/*
 * A peer is looked at in both forms, IPv4 and IPv4-mapped IPv6, because
 * a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d while the
 * operator writes 10.0.0.0/8.
 */
bool cidr_list_allows(const struct cidr_list *list, const struct sockaddr *sa)
{
	static const uint8_t mapped_prefix[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF,
	};
	uint8_t v4[4], v6[16];
	bool has_v4 = false;

	if (!list || list->count == 0)
		return true;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(v4, &sin->sin_addr, 4);
		memcpy(v6, mapped_prefix, 12);
		memcpy(v6 + 12, v4, 4);
		has_v4 = true;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(v6, &sin6->sin6_addr, 16);
		if (memcmp(v6, mapped_prefix, 12) == 0) {
			memcpy(v4, v6 + 12, 4);
			has_v4 = true;
		}
	} else {
		return false;
	}

	for (int i = 0; i < list->count; i++) {
		const struct cidr *c = &list->items[i];

		if (c->family == AF_INET && has_v4 &&
		    prefix_matches(c->addr, v4, c->prefix))
			return true;
		if (c->family == AF_INET6 && prefix_matches(c->addr, v6, c->prefix))
			return true;
	}
	return false;
}
