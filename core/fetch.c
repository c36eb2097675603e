/*
 * fetch.c - the shared asynchronous HTTP client: one libcurl multi handle
 * per process, driven by the libevent loop (curl_multi_socket_action with
 * socket and timer callbacks), so connections are reused across fetches.
 * Owns struct sq_fetch (fetch_group.c the groups). A cap on concurrent
 * transfers (max_fetches) with a FIFO queue behind it. Only http and https,
 * a bounded number of redirects, a per-fetch timeout and size limit.
 *
 * Every fetch holds a reference on its instance and calls back exactly
 * once: from the loop, never from inside sq_fetch_start or a cancel.
 * Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "core.h"

#define DEFAULT_TIMEOUT_MS	30000
#define DEFAULT_MAX_SIZE	(1u << 20)
#define MAX_REDIRECTS		5

enum state { F_NEW, F_QUEUED, F_ACTIVE, F_DONE };

struct sq_fetch {
	enum state	 state;
	CURL		*easy;
	struct sq_inst	*inst;
	struct sq_fetch_group *group;
	void		(*cb)(struct sq_fetch *, void *);
	void		*arg;
	char		*url;
	char		*method;
	struct curl_slist *req_headers;
	char		*req_body;
	size_t		 req_body_len;
	uint64_t	 timeout_ms;
	size_t		 max_size;
	char		*ca_file;	/* NULL: the system's CAs */
	int		 no_verify;	/* tls_verify = off */

	char		*body;		/* response, NUL-terminated */
	size_t		 len, cap;
	char		*headers;	/* "Name: value\r\n"..., last response */
	size_t		 hlen, hcap;
	char		**hv;		/* name, value, name, value... split
					 * from headers on first lookup */
	size_t		 nhv;
	int		 split;
	int		 too_large;
	int		 error;
	long		 status;
	char		 errbuf[CURL_ERROR_SIZE];

	struct event	*later;		/* deferred completion */
	TAILQ_ENTRY(sq_fetch) link;	/* in queue, active or waiting */
};

static struct event_base *fbase;
static CURLM *multi;
static struct event *timer_ev;
static char *origin;			/* "http://127.0.0.1:8888" */
static size_t max_active = 256;
static size_t nactive;
static size_t nqueued;
static TAILQ_HEAD(, sq_fetch) queue = TAILQ_HEAD_INITIALIZER(queue);
static TAILQ_HEAD(, sq_fetch) active = TAILQ_HEAD_INITIALIZER(active);
/* done, their callback on a later turn */
static TAILQ_HEAD(, sq_fetch) waiting = TAILQ_HEAD_INITIALIZER(waiting);

/*
 * Finished easy handles, reset and kept for the next fetches: creating
 * one costs a dozen allocations and a 16 KiB buffer.
 */
#define IDLE_MAX 64
static CURL *idle[IDLE_MAX];
static size_t nidle;

static void check_done(void);
static void finish(struct sq_fetch *f);
static void pump_queue(void);

/* ---- libcurl <-> libevent -------------------------------------------- */

static void
on_socket_event(evutil_socket_t fd, short kind, void *arg)
{
	int action = 0, running;

	if (kind & EV_READ)
		action |= CURL_CSELECT_IN;
	if (kind & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	/*
	 * No evtimer_del when nothing runs: check_done() may just have
	 * started a transfer (the next queued one, or one a callback
	 * started), and libcurl set the timer for it. libcurl removes its
	 * timer itself, through timer_cb(-1), when it needs none.
	 */
	curl_multi_socket_action(multi, fd, action, &running);
	check_done();
}

static void
on_timer(evutil_socket_t fd, short kind, void *arg)
{
	int running;

	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done();
}

/* libcurl tells which sockets to watch, and for what. */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct event *ev = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (ev) {
			event_free(ev);
			curl_multi_assign(multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
	    (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (ev == NULL) {
		if ((ev = event_new(fbase, s, kind, on_socket_event,
		    NULL)) == NULL)
			return -1;
		curl_multi_assign(multi, s, ev);
	} else {
		event_del(ev);
		event_assign(ev, fbase, s, kind, on_socket_event, NULL);
	}
	event_add(ev, NULL);
	return 0;
}

/* libcurl asks to be called back after timeout_ms (-1: never). */
static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(timer_ev);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(timer_ev, &tv);
	return 0;
}

/*
 * Sets up the client on base. max is the cap on concurrent transfers.
 * Returns 0 or -ENOMEM. Call curl_global_init before any thread starts.
 */
int
sqc_fetch_init(struct event_base *base, size_t max)
{
	fbase = base;
	max_active = max ? max : 1;
	if ((multi = curl_multi_init()) == NULL ||
	    (timer_ev = evtimer_new(base, on_timer, NULL)) == NULL)
		return -ENOMEM;
	/* keep a connection for every transfer that may run at once */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)max_active);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	return 0;
}

