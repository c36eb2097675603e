/*
 * status - what the server is doing, for people and for Prometheus:
 * uptime, configuration generation and reloads, the routes with their
 * plugins, connections, requests by status class and in flight,
 * WebSocket sessions and messages, fetches, offload jobs. JSON by
 * default; Prometheus' text format with ?format=prometheus (or an Accept
 * header asking for text/plain). Only clients in `allow` (default
 * loopback; addresses or CIDR blocks, or "*") get it, others 403.
 * Shows sq_stats_get() and sq_route_at(), and json-c responses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <json-c/json.h>
#include <squall/plugin.h>

struct block {
	int		 family;
	int		 bits;
	unsigned char	 addr[16];
};

struct status {
	struct block	*allow;
	size_t		 nallow;
	int		 any;
};

static int
parse_block(const char *tok, struct block *b)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(tok, '/');
	size_t hl = slash ? (size_t)(slash - tok) : strlen(tok);
	char *end;
	long bits;

	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, tok, hl);
	host[hl] = '\0';
	b->family = strchr(host, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(b->family, host, b->addr) != 1)
		return -EINVAL;
	b->bits = b->family == AF_INET ? 32 : 128;
	if (slash) {
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || end == slash + 1 || bits < 0 ||
		    bits > b->bits)
			return -EINVAL;
		b->bits = (int)bits;
	}
	return 0;
}

static int
allowed(const struct status *st, const char *ip)
{
	unsigned char a[16];
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET;

	if (st->any)
		return 1;
	if (inet_pton(family, ip, a) != 1)
		return 0;
	for (size_t i = 0; i < st->nallow; i++) {
		const struct block *b = &st->allow[i];
		int full = b->bits / 8, rest = b->bits % 8;

		if (b->family != family || memcmp(a, b->addr, (size_t)full))
			continue;
		if (rest == 0 || ((a[full] ^ b->addr[full]) &
		    (0xff << (8 - rest))) == 0)
			return 1;
	}
	return 0;
}

static int
status_create(struct sq_inst *inst, struct sq_opts *opts, void **state)
{
	struct status *st = calloc(1, sizeof(*st));
	const char *list = sq_opt_str(opts, "allow", "127.0.0.1 ::1");
	char *copy, *tok, *save;
	int rc = 0;

	if (st == NULL || (copy = strdup(list)) == NULL) {
		free(st);
		return -ENOMEM;
	}
	for (tok = strtok_r(copy, " \t,", &save); tok && rc == 0;
	    tok = strtok_r(NULL, " \t,", &save)) {
		struct block *n;

		if (strcmp(tok, "*") == 0) {
			st->any = 1;
			continue;
		}
		if ((n = realloc(st->allow, (st->nallow + 1) *
		    sizeof(*n))) == NULL) {
			rc = -ENOMEM;
			break;
		}
		st->allow = n;
		if (parse_block(tok, &st->allow[st->nallow]) != 0)
			rc = sq_opt_error(opts, "allow", "'%s' is not an "
			    "address or CIDR block (such as 127.0.0.1 or "
			    "10.0.0.0/8), nor \"*\"", tok);
		else
			st->nallow++;
	}
	free(copy);
	if (rc != 0) {
		free(st->allow);
		free(st);
		return rc;
	}
	*state = st;
	return 0;
}

static void
status_destroy(void *state)
{
	struct status *st = state;

	free(st->allow);
	free(st);
}

static const char *const classes[] = { "other", "1xx", "2xx", "3xx", "4xx",
    "5xx" };

static void
add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

/*
 * What the route's instance says of its state (sq_inst_set_info), as
 * "state": {"broker": "up"}; nothing when it says nothing.
 */
static void
add_state(struct json_object *r, size_t i)
{
	struct json_object *st = NULL;
	const char *k, *v;

	for (size_t j = 0; sq_route_info(i, j, &k, &v) == 0; j++) {
		if (st == NULL)
			st = json_object_new_object();
		json_object_object_add(st, k, json_object_new_string(v));
	}
	if (st != NULL)
		json_object_object_add(r, "state", st);
}

