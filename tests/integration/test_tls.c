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
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static int check(const char *server_lines, char **out);

/*
 * certs/NAME.pem and certs/NAME.key: a self-signed P-256 pair for
 * 127.0.0.1 and localhost.
 */
static void
make_cert_for(const char *name, const char *san)
{
	t_make_cert(certs, name, san);
}

static void
make_cert(const char *name)
{
	make_cert_for(name, "DNS:localhost,IP:127.0.0.1");
}

/* Runs a shell command in certs/; fails the test if it fails. */
static void
in_certs(const char *cmd)
{
	char line[2400];

	snprintf(line, sizeof(line), "cd %s && { %s; } >openssl.log 2>&1",
	    certs, cmd);
	cr_assert_eq(system(line), 0, "failed: %s", cmd);
}

/*
 * A test PKI in certs/: root.pem, a CA; inter.pem, an intermediate CA it
 * signed; chain.pem, a leaf for 127.0.0.1 the intermediate signed,
 * followed by the intermediate (leaf.key its key); and old.pem (old.key),
 * a leaf the root signed that expired in 2020.
 */
static void
make_pki(void)
{
	in_certs("K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'; "
	    "openssl req -x509 $K -days 2 -subj /CN=root -keyout root.key "
	    "-out root.pem && "
	    "openssl req $K -subj /CN=inter -keyout inter.key -out inter.csr "
	    "&& printf 'basicConstraints=critical,CA:TRUE\\n"
	    "keyUsage=keyCertSign\\n' >ca.ext && "
	    "openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key "
	    "-CAcreateserial -days 2 -extfile ca.ext -out inter.pem && "
	    "openssl req $K -subj /CN=leaf -keyout leaf.key -out leaf.csr && "
	    "printf 'subjectAltName=IP:127.0.0.1\\n' >leaf.ext && "
	    "openssl x509 -req -in leaf.csr -CA inter.pem -CAkey inter.key "
	    "-CAcreateserial -days 2 -extfile leaf.ext -out leaf.pem && "
	    "cat leaf.pem inter.pem >chain.pem && "
	    "openssl req $K -subj /CN=old -keyout old.key -out old.csr && "
	    ": >index.txt && echo 01 >serial && "
	    "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\n"
	    "new_certs_dir=.\\nserial=serial\\ndefault_md=sha256\\n"
	    "policy=p\\n[p]\\ncommonName=supplied\\n' >ca.cnf && "
	    "openssl ca -batch -config ca.cnf -cert root.pem -keyfile root.key "
	    "-in old.csr -out old.pem -startdate 20200101000000Z "
	    "-enddate 20200102000000Z");
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

/* Starts s with a TLS listener (certs/NAME) beside the plain one. */
static int
start_tls(const char *name, const char *more)
{
	char *lines = tls_lines(name);

	srv_start(&s, "%s%s\n[route /hello]\nplugin = hello\n", lines,
	    more ? more : "");
	free(lines);
	return srv_tls_port(&s);
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

/*
 * GET https://HOST:port/hello, HOST resolving to 127.0.0.1, trusting only
 * certs/ca.pem: whether the certificate HOST was given verified.
 */
static int
sni_get(int port, const char *host, const char *ca)
{
	char url[200], resolve[200], cafile[400];
	struct curl_slist *rs;
	struct resp r;
	CURL *c = curl_easy_init();
	CURLcode rc;

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "https://%s:%d/hello", host, port);
	snprintf(resolve, sizeof(resolve), "%s:%d:127.0.0.1", host, port);
	snprintf(cafile, sizeof(cafile), "%s/%s.pem", certs, ca);
	rs = curl_slist_append(NULL, resolve);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_RESOLVE, rs);
	curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	curl_slist_free_all(rs);
	free(r.body);
	return rc == CURLE_OK;
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

/*
 * A chain file (leaf, then intermediate) is served whole: a client that
 * trusts only the root verifies the leaf. An expired certificate loads,
 * with a warning, as nginx does, and clients refuse it.
 */
Test(tls, chain_is_served_and_expiry_is_warned)
{
	char *out;
	struct resp r;
	int port;

	make_pki();
	srv_start(&s, "listen = 127.0.0.1:0 tls\ntls_certificate = %s/chain.pem"
	    "\ntls_certificate_key = %s/leaf.key\n[route /hello]\n"
	    "plugin = hello\n", certs, certs);
	port = srv_tls_port(&s);
	cr_assert_eq(https_get(port, "/hello", "root", CURL_SSLVERSION_DEFAULT,
	    &r), 0, "the chain did not verify: %s",
	    curl_easy_strerror(r.curl_error));
	cr_assert_eq(r.status, 200);
	free(r.body);
	srv_cleanup(&s);

	cr_assert_eq(check("listen = 127.0.0.1:0 tls\ntls_certificate = "
	    "old.pem\ntls_certificate_key = old.key\n", &out), 0, "%s", out);
	cr_assert_not_null(strstr(out, "old.pem has expired: clients will "
	    "refuse it"), "%s", out);
	free(out);
	srv_start(&s, "listen = 127.0.0.1:0 tls\ntls_certificate = %s/old.pem"
	    "\ntls_certificate_key = %s/old.key\n[route /hello]\n"
	    "plugin = hello\n", certs, certs);
	cr_assert_eq(srv_log_count(&s, "old.pem has expired"), 1);
	cr_assert_neq(https_get(srv_tls_port(&s), "/hello", "root",
	    CURL_SSLVERSION_DEFAULT, &r), 0, "an expired certificate "
	    "verified");
	free(r.body);
}

/* A client hammering https://127.0.0.1:port/hello, a new handshake each. */
struct hammer {
	pthread_t	 thread;
	int		 port;
	char		 ca[400];	/* trusts both certificates */
	volatile int	 stop;
	volatile int	 ok, failed;
	char		 first_error[CURL_ERROR_SIZE];
};

static void *
hammer_run(void *arg)
{
	struct hammer *h = arg;
	char url[128], errbuf[CURL_ERROR_SIZE];
	struct resp r;
	CURL *c = curl_easy_init();
	long status;

	snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", h->port);
	while (!h->stop) {
		memset(&r, 0, sizeof(r));
		errbuf[0] = '\0';
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca);
		curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		status = 0;
		if (curl_easy_perform(c) == CURLE_OK &&
		    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) ==
		    CURLE_OK && status == 200)
			h->ok++;
		else if (h->failed++ == 0)
			snprintf(h->first_error, sizeof(h->first_error),
			    "%ld %s", status, errbuf);
		free(r.body);
	}
	curl_easy_cleanup(c);
	return NULL;
}

