/*
 * test_deploy.c - the deployment of SPEC section 8 with the real
 * components: supervisord runs two squalld from etc/supervisor/squall.conf,
 * nginx from etc/nginx/squall.conf balances over them, and traffic goes
 * through nginx. The broker variant (supervisor/squall-broker.conf,
 * nginx/squall-broker.conf, squall-broker.ini) does the same with a
 * redis-server of the test's own, and /chat balanced too. The files are
 * used as shipped, with their paths and ports pointed at the build tree
 * and free loopback ports (and without supervisor's user=, since the
 * build tree may not be readable by www-data). Skipped when nginx or
 * supervisord (or, for the broker, redis-server) is not installed (as
 * scripts/test installs them, never in CI).
 *
 * make installcheck (which make distcheck runs under a prefix of its own)
 * runs this suite again on what was installed, with SQUALL_EXAMPLES,
 * SQUALL_SBINDIR and SQUALL_CONFDIR set: the examples as installed, which
 * must name that prefix's squalld and squall.ini, and the installed
 * squalld serving the installed configuration, plugins and web/.
 */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>

#include "harness.h"

struct deploy {
	char	 dir[256];
	int	 port[2];	/* the two squalld */
	int	 front;		/* nginx */
	pid_t	 supervisord, nginx, redis;
	char	 sup_conf[400];
};

static struct deploy d;

static int
have(const char *prog)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/* Replaces every occurrence of from by to in a malloc'ed string. */
/* Can a socket be bound to [::1] here (some containers have no IPv6)? */
static int
have_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	sa.sin6_addr = in6addr_loopback;
	ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static char *
