/*
 * ws.c - the WebSocket bridge: evhttp accepts the upgrade request, the
 * plugin's ws_open decides on the loop, then the socket is handed over to
 * libwebsockets, which runs in a thread of its own (the service thread)
 * and speaks the protocol. Plugins only ever see struct sq_ws, on the
 * loop.
 *
 * Threads. Functions marked [lws thread] run on the service thread and
 * touch only lws state and the lws-side records (struct link); all the
 * rest runs on the loop thread and touches only struct sq_ws. The two
 * talk through two mutex-protected queues: commands to the service thread
 * (adopt, send, close, stop), woken with lws_cancel_service(), and events
 * to the loop (message, closed), woken with event_active(). Sessions are
 * named by id across the threads, never by pointer.
 *
 * The hand-over follows shared/notes/websocket-bridge.md: duplicate the
 * fd, dup2 /dev/null over evhttp's number, free the evhttp connection,
 * and give lws the duplicate with a rebuilt, minimal handshake (plus any
 * bytes the client sent after it) as its first read. It happens on the
 * loop turn after the request, once libevent has applied the removal of
 * the socket from epoll (the base batches epoll changes); upgrades still
 * waiting for that turn at exit are dropped, before evhttp_free().
 *
 * Lifecycle. An upgrade is checked (upgrade.c) before the plugin's
 * ws_open, so that libwebsockets is only ever given handshakes it takes.
 * Every adopted connection still ends in exactly one E_CLOSED, whatever
 * lws does: a link is known by its wsi from LWS_CALLBACK_WSI_CREATE, and
 * LWS_CALLBACK_WSI_DESTROY, which lws sends for every wsi it frees, ends
 * it if CLOSED did not (a handshake lws failed, a context destroyed).
 * Nothing keeps a wsi past its WSI_DESTROY.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libwebsockets.h>

#include "core.h"

#define DEFAULT_MAX_MESSAGE	(64u << 10)
#define DEFAULT_MAX_QUEUE	(1u << 20)
#define MAX_PROTOCOL_NAME	255	/* a selectable subprotocol's length */

/*
 * The compressor of a permessage-deflate link (zlib's deflate state is
 * 2^(window + 2) + 2^(mem_level + 9) bytes): see squall.ini(5) for what
 * a link costs with these. Only squall's side is made smaller; the
 * client's compressor, which lws cannot restrict, keeps its 32 KiB
 * window, so the inflater is zlib's default.
 */
#define DEFLATE_WINDOW_BITS	"12"
#define DEFLATE_MEM_LEVEL	"5"

/* A buffer shared by the recipients of one send or broadcast. */
struct wbuf {
	unsigned	 refs;		/* under cmd_lock until handed over */
	size_t		 len;
	int		 binary;
	unsigned char	 data[];	/* LWS_PRE bytes, then the payload */
};

enum cmd_kind { C_ADOPT, C_SEND, C_CLOSE, C_PING, C_STOP, C_QUIT };

struct cmd {
	enum cmd_kind	 kind;
	uint64_t	 id;
	int		 fd;		/* C_ADOPT */
	char		*readbuf;	/* C_ADOPT */
	size_t		 readlen;
	char		*protocol;	/* C_ADOPT: the subprotocol, or NULL */
	size_t		 max_message, max_queue;
	struct wbuf	*buf;		/* C_SEND */
	int		 code;		/* C_CLOSE; seconds for C_PING */
	char		 reason[64];
	STAILQ_ENTRY(cmd) next;
};

enum ev_kind { E_MESSAGE, E_CLOSED };

struct wev {
	enum ev_kind	 kind;
	uint64_t	 id;
	unsigned char	*data;		/* E_MESSAGE, malloc'ed */
	size_t		 len;
	int		 binary;
	int		 code;		/* E_CLOSED */
	STAILQ_ENTRY(wev) next;
};

