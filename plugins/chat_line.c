/*
 * chat_line - the chat room's Origin check and the lines it says, kept
 * apart from chat.c so that they can be fuzzed without a server
 * (tests/fuzz/fuzz_chat.c), and the ids of a stream's entries. Pure
 * functions, callable from any thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat_line.h"

/*
 * Adds the origins of list (separated by blanks or commas) to o; "*" lets
 * any origin in. o owns the copies; chat_origins_free releases them.
 * Returns 0, or -ENOMEM (the origins added so far stay in o).
 */
int
chat_origins_add(struct chat_origins *o, const char *list)
{
	char *copy = strdup(list), *tok, *save;

	if (copy == NULL)
		return -ENOMEM;
	for (tok = strtok_r(copy, " \t,", &save); tok;
	    tok = strtok_r(NULL, " \t,", &save)) {
		char **n;

		if (strcmp(tok, "*") == 0) {
			o->any = 1;
			continue;
		}
		n = realloc(o->list, (o->n + 1) * sizeof(*n));
		if (n == NULL || (n[o->n] = strdup(tok)) == NULL) {
			if (n)
				o->list = n;
			free(copy);
			return -ENOMEM;
		}
		o->list = n;
		o->n++;
	}
	free(copy);
	return 0;
}

/* Frees what chat_origins_add copied; o can be filled again. */
void
chat_origins_free(struct chat_origins *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->list[i]);
	free(o->list);
	o->list = NULL;
	o->n = 0;
	o->any = 0;
}

/*
 * May a client whose upgrade request carried origin and host (either
 * NULL when absent) join? A request without Origin is not a browser's:
 * it may, unless require_origin. Otherwise the origin must be allowed,
 * or be the page's own: http:// or https:// followed by the Host header.
 * Returns 1 or 0.
 */
int
chat_origin_ok(const struct chat_origins *o, int require_origin,
    const char *origin, const char *host)
{
	const char *rest;

	if (origin == NULL)
		return !require_origin;
	if (o->any)
		return 1;
	for (size_t i = 0; i < o->n; i++)
		if (strcasecmp(o->list[i], origin) == 0)
			return 1;
	if (strncasecmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	else
		return 0;
	return host != NULL && strcasecmp(rest, host) == 0;
}

/*
 * Builds the line the room hears for ev, byte for byte the seed's:
 *   CHAT_JOINED  "[ip] joined at when"
 *   CHAT_SAID    "[ip] at when: msg"
 *   CHAT_LEFT    "[ip] left at when"
 * msg (msglen bytes, CHAT_SAID only) ends at its first NUL, as the
 * seed's "%.*s" made it. *line is NUL-terminated, malloc'd and the
 * caller's; *len is its length without the NUL. Returns 0, or -ENOMEM,
 * or -EINVAL for an unknown ev.
 */
int
chat_line(char **line, size_t *len, enum chat_event ev, const char *ip,
    const char *when, const char *msg, size_t msglen)
{
	const char *mid, *tail = "";
	size_t iplen = strlen(ip), midlen, whenlen = strlen(when);
	size_t taillen = 0, n;
	char *p;

	switch (ev) {
	case CHAT_JOINED:
		mid = "] joined at ";
		break;
	case CHAT_SAID:
		mid = "] at ";
		tail = ": ";
		taillen = 2;
		msglen = msg != NULL ? strnlen(msg, msglen) : 0;
		break;
	case CHAT_LEFT:
		mid = "] left at ";
		break;
	default:
		return -EINVAL;
	}
	if (ev != CHAT_SAID)
		msglen = 0;
	midlen = strlen(mid);
	n = 1 + iplen + midlen + whenlen + taillen;
	if (msglen > (size_t)-1 - 1 - n)
		return -ENOMEM;
	if ((p = malloc(n + msglen + 1)) == NULL)
		return -ENOMEM;
	*line = p;
	*p++ = '[';
	memcpy(p, ip, iplen);
	p += iplen;
	memcpy(p, mid, midlen);
	p += midlen;
	memcpy(p, when, whenlen);
	p += whenlen;
	memcpy(p, tail, taillen);
	p += taillen;
	if (msglen > 0)
		memcpy(p, msg, msglen);
	p[msglen] = '\0';
	*len = n + msglen;
	return 0;
}

/*
 * Is s (len bytes) well-formed UTF-8 (RFC 3629): no overlong form, no
 * surrogate, nothing past U+10FFFF? What a WebSocket text frame must
 * carry: a browser closes the connection with 1007 otherwise. 1 or 0.
 */
int
chat_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len;

	while (p < end) {
		unsigned char c = *p++, lo = 0x80, hi = 0xbf;
		int more;

		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			if (c == 0xe0)
				lo = 0xa0;	/* overlong */
			else if (c == 0xed)
				hi = 0x9f;	/* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			if (c == 0xf0)
				lo = 0x90;	/* overlong */
			else if (c == 0xf4)
				hi = 0x8f;	/* past U+10FFFF */
		} else
			return 0;
		if (end - p < more || *p < lo || *p > hi)
			return 0;
		for (p++; --more > 0; p++)
			if (*p < 0x80 || *p > 0xbf)
				return 0;
	}
	return 1;
}

