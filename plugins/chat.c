/*
 * chat - the WebSocket chat room of the seed (the Tornado tutorial this
 * project re-creates). Everyone in a room gets, byte for byte as the
 * seed wrote them:
 *   [IP] joined at YYYY-MM-DD HH:MM:SS        (the newcomer too)
 *   [IP] at YYYY-MM-DD HH:MM:SS: MESSAGE      (the sender too)
 *   [IP] left at YYYY-MM-DD HH:MM:SS          (those who remain)
 * in local time. Unlike the seed, origins are checked: a browser page of
 * another site cannot join (403), only the page's own origin and those in
 * allowed_origins. Shows the WebSocket side of the API: ws_open deciding,
 * sq_ws_broadcast to the room, limits, closing with a code.
 *
 * A route has one room; a route ending in "*" (/rooms/...) has one per
 * path segment after its prefix (/rooms/lobby), made at its first join
 * and freed with its last member, at most max_rooms at once, found by
 * name in a hash table. Who in a room hears what is chat_room.c's. With
 * broker = redis://host:port, a room spans every squalld on that Redis:
 * chat_broker.c, with chat_pubsub.c or chat_stream.c. chat.h is what
 * they share.
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

#define ROOM_NAME_MAX	64

/* every chat route of this module, newest first, and how many were made */
static struct chat *chats;
static unsigned long long nchats_made;

/*
 * The turn after c was created: if the configuration c belongs to is
 * serving (a reload that fails destroys its new instances; reloads_ok
 * tells the two apart), the older instances of the same route in this
 * process take c's broker settings (chat_broker_move). Each remembers
 * whose settings it has, so that the newest wins whatever the order of
 * these turns.
 */
static void
settle(int status, void *arg)
{
	struct chat *c = arg;
	struct sq_stats st;

	if (status != 0)
		return;
	sq_stats_get(&st, sizeof(st));
	if (st.reloads_ok == c->reloads_ok)
		return;		/* the reload failed, or none */
	for (struct chat *o = chats; o; o = o->next)
		if (o != c && o->seq < c->seq && o->cfg_seq < c->seq &&
		    strcmp(sq_inst_route(o->inst), sq_inst_route(c->inst)) == 0)
			chat_broker_move(o, c);
}

/* ---- rooms ------------------------------------------------------------ */

/* A room name: [A-Za-z0-9._-]{1,64}. */
static int
valid_name(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-");

	return n > 0 && n <= ROOM_NAME_MAX && s[n] == '\0';
}

static size_t
bucket(const struct chat *c, const char *name, size_t len)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
	return (size_t)h & (c->nbuckets - 1);
}

struct room *
chat_room_find(struct chat *c, const char *name, size_t len)
{
	if (!c->per_path)
		return c->only;
	if (c->nbuckets == 0)
		return NULL;
	for (struct room *r = c->table[bucket(c, name, len)]; r; r = r->hnext)
		if (strlen(r->name) == len && memcmp(r->name, name, len) == 0)
			return r;
	return NULL;
}

/* Doubles the table once it holds as many rooms as buckets. */
static int
table_grow(struct chat *c)
{
	size_t old = c->nbuckets, n = old ? old * 2 : 64;
	struct room **t = calloc(n, sizeof(*t)), **ot = c->table;

	if (t == NULL)
		return -ENOMEM;
	c->table = t;
	c->nbuckets = n;
	for (size_t i = 0; i < old; i++)
		for (struct room *r = ot[i], *next; r; r = next) {
			size_t b = bucket(c, r->name, strlen(r->name));

			next = r->hnext;
			r->hnext = t[b];
			t[b] = r;
		}
	free(ot);
	return 0;
}

/* What /status shows of the route: rooms, members, recoveries. */
void
chat_set_counts(struct chat *c)
{
	char v[32];

	if (c->per_path) {
		snprintf(v, sizeof(v), "%zu", c->nrooms);
		(void)sq_inst_set_info(c->inst, "rooms", v);
		snprintf(v, sizeof(v), "%zu", c->members);
		(void)sq_inst_set_info(c->inst, "members", v);
	}
	if (!chat_broker_stream(c->broker))
		return;
	snprintf(v, sizeof(v), "%llu", c->recovered);
	(void)sq_inst_set_info(c->inst, "recovered", v);
	snprintf(v, sizeof(v), "%llu", c->unrecovered);
	(void)sq_inst_set_info(c->inst, "unrecovered", v);
	snprintf(v, sizeof(v), "%llu", c->replayed);
	(void)sq_inst_set_info(c->inst, "replayed", v);
	snprintf(v, sizeof(v), "%llu", chat_broker_invalid_count(c->broker));
	(void)sq_inst_set_info(c->inst, "invalid", v);
}

