/*
 * test_http.c - a real squalld on a loopback port, talked to over HTTP:
 * the hello, static and delay plugins, the limits, bad bytes, and the
 * point of it all: a slow request does not hold up the others.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(http, .fini = stop, .timeout = 60);

Test(http, hello_answers)
{
	struct resp r;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	cr_assert_eq(http_get(s.port, "/hello", &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "Hello, world");
	cr_assert_not_null(strstr(r.headers, "Content-Type: text/plain"));
	resp_free(&r);
	cr_assert_eq(srv_wait_log(&s, "\"GET /hello HTTP/1.1\" 200 12 \"-\"",
	    1, 5000), 0, "no access log line");
}

Test(http, hello_text_option_and_method)
{
	struct resp r;

	srv_start(&s, "[route /hi]\nplugin = hello\ntext = Bonjour\n");
	http_get(s.port, "/hi", &r);
	cr_assert_str_eq(r.body, "Bonjour");
	resp_free(&r);
	http_request(s.port, "POST", "/hi", NULL, "x", 1, 5000, &r);
	cr_assert_eq(r.status, 405);
	cr_assert_not_null(strstr(r.headers, "Allow: GET, HEAD"));
	resp_free(&r);
}

Test(http, unknown_route_is_404)
{
	struct resp r;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	http_get(s.port, "/nothing", &r);
	cr_assert_eq(r.status, 404);
	resp_free(&r);
	http_get(s.port, "/hello/", &r);
	cr_assert_eq(r.status, 404, "a trailing slash is another path");
	resp_free(&r);
}

Test(http, percent_encoded_path_reaches_route)
{
	srv_start(&s, "[route /hello]\nplugin = hello\n");
	t_expect_status(s.port, "/hel%6Co", 200);
	t_expect_status(s.port, "/x/../hello", 200);
	t_expect_status(s.port, "/hel%00lo", 400);
	t_expect_status(s.port, "/hel%zzlo", 400);
}

Test(http, headers_over_limit_get_431)
{
	struct resp r;
	char big[4000 + 16];
	const char *h[] = { big, NULL };

	srv_start(&s, "max_header_size = 2048\n[route /hello]\nplugin = hello\n");
	memset(big, 'a', sizeof(big));
	memcpy(big, "X-Big: ", 7);
	big[4000] = '\0';
	http_request(s.port, "GET", "/hello", h, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 431);
	resp_free(&r);
	/* and the server still serves */
	http_get(s.port, "/hello", &r);
	cr_assert_eq(r.status, 200);
	resp_free(&r);
}

Test(http, body_over_limit_gets_413)
{
	struct resp r;
	char body[5000];

	srv_start(&s, "max_body_size = 1K\n[route /hello]\nplugin = hello\n");
	memset(body, 'b', sizeof(body));
	http_request(s.port, "POST", "/hello", NULL, body, sizeof(body), 5000,
	    &r);
	cr_assert_eq(r.status, 413);
	resp_free(&r);
	http_get(s.port, "/hello", &r);
	cr_assert_eq(r.status, 200);
	resp_free(&r);
}

Test(http, garbage_does_not_disturb_other_clients)
{
	static const char *junk[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",	/* TLS */
		"GET\r\n\r\n",
		"GET /hello HTTP/9.9\r\n\r\n",
		"GET /hello HTTP/1.1\r\nBad Header Line\r\n\r\n",
		"\r\n\r\n\r\n",
		"POST /hello HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
		"GET /hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	};
	struct resp r;
	int idle[4];

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	/* half-open clients that never finish their request */
	for (int i = 0; i < 4; i++) {
		idle[i] = t_connect(s.port);
		cr_assert(idle[i] >= 0);
		cr_assert_eq(write(idle[i], "GET /hel", 8), 8);
	}
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		size_t n;
		char *out = raw_exchange(s.port, junk[i], strlen(junk[i]), 500,
		    &n);

		if (n > 0)
			cr_assert(strncmp(out, "HTTP/1.1 4", 10) == 0 ||
			    strncmp(out, "HTTP/1.0 4", 10) == 0,
			    "junk %zu answered: %s", i, out);
		free(out);
		cr_assert_eq(http_get(s.port, "/hello", &r), 0);
		cr_assert_eq(r.status, 200, "after junk %zu", i);
		resp_free(&r);
	}
	for (int i = 0; i < 4; i++)
		close(idle[i]);
	cr_assert_eq(srv_stop(&s), 0);
}

static void
make_site(struct srv *sv, char *secret_out, size_t len)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/root", sv->dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/root/sub", sv->dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/root/index.html", sv->dir);
	t_write(path, "<h1>index</h1>\n");
	snprintf(path, sizeof(path), "%s/root/sub/index.html", sv->dir);
	t_write(path, "<h1>sub</h1>\n");
	snprintf(path, sizeof(path), "%s/root/data.json", sv->dir);
	t_write(path, "{\"a\": 1}\n");
	snprintf(path, sizeof(path), "%s/root/digits.txt", sv->dir);
	t_write(path, "0123456789");
	snprintf(path, sizeof(path), "%s/secret.txt", sv->dir);
	t_write(path, "TOP-SECRET\n");
	snprintf(secret_out, len, "%s", path);
	snprintf(path, sizeof(path), "%s/root/escape.txt", sv->dir);
	cr_assert_eq(symlink(secret_out, path), 0);
	snprintf(path, sizeof(path), "%s/root/up", sv->dir);
	cr_assert_eq(symlink("..", path), 0);
}

