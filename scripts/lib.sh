# scripts/lib.sh - shared by scripts/run and scripts/test: install what is
# missing (Debian packages, when root) and build in the source tree.
# shellcheck shell=bash

SQ_BUILD_DEPS="gcc make autoconf automake libtool pkg-config libevent-dev
libcurl4-openssl-dev libjson-c-dev libinih-dev libwebsockets-dev
libsystemd-dev libhiredis-dev zlib1g-dev libssl-dev libev-dev
libwebsockets-evlib-ev"
SQ_TEST_DEPS="libcriterion-dev mandoc curl valgrind nginx-light supervisor
chromium nodejs logrotate redis-server openssl
testssl.sh"

say() { printf '==> %s\n' "$*" >&2; }

# sq_deps build|test: apt-get install the packages that are missing.
sq_deps() {
	local want="$SQ_BUILD_DEPS" missing=() p
	[ "${1:-build}" = test ] && want="$want $SQ_TEST_DEPS"
	for p in $want; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		say "missing packages: ${missing[*]}"
		say "install them with: sudo apt-get install ${missing[*]}"
		return 1
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# sq_build [configure args...]: autoreconf, configure and make, each only
# when needed, in the source tree (etc/squall.ini finds ../plugins).
sq_build() {
	if [ ! -x configure ] || [ configure.ac -nt configure ]; then
		say "autoreconf"
		autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
	fi
	if [ ! -f Makefile ] || [ configure -nt config.status ] ||
	    [ "$*" != "$(cat .configure-args 2>/dev/null)" ]; then
		say "configure $*"
		./configure -q "$@" >/dev/null
		printf '%s' "$*" > .configure-args
	fi
	say "make"
	make -s -j"$(nproc)" >/dev/null
}
