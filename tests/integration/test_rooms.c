/*
 * test_rooms.c - the chat plugin's rooms on a route ending in "*": one
 * room per path segment, lines and history only in their room, names
 * refused before the upgrade, max_rooms, a room freed with its last
 * member (in /status), a reload that keeps them, and, with a broker,
 * a room that spans two processes while another does not.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct srv s, s2;
static char rdir[256];
static pid_t redis = -1;

static void
teardown(void)
{
	int status;

	srv_cleanup(&s);
	srv_cleanup(&s2);
	if (redis > 0) {
		kill(redis, SIGKILL);
		waitpid(redis, &status, 0);
	}
	redis = -1;
	if (rdir[0])
		t_rm_rf(rdir);
	rdir[0] = '\0';
}

TestSuite(rooms, .fini = teardown, .timeout = 60);

#define ROOMS "[route /rooms/*]\nplugin = chat\n"
#define STATUS "[route /status]\nplugin = status\n"

static void
expect(struct wsc *c, const char *pattern)
{
	free(ws_expect_line(c, pattern));
}

/* Nothing more arrives for a moment. */
static void
expect_quiet(struct wsc *c, const char *who)
{
	char *line = ws_recv_text(c, 300);

	cr_assert_null(line, "%s got a line of another room: \"%s\"", who,
	    line);
}

static void
join(struct wsc *c, int port, const char *path)
{
	cr_assert_eq(ws_connect(c, port, path, NULL), 101, "joining %s", path);
	expect(c, "^" IP " joined at " TS "$");
}

/* The route's "state" in /status, as its JSON text. */
static char *
state(struct srv *srv)
{
	return t_route_state(srv->port, "/rooms/*");
}

/* Waits until the route's state is want. */
static void
expect_state(struct srv *srv, const char *want)
{
	char *got = NULL;

	for (long t0 = t_now_ms(); t_now_ms() - t0 < 3000; usleep(10000)) {
		free(got);
		if (strcmp(got = state(srv), want) == 0)
			break;
	}
	cr_assert_str_eq(got, want);
	free(got);
}

Test(rooms, lines_stay_in_their_room)
{
	struct wsc a1, a2, b1;

	srv_start(&s, ROOMS STATUS);
	join(&a1, s.port, "/rooms/a");
	join(&a2, s.port, "/rooms/a");
	expect(&a1, " joined at ");
	join(&b1, s.port, "/rooms/b");
	expect_quiet(&a1, "a1");
	cr_assert_eq(ws_send(&a1, 1, "in a", 4), 0);
	expect(&a1, ": in a$");
	expect(&a2, ": in a$");
	cr_assert_eq(ws_send(&b1, 1, "in b", 4), 0);
	expect(&b1, ": in b$");
	expect_quiet(&a2, "a2");
	expect_state(&s, "\"state\":{\"rooms\":\"2\",\"members\":\"3\"}");
	{
		struct resp r;

		cr_assert_eq(http_get(s.port, "/status?format=prometheus", &r),
		    0);
		cr_assert_not_null(strstr(r.body, "squall_route_value{route="
		    "\"/rooms/*\",key=\"members\"} 3\n"), "%s", r.body);
		cr_assert_null(strstr(r.body, "key=\"rooms\",value="), "%s",
		    r.body);
		resp_free(&r);
	}
	ws_disconnect(&a2);
	expect(&a1, "^" IP " left at " TS "$");
	expect_quiet(&b1, "b1");
	/* the last member gone, the room goes */
	ws_disconnect(&b1);
	expect_state(&s, "\"state\":{\"rooms\":\"1\",\"members\":\"1\"}");
	ws_disconnect(&a1);
	expect_state(&s, "\"state\":{\"rooms\":\"0\",\"members\":\"0\"}");
}

/* A member of squall.chat.v1 keeps its room when the last plain one goes. */
Test(rooms, a_subprotocol_member_keeps_its_room)
{
	struct wsc v, p;

	srv_start(&s, ROOMS STATUS);
	cr_assert_eq(ws_connect_with(&v, s.port, "/rooms/a",
	    "Sec-WebSocket-Protocol: squall.chat.v1\r\n"), 101);
	expect(&v, "^- " IP " joined at " TS "$");
	join(&p, s.port, "/rooms/a");
	expect(&v, "^- " IP " joined at " TS "$");
	ws_disconnect(&p);
	expect(&v, "^- " IP " left at " TS "$");
	expect_state(&s, "\"state\":{\"rooms\":\"1\",\"members\":\"1\"}");
	cr_assert_eq(ws_send(&v, 1, "still here", 10), 0);
	expect(&v, "^- " IP " at " TS ": still here$");
	ws_disconnect(&v);
	expect_state(&s, "\"state\":{\"rooms\":\"0\",\"members\":\"0\"}");
}

