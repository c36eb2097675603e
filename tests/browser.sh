#!/bin/sh
# browser.sh - the chat page (web/index.html) in headless Chromium, served
# by the default configuration: tests/browser/chat.mjs drives the browser
# over the DevTools protocol with Node's built-in WebSocket client. A
# plain script rather than a Criterion test: Chromium leaves helper
# processes behind for a moment, which Criterion's runner does not
# tolerate. Three times: over http, over https with wss (a TLS listener
# beside the plain one, a certificate made for the run), and over http
# in the room the page's ?room=lobby names (/rooms/lobby); and a fourth
# time with /chat on a Redis stream (a redis-server of its own) shared
# by two squalld: the page's squalld is killed, lines are said on the
# other meanwhile, and the page, once its squalld is back on the same
# port, must show them, once each, without a reload. Skipped (77)
# without chromium or a node with WebSocket; the fourth run without
# redis-server.
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
if ! command -v chromium >/dev/null 2>&1 ||
    ! node --no-warnings --experimental-websocket -e \
    'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
	echo "needs chromium and node 20 or later: skipped"; exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/squall-browser.XXXXXX")
pid= pid2= rpid=
trap 'kill $pid $pid2 $rpid 2>/dev/null; rm -rf "$dir"' EXIT
. "$top/tests/lib/squalld.sh"
passed=0 failed=0

# redis_up: a redis-server of the run's own on a free port ($rport, $rpid).
redis_up() {
	for try in 1 2 3 4 5; do
		rport=$(( $(od -An -N2 -tu2 /dev/urandom) % 30000 + 20000 ))
		redis-server --port $rport --bind 127.0.0.1 --save '' \
		    --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
		rpid=$!
		i=0
		while [ $i -lt 100 ] && kill -0 $rpid 2>/dev/null; do
			grep -q "Ready to accept" "$dir/redis.log" && return 0
			i=$((i + 1))
			sleep 0.1
		done
		kill $rpid 2>/dev/null
		wait $rpid 2>/dev/null
	done
	echo "redis-server did not start:"; cat "$dir/redis.log"
	return 1
}

# squalld INI LOG: starts a squalld ($pid) and waits until it is ready.
squalld() {
	"$build/core/squalld" -c "$1" >"$2" 2>&1 &
	pid=$!
	sq_wait_log "$2" $pid "ready:"
}

# stream_setup: /chat and /rooms/* on a Redis stream; a second squalld
# ($pid2, $port2) for the node client; stop.sh and start.sh for
# chat.mjs, which kill the page's squalld and start it again on its port
# (start.sh leaves its pid in $dir/pid).
stream_setup() {
	redis_up || return 1
	sed -i -e "s|^broker *=.*|broker = redis://127.0.0.1:$rport|" \
	    -e 's|^broker_mode *=.*|broker_mode = stream|' "$dir/squall.ini"
	squalld "$dir/squall.ini" "$dir/second.log"
	pid2=$pid port2=$(sq_port "$dir/second.log")
}
stream_scripts() {
	sed "s|^listen = 127.0.0.1:0\$|listen = 127.0.0.1:$port|" \
	    "$dir/squall.ini" > "$dir/again.ini"
	echo "kill -KILL $pid" > "$dir/stop.sh"
	cat > "$dir/start.sh" <<-EOF
		. "$top/tests/lib/squalld.sh"
		: > "$dir/again.log"	# there before sq_wait_log reads it
		"$build/core/squalld" -c "$dir/again.ini" >>"$dir/again.log" 2>&1 &
		echo \$! > "$dir/pid"
		sq_wait_log "$dir/again.log" \$! "ready:" >&2
	EOF
}

# chat RUN [TLS [ROOM]]: the default configuration, with a TLS listener
# beside the plain one when TLS is given (a certificate made for the
# run); RUN stream puts /chat on a Redis stream (stream_setup).
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
	port2= recover=
	if [ "$1" = stream ]; then
		stream_setup || return 1
		recover=1
	fi
	squalld "$dir/squall.ini" "$log"
	port=$(sq_port "$log")
	tls_port=
	[ -n "${2:-}" ] && tls_port=$(sed -n \
	    's/.*listening on 127.0.0.1:\([0-9]*\) (tls).*/\1/p' "$log")
	[ -n "$recover" ] && stream_scripts
	ROOM=${3:-} NODE_PORT=$port2 \
	    STOP=${recover:+"sh $dir/stop.sh"} \
	    START=${recover:+"sh $dir/start.sh"} \
	    node --no-warnings --experimental-websocket \
	    "$top/tests/browser/chat.mjs" "$port" ${tls_port:+"$tls_port"}
	rc=$?
	adopted=
	if [ -n "$recover" ] && [ -s "$dir/pid" ]; then
		wait $pid 2>/dev/null	# the one stop.sh killed
		pid=$(cat "$dir/pid") adopted=1
		if [ $rc -eq 0 ] && ! grep -q \
		    '"GET /chat?last_id=[0-9]*-[0-9]* HTTP/1.1" 101' \
		    "$dir/again.log"; then
			echo "not ok ($1): no return with ?last_id= logged"
			rc=1
		fi
	fi
	kill -TERM $pid
	if [ -n "$adopted" ]; then
		# not this shell's child: its log says how it ended
		i=0
		while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do
			i=$((i + 1))
			sleep 0.1
		done
		status=0
		grep -q "stopped" "$dir/again.log" || status=1
	else
		wait $pid
		status=$?
	fi
	if [ -n "$recover" ]; then
		kill -TERM $pid2 $rpid
		wait $pid2 || status=1
		wait $rpid
		pid2= rpid=
	fi
	if [ $rc -ne 0 ]; then
		echo "($1: squalld's log, ports $port ${tls_port:-})"
		tail -n 20 "$log"
	fi
	pid=
	if [ $rc -eq 0 ] && ! grep -q "\"GET ${3:+/rooms/}${3:-/chat} HTTP/1.1\" 101" \
	    "$log"; then
		echo "not ok ($1): no 101 in the access log"; rc=1
	fi
	logs=$log
	[ -n "$recover" ] && logs="$log $dir/second.log $dir/again.log"
	# shellcheck disable=SC2086
	if [ $status -ne 0 ] || grep -q "Sanitizer\|runtime error:" $logs
	then
		echo "not ok ($1): squalld exited $status:"; tail -n 40 $logs
		rc=1
	fi
	return $rc
}

for run in http https room stream; do
	tls= room=
	[ $run = room ] && room=lobby
	if [ $run = stream ] && ! command -v redis-server >/dev/null 2>&1; then
		echo "stream: needs redis-server: skipped"
		continue
	fi
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