/* [lws thread] the lws side of a session */
struct link {
	uint64_t	 id;
	struct lws	*wsi;		/* from WSI_CREATE to WSI_DESTROY */
	struct link	*wnext;		/* in by_wsi */
	size_t		 max_message, max_queue;
	unsigned char	*rx;		/* message being reassembled */
	size_t		 rxlen, rxcap;
	struct wbuf	**out;		/* queue of buffers to write */
	size_t		 nout, outcap, outhead, queued;
	int		 close_code;	/* to send, once the queue is out */
	char		 close_reason[64];
	int		 peer_code;	/* from the client's close frame */
	int		 ping_secs;	/* a ping to send, then wait that long */
	int		 deflate;	/* permessage-deflate negotiated */
	unsigned	 utf8;		/* sqc_utf8_check's, in a text message */
	int		 rx_failed;	/* rx_fail'ed: input is ignored */
	struct wbuf	*sent;		/* written last: deflate may read it */
	char		*protocol;	/* subprotocol to answer, or NULL */
	int		 established;
	int		 reported;	/* E_CLOSED pushed */
	struct link	*hnext;
};

/* The loop side, what plugins hold. */
struct sq_ws {
	uint64_t	 id;
	struct sq_inst	*inst;
	void		*data;
	char		 client[64];
	struct evkeyvalq headers;
	size_t		 max_message, max_queue;
	int		 closing;	/* sq_ws_close called */
	int		 opening;	/* inside ws_open: hold commands */
	int		 in_open;	/* ws_open is running */
	char		**offered;	/* subprotocols, one block (upgrade.c) */
	size_t		 noffered;
	const char	*protocol;	/* the one selected, in offered */
	int		 counted;	/* sqc_http_conn_hold'ed */
	STAILQ_HEAD(, cmd) held;	/* sent from ws_open, after ADOPT */
	struct sq_ws	*hnext;
};

struct handover {
	struct evhttp_connection *evcon;
	struct evhttp_request *ev;	/* evhttp's, until the hand-over */
	struct sq_ws	*w;
	int		 deflate;	/* the route allows permessage-deflate */
	char		 client[64];
	struct event	*tev;
	struct handover	*next;
};

static struct event_base *wbase;
static struct handover *handovers;	/* loop thread */
static int ws_stopping;			/* loop thread */
static const struct timeval zero = { 0, 0 };

static void drop_handovers(void);
static struct lws_context *ctx;
static struct lws_vhost *vhost;
static pthread_t thread;
static int thread_running;
static int devnull = -1;
static size_t hs_space;		/* handshake bytes lws is given room for */
static struct event *wake;
static uint64_t next_id = 1;

static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static STAILQ_HEAD(, cmd) cmds = STAILQ_HEAD_INITIALIZER(cmds);
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static STAILQ_HEAD(, wev) events = STAILQ_HEAD_INITIALIZER(events);

/* loop thread: sessions by id */
static struct sq_ws *sessions[1024];
static size_t nsessions;

/* lws thread: links by id and by wsi, and the stop flags */
static struct link *links[1024];
static struct link *by_wsi[1024];
static size_t nlinks;
static int stopping;		/* lws thread: close everyone */
static int quitting;		/* lws thread: leave now */
static struct link *adopting;	/* lws thread: set around an adoption */

/* ---- queues ----------------------------------------------------------- */

static void wbuf_unref(struct wbuf *b);

/* Loop thread: a command that will never run. */
static void
cmd_discard(struct cmd *c)
{
	if (c->kind == C_ADOPT && c->fd >= 0)
		close(c->fd);
	if (c->buf)
		wbuf_unref(c->buf);
	free(c->readbuf);
	free(c->protocol);
	free(c);
}

/*
 * Loop thread: a command for the service thread. Once that thread has
 * ended (at exit, while the last ws_close callbacks run and may still
 * broadcast), commands are dropped.
 */
static void
push_cmd(struct cmd *c)
{
	if (!thread_running) {
		cmd_discard(c);
		return;
	}
	pthread_mutex_lock(&cmd_lock);
	STAILQ_INSERT_TAIL(&cmds, c, next);
	pthread_mutex_unlock(&cmd_lock);
	lws_cancel_service(ctx);
}

