/*
 * upstream_json.c - see upstream_json.h. Compiled into data_fetch and
 * multi_fetch alike.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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
