/*
 * http.c - the HTTP server: its listeners (bound, kept or dropped across
 * a reload, SO_REUSEPORT for workers, plain or TLS), evhttp's set-up and
 * limits, and the server's numbers and shutdown. Connections are http_conn.c's,
 * requests http_req.c's, answers http_resp.c's; http.h is what the four
 * share. Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "core.h"
#include "http.h"

#define LISTEN_BACKLOG	1024	/* clients waiting to be accepted */
/*
 * evhttp's own header limit, a backstop behind our 431 (which counts the
 * header bytes itself): this many times max_header_size, plus room.
 */
#define EVHTTP_HEADER_FACTOR	4
#define EVHTTP_HEADER_ROOM	4096

struct sqc_server *sqc_http_current;

/* The HTTP server, as the WebSocket bridge sees it (see core.h). */
const struct sqc_ws_host *
sqc_http_ws_host(void)
{
	static const struct sqc_ws_host host = { sqc_http_conn_hold,
	    sqc_http_conn_release, sqc_http_log_access };

	return &host;
}

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

/* One of the server's two evhttp, plain or TLS, set up alike. */
static struct evhttp *
new_evhttp(struct sqc_server *s,
    struct bufferevent *(*accepted)(struct event_base *, void *))
{
	struct evhttp *h = evhttp_new(s->base);

	if (h == NULL)
		return NULL;
	evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h, sqc_http_dispatch, s);
	evhttp_set_bevcb(h, accepted, s);
	return h;
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
	if ((s->http = new_evhttp(s, sqc_http_accepted)) == NULL ||
	    (s->https = new_evhttp(s, sqc_http_accepted_tls)) == NULL ||
	    (s->attach_ev = event_new(base, -1, 0, sqc_http_attach,
	    s)) == NULL ||
	    (s->retry_ev = evtimer_new(base, sqc_http_accept_retry,
	    s)) == NULL) {
		if (s->attach_ev)
			event_free(s->attach_ev);
		if (s->https)
			evhttp_free(s->https);
		if (s->http)
			evhttp_free(s->http);
		free(s);
		return NULL;
	}
	event_set_log_callback(libevent_log);
	sqc_http_current = s;
	return s;
}

/*
 * The TLS settings new connections to the TLS listeners get from now on
 * (NULL when there are none); the server owns t, and frees the old ones.
 * Connections already open keep theirs.
 */
void
sqc_http_set_tls(struct sqc_server *s, struct sqc_tls *t)
{
	sqc_tls_free(s->tls);
	s->tls = t;
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
	if (nb == NULL || (b = evhttp_accept_socket_with_handle(l->tls ?
	    s->https : s->http, fd)) == NULL) {
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
	nb->tls = l->tls;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(b),
	    sqc_http_accept_failed);
	if (!s->accepting)
		evconnlistener_disable(evhttp_bound_socket_get_listener(b));
	sqc_log(SQ_LOG_INFO, NULL, v6 ? "listening on [%s]:%d%s" :
	    "listening on %s:%d%s", l->host, nb->actual, l->tls ? " (tls)" :
	    "");
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
		evhttp_del_accept_socket(l->tls ? s->https : s->http, l->b);
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
			    s->bound[j].tls == c->listen[i].tls &&
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
		/* the first plain listener, or the first of all */
		if (i == 0 || (s->bound[first].tls && !c->listen[i].tls))
			first = j;
	}
	snprintf(s->origin, sizeof(s->origin), strchr(s->bound[first].host,
	    ':') ? "%s://[%s]:%d" : "%s://%s:%d", s->bound[first].tls ?
	    "https" : "http", s->bound[first].host, s->bound[first].actual);
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
	for (int i = 0; i < 2; i++) {
		struct evhttp *h = i ? s->https : s->http;

		evhttp_set_max_headers_size(h, (ev_ssize_t)
		    (c->max_header_size * EVHTTP_HEADER_FACTOR +
		    EVHTTP_HEADER_ROOM));
		evhttp_set_max_body_size(h, (ev_ssize_t)c->max_body_size);
		evhttp_set_timeout(h, (int)c->request_timeout);
	}
	sqc_http_update_accepting(s);
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

/*
 * "http://ADDRESS:PORT" of the first plain listening address, or
 * "https://..." of the first when all are TLS.
 */
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
	return sqc_http_conns_open(s);
}

/* Connections open on the TLS listeners (before any hand-over). */
size_t
sqc_http_tls_connections(const struct sqc_server *s)
{
	return s->ntls;
}

/* Requests dispatched and not yet answered (or aborted). */
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
		sqc_http_finish(req, 503, NULL);
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
	evhttp_free(s->https);
	while (!LIST_EMPTY(&s->pending)) {
		struct conn *c = LIST_FIRST(&s->pending);

		LIST_REMOVE(c, link);
		sqc_http_conn_drop(c);
	}
	event_free(s->attach_ev);
	event_free(s->retry_ev);
	if (sqc_http_current == s)
		sqc_http_current = NULL;
	free(s->bound);
	sqc_http_spares_free(s);
	sqc_idmap_free(&s->by_evcon);
	sqc_tls_free(s->tls);
	free(s);
}
