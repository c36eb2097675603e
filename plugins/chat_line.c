/*
 * chat_line - the chat room's Origin check and the lines it says, kept
 * apart from chat.c so that they can be fuzzed without a server
 * (tests/fuzz/fuzz_chat.c). Pure functions, callable from any thread.
 */
#include <errno.h>
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
