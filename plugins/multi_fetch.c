/*
 * multi_fetch - the parallel handler of the seed (the Tornado tutorial
 * this project re-creates): `url.NAME = URL`, repeated;
 * every URL is fetched at once with a fetch group, and the answer is
 * {"NAME": <JSON>, ...} when all are done, so the total time is that of
 * the slowest fetch, not the sum. If one fails: 502 naming it, unless
 * `partial = on`, which answers with null for it and an "errors" object.
 * A client that leaves cancels the whole group.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <squall/plugin.h>

#include "upstream_json.h"

struct target {
	char	*name;
	char	*url;
};

struct mf {
	struct sq_inst	*inst;
	struct target	*targets;
	size_t		 n;
	long long	 timeout_ms;
	size_t		 max_size;
	int		 partial;
	struct upstream_tls tls;
};

struct call {
	struct mf	*mf;
	struct sq_req	*req;		/* NULL once the client left */
	struct sq_fetch_group *group;
};

static void
mf_destroy(void *state)
{
	struct mf *m = state;

	for (size_t i = 0; i < m->n; i++) {
		free(m->targets[i].name);
		free(m->targets[i].url);
	}
	free(m->targets);
	upstream_tls_free(&m->tls);
	free(m);
}

static int
valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int
add_target(struct mf *m, struct sq_opts *opts, const char *key,
    const char *url)
{
	const char *name = key + strlen("url.");
	struct target *t;

	if (!valid_name(name))
		return sq_opt_error(opts, key, "'%s': a name after 'url.' is "
		    "letters, digits, '_' and '-'", key);
	if (!upstream_url_ok(url))
		return sq_opt_error(opts, key, "url '%s' is not http://, "
		    "https:// or a path on this server", url);
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->targets[i].name, name) == 0)
			return sq_opt_error(opts, key, "'%s' given twice", key);
	if ((t = realloc(m->targets, (m->n + 1) * sizeof(*t))) == NULL)
		return -ENOMEM;
	m->targets = t;
	t = &m->targets[m->n];
	t->name = strdup(name);
	t->url = strdup(url);
	m->n++;
	return t->name && t->url ? 0 : -ENOMEM;
}

static int
mf_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct mf *m = calloc(1, sizeof(*m));
	const char *key, *value;
	size_t iter = 0;
	int rc = 0;

	if (m == NULL)
		return -ENOMEM;
	m->inst = inst;
	while (rc == 0 && sq_opt_next(opts, "url.", &iter, &key, &value))
		rc = add_target(m, opts, key, value);
	if (rc == 0 && m->n == 0)
		rc = sq_opt_error(opts, NULL, "multi_fetch needs at least one "
		    "'url.NAME = URL'");
	if (rc == 0)
		rc = sq_opt_int(opts, "timeout_ms", 10000, 1, 600000,
		    &m->timeout_ms);
	if (rc == 0)
		rc = sq_opt_size(opts, "max_response_size", 1 << 20,
		    &m->max_size);
	if (rc == 0)
		rc = sq_opt_bool(opts, "partial", 0, &m->partial);
	if (rc == 0)
		rc = upstream_tls_opts(inst, opts, &m->tls);
	if (rc != 0) {
		mf_destroy(m);
		return rc;
	}
	*state = m;
	return 0;
}

static void
on_abort(struct sq_req *req, void *arg)
{
	struct call *c = arg;

	c->req = NULL;
	sq_log(c->mf->inst, SQ_LOG_DEBUG, "client left: cancelling %zu "
	    "fetches", c->mf->n);
	sq_fetch_group_cancel(c->group);
}

static void
on_all_fetched(struct sq_fetch_group *g, void *arg)
{
	struct call *c = arg;
	struct mf *m = c->mf;
	struct json_object *reply, *errors = NULL, *data;
	char why[512], first[600] = "";
	int status = 200, st;

	if (c->req == NULL) {
		free(c);
		return;
	}
	reply = json_object_new_object();
	for (size_t i = 0; i < m->n; i++) {
		st = upstream_json(sq_fetch_group_at(g, i), &data, why,
		    sizeof(why));
		if (st == 200) {
			json_object_object_add(reply, m->targets[i].name, data);
			continue;
		}
		sq_log(m->inst, SQ_LOG_WARN, "%s (%s): %s", m->targets[i].name,
		    m->targets[i].url, why);
		if (first[0] == '\0')
			snprintf(first, sizeof(first), "%s: %s",
			    m->targets[i].name, why);
		json_object_object_add(reply, m->targets[i].name, NULL);
		if (errors == NULL)
			errors = json_object_new_object();
		json_object_object_add(errors, m->targets[i].name,
		    json_object_new_string(why));
	}
	if (errors && m->partial)
		json_object_object_add(reply, "errors", errors);
	else if (errors) {
		json_object_put(errors);
		json_object_put(reply);
		reply = json_object_new_object();
		json_object_object_add(reply, "error",
		    json_object_new_string(first));
		status = 502;
	}
	sq_resp_json(c->req, status, reply);
	json_object_put(reply);
	free(c);
}

static void
mf_handle(void *state, struct sq_req *req)
{
	struct mf *m = state;
	const char *meth = sq_req_method(req);
	struct call *c;

	if (strcmp(meth, "GET") != 0 && strcmp(meth, "HEAD") != 0) {
		sq_resp_header(req, "Allow", "GET, HEAD");
		sq_resp_error(req, 405);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->group = sq_fetch_group_new(m->inst)) == NULL) {
		free(c);
		sq_resp_error(req, 503);
		return;
	}
	c->mf = m;
	c->req = req;
	for (size_t i = 0; i < m->n; i++) {
		struct sq_fetch *f = sq_fetch_new(m->inst, m->targets[i].url);

		if (f == NULL || upstream_tls_apply(f, &m->tls) != 0 ||
		    sq_fetch_group_add(c->group, f) != 0) {
			sq_fetch_cancel(f);
			sq_fetch_group_cancel(c->group);
			free(c);
			sq_resp_error(req, 503);
			return;
		}
		sq_fetch_set_timeout(f, (uint64_t)m->timeout_ms);
		sq_fetch_set_max_size(f, m->max_size);
	}
	sq_fetch_group_start(c->group, on_all_fetched, c);
	sq_req_on_abort(req, on_abort, c);
}

SQ_PLUGIN(
	.name = "multi_fetch",
	.version = "1.0",
	.create = mf_create,
	.destroy = mf_destroy,
	.handle = mf_handle,
);
