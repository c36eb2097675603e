/*
 * signals.c - SIGHUP (reload), SIGUSR1 (reopen logs), SIGTERM and SIGINT
 * (stop) as libevent signal events, so their handling runs on the loop
 * like everything else; the pid_file; and `squalld -s`, which sends the
 * signals to the server it names.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
 * A fatal signal: one line in the error log naming the plugin and route
 * whose code was running (or squalld's own code), then the signal's
 * previous disposition takes over: the default (the process dies, with a
 * core dump where enabled) or, in the sanitizer build, the sanitizer's
 * report. Only async-signal-safe calls.
 */
static void
on_fatal(int signo, siginfo_t *si, void *ctx)
{
	char line[320], num[12];
	const char *note = sqc_inst_running(), *name = "?";
	size_t off = 0, i, n = 0;
	int v = signo;

	for (i = 0; i < NFATAL; i++)
		if (fatal[i].signo == signo)
			name = fatal[i].name;
	do
		num[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0 && n < sizeof(num));
	put(line, &off, sizeof(line), "squalld: fatal signal ");
	while (n > 0 && off + 1 < sizeof(line))
		line[off++] = num[--n];
	put(line, &off, sizeof(line), " (");
	put(line, &off, sizeof(line), name);
	put(line, &off, sizeof(line), ") in ");
	put(line, &off, sizeof(line), note ? note : "squalld itself");
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

/* At exit: removes the signal events. */
void
sqc_signals_free(void)
{
	for (size_t i = 0; i < NSIGS; i++) {
		if (events[i])
			event_free(events[i]);
		events[i] = NULL;
	}
}

/* Writes our pid to path (none when path is empty); logs a failure. */
int
sqc_pid_file_write(const char *path)
{
	FILE *fp;

	if (path == NULL || *path == '\0')
		return 0;
	if ((fp = fopen(path, "w")) == NULL) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot write pid_file %s: %s",
		    path, strerror(errno));
		return -errno;
	}
	fprintf(fp, "%d\n", (int)getpid());
	fclose(fp);
	return 0;
}

/*
 * squalld -s WHAT: reads the pid from pid_file and sends the signal.
 * Returns 0, or fills err and returns a negative errno value.
 */
int
sqc_signal_send(const char *pid_file, const char *what, char *err,
    size_t errlen)
{
	char buf[32];
	long long pid;
	size_t i, n;
	FILE *fp;

	for (i = 0; i < NSIGS; i++)
		if (strcmp(sigs[i].name, what) == 0)
			break;
	if (i == NSIGS) {
		snprintf(err, errlen, "unknown signal '%s': expected reload, "
		    "reopen or stop", what);
		return -EINVAL;
	}
	if (pid_file == NULL || *pid_file == '\0') {
		snprintf(err, errlen, "no pid_file in the configuration: "
		    "cannot find the running server");
		return -EINVAL;
	}
	if ((fp = fopen(pid_file, "r")) == NULL) {
		snprintf(err, errlen, "cannot read %s: %s (is squalld "
		    "running?)", pid_file, strerror(errno));
		return -errno;
	}
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (sqc_parse_int(buf, 2, 1LL << 30, &pid) != 0) {
		snprintf(err, errlen, "%s does not hold a process id",
		    pid_file);
		return -EINVAL;
	}
	if (kill((pid_t)pid, sigs[i].signo) != 0) {
		snprintf(err, errlen, "cannot signal process %lld (from %s): "
		    "%s", pid, pid_file, strerror(errno));
		return -errno;
	}
	return 0;
}