replace(char *text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	char *p, *out, *o;

	for (p = text; (p = strstr(p, from)) != NULL; p += fl)
		n++;
	out = malloc(strlen(text) + n * (tl + 1) + 1);
	for (p = text, o = out; *p;) {
		if (strncmp(p, from, fl) == 0) {
			memcpy(o, to, tl);
			o += tl;
			p += fl;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	free(text);
	return out;
}

/* The installed tree's directory VAR (see above), or NULL. */
static const char *
installed(const char *var)
{
	const char *v = getenv(var);

	return v != NULL && *v != '\0' ? v : NULL;
}

/* etc/REL as shipped in the source tree. Malloc'ed. */
static char *
shipped(const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/etc/%s", t_srcdir(), rel);
	return t_read(path, NULL);
}

/*
 * The deployment example REL (such as "systemd/squalld.service") made to
 * run the squalld under test. Installed, it names the installed squalld,
 * and nothing of /usr/local; from the source tree it names
 * /usr/local/sbin/squalld, which becomes the build tree's. Malloc'ed.
 */
static char *
example(const char *rel)
{
	const char *dir = installed("SQUALL_EXAMPLES");
	char path[512], squalld[512], *text;

	if (dir == NULL) {
		snprintf(squalld, sizeof(squalld), "%s/core/squalld",
		    t_builddir());
		return replace(shipped(rel), "/usr/local/sbin/squalld",
		    squalld);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	cr_assert_eq(access(path, R_OK), 0, "%s was not installed", path);
	text = t_read(path, NULL);
	cr_assert_null(strstr(text, "/usr/local/"), "%s names /usr/local "
	    "although installed under another prefix", path);
	snprintf(squalld, sizeof(squalld), "%s/squalld",
	    installed("SQUALL_SBINDIR"));
	cr_assert(strstr(text, "squalld -") == NULL ||
	    strstr(text, squalld) != NULL, "%s does not run %s", path, squalld);
	return text;
}

/* Where the examples say squall.ini and squall-broker.ini are. */
static const char *
conf_dir(void)
{
	const char *dir = installed("SQUALL_CONFDIR");

	return dir ? dir : "/usr/local/etc/squall";
}

/* The installed configuration NAME (squall.ini ...). Malloc'ed. */
static char *
installed_conf(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", installed("SQUALL_CONFDIR"),
	    name);
	return t_read(path, NULL);
}

static pid_t
spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		FILE *fp = fopen(log, "w");

		if (fp) {
			dup2(fileno(fp), STDOUT_FILENO);
			dup2(fileno(fp), STDERR_FILENO);
		}
		setpgid(0, 0);
		t_close_inherited();
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void
wait_accepting(int port, const char *what)
{
	long deadline = t_now_ms() + 20000;
	int fd;

	while ((fd = t_connect(port)) < 0) {
		cr_assert_lt(t_now_ms(), deadline, "%s never accepted on port "
		    "%d", what, port);
		usleep(20 * 1000);
	}
	close(fd);
}

static char *log_path(int i, char *buf, size_t len);

/* Stops everything; a sanitizer report in a server's log fails the test. */
static void
teardown(void)
{
	char path[400], *log, *hit = NULL;
	int st;

	if (d.nginx > 0) {
		kill(-d.nginx, SIGTERM);
		waitpid(d.nginx, &st, 0);
	}
	if (d.supervisord > 0) {
		kill(d.supervisord, SIGTERM);	/* stops its programs */
		waitpid(d.supervisord, &st, 0);
	}
	if (d.redis > 0) {
		kill(d.redis, SIGKILL);
		waitpid(d.redis, &st, 0);
	}
	for (int i = 0; i < 2 && d.dir[0] && hit == NULL; i++) {
		log = t_read(log_path(i, path, sizeof(path)), NULL);
		if ((hit = strstr(log, "Sanitizer")) == NULL &&
		    (hit = strstr(log, "runtime error:")) == NULL)
			free(log);
	}
	t_rm_rf(d.dir);
	if (hit)
		cr_assert_fail("squalld under supervisord reported:\n%.3000s",
		    hit);
}

TestSuite(deploy, .fini = teardown, .timeout = 90);

#define DEBIAN_DEFAULT_SITE "/etc/nginx/sites-available/default"


/*
 * squall-broker.ini with its broker on rport: the installed one, or the
 * source tree's made to run here (the built plugins, the source tree's
 * web/). Malloc'ed.
 */
static char *
broker_ini(int rport)
{
	char *ini, to[512];

	if (installed("SQUALL_CONFDIR"))
		ini = installed_conf("squall-broker.ini");
	else {
		ini = shipped("squall-broker.ini");
		cr_assert_not_null(strstr(ini, "\nplugin_dir = ../plugins "));
		snprintf(to, sizeof(to), "\nplugin_dir = %s ", t_plugin_dir());
		ini = replace(ini, "\nplugin_dir = ../plugins ", to);
		snprintf(to, sizeof(to), "\nroot = %s/web", t_srcdir());
		ini = replace(ini, "\nroot = ../web", to);
	}
	cr_assert_not_null(strstr(ini, "\nbroker = redis://127.0.0.1:6379 "));
	snprintf(to, sizeof(to), "\nbroker = redis://127.0.0.1:%d ", rport);
	return replace(ini, "\nbroker = redis://127.0.0.1:6379 ", to);
}

/* squall.ini with xheaders on, as the nginx example asks. Malloc'ed. */
static char *
default_ini(void)
{
	char *ini;

	if (!installed("SQUALL_CONFDIR"))
		return t_default_ini("on");
	ini = installed_conf("squall.ini");
	cr_assert_not_null(strstr(ini, "\nxheaders = off "));
	return replace(ini, "\nxheaders = off ", "\nxheaders = on  ");
}

static void start_deployment_variant(const char *, int);

/*
 * The shipped files, made to run here: supervisord with two squalld on
 * free ports, nginx in front. access_log, when not NULL, replaces the
 * shipped "access_log = -" (the logs then go to that file).
 */
static void
start_deployment_logging(const char *access_log)
{
	start_deployment_variant(access_log, 0);
}

/*
 * The same with the broker variant when rport is not 0: squall-broker.ini
 * with its broker on rport, supervisor/squall-broker.conf and
 * nginx/squall-broker.conf.
 */
static void
start_deployment_variant(const char *access_log, int rport)
{
	const char *v = rport ? "-broker" : "";
	char rel[64], conf_path[128];
	char path[512], ports[2][16], front[16], *text, *ini;
	char *sup_argv[] = { "supervisord", "-n", "-c", d.sup_conf, NULL };
	char ngx_conf[400], *ngx_argv[] = { "nginx", "-c", ngx_conf, "-p",
	    d.dir, NULL };
	char *site;

	memset(&d, 0, sizeof(d));
	if (!have("supervisord") || !have("nginx"))
		cr_skip_test("nginx and supervisord are needed (Debian: "
		    "nginx-light supervisor)");
	if (rport && !have("redis-server"))
		cr_skip_test("redis-server is needed (Debian: redis-server)");
	t_tmpdir(d.dir, sizeof(d.dir));
	if (rport) {
		char port[16], *redis_argv[] = { "redis-server", "--port", port,
		    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		    "--dir", d.dir, "--daemonize", "no", NULL };
		char log[300];

		snprintf(port, sizeof(port), "%d", rport);
		snprintf(log, sizeof(log), "%s/redis.log", d.dir);
		d.redis = spawn(redis_argv, log);
		wait_accepting(rport, "redis-server");
	}
	for (int i = 0; i < 2; i++) {
		d.port[i] = t_free_port();
		snprintf(ports[i], sizeof(ports[i]), "%d", d.port[i]);
	}
	d.front = t_free_port();
	snprintf(front, sizeof(front), "%d", d.front);

	/* squall.ini as shipped, with xheaders on as the nginx file asks */
	ini = rport ? broker_ini(rport) : default_ini();
	if (access_log) {
		char line[512];

		snprintf(line, sizeof(line), "access_log = %s", access_log);
		ini = replace(ini, "access_log = -", line);
	}
	snprintf(path, sizeof(path), "%s/squall.ini", d.dir);
	t_write(path, "%s", ini);
	free(ini);

	/* etc/supervisor/squall.conf, pointed at the build tree */
	snprintf(rel, sizeof(rel), "supervisor/squall%s.conf", v);
	text = example(rel);
	snprintf(conf_path, sizeof(conf_path), "%s/squall%s.ini", conf_dir(),
	    v);
	cr_assert_not_null(strstr(text, conf_path));
	text = replace(text, conf_path, path);
	{
		char from[2][16] = { "-p 8000", "-p 8001" }, to[16];

		for (int i = 0; i < 2; i++) {
			snprintf(to, sizeof(to), "-p %d", d.port[i]);
			text = replace(text, from[i], to);
		}
	}
	text = replace(text, "/var/log/supervisor", d.dir);
	text = replace(text, "/run/squall", d.dir);
	text = replace(text, "user=www-data\n", "");
	snprintf(path, sizeof(path), "%s/programs.conf", d.dir);
	t_write(path, "%s", text);
	free(text);
	snprintf(d.sup_conf, sizeof(d.sup_conf), "%s/supervisord.conf", d.dir);
	t_write(d.sup_conf,
	    "[supervisord]\nlogfile=%s/supervisord.log\npidfile=%s/sd.pid\n"
	    "childlogdir=%s\n"
	    "[unix_http_server]\nfile=%s/supervisor.sock\n"
	    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
	    "supervisor.rpcinterface:make_main_rpcinterface\n"
	    "[supervisorctl]\nserverurl=unix://%s/supervisor.sock\n"
	    "[include]\nfiles = %s\n", d.dir, d.dir, d.dir, d.dir, d.dir,
	    path);
	d.supervisord = spawn(sup_argv, "/dev/null");
	wait_accepting(d.port[0], "squalld (first program)");
	wait_accepting(d.port[1], "squalld (second program)");

	/* etc/nginx/squall.conf in an http block of our own */
	snprintf(rel, sizeof(rel), "nginx/squall%s.conf", v);
	text = example(rel);
	text = replace(text, "127.0.0.1:8000", "127.0.0.1:PORT0");
	text = replace(text, "127.0.0.1:8001", "127.0.0.1:PORT1");
	text = replace(text, "PORT0", ports[0]);
	text = replace(text, "PORT1", ports[1]);
	text = replace(text, "listen 80;", "listen 127.0.0.1:FRONT;");
	/* IPv6 too, as shipped, where this machine has it */
	text = replace(text, "listen [::]:80;", have_ipv6_loopback() ?
	    "listen [::1]:FRONT;" : "");
	text = replace(text, "FRONT", front);
	/*
	 * Beside Debian's default site, as on a stock Debian: it is the
	 * default_server of the same port.
	 */
	site = access(DEBIAN_DEFAULT_SITE, R_OK) == 0 ?
	    t_read(DEBIAN_DEFAULT_SITE, NULL) : strdup("");
	site = replace(site, "listen [::]:80 default_server;", "");
	site = replace(site, "listen 80 default_server;",
	    "listen 127.0.0.1:FRONT default_server;");
	site = replace(site, "FRONT", front);
	snprintf(ngx_conf, sizeof(ngx_conf), "%s/nginx.conf", d.dir);
	t_write(ngx_conf, "daemon off;\nworker_processes 1;\npid %s/nginx.pid;\n"
	    "error_log %s/nginx-error.log warn;\nevents { }\nhttp {\n"
	    "access_log off;\nclient_body_temp_path %s;\nproxy_temp_path %s;\n"
	    "%s\n%s}\n", d.dir, d.dir, d.dir, d.dir, site, text);
	free(site);
	free(text);
	d.nginx = spawn(ngx_argv, "/dev/null");
	wait_accepting(d.front, "nginx");
}

static void
start_deployment(void)
{
	start_deployment_logging(NULL);
}

/* The log supervisord keeps of program i (its stdout_logfile). */
static char *
log_path(int i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/squall-%s.log", d.dir, i == 0 ? "8000" :
	    "8001");
	return buf;
}

static int
log_count(int i, const char *text)
{
	char path[400], *log, *p;
	int n = 0;

	log = t_read(log_path(i, path, sizeof(path)), NULL);
	for (p = log; (p = strstr(p, text)) != NULL; p += strlen(text))
		n++;
	free(log);
	return n;
}

/*
 * GET through nginx from a chosen local address (127.0.0.x), with a
 * Host header of host (NULL: 127.0.0.1:port).
 */
static long
get_as(const char *src, const char *host, const char *path, char **body)
{
	char url[256], hdr[256];
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	long status = 0;
	FILE *mem;
	size_t len = 0;

	*body = NULL;
	mem = open_memstream(body, &len);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", d.front, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_INTERFACE, src);
	if (host) {
		snprintf(hdr, sizeof(hdr), "Host: %s", host);
		h = curl_slist_append(h, hdr);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	}
	curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	fclose(mem);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	return status;
}

static long
get_from(const char *src, const char *path, char **body)
{
	return get_as(src, NULL, path, body);
}

Test(deploy, nginx_balances_over_two_supervised_servers)
{
	char *body;

	start_deployment();
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(get_from("127.0.0.1", "/hello", &body), 200);
		cr_assert_str_eq(body, "Hello, world");
		free(body);
	}
	cr_assert_gt(log_count(0, "\"GET /hello HTTP/1.1\" 200"), 0,
	    "the first server got nothing");
	cr_assert_gt(log_count(1, "\"GET /hello HTTP/1.1\" 200"), 0,
	    "the second server got nothing");
	cr_assert_eq(get_from("127.0.0.1", "/data", &body), 200);
	cr_assert_not_null(strstr(body, "{\"data\":"), "%s", body);
	free(body);
	cr_assert_eq(get_from("127.0.0.1", "/multi", &body), 200);
	cr_assert_not_null(strstr(body, "\"second\":"), "%s", body);
	free(body);
	cr_assert_eq(get_from("127.0.0.1", "/", &body), 200);
	free(body);
	/* the shipped file listens on IPv6 too (issue 15, item 12) */
	if (have_ipv6_loopback()) {
		char url[64];
		CURL *c = curl_easy_init();
		long status = 0;

		snprintf(url, sizeof(url), "http://[::1]:%d/hello", d.front);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		cr_assert_eq(status, 200, "GET %s through nginx: %ld", url,
		    status);
	}
}

