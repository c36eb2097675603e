/*
 * chat_resp - what the chat plugin lets hiredis build from the broker's
 * bytes. hiredis 0.14's asynchronous layer asserts that a reply on a
 * subscribed connection is a pub/sub array, and that a connection that
 * is not subscribed gets no reply it did not ask for: anything else that
 * answers on the broker's address would abort squalld. And its reader
 * allocates an array of whatever size a "*N" line says. So the reader of
 * each connection gets these reply-object functions, which build only
 * what the plugin can be sent (refusing anything else makes the reader
 * fail, and hiredis closes the connection): on the subscriber, once
 * subscribed, flat arrays of three elements, "subscribe" with a bulk
 * channel and an integer, or "message" with a bulk channel and payload
 * (with patterns: "psubscribe" with a bulk pattern and an integer, and
 * four elements, "pmessage" with a bulk pattern, channel and payload);
 * on either connection, as many single replies as commands were sent;
 * no string over max_len. No squall core: compiled into chat.so and into
 * tests/fuzz/fuzz_chat_resp. Loop thread (one reader per connection).
 */
#ifndef CHAT_RESP_H
#define CHAT_RESP_H

#include <stddef.h>

#include <hiredis/read.h>

struct chat_resp {
	int		 subscriber;	/* the subscription's connection */
	int		 subscribed;	/* SUBSCRIBE sent */
	int		 patterns;	/* PSUBSCRIBE instead */
	unsigned long	 expected;	/* replies to commands sent, to come */
	size_t		 max_len;	/* longest string of a reply */
	char		 why[128];	/* the first reply refused, or "" */
	redisReplyObjectFunctions *dflt;	/* hiredis's own, wrapped */
};

/* Makes r build its replies through g (which must outlive r). */
void	chat_resp_install(redisReader *r, struct chat_resp *g,
	    int subscriber, size_t max_len, int patterns);
/* A command was sent on g's connection: its reply may come. */
void	chat_resp_sent(struct chat_resp *g);
/*
 * Does r hold more unparsed bytes than any reply g allows can be (a
 * bulk string longer than max_len on its way)? Fills g->why when so.
 */
int	chat_resp_too_big(const redisReader *r, struct chat_resp *g);

#endif
