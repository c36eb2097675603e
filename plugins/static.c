/*
 * static - serves the files under `root`: index.html for folders,
 * Content-Type by extension, Last-Modified / If-Modified-Since, single
 * byte ranges. Never serves anything outside root (no "..", no escape
 * through a symlink) and never lists a folder. Shows sq_opt_path and
 * sq_resp_file_take (the core sends the file; the plugin never copies it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squall/plugin.h>

struct site {
	char	*root;		/* realpath of the root option */
	size_t	 rootlen;
	char	*index;
};

static const struct {
	const char	*ext;
	const char	*type;
} types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "xml", "application/xml" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "jpg", "image/jpeg" },
	{ "jpeg", "image/jpeg" },
	{ "gif", "image/gif" },
	{ "webp", "image/webp" },
	{ "ico", "image/x-icon" },
	{ "wasm", "application/wasm" },
	{ "pdf", "application/pdf" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "map", "application/json" },
};

static const char *
content_type(const char *path)
{
	const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');

	if (dot == NULL || (slash && dot < slash))
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(dot + 1, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

static int
static_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct site *s;
	char *root;
	struct stat st;

	if ((root = sq_opt_path(opts, "root", ".")) == NULL)
		return -ENOMEM;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		free(root);
		return -ENOMEM;
	}
	s->root = realpath(root, NULL);
	if (s->root == NULL || stat(s->root, &st) != 0 ||
	    !S_ISDIR(st.st_mode)) {
		int e = s->root ? ENOTDIR : errno;

		sq_opt_error(opts, "root", "root %s: %s", root, strerror(e));
		free(root);
		free(s->root);
		free(s);
		return -EINVAL;
	}
	free(root);
	s->rootlen = strlen(s->root);
	s->index = strdup(sq_opt_str(opts, "index", "index.html"));
	if (s->index == NULL || strchr(s->index, '/') != NULL) {
		int bad = s->index != NULL;

		free(s->index);
		free(s->root);
		free(s);
		return bad ? sq_opt_error(opts, "index", "index must be a "
		    "file name") : -ENOMEM;
	}
	*state = s;
	return 0;
}

static void
static_destroy(void *state)
{
	struct site *s = state;

	free(s->root);
	free(s->index);
	free(s);
}

static void
http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Is the real path inside root? */
static int
inside(const struct site *s, const char *real)
{
	return strncmp(real, s->root, s->rootlen) == 0 &&
	    (real[s->rootlen] == '/' || real[s->rootlen] == '\0' ||
	    s->rootlen == 1);
}

static int
not_modified(struct sq_req *req, const struct stat *st)
{
	const char *ims = sq_req_header(req, "If-Modified-Since");
	struct tm tm;
	char *end;

	if (ims == NULL)
		return 0;
	memset(&tm, 0, sizeof(tm));
	end = strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL || *end != '\0')
		return 0;
	return st->st_mtime <= timegm(&tm);
}

/*
 * Parses a single "bytes=" range against size. Returns 1 with the range,
 * 0 to serve the whole file, -1 when unsatisfiable.
 */
static int
parse_range(const char *h, off_t size, off_t *start, off_t *end)
{
	long long a, b;
	char *p;

	if (h == NULL || strncasecmp(h, "bytes=", 6) != 0 ||
	    strchr(h, ',') != NULL)
		return 0;
	h += 6;
	if (*h == '-') {
		b = strtoll(h + 1, &p, 10);
		if (p == h + 1 || *p != '\0' || b < 0)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*start = b >= size ? 0 : size - b;
		*end = size - 1;
		return 1;
	}
	if (*h < '0' || *h > '9')
		return 0;
	a = strtoll(h, &p, 10);
	if (*p++ != '-')
		return 0;
	if (*p == '\0')
		b = size - 1;
	else {
		const char *q = p;

		b = strtoll(q, &p, 10);
		if (*p != '\0' || b < a)
			return 0;
		if (b >= size)
			b = size - 1;
	}
	if (a >= size)
		return -1;
	*start = a;
	*end = b;
	return 1;
}

static void
redirect_to_folder(struct sq_req *req)
{
	const char *q = sq_req_query(req);
	char *loc;

	if (asprintf(&loc, "%s/%s%s", sq_req_path(req), *q ? "?" : "", q) < 0) {
		sq_resp_error(req, 500);
		return;
	}
	sq_resp_header(req, "Location", loc);
	free(loc);
	sq_resp_printf(req, 301, "Moved Permanently\n");
}

