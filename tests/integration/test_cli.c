/*
 * test_cli.c - squalld as a person runs it: the options, -t on good and
 * bad configurations (tests/data), -s with pid_file, the messages a
 * person can act on, SIGTERM with a request in flight, SIGUSR1.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <poll.h>

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(cli, .fini = stop, .timeout = 60);

Test(cli, version_and_help)
{
	char *out;

	cr_assert_eq(t_run_squalld(&out, "-V", NULL), 0);
	cr_assert_str_eq(out, "squalld " PACKAGE_VERSION " (plugin ABI 1)\n");
	free(out);
	cr_assert_eq(t_run_squalld(&out, "--help", NULL), 0);
	cr_assert_not_null(strstr(out, "--check-config"));
	free(out);
	cr_assert_eq(t_run_squalld(&out, "--bogus", NULL), 2);
	cr_assert_not_null(strstr(out, "usage: squalld"));
	free(out);
	cr_assert_eq(t_run_squalld(&out, "-p", "http", NULL), 2);
	cr_assert_not_null(strstr(out, "bad port 'http'"));
	free(out);
}

/*
 * Each .ini file in tests/data: the first lines say what -t must do:
 *   ; exit: N
 *   ; output: TEXT          (repeatable; each must appear)
 * @PLUGINS@ and @TESTPLUGINS@ stand for the plugin folders.
 */
static char *
substitute(const char *text)
{
	size_t cap = strlen(text) * 4 + 1024, n = 0;
	char *out = malloc(cap), tp[512];

	snprintf(tp, sizeof(tp), "%s/tests/plugins/.libs", t_builddir());
	while (*text && n + 1 < cap) {
		if (strncmp(text, "@PLUGINS@", 9) == 0) {
			n += (size_t)snprintf(out + n, cap - n, "%s",
			    t_plugin_dir());
			text += 9;
		} else if (strncmp(text, "@TESTPLUGINS@", 13) == 0) {
			n += (size_t)snprintf(out + n, cap - n, "%s", tp);
			text += 13;
		} else
			out[n++] = *text++;
	}
	out[n] = '\0';
	return out;
}

Test(cli, check_config_data_cases)
{
	char data[512], dir[256], ini[400], path[1024];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(data, sizeof(data), "%s/tests/data", t_srcdir());
	cr_assert_not_null(d = opendir(data));
	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	while ((de = readdir(d)) != NULL) {
		char *text, *sub, *out, *line;
		int want = -1, rc;

		if (strstr(de->d_name, ".ini") == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", data, de->d_name);
		text = t_read(path, NULL);
		sub = substitute(text);
		t_write(ini, "%s", sub);
		rc = t_run_squalld(&out, "-t", "-c", ini, NULL);
		for (line = text; line && *line == ';';
		    line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
			char what[512];
			size_t len = strcspn(line, "\n");

			if (strncmp(line, "; exit: ", 8) == 0)
				want = (int)strtol(line + 8, NULL, 10);
			else if (strncmp(line, "; output: ", 10) == 0) {
				snprintf(what, sizeof(what), "%.*s",
				    (int)(len - 10), line + 10);
				cr_expect_not_null(strstr(out, what),
				    "%s: output lacks \"%s\":\n%s", de->d_name,
				    what, out);
			}
		}
		cr_expect_eq(rc, want, "%s: exit %d, expected %d:\n%s",
		    de->d_name, rc, want, out);
		free(out);
		free(sub);
		free(text);
		n++;
	}
	closedir(d);
	t_rm_rf(dir);
	cr_assert_geq(n, 8, "only %d data cases", n);
}

static int
count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* -T: -t, then every key as it is in effect, defaults and paths resolved */
Test(cli, dump_config_prints_the_effective_configuration)
{
	char dir[256], ini[300], want[600], *out;

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:8000\nlisten = [::1]:8001\n"
	    "plugin_dir = %s\npid_file = run/squalld.pid\n"
	    "trusted_proxies = 10.0.0.0/8 ::1\n[route /hello]\n"
	    "plugin = hello\ntext = hi\n[route /s/*]\nplugin = static\n"
	    "root = .\n[route /chat]\nplugin = chat\nws_deflate = off\n",
	    t_plugin_dir());
	cr_assert_eq(t_run_squalld(&out, "-T", "-c", ini, "-p", "9000", NULL),
	    0, "%s", out);
	cr_assert_not_null(strstr(out, "\n[server]\nlisten = 127.0.0.1:9000\n"
	    "listen = [::1]:9000\n"), "%s", out);
	snprintf(want, sizeof(want), "\npid_file = %s/run/squalld.pid\n", dir);
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_not_null(strstr(out, "\nmax_connections = 10000\n"), "%s",
	    out);
	cr_assert_not_null(strstr(out, "\nxheaders = off\n"), "%s", out);
	cr_assert_not_null(strstr(out, "\nlog_level = info\n"), "%s", out);
	cr_assert_not_null(strstr(out, "\ntrusted_proxies = 10.0.0.0/8 ::1\n"),
	    "%s", out);
	/* ws_deflate on WebSocket routes only (issue 15, item 16) */
	snprintf(want, sizeof(want), "\n[route /hello]\nplugin = %s/hello.so\n"
	    "text = hi\n\n", t_plugin_dir());
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_not_null(strstr(out, "\n[route /s/*]\n"), "%s", out);
	snprintf(want, sizeof(want), "\n[route /chat]\nplugin = %s/chat.so\n"
	    "ws_deflate = off\n", t_plugin_dir());
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_eq(count_of(out, "ws_deflate"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "configuration is valid (3 routes)"),
	    "%s", out);
	free(out);
	/* an invalid configuration: the error, no dump, exit 1 */
	t_write(ini, "[server]\nbogus = 1\n");
	cr_assert_eq(t_run_squalld(&out, "--dump-config", "-c", ini, NULL), 1);
	cr_assert_null(strstr(out, "max_connections ="), "%s", out);
	free(out);
	t_rm_rf(dir);
}