/* fn(r, arg) for each room of c. */
void
chat_rooms_each(struct chat *c, void (*fn)(struct room *, void *), void *arg)
{
	if (c->only)
		fn(c->only, arg);
	for (size_t i = 0; i < c->nbuckets; i++)
		for (struct room *r = c->table[i], *next; r; r = next) {
			next = r->hnext;
			fn(r, arg);
		}
}

static void
room_free(struct room *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[(r->first + i) % (size_t)r->chat->history]);
	free(r->lines);
	free(r->members);
	free(r->tagged);
	for (size_t i = 0; i < r->njoining; i++)
		chat_joiner_free(r->joining[i]);
	free(r->joining);
	chat_lines_clear(&r->unsent);
	free(r->name);
	free(r);
}

static struct room *
room_new(struct chat *c, const char *name)
{
	struct room *r = calloc(1, sizeof(*r));

	if (r == NULL || (r->name = strdup(name)) == NULL ||
	    (c->history > 0 && (r->lines = calloc((size_t)c->history,
	    sizeof(char *))) == NULL)) {
		if (r)
			free(r->name);
		free(r);
		return NULL;
	}
	r->chat = c;
	return r;
}

/* The room name of c, made if need be: NULL with *status to refuse. */
static struct room *
room_get(struct chat *c, const char *name, int *status)
{
	struct room *r;
	size_t b;

	if ((r = chat_room_find(c, name, strlen(name))) != NULL)
		return r;
	if ((long long)c->nrooms >= c->max_rooms) {
		*status = 503;
		return NULL;
	}
	if ((c->nrooms >= c->nbuckets && table_grow(c) != 0) ||
	    (r = room_new(c, name)) == NULL) {
		*status = 503;
		return NULL;
	}
	b = bucket(c, name, strlen(name));
	r->hnext = c->table[b];
	c->table[b] = r;
	c->nrooms++;
	return r;
}

/*
 * A room of a "*" route goes with its last member, once its pinger is
 * off (a cancelled timer still calls back, with r).
 */
void
chat_room_release(struct room *r)
{
	struct chat *c = r->chat;
	struct room **p;

	if (!c->per_path || r->n + r->ntagged + r->njoining > 0 || r->pinger ||
	    r->cancelling)
		return;
	for (p = &c->table[bucket(c, r->name, strlen(r->name))]; *p != r;
	    p = &(*p)->hnext)
		;
	*p = r->hnext;
	c->nrooms--;
	c->full_logged = 0;
	room_free(r);
}

/* ---- the route -------------------------------------------------------- */

