/*
 * ws_ev.c - the WebSocket thread's event loop: a libev loop on epoll,
 * which libwebsockets drives through its event-library plugin (Debian:
 * libwebsockets-evlib-ev), so that a service turn costs what happened,
 * not how many connections are open (lws' own loop polls them all).
 *
 * libev is reached by dlopen and dlsym, never linked: libev.so also
 * defines libevent's names (event_add, event_base_new...) for its
 * compatibility layer, and linked to squalld it would take them over
 * from libevent for the whole process. Opened RTLD_LOCAL, it serves only
 * the calls made here and lws' plugin. Without it, sqc_wsev_new says
 * NULL and the bridge keeps lws' poll loop.
 *
 * libev's timers in lws 4.1.6's plugin are re-armed with ev_timer_set on
 * an active watcher, which libev does not allow: a timeout set while a
 * later one is armed (a ping's, a close's) may never fire on an idle
 * connection. So the loop also ticks once a second, and each tick wakes
 * lws (tick(): lws_cancel_service), whose wake-up services every timeout
 * that is due and arms the next.
 *
 * The loop is made on the loop thread before the service thread starts,
 * run on the service thread, and freed on the loop thread once that one
 * has been joined: never used by two threads at once.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>

#include <ev.h>

#include "core.h"
#include "ws_bridge.h"

static void *lib;
static struct {
	__typeof__(ev_loop_new)		*loop_new;
	__typeof__(ev_loop_destroy)	*loop_destroy;
	__typeof__(ev_run)		*run;
	__typeof__(ev_break)		*brk;
	__typeof__(ev_prepare_start)	*prepare_start;
	__typeof__(ev_prepare_stop)	*prepare_stop;
	__typeof__(ev_timer_start)	*timer_start;
	__typeof__(ev_timer_stop)	*timer_stop;
} ev;
static ev_prepare before_turn;
static ev_timer ticker;
static int (*leave)(void);
static void (*tick)(void);

static int
load(char *err, size_t errlen)
{
	if ((lib = dlopen("libev.so.4", RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		return -1;
	}
	if ((ev.loop_new = (__typeof__(ev.loop_new))dlsym(lib,
	    "ev_loop_new")) == NULL ||
	    (ev.loop_destroy = (__typeof__(ev.loop_destroy))dlsym(lib,
	    "ev_loop_destroy")) == NULL ||
	    (ev.run = (__typeof__(ev.run))dlsym(lib, "ev_run")) == NULL ||
	    (ev.brk = (__typeof__(ev.brk))dlsym(lib, "ev_break")) == NULL ||
	    (ev.prepare_start = (__typeof__(ev.prepare_start))dlsym(lib,
	    "ev_prepare_start")) == NULL ||
	    (ev.prepare_stop = (__typeof__(ev.prepare_stop))dlsym(lib,
	    "ev_prepare_stop")) == NULL ||
	    (ev.timer_start = (__typeof__(ev.timer_start))dlsym(lib,
	    "ev_timer_start")) == NULL ||
	    (ev.timer_stop = (__typeof__(ev.timer_stop))dlsym(lib,
	    "ev_timer_stop")) == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		dlclose(lib);
		lib = NULL;
		return -1;
	}
	return 0;
}

/* Before each turn of the loop: should the thread leave? */
static void
check_leave(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)w;
	(void)revents;
	if (leave())
		ev.brk(loop, EVBREAK_ALL);
}

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	tick();
}

/*
 * A new epoll loop, whose run ends once should_leave() says so (it is
 * asked before each turn), and which calls tick() every second; NULL,
 * with why in err, when libev is not there.
 */
struct ev_loop *
sqc_wsev_new(int (*should_leave)(void), void (*tick_cb)(void), char *err,
    size_t errlen)
{
	struct ev_loop *loop;

	if (lib == NULL && load(err, errlen) != 0)
		return NULL;
	if ((loop = ev.loop_new(EVBACKEND_EPOLL)) == NULL) {
		snprintf(err, errlen, "libev has no epoll loop");
		return NULL;
	}
	leave = should_leave;
	tick = tick_cb;
	ev_prepare_init(&before_turn, check_leave);
	ev.prepare_start(loop, &before_turn);
	ev_timer_init(&ticker, on_tick, 1., 1.);
	ev.timer_start(loop, &ticker);
	return loop;
}

/* Service thread: runs loop until should_leave() says so. */
void
sqc_wsev_run(struct ev_loop *loop)
{
	ev.run(loop, 0);
}

/* Loop thread, the service thread gone: frees loop (NULL is fine). */
void
sqc_wsev_free(struct ev_loop *loop)
{
	if (loop == NULL)
		return;
	ev.prepare_stop(loop, &before_turn);
	ev.timer_stop(loop, &ticker);
	ev.loop_destroy(loop);
}
