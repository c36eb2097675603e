/*
 * chat.h - what the chat plugin's parts share: the route and its rooms
 * (chat.c: the rooms, options and callbacks; chat_room.c: members, those
 * joining, lines, pings) and the route's Redis broker
 * (chat_broker.c: its connections; chat_stream.c: a room in a Redis
 * stream).
 * Private to the plugin; loop thread, as every plugin callback.
 */
#ifndef SQUALL_CHAT_H
#define SQUALL_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include <squall/plugin.h>

#include "chat_line.h"

/* What a line adds to a message: "[IPv6] at YYYY-MM-DD HH:MM:SS: " */
#define LINE_OVERHEAD	96

/* The subprotocol whose frames carry each line's stream id. */
#define CHAT_PROTOCOL	"squall.chat.v1"

struct broker;
struct chat;
struct room;

/* A line with its stream id (none: 0-0). */
struct said {
	struct chat_sid	 id;
	char		*line;
	size_t		 len;
};

/* Lines, oldest first. */
struct lines {
	struct said	*v;
	size_t		 n, cap;
	size_t		 bytes;
};

/*
 * A client joining a room on the broker: a member once its joined line
 * has come back, so that nothing said before it, in the broker's order,
 * reaches it (see chat_room_admit). With broker_mode = stream it also
 * waits for its past (history, or the lines it missed) to be read; the
 * lines the room gets meanwhile wait in `meanwhile`. Owned by its room;
 * a joiner whose client left while Redis had its past to answer stays,
 * without room nor client, until the answer frees it.
 */
struct joiner {
	struct room	*room;		/* NULL: orphan, see above */
	struct sq_ws	*ws;
	char		*line;		/* its joined line */
	size_t		 len;
	int		 back;		/* its line came back */
	size_t		 own_at;	/* where, in meanwhile */
	int		 stream;	/* joined a room on a stream */
	int		 dead;		/* closed while waiting */
	int		 asked;		/* its past was asked, no answer yet */
	int		 recover;	/* ?last_id= was given */
	struct chat_sid	 last;		/* that id */
	struct chat_sid	 top;		/* the stream's last, at the asking */
	struct lines	 past;		/* the answer: history, or the gap */
	struct lines	 meanwhile;	/* lines the room got since */
};

/*
 * One room: its members, those joining, its history. A route without
 * "*" has one, which lives as long as the route's instance; a route
 * ending in "*" has one per path segment after its prefix, made at the
 * first join and freed with its last member (chat.c).
 */
struct room {
	struct chat	*chat;
	char		*name;		/* "" for a route's only room */
	struct sq_ws	**members;	/* those of plain lines */
	size_t		 n, cap;
	struct sq_ws	**tagged;	/* those of CHAT_PROTOCOL */
	size_t		 ntagged, captagged;
	struct sq_timer	*pinger;	/* armed while the room has members */
	int		 cancelling;	/* pinger cancelled, callback to come */
	int		 rearm;		/* someone joined meanwhile */
	char		**lines;	/* ring of the last `history` lines */
	size_t		 nlines, first;
	struct joiner	**joining;	/* in the order they joined */
	size_t		 njoining, capjoining;
	/* broker_mode = stream (chat_stream.c) */
	struct chat_sid	 pos;		/* the last entry read */
	int		 pos_known;	/* read from pos on; else being set */
	int		 loading;	/* pos asked of Redis */
	int		 broken;	/* Redis refuses its stream: local */
	struct lines	 unsent;	/* said while pos is asked: they go
					 * after its answer (chat_stream.c) */
	struct chat_sid	 floor;		/* the past is read after it */
	uint64_t	 ttl_due;	/* when the stream's TTL is renewed */
	struct room	*hnext;		/* in the chat's table */
};

