/*
 * test_browser.c - the chat page (web/index.html) in headless Chromium,
 * served by the default configuration: tests/browser/chat.mjs drives the
 * browser over the DevTools protocol with Node's built-in WebSocket
 * client. Skipped without chromium or node (scripts/test installs
 * Debian's chromium).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(browser, .fini = stop, .timeout = 90);

/* Children of ours other than the server (from /proc), 0 when none. */
static int
other_children(void)
{
	char path[64], *text, *p;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children",
	    (int)getpid(), (int)getpid());
	text = t_read(path, NULL);
	for (p = text; *p;) {
		long pid = strtol(p, &p, 10);

		if (pid > 0 && pid != s.pid)
			n++;
		while (*p == ' ')
			p++;
		if (pid == 0)
			break;
	}
	free(text);
	return n;
}

/* Reaps, for a few seconds at most, the orphans handed to us. */
static void
reap_orphans(void)
{
	long deadline = t_now_ms() + 10000;

	while (t_now_ms() < deadline) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (other_children() == 0)
			return;
		usleep(20 * 1000);
	}
}

Test(browser, chat_page_works_in_chromium)
{
	char cmd[1024], line[512] = "";
	char *ini;
	FILE *p;
	pid_t pid;
	int rc, fds[2];

	if (system("command -v chromium >/dev/null 2>&1") != 0 ||
	    system("node --no-warnings --experimental-websocket -e "
	    "'process.exit(typeof WebSocket === \"function\" ? 0 : 1)' "
	    ">/dev/null 2>&1") != 0)
		cr_skip_test("needs chromium and a node with WebSocket (20+)");
	ini = t_default_ini(NULL);
	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	srv_start_in(&s, ini);
	free(ini);
	snprintf(cmd, sizeof(cmd), "node --no-warnings --experimental-websocket "
	    "%s/tests/browser/chat.mjs %d 2>&1", t_srcdir(), s.port);
	/*
	 * Chromium's helper processes can outlive its main process for a
	 * moment; orphans would be handed to Criterion's runner, which does
	 * not expect them. Make this test process their reaper instead, and
	 * reap them all before the test ends. Not popen: the browser must
	 * not inherit Criterion's descriptors either.
	 */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	cr_assert_eq(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		t_close_inherited();
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	cr_assert(pid > 0);
	close(fds[1]);
	cr_assert_not_null(p = fdopen(fds[0], "r"));
	while (fgets(line, sizeof(line), p) != NULL)
		cr_log_info("%s", line);
	fclose(p);
	waitpid(pid, &rc, 0);
	reap_orphans();
	cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
	    "the browser test failed: %s", line);
	cr_assert(strncmp(line, "ok: ", 4) == 0, "%s", line);
	cr_assert_eq(srv_wait_log(&s, "\"GET /chat HTTP/1.1\" 101", 1, 3000),
	    0);
	cr_assert_eq(srv_stop(&s), 0);
}
