/* debug.h - the debug flags of a cache, as the kernel's slub_debug does them.
 *
 *   SLAB_POISON      a free object is filled with POISON_FREE (last byte POISON_END);
 *                    alloc checks the pattern: a write to a free object is reported.
 *   SLAB_RED_ZONE    8 bytes after the object hold RZ_INACTIVE while it is free and
 *                    RZ_ACTIVE while allocated; free checks RZ_ACTIVE: an overflow is
 *                    reported.
 *   SLAB_STORE_USER  struct slab_track after the red zone names the pid holding the
 *                    object (stamped on alloc, free and refill) and the caller of alloc;
 *                    slabd uses it to free a dead process's objects on request.
 *   SLAB_DEBUG       an object in a magazine or shared array has bufctl CACHED, an
 *                    allocated one ACTIVE; free swaps ACTIVE -> CACHED atomically, so
 *                    every double free is refused on the spot.
 * Corruptions go to the cache's ring (layout.h struct slab_corruption); slabd logs them
 * and cache.validate lists them.  The checks cost O(object size) per operation: these
 * caches take an out-of-line path in libslab.
 */
#ifndef SLABD_SHM_DEBUG_H
#define SLABD_SHM_DEBUG_H

#include "slabs.h"

#define SLAB_POISON_FREE 0x6bu
#define SLAB_POISON_END  0xa5u
#define SLAB_RZ_INACTIVE 0x09f911029d74e35bULL
#define SLAB_RZ_ACTIVE   0xd84156c5635688bbULL

static inline struct slab_track *sm_track(const struct sm_arena *a,
					  const struct slab_cache_desc *c, uint64_t off)
{
	return (struct slab_track *)(a->base + off + c->c_track_off);
}

/* "red zone overwritten" etc. for enum slab_corrupt_kind. */
const char *sm_corruption_name(unsigned kind);

/* Record a corruption in c's ring. */
void sm_debug_report(struct slab_cache_desc *c, uint64_t off, unsigned kind, uint64_t found,
		     int32_t pid);

/* Make the object at off look free: poison, inactive red zone, no holder. */
void sm_debug_init_free(const struct sm_arena *a, const struct slab_cache_desc *c,
			uint64_t off);

/* An object is being handed to the application by pid: check and stamp it. */
void sm_debug_alloc(struct sm_arena *a, struct slab_cache_desc *c, uint64_t off, int32_t pid,
		    uint64_t caller);

/* An object (slab head, index idx) is being freed by pid: check and stamp it.
 * 0, or -EINVAL for a double free caught by SLAB_DEBUG (nothing changed). */
int sm_debug_free(struct sm_arena *a, struct slab_cache_desc *c, uint64_t off, uint32_t head,
		  uint32_t idx, int32_t pid);

#endif
