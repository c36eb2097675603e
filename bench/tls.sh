#!/usr/bin/env bash
# shellcheck disable=SC2086 # PID lists are split on purpose
# bench/tls.sh [RUNS] - squalld's TLS listener against nginx's (and Kore
# 4.1's, when it can serve TLS), side by side in one run, with one
# certificate (P-256 ECDSA, made here by `openssl req`) and the same
# policy (TLS 1.2 and 1.3, squall's default ECDHE+AEAD list for 1.2,
# the server's order, tickets on):
#   - handshakes/s, one client connection at a time (bench/tlsload, built
#     here; see its comment for why not `openssl s_time`): full TLS 1.3,
#     full TLS 1.2, resumed TLS 1.3 and resumed TLS 1.2 (tickets), and
#     the server's CPU µs per handshake. The client costs more than the
#     server per handshake (it verifies the ECDSA signature, which costs
#     more than signing), so the rate is bound by the client as much as
#     by the server: the CPU per handshake is the figure to compare;
#   - GET /hello over keep-alive TLS and over plain HTTP:
#     `wrk -t1 -c64 -dDURATIONs`, requests/s and server CPU µs/request.
# Servers on CPU 0, clients on CPU 1 (taskset). CPU time is utime + stime
# from /proc/PID/stat before and after (all threads; nginx's worker;
# Kore's parent, worker and keymgr). Each cell: the median of RUNS (3)
# runs, the servers alternated within a run.
# Environment: DURATION (10, wrk's seconds), HS_DURATION (5, each
# handshake test's seconds), KORE (1: try Kore, bench/peers/kore/hello,
# built with kodev in the temporary directory), PROFILE (test names:
# full13 full12 res13 res12 https http; after the runs, each once more
# on squalld and on nginx under `perf record -e cpu-clock -g`, and the
# top of `perf report --no-children`), SQUALL (the built tree to
# run squalld from: the top of this tree).
# Run as root if wrk, nginx-light or kore need installing (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=$PWD/bench
SQUALL=${SQUALL:-$PWD}
RUNS=${1:-3}
DURATION=${DURATION:-10}
HS_DURATION=${HS_DURATION:-5}
KORE=${KORE:-1}
PROFILE=${PROFILE:-}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
[ "$KORE" = 1 ] && ! command -v kodev >/dev/null && need+=(kore)
[ -n "$PROFILE" ] && ! command -v perf >/dev/null && need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
[ -x "$SQUALL/core/squalld" ] || { echo "build squalld first ($SQUALL)"; exit 1; }
dir=$(mktemp -d /tmp/squall-tls-bench.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

cc -O2 -Wall -o "$dir/tlsload" "$bench/tlsload.c" -lssl -lcrypto
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj /CN=localhost -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" >/dev/null 2>&1
# squall's default TLS 1.2 list (DEFAULT_CIPHERS in core/tls.c), for the
# peers too; TLS 1.3 suites and groups are OpenSSL's defaults everywhere
CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
[ "$(sed -n '/define DEFAULT_CIPHERS/,/^$/p' "$SQUALL/core/tls.c" |
    grep -o '"[^"]*"' | tr -d '"\n')" = "$CIPHERS" ] ||
    echo "warning: core/tls.c's DEFAULT_CIPHERS is not $CIPHERS" >&2
S_TLS=18601 S_PLAIN=18602 N_TLS=18603 N_PLAIN=18604 K_TLS=18605 K_PLAIN=18606

wait_port() {
	local _
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# --- squalld -----------------------------------------------------------------
cat >"$dir/squall.ini" <<EOF
[server]
listen = 127.0.0.1:$S_TLS tls
listen = 127.0.0.1:$S_PLAIN
plugin_dir = $SQUALL/plugins/.libs
access_log = off
log_level = warn
max_connections = 10000
tls_certificate = $dir/cert.pem
tls_certificate_key = $dir/key.pem
[route /hello]
plugin = hello
EOF
taskset -c 0 "$SQUALL/core/squalld" -c "$dir/squall.ini" 2>"$dir/squalld.log" &
squalld=$!
pids+=("$squalld")

# --- nginx -------------------------------------------------------------------
# (it sets SSL_MODE_RELEASE_BUFFERS itself, as squall does)
cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
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
taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" 2>"$dir/nginx.stderr" &
nginx=$!
pids+=("$nginx")

# --- Kore 4.1 (bench/peers/kore/hello) ---------------------------------------
kore_tls=0 kore_pids=
if [ "$KORE" = 1 ]; then
	cp -r "$bench/peers/kore/hello" "$dir/hello"
	(cd "$dir/hello" && kodev build >/dev/null)
	openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 \
	    -out "$dir/dh.pem" 2>/dev/null
	sed -e "s|^load .*|load $dir/hello/hello.so|" \
	    -e "s|8889|$K_TLS|; s|8888|$K_PLAIN|" \
	    -e "s|^tls_dhparam .*|tls_dhparam $dir/dh.pem\ntls_cipher $CIPHERS|" \
	    -e "s|certfile .*|certfile $dir/cert.pem|" \
	    -e "s|certkey .*|certkey $dir/key.pem|" \
	    "$bench/peers/kore/hello/conf/hello.conf" >"$dir/kore.conf"
	echo "pidfile $dir/kore.pid" >>"$dir/kore.conf"
	(cd "$dir" && exec taskset -c 0 kore -fnr -c "$dir/kore.conf") \
	    >"$dir/kore.log" 2>&1 &
	kore=$!
	pids+=("$kore")
fi

for port in $S_TLS $S_PLAIN $N_TLS $N_PLAIN; do wait_port $port; done
nginx_worker=$(pgrep -P "$nginx" | head -n 1)
if [ "$KORE" = 1 ]; then
	wait_port $K_PLAIN
	for _ in $(seq 100); do
		[ "$(pgrep -P "$kore" | wc -l)" -ge 2 ] && break
		sleep 0.05
	done
	kore_pids="$kore $(pgrep -P "$kore" | tr '\n' ' ')"
	# Debian's Kore 4.1.0 keeps the private key in its keymgr process
	# and sets its signing method on the certificate's public key got
	# by EVP_PKEY_get1_EC_KEY/_RSA, which under OpenSSL 3 is a cached
	# copy: OpenSSL signs with the public-only provider key, "missing
	# private key", alert internal_error (bench/README.md, "Kore")
	if "$dir/tlsload" -a 127.0.0.1:$K_TLS -t 0.2 2>/dev/null |
	    grep -q 'handshakes=[1-9]'; then
		kore_tls=1
	else
		echo "kore: no TLS handshake succeeds on $K_TLS (see bench/README.md); plain HTTP only" >&2
	fi
fi

ticks() { # utime + stime of the pids, all threads
	local p s=0
	for p in "$@"; do
		s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
	done
	echo $s
}
hz=$(getconf CLK_TCK)

# handshakes PORT "PIDS" TLSLOAD_OPTIONS: "per_second cpu_us_per_handshake"
handshakes() {
	local t0 t1 out
	t0=$(ticks $2)
	# shellcheck disable=SC2086 # the options, one per word
	out=$(taskset -c 1 "$dir/tlsload" -a "127.0.0.1:$1" -t "$HS_DURATION" $3)
	t1=$(ticks $2)
	awk -v d="$((t1 - t0))" -v hz="$hz" -v opts="$3" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		if (opts ~ /-r/ && v["resumed"] != v["handshakes"])
			print "warning: " v["handshakes"] - v["resumed"] " not resumed" > "/dev/stderr"
		printf "%.0f %.1f\n", v["per_s"], d * 1e6 / hz / v["handshakes"] }' <<<"$out"
}

# hello URL "PIDS": "requests_per_second cpu_us_per_request"
hello() {
	local t0 t1 out
	t0=$(ticks $2)
	out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "$1")
	t1=$(ticks $2)
	grep -q 'Non-2xx\|Socket errors' <<<"$out" &&
	    echo "warning: $1: $(grep 'Non-2xx\|Socket errors' <<<"$out")" >&2
	awk -v d="$((t1 - t0))" -v hz="$hz" '
	    /^Requests\/sec/ { rps = $2 }
	    /requests in/ { n = $1 }
	    END { printf "%.0f %.1f\n", rps, d * 1e6 / hz / n }' <<<"$out"
}

