/*
 * signals.c - SIGHUP (reload), SIGUSR1 (reopen logs), SIGTERM and SIGINT
 * (stop) as libevent signal events, so their handling runs on the loop
 * like everything else; the pid_file; `squalld -s`, which sends the
 * signals to the server it names; and the crash note, the line a fatal
 * signal leaves, naming the code that ran (sqc_inst_running) or the
 * thread (sqc_thread_note).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "core.h"

static const struct {
	int		 signo;
	enum sqc_sig	 what;
	const char	*name;
} sigs[] = {
	{ SIGHUP,	SQC_SIG_RELOAD,	"reload" },
	{ SIGUSR1,	SQC_SIG_REOPEN,	"reopen" },
	{ SIGTERM,	SQC_SIG_STOP,	"stop" },
	{ SIGINT,	SQC_SIG_STOP,	"stop" },
};
#define NSIGS (sizeof(sigs) / sizeof(sigs[0]))

static struct event *events[NSIGS];
static void (*user_cb)(enum sqc_sig, void *);
static void *user_arg;

static void
on_signal(evutil_socket_t signo, short what, void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;

	user_cb(sigs[i].what, user_arg);
}

/* ---- fatal signals ---------------------------------------------------- */

static const struct {
	int		 signo;
	const char	*name;
} fatal[] = {
	{ SIGSEGV, "SIGSEGV" }, { SIGBUS, "SIGBUS" }, { SIGILL, "SIGILL" },
	{ SIGFPE, "SIGFPE" }, { SIGABRT, "SIGABRT" },
};
#define NFATAL (sizeof(fatal) / sizeof(fatal[0]))
static struct sigaction fatal_old[NFATAL];

/* Appends s to buf at *off, within cap; async-signal-safe. */
static void
put(char *buf, size_t *off, size_t cap, const char *s)
{
	while (*s && *off + 1 < cap)
		buf[(*off)++] = *s++;
}

/*
 * A fatal signal: one line in the error log, in the log's format, naming
 * the plugin and route whose code was running, or squalld's own code and
 * the thread that ran it (the loop when it names none); then the signal's
 * previous disposition takes over: the default (the process dies, with a
 * core dump where enabled) or, in the sanitizer build, the sanitizer's
 * report. Only async-signal-safe calls.
 */
static void
on_fatal(int signo, siginfo_t *si, void *ctx)
{
	char line[384], num[12];
	const char *note = sqc_inst_running(), *name = "?";
	size_t off, i, n = 0;
	int v = signo;

	for (i = 0; i < NFATAL; i++)
		if (fatal[i].signo == signo)
			name = fatal[i].name;
	do
		num[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0 && n < sizeof(num));
	/* time, level and pid as every line has: whose death this is */
	off = sqc_log_prefix(line, sizeof(line));
	put(line, &off, sizeof(line), "squalld: fatal signal ");
	while (n > 0 && off + 1 < sizeof(line))
		line[off++] = num[--n];
	put(line, &off, sizeof(line), " (");
	put(line, &off, sizeof(line), name);
	put(line, &off, sizeof(line), ") in ");
	put(line, &off, sizeof(line), note ? note : "squalld itself");
	if (note == NULL && sqc_thread_note() != NULL) {
		put(line, &off, sizeof(line), ", on ");
		put(line, &off, sizeof(line), sqc_thread_note());
	}
	put(line, &off, sizeof(line), "\n");
	sqc_log_raw(line, off);
	for (i = 0; i < NFATAL; i++)
		if (fatal[i].signo == signo)
			sigaction(signo, &fatal_old[i], NULL);
	/*
	 * A fault happens again when the instruction does, now under the
	 * old disposition; a signal that was sent is sent again.
	 */
	if (si == NULL || si->si_code <= 0 || signo == SIGABRT)
		raise(signo);
}

/*
 * Installs the fatal signal handler, on an alternate stack (a stack
 * overflow is one of the faults it reports). Once per process.
 */
void
sqc_crash_handlers_init(void)
{
	static char *altstack;
	struct sigaction sa;
	stack_t ss;

	if (altstack == NULL && (altstack = malloc(SIGSTKSZ * 4)) != NULL) {
		ss.ss_sp = altstack;
		ss.ss_size = SIGSTKSZ * 4;
		ss.ss_flags = 0;
		sigaltstack(&ss, NULL);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NFATAL; i++)
		sigaction(fatal[i].signo, &sa, &fatal_old[i]);
}

