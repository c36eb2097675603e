#!/bin/sh
# testssl.sh - Debian's testssl.sh against a TLS listener of the default
# configuration (etc/squall.ini, plus "listen = ... tls" and a
# certificate made for the run): protocols, ciphers, forward secrecy,
# server preferences, HTTP headers and the known vulnerabilities. No
# finding may be rated MEDIUM or worse, except those about the
# certificate itself (cert_*: self-signed, valid two days, no revocation
# URL), which are the test's, not squall's. Skipped (77) without testssl
# or openssl, and on the sanitizer build (it checks a configuration, not
# memory, and takes half a minute).
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
if ! command -v testssl >/dev/null 2>&1 ||
    ! command -v openssl >/dev/null 2>&1; then
	echo "needs testssl (Debian: testssl.sh) and openssl: skipped"; exit 77
fi
if [ "${sanitizers:-no}" = yes ]; then
	echo "not on the sanitizer build: skipped"; exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/squall-testssl.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
. "$top/tests/lib/squalld.sh"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days 2 -subj /CN=localhost -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }
sed -e 's|^listen *=.*|listen = 127.0.0.1:0 tls|' \
    -e "s|^plugin_dir *=.*|plugin_dir = $build/plugins/.libs|" \
    -e "s|^root *= *\.\./web|root = $top/web|" \
    -e "s|^tls_certificate *=.*|tls_certificate = $dir/cert.pem|" \
    -e "s|^tls_certificate_key *=.*|tls_certificate_key = $dir/key.pem|" \
    "$top/etc/squall.ini" > "$dir/squall.ini"
"$build/core/squalld" -c "$dir/squall.ini" >"$dir/log" 2>&1 &
pid=$!
sq_wait_log "$dir/log" $pid "ready:"
port=$(sq_port "$dir/log")
testssl --quiet --color 0 --warnings off --csvfile "$dir/out.csv" \
    -p -s -f -S -h -U "127.0.0.1:$port" >"$dir/out.txt" 2>&1
# one finding per line: "id","ip","port","severity","finding",...
bad=$(grep -E '^"[^"]*","[^"]*","[^"]*","(MEDIUM|HIGH|CRITICAL)"' \
    "$dir/out.csv" | grep -v '^"cert_' || true)
kill -TERM $pid
wait $pid
pid=
if ! grep -q '^"TLS1_3",.*"offered' "$dir/out.csv"; then
	echo "not ok: testssl did not run:"; tail -n 20 "$dir/out.txt"
	echo "0 passed, 1 failed"; exit 1
fi
if [ -n "$bad" ]; then
	echo "not ok: findings rated MEDIUM or worse:"; echo "$bad"
	echo "0 passed, 1 failed"; exit 1
fi
echo "ok: no finding rated MEDIUM or worse but the test certificate's"
echo "1 passed, 0 failed"
