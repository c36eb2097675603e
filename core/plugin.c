/*
 * plugin.c - loading plugins, creating their instances, and the
 * generations that a reload switches between.
 *
 * A module is one version of one plugin file. The server never maps a
 * file in plugin_dir: it copies it into a private folder under a unique
 * name and dlopens the copy, so that a new build copied over the original
 * (cp, install or mv) can neither crash the running code nor be mistaken
 * by glibc for the object it already has open. Modules are shared by
 * content: a file whose bytes did not change is the same module.
 *
 * An instance is a plugin's state for one route. A generation is the
 * routing table of one configuration; it holds a reference on each of its
 * instances. Requests, timers (and later fetches and WebSocket sessions)
 * hold references too, and an instance holds its module: code is
 * unloaded only when nothing can call it. Loop thread only.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pwd.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

struct sqc_module {
	char		*path;		/* as configured */
	char		*copy;		/* the private copy that is mapped */
	uint64_t	 hash;		/* FNV-1a of the bytes */
	off_t		 size;
	void		*dl;
	const struct sq_plugin *desc;
	unsigned	 refs;
	LIST_ENTRY(sqc_module) link;
};

/* An instance: private to this file, plugins and the rest of the core
 * hold pointers. */
struct sq_inst {
	char		*route;
	struct sqc_module *mod;
	const struct sq_plugin *desc;
	void		*state;
	unsigned	 refs;
	/* identity for reuse across reloads */
	struct sqc_opt	*opts;
	size_t		 nopts;
	char		 note[192];	/* "plugin P V, route R", for a crash */
	struct sq_route_stats counts;	/* kept by the sqc_call_* wrappers */
	struct sqc_opt	*info;		/* sq_inst_set_info's pairs */
	size_t		 ninfo;
};

struct sqc_gen {
	struct sqc_router *router;
	struct sq_inst	**insts;
	int		*ws_deflate;	/* the route keys, by insts' index */
	size_t		 ninsts;
	size_t		 reused;
};

struct sq_opts {
	struct sqc_config *conf;
	struct sqc_route_conf *route;
	char		*err;
	size_t		 errlen;
	int		 failed;
};

static LIST_HEAD(, sqc_module) modules = LIST_HEAD_INITIALIZER(modules);
static char *private_dir;
static unsigned copy_seq;

/* ---- modules --------------------------------------------------------- */

static uid_t owner_uid = (uid_t)-1;	/* `user`, once known */

static const char *
tmp_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	return tmp && *tmp ? tmp : "/tmp";
}

/*
 * Says why name is left alone: whose it is when it belongs to another
 * user (a warning only for a root squalld, to which a local user may
 * have planted it; for an unprivileged one it is another user's squalld
 * that left it, which only that user can remove), its mode, or that it
 * is a symlink or not a folder (st NULL: openat failed with err).
 */
static void
not_removing(const char *name, const struct stat *st, int err)
{
	struct passwd *pw;
	char whose[128];

	if (st == NULL)
		sqc_log(SQ_LOG_WARN, NULL, "not removing %s/%s: %s", tmp_dir(),
		    name, err == ELOOP || err == ENOTDIR ? "a symlink or a "
		    "file, not a private folder of squalld's" : strerror(err));
	else if (st->st_uid != geteuid() && st->st_uid != owner_uid) {
		if ((pw = getpwuid(st->st_uid)) != NULL)
			snprintf(whose, sizeof(whose), "user %s (uid %d)",
			    pw->pw_name, (int)st->st_uid);
		else
			snprintf(whose, sizeof(whose), "uid %d",
			    (int)st->st_uid);
		sqc_log(geteuid() == 0 ? SQ_LOG_WARN : SQ_LOG_INFO, NULL,
		    "not removing %s/%s: it belongs to %s, not to squalld's "
		    "user: left to its owner", tmp_dir(), name, whose);
	} else
		sqc_log(SQ_LOG_WARN, NULL, "not removing %s/%s: its mode is "
		    "%04o, not the 0700 of squalld's private folders",
		    tmp_dir(), name, (unsigned)(st->st_mode & 07777));
}

/*
 * Removes the private folder name under the folder tmpfd, if it is one of
 * squalld's: a real folder (never a symlink: it is opened O_NOFOLLOW),
 * owned by us or by the user squalld becomes, mode 0700. Only the files
 * in it go, by unlinkat() relative to it, which never follows a link. As
 * root, in a TMPDIR anyone can write to, anything else could make us
 * delete what is not ours: it is left alone, with a warning.
 */
static void
remove_private(int tmpfd, const char *name)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd;

	fd = openat(tmpfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || (st.st_mode & 07777) != 0700 ||
	    (st.st_uid != geteuid() && st.st_uid != owner_uid)) {
		if (fd >= 0 || errno != ENOENT)
			not_removing(name, fd >= 0 ? &st : NULL, errno);
		if (fd >= 0)
			close(fd);
		return;
	}
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	(void)unlinkat(tmpfd, name, AT_REMOVEDIR);
}

