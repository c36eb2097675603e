/*
 * offload.c - the offload pool: worker threads that run plugins' blocking
 * work (sq_offload) so that one slow call never stalls the loop. Jobs go
 * to the workers through a mutex-protected queue; finished jobs come back
 * through another, and an event made active from the worker thread (safe
 * after evthread_use_pthreads) wakes the loop, which runs the done
 * callbacks. A job holds a reference on its instance.
 *
 * The queue is bounded (offload_queue jobs waiting): past it sq_offload
 * fails at once, so that a flood of slow requests is answered 503 instead
 * of waiting behind each other. A job not started yet can be cancelled
 * (sq_job_cancel): its work never runs, its done callback still comes,
 * later, with -ECANCELED.
 *
 * Threads: worker() runs on the pool's threads and touches nothing but
 * the queues and the job; everything else here runs on the loop thread.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "core.h"

struct sq_job {
	struct sq_inst	*inst;
	void		(*work)(void *);
	void		(*done)(int, void *);
	void		*arg;
	int		 status;
	int		 started;	/* under lock: a worker took it */
	TAILQ_ENTRY(sq_job) link;	/* in todo or finished */
};

TAILQ_HEAD(jobq, sq_job);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static struct jobq todo = TAILQ_HEAD_INITIALIZER(todo);	/* under lock */
static struct jobq finished = TAILQ_HEAD_INITIALIZER(finished);	/* same */
static int stopping;			/* under lock */
static pthread_t *threads;
static size_t nthreads;
static size_t njobs;			/* loop thread: not yet done */
static size_t nwaiting;			/* under lock: in todo */
static size_t max_waiting = 1024;	/* offload_queue */
static struct event *wake;

/* The first job of q, taken off it, or NULL. */
static struct sq_job *
pop(struct jobq *q)
{
	struct sq_job *j = TAILQ_FIRST(q);

	if (j)
		TAILQ_REMOVE(q, j, link);
	return j;
}

/* Worker thread: run jobs until the pool stops. */
static void *
worker(void *arg)
{
	struct sq_job *j;
	struct sq_inst *prev;

	sqc_thread_name("squalld-offload", "an offload thread");
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!stopping && TAILQ_EMPTY(&todo))
			pthread_cond_wait(&more, &lock);
		if ((j = pop(&todo)) == NULL)
			break;		/* stopping, nothing left */
		nwaiting--;
		j->started = 1;
		pthread_mutex_unlock(&lock);
		prev = sqc_inst_enter(j->inst);	/* this thread's own mark */
		j->work(j->arg);
		sqc_inst_leave(prev);
		pthread_mutex_lock(&lock);
		TAILQ_INSERT_TAIL(&finished, j, link);
		event_active(wake, EV_READ, 0);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void
run_done(struct sq_job *j)
{
	struct sq_inst *inst = j->inst, *prev;

	njobs--;
	prev = sqc_inst_enter(inst);
	j->done(j->status, j->arg);
	sqc_inst_leave(prev);
	free(j);
	sqc_inst_unref(inst);
}

/* Loop thread: the done callbacks of finished jobs. */
static void
on_wake(evutil_socket_t fd, short kind, void *arg)
{
	struct jobq q = TAILQ_HEAD_INITIALIZER(q);
	struct sq_job *j;

	pthread_mutex_lock(&lock);
	TAILQ_CONCAT(&q, &finished, link);
	pthread_mutex_unlock(&lock);
	while ((j = pop(&q)) != NULL)
		run_done(j);
}

/*
 * Starts n worker threads. Returns 0, or a negative errno value (and no
 * thread runs).
 */
int
sqc_offload_init(struct event_base *base, size_t n)
{
	if ((wake = event_new(base, -1, 0, on_wake, NULL)) == NULL)
		return -ENOMEM;
	if ((threads = calloc(n, sizeof(*threads))) == NULL)
		return -ENOMEM;
	for (nthreads = 0; nthreads < n; nthreads++) {
		int rc = pthread_create(&threads[nthreads], NULL, worker,
		    NULL);

		if (rc != 0) {
			sqc_offload_free();
			return -rc;
		}
	}
	return 0;
}

/* How many jobs may wait for a thread (offload_queue). Loop thread. */
void
sqc_offload_set_max(size_t max)
{
	pthread_mutex_lock(&lock);
	max_waiting = max;
	pthread_mutex_unlock(&lock);
}

struct sq_job *
sq_offload(struct sq_inst *inst, void (*work)(void *),
    void (*done)(int, void *), void *arg)
{
	struct sq_job *j;

	if (wake == NULL) {
		errno = ESHUTDOWN;	/* the pool has stopped */
		return NULL;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL)
		return NULL;
	j->inst = inst;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&lock);
	if (nwaiting >= max_waiting) {
		pthread_mutex_unlock(&lock);
		free(j);
		errno = EAGAIN;		/* full: answer now, not later */
		return NULL;
	}
	TAILQ_INSERT_TAIL(&todo, j, link);
	nwaiting++;
	pthread_cond_signal(&more);
	pthread_mutex_unlock(&lock);
	sqc_inst_ref(inst);
	njobs++;
	return j;
}

int
sq_job_cancel(struct sq_job *job)
{
	int rc = -EBUSY;

	pthread_mutex_lock(&lock);
	if (!job->started) {	/* then it is in todo */
		TAILQ_REMOVE(&todo, job, link);
		nwaiting--;
		job->started = 1;	/* never to run */
		job->status = -ECANCELED;
		TAILQ_INSERT_TAIL(&finished, job, link);
		rc = 0;
	}
	pthread_mutex_unlock(&lock);
	if (rc == 0)
		event_active(wake, EV_READ, 0);	/* done comes later */
	return rc;
}

/* Jobs whose done callback has not run yet. */
size_t
sqc_offload_pending(void)
{
	return njobs;
}

/*
 * Stops the pool: queued jobs that never ran call back with -ECANCELED,
 * running ones finish first (their work cannot be interrupted), then
 * their done callbacks run. Loop thread.
 */
void
sqc_offload_free(void)
{
	struct jobq never = TAILQ_HEAD_INITIALIZER(never);
	struct sq_job *j;

	if (wake == NULL)
		return;
	pthread_mutex_lock(&lock);
	TAILQ_CONCAT(&never, &todo, link);
	TAILQ_FOREACH(j, &never, link)
		j->started = 1;		/* out of todo: sq_job_cancel says EBUSY */
	nwaiting = 0;
	stopping = 1;
	pthread_cond_broadcast(&more);
	pthread_mutex_unlock(&lock);
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	while ((j = pop(&never)) != NULL) {
		j->status = -ECANCELED;
		run_done(j);
	}
	on_wake(-1, 0, NULL);
	free(threads);
	threads = NULL;
	nthreads = 0;
	event_free(wake);
	wake = NULL;
	stopping = 0;
}
