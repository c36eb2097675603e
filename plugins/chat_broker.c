/*
 * chat_broker.c - a chat route's Redis broker: with broker =
 * redis://host:port (or unix:/path), each room spans every squalld on
 * that Redis. This file owns the two connections, their coming up, their
 * loss and the backoff, and the check of every line Redis brings (the
 * settings, and the reload that changes them, are chat_config.c's; a
 * Sentinel is chat_sentinel.c's); how lines travel is the
 * mode's: PUBLISH and a subscription (chat_pubsub.c, the default) or a
 * stream per room (chat_stream.c, broker_mode = stream). The client is
 * hiredis on the server's loop, its events watched through sq_io (so a
 * fault under them names this plugin): no thread, no blocking call. Its
 * readers build only the replies the plugin can be sent (chat_resp.c):
 * any other shape closes the connection, logged, rather than tripping
 * hiredis's asserts. While the broker is unreachable the room is local:
 * lines go straight to local members. What comes from the broker is
 * checked before anyone gets it: any client of that Redis may publish on
 * the channel, or add to the stream. Loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall/plugin.h>

#include "chat_broker.h"

/*
 * The longest wait before connecting again, and how long a connection
 * may take to be up (connected, AUTH passed, SUBSCRIBE confirmed).
 */
#define RETRY_MAX_MS	5000
#define CONNECT_MS	2000

/*
 * hiredis's event hooks for one connection, on the loop through sq_io,
 * and the guard of what its reader builds. Freed by hiredis (cleanup)
 * with the connection.
 */
struct conn {
	redisAsyncContext	*ac;
	struct sq_io		*io;
	struct chat_resp	 guard;
};

uint64_t
chat_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drop the connections; their callbacks then find nothing of ours. */
void
chat_broker_close(struct broker *b)
{
	redisAsyncContext *sub = b->sub, *pub = b->pub, *sen = b->sen;

	b->sub = b->pub = b->sen = NULL;
	b->sub_ready = b->pub_ready = b->up = 0;
	b->pending = b->pending_bytes = 0;
	b->resolved = 0;	/* a Sentinel is asked again */
	if (sub)
		redisAsyncFree(sub);
	if (pub)
		redisAsyncFree(pub);
	if (sen)
		redisAsyncFree(sen);
}

/*
 * The timers of a broker are never cancelled: they find what is there
 * when they fire (a reload may have moved the room to another broker,
 * or to none).
 */
static void
retry_cb(int status, void *arg)
{
	struct chat *ch = arg;

	if (ch->broker == NULL)
		return;
	ch->broker->retry = NULL;
	if (status == 0)
		chat_broker_connect(ch);
}

/*
 * Try again later, doubling the delay up to RETRY_MAX_MS. An empty room
 * does not retry: a pending timer would keep an instance that a reload
 * removed alive; the next member to join reconnects instead.
 */
static void
schedule_retry(struct chat *ch)
{
	struct broker *b = ch->broker;

	if (b->retry != NULL)
		return;
	if (ch->members == 0 || (b->retry = sq_timer_start(ch->inst, b->backoff_ms,
	    retry_cb, ch)) == NULL) {
		b->idle = 1;
		return;
	}
	b->backoff_ms *= 2;
	if (b->backoff_ms > RETRY_MAX_MS)
		b->backoff_ms = RETRY_MAX_MS;
}

/*
 * A connection failed or was lost (dying is the one hiredis is freeing
 * itself, if any): the room goes local until both are back.
 */
void
chat_broker_down(struct chat *ch, const redisAsyncContext *dying,
    const char *why)
{
	struct broker *b = ch->broker;

	if (b->sub == dying)
		b->sub = NULL;
	if (b->pub == dying)
		b->pub = NULL;
	if (b->sen == dying)
		b->sen = NULL;
	if (b->master != NULL)	/* the next attempt asks the next one */
		b->sentinel_i = (b->sentinel_i + 1) % b->nsentinels;
	chat_broker_close(b);
	if (!b->down_logged)
		b->down_ms = chat_now_ms();
	if (why != NULL && strncmp(why, "refused a reply", 15) == 0)
		b->hostile = 1;	/* no waiting for it: not a restart */
	if (!b->down_logged) {
		if (b->ever_up && b->stream && !b->hostile)
			sq_log(ch->inst, SQ_LOG_WARN, "broker %s lost (%s): "
			    "lines wait for it up to %d s, then the room is "
			    "local until it returns", b->url,
			    why && *why ? why : "closed", CHAT_HOLD_MS / 1000);
		else if (b->ever_up)
			sq_log(ch->inst, SQ_LOG_WARN, "broker %s lost (%s): "
			    "the room is local until it returns", b->url,
			    why && *why ? why : "closed");
		else
			sq_log(ch->inst, SQ_LOG_WARN, "broker %s unreachable "
			    "(%s): the room is local until it answers",
			    b->url, why && *why ? why : "closed");
		b->down_logged = 1;
	}
	b->refused[0] = '\0';
	if (b->stream)
		chat_stream_down(ch);
	(void)sq_inst_set_info(ch->inst, "broker", "down");
	chat_admit_all(ch);
	schedule_retry(ch);
}

