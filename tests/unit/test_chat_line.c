/*
 * test_chat_line.c - the chat plugin's check of what a broker brings
 * (plugins/chat_line.c): UTF-8 as RFC 3629 defines it, the three chat
 * lines and nothing else, and the length limit. The lines chat_line
 * builds always pass.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/chat_line.h"

TestSuite(chat_line);

#define S(lit)	lit, sizeof(lit) - 1

static void
utf8(const char *s, size_t len, int want)
{
	cr_assert_eq(chat_utf8_ok(s, len), want, "\"%s\" (%zu bytes)", s, len);
}

Test(chat_line, utf8_is_rfc_3629)
{
	utf8(S(""), 1);
	utf8(S("plain ASCII"), 1);
	utf8(S("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"), 1);
	utf8(S("\xc2\x80 \xdf\xbf"), 1);		/* 2-byte ends */
	utf8(S("\xe0\xa0\x80 \xef\xbf\xbf"), 1);	/* 3-byte ends */
	utf8(S("\xed\x9f\xbf \xee\x80\x80"), 1);	/* around surrogates */
	utf8(S("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"), 1); /* 4-byte ends */
	utf8(S("\x80"), 0);			/* continuation alone */
	utf8(S("\xc3"), 0);			/* cut short */
	utf8(S("\xe2\x82"), 0);
	utf8(S("\xf0\x9f\x98"), 0);
	utf8(S("\xc3("), 0);			/* bad continuation */
	utf8(S("\xe2(\xa1"), 0);
	utf8(S("\xc0\xaf"), 0);			/* overlong '/' */
	utf8(S("\xc1\xbf"), 0);
	utf8(S("\xe0\x80\xaf"), 0);
	utf8(S("\xe0\x9f\xbf"), 0);
	utf8(S("\xf0\x80\x80\xaf"), 0);
	utf8(S("\xf0\x8f\xbf\xbf"), 0);
	utf8(S("\xed\xa0\x80"), 0);		/* surrogates */
	utf8(S("\xed\xbf\xbf"), 0);
	utf8(S("\xf4\x90\x80\x80"), 0);		/* past U+10FFFF */
	utf8(S("\xf5\x80\x80\x80"), 0);
	utf8(S("\xfe"), 0);
	utf8(S("\xff"), 0);
	utf8(S("\0"), 1);			/* NUL is UTF-8... */
	cr_assert_not_null(chat_line_check(S("[::1] at 2026-01-01 00:00:00: "
	    "a\0b"), 100), "...but never in a chat line");
}

static void
ok(const char *s, size_t len)
{
	const char *why = chat_line_check(s, len, 1000);

	cr_assert_null(why, "\"%s\" refused: %s", s, why);
}

static void
bad(const char *s, size_t len, const char *want)
{
	const char *why = chat_line_check(s, len, 1000);

	cr_assert_not_null(why, "\"%s\" accepted", s);
	cr_assert_str_eq(why, want, "\"%s\"", s);
}

Test(chat_line, the_three_lines_pass)
{
	ok(S("[127.0.0.1] joined at 2026-11-29 03:04:05"));
	ok(S("[127.0.0.1] left at 2026-11-29 03:04:05"));
	ok(S("[127.0.0.1] at 2026-11-29 03:04:05: hello"));
	ok(S("[127.0.0.1] at 2026-11-29 03:04:05: "));	/* empty message */
	ok(S("[::1] at 2026-11-29 03:04:05: ] joined at [ \n\ttoo"));
	ok(S("[fe80::1%eth0] at 2026-11-29 03:04:05: x"));
	ok(S("[::ffff:10.0.0.1] at 2026-11-29 03:04:05: x"));
	ok(S("[1.2.3.4] at 2026-11-29 03:04:05: h\xc3\xa9 \xf0\x9f\x98\x80"));
}

