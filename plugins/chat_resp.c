/*
 * chat_resp - the broker's replies, refused before hiredis's
 * asynchronous layer sees a shape it would assert on; see chat_resp.h.
 * A create function that returns NULL makes the reader fail ("Out of
 * memory" to hiredis), so each refusal first says why in g->why.
 */
#include <stdarg.h>
#include <stdio.h>
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
	}
	return NULL;
}

/* A reply of its own (not an element): is one due? */
static int
due(struct chat_resp *g)
{
	if (g->subscriber && g->subscribed)
		return 1;	/* messages come unasked */
	if (g->expected == 0)
		return 0;
	g->expected--;
	return 1;
}

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
	if (!g->patterns)
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
create_string(const redisReadTask *t, char *str, size_t len)
{
	struct chat_resp *g = t->privdata;

	if (len > g->max_len)
		return refuse(g, "a string of %zu bytes", len);
	if (t->parent == NULL) {
		if (!due(g))
			return refuse(g, "a reply to no command");
	} else if (t->type != REDIS_REPLY_STRING)
		return refuse(g, "a status or error inside an array");
	else if (t->idx == 0) {
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
create_array(const redisReadTask *t, int n)
{
	struct chat_resp *g = t->privdata;

	if (t->parent != NULL)
		return refuse(g, "an array inside an array");
	if (!g->subscriber || !g->subscribed)
		return refuse(g, "an array of %d elements where none was "
		    "asked for", n);
	if (n != 3 && !(n == 4 && g->patterns))
		return refuse(g, "an array of %d elements (pub/sub has 3%s)", n,
		    g->patterns ? " or 4" : "");
	(void)due(g);
	return g->dflt->createArray(t, n);
}

static void *
create_integer(const redisReadTask *t, long long v)
{
	struct chat_resp *g = t->privdata;

	if (t->parent == NULL) {
		if (!due(g))
			return refuse(g, "a reply to no command");
	} else if (t->idx != 2 || !(is(kind_of(t), "subscribe") ||
	    is(kind_of(t), "psubscribe")))
		return refuse(g, "an integer where a string belongs");
	return g->dflt->createInteger(t, v);
}

static void *
create_nil(const redisReadTask *t)
{
	struct chat_resp *g = t->privdata;

	if (t->parent != NULL)
		return refuse(g, "a nil inside an array");
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
chat_resp_install(redisReader *r, struct chat_resp *g, int subscriber,
    size_t max_len, int patterns)
{
	memset(g, 0, sizeof(*g));
	g->subscriber = subscriber;
	g->patterns = patterns;
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

int
chat_resp_too_big(const redisReader *r, struct chat_resp *g)
{
	/* three strings (four with patterns) and their framing */
	size_t most = (g->patterns ? 4 : 3) * g->max_len + 160;

	if (r->len - r->pos <= most)
		return 0;
	(void)refuse(g, "a reply over %zu bytes", most);
	return 1;
}
