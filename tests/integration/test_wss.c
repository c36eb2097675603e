/*
 * test_wss.c - WebSockets over TLS listeners (wss): the echo and the chat
 * room over wss, 1 MiB messages both ways, permessage-deflate, clients
 * that vanish (no descriptor left behind), a slow reader dropped at
 * max_queue, SIGTERM with members open, and sq_ws_tls. The client here
 * is a small one on OpenSSL (the harness's speaks plain TCP); the
 * certificates are made for each test with the openssl command.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "harness.h"

static struct srv s;
static char certs[256];
static SSL_CTX *ctx;

static void
setup(void)
{
	certs[0] = '\0';
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("the openssl command is needed (Debian: openssl)");
	t_tmpdir(certs, sizeof(certs));
	cr_assert_not_null(ctx = SSL_CTX_new(TLS_client_method()));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}

static void
teardown(void)
{
	srv_cleanup(&s);
	if (ctx)
		SSL_CTX_free(ctx);
	ctx = NULL;
	if (certs[0])
		t_rm_rf(certs);
}

TestSuite(wss, .init = setup, .fini = teardown, .timeout = 90);

/* ---- the server ------------------------------------------------------- */

/*
 * Starts s with a TLS listener (a fresh certificate) beside the plain
 * one, and routes (the rest of the file); the TLS listener's port.
 */
static int
start_wss(const char *routes)
{
	t_make_cert(certs, "a", "DNS:localhost,IP:127.0.0.1");
	srv_start(&s, "listen = 127.0.0.1:0 tls\ntls_certificate = %s/a.pem\n"
	    "tls_certificate_key = %s/a.key\n%s", certs, certs, routes);
	return srv_tls_port(&s);
}

/* ---- a WebSocket client on OpenSSL ------------------------------------ */

struct wss {
	int		 fd;
	SSL		*ssl;
	unsigned char	*buf;		/* read, not consumed yet */
	size_t		 len, cap;
	char		 head[4096];	/* the handshake's answer */
	int		 deflate;	/* permessage-deflate agreed */
};

