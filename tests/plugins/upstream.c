/*
 * upstream - the upstream the fetch tests talk to, served by a squalld of
 * their own on the prefix route /up/:
 *   json        {"hello": "world", "n": 1}
 *   list        [1, 2, 3]
 *   status?code=N   status N with a JSON body
 *   invalid     a body that is not JSON
 *   empty       200 with no body
 *   slow?ms=N   {"slow": N} after N ms (on a timer)
 *   huge?kb=N   a JSON string of N KiB
 *   redirect?to=URL   302 to URL
 *   echo        {"method": M, "body": B, "x-test": H} with X-Upstream: yes
 *   hits        {"hits": H}: requests counted since the start or a reset
 *   reset       sets the counter to 0
 * Every request but hits and reset counts as a hit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

static long hits;

struct later {
	struct sq_req	*req;
	long		 ms;
};

static long
arg_long(struct sq_req *req, const char *name, long def)
{
	const char *v = sq_req_arg(req, name);

	return v ? strtol(v, NULL, 10) : def;
}

static void
on_abort(struct sq_req *req, void *arg)
{
	((struct later *)arg)->req = NULL;
}

static void
on_timer(int status, void *arg)
{
	struct later *l = arg;

	if (l->req) {
		sq_resp_header(l->req, "Content-Type", "application/json");
		sq_resp_printf(l->req, 200, "{\"slow\": %ld}\n", l->ms);
	}
	free(l);
}

static void
json(struct sq_req *req, int status, const char *body)
{
	sq_resp_header(req, "Content-Type", "application/json");
	sq_resp_send(req, status, body, strlen(body));
}

static void
handle(void *state, struct sq_req *req)
{
	const char *what = sq_req_subpath(req);

	if (strcmp(what, "hits") == 0) {
		char buf[64];

		snprintf(buf, sizeof(buf), "{\"hits\": %ld}", hits);
		json(req, 200, buf);
		return;
	}
	if (strcmp(what, "reset") == 0) {
		hits = 0;
		json(req, 200, "{}");
		return;
	}
	hits++;
	if (strcmp(what, "json") == 0)
		json(req, 200, "{\"hello\": \"world\", \"n\": 1}");
	else if (strcmp(what, "list") == 0)
		json(req, 200, "[1, 2, 3]");
	else if (strcmp(what, "status") == 0)
		json(req, (int)arg_long(req, "code", 500), "{\"oops\": true}");
	else if (strcmp(what, "invalid") == 0)
		json(req, 200, "{\"unfinished\": ");
	else if (strcmp(what, "empty") == 0)
		sq_resp_send(req, 200, NULL, 0);
	else if (strcmp(what, "echo") == 0) {
		size_t len;
		const char *body = sq_req_body(req, &len);
		const char *h = sq_req_header(req, "X-Test");

		sq_resp_header(req, "X-Upstream", "yes");
		sq_resp_header(req, "Content-Type", "application/json");
		sq_resp_printf(req, 200, "{\"method\": \"%s\", \"body\": "
		    "\"%.*s\", \"x-test\": \"%s\"}", sq_req_method(req),
		    (int)len, body, h ? h : "");
	} else if (strcmp(what, "redirect") == 0) {
		const char *to = sq_req_arg(req, "to");

		sq_resp_header(req, "Location", to ? to : "/up/json");
		sq_resp_send(req, 302, NULL, 0);
	} else if (strcmp(what, "slow") == 0) {
		struct later *l = calloc(1, sizeof(*l));

		l->req = req;
		l->ms = arg_long(req, "ms", 500);
		sq_timer_start(sq_req_inst(req), (uint64_t)l->ms, on_timer, l);
		sq_req_on_abort(req, on_abort, l);
	} else if (strcmp(what, "huge") == 0) {
		long kb = arg_long(req, "kb", 2048);
		size_t len = (size_t)kb * 1024;
		char *big = malloc(len + 1);

		memset(big, 'x', len);
		big[0] = '"';
		big[len - 1] = '"';
		sq_resp_header(req, "Content-Type", "application/json");
		sq_resp_send(req, 200, big, len);
		free(big);
	} else
		sq_resp_error(req, 404);
}

SQ_PLUGIN(.name = "upstream", .version = "test", .handle = handle);
