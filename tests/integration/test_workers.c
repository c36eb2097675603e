/*
 * test_workers.c - workers > 1: a master and its workers on one fixed
 * port (SO_REUSEPORT). The load is spread, a killed worker is replaced,
 * SIGHUP reaches every worker, SIGTERM stops them all, and a start that
 * cannot work fails at once with exit status 1.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(workers, .fini = stop, .timeout = 60);

/* Starts a master with n workers on a free port; routes follow. */
static void
start_workers(int n, const char *routes)
{
	char *ini;

	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	s.port = t_free_port();
	cr_assert(asprintf(&ini, "[server]\nlisten = 127.0.0.1:%d\n"
	    "plugin_dir = %s\nworkers = %d\npid_file = squalld.pid\n%s",
	    s.port, t_plugin_dir(), n, routes) > 0);
	srv_start_in(&s, ini);
	free(ini);
	cr_assert_eq(srv_wait_log(&s, "master ready: ", 1, 20000), 0,
	    "the master did not report ready");
}

static int
answering_pid(void)
{
	struct json_object *o, *v;
	struct resp r;
	int pid;

	cr_assert_eq(http_get(s.port, "/echo", &r), 0);
	cr_assert_eq(r.status, 200);
	o = json_tokener_parse(r.body);
	cr_assert(json_object_object_get_ex(o, "pid", &v));
	pid = json_object_get_int(v);
	json_object_put(o);
	resp_free(&r);
	return pid;
}

Test(workers, load_is_spread_over_the_workers)
{
	char routes[512];
	int pids[2] = { 0, 0 }, other = 0;

	snprintf(routes, sizeof(routes), "[route /echo]\nplugin = %s\n",
	    t_test_plugin("echo"));
	start_workers(2, routes);
	cr_assert_eq(srv_log_count(&s, "ready: 1 route"), 2);
	for (int i = 0; i < 60; i++) {
		int pid = answering_pid();

		if (pids[0] == 0 || pids[0] == pid)
			pids[0] = pid;
		else if (pids[1] == 0 || pids[1] == pid)
			pids[1] = pid;
		else
			other++;
	}
	cr_assert_neq(pids[1], 0, "60 connections all went to one worker");
	cr_assert_eq(other, 0, "answers from a third process");
	cr_assert_neq(pids[0], s.pid, "the master served a request");
	cr_assert_eq(srv_stop(&s), 0);
	cr_assert_eq(srv_log_count(&s, "master stopped"), 1);
}

/* The pids of the workers' "squalld V ready: ..., pid P" lines, in order. */
static int
ready_pids(int *out, int max)
{
	char *log = t_read(s.log, NULL), *p = log;
	int n = 0;

	while (n < max && (p = strstr(p, PACKAGE_VERSION " ready: ")) != NULL) {
		char *q = strstr(p, ", pid ");

		p += strlen(PACKAGE_VERSION " ready: ");
		if (q && q < strchr(p, '\n'))
			out[n++] = (int)strtol(q + 6, NULL, 10);
	}
	free(log);
	return n;
}

Test(workers, killed_worker_is_replaced)
{
	int pids[4];

	start_workers(2, "[route /hello]\nplugin = hello\n");
	cr_assert_eq(ready_pids(pids, 4), 2);
	cr_assert_eq(kill(pids[0], SIGKILL), 0);
	cr_assert_eq(srv_wait_log(&s, "was killed by signal 9: starting "
	    "another", 1, 5000), 0, "the master did not notice");
	cr_assert_eq(srv_wait_log(&s, " ready: 1 route", 3, 5000), 0,
	    "no new worker");
	cr_assert_eq(ready_pids(pids, 4), 3);
	cr_assert_neq(kill(pids[1], 0), -1, "the other worker died too");
	for (int i = 0; i < 20; i++)
		t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(srv_stop(&s), 0);
	cr_assert_eq(kill(pids[2], 0), -1, "a worker outlived the master");
}

