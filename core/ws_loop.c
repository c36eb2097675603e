/*
 * ws_loop.c - the loop half of the WebSocket bridge: evhttp accepts the
 * upgrade request, the plugin's ws_open decides, then the socket is
 * handed over to libwebsockets, which runs on a thread of its own and
 * speaks the protocol (ws_lws.c). Everything here runs on the loop
 * thread and touches only struct sq_ws, the session plugins hold, named
 * by id across the threads, never by pointer. Commands go to the service
 * thread a loop turn at a time, with one wake-up; events come back
 * through ws_queue.c.
 *
 * The hand-over (docs/internals/websocket-bridge.md): duplicate the fd,
 * dup2 /dev/null over evhttp's number, free the evhttp connection, and
 * give lws the duplicate with a rebuilt, minimal handshake (plus any
 * bytes the client sent after it) as its first read. It happens on the
 * loop turn after the request, once libevent has applied the removal of
 * the socket from epoll (the base batches epoll changes); upgrades still
 * waiting for that turn at exit are dropped, before evhttp_free(). An
 * upgrade is checked (upgrade.c) before the plugin's ws_open, so that
 * libwebsockets is only ever given handshakes it takes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core.h"
#include "ws_bridge.h"

#define DEFAULT_MAX_MESSAGE	(64u << 10)
#define DEFAULT_MAX_QUEUE	(1u << 20)
#define MAX_PROTOCOL_NAME	255	/* a selectable subprotocol's length */

/* The loop side, what plugins hold. */
struct sq_ws {
	uint64_t	 id;
	struct sq_inst	*inst;
	void		*data;
	char		 client[64];
	size_t		 max_message, max_queue;
	int		 closing;	/* sq_ws_close called, or its link gone */
	int		 opening;	/* inside ws_open: hold commands */
	int		 in_open;	/* ws_open is running */
	char		**offered;	/* subprotocols, one block (upgrade.c) */
	size_t		 noffered;
	const char	*protocol;	/* the one selected, in offered */
	const char	*subpath;	/* after the route's prefix, in headers */
	const char	*query;		/* the request's, after the subpath */
	int		 counted;	/* held by the HTTP server (host) */
	int		 tls;		/* came by TLS: relayed */
	STAILQ_HEAD(, cmd) held;	/* sent from ws_open, after ADOPT */
	LIST_ENTRY(sq_ws) all;
	/* the upgrade request's headers: "name\0value\0"..., then "\0",
	 * then the subpath, then the query */
	char		 headers[];
};

struct handover {
	struct evhttp_connection *evcon;
	struct evhttp_request *ev;	/* evhttp's, until the hand-over */
	struct sq_ws	*w;
	int		 deflate;	/* the route allows permessage-deflate */
	char		 client[64];
	struct event	*tev;
	LIST_ENTRY(handover) link;
};

static struct event_base *wbase;
static const struct sqc_ws_host *host;	/* the HTTP server */
static LIST_HEAD(, handover) handovers = LIST_HEAD_INITIALIZER(handovers);
static int ws_stopping;
static const struct timeval zero = { 0, 0 };
static int devnull = -1;
static size_t hs_space;		/* handshake bytes lws is given room for */
static struct event *wake;	/* events from the service thread */
static struct event *flush_ev;	/* this turn's commands to hand over */
static uint64_t next_id = 1;

/* the commands of this loop turn, handed over at its end */
static struct cmdq pending = STAILQ_HEAD_INITIALIZER(pending);

/* sessions by id */
static struct sqc_idmap sessions;
static LIST_HEAD(, sq_ws) all_sessions = LIST_HEAD_INITIALIZER(all_sessions);

static void drop_handovers(void);

/* ---- commands --------------------------------------------------------- */

/* This turn's commands to the service thread, with one wake-up at most. */
static void
flush_cmds(evutil_socket_t fd, short what, void *arg)
{
	if (!STAILQ_EMPTY(&pending) && sqc_wscmd_hand_over(&pending))
		sqc_wsl_wake();
}

/*
 * A command for the service thread, handed over at the end of this loop
 * turn, with the others of the turn. Once that thread has ended (at
 * exit, while the last ws_close callbacks run and may still broadcast),
 * commands are dropped.
 */
