/*
 * chat_stream.c - broker_mode = stream: each room is a Redis stream (the
 * route's channel as its key, or CHANNEL:NAME for a room of a route
 * ending in "*"), so that no line is lost between processes and every
 * member sees one order, the stream's.
 *
 * A line is XADDed to its room's stream (MAXLEN ~ history_max), and
 * PEXPIREd now and then (stream_ttl). Each process reads the streams of
 * the rooms it has members in with one blocking XREAD on the reader
 * connection, each from the last entry it delivered (the room's pos):
 * after a lost connection it goes on from there, and a line that Redis
 * kept is delivered late rather than never. A room made here first
 * learns where its stream ends (XREVRANGE COUNT 1); a blocked XREAD is
 * then interrupted (CLIENT UNBLOCK) so that the next one reads it too.
 * A newcomer's history, or the lines a returning member missed (its
 * ?last_id=), are read with XREVRANGE on the command connection; see
 * struct joiner for how they meet the live lines. Lines said while the
 * broker is away wait in chat_hold.c.
 *
 * Entries are checked as lines from pub/sub are: one of another shape,
 * too long or not UTF-8 is dropped and counted. One that the reply guard
 * refuses (chat_resp.c: a string of megabytes, too many fields) closes
 * the connection; the guard names the entry, and the reader steps over
 * it (reading one entry at a time to find it when it was not the first
 * of its stream), so that one bad entry cannot stop a room for good.
 *
 * A room's lines wait while its position is asked (r->unsent), so that
 * none can land before a position that a lost answer would move past
 * them. A room whose key holds something else (WRONGTYPE) is left out of
 * the reads and is local; the others go on. A READONLY (a master
 * demoted) is an outage: the refused line and those behind it wait in
 * chat_hold.c, from the first refusal, until a line is taken again.
 * Loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall/plugin.h>

#include "chat_broker.h"

#define READ_COUNT	128	/* entries of one stream per XREAD */
#define POLL_MS		"200"	/* XREAD's block without CLIENT UNBLOCK */

/* What a command's reply needs to find again: the room, by name. */
struct ask {
	struct joiner	*j;		/* past_reply */
	char		*line;		/* add_reply: the line, to say here */
	size_t		 len;
	char		 name[];	/* the room's */
};

/* The key of r's stream, in buf (CHAT_KEY_MAX). */
static size_t
room_key(const struct room *r, char *buf)
{
	const struct chat *ch = r->chat;
	int n;

	if (ch->per_path)
		n = snprintf(buf, CHAT_KEY_MAX, "%s:%s", ch->broker->channel,
		    r->name);
	else
		n = snprintf(buf, CHAT_KEY_MAX, "%s", ch->broker->channel);
	return n < 0 ? 0 : (size_t)n >= CHAT_KEY_MAX ? CHAT_KEY_MAX - 1 :
	    (size_t)n;
}

/* The room whose stream key is key, if it has members here. */
static struct room *
key_room(struct chat *ch, const char *key, size_t len)
{
	const char *base = ch->broker->channel;
	size_t blen = strlen(base);

	if (len < blen || memcmp(key, base, blen) != 0)
		return NULL;
	if (!ch->per_path)
		return len == blen ? chat_room_find(ch, NULL, 0) : NULL;
	if (len <= blen + 1 || key[blen] != ':')
		return NULL;
	return chat_room_find(ch, key + blen + 1, len - blen - 1);
}

static int
room_busy(const struct room *r)
{
	return r->n + r->ntagged + r->njoining > 0;
}

static struct ask *
ask_new(const struct room *r)
{
	size_t n = strlen(r->name);
	struct ask *a = calloc(1, sizeof(*a) + n + 1);

	if (a != NULL)
		memcpy(a->name, r->name, n + 1);
	return a;
}

static void
ask_free(struct ask *a)
{
	if (a != NULL)
		free(a->line);
	free(a);
}

static struct room *
ask_room(struct chat *ch, const struct ask *a)
{
	return chat_room_find(ch, a->name, strlen(a->name));
}

