/*
 * wsload - a WebSocket fan-out load generator for chat rooms that speak
 * the seed's lines (squall's chat plugin, bench/peers/node_chat.js, the
 * Kore module in bench/peers/kore). One process, one thread, libevent
 * bufferevents, its own minimal RFC 6455 client (masked frames out,
 * unmasked frames in, fragments, ping -> pong, close). bench/README.md
 * ("How wsload measures") says what each number means.
 *
 * Build (bench/run does it):
 *   cc -O2 -Wall -o bench/wsload bench/wsload.c \
 *       $(pkg-config --cflags --libs libevent libevent_openssl openssl) -lz
 *
 * Usage:
 *   wsload -u ws[s]://HOST:PORT/PATH [-n CLIENTS] [-m MESSAGES] [-s SENDERS]
 *          [-w WINDOW] [-z SIZE] [-c HANDSHAKES] [-t TIMEOUT]
 *          [-p PID[,PID...]] [-o ORIGIN] [-Z]
 *          [-i [-r ROOMSIZE] [-H SECS] [-b [-S] [-l FILE]]]
 *
 *   -u, --url URL         the chat route, ws:// or wss:// (TLS through
 *                         libevent's OpenSSL bufferevents, the server's
 *                         certificate not checked); repeat it to spread
 *                         the members over several servers (one room on
 *                         a broker): member i uses URL i mod U
 *   -n, --clients N       members that join the room (100)
 *   -m, --messages M      messages each sender sends (10000)
 *   -s, --senders S       the first S members send (1)
 *   -w, --window W        messages of one sender in flight at most (16);
 *                         a message is in flight until every member that
 *                         is still connected has received it
 *   -z, --size BYTES      size of each message sent (64; at least 48)
 *   -c, --concurrency C   handshakes under way at once while joining (64)
 *   -t, --timeout SECS    give up after SECS without progress (10)
 *   -p, --server-pid LIST server pids whose CPU time (utime + stime from
 *                         /proc/PID/stat) and VmRSS are summed; repeatable.
 *                         The first pid's main thread is also reported
 *                         alone (server_main_thread_cpu_s: squalld's
 *                         event loop)
 *   -o, --origin ORIGIN   send this Origin header (none by default)
 *   -i, --idle            idle mode: only open the N connections and
 *                         report the time it took and the server's RSS
 *                         growth per connection
 *   -r, --rooms R         idle mode on a route of rooms (the chat
 *                         plugin's on a path ending in "*"): member i
 *                         joins PATH + i / R, so that the URL
 *                         ws://HOST:PORT/rooms/r makes rooms /rooms/r0,
 *                         /rooms/r1... of R members each
 *   -H, --hold SECS       idle mode: once every member has joined, say
 *                         "wsload settled" on stdout, keep the
 *                         connections open SECS seconds (or until the
 *                         server has closed them all) and report the
 *                         server's CPU over them, its WebSocket thread's
 *                         (squalld-ws) alone too
 *   -b, --burst           idle mode on a route of rooms (-r): once every
 *                         member has joined, the first member of every
 *                         room sends one line ("ROOM 0 T " padded to -z),
 *                         all in one loop turn; each member checks it
 *                         gets its own room's line once. Reported on a
 *                         "wsload mode=burst" line as soon as every
 *                         member has it (or after -t seconds without
 *                         one): deliveries, deliveries/s from the first
 *                         send to the last delivery, latency, lost (a
 *                         member open at the send that did not get its
 *                         room's line), dup; the times are CLOCK_MONOTONIC
 *                         ns, so that several wsloads can be summed
 *   -S, --on-signal       with -b: send the lines on SIGUSR1 (once
 *                         settled) rather than at once, so that a script
 *                         starts the bursts of several wsloads together
 *   -l, --latencies FILE  with -b: write the latency histogram to FILE,
 *                         one "MICROSECONDS COUNT" line per bucket, to be
 *                         merged with other wsloads'
 *   -Z, --deflate         offer permessage-deflate with
 *                         client_no_context_takeover and
 *                         server_no_context_takeover (a server accepting
 *                         must answer server_no_context_takeover); a
 *                         compressed message is inflated on its own
 *                         (RFC 7692: raw DEFLATE, 00 00 ff ff appended),
 *                         and each text message sent is compressed on its
 *                         own (a fresh deflate, the trailing 00 00 ff ff
 *                         stripped, RSV1 set). Needs zlib (-lz)
 *
 * Examples:
 *   wsload -u ws://127.0.0.1:8888/chat -n 100 -m 20000 -w 16 -z 64 -p PID
 *   wsload -u ws://127.0.0.1:8888/chat -n 10000 -i -p PID
 *   wsload -u ws://127.0.0.1:8888/rooms/r -n 100000 -i -r 100 -p PID
 *   wsload -u ws://127.0.0.1:8888/rooms/r -n 19000 -i -r 100 -b -p PID
 *   wsload -u ws://127.0.0.1:8888/chat -n 1000 -m 2000 -z 2048 -Z -p PID
 *
 * Output: one line on stdout, "wsload key=value ...", and a readable
 * summary on stderr. Exit status 0 when every member got every message
 * exactly once (or, idle, every connection joined), 3 when something was
 * lost, duplicated, malformed, refused or closed, 1 on a usage or set-up
 * error.
 *
 * Joining: the clients connect with at most C handshakes under way. The
 * room is settled when every handshake got its 101 and the members have
 * received, together, N(N+1)/2 "joined" lines: the k-th member to join
 * hears its own join and those of the N-k after it. Nothing is sent
 * before that point. The idle mode reports the time from the first
 * connect to that point (and to the last 101); all clients share one
 * address, so a member cannot tell its own "joined" line from another's.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <zlib.h>

#define MAX_FRAME	(16u << 20)	/* a larger server frame is an error */
#define MAX_HEADER	16384		/* of the handshake response */
#define MAX_PIDS	16
#define MAX_URLS	16
#define MIN_SIZE	48		/* "S Q T " with room to spare */
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Latency histogram: 1 us buckets below 100 ms, then 1 ms up to 100 s. */
#define H_FINE		100000
#define H_COARSE	100000
#define H_BUCKETS	(H_FINE + H_COARSE + 1)

