#!/usr/bin/env bash
# test_slabctl.sh - slabctl against a real slabd: every command, its table and its --json
# output (parsed, field types checked), the exit codes (1 daemon error, 2 usage, 3
# unreachable), `top` in a real terminal (tmux) for one refresh and a `q`, and the
# Prometheus exposition format of `metrics`.
#
# Usage: BUILD=build tests/cli/test_slabctl.sh   (tests/run-tests.sh sets BUILD)
# Starts its own slabd on a socket in a temporary directory; everything it starts is
# stopped by PID on any exit.  With SLABD_WRAPPER set (make check-valgrind: "valgrind -q
# --error-exitcode=99 ..."), slabd runs under it (split on blanks, as the integration
# harness does), the waits on slabd are 6 times longer, and its exit status at the end
# must be 0: the wrapper's --error-exitcode means valgrind found errors.  Its report is
# printed from the log; like the harness (tests/integration/harness.h), "--PID--
# WARNING: unhandled ... syscall" lines count as a report too.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
ctl=$BUILD/bin/slabctl
slabd=$BUILD/bin/slabd

tmp=$(mktemp -d /tmp/slabctl-test.XXXXXX)
sock=$tmp/slabd.sock
daemon_pid=
client_pid=
tmux_sock="slabctl-test-$$"
have_tmux=

