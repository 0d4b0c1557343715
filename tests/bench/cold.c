/* cold.c - `cold`: a fresh cache, the first N (1,000,000) allocations of 64-byte objects,
 * each one's first word written (so fresh pages fault in, for every allocator alike),
 * against the same N allocations again after freeing them all (warm).  ns per
 * allocation, and cold/warm.
 *   slabd              a private slabd started for the run (a fresh arena: slab grants
 *                      AND first-touch page faults, as a fresh malloc process has; the
 *                      node reserve, 16 MiB by default, is faulted in before slabd is
 *                      ready, untimed, as DPDK's pool is at create)
 *   slabd-warm-arena   a new cache on the long-running slabd (slab grants; the arena's
 *                      pages may have been touched by earlier workloads)
 *   malloc peers       a fresh process
 *   dpdk               rte_mempool_create carves and touches every object up front: the
 *                      cold row excludes it, the cold+create row includes it. */
#include "alloc.h"

const char *bench_workload = "cold";
const char *bench_title = "fresh cache: first N allocations (grants, page faults) vs the same N warm (ns per alloc)";
const char *bench_usage = "[--objects N (1000000)]";

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "slabd-warm-arena", NULL },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ "dpdk", "dpdk" },
	{ NULL, NULL },
};

BA_AI double alloc_all(struct ba *b, const int K, void **objs, long n)
{
	double t = bench_now_ns();

	ba_alloc_n(b, K, objs, n);
	return bench_now_ns() - t;
}

BA_AI void cold_kernel(struct ba *b, const int K, void **objs, long n, double *cold, double *warm)
{
	*cold = alloc_all(b, K, objs, n);
	ba_free_n(b, K, objs, n);
	*warm = alloc_all(b, K, objs, n);
	ba_free_n(b, K, objs, n);
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "objects", 1000000);
	struct ba_opts o = { .size = 64, .first_cpu = 1, .pool_objs = (unsigned)n + 8192,
			     .eal_mem_mb = (unsigned)(256 + n * 256 / (1 << 20)) };
	void **objs = bench_private((size_t)n * sizeof(void *));
	const char *alloc = variant;
	double cold = 0, warm = 0;
	bool ref = !strcmp(variant, "slabd");
	struct ba b;
#ifdef BA_HAVE_SLABD
	struct bench_daemon d = { 0 };
	char name[64];

	if (ref) {
		if (bench_daemon_start(&d, NULL)) {
			bench_skip("could not start a private slabd");
			return 0;
		}
		setenv("SLABD_SOCKET", d.socket, 1);
	}
	if (!strncmp(variant, "slabd", 5)) {
		snprintf(name, sizeof(name), "bench-cold-%d", (int)getpid());
		o.cache_name = name;
		alloc = "slabd";
	}
#endif
	bench_pin(1);
	if (ba_setup(&b, alloc, &o)) {
#ifdef BA_HAVE_SLABD
		if (d.pid)
			bench_daemon_stop(&d);
#endif
		return 0;
	}
	BA_DISPATCH(&b, cold_kernel(&b, K, objs, n, &cold, &warm));
	bench_row("cold", variant, "ns/alloc", true, ref, cold / (double)n);
	bench_row("warm", variant, "ns/alloc", true, ref, warm / (double)n);
	bench_row("cold/warm", variant, "x", true, ref, cold / warm);
	if (b.create_ns > 0)
		bench_row("cold+create", variant, "ns/alloc", true, ref, (cold + b.create_ns) / (double)n);
#ifdef BA_HAVE_SLABD
	if (b.kind == BA_SLABD) {
		int rc = slab_cache_destroy(b.cache);
		b.cache = NULL;
		if (rc)
			bench_note("slab_cache_destroy: %s", slab_strerror(rc));
	}
	ba_teardown(&b);
	if (d.pid)
		bench_daemon_stop(&d);
#else
	ba_teardown(&b);
#endif
	return 0;
}