static void
start_static(void)
{
	char secret[400];

	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	make_site(&s, secret, sizeof(secret));
	{
		char *ini;

		cr_assert(asprintf(&ini, "[server]\nlisten = 127.0.0.1:0\n"
		    "plugin_dir = %s\n[route /*]\nplugin = static\n"
		    "root = root\n", t_plugin_dir()) > 0);
		srv_start_in(&s, ini);
		free(ini);
	}
}

Test(http, static_serves_files_with_types)
{
	struct resp r;

	start_static();
	http_get(s.port, "/", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "<h1>index</h1>\n");
	cr_assert_not_null(strstr(r.headers, "Content-Type: text/html"));
	cr_assert_not_null(strstr(r.headers,
	    "X-Content-Type-Options: nosniff"));
	resp_free(&r);
	http_get(s.port, "/data.json", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers,
	    "Content-Type: application/json"));
	cr_assert_not_null(strstr(r.headers, "Last-Modified: "));
	resp_free(&r);
	http_get(s.port, "/sub/", &r);
	cr_assert_str_eq(r.body, "<h1>sub</h1>\n");
	resp_free(&r);
	http_get(s.port, "/sub", &r);
	cr_assert_eq(r.status, 301);
	cr_assert_not_null(strstr(r.headers, "Location: /sub/"));
	resp_free(&r);
	http_request(s.port, "HEAD", "/digits.txt", NULL, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "Content-Length: 10"));
	cr_assert_eq(r.len, 0);
	resp_free(&r);
}

Test(http, static_never_leaks_outside_root)
{
	static const char *attempts[] = {
		"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
		"/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
		"/..%2fsecret.txt", "/escape.txt", "/up/secret.txt",
		"/up/", "//secret.txt", "/sub/..%2F..%2Fsecret.txt",
	};
	struct resp r;

	start_static();
	for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
		cr_assert_eq(http_get(s.port, attempts[i], &r), 0);
		cr_assert_null(strstr(r.body, "TOP-SECRET"), "%s leaked the "
		    "secret", attempts[i]);
		cr_assert_neq(r.status, 200, "%s answered 200", attempts[i]);
		resp_free(&r);
	}
	/* raw request lines, bypassing any client-side normalisation */
	{
		const char *req = "GET /../secret.txt HTTP/1.0\r\n\r\n";
		char *out = raw_exchange(s.port, req, strlen(req), 2000, NULL);

		cr_assert_null(strstr(out, "TOP-SECRET"));
		free(out);
	}
}

Test(http, static_ranges)
{
	const char *h1[] = { "Range: bytes=2-5", NULL };
	const char *h2[] = { "Range: bytes=-3", NULL };
	const char *h3[] = { "Range: bytes=7-", NULL };
	const char *h4[] = { "Range: bytes=20-30", NULL };
	const char *h5[] = { "Range: bytes=1-2,4-5", NULL };
	struct resp r;

	start_static();
	http_request(s.port, "GET", "/digits.txt", h1, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 206);
	cr_assert_str_eq(r.body, "2345");
	cr_assert_not_null(strstr(r.headers, "Content-Range: bytes 2-5/10"));
	resp_free(&r);
	http_request(s.port, "GET", "/digits.txt", h2, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 206);
	cr_assert_str_eq(r.body, "789");
	resp_free(&r);
	http_request(s.port, "GET", "/digits.txt", h3, NULL, 0, 5000, &r);
	cr_assert_str_eq(r.body, "789");
	resp_free(&r);
	http_request(s.port, "GET", "/digits.txt", h4, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 416);
	cr_assert_not_null(strstr(r.headers, "Content-Range: bytes */10"));
	resp_free(&r);
	http_request(s.port, "GET", "/digits.txt", h5, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 200, "multiple ranges: the whole file");
	cr_assert_str_eq(r.body, "0123456789");
	resp_free(&r);
}

Test(http, static_if_modified_since)
{
	char lm[128], hdr[160];
	const char *h[] = { hdr, NULL };
	const char *old[] = { "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT",
	    NULL };
	struct resp r;
	char *p;

	start_static();
	http_get(s.port, "/data.json", &r);
	p = strstr(r.headers, "Last-Modified: ");
	cr_assert_not_null(p);
	snprintf(lm, sizeof(lm), "%.*s", (int)strcspn(p + 15, "\r\n"),
	    p + 15);
	resp_free(&r);
	snprintf(hdr, sizeof(hdr), "If-Modified-Since: %s", lm);
	http_request(s.port, "GET", "/data.json", h, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 304);
	cr_assert_eq(r.len, 0);
	resp_free(&r);
	http_request(s.port, "GET", "/data.json", old, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 200);
	resp_free(&r);
}