/* [lws thread] */
static void
push_event(enum ev_kind kind, uint64_t id, unsigned char *data, size_t len,
    int binary, int code)
{
	struct wev *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		free(data);
		return;
	}
	e->kind = kind;
	e->id = id;
	e->data = data;
	e->len = len;
	e->binary = binary;
	e->code = code;
	pthread_mutex_lock(&ev_lock);
	STAILQ_INSERT_TAIL(&events, e, next);
	pthread_mutex_unlock(&ev_lock);
	event_active(wake, EV_READ, 0);
}

/* Loop thread: a command for w, held back while ws_open runs. */
static void
session_cmd(struct sq_ws *w, struct cmd *c)
{
	if (w->opening)
		STAILQ_INSERT_TAIL(&w->held, c, next);
	else
		push_cmd(c);
}

static void
wbuf_unref(struct wbuf *b)
{
	unsigned left;

	pthread_mutex_lock(&cmd_lock);
	left = --b->refs;
	pthread_mutex_unlock(&cmd_lock);
	if (left == 0)
		free(b);
}

/* ---- lws side --------------------------------------------------------- */

/* [lws thread] */
static struct link *
link_find(uint64_t id)
{
	struct link *l;

	for (l = links[id % 1024]; l; l = l->hnext)
		if (l->id == id)
			return l;
	return NULL;
}

static size_t
wsi_slot(const struct lws *wsi)
{
	return (size_t)(((uintptr_t)wsi >> 4) % 1024);
}

/* [lws thread] the link of wsi, or NULL */
static struct link *
link_of(const struct lws *wsi)
{
	struct link *l;

	for (l = by_wsi[wsi_slot(wsi)]; l; l = l->wnext)
		if (l->wsi == wsi)
			return l;
	return NULL;
}

/* [lws thread] tells the loop the session is over, once */
static void
link_report(struct link *l, int code)
{
	if (l->reported)
		return;
	l->reported = 1;
	push_event(E_CLOSED, l->id, NULL, 0, 0, code);
}

/* [lws thread] */
static void
link_free(struct link *l)
{
	struct link **pp;

	for (pp = &links[l->id % 1024]; *pp; pp = &(*pp)->hnext)
		if (*pp == l) {
			*pp = l->hnext;
			nlinks--;
			break;
		}
	if (l->wsi)
		for (pp = &by_wsi[wsi_slot(l->wsi)]; *pp; pp = &(*pp)->wnext)
			if (*pp == l) {
				*pp = l->wnext;
				break;
			}
	for (size_t i = l->outhead; i < l->nout; i++)
		wbuf_unref(l->out[i]);
	if (l->sent)
		wbuf_unref(l->sent);
	free(l->out);
	free(l->rx);
	free(l->protocol);
	free(l);
}

/* [lws thread] asks lws to close the link with code once it can write */
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

/* [lws thread] */
static void
link_send(struct link *l, struct wbuf *b)
{
	if (l->close_code != 0) {
		wbuf_unref(b);
		return;
	}
	if (l->queued + b->len > l->max_queue) {
		/*
		 * A reader this slow would grow our memory without bound. Its
		 * socket is full, so a close frame would never go out either:
		 * drop the connection.
		 */
		wbuf_unref(b);
		l->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
		if (l->wsi)
			lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
			    LWS_TO_KILL_ASYNC);
		return;
	}
	if (l->nout == l->outcap) {
		size_t cap = l->outcap ? l->outcap * 2 : 8;
		struct wbuf **n;

		if (l->outhead > 0) {
			memmove(l->out, l->out + l->outhead,
			    (l->nout - l->outhead) * sizeof(*n));
			l->nout -= l->outhead;
			l->outhead = 0;
		}
		if (l->nout == l->outcap) {
			if ((n = realloc(l->out, cap * sizeof(*n))) == NULL) {
				wbuf_unref(b);
				link_close(l, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
				    "out of memory");
				return;
			}
			l->out = n;
			l->outcap = cap;
		}
	}
	l->out[l->nout++] = b;
	l->queued += b->len;
	if (l->established)
		lws_callback_on_writable(l->wsi);
}

