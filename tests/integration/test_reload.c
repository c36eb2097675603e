/*
 * test_reload.c - SIGHUP: options change, rebuilt plugins replaced on
 * disk by cp, mv or install are served afresh, a broken configuration
 * changes nothing, in-flight requests survive, unchanged routes keep
 * their instance, and clients hammering the server never see a failure.
 */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(reload, .fini = stop, .timeout = 90);

static void
rewrite(const char *rest)
{
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "%s\n", t_plugin_dir(), rest);
}

static void
expect_body(const char *path, const char *want)
{
	struct resp r;

	cr_assert_eq(http_get(s.port, path, &r), 0, "GET %s failed", path);
	cr_assert_eq(r.status, 200, "GET %s: %ld", path, r.status);
	cr_assert_str_eq(r.body, want, "GET %s", path);
	resp_free(&r);
}

Test(reload, option_change_takes_effect)
{
	srv_start(&s, "[route /hello]\nplugin = hello\ntext = one\n");
	expect_body("/hello", "one");
	rewrite("[route /hello]\nplugin = hello\ntext = two\n"
	    "[route /new]\nplugin = hello\ntext = new\n");
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/hello", "two");
	expect_body("/new", "new");
	cr_assert_eq(srv_log_count(&s, "reloaded: 2 routes (0 kept, 1 changed, "
	    "1 new)"),
	    1);
	/* the log says what now serves, at info level */
	cr_assert_eq(srv_log_count(&s, "ready: 1 route, pid "), 1);
	cr_assert_eq(srv_log_count(&s, ": /hello (hello 1.0)\n"), 1);
	cr_assert_eq(srv_log_count(&s, "loaded: changed /hello (hello 1.0), "
	    "added /new (hello 1.0)\n"), 1);
	rewrite("[route /new]\nplugin = hello\ntext = new\n");
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(srv_log_count(&s, "loaded: removed /hello\n"), 1);
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(srv_log_count(&s, "loaded: nothing changed\n"), 1);
	/* a reload that changes only the access log says so (issue 15) */
	rewrite("access_log = access.log\n[route /new]\nplugin = hello\n"
	    "text = new\n");
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(srv_log_count(&s, "loaded: nothing changed\n"), 1);
	cr_assert_eq(srv_log_count(&s, "(1 kept, 0 changed, 0 new), 1 plugin "
	    "module loaded: access_log "), 1);
}

Test(reload, unchanged_route_keeps_its_instance)
{
	char route[600];

	snprintf(route, sizeof(route), "[route /a]\nplugin = %s\ntag = x\n"
	    "[route /b]\nplugin = %s\ntag = x\n", t_test_plugin("v1"),
	    t_test_plugin("v1"));
	srv_start(&s, "%s", route);
	expect_body("/a", "version 1 instance 1\n");
	expect_body("/b", "version 1 instance 2\n");
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/a", "version 1 instance 1\n");
	snprintf(route, sizeof(route), "[route /a]\nplugin = %s\ntag = x\n"
	    "[route /b]\nplugin = %s\ntag = y\n", t_test_plugin("v1"),
	    t_test_plugin("v1"));
	rewrite(route);
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/a", "version 1 instance 1\n");
	expect_body("/b", "version 1 instance 3\n");
}

static void
replace_test(const char *how)
{
	char so[400], tmp[400], route[600], cmd[1200];

	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	snprintf(so, sizeof(so), "%s/plug.so", s.dir);
	t_copy(t_test_plugin("v1"), so);
	snprintf(route, sizeof(route), "[server]\nlisten = 127.0.0.1:0\n"
	    "plugin_dir = .\n[route /v]\nplugin = plug\n");
	srv_start_in(&s, route);
	expect_body("/v", "version 1 instance 1\n");

	if (strcmp(how, "cp") == 0) {
		/* in place, over the file the server loaded */
		snprintf(cmd, sizeof(cmd), "cp %s %s", t_test_plugin("v2"), so);
		cr_assert_eq(system(cmd), 0);
	} else if (strcmp(how, "mv") == 0) {
		snprintf(tmp, sizeof(tmp), "%s/plug.so.new", s.dir);
		t_copy(t_test_plugin("v2"), tmp);
		cr_assert_eq(rename(tmp, so), 0);
	} else {
		snprintf(cmd, sizeof(cmd), "install -m 755 %s %s",
		    t_test_plugin("v2"), so);
		cr_assert_eq(system(cmd), 0);
	}
	/* the running code is untouched by the overwrite */
	expect_body("/v", "version 1 instance 1\n");
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/v", "version 2 instance 1\n");
	/* and back again, then a reload with nothing changed */
	t_copy(t_test_plugin("v1"), so);
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/v", "version 1 instance 1\n");
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/v", "version 1 instance 1\n");
	cr_assert_eq(srv_log_count(&s, "(1 kept, 0 changed, 0 new)"), 1);
	/* a replaced .so is a changed route, not a new one (issue 15) */
	cr_assert_eq(srv_log_count(&s, "reloaded: 1 route (0 kept, 1 changed, "
	    "0 new)"), 2);
	cr_assert_eq(srv_stop(&s), 0, "squalld did not exit cleanly");
}