enum cstate { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

struct conn {
	struct bufferevent	*bev;
	unsigned		 idx;
	enum cstate		 state;
	char			 accept[32];	/* the Sec-WebSocket-Accept due */
	unsigned char		*frag;		/* a fragmented message so far */
	size_t			 fraglen, fragcap;
	int			 fragop;	/* 0: none under way */
	uint8_t			*seen;		/* S * M bits: got seq q of s */
	unsigned		 pmd:1;		/* permessage-deflate agreed */
	unsigned		 fragz:1;	/* the fragmented one is */
	unsigned		 got:1;		/* -b: its room's line came */
};

struct sender {
	struct conn	*c;
	uint32_t	 sent;		/* messages sent; the next seq */
	uint32_t	 lo;		/* the oldest not yet complete */
	uint32_t	 inflight;
	uint32_t	*remaining;	/* members yet to receive, per seq */
};

/* A server the members connect to (-u). */
struct target {
	char			*path, *hosthdr;
	int			 tls;		/* wss:// */
	struct sockaddr_storage	 addr;
	socklen_t		 addrlen;
};

static struct {
	const char	*urls[MAX_URLS], *origin;
	int		 nurls;
	unsigned	 n, senders, window, conc;
	uint32_t	 messages;
	size_t		 size;
	double		 timeout;
	int		 idle;
	unsigned	 room;		/* -r: members per room, 0: one room */
	unsigned	 hold;		/* -H: seconds held open, idle */
	int		 burst;		/* -b: one line in every room */
	int		 burst_sig;	/* -S: on SIGUSR1 */
	const char	*latfile;	/* -l */
	int		 deflate;	/* -Z */
	double		 burst_timeout;
	pid_t		 pids[MAX_PIDS];
	int		 npids;
} opt = {
	.n = 100, .senders = 1, .window = 16, .conc = 64,
	.messages = 10000, .size = 64, .timeout = 10,
};

static struct event_base	*base;
static struct target		 targets[MAX_URLS];
static struct conn		*conns;
static struct sender		*senders;
static struct event		*ticker;

static unsigned	 next_conn;		/* the next to connect */
static unsigned	 handshaking;		/* under way */
static unsigned	 ok, failed;		/* handshakes */
static unsigned	*room_ok;		/* members open, by room */
static uint64_t	 want_joined;		/* joined lines the open ones make */
static unsigned	 open_now;		/* members connected */
static unsigned	 closed;		/* members lost after joining */
static uint64_t	 joined_lines, left_lines;
static uint64_t	 deliveries, dups, bad, bogus;
static uint64_t	 completed, sent_total;
static int	 settled, measuring, finished, stalled;
static int	 errors_shown;
static unsigned	 pmd_members;		/* -Z: agreed to compress */
static uint64_t	 zin_msgs;		/* compressed messages received */

/* -b */
static int	 burst_asked, burst_sent, burst_done;
static uint64_t	 burst_want, burst_rooms;
static double	 burst_cpu0, burst_self0;

static uint64_t	 t_start, t_handshakes, t_settled, t_first, t_last;
static uint64_t	 last_progress;
static double	 cpu0, cpu1;		/* the server's */
static double	 main0, main1;		/* first pid's main thread */
static double	 self0, self1;		/* ours */
static long	 rss0, rss1;

static uint64_t	 hist[H_BUCKETS];
static uint64_t	 lat_n, lat_max;

static uint64_t	 rnd_state;

static void	conn_open(unsigned);
static void	conn_lost(struct conn *, const char *, int);
static void	finish(void);
static void	burst_over(void);

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t
rnd(void)
{
	/* xorshift64*: masks and keys need not be secret here */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return (uint32_t)((rnd_state * 2685821657736338717ull) >> 32);
}

static void
warnx_limited(const char *fmt, ...)
{
	va_list ap;

	if (errors_shown++ >= 10) {
		if (errors_shown == 12)
			fprintf(stderr, "wsload: (more errors not shown)\n");
		return;
	}
	va_start(ap, fmt);
	fputs("wsload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("wsload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* --- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept -------- */

static uint32_t
rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
	uint32_t w[80], a, b, c, d, e, f, k, t;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		    (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (i = 0; i < 80; i++) {
		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		t = rol(a, 5) + f + e + k + w[i];
		e = d, d = c, c = rol(b, 30), b = a, a = t;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* SHA-1 of len (< 120) bytes into out[20]. */
static void
sha1(const void *data, size_t len, unsigned char out[20])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
	    0xc3d2e1f0 };
	unsigned char buf[128] = { 0 };
	size_t total = len + 9 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;

	memcpy(buf, data, len);
	buf[len] = 0x80;
	for (int i = 0; i < 8; i++)
		buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
	for (size_t off = 0; off < total; off += 64)
		sha1_block(h, buf + off);
	for (int i = 0; i < 20; i++)
		out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void
base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];

		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = tab[(v >> 6) & 63];
		*out++ = tab[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
	*out = '\0';
}

/* --- the server's CPU time and memory --------------------------------- */

/* utime + stime in clock ticks from a stat file of /proc; -1 if unreadable */
static double
stat_ticks(const char *path)
{
	char buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the name may hold spaces and parentheses: skip to its end */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
	    "%*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st);
}

/* utime + stime of every pid, all threads, in seconds; -1 if unreadable */
static double
server_cpu(void)
{
	double ticks = 0;

	if (opt.npids == 0)
		return -1;
	for (int i = 0; i < opt.npids; i++) {
		char path[64];
		double t;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)opt.pids[i]);
		if ((t = stat_ticks(path)) < 0)
			return -1;
		ticks += t;
	}
	return ticks / (double)sysconf(_SC_CLK_TCK);
}

/*
 * utime + stime of the first pid's main thread alone, in seconds (for
 * squalld: the event loop's thread); -1 if unreadable
 */
/*
 * utime + stime of the first pid's thread named name (squalld-ws), in
 * seconds; -1 if there is none
 */
static double
server_thread_cpu(const char *name)
{
	char path[300], comm[64];
	struct dirent *d;
	double t = -1;
	DIR *dir;
	FILE *f;

	if (opt.npids == 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)opt.pids[0]);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while (t < 0 && (d = readdir(dir)) != NULL) {
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm",
		    (int)opt.pids[0], d->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL &&
		    strncmp(comm, name, strlen(name)) == 0 &&
		    comm[strlen(name)] == '\n') {
			snprintf(path, sizeof(path), "/proc/%d/task/%s/stat",
			    (int)opt.pids[0], d->d_name);
			t = stat_ticks(path) / (double)sysconf(_SC_CLK_TCK);
		}
		fclose(f);
	}
	closedir(dir);
	return t;
}

static double
server_main_cpu(void)
{
	char path[64];
	double t;

	if (opt.npids == 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat",
	    (int)opt.pids[0], (int)opt.pids[0]);
	if ((t = stat_ticks(path)) < 0)
		return -1;
	return t / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of every pid in KiB, summed; -1 if unreadable */
static long
server_rss(void)
{
	long total = 0;

	if (opt.npids == 0)
		return -1;
	for (int i = 0; i < opt.npids; i++) {
		char path[64], line[256];
		long kb = -1;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/status",
		    (int)opt.pids[i]);
		if ((f = fopen(path, "r")) == NULL)
			return -1;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmRSS: %ld", &kb) == 1)
				break;
		fclose(f);
		if (kb < 0)
			return -1;
		total += kb;
	}
	return total;
}

/* Our own user + system time in seconds. */
static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	    ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* --- latency ------------------------------------------------------------ */

static void
lat_add(uint64_t ns)
{
	uint64_t us = ns / 1000, b;

	if (us < H_FINE)
		b = us;
	else if ((b = us / 1000 - H_FINE / 1000 + H_FINE) > H_BUCKETS - 1)
		b = H_BUCKETS - 1;
	hist[b]++;
	lat_n++;
	if (ns > lat_max)
		lat_max = ns;
}

