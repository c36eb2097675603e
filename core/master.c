/*
 * master.c - workers > 1: a master process that forks the workers and
 * keeps them running. Each worker is a whole squalld (its own loop,
 * plugins and listening sockets, bound with SO_REUSEPORT so that the
 * kernel spreads connections across them). The master serves nothing:
 * it writes the pid file, forwards SIGHUP and SIGUSR1, stops the workers
 * on SIGTERM or SIGINT, and starts a new worker when one dies.
 *
 * The master blocks its signals and takes them with sigtimedwait(), so
 * it needs no event loop; a worker restores the signal mask at once and
 * installs its own handlers on its loop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define RESPAWN_FAST	1	/* a worker that dies within a second... */
#define RESPAWN_DELAY	1	/* ...is restarted after a second's pause */
#define START_TIMEOUT	60	/* seconds for every worker to be ready */
#define KILL_GRACE	5	/* seconds past shutdown_timeout, then KILL */
#define POLL_NS		(50 * 1000 * 1000)	/* waits between checks */

struct worker {
	pid_t		 pid;		/* 0: not running */
	time_t		 started;
	time_t		 respawn_at;	/* when to start it again, if down */
};

static struct worker *workers;
static size_t nworkers;
static int ready_rd = -1;	/* the master's end of the ready pipe */
static sigset_t caught, saved;

static time_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/*
 * Forks worker i. The child restores the signal mask, asks to be stopped
 * if the master dies, and runs worker_main(ready_fd, i); ready_fd gets a
 * byte once it serves. Returns the pid, or -1.
 */
static pid_t
spawn(size_t i, int ready_fd, int (*worker_main)(int, int))
{
	pid_t master = getpid(), pid = fork();

	if (pid < 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot start worker %zu: %s", i,
		    strerror(errno));
		return -1;
	}
	if (pid == 0) {
		free(workers);
		close(ready_rd);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != master)
			_exit(1);
		_exit(worker_main(ready_fd, (int)i));
	}
	workers[i].pid = pid;
	workers[i].started = now_s();
	workers[i].respawn_at = 0;
	return pid;
}

static void
signal_all(int sig)
{
	for (size_t i = 0; i < nworkers; i++)
		if (workers[i].pid > 0)
			kill(workers[i].pid, sig);
}

static size_t
running(void)
{
	size_t n = 0;

	for (size_t i = 0; i < nworkers; i++)
		n += workers[i].pid > 0;
	return n;
}

static void
describe(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d",
		    WTERMSIG(status));
	else
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
}

/* Reaps dead workers; returns how many exited other than with 0. */
static int
reap(int stopping)
{
	char how[64];
	int status, bad = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < nworkers; i++) {
			struct worker *w = &workers[i];

			if (w->pid != pid)
				continue;
			w->pid = 0;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				bad++;
				sqc_plugin_cleanup_after(pid);
			}
			if (stopping)
				break;
			describe(status, how, sizeof(how));
			w->respawn_at = now_s() - w->started < RESPAWN_FAST ?
			    now_s() + RESPAWN_DELAY : now_s();
			sqc_log(SQ_LOG_ERROR, NULL, "worker %zu (pid %d) %s: "
			    "starting another", i, (int)pid, how);
			break;
		}
	}
	return bad;
}

/*
 * Waits until every worker has written its ready byte. A worker that
 * exits first (a port in use, a plugin that fails) fails the start (-1);
 * SIGTERM or SIGINT meanwhile ends it (1).
 */
static int
wait_ready(int fd, int timeout_s)
{
	time_t deadline = now_s() + timeout_s;
	size_t ready = 0;
	char byte;

	while (ready < nworkers) {
		struct timespec ts = { 0, POLL_NS };
		ssize_t n = read(fd, &byte, 1);

		if (n == 1) {
			ready++;
			continue;
		}
		if (reap(1) > 0 || running() < nworkers - ready ||
		    now_s() > deadline)
			return -1;
		switch (sigtimedwait(&caught, NULL, &ts)) {
		case SIGTERM:
		case SIGINT:
			return 1;
		}
	}
	return 0;
}

/* the master while it runs */
struct master {
	size_t		 n;
	int		 ready[2];	/* the workers' ready bytes */
	int		(*worker_main)(int, int);
	long long	 shutdown_timeout;
	int		 stopping, status;
	time_t		 deadline;	/* for the workers to stop */
};

/* stops what did start, at once (a failed or interrupted start) */
static void
stop_starting(void)
{
	signal_all(SIGTERM);
	while (running() > 0) {
		struct timespec ts = { 0, POLL_NS };

		reap(1);
		(void)sigtimedwait(&caught, NULL, &ts);
	}
}

/*
 * The readiness wait: forks every worker and waits for each one's ready
 * byte. Returns 0 when all serve; else what did start is stopped, and
 * it returns STARTED_NOT (they did not start) or STOPPED_STARTING (told
 * to stop meanwhile).
 */
