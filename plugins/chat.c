/*
 * chat - the WebSocket chat room of the seed (the Tornado tutorial this
 * project re-creates). Everyone in the room (one room per route) gets,
 * byte for byte as the seed wrote them:
 *   [IP] joined at YYYY-MM-DD HH:MM:SS        (the newcomer too)
 *   [IP] at YYYY-MM-DD HH:MM:SS: MESSAGE      (the sender too)
 *   [IP] left at YYYY-MM-DD HH:MM:SS          (those who remain)
 * in local time. Unlike the seed, origins are checked: a browser page of
 * another site cannot join (403), only the page's own origin and those in
 * allowed_origins. Shows the WebSocket side of the API: ws_open deciding,
 * sq_ws_broadcast to the room, limits, closing with a code.
 *
 * With broker = redis://host:port, a room spans every squalld on that
 * Redis: chat_broker.c. chat.h is what the two share.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall/plugin.h>

#include "chat.h"
#include "chat_line.h"

/* every room of this module, newest first, and how many were made */
static struct room *rooms;
static unsigned long long nrooms_made;

/*
 * The turn after r was created: if the configuration r belongs to is
 * serving (a reload that fails destroys its new rooms; reloads_ok tells
 * the two apart), the older rooms of the same route in this process take
 * r's broker settings (chat_broker_move). Each room remembers whose settings it
 * has, so that the newest wins whatever the order of these turns.
 */
static void
settle(int status, void *arg)
{
	struct room *r = arg;
	struct sq_stats st;

	if (status != 0)
		return;
	sq_stats_get(&st, sizeof(st));
	if (st.reloads_ok == r->reloads_ok)
		return;		/* the reload failed, or none */
	for (struct room *o = rooms; o; o = o->next)
		if (o != r && o->seq < r->seq && o->cfg_seq < r->seq &&
		    strcmp(sq_inst_route(o->inst), sq_inst_route(r->inst)) == 0)
			chat_broker_move(o, r);
}

static void
room_free(struct room *r)
{
	for (struct room **p = &rooms; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	chat_origins_free(&r->origins);
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[(r->first + i) % (size_t)r->history]);
	free(r->lines);
	free(r->members);
	for (size_t i = 0; i < r->njoining; i++)
		free(r->joining[i].line);
	free(r->joining);
	if (r->broker) {
		chat_broker_close(r->broker);
		chat_broker_free(r->broker);
	}
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
	r->seq = r->cfg_seq = ++nrooms_made;
	r->next = rooms;
	rooms = r;
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
	if (rc == 0)
		rc = chat_broker_create(r, opts, &r->broker);
	if (rc != 0) {
		room_free(r);
		return rc;
	}
	if (r->broker) {
		(void)sq_inst_set_info(inst, "broker", "down");
		chat_broker_connect(r);
	}
	if (sq_loop_base() != NULL) {
		struct sq_stats st;

		sq_stats_get(&st, sizeof(st));
		r->reloads_ok = st.reloads_ok;
		(void)sq_timer_start(inst, 0, settle, r);
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

static int
member_add(struct room *r, struct sq_ws *ws)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct sq_ws **m = realloc(r->members, cap * sizeof(*m));

		if (m == NULL)
			return -ENOMEM;
		r->members = m;
		r->cap = cap;
	}
	r->members[r->n++] = ws;
	return 0;
}

static void	arm_pinger(struct room *);

/* The first of those joining becomes a member; line was its own. */
static void
admit_first(struct room *r, int send_line)
{
	struct joining j = r->joining[0];

	memmove(r->joining, r->joining + 1, --r->njoining *
	    sizeof(*r->joining));
	if (member_add(r, j.ws) != 0)
		sq_ws_close(j.ws, 1011, "out of memory");
	else {
		if (send_line)
			sq_ws_send(j.ws, j.line, j.len, 0);
		arm_pinger(r);
	}
	free(j.line);
}