Test(http, static_refuses_missing_root)
{
	char *out;
	char dir[256], ini[400];
	int rc;

	t_tmpdir(dir, sizeof(dir));
	snprintf(ini, sizeof(ini), "%s/squall.ini", dir);
	t_write(ini, "[server]\nplugin_dir = %s\n[route /*]\nplugin = static\n"
	    "root = nowhere\n", t_plugin_dir());
	rc = t_run_squalld(&out, "-t", "-c", ini, NULL);
	cr_assert_eq(rc, 1);
	cr_assert_not_null(strstr(out, "squall.ini:5: route '/': root "),
	    "%s", out);
	cr_assert_not_null(strstr(out, "No such file or directory"), "%s", out);
	free(out);
	t_rm_rf(dir);
}

Test(http, slow_request_does_not_hold_up_others)
{
	struct bg slow;
	struct resp r;
	long t0, t1;

	srv_start(&s, "[route /hello]\nplugin = hello\n"
	    "[route /delay]\nplugin = delay\n");
	t0 = t_now_ms();
	bg_start(&slow, s.port, "/delay?ms=1000");
	/* the delay request is in flight once the server logs nothing yet
	 * and the hello round trip happens meanwhile */
	usleep(100 * 1000);
	cr_assert_eq(http_get(s.port, "/hello", &r), 0);
	t1 = t_now_ms();
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	bg_wait(&slow);
	cr_assert_eq(slow.r.status, 200);
	cr_assert_str_eq(slow.r.body, "waited 1000 ms\n");
	cr_assert_lt(t1 - t0, 800, "/hello took %ld ms behind /delay",
	    t1 - t0);
	cr_assert_geq(slow.done_ms - t0, 950);
	cr_assert_lt(t1, slow.done_ms, "/hello answered after /delay");
	resp_free(&slow.r);
}

Test(http, delay_checks_its_argument)
{
	srv_start(&s, "[route /delay]\nplugin = delay\nmax_ms = 500\n");
	t_expect_status(s.port, "/delay?ms=abc", 400);
	t_expect_status(s.port, "/delay?ms=501", 400);
	t_expect_status(s.port, "/delay?ms=-1", 400);
	t_expect_status(s.port, "/delay?ms=0", 200);
}

Test(http, client_leaving_cancels_pending_request)
{
	struct resp r;

	srv_start(&s, "log_level = debug\n[route /hello]\nplugin = hello\n"
	    "[route /delay]\nplugin = delay\n");
	http_request(s.port, "GET", "/delay?ms=5000", NULL, NULL, 0, 200, &r);
	cr_assert_neq(r.curl_error, 0, "the request should have timed out");
	resp_free(&r);
	cr_assert_eq(srv_wait_log(&s, "left before the response", 1, 3000), 0,
	    "the server did not notice the client leaving");
	cr_assert_eq(srv_wait_log(&s, "\"GET /delay?ms=5000 HTTP/1.1\" 499",
	    1, 3000), 0);
	http_get(s.port, "/hello", &r);
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	/* nothing is left in flight: SIGTERM exits at once */
	t_now_ms();
	cr_assert_eq(srv_stop(&s), 0);
	cr_assert_eq(srv_log_count(&s, "stopping: 0 requests in flight"), 1);
}

Test(http, keep_alive_serves_several_requests)
{
	const char *two = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char *out, *second;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	out = raw_exchange(s.port, two, strlen(two), 3000, NULL);
	second = strstr(out + 1, "HTTP/1.1 200");
	cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
	cr_assert_not_null(second, "no second response in:\n%s", out);
	free(out);
}

/*
 * The requests of one keep-alive connection, in request objects the
 * server reuses (a path that fits in the object, one too long for it,
 * then a short one again): each answer is its own request's, and each
 * HTTP/1.1 answer carries the Date and Content-Length squall adds.
 */
