/*
 * chat_room.c - who in a room hears what, in which order: its members
 * (plain, or of CHAT_PROTOCOL, whose frames carry each line's stream id),
 * those joining and when they become members (struct joiner), the
 * delivery of a line and the room's own history, and its pings. The
 * rooms themselves, their table and the plugin's callbacks are chat.c's.
 * Loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

#include "chat.h"

/* line (len bytes, not NUL-ended) joins r's history ring. */
static void
remember(struct room *r, const char *line, size_t len)
{
	long long history = r->chat->history;
	char *copy;

	if (history <= 0 || (copy = malloc(len + 1)) == NULL)
		return;
	memcpy(copy, line, len);
	copy[len] = '\0';
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

void
chat_send_line(struct sq_ws *ws, const struct chat_sid *id, const char *line,
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
int
chat_member_reserve(struct room *r, struct sq_ws *ws)
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

/* ws becomes a member of r: 0, or -ENOMEM (it is closed). */
int
chat_member_add(struct room *r, struct sq_ws *ws)
{
	if (chat_member_reserve(r, ws) != 0) {
		sq_ws_close(ws, 1011, "out of memory");
		return -ENOMEM;
	}
	if (sq_ws_protocol(ws) != NULL)
		r->tagged[r->ntagged++] = ws;
	else
		r->members[r->n++] = ws;
	chat_arm_pinger(r);
	return 0;
}

void
chat_member_remove(struct room *r, struct sq_ws *ws)
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
void
chat_joiner_unlist(struct joiner *j)
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
struct joiner *
chat_joiner_add(struct room *r, struct sq_ws *ws, const char *line, size_t len)
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

/* A line j got meanwhile that its past already holds. */
static int
in_past(const struct joiner *j, const struct said *m)
{
	return j->stream && has_id(&m->id) &&
	    chat_sid_cmp(&m->id, &j->top) <= 0;
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
		if (in_past(j, m))
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
		if (i >= j->past.n && in_past(j, m))
			continue;
		if (idx++ >= start)
			chat_send_line(j->ws, &m->id, m->line, m->len);
	}
	/*
	 * Its line did not come back. The broker dropped it: it hears it
	 * now. The broker was lost: on a stream, the line comes with the
	 * others when the broker is back if it reached Redis, and is lost
	 * for everyone alike if not, so it is not said here.
	 */
	if (!own && (j->back || !j->stream))
		chat_send_line(j->ws, NULL, j->line, j->len);
	chat_joiner_unlist(j);
	(void)chat_member_add(r, j->ws);
	chat_joiner_free(j);
	chat_set_counts(c);
}

/*
 * Can j become a member: its line back, its past read, and, on a
 * stream, the room's reader at or past the top of that past? A joiner
 * whose line never came back (dropped, or Redis refused it) is let in
 * early, and its past may end ahead of what the reader has delivered:
 * the entries between would come to it twice (in its past, then live),
 * and, when its past is history, after lines older than its history. So
 * it waits for the reader; what the reader brings meanwhile up to the
 * top, its past already holds (in_past).
 */
static int
joiner_due(const struct joiner *j)
{
	const struct room *r = j->room;

	return r != NULL && !j->dead && j->back && !j->asked &&
	    (!j->stream || !r->pos_known ||
	    chat_sid_cmp(&r->pos, &j->top) >= 0);
}

/* j becomes a member once due. */
void
chat_joiner_ready(struct joiner *j)
{
	if (joiner_due(j))
		joiner_admit(j);
}

/* The reader moved r's position (maybe over entries it did not deliver):
 * those joining who waited for it become members. */
void
chat_room_caught_up(struct room *r)
{
	for (size_t i = 0; i < r->njoining;)
		if (joiner_due(r->joining[i]))
			joiner_admit(r->joining[i]);	/* unlists it */
		else
			i++;
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
static void
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
 * A line for r's members (id: its stream id, or NULL), from the broker
 * or said here when the broker could not take it: those joining who
 * wait for it are admitted, then it is delivered.
 */
void
chat_room_hear(struct room *r, const struct chat_sid *id, const char *line,
    size_t len)
{
	chat_room_admit(r, line, len);
	chat_room_deliver(r, id, line, len);
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
		if (!j->asked && j->stream && has_id(id) &&
		    chat_sid_cmp(id, &j->top) <= 0)
			continue;	/* its past holds it */
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
	remember(r, line, len);
	chat_room_caught_up(r);
}

static void ping_all(int status, void *arg);

/*
 * Pings every member each ping_interval; one that does not answer within
 * ping_timeout is dropped by the core (and leaves the room). The timer
 * runs only while the room has members: a pending timer keeps the
 * instance alive, and an empty room must be free to go after a reload.
 */
void
chat_arm_pinger(struct room *r)
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
			chat_arm_pinger(r);
		}
		chat_room_release(r);
		return;
	}
	for (size_t i = 0; i < r->n; i++)
		sq_ws_ping(r->members[i], timeout);
	for (size_t i = 0; i < r->ntagged; i++)
		sq_ws_ping(r->tagged[i], timeout);
	chat_arm_pinger(r);
}

