/*
 * test_ws_conformance.c - RFC 6455 and RFC 7692 end to end, with the
 * echo_ws test plugin and the harness's client (zlib for
 * permessage-deflate): fragmented messages with control frames between
 * the fragments, 16 MiB messages, invalid UTF-8 in a middle fragment,
 * close codes, subprotocols, and compressed and uncompressed clients in
 * one chat room. Autobahn|Testsuite is not available offline: these
 * cases are squall's conformance set (squall-chat(7), CONFORMANCE).
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define OFFER "Sec-WebSocket-Extensions: permessage-deflate; " \
	"client_max_window_bits\r\n"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(wsc, .fini = stop, .timeout = 120);

/* An echo route (and more routes after it, from more). */
static void
start_echo(const char *options, const char *more)
{
	srv_start(&s, "[route /echo]\nplugin = %s\n%s\n%s",
	    t_test_plugin("echo_ws"), options ? options : "",
	    more ? more : "");
}

/* Bytes that compress somewhat, or not at all (random). */
static unsigned char *
payload(size_t n, int random)
{
	unsigned char *p = malloc(n);
	unsigned x = 2463534242u;

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = random ? (unsigned char)x : (unsigned char)("squall "
		    "echoes "[i % 14] + (i / 997) % 3);
	}
	return p;
}

/* The next message must be this one. */
static void
expect_msg(struct wsc *c, int opcode, const void *data, size_t len)
{
	int op;
	char *got;
	size_t glen;

	cr_assert_eq(ws_recv_msg(c, &op, &got, &glen, 30000), 0,
	    "no message (expected %zu bytes)", len);
	cr_assert_eq(op, opcode, "opcode %d, expected %d (%.60s)", op, opcode,
	    got);
	cr_assert_eq(glen, len, "%zu bytes, expected %zu", glen, len);
	cr_assert(memcmp(got, data, len) == 0, "the message differs");
	free(got);
}

static void
echo(struct wsc *c, int opcode, const void *data, size_t len)
{
	cr_assert_eq(ws_send(c, opcode, data, len), 0);
	expect_msg(c, opcode, data, len);
}

/* squall's answer to an offer without windows: no context takeover */
#define ANSWER	"permessage-deflate; server_no_context_takeover; " \
	"client_no_context_takeover"

/* The response's Sec-WebSocket-Extensions, "" when there is none. */
static void
expect_extensions(struct wsc *c, const char *want)
{
	char *v = ws_response_header(c, "Sec-WebSocket-Extensions");

	cr_assert_str_eq(v ? v : "", want, "%s", c->head);
	free(v);
}

/* ---- permessage-deflate ---------------------------------------------- */

Test(wsc, deflate_is_negotiated_and_messages_come_back)
{
	struct wsc c;
	unsigned char *text = payload(100000, 0), *noise = payload(100000, 1);

	start_echo("max_message = 1M\n", NULL);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	expect_extensions(&c, ANSWER);
	cr_assert_not_null(c.z);
	/* the same line again and again: each compressed on its own */
	for (int i = 0; i < 5; i++)
		echo(&c, 1, "Hello, compressed world", 23);
	echo(&c, 1, "", 0);
	/* larger than lws' 1 KiB pieces, both ways */
	echo(&c, 2, text, 100000);
	echo(&c, 2, noise, 100000);
	echo(&c, 1, "after", 5);
	ws_disconnect(&c);
	free(text);
	free(noise);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * Every parameter of RFC 7692 is answered (the windows as offered, both
 * no_context_takeover always), and holds: every message repeats the last
 * (long enough to be compressed both ways), so a context kept on one
 * side only, or a window larger than agreed, would corrupt the second.
 */
Test(wsc, every_deflate_parameter_is_answered_and_holds)
{
	static const char *const offers[][2] = {
		{ "permessage-deflate; server_no_context_takeover", ANSWER },
		{ "permessage-deflate; client_no_context_takeover", ANSWER },
		{ "permessage-deflate; server_no_context_takeover; "
		  "client_no_context_takeover", ANSWER },
		{ "permessage-deflate; server_max_window_bits=8",
		  ANSWER "; server_max_window_bits=8" },
		{ "permessage-deflate; server_max_window_bits=9",
		  ANSWER "; server_max_window_bits=9" },
		{ "permessage-deflate; server_max_window_bits=12",
		  ANSWER "; server_max_window_bits=12" },
		{ "permessage-deflate; server_max_window_bits=15",
		  ANSWER "; server_max_window_bits=15" },
		{ "permessage-deflate; client_max_window_bits=8",
		  ANSWER "; client_max_window_bits=8" },
		{ "permessage-deflate; client_max_window_bits=15",
		  ANSWER "; client_max_window_bits=15" },
		{ "permessage-deflate; server_no_context_takeover; "
		  "client_no_context_takeover; server_max_window_bits=8; "
		  "client_max_window_bits=8", ANSWER "; server_max_window_bits=8; "
		  "client_max_window_bits=8" },
	};
	unsigned char *text = payload(5000, 0);

	start_echo(NULL, NULL);
	for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
		struct wsc c;
		char hdr[256];

		snprintf(hdr, sizeof(hdr), "Sec-WebSocket-Extensions: %s\r\n",
		    offers[i][0]);
		cr_assert_eq(ws_connect_with(&c, s.port, "/echo", hdr), 101);
		expect_extensions(&c, offers[i][1]);
		for (int j = 0; j < 4; j++)
			echo(&c, 1, text, 5000);
		ws_disconnect(&c);
	}
	free(text);
	cr_assert_eq(srv_stop(&s), 0);
}

