/*
 * canceller - cancels fetches from inside callbacks, the cases the fetch
 * client must survive: a slow fetch cancelled from the completion
 * callback of a fast one, and a group cancelled from a timer. Options:
 * `fast` and `slow`, two URLs. Answers "fast=STATUS slow=ERROR group=ERROR".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

struct urls {
	char	*fast, *slow;
};

struct run {
	struct sq_req	*req;
	struct sq_fetch	*slow;
	struct sq_fetch_group *group;
	long		 fast_status;
	int		 slow_error;
	int		 group_error;
	int		 pending;
};

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct urls *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return -ENOMEM;
	u->fast = strdup(sq_opt_str(opts, "fast", "/"));
	u->slow = strdup(sq_opt_str(opts, "slow", "/"));
	*state = u;
	return 0;
}

static void
destroy(void *state)
{
	struct urls *u = state;

	free(u->fast);
	free(u->slow);
	free(u);
}

static void
maybe_answer(struct run *r)
{
	if (--r->pending > 0)
		return;
	sq_resp_printf(r->req, 200, "fast=%ld slow=%s group=%s\n",
	    r->fast_status, sq_strerror(r->slow_error),
	    sq_strerror(r->group_error));
	free(r);
}

static void
on_slow(struct sq_fetch *f, void *arg)
{
	struct run *r = arg;

	r->slow_error = sq_fetch_error(f);
	maybe_answer(r);
}

static void
on_fast(struct sq_fetch *f, void *arg)
{
	struct run *r = arg;

	r->fast_status = sq_fetch_status(f);
	sq_fetch_cancel(r->slow);	/* from another fetch's callback */
	sq_fetch_cancel(r->slow);	/* twice is harmless */
	maybe_answer(r);
}

static void
on_group(struct sq_fetch_group *g, void *arg)
{
	struct run *r = arg;

	r->group_error = sq_fetch_error(sq_fetch_group_at(g, 0));
	maybe_answer(r);
}

static void
on_timer(int status, void *arg)
{
	struct run *r = arg;

	sq_fetch_group_cancel(r->group);	/* from a timer */
}

static void
handle(void *state, struct sq_req *req)
{
	struct urls *u = state;
	struct sq_inst *inst = sq_req_inst(req);
	struct run *r = calloc(1, sizeof(*r));
	struct sq_fetch *fast = sq_fetch_new(inst, u->fast);

	r->req = req;
	r->pending = 3;
	r->slow = sq_fetch_new(inst, u->slow);
	r->group = sq_fetch_group_new(inst);
	sq_fetch_group_add(r->group, sq_fetch_new(inst, u->slow));
	sq_fetch_start(r->slow, on_slow, r);
	sq_fetch_start(fast, on_fast, r);
	sq_fetch_group_start(r->group, on_group, r);
	sq_timer_start(inst, 100, on_timer, r);
}

SQ_PLUGIN(.name = "canceller", .version = "test", .create = create,
    .destroy = destroy, .handle = handle);
