/*
 * test_ws.c - the WebSocket bridge through the chat plugin: the seed's
 * chat lines byte for byte, origin checks, the RFC 6455 close codes for
 * messages that are too large, binary or not UTF-8, a client that does
 * not read, reloads that keep the room, and SIGTERM closing with 1001.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
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

TestSuite(ws, .fini = stop, .timeout = 60);

static void
expect_line(struct wsc *c, const char *pattern)
{
	char *line = ws_recv_text(c, 5000);
	regex_t re;

	cr_assert_not_null(line, "no line (expected /%s/)", pattern);
	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, line, 0, NULL, 0), 0, "\"%s\" does not "
	    "match /%s/", line, pattern);
	regfree(&re);
	free(line);
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
#define IP "\\[127\\.0\\.0\\.1\\]"

Test(ws, chat_lines_are_the_seeds)
{
	struct wsc a, b;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "^" IP " joined at " TS "$");
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	expect_line(&b, "^" IP " joined at " TS "$");
	expect_line(&a, "^" IP " joined at " TS "$");
	cr_assert_eq(ws_send(&a, 1, "Connection established", 22), 0);
	expect_line(&a, "^" IP " at " TS ": Connection established$");
	expect_line(&b, "^" IP " at " TS ": Connection established$");
	cr_assert_eq(ws_send(&b, 1, "h\xc3\xa9llo", 6), 0);
	expect_line(&a, "^" IP " at " TS ": h\xc3\xa9llo$");
	expect_line(&b, "^" IP " at " TS ": h\xc3\xa9llo$");
	ws_disconnect(&b);
	expect_line(&a, "^" IP " left at " TS "$");
	ws_disconnect(&a);
	cr_assert_eq(srv_wait_log(&s, "\"GET /chat HTTP/1.1\" 101", 2, 3000),
	    0, "no access log line for the upgrades");
	cr_assert_eq(srv_stop(&s), 0);
}

Test(ws, first_bytes_are_the_101)
{
	const char *req = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	char *out;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	out = raw_exchange(s.port, req, strlen(req), 500, NULL);
	cr_assert(strncmp(out, "HTTP/1.1 101 ", 13) == 0, "%s", out);
	cr_assert_not_null(strstr(out, "Sec-WebSocket-Accept: "
	    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "%s", out);
	free(out);
}

Test(ws, origins_are_checked)
{
	struct wsc c;
	char same[64];

	srv_start(&s, "[route /chat]\nplugin = chat\n"
	    "[route /open]\nplugin = chat\nallowed_origins = *\n"
	    "[route /strict]\nplugin = chat\nrequire_origin = on\n"
	    "allowed_origins = https://app.example\n");
	snprintf(same, sizeof(same), "http://127.0.0.1:%d", s.port);
	cr_assert_eq(ws_connect(&c, s.port, "/chat", "http://evil.example"),
	    403);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/chat", same), 101);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101,
	    "a client without Origin (not a browser) is accepted");
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/open", "http://evil.example"),
	    101);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/strict", NULL), 403);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/strict", "https://app.example"),
	    101);
	ws_disconnect(&c);
	cr_assert_eq(srv_wait_log(&s, "refused 127.0.0.1 from origin "
	    "http://evil.example", 1, 3000), 0);
}

Test(ws, bad_messages_get_their_close_codes)
{
	struct wsc c;
	char big[2048];

	srv_start(&s, "[route /chat]\nplugin = chat\nmax_message_size = 1K\n");
	memset(big, 'x', sizeof(big));
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	cr_assert_eq(ws_send(&c, 1, big, sizeof(big)), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1009);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	cr_assert_eq(ws_send(&c, 2, "\x01\x02", 2), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1003);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	cr_assert_eq(ws_send(&c, 1, "\xff\xfe", 2), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	ws_disconnect(&c);
	/* the server is fine */
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	expect_line(&c, "joined at");
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(ws, upgrade_checks)
{
	const char *h9[] = { "Upgrade: websocket", "Connection: Upgrade",
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	    "Sec-WebSocket-Version: 9", NULL };
	const char *nokey[] = { "Upgrade: websocket", "Connection: Upgrade",
	    "Sec-WebSocket-Version: 13", NULL };
	struct resp r;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	http_request(s.port, "GET", "/chat", h9, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 426);
	cr_assert_not_null(strstr(r.headers, "Sec-WebSocket-Version: 13"));
	resp_free(&r);
	http_request(s.port, "GET", "/chat", nokey, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 400);
	resp_free(&r);
	http_get(s.port, "/chat", &r);
	cr_assert_eq(r.status, 426, "a plain GET on the chat route");
	resp_free(&r);
}

