/*
 * test_tls.c - TLS listeners (listen = ADDR:PORT tls): routes served over
 * https beside a plain listener, the protocols and the refusals (plain
 * HTTP to the TLS port, old protocols, garbage, a stalled handshake), the
 * certificate checks of -t and of a reload, and new certificates taken at
 * SIGHUP. Certificates are made for each test with the openssl command.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;
static char certs[256];		/* the test's certificates */

static void
setup(void)
{
	certs[0] = '\0';
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("the openssl command is needed (Debian: openssl)");
	t_tmpdir(certs, sizeof(certs));
}

static void
teardown(void)
{
	srv_cleanup(&s);
	if (certs[0])
		t_rm_rf(certs);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

/*
 * certs/NAME.pem and certs/NAME.key: a self-signed P-256 pair for
 * 127.0.0.1 and localhost.
 */
static void
make_cert(const char *name)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=%s "
	    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
	    "-keyout %s/%s.key -out %s/%s.pem >/dev/null 2>&1", name, certs,
	    name, certs, name);
	cr_assert_eq(system(cmd), 0, "openssl req failed");
}

/* The [server] lines of a TLS listener on a free port with certs/NAME. */
static char *
tls_lines(const char *name)
{
	char *text;

	cr_assert(asprintf(&text, "listen = 127.0.0.1:0 tls\n"
	    "tls_certificate = %s/%s.pem\ntls_certificate_key = %s/%s.key\n",
	    certs, name, certs, name) >= 0);
	return text;
}

/* The port of the server's TLS listener, from its log line. */
static int
tls_port(struct srv *sv)
{
	char *log = t_read(sv->log, NULL), *p = log, *hit = NULL;
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

/* Starts s with a TLS listener (certs/NAME) beside the plain one. */
static int
start_tls(const char *name, const char *more)
{
	char *lines = tls_lines(name);

	srv_start(&s, "%s%s\n[route /hello]\nplugin = hello\n", lines,
	    more ? more : "");
	free(lines);
	return tls_port(&s);
}

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	char *nb = realloc(r->body, r->len + size * n + 1);

	cr_assert_not_null(nb);
	memcpy(nb + r->len, data, size * n);
	r->body = nb;
	r->len += size * n;
	r->body[r->len] = '\0';
	return size * n;
}

/*
 * GET https://127.0.0.1:port/path trusting certs/ca.pem (NULL: trust
 * nothing, verify nothing), with curl's TLS version option; the curl
 * error, 0 when an answer came.
 */
static int
https_get(int port, const char *path, const char *ca, long sslversion,
    struct resp *r)
{
	char url[128], cafile[400];
	CURL *c = curl_easy_init();
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, sslversion);
	if (ca) {
		snprintf(cafile, sizeof(cafile), "%s/%s.pem", certs, ca);
		curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
	} else {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	r->curl_error = (int)rc;
	curl_easy_cleanup(c);
	return (int)rc;
}

