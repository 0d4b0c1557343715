/* instr.c - `make bench-instr`: instructions per alloc+free pair on the fast path, counted
 * by valgrind --tool=callgrind (exact, immune to a noisy machine).
 *
 * Each run of a variant runs the same binary twice under callgrind, collecting only inside
 * instr_pairs() (--collect-atstart=no --toggle-collect=instr_pairs): once with N pairs
 * and once with 2N, after the same warm-up.  (Ir(2N) - Ir(N)) / N is the cost of one
 * pair, with every fixed cost (setup, warm-up, the function's entry) cancelled.  A pair
 * is the `hot` loop body: alloc, write one word, let the pointer escape, free, plus the
 * loop's own increment/compare/branch -- the `loop-only` row is that loop with no
 * allocator (a static buffer), to subtract if wanted.
 * The 2N profile also gives the allocator's entry points alone (callgrind_annotate,
 * inclusive: slab_alloc + slab_free, malloc + free), per pair, without the loop. */
#include "alloc.h"

#include <fcntl.h>
#include <sys/wait.h>

const char *bench_workload = "instr";
const char *bench_title = "callgrind instructions per alloc + write + free pair, fast path ((Ir(2N) - Ir(N)) / N)";
const char *bench_usage = "[--pairs N (100000)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "slabd-so", "slabd-so" },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ "dpdk", "dpdk" },
	{ "loop-only", NULL },
	{ NULL, NULL },
};

static uint64_t loop_buf[8];

__attribute__((noinline)) void instr_pairs(struct ba *b, long n);
__attribute__((noinline)) void instr_pairs(struct ba *b, long n)
{
	if (!b) {
		for (long i = 0; i < n; i++) {
			uint64_t *p = loop_buf;
			p[0] = (uint64_t)i;
			bench_escape(p);
		}
		return;
	}
	BA_DISPATCH(b, ba_pairs(b, K, n));
}

/* Inside valgrind: warm up, then the measured call. */
static int inner(const char *variant, long n)
{
	struct ba_opts o = { .size = 64, .eal_mem_mb = 64 };
	struct ba b;

	if (!strcmp(variant, "loop-only")) {
		instr_pairs(NULL, n);
		return 0;
	}
	if (ba_setup(&b, !strcmp(variant, "slabd-so") ? "slabd" : variant, &o))
		return 1;
	BA_DISPATCH(&b, ba_pairs(&b, K, 20000));
	instr_pairs(&b, n);
	ba_teardown(&b);
	return 0;
}

/* Run callgrind on ourselves; returns the collected Ir total, or -1. */
static long long callgrind(const char *variant, long n, const char *out)
{
	char exe[4096], nbuf[32], outopt[256];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	long long total = -1;
	char line[512];
	pid_t pid;
	FILE *f;

	if (k <= 0)
		return -1;
	exe[k] = 0;
	snprintf(nbuf, sizeof(nbuf), "%ld", n);
	snprintf(outopt, sizeof(outopt), "--callgrind-out-file=%s", out);
	pid = bench_fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 1); /* our stdout is the driver's pipe */
		execlp("valgrind", "valgrind", "--tool=callgrind", "-q", outopt,
		       "--collect-atstart=no", "--toggle-collect=instr_pairs", exe, "--child", variant,
		       "--inner", "1", "--pairs", nbuf, (char *)NULL);
		_exit(127);
	}
	if (bench_wait(pid, 300))
		return -1;
	f = fopen(out, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "totals:", 7) || !strncmp(line, "summary:", 8))
			total = atoll(strchr(line, ':') + 1);
	fclose(f);
	return total;
}

/* Inclusive Ir of the allocator's entry points in the 2N profile, per pair: the pair's
 * cost without the benchmark loop around it.  callgrind_annotate lists a function once per
 * source file its inlined code came from; the largest figure is its inclusive cost.
 * DPDK's get/put are inline in the loop: no entry point to measure. */
static void breakdown(const char *variant, const char *out, long n)
{
	static const char *const slab_fns[] = { "slab_alloc", "slab_free", NULL };
	static const char *const malloc_fns[] = { "malloc", "free", NULL };
	const char *const *fns = !strncmp(variant, "slabd", 5) ? slab_fns : malloc_fns;
	long long best[2] = { 0, 0 };
	char cmd[600], line[1024];
	FILE *p;

	if (!strcmp(variant, "dpdk") || !strcmp(variant, "loop-only"))
		return;
	snprintf(cmd, sizeof(cmd), "callgrind_annotate --inclusive=yes --threshold=100 %s 2>/dev/null", out);
	p = popen(cmd, "r");
	if (!p)
		return;
	while (fgets(line, sizeof(line), p)) {
		char *colon, *c = line, num[64];
		size_t j = 0;

		while (*c == ' ')
			c++;
		for (; (*c >= '0' && *c <= '9') || *c == ','; c++)
			if (*c != ',' && j < sizeof(num) - 1)
				num[j++] = *c;
		num[j] = 0;
		if (!j || *c != ' ')
			continue;
		colon = strchr(c, ':');
		if (!colon)
			continue;
		for (int i = 0; fns[i]; i++) {
			size_t l = strlen(fns[i]);
			if (!strncmp(colon + 1, fns[i], l) && strchr(" \n'", colon[1 + l]) &&
			    atoll(num) > best[i])
				best[i] = atoll(num);
		}
	}
	pclose(p);
	if (!best[0] || !best[1]) {
		bench_note("no %s/%s entry found in the callgrind profile", fns[0], fns[1]);
		return;
	}
	for (int i = 0; fns[i]; i++) {
		char label[96];

		snprintf(label, sizeof(label), "%s: %s", variant, fns[i]);
		bench_row("instr-by-function", label, "Ir/call", true, false,
			  (double)best[i] / (double)(2 * n));
	}
	bench_row("instr-alloc+free", variant, "Ir/pair", true, !strcmp(variant, "slabd"),
		  (double)(best[0] + best[1]) / (double)(2 * n));
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "pairs", 100000);
	char out1[128], out2[128];
	long long a, b2;

	if (bench_opt_str(argc, argv, "inner", NULL))
		return inner(variant, n);
	snprintf(out1, sizeof(out1), "/tmp/slabbench-cg-%d-1.out", (int)getpid());
	snprintf(out2, sizeof(out2), "/tmp/slabbench-cg-%d-2.out", (int)getpid());
	a = callgrind(variant, n, out1);
	b2 = callgrind(variant, 2 * n, out2);
	if (a < 0 || b2 < 0) {
		bench_skip("valgrind --tool=callgrind failed for %s (N=%ld: %lld, 2N: %lld)", variant, n, a,
			   b2);
	} else {
		bench_row("instr", variant, "Ir/pair", true, !strcmp(variant, "slabd"),
			  (double)(b2 - a) / (double)n);
		breakdown(variant, out2, n);
	}
	if (getenv("BENCH_KEEP_CALLGRIND"))
		bench_note("callgrind profiles kept: %s %s", out1, out2);
	else {
		unlink(out1);
		unlink(out2);
	}
	return 0;
}
