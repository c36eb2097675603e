/*
 * http_conn.c - the HTTP server's connections, from accept to close.
 * evhttp asks us for each accepted connection's bufferevent
 * (evhttp_set_bevcb), and a callback later in the same loop turn finds
 * the evhttp_connection that took it and sets its close callback. Every
 * tracked connection, and every WebSocket session handed over to
 * ws_loop.c (sqc_http_conn_hold), counts against max_connections: at the
 * limit, and while accept() fails for want of descriptors, the listeners
 * are disabled (the kernel's backlog holds new clients) rather than
 * connections accepted and closed. The same bufferevent lets us count
 * the bytes of each request's header section as they arrive, to answer
 * 431 before evhttp answers 400 itself, and then linger. Loop thread.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "core.h"
#include "http.h"

#define RETRY_MAX_MS	1000	/* the rest doubles up to this */
#define QUIET_MS	1000	/* no failure this long: episode over */
#define LINGER_MAX	(1 << 20)	/* input discarded after our 431 */

static void hdr_input(struct evbuffer *in,
    const struct evbuffer_cb_info *info, void *arg);

/* The tracked connection of evcon, or NULL. */
struct conn *
sqc_http_conn_find(struct sqc_server *s, struct evhttp_connection *evcon)
{
	return sqc_idmap_get(&s->by_evcon, (uintptr_t)evcon);
}

/* Connections that count against max_connections. */
size_t
sqc_http_conns_open(const struct sqc_server *s)
{
	return s->nconns + s->npending + s->nws;
}

static void
set_accepting(struct sqc_server *s, int on)
{
	for (size_t i = 0; i < s->nbound; i++) {
		struct evconnlistener *l;

		l = evhttp_bound_socket_get_listener(s->bound[i].b);
		if (on)
			evconnlistener_enable(l);
		else
			evconnlistener_disable(l);
	}
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * The listeners accept unless the server stops, max_connections are
 * open, or accept() has just failed. Disabled, they leave new clients in
 * the kernel's backlog. A server at its limit comes and goes from it
 * with every connection: that is logged once, until it has stayed below
 * for a second.
 */
void
sqc_http_update_accepting(struct sqc_server *s)
{
	int full = sqc_http_conns_open(s) >= s->max_connections;
	int on = !s->stopping && !s->starved && !full;

	if (full != s->full) {
		long now = now_ms();

		if (full && !s->stopping && (s->unfull_ms == 0 ||
		    now - s->unfull_ms >= QUIET_MS))
			sqc_log(SQ_LOG_WARN, NULL, "max_connections (%zu) "
			    "reached: not accepting until a connection "
			    "closes", s->max_connections);
		if (!full)
			s->unfull_ms = now;
		s->full = full;
	}
	if (on != s->accepting) {
		s->accepting = on;
		set_accepting(s, on);
	}
}

/* The rest after a failed accept() is over: try again. */
void
sqc_http_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct sqc_server *s = arg;

	s->starved = 0;
	sqc_http_update_accepting(s);
}

/* A connection closed: a descriptor is free, no need to rest longer. */
static void
fd_freed(struct sqc_server *s)
{
	if (s->starved) {
		s->starved = 0;
		evtimer_del(s->retry_ev);
	}
	sqc_http_update_accepting(s);
}

/*
 * evconnlistener's error callback: accept() failed other than with
 * EAGAIN, EINTR or ECONNABORTED, most likely for want of descriptors
 * (EMFILE, ENFILE) or memory. The pending connection stays in the
 * backlog and the socket readable, so the loop would spin on it: the
 * listeners rest until a connection closes or for 100 ms, doubling up to
 * 1 s while accept() keeps failing. The episode, until accept() has not
 * failed for a second, is logged once.
 */
void
sqc_http_accept_failed(struct evconnlistener *l, void *arg)
{
	struct sqc_server *s = sqc_http_current;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv;

	if (s == NULL || s->stopping)
		return;
	if (!s->starved_logged) {
		sqc_log(SQ_LOG_WARN, NULL, "cannot accept connections (%s): "
		    "pausing until a connection closes, or a second at most",
		    strerror(e));
		s->starved_logged = 1;
	}
	s->failed_ms = now_ms();
	if (!s->starved) {
		s->starved = 1;
		tv.tv_sec = s->retry_ms / 1000;
		tv.tv_usec = (s->retry_ms % 1000) * 1000;
		evtimer_add(s->retry_ev, &tv);
		s->retry_ms = s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS :
		    s->retry_ms * 2;
	}
	sqc_http_update_accepting(s);
}

