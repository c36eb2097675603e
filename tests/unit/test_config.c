/*
 * test_config.c - squall.ini parsing: every error names file:line, values
 * parse or fail, relative paths resolve against the file's folder.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../core/core.h"

static char dir[] = "/tmp/squall-config.XXXXXX";
static char file[300];
static char err[SQC_ERRLEN];

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/squall.ini", dir);
}

static void
teardown(void)
{
	unlink(file);
	rmdir(dir);
}

static struct sqc_config *
load(const char *text)
{
	FILE *fp = fopen(file, "w");

	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
	err[0] = '\0';
	return sqc_config_load(file, err, sizeof(err));
}

/* The error must be "<file>:<line>: ..." and contain what. */
static void
expect_error(const char *text, int line, const char *what)
{
	struct sqc_config *c = load(text);
	char prefix[400];

	cr_assert_null(c, "expected an error for:\n%s", text);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
	    "error \"%s\" does not start with \"%s\"", err, prefix);
	cr_assert_not_null(strstr(err, what), "error \"%s\" does not say "
	    "\"%s\"", err, what);
}

TestSuite(config, .init = setup, .fini = teardown);

Test(config, empty_file_gets_defaults)
{
	struct sqc_config *c = load("");

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->nlisten, 1);
	cr_assert_str_eq(c->listen[0].host, "127.0.0.1");
	cr_assert_eq(c->listen[0].port, 8888);
	cr_assert_eq(c->max_header_size, 8192);
	cr_assert_eq(c->max_body_size, 1048576);
	cr_assert_eq(c->max_connections, 10000);
	cr_assert_eq(c->request_timeout, 30);
	cr_assert_eq(c->shutdown_timeout, 10);
	cr_assert_eq(c->log_level, SQ_LOG_INFO);
	cr_assert_str_eq(c->access_log, "-");
	cr_assert_eq(c->nroutes, 0);
	sqc_config_free(c);
}

Test(config, reads_every_server_key)
{
	struct sqc_config *c = load(
	    "[server]\n"
	    "listen = 127.0.0.1:8000\n"
	    "listen = [::1]:8001 ; a second address\n"
	    "plugin_dir = plugins\n"
	    "pid_file = run/squalld.pid\n"
	    "access_log = off\n"
	    "error_log = /var/log/squall/error.log\n"
	    "log_level = debug\n"
	    "max_connections = 5\n"
	    "max_header_size = 4K\n"
	    "max_body_size = 2M\n"
	    "request_timeout = 7\n"
	    "shutdown_timeout = 0\n"
	    "xheaders = on\n"
	    "trusted_proxies = 10.0.0.0/8\n");
	char want[400];

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->nlisten, 2);
	cr_assert_str_eq(c->listen[1].host, "::1");
	cr_assert_eq(c->listen[1].port, 8001);
	snprintf(want, sizeof(want), "%s/plugins", dir);
	cr_assert_str_eq(c->plugin_dir, want);
	snprintf(want, sizeof(want), "%s/run/squalld.pid", dir);
	cr_assert_str_eq(c->pid_file, want);
	cr_assert_str_eq(c->access_log, "off");
	cr_assert_str_eq(c->error_log, "/var/log/squall/error.log");
	cr_assert_eq(c->log_level, SQ_LOG_DEBUG);
	cr_assert_eq(c->max_connections, 5);
	cr_assert_eq(c->max_header_size, 4096);
	cr_assert_eq(c->max_body_size, 2 << 20);
	cr_assert_eq(c->request_timeout, 7);
	cr_assert_eq(c->shutdown_timeout, 0);
	cr_assert_eq(c->xheaders, 1);
	cr_assert_eq(c->ntrusted, 1);
	cr_assert_eq(c->trusted[0].bits, 8);
	sqc_config_free(c);
}

