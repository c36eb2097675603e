/*
 * test_utf8.c - core/utf8.c against the definition (RFC 3629): every
 * code point, every way of being invalid, and the same checks cut into
 * pieces at every byte, as fragments arrive.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <string.h>

#include "../../core/core.h"

TestSuite(utf8);

/* Whole: 1 valid, 0 invalid (a bad byte or an unfinished character). */
static int
valid(const char *s, size_t len)
{
	unsigned st = 0;

	return sqc_utf8_check(&st, (const unsigned char *)s, len) == 0 &&
	    st == 0;
}

/* The same, fed in two pieces cut at every place. */
static int
valid_cut(const char *s, size_t len)
{
	int v = valid(s, len);

	for (size_t cut = 0; cut <= len; cut++) {
		unsigned st = 0;
		int ok = sqc_utf8_check(&st, (const unsigned char *)s, cut) ==
		    0 && sqc_utf8_check(&st, (const unsigned char *)s + cut,
		    len - cut) == 0 && st == 0;

		cr_assert_eq(ok, v, "cut at %zu changes the answer", cut);
	}
	return v;
}

/* A code point as UTF-8 (RFC 3629 3), surrogates too. */
static size_t
encode(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

Test(utf8, every_code_point_but_surrogates)
{
	for (unsigned cp = 0; cp <= 0x10ffff; cp++) {
		char b[4];
		size_t n = encode(cp, b);
		int surrogate = cp >= 0xd800 && cp <= 0xdfff;

		cr_assert_eq(valid(b, n), !surrogate, "U+%04X", cp);
		/* every proper prefix is unfinished */
		for (size_t k = 1; k < n; k++)
			cr_assert_eq(valid(b, k), 0, "U+%04X cut", cp);
	}
}

Test(utf8, invalid_forms)
{
	static const struct {
		const char *s;
		size_t len;
	} bad[] = {
		{ "\x80", 1 }, { "\xbf", 1 },		/* lone continuation */
		{ "\xc0\x80", 2 }, { "\xc1\xbf", 2 },	/* overlong */
		{ "\xe0\x80\x80", 3 }, { "\xe0\x9f\xbf", 3 },
		{ "\xf0\x80\x80\x80", 4 }, { "\xf0\x8f\xbf\xbf", 4 },
		{ "\xed\xa0\x80", 3 }, { "\xed\xbf\xbf", 3 },	/* surrogates */
		{ "\xf4\x90\x80\x80", 4 },		/* past U+10FFFF */
		{ "\xf5\x80\x80\x80", 4 }, { "\xff", 1 }, { "\xfe", 1 },
		{ "\xc3", 1 }, { "\xe2\x82", 2 },	/* unfinished */
		{ "\xc3\x28", 2 }, { "\xe2\x28\xa1", 3 },
		{ "a\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
		  "edited", 21 },			/* Autobahn 6.3.1 */
	};
	static const char good[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"
	    "\xb5 \xf4\x8f\xbf\xbf \xef\xbf\xbf \xed\x9f\xbf \xee\x80\x80";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(valid_cut(bad[i].s, bad[i].len), 0, "case %zu", i);
	cr_assert_eq(valid_cut(good, sizeof(good) - 1), 1);
	cr_assert_eq(valid_cut("", 0), 1);
	cr_assert_eq(valid_cut("plain ASCII", 11), 1);
}

/* The failure comes at the piece that holds the bad byte. */
Test(utf8, fails_at_the_piece_with_the_bad_byte)
{
	unsigned st = 0;

	cr_assert_eq(sqc_utf8_check(&st, (const unsigned char *)"ok \xce", 4),
	    0);
	cr_assert_neq(st, 0);
	cr_assert_eq(sqc_utf8_check(&st, (const unsigned char *)"\xba", 1), 0);
	cr_assert_eq(st, 0);
	cr_assert_eq(sqc_utf8_check(&st, (const unsigned char *)"x\xff", 2),
	    -1);
}
