/*
 * ws_queue.c - the two queues between the halves of the WebSocket
 * bridge, and the messages they share. Commands go from the loop thread
 * to the service thread (adopt, send, close, ping, stop): the loop hands
 * over a loop turn's worth at once, and the service thread takes the
 * whole queue when lws wakes it. Events come back (message, closed) and
 * wake the loop through an event that is never added. Each queue has its
 * mutex; nothing else here is shared.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core.h"
#include "ws_bridge.h"

static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cmdq cmds = STAILQ_HEAD_INITIALIZER(cmds);
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct evq events = STAILQ_HEAD_INITIALIZER(events);
static struct event *wake;	/* the loop's: it takes the events */

/*
 * Loop thread (or a test): a message of len bytes for refs recipients,
 * or NULL.
 */
struct wbuf *
sqc_wbuf_new(const void *data, size_t len, int binary, unsigned refs)
{
	struct wbuf *b = malloc(sizeof(*b) + len);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, refs);
	b->len = len;
	b->binary = binary;
	b->zbits = 0;
	b->zdata = NULL;
	b->zlen = 0;
	if (len > 0)
		memcpy(b->data, data, len);
	return b;
}

/* Any thread: drops a reference to b; the last one frees it. */
void
sqc_wbuf_unref(struct wbuf *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1) {
		free(b->zdata);
		free(b);
	}
}

/* Loop thread: a command with room for nids recipients, or NULL. */
struct cmd *
sqc_wscmd_new(enum cmd_kind kind, size_t nids)
{
	struct cmd *c = calloc(1, sizeof(*c) + nids * sizeof(c->ids[0]));

	if (c != NULL) {
		c->kind = kind;
		c->fd = -1;
	}
	return c;
}

/* Any thread: frees a command that has run, or never will. */
void
sqc_wscmd_discard(struct cmd *c)
{
	if (c->fd >= 0)
		close(c->fd);
	/* a C_SEND holds one reference per recipient */
	for (size_t i = 0; c->buf && i < c->nids; i++)
		sqc_wbuf_unref(c->buf);
	free(c->readbuf);
	free(c->protocol);
	free(c);
}

/*
 * Loop thread: appends q's commands (q is left empty). Returns 1 when the
 * queue was empty, so the service thread must be woken; otherwise a
 * wake-up is already on its way, and that thread takes the whole queue.
 */
int
sqc_wscmd_hand_over(struct cmdq *q)
{
	int idle;

	pthread_mutex_lock(&cmd_lock);
	idle = STAILQ_EMPTY(&cmds);
	STAILQ_CONCAT(&cmds, q);
	pthread_mutex_unlock(&cmd_lock);
	return idle;
}

/* Service thread (or the loop once it ended): every command, into q. */
void
sqc_wscmd_take(struct cmdq *q)
{
	pthread_mutex_lock(&cmd_lock);
	STAILQ_CONCAT(q, &cmds);
	pthread_mutex_unlock(&cmd_lock);
}

/* Loop thread, at start: the event that takes the events. */
void
sqc_wsev_init(struct event *ev)
{
	wake = ev;
}

/* Service thread: an event for the loop; data (malloc'ed) is its now. */
void
sqc_wsev_push(enum ev_kind kind, uint64_t id, unsigned char *data,
    size_t len, int binary, int code)
{
	struct wev *e = calloc(1, sizeof(*e));
	int idle;

	if (e == NULL) {
		free(data);
		return;
	}
	e->kind = kind;
	e->id = id;
	e->data = data;
	e->len = len;
	e->binary = binary;
	e->code = code;
	pthread_mutex_lock(&ev_lock);
	idle = STAILQ_EMPTY(&events);
	STAILQ_INSERT_TAIL(&events, e, next);
	pthread_mutex_unlock(&ev_lock);
	if (idle && wake)
		event_active(wake, EV_READ, 0);
}

/* Loop thread: every event, into q. */
void
sqc_wsev_take(struct evq *q)
{
	pthread_mutex_lock(&ev_lock);
	STAILQ_CONCAT(q, &events);
	pthread_mutex_unlock(&ev_lock);
}
