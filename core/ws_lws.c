/*
 * ws_lws.c - the libwebsockets half of the WebSocket bridge. Everything
 * here runs on the service thread, except the sqc_wsl_* entry points the
 * loop thread calls to start, wake and end it. The service thread runs a
 * libev loop (epoll) that lws drives through its event-library plugin,
 * so that a turn costs what happened, not how many connections are open;
 * without the plugin, lws' own poll(2) loop, whose every turn scans every
 * connection. It owns the lws context and the life of each struct link
 * (ws_link.h), the lws side of a session, known by its id (commands name
 * it) and by its wsi; ws_link.c has the link's data.
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
 * framed by us and given to lws as raw bytes (ws_link.c). Only what the
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
 * parameters upgrade.c chose; ws_link.c inflates and compresses.
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
#include "ws_link.h"

/* lws' receive buffer per connection: it reassembles, we append */
#define RX_CHUNK		256
/*
 * lws' header space for a handshake: max_header_size and this much more,
 * within [HS_SPACE_MIN, USHRT_MAX] (lws counts in 16 bits); the check
 * before ws_open keeps HS_MARGIN of it for lws' own bookkeeping.
 */
#define HS_EXTRA		1024
#define HS_SPACE_MIN		4096
#define HS_MARGIN		512



static struct lws_context *ctx;
static struct lws_vhost *vhost;
static pthread_t thread;
static int thread_running;	/* loop thread: started, not joined */

/* links by id and by wsi, and the stop flags */
static struct sqc_idmap links, by_wsi;
static LIST_HEAD(, link) all_links = LIST_HEAD_INITIALIZER(all_links);
static int stopping;		/* close everyone, then leave */
static atomic_int quitting;	/* set by the loop: leave now */
static struct link *adopting;	/* set around an adoption */
static struct ev_loop *evloop;	/* the service thread's (ws_ev.c), or
					 * NULL: lws' poll loop */

/*
 * At stop: each link goes at once where it can (sqc_link_stop: its close
 * frame written, then freed here), else by the closing handshake.
 */
static void
stop_all(void)
{
	struct link *l, *next;

	for (l = LIST_FIRST(&all_links); l != NULL; l = next) {
		next = LIST_NEXT(l, all);
		if (sqc_link_stop(l))
			lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
			    LWS_TO_KILL_SYNC);	/* frees l */
		else
			sqc_link_close(l, LWS_CLOSE_STATUS_GOINGAWAY,
			    "server stopping");
	}
}

/* the link of a session id, or NULL */
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

/* the code a session ended with: the client's close, ours, or none */
static int
link_code(const struct link *l)
{
	return l->peer_code ? l->peer_code : l->close_code ? l->close_code :
	    1006;
}

/* forgets the link and frees it (its wsi is gone, or never was) */
static void
link_free(struct link *l)
{
	sqc_idmap_del(&links, l->id);
	if (l->wsi)
		sqc_idmap_del(&by_wsi, (uintptr_t)l->wsi);
	LIST_REMOVE(l, all);
	sqc_link_release(l);
	free(l->protocol);
	free(l);
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
					sqc_link_send(l, c->buf);
				else
					sqc_wbuf_unref(c->buf);
			c->buf = NULL;
			break;
		case C_CLOSE:
			if ((l = link_find(c->id)) != NULL)
				sqc_link_close(l, c->code, c->reason);
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
			stop_all();
			break;
		}
		sqc_wscmd_discard(c);
	}
	sqc_link_flush();
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

/*
 * lws' writable callback: its own control frames went first (a pong, a
 * close it makes itself), then our ping, the queue, and our close.
 */
