/*
 * test_router.c - route matching (exact, prefix, longest match) and the
 * request-path normalisation every plugin relies on.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../core/core.h"

static struct sqc_router *r;
static int A, B, C, D, E;

static void
setup(void)
{
	r = sqc_router_new();
	cr_assert_eq(sqc_router_add(r, "/hello", 0, &A), 0);
	cr_assert_eq(sqc_router_add(r, "/static/", 1, &B), 0);
	cr_assert_eq(sqc_router_add(r, "/static/img/", 1, &C), 0);
	cr_assert_eq(sqc_router_add(r, "/", 1, &D), 0);
	cr_assert_eq(sqc_router_add(r, "/api", 1, &E), 0);
}

static void
teardown(void)
{
	sqc_router_free(r);
}

TestSuite(router, .init = setup, .fini = teardown);

static void
expect(const char *path, void *want, const char *want_rest)
{
	const char *rest = NULL;
	void *got = sqc_router_match(r, path, &rest);

	cr_assert_eq(got, want, "%s matched the wrong route", path);
	if (want)
		cr_assert_str_eq(rest, want_rest, "%s: rest", path);
}

Test(router, exact_route_matches_only_itself)
{
	expect("/hello", &A, "");
	/* a trailing slash is another path: the catch-all takes it */
	expect("/hello/", &D, "hello/");
	expect("/hellox", &D, "hellox");
}

Test(router, longest_prefix_wins)
{
	expect("/static/app.js", &B, "app.js");
	expect("/static/img/logo.png", &C, "logo.png");
	expect("/static/img/", &C, "");
	expect("/static/", &B, "");
	expect("/other", &D, "other");
	expect("/", &D, "");
}

Test(router, prefix_without_slash_stops_at_a_segment)
{
	expect("/api", &E, "");
	expect("/api/v1/users", &E, "v1/users");
	expect("/apix", &D, "apix");
}

Test(router, exact_beats_prefix)
{
	int X;

	cr_assert_eq(sqc_router_add(r, "/static/special", 0, &X), 0);
	expect("/static/special", &X, "");
	expect("/static/special/x", &B, "special/x");
}

Test(router, no_route_is_null)
{
	struct sqc_router *empty = sqc_router_new();
	const char *rest;

	cr_assert_null(sqc_router_match(empty, "/", &rest));
	cr_assert_eq(sqc_router_add(empty, "/a", 0, &A), 0);
	cr_assert_null(sqc_router_match(empty, "/b", &rest));
	sqc_router_free(empty);
}

Test(router, duplicate_is_refused)
{
	cr_assert_eq(sqc_router_add(r, "/hello", 0, &B), -EEXIST);
	cr_assert_eq(sqc_router_add(r, "/hello", 1, &B), 0);
}

static void
norm(const char *in, const char *want)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", in);
	cr_assert_eq(sqc_path_normalize(buf), 0, "%s refused", in);
	cr_assert_str_eq(buf, want, "normalising %s", in);
}

Test(router, normalize_decodes_percent)
{
	norm("/hel%6Co", "/hello");
	norm("/a%20b", "/a b");
	norm("/%E2%9C%93", "/\xe2\x9c\x93");
}

Test(router, normalize_removes_dot_segments)
{
	norm("/a/./b", "/a/b");
	norm("/a/../b", "/b");
	norm("/../../etc/passwd", "/etc/passwd");
	norm("/static/%2e%2e/%2E%2E/secret", "/secret");
	norm("/a/b/..", "/a/");
	norm("/a/.", "/a/");
	norm("/..", "/");
	norm("/.", "/");
	norm("/a/..b/c", "/a/..b/c");
	norm("/a/.b", "/a/.b");
}

Test(router, normalize_merges_slashes_and_keeps_trailing_one)
{
	norm("//a///b", "/a/b");
	norm("/a/", "/a/");
	norm("/", "/");
	norm("/a//", "/a/");
}

Test(router, normalize_keeps_a_last_segment_ending_in_a_dot)
{
	/* found by fuzz_router: "o." was taken for ".." after moving */
	norm("//at/o.", "/at/o.");
	norm("//static/file.", "/static/file.");
	norm("/a//b/c.", "/a/b/c.");
	norm("//a/..", "/");
}

Test(router, normalize_refuses_bad_input)
{
	char a[] = "/a%00b", b[] = "/a%zz", c[] = "relative", d[] = "/a%4";

	cr_assert_eq(sqc_path_normalize(a), -EINVAL);
	cr_assert_eq(sqc_path_normalize(b), -EINVAL);
	cr_assert_eq(sqc_path_normalize(c), -EINVAL);
	cr_assert_eq(sqc_path_normalize(d), -EINVAL);
}

Test(router, matches_normalised_encoded_paths)
{
	char p[] = "/stat%69c/app.js";

	cr_assert_eq(sqc_path_normalize(p), 0);
	expect(p, &B, "app.js");
}
