/*
 * upstream_json.c - see upstream_json.h. Compiled into data_fetch and
 * multi_fetch alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <squall/plugin.h>

#include "upstream_json.h"

int
upstream_json(struct sq_fetch *f, struct json_object **out, char *why,
    size_t whylen)
{
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	const char *body, *bad = NULL;
	size_t len;
	long status;
	int err = sq_fetch_error(f);

	*out = NULL;
	if (err == -ETIMEDOUT) {
		snprintf(why, whylen, "upstream timed out: %s",
		    sq_fetch_errstr(f));
		return 504;
	}
	if (err == -ECANCELED) {
		snprintf(why, whylen, "cancelled: %s", sq_fetch_errstr(f));
		return 503;
	}
	if (err == -EFBIG) {
		snprintf(why, whylen, "upstream %s", sq_fetch_errstr(f));
		return 502;
	}
	if (err == -EPROTO) {
		snprintf(why, whylen, "upstream TLS failed: %s",
		    sq_fetch_errstr(f));
		return 502;
	}
	if (err != 0) {
		snprintf(why, whylen, "upstream unreachable: %s",
		    sq_fetch_errstr(f));
		return 502;
	}
	status = sq_fetch_status(f);
	if (status < 200 || status > 299) {
		snprintf(why, whylen, "upstream answered %ld", status);
		return 502;
	}
	body = sq_fetch_body(f, &len);
	if ((tok = json_tokener_new()) == NULL) {
		snprintf(why, whylen, "out of memory");
		return 502;
	}
	/* JSON null parses to a NULL object with success */
	*out = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_success) {
		const char *rest = body + json_tokener_get_parse_end(tok);

		if (rest[strspn(rest, " \t\r\n")] != '\0')
			bad = "trailing data after the value";
	} else if (jerr == json_tokener_continue)
		bad = "unexpected end of data";
	else
		bad = json_tokener_error_desc(jerr);
	json_tokener_free(tok);
	if (bad) {
		json_object_put(*out);
		*out = NULL;
		snprintf(why, whylen, "upstream sent invalid JSON: %s", bad);
		return 502;
	}
	return 200;
}

int
upstream_url_ok(const char *url)
{
	return (strncasecmp(url, "http://", 7) == 0 && url[7] != '\0') ||
	    (strncasecmp(url, "https://", 8) == 0 && url[8] != '\0') ||
	    url[0] == '/';
}

/* Is path a regular file we can read? 0, or an errno value. */
static int
readable_file(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (fstat(fd, &st) != 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	close(fd);
	return err;
}

int
upstream_tls_opts(struct sq_inst *inst, struct sq_opts *opts,
    struct upstream_tls *t)
{
	int err;

	t->ca_file = NULL;
	if (sq_opt_bool(opts, "tls_verify", 1, &t->verify) != 0)
		return -EINVAL;
	if (sq_opt_str(opts, "ca_file", NULL) != NULL) {
		if ((t->ca_file = sq_opt_path(opts, "ca_file", NULL)) == NULL)
			return -ENOMEM;
		if ((err = readable_file(t->ca_file)) != 0) {
			err = sq_opt_error(opts, "ca_file", "ca_file '%s': %s",
			    t->ca_file, strerror(err));
			upstream_tls_free(t);
			return err;
		}
	}
	if (!t->verify)
		sq_log(inst, SQ_LOG_WARN, "tls_verify = off: https upstreams "
		    "are not authenticated");
	return 0;
}

int
upstream_tls_apply(struct sq_fetch *f, const struct upstream_tls *t)
{
	if (t->ca_file == NULL && t->verify)
		return 0;
	return sq_fetch_set_tls(f, t->ca_file, t->verify);
}

void
upstream_tls_free(struct upstream_tls *t)
{
	free(t->ca_file);
	t->ca_file = NULL;
}
