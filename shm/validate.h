/* validate.h - whole-arena consistency checks, and repair after a lock holder died.
 *
 * sm_validate walks every node's page allocator, every live cache, each of its node
 * lists, every slab's bufctl chain and every shared array, and reports each violation of
 * the invariants in layout.h (I1-I7), buddy.h (B1-B3) and list.h, one line per problem:
 * count mismatches, a slab on two lists or on no list or on the wrong list, an object on
 * two lists (free in its slab and cached, or cached twice), an index out of range, a
 * broken chain.  It changes nothing.  It holds one cache's node locks at a time (taken in
 * node order) while it reads that cache's lists and the holders' magazines, and the
 * page allocator's region locks one at a time before that.
 *
 * sm_node_repair rebuilds one cache node from the source of truth, the slabs' bufctl
 * arrays: called with the node lock held when the previous holder died (EOWNERDEAD),
 * before pthread_mutex_consistent.
 */
#ifndef SLABD_SHM_VALIDATE_H
#define SLABD_SHM_VALIDATE_H

#include "buddy.h"
#include "cache.h"

/* Check the whole arena.  Returns the number of problems found (0: clean).  holders
 * (and harg) may be NULL: no magazines outside the engine's view.  count may be NULL:
 * an object a walk of the holders saw twice is then reported only when SM_VALIDATE_WALKS
 * walks all see it twice; with count, only when count (plus the shared arrays, which
 * validate reads under their locks) finds it held twice at one moment. */
unsigned sm_validate(struct sm_arena *a, sm_holder_fn holders, sm_holder_count_fn count,
		     void *harg, sm_report_fn report, void *rarg);
/* Check one cache (the page allocator is not checked). */
unsigned sm_validate_cache(struct sm_arena *a, uint32_t id, sm_holder_fn holders,
			   sm_holder_count_fn count, void *harg, sm_report_fn report, void *rarg);

/* Rebuild node's lists, counters, free chains and shared array of cache c from the slabs'
 * bufctl.  Lock held.  Objects whose bufctl says ACTIVE stay out (they may be held by a
 * live process); a slab whose attach was interrupted is finished. */
void sm_node_repair(struct sm_arena *a, struct slab_cache_desc *c, unsigned node);

#endif
