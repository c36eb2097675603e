/*
 * fuzz_values.c - the value parsers of squall.ini. The first byte picks
 * the parser (and sqc_parse_int's range), the rest is the value, as a
 * C string: sqc_parse_int, sqc_parse_size, sqc_parse_bool,
 * sqc_parse_listen, sqc_cidr_parse with sqc_cidr_match, sqc_is_ip and
 * sqc_log_level_parse.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "../../core/core.h"
#include "fuzz.h"

static const long long ranges[][2] = {
	{ 0, 65535 }, { 1, 256 }, { 0, 86400 }, { LLONG_MIN, LLONG_MAX },
	{ -5, 5 }, { 1, 1000000 }, { 0, 0 }, { 0, 1LL << 32 },
};

static const char *const ips[] = {
	"127.0.0.1", "10.1.2.3", "192.168.0.255", "0.0.0.0",
	"255.255.255.255", "::1", "::", "fd00::1", "2001:db8::ffff",
	"::ffff:127.0.0.1", "not an ip", "",
};

static void
cidrs(const char *s)
{
	struct sqc_cidr *list = (struct sqc_cidr *)1;
	char bad[64];
	int n;

	bad[0] = '\0';
	n = sqc_cidr_parse(s, &list, bad, sizeof(bad));
	if (n < 0) {
		FUZZ_CHECK(n == -EINVAL || n == -ENOMEM);
		FUZZ_CHECK(list == NULL);
		FUZZ_CHECK(n == -ENOMEM || bad[0] != '\0');
		return;
	}
	FUZZ_CHECK(n == 0 || list != NULL);
	for (int i = 0; i < n; i++) {
		FUZZ_CHECK(list[i].family == AF_INET ||
		    list[i].family == AF_INET6);
		FUZZ_CHECK(list[i].bits >= 0 && list[i].bits <=
		    (list[i].family == AF_INET ? 32 : 128));
	}
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		int m = sqc_cidr_match(list, n, ips[i]);

		FUZZ_CHECK(m == 0 || m == 1);
		FUZZ_CHECK(m == 0 || sqc_is_ip(ips[i]));
	}
	/* the list matches its own addresses */
	for (int i = 0; i < n; i++) {
		char ip[INET6_ADDRSTRLEN];

		FUZZ_CHECK(inet_ntop(list[i].family, list[i].addr, ip,
		    sizeof(ip)) != NULL);
		FUZZ_CHECK(sqc_cidr_match(list, n, ip) == 1);
	}
	free(list);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sqc_listen l;
	long long n, min, max;
	size_t sz;
	char *s;
	int b, rc;

	if (size < 1)
		return 0;
	if ((s = malloc(size)) == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 7) {
	case 0:
		min = ranges[(data[0] / 7) % 8][0];
		max = ranges[(data[0] / 7) % 8][1];
		n = 12345;
		rc = sqc_parse_int(s, min, max, &n);
		FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
		FUZZ_CHECK(rc != 0 || (n >= min && n <= max));
		FUZZ_CHECK(rc == 0 || n == 12345);
		break;
	case 1:
		rc = sqc_parse_size(s, &sz);
		FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
		FUZZ_CHECK(rc != 0 || (s[0] >= '0' && s[0] <= '9'));
		break;
	case 2:
		b = 7;
		rc = sqc_parse_bool(s, &b);
		FUZZ_CHECK(rc == 0 || rc == -EINVAL);
		FUZZ_CHECK(rc == 0 ? (b == 0 || b == 1) : b == 7);
		break;
	case 3:
		memset(&l, 0, sizeof(l));
		rc = sqc_parse_listen(s, &l);
		if (rc == 0) {
			FUZZ_CHECK(l.host != NULL && sqc_is_ip(l.host));
			FUZZ_CHECK(l.port >= 0 && l.port <= 65535);
			free(l.host);
		} else
			FUZZ_CHECK(l.host == NULL);
		break;
	case 4:
		cidrs(s);
		break;
	case 5:
		rc = sqc_is_ip(s);
		FUZZ_CHECK(rc == 0 || rc == 1);
		break;
	case 6:
		rc = sqc_log_level_parse(s);
		FUZZ_CHECK(rc == -EINVAL || (rc >= 0 && rc <= 3));
		break;
	}
	free(s);
	return 0;
}