/*
 * The private folders under TMPDIR of process pid (0: of every process
 * that no longer exists, left by a crash or a kill), each removed as
 * remove_private() allows.
 */
static void
remove_left_behind(pid_t pid)
{
	struct dirent *de;
	DIR *d;
	int tmpfd;

	if ((tmpfd = open(tmp_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	if ((d = fdopendir(tmpfd)) == NULL) {
		close(tmpfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		long n;

		if (strncmp(de->d_name, "squalld.", 8) != 0)
			continue;
		n = strtol(de->d_name + 8, &end, 10);
		/*
		 * At start, only the folders of processes that no longer
		 * exist: a squalld run under valgrind or a wrapper has
		 * another name, and a live process may still use its folder.
		 */
		if (*end != '.' || n <= 0 || (pid != 0 && n != pid) ||
		    (pid == 0 && (kill((pid_t)n, 0) == 0 || errno != ESRCH)))
			continue;
		remove_private(dirfd(d), de->d_name);
	}
	closedir(d);
}

/*
 * Creates the private folder for module copies, after removing those that
 * processes no longer running left behind. Called once at start-up.
 */
int
sqc_plugin_init(char *err, size_t errlen)
{
	const char *tmp = tmp_dir();
	char *dir;

	remove_left_behind(0);
	if (asprintf(&dir, "%s/squalld.%d.XXXXXX", tmp, (int)getpid()) < 0)
		return -ENOMEM;
	if (mkdtemp(dir) == NULL) {
		snprintf(err, errlen, "cannot create a private folder for "
		    "plugin copies under %s: %s", tmp, strerror(errno));
		free(dir);
		return -errno;
	}
	private_dir = dir;
	return 0;
}

/* The user workers become: its private folders are squalld's too. */
void
sqc_plugin_set_owner(uid_t uid)
{
	owner_uid = uid;
}

/*
 * Removes the private folder that the process pid left behind when it
 * died without cleaning up (a worker killed by a signal). Master only.
 */
void
sqc_plugin_cleanup_after(pid_t pid)
{
	remove_left_behind(pid);
}

/* Gives the private folder to the user the server drops to. */
int
sqc_plugin_chown(uid_t uid, gid_t gid)
{
	if (private_dir && chown(private_dir, uid, gid) != 0)
		return -errno;
	return 0;
}

/* Removes the private folder; every module is unloaded by then. */
void
sqc_plugin_shutdown(void)
{
	if (private_dir) {
		rmdir(private_dir);
		free(private_dir);
		private_dir = NULL;
	}
}

/* Plugin versions loaded now (tests and the reload log line). */
unsigned
sqc_module_count(void)
{
	struct sqc_module *m;
	unsigned n = 0;

	LIST_FOREACH(m, &modules, link)
		n++;
	return n;
}

/*
 * Reads the file once: hashes it and, when dst_fd >= 0, copies it there.
 */
static int
hash_copy(const char *path, int dst_fd, uint64_t *hash, off_t *size,
    char *err, size_t errlen)
{
	unsigned char buf[65536];
	uint64_t h = 1469598103934665603ULL;
	struct stat st;
	off_t total = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open plugin %s: %s", path,
		    strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "plugin %s is not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= 1099511628211ULL;
		}
		total += n;
		for (ssize_t w = 0, r; dst_fd >= 0 && w < n; w += r) {
			if ((r = write(dst_fd, buf + w, (size_t)(n - w))) < 0) {
				snprintf(err, errlen, "cannot copy plugin %s: "
				    "%s", path, strerror(errno));
				close(fd);
				return -EIO;
			}
		}
	}
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read plugin %s: %s", path,
		    strerror(errno));
		return -EIO;
	}
	*hash = h;
	*size = total;
	return 0;
}

static void
module_free(struct sqc_module *m)
{
	if (m->dl)
		dlclose(m->dl);
	if (m->copy)
		unlink(m->copy);
	free(m->copy);
	free(m->path);
	free(m);
}

static void
module_unref(struct sqc_module *m)
{
	if (--m->refs > 0)
		return;
	LIST_REMOVE(m, link);
	sqc_log(SQ_LOG_DEBUG, NULL, "unloaded %s", m->path);
	module_free(m);
}

