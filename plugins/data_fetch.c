/*
 * data_fetch - the first handler of the seed (the Tornado tutorial this
 * project re-creates): on GET, fetch the configured
 * `url` with the shared asynchronous client, parse the body as JSON and
 * answer {"data": <upstream JSON>}. Unreachable, non-2xx, too large or
 * not JSON: 502 {"error": ...}; timed out: 504. With `coalesce` (on by
 * default) concurrent requests share one upstream fetch. A client that
 * leaves stops waiting; when nobody waits any more, the fetch is
 * cancelled. Shows sq_fetch_*, abort callbacks and sq_resp_json.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <squall/plugin.h>

#include "upstream_json.h"

struct df {
	struct sq_inst	*inst;
	char		*url;
	long long	 timeout_ms;
	size_t		 max_size;
	int		 coalesce;
	struct upstream_tls tls;
	struct flight	*current;	/* the fetch new requests may join */
};

struct waiter {
	struct sq_req	*req;
	struct flight	*fl;
	struct waiter	*prev, *next;
};

struct flight {
	struct df	*df;
	struct sq_fetch	*fetch;
	struct waiter	*waiters;
	size_t		 nwaiters;
};

static int
df_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct df *d;
	const char *url = sq_opt_str(opts, "url", NULL);

	if (url == NULL)
		return sq_opt_error(opts, NULL, "data_fetch needs a 'url'");
	if (!upstream_url_ok(url))
		return sq_opt_error(opts, "url", "url '%s' is not http://, "
		    "https:// or a path on this server", url);
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	d->inst = inst;
	if (sq_opt_int(opts, "timeout_ms", 10000, 1, 600000,
	    &d->timeout_ms) != 0 ||
	    sq_opt_size(opts, "max_response_size", 1 << 20, &d->max_size) != 0 ||
	    sq_opt_bool(opts, "coalesce", 1, &d->coalesce) != 0 ||
	    upstream_tls_opts(inst, opts, &d->tls) != 0) {
		free(d);
		return -EINVAL;
	}
	if ((d->url = strdup(url)) == NULL) {
		upstream_tls_free(&d->tls);
		free(d);
		return -ENOMEM;
	}
	*state = d;
	return 0;
}

static void
df_destroy(void *state)
{
	struct df *d = state;

	upstream_tls_free(&d->tls);
	free(d->url);
	free(d);
}

static void
waiter_remove(struct waiter *w)
{
	struct flight *fl = w->fl;

	if (w->prev)
		w->prev->next = w->next;
	else
		fl->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	fl->nwaiters--;
	free(w);
}

static void
on_abort(struct sq_req *req, void *arg)
{
	struct waiter *w = arg;
	struct flight *fl = w->fl;

	waiter_remove(w);
	if (fl->nwaiters == 0) {
		sq_log(fl->df->inst, SQ_LOG_DEBUG, "nobody waits for %s any "
		    "more: cancelling the fetch", fl->df->url);
		if (fl->df->current == fl)
			fl->df->current = NULL;
		sq_fetch_cancel(fl->fetch);
	}
}

static void
on_fetched(struct sq_fetch *f, void *arg)
{
	struct flight *fl = arg;
	struct json_object *data, *reply = json_object_new_object();
	char why[512];
	int status;

	if (fl->df->current == fl)
		fl->df->current = NULL;
	status = upstream_json(f, &data, why, sizeof(why));
	if (status == 200)
		json_object_object_add(reply, "data", data);
	else {
		json_object_object_add(reply, "error",
		    json_object_new_string(why));
		if (fl->nwaiters > 0)
			sq_log(fl->df->inst, SQ_LOG_WARN, "%s: %s",
			    sq_fetch_url(f), why);
	}
	while (fl->waiters) {
		struct waiter *w = fl->waiters;

		sq_resp_json(w->req, status, reply);
		waiter_remove(w);
	}
	json_object_put(reply);
	free(fl);
}

static struct flight *
flight_start(struct df *d)
{
	struct flight *fl = calloc(1, sizeof(*fl));

	if (fl == NULL)
		return NULL;
	if ((fl->fetch = sq_fetch_new(d->inst, d->url)) == NULL) {
		free(fl);
		return NULL;
	}
	if (upstream_tls_apply(fl->fetch, &d->tls) != 0) {
		sq_fetch_cancel(fl->fetch);
		free(fl);
		return NULL;
	}
	fl->df = d;
	sq_fetch_set_timeout(fl->fetch, (uint64_t)d->timeout_ms);
	sq_fetch_set_max_size(fl->fetch, d->max_size);
	sq_fetch_start(fl->fetch, on_fetched, fl);
	return fl;
}

static void
df_handle(void *state, struct sq_req *req)
{
	struct df *d = state;
	const char *m = sq_req_method(req);
	struct flight *fl = d->coalesce ? d->current : NULL;
	struct waiter *w;

	if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
		sq_resp_header(req, "Allow", "GET, HEAD");
		sq_resp_error(req, 405);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		sq_resp_error(req, 503);
		return;
	}
	if (fl == NULL && (fl = flight_start(d)) == NULL) {
		free(w);
		sq_resp_error(req, 503);
		return;
	}
	if (d->coalesce)
		d->current = fl;
	w->req = req;
	w->fl = fl;
	w->next = fl->waiters;
	if (fl->waiters)
		fl->waiters->prev = w;
	fl->waiters = w;
	fl->nwaiters++;
	sq_req_on_abort(req, on_abort, w);
}

SQ_PLUGIN(
	.name = "data_fetch",
	.version = "1.0",
	.create = df_create,
	.destroy = df_destroy,
	.handle = df_handle,
);
