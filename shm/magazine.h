/* magazine.h - the memory tiers above the slabs: per-thread magazines (SLAB's
 * array_cache) and per-node shared arrays, with the alloc/free fast paths.
 *
 *   alloc: magazine pop ............................................. fast path
 *          else refill (magazine.c:sm_alloc_slow): batchcount objects from the node's
 *          shared array, then its partial and free slabs, then other nodes, then a slab
 *          grant (arena->grow), then retry.
 *   free:  cache_from_obj validation, freshest-double-free check, magazine push .. fast path
 *          else cache_flusharray (magazine.c:sm_free_slow): the oldest batchcount objects
 *          go to the shared array, what does not fit to free_block.
 *
 * The fast paths touch only the magazine (written by its owning thread alone), the cache
 * descriptor and the page descriptor (read only): no lock, no atomic read-modify-write, no
 * system call.  The slow paths take one cache node lock per batch.
 *
 * Invariants: layout.h struct slab_mag; I7 (every offset held is an ACTIVE object).
 */
#ifndef SLABD_SHM_MAGAZINE_H
#define SLABD_SHM_MAGAZINE_H

#include "cache.h"
#include "slabs.h"

static inline size_t sm_mag_bytes(unsigned capacity)
{
	return sizeof(struct slab_mag) + ((size_t)capacity + SLAB_MAG_AHEAD) * sizeof(uint64_t);
}

/* The objects of magazine m: entries [0, m_avail), oldest first (a macro: const or not).
 * m->m_slots[SM_TOP + k] is entry k - 1: SM_TOP + m_avail indexes the newest entry, or the
 * sentinel when m is empty (layout.h). */
#define SM_TOP (SLAB_MAG_AHEAD - 1u)
#define sm_mag_entries(m) ((m)->m_slots + SM_TOP + 1)

/* Make m, in a's arena (or anywhere, for tests), an empty magazine of `capacity` entries
 * bound to cache c. */
void sm_mag_init(const struct sm_arena *a, struct slab_mag *m, const struct slab_cache_desc *c,
		 unsigned capacity);

/* Slow paths (out of line). node is the calling thread's node.
 * sm_alloc_slow: 0 with *off set, or -ENOMEM (arena exhausted), -EDQUOT (quota), -EIO
 * (a lock could not be taken).  sm_free_slow: flush a batch, then push; 0. */
int sm_alloc_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node, uint64_t *off);
int sm_free_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		 unsigned node, uint64_t off);
/* A refused free: count it and return -EINVAL. */
int sm_free_refused(struct slab_cache_desc *c, struct slab_mag *m, int stat);

/* cache_free_alien: off's slab is on another node than m's thread.  Count it in m; put it
 * in alien (an alien buffer bound to that node, see sm_alien_init) and send the buffer
 * home when full; with alien NULL send it home at once.  0. */
int sm_free_alien(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  struct slab_mag *alien, uint64_t off);
/* Make alien an empty alien buffer of c for node. */
void sm_alien_init(const struct sm_arena *a, struct slab_mag *alien,
		   const struct slab_cache_desc *c, unsigned node, unsigned capacity);
/* Record the owner thread's node in m (slow paths: the thread may have moved). */
void sm_mag_set_node(const struct sm_arena *a, struct slab_mag *m, unsigned node);

/* Magazine resizing (magazine.c:mag_resize): a magazine may grow to the cache's limit
 * << SM_MAG_MAX_SHIFT when its capacity allows; libslab binds magazines with
 * sm_mag_capacity(cache's limit). */
#define SM_MAG_MAX_SHIFT 2u
static inline unsigned sm_mag_capacity(unsigned limit)
{
	unsigned cap = limit << SM_MAG_MAX_SHIFT;

	return cap < limit || cap > SLAB_MAG_MAX ? SLAB_MAG_MAX : cap;
}

/* Objects an alien buffer holds before it goes home (SLAB's alien limit is 12). */
#define SLAB_ALIEN_LIMIT 16u

/* Refill m with up to batchcount objects (cache_alloc_refill).  Returns the number now in
 * m (> 0) or a negative errno as sm_alloc_slow. */
int sm_mag_refill(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node);
/* cache_flusharray: move the oldest min(batchcount, avail) objects out of m. */
void sm_mag_flush(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node);
/* Move every object of m back (to the shared arrays when use_shared, else to the slabs),
 * and fold m's counters into the cache's.  m is left empty with zero counters. */
void sm_mag_drain(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  int use_shared);

/* Fold m's counters into its cache's c_stat and zero them, between c_fold_begin and
 * c_fold_end bumps, so a reader that sums magazines and c_stat can tell it raced a fold
 * (counters must never appear to go backwards) and read again. */
void sm_mag_fold(struct slab_cache_desc *c, struct slab_mag *m);

/* Give n objects of cache c back: each goes to its own node's shared array (when
 * use_shared and there is room) or to its slab.  Returns the number refused. */
unsigned sm_give_back(struct sm_arena *a, struct slab_cache_desc *c, const uint64_t *objs,
		      unsigned n, int use_shared);

