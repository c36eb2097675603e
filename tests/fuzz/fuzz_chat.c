/*
 * fuzz_chat - the chat plugin's pure part (plugins/chat_line.c): the
 * allowed_origins list, the Origin check, and the lines the room hears.
 *
 * Input, one field a line: flags (first byte: bit 0 require_origin, bit 1
 * no Origin, bit 2 no Host), allowed_origins, Origin, Host, the client's
 * address, the time stamp, then the message (the rest of the input, NUL
 * bytes and newlines included). Checks: every listed origin gets in, an
 * origin gets in only for a reason the plugin documents, each line is
 * byte for byte what the seed's printf formats gave, the check of lines
 * from a broker (chat_line_check) passes every line the room says from a
 * UTF-8 message, and refuses the message itself unless it is one.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "fields.h"
#include "../../plugins/chat_line.h"

static const char *
opt(const struct fuzz_fields *ff, int i, const char *def)
{
	return ff->f[i] ? ff->f[i] : def;
}

static int
same_host(const char *origin, const char *host)
{
	const char *rest;

	if (strncasecmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	else
		return 0;
	return host != NULL && strcasecmp(rest, host) == 0;
}

static void
check_origins(int flags, const char *list, const char *origin,
    const char *host)
{
	struct chat_origins o = { NULL, 0, 0 };
	int require = flags & 1, ok, listed = 0;
	size_t words = 0;

	if (chat_origins_add(&o, list) != 0) {
		chat_origins_free(&o);
		return;
	}
	for (const char *p = list; *p; ) {
		size_t n;

		p += strspn(p, " \t,");
		if ((n = strcspn(p, " \t,")) == 0)
			break;
		words++;
		p += n;
	}
	FUZZ_CHECKF(o.n + (size_t)o.any <= words && o.n <= words,
	    "%zu origins from %zu words", o.n, words);
	for (size_t i = 0; i < o.n; i++) {
		FUZZ_CHECKF(o.list[i][0] != '\0' && strcmp(o.list[i], "*") &&
		    strpbrk(o.list[i], " \t,") == NULL, "origin '%s'",
		    o.list[i]);
		FUZZ_CHECKF(strstr(list, o.list[i]) != NULL, "'%s' not in '%s'",
		    o.list[i], list);
		FUZZ_CHECKF(chat_origin_ok(&o, 1, o.list[i], NULL), "listed "
		    "'%s' refused", o.list[i]);
		if (origin && strcasecmp(o.list[i], origin) == 0)
			listed = 1;
	}
	ok = chat_origin_ok(&o, require, origin, host);
	FUZZ_CHECKF(ok == 0 || ok == 1, "%d", ok);
	if (origin == NULL)
		FUZZ_CHECKF(ok == !require, "no Origin: %d", ok);
	else
		FUZZ_CHECKF(ok == (o.any || listed || same_host(origin, host)),
		    "Origin '%s' Host '%s': %d", origin, host ? host : "(none)",
		    ok);
	if (host != NULL && strlen(host) < 4096) {
		char page[4200];

		snprintf(page, sizeof(page), "http://%s", host);
		FUZZ_CHECKF(chat_origin_ok(&o, 1, page, host), "the page's own "
		    "origin '%s' refused", page);
	}
	/* adding again only adds */
	if (chat_origins_add(&o, list) == 0)
		FUZZ_CHECKF(o.n % 2 == 0, "%zu", o.n);
	chat_origins_free(&o);
	FUZZ_CHECKF(o.n == 0 && o.list == NULL && !o.any, "not emptied");
}

static void
check_line(enum chat_event ev, const char *ip, const char *when,
    const char *msg, size_t msglen)
{
	char *line = NULL, *want = NULL;
	size_t len = 0;
	int rc, n;

	rc = chat_line(&line, &len, ev, ip, when, msg, msglen);
	FUZZ_CHECKF(rc == 0 || rc == -ENOMEM, "%d", rc);
	if (rc != 0)
		return;
	FUZZ_CHECKF(strlen(line) == len, "length %zu for '%s'", len, line);
	if (msglen <= INT_MAX) {
		switch (ev) {
		case CHAT_JOINED:
			n = asprintf(&want, "[%s] joined at %s", ip, when);
			break;
		case CHAT_SAID:
			n = asprintf(&want, "[%s] at %s: %.*s", ip, when,
			    (int)msglen, msg);
			break;
		default:
			n = asprintf(&want, "[%s] left at %s", ip, when);
			break;
		}
		if (n >= 0)
			FUZZ_CHECKF((size_t)n == len && memcmp(want, line,
			    len + 1) == 0, "'%s', the seed's '%s'", line, want);
		if (n >= 0)
			free(want);
	}
	free(line);
}

/* Lines from a broker: the message as one, and the line it makes. */
static void
check_broker_line(const char *msg, size_t msglen)
{
	const char *why = chat_line_check(msg, msglen, (size_t)-1);
	size_t upto = strnlen(msg, msglen), len;
	char *line;

	FUZZ_CHECKF(why == NULL || strcmp(why, "not UTF-8 text") == 0 ||
	    strcmp(why, "not a chat line") == 0, "%s", why);
	if (why == NULL)
		FUZZ_CHECKF(msglen > 0 && msg[0] == '[' && upto == msglen &&
		    chat_utf8_ok(msg, msglen), "accepted '%.*s'", (int)msglen,
		    msg);
	if (msglen > 0)
		FUZZ_CHECKF(chat_line_check(msg, msglen, msglen - 1) != NULL,
		    "longer than the bound, accepted");
	if (!chat_utf8_ok(msg, upto) || chat_line(&line, &len, CHAT_SAID,
	    "127.0.0.1", "2024-01-01 00:00:00", msg, msglen) != 0)
		return;
	why = chat_line_check(line, len, upto + 96);
	FUZZ_CHECKF(why == NULL, "the room's own line '%s' refused: %s", line,
	    why);
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_fields ff;
	const char *ip, *when, *msg;
	size_t msglen;
	int flags;

	if (fuzz_split(&ff, data, size, 7) != 0)
		return 0;
	flags = ff.f[0] ? (unsigned char)ff.f[0][0] : 0;
	check_origins(flags, opt(&ff, 1, ""), flags & 2 ? NULL : ff.f[2],
	    flags & 4 ? NULL : ff.f[3]);
	ip = opt(&ff, 4, "127.0.0.1");
	when = opt(&ff, 5, "2024-01-01 00:00:00");
	msg = ff.f[6];
	msglen = msg ? ff.len[6] : 0;
	check_line(CHAT_JOINED, ip, when, NULL, 0);
	check_line(CHAT_SAID, ip, when, msg ? msg : "", msglen);
	check_line(CHAT_LEFT, ip, when, NULL, 0);
	check_broker_line(msg ? msg : "", msglen);
	FUZZ_CHECKF(chat_line(&(char *){ NULL }, &(size_t){ 0 },
	    (enum chat_event)42, ip, when, NULL, 0) == -EINVAL, "ev 42");
	fuzz_fields_free(&ff);
	return 0;
}
