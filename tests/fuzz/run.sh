#!/bin/sh
# run.sh MODE N TARGET... - run libFuzzer targets built by `make fuzz-build`.
#   MODE time: each target for N seconds (make fuzz, FUZZ_TIME)
#   MODE runs: each target for N executions after its seeds (make fuzz-smoke, make test)
# Seeds: tests/fuzz/corpus/<name>/ (fuzz_<name>), read only.  What the fuzzer finds goes to
# build/fuzz/corpus/<name>/, crashes to build/fuzz/artifacts/, each run's output to
# build/fuzz/<target>.<mode>.log.  Prints one line of figures per target (executions, cov, ft,
# corpus) and exits non-zero if any target crashed, leaked or timed out.
set -u
mode=$1
n=$2
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
fb=$root/build/fuzz
case $mode in
time) limit="-max_total_time=$n" ;;
runs) limit="-runs=$n" ;;
*) echo "usage: $0 time|runs N TARGET..." >&2; exit 2 ;;
esac
status=0
for t in "$@"; do
	name=${t#fuzz_}
	bin=$fb/fuzz/$t
	corpus=$fb/corpus/$name
	seeds=$root/tests/fuzz/corpus/$name
	log=$fb/$t.$mode.log
	mkdir -p "$corpus" "$fb/artifacts"
	[ -x "$bin" ] || { echo "FAIL $t: $bin is not built (make fuzz-build)"; status=1; continue; }
	dirs=$corpus
	[ -d "$seeds" ] && dirs="$dirs $seeds"
	start=$(date +%s)
	# shellcheck disable=SC2086
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" $limit -print_final_stats=1 -max_len=4096 -timeout=20 -rss_limit_mb=2048 \
		-artifact_prefix="$fb/artifacts/$t-" $dirs >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	# The last status line: "#12345  DONE   cov: 1234 ft: 5678 corp: 90/12Kb ..."
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p')
	figures="${execs:-?} executions in ${secs} s (${speed:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
	if [ "$rc" -eq 0 ]; then
		echo "PASS $t: $figures"
	else
		echo "FAIL $t (exit $rc): $figures; see $log and $fb/artifacts/"
		grep -E 'ERROR|SUMMARY|fuzz_|runtime error|==[0-9]+==' "$log" | head -n 20 | sed 's/^/    /'
		tail -n 30 "$log" | sed 's/^/    /'
		status=1
	fi
done
exit $status
