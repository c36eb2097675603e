/*
 * chat_resp - the broker's replies, refused before hiredis's
 * asynchronous layer sees a shape it would assert on; see chat_resp.h.
 * A create function that returns NULL makes the reader fail ("Out of
 * memory" to hiredis), so each refusal first says why in g->why.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "chat_resp.h"

static void *
refuse(struct chat_resp *g, const char *fmt, ...)
{
	va_list ap;

	if (g->why[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(g->why, sizeof(g->why), fmt, ap);
		va_end(ap);
		g->poisoned = g->entry;
	}
	return NULL;
}

static int
pubsub(const struct chat_resp *g)
{
	return g->kind == CHAT_RESP_SUB || g->kind == CHAT_RESP_PSUB ||
	    (g->kind == CHAT_RESP_SENTINEL && g->subscribed);
}

/* A Sentinel before its subscription: the answer is [ip, port]. */
static int
asking(const struct chat_resp *g)
{
	return g->kind == CHAT_RESP_SENTINEL && !g->subscribed;
}

/* A reply of its own (not an element): is one due? */
static int
due(struct chat_resp *g)
{
	if (pubsub(g) && g->subscribed)
		return 1;	/* messages come unasked */
	if (g->expected == 0)
		return 0;
	g->expected--;
	return 1;
}

/* How deep t is: 0 for a reply, 1 for its elements... */
static int
depth(const redisReadTask *t)
{
	int d = 0;

	for (const redisReadTask *p = t->parent; p; p = p->parent)
		d++;
	return d;
}

/*
 * Where a stream's entries are: XREAD answers [[key, entries]...],
 * XREVRANGE the entries themselves; an entry is [id, [field, value...]].
 */
static int
entries_depth(const struct chat_resp *g)
{
	return g->kind == CHAT_RESP_XREAD ? 2 : 0;
}

/* ---- pub/sub ----------------------------------------------------------- */

/* The kind (first element) of the array t belongs to, or NULL. */
static const redisReply *
kind_of(const redisReadTask *t)
{
	const redisReply *a = t->parent ? t->parent->obj : NULL;

	return a && a->elements > 0 ? a->element[0] : NULL;
}

/* How many elements the array t belongs to has. */
static size_t
elements_of(const redisReadTask *t)
{
	const redisReply *a = t->parent ? t->parent->obj : NULL;

	return a ? a->elements : 0;
}

static int
same(const char *str, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(str, s, len) == 0;
}

/* Is an array of n elements of this kind one g's connection may get? */
static int
kind_ok(const struct chat_resp *g, const char *str, size_t len, size_t n)
{
	if (g->kind != CHAT_RESP_PSUB)
		return n == 3 && (same(str, len, "message") ||
		    same(str, len, "subscribe"));
	return (n == 3 && same(str, len, "psubscribe")) ||
	    (n == 4 && same(str, len, "pmessage"));
}

