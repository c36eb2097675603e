/*
 * crash - crashes the server on purpose, for the fatal signal note:
 * /route?segv dereferences NULL, ?abort calls abort(), ?fpe divides by
 * zero (a raised SIGFPE), ?timer crashes in a timer's callback after
 * answering; anything else answers "alive".
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squall/plugin.h>

static volatile int zero;

static void
boom(int status, void *arg)
{
	*(volatile int *)(uintptr_t)zero = 1;
}

static void
handle(void *state, struct sq_req *req)
{
	const char *q = sq_req_query(req);

	if (q && strcmp(q, "timer") == 0)
		sq_timer_start(sq_req_inst(req), 1, boom, NULL);

	if (q && strcmp(q, "segv") == 0)
		*(volatile int *)(uintptr_t)zero = 1;
	else if (q && strcmp(q, "abort") == 0)
		abort();
	else if (q && strcmp(q, "fpe") == 0)
		raise(SIGFPE);
	sq_resp_printf(req, 200, "alive\n");
}

SQ_PLUGIN(.name = "crash", .version = "test", .handle = handle);
