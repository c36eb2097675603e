/*
 * test_ws_queue.c - core/ws_queue.c: the queues between the two halves
 * of the WebSocket bridge. Commands and events keep their order, a
 * wake-up is asked for (commands) or sent (events) only when the queue
 * was empty, and a shared message is freed by its last reference only.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../../core/ws_bridge.h"

TestSuite(ws_queue);

Test(ws_queue, commands_keep_their_order_and_wake_once)
{
	struct cmdq q = STAILQ_HEAD_INITIALIZER(q), got =
	    STAILQ_HEAD_INITIALIZER(got);
	struct cmd *c;
	uint64_t id = 1;

	for (int batch = 0; batch < 3; batch++) {
		for (int i = 0; i < 2; i++) {
			cr_assert_not_null(c = sqc_wscmd_new(C_CLOSE, 0));
			c->id = id++;
			STAILQ_INSERT_TAIL(&q, c, next);
		}
		/* the first hand-over finds the queue empty: wake it */
		cr_assert_eq(sqc_wscmd_hand_over(&q), batch == 0);
		cr_assert(STAILQ_EMPTY(&q));
	}
	sqc_wscmd_take(&got);
	id = 1;
	while ((c = STAILQ_FIRST(&got)) != NULL) {
		STAILQ_REMOVE_HEAD(&got, next);
		cr_assert_eq(c->id, id++);
		sqc_wscmd_discard(c);
	}
	cr_assert_eq(id, 7);
	/* taken: empty again, so the next hand-over wakes */
	cr_assert_not_null(c = sqc_wscmd_new(C_STOP, 0));
	STAILQ_INSERT_TAIL(&q, c, next);
	cr_assert_eq(sqc_wscmd_hand_over(&q), 1);
	sqc_wscmd_take(&got);
	sqc_wscmd_discard(STAILQ_FIRST(&got));
}

static int woken;

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	woken++;
}

Test(ws_queue, events_keep_their_order_and_wake_the_loop_once)
{
	struct event_base *base = event_base_new();
	struct event *wake = event_new(base, -1, 0, on_wake, NULL);
	struct evq q = STAILQ_HEAD_INITIALIZER(q);
	struct wev *e;

	sqc_wsev_init(wake);
	for (uint64_t id = 1; id <= 3; id++)
		sqc_wsev_push(E_MESSAGE, id, (unsigned char *)strdup("m"), 1,
		    0, 0);
	sqc_wsev_push(E_CLOSED, 4, NULL, 0, 0, 1000);
	event_base_loop(base, EVLOOP_NONBLOCK);
	cr_assert_eq(woken, 1, "woken %d times for 4 events", woken);
	sqc_wsev_take(&q);
	for (uint64_t id = 1; (e = STAILQ_FIRST(&q)) != NULL; id++) {
		STAILQ_REMOVE_HEAD(&q, next);
		cr_assert_eq(e->id, id);
		cr_assert_eq(e->kind, id < 4 ? E_MESSAGE : E_CLOSED);
		if (id == 4)
			cr_assert_eq(e->code, 1000);
		free(e->data);
		free(e);
	}
	sqc_wsev_init(NULL);
	event_free(wake);
	event_base_free(base);
}

Test(ws_queue, a_message_lives_until_its_last_reference)
{
	struct cmd *c = sqc_wscmd_new(C_SEND, 3);
	struct wbuf *b = malloc(sizeof(*b) + 4);

	cr_assert_not_null(c);
	cr_assert_not_null(b);
	memset(b, 0, sizeof(*b));
	atomic_init(&b->refs, 4);	/* 3 recipients and us */
	b->zdata = malloc(16);		/* its compressed form goes too */
	c->buf = b;
	c->nids = 3;
	/* a command dropped before it ran gives back one per recipient */
	sqc_wscmd_discard(c);
	cr_assert_eq(atomic_load(&b->refs), 1);
	sqc_wbuf_unref(b);		/* the last: freed (ASan checks) */
}
