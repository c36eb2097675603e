/*
 * test_fetch.c - the shared HTTP client through data_fetch, multi_fetch
 * and a test plugin that cancels from callbacks, against an upstream
 * squalld of the test's own (tests/plugins/upstream.c); and the offload
 * pool through delay's mode = thread.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct srv up, s;

static void
stop(void)
{
	srv_cleanup(&s);
	srv_cleanup(&up);
}

TestSuite(fetch, .fini = stop, .timeout = 180);

static void
start_upstream(void)
{
	srv_start(&up, "access_log = off\nlog_level = debug\n"
	    "[route /up/*]\nplugin = %s\n", t_test_plugin("upstream"));
}

/*
 * The server under test, with routes in a format where %1$d is the
 * upstream's port and %2$s the canceller test plugin.
 */
#define UP "http://127.0.0.1:%1$d/up/"

static void
start_server(const char *routes)
{
	char *rest;

	cr_assert(asprintf(&rest, routes, up.port,
	    t_test_plugin("canceller")) > 0);
	srv_start(&s, "log_level = debug\n%s", rest);
	free(rest);
}

static long
get(const char *path, char **body)
{
	struct resp r;

	cr_assert_eq(http_get(s.port, path, &r), 0, "GET %s failed", path);
	*body = r.body;
	free(r.headers);
	return r.status;
}

static long
upstream_hits(void)
{
	struct resp r;
	long n;

	cr_assert_eq(http_get(up.port, "/up/hits", &r), 0);
	cr_assert_eq(sscanf(r.body, "{\"hits\": %ld}", &n), 1);
	resp_free(&r);
	return n;
}

static void
expect(const char *path, long status, const char *body)
{
	char *got;
	long st = get(path, &got);

	cr_assert_eq(st, status, "GET %s: %ld %s", path, st, got);
	cr_assert_str_eq(got, body, "GET %s", path);
	free(got);
}

Test(fetch, data_fetch_success)
{
	start_upstream();
	start_server("[route /d]\nplugin = data_fetch\nurl = " UP "json\n"
	    "[route /l]\nplugin = data_fetch\nurl = " UP "list\n");
	expect("/d", 200, "{\"data\":{\"hello\":\"world\",\"n\":1}}");
	expect("/l", 200, "{\"data\":[1,2,3]}");
}

Test(fetch, data_fetch_upstream_errors)
{
	int blocker = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char routes[2048];

	/* a bound port that does not listen: connection refused */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(blocker, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(blocker, (struct sockaddr *)&sa, &sl);
	start_upstream();
	snprintf(routes, sizeof(routes),
	    "[route /e500]\nplugin = data_fetch\nurl = " UP "status?code=500\n"
	    "[route /e404]\nplugin = data_fetch\nurl = " UP "status?code=404\n"
	    "[route /refused]\nplugin = data_fetch\n"
	    "url = http://127.0.0.1:%2$d/x\n"
	    "[route /invalid]\nplugin = data_fetch\nurl = " UP "invalid\n"
	    "[route /empty]\nplugin = data_fetch\nurl = " UP "empty\n"
	    "[route /huge]\nplugin = data_fetch\nurl = " UP "huge?kb=256\n"
	    "max_response_size = 64K\n"
	    "[route /slow]\nplugin = data_fetch\nurl = " UP "slow?ms=3000\n"
	    "timeout_ms = 200\n"
	    "[route /ftp]\nplugin = data_fetch\n"
	    "url = " UP "redirect?to=ftp://127.0.0.1/x\n"
	    "[route /moved]\nplugin = data_fetch\n"
	    "url = " UP "redirect?to=/up/list\n", up.port,
	    (int)ntohs(sa.sin_port));
	srv_start(&s, "log_level = debug\n%s", routes);
	expect("/e500", 502, "{\"error\":\"upstream answered 500\"}");
	expect("/e404", 502, "{\"error\":\"upstream answered 404\"}");
	{
		char *b;

		cr_assert_eq(get("/refused", &b), 502);
		cr_assert_not_null(strstr(b, "{\"error\":\"upstream "
		    "unreachable: "), "%s", b);
		free(b);
		cr_assert_eq(get("/ftp", &b), 502);
		cr_assert_not_null(strstr(b, "\"error\":\"upstream unreachable"),
		    "%s", b);
		free(b);
		cr_assert_eq(get("/slow", &b), 504);
		cr_assert_not_null(strstr(b, "{\"error\":\"upstream timed out"),
		    "%s", b);
		free(b);
	}
	expect("/invalid", 502, "{\"error\":\"upstream sent invalid JSON: "
	    "unexpected end of data\"}");
	expect("/empty", 502, "{\"error\":\"upstream sent invalid JSON: "
	    "unexpected end of data\"}");
	expect("/huge", 502, "{\"error\":\"upstream response larger than "
	    "65536 bytes\"}");
	expect("/moved", 200, "{\"data\":[1,2,3]}");
	close(blocker);
	/* the server took all that in its stride */
	cr_assert_eq(srv_stop(&s), 0);
}

Test(fetch, data_fetch_refuses_bad_urls)
{
	char *out;

	cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /d]\nplugin = "
	    "data_fetch\nurl = ftp://example.org/x\n"), 1);
	cr_assert_not_null(strstr(out, "squall.ini:5: route '/d': url "
	    "'ftp://example.org/x' is not http://"), "%s", out);
	free(out);
	cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /d]\nplugin = "
	    "data_fetch\n"), 1);
	cr_assert_not_null(strstr(out, "data_fetch needs a 'url'"), "%s", out);
	free(out);
	cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /m]\nplugin = "
	    "multi_fetch\nurl.a = /x\nurl.a = /y\n"), 1);
	cr_assert_not_null(strstr(out, "squall.ini:6: route '/m': 'url.a' "
	    "given twice"), "%s", out);
	free(out);
}

