/*
 * chat_resp - what the chat plugin lets hiredis build from the broker's
 * bytes. hiredis 0.14's asynchronous layer asserts that a reply on a
 * subscribed connection is a pub/sub array, and that a connection that
 * is not subscribed gets no reply it did not ask for: anything else that
 * answers on the broker's address would abort squalld. And its reader
 * allocates an array of whatever size a "*N" line says. So the reader of
 * each connection gets these reply-object functions, which build only
 * what the plugin can be sent (refusing anything else makes the reader
 * fail, and hiredis closes the connection):
 *  - on a pub/sub subscriber, once subscribed, flat arrays of three
 *    elements, "subscribe" with a bulk channel and an integer, or
 *    "message" with a bulk channel and payload (with patterns:
 *    "psubscribe" with a bulk pattern and an integer, and four elements,
 *    "pmessage" with a bulk pattern, channel and payload);
 *  - on a stream reader, XREAD's answer: at most `streams` arrays of a
 *    bulk key and at most `count` entries, each a bulk id and at most
 *    CHAT_RESP_FIELDS bulk strings;
 *  - on a stream's command connection, XREVRANGE's: at most `count` such
 *    entries;
 *  - on a Sentinel, a master's address (an array of two strings, or nil),
 *    then, once subscribed, what a subscriber gets;
 *  - on any connection, as many single replies as commands were sent;
 *    no string over max_len.
 * A refusal inside a stream entry names the entry (poisoned, key, id),
 * so that the plugin can step over it rather than meet it again on every
 * reconnection. No squall core: compiled into chat.so and into
 * tests/fuzz/fuzz_chat_resp. Loop thread (one reader per connection).
 */
#ifndef CHAT_RESP_H
#define CHAT_RESP_H

#include <stddef.h>

#include <hiredis/read.h>

#define CHAT_RESP_FIELDS	16	/* field-value strings of an entry */

enum chat_resp_kind {
	CHAT_RESP_CMD,		/* PUBLISH, AUTH: single replies */
	CHAT_RESP_SUB,		/* SUBSCRIBE */
	CHAT_RESP_PSUB,		/* PSUBSCRIBE */
	CHAT_RESP_XREAD,	/* CLIENT ID, XREAD */
	CHAT_RESP_XCMD,		/* XADD, XREVRANGE, PEXPIRE, CLIENT UNBLOCK */
	CHAT_RESP_SENTINEL	/* get-master-addr-by-name, then SUBSCRIBE */
};

/* The longest stream key the chat names (its channel, ":" and a room). */
#define CHAT_KEY_MAX	512

struct chat_resp {
	enum chat_resp_kind kind;
	int		 subscribed;	/* SUBSCRIBE sent */
	unsigned long	 expected;	/* replies to commands sent, to come */
	size_t		 max_len;	/* longest string of a reply */
	size_t		 streams;	/* XREAD: keys asked */
	size_t		 count;		/* most entries asked of one stream */
	char		 key[CHAT_KEY_MAX]; /* XREAD: the stream being read */
	char		 id[48];	/* the entry being read */
	int		 entry;		/* inside the entry id names */
	int		 entry_idx;	/* which of its stream's, from 0 */
	int		 poisoned;	/* the refusal was inside that entry */
	char		 why[128];	/* the first reply refused, or "" */
	redisReplyObjectFunctions *dflt;	/* hiredis's own, wrapped */
};

/* Makes r build its replies through g (which must outlive r). */
void	chat_resp_install(redisReader *r, struct chat_resp *g,
	    enum chat_resp_kind kind, size_t max_len);
/* A command was sent on g's connection: its reply may come. */
void	chat_resp_sent(struct chat_resp *g);
/*
 * Does r hold more unparsed bytes than any reply g allows can be (a
 * bulk string longer than max_len on its way)? Fills g->why when so.
 */
int	chat_resp_too_big(const redisReader *r, struct chat_resp *g);

#endif
