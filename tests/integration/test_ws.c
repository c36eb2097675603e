/*
 * test_ws.c - the WebSocket bridge through the chat plugin: the seed's
 * chat lines byte for byte, origin checks, the RFC 6455 close codes for
 * messages that are too large, binary or not UTF-8, a client that does
 * not read, reloads that keep the room, and SIGTERM closing with 1001.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <poll.h>
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
	free(ws_expect_line(c, pattern));
}


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

/*
 * A message after the client's close frame is not delivered (RFC 6455
 * 5.5.1): lws' bulk path for payload passed it on. Both frames go in one
 * write; the other member's next line is the closer's "left".
 */
Test(ws, nothing_is_delivered_after_the_clients_close)
{
	struct wsc a, b;
	unsigned char *f = NULL;
	size_t flen = 0;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	expect_line(&b, "joined at");
	expect_line(&a, "joined at");
	ws_frame_append(&f, &flen, 0x88, "\x03\xe8", 2);
	ws_frame_append(&f, &flen, 0x81, "after close", 11);
	cr_assert_eq(ws_write(&b, f, flen, 0), 0);
	free(f);
	cr_assert_eq(ws_wait_close(&b, 5000), 1000);
	ws_disconnect(&b);
	expect_line(&a, " left at ");
	cr_assert_eq(ws_send(&a, 1, "still here", 10), 0);
	expect_line(&a, ": still here$");
	ws_disconnect(&a);
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


/* A handshake to /chat with extra header lines and a query. */
static char *
handshake(int port, const char *query, const char *host, const char *extra)
{
	char *req;

	cr_assert(asprintf(&req, "GET /chat%s HTTP/1.1\r\nHost: %s\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n%s"
	    "Sec-WebSocket-Version: 13\r\n\r\n", query, host ? host :
	    "127.0.0.1", extra ? extra :
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") > 0);
	(void)port;
	return req;
}

static char *
repeat(char ch, size_t n)
{
	char *p = malloc(n + 1);

	memset(p, ch, n);
	p[n] = '\0';
	return p;
}

/* No line reaches c within ms: the room heard nothing. */
static void
expect_silence(struct wsc *c, int ms)
{
	char *line = ws_recv_text(c, ms);

	cr_assert_null(line, "unexpected line \"%s\"", line);
}

/*
 * Upgrades whose handshake is large (a 5,000-byte query, a 4 KB Host,
 * well within max_header_size) used to pass ws_open and then die inside
 * libwebsockets without a close event: the session stayed in the room
 * with a freed connection under it, and SIGTERM crashed. Now they work
 * like any other, and leave like any other.
 */
Test(ws, large_upgrades_work_and_leave_cleanly)
{
	struct wsc a, b;
	char *q = repeat('q', 5000), *query, *host = repeat('h', 4000),
	    *req;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	cr_assert(asprintf(&query, "?%s", q) > 0);
	for (int i = 0; i < 3; i++) {
		req = handshake(s.port, i == 1 ? "" : query,
		    i == 1 ? host : NULL, NULL);
		cr_assert_eq(ws_handshake(&b, s.port, req, 0), 101, "try %d",
		    i);
		free(req);
		expect_line(&b, "joined at");
		expect_line(&a, "joined at");
		cr_assert_eq(ws_send(&b, 1, "big", 3), 0);
		expect_line(&b, ": big$");
		expect_line(&a, ": big$");
		if (i == 2) {
			/* the server goes with b still in the room */
			break;
		}
		ws_disconnect(&b);
		expect_line(&a, " left at ");
	}
	srv_signal(&s, SIGTERM);
	cr_assert_eq(ws_wait_close(&a, 5000), 1001);
	cr_assert_eq(ws_wait_close(&b, 5000), 1001);
	ws_disconnect(&a);
	ws_disconnect(&b);
	cr_assert_eq(srv_wait_exit(&s, 10000), 0, "squalld did not exit "
	    "cleanly");
	free(q);
	free(query);
	free(host);
}

/*
 * Beyond the handshake space libwebsockets is given (sized from
 * max_header_size, at most 64 KiB), an upgrade gets 431 before the
 * plugin hears of it.
 */
Test(ws, oversized_upgrade_gets_431_before_ws_open)
{
	struct wsc a, b;
	char *host = repeat('h', 70000), *req;

	srv_start(&s, "max_header_size = 200K\n[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	req = handshake(s.port, "", host, NULL);
	cr_assert_eq(ws_handshake(&b, s.port, req, 0), 431);
	ws_disconnect(&b);
	free(req);
	expect_silence(&a, 300);
	ws_disconnect(&a);
	cr_assert_eq(srv_stop(&s), 0);
	free(host);
}

/*
 * Upgrades libwebsockets would refuse are refused before ws_open, with a
 * status of ours: the room never announces a member that never was.
 */
Test(ws, bad_upgrades_are_refused_before_ws_open)
{
	static const struct {
		const char *query, *extra;
		int status;
	} bad[] = {
		{ "?%zz", NULL, 400 },
		{ "?a=%4", NULL, 400 },
		{ "", "Sec-WebSocket-Key: short==\r\n", 400 },
		{ "", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==x\r\n", 400 },
		{ "", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n", 400 },
		{ "", "Sec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n", 400 },
	};
	struct wsc a, b;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *req = handshake(s.port, bad[i].query, NULL, bad[i].extra);

		cr_assert_eq(ws_handshake(&b, s.port, req, 0), bad[i].status,
		    "case %zu: %s", i, req);
		ws_disconnect(&b);
		free(req);
	}
	expect_silence(&a, 300);
	/* a good query is no problem */
	cr_assert_eq(ws_connect(&b, s.port, "/chat?room=a%20b", NULL), 101);
	expect_line(&a, "joined at");
	ws_disconnect(&b);
	ws_disconnect(&a);
	cr_assert_eq(srv_stop(&s), 0);
}

/* Sends raw frame bytes (the caller masks, or not). */
static void
send_raw(struct wsc *c, const void *data, size_t len)
{
	cr_assert_eq(write(c->fd, data, len), (ssize_t)len);
}

Test(ws, frame_limits_and_control_frames_get_their_close_codes)
{
	struct wsc c;
	/* a text frame announcing 100 MB, then only its first bytes */
	unsigned char huge[14 + 1024] = { 0x81, 0x80 | 127, 0, 0, 0, 0, 0x06,
	    0x40, 0, 0, 1, 2, 3, 4 };
	/* a ping of 200 bytes: control frames carry at most 125 */
	unsigned char ping[8 + 200] = { 0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4 };
	char *mb = repeat('x', 1 << 20);

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	send_raw(&c, huge, sizeof(huge));
	cr_assert_eq(ws_wait_close(&c, 5000), 1009, "100 MB announced");
	ws_disconnect(&c);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
		cr_assert_eq(ws_send(&c, 1, mb, 1 << 20), 0);
		cr_assert_eq(ws_wait_close(&c, 5000), 1009, "1 MB sent");
		ws_disconnect(&c);
	}
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	send_raw(&c, ping, sizeof(ping));
	cr_assert_eq(ws_wait_close(&c, 5000), 1002, "200-byte ping");
	ws_disconnect(&c);
	/* a ping of the right size is answered, and does not spoil 1002 */
	cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
	expect_line(&c, "joined at");
	cr_assert_eq(ws_send(&c, 9, "hi", 2), 0);
	{
		int op = 0, code;
		char *d = NULL;
		size_t len;

		/* skipping lines: the last client's "left" may come late */
		do {
			free(d);
			cr_assert_eq(ws_recv(&c, &op, &d, &len, &code, 5000),
			    0);
		} while (op == 1);
		cr_assert_eq(op, 10, "a pong, not opcode %d (%s)", op, d);
		cr_assert_str_eq(d, "hi");
		free(d);
	}
	send_raw(&c, ping, sizeof(ping));
	cr_assert_eq(ws_wait_close(&c, 5000), 1002, "200-byte ping after a "
	    "ping");
	ws_disconnect(&c);
	free(mb);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * At SIGTERM the room hears every member leave, and the plugin broadcasts
 * from ws_close while the bridge shuts down: that used to crash.
 */
Test(ws, sigterm_with_several_members)
{
	struct wsc c[4];

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(ws_connect(&c[i], s.port, "/chat", NULL), 101);
		expect_line(&c[i], "joined at");
	}
	srv_signal(&s, SIGTERM);
	cr_assert_eq(srv_wait_exit(&s, 10000), 0);
	for (int i = 0; i < 4; i++)
		ws_disconnect(&c[i]);
}

/*
 * Closing WebSockets at stop is bounded by shutdown_timeout, even for
 * clients whose sockets are full (their close frame cannot go out); and
 * the room's "left" lines, broadcast from ws_close while the bridge shuts
 * down, used to crash the server.
 */
Test(ws, shutdown_timeout_bounds_closing)
{
	struct wsc mute[3], talker;
	char msg[8192];
	long t0;
	int rc;

	srv_start(&s, "shutdown_timeout = 1\n[route /chat]\nplugin = chat\n"
	    "max_queue = 64M\n");
	memset(msg, 'm', sizeof(msg));
	/* clients that never read, nor answer the close */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ws_connect_rcvbuf(&mute[i], s.port, "/chat",
		    NULL, 2048), 101);
	cr_assert_eq(ws_connect(&talker, s.port, "/chat", NULL), 101);
	expect_line(&talker, "joined at");
	/* fill their sockets: 4 MB each, far beyond what the kernel holds */
	for (int i = 0; i < 500; i++) {
		char *line;

		cr_assert_eq(ws_send(&talker, 1, msg, sizeof(msg)), 0);
		cr_assert_not_null(line = ws_recv_text(&talker, 5000));
		free(line);
	}
	ws_disconnect(&talker);
	t0 = t_now_ms();
	srv_signal(&s, SIGTERM);
	rc = srv_wait_exit(&s, 15000);
	cr_assert_eq(rc, 0, "exit status %d", rc);
	cr_assert_lt(t_now_ms() - t0, 3500, "stopping took %ld ms",
	    t_now_ms() - t0);
	for (int i = 0; i < 3; i++)
		ws_disconnect(&mute[i]);
}

/*
 * History is delivered whole whenever it fits: 100 lines of 1 KB used to
 * count against max_queue as if the newcomer were a slow reader.
 */
Test(ws, long_history_is_delivered)
{
	struct wsc a, b;
	char msg[1000];

	srv_start(&s, "[route /chat]\nplugin = chat\nhistory = 100\n"
	    "max_message_size = 1K\nmax_queue = 120K\n");
	memset(msg, 'h', sizeof(msg));
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	for (int i = 0; i < 120; i++) {
		cr_assert_eq(ws_send(&a, 1, msg, sizeof(msg)), 0);
		expect_line(&a, ": h+$");
	}
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	for (int i = 0; i < 100; i++)
		expect_line(&b, ": h+$");
	expect_line(&b, "joined at");
	expect_line(&a, "joined at");
	ws_disconnect(&b);
	expect_line(&a, " left at ");
	ws_disconnect(&a);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * A message larger than the server's 64 KiB send batch goes out as
 * fragments, each a whole frame, and arrives whole and in order, for
 * the sender and for another member.
 */
Test(ws, long_messages_arrive_whole_as_fragments)
{
	enum { LEN = 300 * 1000 };
	struct wsc a, b;
	char *msg = malloc(LEN), *line;
	int op;
	size_t len;

	srv_start(&s, "[route /chat]\nplugin = chat\n"
	    "max_message_size = 1M\nmax_queue = 4M\n");
	memset(msg, 'x', LEN);
	cr_assert_eq(ws_connect(&a, s.port, "/chat", NULL), 101);
	expect_line(&a, "joined at");
	cr_assert_eq(ws_connect(&b, s.port, "/chat", NULL), 101);
	expect_line(&b, "joined at");
	expect_line(&a, "joined at");
	cr_assert_eq(ws_send(&a, 1, msg, LEN), 0);
	cr_assert_eq(ws_send(&a, 1, "after", 5), 0);
	/* the first frame is a text frame without FIN */
	cr_assert_eq(ws_recv(&b, &op, &line, &len, NULL, 5000), 0);
	cr_assert_eq(op, 1);
	cr_assert(!b.fin, "a %zu-byte first frame with FIN", len);
	free(line);
	line = ws_recv_text(&a, 5000);
	cr_assert_not_null(line);
	cr_assert_geq(strlen(line), LEN, "%zu bytes", strlen(line));
	cr_assert_eq(strspn(strstr(line, ": ") + 2, "x"), LEN);
	free(line);
	expect_line(&a, ": after$");
	/* b's first fragment was taken above: the rest are continuations */
	while (!b.fin) {
		cr_assert_eq(ws_recv(&b, &op, &line, &len, NULL, 5000), 0);
		cr_assert_eq(op, 0);
		free(line);
	}
	expect_line(&b, ": after$");
	ws_disconnect(&b);
	ws_disconnect(&a);
	free(msg);
	cr_assert_eq(srv_stop(&s), 0);
}

/* A refused origin is logged with its control bytes escaped. */
Test(ws, refused_origin_is_logged_escaped)
{
	struct wsc c;
	char *log;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect(&c, s.port, "/chat",
	    "http://evil.example\x1b[2J\x07"), 403);
	ws_disconnect(&c);
	cr_assert_eq(srv_wait_log(&s, "from origin http://evil.example\\x1b"
	    "[2J\\x07", 1, 3000), 0, "the refusal is not logged escaped");
	log = t_read(s.log, NULL);
	cr_assert_null(strchr(log, '\x1b'), "a raw ESC in the log");
	cr_assert_null(strchr(log, '\x07'), "a raw BEL in the log");
	free(log);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(ws, sessions_count_against_max_connections)
{
	static struct wsc c[5];
	int fd;

	srv_start(&s, "max_connections = 5\n[route /chat]\nplugin = chat\n"
	    "[route /hello]\nplugin = hello\n");
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(ws_connect(&c[i], s.port, "/chat", NULL), 101);
		expect_line(&c[i], "joined at");
	}
	cr_assert_eq(srv_wait_log(&s, "max_connections (5) reached", 1, 3000),
	    0, "five chat sessions did not reach max_connections = 5");
	fd = t_connect_unserved(s.port);
	ws_disconnect(&c[0]);
	t_expect_served(fd, "a chat session ended");
	for (int i = 1; i < 5; i++)
		ws_disconnect(&c[i]);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * libwebsockets' own messages are logged from its thread while SIGUSR1
 * reopens the log on the loop: a line must never land on a closed (and
 * reused) descriptor. Under ThreadSanitizer (./configure --enable-tsan)
 * this is the race the log's stable descriptors removed.
 */
Test(ws, log_reopen_while_the_websocket_thread_logs)
{
	/* a ping of 200 bytes: lws logs a warning, then closes with 1002 */
	unsigned char ping[8 + 200] = { 0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4 };
	char moved[420], *text;
	struct wsc c;

	/* the error log is the file the harness reads; stderr stays in the
	 * first one, which the rotations below rename */
	srv_start(&s, "error_log = squalld.log\n[route /chat]\nplugin = chat\n");
	for (int i = 0; i < 40; i++) {
		cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
		send_raw(&c, ping, sizeof(ping));
		if (i % 4 == 0) {
			snprintf(moved, sizeof(moved), "%s.%d", s.log, i);
			rename(s.log, moved);
		}
		srv_signal(&s, SIGUSR1);
		cr_assert_eq(ws_wait_close(&c, 5000), 1002);
		ws_disconnect(&c);
	}
	cr_assert_eq(srv_stop(&s), 0);
	text = t_read(s.log, NULL);
	cr_assert_not_null(strstr(text, "websocket: "), "no line of "
	    "libwebsockets' in the reopened log:\n%s", text);
	free(text);
	for (int i = 0; i < 40; i += 4) {
		snprintf(moved, sizeof(moved), "%s.%d", s.log, i);
		text = t_read(moved, NULL);
		cr_assert_null(strstr(text, "Sanitizer"), "%s", text);
		free(text);
	}
}

/* Close frames: a 1-byte payload or a code past 4999 gets 1002. */
Test(ws, bad_close_frames_get_1002)
{
	static const struct {
		const char *payload;
		size_t len;
		int want;
	} cases[] = {
		{ "\x03", 1, 1002 },
		{ "\x13\x88", 2, 1002 },	/* 5000 */
		{ "\x03\xed", 2, 1002 },	/* 1005: reserved */
		{ "\x03\xe8" "bye", 5, 1000 },	/* echoed */
		{ "\x0f\xa0", 2, 4000 },	/* an application's code */
	};
	struct wsc c;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(ws_connect(&c, s.port, "/chat", NULL), 101);
		cr_assert_eq(ws_send(&c, 8, cases[i].payload, cases[i].len), 0);
		cr_assert_eq(ws_wait_close(&c, 5000), cases[i].want, "case %zu",
		    i);
		ws_disconnect(&c);
	}
	cr_assert_eq(srv_stop(&s), 0);
}
