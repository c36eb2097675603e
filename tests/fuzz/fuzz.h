/*
 * fuzz.h - what the fuzz targets share: libFuzzer's entry point (each
 * target defines it; replay.c calls it in make check, libFuzzer in make
 * fuzz) and a check that aborts, NDEBUG or not, so that both see it.
 */
#ifndef SQUALL_FUZZ_H
#define SQUALL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int	 LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #cond);					\
		abort();						\
	}								\
} while (0)

#endif /* SQUALL_FUZZ_H */
