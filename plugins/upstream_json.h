/*
 * upstream_json.h - what data_fetch and multi_fetch share: turning a
 * finished fetch into a JSON value, or into the status and message of
 * the error a client should see (SPEC section 7).
 */
#ifndef SQUALL_UPSTREAM_JSON_H
#define SQUALL_UPSTREAM_JSON_H

#include <stddef.h>

struct sq_fetch;
struct sq_inst;
struct sq_opts;
struct json_object;

/* The options `ca_file` and `tls_verify` of both plugins. */
struct upstream_tls {
	char	*ca_file;	/* absolute; NULL: the system's CAs */
	int	 verify;
};

/*
 * Returns 200 with the parsed body in *out (a new reference; NULL for
 * JSON null), or 502
 * (unreachable, non-2xx, too large, not JSON), 504 (timed out) or 503
 * (cancelled) with *out NULL and why filled.
 */
int	upstream_json(struct sq_fetch *f, struct json_object **out, char *why,
	    size_t whylen);

/*
 * Reads ca_file (relative to the configuration file; it must be a
 * readable file) and tls_verify (default on; off is logged as a
 * warning). 0, or -EINVAL with the error recorded against the key.
 */
int	upstream_tls_opts(struct sq_inst *inst, struct sq_opts *opts,
	    struct upstream_tls *t);
int	upstream_tls_apply(struct sq_fetch *f, const struct upstream_tls *t);
void	upstream_tls_free(struct upstream_tls *t);

/* Is url something the fetch client takes: http(s)://... or /path? */
int	upstream_url_ok(const char *url);

#endif
