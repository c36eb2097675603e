/*
 * config.c - reads squall.ini (with inih) into a struct sqc_config: the
 * [server] keys through one table of parsers, and one [route PATH] section
 * per route: the core's keys (plugin, ws_deflate), and the others kept,
 * with their line numbers, for the plugin.
 * It does not log: errors come back as a message naming file:line and key.
 * Loop thread (or before the loop starts).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core.h"

/* inih's limit on a [section] name (its MAX_SECTION, not in ini.h). */
#ifndef INI_MAX_SECTION
#define INI_MAX_SECTION 50
#endif

struct parse_state {
	struct sqc_config *c;
	FILE		*fp;
	char		*buf;		/* the line being read (getline) */
	size_t		 bufsize;
	int		 line;
	int		 too_long;	/* line number of an over-long line */
	int		 long_section;	/* ...of an over-long [section] name */
	int		 hdr_line;	/* line of the last [section] header */
	char		 hdr[128];	/* its name, while no key has used it */
	char		*err;
	size_t		 errlen;
	int		 failed;	/* line of the first error, or 0 */
	unsigned	 seen;		/* bit per [server] key, for repeats */
	struct sqc_route_conf *route;	/* section being read, or NULL */
	int		 in_server;
	int		 cur_line;	/* header line of the section being read */
	/* the first error was a [route] with no keys, between these lines */
	int		 empty_hdr, empty_end;
};

static int fail(struct parse_state *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
fail(struct parse_state *ps, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ps->failed)
		return 0;
	ps->failed = ps->line > 0 ? ps->line : 1;
	n = snprintf(ps->err, ps->errlen, "%s:%d: ", ps->c->file, ps->line);
	if (n < 0 || (size_t)n >= ps->errlen)
		return 0;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return 0;
}

/* ---- the [server] table ---------------------------------------------- */

enum kind {
	K_STR, K_PATH, K_INT, K_SIZE, K_BOOL, K_LEVEL, K_LOG, K_LISTEN, K_CIDRS,
	K_ALFMT
};

struct key {
	const char	*name;
	enum kind	 kind;
	size_t		 off;
	long long	 min, max;
	const char	*def;
};

#define OFF(f) offsetof(struct sqc_config, f)
static const struct key server_keys[] = {
	{ "listen",		K_LISTEN, 0,			0, 0,
	    "127.0.0.1:8888" },
	{ "plugin_dir",		K_PATH,	OFF(plugin_dir),	0, 0,
	    SQ_PLUGIN_DIR },
	{ "workers",		K_INT,	OFF(workers),		1, 256,	"1" },
	{ "user",		K_STR,	OFF(user),		0, 0,	"" },
	{ "pid_file",		K_PATH,	OFF(pid_file),		0, 0,	"" },
	{ "access_log",		K_LOG,	OFF(access_log),	0, 0,	"-" },
	{ "access_log_format",	K_ALFMT, OFF(access_log_format), 0, 0,
	    "combined" },
	{ "error_log",		K_LOG,	OFF(error_log),		0, 0,	"-" },
	{ "log_level",		K_LEVEL, OFF(log_level),	0, 0,	"info" },
	{ "max_connections",	K_INT,	OFF(max_connections),	1, 1000000,
	    "10000" },
	{ "max_header_size",	K_SIZE,	OFF(max_header_size),	256, 1 << 20,
	    "8192" },
	{ "max_body_size",	K_SIZE,	OFF(max_body_size),	0, 1LL << 32,
	    "1048576" },
	{ "request_timeout",	K_INT,	OFF(request_timeout),	1, 86400, "30" },
	{ "shutdown_timeout",	K_INT,	OFF(shutdown_timeout),	0, 86400, "10" },
	{ "xheaders",		K_BOOL,	OFF(xheaders),		0, 0,	"off" },
	{ "trusted_proxies",	K_CIDRS, OFF(trusted),		0, 0,
	    "127.0.0.1 ::1" },
	{ "max_fetches",	K_INT,	OFF(max_fetches),	1, 100000, "256" },
	{ "offload_threads",	K_INT,	OFF(offload_threads),	1, 256,	"4" },
	{ "offload_queue",	K_INT,	OFF(offload_queue),	1, 1000000,
	    "1024" },
};
#define NKEYS (sizeof(server_keys) / sizeof(server_keys[0]))
/* parse_state.seen: a bit per key, and bit 31 for [server] itself */
_Static_assert(NKEYS < 31, "too many [server] keys for the seen mask");