static void
push_cmd(struct cmd *c)
{
	if (!sqc_wsl_running()) {
		sqc_wscmd_discard(c);
		return;
	}
	if (STAILQ_EMPTY(&pending))
		event_active(flush_ev, EV_WRITE, 0);
	STAILQ_INSERT_TAIL(&pending, c, next);
}

/* A command for w, held back while ws_open runs. */
static void
session_cmd(struct sq_ws *w, struct cmd *c)
{
	if (w->opening)
		STAILQ_INSERT_TAIL(&w->held, c, next);
	else
		push_cmd(c);
}

/* ---- sessions --------------------------------------------------------- */

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
		sqc_wscmd_discard(c);
	}
	free(w->offered);
	sqc_inst_unref(w->inst);
	if (w->counted)
		host->release();
	free(w);
}

/* Loop thread: what the service thread reported. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct evq q = STAILQ_HEAD_INITIALIZER(q);
	struct wev *e;
	struct sq_ws *w;

	sqc_wsev_take(&q);
	/*
	 * Sessions whose close is in this batch are sent nothing more: their
	 * links are gone. Without this, a mass disconnect sends each "left"
	 * line to every member whose own close is further down the batch
	 * (N^2/2 lines for N members leaving at once).
	 */
	STAILQ_FOREACH(e, &q, next)
		if (e->kind == E_CLOSED && (w = session_find(e->id)) != NULL)
			w->closing = 1;
	while ((e = STAILQ_FIRST(&q)) != NULL) {
		w = session_find(e->id);
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
sqc_ws_init(struct event_base *base, const struct sqc_ws_host *h,
    size_t max_header_size, char *err, size_t errlen)
{
	wbase = base;
	host = h;
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
	    (wake = event_new(base, -1, 0, on_wake, NULL)) == NULL ||
	    (flush_ev = event_new(base, -1, 0, flush_cmds, NULL)) == NULL) {
		snprintf(err, errlen, "cannot set up WebSockets: %s",
		    strerror(errno));
		return -EIO;
	}
	sqc_wsev_init(wake);
	return sqc_wsl_start(max_header_size, &hs_space, err, errlen);
}

/* The WebSocket sessions open now (for /status). */
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
	if (!sqc_wsl_running() || (c = sqc_wscmd_new(C_STOP, 0)) == NULL)
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
	sqc_ws_stop();
	sqc_wsl_end();
	sqc_wss_free_all();	/* lws has closed its ends */
	/* commands not handed over yet are dropped */
	while ((c = STAILQ_FIRST(&pending)) != NULL) {
		STAILQ_REMOVE_HEAD(&pending, next);
		sqc_wscmd_discard(c);
	}
	if (wake) {
		on_wake(-1, 0, NULL);
		sqc_wsev_init(NULL);
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
	if (devnull >= 0)
		close(devnull);
	devnull = -1;
}

static void handover(evutil_socket_t fd, short what, void *arg);

/*
 * A new session for inst's route, with a copy of the request's headers
 * in one block (idle sessions stay small) and the subprotocols offered;
 * listed, opening. NULL when out of memory.
 */
