/*
 * chat - the seed's chat room as a Kore 4.1 module, for bench/run's ws
 * section: the lines are squall's chat plugin's (and the seed's), byte
 * for byte, in local time:
 *   [IP] joined at YYYY-MM-DD HH:MM:SS        to everyone, the newcomer too
 *   [IP] at YYYY-MM-DD HH:MM:SS: MESSAGE      to everyone, the sender too
 *   [IP] left at YYYY-MM-DD HH:MM:SS          to those who remain
 * sent with kore_websocket_broadcast (every WebSocket of the worker: one
 * room). No Origin check. Built with kodev (see bench/README.md).
 *
 * Rooms, for bench/c1m.sh: a WebSocket on /rooms/NAME (route
 * ^/rooms/[A-Za-z0-9._-]+$) is in the room NAME, made at its first join
 * and freed with its last member; its lines go to that room's members
 * only, with kore_websocket_send to each.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kore/kore.h>
#include <kore/http.h>

void	kore_parent_configure(int, char **);
int	page(struct http_request *);
void	ws_connect(struct connection *);
void	ws_message(struct connection *, u_int8_t, void *, size_t);
void	ws_disconnect(struct connection *);

struct room;

/* A member of a room: its connection's hdlr_extra (Kore frees it). */
struct member {
	TAILQ_ENTRY(member)	 link;
	struct room		*room;
	struct connection	*c;
};

struct room {
	struct room		*next;		/* in its bucket */
	TAILQ_HEAD(, member)	 members;
	char			 name[65];
};

#define BUCKETS		4096
static struct room	*rooms[BUCKETS];
/* The path of the upgrade under way: ws_connect runs inside it. */
static const char	*joining;

static struct room **
room_slot(const char *name)
{
	unsigned int h = 5381;
	struct room **p;

	for (const char *s = name; *s; s++)
		h = h * 33 + (unsigned char)*s;
	for (p = &rooms[h % BUCKETS]; *p; p = &(*p)->next)
		if (strcmp((*p)->name, name) == 0)
			break;
	return p;
}

static void
client_ip(struct connection *c, char *ip, size_t len)
{
	const void *a = c->family == AF_INET6 ?
	    (const void *)&c->addr.ipv6.sin6_addr :
	    (const void *)&c->addr.ipv4.sin_addr;

	if (c->family == AF_UNIX ||
	    inet_ntop(c->family, a, ip, (socklen_t)len) == NULL)
		(void)snprintf(ip, len, "unknown");
}

/* Broadcasts "[IP]" mid "WHEN" (": " msg when msg): src NULL is everyone. */
static void
say(struct connection *c, struct connection *src, const char *mid,
    const void *msg, size_t msglen)
{
	struct kore_buf	*buf;
	char		 ip[INET6_ADDRSTRLEN], when[32];
	struct tm	 tm;
	time_t		 now;

	now = time(NULL);
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	client_ip(c, ip, sizeof(ip));
	buf = kore_buf_alloc(64 + msglen);
	kore_buf_appendf(buf, "[%s] %s %s", ip, mid, when);
	if (msg != NULL) {
		kore_buf_append(buf, ": ", 2);
		kore_buf_append(buf, msg, msglen);
	}
	if (c->hdlr_extra != NULL) {
		struct member *m, *me = c->hdlr_extra;

		TAILQ_FOREACH(m, &me->room->members, link)
			if (m->c != src)
				kore_websocket_send(m->c, WEBSOCKET_OP_TEXT,
				    buf->data, buf->offset);
	} else
		kore_websocket_broadcast(src, WEBSOCKET_OP_TEXT, buf->data,
		    buf->offset, WEBSOCKET_BROADCAST_LOCAL);
	kore_buf_free(buf);
}

/*
 * Read the time zone now, in the parent: the workers inherit it, and
 * localtime_r then never looks at /etc/localtime, which the workers'
 * seccomp filter would not allow (the worker dies on its first line).
 */
void
kore_parent_configure(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	tzset();
}

int
page(struct http_request *req)
{
	joining = req->path;
	kore_websocket_handshake(req, "ws_connect", "ws_message",
	    "ws_disconnect");
	joining = NULL;
	return (KORE_RESULT_OK);
}

void
ws_connect(struct connection *c)
{
	if (joining != NULL && strncmp(joining, "/rooms/", 7) == 0 &&
	    strlen(joining + 7) < sizeof(((struct room *)0)->name)) {
		struct room **p = room_slot(joining + 7), *r = *p;
		struct member *m;

		if (r == NULL) {
			r = kore_calloc(1, sizeof(*r));
			TAILQ_INIT(&r->members);
			strcpy(r->name, joining + 7);
			*p = r;
		}
		m = kore_calloc(1, sizeof(*m));
		m->room = r;
		m->c = c;
		TAILQ_INSERT_TAIL(&r->members, m, link);
		c->hdlr_extra = m;
	}
	say(c, NULL, "joined at", NULL, 0);
}

void
ws_message(struct connection *c, u_int8_t op, void *data, size_t len)
{
	if (op != WEBSOCKET_OP_TEXT) {
		kore_connection_disconnect(c);
		return;
	}
	/* the seed's "%s" of the message: it ends at its first NUL */
	say(c, NULL, "at", data, strnlen(data, len));
}

void
ws_disconnect(struct connection *c)
{
	struct member *m = c->hdlr_extra;
	struct room **p;

	say(c, c, "left at", NULL, 0);
	if (m == NULL)
		return;
	TAILQ_REMOVE(&m->room->members, m, link);
	if (TAILQ_EMPTY(&m->room->members)) {
		p = room_slot(m->room->name);
		*p = m->room->next;
		kore_free(m->room);
	}
	/* m itself: Kore frees hdlr_extra with the connection */
}