/* The p-quantile in microseconds (1 us below 100 ms, 1 ms above). */
static double
lat_quantile(double p)
{
	uint64_t want, seen = 0;

	if (lat_n == 0)
		return 0;
	want = (uint64_t)(p * (double)lat_n);
	if (want < 1)
		want = 1;
	if (want > lat_n)
		want = lat_n;
	for (uint64_t b = 0; b < H_BUCKETS; b++) {
		seen += hist[b];
		if (seen >= want)
			return b < H_FINE ? (double)b :
			    (double)(b - H_FINE + H_FINE / 1000) * 1000;
	}
	return (double)lat_max / 1000;
}

/* --- frames out ------------------------------------------------------- */

/* One masked frame (FIN set) with opcode op (| 0x40: RSV1, compressed). */
static void
ws_send(struct conn *c, int op, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	unsigned char h[14], m[4];
	uint32_t key = rnd();
	size_t hl = 2;

	h[0] = (unsigned char)(0x80 | op);
	if (len < 126)
		h[1] = (unsigned char)(0x80 | len);
	else if (len < 65536) {
		h[1] = 0x80 | 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(m, &key, 4);
	memcpy(h + hl, m, 4);
	hl += 4;
	evbuffer_add(out, h, hl);
	if (len > 0) {
		struct evbuffer_iovec v;
		const unsigned char *s = data;
		unsigned char *d;

		if (evbuffer_reserve_space(out, (ev_ssize_t)len, &v, 1) != 1)
			die("out of memory");
		d = v.iov_base;
		for (size_t i = 0; i < len; i++)
			d[i] = s[i] ^ m[i & 3];
		v.iov_len = len;
		evbuffer_commit_space(out, &v, 1);
	}
}

/* --- permessage-deflate (-Z), without context takeover either way --- */

/* what ends every compressed message (RFC 7692 7.2.1), not on the wire */
static const unsigned char pmd_tail[4] = { 0x00, 0x00, 0xff, 0xff };
static z_stream	 zin, zout;
static int	 zin_ready, zout_ready;
static unsigned char *zibuf, *zobuf;
static size_t	 zicap, zocap;

/*
 * Inflates one whole compressed message (a fresh stream: the server does
 * not take its context over) into zibuf; its length, or -1 if it is not
 * valid DEFLATE data or inflates past MAX_FRAME.
 */
static long
pmd_inflate(const unsigned char *p, size_t len)
{
	size_t n = 0;
	int rc;

	if (!zin_ready) {
		if (inflateInit2(&zin, -15) != Z_OK)
			die("inflateInit2 failed");
		zin_ready = 1;
	} else if (inflateReset(&zin) != Z_OK)
		die("inflateReset failed");
	for (int pass = 0; pass < 2; pass++) {
		zin.next_in = (unsigned char *)(pass ? pmd_tail : p);
		zin.avail_in = (uInt)(pass ? sizeof(pmd_tail) : len);
		for (;;) {
			if (zicap - n < 16384) {
				size_t cap = zicap ? zicap * 2 : 65536;
				unsigned char *b;

				if (n > MAX_FRAME)
					return -1;
				if ((b = realloc(zibuf, cap)) == NULL)
					die("out of memory");
				zibuf = b;
				zicap = cap;
			}
			zin.next_out = zibuf + n;
			zin.avail_out = (uInt)(zicap - n);
			rc = inflate(&zin, Z_SYNC_FLUSH);
			n = zicap - zin.avail_out;
			if (rc == Z_STREAM_END)
				return (long)n;	/* BFINAL: the rest ignored */
			if (rc == Z_BUF_ERROR && zin.avail_out > 0)
				break;		/* all input taken */
			if (rc != Z_OK && rc != Z_BUF_ERROR)
				return -1;
			if (zin.avail_in == 0 && zin.avail_out > 0)
				break;
		}
	}
	return (long)n;
}

/*
 * Compresses one message on its own (a fresh stream, no context taken
 * over) into zobuf, the trailing 00 00 ff ff stripped; its length.
 */
static size_t
pmd_deflate(const void *in, size_t len)
{
	size_t cap = compressBound((uLong)len) + 64, n;

	if (!zout_ready) {
		if (deflateInit2(&zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15,
		    8, Z_DEFAULT_STRATEGY) != Z_OK)
			die("deflateInit2 failed");
		zout_ready = 1;
	} else if (deflateReset(&zout) != Z_OK)
		die("deflateReset failed");
	if (zocap < cap) {
		if ((zobuf = realloc(zobuf, cap)) == NULL)
			die("out of memory");
		zocap = cap;
	}
	zout.next_in = (unsigned char *)in;
	zout.avail_in = (uInt)len;
	zout.next_out = zobuf;
	zout.avail_out = (uInt)zocap;
	if (deflate(&zout, Z_SYNC_FLUSH) != Z_OK || zout.avail_in != 0 ||
	    zout.avail_out == 0)
		die("deflate failed");
	n = zocap - zout.avail_out;
	if (n >= 4 && memcmp(zobuf + n - 4, pmd_tail, 4) == 0)
		n -= 4;
	return n;
}

/* A text message, compressed where permessage-deflate was agreed. */
static void
send_text(struct conn *c, const void *data, size_t len)
{
	if (c->pmd)
		ws_send(c, 0x40 | 0x1, zobuf, pmd_deflate(data, len));
	else
		ws_send(c, 0x1, data, len);
}

/* --- the fan-out ------------------------------------------------------ */

static int
bit_test(const uint8_t *bits, uint64_t i)
{
	return (bits[i >> 3] & (1u << (i & 7))) != 0;
}

static int
bit_test_set(uint8_t *bits, uint64_t i)
{
	uint8_t m = (uint8_t)(1u << (i & 7));
	int was = (bits[i >> 3] & m) != 0;

	bits[i >> 3] |= m;
	return was;
}

static void
progress(void)
{
	last_progress = now_ns();
}

/* Fill s's window: each message is "S Q T " padded with 'x' to size. */
static void
sender_fill(struct sender *s)
{
	char buf[65536];
	unsigned idx = (unsigned)(s - senders);

	if (s->c->state != C_OPEN)
		return;
	while (s->inflight < opt.window && s->sent < opt.messages) {
		uint64_t t = now_ns();
		int n = snprintf(buf, sizeof(buf), "%u %u %" PRIu64 " ", idx,
		    s->sent, t);

		memset(buf + n, 'x', opt.size - (size_t)n);
		send_text(s->c, buf, opt.size);
		if (t_first == 0)
			t_first = t;
		s->remaining[s->sent] = open_now;
		s->sent++;
		s->inflight++;
		sent_total++;
	}
}

static int
all_done(void)
{
	for (unsigned i = 0; i < opt.senders; i++) {
		struct sender *s = &senders[i];

		if (s->inflight > 0)
			return 0;
		if (s->sent < opt.messages && s->c->state == C_OPEN)
			return 0;
	}
	return 1;
}

/* Seq q of s reached the last member still connected. */
static void
complete(struct sender *s, uint32_t q)
{
	(void)q;
	s->inflight--;
	completed++;
	while (s->lo < s->sent && s->remaining[s->lo] == 0)
		s->lo++;
	t_last = now_ns();
	sender_fill(s);
	if (all_done())
		finish();
}

/* A decimal number ended by a blank at *p (len left); -1 if none. */
static int
field(const char **p, size_t *len, uint64_t *v)
{
	const char *s = *p;
	size_t n = 0;

	*v = 0;
	while (n < *len && n < 20 && s[n] >= '0' && s[n] <= '9')
		*v = *v * 10 + (uint64_t)(s[n++] - '0');
	if (n == 0 || n == *len || s[n] != ' ')
		return -1;
	*p += n + 1;
	*len -= n + 1;
	return 0;
}

/* A message line's text "S Q T xxx..." arrived at c at time now. */
static void
on_said(struct conn *c, const char *p, size_t len, uint64_t now)
{
	uint64_t sidx, seq, t;
	struct sender *s;

	if (opt.burst) {
		/* "ROOM 0 T ": the line of c's own room, once */
		if (!burst_sent || field(&p, &len, &sidx) != 0 ||
		    field(&p, &len, &seq) != 0 || field(&p, &len, &t) != 0 ||
		    sidx != c->idx / opt.room || seq != 0) {
			bogus++;
			return;
		}
		if (c->got) {
			dups++;
			return;
		}
		c->got = 1;
		deliveries++;
		lat_add(now > t ? now - t : 0);
		last_progress = t_last = now;
		if (deliveries == burst_want)
			burst_over();
		return;
	}
	if (!measuring || field(&p, &len, &sidx) != 0 ||
	    field(&p, &len, &seq) != 0 || field(&p, &len, &t) != 0 ||
	    sidx >= opt.senders || seq >= senders[sidx].sent) {
		bogus++;
		return;
	}
	s = &senders[sidx];
	if (bit_test_set(c->seen, sidx * opt.messages + seq)) {
		dups++;
		return;
	}
	deliveries++;
	lat_add(now > t ? now - t : 0);
	last_progress = now;
	if (s->remaining[seq] > 0 && --s->remaining[seq] == 0)
		complete(s, (uint32_t)seq);
}

static void
start_measuring(void)
{
	measuring = 1;
	cpu0 = server_cpu();
	main0 = server_main_cpu();
	self0 = self_cpu();
	progress();
	for (unsigned i = 0; i < opt.senders; i++)
		sender_fill(&senders[i]);
}

/*
 * -b: the first member of every room sends one line, "ROOM 0 T " padded
 * to the size, all queued in this loop turn. A member counts as waiting
 * for its room's line if it is open now.
 */
static void
burst_send(void)
{
	char buf[65536];
	unsigned rooms = (opt.n + opt.room - 1) / opt.room;

	burst_sent = 1;
	burst_cpu0 = server_cpu();
	burst_self0 = self_cpu();
	for (unsigned i = 0; i < opt.n; i++)
		if (conns[i].state == C_OPEN)
			burst_want++;
	for (unsigned r = 0; r < rooms; r++) {
		struct conn *c = &conns[r * opt.room];
		uint64_t t = now_ns();
		int n;

		if (c->state != C_OPEN)
			continue;	/* its room's members count as lost */
		n = snprintf(buf, sizeof(buf), "%u 0 %" PRIu64 " ", r, t);
		memset(buf + n, 'x', opt.size - (size_t)n);
		send_text(c, buf, opt.size);
		if (t_first == 0)
			t_first = t;
		burst_rooms++;
	}
	progress();
	if (burst_want == 0)
		burst_over();
}

/*
 * -b: every member has its room's line, or none came for -t seconds:
 * the "wsload mode=burst" line, the histogram to -l's file.
 */
static void
burst_over(void)
{
	double secs = t_last > t_first ? (double)(t_last - t_first) / 1e9 : 0;
	double cpu1b = server_cpu(), self1b = self_cpu();
	uint64_t lost = burst_want - deliveries;
	char per[32];

	if (burst_done)
		return;
	burst_done = 1;
	if (burst_cpu0 >= 0 && cpu1b >= 0 && deliveries > 0)
		snprintf(per, sizeof(per), "%.3f", (cpu1b - burst_cpu0) * 1e6 /
		    (double)deliveries);
	else
		snprintf(per, sizeof(per), "-");
	printf("wsload mode=burst n=%u room=%u rooms=%" PRIu64 " size=%zu "
	    "deflate=%u want=%" PRIu64 " deliveries=%" PRIu64 " secs=%.3f "
	    "deliveries_per_s=%.0f lat_p50_us=%.0f lat_p99_us=%.0f "
	    "lat_max_us=%.0f lost=%" PRIu64 " dup=%" PRIu64 " bogus=%" PRIu64
	    " bad=%" PRIu64 " compressed_in=%" PRIu64 " server_cpu_s=%.2f "
	    "cpu_us_per_delivery=%s client_cpu_s=%.2f t_first_ns=%" PRIu64
	    " t_last_ns=%" PRIu64 "\n", opt.n, opt.room, burst_rooms,
	    opt.size, pmd_members, burst_want, deliveries, secs,
	    secs > 0 ? (double)deliveries / secs : 0, lat_quantile(0.50),
	    lat_quantile(0.99), (double)lat_max / 1000, lost, dups, bogus, bad,
	    zin_msgs, cpu1b - burst_cpu0, per, self1b - burst_self0, t_first,
	    t_last);
	fflush(stdout);
	fprintf(stderr, "one line in each of %" PRIu64 " rooms of %u: %" PRIu64
	    " of %" PRIu64 " deliveries in %.3f s = %.0f/s; latency p50 %.3f "
	    "ms, p99 %.3f ms, max %.3f ms; lost %" PRIu64 ", duplicated %"
	    PRIu64 "\n", burst_rooms, opt.room, deliveries, burst_want, secs,
	    secs > 0 ? (double)deliveries / secs : 0,
	    lat_quantile(0.50) / 1000, lat_quantile(0.99) / 1000,
	    (double)lat_max / 1e6, lost, dups);
	if (opt.latfile) {
		FILE *f = fopen(opt.latfile, "w");

		if (f == NULL)
			warnx_limited("%s: %s", opt.latfile, strerror(errno));
		else {
			for (uint64_t b = 0; b < H_BUCKETS; b++)
				if (hist[b])
					fprintf(f, "%.0f %" PRIu64 "\n",
					    b < H_FINE ? (double)b :
					    (double)(b - H_FINE + H_FINE /
					    1000) * 1000, hist[b]);
			fclose(f);
		}
	}
	if (opt.hold == 0)
		finish();
}

/* -S: SIGUSR1 starts the burst (at once if settled, else then). */
static void
burst_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	if (burst_asked)
		return;
	burst_asked = 1;
	if (settled && !burst_sent)
		burst_send();
}

