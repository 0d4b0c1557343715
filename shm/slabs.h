/* slabs.h - slab geometry, objects in slabs, and a cache node's lists.
 *
 * A slab of cache c is a block of 2^c_order pages:
 *
 *   [obj 0][obj 1] ... [obj c_num-1][bufctl[0] ... bufctl[c_num-1]][waste]
 *   ^ head page << 12                ^ + c_bufctl_off
 *
 * bufctl is SLAB's kmem_bufctl_t array, outside every object, so a stray write into a free
 * object cannot corrupt the allocator.  Free objects form a chain through bufctl starting
 * at the head page's pg_free; an object out of its slab has bufctl ACTIVE (or CACHED, see
 * layout.h), so a second free of it is caught when it reaches its slab (slab_put_obj).
 *
 * Invariants: layout.h I3-I6.  All functions named sm_do_* expect the cache node's n_lock
 * held (sm_node_lock); lock order in lock.h.
 */
#ifndef SLABD_SHM_SLABS_H
#define SLABD_SHM_SLABS_H

#include <errno.h>

#include "arena.h"
#include "compiler.h"

/* The geometry of a cache: what sm_calculate_geometry chose and why (kernel's
 * calculate_order: the smallest order that holds enough objects with waste <= 1/16). */
struct sm_geometry {
	uint32_t size;          /* slot size */
	uint32_t align;
	uint32_t order;
	uint32_t num;           /* objects per slab */
	uint32_t bufctl_off;
	uint32_t bufctl_width;
	uint32_t reciprocal;    /* ceil(2^32 / size) */
	uint32_t waste;         /* unused bytes per slab */
	uint32_t rz_off;        /* SLAB_RED_ZONE: red zone offset in the slot (else 0) */
	uint32_t track_off;     /* SLAB_STORE_USER: struct slab_track offset (else 0) */
};

/* Compute the slab geometry for objects of object_size bytes aligned to align (0: 8).
 * Debug flags grow the slot: [object, 8-aligned][red zone: 8][struct slab_track: 16].
 * Errors: -EINVAL (size 0 or > SLAB_MAX_OBJECT_SIZE, align not a power of two or
 * > SLAB_MAX_ALIGN). */
int sm_calculate_geometry(size_t object_size, size_t align, unsigned flags,
			  struct sm_geometry *g);

/* ---- objects ----------------------------------------------------------------------- */

static inline uint8_t *sm_slab_addr(const struct sm_arena *a, uint32_t head)
{
	return a->base + ((uint64_t)head << SLAB_PAGE_SHIFT);
}

/* A cache node's shared array: its entries and its storage's capacity (layout.h). */
static inline uint32_t sm_depot_entries(unsigned order)
{
	return (SLAB_PAGE_SIZE << order) / sizeof(uint64_t);
}

static inline uint64_t *sm_shared(const struct sm_arena *a, struct slab_cache_node *cn)
{
	return cn->n_depot == SLAB_NIL ? cn->n_shared : (uint64_t *)sm_slab_addr(a, cn->n_depot);
}

static inline uint32_t sm_shared_cap(const struct slab_cache_node *cn)
{
	return cn->n_depot == SLAB_NIL ? SLAB_SHARED_MAX : sm_depot_entries(cn->n_depot_order);
}

static inline unsigned sm_bufctl_get(const struct slab_cache_desc *c, const uint8_t *slab,
				     unsigned i)
{
	const uint8_t *b = slab + c->c_bufctl_off;

	if (c->c_bufctl_width == 1) {
		unsigned v = b[i];
		return v >= BUFCTL8_CACHED ? v | 0xff00u : v; /* markers read as 16-bit */
	}
	return ((const uint16_t *)b)[i];
}

static inline void sm_bufctl_set(const struct slab_cache_desc *c, uint8_t *slab, unsigned i,
				 unsigned v)
{
	uint8_t *b = slab + c->c_bufctl_off;

	if (c->c_bufctl_width == 1)
		b[i] = (uint8_t)v;
	else
		((uint16_t *)b)[i] = (uint16_t)v;
}

/* Markers as sm_bufctl_get returns them, whatever the width. */
#define BUFCTL_ACTIVE BUFCTL16_ACTIVE
#define BUFCTL_CACHED BUFCTL16_CACHED

/* Why a free was refused (cache_from_obj). */
enum sm_obj_err {
	OBJ_OK = 0,
	OBJ_FOREIGN,      /* not inside the arena's data pages */
	OBJ_NOT_SLAB,     /* the page is not a slab page */
	OBJ_WRONG_CACHE,  /* a slab of another cache */
	OBJ_MISALIGNED,   /* not on an object boundary */
};

