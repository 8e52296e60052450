/*
 * A bounded INI reader: one file, item by item ([section], key = value,
 * %include FILE), with the line each came from. Lines may be of any
 * length up to the file's cap; a file that is not a regular file, or
 * longer than the cap, is refused rather than read forever.
 */
#ifndef PGBDR_INI_READER_H
#define PGBDR_INI_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The most a config file may hold; also caps the length of one line. */
#define INI_MAX_FILE_BYTES (1024 * 1024)

enum ini_kind {
	INI_END = 0,  /* end of file, or after a fatal error */
	INI_SECTION,  /* name */
	INI_KEY,      /* name, value */
	INI_INCLUDE,  /* name: the file to include, as written */
	INI_ERROR,    /* error: this line is wrong; reading goes on */
};

struct ini_item {
	enum ini_kind kind;
	int line;
	const char *name;  /* valid until the next ini_next() */
	const char *value;
	const char *error;
};

struct ini_reader {
	int fd;
	dev_t dev;
	ino_t ino;
	int line;
	size_t total;      /* bytes read so far */
	bool eof;
	bool fatal;        /* a read error or a file over the cap */
	char *buf;         /* the current line, wiped when done */
	size_t cap;
	char io[4096];     /* raw bytes, wiped when done */
	size_t io_len, io_pos;
	char error[128];
};

/*
 * Opens path for reading: refuses devices, FIFOs and directories without
 * blocking on them. 0, or -1 with a reason in err.
 */
int ini_open(struct ini_reader *r, const char *path, char *err, size_t errlen);

/* The next item; INI_END at the end (also after an INI_ERROR that was fatal). */
void ini_next(struct ini_reader *r, struct ini_item *item);

/* Closes the file and wipes every byte of it the reader held. */
void ini_close(struct ini_reader *r);

#endif