Test(http, keep_alive_requests_each_get_their_own_answer)
{
	const char *segs[3] = { "a", NULL, "b" };
	char longseg[151], req[1024], want[200], *out, *p, *end, *v;
	size_t n = 0;
	long len;
	int i;

	memset(longseg, 'x', sizeof(longseg) - 1);
	longseg[sizeof(longseg) - 1] = '\0';
	segs[1] = longseg;
	for (i = 0; i < 3; i++)
		n += (size_t)snprintf(req + n, sizeof(req) - n,
		    "GET /echo/%s HTTP/1.1\r\nHost: x\r\n%s\r\n", segs[i],
		    i == 2 ? "Connection: close\r\n" : "");
	cr_assert_lt(n, sizeof(req));
	srv_start(&s, "[route /echo/*]\nplugin = %s\n", t_test_plugin("echo"));
	out = raw_exchange(s.port, req, n, 3000, NULL);
	p = out;
	for (i = 0; i < 3; i++) {
		cr_assert(strncmp(p, "HTTP/1.1 200 ", 13) == 0, "answer %d: %s",
		    i, p);
		cr_assert_not_null(end = strstr(p, "\r\n\r\n"), "%s", p);
		*end = '\0';
		cr_assert_not_null(v = strstr(p, "\r\nDate: "), "%s", p);
		cr_assert(strncmp(v + 8 + 25, " GMT", 4) == 0, "%s", p);
		cr_assert_not_null(v = strstr(p, "\r\nContent-Length: "), "%s",
		    p);
		len = strtol(v + 18, NULL, 10);
		p = end + 4;
		cr_assert(len > 0 && strlen(p) >= (size_t)len, "answer %d", i);
		snprintf(want, sizeof(want), "\"subpath\":\"%s\"", segs[i]);
		end = p + len;
		v = strstr(p, want);
		cr_assert(v != NULL && v < end, "answer %d: %s", i, p);
		p = end;
	}
	cr_assert_str_eq(p, "", "more than 3 answers");
	free(out);
}

Test(http, websocket_upgrade_to_plain_route_is_400)
{
	const char *h[] = { "Upgrade: websocket", "Connection: Upgrade",
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	    "Sec-WebSocket-Version: 13", NULL };
	struct resp r;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	http_request(s.port, "GET", "/hello", h, NULL, 0, 5000, &r);
	cr_assert_eq(r.status, 400);
	resp_free(&r);
}

static struct json_object *
get_json(const char *path, const char **headers, const char *body)
{
	struct json_object *o;
	struct resp r;

	cr_assert_eq(http_request(s.port, body ? "POST" : "GET", path, headers,
	    body, body ? strlen(body) : 0, 5000, &r), 0);
	cr_assert_eq(r.status, 200, "%s: %ld", path, r.status);
	cr_assert_not_null(strstr(r.headers, "Content-Type: application/json"));
	o = json_tokener_parse(r.body);
	cr_assert_not_null(o, "not JSON: %s", r.body);
	resp_free(&r);
	return o;
}

static const char *
field(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	return json_object_get_string(v);
}

Test(http, plugin_api_sees_the_request)
{
	const char *h[] = { "X-Test: yes", NULL };
	struct json_object *o;

	srv_start(&s, "[route /echo/*]\nplugin = %s\nitem = one\nitem = two\n",
	    t_test_plugin("echo"));
	o = get_json("/echo/a/b%20c?a=1%2B1&b=2", h, NULL);
	cr_assert_str_eq(field(o, "method"), "GET");
	cr_assert_str_eq(field(o, "path"), "/echo/a/b c");
	cr_assert_str_eq(field(o, "subpath"), "a/b c");
	cr_assert_str_eq(field(o, "query"), "a=1%2B1&b=2");
	cr_assert_str_eq(field(o, "arg"), "1+1");
	cr_assert_str_eq(field(o, "header"), "yes");
	cr_assert_str_eq(field(o, "body"), "");
	cr_assert_str_eq(field(o, "client"), "127.0.0.1");
	cr_assert_str_eq(field(o, "route"), "/echo/*");
	cr_assert_str_eq(field(o, "items"), "[ \"one\", \"two\" ]");
	json_object_put(o);
	o = get_json("/echo/", NULL, "posted body");
	cr_assert_str_eq(field(o, "method"), "POST");
	cr_assert_str_eq(field(o, "body"), "posted body");
	cr_assert_null(field(o, "arg"));
	cr_assert_null(field(o, "header"));
	json_object_put(o);
	cr_assert_eq(srv_wait_log(&s, "[info] ", 1, 1000), 0);
	cr_assert_eq(srv_wait_log(&s, "echo /echo/*: echo /echo/a/b c from "
	    "127.0.0.1", 1, 3000), 0, "no sq_log line");
}

Test(http, xheaders_from_trusted_proxy_only)
{
	const char *real[] = { "X-Real-IP: 203.0.113.7", NULL };
	const char *fwd[] = { "X-Forwarded-For: 198.51.100.1, 203.0.113.8",
	    NULL };
	const char *junk[] = { "X-Real-IP: <script>", NULL };
	struct json_object *o;
	struct srv other;

	srv_start(&s, "xheaders = on\n[route /echo]\nplugin = %s\n",
	    t_test_plugin("echo"));
	o = get_json("/echo", real, NULL);
	cr_assert_str_eq(field(o, "client"), "203.0.113.7");
	json_object_put(o);
	o = get_json("/echo", fwd, NULL);
	cr_assert_str_eq(field(o, "client"), "203.0.113.8");
	json_object_put(o);
	o = get_json("/echo", junk, NULL);
	cr_assert_str_eq(field(o, "client"), "127.0.0.1");
	json_object_put(o);
	cr_assert_eq(srv_wait_log(&s, "203.0.113.7 - - [", 1, 3000), 0,
	    "the access log does not show the real client");

	/* a peer outside trusted_proxies cannot claim another address */
	memcpy(&other, &s, sizeof(s));
	memset(&s, 0, sizeof(s));
	srv_start(&s, "xheaders = on\ntrusted_proxies = 10.0.0.0/8\n"
	    "[route /echo]\nplugin = %s\n", t_test_plugin("echo"));
	o = get_json("/echo", real, NULL);
	cr_assert_str_eq(field(o, "client"), "127.0.0.1");
	json_object_put(o);
	srv_cleanup(&s);
	memcpy(&s, &other, sizeof(s));
}

