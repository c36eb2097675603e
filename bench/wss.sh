#!/bin/sh
# bench/wss.sh - the chat fan-out over ws:// against wss:// on the same
# squalld build, same command, alternated on freshly started servers
# (docs/internals/wss.md, issue 17). Run from the top of a built tree:
#   bench/wss.sh [RUNS]            (3 by default)
# Prints every wsload line (squall's as ws/wss, Node's as node-ws/node-wss),
# then one line per run of perf stat (squalld only): the
# system calls of each squalld thread per delivery (perf adds to each
# system call's cost, so those runs are not in the CPU figures).
# Environment: NS ("100 1000"), DELIVERIES (2000000), SIZE (64),
# NODE (1: also Node + ws, bench/peers/node_chat.js, over ws:// and over
# https with the same certificate; needs `npm ci` in bench/peers). Node
# stands in for Kore's wss: Debian's Kore 4.1.0 completes no TLS
# handshake under OpenSSL 3 (bench/README.md, "TLS (issue 17)").
set -eu
runs=${1:-3}
NS=${NS:-100 1000}
DELIVERIES=${DELIVERIES:-2000000}
SIZE=${SIZE:-64}
NODE=${NODE:-1}
if [ "$NODE" = 1 ] && { ! command -v node >/dev/null ||
    [ ! -d bench/peers/node_modules/ws ]; }; then
	echo "wss.sh: no node or no bench/peers/node_modules/ws (npm ci): Node left out" >&2
	NODE=0
fi
top=$(pwd)
dir=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || :; fi; rm -rf "$dir"' EXIT

cc -O2 -Wall -o "$dir/wsload" bench/wsload.c \
    $(pkg-config --cflags --libs libevent libevent_openssl openssl) -lz
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj /CN=bench -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
ulimit -n 4096 2>/dev/null || :

# start: a fresh squalld on CPU 0, plain port $1, TLS port $2
start() {
	cat > "$dir/squall.ini" <<EOF
[server]
listen = 127.0.0.1:$1
listen = 127.0.0.1:$2 tls
tls_certificate = $dir/cert.pem
tls_certificate_key = $dir/key.pem
plugin_dir = $top/plugins/.libs
access_log = off
log_level = warn
max_connections = 3000

[route /chat]
plugin = chat
max_queue = 16M
EOF
	taskset -c 0 "$top/core/squalld" -c "$dir/squall.ini" \
	    >"$dir/log" 2>&1 &
	pid=$!
	i=0
	while ! curl -s -o /dev/null "http://127.0.0.1:$1/"; do
		i=$((i + 1))
		[ $i -lt 100 ] || { cat "$dir/log" >&2; exit 1; }
		sleep 0.05
	done
}

# start_node SCHEME PORT: a fresh Node chat room on CPU 0
start_node() {
	tls=
	[ "$1" = wss ] && tls="$dir/cert.pem $dir/key.pem"
	# shellcheck disable=SC2086 # tls: two words or none
	taskset -c 0 node "$top/bench/peers/node_chat.js" "$2" /chat $tls \
	    >"$dir/log" 2>&1 &
	pid=$!
	i=0
	while ! curl -sk -o /dev/null "http$([ "$1" = wss ] && echo s)://127.0.0.1:$2/"; do
		i=$((i + 1))
		[ $i -lt 100 ] || { cat "$dir/log" >&2; exit 1; }
		sleep 0.05
	done
}

stop() {
	kill "$pid"
	wait "$pid" || :
	pid=
}

# once SCHEME N [perf|node]: one run; prints wsload's line (and perf's)
port=$(( 10000 + $$ % 10000 ))	# below the ephemeral ports
once() {
	port=$((port + 2))	# a run's connections linger in TIME_WAIT
	url="ws://127.0.0.1:$port/chat"
	[ "$1" = wss ] && url="wss://127.0.0.1:$((port + 1))/chat"
	if [ "${3:-}" = node ]; then
		start_node "$1" "$port"
		url="$1://127.0.0.1:$port/chat"
	else
		start "$port" $((port + 1))
	fi
	m=$((DELIVERIES / $2))
	if [ "${3:-}" = perf ]; then
		perf stat -e raw_syscalls:sys_enter --per-thread -p "$pid" \
		    -o "$dir/perf" &
		perfpid=$!
		sleep 0.5
	fi
	line=$(taskset -c 1 "$dir/wsload" -u "$url" -p "$pid" -n "$2" \
	    -m "$m" -s 1 -w 16 -z "$SIZE" 2>/dev/null) || :
	if [ "${3:-}" = perf ]; then
		kill -INT "$perfpid"
		wait "$perfpid" || :
		printf '%s n=%s perf:' "$1" "$2"
		awk '/raw_syscalls/ { n = $2; gsub(",", "", n);
		    printf " %s=%.2f", $1, n / '"$DELIVERIES"' }' "$dir/perf"
		echo " (system calls per delivery, join included)"
	elif [ "${3:-}" = node ]; then
		echo "node-$1 $line"
	else
		echo "$1 $line"
	fi
	stop
}

for n in $NS; do
	r=0
	while [ $r -lt "$runs" ]; do
		once ws "$n"
		once wss "$n"
		if [ "$NODE" = 1 ]; then
			once ws "$n" node
			once wss "$n" node
		fi
		r=$((r + 1))
	done
done
for n in $NS; do
	once ws "$n" perf
	once wss "$n" perf
done
