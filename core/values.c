/*
 * values.c - the parsers of configuration values: integers, byte sizes,
 * booleans, listen addresses, and paths relative to the configuration's
 * folder. Used by config.c for [server] keys, by plugin.c for plugin
 * options, and by addr.c for CIDR lengths. Pure functions.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"

/* Parses a decimal integer in [min, max]; -EINVAL or -ERANGE. */
int
sqc_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Parses a byte count with an optional K, M or G suffix. */
int
sqc_parse_size(const char *s, size_t *out)
{
	unsigned long long v, mul = 1;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	}
	if (*end != '\0')
		return -EINVAL;
	if (v > SIZE_MAX / mul)
		return -ERANGE;
	*out = (size_t)(v * mul);
	return 0;
}

/* on/off, yes/no, true/false, 1/0. */
int
sqc_parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "on", "yes", "true", "1" };
	static const char *no[] = { "off", "no", "false", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * host:port or [v6]:port, numeric addresses only, then optionally "tls"
 * after blanks; port 0 picks one.
 */
int
sqc_parse_listen(const char *s, struct sqc_listen *out)
{
	unsigned char buf[sizeof(struct in6_addr)];
	const char *colon, *hs, *he, *flag;
	long long port;
	char host[INET6_ADDRSTRLEN], portbuf[8];
	size_t hl, pl;

	if (s[0] == '[') {
		hs = s + 1;
		if ((he = strchr(hs, ']')) == NULL || he[1] != ':')
			return -EINVAL;
		colon = he + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -EINVAL;
		hs = s;
		he = colon;
	}
	hl = (size_t)(he - hs);
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (inet_pton(s[0] == '[' ? AF_INET6 : AF_INET, host, buf) != 1)
		return -EINVAL;
	pl = strcspn(colon + 1, " \t");
	flag = colon + 1 + pl + strspn(colon + 1 + pl, " \t");
	if (pl >= sizeof(portbuf) || (*flag != '\0' && strcmp(flag, "tls") != 0))
		return -EINVAL;
	memcpy(portbuf, colon + 1, pl);
	portbuf[pl] = '\0';
	if (sqc_parse_int(portbuf, 0, 65535, &port) != 0)
		return -EINVAL;
	out->host = strdup(host);
	out->port = (int)port;
	out->tls = *flag != '\0';
	return out->host ? 0 : -ENOMEM;
}

/* Joins a relative path to dir; returns a malloc'ed string. */
char *
sqc_path_resolve(const char *dir, const char *path)
{
	char *out;

	if (path[0] == '/' || dir == NULL)
		return strdup(path);
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}
