/*
 * hello - answers every GET with the route's `text` option. The worked
 * example for plugin authors: options read and checked in create, state
 * freed in destroy, one synchronous response in handle.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

struct hello {
	char	*text;
	size_t	 len;
};

static int
hello_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct hello *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return -ENOMEM;
	/* Options must be copied: the strings die when create returns. */
	if ((h->text = strdup(sq_opt_str(opts, "text", "Hello, world"))) ==
	    NULL) {
		free(h);
		return -ENOMEM;
	}
	h->len = strlen(h->text);
	*state = h;
	return 0;
}

static void
hello_destroy(void *state)
{
	struct hello *h = state;

	free(h->text);
	free(h);
}

static void
hello_handle(void *state, struct sq_req *req)
{
	struct hello *h = state;
	const char *m = sq_req_method(req);

	if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
		sq_resp_header(req, "Allow", "GET, HEAD");
		sq_resp_error(req, 405);
		return;
	}
	sq_resp_send(req, 200, h->text, h->len);
}

SQ_PLUGIN(
	.name = "hello",
	.version = "1.0",
	.create = hello_create,
	.destroy = hello_destroy,
	.handle = hello_handle,
);
