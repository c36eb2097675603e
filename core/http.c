/*
 * http.c - the HTTP server: listening sockets, evhttp glue, the request
 * object plugins see (struct sq_req and the sq_req_* / sq_resp_*
 * functions), limits, the access log line, and abort notification when a
 * client leaves before its response. Loop thread only.
 *
 * Lifetimes: a struct sq_req wraps one evhttp_request and holds a
 * reference on its instance. It lives until the response is sent, or
 * until the client has gone and the plugin's abort callback has run.
 *
 * Connections are tracked (struct conn) from accept to close: evhttp
 * asks us for each accepted connection's bufferevent (evhttp_set_bevcb),
 * and a callback later in the same loop turn finds the evhttp_connection
 * that took it and sets its close callback. Every tracked connection, and
 * every WebSocket session handed over to ws_loop.c (sqc_http_conn_hold),
 * counts against max_connections: at the limit, and while accept() fails
 * for want of descriptors, the listeners are disabled (the kernel's
 * backlog holds new clients) rather than connections accepted and closed.
 * The same bufferevent lets us count the bytes of each request's header
 * section as they arrive, to answer 431 before evhttp answers 400 itself.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "core.h"

#define RETRY_MIN_MS	100	/* first rest after accept() fails */
#define RETRY_MAX_MS	1000	/* the rest doubles up to this */
#define QUIET_MS	1000	/* no failure this long: episode over */
#define LINGER_MAX	(1 << 20)	/* input discarded after our 431 */
#define LISTEN_BACKLOG	1024	/* clients waiting to be accepted */
/*
 * evhttp's own header limit, a backstop behind our 431 (which counts the
 * header bytes itself): this many times max_header_size, plus room.
 */
#define EVHTTP_HEADER_FACTOR	4
#define EVHTTP_HEADER_ROOM	4096

/* Where a connection's header counter is (see hdr_scan). */
enum hdr_phase {
	HDR_HEAD,	/* request line and headers: counted */
	HDR_BODY,	/* past the blank line, until dispatch */
	HDR_OFF		/* answered 431 ourselves: input discarded */
};

struct conn {
	struct evhttp_connection *evcon; /* NULL until attached */
	struct bufferevent *bev;	/* made in accepted(), or NULL */
	struct evbuffer_cb_entry *incb;	/* hdr_input on bev's input */
	struct sqc_server *srv;
	struct sq_req	*req;		/* pending request, or NULL */
	struct event	*watch;		/* EOF watch while req is pending */
	LIST_ENTRY(conn) link;		/* in conns, or pending */
	enum hdr_phase	 phase;
	size_t		 hdr_len;	/* bytes of the header section */
	size_t		 line_len;	/* bytes of its current line */
	int		 last_cr;	/* that line ends in CR so far */
	int		 hdr_over;	/* past max_header_size */
	int		 first_done;	/* the request line has ended */
	struct timespec	 t0;		/* the request's first bytes came */
	size_t		 first_len;
	char		 first[128];	/* start of the request line */
	size_t		 discarded;	/* HDR_OFF: input dropped */
	int		 peer_eof;	/* HDR_OFF: the client is done */
};

struct listener {
	struct evhttp_bound_socket *b;
	char		 host[INET6_ADDRSTRLEN];
	int		 port;		/* as configured (or -p) */
	int		 actual;	/* as bound: port 0 picks one */
	int		 keep;		/* while matching a new config */
};

struct sq_req {
	struct evhttp_request *ev;	/* NULL once the client is gone */
	struct sqc_server *srv;
	struct conn	*conn;
	struct sq_inst	*inst;
	char		*path;
	const char	*subpath;
	struct evkeyvalq args;
	int		 args_parsed;
	char		*body;
	size_t		 body_len;
	char		 client[INET6_ADDRSTRLEN];
	void		(*abort_cb)(struct sq_req *, void *);
	void		*abort_arg;
	int		 in_abort;	/* inside the abort callback */
	LIST_ENTRY(sq_req) link;	/* in inflight */
};

struct sqc_server {
	struct event_base *base;
	struct evhttp	*http;
	struct sqc_gen	*gen;		/* borrowed: main.c owns it */
	size_t		 max_header_size;
	size_t		 max_connections;
	int		 xheaders;
	const struct sqc_cidr *trusted;	/* borrowed from the config */
	int		 ntrusted;
	struct listener	*bound;
	size_t		 nbound;
	char		 origin[INET6_ADDRSTRLEN + 16];	/* first address */
	struct sq_req	*dispatching;	/* inside .handle, not yet answered */
	int		 reuseport;	/* workers share addresses */
	int		 stopping;
	int		 accepting;	/* listeners enabled */
	int		 full;		/* max_connections reached */
	long		 unfull_ms;	/* when it was last left */
	int		 starved;	/* accept() failed: resting */
	int		 starved_logged; /* once per episode */
	long		 retry_ms;	/* the next rest */
	long		 failed_ms;	/* when accept() last failed */
	struct event	*retry_ev;	/* ends the rest */

