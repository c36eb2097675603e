#!/bin/sh
# exports.sh - squalld exports exactly the functions of plugin.h: every
# one of them (plugins resolve them at load), and nothing else of squall's
# (internal functions are hidden; json-c and libc are not re-exported).
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
squalld=$build/core/squalld
header=$top/plugin-api/squall/plugin.h
if ! command -v nm >/dev/null 2>&1; then
	echo "nm is missing (Debian: binutils)"; exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/squall-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
sed -n 's/.*[^a-z_]\(sq_[a-z0-9_]*\)(.*/\1/p' "$header" | sort -u \
    > "$tmp/api"
# Defined dynamic symbols, less what every executable has (and, in the
# sanitizer builds, the sanitizers' runtime).
nm -D --defined-only "$squalld" | awk '{ print $3 }' | sed 's/@.*//' |
    grep -vxE '_IO_stdin_used|__bss_start|__data_start|data_start|_edata|_end|_start|_init|_fini|main|__dso_handle|optarg|optind|opterr|optopt|stderr|stdout|stdin|environ|__environ|__progname|__progname_full|program_invocation_name|program_invocation_short_name' |
    grep -vE '^__(asan|ubsan|tsan|lsan|sanitizer)_' |
    sort -u > "$tmp/exported"
fail=0
extra=$(comm -13 "$tmp/api" "$tmp/exported")
missing=$(comm -23 "$tmp/api" "$tmp/exported")
if [ -n "$extra" ]; then
	echo "not ok: squalld exports what plugin.h does not declare:"
	echo "$extra" | sed 's/^/  /'
	fail=1
else
	echo "ok nothing but the plugin API is exported"
fi
if [ -n "$missing" ]; then
	echo "not ok: plugin.h declares what squalld does not export:"
	echo "$missing" | sed 's/^/  /'
	fail=1
else
	echo "ok every function of plugin.h is exported ($(wc -l < "$tmp/api"))"
fi
echo "$((2 - fail)) passed, $fail failed"
exit $fail
