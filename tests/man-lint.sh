#!/bin/sh
# man-lint.sh - every manual page is clean under mandoc -Tlint.
top=${top_srcdir:-$(dirname "$0")/..}
if ! command -v mandoc >/dev/null 2>&1; then
	echo "mandoc is not installed (Debian: apt-get install mandoc)" >&2
	exit 1
fi
fail=0 n=0
for page in "$top"/man/*.[0-9]; do
	n=$((n + 1))
	if out=$(mandoc -Tlint -W warning "$page" 2>&1) && [ -z "$out" ]; then
		echo "ok $page"
	else
		echo "not ok $page"; echo "$out"; fail=$((fail + 1))
	fi
done
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