/*
 * Beside Debian's default site (the default_server of the same port), the
 * shipped file still serves its names; other names reach the default.
 */
Test(deploy, nginx_file_works_beside_debians_default_site)
{
	char *body;

	if (access(DEBIAN_DEFAULT_SITE, R_OK) != 0)
		cr_skip_test("no %s here", DEBIAN_DEFAULT_SITE);
	start_deployment();
	cr_assert_eq(get_as("127.0.0.1", "localhost", "/hello", &body), 200);
	cr_assert_str_eq(body, "Hello, world");
	free(body);
	cr_assert_eq(get_as("127.0.0.1", "squall.example.com", "/hello",
	    &body), 200);
	cr_assert_str_eq(body, "Hello, world");
	free(body);
	/* another name: Debian's site, which has no /hello */
	cr_assert_eq(get_as("127.0.0.1", "elsewhere.example", "/hello", &body),
	    404);
	free(body);
}

Test(deploy, client_address_comes_from_nginx)
{
	char *body;

	start_deployment();
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(get_from("127.0.0.7", "/hello", &body), 200);
		free(body);
	}
	cr_assert_gt(log_count(0, "127.0.0.7 - - [") +
	    log_count(1, "127.0.0.7 - - ["), 0, "squall logged nginx's "
	    "address, not the client's");
}

