/*
 * counter - counts the requests of its route and answers {"count": N}.
 * Shows state kept per instance (each route that names counter has its
 * own count, kept across a reload that changes neither the route nor
 * the plugin) and a JSON answer built with json-c, sent with
 * sq_resp_json.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <json-c/json.h>
#include <squall/plugin.h>

struct counter {
	int64_t	 count;
};

static int
counter_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct counter *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -ENOMEM;
	*state = c;
	return 0;
}

static void
counter_destroy(void *state)
{
	free(state);
}

static void
counter_handle(void *state, struct sq_req *req)
{
	struct counter *c = state;
	struct json_object *obj;

	/* No lock: every callback runs on the loop thread, one at a time. */
	c->count++;
	if ((obj = json_object_new_object()) == NULL ||
	    json_object_object_add(obj, "count",
	    json_object_new_int64(c->count)) != 0) {
		json_object_put(obj);
		sq_resp_error(req, 500);
		return;
	}
	sq_resp_json(req, 200, obj);
	/* sq_resp_json serialised it: our reference is still ours to drop. */
	json_object_put(obj);
}

SQ_PLUGIN(
	.name = "counter",
	.version = "1.0",
	.create = counter_create,
	.destroy = counter_destroy,
	.handle = counter_handle,
);
