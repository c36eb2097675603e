/*
 * log.c - the error log (levels, the instance's name on each line) and the
 * access log (combined format). Both are stderr or a file; SIGUSR1 reopens
 * the files (logrotate). Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

int sqc_log_level = SQ_LOG_INFO;

static int error_fd = STDERR_FILENO;
static int access_fd = STDERR_FILENO;	/* -1: off */
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
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		snprintf(err, errlen, "cannot open log file %s: %s", path,
		    strerror(errno));
	return fd;
}

static void
set_fd(int *fdp, int fd)
{
	if (*fdp > STDERR_FILENO)
		close(*fdp);
	*fdp = fd;
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
	if (access_log && strcmp(access_log, "off") == 0)
		afd = -1;
	set_fd(&error_fd, efd);
	set_fd(&access_fd, afd);
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

/*
 * Writes s to the error log as is, with one write(2): async-signal-safe,
 * for the fatal signal handler.
 */
void
sqc_log_raw(const char *s, size_t len)
{
	ssize_t n = write(error_fd, s, len);

	(void)n;
}

/* At exit: back to stderr, files closed. */
void
sqc_log_close(void)
{
	set_fd(&error_fd, STDERR_FILENO);
	if (access_fd > STDERR_FILENO)
		close(access_fd);
	access_fd = STDERR_FILENO;
	free(error_path);
	free(access_path);
	error_path = access_path = NULL;
}

/*
 * The local time formatted with fmt, computed once a second: a busy server
 * logs thousands of lines in the same second. Two slots, one per format.
 */
static const char *
now_text(int slot, const char *fmt)
{
	/* per thread: the WebSocket thread logs too */
	static __thread time_t last[2] = { -1, -1 };
	static __thread char text[2][64];
	time_t now = time(NULL);
	struct tm tm;

	if (now != last[slot]) {
		localtime_r(&now, &tm);
		strftime(text[slot], sizeof(text[slot]), fmt, &tm);
		last[slot] = now;
	}
	return text[slot];
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

/* sqc_log with a va_list. */
void
sqc_vlog(enum sq_log_level level, const char *who, const char *fmt,
    va_list ap)
{
	char buf[2048];
	size_t len = 0;
	int n;

	if ((int)level > sqc_log_level)
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
	write_line(error_fd, buf, len, sizeof(buf));
}

/* Logs one line at level; who names the instance or subsystem, or NULL. */
void
sqc_log(enum sq_log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sqc_vlog(level, who, fmt, ap);
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
	return access_fd >= 0;
}

/* Writes one access log line in the combined log format. */
void
sqc_access_log(const char *client, const char *method, const char *uri,
    int major, int minor, int status, size_t bytes, const char *referer,
    const char *agent)
{
	char buf[4096], req[1024], ref[512], ua[512];
	const char *when = now_text(1, "%d/%b/%Y:%H:%M:%S %z");
	int n;

	if (access_fd < 0)
		return;
	sqc_log_escape(req, sizeof(req), uri, 1);
	sqc_log_escape(ref, sizeof(ref), referer, 1);
	sqc_log_escape(ua, sizeof(ua), agent, 1);
	n = snprintf(buf, sizeof(buf),
	    "%s - - [%s] \"%s %s HTTP/%d.%d\" %d %zu \"%s\" \"%s\"",
	    client ? client : "-", when, method, req, major, minor, status,
	    bytes, ref, ua);
	if (n < 0)
		return;
	write_line(access_fd, buf, (size_t)n, sizeof(buf));
}