/*
 * [lws thread] gives lws the socket of c, with the rebuilt handshake as
 * its first read. lws runs the handshake right here: on success the link
 * is ESTABLISHED when this returns; on failure WSI_DESTROY may already
 * have ended it, or lws returned NULL having closed the fd.
 */
static void
adopt(struct cmd *c)
{
	struct link *l;
	struct lws *wsi;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		close(c->fd);
		push_event(E_CLOSED, c->id, NULL, 0, 0, 1011);
		return;
	}
	l->id = c->id;
	l->max_message = c->max_message;
	l->max_queue = c->max_queue;
	l->protocol = c->protocol;
	c->protocol = NULL;
	l->hnext = links[l->id % 1024];
	links[l->id % 1024] = l;
	nlinks++;
	adopting = l;
	wsi = lws_adopt_socket_vhost_readbuf(vhost, c->fd, c->readbuf,
	    c->readlen);
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

/* [lws thread] the commands from the loop */
static void
run_commands(void)
{
	STAILQ_HEAD(, cmd) q = STAILQ_HEAD_INITIALIZER(q);
	struct cmd *c;

	pthread_mutex_lock(&cmd_lock);
	STAILQ_CONCAT(&q, &cmds);
	pthread_mutex_unlock(&cmd_lock);
	while ((c = STAILQ_FIRST(&q)) != NULL) {
		struct link *l;

		STAILQ_REMOVE_HEAD(&q, next);
		switch (c->kind) {
		case C_ADOPT:
			adopt(c);
			break;
		case C_SEND:
			if ((l = link_find(c->id)) != NULL)
				link_send(l, c->buf);
			else
				wbuf_unref(c->buf);
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
			for (size_t i = 0; i < 1024; i++)
				for (l = links[i]; l; l = l->hnext)
					link_close(l,
					    LWS_CLOSE_STATUS_GOINGAWAY,
					    "server stopping");
			break;
		case C_QUIT:
			quitting = 1;
			break;
		}
		free(c->readbuf);
		free(c->protocol);
		free(c);
	}
}

/*
 * [lws thread] The close frame lws sends when it ends a connection for
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

/* [lws thread] appends a received fragment to the message */
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
 * [lws thread] Fails the link for what it sent (RFC 6455 7.1.7): the
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
		wbuf_unref(l->out[i]);
	l->outhead = l->nout = 0;
	l->queued = 0;
	link_close(l, code, reason);
	return 0;
}

/*
 * [lws thread] An empty message on a permessage-deflate link goes out
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
 * [lws thread] Writes the next queued message with lws_write, which
 * frames it and, on a permessage-deflate link, compresses it: that is a
 * deflate link's only way out (frames written raw would skip the
 * extension), from SERVER_WRITEABLE only. lws compresses in pieces,
 * reading the message until its last piece is out, and calls
 * SERVER_WRITEABLE again only then: so a deflate link keeps the buffer
 * in l->sent until that call. Returns < 0 when lws failed.
 */
static int
write_one(struct lws *wsi, struct link *l)
{
	struct wbuf *b = l->out[l->outhead++];
	int n = b->len == 0 && l->deflate ? write_empty(wsi, b->binary) :
	    lws_write(wsi, b->data + LWS_PRE, b->len, b->binary ?
	    LWS_WRITE_BINARY : LWS_WRITE_TEXT);

	l->queued -= b->len;
	if (n >= 0 && l->deflate)
		l->sent = b;
	else
		wbuf_unref(b);
	return n;
}

