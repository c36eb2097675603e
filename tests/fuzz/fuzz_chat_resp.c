/*
 * fuzz_chat_resp - what the chat plugin lets hiredis build from a
 * broker's bytes (plugins/chat_resp.c), the reply path of its Redis
 * connections.
 *
 * Input: a flags byte (bit 0: the subscriber's connection, bit 1:
 * subscribed, bits 2-4: how many commands were sent, bit 5: a pattern
 * subscription, as a route of rooms makes), then the bytes the
 * "broker" sends, fed to a hiredis reader in two parts (the second byte
 * says where to cut). Checks what hiredis 0.14's asynchronous layer
 * asserts, so that no input can abort squalld: on a subscribed
 * connection every array is a flat "message" or "subscribe" reply of
 * three elements with the kinds of element it expects ("psubscribe" of
 * three, "pmessage" of four, with patterns); elsewhere no
 * array and no more replies than commands; no string over max_len; and
 * a reader that refused a reply says why.
 */
#include "config.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "fuzz.h"
#include "../../plugins/chat_resp.h"

#define MAX_LEN	64

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

static void
check_reply(const redisReply *rep, int subscriber, int subscribed,
    int patterns)
{
	int message;

	if (rep->type == REDIS_REPLY_STRING ||
	    rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR)
		FUZZ_CHECK(rep->len <= MAX_LEN);
	if (rep->type != REDIS_REPLY_ARRAY)
		return;
	FUZZ_CHECK(subscriber && subscribed);
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_resp g;
	redisReader *r;
	void *reply;
	size_t cut;
	unsigned long sent, replies = 0;
	int subscriber, subscribed, patterns, status = REDIS_OK;

	if (size < 2)
		return 0;
	subscriber = data[0] & 1;
	subscribed = (data[0] >> 1) & 1;
	sent = (data[0] >> 2) & 7;
	patterns = (data[0] >> 5) & 1;
	cut = data[1] <= size - 2 ? data[1] : size - 2;
	data += 2;
	size -= 2;
	FUZZ_CHECK((r = redisReaderCreate()) != NULL);
	chat_resp_install(r, &g, subscriber, MAX_LEN, patterns);
	g.subscribed = subscribed;
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
			check_reply(reply, subscriber, subscribed, patterns);
			replies++;
			freeReplyObject(reply);
		}
	}
	if (!(subscriber && subscribed))
		FUZZ_CHECK(replies <= sent);
	if (status != REDIS_OK && r->err == REDIS_ERR_OOM)
		FUZZ_CHECK(g.why[0] != '\0');
	redisReaderFree(r);
	return 0;
}
