/*
 * config.c - reads squall.ini (with inih) into a struct sqc_config: the
 * [server] keys (config_server.c parses them), and one [route PATH]
 * section per route: the core's keys (plugin, ws_deflate), and the others
 * kept, with their line numbers, for the plugin.
 * It does not log: errors come back as a message naming file:line and key.
 * Loop thread (or before the loop starts).
 */
#include "config.h"

#include <ctype.h>
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
	struct sqc_tls_conf *tls;	/* [tls NAME] being read, or NULL */
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
	n = ps->line > 0 ? snprintf(ps->err, ps->errlen, "%s:%d: ",
	    ps->c->file, ps->line) : snprintf(ps->err, ps->errlen, "%s: ",
	    ps->c->file);
	if (n < 0 || (size_t)n >= ps->errlen)
		return 0;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return 0;
}

/* A [server] line: config_server.c parses it, we say where it was. */
static int
server_key(struct parse_state *ps, const char *name, const char *value)
{
	char why[160] = "";

	switch (sqc_config_server_key(ps->c, name, value, &ps->seen, why,
	    sizeof(why))) {
	case 0:
		return 1;
	case -ENOENT:
		return fail(ps, "unknown key '%s' in [server]", name);
	case -EEXIST:
		return fail(ps, "key '%s' given twice in [server]", name);
	case -ENOMEM:
		return fail(ps, "out of memory");
	default:
		return fail(ps, "bad value '%s' for '%s': expected %s", value,
		    name, why);
	}
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

/* A server name as SNI gives it, or "*." and one: letters, digits, - . */
static int
valid_tls_name(const char *n)
{
	if (strncmp(n, "*.", 2) == 0)
		n += 2;
	if (*n == '\0' || *n == '.' || strlen(n) > 253)
		return 0;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '-' &&
		    (*n != '.' || n[1] == '.' || n[1] == '\0'))
			return 0;
	return 1;
}

static int
new_tls_section(struct parse_state *ps, const char *name)
{
	struct sqc_config *c = ps->c;
	struct sqc_tls_conf *t, *nt;

	name += strspn(name, " \t");
	if (!valid_tls_name(name))
		return fail(ps, "bad [tls %s]: a server name such as "
		    "www.example.com or *.example.com", name);
	for (size_t i = 0; i < c->ntls_names; i++)
		if (strcasecmp(c->tls_names[i].name, name) == 0)
			return fail(ps, "duplicate [tls %s] (first at line "
			    "%d)", name, c->tls_names[i].line);
	nt = realloc(c->tls_names, (c->ntls_names + 1) * sizeof(*nt));
	if (nt == NULL)
		return fail(ps, "out of memory");
	c->tls_names = nt;
	t = &c->tls_names[c->ntls_names++];
	memset(t, 0, sizeof(*t));
	t->line = ps->hdr_line;
	if ((t->name = strdup(name)) == NULL)
		return fail(ps, "out of memory");
	ps->tls = t;
	return 1;
}

/* certificate and certificate_key in [tls NAME], paths like any other */
static int
tls_key(struct parse_state *ps, const char *name, const char *value)
{
	struct sqc_tls_conf *t = ps->tls;
	char **dst;

	if (strcmp(name, "certificate") == 0)
		dst = &t->certificate;
	else if (strcmp(name, "certificate_key") == 0)
		dst = &t->certificate_key;
	else
		return fail(ps, "unknown key '%s' in [tls %s]: expected "
		    "certificate or certificate_key", name, t->name);
	if (*dst != NULL)
		return fail(ps, "key '%s' given twice in [tls %s]", name,
		    t->name);
	if (*value == '\0')
		return fail(ps, "empty '%s' in [tls %s]", name, t->name);
	if ((*dst = sqc_path_resolve(ps->c->dir, value)) == NULL)
		return fail(ps, "out of memory");
	return 1;
}

static int
start_section(struct parse_state *ps, const char *section, const char *name)
{
	ps->route = NULL;
	ps->tls = NULL;
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
	if (strncmp(section, "tls ", 4) == 0 ||
	    strncmp(section, "tls\t", 4) == 0)
		return new_tls_section(ps, section + 4);
	if (section[0] == '\0')
		return fail(ps, "key '%s' outside any section", name);
	return fail(ps, "unknown section [%s]: expected [server], "
	    "[route PATH] or [tls NAME]", section);
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
	if (ps->tls)
		return tls_key(ps, name, value);
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

/*
 * After the file: what a section lacks, and the defaults that depend on
 * the rest (the plugins' paths, ws_deflate, listen).
 */
static void
complete(struct parse_state *ps)
{
	struct sqc_config *c = ps->c;

	for (size_t i = 0; !ps->failed && i < c->nroutes; i++) {
		struct sqc_route_conf *r = &c->routes[i];

		if (r->ws_deflate < 0)
			r->ws_deflate = 1;
		ps->line = r->line;
		if (r->plugin == NULL)
			fail(ps, "route '%s%s' has no 'plugin' key",
			    r->path, r->prefix ? "*" : "");
		else if (resolve_plugin(c, r) != 0)
			fail(ps, "out of memory");
	}
	for (size_t i = 0; !ps->failed && i < c->ntls_names; i++) {
		const struct sqc_tls_conf *t = &c->tls_names[i];

		ps->line = t->line;
		if (t->certificate == NULL || t->certificate_key == NULL)
			fail(ps, "[tls %s] needs certificate and "
			    "certificate_key", t->name);
	}
	ps->line = 0;
	if (!ps->failed && c->nlisten == 0 &&
	    sqc_config_server_key(c, "listen", NULL, NULL, NULL, 0) != 0)
		fail(ps, "out of memory");
	for (size_t i = 0; !ps->failed && i < c->nlisten; i++) {
		const struct sqc_listen *l = &c->listen[i];

		if (l->tls && (*c->tls_certificate == '\0' ||
		    *c->tls_certificate_key == '\0'))
			fail(ps, strchr(l->host, ':') ? "listen [%s]:%d tls: "
			    "[server] needs tls_certificate and "
			    "tls_certificate_key" : "listen %s:%d tls: "
			    "[server] needs tls_certificate and "
			    "tls_certificate_key", l->host, l->port);
	}
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
	    (c->dir = folder_of(file)) == NULL || sqc_config_server_defaults(c) != 0) {
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
	if (!ps.failed)
		complete(&ps);
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
	free(c->tls_certificate);
	free(c->tls_certificate_key);
	free(c->tls_ciphers);
	for (size_t i = 0; i < c->ntls_names; i++) {
		free(c->tls_names[i].name);
		free(c->tls_names[i].certificate);
		free(c->tls_names[i].certificate_key);
	}
	free(c->tls_names);
	free(c);
}