enum { STARTED_NOT = 1, STOPPED_STARTING };

static int
start_workers(struct master *m)
{
	int rc = 0;

	for (size_t i = 0; i < m->n; i++)
		if (spawn(i, m->ready[1], m->worker_main) < 0)
			break;
	if (running() == m->n &&
	    (rc = wait_ready(m->ready[0], START_TIMEOUT)) == 0)
		return 0;
	if (rc > 0)
		sqc_log(SQ_LOG_INFO, NULL, "stopped while starting");
	else
		sqc_log(SQ_LOG_ERROR, NULL, "the workers did not start: "
		    "stopping");
	stop_starting();
	return rc > 0 ? STOPPED_STARTING : STARTED_NOT;
}

/* a signal the master took, while it supervises */
static void
on_signal(struct master *m, int sig)
{
	switch (sig) {
	case SIGTERM:
	case SIGINT:
		if (!m->stopping) {
			sqc_log(SQ_LOG_INFO, NULL, "stopping %zu workers",
			    running());
			sqc_notify(SQC_NOTIFY_STOPPING);
		}
		m->stopping = 1;
		m->deadline = now_s() + m->shutdown_timeout + KILL_GRACE;
		signal_all(SIGTERM);
		break;
	case SIGHUP:
		if (m->stopping)
			break;
		sqc_log(SQ_LOG_INFO, NULL, "reload: signalling %zu workers",
		    running());
		sqc_notify(SQC_NOTIFY_RELOADING);
		signal_all(SIGHUP);
		sqc_notify(SQC_NOTIFY_READY);
		break;
	case SIGUSR1:
		sqc_log_reopen();
		signal_all(SIGUSR1);
		break;
	}
}

/*
 * The supervising loop: signals forwarded, dead workers started again,
 * until every worker is gone after a stop (killed past the deadline).
 */
static void
supervise(struct master *m)
{
	for (;;) {
		struct timespec ts = { 1, 0 };
		siginfo_t si;
		int sig = sigtimedwait(&caught, &si, &ts);
		char byte;

		while (read(m->ready[0], &byte, 1) == 1)
			;	/* ready bytes of respawned workers */
		on_signal(m, sig);
		if (reap(m->stopping) > 0 && m->stopping)
			m->status = 1;
		if (m->stopping) {
			if (running() == 0)
				return;
			if (now_s() > m->deadline) {
				sqc_log(SQ_LOG_ERROR, NULL, "workers still "
				    "running after shutdown_timeout: killing "
				    "them");
				signal_all(SIGKILL);
				m->deadline = now_s() + 60;
			}
			continue;
		}
		for (size_t i = 0; i < m->n; i++)
			if (workers[i].pid == 0 && now_s() >=
			    workers[i].respawn_at)
				spawn(i, m->ready[1], m->worker_main);
	}
}

/*
 * Runs the master: starts n workers with worker_main, writes pid_file
 * once they all serve, supervises them, and returns the exit status when
 * told to stop.
 */
int
sqc_master_run(size_t n, const char *pid_file, long long shutdown_timeout,
    int (*worker_main)(int ready_fd, int index))
{
	struct master m = { n, { -1, -1 }, worker_main, shutdown_timeout, 0,
	    0, 0 };
	int rc = 1;

	if ((workers = calloc(n, sizeof(*workers))) == NULL)
		return 1;
	nworkers = n;
	sigemptyset(&caught);
	sigaddset(&caught, SIGHUP);
	sigaddset(&caught, SIGUSR1);
	sigaddset(&caught, SIGTERM);
	sigaddset(&caught, SIGINT);
	sigaddset(&caught, SIGCHLD);
	sigprocmask(SIG_BLOCK, &caught, &saved);
	if (pipe2(m.ready, O_CLOEXEC | O_NONBLOCK) != 0) {
		sqc_log(SQ_LOG_ERROR, NULL, "cannot create a pipe: %s",
		    strerror(errno));
		free(workers);
		return 1;
	}
	ready_rd = m.ready[0];
	if (sqc_pid_file_check(pid_file) != 0)
		goto out;
	sqc_reload_result_open(pid_file);	/* the workers inherit it */
	if ((rc = start_workers(&m)) != 0) {
		rc = rc == STOPPED_STARTING ? 0 : 1;
		goto out;
	}
	if (sqc_pid_file_write(pid_file) != 0) {
		m.stopping = 1;
		m.status = 1;
		signal_all(SIGTERM);
	} else {
		sqc_log(SQ_LOG_INFO, NULL, "master ready: %zu workers, pid %d",
		    n, (int)getpid());
		sqc_notify(SQC_NOTIFY_READY);
	}
	m.deadline = now_s() + shutdown_timeout + KILL_GRACE;
	supervise(&m);
	sqc_pid_file_remove(pid_file);
	sqc_log(SQ_LOG_INFO, NULL, "master stopped");
	rc = m.status;
out:
	close(m.ready[0]);
	close(m.ready[1]);
	free(workers);
	return rc;
}
