/*
 * squall/plugin.h - the one header a squall plugin includes.
 *
 * A plugin is a shared object that exports one descriptor,
 *
 *	SQ_PLUGIN(.name = "hello", .version = "1.0",
 *	    .create = hello_create, .destroy = hello_destroy,
 *	    .handle = hello_handle);
 *
 * and calls the functions below, which squalld provides. Build it with
 *
 *	cc -shared -fPIC -o hello.so hello.c $(pkg-config --cflags squall-plugin)
 *
 * Rules that hold everywhere (squall-plugin(3) says more):
 *
 * - Threads. Every callback runs on the server's event-loop thread, one at
 *   a time, so a plugin needs no locks. Never block in a callback.
 * - Requests. The core owns a struct sq_req. It is valid from the entry of
 *   .handle until the response has been sent or the abort callback has run;
 *   after that, do not touch it. Without an abort callback, a request whose
 *   client left stays valid until the plugin responds (a no-op). Strings
 *   returned by sq_req_* accessors are borrowed for that same lifetime.
 * - Buffers passed to send functions are copied, unless the function name
 *   ends in _take, in which case ownership moves to the core.
 * - Asynchronous operations (timers, fetches and offloaded jobs) call
 *   their callback exactly once - on success, error, timeout or
 *   cancellation - and never from inside the call that started them.
 * - An instance is kept alive (and its code mapped) while any request,
 *   timer or other operation started from it is pending, even across a
 *   reload that removed its route.
 * - Errors are negative errno values (-EINVAL, -ENOMEM, -ECANCELED...).
 */
#ifndef SQUALL_PLUGIN_H
#define SQUALL_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* squalld is built with hidden visibility: its API is the exception. */
#ifdef SQUALL_CORE
#pragma GCC visibility push(default)
#endif

/*
 * The ABI policy. SQ_PLUGIN_ABI is bumped, and plugins built for another
 * value are refused at load, when struct sq_plugin or the meaning of a
 * callback changes, or when a function below is removed or changes its
 * signature or meaning. That is meant to be rare: functions are only
 * ever added (a plugin built against an older header keeps working), the
 * descriptor has reserved slots for new callbacks, and structures handed
 * to plugins (struct sq_stats) only grow at the end, filled up to the
 * size the plugin passes. squalld exports exactly the functions declared
 * here; json-c, which the JSON helpers use, comes through pkg-config
 * (Requires: json-c) like any library a plugin links.
 */
#define SQ_PLUGIN_ABI 1

struct sq_inst;		/* a configured instance of a plugin (one per route) */
struct sq_opts;		/* the route's options, during .create only */
struct sq_req;		/* one HTTP request */
struct sq_ws;		/* one WebSocket session */
struct sq_timer;	/* a one-shot timer on the loop */
struct sq_io;		/* a descriptor watched on the loop */
struct sq_fetch;	/* one request of the shared HTTP client */
struct sq_fetch_group;	/* fetches that complete together */
struct sq_job;		/* blocking work on the offload pool */
struct json_object;	/* json-c */

/*
 * The descriptor. .abi, .name and .handle are required; the WebSocket
 * callbacks are for plugins that accept upgrades on their route.
 */
struct sq_plugin {
	unsigned	 abi;		/* SQ_PLUGIN_ABI */
	const char	*name;
	const char	*version;

	/*
	 * Create an instance from the route's options and store its state in
	 * *state. Read options with sq_opt_*; an option that was never read is
	 * an error the core reports. On failure return a negative errno value,
	 * after sq_opt_error() when the cause is a bad option.
	 */
	int	(*create)(struct sq_inst *inst, struct sq_opts *opts,
		    void **state);
	/* Free the state. Nothing of the instance is pending any more. */
	void	(*destroy)(void *state);

	/*
	 * Handle a request. Respond now with sq_resp_*, or later (after a
	 * timer, a fetch...) and then register sq_req_on_abort() to learn
	 * that the client went away first.
	 */
	void	(*handle)(void *state, struct sq_req *req);