/* cache_from_obj + virt_to_head_page over the raw geometry: check that off is the start
 * of an object of the cache whose pages carry cid1 (= cache id + 1), slot size `size`,
 * reciprocal `recip` and `num` objects per slab, and find its slab head and index.  O(1):
 * a descriptor load and a multiplication by the reciprocal of the slot size, never a
 * division.  (libslab calls this with the geometry copied into its handle.) */
static inline enum sm_obj_err sm_obj_find(const struct slab_page *pages, uint64_t arena_size,
					  uint32_t cid1, uint32_t size, uint32_t recip,
					  uint32_t num, uint64_t off, uint32_t *head,
					  uint32_t *idx)
{
	const struct slab_page *pg;
	uint64_t delta;
	uint32_t h, i, cid;

	if (unlikely(off >= arena_size))
		return OBJ_FOREIGN;
	h = (uint32_t)(off >> SLAB_PAGE_SHIFT);
	pg = &pages[h];
	/* Relaxed loads: other threads move the slab between lists (pg_state) under the
	 * node lock while we look, and slabd changes pages as it grants and reaps slabs. */
	cid = SLAB_TAG_CID1(SM_LOAD(&pg->pg_tag));
	if (unlikely(cid != cid1))
		return cid ? OBJ_WRONG_CACHE : OBJ_NOT_SLAB;
	if (SM_LOAD(&pg->pg_state) == PG_TAIL)
		h = SM_LOAD(&pg->pg_next);
	delta = off - ((uint64_t)h << SLAB_PAGE_SHIFT);
	i = (uint32_t)((delta * recip) >> 32);
	if (unlikely((uint64_t)i * size != delta || i >= num))
		return OBJ_MISALIGNED;
	*head = h;
	*idx = i;
	return OBJ_OK;
}

/* The same for cache c of arena a. */
static inline enum sm_obj_err sm_obj_lookup(const struct sm_arena *a,
					    const struct slab_cache_desc *c, uint64_t off,
					    uint32_t *head, uint32_t *idx)
{
	return sm_obj_find(a->pages, a->size, c->c_id + 1, c->c_size, c->c_reciprocal,
			   c->c_num, off, head, idx);
}

/* The node whose lists a slab belongs to (I4). */
static inline unsigned sm_slab_node(const struct sm_arena *a, uint32_t head)
{
	return sm_page_node(a, head);
}

/* ---- cache node lists (lock held) ---------------------------------------------------- */

/* Lock cache c's node, rebuilding the node from its slabs' bufctl if the previous holder
 * died (validate.c:sm_node_repair).  0 or -errno (the lock is not held then). */
int sm_node_lock(struct sm_arena *a, struct slab_cache_desc *c, unsigned node);
/* The same, setting *contended when another holder had the lock at the first try. */
int sm_node_lock_c(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		   int *contended);
void sm_node_unlock(struct slab_cache_desc *c, unsigned node);

/* Take up to want objects out of node's slabs (partial first, then free) into dst as
 * offsets; they become ACTIVE.  Returns how many were taken. */
unsigned sm_do_alloc_objs(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  uint64_t *dst, unsigned want);

/* free_block: return n objects of this node to their slabs and fix up the lists with the
 * kernel's four outcomes (stays partial; full becomes partial; empty and kept; empty beyond
 * min_partial and free_limit: onto the discard queue).  Objects that are not ACTIVE/CACHED
 * objects of c on this node are refused and counted (double_free / invalid_free); nothing
 * else changes for them.  Returns the number refused. */
unsigned sm_do_free_block(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  const uint64_t *objs, unsigned n);

/* Turn an allocated block (PG_BLOCK of order c_order on node) into an empty slab of c on
 * node's free list: sm_slab_prepare (the slab's own bytes: bufctl chain, debug stamps; no
 * lock needed while the block is slabd's alone), then sm_do_slab_link (descriptors, tags,
 * list and counters; node lock held). */
void sm_do_slab_attach(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		       uint32_t head);
void sm_slab_prepare(struct sm_arena *a, struct slab_cache_desc *c, uint32_t head);
void sm_do_slab_link(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		     uint32_t head);

/* Move every slab on node's discard queue (and, when all_free, its free list too) back to
 * the page allocator.  Takes the region lock inside (lock order: node, then region).
 * Returns the number of slabs released. */
unsigned sm_do_discard(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		       int all_free);

/* Move the shared array's objects back to their slabs (drain_array). */
void sm_do_drain_shared(struct sm_arena *a, struct slab_cache_desc *c, unsigned node);

#endif
