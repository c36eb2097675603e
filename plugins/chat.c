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
 * name in a hash table. With broker = redis://host:port, a room spans
 * every squalld on that Redis: chat_broker.c. chat.h is what the two
 * share.
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
static void
room_release(struct room *r)
{
	struct chat *c = r->chat;
	struct room **p;

	if (!c->per_path || r->n > 0 || r->njoining > 0 || r->pinger ||
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

static void
remember(struct room *r, const char *line)
{
	long long history = r->chat->history;
	char *copy;

	if (history <= 0 || (copy = strdup(line)) == NULL)
		return;
	if (r->nlines == (size_t)history) {
		free(r->lines[r->first]);
		r->lines[r->first] = copy;
		r->first = (r->first + 1) % (size_t)history;
	} else
		r->lines[(r->first + r->nlines++) % (size_t)history] = copy;
}

/* ---- lines with their ids ---------------------------------------------- */

int
chat_lines_add(struct lines *l, const struct chat_sid *id, const char *line,
    size_t len)
{
	struct said *v;
	char *copy;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;

		if ((v = realloc(l->v, cap * sizeof(*v))) == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	if ((copy = malloc(len)) == NULL)
		return -ENOMEM;
	memcpy(copy, line, len);
	l->v[l->n].id = *id;
	l->v[l->n].line = copy;
	l->v[l->n++].len = len;
	l->bytes += len;
	return 0;
}

void
chat_lines_clear(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].line);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int
has_id(const struct chat_sid *id)
{
	return id != NULL && (id->ms != 0 || id->seq != 0);
}

/*
 * A line as ws hears it: the line itself, or with CHAT_PROTOCOL its
 * stream id ("-" for none) and a space first. *buf holds what was made
 * (free it).
 */
static const char *
framed(const struct chat_sid *id, const char *line, size_t len, size_t *n,
    char **buf)
{
	char sid[CHAT_SID_MAX] = "-";
	size_t sl;

	if (has_id(id))
		chat_sid_format(id, sid);
	sl = strlen(sid);
	if ((*buf = malloc(sl + 1 + len)) == NULL)
		return NULL;
	memcpy(*buf, sid, sl);
	(*buf)[sl] = ' ';
	memcpy(*buf + sl + 1, line, len);
	*n = sl + 1 + len;
	return *buf;
}

static void
send_line(struct sq_ws *ws, const struct chat_sid *id, const char *line,
    size_t len)
{
	const char *f;
	char *buf = NULL;
	size_t n;

	if (sq_ws_protocol(ws) == NULL)
		sq_ws_send(ws, line, len, 0);
	else if ((f = framed(id, line, len, &n, &buf)) != NULL)
		sq_ws_send(ws, f, n, 0);
	free(buf);
}

/* ---- members ------------------------------------------------------------ */

/* Room in ws's list of r for one more: 0 or -ENOMEM. */
static int
reserve(struct room *r, struct sq_ws *ws)
{
	int tagged = sq_ws_protocol(ws) != NULL;
	struct sq_ws ***list = tagged ? &r->tagged : &r->members;
	size_t *n = tagged ? &r->ntagged : &r->n;
	size_t *cap = tagged ? &r->captagged : &r->cap;
	size_t ncap = *cap ? *cap * 2 : 4;
	struct sq_ws **m;

	if (*n < *cap)
		return 0;
	if ((m = realloc(*list, ncap * sizeof(*m))) == NULL)
		return -ENOMEM;
	*list = m;
	*cap = ncap;
	return 0;
}

static void	arm_pinger(struct room *);

/* ws becomes a member of r: 0, or -ENOMEM (it is closed). */
static int
member_add(struct room *r, struct sq_ws *ws)
{
	if (reserve(r, ws) != 0) {
		sq_ws_close(ws, 1011, "out of memory");
		return -ENOMEM;
	}
	if (sq_ws_protocol(ws) != NULL)
		r->tagged[r->ntagged++] = ws;
	else
		r->members[r->n++] = ws;
	arm_pinger(r);
	return 0;
}

static void
member_remove(struct room *r, struct sq_ws *ws)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->members[i] == ws) {
			r->members[i] = r->members[--r->n];
			return;
		}
	for (size_t i = 0; i < r->ntagged; i++)
		if (r->tagged[i] == ws) {
			r->tagged[i] = r->tagged[--r->ntagged];
			return;
		}
}

/* ---- joiners ------------------------------------------------------------ */

