/*
 * failcreate - refuses to be created: with `fail = option` it blames the
 * option `why` (so the error names its line), otherwise it returns -EIO.
 */
#include <errno.h>
#include <string.h>

#include <squall/plugin.h>

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	const char *fail = sq_opt_str(opts, "fail", "io");

	sq_opt_str(opts, "why", NULL);
	if (strcmp(fail, "option") == 0)
		return sq_opt_error(opts, "why", "failcreate does not like "
		    "this option");
	return -EIO;
}

static void
handle(void *state, struct sq_req *req)
{
	sq_resp_send(req, 500, NULL, 0);
}

SQ_PLUGIN(.name = "failcreate", .version = "0", .create = create,
    .handle = handle);