/* Sends a command on the command connection: 0, or -EIO. */
static int
command(struct chat *ch, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *lens)
{
	redisAsyncContext *ac = ch->broker->pub;

	if (ac == NULL || redisAsyncCommandArgv(ac, fn, priv, argc, argv,
	    lens) != REDIS_OK)
		return -EIO;
	chat_resp_sent(chat_broker_guard(ac));
	return 0;
}

/*
 * The command connection refused an answer inside an entry: the first
 * of the callbacks hiredis runs empty-handed is that answer's, and its
 * room reads its past after that entry from now on.
 */
static void
poisoned_past(const redisAsyncContext *ac, struct room *r)
{
	struct chat_resp *g = chat_broker_guard(ac);
	struct chat_sid id;

	/* the answer was this callback's even when its room is gone: the
	 * flag must not pass to the next one, another room's */
	if (!g->poisoned)
		return;
	g->poisoned = 0;
	if (r == NULL || chat_sid_parse(&id, g->id, strlen(g->id)) != 0)
		return;
	if (chat_sid_cmp(&id, &r->floor) > 0)
		r->floor = id;
	chat_broker_invalid(r->chat, 0, "an entry the reply guard refused");
}

/* The entries of a reply, each [id, [field, value...]]: its line, or NULL. */
static const char *
entry_line(struct chat *ch, const redisReply *e, struct chat_sid *id,
    size_t *len, int count)
{
	const redisReply *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    chat_sid_parse(id, e->element[0]->str,
	    e->element[0]->len) != 0)
		return NULL;	/* not what Redis sends: the guard saw to it */
	f = e->element[1];
	if (f->type != REDIS_REPLY_ARRAY || f->elements != 2 ||
	    f->element[0]->type != REDIS_REPLY_STRING ||
	    f->element[0]->len != 4 || memcmp(f->element[0]->str, "line", 4) ||
	    f->element[1]->type != REDIS_REPLY_STRING) {
		if (count)
			chat_broker_invalid(ch, 0, "an entry that is not one "
			    "field \"line\"");
		return NULL;
	}
	*len = f->element[1]->len;
	return f->element[1]->str;
}

/* ---- where a room's stream ends ---------------------------------------- */

/* Is r's floor the largest id there is (nothing can come after it)? */
static int
floor_is_last(const struct room *r)
{
	return r->floor.ms == UINT64_MAX && r->floor.seq == UINT64_MAX;
}

/*
 * XREVRANGE KEY + MIN COUNT n, MIN after r's floor: 0, -EIO, or -ERANGE
 * when the floor is the largest id (an entry someone added with it,
 * refused and stepped over: nothing can follow it, so nothing is asked).
 */
static int
revrange(struct room *r, long long n, redisCallbackFn *fn, void *priv)
{
	char key[CHAT_KEY_MAX], min[CHAT_SID_MAX], count[24];
	struct chat_sid after = r->floor;
	const char *argv[6];
	size_t lens[6];

	if (floor_is_last(r))
		return -ERANGE;
	if (after.ms || after.seq) {
		if (++after.seq == 0)
			after.ms++;
		chat_sid_format(&after, min);
	} else
		strcpy(min, "-");
	snprintf(count, sizeof(count), "%lld", n);
	argv[0] = "XREVRANGE";
	argv[1] = key;
	lens[1] = room_key(r, key);
	argv[2] = "+";
	argv[3] = min;
	argv[4] = "COUNT";
	argv[5] = count;
	for (int i = 0; i < 6; i++)
		if (i != 1)
			lens[i] = strlen(argv[i]);
	return command(r->chat, fn, priv, 6, argv, lens);
}

static void	read_more(struct chat *);
static void	send_unsent(struct room *);

/*
 * An error about a key rather than the connection: WRONGTYPE (the key
 * holds something else than a stream), or another command's refusal of
 * the key. Connection-wide ones (READONLY, NOAUTH, LOADING...) are not.
 */
static int
key_error(const char *err)
{
	return strncmp(err, "WRONGTYPE", 9) == 0;
}

