/*
 * test_status.c - the status plugin against the traffic the test sent:
 * requests by class, WebSocket sessions and messages, failed fetches,
 * reloads, the routes; in JSON and in Prometheus' text format; and its
 * allow list.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct srv s;
static int session = -1;	/* traffic()'s WebSocket, kept open */

static void
stop(void)
{
	srv_cleanup(&s);
}

TestSuite(status, .fini = stop, .timeout = 60);

static int64_t
jget(struct json_object *o, const char *a, const char *b)
{
	struct json_object *x, *y;

	cr_assert(json_object_object_get_ex(o, a, &x), "no %s", a);
	if (b == NULL)
		return json_object_get_int64(x);
	cr_assert(json_object_object_get_ex(x, b, &y), "no %s.%s", a, b);
	return json_object_get_int64(y);
}

static void
traffic(void)
{
	struct wsc w;
	char *line;

	srv_start(&s, "[route /hello]\nplugin = hello\n[route /status]\n"
	    "plugin = status\n[route /chat]\nplugin = chat\n[route /data]\n"
	    "plugin = data_fetch\nurl = http://127.0.0.1:%d/nothing\n",
	    t_free_port());
	for (int i = 0; i < 3; i++)
		t_expect_status(s.port, "/hello", 200);
	for (int i = 0; i < 2; i++)
		t_expect_status(s.port, "/missing", 404);
	t_expect_status(s.port, "/data", 502);	/* a failed fetch */
	cr_assert_eq(ws_connect(&w, s.port, "/chat", NULL), 101);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(ws_send(&w, 1, "hi", 2), 0);
	}
	for (int i = 0; i < 3; i++) {	/* joined, two lines */
		cr_assert_not_null(line = ws_recv_text(&w, 5000));
		free(line);
	}
	cr_assert_eq(srv_reload(&s), 0);
	t_write(s.ini, "[server]\nbogus = 1\n");
	cr_assert_neq(srv_reload(&s), 0, "a bad configuration reloaded");
	session = w.fd;		/* stays open: one session */
}

Test(status, json_counts_the_traffic)
{
	struct resp r;
	struct json_object *o, *routes, *route;
	int found = 0;

	traffic();
	cr_assert_eq(http_get(s.port, "/status", &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "application/json"));
	cr_assert_not_null(o = json_tokener_parse(r.body), "%s", r.body);
	cr_assert_eq(jget(o, "requests", "2xx"), 3, "%s", r.body);
	cr_assert_eq(jget(o, "requests", "4xx"), 2, "%s", r.body);
	cr_assert_eq(jget(o, "requests", "5xx"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "requests", "1xx"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "requests", "total"), 7, "%s", r.body);
	cr_assert_eq(jget(o, "requests", "in_flight"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "websocket", "sessions"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "websocket", "messages_in"), 2, "%s", r.body);
	cr_assert_eq(jget(o, "websocket", "messages_out"), 3, "%s", r.body);
	cr_assert_eq(jget(o, "fetches", "failed"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "fetches", "active"), 0, "%s", r.body);
	cr_assert_eq(jget(o, "reloads", "ok"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "reloads", "failed"), 1, "%s", r.body);
	cr_assert_eq(jget(o, "generation", NULL), 2, "%s", r.body);
	cr_assert_geq(jget(o, "connections", NULL), 1, "%s", r.body);
	cr_assert(json_object_object_get_ex(o, "routes", &routes));
	cr_assert_eq(json_object_array_length(routes), 4);
	for (size_t i = 0; i < 4; i++) {
		route = json_object_array_get_idx(routes, i);
		if (strcmp(json_object_get_string(json_object_object_get(route,
		    "route")), "/chat") == 0 && strcmp(json_object_get_string(
		    json_object_object_get(route, "plugin")), "chat") == 0 &&
		    strcmp(json_object_get_string(json_object_object_get(route,
		    "version")), "1.1") == 0 && jget(route, "ws_sessions",
		    NULL) == 1 && jget(route, "ws_messages", NULL) == 2)
			found = 1;
	}
	cr_assert(found, "no /chat route in %s", r.body);
	json_object_put(o);
	resp_free(&r);
	close(session);
}

Test(status, prometheus_counts_the_traffic)
{
	static const char *want[] = {
		"# TYPE squall_requests_total counter\n",
		"squall_requests_total{class=\"2xx\"} 3\n",
		"squall_requests_total{class=\"4xx\"} 2\n",
		"squall_requests_total{class=\"5xx\"} 1\n",
		"squall_requests_in_flight 1\n",
		"squall_websocket_sessions 1\n",
		"squall_websocket_messages_total{direction=\"in\"} 2\n",
		"squall_websocket_messages_total{direction=\"out\"} 3\n",
		"squall_fetches_failed_total 1\n",
		"squall_reloads_total{result=\"ok\"} 1\n",
		"squall_reloads_total{result=\"failed\"} 1\n",
		"squall_generation 2\n",
		"squall_route_info{route=\"/hello\",plugin=\"hello\","
		    "version=\"1.0\"} 1\n",
		"squall_route_requests_total{route=\"/hello\"} 3\n",
		"squall_fetches{state=\"queued\"} 0\n",
		"squall_offload_jobs 0\n",
	};
	const char *accept[] = { "Accept: text/plain", NULL };
	struct resp r;

	traffic();
	cr_assert_eq(http_get(s.port, "/status?format=prometheus", &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_not_null(strstr(r.headers, "text/plain; version=0.0.4"));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_not_null(strstr(r.body, want[i]), "no \"%s\" in:\n%s",
		    want[i], r.body);
	resp_free(&r);
	/* the Accept header chooses the format too */
	cr_assert_eq(http_request(s.port, "GET", "/status", accept, NULL, 0,
	    5000, &r), 0);
	cr_assert_not_null(strstr(r.body, "squall_requests_total{class=\"2xx\"}"
	    " 4\n"), "%s", r.body);
	resp_free(&r);
	close(session);
}

Test(status, only_allowed_clients)
{
	char *out;

	srv_start(&s, "[route /status]\nplugin = status\nallow = 10.0.0.0/8\n"
	    "[route /open]\nplugin = status\nallow = *\n");
	t_expect_status(s.port, "/status", 403);
	t_expect_status(s.port, "/open", 200);
	t_expect_status(s.port, "/open?format=xml", 400);
	cr_assert_eq(srv_stop(&s), 0);
	t_write(s.ini, "[server]\nplugin_dir = %s\n[route /status]\n"
	    "plugin = status\nallow = 10.0.0.300\n", t_plugin_dir());
	cr_assert_eq(t_run_squalld(&out, "-t", "-c", s.ini, NULL), 1);
	cr_assert_not_null(strstr(out, "squall.ini:5: route '/status': "
	    "'10.0.0.300' is not an address or CIDR block"), "%s", out);
	free(out);
}
