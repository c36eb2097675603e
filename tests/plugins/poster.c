/*
 * poster - exercises the fetch setters and response accessors: POSTs
 * "ping" with a header to its `url` and answers with the upstream's
 * status, body and X-Upstream and Content-Type headers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	*state = strdup(sq_opt_str(opts, "url", "/"));
	return *state ? 0 : -ENOMEM;
}

static void
destroy(void *state)
{
	free(state);
}

static void
on_done(struct sq_fetch *f, void *arg)
{
	struct sq_req *req = arg;
	const char *up = sq_fetch_header(f, "x-upstream");
	const char *ct = sq_fetch_header(f, "Content-Type");

	sq_resp_printf(req, 200, "%ld %s [%s] [%s] [%s]\n", sq_fetch_status(f),
	    sq_fetch_body(f, NULL), up ? up : "-", ct ? ct : "-",
	    sq_fetch_header(f, "no-such-header") ? "?" : "-");
}

static void
handle(void *state, struct sq_req *req)
{
	struct sq_fetch *f = sq_fetch_new(sq_req_inst(req), state);

	sq_fetch_set_method(f, "POST");
	sq_fetch_add_header(f, "X-Test: from-squall");
	sq_fetch_set_body(f, "ping", 4);
	sq_fetch_start(f, on_done, req);
}

SQ_PLUGIN(.name = "poster", .version = "test", .create = create,
    .destroy = destroy, .handle = handle);
