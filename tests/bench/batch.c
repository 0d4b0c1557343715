/* batch.c - `batch`: allocate N (100,000) 64-byte objects, writing each one's first word,
 * then free them all: LIFO (newest first), and again in a shuffled order (a fixed seeded
 * permutation).  ns per operation (allocs and frees counted alike, timed phases only: the
 * shuffled free list is built between the two phases, untimed).  One untimed warm-up
 * round, then --rounds timed rounds per run. */
#include "alloc.h"

const char *bench_workload = "batch";
const char *bench_title = "allocate N 64-byte objects, then free them LIFO / shuffled (ns per operation)";
const char *bench_usage = "[--objects N (100000)] [--rounds R (20)] [--size B (64)] [--seed S (42)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ "dpdk", "dpdk" },
	{ NULL, NULL },
};

/* One round; returns the timed ns.  order: NULL for LIFO, else a permutation of 0..n-1. */
BA_AI double batch_round(struct ba *b, const int K, void **objs, void **tmp, const uint32_t *order,
			 long n)
{
	double t0, t1, t2, t3;

	t0 = bench_now_ns();
	ba_alloc_n(b, K, objs, n);
	t1 = bench_now_ns();
	if (order) {
		for (long i = 0; i < n; i++)
			tmp[i] = objs[order[i]];
		t2 = bench_now_ns();
		ba_free_n(b, K, tmp, n);
	} else {
		t2 = bench_now_ns();
		for (long i = n - 1; i >= 0; i--)
			ba_free(b, K, objs[i]);
	}
	t3 = bench_now_ns();
	return (t1 - t0) + (t3 - t2);
}

BA_AI void batch_kernel(struct ba *b, const int K, void **objs, void **tmp, const uint32_t *order,
			long n, int rounds, double *lifo, double *shuf)
{
	double tl = 0, ts = 0;

	batch_round(b, K, objs, tmp, NULL, n);      /* warm-up: slabs, pages, caches */
	batch_round(b, K, objs, tmp, order, n);
	for (int r = 0; r < rounds; r++) {
		tl += batch_round(b, K, objs, tmp, NULL, n);
		ts += batch_round(b, K, objs, tmp, order, n);
	}
	*lifo = tl / (2.0 * (double)n * rounds);
	*shuf = ts / (2.0 * (double)n * rounds);
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "objects", 100000);
	int rounds = (int)bench_opt_long(argc, argv, "rounds", 20);
	uint64_t seed = (uint64_t)bench_opt_long(argc, argv, "seed", 42);
	struct ba_opts o = { .size = (size_t)bench_opt_long(argc, argv, "size", 64), .first_cpu = 1,
			     .pool_objs = (unsigned)n + 8192,
			     .eal_mem_mb = (unsigned)(256 + n * 256 / (1 << 20)) };
	void **objs = bench_private((size_t)n * sizeof(void *));
	void **tmp = bench_private((size_t)n * sizeof(void *));
	uint32_t *order = bench_private((size_t)n * sizeof(uint32_t));
	double lifo = 0, shuf = 0;
	struct ba b;

	/* the permutation: shuffle the indices through the pointer array's storage */
	for (long i = 0; i < n; i++)
		tmp[i] = (void *)(uintptr_t)i;
	bench_shuffle(tmp, (size_t)n, seed);
	for (long i = 0; i < n; i++)
		order[i] = (uint32_t)(uintptr_t)tmp[i];
	bench_pin(1);
	if (ba_setup(&b, variant, &o))
		return 0;
	BA_DISPATCH(&b, batch_kernel(&b, K, objs, tmp, order, n, rounds, &lifo, &shuf));
	bench_row("batch-lifo", variant, "ns/op", true, !strcmp(variant, "slabd"), lifo);
	bench_row("batch-shuffled", variant, "ns/op", true, !strcmp(variant, "slabd"), shuf);
	ba_teardown(&b);
	return 0;
}
