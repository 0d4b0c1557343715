#!/bin/sh
# run-tests.sh BUILD - run every test binary of BUILD/tests (unit first, then the rest),
# each under a time limit, optionally through $TEST_WRAPPER (valgrind), then the script
# tests (tests/cli/*.sh, tests/integration/*.sh).  Exits non-zero if any test fails;
# prints one line per test and a summary.
#
# TEST_WRAPPER applies to the test binaries only (with --trace-children=no: not to the
# slabd they start, nor their helper processes).  slabd itself runs under $SLABD_WRAPPER,
# which the integration harness (tests/integration/harness.c) and the scripts that start
# a slabd read from the environment.  Scripts holding the line
#     # run-tests: not under TEST_WRAPPER
# (the sanitizer tests: an ASan slabd, the libFuzzer targets, which valgrind cannot run)
# are skipped when TEST_WRAPPER is set; make test and make check-asan run them.
set -u
build=${1:-build}
limit=${TEST_TIMEOUT:-300}
failed=""
skipped=""
n=0
for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	n=$((n + 1))
	name=$(basename "$t")
	start=$(date +%s)
	# shellcheck disable=SC2086
	if timeout --kill-after=10 "$limit" ${TEST_WRAPPER:-} "$t" >"$build/tests/$name.log" 2>&1; then
		echo "PASS $name ($(( $(date +%s) - start ))s)"
	else
		rc=$?
		echo "FAIL $name (exit $rc after $(( $(date +%s) - start ))s); last lines of $build/tests/$name.log:"
		tail -n 40 "$build/tests/$name.log" | sed 's/^/    /'
		failed="$failed $name"
	fi
done
for t in tests/cli/*.sh tests/integration/*.sh; do
	[ -x "$t" ] || continue
	name=$(basename "$t" .sh)
	if [ -n "${TEST_WRAPPER:-}" ] && grep -q '^# run-tests: not under TEST_WRAPPER$' "$t"; then
		echo "SKIP $name (runs its own sanitizer build, nothing under TEST_WRAPPER; make test runs it)"
		skipped="$skipped $name"
		continue
	fi
	n=$((n + 1))
	start=$(date +%s)
	if BUILD="$build" timeout --kill-after=10 "$limit" "$t" >"$build/tests/$name.log" 2>&1; then
		echo "PASS $name ($(( $(date +%s) - start ))s)"
	else
		echo "FAIL $name; last lines of $build/tests/$name.log:"
		tail -n 40 "$build/tests/$name.log" | sed 's/^/    /'
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "FAILED:$failed ($n tests${skipped:+; skipped:$skipped})"
	exit 1
fi
echo "all $n tests passed${skipped:+ (skipped:$skipped)}"
