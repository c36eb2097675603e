/*
 * plugin.c - a plugin's instances and what it is given: its options
 * during .create (sq_opt_*), the instance (references, the log with its
 * name, set_info), and the calls into its code (sqc_call_*), each marked
 * for the crash note. Modules are loader.c's, generations gen.c's.
 *
 * An instance is a plugin's state for one route. A generation holds a
 * reference on each of its instances. Requests, timers, fetches and
 * WebSocket sessions hold references too, and an instance holds its
 * module: code is unloaded only when nothing can call it. Loop thread
 * only, but the crash note of the running instance is per thread.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "plugin_priv.h"

/* ---- options --------------------------------------------------------- */

static struct sqc_opt *
opt_last(struct sq_opts *o, const char *key)
{
	struct sqc_opt *found = NULL;

	for (size_t i = 0; i < o->route->nopts; i++)
		if (strcmp(o->route->opts[i].key, key) == 0) {
			o->route->opts[i].used = 1;
			found = &o->route->opts[i];
		}
	return found;
}

/*
 * Fails o's instance creation with a message naming the file, line
 * and route; the first failure only. Returns -EINVAL.
 */
int
sqc_opts_fail_at(struct sq_opts *o, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->failed)
		return -EINVAL;
	o->failed = 1;
	n = snprintf(o->err, o->errlen, "%s:%d: route '%s': ", o->conf->file,
	    line, o->route->path);
	if (n < 0 || (size_t)n >= o->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(o->err + n, o->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *
sq_opt_str(struct sq_opts *o, const char *key, const char *def)
{
	struct sqc_opt *opt = opt_last(o, key);

	return opt ? opt->value : def;
}

char *
sq_opt_path(struct sq_opts *o, const char *key, const char *def)
{
	const char *v = sq_opt_str(o, key, def);

	return v ? sqc_path_resolve(o->conf->dir, v) : NULL;
}

int
sq_opt_int(struct sq_opts *o, const char *key, long long def,
    long long min, long long max, long long *out)
{
	struct sqc_opt *opt = opt_last(o, key);

	if (opt == NULL) {
		*out = def;
		return 0;
	}
	if (sqc_parse_int(opt->value, min, max, out) != 0)
		return sqc_opts_fail_at(o, opt->line, "bad value '%s' for "
		    "'%s': expected an integer from %lld to %lld",
		    opt->value, key, min, max);
	return 0;
}

int
sq_opt_bool(struct sq_opts *o, const char *key, int def, int *out)
{
	struct sqc_opt *opt = opt_last(o, key);

	if (opt == NULL) {
		*out = def;
		return 0;
	}
	if (sqc_parse_bool(opt->value, out) != 0)
		return sqc_opts_fail_at(o, opt->line, "bad value '%s' for "
		    "'%s': expected on or off", opt->value, key);
	return 0;
}

int
sq_opt_size(struct sq_opts *o, const char *key, size_t def, size_t *out)
{
	struct sqc_opt *opt = opt_last(o, key);

	if (opt == NULL) {
		*out = def;
		return 0;
	}
	if (sqc_parse_size(opt->value, out) != 0)
		return sqc_opts_fail_at(o, opt->line, "bad value '%s' for "
		    "'%s': expected a size such as 512, 64K or 1M",
		    opt->value, key);
	return 0;
}

size_t
sq_opt_count(struct sq_opts *o, const char *key)
{
	size_t n = 0;

	for (size_t i = 0; i < o->route->nopts; i++)
		if (strcmp(o->route->opts[i].key, key) == 0) {
			o->route->opts[i].used = 1;
			n++;
		}
	return n;
}

const char *
sq_opt_at(struct sq_opts *o, const char *key, size_t idx)
{
	for (size_t i = 0; i < o->route->nopts; i++)
		if (strcmp(o->route->opts[i].key, key) == 0) {
			o->route->opts[i].used = 1;
			if (idx-- == 0)
				return o->route->opts[i].value;
		}
	return NULL;
}

int
sq_opt_next(struct sq_opts *o, const char *prefix, size_t *iter,
    const char **key, const char **value)
{
	size_t plen = strlen(prefix);

	while (*iter < o->route->nopts) {
		struct sqc_opt *opt = &o->route->opts[(*iter)++];

		if (strncmp(opt->key, prefix, plen) != 0)
			continue;
		opt->used = 1;
		*key = opt->key;
		*value = opt->value;
		return 1;
	}
	return 0;
}

int
sq_opt_error(struct sq_opts *o, const char *key, const char *fmt, ...)
{
	struct sqc_opt *opt = NULL;
	char msg[SQC_ERRLEN];
	va_list ap;

	for (size_t i = 0; key && i < o->route->nopts; i++)
		if (strcmp(o->route->opts[i].key, key) == 0)
			opt = &o->route->opts[i];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sqc_opts_fail_at(o, opt ? opt->line : o->route->line, "%s", msg);
}

/* ---- instances ------------------------------------------------------- */

const char *
sq_inst_route(struct sq_inst *inst)
{
	return inst->route;
}

void
sq_log(struct sq_inst *inst, enum sq_log_level level, const char *fmt, ...)
{
	char who[256], msg[2048], safe[4 * sizeof(msg)];
	va_list ap;

	if (!sqc_log_enabled(level))
		return;
	snprintf(who, sizeof(who), "%s %s", inst->desc->name, inst->route);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* plugins log what clients send: no raw control bytes */
	sqc_log_escape(safe, sizeof(safe), msg, 0);
	sqc_log(level, who, "%s", safe);
}

const char *
sq_strerror(int err)
{
	return strerror(err < 0 ? -err : err);
}

/* Takes a reference: the instance and its code stay until unref. */
void
sqc_inst_ref(struct sq_inst *inst)
{
	inst->refs++;
}

/* Frees an instance whose last reference went (its module's too). */
void
sqc_inst_free(struct sq_inst *inst)
{
	for (size_t i = 0; i < inst->ninfo; i++) {
		free(inst->info[i].key);
		free(inst->info[i].value);
	}
	free(inst->info);
	for (size_t i = 0; i < inst->nopts; i++) {
		free(inst->opts[i].key);
		free(inst->opts[i].value);
	}
	free(inst->opts);
	free(inst->route);
	free(inst);
}

/* ---- calls into plugins --------------------------------------------- */

/* What runs on this thread now: read by the fatal signal handler. */
static __thread struct sq_inst *running;

/* Marks inst's code as running; returns what ran before, for leave. */
struct sq_inst *
sqc_inst_enter(struct sq_inst *inst)
{
	struct sq_inst *prev = running;

	running = inst;
	return prev;
}

/* Ends what sqc_inst_enter began: prev runs again. */
void
sqc_inst_leave(struct sq_inst *prev)
{
	running = prev;
}

/* Async-signal-safe: the preformatted note of what runs, or NULL. */
const char *
sqc_inst_running(void)
{
	return running ? running->note : NULL;
}

/* The crash note of inst: "plugin P V, route R". */
void
sqc_inst_note_init(struct sq_inst *inst)
{
	snprintf(inst->note, sizeof(inst->note), "plugin %s %s, route %s",
	    inst->desc->name, inst->desc->version ? inst->desc->version : "?",
	    inst->route);
}

/* The plugin's .handle for req, counted and marked as its code. */
void
sqc_call_handle(struct sq_inst *inst, struct sq_req *req)
{
	struct sq_inst *prev = sqc_inst_enter(inst);

	inst->counts.requests++;
	inst->desc->handle(inst->state, req);
	sqc_inst_leave(prev);
}

/* ws_open's answer: 0, or the HTTP status refusing the upgrade. */
int
sqc_call_ws_open(struct sq_inst *inst, struct sq_ws *ws)
{
	struct sq_inst *prev = sqc_inst_enter(inst);
	int rc = inst->desc->ws_open(inst->state, ws);

	sqc_inst_leave(prev);
	if (rc == 0)
		inst->counts.ws_sessions++;
	return rc;
}

/* The plugin's .ws_message, counted and marked as its code. */
void
sqc_call_ws_message(struct sq_inst *inst, struct sq_ws *ws, const void *data,
    size_t len, int binary)
{
	struct sq_inst *prev;

	inst->counts.ws_messages++;
	if (inst->desc->ws_message == NULL)
		return;
	prev = sqc_inst_enter(inst);
	inst->desc->ws_message(inst->state, ws, data, len, binary);
	sqc_inst_leave(prev);
}

/* The plugin's .ws_close, marked as its code. */
void
sqc_call_ws_close(struct sq_inst *inst, struct sq_ws *ws, int code)
{
	struct sq_inst *prev;

	if (inst->desc->ws_close == NULL)
		return;
	prev = sqc_inst_enter(inst);
	inst->desc->ws_close(inst->state, ws, code);
	sqc_inst_leave(prev);
}

static void
call_destroy(struct sq_inst *inst)
{
	struct sq_inst *prev;

	if (inst->desc->destroy == NULL)
		return;
	prev = sqc_inst_enter(inst);
	inst->desc->destroy(inst->state);
	sqc_inst_leave(prev);
}

/* Drops a reference; the last one destroys the instance. */
void
sqc_inst_unref(struct sq_inst *inst)
{
	struct sqc_module *mod = inst->mod;

	if (--inst->refs > 0)
		return;
	sqc_log(SQ_LOG_DEBUG, NULL, "destroying %s instance of %s",
	    inst->desc->name, inst->route);
	call_destroy(inst);
	sqc_inst_free(inst);
	sqc_module_unref(mod);
}

