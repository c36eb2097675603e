/*
 * test_stream.c - the chat on a Redis stream (broker_mode = stream), with
 * real redis-servers of the test's own: two processes that see one order
 * and the same history, a Redis killed and started again under traffic
 * without a line lost or doubled, a member that comes back with the id
 * of the last line it heard and gets what it missed, entries of another
 * shape dropped and counted, a Redis that refuses lines (OOM), and the
 * options' errors.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct srv s1, s2;
static char rdir[256];
static pid_t redis = -1, others[2] = { -1, -1 };
static int rport;

static void
redis_stop(void)
{
	int status;

	if (redis > 0) {
		kill(redis, SIGKILL);
		waitpid(redis, &status, 0);
	}
	redis = -1;
}

static void
teardown(void)
{
	int status;

	srv_cleanup(&s1);
	srv_cleanup(&s2);
	redis_stop();
	for (int i = 0; i < 2; i++)
		if (others[i] > 0) {
			kill(others[i], SIGKILL);
			waitpid(others[i], &status, 0);
			others[i] = -1;
		}
	if (rdir[0])
		t_rm_rf(rdir);
	rdir[0] = '\0';
}

TestSuite(stream, .fini = teardown, .timeout = 90);

#define CHAT "[route /chat]\nplugin = chat\nbroker = redis://127.0.0.1:%d\n" \
	"broker_mode = stream\n"
#define STATUS "[route /status]\nplugin = status\n"
#define V1 "Sec-WebSocket-Protocol: squall.chat.v1\r\n"

static void
redis_up(int aof)
{
	t_tmpdir(rdir, sizeof(rdir));
	rport = t_free_port();
	redis = t_redis_start_aof(rdir, rport, NULL, aof);
}

/* Starts srv on the stream room (more: extra options), waits for it. */
static void
start(struct srv *srv, const char *more)
{
	srv_start(srv, CHAT "%s" STATUS, rport, more);
	cr_assert_eq(srv_wait_log(srv, " up, stream squall:chat:/chat", 1,
	    5000), 0, "the broker did not come up");
}

static void
expect(struct wsc *c, const char *pattern)
{
	free(ws_expect_line(c, pattern));
}

/* A command to the Redis on port in its protocol: its reply. */
static char *
redis_vcmd(int port, const char *arg, va_list ap)
{
	static char req[1 << 18];
	char *out;
	size_t n = 0, argc = 0;
	const char *args[16];

	for (const char *a = arg; a && argc < 16; a = va_arg(ap, const char *))
		args[argc++] = a;
	n = (size_t)snprintf(req, sizeof(req), "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++)
		n += (size_t)snprintf(req + n, sizeof(req) - n,
		    "$%zu\r\n%s\r\n", strlen(args[i]), args[i]);
	/* QUIT: Redis answers it and closes, which ends the exchange */
	n += (size_t)snprintf(req + n, sizeof(req) - n, "*1\r\n$4\r\nQUIT\r\n");
	cr_assert_lt(n, sizeof(req));
	out = raw_exchange(port, req, n, 2000, NULL);
	cr_assert_not_null(out, "redis did not answer %s", arg);
	return out;
}

/* A command to the Redis on port (args, NULL-ended): its reply. */
static char *
redis_cmd_at(int port, const char *arg, ...)
{
	va_list ap;
	char *out;

	va_start(ap, arg);
	out = redis_vcmd(port, arg, ap);
	va_end(ap);
	return out;
}

/* A member of the protocol: "ID line", the id kept in last. */
static char *
expect_v1(struct wsc *c, const char *pattern, char *last, size_t lastlen)
{
	char *msg = ws_recv_text(c, 5000), *sp;
	regex_t re;

	cr_assert_not_null(msg, "no frame (wanted %s)", pattern);
	sp = strchr(msg, ' ');
	cr_assert_not_null(sp, "a frame without an id: \"%s\"", msg);
	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, sp + 1, 0, NULL, 0), 0,
	    "\"%s\" does not match %s", msg, pattern);
	regfree(&re);
	if (last != NULL) {
		cr_assert(sp - msg > 2 && strchr(msg, '-') < sp,
		    "\"%s\": no stream id", msg);
		snprintf(last, lastlen, "%.*s", (int)(sp - msg), msg);
	}
	return msg;
}

/* The chat route's state in /status, as its JSON text. */
static char *
state(struct srv *srv)
{
	return t_route_state(srv->port, "/chat");
}

static void
lines_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Lines from..n-1 of v: the next lines of c. */
static void
lines_more(struct wsc *c, char **v, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++) {
		v[i] = ws_recv_text(c, 10000);
		cr_assert_not_null(v[i], "line %zu of %zu did not come", i, n);
	}
}

/* Room for n lines, the first `now` of them the next lines of c. */
static char **
lines_n(struct wsc *c, size_t n, size_t now)
{
	char **v = calloc(n, sizeof(*v));

	lines_more(c, v, 0, now);
	return v;
}

