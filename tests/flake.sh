#!/bin/sh
# flake.sh [RUNS] - hunts flaky tests: runs every integration suite of a
# built tree RUNS times (default 30) and counts each test's failures. Not
# part of make check: run it before a release, on the normal and the
# sanitizer build, and with LOAD=1 (a CPU burner on every core at the
# same priority, as on a busy CI machine).
#
#   tests/flake.sh 30                     # this build tree
#   BUILD=_asan/squall LOAD=1 tests/flake.sh 30
#
# Prints a line per test that failed at least once ("N/RUNS suite::test")
# and exits 1 if any did. The logs of failing runs are kept in
# $TMPDIR/squall-flake.*/.
runs=${1:-30}
build=$(cd "${BUILD:-.}" && pwd) || exit 2
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/squall-flake.XXXXXX") || exit 2
: >"$out/failures"
sanitizers=no
grep -q -- '--enable-sanitizers' "$build/config.log" 2>/dev/null &&
    sanitizers=yes
top_srcdir=$src top_builddir=$build CRITERION_NO_EARLY_EXIT=1
export top_srcdir top_builddir sanitizers CRITERION_NO_EARLY_EXIT

burners=
if [ "${LOAD:-}" = 1 ]; then
	for _ in $(seq "$(nproc)"); do
		sh -c 'while :; do :; done' &
		burners="$burners $!"
	done
fi
trap '[ -n "$burners" ] && kill $burners 2>/dev/null; exit 130' INT TERM

suites=
for t in "$build"/tests/integration/test_*; do
	case $t in *.*) ;; *) [ -x "$t" ] && suites="$suites $t" ;; esac
done
[ -n "$suites" ] || { echo "no integration tests in $build"; exit 2; }
i=1
while [ "$i" -le "$runs" ]; do
	for t in $suites; do
		log=$out/$(basename "$t").$i.log
		if "$t" >"$log" 2>&1; then
			rm -f "$log"
		else
			grep -E '^\[FAIL\]' "$log" |
			    sed 's/^\[FAIL\] \([^:]*::[^:]*\):.*/\1/' \
			    >>"$out/failures"
			grep -qE '^\[FAIL\]' "$log" ||
			    echo "$(basename "$t")::(crashed)" >>"$out/failures"
		fi
	done
	echo "run $i of $runs: $(wc -l <"$out/failures") failures so far" >&2
	i=$((i + 1))
done
# shellcheck disable=SC2086 # one pid per word
[ -n "$burners" ] && kill $burners 2>/dev/null
if [ ! -s "$out/failures" ]; then
	echo "0 failures in $runs runs of every integration suite ($build)"
	rm -rf "$out"
	exit 0
fi
sort "$out/failures" | uniq -c | sort -rn |
    awk -v runs="$runs" '{ print $1 "/" runs " " $2 }'
echo "logs of the failing runs: $out"
exit 1