Test(rooms, bad_names_get_404_before_the_upgrade)
{
	static const char *const bad[] = {
		"/rooms/", "/rooms/a/b", "/rooms/a%20b", "/rooms/%C3%A9",
		"/rooms/a:b",
		"/rooms/0123456789012345678901234567890123456789012345678901234"
		"5678901234",
	};
	struct wsc c;
	struct resp r;

	srv_start(&s, ROOMS);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(ws_connect(&c, s.port, bad[i], NULL), 404, "%s",
		    bad[i]);
		ws_disconnect(&c);
	}
	/* 64 characters and every one allowed */
	join(&c, s.port, "/rooms/A-z.0_9-1234567890123456789012345678901234567890"
	    "1234567890123456");
	ws_disconnect(&c);
	cr_assert_eq(http_get(s.port, "/rooms/a", &r), 0);
	cr_assert_eq(r.status, 426);
	resp_free(&r);
	/* the max_rooms of a route without rooms is an error */
	srv_cleanup(&s);
	{
		char *out;

		cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /chat]\n"
		    "plugin = chat\nmax_rooms = 5\n"), 1);
		cr_assert_not_null(strstr(out, "squall.ini:5: route '/chat': "
		    "max_rooms needs a route whose path ends in '*'"), "%s",
		    out);
		free(out);
	}
}

Test(rooms, max_rooms_refuses_with_503_until_one_is_freed)
{
	struct wsc a, b, c;

	srv_start(&s, ROOMS "max_rooms = 2\n" STATUS);
	join(&a, s.port, "/rooms/a");
	join(&b, s.port, "/rooms/b");
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(ws_connect(&c, s.port, "/rooms/c", NULL), 503);
		ws_disconnect(&c);
	}
	cr_assert_eq(srv_log_count(&s, "max_rooms (2) rooms are open"), 1,
	    "the refusals flood the log");
	/* an existing room still takes members */
	join(&c, s.port, "/rooms/a");
	ws_disconnect(&c);
	ws_disconnect(&b);
	expect_state(&s, "\"state\":{\"rooms\":\"1\",\"members\":\"1\"}");
	join(&c, s.port, "/rooms/c");
	ws_disconnect(&c);
	ws_disconnect(&a);
}

Test(rooms, history_is_per_room_and_a_reload_keeps_the_rooms)
{
	struct wsc a, a2, b;
	char *line;

	srv_start(&s, ROOMS "history = 5\nping_interval = 1\n"
	    "[route /hello]\nplugin = hello\n");
	join(&a, s.port, "/rooms/a");
	a.auto_pong = 1;
	cr_assert_eq(ws_send(&a, 1, "said in a", 9), 0);
	expect(&a, ": said in a$");
	cr_assert_eq(srv_reload(&s), 0);
	join(&b, s.port, "/rooms/b");
	expect_quiet(&b, "b");
	cr_assert_eq(ws_connect(&a2, s.port, "/rooms/a", NULL), 101);
	expect(&a2, " joined at ");	/* a's, from the history */
	expect(&a2, ": said in a$");
	expect(&a2, " joined at ");	/* its own */
	expect(&a, " joined at ");
	/* the member from before the reload is still in the room */
	cr_assert_eq(ws_send(&a, 1, "still here", 10), 0);
	expect(&a2, ": still here$");
	line = ws_recv_text(&b, 300);
	cr_assert_null(line, "b heard room a: %s", line);
	ws_disconnect(&a);
	ws_disconnect(&a2);
	ws_disconnect(&b);
	cr_assert_eq(srv_stop(&s), 0);
}

/* Two processes on one Redis: room a spans both, room b does not leak. */
Test(rooms, a_room_spans_processes_on_a_broker)
{
	struct wsc a1, a2, b1, b2;
	char lines[300];
	int rport = t_free_port();

	if (system("command -v redis-server >/dev/null 2>&1") != 0)
		cr_skip_test("redis-server is missing (Debian: redis-server)");
	t_tmpdir(rdir, sizeof(rdir));
	redis = t_redis_start(rdir, rport, NULL);
	snprintf(lines, sizeof(lines), ROOMS "broker = redis://127.0.0.1:%d\n",
	    rport);
	srv_start(&s, "%s", lines);
	srv_start(&s2, "%s", lines);
	cr_assert_eq(srv_wait_log(&s, "channels squall:chat:/rooms/*:ROOM",
	    1, 5000), 0);
	cr_assert_eq(srv_wait_log(&s2, "channels squall:chat:/rooms/*:ROOM",
	    1, 5000), 0);
	join(&a1, s.port, "/rooms/a");
	join(&a2, s2.port, "/rooms/a");
	expect(&a1, " joined at ");
	join(&b1, s.port, "/rooms/b");
	join(&b2, s2.port, "/rooms/b");
	expect(&b1, " joined at ");
	cr_assert_eq(ws_send(&a2, 1, "from 2", 6), 0);
	expect(&a1, ": from 2$");
	expect(&a2, ": from 2$");
	cr_assert_eq(ws_send(&b1, 1, "from 1", 6), 0);
	expect(&b2, ": from 1$");
	expect(&b1, ": from 1$");
	expect_quiet(&a1, "a1");
	expect_quiet(&a2, "a2");
	ws_disconnect(&a1);
	expect(&a2, " left at ");
	expect_quiet(&b2, "b2");
	ws_disconnect(&a2);
	ws_disconnect(&b1);
	ws_disconnect(&b2);
}
