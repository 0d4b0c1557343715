/* cache.h - the cache table: create, look up, grow, shrink, tune, shut down, count.
 *
 * A cache descriptor's identity, geometry and tunables have one writer: slabd (or, in the
 * daemon-less unit tests, the single test driver).  Readers in other processes see a
 * descriptor only once c_state is CACHE_LIVE (published with release order).
 *
 * Invariants (besides layout.h I5-I7):
 *   C1 at most one LIVE or DYING cache has a given name;
 *   C2 c_state == CACHE_UNUSED  =>  no page carries c_id + 1 in its pg_tag and c_refcount == 0;
 *   C3 c_limit <= SLAB_MAG_MAX, 1 <= c_batchcount <= c_limit, c_shared <= SLAB_SHARED_MAX.
 *
 * Every function below that takes a cache id refuses an id that names no created cache:
 * those returning int return -EINVAL, the others do nothing (and count zero).
 */
#ifndef SLABD_SHM_CACHE_H
#define SLABD_SHM_CACHE_H

#include <stdbool.h>

#include "arena.h"
#include "slabs.h"

/* Holders of cached objects the engine cannot see by itself (magazines and alien buffers
 * of live clients): called once per cache, it calls add(ctx, off, where) for every
 * object offset a holder has.  Used by validate and by reclaim. */
typedef void (*sm_holder_fn)(void *arg, uint32_t cache_id,
			     void (*add)(void *ctx, uint64_t off, const char *where), void *ctx);

/* Its optional companion, for validate: for each of the n offsets offs[] (sorted,
 * distinct), how many of those holders hold it at one moment: held[i] = 0, 1, or 2 for
 * two or more.  The fast paths move objects between magazines without a lock while a
 * walk reads them one after the other, so a walk may see one object in two magazines
 * that never held it together; this says whether they did.  It must not overcount: 2
 * only when it saw the object in two places at a moment it can prove.  One walk of the
 * holders for all n.  Returns 0, or a negative errno (held[] then all 0). */
typedef int (*sm_holder_count_fn)(void *arg, uint32_t cache_id, const uint64_t *offs,
				  size_t n, uint8_t *held);

struct sm_cache_params {
	const char *name;
	size_t      size;
	size_t      align;        /* 0: 8 */
	unsigned    flags;
	unsigned    limit;        /* 0: from size (SLAB's enable_cpucache) */
	unsigned    batchcount;   /* 0: (limit + 1) / 2 */
	unsigned    shared;       /* 0: min(8 * batchcount, SLAB_SHARED_MAX) */
	unsigned    min_partial;  /* 0: ilog2(size) / 2 within [5, 10] (SLUB) */
	int         node;         /* -1: local */
	uint64_t    max_objects;  /* 0: none */
};

/* 1 when name is 1..63 bytes of [A-Za-z0-9._-], else 0. */
int sm_cache_name_ok(const char *name);

/* Create the cache, or find the existing one of the same name and geometry (*existed set).
 * Errors: -EINVAL (bad name, size, align, flags, node, tunables), -EEXIST (same name,
 * other geometry), -ENOSPC (cache table full).  The new cache is CACHE_LIVE. */
int sm_cache_create(struct sm_arena *a, const struct sm_cache_params *p, uint32_t *id,
		    bool *existed);

/* Find a LIVE or DYING cache by name.  -ENOENT when there is none. */
int sm_cache_lookup(const struct sm_arena *a, const char *name, uint32_t *id);

/* Most slabs one sm_cache_grow call adds. */
#define SM_GROW_MAX 256u

/* Add nr fresh empty slabs to the cache on node (slabd's slab grant), at most
 * SM_GROW_MAX, and raise the node's free_limit by their objects (bounded; see
 * sm_cache_trim), so that a burst's slabs stay when it frees.  Returns the number
 * added (>= 1), or -ENOMEM when the node has no block of the cache's order, or -EDQUOT
 * when max_objects would be exceeded, or -EINVAL. */
int sm_cache_grow(struct sm_arena *a, uint32_t id, unsigned node, unsigned nr);

/* Release the slabs waiting on every node's discard queue.  Returns slabs released. */
unsigned sm_cache_reap(struct sm_arena *a, uint32_t id);

/* cache_reap's drain_freelist: on each node, first halve what grants added to free_limit
 * above SLAB's floor (see keep_limit in cache.c), then release free slabs beyond
 * min_partial while the node holds more than free_limit free objects, at most max_slabs
 * per node per call (slabd calls it every idle second, so memory a burst needed goes back
 * over a few seconds).  Returns the number of slabs released. */
unsigned sm_cache_trim(struct sm_arena *a, uint32_t id, unsigned max_slabs);

/* Depot blocks (PG_DEPOT) that no live cache node's shared array uses: left by a slabd
 * that died inside depot_fit (cache.c) between allocating and switching.  Returns how
 * many; with release, gives them back to the page allocator (slabd, adopting an arena). */
unsigned sm_depot_orphans(struct sm_arena *a, int release);

/* kmem_cache_shrink: drain the shared arrays into the slabs, then release every empty
 * slab.  Returns the number of slabs released. */
unsigned sm_cache_shrink(struct sm_arena *a, uint32_t id);

/* Change tunables (0 leaves one as it is).  Errors: -EINVAL (out of range). */
int sm_cache_tune(struct sm_arena *a, uint32_t id, unsigned limit, unsigned batchcount,
		  unsigned shared, unsigned min_partial);

/* shutdown_cache: drain shared arrays; if objects are still out of their slabs return
 * -EBUSY with *live set and leave the cache intact; else release every slab and free the
 * descriptor (CACHE_UNUSED, name reusable).  Magazines must have been flushed first. */
int sm_cache_shutdown(struct sm_arena *a, uint32_t id, uint64_t *live);

/* Counts for stats and checks, read under each node's lock in turn. */
struct sm_node_counts {
	uint32_t nr_partial, nr_full, nr_free, nr_discard;
	uint64_t free_objects;
	uint32_t shared_avail;
	uint32_t shared_limit;   /* the shared array's size now (it follows free_limit) */
	uint64_t depot_bytes;    /* its external storage (0: inline in the cache node) */
};
struct sm_cache_counts {
	uint64_t num_slabs;      /* partial + full + free (discard queue not counted) */
	uint64_t active_slabs;   /* partial + full */
	uint64_t num_objs;       /* num_slabs * objects per slab */
	uint64_t active_objs;    /* objects out of their slabs */
	uint64_t shared_avail;   /* of active_objs, in shared arrays */
	struct sm_node_counts node[SLAB_MAX_NODES];
};
void sm_cache_counts(struct sm_arena *a, uint32_t id, struct sm_cache_counts *out);

#endif
