/*
 * fuzz_frames.c - the WebSocket frame path: bytes through libwebsockets
 * and squall's half of the bridge (core/ws_lws.c) the way a socket
 * brings them. One lws context and its service thread live across
 * inputs (started on the first). Each input is one connection: a
 * socketpair, one end handed to the bridge as the loop thread hands a
 * socket over (a C_ADOPT command carrying the rebuilt handshake, then a
 * wake-up), the other end ours, the client's. This thread plays the
 * loop: it takes the events the bridge pushes (polling the queue: there
 * is no event base) and, if asked, echoes each message back through
 * C_SEND, as the echo plugins do.
 *
 * The input. Three header bytes, then the client's bytes:
 *   byte 0  bits 0-2  the permessage-deflate offer (OFFER_*)
 *           bits 3-4  how the rest is fed (FEED_*)
 *           bits 5-7  max_message (max_messages[])
 *   byte 1  bits 0-2  N of a window-bits parameter, 8 + N
 *           bit 3     echo every message back
 *           bit 4     once all is quiet, half-close (shutdown SHUT_WR)
 *                     and read on, rather than close
 *           bit 5     a subprotocol ("chat") chosen by the "plugin"
 *           bit 6     a server ping (C_PING) right after the adoption
 *           bit 7     the server closes (C_CLOSE 1000) after 1 message
 *   byte 2  bits 0-5  how many of the client's bytes come with the
 *                     handshake, in the adoption's readbuf (what evhttp
 *                     read past the headers), the rest by the socket
 *           bit 6     half-close as soon as all is written (the server
 *                     sees the end while it still works on the input)
 *           bit 7     a small max_queue (4 KiB)
 * FEED_RAW writes the rest as it is: masking is the input's business.
 * The other feeds read it as frames, which the fuzzer masks and frames
 * (so it reaches deep into payload handling), one per op:
 *   op byte  bits 0-3 opcode, bit 7 FIN, bit 6 unmasked,
 *            bit 4 "compressed": on a message's first frame, RSV1, and
 *              under FEED_DEFLATE* the message's payload is deflated
 *              (sync flush, the 00 00 ff ff tail cut at FIN);
 *              under FEED_FRAMED, RSV1 over a payload left as it is
 *            bit 5 with bit 4 under FEED_DEFLATE*: the message ends
 *              with a final block (Z_FINISH), else RSV2 (always wrong)
 *   len byte L < 0xe0: L payload bytes follow; else a payload of
 *            (((L & 0x1f) << 8) | next byte) << 4 bytes, the next (up
 *            to) 16 input bytes repeated.
 * FEED_DEFLATE_NCT resets the client's compressor after every message.
 *
 * The checks. The server's output is a 101 and then a sequence of valid
 * server frames: unmasked, minimal lengths, known opcodes, control
 * frames whole and short, RSV1 only on a message's first frame and only
 * where permessage-deflate was agreed, no other RSV bit, continuations
 * only inside a message, valid close codes and UTF-8 reasons, nothing at
 * all after a Close frame; its messages (inflated) are the echoes, in
 * order, text valid UTF-8. Every E_MESSAGE is within max_message, text
 * valid UTF-8, and (framed feeds) the messages the client sent, in
 * order, up to where the stream broke the protocol; exactly one
 * E_CLOSED per adoption, nothing after it, nothing for another
 * connection; no descriptor left over (counted every 64 inputs).
 *
 * To fuzz on past a known bug, FUZZ_FRAMES_SKIP names what to leave out,
 * comma-separated: "after-close" (frames after the server's Close),
 * "close-code" (the code in the server's Close), "deflate" (no input
 * offers permessage-deflate). FUZZ_FRAMES_LOG=1 keeps lws' log lines,
 * FUZZ_FRAMES_DEBUG=1 prints each connection and what the server sent.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libwebsockets.h>
#include <zlib.h>

#include "../../core/core.h"
#include "../../core/ws_bridge.h"
#include "fuzz.h"

#define HEADER_BYTES	3
#define IDLE_MS		10	/* nothing more from the server: done */
#define STALL_MS	100	/* nor reads what is left to write */
#define CLOSED_WAIT_MS	5000	/* the bridge must report by then */
#define REPEAT_MAX	16
#define FD_CHECK_EVERY	64