/* Reads what the server sends on fd until it closes (or 5 s pass). */
static char *
read_to_close(int fd, long *closed_after_ms)
{
	long t0 = t_now_ms();
	char *buf = calloc(1, 4096);
	size_t n = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t got;

	cr_assert_not_null(buf);
	while (t_now_ms() - t0 < 5000 && poll(&p, 1, 100) >= 0) {
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		got = recv(fd, buf + n, 4095 - n, 0);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	*closed_after_ms = t_now_ms() - t0;
	return buf;
}

Test(tls, routes_are_served_over_https_beside_plain_http)
{
	struct resp r;
	int port;

	make_cert("a");
	port = start_tls("a", NULL);
	cr_assert_eq(https_get(port, "/hello", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0, "curl: %s", curl_easy_strerror(r.curl_error));
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "Hello, world");
	free(r.body);
	/* the plain listener still speaks plain HTTP */
	t_expect_status(s.port, "/hello", 200);
	/* both protocols the default offers */
	cr_assert_eq(https_get(port, "/hello", "a", CURL_SSLVERSION_TLSv1_2 |
	    CURL_SSLVERSION_MAX_TLSv1_2, &r), 0);
	free(r.body);
	cr_assert_eq(https_get(port, "/hello", "a", CURL_SSLVERSION_TLSv1_3,
	    &r), 0);
	free(r.body);
}

/* A plugin knows which listener its request came by (sq_req_tls). */
Test(tls, plugin_is_told_the_request_came_over_tls)
{
	struct resp r;
	char *lines;
	int port;

	make_cert("a");
	lines = tls_lines("a");
	srv_start(&s, "%s[route /echo]\nplugin = %s\n", lines,
	    t_test_plugin("echo"));
	free(lines);
	port = tls_port(&s);
	cr_assert_eq(https_get(port, "/echo", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	cr_assert_not_null(strstr(r.body, "\"tls\":true"), "%s", r.body);
	free(r.body);
	cr_assert_eq(http_get(s.port, "/echo", &r), 0);
	cr_assert_not_null(strstr(r.body, "\"tls\":false"), "%s", r.body);
	resp_free(&r);
}

Test(tls, tls_protocols_limits_what_is_offered)
{
	struct resp r;
	int port;

	make_cert("a");
	port = start_tls("a", "tls_protocols = TLSv1.3\n");
	cr_assert_neq(https_get(port, "/hello", "a", CURL_SSLVERSION_TLSv1_2 |
	    CURL_SSLVERSION_MAX_TLSv1_2, &r), 0, "TLS 1.2 was accepted");
	free(r.body);
	cr_assert_eq(https_get(port, "/hello", "a", CURL_SSLVERSION_TLSv1_3,
	    &r), 0);
	free(r.body);
}

/*
 * What is not TLS, or too old, is refused cleanly: plain HTTP gets a 400
 * in plain HTTP (as nginx answers it), TLS 1.1 and garbage a closed
 * connection, and a client that never finishes its handshake is dropped
 * at request_timeout. The server serves on, and logs none of it above
 * debug.
 */
Test(tls, what_is_not_tls_is_refused_cleanly)
{
	struct resp r;
	long ms;
	char *got;
	int port, fd;

	make_cert("a");
	port = start_tls("a", "request_timeout = 1\n");
	fd = t_connect(port);
	cr_assert_geq(fd, 0);
	cr_assert_gt(send(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 33, 0),
	    0);
	got = read_to_close(fd, &ms);
	close(fd);
	cr_assert(strncmp(got, "HTTP/1.1 400 ", 13) == 0, "%s", got);
	cr_assert_not_null(strstr(got, "use https://"), "%s", got);
	free(got);

	cr_assert_neq(https_get(port, "/hello", NULL, CURL_SSLVERSION_TLSv1_1 |
	    CURL_SSLVERSION_MAX_TLSv1_1, &r), 0, "TLS 1.1 was accepted");
	free(r.body);

	for (int i = 0; i < 50; i++) {
		fd = t_connect(port);
		cr_assert_geq(fd, 0);
		cr_assert_gt(send(fd, "\x16\x03\x01\x00\x05garbagegarbage", 19,
		    0), 0);
		free(read_to_close(fd, &ms));
		close(fd);
	}

	fd = t_connect(port);	/* says nothing */
	cr_assert_geq(fd, 0);
	free(read_to_close(fd, &ms));
	close(fd);
	cr_assert_lt(ms, 4000, "a silent client was kept %ld ms", ms);

	cr_assert_eq(https_get(port, "/hello", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	cr_assert_eq(r.status, 200);
	free(r.body);
	cr_assert_eq(srv_log_count(&s, "[error]"), 0);
	cr_assert_eq(srv_log_count(&s, "[warn]"), 0);
}

/* squalld -t on c (more [server] lines); its output in *out. */
static int
check(const char *server_lines, char **out)
{
	char ini[400];

	snprintf(ini, sizeof(ini), "%s/squall.ini", certs);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\n%s\nplugin_dir = %s\n"
	    "[route /hello]\nplugin = hello\n", server_lines, t_plugin_dir());
	return t_run_squalld(out, "-t", "-c", ini, NULL);
}

/* -t reads the certificates: every way they can be wrong names the file. */
Test(tls, check_names_the_bad_certificate_file)
{
	static const struct {
		const char *lines, *want;
	} cases[] = {
		{ "listen = 127.0.0.1:0 tls\n",
		    "listen 127.0.0.1:0 tls: [server] needs tls_certificate "
		    "and tls_certificate_key" },
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/none.pem\n"
		    "tls_certificate_key = CERTS/a.key\n",
		    "tls_certificate CERTS/none.pem: No such file or directory" },
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/a.pem\n"
		    "tls_certificate_key = CERTS/b.key\n",
		    "tls_certificate_key CERTS/b.key does not match "
		    "tls_certificate CERTS/a.pem" },
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/a.key\n"
		    "tls_certificate_key = CERTS/a.key\n",
		    "tls_certificate CERTS/a.key: not a PEM certificate chain" },
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/a.pem\n"
		    "tls_certificate_key = CERTS/a.pem\n",
		    "tls_certificate_key CERTS/a.pem: not a PEM private key" },
		{ "tls_protocols = TLSv1.1 TLSv1.2\n",
		    "bad value 'TLSv1.1 TLSv1.2' for 'tls_protocols'" },
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/a.pem\n"
		    "tls_certificate_key = CERTS/a.key\ntls_ciphers = NOPE\n",
		    "tls_ciphers: no cipher matches 'NOPE'" },
		{ "listen = 127.0.0.1:0 tlsx\n", "bad value '127.0.0.1:0 tlsx'" },
	};
	char *out, *lines, *want;

	make_cert("a");
	make_cert("b");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lines = strdup(cases[i].lines);
		want = strdup(cases[i].want);
		for (char *p; (p = strstr(lines, "CERTS")) != NULL;) {
			char *nl;

			*p = '\0';
			cr_assert(asprintf(&nl, "%s%s%s", lines, certs, p + 5) >=
			    0);
			free(lines);
			lines = nl;
		}
		for (char *p; (p = strstr(want, "CERTS")) != NULL;) {
			char *nw;

			*p = '\0';
			cr_assert(asprintf(&nw, "%s%s%s", want, certs, p + 5) >=
			    0);
			free(want);
			want = nw;
		}
		cr_assert_eq(check(lines, &out), 1, "case %zu passed -t", i);
		cr_assert_not_null(strstr(out, want), "case %zu: no \"%s\" in "
		    "%s", i, want, out);
		free(out);
		free(lines);
		free(want);
	}
	cr_assert_eq(check("listen = 127.0.0.1:0 tls\ntls_certificate = a.pem\n"
	    "tls_certificate_key = a.key\n", &out), 0, "%s", out);
	free(out);
}