Test(stream, two_processes_one_order_one_history)
{
	struct wsc a, b, c, d;
	char **va, **vb, **vc, **vd;

	redis_up(0);
	start(&s1, "history = 3\n");
	start(&s2, "history = 3\n");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, "^" IP " joined at " TS "$");
	cr_assert_eq(ws_connect(&b, s2.port, "/chat", NULL), 101);
	/* b's history is a's joined line, from the stream */
	expect(&b, "^" IP " joined at " TS "$");
	expect(&b, "^" IP " joined at " TS "$");
	expect(&a, "^" IP " joined at " TS "$");
	for (int i = 0; i < 5; i++)
		ws_expect_same_order(&a, "from-a", &b, "from-b");
	cr_assert_eq(ws_send(&a, 1, "before-c", 8), 0);
	/* before-c is in the stream once it is back (a's frame and c's
	 * join would race otherwise) */
	va = lines_n(&a, 3, 1);
	vb = lines_n(&b, 3, 1);
	/* c joins s1, d joins s2: each hears the 3 lines before its own */
	cr_assert_eq(ws_connect(&c, s1.port, "/chat", NULL), 101);
	vc = lines_n(&c, 4, 4);
	cr_assert_eq(ws_connect(&d, s2.port, "/chat", NULL), 101);
	vd = lines_n(&d, 4, 4);
	/* a (on s1) and b (on s2) heard the same, in one order */
	lines_more(&a, va, 1, 3);
	lines_more(&b, vb, 1, 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert_str_eq(va[i], vb[i], "line %zu differs", i);
	cr_assert_not_null(strstr(va[0], ": before-c"), "%s", va[0]);
	cr_assert_not_null(strstr(va[1], " joined at "), "%s", va[1]);
	cr_assert_not_null(strstr(va[2], " joined at "), "%s", va[2]);
	/* c's history ends with before-c, d's with c's joined line */
	cr_assert_str_eq(vc[2], va[0]);
	cr_assert_str_eq(vc[3], va[1]);
	cr_assert_str_eq(vd[0], vc[1]);
	cr_assert_str_eq(vd[1], va[0]);
	cr_assert_str_eq(vd[2], va[1]);
	cr_assert_str_eq(vd[3], va[2]);
	cr_assert_not_null(strstr(vc[0], ": from-"), "%s", vc[0]);
	lines_free(va, 3);
	lines_free(vb, 3);
	lines_free(vc, 4);
	lines_free(vd, 4);
	ws_disconnect(&a);
	ws_disconnect(&b);
	ws_disconnect(&c);
	ws_disconnect(&d);
}

/* Reads lines of c until both "end-a" and "end-b" came; the said ones. */
static char **
said_until_ends(struct wsc *c, size_t *n)
{
	char **v = NULL, *l, *p;
	int ends = 0;

	*n = 0;
	while (ends < 2) {
		l = ws_recv_text(c, 20000);
		cr_assert_not_null(l, "lines stopped after %zu", *n);
		if ((p = strstr(l, ": ")) == NULL) {
			free(l);
			continue;
		}
		ends += strncmp(p + 2, "end-", 4) == 0;
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(p + 2);
		free(l);
	}
	return v;
}

Test(stream, a_redis_killed_and_back_loses_nothing)
{
	struct wsc a, b;
	char **va, **vb, word[32];
	size_t na, nb, seen_a = 0;

	redis_up(1);
	start(&s1, "");
	start(&s2, "");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect(&b, s2.port, "/chat", NULL), 101);
	expect(&b, " joined at ");
	expect(&a, " joined at ");
	for (int i = 0; i < 60; i++) {
		if (i == 20)
			redis_stop();
		if (i == 40) {
			redis = t_redis_start_aof(rdir, rport, NULL, 1);
			cr_assert_eq(srv_wait_log(&s1, " back: ", 1, 10000), 0);
			cr_assert_eq(srv_wait_log(&s2, " back: ", 1, 10000), 0);
		}
		snprintf(word, sizeof(word), "a%d", i);
		cr_assert_eq(ws_send(&a, 1, word, strlen(word)), 0);
		snprintf(word, sizeof(word), "b%d", i);
		cr_assert_eq(ws_send(&b, 1, word, strlen(word)), 0);
		usleep(20000);
	}
	cr_assert_eq(ws_send(&a, 1, "end-a", 5), 0);
	cr_assert_eq(ws_send(&b, 1, "end-b", 5), 0);
	va = said_until_ends(&a, &na);
	vb = said_until_ends(&b, &nb);
	/* one order, each line once, on both processes */
	cr_assert_eq(na, nb, "s1's member heard %zu lines, s2's %zu", na,
	    nb);
	for (size_t i = 0; i < na; i++) {
		cr_assert_str_eq(va[i], vb[i], "line %zu differs", i);
		for (size_t k = 0; k < i; k++)
			cr_assert_str_neq(va[i], va[k], "\"%s\" came twice",
			    va[i]);
		seen_a += va[i][0] == 'a';
	}
	/*
	 * What waited while Redis was away came too. Only a line on its
	 * way when Redis was killed (its XADD sent, not answered) may be
	 * lost, for everyone: its sender never heard it either.
	 */
	cr_assert_geq(na, 118, "lines lost: %zu of 122 came", na);
	cr_assert_gt(seen_a, 55);
	lines_free(va, na);
	lines_free(vb, nb);
	ws_disconnect(&a);
	ws_disconnect(&b);
}

Test(stream, a_member_back_with_its_last_id_gets_the_gap)
{
	struct wsc a, m;
	char last[64], path[128], *st;

	redis_up(0);
	start(&s1, "history = 2\n");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect_with(&m, s1.port, "/chat", V1), 101);
	st = ws_response_header(&m, "Sec-WebSocket-Protocol");
	cr_assert_str_eq(st, "squall.chat.v1");
	free(st);
	/* history (a's joined line), then its own, each with its id */
	free(expect_v1(&m, " joined at " TS "$", last, sizeof(last)));
	free(expect_v1(&m, " joined at " TS "$", last, sizeof(last)));
	expect(&a, " joined at ");
	cr_assert_eq(ws_send(&a, 1, "heard", 5), 0);
	free(expect_v1(&m, ": heard$", last, sizeof(last)));
	ws_disconnect(&m);
	expect(&a, ": heard$");
	expect(&a, " left at ");
	cr_assert_eq(ws_send(&a, 1, "missed1", 7), 0);
	expect(&a, ": missed1$");
	cr_assert_eq(ws_send(&a, 1, "missed2", 7), 0);
	expect(&a, ": missed2$");
	snprintf(path, sizeof(path), "/chat?last_id=%s", last);
	cr_assert_eq(ws_connect_with(&m, s1.port, path, V1), 101);
	free(expect_v1(&m, " left at " TS "$", NULL, 0));
	free(expect_v1(&m, ": missed1$", NULL, 0));
	free(expect_v1(&m, ": missed2$", NULL, 0));
	free(expect_v1(&m, " joined at " TS "$", NULL, 0));
	cr_assert_eq(ws_send(&a, 1, "live", 4), 0);
	free(expect_v1(&m, ": live$", NULL, 0));
	st = state(&s1);
	cr_assert_not_null(strstr(st, "\"recovered\":\"1\""), "%s", st);
	cr_assert_not_null(strstr(st, "\"replayed\":\"3\""), "%s", st);
	free(st);
	ws_disconnect(&m);
	expect(&a, " joined at ");
	expect(&a, ": live$");
	expect(&a, " left at ");
	/* an id the stream never had: a newcomer's history instead */
	cr_assert_eq(ws_connect_with(&m, s1.port, "/chat?last_id=1-1", V1),
	    101);
	free(expect_v1(&m, ": live$", NULL, 0));
	free(expect_v1(&m, " left at " TS "$", NULL, 0));
	free(expect_v1(&m, " joined at " TS "$", NULL, 0));
	st = state(&s1);
	cr_assert_not_null(strstr(st, "\"unrecovered\":\"1\""), "%s", st);
	free(st);
	ws_disconnect(&m);
	ws_disconnect(&a);
}

