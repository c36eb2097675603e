/*
 * main.c - squalld: the command line, start-up, the reload that swaps
 * generations, and graceful shutdown. Owns the event base, the current
 * configuration and the current generation. Loop thread.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "core.h"


static struct event_base *base;
static struct sqc_server *server;
static struct sqc_config *conf;
static struct sqc_gen *gen;
static struct event *drain_ev;
static struct timespec stop_deadline;
static int port_override;
static const char *config_file = SQ_DEFAULT_CONFIG;
static const char *pid_override;	/* -g */
static int main_process;	/* not a master's worker: notifies systemd */

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: squalld [-c FILE] [-p PORT] [-g PIDFILE] [-t] [-T] "
	    "[-s SIGNAL] [-V] [-h]\n"
	    "  -c, --config FILE   configuration (default: %s)\n"
	    "  -p, --port PORT     override the port of every listen address\n"
	    "  -t, --check-config  check the configuration and its plugins, "
	    "then exit\n"
	    "  -T, --dump-config   like -t, then print the effective "
	    "configuration\n"
	    "  -g, --pid-file FILE override pid_file (one per instance)\n"
	    "  -s, --signal SIG    send reload, reopen or stop to the running "
	    "server\n"
	    "  -V, --version       print the version and plugin ABI version\n"
	    "  -h, --help          print this help\n", SQ_DEFAULT_CONFIG);
}

static int
same_listen(const struct sqc_config *a, const struct sqc_config *b)
{
	if (a->nlisten != b->nlisten)
		return 0;
	for (size_t i = 0; i < a->nlisten; i++)
		if (a->listen[i].port != b->listen[i].port ||
		    a->listen[i].tls != b->listen[i].tls ||
		    strcmp(a->listen[i].host, b->listen[i].host) != 0)
			return 0;
	return 1;
}

/*
 * The TLS settings of c (*out NULL when it has no TLS listener): its
 * certificate and key read now, as -t, a start and a reload need them.
 * Returns 0, or -1 with err naming the file.
 */
static int
load_tls(const struct sqc_config *c, struct sqc_tls **out, char *err,
    size_t errlen)
{
	char why[SQC_ERRLEN - 64];

	if (sqc_tls_new(c, out, why, sizeof(why)) == 0)
		return 0;
	snprintf(err, errlen, "%s: %s", config_file, why);
	return -1;
}

/*
 * The configuration file, with -g applied and %p expanded (-p's port).
 * NULL with err filled.
 */
static struct sqc_config *
load_config(char *err, size_t errlen)
{
	struct sqc_config *c = sqc_config_load(config_file, err, errlen);
	char *pf;

	if (c != NULL && sqc_config_expand(c, port_override) != 0) {
		snprintf(err, errlen, "out of memory");
		sqc_config_free(c);
		return NULL;
	}
	if (c == NULL || pid_override == NULL)
		return c;
	if ((pf = strdup(pid_override)) == NULL) {
		snprintf(err, errlen, "out of memory");
		sqc_config_free(c);
		return NULL;
	}
	free(c->pid_file);
	c->pid_file = pf;
	return c;
}

static int
str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * What a reload from conf and gen to nc and ng changed, for its log
 * line: the routes, and the log files, which are not routes.
 */
static void
describe_reload(const struct sqc_config *nc, const struct sqc_gen *ng,
    char *what, size_t len)
{
	int access = !str_eq(nc->access_log, conf->access_log);
	int error = !str_eq(nc->error_log, conf->error_log);
	size_t off;

	sqc_gen_describe(ng, gen, what, len);
	if ((access || error) && strcmp(what, "nothing changed") == 0)
		what[0] = '\0';
	if (access && (off = strlen(what)) < len)
		snprintf(what + off, len - off, "%saccess_log %s",
		    off ? ", " : "", nc->access_log ? nc->access_log : "-");
	if (error && (off = strlen(what)) < len)
		snprintf(what + off, len - off, "%serror_log %s",
		    off ? ", " : "", nc->error_log && *nc->error_log ?
		    nc->error_log : "-");
}

