/*
 * http_req.c - the HTTP server's requests: dispatch (limits, routing, the
 * upgrade to a WebSocket, the plugin's handler), the request object
 * plugins see (struct sq_req and the sq_req_* functions; answers are
 * http_resp.c's), the access log line, and abort notification when a
 * client leaves before its response. Loop thread only.
 *
 * Lifetimes: a struct sq_req wraps one evhttp_request and holds a
 * reference on its instance. It lives until the response is sent, or
 * until the client has gone and the plugin's abort callback has run;
 * the object is then kept for a later request (SPARE_REQS of them).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>

#include "core.h"
#include "http.h"


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
long long
sqc_http_since_start(const struct conn *c)
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
	    evhttp_find_header(h, "User-Agent"), sqc_http_current && evcon ?
	    sqc_http_since_start(sqc_http_conn_find(sqc_http_current,
	    evcon)) : -1, sqc_http_over_tls(ev));
}

/* Answers a request that never reached a plugin. */
static void
reply_plain(const struct sqc_server *s, struct evhttp_request *ev,
    int status, const char *extra_hdr, const char *extra_val)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	char client[INET6_ADDRSTRLEN];

	client_addr(s, ev, client, sizeof(client));
	evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
	if (extra_hdr)
		evhttp_add_header(out, extra_hdr, extra_val);
	if (b)
		evbuffer_add_printf(b, "%d %s\n", status,
		    sqc_http_reason(status));
	sqc_http_send(ev, client, status, b, b ? evbuffer_get_length(b) : 0);
	if (b)
		evbuffer_free(b);
}

static int
is_upgrade(struct evhttp_request *ev)
{
	const char *u;

	u = evhttp_find_header(evhttp_request_get_input_headers(ev),
	    "Upgrade");
	return u && strcasecmp(u, "websocket") == 0;
}

/*
 * A request object, from the server's spares when it has some (zeroed
 * either way): a keep-alive connection's requests reuse the same few.
 */
static struct sq_req *
req_new(struct sqc_server *s)
{
	struct sq_req *req = LIST_FIRST(&s->spare);

	if (req == NULL)
		return calloc(1, sizeof(*req));
	LIST_REMOVE(req, link);
	s->nspare--;
	memset(req, 0, sizeof(*req));
	return req;
}

/* Frees req's path and keeps req as a spare, or frees it. */
static void
req_put(struct sqc_server *s, struct sq_req *req)
{
	if (req->path != req->path_in)
		free(req->path);
	if (s->nspare + 1 > SPARE_REQS) {
		free(req);
		return;
	}
	LIST_INSERT_HEAD(&s->spare, req, link);
	s->nspare++;
}

/* At exit: the spare request objects. */
void
sqc_http_spares_free(struct sqc_server *s)
{
	struct sq_req *req;

	while ((req = LIST_FIRST(&s->spare)) != NULL) {
		LIST_REMOVE(req, link);
		free(req);
	}
	s->nspare = 0;
}

/* Ends req (its answer sent, or its client gone and told). */
void
sqc_http_req_free(struct sq_req *req)
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
	req_put(s, req);
}

/*
 * The client left before the response. evhttp has either detached the
 * request (we must free it) or is about to free it with the connection.
 * With an abort callback, the plugin hears of it and req ends here;
 * without one, req lives on until the plugin responds (a no-op send).
 */
