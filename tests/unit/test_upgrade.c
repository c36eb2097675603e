/*
 * test_upgrade.c - core/upgrade.c: which permessage-deflate offers are
 * accepted and what libwebsockets is told of them, the subprotocol list,
 * and the checks of an upgrade request that concern them.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../../core/core.h"

TestSuite(upgrade);

/* Headers from "Name: value" lines, NULL-terminated. */
static void
headers(struct evkeyvalq *h, const char *const *lines)
{
	TAILQ_INIT(h);
	for (; *lines; lines++) {
		const char *colon = strchr(*lines, ':');
		char *name = strndup(*lines, (size_t)(colon - *lines));

		cr_assert_eq(evhttp_add_header(h, name, colon + 2), 0);
		free(name);
	}
}

/* What lws is given for one Sec-WebSocket-Extensions value, or NULL. */
static const char *
offer(const char *value)
{
	static char out[160];
	const char *lines[] = { NULL, NULL };
	char line[512];
	struct evkeyvalq h;
	int ok;

	snprintf(line, sizeof(line), "Sec-WebSocket-Extensions: %s", value);
	lines[0] = line;
	headers(&h, lines);
	ok = sqc_upgrade_deflate_offer(&h, out, sizeof(out));
	evhttp_clear_headers(&h);
	return ok ? out : NULL;
}

#define PMD	"permessage-deflate"
#define SNCT	"; server_no_context_takeover"
#define CNCT	"; client_no_context_takeover"

/* squall's answer: both no_context_takeover, offered or not */
#define ANS	PMD SNCT CNCT

Test(upgrade, deflate_offers_browsers_make_are_taken)
{
	cr_assert_str_eq(offer(PMD), ANS);
	/* Chromium, Firefox, Node's ws: the client keeps its own window */
	cr_assert_str_eq(offer(PMD "; client_max_window_bits"), ANS);
	cr_assert_str_eq(offer("permessage-deflate;client_max_window_bits=15"),
	    ANS "; client_max_window_bits=15");
	cr_assert_str_eq(offer("Permessage-Deflate ; Client_Max_Window_Bits "
	    "= \"10\""), ANS "; client_max_window_bits=10");
	/* the first acceptable offer wins */
	cr_assert_str_eq(offer("x-webkit-deflate-frame, " PMD), ANS);
	cr_assert_str_eq(offer(PMD "; foo, " PMD
	    "; client_max_window_bits"), ANS);
	cr_assert_str_eq(offer(", ," PMD), ANS);
}

/*
 * The windows are answered as offered; both no_context_takeover always
 * (RFC 7692 7.1.1: a server may answer them unasked), so that a
 * broadcast is compressed once and no idle link keeps zlib state.
 */
Test(upgrade, every_parameter_is_answered_as_offered)
{
	cr_assert_str_eq(offer(PMD SNCT), ANS);
	cr_assert_str_eq(offer(PMD CNCT), ANS);
	cr_assert_str_eq(offer(PMD CNCT SNCT "; client_max_window_bits"), ANS);
	/* RFC 7692 7.1.2.1: the server's window, as the client limits it */
	cr_assert_str_eq(offer(PMD "; server_max_window_bits=8"),
	    ANS "; server_max_window_bits=8");
	cr_assert_str_eq(offer(PMD "; server_max_window_bits=15"),
	    ANS "; server_max_window_bits=15");
	cr_assert_str_eq(offer(PMD "; client_max_window_bits=9; "
	    "server_max_window_bits=10" SNCT CNCT), ANS
	    "; server_max_window_bits=10; client_max_window_bits=9");
}