/* May c be part of an address, as sq_ws_client_ip gives it? */
static int
addr_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || (c != '\0' && strchr(".:%_-", c));
}

/* n ASCII digits at p, then what follows them. */
static const char *
digits(const char *p, const char *end, int n)
{
	for (; n > 0; n--, p++)
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
	return p;
}

/* "YYYY-MM-DD HH:MM:SS" at p: what follows it, or NULL. */
static const char *
stamp(const char *p, const char *end)
{
	static const char seps[] = " -- ::";	/* [0] unused */
	static const int widths[] = { 4, 2, 2, 2, 2, 2 };

	for (int i = 0; i < 6; i++) {
		if (i > 0 && (p >= end || *p++ != seps[i]))
			return NULL;
		if ((p = digits(p, end, widths[i])) == NULL)
			return NULL;
	}
	return p;
}

/*
 * Could line (len bytes, from a broker: any bytes at all) be one of the
 * lines chat_line builds, to be sent to the room as a text frame? It
 * must be at most max bytes, be valid UTF-8 with no NUL (chat_line ends
 * a message at its first NUL), and read "[ADDR] joined at STAMP",
 * "[ADDR] left at STAMP" or "[ADDR] at STAMP: MESSAGE", ADDR being 1 to
 * 64 characters of an IPv4 or IPv6 address (with a zone) and STAMP
 * "YYYY-MM-DD HH:MM:SS". Returns NULL when it could, otherwise why not
 * (a static string).
 */
const char *
chat_line_check(const char *line, size_t len, size_t max)
{
	const char *p = line, *end = line + len;
	size_t n;

	if (len > max)
		return "too long";
	if (memchr(line, '\0', len) != NULL || !chat_utf8_ok(line, len))
		return "not UTF-8 text";
	if (len == 0 || *p++ != '[')
		return "not a chat line";
	for (n = 0; p + n < end && addr_char(p[n]); n++)
		;
	if (n == 0 || n > 64 || p + n == end || p[n] != ']')
		return "not a chat line";
	p += n + 1;
	if ((size_t)(end - p) > 11 && memcmp(p, " joined at ", 11) == 0)
		return stamp(p + 11, end) == end ? NULL : "not a chat line";
	if ((size_t)(end - p) > 9 && memcmp(p, " left at ", 9) == 0)
		return stamp(p + 9, end) == end ? NULL : "not a chat line";
	if ((size_t)(end - p) > 4 && memcmp(p, " at ", 4) == 0 &&
	    (p = stamp(p + 4, end)) != NULL && end - p >= 2 &&
	    p[0] == ':' && p[1] == ' ')
		return NULL;
	return "not a chat line";
}

/* Reads n decimal digits of p into *v, without overflow: 0 or -EINVAL. */
static int
decimal(const char *p, size_t n, uint64_t *v)
{
	*v = 0;
	if (n == 0 || n > 20 || (n > 1 && p[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' ||
		    *v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return -EINVAL;
		*v = *v * 10 + (uint64_t)(p[i] - '0');
	}
	return 0;
}

/*
 * A stream entry id as Redis writes it, "MS-SEQ" in decimal without
 * leading zeros: 0, or -EINVAL for anything else (the first len bytes
 * of s; no NUL needed).
 */
int
chat_sid_parse(struct chat_sid *id, const char *s, size_t len)
{
	const char *dash = memchr(s, '-', len);

	if (dash == NULL)
		return -EINVAL;
	if (decimal(s, (size_t)(dash - s), &id->ms) != 0 ||
	    decimal(dash + 1, len - (size_t)(dash - s) - 1, &id->seq) != 0)
		return -EINVAL;
	return 0;
}

/* <0, 0 or >0 as a is before, the same as or after b. */
int
chat_sid_cmp(const struct chat_sid *a, const struct chat_sid *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

void
chat_sid_format(const struct chat_sid *id, char buf[CHAT_SID_MAX])
{
	snprintf(buf, CHAT_SID_MAX, "%" PRIu64 "-%" PRIu64, id->ms, id->seq);
}