/* SIGHUP: all or nothing; on failure the running configuration stays. */
static void
reload(void)
{
	char err[SQC_ERRLEN], what[1024];
	struct sqc_config *nc;
	struct sqc_gen *ng = NULL;
	struct sqc_tls *nt = NULL;
	size_t n, kept, changed, added;
	int relisten;

	sqc_log(SQ_LOG_INFO, NULL, "reloading %s", config_file);
	if (main_process)
		sqc_notify(SQC_NOTIFY_RELOADING);
	if ((nc = load_config(err, sizeof(err))) == NULL ||
	    load_tls(nc, &nt, err, sizeof(err)) != 0 ||
	    (ng = sqc_gen_build(nc, gen, err, sizeof(err))) == NULL)
		goto fail;
	relisten = !same_listen(nc, conf);
	if (relisten && sqc_http_listen(server, nc, port_override, err,
	    sizeof(err)) != 0)
		goto fail;
	if ((!str_eq(nc->error_log, conf->error_log) ||
	    !str_eq(nc->access_log, conf->access_log)) &&
	    sqc_log_open(nc->error_log, nc->access_log, err,
	    sizeof(err)) != 0) {
		char ignored[SQC_ERRLEN];

		if (relisten)	/* back to the addresses of conf */
			(void)sqc_http_listen(server, conf, port_override,
			    ignored, sizeof(ignored));
		goto fail;
	}
	/* new handshakes get the certificates just read; open ones go on */
	sqc_http_set_tls(server, nt);
	sqc_fetch_set_origin(sqc_http_origin(server));
	if (!str_eq(nc->pid_file, conf->pid_file))
		sqc_log(SQ_LOG_WARN, NULL, "pid_file changed: it takes effect "
		    "at the next restart");
	if (nc->offload_threads != conf->offload_threads ||
	    nc->workers != conf->workers)
		sqc_log(SQ_LOG_WARN, NULL, "offload_threads or workers changed: "
		    "that takes effect at the next restart");
	sqc_log_set_level(nc->log_level);
	sqc_access_log_set_format(nc->access_log_format);
	sqc_fetch_set_max((size_t)nc->max_fetches);
	sqc_offload_set_max((size_t)nc->offload_queue);
	sqc_http_apply(server, nc, ng);
	sqc_gen_diff(ng, gen, &kept, &changed, &added);
	describe_reload(nc, ng, what, sizeof(what));
	sqc_gen_release(gen);
	gen = ng;
	/* keep the pid_file that was written: it changes at a restart */
	{
		char *pf = nc->pid_file;

		nc->pid_file = conf->pid_file;
		conf->pid_file = pf;
	}
	sqc_config_free(conf);
	conf = nc;
	n = sqc_gen_count(gen, NULL);
	sqc_log(SQ_LOG_INFO, NULL, "reloaded: %zu route%s (%zu kept, %zu "
	    "changed, %zu new), %u plugin module%s loaded: %s", n,
	    n == 1 ? "" : "s", kept, changed, added, sqc_module_count(),
	    sqc_module_count() == 1 ? "" : "s", what);
	sqc_reload_result(NULL);
	sqc_counters.reloads_ok++;
	sqc_stats_set_gen(gen);
	if (main_process)
		sqc_notify(SQC_NOTIFY_READY);
	return;
fail:
	sqc_log(SQ_LOG_ERROR, NULL, "reload failed, keeping the running "
	    "configuration: %s", err);
	sqc_reload_result(err);
	sqc_counters.reloads_failed++;
	if (main_process)
		sqc_notify(SQC_NOTIFY_READY);
	sqc_gen_release(ng);
	sqc_tls_free(nt);
	sqc_config_free(nc);
}

static void
drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (sqc_http_inflight(server) == 0 &&
	    sqc_http_unflushed(server) == 0 && sqc_ws_count() == 0 &&
	    sqc_wss_unflushed() == 0) {
		event_base_loopexit(base, NULL);
		return;
	}
	if (now.tv_sec > stop_deadline.tv_sec ||
	    (now.tv_sec == stop_deadline.tv_sec &&
	    now.tv_nsec >= stop_deadline.tv_nsec)) {
		sqc_log(SQ_LOG_WARN, NULL, "shutdown_timeout: ending %zu "
		    "request%s still in flight", sqc_http_inflight(server),
		    sqc_http_inflight(server) == 1 ? "" : "s");
		event_base_loopexit(base, NULL);
	}
}