void
chat_broker_ready(struct chat *ch)
{
	struct broker *b = ch->broker;

	if (b->up || !b->sub_ready || !b->pub_ready)
		return;
	b->up = 1;
	b->hostile = 0;
	if (b->readonly) {
		/* a replica still, maybe: the outage goes on (its lines keep
		 * waiting from its start, nothing logged, the retries slow)
		 * until a line is taken (chat_stream.c, add_reply) */
		(void)sq_inst_set_info(ch->inst, "broker", "up");
		chat_stream_resume(ch);
		return;
	}
	b->backoff_ms = RETRY_MIN_MS;
	if (b->ever_up && b->down_logged)
		sq_log(ch->inst, SQ_LOG_INFO, "broker %s back: the room spans "
		    "its processes again", b->url);
	else
		sq_log(ch->inst, SQ_LOG_INFO, "broker %s up, %s%s %s%s",
		    b->url, b->stream ? "stream" : "channel",
		    ch->per_path ? "s" : "", b->channel,
		    ch->per_path ? ":ROOM" : "");
	b->ever_up = 1;
	b->down_logged = 0;
	(void)sq_inst_set_info(ch->inst, "broker", "up");
	if (b->stream)
		chat_stream_resume(ch);
}

/* Which of ours ac is, or NULL when it is no longer ours. */
struct chat *
chat_broker_owner(const redisAsyncContext *ac)
{
	struct chat *ch = ac->data;

	if (ch == NULL || ch->broker == NULL || (ac != ch->broker->sub &&
	    ac != ch->broker->pub && ac != ch->broker->sen))
		return NULL;
	return ch;
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct chat *ch = chat_broker_owner(ac);

	if (ch == NULL)
		return;
	if (status != REDIS_OK)
		chat_broker_down(ch, ac, ac->errstr);
	else if (ac == ch->broker->pub && ch->broker->password == NULL) {
		ch->broker->pub_ready = 1;
		chat_broker_ready(ch);
	}
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct chat *ch = chat_broker_owner(ac);

	if (ch != NULL)
		chat_broker_down(ch, ac, ch->broker->refused[0] ? ch->broker->refused :
		    status == REDIS_OK ? "closed" : ac->errstr);
}

struct chat_resp *
chat_broker_guard(const redisAsyncContext *ac)
{
	return &((struct conn *)ac->ev.data)->guard;
}

static void
conn_add_read(void *p)
{
	(void)sq_io_add(((struct conn *)p)->io, SQ_IO_READ);
}

static void
conn_del_read(void *p)
{
	sq_io_del(((struct conn *)p)->io, SQ_IO_READ);
}

static void
conn_add_write(void *p)
{
	(void)sq_io_add(((struct conn *)p)->io, SQ_IO_WRITE);
}

static void
conn_del_write(void *p)
{
	sq_io_del(((struct conn *)p)->io, SQ_IO_WRITE);
}

/*
 * hiredis frees the connection: when its reader refused a reply, this
 * runs before on_disconnect, which logs the reason kept here.
 */
static void
conn_cleanup(void *p)
{
	struct conn *c = p;
	struct chat *ch = chat_broker_owner(c->ac);

	if (ch != NULL && c->guard.why[0] != '\0')
		snprintf(ch->broker->refused, sizeof(ch->broker->refused),
		    "refused a reply: %s", c->guard.why);
	sq_io_free(c->io);
	free(c);
}

/*
 * The connection is readable or writable. A reply longer than any this
 * plugin can be sent (a huge bulk string on its way) is not waited for:
 * the connection is closed, as for a refused shape.
 */
static void
conn_ready(int fd, int what, void *arg)
{
	struct conn *c = arg;
	redisAsyncContext *ac = c->ac;
	struct chat *ch;

	(void)fd;
	if (what == SQ_IO_WRITE) {
		redisAsyncHandleWrite(ac);
		return;
	}
	if (chat_resp_too_big(ac->c.reader, &c->guard) &&
	    (ch = chat_broker_owner(ac)) != NULL) {
		snprintf(ch->broker->refused, sizeof(ch->broker->refused),
		    "refused a reply: %s", c->guard.why);
		chat_broker_down(ch, NULL, ch->broker->refused);
		return;
	}
	redisAsyncHandleRead(ac);
}