Test(stream, plain_lines_stay_byte_for_byte)
{
	struct wsc a;
	char *l;

	redis_up(0);
	start(&s1, "");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	cr_assert_null(ws_response_header(&a, "Sec-WebSocket-Protocol"));
	l = ws_expect_line(&a, "^" IP " joined at " TS "$");
	free(l);
	cr_assert_eq(ws_send(&a, 1, "hello", 5), 0);
	expect(&a, "^" IP " at " TS ": hello$");
	ws_disconnect(&a);
}

Test(stream, bad_entries_are_dropped_and_counted)
{
	static char big[100000];
	struct wsc a;
	char *r, *st;

	redis_up(0);
	start(&s1, "max_message_size = 100\n");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	free(redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "text", "x",
	    NULL));
	free(redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "line",
	    "[1.2.3.4] at 2026-01-01 00:00:00: x", "more", "y", NULL));
	free(redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "line",
	    "[1.2.3.4] at 2026-01-01 00:00:00: \xff\xfe", NULL));
	free(redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "line",
	    "not a chat line", NULL));
	memset(big, 'x', sizeof(big) - 1);
	free(redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "line", big,
	    NULL));
	r = redis_cmd_at(rport, "XADD", "squall:chat:/chat", "*", "line",
	    "[1.2.3.4] at 2026-01-01 00:00:00: from elsewhere", NULL);
	free(r);
	expect(&a, "^\\[1\\.2\\.3\\.4\\] at 2026-01-01 00:00:00: "
	    "from elsewhere$");
	cr_assert_eq(ws_send(&a, 1, "after", 5), 0);
	expect(&a, ": after$");
	cr_assert_eq(srv_wait_log(&s1, "dropped a line", 1, 3000), 0);
	st = state(&s1);
	cr_assert_not_null(strstr(st, "\"invalid\":\"5\""), "%s", st);
	free(st);
	ws_disconnect(&a);
}

Test(stream, a_full_redis_leaves_the_room_local)
{
	struct wsc a;

	redis_up(0);
	start(&s1, "");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	free(redis_cmd_at(rport, "CONFIG", "SET", "maxmemory", "1", NULL));
	cr_assert_eq(ws_send(&a, 1, "while-full", 10), 0);
	expect(&a, ": while-full$");
	cr_assert_eq(srv_wait_log(&s1, "refused a line (OOM", 1, 3000), 0);
	t_expect_status(s1.port, "/status", 200);
	free(redis_cmd_at(rport, "CONFIG", "SET", "maxmemory", "0", NULL));
	cr_assert_eq(ws_send(&a, 1, "again", 5), 0);
	expect(&a, ": again$");
	cr_assert_eq(srv_wait_log(&s1, "takes lines again", 1, 3000), 0);
	ws_disconnect(&a);
}

