#!/bin/sh
# install.sh - make install into a DESTDIR, twice, with the configuration
# edited in between: the edit survives (squall.ini.default is refreshed),
# no libtool .la is left beside the plugins, the man pages and squalld -h
# name this build's paths, and a configuration without plugin_dir finds
# the installed plugins; the plugin starter kit and squall-plugin-new are
# installed; so is squall-broker.ini, the same way, with its paths
# rewritten too, and so are the deployment examples and
# squall-plugin-new(1), naming this build's paths. make uninstall keeps the edited file, and removes the
# rest.
top=${top_srcdir:-$(dirname "$0")/..}
build=${top_builddir:-.}
dest=$(mktemp -d "${TMPDIR:-/tmp}/squall-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
fail=0 n=0
check() {	# check WHAT COMMAND...
	what=$1; shift
	n=$((n + 1))
	if "$@" >/dev/null 2>&1; then
		echo "ok $what"
	else
		echo "not ok $what"; fail=$((fail + 1))
	fi
}
define() {	# the value of a string macro of config.h
	sed -n "s/^#define $1 \"\(.*\)\"$/\1/p" "$build/config.h"
}
conf=$(define SQ_DEFAULT_CONFIG)
bconf=$(dirname "$conf")/squall-broker.ini
tconf=$(dirname "$conf")/squall-tls.ini
plugindir=$(define SQ_PLUGIN_DIR)
# The install runs make again in this tree; keep the caller's -j out.
unset MAKEFLAGS MFLAGS
inst() { make -s -C "$build" "$@" DESTDIR="$dest" >"$dest.log" 2>&1 ||
    { cat "$dest.log"; echo "make $* failed"; exit 1; }; }

inst install
check "squall.ini installed" test -f "$dest$conf"
check "squall.ini.default installed" test -f "$dest$conf.default"
check "squall.ini is the default on a first install" \
    cmp "$dest$conf" "$dest$conf.default"
check "squall-broker.ini installed" cmp "$dest$bconf" "$dest$bconf.default"
check "squall-broker.ini names the installed plugins" \
    grep -qF "plugin_dir = $plugindir" "$dest$bconf"
check "squall-broker.ini has a broker" \
    grep -q "^broker = redis://127.0.0.1:6379" "$dest$bconf"
check "squall-tls.ini installed" cmp "$dest$tconf" "$dest$tconf.default"
check "squall-tls.ini names the installed plugins and web/" sh -c \
    "grep -qF 'plugin_dir = $plugindir' '$dest$tconf' &&
    ! grep -q '^root = \.\./web' '$dest$tconf'"
check "plugins installed" test -f "$dest$plugindir/hello.so"
check "no .la beside the plugins" sh -c "! ls '$dest$plugindir'/*.la"
check "squalld -h names $conf" sh -c \
    "'$build/core/squalld' -h 2>&1 | grep -qF '$conf'"
man8=$(find "$dest" -name squalld.8 | head -n 1)
check "squalld(8) names $conf" grep -qF "$conf" "$man8"
check "squalld(8) names $plugindir" grep -qF "$plugindir" "$man8"
check "squalld(8) has no placeholder" sh -c "! grep -q '@[a-z]*@' '$man8'"
man7=$(dirname "$(find "$dest" -name squall-fetch.7 | head -n 1)")
for p in hello static delay data_fetch multi_fetch chat status; do
	check "a page for the $p plugin" test -e "$man7/squall-$p.7"
done
kit=$(find "$dest" -path '*/examples/plugins' -type d | head -n 1)
for f in README GNUmakefile hello.c counter.c async.c echo_ws.c; do
	check "the starter kit's $f installed" test -f "$kit/$f"
done
prefix=$(dirname "$(dirname "$(dirname "$conf")")")	# $prefix/etc/squall/...
examples=$(dirname "$(find "$dest" -path '*/examples/etc/systemd/squalld.service' | head -n 1)")/..
for f in systemd/squalld.service supervisor/squall.conf \
    supervisor/squall-broker.conf logrotate.d/squall; do
	check "the installed $f names this build's squalld" \
	    grep -qF "$prefix/sbin/squalld" "$examples/$f"
done
check "the installed unit names $conf" \
    grep -qF "$conf" "$examples/systemd/squalld.service"
man1=$(find "$dest" -name squall-plugin-new.1 | head -n 1)
check "squall-plugin-new(1) names $conf" grep -qF "$conf" "$man1"
case $conf in
/usr/local/*) ;;
*)	check "no /usr/local in the installed examples under another prefix" \
	    sh -c "! grep -rq /usr/local '$examples' '$man1'" ;;
esac
check "squall-plugin-new installed" sh -c \
    "find '$dest' -name squall-plugin-new -type f -perm -u+x | grep -q ."

echo "; edited by the operator" >> "$dest$conf"
inst install
check "a second install keeps the edited squall.ini" \
    grep -q "edited by the operator" "$dest$conf"
check "a second install refreshes squall.ini.default" \
    sh -c "! grep -q 'edited by the operator' '$dest$conf.default'"

# plugin_dir defaults to the installed plugins.
printf '[server]\nlisten = 127.0.0.1:0\n[route /h]\nplugin = nothing\n' \
    > "$dest/bare.ini"
check "plugin_dir defaults to $plugindir" sh -c \
    "'$build/core/squalld' -t -c '$dest/bare.ini' 2>&1 |
    grep -qF '$plugindir/nothing.so'"

inst uninstall
check "uninstall keeps the edited squall.ini" test -f "$dest$conf"
check "uninstall removes squall.ini.default" test ! -e "$dest$conf.default"
check "uninstall removes the unedited squall-broker.ini" sh -c \
    "! ls '$dest$bconf'*"
check "uninstall removes the unedited squall-tls.ini" sh -c \
    "! ls '$dest$tconf'*"
check "uninstall removes the plugins" test ! -e "$dest$plugindir/hello.so"
check "uninstall removes the starter kit" test ! -e "$kit/hello.c"
check "uninstall removes squall-plugin-new" sh -c \
    "! find '$dest' -name squall-plugin-new | grep -q ."
rm -f "$dest.log"
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
