/*
 * core.h - what crosses files inside squalld. Private to core/: plugins
 * see only squall/plugin.h. Everything here is for the loop thread,
 * except what any thread may call:
 *   sqc_log, sqc_log_enabled (the log's descriptors are swapped
 *     atomically by sqc_log_reopen),
 *   sqc_utf8_check (pure),
 *   sqc_idmap_* on a map the calling thread owns,
 *   sqc_inst_enter, sqc_inst_leave, sqc_inst_running (per thread: the
 *     offload workers mark their jobs for the crash note),
 *   sqc_thread_name (per thread: the core's own threads name themselves).
 * What the WebSocket service thread shares with the loop is in
 * ws_bridge.h, and each function there says which thread calls it.
 */
#ifndef SQUALL_CORE_H
#define SQUALL_CORE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include "squall/plugin.h"

#define SQC_ERRLEN 512

struct event_base;

/* ---- log.c ------------------------------------------------------------ */

void	 sqc_log_set_level(int level);
int	 sqc_log_enabled(enum sq_log_level level);

int	 sqc_log_open(const char *error_log, const char *access_log,
	    char *err, size_t errlen);
int	 sqc_log_reopen(void);
int	 sqc_log_give(const char *user, uid_t uid, gid_t gid, char *err,
	    size_t errlen);
void	 sqc_log_close(void);
void	 sqc_log(enum sq_log_level level, const char *who, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));
int	 sqc_access_log_on(void);
/* access_log_format: nginx's combined, combined plus the request time,
 * or one JSON object a line. */
enum sqc_access_format {
	SQC_ACCESS_COMBINED, SQC_ACCESS_TIMED, SQC_ACCESS_JSON
};
int	 sqc_access_format_parse(const char *s);
const char *sqc_access_format_name(int format);
void	 sqc_access_log_set_format(int format);
void	 sqc_access_log(const char *client, const char *method,
	    const char *uri, int major, int minor, int status, size_t bytes,
	    const char *referer, const char *agent, long long usec, int tls);
int	 sqc_log_level_parse(const char *s);
void	 sqc_log_raw(const char *s, size_t len);
void	 sqc_thread_name(const char *comm, const char *note);
const char *sqc_thread_note(void);
size_t	 sqc_log_prefix(char *buf, size_t cap);
size_t	 sqc_log_escape(char *out, size_t cap, const char *s,
	    int quoted);

/* ---- idmap.c ---------------------------------------------------------- */

/* Non-zero 64-bit keys to pointers; zero-initialise, one thread each. */
struct sqc_idmap {
	size_t		 cap, n;
	struct { uint64_t key; void *val; } *slots;
};

void	*sqc_idmap_get(const struct sqc_idmap *m, uint64_t key);
int	 sqc_idmap_reserve(struct sqc_idmap *m, size_t extra);
int	 sqc_idmap_put(struct sqc_idmap *m, uint64_t key, void *val);
void	*sqc_idmap_del(struct sqc_idmap *m, uint64_t key);
void	 sqc_idmap_free(struct sqc_idmap *m);

/* ---- config.c --------------------------------------------------------- */

struct sqc_opt {
	char		*key;
	char		*value;
	int		 line;
	int		 used;
};

struct sqc_route_conf {
	char		*path;		/* "/hello" or "/static/" + prefix */
	int		 prefix;	/* route ended in "*" */
	char		*plugin;	/* resolved .so path */
	int		 ws_deflate;	/* permessage-deflate offered: 0 or 1 */
	int		 no_ws;		/* -T found its plugin takes no WebSockets */
	int		 line;		/* of the [route] header */
	struct sqc_opt	*opts;
	size_t		 nopts;
};

struct sqc_listen {
	char		*host;		/* numeric address, no brackets */
	int		 port;
	int		 tls;		/* "tls" after the address */
};

/* tls_protocols: a bit per protocol offered */
#define SQC_TLS_1_2	0x1
#define SQC_TLS_1_3	0x2

struct sqc_cidr {
	int		 family;	/* AF_INET or AF_INET6 */
	int		 bits;
	unsigned char	 addr[16];
};

/* a [tls NAME] section: the certificate for clients that ask for NAME */
struct sqc_tls_conf {
	char		*name;		/* "www.example.com" or "*.example.com" */
	char		*certificate;	/* resolved paths */
	char		*certificate_key;
	int		 line;		/* of the [tls] header */
};

