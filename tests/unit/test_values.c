/*
 * test_values.c - core/values.c: the parsers of configuration values
 * (integers, sizes, booleans, listen addresses) and relative paths.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "../../core/core.h"

TestSuite(values);

Test(values, sizes)
{
	size_t sz;

	cr_assert_eq(sqc_parse_size("64K", &sz), 0);
	cr_assert_eq(sz, 65536);
	cr_assert_eq(sqc_parse_size("1g", &sz), 0);
	cr_assert_eq(sz, 1 << 30);
	cr_assert_neq(sqc_parse_size("-1", &sz), 0);
	cr_assert_neq(sqc_parse_size("", &sz), 0);
	cr_assert_neq(sqc_parse_size("1KB", &sz), 0);
}

Test(values, integers_in_a_range)
{
	long long n;

	cr_assert_eq(sqc_parse_int("42", 0, 100, &n), 0);
	cr_assert_eq(n, 42);
	cr_assert_eq(sqc_parse_int("0", 0, 100, &n), 0);
	cr_assert_neq(sqc_parse_int("101", 0, 100, &n), 0);
	cr_assert_neq(sqc_parse_int("-1", 0, 100, &n), 0);
	cr_assert_neq(sqc_parse_int("4x", 0, 100, &n), 0);
	cr_assert_neq(sqc_parse_int("", 0, 100, &n), 0);
}

Test(values, booleans)
{
	int b;

	cr_assert_eq(sqc_parse_bool("Yes", &b), 0);
	cr_assert_eq(b, 1);
	cr_assert_eq(sqc_parse_bool("on", &b), 0);
	cr_assert_eq(b, 1);
	cr_assert_eq(sqc_parse_bool("off", &b), 0);
	cr_assert_eq(b, 0);
	cr_assert_neq(sqc_parse_bool("nope", &b), 0);
}

Test(values, listen_addresses)
{
	static const char *const bad[] = { "8888", "localhost:80", ":80",
	    "[::1]80", "[::1:80", "127.0.0.1:65536", "127.0.0.1:x", "[]:80",
	    "127.0.0.1:" };
	struct sqc_listen l;

	cr_assert_eq(sqc_parse_listen("127.0.0.1:8888", &l), 0);
	cr_assert_str_eq(l.host, "127.0.0.1");
	cr_assert_eq(l.port, 8888);
	free(l.host);
	cr_assert_eq(sqc_parse_listen("[::1]:0", &l), 0);
	cr_assert_str_eq(l.host, "::1");
	cr_assert_eq(l.port, 0);
	free(l.host);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_neq(sqc_parse_listen(bad[i], &l), 0, "%s", bad[i]);
}

Test(values, paths_relative_to_a_folder)
{
	char *p;

	cr_assert_str_eq(p = sqc_path_resolve("/etc/squall", "plugins"),
	    "/etc/squall/plugins");
	free(p);
	cr_assert_str_eq(p = sqc_path_resolve("/etc/squall", "/abs"), "/abs");
	free(p);
	cr_assert_str_eq(p = sqc_path_resolve(NULL, "rel"), "rel");
	free(p);
}