/* Where URLs that start with "/" go: this server's first address. */
int
sqc_fetch_set_origin(const char *o)
{
	char *n = strdup(o);

	if (n == NULL)
		return -ENOMEM;
	free(origin);
	origin = n;
	return 0;
}

/* A reload changed max_fetches: start what the new cap allows. */
void
sqc_fetch_set_max(size_t max)
{
	max_active = max ? max : 1;
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)max_active);
	pump_queue();
}

/* ---- the fetch ------------------------------------------------------- */

struct sq_fetch *
sq_fetch_new(struct sq_inst *inst, const char *url)
{
	struct sq_fetch *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	if (url[0] == '/' && origin) {
		if (asprintf(&f->url, "%s%s", origin, url) < 0)
			f->url = NULL;
	} else
		f->url = strdup(url);
	if (f->url == NULL) {
		free(f);
		return NULL;
	}
	f->inst = inst;
	sqc_inst_ref(inst);
	f->timeout_ms = DEFAULT_TIMEOUT_MS;
	f->max_size = DEFAULT_MAX_SIZE;
	return f;
}

int
sq_fetch_set_method(struct sq_fetch *f, const char *method)
{
	char *m = strdup(method);

	if (m == NULL)
		return -ENOMEM;
	free(f->method);
	f->method = m;
	return 0;
}

int
sq_fetch_add_header(struct sq_fetch *f, const char *line)
{
	struct curl_slist *l = curl_slist_append(f->req_headers, line);

	if (l == NULL)
		return -ENOMEM;
	f->req_headers = l;
	return 0;
}

int
sq_fetch_set_body(struct sq_fetch *f, const void *body, size_t len)
{
	char *b = malloc(len + 1);

	if (b == NULL)
		return -ENOMEM;
	memcpy(b, body, len);
	b[len] = '\0';
	free(f->req_body);
	f->req_body = b;
	f->req_body_len = len;
	return 0;
}

void
sq_fetch_set_timeout(struct sq_fetch *f, uint64_t ms)
{
	f->timeout_ms = ms;
}

void
sq_fetch_set_max_size(struct sq_fetch *f, size_t bytes)
{
	f->max_size = bytes;
}

int
sq_fetch_set_tls(struct sq_fetch *f, const char *ca_file, int verify)
{
	char *c = NULL;

	if (ca_file && (c = strdup(ca_file)) == NULL)
		return -ENOMEM;
	free(f->ca_file);
	f->ca_file = c;
	f->no_verify = !verify;
	return 0;
}

/* Appends n bytes to a NUL-terminated buffer that doubles as it grows. */
static int
append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t ncap = *cap ? *cap : 1024;
		char *nb;

		while (ncap < *len + n + 1)
			ncap *= 2;
		if ((nb = realloc(*buf, ncap)) == NULL)
			return -ENOMEM;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sq_fetch *f = arg;
	size_t n = size * nmemb;

	if (f->len + n > f->max_size) {
		f->too_large = 1;
		return 0;		/* aborts the transfer */
	}
	return append(&f->body, &f->len, &f->cap, data, n) == 0 ? n : 0;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sq_fetch *f = arg;
	size_t n = size * nmemb;

	/* a new status line (after a redirect or 100): start over */
	if (n > 5 && strncmp(data, "HTTP/", 5) == 0)
		f->hlen = 0;
	if (f->hlen + n > 65536)
		return n;	/* headers past 64 KiB are dropped */
	return append(&f->headers, &f->hlen, &f->hcap, data, n) == 0 ? n : 0;
}

static int
setup_easy(struct sq_fetch *f)
{
	CURL *e = nidle > 0 ? idle[--nidle] : curl_easy_init();

	if (e == NULL)
		return -ENOMEM;
	f->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, f->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, f);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)f->max_size);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "squall/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
	if (f->req_headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->req_headers);
	if (f->req_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->req_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)f->req_body_len);
	}
	if (f->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file);
	if (f->no_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (f->method) {
		if (strcmp(f->method, "HEAD") == 0)
			curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		else if (strcmp(f->method, "GET") != 0 || f->req_body)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, f->method);
	}
	return 0;
}

static void
on_later(evutil_socket_t fd, short kind, void *arg)
{
	struct sq_fetch *f = arg;

	TAILQ_REMOVE(&waiting, f, link);
	finish(f);
}

