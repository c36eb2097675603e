/*
 * test_addr.c - trusted_proxies lists: parsing addresses and CIDR blocks,
 * matching client addresses against them, and the client address taken
 * from a trusted proxy's X-Real-IP or X-Forwarded-For.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "../../core/core.h"

TestSuite(addr);

static struct sqc_cidr *
parse(const char *s, int want)
{
	struct sqc_cidr *l;
	char bad[64] = "";
	int n = sqc_cidr_parse(s, &l, bad, sizeof(bad));

	cr_assert_eq(n, want, "'%s': %d blocks, expected %d (bad '%s')", s,
	    n, want, bad);
	return l;
}

Test(addr, parses_lists)
{
	struct sqc_cidr *l = parse("127.0.0.1 ::1, 10.0.0.0/8,fd00::/8", 4);

	cr_assert_eq(l[0].family, AF_INET);
	cr_assert_eq(l[0].bits, 32);
	cr_assert_eq(l[1].family, AF_INET6);
	cr_assert_eq(l[1].bits, 128);
	cr_assert_eq(l[2].bits, 8);
	cr_assert_eq(l[3].bits, 8);
	free(l);
	free(parse("", 0));
	free(parse("  ", 0));
}

Test(addr, refuses_bad_blocks)
{
	static const char *bad[] = { "localhost", "10.0.0.0/33", "::1/129",
	    "1.2.3", "10.0.0.0/", "10.0.0.0/x", "1.2.3.4/8/8" };
	struct sqc_cidr *l;
	char word[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(sqc_cidr_parse(bad[i], &l, word, sizeof(word)),
		    -EINVAL, "'%s' accepted", bad[i]);
		cr_assert_str_eq(word, bad[i]);
	}
	cr_assert_eq(sqc_cidr_parse("127.0.0.1 nope", &l, word, sizeof(word)),
	    -EINVAL);
	cr_assert_str_eq(word, "nope");
}

Test(addr, matches_blocks)
{
	struct sqc_cidr *l = parse("127.0.0.1 10.0.0.0/8 192.168.4.0/22 "
	    "fd00::/8 2001:db8::/33", 5);

	cr_assert(sqc_cidr_match(l, 5, "127.0.0.1"));
	cr_assert_not(sqc_cidr_match(l, 5, "127.0.0.2"));
	cr_assert(sqc_cidr_match(l, 5, "10.255.1.2"));
	cr_assert_not(sqc_cidr_match(l, 5, "11.0.0.1"));
	cr_assert(sqc_cidr_match(l, 5, "192.168.7.255"));
	cr_assert_not(sqc_cidr_match(l, 5, "192.168.8.0"));
	cr_assert(sqc_cidr_match(l, 5, "fd12:3456::1"));
	cr_assert_not(sqc_cidr_match(l, 5, "fe80::1"));
	cr_assert(sqc_cidr_match(l, 5, "2001:db8:7fff::1"));
	cr_assert_not(sqc_cidr_match(l, 5, "2001:db8:8000::1"));
	cr_assert_not(sqc_cidr_match(l, 5, "not an address"));
	cr_assert_not(sqc_cidr_match(l, 5, "::ffff:127.0.0.2"));
	free(l);
}

Test(addr, zero_bits_matches_the_family)
{
	struct sqc_cidr *l = parse("0.0.0.0/0", 1);

	cr_assert(sqc_cidr_match(l, 1, "203.0.113.9"));
	cr_assert_not(sqc_cidr_match(l, 1, "::1"));
	free(l);
}

Test(addr, is_ip)
{
	cr_assert(sqc_is_ip("1.2.3.4"));
	cr_assert(sqc_is_ip("::1"));
	cr_assert_not(sqc_is_ip("1.2.3.4 "));
	cr_assert_not(sqc_is_ip("example.com"));
	cr_assert_not(sqc_is_ip(""));
}

/* client(peer, X-Real-IP, X-Forwarded-For) with xheaders on, 127.0.0.1 */
static const char *
client(const char *peer, const char *real_ip, const char *fwd, int want)
{
	static char out[64];
	struct sqc_cidr *l = parse("127.0.0.1 ::1", 2);

	cr_assert_eq(sqc_client_addr(peer, real_ip, fwd, 1, l, 2, out,
	    sizeof(out)), want, "peer %s, X-Real-IP %s, X-Forwarded-For %s",
	    peer, real_ip, fwd);
	free(l);
	return out;
}

Test(addr, client_from_a_trusted_peers_headers)
{
	cr_assert_str_eq(client("127.0.0.1", "203.0.113.9", "198.51.100.1",
	    1), "203.0.113.9", "X-Real-IP comes first");
	cr_assert_str_eq(client("::1", NULL, "198.51.100.1, 10.0.0.1", 1),
	    "10.0.0.1", "the last X-Forwarded-For address (the proxy's)");
	cr_assert_str_eq(client("127.0.0.1", NULL, " 2001:db8::1 \t", 1),
	    "2001:db8::1");
	cr_assert_str_eq(client("127.0.0.1", "nope", "198.51.100.1", 0),
	    "127.0.0.1", "a bad X-Real-IP leaves the peer");
	cr_assert_str_eq(client("127.0.0.1", NULL, "1.2.3.4,", 0),
	    "127.0.0.1", "an empty last X-Forwarded-For leaves the peer");
	cr_assert_str_eq(client("127.0.0.1", NULL, NULL, 0), "127.0.0.1");
	cr_assert_str_eq(client("192.0.2.1", "203.0.113.9", NULL, 0),
	    "192.0.2.1", "an untrusted peer's headers are ignored");
	cr_assert_str_eq(client(NULL, "203.0.113.9", NULL, 0), "-");
}

Test(addr, client_header_longer_than_an_address_is_no_address)
{
	/* 46 characters whose first 45 are a valid address */
	cr_assert_str_eq(client("127.0.0.1",
	    "1111:2222:3333:4444:5555:6666:123.123.123.1234", NULL, 0),
	    "127.0.0.1");
	cr_assert_str_eq(client("127.0.0.1", NULL,
	    "1111:2222:3333:4444:5555:6666:123.123.123.123", 1),
	    "1111:2222:3333:4444:5555:6666:123.123.123.123");
}

Test(addr, client_headers_need_xheaders)
{
	struct sqc_cidr *l = parse("127.0.0.1", 1);
	char out[64];

	cr_assert_eq(sqc_client_addr("127.0.0.1", "203.0.113.9", NULL, 0, l,
	    1, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "127.0.0.1");
	free(l);
}