static void
stop(void)
{
	struct timeval tick = { 0, 20000 };

	if (drain_ev != NULL)
		return;
	sqc_log(SQ_LOG_INFO, NULL, "stopping: %zu request%s in flight",
	    sqc_http_inflight(server),
	    sqc_http_inflight(server) == 1 ? "" : "s");
	if (main_process)
		sqc_notify(SQC_NOTIFY_STOPPING);
	sqc_http_stop_accepting(server);
	sqc_ws_stop();		/* WebSockets close with 1001 */
	clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
	stop_deadline.tv_sec += conf->shutdown_timeout;
	drain_ev = event_new(base, -1, EV_PERSIST, drain_check, NULL);
	if (drain_ev == NULL || event_add(drain_ev, &tick) != 0)
		event_base_loopexit(base, NULL);
	else
		drain_check(-1, 0, NULL);
}

static void
on_signal(enum sqc_sig sig, void *arg)
{
	switch (sig) {
	case SQC_SIG_RELOAD:
		if (drain_ev == NULL)
			reload();
		break;
	case SQC_SIG_REOPEN:
		if (sqc_log_reopen() == 0)
			sqc_log(SQ_LOG_INFO, NULL, "log files reopened");
		break;
	case SQC_SIG_STOP:
		stop();
		break;
	}
}

static struct event_base *
make_base(void)
{
	struct event_config *cfg;
	struct event_base *b;

	/*
	 * The WebSocket thread and the offload pool wake the loop from other
	 * threads: libevent must lock. The environment does not choose the
	 * backend; the changelist batches epoll changes within a loop turn
	 * (evhttp disables and re-enables reading around every request: 4
	 * epoll_ctl calls become 2), which is why ws_loop.c hands sockets over on
	 * the next turn.
	 */
	if (evthread_use_pthreads() != 0)
		return NULL;
	if ((cfg = event_config_new()) == NULL)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_IGNORE_ENV |
	    EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	b = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return b;
}

/* -t, and -T (dump): the configuration and every plugin, nothing served. */
static int
check_config(int dump)
{
	char err[SQC_ERRLEN];
	struct sqc_gen *g;
	struct sqc_tls *t;
	size_t n;

	if ((conf = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "squalld: %s\n", err);
		return 1;
	}
	if (load_tls(conf, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "squalld: %s\n", err);
		sqc_config_free(conf);
		return 1;
	}
	sqc_tls_free(t);
	sqc_log_set_level(conf->log_level);
	if (sqc_plugin_init(err, sizeof(err)) != 0) {
		fprintf(stderr, "squalld: %s\n", err);
		sqc_config_free(conf);
		return 1;
	}
	sqc_timer_init(NULL);
	if ((base = make_base()) == NULL ||
	    sqc_fetch_init(base, (size_t)conf->max_fetches) != 0) {
		fprintf(stderr, "squalld: cannot set up the event loop\n");
		return 1;
	}
	g = sqc_gen_build(conf, NULL, err, sizeof(err));
	if (g == NULL)
		fprintf(stderr, "squalld: %s\n", err);
	else {
		n = sqc_gen_count(g, NULL);
		fprintf(stderr, "squalld: %s: configuration is valid (%zu "
		    "route%s)\n", config_file, n, n == 1 ? "" : "s");
		for (size_t i = 0; i < conf->nroutes; i++)
			conf->routes[i].no_ws = !sqc_gen_route_ws(g, i);
		sqc_gen_release(g);
		if (dump && sqc_config_dump(conf, port_override, stdout) != 0) {
			fprintf(stderr, "squalld: cannot write the "
			    "configuration: %s\n", strerror(errno));
			g = NULL;
		}
	}
	sqc_plugin_shutdown();
	sqc_fetch_free();
	event_base_free(base);
	sqc_config_free(conf);
	return g ? 0 : 1;
}

/*
 * -s: signals the running server. reload first checks the configuration
 * as -t does (nothing is signalled if it is invalid), then waits for the
 * server's own outcome. With -g, reopen and stop need no configuration.
 */
