/* unresolved - calls a function that no squalld provides. */
#include <squall/plugin.h>

void sq_function_that_does_not_exist(struct sq_req *req);

static void
handle(void *state, struct sq_req *req)
{
	sq_function_that_does_not_exist(req);
}

SQ_PLUGIN(.name = "unresolved", .version = "0", .handle = handle);
