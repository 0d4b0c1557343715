/* bench.h - the benchmark framework shared by every workload in tests/bench/.
 *
 * Method (see tests/bench/README.md):
 *  - Each workload is one program (build/bench/<workload>).  Run without --child it is the
 *    driver: it runs every allocator variant as a separate child process, R times,
 *    interleaved (A B C A B C ...), collects the rows each child prints, and prints ONE
 *    table: median and min over the runs, and slabd's ratio to each peer.
 *  - A child (<binary> --child VARIANT ...) sets up its allocator, measures, and prints
 *    tab-separated lines on stdout:
 *        ROW  workload  label  unit  lower_is_better  is_ref  value
 *        NOTE text            (printed once under the table)
 *        SKIP reason          (the variant is skipped from then on, with the reason)
 *    and the framework appends the child's peak RSS (its own and its children's).
 *  - Allocators are linked as a service links them: each malloc peer is a separate binary
 *    (build/bench/peers/<workload>.<peer>) linked with -l<peer> ahead of libc, so its
 *    malloc/free interpose the process's; the child checks that with dladdr and says so.
 *    slabd and glibc run from the driver binary itself (libslab.a + glibc malloc).
 */
#ifndef SLABD_BENCH_H
#define SLABD_BENCH_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_RUNS 64

/* ---- the workload program provides these ---------------------------------------------- */

/* One variant the driver runs: name passed to --child, and the binary that runs it
 * (NULL: the driver binary itself; else build/bench/peers/<workload>.<binary>). */
struct bench_variant {
	const char *name;
	const char *binary;
};

extern const char *bench_workload;                    /* "hot", "batch", ... */
extern const char *bench_title;                       /* one line: what it measures */
extern const char *bench_usage;                       /* the workload's own options */
extern const struct bench_variant bench_variants[];   /* terminated by { NULL } */

/* The child: run variant `variant` with the workload's options (argv after --child V). */
int bench_child(const char *variant, int argc, char **argv);

/* Optional: set to true by workloads whose children start their own slabd, so the
 * driver does not start a shared one. */
extern const bool bench_own_daemon __attribute__((weak));

/* Optional driver hooks (weak; NULL when not defined). */
extern int  bench_driver_setup(void) __attribute__((weak));    /* before the first run */
extern void bench_driver_teardown(void) __attribute__((weak)); /* after the last */

/* ---- helpers for children ------------------------------------------------------------------ */

double bench_now_ns(void);
void   bench_pin(int cpu);            /* pin the calling thread to cpu % ncpu */
int    bench_ncpu(void);
void  *bench_shared(size_t len);      /* MAP_SHARED|MAP_ANONYMOUS, zeroed, prefaulted; dies on error */
void  *bench_private(size_t len);     /* plain mmap, prefaulted (not from the allocator tested) */
long   bench_opt_long(int argc, char **argv, const char *name, long dflt); /* --name N */
const char *bench_opt_str(int argc, char **argv, const char *name, const char *dflt);
void   bench_row(const char *workload, const char *label, const char *unit, bool lower_better,
		 bool is_ref, double value);
void   bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void   bench_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void   bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Which shared object `fn` comes from (basename), for the interposition check. */
const char *bench_symbol_origin(void *fn);

/* Keep the compiler from dropping or merging an allocation: p escapes to "memory". */
#define bench_escape(p) __asm__ volatile("" : : "r"(p) : "memory")

static inline uint64_t bench_rand(uint64_t *s)    /* xorshift64*, deterministic */
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Fisher-Yates with a seed. */
void bench_shuffle(void **a, size_t n, uint64_t seed);

/* ---- a process-shared start gate and a single-producer/single-consumer ring --------- */

struct bench_gate {
	_Alignas(64) unsigned ready;     /* workers that reached the gate */
	unsigned go;                     /* set by the last one */
	_Alignas(64) double t_start, t_end[8];
	unsigned failed;
};
void bench_gate_wait(struct bench_gate *g, unsigned nworkers); /* spins; sets t_start */

/* SPSC ring of uint64_t.  Producer and consumer each cache the other's index and
 * publish their own every BENCH_RING_BATCH items (and on flush), so the shared lines
 * move once per batch, not per item.  The same ring carries every allocator's objects
 * (pointers between threads, offsets between processes): only the allocator differs. */
#define BENCH_RING_BATCH 32
struct bench_ring {
	_Alignas(64) uint64_t head;      /* producer's published index */
	_Alignas(64) uint64_t tail;      /* consumer's published index */
	_Alignas(64) uint64_t cap, mask;
	_Alignas(64) uint64_t slots[];
};
struct bench_ring_end {              /* each side's private view */
	struct bench_ring *r;
	uint64_t mine, pub, other;
};
struct bench_ring *bench_ring_new(size_t cap);  /* in bench_shared memory */

static inline void bench_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* A waiting loop's step: pause, and every 256 steps give the cpu away, so a waiter does
 * not starve the side it waits for when the machine has more runnable threads than cpus
 * (the same for every allocator; an idle 2-cpu machine never gets there). */
static inline void bench_spin(unsigned *n)
{
	if (++*n & 255)
		bench_pause();
	else
		sched_yield();
}

static inline void bench_ring_push(struct bench_ring_end *e, uint64_t v)
{
	struct bench_ring *r = e->r;

	if (__builtin_expect(e->mine - e->other >= r->cap, 0)) {
		unsigned spins = 0;

		__atomic_store_n(&r->head, e->mine, __ATOMIC_RELEASE);
		e->pub = e->mine;
		while (e->mine - (e->other = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE)) >= r->cap)
			bench_spin(&spins);
	}
	r->slots[e->mine & r->mask] = v;
	e->mine++;
	if (e->mine - e->pub >= BENCH_RING_BATCH) {
		__atomic_store_n(&r->head, e->mine, __ATOMIC_RELEASE);
		e->pub = e->mine;
	}
}

static inline void bench_ring_flush_head(struct bench_ring_end *e)
{
	__atomic_store_n(&e->r->head, e->mine, __ATOMIC_RELEASE);
	e->pub = e->mine;
}

static inline uint64_t bench_ring_pop(struct bench_ring_end *e)
{
	struct bench_ring *r = e->r;
	uint64_t v;

	if (__builtin_expect(e->mine == e->other, 0)) {
		unsigned spins = 0;

		__atomic_store_n(&r->tail, e->mine, __ATOMIC_RELEASE);
		e->pub = e->mine;
		while ((e->other = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE)) == e->mine)
			bench_spin(&spins);
	}
	v = r->slots[e->mine & r->mask];
	e->mine++;
	if (e->mine - e->pub >= BENCH_RING_BATCH) {
		__atomic_store_n(&r->tail, e->mine, __ATOMIC_RELEASE);
		e->pub = e->mine;
	}
	return v;
}

/* ---- processes ------------------------------------------------------------------------- */

/* fork(); the child gets PR_SET_PDEATHSIG = SIGKILL.  Returns the pid (0 in the child). */
pid_t bench_fork(void);
/* Wait for a child up to timeout_s (then SIGKILL it); its exit code, 128+sig, -1 timeout. */
int   bench_wait(pid_t pid, int timeout_s);

/* Peak RSS in KiB of this process and of its waited-for children, whichever is larger. */
long bench_peak_rss_kib(void);
/* Current RSS in bytes (/proc/self/statm). */
long bench_rss_bytes(void);

/* Directory of the running executable (no trailing slash). */
const char *bench_exe_dir(void);

#endif