tests="full13 full12 res13 res12 https http"
opts() {
	case $1 in
	full13) echo "" ;; full12) echo "-2" ;;
	res13) echo "-r" ;; res12) echo "-2 -r" ;;
	esac
}
servers="squall nginx"
[ "$KORE" = 1 ] && servers+=" kore"
ports() { # server: "pids tls-port plain-port"
	case $1 in
	squall) echo "$squalld $S_TLS $S_PLAIN" ;;
	nginx) echo "$nginx_worker $N_TLS $N_PLAIN" ;;
	kore) echo "${kore_pids// /,} $K_TLS $K_PLAIN" ;;
	esac
}
# one test on one server: "rate cpu"
one() { # test server
	local p tls plain
	read -r p tls plain <<<"$(ports "$2")"
	p=${p//,/ }
	case $1 in
	https) hello "https://127.0.0.1:$tls/hello" "$p" ;;
	http) hello "http://127.0.0.1:$plain/hello" "$p" ;;
	*) handshakes "$tls" "$p" "$(opts "$1")" ;;
	esac
}

declare -A r
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for run in $(seq "$RUNS"); do
	for t in $tests; do
		for srv in $servers; do
			[ $srv = kore ] && [ $kore_tls = 0 ] && [ $t != http ] && continue
			read -r a b < <(one $t $srv)
			r[$srv,$t,rate]+="$a " r[$srv,$t,cpu]+="$b "
			echo "run $run $t $srv: $a/s $b µs" >&2
		done
	done
