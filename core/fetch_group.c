/*
 * fetch_group.c - groups of fetches (sq_fetch_group_*): started together,
 * one callback once every member is done, as Tornado's `yield [f1, f2]`.
 * A group owns its members and frees them after its callback; the
 * fetches themselves are fetch.c's. Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core.h"

struct sq_fetch_group {
	struct sq_inst	*inst;
	struct sq_fetch	**fetches;
	size_t		 n, pending;
	int		 started;
	void		(*cb)(struct sq_fetch_group *, void *);
	void		*arg;
};

static void group_free(struct sq_fetch_group *g);

/* The group's callback, then the group goes. */
static void
group_finish(struct sq_fetch_group *g)
{
	if (g->cb) {
		struct sq_inst *prev = sqc_inst_enter(g->inst);

		g->cb(g, g->arg);
		sqc_inst_leave(prev);
	}
	group_free(g);
}

struct sq_fetch_group *
sq_fetch_group_new(struct sq_inst *inst)
{
	struct sq_fetch_group *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->inst = inst;
	sqc_inst_ref(inst);
	return g;
}

int
sq_fetch_group_add(struct sq_fetch_group *g, struct sq_fetch *f)
{
	struct sq_fetch **nf;

	if (g->started)
		return -EINVAL;
	if ((nf = realloc(g->fetches, (g->n + 1) * sizeof(*nf))) == NULL)
		return -ENOMEM;
	g->fetches = nf;
	if (sqc_fetch_join(f, g) != 0)
		return -EINVAL;
	g->fetches[g->n++] = f;
	return 0;
}

static void
group_free(struct sq_fetch_group *g)
{
	for (size_t i = 0; i < g->n; i++)
		sqc_fetch_release(g->fetches[i]);
	free(g->fetches);
	sqc_inst_unref(g->inst);
	free(g);
}

/* fetch.c: a member of g is done; the last one ends the group. */
void
sqc_fetch_group_done(struct sq_fetch_group *g)
{
	if (--g->pending > 0)
		return;
	group_finish(g);
}

static void
on_group_later(evutil_socket_t fd, short kind, void *arg)
{
	group_finish(arg);
}

void
sq_fetch_group_start(struct sq_fetch_group *g,
    void (*cb)(struct sq_fetch_group *, void *), void *arg)
{
	g->cb = cb;
	g->arg = arg;
	g->started = 1;
	g->pending = g->n;
	if (g->n == 0) {
		/* nothing to wait for: still call back on a later turn */
		sqc_fetch_later(on_group_later, g);
		return;
	}
	for (size_t i = 0; i < g->n; i++)
		sq_fetch_start(g->fetches[i], NULL, NULL);
}

size_t
sq_fetch_group_count(struct sq_fetch_group *g)
{
	return g->n;
}

struct sq_fetch *
sq_fetch_group_at(struct sq_fetch_group *g, size_t i)
{
	return i < g->n ? g->fetches[i] : NULL;
}

void
sq_fetch_group_cancel(struct sq_fetch_group *g)
{
	if (!g->started) {
		group_free(g);
		return;
	}
	for (size_t i = 0; i < g->n; i++)
		sq_fetch_cancel(g->fetches[i]);
}