static pid_t
program_pid(const char *name)
{
	char cmd[600];
	FILE *p;
	int pid = 0;

	snprintf(cmd, sizeof(cmd), "supervisorctl -c %s pid %s", d.sup_conf,
	    name);
	if ((p = popen(cmd, "r")) != NULL) {
		if (fscanf(p, "%d", &pid) != 1)
			pid = 0;
		pclose(p);
	}
	return pid;
}

Test(deploy, supervisor_restarts_a_dead_server)
{
	pid_t old, now;
	char *body;
	long deadline;

	start_deployment();
	old = program_pid("squall:squall-8000");
	cr_assert_gt(old, 0, "supervisorctl does not know squall-8000");
	cr_assert_eq(kill(old, SIGKILL), 0);
	/* nginx sends the requests meanwhile to the other server */
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(get_from("127.0.0.1", "/hello", &body), 200);
		free(body);
	}
	deadline = t_now_ms() + 20000;
	while ((now = program_pid("squall:squall-8000")) <= 0 || now == old) {
		cr_assert_lt(t_now_ms(), deadline, "not restarted");
		usleep(50 * 1000);
	}
	wait_accepting(d.port[0], "the restarted squalld");
	cr_assert_eq(get_from("127.0.0.1", "/hello", &body), 200);
	free(body);
}

