/*
 * ws_lws.c - the libwebsockets half of the WebSocket bridge. Everything
 * here runs on the service thread, lws' own (lws_service() in a loop),
 * except the sqc_wsl_* entry points the loop thread calls to start, wake
 * and end it. It owns the lws context and struct link, the lws side of a
 * session, known by its id (commands name it) and by its wsi.
 *
 * Lifecycle. Every adopted connection ends in exactly one E_CLOSED,
 * whatever lws does: a link is known by its wsi from
 * LWS_CALLBACK_WSI_CREATE, and LWS_CALLBACK_WSI_DESTROY, which lws sends
 * for every wsi it frees, ends it if CLOSED did not (a handshake lws
 * failed, a context destroyed). Nothing keeps a wsi past its
 * WSI_DESTROY.
 *
 * Sending. A broadcast arrives as one command naming its recipients; it
 * is queued on each link, and once the batch of commands is done every
 * link's queue is written straight away, many messages to one send,
 * framed here and given to lws as raw bytes (link_write). Only what the
 * socket does not take waits for lws to call back, so a delivery costs
 * one send in the common case.
 *
 * Order on the wire (RFC 6455 5.5.1, 5.5.3). lws writes its own control
 * frames (pongs, its closes) from its writable handler, before it calls
 * ours. So a link whose poll events lws changed (it asks to write: a
 * pong, a close) is written from SERVER_WRITEABLE only, after them, until
 * that callback comes (lws_busy); and once lws starts closing a link
 * (WS_SERVER_DROP_PROTOCOL) nothing more is written to it.
 *
 * permessage-deflate is squall's own (ws_deflate.c): lws is given an
 * extension of that name that lets RSV1 through and answers the
 * parameters upgrade.c chose; RECEIVE inflates, link_write compresses.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <libwebsockets.h>

#include "core.h"
#include "ws_bridge.h"

/*
 * The compressor of a permessage-deflate link with context takeover
 * (zlib's deflate state is 2^(window + 2) + 2^(mem_level + 9) bytes): see
 * squall.ini(5) for what a link costs with these. It is made at the
 * first message worth compressing: messages under DEFLATE_MIN bytes go
 * out uncompressed (RSV1 clear, RFC 7692 6), so chat lines cost no zlib
 * time and a member who only reads them no compressor. The client's
 * window is its own unless it offered client_max_window_bits.
 */
#define DEFLATE_WINDOW_BITS	12
#define DEFLATE_MEM_LEVEL	5
#define DEFLATE_MIN		1024
/*
 * What one send on a connection carries at most: queued messages go out
 * several to a send, and larger ones as fragments of this size, each a
 * whole frame, so that lws never holds more than one batch of a
 * connection that does not read (control frames may come between
 * fragments, never inside a frame).
 */
#define BATCH_SIZE		(64u << 10)
#define FRAME_HEADER_MAX	10
/* lws' receive buffer per connection: it reassembles, we append */
#define RX_CHUNK		256
/* a link's queue keeps room for this many messages when it empties */
#define OUT_KEEP		8
/*
 * lws' header space for a handshake: max_header_size and this much more,
 * within [HS_SPACE_MIN, USHRT_MAX] (lws counts in 16 bits); the check
 * before ws_open keeps HS_MARGIN of it for lws' own bookkeeping.
 */
#define HS_EXTRA		1024
#define HS_SPACE_MIN		4096
#define HS_MARGIN		512

