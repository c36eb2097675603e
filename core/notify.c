/*
 * notify.c - tells the service manager (systemd's Type=notify) what the
 * server is doing: ready to serve, reloading, ready again, stopping. Sent
 * only by the process systemd knows as the main one: the server itself,
 * or the master when workers > 1. Without libsystemd at build time, or
 * without $NOTIFY_SOCKET at run time, nothing is sent. Loop thread (or
 * the master).
 */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "core.h"

static const char *const states[] = {
	[SQC_NOTIFY_READY] = "READY=1\nSTATUS=serving",
	[SQC_NOTIFY_RELOADING] = "RELOADING=1\nSTATUS=reloading",
	[SQC_NOTIFY_STOPPING] = "STOPPING=1\nSTATUS=stopping",
};

/*
 * Tells the service manager about state, with the main pid (ours: the
 * master's or the single server's). Failures are ignored: the service
 * manager then goes by its own timeouts.
 */
void
sqc_notify(enum sqc_notify state)
{
#ifdef HAVE_SYSTEMD
	(void)sd_pid_notifyf(0, 0, "%s\nMAINPID=%d", states[state],
	    (int)getpid());
#else
	(void)states;
	(void)state;
#endif
}
