#!/bin/sh
# valgrind.sh - squalld under Valgrind's memcheck through a tour of its
# features (static, hello, delay on the offload pool, data_fetch and
# multi_fetch calling the server itself, a client leaving early, a reload,
# SIGTERM): no memory error, no leak, exit 0. Skipped (77) without
# valgrind or on the sanitizer build, where AddressSanitizer does this job.
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind is not installed: skipped"; exit 77
fi
if [ "${sanitizers:-no}" = yes ]; then
	echo "sanitizer build: skipped"; exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/squall-valgrind.XXXXXX")
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
cat > "$dir/squall.ini" <<EOF2
[server]
listen = 127.0.0.1:0
plugin_dir = $build/plugins/.libs
access_log = off
[route /hello]
plugin = hello
[route /delay]
plugin = delay
mode = thread
[route /data]
plugin = data_fetch
url = /sample/data1.json
[route /multi]
plugin = multi_fetch
url.a = /sample/data1.json
url.b = /sample/data2.json
[route /*]
plugin = static
root = $top/web
EOF2
valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 "$build/core/squalld" -c "$dir/squall.ini" \
    >"$dir/log" 2>&1 &
pid=$!
. "$top/tests/lib/squalld.sh"
sq_wait_log "$dir/log" $pid "ready:"
port=$(sq_port "$dir/log")
fail=0
for path in /hello /data /multi "/delay?ms=10" / /sample/data2.json; do
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")
	[ "$code" = 200 ] || { echo "not ok: $path answered $code"; fail=1; }
done
curl -s -m 0.5 "http://127.0.0.1:$port/delay?ms=3000" >/dev/null
kill -HUP $pid
sq_wait_log "$dir/log" $pid "reloaded:"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/multi")
[ "$code" = 200 ] || { echo "not ok: /multi after the reload: $code"; fail=1; }
kill -TERM $pid
wait $pid
status=$?
pid=
if [ $status -ne 0 ] || grep -q "==[0-9]*==" "$dir/log"; then
	echo "not ok: squalld exited $status under valgrind:"; cat "$dir/log"
	fail=1
fi
if [ $fail -eq 0 ]; then
	echo "ok: no memory error or leak under valgrind"; echo "1 passed, 0 failed"
else
	echo "0 passed, 1 failed"
fi
exit $fail
