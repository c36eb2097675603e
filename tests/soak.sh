#!/usr/bin/env bash
# tests/soak.sh - hours of abuse for a built squalld, for the engineer who
# wants to know it holds up: reload storms, connection bursts, WebSocket
# clients that never read, clients that vanish mid-request, and descriptor
# exhaustion, all at once, against every shipped plugin. Not part of make
# check.
#
#   tests/soak.sh [SECONDS]        (default 600; SOAK_BUILD=_asan/squall
#                                   to soak the sanitizer build)
#
# Every 10 s it prints the server's RSS, descriptors and CPU time. It
# fails (exit 1) if squalld dies, does not answer /hello within 5 s after
# the load stops, leaks descriptors, logs a sanitizer report, or does not
# exit 0 on SIGTERM. Needs curl and python3 (for the WebSocket clients).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=${SOAK_BUILD:-.}
duration=${1:-600}
squalld=$build/core/squalld
[ -x "$squalld" ] || { echo "soak: build first ($squalld missing)" >&2; exit 2; }
command -v python3 >/dev/null && command -v curl >/dev/null ||
    { echo "soak: needs python3 and curl" >&2; exit 2; }

dir=$(mktemp -d /tmp/squall-soak.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${keep:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/squall.ini" <<EOF
[server]
listen = 127.0.0.1:$port
plugin_dir = $src/$build/plugins/.libs
access_log = off
max_connections = 400
request_timeout = 5
shutdown_timeout = 2
offload_threads = 2
[route /hello]
plugin = hello
[route /chat]
plugin = chat
max_queue = 64K
max_message_size = 4K
history = 5
ping_interval = 2
ping_timeout = 2
[route /data]
plugin = data_fetch
url = /j/data.json
[route /j/*]
plugin = static
root = $dir/www
[route /multi]
plugin = multi_fetch
url.first = /j/data.json
url.second = /j/data.json
[route /delay]
plugin = delay
[route /block]
plugin = delay
mode = thread
EOF
mkdir -p "$dir/www"
echo '{"hello": "world"}' > "$dir/www/data.json"

# A descriptor limit low enough for the bursts to reach it.
(ulimit -n ${SOAK_NOFILE:-512}; exec ${SOAK_WRAP:-} "$squalld" -c "$dir/squall.ini" 2> "$dir/log") &
server=$!
for _ in $(seq 100); do
	kill -0 $server 2>/dev/null || { cat "$dir/log"; exit 1; }
	curl -fs "http://127.0.0.1:$port/hello" >/dev/null 2>&1 && break
	sleep 0.1
done
fds0=$(ls /proc/$server/fd | wc -l)
echo "soak: squalld pid $server on port $port for ${duration}s (log: $dir/log)"

end=$((SECONDS + duration))
running() { [ $SECONDS -lt $end ]; }

# Reload storm: SIGHUP every 300 ms.
( while running; do kill -HUP $server 2>/dev/null || exit; sleep 0.3; done ) &
pids+=($!)

# HTTP bursts over every route, clients giving up after 50 ms now and then.
( while running; do
	for p in hello data multi "delay?ms=200" "block?ms=100" nope; do
		curl -s -o /dev/null -m 5 "http://127.0.0.1:$port/$p" &
		curl -s -o /dev/null -m 0.05 "http://127.0.0.1:$port/$p" &
	done
	wait
done ) >/dev/null 2>&1 &
pids+=($!)

# WebSocket clients: talkers, readers that never read, clients that
# vanish, and a burst of 600 connections (past the fd limit) now and then.
cat > "$dir/ws.py" <<'EOF'
import os, random, socket, sys, time
port, end = int(sys.argv[1]), float(sys.argv[2])
HS = ("GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n").encode()
def frame(op, data):
    n = len(data)
    h = bytes([0x80 | op])
    h += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return h + b"\0\0\0\0" + data          # mask of zeros
def conn(rcvbuf=0):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port)); s.sendall(HS)
    except OSError:
        s.close(); return None
    return s
mute = []
while time.time() < end:
    r = random.random()
    try:
        if r < 0.5:
            s = conn()
            if s:
                for _ in range(20):
                    s.sendall(frame(1, b"x" * random.randint(1, 3000)))
                    s.recv(65536)
                s.close()
        elif r < 0.7:
            s = conn(2048)
            if s: mute.append(s)
            if len(mute) > 20: mute.pop(0).close()
        elif r < 0.9:
            s = conn()
            if s:
                s.sendall(frame(1, b"half")[:3]); s.close()
        else:
            burst = [conn() for _ in range(600)]
            time.sleep(0.5)
            for s in burst:
                if s: s.close()
    except OSError:
        pass
EOF
for _ in 1 2; do
	python3 "$dir/ws.py" "$port" "$(python3 -c "import time; print(time.time() + $duration)")" &
	pids+=($!)
done

cpu() { awk '{ print $14 + $15 }' /proc/$server/stat; }
while running; do
	sleep 10
	if ! kill -0 $server 2>/dev/null; then
		echo "soak: FAILED: squalld died"; keep=1; tail -n 30 "$dir/log"; exit 1
	fi
	printf 'soak: t=%4ds rss=%6d KiB fds=%4d cpu=%d ticks\n' \
	    $((duration - (end - SECONDS))) \
	    "$(awk '/VmRSS/ { print $2 }' /proc/$server/status)" \
	    "$(ls /proc/$server/fd | wc -l)" "$(cpu)"
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${pids[@]}" 2>/dev/null || true
pids=()

status=0
sleep 7	# request_timeout and the ping timeout let idle clients go
if ! curl -fs -m 5 "http://127.0.0.1:$port/hello" >/dev/null; then
	echo "soak: FAILED: /hello does not answer after the load"; status=1
fi
# What is left: the server side of client connections must all be gone;
# the fetch client may keep up to max_fetches idle connections of its own
# to the server (libcurl's cache, closed when stale), which do not count.
fds1=$(ls /proc/$server/fd | wc -l)
cached=$(ss -tanp 2>/dev/null | awk -v p="pid=$server," -v port=":$port" \
    'index($0, p) && $5 ~ port"$"' | wc -l)
served=$(ss -tanp 2>/dev/null | awk -v p="pid=$server," -v port=":$port" \
    'index($0, p) && $4 ~ port"$" && $1 != "LISTEN"' | wc -l)
echo "soak: descriptors before $fds0, after $fds1 ($cached cached by" \
    "the fetch client, $served client connections still open)"
if [ "$served" -gt 0 ] || [ "$fds1" -gt $((fds0 + cached + 2)) ]; then
	echo "soak: FAILED: descriptors leak:"
	ls -l /proc/$server/fd | sed 's/^/  /'
	ss -tanp 2>/dev/null | grep "pid=$server," | sed 's/^/  /' || true
	status=1
fi
kill -TERM $server
rc=0; wait $server || rc=$?
[ $rc -eq 0 ] || { echo "soak: FAILED: exit status $rc on SIGTERM"; status=1; }
if grep -qE 'Sanitizer|runtime error:' "$dir/log"; then
	echo "soak: FAILED: sanitizer report"; grep -m5 -A20 -E 'Sanitizer|runtime error:' "$dir/log"
	status=1
fi
echo "soak: $(grep -c 'reloaded' "$dir/log" || true) reloads," \
    "$(grep -ci 'error' "$dir/log" || true) error lines"
[ $status -eq 0 ] && echo "soak: passed" || keep=1
exit $status