/*
 * SIGHUP reads the certificate again: new handshakes get the new one. A
 * reload whose key does not match fails, naming the file, and the old
 * certificate serves on.
 */
Test(tls, reload_takes_the_new_certificate)
{
	char from[400], to[400];
	struct resp r;
	int port;

	make_cert("a");
	make_cert("b");
	make_cert("live");
	port = start_tls("live", NULL);
	cr_assert_eq(https_get(port, "/hello", "live", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	free(r.body);
	/* the files change under the same names: b's pair */
	snprintf(from, sizeof(from), "%s/b.pem", certs);
	snprintf(to, sizeof(to), "%s/live.pem", certs);
	t_copy(from, to);
	snprintf(from, sizeof(from), "%s/b.key", certs);
	snprintf(to, sizeof(to), "%s/live.key", certs);
	t_copy(from, to);
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(tls_port(&s), port, "the listener was not kept");
	cr_assert_eq(https_get(port, "/hello", "b", CURL_SSLVERSION_DEFAULT,
	    &r), 0, "the new certificate is not served: %s",
	    curl_easy_strerror(r.curl_error));
	free(r.body);
	cr_assert_neq(https_get(port, "/hello", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	free(r.body);

	/* a key that does not match: the reload fails, b serves on */
	snprintf(from, sizeof(from), "%s/a.key", certs);
	t_copy(from, to);
	cr_assert_neq(srv_reload(&s), 0);
	cr_assert_eq(srv_log_count(&s, "does not match tls_certificate"), 1);
	cr_assert_eq(https_get(port, "/hello", "b", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	cr_assert_eq(r.status, 200);
	free(r.body);
}