/* [lws thread] the lws side of a session */
struct link {
	uint64_t	 id;
	struct lws	*wsi;		/* from WSI_CREATE to WSI_DESTROY */
	size_t		 max_message, max_queue;
	unsigned char	*rx;		/* message being reassembled */
	size_t		 rxlen, rxcap;
	struct wbuf	**out;		/* queue of messages to write */
	size_t		 nout, outcap, outhead, queued;
	size_t		 outoff;	/* of out[outhead], already framed */
	int		 close_code;	/* to send, once the queue is out */
	char		 close_reason[64];
	int		 peer_code;	/* from the client's close frame */
	int		 peer_closed;	/* its close frame came: write no more */
	int		 lws_closing;	/* lws is closing it: write no more */
	int		 lws_failed;	/* for the client's input */
	int		 lws_busy;	/* lws asked to write: wait for it */
	int		 ping_secs;	/* a ping to send, then wait that long */
	/* the message being received */
	int		 in_msg, binary, compressed, z_ended;
	int		 frame_start;	/* the next piece starts a frame */
	unsigned	 utf8;		/* sqc_utf8_check's, in a text message */
	/* the message being framed (out[outhead]): its payload on the wire */
	const unsigned char *cur;
	size_t		 curlen;
	unsigned char	*cur_own;	/* cur when the link compressed it */
	int		 cur_ready, cur_rsv1;
	/* permessage-deflate, as answered (0 bits: not limited) */
	int		 deflate;
	int		 srv_nct, cli_nct, srv_bits, cli_bits;
	struct z_stream_s *inflater, *deflater;
	char		*protocol;	/* subprotocol to answer, or NULL */
	int		 established;
	int		 reported;	/* E_CLOSED pushed */
	int		 dirty;		/* in the flush list */
	struct link	*dnext;
	LIST_ENTRY(link) all;
};


static struct lws_context *ctx;
static struct lws_vhost *vhost;
static pthread_t thread;
static int thread_running;	/* loop thread: started, not joined */

/* links by id and by wsi, and the stop flags */
static struct sqc_idmap links, by_wsi;
static LIST_HEAD(, link) all_links = LIST_HEAD_INITIALIZER(all_links);
static struct link *dirty;	/* links with output to write */
static int stopping;		/* close everyone, then leave */
static atomic_int quitting;	/* set by the loop: leave now */
static struct link *adopting;	/* set around an adoption */

/* */
static struct link *
link_find(uint64_t id)
{
	return sqc_idmap_get(&links, id);
}

/* the link of wsi, or NULL */
static struct link *
link_of(const struct lws *wsi)
{
	return sqc_idmap_get(&by_wsi, (uintptr_t)wsi);
}

/* tells the loop the session is over, once */
static void
link_report(struct link *l, int code)
{
	if (l->reported)
		return;
	l->reported = 1;
	sqc_wsev_push(E_CLOSED, l->id, NULL, 0, 0, code);
}

/* drops what l has queued */
static void
link_drop_output(struct link *l)
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

/* */
static void
link_free(struct link *l)
{
	struct link **pp;

	sqc_idmap_del(&links, l->id);
	if (l->wsi)
		sqc_idmap_del(&by_wsi, (uintptr_t)l->wsi);
	LIST_REMOVE(l, all);
	if (l->dirty)
		for (pp = &dirty; *pp; pp = &(*pp)->dnext)
			if (*pp == l) {
				*pp = l->dnext;
				break;
			}
	link_drop_output(l);
	free(l->out);
	free(l->rx);
	free(l->protocol);
	sqc_pmd_inflate_end(&l->inflater);
	sqc_pmd_deflate_end(&l->deflater);
	free(l);
}

/* asks lws to close the link with code once it can write */
static void
link_close(struct link *l, int code, const char *reason)
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

