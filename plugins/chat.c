/*
 * chat - the seed's WebSocket chat room. Everyone in the room (one room
 * per route) gets, byte for byte as the seed wrote them:
 *   [IP] joined at YYYY-MM-DD HH:MM:SS        (the newcomer too)
 *   [IP] at YYYY-MM-DD HH:MM:SS: MESSAGE      (the sender too)
 *   [IP] left at YYYY-MM-DD HH:MM:SS          (those who remain)
 * in local time. Unlike the seed, origins are checked: a browser page of
 * another site cannot join (403), only the page's own origin and those in
 * allowed_origins. Shows the WebSocket side of the API: ws_open deciding,
 * sq_ws_broadcast to the room, limits, closing with a code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall/plugin.h>

#include "chat_line.h"

/* What a line adds to a message: "[IPv6] at YYYY-MM-DD HH:MM:SS: " */
#define LINE_OVERHEAD	96

struct room {
	struct sq_inst	*inst;
	struct sq_ws	**members;
	size_t		 n, cap;
	struct chat_origins origins;	/* allowed_origins */
	int		 require_origin;
	size_t		 max_message, max_queue;
	long long	 history;	/* lines kept for newcomers */
	long long	 ping_interval;	/* seconds, 0: no pings */
	long long	 ping_timeout;
	struct sq_timer	*pinger;	/* armed while the room has members */
	int		 cancelling;	/* pinger cancelled, callback to come */
	int		 rearm;		/* someone joined meanwhile */
	char		**lines;	/* ring of the last `history` lines */
	size_t		 nlines, first;
};

static void
room_free(struct room *r)
{
	chat_origins_free(&r->origins);
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[(r->first + i) % (size_t)r->history]);
	free(r->lines);
	free(r->members);
	free(r);
}

static int
chat_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct room *r = calloc(1, sizeof(*r));
	int rc;

	if (r == NULL)
		return -ENOMEM;
	r->inst = inst;
	rc = chat_origins_add(&r->origins,
	    sq_opt_str(opts, "allowed_origins", ""));
	if (rc == 0)
		rc = sq_opt_bool(opts, "require_origin", 0, &r->require_origin);
	if (rc == 0)
		rc = sq_opt_size(opts, "max_message_size", 64 << 10,
		    &r->max_message);
	if (rc == 0)
		rc = sq_opt_size(opts, "max_queue", 1 << 20, &r->max_queue);
	if (rc == 0)
		rc = sq_opt_int(opts, "history", 0, 0, 10000, &r->history);
	if (rc == 0)
		rc = sq_opt_int(opts, "ping_interval", 0, 0, 86400,
		    &r->ping_interval);
	if (rc == 0)
		rc = sq_opt_int(opts, "ping_timeout", 30, 1, 86400,
		    &r->ping_timeout);
	/*
	 * A newcomer gets the history at once, and it counts against
	 * max_queue like any other line: it must fit, or every newcomer
	 * would be dropped as a slow reader.
	 */
	if (rc == 0 && r->history > 0 && (size_t)r->history *
	    (r->max_message + LINE_OVERHEAD) > r->max_queue)
		rc = sq_opt_error(opts, "history", "history = %lld lines of up "
		    "to max_message_size (%zu bytes) do not fit in max_queue "
		    "(%zu bytes): raise max_queue, or lower history or "
		    "max_message_size", r->history, r->max_message,
		    r->max_queue);
	if (rc == 0 && r->history > 0 &&
	    (r->lines = calloc((size_t)r->history, sizeof(char *))) == NULL)
		rc = -ENOMEM;
	if (rc != 0) {
		room_free(r);
		return rc;
	}
	*state = r;
	return 0;
}

static void
chat_destroy(void *state)
{
	room_free(state);
}

/* Is origin the page's own (same host as the request) or allowed? */
static int
origin_ok(struct room *r, struct sq_ws *ws)
{
	return chat_origin_ok(&r->origins, r->require_origin,
	    sq_ws_header(ws, "Origin"), sq_ws_header(ws, "Host"));
}