/*
 * Redis refuses r's stream (its key holds something else): r is read no
 * more and its lines, which Redis refuses too, are said here only, until
 * the room empties or the broker comes back. Said once in the log.
 */
static void
room_broken(struct room *r, const char *why)
{
	struct chat *ch = r->chat;
	char key[CHAT_KEY_MAX];

	r->broken = 1;
	r->pos_known = 0;
	room_key(r, key);
	sq_log(ch->inst, SQ_LOG_WARN, "broker %s refused the stream %s (%s): "
	    "the room is local until it empties or the broker returns",
	    ch->broker->url, key, why);
}

static void
load_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ask *a = priv;
	struct chat *ch = chat_broker_owner(ac), *any = ac->data;
	struct room *r = any && any->broker ? ask_room(any, a) : NULL;
	redisReply *rep = reply, *e;
	struct chat_sid id;

	ask_free(a);
	if (r != NULL)
		r->loading = 0;
	if (rep == NULL)
		poisoned_past(ac, r);
	if (ch == NULL || r == NULL || rep == NULL || r->pos_known ||
	    !room_busy(r))
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		if (key_error(rep->str)) {
			room_broken(r, rep->str);
			send_unsent(r);		/* refused: said here */
		} else
			chat_broker_down(ch, NULL, rep->str);
		return;
	}
	r->pos = r->floor;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
	    (e = rep->element[0])->type == REDIS_REPLY_ARRAY &&
	    e->elements == 2 && e->element[0]->type == REDIS_REPLY_STRING &&
	    chat_sid_parse(&id, e->element[0]->str, e->element[0]->len) == 0 &&
	    chat_sid_cmp(&id, &r->pos) > 0)
		r->pos = id;
	r->pos_known = 1;
	send_unsent(r);
	read_more(ch);
}

/*
 * r has members here: once its position is known, the reader reads it.
 * Asked once; the answer comes before any later command's.
 */
void
chat_stream_room(struct room *r)
{
	struct broker *b = r->chat->broker;
	struct ask *a;

	if (b == NULL || !b->stream || !b->up || r->pos_known || r->loading ||
	    r->broken)
		return;
	if (floor_is_last(r)) {
		r->pos = r->floor;	/* nothing can come after it */
		r->pos_known = 1;
		return;
	}
	if ((a = ask_new(r)) == NULL)
		return;
	if (revrange(r, 1, load_reply, a) != 0) {
		ask_free(a);
		return;
	}
	r->loading = 1;
}

/*
 * The room emptied, or moved to another stream: the next member starts
 * from the stream's end.
 */
void
chat_stream_room_gone(struct room *r, void *unused)
{
	(void)unused;
	if (r->unsent.n > 0 && r->chat->broker != NULL)
		send_unsent(r);	/* its last lines: no position needed */
	r->pos_known = 0;
	r->broken = 0;
	r->floor.ms = r->floor.seq = 0;
}

/* ---- a joiner's past ---------------------------------------------------- */

/*
 * What the first n entries of an XREVRANGE answer weigh in frames: a
 * returning member's gap. One over half of max_queue is not replayed
 * (the core would drop the member for it, and it would come back with
 * the same id): it gets the newcomer's history instead.
 */
static size_t
gap_bytes(const redisReply *rep, size_t n)
{
	size_t bytes = 0;

	for (size_t i = 0; i < n; i++) {
		const redisReply *e = rep->element[i];

		if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
		    e->element[1]->type == REDIS_REPLY_ARRAY &&
		    e->element[1]->elements == 2)
			bytes += e->element[1]->element[1]->len + CHAT_SID_MAX;
	}
	return bytes;
}