Test(workers, reload_reaches_every_worker)
{
	struct resp r;

	start_workers(2, "[route /hello]\nplugin = hello\ntext = old\n");
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:%d\nplugin_dir = %s\n"
	    "workers = 2\npid_file = squalld.pid\n[route /hello]\n"
	    "plugin = hello\ntext = new\n", s.port, t_plugin_dir());
	srv_signal(&s, SIGHUP);
	cr_assert_eq(srv_wait_log(&s, "reloaded: 1 route (0 kept, 1 changed, "
	    "0 new)", 2,
	    5000), 0, "not every worker reloaded");
	for (int i = 0; i < 30; i++) {
		cr_assert_eq(http_get(s.port, "/hello", &r), 0);
		cr_assert_str_eq(r.body, "new", "answer %d is stale", i);
		resp_free(&r);
	}
}

Test(workers, sigterm_stops_master_and_workers)
{
	char pid_file[400];
	struct stat st;
	int pids[2];

	start_workers(3, "[route /hello]\nplugin = hello\n");
	snprintf(pid_file, sizeof(pid_file), "%s/squalld.pid", s.dir);
	cr_assert_eq(stat(pid_file, &st), 0, "no pid file");
	cr_assert_eq(ready_pids(pids, 2), 2);
	cr_assert_eq(srv_stop(&s), 0);
	cr_assert_eq(srv_log_count(&s, " stopped\n"), 4, "3 workers and "
	    "the master say they stopped");
	cr_assert_neq(stat(pid_file, &st), 0, "pid file left behind");
	cr_assert_eq(kill(pids[0], 0), -1);
	cr_assert_eq(kill(pids[1], 0), -1);
}

/*
 * SIGTERM after SIGTERM to the master, which passes each on to the
 * workers, until all are gone: the master still exits 0 (a worker that
 * died of a late signal made it say so).
 */
Test(workers, repeated_sigterm_still_exits_zero)
{
	for (int round = 0; round < 3; round++) {
		start_workers(2, "[route /hello]\nplugin = hello\n");
		while (srv_wait_exit(&s, 0) == -2) {
			kill(s.pid, SIGTERM);
			usleep(100);
		}
		if (s.status != 0) {
			char *log = t_read(s.log, NULL);

			cr_assert_fail("round %d: the master's exit status is "
			    "%d (-1: a signal); its log:\n%s", round, s.status,
			    log);
		}
		cr_assert_eq(srv_log_count(&s, "was killed by signal"), 0,
		    "round %d: a worker died of a signal", round);
		srv_cleanup(&s);
	}
}

Test(workers, impossible_start_fails_at_once)
{
	char *out, dir[256], ini[400];

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nworkers = 2\n");
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1);
	cr_assert_not_null(strstr(out, "listen 127.0.0.1:0 with workers = 2: "
	    "workers need a fixed port"), "%s", out);
	free(out);
	t_write(ini, "[server]\nlisten = 127.0.0.1:%d\nworkers = 2\n"
	    "[route /x]\nplugin = /nonexistent/x.so\n", t_free_port());
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1);
	cr_assert_not_null(strstr(out, "cannot open plugin /nonexistent/x.so"),
	    "%s", out);
	cr_assert_not_null(strstr(out, "the workers did not start"), "%s",
	    out);
	free(out);
	t_rm_rf(dir);
}

/* A TMPDIR of the test's own, for the private folders of its servers. */
static char tmpdir_env[256];

static void
own_tmpdir(void)
{
	t_tmpdir(tmpdir_env, sizeof(tmpdir_env));
	setenv("TMPDIR", tmpdir_env, 1);
}

static void
precious(const char *dir)
{
	char path[400];

	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/precious", dir);
	t_write(path, "keep me\n");
}

static int
exists(const char *dir, const char *name)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/*
 * At start, private folders left by processes that are gone are removed;
 * a symlink or a folder of another mode planted under that name is left
 * alone (a local user must not make a root squalld delete other files).
 */