/*
 * Writes c to out as the configuration it is in effect: every [server]
 * key with its value after defaults and path resolution (listen with the
 * -p port when port_override > 0), then every route with its resolved
 * plugin path, its options as given and the core's route keys
 * (ws_deflate, left out of routes marked no_ws). Returns 0, or -EIO if
 * out fails.
 */
int
sqc_config_dump(const struct sqc_config *c, int port_override, FILE *out)
{
	static const char *const levels[] = { "error", "warn", "info",
	    "debug" };
	const char *base = (const char *)c;
	char ip[INET6_ADDRSTRLEN];

	fprintf(out, "# %s, as squalld reads it: every key, defaults "
	    "included\n[server]\n", c->file);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &server_keys[i];
		const void *v = base + k->off;

		if (k->kind == K_LISTEN) {
			for (size_t j = 0; j < c->nlisten; j++)
				fprintf(out, strchr(c->listen[j].host, ':') ?
				    "listen = [%s]:%d\n" : "listen = %s:%d\n",
				    c->listen[j].host, port_override > 0 ?
				    port_override : c->listen[j].port);
			continue;
		}
		fprintf(out, "%s = ", k->name);
		switch (k->kind) {
		case K_STR:
		case K_PATH:
		case K_LOG:
			fprintf(out, "%s", *(char *const *)v ?
			    *(char *const *)v : "");
			break;
		case K_INT:
			fprintf(out, "%lld", *(const long long *)v);
			break;
		case K_SIZE:
			fprintf(out, "%zu", *(const size_t *)v);
			break;
		case K_BOOL:
			fprintf(out, "%s", *(const int *)v ? "on" : "off");
			break;
		case K_LEVEL:
			fprintf(out, "%s", levels[*(const int *)v]);
			break;
		case K_ALFMT:
			fprintf(out, "%s",
			    sqc_access_format_name(*(const int *)v));
			break;
		case K_CIDRS:
			for (int j = 0; j < c->ntrusted; j++) {
				const struct sqc_cidr *r = &c->trusted[j];

				inet_ntop(r->family, r->addr, ip, sizeof(ip));
				fprintf(out, j ? " %s" : "%s", ip);
				if (r->bits != (r->family == AF_INET ? 32 : 128))
					fprintf(out, "/%d", r->bits);
			}
			break;
		case K_LISTEN:
			break;
		}
		fputc('\n', out);
	}
	for (size_t i = 0; i < c->nroutes; i++) {
		const struct sqc_route_conf *r = &c->routes[i];

		fprintf(out, "\n[route %s%s]\nplugin = %s\n", r->path,
		    r->prefix ? "*" : "", r->plugin);
		for (size_t j = 0; j < r->nopts; j++)
			fprintf(out, "%s = %s\n", r->opts[j].key,
			    r->opts[j].value);
		/* a key of WebSocket routes only, when -T knows which */
		if (!r->no_ws)
			fprintf(out, "ws_deflate = %s\n", r->ws_deflate ?
			    "on" : "off");
	}
	return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}

