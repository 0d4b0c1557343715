#!/bin/sh
# deps.sh - install the peers `make bench` compares slabd with, from Debian, when missing.
# Never fatal: a peer whose package cannot be installed is skipped by the benchmarks,
# which say why.  (libdpdk-dev is DPDK's headers and libraries -- what dpdk-dev pulls in
# for building; g++ builds the Boost.Interprocess peer.)
set -u
pkgs="libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev libdpdk-dev libboost-dev
      iceoryx libiceoryx-binding-c-dev valgrind g++ pkg-config"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "bench: missing peer packages:$missing (sudo apt-get install -y$missing); those peers will be skipped" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "bench: installing$missing" >&2
if apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
	exit 0
fi
apt-get update -qq >/dev/null 2>&1
if apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
	exit 0
fi
# One at a time, so one broken package does not cost the others.
for p in $missing; do
	apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
		echo "bench: could not install $p; the peers that need it will be skipped" >&2
done
exit 0
