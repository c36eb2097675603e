/*
 * io.c - descriptors a plugin watches on the loop (sq_io_*), for the
 * event hooks of a library it drives there (the chat plugin's hiredis).
 * Their callbacks run marked as the plugin's code (sqc_inst_enter), as
 * timers and requests do, so a fatal signal in them, or in the library
 * under them, names the plugin and route instead of squalld itself. A
 * watch holds no reference on its instance: the plugin frees it before
 * its destroy returns. Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core.h"

struct sq_io {
	struct event	*rd, *wr;
	struct sq_inst	*inst;
	int		 fd;
	void		(*cb)(int fd, int what, void *arg);
	void		*arg;
};

/* cb may free the watch: nothing of it is touched after cb. */
static void
ready(evutil_socket_t fd, short what, void *arg)
{
	struct sq_io *io = arg;
	struct sq_inst *prev = sqc_inst_enter(io->inst);

	io->cb((int)fd, (what & EV_READ) ? SQ_IO_READ : SQ_IO_WRITE,
	    io->arg);
	sqc_inst_leave(prev);
}

struct sq_io *
sq_io_new(struct sq_inst *inst, int fd, void (*cb)(int fd, int what,
    void *arg), void *arg)
{
	struct event_base *base = sq_loop_base();
	struct sq_io *io;

	if (base == NULL || fd < 0 || cb == NULL ||
	    (io = calloc(1, sizeof(*io))) == NULL)
		return NULL;
	io->inst = inst;
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	if ((io->rd = event_new(base, fd, EV_READ | EV_PERSIST, ready,
	    io)) == NULL || (io->wr = event_new(base, fd, EV_WRITE |
	    EV_PERSIST, ready, io)) == NULL) {
		sq_io_free(io);
		return NULL;
	}
	return io;
}

int
sq_io_add(struct sq_io *io, int what)
{
	if (((what & SQ_IO_READ) && event_add(io->rd, NULL) != 0) ||
	    ((what & SQ_IO_WRITE) && event_add(io->wr, NULL) != 0))
		return -ENOMEM;
	return 0;
}

void
sq_io_del(struct sq_io *io, int what)
{
	if (what & SQ_IO_READ)
		event_del(io->rd);
	if (what & SQ_IO_WRITE)
		event_del(io->wr);
}

void
sq_io_free(struct sq_io *io)
{
	if (io == NULL)
		return;
	if (io->rd)
		event_free(io->rd);
	if (io->wr)
		event_free(io->wr);
	free(io);
}