/*
 * Instances on one configuration, told apart by -p, log to files of
 * their own with %p in the paths (issue 15, item 10).
 */
Test(cli, percent_p_gives_each_instance_its_logs)
{
	char dir[256], ini[300], want[600], *out;

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:8000\nplugin_dir = %s\n"
	    "access_log = access-%%p.log\nerror_log = error-%%p.log\n"
	    "[route /hello]\nplugin = hello\n", t_plugin_dir());
	cr_assert_eq(t_run_squalld(&out, "-T", "-c", ini, "-p", "8123", NULL),
	    0, "%s", out);
	snprintf(want, sizeof(want), "\naccess_log = %s/access-8123.log\n",
	    dir);
	cr_assert_not_null(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), "\nerror_log = %s/error-8123.log\n", dir);
	cr_assert_not_null(strstr(out, want), "%s", out);
	free(out);
	cr_assert_eq(t_run_squalld(&out, "-T", "-c", ini, NULL), 0, "%s", out);
	snprintf(want, sizeof(want), "\naccess_log = %s/access-8000.log\n",
	    dir);
	cr_assert_not_null(strstr(out, want), "%s", out);
	free(out);
	t_rm_rf(dir);
}

/*
 * A plugin that crashes squalld (workers = 1) leaves a line naming the
 * route and plugin that ran; the process still dies of its signal. (The
 * sanitizer build reports crashes its own way.)
 */
#ifndef SQ_SANITIZERS
/*
 * The fatal signal's line reads like every other: local time (within a
 * minute of now), level, pid (issue 15, item 7: it had none of them).
 */
static void
expect_log_format(struct srv *c, pid_t pid, const char *text)
{
	char *log = t_read(c->log, NULL), *hit = strstr(log, text), *bol;
	char want[64];
	struct tm tm;
	time_t when;

	cr_assert_not_null(hit);
	for (bol = hit; bol > log && bol[-1] != '\n'; bol--)
		;
	memset(&tm, 0, sizeof(tm));
	cr_assert_not_null(strptime(bol, "%Y-%m-%d %H:%M:%S ", &tm),
	    "no time stamp: %.200s", bol);
	tm.tm_isdst = -1;
	when = mktime(&tm);
	cr_assert_lt(labs((long)(when - time(NULL))), 60, "%.200s", bol);
	snprintf(want, sizeof(want), " [error] %d squalld: fatal", (int)pid);
	cr_assert_eq(strncmp(bol + 19, want, strlen(want)), 0, "%.200s", bol);
	free(log);
}
#endif

