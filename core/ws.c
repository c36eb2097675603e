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
 * (adopt, send, close, stop), collected over a loop turn and handed over
 * at its end with one lws_cancel_service(), and events to the loop
 * (message, closed), woken with event_active(). Sessions are named by id
 * across the threads, never by pointer.
 *
 * Sending. A broadcast is one copy of the message and one command naming
 * its recipients. The service thread queues it on each link, and once the
 * batch of commands is done writes every link's queue straight away, many
 * messages to one send, framed here and given to lws as raw bytes (see
 * link_write). Only what the socket does not take waits for lws to call
 * back, so a delivery costs one send in the common case. A link with
 * permessage-deflate is the exception: lws must compress each message,
 * so it gets one lws_write per writable callback (write_one).
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
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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
 * within [HS_SPACE_MIN, USHRT_MAX] (lws counts in 16 bits); the check before
 * ws_open keeps HS_MARGIN of it for lws' own bookkeeping.
 */
#define HS_EXTRA		1024
#define HS_SPACE_MIN		4096
#define HS_MARGIN		512

/* A message shared by its recipients; the last one frees it. */
struct wbuf {
	atomic_uint	 refs;
	size_t		 len;
	int		 binary;
	unsigned char	 data[];	/* LWS_PRE bytes, then the payload */
};

enum cmd_kind { C_ADOPT, C_SEND, C_CLOSE, C_PING, C_STOP, C_QUIT };

