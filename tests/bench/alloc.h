/* alloc.h - the allocators under test, behind one compile-time-dispatched interface.
 *
 * A workload kernel is written once as an always_inline function taking `const int K`
 * (the allocator kind); BA_DISPATCH(b, stmt) expands stmt once per kind this binary was
 * built with, K a constant in each copy, so every copy calls its allocator directly (no
 * function pointer, no branch on the kind inside the loop).
 *
 * Which allocators a binary has:
 *   BA_HAVE_SLABD   libslab (static libslab.a)          -- the driver binaries
 *   BA_HAVE_MALLOC  malloc/free, whichever the link gives: glibc in the driver binaries;
 *                   jemalloc / tcmalloc_minimal / mimalloc in peers/<w>.<peer>, linked
 *                   with -l<peer> ahead of libc so their malloc interposes (checked)
 *   BA_HAVE_DPDK    rte_mempool with a per-lcore cache of 256 (EAL --no-huge --no-pci)
 *
 * Every alloc is checked for NULL and every free's result is checked (a caller would); a
 * failure ends the child with a message.
 */
#ifndef SLABD_BENCH_ALLOC_H
#define SLABD_BENCH_ALLOC_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#ifdef BA_HAVE_SLABD
#include "slab.h"
#include "bench_daemon.h"
#endif
#ifdef BA_HAVE_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#endif

enum ba_kind { BA_SLABD = 1, BA_MALLOC, BA_DPDK };

struct ba {
	int         kind;
	size_t      size;
	const char *variant;
#ifdef BA_HAVE_SLABD
	slab_pool  *pool;
	slab_cache *cache;
#endif
#ifdef BA_HAVE_DPDK
	struct rte_mempool *mp;
#endif
	double      create_ns;    /* DPDK: rte_mempool_create (it carves every object) */
};

struct ba_opts {
	size_t      size;         /* object size (64) */
	const char *cache_name;   /* slabd: cache to create or open (default bench-<size>) */
	unsigned    nthreads;     /* threads that will use it (DPDK: lcores) */
	int         first_cpu;    /* DPDK: first lcore / cpu */
	unsigned    pool_objs;    /* DPDK: mempool size (objects) */
	unsigned    eal_mem_mb;   /* DPDK: -m (default 256) */
};

__attribute__((noreturn, cold, unused)) static void ba_fail(const char *what)
{
	fprintf(stderr, "allocator failure: %s\n", what);
	exit(3);
}

/* Set up allocator `variant` ("slabd", or a malloc peer "glibc", "jemalloc", "tcmalloc",
 * "mimalloc", or "dpdk").  Returns 0, or -1 after bench_skip() with the reason. */