Test(reload, rebuilt_plugin_copied_in_place_with_cp)
{
	replace_test("cp");
}

Test(reload, rebuilt_plugin_moved_over_with_mv)
{
	replace_test("mv");
}

Test(reload, rebuilt_plugin_installed_with_install)
{
	replace_test("install");
}

Test(reload, broken_config_keeps_the_old_one)
{
	srv_start(&s, "[route /hello]\nplugin = hello\ntext = old\n");
	rewrite("[route /hello]\nplugin = hello\ntext = new\nbogus line\n");
	cr_assert_eq(srv_reload(&s), -1);
	cr_assert_eq(srv_log_count(&s, "squall.ini:7: syntax error"), 1);
	expect_body("/hello", "old");
	rewrite("[route /hello]\nplugin = hello\ntext = new\n"
	    "[route /x]\nplugin = no_such_plugin\n");
	cr_assert_eq(srv_reload(&s), -1);
	cr_assert_eq(srv_log_count(&s, "no_such_plugin.so: No such file"), 1);
	expect_body("/hello", "old");
	rewrite("[route /hello]\nplugin = hello\ntext = new\nfont = big\n");
	cr_assert_eq(srv_reload(&s), -1);
	cr_assert_eq(srv_log_count(&s, "plugin 'hello' has no option 'font'"),
	    1);
	expect_body("/hello", "old");
	rewrite("[route /hello]\nplugin = hello\ntext = new\n");
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/hello", "new");
}

Test(reload, in_flight_request_survives)
{
	struct bg slow;

	srv_start(&s, "log_level = debug\n[route /delay]\nplugin = delay\n");
	bg_start(&slow, s.port, "/delay?ms=1000");
	usleep(200 * 1000);
	/* a new delay instance replaces the one serving the request */
	rewrite("log_level = debug\n[route /delay]\nplugin = delay\n"
	    "max_ms = 5000\n");
	cr_assert_eq(srv_reload(&s), 0);
	bg_wait(&slow);
	cr_assert_eq(slow.r.status, 200);
	cr_assert_str_eq(slow.r.body, "waited 1000 ms\n");
	resp_free(&slow.r);
	/* the old instance went when its last request did */
	cr_assert_eq(srv_wait_log(&s, "destroying delay instance of /delay",
	    1, 3000), 0);
}

struct hammer {
	int		 port;
	volatile int	*stop;
	int		 ok, failed;
	char		 last_error[200];
};

static void *
hammer(void *arg)
{
	struct hammer *h = arg;
	struct resp r;

	while (!*h->stop) {
		if (http_get(h->port, "/hello", &r) == 0 && r.status == 200 &&
		    (strcmp(r.body, "A") == 0 || strcmp(r.body, "B") == 0))
			h->ok++;
		else {
			h->failed++;
			snprintf(h->last_error, sizeof(h->last_error),
			    "status %ld curl %d body '%s'", r.status,
			    r.curl_error, r.body);
		}
		resp_free(&r);
	}
	return NULL;
}

