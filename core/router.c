/*
 * router.c - maps a request path to a route's data: exact routes and
 * prefix routes ("/static/" followed by "*"); an exact route wins over a prefix, and the
 * longest prefix wins over shorter ones. Also owns request-path
 * normalisation (percent-decoding, "." and ".." segments, repeated
 * slashes), so that every plugin sees one canonical path. Pure code, no
 * logging; loop thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct route {
	char		*path;
	size_t		 len;
	int		 prefix;
	void		*data;
};

struct sqc_router {
	struct route	*routes;
	size_t		 n;
};

/* An empty router, or NULL when out of memory. */
struct sqc_router *
sqc_router_new(void)
{
	return calloc(1, sizeof(struct sqc_router));
}

/* Frees the router (not the data of its routes). */
void
sqc_router_free(struct sqc_router *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->routes[i].path);
	free(r->routes);
	free(r);
}

/*
 * Adds path (without the "*" of a prefix route) with its data. Returns 0,
 * -EEXIST for a route that is already there, or -ENOMEM.
 */
int
sqc_router_add(struct sqc_router *r, const char *path, int prefix,
    void *data)
{
	struct route *nr;

	for (size_t i = 0; i < r->n; i++)
		if (r->routes[i].prefix == prefix &&
		    strcmp(r->routes[i].path, path) == 0)
			return -EEXIST;
	nr = realloc(r->routes, (r->n + 1) * sizeof(*nr));
	if (nr == NULL)
		return -ENOMEM;
	r->routes = nr;
	nr = &r->routes[r->n];
	if ((nr->path = strdup(path)) == NULL)
		return -ENOMEM;
	nr->len = strlen(path);
	nr->prefix = prefix;
	nr->data = data;
	r->n++;
	return 0;
}

/*
 * Returns the data of the best route for a normalised path, or NULL. For
 * a prefix route *rest points into path just after the prefix (and after
 * one more "/" if the prefix did not end with one); for an exact one, at
 * the terminating NUL.
 */
void *
sqc_router_match(const struct sqc_router *r, const char *path,
    const char **rest)
{
	const struct route *best = NULL;
	size_t plen = strlen(path);

	for (size_t i = 0; i < r->n; i++) {
		const struct route *rt = &r->routes[i];

		if (!rt->prefix) {
			if (rt->len == plen && memcmp(rt->path, path,
			    plen) == 0) {
				*rest = path + plen;
				return rt->data;
			}
			continue;
		}
		if (rt->len > plen || memcmp(rt->path, path, rt->len) != 0)
			continue;
		/* "/api*" matches "/api" and "/api/x", not "/apix" */
		if (rt->len > 0 && rt->path[rt->len - 1] != '/' &&
		    path[rt->len] != '\0' && path[rt->len] != '/')
			continue;
		if (best == NULL || rt->len > best->len)
			best = rt;
	}
	if (best == NULL)
		return NULL;
	*rest = path + best->len;
	while (**rest == '/')
		(*rest)++;
	return best->data;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes path in place, then removes "." and ".." segments and
 * repeated slashes (RFC 3986 5.2.4; ".." never climbs above "/"). The
 * result starts with "/" and keeps a trailing slash. Returns -EINVAL for
 * a path that does not start with "/", a bad escape or an encoded NUL.
 */
int
sqc_path_normalize(char *path)
{
	char *in, *out;
	int hi, lo;

	if (path[0] != '/')
		return -EINVAL;
	for (in = out = path; *in; in++) {
		if (*in != '%') {
			*out++ = *in;
			continue;
		}
		if ((hi = hexval(in[1])) < 0 || (lo = hexval(in[2])) < 0)
			return -EINVAL;
		if (hi == 0 && lo == 0)
			return -EINVAL;
		*out++ = (char)(hi << 4 | lo);
		in += 2;
	}
	*out = '\0';

	/* Segment by segment; out trails in, both within path. */
	in = out = path;
	while (*in) {
		char *seg;
		size_t len;
		int dots;

		while (*in == '/')
			in++;
		seg = in;
		while (*in && *in != '/')
			in++;
		len = (size_t)(in - seg);
		if (len == 0)
			break;
		/* "." or ".."; decided before the memmove below moves seg */
		dots = len <= 2 && seg[0] == '.' && (len == 1 || seg[1] == '.');
		if (dots && len == 2) {
			while (out > path && *--out != '/')
				;
		} else if (!dots) {
			*out++ = '/';
			memmove(out, seg, len);
			out += len;
		}
		if (*in == '\0' && dots)
			*out++ = '/';	/* "/a/.." is the folder "/" */
	}
	if (out == path || (in > path && in[-1] == '/' && out[-1] != '/'))
		*out++ = '/';
	*out = '\0';
	return 0;
}