/* Offers RFC 7692 7.1 says to decline get no extension. */
Test(wsc, offers_it_cannot_answer_are_declined)
{
	struct wsc c;

	start_echo(NULL, NULL);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "server_max_window_bits, x-webkit-deflate-frame\r\n"), 101);
	expect_extensions(&c, "");
	cr_assert_null(c.z);
	echo(&c, 1, "plain", 5);
	ws_disconnect(&c);
	/* a later acceptable offer is taken */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "client_max_window_bits=7, permessage-deflate\r\n"), 101);
	expect_extensions(&c, ANSWER);
	echo(&c, 1, "compressed", 10);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(wsc, ws_deflate_off_turns_it_off_for_a_route)
{
	struct wsc c;
	char plain[600];

	snprintf(plain, sizeof(plain), "[route /plain]\nplugin = %s\n"
	    "ws_deflate = off\n", t_test_plugin("echo_ws"));
	start_echo(NULL, plain);
	cr_assert_eq(ws_connect_with(&c, s.port, "/plain", OFFER), 101);
	expect_extensions(&c, "");
	cr_assert_null(c.z);
	echo(&c, 1, "plain", 5);
	/* a compressed frame on a link without the extension: 1002 */
	cr_assert_eq(ws_send_frame(&c, 0xc1, "\x2a\x00", 2), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1002);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	expect_extensions(&c, ANSWER);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * What inflates past max_message is 1009, however small it came (lws
 * 4.1 ignored the callback's refusal while inflating: the connection
 * hung); compressed data that does not inflate ends the connection.
 */
Test(wsc, compressed_messages_are_held_to_the_limits)
{
	struct wsc c;
	size_t n = 4u << 20, zlen;
	unsigned char *big = calloc(1, n), *z;
	int op, code;
	char *d;
	size_t len;

	start_echo(NULL, NULL);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	z = ws_deflate(&c, big, n, &zlen);
	cr_assert_lt(zlen, 8192);
	cr_assert_eq(ws_send_frame(&c, 0xc2, z, zlen), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1009);
	free(z);
	ws_disconnect(&c);
	/* in small frames: 1009 before the message ends */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	z = ws_deflate(&c, big, n, &zlen);
	cr_assert_eq(ws_send_frame(&c, 0x42, z, 100), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, z + 100, 100), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1009);
	free(z);
	ws_disconnect(&c);
	/* not deflate data: no close frame, the connection just ends */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	cr_assert_eq(ws_send_frame(&c, 0xc1, "\xff\xff\xff\xff", 4), 0);
	while (ws_recv(&c, &op, &d, &len, &code, 5000) == 0) {
		cr_assert_neq(op, 1, "an echo of garbage: %s", d);
		free(d);
	}
	ws_disconnect(&c);
	/* and the server is fine */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	echo(&c, 1, "still here", 10);
	ws_disconnect(&c);
	free(big);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * A reload that only turns ws_deflate off keeps the room (the plugin's
 * options did not change) and applies to the upgrades after it.
 */
Test(wsc, reload_changes_ws_deflate_and_keeps_the_room)
{
	struct wsc a, b;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect_with(&a, s.port, "/chat", OFFER), 101);
	expect_extensions(&a, ANSWER);
	free(ws_expect_line(&a, "joined at"));
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "[route /chat]\nplugin = chat\nws_deflate = off\n",
	    t_plugin_dir());
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(srv_wait_log(&s, "/chat ws_deflate off", 1, 3000), 0,
	    "the reload line does not say what changed");
	cr_assert_eq(ws_connect_with(&b, s.port, "/chat", OFFER), 101);
	expect_extensions(&b, "");
	free(ws_expect_line(&a, "joined at"));	/* b's, same room */
	cr_assert_eq(ws_send(&a, 1, "compressed still", 16), 0);
	free(ws_expect_line(&b, "joined at"));
	free(ws_expect_line(&b, ": compressed still$"));
	free(ws_expect_line(&a, ": compressed still$"));
	ws_disconnect(&a);
	ws_disconnect(&b);
	cr_assert_eq(srv_stop(&s), 0);
}

