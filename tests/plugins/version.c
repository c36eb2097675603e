/*
 * version - answers "version N from INSTANCE" where N is fixed at build
 * time (-DVERSION=N, built twice as v1.so and v2.so) and INSTANCE counts
 * the instances ever created in this copy of the module. The reload tests
 * swap one build for the other on disk and check which code answers.
 */
#include <errno.h>
#include <stdlib.h>

#include <squall/plugin.h>

#ifndef VERSION
#define VERSION 0
#endif

static int created;

struct st {
	int	 serial;
	const char *tag;
};

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct st *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->serial = ++created;
	s->tag = sq_opt_str(opts, "tag", "");	/* read so it is accepted */
	s->tag = NULL;
	*state = s;
	return 0;
}

static void
destroy(void *state)
{
	free(state);
}

static void
handle(void *state, struct sq_req *req)
{
	struct st *s = state;

	sq_resp_printf(req, 200, "version %d instance %d\n", VERSION,
	    s->serial);
}

SQ_PLUGIN(.name = "version", .version = "test", .create = create,
    .destroy = destroy, .handle = handle);