static void
chat_free(struct chat *c)
{
	for (struct chat **p = &chats; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	chat_origins_free(&c->origins);
	if (c->broker) {	/* first: its callbacks find the rooms */
		chat_broker_close(c->broker);
		chat_broker_free(c->broker);
		c->broker = NULL;
	}
	if (c->only)
		room_free(c->only);
	for (size_t i = 0; i < c->nbuckets; i++)
		for (struct room *r = c->table[i], *next; r; r = next) {
			next = r->hnext;
			room_free(r);
		}
	free(c->table);
	free(c);
}

/* The options of c (the broker's aside). */
static int
read_options(struct chat *c, struct sq_opts *opts)
{
	int rc;

	rc = chat_origins_add(&c->origins,
	    sq_opt_str(opts, "allowed_origins", ""));
	if (rc == 0)
		rc = sq_opt_bool(opts, "require_origin", 0, &c->require_origin);
	if (rc == 0)
		rc = sq_opt_size(opts, "max_message_size", 64 << 10,
		    &c->max_message);
	if (rc == 0)
		rc = sq_opt_size(opts, "max_queue", 1 << 20, &c->max_queue);
	if (rc == 0)
		rc = sq_opt_int(opts, "history", 0, 0, 10000, &c->history);
	if (rc == 0)
		rc = sq_opt_int(opts, "ping_interval", 0, 0, 86400,
		    &c->ping_interval);
	if (rc == 0)
		rc = sq_opt_int(opts, "ping_timeout", 30, 1, 86400,
		    &c->ping_timeout);
	if (rc == 0 && c->per_path)
		rc = sq_opt_int(opts, "max_rooms", 10000, 1, 10000000,
		    &c->max_rooms);
	else if (rc == 0 && sq_opt_str(opts, "max_rooms", NULL) != NULL)
		rc = sq_opt_error(opts, "max_rooms", "max_rooms needs a route "
		    "whose path ends in '*' (a room per path segment)");
	/*
	 * A newcomer gets the history at once, and it counts against
	 * max_queue like any other line: it must fit, or every newcomer
	 * would be dropped as a slow reader.
	 */
	if (rc == 0 && c->history > 0 && (size_t)c->history *
	    (c->max_message + LINE_OVERHEAD) > c->max_queue)
		rc = sq_opt_error(opts, "history", "history = %lld lines of up "
		    "to max_message_size (%zu bytes) do not fit in max_queue "
		    "(%zu bytes): raise max_queue, or lower history or "
		    "max_message_size", c->history, c->max_message,
		    c->max_queue);
	return rc;
}

static int
chat_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct chat *c = calloc(1, sizeof(*c));
	const char *route = sq_inst_route(inst);
	int rc;

	if (c == NULL)
		return -ENOMEM;
	c->inst = inst;
	c->seq = c->cfg_seq = ++nchats_made;
	c->next = chats;
	chats = c;
	c->per_path = route[strlen(route) - 1] == '*';
	rc = read_options(c, opts);
	if (rc == 0 && !c->per_path && (c->only = room_new(c, "")) == NULL)
		rc = -ENOMEM;
	if (rc == 0)
		rc = chat_broker_create(c, opts, &c->broker);
	if (rc != 0) {
		chat_free(c);
		return rc;
	}
	if (c->broker) {
		(void)sq_inst_set_info(inst, "broker", "down");
		chat_broker_connect(c);
	}
	chat_set_counts(c);
	if (sq_loop_base() != NULL) {
		struct sq_stats st;

		sq_stats_get(&st, sizeof(st));
		c->reloads_ok = st.reloads_ok;
		(void)sq_timer_start(inst, 0, settle, c);
	}
	*state = c;
	return 0;
}

static void
chat_destroy(void *state)
{
	chat_free(state);
}