static int
on_writable(struct lws *wsi, struct link *l)
{
	l->lws_busy = 0;
	if (l->lws_closing) {
		if (lws_partial_buffered(wsi))
			return 0;	/* lws calls again once it is out */
		/*
		 * The connection failed and the close frame is out: lws'
		 * parser stopped inside a frame, so it would not see the
		 * client's answer and would wait 5 s for it. Our side of TCP
		 * ends now (a FIN: lws reads on, below, what the client
		 * sends, so no reset), and lws closes at the client's end,
		 * or in 1 s.
		 */
		if (l->lws_failed) {
			l->lws_failed = 0;
			shutdown(lws_get_socket_fd(wsi), SHUT_WR);
			lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 1);
		}
		/* the close frame is out: nothing can spoil it now */
		if (l->rx_held) {
			l->rx_held = 0;
			lws_rx_flow_control(wsi, 1);
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
		/*
		 * no pong in time: lws drops the connection. An earlier ping
		 * still unanswered keeps its deadline: on the libev loop lws
		 * handles our commands before its due timeouts, so a ping
		 * every timeout would push the deadline on forever.
		 */
		if (!l->pong_wait)
			lws_set_timeout(wsi,
			    PENDING_TIMEOUT_WS_PONG_CHECK_GET_PONG, l->ping_secs);
		l->ping_secs = 0;
		l->pong_wait = 1;
	}
	if (sqc_link_write(l) < 0)
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

/* The handshake is done: the link is the session's now. */
static int
on_established(struct lws *wsi, struct link **pl)
{
	struct link *l;

	if (pl == NULL || (l = link_of(wsi)) == NULL || l->reported)
		return -1;
	*pl = l;
	l->established = 1;
	default_close_reason(wsi);
	/* what was asked before the handshake was done */
	if (l->nout > l->outhead || l->close_code || l->ping_secs)
		lws_callback_on_writable(wsi);
	return 0;
}

/*
 * In the 101 response (handshake_0405): the subprotocol the plugin
 * chose. lws never saw the client's list, so it adds none itself.
 */
static int
on_add_headers(struct lws *wsi, struct lws_process_html_args *a)
{
	struct link *l;
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

/*
 * The client's close frame: lws answers it, and nothing of ours may
 * follow. lws echoes a 1-byte payload and codes from 5000 on (RFC 6455
 * 5.5.1, 7.4: a protocol error; it answers the reserved ones below 5000
 * with 1002 itself), and the reason must be UTF-8 text (5.5.1).
 */
static int
on_peer_close(struct lws *wsi, struct link *l, const unsigned char *in,
    size_t len)
{
	int code = len >= 2 ? in[0] << 8 | in[1] : 0;
	unsigned st = 0;

	if (l)
		l->peer_closed = 1;
	if (len == 1 || code > 4999) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR,
		    (unsigned char *)"bad close frame", 15);
		goto refuse;
	}
	if (len > 2 && (sqc_utf8_check(&st, in + 2, len - 2) != 0 ||
	    st != 0)) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
		    (unsigned char *)"bad utf8", 8);
		goto refuse;
	}
	if (l && len >= 2)
		l->peer_code = code;
	return 0;
refuse:
	/* lws sends our close frame, not its echo (on_drop) */
	if (l)
		l->peer_refused = 1;
	return -1;
}

/*
 * lws is closing the connection (before its close frame, on every close
 * path): nothing of ours goes out after this. lws sends the close frame
 * with the code set again here (a ping's payload may have taken its
 * place): ours, or the failure's (sqc_link_fail), or the refusal of a
 * bad close frame (on_peer_close); it answers a good one itself.
 *
 * Until that frame is out, lws reads nothing more (rx_held; on_writable
 * lets it read again), as RFC 6455 7.1.7 asks of a failed connection.
 * lws does not stop parsing when it fails a connection, and writes its
 * close frame at the connection's next POLLOUT. Its poll loop serves
 * POLLOUT before POLLIN, but on the libev loop the two are separate
 * watchers and the read comes first: lws parsed the next bytes the
 * client had sent, and a ping among them put its payload where the close
 * code was (an oversize pong got a Close with code 5), or a second error
 * ended the connection without a close frame. Only this connection
 * stops reading, and only until its close frame is written.
 */
static void
on_drop(struct lws *wsi, struct link *l)
{
	int closing = l->lws_closing;

	l->lws_closing = 1;
	sqc_link_drop_output(l);
	if (closing || atomic_load(&quitting) ||
	    (l->peer_closed && !l->peer_refused))
		return;
	if (l->peer_refused) {
		/* on_peer_close set the code (1002 or 1007) */
	} else if (l->close_code)
		lws_close_reason(wsi, (enum lws_close_status)l->close_code,
		    (unsigned char *)l->close_reason, strlen(l->close_reason));
	else {
		l->lws_failed = 1;
		sqc_link_fail(wsi, l);
	}
	l->rx_held = 1;
	lws_rx_flow_control(wsi, 0);
}

