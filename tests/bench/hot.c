/* hot.c - `hot`: one thread, alloc + write + free of one 64-byte object, repeated.
 * ns per alloc+free pair, after a warm-up; the object's first word is written and the
 * pointer escapes (no allocator call can be elided). */
#include "alloc.h"

const char *bench_workload = "hot";
const char *bench_title = "one thread, alloc + write 8 B + free of a 64-byte object, repeated (ns per pair)";
const char *bench_usage = "[--pairs N (20M)] [--size B (64)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },             /* libslab.a, the driver binary */
	{ "slabd-so", "slabd-so" },    /* libslab.so (PLT calls), as pkg-config links it */
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ "dpdk", "dpdk" },
	{ NULL, NULL },
};

BA_AI double hot_kernel(struct ba *b, const int K, long n)
{
	double t;

	ba_pairs(b, K, n / 10 + 10000);
	t = bench_now_ns();
	ba_pairs(b, K, n);
	return (bench_now_ns() - t) / (double)n;
}

int bench_child(const char *variant, int argc, char **argv)
{
	struct ba_opts o = { .size = (size_t)bench_opt_long(argc, argv, "size", 64), .first_cpu = 1 };
	long n = bench_opt_long(argc, argv, "pairs", 20000000);
	struct ba b;
	double ns = 0;

	bench_pin(1);
	if (ba_setup(&b, !strcmp(variant, "slabd-so") ? "slabd" : variant, &o))
		return 0;
	BA_DISPATCH(&b, ns = hot_kernel(&b, K, n));
	bench_row("hot", variant, "ns/pair", true, !strcmp(variant, "slabd"), ns);
	ba_teardown(&b);
	return 0;
}