/* queues b on l, to be written when the commands are done */
static void
link_send(struct link *l, struct wbuf *b)
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
			link_close(l, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
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
 * compressed: on the link's own deflater (context takeover), or once for
 * every link with the same window (the copy kept with the message).
 * Returns 0 or a negative errno.
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
	if (!l->srv_nct) {
		bits = l->srv_bits && l->srv_bits < DEFLATE_WINDOW_BITS ?
		    l->srv_bits : DEFLATE_WINDOW_BITS;
		if ((rc = sqc_pmd_deflate(&l->deflater, bits,
		    DEFLATE_MEM_LEVEL, b->data, b->len, &z, &zlen)) != 0)
			return rc;
		l->cur_own = z;
	} else {
		bits = l->srv_bits ? l->srv_bits : 15;
		if (b->zdata == NULL || b->zbits != bits) {
			if ((rc = sqc_pmd_deflate_once(bits, b->data, b->len,
			    &z, &zlen)) != 0)
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
static int
link_write(struct link *l)
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

/* what was queued for the links of this command batch */
static void
flush_links(void)
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
		else if (link_write(l) < 0)
			link_kill(l, 1006);
	}
}

/*
 * Gives lws the socket of c, with the rebuilt handshake as
 * its first read. lws runs the handshake right here: on success the link
 * is ESTABLISHED when this returns; on failure WSI_DESTROY may already
 * have ended it, or lws returned NULL having closed the fd.
 */
static void
adopt(struct cmd *c)
{
	struct link *l;
	struct lws *wsi;

	/* room in both maps first: WSI_CREATE cannot fail */
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    sqc_idmap_put(&links, c->id, l) != 0 ||
	    sqc_idmap_reserve(&by_wsi, 1) != 0) {
		if (l)
			sqc_idmap_del(&links, c->id);
		free(l);
		sqc_wsev_push(E_CLOSED, c->id, NULL, 0, 0, 1011);
		return;		/* cmd_discard closes the fd */
	}
	l->id = c->id;
	l->max_message = c->max_message;
	l->max_queue = c->max_queue;
	l->protocol = c->protocol;
	c->protocol = NULL;
	LIST_INSERT_HEAD(&all_links, l, all);
	adopting = l;
	wsi = lws_adopt_socket_vhost_readbuf(vhost, c->fd, c->readbuf,
	    c->readlen);
	c->fd = -1;		/* lws' now, whatever happened */
	adopting = NULL;
	if ((l = link_find(c->id)) == NULL)
		return;		/* WSI_DESTROY ended it already */
	if (wsi == NULL && !l->established) {
		/* lws failed the handshake; no callback has the link */
		link_report(l, 1006);
		link_free(l);
	}
	/*
	 * Else ESTABLISHED ran, or will, and WSI_DESTROY ends the link
	 * (NULL after ESTABLISHED: lws is closing the wsi, not done yet).
	 */
}

/* the commands from the loop */
static void
run_commands(void)
{
	struct cmdq q = STAILQ_HEAD_INITIALIZER(q);
	struct cmd *c;
	struct link *l;

	sqc_wscmd_take(&q);
	while ((c = STAILQ_FIRST(&q)) != NULL) {
		STAILQ_REMOVE_HEAD(&q, next);
		switch (c->kind) {
		case C_ADOPT:
			adopt(c);
			break;
		case C_SEND:
			for (size_t i = 0; i < c->nids; i++)
				if ((l = link_find(c->ids[i])) != NULL)
					link_send(l, c->buf);
				else
					sqc_wbuf_unref(c->buf);
			c->buf = NULL;
			break;
		case C_CLOSE:
			if ((l = link_find(c->id)) != NULL)
				link_close(l, c->code, c->reason);
			break;
		case C_PING:
			if ((l = link_find(c->id)) != NULL &&
			    l->close_code == 0) {
				l->ping_secs = c->code;
				if (l->established)
					lws_callback_on_writable(l->wsi);
			}
			break;
		case C_STOP:
			stopping = 1;
			LIST_FOREACH(l, &all_links, all)
				link_close(l, LWS_CLOSE_STATUS_GOINGAWAY,
				    "server stopping");
			break;
		}
		sqc_wscmd_discard(c);
	}
	flush_links();
}

/*
 * The close frame lws sends when it ends a connection for
 * a protocol error it does not name itself (a control frame over 125
 * bytes, for one): 1002. Our own closes set their code over it. lws
 * keeps this in the buffer it also uses for a pong's payload, so it is
 * set again whenever a pong may have used it.
 */
static void
default_close_reason(struct lws *wsi)
{
	lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, NULL, 0);
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
static int
on_receive(struct lws *wsi, struct link *l, const unsigned char *in,
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
 * lws' writable callback: its own control frames went first (a pong, a
 * close it makes itself), then our ping, the queue, and our close.
 */