Test(stream, options_are_checked)
{
	static const struct {
		const char *ini, *err;
	} cases[] = {
		{ "broker_mode = stream\n", "broker_mode needs a broker" },
		{ "broker = redis://127.0.0.1:1\nbroker_mode = kafka\n",
		  "broker_mode \"kafka\" is neither pubsub nor stream" },
		{ "broker = redis://127.0.0.1:1\nrecover_window = 5\n",
		  "recover_window needs broker_mode = stream" },
		{ "broker = redis://127.0.0.1:1\nbroker_mode = stream\n"
		  "history = 5\nhistory_max = 2\n",
		  "history = 5 is more than the 2 lines a stream keeps" },
		{ "broker = redis://127.0.0.1:1\nbroker_mode = stream\n"
		  "recover_window = 600\nstream_ttl = 60\n",
		  "stream_ttl = 60 seconds is shorter than recover_window" },
		{ "broker = sentinel://127.0.0.1/m\n",
		  "nor sentinel://host:port[,host:port...]/NAME" },
		{ "broker = sentinel://127.0.0.1:26379,127.0.0.1:26380\n",
		  "is not redis://" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char *out;

		cr_assert_eq(t_check_ini(&out, NULL, 0, "[route /chat]\n"
		    "plugin = chat\n%s", cases[i].ini), 1, "case %zu", i);
		cr_assert_not_null(strstr(out, cases[i].err), "case %zu: %s",
		    i, out);
		free(out);
	}
}

#define ROOMS "[route /rooms/*]\nplugin = chat\nbroker = redis://127.0.0.1:%d\n" \
	"broker_mode = stream\nhistory = 2\n"

Test(stream, each_room_is_its_own_stream)
{
	struct wsc a, b, c, d;
	char *r;

	redis_up(0);
	srv_start(&s1, ROOMS, rport);
	srv_start(&s2, ROOMS, rport);
	cr_assert_eq(srv_wait_log(&s1, " up, streams squall:chat:/rooms/*:ROOM",
	    1, 5000), 0);
	cr_assert_eq(srv_wait_log(&s2, " up, streams ", 1, 5000), 0);
	cr_assert_eq(ws_connect(&a, s1.port, "/rooms/x", NULL), 101);
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect(&b, s2.port, "/rooms/x", NULL), 101);
	expect(&b, " joined at ");	/* a's, its history */
	expect(&b, " joined at ");
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect(&c, s2.port, "/rooms/y", NULL), 101);
	expect(&c, " joined at ");
	cr_assert_eq(ws_send(&a, 1, "in-x", 4), 0);
	expect(&a, ": in-x$");
	expect(&b, ": in-x$");
	cr_assert_eq(ws_send(&c, 1, "in-y", 4), 0);
	expect(&c, ": in-y$");
	cr_assert_null(ws_recv_text(&b, 300), "b heard room y");
	r = redis_cmd_at(rport, "XLEN", "squall:chat:/rooms/*:x", NULL);
	cr_assert(strncmp(r, ":3\r\n", 4) == 0, "%s", r);
	free(r);
	r = redis_cmd_at(rport, "PTTL", "squall:chat:/rooms/*:y", NULL);
	cr_assert(r[0] == ':' && atol(r + 1) > 86000000L, "%s", r);
	free(r);
	/* a newcomer to x on s1 hears x's last 2 lines, not y's */
	cr_assert_eq(ws_connect(&d, s1.port, "/rooms/x", NULL), 101);
	expect(&d, " joined at ");
	expect(&d, ": in-x$");
	expect(&d, " joined at ");
	ws_disconnect(&a);
	ws_disconnect(&b);
	ws_disconnect(&c);
	ws_disconnect(&d);
}

/*
 * A reload from pub/sub to a stream moves the room: the member who
 * joined before stays, and meets those who join after.
 */
Test(stream, a_reload_onto_a_stream_moves_the_room)
{
	struct wsc a, b;

	redis_up(0);
	srv_start(&s1, "[route /chat]\nplugin = chat\n"
	    "broker = redis://127.0.0.1:%d\n", rport);
	cr_assert_eq(srv_wait_log(&s1, " up, channel ", 1, 5000), 0);
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	t_write(s1.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    CHAT, t_plugin_dir(), rport);
	cr_assert_eq(srv_reload(&s1), 0);
	cr_assert_eq(srv_wait_log(&s1, "a reload changed the broker", 1,
	    5000), 0);
	cr_assert_eq(srv_wait_log(&s1, " up, stream ", 2, 5000), 0);
	cr_assert_eq(ws_connect(&b, s1.port, "/chat", NULL), 101);
	expect(&b, " joined at ");
	expect(&a, " joined at ");
	ws_expect_same_order(&a, "old", &b, "new");
	ws_disconnect(&a);
	ws_disconnect(&b);
}

/* A Redis never reached: the room is this process's from the start. */
Test(stream, a_redis_never_up_leaves_the_room_local)
{
	struct wsc a;

	rport = t_free_port();
	srv_start(&s1, CHAT "%s" STATUS, rport, "");
	cr_assert_eq(srv_wait_log(&s1, " unreachable ", 1, 5000), 0);
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, "^" IP " joined at " TS "$");
	cr_assert_eq(ws_send(&a, 1, "alone", 5), 0);
	expect(&a, ": alone$");
	ws_disconnect(&a);
}

/*
 * Whatever answers on the broker's address cannot stop squalld on a
 * stream either: a "Redis" of the test's own answers CLIENT ID, then the
 * XREAD, with shapes Redis never sends; each is refused, logged with its
 * reason, and the room goes on here.
 */
Test(stream, hostile_replies_are_refused)
{
	static const struct {
		const char *id, *read, *why;
	} cases[] = {
		{ "*3\r\n:1\r\n:2\r\n:3\r\n", NULL,
		  "an array longer than asked for" },
		{ ":7\r\n", "*1\r\n*3\r\n$1\r\nk\r\n*0\r\n*0\r\n",
		  "a stream that is not [key, entries]" },
		{ ":7\r\n", "*1\r\n*2\r\n$17\r\nsquall:chat:/chat\r\n"
		  "*2147483647\r\n", "more entries than asked for" },
		{ ":7\r\n", "*1\r\n*2\r\n$17\r\nsquall:chat:/chat\r\n*1\r\n"
		  "*2\r\n$3\r\n1-1\r\n*17\r\n", "an entry of too many" },
		{ ":7\r\n", "*1\r\n*2\r\n$17\r\nsquall:chat:/chat\r\n*1\r\n"
		  "*2\r\n$3\r\n1-1\r\n*2\r\n$4\r\nline\r\n:5\r\n",
		  "an integer where a string belongs" },
	};
	char buf[4096], want[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int lfd, fd[2], rd, cmd, n;
		struct pollfd pfd[2];
		struct wsc a;

		rport = t_free_port();
		lfd = t_listen(rport, 8);
		srv_start(&s1, CHAT "%s", rport, "");
		for (int k = 0; k < 2; k++)
			cr_assert_geq(fd[k] = t_accept_within(lfd, 5000), 0,
			    "case %zu: squalld did not connect", i);
		/* the reader is the one that asks CLIENT ID */
		for (int k = 0; k < 2; k++)
			pfd[k] = (struct pollfd){ fd[k], POLLIN, 0 };
		cr_assert_gt(poll(pfd, 2, 5000), 0, "case %zu: no CLIENT ID",
		    i);
		rd = (pfd[0].revents & POLLIN) ? 0 : 1;
		cmd = 1 - rd;
		cr_assert_gt(read(fd[rd], buf, sizeof(buf)), 0);
		cr_assert_eq(write(fd[rd], cases[i].id, strlen(cases[i].id)),
		    (ssize_t)strlen(cases[i].id));
		if (cases[i].read != NULL) {
			cr_assert_eq(srv_wait_log(&s1, " up, stream ", 1,
			    5000), 0, "case %zu", i);
			cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL),
			    101);
			/* XREVRANGE COUNT 1: an empty stream; then XADD */
			n = (int)read(fd[cmd], buf, sizeof(buf));
			cr_assert_gt(n, 0);
			cr_assert_eq(write(fd[cmd], "*0\r\n", 4), 4);
			/* the XREAD that follows gets the hostile answer */
			cr_assert_gt(read(fd[rd], buf, sizeof(buf)), 0,
			    "case %zu: no XREAD", i);
			(void)!write(fd[rd], cases[i].read,
			    strlen(cases[i].read));
		}
		snprintf(want, sizeof(want), "(refused a reply: %s",
		    cases[i].why);
		cr_assert_eq(srv_wait_log(&s1, want, 1, 5000), 0,
		    "case %zu: no \"%s\" in the log:\n%s", i, want,
		    t_read(s1.log, NULL));
		if (cases[i].read == NULL) {
			cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL),
			    101);
			free(ws_expect_line(&a, " joined at "));
		}
		/* the member stays, in a room local to this process */
		cr_assert_eq(ws_send(&a, 1, "still", 5), 0);
		free(ws_expect_line(&a, ": still$"));
		ws_disconnect(&a);
		close(fd[0]);
		close(fd[1]);
		close(lfd);
		cr_assert_eq(srv_stop(&s1), 0, "case %zu", i);
		srv_cleanup(&s1);
	}
}

