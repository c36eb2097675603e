#!/usr/bin/env bash
# bench/tls.sh [RUNS] - squalld's TLS listener against nginx's, side by
# side in one run, with one certificate (P-256 ECDSA, made here) and the
# same policy (TLS 1.2 and 1.3, ECDHE with AEAD, tickets on):
#   - full handshakes/s (TLS 1.3) and resumed handshakes/s (TLS 1.2:
#     s_time does not resume TLS 1.3 sessions, whose tickets come after
#     the handshake): `openssl s_time -new` and `-reuse -tls1_2`, one
#     client connection at a time (so the rate is the client's as much
#     as the server's: compare the server's CPU time per handshake);
#   - GET /hello over keep-alive TLS: `wrk -t1 -c64`, requests/s and the
#     server's CPU µs per request; and over plain HTTP, for the overhead.
# Servers on CPU 0, clients on CPU 1. Medians of RUNS (3) runs of
# DURATION (5) seconds each. Run from the top of a built tree, as root
# for apt-get (wrk, nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${DURATION:-5}
for p in wrk nginx openssl; do
	command -v $p >/dev/null || apt-get install -y -q \
	    "$([ $p = nginx ] && echo nginx-light || echo $p)" >/dev/null
done
[ -x core/squalld ] || { echo "build squalld first"; exit 1; }
dir=$(mktemp -d /tmp/squall-tls-bench.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj /CN=localhost -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" >/dev/null 2>&1
# squall's default TLS 1.2 list (core/tls.c), for nginx too
CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
S_TLS=18601 S_PLAIN=18602 N_TLS=18603 N_PLAIN=18604

cat >"$dir/squall.ini" <<EOF
[server]
listen = 127.0.0.1:$S_TLS tls
listen = 127.0.0.1:$S_PLAIN
plugin_dir = $PWD/plugins/.libs
access_log = off
log_level = warn
tls_certificate = $dir/cert.pem
tls_certificate_key = $dir/key.pem
[route /hello]
plugin = hello
EOF
cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $dir;
	ssl_certificate $dir/cert.pem;
	ssl_certificate_key $dir/key.pem;
	ssl_protocols TLSv1.2 TLSv1.3;
	ssl_ciphers $CIPHERS;
	ssl_prefer_server_ciphers on;
	ssl_session_tickets on;
	ssl_session_cache shared:SSL:10m;
	server {
		listen 127.0.0.1:$N_TLS ssl;
		listen 127.0.0.1:$N_PLAIN;
		location /hello { return 200 "Hello, world"; }
	}
}
EOF
taskset -c 0 core/squalld -c "$dir/squall.ini" 2>"$dir/squalld.log" &
pids+=($!)
squalld=$!
taskset -c 0 nginx -c "$dir/nginx.conf" &
pids+=($!)
for port in $S_TLS $S_PLAIN $N_TLS $N_PLAIN; do
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
		sleep 0.05
	done
done
nginx_worker=$(pgrep -P "${pids[1]}" | head -n 1)

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# handshakes PORT PID S_TIME_OPTIONS: "per_second cpu_us_per_handshake"
handshakes() {
	local t0 t1 out n secs
	t0=$(ticks "$2")
	# shellcheck disable=SC2086 # the options, one per word
	# "N connections in T real seconds" (the other line counts the
	# client's own CPU seconds)
	out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$1" $3 \
	    -time "$DURATION" 2>/dev/null |
	    grep -E 'connections in [0-9.]+ real seconds' | tail -n 1)
	t1=$(ticks "$2")
	n=$(awk '{ print $1 }' <<<"$out")
	secs=$(awk '{ print $4 }' <<<"$out")
	awk -v n="$n" -v s="$secs" -v d="$((t1 - t0))" -v hz="$hz" \
	    'BEGIN { printf "%.0f %.1f\n", n / s, d * 1e6 / hz / n }'
}

# hello URL PID: "requests_per_second cpu_us_per_request"
hello() {
	local t0 t1 out
	t0=$(ticks "$2")
	out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "$1")
	t1=$(ticks "$2")
	awk -v d="$((t1 - t0))" -v hz="$hz" '
	    /^Requests\/sec/ { rps = $2 }
	    /requests in/ { n = $1 }
	    END { printf "%.0f %.1f\n", rps, d * 1e6 / hz / n }' <<<"$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A r
for run in $(seq "$RUNS"); do
	for srv in squall nginx; do
		if [ $srv = squall ]; then
			pid=$squalld tls=$S_TLS plain=$S_PLAIN
		else
			pid=$nginx_worker tls=$N_TLS plain=$N_PLAIN
		fi
		read -r a b < <(handshakes $tls "$pid" -new)
		r[$srv,new,rate]+="$a "; r[$srv,new,cpu]+="$b "
		read -r a b < <(handshakes $tls "$pid" "-reuse -tls1_2")
		r[$srv,reuse,rate]+="$a "; r[$srv,reuse,cpu]+="$b "
		read -r a b < <(hello "https://127.0.0.1:$tls/hello" "$pid")
		r[$srv,https,rate]+="$a "; r[$srv,https,cpu]+="$b "
		read -r a b < <(hello "http://127.0.0.1:$plain/hello" "$pid")
		r[$srv,http,rate]+="$a "; r[$srv,http,cpu]+="$b "
	done
	echo "run $run of $RUNS done" >&2
done

m() { tr ' ' '\n' <<<"${r[$1]}" | grep . | median; }
printf '| test | squall /s | nginx /s | squall/nginx | squall CPU µs | nginx CPU µs |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for t in new reuse https http; do
	case $t in
	new) name="full handshakes, TLS 1.3 (s_time -new)" ;;
	reuse) name="resumed, TLS 1.2 (s_time -reuse -tls1_2)" ;;
	https) name="/hello, keep-alive TLS (wrk -c64)" ;;
	http) name="/hello, plain HTTP (wrk -c64)" ;;
	esac
	sr=$(m "squall,$t,rate") nr=$(m "nginx,$t,rate")
	printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$sr" "$nr" \
	    "$(awk -v a="$sr" -v b="$nr" 'BEGIN { printf "%.2f", a / b }')" \
	    "$(m "squall,$t,cpu")" "$(m "nginx,$t,cpu")"
done
grep -v '^$' "$dir/squalld.log" | head -n 5 >&2 || true