/* [lws thread] */
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
			adopting->wnext = by_wsi[wsi_slot(wsi)];
			by_wsi[wsi_slot(wsi)] = adopting;
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
			push_event(E_MESSAGE, l->id, l->rx, l->rxlen,
			    lws_frame_is_binary(wsi), 0);
			l->rx = NULL;
			l->rxlen = l->rxcap = 0;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (l == NULL)
			return -1;
		if (l->sent) {		/* lws is done compressing it */
			wbuf_unref(l->sent);
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
			if (l->outhead < l->nout)
				lws_callback_on_writable(wsi);
			return 0;
		}
		if (l->outhead < l->nout) {
			if (write_one(wsi, l) < 0)
				return -1;
			if (l->outhead < l->nout || l->close_code)
				lws_callback_on_writable(wsi);
			return 0;
		}
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
	{ "squall", on_lws, sizeof(struct link *), 4096, 0, NULL, 0 },
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

/* [lws thread] the service loop */
static void *
service(void *arg)
{
	while (!quitting && (!stopping || nlinks > 0))
		if (lws_service(ctx, 0) < 0)
			break;
	return NULL;
}

/* [lws thread] lws' own log lines, into ours */
static void
lws_emit(int level, const char *line)
{
	size_t len = strcspn(line, "\n");

	if (strstr(line, "calling service") != NULL)
		return;		/* lws 4.1 logs this on every adoption */
	sqc_log(level & LLL_ERR ? SQ_LOG_ERROR : SQ_LOG_WARN, "websocket",
	    "%.*s", (int)len, line);
}

/* ---- loop side -------------------------------------------------------- */

static struct sq_ws *
session_find(uint64_t id)
{
	struct sq_ws *w;

	for (w = sessions[id % 1024]; w; w = w->hnext)
		if (w->id == id)
			return w;
	return NULL;
}

static void
session_free(struct sq_ws *w)
{
	struct sq_ws **pp;

	for (pp = &sessions[w->id % 1024]; *pp; pp = &(*pp)->hnext)
		if (*pp == w) {
			*pp = w->hnext;
			nsessions--;
			break;
		}
	while (!STAILQ_EMPTY(&w->held)) {
		struct cmd *c = STAILQ_FIRST(&w->held);

		STAILQ_REMOVE_HEAD(&w->held, next);
		if (c->buf)
			wbuf_unref(c->buf);
		free(c);
	}
	evhttp_clear_headers(&w->headers);
	free(w->offered);
	sqc_inst_unref(w->inst);
	if (w->counted)
		sqc_http_conn_release();
	free(w);
}

/* Loop thread: what the service thread reported. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	STAILQ_HEAD(, wev) q = STAILQ_HEAD_INITIALIZER(q);
	struct wev *e;

	pthread_mutex_lock(&ev_lock);
	STAILQ_CONCAT(&q, &events);
	pthread_mutex_unlock(&ev_lock);
	while ((e = STAILQ_FIRST(&q)) != NULL) {
		struct sq_ws *w = session_find(e->id);

		STAILQ_REMOVE_HEAD(&q, next);
		if (w && e->kind == E_MESSAGE) {
			sqc_counters.ws_in++;
			sqc_call_ws_message(w->inst, w, e->data, e->len,
			    e->binary);
		}
		else if (w && e->kind == E_CLOSED) {
			sqc_call_ws_close(w->inst, w, e->code);
			session_free(w);
		}
		free(e->data);
		free(e);
	}
}

/*
 * Starts the service thread on its own lws context, with room for
 * handshakes of max_header_size bytes (at most 64 KiB: lws counts in 16
 * bits; larger upgrades get 431). Returns 0 or fills err. Loop thread,
 * before serving.
 */
int
sqc_ws_init(struct event_base *base, size_t max_header_size, char *err,
    size_t errlen)
{
	struct lws_context_creation_info info;
	size_t space = max_header_size + 1024;

	wbase = base;
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (wake = event_new(base, -1, 0, on_wake, NULL)) == NULL) {
		snprintf(err, errlen, "cannot set up WebSockets: %s",
		    strerror(errno));
		return -EIO;
	}
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
	 * space; the check in sqc_ws_upgrade leaves it a margin.
	 */
	if (space < 4096)
		space = 4096;
	if (space > 65535)
		space = 65535;
	info.max_http_header_data = (unsigned short)space;
	hs_space = space - 512;
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

size_t
sqc_ws_count(void)
{
	return nsessions;
}

