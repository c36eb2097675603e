/*
 * stats.c - what the server counts for monitoring (the status plugin):
 * counters kept where things happen (one increment each, on the loop
 * thread: requests by status class, WebSocket messages, failed fetches,
 * reloads, TLS handshakes) and gauges read when asked (connections, requests in flight,
 * sessions, fetches, offload jobs). Handed to plugins by sq_stats_get()
 * and sq_route_at(). Loop thread.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core.h"

struct sqc_counters sqc_counters;

static struct sqc_server *server;
static struct sqc_gen *gen;
static struct timespec started;

static uint64_t
ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - t->tv_sec) * 1000 +
	    (uint64_t)((now.tv_nsec - t->tv_nsec) / 1000000);
}

/* At start: the server whose gauges are read; the clock of the uptime. */
void
sqc_stats_init(struct sqc_server *s)
{
	server = s;
	clock_gettime(CLOCK_MONOTONIC, &started);
}

/* The generation now serving (at start and after every reload). */
void
sqc_stats_set_gen(struct sqc_gen *g)
{
	gen = g;
}

/*
 * Fills out (size bytes of it: a plugin built against an older, shorter
 * struct sq_stats gets what it knows of). Returns 0, or -EINVAL.
 */
int
sq_stats_get(struct sq_stats *out, size_t size)
{
	struct sq_stats st;

	if (out == NULL)
		return -EINVAL;
	memset(&st, 0, sizeof(st));
	st.uptime_ms = ms_since(&started);
	st.reloads_ok = sqc_counters.reloads_ok;
	st.reloads_failed = sqc_counters.reloads_failed;
	st.generation = 1 + st.reloads_ok;
	if (server) {
		st.connections = sqc_http_connections(server);
		st.requests_inflight = sqc_http_inflight(server);
	}
	memcpy(st.requests, sqc_counters.requests, sizeof(st.requests));
	st.ws_sessions = sqc_ws_count();
	st.ws_messages_in = sqc_counters.ws_in;
	st.ws_messages_out = sqc_counters.ws_out;
	sqc_fetch_counts(&st.fetches_active, &st.fetches_queued);
	st.fetches_failed = sqc_counters.fetches_failed;
	st.offload_queued = sqc_offload_pending();
	if (server)
		st.tls_connections = sqc_http_tls_connections(server);
	st.tls_handshakes = sqc_counters.tls_handshakes;
	st.tls_handshake_failures = sqc_counters.tls_handshake_failures;
	memcpy(out, &st, size < sizeof(st) ? size : sizeof(st));
	return 0;
}

/* The routes now served: how many, and each one's path and plugin. */
size_t
sq_route_count(void)
{
	return gen ? sqc_gen_count(gen, NULL) : 0;
}

int
sq_route_at(size_t i, const char **path, const char **plugin,
    const char **version)
{
	const struct sq_inst *inst;

	if (gen == NULL || (inst = sqc_gen_at(gen, i)) == NULL)
		return -ENOENT;
	sqc_inst_describe(inst, path, plugin, version);
	return 0;
}

/* The j-th pair the i-th route's instance set with sq_inst_set_info. */
int
sq_route_info(size_t i, size_t j, const char **key, const char **value)
{
	const struct sq_inst *inst;

	if (gen == NULL || (inst = sqc_gen_at(gen, i)) == NULL)
		return -ENOENT;
	return sqc_inst_info(inst, j, key, value);
}

/*
 * What the i-th route's instance has done since it was created (a reload
 * that keeps the route keeps its counts): size bytes of out are filled.
 */
int
sq_route_stats(size_t i, struct sq_route_stats *out, size_t size)
{
	const struct sq_inst *inst;

	if (gen == NULL || (inst = sqc_gen_at(gen, i)) == NULL)
		return -ENOENT;
	memset(out, 0, size);
	sqc_inst_counts(inst, out, size);
	return 0;
}