/*
 * The file a request names under root: its real path (malloc'ed, in
 * *realp) and stat, through the index file for a folder. Returns 0, 404,
 * 500, or 301 when a folder's URL lacks its slash.
 */
static int
resolve(struct site *s, struct sq_req *req, char **realp, struct stat *st)
{
	const char *sub = sq_req_subpath(req), *path;
	char *want, *real, *idx;

	*realp = NULL;
	/* The core normalised the path; this is belt and braces. */
	if (strstr(sub, "..") != NULL && (strcmp(sub, "..") == 0 ||
	    strncmp(sub, "../", 3) == 0 || strstr(sub, "/../") != NULL ||
	    (strlen(sub) >= 3 && strcmp(sub + strlen(sub) - 3, "/..") == 0)))
		return 404;
	if (asprintf(&want, "%s/%s", s->root, sub) < 0)
		return 500;
	real = realpath(want, NULL);
	free(want);
	if (real == NULL || !inside(s, real) || stat(real, st) != 0)
		goto not_found;
	if (S_ISDIR(st->st_mode)) {
		path = sq_req_path(req);
		if (path[strlen(path) - 1] != '/') {
			free(real);
			return 301;
		}
		if (asprintf(&idx, "%s/%s", real, s->index) < 0) {
			free(real);
			return 500;
		}
		free(real);
		real = realpath(idx, NULL);
		free(idx);
		if (real == NULL || !inside(s, real) || stat(real, st) != 0)
			goto not_found;
	}
	if (!S_ISREG(st->st_mode))
		goto not_found;
	*realp = real;
	return 0;
not_found:
	free(real);
	return 404;
}

/*
 * Opens real, which must still be a regular file (O_NONBLOCK: a FIFO
 * swapped in since the stat must not block); -1 if it is not.
 */
static int
open_regular(const char *real, struct stat *st)
{
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd >= 0 && (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/*
 * The response for an open file (fd is the core's or closed here): the
 * validators, 304, the type, and the whole file or the range asked for
 * (206, or 416 for one that cannot be served).
 */
static void
send_file(struct sq_req *req, int fd, const char *real,
    const struct stat *st)
{
	char lm[64], num[64];
	off_t start = 0, end = 0;
	int rc;

	http_date(st->st_mtime, lm, sizeof(lm));
	sq_resp_header(req, "Last-Modified", lm);
	sq_resp_header(req, "Accept-Ranges", "bytes");
	if (not_modified(req, st)) {
		close(fd);
		sq_resp_send(req, 304, NULL, 0);
		return;
	}
	sq_resp_header(req, "Content-Type", content_type(real));
	/* the type above is the file's: browsers must not guess another */
	sq_resp_header(req, "X-Content-Type-Options", "nosniff");
	rc = sq_req_header(req, "If-Range") ? 0 :
	    parse_range(sq_req_header(req, "Range"), st->st_size, &start,
	    &end);
	if (rc < 0) {
		close(fd);
		snprintf(num, sizeof(num), "bytes */%lld",
		    (long long)st->st_size);
		sq_resp_header(req, "Content-Range", num);
		sq_resp_error(req, 416);
		return;
	}
	if (rc == 0) {
		start = 0;
		end = st->st_size - 1;
	} else {
		snprintf(num, sizeof(num), "bytes %lld-%lld/%lld",
		    (long long)start, (long long)end, (long long)st->st_size);
		sq_resp_header(req, "Content-Range", num);
	}
	snprintf(num, sizeof(num), "%lld", (long long)(end - start + 1));
	sq_resp_header(req, "Content-Length", num);
	sq_resp_file_take(req, rc ? 206 : 200, fd, start, end - start + 1);
}

static void
static_handle(void *state, struct sq_req *req)
{
	const char *m = sq_req_method(req);
	char *real;
	struct stat st;
	int fd, rc;

	if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
		sq_resp_header(req, "Allow", "GET, HEAD");
		sq_resp_error(req, 405);
		return;
	}
	if ((rc = resolve(state, req, &real, &st)) == 301)
		redirect_to_folder(req);
	else if (rc != 0)
		sq_resp_error(req, rc);
	else if ((fd = open_regular(real, &st)) < 0)
		sq_resp_error(req, 404);
	else
		send_file(req, fd, real, &st);
	free(real);
}

SQ_PLUGIN(
	.name = "static",
	.version = "1.0",
	.create = static_create,
	.destroy = static_destroy,
	.handle = static_handle,
);
