/*
 * test_ws_deflate.c - core/ws_deflate.c: permessage-deflate on zlib.
 * Messages come back whole through the link's own compressor and the
 * shared one, a stream may end inside a message (BFINAL) and the next
 * goes on, a bomb stops at the sink's limit, garbage is refused, and a
 * window of 8 bits is honoured.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../core/ws_bridge.h"

TestSuite(ws_deflate, .fini = sqc_pmd_cleanup);

/* what a sink received, up to a limit */
struct got {
	unsigned char	*p;
	size_t		 len, limit;
	int		 calls;
};

static int
sink(void *arg, const unsigned char *p, size_t n)
{
	struct got *g = arg;

	g->calls++;
	if (g->len + n > g->limit)
		return -E2BIG;
	cr_assert_not_null(g->p = realloc(g->p, g->len + n));
	memcpy(g->p + g->len, p, n);
	g->len += n;
	return 0;
}

/* a chat-like line n bytes long */
static unsigned char *
text(size_t n, int seed)
{
	unsigned char *p = malloc(n);

	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)("[127.0.0.1] at 2026-12-04: hello "
		    "squall "[(i + (size_t)seed) % 40]);
	return p;
}

/* inflates one whole message of len bytes, expecting want */
static void
expect_inflates(z_stream **zin, int bits, const unsigned char *z,
    size_t zlen, const unsigned char *want, size_t len)
{
	struct got g = { NULL, 0, SIZE_MAX, 0 };
	int ended = 0;

	cr_assert_eq(sqc_pmd_inflate(zin, bits, &ended, z, zlen, 1, sink, &g),
	    0);
	cr_assert_eq(g.len, len, "%zu bytes, expected %zu", g.len, len);
	cr_assert(memcmp(g.p, want, len) == 0);
	free(g.p);
}

Test(ws_deflate, a_broadcast_is_compressed_alone)
{
	unsigned char *m = text(5000, 0), *a, *b;
	size_t alen, blen;

	cr_assert_eq(sqc_pmd_deflate_once(15, m, 5000, &a, &alen), 0);
	cr_assert_eq(sqc_pmd_deflate_once(15, m, 5000, &b, &blen), 0);
	/* the same bytes each time: no context is carried */
	cr_assert_eq(alen, blen);
	cr_assert(memcmp(a, b, alen) == 0);
	for (int i = 0; i < 2; i++) {
		z_stream *zin = NULL;

		expect_inflates(&zin, 15, a, alen, m, 5000);
		sqc_pmd_inflate_end(&zin);
	}
	cr_assert_eq(sqc_pmd_deflate_once(16, m, 5000, &b, &blen), -EINVAL);
	free(a);
	free(b);
	free(m);
}

/* RFC 7692 7.2.3.4: a message whose stream ends, then more messages */
Test(ws_deflate, a_final_block_ends_the_message_not_the_connection)
{
	z_stream *zin = NULL;

	for (int i = 0; i < 3; i++) {
		unsigned char *m = text(200, i), z[512];
		z_stream c;
		size_t zlen;

		memset(&c, 0, sizeof(c));
		cr_assert_eq(deflateInit2(&c, 6, Z_DEFLATED, -15, 8,
		    Z_DEFAULT_STRATEGY), Z_OK);
		c.next_in = m;
		c.avail_in = 200;
		c.next_out = z;
		c.avail_out = sizeof(z);
		cr_assert_eq(deflate(&c, Z_FINISH), Z_STREAM_END);
		zlen = sizeof(z) - c.avail_out;
		deflateEnd(&c);
		expect_inflates(&zin, 15, z, zlen, m, 200);
		free(m);
	}
	sqc_pmd_inflate_end(&zin);
}

Test(ws_deflate, a_bomb_stops_at_the_limit)
{
	size_t n = 16u << 20;
	unsigned char *zeros = calloc(1, n), *z;
	struct got g = { NULL, 0, 1u << 20, 0 };
	z_stream *zin = NULL;
	size_t zlen;
	int ended = 0;

	cr_assert_not_null(zeros);
	cr_assert_eq(sqc_pmd_deflate_once(15, zeros, n, &z, &zlen), 0);
	cr_assert_lt(zlen, n / 500);
	cr_assert_eq(sqc_pmd_inflate(&zin, 15, &ended, z, zlen, 1, sink, &g),
	    -E2BIG);
	/* 16 KiB at a time: it stopped at the first piece past the limit */
	cr_assert_leq(g.len, 1u << 20);
	cr_assert_leq(g.calls, (1 << 20) / 16384 + 1);
	sqc_pmd_inflate_end(&zin);
	free(g.p);
	free(z);
	free(zeros);
}

Test(ws_deflate, garbage_is_refused)
{
	static const unsigned char bad[] = { 0xff, 0xff, 0xff, 0xff, 0x00 };
	struct got g = { NULL, 0, SIZE_MAX, 0 };
	z_stream *zin = NULL;
	int ended = 0;

	cr_assert_eq(sqc_pmd_inflate(&zin, 15, &ended, bad, sizeof(bad), 1,
	    sink, &g), -EINVAL);
	sqc_pmd_inflate_end(&zin);
	free(g.p);
}

/* A client that asked for server_max_window_bits=8 can inflate it. */
Test(ws_deflate, a_window_of_8_bits_is_honoured)
{
	unsigned char *m = text(20000, 3), *z, *out = malloc(20000);
	static const unsigned char tail[4] = { 0, 0, 0xff, 0xff };
	z_stream d;
	size_t zlen;

	cr_assert_not_null(out);
	cr_assert_eq(sqc_pmd_deflate_once(8, m, 20000, &z, &zlen), 0);
	memset(&d, 0, sizeof(d));
	cr_assert_eq(inflateInit2(&d, -8), Z_OK);
	d.next_in = z;
	d.avail_in = (uInt)zlen;
	d.next_out = out;
	d.avail_out = 20000;
	cr_assert_eq(inflate(&d, Z_SYNC_FLUSH), Z_OK, "%s", d.msg);
	d.next_in = (unsigned char *)tail;
	d.avail_in = 4;
	cr_assert_neq(inflate(&d, Z_SYNC_FLUSH), Z_DATA_ERROR);
	cr_assert_eq(d.total_out, 20000);
	cr_assert(memcmp(out, m, 20000) == 0);
	inflateEnd(&d);
	free(z);
	free(out);
	free(m);
}
