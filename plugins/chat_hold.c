/*
 * chat_hold.c - with broker_mode = stream, the lines said while the
 * broker is away: they wait for it (a Redis that restarts), and are
 * added to their rooms' streams in their order when it is back, so that
 * nobody, their senders included, hears them before everyone can; until
 * the wait is too long, and the room is local. Loop thread.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

#include "chat_broker.h"

/* A line waiting for the broker, for the room named name. */
struct held {
	struct held	*next;
	char		*name;
	size_t		 len;
	char		 line[];
};

/*
 * The lines that waited, said here after all: the room went local, or a
 * reload moves it to another broker (or none).
 */
void
chat_hold_say(struct chat *ch)
{
	struct broker *b = ch->broker;
	struct held *h;
	struct room *r;

	while ((h = b->held) != NULL) {
		b->held = h->next;
		r = chat_room_find(ch, h->name, strlen(h->name));
		if (r != NULL) {
			chat_room_hear(r, NULL, h->line, h->len);
		}
		free(h->name);
		free(h);
	}
	b->nheld = b->held_bytes = 0;
}

/*
 * A line said while the broker is away waits for it, so that it reaches
 * every process in the stream's order, and its sender hears it when it
 * has: 1. Not for ever: after CHAT_HOLD_MS, or past PUB_MAX_PENDING lines
 * or PUB_MAX_BYTES, the room is local (0: the caller says it here), and
 * the lines that waited are said here first, logged once. A broker never
 * up, or one that answered what Redis never sends (not a restart), leaves
 * the room local at once.
 */
int
chat_hold_line(struct room *r, const char *line, size_t len)
{
	struct chat *ch = r->chat;
	struct broker *b = ch->broker;
	struct held *h = NULL;

	if (!b->ever_up || b->hostile ||
	    chat_now_ms() - b->down_ms > CHAT_HOLD_MS ||
	    b->nheld >= PUB_MAX_PENDING ||
	    b->held_bytes + len > PUB_MAX_BYTES ||
	    (h = malloc(sizeof(*h) + len)) == NULL ||
	    (h->name = strdup(r->name)) == NULL) {
		free(h);
		if (b->ever_up && !b->held_logged)
			sq_log(ch->inst, SQ_LOG_WARN, "broker %s away too long "
			    "(%zu lines waited): the room is local until it "
			    "returns", b->url, b->nheld);
		b->held_logged = b->ever_up;
		chat_hold_say(ch);
		return 0;
	}
	memcpy(h->line, line, len);
	h->len = len;
	h->next = NULL;
	if (b->held == NULL)
		b->held_tail = &b->held;
	*b->held_tail = h;
	b->held_tail = &h->next;
	b->nheld++;
	b->held_bytes += len;
	return 1;
}

/* The broker is back: the lines that waited go, in their order. */
void
chat_hold_send(struct chat *ch)
{
	struct broker *b = ch->broker;
	struct held *h;

	while ((h = b->held) != NULL) {
		if (chat_stream_add_to(ch, h->name, chat_room_find(ch, h->name,
		    strlen(h->name)), h->line, h->len) != 0)
			return;		/* down again: they wait on */
		b->held = h->next;
		b->nheld--;
		b->held_bytes -= h->len;
		free(h->name);
		free(h);
	}
	b->held_logged = 0;
}

void
chat_hold_free(struct broker *b)
{
	for (struct held *h = b->held, *next; h; h = next) {
		next = h->next;
		free(h->name);
		free(h);
	}
	b->held = NULL;
	b->nheld = b->held_bytes = 0;
}
