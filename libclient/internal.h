/* internal.h - libslab's private structures, and the alloc/free fast paths (inline
 * here: slab_alloc/slab_free and slab_kmalloc/slab_kfree all use them).
 *
 *   pool.c    connect, hello + arena fd, RPC, fork, disconnect, client area
 *   cache.c   handles, slab_alloc/slab_free and their slow paths, threads
 *   kmalloc.c size classes, slab_kmalloc/slab_kfree
 *
 * Per-thread state: slab_tls_mags[slot] is the calling thread's magazine for the handle
 * with that slot (initial-exec TLS, so the fast path is one %fs-relative load).  An
 * unbound entry points at slab_empty_mag (avail 0, limit 0), so the fast paths need no
 * NULL test: both fall into their slow paths, which bind a magazine.
 *
 * Invariants:
 *   L1 a binding exists for (thread, handle) iff that thread's slab_tls_mags[h->slot]
 *      points at binding->mag; the binding is on h->bindings and on the thread's list;
 *   L2 bindings, handle slots, the idle magazine lists and the thread lists are changed
 *      only under lib_lock (slow paths only);
 *   L3 pool->rpc_lock serialises the request/reply exchanges on pool->fd;
 *   lock order: lib_lock, then rpc_lock.
 */
#ifndef SLABD_LIBCLIENT_INTERNAL_H
#define SLABD_LIBCLIENT_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "client.h"
#include "objcheck.h"
#include "magazine.h"
#include "slab.h"

#define SLAB_TLS_SLOTS  256    /* cache handles open at once in one process */
#define SLAB_KMALLOC_NR 13

struct binding;

struct slab_cache {
	/* fast path: the cache's geometry copied from its descriptor (immutable while the
	 * cache lives), so cache_from_obj needs no pointer chase */
	uint8_t                *base;      /* arena base in this process */
	const struct slab_page *pages;     /* page descriptors in this process */
	uint64_t                tls_off;   /* &slab_tls_mags[slot] - the thread pointer: the
					      same in every thread (initial-exec TLS), so the
					      fast paths load the magazine with one %fs load */
	uint64_t                nr_pages;  /* pages in the arena */
	uint64_t                slab_mask; /* slab bytes - 1 (slabs are aligned to their size) */
	struct sm_objcheck      objcheck;  /* on an object boundary of this cache (objcheck.h) */
	uint32_t                slot;      /* TLS slot */
	uint32_t                cid1;      /* cache id + 1, as in pg_tag */
	uint32_t                debug;     /* debug flags and SLAB_ZERO: the out-of-line paths */
	struct sm_arena        *arena;
	struct slab_cache_desc *desc;
	/* slow path */
	slab_pool              *pool;
	uint32_t                id;
	uint64_t                serial;
	char                    name[SLAB_NAME_MAX];
	struct binding         *bindings;  /* every thread's magazine for this handle */
	struct slab_cache      *next;      /* pool->caches */
};

struct slab_pool {
	struct sm_arena    arena;
	int                fd;             /* socket to slabd */
	pid_t              pid;            /* process that registered */
	unsigned           fork_gen;       /* slab_fork_gen when it registered */
	uint32_t           client_slot;
	char               socket_path[108];
	pthread_mutex_t    rpc_lock;
	uint64_t           next_id;
	char              *rbuf;           /* reply bytes read but not consumed */
	size_t             rlen, rcap;
	struct slab_cache *caches;         /* open handles (lib_lock) */
	uint32_t           area_block;     /* current area block, or SLAB_NIL (lib_lock) */
	struct slab_mag  **idle;           /* idle magazines, reusable (lib_lock) */
	size_t             nr_idle, idle_cap;
	int                forced_node;    /* $SLAB_NODE, or -1 */
	slab_cache        *kmalloc[SLAB_KMALLOC_NR];
	/* cache id + 1 (a page's SLAB_TAG_CID1) -> kmalloc handle; NULL for every other
	 * value, 0 and those past SLAB_MAX_CACHES included, so slab_kfree needs one test */
	slab_cache        *kmalloc_by_cid1[1u << SLAB_TAG_CID_BITS];
	struct slab_pool  *next_pool;      /* all pools, for fork handling */
	uint64_t           arena_id;       /* slabd's id of the arena (resume after restart) */
	char             (*names)[SLAB_NAME_MAX]; /* open handles' caches (rpc_lock) */
	uint64_t           watch_ns;       /* last slab_pool_watch look (relaxed atomics) */
	size_t             nr_names, names_cap;
};

extern pthread_mutex_t slab_lib_lock;
extern unsigned slab_fork_gen;
extern struct slab_mag slab_empty_mag;
extern __thread struct slab_mag *slab_tls_mags[SLAB_TLS_SLOTS]
	__attribute__((tls_model("initial-exec")));

/* The sanitizers instrument a __seg_fs load as if it were an ordinary address (and fault
 * on it): their builds take the plain TLS access. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define SLAB_NO_SEG_FS 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLAB_NO_SEG_FS 1
#endif

#if defined(__x86_64__) && defined(__SEG_FS) && !defined(SLAB_NO_SEG_FS)
/* The thread pointer (%fs base on x86-64): initial-exec TLS lies at a fixed offset from
 * it, the same in every thread of the process. */
static inline uintptr_t slab_thread_pointer(void)
{
	uintptr_t tp;

	__asm__("mov %%fs:0, %0" : "=r"(tp));
	return tp;
}