static int
set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (s == NULL)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* a path (relative to the file's folder); for logs also "-" or "off" */
static int
set_path(struct sqc_config *c, char **dst, const char *v, int log,
    char *why, size_t whylen)
{
	if (log && (strcmp(v, "-") == 0 || strcmp(v, "off") == 0))
		return set_str(dst, v);
	if (*v == '\0') {
		if (!log)
			return set_str(dst, v);
		snprintf(why, whylen, "a path, \"-\" or \"off\"");
		return -EINVAL;
	}
	free(*dst);
	*dst = sqc_path_resolve(c->dir, v);
	return *dst ? 0 : -ENOMEM;
}

/* a number (K_INT, K_SIZE) within the key's bounds */
static int
set_number(const struct key *k, char *dst, const char *v, char *why,
    size_t whylen)
{
	long long n;
	size_t sz;

	if (k->kind == K_INT) {
		if (sqc_parse_int(v, k->min, k->max, &n) != 0) {
			snprintf(why, whylen, "an integer from %lld to %lld",
			    k->min, k->max);
			return -EINVAL;
		}
		*(long long *)dst = n;
		return 0;
	}
	if (sqc_parse_size(v, &sz) != 0 || (long long)sz < k->min ||
	    (long long)sz > k->max) {
		snprintf(why, whylen, "a size from %lld to %lld bytes "
		    "(K, M and G suffixes allowed)", k->min, k->max);
		return -EINVAL;
	}
	*(size_t *)dst = sz;
	return 0;
}

/* on/off (K_BOOL), a log level (K_LEVEL) or a log format (K_ALFMT) */
static int
set_choice(const struct key *k, int *dst, const char *v, char *why,
    size_t whylen)
{
	int b;

	if (k->kind == K_BOOL && sqc_parse_bool(v, &b) != 0) {
		snprintf(why, whylen, "on or off");
		return -EINVAL;
	}
	if (k->kind == K_LEVEL && (b = sqc_log_level_parse(v)) < 0) {
		snprintf(why, whylen, "error, warn, info or debug");
		return -EINVAL;
	}
	if (k->kind == K_ALFMT && (b = sqc_access_format_parse(v)) < 0) {
		snprintf(why, whylen, "combined, timed or json");
		return -EINVAL;
	}
	*dst = b;
	return 0;
}

/* trusted_proxies: the whole list, replacing any earlier one */
static int
set_cidrs(struct sqc_config *c, const char *v, char *why, size_t whylen)
{
	struct sqc_cidr *list;
	char bad[64];
	int nb = sqc_cidr_parse(v, &list, bad, sizeof(bad));

	if (nb == -ENOMEM)
		return nb;
	if (nb < 0) {
		snprintf(why, whylen, "addresses or CIDR blocks such as "
		    "127.0.0.1 or 10.0.0.0/8 (not '%s')", bad);
		return -EINVAL;
	}
	free(c->trusted);
	c->trusted = list;
	c->ntrusted = nb;
	return 0;
}

/* listen: one more address (the key may repeat) */
static int
add_listen(struct sqc_config *c, const char *v, char *why, size_t whylen)
{
	struct sqc_listen l, *nl;

	if (sqc_parse_listen(v, &l) != 0) {
		snprintf(why, whylen, "host:port or [ipv6]:port with a "
		    "numeric address");
		return -EINVAL;
	}
	nl = realloc(c->listen, (c->nlisten + 1) * sizeof(*nl));
	if (nl == NULL) {
		free(l.host);
		return -ENOMEM;
	}
	c->listen = nl;
	c->listen[c->nlisten++] = l;
	return 0;
}

/* Applies one [server] value; returns 0 or fills a message in why. */
static int
apply_key(struct sqc_config *c, const struct key *k, const char *v,
    char *why, size_t whylen)
{
	char *field = (char *)c + k->off;

	switch (k->kind) {
	case K_STR:
		return set_str((char **)field, v);
	case K_PATH:
	case K_LOG:
		return set_path(c, (char **)field, v, k->kind == K_LOG, why,
		    whylen);
	case K_INT:
	case K_SIZE:
		return set_number(k, field, v, why, whylen);
	case K_BOOL:
	case K_LEVEL:
	case K_ALFMT:
		return set_choice(k, (int *)field, v, why, whylen);
	case K_CIDRS:
		return set_cidrs(c, v, why, whylen);
	case K_LISTEN:
		return add_listen(c, v, why, whylen);
	}
	return -EINVAL;
}

static int
server_key(struct parse_state *ps, const char *name, const char *value)
{
	char why[160] = "";
	size_t i;
	int rc;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(server_keys[i].name, name) == 0)
			break;
	if (i == NKEYS)
		return fail(ps, "unknown key '%s' in [server]", name);
	if (server_keys[i].kind != K_LISTEN && (ps->seen & (1u << i)))
		return fail(ps, "key '%s' given twice in [server]", name);
	ps->seen |= 1u << i;
	rc = apply_key(ps->c, &server_keys[i], value, why, sizeof(why));
	if (rc == -ENOMEM)
		return fail(ps, "out of memory");
	if (rc != 0)
		return fail(ps, "bad value '%s' for '%s': expected %s", value,
		    name, why);
	return 1;
}

/* ---- routes ---------------------------------------------------------- */

static int
valid_route_path(const char *p)
{
	if (p[0] != '/')
		return 0;
	for (; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#' ||
		    ch == '%')
			return 0;
		if (ch == '*' && p[1] != '\0')
			return 0;
	}
	return 1;
}