struct sqc_config {
	char		*file;		/* as given */
	char		*dir;		/* absolute folder of file */

	struct sqc_listen *listen;
	size_t		 nlisten;
	char		*plugin_dir;
	char		*pid_file;
	char		*access_log;	/* path, "-" or "off" */
	int		 access_log_format; /* enum sqc_access_format */
	char		*error_log;	/* path or "-" */
	int		 log_level;
	long long	 workers;
	char		*user;
	long long	 max_connections;
	size_t		 max_header_size;
	size_t		 max_body_size;
	long long	 request_timeout;
	long long	 shutdown_timeout;
	int		 xheaders;
	struct sqc_cidr	*trusted;	/* trusted_proxies */
	int		 ntrusted;
	long long	 max_fetches;
	long long	 offload_threads;
	long long	 offload_queue;
	char		*tls_certificate;	/* "" when none */
	char		*tls_certificate_key;
	int		 tls_protocols;		/* SQC_TLS_* bits */
	char		*tls_ciphers;		/* "": squall's default */
	struct sqc_tls_conf *tls_names;		/* [tls NAME] sections */
	size_t		 ntls_names;

	struct sqc_route_conf *routes;
	size_t		 nroutes;
};

struct sqc_config *sqc_config_load(const char *file, char *err,
	    size_t errlen);
void	 sqc_config_free(struct sqc_config *c);
int	 sqc_config_expand(struct sqc_config *c, int port_override);
int	 sqc_config_dump(const struct sqc_config *c, int port_override,
	    FILE *out);
/* config_server.c: the [server] keys */
int	 sqc_config_server_key(struct sqc_config *c, const char *name,
	    const char *value, unsigned *seen, char *why, size_t whylen);
int	 sqc_config_server_defaults(struct sqc_config *c);

/* ---- tls.c ------------------------------------------------------------ */

struct sqc_tls;
struct ssl_st;
int	 sqc_tls_new(const struct sqc_config *c, struct sqc_tls **out,
	    char *err, size_t errlen);
void	 sqc_tls_free(struct sqc_tls *t);
struct ssl_st *sqc_tls_accept(struct sqc_tls *t);
void	 sqc_tls_warn_unreadable(const struct sqc_config *c);

/* ---- values.c --------------------------------------------------------- */

char	*sqc_path_resolve(const char *dir, const char *path);
int	 sqc_parse_size(const char *s, size_t *out);
int	 sqc_parse_int(const char *s, long long min, long long max,
	    long long *out);
int	 sqc_parse_bool(const char *s, int *out);
int	 sqc_parse_listen(const char *s, struct sqc_listen *out);

/* ---- addr.c ----------------------------------------------------------- */

int	 sqc_cidr_parse(const char *s, struct sqc_cidr **out, char *bad,
	    size_t badlen);
int	 sqc_cidr_match(const struct sqc_cidr *list, int n, const char *ip);
int	 sqc_is_ip(const char *s);
int	 sqc_client_addr(const char *peer, const char *real_ip,
	    const char *forwarded, int xheaders, const struct sqc_cidr *trusted,
	    int ntrusted, char *out, size_t len);

/* ---- router.c --------------------------------------------------------- */

struct sqc_router;

struct sqc_router *sqc_router_new(void);
void	 sqc_router_free(struct sqc_router *r);
/* Adds a route; -EEXIST if the same route is there already. */
int	 sqc_router_add(struct sqc_router *r, const char *path, int prefix,
	    void *data);
/* Longest match; *rest gets the part after a prefix route's prefix. */
void	*sqc_router_match(const struct sqc_router *r, const char *path,
	    const char **rest);
/* Percent-decodes and normalises a request path in place. */
int	 sqc_path_normalize(char *path);

/* ---- plugin.c --------------------------------------------------------- */

struct sqc_module;
struct sqc_gen;

int	 sqc_plugin_init(char *err, size_t errlen);
void	 sqc_plugin_shutdown(void);
void	 sqc_plugin_cleanup_after(pid_t pid);
void	 sqc_plugin_set_owner(uid_t uid);
int	 sqc_plugin_chown(uid_t uid, gid_t gid);
/* Load every plugin and create every instance of c's routes. */
struct sqc_gen *sqc_gen_build(struct sqc_config *c, const struct sqc_gen *old,
	    char *err, size_t errlen);
void	 sqc_gen_release(struct sqc_gen *g);
struct sq_inst *sqc_gen_route(struct sqc_gen *g, const char *path,
	    const char **rest);