/* Completes f on a later loop turn (errors at start, cancellation). */
static void
complete_later(struct sq_fetch *f, int error, const char *why)
{
	f->error = error;
	if (why && f->errbuf[0] == '\0')
		snprintf(f->errbuf, sizeof(f->errbuf), "%s", why);
	f->state = F_DONE;
	if (f->later == NULL)
		f->later = event_new(fbase, -1, 0, on_later, f);
	if (f->later) {
		TAILQ_INSERT_TAIL(&waiting, f, link);
		event_active(f->later, EV_TIMEOUT, 0);
	} else
		finish(f);	/* out of memory: better late than never */
}

static void
activate(struct sq_fetch *f)
{
	CURLMcode mc;

	if (setup_easy(f) != 0) {
		complete_later(f, -ENOMEM, "out of memory");
		return;
	}
	if ((mc = curl_multi_add_handle(multi, f->easy)) != CURLM_OK) {
		complete_later(f, -EIO, curl_multi_strerror(mc));
		return;
	}
	f->state = F_ACTIVE;
	TAILQ_INSERT_TAIL(&active, f, link);
	nactive++;
}

static void
pump_queue(void)
{
	struct sq_fetch *f;

	while ((f = TAILQ_FIRST(&queue)) != NULL && nactive < max_active) {
		TAILQ_REMOVE(&queue, f, link);
		nqueued--;
		activate(f);
	}
}

static void
enqueue(struct sq_fetch *f)
{
	f->state = F_QUEUED;
	TAILQ_INSERT_TAIL(&queue, f, link);
	nqueued++;
	pump_queue();
}

void
sq_fetch_start(struct sq_fetch *f, void (*cb)(struct sq_fetch *, void *),
    void *arg)
{
	if (f->state != F_NEW)
		return;		/* started already */
	f->cb = cb;
	f->arg = arg;
	if (strncasecmp(f->url, "http://", 7) != 0 &&
	    strncasecmp(f->url, "https://", 8) != 0) {
		complete_later(f, -EPROTONOSUPPORT, "only http and https URLs "
		    "are fetched");
		return;
	}
	enqueue(f);
}

static void
easy_release(CURL *e)
{
	if (nidle < IDLE_MAX) {
		curl_easy_reset(e);
		idle[nidle++] = e;
	} else
		curl_easy_cleanup(e);
}

static void
fetch_free(struct sq_fetch *f)
{
	if (f->easy)
		easy_release(f->easy);
	if (f->later)
		event_free(f->later);
	curl_slist_free_all(f->req_headers);
	free(f->req_body);
	free(f->method);
	free(f->ca_file);
	free(f->body);
	free(f->headers);
	free(f->hv);
	free(f->url);
	sqc_inst_unref(f->inst);
	free(f);
}

/* Takes f out of curl and the lists; it is done. */
static void
detach(struct sq_fetch *f)
{
	if (f->state == F_QUEUED) {
		TAILQ_REMOVE(&queue, f, link);
		nqueued--;
	} else if (f->state == F_ACTIVE) {
		curl_multi_remove_handle(multi, f->easy);
		TAILQ_REMOVE(&active, f, link);
		nactive--;
	}
	f->state = F_DONE;
}

void
sq_fetch_cancel(struct sq_fetch *f)
{
	if (f == NULL)
		return;
	if (f->state == F_NEW && f->group == NULL) {
		fetch_free(f);
		return;
	}
	if (f->state == F_DONE || f->state == F_NEW)
		return;		/* its callback is coming already */
	detach(f);
	complete_later(f, -ECANCELED, "cancelled");
	pump_queue();
}

/* Calls back and frees; for a group member, the group frees it. */
static void
finish(struct sq_fetch *f)
{
	if (f->error != 0 && f->error != -ECANCELED)
		sqc_counters.fetches_failed++;
	if (f->group) {
		sqc_fetch_group_done(f->group);
		return;
	}
	if (f->cb) {
		struct sq_inst *prev = sqc_inst_enter(f->inst);

		f->cb(f, f->arg);
		sqc_inst_leave(prev);
	}
	fetch_free(f);
}

static int
map_error(struct sq_fetch *f, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_URL_MALFORMAT:
		return -EINVAL;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_WRITE_ERROR:
		return f->too_large ? -EFBIG : -ENOMEM;
	case CURLE_TOO_MANY_REDIRECTS:
		return -ELOOP;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static void
check_done(void)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
		struct sq_fetch *f;
		CURLcode rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&f);
		curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->status);
		detach(f);
		f->error = map_error(f, rc);
		if (f->error == -EFBIG)
			snprintf(f->errbuf, sizeof(f->errbuf), "response "
			    "larger than %zu bytes", f->max_size);
		else if (f->error != 0 && f->errbuf[0] == '\0')
			snprintf(f->errbuf, sizeof(f->errbuf), "%s",
			    curl_easy_strerror(rc));
		finish(f);
	}
	pump_queue();
}