static void
send_json(struct sq_req *req, const struct sq_stats *s)
{
	struct json_object *o = json_object_new_object();
	struct json_object *routes = json_object_new_array();
	struct json_object *reloads = json_object_new_object();
	struct json_object *reqs = json_object_new_object();
	struct json_object *ws = json_object_new_object();
	struct json_object *fetches = json_object_new_object();
	struct json_object *offload = json_object_new_object();
	struct json_object *tls = json_object_new_object();
	const char *path, *plugin, *version;
	uint64_t total = 0;
	char buf[32];

	snprintf(buf, sizeof(buf), "%.3f", (double)s->uptime_ms / 1000.0);
	json_object_object_add(o, "uptime_seconds",
	    json_object_new_double_s((double)s->uptime_ms / 1000.0, buf));
	add_u64(o, "generation", s->generation);
	add_u64(reloads, "ok", s->reloads_ok);
	add_u64(reloads, "failed", s->reloads_failed);
	json_object_object_add(o, "reloads", reloads);
	for (size_t i = 0; sq_route_at(i, &path, &plugin, &version) == 0;
	    i++) {
		struct json_object *r = json_object_new_object();
		struct sq_route_stats rs;

		sq_route_stats(i, &rs, sizeof(rs));
		json_object_object_add(r, "route", json_object_new_string(path));
		json_object_object_add(r, "plugin",
		    json_object_new_string(plugin));
		json_object_object_add(r, "version",
		    json_object_new_string(version));
		add_u64(r, "requests", rs.requests);
		add_u64(r, "ws_sessions", rs.ws_sessions);
		add_u64(r, "ws_messages", rs.ws_messages);
		add_state(r, i);
		json_object_array_add(routes, r);
	}
	json_object_object_add(o, "routes", routes);
	add_u64(o, "connections", s->connections);
	for (size_t i = 0; i < 6; i++) {
		add_u64(reqs, classes[i], s->requests[i]);
		total += s->requests[i];
	}
	add_u64(reqs, "total", total);
	add_u64(reqs, "in_flight", s->requests_inflight);
	json_object_object_add(o, "requests", reqs);
	add_u64(ws, "sessions", s->ws_sessions);
	add_u64(ws, "messages_in", s->ws_messages_in);
	add_u64(ws, "messages_out", s->ws_messages_out);
	json_object_object_add(o, "websocket", ws);
	add_u64(fetches, "active", s->fetches_active);
	add_u64(fetches, "queued", s->fetches_queued);
	add_u64(fetches, "failed", s->fetches_failed);
	json_object_object_add(o, "fetches", fetches);
	add_u64(offload, "queued", s->offload_queued);
	json_object_object_add(o, "offload", offload);
	add_u64(tls, "connections", s->tls_connections);
	add_u64(tls, "handshakes", s->tls_handshakes);
	add_u64(tls, "handshake_failures", s->tls_handshake_failures);
	json_object_object_add(o, "tls", tls);
	sq_resp_header(req, "Cache-Control", "no-store");
	sq_resp_json(req, 200, o);
	json_object_put(o);
}

/* A state value that is a count (digits only): a sample, not a label. */
static int
is_count(const char *v)
{
	size_t n = strspn(v, "0123456789");

	return n > 0 && n <= 18 && v[n] == '\0';
}

/* A label value in Prometheus' text format: \, " and newline escaped. */
static void
put_label(FILE *fp, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', fp);
		if (*v == '\n')
			fputs("\\n", fp);
		else
			fputc(*v, fp);
	}
}

static void
metric(FILE *fp, const char *name, const char *type, const char *help)
{
	fprintf(fp, "# HELP squall_%s %s\n# TYPE squall_%s %s\n", name, help,
	    name, type);
}

/* A metric of one unlabelled value. */
static void
value(FILE *fp, const char *name, const char *type, const char *help,
    uint64_t v)
{
	metric(fp, name, type, help);
	fprintf(fp, "squall_%s %llu\n", name, (unsigned long long)v);
}

/* A metric of two values told apart by one label. */
static void
two(FILE *fp, const char *name, const char *type, const char *help,
    const char *label, const char *a, uint64_t va, const char *b,
    uint64_t vb)
{
	metric(fp, name, type, help);
	fprintf(fp, "squall_%s{%s=\"%s\"} %llu\nsquall_%s{%s=\"%s\"} %llu\n",
	    name, label, a, (unsigned long long)va, name, label, b,
	    (unsigned long long)vb);
}

/* The routes' metrics: what they are, their state, their requests. */
static void
route_metrics(FILE *fp)
{
	const char *path, *plugin, *version, *k, *v;
	struct sq_route_stats rs;

	metric(fp, "route_info", "gauge", "The routes served, with their "
	    "plugins.");
	for (size_t i = 0; sq_route_at(i, &path, &plugin, &version) == 0;
	    i++) {
		fputs("squall_route_info{route=\"", fp);
		put_label(fp, path);
		fputs("\",plugin=\"", fp);
		put_label(fp, plugin);
		fputs("\",version=\"", fp);
		put_label(fp, version);
		fputs("\"} 1\n", fp);
	}
	metric(fp, "route_state", "gauge", "What each route's plugin says of "
	    "its state (the chat's broker: up or down).");
	for (size_t i = 0; sq_route_at(i, &path, &plugin, &version) == 0;
	    i++) {
		for (size_t j = 0; sq_route_info(i, j, &k, &v) == 0; j++) {
			if (is_count(v))
				continue;
			fputs("squall_route_state{route=\"", fp);
			put_label(fp, path);
			fputs("\",key=\"", fp);
			put_label(fp, k);
			fputs("\",value=\"", fp);
			put_label(fp, v);
			fputs("\"} 1\n", fp);
		}
	}
	metric(fp, "route_value", "gauge", "What each route's plugin counts "
	    "of its state (the chat's rooms and members).");
	for (size_t i = 0; sq_route_at(i, &path, &plugin, &version) == 0;
	    i++) {
		for (size_t j = 0; sq_route_info(i, j, &k, &v) == 0; j++) {
			if (!is_count(v))
				continue;
			fputs("squall_route_value{route=\"", fp);
			put_label(fp, path);
			fputs("\",key=\"", fp);
			put_label(fp, k);
			fprintf(fp, "\"} %s\n", v);
		}
	}
	metric(fp, "route_requests_total", "counter", "Requests each route's "
	    "plugin handled.");
	for (size_t i = 0; sq_route_at(i, &path, &plugin, &version) == 0;
	    i++) {
		sq_route_stats(i, &rs, sizeof(rs));
		fputs("squall_route_requests_total{route=\"", fp);
		put_label(fp, path);
		fprintf(fp, "\"} %llu\n", (unsigned long long)rs.requests);
	}
}

