/*
 * test_addr.c - trusted_proxies lists: parsing addresses and CIDR blocks,
 * and matching client addresses against them.
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
