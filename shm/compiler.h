/* compiler.h - branch hints and function attributes, defined once.
 *
 * Hot paths are `static inline` with one `unlikely` branch to a slow path that is
 * `sm_noinline sm_cold` and lives in a .c file (see magazine.h -> magazine.c).
 */
#ifndef SLABD_SHM_COMPILER_H
#define SLABD_SHM_COMPILER_H

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define sm_noinline __attribute__((noinline))
#define sm_cold     __attribute__((cold))
#define sm_unused   __attribute__((unused))
#define sm_always_inline inline __attribute__((always_inline))
/* A public fast path (slab_alloc, slab_free, slab_kmalloc, slab_kfree): on a cache line
 * of its own start, so that its speed does not move with the code around it.  Placed
 * wherever the linker put them, slab_alloc spanned two lines and slab_free three in one
 * build and one and two in another, and libslab.so's `hot` pair took 0.4 ns more in the
 * first (same instructions; four alternating rounds). */
#define sm_fastpath __attribute__((aligned(64)))

#define SM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SM_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))

/* A magazine's owner publishing a change to slabd's still reads of it (daemon/stats.c,
 * mag_version): the count after the entries a push wrote, a pop's counter after the
 * count.  On x86-64 (TSO) a plain store the compiler may not move above the stores before
 * it, and no instruction more; elsewhere a release store. */
#if defined(__x86_64__) || defined(__i386__)
#define SM_PUBLISH(p, v)                                                               \
	do {                                                                           \
		__atomic_signal_fence(__ATOMIC_RELEASE);                               \
		*(p) = (v);                                                            \
	} while (0)
#else
#define SM_PUBLISH(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif

/* Relaxed single-copy-atomic access to words another process may read or write.
 * On x86-64 these are plain moves; they keep the code free of formal data races. */
#define SM_LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define SM_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define SM_ADD(p, v)   __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)

/* Ask for the cache line at base + off for writing (the line in exclusive state, so the
 * first store needs no second trip).  x86 PREFETCHW (Broadwell and later; older CPUs
 * execute the opcode as a no-op), with the addition in the instruction's address (one
 * instruction fewer on the allocation fast path); elsewhere the compiler's write
 * prefetch.  Never faults, whatever the address. */
static inline void sm_prefetch_w(const void *base, uint64_t off)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw (%0,%1)" : : "r"(base), "r"(off));
#else
	__builtin_prefetch((const char *)base + off, 1);
#endif
}

/* Keep the compiler from moving stores across this point.  Slow-path steps order their
 * stores so that a process killed between any two of them leaves a state repair and
 * reclaim understand; x86-64 keeps the hardware order (TSO), this keeps the compiler's. */
#define SM_BARRIER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

#endif
