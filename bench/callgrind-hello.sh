#!/usr/bin/env bash
# bench/callgrind-hello.sh BUILD [N] - instructions squalld executes per
# GET /hello, counted by valgrind's callgrind (deterministic, unlike wall
# clock on a shared VM). BUILD is a built squall tree (core/squalld and
# plugins/.libs); it is not rebuilt.
#
# Two runs of squalld under callgrind, serving only [route /hello] on a
# free loopback port with access_log = off and log_level = error:
#   N=0: start, wait until the port listens, one warm-up GET /hello, SIGTERM
#   N:   the same, then N more GET /hello on one keep-alive connection
# Prints both totals (Ir, all threads) and (Ir(N) - Ir(0)) / N, the cost
# of one steady-state request. N defaults to 2000. KEEP=DIR keeps the
# callgrind.out files in DIR. TLS=1: over a TLS listener (a P-256
# certificate made here by `openssl req`; the handshake is in both runs,
# so the difference is the keep-alive requests' TLS records and all).
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD [N]}" && pwd)
n=${2:-2000}
squalld=$build/core/squalld
[ -x "$squalld" ] && [ -f "$build/plugins/.libs/hello.so" ] ||
	{ echo "$0: no built squalld/hello.so in $build" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "$0: valgrind missing" >&2; exit 1; }
# Debian's python3 (no dependency beyond the standard library)
py=/usr/bin/python3
[ -x $py ] || py=python3

work=$(mktemp -d "${TMPDIR:-/tmp}/sq-callgrind.XXXXXX")
tls=${TLS:-0}
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$work"/callgrind.* "$KEEP"/ 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
tls_keys=
if [ "$tls" = 1 ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -days 2 -subj /CN=localhost -keyout "$work/key.pem" \
	    -out "$work/cert.pem" >/dev/null 2>&1
	tls_keys="tls_certificate = $work/cert.pem
tls_certificate_key = $work/key.pem"
fi

# run COUNT: prints the Ir total of one squalld run that served 1 + COUNT
run() {
	local count=$1 port out i
	port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	out=$work/callgrind.out.$count
	cat >"$work/squall.ini" <<-EOF
	[server]
	listen = 127.0.0.1:$port$([ "$tls" = 1 ] && echo " tls")
	plugin_dir = $build/plugins/.libs
	access_log = off
	log_level = error
	offload_threads = 1
	$tls_keys

	[route /hello]
	plugin = hello
	EOF
	valgrind -q --tool=callgrind --callgrind-out-file="$out" \
	    "$squalld" -c "$work/squall.ini" 2>"$work/stderr.$count" &
	pid=$!
	# Wait for the listening socket (no request reaches the server
	# before it listens, so every run serves the same requests).
	for i in $(seq 600); do
		$py - "$port" <<-'EOF' && break
		import socket, sys
		s = socket.socket()
		try:
		    s.connect(("127.0.0.1", int(sys.argv[1])))
		except OSError:
		    sys.exit(1)
		EOF
		kill -0 "$pid" 2>/dev/null || { cat "$work/stderr.$count" >&2; exit 1; }
		sleep 0.1
	done
	$py - "$port" "$count" "$tls" <<-'EOF'
	import http.client, ssl, sys
	port, count = int(sys.argv[1]), int(sys.argv[2])
	if sys.argv[3] == "1":
	    ctx = ssl.create_default_context()
	    ctx.check_hostname = False
	    ctx.verify_mode = ssl.CERT_NONE
	    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=60,
	        context=ctx)
	else:
	    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
	for i in range(1 + count):      # one warm-up request, then count
	    c.request("GET", "/hello")
	    r = c.getresponse()
	    body = r.read()
	    if r.status != 200 or body != b"Hello, world":
	        sys.exit("request %d: %d %r" % (i, r.status, body))
	c.close()
	EOF
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	[ -s "$out" ] || { cat "$work/stderr.$count" >&2; exit 1; }
	sed -n 's/^summary: *//p' "$out"
}

ir0=$(run 0)
irn=$(run "$n")
echo "Ir(N=0) $ir0"
echo "Ir(N=$n) $irn"
awk -v a="$ir0" -v b="$irn" -v n="$n" \
    'BEGIN { printf "Ir per request %.1f\n", (b - a) / n }'