	LIST_HEAD(, sq_req) inflight;
	size_t		 ninflight;

	struct sqc_idmap by_evcon;	/* the conns */
	LIST_HEAD(, conn) conns;	/* attached to their evcon */
	size_t		 nconns;
	LIST_HEAD(, conn) pending;	/* accepted, evcon not known yet */
	size_t		 npending;
	struct event	*attach_ev;	/* runs attach() */
	size_t		 nws;		/* WebSocket sessions held */
};

/*
 * The server of this process (there is one): the WebSocket bridge and the
 * listeners' error callback, which get no pointer to it, reach it here.
 */
static struct sqc_server *current;

static const char *reason_phrase(int status);
static void req_gone(struct sq_req *req);
static long long since_start(const struct conn *c);
static void hdr_input(struct evbuffer *in,
    const struct evbuffer_cb_info *info, void *arg);

/* ---- connections ----------------------------------------------------- */

static struct conn *
conn_find(struct sqc_server *s, struct evhttp_connection *evcon)
{
	return sqc_idmap_get(&s->by_evcon, (uintptr_t)evcon);
}

/* Connections that count against max_connections. */
static size_t
conns_open(const struct sqc_server *s)
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
static void
update_accepting(struct sqc_server *s)
{
	int full = conns_open(s) >= s->max_connections;
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
static void
accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct sqc_server *s = arg;

	s->starved = 0;
	update_accepting(s);
}

/* A connection closed: a descriptor is free, no need to rest longer. */
static void
fd_freed(struct sqc_server *s)
{
	if (s->starved) {
		s->starved = 0;
		evtimer_del(s->retry_ev);
	}
	update_accepting(s);
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
static void
accept_failed(struct evconnlistener *l, void *arg)
{
	struct sqc_server *s = current;
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
	update_accepting(s);
}

/* evhttp is freeing the connection: the client left or it timed out. */
static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	struct sqc_server *s = c->srv;

	if (c->req)
		req_gone(c->req);
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

/* Forgets a connection accepted() made that was never attached. */
static void
conn_drop(struct conn *c)
{
	if (c->incb)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev),
		    c->incb);
	bufferevent_decref(c->bev);
	free(c);
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
static void
attach(evutil_socket_t fd, short what, void *arg)
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
			conn_drop(c);
			continue;
		}
		bufferevent_decref(c->bev);	/* evhttp's from now */
	}
	update_accepting(s);
}

/*
 * evhttp_set_bevcb: evhttp has accepted a connection and asks for its
 * bufferevent. We make it as evhttp would, count the connection from
 * now on, watch its input for the header limit, and let attach() find
 * its evhttp_connection once evhttp has made it.
 */
static struct bufferevent *
accepted(struct event_base *base, void *arg)
{
	struct sqc_server *s = arg;
	struct bufferevent *bev;
	struct conn *c;

	s->retry_ms = RETRY_MIN_MS;
	if (s->starved_logged && now_ms() - s->failed_ms >= QUIET_MS) {
		sqc_log(SQ_LOG_INFO, NULL, "accepting connections again");
		s->starved_logged = 0;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((bev = bufferevent_socket_new(base, -1, 0)) == NULL) {
		free(c);
		return NULL;
	}
	bufferevent_incref(bev);
	c->bev = bev;
	c->srv = s;
	c->incb = evbuffer_add_cb(bufferevent_get_input(bev), hdr_input, c);
	LIST_INSERT_HEAD(&s->pending, c, link);
	s->npending++;
	event_active(s->attach_ev, EV_TIMEOUT, 0);
	update_accepting(s);
	return bev;
}

static struct conn *
conn_get(struct sqc_server *s, struct evhttp_connection *evcon)
{
	struct conn *c;

	if (!LIST_EMPTY(&s->pending))
		attach(-1, 0, s);
	if ((c = conn_find(s, evcon)) != NULL)
		return c;
	/* not seen at accept (out of memory then): tracked from now */
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->srv = s;
	if (conn_insert(s, c, evcon) != 0) {
		free(c);
		return NULL;
	}
	update_accepting(s);
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
	if (current == NULL)
		return;
	current->nws++;
	update_accepting(current);
}

/* The session of a sqc_http_conn_hold has ended (loop thread). */
void
sqc_http_conn_release(void)
{
	if (current == NULL || current->nws == 0)
		return;
	current->nws--;
	fd_freed(current);
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
static void
hdr_restart(struct conn *c)
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
	    reason_phrase(431), sizeof(body) - 1, body);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	evhttp_connection_get_peer(c->evcon, &host, &port);
	c->first[c->first_len] = '\0';
	n = sscanf(c->first, "%15s %127s", method, target);
	sqc_access_log(host ? host : "-", n >= 1 ? method : "-",
	    n >= 2 ? target : "-", 1, 1, 431, sizeof(body) - 1, NULL, NULL,
	    since_start(c));
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
	if (c->phase == HDR_HEAD)
		hdr_scan_buffer(c, in, evbuffer_get_length(in) -
		    info->n_added);
	if (c->hdr_over && c->evcon != NULL && c->req == NULL)
		hdr_refuse(c);
}