enum { OFFER_NONE, OFFER_PLAIN, OFFER_CNCT, OFFER_SNCT, OFFER_SMWB,
    OFFER_CMWB, OFFER_CMWB_BARE, OFFER_BOTH_NCT };
enum { FEED_RAW, FEED_FRAMED, FEED_DEFLATE, FEED_DEFLATE_NCT };

static const size_t max_messages[] = { 1, 16, 125, 256, 1024, 65536,
    131072, 1 << 20 };

/* a growing byte buffer */
struct bytes {
	unsigned char	*p;
	size_t		 len, cap;
};

/* a frame the client sent (framed feeds), as the model reads it */
struct sent {
	int		 op, fin, rsv, masked;
	int		 deflated;	/* payload really compressed */
	struct bytes	 plain;		/* payload before compression */
};

/* a message: expected, delivered or echoed */
struct msg {
	unsigned char	*p;
	size_t		 len;
	int		 binary;
};

struct msgs {
	struct msg	*m;
	size_t		 n, cap;
};

/* one input's connection */
struct conn {
	uint64_t	 id;
	int		 offer, feed, echo, half_close, protocol, ping;
	int		 close_after, wbits, early_eof;
	size_t		 max_message, max_queue, split;
	struct bytes	 out;		/* the client's bytes */
	struct sent	*frames;
	size_t		 nframes, capframes;
	struct msgs	 delivered;	/* E_MESSAGE */
	struct msgs	 echoed;	/* C_SEND'ed back */
	int		 closed;	/* E_CLOSED seen */
	int		 close_sent;	/* C_CLOSE queued */
};

static int started;
static uint64_t next_id = 1;
static unsigned long runs;
static int fd_baseline;
static int skip_after_close, skip_close_code, skip_deflate;

/* ---- small helpers ----------------------------------------------------- */

static void
bytes_add(struct bytes *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + len)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	if (len > 0)
		memcpy(b->p + b->len, p, len);
	b->len += len;
}

static void
msgs_add(struct msgs *l, const void *p, size_t len, int binary)
{
	struct msg *m;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		if ((l->m = realloc(l->m, l->cap * sizeof(*l->m))) == NULL)
			abort();
	}
	m = &l->m[l->n++];
	if ((m->p = malloc(len + 1)) == NULL)
		abort();
	if (len > 0)
		memcpy(m->p, p, len);
	m->len = len;
	m->binary = binary;
}

static void
msgs_free(struct msgs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->m[i].p);
	free(l->m);
	memset(l, 0, sizeof(*l));
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/*
 * UTF-8 as RFC 3629 has it, written here rather than taken from
 * core/utf8.c, which is under test: returns 1 when p is whole, valid
 * UTF-8 (no surrogates, nothing over U+10FFFF, shortest forms only).
 */
static int
utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i], need, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else
			return 0;
		if (len - i - 1 < need)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* whether p starts a UTF-8 text that can still become valid */
static int
utf8_prefix_ok(const unsigned char *p, size_t len)
{
	size_t cut = len;

	/* drop an incomplete last character, if it could be one */
	for (size_t k = 1; k <= 3 && k <= len; k++) {
		unsigned c = p[len - k];

		if ((c & 0xc0) == 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xf4 && k < (c >= 0xf0 ? 4u :
		    c >= 0xe0 ? 3u : 2u)) {
			/* the bytes so far must be a possible start */
			if (k >= 2 && ((c == 0xe0 && p[len - k + 1] < 0xa0) ||
			    (c == 0xed && p[len - k + 1] > 0x9f) ||
			    (c == 0xf0 && p[len - k + 1] < 0x90) ||
			    (c == 0xf4 && p[len - k + 1] > 0x8f)))
				return 0;
			cut = len - k;
		}
		break;
	}
	return utf8_valid(p, cut);
}

/* descriptors open in this process */
static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* opendir's own */
}

/* ---- the bridge, driven as the loop thread drives it ------------------- */

static void
stop_bridge(void)
{
	sqc_wsl_end();
}