Test(deploy, chat_through_nginx)
{
	struct wsc a;
	char origin[64], *line;

	start_deployment();
	snprintf(origin, sizeof(origin), "http://127.0.0.1:%d", d.front);
	cr_assert_eq(ws_connect(&a, d.front, "/chat", origin), 101,
	    "the page's own origin through nginx was refused");
	line = ws_recv_text(&a, 5000);
	cr_assert_not_null(line);
	cr_assert(strncmp(line, "[127.0.0.1] joined at ", 22) == 0, "%s",
	    line);
	free(line);
	cr_assert_eq(ws_send(&a, 1, "through nginx", 13), 0);
	line = ws_recv_text(&a, 5000);
	cr_assert_not_null(strstr(line, ": through nginx"), "%s", line);
	free(line);
	ws_disconnect(&a);
	cr_assert_eq(ws_connect(&a, d.front, "/chat", "http://evil.example"),
	    403);
	ws_disconnect(&a);
}

/*
 * A WebSocket to /chat through nginx: which backend took it, from its
 * access log's 101 line (0 or 1). Fails the test if neither logs one.
 */
static int
chat_via_nginx(struct wsc *c, int before[2])
{
	char origin[64];
	long deadline;

	snprintf(origin, sizeof(origin), "http://127.0.0.1:%d", d.front);
	cr_assert_eq(ws_connect(c, d.front, "/chat", origin), 101);
	deadline = t_now_ms() + 5000;
	for (;;) {
		for (int i = 0; i < 2; i++) {
			int n = log_count(i, "\"GET /chat HTTP/1.1\" 101");

			if (n > before[i]) {
				before[i] = n;
				return i;
			}
		}
		cr_assert_lt(t_now_ms(), deadline, "no backend logged the "
		    "WebSocket");
		usleep(10 * 1000);
	}
}

