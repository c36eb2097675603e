/*
 * addr.c - client addresses: parsing lists of addresses and CIDR blocks
 * (trusted_proxies) and matching an address against them, and telling a
 * request's client address from its peer and its X-Real-IP and
 * X-Forwarded-For headers (xheaders). Pure code, no logging; loop thread.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Parses "1.2.3.4", "10.0.0.0/8", "::1" or "fd00::/8" into one block. */
static int
parse_block(const char *s, size_t len, struct sqc_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	long long bits;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->bits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		out->bits = 128;
	} else
		return -EINVAL;
	if (slash) {
		if (sqc_parse_int(slash, 0, out->bits, &bits) != 0)
			return -EINVAL;
		out->bits = (int)bits;
	}
	return 0;
}

/*
 * Parses a list of addresses and CIDR blocks separated by spaces or
 * commas. Returns the number of blocks (0 for an empty list) with a
 * malloc'ed array in *out, or -EINVAL with the offending word in bad.
 */
int
sqc_cidr_parse(const char *s, struct sqc_cidr **out, char *bad,
    size_t badlen)
{
	struct sqc_cidr *list = NULL, *nl;
	int n = 0;

	*out = NULL;
	while (*s) {
		size_t len;

		s += strspn(s, " \t,");
		if ((len = strcspn(s, " \t,")) == 0)
			break;
		if ((nl = realloc(list, (size_t)(n + 1) * sizeof(*nl))) ==
		    NULL) {
			free(list);
			return -ENOMEM;
		}
		list = nl;
		if (parse_block(s, len, &list[n]) != 0) {
			snprintf(bad, badlen, "%.*s", (int)len, s);
			free(list);
			return -EINVAL;
		}
		n++;
		s += len;
	}
	*out = list;
	return n;
}

/* Is the numeric address ip inside one of the n blocks? */
int
sqc_cidr_match(const struct sqc_cidr *list, int n, const char *ip)
{
	unsigned char a[16];
	int family;

	if (inet_pton(AF_INET, ip, a) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, ip, a) == 1)
		family = AF_INET6;
	else
		return 0;
	for (int i = 0; i < n; i++) {
		const struct sqc_cidr *c = &list[i];
		int full = c->bits / 8, rest = c->bits % 8;

		if (c->family != family)
			continue;
		if (memcmp(a, c->addr, (size_t)full) != 0)
			continue;
		if (rest == 0 || ((a[full] ^ c->addr[full]) &
		    (0xff << (8 - rest)) & 0xff) == 0)
			return 1;
	}
	return 0;
}

/* Does s hold one numeric IPv4 or IPv6 address? */
int
sqc_is_ip(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* src into out (len bytes), cut to fit: snprintf's "%s", cheaper. */
static void
copy_str(char *out, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (len == 0)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(out, src, n);
	out[n] = '\0';
}

/*
 * Fills out (len bytes) with a request's client address: peer's (NULL
 * gives "-"), or, with xheaders on and peer inside one of the ntrusted
 * blocks of trusted (a proxy such as nginx), the address in real_ip
 * (X-Real-IP) or else the last one in forwarded (X-Forwarded-For), when
 * it is one valid numeric address. Either header may be NULL (absent).
 * Returns 1 when out came from a header, 0 when it is the peer's.
 */
int
sqc_client_addr(const char *peer, const char *real_ip, const char *forwarded,
    int xheaders, const struct sqc_cidr *trusted, int ntrusted, char *out,
    size_t len)
{
	const char *v;
	char fwd[INET6_ADDRSTRLEN];
	size_t n;

	copy_str(out, len, peer ? peer : "-");
	if (!xheaders || !sqc_cidr_match(trusted, ntrusted, out))
		return 0;
	if ((v = real_ip) == NULL && (v = forwarded) != NULL) {
		const char *comma = strrchr(v, ',');

		v = comma ? comma + 1 : v;
	}
	if (v == NULL)
		return 0;
	v += strspn(v, " \t");
	/* a longer word is no address, even if its start is one */
	if ((n = strcspn(v, " \t")) >= sizeof(fwd))
		return 0;
	memcpy(fwd, v, n);
	fwd[n] = '\0';
	if (!sqc_is_ip(fwd))
		return 0;
	copy_str(out, len, fwd);
	return 1;
}
