#!/usr/bin/env bash
# bench/deflate_room.sh - one room of compressing members (issue 18),
# squall against Node + ws with perMessageDeflate, side by side. For each
# server in SERVERS ("squall node") and each mode in MODES ("-Z plain"):
# a freshly started server on CPU 0 with one chat room (/chat; squall's
# ws_deflate is on by default, Node's peer gets WS_DEFLATE=1), and
#   taskset -c 1 bench/wsload -u ws://127.0.0.1:PORT/chat -p PID \
#       -n N -m M -s 1 -w 16 -z SIZE [-Z]
# with N=1000, M=500, SIZE=2048 (squall and ws send a message under
# 1 KiB as it is). One run each; the table gives deliveries/s, the
# server's CPU per delivery, latency, lost/dup/bad, how many members
# agreed to compress and how many messages came compressed, the server's
# VmRSS after the run (before it is stopped), and the load average
# before and after each run. Before each run it waits (3 minutes at
# most) for the 1-minute load average to fall under QUIET (1.0): the
# runs themselves keep both CPUs busy and raise it for the next one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

N=${N:-1000}
M=${M:-500}
SIZE=${SIZE:-2048}
SERVERS=${SERVERS:-squall node}
MODES=${MODES:--Z plain}
QUIET=${QUIET:-1.0}

sq_build >/dev/null
if [ ! -x bench/wsload ] || [ bench/wsload.c -nt bench/wsload ]; then
	# shellcheck disable=SC2046
	cc -O2 -Wall -o bench/wsload bench/wsload.c \
	    $(pkg-config --cflags --libs libevent libevent_openssl openssl) -lz
fi
case " $SERVERS " in *" node "*)
	[ -d bench/peers/node_modules/ws ] || (cd bench/peers && npm ci >/dev/null)
esac
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d "${TMPDIR:-/tmp}/squall-deflate.XXXXXX")
spid=
trap '[ -n "$spid" ] && kill -9 $spid 2>/dev/null; rm -rf "$work"' EXIT

kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
rss() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status; }

echo "| server | wsload | deliveries/s | CPU µs/delivery | p50 ms | p99 ms | lost, dup, bad | compressing members | compressed in | RSS after MiB | load average before → after |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"
for srv in $SERVERS; do
	for mode in $MODES; do
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		case $srv in
		squall)
			cat > "$work/squall.ini" <<-EOF
			[server]
			listen = 127.0.0.1:$port
			plugin_dir = $PWD/plugins/.libs
			access_log = off
			log_level = warn
			max_connections = $((N + 100))
			[route /chat]
			plugin = chat
			max_queue = 16M
			EOF
			taskset -c 0 core/squalld -c "$work/squall.ini" \
			    >"$work/$srv.log" 2>&1 &
			;;
		node)
			WS_DEFLATE=1 taskset -c 0 node bench/peers/node_chat.js \
			    "$port" /chat >"$work/$srv.log" 2>&1 &
			;;
		esac
		spid=$!
		for _ in $(seq 1 200); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.05
		done
		z=()
		[ "$mode" = -Z ] && z=(-Z)
		for _ in $(seq 1 180); do
			awk -v q="$QUIET" '{ exit !($1 < q) }' /proc/loadavg && break
			sleep 1
		done
		load0=$(cut -d' ' -f1-3 /proc/loadavg)
		line=$(taskset -c 1 bench/wsload -u "ws://127.0.0.1:$port/chat" \
		    -p "$spid" -n "$N" -m "$M" -s 1 -w 16 -z "$SIZE" "${z[@]}" \
		    -t 60 2>"$work/wsload.err") || {
			echo "wsload against $srv $mode failed:" >&2
			tail -n 5 "$work/wsload.err" >&2
		}
		load1=$(cut -d' ' -f1-3 /proc/loadavg)
		r=$(rss "$spid")
		kill -9 "$spid"
		wait "$spid" 2>/dev/null || true
		spid=
		echo "$srv $mode :: $line" >> "$work/all.log"
		printf '| %s | %s | %.0f | %s | %.1f | %.1f | %s, %s, %s | %s | %s | %.1f | %s → %s |\n' \
		    "$srv" "$mode" "$(kv "$line" deliveries_per_s)" \
		    "$(kv "$line" cpu_us_per_delivery)" \
		    "$(kv "$line" lat_p50_us | awk '{ print $1 / 1000 }')" \
		    "$(kv "$line" lat_p99_us | awk '{ print $1 / 1000 }')" \
		    "$(kv "$line" lost)" "$(kv "$line" dup)" "$(kv "$line" bad)" \
		    "$(kv "$line" deflate)" "$(kv "$line" compressed_in)" \
		    "$(awk -v r="$r" 'BEGIN { print r / 1024 }')" "$load0" "$load1"
	done
done
echo
echo "(bench/deflate_room.sh: N=$N M=$M SIZE=$SIZE QUIET=$QUIET, $(nproc) CPUs," \
    "$(date -u +%Y-%m-%dT%H:%MZ); $(core/squalld -V | head -n 1);" \
    "node $(node --version) with ws" \
    "$(node -p 'require("./bench/peers/node_modules/ws/package.json").version'))"
echo
echo '```'
cat "$work/all.log"
echo '```'
