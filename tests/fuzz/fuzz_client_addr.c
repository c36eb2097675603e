/*
 * fuzz_client_addr - the client address behind a proxy (sqc_client_addr
 * in core/addr.c, what http.c logs and hands plugins): the peer's, or a
 * trusted peer's X-Real-IP / X-Forwarded-For.
 *
 * Input, one field a line: flags (first byte: bit 0 xheaders, bit 1 no
 * X-Real-IP, bit 2 no X-Forwarded-For, bit 3 no peer), the peer address,
 * X-Real-IP, X-Forwarded-For, then trusted_proxies. Checks: the result
 * is the peer's unless xheaders is on and the peer trusted; otherwise it
 * the first word of X-Real-IP, or else of the last X-Forwarded-For
 * element, all of that word, and a valid address.
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "fuzz.h"
#include "fields.h"
#include "../../core/core.h"

/* The first word of s (words end at a space or a tab), into buf */
static const char *
first_word(const char *s, char *buf, size_t len)
{
	s += strspn(s, " \t");
	snprintf(buf, len, "%.*s", (int)strcspn(s, " \t"), s);
	return buf;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_fields ff;
	struct sqc_cidr *trusted = NULL;
	const char *peer, *real_ip, *fwd, *v;
	char out[INET6_ADDRSTRLEN], bad[64], *tv = NULL;
	int flags, xheaders, ntrusted, rc, trusted_peer;

	if (fuzz_split(&ff, data, size, 5) != 0)
		return 0;
	flags = ff.f[0] ? (unsigned char)ff.f[0][0] : 0;
	xheaders = flags & 1;
	peer = flags & 8 ? NULL : ff.f[1];
	real_ip = flags & 2 ? NULL : ff.f[2];
	fwd = flags & 4 ? NULL : ff.f[3];
	ntrusted = sqc_cidr_parse(ff.f[4] ? ff.f[4] : "127.0.0.1 ::1",
	    &trusted, bad, sizeof(bad));
	if (ntrusted < 0)
		goto out;

	memset(out, 'x', sizeof(out));
	rc = sqc_client_addr(peer, real_ip, fwd, xheaders, trusted, ntrusted,
	    out, sizeof(out));
	FUZZ_CHECKF(rc == 0 || rc == 1, "%d", rc);
	FUZZ_CHECKF(memchr(out, '\0', sizeof(out)) != NULL, "out unended");
	trusted_peer = peer && sqc_cidr_match(trusted, ntrusted, peer);
	if (rc == 0) {
		/* the peer's, cut to the buffer */
		FUZZ_CHECKF(strncmp(out, peer ? peer : "-", sizeof(out) - 1) ==
		    0, "'%s' for peer '%s'", out, peer ? peer : "(none)");
		goto out;
	}
	FUZZ_CHECKF(xheaders, "headers used with xheaders off");
	FUZZ_CHECKF(trusted_peer, "headers of untrusted peer '%s' used",
	    peer ? peer : "(none)");
	FUZZ_CHECKF(sqc_is_ip(out), "'%s' is no address", out);
	if (real_ip != NULL)
		v = real_ip;
	else {
		FUZZ_CHECKF(fwd != NULL, "no header, yet rc 1");
		v = strrchr(fwd, ',') ? strrchr(fwd, ',') + 1 : fwd;
	}
	if ((tv = malloc(strlen(v) + 1)) == NULL)
		goto out;
	FUZZ_CHECKF(strcmp(out, first_word(v, tv, strlen(v) + 1)) == 0,
	    "'%s' taken from '%s'", out, v);
out:
	free(tv);
	free(trusted);
	fuzz_fields_free(&ff);
	return 0;
}
