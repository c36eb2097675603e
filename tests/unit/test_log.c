/*
 * test_log.c - core/log.c: what a client sends cannot forge a log line
 * or drive a terminal (sqc_log_escape), and the level names parse.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <string.h>

#include "../../core/core.h"

TestSuite(log);

static const char *
esc(const char *s, int quoted)
{
	static char out[64];

	sqc_log_escape(out, sizeof(out), s, quoted);
	return out;
}

Test(log, control_bytes_and_high_bytes_are_escaped)
{
	cr_assert_str_eq(esc("GET /\r\n127.0.0.1 - forged", 0),
	    "GET /\\x0d\\x0a127.0.0.1 - forged");
	cr_assert_str_eq(esc("\x1b[2J", 0), "\\x1b[2J");
	cr_assert_str_eq(esc("caf\xc3\xa9\x7f", 0), "caf\\xc3\\xa9\\x7f");
	cr_assert_str_eq(esc("plain text", 0), "plain text");
}

Test(log, quoted_fields_escape_quotes_and_backslashes)
{
	cr_assert_str_eq(esc("a \"b\" \\c", 1), "a \\x22b\\x22 \\x5cc");
	cr_assert_str_eq(esc("a \"b\"", 0), "a \"b\"");
}

Test(log, empty_is_a_dash_and_the_output_is_bounded)
{
	char small[10];

	cr_assert_str_eq(esc("", 0), "-");
	cr_assert_str_eq(esc(NULL, 1), "-");
	/* never cut inside an escape, always terminated */
	cr_assert_leq(sqc_log_escape(small, sizeof(small), "\x01\x02\x03",
	    0), sizeof(small) - 1);
	cr_assert_str_eq(small, "\\x01\\x02");
	cr_assert_eq(sqc_log_escape(small, sizeof(small), "abcdefghijk", 0),
	    strlen(small));
	cr_assert_str_eq(small, "abcdef");
}

Test(log, level_names)
{
	cr_assert_eq(sqc_log_level_parse("error"), SQ_LOG_ERROR);
	cr_assert_eq(sqc_log_level_parse("warn"), SQ_LOG_WARN);
	cr_assert_eq(sqc_log_level_parse("info"), SQ_LOG_INFO);
	cr_assert_eq(sqc_log_level_parse("debug"), SQ_LOG_DEBUG);
	cr_assert_lt(sqc_log_level_parse("loud"), 0);
}
