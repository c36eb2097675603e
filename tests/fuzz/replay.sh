#!/bin/sh
# tests/fuzz/replay.sh - make check: every fuzz target, built with the
# normal compiler and tests/fuzz/replay.c, runs once over each input of
# its committed corpus, tests/fuzz/corpus/TARGET/, and over the inputs
# that once found a bug, tests/fuzz/regress/TARGET/. A failing check or
# a sanitizer report fails the test.
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-.}
status=0
found=0
for dir in "$srcdir"/tests/fuzz/corpus/*/; do
	t=$(basename "$dir")
	found=1
	if [ ! -x "$builddir/tests/fuzz/$t" ]; then
		echo "FAIL: $t: $builddir/tests/fuzz/$t was not built"
		status=1
		continue
	fi
	regress=$srcdir/tests/fuzz/regress/$t
	[ -d "$regress" ] || regress=
	if "$builddir/tests/fuzz/$t" "$dir" $regress; then
		echo "PASS: $t"
	else
		echo "FAIL: $t"
		status=1
	fi
done
[ $found = 1 ] || { echo "no corpus in $srcdir/tests/fuzz/corpus"; exit 1; }
exit $status