/* redis-server with these arguments after its own, until it accepts. */
static pid_t
redis_exec(int port, const char *const *args)
{
	char portarg[16], logf[300];
	const char *argv[32];
	size_t n = 0;
	pid_t pid;

	snprintf(portarg, sizeof(portarg), "%d", port);
	snprintf(logf, sizeof(logf), "%s/redis-%d.log", rdir, port);
	argv[n++] = "redis-server";
	for (; *args && n < 20; args++)
		argv[n++] = *args;
	for (const char *a[] = { "--port", portarg, "--bind", "127.0.0.1",
	    "--daemonize", "no", "--logfile", logf, NULL }, **p = a; *p; p++)
		argv[n++] = *p;
	argv[n] = NULL;
	if ((pid = fork()) == 0) {
		t_close_inherited();
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	for (long end = t_now_ms() + 10000; t_now_ms() < end; usleep(20000)) {
		int fd = t_connect(port);

		if (fd >= 0) {
			close(fd);
			return pid;
		}
	}
	cr_assert_fail("redis-server did not start on port %d", port);
	return -1;
}

/*
 * broker = sentinel://: the master comes from a Sentinel, and a failover
 * (SENTINEL FAILOVER, the replica promoted) moves both processes' room
 * to the new master, where it goes on whole.
 */
Test(stream, a_sentinel_failover_is_followed)
{
	char conf[300], rep[16], sport_s[16], *r, want[100];
	int sport = t_free_port(), rport2;
	struct wsc a, b;

	redis_up(0);
	rport2 = t_free_port();
	snprintf(rep, sizeof(rep), "%d", rport);
	others[0] = redis_exec(rport2, (const char *const[]){ "--save", "",
	    "--appendonly", "no", "--replicaof", "127.0.0.1", rep, NULL });
	snprintf(conf, sizeof(conf), "%s/sentinel.conf", rdir);
	t_write(conf, "sentinel monitor m 127.0.0.1 %d 1\n"
	    "sentinel down-after-milliseconds m 1000\n"
	    "sentinel failover-timeout m 3000\n", rport);
	others[1] = redis_exec(sport, (const char *const[]){ conf, "--sentinel",
	    NULL });
	snprintf(rep, sizeof(rep), "%d", rport2);
	for (long end = t_now_ms() + 15000;; usleep(100000)) {
		r = redis_cmd_at(sport, "SENTINEL", "replicas", "m", NULL);
		if (strstr(r, rep) != NULL)
			break;
		free(r);
		cr_assert_lt(t_now_ms(), end, "the Sentinel found no replica");
	}
	free(r);
	snprintf(sport_s, sizeof(sport_s), "%d", sport);
	srv_start(&s1, "[route /chat]\nplugin = chat\n"
	    "broker = sentinel://127.0.0.1:%d/m\nbroker_mode = stream\n", sport);
	srv_start(&s2, "[route /chat]\nplugin = chat\n"
	    "broker = sentinel://127.0.0.1:%d/m\nbroker_mode = stream\n", sport);
	snprintf(want, sizeof(want), "master m is at 127.0.0.1:%d", rport);
	cr_assert_eq(srv_wait_log(&s1, want, 1, 5000), 0);
	cr_assert_eq(srv_wait_log(&s1, " up, stream ", 1, 5000), 0);
	cr_assert_eq(srv_wait_log(&s2, " up, stream ", 1, 5000), 0);
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect(&b, s2.port, "/chat", NULL), 101);
	expect(&b, " joined at ");
	expect(&a, " joined at ");
	ws_expect_same_order(&a, "before-a", &b, "before-b");
	free(redis_cmd_at(sport, "SENTINEL", "FAILOVER", "m", NULL));
	snprintf(want, sizeof(want), "master m is at 127.0.0.1:%d", rport2);
	cr_assert_eq(srv_wait_log(&s1, want, 1, 15000), 0, "s1 did not "
	    "follow the failover:\n%s", t_read(s1.log, NULL));
	cr_assert_eq(srv_wait_log(&s2, want, 1, 15000), 0);
	cr_assert_eq(srv_wait_log(&s1, " back: ", 1, 5000), 0);
	cr_assert_eq(srv_wait_log(&s2, " back: ", 1, 5000), 0);
	ws_expect_same_order(&a, "after-a", &b, "after-b");
	ws_disconnect(&a);
	ws_disconnect(&b);
}