int	 sqc_gen_ws_deflate(const struct sqc_gen *g,
	    const struct sq_inst *inst);
size_t	 sqc_gen_count(const struct sqc_gen *g, size_t *reused);
int	 sqc_gen_route_ws(const struct sqc_gen *g, size_t i);
void	 sqc_gen_diff(const struct sqc_gen *g, const struct sqc_gen *old,
	    size_t *kept, size_t *changed, size_t *added);
const struct sq_inst *sqc_gen_at(const struct sqc_gen *g, size_t i);
/* What an instance is: its route, plugin name and version (borrowed). */
void	 sqc_inst_describe(const struct sq_inst *inst, const char **route,
	    const char **plugin, const char **version);
/* Does its plugin take HTTP requests (.handle), WebSockets (.ws_open)? */
void	 sqc_inst_counts(const struct sq_inst *inst,
	    struct sq_route_stats *out, size_t size);
int	 sqc_inst_info(const struct sq_inst *inst, size_t j, const char **key,
	    const char **value);
int	 sqc_inst_handles_http(const struct sq_inst *inst);
int	 sqc_inst_handles_ws(const struct sq_inst *inst);
void	 sqc_gen_describe(const struct sqc_gen *g, const struct sqc_gen *old,
	    char *buf, size_t len);
void	 sqc_inst_ref(struct sq_inst *inst);
void	 sqc_inst_unref(struct sq_inst *inst);

/*
 * Calls into plugin code: the descriptor's callbacks go through these, and
 * the callbacks a plugin hands the core (timers, fetches, offloaded jobs,
 * aborts) run between sqc_inst_enter and sqc_inst_leave, so that a fatal
 * signal can say which route and plugin were running. Any thread (the
 * offload workers mark their jobs too).
 */
struct sqc_server;
void	 sqc_call_handle(struct sq_inst *inst, struct sq_req *req);
int	 sqc_call_ws_open(struct sq_inst *inst, struct sq_ws *ws);
void	 sqc_call_ws_message(struct sq_inst *inst, struct sq_ws *ws,
	    const void *data, size_t len, int binary);
void	 sqc_call_ws_close(struct sq_inst *inst, struct sq_ws *ws, int code);
struct sq_inst *sqc_inst_enter(struct sq_inst *inst);
void	 sqc_inst_leave(struct sq_inst *prev);
/* The crash note of the code running on this thread, or NULL. */
const char *sqc_inst_running(void);
unsigned sqc_module_count(void);

/* ---- http.c ----------------------------------------------------------- */

struct sqc_server;

struct sqc_server *sqc_http_new(struct event_base *base, int reuseport);
void	 sqc_http_set_tls(struct sqc_server *s, struct sqc_tls *t);
int	 sqc_http_listen(struct sqc_server *s, const struct sqc_config *c,
	    int port_override, char *err, size_t errlen);
const char *sqc_http_origin(const struct sqc_server *s);
struct evhttp_request;
void	 sqc_http_apply(struct sqc_server *s, const struct sqc_config *c,
	    struct sqc_gen *gen);
void	 sqc_http_stop_accepting(struct sqc_server *s);
size_t	 sqc_http_inflight(const struct sqc_server *s);
size_t	 sqc_http_tls_connections(const struct sqc_server *s);
size_t	 sqc_http_connections(const struct sqc_server *s);
size_t	 sqc_http_unflushed(const struct sqc_server *s);
void	 sqc_http_abort_all(struct sqc_server *s);
void	 sqc_http_free(struct sqc_server *s);

/*
 * What the WebSocket bridge asks of the HTTP server, its one way there
 * (http.c fills it, main.c hands it to sqc_ws_init), so that ws_loop.c
 * and the HTTP files do not call each other in a circle: a session
 * keeps its connection counted against max_connections (hold at the
 * hand-over, release at its end), and its upgrade request gets its
 * access log line.
 */
struct sqc_ws_host {
	void	(*hold)(void);
	void	(*release)(void);
	void	(*log_access)(struct evhttp_request *ev, const char *client,
		    int status, size_t bytes);
};
const struct sqc_ws_host *sqc_http_ws_host(void);

/* ---- timer.c ---------------------------------------------------------- */

void	 sqc_timer_init(struct event_base *base);
void	 sqc_timer_cancel_all(void);
size_t	 sqc_timer_pending(void);

/* ---- fetch.c ---------------------------------------------------------- */