/* ---- requests -------------------------------------------------------- */

static const char *
method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:		return "GET";
	case EVHTTP_REQ_POST:		return "POST";
	case EVHTTP_REQ_HEAD:		return "HEAD";
	case EVHTTP_REQ_PUT:		return "PUT";
	case EVHTTP_REQ_DELETE:		return "DELETE";
	case EVHTTP_REQ_OPTIONS:	return "OPTIONS";
	case EVHTTP_REQ_TRACE:		return "TRACE";
	case EVHTTP_REQ_CONNECT:	return "CONNECT";
	case EVHTTP_REQ_PATCH:		return "PATCH";
	}
	return "?";
}

/*
 * The client's address: the peer's, or with xheaders on and a trusted
 * peer (a proxy such as nginx), X-Real-IP or else the last address of
 * X-Forwarded-For, when it is a valid address.
 */
static void
client_addr(const struct sqc_server *s, struct evhttp_request *ev,
    char *out, size_t len)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	const char *real_ip = NULL, *forwarded = NULL;
	char *host = NULL;
	ev_uint16_t port;

	if (evcon)
		evhttp_connection_get_peer(evcon, &host, &port);
	if (s->xheaders) {
		real_ip = evhttp_find_header(h, "X-Real-IP");
		forwarded = evhttp_find_header(h, "X-Forwarded-For");
	}
	sqc_client_addr(host, real_ip, forwarded, s->xheaders, s->trusted,
	    s->ntrusted, out, len);
}

/* Microseconds since c's request began, or -1 when unknown. */
static long long
since_start(const struct conn *c)
{
	struct timespec now;

	if (c == NULL || (c->t0.tv_sec == 0 && c->t0.tv_nsec == 0))
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - c->t0.tv_sec) * 1000000 +
	    (now.tv_nsec - c->t0.tv_nsec) / 1000;
}

/* One access log line for ev (the WebSocket hand-over logs its 101). */
void
sqc_http_log_access(struct evhttp_request *ev, const char *client,
    int status, size_t bytes)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	const char *uri = evhttp_request_get_uri(ev);

	sqc_counters.requests[status >= 100 && status < 600 ?
	    status / 100 : 0]++;
	if (!sqc_access_log_on())
		return;
	sqc_access_log(client, method_name(evhttp_request_get_command(ev)),
	    uri ? uri : "-", ev->major, ev->minor, status, bytes,
	    evhttp_find_header(h, "Referer"),
	    evhttp_find_header(h, "User-Agent"), current && evcon ?
	    since_start(conn_find(current, evcon)) : -1);
}

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	/* a status of the plugin's own: its class */
	switch (status / 100) {
	case 1: return "Informational";
	case 2: return "Success";
	case 3: return "Redirection";
	case 4: return "Client Error";
	default: return "Server Error";
	}
}

/*
 * A HEAD answer says how long the GET one's body is, and has none:
 * evhttp 2.1 leaves Content-Length out for HEAD but would send a body it
 * is given. Returns 1 for HEAD: the caller then sends no body.
 */
static int
head_only(struct evhttp_request *ev, size_t len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	char n[32];

	if (evhttp_request_get_command(ev) != EVHTTP_REQ_HEAD)
		return 0;
	if (evhttp_find_header(out, "Content-Length") == NULL) {
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(out, "Content-Length", n);
	}
	return 1;
}

