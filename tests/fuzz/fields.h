/*
 * fields.h - for the targets whose input is several text fields: a check
 * that says why it failed, and the splitting of an input into lines.
 */
#ifndef SQUALL_FUZZ_FIELDS_H
#define SQUALL_FUZZ_FIELDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An invariant of the code under test: its failure is a bug. */
#define FUZZ_CHECKF(cond, ...) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__,	\
		    __LINE__, #cond);					\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		abort();						\
	}								\
} while (0)

#define FUZZ_MAXFIELDS 8

/*
 * The input as up to FUZZ_MAXFIELDS lines: each field is a NUL-terminated
 * copy (so a NUL byte in a line ends that field early); a missing field
 * is NULL. The last field takes the rest of the input, newlines and all.
 */
struct fuzz_fields {
	char	*buf;
	char	*f[FUZZ_MAXFIELDS];
	size_t	 len[FUZZ_MAXFIELDS];	/* bytes before the newline */
};

static inline int
fuzz_split(struct fuzz_fields *ff, const uint8_t *data, size_t size,
    size_t nfields)
{
	char *p, *end, *nl;

	memset(ff, 0, sizeof(*ff));
	if (nfields > FUZZ_MAXFIELDS)
		nfields = FUZZ_MAXFIELDS;
	if ((ff->buf = malloc(size + 1)) == NULL)
		return -1;
	if (size > 0)
		memcpy(ff->buf, data, size);
	ff->buf[size] = '\0';
	p = ff->buf;
	end = ff->buf + size;
	for (size_t i = 0; i < nfields && p <= end; i++) {
		nl = i + 1 < nfields ? memchr(p, '\n', (size_t)(end - p)) :
		    NULL;
		ff->f[i] = p;
		ff->len[i] = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return 0;
}

static inline void
fuzz_fields_free(struct fuzz_fields *ff)
{
	free(ff->buf);
}

#endif