/*
 * The broker variant: both backends on one redis-server, nginx balancing
 * /chat over them; two clients that nginx sent to different backends are
 * in one room (the seed's lines, the same order for both).
 */
Test(deploy, chat_spans_both_backends_with_the_broker)
{
	struct wsc a, b;
	char up[100];
	int rport = t_free_port(), seen[2] = { 0, 0 }, ba, bb = -1;

	start_deployment_variant(NULL, rport);
	snprintf(up, sizeof(up), "broker redis://127.0.0.1:%d up, stream "
	    "squall:chat:/chat", rport);
	for (long end = t_now_ms() + 10000; log_count(0, up) < 1 ||
	    log_count(1, up) < 1; usleep(20 * 1000))
		cr_assert_lt(t_now_ms(), end, "the backends did not both "
		    "subscribe");
	ba = chat_via_nginx(&a, seen);
	free(ws_expect_line(&a, "^" IP " joined at " TS "$"));
	for (int tries = 0; tries < 16 && bb != 1 - ba; tries++) {
		if (bb == ba) {
			ws_disconnect(&b);
			free(ws_expect_line(&a, "^" IP " left at " TS "$"));
		}
		bb = chat_via_nginx(&b, seen);
		free(ws_expect_line(&b, "^" IP " joined at " TS "$"));
		free(ws_expect_line(&a, "^" IP " joined at " TS "$"));
	}
	cr_assert_eq(bb, 1 - ba, "nginx sent every client to backend %d",
	    ba);

	cr_assert_eq(ws_send(&a, 1, "from one backend", 16), 0);
	free(ws_expect_line(&a, "^" IP " at " TS ": from one backend$"));
	free(ws_expect_line(&b, "^" IP " at " TS ": from one backend$"));
	ws_expect_same_order(&a, "one", &b, "two");
	ws_disconnect(&b);
	free(ws_expect_line(&a, "^" IP " left at " TS "$"));
	cr_assert_null(ws_recv_text(&a, 300), "a line came twice");
	ws_disconnect(&a);
}

/*
 * squall-broker.ini is squall.ini with xheaders on and a broker on a
 * stream: nothing else drifts apart (the header comment aside).
 */
Test(deploy, broker_ini_is_the_default_with_a_broker)
{
	char *def = shipped("squall.ini"), *brk = shipped("squall-broker.ini");
	char *dl, *bl, *ds, *bs;
	int differ = 0;

	dl = strtok_r(def, "\n", &ds);
	bl = strtok_r(brk, "\n", &bs);
	while (dl && *dl == ';')
		dl = strtok_r(NULL, "\n", &ds);
	while (bl && *bl == ';')
		bl = strtok_r(NULL, "\n", &bs);
	for (; dl && bl; dl = strtok_r(NULL, "\n", &ds),
	    bl = strtok_r(NULL, "\n", &bs)) {
		if (strcmp(dl, bl) == 0)
			continue;
		differ++;
		if (strncmp(dl, "xheaders = off ", 15) == 0)
			cr_assert(strncmp(bl, "xheaders = on ", 14) == 0, "%s", bl);
		else if (strncmp(dl, "broker = ", 9) == 0)
			cr_assert(strncmp(bl, "broker = redis://127.0.0.1:6379 ",
			    32) == 0, "%s", bl);
		else if (strncmp(dl, "broker_mode =", 13) == 0)
			cr_assert(strncmp(bl, "broker_mode = stream", 20) == 0,
			    "%s", bl);
		else
			cr_assert_fail("squall-broker.ini has \"%s\" where "
			    "squall.ini has \"%s\"", bl, dl);
	}
	cr_assert(dl == NULL && bl == NULL, "one file is longer");
	/* xheaders, and both brokers and their modes */
	cr_assert_eq(differ, 5);
	free(def);
	free(brk);
}

static int
count_in(const char *path, const char *text)
{
	char *s, *p;
	int n = 0;

	if (access(path, R_OK) != 0)
		return -1;
	s = t_read(path, NULL);
	for (p = s; (p = strstr(p, text)) != NULL; p += strlen(text))
		n++;
	free(s);
	return n;
}