Test(cli, fatal_signal_names_the_plugin_and_route)
{
#ifdef SQ_SANITIZERS
	cr_skip_test("the sanitizers report crashes themselves");
#else
	static const struct {
		const char *query, *line;
	} cases[] = {
		{ "segv", "squalld: fatal signal 11 (SIGSEGV) in plugin crash "
		    "test, route /boom\n" },
		{ "abort", "squalld: fatal signal 6 (SIGABRT) in plugin crash "
		    "test, route /boom\n" },
		{ "fpe", "squalld: fatal signal 8 (SIGFPE) in plugin crash "
		    "test, route /boom\n" },
		{ "timer", "squalld: fatal signal 11 (SIGSEGV) in plugin crash "
		    "test, route /boom\n" },
		{ "io", "squalld: fatal signal 11 (SIGSEGV) in plugin crash "
		    "test, route /boom\n" },
	};
	struct srv c;
	char path[64];
	struct resp r;
	pid_t pid;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		srv_start(&c, "[route /boom]\nplugin = %s\n",
		    t_test_plugin("crash"));
		t_expect_status(c.port, "/boom", 200);
		snprintf(path, sizeof(path), "/boom?%s", cases[i].query);
		http_request(c.port, "GET", path, NULL, NULL, 0, 5000, &r);
		resp_free(&r);
		pid = c.pid;
		cr_assert_eq(srv_wait_exit(&c, 5000), -1, "%s: squalld did not "
		    "die of its signal", cases[i].query);
		cr_assert_eq(srv_log_count(&c, cases[i].line), 1, "%s: no "
		    "line \"%s\"", cases[i].query, cases[i].line);
		expect_log_format(&c, pid, cases[i].line);
		srv_cleanup(&c);
	}
#endif
}

#ifndef SQ_SANITIZERS
/*
 * The tid of a thread of pid named comm (the core names its threads:
 * squalld-ws, squalld-offload), or -1.
 */
static pid_t
thread_named(pid_t pid, const char *comm)
{
	char path[320], *name;
	pid_t tid = -1;
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while (tid < 0 && (e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid,
		    e->d_name);
		name = t_read(path, NULL);
		name[strcspn(name, "\n")] = '\0';
		if (strcmp(name, comm) == 0)
			tid = atoi(e->d_name);
		free(name);
	}
	closedir(dir);
	return tid;
}
#endif

/*
 * A fatal signal on one of the core's own threads, outside plugin code,
 * names that thread (issue 15, item 6: "in squalld itself" said nothing
 * of where). The signal is sent to the thread (tgkill), as a fault
 * there would raise it.
 */
Test(cli, fatal_signal_names_the_core_thread)
{
#ifdef SQ_SANITIZERS
	cr_skip_test("the sanitizers report crashes themselves");
#else
	static const struct {
		const char *comm, *line;
	} cases[] = {
		{ "squalld-ws", "squalld: fatal signal 11 (SIGSEGV) in squalld "
		    "itself, on the WebSocket thread\n" },
		{ "squalld-offload", "squalld: fatal signal 11 (SIGSEGV) in "
		    "squalld itself, on an offload thread\n" },
	};
	struct srv c;
	pid_t tid;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		srv_start(&c, "[route /chat]\nplugin = chat\n");
		/* a thread names itself once it runs, maybe after "ready:" */
		for (long t0 = t_now_ms(); (tid = thread_named(c.pid,
		    cases[i].comm)) <= 0 && t_now_ms() - t0 < 3000;)
			usleep(10 * 1000);
		cr_assert_gt(tid, 0, "squalld has no thread named %s",
		    cases[i].comm);
		cr_assert_eq(syscall(SYS_tgkill, c.pid, tid, SIGSEGV), 0);
		cr_assert_eq(srv_wait_exit(&c, 5000), -1, "%s: squalld did not "
		    "die of its signal", cases[i].comm);
		cr_assert_eq(srv_log_count(&c, cases[i].line), 1, "no line "
		    "\"%s\"", cases[i].line);
		srv_cleanup(&c);
	}
#endif
}

Test(cli, port_in_use_is_named)
{
	char *out, dir[256], ini[400], want[128];
	int rc;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:%d\nplugin_dir = %s\n"
	    "[route /hello]\nplugin = hello\n", s.port, t_plugin_dir());
	rc = t_run_squalld(&out, "-c", ini, NULL);
	cr_assert_eq(rc, 1);
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%d: Address "
	    "already in use", s.port);
	cr_assert_not_null(strstr(out, want), "%s", out);
	free(out);
	/* -p overrides the port of every listen address */
	t_write(ini, "[server]\nlisten = 127.0.0.1:1\nplugin_dir = %s\n"
	    "[route /hello]\nplugin = hello\n", t_plugin_dir());
	snprintf(want, sizeof(want), "%d", s.port);
	rc = t_run_squalld(&out, "-c", ini, "-p", want, NULL);
	cr_assert_eq(rc, 1);
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%d: Address "
	    "already in use", s.port);
	cr_assert_not_null(strstr(out, want), "%s", out);
	free(out);
	t_rm_rf(dir);
}