static void
past_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct joiner *j = priv;
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply;
	struct chat_sid id;
	const char *line;
	size_t len, from, keep;
	long long history;

	j->asked = 0;
	if (rep == NULL)
		poisoned_past(ac, j->room);
	if (j->room == NULL) {
		chat_joiner_free(j);	/* its client left meanwhile */
		return;
	}
	if (ch == NULL || rep == NULL)
		return;		/* the broker's loss admits it */
	history = ch->history;
	j->top = j->room->floor;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
		if (j->recover) {
			ch->unrecovered++;
			j->recover = 0;
		}
		chat_joiner_ready(j);
		return;
	}
	/* newest first: the top, and where the member's last line is */
	from = rep->elements;
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    chat_sid_parse(&id, e->element[0]->str,
		    e->element[0]->len) != 0)
			continue;
		if (i == 0)
			j->top = id;
		if (j->recover && chat_sid_cmp(&id, &j->last) == 0) {
			from = i;
			break;
		}
	}
	if (j->recover && from == rep->elements) {
		ch->unrecovered++;	/* trimmed away, or never there */
		j->recover = 0;
	}
	if (j->recover && gap_bytes(rep, from) > ch->max_queue / 2) {
		ch->unrecovered++;	/* it would be dropped for it */
		j->recover = 0;
	}
	if (j->recover) {
		ch->recovered++;
		keep = from;
	} else
		keep = (size_t)history < rep->elements ? (size_t)history :
		    rep->elements;
	for (size_t i = keep; i-- > 0;) {
		if ((line = entry_line(ch, rep->element[i], &id, &len, 0)) ==
		    NULL || chat_line_check(line, len, ch->max_message +
		    LINE_OVERHEAD) != NULL)
			continue;	/* counted when it was read live */
		if (chat_lines_add(&j->past, &id, line, len) != 0)
			break;
	}
	chat_set_counts(ch);
	chat_joiner_ready(j);
}

/*
 * Asks for what j is to hear before its joined line: the last `history`
 * lines, or with a recovery, up to history_max lines to find its last
 * one in. Nothing to ask: 0 with j->asked unset. -EIO when it could not
 * be sent.
 */
int
chat_stream_past(struct joiner *j)
{
	struct room *r = j->room;
	struct chat *ch = r->chat;
	long long n = j->recover ? ch->broker->history_max : ch->history;
	int rc;

	if (n <= 0 || r->broken)
		return 0;
	if ((rc = revrange(r, n, past_reply, j)) == -ERANGE)
		return 0;
	if (rc != 0)
		return -EIO;
	j->asked = 1;
	return 0;
}

/* ---- adding lines ------------------------------------------------------- */

static void
ignore_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)ac;
	(void)reply;
	(void)priv;
}

/* A line of r's waits for the broker, or, too long away, is said here. */
static void
hold_or_say(struct room *r, const char *line, size_t len)
{
	if (!chat_hold_line(r, line, len))
		chat_room_hear(r, NULL, line, len);
}

/* The same for the line of a refused XADD. */
static void
hold_or_say_ask(struct chat *ch, struct ask *a)
{
	struct room *r = ask_room(ch, a);

	if (r != NULL)
		hold_or_say(r, a->line, a->len);
	ask_free(a);
}

/*
 * Redis refused a line (OOM, or the key holds something else): it is
 * said here only, as when the broker is away; and said once in the log
 * for each run of refusals.
 */
