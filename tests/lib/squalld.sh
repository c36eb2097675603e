# tests/lib/squalld.sh - shared by the shell tests (valgrind.sh,
# browser.sh): waiting for a squalld's log and reading its port.
# shellcheck shell=sh

# sq_wait_log LOG PID TEXT: waits (60 s at most) for TEXT in LOG while
# PID lives; on failure prints the log and a failed summary, and exits 1.
sq_wait_log() {
	i=0
	while ! grep -q "$3" "$1"; do
		i=$((i + 1))
		if [ $i -gt 600 ] || ! kill -0 "$2" 2>/dev/null; then
			echo "not ok: no \"$3\" in the log:"; cat "$1"
			echo "0 passed, 1 failed"; exit 1
		fi
		sleep 0.1
	done
}

# sq_port LOG: the port of the first "listening on 127.0.0.1:PORT" line.
sq_port() {
	sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$1" | head -n 1
}