/* The calling thread's magazine for h: slab_tls_mags[h->slot], in one %fs-relative load
 * (h->tls_off is that entry's offset from the thread pointer; __seg_fs needs gnu11). */
static inline struct slab_mag *slab_tls_mag(const struct slab_cache *h)
{
	return *(struct slab_mag *__seg_fs *)(uintptr_t)h->tls_off;
}
#else
static inline uintptr_t slab_thread_pointer(void)
{
	return 0;
}

static inline struct slab_mag *slab_tls_mag(const struct slab_cache *h)
{
	return slab_tls_mags[h->slot];
}
#endif

/* ---- the fast paths (slab_alloc/slab_free, and slab_kmalloc/slab_kfree around them) ---- */

/* cache.c, out of line: everything the fast paths do not do.  caller: the return address
 * of the public call (SLAB_STORE_USER). */
sm_cold void *slab_alloc_slow(slab_cache *h, void *caller);
sm_cold int slab_free_slow(slab_cache *h, uint64_t off);

/* One TLS load, pop, count, and a prefetch for writing of the object SLAB_MAG_AHEAD pops
 * ahead (sm_mag_pop_ahead: the magazine's own line when it holds fewer, so the prefetch
 * needs no test).  A refill prefetches the objects it hands out first (magazine.c,
 * prefetch_refill); this covers the rest, each SLAB_MAG_AHEAD allocations before its
 * first write.  Objects freed in no particular order come back from the shared array in
 * that order, each a cache miss and often a TLB miss of its own (batch, allocating
 * 100,000 objects after shuffled frees: 16-20 ns per allocation without, 5-10 with, with
 * the host busy; see tests/bench/README.md).  Two instructions (the look-ahead load and
 * the PREFETCHW); on a line already in the cache PREFETCHW costs nearly nothing.  Debug
 * caches never get here with objects (their TLS entry stays on the empty magazine). */
static inline bool slab_alloc_fast(slab_cache *h, void **obj)
{
	uint8_t *base = h->base;
	uint64_t off, ahead;

	if (likely(sm_mag_pop_ahead(slab_tls_mag(h), &off, &ahead))) {
		sm_prefetch_w(base, ahead);
		*obj = base + off;
		return true;
	}
	return false;
}

/* The fast free of off, inside the arena, whose page carries tag, into m (the calling
 * thread's magazine for h, slab_tls_mag): cache_from_obj's other two tests on the
 * handle's copy of the geometry (the tag names this cache and this thread's node, so not
 * an alien object; on an object boundary: objcheck.h's one multiplication), the freshest
 * double free, room; then push.  The unbound magazine's tag matches no page.  m is the
 * caller's to load: slab_free loads it first, beside the page's tag, as before the
 * kmalloc paths shared this code (slab_kfree can only load it once the tag has named the
 * handle).  Whether that order matters was lost in the host's noise; what did matter was
 * where the function lay (compiler.h, sm_fastpath). */
static inline int slab_free_tagged(slab_cache *h, struct slab_mag *m, uint64_t off,
				   unsigned tag)
{
	uint32_t avail;

	if (unlikely(tag != m->m_tag || !sm_objcheck_ok(&h->objcheck, off & h->slab_mask)))
		return slab_free_slow(h, off);
	avail = m->m_avail;
	if (unlikely(m->m_slots[SM_TOP + (uint64_t)avail] == off || avail >= m->m_limit))
		return slab_free_slow(h, off);
	avail++;
	m->m_slots[SM_TOP + (uint64_t)avail] = off; /* 64-bit: SM_TOP folds into the address */
	SM_PUBLISH(&m->m_avail, avail); /* counted through m_moved (layout.h): one store fewer */
	return 0;
}

/* pool.c */
/* Send {"cmd": cmd, ...fields} and wait for the reply.  Returns the reply (caller
 * decrefs) with ok true, or NULL and a negative errno in *err (the daemon's error, or
 * -ECONNRESET when the connection broke).  fields is consumed. */
json_t *slab_rpc(slab_pool *pool, const char *cmd, json_t *fields, int *err);
/* Slow paths: at most every 10 ms, see whether slabd's end of the connection is gone
 * (slabd died) and if so try once to come back to a restarted slabd (resume, adoption),
 * so that a client that never needs slabd still hands the arena to a restarted one and
 * its dead neighbours get reaped.  Never blocks on a missing slabd. */
void slab_pool_watch(slab_pool *p);
/* Track open handles by cache name (reopened after a reconnect). */
void slab_pool_note_open(slab_pool *pool, const char *name, int open);
/* Re-register after fork() if needed; 0 or -errno.  lib_lock must NOT be held. */
int slab_pool_check_fork(slab_pool *pool);
/* The calling thread's NUMA node (refreshed on each call: slow paths only). */
unsigned slab_thread_node(slab_pool *pool);
/* A magazine of at least capacity entries from the pool's idle list or its area.
 * lib_lock held (it may RPC for a new area block). */
struct slab_mag *slab_area_mag(slab_pool *pool, unsigned capacity, int *err);

/* cache.c */
int slab_cache_attach(slab_pool *pool, json_t *info, slab_cache **out);
void slab_cache_flush_all(slab_cache *h);   /* lib_lock held */
void slab_cache_release(slab_cache *h);     /* lib_lock held: unlink and free */
void slab_fork_child_reset(void);

#endif