static void
add_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ask *a = priv;
	struct chat *ch = chat_broker_owner(ac), *any = ac->data;
	redisReply *rep = reply;
	struct broker *b;
	struct room *r;

	if (rep == NULL && any != NULL && any->broker != NULL &&
	    any->broker->readonly_ac == ac) {
		/* behind a READONLY on this connection: refused as well, so
		 * not added; it waits for the new master like that one */
		hold_or_say_ask(any, a);
		return;
	}
	if (ch == NULL || rep == NULL) {
		ask_free(a);
		return;
	}
	b = ch->broker;
	if (b->pending > 0)
		b->pending--;
	b->pending_bytes -= a->len < b->pending_bytes ? a->len :
	    b->pending_bytes;
	if (rep->type != REDIS_REPLY_ERROR) {
		if (b->readonly) {
			b->readonly = 0;
			b->down_logged = 0;
			b->backoff_ms = RETRY_MIN_MS;
			sq_log(ch->inst, SQ_LOG_INFO, "broker %s back: it takes "
			    "lines again", b->url);
		}
		if (b->add_logged)
			sq_log(ch->inst, SQ_LOG_INFO, "broker %s takes lines "
			    "again (%llu refused so far)", b->url,
			    b->refused_adds);
		b->add_logged = 0;
		ask_free(a);
		return;
	}
	if (strncmp(rep->str, "READONLY", 8) == 0) {
		/* a master demoted under us: the next attempt finds the new
		 * one (with a Sentinel), and the line waits for it, with
		 * those sent after it on this connection (their answers,
		 * lost with it, come next) */
		b->readonly_ac = ac;
		b->readonly = 1;
		chat_broker_down(ch, NULL, rep->str);
		hold_or_say_ask(ch, a);
		return;
	}
	b->refused_adds++;
	if (!b->add_logged)
		sq_log(ch->inst, SQ_LOG_WARN, "broker %s refused a line (%s): "
		    "lines reach this process's members only until it takes "
		    "them again (%llu refused so far)", b->url, rep->str,
		    b->refused_adds);
	b->add_logged = 1;
	if ((r = ask_room(ch, a)) != NULL)
		chat_room_hear(r, NULL, a->line, a->len);
	ask_free(a);
}

/* The stream expires stream_ttl after its last line, give or take 1/8. */
static void
renew_ttl(struct room *r, const char *key, size_t klen)
{
	struct broker *b = r->chat->broker;
	uint64_t now = chat_now_ms();
	char ms[24];
	const char *argv[3] = { "PEXPIRE", key, ms };
	size_t lens[3] = { 7, klen, 0 };

	if (b->stream_ttl <= 0)
		return;
	if (now < r->ttl_due)
		return;
	lens[2] = (size_t)snprintf(ms, sizeof(ms), "%lld",
	    b->stream_ttl * 1000);
	if (command(r->chat, ignore_reply, NULL, 3, argv, lens) == 0)
		r->ttl_due = now + (uint64_t)b->stream_ttl * 125;
}

/* XADDs line to room `name` of ch (r: the room, if here): 0 or -EIO. */
static int
xadd(struct chat *ch, const char *name, struct room *r, const char *line,
    size_t len)
{
	struct broker *b = ch->broker;
	char key[CHAT_KEY_MAX], max[24];
	const char *argv[8];
	size_t lens[8], klen, nlen = strlen(name);
	struct ask *a;

	if ((a = calloc(1, sizeof(*a) + nlen + 1)) == NULL ||
	    (a->line = malloc(len)) == NULL) {
		ask_free(a);
		return -ENOMEM;
	}
	memcpy(a->name, name, nlen + 1);
	memcpy(a->line, line, len);
	a->len = len;
	if (ch->per_path)
		klen = (size_t)snprintf(key, sizeof(key), "%s:%s", b->channel,
		    name);
	else
		klen = (size_t)snprintf(key, sizeof(key), "%s", b->channel);
	if (klen >= sizeof(key))
		klen = sizeof(key) - 1;
	snprintf(max, sizeof(max), "%lld", b->history_max);
	argv[0] = "XADD";
	argv[1] = key;
	argv[2] = "MAXLEN";
	argv[3] = "~";
	argv[4] = max;
	argv[5] = "*";
	argv[6] = "line";
	argv[7] = line;		/* not NUL-ended */
	for (int i = 0; i < 7; i++)
		lens[i] = strlen(argv[i]);
	lens[1] = klen;
	lens[7] = len;
	if (command(ch, add_reply, a, 8, argv, lens) != 0) {
		ask_free(a);
		return -EIO;
	}
	b->pending++;
	b->pending_bytes += len;
	if (r != NULL)
		renew_ttl(r, key, klen);
	return 0;
}

/*
 * Adds line to room `name` of ch (r: the room, if here): 0, or -EIO or
 * -ENOMEM. While r's position is being asked, the line waits for the
 * answer (r->unsent): sent with the question, it would be in the stream
 * before the answer, and if the connection broke between the two, the
 * position asked again would be after it, and this process would never
 * read it.
 */
