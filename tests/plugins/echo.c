/*
 * echo - answers with everything the plugin API says about the request,
 * as JSON through sq_resp_json: method, path, subpath, query, one
 * argument, one header, body, client address, route, whether it came by
 * TLS, and the repeated
 * `item` options, and the pid of the process that answered. Logs one line
 * per request with sq_log.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <json-c/json.h>
#include <squall/plugin.h>

struct echo {
	struct sq_inst		*inst;
	struct json_object	*items;
	long long		 status;
};

static int
create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct echo *e = calloc(1, sizeof(*e));
	size_t n = sq_opt_count(opts, "item");

	if (e == NULL)
		return -ENOMEM;
	if (sq_opt_int(opts, "status", 200, 200, 599, &e->status) != 0) {
		free(e);
		return -EINVAL;
	}
	e->inst = inst;
	e->items = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		json_object_array_add(e->items,
		    json_object_new_string(sq_opt_at(opts, "item", i)));
	*state = e;
	return 0;
}

static void
destroy(void *state)
{
	struct echo *e = state;

	json_object_put(e->items);
	free(e);
}

static struct json_object *
str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static void
handle(void *state, struct sq_req *req)
{
	struct echo *e = state;
	struct json_object *o = json_object_new_object();
	size_t len;
	const char *body = sq_req_body(req, &len);

	json_object_object_add(o, "method",
	    json_object_new_string(sq_req_method(req)));
	json_object_object_add(o, "path", str_or_null(sq_req_path(req)));
	json_object_object_add(o, "subpath", str_or_null(sq_req_subpath(req)));
	json_object_object_add(o, "query", str_or_null(sq_req_query(req)));
	json_object_object_add(o, "arg", str_or_null(sq_req_arg(req, "a")));
	json_object_object_add(o, "header",
	    str_or_null(sq_req_header(req, "x-test")));
	json_object_object_add(o, "body",
	    json_object_new_string_len(body, (int)len));
	json_object_object_add(o, "client",
	    str_or_null(sq_req_client_ip(req)));
	json_object_object_add(o, "route",
	    str_or_null(sq_inst_route(sq_req_inst(req))));
	json_object_object_add(o, "tls", json_object_new_boolean(
	    sq_req_tls(req)));
	json_object_object_add(o, "http", json_object_new_int(
	    sq_req_http_version(req)));
	json_object_object_add(o, "items", json_object_get(e->items));
	json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
	sq_log(e->inst, SQ_LOG_INFO, "echo %s from %s", sq_req_path(req),
	    sq_req_client_ip(req));
	sq_resp_json(req, (int)e->status, o);
	json_object_put(o);
}

SQ_PLUGIN(.name = "echo", .version = "test", .create = create,
    .destroy = destroy, .handle = handle);
