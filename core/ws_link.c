/*
 * ws_link.c - a WebSocket session's data on the libwebsockets service
 * thread: the queue of messages to send, framed here and written as raw
 * bytes, many to a send (see ws_lws.c for when), compressed when
 * permessage-deflate is on (ws_deflate.c); and the message being
 * received, reassembled from lws' pieces, inflated, held to the limits
 * and checked as UTF-8. Service thread only. The link's life (adoption,
 * callbacks, the end) is ws_lws.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libwebsockets.h>

#include "core.h"
#include "ws_bridge.h"
#include "ws_link.h"

/* a link's queue keeps room for this many messages when it empties */
#define OUT_KEEP		8

static struct link *dirty;	/* links with output to write */

/* Drops what l has queued. */
void
sqc_link_drop_output(struct link *l)
{
	for (size_t i = l->outhead; i < l->nout; i++)
		sqc_wbuf_unref(l->out[i]);
	l->outhead = l->nout = 0;
	l->outoff = 0;
	l->queued = 0;
	free(l->cur_own);
	l->cur_own = NULL;
	l->cur_ready = 0;
}

/* Asks lws to close the link with code once it can write. */
void
sqc_link_close(struct link *l, int code, const char *reason)
{
	if (l->close_code == 0) {
		l->close_code = code;
		snprintf(l->close_reason, sizeof(l->close_reason), "%s",
		    reason ? reason : "");
	}
	if (l->wsi) {
		lws_callback_on_writable(l->wsi);
		/* a client that reads nothing any more is dropped anyway */
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_CLOSE_ACK, 5);
	}
}

/*
 * At stop, for a link lws is not busy with: what is queued, then a close
 * frame (1001), written now, and the socket shut. A write after that
 * fails, which marks the socket unusable for lws, so that the caller can
 * free the link at once (LWS_TO_KILL_SYNC) without lws' own closing
 * handshake: that would keep a timeout per link in lws' sorted list, each
 * insert a walk over all of them (at 19,000 members SIGTERM took 14 s).
 * Returns 1 when done so, 0 when the link must close the usual way
 * (sqc_link_close).
 */
int
sqc_link_stop(struct link *l)
{
	static const char reason[] = "server stopping";
	unsigned char f[4 + sizeof(reason)];
	size_t n = 0;

	if (!l->established || l->wsi == NULL || l->peer_closed ||
	    l->lws_closing || l->lws_busy || l->close_code || l->ping_secs ||
	    sqc_link_write(l) < 0 || l->outhead != l->nout ||
	    lws_partial_buffered(l->wsi))
		return 0;
	f[n++] = 0x88;
	f[n++] = (unsigned char)(2 + sizeof(reason) - 1);
	f[n++] = LWS_CLOSE_STATUS_GOINGAWAY >> 8;
	f[n++] = LWS_CLOSE_STATUS_GOINGAWAY & 0xff;
	memcpy(f + n, reason, sizeof(reason) - 1);
	n += sizeof(reason) - 1;
	l->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
	if (lws_write(l->wsi, f, n, LWS_WRITE_HTTP) >= 0) {
		shutdown(lws_get_socket_fd(l->wsi), SHUT_RDWR);
		(void)lws_write(l->wsi, f, 1, LWS_WRITE_HTTP);
	}
	return 1;
}

/* drops the connection at once: it cannot be written to */
static void
link_kill(struct link *l, int code)
{
	if (l->close_code == 0)
		l->close_code = code;
	if (l->wsi)
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
}

/* Queues b on l, to be written when the commands are done. */
void
sqc_link_send(struct link *l, struct wbuf *b)
{
	if (l->close_code != 0 || l->peer_closed || l->lws_closing) {
		sqc_wbuf_unref(b);
		return;
	}
	if (l->queued + b->len > l->max_queue) {
		/*
		 * A reader this slow would grow our memory without bound. Its
		 * socket is full, so a close frame would never go out either:
		 * drop the connection.
		 */
		sqc_wbuf_unref(b);
		link_kill(l, LWS_CLOSE_STATUS_POLICY_VIOLATION);
		return;
	}
	if (l->nout == l->outcap && l->outhead > 0) {
		memmove(l->out, l->out + l->outhead,
		    (l->nout - l->outhead) * sizeof(*l->out));
		l->nout -= l->outhead;
		l->outhead = 0;
	}
	if (l->nout == l->outcap) {
		size_t cap = l->outcap ? l->outcap * 2 : 8;
		struct wbuf **n = realloc(l->out, cap * sizeof(*n));

		if (n == NULL) {
			sqc_wbuf_unref(b);
			sqc_link_close(l, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
			    "out of memory");
			return;
		}
		l->out = n;
		l->outcap = cap;
	}
	l->out[l->nout++] = b;
	l->queued += b->len;
	if (!l->dirty) {
		l->dirty = 1;
		l->dnext = dirty;
		dirty = l;
	}
}

