/*
 * chat_broker.h - what the broker's two files share: its connections,
 * their state and their up and down (chat_broker.c), and the stream
 * mode's reading and writing (chat_stream.c). Private to the chat
 * plugin; loop thread.
 */
#ifndef SQUALL_CHAT_BROKER_H
#define SQUALL_CHAT_BROKER_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "chat.h"
#include "chat_resp.h"

/* The first wait before connecting again, doubled up to 5 s. */
#define RETRY_MIN_MS	100
/* The most a slow broker may hold of ours. */
#define PUB_MAX_PENDING	1000
#define PUB_MAX_BYTES	(1 << 20)
/* How long lines wait for a stream's lost broker before the room is local. */
#define CHAT_HOLD_MS	5000

/*
 * The Redis broker of a route: two connections, the subscriber (with
 * broker_mode = stream, the reader: a blocking XREAD) and the publisher
 * (the stream's commands). It is up when the subscription is confirmed
 * (the reader knows its client id) and the publisher connected; only
 * then are lines published rather than delivered locally. A line is
 * either published or delivered locally, never both, so nothing is
 * delivered twice.
 */
struct broker {
	char			*url;		/* as configured, for the log */
	char			*host;		/* or NULL for unix */
	char			*unix_path;
	int			 port;
	char			*password;	/* or NULL */
	char			*channel;	/* or the streams' key prefix */
	/* sentinel://: the master's address comes from a Sentinel */
	char			*master;	/* its name, or NULL */
	char			**sentinels;	/* "host:port" */
	size_t			 nsentinels, sentinel_i; /* the one to ask */
	int			 resolved;	/* host and port are the master's */
	redisAsyncContext	*sen;		/* asking, then watching */
	int			 stream;	/* broker_mode = stream */
	long long		 history_max;	/* a stream's MAXLEN ~ */
	long long		 recover_window; /* seconds */
	long long		 stream_ttl;	/* seconds, 0: kept */
	redisAsyncContext	*sub, *pub;
	int			 sub_ready, pub_ready;
	int			 up;		/* both ready */
	int			 ever_up;	/* for the log: lost or never */
	int			 down_logged;	/* loss logged, return not yet */
	size_t			 pending;	/* PUBLISH/XADD replies to come */
	size_t			 pending_bytes;
	unsigned long long	 dropped;	/* lines a slow broker cost */
	int			 drop_logged;
	uint64_t		 backoff_ms;
	struct sq_timer		*retry;		/* pending reconnection */
	int			 idle;		/* down, waiting for a member */
	struct sq_timer		*watch;		/* is the attempt up in time? */
	uint64_t		 attempt_ms;	/* when it began */
	unsigned long long	 invalid;	/* lines from Redis refused */
	int			 invalid_logged; /* since the last valid one */
	char			 refused[160];	/* why a reply closed it */
	/* broker_mode = stream (chat_stream.c) */
	long long		 reader_id;	/* CLIENT ID; -1: polls */
	int			 reading;	/* an XREAD is out */
	int			 unblocking;	/* CLIENT UNBLOCK sent for it */
	int			 careful;	/* reads left of one entry a
						 * stream, to find a refused one */
	size_t			 checking;	/* TYPE answers awaited */
	int			 readonly;	/* writes refused as a replica's,
						 * none taken since */
	const void		*readonly_ac;	/* the connection a READONLY
						 * came on: the XADDs behind it
						 * were refused too */
	unsigned long long	 refused_adds;	/* XADDs Redis refused */
	int			 add_logged;
	struct held		*held, **held_tail; /* lines said while down */
	size_t			 nheld, held_bytes;
	int			 held_logged;	/* full, said once */
	uint64_t		 down_ms;	/* when it was lost */
	int			 hostile;	/* it answered what Redis never does */
};

/* chat_broker.c, for chat_stream.c and chat_sentinel.c */
redisAsyncContext *chat_broker_open(struct chat *ch, const char *host,
	    int port, enum chat_resp_kind kind, char *err, size_t errlen);
uint64_t chat_now_ms(void);	/* monotonic */
struct chat *chat_broker_owner(const redisAsyncContext *ac);
struct chat_resp *chat_broker_guard(const redisAsyncContext *ac);
void	 chat_broker_down(struct chat *ch, const redisAsyncContext *dying,
	    const char *why);
void	 chat_broker_ready(struct chat *ch);
void	 chat_broker_line(struct chat *ch, struct room *r,
	    const struct chat_sid *id, const char *line, size_t len);
void	 chat_broker_invalid(struct chat *ch, size_t len, const char *why);

/* chat_pubsub.c, chat_stream.c and chat_sentinel.c, for chat_broker.c */
int	 chat_sentinel_parse(struct broker *b, const char *url);
void	 chat_sentinel_ask(struct chat *ch);
void	 chat_sentinel_free(struct broker *b);
void	 chat_pubsub_start(struct chat *ch);
int	 chat_pubsub_publish(struct room *r, const char *line, size_t len);
void	 chat_stream_start(struct chat *ch);
void	 chat_stream_resume(struct chat *ch);
void	 chat_stream_down(struct chat *ch);
int	 chat_stream_add(struct room *r, const char *line, size_t len);
int	 chat_stream_add_to(struct chat *ch, const char *name, struct room *r,
	    const char *line, size_t len);
/* chat_hold.c */
int	 chat_hold_line(struct room *r, const char *line, size_t len);
void	 chat_hold_send(struct chat *ch);
void	 chat_hold_say(struct chat *ch);
void	 chat_hold_free(struct broker *b);

#endif /* SQUALL_CHAT_BROKER_H */
