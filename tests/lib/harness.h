/*
 * harness.h - what the integration tests share: a squalld of their own on
 * a free loopback port (listen = 127.0.0.1:0, the port read back from the
 * "listening on" log line), its log, and small HTTP clients (libcurl for
 * well-formed requests, a raw socket for bad bytes).
 */
#ifndef SQUALL_TEST_HARNESS_H
#define SQUALL_TEST_HARNESS_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

struct srv {
	char	 dir[256];	/* temporary folder: config, log, files */
	char	 ini[300];
	char	 log[300];
	pid_t	 pid;		/* -1 once reaped */
	int	 status;	/* exit status once reaped, -1 on a signal */
	int	 port;		/* the first plain listener (or the first) */
	char	 pid_arg[300];	/* for srv_start_in: -g this, if set */
};

struct resp {
	long	 status;
	char	*body;
	size_t	 len;
	char	*headers;
	double	 seconds;
	int	 curl_error;	/* CURLcode, 0 on success */
};

/* Folders of the build, from the Makefile. */
const char *t_builddir(void);
const char *t_srcdir(void);
const char *t_plugin_dir(void);		/* shipped plugins (.libs) */
const char *t_test_plugin(const char *name);	/* tests/plugins/NAME.so */

/* A new temporary folder for a test; files are removed by t_rm_rf. */
void	 t_tmpdir(char *out, size_t len);
void	 t_write(const char *path, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
char	*t_read(const char *path, size_t *len);
void	 t_copy(const char *from, const char *to);
void	 t_rm_rf(const char *dir);

/*
 * Writes squall.ini in a new folder: a [server] section listening on
 * 127.0.0.1:0 with plugin_dir set to the shipped plugins, followed by
 * `rest` (more [server] keys, then routes), then starts squalld on it and
 * waits until it is ready. Fails the test if it does not start.
 */
void	 srv_start(struct srv *s, const char *rest_fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Like srv_start, in a folder the caller prepared (s->dir set). */
void	 srv_start_in(struct srv *s, const char *ini_text);
/* Waits for the count-th occurrence of text in the log (1 = first). */
int	 srv_wait_log(struct srv *s, const char *text, int count,
	    int timeout_ms);
int	 srv_log_count(struct srv *s, const char *text);
/* SIGTERM and wait; returns the exit status, or -1 on a crash/timeout. */
int	 srv_stop(struct srv *s);
void	 srv_signal(struct srv *s, int sig);
/* Waits for the server to exit by itself: its status, -2 on timeout. */
int	 srv_wait_exit(struct srv *s, int timeout_ms);
/* The port of s's first TLS listener ("listening on ... (tls)"). */
int	 srv_tls_port(struct srv *s);
/*
 * dir/NAME.pem and dir/NAME.key: a self-signed P-256 pair with san as its
 * subjectAltName ("DNS:localhost,IP:127.0.0.1"), by the openssl command.
 */
void	 t_make_cert(const char *dir, const char *name, const char *san);
/* Reload and wait for "reloaded" or "reload failed"; returns 0 or -1. */
int	 srv_reload(struct srv *s);
void	 srv_cleanup(struct srv *s);

/*
 * etc/squall.ini as shipped, made to run from the build tree: listen on
 * 127.0.0.1:0, the built plugins, the source tree's web/; with xheaders
 * set to "on" or "off" when not NULL. Malloc'ed.
 */
char	*t_default_ini(const char *xheaders);
/* The same for etc/NAME; a listener with "tls" keeps it. */
char	*t_example_ini(const char *name, const char *xheaders);

/* In a child before exec: closes every descriptor above stderr. */
void	 t_close_inherited(void);

/* Runs squalld with args (NULL-terminated); stderr in *out. */
int	 t_run_squalld(char **out, const char *arg, ...);
/*
 * squalld -t on a squall.ini of its own in a new folder (removed after,
 * its name in dir when dir is not NULL): "[server]", "plugin_dir = " the
 * shipped plugins, then the text of fmt (so its first line is line 3).
 * Returns the exit status; the output in *out.
 */
int	 t_check_ini(char **out, char *dir, size_t dirlen, const char *fmt,
	    ...) __attribute__((format(printf, 4, 5)));

int	 http_get(int port, const char *path, struct resp *r);
int	 http_request(int port, const char *method, const char *path,
	    const char **headers, const char *body, size_t body_len,
	    long timeout_ms, struct resp *r);
void	 resp_free(struct resp *r);
/* Sends raw bytes, then reads until the server closes or timeout. */
char	*raw_exchange(int port, const void *data, size_t len, int timeout_ms,
	    size_t *outlen);
int	 t_connect(int port);
/* A listening socket on 127.0.0.1:port with this backlog, never served
 * (a broker of the test's own making); the next connection to it within
 * timeout_ms, or -1. */
int	 t_listen(int port, int backlog);
int	 t_accept_within(int lfd, int timeout_ms);
/* With a small SO_RCVBUF, for a client that reads slowly. */
int	 t_connect_rcvbuf(int port, int rcvbuf);
/* Descriptors process pid has open now. */
int	 t_open_fds(pid_t pid);
/*
 * A client beyond max_connections: connects (the kernel's backlog takes
 * it) and sends GET /hello; fails the test if it is answered within half
 * a second. t_expect_served() then waits for its 200 and closes it.
 */
int	 t_connect_unserved(int port);
void	 t_expect_served(int fd, const char *why);
/*
 * redis-server on 127.0.0.1:port (requirepass password, unless NULL),
 * no persistence, its files and log in dir; waits until it accepts.
 */
pid_t	 t_redis_start(const char *dir, int port, const char *password);
/* The same, with aof: every write in an append-only file, synced (a
 * redis-server killed and started again on dir keeps what it answered). */
pid_t	 t_redis_start_aof(const char *dir, int port, const char *password,
	    int aof);
/* A loopback port that nothing listens on right now. */
int	 t_free_port(void);
/* GET path and fail the test unless the status is the one expected. */
void	 t_expect_status(int port, const char *path, long status);
/* The "state" of route in /status (JSON), as its text: "state":{...}. */
char	*t_route_state(int port, const char *route);

/* A GET in a thread of its own, for requests that must overlap. */
struct bg {
	pthread_t	 th;
	int		 port;
	char		 path[256];
	struct resp	 r;
	long		 done_ms;	/* t_now_ms() when it ended */
};
void	 bg_start(struct bg *b, int port, const char *path);
/* Joins the thread; b->r then holds the response (resp_free it). */
void	 bg_wait(struct bg *b);
long	 t_now_ms(void);

/*
 * A minimal WebSocket client for the tests: the handshake, masked frames
 * out, unmasked frames in. Opcodes: 0 continuation, 1 text, 2 binary,
 * 8 close, 9 ping, 10 pong. With permessage-deflate (when its request
 * offered it and the server agreed), text and binary messages are
 * compressed both ways (zlib): ws_disconnect frees that state.
 */
struct wsc_z;

struct wsc {
	int	 fd;
	int	 auto_pong;	/* answer pings inside ws_recv */
	int	 fin;		/* the last frame ws_recv returned had FIN */
	char	 buf[1 << 17];
	size_t	 len;
	char	 head[4096];	/* the handshake's response, NUL-ended */
	struct wsc_z *z;	/* permessage-deflate, once agreed */
};

/* Handshake on path; origin may be NULL. Returns the HTTP status. */
int	 ws_connect(struct wsc *c, int port, const char *path,
	    const char *origin);
int	 ws_connect_rcvbuf(struct wsc *c, int port, const char *path,
	    const char *origin, int rcvbuf);
/* Handshake on path with more header lines (each ending in CRLF). */
int	 ws_connect_with(struct wsc *c, int port, const char *path,
	    const char *headers);
/* Sends req (a whole handshake, as is); the HTTP status, or -1. With
 * rcvbuf > 0, the socket's receive buffer is made that small first. */
int	 ws_handshake(struct wsc *c, int port, const char *req, int rcvbuf);
/* A header of the handshake's response (malloc'ed), or NULL. */
char	*ws_response_header(const struct wsc *c, const char *name);
/* One message in one frame (compressed with permessage-deflate). */
int	 ws_send(struct wsc *c, int opcode, const void *data, size_t len);
/* One frame as is: b0 is its first byte (FIN 0x80, RSV1 0x40, opcode);
 * the payload is masked, never compressed. */
int	 ws_send_frame(struct wsc *c, int b0, const void *data, size_t len);
/* data compressed as a permessage-deflate message payload (malloc'ed),
 * for frames sent with ws_send_frame; needs the extension agreed. */
unsigned char *ws_deflate(struct wsc *c, const void *data, size_t len,
	    size_t *outlen);
/* Next frame (inflated with permessage-deflate); 0, or -1 on timeout,
 * end of stream or bad compressed data. *data is malloc'ed and
 * NUL-terminated; for a close frame, *code gets its status; c->fin says
 * whether the frame ended its message. Frames of any size (the 16 MiB
 * ones too). */
int	 ws_recv(struct wsc *c, int *opcode, char **data, size_t *len,
	    int *code, int timeout_ms);
/* Next whole message: its fragments joined, pongs skipped (pings too,
 * answered if auto_pong). *opcode is 1, 2, or 8 for a close frame. */
int	 ws_recv_msg(struct wsc *c, int *opcode, char **data, size_t *len,
	    int timeout_ms);
/* Next text message, or NULL. */
char	*ws_recv_text(struct wsc *c, int timeout_ms);
/*
 * The next text message, which must match the extended regular
 * expression pattern (the test fails otherwise); malloc'ed. TS and IP
 * match the chat's time stamps and the loopback client in patterns.
 */
char	*ws_expect_line(struct wsc *c, const char *pattern);
#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"
#define IP "\\[127\\.0\\.0\\.1\\]"
/*
 * a and b, members of one chat room, send ta and tb (plain words) at
 * once: both must see the two lines, in the same order (the test fails
 * otherwise).
 */
void	 ws_expect_same_order(struct wsc *a, const char *ta, struct wsc *b,
	    const char *tb);
/* Waits for the server's close frame: its code, or -1. */
int	 ws_wait_close(struct wsc *c, int timeout_ms);
void	 ws_disconnect(struct wsc *c);

/* ---- more for the Autobahn-style suite (test_ws_autobahn.c) ---------- */

/*
 * Appends frame (b0: FIN 0x80, RSV 0x70, opcode; payload masked, never
 * compressed) to the growable buffer *buf (*len bytes): frames built
 * this way go out in one write, or in chunks, with ws_write.
 */
void	 ws_frame_append(unsigned char **buf, size_t *len, int b0,
	    const void *data, size_t len_data);
/* Writes len bytes in writes of at most chunk bytes (0: one write), with
 * TCP_NODELAY, so that each chunk leaves in a segment of its own. */
int	 ws_write(struct wsc *c, const void *data, size_t len, size_t chunk);
/* The next frame exactly as it came: b0 (FIN, RSV bits, opcode) and the
 * payload (malloc'ed, NUL-ended), never inflated; 0, or -1 on timeout or
 * end of stream. */
int	 ws_recv_frame(struct wsc *c, int *b0, char **data, size_t *len,
	    int timeout_ms);
/*
 * Reads until the server closes the TCP connection: 0 on end of stream
 * (or a reset), -1 if it is still open after timeout_ms. *extra gets the
 * number of bytes that came first (those already buffered included).
 */
int	 ws_read_to_eof(struct wsc *c, int timeout_ms, size_t *extra);

/*
 * A permessage-deflate endpoint of the tests' own, for what the client
 * inside struct wsc does not do: windows of 8 to 15 bits each way,
 * context reset after each message on either side, messages ended with
 * a final block (BFINAL, RFC 7692 7.2.3.4), and an inflater that holds
 * the server to its window (a distance past 2^rx_bits is an error).
 * Frames go out with ws_send_frame and come in with ws_recv_frame.
 */
struct wsz;
/* tx_bits 8: zlib's raw deflate has no 256-byte window, so the client
 * then compresses with Huffman codes only (no distances at all). */
struct wsz *wsz_new(int tx_bits, int rx_bits, int tx_reset, int rx_reset);
/* From a Sec-WebSocket-Extensions response (NULL when none agreed). */
struct wsz *wsz_from_response(const struct wsc *c);
/* A message payload (malloc'ed); with bfinal, in a final block, and the
 * compressor then starts afresh (no distance reaches before it). */
unsigned char *wsz_deflate(struct wsz *z, const void *data, size_t len,
	    int bfinal, size_t *outlen);
/* Inflates one frame of a compressed message, appended to *out (*olen
 * bytes, malloc'ed, NUL-ended): *out is NULL, a buffer of *olen + 1
 * bytes, or what the call before, in the same message, left there. fin
 * ends the message. 0 or -1. */
int	 wsz_inflate(struct wsz *z, const void *in, size_t inlen, int fin,
	    char **out, size_t *olen);
void	 wsz_free(struct wsz *z);

#endif