/*
 * A [route] header whose section had no key. Called at the next header
 * (end: its line) or at the end of the file (end: INT_MAX). A line that
 * inih could not read in that section explains it better: see
 * sqc_config_load.
 */
static void
empty_route_check(struct parse_state *ps, int end)
{
	int line = ps->line;

	/* route headers as start_section knows them: hdr + 6 is the path */
	if (strncmp(ps->hdr, "route ", 6) != 0 &&
	    strncmp(ps->hdr, "route\t", 6) != 0)
		return;
	if (!ps->failed) {
		ps->empty_hdr = ps->hdr_line;
		ps->empty_end = end;
	}
	ps->line = ps->hdr_line;
	fail(ps, "route '%s' has no 'plugin' key", ps->hdr + 6);
	ps->line = line;
}

static int
new_route(struct parse_state *ps, const char *spec)
{
	struct sqc_config *c = ps->c;
	struct sqc_route_conf *r, *nr;
	size_t len;

	while (*spec == ' ' || *spec == '\t')
		spec++;
	if (!valid_route_path(spec))
		return fail(ps, "bad route '%s': a path starting with '/', "
		    "with an optional trailing '*'", spec);
	len = strlen(spec);
	for (size_t i = 0; i < c->nroutes; i++) {
		r = &c->routes[i];
		if (strlen(r->path) + (size_t)r->prefix == len &&
		    strncmp(r->path, spec, strlen(r->path)) == 0 &&
		    (spec[len - 1] == '*') == r->prefix)
			return fail(ps, "duplicate route '%s' (first at "
			    "line %d)", spec, r->line);
	}
	nr = realloc(c->routes, (c->nroutes + 1) * sizeof(*nr));
	if (nr == NULL)
		return fail(ps, "out of memory");
	c->routes = nr;
	r = &c->routes[c->nroutes++];
	memset(r, 0, sizeof(*r));
	r->line = ps->hdr_line;
	r->ws_deflate = -1;		/* not given: on, after the parse */
	r->prefix = spec[len - 1] == '*';
	r->path = strndup(spec, len - (size_t)r->prefix);
	if (r->path == NULL)
		return fail(ps, "out of memory");
	ps->route = r;
	return 1;
}

static int
route_key(struct parse_state *ps, const char *name, const char *value)
{
	struct sqc_route_conf *r = ps->route;
	struct sqc_opt *o;

	if (strcmp(name, "plugin") == 0) {
		if (r->plugin)
			return fail(ps, "key 'plugin' given twice in route "
			    "'%s'", r->path);
		if (*value == '\0')
			return fail(ps, "empty 'plugin' in route '%s'",
			    r->path);
		/* resolved once plugin_dir is known, after the parse */
		r->plugin = strdup(value);
		return r->plugin ? 1 : fail(ps, "out of memory");
	}
	if (strcmp(name, "ws_deflate") == 0) {
		/* the core's, not the plugin's: WebSocket compression */
		if (r->ws_deflate >= 0)
			return fail(ps, "key 'ws_deflate' given twice in route "
			    "'%s'", r->path);
		if (sqc_parse_bool(value, &r->ws_deflate) != 0) {
			r->ws_deflate = 0;
			return fail(ps, "bad value '%s' for 'ws_deflate': "
			    "expected on or off", value);
		}
		return 1;
	}
	o = realloc(r->opts, (r->nopts + 1) * sizeof(*o));
	if (o == NULL)
		return fail(ps, "out of memory");
	r->opts = o;
	o = &r->opts[r->nopts++];
	o->key = strdup(name);
	o->value = strdup(value);
	o->line = ps->line;
	o->used = 0;
	if (o->key == NULL || o->value == NULL)
		return fail(ps, "out of memory");
	return 1;
}

static int
start_section(struct parse_state *ps, const char *section, const char *name)
{
	ps->route = NULL;
	ps->in_server = 0;
	if (strcmp(section, "server") == 0) {
		if (ps->seen & (1u << 31))
			return fail(ps, "section [server] given twice");
		ps->seen |= 1u << 31;
		ps->in_server = 1;
		return 1;
	}
	if (strncmp(section, "route ", 6) == 0 ||
	    strncmp(section, "route\t", 6) == 0)
		return new_route(ps, section + 6);
	if (section[0] == '\0')
		return fail(ps, "key '%s' outside any section", name);
	return fail(ps, "unknown section [%s]: expected [server] or "
	    "[route PATH]", section);
}

