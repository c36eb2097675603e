/*
 * fuzz_path.c - request path normalisation and routing: sqc_path_normalize
 * on the input as a C string, its invariants when it succeeds, then
 * sqc_router_match of the result (and of the raw input) against a small
 * fixed router.
 */
#include "config.h"

#include <string.h>

#include "../../core/core.h"
#include "fuzz.h"

static const struct {
	const char	*path;
	int		 prefix;
} routes[] = {
	{ "/", 0 }, { "/hello", 0 }, { "/static/", 1 }, { "/a/b/c", 0 },
	{ "/api", 1 }, { "/a/", 1 },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static struct sqc_router *
router(void)
{
	static struct sqc_router *r;

	if (r != NULL)
		return r;
	if ((r = sqc_router_new()) == NULL)
		abort();
	for (size_t i = 0; i < NROUTES; i++)
		if (sqc_router_add(r, routes[i].path, routes[i].prefix,
		    (void *)&routes[i]) != 0)
			abort();
	FUZZ_CHECK(sqc_router_add(r, "/hello", 0, NULL) != 0);
	return r;
}

/* Does the match of path make sense for a normalised path? */
static void
check_match(const char *path)
{
	const char *rest = NULL;
	const void *d = sqc_router_match(router(), path, &rest);
	size_t plen = strlen(path);

	if (d == NULL) {
		for (size_t i = 0; i < NROUTES; i++)
			FUZZ_CHECK(routes[i].prefix ||
			    strcmp(path, routes[i].path) != 0);
		FUZZ_CHECK(strncmp(path, "/static/", 8) != 0);
		return;
	}
	FUZZ_CHECK(rest >= path && rest <= path + plen);
	for (size_t i = 0; i < NROUTES; i++) {
		size_t rl = strlen(routes[i].path);

		if (d != &routes[i])
			continue;
		FUZZ_CHECK(strncmp(path, routes[i].path, rl) == 0);
		if (!routes[i].prefix) {
			FUZZ_CHECK(plen == rl && *rest == '\0');
			return;
		}
		FUZZ_CHECK(rest >= path + rl && *rest != '/');
		/* an exact route wins over every prefix */
		for (size_t j = 0; j < NROUTES; j++)
			FUZZ_CHECK(routes[j].prefix ||
			    strcmp(path, routes[j].path) != 0);
		return;
	}
	FUZZ_CHECK(!"data of no route");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *rest;
	char *p, *raw;
	size_t len;

	if ((p = malloc(size + 1)) == NULL)
		return 0;
	memcpy(p, data, size);
	p[size] = '\0';
	if ((raw = strdup(p)) == NULL) {
		free(p);
		return 0;
	}
	len = strlen(p);
	/* any string may reach the router: it must not crash on it */
	(void)sqc_router_match(router(), raw, &rest);
	if (sqc_path_normalize(p) == 0) {
		size_t n = strlen(p);

		FUZZ_CHECK(p[0] == '/');
		FUZZ_CHECK(n <= len);
		FUZZ_CHECK(strstr(p, "/../") == NULL);
		FUZZ_CHECK(strstr(p, "/./") == NULL);
		FUZZ_CHECK(strstr(p, "//") == NULL);
		FUZZ_CHECK(!(n >= 3 && strcmp(p + n - 3, "/..") == 0));
		FUZZ_CHECK(!(n >= 2 && strcmp(p + n - 2, "/.") == 0));
		/* a trailing slash is kept */
		FUZZ_CHECK(raw[len - 1] != '/' || p[n - 1] == '/');
		check_match(p);
	} else
		FUZZ_CHECK(raw[0] != '/' || strchr(raw, '%') != NULL);
	free(raw);
	free(p);
	return 0;
}