/* A failed handshake, at debug level only: clients can cause many. */
static void
tls_failure_note(struct conn *c)
{
	unsigned long e;
	const char *why;
	char *host = NULL;
	ev_uint16_t port = 0;

	if (!sqc_log_enabled(SQ_LOG_DEBUG))
		return;
	e = bufferevent_get_openssl_error(c->bev);
	why = e ? ERR_reason_error_string(e) : NULL;
	if (c->evcon)
		evhttp_connection_get_peer(c->evcon, &host, &port);
	sqc_log(SQ_LOG_DEBUG, NULL, "TLS handshake with %s failed: %s",
	    host ? host : "a client", why ? why : "closed or timed out");
}

/*
 * A TLS connection's handshake, counted once: done when the first bytes
 * of a request come (there is nothing to read before), or at the close,
 * a success or a failure (a client that was not TLS, offered nothing we
 * speak, or stalled). closing also ends its count as open.
 */
static void
tls_account(struct conn *c, int closing)
{
	SSL *ssl;

	if (!c->tls)
		return;
	if (!c->tls_counted && (!closing || ((ssl =
	    bufferevent_openssl_get_ssl(c->bev)) != NULL &&
	    SSL_is_init_finished(ssl))))
		sqc_counters.tls_handshakes++;
	else if (!c->tls_counted) {
		sqc_counters.tls_handshake_failures++;
		tls_failure_note(c);
	}
	c->tls_counted = 1;
	if (closing)
		c->srv->ntls--;
}

/* evhttp is freeing the connection: the client left or it timed out. */
static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	struct sqc_server *s = c->srv;

	tls_account(c, 1);
	if (c->req)
		sqc_http_req_gone(c->req);
	if (c->watch)
		event_free(c->watch);
	if (c->incb)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev),
		    c->incb);
	sqc_idmap_del(&s->by_evcon, (uintptr_t)evcon);
	LIST_REMOVE(c, link);
	s->nconns--;
	free(c);
	fd_freed(s);
}

/* Tracks c as evcon's until evhttp frees evcon. */
static int
conn_insert(struct sqc_server *s, struct conn *c,
    struct evhttp_connection *evcon)
{
	if (sqc_idmap_put(&s->by_evcon, (uintptr_t)evcon, c) != 0)
		return -ENOMEM;
	c->evcon = evcon;
	LIST_INSERT_HEAD(&s->conns, c, link);
	s->nconns++;
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	return 0;
}

/* Forgets a connection sqc_http_accepted() made that was never attached. */
void
sqc_http_conn_drop(struct conn *c)
{
	tls_account(c, 1);
	if (c->incb)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev),
		    c->incb);
	bufferevent_decref(c->bev);
	free(c);
}

/*
 * A TLS connection sends each response as several records (OpenSSL
 * writes a record per evbuffer chunk), so Nagle's algorithm held the
 * last one back until the client's delayed ACK, 40 ms a request on a
 * keep-alive connection: send at once, as nginx does.
 */
static void
no_delay(struct bufferevent *bev)
{
	int one = 1;

	setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one));
}

/*
 * Later in the loop turn of the accepts, before any read: evhttp has
 * wrapped each new bufferevent in an evhttp_connection and made itself
 * the bufferevent's callbacks, with the connection as their argument.
 * That is libevent 2.1's private behaviour (no public call maps a
 * bufferevent to its connection), checked as far as the public API
 * allows. A connection evhttp dropped at once left its bufferevent
 * without callbacks (we held a reference on it).
 */
void
sqc_http_attach(evutil_socket_t fd, short what, void *arg)
{
	struct sqc_server *s = arg;
	struct conn *c;

	while ((c = LIST_FIRST(&s->pending)) != NULL) {
		struct evhttp_connection *evcon;
		void *cbarg = NULL;

		LIST_REMOVE(c, link);
		s->npending--;
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
		evcon = cbarg;
		if (evcon == NULL ||
		    evhttp_connection_get_bufferevent(evcon) != c->bev ||
		    conn_insert(s, c, evcon) != 0) {
			sqc_http_conn_drop(c);
			continue;
		}
		bufferevent_decref(c->bev);	/* evhttp's from now */
		if (c->tls)
			no_delay(c->bev);
	}
	sqc_http_update_accepting(s);
}

/*
 * evhttp_set_bevcb: evhttp has accepted a connection and asks for its
 * bufferevent. We make it (bev, or NULL when that failed), count the
 * connection from now on, watch its input for the header limit, and let
 * sqc_http_attach() find its evhttp_connection once evhttp has made it.
 * Given NULL, evhttp makes a plain bufferevent itself, untracked: on a
 * TLS listener, that connection answers the ClientHello 400 and closes.
 */