Test(chat_line, anything_else_is_refused)
{
	bad(S(""), "not a chat line");
	bad(S("hello"), "not a chat line");
	bad(S("["), "not a chat line");
	bad(S("[1.2.3.4]"), "not a chat line");
	bad(S("[] at 2026-11-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4 at 2026-11-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2 3.4] at 2026-11-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4]  at 2026-11-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4] said at 2026-11-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29 03:04:05 x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29 03:04:05:x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29 03:04:05:"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29 03:04: x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026/11/29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29T03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-1a-29 03:04:05: x"), "not a chat line");
	bad(S("[1.2.3.4] joined at 2026-11-29 03:04:05 "), "not a chat line");
	bad(S("[1.2.3.4] joined at 2026-11-29 03:04:0"), "not a chat line");
	bad(S("[1.2.3.4] joined at "), "not a chat line");
	bad(S("[1.2.3.4] left at 2026-11-29 03:04:05\n"), "not a chat line");
	bad(S("[1.2.3.4] at 2026-11-29 03:04:05: \xff"), "not UTF-8 text");
	bad(S("\xc3[1.2.3.4] left at 2026-11-29 03:04:05"), "not UTF-8 text");
}

Test(chat_line, addresses_are_at_most_64_characters)
{
	char line[200];
	int n;

	n = snprintf(line, sizeof(line), "[%.64s] left at 2026-11-29 "
	    "03:04:05", "1111111111111111111111111111111111111111111111111111"
	    "111111111111111111");
	ok(line, (size_t)n);
	n = snprintf(line, sizeof(line), "[%.65s] left at 2026-11-29 "
	    "03:04:05", "1111111111111111111111111111111111111111111111111111"
	    "111111111111111111");
	bad(line, (size_t)n, "not a chat line");
}

Test(chat_line, length_is_bounded)
{
	const char *l = "[1.2.3.4] at 2026-11-29 03:04:05: 12345";
	size_t len = strlen(l);

	cr_assert_null(chat_line_check(l, len, len));
	cr_assert_str_eq(chat_line_check(l, len, len - 1), "too long");
	/* the bound comes first: a long line is not even read */
	cr_assert_str_eq(chat_line_check("\xff\xff", 2, 1), "too long");
}

/* What chat_line builds, from any valid message, always passes. */
Test(chat_line, built_lines_pass)
{
	static const char *msgs[] = { "", "x", "h\xc3\xa9", "a: b",
	    "] left at 2026-11-29 03:04:05", "multi\nline" };
	static const char *ips[] = { "127.0.0.1", "::1", "fe80::1%lo",
	    "2001:db8::ff00:42:8329" };
	char *line;
	size_t len;

	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++)
		for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++)
			for (int ev = CHAT_JOINED; ev <= CHAT_LEFT; ev++) {
				cr_assert_eq(chat_line(&line, &len, ev, ips[i],
				    "2026-11-29 03:04:05", msgs[m],
				    strlen(msgs[m])), 0);
				cr_assert_null(chat_line_check(line, len,
				    strlen(msgs[m]) + 96), "%s", line);
				free(line);
			}
}

/* Stream ids as Redis writes them; anything else is not one. */
Test(chat_line, stream_ids)
{
	static const char *bad[] = { "", "-", "1", "1-", "-1", "01-1", "1-01",
	    "1-1-1", "a-1", "1-b", " 1-1", "18446744073709551616-0",
	    "1-18446744073709551616", "1- 1", "+1-1" };
	struct chat_sid a, b;
	char buf[CHAT_SID_MAX];

	cr_assert_eq(chat_sid_parse(&a, "1733370000000-12", 16), 0);
	cr_assert_eq(a.ms, 1733370000000ULL);
	cr_assert_eq(a.seq, 12);
	chat_sid_format(&a, buf);
	cr_assert_str_eq(buf, "1733370000000-12");
	cr_assert_eq(chat_sid_parse(&b, "0-0", 3), 0);
	cr_assert_lt(chat_sid_cmp(&b, &a), 0);
	cr_assert_gt(chat_sid_cmp(&a, &b), 0);
	cr_assert_eq(chat_sid_parse(&b, "1733370000000-9", 15), 0);
	cr_assert_lt(chat_sid_cmp(&b, &a), 0);
	cr_assert_eq(chat_sid_cmp(&a, &a), 0);
	cr_assert_eq(chat_sid_parse(&b, "18446744073709551615-"
	    "18446744073709551615", 41), 0);
	chat_sid_format(&b, buf);
	cr_assert_str_eq(buf, "18446744073709551615-18446744073709551615");
	/* the length given is all that is read */
	cr_assert_eq(chat_sid_parse(&b, "5-6junk", 3), 0);
	cr_assert_eq(b.seq, 6);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_neq(chat_sid_parse(&a, bad[i], strlen(bad[i])), 0,
		    "\"%s\" parsed", bad[i]);
}
