#!/bin/sh
# run.sh - `make bench`: start one slabd on a temporary socket, run every workload
# program against it (each prints one table), stop slabd by its PID at the end -- also
# when a workload fails or the run is interrupted.  remote, memory and cold's `slabd` row
# start private daemons of their own (--nodes 2, a clean arena, a fresh arena).
#
# Usage: tests/bench/run.sh BUILD_DIR [workload ...]
# Environment: BENCH_RUNS (default 5: runs per row), BENCH_ARGS (extra options for every
# workload, e.g. "--objects 1M"), SLABD_ARENA (default 1G).
set -u
build=${1:-build}
shift 2>/dev/null || true
workloads=${*:-"hot batch prodcons scale cold sizes remote memory"}
runs=${BENCH_RUNS:-5}
slabd="$build/bin/slabd"
[ -x "$slabd" ] || { echo "bench: $slabd is not built" >&2; exit 1; }

tmp=$(mktemp -d /tmp/slabbench-run-XXXXXX)
sock="$tmp/slabd.sock"
pid=""
stop() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		pid=""
	fi
	rm -rf "$tmp"
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

"$slabd" --socket "$sock" --arena-size "${SLABD_ARENA:-1G}" --log-level warn 2>"$tmp/slabd.log" &
pid=$!
i=0
while [ ! -S "$sock" ]; do
	if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
		echo "bench: slabd did not start:" >&2
		cat "$tmp/slabd.log" >&2
		exit 1
	fi
	sleep 0.05
	i=$((i + 1))
done
export SLABD_SOCKET="$sock"

echo "slabd benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cpus ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -r)"
echo "tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- shm libclient daemon 2>/dev/null || echo ' + uncommitted changes in shm/libclient/daemon'); CFLAGS as built; slabd pid $pid on $sock"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# The host's placement of the two cpus moves runs more than anything here (hostcheck.c).
"$build/bench/hostcheck" "before" || true
status=0
for w in $workloads; do
	start=$(date +%s)
	# shellcheck disable=SC2086
	if ! "$build/bench/$w" --runs "$runs" ${BENCH_ARGS:-}; then
		echo "bench: $w FAILED" >&2
		status=1
	fi
	echo "   ($w took $(( $(date +%s) - start )) s; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
	"$build/bench/hostcheck" "after $w" || true
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "bench: slabd died during $w:" >&2
		tail -20 "$tmp/slabd.log" >&2
		exit 1
	fi
done
exit $status