static struct sq_ws *
session_new(struct sq_inst *inst, struct evkeyvalq *h, const char *client,
    const char *subpath, const char *query)
{
	struct evkeyval *kv;
	struct sq_ws *w;
	size_t hlen, noffered;
	char *p, **offered;

	if (subpath == NULL)
		subpath = "";
	if (query == NULL)
		query = "";
	hlen = 3 + strlen(subpath) + strlen(query);
	TAILQ_FOREACH(kv, h, next)
		hlen += strlen(kv->key) + strlen(kv->value) + 2;
	if (sqc_upgrade_protocols(h, &offered, &noffered) != 0)
		return NULL;
	if ((w = calloc(1, sizeof(*w) + hlen)) == NULL ||
	    sqc_idmap_put(&sessions, next_id, w) != 0) {
		free(w);
		free(offered);
		return NULL;
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
	p = w->headers;
	TAILQ_FOREACH(kv, h, next) {
		p = stpcpy(p, kv->key) + 1;
		p = stpcpy(p, kv->value) + 1;
	}
	w->subpath = p + 1;	/* after the headers' closing "\0" */
	p = stpcpy(p + 1, subpath) + 1;
	w->query = strcpy(p, query);
	LIST_INSERT_HEAD(&all_sessions, w, all);
	w->opening = 1;		/* until the hand-over: commands wait */
	return w;
}

/*
 * Hands ev's socket over to the WebSocket thread on the next loop turn,
 * not now: libevent may batch epoll changes
 * (EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST), and the dup2 of the hand-over
 * is only safe once evhttp's socket has really left epoll, which the
 * next epoll_wait makes sure of. Until then the connection sits idle:
 * evhttp stopped reading before calling us. -ENOMEM, or 0.
 */
static int
handover_schedule(struct evhttp_request *ev, struct sq_ws *w, int deflate,
    const char *client)
{
	struct handover *ho;

	if ((ho = calloc(1, sizeof(*ho))) == NULL ||
	    (ho->tev = evtimer_new(wbase, handover, ho)) == NULL) {
		free(ho);
		return -ENOMEM;
	}
	ho->evcon = evhttp_request_get_connection(ev);
	ho->ev = ev;
	ho->w = w;
	ho->deflate = deflate;
	snprintf(ho->client, sizeof(ho->client), "%s", client);
	LIST_INSERT_HEAD(&handovers, ho, link);
	evtimer_add(ho->tev, &zero);
	return 0;
}

/*
 * An upgrade request for inst's route: checks the handshake, asks the
 * plugin, and schedules the hand-over; deflate says whether the route
 * allows permessage-deflate. On refusal it returns non-zero with the
 * status to answer (400, 426, or the plugin's). On success the
 * connection belongs to the hand-over: the caller must not answer ev.
 */
int
sqc_ws_upgrade(struct evhttp_request *ev, struct sq_inst *inst,
    const char *subpath, const char *client, int deflate, int *status)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	const struct evhttp_uri *u;
	struct sq_ws *w;
	int rc;

	if (!sqc_wsl_running()) {
		*status = 503;
		return -EAGAIN;
	}
	if ((*status = sqc_upgrade_check(evhttp_request_get_command(ev) ==
	    EVHTTP_REQ_GET, evhttp_request_get_uri(ev), h, hs_space)) != 0)
		return -EINVAL;
	u = evhttp_request_get_evhttp_uri(ev);
	if ((w = session_new(inst, h, client, subpath,
	    u ? evhttp_uri_get_query(u) : NULL)) == NULL) {
		*status = 503;		/* out of memory: it was checked */
		return -ENOMEM;
	}
	w->in_open = 1;
	rc = sqc_call_ws_open(inst, w);
	w->in_open = 0;
	if (rc != 0) {
		session_free(w);
		*status = rc >= 400 && rc <= 599 ? rc : 403;
		return -EPERM;
	}
	if (handover_schedule(ev, w, deflate, client) != 0) {
		/* the plugin accepted: tell it the session is over */
		sqc_call_ws_close(inst, w, 1011);
		session_free(w);
		*status = 503;
		return -ENOMEM;
	}
	*status = 101;
	return 0;
}