struct cmd {
	enum cmd_kind	 kind;
	uint64_t	 id;		/* not C_SEND, which has ids */
	int		 fd;		/* C_ADOPT */
	char		*readbuf;	/* C_ADOPT */
	size_t		 readlen;
	char		*protocol;	/* C_ADOPT: the subprotocol, or NULL */
	size_t		 max_message, max_queue;
	struct wbuf	*buf;		/* C_SEND, one reference per id */
	int		 code;		/* C_CLOSE; seconds for C_PING */
	char		 reason[64];
	STAILQ_ENTRY(cmd) next;
	size_t		 nids;		/* C_SEND: the recipients */
	uint64_t	 ids[];
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

/* The loop side, what plugins hold. */
struct sq_ws {
	uint64_t	 id;
	struct sq_inst	*inst;
	void		*data;
	char		 client[64];
	size_t		 max_message, max_queue;
	int		 closing;	/* sq_ws_close called */
	int		 opening;	/* inside ws_open: hold commands */
	int		 in_open;	/* ws_open is running */
	char		**offered;	/* subprotocols, one block (upgrade.c) */
	size_t		 noffered;
	const char	*protocol;	/* the one selected, in offered */
	int		 counted;	/* sqc_http_conn_hold'ed */
	STAILQ_HEAD(, cmd) held;	/* sent from ws_open, after ADOPT */
	LIST_ENTRY(sq_ws) all;
	/* the upgrade request's headers: "name\0value\0"..., then "\0" */
	char		 headers[];
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
static struct event *wake;	/* events from the service thread */
static struct event *flush_ev;	/* this turn's commands to hand over */
static uint64_t next_id = 1;

/* loop thread: the commands of this loop turn, handed over at its end */
static STAILQ_HEAD(, cmd) pending = STAILQ_HEAD_INITIALIZER(pending);

static pthread_mutex_t cmd_lock = PTHREAD_MUTEX_INITIALIZER;
static STAILQ_HEAD(, cmd) cmds = STAILQ_HEAD_INITIALIZER(cmds);
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static STAILQ_HEAD(, wev) events = STAILQ_HEAD_INITIALIZER(events);

/* loop thread: sessions by id */
static struct sqc_idmap sessions;
static LIST_HEAD(, sq_ws) all_sessions = LIST_HEAD_INITIALIZER(all_sessions);

/* lws thread: links by id and by wsi, and the stop flags */
static struct sqc_idmap links, by_wsi;
static LIST_HEAD(, link) all_links = LIST_HEAD_INITIALIZER(all_links);
static struct link *dirty;	/* lws thread: links with output to write */
static int stopping;		/* lws thread: close everyone */
static int quitting;		/* lws thread: leave now */
static struct link *adopting;	/* lws thread: set around an adoption */

/* ---- queues ----------------------------------------------------------- */

static void
wbuf_unref(struct wbuf *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

/* Loop thread: a command with room for nids recipients, or NULL. */
static struct cmd *
cmd_new(enum cmd_kind kind, size_t nids)
{
	struct cmd *c = calloc(1, sizeof(*c) + nids * sizeof(c->ids[0]));

	if (c != NULL) {
		c->kind = kind;
		c->fd = -1;
	}
	return c;
}

/* A command that will never run. */
static void
cmd_discard(struct cmd *c)
{
	if (c->fd >= 0)
		close(c->fd);
	/* a C_SEND holds one reference per recipient */
	for (size_t i = 0; c->buf && i < c->nids; i++)
		wbuf_unref(c->buf);
	free(c->readbuf);
	free(c->protocol);
	free(c);
}

/*
 * Loop thread: hands this turn's commands to the service thread, waking
 * it only when its queue was empty (a wake-up is pending otherwise, and
 * the thread takes the whole queue at once).
 */
static void
flush_cmds(evutil_socket_t fd, short what, void *arg)
{
	int idle;

	if (STAILQ_EMPTY(&pending))
		return;
	pthread_mutex_lock(&cmd_lock);
	idle = STAILQ_EMPTY(&cmds);
	STAILQ_CONCAT(&cmds, &pending);
	pthread_mutex_unlock(&cmd_lock);
	if (idle)
		lws_cancel_service(ctx);
}

/*
 * Loop thread: a command for the service thread, handed over at the end
 * of this loop turn, with the others of the turn. Once that thread has
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
	if (STAILQ_EMPTY(&pending))
		event_active(flush_ev, EV_WRITE, 0);
	STAILQ_INSERT_TAIL(&pending, c, next);
}

/* [lws thread] */
static void
push_event(enum ev_kind kind, uint64_t id, unsigned char *data, size_t len,
    int binary, int code)
{
	struct wev *e = calloc(1, sizeof(*e));
	int idle;

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
	idle = STAILQ_EMPTY(&events);
	STAILQ_INSERT_TAIL(&events, e, next);
	pthread_mutex_unlock(&ev_lock);
	if (idle)
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

/* ---- lws side --------------------------------------------------------- */

/* [lws thread] */
static struct link *
link_find(uint64_t id)
{
	return sqc_idmap_get(&links, id);
}

/* [lws thread] the link of wsi, or NULL */
static struct link *
link_of(const struct lws *wsi)
{
	return sqc_idmap_get(&by_wsi, (uintptr_t)wsi);
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

/* [lws thread] drops the connection at once: it cannot be written to */
static void
link_kill(struct link *l, int code)
{
	if (l->close_code == 0)
		l->close_code = code;
	if (l->wsi)
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
		    LWS_TO_KILL_ASYNC);
}

/* [lws thread] queues b on l, to be written when the commands are done */
static void
link_send(struct link *l, struct wbuf *b)
{
	if (l->close_code != 0 || l->peer_closed) {
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
			wbuf_unref(b);
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

/* [lws thread] the header of a server frame (never masked) */
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
 * [lws thread] Writes l's queue, framed by us, as many messages to a
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
			wbuf_unref(b);
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

/* [lws thread] what was queued for the links of this command batch */
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

	/* room in both maps first: WSI_CREATE cannot fail */
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    sqc_idmap_put(&links, c->id, l) != 0 ||
	    sqc_idmap_reserve(&by_wsi, 1) != 0) {
		if (l)
			sqc_idmap_del(&links, c->id);
		free(l);
		push_event(E_CLOSED, c->id, NULL, 0, 0, 1011);
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

/* [lws thread] the commands from the loop */
static void
run_commands(void)
{
	STAILQ_HEAD(, cmd) q = STAILQ_HEAD_INITIALIZER(q);
	struct cmd *c;
	struct link *l;

	pthread_mutex_lock(&cmd_lock);
	STAILQ_CONCAT(&q, &cmds);
	pthread_mutex_unlock(&cmd_lock);
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
					wbuf_unref(c->buf);
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
		case C_QUIT:
			quitting = 1;
			break;
		}
		cmd_discard(c);
	}
	flush_links();
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
	l->outoff = 0;
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
 * [lws thread] Writes the next queued message of a permessage-deflate
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

/* [lws thread] the service loop */
static void *
service(void *arg)
{
	while (!quitting && (!stopping || !LIST_EMPTY(&all_links)))
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
	return sqc_idmap_get(&sessions, id);
}

static void
session_free(struct sq_ws *w)
{
	struct cmd *c;

	sqc_idmap_del(&sessions, w->id);
	LIST_REMOVE(w, all);
	while ((c = STAILQ_FIRST(&w->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&w->held, next);
		cmd_discard(c);
	}
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
	size_t space = max_header_size + HS_EXTRA;

	wbase = base;
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (wake = event_new(base, -1, 0, on_wake, NULL)) == NULL ||
	    (flush_ev = event_new(base, -1, 0, flush_cmds, NULL)) == NULL) {
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
	if (space < HS_SPACE_MIN)
		space = HS_SPACE_MIN;
	if (space > USHRT_MAX)
		space = USHRT_MAX;
	info.max_http_header_data = (unsigned short)space;
	hs_space = space - HS_MARGIN;
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
	return sessions.n;
}

/* At shutdown: every session is closed with 1001 (going away). */
void
sqc_ws_stop(void)
{
	struct cmd *c;

	ws_stopping = 1;
	if (ctx == NULL || (c = cmd_new(C_STOP, 0)) == NULL)
		return;
	push_cmd(c);
	flush_cmds(-1, 0, NULL);
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
		if ((c = cmd_new(C_QUIT, 0)) != NULL) {
			push_cmd(c);
			flush_cmds(-1, 0, NULL);
		} else
			quitting = 1;	/* racy, but only when out of memory */
		pthread_join(thread, NULL);
		thread_running = 0;
	}
	/* lws calls back on this thread now: CLOSED, WSI_DESTROY */
	if (ctx)
		lws_context_destroy(ctx);
	ctx = NULL;
	STAILQ_CONCAT(&cmds, &pending);
	while ((c = STAILQ_FIRST(&cmds)) != NULL) {
		STAILQ_REMOVE_HEAD(&cmds, next);
		cmd_discard(c);
	}
	while (!LIST_EMPTY(&all_links)) {
		link_report(LIST_FIRST(&all_links), 1006);
		link_free(LIST_FIRST(&all_links));
	}
	if (wake) {
		on_wake(-1, 0, NULL);
		event_free(wake);
		wake = NULL;
	}
	while (!LIST_EMPTY(&all_sessions)) {
		struct sq_ws *w = LIST_FIRST(&all_sessions);

		sqc_call_ws_close(w->inst, w, 1001);
		session_free(w);
	}
	/* commands the last ws_close callbacks sent were dropped */
	if (flush_ev)
		event_free(flush_ev);
	flush_ev = NULL;
	sqc_idmap_free(&sessions);
	sqc_idmap_free(&links);
	sqc_idmap_free(&by_wsi);
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
	size_t hlen = 1, noffered;
	char *p, **offered;
	int rc;

	if (ctx == NULL) {
		*status = 503;
		return -EAGAIN;
	}
	if ((*status = sqc_upgrade_check(evhttp_request_get_command(ev) ==
	    EVHTTP_REQ_GET, evhttp_request_get_uri(ev), h, hs_space)) != 0)
		return -EINVAL;
	TAILQ_FOREACH(kv, h, next)
		hlen += strlen(kv->key) + strlen(kv->value) + 2;
	if (sqc_upgrade_protocols(h, &offered, &noffered) != 0) {
		*status = 503;		/* out of memory: it was checked */
		return -ENOMEM;
	}
	if ((w = calloc(1, sizeof(*w) + hlen)) == NULL ||
	    sqc_idmap_put(&sessions, next_id, w) != 0) {
		free(w);
		free(offered);
		*status = 503;
		return -ENOMEM;
	}
	w->offered = offered;
	w->noffered = noffered;
	w->id = next_id++;
	w->inst = inst;
	sqc_inst_ref(inst);
	w->max_message = DEFAULT_MAX_MESSAGE;
	w->max_queue = DEFAULT_MAX_QUEUE;
	snprintf(w->client, sizeof(w->client), "%s", client);
	STAILQ_INIT(&w->held);
	p = w->headers;		/* one block: idle sessions stay small */
	TAILQ_FOREACH(kv, h, next) {
		p = stpcpy(p, kv->key) + 1;
		p = stpcpy(p, kv->value) + 1;
	}
	LIST_INSERT_HEAD(&all_sessions, w, all);
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
	if ((hs = evbuffer_new()) == NULL || (c = cmd_new(C_ADOPT, 0)) == NULL)
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
	if (c)
		cmd_discard(c);		/* its fd is not set yet */
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
	/* room in front for lws_write's frame header (deflate links) */
	struct wbuf *b = malloc(sizeof(*b) + LWS_PRE + len);

	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, refs);
	b->len = len;
	b->binary = binary;
	memcpy(b->data + LWS_PRE, data, len);
	return b;
}

/*
 * One copy of the message for all, and one command carrying the
 * recipients; a recipient still inside ws_open gets a command of its own,
 * held until its hand-over.
 */
int
sq_ws_broadcast(struct sq_ws *const *to, size_t n, const void *data,
    size_t len, int binary)
{
	struct wbuf *b;
	struct cmd *c = NULL;
	size_t live = 0, held = 0;

	for (size_t i = 0; i < n; i++)
		if (to[i] && !to[i]->closing) {
			live++;
			held += to[i]->opening;
		}
	if (live == 0)
		return 0;
	if ((b = wbuf_new(data, len, binary, (unsigned)live)) == NULL ||
	    (live > held && (c = cmd_new(C_SEND, live - held)) == NULL)) {
		free(b);
		return -ENOMEM;
	}
	sqc_counters.ws_out += live;
	for (size_t i = 0; i < n; i++) {
		struct cmd *h;

		if (to[i] == NULL || to[i]->closing)
			continue;
		if (!to[i]->opening) {
			c->ids[c->nids++] = to[i]->id;
			continue;
		}
		if ((h = cmd_new(C_SEND, 1)) == NULL) {
			wbuf_unref(b);
			continue;
		}
		h->ids[h->nids++] = to[i]->id;
		h->buf = b;
		STAILQ_INSERT_TAIL(&to[i]->held, h, next);
	}
	if (c != NULL) {
		c->buf = b;
		push_cmd(c);
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

	if (ws->closing || (c = cmd_new(C_CLOSE, 0)) == NULL)
		return;
	ws->closing = 1;
	c->id = ws->id;
	c->code = code;
	snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "");
	session_cmd(ws, c);
}

void
sq_ws_ping(struct sq_ws *ws, uint64_t timeout_ms)
{
	struct cmd *c;

	if (ws->closing || (c = cmd_new(C_PING, 0)) == NULL)
		return;
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
	for (const char *p = ws->headers; *p != '\0';) {
		const char *value = p + strlen(p) + 1;

		if (strcasecmp(p, name) == 0)
			return value;
		p = value + strlen(value) + 1;
	}
	return NULL;
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
