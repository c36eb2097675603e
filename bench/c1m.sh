#!/usr/bin/env bash
# bench/c1m.sh [N...] - many idle WebSockets in rooms of 100 (issue 18),
# also `bench/run c1m`. For each N (default "10000 19000"): a fresh
# squalld (CPU 0) with a chat route of rooms, and bench/wsload (CPU 1)
# opening N members in rooms of ROOM (100) at once, then holding them
# HOLD seconds (10). Reported per N: the opening rate, the server's RSS
# and the kernel's slab growth per connection (Slab in /proc/meminfo,
# both ends of each loopback connection; and the servers' whole RSS per
# connection, for servers that allocate for their connections up front,
# as Kore does), the server's CPU to open them,
# the WebSocket thread's CPU while they idle, and how long SIGTERM takes
# with all of them open. Limits are raised here only, as far as this
# machine lets a process go; past that, N is spread over several squalld
# (one room's members on one of them), each with its own wsload.
#
# BURST=1: after the idle hold, one line in every room at about the same
# time (`wsload -b -S`: every wsload sends on the same SIGUSR1, the first
# member of each room one line of BURST_SIZE bytes, 64), and a second
# table: deliveries, deliveries/s from the earliest send to the latest
# delivery over all pairs (CLOCK_MONOTONIC is one clock for all), the
# latency quantiles of all deliveries (the wsloads' histograms merged),
# lost, dup, the servers' CPU per delivery, the wsloads' CPU over the
# burst (summed), and the load average.
#
# STAGGER=1 starts each pair once the one before has settled, so that
# a large N is not opened by dozens of servers on one core at once (at
# 1,000,000, 53 pairs, some handshakes then time out); the opening rate
# is then N over the time from the first start to the last settled.
#
# SERVERS="squall node kore" runs the same N against the peers in the
# same run, one after the other: Node + ws (bench/peers/node_chat.js
# PORT '/rooms/*') and Kore 4.1 (bench/peers/kore/chat, route
# ^/rooms/...), each with a room per path like squall's; for them the
# idle CPU column is the whole server process's (for squall its
# WebSocket thread's).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROOM=${ROOM:-100}
HOLD=${HOLD:-10}
BURST=${BURST:-0}
BURST_SIZE=${BURST_SIZE:-64}
STAGGER=${STAGGER:-0}
SERVERS=${SERVERS:-squall}
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(10000 19000)

sq_build >/dev/null
case " $SERVERS " in *" node "*)
	[ -f bench/peers/node_modules/ws/package.json ] ||
	    (cd bench/peers && npm ci --no-audit --no-fund >/dev/null)
esac
case " $SERVERS " in *" kore "*)
	if [ ! -f bench/peers/kore/chat/chat.so ] ||
	    [ bench/peers/kore/chat/src/chat.c -nt bench/peers/kore/chat/chat.so ]; then
		(cd bench/peers/kore/chat && kodev build >/dev/null)
	fi
esac
if [ ! -x bench/wsload ] || [ bench/wsload.c -nt bench/wsload ]; then
	# shellcheck disable=SC2046
	cc -O2 -Wall -o bench/wsload bench/wsload.c \
	    $(pkg-config --cflags --libs libevent libevent_openssl openssl) -lz