/*
 * https upstreams: the upstream squalld listens with TLS too, on a
 * certificate made for the test. data_fetch and multi_fetch trust it
 * through ca_file, refuse it without (the system's CAs do not know it),
 * and take it unchecked with tls_verify = off, which is warned about.
 */
Test(fetch, https_upstream_is_verified_against_ca_file)
{
	char certs[256], *body;
	const char *want = "{\"data\":{\"hello\":\"world\",\"n\":1}}";
	int tport;

	t_tmpdir(certs, sizeof(certs));
	t_make_cert(certs, "up", "DNS:localhost,IP:127.0.0.1");
	srv_start(&up, "listen = 127.0.0.1:0 tls\ntls_certificate = %s/up.pem"
	    "\ntls_certificate_key = %s/up.key\naccess_log = off\n"
	    "[route /up/*]\nplugin = %s\n", certs, certs,
	    t_test_plugin("upstream"));
	tport = srv_tls_port(&up);
#define TUP "url = https://127.0.0.1:%1$d/up/json\n"
	srv_start(&s, "[route /ca]\nplugin = data_fetch\n" TUP
	    "ca_file = %2$s/up.pem\n"
	    "[route /sys]\nplugin = data_fetch\n" TUP
	    "[route /off]\nplugin = data_fetch\n" TUP "tls_verify = off\n"
	    "[route /m]\nplugin = multi_fetch\nurl.a = "
	    "https://127.0.0.1:%1$d/up/list\nca_file = %2$s/up.pem\n",
	    tport, certs);
#undef TUP
	expect("/ca", 200, want);
	expect("/m", 200, "{\"a\":[1,2,3]}");
	cr_assert_eq(get("/sys", &body), 502);
	cr_assert_not_null(strstr(body, "upstream TLS failed: SSL certificate "
	    "problem"), "%s", body);
	free(body);
	expect("/off", 200, want);
	cr_assert_eq(srv_log_count(&s, "data_fetch /off: tls_verify = off: "
	    "https upstreams are not authenticated"), 1);
	t_rm_rf(certs);
}

