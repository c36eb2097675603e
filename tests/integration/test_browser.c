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

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(browser, .fini = stop, .timeout = 90);

Test(browser, chat_page_works_in_chromium)
{
	char cmd[1024], line[512] = "";
	char *ini;
	FILE *p;
	int rc;

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
	cr_assert_not_null(p = popen(cmd, "r"));
	while (fgets(line, sizeof(line), p) != NULL)
		cr_log_info("%s", line);
	rc = pclose(p);
	cr_assert_eq(rc, 0, "the browser test failed: %s", line);
	cr_assert(strncmp(line, "ok: ", 4) == 0, "%s", line);
	cr_assert_eq(srv_wait_log(&s, "\"GET /chat HTTP/1.1\" 101", 1, 3000),
	    0);
	cr_assert_eq(srv_stop(&s), 0);
}
