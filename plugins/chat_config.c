/*
 * chat_config.c - a chat route's broker settings: broker = (redis://,
 * unix: or sentinel://), channel, password, broker_mode and the stream's
 * options, checked for squalld -t; and a reload that changes them, which
 * moves the room of the members who joined before (chat_broker_move).
 * Loop thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

#include "chat_broker.h"

void
chat_broker_free(struct broker *b)
{
	if (b == NULL)
		return;
	chat_hold_free(b);
	chat_sentinel_free(b);
	free(b->url);
	free(b->host);
	free(b->unix_path);
	free(b->password);
	free(b->channel);
	free(b);
}

/*
 * Parse redis://host[:port][/db] or unix:/path. Pub/sub channels are
 * global to a Redis server, so a db number is accepted and ignored.
 */
static int
broker_parse(struct broker *b, const char *url)
{
	const char *p, *end;
	char *e;
	long port = 6379;

	if (strncmp(url, "unix:", 5) == 0) {
		if (url[5] != '/')
			return -EINVAL;
		return (b->unix_path = strdup(url + 5)) ? 0 : -ENOMEM;
	}
	if (strncmp(url, "sentinel://", 11) == 0)
		return chat_sentinel_parse(b, url + 11);
	if (strncmp(url, "redis://", 8) != 0)
		return -EINVAL;
	p = url + 8;
	if (*p == '[') {
		if ((end = strchr(p, ']')) == NULL)
			return -EINVAL;
		b->host = strndup(p + 1, (size_t)(end - p - 1));
		end++;
	} else {
		end = p + strcspn(p, ":/");
		b->host = strndup(p, (size_t)(end - p));
	}
	if (b->host == NULL)
		return -ENOMEM;
	if (*b->host == '\0')
		return -EINVAL;
	if (*end == ':') {
		errno = 0;
		port = strtol(end + 1, &e, 10);
		if (errno != 0 || e == end + 1 || port < 1 || port > 65535)
			return -EINVAL;
		end = e;
	}
	if (*end == '/') {
		if (end[1] != '\0') {
			errno = 0;
			(void)strtol(end + 1, &e, 10);
			if (errno != 0 || *e != '\0')
				return -EINVAL;
		}
	} else if (*end != '\0')
		return -EINVAL;
	b->port = (int)port;
	return 0;
}

/*
 * A broker for url, channel (the default one when NULL or empty) and
 * password (none when NULL or empty), not connected: 0, -ENOMEM, or
 * -EINVAL when url does not parse.
 */
static int
broker_new(struct chat *ch, const char *url, const char *channel,
    const char *password, struct broker **out)
{
	struct broker *b;
	int rc;

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -ENOMEM;
	b->backoff_ms = RETRY_MIN_MS;
	if ((b->url = strdup(url)) == NULL)
		goto nomem;
	if (password && *password && (b->password = strdup(password)) == NULL)
		goto nomem;
	if (channel && *channel)
		b->channel = strdup(channel);
	else if (asprintf(&b->channel, "squall:chat:%s",
	    sq_inst_route(ch->inst)) < 0)
		b->channel = NULL;
	if (b->channel == NULL)
		goto nomem;
	if ((rc = broker_parse(b, url)) != 0) {
		chat_broker_free(b);
		return rc;
	}
	*out = b;
	return 0;
nomem:
	chat_broker_free(b);
	return -ENOMEM;
}

/* Options that only broker_mode = stream reads. */
static const char *const stream_keys[] = {
	"history_max", "recover_window", "stream_ttl"
};

/* broker_mode and the stream's options, into b. */
static int
mode_options(struct chat *ch, struct sq_opts *opts, struct broker *b)
{
	const char *mode = sq_opt_str(opts, "broker_mode", "");
	int rc;

	if (*mode == '\0')
		mode = "pubsub";
	if (strcmp(mode, "stream") == 0)
		b->stream = 1;
	else if (strcmp(mode, "pubsub") != 0)
		return sq_opt_error(opts, "broker_mode", "broker_mode \"%s\" "
		    "is neither pubsub nor stream", mode);
	if (!b->stream) {
		for (size_t i = 0; i < sizeof(stream_keys) /
		    sizeof(*stream_keys); i++)
			if (sq_opt_str(opts, stream_keys[i], NULL) != NULL)
				return sq_opt_error(opts, stream_keys[i],
				    "%s needs broker_mode = stream",
				    stream_keys[i]);
		return 0;
	}
	rc = sq_opt_int(opts, "history_max", 1000, 1, 1000000,
	    &b->history_max);
	if (rc == 0)
		rc = sq_opt_int(opts, "recover_window", 120, 0, 86400,
		    &b->recover_window);
	if (rc == 0)
		rc = sq_opt_int(opts, "stream_ttl", 86400, 0, 366 * 86400,
		    &b->stream_ttl);
	if (rc == 0 && ch->history > b->history_max)
		rc = sq_opt_error(opts, "history", "history = %lld is more "
		    "than the %lld lines a stream keeps (history_max)",
		    ch->history, b->history_max);
	if (rc == 0 && b->stream_ttl > 0 && b->stream_ttl < b->recover_window)
		rc = sq_opt_error(opts, "stream_ttl", "stream_ttl = %lld "
		    "seconds is shorter than recover_window = %lld",
		    b->stream_ttl, b->recover_window);
	return rc;
}