Test(config, routes_keep_options_in_order_with_lines)
{
	struct sqc_config *c = load(
	    "[server]\nplugin_dir = /opt/p\n\n"
	    "[route /hello]\nplugin = hello\ntext = Hi there\n\n"
	    "[route /multi]\nplugin = ./mine/multi.so\n"
	    "url.first = http://a/\nurl.second = http://b/\n"
	    "url.first = http://c/\n\n"
	    "[route /static/*]\nplugin = /abs/static.so\nroot = ../web\n");
	char want[400];

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->nroutes, 3);
	cr_assert_str_eq(c->routes[0].path, "/hello");
	cr_assert_eq(c->routes[0].prefix, 0);
	cr_assert_str_eq(c->routes[0].plugin, "/opt/p/hello.so");
	cr_assert_eq(c->routes[0].nopts, 1);
	cr_assert_str_eq(c->routes[0].opts[0].key, "text");
	cr_assert_str_eq(c->routes[0].opts[0].value, "Hi there");
	cr_assert_eq(c->routes[0].opts[0].line, 6);
	snprintf(want, sizeof(want), "%s/./mine/multi.so", dir);
	cr_assert_str_eq(c->routes[1].plugin, want);
	cr_assert_eq(c->routes[1].nopts, 3);
	cr_assert_str_eq(c->routes[1].opts[2].value, "http://c/");
	cr_assert_str_eq(c->routes[2].path, "/static/");
	cr_assert_eq(c->routes[2].prefix, 1);
	cr_assert_str_eq(c->routes[2].plugin, "/abs/static.so");
	sqc_config_free(c);
}

Test(config, plugin_dir_after_routes_still_applies)
{
	struct sqc_config *c = load("[route /a]\nplugin = a\n"
	    "[server]\nplugin_dir = /x\n");

	cr_assert_not_null(c, "%s", err);
	cr_assert_str_eq(c->routes[0].plugin, "/x/a.so");
	sqc_config_free(c);
}

/* ws_deflate is the core's route key, not a plugin option: on unless off */
Test(config, ws_deflate_is_a_route_key)
{
	struct sqc_config *c = load("[route /a]\nplugin = a\n"
	    "[route /b]\nplugin = b\nws_deflate = off\ntext = t\n"
	    "[route /c]\nws_deflate = yes\nplugin = c\n");

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->routes[0].ws_deflate, 1);
	cr_assert_eq(c->routes[1].ws_deflate, 0);
	cr_assert_eq(c->routes[1].nopts, 1, "not given to the plugin");
	cr_assert_eq(c->routes[2].ws_deflate, 1);
	cr_assert_eq(c->routes[2].nopts, 0);
	sqc_config_free(c);
	expect_error("[route /a]\nplugin = a\nws_deflate = maybe\n", 3,
	    "bad value 'maybe' for 'ws_deflate': expected on or off");
	expect_error("[route /a]\nplugin = a\nws_deflate = on\n"
	    "ws_deflate = off\n", 4, "'ws_deflate' given twice in route "
	    "'/a'");
	expect_error("[server]\n\n[route /x]\nws_deflate = off\n", 3,
	    "route '/x' has no 'plugin' key");
}

Test(config, rejects_unknown_key)
{
	expect_error("[server]\nlisten = 127.0.0.1:1\nlisten_port = 8\n", 3,
	    "unknown key 'listen_port'");
}

Test(config, rejects_repeated_key)
{
	expect_error("[server]\nworkers = 1\n\nworkers = 2\n", 4,
	    "'workers' given twice");
}

Test(config, rejects_route_without_plugin)
{
	expect_error("[server]\n\n[route /x]\ntext = hi\n", 3,
	    "route '/x' has no 'plugin' key");
}

/* Found by tests/fuzz/fuzz_config: a keyless [route] (no path) was
 * reported with the path of the header before it. */
Test(config, keyless_route_header_without_path_is_not_a_route)
{
	struct sqc_config *c = load("[route /abcdefgh]\nplugin = a\n"
	    "[route]\n");

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->nroutes, 1);
	sqc_config_free(c);
}

Test(config, rejects_duplicate_route)
{
	expect_error("[route /x]\nplugin = a\n[route /y]\nplugin = b\n"
	    "[route /x]\nplugin = c\n", 5, "duplicate route '/x' (first at "
	    "line 1)");
}

