/*
 * harness.c - see harness.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"

/*
 * In a child about to exec: close every descriptor above stderr, so that
 * the servers and browsers the tests start keep none of Criterion's own
 * (its IPC with the runner) open behind the test's back.
 */
void
t_close_inherited(void)
{
	long max = sysconf(_SC_OPEN_MAX);

	for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		close(fd);
}

/* A peer that closes must fail a write, not kill the test with SIGPIPE. */
__attribute__((constructor)) static void
ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

const char *
t_builddir(void)
{
	return TEST_BUILDDIR;
}

const char *
t_srcdir(void)
{
	return TEST_SRCDIR;
}

const char *
t_plugin_dir(void)
{
	return TEST_BUILDDIR "/plugins/.libs";
}

const char *
t_test_plugin(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/tests/plugins/.libs/%s.so",
	    TEST_BUILDDIR, name);
	return buf[i];
}

long
t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void
t_tmpdir(char *out, size_t len)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(out, len, "%s/squall-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	cr_assert_not_null(mkdtemp(out), "mkdtemp: %s", strerror(errno));
}

void
t_write(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp, "cannot write %s: %s", path, strerror(errno));
	va_start(ap, fmt);
	vfprintf(fp, fmt, ap);
	va_end(ap);
	fclose(fp);
}

char *
t_read(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (fp == NULL) {
		if (len)
			*len = 0;
		return strdup("");
	}
	do {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			buf = realloc(buf, cap);
		}
		r = fread(buf + n, 1, cap - n - 1, fp);
		n += r;
	} while (r > 0);
	fclose(fp);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* Copies like cp(1) onto an existing file: truncate and write in place. */