/*
 * Certificates swapped by SIGHUP under traffic: every handshake and
 * request succeeds, before, during and after each of the reloads.
 */
Test(tls, certificate_swapped_under_traffic_fails_nothing)
{
	char from[400], to[400], cmd[1400];
	struct hammer h;

	make_cert("a");
	make_cert("b");
	make_cert("live");
	snprintf(cmd, sizeof(cmd), "cat a.pem b.pem live.pem >all.pem");
	in_certs(cmd);
	memset(&h, 0, sizeof(h));
	h.port = start_tls("live", NULL);
	snprintf(h.ca, sizeof(h.ca), "%s/all.pem", certs);
	cr_assert_eq(pthread_create(&h.thread, NULL, hammer_run, &h), 0);
	for (int i = 0; i < 6; i++) {
		const char *name = i % 2 ? "a" : "b";

		snprintf(from, sizeof(from), "%s/%s.pem", certs, name);
		snprintf(to, sizeof(to), "%s/live.pem", certs);
		t_copy(from, to);
		snprintf(from, sizeof(from), "%s/%s.key", certs, name);
		snprintf(to, sizeof(to), "%s/live.key", certs);
		t_copy(from, to);
		cr_assert_eq(srv_reload(&s), 0, "reload %d", i);
	}
	/* some traffic after the last one too */
	for (int base = h.ok; h.ok < base + 20 && h.failed == 0;)
		usleep(10 * 1000);
	h.stop = 1;
	pthread_join(h.thread, NULL);
	cr_assert_eq(h.failed, 0, "%d of %d requests failed, the first: %s",
	    h.failed, h.ok + h.failed, h.first_error);
	cr_assert_gt(h.ok, 20);
}

