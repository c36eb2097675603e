/*
 * config_server.c - the [server] section's keys: one table of keys with
 * their kind, bounds and default, the parser of each kind, and -T's dump
 * of a configuration. config.c reads the file and hands each [server]
 * line here. It does not log. Loop thread (or before the loop starts).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

enum kind {
	K_STR, K_PATH, K_INT, K_SIZE, K_BOOL, K_LEVEL, K_LOG, K_LISTEN, K_CIDRS,
	K_ALFMT, K_PROTOS
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
	{ "tls_certificate",	K_PATH,	OFF(tls_certificate),	0, 0,	"" },
	{ "tls_certificate_key", K_PATH, OFF(tls_certificate_key), 0, 0, "" },
	{ "tls_protocols",	K_PROTOS, OFF(tls_protocols),	0, 0,
	    "TLSv1.2 TLSv1.3" },
	{ "tls_ciphers",	K_STR,	OFF(tls_ciphers),	0, 0,	"" },
};
#define NKEYS (sizeof(server_keys) / sizeof(server_keys[0]))
/* seen: a bit per key, and bit 31 for [server] itself (config.c) */
_Static_assert(NKEYS < 31, "too many [server] keys for the seen mask");

/* One [server] key of c, as -T prints it (listen: a line per address). */
static void
dump_key(const struct sqc_config *c, const struct key *k, int port_override,
    FILE *out)
{
	static const char *const levels[] = { "error", "warn", "info",
	    "debug" };
	const void *v = (const char *)c + k->off;
	char ip[INET6_ADDRSTRLEN];

	if (k->kind == K_LISTEN) {
		for (size_t j = 0; j < c->nlisten; j++)
			fprintf(out, strchr(c->listen[j].host, ':') ?
			    "listen = [%s]:%d%s\n" :
			    "listen = %s:%d%s\n", c->listen[j].host,
			    port_override > 0 ? port_override :
			    c->listen[j].port, c->listen[j].tls ?
			    " tls" : "");
		return;
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
	case K_PROTOS:
		fprintf(out, "%s%s%s", *(const int *)v & SQC_TLS_1_2 ?
		    "TLSv1.2" : "", *(const int *)v == (SQC_TLS_1_2 |
		    SQC_TLS_1_3) ? " " : "", *(const int *)v &
		    SQC_TLS_1_3 ? "TLSv1.3" : "");
		break;
	case K_LISTEN:
		break;
	}
	fputc('\n', out);
}

/*
 * Writes c to out as the configuration it is in effect: every [server]
 * key with its value after defaults and path resolution (listen with the
 * -p port when port_override > 0), every [tls NAME] section, then every
 * route with its resolved
 * plugin path, its options as given and the core's route keys
 * (ws_deflate, left out of routes marked no_ws). Returns 0, or -EIO if
 * out fails.
 */
int
sqc_config_dump(const struct sqc_config *c, int port_override, FILE *out)
{
	fprintf(out, "# %s, as squalld reads it: every key, defaults "
	    "included\n[server]\n", c->file);
	for (size_t i = 0; i < NKEYS; i++)
		dump_key(c, &server_keys[i], port_override, out);
	for (size_t i = 0; i < c->ntls_names; i++)
		fprintf(out, "\n[tls %s]\ncertificate = %s\ncertificate_key = "
		    "%s\n", c->tls_names[i].name, c->tls_names[i].certificate,
		    c->tls_names[i].certificate_key);
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

/* tls_protocols: TLSv1.2 and TLSv1.3, one or both, nothing older */
static int
set_protocols(int *dst, const char *v, char *why, size_t whylen)
{
	char word[16];
	int bits = 0, n;

	while (sscanf(v, " %15s%n", word, &n) == 1) {
		if (strcmp(word, "TLSv1.2") == 0)
			bits |= SQC_TLS_1_2;
		else if (strcmp(word, "TLSv1.3") == 0)
			bits |= SQC_TLS_1_3;
		else
			break;
		v += n;
	}
	v += strspn(v, " \t");
	if (bits == 0 || *v != '\0') {
		snprintf(why, whylen, "TLSv1.2, TLSv1.3 or both (older "
		    "protocols are not offered)");
		return -EINVAL;
	}
	*dst = bits;
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
		    "numeric address, then \"tls\" for HTTPS");
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
	case K_PROTOS:
		return set_protocols((int *)field, v, why, whylen);
	case K_LISTEN:
		return add_listen(c, v, why, whylen);
	}
	return -EINVAL;
}

/*
 * Sets the [server] key name to value (NULL: its default). seen, when not
 * NULL, has a bit per key already given: a key but listen given twice is
 * -EEXIST. Returns 0, -ENOENT for an unknown key, -ENOMEM, or -EINVAL
 * with what was expected in why.
 */
int
sqc_config_server_key(struct sqc_config *c, const char *name,
    const char *value, unsigned *seen, char *why, size_t whylen)
{
	char buf[160];
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(server_keys[i].name, name) == 0)
			break;
	if (i == NKEYS)
		return -ENOENT;
	if (seen != NULL) {
		if (server_keys[i].kind != K_LISTEN && (*seen & (1u << i)))
			return -EEXIST;
		*seen |= 1u << i;
	}
	if (why == NULL) {
		why = buf;
		whylen = sizeof(buf);
	}
	return apply_key(c, &server_keys[i], value ? value :
	    server_keys[i].def, why, whylen);
}

/* Every [server] key but listen at its default; 0 or -ENOMEM. */
int
sqc_config_server_defaults(struct sqc_config *c)
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