/* ---- poison, reloads, keys of another type, gaps (a review's cases) ---- */

/*
 * A reload that moves a stream room to another stream (here: another
 * channel, same Redis). The member who joined before must still hear
 * those who join after. The old broker's blocked XREAD leaves
 * b->reading set (chat_broker_move closes the connections without
 * chat_stream_down), so the moved room never sends another XREAD.
 */
Test(stream, a_reload_between_streams_moves_the_room)
{
	struct wsc a, b;
	char *l;

	redis_up(0);
	srv_start(&s1, CHAT "channel = one\n", rport);
	cr_assert_eq(srv_wait_log(&s1, " up, stream one", 1, 5000), 0);
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	/* the XREAD is blocked by now */
	usleep(200000);
	t_write(s1.ini, "[server]\nlisten = 127.0.0.1:0\nplugin_dir = %s\n"
	    CHAT "channel = two\n", t_plugin_dir(), rport);
	cr_assert_eq(srv_reload(&s1), 0);
	cr_assert_eq(srv_wait_log(&s1, "a reload changed the broker", 1,
	    5000), 0);
	cr_assert_eq(srv_wait_log(&s1, " up, stream two", 2, 5000), 0,
	    "%s", t_read(s1.log, NULL));
	cr_assert_eq(ws_connect(&b, s1.port, "/chat", NULL), 101);
	expect(&b, " joined at ");
	l = ws_recv_text(&a, 3000);
	cr_assert_not_null(l, "the moved member never heard the newcomer "
	    "(no XREAD on the new stream)");
	free(l);
	ws_disconnect(&a);
	ws_disconnect(&b);
}

/* Appends one command (args, NULL-ended) in Redis's protocol to req. */
static size_t
resp_cmd(char *req, size_t size, size_t n, const char *arg, ...)
{
	const char *args[40];
	size_t argc = 0;
	va_list ap;

	va_start(ap, arg);
	for (const char *a = arg; a && argc < 40; a = va_arg(ap, const char *))
		args[argc++] = a;
	va_end(ap);
	n += (size_t)snprintf(req + n, size - n, "*%zu\r\n", argc);
	for (size_t i = 0; i < argc; i++)
		n += (size_t)snprintf(req + n, size - n, "$%zu\r\n%s\r\n",
		    strlen(args[i]), args[i]);
	cr_assert_lt(n, size);
	return n;
}

/* An entry the reply guard refuses: 9 field-value pairs (18 strings). */
#define POISON_ID(key, id) "XADD", key, id, "f1", "v", "f2", "v", "f3", \
	"v", "f4", "v", "f5", "v", "f6", "v", "f7", "v", "f8", "v", "f9", "v"
#define POISON(key) POISON_ID(key, "*")

/* Adds a refused entry with id (or "*") to key: Redis's answer. */
static char *
poison(const char *key, const char *id)
{
	char req[1024];
	size_t n;

	n = resp_cmd(req, sizeof(req), 0, POISON_ID(key, id), NULL);
	n = resp_cmd(req, sizeof(req), n, "QUIT", NULL);
	return raw_exchange(rport, req, n, 2000, NULL);
}

/* s1 with a route of rooms on a stream, and m a member of room a whose
 * XREAD is out. */
static void
rooms_with_a_member(struct wsc *m)
{
	redis_up(0);
	srv_start(&s1, ROOMS, rport);
	cr_assert_eq(srv_wait_log(&s1, " up, streams ", 1, 5000), 0);
	cr_assert_eq(ws_connect(m, s1.port, "/rooms/a", NULL), 101);
	expect(m, " joined at ");
	usleep(200000);
}

/*
 * A poisoned entry behind N good ones, all in one XREAD answer. The
 * reader should step over it after one careful (COUNT 1) read; but
 * read_reply clears `careful` on every answer, so each careful read
 * delivers one entry, the next COUNT 128 read meets the poison again, and
 * the broker is lost and back once per entry before it (N times). Each
 * loss admits those joining, and makes the room local for ~100 ms.
 */
Test(stream, a_poisoned_entry_costs_one_reconnection)
{
	static char req[1 << 16];
	char word[64], pat[80], *out;
	struct wsc a;
	size_t n = 0;
	int losses;

	redis_up(0);
	start(&s1, "");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	usleep(200000);		/* the XREAD is blocked */
	n = resp_cmd(req, sizeof(req), n, "MULTI", NULL);
	for (int i = 0; i < 20; i++) {
		snprintf(word, sizeof(word),
		    "[1.2.3.4] at 2026-01-01 00:00:00: g%d", i);
		n = resp_cmd(req, sizeof(req), n, "XADD", "squall:chat:/chat",
		    "*", "line", word, NULL);
	}
	n = resp_cmd(req, sizeof(req), n, POISON("squall:chat:/chat"), NULL);
	n = resp_cmd(req, sizeof(req), n, "EXEC", NULL);
	n = resp_cmd(req, sizeof(req), n, "QUIT", NULL);
	free(raw_exchange(rport, req, n, 2000, NULL));
	for (int i = 0; i < 20; i++) {
		snprintf(pat, sizeof(pat), ": g%d$", i);
		expect(&a, pat);
	}
	/* stepped over: counted, then back once more */
	cr_assert_eq(srv_wait_log(&s1, "an entry the reply guard refused", 1,
	    10000), 0);
	losses = srv_log_count(&s1, " lost (refused a reply: an entry of too "
	    "many fields");
	cr_assert_eq(srv_wait_log(&s1, " back: ", losses, 10000), 0);
	out = t_read(s1.log, NULL);
	cr_assert_leq(losses, 2, "the broker was lost and back %d times for "
	    "one poisoned entry behind 20 good ones:\n%s", losses, out);
	free(out);
	cr_assert_eq(ws_send(&a, 1, "after", 5), 0);
	expect(&a, ": after$");
	ws_disconnect(&a);
}

