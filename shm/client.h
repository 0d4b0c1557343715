/* client.h - client slots and client areas (where a process's magazines live).
 *
 * slabd admits a process into a slot of the client table and grants it area blocks
 * (PG_AREA blocks from the page allocator, chained from cl_area).  The client carves
 * magazines out of its blocks itself: it initialises a magazine past ab_used, then
 * publishes it by advancing ab_used (release), so a reader that sees ab_used sees whole
 * magazines.  A magazine is never freed while the client lives: a thread that exits or a
 * handle that closes drains its magazine and marks it MAG_IDLE for reuse.
 *
 * Invariants:
 *   A1 a LIVE slot's area blocks are PG_AREA heads whose struct slab_area_block has
 *      ab_magic == SLAB_AREA_MAGIC and ab_client == the slot;
 *   A2 sizeof(struct slab_area_block) <= ab_used <= ab_size, and [header, ab_used) is a
 *      sequence of whole magazines (struct slab_mag + m_capacity entries);
 *   A3 an UNUSED slot owns no blocks and no magazines.
 * Writers: slabd for the slot and the block chain; the client for ab_used and magazines.
 */
#ifndef SLABD_SHM_CLIENT_H
#define SLABD_SHM_CLIENT_H

#include "magazine.h"

/* slabd: take a free client slot for pid.  -EUSERS when the table is full. */
int sm_client_attach(struct sm_arena *a, int32_t pid, uint32_t uid, uint32_t gid,
		     uint32_t *slot);

/* slabd: add a block of 2^order pages on node to slot's area.  0 with *block set, or
 * -ENOMEM / -EINVAL. */
int sm_area_grow(struct sm_arena *a, uint32_t slot, unsigned node, unsigned order,
		 uint32_t *block);

/* slabd: give every object in slot's magazines back to the shared tiers, fold their
 * counters into their caches, free the area and the slot.  Returns objects returned. */
uint64_t sm_client_reclaim(struct sm_arena *a, uint32_t slot);

/* client: carve a magazine of capacity entries out of block, or NULL when it has no
 * room.  The magazine is zeroed and MAG_IDLE; bind it with sm_mag_init before use. */
struct slab_mag *sm_area_carve(struct sm_arena *a, uint32_t block, unsigned capacity);

/* Call fn for every magazine in slot's area (any state).  Readers other than the owner
 * see a consistent set of whole magazines (A2); counters may be mid-update. */
typedef void (*sm_mag_fn)(void *arg, struct slab_mag *m);
void sm_client_for_each_mag(struct sm_arena *a, uint32_t slot, sm_mag_fn fn, void *arg);

/* slabd, on request (`slabctl reclaim PID`): free what a dead process left allocated in a
 * SLAB_STORE_USER cache: every object out of its slab whose struct slab_track names pid
 * and that no holder has (shared arrays; the magazines `holders` reports).  The objects
 * are made to look free (debug.h) and go back to the shared tiers.  With dry_run, only
 * count them.  Returns the number of objects, or -EINVAL (not a SLAB_STORE_USER cache),
 * -ENOMEM.  Owner tracking names the process that allocated, freed or cached an object
 * last: an object the dead process handed to another one that still uses it must not
 * be reclaimed (that is the operator's call, as the kernel's would be). */
int64_t sm_cache_reclaim_pid(struct sm_arena *a, uint32_t id, int32_t pid,
			     sm_holder_fn holders, void *harg, int dry_run);

#endif
