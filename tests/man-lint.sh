#!/bin/sh
# man-lint.sh - every manual page is clean under mandoc -Tlint: those in
# the sources and those made at build time from NAME.in; and no page made
# from NAME.in is left with an @placeholder@.
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-$top}
if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc is not installed (Debian: apt-get install mandoc)" >&2
	exit 1
fi
fail=0 n=0
pages=$(ls "$top"/man/*.[0-9] "$build"/man/*.[0-9] 2>/dev/null | sort -u)
for page in $pages; do
	n=$((n + 1))
	if grep -n '@[a-z]*@' "$page"; then
		echo "not ok $page: placeholder left"; fail=$((fail + 1))
	elif out=$(mandoc -Tlint -W warning "$page" 2>&1) && [ -z "$out" ]; then
		echo "ok $page"
	else
		echo "not ok $page"; echo "$out"; fail=$((fail + 1))
	fi
done
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
