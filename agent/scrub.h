/*
 * Making server-supplied text safe to keep: configured secrets removed,
 * control characters blanked, invalid UTF-8 replaced and the result
 * truncated on a character boundary. Applied once, where text from a
 * PostgreSQL server (errors, notices, catalog strings) enters the
 * agent, so that every reason and log line built from it is already
 * clean: a server may echo the password it was sent, and a man in the
 * middle may send anything.
 */
#ifndef PGBDR_SCRUB_H
#define PGBDR_SCRUB_H

#include <stddef.h>

#define SCRUB_MAX_SECRETS 4

/* Borrowed pointers; empty or NULL entries are skipped. */
struct secret_list {
	const char *items[SCRUB_MAX_SECRETS];
	int n;
};

void secret_list_add(struct secret_list *s, const char *secret);

/*
 * Copy in[0..in_len) into out (len bytes, always NUL-terminated):
 * every secret becomes "***" (also one cut short by the end of the
 * input), bytes below 0x20 and DEL become spaces, each byte of an
 * invalid UTF-8 sequence becomes '?', and the copy stops before a
 * character that does not fit. Returns the length written.
 */
size_t scrub_text(char *out, size_t len, const char *in, size_t in_len,
		  const struct secret_list *secrets);

#endif