static double hold_cpu0, hold_ws0, hold_cpu1 = -1, hold_ws1 = -1;

static void
hold_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	hold_cpu1 = server_cpu();
	hold_ws1 = server_thread_cpu("squalld-ws");
	finish();
}

static void
check_settled(void)
{
	if (settled || ok + failed < opt.n || joined_lines < want_joined)
		return;
	settled = 1;
	t_settled = now_ns();
	if (opt.idle) {
		struct timeval tv = { (time_t)opt.hold, 0 };

		rss1 = server_rss();
		cpu1 = server_cpu();
		self1 = self_cpu();
		if (opt.hold == 0 && !opt.burst) {
			finish();
			return;
		}
		if (opt.hold) {
			hold_cpu0 = server_cpu();
			hold_ws0 = server_thread_cpu("squalld-ws");
			printf("wsload settled, holding %u s\n", opt.hold);
			opt.timeout += opt.hold;	/* quiet is the point */
			event_base_once(base, -1, EV_TIMEOUT, hold_over, NULL,
			    &tv);
		} else
			printf("wsload settled\n");
		fflush(stdout);
		if (opt.burst && (!opt.burst_sig || burst_asked))
			burst_send();
		return;
	}
	if (failed > 0) {
		warnx_limited("%u of %u handshakes failed: not sending",
		    failed, opt.n);
		finish();
		return;
	}
	start_measuring();
}