/* Answers a request that never reached a plugin. */
static void
reply_plain(const struct sqc_server *s, struct evhttp_request *ev,
    int status, const char *extra_hdr, const char *extra_val)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	char client[INET6_ADDRSTRLEN];
	size_t len;

	client_addr(s, ev, client, sizeof(client));
	evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
	if (extra_hdr)
		evhttp_add_header(out, extra_hdr, extra_val);
	if (b)
		evbuffer_add_printf(b, "%d %s\n", status, reason_phrase(status));
	len = b ? evbuffer_get_length(b) : 0;
	if (head_only(ev, len))
		len = 0;
	sqc_http_log_access(ev, client, status, len);
	evhttp_send_reply(ev, status, reason_phrase(status), len ? b : NULL);
	if (b)
		evbuffer_free(b);
}

static size_t
headers_size(struct evhttp_request *ev)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	const char *uri = evhttp_request_get_uri(ev);
	struct evkeyval *kv;
	size_t n = uri ? strlen(uri) + 16 : 16;

	TAILQ_FOREACH(kv, h, next)
		n += strlen(kv->key) + strlen(kv->value) + 4;
	return n;
}

static int
is_upgrade(struct evhttp_request *ev)
{
	const char *u;

	u = evhttp_find_header(evhttp_request_get_input_headers(ev),
	    "Upgrade");
	return u && strcasecmp(u, "websocket") == 0;
}

static void
req_free(struct sq_req *req)
{
	struct sqc_server *s = req->srv;

	LIST_REMOVE(req, link);
	s->ninflight--;
	if (s->dispatching == req)
		s->dispatching = NULL;
	if (req->conn) {
		req->conn->req = NULL;
		if (req->conn->watch)
			event_del(req->conn->watch);
	}
	if (req->args_parsed)
		evhttp_clear_headers(&req->args);
	sqc_inst_unref(req->inst);
	free(req->body);
	free(req->path);
	free(req);
}

/*
 * The client left before the response. evhttp has either detached the
 * request (we must free it) or is about to free it with the connection.
 * With an abort callback, the plugin hears of it and req ends here;
 * without one, req lives on until the plugin responds (a no-op send).
 */
static void
req_gone(struct sq_req *req)
{
	struct evhttp_request *ev = req->ev;

	req->ev = NULL;
	req->conn = NULL;
	if (ev) {
		/* nginx's 499: the client closed the connection */
		sqc_http_log_access(ev, req->client, 499, 0);
		if (evhttp_request_get_connection(ev) == NULL)
			evhttp_request_free(ev);
	}
	sqc_log(SQ_LOG_DEBUG, sq_inst_route(req->inst), "client %s left before the "
	    "response", req->client);
	if (req->abort_cb) {
		struct sq_inst *prev = sqc_inst_enter(req->inst);

		req->in_abort = 1;
		req->abort_cb(req, req->abort_arg);
		sqc_inst_leave(prev);
		req_free(req);
	}
}

/*
 * While a request waits for its plugin, evhttp does not read from the
 * connection, so it would not notice the client leaving. A read event
 * of our own peeks: end of stream or an error means the client is gone,
 * and freeing the connection runs conn_closed, which aborts the request.
 * Bytes (a pipelined request) end the watch: evhttp reads them later.
 */
static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char byte;
	ssize_t n;

	n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		event_del(c->watch);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	evhttp_connection_free(c->evcon);
}

static void
watch_start(struct conn *c)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

	if (fd < 0)
		return;
	if (c->watch == NULL &&
	    (c->watch = event_new(c->srv->base, fd, EV_READ | EV_PERSIST,
	    watch_cb, c)) == NULL)
		return;
	event_add(c->watch, NULL);
}

/*
 * A request's body framing must be unambiguous, or a proxy in front of
 * us may have taken another body, and the bytes after it for another
 * request (request smuggling). evhttp 2.1 takes the first Content-Length
 * and ignores the others, lets strtoll accept "+5", reads the body as
 * chunked when the first Transfer-Encoding is "chunked" whatever
 * Content-Length says, and ignores other codings. Refused, as nginx
 * does: Content-Lengths that differ or are not digits, Transfer-Encoding
 * twice or with a Content-Length (400), a coding other than chunked
 * (501), and a header name that is not a token (400). Returns 0 or the status; the connection closes after it, since
 * what follows in it cannot be trusted.
 */
#define TCHARS	"!#$%&'*+-.^_`|~0123456789" \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