/*
 * -s reload's check, run as the server will run it: as the configured
 * user when we are root, in a child that becomes that user. The server
 * has become it; as root, the check would run every plugin's create()
 * with root's rights, and read files the server cannot. 0 when valid;
 * *who names the user it ran as ("" for ourselves).
 */
static int
check_as_server(char *who, size_t wholen)
{
	char err[SQC_ERRLEN];
	struct sqc_config *c;
	struct passwd *pw = NULL;
	pid_t pid;
	int st;

	*who = '\0';
	if (geteuid() == 0 && (c = load_config(err, sizeof(err))) != NULL) {
		if (c->user && *c->user && (pw = getpwnam(c->user)) != NULL)
			snprintf(who, wholen, "%s", pw->pw_name);
		sqc_config_free(c);
	}
	if (*who == '\0')
		return check_config(0);
	fflush(stderr);
	if ((pid = fork()) < 0)
		return -errno;
	if (pid == 0) {
		if (initgroups(who, pw->pw_gid) != 0 ||
		    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
			fprintf(stderr, "squalld: cannot become user '%s' to "
			    "check the configuration: %s\n", who,
			    strerror(errno));
			_exit(1);
		}
		_exit(check_config(0) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int
send_signal(const char *what)
{
	char err[SQC_ERRLEN], who[256];
	const char *pid_file;
	int rc;

	if (strcmp(what, "reload") == 0 &&
	    check_as_server(who, sizeof(who)) != 0) {
		fprintf(stderr, "squalld: nothing was signalled: the "
		    "configuration is invalid%s%s%s\n", *who ? " (checked as "
		    "user " : "", who, *who ? ", as the server runs)" : "");
		return 1;
	}
	conf = NULL;
	if (pid_override != NULL && strcmp(what, "reload") != 0)
		pid_file = pid_override;
	else if ((conf = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "squalld: %s\n", err);
		return 1;
	} else
		pid_file = conf->pid_file;
	rc = sqc_signal_send(pid_file, what, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "squalld: %s\n", err);
	else if (strcmp(what, "reload") == 0)
		fprintf(stderr, "squalld: reloaded\n");
	sqc_config_free(conf);
	conf = NULL;
	return rc ? 1 : 0;
}

/*
 * With `user`, the private plugin folders become that user's: their
 * owner too may have left one behind to remove (plugin.c).
 */
static void
note_owner(const char *user)
{
	struct passwd *pw;

	if (user && *user && geteuid() == 0 && (pw = getpwnam(user)) != NULL)
		sqc_plugin_set_owner(pw->pw_uid);
}

/*
 * `user`: once the sockets are bound and the pid file written, a server
 * started as root becomes that user. The private folder of plugin copies
 * becomes the user's, so that reloads can still load plugins; log files
 * stay open. Started as anyone else, the key is ignored with a warning.
 */
static int
become_user(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	if (user == NULL || *user == '\0')
		return 0;
	if (geteuid() != 0) {
		sqc_log(SQ_LOG_WARN, NULL, "user = %s ignored: squalld was not "
		    "started as root", user);
		return 0;
	}
	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "%s: user '%s': %s", config_file, user,
		    errno ? strerror(errno) : "no such user");
		return -EINVAL;
	}
	if (sqc_log_give(user, pw->pw_uid, pw->pw_gid, err, errlen) != 0)
		return -EACCES;
	if (sqc_plugin_chown(pw->pw_uid, pw->pw_gid) != 0 ||
	    initgroups(pw->pw_name, pw->pw_gid) != 0 ||
	    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		snprintf(err, errlen, "cannot become user '%s': %s", user,
		    strerror(errno));
		return -EPERM;
	}
	sqc_log(SQ_LOG_INFO, NULL, "running as user %s (uid %d)", user,
	    (int)pw->pw_uid);
	return 0;
}

/*
 * Starts what serves, in this order: the loop, timers, the HTTP client,
 * the plugins and the first generation, the HTTP server and its
 * listeners, the offload pool, the WebSocket bridge, the crash and
 * signal handlers, the pid file (*pid_file, when ours), the user.
 * stop_subsystems() undoes it in the reverse order from wherever this
 * stopped. Returns 0, or -1 (logged).
 */
static int
start_subsystems(int ready_fd, const char **pid_file)
{
	char err[SQC_ERRLEN];
	int rc;

	if ((base = make_base()) == NULL) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot create the event loop");
		return -1;
	}
	sqc_timer_init(base);
	if (sqc_fetch_init(base, (size_t)conf->max_fetches) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot set up the HTTP client");
		return -1;
	}
	note_owner(conf->user);
	if (sqc_plugin_init(err, sizeof(err)) != 0 ||
	    (gen = sqc_gen_build(conf, NULL, err, sizeof(err))) == NULL) {
		sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
		return -1;
	}
	if ((server = sqc_http_new(base, ready_fd >= 0)) == NULL) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot create the HTTP server");
		return -1;
	}
	{
		struct sqc_tls *t;

		if (load_tls(conf, &t, err, sizeof(err)) != 0) {
			sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
			return -1;
		}
		sqc_http_set_tls(server, t);
	}
	sqc_http_apply(server, conf, gen);
	sqc_stats_init(server);
	sqc_stats_set_gen(gen);
	if (sqc_http_listen(server, conf, port_override, err,
	    sizeof(err)) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
		return -1;
	}
	rc = -ENOMEM;
	if (sqc_fetch_set_origin(sqc_http_origin(server)) != 0 ||
	    (rc = sqc_offload_init(base, (size_t)conf->offload_threads)) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot start the offload pool: %s",
		    strerror(-rc));
		return -1;
	}
	sqc_offload_set_max((size_t)conf->offload_queue);
	if (sqc_ws_init(base, sqc_http_ws_host(), conf->max_header_size,
	    err, sizeof(err)) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
		return -1;
	}
	sqc_crash_handlers_init();
	if (sqc_signals_init(base, on_signal, NULL) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot install signal handlers");
		return -1;
	}
	if (ready_fd < 0) {
		if (sqc_pid_file_check(conf->pid_file) != 0)
			return -1;
		sqc_reload_result_open(conf->pid_file);
		if (sqc_pid_file_write(conf->pid_file) != 0)
			return -1;
		*pid_file = conf->pid_file;
	}
	if (become_user(conf->user, err, sizeof(err)) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
		return -1;
	}
	sqc_tls_warn_unreadable(conf);
	return 0;
}