/*
 * The promised order, after a room moves to another broker as at any
 * time: a member hears its own joined line first, then what was said
 * after it in the broker's order, never what was said before it (which
 * a second subscription of this process, a moved room's, may still be
 * delivering). So a newcomer waits among those joining until the
 * subscription brings its joined line back: our lines reach the broker,
 * and come back, in the order we published them, so it is the first of
 * those joining whose line this is. (Another process could publish the
 * same bytes in the same second, for a client of the same address: the
 * newcomer then starts a line early, no worse.)
 */
void
chat_room_admit(struct room *r, const char *line, size_t len)
{
	if (r->njoining > 0 && r->joining[0].len == len &&
	    memcmp(r->joining[0].line, line, len) == 0)
		admit_first(r, 0);	/* chat_room_deliver() sends it the line */
}

/*
 * The broker is gone, or the room moves: their joined lines may never
 * come back, so those joining get theirs now and become members.
 */
void
chat_room_admit_all(struct room *r)
{
	while (r->njoining > 0)
		admit_first(r, 1);
}

/* ws waits for its joined line (line, taken). 0 or -ENOMEM. */
static int
joining_add(struct room *r, struct sq_ws *ws, char *line, size_t len)
{
	if (r->njoining == r->capjoining) {
		size_t cap = r->capjoining ? r->capjoining * 2 : 8;
		struct joining *j = realloc(r->joining, cap * sizeof(*j));

		if (j == NULL)
			return -ENOMEM;
		r->joining = j;
		r->capjoining = cap;
	}
	r->joining[r->njoining].ws = ws;
	r->joining[r->njoining].line = line;
	r->joining[r->njoining++].len = len;
	return 0;
}

/* A line for the members of this process (and its history). */
void
chat_room_deliver(struct room *r, const char *line, size_t len)
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

/* The line of what ws did (msg: what it said), stamped with now. */
static char *
stamp(enum chat_event ev, struct sq_ws *ws, const char *msg, size_t len,
    size_t *n)
{
	time_t now = time(NULL);
	struct tm tm;
	char when[32], *line;

	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (chat_line(&line, n, ev, sq_ws_client_ip(ws), when, msg,
	    len) != 0)
		return NULL;
	return line;
}

/* Says to the room what ws did. */
static void
announce(struct room *r, enum chat_event ev, struct sq_ws *ws,
    const char *msg, size_t len)
{
	char *line;
	size_t n;

	if ((line = stamp(ev, ws, msg, len, &n)) != NULL) {
		(void)chat_broker_say(r, line, n);
		free(line);
	}
}

static int
chat_open(void *state, struct sq_ws *ws)
{
	struct room *r = state;
	char *line;
	size_t n;

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
	if (r->broker && chat_broker_idle(r->broker))
		chat_broker_connect(r);	/* an empty room stopped retrying */
	if ((line = stamp(CHAT_JOINED, ws, NULL, 0, &n)) == NULL) {
		r->members[r->n++] = ws;
		arm_pinger(r);
		return 0;
	}
	/* on the broker: a member once its line is back (see admit) */
	if (r->broker && chat_broker_up(r->broker) &&
	    joining_add(r, ws, line, n) == 0) {
		if (chat_broker_say(r, line, n))
			return 0;
		r->njoining--;	/* not published: delivered, or dropped */
		r->members[r->n++] = ws;
		sq_ws_send(ws, line, n, 0);
	} else {
		r->members[r->n++] = ws;
		(void)chat_broker_say(r, line, n);
	}
	free(line);
	arm_pinger(r);
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
	for (size_t i = 0; i < r->njoining; i++)
		if (r->joining[i].ws == ws) {
			free(r->joining[i].line);
			memmove(r->joining + i, r->joining + i + 1,
			    (r->njoining - i - 1) * sizeof(*r->joining));
			r->njoining--;
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