Test(workers, left_behind_private_folders_are_removed_safely)
{
	char stale[400], link[400], open_dir[400], target[400], file[500];
	own_tmpdir();
	snprintf(stale, sizeof(stale), "%s/squalld.999999.stale", tmpdir_env);
	cr_assert_eq(mkdir(stale, 0700), 0);
	snprintf(file, sizeof(file), "%s/1-hello.so", stale);
	t_write(file, "x");
	snprintf(target, sizeof(target), "%s/target", tmpdir_env);
	precious(target);
	snprintf(link, sizeof(link), "%s/squalld.999998.evil", tmpdir_env);
	cr_assert_eq(symlink(target, link), 0);
	snprintf(open_dir, sizeof(open_dir), "%s/squalld.999997.open",
	    tmpdir_env);
	precious(open_dir);
	srv_start(&s, "[route /hello]\nplugin = hello\n");
	unsetenv("TMPDIR");
	cr_assert(!exists(tmpdir_env, "squalld.999999.stale"), "the stale "
	    "folder is still there");
	cr_assert(exists(target, "precious"), "a symlink was followed");
	cr_assert(exists(tmpdir_env, "squalld.999998.evil"));
	cr_assert(exists(open_dir, "precious"), "a folder of mode 0755 was "
	    "emptied");
	cr_assert_eq(srv_log_count(&s, "not removing "), 2);
	cr_assert_eq(srv_log_count(&s, "squalld.999998.evil: a symlink or a "
	    "file"), 1);
	cr_assert_eq(srv_log_count(&s, "squalld.999997.open: its mode is "
	    "0755, not the 0700"), 1);
	t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(srv_stop(&s), 0);
	t_rm_rf(tmpdir_env);
}

/*
 * Another user's private folder, left by its squalld that is gone: the
 * line says whose it is (issue 15, item 15: it said "not a private
 * folder of squalld's", which it is). Needs root, to make the folder.
 */
Test(workers, another_users_private_folder_is_named)
{
	char dir[400];

	if (geteuid() != 0)
		cr_skip_test("needs root to make another user's folder");
	own_tmpdir();
	snprintf(dir, sizeof(dir), "%s/squalld.999996.theirs", tmpdir_env);
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(chown(dir, 65534, 65534), 0);
	srv_start(&s, "[route /hello]\nplugin = hello\n");
	unsetenv("TMPDIR");
	cr_assert(exists(tmpdir_env, "squalld.999996.theirs"));
	cr_assert_eq(srv_log_count(&s, "squalld.999996.theirs: it belongs to "),
	    1);
	cr_assert_eq(srv_log_count(&s, "uid 65534"), 1);
	cr_assert_eq(srv_stop(&s), 0);
	t_rm_rf(tmpdir_env);
}

/*
 * The master cleans up after a killed worker, but not through a symlink
 * planted with the worker's prefix.
 */
Test(workers, cleanup_after_a_killed_worker_follows_no_symlink)
{
	char link[400], target[400], name[64];
	int pids[4];

	own_tmpdir();
	start_workers(2, "[route /hello]\nplugin = hello\n");
	unsetenv("TMPDIR");
	cr_assert_eq(ready_pids(pids, 4), 2);
	snprintf(target, sizeof(target), "%s/target", tmpdir_env);
	precious(target);
	snprintf(link, sizeof(link), "%s/squalld.%d.evil", tmpdir_env, pids[0]);
	cr_assert_eq(symlink(target, link), 0);
	cr_assert_eq(kill(pids[0], SIGKILL), 0);
	cr_assert_eq(srv_wait_log(&s, " ready: 1 route", 3, 5000), 0,
	    "no new worker");
	cr_assert(exists(target, "precious"), "the master followed a symlink");
	cr_assert_eq(srv_wait_log(&s, "not removing ", 1, 3000), 0);
	/* the killed worker's own folder is gone */
	{
		DIR *d = opendir(tmpdir_env);
		struct dirent *de;

		snprintf(name, sizeof(name), "squalld.%d.", pids[0]);
		while ((de = readdir(d)) != NULL)
			cr_assert(strncmp(de->d_name, name, strlen(name)) != 0 ||
			    strcmp(de->d_name + strlen(name), "evil") == 0,
			    "%s left behind", de->d_name);
		closedir(d);
	}
	cr_assert_eq(srv_stop(&s), 0);
	t_rm_rf(tmpdir_env);
}