cleanup() {
	[ -n "$have_tmux" ] && tmux -L "$tmux_sock" kill-server >/dev/null 2>&1
	[ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null
	if [ -n "$daemon_pid" ]; then
		kill "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
checks=0
pass() { checks=$((checks + 1)); }
fail() {
	checks=$((checks + 1))
	failures=$((failures + 1))
	echo "FAIL: $*"
}
die() {
	echo "FATAL: $*"
	[ -f "$tmp/slabd.log" ] && sed 's/^/    slabd: /' "$tmp/slabd.log" | tail -n 20
	exit 1
}

# run NAME EXPECTED_RC ARGS...: run slabctl, keep stdout/stderr in $out/$err.
out= err= rc=
run() {
	local name=$1 want=$2
	shift 2
	"$ctl" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
	if [ "$rc" -eq "$want" ]; then
		pass
	else
		fail "$name: slabctl $* exited $rc, expected $want"
		sed 's/^/    stdout: /' "$tmp/out" | head -n 10
		sed 's/^/    stderr: /' "$tmp/err" | head -n 10
	fi
}

# expect NAME PATTERN TEXT: TEXT matches the extended regex PATTERN.
expect() {
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then
		pass
	else
		fail "$1: no match for /$2/ in:"
		printf '%s\n' "$3" | head -n 15 | sed 's/^/    /'
	fi
}

# pycheck NAME CODE: run python CODE with the last stdout on stdin; it raises on failure.
pycheck() {
	if python3 -c "$2" <"$tmp/out" >"$tmp/py" 2>&1; then
		pass
	else
		fail "$1: python check failed:"
		sed 's/^/    /' "$tmp/py" | tail -n 8
		head -c 600 "$tmp/out" | sed 's/^/    json: /'
		echo
	fi
}

# Under a wrapper (valgrind) slabd is slower: waits on it get `slow` times the rounds.
# The factor, the --error-exitcode and which log lines are a report follow the C
# harness's rules (tests/integration/harness.c: TH_WRAP_SLOWDOWN, wrap_parse,
# vg_log_reports): change them together.
wrapper=${SLABD_WRAPPER:-}
slow=1
vg_code=
if [ -n "$wrapper" ]; then
	slow=6
	# shellcheck disable=SC2086 # one word a line
	vg_code=$(printf '%s\n' $wrapper | sed -n 's/^--error-exitcode=\([0-9]*\)$/\1/p' | tail -n 1)
	echo "slabd runs under SLABD_WRAPPER=\"$wrapper\"; waits on it x$slow"
fi

[ -x "$ctl" ] || die "$ctl is missing (make all)"
[ -x "$slabd" ] || die "$slabd is missing (make all)"
command -v python3 >/dev/null || die "python3 is needed to check JSON output"

# ---- a client process: libslab, holds objects, makes traffic, stays until killed -------
cat >"$tmp/client.c" <<'EOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "slab.h"
int main(int argc, char **argv)
{
	struct slab_cache_config cfg = { .size = (size_t)atoi(argv[3]), .node = SLAB_NODE_LOCAL };
	slab_pool *p;
	slab_cache *c;
	int hold = atoi(argv[4]), rc;
	void *tmp[200];
	if ((rc = slab_pool_connect(argv[1], &p)) || (rc = slab_cache_create(p, argv[2], &cfg, &c))) {
		fprintf(stderr, "client: %s\n", slab_strerror(rc));
		return 1;
	}
	for (int i = 0; i < hold; i++)
		if (!slab_alloc(c))
			return 2;
	for (int r = 0; r < 100; r++) {
		for (int i = 0; i < 200; i++)
			tmp[i] = slab_alloc(c);
		for (int i = 0; i < 200; i++)
			slab_free(c, tmp[i]);
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
EOF
cc_cmd="${CC:-cc} -std=c11 -D_GNU_SOURCE -I$root/libclient/include -o $tmp/client $tmp/client.c \
	$BUILD/lib/libslab.a $(pkg-config --libs jansson) -pthread"
# shellcheck disable=SC2086
$cc_cmd 2>"$tmp/cc.log" || $cc_cmd -fsanitize=address,undefined 2>>"$tmp/cc.log" ||
	{ cat "$tmp/cc.log"; die "cannot build the test client against $BUILD/lib/libslab.a"; }

# ---- the daemon ----------------------------------------------------------------------------
# shellcheck disable=SC2086 # the wrapper's words, split as the harness splits them
$wrapper "$slabd" --socket "$sock" --arena-size 32M >"$tmp/slabd.log" 2>&1 &
daemon_pid=$! # slabd's pid also under valgrind, which runs it in the same process
for _ in $(seq $((100 * slow))); do
	"$ctl" -s "$sock" info >/dev/null 2>&1 && break
	kill -0 "$daemon_pid" 2>/dev/null || die "slabd exited at start"
	sleep 0.05
done
"$ctl" -s "$sock" info >/dev/null 2>&1 || die "slabd did not start on $sock"

# ---- usage, help, unreachable ------------------------------------------------------------------
run "no command" 2
expect "no command: usage on stderr" '^Usage: slabctl' "$err"
run "unknown command" 2 -s "$sock" frobnicate
expect "unknown command message" "unknown command 'frobnicate'" "$err"
run "unknown option" 2 -s "$sock" list --bogus
run "extra argument" 2 -s "$sock" list extra
run "bad sort key" 2 -s "$sock" stats -S colour
run "create without --size" 2 -s "$sock" create x
run "create bad size" 2 -s "$sock" create x --size 12Q
run "tune without pairs" 2 -s "$sock" tune x
run "tune unknown key" 2 -s "$sock" tune x colour=3
run "tune bad value" 2 -s "$sock" tune x limit=-3
run "top bad delay" 2 -s "$sock" top -d 0
run "destroy without name" 2 -s "$sock" destroy
run "--help" 0 --help
expect "--help lists every command" 'metrics' "$out"
run "--version" 0 --version
for c in list stats top create destroy shrink validate tune info clients metrics; do
	run "$c --help" 0 "$c" --help
	expect "$c --help" "^Usage: slabctl .*$c" "$out"
done
run "help stats" 0 help stats
run "unreachable socket" 3 -s "$tmp/nobody.sock" list
expect "unreachable message" "^slabctl: cannot reach slabd at $tmp/nobody.sock: .*\(ENOENT\)$" "$err"
run "unreachable --json" 3 -s "$tmp/nobody.sock" --json stats
: >"$tmp/not-a-socket"
run "not a socket" 3 -s "$tmp/not-a-socket" info
SLABD_SOCKET=$sock "$ctl" info >"$tmp/out" 2>&1 && grep -q '^arena' "$tmp/out" && pass ||
	fail "SLABD_SOCKET is not used"

S=(-s "$sock")

# ---- create ----------------------------------------------------------------------------------
run "create" 0 "${S[@]}" create msg --size 100 --flags poison --limit 40 --batchcount 20 --max-objects 100000
expect "create output" "^created cache 'msg': 100-byte objects" "$out"
run "create again" 0 "${S[@]}" create msg --size 100 --flags poison
expect "create again output" "already exists" "$out"
run "create other geometry" 1 "${S[@]}" create msg --size 200
expect "EEXIST message" "^slabctl: cache 'msg' exists with another geometry \(EEXIST\)$" "$err"
run "create bad flag" 1 "${S[@]}" create y --size 8 --flags poison,sparkly
expect "bad flag message" "\(EINVAL\)$" "$err"
run "create bad name" 1 "${S[@]}" create 'no/slash' --size 8
run "create --json" 0 "${S[@]}" --json create big --size 2K --align 64
pycheck "create --json" '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 1, lines
r = json.loads(lines[0])
assert r["ok"] is True and r["existed"] is False
c = r["cache"]
assert c["name"] == "big" and c["object_size"] == 2048 and c["align"] == 64
for k in ("size", "objects_per_slab", "pages_per_slab", "order", "limit", "batchcount",
          "shared", "min_partial", "node", "max_objects", "refcount", "id", "serial"):
    assert type(c[k]) is int, k
assert isinstance(c["flags"], list) and c["state"] == "live"
'

# ---- a client holding objects in cache "work" -------------------------------------------------
"$tmp/client" "$sock" work 64 100 >"$tmp/client.out" 2>&1 &
client_pid=$!
for _ in $(seq $((100 * slow))); do
	grep -q ready "$tmp/client.out" 2>/dev/null && break
	sleep 0.05
done
grep -q ready "$tmp/client.out" || die "the test client did not start: $(cat "$tmp/client.out")"

# ---- list --------------------------------------------------------------------------------------
run "list" 0 "${S[@]}" list
expect "list header" '^NAME +OBJSIZE +INUSE +TOTAL +REFCOUNT +STATE +FLAGS$' "$out"
expect "list msg row" '^msg +100 +0 +[0-9]+ +0 +live +poison$' "$out"
expect "list work row" '^work +64 +[0-9]+ +[0-9]+ +1 +live +-$' "$out"
run "list --json" 0 "${S[@]}" --json list
pycheck "list --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is True and isinstance(r["caches"], list)
names = {c["name"] for c in r["caches"]}
assert {"msg", "work", "big"} <= names, names
for c in r["caches"]:
    assert type(c["name"]) is str and type(c["state"]) is str
    for k in ("object_size", "size", "refcount", "objects_per_slab"):
        assert type(c[k]) is int, k
'

# ---- stats ---------------------------------------------------------------------------------------
run "stats" 0 "${S[@]}" stats
expect "stats header" '^NAME +OBJSIZE +SLOT +ACTIVE +TOTAL +INUSE +CACHED +OBJ/SLAB +PG/SLAB +ASLABS +SLABS +MEMORY +FAST%$' "$out"
expect "stats work row" '^work +64 +64 +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+[BKMG] +([0-9.]+|-)$' "$out"
work_inuse=$(printf '%s\n' "$out" | awk '$1 == "work" { print $6 }')
[ "${work_inuse:-0}" -ge 100 ] && pass || fail "stats: work has $work_inuse objects in use, expected >= 100"
run "stats -S name" 0 "${S[@]}" stats -S name
names=$(printf '%s\n' "$out" | awk 'NR > 1 { print $1 }')
[ "$names" = "$(printf '%s\n' "$names" | LC_ALL=C sort)" ] && pass || fail "stats -S name is not sorted"
run "stats -S size" 0 "${S[@]}" stats --sort=size
sizes=$(printf '%s\n' "$out" | awk 'NR > 1 { print $2 }')
[ "$sizes" = "$(printf '%s\n' "$sizes" | sort -rn)" ] && pass || fail "stats -S size is not largest first"
run "stats -S memory" 0 "${S[@]}" stats -S memory
run "stats -S use" 0 "${S[@]}" stats -S use
expect "stats -S use: work first" '^work ' "$(printf '%s\n' "$out" | sed -n 2p)"
run "stats NAME" 0 "${S[@]}" stats work
expect "stats NAME: tunables" '^  tunables: limit [0-9]+, batchcount [0-9]+, shared [0-9]+, min_partial [0-9]+$' "$out"
expect "stats NAME: node table" '^NODE +PARTIAL +FULL +FREE +DISCARD +FREE_OBJECTS +SHARED_AVAIL +FREE_LIMIT$' "$out"
for k in alloc_fastpath alloc_slowpath free_fastpath free_slowpath alloc_refill free_flush \
	alloc_slab free_slab alien_free invalid_free double_free; do
	expect "stats NAME: counter $k" "^  $k +[0-9]+$" "$out"
done
run "stats missing" 1 "${S[@]}" stats nope
expect "stats missing message" "^slabctl: no cache named 'nope' \(ENOENT\)$" "$err"
run "stats --json" 0 "${S[@]}" --json stats
pycheck "stats --json" '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 1
r = json.loads(lines[0])
assert r["ok"] is True and type(r["id"]) is int
ints = ("object_size", "size", "objects_per_slab", "pages_per_slab", "active_objs", "num_objs",
        "active_slabs", "num_slabs", "limit", "batchcount", "min_partial", "in_use", "cached",
        "memory_bytes", "refcount")
counters = ("alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "alloc_refill",
            "free_flush", "alloc_slab", "free_slab", "alien_free", "invalid_free", "double_free")
by = {c["name"]: c for c in r["caches"]}
for c in r["caches"]:
    for k in ints:
        assert type(c[k]) is int and c[k] >= 0, (c["name"], k, c.get(k))
    for k in counters:
        assert type(c["counters"][k]) is int, k
    assert c["active_objs"] <= c["num_objs"]
    assert c["in_use"] + c["cached"] == c["active_objs"], c["name"]
    assert isinstance(c["nodes"], list) and c["nodes"]
    for n in c["nodes"]:
        for k in ("node", "partial", "full", "free", "shared_avail", "free_objects"):
            assert type(n[k]) is int, k
w = by["work"]
assert w["in_use"] >= 100 and w["refcount"] == 1
assert w["counters"]["alloc_slab"] > 0
'
run "stats NAME --json" 0 "${S[@]}" stats msg --json
pycheck "stats NAME --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert [c["name"] for c in r["caches"]] == ["msg"]
assert r["caches"][0]["flags"] == ["SLAB_POISON"]
assert r["caches"][0]["max_objects"] == 100000 and r["caches"][0]["limit"] == 40
'
run "stats missing --json" 1 "${S[@]}" --json stats nope
pycheck "stats missing --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is False and r["error"] == "ENOENT" and type(r["message"]) is str
'

# ---- info, clients ---------------------------------------------------------------------------------
run "info" 0 "${S[@]}" info
expect "info arena" '^arena +32M \(33554432 bytes\), resident [0-9.]+[BKMG], metadata [0-9.]+[BKMG], page size 4096$' "$out"
expect "info caches" '^caches +[0-9]+ of [0-9]+ slots$' "$out"
expect "info clients" '^clients +1 of [0-9]+ slots$' "$out"
expect "info node header" '^NODE +OS_NODE +TOTAL +USED +FREE +RESERVE +TARGET +LARGEST_FREE +PARTIAL +FULL +EMPTY +DISCARD$' "$out"
expect "info node row" '^ +0 +[0-9]+ +[0-9.]+[BKMG] +[0-9.]+[BKMG] +[0-9.]+[BKMG] +[0-9.]+[BKMG] +[0-9.]+[BKMG] +[0-9.]+[BKMG]( +[0-9]+){4}$' "$out"
run "info --json" 0 "${S[@]}" --json info
pycheck "info --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is True and r["size"] == 32 << 20
for k in ("resident_bytes", "meta_bytes", "page_size", "generation", "caches", "clients",
          "cache_slots", "client_slots", "layout_version"):
    assert type(r[k]) is int, k
assert r["clients"] == 1
for n in r["nodes"]:
    for k in ("node", "os_node", "total_bytes", "free_bytes", "reserve_bytes", "reserve_target_bytes", "used_bytes", "largest_free_bytes"):
        assert type(n[k]) is int and n[k] >= 0, k
    assert n["used_bytes"] + n["free_bytes"] == n["total_bytes"]
    assert 0 < n["reserve_bytes"] <= n["free_bytes"], n
    assert n["reserve_bytes"] <= n["reserve_target_bytes"] <= n["total_bytes"] // 8, n
    for k in ("partial", "full", "free", "discard"):
        assert type(n["slabs"][k]) is int, k
'
run "clients" 0 "${S[@]}" clients
expect "clients header" '^ *PID +UID +GID +SINCE +AREA_PAGES +CACHE +REFS +CACHED$' "$out"
expect "clients row" "^ *$client_pid +$(id -u) +[0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} +[0-9]+ +work +1 +[0-9]+$" "$out"
run "clients --json" 0 "${S[@]}" --json clients
pycheck "clients --json" "
import json, sys, time
r = json.loads(sys.stdin.read())
cl = [c for c in r['clients'] if c['pid'] == $client_pid]
assert len(cl) == 1, r
c = cl[0]
for k in ('uid', 'gid', 'since_ns', 'area_pages', 'slot'):
    assert type(c[k]) is int, k
assert abs(c['since_ns'] / 1e9 - time.time()) < 600
w = [x for x in c['caches'] if x['name'] == 'work']
assert len(w) == 1 and w[0]['refs'] == 1 and type(w[0]['cached']) is int
"

# ---- tune, shrink, validate ----------------------------------------------------------------------
run "tune" 0 "${S[@]}" tune work limit=60 batchcount=30 shared=16 min_partial=2
expect "tune output" '^work: limit 60, batchcount 30, shared 16, min_partial 2$' "$out"
run "tune out of range" 1 "${S[@]}" tune work limit=100000
expect "tune EINVAL" '\(EINVAL\)$' "$err"
run "tune missing" 1 "${S[@]}" tune nope limit=10
run "tune --json" 0 "${S[@]}" --json tune work batchcount=20
pycheck "tune --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["cache"]["limit"] == 60 and r["cache"]["batchcount"] == 20
'
run "shrink" 0 "${S[@]}" shrink
expect "shrink output" '^released [0-9]+ slabs?$' "$out"
run "shrink NAME" 0 "${S[@]}" shrink work
expect "shrink NAME output" '^work: released [0-9]+ slabs?$' "$out"
run "shrink missing" 1 "${S[@]}" shrink nope
run "shrink --json" 0 "${S[@]}" --json shrink
pycheck "shrink --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is True and type(r["released_slabs"]) is int
'
run "validate" 0 "${S[@]}" validate
[ "$out" = clean ] && pass || fail "validate printed '$out', expected 'clean'"
run "validate NAME" 0 "${S[@]}" validate work
run "validate --json" 0 "${S[@]}" --json validate msg
pycheck "validate --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["clean"] is True and r["problems"] == 0 and r["report"] == []
'

# ---- top without a terminal --------------------------------------------------------------------
run "top -n" 0 "${S[@]}" top -n 2 -d 0.2 -S rate
[ "$(printf '%s\n' "$out" | grep -c '^slabctl top - ')" -eq 2 ] && pass || fail "top -n 2: not 2 frames"
expect "top table" '^ *ACTIVE +TOTAL +USE% +INUSE +CACHED +OBJSIZE +OBJ/SLAB +SLABS +MEMORY +ALLOC/s +FREE/s +FAST% +NAME$' "$out"
expect "top rates" '^ +[0-9]+ .* [0-9.]+[kMG]? +[0-9.]+[kMG]? +([0-9.]+|-) +work$' "$out"
case $out in *$'\033'*) fail "top wrote escape codes to a pipe" ;; *) pass ;; esac
run "top --json" 0 "${S[@]}" --json top -n 2 -d 0.1
pycheck "top --json" '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 2
for l in lines:
    assert json.loads(l)["ok"] is True
'

# ---- metrics -----------------------------------------------------------------------------------
run "metrics" 0 "${S[@]}" metrics
pycheck "metrics exposition format" '
import re, sys
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r"[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\n]|\\\\[\\\\\"n])*\""
sample = re.compile(r"^(" + name + r")(\{" + label + r"(," + label + r")*\})? (NaN|[+-]Inf|[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)$")
types, helps, seen_done, current = {}, set(), set(), None
samples = 0
for ln in sys.stdin.read().splitlines():
    if ln.startswith("# HELP "):
        m = re.match(r"^# HELP (" + name + r") .+$", ln); assert m, ln
        assert m.group(1) not in helps, "second HELP " + ln
        helps.add(m.group(1))
        continue
    if ln.startswith("# TYPE "):
        m = re.match(r"^# TYPE (" + name + r") (counter|gauge|histogram|summary|untyped)$", ln); assert m, ln
        assert m.group(1) not in types, "second TYPE " + ln
        types[m.group(1)] = m.group(2)
        if current: seen_done.add(current)
        current = m.group(1)
        continue
    assert not ln.startswith("#"), ln
    m = sample.match(ln); assert m, "bad sample line: " + ln
    metric = m.group(1)
    assert metric in types, "no TYPE for " + metric
    assert metric == current, "sample not grouped under its TYPE: " + ln
    if types[metric] == "counter":
        assert metric.endswith("_total"), metric
    samples += 1
assert set(types) == helps
assert samples > 100, samples
'
expect "metrics active objects" '^slabd_cache_active_objects\{cache="work"\} [0-9]+$' "$out"
expect "metrics in use" '^slabd_cache_in_use_objects\{cache="work"\} [0-9]+$' "$out"
expect "metrics fastpath counter" '^slabd_cache_alloc_fastpath_total\{cache="work"\} [0-9]+$' "$out"
expect "metrics counter type" '^# TYPE slabd_cache_double_free_total counter$' "$out"
expect "metrics node gauge" '^slabd_cache_node_slabs\{cache="work",node="0",state="partial"\} [0-9]+$' "$out"
expect "metrics arena" '^slabd_arena_size_bytes 33554432$' "$out"
expect "metrics node" '^slabd_node_free_bytes\{node="0",os_node="[0-9]+"\} [0-9]+$' "$out"
run "metrics --json" 0 "${S[@]}" --json metrics
pycheck "metrics --json" '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 2 and "caches" in json.loads(lines[0]) and "nodes" in json.loads(lines[1])
'

# ---- top in a real terminal ----------------------------------------------------------------------
if command -v tmux >/dev/null 2>&1; then
	have_tmux=1
	tmux -L "$tmux_sock" -f /dev/null new-session -d -s top -x 132 -y 30 \
		"'$ctl' -s '$sock' top -d 0.3; echo \$? > '$tmp/top.rc'; sleep 60"
	screen=
	frames=0
	for _ in $(seq $((60 * slow))); do
		screen=$(tmux -L "$tmux_sock" capture-pane -p -t top 2>/dev/null)
		# A second frame has rates: a number (not "-") in the ALLOC/s column of "work".
		if printf '%s\n' "$screen" | grep -Eq '^ +[0-9]+ .* [0-9.]+[kMG]? +[0-9.]+[kMG]? +([0-9.]+|-) +work$'; then
			frames=2
			break
		fi
		sleep 0.1
	done
	[ "$frames" -eq 2 ] && pass || fail "top in tmux: no refreshed frame with rates:"$'\n'"$screen"
	expect "top screen header" '^slabctl top - slabd .* sorted by memory \(q quits\)$' "$screen"
	expect "top screen arena" '^Arena: 32M, ' "$screen"
	tmux -L "$tmux_sock" send-keys -t top q
	for _ in $(seq $((50 * slow))); do
		[ -s "$tmp/top.rc" ] && break
		sleep 0.05
	done
	if [ -s "$tmp/top.rc" ]; then
		[ "$(cat "$tmp/top.rc")" = 0 ] && pass || fail "top exited $(cat "$tmp/top.rc") after q"
		# Back on the normal screen, the frame is gone (alternate screen left).
		screen=$(tmux -L "$tmux_sock" capture-pane -p -t top 2>/dev/null)
		case $screen in *"slabctl top - "*) fail "top left its frame on the normal screen" ;; *) pass ;; esac
	else
		fail "top did not exit on q"
	fi
	tmux -L "$tmux_sock" kill-server >/dev/null 2>&1
	have_tmux=
