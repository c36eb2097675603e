/*
 * log.c - the error log (levels, the instance's name on each line) and the
 * access log (combined format). Both are stderr or a file; SIGUSR1 reopens
 * the files (logrotate). The core's threads name themselves here, for ps
 * and for the crash note (sqc_thread_name).
 *
 * Threads. Lines come from the loop thread and from the WebSocket thread
 * (libwebsockets' own messages), so the descriptor a line is written to
 * must never be closed under a writer: once a log has a file, its
 * descriptor number stays for the life of the process, and a reopen puts
 * the new file under that number with dup2(), which swaps atomically.
 * The number and the level are read with atomic loads. Each line is one
 * write(2). Opening, reopening and closing happen on the loop thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <grp.h>
#include <unistd.h>
#include <sys/stat.h>

#include "core.h"

static int sqc_log_level = SQ_LOG_INFO;	/* atomic */

static int error_fd = STDERR_FILENO;	/* atomic: other threads write */
static int access_fd = STDERR_FILENO;
static int access_off;			/* access_log = off */
static char *error_path;		/* NULL: stderr */
static char *access_path;		/* NULL: stderr or off */

static const char *level_names[] = { "error", "warn", "info", "debug" };

/* Parses a log_level value; -EINVAL if it is none of the four. */
int
sqc_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return -EINVAL;
}

static int
open_log(const char *path, char *err, size_t errlen)
{
	/* never through a symlink: with `user`, the folder is the user's,
	 * and root must not be led to open (and chown) another file */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW | O_NONBLOCK, 0644);
	struct stat st;

	/* and a plain file: a FIFO there would block the loop */
	if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
		errno = EINVAL;
	}

	if (fd < 0)
		snprintf(err, errlen, "cannot open log file %s: %s", path,
		    strerror(errno));
	return fd;
}

/*
 * Puts fd (a new file, or STDERR_FILENO) under the log's descriptor
 * number, as described at the top: a number once published is never
 * closed while the server runs.
 */
static void
set_fd(int *slot, int fd)
{
	int cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (fd == cur)
		return;
	if (cur == STDERR_FILENO) {
		/* first file: its own number becomes the log's */
		__atomic_store_n(slot, fd, __ATOMIC_RELEASE);
		return;
	}
	(void)dup2(fd, cur);	/* atomic: writers see old or new */
	if (fd != STDERR_FILENO)
		close(fd);
}

/* Level of the lines written (any thread reads it). */
void
sqc_log_set_level(int level)
{
	__atomic_store_n(&sqc_log_level, level, __ATOMIC_RELAXED);
}

/* Whether a line at level would be written (any thread). */
int
sqc_log_enabled(enum sq_log_level level)
{
	return (int)level <= __atomic_load_n(&sqc_log_level, __ATOMIC_RELAXED);
}

/*
 * Opens the logs named by the configuration ("-" is stderr, "off" turns
 * the access log off). On failure the previous logs stay in place.
 */
int
sqc_log_open(const char *error_log, const char *access_log, char *err,
    size_t errlen)
{
	int efd = STDERR_FILENO, afd = STDERR_FILENO;
	int efile = error_log && strcmp(error_log, "-") != 0;
	int afile = access_log && strcmp(access_log, "-") != 0 &&
	    strcmp(access_log, "off") != 0;

	if (efile && (efd = open_log(error_log, err, errlen)) < 0)
		return -EINVAL;
	if (afile && (afd = open_log(access_log, err, errlen)) < 0) {
		if (efd > STDERR_FILENO)
			close(efd);
		return -EINVAL;
	}
	set_fd(&error_fd, efd);
	set_fd(&access_fd, afd);
	access_off = access_log && strcmp(access_log, "off") == 0;
	free(error_path);
	free(access_path);
	error_path = efile ? strdup(error_log) : NULL;
	access_path = afile ? strdup(access_log) : NULL;
	return 0;
}

/* Reopens the log files at their paths (after logrotate moved them). */
int
sqc_log_reopen(void)
{
	char err[SQC_ERRLEN];
	int fd, rc = 0;

	if (error_path) {
		if ((fd = open_log(error_path, err, sizeof(err))) < 0) {
			sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
			rc = -EIO;
		} else
			set_fd(&error_fd, fd);
	}
	if (access_path) {
		if ((fd = open_log(access_path, err, sizeof(err))) < 0) {
			sqc_log(SQ_LOG_ERROR, NULL, "%s", err);
			rc = -EIO;
		} else
			set_fd(&access_fd, fd);
	}
	return rc;
}