/* A ca_file that is not a readable file fails -t, naming it. */
Test(fetch, missing_ca_file_is_named)
{
	char *out, dir[256], want[600];

	cr_assert_eq(t_check_ini(&out, dir, sizeof(dir), "[route /d]\n"
	    "plugin = data_fetch\nurl = https://127.0.0.1/\n"
	    "ca_file = ca.pem\n"), 1);
	snprintf(want, sizeof(want), "squall.ini:6: route '/d': ca_file "
	    "'%s/ca.pem': No such file or directory", dir);
	cr_assert_not_null(strstr(out, want), "%s", out);
	free(out);
	/* the configuration's own folder */
	cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /m]\nplugin = "
	    "multi_fetch\nurl.a = /x\nca_file = .\n"), 1);
	cr_assert_not_null(strstr(out, "Is a directory"), "%s", out);
	free(out);
}

Test(fetch, post_with_headers_and_response_headers)
{
	char routes[1024];

	start_upstream();
	snprintf(routes, sizeof(routes), "[route /p]\nplugin = %s\n"
	    "url = http://127.0.0.1:%d/up/echo\n", t_test_plugin("poster"),
	    up.port);
	srv_start(&s, "%s", routes);
	expect("/p", 200, "200 {\"method\": \"POST\", \"body\": \"ping\", "
	    "\"x-test\": \"from-squall\"} [yes] [application/json] [-]\n");
}

Test(fetch, max_fetches_queues_the_rest)
{
	long t0, ms;
	char *b;

	start_upstream();
	start_server("max_fetches = 2\n[route /m]\nplugin = multi_fetch\n"
	    "url.a = " UP "slow?ms=300\nurl.b = " UP "slow?ms=300\n"
	    "url.c = " UP "slow?ms=300\nurl.d = " UP "slow?ms=300\n");
	t0 = t_now_ms();
	cr_assert_eq(get("/m", &b), 200, "%s", b);
	ms = t_now_ms() - t0;
	free(b);
	/* four fetches, two at a time: two rounds of 300 ms */
	cr_assert_geq(ms, 590, "4 fetches with max_fetches = 2 took %ld ms",
	    ms);
	cr_assert_lt(ms, 1100, "4 fetches with max_fetches = 2 took %ld ms",
	    ms);
}

/*
 * A transfer that starts inside the completion of another (the next one
 * of the max_fetches queue, or one started from a fetch's callback) must
 * run at once: it used to wait for unrelated traffic, its timeout never
 * firing, because the timer libcurl had just set for it was deleted.
 */
static long
timed_get(const char *path, long limit_ms, char **body)
{
	struct resp r;
	long t0 = t_now_ms(), ms;

	cr_assert_eq(http_request(s.port, "GET", path, NULL, NULL, 0,
	    limit_ms + 5000, &r), 0, "GET %s failed", path);
	ms = t_now_ms() - t0;
	cr_assert_lt(ms, limit_ms, "GET %s took %ld ms", path, ms);
	*body = r.body;
	free(r.headers);
	return r.status;
}

Test(fetch, queued_fetch_starts_when_the_one_before_ends)
{
	char *b;

	start_upstream();
	start_server("max_fetches = 1\n[route /m]\nplugin = multi_fetch\n"
	    "timeout_ms = 10000\n"
	    "url.a = " UP "json\nurl.b = " UP "json\nurl.c = " UP "json\n");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(timed_get("/m", 2000, &b), 200, "%s", b);
		free(b);
	}
}

Test(fetch, fetch_started_from_a_callback_runs_at_once)
{
	char *b;

	start_upstream();
	srv_start(&s, "[route /p]\nplugin = %s\ntimes = 3\n"
	    "url = http://127.0.0.1:%d/up/echo\n", t_test_plugin("poster"),
	    up.port);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(timed_get("/p", 2000, &b), 200, "%s", b);
		cr_assert(strncmp(b, "200 ", 4) == 0, "%s", b);
		free(b);
	}
}

Test(fetch, multi_fetch_runs_in_parallel)
{
	long t0, ms;
	char *b;

	start_upstream();
	start_server("[route /m]\nplugin = multi_fetch\n"
	    "url.first = " UP "slow?ms=400\nurl.second = " UP "slow?ms=400\n");
	t0 = t_now_ms();
	cr_assert_eq(get("/m", &b), 200);
	ms = t_now_ms() - t0;
	cr_assert_str_eq(b, "{\"first\":{\"slow\":400},\"second\":"
	    "{\"slow\":400}}");
	free(b);
	cr_assert_geq(ms, 390);
	cr_assert_lt(ms, 750, "two 400 ms fetches took %ld ms", ms);
	cr_log_info("multi_fetch of two 400 ms upstreams: %ld ms", ms);
}

