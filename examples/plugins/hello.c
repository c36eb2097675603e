/*
 * hello - answers every request with the route's `text` option. Shows
 * the whole life of a plugin: an option read and copied in create, the
 * state freed in destroy, one synchronous response in handle.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

static int
hello_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	/* Copy: the option's string dies when create returns. */
	char *text = strdup(sq_opt_str(opts, "text", "Hello, world\n"));

	if (text == NULL)
		return -ENOMEM;
	*state = text;
	return 0;
}

static void
hello_destroy(void *state)
{
	free(state);
}

static void
hello_handle(void *state, struct sq_req *req)
{
	const char *text = state;

	sq_resp_send(req, 200, text, strlen(text));
}

SQ_PLUGIN(
	.name = "hello",
	.version = "1.0",
	.create = hello_create,
	.destroy = hello_destroy,
	.handle = hello_handle,
);
