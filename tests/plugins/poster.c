/*
 * poster - exercises the fetch setters and response accessors: POSTs
 * "ping" with a header to its `url` and answers with the upstream's
 * status, body and X-Upstream and Content-Type headers. With `times = N`
 * it fetches N times in a row, each fetch started from the callback of the
 * one before, and answers with the last.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

struct conf {
	char		*url;
	long long	 times;
};

struct run {
	struct sq_req	*req;
	struct conf	*conf;
	long long	 left;
};

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct conf *c = calloc(1, sizeof(*c));
	int rc;

	if (c == NULL)
		return -ENOMEM;
	if ((rc = sq_opt_int(opts, "times", 1, 1, 100, &c->times)) != 0 ||
	    (c->url = strdup(sq_opt_str(opts, "url", "/"))) == NULL) {
		free(c);
		return rc ? rc : -ENOMEM;
	}
	*state = c;
	return 0;
}

static void
destroy(void *state)
{
	struct conf *c = state;

	free(c->url);
	free(c);
}

static void start(struct run *r);

static void
on_done(struct sq_fetch *f, void *arg)
{
	struct run *r = arg;
	struct sq_req *req = r->req;
	const char *up = sq_fetch_header(f, "x-upstream");
	const char *ct = sq_fetch_header(f, "Content-Type");

	if (--r->left > 0 && sq_fetch_error(f) == 0) {
		start(r);	/* from inside the callback */
		return;
	}
	free(r);
	sq_resp_printf(req, 200, "%ld %s [%s] [%s] [%s]\n", sq_fetch_status(f),
	    sq_fetch_body(f, NULL), up ? up : "-", ct ? ct : "-",
	    sq_fetch_header(f, "no-such-header") ? "?" : "-");
}

static void
start(struct run *r)
{
	struct sq_fetch *f = sq_fetch_new(sq_req_inst(r->req), r->conf->url);

	sq_fetch_set_method(f, "POST");
	sq_fetch_add_header(f, "X-Test: from-squall");
	sq_fetch_set_body(f, "ping", 4);
	sq_fetch_start(f, on_done, r);
}

static void
handle(void *state, struct sq_req *req)
{
	struct run *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		sq_resp_send(req, 503, NULL, 0);
		return;
	}
	r->req = req;
	r->conf = state;
	r->left = r->conf->times;
	start(r);
}

SQ_PLUGIN(.name = "poster", .version = "test", .create = create,
    .destroy = destroy, .handle = handle);