Test(cli, bad_plugin_at_start_exits_1)
{
	char *out, dir[256], ini[400];

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\n[route /x]\nplugin = %s\n",
	    t_test_plugin("unresolved"));
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1);
	cr_assert_not_null(strstr(out, "squall.ini:3: route '/x': cannot load "
	    "plugin "), "%s", out);
	cr_assert_not_null(strstr(out, "undefined symbol"), "%s", out);
	free(out);
	t_rm_rf(dir);
}

Test(cli, signal_option_uses_pid_file)
{
	char *out, pid[400];
	struct stat st;

	srv_start(&s, "pid_file = squalld.pid\n[route /hello]\nplugin = hello\n");
	snprintf(pid, sizeof(pid), "%s/squalld.pid", s.dir);
	cr_assert_eq(stat(pid, &st), 0, "no pid file");
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload", NULL),
	    0, "%s", out);
	free(out);
	cr_assert_eq(srv_wait_log(&s, "reloaded:", 1, 5000), 0);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reopen", NULL),
	    0, "%s", out);
	free(out);
	cr_assert_eq(srv_wait_log(&s, "log files reopened", 1, 5000), 0);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "restart", NULL),
	    1);
	cr_assert_not_null(strstr(out, "unknown signal 'restart'"));
	free(out);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "stop", NULL), 0);
	free(out);
	cr_assert_eq(srv_wait_exit(&s, 10000), 0, "squalld did not exit 0");
	cr_assert_eq(srv_log_count(&s, "stopped"), 1);
	cr_assert_neq(stat(pid, &st), 0, "pid file left behind");
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "stop", NULL), 1);
	cr_assert_not_null(strstr(out, "squalld.pid: No such file"), "%s", out);
	free(out);
}

/*
 * -s reload checks the configuration first, as -t does: an invalid one is
 * reported and nothing is signalled. A configuration the running server
 * refuses (here: a listen address taken, which -t cannot know) makes -s
 * exit 1 with the server's reason.
 */
Test(cli, signal_reload_reports_failures)
{
	char *out, *good;
	int port;

	srv_start(&s, "pid_file = squalld.pid\n[route /hello]\nplugin = hello\n");
	good = t_read(s.ini, NULL);
	t_write(s.ini, "%s[route /x]\nplugin = hello\ncolour = blue\n", good);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload", NULL),
	    1, "%s", out);
	cr_assert_not_null(strstr(out, "has no option 'colour'"), "%s", out);
	cr_assert_not_null(strstr(out, "nothing was signalled"), "%s", out);
	free(out);
	cr_assert_eq(srv_log_count(&s, "reloading"), 0, "the server was "
	    "signalled");
	/* valid for -t, refused by the server: the port is taken */
	{
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		cr_assert_eq(listen(fd, 1), 0);
		getsockname(fd, (struct sockaddr *)&sa, &len);
		port = ntohs(sa.sin_port);
		t_write(s.ini, "[server]\nlisten = 127.0.0.1:%d\nplugin_dir = "
		    "%s\npid_file = squalld.pid\n[route /hello]\n"
		    "plugin = hello\n", port, t_plugin_dir());
		cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload",
		    NULL), 1, "%s", out);
		close(fd);
	}
	cr_assert_not_null(strstr(out, "the running server refused the new "
	    "configuration: "), "%s", out);
	cr_assert_not_null(strstr(out, "127.0.0.1:"), "%s", out);
	free(out);
	t_expect_status(s.port, "/hello", 200);
	/* and a good one */
	t_write(s.ini, "%s", good);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload", NULL),
	    0, "%s", out);
	cr_assert_not_null(strstr(out, "squalld: reloaded"), "%s", out);
	free(out);
	free(good);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * An option the plugin does not accept, found after its create() ran
 * (chat then has a timer pending on the instance): squalld exits 1 with
 * the file:line, and does not crash calling into the instance it gave
 * up (issue 15, defect 3: exit 139).
 */