/* CLIENT PAUSE ms on Redis: every client's commands wait that long. */
static void
redis_pause(int port, const char *ms)
{
	char req[128], buf[64];
	int fd = t_connect(port), n;

	cr_assert_geq(fd, 0);
	n = snprintf(req, sizeof(req), "*3\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n"
	    "$%zu\r\n%s\r\n", strlen(ms), ms);
	cr_assert_eq(write(fd, req, (size_t)n), n);
	cr_assert_gt(read(fd, buf, sizeof(buf)), 0);
	close(fd);
}

/*
 * A poisoned XREVRANGE answer whose callback belongs to an orphan joiner
 * (its client left while Redis had its past to answer): poisoned_past
 * returns at once for it, leaving g->poisoned set, and the next callback
 * run empty-handed, another room's, takes that entry's id as its floor.
 * With a far-future id (XADD with an explicit id), that room's position
 * jumps there: it never reads its own stream again.
 */
Test(stream, an_orphans_poison_is_not_another_rooms_floor)
{
	struct wsc m, j, k;
	char *r;

	/* m keeps room a read, so that a's next joiner asks no position */
	rooms_with_a_member(&m);
	r = poison("squall:chat:/rooms/*:a", "99999999999999-0");
	cr_assert(r && strstr(r, "99999999999999-0") != NULL, "%s", r);
	free(r);
	/* a's reader steps over it (one reconnection) */
	cr_assert_eq(srv_wait_log(&s1, "an entry the reply guard refused", 1,
	    5000), 0);
	cr_assert_eq(srv_wait_log(&s1, " back: ", 1, 5000), 0);
	/* Redis holds every command for a while: j joins a (its past is
	 * asked, with the poison as its newest entry) and leaves; then k
	 * is room b's first member (b's position is asked) */
	redis_pause(rport, "1500");
	cr_assert_eq(ws_connect(&j, s1.port, "/rooms/a", NULL), 101);
	usleep(100000);
	ws_disconnect(&j);
	usleep(200000);
	cr_assert_eq(ws_connect(&k, s1.port, "/rooms/b", NULL), 101);
	/* the poisoned answer closes the connection, which admits k */
	cr_assert_eq(srv_wait_log(&s1, " back: ", 2, 5000), 0);
	usleep(300000);
	cr_assert_eq(ws_send(&k, 1, "in-b", 4), 0);
	/* (after k's joined line) */
	while ((r = ws_recv_text(&k, 3000)) != NULL &&
	    strstr(r, ": in-b") == NULL)
		free(r);
	cr_assert_not_null(r, "room b is wedged: k never heard its own line, "
	    "which b's stream holds:\n%s\n%s", redis_cmd_at(rport, "XRANGE",
	    "squall:chat:/rooms/*:b", "-", "+", NULL), t_read(s1.log, NULL));
	free(r);
	ws_disconnect(&k);
	ws_disconnect(&m);
}

/*
 * A new room's position (XREVRANGE COUNT 1) is asked, and its first
 * joiner's line XADDed, in one go; the connection breaks after Redis
 * ran both but before their answers came (here: a poisoned answer ahead
 * of them). Back up, the room asks its position again and gets the end
 * of the stream: lines this process had added with the question would
 * be behind it, never read here. So they wait for the answer.
 */
Test(stream, a_new_rooms_first_lines_survive_a_lost_position)
{
	struct wsc m, j, k;
	char *r;

	rooms_with_a_member(&m);
	/* the poison: the newest entry of a, which j's history will ask */
	free(poison("squall:chat:/rooms/*:a", "*"));
	cr_assert_eq(srv_wait_log(&s1, " back: ", 1, 5000), 0);
	redis_pause(rport, "1000");
	cr_assert_eq(ws_connect(&j, s1.port, "/rooms/a", NULL), 101);
	usleep(100000);
	cr_assert_eq(ws_connect(&k, s1.port, "/rooms/b", NULL), 101);
	cr_assert_eq(srv_wait_log(&s1, " back: ", 2, 5000), 0);
	r = ws_recv_text(&k, 3000);
	cr_assert(r != NULL && strstr(r, " joined at ") != NULL, "k never "
	    "heard its joined line (%s), which b's stream holds:\n%s\n%s",
	    r ? r : "no line", redis_cmd_at(rport, "XRANGE",
	    "squall:chat:/rooms/*:b", "-", "+", NULL), t_read(s1.log, NULL));
	free(r);
	ws_disconnect(&k);
	ws_disconnect(&j);
	ws_disconnect(&m);
}

/*
 * A poisoned entry whose id is the largest Redis allows (MS and SEQ both
 * 2^64-1), the newest of its stream: the room's floor becomes that id,
 * and revrange's "after the floor" wraps to 0-0, so each position asked
 * meets the poison again: the broker is lost and back for ever while the
 * room has members (every room of the route with it).
 */
Test(stream, the_largest_id_does_not_wrap_the_floor)
{
	struct wsc a;
	int losses;

	redis_up(0);
	start(&s1, "");
	free(poison("squall:chat:/chat",
	    "18446744073709551615-18446744073709551615"));
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	sleep(3);
	losses = srv_log_count(&s1, " lost (refused a reply");
	cr_assert_leq(losses, 2, "the broker was lost %d times in 3 s for one "
	    "poisoned entry:\n%.3000s", losses, t_read(s1.log, NULL));
	ws_disconnect(&a);
}

/*
 * A member back with ?last_id= after a gap larger than half of
 * max_queue: sent in one turn, the gap would get it dropped (and the
 * page would come back with the same id, again and again). It gets the
 * newcomer's history instead, counted as unrecovered, and stays.
 */