/* the service thread, once for the process */
static void
start_bridge(void)
{
	char err[256];
	const char *skip;
	size_t space;

	if (started)
		return;
	started = 1;
	if ((skip = getenv("FUZZ_FRAMES_SKIP")) != NULL) {
		skip_after_close = strstr(skip, "after-close") != NULL;
		skip_close_code = strstr(skip, "close-code") != NULL;
		skip_deflate = strstr(skip, "deflate") != NULL;
	}
	signal(SIGPIPE, SIG_IGN);
	/* lws logs what clients send wrong at error level: not here */
	if (getenv("FUZZ_FRAMES_LOG") == NULL)
		sqc_log_set_level(-1);
	sqc_wsev_init(NULL);	/* no loop to wake: we poll the queue */
	if (sqc_wsl_start(8192, &space, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_frames: %s\n", err);
		abort();
	}
	atexit(stop_bridge);
	fd_baseline = count_fds();
}

/* hands the commands over, waking the service thread as flush_cmds does */
static void
push(struct cmd *c)
{
	struct cmdq q = STAILQ_HEAD_INITIALIZER(q);

	STAILQ_INSERT_TAIL(&q, c, next);
	if (sqc_wscmd_hand_over(&q))
		sqc_wsl_wake();
}

/* the permessage-deflate offer a client makes, or NULL */
static const char *
offer_text(const struct conn *c, char *buf, size_t len)
{
	switch (c->offer) {
	case OFFER_PLAIN:
		return "permessage-deflate";
	case OFFER_CNCT:
		return "permessage-deflate; client_no_context_takeover";
	case OFFER_SNCT:
		return "permessage-deflate; server_no_context_takeover";
	case OFFER_SMWB:
		snprintf(buf, len, "permessage-deflate; "
		    "server_max_window_bits=%d", c->wbits);
		return buf;
	case OFFER_CMWB:
		snprintf(buf, len, "permessage-deflate; "
		    "client_max_window_bits=%d", c->wbits);
		return buf;
	case OFFER_CMWB_BARE:
		return "permessage-deflate; client_max_window_bits";
	case OFFER_BOTH_NCT:
		return "permessage-deflate; client_no_context_takeover; "
		    "server_no_context_takeover";
	}
	return NULL;
}

/*
 * The C_ADOPT command the loop thread would send for this connection
 * (ws_loop.c handover()): the handshake upgrade.c rebuilds from the
 * client's headers, with the first `split` client bytes after it, the
 * server's end of the socketpair, the limits, the subprotocol. What a
 * change of C_ADOPT touches is here.
 */
static struct cmd *
build_adopt(const struct conn *c, int fd)
{
	struct evkeyvalq h;
	struct evbuffer *hs;
	struct cmd *cmd;
	const char *ext;
	char buf[96];

	TAILQ_INIT(&h);
	if ((hs = evbuffer_new()) == NULL ||
	    (cmd = sqc_wscmd_new(C_ADOPT, 0)) == NULL)
		abort();
	evhttp_add_header(&h, "Host", "localhost");
	evhttp_add_header(&h, "Upgrade", "websocket");
	evhttp_add_header(&h, "Connection", "Upgrade");
	evhttp_add_header(&h, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
	evhttp_add_header(&h, "Sec-WebSocket-Version", "13");
	evhttp_add_header(&h, "Origin", "http://localhost");
	if ((ext = offer_text(c, buf, sizeof(buf))) != NULL)
		evhttp_add_header(&h, "Sec-WebSocket-Extensions", ext);
	if (c->protocol)
		evhttp_add_header(&h, "Sec-WebSocket-Protocol", "chat");
	FUZZ_CHECK(sqc_upgrade_check(1, "/ws", &h, 4096) == 0);
	FUZZ_CHECK(sqc_upgrade_handshake(hs, &h, 1) == 0);
	if (c->split > 0)
		evbuffer_add(hs, c->out.p, c->split);
	cmd->readlen = evbuffer_get_length(hs);
	if ((cmd->readbuf = malloc(cmd->readlen)) == NULL)
		abort();
	evbuffer_remove(hs, cmd->readbuf, cmd->readlen);
	evbuffer_free(hs);
	evhttp_clear_headers(&h);
	if (c->protocol && (cmd->protocol = strdup("chat")) == NULL)
		abort();
	cmd->id = c->id;
	cmd->fd = fd;
	cmd->max_message = c->max_message;
	cmd->max_queue = c->max_queue;
	return cmd;
}

/* sends a message back, as sq_ws_send does */
static void
echo(struct conn *c, const unsigned char *p, size_t len, int binary)
{
	struct wbuf *b = sqc_wbuf_new(p, len, binary, 1);
	struct cmd *cmd = sqc_wscmd_new(C_SEND, 1);

	if (b == NULL || cmd == NULL)
		abort();
	cmd->ids[cmd->nids++] = c->id;
	cmd->buf = b;
	push(cmd);
	msgs_add(&c->echoed, p, len, binary);
}

/* the events the bridge pushed; returns how many */
static int
take_events(struct conn *c)
{
	struct evq q = STAILQ_HEAD_INITIALIZER(q);
	struct wev *e;
	int n = 0;

	sqc_wsev_take(&q);
	while ((e = STAILQ_FIRST(&q)) != NULL) {
		STAILQ_REMOVE_HEAD(&q, next);
		n++;
		/* one connection at a time: nothing for an earlier one */
		FUZZ_CHECK(e->id == c->id);
		/* nothing after the close */
		FUZZ_CHECK(!c->closed);
		if (e->kind == E_CLOSED) {
			c->closed = 1;
		} else {
			FUZZ_CHECK(e->kind == E_MESSAGE);
			FUZZ_CHECK(e->len <= c->max_message);
			FUZZ_CHECK(e->binary || utf8_valid(e->data, e->len));
			msgs_add(&c->delivered, e->data, e->len, e->binary);
			if (c->echo && !c->close_sent)
				echo(c, e->data, e->len, e->binary);
			if (c->close_after && !c->close_sent) {
				struct cmd *cmd = sqc_wscmd_new(C_CLOSE, 0);

				if (cmd == NULL)
					abort();
				cmd->id = c->id;
				cmd->code = 1000;
				snprintf(cmd->reason, sizeof(cmd->reason),
				    "bye");
				push(cmd);
				c->close_sent = 1;
			}
		}
		free(e->data);
		free(e);
	}
	return n;
}

/* ---- the client's bytes ------------------------------------------------ */

static void
frame_out(struct conn *c, int b0, int masked, const unsigned char *p,
    size_t len)
{
	unsigned char h[14], key[4];
	size_t n = 2;
	uint32_t k = (uint32_t)(c->nframes + 1) * 2654435761u;

	h[0] = (unsigned char)b0;
	h[1] = masked ? 0x80 : 0;
	if (len < 126)
		h[1] |= (unsigned char)len;
	else if (len < 65536) {
		h[1] |= 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		n = 4;
	} else {
		h[1] |= 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >>
			    (56 - 8 * i));
		n = 10;
	}
	for (int i = 0; i < 4; i++)
		key[i] = (unsigned char)(k >> (8 * i));
	if (masked) {
		memcpy(h + n, key, 4);
		n += 4;
	}
	bytes_add(&c->out, h, n);
	if (len == 0)
		return;
	bytes_add(&c->out, p, len);
	if (masked)
		for (size_t i = 0; i < len; i++)
			c->out.p[c->out.len - len + i] ^= key[i & 3];
}

/* deflates p into out for a message frame; at fin, ends the message */
static void
deflate_piece(z_stream *z, const unsigned char *p, size_t len, int fin,
    int finish, struct bytes *out)
{
	unsigned char buf[4096];
	int flush = fin && finish ? Z_FINISH : Z_SYNC_FLUSH, rc;

	z->next_in = (unsigned char *)(uintptr_t)p;
	z->avail_in = (uInt)len;
	do {
		z->next_out = buf;
		z->avail_out = sizeof(buf);
		rc = deflate(z, flush);
		FUZZ_CHECK(rc == Z_OK || rc == Z_STREAM_END ||
		    rc == Z_BUF_ERROR);
		bytes_add(out, buf, sizeof(buf) - z->avail_out);
	} while (z->avail_out == 0 ||
	    (flush == Z_FINISH && rc != Z_STREAM_END));
	if (fin && !finish && out->len >= 4 &&
	    memcmp(out->p + out->len - 4, "\0\0\xff\xff", 4) == 0)
		out->len -= 4;		/* RFC 7692 7.2.1 */
	if (fin && finish)
		deflateReset(z);
}

/* the framed feeds: ops into frames (see the top) */
static void
build_frames(struct conn *c, const uint8_t *d, size_t n)
{
	z_stream z;
	int zbits = c->offer == OFFER_CMWB && c->wbits > 8 ? c->wbits : 15;
	int deflating = c->feed >= FEED_DEFLATE, in_msg = 0, msg_z = 0;
	size_t i = 0;

	memset(&z, 0, sizeof(z));
	/* zlib's raw deflate takes no 8-bit window */
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	    -(zbits < 9 ? 9 : zbits), 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	while (i < n) {
		int b = d[i++], op = b & 0x0f, fin = b >> 7 & 1;
		int masked = !(b & 0x40), zflag = b >> 4 & 1, odd = b >> 5 & 1;
		int rsv = 0, data = op <= 2, repeat = 0, zipped = 0;
		struct bytes plain = { 0 }, wire = { 0 };
		struct sent *s;
		size_t len = 0;

		if (i < n && d[i] < 0xe0)
			len = d[i++];
		else if (i < n) {
			len = (size_t)(d[i++] & 0x1f) << 8;
			len = (len | (i < n ? d[i++] : 0)) << 4;
			repeat = 1;
		}
		if (repeat && i < n) {
			size_t k = n - i < REPEAT_MAX ? n - i : REPEAT_MAX;

			for (size_t j = 0; j < len; j++)
				bytes_add(&plain, d + i + j % k, 1);
			i += k;
		} else if (!repeat) {
			if (len > n - i)
				len = n - i;
			bytes_add(&plain, d + i, len);
			i += len;
		}
		/* a message's first frame says whether it is compressed */
		if (data && op != 0) {
			msg_z = zflag;
			if (zflag)
				rsv |= 4;
		}
		if (!(deflating && zflag) && odd)
			rsv |= 2;
		if (deflating && data && msg_z && (op != 0 || in_msg)) {
			deflate_piece(&z, plain.p, plain.len, fin,
			    zflag && odd, &wire);
			zipped = 1;
		} else
			bytes_add(&wire, plain.p, plain.len);
		if (data) {
			if (fin && msg_z && c->feed == FEED_DEFLATE_NCT)
				deflateReset(&z);
			in_msg = !fin && (op != 0 || in_msg);
		}
		frame_out(c, (fin ? 0x80 : 0) | rsv << 4 | op, masked,
		    wire.p, wire.len);
		if (c->nframes == c->capframes) {
			c->capframes = c->capframes ? c->capframes * 2 : 16;
			if ((c->frames = realloc(c->frames, c->capframes *
			    sizeof(*c->frames))) == NULL)
				abort();
		}
		s = &c->frames[c->nframes++];
		s->op = op;
		s->fin = fin;
		s->rsv = rsv;
		s->masked = masked;
		s->deflated = zipped;
		s->plain = plain;
		free(wire.p);
	}
	deflateEnd(&z);
}

/*
 * The messages the server must deliver, in order, for what the client
 * sent (framed feeds): up to the first frame that breaks the protocol,
 * or a message the server must refuse. *exact is cleared where what
 * follows depends on lws (RSV1 over data that was not compressed may
 * inflate to something), so that more deliveries are not a failure.
 */
static void
expected(const struct conn *c, int agreed, struct msgs *out, int *exact)
{
	struct bytes m = { 0 };
	int open = 0, binary = 0;

	*exact = 1;
	for (size_t i = 0; i < c->nframes; i++) {
		const struct sent *s = &c->frames[i];

		if (s->rsv & 3)
			break;
		if (s->op >= 8) {
			if (s->op == 8 || s->op > 10 || !s->fin ||
			    s->plain.len > 125 || s->rsv)
				break;
			continue;
		}
		if (s->op > 2 || (s->op == 0) != open)
			break;
		if (s->op != 0) {
			if ((s->rsv & 4) && !agreed)
				break;
			if ((s->rsv & 4) && !s->deflated) {
				*exact = 0;
				break;
			}
			binary = s->op == 2;
			m.len = 0;
		} else if (s->rsv & 4)
			break;
		bytes_add(&m, s->plain.p, s->plain.len);
		if (m.len > c->max_message || (!binary &&
		    !utf8_prefix_ok(m.p, m.len)))
			break;
		open = !s->fin;
		if (s->fin) {
			if (!binary && !utf8_valid(m.p, m.len))
				break;
			msgs_add(out, m.p, m.len, binary);
		}
	}
	free(m.p);
}

/* ---- the server's bytes ------------------------------------------------ */

/* a close code a server may send (RFC 6455 7.4, IANA registry) */
static int
close_code_ok(int code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/*
 * Checks the server's output: the 101, then frames. Sets *agreed when the
 * 101 accepts permessage-deflate.
 */
static void
check_output(struct conn *c, const unsigned char *p, size_t len,
    int *agreed)
{
	const unsigned char *end;
	size_t i, hlen;
	z_stream z;
	int in_msg = 0, msg_z = 0, binary = 0, reset = 0;
	size_t nmsg = 0;
	struct bytes m = { 0 };

	*agreed = 0;
	if (len == 0)
		return;		/* lws failed the handshake, or never wrote */
	end = memmem(p, len, "\r\n\r\n", 4);
	FUZZ_CHECK(end != NULL);
	hlen = (size_t)(end - p) + 4;
	FUZZ_CHECK(len >= 13 && memcmp(p, "HTTP/1.1 101 ", 13) == 0);
	{
		char *hdr = strndup((const char *)p, hlen), *line, *save;

		for (line = strtok_r(hdr, "\r\n", &save); line != NULL;
		    line = strtok_r(NULL, "\r\n", &save)) {
			if (strncasecmp(line, "Sec-WebSocket-Extensions:",
			    25) == 0) {
				FUZZ_CHECK(c->offer != OFFER_NONE);
				FUZZ_CHECK(strstr(line, "permessage-deflate"));
				*agreed = 1;
				reset = strstr(line,
				    "server_no_context_takeover") != NULL;
			}
			if (strncasecmp(line, "Sec-WebSocket-Protocol:",
			    23) == 0)
				FUZZ_CHECK(c->protocol &&
				    strcmp(line + 23 + strspn(line + 23, " "),
				    "chat") == 0);
		}
		free(hdr);
	}
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -15) != Z_OK)
		abort();
	for (i = hlen; i < len;) {
		size_t left = len - i, hl = 2;
		uint64_t plen;
		int fin, rsv, op;
		const unsigned char *pl;

		if (left < 2)
			break;		/* cut by the connection's end */
		fin = p[i] >> 7;
		rsv = p[i] >> 4 & 7;
		op = p[i] & 0x0f;
		FUZZ_CHECK((p[i + 1] & 0x80) == 0);	/* never masked */
		plen = p[i + 1] & 0x7f;
		if (plen == 126) {
			if (left < 4)
				break;
			plen = (uint64_t)p[i + 2] << 8 | p[i + 3];
			FUZZ_CHECK(plen >= 126);
			hl = 4;
		} else if (plen == 127) {
			if (left < 10)
				break;
			plen = 0;
			for (int k = 0; k < 8; k++)
				plen = plen << 8 | p[i + 2 + k];
			FUZZ_CHECK(plen >= 65536 && plen >> 63 == 0);
			hl = 10;
		}
		if (left - hl < plen)
			break;		/* cut by the connection's end */
		pl = p + i + hl;
		i += hl + (size_t)plen;
		FUZZ_CHECK((rsv & 3) == 0);
		FUZZ_CHECK(op <= 2 || (op >= 8 && op <= 10));
		if (op >= 8) {
			FUZZ_CHECK(fin && rsv == 0 && plen <= 125);
			if (op == 9)
				FUZZ_CHECK(c->ping);
			if (op != 8)
				continue;
			FUZZ_CHECK(plen != 1);
			/*
			 * lws keeps the close code in the buffer a ping's
			 * payload lands in: squall sets it again as lws
			 * closes (sqc_link_fail), and lws reads nothing more
			 * until the close frame is out (ws_lws.c on_drop).
			 */
			if (plen >= 2) {
				FUZZ_CHECK(skip_close_code ||
				    close_code_ok(pl[0] << 8 | pl[1]));
				FUZZ_CHECK(utf8_valid(pl + 2, plen - 2));
			}
			/* nothing after a Close frame */
			FUZZ_CHECK(skip_after_close || i == len);
			if (i < len)
				continue;	/* skipped: check the rest */
			break;
		}
		FUZZ_CHECK((op == 0) == in_msg);
		if (op != 0) {
			msg_z = (rsv & 4) != 0;
			FUZZ_CHECK(!msg_z || *agreed);
			binary = op == 2;
			m.len = 0;
		} else
			FUZZ_CHECK(rsv == 0);
		if (msg_z) {
			unsigned char buf[4096];
			static const unsigned char tail[4] = { 0, 0, 0xff,
			    0xff };
			int rc = Z_OK, last = 0;

			z.next_in = (unsigned char *)(uintptr_t)pl;
			z.avail_in = (uInt)plen;
			for (;;) {
				if (z.avail_in == 0 && fin && !last) {
					z.next_in = (unsigned char *)
					    (uintptr_t)tail;
					z.avail_in = 4;
					last = 1;
				}
				z.next_out = buf;
				z.avail_out = sizeof(buf);
				rc = inflate(&z, Z_SYNC_FLUSH);
				FUZZ_CHECK(rc == Z_OK || rc == Z_BUF_ERROR ||
				    rc == Z_STREAM_END);
				bytes_add(&m, buf, sizeof(buf) - z.avail_out);
				if (rc == Z_STREAM_END)
					inflateReset(&z);
				if (z.avail_out != 0 && z.avail_in == 0 &&
				    (!fin || last))
					break;
			}
		} else
			bytes_add(&m, pl, (size_t)plen);
		in_msg = !fin;
		if (!fin)
			continue;
		if (msg_z && reset)
			inflateReset(&z);
		FUZZ_CHECK(binary || utf8_valid(m.p, m.len));
		/* the server sends only what we echoed, in order */
		FUZZ_CHECK(nmsg < c->echoed.n);
		FUZZ_CHECK(c->echoed.m[nmsg].binary == binary &&
		    c->echoed.m[nmsg].len == m.len &&
		    (m.len == 0 || memcmp(c->echoed.m[nmsg].p, m.p,
		    m.len) == 0));
		nmsg++;
	}
	inflateEnd(&z);
	free(m.p);
}