static int
framing_status(struct evhttp_request *ev)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	const char *cl = NULL, *te = NULL;
	struct evkeyval *kv;
	int nte = 0;

	TAILQ_FOREACH(kv, h, next) {
		const char *v = kv->value;

		/*
		 * evhttp cuts a header line at its first colon and keeps
		 * the name as sent: "Content-Length : 5" is a header named
		 * "Content-Length ", which nobody uses, so its body would
		 * be read as the next request. A name must be a token (RFC
		 * 7230 3.2.6); whitespace before the colon gets 400 (3.2.4).
		 */
		if (kv->key[0] == '\0' || kv->key[strspn(kv->key, TCHARS)] !=
		    '\0')
			return 400;
		if (strcasecmp(kv->key, "Content-Length") == 0) {
			if (v[0] == '\0' || v[strspn(v, "0123456789")] != '\0' ||
			    (cl != NULL && strcmp(cl, v) != 0))
				return 400;
			cl = v;
		} else if (strcasecmp(kv->key, "Transfer-Encoding") == 0) {
			te = v;
			nte++;
		}
	}
	if (te == NULL)
		return 0;
	if (nte > 1 || cl != NULL)
		return 400;
	return strcasecmp(te, "chunked") == 0 ? 0 : 501;
}

static void
dispatch(struct evhttp_request *ev, void *arg)
{
	struct sqc_server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct conn *c = evcon ? conn_get(s, evcon) : NULL;
	const char *raw, *rest;
	struct sq_inst *inst;
	struct sq_req *req;
	char *path;
	int status;

	if (c)
		hdr_restart(c);
	if ((status = framing_status(ev)) != 0) {
		char client[INET6_ADDRSTRLEN];

		client_addr(s, ev, client, sizeof(client));
		sqc_log(SQ_LOG_DEBUG, NULL, "client %s: header name, "
		    "Content-Length or Transfer-Encoding refused: %d", client,
		    status);
		reply_plain(s, ev, status, "Connection", "close");
		return;
	}
	if (s->stopping) {
		reply_plain(s, ev, 503, "Connection", "close");
		return;
	}
	if (headers_size(ev) > s->max_header_size) {
		reply_plain(s, ev, 431, "Connection", "close");
		return;
	}
	raw = uri ? evhttp_uri_get_path(uri) : NULL;
	if (raw == NULL || *raw != '/' || (path = strdup(raw)) == NULL) {
		reply_plain(s, ev, 400, "Connection", "close");
		return;
	}
	if (sqc_path_normalize(path) != 0) {
		free(path);
		reply_plain(s, ev, 400, NULL, NULL);
		return;
	}
	if (s->gen == NULL ||
	    (inst = sqc_gen_route(s->gen, path, &rest)) == NULL) {
		free(path);
		reply_plain(s, ev, 404, NULL, NULL);
		return;
	}
	if (is_upgrade(ev)) {
		char client[INET6_ADDRSTRLEN];

		free(path);
		if (!sqc_inst_handles_ws(inst)) {
			reply_plain(s, ev, 400, NULL, NULL);
			return;
		}
		client_addr(s, ev, client, sizeof(client));
		/* accepted: ev now belongs to the WebSocket hand-over */
		if (sqc_ws_upgrade(ev, inst, client,
		    sqc_gen_ws_deflate(s->gen, inst), &status) != 0)
			reply_plain(s, ev, status, status == 426 ?
			    "Sec-WebSocket-Version" : NULL, "13");
		return;
	}
	if (!sqc_inst_handles_http(inst)) {
		free(path);
		reply_plain(s, ev, 400, NULL, NULL);
		return;
	}
	if ((req = calloc(1, sizeof(*req))) == NULL) {
		free(path);
		reply_plain(s, ev, 503, NULL, NULL);
		return;
	}
	req->ev = ev;
	req->srv = s;
	req->path = path;
	req->subpath = rest;
	req->inst = inst;
	sqc_inst_ref(inst);
	client_addr(s, ev, req->client, sizeof(req->client));
	LIST_INSERT_HEAD(&s->inflight, req, link);
	s->ninflight++;
	if ((req->conn = c) != NULL)
		c->req = req;
	s->dispatching = req;
	sqc_call_handle(inst, req);
	if (s->dispatching == req) {
		/* answered later: notice if the client leaves meanwhile */
		s->dispatching = NULL;
		if (req->conn)
			watch_start(req->conn);
	}
}

/* ---- the plugin-facing request API ----------------------------------- */

const char *
sq_req_method(struct sq_req *req)
{
	return req->ev ? method_name(evhttp_request_get_command(req->ev)) : "";
}

const char *
sq_req_path(struct sq_req *req)
{
	return req->path;
}

const char *
sq_req_subpath(struct sq_req *req)
{
	return req->subpath;
}

const char *
sq_req_query(struct sq_req *req)
{
	const struct evhttp_uri *u;
	const char *q;

	if (req->ev == NULL)
		return "";
	u = evhttp_request_get_evhttp_uri(req->ev);
	q = u ? evhttp_uri_get_query(u) : NULL;
	return q ? q : "";
}