done

median() { tr ' ' '\n' <<<"${r[$1]:-}" | { grep . || true; } | sort -g |
    awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || !b) print "-"; else printf "%.2f", a / b }'; }
name() {
	case $1 in
	full13) echo "full handshake, TLS 1.3" ;;
	full12) echo "full handshake, TLS 1.2" ;;
	res13) echo "resumed (ticket), TLS 1.3" ;;
	res12) echo "resumed (ticket), TLS 1.2" ;;
	https) echo "/hello, keep-alive TLS" ;;
	http) echo "/hello, plain HTTP" ;;
	esac
}
echo "| test | squall /s | nginx /s | kore /s | squall/nginx /s | squall CPU µs | nginx CPU µs | kore CPU µs | nginx/squall CPU |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for t in $tests; do
	sr=$(median "squall,$t,rate") nr=$(median "nginx,$t,rate")
	kr=$(median "kore,$t,rate")
	sc=$(median "squall,$t,cpu") nc=$(median "nginx,$t,cpu")
	kc=$(median "kore,$t,cpu")
	echo "| $(name $t) | $sr | $nr | $kr | $(ratio "$sr" "$nr") | $sc | $nc | $kc | $(ratio "$nc" "$sc") |"
done
echo
echo "Every run (rate/s, CPU µs per operation):"
for t in $tests; do
	for srv in $servers; do
		[ -n "${r[$srv,$t,rate]:-}" ] || continue
		echo "- $t $srv: ${r[$srv,$t,rate]}/ ${r[$srv,$t,cpu]}"
	done
done
echo
echo "Versions: $("$SQUALL/core/squalld" -V 2>&1 | head -n1) ($(git -C "$SQUALL" rev-parse --short HEAD 2>/dev/null || echo '?')); $(openssl version);"
echo "$(nginx -v 2>&1 | sed 's/nginx version: //'); libevent $(dpkg-query -W -f='${Version}' libevent-2.1-7 2>/dev/null || echo '?');"
echo "kore $(dpkg-query -W -f='${Version}' kore 2>/dev/null || echo '-') (TLS: $([ $kore_tls = 1 ] && echo yes || echo 'no handshake succeeds')); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)."

set +o pipefail	# perf report | head
for pt in $PROFILE; do
	for srv in squall nginx; do
		read -r p _ <<<"$(ports $srv)"
		perf record -e cpu-clock -g -o "$dir/perf-$srv.data" -p "$p" \
		    2>/dev/null >/dev/null &
		perf_pid=$!
		sleep 0.5
		read -r a b < <(one "$pt" $srv)
		kill -INT "$perf_pid"
		wait "$perf_pid" 2>/dev/null || true
		echo
		echo "perf, $pt on $srv ($a/s, $b µs): perf report --no-children --sort dso,sym"
		perf report -i "$dir/perf-$srv.data" --no-children --sort dso,sym \
		    --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 30
		echo "by DSO:"
		perf report -i "$dir/perf-$srv.data" --no-children --sort dso \
		    --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 8
	done
done
grep -v '^$' "$dir/squalld.log" | head -n 5 >&2 || true