Test(cli, rejected_option_after_create_exits_1)
{
	char *out, dir[256], ini[400];

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "[route /chat]\nplugin = chat\nbogus = 1\n", t_plugin_dir());
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1, "%s", out);
	cr_assert_not_null(strstr(out, "squall.ini:6: route '/chat': plugin "
	    "'chat' has no option 'bogus'"), "%s", out);
	free(out);
	t_rm_rf(dir);
}

/*
 * A process whose argument ends in /squalld but whose executable is not
 * squalld (a stale pid file, the pid reused): -s does not signal it, and
 * a squalld starting with that pid file takes it over (issue 15, defect
 * 5: both went by the arguments).
 */
Test(cli, signal_matches_the_executable_not_an_argument)
{
	char dir[256], ini[300], pidf[300], *out, *text;
	pid_t victim;
	int st;

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	snprintf(pidf, sizeof(pidf), "%s/squalld.pid", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "pid_file = squalld.pid\n[route /hello]\nplugin = hello\n",
	    t_plugin_dir());
	if ((victim = fork()) == 0) {
		t_close_inherited();
		execl("/bin/sh", "sh", "-c", "sleep 30; exit 0",
		    "/var/log/squalld", (char *)NULL);
		_exit(127);
	}
	/* the shell has exec'd when its arguments show $0 */
	for (int i = 0; i < 500; i++) {
		char path[64], buf[512];
		FILE *f;
		size_t n = 0;

		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)victim);
		if ((f = fopen(path, "r")) != NULL) {
			n = fread(buf, 1, sizeof(buf), f);
			fclose(f);
		}
		if (memmem(buf, n, "/var/log/squalld", 16) != NULL)
			break;
		usleep(10000);
	}
	t_write(pidf, "%d\n", (int)victim);
	cr_assert_eq(t_run_squalld(&out, "-c", ini, "-s", "stop", NULL), 1,
	    "%s", out);
	cr_assert_not_null(strstr(out, "is not a running squalld"), "%s", out);
	free(out);
	cr_assert_eq(waitpid(victim, &st, WNOHANG), 0, "the process named in "
	    "the stale pid file was signalled");
	/* a squalld starting on that pid file takes it */
	memset(&s, 0, sizeof(s));
	snprintf(s.dir, sizeof(s.dir), "%s", dir);
	text = t_read(ini, NULL);
	srv_start_in(&s, text);
	free(text);
	text = t_read(pidf, NULL);
	cr_assert_eq(atoi(text), (int)s.pid, "pid file: %s", text);
	free(text);
	cr_assert_eq(srv_stop(&s), 0);
	kill(victim, SIGKILL);
	waitpid(victim, &st, 0);
}

/* A pid file naming a process that is not squalld: nothing is signalled. */
Test(cli, signal_refuses_a_stale_pid_file)
{
	char dir[256], ini[300], pidf[300], *out;
	pid_t victim;
	int st;

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	snprintf(pidf, sizeof(pidf), "%s/squalld.pid", dir);
	t_write(ini, "[server]\nplugin_dir = %s\npid_file = squalld.pid\n",
	    t_plugin_dir());
	if ((victim = fork()) == 0) {
		t_close_inherited();
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	t_write(pidf, "%d\n", (int)victim);
	cr_assert_eq(t_run_squalld(&out, "-c", ini, "-s", "stop", NULL), 1);
	cr_assert_not_null(strstr(out, "is not a running squalld"), "%s", out);
	free(out);
	cr_assert_eq(waitpid(victim, &st, WNOHANG), 0, "the process named in "
	    "the stale pid file was signalled");
	kill(victim, SIGKILL);
	waitpid(victim, &st, 0);
	t_rm_rf(dir);
}

/*
 * -g gives each instance of one configuration its own pid file; a second
 * instance given the first one's is refused, and the first keeps it.
 */
Test(cli, pid_file_option_and_one_pid_file_per_instance)
{
	struct srv a;
	char pa[300], *out, *ini;

	memset(&a, 0, sizeof(a));
	t_tmpdir(a.dir, sizeof(a.dir));
	cr_assert(asprintf(&ini, "[server]\nlisten = 127.0.0.1:0\n"
	    "plugin_dir = %s\npid_file = shared.pid\n[route /hello]\n"
	    "plugin = hello\n", t_plugin_dir()) > 0);
	snprintf(pa, sizeof(pa), "%s/a.pid", a.dir);
	snprintf(a.pid_arg, sizeof(a.pid_arg), "%s", pa);
	srv_start_in(&a, ini);
	cr_assert_eq(access(pa, F_OK), 0, "no -g pid file");
	cr_assert_neq(srv_log_count(&a, "shared.pid"), 1);
	/* a second instance on the first one's pid file is refused */
	cr_assert_eq(t_run_squalld(&out, "-c", a.ini, "-g", pa, NULL), 1, "%s",
	    out);
	cr_assert_not_null(strstr(out, "belongs to squalld pid"), "%s", out);
	free(out);
	cr_assert_eq(access(pa, F_OK), 0, "the first instance lost its pid "
	    "file");
	/* -s with -g reaches the right one */
	cr_assert_eq(t_run_squalld(&out, "-c", a.ini, "-g", pa, "-s", "stop",
	    NULL), 0, "%s", out);
	free(out);
	cr_assert_eq(srv_wait_exit(&a, 10000), 0);
	cr_assert_neq(access(pa, F_OK), 0, "pid file left behind");
	free(ini);
	srv_cleanup(&a);
}

/* The next datagram on fd, or "" after 5 s. */
static char *
notify_next(int fd, char *buf, size_t len)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n = 0;

	buf[0] = '\0';
	if (poll(&p, 1, 5000) == 1 && (n = recv(fd, buf, len - 1, 0)) > 0)
		buf[n] = '\0';
	return buf;
}