Test(config, exact_and_prefix_routes_are_different)
{
	struct sqc_config *c = load("[route /x]\nplugin = a\n"
	    "[route /x*]\nplugin = b\n");

	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->nroutes, 2);
	sqc_config_free(c);
}

Test(config, rejects_bad_route_path)
{
	expect_error("[route hello]\nplugin = a\n", 1, "bad route 'hello'");
	expect_error("[route /a*b]\nplugin = a\n", 1, "bad route");
	expect_error("[route /a?b]\nplugin = a\n", 1, "bad route");
}

Test(config, rejects_unknown_section)
{
	expect_error("[servre]\nlisten = 1\n", 1, "unknown section [servre]");
}

Test(config, rejects_values_that_do_not_parse)
{
	expect_error("[server]\nmax_body_size = lots\n", 2,
	    "bad value 'lots' for 'max_body_size'");
	expect_error("[server]\nmax_header_size = 12Q\n", 2,
	    "bad value '12Q'");
	expect_error("[server]\nrequest_timeout = -1\n", 2,
	    "expected an integer from 1 to 86400");
	expect_error("[server]\nlog_level = loud\n", 2,
	    "expected error, warn, info or debug");
	expect_error("[server]\nxheaders = perhaps\n", 2, "expected on or off");
	expect_error("[server]\nlisten = localhost:80\n", 2,
	    "bad value 'localhost:80' for 'listen'");
	expect_error("[server]\nlisten = 127.0.0.1:99999\n", 2,
	    "for 'listen'");
	expect_error("[server]\nlisten = [::1]8080\n", 2, "for 'listen'");
	expect_error("[server]\ntrusted_proxies = 10.0.0.1 proxy\n", 2,
	    "(not 'proxy')");
}

Test(config, rejects_syntax_error_with_its_line)
{
	expect_error("[server]\nlisten = 127.0.0.1:1\nthis is not ini\n", 3,
	    "syntax error");
	/* the line that left a route empty, not "route has no plugin" */
	expect_error("[route /b]\nplugin = a\n[route /b2]\nplugin a\n", 4,
	    "syntax error");
	expect_error("[route /b2]\nplugin a\n[route /c]\nplugin = a\n", 2,
	    "syntax error");
	/* an empty route before the syntax error is still the first */
	expect_error("[route /b2]\n[route /c]\nplugin a\n", 1,
	    "route '/b2' has no 'plugin' key");
}

Test(config, rejects_over_long_line)
{
	char text[600];

	snprintf(text, sizeof(text), "[route /x]\nplugin = a\ntext = %0400d\n",
	    7);
	expect_error(text, 3, "line longer than");
}

Test(config, missing_file_is_named)
{
	struct sqc_config *c = sqc_config_load("/nonexistent/squall.ini", err,
	    sizeof(err));

	cr_assert_null(c);
	cr_assert_str_eq(err, "/nonexistent/squall.ini: No such file or "
	    "directory");
}

/*
 * %p in access_log, error_log and pid_file is the instance's port (the
 * first listen address's, or -p's), so that instances on one
 * configuration write files of their own (issue 15, item 10).
 */
Test(config, percent_p_is_the_instance_port)
{
	struct sqc_config *c;
	char want[600];

	c = load("[server]\nlisten = 127.0.0.1:8000\nlisten = [::1]:9\n"
	    "access_log = /var/log/squall/access-%p.log\n"
	    "error_log = err-%p-%%p.log\npid_file = /run/s-%p.pid\n");
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(sqc_config_expand(c, 0), 0);
	cr_assert_str_eq(c->access_log, "/var/log/squall/access-8000.log");
	snprintf(want, sizeof(want), "%s/err-8000-%%p.log", dir);
	cr_assert_str_eq(c->error_log, want);
	cr_assert_str_eq(c->pid_file, "/run/s-8000.pid");
	sqc_config_free(c);
	c = load("[server]\nlisten = 127.0.0.1:8000\n"
	    "access_log = /l/a-%p.log\nerror_log = -\n");
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(sqc_config_expand(c, 8001), 0);
	cr_assert_str_eq(c->access_log, "/l/a-8001.log");
	cr_assert_str_eq(c->error_log, "-");
	sqc_config_free(c);
}
