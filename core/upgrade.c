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
#include <stdio.h>
#include <stdlib.h>
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

/* RFC 7230 3.2.6: a tchar. */
static int
is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *
skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* The length of the token at p (0 if none). */
static size_t
token_len(const char *p)
{
	size_t n = 0;

	while (is_tchar(p[n]))
		n++;
	return n;
}

/*
 * The subprotocols the client offers (RFC 6455 4.1: Sec-WebSocket-Protocol,
 * a comma-separated list of tokens, possibly over several header lines),
 * in order, into *out: one malloc'ed block, the array of *n strings
 * followed by the strings; free(*out) frees it all. *out is NULL when
 * none is offered. Returns 0, -EINVAL when an element is not a token
 * (empty elements are skipped, as RFC 7230 7 asks), or -ENOMEM.
 */
int
sqc_upgrade_protocols(const struct evkeyvalq *h, char ***out, size_t *n)
{
	const struct evkeyval *kv;
	size_t count = 0, bytes = 0;
	char **list = NULL, *s = NULL;

	*out = NULL;
	*n = 0;
	/* two passes: check and measure, then copy */
	for (int copy = 0; copy < 2; copy++) {
		if (copy) {
			if (count == 0)
				return 0;
			if ((list = malloc(count * sizeof(*list) +
			    bytes)) == NULL)
				return -ENOMEM;
			s = (char *)(list + count);
			count = 0;
		}
		TAILQ_FOREACH(kv, h, next) {
			const char *p = kv->value;
			size_t tl;

			if (strcasecmp(kv->key, "Sec-WebSocket-Protocol") != 0)
				continue;
			for (;;) {
				p = skip_ows(p);
				if ((tl = token_len(p)) > 0) {
					if (copy) {
						list[count] = s;
						memcpy(s, p, tl);
						s[tl] = '\0';
						s += tl + 1;
					}
					count++;
					bytes += tl + 1;
					p = skip_ows(p + tl);
				}
				if (*p == '\0')
					break;
				if (*p != ',')
					return -EINVAL;	/* not copy: checked */
				p++;
			}
		}
	}
	*out = list;
	*n = count;
	return 0;
}

/*
 * An extension parameter's value (RFC 6455 9.1: a token, or a quoted
 * string holding a token) at p, copied into v; returns the end, or NULL
 * when malformed.
 */
static const char *
param_value(const char *p, char *v, size_t vlen)
{
	int quoted = *p == '"';
	size_t tl;

	p += quoted;
	if ((tl = token_len(p)) == 0 || tl >= vlen ||
	    (quoted && p[tl] != '"'))
		return NULL;
	memcpy(v, p, tl);
	v[tl] = '\0';
	return p + tl + quoted;
}