/* Instead of hiredis's libevent adapter: see struct conn. */
static int
conn_attach(struct chat *ch, redisAsyncContext *ac, enum chat_resp_kind kind)
{
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->ac = ac;
	if ((c->io = sq_io_new(ch->inst, ac->c.fd, conn_ready, c)) == NULL) {
		free(c);
		return -ENOMEM;
	}
	/* a line of ours, or a longer one of another process (dropped) */
	chat_resp_install(ac->c.reader, &c->guard, kind, ch->max_message +
	    LINE_OVERHEAD + strlen(ch->broker->channel) + 65536);
	c->guard.count = (size_t)ch->broker->history_max;
	ac->ev.addRead = conn_add_read;
	ac->ev.delRead = conn_del_read;
	ac->ev.addWrite = conn_add_write;
	ac->ev.delWrite = conn_del_write;
	ac->ev.cleanup = conn_cleanup;
	ac->ev.data = c;
	(void)sq_io_add(c->io, SQ_IO_READ | SQ_IO_WRITE);
	return 0;
}

/*
 * A line from the broker for room r (NULL: no member here), which any
 * client of that Redis could have sent: only what this plugin could have
 * said goes to the members (chat_line_check: UTF-8, one chat line, no
 * longer than max_message_size allows). The rest is dropped and counted.
 */
void
chat_broker_line(struct chat *ch, struct room *r, const struct chat_sid *id,
    const char *line, size_t len)
{
	const char *why;

	why = chat_line_check(line, len, ch->max_message + LINE_OVERHEAD);
	if (why != NULL) {
		chat_broker_invalid(ch, len, why);
		if (r != NULL)
			chat_room_caught_up(r);	/* a joiner may wait */
		return;
	}
	ch->broker->invalid_logged = 0;
	if (r != NULL)
		chat_room_hear(r, id, line, len);
}

/*
 * A line from the broker dropped (len: its size, 0 if unknown), logged
 * once for each run of them, so that a flood of junk is one line in the
 * log.
 */
void
chat_broker_invalid(struct chat *ch, size_t len, const char *why)
{
	struct broker *b = ch->broker;
	char size[32] = "";

	b->invalid++;
	if (len > 0)
		snprintf(size, sizeof(size), " of %zu bytes", len);
	if (!b->invalid_logged)
		sq_log(ch->inst, SQ_LOG_WARN, "broker %s: dropped a line%s "
		    "from %s %s (%s; %llu so far); the next ones are not "
		    "logged until a valid line comes", b->url, size,
		    b->stream ? "stream" : "channel", b->channel, why,
		    b->invalid);
	b->invalid_logged = 1;
	chat_set_counts(ch);
}

/* The subscriber (or the stream's reader) is connected: it starts. */
static void
subscribe(struct chat *ch)
{
	if (ch->broker->stream)
		chat_stream_start(ch);
	else
		chat_pubsub_start(ch);
}

/*
 * AUTH goes first on each connection; the subscriber subscribes only
 * once it passed (hiredis routes replies differently once subscribed).
 */
static void
auth_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply;

	(void)priv;
	if (ch == NULL || rep == NULL)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		chat_broker_down(ch, NULL, rep->str);
		return;
	}
	if (ac == ch->broker->sub)
		subscribe(ch);
	else {
		ch->broker->pub_ready = 1;
		chat_broker_ready(ch);
	}
}

/*
 * A connection to host:port (NULL: the broker's unix socket) whose
 * reader builds only what kind may get, on the loop; or NULL with err.
 */
redisAsyncContext *
chat_broker_open(struct chat *ch, const char *host, int port,
    enum chat_resp_kind kind, char *err, size_t errlen)
{
	redisAsyncContext *ac;

