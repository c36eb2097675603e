/*
 * echo_ws - a WebSocket echo: every message comes back to its sender,
 * text as text and binary as binary. Shows the WebSocket callbacks:
 * ws_open accepting the upgrade (and setting limits), ws_message
 * answering, ws_close as the one place a session ends. A client that
 * offers the "echo" subprotocol gets it; one that offers only others is
 * refused. A plain HTTP request to the route gets 426 Upgrade Required.
 */
#include <stddef.h>

#include <squall/plugin.h>

static void
echo_handle(void *state, struct sq_req *req)
{
	sq_resp_header(req, "Upgrade", "websocket");
	sq_resp_printf(req, 426, "a WebSocket echo: connect with ws://\n");
}

static int
echo_open(void *state, struct sq_ws *ws)
{
	/* Subprotocols: none offered is fine; else "echo" must be one. */
	if (sq_ws_offered_protocol(ws, 0) != NULL &&
	    sq_ws_select_protocol(ws, "echo") != 0)
		return 400;
	/* Messages up to 64 KiB; a client 1 MiB behind is dropped. */
	sq_ws_limits(ws, 64 << 10, 1 << 20);
	return 0;	/* or an HTTP status, such as 403, to refuse */
}

static void
echo_message(void *state, struct sq_ws *ws, const void *data, size_t len,
    int binary)
{
	/* Copied and queued: data is only ours until we return. */
	sq_ws_send(ws, data, len, binary);
}

static void
echo_close(void *state, struct sq_ws *ws, int code)
{
	sq_log(sq_ws_inst(ws), SQ_LOG_DEBUG, "%s left (%d)",
	    sq_ws_client_ip(ws), code);
}

SQ_PLUGIN(
	.name = "echo_ws",
	.version = "1.0",
	.handle = echo_handle,
	.ws_open = echo_open,
	.ws_message = echo_message,
	.ws_close = echo_close,
);