/* The thread's part of the crash note: "the WebSocket thread". */
static __thread const char *thread_note;

/*
 * Names the calling thread: comm (at most 15 bytes) for ps, top and gdb,
 * and note for the crash note of squalld's own code on it ("the
 * WebSocket thread"). The main thread is the loop and names nothing.
 */
void
sqc_thread_name(const char *comm, const char *note)
{
	pthread_setname_np(pthread_self(), comm);
	thread_note = note;
}

/* Async-signal-safe: the calling thread's note, or NULL (the loop). */
const char *
sqc_thread_note(void)
{
	return thread_note;
}

/*
 * Writes s to the error log as is, with one write(2): async-signal-safe,
 * for the fatal signal handler.
 */
void
sqc_log_raw(const char *s, size_t len)
{
	ssize_t n = write(__atomic_load_n(&error_fd, __ATOMIC_RELAXED), s,
	    len);

	(void)n;
}

/* May the user uid (group gid, and its other groups) write in path? */
static int
writable_by(const struct stat *st, uid_t uid, gid_t gid,
    const gid_t *groups, int ngroups)
{
	if (uid == 0 || (st->st_mode & (S_IWOTH | S_IXOTH)) ==
	    (S_IWOTH | S_IXOTH))
		return 1;
	if (st->st_uid == uid)
		return (st->st_mode & (S_IWUSR | S_IXUSR)) ==
		    (S_IWUSR | S_IXUSR);
	if ((st->st_mode & (S_IWGRP | S_IXGRP)) == (S_IWGRP | S_IXGRP)) {
		if (st->st_gid == gid)
			return 1;
		for (int i = 0; i < ngroups; i++)
			if (groups[i] == st->st_gid)
				return 1;
	}
	return 0;
}

/*
 * Before the server becomes user (uid, gid): its log files become the
 * user's, and their folders must let the user create the files again,
 * or SIGUSR1 (logrotate) could not reopen them once root is gone.
 * Returns 0, or -EACCES with err naming the folder and the user.
 */
int
sqc_log_give(const char *user, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	const char *paths[2] = { error_path, access_path };
	int fds[2] = { error_fd, access_fd };
	gid_t groups[64];
	int ngroups = 64;

	if (getgrouplist(user, gid, groups, &ngroups) < 0)
		ngroups = 0;
	for (int i = 0; i < 2; i++) {
		char *dir, *slash;
		struct stat st;
		int ok;

		if (paths[i] == NULL)
			continue;
		/* only a file of its own: not a hard link to another one */
		if (fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_nlink != 1) {
			snprintf(err, errlen, "log file %s is not a plain file "
			    "with one link: not giving it to user %s", paths[i],
			    user);
			return -EACCES;
		}
		(void)fchown(fds[i], uid, gid);
		if ((dir = strdup(paths[i])) == NULL)
			return -ENOMEM;
		if ((slash = strrchr(dir, '/')) == NULL)
			snprintf(dir, strlen(dir) + 1, ".");
		else if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		ok = stat(dir, &st) == 0 && writable_by(&st, uid, gid, groups,
		    ngroups);
		if (!ok)
			snprintf(err, errlen, "log folder %s is not writable by "
			    "user %s: once squalld runs as that user, SIGUSR1 "
			    "(logrotate) could not reopen %s there; give the "
			    "folder to the user (install -d -o %s %s)", dir, user,
			    paths[i], user, dir);
		free(dir);
		if (!ok)
			return -EACCES;
	}
	return 0;
}

/* At exit, once no other thread logs: back to stderr, files closed. */
void
sqc_log_close(void)
{
	if (error_fd != STDERR_FILENO)
		close(error_fd);
	error_fd = STDERR_FILENO;
	if (access_fd != STDERR_FILENO)
		close(access_fd);
	access_fd = STDERR_FILENO;
	access_off = 0;
	free(error_path);
	free(access_path);
	error_path = access_path = NULL;
}

/* The local time's offset from UTC, as last seen: for sqc_log_prefix. */
static long tz_offset;

/*
 * The local time formatted with fmt, computed once a second: a busy server
 * logs thousands of lines in the same second. A slot per format.
 */