static int
on_entry(void *user, const char *section, const char *name,
    const char *value)
{
	struct parse_state *ps = user;

	if (ps->failed)
		return 0;
	/* A new header, even one with the same name as the last. */
	if (ps->hdr_line != ps->cur_line || ps->hdr_line == 0) {
		int line = ps->line;

		ps->cur_line = ps->hdr_line;
		ps->hdr[0] = '\0';	/* the header has a key */
		ps->line = ps->hdr_line ? ps->hdr_line : line;
		if (!start_section(ps, section, name))
			return 0;
		ps->line = line;
		if (ps->hdr_line == 0)
			ps->cur_line = -1;
	}
	if (ps->in_server)
		return server_key(ps, name, value);
	return route_key(ps, name, value);
}

/*
 * inih reports keys, not section headers: remember each header's line,
 * and catch a [route] with no keys at all (it would vanish silently).
 */
static void
note_header(struct parse_state *ps, const char *s)
{
	const char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '[' || (end = strchr(s, ']')) == NULL)
		return;
	empty_route_check(ps, ps->line);
	/* inih cuts longer names silently: [route /long...] would serve
	 * another path */
	if (end - s - 1 >= INI_MAX_SECTION && !ps->long_section)
		ps->long_section = ps->line;
	ps->hdr_line = ps->line;
	snprintf(ps->hdr, sizeof(ps->hdr), "%.*s", (int)(end - s - 1), s + 1);
}

/*
 * An fgets that counts lines and notices lines inih would cut. The line
 * is read whole (getline): fgets would stop at num - 1 bytes, and when
 * these hold a NUL byte strlen could not tell the line was cut, so its
 * tail would be read as one more line, with every line number after it
 * one too high.
 */
static char *
reader(char *str, int num, void *stream)
{
	struct parse_state *ps = stream;
	ssize_t n = getline(&ps->buf, &ps->bufsize, ps->fp);
	size_t len;

	if (n < 0)
		return NULL;
	ps->line++;
	len = (size_t)n < (size_t)num - 1 ? (size_t)n : (size_t)num - 1;
	memcpy(str, ps->buf, len);
	str[len] = '\0';
	note_header(ps, str);
	if ((size_t)n > (size_t)num - 1) {
		if (!ps->too_long)
			ps->too_long = ps->line;
		str[0] = '\0';
	}
	return str;
}

/* "hello" is plugin_dir/hello.so; a value with a '/' is a path. */
static int
resolve_plugin(struct sqc_config *c, struct sqc_route_conf *r)
{
	char *path;

	if (strchr(r->plugin, '/') != NULL)
		path = sqc_path_resolve(c->dir, r->plugin);
	else if (asprintf(&path, "%s/%s.so", c->plugin_dir, r->plugin) < 0)
		path = NULL;
	if (path == NULL)
		return -ENOMEM;
	free(r->plugin);
	r->plugin = path;
	return 0;
}

static char *
folder_of(const char *file)
{
	char *abs, *slash;

	if (file[0] == '/')
		abs = strdup(file);
	else {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return NULL;
		if (asprintf(&abs, "%s/%s", cwd, file) < 0)
			return NULL;
	}
	if (abs == NULL)
		return NULL;
	slash = strrchr(abs, '/');
	if (slash == abs)
		slash[1] = '\0';
	else
		*slash = '\0';
	return abs;
}