/* the header of a server frame (never masked); b0: RSV1 and the opcode */
static size_t
frame_header(unsigned char *h, int b0, int fin, size_t len)
{
	h[0] = (unsigned char)((fin ? 0x80 : 0) | b0);
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

/*
 * Readies the message at the head of l's queue for framing: its payload
 * as it is or, on a permessage-deflate link when it is worth it,
 * compressed once for every link with the same window, without context
 * takeover (the copy kept with the message). Returns 0 or a negative
 * errno.
 */
static int
msg_ready(struct link *l, struct wbuf *b)
{
	unsigned char *z;
	size_t zlen;
	int rc, bits;

	l->cur_ready = 1;
	l->cur = b->data;
	l->curlen = b->len;
	l->cur_rsv1 = 0;
	if (!l->deflate || b->len < DEFLATE_MIN)
		return 0;
	bits = l->srv_bits ? l->srv_bits : 15;
	if (b->zdata == NULL || b->zbits != bits) {
		if ((rc = sqc_pmd_deflate_once(bits, b->data, b->len, &z,
		    &zlen)) != 0)
			return rc;
		if (b->zdata == NULL) {
			b->zdata = z;
			b->zlen = zlen;
			b->zbits = bits;
		} else
			l->cur_own = z;	/* another window: ours */
	}
	if (l->cur_own == NULL) {
		z = b->zdata;
		zlen = b->zlen;
	}
	l->cur = z;
	l->curlen = zlen;
	l->cur_rsv1 = 1;
	return 0;
}

/*
 * Writes l's queue, framed by us, as many messages to a
 * send as fit in a batch (a larger message goes as fragments, one per
 * batch), for as long as the socket takes them whole: once lws has had
 * to keep part of a send, the rest waits for it to ask for more. lws
 * gets the frames as raw bytes, so they never touch its own framing
 * state; its control frames (pongs, closes) go between our sends, never
 * inside one. Returns -1 when the connection failed.
 */
int
sqc_link_write(struct link *l)
{
	static unsigned char batch[BATCH_SIZE + FRAME_HEADER_MAX];

	while (l->outhead < l->nout && !lws_partial_buffered(l->wsi)) {
		size_t n = 0;
		int rc;

		while (l->outhead < l->nout) {
			struct wbuf *b = l->out[l->outhead];
			size_t left, take;
			int b0;

			if (!l->cur_ready && msg_ready(l, b) != 0)
				return -1;
			left = l->curlen - l->outoff;
			take = left < BATCH_SIZE - n ? left : BATCH_SIZE - n;
			b0 = l->outoff ? 0 : (b->binary ? 2 : 1) |
			    (l->cur_rsv1 ? 0x40 : 0);
			if (take < left && n > 0)
				break;	/* a fragment starts a batch */
			n += frame_header(batch + n, b0, take == left, take);
			memcpy(batch + n, l->cur + l->outoff, take);
			n += take;
			if (take < left) {
				l->outoff += take;
				break;
			}
			l->outoff = 0;
			l->outhead++;
			l->queued -= b->len;
			free(l->cur_own);
			l->cur_own = NULL;
			l->cur_ready = 0;
			sqc_wbuf_unref(b);
			if (n + FRAME_HEADER_MAX >= BATCH_SIZE)
				break;
		}
		rc = lws_write(l->wsi, batch, n, LWS_WRITE_HTTP);
		if (rc < 0)
			return -1;
	}
	if (l->outhead == l->nout) {
		l->outhead = l->nout = 0;
		if (l->outcap > OUT_KEEP) {
			/* a burst is over: idle connections stay small */
			free(l->out);
			l->out = NULL;
			l->outcap = 0;
		}
	}
	return 0;
}

/* Writes what was queued for the links of this command batch. */
void
sqc_link_flush(void)
{
	struct link *l;

	while ((l = dirty) != NULL) {
		dirty = l->dnext;
		l->dirty = 0;
		if (!l->established || l->wsi == NULL || l->peer_closed ||
		    l->lws_closing)
			continue;	/* ESTABLISHED asks to write */
		if (l->close_code || l->ping_secs || l->lws_busy)
			lws_callback_on_writable(l->wsi);
		else if (sqc_link_write(l) < 0)
			link_kill(l, 1006);
	}
}

/* appends a received fragment to the message */
static int
link_receive(struct link *l, const void *in, size_t len)
{
	if (l->rxlen + len + 1 > l->rxcap) {
		size_t cap = l->rxcap ? l->rxcap : 256;
		unsigned char *n;

		while (cap < l->rxlen + len + 1)
			cap *= 2;
		if ((n = realloc(l->rx, cap)) == NULL)
			return -1;
		l->rx = n;
		l->rxcap = cap;
	}
	if (len > 0)	/* lws ends a compressed message with NULL, 0 */
		memcpy(l->rx + l->rxlen, in, len);
	l->rxlen += len;
	l->rx[l->rxlen] = '\0';
	return 0;
}

/* what a piece of a message may add: within the limit, UTF-8 if text */
static int
rx_sink(void *arg, const unsigned char *p, size_t n)
{
	struct link *l = arg;

	if (l->rxlen + n > l->max_message)
		return -E2BIG;
	if (!l->binary && sqc_utf8_check(&l->utf8, p, n) != 0)
		return -EILSEQ;
	return link_receive(l, p, n) != 0 ? -ENOMEM : 0;
}

/*
 * Fails the link for what it sent (RFC 6455 7.1.7), for the error a
 * piece of its message gave: the message so far is dropped, then the
 * close frame goes out and the connection ends. Returns what RECEIVE
 * returns.
 */
static int
rx_fail(struct lws *wsi, struct link *l, int err)
{
	int code = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
	const char *reason = "out of memory";

	switch (err) {
	case -E2BIG:
		code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
		reason = "message too large";
		break;
	case -EILSEQ:
		code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
		reason = "bad utf8";
		break;
	case -EINVAL:
		code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
		reason = "bad compressed data";
		break;
	case -EPROTO:
		code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
		reason = "rsv1 on a continuation";
		break;
	}
	free(l->rx);
	l->rx = NULL;
	l->rxlen = l->rxcap = 0;
	/* sqc_link_fail sets it again as lws closes */
	l->fail_code = code;
	l->fail_reason = reason;
	lws_close_reason(wsi, (enum lws_close_status)code,
	    (unsigned char *)reason, strlen(reason));
	return -1;
}

/*
 * A piece of a message (lws gives a frame in pieces of RX_CHUNK bytes at
 * most). RSV1 on a message's first frame says it is compressed (RFC 7692
 * 6): lws lets it through only where the extension was agreed, and never
 * checks that a continuation frame has it clear, so this does. A frame
 * announcing more than the limit is refused at once; a compressed one
 * is held to the limit as it inflates. Returns what RECEIVE returns.
 */
int
sqc_link_receive(struct lws *wsi, struct link *l, const unsigned char *in,
    size_t len)
{
	size_t remaining = lws_remaining_packet_payload(wsi);
	int rsv1 = (lws_get_reserved_bits(wsi) & 0x40) != 0, fin, rc;

	if (!l->in_msg) {
		l->in_msg = 1;
		l->binary = lws_frame_is_binary(wsi);
		l->compressed = rsv1;
		l->z_ended = 0;
	} else if (l->frame_start && rsv1)
		return rx_fail(wsi, l, -EPROTO);
	l->frame_start = remaining == 0;
	fin = lws_is_final_fragment(wsi) && remaining == 0;
	if (l->compressed)
		rc = sqc_pmd_inflate(&l->inflater, l->cli_bits > 9 ?
		    l->cli_bits : l->cli_bits ? 9 : 15, &l->z_ended, in, len,
		    fin, rx_sink, l);
	else if (l->rxlen + len + remaining > l->max_message)
		rc = -E2BIG;
	else
		rc = rx_sink(l, in, len);
	if (rc == 0 && fin && l->utf8 != 0)
		rc = -EILSEQ;		/* text cut inside a character */
	if (rc == 0 && fin && l->rx == NULL)
		rc = link_receive(l, NULL, 0) ? -ENOMEM : 0;	/* empty */
	if (rc != 0)
		return rx_fail(wsi, l, rc);
	if (!fin)
		return 0;
	if (l->compressed && l->cli_nct)
		sqc_pmd_inflate_end(&l->inflater);	/* costs nothing idle */
	sqc_wsev_push(E_MESSAGE, l->id, l->rx, l->rxlen, l->binary, 0);
	l->rx = NULL;
	l->rxlen = l->rxcap = 0;
	l->in_msg = 0;
	return 0;
}

/*
 * The close frame of a connection that fails (RFC 6455 7.1.7) as lws
 * closes it for something other than a closing handshake: the client's
 * input (lws' checks, or rx_fail's), the end of its stream, a pong that
 * did not come. lws keeps the code in the buffer where a ping's payload
 * lands, so it is set again here, just before lws sends it.
 */
void
sqc_link_fail(struct lws *wsi, struct link *l)
{
	const char *reason = l->fail_reason ? l->fail_reason :
	    l->pong_wait ? "no pong" : "protocol error";

	lws_close_reason(wsi, (enum lws_close_status)(l->fail_code ?
	    l->fail_code : LWS_CLOSE_STATUS_PROTOCOL_ERR),
	    (unsigned char *)reason, strlen(reason));
}

/* Frees what the link's data holds, and takes it off the flush list. */
void
sqc_link_release(struct link *l)
{
	struct link **pp;

	if (l->dirty)
		for (pp = &dirty; *pp; pp = &(*pp)->dnext)
			if (*pp == l) {
				*pp = l->dnext;
				break;
			}
	sqc_link_drop_output(l);
	free(l->out);
	free(l->rx);
	sqc_pmd_inflate_end(&l->inflater);
}