/*
 * A complete text message at c: a seed line, "[IP] joined at WHEN",
 * "[IP] left at WHEN" or "[IP] at WHEN: MESSAGE".
 */
static void
on_line(struct conn *c, const unsigned char *p, size_t len, uint64_t now)
{
	const char *s = (const char *)p, *end = s + len, *r, *colon;

	if (len < 2 || s[0] != '[' ||
	    (r = memchr(s, ']', len)) == NULL || r + 2 > end || r[1] != ' ') {
		bad++;
		return;
	}
	r += 2;
	if ((size_t)(end - r) >= 10 && memcmp(r, "joined at ", 10) == 0) {
		joined_lines++;
		progress();
		check_settled();
	} else if ((size_t)(end - r) >= 8 && memcmp(r, "left at ", 8) == 0)
		left_lines++;
	else if ((size_t)(end - r) >= 3 && memcmp(r, "at ", 3) == 0 &&
	    (colon = memmem(r + 3, (size_t)(end - r - 3), ": ", 2)) != NULL)
		on_said(c, colon + 2, (size_t)(end - colon - 2), now);
	else
		bad++;
}

/* A whole text message, inflated first if z (RSV1 was set). */
static void
on_text(struct conn *c, int z, const unsigned char *p, size_t len,
    uint64_t now)
{
	long n;

	if (z) {
		zin_msgs++;
		if ((n = pmd_inflate(p, len)) < 0) {
			warnx_limited("member %u: a compressed message that "
			    "does not inflate", c->idx);
			bad++;
			return;
		}
		p = zibuf;
		len = (size_t)n;
	}
	on_line(c, p, len, now);
}

/*
 * Returns -1 when c must be dropped (close frame or protocol error).
 * z: RSV1, on the first frame of a message only (RFC 7692).
 */
static int
on_frame(struct conn *c, int fin, int op, int z, const unsigned char *p,
    size_t len, uint64_t now)
{
	if (z && (op != 0x1 && op != 0x2)) {
		warnx_limited("member %u: RSV1 on opcode %d", c->idx, op);
		return -1;
	}
	switch (op) {
	case 0x0:			/* continuation */
		if (c->fragop == 0) {
			warnx_limited("continuation without a first frame");
			return -1;
		}
		if (c->fraglen + len > MAX_FRAME) {
			warnx_limited("message over %u bytes", MAX_FRAME);
			return -1;
		}
		if (c->fraglen + len > c->fragcap) {
			size_t cap = (c->fraglen + len) * 2;
			unsigned char *n = realloc(c->frag, cap);

			if (n == NULL)
				die("out of memory");
			c->frag = n;
			c->fragcap = cap;
		}
		memcpy(c->frag + c->fraglen, p, len);
		c->fraglen += len;
		if (fin) {
			if (c->fragop == 0x1)
				on_text(c, c->fragz, c->frag, c->fraglen, now);
			else
				bad++;
			c->fragop = 0;
			c->fraglen = 0;
		}
		return 0;
	case 0x1:			/* text */
	case 0x2:			/* binary */
		if (c->fragop != 0) {
			warnx_limited("new message inside a fragmented one");
			return -1;
		}
		if (!fin) {
			c->fragop = op;
			c->fragz = z != 0;
			c->fraglen = 0;
			return on_frame(c, 0, 0x0, 0, p, len, now);
		}
		if (op == 0x1)
			on_text(c, z, p, len, now);
		else
			bad++;
		return 0;
	case 0x8:			/* close: answer with its code */
		ws_send(c, 0x8, p, len >= 2 ? 2 : 0);
		warnx_limited("member %u: the server closed (code %d)",
		    c->idx, len >= 2 ? p[0] << 8 | p[1] : 1005);
		return -1;
	case 0x9:			/* ping */
		ws_send(c, 0xa, p, len);
		return 0;
	case 0xa:			/* pong */
		return 0;
	default:
		warnx_limited("member %u: opcode %d", c->idx, op);
		return -1;
	}
}

/* Every complete frame in c's input; -1 when c must be dropped. */
static int
on_frames(struct conn *c, uint64_t now)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	for (;;) {
		size_t avail = evbuffer_get_length(in), hl = 2;
		unsigned char h[10], *p;
		uint64_t len;
		int rc;

		if (avail < 2)
			return 0;
		evbuffer_copyout(in, h, avail < 10 ? avail : 10);
		if (h[0] & (c->pmd ? 0x30 : 0x70)) {
			warnx_limited("member %u: reserved bits set", c->idx);
			return -1;
		}
		if (h[1] & 0x80) {
			warnx_limited("member %u: masked frame from the server",
			    c->idx);
			return -1;
		}
		len = h[1] & 0x7f;
		if (len == 126) {
			if (avail < 4)
				return 0;
			len = (uint64_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			if (avail < 10)
				return 0;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | h[2 + i];
			hl = 10;
		}
		if (len > MAX_FRAME) {
			warnx_limited("member %u: frame of %" PRIu64 " bytes",
			    c->idx, len);
			return -1;
		}
		if (avail < hl + len)
			return 0;
		if ((p = evbuffer_pullup(in, (ev_ssize_t)(hl + len))) == NULL)
			die("out of memory");
		rc = on_frame(c, h[0] & 0x80, h[0] & 0x0f, h[0] & 0x40, p + hl,
		    len, now);
		evbuffer_drain(in, hl + len);
		if (rc != 0)
			return rc;
	}
}

/* --- connections -------------------------------------------------------- */

/* A handshake ended (either way): let the next client start. */
static void
handshake_over(void)
{
	handshaking--;
	while (handshaking < opt.conc && next_conn < opt.n)
		conn_open(next_conn++);
	if (ok + failed == opt.n && t_handshakes == 0)
		t_handshakes = now_ns();
}