static const char *
now_text(int slot, const char *fmt)
{
	/* per thread: the WebSocket thread logs too */
	static __thread time_t last[3] = { -1, -1, -1 };
	static __thread char text[3][64];
	time_t now = time(NULL);
	struct tm tm;

	if (now != last[slot]) {
		localtime_r(&now, &tm);
		strftime(text[slot], sizeof(text[slot]), fmt, &tm);
		__atomic_store_n(&tz_offset, tm.tm_gmtoff, __ATOMIC_RELAXED);
		last[slot] = now;
	}
	return text[slot];
}

/* Appends v in decimal, at least width digits; async-signal-safe. */
static void
put_num(char *buf, size_t *off, size_t cap, long long v, int width)
{
	char d[24];
	int n = 0;

	if (v < 0) {
		if (*off + 1 < cap)
			buf[(*off)++] = '-';
		v = -v;
	}
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0 && n < (int)sizeof(d));
	while (n < width && n < (int)sizeof(d))
		d[n++] = '0';
	while (n > 0 && *off + 1 < cap)
		buf[(*off)++] = d[--n];
}

static void
put_str(char *buf, size_t *off, size_t cap, const char *s)
{
	while (*s && *off + 1 < cap)
		buf[(*off)++] = *s++;
}

/*
 * The start of an error line as sqc_log writes it, "YYYY-MM-DD HH:MM:SS
 * [error] PID ", into buf; returns its length. Async-signal-safe (no
 * localtime: the offset from UTC is the one the last log line saw), for
 * the fatal signal handler, whose line must read like the others.
 */
size_t
sqc_log_prefix(char *buf, size_t cap)
{
	struct timespec ts;
	long long t, days, y, m, d, era, doe, yoe, doy, mp;
	size_t off = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (long long)ts.tv_sec + __atomic_load_n(&tz_offset,
	    __ATOMIC_RELAXED);
	days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
	t -= days * 86400;
	/* the civil date of a day count from 1970-01-01 */
	days += 719468;
	era = (days >= 0 ? days : days - 146096) / 146097;
	doe = days - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y = yoe + era * 400 + (m <= 2);
	put_num(buf, &off, cap, y, 4);
	put_str(buf, &off, cap, "-");
	put_num(buf, &off, cap, m, 2);
	put_str(buf, &off, cap, "-");
	put_num(buf, &off, cap, d, 2);
	put_str(buf, &off, cap, " ");
	put_num(buf, &off, cap, t / 3600, 2);
	put_str(buf, &off, cap, ":");
	put_num(buf, &off, cap, t / 60 % 60, 2);
	put_str(buf, &off, cap, ":");
	put_num(buf, &off, cap, t % 60, 2);
	put_str(buf, &off, cap, " [error] ");
	put_num(buf, &off, cap, (long long)getpid(), 1);
	put_str(buf, &off, cap, " ");
	return off;
}

/* One write(2) per line, so lines from several workers never interleave. */
static void
write_line(int fd, char *buf, size_t len, size_t cap)
{
	if (len >= cap - 1)
		len = cap - 2;
	buf[len++] = '\n';
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* sqc_log with a va_list */
static void
vlog(enum sq_log_level level, const char *who, const char *fmt,
    va_list ap)
{
	char buf[2048];
	size_t len = 0;
	int n;

	if (!sqc_log_enabled(level))
		return;
	n = snprintf(buf, sizeof(buf), "%s [%s] %d %s%s",
	    now_text(0, "%Y-%m-%d %H:%M:%S"), level_names[level],
	    (int)getpid(), who ? who : "", who ? ": " : "");
	if (n > 0)
		len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	if (len < sizeof(buf)) {
		n = vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
		if (n > 0)
			len += (size_t)n;
	}
	write_line(__atomic_load_n(&error_fd, __ATOMIC_ACQUIRE), buf, len,
	    sizeof(buf));
}

/* Logs one line at level; who names the instance or subsystem, or NULL. */
void
sqc_log(enum sq_log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, who, fmt, ap);
	va_end(ap);
}

/*
 * Copies s into out (cap bytes) with control bytes and bytes from 0x7f on
 * written as \xHH, so that nothing a client sent can forge a log line or
 * drive a terminal; with quoted, double quotes and backslashes too (for
 * the access log's quoted fields). "-" for an empty s. Returns the
 * length.
 */
