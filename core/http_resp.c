/*
 * http_resp.c - the HTTP server's answers: the reason phrases, the
 * headers squall adds to every answer, sending (sqc_http_send, and
 * sqc_http_finish for a plugin's request) and the plugin's response API
 * (sq_resp_*). Loop thread only.
 *
 * evhttp adds Date and Content-Length to an HTTP/1.1 answer that lacks
 * them, formatting both with snprintf, the date from gmtime_r, on every
 * answer: about a tenth of the instructions of a small keep-alive
 * request. They are added here first, the same headers in the same
 * order (evhttp leaves them as they are): the date made once a second,
 * the length without the printf family.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <json-c/json.h>

#include "core.h"
#include "http.h"

/* The reason phrase of an HTTP status. */
const char *
sqc_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	/* a status of the plugin's own: its class */
	switch (status / 100) {
	case 1: return "Informational";
	case 2: return "Success";
	case 3: return "Redirection";
	case 4: return "Client Error";
	default: return "Server Error";
	}
}

/* Today's Date header, as evhttp writes it; made again each second. */
static const char *
date_now(void)
{
	static char date[64];
	static time_t made = -1;
	time_t t = time(NULL);
	struct tm tm;

	if (t != made && gmtime_r(&t, &tm) != NULL) {
		evutil_date_rfc1123(date, sizeof(date), &tm);
		made = t;
	}
	return date;
}

/* n in decimal, into buf (at least 21 bytes); returns buf. */
static char *
fmt_size(char *buf, size_t n)
{
	char tmp[24];
	size_t i = 0, j = 0;

	do
		tmp[i++] = (char)('0' + n % 10);
	while ((n /= 10) != 0);
	while (i > 0)
		buf[j++] = tmp[--i];
	buf[j] = '\0';
	return buf;
}

/* Does an answer of status to ev have a body (evhttp's rule)? */
static int
has_body(struct evhttp_request *ev, int status)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(ev);

	return status != 204 && status != 304 && (status < 100 ||
	    status >= 200) && cmd != EVHTTP_REQ_HEAD &&
	    cmd != EVHTTP_REQ_CONNECT;
}

/*
 * The headers squall adds to ev's answer of bytes: a HEAD answer says
 * how long the GET one's body is (evhttp 2.1 leaves Content-Length out
 * for HEAD); an HTTP/1.1 one gets Date and Content-Length as evhttp
 * would add them (see the top of the file). Returns 1 for HEAD: the
 * answer then has no body.
 */
static int
add_headers(struct evhttp_request *ev, int status, size_t bytes)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	int head = evhttp_request_get_command(ev) == EVHTTP_REQ_HEAD;
	char n[24];

	if (head && evhttp_find_header(out, "Content-Length") == NULL)
		evhttp_add_header(out, "Content-Length", fmt_size(n, bytes));
	if (ev->major != 1 || ev->minor < 1)
		return head;	/* evhttp's way for HTTP/1.0 */
	if (evhttp_find_header(out, "Date") == NULL)
		evhttp_add_header(out, "Date", date_now());
	if (has_body(ev, status) &&
	    evhttp_find_header(out, "Transfer-Encoding") == NULL &&
	    evhttp_find_header(out, "Content-Length") == NULL)
		evhttp_add_header(out, "Content-Length", fmt_size(n, bytes));
	return head;
}

/*
 * evhttp_send_reply queues the answer and enables writing: the socket's
 * write interest is added to epoll (one epoll_ctl), the next loop turn
 * finds the socket writable and writes, and the interest is removed (a
 * second epoll_ctl). Running the bufferevent's write event in this turn
 * instead writes the answer now, plain or TLS, by libevent's own write
 * path; the interest it added and removed within the turn cancels out in
 * the changelist (main.c), so no epoll_ctl is made for it. When the
 * socket cannot take it all, the event stays pending as before. (The
 * event is reached through bufferevent_struct.h, libevent 2.1's public
 * but deprecated layout, as http_struct.h is for the request.)
 */
