/*
 * fuzz_chat_resp - what the chat plugin lets hiredis build from a
 * broker's bytes (plugins/chat_resp.c), the reply path of its Redis
 * connections.
 *
 * Input: a flags byte (bits 0-2: the connection's kind, modulo 6, in
 * the order of enum chat_resp_kind; bit 3: subscribed; bits 4-6: how
 * many commands were sent), then the bytes the "broker" sends, fed to a
 * hiredis reader in two parts (the second byte says where to cut).
 * Checks what hiredis 0.14's asynchronous layer asserts, so that no
 * input can abort squalld, and the shapes the plugin reads without
 * looking twice: on a subscribed connection every array is a flat
 * "message" or "subscribe" reply of three elements with the kinds of
 * element it expects ("psubscribe" of three, "pmessage" of four, with
 * patterns); a stream's answers are XREAD's or XREVRANGE's, within the
 * counts asked; a Sentinel's address two strings at most; elsewhere no
 * array and no more replies than commands;
 * no string over max_len; and a reader that refused a reply says why.
 */
#include "config.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz.h"
#include "../../plugins/chat_resp.h"

#define MAX_LEN	64
#define STREAMS	2
#define COUNT	3

static int
is(const redisReply *r, const char *s)
{
	return r->type == REDIS_REPLY_STRING && r->len == strlen(s) &&
	    memcmp(r->str, s, r->len) == 0;
}

static int
short_string(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING && r->len <= MAX_LEN;
}

/* An entry: [id, [field, value...]], all short strings. */
static void
check_entry(const redisReply *e)
{
	const redisReply *f;

	FUZZ_CHECK(e->type == REDIS_REPLY_ARRAY && e->elements == 2);
	FUZZ_CHECK(short_string(e->element[0]));
	f = e->element[1];
	FUZZ_CHECK(f->type == REDIS_REPLY_ARRAY &&
	    f->elements <= CHAT_RESP_FIELDS);
	for (size_t i = 0; i < f->elements; i++)
		FUZZ_CHECK(short_string(f->element[i]));
}

static void
check_entries(const redisReply *a)
{
	FUZZ_CHECK(a->type == REDIS_REPLY_ARRAY && a->elements <= COUNT);
	for (size_t i = 0; i < a->elements; i++)
		check_entry(a->element[i]);
}

static void
check_pubsub(const redisReply *rep, int patterns)
{
	int message;

	if (patterns) {
		message = is(rep->element[0], "pmessage");
		FUZZ_CHECK(rep->elements == (message ? 4 : 3));
		FUZZ_CHECK(message || is(rep->element[0], "psubscribe"));
	} else {
		message = is(rep->element[0], "message");
		FUZZ_CHECK(rep->elements == 3);
		FUZZ_CHECK(message || is(rep->element[0], "subscribe"));
	}
	for (size_t i = 1; i < rep->elements - 1; i++)
		FUZZ_CHECK(short_string(rep->element[i]));
	if (message)
		FUZZ_CHECK(short_string(rep->element[rep->elements - 1]));
	else
		FUZZ_CHECK(rep->element[2]->type == REDIS_REPLY_INTEGER);
}

static void
check_reply(const redisReply *rep, enum chat_resp_kind kind, int subscribed)
{
	if (rep->type == REDIS_REPLY_STRING ||
	    rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR)
		FUZZ_CHECK(rep->len <= MAX_LEN);
	if (rep->type != REDIS_REPLY_ARRAY)
		return;
	switch (kind) {
	case CHAT_RESP_CMD:
		FUZZ_CHECK(0);
		break;
	case CHAT_RESP_SUB:
	case CHAT_RESP_PSUB:
		FUZZ_CHECK(subscribed);
		check_pubsub(rep, kind == CHAT_RESP_PSUB);
		break;
	case CHAT_RESP_XREAD:
		FUZZ_CHECK(rep->elements <= STREAMS);
		for (size_t i = 0; i < rep->elements; i++) {
			const redisReply *st = rep->element[i];

			FUZZ_CHECK(st->type == REDIS_REPLY_ARRAY &&
			    st->elements == 2);
			FUZZ_CHECK(short_string(st->element[0]));
			check_entries(st->element[1]);
		}
		break;
	case CHAT_RESP_XCMD:
		check_entries(rep);
		break;
	case CHAT_RESP_SENTINEL:
		if (subscribed) {
			check_pubsub(rep, 0);
			break;
		}
		FUZZ_CHECK(rep->elements <= 2);
		for (size_t i = 0; i < rep->elements; i++)
			FUZZ_CHECK(short_string(rep->element[i]));
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_resp g;
	redisReader *r;
	void *reply;
	size_t cut;
	unsigned long sent, replies = 0;
	enum chat_resp_kind kind;
	int subscribed, status = REDIS_OK;

	if (size < 2)
		return 0;
	kind = (enum chat_resp_kind)((data[0] & 7) % 6);
	subscribed = (data[0] >> 3) & 1;
	sent = (data[0] >> 4) & 7;
	cut = data[1] <= size - 2 ? data[1] : size - 2;
	data += 2;
	size -= 2;
	FUZZ_CHECK((r = redisReaderCreate()) != NULL);
	chat_resp_install(r, &g, kind, MAX_LEN);
	g.subscribed = subscribed;
	g.streams = STREAMS;
	g.count = COUNT;
	for (unsigned long i = 0; i < sent; i++)
		chat_resp_sent(&g);
	for (int part = 0; part < 2 && status == REDIS_OK; part++) {
		const char *p = (const char *)data + (part ? cut : 0);
		size_t n = part ? size - cut : cut;

		if (n > 0 && redisReaderFeed(r, p, n) != REDIS_OK)
			break;
		(void)chat_resp_too_big(r, &g);
		while ((status = redisReaderGetReply(r, &reply)) == REDIS_OK &&
		    reply != NULL) {
			check_reply(reply, kind, subscribed);
			replies++;
			freeReplyObject(reply);
		}
	}
	if (!(subscribed && (kind == CHAT_RESP_SUB || kind == CHAT_RESP_PSUB ||
	    kind == CHAT_RESP_SENTINEL)))
		FUZZ_CHECK(replies <= sent);
	if (status != REDIS_OK && r->err == REDIS_ERR_OOM)
		FUZZ_CHECK(g.why[0] != '\0');
	redisReaderFree(r);
	return 0;
}
