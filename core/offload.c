/*
 * offload.c - the offload pool: worker threads that run plugins' blocking
 * work (sq_offload) so that one slow call never stalls the loop. Jobs go
 * to the workers through a mutex-protected queue; finished jobs come back
 * through another, and an event made active from the worker thread (safe
 * after evthread_use_pthreads) wakes the loop, which runs the done
 * callbacks. A job holds a reference on its instance.
 *
 * Threads: worker() runs on the pool's threads and touches nothing but
 * the queues and the job; everything else here runs on the loop thread.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core.h"

struct sq_job {
	struct sq_inst	*inst;
	void		(*work)(void *);
	void		(*done)(int, void *);
	void		*arg;
	int		 status;
	struct sq_job	*next;
};

struct jobq {
	struct sq_job	*head, *tail;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static struct jobq todo, finished;	/* both under lock */
static int stopping;			/* under lock */
static pthread_t *threads;
static size_t nthreads;
static size_t njobs;			/* loop thread: not yet done */
static struct event *wake;

static void
push(struct jobq *q, struct sq_job *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct sq_job *
pop(struct jobq *q)
{
	struct sq_job *j = q->head;

	if (j) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return j;
}

/* Worker thread: run jobs until the pool stops. */
static void *
worker(void *arg)
{
	struct sq_job *j;
	struct sq_inst *prev;

	pthread_mutex_lock(&lock);
	for (;;) {
		while (!stopping && todo.head == NULL)
			pthread_cond_wait(&more, &lock);
		if ((j = pop(&todo)) == NULL)
			break;		/* stopping, nothing left */
		pthread_mutex_unlock(&lock);
		prev = sqc_inst_enter(j->inst);	/* this thread's own mark */
		j->work(j->arg);
		sqc_inst_leave(prev);
		pthread_mutex_lock(&lock);
		push(&finished, j);
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
	struct jobq q;
	struct sq_job *j;

	pthread_mutex_lock(&lock);
	q = finished;
	finished.head = finished.tail = NULL;
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

struct sq_job *
sq_offload(struct sq_inst *inst, void (*work)(void *),
    void (*done)(int, void *), void *arg)
{
	struct sq_job *j;

	if (wake == NULL || (j = calloc(1, sizeof(*j))) == NULL)
		return NULL;	/* out of memory, or the pool has stopped */
	j->inst = inst;
	j->work = work;
	j->done = done;
	j->arg = arg;
	sqc_inst_ref(inst);
	njobs++;
	pthread_mutex_lock(&lock);
	push(&todo, j);
	pthread_cond_signal(&more);
	pthread_mutex_unlock(&lock);
	return j;
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
	struct jobq never;
	struct sq_job *j;

	if (wake == NULL)
		return;
	pthread_mutex_lock(&lock);
	never = todo;
	todo.head = todo.tail = NULL;
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
