#!/bin/sh
# examples.sh - the plugin starter kit works as its README says: the four
# example plugins build with their own Makefile (pkg-config only), a
# squalld routes them and each answers as it should; squall-plugin-new
# refuses what it must, and the skeleton it writes builds and answers.
#
# make check runs it against the build tree (the in-tree header, the
# uninstalled .pc, core/squalld); make installcheck against what was
# installed, through the sq_* variables below. The examples are copied
# into a temporary folder first: the source tree may be read-only
# (distcheck), and an installed docdir is no place to build.
top=$(cd "${top_srcdir:-$(dirname "$0")/..}" && pwd)
build=$(cd "${top_builddir:-.}" && pwd)
examples=${sq_examples:-$top/examples/plugins}
squalld=${sq_squalld:-$build/core/squalld}
plugin_new=${sq_plugin_new:-$top/scripts/squall-plugin-new}
# The in-tree header first, whatever an older installed squall offers.
cppflags=${sq_cppflags:--I$top/plugin-api}
if [ -z "$sq_installed" ]; then
	PKG_CONFIG_PATH=$build/plugin-api${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
	export PKG_CONFIG_PATH
fi
pkg_config=${sq_pkg_config:-pkg-config}
cflags="-O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes \
-Wmissing-prototypes -Wno-unused-parameter -Werror"
for tool in curl make cc; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "$tool is missing"; echo "0 passed, 1 failed"; exit 1
	fi
done
# The caller's make flags (-j, TESTS=...) are not the examples' business.
unset MAKEFLAGS MFLAGS
dir=$(mktemp -d "${TMPDIR:-/tmp}/squall-examples.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok $1"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $1"; }
check() {	# check WHAT COMMAND...
	what=$1; shift
	if "$@" >"$dir/out" 2>&1; then ok "$what"; else
		notok "$what"; sed 's/^/  /' "$dir/out"; fi
}
kit() {		# kit FOLDER TARGET...: the kit's Makefile, as a user runs it
	d=$1; shift
	(cd "$d" && make PKG_CONFIG="$pkg_config" CPPFLAGS="$cppflags" \
	    CFLAGS="$cflags" "$@")
}

# What the kit's Makefile relies on: the .pc names a folder that has
# the header (under DESTDIR too), and brings json-c's flags.
pcdir=$($pkg_config --cflags-only-I squall-plugin | tr ' ' '\n' |
    sed -n 's/^-I//p' | head -n 1)
check "squall-plugin.pc names the header's folder" \
    test -f "$pcdir/squall/plugin.h"
check "squall-plugin.pc brings json-c" sh -c \
    "$pkg_config --libs squall-plugin | grep -q -- -ljson-c"

mkdir "$dir/ex"
cp "$examples"/*.c "$examples"/GNUmakefile "$examples"/README "$dir/ex/" ||
    { echo "no examples in $examples"; echo "0 passed, 1 failed"; exit 1; }
check "the examples build with their Makefile" kit "$dir/ex"
for p in hello counter async echo_ws; do
	check "$p.so built" test -f "$dir/ex/$p.so"
done
# One hello: the kit's is the plugin squall ships, so they never drift.
if [ -z "$sq_installed" ]; then
	check "the kit's hello.c is plugins/hello.c" \
	    cmp -s "$examples/hello.c" "$top/plugins/hello.c"
fi

# squall-plugin-new: refusals first, then a skeleton to build.
cd "$dir" || exit 1
for bad in 1abc my-plug int "" "a b"; do
	check "squall-plugin-new refuses '$bad'" \
	    sh -c "! sh '$plugin_new' '$bad' && ! test -e '$bad'"
done
check "squall-plugin-new refuses no NAME" sh -c "! sh '$plugin_new'"
check "squall-plugin-new --help exits 0 with the usage" \
    sh -c "sh '$plugin_new' --help | grep -q 'usage: ' && sh '$plugin_new' -h >/dev/null"
check "squall-plugin-new writes a skeleton" sh "$plugin_new" myplug
check "squall-plugin-new wrote NAME/NAME.c and NAME/Makefile" \
    test -f myplug/myplug.c -a -f myplug/Makefile
check "squall-plugin-new refuses an existing folder" \
    sh -c "! sh '$plugin_new' myplug"
check "the skeleton is left as it was" grep -q myplug_handle myplug/myplug.c
check "the skeleton builds with its Makefile" kit myplug
if [ -n "$sq_installed" ]; then	# the build tree's .pc has no plugindir
	check "the skeleton's make install copies it to plugindir" sh -c \
	    "cd myplug && make PKG_CONFIG='$pkg_config' install \
	    DESTDIR='$dir/inst' && find '$dir/inst' -name myplug.so | grep -q ."
fi
cd - >/dev/null || exit 1

cat > "$dir/squall.ini" <<EOF
[server]
listen = 127.0.0.1:0
plugin_dir = $dir/ex
access_log = off
[route /hello]
plugin = hello
text = hello from the kit
[route /counter]
plugin = counter
[route /async]
plugin = async
url = /hello
delay_ms = 50
[route /slow]
plugin = async
url = /hello
delay_ms = 10000
[route /echo]
plugin = echo_ws
[route /myplug]
plugin = $dir/myplug/myplug.so
EOF
: >"$dir/log"	# before the waiting below greps it
"$squalld" -c "$dir/squall.ini" >"$dir/log" 2>&1 &
pid=$!
. "$top/tests/lib/squalld.sh"
sq_wait_log "$dir/log" $pid "ready:"
url=http://127.0.0.1:$(sq_port "$dir/log")

answers() {	# answers PATH EXPECTED: the body is EXPECTED
	got=$(curl -s -m 10 "$url$1")
	if [ "$got" = "$2" ]; then ok "$1 answers '$2'"; else
		notok "$1 answers '$2'"; echo "  got '$got'"; fi
}
answers /hello "hello from the kit"
answers /counter '{"count":1}'
answers /counter '{"count":2}'
answers /async "hello from the kit"
answers /myplug "Hello from myplug"
# A client that leaves while the timer runs: the abort callback cancels
# it, and the server goes on (and stops promptly at the end).
curl -s -m 0.3 "$url/slow" >/dev/null
answers /counter '{"count":3}'
# A reload that changes nothing keeps the instance, and its count.
kill -HUP $pid
sq_wait_log "$dir/log" $pid "reloaded:"
answers /counter '{"count":4}'
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$url/echo")
if [ "$code" = 426 ]; then ok "/echo without an upgrade: 426"; else
	notok "/echo without an upgrade: 426"; echo "  got $code"; fi

# echo_ws: a whole round trip with python3 (offering subprotocols, of
# which the plugin picks "echo"), else the handshake's 101.
if command -v python3 >/dev/null 2>&1; then
	check "/echo sends a message back" python3 - "$url" <<'EOF'
import base64, os, socket, sys
host, port = sys.argv[1].split("//")[1].split(":")
s = socket.create_connection((host, int(port)), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /echo HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
    "Sec-WebSocket-Protocol: chat, echo\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n" % (host, port, key)).encode())
def more(buf):
    d = s.recv(4096)
    if not d:
        sys.exit("closed; so far: %r" % buf)
    return buf + d
buf = b""
while b"\r\n\r\n" not in buf:
    buf = more(buf)
head, _, buf = buf.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit("handshake: %r" % head)
if b"\r\nsec-websocket-protocol: echo\r\n" not in head.lower() + b"\r\n":
    sys.exit("subprotocol not picked: %r" % head)
def frame(op, payload):		# client frames are masked
    mask = os.urandom(4)
    return bytes([0x80 | op, 0x80 | len(payload)]) + mask + \
        bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
msg = b"squall says hi"
s.sendall(frame(1, msg))
while len(buf) < 2 + len(msg):
    buf = more(buf)
if buf[:2 + len(msg)] != bytes([0x81, len(msg)]) + msg:
    sys.exit("echo: %r" % buf)
s.sendall(frame(8, b"\x03\xe8"))
EOF
else
	code=$(curl -s -o /dev/null -w '%{http_code}' -m 2 \
	    -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
	    -H 'Sec-WebSocket-Version: 13' \
	    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$url/echo")
	if [ "$code" = 101 ]; then ok "/echo upgrades: 101"; else
		notok "/echo upgrades: 101"; echo "  got $code"; fi
fi

kill -TERM $pid
wait $pid
status=$?
pid=
if [ $status -eq 0 ]; then ok "squalld stops cleanly"; else
	notok "squalld stops cleanly (exit $status)"; cat "$dir/log"; fi
check "make clean removes the plugins" sh -c \
    "cd '$dir/ex' && make clean && ! ls *.so"
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