/* ---- fast paths ------------------------------------------------------------------ */

/* Pop the newest object: 1 with *off set, or 0 when the magazine is empty.  Also gives
 * in *ahead the entry SLAB_MAG_AHEAD pops ahead: an object offset, or the magazine's own
 * offset when it holds fewer (layout.h), so a prefetch of base + *ahead is always
 * harmless and needs no test (libslab's slab_alloc prefetches it).  Written so that the
 * decrement's borrow is the empty test and the slots are addressed from the new count:
 * slab_alloc is 12 instructions with it (10 before the prefetch), 2 more with the plain
 * form. */
static inline int sm_mag_pop_ahead(struct slab_mag *m, uint64_t *off, uint64_t *ahead)
{
	uint64_t avail = m->m_avail, a;

	if (unlikely(__builtin_sub_overflow(avail, 1u, &a)))
		return 0;
	m->m_avail = (uint32_t)a;
	/* The count before the pop counter, for slabd's still reads of a live magazine
	 * (daemon/stats.c, mag_version); on x86-64 no instruction (compiler.h). */
	SM_PUBLISH(&m->m_stat[STAT_ALLOC_FASTPATH], m->m_stat[STAT_ALLOC_FASTPATH] + 1);
	*off = m->m_slots[SM_TOP + a + 1];
	*ahead = m->m_slots[a];
	return 1;
}

/* The same without the look ahead (the compiler drops its load). */
static inline int sm_mag_pop(struct slab_mag *m, uint64_t *off)
{
	uint64_t ahead;

	return sm_mag_pop_ahead(m, off, &ahead);
}

enum sm_push {
	PUSH_OK = 0,      /* pushed */
	PUSH_FULL,        /* valid, but the magazine is full: take the slow path */
	PUSH_INVALID,     /* cache_from_obj refused it: count STAT_INVALID_FREE */
	PUSH_DOUBLE,      /* it is the newest object in the magazine: STAT_DOUBLE_FREE */
	PUSH_ALIEN,       /* its slab is on another node: the alien path (cache_free_alien) */
};

/* Push an object already validated by cache_from_obj (its slab head is `head`), unless it
 * is the freshest double free (the newest object in the magazine), belongs to another
 * node, or the magazine is full. */
static inline enum sm_push sm_mag_put(struct slab_mag *m, uint64_t off, uint32_t head)
{
	uint32_t avail = m->m_avail;

	if (unlikely(m->m_slots[SM_TOP + (uint64_t)avail] == off))
		return PUSH_DOUBLE;
	if (unlikely(head - m->m_node_first >= m->m_node_count))
		return PUSH_ALIEN;
	if (unlikely(avail >= m->m_limit))
		return PUSH_FULL;
	avail++;
	m->m_slots[SM_TOP + (uint64_t)avail] = off; /* 64-bit: SM_TOP folds into the address */
	SM_PUBLISH(&m->m_avail, avail); /* free_fastpath through m_moved (layout.h) */
	return PUSH_OK;
}

/* Validate off (cache_from_obj, the freshest double free) and push it. */
static inline enum sm_push sm_mag_push(const struct sm_arena *a, const struct slab_cache_desc *c,
				       struct slab_mag *m, uint64_t off)
{
	uint32_t head, idx;

	if (unlikely(sm_obj_lookup(a, c, off, &head, &idx) != OBJ_OK))
		return PUSH_INVALID;
	return sm_mag_put(m, off, head);
}

/* Fast frees into m since its last fold (layout.h, m_moved).  Read by other processes
 * while m is in use, it may be off by what moves meanwhile; never below 0. */
static inline uint64_t sm_mag_free_fastpath(const struct slab_mag *m)
{
	/* acquire: the stats reader's later loads stay after these (daemon/stats.c) */
	int64_t n = (int64_t)__atomic_load_n(&m->m_avail, __ATOMIC_ACQUIRE) -
		    __atomic_load_n(&m->m_moved, __ATOMIC_ACQUIRE) +
		    (int64_t)__atomic_load_n(&m->m_stat[STAT_ALLOC_FASTPATH], __ATOMIC_ACQUIRE);

	return n > 0 ? (uint64_t)n : 0;
}

/* Engine-level alloc and free over one magazine (tests and slabd use these; libslab
 * composes the same pieces with its own slow path). */
static inline int sm_alloc(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
			   unsigned node, uint64_t *off)
{
	if (likely(sm_mag_pop(m, off)))
		return 0;
	return sm_alloc_slow(a, c, m, node, off);
}

static inline int sm_free(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
			  unsigned node, uint64_t off)
{
	switch (sm_mag_push(a, c, m, off)) {
	case PUSH_OK:
		return 0;
	case PUSH_FULL:
		return sm_free_slow(a, c, m, node, off);
	case PUSH_INVALID:
		return sm_free_refused(c, m, STAT_INVALID_FREE);
	case PUSH_ALIEN:
		return sm_free_alien(a, c, m, NULL, off);
	default:
		return sm_free_refused(c, m, STAT_DOUBLE_FREE);
	}
}

#endif
