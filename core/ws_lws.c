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
 * one send in the common case. A link with permessage-deflate is the
 * exception: lws must compress each message, so it gets one lws_write
 * per writable callback (write_one).
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

#include <libwebsockets.h>

#include "core.h"
#include "ws_bridge.h"

/*
 * The compressor of a permessage-deflate link (zlib's deflate state is
 * 2^(window + 2) + 2^(mem_level + 9) bytes): see squall.ini(5) for what
 * a link costs with these. Only squall's side is made smaller; the
 * client's compressor, which lws cannot restrict, keeps its 32 KiB
 * window, so the inflater is zlib's default.
 */
#define DEFLATE_WINDOW_BITS	"12"
#define DEFLATE_MEM_LEVEL	"5"
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
	int		 ping_secs;	/* a ping to send, then wait that long */
	int		 deflate;	/* permessage-deflate negotiated */
	unsigned	 utf8;		/* sqc_utf8_check's, in a text message */
	int		 rx_failed;	/* rx_fail'ed: input is ignored */
	struct wbuf	*sent;		/* written last: deflate may read it */
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
	for (size_t i = l->outhead; i < l->nout; i++)
		sqc_wbuf_unref(l->out[i]);
	if (l->sent)
		sqc_wbuf_unref(l->sent);
	free(l->out);
	free(l->rx);
	free(l->protocol);
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
	if (l->close_code != 0 || l->peer_closed) {
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

/* the header of a server frame (never masked) */
static size_t
frame_header(unsigned char *h, int opcode, int fin, size_t len)
{
	h[0] = (unsigned char)((fin ? 0x80 : 0) | opcode);
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
			size_t left = b->len - l->outoff;
			size_t take = left < BATCH_SIZE - n ? left :
			    BATCH_SIZE - n;
			int op = l->outoff ? 0 : b->binary ? 2 : 1;

			if (take < left && n > 0)
				break;	/* a fragment starts a batch */
			n += frame_header(batch + n, op, take == left, take);
			memcpy(batch + n, b->data + LWS_PRE + l->outoff, take);
			n += take;
			if (take < left) {
				l->outoff += take;
				break;
			}
			l->outoff = 0;
			l->outhead++;
			l->queued -= b->len;
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
		if (!l->established || l->wsi == NULL || l->peer_closed)
			continue;	/* ESTABLISHED asks to write */
		if (l->close_code || l->ping_secs || l->deflate)
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

/*
 * Fails the link for what it sent (RFC 6455 7.1.7): the
 * message so far is dropped, then the close frame with code goes out and
 * the connection ends. Returns what RECEIVE returns. lws 4.1 ignores a
 * -1 from RECEIVE while it drains inflated data (permessage-deflate), so
 * a deflate link is failed through the writable callback instead, its
 * queue dropped, and what it still delivers ignored.
 */
static int
rx_fail(struct lws *wsi, struct link *l, int code, const char *reason)
{
	free(l->rx);
	l->rx = NULL;
	l->rxlen = l->rxcap = 0;
	if (!l->deflate) {
		lws_close_reason(wsi, (enum lws_close_status)code,
		    (unsigned char *)reason, strlen(reason));
		return -1;
	}
	l->rx_failed = 1;
	for (size_t i = l->outhead; i < l->nout; i++)
		sqc_wbuf_unref(l->out[i]);
	l->outhead = l->nout = 0;
	l->outoff = 0;
	l->queued = 0;
	link_close(l, code, reason);
	return 0;
}

/*
 * An empty message on a permessage-deflate link goes out
 * uncompressed (RSV1 clear, which RFC 7692 6 allows), as one raw frame:
 * lws 4.1's compressor asserts, and so aborts the process, on an empty
 * message after another one (a sync flush with nothing new yields no
 * bytes). lws calls SERVER_WRITEABLE only between frames.
 */
static int
write_empty(struct lws *wsi, int binary)
{
	unsigned char f[LWS_PRE + 2];

	f[LWS_PRE] = 0x80 | (binary ? 2 : 1);
	f[LWS_PRE + 1] = 0;
	return lws_write(wsi, f + LWS_PRE, 2, LWS_WRITE_RAW) == 2 ? 0 : -1;
}

/*
 * Writes the next queued message of a permessage-deflate
 * link with lws_write, which frames and compresses it: such a link's
 * only way out (frames written raw, as link_write does for the others,
 * would skip the extension), from SERVER_WRITEABLE only. lws compresses
 * in pieces, reading the message until its last piece is out, and calls
 * SERVER_WRITEABLE again only then: so the link keeps the buffer in
 * l->sent until that call. Returns < 0 when lws failed.
 */
static int
write_one(struct lws *wsi, struct link *l)
{
	struct wbuf *b = l->out[l->outhead++];
	int n = b->len == 0 ? write_empty(wsi, b->binary) :
	    lws_write(wsi, b->data + LWS_PRE, b->len, b->binary ?
	    LWS_WRITE_BINARY : LWS_WRITE_TEXT);

	l->queued -= b->len;
	if (n >= 0)
		l->sent = b;
	else
		sqc_wbuf_unref(b);
	return n;
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
		/*
		 * Active for this link if the option takes (lws' public way
		 * to ask); nothing was compressed yet, so the smaller
		 * compressor applies from the first message. lws 4.1 sizes
		 * a server's compressor window by client_max_window_bits.
		 */
		l->deflate = lws_set_extension_option(wsi, "permessage-deflate",
		    "mem_level", DEFLATE_MEM_LEVEL) == 0;
		if (l->deflate)
			(void)lws_set_extension_option(wsi,
			    "permessage-deflate", "client_max_window_bits",
			    DEFLATE_WINDOW_BITS);
		default_close_reason(wsi);
		/* what was asked before the handshake was done */
		if (l->nout > l->outhead || l->close_code || l->ping_secs)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (l == NULL)
			return -1;
		if (l->rx_failed)
			return 0;	/* closing: lws may still deliver */
		/*
		 * A frame announcing more than the limit is refused at once;
		 * with permessage-deflate, what remains of a frame is
		 * compressed, so only what was inflated counts.
		 */
		if (l->rxlen + len + (l->deflate ? 0 :
		    lws_remaining_packet_payload(wsi)) > l->max_message)
			return rx_fail(wsi, l, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
			    "message too large");
		/* text is checked as it comes: 1007 at the bad fragment */
		if (!lws_frame_is_binary(wsi) &&
		    sqc_utf8_check(&l->utf8, in, len) != 0)
			return rx_fail(wsi, l, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
			    "bad utf8");
		if (link_receive(l, in, len) != 0)
			return rx_fail(wsi, l,
			    LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
			    "out of memory");
		if (lws_is_final_fragment(wsi) &&
		    lws_remaining_packet_payload(wsi) == 0) {
			if (l->utf8 != 0)	/* text cut inside a character */
				return rx_fail(wsi, l,
				    LWS_CLOSE_STATUS_INVALID_PAYLOAD,
				    "partial utf8");
			sqc_wsev_push(E_MESSAGE, l->id, l->rx, l->rxlen,
			    lws_frame_is_binary(wsi), 0);
			l->rx = NULL;
			l->rxlen = l->rxcap = 0;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (l == NULL)
			return -1;
		if (l->sent) {		/* lws is done compressing it */
			sqc_wbuf_unref(l->sent);
			l->sent = NULL;
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
			if (l->deflate) {	/* lws' writes: one per call */
				if (l->outhead < l->nout || l->close_code)
					lws_callback_on_writable(wsi);
				return 0;
			}
		}
		if (l->deflate && l->outhead < l->nout) {
			if (write_one(wsi, l) < 0)
				return -1;
			if (l->outhead < l->nout || l->close_code)
				lws_callback_on_writable(wsi);
			return 0;
		}
		if (!l->deflate && link_write(l) < 0)
			return -1;
		if (lws_partial_buffered(wsi))
			return 0;	/* lws calls again once it is out */
		if (l->close_code) {
			lws_close_reason(wsi, (enum lws_close_status)
			    l->close_code, (unsigned char *)l->close_reason,
			    strlen(l->close_reason));
			return -1;
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
 * RFC 7692, lws' own. It is only ever offered to lws for routes that
 * allow it (upgrade.c writes the offer into the rebuilt handshake).
 */
static const struct lws_extension extensions[] = {
	{ "permessage-deflate", lws_extension_callback_pm_deflate,
	    "permessage-deflate" },
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
}