Test(fetch, multi_fetch_failure_names_the_url)
{
	start_upstream();
	start_server("[route /m]\nplugin = multi_fetch\n"
	    "url.first = " UP "json\nurl.second = " UP "status?code=500\n"
	    "[route /p]\nplugin = multi_fetch\npartial = on\n"
	    "url.first = " UP "json\nurl.second = " UP "status?code=500\n"
	    "url.third = " UP "invalid\n");
	expect("/m", 502, "{\"error\":\"second: upstream answered 500\"}");
	expect("/p", 200, "{\"first\":{\"hello\":\"world\",\"n\":1},"
	    "\"second\":null,\"third\":null,\"errors\":{\"second\":\"upstream "
	    "answered 500\",\"third\":\"upstream sent invalid JSON: "
	    "unexpected end of data\"}}");
}

static void
concurrent(const char *path, int n, long want_status)
{
	struct bg b[64];

	cr_assert_leq(n, 64);
	for (int i = 0; i < n; i++)
		bg_start(&b[i], s.port, path);
	for (int i = 0; i < n; i++) {
		bg_wait(&b[i]);
		cr_assert_eq(b[i].r.status, want_status, "request %d: %ld", i,
		    b[i].r.status);
		resp_free(&b[i].r);
	}
}

Test(fetch, coalescing_shares_one_upstream_fetch)
{
	long hits;

	start_upstream();
	start_server("[route /c]\nplugin = data_fetch\n"
	    "url = " UP "slow?ms=300\n"
	    "[route /n]\nplugin = data_fetch\ncoalesce = off\n"
	    "url = " UP "slow?ms=300\n");
	concurrent("/c", 50, 200);
	hits = upstream_hits();
	cr_assert_leq(hits, 5, "50 coalesced requests made %ld upstream "
	    "hits", hits);
	cr_log_info("50 concurrent coalesced requests: %ld upstream hits",
	    hits);
	{
		struct resp r;

		http_get(up.port, "/up/reset", &r);
		resp_free(&r);
	}
	concurrent("/n", 20, 200);
	cr_assert_eq(upstream_hits(), 20, "coalesce = off must not share");
}

Test(fetch, client_leaving_cancels_the_fetch)
{
	struct resp r;

	start_upstream();
	start_server("[route /d]\nplugin = data_fetch\n"
	    "url = " UP "slow?ms=3000\n"
	    "[route /m]\nplugin = multi_fetch\n"
	    "url.a = " UP "slow?ms=3000\nurl.b = " UP "slow?ms=3000\n"
	    "[route /d2]\nplugin = data_fetch\nurl = " UP "json\n");
	http_request(s.port, "GET", "/d", NULL, NULL, 0, 200, &r);
	cr_assert_neq(r.curl_error, 0);
	resp_free(&r);
	cr_assert_eq(srv_wait_log(&s, "nobody waits for", 1, 3000), 0);
	/* the upstream sees its client (our fetch) go away */
	cr_assert_eq(srv_wait_log(&up, "left before the response", 1, 3000),
	    0, "the upstream fetch was not cancelled");
	http_request(s.port, "GET", "/m", NULL, NULL, 0, 200, &r);
	resp_free(&r);
	cr_assert_eq(srv_wait_log(&s, "client left: cancelling 2 fetches", 1,
	    3000), 0);
	cr_assert_eq(srv_wait_log(&up, "left before the response", 3, 3000),
	    0, "the group's fetches were not cancelled");
	expect("/d2", 200, "{\"data\":{\"hello\":\"world\",\"n\":1}}");
	cr_assert_eq(srv_stop(&s), 0);
}

Test(fetch, cancel_from_callbacks_is_safe)
{
	start_upstream();
	start_server("[route /x]\nplugin = %2$s\nfast = " UP "json\n"
	    "slow = " UP "slow?ms=3000\n");
	for (int i = 0; i < 5; i++)
		expect("/x", 200, "fast=200 slow=Operation canceled "
		    "group=Operation canceled\n");
	cr_assert_eq(srv_stop(&s), 0);
}

