#!/bin/sh
# deps.sh - make sure the Debian packages slabd builds and tests with are installed.
# Installs what is missing when run as root (apt-get), else names the packages and fails.
# Usage: tests/deps.sh [extra-package ...]
set -u
pkgs="libevent-dev libjansson-dev libnuma-dev libcmocka-dev pkg-config gcc make valgrind clang libclang-rt-14-dev socat util-linux tmux python3 procps $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null && exit 0
	echo "deps: apt-get install$missing failed" >&2
	exit 1
fi
echo "deps: missing packages:$missing (run: sudo apt-get install -y$missing)" >&2
exit 1