static int
on_writable(struct lws *wsi, struct link *l)
{
	l->lws_busy = 0;
	if (l->lws_closing) {
		/*
		 * The connection failed for what the client sent (lws' own
		 * checks, or rx_fail's) and the close frame is out: lws'
		 * parser stopped inside a frame, so it would not see the
		 * client's answer and would wait 5 s. Fail it as RFC 6455 7.1.7 says: our side of the
		 * TCP connection ends now (a FIN, not the reset a close with
		 * unread input would send), the rest soon after.
		 */
		if (l->lws_failed && !lws_partial_buffered(wsi)) {
			l->lws_failed = 0;
			shutdown(lws_get_socket_fd(wsi), SHUT_WR);
			lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 1);
		}
		return 0;
	}
	if (l->close_code == 0)
		default_close_reason(wsi);	/* a pong used the room */
	if (l->ping_secs && l->close_code == 0) {
		/* not empty: lws hides empty pongs from callbacks */
		unsigned char ping[LWS_PRE + 4];

		memcpy(ping + LWS_PRE, "sq", 2);
		if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
			return -1;
		/* no pong in time: lws drops the connection */
		lws_set_timeout(wsi, PENDING_TIMEOUT_WS_PONG_CHECK_GET_PONG,
		    l->ping_secs);
		l->ping_secs = 0;
	}
	if (link_write(l) < 0)
		return -1;
	if (lws_partial_buffered(wsi))
		return 0;	/* lws calls again once it is out */
	if (l->close_code) {
		lws_close_reason(wsi, (enum lws_close_status)l->close_code,
		    (unsigned char *)l->close_reason, strlen(l->close_reason));
		return -1;
	}
	return 0;
}