/* lws' callback: one handler per reason */
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
			link_report(l, link_code(l));
			link_free(l);
		}
		if (pl)
			*pl = NULL;
		return 0;
	case LWS_CALLBACK_ESTABLISHED:
		return on_established(wsi, pl);
	case LWS_CALLBACK_RECEIVE:
		if (l == NULL)
			return -1;
		/*
		 * Nothing after the client's close frame (RFC 6455 5.5.1):
		 * lws' byte parser drops it, but its bulk path for payload
		 * (lws_ws_frame_rest_is_payload) delivers it.
		 */
		return l->peer_closed ? 0 : sqc_link_receive(wsi, l, in, len);
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
		if ((l = link_of(wsi)) != NULL)
			on_drop(wsi, l);
		return 0;
	case LWS_CALLBACK_ADD_HEADERS:
		return on_add_headers(wsi, in);
	case LWS_CALLBACK_RECEIVE_PONG:
		if (l && l->close_code == 0) {
			lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
			l->pong_wait = 0;
		}
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		return on_peer_close(wsi, l, in, len);
	case LWS_CALLBACK_CLOSED:
		/* the link itself goes at WSI_DESTROY, which follows */
		if (l != NULL)
			link_report(l, link_code(l));
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
		/* 0, server_no_context_takeover: always answered */
		if (oa->option_index == 1)
			l->cli_nct = 1;
		else if (oa->option_index >= 2 && oa->option_index < 10)
			l->srv_bits = oa->option_index - 2 + 8;
		else if (oa->option_index >= 10)
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

/*
 * An lws 4.1.6 function that its headers do not declare: one turn of its
 * poll service. See service().
 */
int	_lws_plat_service_tsi(struct lws_context *, int, int);

static int probing;		/* service(): leave the libev loop at once */

/* The service thread leaves when told to, or once stopped and empty. */
static int
should_leave(void)
{
	return probing || atomic_load(&quitting) ||
	    (stopping && LIST_EMPTY(&all_links));
}

/* Every second, on the libev loop: lws' due timeouts (see ws_ev.c). */
static void
tick(void)
{
	lws_cancel_service(ctx);
}

/* the service loop */
static void *
service(void *arg)
{
	(void)arg;
	sqc_thread_name("squalld-ws", "the WebSocket thread");
	if (evloop != NULL) {
		/*
		 * lws asks GET_THREAD_ID when it changes a connection's poll
		 * events (which keeps our writes from overtaking its pongs and
		 * closes: lws_busy) only once its poll service has asked which
		 * thread serves it, which its event-library service never does.
		 * One turn of the poll service, with the libev loop it runs
		 * first told to leave at once, has it ask.
		 */
		probing = 1;
		_lws_plat_service_tsi(ctx, -1, 0);
		probing = 0;
		sqc_wsev_run(evloop);
	} else
		while (!should_leave() && lws_service(ctx, 0) >= 0)
			;
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

static const lws_retry_bo_t no_validity;	/* secs_since_valid_hangup 0 */

/*
 * The lws context on a libev loop of ours (ws_ev.c), through lws'
 * plugin; or, when there is no libev or lws cannot load its plugin, on
 * lws' poll loop, with a warning.
 */
static struct lws_context *
context_new(struct lws_context_creation_info *info)
{
	struct lws_context *c;
	char why[256] = "libwebsockets cannot load its libev plugin";
	void *loops[1];

	if ((evloop = sqc_wsev_new(should_leave, tick, why, sizeof(why))) !=
	    NULL) {
		loops[0] = evloop;
		info->options |= LWS_SERVER_OPTION_LIBEV;
		info->foreign_loops = loops;
		if ((c = lws_create_context(info)) != NULL)
			return c;
		sqc_wsev_free(evloop);
		evloop = NULL;
	}
	info->options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
	info->foreign_loops = NULL;
	sqc_log(SQ_LOG_WARN, "websocket", "%s (Debian: libev4 and "
	    "libwebsockets-evlib-ev): every turn of the WebSocket thread "
	    "polls every connection", why);
	return lws_create_context(info);
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
	/*
	 * No validity timer: lws would otherwise keep one per connection
	 * (a ping after 5 idle minutes) in a sorted list whose every insert
	 * walks it, so that each join cost a walk over every member. Pings
	 * are the plugin's (sq_ws_ping, the chat's ping_interval).
	 */
	info.retry_and_idle_policy = &no_validity;
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
	if ((ctx = context_new(&info)) == NULL ||
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
	sqc_wsev_free(evloop);
	evloop = NULL;
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