int	 sqc_fetch_init(struct event_base *base, size_t max);
int	 sqc_fetch_set_origin(const char *origin);
void	 sqc_fetch_set_max(size_t max);
size_t	 sqc_fetch_pending(void);
void	 sqc_fetch_counts(uint64_t *active, uint64_t *queued);
void	 sqc_fetch_cancel_all(void);
void	 sqc_fetch_free(void);
/* between fetch.c and fetch_group.c */
int	 sqc_fetch_join(struct sq_fetch *f, struct sq_fetch_group *g);
void	 sqc_fetch_release(struct sq_fetch *f);
void	 sqc_fetch_later(void (*cb)(int, short, void *), void *arg);
void	 sqc_fetch_group_done(struct sq_fetch_group *g);

/* ---- offload.c -------------------------------------------------------- */

int	 sqc_offload_init(struct event_base *base, size_t nthreads);
size_t	 sqc_offload_pending(void);
void	 sqc_offload_set_max(size_t max);
void	 sqc_offload_free(void);

/* ---- ws_loop.c: the WebSocket bridge (ws_lws.c, ws_queue.c, ws_deflate.c) */

int	 sqc_ws_init(struct event_base *base, const struct sqc_ws_host *host,
	    size_t max_header_size, char *err, size_t errlen);
int	 sqc_ws_upgrade(struct evhttp_request *ev, struct sq_inst *inst,
	    const char *subpath, const char *client, int deflate,
	    int *status);
size_t	 sqc_ws_count(void);
void	 sqc_ws_stop(void);
void	 sqc_ws_free(void);

/* ---- ws_tls.c: wss, the relay between TLS and lws' socketpair --------- */

struct bufferevent;

int	 sqc_wss_start(struct bufferevent *tls, void (*release)(void),
	    int *lws_fd);
size_t	 sqc_wss_unflushed(void);
void	 sqc_wss_free_all(void);

/* ---- upgrade.c -------------------------------------------------------- */

struct evbuffer;
struct evkeyvalq;

int	 sqc_upgrade_check(int is_get, const char *target,
	    const struct evkeyvalq *h, size_t space);
int	 sqc_upgrade_handshake(struct evbuffer *b, const struct evkeyvalq *h,
	    int deflate);
int	 sqc_upgrade_deflate_offer(const struct evkeyvalq *h, char *out,
	    size_t len);
int	 sqc_upgrade_protocols(const struct evkeyvalq *h, char ***out,
	    size_t *n);

/* ---- utf8.c ----------------------------------------------------------- */

int	 sqc_utf8_check(unsigned *state, const unsigned char *p, size_t len);

/* ---- signals.c -------------------------------------------------------- */

enum sqc_sig { SQC_SIG_RELOAD, SQC_SIG_REOPEN, SQC_SIG_STOP };

int	 sqc_signals_init(struct event_base *base,
	    void (*cb)(enum sqc_sig sig, void *arg), void *arg);
void	 sqc_signals_free(void);
int	 sqc_signal_send(const char *pid_file, const char *what, char *err,
	    size_t errlen);
int	 sqc_pid_file_check(const char *path);
int	 sqc_pid_file_write(const char *path);
void	 sqc_pid_file_remove(const char *path);
void	 sqc_reload_result_open(const char *pid_file);
void	 sqc_reload_result(const char *error);
void	 sqc_crash_handlers_init(void);

/* ---- stats.c ---------------------------------------------------------- */

/* Counters, incremented where things happen (loop thread). */
struct sqc_counters {
	uint64_t	 requests[6];	/* by status class; [0]: other */
	uint64_t	 ws_in, ws_out;	/* WebSocket messages */
	uint64_t	 fetches_failed;
	uint64_t	 reloads_ok, reloads_failed;
	uint64_t	 tls_handshakes, tls_handshake_failures;
};
extern struct sqc_counters sqc_counters;

void	 sqc_stats_init(struct sqc_server *s);
void	 sqc_stats_set_gen(struct sqc_gen *g);

/* ---- notify.c --------------------------------------------------------- */

enum sqc_notify { SQC_NOTIFY_READY, SQC_NOTIFY_RELOADING, SQC_NOTIFY_STOPPING };

void	 sqc_notify(enum sqc_notify state);

/* ---- master.c --------------------------------------------------------- */

int	 sqc_master_run(size_t n, const char *pid_file,
	    long long shutdown_timeout, int (*worker_main)(int ready_fd,
	    int index));

#endif /* SQUALL_CORE_H */
