/*
 * chat.h - what the chat plugin's two halves share: the route and its
 * rooms (chat.c: members, lines and limits) and the route's Redis broker
 * (chat_broker.c).
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

struct broker;
struct chat;

/*
 * One room: its members, those joining, its history. A route without
 * "*" has one, which lives as long as the route's instance; a route
 * ending in "*" has one per path segment after its prefix, made at the
 * first join and freed with its last member (chat.c).
 */
struct room {
	struct chat	*chat;
	char		*name;		/* "" for a route's only room */
	struct sq_ws	**members;
	size_t		 n, cap;
	struct sq_timer	*pinger;	/* armed while the room has members */
	int		 cancelling;	/* pinger cancelled, callback to come */
	int		 rearm;		/* someone joined meanwhile */
	char		**lines;	/* ring of the last `history` lines */
	size_t		 nlines, first;
	/*
	 * Members whose joined line is on its way through the broker: they
	 * become members when it comes back (see admit), so that nothing
	 * said before it, in the broker's order, reaches them.
	 */
	struct joining {
		struct sq_ws	*ws;
		char		*line;
		size_t		 len;
	}		*joining;
	size_t		 njoining, capjoining;
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
	struct broker	*broker;	/* NULL: rooms of this process only */
	/* for a reload that changes the broker: see settle() */
	struct chat	*next;		/* every chat of this module */
	unsigned long long seq;		/* creation order */
	unsigned long long cfg_seq;	/* whose broker settings it has */
	uint64_t	 reloads_ok;	/* when it was created */
};

/* ---- chat.c: the rooms, as the broker reaches them --------------------- */

/* The room named name (NULL: the route's only room), if it exists. */
struct room *chat_room_find(struct chat *c, const char *name, size_t len);
void	 chat_room_deliver(struct room *r, const char *line, size_t len);
void	 chat_room_admit(struct room *r, const char *line, size_t len);
void	 chat_admit_all(struct chat *c);

/* ---- chat_broker.c: the route's Redis broker ---------------------------- */

int	 chat_broker_create(struct chat *c, struct sq_opts *opts,
	    struct broker **out);
void	 chat_broker_connect(struct chat *c);
void	 chat_broker_close(struct broker *b);
void	 chat_broker_free(struct broker *b);
void	 chat_broker_move(struct chat *o, struct chat *c);
int	 chat_broker_say(struct room *r, const char *line, size_t len);
int	 chat_broker_idle(const struct broker *b);
int	 chat_broker_up(const struct broker *b);

#endif /* SQUALL_CHAT_H */
