/*
 * http.h - what the files of the HTTP server share: the server, its
 * connections and requests, and the steps each file takes for the
 * others. Private to http.c (the server and its listeners), http_conn.c
 * (connections, accept throttling, the header limit), http_req.c
 * (dispatch and the request API) and http_resp.c (answers and the
 * response API). Loop thread only.
 */
#ifndef SQUALL_HTTP_H
#define SQUALL_HTTP_H

#include <arpa/inet.h>
#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "core.h"

#define RETRY_MIN_MS	100	/* first rest after accept() fails */

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
	int		 tls;		/* on a TLS listener */
	int		 tls_counted;	/* its handshake is in the counters */
};

struct listener {
	struct evhttp_bound_socket *b;
	char		 host[INET6_ADDRSTRLEN];
	int		 port;		/* as configured (or -p) */
	int		 actual;	/* as bound: port 0 picks one */
	int		 keep;		/* while matching a new config */
	int		 tls;		/* on https, not http */
};

#define PATH_INLINE	112	/* shorter paths live in the request */
/*
 * Request objects kept for reuse; none under ASan (gcc's macro, clang's
 * feature, or configure's --enable-sanitizers), which would then miss a
 * use after the end.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ_ASAN	1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(SQ_SANITIZERS) || \
    defined(SQ_ASAN)
#define SPARE_REQS	0
#else
#define SPARE_REQS	64
#endif

struct sq_req {
	struct evhttp_request *ev;	/* NULL once the client is gone */
	struct sqc_server *srv;
	struct conn	*conn;
	struct sq_inst	*inst;
	char		*path;		/* path_in, or malloc'ed */
	const char	*subpath;
	struct evkeyvalq args;
	int		 args_parsed;
	char		*body;
	size_t		 body_len;
	char		 client[INET6_ADDRSTRLEN];
	void		(*abort_cb)(struct sq_req *, void *);
	void		*abort_arg;
	int		 in_abort;	/* inside the abort callback */
	int		 tls;		/* came over a TLS listener */
	int		 version;	/* HTTP/1.1: 11 */
	LIST_ENTRY(sq_req) link;	/* in inflight, or spare */
	char		 path_in[PATH_INLINE];
};

struct sqc_server {
	struct event_base *base;
	/*
	 * evhttp asks one bufferevent callback per evhttp for every
	 * connection, not per listener: the TLS listeners have their own,
	 * set up alike.
	 */
	struct evhttp	*http, *https;
	struct sqc_tls	*tls;		/* https's settings, or NULL */
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
	LIST_HEAD(, sq_req) spare;	/* ended, kept for reuse */
	size_t		 nspare;

	struct sqc_idmap by_evcon;	/* the conns */
	LIST_HEAD(, conn) conns;	/* attached to their evcon */
	size_t		 nconns;
	LIST_HEAD(, conn) pending;	/* accepted, evcon not known yet */
	size_t		 npending;
	struct event	*attach_ev;	/* runs attach() */
	size_t		 nws;		/* WebSocket sessions held */
	size_t		 ntls;		/* conns on TLS listeners */
};

/*
 * The server of this process (there is one): the WebSocket bridge and the
 * listeners' error callback, which get no pointer to it, reach it here.
 */
extern struct sqc_server *sqc_http_current;

/* ---- http_conn.c ------------------------------------------------------ */

struct conn *sqc_http_conn_find(struct sqc_server *s,
	    struct evhttp_connection *evcon);
struct conn *sqc_http_conn_get(struct sqc_server *s,
	    struct evhttp_connection *evcon);
void	 sqc_http_conn_drop(struct conn *c);
size_t	 sqc_http_conns_open(const struct sqc_server *s);
void	 sqc_http_update_accepting(struct sqc_server *s);
struct bufferevent *sqc_http_accepted(struct event_base *base, void *arg);
struct bufferevent *sqc_http_accepted_tls(struct event_base *base,
	    void *arg);
void	 sqc_http_accept_failed(struct evconnlistener *l, void *arg);
void	 sqc_http_accept_retry(evutil_socket_t fd, short what, void *arg);
void	 sqc_http_attach(evutil_socket_t fd, short what, void *arg);
void	 sqc_http_hdr_restart(struct conn *c);
void	 sqc_http_conn_hold(void);
void	 sqc_http_conn_release(void);

/* ---- http_req.c ------------------------------------------------------- */

void	 sqc_http_dispatch(struct evhttp_request *ev, void *arg);
int	 sqc_http_over_tls(struct evhttp_request *ev);
void	 sqc_http_req_free(struct sq_req *req);
void	 sqc_http_spares_free(struct sqc_server *s);
void	 sqc_http_req_gone(struct sq_req *req);
long long sqc_http_since_start(const struct conn *c);
void	 sqc_http_log_access(struct evhttp_request *ev, const char *client,
	    int status, size_t bytes);

/* ---- http_resp.c ------------------------------------------------------ */

const char *sqc_http_reason(int status);
void	 sqc_http_send(struct evhttp_request *ev, const char *client,
	    int status, struct evbuffer *buf, size_t bytes);
int	 sqc_http_finish(struct sq_req *req, int status, struct evbuffer *buf);

#endif /* SQUALL_HTTP_H */