static int
is(const redisReply *r, const char *s)
{
	return r != NULL && r->type == REDIS_REPLY_STRING &&
	    r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void *
pubsub_string(const redisReadTask *t, char *str, size_t len)
{
	struct chat_resp *g = t->privdata;

	if (t->idx == 0) {
		if (!kind_ok(g, str, len, elements_of(t)))
			return refuse(g, "an array of kind \"%.*s\" and %zu "
			    "elements", (int)(len < 32 ? len : 32), str,
			    elements_of(t));
	} else if (t->idx == 2 && !is(kind_of(t), "message") &&
	    !is(kind_of(t), "pmessage"))
		return refuse(g, "a subscription's array ending in a string");
	return g->dflt->createString(t, str, len);
}

static void *
pubsub_array(const redisReadTask *t, int n)
{
	struct chat_resp *g = t->privdata;

	if (t->parent != NULL)
		return refuse(g, "an array inside an array");
	if (n != 3 && !(n == 4 && g->kind == CHAT_RESP_PSUB))
		return refuse(g, "an array of %d elements (pub/sub has 3%s)", n,
		    g->kind == CHAT_RESP_PSUB ? " or 4" : "");
	(void)due(g);
	return g->dflt->createArray(t, n);
}

/* ---- streams ----------------------------------------------------------- */

/* A string at depth d (not a reply of its own) of a stream's answer. */
static const char *
stream_string(const redisReadTask *t, const char *str, size_t len, int d)
{
	struct chat_resp *g = t->privdata;
	int e = entries_depth(g);

	if (g->kind == CHAT_RESP_XREAD && d == 2 && t->idx == 0) {
		if (len >= sizeof(g->key))
			return "a stream key too long";
		memcpy(g->key, str, len);
		g->key[len] = '\0';
		return NULL;
	}
	if (d == e + 2 && t->idx == 0) {	/* an entry's id */
		if (len >= sizeof(g->id))
			return "an entry id too long";
		memcpy(g->id, str, len);
		g->id[len] = '\0';
		g->entry = 1;
		return NULL;
	}
	if (d == e + 3)				/* a field or a value */
		return NULL;
	return "a string where a stream's answer has none";
}

static const char *
stream_array(const redisReadTask *t, int n)
{
	struct chat_resp *g = t->privdata;
	int d = depth(t), e = entries_depth(g);

	if (d == 0) {
		g->entry = 0;
		if (!due(g))
			return "an array where none was asked for";
		if ((size_t)n > (e ? g->streams : g->count))
			return "an array longer than asked for";
		return NULL;
	}
	if (e && d == 1)
		return n == 2 ? NULL : "a stream that is not [key, entries]";
	if (e && d == 2)
		return t->idx == 1 && (size_t)n <= g->count ? NULL :
		    "more entries than asked for";
	if (d == e + 1) {
		g->entry = 0;
		g->entry_idx = t->idx;
		return n == 2 ? NULL : "an entry that is not [id, fields]";
	}
	if (d == e + 2 && t->idx == 1)
		return n <= CHAT_RESP_FIELDS ? NULL : "an entry of too many "
		    "fields";
	return "an array where a stream's answer has none";
}

/* ---- the reader's functions -------------------------------------------- */

static void *
create_string(const redisReadTask *t, char *str, size_t len)
{
	struct chat_resp *g = t->privdata;
	const char *why;

	if (t->parent == NULL)
		g->entry = 0;
	if (len > g->max_len)
		return refuse(g, "a string of %zu bytes", len);
	if (t->parent == NULL) {
		if (!due(g))
			return refuse(g, "a reply to no command");
		return g->dflt->createString(t, str, len);
	}
	if (t->type != REDIS_REPLY_STRING)
		return refuse(g, "a status or error inside an array");
	if (pubsub(g))
		return pubsub_string(t, str, len);
	if (asking(g))		/* the address's ip or port */
		return g->dflt->createString(t, str, len);
	if ((why = stream_string(t, str, len, depth(t))) != NULL)
		return refuse(g, "%s (\"%.*s\")", why,
		    (int)(len < 32 ? len : 32), str);
	return g->dflt->createString(t, str, len);
}

static void *
create_array(const redisReadTask *t, int n)
{
	struct chat_resp *g = t->privdata;
	const char *why;

	if (asking(g)) {
		if (t->parent != NULL)
			return refuse(g, "an array inside an array");
		if (n > 2)
			return refuse(g, "an address of %d elements", n);
		if (!due(g))
			return refuse(g, "an array where none was asked for");
		return g->dflt->createArray(t, n);
	}
	if (g->kind == CHAT_RESP_CMD || (pubsub(g) && !g->subscribed))
		return refuse(g, "an array of %d elements where none was "
		    "asked for", n);
	if (pubsub(g))
		return pubsub_array(t, n);
	if ((why = stream_array(t, n)) != NULL)
		return refuse(g, "%s (%d elements)", why, n);
	return g->dflt->createArray(t, n);
}

static void *
create_integer(const redisReadTask *t, long long v)
{
	struct chat_resp *g = t->privdata;

	if (t->parent == NULL) {
		g->entry = 0;
		if (!due(g))
			return refuse(g, "a reply to no command");
	} else if (!pubsub(g) || t->idx != 2 ||
	    !(is(kind_of(t), "subscribe") || is(kind_of(t), "psubscribe")))
		return refuse(g, "an integer where a string belongs");
	return g->dflt->createInteger(t, v);
}

static void *
create_nil(const redisReadTask *t)
{
	struct chat_resp *g = t->privdata;

	if (t->parent != NULL)
		return refuse(g, "a nil inside an array");
	g->entry = 0;
	if (!due(g))
		return refuse(g, "a reply to no command");
	return g->dflt->createNil(t);
}

static void
free_object(void *obj)
{
	freeReplyObject(obj);
}

static redisReplyObjectFunctions guarded = {
	create_string, create_array, create_integer, create_nil, free_object
};

void
chat_resp_install(redisReader *r, struct chat_resp *g,
    enum chat_resp_kind kind, size_t max_len)
{
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	g->max_len = max_len;
	g->dflt = r->fn;
	r->fn = &guarded;
	r->privdata = g;
}

void
chat_resp_sent(struct chat_resp *g)
{
	g->expected++;
}

/*
 * hiredis's reader builds each element as soon as its bytes are there,
 * so what it holds unparsed is one element on its way: a bulk string
 * announced longer than max_len is refused at once, without waiting for
 * it; anything longer than the longest element is refused too. (The
 * reader may have taken the element's "$" already, into its task.)
 */
int
chat_resp_too_big(const redisReader *r, struct chat_resp *g)
{
	const char *p = r->buf + r->pos;
	size_t left = r->len - r->pos;
	int bulk = r->ridx >= 0 && r->rstack[r->ridx].type == REDIS_REPLY_STRING;
	char *end;
	unsigned long long n;

	if (left > 0 && *p == '$') {
		p++;
		left--;
		bulk = 1;
	}
	if (bulk && left > 0 && *p >= '0' && *p <= '9' &&
	    memchr(p, '\r', left) != NULL) {
		n = strtoull(p, &end, 10);
		if (*end == '\r' && n > g->max_len) {
			(void)refuse(g, "a string of %llu bytes", n);
			return 1;
		}
	}
	if (left <= g->max_len + 64)
		return 0;
	(void)refuse(g, "an element over %zu bytes", g->max_len + 64);
	return 1;
}
