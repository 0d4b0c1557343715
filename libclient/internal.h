/* internal.h - libslab's private structures.
 *
 *   pool.c    connect, hello + arena fd, RPC, fork, disconnect, client area
 *   cache.c   handles, the alloc/free fast paths and their slow paths, threads
 *   kmalloc.c size classes
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
	slab_cache        *kmalloc_by_cid[SLAB_MAX_CACHES]; /* cache id -> kmalloc handle */
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