/* Type=notify: READY, RELOADING then READY, STOPPING, with the main pid. */
Test(cli, notifies_the_service_manager)
{
#ifndef HAVE_SYSTEMD
	cr_skip_test("built without libsystemd");
#else
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[256], buf[512], want[64];
	int fd;

	t_tmpdir(dir, sizeof(dir));
	cr_assert_lt(strlen(dir) + 8, sizeof(sa.sun_path));
	memcpy(sa.sun_path, dir, strlen(dir));
	memcpy(sa.sun_path + strlen(dir), "/notify", 8);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	srv_start(&s, "[route /hello]\nplugin = hello\n");
	unsetenv("NOTIFY_SOCKET");
	snprintf(want, sizeof(want), "MAINPID=%d", (int)s.pid);
	notify_next(fd, buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "READY=1"), "[%s]", buf);
	cr_assert_not_null(strstr(buf, want), "[%s]", buf);
	srv_signal(&s, SIGHUP);
	cr_assert_not_null(strstr(notify_next(fd, buf, sizeof(buf)),
	    "RELOADING=1"), "[%s]", buf);
	cr_assert_not_null(strstr(notify_next(fd, buf, sizeof(buf)),
	    "READY=1"), "[%s]", buf);
	srv_signal(&s, SIGTERM);
	cr_assert_not_null(strstr(notify_next(fd, buf, sizeof(buf)),
	    "STOPPING=1"), "[%s]", buf);
	cr_assert_eq(srv_wait_exit(&s, 10000), 0);
	close(fd);
	t_rm_rf(dir);
#endif
}

Test(cli, sigterm_lets_in_flight_request_finish)
{
	struct bg slow;

	srv_start(&s, "[route /delay]\nplugin = delay\n");
	bg_start(&slow, s.port, "/delay?ms=800");
	usleep(200 * 1000);
	srv_signal(&s, SIGTERM);
	cr_assert_eq(srv_wait_log(&s, "stopping: 1 request in flight", 1,
	    5000), 0);
	bg_wait(&slow);
	cr_assert_eq(slow.r.status, 200);
	cr_assert_str_eq(slow.r.body, "waited 800 ms\n");
	resp_free(&slow.r);
	/*
	 * It stops on its own once the request is answered: wait for that
	 * exit. A second SIGTERM (srv_stop) could land after the handlers
	 * are gone, in the last moments of the exit (long under ASan), and
	 * kill it.
	 */
	cr_assert_eq(srv_wait_exit(&s, 10000), 0);
	cr_assert_eq(srv_log_count(&s, "stopped"), 1);
}