/* Parse the handshake response in c's input; 1 done, 0 more, -1 bad. */
static int
on_response(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	char *hdr, *a;
	size_t n;

	if (end.pos < 0)
		return evbuffer_get_length(in) > MAX_HEADER ? -1 : 0;
	n = (size_t)end.pos + 4;
	if ((hdr = malloc(n + 1)) == NULL)
		die("out of memory");
	evbuffer_remove(in, hdr, n);
	hdr[n] = '\0';
	if (strncmp(hdr, "HTTP/1.1 101", 12) != 0) {
		warnx_limited("member %u: %.*s", c->idx,
		    (int)strcspn(hdr, "\r\n"), hdr);
		free(hdr);
		return -1;
	}
	if ((a = strcasestr(hdr, "\r\nSec-WebSocket-Accept:")) == NULL) {
		warnx_limited("member %u: no Sec-WebSocket-Accept", c->idx);
		free(hdr);
		return -1;
	}
	a += 23;
	a += strspn(a, " \t");
	if (strncmp(a, c->accept, strlen(c->accept)) != 0) {
		warnx_limited("member %u: wrong Sec-WebSocket-Accept",
		    c->idx);
		free(hdr);
		return -1;
	}
	/*
	 * -Z: an answer (one line) must be ours, with the server's
	 * no_context_takeover: each message is inflated on its own
	 */
	if (opt.deflate && (a = strcasestr(hdr,
	    "\r\nSec-WebSocket-Extensions:")) != NULL) {
		size_t el = strcspn(a + 2, "\r\n");
		char *ext = strndup(a + 2, el);

		if (ext == NULL)
			die("out of memory");
		if (strcasestr(ext, "permessage-deflate") == NULL ||
		    strcasestr(ext, "server_no_context_takeover") == NULL) {
			warnx_limited("member %u: %s", c->idx, ext);
			free(ext);
			free(hdr);
			return -1;
		}
		free(ext);
		c->pmd = 1;
		pmd_members++;
	}
	free(hdr);
	return 1;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	uint64_t now = now_ns();
	int rc;

	(void)bev;
	if (c->state == C_HANDSHAKE) {
		if ((rc = on_response(c)) == 0)
			return;
		if (rc < 0) {
			conn_lost(c, NULL, 0);
			return;
		}
		c->state = C_OPEN;
		ok++;
		/* the k-th of a room: its joined line goes to k members */
		want_joined += ++room_ok[opt.room ? c->idx / opt.room : 0];
		open_now++;
		progress();
		handshake_over();
	}
	if (c->state != C_OPEN)
		return;
	if (on_frames(c, now) != 0)
		conn_lost(c, NULL, 1);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		char req[1024];
		unsigned char key[16];
		char key64[32], cat[128], room[16] = "";
		unsigned char dig[20];
		int one = 1;

		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		for (int i = 0; i < 16; i += 4) {
			uint32_t r = rnd();

			memcpy(key + i, &r, 4);
		}
		base64(key, 16, key64);
		snprintf(cat, sizeof(cat), "%s%s", key64, WS_GUID);
		sha1(cat, strlen(cat), dig);
		base64(dig, 20, c->accept);
		if (opt.room)
			snprintf(room, sizeof(room), "%u", c->idx / opt.room);
		snprintf(req, sizeof(req), "GET %s%s HTTP/1.1\r\n"
		    "Host: %s\r\n"
		    "Upgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: %s\r\n"
		    "Sec-WebSocket-Version: 13\r\n"
		    "%s"
		    "%s%s%s"
		    "\r\n", targets[c->idx % opt.nurls].path, room,
		    targets[c->idx % opt.nurls].hosthdr, key64,
		    opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
		    "client_no_context_takeover; server_no_context_takeover\r\n" :
		    "",
		    opt.origin ? "Origin: " : "", opt.origin ? opt.origin : "",
		    opt.origin ? "\r\n" : "");
		c->state = C_HANDSHAKE;
		bufferevent_write(bev, req, strlen(req));
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_lost(c, what & BEV_EVENT_EOF ? "connection closed" :
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), 0);
}

/* Answer to a close is flushed: drop the connection. */
static void
close_flushed(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
}

/*
 * c failed or was closed: before the 101 a failed handshake, after it a
 * member lost. Its in-flight messages no longer wait for it.
 */
static void
conn_lost(struct conn *c, const char *why, int flush)
{
	enum cstate was = c->state;

	if (was == C_CLOSED)
		return;
	c->state = C_CLOSED;
	if (flush &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setcb(c->bev, NULL, close_flushed, NULL, NULL);
	} else
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (was != C_OPEN) {
		if (why)
			warnx_limited("member %u: %s", c->idx, why);
		failed++;
		handshake_over();
		check_settled();
		return;
	}
	if (why)
		warnx_limited("member %u: %s", c->idx, why);
	closed++;
	open_now--;
	if (opt.hold && settled && open_now == 0 && !finished) {
		hold_over(-1, 0, NULL);	/* the server closed them all */
		return;
	}
	if (!measuring || finished)
		return;
	for (unsigned i = 0; i < opt.senders; i++) {
		struct sender *s = &senders[i];

		for (uint32_t q = s->lo; q < s->sent; q++)
			if (s->remaining[q] > 0 && !bit_test(c->seen,
			    (uint64_t)i * opt.messages + q) &&
			    --s->remaining[q] == 0) {
				complete(s, q);
				if (finished)
					return;
			}
	}
	if (all_done())
		finish();
}

static void
conn_open(unsigned i)
{
	struct conn *c = &conns[i];

	c->idx = i;
	const struct target *t = &targets[c->idx % opt.nurls];

	if (t->tls) {
		static SSL_CTX *ctx;
		SSL *ssl;

		if (ctx == NULL && (ctx = SSL_CTX_new(TLS_client_method())) ==
		    NULL)
			die("SSL_CTX_new failed");
		if ((ssl = SSL_new(ctx)) == NULL)
			die("SSL_new failed");
		/* the CONNECTED event comes once the TLS handshake is done */
		c->bev = bufferevent_openssl_socket_new(base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	} else
		c->bev = bufferevent_socket_new(base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		die("bufferevent_socket_new failed");
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	handshaking++;
	c->state = C_CONNECTING;

	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&t->addr,
	    (int)t->addrlen) != 0) {
		/* the error callback has not run: count it here */
		bufferevent_free(c->bev);
		c->bev = NULL;
		c->state = C_CLOSED;
		warnx_limited("member %u: connect: %s", i, strerror(errno));
		failed++;
		handshake_over();
		check_settled();
	}
}

/* --- the end ---------------------------------------------------------- */

static void
ticker_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	if (burst_sent && !burst_done &&
	    (double)(now_ns() - last_progress) / 1e9 >= opt.burst_timeout) {
		warnx_limited("burst: no line for %.0f s: giving up",
		    opt.burst_timeout);
		stalled = 1;
		burst_over();
	}
	if ((double)(now_ns() - last_progress) / 1e9 >= opt.timeout) {
		stalled = 1;
		warnx_limited("no progress for %.0f s: giving up",
		    opt.timeout);
		if (opt.idle && !settled) {
			rss1 = server_rss();
			cpu1 = server_cpu();
			self1 = self_cpu();
		}
		finish();
	}
}

