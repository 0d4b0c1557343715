#!/bin/sh
# test_fuzz_smoke.sh - builds the libFuzzer targets (tests/fuzz/fuzz_*.c, clang with
# -fsanitize=fuzzer,address,undefined) and runs each for a short fixed number of
# executions after its seed corpus (FUZZ_RUNS, default 20000): the request parser and
# dispatcher (fuzz_protocol) and the free-path validation (fuzz_free) must neither crash,
# leak, time out, nor break the properties their harnesses assert.  `make fuzz` runs them
# for longer.  Skipped (exit 0, with the reason) only when clang is not installed.
#
# Usage: tests/cli/test_fuzz_smoke.sh   (tests/run-tests.sh runs it)
# It runs its own ASan + libFuzzer builds and nothing under valgrind (a sanitizer build
# cannot run there), so make check-valgrind skips it as checking nothing valgrind adds
# (tests/run-tests.sh, TEST_WRAPPER set); make test runs it.
# run-tests: not under TEST_WRAPPER
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v clang >/dev/null 2>&1; then
	echo "SKIP test_fuzz_smoke: clang is not installed (tests/deps.sh installs clang libclang-rt-14-dev)"
	exit 0
fi
exec make -C "$root" --no-print-directory fuzz-smoke FUZZ_RUNS="${FUZZ_RUNS:-20000}"