int
sq_fetch_error(struct sq_fetch *f)
{
	return f->error;
}

const char *
sq_fetch_errstr(struct sq_fetch *f)
{
	return f->error ? f->errbuf : "";
}

long
sq_fetch_status(struct sq_fetch *f)
{
	return f->status;
}

const char *
sq_fetch_body(struct sq_fetch *f, size_t *len)
{
	if (len)
		*len = f->len;
	return f->body ? f->body : "";
}

/* Splits the header block in place into name and value strings. */
static void
split_headers(struct sq_fetch *f)
{
	char *p = f->headers, *eol, *colon, *v;
	size_t n = 0;

	f->split = 1;
	for (char *q = p; q && *q; q = strchr(q, '\n') ? strchr(q, '\n') + 1 :
	    NULL)
		n++;
	if (n == 0 || (f->hv = calloc(2 * n, sizeof(*f->hv))) == NULL)
		return;
	for (; p && *p; p = eol ? eol + 1 : NULL) {
		if ((eol = strchr(p, '\n')) != NULL)
			*eol = '\0';
		p[strcspn(p, "\r")] = '\0';
		if ((colon = strchr(p, ':')) == NULL)
			continue;	/* the status line, the blank line */
		*colon = '\0';
		v = colon + 1 + strspn(colon + 1, " \t");
		f->hv[2 * f->nhv] = p;
		f->hv[2 * f->nhv + 1] = v;
		f->nhv++;
	}
}

/*
 * The value of a response header (the first of that name, ignoring case),
 * or NULL; valid until the fetch's callback returns.
 */
const char *
sq_fetch_header(struct sq_fetch *f, const char *name)
{
	if (!f->split && f->headers)
		split_headers(f);
	for (size_t i = 0; i < f->nhv; i++)
		if (strcasecmp(f->hv[2 * i], name) == 0)
			return f->hv[2 * i + 1];
	return NULL;
}

const char *
sq_fetch_url(struct sq_fetch *f)
{
	return f->url;
}

/* ---- for fetch_group.c ----------------------------------------------- */

/* Makes f a member of g: -EINVAL once started or in a group already. */
int
sqc_fetch_join(struct sq_fetch *f, struct sq_fetch_group *g)
{
	if (f->state != F_NEW || f->group)
		return -EINVAL;
	f->group = g;
	return 0;
}

/* Frees a member of a group, which owns it. */
void
sqc_fetch_release(struct sq_fetch *f)
{
	fetch_free(f);
}

/* Runs cb(arg) on a later loop turn (now, if that cannot be had). */
void
sqc_fetch_later(void (*cb)(int, short, void *), void *arg)
{
	if (event_base_once(fbase, -1, EV_TIMEOUT, cb, arg, NULL) != 0)
		cb(-1, 0, arg);
}

/* ---- shutdown -------------------------------------------------------- */

/* Fetches queued or running (not those waiting for their callback). */
size_t
sqc_fetch_pending(void)
{
	uint64_t nrun, nwait;

	sqc_fetch_counts(&nrun, &nwait);
	return (size_t)(nrun + nwait);
}

/* Transfers running now, and waiting for a slot under max_fetches. */
void
sqc_fetch_counts(uint64_t *nrun, uint64_t *nwait)
{
	*nrun = nactive;
	*nwait = nqueued;
}

/* At shutdown: every fetch calls back with -ECANCELED, now. */
void
sqc_fetch_cancel_all(void)
{
	struct sq_fetch *f;

	while ((f = TAILQ_FIRST(&queue)) != NULL ||
	    (f = TAILQ_FIRST(&active)) != NULL) {
		detach(f);
		f->error = -ECANCELED;
		snprintf(f->errbuf, sizeof(f->errbuf), "the server is stopping");
		finish(f);
	}
	while ((f = TAILQ_FIRST(&waiting)) != NULL) {
		TAILQ_REMOVE(&waiting, f, link);
		finish(f);
	}
}

/* At exit: cancels what is left, then frees the client. */
void
sqc_fetch_free(void)
{
	sqc_fetch_cancel_all();
	while (nidle > 0)
		curl_easy_cleanup(idle[--nidle]);
	if (timer_ev)
		event_free(timer_ev);
	timer_ev = NULL;
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	free(origin);
	origin = NULL;
}