/* Waits until fd is ready for what (POLLIN, POLLOUT); 0 or -1. */
static int
wait_fd(int fd, short what, long deadline)
{
	struct pollfd p = { .fd = fd, .events = what };
	long left = deadline - t_now_ms();

	if (left <= 0)
		return -1;
	return poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

/* Everything of data out through TLS; 0 or -1. */
static int
wss_write(struct wss *c, const void *data, size_t len)
{
	long deadline = t_now_ms() + 20000;
	const unsigned char *p = data;

	while (len > 0) {
		int n = SSL_write(c->ssl, p, len > (1 << 30) ? 1 << 30 :
		    (int)len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
			if (wait_fd(c->fd, POLLOUT, deadline) != 0)
				return -1;
			break;
		case SSL_ERROR_WANT_READ:
			if (wait_fd(c->fd, POLLIN, deadline) != 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

/*
 * Reads until at least need bytes are buffered; 0, or -1 at the end of
 * the stream (or a TLS failure) or timeout.
 */
static int
wss_fill(struct wss *c, size_t need, long deadline)
{
	while (c->len < need) {
		int n;

		if (c->cap - c->len < 16384) {
			c->cap = c->cap * 2 + 65536;
			cr_assert_not_null(c->buf = realloc(c->buf, c->cap));
		}
		n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			if (wait_fd(c->fd, POLLIN, deadline) != 0)
				return -1;
			break;
		case SSL_ERROR_WANT_WRITE:
			if (wait_fd(c->fd, POLLOUT, deadline) != 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

static void
wss_consume(struct wss *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/*
 * Connects to port over TLS (with a receive buffer of rcvbuf bytes when
 * positive) and upgrades on path, with more header lines if given. The
 * HTTP status, or -1.
 */
static int
wss_connect_with(struct wss *c, int port, const char *path,
    const char *more, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	long deadline = t_now_ms() + 10000;
	char req[2048], *end;
	int n, status = -1;

	memset(c, 0, sizeof(*c));
	cr_assert_geq(c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
	    0);
	if (rcvbuf > 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf));
	cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	cr_assert_not_null(c->ssl = SSL_new(ctx));
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n%s\r\n", path, more ? more : "");
	if (wss_write(c, req, (size_t)n) != 0)
		return -1;
	for (;;) {
		if (wss_fill(c, c->len + 1, deadline) != 0)
			return -1;
		if (c->len == c->cap)
			cr_assert_not_null(c->buf = realloc(c->buf, ++c->cap));
		c->buf[c->len] = '\0';
		if ((end = strstr((char *)c->buf, "\r\n\r\n")) != NULL)
			break;
	}
	n = (int)(end + 4 - (char *)c->buf);
	snprintf(c->head, sizeof(c->head), "%.*s", n, (char *)c->buf);
	wss_consume(c, (size_t)n);
	sscanf(c->head, "HTTP/1.1 %d", &status);
	c->deflate = strcasestr(c->head, "permessage-deflate") != NULL;
	return status;
}

static int
wss_connect(struct wss *c, int port, const char *path)
{
	return wss_connect_with(c, port, path, NULL, 0);
}

/* Gone at once: no close frame, no close_notify. */
static void
wss_drop(struct wss *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* A close frame and close_notify, then gone. */
static void
wss_disconnect(struct wss *c)
{
	static const unsigned char bye[] = { 0x88, 0x82, 0, 0, 0, 0, 0x03,
	    0xe8 };

	if (c->ssl) {
		wss_write(c, bye, sizeof(bye));
		SSL_shutdown(c->ssl);
	}
	wss_drop(c);
}

/*
 * data, raw-deflated as a permessage-deflate message payload with no
 * context kept (malloc'ed, its length in *outlen).
 */
static unsigned char *
deflated(const void *data, size_t len, size_t *outlen)
{
	z_stream z;
	size_t cap = len + len / 10 + 64;
	unsigned char *out = malloc(cap);

	cr_assert_not_null(out);
	memset(&z, 0, sizeof(z));
	cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (unsigned char *)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
	cr_assert_eq(z.avail_in, 0);
	/* RFC 7692 7.2.1: without the 00 00 ff ff at the end */
	*outlen = cap - z.avail_out - 4;
	deflateEnd(&z);
	return out;
}

/* A permessage-deflate payload inflated (malloc'ed), with no context. */
static unsigned char *
inflated(const unsigned char *data, size_t len, size_t *outlen)
{
	static const unsigned char tail[] = { 0, 0, 0xff, 0xff };
	unsigned char *in = malloc(len + 4), *out = NULL;
	size_t cap = 0, n = 0;
	z_stream z;
	int rc;

	cr_assert_not_null(in);
	memcpy(in, data, len);
	memcpy(in + len, tail, 4);
	memset(&z, 0, sizeof(z));
	cr_assert_eq(inflateInit2(&z, -15), Z_OK);
	z.next_in = in;
	z.avail_in = (uInt)len + 4;
	do {
		if (cap - n < 65536) {
			cap = cap * 2 + 65536;
			cr_assert_not_null(out = realloc(out, cap));
		}
		z.next_out = out + n;
		z.avail_out = (uInt)(cap - n);
		rc = inflate(&z, Z_SYNC_FLUSH);
		n = cap - z.avail_out;
	} while (rc == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
	cr_assert(rc == Z_OK || rc == Z_BUF_ERROR || rc == Z_STREAM_END,
	    "inflate: %d", rc);
	inflateEnd(&z);
	free(in);
	*outlen = n;
	return out;
}

/* One frame of b0 (FIN, RSV1, opcode) with data, masked; 0 or -1. */
static int
wss_send_frame(struct wss *c, int b0, const void *data, size_t len)
{
	unsigned char *f = malloc(len + 14), mask[4];
	size_t h = 0;
	int rc;

	cr_assert_not_null(f);
	RAND_bytes(mask, 4);
	f[h++] = (unsigned char)b0;
	if (len < 126)
		f[h++] = 0x80 | (unsigned char)len;
	else if (len < 65536) {
		f[h++] = 0x80 | 126;
		f[h++] = (unsigned char)(len >> 8);
		f[h++] = (unsigned char)len;
	} else {
		f[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			f[h++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	memcpy(f + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < len; i++)
		f[h + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
	rc = wss_write(c, f, h + len);
	free(f);
	return rc;
}

/* One message in one frame: compressed when deflate was agreed. */
static int
wss_send(struct wss *c, int opcode, const void *data, size_t len)
{
	unsigned char *z;
	size_t zlen;
	int rc;

	if (!c->deflate || opcode >= 8)
		return wss_send_frame(c, 0x80 | opcode, data, len);
	z = deflated(data, len, &zlen);
	rc = wss_send_frame(c, 0x80 | 0x40 | opcode, z, zlen);
	free(z);
	return rc;
}

/*
 * The next message, its fragments joined and inflated (pings and pongs
 * skipped): *opcode is 1, 2 or 8; *data malloc'ed and NUL-ended; *rsv1
 * (if given) says whether it came compressed. 0, or -1.
 */
static int
wss_recv_ex(struct wss *c, int *opcode, char **data, size_t *len,
    int *rsv1, int timeout_ms)
{
	long deadline = t_now_ms() + timeout_ms;
	unsigned char *msg = NULL;
	size_t mlen = 0;
	int op = -1, z = 0;

	for (;;) {
		uint64_t plen;
		size_t h = 2;
		int b0;

		if (wss_fill(c, 2, deadline) != 0)
			goto fail;
		b0 = c->buf[0];
		plen = c->buf[1] & 0x7f;
		if (plen == 126)
			h = 4;
		else if (plen == 127)
			h = 10;
		if (wss_fill(c, h, deadline) != 0)
			goto fail;
		if (plen == 126)
			plen = (uint64_t)c->buf[2] << 8 | c->buf[3];
		else if (plen == 127) {
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | c->buf[2 + i];
		}
		if (wss_fill(c, h + plen, deadline) != 0)
			goto fail;
		if ((b0 & 0x0f) == 9 || (b0 & 0x0f) == 10) {
			wss_consume(c, h + plen);
			continue;
		}
		if ((b0 & 0x0f) != 0) {
			op = b0 & 0x0f;
			z = (b0 & 0x40) != 0;
		}
		cr_assert_not_null(msg = realloc(msg, mlen + plen + 1));
		memcpy(msg + mlen, c->buf + h, plen);
		mlen += plen;
		wss_consume(c, h + plen);
		if (b0 & 0x80)
			break;
	}
	if (z) {
		unsigned char *plain = inflated(msg, mlen, &mlen);

		free(msg);
		cr_assert_not_null(msg = realloc(plain, mlen + 1));
	}
	msg[mlen] = '\0';
	*opcode = op;
	*data = (char *)msg;
	*len = mlen;
	if (rsv1)
		*rsv1 = z;
	return 0;
fail:
	free(msg);
	return -1;
}

static char *
wss_recv_text(struct wss *c, int timeout_ms)
{
	char *data;
	size_t len;
	int op;

	if (wss_recv_ex(c, &op, &data, &len, NULL, timeout_ms) != 0)
		return NULL;
	if (op != 1) {
		free(data);
		return NULL;
	}
	return data;
}

/* The next text message must contain want. */
static void
expect_text(struct wss *c, const char *want)
{
	char *t = wss_recv_text(c, 5000);

	cr_assert_not_null(t, "no message (wanted \"%s\")", want);
	cr_assert_not_null(strstr(t, want), "\"%s\" is not \"%s\"", t, want);
	free(t);
}

/* The server's close frame: its code, or -1. */
static int
wss_wait_close(struct wss *c, int timeout_ms)
{
	char *data;
	size_t len;
	int op, code = -1;

	while (wss_recv_ex(c, &op, &data, &len, NULL, timeout_ms) == 0) {
		if (op == 8) {
			code = len >= 2 ? ((unsigned char)data[0] << 8 |
			    (unsigned char)data[1]) : 1005;
			free(data);
			return code;
		}
		free(data);
	}
	return code;
}

/* ---- the tests -------------------------------------------------------- */

/* The routes of a test: echo_ws at /echo with options, chat at /chat. */
static char *
routes(const char *echo_opts, const char *chat_opts)
{
	char *r;

	cr_assert(asprintf(&r, "[route /echo]\nplugin = %s\n%s"
	    "[route /chat]\nplugin = chat\n%s", t_test_plugin("echo_ws"),
	    echo_opts ? echo_opts : "", chat_opts ? chat_opts : "") >= 0);
	return r;
}

static int
start_routes(const char *echo_opts, const char *chat_opts)
{
	char *r = routes(echo_opts, chat_opts);
	int port = start_wss(r);

	free(r);
	return port;
}

/*
 * The echo over wss: the first bytes are the 101, text and binary come
 * back, the plugin is told the session came by TLS (and a plain one
 * that it did not), and the access log has the upgrade.
 */
Test(wss, echo_over_tls)
{
	struct wss c;
	struct wsc p;
	char *data;
	size_t len;
	int op, port = start_routes("announce = on\n", NULL);

	cr_assert_eq(wss_connect(&c, port, "/echo"), 101);
	cr_assert_eq(strncmp(c.head, "HTTP/1.1 101 ", 13), 0);
	expect_text(&c, "protocol=(none)");
	cr_assert_eq(wss_send(&c, 1, "tls", 3), 0);
	expect_text(&c, "tls=1");
	cr_assert_eq(wss_send(&c, 1, "h\xc3\xa9llo", 6), 0);
	expect_text(&c, "h\xc3\xa9llo");
	cr_assert_eq(wss_send(&c, 2, "\0\1\2", 3), 0);
	cr_assert_eq(wss_recv_ex(&c, &op, &data, &len, NULL, 5000), 0);
	cr_assert_eq(op, 2);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(data, "\0\1\2", 3), 0);
	free(data);
	/* the plain listener: the same route, not TLS */
	cr_assert_eq(ws_connect(&p, s.port, "/echo", NULL), 101);
	free(ws_recv_text(&p, 5000));
	cr_assert_eq(ws_send(&p, 1, "tls", 3), 0);
	data = ws_recv_text(&p, 5000);
	cr_assert_str_eq(data, "tls=0");
	free(data);
	ws_disconnect(&p);
	cr_assert_eq(srv_wait_log(&s, "\"GET /echo HTTP/1.1\" 101", 2, 3000),
	    0, "no access log line for the upgrades");
	wss_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * The chat room over wss: two TLS members and a plain one see each
 * other's lines, and a member's leaving.
 */
Test(wss, chat_members_see_each_other)
{
	struct wss a, b;
	struct wsc p;
	int port = start_routes(NULL, NULL);

	cr_assert_eq(wss_connect(&a, port, "/chat"), 101);
	expect_text(&a, " joined at ");
	cr_assert_eq(wss_connect(&b, port, "/chat"), 101);
	expect_text(&b, " joined at ");
	expect_text(&a, " joined at ");
	cr_assert_eq(ws_connect(&p, s.port, "/chat", NULL), 101);
	free(ws_expect_line(&p, " joined at "));
	expect_text(&a, " joined at ");
	expect_text(&b, " joined at ");
	cr_assert_eq(wss_send(&a, 1, "from a", 6), 0);
	expect_text(&a, ": from a");
	expect_text(&b, ": from a");
	free(ws_expect_line(&p, ": from a$"));
	cr_assert_eq(wss_send(&b, 1, "from b", 6), 0);
	expect_text(&a, ": from b");
	expect_text(&b, ": from b");
	free(ws_expect_line(&p, ": from b$"));
	cr_assert_eq(ws_send(&p, 1, "from p", 6), 0);
	expect_text(&a, ": from p");
	expect_text(&b, ": from p");
	free(ws_expect_line(&p, ": from p$"));
	wss_disconnect(&b);
	expect_text(&a, " left at ");
	free(ws_expect_line(&p, " left at "));
	wss_disconnect(&a);
	ws_disconnect(&p);
	cr_assert_eq(srv_stop(&s), 0);
}

/* 1 MiB each way, twice, binary and text. */
Test(wss, large_messages_both_ways)
{
	size_t n = 1 << 20, len;
	unsigned char *big = malloc(n);
	struct wss c;
	char *data;
	int op, port = start_routes("max_message = 2M\nmax_queue = 4M\n",
	    NULL);

	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (unsigned char)(i * 7 + i / 4096);
	cr_assert_eq(wss_connect(&c, port, "/echo"), 101);
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(wss_send(&c, 2, big, n), 0);
		cr_assert_eq(wss_recv_ex(&c, &op, &data, &len, NULL, 20000), 0);
		cr_assert_eq(op, 2);
		cr_assert_eq(len, n);
		cr_assert_eq(memcmp(data, big, n), 0, "the echo differs");
		free(data);
	}
	memset(big, 'x', n);
	cr_assert_eq(wss_send(&c, 1, big, n), 0);
	cr_assert_eq(wss_recv_ex(&c, &op, &data, &len, NULL, 20000), 0);
	cr_assert_eq(op, 1);
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, big, n), 0);
	free(data);
	free(big);
	wss_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/* permessage-deflate over wss: agreed, compressed both ways. */
Test(wss, permessage_deflate_over_tls)
{
	size_t n = 200000, len;
	char *text = malloc(n), *data;
	struct wss c;
	int op, z, port = start_routes("max_message = 1M\n", NULL);

	cr_assert_not_null(text);
	for (size_t i = 0; i < n; i++)
		text[i] = "squall over tls "[i % 16];
	cr_assert_eq(wss_connect_with(&c, port, "/echo",
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "client_no_context_takeover; server_no_context_takeover\r\n", 0),
	    101);
	cr_assert(c.deflate, "not agreed: %s", c.head);
	cr_assert_eq(wss_send(&c, 1, text, n), 0);
	cr_assert_eq(wss_recv_ex(&c, &op, &data, &len, &z, 10000), 0);
	cr_assert_eq(op, 1);
	cr_assert(z, "the echo came uncompressed");
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, text, n), 0);
	free(data);
	/* under 1 KiB: uncompressed */
	cr_assert_eq(wss_send(&c, 1, "short", 5), 0);
	cr_assert_eq(wss_recv_ex(&c, &op, &data, &len, &z, 5000), 0);
	cr_assert_str_eq(data, "short");
	cr_assert_eq(z, 0);
	free(data);
	free(text);
	wss_disconnect(&c);
	cr_assert_eq(srv_stop(&s), 0);
}

/* The server's descriptors once its connections and relays are gone. */
static int
settled_fds(int baseline)
{
	long deadline = t_now_ms() + 10000;
	int n;

	while ((n = t_open_fds(s.pid)) > baseline && t_now_ms() < deadline)
		usleep(50000);
	return n;
}

/*
 * 200 clients that upgrade and vanish: without a word, with a TCP
 * close only, or mid-message; and some that close properly. The
 * server's descriptors come back to what they were.
 */
Test(wss, vanishing_clients_leave_no_descriptors)
{
	int port = start_routes(NULL, NULL), before, after;
	struct wss c;

	before = t_open_fds(s.pid);
	/* one session first, so that whatever is made once is made */
	cr_assert_eq(wss_connect(&c, port, "/echo"), 101);
	cr_assert_eq(wss_send(&c, 1, "warm", 4), 0);
	expect_text(&c, "warm");
	wss_disconnect(&c);
	cr_assert_leq(settled_fds(before), before);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(wss_connect(&c, port, i % 2 ? "/echo" : "/chat"),
		    101, "connection %d", i);
		switch (i % 4) {
		case 0:
			wss_drop(&c);
			break;
		case 1:		/* half a frame, then gone */
			wss_write(&c, "\x81\x85\0\0", 4);
			wss_drop(&c);
			break;
		case 2:
			wss_disconnect(&c);
			break;
		default:	/* close_notify without a close frame */
			SSL_shutdown(c.ssl);
			wss_drop(&c);
			break;
		}
	}
	after = settled_fds(before);
	cr_assert_leq(after, before, "%d descriptors before, %d after",
	    before, after);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * A wss member that does not read is dropped at max_queue; the others
 * carry on. The relay stops reading lws while the client's side holds
 * 64 KiB, so the backlog reaches lws, whose queue limit ends it.
 */
Test(wss, slow_reader_is_dropped_at_max_queue)
{
	int port = start_routes(NULL, "max_queue = 16K\n"), sent;
	struct wss slow, fast;
	char msg[8192];

	memset(msg, 'm', sizeof(msg));
	cr_assert_eq(wss_connect_with(&slow, port, "/chat", NULL, 4096), 101);
	cr_assert_eq(wss_connect(&fast, port, "/chat"), 101);
	expect_text(&fast, "joined at");
	for (sent = 0; sent < 3000; sent++) {
		char *line;

		cr_assert_eq(wss_send(&fast, 1, msg, sizeof(msg)), 0);
		line = wss_recv_text(&fast, 5000);
		cr_assert_not_null(line, "fast lost its line %d", sent);
		if (strstr(line, " left at ") != NULL) {
			free(line);
			break;
		}
		free(line);
	}
	cr_assert_lt(sent, 3000, "the slow reader was never dropped");
	cr_log_info("slow wss reader dropped after %d messages of 8 KiB",
	    sent);
	cr_assert_eq(wss_send(&fast, 1, "after", 5), 0);
	for (;;) {
		char *line = wss_recv_text(&fast, 5000);

		cr_assert_not_null(line, "fast was dropped too");
		if (strstr(line, ": after") != NULL) {
			free(line);
			break;
		}
		free(line);
	}
	wss_drop(&slow);
	wss_disconnect(&fast);
	cr_assert_eq(srv_stop(&s), 0);
}

/* SIGTERM with wss members open: they get 1001, the server exits 0. */
Test(wss, sigterm_with_members_open_exits_0)
{
	int port = start_routes(NULL, NULL);
	struct wss c[4];

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(wss_connect(&c[i], port, "/chat"), 101);
		expect_text(&c[i], "joined at");
	}
	srv_signal(&s, SIGTERM);
	cr_assert_eq(wss_wait_close(&c[0], 5000), 1001);
	cr_assert_eq(srv_wait_exit(&s, 15000), 0);
	for (int i = 0; i < 4; i++)
		wss_drop(&c[i]);
}

/* GET https://127.0.0.1:port/path verifying against ca; the body. */
static char *
https_body(int port, const char *path, const char *ca, long *status)
{
	char url[128];
	struct resp r;
	CURL *c = curl_easy_init();
	FILE *f;

	memset(&r, 0, sizeof(r));
	cr_assert_not_null(f = open_memstream(&r.body, &r.len));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK, "GET %s failed", url);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	fclose(f);
	return r.body;
}

/*
 * etc/squall-tls.ini as shipped, with a certificate in tls/ beside it:
 * /hello and the chat page over https (verified against that
 * certificate), the page choosing wss, and the chat over wss with a
 * member on the plain listener.
 */
Test(wss, shipped_tls_example_serves_https_and_wss)
{
	char dir[300], ca[400], *ini, *body;
	struct wss a;
	struct wsc p;
	long status;
	int port;

	t_tmpdir(s.dir, sizeof(s.dir));
	snprintf(dir, sizeof(dir), "%s/tls", s.dir);
	cr_assert_eq(mkdir(dir, 0700), 0);
	t_make_cert(dir, "squall", "DNS:localhost,IP:127.0.0.1");
	snprintf(ca, sizeof(ca), "%s/squall.pem", dir);
	ini = t_example_ini("squall-tls.ini", NULL);
	srv_start_in(&s, ini);
	free(ini);
	port = srv_tls_port(&s);
	cr_assert_neq(port, s.port);
	body = https_body(port, "/hello", ca, &status);
	cr_assert_eq(status, 200);
	cr_assert_str_eq(body, "Hello, world");
	free(body);
	body = https_body(port, "/", ca, &status);
	cr_assert_eq(status, 200);
	cr_assert_not_null(strstr(body, "'wss://'"), "the page: %s", body);
	free(body);
	body = https_body(port, "/data", ca, &status);
	cr_assert_eq(status, 200, "/data: %s", body);
	free(body);
	cr_assert_eq(wss_connect(&a, port, "/chat"), 101);
	expect_text(&a, " joined at ");
	cr_assert_eq(ws_connect(&p, s.port, "/chat", NULL), 101);
	free(ws_expect_line(&p, " joined at "));
	expect_text(&a, " joined at ");
	cr_assert_eq(wss_send(&a, 1, "over tls", 8), 0);
	expect_text(&a, ": over tls");
	free(ws_expect_line(&p, ": over tls$"));
	wss_disconnect(&a);
	ws_disconnect(&p);
	cr_assert_eq(srv_stop(&s), 0);
}
