#!/bin/sh
# run-tests.sh BUILD - run every test binary of BUILD/tests (unit first, then the rest),
# each under a time limit, optionally through $TEST_WRAPPER (valgrind).  Exits non-zero
# if any test fails; prints one line per test and a summary.
set -u
build=${1:-build}
limit=${TEST_TIMEOUT:-300}
failed=""
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
	n=$((n + 1))
	name=$(basename "$t" .sh)
	if BUILD="$build" timeout --kill-after=10 "$limit" "$t" >"$build/tests/$name.log" 2>&1; then
		echo "PASS $name"
	else
		echo "FAIL $name; last lines of $build/tests/$name.log:"
		tail -n 40 "$build/tests/$name.log" | sed 's/^/    /'
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "FAILED:$failed ($n tests)"
	exit 1
fi
echo "all $n tests passed"