static void
remember(struct room *r, const char *line)
{
	char *copy;

	if (r->history <= 0 || (copy = strdup(line)) == NULL)
		return;
	if (r->nlines == (size_t)r->history) {
		free(r->lines[r->first]);
		r->lines[r->first] = copy;
		r->first = (r->first + 1) % (size_t)r->history;
	} else
		r->lines[(r->first + r->nlines++) % (size_t)r->history] = copy;
}

static void
say(struct room *r, const char *line, size_t len)
{
	sq_ws_broadcast(r->members, r->n, line, len, 0);
	remember(r, line);
}

static void ping_all(int status, void *arg);

/*
 * Pings every member each ping_interval; one that does not answer within
 * ping_timeout is dropped by the core (and leaves the room). The timer
 * runs only while the room has members: a pending timer keeps the
 * instance alive, and an empty room must be free to go after a reload.
 */
static void
arm_pinger(struct room *r)
{
	if (r->ping_interval <= 0 || r->n == 0)
		return;
	if (r->cancelling)
		r->rearm = 1;	/* once the cancelled one has called back */
	else if (r->pinger == NULL)
		r->pinger = sq_timer_start(r->inst,
		    (uint64_t)r->ping_interval * 1000, ping_all, r);
}

static void
ping_all(int status, void *arg)
{
	struct room *r = arg;

	r->pinger = NULL;
	if (status != 0) {
		/* our cancel (the room emptied), or the server stopping */
		r->cancelling = 0;
		if (r->rearm) {
			r->rearm = 0;
			arm_pinger(r);
		}
		return;
	}
	for (size_t i = 0; i < r->n; i++)
		sq_ws_ping(r->members[i], (uint64_t)r->ping_timeout * 1000);
	arm_pinger(r);
}

/* Says to the room what ws did (msg: what it said), stamped with now. */
static void
announce(struct room *r, enum chat_event ev, struct sq_ws *ws,
    const char *msg, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	char when[32], *line;
	size_t n;

	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (chat_line(&line, &n, ev, sq_ws_client_ip(ws), when, msg,
	    len) == 0) {
		say(r, line, n);
		free(line);
	}
}

static int
chat_open(void *state, struct sq_ws *ws)
{
	struct room *r = state;

	if (!origin_ok(r, ws)) {
		sq_log(r->inst, SQ_LOG_WARN, "refused %s from origin %s",
		    sq_ws_client_ip(ws), sq_ws_header(ws, "Origin") ?
		    sq_ws_header(ws, "Origin") : "(none)");
		return 403;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct sq_ws **m = realloc(r->members, cap * sizeof(*m));

		if (m == NULL)
			return 503;
		r->members = m;
		r->cap = cap;
	}
	sq_ws_limits(ws, r->max_message, r->max_queue);
	for (size_t i = 0; i < r->nlines; i++) {
		const char *h = r->lines[(r->first + i) % (size_t)r->history];

		sq_ws_send(ws, h, strlen(h), 0);
	}
	r->members[r->n++] = ws;
	arm_pinger(r);
	announce(r, CHAT_JOINED, ws, NULL, 0);
	return 0;
}

static void
chat_message(void *state, struct sq_ws *ws, const void *data, size_t len,
    int binary)
{
	struct room *r = state;

	if (binary) {
		sq_ws_close(ws, 1003, "text only");
		return;
	}
	announce(r, CHAT_SAID, ws, data, len);
}

static void
chat_close(void *state, struct sq_ws *ws, int code)
{
	struct room *r = state;

	for (size_t i = 0; i < r->n; i++)
		if (r->members[i] == ws) {
			r->members[i] = r->members[--r->n];
			break;
		}
	if (r->n == 0 && r->pinger && !r->cancelling) {
		r->cancelling = 1;
		sq_timer_cancel(r->pinger);	/* ping_all clears it */
	}
	announce(r, CHAT_LEFT, ws, NULL, 0);
}

static void
chat_handle(void *state, struct sq_req *req)
{
	sq_resp_header(req, "Upgrade", "websocket");
	sq_resp_printf(req, 426, "this is a WebSocket endpoint\n");
}

SQ_PLUGIN(
	.name = "chat",
	.version = "1.0",
	.create = chat_create,
	.destroy = chat_destroy,
	.handle = chat_handle,
	.ws_open = chat_open,
	.ws_message = chat_message,
	.ws_close = chat_close,
);