/* */
static int
on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct link **pl = user, *l = pl ? *pl : NULL;

	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		run_commands();
		return 0;
	case LWS_CALLBACK_WSI_CREATE:
		/* inside lws_adopt_socket_vhost_readbuf(), for our link */
		if (adopting != NULL && adopting->wsi == NULL) {
			adopting->wsi = wsi;
			sqc_idmap_put(&by_wsi, (uintptr_t)wsi, adopting);
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		/* the last word on every wsi: nothing may keep it */
		if ((l = link_of(wsi)) != NULL) {
			link_report(l, l->peer_code ? l->peer_code :
			    l->close_code ? l->close_code : 1006);
			link_free(l);
		}
		if (pl)
			*pl = NULL;
		return 0;
	case LWS_CALLBACK_ESTABLISHED:
		if (pl == NULL || (l = link_of(wsi)) == NULL || l->reported)
			return -1;
		*pl = l;
		l->established = 1;
		default_close_reason(wsi);
		/* what was asked before the handshake was done */
		if (l->nout > l->outhead || l->close_code || l->ping_secs)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return l == NULL ? -1 : on_receive(wsi, l, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return l == NULL ? -1 : on_writable(wsi, l);
	case LWS_CALLBACK_GET_THREAD_ID:
		/*
		 * lws asks this (once it knows our answer is not 0) whenever
		 * it changes a connection's poll events: for a link, it may
		 * want to write a pong or a close of its own, which our
		 * writes must not overtake (see the top of this file).
		 */
		if ((l = link_of(wsi)) != NULL)
			l->lws_busy = 1;
		return 1;	/* lws is only ever serviced on this thread */
	case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:
		/* lws is closing: its close frame is the last thing out */
		if ((l = link_of(wsi)) != NULL) {
			l->lws_closing = 1;
			l->lws_failed = l->close_code == 0 && !l->peer_closed;
			link_drop_output(l);
		}
		return 0;
	case LWS_CALLBACK_ADD_HEADERS: {
		/*
		 * In the 101 response (handshake_0405): the subprotocol the
		 * plugin chose. lws never saw the client's list, so it adds
		 * none itself.
		 */
		struct lws_process_html_args *a = in;
		int n;

		if ((l = link_of(wsi)) == NULL || l->protocol == NULL)
			return 0;
		n = snprintf(a->p, (size_t)a->max_len,
		    "Sec-WebSocket-Protocol: %s\r\n", l->protocol);
		if (n < 0 || n + 2 >= a->max_len)
			return -1;	/* no room: lws fails the handshake */
		a->p += n;
		a->max_len -= n;
		return 0;
	}
	case LWS_CALLBACK_RECEIVE_PONG:
		if (l && l->close_code == 0)
			lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
		int code = len >= 2 ? ((unsigned char *)in)[0] << 8 |
		    ((unsigned char *)in)[1] : 0;

		/* lws answers it: nothing of ours may follow */
		if (l)
			l->peer_closed = 1;
		/*
		 * lws echoes a 1-byte payload and codes from 5000 on (RFC
		 * 6455 5.5.1, 7.4: a protocol error); it already answers
		 * the reserved ones below 5000 with 1002.
		 */
		if (len == 1 || code > 4999) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR,
			    (unsigned char *)"bad close frame", 15);
			return -1;
		}
		/* its reason is UTF-8 text (RFC 6455 5.5.1) */
		if (len > 2) {
			unsigned st = 0;

			if (sqc_utf8_check(&st, (unsigned char *)in + 2,
			    len - 2) != 0 || st != 0) {
				lws_close_reason(wsi,
				    LWS_CLOSE_STATUS_INVALID_PAYLOAD,
				    (unsigned char *)"bad utf8", 8);
				return -1;
			}
		}
		if (l && len >= 2)
			l->peer_code = code;
		return 0;
	}
	case LWS_CALLBACK_CLOSED:
		/* the link itself goes at WSI_DESTROY, which follows */
		if (l != NULL)
			link_report(l, l->peer_code ? l->peer_code :
			    l->close_code ? l->close_code : 1006);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols protocols[] = {
	{ "squall", on_lws, sizeof(struct link *), RX_CHUNK, 0, NULL,
	    BATCH_SIZE + FRAME_HEADER_MAX },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/*
 * permessage-deflate as lws sees it: what upgrade.c wrote into the
 * rebuilt handshake is the offer of exactly the parameters to answer,
 * and lws copies into the 101 each one this list names (it answers only
 * names, hence a name per window size).
 */
static const struct lws_ext_options pmd_options[] = {
	{ "server_no_context_takeover", EXTARG_NONE },
	{ "client_no_context_takeover", EXTARG_NONE },
#define PMD_BITS(side) \
	{ side "_max_window_bits=8", EXTARG_NONE }, \
	{ side "_max_window_bits=9", EXTARG_NONE }, \
	{ side "_max_window_bits=10", EXTARG_NONE }, \
	{ side "_max_window_bits=11", EXTARG_NONE }, \
	{ side "_max_window_bits=12", EXTARG_NONE }, \
	{ side "_max_window_bits=13", EXTARG_NONE }, \
	{ side "_max_window_bits=14", EXTARG_NONE }, \
	{ side "_max_window_bits=15", EXTARG_NONE }
	PMD_BITS("server"),
	PMD_BITS("client"),
#undef PMD_BITS
	{ NULL, EXTARG_NONE }
};

/*
 * The extension's callback: it records what was answered on the link
 * being adopted (the handshake runs inside adopt()) and lets every
 * payload through untouched: on_receive and link_write do the rest.
 */
static int
on_pmd(struct lws_context *cx, const struct lws_extension *ext,
    struct lws *wsi, enum lws_extension_callback_reasons reason,
    void *user, void *in, size_t len)
{
	const struct lws_ext_option_arg *oa = in;
	struct link *l = adopting;

	(void)cx, (void)ext, (void)wsi, (void)user, (void)len;
	switch (reason) {
	case LWS_EXT_CB_CONSTRUCT:
		if (l == NULL || l->wsi != wsi)
			return -1;
		*(const struct lws_ext_options **)in = pmd_options;
		l->deflate = 1;
		return 0;
	case LWS_EXT_CB_OPTION_SET:
		if (l == NULL || l->wsi != wsi)
			return -1;
		if (oa->option_index == 0)
			l->srv_nct = 1;
		else if (oa->option_index == 1)
			l->cli_nct = 1;
		else if (oa->option_index < 10)
			l->srv_bits = oa->option_index - 2 + 8;
		else
			l->cli_bits = oa->option_index - 10 + 8;
		return 0;
	default:
		return 0;	/* PMDR_UNKNOWN for the payload: as it is */
	}
}

static const struct lws_extension extensions[] = {
	{ "permessage-deflate", on_pmd, "permessage-deflate" },
	{ NULL, NULL, NULL }
};

/* the service loop */
static void *
service(void *arg)
{
	while (!atomic_load(&quitting) &&
	    (!stopping || !LIST_EMPTY(&all_links)))
		if (lws_service(ctx, 0) < 0)
			break;
	return NULL;
}

/* lws' own log lines, into ours */
static void
lws_emit(int level, const char *line)
{
	size_t len = strcspn(line, "\n");

	if (strstr(line, "calling service") != NULL)
		return;		/* lws 4.1 logs this on every adoption */
	sqc_log(level & LLL_ERR ? SQ_LOG_ERROR : SQ_LOG_WARN, "websocket",
	    "%.*s", (int)len, line);
}

/*
 * Loop thread, before serving: the lws context, with room for handshakes
 * of max_header_size bytes (at most 64 KiB: lws counts in 16 bits; the
 * upgrade check answers 431 beyond *hs_space, which it sets), and the
 * service thread. Returns 0 or fills err.
 */
int
sqc_wsl_start(size_t max_header_size, size_t *hs_space, char *err,
    size_t errlen)
{
	struct lws_context_creation_info info;
	size_t space = max_header_size + HS_EXTRA;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.extensions = extensions;
	/*
	 * Not LWS_SERVER_OPTION_VALIDATE_UTF8: lws 4.1 skips a chunk of
	 * inflated text that fails its check and carries on (the -1 is
	 * lost while it drains a compressed message). RECEIVE checks.
	 */
	info.options = 0;
	info.gid = -1;
	info.uid = -1;
	/*
	 * lws keeps the header values, each with some bookkeeping, in this
	 * space; the upgrade check leaves it a margin.
	 */
	if (space < HS_SPACE_MIN)
		space = HS_SPACE_MIN;
	if (space > USHRT_MAX)
		space = USHRT_MAX;
	info.max_http_header_data = (unsigned short)space;
	*hs_space = space - HS_MARGIN;
	if ((ctx = lws_create_context(&info)) == NULL ||
	    (vhost = lws_get_vhost_by_name(ctx, "default")) == NULL) {
		snprintf(err, errlen, "cannot create the libwebsockets "
		    "context");
		return -EIO;
	}
	if (pthread_create(&thread, NULL, service, NULL) != 0) {
		snprintf(err, errlen, "cannot start the WebSocket thread");
		return -EIO;
	}
	thread_running = 1;
	return 0;
}

/* Loop thread: whether the service thread runs (takes commands). */
int
sqc_wsl_running(void)
{
	return thread_running;
}

/* Loop thread: the service thread is to take the commands handed over. */
void
sqc_wsl_wake(void)
{
	if (ctx)
		lws_cancel_service(ctx);
}

/*
 * Loop thread, at exit: the service thread leaves at once, then lws
 * closes what is left from here (CLOSED, WSI_DESTROY come on this
 * thread), every link still there reports, and the commands nobody took
 * are dropped. The close events then wait in the queue for the loop.
 */
void
sqc_wsl_end(void)
{
	struct cmdq q = STAILQ_HEAD_INITIALIZER(q);
	struct cmd *c;

	if (thread_running) {
		atomic_store(&quitting, 1);
		lws_cancel_service(ctx);
		pthread_join(thread, NULL);
		thread_running = 0;
	}
	if (ctx)
		lws_context_destroy(ctx);
	ctx = NULL;
	sqc_wscmd_take(&q);
	while ((c = STAILQ_FIRST(&q)) != NULL) {
		STAILQ_REMOVE_HEAD(&q, next);
		sqc_wscmd_discard(c);
	}
	while (!LIST_EMPTY(&all_links)) {
		link_report(LIST_FIRST(&all_links), 1006);
		link_free(LIST_FIRST(&all_links));
	}
	sqc_idmap_free(&links);
	sqc_idmap_free(&by_wsi);
	sqc_pmd_cleanup();
}