Test(stream, a_gap_larger_than_max_queue_gets_history)
{
	static char msg[900];
	struct wsc a, m;
	char last[64], path[128], *st;
	int got = 0;

	redis_up(0);
	start(&s1, "max_message_size = 1000\nmax_queue = 8000\n");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	cr_assert_eq(ws_connect_with(&m, s1.port, "/chat", V1), 101);
	free(expect_v1(&m, " joined at " TS "$", last, sizeof(last)));
	expect(&a, " joined at ");
	ws_disconnect(&m);
	expect(&a, " left at ");
	memset(msg, 'x', sizeof(msg) - 1);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(ws_send(&a, 1, msg, strlen(msg)), 0);
		expect(&a, ": x+$");
	}
	snprintf(path, sizeof(path), "/chat?last_id=%s", last);
	cr_assert_eq(ws_connect_with(&m, s1.port, path, V1), 101);
	free(expect_v1(&m, " joined at " TS "$", NULL, 0));
	cr_assert_eq(ws_send(&m, 1, "still here", 10), 0);
	for (char *l; (l = ws_recv_text(&m, 3000)) != NULL; free(l))
		if (strstr(l, ": still here") != NULL) {
			got = 1;
			free(l);
			break;
		}
	cr_assert(got, "the returning member was dropped");
	st = state(&s1);
	cr_assert_not_null(strstr(st, "\"recovered\":\"0\",\"unrecovered\":"
	    "\"1\""), "%s", st);
	free(st);
	ws_disconnect(&m);
	ws_disconnect(&a);
}

/*
 * A joiner admitted before its joined line came back (here: the broker
 * too slow, so its line was dropped; likewise when the broker is lost,
 * or Redis refuses the XADD) gets its past up to the stream's end at the
 * asking (j->top), while the room's reader may still be behind that: as a
 * member it then hears again, live, the lines its history already held,
 * and lines said before it joined.
 */
Test(stream, a_joiner_admitted_early_hears_no_line_twice)
{
	struct wsc a, j;
	char word[32], *l, **seen = NULL;
	size_t nseen = 0;

	redis_up(0);
	start(&s1, "history = 3\n");
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	expect(&a, " joined at ");
	usleep(200000);
	redis_pause(rport, "2500");
	for (int i = 0; i < 1000; i++) {
		snprintf(word, sizeof(word), "m%d", i);
		cr_assert_eq(ws_send(&a, 1, word, strlen(word)), 0);
	}
	usleep(300000);
	cr_assert_eq(ws_connect(&j, s1.port, "/chat", NULL), 101);
	while ((l = ws_recv_text(&j, 4000)) != NULL) {
		const char *p = strstr(l, ": ");

		for (size_t i = 0; p && i < nseen; i++)
			cr_assert_str_neq(seen[i], p + 2, "the newcomer heard "
			    "\"%s\" twice (after %zu lines)", p + 2, nseen);
		if (p) {
			seen = realloc(seen, (nseen + 1) * sizeof(*seen));
			seen[nseen++] = strdup(p + 2);
		}
		free(l);
	}
	cr_assert_leq(nseen, 3, "the newcomer heard %zu lines said before it "
	    "joined (history = 3)", nseen);
	lines_free(seen, nseen);
	ws_disconnect(&j);
	ws_disconnect(&a);
}

/*
 * A room's key holding something else than a stream (any client of that
 * Redis: SET squall:chat:/chat x). The man page: Redis refusing lines
 * (OOM, or a key holding something else) leaves the room local, said
 * once. But the position's XREVRANGE gets WRONGTYPE, which load_reply
 * takes for a lost broker: down, back, asked again, down... for as long
 * as the room has members, and every room of the route with it.
 */
Test(stream, a_key_of_another_type_does_not_flap_the_broker)
{
	struct wsc a;
	int losses;

	redis_up(0);
	start(&s1, "");
	free(redis_cmd_at(rport, "SET", "squall:chat:/chat", "x", NULL));
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	sleep(3);
	losses = srv_log_count(&s1, " lost (");
	cr_assert_leq(losses, 1, "the broker was lost %d times in 3 s:\n%.2000s",
	    losses, t_read(s1.log, NULL));
	ws_disconnect(&a);
}

/*
 * A Redis that is a replica (a demoted master, whose master is nowhere
 * here): the first XADD gets READONLY, and those sent behind it on the
 * same connection lose their answers with it. They were all refused, so
 * all wait for a master, and when none comes in time the room is local
 * and says them, in order; the outage is logged once.
 */
Test(stream, lines_behind_a_readonly_wait_with_it)
{
	char dead[16];
	struct wsc a;

	redis_up(0);
	snprintf(dead, sizeof(dead), "%d", t_free_port());
	free(redis_cmd_at(rport, "REPLICAOF", "127.0.0.1", dead, NULL));
	start(&s1, "");
	/* the joined line and three lines, one after another: the first
	 * XADD gets READONLY, the others are behind it */
	cr_assert_eq(ws_connect(&a, s1.port, "/chat", NULL), 101);
	for (int i = 1; i <= 3; i++) {
		char word[8];

		snprintf(word, sizeof(word), "l%d", i);
		cr_assert_eq(ws_send(&a, 1, word, strlen(word)), 0);
	}
	cr_assert_eq(srv_wait_log(&s1, "READONLY", 1, 5000), 0);
	/* after the 5 s a line may wait */
	for (int i = 0; i <= 3; i++) {
		char *l = ws_recv_text(&a, 10000), want[16];

		snprintf(want, sizeof(want), i ? ": l%d" : " joined at ", i);
		cr_assert(l != NULL && strstr(l, want) != NULL, "wanted \"%s\","
		    " got \"%s\":\n%s", want, l ? l : "nothing",
		    t_read(s1.log, NULL));
		free(l);
	}
	cr_assert_eq(srv_log_count(&s1, " lost ("), 1, "%s",
	    t_read(s1.log, NULL));
	ws_disconnect(&a);
}
