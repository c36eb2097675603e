/*
 * gen.c - generations: the routing table of one configuration, its
 * instances created (or reused, when a reload keeps a route's plugin and
 * options), and what a reload changed. A reload switches between them.
 * Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "plugin_priv.h"

static int
same_opts(const struct sq_inst *inst, const struct sqc_route_conf *r)
{
	if (inst->nopts != r->nopts)
		return 0;
	for (size_t i = 0; i < r->nopts; i++)
		if (strcmp(inst->opts[i].key, r->opts[i].key) != 0 ||
		    strcmp(inst->opts[i].value, r->opts[i].value) != 0)
			return 0;
	return 1;
}

static char *
route_name(const struct sqc_route_conf *r)
{
	char *s;

	if (asprintf(&s, "%s%s", r->path, r->prefix ? "*" : "") < 0)
		return NULL;
	return s;
}

/* An instance of the old generation that can serve r unchanged. */
static struct sq_inst *
find_reusable(const struct sqc_gen *old, const struct sqc_route_conf *r,
    const struct sqc_module *mod, const char *name)
{
	for (size_t i = 0; old && i < old->ninsts; i++) {
		struct sq_inst *in = old->insts[i];

		if (in->mod == mod && strcmp(in->route, name) == 0 &&
		    same_opts(in, r))
			return in;
	}
	return NULL;
}

static struct sq_inst *
inst_create(struct sqc_config *c, struct sqc_route_conf *r,
    struct sqc_module *mod, char *name, char *err, size_t errlen)
{
	struct sq_opts o = { c, r, err, errlen, 0 };
	struct sq_inst *inst;
	int rc;