/* A compressed message in three frames, RSV1 on the first only. */
Test(wsc, fragmented_compressed_messages)
{
	struct wsc c;
	unsigned char *msg = payload(30000, 0), *z;
	size_t zlen, third;

	start_echo(NULL, NULL);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	cr_assert_not_null(c.z);
	z = ws_deflate(&c, msg, 30000, &zlen);
	cr_assert_not_null(z);
	third = zlen / 3;
	cr_assert_eq(ws_send_frame(&c, 0x40 | 2, z, third), 0);
	cr_assert_eq(ws_send_frame(&c, 0x89, "mid", 3), 0);
	cr_assert_eq(ws_send_frame(&c, 0, z + third, third), 0);
	cr_assert_eq(ws_send_frame(&c, 0x80, z + 2 * third, zlen - 2 * third),
	    0);
	expect_msg(&c, 2, msg, 30000);
	free(z);
	echo(&c, 1, "next", 4);
	ws_disconnect(&c);
	free(msg);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * The room's lines go to a compressing client and to a plain one alike;
 * each sees the other's lines exactly.
 */
Test(wsc, compressed_and_uncompressed_clients_share_a_chat_room)
{
	struct wsc z, p;
	char *line;

	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect_with(&z, s.port, "/chat", OFFER), 101);
	expect_extensions(&z, ANSWER);
	free(ws_expect_line(&z, "^" IP " joined at " TS "$"));
	cr_assert_eq(ws_connect(&p, s.port, "/chat", NULL), 101);
	expect_extensions(&p, "");
	free(ws_expect_line(&p, "^" IP " joined at " TS "$"));
	free(ws_expect_line(&z, "^" IP " joined at " TS "$"));
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(ws_send(&z, 1, "from the compressing client",
		    27), 0);
		line = ws_expect_line(&z, "^" IP " at " TS
		    ": from the compressing client$");
		free(line);
		free(ws_expect_line(&p, "^" IP " at " TS
		    ": from the compressing client$"));
		cr_assert_eq(ws_send(&p, 1, "h\xc3\xa9llo from the plain one",
		    25), 0);
		free(ws_expect_line(&p, "^" IP " at " TS
		    ": h\xc3\xa9llo from the plain one$"));
		free(ws_expect_line(&z, "^" IP " at " TS
		    ": h\xc3\xa9llo from the plain one$"));
	}
	ws_disconnect(&p);
	free(ws_expect_line(&z, "^" IP " left at " TS "$"));
	ws_disconnect(&z);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * A line long enough to be compressed, said in a room of two compressing
 * members with different windows and a plain one: each compressing
 * member gets it compressed (RSV1, far smaller) and whole, the plain one
 * as it is. (That the room compresses it once per window, not once per
 * member, is bench/README.md's "A room of compressing members".)
 */
Test(wsc, a_compressing_room_gets_long_lines_compressed)
{
	struct wsc z1, z2, p;
	char *long_line = malloc(3001), *data, *pat, *v;
	size_t len;
	int b0;

	for (int i = 0; i < 3000; i++)
		long_line[i] = "abc"[i % 3];
	long_line[3000] = '\0';
	cr_assert_not_null(pat = malloc(3100));
	snprintf(pat, 3100, "^" IP " at " TS ": %s$", long_line);
	srv_start(&s, "[route /chat]\nplugin = chat\n");
	cr_assert_eq(ws_connect_with(&z1, s.port, "/chat", OFFER), 101);
	free(ws_expect_line(&z1, " joined at "));
	cr_assert_eq(ws_connect_with(&z2, s.port, "/chat",
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "server_max_window_bits=10; client_max_window_bits\r\n"), 101);
	v = ws_response_header(&z2, "Sec-WebSocket-Extensions");
	cr_assert(v && strstr(v, "server_max_window_bits=10"), "%s", z2.head);
	free(v);
	free(ws_expect_line(&z2, " joined at "));
	free(ws_expect_line(&z1, " joined at "));
	cr_assert_eq(ws_connect(&p, s.port, "/chat", NULL), 101);
	for (struct wsc *c = &z1; c; c = c == &z1 ? &z2 : c == &z2 ? &p : NULL)
		free(ws_expect_line(c, " joined at "));
	cr_assert_eq(ws_send(&p, 1, long_line, 3000), 0);
	cr_assert_eq(ws_recv_frame(&z1, &b0, &data, &len, 3000), 0);
	cr_assert_eq(b0, 0x80 | 0x40 | 1, "frame 0x%02x: not one compressed "
	    "text frame", b0);
	cr_assert_lt(len, 300, "%zu bytes for a line of 3,000 repeating", len);
	free(data);
	free(ws_expect_line(&z2, pat));
	free(ws_expect_line(&p, pat));
	/* and the other way, inflated by the test's client */
	cr_assert_eq(ws_send(&z2, 1, long_line, 3000), 0);
	free(ws_expect_line(&z1, pat));
	free(ws_expect_line(&z2, pat));
	free(ws_expect_line(&p, pat));
	ws_disconnect(&p);
	ws_disconnect(&z2);
	ws_disconnect(&z1);
	free(pat);
	free(long_line);
	cr_assert_eq(srv_stop(&s), 0);
}

/* ---- subprotocols ---------------------------------------------------- */

static void
expect_protocol(struct wsc *c, const char *want)
{
	char *v = ws_response_header(c, "Sec-WebSocket-Protocol");

	cr_assert_str_eq(v ? v : "", want, "%s", c->head);
	free(v);
}

Test(wsc, subprotocol_chosen_and_refused)
{
	struct wsc c;
	char *line;

	start_echo("protocols = chat.v1 chat.v2\nannounce = on\n", NULL);
	/* the plugin sees the offer in order and picks the first it speaks */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Protocol: mqtt, chat.v2\r\n"
	    "Sec-WebSocket-Protocol: chat.v1\r\n"), 101);
	expect_protocol(&c, "chat.v2");
	line = ws_recv_text(&c, 5000);
	cr_assert_str_eq(line, "offered=mqtt,chat.v2,chat.v1 protocol=chat.v2 "
	    "unoffered=-22");
	free(line);
	/* after ws_open, the choice is made */
	cr_assert_eq(ws_send(&c, 1, "protocol", 8), 0);
	line = ws_recv_text(&c, 5000);
	cr_assert_str_eq(line, "protocol=chat.v2 late=-16");
	free(line);
	ws_disconnect(&c);
	/* none it speaks: no header (RFC 6455 4.2.2), the client decides */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Protocol: mqtt\r\n"), 101);
	expect_protocol(&c, "");
	line = ws_recv_text(&c, 5000);
	cr_assert_str_eq(line, "offered=mqtt protocol=(none) unoffered=-22");
	free(line);
	ws_disconnect(&c);
	/* none offered */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", NULL), 101);
	expect_protocol(&c, "");
	line = ws_recv_text(&c, 5000);
	cr_assert_str_eq(line, "offered= protocol=(none) unoffered=-22");
	free(line);
	ws_disconnect(&c);
	/* with permessage-deflate too */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Protocol: chat.v1\r\n" OFFER), 101);
	expect_protocol(&c, "chat.v1");
	expect_extensions(&c, ANSWER);
	free(ws_recv_text(&c, 5000));
	echo(&c, 1, "both", 4);
	ws_disconnect(&c);
	/* a list that is not one of tokens */
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo",
	    "Sec-WebSocket-Protocol: chat v1\r\n"), 400);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/* ---- frames ---------------------------------------------------------- */