Test(http, xheaders_off_ignores_headers)
{
	const char *real[] = { "X-Real-IP: 203.0.113.7", NULL };
	struct json_object *o;

	srv_start(&s, "[route /echo]\nplugin = %s\n", t_test_plugin("echo"));
	o = get_json("/echo", real, NULL);
	cr_assert_str_eq(field(o, "client"), "127.0.0.1");
	json_object_put(o);
}

Test(http, max_connections_holds_new_clients_back)
{
	const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[512];
	int fd[3];
	struct pollfd p;

	srv_start(&s, "max_connections = 2\n[route /hello]\nplugin = hello\n");
	for (int i = 0; i < 3; i++) {
		fd[i] = t_connect(s.port);
		cr_assert(fd[i] >= 0);
		cr_assert_eq(write(fd[i], req, strlen(req)),
		    (ssize_t)strlen(req));
		p.fd = fd[i];
		p.events = POLLIN;
		if (i < 2) {
			cr_assert_eq(poll(&p, 1, 3000), 1, "client %d not "
			    "served", i);
			cr_assert_gt(read(fd[i], buf, sizeof(buf)), 0);
		} else
			cr_assert_eq(poll(&p, 1, 300), 0, "a third client "
			    "was served past max_connections = 2");
	}
	cr_assert_eq(srv_wait_log(&s, "max_connections (2) reached", 1, 3000),
	    0);
	close(fd[0]);
	p.fd = fd[2];
	cr_assert_eq(poll(&p, 1, 3000), 1, "the waiting client was not "
	    "served after a connection closed");
	cr_assert_gt(read(fd[2], buf, sizeof(buf)), 0);
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	close(fd[1]);
	close(fd[2]);
}

