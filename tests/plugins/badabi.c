/* badabi - a descriptor built for another plugin ABI version. */
#include <squall/plugin.h>

static void
handle(void *state, struct sq_req *req)
{
	sq_resp_send(req, 200, "no", 2);
}

__attribute__((visibility("default")))
const struct sq_plugin sq_plugin_descriptor = {
	.abi = SQ_PLUGIN_ABI + 41,
	.name = "badabi",
	.handle = handle,
};