/* A window size parameter's value: "8" to "15", no leading zero. */
static int
window_bits_ok(const char *v)
{
	return (v[0] >= '8' && v[0] <= '9' && v[1] == '\0') ||
	    (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0');
}

/*
 * An offer's parameters (RFC 7692 7.1); a window size is 0 when absent,
 * -1 when given without a value.
 */
struct pmd_offer {
	int	 srv_nct, cli_nct;
	int	 srv_bits, cli_bits;
};

/*
 * Reads one offer of the list at *pp (a name and its parameters, up to a
 * comma or the end) into o and says whether it is a permessage-deflate
 * offer squall can accept (RFC 7692 7.1): no parameter twice, none
 * unknown, no value for the no_context_takeover ones, a valid window
 * size for server_max_window_bits and, if it has one, for
 * client_max_window_bits. Returns 1 (acceptable), 0 (not), -1 (the list
 * is malformed).
 */
static int
deflate_offer(const char **pp, struct pmd_offer *o)
{
	static const char *const known[] = { "server_no_context_takeover",
	    "client_no_context_takeover", "server_max_window_bits",
	    "client_max_window_bits" };
	const char *p = skip_ows(*pp);
	size_t tl = token_len(p);
	int ok, seen = 0;

	if (tl == 0)
		return -1;
	ok = tl == 18 && strncasecmp(p, "permessage-deflate", 18) == 0;
	p = skip_ows(p + tl);
	memset(o, 0, sizeof(*o));
	while (*p == ';') {
		char v[16];
		int k = -1, bits = -1;

		p = skip_ows(p + 1);
		if ((tl = token_len(p)) == 0)
			return -1;
		for (int i = 0; i < 4; i++)
			if (strlen(known[i]) == tl &&
			    strncasecmp(p, known[i], tl) == 0)
				k = i;
		p = skip_ows(p + tl);
		v[0] = '\0';
		if (*p == '=') {
			if ((p = param_value(skip_ows(p + 1), v,
			    sizeof(v))) == NULL)
				return -1;
			p = skip_ows(p);
		}
		if (v[0] != '\0')
			bits = window_bits_ok(v) ? atoi(v) : 0;
		if (k < 0 || (seen & 1 << k) ||
		    (k < 2 && v[0] != '\0') || bits == 0 ||
		    (k == 2 && bits < 0))
			ok = 0;
		if (k >= 0)
			seen |= 1 << k;
		if (k == 0)
			o->srv_nct = 1;
		else if (k == 1)
			o->cli_nct = 1;
		else if (k == 2)
			o->srv_bits = bits;
		else if (k == 3)
			o->cli_bits = bits;
	}
	if (*p != ',' && *p != '\0')
		return -1;
	*pp = *p == ',' ? p + 1 : p;
	return ok;
}

/*
 * What libwebsockets is to see of the client's Sec-WebSocket-Extensions
 * (any number of header lines): the first permessage-deflate offer squall
 * can accept, rewritten in out (len bytes) as "permessage-deflate" with
 * exactly the parameters squall answers, which the bridge's extension
 * copies into the 101 (RFC 7692 7.1): both no_context_takeover, offered
 * or not (7.1.1: a server may answer them unasked), so that a message is
 * compressed once for every member a broadcast goes to and no link keeps
 * zlib state between messages; server_max_window_bits with the value
 * offered (squall's compressor keeps within it), client_max_window_bits
 * when offered with a value (the client's window then; without one, the
 * client keeps its own). Returns 1 with out filled, or 0 when there is no
 * such offer (or the list is malformed: no extension, then).
 */
int
sqc_upgrade_deflate_offer(const struct evkeyvalq *h, char *out, size_t len)
{
	const struct evkeyval *kv;
	struct pmd_offer o;
	char sb[48] = "", cb[48] = "";

	TAILQ_FOREACH(kv, h, next) {
		const char *p = kv->value;
		int ok;

		if (strcasecmp(kv->key, "Sec-WebSocket-Extensions") != 0)
			continue;
		while (*(p = skip_ows(p)) != '\0') {
			if (*p == ',') {	/* an empty element */
				p++;
				continue;
			}
			if ((ok = deflate_offer(&p, &o)) < 0)
				return 0;
			if (!ok)
				continue;
			if (o.srv_bits > 0)
				snprintf(sb, sizeof(sb),
				    "; server_max_window_bits=%d", o.srv_bits);
			if (o.cli_bits > 0)
				snprintf(cb, sizeof(cb),
				    "; client_max_window_bits=%d", o.cli_bits);
			snprintf(out, len, "permessage-deflate; "
			    "server_no_context_takeover; "
			    "client_no_context_takeover%s%s", sb, cb);
			return 1;
		}
	}
	return 0;
}

/*
 * The handshake libwebsockets is given for an accepted upgrade with
 * headers h, appended to b: with a permessage-deflate offer when deflate
 * is set and the client made an acceptable one. Never the subprotocols:
 * lws would look them up in its own list; the bridge answers them.
 * Returns 0 or -ENOMEM.
 */
int
sqc_upgrade_handshake(struct evbuffer *b, const struct evkeyvalq *h,
    int deflate)
{
	static const char *const pass[] = { "Host", "Sec-WebSocket-Key",
	    "Sec-WebSocket-Version", "Origin" };
	char ext[160];
	int rc;

	rc = evbuffer_add_printf(b, "GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n");
	for (size_t i = 0; rc >= 0 && i < sizeof(pass) / sizeof(pass[0]);
	    i++) {
		const char *v = find(h, pass[i]);

		if (v != NULL)
			rc = evbuffer_add_printf(b, "%s: %s\r\n", pass[i], v);
	}
	if (rc >= 0 && deflate && sqc_upgrade_deflate_offer(h, ext,
	    sizeof(ext)))
		rc = evbuffer_add_printf(b, "Sec-WebSocket-Extensions: %s\r\n",
		    ext);
	if (rc >= 0)
		rc = evbuffer_add(b, "\r\n", 2);
	return rc < 0 ? -ENOMEM : 0;
}

/*
 * Checks an upgrade request (method GET or not, its request target, its
 * headers) against RFC 6455 4.2.1 and against what libwebsockets can
 * take: `space` bytes of handshake. A subprotocol list that is not a
 * list of tokens is malformed. Returns 0 when acceptable, else the
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
	size_t len, n;
	char **protocols;
	int rc;

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
	if ((rc = sqc_upgrade_protocols(h, &protocols, &n)) != 0)
		return rc == -EINVAL ? 400 : 503;
	free(protocols);
	if ((b = evbuffer_new()) == NULL)
		return 503;
	if (sqc_upgrade_handshake(b, h, 1) != 0) {
		evbuffer_free(b);
		return 503;
	}
	len = evbuffer_get_length(b);
	evbuffer_free(b);
	return len > space ? 431 : 0;
}
