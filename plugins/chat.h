/*
 * chat.h - what the chat plugin's two halves share: the room (chat.c:
 * its members, lines and limits) and its Redis broker (chat_broker.c).
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

struct room {
	struct sq_inst	*inst;
	struct sq_ws	**members;
	size_t		 n, cap;
	struct chat_origins origins;	/* allowed_origins */
	int		 require_origin;
	size_t		 max_message, max_queue;
	long long	 history;	/* lines kept for newcomers */
	long long	 ping_interval;	/* seconds, 0: no pings */
	long long	 ping_timeout;
	struct sq_timer	*pinger;	/* armed while the room has members */
	int		 cancelling;	/* pinger cancelled, callback to come */
	int		 rearm;		/* someone joined meanwhile */
	char		**lines;	/* ring of the last `history` lines */
	size_t		 nlines, first;
	struct broker	*broker;	/* NULL: a room of this process only */
	/* for a reload that changes the broker: see settle() */
	struct room	*next;		/* every room of this module */
	unsigned long long seq;		/* creation order */
	unsigned long long cfg_seq;	/* whose broker settings it has */
	uint64_t	 reloads_ok;	/* when it was created */
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
};

/* ---- chat.c: the room, as its broker reaches it ------------------------ */

void	 chat_room_deliver(struct room *r, const char *line, size_t len);
void	 chat_room_admit(struct room *r, const char *line, size_t len);
void	 chat_room_admit_all(struct room *r);

/* ---- chat_broker.c: the room's Redis broker ---------------------------- */

int	 chat_broker_create(struct room *r, struct sq_opts *opts,
	    struct broker **out);
void	 chat_broker_connect(struct room *r);
void	 chat_broker_close(struct broker *b);
void	 chat_broker_free(struct broker *b);
void	 chat_broker_move(struct room *o, struct room *r);
int	 chat_broker_say(struct room *r, const char *line, size_t len);
int	 chat_broker_idle(const struct broker *b);
int	 chat_broker_up(const struct broker *b);

#endif /* SQUALL_CHAT_H */