/*
 * Requests on one keep-alive TLS connection are answered at once: each
 * response used to leave as several small records, the last held back by
 * Nagle's algorithm until the client's delayed ACK (40 ms a request). A
 * coarse bound: 20 requests in well under 20 such delays.
 */
Test(tls, keep_alive_answers_are_not_held_back)
{
	char url[128], cafile[400];
	struct resp r;
	long t0, ms;
	CURL *c;
	int port;

	make_cert("a");
	port = start_tls("a", NULL);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", port);
	snprintf(cafile, sizeof(cafile), "%s/a.pem", certs);
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	memset(&r, 0, sizeof(r));
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);	/* the handshake */
	t0 = t_now_ms();
	for (int i = 0; i < 20; i++)
		cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	ms = t_now_ms() - t0;
	curl_easy_cleanup(c);
	free(r.body);
	cr_assert_lt(ms, 400, "20 keep-alive requests took %ld ms", ms);
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
	port = srv_tls_port(&s);
	cr_assert_eq(https_get(port, "/echo", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	cr_assert_not_null(strstr(r.body, "\"tls\":true,\"http\":11"), "%s",
	    r.body);
	free(r.body);
	cr_assert_eq(http_get(s.port, "/echo", &r), 0);
	cr_assert_not_null(strstr(r.body, "\"tls\":false,\"http\":11"), "%s",
	    r.body);
	resp_free(&r);
	/* and an HTTP/1.0 request says so */
	{
		size_t len;
		char *got = raw_exchange(s.port, "GET /echo HTTP/1.0\r\n\r\n",
		    22, 3000, &len);

		cr_assert_not_null(strstr(got, "\"http\":10"), "%s", got);
		free(got);
	}
}

/*
 * As root with user = nobody, a key only root may read is named at start:
 * reloads, as nobody, could not read it.
 */
Test(tls, key_the_user_cannot_read_is_named_at_start)
{
	char *lines, key[400], want[600];
	int port;

	if (geteuid() != 0 || getpwnam("nobody") == NULL)
		cr_skip_test("needs root and a user nobody");
	make_cert("a");
	chmod(certs, 0755);
	snprintf(key, sizeof(key), "%s/a.key", certs);
	chmod(key, 0600);
	lines = tls_lines("a");
	srv_start(&s, "%suser = nobody\n[route /hello]\nplugin = hello\n",
	    lines);
	free(lines);
	port = srv_tls_port(&s);
	snprintf(want, sizeof(want), "tls_certificate_key %s cannot be read "
	    "by user nobody", key);
	cr_assert_eq(srv_wait_log(&s, want, 1, 3000), 0);
	cr_assert_eq(srv_log_count(&s, "tls_certificate "), 0, "the "
	    "certificate, which nobody can read, was named");
	t_expect_status(port, "/hello", 400);	/* plain HTTP: still TLS */
}

/* The JSON access log says which scheme each request came by. */
Test(tls, access_log_names_the_scheme)
{
	char *lines, path[400], *log;
	struct resp r;
	int port;

	make_cert("a");
	lines = tls_lines("a");
	srv_start(&s, "%saccess_log = access.log\naccess_log_format = json\n"
	    "[route /hello]\nplugin = hello\n", lines);
	free(lines);
	port = srv_tls_port(&s);
	cr_assert_eq(https_get(port, "/hello?s", "a", CURL_SSLVERSION_DEFAULT,
	    &r), 0);
	free(r.body);
	t_expect_status(s.port, "/hello?p", 200);
	snprintf(path, sizeof(path), "%s/access.log", s.dir);
	log = t_read(path, NULL);
	cr_assert_not_null(strstr(log, "\"uri\":\"/hello?s\",\"protocol\":"
	    "\"HTTP/1.1\",\"scheme\":\"https\""), "%s", log);
	cr_assert_not_null(strstr(log, "\"uri\":\"/hello?p\",\"protocol\":"
	    "\"HTTP/1.1\",\"scheme\":\"http\""), "%s", log);
	free(log);
}

/*
 * openssl s_client with version (-tls1_2, -tls1_3) and more options,
 * sending one HTTP/1.0 request and reading until the server closes (so
 * that a TLS 1.3 ticket, which comes after the handshake, is in); its
 * output. Malloc'ed.
 */
static char *
s_client(int port, const char *version, const char *more)
{
	char cmd[1200], out[400];

	snprintf(out, sizeof(out), "%s/s_client.out", certs);
	snprintf(cmd, sizeof(cmd), "printf 'GET /hello HTTP/1.0\\r\\n\\r\\n' | "
	    "openssl s_client %s -ign_eof -connect 127.0.0.1:%d %s >%s 2>&1",
	    version, port, more, out);
	/* its status says little: 1 when the server closed first */
	cr_assert_neq(system(cmd), -1);
	return t_read(out, NULL);
}

/*
 * Sessions resume (by ticket) with TLS 1.2 and 1.3, and ALPN answers
 * http/1.1 to a client that prefers h2.
 */
Test(tls, sessions_resume_and_alpn_says_http_1_1)
{
	static const char *const versions[] = { "-tls1_2", "-tls1_3" };
	char sess[400], opt[500], *out;
	int port;

	make_cert("a");
	port = start_tls("a", NULL);
	snprintf(sess, sizeof(sess), "%s/session", certs);
	for (size_t i = 0; i < 2; i++) {
		snprintf(opt, sizeof(opt), "-sess_out %s", sess);
		free(s_client(port, versions[i], opt));
		snprintf(opt, sizeof(opt), "-sess_in %s -alpn h2,http/1.1",
		    sess);
		out = s_client(port, versions[i], opt);
		cr_assert_not_null(strstr(out, "\nReused, TLSv1."), "%s: %s",
		    versions[i], out);
		cr_assert_not_null(strstr(out, "ALPN protocol: http/1.1"),
		    "%s", out);
		cr_assert_not_null(strstr(out, "Hello, world"), "%s", out);
		free(out);
	}
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
 * at request_timeout. The server serves on, logs none of it above debug,
 * and counts it (/status).
 */
Test(tls, what_is_not_tls_is_refused_cleanly)
{
	struct resp r;
	long ms;
	char *got;
	int port, fd, fds;

	make_cert("a");
	port = start_tls("a", "request_timeout = 1\nlog_level = debug\n"
	    "[route /status]\nplugin = status\n");
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

	/*
	 * Garbage in a TLS record, and a ClientHello cut short, then gone:
	 * ten thousand of them leave no descriptor behind (and nothing for
	 * the sanitizer build to report at exit).
	 */
	fds = t_open_fds(s.pid);
	for (int i = 0; i < 10000; i++) {
		static const char garbage[] =
		    "\x16\x03\x01\x00\x05garbagegarbage";
		static const char cut[] = "\x16\x03\x01\x02\x00\x01\x00\x01";

		fd = t_connect(port);
		cr_assert_geq(fd, 0);
		if (i % 2 == 0) {
			cr_assert_gt(send(fd, garbage, sizeof(garbage) - 1, 0),
			    0);
			free(read_to_close(fd, &ms));
		} else
			cr_assert_gt(send(fd, cut, sizeof(cut) - 1, 0), 0);
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
	/* the cut hellos' connections may take their turn to close */
	for (long t0 = t_now_ms(); t_open_fds(s.pid) > fds &&
	    t_now_ms() - t0 < 3000;)
		usleep(10 * 1000);
	cr_assert_leq(t_open_fds(s.pid), fds, "descriptors leaked");
	cr_assert_eq(srv_log_count(&s, "[error]"), 0);
	cr_assert_eq(srv_log_count(&s, "[warn]"), 0);
	cr_assert_eq(srv_log_count(&s, "TLS handshake with 127.0.0.1 failed: "
	    "http request\n"), 1);
	/*
	 * Failed: plain HTTP, the garbage and the silent one at least (this
	 * client's OpenSSL may not even have tried TLS 1.1).
	 */
	cr_assert_eq(http_get(s.port, "/status", &r), 0);
	{
		const char *t = strstr(r.body, "\"tls\":");
		unsigned long ok = 0, failed = 0;

		cr_assert_not_null(t, "%s", r.body);
		cr_assert_eq(sscanf(t, "\"tls\":{\"connections\":%*u,"
		    "\"handshakes\":%lu,\"handshake_failures\":%lu", &ok,
		    &failed), 2, "%s", t);
		cr_assert_eq(ok, 1, "%s", t);
		cr_assert_geq(failed, 10002, "%s", t);
	}
	resp_free(&r);
}

/*
 * [tls NAME] sections: the certificate the client names (SNI) is served,
 * exact names before "*." ones, which match one label; any other name,
 * or none, gets [server]'s.
 */
Test(tls, certificate_is_chosen_by_server_name)
{
	char *lines;
	int port;

	make_cert("a");
	make_cert_for("www", "DNS:www.example.com");
	make_cert_for("wild", "DNS:*.example.org");
	make_cert_for("exact", "DNS:api.example.org");
	lines = tls_lines("a");
	srv_start(&s, "%s[tls www.example.com]\ncertificate = %s/www.pem\n"
	    "certificate_key = %s/www.key\n[tls *.example.org]\n"
	    "certificate = %s/wild.pem\ncertificate_key = %s/wild.key\n"
	    "[tls api.example.org]\ncertificate = %s/exact.pem\n"
	    "certificate_key = %s/exact.key\n[route /hello]\nplugin = hello\n",
	    lines, certs, certs, certs, certs, certs, certs);
	free(lines);
	port = srv_tls_port(&s);
	cr_assert(sni_get(port, "www.example.com", "www"));
	cr_assert(sni_get(port, "WWW.Example.COM", "www"), "names differ in "
	    "case only");
	cr_assert(sni_get(port, "a.example.org", "wild"));
	cr_assert(sni_get(port, "api.example.org", "exact"), "the exact name "
	    "did not win over the wildcard");
	cr_assert(!sni_get(port, "a.b.example.org", "wild"), "*. matched two "
	    "labels");
	cr_assert(sni_get(port, "localhost", "a"), "an unknown name did not "
	    "get the default certificate");
}

/*
 * squalld -t on a configuration with server_lines (more [server] lines,
 * or sections) before its route; its output in *out.
 */
static int
check(const char *server_lines, char **out)
{
	char ini[400];

	snprintf(ini, sizeof(ini), "%s/squall.ini", certs);
	t_write(ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n%s\n"
	    "[route /hello]\nplugin = hello\n", t_plugin_dir(), server_lines);
	return t_run_squalld(out, "-t", "-c", ini, NULL);
}

/* text with every CERTS replaced by the certificates' folder. Malloc'ed. */
static char *
with_certs(const char *text)
{
	char *out = strdup(text), *p, *next;

	cr_assert_not_null(out);
	while ((p = strstr(out, "CERTS")) != NULL) {
		*p = '\0';
		cr_assert(asprintf(&next, "%s%s%s", out, certs, p + 5) >= 0);
		free(out);
		out = next;
	}
	return out;
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
		{ "listen = 127.0.0.1:0 tls\ntls_certificate = CERTS/a.pem\n"
		    "tls_certificate_key = CERTS/a.key\n[tls x.example.com]\n"
		    "certificate = CERTS/a.pem\ncertificate_key = CERTS/b.key\n",
		    "[tls x.example.com] certificate_key CERTS/b.key does not "
		    "match [tls x.example.com] certificate CERTS/a.pem" },
		{ "[tls x.example.com]\ncertificate = CERTS/a.pem\n",
		    "[tls x.example.com] needs certificate and certificate_key" },
		{ "[tls bad..name]\ncertificate = CERTS/a.pem\n",
		    "bad [tls bad..name]" },
		{ "[tls x.example.com]\nkey = CERTS/a.pem\n",
		    "unknown key 'key' in [tls x.example.com]" },
	};
	char *out, *lines, *want;

	make_cert("a");
	make_cert("b");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lines = with_certs(cases[i].lines);
		want = with_certs(cases[i].want);
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
	cr_assert_eq(srv_tls_port(&s), port, "the listener was not kept");
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
