#!/bin/sh
# browser.sh - the chat page (web/index.html) in headless Chromium, served
# by the default configuration: tests/browser/chat.mjs drives the browser
# over the DevTools protocol with Node's built-in WebSocket client. A
# plain script rather than a Criterion test: Chromium leaves helper
# processes behind for a moment, which Criterion's runner does not
# tolerate. Skipped (77) without chromium or a node with WebSocket.
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
sed -e 's|^listen *=.*|listen = 127.0.0.1:0|' \
    -e "s|^plugin_dir *=.*|plugin_dir = $build/plugins/.libs|" \
    -e "s|^root *= *\.\./web|root = $top/web|" \
    "$top/etc/squall.ini" > "$dir/squall.ini"
"$build/core/squalld" -c "$dir/squall.ini" >"$dir/log" 2>&1 &
pid=$!
. "$top/tests/lib/squalld.sh"
sq_wait_log "$dir/log" $pid "ready:"
port=$(sq_port "$dir/log")
node --no-warnings --experimental-websocket "$top/tests/browser/chat.mjs" \
    "$port"
rc=$?
kill -TERM $pid
wait $pid
status=$?
pid=
if [ $rc -eq 0 ] && ! grep -q '"GET /chat HTTP/1.1" 101' "$dir/log"; then
	echo "not ok: no 101 in the access log"; rc=1
fi
if [ $status -ne 0 ] || grep -q "Sanitizer\|runtime error:" "$dir/log"; then
	echo "not ok: squalld exited $status:"; cat "$dir/log"; rc=1
fi
if [ $rc -eq 0 ]; then
	echo "1 passed, 0 failed"
else
	echo "0 passed, 1 failed"
fi
exit $rc