	if ((inst = calloc(1, sizeof(*inst))) == NULL ||
	    (inst->opts = calloc(r->nopts + 1, sizeof(*inst->opts))) == NULL) {
		free(inst);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	inst->route = name;
	inst->mod = mod;
	inst->desc = mod->desc;
	inst->refs = 1;
	for (size_t i = 0; i < r->nopts; i++) {
		inst->opts[i].key = strdup(r->opts[i].key);
		inst->opts[i].value = strdup(r->opts[i].value);
		inst->nopts++;
		r->opts[i].used = 0;
	}
	sqc_inst_note_init(inst);
	if (mod->desc->create) {
		struct sq_inst *prev = sqc_inst_enter(inst);

		rc = mod->desc->create(inst, &o, &inst->state);
		sqc_inst_leave(prev);
	} else
		rc = 0;
	if (rc == 0) {
		for (size_t i = 0; i < r->nopts; i++)
			if (!r->opts[i].used) {
				sqc_opts_fail_at(&o, r->opts[i].line, "plugin "
				    "'%s' has no option '%s'", mod->desc->name,
				    r->opts[i].key);
				rc = -EINVAL;
				break;
			}
		/*
		 * The instance was created: it may have started timers
		 * (chat's settle) that hold references on it and call back
		 * into its code. It goes like any other, at its last
		 * reference, and keeps its module until then (the caller
		 * drops the reference it was given for this instance).
		 */
		if (rc != 0) {
			mod->refs++;
			sqc_inst_unref(inst);
			return NULL;
		}
	} else if (!o.failed)
		sqc_opts_fail_at(&o, r->line, "plugin '%s' failed to create "
		    "its instance: %s", mod->desc->name, sq_strerror(rc));
	if (rc != 0) {
		inst->route = NULL;
		sqc_inst_free(inst);
		return NULL;
	}
	return inst;
}

static void
gen_free(struct sqc_gen *g)
{
	for (size_t i = 0; i < g->ninsts; i++)
		sqc_inst_unref(g->insts[i]);
	free(g->insts);
	free(g->ws_deflate);
	sqc_router_free(g->router);
	free(g);
}

/*
 * Loads every plugin of c and creates (or, from old, keeps) the instance
 * of every route. All or nothing: on error nothing of the new generation
 * is left and err says what failed. old may be NULL.
 */
struct sqc_gen *
sqc_gen_build(struct sqc_config *c, const struct sqc_gen *old, char *err,
    size_t errlen)
{
	struct sqc_gen *g;

	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (g->router = sqc_router_new()) == NULL ||
	    (g->insts = calloc(c->nroutes + 1, sizeof(*g->insts))) == NULL ||
	    (g->ws_deflate = calloc(c->nroutes + 1,
	    sizeof(*g->ws_deflate))) == NULL) {
		if (g) {
			sqc_router_free(g->router);
			free(g->insts);
		}
		free(g);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		struct sqc_route_conf *r = &c->routes[i];
		char lerr[SQC_ERRLEN];
		struct sqc_module *mod;
		struct sq_inst *inst;
		char *name;

		if ((mod = sqc_module_get(r->plugin, lerr,
		    sizeof(lerr))) == NULL) {
			snprintf(err, errlen, "%s:%d: route '%s%s': %s",
			    c->file, r->line, r->path, r->prefix ? "*" : "",
			    lerr);
			goto fail;
		}
		if ((name = route_name(r)) == NULL) {
			sqc_module_unref(mod);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if ((inst = find_reusable(old, r, mod, name)) != NULL) {
			free(name);
			sqc_module_unref(mod);
			sqc_inst_ref(inst);
			g->reused++;
		} else if ((inst = inst_create(c, r, mod, name, err,
		    errlen)) == NULL) {
			sqc_module_unref(mod);
			goto fail;
		}
		/*
		 * Route keys of the core's live here, not in the instance,
		 * which a reload may keep while they change.
		 */
		g->ws_deflate[g->ninsts] = r->ws_deflate;
		g->insts[g->ninsts++] = inst;
		if (sqc_router_add(g->router, r->path, r->prefix, inst) != 0) {
			snprintf(err, errlen, "%s:%d: cannot add route '%s'",
			    c->file, r->line, name);
			goto fail;
		}
	}
	return g;
fail:
	gen_free(g);
	return NULL;
}

/*
 * Does the plugin of route i (in the configuration order g was built
 * from) take WebSockets?
 */
int
sqc_gen_route_ws(const struct sqc_gen *g, size_t i)
{
	return i < g->ninsts && sqc_inst_handles_ws(g->insts[i]);
}

/* Drops the generation's references; instances die with their users. */
void
sqc_gen_release(struct sqc_gen *g)
{
	if (g)
		gen_free(g);
}

/* The instance for a normalised path, or NULL; see sqc_router_match. */
struct sq_inst *
sqc_gen_route(struct sqc_gen *g, const char *path, const char **rest)
{
	return sqc_router_match(g->router, path, rest);
}

/*
 * Whether WebSockets on inst's route may use permessage-deflate (the
 * route's ws_deflate key); 1 for an instance g does not serve.
 */
int
sqc_gen_ws_deflate(const struct sqc_gen *g, const struct sq_inst *inst)
{
	for (size_t i = 0; g && i < g->ninsts; i++)
		if (g->insts[i] == inst)
			return g->ws_deflate[i];
	return 1;
}

static const struct sq_inst *
gen_find(const struct sqc_gen *g, const char *route)
{
	for (size_t i = 0; g && i < g->ninsts; i++)
		if (strcmp(g->insts[i]->route, route) == 0)
			return g->insts[i];
	return NULL;
}

/*
 * How g's routes compare with old's: kept (the same instance), changed
 * (a route of old served by a new instance: other options, or a plugin
 * file replaced on disk) and new (a route old did not have).
 */
void
sqc_gen_diff(const struct sqc_gen *g, const struct sqc_gen *old,
    size_t *kept, size_t *changed, size_t *added)
{
	*kept = *changed = *added = 0;
	for (size_t i = 0; i < g->ninsts; i++) {
		const struct sq_inst *was = gen_find(old, g->insts[i]->route);

		if (was == g->insts[i])
			(*kept)++;
		else if (was != NULL)
			(*changed)++;
		else
			(*added)++;
	}
}

/*
 * Says in buf what g serves compared with old (NULL at start: every
 * route): the routes added and changed, each with its plugin's name and
 * version, the kept routes whose ws_deflate changed, and the routes
 * removed; routes kept as they were are left out.
 * Cut short with "..." when buf is too small.
 */
void
sqc_gen_describe(const struct sqc_gen *g, const struct sqc_gen *old,
    char *buf, size_t len)
{
	size_t off = 0, kept = 0;
	int n;

#define PUT(...) do {							\
	if (off < len && (n = snprintf(buf + off, len - off,		\
	    __VA_ARGS__)) > 0)						\
		off += (size_t)n;					\
} while (0)
	buf[0] = '\0';
	for (size_t i = 0; i < g->ninsts; i++) {
		const struct sq_inst *in = g->insts[i];
		const struct sq_inst *was = gen_find(old, in->route);

		if (was == in) {
			int on = sqc_gen_ws_deflate(g, in);

			kept++;
			/* the instance stays; a route key may still change */
			if (on != sqc_gen_ws_deflate(old, in))
				PUT("%s%s ws_deflate %s", off ? ", " : "",
				    in->route, on ? "on" : "off");
			continue;
		}
		PUT("%s%s%s (%s %s)", off ? ", " : "", was ? "changed " :
		    old ? "added " : "", in->route, in->desc->name,
		    in->desc->version ? in->desc->version : "?");
	}
	for (size_t i = 0; old && i < old->ninsts; i++)
		if (gen_find(g, old->insts[i]->route) == NULL)
			PUT("%sremoved %s", off ? ", " : "",
			    old->insts[i]->route);
	if (off == 0)
		PUT("%s", kept ? "nothing changed" : "no routes");
#undef PUT
	if (off >= len && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

/* The route and plugin (name, version) of inst, for /status and logs. */
void
sqc_inst_describe(const struct sq_inst *inst, const char **route,
    const char **plugin, const char **version)
{
	*route = inst->route;
	*plugin = inst->desc->name;
	*version = inst->desc->version ? inst->desc->version : "";
}

int
sq_inst_set_info(struct sq_inst *inst, const char *key, const char *value)
{
	struct sqc_opt *o;
	char *v = NULL;
	size_t i;

	if (key == NULL || *key == '\0')
		return -EINVAL;
	for (i = 0; i < inst->ninfo; i++)
		if (strcmp(inst->info[i].key, key) == 0)
			break;
	if (value == NULL) {
		if (i < inst->ninfo) {
			free(inst->info[i].key);
			free(inst->info[i].value);
			memmove(inst->info + i, inst->info + i + 1,
			    (inst->ninfo - i - 1) * sizeof(*inst->info));
			inst->ninfo--;
		}
		return 0;
	}
	if ((v = strdup(value)) == NULL)
		return -ENOMEM;
	if (i < inst->ninfo) {
		free(inst->info[i].value);
		inst->info[i].value = v;
		return 0;
	}
	if ((o = realloc(inst->info, (inst->ninfo + 1) * sizeof(*o))) == NULL) {
		free(v);
		return -ENOMEM;
	}
	inst->info = o;
	memset(&o[inst->ninfo], 0, sizeof(*o));
	if ((o[inst->ninfo].key = strdup(key)) == NULL) {
		free(v);
		return -ENOMEM;
	}
	o[inst->ninfo++].value = v;
	return 0;
}

/* The j-th pair inst set (sq_inst_set_info): 0, or -ENOENT. */
int
sqc_inst_info(const struct sq_inst *inst, size_t j, const char **key,
    const char **value)
{
	if (j >= inst->ninfo)
		return -ENOENT;
	*key = inst->info[j].key;
	*value = inst->info[j].value;
	return 0;
}

/* What the wrappers counted for inst (size bytes of it, as the caller
 * knows struct sq_route_stats). */
void
sqc_inst_counts(const struct sq_inst *inst, struct sq_route_stats *out,
    size_t size)
{
	memcpy(out, &inst->counts, size < sizeof(inst->counts) ? size :
	    sizeof(inst->counts));
}

/* Whether inst's plugin answers HTTP requests (has .handle). */
int
sqc_inst_handles_http(const struct sq_inst *inst)
{
	return inst->desc->handle != NULL;
}

/* Whether inst's plugin takes WebSockets (has .ws_open). */
int
sqc_inst_handles_ws(const struct sq_inst *inst)
{
	return inst->desc->ws_open != NULL;
}

/* The i-th route's instance, in the file's order, or NULL. */
const struct sq_inst *
sqc_gen_at(const struct sqc_gen *g, size_t i)
{
	return i < g->ninsts ? g->insts[i] : NULL;
}

/* Routes of the generation; *reused gets how many kept an instance. */
size_t
sqc_gen_count(const struct sqc_gen *g, size_t *reused)
{
	if (reused)
		*reused = g->reused;
	return g->ninsts;
}
