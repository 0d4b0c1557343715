/* memory.c - `memory`: resident bytes of N (1,000,000) 64-byte objects at their peak,
 * after freeing them all, and after free + shrink; and slabd's metadata as a share of
 * its arena.
 *   slabd   a private slabd per run (a clean arena).  Resident bytes are the daemon's
 *           arena.stats resident_bytes (st_blocks of the arena fd): after the frees,
 *           after cache.shrink (objects still in this thread's magazine pin their
 *           slabs), and after slab_cache_close (which flushes the magazines) + cache.shrink.
 *           meta = meta_bytes / size.
 *   peers   the process's RSS above its baseline (/proc/self/statm); "shrink" is the
 *           allocator's own release call: glibc malloc_trim(0), jemalloc
 *           mallctl("arena.4096.purge"), tcmalloc MallocExtension_ReleaseFreeMemory(),
 *           mimalloc mi_collect(true).
 * Bytes in MiB; shrunk/peak in %. */
#include "alloc.h"

#include <dlfcn.h>

const char *bench_workload = "memory";
const char *bench_title = "resident MiB of N 64-byte objects: peak, after free, after free + shrink; metadata share";
const char *bench_usage = "[--objects N (1000000)]";
const bool bench_own_daemon = true;

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ "glibc", NULL },
	{ "jemalloc", "jemalloc" },
	{ "tcmalloc", "tcmalloc" },
	{ "mimalloc", "mimalloc" },
	{ NULL, NULL },
};

#define MIB (1024.0 * 1024.0)

static void alloc_n(struct ba *b, void **objs, long n)
{
	BA_DISPATCH(b, ba_alloc_n(b, K, objs, n));
}

static void free_n(struct ba *b, void **objs, long n)
{
	BA_DISPATCH(b, ba_free_n(b, K, objs, n));
}

static void rows(const char *variant, bool ref, double peak, double after_free, double after_shrink)
{
	bench_row("mem-peak", variant, "MiB", true, ref, peak / MIB);
	bench_row("mem-after-free", variant, "MiB", true, ref, after_free / MIB);
	bench_row("mem-after-shrink", variant, "MiB", true, ref, after_shrink / MIB);
	bench_row("mem-shrunk/peak", variant, "%", true, ref, 100.0 * after_shrink / peak);
}

#ifdef BA_HAVE_SLABD
static double arena_resident(const char *sock)
{
	struct bench_arena_stats st;

	if (bench_arena_stats(sock, &st))
		ba_fail("arena.stats");
	return (double)st.resident_bytes;
}

/* The daemon drains discard queues every 20 ms: let it. */
static double settled_resident(const char *sock)
{
	double r = arena_resident(sock), prev;

	do {
		prev = r;
		usleep(60000);
		r = arena_resident(sock);
	} while (r < prev);
	return r;
}

static int slabd_memory(const char *variant, long n, void **objs)
{
	struct ba_opts o = { .size = 64, .cache_name = "bench-mem" };
	struct bench_arena_stats st;
	struct bench_daemon d;
	double base, peak, after_free, after_shrink, after_close;
	long long released;
	struct ba b;

	if (bench_daemon_start(&d, NULL)) {
		bench_skip("could not start a private slabd");
		return 0;
	}
	setenv("SLABD_SOCKET", d.socket, 1);
	if (ba_setup(&b, "slabd", &o)) {
		bench_daemon_stop(&d);
		return 0;
	}
	base = arena_resident(d.socket);
	alloc_n(&b, objs, n);
	peak = arena_resident(d.socket);
	free_n(&b, objs, n);
	after_free = settled_resident(d.socket);
	released = bench_cache_shrink(d.socket, "bench-mem");
	after_shrink = settled_resident(d.socket);
	slab_cache_close(b.cache);
	b.cache = NULL;
	bench_cache_shrink(d.socket, "bench-mem");
	after_close = settled_resident(d.socket);
	if (bench_arena_stats(d.socket, &st))
		ba_fail("arena.stats");
	rows(variant, true, peak, after_free, after_shrink);
	bench_row("mem-after-close+shrink", variant, "MiB", true, true, after_close / MIB);
	bench_row("mem-closed/peak", variant, "%", true, true, 100.0 * after_close / peak);
	bench_row("meta/arena", variant, "%", true, true, 100.0 * (double)st.meta_bytes / (double)st.size);
	bench_note("arena %.0f MiB, meta_bytes %.2f MiB, resident before the allocations %.2f MiB; "
		   "cache.shrink released %lld slabs; at the end the page allocators hold %.2f MiB "
		   "in use (slabs + client areas) while %.2f MiB stay resident",
		   (double)st.size / MIB, (double)st.meta_bytes / MIB, base / MIB, released,
		   (double)st.used_bytes / MIB, (double)st.resident_bytes / MIB);
	ba_teardown(&b);
	bench_daemon_stop(&d);
	return 0;
}
#endif

static void peer_release(const char *variant)
{
	if (!strcmp(variant, "glibc")) {
		int (*trim)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "malloc_trim");
		if (trim)
			trim(0);
	} else if (!strcmp(variant, "jemalloc")) {
		int (*ctl)(const char *, void *, size_t *, void *, size_t) =
			(int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
		if (!ctl || ctl("arena.4096.purge", NULL, NULL, NULL, 0))
			bench_note("mallctl arena.4096.purge failed");
	} else if (!strcmp(variant, "tcmalloc")) {
		void (*rel)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
		if (rel)
			rel();
		else
			bench_note("no MallocExtension_ReleaseFreeMemory");
	} else if (!strcmp(variant, "mimalloc")) {
		void (*col)(bool) = (void (*)(bool))dlsym(RTLD_DEFAULT, "mi_collect");
		if (col)
			col(true);
		else
			bench_note("no mi_collect");
	}
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "objects", 1000000);
	void **objs = bench_private((size_t)n * sizeof(void *));
	struct ba_opts o = { .size = 64 };
	double base, peak, after_free, after_shrink;
	struct ba b;

	bench_pin(1);
#ifdef BA_HAVE_SLABD
	if (!strcmp(variant, "slabd"))
		return slabd_memory(variant, n, objs);
#endif
	if (ba_setup(&b, variant, &o))
		return 0;
	base = (double)bench_rss_bytes();
	alloc_n(&b, objs, n);
	peak = (double)bench_rss_bytes() - base;
	free_n(&b, objs, n);
	after_free = (double)bench_rss_bytes() - base;
	peer_release(variant);
	after_shrink = (double)bench_rss_bytes() - base;
	rows(variant, false, peak, after_free, after_shrink);
	ba_teardown(&b);
	return 0;
}