else
	echo "SKIP: tmux is not installed; top was not checked in a terminal"
fi

# ---- destroy ---------------------------------------------------------------------------------------
run "destroy missing" 1 "${S[@]}" destroy nope
[ "$err" = "slabctl: no cache named 'nope' (ENOENT)" ] && pass ||
	fail "destroy missing: stderr was '$err'"
[ -z "$out" ] && pass || fail "destroy missing printed on stdout: $out"
run "destroy missing --json" 1 "${S[@]}" --json destroy nope
pycheck "destroy missing --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is False and r["error"] == "ENOENT" and "nope" in r["message"]
'
run "destroy open cache" 0 "${S[@]}" destroy work
expect "destroy pending" "^destroy of cache 'work' pending \(refcount 1\)" "$out"
run "list dying" 0 "${S[@]}" list
expect "list shows dying" '^work +64 +[0-9]+ +[0-9]+ +1 +dying ' "$out"
# The client dies holding 100 objects: the pending destroy runs and fails (EBUSY); the
# cache is live again with its objects.
kill "$client_pid"
wait "$client_pid" 2>/dev/null
client_pid=
for _ in $(seq $((60 * slow))); do
	"$ctl" "${S[@]}" list 2>/dev/null | grep -Eq '^work .* live ' && break
	sleep 0.05
