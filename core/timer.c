/*
 * timer.c - one-shot timers for plugins (sq_timer_*) on the loop. Each
 * timer holds a reference on its instance and calls back exactly once:
 * 0 when it fires, -ECANCELED after sq_timer_cancel or at shutdown. A
 * cancelled timer's callback runs on a later loop turn, never inside
 * sq_timer_cancel. Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "core.h"

struct sq_timer {
	struct event	*ev;
	struct sq_inst	*inst;
	void		(*cb)(int status, void *arg);
	void		*arg;
	int		 status;
	LIST_ENTRY(sq_timer) link;
};

static struct event_base *tbase;
static LIST_HEAD(, sq_timer) timers = LIST_HEAD_INITIALIZER(timers);
static size_t ntimers;

/* Timers run on base from now on. */
void
sqc_timer_init(struct event_base *base)
{
	tbase = base;
}

/*
 * The loop's event_base, as an opaque pointer, for a plugin that attaches
 * a library's own libevent adapter (the chat plugin's hiredis). It is the
 * base the timers run on, so it lives here rather than in main.c: the
 * unit tests link the core without main.c. Loop thread only.
 */
void *
sq_loop_base(void)
{
	return tbase;
}

static void
fire(evutil_socket_t fd, short what, void *arg)
{
	struct sq_timer *t = arg;
	struct sq_inst *inst = t->inst, *prev;

	LIST_REMOVE(t, link);
	ntimers--;
	event_free(t->ev);
	prev = sqc_inst_enter(inst);
	t->cb(t->status, t->arg);
	sqc_inst_leave(prev);
	free(t);
	sqc_inst_unref(inst);
}

struct sq_timer *
sq_timer_start(struct sq_inst *inst, uint64_t ms,
    void (*cb)(int status, void *arg), void *arg)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) *
	    1000 };
	struct sq_timer *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if ((t->ev = evtimer_new(tbase, fire, t)) == NULL ||
	    evtimer_add(t->ev, &tv) != 0) {
		if (t->ev)
			event_free(t->ev);
		free(t);
		return NULL;
	}
	t->inst = inst;
	t->cb = cb;
	t->arg = arg;
	sqc_inst_ref(inst);
	LIST_INSERT_HEAD(&timers, t, link);
	ntimers++;
	return t;
}

void
sq_timer_cancel(struct sq_timer *t)
{
	if (t == NULL || t->status != 0)
		return;
	t->status = -ECANCELED;
	evtimer_del(t->ev);
	event_active(t->ev, EV_TIMEOUT, 0);
}

/* At shutdown: every pending timer calls back with -ECANCELED now. */
void
sqc_timer_cancel_all(void)
{
	struct sq_timer *t;

	while ((t = LIST_FIRST(&timers)) != NULL) {
		t->status = -ECANCELED;
		evtimer_del(t->ev);
		fire(-1, 0, t);
	}
}

/* Timers that have not called back yet. */
size_t
sqc_timer_pending(void)
{
	return ntimers;
}
