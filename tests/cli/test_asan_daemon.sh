#!/usr/bin/env bash
# test_asan_daemon.sh - slabd built with AddressSanitizer + UBSan survives hostile bytes on
# its real socket (DESIGN.md: "The daemon survives any byte stream on its socket"):
#
#   - every request of the fuzz corpus (tests/fuzz/corpus/protocol/, valid and invalid),
#     each on its own connection, then all of them on one connection;
#   - 1 MiB of random bytes on one connection, 8 more runs of 128 KiB with other seeds
#     (one after a client hello), and 256 KiB of random bytes without a single newline
#     (and 70000 such bytes, which get EMSGSIZE);
#   - after all that the daemon is alive, answers cache.list and a clean cache.validate,
#     exits 0 on SIGTERM, and its log holds no AddressSanitizer, LeakSanitizer or UBSan
#     report.
#
# The daemon is build/asan/bin/slabd (`make asan-slabd` builds it; under `make check-asan`
# BUILD is build/asan and its own slabd is used).  Everything it starts is stopped by PID
# on any exit.
#
# Usage: BUILD=build tests/cli/test_asan_daemon.sh   (tests/run-tests.sh sets BUILD)
# It runs its own ASan + UBSan slabd and nothing under valgrind (a sanitizer build cannot
# run there), so make check-valgrind skips it as checking nothing valgrind adds
# (tests/run-tests.sh, TEST_WRAPPER set); make test and make check-asan run it.
# run-tests: not under TEST_WRAPPER
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac

command -v socat >/dev/null 2>&1 || { echo "FAIL: socat is needed (tests/deps.sh installs it)"; exit 1; }
case $BUILD in
*/asan) slabd=$BUILD/bin/slabd ;;
*)
	make -C "$root" --no-print-directory asan-slabd || { echo "FAIL: cannot build the ASan slabd"; exit 1; }
	slabd=$root/build/asan/bin/slabd
	;;
esac
[ -x "$slabd" ] || { echo "FAIL: $slabd is not built"; exit 1; }

tmp=$(mktemp -d /tmp/slabd-asan-test.XXXXXX)
sock=$tmp/slabd.sock
log=$tmp/slabd.log
pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "FAIL: $*"
	echo "---- last lines of the daemon's log ----"
	tail -n 40 "$log"
	exit 1
}

alive() {
	kill -0 "$pid" 2>/dev/null || die "slabd died $1"
}

# send FILE: one connection, FILE's bytes, replies into $tmp/out (socat waits up to 3 s
# for the daemon after the end of the input).
send() {
	socat -t 3 -T 10 - "UNIX-CONNECT:$sock" <"$1" >"$tmp/out" 2>/dev/null
}

ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$slabd" --socket "$sock" --arena-size 32M --log-level warn 2>"$log" &
pid=$!
for _ in $(seq 1 500); do
	socat -u /dev/null "UNIX-CONNECT:$sock" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || die "slabd did not start"
	sleep 0.02
done
socat -u /dev/null "UNIX-CONNECT:$sock" 2>/dev/null || die "slabd does not accept on $sock"

corpus=$root/tests/fuzz/corpus/protocol
n=0
replies=0
for f in "$corpus"/*; do
	send "$f"
	replies=$((replies + $(grep -c '"ok":' "$tmp/out")))
	n=$((n + 1))
	alive "after corpus file $(basename "$f")"
done
cat "$corpus"/* >"$tmp/all"
send "$tmp/all"
alive "after the whole corpus on one connection"
echo "corpus: $n files, $replies replies, then all on one connection ($(grep -c '"ok":' "$tmp/out") replies)"
[ "$replies" -ge $((n / 2)) ] || die "too few replies to the corpus ($replies for $n requests)"

head -c 1048576 /dev/urandom >"$tmp/rand"
send "$tmp/rand"
alive "after 1 MiB of random bytes"
echo "1 MiB of random bytes: $(grep -c '"ok":false' "$tmp/out") error replies"
for seed in 1 2 3 4 5 6 7 8; do
	if [ "$seed" = 8 ]; then
		printf '{"id":1,"cmd":"hello","version":1,"role":"client"}\n' >"$tmp/r"
	else
		: >"$tmp/r"
	fi
	head -c 131072 /dev/urandom >>"$tmp/r"
	send "$tmp/r"
	alive "after random run $seed"
done
head -c 400000 /dev/urandom | tr -d '\n' | head -c 262144 >"$tmp/r"
send "$tmp/r"
alive "after 256 KiB without a newline"
# 70000 bytes without a newline, in one write (so socat is not stopped by EPIPE before it
# reads the answer): EMSGSIZE.
head -c 70000 "$tmp/r" >"$tmp/r70"
socat -b 131072 -t 3 -T 10 - "UNIX-CONNECT:$sock" <"$tmp/r70" >"$tmp/out" 2>/dev/null
alive "after 70000 bytes without a newline"
grep -q EMSGSIZE "$tmp/out" || die "no EMSGSIZE for 70000 bytes without a newline: $(head -c 300 "$tmp/out")"

printf '{"id":"L","cmd":"cache.list"}\n' | socat -t 3 - "UNIX-CONNECT:$sock" >"$tmp/out" 2>/dev/null
grep -q '"id":"L","ok":true' "$tmp/out" || die "cache.list not answered: $(cat "$tmp/out")"
printf '{"id":"V","cmd":"cache.validate"}\n' | socat -t 3 - "UNIX-CONNECT:$sock" >"$tmp/out" 2>/dev/null
grep -q '"id":"V","ok":true,"clean":true' "$tmp/out" || die "cache.validate not clean: $(head -c 2000 "$tmp/out")"

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" -eq 0 ] || die "slabd exited with status $rc on SIGTERM"
if grep -qE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Leak|Undefined)' "$log"; then
	die "a sanitizer report in the log"
fi
[ -e "$sock" ] && die "the socket file was left behind"
echo "PASS: the ASan slabd survived the corpus and random bytes, answered, and exited 0 with a clean log"
