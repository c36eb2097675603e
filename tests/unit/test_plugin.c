/*
 * test_plugin.c - the loader and generations: each broken plugin is
 * refused with its own message, instances are kept across a rebuild when
 * nothing changed, and a plugin file replaced on disk loads afresh.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/core.h"
#include "../lib/harness.h"

static char dir[256], file[300], err[SQC_ERRLEN];

static void
setup(void)
{
	t_tmpdir(dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/squall.ini", dir);
	sqc_log_set_level(SQ_LOG_ERROR);
	cr_assert_eq(sqc_plugin_init(err, sizeof(err)), 0, "%s", err);
}

static void
teardown(void)
{
	sqc_plugin_shutdown();
	t_rm_rf(dir);
}

TestSuite(loader, .init = setup, .fini = teardown);

static struct sqc_config *
conf(const char *fmt, ...)
{
	struct sqc_config *c;
	va_list ap;
	FILE *fp = fopen(file, "w");

	cr_assert_not_null(fp);
	va_start(ap, fmt);
	vfprintf(fp, fmt, ap);
	va_end(ap);
	fclose(fp);
	c = sqc_config_load(file, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	return c;
}

/* Builds a generation for one route on plugin; expects failure. */
static void
expect_refused(const char *plugin, const char *opts, int line,
    const char *what)
{
	struct sqc_config *c = conf("[route /x]\nplugin = %s\n%s", plugin,
	    opts);
	char prefix[400];

	cr_assert_null(sqc_gen_build(c, NULL, err, sizeof(err)),
	    "%s was accepted", plugin);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
	    "\"%s\" does not start with \"%s\"", err, prefix);
	cr_assert_not_null(strstr(err, what), "\"%s\" does not say \"%s\"",
	    err, what);
	cr_assert_eq(sqc_module_count(), 0, "a refused module stays loaded");
	sqc_config_free(c);
}

Test(loader, refuses_missing_descriptor)
{
	expect_refused(t_test_plugin("nodesc"), "", 1,
	    "has no descriptor: the symbol sq_plugin_descriptor is missing");
}

Test(loader, refuses_other_abi_version)
{
	char want[128];

	snprintf(want, sizeof(want), "was built for plugin ABI %d, this "
	    "squalld has ABI %d", SQ_PLUGIN_ABI + 41, SQ_PLUGIN_ABI);
	expect_refused(t_test_plugin("badabi"), "", 1, want);
}

Test(loader, refuses_unresolved_symbol)
{
	expect_refused(t_test_plugin("unresolved"), "", 1,
	    "undefined symbol: sq_function_that_does_not_exist");
}

Test(loader, refuses_plugin_without_handler)
{
	expect_refused(t_test_plugin("nohandler"), "", 1,
	    "descriptor has no handle callback");
}

Test(loader, refuses_missing_file)
{
	expect_refused("/nonexistent/plugin.so", "", 1,
	    "cannot open plugin /nonexistent/plugin.so: No such file");
}

Test(loader, reports_failing_create)
{
	expect_refused(t_test_plugin("failcreate"), "", 1,
	    "plugin 'failcreate' failed to create its instance: "
	    "Input/output error");
}

Test(loader, reports_failing_create_at_the_option)
{
	expect_refused(t_test_plugin("failcreate"),
	    "fail = option\n\nwhy = because\n", 5,
	    "failcreate does not like this option");
}

Test(loader, refuses_unknown_option)
{
	expect_refused(t_test_plugin("version"), "tag = a\ncolour = red\n", 4,
	    "plugin 'version' has no option 'colour'");
}

Test(loader, refuses_bad_option_value)
{
	char line[512];

	snprintf(line, sizeof(line), "%s/delay.so", t_plugin_dir());
	expect_refused(line, "max_ms = soon\n", 3,
	    "bad value 'soon' for 'max_ms'");
}