static long
rss_kb(pid_t pid)
{
	char path[64], *text, *p;
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = t_read(path, NULL);
	if ((p = strstr(text, "VmRSS:")) != NULL)
		kb = strtol(p + 6, NULL, 10);
	free(text);
	return kb;
}

static size_t
discard(char *d, size_t size, size_t n, void *arg)
{
	return size * n;
}

/* n GETs of path on one keep-alive connection; all must be 200. */
static void
hammer(const char *path, int n)
{
	char url[256];
	CURL *c = curl_easy_init();
	long status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s.port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(curl_easy_perform(c), CURLE_OK, "request %d", i);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		cr_assert_eq(status, 200, "request %d: %ld", i, status);
	}
	curl_easy_cleanup(c);
}

Test(fetch, ten_thousand_fetches_leave_fds_and_memory_flat)
{
	int fd1, fd2;
	long rss1, rss2;

	start_upstream();
	start_server("access_log = off\n"
	    "[route /d]\nplugin = data_fetch\ncoalesce = off\n"
	    "url = " UP "json\n");
	hammer("/d", 1000);
	fd1 = t_open_fds(s.pid);
	rss1 = rss_kb(s.pid);
	hammer("/d", 9000);
	fd2 = t_open_fds(s.pid);
	rss2 = rss_kb(s.pid);
	cr_log_info("after 1,000 fetches: %d fds, %ld KiB; after 10,000: "
	    "%d fds, %ld KiB", fd1, rss1, fd2, rss2);
	cr_assert_leq(fd2, fd1 + 2, "fds grew from %d to %d", fd1, fd2);
#ifndef SQ_SANITIZERS
	/* (AddressSanitizer's quarantine holds freed memory on purpose;
	 * there, LeakSanitizer at exit is the check.) */
	cr_assert_leq(rss2, rss1 + 2048, "RSS grew from %ld to %ld KiB",
	    rss1, rss2);
#endif
	cr_assert_eq(upstream_hits(), 10000);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(fetch, offload_pool_keeps_the_loop_free)
{
	struct bg b[4];
	struct resp r;
	long t0, hello_ms, all_ms;

	srv_start(&s, "offload_threads = 4\n[route /hello]\nplugin = hello\n"
	    "[route /block]\nplugin = delay\nmode = thread\n");
	t0 = t_now_ms();
	for (int i = 0; i < 4; i++)
		bg_start(&b[i], s.port, "/block?ms=500");
	usleep(100 * 1000);
	cr_assert_eq(http_get(s.port, "/hello", &r), 0);
	hello_ms = t_now_ms() - t0;
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	for (int i = 0; i < 4; i++) {
		bg_wait(&b[i]);
		cr_assert_eq(b[i].r.status, 200);
		cr_assert_str_eq(b[i].r.body, "waited 500 ms\n");
		resp_free(&b[i].r);
	}
	all_ms = t_now_ms() - t0;
	cr_assert_lt(hello_ms, 300, "/hello took %ld ms behind 4 blocking "
	    "jobs", hello_ms);
	cr_assert_lt(all_ms, 1200, "4 jobs of 500 ms on 4 threads took %ld "
	    "ms", all_ms);
	cr_assert_eq(srv_stop(&s), 0);
}

/*
 * Jobs of clients that left before their job started never run: 20
 * abandoned 3 s jobs on 2 threads used to hold a new request for 29 s.
 */
Test(fetch, abandoned_offload_jobs_are_cancelled)
{
	struct resp r;
	long t0, ms;

	srv_start(&s, "offload_threads = 2\n[route /block]\nplugin = delay\n"
	    "mode = thread\n");
	for (int i = 0; i < 20; i++) {
		/* gives up after 100 ms */
		http_request(s.port, "GET", "/block?ms=3000", NULL, NULL, 0,
		    100, &r);
		resp_free(&r);
	}
	cr_assert_eq(srv_wait_log(&s, "\"GET /block?ms=3000 HTTP/1.1\" 499",
	    20, 5000), 0, "the server did not see the 20 clients leave");
	t0 = t_now_ms();
	cr_assert_eq(http_request(s.port, "GET", "/block?ms=10", NULL, NULL, 0,
	    20000, &r), 0);
	ms = t_now_ms() - t0;
	cr_assert_eq(r.status, 200);
	resp_free(&r);
	/* at worst behind the 2 jobs that had started */
	cr_assert_lt(ms, 3500, "a new job waited %ld ms behind abandoned "
	    "ones", ms);
	cr_assert_eq(srv_stop(&s), 0);
}

/* A full queue is answered 503 at once, not after the jobs before it. */
Test(fetch, full_offload_queue_answers_503_at_once)
{
	struct bg b[3];
	struct resp r;
	long t0, ms;

	srv_start(&s, "offload_threads = 1\noffload_queue = 2\n"
	    "[route /block]\nplugin = delay\nmode = thread\n");
	for (int i = 0; i < 3; i++) {	/* one runs, two wait */
		bg_start(&b[i], s.port, "/block?ms=1000");
		usleep(50 * 1000);
	}
	t0 = t_now_ms();
	cr_assert_eq(http_get(s.port, "/block?ms=1", &r), 0);
	ms = t_now_ms() - t0;
	cr_assert_eq(r.status, 503, "%ld: %s", r.status, r.body);
	resp_free(&r);
	cr_assert_lt(ms, 500, "the 503 took %ld ms", ms);
	for (int i = 0; i < 3; i++) {
		bg_wait(&b[i]);
		cr_assert_eq(b[i].r.status, 200);
		resp_free(&b[i].r);
	}
	cr_assert_eq(srv_stop(&s), 0);
}

Test(fetch, default_config_serves_data_and_multi_offline)
{
	char *ini = t_default_ini(NULL), *b;

	memset(&s, 0, sizeof(s));
	t_tmpdir(s.dir, sizeof(s.dir));
	srv_start_in(&s, ini);
	free(ini);
	cr_assert_eq(get("/data", &b), 200);
	cr_assert_not_null(strstr(b, "{\"data\":{\"name\":\"first\""), "%s", b);
	free(b);
	cr_assert_eq(get("/multi", &b), 200);
	cr_assert_not_null(strstr(b, "\"second\":{\"name\":\"second\""), "%s",
	    b);
	free(b);
	expect("/hello", 200, "Hello, world");
	expect("/delay?ms=10", 200, "waited 10 ms\n");
	cr_assert_eq(get("/", &b), 200);
	free(b);
	cr_assert_eq(srv_stop(&s), 0);
}

Test(fetch, pending_fetch_survives_a_reload_that_removes_its_route)
{
	struct bg b;
	char ini[1024];

	start_upstream();
	start_server("[route /d]\nplugin = data_fetch\n"
	    "url = " UP "slow?ms=600\n[route /hello]\nplugin = hello\n");
	bg_start(&b, s.port, "/d");
	/* wait until the upstream has the fetch */
	for (long t0 = t_now_ms(); upstream_hits() < 1; usleep(5000))
		cr_assert_lt(t_now_ms() - t0, 3000, "the fetch never arrived");
	/* the route goes away while its fetch is in flight */
	snprintf(ini, sizeof(ini), "[server]\nlisten = 127.0.0.1:0\n"
	    "plugin_dir = %s\nlog_level = debug\n[route /hello]\n"
	    "plugin = hello\n", t_plugin_dir());
	t_write(s.ini, "%s", ini);
	cr_assert_eq(srv_reload(&s), 0);
	bg_wait(&b);
	cr_assert_eq(b.r.status, 200, "%s", b.r.body);
	cr_assert_str_eq(b.r.body, "{\"data\":{\"slow\":600}}");
	resp_free(&b.r);
	cr_assert_eq(srv_wait_log(&s, "destroying data_fetch instance of /d",
	    1, 3000), 0, "the old instance was not destroyed after its "
	    "last fetch");
	t_expect_status(s.port, "/d", 404);
	cr_assert_eq(srv_stop(&s), 0);
}
