/* scale.c - `scale`: `hot` (alloc + write + free of a 64-byte object) on 1 worker, then on
 * 2 threads of one process, then on 2 processes, each worker running N pairs after a
 * warm-up; aggregate rate = all pairs / (last worker's end - the common start gate).
 * Every configuration runs in a fresh process (DPDK: its own EAL; slabd: its own
 * connection); workers are pinned one per cpu.  The 2/1 rows are the aggregate rate of 2
 * workers over that of 1 (2.00 = perfect scaling). */
#include "alloc.h"

#include <sys/wait.h>

const char *bench_workload = "scale";
const char *bench_title = "hot on 1 worker vs 2 threads vs 2 processes: aggregate M pairs/s and the 2/1 ratio";
const char *bench_usage = "[--pairs N (20M per worker)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ "dpdk", "dpdk" },
	{ NULL, NULL },
};

struct job {
	struct ba *b;
	struct bench_gate *g;
	unsigned nworkers;
	int idx;
	long n;
};

static int worker(void *arg)
{
	struct job *j = arg;

	BA_DISPATCH(j->b, ba_pairs(j->b, K, j->n / 10 + 10000));
	bench_gate_wait(j->g, j->nworkers);
	BA_DISPATCH(j->b, ba_pairs(j->b, K, j->n));
	j->g->t_end[j->idx] = bench_now_ns();
	return 0;
}

/* threads workers in each of procs processes; returns M pairs/s or -1. */
static double run_config(const char *variant, unsigned procs, unsigned threads, long n)
{
	struct bench_gate *g = bench_shared(sizeof(*g));
	unsigned total = procs * threads;
	pid_t pid[2];
	double end = 0;

	for (unsigned p = 0; p < procs; p++) {
		pid[p] = bench_fork();
		if (pid[p] == 0) {
			struct ba_opts o = { .size = 64, .nthreads = threads,
					     .first_cpu = procs * threads == 1 ? 1 : (int)p };
			struct ba b;
			struct job j[2];
			void *args[2] = { &j[0], &j[1] };

			if (ba_setup(&b, variant, &o)) {
				g->failed = 1;
				g->go = 1;
				_exit(1);
			}
			for (unsigned t = 0; t < threads; t++)
				j[t] = (struct job){ &b, g, total, (int)(p * threads + t), n };
			ba_run_workers(&b, threads, o.first_cpu, worker, args);
			ba_teardown(&b);
			_exit(0);
		}
	}
	for (unsigned p = 0; p < procs; p++)
		if (bench_wait(pid[p], 600))
			g->failed = 1;
	if (g->failed)
		return -1;
	for (unsigned i = 0; i < total; i++)
		if (g->t_end[i] > end)
			end = g->t_end[i];
	return (double)n * total / (end - g->t_start) * 1e3;
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "pairs", 20000000);
	bool ref = !strcmp(variant, "slabd");
	double r1, r2t, r2p;

	r1 = run_config(variant, 1, 1, n);
	r2t = run_config(variant, 1, 2, n);
	r2p = run_config(variant, 2, 1, n);
	if (r1 < 0 || r2t < 0 || r2p < 0) {
		bench_skip("a worker failed (1 worker: %s, 2 threads: %s, 2 processes: %s)",
			   r1 < 0 ? "failed" : "ok", r2t < 0 ? "failed" : "ok", r2p < 0 ? "failed" : "ok");
		return 0;
	}
	bench_row("scale-1", variant, "M pairs/s", false, ref, r1);
	bench_row("scale-2thr", variant, "M pairs/s", false, ref, r2t);
	bench_row("scale-2proc", variant, "M pairs/s", false, ref, r2p);
	bench_row("scale-2thr/1", variant, "x", false, ref, r2t / r1);
	bench_row("scale-2proc/1", variant, "x", false, ref, r2p / r1);
	return 0;
}
