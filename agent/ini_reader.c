/*
 * The INI reader behind config.c. It replaces libinih, whose Debian
 * build cuts lines at 199 characters (a dsn with SSL file paths is
 * longer), stops at the first error, cannot include files, and reads
 * whatever it is given for as long as it keeps coming.
 *
 * The syntax is libinih's, as the classic database.ini and the example
 * config use it:
 * - comments are lines starting with ';' or '#', or ';' after
 *   whitespace at the end of a value or section header;
 * - "key = value" or "key: value", split at the first '=' or ':',
 *   both sides trimmed; leading whitespace is ignored (no continuation
 *   lines), and so are a UTF-8 BOM and CRLF line ends;
 * - "[name]" opens a section;
 * - "%include FILE" is ours: the caller reads FILE there.
 *
 * Bounds: the whole file (and so any line) is capped at
 * INI_MAX_FILE_BYTES, a NUL byte makes its line an error, and only
 * regular files are read, so /dev/zero or a FIFO fails at once.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ini_reader.h"

#define SYNTAX_ERROR "syntax error: expected [section], key = value, %include FILE, " \
	"or a comment starting with ';' or '#'"

int ini_open(struct ini_reader *r, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int flags;

	memset(r, 0, sizeof(*r));
	/* O_NONBLOCK: opening a FIFO must not wait for a writer */
	r->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (r->fd < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "cannot open: %s", S_ISDIR(st.st_mode) ?
			 "is a directory" : "not a regular file");
		close(r->fd);
		r->fd = -1;
		return -1;
	}
	flags = fcntl(r->fd, F_GETFL);
	if (flags >= 0)
		fcntl(r->fd, F_SETFL, flags & ~O_NONBLOCK);
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	return 0;
}

void ini_close(struct ini_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->buf) {
		explicit_bzero(r->buf, r->cap);
		free(r->buf);
	}
	r->buf = NULL;
	r->cap = 0;
	explicit_bzero(r->io, sizeof(r->io));
}

/* Stops reading: the next ini_next() reports msg, then INI_END. */
static void set_fatal(struct ini_reader *r, const char *msg)
{
	snprintf(r->error, sizeof(r->error), "%s", msg);
	r->fatal = true;
	r->eof = true;
	r->io_pos = r->io_len;
}

/* The next raw byte, or -1 at the end of the file (or on a fatal error). */
static int next_byte(struct ini_reader *r)
{
	if (r->io_pos == r->io_len) {
		ssize_t n;

		if (r->eof)
			return -1;
		do
			n = read(r->fd, r->io, sizeof(r->io));
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			char msg[96];

			snprintf(msg, sizeof(msg), "read error: %s", strerror(errno));
			set_fatal(r, msg);
			return -1;
		}
		if (n == 0) {
			r->eof = true;
			return -1;
		}
		r->total += (size_t)n;
		if (r->total > INI_MAX_FILE_BYTES) {
			set_fatal(r, "file larger than 1MB (is it a config file?)");
			return -1;
		}
		r->io_len = (size_t)n;
		r->io_pos = 0;
	}
	return (unsigned char)r->io[r->io_pos++];
}

static int append_byte(struct ini_reader *r, size_t *len, char c)
{
	if (*len + 1 >= r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 256;
		char *buf = malloc(cap);

		if (!buf) {
			set_fatal(r, "out of memory");
			return -1;
		}
		if (r->buf) {
			memcpy(buf, r->buf, *len);
			explicit_bzero(r->buf, r->cap);
			free(r->buf);
		}
		r->buf = buf;
		r->cap = cap;
	}
	r->buf[(*len)++] = c;
	return 0;
}

/*
 * One line into r->buf, without its line end. 1 with a line, 0 at the
 * end. *has_nul tells whether the line held a NUL byte.
 */
static int read_line(struct ini_reader *r, bool *has_nul)
{
	size_t len = 0;
	int c;

	*has_nul = false;
	if (r->eof && r->io_pos == r->io_len)
		return 0;
	while ((c = next_byte(r)) >= 0 && c != '\n') {
		if (c == '\0')
			*has_nul = true;
		if (append_byte(r, &len, (char)c) < 0)
			return 0;
	}
	if (r->fatal)
		return 0;
	if (c < 0 && len == 0)
		return 0;
	if (append_byte(r, &len, '\0') < 0)
		return 0;
	if (len >= 2 && r->buf[len - 2] == '\r')
		r->buf[len - 2] = '\0';
	r->line++;
	return 1;
}

static char *lskip(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

static void rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
}

/* The first of chars in s, or an inline comment (';' after whitespace), or the end. */
static char *find_chars_or_comment(char *s, const char *chars)
{
	bool was_space = false;

	while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static void section_item(char *s, struct ini_item *item)
{
	char *end = find_chars_or_comment(s + 1, "]");
	char *rest;

	if (*end != ']') {
		item->kind = INI_ERROR;
		item->error = SYNTAX_ERROR;
		return;
	}
	*end = '\0';
	rest = lskip(end + 1);
	if (*rest && *rest != ';' && *rest != '#') {
		item->kind = INI_ERROR;
		item->error = "unexpected text after the section header";
		return;
	}
	s = lskip(s + 1);
	rstrip(s);
	item->kind = INI_SECTION;
	item->name = s;
}

static void include_item(char *s, struct ini_item *item)
{
	char *end = find_chars_or_comment(s, NULL);

	*end = '\0';
	rstrip(s);
	if (!*s) {
		item->kind = INI_ERROR;
		item->error = "%include needs a file name";
		return;
	}
	item->kind = INI_INCLUDE;
	item->name = s;
}

static void key_item(char *s, struct ini_item *item)
{
	char *end = find_chars_or_comment(s, "=:");
	char *value;

	if (*end != '=' && *end != ':') {
		item->kind = INI_ERROR;
		item->error = SYNTAX_ERROR;
		return;
	}
	*end = '\0';
	rstrip(s);
	if (!*s) {
		item->kind = INI_ERROR;
		item->error = SYNTAX_ERROR;
		return;
	}
	value = lskip(end + 1);
	end = find_chars_or_comment(value, NULL);
	*end = '\0';
	rstrip(value);
	item->kind = INI_KEY;
	item->name = s;
	item->value = value;
}

void ini_next(struct ini_reader *r, struct ini_item *item)
{
	bool has_nul;
	char *s;

	memset(item, 0, sizeof(*item));
	while (read_line(r, &has_nul)) {
		item->line = r->line;
		if (has_nul) {
			item->kind = INI_ERROR;
			item->error = "NUL byte in the line (is it a text file?)";
			return;
		}
		s = r->buf;
		if (r->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
			s += 3;
		s = lskip(s);
		rstrip(s);
		if (*s == '\0' || *s == ';' || *s == '#')
			continue;
		if (*s == '[')
			section_item(s, item);
		else if (strncmp(s, "%include", 8) == 0 && (s[8] == '\0' || isspace((unsigned char)s[8])))
			include_item(lskip(s + 8), item);
		else
			key_item(s, item);
		return;
	}
	if (r->fatal) {
		item->kind = INI_ERROR;
		item->line = r->line + 1;
		item->error = r->error;
		r->fatal = false; /* reported once; INI_END next */
		return;
	}
	item->kind = INI_END;
}