/* What start_subsystems started, stopped in the reverse order. */
static void
stop_subsystems(const char *pid_file)
{
	sqc_pid_file_remove(pid_file);
	sqc_ws_free();
	sqc_timer_cancel_all();
	sqc_fetch_cancel_all();
	sqc_offload_free();
	if (server)
		sqc_http_free(server);
	sqc_timer_cancel_all();
	sqc_fetch_free();
	sqc_gen_release(gen);
	sqc_signals_free();
	if (drain_ev)
		event_free(drain_ev);
	sqc_plugin_shutdown();
	if (base)
		event_base_free(base);
}

/*
 * Says the server is ready (the log, the master's pipe, systemd), then
 * serves until told to stop. Past shutdown_timeout, what is still pending
 * hears -ECANCELED or its abort callback, and its answer gets a second
 * to be written. Returns 0, or -1 when the master could not be told.
 */
static int
run(int ready_fd)
{
	char what[1024];
	size_t n = sqc_gen_count(gen, NULL);

	sqc_gen_describe(gen, NULL, what, sizeof(what));
	sqc_log(SQ_LOG_INFO, NULL, "squalld %s ready: %zu route%s, pid %d: "
	    "%s",
	    PACKAGE_VERSION, n, n == 1 ? "" : "s", (int)getpid(), what);
	if (ready_fd >= 0 && write(ready_fd, "r", 1) != 1)
		return -1;
	if ((main_process = ready_fd < 0))
		sqc_notify(SQC_NOTIFY_READY);
	event_base_dispatch(base);
	if (sqc_http_inflight(server) > 0 || sqc_timer_pending() > 0 ||
	    sqc_fetch_pending() > 0 || sqc_offload_pending() > 0) {
		sqc_timer_cancel_all();
		sqc_fetch_cancel_all();
		sqc_offload_free();
		sqc_http_abort_all(server);
		clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
		stop_deadline.tv_sec += 1;
		event_base_dispatch(base);
	}
	sqc_log(SQ_LOG_INFO, NULL, "stopped");
	return 0;
}

