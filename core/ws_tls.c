/*
 * ws_tls.c - wss: the relay between a WebSocket client's TLS connection
 * and libwebsockets. lws is handed a plain socket; for an upgrade that
 * came over a TLS listener that socket is one end of a socketpair, and
 * this file owns the other end and the TLS connection (the OpenSSL
 * bufferevent evhttp read the request through, SSL state and all), and
 * moves the bytes between them: what the client sends, decrypted, to
 * lws; what lws writes, encrypted, to the client. Moving is
 * evbuffer_add_buffer, no copy. Each side stops being read while the
 * other side's output holds more than RELAY_HIGH bytes, so a slow client
 * backs up into lws, whose max_queue ends it. An end of stream on either
 * side reaches the other once what is buffered towards it is out: lws
 * sees the client's end as an EOF on its socket, the client gets a TLS
 * close_notify and a FIN when lws closes. A relay is freed when both
 * sides are done, or RELAY_LINGER after the first one was, and every
 * relay at exit (sqc_wss_free_all). docs/internals/wss.md explains the
 * choice and its cost. Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "core.h"

#define RELAY_HIGH	(64u << 10)	/* stop reading the other side */
#define RELAY_LOW	(16u << 10)	/* read it again */
#define RELAY_LINGER	3	/* seconds, once one side is done */

struct relay {
	struct bufferevent *tls;	/* the client, through OpenSSL */
	struct bufferevent *pair;	/* our end of lws' socketpair */
	struct event	*linger;	/* armed once a side is done */
	void		(*release)(void);	/* its count, once */
	int		 tls_in_done;	/* the client sends no more */
	int		 tls_dead;	/* nothing can be written to it */
	int		 pair_in_done;	/* lws sends nothing more */
	int		 pair_dead;
	int		 pair_shut;	/* lws was given its EOF */
	int		 notified;	/* close_notify (and FIN) sent */
	LIST_ENTRY(relay) all;
};

static LIST_HEAD(, relay) relays = LIST_HEAD_INITIALIZER(relays);

static void
relay_free(struct relay *r)
{
	LIST_REMOVE(r, all);
	/* the last reference: closes the socket and frees the SSL object */
	bufferevent_free(r->tls);
	bufferevent_free(r->pair);
	if (r->linger)
		event_free(r->linger);
	if (r->release)
		r->release();
	free(r);
}

static void
linger_over(evutil_socket_t fd, short what, void *arg)
{
	relay_free(arg);
}

/*
 * Frees r when both sides are done: lws closed its end and what it wrote
 * reached the client (or cannot), and the client has ended its stream.
 * Otherwise, once a side is done, the rest has RELAY_LINGER seconds.
 * Returns 1 when r is gone.
 */
static int
relay_check(struct relay *r)
{
	static const struct timeval linger = { RELAY_LINGER, 0 };

	if (r->pair_in_done && (r->notified || r->tls_dead) &&
	    (r->tls_in_done || r->tls_dead) && (r->pair_shut || r->pair_dead)) {
		relay_free(r);
		return 1;
	}
	if ((r->pair_in_done || r->tls_in_done) && r->linger == NULL &&
	    (r->linger = evtimer_new(bufferevent_get_base(r->pair),
	    linger_over, r)) != NULL)
		evtimer_add(r->linger, &linger);
	return 0;
}

/* lws gets its end of stream once what the client sent has reached it. */
static void
pair_shut(struct relay *r)
{
	if (r->pair_shut || r->pair_dead ||
	    evbuffer_get_length(bufferevent_get_output(r->pair)) > 0)
		return;
	r->pair_shut = 1;
	shutdown(bufferevent_getfd(r->pair), SHUT_WR);
}

/*
 * The client gets a close_notify once what lws wrote has reached it, and
 * a FIN after it; it may still send, until it closes (or the linger time
 * ends). A close_notify that does not fit in the socket is not retried.
 */
static void
tls_notify(struct relay *r)
{
	if (r->notified || r->tls_dead ||
	    evbuffer_get_length(bufferevent_get_output(r->tls)) > 0)
		return;
	r->notified = 1;
	SSL_shutdown(bufferevent_openssl_get_ssl(r->tls));
	shutdown(bufferevent_getfd(r->tls), SHUT_WR);
}

/*
 * Moves what is in from's input to to's output, unless to is dead; stops
 * reading from while to holds more than RELAY_HIGH.
 */
static void
move(struct bufferevent *from, struct bufferevent *to, int to_dead)
{
	struct evbuffer *in = bufferevent_get_input(from);

	if (to_dead) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(to), in);
	if (evbuffer_get_length(bufferevent_get_output(to)) > RELAY_HIGH)
		bufferevent_disable(from, EV_READ);
}

static void
tls_read(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;

	move(r->tls, r->pair, r->pair_dead);
}