static inline int ba_setup(struct ba *b, const char *variant, const struct ba_opts *o)
{
	memset(b, 0, sizeof(*b));
	b->size = o->size ? o->size : 64;
	b->variant = variant;
#ifdef BA_HAVE_SLABD
	if (!strncmp(variant, "slabd", 5)) {
		struct slab_cache_config cfg = { .size = b->size, .node = SLAB_NODE_LOCAL };
		const char *lim = getenv("BENCH_SLAB_LIMIT"); /* tuning experiments */
		char name[64];
		int rc;

		if (lim)
			cfg.limit = (unsigned)atoi(lim);

		b->kind = BA_SLABD;
		/* One cache per workload, destroyed when its child is done: every workload
		 * starts from a fresh cache, as each malloc peer starts in a fresh process
		 * and DPDK with a fresh mempool.  (Sharing one cache let a shuffled batch
		 * leave its scattered objects in the shared array for the next workload:
		 * prodcons after batch ran at 65 instead of 125 M objects/s.) */
		snprintf(name, sizeof(name), "bench-%s-%zu", bench_workload, b->size);
		rc = slab_pool_connect(NULL, &b->pool);
		if (rc) {
			bench_skip("slab_pool_connect($SLABD_SOCKET=%s): %s", getenv("SLABD_SOCKET"),
				   slab_strerror(rc));
			return -1;
		}
		rc = slab_cache_create(b->pool, o->cache_name ? o->cache_name : name, &cfg, &b->cache);
		if (rc) {
			bench_skip("slab_cache_create: %s", slab_strerror(rc));
			return -1;
		}
		return 0;
	}
#endif
#ifdef BA_HAVE_MALLOC
	if (!strcmp(variant, "glibc") || !strcmp(variant, "jemalloc") ||
	    !strcmp(variant, "tcmalloc") || !strcmp(variant, "mimalloc")) {
		const char *want = !strcmp(variant, "glibc") ? "libc.so" : variant;
		const char *got = bench_symbol_origin((void *)malloc);
		const char *got_free = bench_symbol_origin((void *)free);

		b->kind = BA_MALLOC;
		if (!strstr(got, want) || !strstr(got_free, want)) {
			bench_skip("malloc/free resolve to %s/%s, not %s: the link order is wrong", got,
				   got_free, want);
			return -1;
		}
		bench_note("malloc and free resolve to %s (checked with dladdr)", got);
		return 0;
	}
#endif
#ifdef BA_HAVE_DPDK
	if (!strcmp(variant, "dpdk")) {
		char lcores[32], prefix[64], mem[16], pname[RTE_MEMPOOL_NAMESIZE];
		unsigned nt = o->nthreads ? o->nthreads : 1;
		char *argv[] = { (char *)"bench", (char *)"--no-huge", (char *)"--no-pci",
				 (char *)"--no-shconf", (char *)"--no-telemetry",
				 (char *)"--log-level=error", (char *)"-l", lcores,
				 (char *)"--file-prefix", prefix, (char *)"-m", mem, NULL };
		int first = o->first_cpu % bench_ncpu();

		b->kind = BA_DPDK;
		if (nt == 1)
			snprintf(lcores, sizeof(lcores), "%d", first);
		else
			snprintf(lcores, sizeof(lcores), "%d-%d", first, first + (int)nt - 1);
		snprintf(prefix, sizeof(prefix), "slabbench%d", (int)getpid());
		snprintf(mem, sizeof(mem), "%u", o->eal_mem_mb ? o->eal_mem_mb : 256);
		if (rte_eal_init((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv) < 0) {
			bench_skip("rte_eal_init(--no-huge --no-pci -l %s): %s", lcores,
				   rte_strerror(rte_errno));
			return -1;
		}
		snprintf(pname, sizeof(pname), "bench%d", (int)getpid());
		b->create_ns = bench_now_ns();
		b->mp = rte_mempool_create(pname, o->pool_objs ? o->pool_objs : 16383,
					   (unsigned)b->size, 256, 0, NULL, NULL, NULL, NULL,
					   SOCKET_ID_ANY, 0);
		b->create_ns = bench_now_ns() - b->create_ns;
		if (!b->mp) {
			bench_skip("rte_mempool_create(%u objects of %zu B, cache 256): %s",
				   o->pool_objs ? o->pool_objs : 16383, b->size, rte_strerror(rte_errno));
			return -1;
		}
		bench_note("rte_mempool %s ops, per-lcore cache 256, EAL -l %s --no-huge",
			   b->mp->ops_index >= 0 ? rte_mempool_get_ops(b->mp->ops_index)->name : "?",
			   lcores);
		return 0;
	}
#endif
	bench_skip("variant %s is not built into this binary", variant);
	return -1;
}

static inline void ba_teardown(struct ba *b)
{
#ifdef BA_HAVE_SLABD
	if (b->kind == BA_SLABD) {
		/* pending while another process (prodcons) has it open; EBUSY if objects
		 * are still out: either way the handle is closed */
		slab_cache_destroy(b->cache);
		slab_pool_disconnect(b->pool);
		b->pool = NULL;
	}
#endif
#ifdef BA_HAVE_DPDK
	if (b->kind == BA_DPDK) {
		rte_mempool_free(b->mp);
		rte_eal_cleanup();
	}
#endif
	(void)b;
}

#define BA_AI static inline __attribute__((always_inline))

BA_AI void *ba_alloc(struct ba *b, const int K)
{
	void *p = NULL;

#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD)
		p = slab_alloc(b->cache);
#endif
#ifdef BA_HAVE_MALLOC
	if (K == BA_MALLOC)
		p = malloc(b->size);
#endif
#ifdef BA_HAVE_DPDK
	if (K == BA_DPDK && rte_mempool_get(b->mp, &p))
		p = NULL;
#endif
	(void)b;
	(void)K;
	if (__builtin_expect(!p, 0))
		ba_fail("alloc returned NULL");
	return p;
}

BA_AI void ba_free(struct ba *b, const int K, void *p)
{
#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD && __builtin_expect(slab_free(b->cache, p) != 0, 0))
		ba_fail("slab_free refused a valid object");
#endif
#ifdef BA_HAVE_MALLOC
	if (K == BA_MALLOC)
		free(p);
#endif
#ifdef BA_HAVE_DPDK
	if (K == BA_DPDK)
		rte_mempool_put(b->mp, p);
#endif
	(void)b;
	(void)K;
	(void)p;
}

/* Variable sizes: slab_kmalloc / slab_kfree (the kmalloc-8 ... kmalloc-8192 caches), or
 * malloc / free. */
BA_AI void *ba_kmalloc(struct ba *b, const int K, size_t size)
{
	void *p = NULL;

#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD)
		p = slab_kmalloc(b->pool, size);
#endif
#ifdef BA_HAVE_MALLOC
	if (K == BA_MALLOC)
		p = malloc(size);
#endif
	(void)b;
	(void)K;
	(void)size;
	if (__builtin_expect(!p, 0))
		ba_fail("kmalloc returned NULL");
	return p;
}

BA_AI void ba_kfree(struct ba *b, const int K, void *p)
{
#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD && __builtin_expect(slab_kfree(b->pool, p) != 0, 0))
		ba_fail("slab_kfree refused a valid object");
#endif
#ifdef BA_HAVE_MALLOC
	if (K == BA_MALLOC)
		free(p);
#endif
	(void)b;
	(void)K;
	(void)p;
}

/* Objects handed between processes travel as offsets (slabd: slab_offset), between
 * threads as pointers. */
BA_AI uint64_t ba_to_wire(struct ba *b, const int K, void *p, bool xproc)
{
#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD && xproc)
		return slab_offset(b->pool, p);
#endif
	(void)b;
	(void)K;
	(void)xproc;
	return (uint64_t)(uintptr_t)p;
}

BA_AI void *ba_from_wire(struct ba *b, const int K, uint64_t v, bool xproc)
{
#ifdef BA_HAVE_SLABD
	if (K == BA_SLABD && xproc)
		return slab_pointer(b->pool, v);
#endif
	(void)b;
	(void)K;
	(void)xproc;
	return (void *)(uintptr_t)v;
}

/* ---- loops several workloads time (always_inline: each stays a copy in its kernel) ---- */

/* n pairs of the `hot` body: alloc, write the first word, let the pointer escape, free. */
BA_AI void ba_pairs(struct ba *b, const int K, long n)
{
	for (long i = 0; i < n; i++) {
		uint64_t *p = ba_alloc(b, K);
		p[0] = (uint64_t)i;
		bench_escape(p);
		ba_free(b, K, p);
	}
}

/* Allocate objs[0..n-1], writing each one's first word (its index). */
BA_AI void ba_alloc_n(struct ba *b, const int K, void **objs, long n)
{
	for (long i = 0; i < n; i++) {
		uint64_t *p = ba_alloc(b, K);
		p[0] = (uint64_t)i;
		objs[i] = p;
	}
}

/* Free objs[0..n-1], first to last. */
BA_AI void ba_free_n(struct ba *b, const int K, void **objs, long n)
{
	for (long i = 0; i < n; i++)
		ba_free(b, K, objs[i]);
}

#ifdef BA_HAVE_SLABD
#define BA_CASE_SLABD(stmt) case BA_SLABD: { const int K = BA_SLABD; stmt; } break;
#else
#define BA_CASE_SLABD(stmt)
#endif
#ifdef BA_HAVE_MALLOC
#define BA_CASE_MALLOC(stmt) case BA_MALLOC: { const int K = BA_MALLOC; stmt; } break;
#else
#define BA_CASE_MALLOC(stmt)
#endif
#ifdef BA_HAVE_DPDK
#define BA_CASE_DPDK(stmt) case BA_DPDK: { const int K = BA_DPDK; stmt; } break;
#else
#define BA_CASE_DPDK(stmt)
#endif

#define BA_DISPATCH(b, stmt)                                                           \
	do {                                                                           \
		switch ((b)->kind) {                                                   \
		BA_CASE_SLABD(stmt)                                                    \
		BA_CASE_MALLOC(stmt)                                                   \
		BA_CASE_DPDK(stmt)                                                     \
		default:                                                               \
			ba_fail("no such allocator in this binary");                  \
		}                                                                      \
	} while (0)

/* Run fn(arg[i]) on n workers (n <= 8): DPDK uses EAL lcores (worker 0 on the main
 * lcore); the others use pthreads, worker i pinned to cpu first_cpu + i. */
typedef int (*ba_worker_fn)(void *arg);

struct ba_pthread_arg {
	ba_worker_fn fn;
	void *arg;
	int cpu;
};

static inline void *ba_pthread_main(void *a)
{
	struct ba_pthread_arg *t = a;

	bench_pin(t->cpu);
	return (void *)(intptr_t)t->fn(t->arg);
}

static inline void ba_run_workers(struct ba *b, unsigned n, int first_cpu, ba_worker_fn fn,
				  void **args)
{
	pthread_t th[8];
	struct ba_pthread_arg ta[8];

	if (n > 8)
		ba_fail("more than 8 workers");
#ifdef BA_HAVE_DPDK
	if (b->kind == BA_DPDK) {
		unsigned lcore, i = 1;

		RTE_LCORE_FOREACH_WORKER(lcore) {
			if (i < n)
				rte_eal_remote_launch(fn, args[i++], lcore);
		}
		if (i != n)
			ba_fail("not enough DPDK lcores");
		fn(args[0]);
		rte_eal_mp_wait_lcore();
		return;
	}
#endif
	(void)b;
	for (unsigned i = 1; i < n; i++) {
		ta[i] = (struct ba_pthread_arg){ fn, args[i], first_cpu + (int)i };
		if (pthread_create(&th[i], NULL, ba_pthread_main, &ta[i]))
			ba_fail("pthread_create");
	}
	bench_pin(first_cpu);
	fn(args[0]);
	for (unsigned i = 1; i < n; i++)
		pthread_join(th[i], NULL);
}

#endif