/*
 * Each supervised instance has its own pid file (-g); the shipped
 * logrotate file, run by the real logrotate, rotates squalld's own log
 * and only it, and each server reopens its file through its pid file.
 */
Test(deploy, logrotate_rotates_squalld_logs_through_the_pid_files)
{
	char logdir[400], alog[450], rotated[460], conf[450], state[450];
	char cmd[1400], pidf[450], *text, *body;
	int st;

	if (!have("logrotate"))
		cr_skip_test("logrotate is needed (Debian: logrotate)");
	memset(&d, 0, sizeof(d));
	/* the folder exists before the servers start, as tmpfiles makes it */
	{
		char tmp[256];

		t_tmpdir(tmp, sizeof(tmp));
		snprintf(logdir, sizeof(logdir), "%s", tmp);
	}
	snprintf(alog, sizeof(alog), "%s/access.log", logdir);
	start_deployment_logging(alog);
	for (int i = 0; i < 2; i++) {
		snprintf(pidf, sizeof(pidf), "%s/squall-%s.pid", d.dir,
		    i == 0 ? "8000" : "8001");
		cr_assert_eq(access(pidf, R_OK), 0, "no pid file %s", pidf);
	}
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(get_from("127.0.0.1", "/hello?before", &body),
		    200);
		free(body);
	}
	cr_assert_eq(count_in(alog, "/hello?before"), 10);

	/* the shipped file, pointed at this deployment */
	text = example("logrotate.d/squall");
	text = replace(text, "/var/log/squall", logdir);
	text = replace(text, "/run/squall/", "RUNDIR/");
	text = replace(text, "RUNDIR", d.dir);
	snprintf(conf, sizeof(conf), "%s/logrotate.conf", logdir);
	snprintf(state, sizeof(state), "%s/logrotate.state", logdir);
	t_write(conf, "%s", text);
	free(text);
	chmod(conf, 0644);
	snprintf(cmd, sizeof(cmd), "logrotate -f -s %s %s >%s/lr.out 2>&1",
	    state, conf, logdir);
	st = system(cmd);
	{
		char out[500], *o;

		snprintf(out, sizeof(out), "%s/lr.out", logdir);
		o = t_read(out, NULL);
		cr_assert_eq(st, 0, "logrotate failed: %s", o);
		free(o);
	}
	snprintf(rotated, sizeof(rotated), "%s.1", alog);
	cr_assert_eq(count_in(rotated, "/hello?before"), 10,
	    "the old lines are not in %s", rotated);
	/* both servers write to the new file now */
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(get_from("127.0.0.1", "/hello?after", &body), 200);
		free(body);
	}
	cr_assert_eq(count_in(alog, "/hello?after"), 20, "the servers did "
	    "not reopen %s", alog);
	cr_assert_eq(count_in(rotated, "/hello?after"), 0);
	/* supervisor's files are not logrotate's business */
	snprintf(rotated, sizeof(rotated), "%s/squall-8000.log.1", d.dir);
	cr_assert_neq(access(rotated, F_OK), 0);
	t_rm_rf(logdir);
}

/* The systemd unit as shipped passes systemd-analyze verify. */
Test(deploy, systemd_unit_verifies)
{
	char dir[256], unit[300], cmd[700], *text, *out;
	int st;

	if (!have("systemd-analyze"))
		cr_skip_test("systemd-analyze is needed (Debian: systemd)");
	t_tmpdir(dir, sizeof(dir));
	text = example("systemd/squalld.service");
	snprintf(unit, sizeof(unit), "%s/squalld.service", dir);
	t_write(unit, "%s", text);
	free(text);
	snprintf(cmd, sizeof(cmd), "SYSTEMD_LOG_LEVEL=warning systemd-analyze "
	    "verify --man=no %s >%s/out 2>&1", unit, dir);
	st = system(cmd);
	snprintf(unit, sizeof(unit), "%s/out", dir);
	out = t_read(unit, NULL);
	cr_assert_eq(st, 0, "systemd-analyze verify: %s", out);
	cr_assert_null(strstr(out, "squalld.service:"), "%s", out);
	free(out);
	t_rm_rf(dir);
}