Test(wsc, fragmented_messages_with_control_frames_between)
{
	struct wsc c;
	int op;
	char *d;
	size_t len;

	start_echo(NULL, NULL);
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	/* text in five frames, one empty, a ping and a pong between */
	cr_assert_eq(ws_send_frame(&c, 0x01, "Hel", 3), 0);
	cr_assert_eq(ws_send_frame(&c, 0x89, "p1", 2), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, "lo, ", 4), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, "", 0), 0);
	cr_assert_eq(ws_send_frame(&c, 0x8a, "unsolicited", 11), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, "w\xc3", 2), 0);
	cr_assert_eq(ws_send_frame(&c, 0x80, "\xa9rld", 4), 0);
	/*
	 * The ping is answered before the echo of the message it came in
	 * (RFC 6455 5.5.3): the batched send path waits for lws' pong.
	 */
	cr_assert_eq(ws_recv(&c, &op, &d, &len, NULL, 5000), 0);
	cr_assert_eq(op, 10, "opcode %d (%s) before the pong", op, d);
	cr_assert_str_eq(d, "p1");
	free(d);
	expect_msg(&c, 1, "Hello, w\xc3\xa9rld", 13);
	/* binary in 100 frames of 1 byte */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(ws_send_frame(&c, (i == 0 ? 0x02 : 0x00) |
		    (i == 99 ? 0x80 : 0), (char[]){ (char)i }, 1), 0);
	{
		char want[100];

		for (int i = 0; i < 100; i++)
			want[i] = (char)i;
		expect_msg(&c, 2, want, 100);
	}
	/* a continuation with nothing to continue, then a new message
	 * while one is open: both are protocol errors */
	cr_assert_eq(ws_send_frame(&c, 0x80, "x", 1), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1002);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send_frame(&c, 0x01, "a", 1), 0);
	cr_assert_eq(ws_send_frame(&c, 0x81, "b", 1), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1002);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * A control frame over 125 bytes (RFC 6455 5.5: a pong or a ping with an
 * extended length) is a protocol error: 1002, whatever the client sent
 * after it. lws does not stop parsing when it fails a connection, and
 * the WebSocket thread's libev loop served the next read before the
 * write of the close frame: a ping in that read put its payload where
 * the code was (a Close with code 773 here, or 5 in the fuzzer's case),
 * and a second error there ended the connection without any Close.
 *
 * All in one write, inside a fragmented text message: the frame's header
 * and extended length, a zero mask key, then as its "payload" units of
 * 32 bytes, two unmasked pings of payload 03 05 (at 0 and 14) among
 * zeros. Wherever lws' next read begins, it then parses one of the pings
 * before any error: zeros are empty pongs and continuations, and a ping
 * whose first byte lws takes for a length byte is a masked frame of 9
 * bytes, which ends where the other ping begins.
 */
Test(wsc, oversize_control_frames_get_1002_whatever_follows)
{
	static const int b0s[] = { 0x8a, 0x89 };
	static const size_t lens[] = { 4096, 70000 };
	static const unsigned char ping[4] = { 0x89, 2, 3, 5 };
	struct wsc c;
	int code;

	start_echo(NULL, NULL);
	for (size_t i = 0; i < sizeof(b0s) / sizeof(b0s[0]); i++)
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			size_t n = lens[j], flen;
			unsigned char *f = calloc(1, 20 + n);

			cr_assert_not_null(f);
			/* a text message's first frame, masked, empty */
			memcpy(f, "\x01\x80\0\0\0\0", 6);
			flen = 6;
			f[flen++] = (unsigned char)b0s[i];
			if (n < 65536) {
				f[flen++] = 0x80 | 126;
				f[flen++] = (unsigned char)(n >> 8);
				f[flen++] = (unsigned char)n;
			} else {
				f[flen++] = 0x80 | 127;
				for (int k = 7; k >= 0; k--)
					f[flen++] = (unsigned char)((uint64_t)n >>
					    (8 * k));
			}
			flen += 4;			/* the mask key: 0 */
			for (size_t k = 0; k + 32 <= n; k += 32) {
				memcpy(f + flen + k, ping, 4);
				memcpy(f + flen + k + 14, ping, 4);
			}
			flen += n;
			cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
			cr_assert_eq(ws_write(&c, f, flen, 0), 0);
			code = ws_wait_close(&c, 5000);
			cr_expect_eq(code, 1002, "opcode %d, %zu bytes: "
			    "close code %d", b0s[i] & 0x0f, n, code);
			ws_disconnect(&c);
			free(f);
		}
	cr_assert_eq(srv_stop(&s), 0);
}