size_t
sqc_log_escape(char *out, size_t cap, const char *s, int quoted)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (s == NULL || *s == '\0')
		s = "-";
	for (; *s && n + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch >= 0x7f || (quoted && (ch == '"' ||
		    ch == '\\'))) {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		} else
			out[n++] = (char)ch;
	}
	out[n] = '\0';
	return n;
}

/* Is there an access log to write to? */
int
sqc_access_log_on(void)
{
	return !access_off;
}

static const char *const access_formats[] = { "combined", "timed", "json" };
static int access_format;	/* enum sqc_access_format */

/* access_log_format's value: its enum sqc_access_format, or -1. */
int
sqc_access_format_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(access_formats) /
	    sizeof(access_formats[0]); i++)
		if (strcmp(s, access_formats[i]) == 0)
			return (int)i;
	return -1;
}

/* The access_log_format value of a format (-T prints it). */
const char *
sqc_access_format_name(int format)
{
	return access_formats[format];
}

/* From now on, access log lines are written in format. */
void
sqc_access_log_set_format(int format)
{
	access_format = format;
}

/*
 * s as the inside of a JSON string in out (cap bytes, cut short when
 * too long): quote, backslash and control bytes escaped; the bytes of a
 * string that is not UTF-8 as \u00XX each, so that the line is always
 * valid JSON and nothing a client sent can end it early.
 */
static void
json_escape(char *out, size_t cap, const char *s)
{
	unsigned state = 0;
	int utf8;
	size_t o = 0;

	if (s == NULL)
		s = "";
	utf8 = sqc_utf8_check(&state, (const unsigned char *)s, strlen(s)) ==
	    0 && state == 0;
	for (; *s && o + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && !utf8))
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}

/*
 * Writes one access log line: nginx's combined format, the same with the
 * request's time in seconds at the end (timed), or a JSON object (json).
 * usec: microseconds since the request's first bytes came, or -1.
 */
void
sqc_access_log(const char *client, const char *method, const char *uri,
    int major, int minor, int status, size_t bytes, const char *referer,
    const char *agent, long long usec, int tls)
{
	char buf[4096], req[1024], ref[512], ua[512], rt[32];
	const char *when;
	int n;

	if (access_off)
		return;
	if (usec >= 0)
		snprintf(rt, sizeof(rt), "%lld.%03lld", usec / 1000000,
		    usec / 1000 % 1000);
	else
		snprintf(rt, sizeof(rt), "%s", access_format ==
		    SQC_ACCESS_JSON ? "null" : "-");
	if (access_format == SQC_ACCESS_JSON) {
		char cl[128], me[64];

		json_escape(cl, sizeof(cl), client ? client : "-");
		json_escape(me, sizeof(me), method);
		json_escape(req, sizeof(req), uri);
		json_escape(ref, sizeof(ref), referer);
		json_escape(ua, sizeof(ua), agent);
		when = now_text(2, "%Y-%m-%dT%H:%M:%S%z");
		n = snprintf(buf, sizeof(buf), "{\"time\":\"%s\","
		    "\"client\":\"%s\",\"method\":\"%s\",\"uri\":\"%s\","
		    "\"protocol\":\"HTTP/%d.%d\",\"scheme\":\"%s\","
		    "\"status\":%d,\"bytes\":%zu,\"referer\":\"%s\","
		    "\"user_agent\":\"%s\",\"request_time\":%s}", when, cl,
		    me, req, major, minor, tls ? "https" : "http", status,
		    bytes, ref, ua, rt);
	} else {
		sqc_log_escape(req, sizeof(req), uri, 1);
		sqc_log_escape(ref, sizeof(ref), referer, 1);
		sqc_log_escape(ua, sizeof(ua), agent, 1);
		when = now_text(1, "%d/%b/%Y:%H:%M:%S %z");
		n = snprintf(buf, sizeof(buf),
		    "%s - - [%s] \"%s %s HTTP/%d.%d\" %d %zu \"%s\" \"%s\"%s%s",
		    client ? client : "-", when, method, req, major, minor,
		    status, bytes, ref, ua, access_format == SQC_ACCESS_TIMED ?
		    " " : "", access_format == SQC_ACCESS_TIMED ? rt : "");
	}
	if (n < 0)
		return;
	write_line(access_fd, buf, (size_t)n, sizeof(buf));
}