static void
finish(void)
{
	if (finished)
		return;
	finished = 1;
	if (measuring) {
		cpu1 = server_cpu();
		main1 = server_main_cpu();
		self1 = self_cpu();
	}
	event_base_loopbreak(base);
}

static void
fmt_s(char *buf, size_t len, uint64_t from, uint64_t to)
{
	if (from == 0 || to == 0 || to < from)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.3f", (double)(to - from) / 1e9);
}

static int
report(void)
{
	char hs[32], st[32], cpu[32], per[32], mcpu[32];
	int bad_run;

	fmt_s(hs, sizeof(hs), t_start, t_handshakes);
	fmt_s(st, sizeof(st), t_start, t_settled);
	if (cpu0 >= 0 && cpu1 >= 0 && (opt.idle || measuring))
		snprintf(cpu, sizeof(cpu), "%.2f", cpu1 - cpu0);
	else
		snprintf(cpu, sizeof(cpu), "-");
	if (opt.idle) {
		char growth[32];

		if (rss0 >= 0 && rss1 >= 0 && ok > 0)
			snprintf(growth, sizeof(growth), "%.2f",
			    (double)(rss1 - rss0) / ok);
		else
			snprintf(growth, sizeof(growth), "-");
		printf("wsload mode=idle n=%u ok=%u failed=%u closed=%u "
		    "handshakes_s=%s open_s=%s joined_lines=%" PRIu64
		    " rss_before_kib=%ld rss_after_kib=%ld "
		    "rss_kib_per_conn=%s server_cpu_s=%s client_cpu_s=%.2f "
		    "stalled=%d\n", opt.n, ok, failed, closed, hs, st,
		    joined_lines, rss0, rss1, growth, cpu, self1 - self0,
		    stalled);
		if (opt.hold && hold_cpu1 >= 0)
			printf("wsload mode=hold seconds=%u server_cpu_s=%.2f "
			    "ws_thread_cpu_s=%.2f\n", opt.hold,
			    hold_cpu1 - hold_cpu0, hold_ws1 >= 0 ?
			    hold_ws1 - hold_ws0 : -1.0);
		fflush(stdout);
		fprintf(stderr, "%u connections (%u failed, %u closed): all "
		    "101s after %s s, all joins heard after %s s; server RSS "
		    "%ld -> %ld KiB, %s KiB per connection; server CPU %s s\n",
		    opt.n, failed, closed, hs, st, rss0, rss1, growth, cpu);
		bad_run = failed || closed || stalled || bad || dups ||
		    bogus || (opt.burst && deliveries < burst_want);
	} else {
		uint64_t want = (uint64_t)ok * sent_total;
		uint64_t lost = want > deliveries ? want - deliveries : 0;
		double secs = t_last > t_first ? (double)(t_last - t_first) /
		    1e9 : 0;
		double rate = secs > 0 ? (double)deliveries / secs : 0;

		if (cpu0 >= 0 && cpu1 >= 0 && measuring && deliveries > 0)
			snprintf(per, sizeof(per), "%.3f",
			    (cpu1 - cpu0) * 1e6 / (double)deliveries);
		else
			snprintf(per, sizeof(per), "-");
		if (main0 >= 0 && main1 >= 0 && measuring)
			snprintf(mcpu, sizeof(mcpu), "%.2f", main1 - main0);
		else
			snprintf(mcpu, sizeof(mcpu), "-");
		printf("wsload mode=fanout n=%u senders=%u messages=%u "
		    "window=%u size=%zu sent=%" PRIu64 " deliveries=%" PRIu64
		    " secs=%.3f deliveries_per_s=%.0f lat_p50_us=%.0f "
		    "lat_p99_us=%.0f lat_max_us=%.0f lost=%" PRIu64
		    " dup=%" PRIu64 " bad=%" PRIu64 " bogus=%" PRIu64
		    " failed=%u closed=%u server_cpu_s=%s "
		    "server_main_thread_cpu_s=%s "
		    "cpu_us_per_delivery=%s client_cpu_s=%.2f join_s=%s "
		    "deflate=%u compressed_in=%" PRIu64 " stalled=%d\n",
		    opt.n, opt.senders, opt.messages, opt.window, opt.size,
		    sent_total, deliveries, secs, rate, lat_quantile(0.50),
		    lat_quantile(0.99), (double)lat_max / 1000, lost, dups, bad,
		    bogus, failed, closed, cpu, mcpu, per,
		    measuring ? self1 - self0 : 0, st, pmd_members, zin_msgs,
		    stalled);
		fflush(stdout);
		fprintf(stderr, "%u members, %u sender(s), %" PRIu64 " of %"
		    PRIu64 " messages sent: %" PRIu64 " deliveries in %.3f s "
		    "= %.0f/s; latency p50 %.3f ms, p99 %.3f ms, max %.3f ms; "
		    "lost %" PRIu64 ", duplicated %" PRIu64 "; server CPU %s s "
		    "= %s us per delivery; joining took %s s\n", opt.n,
		    opt.senders, sent_total, (uint64_t)opt.senders *
		    opt.messages, deliveries, secs, rate,
		    lat_quantile(0.50) / 1000, lat_quantile(0.99) / 1000,
		    (double)lat_max / 1e6, lost, dups, cpu, per, st);
		bad_run = lost || dups || bad || bogus || failed || closed ||
		    stalled || sent_total < (uint64_t)opt.senders *
		    opt.messages;
	}
	return bad_run ? 3 : 0;
}

/* --- set-up ------------------------------------------------------------- */

static void
parse_url(const char *url, struct target *t)
{
	const char *h, *slash, *port = "80";
	struct addrinfo hints = { 0 }, *res;
	char *host;
	int rc;

	if (strncmp(url, "ws://", 5) == 0)
		h = url + 5;
	else if (strncmp(url, "wss://", 6) == 0) {
		h = url + 6;
		t->tls = 1;
		port = "443";
	} else
		die("%s: only ws:// and wss:// URLs", url);
	slash = strchr(h, '/');
	t->path = strdup(slash ? slash : "/");
	t->hosthdr = slash ? strndup(h, (size_t)(slash - h)) : strdup(h);
	if (t->path == NULL || t->hosthdr == NULL)
		die("out of memory");
	if ((host = strdup(t->hosthdr)) == NULL)
		die("out of memory");
	if (host[0] == '[') {
		char *e = strchr(host, ']');

		if (e == NULL)
			die("%s: bad address", url);
		*e = '\0';
		if (e[1] == ':')
			port = e + 2;
		memmove(host, host + 1, strlen(host + 1) + 1);
	} else {
		char *colon = strrchr(host, ':');

		if (colon) {
			*colon = '\0';
			port = colon + 1;
		}
	}
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		die("%s: %s", url, gai_strerror(rc));
	memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
	t->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	free(host);
}