/* Routes the signals to cb on the loop; SIGPIPE is ignored. */
int
sqc_signals_init(struct event_base *base,
    void (*cb)(enum sqc_sig sig, void *arg), void *arg)
{
	signal(SIGPIPE, SIG_IGN);
	user_cb = cb;
	user_arg = arg;
	for (size_t i = 0; i < NSIGS; i++) {
		events[i] = evsignal_new(base, sigs[i].signo, on_signal,
		    (void *)(uintptr_t)i);
		if (events[i] == NULL || evsignal_add(events[i], NULL) != 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * At exit: removes the signal events, and ignores their signals from now
 * on. The server is on its way out: a SIGTERM sent again (an impatient
 * operator, a supervisor) must not turn an orderly exit into a death by
 * signal, as the default disposition would.
 */
void
sqc_signals_free(void)
{
	sigset_t set, saved;

	/*
	 * event_free puts back the disposition from before libevent (the
	 * default: die) for a moment before SIG_IGN replaces it: the
	 * signals wait, blocked, meanwhile, and are discarded when
	 * unblocked. The core's threads are gone: this one gets them all.
	 */
	sigemptyset(&set);
	for (size_t i = 0; i < NSIGS; i++)
		sigaddset(&set, sigs[i].signo);
	pthread_sigmask(SIG_BLOCK, &set, &saved);
	for (size_t i = 0; i < NSIGS; i++) {
		if (events[i])
			event_free(events[i]);
		events[i] = NULL;
		signal(sigs[i].signo, SIG_IGN);
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/*
 * Is pid a running squalld? Its executable (/proc/PID/exe) must be one:
 * named squalld (" (deleted)" after an upgrade replaced the file), or
 * the very file this process runs. Arguments prove nothing: any process
 * can have one ending in /squalld, and a stale pid file may name it.
 * Where exe cannot be read (another user's process, and we are not
 * root) the kernel's name for it (comm) decides, which is the
 * executable's name unless the process renamed itself.
 */
static int
pid_is_squalld(long long pid)
{
	static const char deleted[] = " (deleted)";
	char path[64], exe[4096], comm[32];
	struct stat a, b;
	const char *base;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%lld/exe", pid);
	if ((n = readlink(path, exe, sizeof(exe) - 1)) < 0) {
		if (errno != EACCES && errno != EPERM)
			return 0;
		snprintf(path, sizeof(path), "/proc/%lld/comm", pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return 0;
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (n <= 0)
			return 0;
		comm[n] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		return strcmp(comm, "squalld") == 0;
	}
	exe[n] = '\0';
	if ((size_t)n > sizeof(deleted) - 1 &&
	    strcmp(exe + n - (sizeof(deleted) - 1), deleted) == 0)
		exe[n - (sizeof(deleted) - 1)] = '\0';
	base = strrchr(exe, '/');
	if (strcmp(base ? base + 1 : exe, "squalld") == 0)
		return 1;
	/* the same file as ours, under another name */
	return stat(path, &a) == 0 && stat("/proc/self/exe", &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* The pid in path: > 0, 0 when absent or not a pid, -errno on error. */
static long long
pid_read(const char *path)
{
	char buf[32];
	long long pid;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (sqc_parse_int(buf, 2, 1LL << 30, &pid) != 0)
		return 0;
	return pid;
}

static int result_fd = -1;	/* pid_file.reload, appended to */

/*
 * Refuses a pid file that names another running squalld: a second
 * instance needs its own (-g). Logs the refusal; returns 0 or -EEXIST.
 */
int
sqc_pid_file_check(const char *path)
{
	long long other;

	if (path == NULL || *path == '\0')
		return 0;
	if ((other = pid_read(path)) > 0 && other != getpid() &&
	    pid_is_squalld(other)) {
		sqc_log(SQ_LOG_ERROR, NULL, "pid_file %s belongs to squalld "
		    "pid %lld, which is running: give this instance its own "
		    "(squalld -g FILE)", path, other);
		return -EEXIST;
	}
	return 0;
}

/*
 * Creates pid_file.reload, where every reload adds its outcome for
 * `squalld -s reload`. Kept open: the workers a master forks afterwards
 * inherit it, whatever user they become. A failure is only a warning.
 */
void
sqc_reload_result_open(const char *pid_file)
{
	char path[4096];

	if (pid_file == NULL || *pid_file == '\0' || result_fd >= 0 ||
	    (size_t)snprintf(path, sizeof(path), "%s.reload", pid_file) >=
	    sizeof(path))
		return;
	/* a master's workers inherit it across fork (CLOEXEC is for exec) */
	if ((result_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
	    O_NOFOLLOW | O_CLOEXEC, 0644)) < 0)
		sqc_log(SQ_LOG_WARN, NULL, "cannot write %s: %s (squalld -s "
		    "reload will not hear how reloads went)", path,
		    strerror(errno));
}

/* Writes our pid to path (none when path is empty); logs a failure. */
int
sqc_pid_file_write(const char *path)
{
	char num[32];
	int fd, n;

	if (path == NULL || *path == '\0')
		return 0;
	n = snprintf(num, sizeof(num), "%d\n", (int)getpid());
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
	    O_NOFOLLOW, 0644)) < 0 || write(fd, num, (size_t)n) != n) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot write pid_file %s: %s",
		    path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* Removes the pid file and its reload results (at exit). */
void
sqc_pid_file_remove(const char *path)
{
	char tmp[4096];

	if (path == NULL || *path == '\0')
		return;
	unlink(path);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.reload", path) <
	    sizeof(tmp))
		unlink(tmp);
	if (result_fd >= 0)
		close(result_fd);
	result_fd = -1;
}

/* A reload's outcome, one line for `squalld -s reload` (NULL: it worked). */
void
sqc_reload_result(const char *error)
{
	char line[SQC_ERRLEN + 64];
	int n;

	if (result_fd < 0)
		return;
	n = error ? snprintf(line, sizeof(line), "%d failed: %s\n",
	    (int)getpid(), error) : snprintf(line, sizeof(line), "%d ok\n",
	    (int)getpid());
	if (n > 0 && write(result_fd, line, (size_t)n < sizeof(line) ?
	    (size_t)n : sizeof(line) - 1) < 0)
		sqc_log(SQ_LOG_WARN, NULL, "cannot write the reload result: "
		    "%s", strerror(errno));
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/*
 * After SIGHUP: waits (5 s at most) for the server's outcome in
 * pid_file.reload, from offset on, and gives the first failure (or none)
 * in err. Returns 0 when the reload worked, -EPROTO when it failed,
 * -ETIMEDOUT when no answer came.
 */
static int
reload_wait(const char *pid_file, off_t offset, char *err, size_t errlen)
{
	char path[4096], *text = NULL, *fail;
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	int rounds, settled = 0;
	size_t len = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s.reload", pid_file);
	/* the first answer, then 200 ms for the other workers' */
	for (rounds = 0; rounds < 250 && settled < 10; rounds++) {
		nanosleep(&pause, NULL);
		if (file_size(path) > offset)
			settled++;
	}
	if (settled == 0) {
		snprintf(err, errlen, "the server did not answer the reload "
		    "within 5 s (%s)", path);
		return -ETIMEDOUT;
	}
	if ((fp = fopen(path, "r")) == NULL || fseeko(fp, offset,
	    SEEK_SET) != 0 || getdelim(&text, &len, '\0', fp) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		if (fp)
			fclose(fp);
		free(text);
		return -EIO;
	}
	fclose(fp);
	if ((fail = strstr(text, " failed: ")) != NULL) {
		fail += 9;
		fail[strcspn(fail, "\n")] = '\0';
		snprintf(err, errlen, "the running server refused the new "
		    "configuration: %s", fail);
		free(text);
		return -EPROTO;
	}
	free(text);
	return 0;
}

/*
 * squalld -s WHAT: reads the pid from pid_file and, if it is a squalld,
 * sends the signal; for reload, waits for the server's outcome. Returns
 * 0, or fills err and returns a negative errno value.
 */
int
sqc_signal_send(const char *pid_file, const char *what, char *err,
    size_t errlen)
{
	char path[4096];
	long long pid;
	off_t before = 0;
	size_t i;

	for (i = 0; i < NSIGS; i++)
		if (strcmp(sigs[i].name, what) == 0)
			break;
	if (i == NSIGS) {
		snprintf(err, errlen, "unknown signal '%s': expected reload, "
		    "reopen or stop", what);
		return -EINVAL;
	}
	if (pid_file == NULL || *pid_file == '\0') {
		snprintf(err, errlen, "no pid_file in the configuration (nor "
		    "-g): cannot find the running server");
		return -EINVAL;
	}
	if ((pid = pid_read(pid_file)) < 0 || (pid == 0 &&
	    access(pid_file, F_OK) != 0)) {
		snprintf(err, errlen, "cannot read %s: %s (is squalld "
		    "running?)", pid_file, strerror(pid < 0 ? (int)-pid :
		    ENOENT));
		return pid < 0 ? (int)pid : -ENOENT;
	}
	if (pid == 0) {
		snprintf(err, errlen, "%s does not hold a process id",
		    pid_file);
		return -EINVAL;
	}
	if (!pid_is_squalld(pid)) {
		snprintf(err, errlen, "process %lld named in %s is not a "
		    "running squalld: a stale pid file? nothing was "
		    "signalled", pid, pid_file);
		return -ESRCH;
	}
	if (sigs[i].what == SQC_SIG_RELOAD) {
		snprintf(path, sizeof(path), "%s.reload", pid_file);
		before = file_size(path);
	}
	if (kill((pid_t)pid, sigs[i].signo) != 0) {
		snprintf(err, errlen, "cannot signal process %lld (from %s): "
		    "%s", pid, pid_file, strerror(errno));
		return -errno;
	}
	if (sigs[i].what == SQC_SIG_RELOAD)
		return reload_wait(pid_file, before, err, errlen);
	return 0;
}