Test(upgrade, deflate_offers_squall_cannot_answer_are_declined)
{
	/* RFC 7692 7.1: unknown, repeated or badly valued parameters */
	cr_assert_null(offer(PMD "; foo"));
	cr_assert_null(offer(PMD "; client_max_window_bits; "
	    "client_max_window_bits"));
	cr_assert_null(offer(PMD "; client_max_window_bits=7"));
	cr_assert_null(offer(PMD "; client_max_window_bits=16"));
	cr_assert_null(offer(PMD "; client_max_window_bits=010"));
	cr_assert_null(offer(PMD "; server_max_window_bits"));
	cr_assert_null(offer(PMD "; server_max_window_bits=7"));
	cr_assert_null(offer(PMD "; server_no_context_takeover=1"));
	/* other extensions, and malformed lists: no extension at all */
	cr_assert_null(offer("x-webkit-deflate-frame"));
	cr_assert_null(offer("permessage-deflate-x"));
	cr_assert_null(offer(PMD "; client_max_window_bits=\"10"));
	cr_assert_null(offer(PMD " garbage"));
	cr_assert_null(offer("; " PMD));
	cr_assert_null(offer(""));
}

Test(upgrade, deflate_offer_over_several_header_lines)
{
	const char *lines[] = { "Sec-WebSocket-Extensions: foo",
	    "Sec-WebSocket-Extensions: " PMD "; server_no_context_takeover",
	    NULL };
	struct evkeyvalq h;
	char out[160];

	headers(&h, lines);
	cr_assert_eq(sqc_upgrade_deflate_offer(&h, out, sizeof(out)), 1);
	cr_assert_str_eq(out, ANS);
	evhttp_clear_headers(&h);
}

/* The handshake carries the offer only when the route allows it. */
Test(upgrade, handshake_has_the_offer_only_with_deflate)
{
	const char *lines[] = { "Host: x",
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	    "Sec-WebSocket-Version: 13",
	    "Sec-WebSocket-Extensions: " PMD "; client_max_window_bits",
	    "Sec-WebSocket-Protocol: chat", NULL };
	struct evkeyvalq h;

	headers(&h, lines);
	for (int deflate = 0; deflate < 2; deflate++) {
		struct evbuffer *b = evbuffer_new();
		char *s;

		cr_assert_eq(sqc_upgrade_handshake(b, &h, deflate), 0);
		s = strndup((char *)evbuffer_pullup(b, -1),
		    evbuffer_get_length(b));
		cr_assert_eq(strstr(s, "\r\nSec-WebSocket-Extensions: "
		    ANS "\r\n") != NULL, deflate, "%s", s);
		/* lws would look the subprotocol up in its own list */
		cr_assert_null(strstr(s, "Sec-WebSocket-Protocol"), "%s", s);
		free(s);
		evbuffer_free(b);
	}
	evhttp_clear_headers(&h);
}

Test(upgrade, protocols_are_the_offered_tokens_in_order)
{
	const char *lines[] = { "Sec-WebSocket-Protocol: chat.v2, chat.v1",
	    "Sec-WebSocket-Protocol: ,x ,, mqtt", NULL };
	struct evkeyvalq h;
	char **p;
	size_t n;

	headers(&h, lines);
	cr_assert_eq(sqc_upgrade_protocols(&h, &p, &n), 0);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(p[0], "chat.v2");
	cr_assert_str_eq(p[1], "chat.v1");
	cr_assert_str_eq(p[2], "x");
	cr_assert_str_eq(p[3], "mqtt");
	free(p);
	evhttp_clear_headers(&h);
	TAILQ_INIT(&h);
	cr_assert_eq(sqc_upgrade_protocols(&h, &p, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(p);
}

/* A list of anything but tokens is a malformed upgrade: 400. */
Test(upgrade, malformed_protocol_lists_get_400)
{
	static const char *const bad[] = { "chat v1", "chat;v1", "\"chat\"",
	    "chat/1", "a,b c" };
	static const char *const good[] = { "chat", "a, b", " a ,b ", "," };

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < (pass ? 4 : 5); i++) {
			char line[128];
			const char *lines[] = { "Host: x",
			    "Upgrade: websocket", "Connection: Upgrade",
			    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
			    "Sec-WebSocket-Version: 13", line, NULL };
			struct evkeyvalq h;

			snprintf(line, sizeof(line), "Sec-WebSocket-Protocol: "
			    "%s", pass ? good[i] : bad[i]);
			headers(&h, lines);
			cr_assert_eq(sqc_upgrade_check(1, "/chat", &h, 8192),
			    pass ? 0 : 400, "%s", line);
			evhttp_clear_headers(&h);
		}
}
