/*
 * upstream_json.h - what data_fetch and multi_fetch share: turning a
 * finished fetch into a JSON value, or into the status and message of
 * the error a client should see (SPEC section 7).
 */
#ifndef SQUALL_UPSTREAM_JSON_H
#define SQUALL_UPSTREAM_JSON_H

#include <stddef.h>

struct sq_fetch;
struct json_object;

/*
 * Returns 200 with the parsed body in *out (a new reference; NULL for
 * JSON null), or 502
 * (unreachable, non-2xx, too large, not JSON), 504 (timed out) or 503
 * (cancelled) with *out NULL and why filled.
 */
int	upstream_json(struct sq_fetch *f, struct json_object **out, char *why,
	    size_t whylen);

/* Is url something the fetch client takes: http(s)://... or /path? */
int	upstream_url_ok(const char *url);

#endif