int
chat_stream_add_to(struct chat *ch, const char *name, struct room *r,
    const char *line, size_t len)
{
	if (r != NULL && r->loading && !r->pos_known) {
		static const struct chat_sid none;

		if (chat_lines_add(&r->unsent, &none, line, len) != 0)
			return -ENOMEM;
		ch->broker->pending++;	/* as if sent: the same limits */
		ch->broker->pending_bytes += len;
		return 0;
	}
	return xadd(ch, name, r, line, len);
}

/*
 * r's lines that waited for its position: sent now (the position is
 * known, or the room is empty and needs none), or, when they cannot be,
 * held for the broker or said here, as any line said while it is away.
 */
static void
send_unsent(struct room *r)
{
	struct chat *ch = r->chat;
	struct lines l = r->unsent;
	int sent = ch->broker->up;

	memset(&r->unsent, 0, sizeof(r->unsent));
	for (size_t i = 0; i < l.n; i++) {
		struct said *m = &l.v[i];
		struct broker *b = ch->broker;

		if (b->pending > 0)
			b->pending--;
		b->pending_bytes -= m->len < b->pending_bytes ? m->len :
		    b->pending_bytes;
		if (sent && xadd(ch, r->name, r, m->line, m->len) == 0)
			continue;
		sent = 0;
		hold_or_say(r, m->line, m->len);
	}
	chat_lines_clear(&l);
}

/*
 * XADDs a line of r's: 1 when sent (it comes back through the reader),
 * 0 when not (the caller says it here).
 */
int
chat_stream_add(struct room *r, const char *line, size_t len)
{
	return chat_stream_add_to(r->chat, r->name, r, line, len) == 0;
}

/* ---- reading ------------------------------------------------------------ */

/* One entry of r's stream, as XREAD brings it. */
static void
entry(struct chat *ch, struct room *r, const redisReply *e)
{
	struct chat_sid id;
	const char *line;
	size_t len;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    chat_sid_parse(&id, e->element[0]->str, e->element[0]->len) != 0)
		return;
	if (r == NULL || !r->pos_known || chat_sid_cmp(&id, &r->pos) <= 0)
		return;		/* nobody's here, or had already */
	r->pos = id;
	if ((line = entry_line(ch, e, &id, &len, 1)) != NULL)
		chat_broker_line(ch, r, &id, line, len);
	else
		chat_room_caught_up(r);	/* a joiner may wait for pos */
}

/*
 * The reader refused an answer inside an entry: when it was the first
 * of its stream, the room's position steps over it; otherwise entries
 * before it were good, and the next reads take one entry at a time
 * until the bad one is the first.
 */
static void
poisoned_read(struct chat *ch, const redisAsyncContext *ac)
{
	struct chat_resp *g = chat_broker_guard(ac);
	struct room *r;
	struct chat_sid id;

	if (!g->poisoned)
		return;
	g->poisoned = 0;
	r = key_room(ch, g->key, strlen(g->key));
	if (r == NULL || !r->pos_known ||
	    chat_sid_parse(&id, g->id, strlen(g->id)) != 0)
		return;
	if (g->entry_idx == 0 || ch->broker->careful) {
		if (chat_sid_cmp(&id, &r->pos) > 0)
			r->pos = id;
		ch->broker->careful = 0;
		chat_broker_invalid(ch, 0, "an entry the reply guard refused");
		chat_room_caught_up(r);
	} else	/* it is among the next READ_COUNT - 1 of its stream */
		ch->broker->careful = READ_COUNT;
}

static void
type_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ask *a = priv;
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply;
	struct room *r;

	if (ch != NULL && rep != NULL && (r = ask_room(ch, a)) != NULL &&
	    rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "stream") &&
	    strcmp(rep->str, "none"))
		room_broken(r, "WRONGTYPE: it holds a Redis type of its own");
	ask_free(a);
	if (ch != NULL && rep != NULL && ch->broker->checking > 0 &&
	    --ch->broker->checking == 0)
		read_more(ch);
}