/*
 * j leaves its room's list: freed now, or, while Redis has yet to
 * answer for its past, orphaned, and freed by that answer.
 */
void
chat_joiner_free(struct joiner *j)
{
	if (j->asked) {
		j->room = NULL;
		j->ws = NULL;
		return;
	}
	free(j->line);
	chat_lines_clear(&j->past);
	chat_lines_clear(&j->meanwhile);
	free(j);
}

/* Takes j out of its room's list (its order kept). */
static void
joiner_unlist(struct joiner *j)
{
	struct room *r = j->room;

	for (size_t i = 0; i < r->njoining; i++)
		if (r->joining[i] == j) {
			memmove(r->joining + i, r->joining + i + 1,
			    (r->njoining - i - 1) * sizeof(*r->joining));
			r->njoining--;
			return;
		}
}

/* ws joins r, waiting for its line (copied): NULL when out of memory. */
static struct joiner *
joiner_add(struct room *r, struct sq_ws *ws, const char *line, size_t len)
{
	struct joiner *j;

	if (r->njoining == r->capjoining) {
		size_t cap = r->capjoining ? r->capjoining * 2 : 2;
		struct joiner **v = realloc(r->joining, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		r->joining = v;
		r->capjoining = cap;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->line = malloc(len)) == NULL) {
		free(j);
		return NULL;
	}
	memcpy(j->line, line, len);
	j->len = len;
	j->room = r;
	j->ws = ws;
	r->joining[r->njoining++] = j;
	return j;
}

/*
 * j becomes a member. What it hears first: the lines of its past (the
 * stream's history before its joined line, or the lines it missed),
 * then, of what the room got while it waited, those after its past, from
 * its joined line on. When its line never came back (the broker was lost,
 * or dropped it), it gets everything it has, then its line.
 */
static void
joiner_admit(struct joiner *j)
{
	struct room *r = j->room;
	struct chat *c = r->chat;
	size_t k = j->past.n, total = j->past.n, start, own = 0;
	struct said *m;

	/* M = past, then meanwhile after the past's top; k: own line in M */
	for (size_t i = 0; i < j->meanwhile.n; i++) {
		m = &j->meanwhile.v[i];
		if (j->stream && has_id(&m->id) &&
		    chat_sid_cmp(&m->id, &j->top) <= 0)
			continue;
		if (j->back && i == j->own_at) {
			k = total;
			own = 1;
		}
		total++;
	}
	if (!own)
		k = total;
	if (!j->stream)
		start = k;	/* the history came at the join */
	else if (j->recover)
		start = 0;
	else
		start = k - (k < (size_t)c->history ? k : (size_t)c->history);
	if (j->recover)
		c->replayed += k;
	for (size_t i = 0, idx = 0; i < j->past.n + j->meanwhile.n; i++) {
		m = i < j->past.n ? &j->past.v[i] :
		    &j->meanwhile.v[i - j->past.n];
		if (i >= j->past.n && j->stream && has_id(&m->id) &&
		    chat_sid_cmp(&m->id, &j->top) <= 0)
			continue;
		if (idx++ >= start)
			send_line(j->ws, &m->id, m->line, m->len);
	}
	/*
	 * Its line did not come back. The broker dropped it: it hears it
	 * now. The broker was lost: on a stream, the line comes with the
	 * others when the broker is back if it reached Redis, and is lost
	 * for everyone alike if not, so it is not said here.
	 */
	if (!own && (j->back || !j->stream))
		send_line(j->ws, NULL, j->line, j->len);
	joiner_unlist(j);
	(void)member_add(r, j->ws);
	chat_joiner_free(j);
	chat_set_counts(c);
}

/* j becomes a member once its line is back and its past read. */
void
chat_joiner_ready(struct joiner *j)
{
	if (j->room != NULL && !j->dead && j->back && !j->asked)
		joiner_admit(j);
}

/*
 * The promised order, after a room moves to another broker as at any
 * time: a member hears its own joined line first, then what was said
 * after it in the broker's order, never what was said before it (which
 * a second subscription of this process, a moved room's, may still be
 * delivering). So a newcomer waits among those joining until the broker
 * brings its joined line back: our lines reach the broker, and come
 * back, in the order we sent them, so it is the first of those joining
 * whose line this is. (Another process could send the same bytes in the
 * same second, for a client of the same address: the newcomer then
 * starts a line early, no worse.) It becomes a member at the end of
 * chat_room_deliver, which gives it this line among those it waited for.
 */