static struct bufferevent *
accepted(struct sqc_server *s, struct bufferevent *bev, int tls)
{
	struct conn *c;

	s->retry_ms = RETRY_MIN_MS;
	if (s->starved_logged && now_ms() - s->failed_ms >= QUIET_MS) {
		sqc_log(SQ_LOG_INFO, NULL, "accepting connections again");
		s->starved_logged = 0;
	}
	if (bev == NULL)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	bufferevent_incref(bev);
	c->bev = bev;
	c->srv = s;
	c->tls = tls;
	s->ntls += (size_t)tls;
	c->incb = evbuffer_add_cb(bufferevent_get_input(bev), hdr_input, c);
	LIST_INSERT_HEAD(&s->pending, c, link);
	s->npending++;
	event_active(s->attach_ev, EV_TIMEOUT, 0);
	sqc_http_update_accepting(s);
	return bev;
}

/* evhttp_set_bevcb of the plain listeners (see above). */
struct bufferevent *
sqc_http_accepted(struct event_base *base, void *arg)
{
	return accepted(arg, bufferevent_socket_new(base, -1, 0), 0);
}

/*
 * libevent writes a TLS record per chunk of the output buffer, and evhttp
 * queues a response as several (status line and headers, then the body):
 * a small response is made one chunk, so that it goes out as one record
 * and one send(2), as nginx's buffering does.
 */
#define TLS_COALESCE	16384	/* a record's worth, at most */

static void
tls_coalesce(struct evbuffer *out, const struct evbuffer_cb_info *info,
    void *arg)
{
	if (info->n_added > 0 && evbuffer_get_length(out) <= TLS_COALESCE)
		evbuffer_pullup(out, -1);
}

/*
 * evhttp_set_bevcb of the TLS listeners: the handshake happens inside the
 * bufferevent, and evhttp reads the request from what it decrypts. The
 * bufferevent owns the SSL object and closes the socket with it.
 */
struct bufferevent *
sqc_http_accepted_tls(struct event_base *base, void *arg)
{
	struct sqc_server *s = arg;
	struct bufferevent *bev = NULL;
	SSL *ssl;

	if (s->tls != NULL && (ssl = sqc_tls_accept(s->tls)) != NULL &&
	    (bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		SSL_free(ssl);
	else if (bev != NULL)
		evbuffer_add_cb(bufferevent_get_output(bev), tls_coalesce,
		    NULL);
	return accepted(s, bev, 1);
}

/*
 * The tracked connection of evcon: attached first if accepts are
 * pending, tracked from now if it was not seen at accept; NULL when out
 * of memory.
 */
struct conn *
sqc_http_conn_get(struct sqc_server *s, struct evhttp_connection *evcon)
{
	struct conn *c;

	if (!LIST_EMPTY(&s->pending))
		sqc_http_attach(-1, 0, s);
	if ((c = sqc_http_conn_find(s, evcon)) != NULL)
		return c;
	/* not seen at accept (out of memory then): tracked from now */
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->srv = s;
	if (conn_insert(s, c, evcon) != 0) {
		free(c);
		return NULL;
	}
	sqc_http_update_accepting(s);
	return c;
}

/*
 * A WebSocket session takes over a connection's socket (ws_loop.c, loop
 * thread): it counts against max_connections until the matching
 * sqc_http_conn_release. Call it before freeing the evhttp connection,
 * so that the count never dips in between.
 */
void
sqc_http_conn_hold(void)
{
	if (sqc_http_current == NULL)
		return;
	sqc_http_current->nws++;
	sqc_http_update_accepting(sqc_http_current);
}

/* The session of a sqc_http_conn_hold has ended (loop thread). */
void
sqc_http_conn_release(void)
{
	if (sqc_http_current == NULL || sqc_http_current->nws == 0)
		return;
	sqc_http_current->nws--;
	fd_freed(sqc_http_current);
}

/* ---- the header limit ------------------------------------------------ */

/*
 * evhttp 2.1 answers a header section over its own limit with 400 and
 * never calls us (the overflow becomes EVREQ_HTTP_INVALID_HEADER, whose
 * answer evhttp_handle_request sends itself; there is no error callback
 * for incoming requests). So we count each request's header section,
 * request line to blank line, as its bytes arrive on the connection's
 * bufferevent, and answer 431 ourselves past max_header_size, before
 * evhttp (whose limit is set higher) parses them. Lines end in LF or
 * CRLF, as evhttp reads them. The count restarts when a request is
 * dispatched: evhttp has then consumed exactly that request.
 */
static void
hdr_scan(struct conn *c, const char *p, size_t n)
{
	/* a request starts: the access log's request time counts from here */
	if (n > 0 && c->phase == HDR_HEAD && c->hdr_len == 0 &&
	    c->line_len == 0)
		clock_gettime(CLOCK_MONOTONIC, &c->t0);
	while (n > 0 && c->phase == HDR_HEAD) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;

		if (!c->first_done && c->first_len < sizeof(c->first) - 1) {
			size_t room = sizeof(c->first) - 1 - c->first_len;
			size_t m = k < room ? k : room;

			memcpy(c->first + c->first_len, p, m);
			c->first_len += m;
		}
		if (k > 0)
			c->last_cr = p[k - 1] == '\r';
		c->line_len += k;
		c->hdr_len += k;
		if (nl == NULL)
			break;
		c->hdr_len++;
		if (c->line_len == 0 || (c->line_len == 1 && c->last_cr))
			c->phase = HDR_BODY;
		c->first_done = 1;
		c->line_len = 0;
		c->last_cr = 0;
		p += k + 1;
		n -= k + 1;
	}
	if (c->hdr_len > c->srv->max_header_size)
		c->hdr_over = 1;
}

/* Counts the bytes of b from offset from on. */
static void
hdr_scan_buffer(struct conn *c, struct evbuffer *b, size_t from)
{
	size_t len = evbuffer_get_length(b);

	while (from < len && c->phase == HDR_HEAD) {
		struct evbuffer_iovec v[4];
		struct evbuffer_ptr pos;
		int n;

		if (evbuffer_ptr_set(b, &pos, from, EVBUFFER_PTR_SET) != 0 ||
		    (n = evbuffer_peek(b, (ev_ssize_t)(len - from), &pos, v,
		    4)) <= 0)
			return;
		for (int i = 0; i < n && i < 4 && from < len; i++) {
			size_t k = v[i].iov_len < len - from ? v[i].iov_len :
			    len - from;

			hdr_scan(c, v[i].iov_base, k);
			from += k;
		}
	}
}

/* A request was dispatched: what follows it in the input is the next. */
void
sqc_http_hdr_restart(struct conn *c)
{
	if (c->incb == NULL || c->phase == HDR_OFF)
		return;
	c->phase = HDR_HEAD;
	c->hdr_len = c->line_len = c->first_len = 0;
	c->last_cr = c->hdr_over = c->first_done = 0;
	hdr_scan_buffer(c, bufferevent_get_input(c->bev), 0);
}

/*
 * After our 431: read and discard what the client still sends (closing
 * with unread input would reset the connection, and the client could
 * lose the answer), half-close once the answer is out, and free the
 * connection once the client is done and the answer out, or at an
 * error, evhttp's timeout, or past LINGER_MAX bytes.
 */
static void
linger_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	c->discarded += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (c->discarded > LINGER_MAX)
		evhttp_connection_free(c->evcon);
}

