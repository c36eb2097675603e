/*
 * fuzz_upgrade.c - WebSocket upgrade validation. The input is lines (LF
 * or CRLF): the first is the request target, the others "Name: value"
 * headers, added with evhttp_add_header (which refuses what evhttp's
 * parser would). sqc_upgrade_check answers 0 or a status; for an accepted
 * upgrade, the handshake handed to libwebsockets must be well formed,
 * its permessage-deflate offer one of the three squall writes, and the
 * subprotocols offered non-empty tokens.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "../../core/core.h"
#include "fuzz.h"

#define SPACE 8192

/*
 * A rewritten offer is "permessage-deflate" and the parameters to answer,
 * each at most once, in squall's order, window sizes from 8 to 15.
 */
static int
answer_ok(const char *ext)
{
	static const char *const params[] = {
	    "; server_no_context_takeover", "; client_no_context_takeover",
	    "; server_max_window_bits=", "; client_max_window_bits=" };
	const char *p = ext + 18;

	if (strncmp(ext, "permessage-deflate", 18) != 0)
		return 0;
	for (size_t i = 0; i < 4 && *p != '\0'; i++) {
		size_t n = strlen(params[i]);
		char *end;
		long bits;

		if (strncmp(p, params[i], n) != 0)
			continue;
		p += n;
		if (i >= 2) {
			bits = strtol(p, &end, 10);
			if (bits < 8 || bits > 15)
				return 0;
			p = end;
		}
	}
	return *p == '\0';
}

/* The handshake: CRLF lines only, one per header, a blank line last. */
static void
check_handshake(const struct evkeyvalq *h)
{
	static const char *const pass[] = { "Host", "Sec-WebSocket-Key",
	    "Sec-WebSocket-Version", "Origin" };
	struct evbuffer *b = evbuffer_new();
	size_t len, lines = 0, want = 4;
	const char *s;

	char ext[160], **protocols;
	size_t n;

	if (b == NULL)
		abort();
	FUZZ_CHECK(sqc_upgrade_handshake(b, h, 1) == 0);
	if (sqc_upgrade_deflate_offer(h, ext, sizeof(ext))) {
		FUZZ_CHECK(answer_ok(ext));
		want++;
	}
	FUZZ_CHECK(sqc_upgrade_protocols(h, &protocols, &n) == 0);
	FUZZ_CHECK((n == 0) == (protocols == NULL));
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(protocols[i][0] != '\0' &&
		    strpbrk(protocols[i], " \t,;=\"") == NULL);
	free(protocols);
	len = evbuffer_get_length(b);
	FUZZ_CHECK(len <= SPACE);
	s = (const char *)evbuffer_pullup(b, -1);
	FUZZ_CHECK(len >= 4 && memcmp(s + len - 4, "\r\n\r\n", 4) == 0);
	FUZZ_CHECK(memcmp(s, "GET / HTTP/1.1\r\n", 16) == 0);
	for (size_t i = 0; i < len; i++) {
		FUZZ_CHECK(s[i] != '\0');
		if (s[i] == '\r') {
			FUZZ_CHECK(i + 1 < len && s[i + 1] == '\n');
			lines++;
			i++;
		} else
			FUZZ_CHECK(s[i] != '\n');
	}
	for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
		want += evhttp_find_header(h, pass[i]) != NULL;
	FUZZ_CHECK(lines == want);
	evbuffer_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evkeyvalq h;
	char *buf, *line, *next, *target = NULL;
	int status;

	if ((buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	TAILQ_INIT(&h);
	for (line = buf; line != NULL; line = next) {
		char *colon, *value;
		size_t n;

		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[n - 1] = '\0';
		if (target == NULL) {
			target = line;
			continue;
		}
		if ((colon = strchr(line, ':')) == NULL)
			continue;
		*colon = '\0';
		value = colon + 1;
		value += strspn(value, " \t");
		(void)evhttp_add_header(&h, line, value);
	}
	FUZZ_CHECK(sqc_upgrade_check(0, target, &h, SPACE) == 400);
	status = sqc_upgrade_check(1, target, &h, SPACE);
	FUZZ_CHECK(status == 0 || status == 400 || status == 426 ||
	    status == 431 || status == 503);
	if (status == 0)
		check_handshake(&h);
	evhttp_clear_headers(&h);
	free(buf);
	return 0;
}