/* FUZZ_FRAMES_DEBUG: what happened, on stderr */
static void
debug(const struct conn *c, const struct bytes *in)
{
	fprintf(stderr, "conn %llu: offer %d feed %d max %zu echo %d "
	    "half-close %d: %zu bytes out (%zu with the handshake), %zu "
	    "frames, %zu messages delivered, %zu echoed; server sent %zu:\n",
	    (unsigned long long)c->id, c->offer, c->feed, c->max_message,
	    c->echo, c->half_close, c->out.len, c->split, c->nframes,
	    c->delivered.n, c->echoed.n, in->len);
	for (size_t i = 0; i < in->len; i++)
		fprintf(stderr, i + 1 == in->len || i % 32 == 31 ? "%02x\n" :
		    "%02x ", in->p[i]);
}

/* ---- one input --------------------------------------------------------- */

/*
 * Runs the connection: writes the client's bytes, reads the server's,
 * takes the events (echoing), until the server has been quiet for
 * IDLE_MS; then, with half_close, shuts our side for writing and reads
 * on until the server closes or is quiet again.
 */
static void
run(struct conn *c, int fd, struct bytes *in)
{
	size_t off = c->split;
	long last = now_ms();
	int eof = 0, shut = 0;

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int busy = 0;

		if (off < c->out.len)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 1) < 0 && errno != EINTR)
			abort();
		if (pfd.revents & POLLOUT) {
			ssize_t w = send(fd, c->out.p + off, c->out.len - off,
			    MSG_NOSIGNAL);

			if (w > 0) {
				off += (size_t)w;
				busy = 1;
			} else if (w < 0 && errno != EAGAIN)
				off = c->out.len;	/* the server is gone */
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			unsigned char buf[65536];
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			if (r > 0) {
				bytes_add(in, buf, (size_t)r);
				busy = 1;
			} else if (r == 0 || errno != EAGAIN)
				eof = 1;
		}
		if (take_events(c) > 0)
			busy = 1;
		if (busy)
			last = now_ms();
		if (eof)
			break;
		if (c->early_eof && !shut && off == c->out.len) {
			shutdown(fd, SHUT_WR);
			shut = 1;
		}
		/* a server that reads no more stops the writing too */
		if (now_ms() - last < (off == c->out.len ? IDLE_MS : STALL_MS))
			continue;
		if (!c->half_close || shut)
			break;
		shutdown(fd, SHUT_WR);
		shut = 1;
		off = c->out.len;
		last = now_ms();
	}
}