static int
set_defaults(struct sqc_config *c)
{
	char why[160];

	for (size_t i = 0; i < NKEYS; i++) {
		if (server_keys[i].kind == K_LISTEN)
			continue;
		if (apply_key(c, &server_keys[i], server_keys[i].def, why,
		    sizeof(why)) != 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Reads file into a new configuration. Returns NULL and fills err with
 * "file:line: what is wrong" on any error.
 */
struct sqc_config *
sqc_config_load(const char *file, char *err, size_t errlen)
{
	struct parse_state ps;
	struct sqc_config *c;
	int rc;

	memset(&ps, 0, sizeof(ps));
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->file = strdup(file)) == NULL ||
	    (c->dir = folder_of(file)) == NULL || set_defaults(c) != 0) {
		snprintf(err, errlen, "%s: out of memory", file);
		sqc_config_free(c);
		return NULL;
	}
	if ((ps.fp = fopen(file, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		sqc_config_free(c);
		return NULL;
	}
	ps.c = c;
	ps.err = err;
	ps.errlen = errlen;
	rc = ini_parse_stream(reader, &ps, on_entry, &ps);
	empty_route_check(&ps, INT_MAX);
	fclose(ps.fp);
	free(ps.buf);
	if (!ps.failed && ps.too_long) {
		ps.line = ps.too_long;
		fail(&ps, "line longer than %d characters", INI_MAX_LINE - 2);
	}
	if (!ps.failed && ps.long_section) {
		ps.line = ps.long_section;
		fail(&ps, "section name longer than %d characters (a route "
		    "path of at most %d characters)", INI_MAX_SECTION - 1,
		    INI_MAX_SECTION - 7);
	}
	if (rc > 0 && (!ps.failed || rc < ps.failed ||
	    (ps.failed == ps.empty_hdr && rc < ps.empty_end))) {
		/*
		 * inih's syntax error comes first in the file, or it is
		 * why a route seemed to have no key ("plugin hello")
		 */
		ps.failed = 0;
		ps.line = rc;
		fail(&ps, "syntax error (expected [section], key = value "
		    "or a comment)");
	}
	if (!ps.failed && rc < 0) {
		snprintf(err, errlen, "%s: cannot read", file);
		ps.failed = 1;
	}
	for (size_t i = 0; !ps.failed && i < c->nroutes; i++) {
		struct sqc_route_conf *r = &c->routes[i];

		if (r->ws_deflate < 0)
			r->ws_deflate = 1;
		if (r->plugin == NULL) {
			ps.line = r->line;
			fail(&ps, "route '%s%s' has no 'plugin' key",
			    r->path, r->prefix ? "*" : "");
		} else if (resolve_plugin(c, r) != 0) {
			snprintf(err, errlen, "%s: out of memory", file);
			ps.failed = 1;
		}
	}
	if (!ps.failed && c->nlisten == 0) {
		char why[160];

		if (apply_key(c, &server_keys[0], server_keys[0].def, why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "%s: out of memory", file);
			ps.failed = 1;
		}
	}
	if (ps.failed) {
		sqc_config_free(c);
		return NULL;
	}
	return c;
}

/* s with %p as port and %% as %, malloc'ed; NULL when out of memory. */
static char *
expand_port(const char *s, int port)
{
	size_t cap = strlen(s) + 16, n = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	for (; *s; s++) {
		if (n + 12 >= cap) {
			char *o = realloc(out, cap *= 2);

			if (o == NULL) {
				free(out);
				return NULL;
			}
			out = o;
		}
		if (s[0] == '%' && s[1] == 'p') {
			n += (size_t)snprintf(out + n, cap - n, "%d", port);
			s++;
		} else if (s[0] == '%' && s[1] == '%')
			out[n++] = *s++;
		else
			out[n++] = *s;
	}
	out[n] = '\0';
	return out;
}

/*
 * One instance of several on one configuration (supervisor's, on -p
 * 8000 and -p 8001) needs files of its own: in access_log, error_log
 * and pid_file, %p becomes the port of the first listen address
 * (port_override when > 0) and %% a %. Returns 0 or -ENOMEM.
 */
int
sqc_config_expand(struct sqc_config *c, int port_override)
{
	char **paths[] = { &c->access_log, &c->error_log, &c->pid_file };
	int port = port_override > 0 ? port_override :
	    c->nlisten > 0 ? c->listen[0].port : 0;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char *e;

		if (*paths[i] == NULL || strchr(*paths[i], '%') == NULL)
			continue;
		if ((e = expand_port(*paths[i], port)) == NULL)
			return -ENOMEM;
		free(*paths[i]);
		*paths[i] = e;
	}
	return 0;
}

/* Frees a configuration from sqc_config_load; NULL is fine. */
void
sqc_config_free(struct sqc_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i].host);
	free(c->listen);
	for (size_t i = 0; i < c->nroutes; i++) {
		struct sqc_route_conf *r = &c->routes[i];

		for (size_t j = 0; j < r->nopts; j++) {
			free(r->opts[j].key);
			free(r->opts[j].value);
		}
		free(r->opts);
		free(r->path);
		free(r->plugin);
	}
	free(c->routes);
	free(c->file);
	free(c->dir);
	free(c->plugin_dir);
	free(c->pid_file);
	free(c->access_log);
	free(c->error_log);
	free(c->user);
	free(c->trusted);
	free(c);
}
