/*
 * chat_sentinel.c - broker = sentinel://host:port[,host:port...]/NAME:
 * the broker is the master Redis Sentinel knows as NAME, and follows it
 * when it fails over. hiredis 0.14 has no Sentinel client, so before
 * each attempt to connect the plugin asks one Sentinel (the next one
 * after a failure) SENTINEL get-master-addr-by-name NAME on a connection
 * of its own, then connects to that address, and the Sentinel's
 * connection stays, subscribed to +switch-master: a failover of NAME
 * drops the broker's connections, and the next attempt asks again.
 * A master demoted without a message (the Sentinel away) shows itself
 * too: its blocked XREAD is ended with an error, or its PUBLISH and XADD
 * refused (READONLY). Sentinels are asked without AUTH. Loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

#include "chat_broker.h"

/* HOST:PORT,HOST:PORT.../NAME (after "sentinel://"): 0, or -EINVAL. */
int
chat_sentinel_parse(struct broker *b, const char *spec)
{
	const char *slash = strrchr(spec, '/'), *p, *end;
	char **v;

	if (slash == NULL || slash[1] == '\0' || slash == spec ||
	    strchr(slash + 1, ':') != NULL)
		return -EINVAL;
	if ((b->master = strdup(slash + 1)) == NULL)
		return -ENOMEM;
	for (p = spec; p < slash; p = end + 1) {
		const char *colon;
		char *e;
		long port;

		end = memchr(p, ',', (size_t)(slash - p));
		if (end == NULL)
			end = slash;
		colon = memrchr(p, ':', (size_t)(end - p));
		if (colon == NULL || colon == p)
			return -EINVAL;
		port = strtol(colon + 1, &e, 10);
		if (e != end || port < 1 || port > 65535)
			return -EINVAL;
		if ((v = realloc(b->sentinels, (b->nsentinels + 1) *
		    sizeof(*v))) == NULL)
			return -ENOMEM;
		b->sentinels = v;
		if ((v[b->nsentinels] = strndup(p, (size_t)(end - p))) == NULL)
			return -ENOMEM;
		b->nsentinels++;
	}
	return b->nsentinels > 0 ? 0 : -EINVAL;
}

void
chat_sentinel_free(struct broker *b)
{
	for (size_t i = 0; i < b->nsentinels; i++)
		free(b->sentinels[i]);
	free(b->sentinels);
	free(b->master);
	b->sentinels = NULL;
	b->master = NULL;
	b->nsentinels = 0;
}

/* +switch-master NAME OLDIP OLDPORT NEWIP NEWPORT: ours drops us. */
static void
switched(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	redisReply *rep = reply, *msg;
	size_t n;
	char why[200];

	(void)priv;
	if (ch == NULL || rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != 3)
		return;
	msg = rep->element[2];
	n = strlen(ch->broker->master);
	if (msg->type != REDIS_REPLY_STRING || msg->len <= n ||
	    memcmp(msg->str, ch->broker->master, n) != 0 || msg->str[n] != ' ')
		return;		/* a confirmation, or another master's */
	snprintf(why, sizeof(why), "Sentinel: %.*s failed over", (int)
	    (msg->len < 160 ? msg->len : 160), msg->str);
	chat_broker_down(ch, NULL, why);
}

/* The master's address: connect to it, and watch for failovers. */
static void
addressed(redisAsyncContext *ac, void *reply, void *priv)
{
	struct chat *ch = chat_broker_owner(ac);
	struct broker *b;
	redisReply *rep = reply;
	char why[200], *host;
	long port;

	(void)priv;
	if (ch == NULL || rep == NULL)
		return;
	b = ch->broker;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING ||
	    rep->element[1]->type != REDIS_REPLY_STRING ||
	    (port = strtol(rep->element[1]->str, NULL, 10)) < 1 ||
	    port > 65535) {
		snprintf(why, sizeof(why), "Sentinel %s knows no master %s%s%s",
		    b->sentinels[b->sentinel_i], b->master,
		    rep->type == REDIS_REPLY_ERROR ? ": " : "",
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "");
		chat_broker_down(ch, NULL, why);
		return;
	}
	if ((host = strdup(rep->element[0]->str)) == NULL) {
		chat_broker_down(ch, NULL, "out of memory");
		return;
	}
	if (b->host == NULL || strcmp(b->host, host) != 0 || b->port != port)
		sq_log(ch->inst, SQ_LOG_INFO, "broker %s: master %s is at "
		    "%s:%ld", b->url, b->master, host, port);
	free(b->host);
	b->host = host;
	b->port = (int)port;
	b->resolved = 1;
	if (redisAsyncCommand(ac, switched, NULL, "SUBSCRIBE +switch-master") !=
	    REDIS_OK) {
		chat_broker_down(ch, NULL, "cannot subscribe to the Sentinel");
		return;
	}
	chat_broker_guard(ac)->subscribed = 1;
	chat_broker_connect(ch);
}

/* Asks the Sentinel whose turn it is where the master is. */
void
chat_sentinel_ask(struct chat *ch)
{
	struct broker *b = ch->broker;
	const char *hp = b->sentinels[b->sentinel_i], *colon = strrchr(hp, ':');
	char host[256], err[256];

	if (b->sen != NULL)
		return;		/* asked already */
	snprintf(host, sizeof(host), "%.*s", (int)(colon - hp), hp);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if ((b->sen = chat_broker_open(ch, host, atoi(colon + 1),
	    CHAT_RESP_SENTINEL, err, sizeof(err))) == NULL) {
		chat_broker_down(ch, NULL, err);
		return;
	}
	if (redisAsyncCommand(b->sen, addressed, NULL,
	    "SENTINEL get-master-addr-by-name %s", b->master) != REDIS_OK) {
		chat_broker_down(ch, NULL, "cannot ask the Sentinel");
		return;
	}
	chat_resp_sent(chat_broker_guard(b->sen));
}