void
sqc_http_req_gone(struct sq_req *req)
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
	sqc_log(SQ_LOG_DEBUG, sq_inst_route(req->inst), "client %s left "
	    "before the response", req->client);
	if (req->abort_cb) {
		struct sq_inst *prev = sqc_inst_enter(req->inst);

		req->in_abort = 1;
		req->abort_cb(req, req->abort_arg);
		sqc_inst_leave(prev);
		sqc_http_req_free(req);
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

#define TCHARS	"!#$%&'*+-.^_`|~0123456789" \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* The length of name when it is a token (RFC 7230 3.2.6), else 0. */
static size_t
token_len(const char *name)
{
	static unsigned char tchar[256];
	static int made;
	const char *p;
	size_t n = 0;

	if (!made) {
		for (p = TCHARS; *p != '\0'; p++)
			tchar[(unsigned char)*p] = 1;
		made = 1;
	}
	while (tchar[(unsigned char)name[n]])
		n++;
	return name[n] == '\0' ? n : 0;
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
 * (501), and a header name that is not a token (400). Returns 0 or the
 * status; the connection closes after it, since what follows in it
 * cannot be trusted. The same walk counts the header section's size in
 * *size (the request target and each name and value, with room for the
 * separators).
 */
static int
framing_status(struct evhttp_request *ev, size_t *size)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	const char *uri = evhttp_request_get_uri(ev);
	const char *cl = NULL, *te = NULL;
	struct evkeyval *kv;
	size_t n;
	int nte = 0;

	*size = uri ? strlen(uri) + 16 : 16;
	TAILQ_FOREACH(kv, h, next) {
		const char *v = kv->value;

		/*
		 * evhttp cuts a header line at its first colon and keeps
		 * the name as sent: "Content-Length : 5" is a header named
		 * "Content-Length ", which nobody uses, so its body would
		 * be read as the next request. A name must be a token (RFC
		 * 7230 3.2.6); whitespace before the colon gets 400 (3.2.4).
		 */
		if ((n = token_len(kv->key)) == 0)
			return 400;
		*size += n + strlen(v) + 4;
		if (n == 14 && strcasecmp(kv->key, "Content-Length") == 0) {
			if (v[0] == '\0' || v[strspn(v, "0123456789")] != '\0' ||
			    (cl != NULL && strcmp(cl, v) != 0))
				return 400;
			cl = v;
		} else if (n == 17 &&
		    strcasecmp(kv->key, "Transfer-Encoding") == 0) {
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

/*
 * What dispatch refuses before routing: bad framing (400 or 501), a
 * server that is stopping (503), headers over the limit (431). Returns 1
 * when it answered.
 */
static int
refused(struct sqc_server *s, struct evhttp_request *ev)
{
	size_t size;
	int status;

	if ((status = framing_status(ev, &size)) != 0) {
		char client[INET6_ADDRSTRLEN];

		client_addr(s, ev, client, sizeof(client));
		sqc_log(SQ_LOG_DEBUG, NULL, "client %s: header name, "
		    "Content-Length or Transfer-Encoding refused: %d", client,
		    status);
		reply_plain(s, ev, status, "Connection", "close");
		return 1;
	}
	if (s->stopping) {
		reply_plain(s, ev, 503, "Connection", "close");
		return 1;
	}
	if (size > s->max_header_size) {
		reply_plain(s, ev, 431, "Connection", "close");
		return 1;
	}
	return 0;
}

/*
 * The request's normalised path into req (in req->path_in when it fits)
 * and the instance of its route (req->inst, not yet referenced, and the
 * rest of the path in req->subpath); -1 when it answered instead (400,
 * or 404 for no route).
 */
static int
routed_path(struct sqc_server *s, struct evhttp_request *ev,
    struct sq_req *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
	size_t n = raw ? strlen(raw) + 1 : 0;

	if (n <= sizeof(req->path_in))
		req->path = req->path_in;
	else
		req->path = malloc(n);
	if (raw == NULL || *raw != '/' || req->path == NULL) {
		reply_plain(s, ev, 400, "Connection", "close");
		return -1;
	}
	memcpy(req->path, raw, n);
	if (sqc_path_normalize(req->path) != 0) {
		reply_plain(s, ev, 400, NULL, NULL);
		return -1;
	}
	if (s->gen == NULL || (req->inst = sqc_gen_route(s->gen, req->path,
	    &req->subpath)) == NULL) {
		reply_plain(s, ev, 404, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Did ev come over a TLS listener? */
int
sqc_http_over_tls(struct evhttp_request *ev)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct bufferevent *bev;

	bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	return bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL;
}

/* An upgrade to a WebSocket route: ev goes to the hand-over, if taken. */
static void
upgrade(struct sqc_server *s, struct evhttp_request *ev,
    struct sq_inst *inst, const char *subpath)
{
	char client[INET6_ADDRSTRLEN];
	int status;

	if (!sqc_inst_handles_ws(inst)) {
		reply_plain(s, ev, 400, NULL, NULL);
		return;
	}
	client_addr(s, ev, client, sizeof(client));
	if (sqc_ws_upgrade(ev, inst, subpath, client,
	    sqc_gen_ws_deflate(s->gen, inst), &status) != 0)
		reply_plain(s, ev, status, status == 426 ?
		    "Sec-WebSocket-Version" : NULL, "13");
}

/*
 * The plugin's handler for a request of c (path is the request's now).
 * An answer that does not come during the call comes later: the
 * connection is then watched, so that the plugin hears if the client
 * leaves meanwhile.
 */
static void
handle(struct sqc_server *s, struct evhttp_request *ev, struct conn *c,
    struct sq_req *req)
{
	req->ev = ev;
	req->tls = sqc_http_over_tls(ev);
	req->version = ev->major * 10 + ev->minor;
	req->srv = s;
	sqc_inst_ref(req->inst);
	client_addr(s, ev, req->client, sizeof(req->client));
	LIST_INSERT_HEAD(&s->inflight, req, link);
	s->ninflight++;
	if ((req->conn = c) != NULL)
		c->req = req;
	s->dispatching = req;
	sqc_call_handle(req->inst, req);
	if (s->dispatching == req) {
		s->dispatching = NULL;
		if (req->conn)
			watch_start(req->conn);
	}
}

/*
 * evhttp's request callback: limits and framing checked, the route
 * found, a WebSocket upgrade handed to ws_loop.c, else the plugin's
 * handler called (its answer may come later).
 */
void
sqc_http_dispatch(struct evhttp_request *ev, void *arg)
{
	struct sqc_server *s = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct conn *c = evcon ? sqc_http_conn_get(s, evcon) : NULL;
	struct sq_req *req;

	if (c)
		sqc_http_hdr_restart(c);
	if (refused(s, ev))
		return;
	if ((req = req_new(s)) == NULL) {
		reply_plain(s, ev, 503, NULL, NULL);
		return;
	}
	if (routed_path(s, ev, req) != 0)
		req_put(s, req);
	else if (is_upgrade(ev)) {
		upgrade(s, ev, req->inst, req->subpath);
		req_put(s, req);
	} else if (!sqc_inst_handles_http(req->inst)) {
		reply_plain(s, ev, 400, NULL, NULL);
		req_put(s, req);
	} else
		handle(s, ev, c, req);
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

int
sq_req_tls(struct sq_req *req)
{
	return req->tls;
}

int
sq_req_http_version(struct sq_req *req)
{
	return req->version;
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
