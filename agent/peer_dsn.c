/*
 * Filtering a catalog DSN down to the peer's address: see peer_dsn.h.
 * Kept apart from the probes and from the peer connections so that the
 * one place a password passes through is small and unit-tested.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "peer_dsn.h"

/* What an address part may hold: no spaces, quotes or control characters. */
static bool plain_value(const char *v)
{
	for (const unsigned char *c = (const unsigned char *)v; *c; c++)
		if (*c <= ' ' || *c == '\'' || *c == '"' || *c == '\\' || *c == 0x7f)
			return false;
	return true;
}

/* Copy one part; false when it does not fit or is not plain. */
static bool take(char *dst, size_t len, const char *value)
{
	if (!value)
		return true;
	if (strlen(value) >= len || !plain_value(value))
		return false;
	snprintf(dst, len, "%s", value);
	return true;
}

static bool digits_and_commas(const char *v)
{
	for (; *v; v++)
		if ((*v < '0' || *v > '9') && *v != ',')
			return false;
	return true;
}

/* Every host of a list must be a network name or address, never a socket path. */
static bool network_hosts(const char *hosts)
{
	for (const char *h = hosts;; h++) {
		size_t len = strcspn(h, ",");

		if (len == 0 || h[0] == '/' || h[0] == '@')
			return false;
		h += len;
		if (!*h)
			return true;
	}
}

static void wipe(PQconninfoOption *opts)
{
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (o->val)
			explicit_bzero(o->val, strlen(o->val));
}

void peer_dsn_filter(const char *dsn, struct peer_address *out)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = dsn ? PQconninfoParse(dsn, &errmsg) : NULL;
	bool ok = opts != NULL;

	out->usable = false;
	out->host[0] = out->hostaddr[0] = out->port[0] = out->dbname[0] = '\0';
	PQfreemem(errmsg); /* it may quote the DSN */
	for (PQconninfoOption *o = opts; ok && o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "host") == 0)
			ok = take(out->host, sizeof(out->host), o->val);
		else if (strcmp(o->keyword, "hostaddr") == 0)
			ok = take(out->hostaddr, sizeof(out->hostaddr), o->val);
		else if (strcmp(o->keyword, "port") == 0)
			ok = take(out->port, sizeof(out->port), o->val) && digits_and_commas(o->val);
		else if (strcmp(o->keyword, "dbname") == 0)
			ok = take(out->dbname, sizeof(out->dbname), o->val);
	}
	wipe(opts);
	PQconninfoFree(opts);
	if (ok && out->host[0] && !network_hosts(out->host))
		ok = false;
	if (ok && !out->host[0] && !out->hostaddr[0])
		ok = false; /* libpq would pick a local socket: this node, not the peer */
	if (!ok)
		out->host[0] = out->hostaddr[0] = out->port[0] = out->dbname[0] = '\0';
	out->usable = ok;
}
