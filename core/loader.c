/*
 * loader.c - plugin files into modules. A module is one version of one
 * plugin file. The server never maps a file in plugin_dir: it copies it
 * into a private folder under a unique name and dlopens the copy, so
 * that a new build copied over the original (cp, install or mv) can
 * neither crash the running code nor be mistaken by glibc for the
 * object it already has open. Modules are shared by content: a file
 * whose bytes did not change is the same module. The private folder is
 * made at start, handed to the user the server becomes, and removed at
 * exit (and what a crashed process left behind, by the next). Loop
 * thread only.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pwd.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "plugin_priv.h"

static LIST_HEAD(, sqc_module) modules = LIST_HEAD_INITIALIZER(modules);
static char *private_dir;
static unsigned copy_seq;

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

/* Drops a reference to m; the last unloads it and removes its copy. */
void
sqc_module_unref(struct sqc_module *m)
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
struct sqc_module *
sqc_module_get(const char *path, char *err, size_t errlen)
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