const char *
sq_req_arg(struct sq_req *req, const char *name)
{
	if (!req->args_parsed) {
		TAILQ_INIT(&req->args);
		req->args_parsed = 1;
		evhttp_parse_query_str(sq_req_query(req), &req->args);
	}
	return evhttp_find_header(&req->args, name);
}

const char *
sq_req_header(struct sq_req *req, const char *name)
{
	if (req->ev == NULL)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev),
	    name);
}

const void *
sq_req_body(struct sq_req *req, size_t *len)
{
	struct evbuffer *b;

	if (req->body == NULL && req->ev) {
		b = evhttp_request_get_input_buffer(req->ev);
		req->body_len = evbuffer_get_length(b);
		if ((req->body = malloc(req->body_len + 1)) == NULL)
			req->body_len = 0;
		else {
			evbuffer_copyout(b, req->body, req->body_len);
			req->body[req->body_len] = '\0';
		}
	}
	if (len)
		*len = req->body_len;
	return req->body ? req->body : "";
}

const char *
sq_req_client_ip(struct sq_req *req)
{
	return req->client;
}

struct sq_inst *
sq_req_inst(struct sq_req *req)
{
	return req->inst;
}

void
sq_req_on_abort(struct sq_req *req, void (*cb)(struct sq_req *, void *),
    void *arg)
{
	req->abort_cb = cb;
	req->abort_arg = arg;
}

int
sq_resp_header(struct sq_req *req, const char *name, const char *value)
{
	if (req->ev == NULL)
		return 0;
	if (evhttp_add_header(evhttp_request_get_output_headers(req->ev),
	    name, value) != 0)
		return -EINVAL;
	return 0;
}

/* Sends the reply with buf as its body (NULL: none) and ends req. */
static int
finish(struct sq_req *req, int status, struct evbuffer *buf)
{
	size_t bytes = buf ? evbuffer_get_length(buf) : 0;

	if (req->in_abort)
		return 0;	/* the caller ends req after the callback */
	if (req->ev) {
		struct evkeyvalq *out;

		out = evhttp_request_get_output_headers(req->ev);
		if (evhttp_find_header(out, "Content-Type") == NULL)
			evhttp_add_header(out, "Content-Type",
			    "text/plain; charset=utf-8");
		if (head_only(req->ev, bytes)) {
			bytes = 0;
			buf = NULL;
		}
		sqc_http_log_access(req->ev, req->client, status, bytes);
		evhttp_send_reply(req->ev, status, reason_phrase(status), buf);
		req->ev = NULL;
	}
	req_free(req);
	return 0;
}

int
sq_resp_send(struct sq_req *req, int status, const void *body, size_t len)
{
	struct evbuffer *b;
	int rc;

	if (status < 100 || status > 999)
		status = 500;
	if (req->ev == NULL || len == 0)
		return finish(req, status, NULL);
	if ((b = evbuffer_new()) == NULL || evbuffer_add(b, body, len) != 0) {
		if (b)
			evbuffer_free(b);
		finish(req, 500, NULL);
		return -ENOMEM;
	}
	rc = finish(req, status, b);
	evbuffer_free(b);
	return rc;
}

int
sq_resp_printf(struct sq_req *req, int status, const char *fmt, ...)
{
	char *s;
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sq_resp_send(req, 500, NULL, 0);
		return -ENOMEM;
	}
	rc = sq_resp_send(req, status, s, (size_t)n);
	free(s);
	return rc;
}

int
sq_resp_json(struct sq_req *req, int status, struct json_object *obj)
{
	const char *s;
	size_t len;

	s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len);
	if (s == NULL)
		return sq_resp_send(req, 500, NULL, 0);
	if (req->ev && evhttp_find_header(evhttp_request_get_output_headers(
	    req->ev), "Content-Type") == NULL)
		sq_resp_header(req, "Content-Type", "application/json");
	return sq_resp_send(req, status, s, len);
}

int
sq_resp_file_take(struct sq_req *req, int status, int fd, int64_t offset,
    int64_t len)
{
	struct evbuffer *b;
	int rc;

	if (req->ev == NULL || len <= 0) {
		close(fd);
		return finish(req, status, NULL);
	}
	if ((b = evbuffer_new()) == NULL) {
		close(fd);
		finish(req, 500, NULL);
		return -ENOMEM;
	}
	/* evbuffer_add_file owns fd from here, even on failure */
	if (evbuffer_add_file(b, fd, offset, len) != 0) {
		evbuffer_free(b);
		finish(req, 500, NULL);
		return -EIO;
	}
	rc = finish(req, status, b);
	evbuffer_free(b);
	return rc;
}