/* waits for the E_CLOSED that must come once the client has gone */
static void
wait_closed(struct conn *c)
{
	long until = now_ms() + CLOSED_WAIT_MS;

	while (!c->closed && now_ms() < until) {
		take_events(c);
		if (!c->closed)
			usleep(500);
	}
	FUZZ_CHECK(c->closed);
}

/* the bridge leaves no descriptor behind */
static void
check_fds(void)
{
	long until = now_ms() + 1000;
	int n;

	/* lws closes the socket just after it reports */
	while ((n = count_fds()) > fd_baseline && now_ms() < until)
		usleep(1000);
	if (n > fd_baseline)
		fprintf(stderr, "fuzz_frames: %d descriptors, %d at start\n",
		    n, fd_baseline);
	FUZZ_CHECK(n <= fd_baseline);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn c;
	struct bytes in = { 0 };
	struct msgs want = { 0 };
	int sv[2], agreed, exact;

	if (size < HEADER_BYTES)
		return 0;
	start_bridge();
	memset(&c, 0, sizeof(c));
	c.id = next_id++;
	c.offer = skip_deflate ? OFFER_NONE : data[0] & 7;
	c.feed = data[0] >> 3 & 3;
	c.max_message = max_messages[data[0] >> 5];
	c.wbits = 8 + (data[1] & 7);
	c.echo = data[1] >> 3 & 1;
	c.half_close = data[1] >> 4 & 1;
	c.protocol = data[1] >> 5 & 1;
	c.ping = data[1] >> 6 & 1;
	c.close_after = data[1] >> 7 & 1;
	c.max_queue = data[2] & 0x80 ? 4096 : 1 << 22;
	if (c.feed == FEED_RAW)
		bytes_add(&c.out, data + HEADER_BYTES, size - HEADER_BYTES);
	else
		build_frames(&c, data + HEADER_BYTES, size - HEADER_BYTES);
	c.split = data[2] & 0x3f;
	c.early_eof = data[2] >> 6 & 1;
	if (c.split > c.out.len)
		c.split = c.out.len;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0)
		abort();
	push(build_adopt(&c, sv[1]));
	if (c.ping) {
		struct cmd *cmd = sqc_wscmd_new(C_PING, 0);

		if (cmd == NULL)
			abort();
		cmd->id = c.id;
		cmd->code = 30;
		push(cmd);
	}
	run(&c, sv[0], &in);
	close(sv[0]);
	wait_closed(&c);

	if (getenv("FUZZ_FRAMES_DEBUG") != NULL)
		debug(&c, &in);
	check_output(&c, in.p, in.len, &agreed);
	if (c.feed != FEED_RAW) {
		expected(&c, agreed, &want, &exact);
		if (exact)
			FUZZ_CHECK(c.delivered.n <= want.n);
		for (size_t i = 0; i < c.delivered.n && i < want.n; i++)
			FUZZ_CHECK(c.delivered.m[i].binary ==
			    want.m[i].binary &&
			    c.delivered.m[i].len == want.m[i].len &&
			    (want.m[i].len == 0 || memcmp(c.delivered.m[i].p,
			    want.m[i].p, want.m[i].len) == 0));
	}
	if (++runs % FD_CHECK_EVERY == 0)
		check_fds();

	msgs_free(&want);
	msgs_free(&c.delivered);
	msgs_free(&c.echoed);
	for (size_t i = 0; i < c.nframes; i++)
		free(c.frames[i].plain.p);
	free(c.frames);
	free(c.out.p);
	free(in.p);
	return 0;
}
