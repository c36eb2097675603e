/*
 * delay - answers after ?ms=N milliseconds: the point of the seed (the
 * Tornado tutorial this project re-creates) that a slow request does
 * not hold up the others. With `mode = timer` (the default)
 * it waits on a timer of the server's loop; with `mode = thread` it
 * sleeps in the offload pool, as a blocking database call would. Shows
 * the asynchronous side of the API: the handler returns without
 * responding, the timer or job responds later, and a client that leaves
 * first cancels the timer or the job (if it has not started) through the
 * abort callback. A full offload queue is answered 503 at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squall/plugin.h>

struct delay {
	long long	 max_ms;
	long long	 def_ms;
	int		 thread;	/* mode = thread */
};

struct pending {
	struct sq_req	*req;		/* NULL once the client left */
	struct sq_timer	*timer;
	struct sq_job	*job;		/* until on_timer */
	long long	 ms;
};

static int
delay_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct delay *d = calloc(1, sizeof(*d));
	const char *mode;

	if (d == NULL)
		return -ENOMEM;
	if (sq_opt_int(opts, "max_ms", 60000, 0, 3600000, &d->max_ms) != 0 ||
	    sq_opt_int(opts, "default_ms", 1000, 0, d->max_ms,
	    &d->def_ms) != 0) {
		free(d);
		return -EINVAL;
	}
	mode = sq_opt_str(opts, "mode", "timer");
	if (strcmp(mode, "thread") == 0)
		d->thread = 1;
	else if (strcmp(mode, "timer") != 0) {
		free(d);
		return sq_opt_error(opts, "mode", "unknown mode '%s': expected "
		    "timer or thread", mode);
	}
	*state = d;
	return 0;
}

static void
delay_destroy(void *state)
{
	free(state);
}

static void
on_abort(struct sq_req *req, void *arg)
{
	struct pending *p = arg;

	p->req = NULL;
	sq_timer_cancel(p->timer);
}

static void
on_timer(int status, void *arg)
{
	struct pending *p = arg;

	if (p->req != NULL) {
		if (status == 0)
			sq_resp_printf(p->req, 200, "waited %lld ms\n", p->ms);
		else
			sq_resp_error(p->req, 503);
	}
	free(p);
}

/* Offload pool thread: block, as a slow library call would. */
static void
sleep_work(void *arg)
{
	struct pending *p = arg;
	struct timespec ts = { (time_t)(p->ms / 1000),
	    (long)(p->ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void
on_abort_thread(struct sq_req *req, void *arg)
{
	struct pending *p = arg;

	p->req = NULL;
	/* a sleep that started cannot be interrupted; one waiting can go */
	sq_job_cancel(p->job);
}

static void
delay_handle(void *state, struct sq_req *req)
{
	struct delay *d = state;
	const char *arg = sq_req_arg(req, "ms");
	struct pending *p;
	char *end;
	long long ms = d->def_ms;

	if (arg != NULL) {
		ms = strtoll(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || ms < 0 || ms > d->max_ms) {
			sq_resp_printf(req, 400, "ms must be an integer from 0 "
			    "to %lld\n", d->max_ms);
			return;
		}
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		sq_resp_error(req, 503);
		return;
	}
	p->req = req;
	p->ms = ms;
	if (d->thread) {
		if ((p->job = sq_offload(sq_req_inst(req), sleep_work,
		    on_timer, p)) == NULL) {
			free(p);
			sq_resp_error(req, 503);
			return;
		}
		sq_req_on_abort(req, on_abort_thread, p);
		return;
	}
	if ((p->timer = sq_timer_start(sq_req_inst(req), (uint64_t)ms,
	    on_timer, p)) == NULL) {
		free(p);
		sq_resp_error(req, 503);
		return;
	}
	sq_req_on_abort(req, on_abort, p);
}

SQ_PLUGIN(
	.name = "delay",
	.version = "1.0",
	.create = delay_create,
	.destroy = delay_destroy,
	.handle = delay_handle,
);