/* At shutdown: every session is closed with 1001 (going away). */
void
sqc_ws_stop(void)
{
	struct cmd *c;

	ws_stopping = 1;
	if (ctx == NULL || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->kind = C_STOP;
	push_cmd(c);
}

/*
 * At exit, once the drain is over (shutdown_timeout has passed, or every
 * session closed): the service thread leaves at once, lws closes what is
 * left, the remaining close events reach the plugins, and everything is
 * freed. Commands the plugins send from ws_close from here on are
 * dropped.
 */
void
sqc_ws_free(void)
{
	struct cmd *c;

	drop_handovers();
	if (thread_running) {
		sqc_ws_stop();
		if ((c = calloc(1, sizeof(*c))) != NULL) {
			c->kind = C_QUIT;
			push_cmd(c);
		} else
			quitting = 1;	/* racy, but only when out of memory */
		pthread_join(thread, NULL);
		thread_running = 0;
	}
	/* lws calls back on this thread now: CLOSED, WSI_DESTROY */
	if (ctx)
		lws_context_destroy(ctx);
	ctx = NULL;
	while ((c = STAILQ_FIRST(&cmds)) != NULL) {
		STAILQ_REMOVE_HEAD(&cmds, next);
		cmd_discard(c);
	}
	for (size_t i = 0; i < 1024; i++)
		while (links[i]) {
			link_report(links[i], 1006);
			link_free(links[i]);
		}
	if (wake) {
		on_wake(-1, 0, NULL);
		event_free(wake);
		wake = NULL;
	}
	for (size_t i = 0; i < 1024; i++)
		while (sessions[i]) {
			struct sq_ws *w = sessions[i];

			sqc_call_ws_close(w->inst, w, 1001);
			session_free(w);
		}
	if (devnull >= 0)
		close(devnull);
	devnull = -1;
}

static void handover(evutil_socket_t fd, short what, void *arg);

/*
 * An upgrade request for inst's route: checks the handshake, asks the
 * plugin, and schedules the hand-over; deflate says whether the route
 * allows permessage-deflate. On refusal it returns non-zero with the
 * status to answer (400, 426, or the plugin's). On success the
 * connection belongs to the hand-over: the caller must not answer ev.
 */
int
sqc_ws_upgrade(struct evhttp_request *ev, struct sq_inst *inst,
    const char *client, int deflate, int *status)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	struct evkeyval *kv;
	struct handover *ho;
	struct sq_ws *w;
	int rc;

	if (ctx == NULL) {
		*status = 503;
		return -EAGAIN;
	}
	if ((*status = sqc_upgrade_check(evhttp_request_get_command(ev) ==
	    EVHTTP_REQ_GET, evhttp_request_get_uri(ev), h, hs_space)) != 0)
		return -EINVAL;
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		*status = 503;
		return -ENOMEM;
	}
	w->id = next_id++;
	w->inst = inst;
	sqc_inst_ref(inst);
	w->max_message = DEFAULT_MAX_MESSAGE;
	w->max_queue = DEFAULT_MAX_QUEUE;
	snprintf(w->client, sizeof(w->client), "%s", client);
	TAILQ_INIT(&w->headers);
	STAILQ_INIT(&w->held);
	TAILQ_FOREACH(kv, h, next)
		evhttp_add_header(&w->headers, kv->key, kv->value);
	if (sqc_upgrade_protocols(h, &w->offered, &w->noffered) != 0) {
		evhttp_clear_headers(&w->headers);
		sqc_inst_unref(inst);
		free(w);
		*status = 503;		/* out of memory: it was checked */
		return -ENOMEM;
	}
	w->hnext = sessions[w->id % 1024];
	sessions[w->id % 1024] = w;
	nsessions++;
	w->opening = 1;		/* until the hand-over: commands wait */
	w->in_open = 1;
	rc = sqc_call_ws_open(inst, w);
	w->in_open = 0;
	if (rc != 0) {
		session_free(w);
		*status = rc >= 400 && rc <= 499 ? rc : 403;
		return -EPERM;
	}
	/*
	 * Hand the socket over on the next loop turn, not now: libevent may
	 * batch epoll changes (EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST), and
	 * the dup2 below is only safe once evhttp's socket has really left
	 * epoll, which the next epoll_wait makes sure of. Until then the
	 * connection sits idle: evhttp stopped reading before calling us.
	 */
	if ((ho = calloc(1, sizeof(*ho))) == NULL ||
	    (ho->tev = evtimer_new(wbase, handover, ho)) == NULL) {
		free(ho);
		goto gone;
	}
	ho->evcon = evhttp_request_get_connection(ev);
	ho->ev = ev;
	ho->w = w;
	ho->deflate = deflate;
	snprintf(ho->client, sizeof(ho->client), "%s", client);
	ho->next = handovers;
	handovers = ho;
	evtimer_add(ho->tev, &zero);
	*status = 101;
	return 0;