	ac = host ? redisAsyncConnect(host, port) :
	    redisAsyncConnectUnix(ch->broker->unix_path);
	if (ac == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (ac->err) {
		snprintf(err, errlen, "%s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = ch;
	/* a broker's host that vanishes is found in about half a minute */
	if (host && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
		snprintf(err, errlen, "%s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	if (conn_attach(ch, ac, kind) != 0) {
		snprintf(err, errlen, "cannot attach to the loop");
		redisAsyncFree(ac);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

/* One of the broker's two connections, AUTH sent if need be. */
static redisAsyncContext *
open_conn(struct chat *ch, int subscriber, char *err, size_t errlen)
{
	struct broker *b = ch->broker;
	redisAsyncContext *ac;

	ac = chat_broker_open(ch, b->host, b->port, b->stream ?
	    (subscriber ? CHAT_RESP_XREAD : CHAT_RESP_XCMD) : !subscriber ?
	    CHAT_RESP_CMD : ch->per_path ? CHAT_RESP_PSUB : CHAT_RESP_SUB,
	    err, errlen);
	if (ac == NULL)
		return NULL;
	if (b->password && redisAsyncCommand(ac, auth_reply, NULL, "AUTH %s",
	    b->password) != REDIS_OK) {
		snprintf(err, errlen, "cannot send AUTH");
		redisAsyncFree(ac);
		return NULL;
	}
	if (b->password)
		chat_resp_sent(chat_broker_guard(ac));
	return ac;
}

/*
 * hiredis 0.14 has no timeout for an asynchronous connect, and a broker
 * may accept the connection and never answer: an attempt that is not up
 * CONNECT_MS after it began (see check_up) is given up, and retried
 * after the backoff like any failure. One timer watches every attempt;
 * it is re-armed when a later attempt has time left.
 */
static void
watch_cb(int status, void *arg)
{
	struct chat *ch = arg;
	struct broker *b = ch->broker;
	uint64_t waited;

	if (b == NULL)
		return;
	b->watch = NULL;
	if (status != 0 || b->up ||
	    (b->sub == NULL && b->pub == NULL && b->sen == NULL))
		return;		/* up, or already down and retrying */
	waited = chat_now_ms() - b->attempt_ms;
	if (waited >= CONNECT_MS)
		chat_broker_down(ch, NULL, "no answer within 2 seconds");
	else
		b->watch = sq_timer_start(ch->inst, CONNECT_MS - waited,
		    watch_cb, ch);
}

/* Open both connections; they come up (or fail) in callbacks. */
void
chat_broker_connect(struct chat *ch)
{
	struct broker *b = ch->broker;
	char err[256];

	b->idle = 0;
	if (sq_loop_base() == NULL || b->sub || b->pub)
		return;		/* squalld -t: no loop */
	if (b->master != NULL && !b->resolved) {
		if (b->sen == NULL) {
			b->attempt_ms = chat_now_ms();
			if (b->watch == NULL)
				b->watch = sq_timer_start(ch->inst,
				    CONNECT_MS, watch_cb, ch);
		}
		chat_sentinel_ask(ch);	/* then here again */
		return;
	}
	if ((b->sub = open_conn(ch, 1, err, sizeof(err))) == NULL ||
	    (b->pub = open_conn(ch, 0, err, sizeof(err))) == NULL) {
		chat_broker_down(ch, NULL, err);
		return;
	}
	if (b->master == NULL)
		b->attempt_ms = chat_now_ms();	/* else since the asking */
	if (b->watch == NULL)
		b->watch = sq_timer_start(ch->inst, CONNECT_MS, watch_cb, ch);
	if (b->password == NULL)
		subscribe(ch);
}

/*
 * A line that happened here: published once when the broker is up (it
 * comes back through the subscription or the stream, to us as to every
 * process): 1. On a stream, a line said while the broker is away waits
 * for it (chat_stream_hold): 1 too. Else delivered to the local members
 * only, as if it had come back: CHAT_SAID_HERE. A broker that falls behind by
 * PUB_MAX_PENDING replies or PUB_MAX_BYTES costs lines, not memory:
 * CHAT_DROPPED.
 */
int
chat_broker_say(struct room *r, const char *line, size_t len)
{
	struct chat *ch = r->chat;
	struct broker *b = ch->broker;

	if (b != NULL && b->up) {
		/* one line larger than PUB_MAX_BYTES still goes, alone */
		if (b->pending >= PUB_MAX_PENDING || (b->pending > 0 &&
		    b->pending_bytes + len > PUB_MAX_BYTES)) {
			b->dropped++;
			if (!b->drop_logged)
				sq_log(ch->inst, SQ_LOG_WARN, "broker %s too "
				    "slow (%zu lines unanswered): dropping "
				    "lines (%llu so far)", b->url, b->pending,
				    b->dropped);
			b->drop_logged = 1;
			return CHAT_DROPPED;
		}
		if (b->stream ? chat_stream_add(r, line, len) :
		    chat_pubsub_publish(r, line, len))
			return 1;
	} else if (b != NULL && b->stream && chat_hold_line(r, line, len))
		return 1;
	chat_room_hear(r, NULL, line, len);
	return CHAT_SAID_HERE;
}

/* Whether the broker waits for a member to try again (an empty room). */
int
chat_broker_idle(const struct broker *b)
{
	return b->idle;
}

/* Whether lines go through the broker now. */
int
chat_broker_up(const struct broker *b)
{
	return b->up;
}

/* Whether rooms are streams (broker_mode = stream). */
int
chat_broker_stream(const struct broker *b)
{
	return b != NULL && b->stream;
}

/* How old a line a returning member may name (seconds; 0: none). */
long long
chat_broker_recover_window(const struct broker *b)
{
	return chat_broker_stream(b) ? b->recover_window : 0;
}

/* Lines from Redis dropped (not UTF-8, not a chat line, another shape). */
unsigned long long
chat_broker_invalid_count(const struct broker *b)
{
	return b->invalid;
}