void
chat_room_admit(struct room *r, const char *line, size_t len)
{
	for (size_t i = 0; i < r->njoining; i++) {
		struct joiner *j = r->joining[i];

		if (!j->back && j->len == len &&
		    memcmp(j->line, line, len) == 0) {
			j->back = 1;
			j->own_at = j->meanwhile.n;
			return;
		}
	}
}

/*
 * The broker is gone, or the route moves: their joined lines may never
 * come back, so those joining get theirs now and become members.
 */
static void
admit_all(struct room *r, void *unused)
{
	(void)unused;
	for (size_t i = 0; i < r->njoining;)
		if (r->joining[i]->dead)
			i++;		/* its ws_close unlists it */
		else
			joiner_admit(r->joining[i]);
}

void
chat_admit_all(struct chat *c)
{
	chat_rooms_each(c, admit_all, NULL);
}

/*
 * A line for the members of this process (and its history), with its
 * stream id (NULL: none). Those joining keep it until they are members;
 * one whose past would grow beyond max_queue is closed, as a member that
 * does not read would be.
 */
void
chat_room_deliver(struct room *r, const struct chat_sid *id,
    const char *line, size_t len)
{
	static const struct chat_sid none;
	const char *f;
	char *buf = NULL;
	size_t n;

	if (id == NULL)
		id = &none;
	for (size_t i = 0; i < r->njoining; i++) {
		struct joiner *j = r->joining[i];

		if (j->dead)
			continue;	/* its ws_close unlists it */
		if (j->meanwhile.bytes + len > r->chat->max_queue) {
			sq_ws_close(j->ws, 1008, "too much to catch up on");
			j->dead = 1;
		} else if (chat_lines_add(&j->meanwhile, id, line, len) != 0) {
			sq_ws_close(j->ws, 1011, "out of memory");
			j->dead = 1;
		}
	}
	sq_ws_broadcast(r->members, r->n, line, len, 0);
	if (r->ntagged > 0 && (f = framed(id, line, len, &n, &buf)) != NULL)
		sq_ws_broadcast(r->tagged, r->ntagged, f, n, 0);
	free(buf);
	remember(r, line);
	for (size_t i = 0; i < r->njoining;) {
		struct joiner *j = r->joining[i];

		if (!j->dead && j->back && !j->asked)
			joiner_admit(j);	/* unlists it */
		else
			i++;
	}
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
	struct chat *c = r->chat;

	if (c->ping_interval <= 0 || r->n + r->ntagged == 0)
		return;
	if (r->cancelling)
		r->rearm = 1;	/* once the cancelled one has called back */
	else if (r->pinger == NULL)
		r->pinger = sq_timer_start(c->inst,
		    (uint64_t)c->ping_interval * 1000, ping_all, r);
}

static void
ping_all(int status, void *arg)
{
	struct room *r = arg;
	uint64_t timeout = (uint64_t)r->chat->ping_timeout * 1000;

	r->pinger = NULL;
	if (status != 0) {
		/* our cancel (the room emptied), or the server stopping */
		r->cancelling = 0;
		if (r->rearm) {
			r->rearm = 0;
			arm_pinger(r);
		}
		room_release(r);
		return;
	}
	for (size_t i = 0; i < r->n; i++)
		sq_ws_ping(r->members[i], timeout);
	for (size_t i = 0; i < r->ntagged; i++)
		sq_ws_ping(r->tagged[i], timeout);
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
	if (!stream)
		for (size_t i = 0; i < r->nlines; i++) {
			const char *h = r->lines[(r->first + i) %
			    (size_t)c->history];

			send_line(ws, NULL, h, strlen(h));
		}
	if ((line = stamp(CHAT_JOINED, ws, NULL, 0, &n)) == NULL) {
		(void)member_add(r, ws);
		return;
	}
	if (!(b && chat_broker_up(b)) ||
	    (j = joiner_add(r, ws, line, n)) == NULL) {
		(void)member_add(r, ws);
		(void)chat_broker_say(r, line, n);
		free(line);
		return;
	}
	if (back && !stream)
		c->unrecovered++;	/* the stream is away */
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
	if (reserve(r, ws) != 0) {	/* so that joining cannot fail */
		room_release(r);
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
	member_remove(r, ws);
	for (size_t i = 0; i < r->njoining; i++)
		if (r->joining[i]->ws == ws) {
			struct joiner *j = r->joining[i];

			joiner_unlist(j);
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
	room_release(r);
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