Test(cli, sigterm_exit_status_is_zero)
{
	srv_start(&s, "[route /hello]\nplugin = hello\n");
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * SIGTERM after SIGTERM, as an impatient operator or a supervisor sends
 * them, until the server is gone: it still exits 0. A signal that lands
 * after the signal events are freed, in the last moments of the exit,
 * used to find the default disposition and kill it (test_workers does
 * the same to a master).
 */
Test(cli, repeated_sigterm_still_exits_zero)
{
	for (int round = 0; round < 5; round++) {
		srv_start(&s, "[route /hello]\nplugin = hello\n");
		while (srv_wait_exit(&s, 0) == -2) {
			kill(s.pid, SIGTERM);
			usleep(100);
		}
		cr_assert_eq(s.status, 0, "round %d: squalld died of a signal, "
		    "or did not exit 0", round);
		srv_cleanup(&s);
	}
}

Test(cli, shutdown_timeout_ends_long_requests)
{
	struct bg slow;
	long t0;

	srv_start(&s, "shutdown_timeout = 1\n[route /delay]\nplugin = delay\n");
	bg_start(&slow, s.port, "/delay?ms=20000");
	usleep(200 * 1000);
	t0 = t_now_ms();
	cr_assert_eq(srv_stop(&s), 0);
	cr_assert_lt(t_now_ms() - t0, 5000);
	bg_wait(&slow);
	cr_assert_eq(slow.r.status, 503);
	resp_free(&slow.r);
}

Test(cli, sigusr1_reopens_access_log)
{
	char acc[400], moved[400], *text;
	struct resp r;

	srv_start(&s, "access_log = access.log\n[route /hello]\nplugin = hello\n");
	snprintf(acc, sizeof(acc), "%s/access.log", s.dir);
	snprintf(moved, sizeof(moved), "%s/access.log.1", s.dir);
	http_get(s.port, "/hello?first", &r);
	resp_free(&r);
	cr_assert_eq(rename(acc, moved), 0);
	srv_signal(&s, SIGUSR1);
	cr_assert_eq(srv_wait_log(&s, "log files reopened", 1, 5000), 0);
	http_get(s.port, "/hello?second", &r);
	resp_free(&r);
	text = t_read(moved, NULL);
	cr_assert_not_null(strstr(text, "/hello?first"));
	cr_assert_null(strstr(text, "/hello?second"));
	free(text);
	text = t_read(acc, NULL);
	cr_assert_not_null(strstr(text, "\"GET /hello?second HTTP/1.1\" 200"),
	    "%s", text);
	free(text);
}

static long
uid_of(pid_t pid)
{
	char path[64], *text, *p;
	long uid = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = t_read(path, NULL);
	if ((p = strstr(text, "\nUid:")) != NULL)
		uid = strtol(p + 5, NULL, 10);
	free(text);
	return uid;
}

/*
 * For the tests of user = nobody (as root): s.dir readable by nobody,
 * with hello.so in it, since everything nobody reads on a reload must be.
 * Returns nobody's entry; skips the test when not root.
 */
static struct passwd *
nobody_dir(void)
{
	struct passwd *pw = getpwnam("nobody");
	char so[400], src[400];

	if (geteuid() != 0 || pw == NULL)
		cr_skip_test("needs root and a user nobody");
	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	chmod(s.dir, 0755);
	snprintf(so, sizeof(so), "%s/hello.so", s.dir);
	snprintf(src, sizeof(src), "%s/hello.so", t_plugin_dir());
	t_copy(src, so);
	chmod(so, 0755);
	return pw;
}

Test(cli, user_drops_root_after_binding)
{
	struct passwd *pw = nobody_dir();

	srv_start_in(&s, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = .\n"
	    "user = nobody\n[route /hello]\nplugin = hello\n");
	cr_assert_eq(srv_wait_log(&s, "running as user nobody", 1, 3000), 0);
	cr_assert_eq(uid_of(s.pid), (long)pw->pw_uid);
	t_expect_status(s.port, "/hello", 200);
	/* reloads still load plugins, now as nobody */
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = .\n"
	    "user = nobody\n[route /hello]\nplugin = hello\ntext = again\n");
	chmod(s.ini, 0644);
	cr_assert_eq(srv_reload(&s), 0);
	{
		struct resp r;

		http_get(s.port, "/hello", &r);
		cr_assert_str_eq(r.body, "again");
		resp_free(&r);
	}
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * -s reload checks the configuration as the server will load it: as the
 * configured user, not as root who types it (issue 15, item 9: root ran
 * every plugin's create(), and read a plugin the server cannot).
 */
Test(cli, signal_reload_checks_as_the_configured_user)
{
	char so[400], *out;

	(void)nobody_dir();
	srv_start_in(&s, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = .\n"
	    "user = nobody\npid_file = squalld.pid\n[route /hello]\n"
	    "plugin = hello\n");
	cr_assert_eq(srv_wait_log(&s, "running as user nobody", 1, 3000), 0);
	/* a plugin only root may read now */
	snprintf(so, sizeof(so), "%s/hello.so", s.dir);
	cr_assert_eq(chmod(so, 0700), 0);
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = .\n"
	    "user = nobody\npid_file = squalld.pid\n[route /hello]\n"
	    "plugin = hello\ntext = again\n");
	chmod(s.ini, 0644);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload", NULL),
	    1, "%s", out);
	cr_assert_not_null(strstr(out, "Permission denied"), "%s", out);
	cr_assert_not_null(strstr(out, "nothing was signalled: the "
	    "configuration is invalid (checked as user nobody"), "%s", out);
	free(out);
	cr_assert_eq(srv_log_count(&s, "reloading"), 0, "the server was "
	    "signalled");
	/* readable again: checked and signalled */
	cr_assert_eq(chmod(so, 0755), 0);
	cr_assert_eq(t_run_squalld(&out, "-c", s.ini, "-s", "reload", NULL),
	    0, "%s", out);
	free(out);
	t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * With user =, the log folders must let that user create the files again
 * (SIGUSR1 after logrotate): a root-only folder is refused at start, and
 * a folder of the user's works, reopen included.
 */
Test(cli, user_must_be_able_to_reopen_the_logs)
{
	struct passwd *pw = nobody_dir();
	char logs[400], ini[1024], moved[500], path[500], *out;

	snprintf(logs, sizeof(logs), "%s/logs", s.dir);
	cr_assert_eq(mkdir(logs, 0755), 0);	/* root's */
	snprintf(ini, sizeof(ini), "%s/squall.ini", s.dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = .\n"
	    "user = nobody\naccess_log = logs/access.log\n"
	    "[route /hello]\nplugin = hello\n");
	chmod(ini, 0644);
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1, "%s", out);
	cr_assert_not_null(strstr(out, "/logs is not writable by user "
	    "nobody"), "%s", out);
	free(out);
	cr_assert_eq(chown(logs, pw->pw_uid, pw->pw_gid), 0);
	/* the user's folder: a link planted there leads root nowhere */
	{
		char victim[500], link[500];
		struct stat st;

		snprintf(victim, sizeof(victim), "%s/victim", s.dir);
		t_write(victim, "root's\n");
		snprintf(link, sizeof(link), "%s/access.log", logs);
		unlink(link);	/* made by the refused start above */
		cr_assert_eq(symlink(victim, link), 0);
		cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1, "%s",
		    out);
		free(out);
		cr_assert_eq(stat(victim, &st), 0);
		cr_assert_eq(st.st_uid, 0, "the victim was given to nobody");
		out = t_read(victim, NULL);
		cr_assert_str_eq(out, "root's\n", "the victim was written");
		free(out);
		unlink(link);
	}
	srv_start_in(&s, NULL);
	t_expect_status(s.port, "/hello", 200);
	snprintf(path, sizeof(path), "%s/access.log", logs);
	snprintf(moved, sizeof(moved), "%s/access.log.1", logs);
	cr_assert_eq(rename(path, moved), 0);
	srv_signal(&s, SIGUSR1);
	cr_assert_eq(srv_wait_log(&s, "log files reopened", 1, 3000), 0);
	t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(access(path, F_OK), 0, "access.log was not reopened");
	cr_assert_eq(srv_stop(&s), 0);
}

Test(cli, unknown_user_is_an_error)
{
	char *out, dir[256], ini[400];

	if (geteuid() != 0)
		cr_skip_test("needs root");
	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nuser = no-such-user-x\n");
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1);
	cr_assert_not_null(strstr(out, "user 'no-such-user-x': no such user"),
	    "%s", out);
	free(out);
	t_rm_rf(dir);
}

/* A FIFO where a log file should be is refused: opening it would block. */
Test(cli, log_path_that_is_a_fifo_is_refused)
{
	char dir[256], ini[300], fifo[300], *out;

	t_tmpdir(dir, sizeof(dir));
	snprintf(fifo, sizeof(fifo), "%s/access.log", dir);
	cr_assert_eq(mkfifo(fifo, 0644), 0);
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "access_log = access.log\n[route /hello]\nplugin = hello\n",
	    t_plugin_dir());
	cr_assert_eq(t_run_squalld(&out, "-c", ini, NULL), 1, "%s", out);
	cr_assert_not_null(strstr(out, "cannot open log file"), "%s", out);
	free(out);
	t_rm_rf(dir);
}
