/*
 * echo_ws - a WebSocket echo for the conformance tests: every message
 * comes back as it came, text as text and binary as binary, so that what
 * a client sends (fragmented, compressed, 16 MiB) can be checked end to
 * end. Options:
 *   max_message, max_queue   the session's limits (sq_ws_limits)
 *   protocols = A B ...      subprotocols it speaks: ws_open selects the
 *                            first the client offers that is one of them
 *   announce = on            ws_open sends "offered=A,B protocol=P
 *                            unoffered=RC" (RC: what selecting a name the
 *                            client did not offer returned), the text
 *                            message "protocol" is answered with
 *                            "protocol=P late=RC" (RC: selecting after
 *                            ws_open) and "tls" with "tls=N" (sq_ws_tls)
 *                            instead of being echoed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

struct echo_ws {
	size_t	 max_message, max_queue;
	char	*protocols;	/* " A B ", for a whole-word search */
	int	 announce;
};

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct echo_ws *e = calloc(1, sizeof(*e));
	const char *p;

	if (e == NULL)
		return -ENOMEM;
	p = sq_opt_str(opts, "protocols", "");
	if (sq_opt_size(opts, "max_message", 64 << 10, &e->max_message) != 0 ||
	    sq_opt_size(opts, "max_queue", 1 << 20, &e->max_queue) != 0 ||
	    sq_opt_bool(opts, "announce", 0, &e->announce) != 0 ||
	    asprintf(&e->protocols, " %s ", p) < 0) {
		free(e);
		return -EINVAL;
	}
	*state = e;
	return 0;
}

static void
destroy(void *state)
{
	struct echo_ws *e = state;

	free(e->protocols);
	free(e);
}

/* Is name one of the words of list (" A B ")? */
static int
speaks(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
		if (p[-1] == ' ' && p[n] == ' ')
			return 1;
	return 0;
}

static int
ws_open(void *state, struct sq_ws *ws)
{
	struct echo_ws *e = state;
	const char *name;
	char line[1024];
	size_t off = 0;
	int unoffered;

	sq_ws_limits(ws, e->max_message, e->max_queue);
	unoffered = sq_ws_select_protocol(ws, "not-offered");
	for (size_t i = 0; (name = sq_ws_offered_protocol(ws, i)) != NULL;
	    i++)
		if (speaks(e->protocols, name)) {
			if (sq_ws_select_protocol(ws, name) != 0)
				return 500;
			break;
		}
	if (!e->announce)
		return 0;
	off += (size_t)snprintf(line, sizeof(line), "offered=");
	for (size_t i = 0; (name = sq_ws_offered_protocol(ws, i)) != NULL &&
	    off < sizeof(line); i++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s",
		    i ? "," : "", name);
	if (off < sizeof(line))
		snprintf(line + off, sizeof(line) - off, " protocol=%s "
		    "unoffered=%d", sq_ws_protocol(ws) ? sq_ws_protocol(ws) :
		    "(none)", unoffered);
	sq_ws_send(ws, line, strlen(line), 0);
	return 0;
}

static void
ws_message(void *state, struct sq_ws *ws, const void *data, size_t len,
    int binary)
{
	struct echo_ws *e = state;

	if (e->announce && !binary && len == 8 &&
	    memcmp(data, "protocol", 8) == 0) {
		char line[512];
		const char *p = sq_ws_protocol(ws);
		int late = sq_ws_select_protocol(ws, p);

		snprintf(line, sizeof(line), "protocol=%s late=%d",
		    p ? p : "(none)", late);
		sq_ws_send(ws, line, strlen(line), 0);
		return;
	}
	if (e->announce && !binary && len == 3 && memcmp(data, "tls", 3) == 0) {
		char line[16];

		snprintf(line, sizeof(line), "tls=%d", sq_ws_tls(ws));
		sq_ws_send(ws, line, strlen(line), 0);
		return;
	}
	sq_ws_send(ws, data, len, binary);
}

static void
ws_close(void *state, struct sq_ws *ws, int code)
{
	(void)state;
	(void)ws;
	(void)code;
}

SQ_PLUGIN(.name = "echo_ws", .version = "test", .create = create,
    .destroy = destroy, .ws_open = ws_open, .ws_message = ws_message,
    .ws_close = ws_close);