Test(loader, one_module_per_file_content)
{
	struct sqc_config *c = conf("[route /a]\nplugin = %s\n"
	    "[route /b]\nplugin = %s\ntag = b\n", t_test_plugin("version"),
	    t_test_plugin("version"));
	struct sqc_gen *g = sqc_gen_build(c, NULL, err, sizeof(err));
	const char *rest;

	cr_assert_not_null(g, "%s", err);
	cr_assert_eq(sqc_module_count(), 1);
	cr_assert_neq(sqc_gen_route(g, "/a", &rest),
	    sqc_gen_route(g, "/b", &rest));
	sqc_gen_release(g);
	cr_assert_eq(sqc_module_count(), 0, "module not unloaded");
	sqc_config_free(c);
}

Test(loader, unchanged_routes_keep_their_instance)
{
	struct sqc_config *c1 = conf("[route /a]\nplugin = %s\ntag = 1\n"
	    "[route /b]\nplugin = %s\ntag = 1\n", t_test_plugin("version"),
	    t_test_plugin("version"));
	struct sqc_gen *g1 = sqc_gen_build(c1, NULL, err, sizeof(err)), *g2;
	struct sqc_config *c2;
	const char *rest;
	size_t kept;

	cr_assert_not_null(g1, "%s", err);
	c2 = conf("[route /a]\nplugin = %s\ntag = 1\n"
	    "[route /b]\nplugin = %s\ntag = 2\n", t_test_plugin("version"),
	    t_test_plugin("version"));
	g2 = sqc_gen_build(c2, g1, err, sizeof(err));
	cr_assert_not_null(g2, "%s", err);
	cr_assert_eq(sqc_gen_count(g2, &kept), 2);
	cr_assert_eq(kept, 1);
	cr_assert_eq(sqc_gen_route(g1, "/a", &rest),
	    sqc_gen_route(g2, "/a", &rest));
	cr_assert_neq(sqc_gen_route(g1, "/b", &rest),
	    sqc_gen_route(g2, "/b", &rest));
	sqc_gen_release(g1);
	sqc_gen_release(g2);
	cr_assert_eq(sqc_module_count(), 0);
	sqc_config_free(c1);
	sqc_config_free(c2);
}

Test(loader, replaced_file_loads_afresh_and_old_unloads_last)
{
	char so[300];
	struct sqc_config *c;
	struct sqc_gen *g1, *g2;
	struct sq_inst *i1, *i2;
	const char *rest;

	snprintf(so, sizeof(so), "%s/plug.so", dir);
	t_copy(t_test_plugin("v1"), so);
	c = conf("[route /v]\nplugin = plug\n[server]\nplugin_dir = .\n");
	cr_assert_not_null(g1 = sqc_gen_build(c, NULL, err, sizeof(err)),
	    "%s", err);
	i1 = sqc_gen_route(g1, "/v", &rest);
	sqc_inst_ref(i1);		/* as an in-flight request would */
	t_copy(t_test_plugin("v2"), so);	/* in place, like cp */
	cr_assert_not_null(g2 = sqc_gen_build(c, g1, err, sizeof(err)),
	    "%s", err);
	i2 = sqc_gen_route(g2, "/v", &rest);
	cr_assert_neq(i1, i2);
	{
		const char *r, *n1, *n2, *v;

		/* the names live in each object: the same pointer would mean
		 * dlopen handed back the old object */
		sqc_inst_describe(i1, &r, &n1, &v);
		sqc_inst_describe(i2, &r, &n2, &v);
		cr_assert_neq(n1, n2, "the old object was returned");
	}
	cr_assert_eq(sqc_module_count(), 2);
	sqc_gen_release(g1);
	cr_assert_eq(sqc_module_count(), 2, "unloaded under a user");
	sqc_inst_unref(i1);
	cr_assert_eq(sqc_module_count(), 1);
	sqc_gen_release(g2);
	cr_assert_eq(sqc_module_count(), 0);
	sqc_config_free(c);
}

Test(loader, failed_build_leaves_nothing)
{
	struct sqc_config *c = conf("[route /a]\nplugin = %s\n"
	    "[route /b]\nplugin = %s\n", t_test_plugin("version"),
	    t_test_plugin("badabi"));

	cr_assert_null(sqc_gen_build(c, NULL, err, sizeof(err)));
	cr_assert_eq(sqc_module_count(), 0);
	sqc_config_free(c);
}
