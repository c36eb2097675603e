/*
 * ws_bridge.h - what the two halves of the WebSocket bridge share: the
 * messages, commands and events that cross between the loop thread
 * (ws_loop.c) and the libwebsockets service thread (ws_lws.c), the
 * queues that carry them (ws_queue.c), and what each half asks of the
 * other; and the compression the service thread does (ws_deflate.c).
 * Private to those files; docs/internals/websocket-bridge.md
 * explains the design.
 */
#ifndef SQUALL_WS_BRIDGE_H
#define SQUALL_WS_BRIDGE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event;
struct z_stream_s;

/*
 * A message shared by its recipients; the last one frees it. The service
 * thread may add its compressed form for links without context takeover
 * (zdata, compressed with a window of zbits), made by the first that
 * sends it and freed with the message.
 */
struct wbuf {
	atomic_uint	 refs;
	size_t		 len;
	int		 binary;
	int		 zbits;
	unsigned char	*zdata;
	size_t		 zlen;
	unsigned char	 data[];
};

enum cmd_kind { C_ADOPT, C_SEND, C_CLOSE, C_PING, C_STOP };

struct cmd {
	enum cmd_kind	 kind;
	uint64_t	 id;		/* not C_SEND, which has ids */
	int		 fd;		/* C_ADOPT */
	char		*readbuf;	/* C_ADOPT */
	size_t		 readlen;
	char		*protocol;	/* C_ADOPT: the subprotocol, or NULL */
	size_t		 max_message, max_queue;
	struct wbuf	*buf;		/* C_SEND, one reference per id */
	int		 code;		/* C_CLOSE; seconds for C_PING */
	char		 reason[64];
	STAILQ_ENTRY(cmd) next;
	size_t		 nids;		/* C_SEND: the recipients */
	uint64_t	 ids[];
};

enum ev_kind { E_MESSAGE, E_CLOSED };

struct wev {
	enum ev_kind	 kind;
	uint64_t	 id;
	unsigned char	*data;		/* E_MESSAGE, malloc'ed */
	size_t		 len;
	int		 binary;
	int		 code;		/* E_CLOSED */
	STAILQ_ENTRY(wev) next;
};

STAILQ_HEAD(cmdq, cmd);
STAILQ_HEAD(evq, wev);

/* ---- ws_queue.c: the queues (any thread, as each says) --------------- */

struct wbuf *sqc_wbuf_new(const void *data, size_t len, int binary,
	    unsigned refs);
void	 sqc_wbuf_unref(struct wbuf *b);
struct cmd *sqc_wscmd_new(enum cmd_kind kind, size_t nids);
void	 sqc_wscmd_discard(struct cmd *c);
int	 sqc_wscmd_hand_over(struct cmdq *q);
void	 sqc_wscmd_take(struct cmdq *q);
void	 sqc_wsev_init(struct event *wake);
void	 sqc_wsev_push(enum ev_kind kind, uint64_t id, unsigned char *data,
	    size_t len, int binary, int code);
void	 sqc_wsev_take(struct evq *q);

/* ---- ws_deflate.c: permessage-deflate on zlib (service thread) ------ */

int	 sqc_pmd_inflate(struct z_stream_s **zp, int bits, int *ended,
	    const unsigned char *in, size_t len, int fin,
	    int (*sink)(void *, const unsigned char *, size_t), void *arg);
void	 sqc_pmd_inflate_end(struct z_stream_s **zp);
int	 sqc_pmd_deflate_once(int bits, const unsigned char *in, size_t len,
	    unsigned char **out, size_t *outlen);
void	 sqc_pmd_cleanup(void);

/* ---- ws_ev.c: the service thread's libev loop ------------------------ */

struct ev_loop;
struct ev_loop *sqc_wsev_new(int (*should_leave)(void),
	    void (*tick)(void), char *err, size_t errlen);
void	 sqc_wsev_run(struct ev_loop *loop);
void	 sqc_wsev_free(struct ev_loop *loop);

/* ---- ws_lws.c: the service thread, as the loop thread drives it ------ */

int	 sqc_wsl_start(size_t max_header_size, size_t *hs_space, char *err,
	    size_t errlen);
int	 sqc_wsl_running(void);
void	 sqc_wsl_wake(void);
void	 sqc_wsl_end(void);

#endif /* SQUALL_WS_BRIDGE_H */