/* The server's own metrics: connections, requests, WebSockets, fetches. */
static void
server_metrics(FILE *fp, const struct sq_stats *s)
{
	value(fp, "connections", "gauge", "Connections open, HTTP and "
	    "WebSocket.", s->connections);
	metric(fp, "requests_total", "counter", "Requests answered, by status "
	    "class.");
	for (size_t i = 0; i < 6; i++)
		fprintf(fp, "squall_requests_total{class=\"%s\"} %llu\n",
		    classes[i], (unsigned long long)s->requests[i]);
	value(fp, "requests_in_flight", "gauge", "Requests being handled.",
	    s->requests_inflight);
	value(fp, "websocket_sessions", "gauge", "WebSocket sessions open.",
	    s->ws_sessions);
	two(fp, "websocket_messages_total", "counter", "WebSocket messages "
	    "received (in) and queued to clients (out).", "direction", "in",
	    s->ws_messages_in, "out", s->ws_messages_out);
	two(fp, "fetches", "gauge", "Fetches of the shared HTTP client, "
	    "running or waiting for a slot.", "state", "active",
	    s->fetches_active, "queued", s->fetches_queued);
	value(fp, "fetches_failed_total", "counter", "Fetches that ended in "
	    "an error.", s->fetches_failed);
	value(fp, "offload_jobs", "gauge", "Offloaded jobs waiting or "
	    "running.", s->offload_queued);
	value(fp, "tls_connections", "gauge", "Connections open on the TLS "
	    "listeners.", s->tls_connections);
	two(fp, "tls_handshakes_total", "counter", "TLS handshakes, by "
	    "result.", "result", "ok", s->tls_handshakes, "failed",
	    s->tls_handshake_failures);
}

/* /status?format=prometheus: the text exposition format, version 0.0.4. */
static void
send_prometheus(struct sq_req *req, const struct sq_stats *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	if (fp == NULL) {
		sq_resp_error(req, 503);
		return;
	}
	metric(fp, "uptime_seconds", "gauge", "Seconds since the server "
	    "started.");
	fprintf(fp, "squall_uptime_seconds %.3f\n",
	    (double)s->uptime_ms / 1000.0);
	value(fp, "generation", "gauge", "Configurations served since start.",
	    s->generation);
	two(fp, "reloads_total", "counter", "Reloads, by result.", "result",
	    "ok", s->reloads_ok, "failed", s->reloads_failed);
	route_metrics(fp);
	server_metrics(fp, s);
	fclose(fp);
	sq_resp_header(req, "Content-Type", "text/plain; version=0.0.4; "
	    "charset=utf-8");
	sq_resp_header(req, "Cache-Control", "no-store");
	sq_resp_send(req, 200, text, len);
	free(text);
}

static void
status_handle(void *state, struct sq_req *req)
{
	const char *format = sq_req_arg(req, "format");
	const char *accept = sq_req_header(req, "Accept");
	struct sq_stats s;

	if (!allowed(state, sq_req_client_ip(req))) {
		sq_resp_error(req, 403);
		return;
	}
	if (strcmp(sq_req_method(req), "GET") != 0 &&
	    strcmp(sq_req_method(req), "HEAD") != 0) {
		sq_resp_header(req, "Allow", "GET, HEAD");
		sq_resp_error(req, 405);
		return;
	}
	sq_stats_get(&s, sizeof(s));
	if ((format && strcmp(format, "prometheus") == 0) || (format == NULL &&
	    accept && strstr(accept, "text/plain") != NULL &&
	    strstr(accept, "application/json") == NULL))
		send_prometheus(req, &s);
	else if (format == NULL || strcmp(format, "json") == 0)
		send_json(req, &s);
	else
		sq_resp_printf(req, 400, "format: json or prometheus\n");
}

SQ_PLUGIN(
	.name = "status",
	.version = "1.0",
	.create = status_create,
	.destroy = status_destroy,
	.handle = status_handle,
);