/*
 * Runs the server until it is told to stop. ready_fd < 0: the only
 * process, which owns the pid file. Otherwise a worker of the master,
 * which binds with SO_REUSEPORT and writes a byte to ready_fd once it
 * serves.
 */
static int
serve(int ready_fd)
{
	char err[SQC_ERRLEN];
	const char *pid_file = NULL;	/* written by us, removed at exit */
	int status = 1;

	if ((conf = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "squalld: %s\n", err);
		return 1;
	}
	sqc_log_set_level(conf->log_level);
	sqc_access_log_set_format(conf->access_log_format);
	if (sqc_log_open(conf->error_log, conf->access_log, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "squalld: %s\n", err);
		sqc_config_free(conf);
		return 1;
	}
	if (start_subsystems(ready_fd, &pid_file) == 0 && run(ready_fd) == 0)
		status = 0;
	stop_subsystems(pid_file);
	sqc_config_free(conf);
	sqc_log_close();
	return status;
}

static int
worker_main(int ready_fd, int index)
{
	return serve(ready_fd);
}

/*
 * One process, or with workers > 1 a master that runs them. Port 0 lets
 * each worker pick its own port, so workers need fixed ports.
 */
static int
start(void)
{
	char err[SQC_ERRLEN];
	struct sqc_config *c;
	int rc;

	if ((c = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "squalld: %s\n", err);
		return 1;
	}
	if (c->workers <= 1) {
		sqc_config_free(c);
		return serve(-1);
	}
	for (size_t i = 0; i < c->nlisten && port_override == 0; i++)
		if (c->listen[i].port == 0) {
			fprintf(stderr, "squalld: %s: listen %s:0 with workers "
			    "= %lld: workers need a fixed port\n", config_file,
			    c->listen[i].host, c->workers);
			sqc_config_free(c);
			return 1;
		}
	sqc_log_set_level(c->log_level);
	if (sqc_log_open(c->error_log, "off", err, sizeof(err)) != 0) {
		fprintf(stderr, "squalld: %s\n", err);
		sqc_config_free(c);
		return 1;
	}
	note_owner(c->user);
	rc = sqc_master_run((size_t)c->workers, c->pid_file,
	    c->shutdown_timeout, worker_main);
	sqc_config_free(c);
	sqc_log_close();
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",	  required_argument, NULL, 'c' },
		{ "port",	  required_argument, NULL, 'p' },
		{ "check-config", no_argument,	     NULL, 't' },
		{ "dump-config", no_argument,	     NULL, 'T' },
		{ "signal",	  required_argument, NULL, 's' },
		{ "pid-file",	  required_argument, NULL, 'g' },
		{ "version",	  no_argument,	     NULL, 'V' },
		{ "help",	  no_argument,	     NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sig = NULL;
	int ch, check = 0;
	long long port;

	while ((ch = getopt_long(argc, argv, "c:p:tTs:g:Vh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_file = optarg;
			break;
		case 'p':
			if (sqc_parse_int(optarg, 1, 65535, &port) != 0) {
				fprintf(stderr, "squalld: bad port '%s': "
				    "expected 1 to 65535\n", optarg);
				return 2;
			}
			port_override = (int)port;
			break;
		case 't':
			check = 1;
			break;
		case 'T':
			check = 2;
			break;
		case 's':
			sig = optarg;
			break;
		case 'g':
			pid_override = optarg;
			break;
		case 'V':
			printf("squalld %s (plugin ABI %d)\n", PACKAGE_VERSION,
			    SQ_PLUGIN_ABI);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "squalld: unexpected argument '%s'\n",
		    argv[optind]);
		usage(stderr);
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "squalld: cannot initialise libcurl\n");
		return 1;
	}
	atexit(curl_global_cleanup);
	if (check)
		return check_config(check == 2);
	if (sig)
		return send_signal(sig);
	return start();
}