int
sq_resp_error(struct sq_req *req, int status)
{
	return sq_resp_printf(req, status, "%d %s\n", status,
	    reason_phrase(status));
}

/* ---- the server ------------------------------------------------------ */

/* libevent's own messages, into our log (any thread). */
static void
libevent_log(int severity, const char *msg)
{
	enum sq_log_level level;

	switch (severity) {
	case EVENT_LOG_DEBUG:
		level = SQ_LOG_DEBUG;
		break;
	case EVENT_LOG_MSG:
		level = SQ_LOG_INFO;
		break;
	case EVENT_LOG_WARN:
		level = SQ_LOG_WARN;
		break;
	default:
		level = SQ_LOG_ERROR;
		break;
	}
	sqc_log(level, "libevent", "%s", msg);
}

/*
 * Creates the evhttp server on base; listening comes later. With
 * reuseport, sockets are bound with SO_REUSEPORT, so that several workers
 * listen on one address and the kernel spreads the connections. One per
 * process: it also routes libevent's log lines into ours.
 */
struct sqc_server *
sqc_http_new(struct event_base *base, int reuseport)
{
	struct sqc_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->reuseport = reuseport;
	s->accepting = 1;
	s->retry_ms = RETRY_MIN_MS;
	if ((s->http = evhttp_new(base)) == NULL ||
	    (s->attach_ev = event_new(base, -1, 0, attach, s)) == NULL ||
	    (s->retry_ev = evtimer_new(base, accept_retry, s)) == NULL) {
		if (s->attach_ev)
			event_free(s->attach_ev);
		if (s->http)
			evhttp_free(s->http);
		free(s);
		return NULL;
	}
	event_set_log_callback(libevent_log);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, dispatch, s);
	evhttp_set_bevcb(s->http, accepted, s);
	current = s;
	return s;
}

static int
bind_one(struct sqc_server *s, const struct sqc_listen *l, int port,
    char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct evhttp_bound_socket *b;
	struct listener *nb;
	socklen_t sl;
	char name[INET6_ADDRSTRLEN + 8];
	int fd, one = 1, v6 = strchr(l->host, ':') != NULL;

	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, l->host, &a->sin6_addr);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, l->host, &a->sin_addr);
		sl = sizeof(*a);
	}
	snprintf(name, sizeof(name), v6 ? "[%s]:%d" : "%s:%d", l->host, port);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", name,
		    strerror(errno));
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0) {
		int e = errno;

		snprintf(err, errlen, "cannot listen on %s: %s", name,
		    strerror(e));
		close(fd);
		return -e;
	}
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		sl = 0;
	nb = realloc(s->bound, (s->nbound + 1) * sizeof(*nb));
	if (nb == NULL ||
	    (b = evhttp_accept_socket_with_handle(s->http, fd)) == NULL) {
		s->bound = nb ? nb : s->bound;
		snprintf(err, errlen, "cannot listen on %s: out of memory",
		    name);
		close(fd);
		return -ENOMEM;
	}
	s->bound = nb;
	nb = &s->bound[s->nbound++];
	nb->b = b;
	snprintf(nb->host, sizeof(nb->host), "%s", l->host);
	nb->port = port;
	nb->actual = sl == 0 ? port : ntohs(v6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	nb->keep = 1;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(b),
	    accept_failed);
	if (!s->accepting)
		evconnlistener_disable(evhttp_bound_socket_get_listener(b));
	sqc_log(SQ_LOG_INFO, NULL, v6 ? "listening on [%s]:%d" :
	    "listening on %s:%d", l->host, nb->actual);
	return 0;
}

/* Closes the listeners whose keep flag is clear and packs the array. */
static void
drop_unkept(struct sqc_server *s, int log)
{
	size_t j = 0;

	for (size_t i = 0; i < s->nbound; i++) {
		struct listener *l = &s->bound[i];

		if (l->keep) {
			s->bound[j++] = *l;
			continue;
		}
		if (log)
			sqc_log(SQ_LOG_INFO, NULL, strchr(l->host, ':') ?
			    "no longer listening on [%s]:%d" :
			    "no longer listening on %s:%d", l->host, l->actual);
		evhttp_del_accept_socket(s->http, l->b);
	}
	s->nbound = j;
}

/*
 * Makes the listening sockets those of c (with port_override when > 0):
 * addresses already bound stay as they are, new ones are bound, and the
 * ones c no longer names are closed. All or nothing: when an address
 * cannot be bound, err names it, the sockets this call bound are closed
 * and the listeners are as they were.
 */