	/*
	 * WebSocket (optional). ws_open runs before the handshake is
	 * answered: return 0 to accept, or an HTTP status (403, 404,
	 * 503...; anything else outside 400-599 is 403) to refuse. ws_message gets each whole message; ws_close runs once
	 * when the session ends, whoever ended it (code as received, or
	 * 1006 when the connection dropped); after it, ws is gone.
	 */
	int	(*ws_open)(void *state, struct sq_ws *ws);
	void	(*ws_message)(void *state, struct sq_ws *ws, const void *data,
		    size_t len, int binary);
	void	(*ws_close)(void *state, struct sq_ws *ws, int code);

	void	*reserved[8];	/* zero; room for later callbacks */
};

/* The exported symbol the loader looks for. */
#define SQ_PLUGIN_SYMBOL "sq_plugin_descriptor"

#define SQ_PLUGIN(...)							\
	__attribute__((visibility("default")))				\
	const struct sq_plugin sq_plugin_descriptor = {			\
		.abi = SQ_PLUGIN_ABI, __VA_ARGS__ }

/*
 * Options. Every getter marks the key as used and returns the last value
 * given for it (or def). A key may repeat; sq_opt_count and sq_opt_at read
 * each value in file order. sq_opt_next walks the keys that start with
 * prefix ("url." for url.first, url.second...), in file order.
 * Strings are valid until .create returns: copy what you keep.
 */
const char	*sq_opt_str(struct sq_opts *o, const char *key,
		    const char *def);
/* Like sq_opt_str, but a relative path is made absolute against the
 * configuration file's folder. The result is malloc'ed: free it. */
char		*sq_opt_path(struct sq_opts *o, const char *key,
		    const char *def);
/* Parse an integer in [min, max]; -EINVAL (with the error recorded) if
 * the value does not parse or is out of range. */
int		 sq_opt_int(struct sq_opts *o, const char *key, long long def,
		    long long min, long long max, long long *out);
/* on/off, yes/no, true/false, 1/0. */
int		 sq_opt_bool(struct sq_opts *o, const char *key, int def,
		    int *out);
/* A byte size with an optional K, M or G suffix (powers of 1024). */
int		 sq_opt_size(struct sq_opts *o, const char *key, size_t def,
		    size_t *out);
size_t		 sq_opt_count(struct sq_opts *o, const char *key);
const char	*sq_opt_at(struct sq_opts *o, const char *key, size_t i);
/* *iter starts at 0; returns 0 when there are no more. */
int		 sq_opt_next(struct sq_opts *o, const char *prefix,
		    size_t *iter, const char **key, const char **value);
/* Record why .create fails, naming the option's file:line when key is
 * given. Returns -EINVAL for convenience. */