done
run "destroy busy" 1 "${S[@]}" destroy work
expect "destroy busy message" '^slabctl: cache still has [0-9]+ objects \(EBUSY\)$' "$err"
run "destroy busy --json" 1 "${S[@]}" --json destroy work
pycheck "destroy busy --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is False and r["error"] == "EBUSY" and type(r["objects"]) is int and r["objects"] >= 100
'
run "destroy" 0 "${S[@]}" destroy msg
[ "$out" = "destroyed cache 'msg'" ] && pass || fail "destroy printed '$out'"
run "destroy --json" 0 "${S[@]}" --json destroy big
pycheck "destroy --json" '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ok"] is True and r["destroyed"] is True
'
run "stats after destroy" 1 "${S[@]}" stats msg

# ---- the daemon goes away -----------------------------------------------------------------------
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_rc=$?
vg_report=
if [ -n "$wrapper" ]; then
	vg_report=$(grep -E "^(==$daemon_pid==|--$daemon_pid-- WARNING: unhandled)" "$tmp/slabd.log" |
		grep -Ev "^==$daemon_pid== +Warning:")
fi
daemon_pid=
if [ -n "$vg_report" ] || { [ -n "$vg_code" ] && [ "$daemon_rc" -eq "$vg_code" ]; }; then
	fail "SLABD_WRAPPER (valgrind) reported errors, or a syscall it could not run, in slabd (exit status $daemon_rc):"
	printf '%s\n' "$vg_report"
elif [ "$daemon_rc" -eq 0 ]; then
	pass
else
	fail "slabd exited with status $daemon_rc on SIGTERM; the end of its log:"
	tail -n 20 "$tmp/slabd.log" | sed 's/^/    slabd: /'
fi
run "daemon gone" 3 "${S[@]}" list

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