static unsigned long
number(const char *s, const char *what, unsigned long min, unsigned long max)
{
	char *e;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &e, 10);
	if (errno || e == s || *e || v < min || v > max)
		die("%s: %s is not a number from %lu to %lu", what, s, min,
		    max);
	return v;
}

static void
add_pids(const char *list)
{
	char *copy = strdup(list), *tok, *save;

	if (copy == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, ", ", &save); tok;
	    tok = strtok_r(NULL, ", ", &save)) {
		if (opt.npids == MAX_PIDS)
			die("at most %d server pids", MAX_PIDS);
		opt.pids[opt.npids++] = (pid_t)number(tok, "--server-pid", 1,
		    INT32_MAX);
	}
	free(copy);
}

static void
usage(void)
{
	fprintf(stderr, "usage: wsload -u ws[s]://HOST:PORT/PATH [-n CLIENTS] "
	    "[-m MESSAGES] [-s SENDERS]\n"
	    "              [-w WINDOW] [-z SIZE] [-c HANDSHAKES] "
	    "[-t TIMEOUT] [-p PID[,PID...]]\n"
	    "              [-o ORIGIN] [-Z] [-i [-r ROOMSIZE] [-H SECS] "
	    "[-b [-S] [-l FILE]]]\n"
	    "(the comment at the top of bench/wsload.c explains them)\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "clients", required_argument, NULL, 'n' },
		{ "messages", required_argument, NULL, 'm' },
		{ "senders", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "size", required_argument, NULL, 'z' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "server-pid", required_argument, NULL, 'p' },
		{ "origin", required_argument, NULL, 'o' },
		{ "idle", no_argument, NULL, 'i' },
		{ "rooms", required_argument, NULL, 'r' },
		{ "hold", required_argument, NULL, 'H' },
		{ "burst", no_argument, NULL, 'b' },
		{ "on-signal", no_argument, NULL, 'S' },
		{ "latencies", required_argument, NULL, 'l' },
		{ "deflate", no_argument, NULL, 'Z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct rlimit rl;
	struct timeval tick = { 0, 100000 };
	struct event *usr1 = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "u:n:m:s:w:z:c:t:p:o:ir:H:bSl:Zh", longs,
	    NULL)) != -1) {
		switch (ch) {
		case 'u':
			if (opt.nurls == MAX_URLS)
				die("at most %d -u", MAX_URLS);
			opt.urls[opt.nurls++] = optarg;
			break;
		case 'n':
			opt.n = (unsigned)number(optarg, "-n", 1, 1000000);
			break;
		case 'm':
			opt.messages = (uint32_t)number(optarg, "-m", 1,
			    100000000);
			break;
		case 's':
			opt.senders = (unsigned)number(optarg, "-s", 1, 100000);
			break;
		case 'w':
			opt.window = (unsigned)number(optarg, "-w", 1, 1000000);
			break;
		case 'z':
			opt.size = number(optarg, "-z", MIN_SIZE, 65536);
			break;
		case 'c':
			opt.conc = (unsigned)number(optarg, "-c", 1, 1000000);
			break;
		case 't':
			opt.timeout = (double)number(optarg, "-t", 1, 86400);
			break;
		case 'p':
			add_pids(optarg);
			break;
		case 'o':
			opt.origin = optarg;
			break;
		case 'i':
			opt.idle = 1;
			break;
		case 'r':
			opt.room = (unsigned)number(optarg, "-r", 1, 1000000);
			break;
		case 'H':
			opt.hold = (unsigned)number(optarg, "-H", 1, 86400);
			break;
		case 'b':
			opt.burst = 1;
			break;
		case 'S':
			opt.burst_sig = 1;
			break;
		case 'l':
			opt.latfile = optarg;
			break;
		case 'Z':
			opt.deflate = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || opt.nurls == 0)
		usage();
	if (!opt.idle && opt.senders > opt.n)
		die("more senders (%u) than clients (%u)", opt.senders, opt.n);
	if ((opt.room || opt.hold || opt.burst) && !opt.idle)
		die("-r, -H and -b are for the idle mode (-i)");
	if (opt.burst && !opt.room)
		die("-b needs rooms (-r)");
	if ((opt.burst_sig || opt.latfile) && !opt.burst)
		die("-S and -l go with -b");
	opt.burst_timeout = opt.timeout;
	if ((room_ok = calloc(opt.room ? opt.n / opt.room + 1 : 1,
	    sizeof(*room_ok))) == NULL)
		die("out of memory");
	for (int i = 0; i < opt.nurls; i++)
		parse_url(opt.urls[i], &targets[i]);
	signal(SIGPIPE, SIG_IGN);
	rnd_state = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;

	/* one descriptor per client, plus a few */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.n + 16)
		die("%u clients need %u descriptors; the limit is %llu "
		    "(ulimit -n)", opt.n, opt.n + 16,
		    (unsigned long long)rl.rlim_cur);

	if ((conns = calloc(opt.n, sizeof(*conns))) == NULL)
		die("out of memory");
	if (!opt.idle) {
		size_t bits = ((uint64_t)opt.senders * opt.messages + 7) / 8;

		if ((senders = calloc(opt.senders, sizeof(*senders))) == NULL)
			die("out of memory");
		for (unsigned i = 0; i < opt.senders; i++) {
			senders[i].c = &conns[i];
			senders[i].remaining = calloc(opt.messages,
			    sizeof(uint32_t));
			if (senders[i].remaining == NULL)
				die("out of memory");
		}
		for (unsigned i = 0; i < opt.n; i++)
			if ((conns[i].seen = calloc(1, bits)) == NULL)
				die("out of memory (%u clients x %zu bytes)",
				    opt.n, bits);
	}

	if ((base = event_base_new()) == NULL)
		die("event_base_new failed");
	ticker = event_new(base, -1, EV_PERSIST, ticker_cb, NULL);
	event_add(ticker, &tick);
	if (opt.burst_sig) {
		usr1 = evsignal_new(base, SIGUSR1, burst_signal, NULL);
		if (usr1 == NULL || event_add(usr1, NULL) != 0)
			die("cannot catch SIGUSR1");
	}

	rss0 = server_rss();
	cpu0 = server_cpu();
	self0 = self_cpu();
	t_start = now_ns();
	progress();
	while (next_conn < opt.n && next_conn < opt.conc)
		conn_open(next_conn++);
	if (!finished)
		event_base_dispatch(base);

	rc = report();
	for (unsigned i = 0; i < opt.n; i++) {
		if (conns[i].bev)
			bufferevent_free(conns[i].bev);
		free(conns[i].frag);
		free(conns[i].seen);
	}
	if (senders)
		for (unsigned i = 0; i < opt.senders; i++)
			free(senders[i].remaining);
	free(senders);
	free(conns);
	event_free(ticker);
	if (usr1)
		event_free(usr1);
	event_base_free(base);
	for (int i = 0; i < opt.nurls; i++) {
		free(targets[i].path);
		free(targets[i].hosthdr);
	}
	return rc;
}
