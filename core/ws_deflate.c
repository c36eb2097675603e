/*
 * ws_deflate.c - permessage-deflate (RFC 7692) on zlib, for the
 * libwebsockets half of the bridge: a message's payload inflated with
 * squall's bounds, and compressed once for every link that shares the
 * window (squall answers no context takeover both ways: upgrade.c).
 * Service thread only: the shared compressors below are its own.
 *
 * libwebsockets 4.1's own extension is not used: it asserts on a valid
 * stream (extension-permessage-deflate.c:351), drops every message after
 * one whose last block has BFINAL set, cannot answer window sizes, and
 * resets the server's compressor for the client's no_context_takeover.
 * ws_lws.c registers an extension of the same name that only passes the
 * payload through, so that lws accepts RSV1, and calls this file.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "ws_bridge.h"

/* what ends every compressed message (RFC 7692 7.2.1), stripped on the wire */
static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* the compressors of messages sent without context takeover, by bits */
static z_stream *once[16];

/*
 * After a final block: a new stream that keeps the window, as context
 * takeover needs (a client without it resets its own side anyway).
 */
static int
inflate_restart(z_stream *z)
{
	unsigned char dict[32768];
	uInt n = sizeof(dict);

	if (inflateGetDictionary(z, dict, &n) != Z_OK)
		n = 0;
	if (inflateReset(z) != Z_OK)
		return -ENOMEM;
	if (n > 0 && inflateSetDictionary(z, dict, n) != Z_OK)
		return -ENOMEM;
	return 0;
}

/*
 * Inflates a piece of a compressed message into sink, 16 KiB at a time,
 * so that the sink's limit stops an inflation bomb early; fin says the
 * piece is the message's last (the tail is appended). A message may end
 * its DEFLATE stream (a block with BFINAL set, RFC 7692 7.2.3.4): then
 * *ended is set, what follows in the message (the tail at least) is not
 * inflated, and the next message starts a new stream on the same window.
 * The caller clears *ended at each message's start. *zp is created at
 * first use with a window of bits. Returns 0, -EINVAL (not valid DEFLATE
 * data), -ENOMEM, or what the sink returned.
 */
int
sqc_pmd_inflate(z_stream **zp, int bits, int *ended, const unsigned char *in,
    size_t len, int fin, int (*sink)(void *, const unsigned char *, size_t),
    void *arg)
{
	unsigned char out[16384];
	z_stream *z = *zp;
	int rc;

	if (z == NULL) {
		if ((z = calloc(1, sizeof(*z))) == NULL)
			return -ENOMEM;
		if (inflateInit2(z, -bits) != Z_OK) {
			free(z);
			return -ENOMEM;
		}
		*zp = z;
	}
	for (int pass = 0; pass < 2 && !*ended; pass++) {
		if (pass == 1) {
			if (!fin)
				break;
			in = tail;
			len = sizeof(tail);
		}
		while (len > 0 && !*ended) {
			uInt take = len > UINT_MAX ? UINT_MAX : (uInt)len;

			z->next_in = (unsigned char *)in;
			z->avail_in = take;
			do {
				size_t n;
				int zr;

				z->next_out = out;
				z->avail_out = sizeof(out);
				zr = inflate(z, Z_SYNC_FLUSH);
				if (zr == Z_MEM_ERROR)
					return -ENOMEM;
				if (zr != Z_OK && zr != Z_STREAM_END &&
				    zr != Z_BUF_ERROR)
					return -EINVAL;
				n = sizeof(out) - z->avail_out;
				if (n > 0 && (rc = sink(arg, out, n)) != 0)
					return rc;
				if (zr == Z_STREAM_END) {
					*ended = 1;
					if (inflate_restart(z) != 0)
						return -ENOMEM;
					break;
				}
				if (zr == Z_BUF_ERROR)
					break;	/* all input taken */
			} while (z->avail_in > 0 || z->avail_out == 0);
			in += take;
			len -= take;
		}
	}
	return 0;
}

/* Frees an inflater (NULL is fine); the next message makes a new one. */
void
sqc_pmd_inflate_end(z_stream **zp)
{
	if (*zp != NULL) {
		inflateEnd(*zp);
		free(*zp);
		*zp = NULL;
	}
}

/* a deflater: raw DEFLATE with a window of 2^bits, bits >= 9 for zlib */
static z_stream *
deflater(int bits)
{
	z_stream *z = calloc(1, sizeof(*z));

	/*
	 * zlib refuses a raw window of 8 bits and never uses a distance
	 * over 2^9 - 262 with 9: a peer that asked for 8 can read it.
	 */
	if (bits < 9)
		bits = 9;
	if (z != NULL && deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	    -bits, MAX_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(z);
		z = NULL;
	}
	return z;
}

/* compresses len bytes with z, sync-flushed, the tail stripped */
static int
pmd_compress(z_stream *z, const unsigned char *in, size_t len,
    unsigned char **out, size_t *outlen)
{
	size_t cap = deflateBound(z, len) + 16, n = 0;
	unsigned char *buf = malloc(cap);
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	do {
		uInt take = len > UINT_MAX / 2 ? UINT_MAX / 2 : (uInt)len;

		z->next_in = (unsigned char *)in;
		z->avail_in = take;
		in += take;
		len -= take;
		do {
			if (cap - n < 64) {
				unsigned char *nb = realloc(buf, cap * 2);

				if (nb == NULL) {
					free(buf);
					return -ENOMEM;
				}
				buf = nb;
				cap *= 2;
			}
			z->next_out = buf + n;
			z->avail_out = (uInt)(cap - n > UINT_MAX ? UINT_MAX :
			    cap - n);
			rc = deflate(z, len > 0 ? Z_NO_FLUSH : Z_SYNC_FLUSH);
			n = (size_t)(z->next_out - buf);
			if (rc != Z_OK && rc != Z_BUF_ERROR) {
				free(buf);
				return -ENOMEM;
			}
		} while (z->avail_in > 0 || z->avail_out == 0);
	} while (len > 0);
	if (n < sizeof(tail) || memcmp(buf + n - sizeof(tail), tail,
	    sizeof(tail)) != 0) {
		free(buf);
		return -EIO;	/* zlib always ends a sync flush so */
	}
	*out = buf;
	*outlen = n - sizeof(tail);
	return 0;
}

/*
 * Compresses a message with no context taken over: the output depends on
 * the message and bits only, so one copy serves every link that agreed
 * to the same. Returns 0 or a negative errno.
 */
int
sqc_pmd_deflate_once(int bits, const unsigned char *in, size_t len,
    unsigned char **out, size_t *outlen)
{
	int rc;

	if (bits < 8 || bits > 15)
		return -EINVAL;
	if (once[bits] == NULL &&
	    (once[bits] = deflater(bits)) == NULL)
		return -ENOMEM;
	rc = pmd_compress(once[bits], in, len, out, outlen);
	deflateReset(once[bits]);
	return rc;
}

/* At exit: the shared compressors. */
void
sqc_pmd_cleanup(void)
{
	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
		if (once[i] != NULL) {
			deflateEnd(once[i]);
			free(once[i]);
			once[i] = NULL;
		}
}
