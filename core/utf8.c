/*
 * utf8.c - UTF-8 validation (RFC 3629, as RFC 6455 8.1 requires of text
 * messages), incremental: the WebSocket bridge checks a text message
 * piece by piece as it arrives, so that an invalid byte fails the
 * connection at the fragment that holds it, not when the message ends.
 * Pure; any thread (the bridge calls it on the libwebsockets thread).
 */
#include "config.h"

#include <stddef.h>

#include "core.h"

/* The range the next continuation byte must be in, with the count left. */
#define ST(left, lo, hi)	((left) | (lo) << 8 | (unsigned)(hi) << 16)

/*
 * Checks len bytes at p, continuing from *state (0 at the start of a
 * message) and updating it. Returns 0, or -1 at the first byte that
 * cannot be UTF-8 (overlong forms, surrogates and code points past
 * U+10FFFF included). A message is valid if it ends with *state == 0:
 * else it stopped inside a character.
 */
int
sqc_utf8_check(unsigned *state, const unsigned char *p, size_t len)
{
	unsigned st = *state;

	for (size_t i = 0; i < len; i++) {
		unsigned c = p[i];

		if (st == 0) {
			if (c < 0x80)
				continue;
			if (c >= 0xc2 && c <= 0xdf)
				st = ST(1, 0x80, 0xbf);
			else if (c == 0xe0)
				st = ST(2, 0xa0, 0xbf);	/* no overlong */
			else if (c == 0xed)
				st = ST(2, 0x80, 0x9f);	/* no surrogate */
			else if (c >= 0xe1 && c <= 0xef)
				st = ST(2, 0x80, 0xbf);
			else if (c == 0xf0)
				st = ST(3, 0x90, 0xbf);	/* no overlong */
			else if (c >= 0xf1 && c <= 0xf3)
				st = ST(3, 0x80, 0xbf);
			else if (c == 0xf4)
				st = ST(3, 0x80, 0x8f);	/* to U+10FFFF */
			else
				return -1;
			continue;
		}
		if (c < ((st >> 8) & 0xff) || c > st >> 16)
			return -1;
		st = (st & 3) - 1;
		if (st != 0)
			st = ST(st, 0x80, 0xbf);
	}
	*state = st;
	return 0;
}