/* The broker's options; *out stays NULL without one. */
int
chat_broker_create(struct chat *ch, struct sq_opts *opts, struct broker **out)
{
	const char *url = sq_opt_str(opts, "broker", "");
	const char *channel = sq_opt_str(opts, "channel", NULL);
	const char *password = sq_opt_str(opts, "password", NULL);
	static const char *const needs[] = {
		"channel", "password", "broker_mode", "history_max",
		"recover_window", "stream_ttl"
	};
	int rc;

	*out = NULL;
	if (*url == '\0') {
		for (size_t i = 0; i < sizeof(needs) / sizeof(*needs); i++) {
			const char *v = sq_opt_str(opts, needs[i], NULL);

			if (v && *v)
				return sq_opt_error(opts, needs[i], "%s needs "
				    "a broker", needs[i]);
		}
		return 0;
	}
	rc = broker_new(ch, url, channel, password, out);
	if (rc == -EINVAL)
		return sq_opt_error(opts, "broker", "broker \"%s\" is not "
		    "redis://host[:port][/db], unix:/path nor "
		    "sentinel://host:port[,host:port...]/NAME", url);
	if (rc == 0 && (rc = mode_options(ch, opts, *out)) != 0) {
		chat_broker_free(*out);
		*out = NULL;
	}
	return rc;
}

/* The mode and its settings, which a reload may change in place. */
static void
mode_copy(struct broker *to, const struct broker *from)
{
	to->stream = from->stream;
	to->history_max = from->history_max;
	to->recover_window = from->recover_window;
	to->stream_ttl = from->stream_ttl;
}

static int
same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Do a and b (either NULL: no broker) name the same room on Redis? */
static int
same_broker(const struct broker *a, const struct broker *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a->url, b->url) == 0 &&
	    strcmp(a->channel, b->channel) == 0 &&
	    same_str(a->password, b->password) && a->stream == b->stream;
}

/*
 * A reload that changed the broker (or the channel, or the password) of
 * a route creates a new room, and the members who joined before stay in
 * the old one, whose instance lives until they leave. Left alone, they
 * would talk on the old broker while newcomers talk on the new one, and
 * the room would be split for as long as they stay. So the old room
 * takes the new room's broker settings: its members stay connected, and
 * the two rooms of this process meet on the new channel like those of
 * two processes (each delivers to its own members).
 *
 * o takes the settings of ch, which is newer. The connections to the old
 * broker are closed; the broker's pending timers find the new settings
 * (or no broker) when they fire.
 */
void
chat_broker_move(struct chat *o, struct chat *ch)
{
	struct broker *b = o->broker, *nb = NULL;
	const char *from = b ? b->url : "none";

	o->cfg_seq = ch->seq;
	if (same_broker(b, ch->broker)) {
		if (b != NULL)
			mode_copy(b, ch->broker);
		return;
	}
	if (ch->broker && broker_new(o, ch->broker->url, ch->broker->channel,
	    ch->broker->password, &nb) != 0) {
		sq_log(o->inst, SQ_LOG_ERROR, "cannot move the room to broker "
		    "%s: out of memory", ch->broker->url);
		return;
	}
	if (nb != NULL)
		mode_copy(nb, ch->broker);
	chat_rooms_each(o, chat_stream_room_gone, NULL);
	sq_log(o->inst, SQ_LOG_INFO, "a reload changed the broker: the %zu "
	    "member%s who joined before move%s from %s to %s", o->members,
	    o->members == 1 ? "" : "s", o->members == 1 ? "s" : "", from,
	    nb ? nb->url : "none (a room of this process)");
	if (b == NULL) {
		o->broker = nb;
	} else if (nb == NULL) {
		chat_admit_all(o);
		chat_hold_say(o);
		chat_broker_close(b);
		chat_broker_free(b);
		o->broker = NULL;
	} else {
		/* in place: the pending timers hold o, and find b; what was
		 * read or asked of the old streams is of no use on the new */
		chat_admit_all(o);
		chat_hold_say(o);
		chat_broker_close(b);
		if (b->stream)
			chat_stream_down(o);
		b->careful = 0;
		free(b->url);
		free(b->host);
		free(b->unix_path);
		free(b->password);
		free(b->channel);
		b->url = nb->url;
		b->host = nb->host;
		b->unix_path = nb->unix_path;
		b->port = nb->port;
		b->password = nb->password;
		b->channel = nb->channel;
		chat_sentinel_free(b);
		b->master = nb->master;
		b->sentinels = nb->sentinels;
		b->nsentinels = nb->nsentinels;
		b->sentinel_i = 0;
		mode_copy(b, nb);
		b->ever_up = b->down_logged = b->drop_logged = 0;
		b->readonly = 0;
		b->invalid_logged = 0;
		b->backoff_ms = RETRY_MIN_MS;
		free(nb);
	}
	(void)sq_inst_set_info(o->inst, "broker", o->broker ? "down" : NULL);
	if (o->broker == NULL)
		return;
	if (o->members > 0)
		chat_broker_connect(o);
	else
		o->broker->idle = 1;
}