void
t_copy(const char *from, const char *to)
{
	size_t len;
	char *data = t_read(from, &len);
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);

	cr_assert(fd >= 0, "cannot open %s: %s", to, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(data);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void
t_rm_rf(const char *dir)
{
	if (dir && dir[0])
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
squalld_path(void)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/core/squalld", TEST_BUILDDIR);
	return path;
}

void
srv_start_in(struct srv *s, const char *ini_text)
{
	char line[64];
	const char *p;
	char *log;
	int fd;

	snprintf(s->ini, sizeof(s->ini), "%s/squall.ini", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/squalld.log", s->dir);
	if (ini_text)
		t_write(s->ini, "%s", ini_text);
	s->pid = fork();
	cr_assert(s->pid >= 0);
	if (s->pid == 0) {
		fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		t_close_inherited();
		if (s->pid_arg[0])
			execl(squalld_path(), "squalld", "-c", s->ini, "-g",
			    s->pid_arg, (char *)NULL);
		else
			execl(squalld_path(), "squalld", "-c", s->ini,
			    (char *)NULL);
		_exit(127);
	}
	if (srv_wait_log(s, "ready:", 1, 20000) != 0) {
		log = t_read(s->log, NULL);
		srv_stop(s);
		cr_assert_fail("squalld did not start; its log:\n%s", log);
	}
	log = t_read(s->log, NULL);
	p = strstr(log, "listening on 127.0.0.1:");
	cr_assert_not_null(p, "no listening line in:\n%s", log);
	/* the first plain listener, or the first of all */
	for (const char *q = p; q; q = strstr(q, "listening on 127.0.0.1:")) {
		q += strlen("listening on 127.0.0.1:");
		if (strncmp(q + strspn(q, "0123456789"), " (tls)", 6) != 0) {
			p = q - strlen("listening on 127.0.0.1:");
			break;
		}
	}
	snprintf(line, sizeof(line), "%s", p + strlen("listening on 127.0.0.1:"));
	s->port = (int)strtol(line, NULL, 10);
	free(log);
	cr_assert(s->port > 0);
}

void
srv_start(struct srv *s, const char *rest_fmt, ...)
{
	char *rest, *ini;
	va_list ap;

	memset(s, 0, sizeof(*s));
	t_tmpdir(s->dir, sizeof(s->dir));
	va_start(ap, rest_fmt);
	cr_assert(vasprintf(&rest, rest_fmt, ap) >= 0);
	va_end(ap);
	cr_assert(asprintf(&ini, "[server]\nlisten = 127.0.0.1:0\n"
	    "plugin_dir = %s\n%s\n", t_plugin_dir(),
	    rest) >= 0);
	srv_start_in(s, ini);
	free(ini);
	free(rest);
}

int
srv_log_count(struct srv *s, const char *text)
{
	char *log = t_read(s->log, NULL), *p = log;
	int n = 0;

	while ((p = strstr(p, text)) != NULL) {
		n++;
		p += strlen(text);
	}
	free(log);
	return n;
}

static int
reaped(struct srv *s)
{
	int st;

	if (waitpid(s->pid, &st, WNOHANG) != s->pid)
		return 0;
	s->pid = -1;
	s->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return 1;
}

int
srv_wait_log(struct srv *s, const char *text, int count, int timeout_ms)
{
	long deadline = t_now_ms() + timeout_ms;

	do {
		if (srv_log_count(s, text) >= count)
			return 0;
		if (s->pid > 0 && reaped(s))
			return srv_log_count(s, text) >= count ? 0 : -1;
		usleep(5000);
	} while (t_now_ms() < deadline);
	return -1;
}

void
srv_signal(struct srv *s, int sig)
{
	if (s->pid > 0)
		kill(s->pid, sig);
}

int
srv_reload(struct srv *s)
{
	int ok = srv_log_count(s, "reloaded:");
	int bad = srv_log_count(s, "reload failed");
	long deadline = t_now_ms() + 20000;

	srv_signal(s, SIGHUP);
	while (t_now_ms() < deadline) {
		if (srv_log_count(s, "reloaded:") > ok)
			return 0;
		if (srv_log_count(s, "reload failed") > bad)
			return -1;
		usleep(5000);
	}
	return -1;
}

int
srv_stop(struct srv *s)
{
	long deadline = t_now_ms() + 20000;
	int status;

	if (s->pid < 0)
		return s->status;
	if (s->pid == 0)
		return -1;
	kill(s->pid, SIGTERM);
	while (t_now_ms() < deadline) {
		if (reaped(s))
			return s->status;
		usleep(5000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &status, 0);
	s->pid = -1;
	s->status = -1;
	return -1;
}

int
srv_wait_exit(struct srv *s, int timeout_ms)
{
	long deadline = t_now_ms() + timeout_ms;

	while (s->pid > 0 && !reaped(s) && t_now_ms() < deadline)
		usleep(5000);
	return s->pid < 0 ? s->status : -2;
}

/*
 * Stops the server if it runs, fails the test if its log holds a
 * sanitizer report, and removes the test's folder.
 */
void
srv_cleanup(struct srv *s)
{
	char *log, *hit;

	if (s->pid > 0)
		srv_stop(s);
	if (s->log[0] == '\0')
		return;
	log = t_read(s->log, NULL);
	hit = strstr(log, "Sanitizer");
	if (hit == NULL)
		hit = strstr(log, "runtime error:");
	if (hit == NULL) {
		free(log);
		t_rm_rf(s->dir);
		memset(s, 0, sizeof(*s));
		return;
	}
	t_rm_rf(s->dir);
	memset(s, 0, sizeof(*s));
	cr_assert_fail("squalld reported:\n%.3000s", hit > log + 200 ?
	    hit - 200 : log);
}

char *
t_default_ini(const char *xheaders)
{
	return t_example_ini("squall.ini", xheaders);
}

/* Does a "listen = ADDR:PORT tls ; comment" line end its value in tls? */
static int
tls_listener(const char *line)
{
	size_t n = strcspn(line, ";");

	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	return n > 4 && strncmp(line + n - 4, " tls", 4) == 0;
}

char *
t_example_ini(const char *name, const char *xheaders)
{
	char path[512], *text, *line, *save, *ini;
	size_t cap, n = 0;

	snprintf(path, sizeof(path), "%s/etc/%s", t_srcdir(), name);
	text = t_read(path, NULL);
	cap = strlen(text) + 4096;
	ini = calloc(1, cap);
	for (line = strtok_r(text, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "listen", 6) == 0)
			n += (size_t)snprintf(ini + n, cap - n,
			    "listen = 127.0.0.1:0%s\n", tls_listener(line) ?
			    " tls" : "");
		else if (strncmp(line, "plugin_dir", 10) == 0)
			n += (size_t)snprintf(ini + n, cap - n,
			    "plugin_dir = %s\n", t_plugin_dir());
		else if (strncmp(line, "root = ../web", 13) == 0)
			n += (size_t)snprintf(ini + n, cap - n,
			    "root = %s/web\n", t_srcdir());
		else if (xheaders && strncmp(line, "xheaders", 8) == 0)
			n += (size_t)snprintf(ini + n, cap - n,
			    "xheaders = %s\n", xheaders);
		else
			n += (size_t)snprintf(ini + n, cap - n, "%s\n", line);
	}
	free(text);
	return ini;
}

int
t_run_squalld(char **out, const char *arg, ...)
{
	char *argv[16], path[512];
	int i = 1, status;
	pid_t pid;
	va_list ap;

	snprintf(path, sizeof(path), "%s/squalld.out", TEST_BUILDDIR);
	{
		char dir[256];

		t_tmpdir(dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/out", dir);
	}
	argv[0] = "squalld";
	va_start(ap, arg);
	for (const char *a = arg; a && i < 15; a = va_arg(ap, const char *))
		argv[i++] = (char *)a;
	va_end(ap);
	argv[i] = NULL;
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		t_close_inherited();
		execv(squalld_path(), argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	*out = t_read(path, NULL);
	unlink(path);
	*strrchr(path, '/') = '\0';
	rmdir(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
t_check_ini(char **out, char *dir, size_t dirlen, const char *fmt, ...)
{
	char d[256], ini[300], *rest;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	cr_assert(vasprintf(&rest, fmt, ap) >= 0);
	va_end(ap);
	t_tmpdir(d, sizeof(d));
	snprintf(ini, sizeof(ini), "%s/squall.ini", d);
	t_write(ini, "[server]\nplugin_dir = %s\n%s", t_plugin_dir(), rest);
	free(rest);
	rc = t_run_squalld(out, "-t", "-c", ini, NULL);
	t_rm_rf(d);
	if (dir)
		snprintf(dir, dirlen, "%s", d);
	return rc;
}

/* ---- HTTP clients ---------------------------------------------------- */

struct buf {
	char	*p;
	size_t	 n;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t len = size * nmemb;

	b->p = realloc(b->p, b->n + len + 1);
	memcpy(b->p + b->n, data, len);
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

int
http_request(int port, const char *method, const char *path,
    const char **headers, const char *body, size_t body_len,
    long timeout_ms, struct resp *r)
{
	struct curl_slist *hl = NULL;
	struct buf b = { NULL, 0 }, h = { NULL, 0 };
	char url[2048];
	CURL *c = curl_easy_init();
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET") != 0)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
	}
	for (; headers && *headers; headers++)
		hl = curl_slist_append(hl, *headers);
	if (hl)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	rc = curl_easy_perform(c);
	r->curl_error = (int)rc;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
	r->body = b.p ? b.p : strdup("");
	r->len = b.n;
	r->headers = h.p ? h.p : strdup("");
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return rc == CURLE_OK ? 0 : -1;
}

int
http_get(int port, const char *path, struct resp *r)
{
	return http_request(port, "GET", path, NULL, NULL, 0, 10000, r);
}

void
resp_free(struct resp *r)
{
	free(r->body);
	free(r->headers);
	r->body = r->headers = NULL;
}

int
t_open_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	cr_assert_not_null(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

int
t_connect_unserved(int port)
{
	const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	struct pollfd p;
	int fd;

	cr_assert((fd = t_connect(port)) >= 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	p.fd = fd;
	p.events = POLLIN;
	cr_assert_eq(poll(&p, 1, 500), 0, "a client was served past "
	    "max_connections");
	return fd;
}

void
t_expect_served(int fd, const char *why)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char buf[512];
	ssize_t n;

	cr_assert_eq(poll(&p, 1, 3000), 1, "the waiting client was not "
	    "served after %s", why);
	n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
	close(fd);
}

int
t_connect(int port)
{
	return t_connect_rcvbuf(port, 0);
}

int
t_connect_rcvbuf(int port, int rcvbuf)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int
t_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* A listening socket on 127.0.0.1:port with this backlog, never served. */
int
t_listen(int port, int backlog)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

/* The next connection to lfd within timeout_ms, or -1. */
int
t_accept_within(int lfd, int timeout_ms)
{
	struct pollfd pfd = { lfd, POLLIN, 0 };

	if (poll(&pfd, 1, timeout_ms) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

char *
raw_exchange(int port, const void *data, size_t len, int timeout_ms,
    size_t *outlen)
{
	struct buf b = { NULL, 0 };
	long deadline = t_now_ms() + timeout_ms;
	int fd = t_connect(port);
	char chunk[4096];

	cr_assert(fd >= 0, "cannot connect to port %d", port);
	if (len)
		(void)!write(fd, data, len);
	while (t_now_ms() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if ((n = read(fd, chunk, sizeof(chunk))) <= 0)
			break;
		collect(chunk, 1, (size_t)n, &b);
	}
	close(fd);
	if (outlen)
		*outlen = b.n;
	return b.p ? b.p : strdup("");
}

char *
t_route_state(int port, const char *route)
{
	struct resp r;
	char key[300], *p, *end, *out;

	snprintf(key, sizeof(key), "\"route\":\"%s\"", route);
	cr_assert_eq(http_get(port, "/status", &r), 0);
	p = strstr(r.body, key);
	cr_assert_not_null(p, "no route %s in %s", route, r.body);
	p = strstr(p, "\"state\":");
	cr_assert_not_null(p, "no state for %s in %s", route, r.body);
	end = strchr(p, '}');
	out = strndup(p, (size_t)(end + 1 - p));
	resp_free(&r);
	return out;
}

void
t_expect_status(int port, const char *path, long status)
{
	struct resp r;

	cr_assert_eq(http_get(port, path, &r), 0, "GET %s failed", path);
	cr_assert_eq(r.status, status, "GET %s: %ld, expected %ld", path,
	    r.status, status);
	resp_free(&r);
}

static void *
bg_main(void *arg)
{
	struct bg *b = arg;

	http_get(b->port, b->path, &b->r);
	b->done_ms = t_now_ms();
	return NULL;
}

void
bg_start(struct bg *b, int port, const char *path)
{
	memset(b, 0, sizeof(*b));
	b->port = port;
	snprintf(b->path, sizeof(b->path), "%s", path);
	cr_assert_eq(pthread_create(&b->th, NULL, bg_main, b), 0);
}

void
bg_wait(struct bg *b)
{
	pthread_join(b->th, NULL);
}

/* ---- WebSocket client ------------------------------------------------ */

/* permessage-deflate (RFC 7692) on the client's side */
struct wsc_z {
	z_stream	 tx, rx;
	int		 tx_reset;	/* client_no_context_takeover */
	int		 rx_reset;	/* server_no_context_takeover */
	int		 rx_on;		/* inside a compressed message */
};

static int
fill(struct wsc *c, int timeout_ms)
{
	struct pollfd pfd = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (c->len == sizeof(c->buf) || poll(&pfd, 1, timeout_ms) <= 0)
		return -1;
	if ((n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len)) <= 0)
		return -1;
	c->len += (size_t)n;
	return 0;
}

int
ws_connect(struct wsc *c, int port, const char *path, const char *origin)
{
	return ws_connect_rcvbuf(c, port, path, origin, 0);
}

static int
connect_with(struct wsc *c, int port, const char *path, const char *more,
    int rcvbuf)
{
	char req[4096];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n%s\r\n", path, port, more);
	return ws_handshake(c, port, req, rcvbuf);
}

int
ws_connect_rcvbuf(struct wsc *c, int port, const char *path,
    const char *origin, int rcvbuf)
{
	char more[1024];

	snprintf(more, sizeof(more), "%s%s%s", origin ? "Origin: " : "",
	    origin ? origin : "", origin ? "\r\n" : "");
	return connect_with(c, port, path, more, rcvbuf);
}

int
ws_connect_with(struct wsc *c, int port, const char *path,
    const char *headers)
{
	return connect_with(c, port, path, headers ? headers : "", 0);
}

char *
ws_response_header(const struct wsc *c, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(c->head, "\r\n"); p != NULL;
	    p = strstr(p + 2, "\r\n")) {
		const char *v = p + 2, *end;

		if (strncasecmp(v, name, nl) != 0 || v[nl] != ':')
			continue;
		v += nl + 1;
		v += strspn(v, " \t");
		end = strstr(v, "\r\n");
		return strndup(v, end ? (size_t)(end - v) : strlen(v));
	}
	return NULL;
}

/* The server agreed to permessage-deflate: set up zlib for it. */
static int
deflate_start(struct wsc *c, const char *ext)
{
	const char *p;
	int bits = 15;

	if ((c->z = calloc(1, sizeof(*c->z))) == NULL)
		return -1;
	c->z->tx_reset = strstr(ext, "client_no_context_takeover") != NULL;
	c->z->rx_reset = strstr(ext, "server_no_context_takeover") != NULL;
	if ((p = strstr(ext, "client_max_window_bits=")) != NULL)
		bits = atoi(p + 23);
	if (bits < 9)
		bits = 9;	/* zlib's raw deflate has no 8 */
	if (deflateInit2(&c->z->tx, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	    -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	/* the server's window, as agreed: a larger one fails to inflate */
	bits = 15;
	if ((p = strstr(ext, "server_max_window_bits=")) != NULL)
		bits = atoi(p + 23);
	if (inflateInit2(&c->z->rx, -bits) != Z_OK) {
		deflateEnd(&c->z->tx);
		return -1;
	}
	return 0;
}

int
ws_handshake(struct wsc *c, int port, const char *req, int rcvbuf)
{
	char *end, *ext;
	long deadline = t_now_ms() + 5000;
	int status = -1;
	size_t n;

	memset(c, 0, sizeof(*c));
	if ((c->fd = t_connect_rcvbuf(port, rcvbuf)) < 0)
		return -1;
	if (write(c->fd, req, strlen(req)) != (ssize_t)strlen(req))
		return -1;
	while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
		if (t_now_ms() > deadline || fill(c, 100) != 0)
			if (t_now_ms() > deadline)
				return -1;
	if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	end += 4;
	n = (size_t)(end - c->buf);
	memcpy(c->head, c->buf, n < sizeof(c->head) ? n : sizeof(c->head) - 1);
	c->len -= n;
	memmove(c->buf, end, c->len);
	if (status == 101 && strcasestr(req, "permessage-deflate") != NULL &&
	    (ext = ws_response_header(c, "Sec-WebSocket-Extensions")) != NULL) {
		if (strstr(ext, "permessage-deflate") != NULL &&
		    deflate_start(c, ext) != 0)
			status = -1;
		free(ext);
	}
	return status;
}

int
ws_send_frame(struct wsc *c, int b0, const void *data, size_t len)
{
	unsigned char *f = malloc(len + 14), mask[4] = { 1, 2, 3, 4 };
	size_t n = 0;
	ssize_t w;

	if (f == NULL)
		return -1;
	f[n++] = (unsigned char)b0;
	if (len < 126)
		f[n++] = (unsigned char)(0x80 | len);
	else if (len < 65536) {
		f[n++] = 0x80 | 126;
		f[n++] = (unsigned char)(len >> 8);
		f[n++] = (unsigned char)len;
	} else {
		f[n++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			f[n++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	memcpy(f + n, mask, 4);
	n += 4;
	for (size_t i = 0; i < len; i++)
		f[n + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
	n += len;
	for (size_t off = 0; off < n; off += (size_t)w)
		if ((w = write(c->fd, f + off, n - off)) <= 0) {
			free(f);
			return -1;
		}
	free(f);
	return 0;
}

unsigned char *
ws_deflate(struct wsc *c, const void *data, size_t len, size_t *outlen)
{
	size_t cap = len + len / 8 + 64, n = 0;
	unsigned char *out = malloc(cap), *grown;
	z_stream *z = &c->z->tx;

	if (out == NULL)
		return NULL;
	z->next_in = (unsigned char *)(uintptr_t)data;
	z->avail_in = (uInt)len;
	do {
		if (cap - n < 64) {
			if ((grown = realloc(out, cap * 2)) == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
			cap *= 2;
		}
		z->next_out = out + n;
		z->avail_out = (uInt)(cap - n);
		if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR) {
			free(out);
			return NULL;
		}
		n = cap - z->avail_out;
	} while (z->avail_in > 0 || z->avail_out == 0);
	/*
	 * RFC 7692 7.2.1: without the flush's 00 00 ff ff. Nothing new
	 * since the last flush gives no bytes at all: an empty message is
	 * then the single 0x00 of 7.2.3.6.
	 */
	if (n >= 4)
		*outlen = n - 4;
	else {
		out[0] = 0;
		*outlen = 1;
	}
	if (c->z->tx_reset)
		deflateReset(z);
	return out;
}

int
ws_send(struct wsc *c, int opcode, const void *data, size_t len)
{
	unsigned char *p;
	size_t plen;
	int rc;

	if (c->z == NULL || (opcode != 1 && opcode != 2))
		return ws_send_frame(c, 0x80 | opcode, data, len);
	if ((p = ws_deflate(c, data, len, &plen)) == NULL)
		return -1;
	rc = ws_send_frame(c, 0xc0 | opcode, p, plen);
	free(p);
	return rc;
}

/* Appends what in inflates to into *out (*len bytes, *cap allocated). */
static int
inflate_some(z_stream *z, const void *in, size_t inlen, char **out,
    size_t *len, size_t *cap)
{
	char *grown;
	int rc;

	z->next_in = (unsigned char *)(uintptr_t)in;
	z->avail_in = (uInt)inlen;
	do {
		if (*cap - *len < 4096) {
			if ((grown = realloc(*out, *cap * 2 + 4096)) == NULL)
				return -1;
			*out = grown;
			*cap = *cap * 2 + 4096;
		}
		z->next_out = (unsigned char *)*out + *len;
		z->avail_out = (uInt)(*cap - *len - 1);
		rc = inflate(z, Z_SYNC_FLUSH);
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		*len = *cap - 1 - z->avail_out;
	} while (z->avail_in > 0 || z->avail_out == 0);
	return 0;
}

/* A frame's payload of a compressed message, inflated (in place). */
static int
frame_inflate(struct wsc *c, int fin, char **data, size_t *len)
{
	static const unsigned char trailer[] = { 0, 0, 0xff, 0xff };
	char *out = NULL;
	size_t olen = 0, cap = 0;

	if (inflate_some(&c->z->rx, *data, *len, &out, &olen, &cap) != 0 ||
	    (fin && inflate_some(&c->z->rx, trailer, 4, &out, &olen,
	    &cap) != 0)) {
		free(out);
		return -1;
	}
	if (fin && c->z->rx_reset)
		inflateReset(&c->z->rx);
	free(*data);
	out[olen] = '\0';
	*data = out;
	*len = olen;
	return 0;
}

/*
 * The next frame as sent: its first byte and payload (malloc'ed, NUL
 * terminated). Frames larger than c->buf are read straight into theirs.
 */
static int
recv_frame(struct wsc *c, int *b0, char **data, size_t *len, long deadline)
{
	unsigned char *b;
	size_t need, hdr, plen, have;

	for (;;) {
		b = (unsigned char *)c->buf;
		if (c->len >= 2) {
			plen = b[1] & 0x7f;
			hdr = plen == 126 ? 4 : plen == 127 ? 10 : 2;
			if (c->len >= hdr) {
				if (plen == 126)
					plen = (size_t)b[2] << 8 | b[3];
				else if (plen == 127) {
					plen = 0;
					for (int i = 0; i < 8; i++)
						plen = plen << 8 | b[2 + i];
				}
				need = hdr + plen;
				if (c->len >= need || need > sizeof(c->buf))
					break;
			}
		}
		{
			long left = deadline - t_now_ms();

			if (fill(c, left <= 0 ? 0 : left < 50 ? (int)left :
			    50) == 0)
				continue;
			if (left <= 0)
				return -1;
		}
		{
			struct pollfd pfd = { c->fd, POLLIN, 0 };
			char probe;

			if (poll(&pfd, 1, 0) == 1 && recv(c->fd, &probe, 1,
			    MSG_PEEK) <= 0)
				return -1;	/* end of stream */
		}
	}
	*b0 = b[0];
	*len = plen;
	if ((*data = malloc(plen + 1)) == NULL)
		return -1;
	have = c->len - hdr < plen ? c->len - hdr : plen;
	memcpy(*data, b + hdr, have);
	c->len -= hdr + have;
	memmove(c->buf, c->buf + hdr + have, c->len);
	while (have < plen) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		long left = deadline - t_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0 ||
		    (n = read(c->fd, *data + have, plen - have)) <= 0) {
			free(*data);
			return -1;
		}
		have += (size_t)n;
	}
	(*data)[plen] = '\0';
	return 0;
}

/* The next frame, inflated, pings answered if auto_pong; *fin set. */
static int
recv_one(struct wsc *c, int *opcode, int *fin, char **data, size_t *len,
    long deadline)
{
	int b0;

	for (;;) {
		if (recv_frame(c, &b0, data, len, deadline) != 0)
			return -1;
		*opcode = b0 & 0x0f;
		*fin = (b0 & 0x80) != 0;
		if (*opcode == 9 && c->auto_pong) {
			ws_send_frame(c, 0x80 | 10, *data, *len);
			free(*data);
			continue;
		}
		break;
	}
	if (c->z && (*opcode == 1 || *opcode == 2))
		c->z->rx_on = (b0 & 0x40) != 0;
	if (c->z && c->z->rx_on && *opcode < 8) {
		if (frame_inflate(c, *fin, data, len) != 0) {
			free(*data);
			return -1;
		}
		if (*fin)
			c->z->rx_on = 0;
	}
	return 0;
}

int
ws_recv(struct wsc *c, int *opcode, char **data, size_t *len, int *code,
    int timeout_ms)
{
	int fin;

	if (recv_one(c, opcode, &fin, data, len, t_now_ms() + timeout_ms) !=
	    0)
		return -1;
	c->fin = fin;
	if (code)
		*code = *opcode == 8 && *len >= 2 ?
		    ((unsigned char)(*data)[0] << 8 | (unsigned char)(*data)[1]) :
		    0;
	return 0;
}

int
ws_recv_msg(struct wsc *c, int *opcode, char **data, size_t *len,
    int timeout_ms)
{
	long deadline = t_now_ms() + timeout_ms;
	char *msg = NULL, *d, *grown;
	size_t mlen = 0, mcap = 0, dlen;
	int op, fin, first = 0;

	for (;;) {
		if (recv_one(c, &op, &fin, &d, &dlen, deadline) != 0) {
			free(msg);
			return -1;
		}
		if (op == 9 || op == 10) {
			free(d);
			continue;
		}
		if (op == 8) {
			free(msg);
			*opcode = 8;
			*data = d;
			*len = dlen;
			return 0;
		}
		if (op != 0)
			first = op;
		if (mlen + dlen + 1 > mcap) {
			mcap = mcap * 2 > mlen + dlen + 1 ? mcap * 2 :
			    mlen + dlen + 1;
			if ((grown = realloc(msg, mcap)) == NULL) {
				free(msg);
				free(d);
				return -1;
			}
			msg = grown;
		}
		memcpy(msg + mlen, d, dlen);
		mlen += dlen;
		msg[mlen] = '\0';
		free(d);
		if (fin) {
			*opcode = first;
			*data = msg;
			*len = mlen;
			return 0;
		}
	}
}

char *
ws_recv_text(struct wsc *c, int timeout_ms)
{
	int op;
	size_t len;
	char *data;

	while (ws_recv_msg(c, &op, &data, &len, timeout_ms) == 0) {
		if (op == 1)
			return data;
		free(data);
		if (op == 8)
			break;
	}
	return NULL;
}

char *
ws_expect_line(struct wsc *c, const char *pattern)
{
	char *line = ws_recv_text(c, 5000);
	regex_t re;

	cr_assert_not_null(line, "no line (expected /%s/)", pattern);
	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, line, 0, NULL, 0), 0, "\"%s\" does not "
	    "match /%s/", line, pattern);
	regfree(&re);
	return line;
}

void
ws_expect_same_order(struct wsc *a, const char *ta, struct wsc *b,
    const char *tb)
{
	char *la[2], *lb[2], re[256];

	snprintf(re, sizeof(re), "^" IP " at " TS ": (%s|%s)$", ta, tb);
	cr_assert_eq(ws_send(a, 1, ta, strlen(ta)), 0);
	cr_assert_eq(ws_send(b, 1, tb, strlen(tb)), 0);
	for (int i = 0; i < 2; i++) {
		la[i] = ws_expect_line(a, re);
		lb[i] = ws_expect_line(b, re);
	}
	cr_assert_str_neq(la[0], la[1]);
	for (int i = 0; i < 2; i++) {
		cr_assert_str_eq(la[i], lb[i], "line %d differs", i);
		free(la[i]);
		free(lb[i]);
	}
}

int
ws_wait_close(struct wsc *c, int timeout_ms)
{
	int op, code;
	size_t len;
	char *data;

	while (ws_recv(c, &op, &data, &len, &code, timeout_ms) == 0) {
		free(data);
		if (op == 8)
			return code;
	}
	return -1;
}

void
ws_disconnect(struct wsc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->z) {
		deflateEnd(&c->z->tx);
		inflateEnd(&c->z->rx);
		free(c->z);
		c->z = NULL;
	}
}

/* ---- more for the Autobahn-style suite ------------------------------- */

void
ws_frame_append(unsigned char **buf, size_t *len, int b0, const void *data,
    size_t len_data)
{
	static const unsigned char mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	size_t n = *len, cap = 64, need = *len + len_data + 14;
	unsigned char *f = *buf;

	/* the buffer's size is the power of two at or above its length:
	 * growing by doubling keeps many small frames linear */
	while (cap < n)
		cap *= 2;
	if (f == NULL || need > cap) {
		while (cap < need)
			cap *= 2;
		f = realloc(f, cap);
	}
	cr_assert_not_null(f);
	f[n++] = (unsigned char)b0;
	if (len_data < 126)
		f[n++] = (unsigned char)(0x80 | len_data);
	else if (len_data < 65536) {
		f[n++] = 0x80 | 126;
		f[n++] = (unsigned char)(len_data >> 8);
		f[n++] = (unsigned char)len_data;
	} else {
		f[n++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			f[n++] = (unsigned char)((uint64_t)len_data >> (8 * i));
	}
	memcpy(f + n, mask, 4);
	n += 4;
	for (size_t i = 0; i < len_data; i++)
		f[n + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
	*buf = f;
	*len = n + len_data;
}

int
ws_write(struct wsc *c, const void *data, size_t len, size_t chunk)
{
	const unsigned char *p = data;
	int one = 1;
	ssize_t w;

	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (chunk == 0)
		chunk = len;
	for (size_t off = 0; off < len; off += (size_t)w) {
		size_t n = len - off < chunk ? len - off : chunk;

		if ((w = send(c->fd, p + off, n, MSG_NOSIGNAL)) <= 0)
			return -1;
	}
	return 0;
}

int
ws_recv_frame(struct wsc *c, int *b0, char **data, size_t *len,
    int timeout_ms)
{
	if (recv_frame(c, b0, data, len, t_now_ms() + timeout_ms) != 0)
		return -1;
	c->fin = (*b0 & 0x80) != 0;
	return 0;
}

int
ws_read_to_eof(struct wsc *c, int timeout_ms, size_t *extra)
{
	long deadline = t_now_ms() + timeout_ms;
	char tmp[4096];
	ssize_t n;

	*extra = c->len;
	c->len = 0;
	for (;;) {
		struct pollfd pfd = { c->fd, POLLIN, 0 };
		long left = deadline - t_now_ms();

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return -1;
		if ((n = read(c->fd, tmp, sizeof(tmp))) == 0)
			return 0;
		if (n < 0)
			return errno == ECONNRESET ? 0 : -1;
		*extra += (size_t)n;
	}
}

struct wsz {
	z_stream	 tx, rx;
	int		 tx_reset, rx_reset;
	int		 strict;	/* rx window below 32 KiB: check it */
	int		 rx_ended;	/* the message's final block came */
	char		*rx_buf;	/* the buffer wsz_inflate last grew */
	size_t		 rx_cap;	/* and its size */
};

struct wsz *
wsz_new(int tx_bits, int rx_bits, int tx_reset, int rx_reset)
{
	struct wsz *z = calloc(1, sizeof(*z));

	cr_assert_not_null(z);
	cr_assert(tx_bits >= 8 && tx_bits <= 15 && rx_bits >= 8 &&
	    rx_bits <= 15, "window bits %d/%d", tx_bits, rx_bits);
	z->tx_reset = tx_reset;
	z->rx_reset = rx_reset;
	z->strict = rx_bits < 15;
	cr_assert_eq(deflateInit2(&z->tx, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
	    tx_bits == 8 ? -9 : -tx_bits, 8, tx_bits == 8 ? Z_HUFFMAN_ONLY :
	    Z_DEFAULT_STRATEGY), Z_OK);
	cr_assert_eq(inflateInit2(&z->rx, -rx_bits), Z_OK);
	return z;
}

/* The value of parameter name in an extension response, or def. */
static int
ext_param(const char *ext, const char *name, int def)
{
	const char *p = strstr(ext, name);

	if (p == NULL)
		return -1;
	p += strlen(name);
	p += strspn(p, " \t");
	if (*p != '=')
		return def;
	p++;
	p += strspn(p, " \t\"");
	return atoi(p);
}

struct wsz *
wsz_from_response(const struct wsc *c)
{
	char *ext = ws_response_header(c, "Sec-WebSocket-Extensions");
	struct wsz *z;
	int tx, rx;

	if (ext == NULL || strstr(ext, "permessage-deflate") == NULL) {
		free(ext);
		return NULL;
	}
	tx = ext_param(ext, "client_max_window_bits", 15);
	rx = ext_param(ext, "server_max_window_bits", 15);
	z = wsz_new(tx < 8 || tx > 15 ? 15 : tx, rx < 8 || rx > 15 ? 15 : rx,
	    strstr(ext, "client_no_context_takeover") != NULL,
	    strstr(ext, "server_no_context_takeover") != NULL);
	free(ext);
	return z;
}

unsigned char *
wsz_deflate(struct wsz *z, const void *data, size_t len, int bfinal,
    size_t *outlen)
{
	size_t cap = len + len / 8 + 64, n = 0;
	unsigned char *out = malloc(cap);
	int rc;

	cr_assert_not_null(out);
	z->tx.next_in = (unsigned char *)(uintptr_t)data;
	z->tx.avail_in = (uInt)len;
	for (;;) {
		if (cap - n < 64) {
			cap *= 2;
			out = realloc(out, cap);
			cr_assert_not_null(out);
		}
		z->tx.next_out = out + n;
		z->tx.avail_out = (uInt)(cap - n - 1);
		rc = deflate(&z->tx, bfinal ? Z_FINISH : Z_SYNC_FLUSH);
		cr_assert(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR,
		    "deflate: %d", rc);
		n = cap - 1 - z->tx.avail_out;
		if (bfinal ? rc == Z_STREAM_END : z->tx.avail_in == 0 &&
		    z->tx.avail_out != 0)
			break;
	}
	if (bfinal) {
		/* 7.2.3.4: an empty stored block's header bits follow the
		 * final block, so that the receiver's appended 00 00 ff ff
		 * completes it as for any message */
		out[n++] = 0;
		deflateReset(&z->tx);
	} else if (n >= 4 && memcmp(out + n - 4, "\0\0\xff\xff", 4) == 0)
		n -= 4;
	else if (n == 0)
		out[n++] = 0;	/* 7.2.3.6: an empty message */
	if (z->tx_reset)
		deflateReset(&z->tx);
	*outlen = n;
	return out;
}

/* Inflates in into *out; strict: one byte of output per call, so that
 * zlib checks every distance against the window (within one call it
 * may reach back into that call's output). */
static int
wsz_feed(struct wsz *z, const void *in, size_t inlen, char **out,
    size_t *olen, size_t *cap)
{
	int rc;

	z->rx.next_in = (unsigned char *)(uintptr_t)in;
	z->rx.avail_in = (uInt)inlen;
	while (!z->rx_ended) {
		size_t before = *olen;

		if (*cap - *olen < 4096) {
			*cap = *cap * 2 + 4096;
			*out = realloc(*out, *cap);
			cr_assert_not_null(*out);
		}
		z->rx.next_out = (unsigned char *)*out + *olen;
		z->rx.avail_out = z->strict ? 1 : (uInt)(*cap - *olen - 1);
		rc = inflate(&z->rx, Z_SYNC_FLUSH);
		*olen = (size_t)((char *)z->rx.next_out - *out);
		if (rc == Z_STREAM_END) {
			/* a final block: the next message is a new stream,
			 * which may still refer to this one's window */
			unsigned char dict[32768];
			uInt dl = sizeof(dict);

			inflateGetDictionary(&z->rx, dict, &dl);
			inflateReset(&z->rx);
			inflateSetDictionary(&z->rx, dict, dl);
			z->rx_ended = 1;
			break;
		}
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		if (z->rx.avail_in == 0 && (z->rx.avail_out != 0 ||
		    *olen == before))
			break;
	}
	return 0;
}

int
wsz_inflate(struct wsz *z, const void *in, size_t inlen, int fin, char **out,
    size_t *olen)
{
	size_t cap = *out == NULL ? 0 : *out == z->rx_buf ? z->rx_cap :
	    *olen + 1;
	int rc = 0;

	if (*out == NULL)
		*olen = 0;
	if (wsz_feed(z, in, inlen, out, olen, &cap) != 0 ||
	    (fin && wsz_feed(z, "\0\0\xff\xff", 4, out, olen, &cap) != 0))
		rc = -1;
	/* within a message, the caller passes back what it was given */
	z->rx_buf = fin || rc != 0 ? NULL : *out;
	z->rx_cap = cap;
	if (rc != 0)
		return -1;
	if (*out == NULL) {
		*out = malloc(1);
		cr_assert_not_null(*out);
	}
	(*out)[*olen] = '\0';
	if (fin) {
		z->rx_ended = 0;
		if (z->rx_reset)
			inflateReset(&z->rx);
	}
	return 0;
}

void
wsz_free(struct wsz *z)
{
	if (z == NULL)
		return;
	deflateEnd(&z->tx);
	inflateEnd(&z->rx);
	free(z);
}

int
srv_tls_port(struct srv *s)
{
	char *log = t_read(s->log, NULL), *p = log, *hit = NULL;
	int port = -1;

	while ((p = strstr(p, "listening on 127.0.0.1:")) != NULL) {
		p += strlen("listening on 127.0.0.1:");
		if (strncmp(p + strspn(p, "0123456789"), " (tls)", 6) == 0)
			hit = p;
	}
	if (hit)
		port = atoi(hit);
	free(log);
	cr_assert_gt(port, 0, "no TLS listener in the log");
	return port;
}

void
t_make_cert(const char *dir, const char *name, const char *san)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=%s "
	    "-addext subjectAltName=%s -keyout %s/%s.key -out %s/%s.pem "
	    ">/dev/null 2>&1", name, san, dir, name, dir, name);
	cr_assert_eq(system(cmd), 0, "openssl req failed");
}

pid_t
t_redis_start(const char *dir, int port, const char *password)
{
	return t_redis_start_aof(dir, port, password, 0);
}

pid_t
t_redis_start_aof(const char *dir, int port, const char *password, int aof)
{
	char portarg[16], logf[300];
	long deadline = t_now_ms() + 10000;
	pid_t pid;

	snprintf(portarg, sizeof(portarg), "%d", port);
	snprintf(logf, sizeof(logf), "%s/redis-%d.log", dir, port);
	if ((pid = fork()) == 0) {
		t_close_inherited();
		execlp("redis-server", "redis-server", "--port", portarg,
		    "--bind", "127.0.0.1", "--save", "", "--appendonly",
		    aof ? "yes" : "no", "--appendfsync", "always",
		    "--dir", dir, "--logfile", logf, "--daemonize", "no",
		    password ? "--requirepass" : (char *)NULL, password,
		    (char *)NULL);
		_exit(127);
	}
	cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
	while (t_now_ms() < deadline) {
		int fd = t_connect(port);

		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	cr_assert_fail("redis-server did not start on port %d", port);
	return -1;
}