int		 sq_opt_error(struct sq_opts *o, const char *key,
		    const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

/* The instance: its route, and the server's log under its name. */
const char	*sq_inst_route(struct sq_inst *inst);

enum sq_log_level {
	SQ_LOG_ERROR,
	SQ_LOG_WARN,
	SQ_LOG_INFO,
	SQ_LOG_DEBUG
};
void		 sq_log(struct sq_inst *inst, enum sq_log_level level,
		    const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

/*
 * Requests. The path is percent-decoded and normalised ("." and ".."
 * segments removed). sq_req_subpath is the part a "*" route matched
 * (without a leading "/"), or "" for exact routes.
 */
const char	*sq_req_method(struct sq_req *req);
const char	*sq_req_path(struct sq_req *req);
const char	*sq_req_subpath(struct sq_req *req);
const char	*sq_req_query(struct sq_req *req);	/* raw, or "" */
const char	*sq_req_arg(struct sq_req *req, const char *name);
const char	*sq_req_header(struct sq_req *req, const char *name);
const void	*sq_req_body(struct sq_req *req, size_t *len);
const char	*sq_req_client_ip(struct sq_req *req);
int		 sq_req_tls(struct sq_req *req);	/* 1: came by https */
/* The request's HTTP version, major * 10 + minor: 10 or 11 (20 once
 * HTTP/2 is served). */
int		 sq_req_http_version(struct sq_req *req);
struct sq_inst	*sq_req_inst(struct sq_req *req);

/* Called (once, on the loop) if the client leaves before the response. */
void		 sq_req_on_abort(struct sq_req *req,
		    void (*cb)(struct sq_req *req, void *arg), void *arg);

/*
 * Responses. Add headers first, then send exactly once. After a send (or
 * an abort), req is gone. Sending after the client left is a no-op.
 */
int		 sq_resp_header(struct sq_req *req, const char *name,
		    const char *value);
int		 sq_resp_send(struct sq_req *req, int status, const void *body,
		    size_t len);
int		 sq_resp_printf(struct sq_req *req, int status,
		    const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
/* Serialises obj with Content-Type application/json; the caller keeps
 * its reference to obj. */
int		 sq_resp_json(struct sq_req *req, int status,
		    struct json_object *obj);
/* Sends len bytes of fd from offset; the fd is closed by the core. */
int		 sq_resp_file_take(struct sq_req *req, int status, int fd,
		    int64_t offset, int64_t len);
/* A standard error page: status line reason as text/plain. */
int		 sq_resp_error(struct sq_req *req, int status);

/*
 * Timers. cb runs once on the loop with status 0 when the delay has
 * passed, or -ECANCELED after sq_timer_cancel (or when the server stops).
 * The timer is freed after its callback returns.
 */
struct sq_timer	*sq_timer_start(struct sq_inst *inst, uint64_t ms,
		    void (*cb)(int status, void *arg), void *arg);
void		 sq_timer_cancel(struct sq_timer *t);

/*
 * The libevent event_base of the server's loop, as an opaque pointer,
 * for plugins that attach a library's own libevent adapter (hiredis's
 * redisLibeventAttach); only on the loop thread. Such a plugin links
 * libevent itself; whatever it registers on the base must be gone when
 * its .destroy returns, since nothing of it keeps the instance alive.
 */
void		*sq_loop_base(void);

/*
 * A descriptor watched on the loop: cb(fd, SQ_IO_READ or SQ_IO_WRITE,
 * arg) runs on the loop each time fd is ready for what was added, until
 * it is deleted. For the event hooks of a library the plugin drives on
 * the loop (hiredis's ev.addRead and friends) instead of the library's
 * libevent adapter: cb runs as the plugin's code, so a fatal signal in
 * it (or in the library under it) is logged with the plugin and route.
 * cb may free the watch. A watch holds no reference on the instance:
 * free it before .destroy returns. sq_io_new returns NULL on error (or
 * under squalld -t, which has no loop); sq_io_add 0 or -ENOMEM.
 */
#define SQ_IO_READ	0x01
#define SQ_IO_WRITE	0x02
struct sq_io	*sq_io_new(struct sq_inst *inst, int fd,
		    void (*cb)(int fd, int what, void *arg), void *arg);
int		 sq_io_add(struct sq_io *io, int what);
void		 sq_io_del(struct sq_io *io, int what);
void		 sq_io_free(struct sq_io *io);

/*
 * The shared asynchronous HTTP client (libcurl on the server's loop).
 * Create a fetch, set what you need, then start it: cb runs once, on the
 * loop, with the fetch, which is valid until cb returns. Errors (no
 * connection, timeout, too large, cancelled) come through cb as well; an
 * HTTP status such as 500 is not an error. Only http and https URLs are
 * fetched; a URL that starts with "/" names this server itself.
 * Defaults: GET, 30 s timeout, 1 MiB response limit.
 */
struct sq_fetch	*sq_fetch_new(struct sq_inst *inst, const char *url);
int		 sq_fetch_set_method(struct sq_fetch *f, const char *method);
int		 sq_fetch_add_header(struct sq_fetch *f, const char *line);
int		 sq_fetch_set_body(struct sq_fetch *f, const void *body,
		    size_t len);
void		 sq_fetch_set_timeout(struct sq_fetch *f, uint64_t ms);
void		 sq_fetch_set_max_size(struct sq_fetch *f, size_t bytes);
/* https: check the peer's certificate against ca_file (a PEM bundle,
 * copied; NULL: the system's CAs), or, with verify 0, not at all (the
 * peer and its name are then unauthenticated). A TLS failure (no
 * handshake, a certificate that does not verify) is -EPROTO. */
int		 sq_fetch_set_tls(struct sq_fetch *f, const char *ca_file,
		    int verify);
void		 sq_fetch_start(struct sq_fetch *f,
		    void (*cb)(struct sq_fetch *f, void *arg), void *arg);
/* Cancel: cb runs later with -ECANCELED. An unstarted fetch is freed. */
void		 sq_fetch_cancel(struct sq_fetch *f);

/* Results, inside the callback. */
int		 sq_fetch_error(struct sq_fetch *f);	/* 0 or -errno */
const char	*sq_fetch_errstr(struct sq_fetch *f);	/* "" when 0 */
long		 sq_fetch_status(struct sq_fetch *f);	/* 0 if none */
const char	*sq_fetch_body(struct sq_fetch *f, size_t *len);
const char	*sq_fetch_header(struct sq_fetch *f, const char *name);
const char	*sq_fetch_url(struct sq_fetch *f);

/*
 * A group of fetches that calls back once, when all are done (Tornado's
 * "yield [f1, f2]"). Add unstarted fetches, then start the group; in cb,
 * read each with sq_fetch_group_at. Everything is freed after cb returns.
 * Cancelling the group cancels every fetch in it; cb still runs once.
 */
struct sq_fetch_group *sq_fetch_group_new(struct sq_inst *inst);
int		 sq_fetch_group_add(struct sq_fetch_group *g,
		    struct sq_fetch *f);
void		 sq_fetch_group_start(struct sq_fetch_group *g,
		    void (*cb)(struct sq_fetch_group *g, void *arg), void *arg);
size_t		 sq_fetch_group_count(struct sq_fetch_group *g);
struct sq_fetch	*sq_fetch_group_at(struct sq_fetch_group *g, size_t i);
void		 sq_fetch_group_cancel(struct sq_fetch_group *g);

/*
 * WebSocket sessions (routes whose plugin has .ws_open). Sends are
 * copied and queued; sq_ws_broadcast shares one copy among all the
 * sessions given. A session whose queue passes max_queue bytes (a client
 * that does not read) is closed with 1008; a message over max_message
 * closes it with 1009. Set both in ws_open (defaults 64 KiB and 1 MiB).
 */
int		 sq_ws_send(struct sq_ws *ws, const void *data, size_t len,
		    int binary);
int		 sq_ws_broadcast(struct sq_ws *const *to, size_t n,
		    const void *data, size_t len, int binary);
void		 sq_ws_close(struct sq_ws *ws, int code, const char *reason);
void		 sq_ws_limits(struct sq_ws *ws, size_t max_message,
		    size_t max_queue);
/* Sends a ping; without a pong within timeout_ms (rounded up to whole
 * seconds) the connection is dropped and ws_close follows. */
void		 sq_ws_ping(struct sq_ws *ws, uint64_t timeout_ms);
const char	*sq_ws_client_ip(struct sq_ws *ws);
int		 sq_ws_tls(struct sq_ws *ws);	/* 1: came by wss */
/*
 * The part of the upgrade request's path that the route's trailing "*"
 * matched, as sq_req_subpath: "lobby" for /rooms/lobby when the route
 * is the prefix /rooms/ with its "*"; "" on an exact route. Valid until
 * ws_close returns.
 */
const char	*sq_ws_subpath(struct sq_ws *ws);
/* The upgrade request's query string, raw ("" if none), as sq_req_query;
 * valid until ws_close returns. */
const char	*sq_ws_query(struct sq_ws *ws);
/* A header of the upgrade request (Origin, Host...), or NULL. */
const char	*sq_ws_header(struct sq_ws *ws, const char *name);
/*
 * Subprotocols (RFC 6455 1.9). sq_ws_offered_protocol is the i-th name
 * the client offers (its Sec-WebSocket-Protocol list, in order), or NULL
 * past the end. In ws_open, sq_ws_select_protocol picks the one the 101
 * response names: one of those offered, compared exactly (-EINVAL if
 * not; -ENAMETOOLONG past 255 bytes; -EBUSY outside ws_open); NULL
 * picks none, the default. A client that offered some and gets none
 * usually gives up: refuse it in ws_open if you cannot serve it.
 * sq_ws_protocol is the name picked, or NULL. Strings are valid until
 * ws_close returns.
 */
const char	*sq_ws_offered_protocol(struct sq_ws *ws, size_t i);
int		 sq_ws_select_protocol(struct sq_ws *ws, const char *name);
const char	*sq_ws_protocol(struct sq_ws *ws);
struct sq_inst	*sq_ws_inst(struct sq_ws *ws);
void		 sq_ws_set_data(struct sq_ws *ws, void *data);
void		*sq_ws_data(struct sq_ws *ws);

/*
 * The offload pool: work(arg) runs on a worker thread, where it may
 * block (a database call, compression) but must not call any sq_*
 * function; then done(status, arg) runs on the loop, with 0, or with
 * -ECANCELED if work never ran (cancelled, or the server is stopping).
 * Returns the job, valid until done returns; or NULL with errno EAGAIN
 * when offload_queue jobs are already waiting (answer 503 now rather
 * than make the client wait), ENOMEM, or ESHUTDOWN (the pool stopped).
 *
 * sq_job_cancel: a job that has not started will never run (its done
 * still comes, later, with -ECANCELED): 0. One that started runs to its
 * end and completes normally: -EBUSY. Call it only before done ran; a
 * client that left is the usual reason (sq_req_on_abort).
 */
struct sq_job	*sq_offload(struct sq_inst *inst, void (*work)(void *arg),
		    void (*done)(int status, void *arg), void *arg);
int		 sq_job_cancel(struct sq_job *job);

/*
 * The server's numbers, for monitoring (the status plugin shows them).
 * Counters count since start; the others are what is open now. Pass
 * sizeof(struct sq_stats): fields are only ever added at the end, and
 * the server fills as many as the caller knows of. Returns 0.
 */
struct sq_stats {
	uint64_t	 uptime_ms;
	uint64_t	 generation;	/* configurations served: 1 + reloads_ok */
	uint64_t	 reloads_ok, reloads_failed;
	uint64_t	 connections;	/* open: HTTP and WebSocket */
	uint64_t	 requests[6];	/* answered, by class: [2] is 2xx...;
					 * [0] anything else */
	uint64_t	 requests_inflight;
	uint64_t	 ws_sessions;	/* WebSocket sessions open */
	uint64_t	 ws_messages_in, ws_messages_out;
	uint64_t	 fetches_active, fetches_queued, fetches_failed;
	uint64_t	 offload_queued; /* jobs waiting or running */
	uint64_t	 tls_connections; /* open on TLS listeners */
	uint64_t	 tls_handshakes, tls_handshake_failures;
};
int		 sq_stats_get(struct sq_stats *out, size_t size);
/* The routes served now, in the file's order: path, plugin name and
 * version, borrowed until the callback returns. -ENOENT past the end. */
size_t		 sq_route_count(void);
int		 sq_route_at(size_t i, const char **path, const char **plugin,
		    const char **version);
/* What the i-th route's instance has done since it was created (a
 * reload that keeps the route keeps it). Pass sizeof: it may grow. */
struct sq_route_stats {
	uint64_t	 requests;	/* handled by .handle */
	uint64_t	 ws_sessions;	/* accepted by .ws_open */
	uint64_t	 ws_messages;	/* received */
};
int		 sq_route_stats(size_t i, struct sq_route_stats *out,
		    size_t size);
/*
 * What an instance says of its state, for monitoring: key = value pairs
 * that the status plugin shows with its route (the chat plugin's
 * "broker" = "up" or "down"). Both are copied; value NULL removes key.
 * 0, -EINVAL (no key) or -ENOMEM. sq_route_info gives the j-th pair of
 * the i-th route, borrowed until the caller returns; -ENOENT past the
 * end.
 */
int		 sq_inst_set_info(struct sq_inst *inst, const char *key,
		    const char *value);
int		 sq_route_info(size_t i, size_t j, const char **key,
		    const char **value);

const char	*sq_strerror(int err);

#ifdef SQUALL_CORE
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SQUALL_PLUGIN_H */