Test(reload, clients_see_no_failure_across_reloads)
{
	struct hammer h[4];
	pthread_t th[4];
	volatile int halt = 0;
	int ok = 0;

	srv_start(&s, "access_log = off\n[route /hello]\nplugin = hello\n"
	    "text = A\n");
	for (int i = 0; i < 4; i++) {
		memset(&h[i], 0, sizeof(h[i]));
		h[i].port = s.port;
		h[i].stop = &halt;
		pthread_create(&th[i], NULL, hammer, &h[i]);
	}
	for (int i = 0; i < 20; i++) {
		rewrite(i % 2 ? "access_log = off\n[route /hello]\n"
		    "plugin = hello\ntext = A\n" : "access_log = off\n"
		    "[route /hello]\nplugin = hello\ntext = B\n");
		cr_assert_eq(srv_reload(&s), 0);
		usleep(20 * 1000);
	}
	halt = 1;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(h[i].failed, 0, "%d failures, last: %s",
		    h[i].failed, h[i].last_error);
		ok += h[i].ok;
	}
	cr_assert_gt(ok, 100, "only %d requests went through", ok);
	cr_log_info("%d requests across 20 reloads, none failed", ok);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(reload, out_of_tree_plugin_is_picked_up)
{
	char src[400], so[400], cmd[2000], route[600];

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	snprintf(src, sizeof(src), "%s/mine.c", s.dir);
	snprintf(so, sizeof(so), "%s/mine.so", s.dir);
	t_write(src,
	    "#include <squall/plugin.h>\n"
	    "static void handle(void *st, struct sq_req *req) {\n"
	    "	sq_resp_printf(req, 200, \"mine at %%s\\n\", sq_req_path(req));\n"
	    "}\n"
	    "SQ_PLUGIN(.name = \"mine\", .version = \"1\", .handle = handle);\n");
	snprintf(cmd, sizeof(cmd), "PKG_CONFIG_PATH=%s/plugin-api "
	    "cc -shared -fPIC -Wall -Werror -o %s %s "
	    "$(PKG_CONFIG_PATH=%s/plugin-api pkg-config --cflags squall-plugin)",
	    t_builddir(), so, src, t_builddir());
	cr_assert_eq(system(cmd), 0, "cannot build: %s", cmd);
	snprintf(route, sizeof(route), "[route /hello]\nplugin = hello\n"
	    "[route /mine]\nplugin = %s\n", so);
	rewrite(route);
	cr_assert_eq(srv_reload(&s), 0);
	expect_body("/mine", "mine at /mine\n");
	expect_body("/hello", "Hello, world");
}

/* A loopback port taken by a listening socket of the test's own. */
static int
busy_port(int *fd)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(*fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(*fd, 1), 0);
	getsockname(*fd, (struct sockaddr *)&sa, &sl);
	return ntohs(sa.sin_port);
}

Test(reload, listen_addresses_change_without_restart)
{
	int p2 = t_free_port(), busy_fd, busy = busy_port(&busy_fd);
	int p1;
	char ini[512];

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	p1 = s.port;
	/* add a second address: both serve */
	snprintf(ini, sizeof(ini), "[server]\nlisten = 127.0.0.1:0\n"
	    "listen = 127.0.0.1:%d\nplugin_dir = %s\n[route /hello]\n"
	    "plugin = hello\n", p2, t_plugin_dir());
	t_write(s.ini, "%s", ini);
	cr_assert_eq(srv_reload(&s), 0);
	t_expect_status(p1, "/hello", 200);
	t_expect_status(p2, "/hello", 200);
	/* a port in use: the reload fails and nothing changes */
	snprintf(ini, sizeof(ini), "[server]\nlisten = 127.0.0.1:%d\n"
	    "listen = 127.0.0.1:%d\nplugin_dir = %s\n[route /hello]\n"
	    "plugin = hello\n", p2, busy, t_plugin_dir());
	t_write(s.ini, "%s", ini);
	cr_assert_eq(srv_reload(&s), -1);
	cr_assert_eq(srv_wait_log(&s, "Address already in use", 1, 1000), 0);
	t_expect_status(p1, "/hello", 200);
	t_expect_status(p2, "/hello", 200);
	close(busy_fd);
	/* only the second address: the first closes */
	snprintf(ini, sizeof(ini), "[server]\nlisten = 127.0.0.1:%d\n"
	    "plugin_dir = %s\n[route /hello]\nplugin = hello\n", p2,
	    t_plugin_dir());
	t_write(s.ini, "%s", ini);
	cr_assert_eq(srv_reload(&s), 0);
	t_expect_status(p2, "/hello", 200);
	cr_assert_eq(t_connect(p1), -1, "the old address still accepts");
	cr_assert_eq(srv_log_count(&s, "no longer listening on 127.0.0.1:"),
	    1);
	cr_assert_eq(srv_stop(&s), 0);
}