static void
handover_unlink(struct handover *h)
{
	LIST_REMOVE(h, link);
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
 * Bytes OpenSSL has decrypted that libevent has not read: none as a rule
 * (libevent 2.1.12 reads each record to its end unless its input is
 * suspended, which evhttp does not do), but if there are any they are
 * the client's, after the request: appended to to. 0, -EIO or -ENOMEM.
 */
static int
tls_leftover(SSL *ssl, struct evbuffer *to)
{
	char buf[4096];
	int n;

	while (SSL_pending(ssl) > 0) {
		if ((n = SSL_read(ssl, buf, sizeof(buf))) <= 0)
			return -EIO;
		if (evbuffer_add(to, buf, (size_t)n) != 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * wss (docs/internals/wss.md): evhttp's TLS bufferevent, SSL object and
 * all, outlives the evhttp connection (a reference of ours, which the
 * relay takes), the socket goes back under its own number once evhttp's
 * shutdown has hit /dev/null there, and lws is given one end of a
 * socketpair the relay feeds. The connection's count moves to the relay.
 * Called with evhttp's fd number already under /dev/null and the socket
 * in dup_fd, which this closes. The lws end, or -errno: then the
 * connection is closed and its count released.
 */
static int
handover_tls(struct evhttp_connection *evcon, struct bufferevent *bev,
    int fd, int dup_fd)
{
	int lws_fd, rc;

	bufferevent_incref(bev);
	host->hold();
	evhttp_connection_free(evcon);	/* frees the request too */
	rc = dup2(dup_fd, fd) < 0 ? -errno : 0;
	close(dup_fd);
	if (rc == 0 &&
	    (rc = sqc_wss_start(bev, host->release, &lws_fd)) == 0)
		return lws_fd;
	bufferevent_free(bev);	/* closes fd, frees the SSL object */
	host->release();
	return rc;
}

/*
 * The hand-over proper (see the notes): the rebuilt handshake and what
 * the client sent after it become lws' first read; the socket is
 * duplicated, /dev/null is put under evhttp's number, and the evhttp
 * connection is freed (shutdown and close then hit /dev/null). Over TLS,
 * lws gets a socketpair's end instead (handover_tls).
 */
static void
handover(evutil_socket_t unused, short what, void *arg)
{
	struct handover *h = arg;
	struct sq_ws *w = h->w;
	struct evkeyvalq *hdr = evhttp_request_get_input_headers(h->ev);
	struct evhttp_connection *evcon = h->evcon;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	struct evbuffer *hs = NULL;
	struct cmd *c = NULL;
	int fd, dup_fd = -1, one = 1;

	handover_unlink(h);
	if (ws_stopping)
		goto fail;
	if ((hs = evbuffer_new()) == NULL || (c = sqc_wscmd_new(C_ADOPT, 0)) == NULL)
		goto fail;
	if ((w->protocol && (c->protocol = strdup(w->protocol)) == NULL) ||
	    sqc_upgrade_handshake(hs, hdr, h->deflate) != 0 ||
	    evbuffer_add_buffer(hs, bufferevent_get_input(bev)) != 0 ||
	    (ssl != NULL && tls_leftover(ssl, hs) != 0))
		goto fail;
	c->readlen = evbuffer_get_length(hs);
	if ((c->readbuf = malloc(c->readlen)) == NULL)
		goto fail;
	evbuffer_remove(hs, c->readbuf, c->readlen);
	fd = bufferevent_getfd(bev);
	if ((dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0 ||
	    dup2(devnull, fd) < 0)
		goto fail;
	host->log_access(h->ev, h->client, 101, 0);
	/* chat lines are small: do not let Nagle hold them back */
	setsockopt(dup_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evbuffer_free(hs);
	free(h);
	if (ssl != NULL) {
		w->tls = 1;
		if ((c->fd = handover_tls(evcon, bev, fd, dup_fd)) < 0) {
			c->fd = -1;
			sqc_wscmd_discard(c);
			session_abandon(w, ws_stopping ? 1001 : 1011);
			return;
		}
	} else {
		host->hold();		/* still a connection: count it */
		w->counted = 1;
		evhttp_connection_free(evcon);	/* frees ev too */
		c->fd = dup_fd;
	}
	c->id = w->id;
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
		sqc_wscmd_discard(c);		/* its fd is not set yet */
	host->log_access(h->ev, h->client, 503, 0);
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
	struct handover *h;

	while ((h = LIST_FIRST(&handovers)) != NULL) {
		handover_unlink(h);
		evhttp_connection_free(h->evcon);
		session_abandon(h->w, 1001);
		free(h);
	}
}

/* ---- the plugin API --------------------------------------------------- */


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
	if ((b = sqc_wbuf_new(data, len, binary, (unsigned)live)) == NULL ||
	    (live > held && (c = sqc_wscmd_new(C_SEND, live - held)) == NULL)) {
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
		if ((h = sqc_wscmd_new(C_SEND, 1)) == NULL) {
			sqc_wbuf_unref(b);
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

	if (ws->closing || (c = sqc_wscmd_new(C_CLOSE, 0)) == NULL)
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

	if (ws->closing || (c = sqc_wscmd_new(C_PING, 0)) == NULL)
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

int
sq_ws_tls(struct sq_ws *ws)
{
	return ws->tls;
}

const char *
sq_ws_client_ip(struct sq_ws *ws)
{
	return ws->client;
}

const char *
sq_ws_subpath(struct sq_ws *ws)
{
	return ws->subpath;
}

const char *
sq_ws_query(struct sq_ws *ws)
{
	return ws->query;
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
