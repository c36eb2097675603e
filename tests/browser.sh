#!/bin/sh
# browser.sh - the chat page (web/index.html) in headless Chromium, served
# by the default configuration: tests/browser/chat.mjs drives the browser
# over the DevTools protocol with Node's built-in WebSocket client. A
# plain script rather than a Criterion test: Chromium leaves helper
# processes behind for a moment, which Criterion's runner does not
# tolerate. Three times: over http, over https with wss (a TLS listener
# beside the plain one, a certificate made for the run), and over http
# in the room the page's ?room=lobby names (/rooms/lobby). Skipped (77)
# without chromium or a node with WebSocket.
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
if ! command -v chromium >/dev/null 2>&1 ||
    ! node --no-warnings --experimental-websocket -e \
    'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
	echo "needs chromium and node 20 or later: skipped"; exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/squall-browser.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
. "$top/tests/lib/squalld.sh"
passed=0 failed=0

# chat RUN [TLS]: the default configuration, with a TLS listener beside
# the plain one when TLS is given (a certificate made for the run).
chat() {
	# a log of its own: the last run's, still "ready:", must not be read
	# before the new squalld has truncated it
	log=$dir/$1.log
	sed -e 's|^listen *=.*|listen = 127.0.0.1:0|' \
	    -e "s|^plugin_dir *=.*|plugin_dir = $build/plugins/.libs|" \
	    -e "s|^root *= *\\.\\./web|root = $top/web|" \
	    "$top/etc/squall.ini" > "$dir/squall.ini"
	if [ -n "${2:-}" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		    -nodes -days 2 -subj /CN=localhost -keyout "$dir/key.pem" \
		    -out "$dir/cert.pem" >/dev/null 2>&1 || return 1
		sed -i -e "/^listen *=/a listen = 127.0.0.1:0 tls" \
		    -e "s|^tls_certificate *=.*|tls_certificate = $dir/cert.pem|" \
		    -e "s|^tls_certificate_key *=.*|tls_certificate_key = $dir/key.pem|" \
		    "$dir/squall.ini"
	fi
	"$build/core/squalld" -c "$dir/squall.ini" >"$log" 2>&1 &
	pid=$!
	sq_wait_log "$log" $pid "ready:"
	port=$(sq_port "$log")
	tls_port=
	[ -n "${2:-}" ] && tls_port=$(sed -n \
	    's/.*listening on 127.0.0.1:\([0-9]*\) (tls).*/\1/p' "$log")
	ROOM=${3:-} node --no-warnings --experimental-websocket \
	    "$top/tests/browser/chat.mjs" "$port" ${tls_port:+"$tls_port"}
	rc=$?
	kill -TERM $pid
	wait $pid
	status=$?
	if [ $rc -ne 0 ]; then
		echo "($1: squalld's log, ports $port ${tls_port:-})"
		tail -n 20 "$log"
	fi
	pid=
	if [ $rc -eq 0 ] && ! grep -q "\"GET ${3:+/rooms/}${3:-/chat} HTTP/1.1\" 101" \
	    "$log"; then
		echo "not ok ($1): no 101 in the access log"; rc=1
	fi
	if [ $status -ne 0 ] || grep -q "Sanitizer\|runtime error:" "$log"
	then
		echo "not ok ($1): squalld exited $status:"; cat "$log"; rc=1
	fi
	return $rc
}

for run in http https room; do
	tls= room=
	[ $run = room ] && room=lobby
	if [ $run = https ]; then
		if ! command -v openssl >/dev/null 2>&1; then
			echo "https: needs openssl: skipped"
			continue
		fi
		tls=tls
	fi
	if chat $run "$tls" $room; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