Test(ws, slow_reader_is_dropped_others_carry_on)
{
	struct wsc slow, fast;
	char msg[8192];
	int sent;

	srv_start(&s, "[route /chat]\nplugin = chat\nmax_queue = 16K\n");
	memset(msg, 'm', sizeof(msg));
	cr_assert_eq(ws_connect_rcvbuf(&slow, s.port, "/chat", NULL, 4096),
	    101);
	cr_assert_eq(ws_connect(&fast, s.port, "/chat", NULL), 101);
	expect_line(&fast, "joined at");
	/*
	 * slow never reads: its socket buffers fill, then its queue, and it
	 * is dropped. fast reads each of its own lines back, so it never
	 * falls behind.
	 */
	for (sent = 0; sent < 2000; sent++) {
		char *line;

		cr_assert_eq(ws_send(&fast, 1, msg, sizeof(msg)), 0);
		line = ws_recv_text(&fast, 5000);
		cr_assert_not_null(line, "fast lost its line %d", sent);
		if (strstr(line, " left at ") != NULL) {
			free(line);
			break;
		}
		free(line);
	}
	cr_assert_lt(sent, 2000, "the slow reader was never dropped");
	cr_log_info("slow reader dropped after %d messages of 8 KiB", sent);
	/* fast carries on */
	cr_assert_eq(ws_send(&fast, 1, "after", 5), 0);
	for (;;) {
		char *line = ws_recv_text(&fast, 5000);

		cr_assert_not_null(line, "fast was dropped too");
		if (strstr(line, ": after") != NULL) {
			free(line);
			break;
		}
		free(line);
	}
	ws_disconnect(&slow);
	ws_disconnect(&fast);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(ws, reload_keeps_the_room)
{
	struct wsc a, b;

	srv_start(&s, "[route /chat]\nplugin = chat\n[route /hello]\n"
	    "plugin = hello\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "[route /chat]\nplugin = chat\n[route /hello]\nplugin = hello\n"
	    "text = changed\n", t_plugin_dir());
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");		/* b's, in the same room */
	cr_assert_eq(ws_send(&a, 1, "still here", 10), 0);
	expect_line(&a, ": still here$");
	ws_disconnect(&a);
	ws_disconnect(&b);
}

Test(ws, sigterm_closes_with_1001)
{
	struct wsc a;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	srv_signal(&s, SIGTERM);
	cr_assert_eq(ws_wait_close(&a, 5000), 1001);
	ws_disconnect(&a);
	cr_assert_eq(srv_wait_exit(&s, 10000), 0);
}

Test(ws, history_for_newcomers)
{
	struct wsc a, b;

	srv_start(&s, "[route /chat]\nplugin = chat\nhistory = 2\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	ws_send(&a, 1, "one", 3);
	expect_line(&a, ": one$");
	ws_send(&a, 1, "two", 3);
	expect_line(&a, ": two$");
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	expect_line(&b, ": one$");
	expect_line(&b, ": two$");
	expect_line(&b, "joined at");
	ws_disconnect(&a);
	ws_disconnect(&b);
}

Test(ws, clients_that_do_not_answer_pings_are_dropped)
{
	struct wsc live, dead;
	long t0 = t_now_ms();

	srv_start(&s, "[route /chat]\nplugin = chat\nping_interval = 1\n"
	    "ping_timeout = 1\n");
	cr_assert_eq(ws_connect(&live, s.port, "/chat", NULL), 101);
	live.auto_pong = 1;
	expect_line(&live, "joined at");
	cr_assert_eq(ws_connect(&dead, s.port, "/chat", NULL), 101);
	expect_line(&live, "joined at");
	/* dead gets pings and never answers; live answers them */
	expect_line(&live, " left at ");
	cr_assert_lt(t_now_ms() - t0, 6000);
	cr_assert_eq(ws_send(&live, 1, "still", 5), 0);
	expect_line(&live, ": still$");
	ws_disconnect(&live);
	ws_disconnect(&dead);
	cr_assert_eq(srv_stop(&s), 0);
}


Test(ws, sessions_count_against_max_connections)
{
	static struct wsc c[5];
	const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[512];
	struct pollfd p;
	ssize_t n;
	int fd;

	srv_start(&s, "max_connections = 5\n[route /chat]\nplugin = chat\n"
	    "[route /hello]\nplugin = hello\n");
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(ws_connect(&c[i], s.port, "/chat", NULL), 101);
		expect_line(&c[i], "joined at");
	}
	cr_assert_eq(srv_wait_log(&s, "max_connections (5) reached", 1, 3000),
	    0, "five chat sessions did not reach max_connections = 5");
	/* the sixth connects (the kernel's backlog) but is not accepted */
	cr_assert((fd = t_connect(s.port)) >= 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	p.fd = fd;
	p.events = POLLIN;
	cr_assert_eq(poll(&p, 1, 500), 0, "a sixth client was served past "
	    "max_connections = 5");
	ws_disconnect(&c[0]);
	cr_assert_eq(poll(&p, 1, 3000), 1, "the waiting client was not "
	    "served after a chat session ended");
	n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	close(fd);
	for (int i = 1; i < 5; i++)
		ws_disconnect(&c[i]);
	cr_assert_eq(srv_stop(&s), 0);
}
