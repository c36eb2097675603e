/*
 * async - waits `delay_ms` on a timer, then fetches `url` with the
 * server's shared HTTP client, then answers with what came back. Shows
 * a handler that returns without responding, two asynchronous steps in
 * a row, and a client that leaves early: the abort callback cancels
 * whichever step is pending, and that step's callback (which always
 * runs, exactly once) frees the request's state.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

struct async {
	struct sq_inst	*inst;
	char		*url;
	long long	 delay_ms;
};

struct pending {
	struct async	*a;
	struct sq_req	*req;		/* NULL once the client left */
	struct sq_timer	*timer;		/* the step under way, if any */
	struct sq_fetch	*fetch;
};

static int
async_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct async *a = calloc(1, sizeof(*a));
	const char *url = sq_opt_str(opts, "url", NULL);

	if (a == NULL)
		return -ENOMEM;
	if (url == NULL) {
		free(a);
		return sq_opt_error(opts, NULL, "url is required (a URL "
		    "starting with / is this server)");
	}
	if (sq_opt_int(opts, "delay_ms", 100, 0, 60000, &a->delay_ms) != 0) {
		free(a);
		return -EINVAL;
	}
	if ((a->url = strdup(url)) == NULL) {
		free(a);
		return -ENOMEM;
	}
	a->inst = inst;
	*state = a;
	return 0;
}

static void
async_destroy(void *state)
{
	struct async *a = state;

	free(a->url);
	free(a);
}

static void
on_abort(struct sq_req *req, void *arg)
{
	struct pending *p = arg;

	p->req = NULL;
	if (p->timer != NULL)
		sq_timer_cancel(p->timer);
	else if (p->fetch != NULL)
		sq_fetch_cancel(p->fetch);
}

static void
on_fetched(struct sq_fetch *f, void *arg)
{
	struct pending *p = arg;
	const char *body, *type;
	size_t len;

	p->fetch = NULL;	/* freed when this callback returns */
	if (p->req != NULL && sq_fetch_error(f) != 0)
		sq_resp_printf(p->req, 502, "fetching %s: %s\n", p->a->url,
		    sq_fetch_errstr(f));
	else if (p->req != NULL) {
		body = sq_fetch_body(f, &len);
		if ((type = sq_fetch_header(f, "Content-Type")) != NULL)
			sq_resp_header(p->req, "Content-Type", type);
		sq_resp_send(p->req, (int)sq_fetch_status(f), body, len);
	}
	free(p);
}

static void
on_timer(int status, void *arg)
{
	struct pending *p = arg;

	p->timer = NULL;	/* freed when this callback returns */
	if (p->req == NULL || status != 0) {
		/* cancelled: by on_abort, or because the server stops */
		if (p->req != NULL)
			sq_resp_error(p->req, 503);
		free(p);
		return;
	}
	if ((p->fetch = sq_fetch_new(p->a->inst, p->a->url)) == NULL) {
		sq_resp_error(p->req, 503);
		free(p);
		return;
	}
	sq_fetch_start(p->fetch, on_fetched, p);
}

static void
async_handle(void *state, struct sq_req *req)
{
	struct async *a = state;
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		sq_resp_error(req, 503);
		return;
	}
	p->a = a;
	p->req = req;
	if ((p->timer = sq_timer_start(a->inst, (uint64_t)a->delay_ms,
	    on_timer, p)) == NULL) {
		free(p);
		sq_resp_error(req, 503);
		return;
	}
	sq_req_on_abort(req, on_abort, p);
}

SQ_PLUGIN(
	.name = "async",
	.version = "1.0",
	.create = async_create,
	.destroy = async_destroy,
	.handle = async_handle,
);
