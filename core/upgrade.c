/*
 * upgrade.c - what makes a WebSocket upgrade request acceptable, and the
 * handshake libwebsockets is given for it. Pure functions on libevent's
 * header lists, run on the loop thread before the plugin's ws_open: an
 * upgrade that libwebsockets would fail later is refused here, with a
 * status of ours, before any plugin hears of it.
 *
 * libwebsockets never sees the client's request as sent: it gets a
 * minimal handshake rebuilt from the headers it needs (the request target
 * is always "/": nothing in lws routes on it, the plugin has the real
 * one), so that its own header space and URI rules never come into play
 * for a request squall has accepted.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core.h"

/* Does the comma-separated header value hold token (any case)? */
static int
has_token(const char *v, const char *token)
{
	size_t tl = strlen(token), n;

	while (v && *v) {
		v += strspn(v, " \t,");
		n = strcspn(v, ",");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(v, token, tl) == 0)
			return 1;
		v += strcspn(v, ",");
	}
	return 0;
}

/* How many times name appears in h. */
static int
count(const struct evkeyvalq *h, const char *name)
{
	const struct evkeyval *kv;
	int n = 0;

	TAILQ_FOREACH(kv, h, next)
		n += strcasecmp(kv->key, name) == 0;
	return n;
}

static const char *
find(const struct evkeyvalq *h, const char *name)
{
	return evhttp_find_header(h, name);
}

/* RFC 6455 4.1: the base64 of 16 bytes, 22 characters then "==". */
static int
key_ok(const char *k)
{
	if (strlen(k) != 24 || strcmp(k + 22, "==") != 0)
		return 0;
	for (int i = 0; i < 22; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789+/", k[i]) == NULL)
			return 0;
	return 1;
}

static int
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* A request target of visible ASCII with well-formed %XX escapes. */
static int
target_ok(const char *t)
{
	if (t == NULL || *t != '/')
		return 0;
	for (; *t; t++) {
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return 0;
		if (*t == '%') {
			if (!is_hex(t[1]) || !is_hex(t[2]))
				return 0;
			t += 2;
		}
	}
	return 1;
}

/*
 * The handshake libwebsockets is given for an accepted upgrade with
 * headers h, appended to b. Returns 0 or -ENOMEM.
 */
int
sqc_upgrade_handshake(struct evbuffer *b, const struct evkeyvalq *h)
{
	static const char *const pass[] = { "Host", "Sec-WebSocket-Key",
	    "Sec-WebSocket-Version", "Origin" };
	int rc;

	rc = evbuffer_add_printf(b, "GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n");
	for (size_t i = 0; rc >= 0 && i < sizeof(pass) / sizeof(pass[0]);
	    i++) {
		const char *v = find(h, pass[i]);

		if (v != NULL)
			rc = evbuffer_add_printf(b, "%s: %s\r\n", pass[i], v);
	}
	if (rc >= 0)
		rc = evbuffer_add(b, "\r\n", 2);
	return rc < 0 ? -ENOMEM : 0;
}

/*
 * Checks an upgrade request (method GET or not, its request target, its
 * headers) against RFC 6455 4.2.1 and against what libwebsockets can
 * take: `space` bytes of handshake. Returns 0 when acceptable, else the
 * status to answer: 400 (malformed), 426 (another WebSocket version:
 * answer with Sec-WebSocket-Version: 13), 431 (too large), 503 (out of
 * memory).
 */
int
sqc_upgrade_check(int is_get, const char *target, const struct evkeyvalq *h,
    size_t space)
{
	const char *v;
	struct evbuffer *b;
	size_t len;

	if (!is_get || !target_ok(target))
		return 400;
	if ((v = find(h, "Upgrade")) == NULL || !has_token(v, "websocket") ||
	    (v = find(h, "Connection")) == NULL || !has_token(v, "upgrade"))
		return 400;
	if (count(h, "Host") != 1 || *find(h, "Host") == '\0')
		return 400;
	if (count(h, "Sec-WebSocket-Key") != 1 ||
	    !key_ok(find(h, "Sec-WebSocket-Key")))
		return 400;
	if (count(h, "Origin") > 1 || count(h, "Sec-WebSocket-Version") > 1)
		return 400;
	if ((v = find(h, "Sec-WebSocket-Version")) == NULL ||
	    strcmp(v, "13") != 0)
		return 426;
	if ((b = evbuffer_new()) == NULL)
		return 503;
	if (sqc_upgrade_handshake(b, h) != 0) {
		evbuffer_free(b);
		return 503;
	}
	len = evbuffer_get_length(b);
	evbuffer_free(b);
	return len > space ? 431 : 0;
}