static void
linger_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->peer_eof)
		evhttp_connection_free(c->evcon);
	else
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
linger_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if ((what & BEV_EVENT_EOF) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		c->peer_eof = 1;	/* linger_write ends it */
		return;
	}
	evhttp_connection_free(c->evcon);
}

/*
 * The header section passed max_header_size: c's bufferevent becomes
 * ours, the input is dropped and the 431 goes out after anything evhttp
 * is still writing. evhttp frees its half-read request with the
 * connection.
 */
static void
hdr_refuse(struct conn *c)
{
	static const char body[] = "431 Request Header Fields Too Large\n";
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char *host = NULL, method[16], target[128];
	ev_uint16_t port;
	int n;

	c->phase = HDR_OFF;
	c->discarded = evbuffer_get_length(in);
	evbuffer_drain(in, c->discarded);
	bufferevent_setcb(c->bev, linger_read, linger_write, linger_event, c);
	evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 431 %s"
	    "\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    sqc_http_reason(431), sizeof(body) - 1, body);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evhttp_connection_get_peer(c->evcon, &host, &port);
	c->first[c->first_len] = '\0';
	n = sscanf(c->first, "%15s %127s", method, target);
	sqc_access_log(host ? host : "-", n >= 1 ? method : "-",
	    n >= 2 ? target : "-", 1, 1, 431, sizeof(body) - 1, NULL, NULL,
	    sqc_http_since_start(c), c->tls);
	sqc_log(SQ_LOG_DEBUG, NULL, "client %s: header section over "
	    "max_header_size (%zu): 431", host ? host : "-",
	    c->srv->max_header_size);
}

/* evbuffer callback on a connection's input: bytes came in or left. */
static void
hdr_input(struct evbuffer *in, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct conn *c = arg;

	if (info->n_added == 0 || c->phase == HDR_OFF)
		return;
	if (c->tls && !c->tls_counted)
		tls_account(c, 0);
	if (c->phase == HDR_HEAD)
		hdr_scan_buffer(c, in, evbuffer_get_length(in) -
		    info->n_added);
	if (c->hdr_over && c->evcon != NULL && c->req == NULL)
		hdr_refuse(c);
}