/* A chat route (one instance): its options, its rooms, its broker. */
struct chat {
	struct sq_inst	*inst;
	struct chat_origins origins;	/* allowed_origins */
	int		 require_origin;
	size_t		 max_message, max_queue;
	long long	 history;	/* lines kept for newcomers */
	long long	 ping_interval;	/* seconds, 0: no pings */
	long long	 ping_timeout;
	int		 per_path;	/* the route ends in "*": many rooms */
	long long	 max_rooms;
	struct room	*only;		/* the room of a route without "*" */
	struct room	**table;	/* per_path: rooms by name */
	size_t		 nbuckets, nrooms;
	int		 full_logged;	/* max_rooms reached, said once */
	size_t		 members;	/* in all its rooms, joining too */
	/* recoveries (CHAT_PROTOCOL with ?last_id=): made, refused, lines */
	unsigned long long recovered, unrecovered, replayed;
	struct broker	*broker;	/* NULL: rooms of this process only */
	/* for a reload that changes the broker: see settle() */
	struct chat	*next;		/* every chat of this module */
	unsigned long long seq;		/* creation order */
	unsigned long long cfg_seq;	/* whose broker settings it has */
	uint64_t	 reloads_ok;	/* when it was created */
};

/* ---- chat.c: the rooms of a route ------------------------------------- */

/* The room named name (NULL: the route's only room), if it exists. */
struct room *chat_room_find(struct chat *c, const char *name, size_t len);
void	 chat_room_release(struct room *r);
void	 chat_set_counts(struct chat *c);
void	 chat_rooms_each(struct chat *c, void (*fn)(struct room *, void *),
	    void *arg);

/* ---- chat_room.c: members, joiners, lines ------------------------------- */

void	 chat_room_deliver(struct room *r, const struct chat_sid *id,
	    const char *line, size_t len);
void	 chat_room_hear(struct room *r, const struct chat_sid *id,
	    const char *line, size_t len);
void	 chat_admit_all(struct chat *c);
int	 chat_member_reserve(struct room *r, struct sq_ws *ws);
int	 chat_member_add(struct room *r, struct sq_ws *ws);
void	 chat_member_remove(struct room *r, struct sq_ws *ws);
struct joiner *chat_joiner_add(struct room *r, struct sq_ws *ws,
	    const char *line, size_t len);
void	 chat_joiner_unlist(struct joiner *j);
void	 chat_joiner_ready(struct joiner *j);
void	 chat_room_caught_up(struct room *r);
void	 chat_joiner_free(struct joiner *j);
void	 chat_send_line(struct sq_ws *ws, const struct chat_sid *id,
	    const char *line, size_t len);
void	 chat_arm_pinger(struct room *r);
int	 chat_lines_add(struct lines *l, const struct chat_sid *id,
	    const char *line, size_t len);
void	 chat_lines_clear(struct lines *l);

/* ---- chat_broker.c: the route's Redis broker ---------------------------- */

int	 chat_broker_create(struct chat *c, struct sq_opts *opts,
	    struct broker **out);
void	 chat_broker_connect(struct chat *c);
void	 chat_broker_close(struct broker *b);
void	 chat_broker_free(struct broker *b);
void	 chat_broker_move(struct chat *o, struct chat *c);
int	 chat_broker_say(struct room *r, const char *line, size_t len);
#define CHAT_SAID_HERE	0	/* chat_broker_say: delivered to local members */
#define CHAT_DROPPED	(-1)	/* not said: the broker is too slow */
int	 chat_broker_idle(const struct broker *b);
int	 chat_broker_up(const struct broker *b);
int	 chat_broker_stream(const struct broker *b);
long long chat_broker_recover_window(const struct broker *b);
unsigned long long chat_broker_invalid_count(const struct broker *b);

/* ---- chat_stream.c: broker_mode = stream ------------------------------- */

void	 chat_stream_room(struct room *r);
int	 chat_stream_past(struct joiner *j);
void	 chat_stream_room_gone(struct room *r, void *unused);

#endif /* SQUALL_CHAT_H */