static void
check_key(struct room *r, void *arg)
{
	struct chat *ch = arg;
	char key[CHAT_KEY_MAX];
	const char *argv[2] = { "TYPE", key };
	size_t lens[2] = { 4, 0 };
	struct ask *a;

	if (!r->pos_known || !room_busy(r) || (a = ask_new(r)) == NULL)
		return;
	lens[1] = room_key(r, key);
	if (command(ch, type_reply, a, 2, argv, lens) != 0) {
		ask_free(a);
		return;
	}
	ch->broker->checking++;
}

/*
 * XREAD was refused for one of its keys (WRONGTYPE: someone wrote
 * something else there): each room read asks its key's TYPE, those that
 * hold something else are left out (room_broken), and the reads go on
 * for the others once every answer is in.
 */
static void
check_keys(struct chat *ch, const char *why)
{
	ch->broker->checking = 0;
	chat_rooms_each(ch, check_key, ch);
	if (ch->broker->checking == 0)
		chat_broker_down(ch, NULL, why);	/* none could be asked */
}

static void
read_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply;

	(void)priv;
	if (rep == NULL) {
		/* closed: by hiredis, or by us for a reply refused early */
		if (ac->data != NULL && ((struct chat *)ac->data)->broker)
			poisoned_read(ac->data, ac);
		return;
	}
	if (ch == NULL)
		return;
	ch->broker->reading = 0;
	if (rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "UNBLOCKED", 9) == 0) {
		/* the instance changed role (a master made a replica): it
		 * still reads, and writes find out for themselves */
		read_more(ch);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		if (key_error(rep->str))
			check_keys(ch, rep->str);
		else
			chat_broker_down(ch, NULL, rep->str);
		return;
	}
	if (rep->type == REDIS_REPLY_ARRAY) {
		/* one entry a stream at a time, until the refused one is the
		 * first (poisoned_read steps over it), READ_COUNT reads at most */
		if (ch->broker->careful > 0)
			ch->broker->careful--;
		for (size_t i = 0; i < rep->elements; i++) {
			const redisReply *s = rep->element[i], *es;
			struct room *r;

			if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
				continue;
			r = key_room(ch, s->element[0]->str,
			    s->element[0]->len);
			es = s->element[1];
			for (size_t k = 0; k < es->elements; k++) {
				entry(ch, r, es->element[k]);
				/* a delivery may have emptied the room */
				r = key_room(ch, s->element[0]->str,
				    s->element[0]->len);
			}
		}
	}
	if (ch->broker != NULL && ch->broker->up)
		read_more(ch);
}

static void
count_readable(struct room *r, void *arg)
{
	*(size_t *)arg += r->pos_known && room_busy(r);
}

/* XREAD's arguments, filled room by room: key k at 6 + k, its id at
 * 6 + n + k, both written at p. */
struct read_args {
	const char	**argv;
	size_t		 *lens;
	char		 *p;
	size_t		  n, k;
};

static void
add_readable(struct room *r, void *arg)
{
	struct read_args *a = arg;

	if (!r->pos_known || !room_busy(r) || a->k == a->n)
		return;
	a->argv[6 + a->k] = a->p;
	a->lens[6 + a->k] = room_key(r, a->p);
	a->p += a->lens[6 + a->k] + 1;
	a->argv[6 + a->n + a->k] = a->p;
	chat_sid_format(&r->pos, a->p);
	a->lens[6 + a->n + a->k] = strlen(a->p);
	a->p += a->lens[6 + a->n + a->k] + 1;
	a->k++;
}

/*
 * XREAD COUNT n BLOCK 0 STREAMS key... pos... over the rooms that have
 * members here and a known position. With one out, a room that became
 * readable interrupts it (CLIENT UNBLOCK from the command connection),
 * and its answer, empty, sends the next one.
 */
