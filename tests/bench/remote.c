/* remote.c - `remote`: slabd --nodes 2 (virtual nodes on a one-node host), cost of freeing
 * objects whose slabs are on the other node (SLAB's cache_free_alien: a per-thread alien
 * buffer per node, sent home in batches) against freeing local ones.
 *
 * A private slabd per run.  Process X (SLAB_NODE=1) allocates 1.5 N objects -- on node 1
 * -- and hands their offsets over in shared memory.  Process Y (SLAB_NODE=0) then times
 * freeing N objects three ways, each after allocating its own local objects untimed:
 *   local-only   N objects it allocated itself (node 0)
 *   half-remote  N/2 of its own and N/2 of X's, alternating
 *   all-remote   N of X's
 * ns per free; `alien extra` = the extra cost of one remote free over a local one, from
 * the half-remote run: 2 * (half - local).  The alien_free counter is checked.
 * slabd only: no peer has NUMA-node slabs across processes. */
#include "alloc.h"

#include <sys/wait.h>

const char *bench_workload = "remote";
const char *bench_title = "slabd --nodes 2: frees of objects from the other node (alien path) vs local (ns per free)";
const char *bench_usage = "[--objects N (200000)]";

const bool bench_own_daemon = true;

const struct bench_variant bench_variants[] = {
	{ "slabd", NULL },
	{ NULL, NULL },
};

struct xchg {
	unsigned ready, done;
	uint64_t n;
	uint64_t off[];
};

#ifdef BA_HAVE_SLABD
static double free_timed(struct ba *b, void **objs, long n)
{
	double t = bench_now_ns();

	for (long i = 0; i < n; i++)
		if (slab_free(b->cache, objs[i]))
			ba_fail("slab_free refused a valid object");
	return (bench_now_ns() - t) / (double)n;
}

static void alloc_local(struct ba *b, void **objs, long n)
{
	for (long i = 0; i < n; i++) {
		uint64_t *p = slab_alloc(b->cache);
		if (!p)
			ba_fail("slab_alloc");
		p[0] = (uint64_t)i;
		objs[i] = p;
	}
}

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "objects", 200000);
	long nx = n + n / 2;
	const char *extra[] = { "--nodes", "2", NULL };
	struct xchg *x = bench_shared(sizeof(*x) + (size_t)nx * sizeof(uint64_t));
	void **objs = bench_private((size_t)n * sizeof(void *));
	void **mine = bench_private((size_t)n * sizeof(void *));
	struct ba_opts o = { .size = 64, .cache_name = "bench-remote" };
	struct bench_daemon d;
	double local, half, all;
	long long alien0, alien1;
	struct ba b;
	pid_t pid;

	if (bench_daemon_start(&d, extra)) {
		bench_skip("could not start slabd --nodes 2");
		return 0;
	}
	setenv("SLABD_SOCKET", d.socket, 1);
	pid = bench_fork();
	if (pid == 0) {
		struct ba bx;

		setenv("SLAB_NODE", "1", 1);
		bench_pin(0);
		if (ba_setup(&bx, "slabd", &o))
			_exit(1);
		for (long i = 0; i < nx; i++) {
			uint64_t *p = slab_alloc(bx.cache);
			if (!p)
				_exit(2);
			p[0] = (uint64_t)i;
			x->off[i] = slab_offset(bx.pool, p);
		}
		__atomic_store_n(&x->ready, 1, __ATOMIC_RELEASE);
		while (!__atomic_load_n(&x->done, __ATOMIC_ACQUIRE))
			usleep(1000);
		ba_teardown(&bx);
		_exit(0);
	}
	setenv("SLAB_NODE", "0", 1);
	bench_pin(1);
	if (ba_setup(&b, "slabd", &o)) {
		x->done = 1;
		bench_wait(pid, 60);
		bench_daemon_stop(&d);
		return 0;
	}
	while (!__atomic_load_n(&x->ready, __ATOMIC_ACQUIRE)) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			bench_skip("the node-1 process failed");
			ba_teardown(&b);
			bench_daemon_stop(&d);
			return 0;
		}
		usleep(1000);
	}
	/* warm-up: bind the magazine, grow node 0's slabs */
	alloc_local(&b, mine, n);
	free_timed(&b, mine, n);

	alloc_local(&b, mine, n);
	local = free_timed(&b, mine, n);

	alien0 = bench_cache_stat(d.socket, "bench-remote", "alien_free");
	alloc_local(&b, mine, n / 2);
	for (long i = 0; i < n / 2; i++) {
		objs[2 * i] = mine[i];
		objs[2 * i + 1] = slab_pointer(b.pool, x->off[i]);
	}
	half = free_timed(&b, objs, 2 * (n / 2));

	for (long i = 0; i < n; i++)
		objs[i] = slab_pointer(b.pool, x->off[n / 2 + i]);
	all = free_timed(&b, objs, n);
	alien1 = bench_cache_stat(d.socket, "bench-remote", "alien_free");

	bench_row("remote-free", "slabd local-only", "ns/free", true, true, local);
	bench_row("remote-free", "slabd half-remote", "ns/free", true, false, half);
	bench_row("remote-free", "slabd all-remote", "ns/free", true, false, all);
	bench_row("alien-extra", "slabd (2*(half-local))", "ns/object", true, true, 2 * (half - local));
	bench_row("alien-extra", "slabd (all-remote - local)", "ns/object", true, false, all - local);
	if (alien0 >= 0 && alien1 >= 0)
		bench_note("alien_free counter rose by %lld for %ld remote frees", alien1 - alien0,
			   n / 2 + n);
	else
		bench_note("could not read the alien_free counter");
	ba_teardown(&b);
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	bench_wait(pid, 60);
	bench_daemon_stop(&d);
	(void)variant;
	return 0;
}
#else
int bench_child(const char *variant, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	bench_skip("%s: remote needs slabd", variant);
	return 0;
}
#endif
