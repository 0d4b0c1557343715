/* sizes.c - `sizes`: slab_kmalloc / slab_kfree against malloc / free with sizes drawn
 * uniformly from 16..4096 bytes (seeded xorshift).  A working set of --live objects
 * (1000); each step frees a random one and allocates a new random size in its place,
 * writing its first word.  The (slot, size) stream is precomputed (64 Ki steps, cycled),
 * untimed.  ns per free+alloc pair, after a warm-up pass. */
#include "alloc.h"

const char *bench_workload = "sizes";
const char *bench_title = "random sizes 16..4096 B, working set of 1000: free one + alloc one (ns per pair)";
const char *bench_usage = "[--pairs N (5M)] [--live L (1000)] [--min B (16)] [--max B (4096)] [--seed S (7)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ NULL, NULL },
};

#define STEPS (1u << 16)

struct step {
	uint32_t slot, size;
};

BA_AI void sizes_loop(struct ba *b, const int K, void **live, const struct step *st, long n)
{
	for (long i = 0; i < n; i++) {
		const struct step *s = &st[i & (STEPS - 1)];
		uint64_t *p;

		ba_kfree(b, K, live[s->slot]);
		p = ba_kmalloc(b, K, s->size);
		p[0] = (uint64_t)i;
		live[s->slot] = p;
	}
}

BA_AI double sizes_kernel(struct ba *b, const int K, void **live, long nlive, const struct step *st,
			  long n, uint64_t seed)
{
	double t;

	for (long i = 0; i < nlive; i++) {
		uint64_t *p = ba_kmalloc(b, K, 16 + bench_rand(&seed) % 4081);
		p[0] = 0;
		live[i] = p;
	}
	sizes_loop(b, K, live, st, n / 5 + STEPS);
	t = bench_now_ns();
	sizes_loop(b, K, live, st, n);
	t = bench_now_ns() - t;
	for (long i = 0; i < nlive; i++)
		ba_kfree(b, K, live[i]);
	return t / (double)n;
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "pairs", 5000000);
	long nlive = bench_opt_long(argc, argv, "live", 1000);
	long lo = bench_opt_long(argc, argv, "min", 16), hi = bench_opt_long(argc, argv, "max", 4096);
	uint64_t seed = (uint64_t)bench_opt_long(argc, argv, "seed", 7);
	struct ba_opts o = { .size = 64, .first_cpu = 1 };
	void **live = bench_private((size_t)nlive * sizeof(void *));
	struct step *st = bench_private(STEPS * sizeof(*st));
	double ns = 0;
	struct ba b;

	if (hi < lo)
		bench_die("--max below --min");
	for (unsigned i = 0; i < STEPS; i++) {
		st[i].slot = (uint32_t)(bench_rand(&seed) % (uint64_t)nlive);
		st[i].size = (uint32_t)(lo + (long)(bench_rand(&seed) % (uint64_t)(hi - lo + 1)));
	}
	bench_pin(1);
	if (ba_setup(&b, variant, &o))
		return 0;
	BA_DISPATCH(&b, ns = sizes_kernel(&b, K, live, nlive, st, n, seed));
	bench_row("sizes", variant, "ns/pair", true, !strcmp(variant, "slabd"), ns);
	ba_teardown(&b);
	return 0;
}