fi
# One descriptor per connection on each side, and some. Where the limit
# cannot be raised far enough, N is spread over several pairs of a
# squalld and a wsload, each within it, members of a room on one server.
most=${sizes[0]}
for n in "${sizes[@]}"; do [ "$n" -gt "$most" ] && most=$n; done
ulimit -Hn $((most + 1000)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
per=$(($(ulimit -n) - 1000))
per=$((per / ROOM * ROOM))
[ "$per" -lt "$most" ] && say "ulimit -n is $(ulimit -n) here (cannot be" \
    "raised): pairs of a squalld and a wsload, $per members each at most"

work=$(mktemp -d "${TMPDIR:-/tmp}/squall-c1m.XXXXXX")
spids=()
trap 'for p in "${spids[@]}"; do kill -9 $p 2>/dev/null; done; rm -rf "$work"' EXIT

slab() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
ws_ticks() { # squalld's WebSocket threads, the peers' processes, in ticks
	local t=0 f
	for p in "${mpids[@]}"; do
		if [ "$srv" = squall ]; then
			f=$(grep -l squalld-ws /proc/"$p"/task/*/comm | head -n 1)
			f=${f%/comm}/stat
		else
			f=/proc/$p/stat
		fi
		t=$((t + $(awk '{ print $14 + $15 }' "$f")))
	done
	echo $t
}

# free_port: a free port below the ephemeral range: with many members
# open, their connections hold every ephemeral port of 127.0.0.1, and a
# port picked by bind(0) (from that range) fails with EADDRINUSE.
free_port() {
	python3 - <<-'EOF'
	import socket
	low = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
	for port in range(low - 1, 1024, -1):
	    s = socket.socket()
	    try:
	        s.bind(('127.0.0.1', port))
	    except OSError:
	        continue
	    finally:
	        s.close()
	    print(port)
	    break
	EOF
}

# settled I: waits until pair I's members have all joined and heard
# their rooms' joined lines (exits if it failed).
settled() {
	while ! grep -q "wsload settled" "$work/$1.out" 2>/dev/null; do
		if grep -q "mode=idle" "$work/$1.out" 2>/dev/null; then
			cat "$work/$1.err"; exit 1
		fi
		sleep 0.2
	done
}

# start_server I PORT EACH: server I of this N (CPU 0) on PORT, ready;
# its pid in spids (the one to stop), the one to measure in mpids.
start_server() {
	local i=$1 port=$2 each=$3 child
	case $srv in
	squall)
		cat > "$work/$i.ini" <<-EOF
		[server]
		listen = 127.0.0.1:$port
		plugin_dir = $PWD/plugins/.libs
		access_log = off
		max_connections = $((each + 100))
		[route /rooms/*]
		plugin = chat
		max_rooms = $((each / ROOM + 10))
		EOF
		taskset -c 0 core/squalld -c "$work/$i.ini" >"$work/$i.log" 2>&1 &
		spids+=($!)
		mpids+=($!)
		while ! grep -q "ready:" "$work/$i.log" 2>/dev/null; do
			sleep 0.05
		done
		;;
	node)
		taskset -c 0 node bench/peers/node_chat.js "$port" '/rooms/*' \
		    >"$work/$i.log" 2>&1 &
		spids+=($!)
		mpids+=($!)
		;;
	kore)
		sed -e "s|^\tbind .*|\tbind 127.0.0.1 $port|" \
		    -e "s|^load .*|load $PWD/bench/peers/kore/chat/chat.so|" \
		    -e "s|^worker_max_connections .*|worker_max_connections $((each + 100))|" \
		    -e "s|^worker_rlimit_nofiles .*|worker_rlimit_nofiles $((each + 500))|" \
		    bench/peers/kore/chat/conf/chat.conf > "$work/$i.conf"
		echo "pidfile $work/$i.pid" >> "$work/$i.conf"
		taskset -c 0 kore -fnr -c "$work/$i.conf" >"$work/$i.log" 2>&1 &
		spids+=($!)
		for _ in $(seq 1 100); do
			child=$(pgrep -P "${spids[-1]}" | head -n 1) && break
			sleep 0.05
		done
		[ -n "$child" ] || { say "kore started no worker"; exit 1; }
		mpids+=("$child")
		;;
	esac
	until python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
	    "$port" 2>/dev/null; do
		kill -0 "${spids[-1]}" 2>/dev/null || { cat "$work/$i.log"; exit 1; }
		sleep 0.05
	done
}

bursts=()
echo "| server | N | servers | open/s | RSS growth KiB/conn | RSS KiB/conn | slab KiB/conn | open CPU s | idle CPU % | SIGTERM s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for srv in $SERVERS; do
for n in "${sizes[@]}"; do
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	bargs=()
	[ "$BURST" = 1 ] && bargs=(-b -S -z "$BURST_SIZE")
	wpids=()
	rm -f "$work"/*.out "$work"/*.lat
	k=$(((n + per - 1) / per))
	each=$(((n / k + ROOM - 1) / ROOM * ROOM))
	spids=() mpids=()
	s0=$(slab)
	topen=$(date +%s.%N)
	for i in $(seq 1 "$k"); do
		port=$(free_port)
		start_server "$i" "$port" "$each"
		taskset -c 1 bench/wsload -u "ws://127.0.0.1:$port/rooms/s${i}r" \
		    -n "$each" -i -r "$ROOM" -c 500 -H "$((HOLD + 600))" -t 120 \
		    -p "${mpids[-1]}" "${bargs[@]}" \
		    ${bargs[0]:+-l "$work/$i.lat"} \
		    >"$work/$i.out" 2>"$work/$i.err" &
		wpids+=($!)
		[ "$STAGGER" = 1 ] && settled "$i"
	done
	for i in $(seq 1 "$k"); do
		settled "$i"
	done
	topen=$(awk -v a="$topen" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
	s1=$(slab)
	c0=$(ws_ticks)
	sleep "$HOLD"
	c1=$(ws_ticks)
	if [ "$BURST" = 1 ]; then
		kill -USR1 "${wpids[@]}"
		for i in $(seq 1 "$k"); do
			while ! grep -q "mode=burst" "$work/$i.out"; do
				if grep -q "mode=idle" "$work/$i.out"; then
					cat "$work/$i.err"; exit 1
				fi
				sleep 0.1
			done
		done
		# shellcheck disable=SC2016
		bursts+=("$(cat "$work"/*.lat | awk '
		    { c[$1] += $2; total += $2 }
		    END { for (u in c) print u, c[u] }' | sort -n | awk \
		    -v n="$((each * k))" -v k="$k" -v load0="$load0" -v srv="$srv" \
		    -v load1="$(cut -d' ' -f1-3 /proc/loadavg)" \
		    -v outs="$(grep -h mode=burst "$work"/*.out)" '
		    { u[NR] = $1; c[NR] = $2; total += $2 }
		    function q(p,   want, seen, i) {
			want = int(p * total); if (want < 1) want = 1
			for (i = 1; i <= NR; i++)
				if ((seen += c[i]) >= want) return u[i]
			return u[NR]
		    }
		    END {
			nl = split(outs, lines, "\n")
			for (j = 1; j <= nl; j++) {
				delete v
				m = split(lines[j], f, " ")
				for (i = 1; i <= m; i++) {
					split(f[i], kv, "="); v[kv[1]] = kv[2]
				}
				d += v["deliveries"]; rooms += v["rooms"]
				lost += v["lost"]; dup += v["dup"]
				cpu += v["server_cpu_s"]
				ccpu += v["client_cpu_s"]
				if (t0 == "" || v["t_first_ns"] + 0 < t0)
					t0 = v["t_first_ns"] + 0
				if (v["t_last_ns"] + 0 > t1) t1 = v["t_last_ns"] + 0
				if (v["lat_max_us"] + 0 > mx) mx = v["lat_max_us"] + 0
			}
			s = (t1 - t0) / 1e9
			printf "| %s | %d | %d | %d | %d | %.3f | %.0f | %.1f | %.1f | %.1f | %d | %d | %.2f | %.2f | %s → %s |\n",
			    srv, n, k, rooms, d, s, (s > 0 ? d / s : 0),
			    q(0.50) / 1000, q(0.99) / 1000, mx / 1000, lost,
			    dup, (d > 0 ? cpu * 1e6 / d : 0), ccpu, load0, load1
		    }')")
	fi
	t0=$(date +%s.%N)
	kill -TERM "${spids[@]}"
	for p in "${spids[@]}"; do wait "$p" || true; done
	t1=$(date +%s.%N)
	spids=()
	wait
	cat "$work"/*.out | awk -v n="$((each * k))" -v k="$k" -v s0="$s0" \
	    -v s1="$s1" -v c0="$c0" -v c1="$c1" -v hz="$(getconf CLK_TCK)" \
	    -v hold="$HOLD" -v t0="$t0" -v t1="$t1" -v srv="$srv" \
	    -v stagger="$STAGGER" -v topen="$topen" '
	    /mode=idle/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		if (v["open_s"] > open) open = v["open_s"]
		rss += v["rss_after_kib"] - v["rss_before_kib"]
		rsstot += v["rss_after_kib"]
		cpu += v["server_cpu_s"]
	    }
	    END {
		if (stagger == 1) open = topen
		printf "| %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
		    srv, n, k, n / open, rss / n, rsstot / n, (s1 - s0) / n, cpu,
		    100 * (c1 - c0) / hz / hold, t1 - t0
	    }'
done
done
if [ "$BURST" = 1 ]; then
	echo
	echo "One line of $BURST_SIZE bytes in every room:"
	echo
	echo "| server | N | servers | rooms | deliveries | s | deliveries/s | p50 ms | p99 ms | max ms | lost | dup | server CPU µs/delivery | wsload CPU s | load average before → after |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	printf '%s\n' "${bursts[@]}"
fi
echo
echo "(SERVERS=\"$SERVERS\" BURST=$BURST bench/c1m.sh ${sizes[*]}, ROOM=$ROOM HOLD=$HOLD; $(nproc) CPUs," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "ulimit -n $(ulimit -n), $(date -u +%Y-%m-%dT%H:%MZ))"