static void
write_now(struct bufferevent *bev)
{
	if (bev != NULL && evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		event_active(&bev->ev_write, EV_WRITE, 1);
}

/*
 * Sends ev's answer, logged for client, with its body in buf (NULL:
 * none) or already in ev's output buffer: bytes long either way. A HEAD
 * answer sends none of it.
 */
void
sqc_http_send(struct evhttp_request *ev, const char *client, int status,
    struct evbuffer *buf, size_t bytes)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);

	if (add_headers(ev, status, bytes)) {
		bytes = 0;
		buf = NULL;
	}
	sqc_http_log_access(ev, client, status, bytes);
	evhttp_send_reply(ev, status, sqc_http_reason(status), buf);
	if (evcon != NULL)
		write_now(evhttp_connection_get_bufferevent(evcon));
}

int
sq_resp_header(struct sq_req *req, const char *name, const char *value)
{
	if (req->ev == NULL)
		return 0;
	if (evhttp_add_header(evhttp_request_get_output_headers(req->ev),
	    name, value) != 0)
		return -EINVAL;
	return 0;
}

/*
 * Sends the reply of req, bytes of body in buf (NULL: none, or already
 * in the request's output buffer), and ends req.
 */
static int
finish(struct sq_req *req, int status, struct evbuffer *buf, size_t bytes)
{
	if (req->in_abort)
		return 0;	/* the caller ends req after the callback */
	if (req->ev) {
		struct evkeyvalq *out;

		out = evhttp_request_get_output_headers(req->ev);
		if (evhttp_find_header(out, "Content-Type") == NULL)
			evhttp_add_header(out, "Content-Type",
			    "text/plain; charset=utf-8");
		sqc_http_send(req->ev, req->client, status, buf, bytes);
		req->ev = NULL;
	}
	sqc_http_req_free(req);
	return 0;
}

/* Sends the reply with buf as its body (NULL: none) and ends req. */
int
sqc_http_finish(struct sq_req *req, int status, struct evbuffer *buf)
{
	return finish(req, status, buf, buf ? evbuffer_get_length(buf) : 0);
}

/*
 * The body is copied straight into the request's output buffer, which
 * evhttp_send_reply sends (no buffer of our own to make and free).
 */
int
sq_resp_send(struct sq_req *req, int status, const void *body, size_t len)
{
	struct evhttp_request *ev = req->ev;

	if (status < 100 || status > 999)
		status = 500;
	if (ev == NULL || len == 0 || req->in_abort)
		return sqc_http_finish(req, status, NULL);
	if (evhttp_request_get_command(ev) != EVHTTP_REQ_HEAD &&
	    evbuffer_add(evhttp_request_get_output_buffer(ev), body,
	    len) != 0) {
		sqc_http_finish(req, 500, NULL);
		return -ENOMEM;
	}
	return finish(req, status, NULL, len);
}

int
sq_resp_printf(struct sq_req *req, int status, const char *fmt, ...)
{
	char *s;
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sq_resp_send(req, 500, NULL, 0);
		return -ENOMEM;
	}
	rc = sq_resp_send(req, status, s, (size_t)n);
	free(s);
	return rc;
}

int
sq_resp_json(struct sq_req *req, int status, struct json_object *obj)
{
	const char *s;
	size_t len;

	s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len);
	if (s == NULL)
		return sq_resp_send(req, 500, NULL, 0);
	if (req->ev && evhttp_find_header(evhttp_request_get_output_headers(
	    req->ev), "Content-Type") == NULL)
		sq_resp_header(req, "Content-Type", "application/json");
	return sq_resp_send(req, status, s, len);
}

int
sq_resp_file_take(struct sq_req *req, int status, int fd, int64_t offset,
    int64_t len)
{
	struct evbuffer *b;
	int rc;

	if (req->ev == NULL || len <= 0) {
		close(fd);
		return sqc_http_finish(req, status, NULL);
	}
	if ((b = evbuffer_new()) == NULL) {
		close(fd);
		sqc_http_finish(req, 500, NULL);
		return -ENOMEM;
	}
	/* evbuffer_add_file owns fd from here, even on failure */
	if (evbuffer_add_file(b, fd, offset, len) != 0) {
		evbuffer_free(b);
		sqc_http_finish(req, 500, NULL);
		return -EIO;
	}
	rc = sqc_http_finish(req, status, b);
	evbuffer_free(b);
	return rc;
}

int
sq_resp_error(struct sq_req *req, int status)
{
	return sq_resp_printf(req, status, "%d %s\n", status,
	    sqc_http_reason(status));
}

