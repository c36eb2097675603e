/*
 * chat_pubsub.c - broker_mode = pubsub, the default: each line is
 * PUBLISHed once, by the process where it happened, on its room's
 * channel (the route's channel, or CHANNEL:NAME for the rooms of a route
 * ending in "*", which one pattern subscription covers), and every
 * process delivers what its subscription brings to its own members, so
 * all see the same lines in the broker's order. At most once: a line
 * published while a process is away from Redis is lost for its members
 * (chat_stream.c keeps them). Loop thread.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

#include "chat_broker.h"

/* A line of the pattern's: for the room its channel names. */
static void
pmessage(struct chat *ch, const redisReply *channel, const redisReply *data)
{
	const char *base = ch->broker->channel;
	size_t blen = strlen(base);

	if (channel->type != REDIS_REPLY_STRING || channel->len <= blen + 1 ||
	    memcmp(channel->str, base, blen) != 0 || channel->str[blen] != ':')
		return;
	chat_broker_line(ch, chat_room_find(ch, channel->str + blen + 1,
	    channel->len - blen - 1), NULL, data->str, data->len);
}

/* Everything the subscription brings: confirmations, then lines. */
static void
sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply, *kind, *data;

	(void)priv;
	if (ch == NULL || rep == NULL)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		chat_broker_down(ch, NULL, rep->str);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
		return;
	kind = rep->element[0];
	data = rep->element[rep->elements - 1];
	if (kind->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "subscribe") == 0 ||
	    strcmp(kind->str, "psubscribe") == 0) {
		ch->broker->sub_ready = 1;
		chat_broker_ready(ch);
	} else if (strcmp(kind->str, "message") == 0 &&
	    data->type == REDIS_REPLY_STRING)
		chat_broker_line(ch, chat_room_find(ch, NULL, 0), NULL,
		    data->str, data->len);
	else if (strcmp(kind->str, "pmessage") == 0 && rep->elements == 4 &&
	    data->type == REDIS_REPLY_STRING)
		pmessage(ch, rep->element[2], data);
}

/*
 * The subscriber is connected (AUTH passed): it subscribes. A route of
 * rooms subscribes to the pattern CHANNEL:*, the channel's own glob
 * characters escaped: every room at once, with no subscription to make
 * when a room is, nor to wait for before its first line.
 */
void
chat_pubsub_start(struct chat *ch)
{
	struct broker *b = ch->broker;
	char *pattern, *p;
	int rc;

	if (!ch->per_path)
		rc = redisAsyncCommand(b->sub, sub_reply, NULL, "SUBSCRIBE %b",
		    b->channel, strlen(b->channel));
	else if ((pattern = malloc(2 * strlen(b->channel) + 3)) == NULL)
		rc = REDIS_ERR;
	else {
		p = pattern;
		for (const char *s = b->channel; *s; s++) {
			if (strchr("*?[]\\", *s))
				*p++ = '\\';
			*p++ = *s;
		}
		strcpy(p, ":*");
		rc = redisAsyncCommand(b->sub, sub_reply, NULL,
		    "PSUBSCRIBE %b", pattern, strlen(pattern));
		free(pattern);
	}
	if (rc != REDIS_OK)
		chat_broker_down(ch, NULL, "cannot subscribe");
	else
		chat_broker_guard(b->sub)->subscribed = 1;
}

static void
pub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	struct broker *b;
	size_t len = (size_t)(uintptr_t)priv;

	(void)reply;
	if (ch == NULL || ac != ch->broker->pub)
		return;
	b = ch->broker;
	if (b->pending > 0)
		b->pending--;
	b->pending_bytes -= len < b->pending_bytes ? len : b->pending_bytes;
	if (b->pending == 0 && b->drop_logged) {
		sq_log(ch->inst, SQ_LOG_INFO, "broker %s caught up (%llu "
		    "lines dropped so far)", b->url, b->dropped);
		b->drop_logged = 0;
	}
}

/* PUBLISHes a line of r's: 1 when sent, 0 when not. */
int
chat_pubsub_publish(struct room *r, const char *line, size_t len)
{
	struct chat *ch = r->chat;
	struct broker *b = ch->broker;
	int rc;

	if (ch->per_path)	/* the room's channel: CHANNEL:NAME */
		rc = redisAsyncCommand(b->pub, pub_reply,
		    (void *)(uintptr_t)len, "PUBLISH %b:%b %b", b->channel,
		    strlen(b->channel), r->name, strlen(r->name), line, len);
	else
		rc = redisAsyncCommand(b->pub, pub_reply,
		    (void *)(uintptr_t)len, "PUBLISH %b %b", b->channel,
		    strlen(b->channel), line, len);
	if (rc != REDIS_OK)
		return 0;
	chat_resp_sent(chat_broker_guard(b->pub));
	b->pending++;
	b->pending_bytes += len;
	return 1;
}