Test(http, slow_or_vanishing_clients_do_not_hold_the_server)
{
	const char *part = "POST /hello HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 1000\r\n\r\n0123456789";
	char buf[256];
	struct pollfd p;
	ssize_t n;
	long t0;
	int fd;

	srv_start(&s, "request_timeout = 1\n[route /hello]\nplugin = hello\n");
	/* a body cut short: the client goes away mid-request */
	fd = t_connect(s.port);
	cr_assert_eq(write(fd, part, strlen(part)), (ssize_t)strlen(part));
	close(fd);
	/* headers that never end: request_timeout closes the connection */
	fd = t_connect(s.port);
	cr_assert_eq(write(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n", 30), 30);
	t0 = t_now_ms();
	p.fd = fd;
	p.events = POLLIN;
	cr_assert_eq(poll(&p, 1, 5000), 1, "the connection stayed open");
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	cr_assert(n == 0 || strncmp(buf, "HTTP/1.1 408", 12) == 0,
	    "after request_timeout: %s", buf);
	cr_assert_lt(t_now_ms() - t0, 4000);
	close(fd);
	t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(srv_stop(&s), 0);
}

/* Every status has its own reason phrase; HEAD says the length. */
Test(http, reason_phrases_and_head_length)
{
	static const struct {
		const char *req, *line;
	} cases[] = {
		{ "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		    "HTTP/1.1 426 Upgrade Required\r\n" },
		{ "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		    "HTTP/1.1 404 Not Found\r\n" },
		{ "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		    "HTTP/1.1 200 OK\r\n" },
		{ "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		    "HTTP/1.1 200 OK\r\n" },
	};
	char *out;

	srv_start(&s, "[route /hello]\nplugin = hello\n[route /chat]\n"
	    "plugin = chat\n");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		out = raw_exchange(s.port, cases[i].req, strlen(cases[i].req),
		    2000, NULL);
		cr_assert(strncmp(out, cases[i].line, strlen(cases[i].line)) ==
		    0, "%s", out);
		if (strncmp(cases[i].req, "HEAD", 4) == 0) {
			cr_assert_not_null(strstr(out, "Content-Length: 12\r\n"),
			    "%s", out);
			cr_assert(strstr(out, "\r\n\r\n")[4] == '\0', "a body "
			    "in a HEAD answer: %s", out);
		}
		free(out);
	}
}

/* CPU time (user + system) of process pid so far, in milliseconds. */
static long
cpu_ms(pid_t pid)
{
	char path[64], *stat, *p;
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	stat = t_read(path, NULL);
	p = strrchr(stat, ')');
	cr_assert_not_null(p, "cannot read %s", path);
	/* after the name: state, then fields 4 to 13, utime and stime */
	cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
	    "%*u %lu %lu", &ut, &st), 2);
	free(stat);
	return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

Test(http, out_of_descriptors_pauses_accepting)
{
	struct rlimit rl;
	struct resp r;
	int fd[6];
	long cpu;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	/* room for two more descriptors: the third accept() fails */
	cr_assert_eq(prlimit(s.pid, RLIMIT_NOFILE, NULL, &rl), 0);
	rl.rlim_cur = (rlim_t)t_open_fds(s.pid) + 2;
	cr_assert_eq(prlimit(s.pid, RLIMIT_NOFILE, &rl, NULL), 0);
	for (int i = 0; i < 6; i++)
		cr_assert((fd[i] = t_connect(s.port)) >= 0);
	cr_assert_eq(srv_wait_log(&s, "cannot accept connections (Too many "
	    "open files)", 1, 5000), 0, "no pause logged");
	/* the backlog still holds clients: the server must not spin */
	cpu = cpu_ms(s.pid);
	usleep(1000 * 1000);
	cpu = cpu_ms(s.pid) - cpu;
	cr_assert_lt(cpu, 200, "%ld ms of CPU in a second out of descriptors",
	    cpu);
	cr_assert_eq(srv_log_count(&s, "cannot accept connections"), 1);
	cr_assert_eq(srv_log_count(&s, "Error from accept"), 0,
	    "libevent's own warnings");
	/* the clients leave: the server serves again, same limit */
	for (int i = 0; i < 6; i++)
		close(fd[i]);
	cr_assert_eq(http_get(s.port, "/hello", &r), 0);
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	cr_assert_eq(srv_log_count(&s, "cannot accept connections"), 1);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(http, max_connections_counts_idle_connections)
{
	int idle[5], fd;

	srv_start(&s, "max_connections = 5\n[route /hello]\nplugin = hello\n");
	for (int i = 0; i < 5; i++)
		cr_assert((idle[i] = t_connect(s.port)) >= 0);
	cr_assert_eq(srv_wait_log(&s, "max_connections (5) reached", 1, 3000),
	    0, "five idle connections did not reach max_connections = 5");
	fd = t_connect_unserved(s.port);
	close(idle[0]);
	t_expect_served(fd, "an idle connection closed");
	/* back at the limit at once: no second line for it */
	cr_assert_eq(srv_log_count(&s, "max_connections (5) reached"), 1);
	for (int i = 1; i < 5; i++)
		close(idle[i]);
}

/* Sends req on a connection of its own: the answer, up to the close. */
static char *
exchange_until_close(const char *req, size_t len)
{
	long t0 = t_now_ms();
	char *out = raw_exchange(s.port, req, len, 5000, NULL);

	cr_assert_lt(t_now_ms() - t0, 4000, "the connection stayed open "
	    "after:\n%s", out);
	return out;
}

static int
count_str(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

Test(http, ambiguous_body_framing_is_refused)
{
	static const char smuggled[] = "GET /echo/smuggled HTTP/1.1\r\n"
	    "Host: x\r\n\r\n";
	static const struct {
		const char	*fmt;	/* %zu: length with smuggled */
		int		 with_len;
		int		 status;
	} refused[] = {
		/* two lengths: evhttp took the first */
		{ "POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		  "Content-Length: %zu\r\n\r\nhello%s", 1, 400 },
		/* and the other way round */
		{ "POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
		  "Content-Length: 5\r\n\r\nhello%s", 1, 400 },
		/* a length and chunked: evhttp reads chunks */
		{ "POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s", 0, 400 },
		/* a length strtoll reads, but not digits */
		{ "POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n"
		  "\r\nhello%s", 0, 400 },
		/* a coding evhttp ignores: no body for it */
		{ "POST /echo/a HTTP/1.1\r\nHost: x\r\n"
		  "Transfer-Encoding: gzip\r\n\r\n%s", 0, 501 },
	};
	const char *same = "POST /echo/a HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n"
	    "\r\nhello";
	char req[512], want[16], *out;

	srv_start(&s, "[route /echo/*]\nplugin = %s\n",
	    t_test_plugin("echo"));
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (refused[i].with_len)
			snprintf(req, sizeof(req), refused[i].fmt,
			    5 + strlen(smuggled), smuggled);
		else
			snprintf(req, sizeof(req), refused[i].fmt, smuggled);
		out = exchange_until_close(req, strlen(req));
		snprintf(want, sizeof(want), "HTTP/1.1 %d", refused[i].status);
		cr_assert(strncmp(out, want, 12) == 0, "case %zu:\n%s", i,
		    out);
		cr_assert_eq(count_str(out, "HTTP/1.1 "), 1, "case %zu:\n%s",
		    i, out);
		cr_assert_not_null(strstr(out, "Connection: close"));
		free(out);
	}
	/* the same length twice is no ambiguity */
	out = exchange_until_close(same, strlen(same));
	cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
	cr_assert_not_null(strstr(out, "\"body\":\"hello\""), "%s", out);
	free(out);
	cr_assert_eq(srv_log_count(&s, "/echo/a from"), 1, "the plugin saw "
	    "a refused request");
	cr_assert_eq(srv_log_count(&s, "smuggled"), 0, "the bytes after a "
	    "body were served as a request");
}

/*
 * RFC 7230 3.2.4: whitespace between a header name and its colon is
 * refused with 400. evhttp kept "Content-Length " as another header, so
 * the body was read as the next request: the smuggling shape of a
 * proxy that trims the name (issue 15, defect 4).
 */
Test(http, whitespace_before_a_header_colon_is_refused)
{
	static const char smuggled[] = "GET /echo/smuggled HTTP/1.1\r\n"
	    "Host: x\r\n\r\n";
	static const char *const refused[] = {
		"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length : %zu\r\n"
		"\r\nhello%s",
		"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length\t: %zu\r\n"
		"\r\nhello%s",
		"POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : "
		"chunked\r\n\r\n%zx\r\nhello%s\r\n0\r\n\r\n",
		"GET /echo/a HTTP/1.1\r\nHost : x\r\n\r\n%.0zu%s",
	};
	char req[512], *out;

	srv_start(&s, "[route /echo/*]\nplugin = %s\n",
	    t_test_plugin("echo"));
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(req, sizeof(req), refused[i], 5 + strlen(smuggled),
		    smuggled);
		out = exchange_until_close(req, strlen(req));
		cr_assert(strncmp(out, "HTTP/1.1 400", 12) == 0, "case %zu:\n%s",
		    i, out);
		cr_assert_eq(count_str(out, "HTTP/1.1 "), 1, "case %zu:\n%s",
		    i, out);
		cr_assert_not_null(strstr(out, "Connection: close"));
		free(out);
	}
	cr_assert_eq(srv_log_count(&s, "/echo/a from"), 0, "the plugin saw "
	    "a refused request");
	cr_assert_eq(srv_log_count(&s, "smuggled"), 0, "the bytes after a "
	    "header were served as a request");
	t_expect_status(s.port, "/echo/ok", 200);
}

static char *
big_header_request(const char *path, size_t n)
{
	char *req = malloc(n + 128);
	int k = snprintf(req, 128, "GET %s HTTP/1.1\r\nHost: x\r\nX-Big: ",
	    path);

	memset(req + k, 'a', n);
	memcpy(req + k + n, "\r\n\r\n", 5);
	return req;
}

Test(http, headers_get_431_whatever_their_size)
{
	char big[40 * 1024 + 8], *req, *out;
	const char *h[] = { big, NULL };
	struct resp r;

	srv_start(&s, "[route /hello]\nplugin = hello\n");
	/* 40 KB: past four times the default max_header_size (8K) */
	memset(big, 'a', sizeof(big));
	memcpy(big, "X-Big: ", 7);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(http_request(s.port, "GET", "/hello", h, NULL, 0, 5000,
	    &r), 0);
	cr_assert_eq(r.status, 431);
	resp_free(&r);
	/* half a megabyte, as raw bytes: one answer, then the close */
	req = big_header_request("/hello", 512 * 1024);
	out = exchange_until_close(req, strlen(req));
	cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0, "%.200s", out);
	cr_assert_eq(count_str(out, "HTTP/1.1 "), 1);
	free(out);
	free(req);
	/* a request line as long */
	req = big_header_request("/hello?", 60000);
	memcpy(strstr(req, "?") + 1 + 59990, " HTTP/1.1\r\n", 11);
	out = exchange_until_close(req, strlen(req));
	cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0, "%.200s", out);
	free(out);
	free(req);
	cr_assert_eq(srv_wait_log(&s, "\"GET /hello HTTP/1.1\" 431", 2, 3000),
	    0);
	t_expect_status(s.port, "/hello", 200);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(http, header_limit_counts_each_request_apart)
{
	char pad[601], body[5001], *req, *out;
	char *second;
	int fd, n;

	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	memset(body, '\n', sizeof(body) - 1);	/* blank lines: a body */
	body[sizeof(body) - 1] = '\0';
	srv_start(&s, "max_header_size = 1K\n[route /echo/*]\nplugin = %s\n",
	    t_test_plugin("echo"));
	/* three requests of 600-byte headers, and a body, in one write */
	n = asprintf(&req, "POST /echo/1 HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n"
	    "Content-Length: %zu\r\n\r\n%sGET /echo/2 HTTP/1.1\r\nHost: x\r\n"
	    "X-Pad: %s\r\n\r\nGET /echo/3 HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n"
	    "Connection: close\r\n\r\n", pad, strlen(body), body, pad, pad);
	cr_assert_gt(n, 0);
	out = exchange_until_close(req, (size_t)n);
	cr_assert_eq(count_str(out, "HTTP/1.1 200"), 3, "%s", out);
	free(out);
	free(req);
	/* past the limit in the second request of a connection */
	fd = t_connect(s.port);
	n = asprintf(&req, "GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(write(fd, req, (size_t)n), n);
	free(req);
	{
		char buf[4096];
		struct pollfd p = { fd, POLLIN, 0 };

		cr_assert_eq(poll(&p, 1, 3000), 1);
		cr_assert_gt(read(fd, buf, sizeof(buf)), 0);
		cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	}
	n = asprintf(&req, "GET /echo/2 HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n"
	    "X-Pad: %s\r\n\r\n", pad, pad);
	cr_assert_eq(write(fd, req, (size_t)n), n);
	free(req);
	{
		char buf[4096];
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t k;

		cr_assert_eq(poll(&p, 1, 3000), 1);
		cr_assert_gt(k = read(fd, buf, sizeof(buf) - 1), 0);
		buf[k] = '\0';
		cr_assert(strncmp(buf, "HTTP/1.1 431", 12) == 0, "%s", buf);
	}
	close(fd);
	/* and pipelined behind a first request */
	n = asprintf(&req, "GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /echo/2 HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nX-Pad: %s\r\n\r\n",
	    pad, pad);
	out = exchange_until_close(req, (size_t)n);
	cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
	second = strstr(out + 1, "HTTP/1.1 ");
	cr_assert_not_null(second, "%s", out);
	cr_assert(strncmp(second, "HTTP/1.1 431", 12) == 0, "%s", out);
	free(out);
	free(req);
}

/* The last line of the file at path, malloc'ed. */
static char *
last_line(const char *path)
{
	char *text = t_read(path, NULL), *end, *start, *out;

	end = text + strlen(text);
	while (end > text && end[-1] == '\n')
		end--;
	for (start = end; start > text && start[-1] != '\n'; start--)
		;
	out = strndup(start, (size_t)(end - start));
	free(text);
	return out;
}

/*
 * access_log_format: json writes one valid JSON object a line, whatever
 * the client sent, with the request time; timed is the combined line
 * with the request time in seconds at the end (issue 15, item 16: the
 * access log had no request time and one format).
 */
Test(http, access_log_formats)
{
	const char *hdrs[] = { "User-Agent: a \"quoted\" \x01 agent \xff",
	    "Referer: http://x/", NULL };
	char path[400], *line;
	struct json_object *o, *v;
	struct resp r;

	srv_start(&s, "access_log = access.log\naccess_log_format = json\n"
	    "[route /hello]\nplugin = hello\n[route /delay]\nplugin = delay\n");
	snprintf(path, sizeof(path), "%s/access.log", s.dir);
	cr_assert_eq(http_request(s.port, "GET", "/hello?x=%22", hdrs, NULL,
	    0, 5000, &r), 0);
	resp_free(&r);
	cr_assert_eq(http_get(s.port, "/delay?ms=120", &r), 0);
	resp_free(&r);
	line = last_line(path);
	cr_assert_not_null(o = json_tokener_parse(line), "not JSON: %s", line);
	cr_assert(json_object_object_get_ex(o, "status", &v));
	cr_assert_eq(json_object_get_int(v), 200);
	cr_assert(json_object_object_get_ex(o, "uri", &v));
	cr_assert_str_eq(json_object_get_string(v), "/delay?ms=120");
	cr_assert(json_object_object_get_ex(o, "scheme", &v));
	cr_assert_str_eq(json_object_get_string(v), "http");
	cr_assert(json_object_object_get_ex(o, "request_time", &v));
	cr_assert_geq(json_object_get_double(v), 0.1, "%s", line);
	cr_assert_lt(json_object_get_double(v), 10.0, "%s", line);
	json_object_put(o);
	free(line);
	/* the first line, with what the client sent, is JSON too */
	{
		char *text = t_read(path, NULL);

		*strchr(text, '\n') = '\0';
		cr_assert_not_null(o = json_tokener_parse(text), "not JSON: %s",
		    text);
		cr_assert(json_object_object_get_ex(o, "user_agent", &v));
		cr_assert_not_null(strstr(json_object_get_string(v),
		    "a \"quoted\" \x01 agent "), "%s", text);
		json_object_put(o);
		free(text);
	}
	/* timed, after a reload */
	t_write(s.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    "access_log = access.log\naccess_log_format = timed\n"
	    "[route /hello]\nplugin = hello\n[route /delay]\nplugin = delay\n",
	    t_plugin_dir());
	cr_assert_eq(srv_reload(&s), 0);
	cr_assert_eq(http_get(s.port, "/hello", &r), 0);
	resp_free(&r);
	line = last_line(path);
	cr_assert_not_null(strstr(line, "\"GET /hello HTTP/1.1\" 200 12 "),
	    "%s", line);
	{
		/* "... \"agent\" S.mmm": seconds, to the millisecond */
		const char *t = strrchr(line, ' ');
		char *end;

		cr_assert(t != NULL && t[-1] == '"', "%s", line);
		cr_assert(strtod(t + 1, &end) < 10.0 && *end == '\0' &&
		    strlen(t + 1) == 5 && t[2] == '.', "no request time: %s",
		    line);
	}
	free(line);
	cr_assert_eq(srv_stop(&s), 0);
}
