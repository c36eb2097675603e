/*
 * ws_link.h - struct link, the libwebsockets side of a WebSocket session,
 * shared by the two files of the service thread: ws_lws.c (the context,
 * the adoption, the callbacks) and ws_link.c (a link's data: its queue,
 * the framing and sending, the reassembly and inflating). Private to
 * them.
 */
#ifndef SQUALL_WS_LINK_H
#define SQUALL_WS_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct lws;
struct wbuf;
struct z_stream_s;

/*
 * permessage-deflate: squall answers both no_context_takeover
 * (upgrade.c), so a message is compressed once for every link that
 * shares its window and no link keeps zlib state between messages.
 * Messages under DEFLATE_MIN bytes go out uncompressed (RSV1 clear, RFC
 * 7692 6): chat lines cost no zlib time. The client's window is its own
 * unless it offered client_max_window_bits.
 */
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

/* The lws side of a session (service thread). */
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
	int		 ping_secs;	/* a ping to send, then wait this */
	int		 fail_code;	/* rx_fail's close, or 0 */
	const char	*fail_reason;	/* its reason (a constant) */
	unsigned	 utf8;		/* sqc_utf8_check's, for text */
	int		 z_ended;	/* the message's DEFLATE stream ended */
	/* the message being framed (out[outhead]): its payload on the wire */
	const unsigned char *cur;
	size_t		 curlen;
	unsigned char	*cur_own;	/* cur when the link compressed it */
	struct z_stream_s *inflater;	/* during a compressed message */
	char		*protocol;	/* subprotocol to answer, or NULL */
	/* permessage-deflate's window sizes, as answered (0: not limited) */
	unsigned char	 srv_bits, cli_bits;
	unsigned	 peer_closed:1;	/* its close came: write no more */
	unsigned	 lws_closing:1;	/* lws is closing it: write no more */
	unsigned	 pong_wait:1;	/* our ping is out, no pong yet */
	unsigned	 lws_failed:1;	/* closing, not for a handshake */
	unsigned	 peer_refused:1;	/* its close answered 1002/1007 */
	unsigned	 rx_held:1;	/* lws reads nothing until its close
					 * frame is out (ws_lws.c on_drop) */
	unsigned	 lws_busy:1;	/* lws asked to write: wait for it */
	/* the message being received */
	unsigned	 in_msg:1, binary:1, compressed:1;
	unsigned	 frame_start:1;	/* the next piece starts a frame */
	unsigned	 cur_ready:1, cur_rsv1:1;	/* of cur */
	/* permessage-deflate, and the client's no_context_takeover */
	unsigned	 deflate:1, cli_nct:1;
	unsigned	 established:1;
	unsigned	 reported:1;	/* E_CLOSED pushed */
	unsigned	 dirty:1;	/* in the flush list (ws_link.c) */
	struct link	*dnext;
	LIST_ENTRY(link) all;
};

void	 sqc_link_close(struct link *l, int code, const char *reason);
int	 sqc_link_stop(struct link *l);
void	 sqc_link_send(struct link *l, struct wbuf *b);
void	 sqc_link_drop_output(struct link *l);
int	 sqc_link_write(struct link *l);
void	 sqc_link_flush(void);
int	 sqc_link_receive(struct lws *wsi, struct link *l,
	    const unsigned char *in, size_t len);
void	 sqc_link_fail(struct lws *wsi, struct link *l);
void	 sqc_link_release(struct link *l);

#endif /* SQUALL_WS_LINK_H */