static void
read_more(struct chat *ch)
{
	struct broker *b = ch->broker;
	size_t n = 0, argc;
	struct read_args args;
	const char **argv;
	size_t *lens;
	char *buf;
	int rc;

	if (b == NULL || !b->stream || !b->up || b->sub == NULL ||
	    b->checking > 0)
		return;
	if (b->reading) {
		char id[24];
		const char *uv[3] = { "CLIENT", "UNBLOCK", id };
		size_t ul[3] = { 6, 7, 0 };

		if (b->unblocking || b->reader_id < 0)
			return;
		ul[2] = (size_t)snprintf(id, sizeof(id), "%lld", b->reader_id);
		if (command(ch, ignore_reply, NULL, 3, uv, ul) == 0)
			b->unblocking = 1;
		return;
	}
	chat_rooms_each(ch, count_readable, &n);
	if (n == 0)
		return;
	argc = 7 + 2 * n;
	argv = calloc(argc, sizeof(*argv));
	lens = calloc(argc, sizeof(*lens));
	buf = malloc(n * (CHAT_KEY_MAX + CHAT_SID_MAX) + 16);
	if (argv == NULL || lens == NULL || buf == NULL) {
		free(argv);
		free(lens);
		free(buf);
		return;
	}
	argv[0] = "XREAD";
	argv[1] = "COUNT";
	argv[2] = b->careful ? "1" : "128";
	argv[3] = "BLOCK";
	argv[4] = b->reader_id < 0 ? POLL_MS : "0";
	argv[5] = "STREAMS";
	for (int i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	args.argv = argv;
	args.lens = lens;
	args.p = buf;
	args.n = n;
	args.k = 0;
	chat_rooms_each(ch, add_readable, &args);
	argc = 6 + 2 * n;
	rc = redisAsyncCommandArgv(b->sub, read_reply, NULL, (int)argc, argv,
	    lens);
	free(argv);
	free(lens);
	free(buf);
	if (rc != REDIS_OK) {
		chat_broker_down(ch, NULL, "cannot send XREAD");
		return;
	}
	chat_resp_sent(chat_broker_guard(b->sub));
	chat_broker_guard(b->sub)->streams = n;
	chat_broker_guard(b->sub)->count = b->careful ? 1 : READ_COUNT;
	b->reading = 1;
	b->unblocking = 0;
}

/* ---- the reader's connection ------------------------------------------- */

static void
id_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply;
	struct broker *b;

	(void)priv;
	if (ch == NULL || rep == NULL)
		return;
	b = ch->broker;
	if (rep->type == REDIS_REPLY_INTEGER)
		b->reader_id = rep->integer;
	else {
		if (b->reader_id != -1)
			sq_log(ch->inst, SQ_LOG_WARN, "broker %s: CLIENT ID "
			    "refused (%s): a new room's lines are read within "
			    POLL_MS " ms", b->url, rep->type ==
			    REDIS_REPLY_ERROR ? rep->str : "no integer");
		b->reader_id = -1;
	}
	b->sub_ready = 1;
	chat_broker_ready(ch);
}

/* The reader is connected (AUTH passed): it asks who it is. */
void
chat_stream_start(struct chat *ch)
{
	struct broker *b = ch->broker;

	if (redisAsyncCommand(b->sub, id_reply, NULL, "CLIENT ID") !=
	    REDIS_OK) {
		chat_broker_down(ch, NULL, "cannot send CLIENT ID");
		return;
	}
	chat_resp_sent(chat_broker_guard(b->sub));
}

static void
resume_room(struct room *r, void *unused)
{
	(void)unused;
	r->broken = 0;		/* asked again */
	if (room_busy(r))
		chat_stream_room(r);
}

/* Up again: each room goes on from its position, or learns one. */
void
chat_stream_resume(struct chat *ch)
{
	ch->broker->readonly_ac = NULL;
	chat_rooms_each(ch, resume_room, NULL);
	read_more(ch);
	chat_hold_send(ch);
}

static void
unload_room(struct room *r, void *unused)
{
	(void)unused;
	r->loading = 0;
	if (r->unsent.n > 0)
		send_unsent(r);		/* the broker is down: held */
}

/* Down: what was asked is lost with the connections. */
void
chat_stream_down(struct chat *ch)
{
	ch->broker->reading = ch->broker->unblocking = 0;
	ch->broker->checking = 0;
	chat_rooms_each(ch, unload_room, NULL);
}