static int
check_descriptor(const struct sq_plugin *d, const char *path, char *err,
    size_t errlen)
{
	if (d->abi != SQ_PLUGIN_ABI) {
		snprintf(err, errlen, "plugin %s was built for plugin ABI %u, "
		    "this squalld has ABI %u: rebuild it against this "
		    "squall/plugin.h", path, d->abi, SQ_PLUGIN_ABI);
		return -EINVAL;
	}
	if (d->name == NULL || d->name[0] == '\0') {
		snprintf(err, errlen, "plugin %s: descriptor has no name",
		    path);
		return -EINVAL;
	}
	if (d->handle == NULL && d->ws_open == NULL) {
		snprintf(err, errlen, "plugin %s (%s): descriptor has no "
		    "handle callback", path, d->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * Returns a module for the plugin file at path with one more reference:
 * the loaded one if the file's bytes are unchanged, else a fresh copy.
 */
static struct sqc_module *
module_get(const char *path, char *err, size_t errlen)
{
	struct sqc_module *m, *o;
	uint64_t hash;
	off_t size;
	void *sym;
	int fd;

	if (hash_copy(path, -1, &hash, &size, err, errlen) != 0)
		return NULL;
	LIST_FOREACH(m, &modules, link)
		if (m->hash == hash && m->size == size &&
		    strcmp(m->path, path) == 0) {
			m->refs++;
			return m;
		}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->path = strdup(path)) == NULL ||
	    asprintf(&m->copy, "%s/%u-%s", private_dir, ++copy_seq,
	    strrchr(path, '/') ? strrchr(path, '/') + 1 : path) < 0) {
		if (m)
			m->copy = NULL;
		snprintf(err, errlen, "out of memory loading %s", path);
		goto fail;
	}
	fd = open(m->copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", m->copy,
		    strerror(errno));
		free(m->copy);
		m->copy = NULL;
		goto fail;
	}
	/* Hash what is copied: the file may have changed since. */
	if (hash_copy(path, fd, &m->hash, &m->size, err, errlen) != 0) {
		close(fd);
		goto fail;
	}
	close(fd);
	if ((m->dl = dlopen(m->copy, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		const char *why = dlerror();

		snprintf(err, errlen, "cannot load plugin %s: %s%s", path, why,
		    strstr(why, "failed to map segment") ? " (is the folder "
		    "of the private copies, under TMPDIR, mounted noexec? "
		    "Point TMPDIR elsewhere)" : "");
		goto fail;
	}
	if ((sym = dlsym(m->dl, SQ_PLUGIN_SYMBOL)) == NULL) {
		snprintf(err, errlen, "plugin %s has no descriptor: the "
		    "symbol %s is missing (declare it with SQ_PLUGIN)", path,
		    SQ_PLUGIN_SYMBOL);
		goto fail;
	}
	m->desc = sym;
	LIST_FOREACH(o, &modules, link)
		if (o->desc == m->desc) {
			snprintf(err, errlen, "plugin %s: the dynamic loader "
			    "returned an object that is already loaded",
			    path);
			goto fail;
		}
	if (check_descriptor(m->desc, path, err, errlen) != 0)
		goto fail;
	m->refs = 1;
	LIST_INSERT_HEAD(&modules, m, link);
	sqc_log(SQ_LOG_DEBUG, NULL, "loaded %s (%s %s) from %s", path,
	    m->desc->name, m->desc->version ? m->desc->version : "",
	    m->copy);
	return m;
fail:
	if (m)
		module_free(m);
	return NULL;
}

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

static int opts_fail_at(struct sq_opts *o, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
opts_fail_at(struct sq_opts *o, int line, const char *fmt, ...)
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
		return opts_fail_at(o, opt->line, "bad value '%s' for '%s': "
		    "expected an integer from %lld to %lld", opt->value, key,
		    min, max);
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
		return opts_fail_at(o, opt->line, "bad value '%s' for '%s': "
		    "expected on or off", opt->value, key);
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
		return opts_fail_at(o, opt->line, "bad value '%s' for '%s': "
		    "expected a size such as 512, 64K or 1M", opt->value, key);
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
	return opts_fail_at(o, opt ? opt->line : o->route->line, "%s", msg);
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

static void
inst_free(struct sq_inst *inst)
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

static void
note_init(struct sq_inst *inst)
{
	snprintf(inst->note, sizeof(inst->note), "plugin %s %s, route %s",
	    inst->desc->name, inst->desc->version ? inst->desc->version : "?",
	    inst->route);
}

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
	inst_free(inst);
	module_unref(mod);
}

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
	note_init(inst);
	if (mod->desc->create) {
		struct sq_inst *prev = sqc_inst_enter(inst);

		rc = mod->desc->create(inst, &o, &inst->state);
		sqc_inst_leave(prev);
	} else
		rc = 0;
	if (rc == 0) {
		for (size_t i = 0; i < r->nopts; i++)
			if (!r->opts[i].used) {
				opts_fail_at(&o, r->opts[i].line, "plugin "
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
		opts_fail_at(&o, r->line, "plugin '%s' failed to create its "
		    "instance: %s", mod->desc->name, sq_strerror(rc));
	if (rc != 0) {
		inst->route = NULL;
		inst_free(inst);
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

		if ((mod = module_get(r->plugin, lerr, sizeof(lerr))) == NULL) {
			snprintf(err, errlen, "%s:%d: route '%s%s': %s",
			    c->file, r->line, r->path, r->prefix ? "*" : "",
			    lerr);
			goto fail;
		}
		if ((name = route_name(r)) == NULL) {
			module_unref(mod);
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if ((inst = find_reusable(old, r, mod, name)) != NULL) {
			free(name);
			module_unref(mod);
			sqc_inst_ref(inst);
			g->reused++;
		} else if ((inst = inst_create(c, r, mod, name, err,
		    errlen)) == NULL) {
			module_unref(mod);
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

int
sqc_inst_handles_http(const struct sq_inst *inst)
{
	return inst->desc->handle != NULL;
}

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