static void
pair_read(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;

	move(r->pair, r->tls, r->tls_dead);
}

/* The client's output went under RELAY_LOW: lws may be read again. */
static void
tls_write(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;

	if (!r->pair_in_done)
		bufferevent_enable(r->pair, EV_READ);
	else {
		tls_notify(r);
		relay_check(r);
	}
}

/* lws' input went under RELAY_LOW: the client may be read again. */
static void
pair_write(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;

	if (!r->tls_in_done)
		bufferevent_enable(r->tls, EV_READ);
	else {
		pair_shut(r);
		relay_check(r);
	}
}

/*
 * The client ended its stream (close_notify or a bare FIN: both EOF to
 * us) or the connection failed (nothing more goes to it); lws hears of
 * it once what the client sent before has reached it.
 */
static void
tls_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	r->tls_in_done = 1;
	bufferevent_disable(r->tls, EV_READ);
	/*
	 * libevent 2.1.12 stops writing too at a TLS end of stream (its
	 * conn_closed), and writes again only when data is added to an
	 * empty output: what was already there, lws' close frame as a rule,
	 * would stay. The client may still read: write it.
	 */
	if (!(what & BEV_EVENT_ERROR) &&
	    evbuffer_get_length(bufferevent_get_output(r->tls)) > 0)
		bufferevent_enable(r->tls, EV_WRITE);
	if (what & BEV_EVENT_ERROR || what & BEV_EVENT_WRITING) {
		struct evbuffer *out = bufferevent_get_output(r->tls);

		r->tls_dead = 1;
		bufferevent_disable(r->tls, EV_WRITE);
		evbuffer_drain(out, evbuffer_get_length(out));
		/* lws' writes have nowhere to go: take them, drop them */
		if (!r->pair_in_done)
			bufferevent_enable(r->pair, EV_READ);
	}
	pair_shut(r);
	relay_check(r);
}

/* lws closed its end (or shut it), or the socketpair failed. */
static void
pair_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	r->pair_in_done = 1;
	bufferevent_disable(r->pair, EV_READ);
	if (what & BEV_EVENT_ERROR || what & BEV_EVENT_WRITING) {
		struct evbuffer *out = bufferevent_get_output(r->pair);

		r->pair_dead = 1;
		bufferevent_disable(r->pair, EV_WRITE);
		evbuffer_drain(out, evbuffer_get_length(out));
		if (!r->tls_in_done)
			bufferevent_enable(r->tls, EV_READ);
	}
	tls_notify(r);
	relay_check(r);
}

/*
 * Starts relaying between tls, a TLS connection handed over by evhttp
 * (the relay takes the caller's reference on it: its socket and SSL
 * object go with it), and a new socketpair, whose other end is put in
 * *lws_fd for libwebsockets (close-on-exec, nonblocking, the caller's to
 * give away). release is called once, when the relay is freed: the
 * connection's count. Returns 0, or a negative errno value, tls then
 * still the caller's and nothing else made. Loop thread.
 */
int
sqc_wss_start(struct bufferevent *tls, void (*release)(void), int *lws_fd)
{
	struct event_base *base = bufferevent_get_base(tls);
	struct relay *r;
	int sv[2];

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) != 0) {
		int e = errno;

		free(r);
		return -e;
	}
	if ((r->pair = bufferevent_socket_new(base, sv[0],
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		free(r);
		return -ENOMEM;
	}
	r->tls = tls;
	r->release = release;
	/* evhttp's timeouts and watermarks no longer apply */
	bufferevent_set_timeouts(tls, NULL, NULL);
	bufferevent_setwatermark(tls, EV_READ, 0, 0);
	bufferevent_setwatermark(tls, EV_WRITE, RELAY_LOW, 0);
	bufferevent_setwatermark(r->pair, EV_WRITE, RELAY_LOW, 0);
	bufferevent_setcb(tls, tls_read, tls_write, tls_event, r);
	bufferevent_setcb(r->pair, pair_read, pair_write, pair_event, r);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	bufferevent_enable(r->pair, EV_READ | EV_WRITE);
	LIST_INSERT_HEAD(&relays, r, all);
	*lws_fd = sv[1];
	return 0;
}

/*
 * The relays with something still to deliver to their client: lws' side
 * is open, or what it wrote (its close frame) and the close_notify are
 * not out yet. Relays that only wait for the client's end of stream do
 * not count: at exit the drain does not wait for them.
 */
size_t
sqc_wss_unflushed(void)
{
	struct relay *r;
	size_t n = 0;

	LIST_FOREACH(r, &relays, all)
		n += !r->notified && !r->tls_dead;
	return n;
}

/* At exit: every relay is freed, its connection closed. */
void
sqc_wss_free_all(void)
{
	while (!LIST_EMPTY(&relays))
		relay_free(LIST_FIRST(&relays));
}
