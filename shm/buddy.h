/* buddy.h - the per-node buddy page allocator.
 *
 * Each node region is a set of blocks of 2^k pages (0 <= k <= SLAB_MAX_ORDER), each
 * aligned to its size in absolute page numbers (blocks at a region's edges are smaller).  A free block's head page is
 * PG_FREE with pg_order k and sits on nr_free[k]; its other pages are PG_TAIL pointing at
 * the head.  Freeing a block merges it with its buddy (head ^ (1 << k)) while the buddy
 * lies in the region and is a free block of the same order.
 *
 * Invariants (checked by sm_buddy_check):
 *   B1 every page of the region belongs to exactly one block (free or allocated);
 *   B2 nr_free_pages == sum of free block sizes; list counts match the lists;
 *   B3 no two free buddies of the same order coexist (they would have merged).
 *
 * The reserve (DESIGN.md: "a per-node reserve the daemon keeps stocked in the arena"):
 * blocks slabd took from the free lists and faulted in ahead of need, PG_RESERVE heads on
 * nr_reserve[k] (k <= SLAB_RESERVE_ORDER), tails pointing at their heads as in any
 * allocated block.  sm_do_pages_alloc hands out reserve pages first (the smallest block
 * that fits, split like a buddy block, the pieces staying in the reserve), so a growing
 * cache gets pages that are already resident instead of paying a page fault for each;
 * then the free lists.  The reserve is free memory: stats count it in free_bytes.
 *   B4 nr_reserve_pages == sum of reserve block sizes; list counts match the lists; a
 *      PG_RESERVE head is on nr_reserve[its order] (except the blocks slabd is
 *      stocking, held off the lists while their pages fault in: slabd's validate waits
 *      for those to be listed first; a repair or an adopt lists them, see
 *      sm_reserve_put).
 *
 * Only slabd calls the allocating/freeing functions in production; they take the region's
 * robust nr_lock and repair the free lists from the page states (sm_buddy_repair) when a
 * previous holder died.
 */
#ifndef SLABD_SHM_BUDDY_H
#define SLABD_SHM_BUDDY_H

#include "arena.h"

/* Carve node's whole region into free blocks (at format time). */
void sm_buddy_init(struct sm_arena *a, unsigned node);

/* Allocate 2^order pages on node.  On success *head is the head page index, its state
 * PG_BLOCK and its tails PG_TAIL.  Errors: -EINVAL (bad node or order), -ENOMEM (no free
 * block of that order or larger on this node). */
int sm_pages_alloc(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head);

/* Give a block back.  head must be the head of an allocated block (any state other than
 * PG_FREE, PG_TAIL, PG_META); its descriptors are reset.  Errors: -EINVAL (not the head
 * of an allocated block: nothing changed). */
int sm_pages_free(struct sm_arena *a, uint32_t head);

/* The same with the region lock already held (do_ = caller holds nr_lock). */
int sm_do_pages_alloc(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head);
/* sm_do_pages_alloc telling where the block came from: 1 from the reserve (resident),
 * 0 from the free lists, or -ENOMEM.  Both allocate the reserve's pages too: when neither
 * the reserve nor the free lists have a fitting block, the reserve goes back to the free
 * lists, merged, and the free lists are tried again. */
int sm_do_pages_take(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head);
void sm_do_pages_free(struct sm_arena *a, unsigned node, uint32_t head);

/* Make pages [head, head + pages) resident and mapped in this process: two fallocates on
 * the arena's fd (allocated and zeroed in the shared page cache, where every process's
 * fault only has to map them), then sm_pages_map; without an fd that fallocate serves,
 * one MADV_POPULATE_WRITE.  Changes no byte anyone wrote.  0, or -errno (-ENOSYS: a
 * kernel or headers before 5.14), in which case the first accesses fault them in. */
int sm_pages_populate(struct sm_arena *a, uint32_t head, uint32_t pages);
/* Map resident pages (the reserve's) into this process with read faults
 * (MADV_POPULATE_READ: fault-around maps 16 a fault; pages mapped already cost
 * nothing).  0 or -errno as above. */
int sm_pages_map(struct sm_arena *a, uint32_t head, uint32_t pages);

/* slabd: take one free block of SLAB_RESERVE_ORDER into node's reserve, faulting its
 * pages in (sm_reserve_fault) with the region lock dropped.  Returns the pages added:
 * 0 when no free block of that order is left.  Errors: -errno of the lock.
 * It is sm_reserve_take, sm_reserve_fault and sm_reserve_put in a row; slabd's stocker
 * thread (daemon/stocker.h) runs the middle one. */
int sm_reserve_stock(struct sm_arena *a, unsigned node);
/* Take a free block of SLAB_RESERVE_ORDER pages as a PG_RESERVE head on no list (*head).
 * 1, 0 when there is none, or -errno of the lock. */
int sm_reserve_take(struct sm_arena *a, unsigned node, uint32_t *head);
/* Fault a block's pages in (sm_pages_populate; reads where that is missing).  Changes no
 * byte anyone wrote and no descriptor, in any thread; the arena must stay mapped and its
 * fd open meanwhile. */
void sm_reserve_fault(struct sm_arena *a, uint32_t head, uint32_t pages);
/* List a block sm_reserve_take took on the reserve.  Returns its pages, or 0 when it is
 * no longer a reserve block held off the lists (a repair listed it meanwhile, and it may
 * have been handed out since): nothing changes.  Errors: -errno of the lock. */
int sm_reserve_put(struct sm_arena *a, unsigned node, uint32_t head);
/* Give a block sm_reserve_take took back to the free lists instead.  1, or 0 when a
 * repair listed it meanwhile (nothing changes).  Errors: -errno of the lock. */
int sm_reserve_return(struct sm_arena *a, unsigned node, uint32_t head);

/* slabd: every reserve block of node back to the free lists (a shrink, before holes are
 * punched).  Returns the pages released.  Errors: -errno of the lock. */
int sm_reserve_drain(struct sm_arena *a, unsigned node);
/* slabd: reserve blocks of node back to the free lists, largest first, until the reserve
 * holds at most keep pages (the reserve target came down).  Returns the pages given back,
 * or a negative errno from the region lock. */
int sm_reserve_trim(struct sm_arena *a, unsigned node, uint32_t keep);

/* Rebuild node's reserve lists from the page states (PG_RESERVE heads).  Lock held. */
void sm_reserve_rebuild(struct sm_arena *a, unsigned node);

/* Lock a node region, repairing its free lists if the last holder died.  0 or -errno. */
int sm_region_lock(struct sm_arena *a, unsigned node);
void sm_region_unlock(struct sm_arena *a, unsigned node);

/* Rebuild node's free lists and counters from the page states: allocated blocks are
 * kept; every page not inside an allocated block is free again.  Lock held. */
void sm_buddy_repair(struct sm_arena *a, unsigned node);

/* Largest free block order on node, or -1 when the node is full.  Lock held or racy. */
int sm_buddy_largest(const struct sm_arena *a, unsigned node);

/* Report callback for checkers: one line per inconsistency. */
typedef void (*sm_report_fn)(void *arg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Check B1-B4 on node; returns the number of problems, each reported.  Lock held. */
unsigned sm_buddy_check(const struct sm_arena *a, unsigned node, sm_report_fn report,
			void *arg);

#endif