/* 16 MiB each way, plain and compressed, with max_message raised. */
Test(wsc, sixteen_mib_messages_come_back_intact)
{
	size_t n = 16u << 20;
	unsigned char *big = payload(n, 1);
	struct wsc c;

	start_echo("max_message = 16M\nmax_queue = 64M\n", NULL);
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	echo(&c, 2, big, n);
	echo(&c, 1, "small after big", 15);
	ws_disconnect(&c);
	free(big);
	big = payload(n, 0);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	cr_assert_not_null(c.z);
	echo(&c, 2, big, n);
	ws_disconnect(&c);
	/* one byte more is 1009 */
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send(&c, 2, big, n), 0);
	expect_msg(&c, 2, big, n);
	big = realloc(big, n + 1);
	big[n] = 'x';
	cr_assert_eq(ws_send(&c, 2, big, n + 1), 0);
	cr_assert_eq(ws_wait_close(&c, 30000), 1009);
	ws_disconnect(&c);
	free(big);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * Invalid UTF-8 in a middle fragment closes with 1007 at that fragment:
 * the final one is never sent. The same for a compressed message.
 */
Test(wsc, invalid_utf8_in_a_middle_fragment_closes_at_once)
{
	struct wsc c;
	unsigned char *z;
	size_t zlen;
	char deep[5000];

	start_echo("max_message = 1M\n", NULL);
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send_frame(&c, 0x01, "valid ", 6), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, "so far \xce\xba", 9), 0);
	cr_assert_eq(ws_send_frame(&c, 0x00, "then \xed\xa0\x80", 8), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	ws_disconnect(&c);
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	cr_assert_not_null(c.z);
	z = ws_deflate(&c, "fine, then \xff\xfe bad", 17, &zlen);
	cr_assert_eq(ws_send_frame(&c, 0x41, z, zlen), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	free(z);
	ws_disconnect(&c);
	/*
	 * Past lws' first 1 KiB of inflated text: lws 4.1's own check
	 * dropped that piece and let the rest through.
	 */
	memset(deep, 'a', sizeof(deep));
	deep[3500] = '\xff';
	cr_assert_eq(ws_connect_with(&c, s.port, "/echo", OFFER), 101);
	z = ws_deflate(&c, deep, sizeof(deep), &zlen);
	cr_assert_eq(ws_send_frame(&c, 0xc1, z, zlen), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	free(z);
	ws_disconnect(&c);
	/* a character cut by the end of the message */
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send_frame(&c, 0x01, "cut \xe2", 5), 0);
	cr_assert_eq(ws_send_frame(&c, 0x80, "\x82", 1), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	ws_disconnect(&c);
	/* a close frame's reason is text too */
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send_frame(&c, 0x88, "\x03\xe8\xff", 3), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 1007);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * Close codes (RFC 6455 7.4): those a client may not send get 1002;
 * valid ones, and a close without a code, are echoed. A 1-byte payload
 * is 1002 too.
 */
Test(wsc, close_codes)
{
	static const struct {
		int code;	/* -1: 1-byte payload; 0 with len 0: none */
		int want;
	} cases[] = {
		{ 0, 1002 }, { 999, 1002 }, { 1004, 1002 }, { 1005, 1002 },
		{ 1006, 1002 }, { 1015, 1002 }, { 1100, 1002 },
		{ 2999, 1002 }, { 5000, 1002 }, { 65535, 1002 },
		{ 1000, 1000 }, { 1001, 1001 }, { 1003, 1003 },
		{ 1007, 1007 }, { 1011, 1011 }, { 3000, 3000 },
		{ 4999, 4999 }, { -1, 1002 },
	};
	struct wsc c;

	start_echo(NULL, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char p[2] = { (unsigned char)(cases[i].code >> 8),
		    (unsigned char)cases[i].code };

		cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
		if (cases[i].code < 0)
			cr_assert_eq(ws_send_frame(&c, 0x88, "\x03", 1), 0);
		else
			cr_assert_eq(ws_send_frame(&c, 0x88, p, 2), 0);
		cr_assert_eq(ws_wait_close(&c, 5000), cases[i].want,
		    "close code %d", cases[i].code);
		ws_disconnect(&c);
	}
	/* no code at all: the answer has none either */
	cr_assert_eq(ws_connect(&c, s.port, "/echo", NULL), 101);
	cr_assert_eq(ws_send_frame(&c, 0x88, "", 0), 0);
	cr_assert_eq(ws_wait_close(&c, 5000), 0);
	ws_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}