int
sqc_http_listen(struct sqc_server *s, const struct sqc_config *c,
    int port_override, char *err, size_t errlen)
{
	size_t before = s->nbound, first = 0;

	for (size_t i = 0; i < s->nbound; i++)
		s->bound[i].keep = 0;
	for (size_t i = 0; i < c->nlisten; i++) {
		int port = port_override > 0 ? port_override :
		    c->listen[i].port;
		size_t j;

		for (j = 0; j < before; j++)
			if (!s->bound[j].keep && s->bound[j].port == port &&
			    strcmp(s->bound[j].host, c->listen[i].host) == 0)
				break;
		if (j < before) {
			s->bound[j].keep = 1;
		} else {
			int rc = bind_one(s, &c->listen[i], port, err, errlen);

			if (rc != 0) {
				for (size_t k = 0; k < s->nbound; k++)
					s->bound[k].keep = k < before;
				drop_unkept(s, 0);
				return rc;
			}
			j = s->nbound - 1;
		}
		if (i == 0)
			first = j;
	}
	snprintf(s->origin, sizeof(s->origin), strchr(s->bound[first].host,
	    ':') ? "http://[%s]:%d" : "http://%s:%d", s->bound[first].host,
	    s->bound[first].actual);
	drop_unkept(s, 1);
	return 0;
}

/* Takes the limits of c and routes requests to gen from now on. */
void
sqc_http_apply(struct sqc_server *s, const struct sqc_config *c,
    struct sqc_gen *gen)
{
	s->gen = gen;
	s->max_header_size = c->max_header_size;
	s->max_connections = (size_t)c->max_connections;
	s->xheaders = c->xheaders;
	s->trusted = c->trusted;
	s->ntrusted = c->ntrusted;
	/*
	 * Ours answers 431 (hdr_scan, and dispatch for what it missed);
	 * evhttp's, higher, would answer 400: a backstop.
	 */
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)
	    (c->max_header_size * EVHTTP_HEADER_FACTOR + EVHTTP_HEADER_ROOM));
	evhttp_set_max_body_size(s->http, (ev_ssize_t)c->max_body_size);
	evhttp_set_timeout(s->http, (int)c->request_timeout);
	update_accepting(s);
}

/* Closes the listening sockets; open connections carry on. */
void
sqc_http_stop_accepting(struct sqc_server *s)
{
	s->stopping = 1;
	s->accepting = 0;
	evtimer_del(s->retry_ev);
	for (size_t i = 0; i < s->nbound; i++)
		s->bound[i].keep = 0;
	drop_unkept(s, 0);
}

/* "http://ADDRESS:PORT" of the first listening address. */
const char *
sqc_http_origin(const struct sqc_server *s)
{
	return s->origin;
}

/* Requests accepted and not yet answered (or aborted). */
/* Connections open now: HTTP ones and handed-over WebSocket sessions. */
size_t
sqc_http_connections(const struct sqc_server *s)
{
	return conns_open(s);
}

size_t
sqc_http_inflight(const struct sqc_server *s)
{
	return s->ninflight;
}

/* Connections whose response is still being written. */
size_t
sqc_http_unflushed(const struct sqc_server *s)
{
	const struct conn *c;
	size_t n = 0;

	LIST_FOREACH(c, &s->conns, link) {
		struct bufferevent *bev;

		bev = evhttp_connection_get_bufferevent(c->evcon);
		if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > 0)
			n++;
	}
	return n;
}

/* Ends every pending request (at shutdown, once the grace time is over). */
void
sqc_http_abort_all(struct sqc_server *s)
{
	struct sq_req *req;

	while ((req = LIST_FIRST(&s->inflight)) != NULL) {
		if (req->abort_cb) {
			req->in_abort = 1;
			req->abort_cb(req, req->abort_arg);
			req->in_abort = 0;
		}
		finish(req, 503, NULL);
	}
}

/* At exit: ends pending requests, closes every connection. */
void
sqc_http_free(struct sqc_server *s)
{
	if (s == NULL)
		return;
	sqc_http_abort_all(s);
	s->stopping = 1;
	s->nbound = 0;		/* evhttp_free closes the listeners */
	evhttp_free(s->http);
	while (!LIST_EMPTY(&s->pending)) {
		struct conn *c = LIST_FIRST(&s->pending);

		LIST_REMOVE(c, link);
		conn_drop(c);
	}
	event_free(s->attach_ev);
	event_free(s->retry_ev);
	if (current == s)
		current = NULL;
	free(s->bound);
	sqc_idmap_free(&s->by_evcon);
	free(s);
}