gone:
	/* the plugin accepted: tell it the session is over */
	sqc_call_ws_close(inst, w, 1011);
	session_free(w);
	*status = 503;
	return -ENOMEM;
}

static void
handover_unlink(struct handover *h)
{
	struct handover **pp;

	for (pp = &handovers; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	event_free(h->tev);
}

/* Ends a session that never reached lws: its plugin hears of it. */
static void
session_abandon(struct sq_ws *w, int code)
{
	sqc_call_ws_close(w->inst, w, code);
	session_free(w);
}

/*
 * The hand-over proper (see the notes): the rebuilt handshake and what
 * the client sent after it become lws' first read; the socket is
 * duplicated, /dev/null is put under evhttp's number, and the evhttp
 * connection is freed (shutdown and close then hit /dev/null).
 */
static void
handover(evutil_socket_t unused, short what, void *arg)
{
	struct handover *h = arg;
	struct sq_ws *w = h->w;
	struct evkeyvalq *hdr = evhttp_request_get_input_headers(h->ev);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(h->evcon);
	struct evbuffer *hs = NULL;
	struct cmd *c = NULL;
	int fd, dup_fd = -1, one = 1;

	handover_unlink(h);
	if (ws_stopping)
		goto fail;
	if ((hs = evbuffer_new()) == NULL || (c = calloc(1,
	    sizeof(*c))) == NULL)
		goto fail;
	if ((w->protocol && (c->protocol = strdup(w->protocol)) == NULL) ||
	    sqc_upgrade_handshake(hs, hdr, h->deflate) != 0 ||
	    evbuffer_add_buffer(hs, bufferevent_get_input(bev)) != 0)
		goto fail;
	c->readlen = evbuffer_get_length(hs);
	if ((c->readbuf = malloc(c->readlen)) == NULL)
		goto fail;
	evbuffer_remove(hs, c->readbuf, c->readlen);
	fd = bufferevent_getfd(bev);
	if ((dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
	    dup2(devnull, fd) < 0)
		goto fail;
	sqc_http_log_access(h->ev, h->client, 101, 0);
	sqc_http_conn_hold();		/* still a connection: count it */
	w->counted = 1;
	evhttp_connection_free(h->evcon);	/* frees ev too */
	/* chat lines are small: do not let Nagle hold them back */
	setsockopt(dup_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evbuffer_free(hs);
	free(h);
	c->kind = C_ADOPT;
	c->id = w->id;
	c->fd = dup_fd;
	c->max_message = w->max_message;
	c->max_queue = w->max_queue;
	push_cmd(c);
	w->opening = 0;
	while ((c = STAILQ_FIRST(&w->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&w->held, next);
		push_cmd(c);
	}
	return;
fail:
	/* nothing was sent yet: the client gets an answer */
	if (dup_fd >= 0)
		close(dup_fd);
	if (hs)
		evbuffer_free(hs);
	if (c) {
		free(c->readbuf);
		free(c->protocol);
	}
	free(c);
	sqc_http_log_access(h->ev, h->client, 503, 0);
	evhttp_add_header(evhttp_request_get_output_headers(h->ev),
	    "Connection", "close");
	evhttp_send_reply(h->ev, 503, "Service Unavailable", NULL);
	session_abandon(w, ws_stopping ? 1001 : 1011);
	free(h);
}

/* At exit: upgrades not handed over yet are dropped. */
static void
drop_handovers(void)
{
	while (handovers) {
		struct handover *h = handovers;

		handover_unlink(h);
		evhttp_connection_free(h->evcon);
		session_abandon(h->w, 1001);
		free(h);
	}
}

/* ---- the plugin API --------------------------------------------------- */

static struct wbuf *
wbuf_new(const void *data, size_t len, int binary, unsigned refs)
{
	struct wbuf *b = malloc(sizeof(*b) + LWS_PRE + len);

	if (b == NULL)
		return NULL;
	b->refs = refs;
	b->len = len;
	b->binary = binary;
	memcpy(b->data + LWS_PRE, data, len);
	return b;
}

int
sq_ws_broadcast(struct sq_ws *const *to, size_t n, const void *data,
    size_t len, int binary)
{
	struct wbuf *b;
	size_t live = 0;

	for (size_t i = 0; i < n; i++)
		live += to[i] && !to[i]->closing;
	if (live == 0)
		return 0;
	if ((b = wbuf_new(data, len, binary, (unsigned)live)) == NULL)
		return -ENOMEM;
	sqc_counters.ws_out += live;
	for (size_t i = 0; i < n; i++) {
		struct cmd *c;

		if (to[i] == NULL || to[i]->closing)
			continue;
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			wbuf_unref(b);
			continue;
		}
		c->kind = C_SEND;
		c->id = to[i]->id;
		c->buf = b;
		session_cmd(to[i], c);
	}
	return 0;
}

int
sq_ws_send(struct sq_ws *ws, const void *data, size_t len, int binary)
{
	return sq_ws_broadcast(&ws, 1, data, len, binary);
}

void
sq_ws_close(struct sq_ws *ws, int code, const char *reason)
{
	struct cmd *c;

	if (ws->closing || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	ws->closing = 1;
	c->kind = C_CLOSE;
	c->id = ws->id;
	c->code = code;
	snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "");
	session_cmd(ws, c);
}

void
sq_ws_ping(struct sq_ws *ws, uint64_t timeout_ms)
{
	struct cmd *c;

	if (ws->closing || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->kind = C_PING;
	c->id = ws->id;
	c->code = (int)((timeout_ms + 999) / 1000);
	if (c->code < 1)
		c->code = 1;
	session_cmd(ws, c);
}

void
sq_ws_limits(struct sq_ws *ws, size_t max_message, size_t max_queue)
{
	if (max_message)
		ws->max_message = max_message;
	if (max_queue)
		ws->max_queue = max_queue;
}

const char *
sq_ws_client_ip(struct sq_ws *ws)
{
	return ws->client;
}

const char *
sq_ws_header(struct sq_ws *ws, const char *name)
{
	return evhttp_find_header(&ws->headers, name);
}

const char *
sq_ws_offered_protocol(struct sq_ws *ws, size_t i)
{
	return i < ws->noffered ? ws->offered[i] : NULL;
}

int
sq_ws_select_protocol(struct sq_ws *ws, const char *name)
{
	if (!ws->in_open)
		return -EBUSY;
	if (name == NULL) {
		ws->protocol = NULL;
		return 0;
	}
	if (strlen(name) > MAX_PROTOCOL_NAME)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < ws->noffered; i++)
		if (strcmp(ws->offered[i], name) == 0) {
			ws->protocol = ws->offered[i];
			return 0;
		}
	return -EINVAL;
}

const char *
sq_ws_protocol(struct sq_ws *ws)
{
	return ws->protocol;
}

struct sq_inst *
sq_ws_inst(struct sq_ws *ws)
{
	return ws->inst;
}

void
sq_ws_set_data(struct sq_ws *ws, void *data)
{
	ws->data = data;
}

void *
sq_ws_data(struct sq_ws *ws)
{
	return ws->data;
}