/* Is origin the page's own (same host as the request) or allowed? */
static int
origin_ok(struct chat *c, struct sq_ws *ws)
{
	return chat_origin_ok(&c->origins, c->require_origin,
	    sq_ws_header(ws, "Origin"), sq_ws_header(ws, "Host"));
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

/*
 * The id a returning member of CHAT_PROTOCOL last heard (?last_id=ID),
 * if it is recent enough to ask the stream for what followed: 1, or 0
 * (none given: *asked unset; too old or not an id: *asked set).
 */
static int
last_id(struct chat *c, struct sq_ws *ws, struct chat_sid *id, int *asked)
{
	const char *q = sq_ws_query(ws), *v, *end;
	long long window = chat_broker_recover_window(c->broker);
	struct timespec now;

	*asked = 0;
	if (sq_ws_protocol(ws) == NULL)
		return 0;
	for (v = q; v && *v; v = strchr(v, '&') ? strchr(v, '&') + 1 : NULL)
		if (strncmp(v, "last_id=", 8) == 0)
			break;
	if (v == NULL || *v == '\0')
		return 0;
	*asked = 1;
	v += 8;
	end = v + strcspn(v, "&");
	clock_gettime(CLOCK_REALTIME, &now);
	return window > 0 && chat_sid_parse(id, v, (size_t)(end - v)) == 0 &&
	    id->ms + (uint64_t)window * 1000 >= (uint64_t)now.tv_sec * 1000;
}

/*
 * ws joins r: a member now, or, on the broker, once its joined line is
 * back (see chat_room_admit). A newcomer hears the last `history` lines
 * first: the room's own here, or on a stream the stream's before its
 * joined line, the same on every process; a member of CHAT_PROTOCOL
 * returning with ?last_id= hears instead the lines it missed.
 */
static void
join(struct room *r, struct sq_ws *ws)
{
	struct chat *c = r->chat;
	struct broker *b = c->broker;
	int stream = chat_broker_stream(b) && chat_broker_up(b), asked, back;
	struct chat_sid last;
	struct joiner *j;
	char *line;
	size_t n;

	if (b && chat_broker_idle(b))
		chat_broker_connect(c);	/* no member: no retrying */
	if (!(back = last_id(c, ws, &last, &asked)) && asked)
		c->unrecovered++;
	else if (back && !stream)
		c->unrecovered++;	/* the stream is away */
	if (!stream)
		for (size_t i = 0; i < r->nlines; i++) {
			const char *h = r->lines[(r->first + i) %
			    (size_t)c->history];

			chat_send_line(ws, NULL, h, strlen(h));
		}
	if ((line = stamp(CHAT_JOINED, ws, NULL, 0, &n)) == NULL) {
		(void)chat_member_add(r, ws);
		return;
	}
	if (!(b && chat_broker_up(b)) ||
	    (j = chat_joiner_add(r, ws, line, n)) == NULL) {
		(void)chat_member_add(r, ws);
		(void)chat_broker_say(r, line, n);
		free(line);
		return;
	}
	if (stream) {
		j->stream = 1;
		j->recover = back;
		j->last = last;
		chat_stream_room(r);
		if (chat_stream_past(j) != 0 && j->recover) {
			j->recover = 0;
			c->unrecovered++;
		}
	}
	/*
	 * Its line comes back (or is said here at once) and admits it. One
	 * the broker dropped never comes: it joins as soon as its past is
	 * read, and hears its line last.
	 */
	if (chat_broker_say(r, line, n) == CHAT_DROPPED) {
		j->back = 1;
		j->own_at = (size_t)-1;
		chat_joiner_ready(j);
	}
	free(line);
	chat_set_counts(c);
}

static int
chat_open(void *state, struct sq_ws *ws)
{
	struct chat *c = state;
	struct room *r = c->only;
	const char *name = sq_ws_subpath(ws);
	int status = 0;

	if (c->per_path && !valid_name(name))
		return 404;	/* no such room can exist */
	if (!origin_ok(c, ws)) {
		sq_log(c->inst, SQ_LOG_WARN, "refused %s from origin %s",
		    sq_ws_client_ip(ws), sq_ws_header(ws, "Origin") ?
		    sq_ws_header(ws, "Origin") : "(none)");
		return 403;
	}
	if (c->per_path && (r = room_get(c, name, &status)) == NULL) {
		if (c->nrooms >= (size_t)c->max_rooms && !c->full_logged)
			sq_log(c->inst, SQ_LOG_WARN, "refused %s: max_rooms "
			    "(%lld) rooms are open; the next refusals are not "
			    "logged until a room closes", sq_ws_client_ip(ws),
			    c->max_rooms);
		c->full_logged |= c->nrooms >= (size_t)c->max_rooms;
		return status;
	}
	for (size_t i = 0; sq_ws_offered_protocol(ws, i) != NULL; i++)
		if (strcmp(sq_ws_offered_protocol(ws, i), CHAT_PROTOCOL) == 0)
			(void)sq_ws_select_protocol(ws, CHAT_PROTOCOL);
	if (chat_member_reserve(r, ws) != 0) {	/* so that joining cannot fail */
		chat_room_release(r);
		return 503;
	}
	sq_ws_limits(ws, c->max_message, c->max_queue);
	sq_ws_set_data(ws, r);
	c->members++;
	join(r, ws);
	chat_set_counts(c);
	return 0;
}

static void
chat_message(void *state, struct sq_ws *ws, const void *data, size_t len,
    int binary)
{
	(void)state;
	if (binary) {
		sq_ws_close(ws, 1003, "text only");
		return;
	}
	announce(sq_ws_data(ws), CHAT_SAID, ws, data, len);
}

static void
chat_close(void *state, struct sq_ws *ws, int code)
{
	struct chat *c = state;
	struct room *r = sq_ws_data(ws);

	(void)code;
	if (r == NULL)
		return;		/* refused in chat_open */
	chat_member_remove(r, ws);
	for (size_t i = 0; i < r->njoining; i++)
		if (r->joining[i]->ws == ws) {
			struct joiner *j = r->joining[i];

			chat_joiner_unlist(j);
			chat_joiner_free(j);
			break;
		}
	c->members--;
	if (r->n + r->ntagged == 0 && r->pinger && !r->cancelling) {
		r->cancelling = 1;
		sq_timer_cancel(r->pinger);	/* ping_all clears it */
	}
	announce(r, CHAT_LEFT, ws, NULL, 0);
	if (r->n + r->ntagged + r->njoining == 0)
		chat_stream_room_gone(r, NULL);
	chat_room_release(r);
	chat_set_counts(c);
}

static void
chat_handle(void *state, struct sq_req *req)
{
	(void)state;
	sq_resp_header(req, "Upgrade", "websocket");
	sq_resp_printf(req, 426, "this is a WebSocket endpoint\n");
}

SQ_PLUGIN(
	.name = "chat",
	.version = "1.1",
	.create = chat_create,
	.destroy = chat_destroy,
	.handle = chat_handle,
	.ws_open = chat_open,
	.ws_message = chat_message,
	.ws_close = chat_close,
);
