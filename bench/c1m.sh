#!/usr/bin/env bash
# bench/c1m.sh [N...] - many idle WebSockets in rooms of 100 (issue 18),
# also `bench/run c1m`. For each N (default "10000 19000"): a fresh
# squalld (CPU 0) with a chat route of rooms, and bench/wsload (CPU 1)
# opening N members in rooms of ROOM (100) at once, then holding them
# HOLD seconds (10). Reported per N: the opening rate, the server's RSS
# and the kernel's slab growth per connection (Slab in /proc/meminfo,
# both ends of each loopback connection), the server's CPU to open them,
# the WebSocket thread's CPU while they idle, and how long SIGTERM takes
# with all of them open. Limits are raised here only, as far as this
# machine lets a process go; N above what it allows is capped, and said.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROOM=${ROOM:-100}
HOLD=${HOLD:-10}
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(10000 19000)

sq_build >/dev/null
if [ ! -x bench/wsload ] || [ bench/wsload.c -nt bench/wsload ]; then
	# shellcheck disable=SC2046
	cc -O2 -Wall -o bench/wsload bench/wsload.c \
	    $(pkg-config --cflags --libs libevent libevent_openssl openssl)
fi
# one descriptor per connection on each side, and some
most=${sizes[0]}
for n in "${sizes[@]}"; do [ "$n" -gt "$most" ] && most=$n; done
ulimit -Hn $((most + 1000)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
cap=$(($(ulimit -n) - 1000))
[ "$cap" -lt "$most" ] && say "ulimit -n is $(ulimit -n) here (cannot be" \
    "raised): N is capped at $cap"

work=$(mktemp -d "${TMPDIR:-/tmp}/squall-c1m.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT

slab() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

echo "| N | open/s | RSS KiB/conn | slab KiB/conn | open CPU s | ws idle CPU % | SIGTERM s |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${sizes[@]}"; do
	[ "$n" -gt "$cap" ] && n=$cap
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat > "$work/squall.ini" <<-EOF
	[server]
	listen = 127.0.0.1:$port
	plugin_dir = $PWD/plugins/.libs
	access_log = off
	max_connections = $((n + 100))
	[route /rooms/*]
	plugin = chat
	max_rooms = $((n / ROOM + 10))
	EOF
	taskset -c 0 core/squalld -c "$work/squall.ini" >"$work/log" 2>&1 &
	pid=$!
	while ! grep -q "ready:" "$work/log"; do sleep 0.05; done
	s0=$(slab)
	taskset -c 1 bench/wsload -u "ws://127.0.0.1:$port/rooms/r" -n "$n" \
	    -i -r "$ROOM" -c 500 -H "$((HOLD + 30))" -t 60 -p "$pid" \
	    >"$work/out" 2>"$work/err" &
	wl=$!
	while ! grep -q "wsload settled" "$work/out" 2>/dev/null; do
		kill -0 $wl 2>/dev/null || { cat "$work/err"; exit 1; }
		sleep 0.2
	done
	s1=$(slab)
	ws=$(grep -l squalld-ws /proc/$pid/task/*/comm | head -n 1)
	ws=${ws%/comm}
	c0=$(awk '{ print $14 + $15 }' "$ws/stat")
	sleep "$HOLD"
	c1=$(awk '{ print $14 + $15 }' "$ws/stat")
	t0=$(date +%s.%N)
	kill -TERM $pid
	wait $pid || true
	t1=$(date +%s.%N)
	pid=
	wait $wl || true
	awk -v n="$n" -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$c1" \
	    -v hz="$(getconf CLK_TCK)" -v hold="$HOLD" -v t0="$t0" -v t1="$t1" '
	    /mode=idle/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "| %d | %.0f | %s | %.2f | %s | %.2f | %.2f |\n", n,
		    n / v["open_s"], v["rss_kib_per_conn"], (s1 - s0) / n,
		    v["server_cpu_s"], 100 * (c1 - c0) / hz / hold, t1 - t0
	    }' "$work/out"
done
echo
echo "(bench/c1m.sh ${sizes[*]}, ROOM=$ROOM HOLD=$HOLD; $(nproc) CPUs," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "ulimit -n $(ulimit -n), $(date -u +%Y-%m-%dT%H:%MZ))"
