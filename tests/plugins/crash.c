/*
 * crash - crashes the server on purpose, for the fatal signal note:
 * /route?segv dereferences NULL, ?abort calls abort(), ?fpe divides by
 * zero (a raised SIGFPE), ?timer crashes in a timer's callback after
 * answering, ?io in the callback of a descriptor it watches (sq_io, as
 * the chat plugin drives hiredis); anything else answers "alive".
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squall/plugin.h>

static volatile int zero;

static void
boom(int status, void *arg)
{
	*(volatile int *)(uintptr_t)zero = 1;
}

static void
io_boom(int fd, int what, void *arg)
{
	*(volatile int *)(uintptr_t)zero = 1;
}

static void
handle(void *state, struct sq_req *req)
{
	const char *q = sq_req_query(req);
	struct sq_io *io;
	int p[2];

	if (q && strcmp(q, "timer") == 0)
		sq_timer_start(sq_req_inst(req), 1, boom, NULL);
	if (q && strcmp(q, "io") == 0 && pipe(p) == 0 &&
	    (io = sq_io_new(sq_req_inst(req), p[0], io_boom, NULL)) != NULL &&
	    sq_io_add(io, SQ_IO_READ) == 0 && write(p[1], "x", 1) != 1)
		abort();

	if (q && strcmp(q, "segv") == 0)
		*(volatile int *)(uintptr_t)zero = 1;
	else if (q && strcmp(q, "abort") == 0)
		abort();
	else if (q && strcmp(q, "fpe") == 0)
		raise(SIGFPE);
	sq_resp_printf(req, 200, "alive\n");
}

SQ_PLUGIN(.name = "crash", .version = "test", .handle = handle);
