/* stocker.h - the reserve stocker: one thread of slabd that faults the node reserves'
 * blocks in while clients grow caches.
 *
 * Why a thread: a page of fresh shared memory costs 1.7-2.2 us to make resident on this
 * project's VMs (fallocate twice + MADV_POPULATE_READ, or MADV_POPULATE_WRITE; measured),
 * 27-34 ns for each 64-byte object on it.  Done by the event loop, that time comes out
 * of the grants clients wait for, and with the synchronous wake-ups of Unix sockets often
 * out of the client's own CPU, so the reserve used to be restocked only once grants had
 * paused.  The thread is woken through an eventfd (no synchronous wake-up), so the
 * scheduler puts it on an idle CPU when there is one, and it stocks during the burst.
 * Its work is bounded by the reserve's size and is work a grant would otherwise do.
 *
 * Division of work: the main thread takes a free block off the page allocator
 * (sm_reserve_take), hands it over in a slot, and lists it on the reserve once the slot
 * comes back (sm_reserve_put).  The thread only faults pages in (sm_reserve_fault): it
 * never touches the arena's metadata or its locks.
 *
 * Invariants:
 *   S1 the thread calls nothing but sm_reserve_fault on the arena, on the slot's block,
 *      through the slot's view (the mapping and fd of the arena it was queued for);
 *      that changes no byte anyone wrote and no descriptor;
 *   S2 a slot's state moves FREE -> QUEUED (main) -> BUSY (thread, by CAS) -> DONE
 *      (thread) -> FREE (main), or QUEUED -> FREE by the main thread's CAS (cancelled):
 *      exactly one thread owns a slot's fields at a time;
 *   S3 a block in a slot that is not FREE is a PG_RESERVE head on no list, unless a
 *      repair listed it meanwhile (sm_reserve_put and sm_reserve_return then leave it);
 *   S4 at most STOCKER_SLOTS blocks are out at once; validate, shrink, a grant that
 *      finds its node full, adoption and exit call stocker_quiesce first, which waits
 *      for the block being faulted in and gives every block back to the free lists: no
 *      slot is out afterwards, so the reserve lists are whole (B4), the memory is free,
 *      and the arena's mapping and fd may go.
 */
#ifndef SLABD_DAEMON_STOCKER_H
#define SLABD_DAEMON_STOCKER_H

#include <stdbool.h>
#include <stdint.h>

struct slabd;

#define STOCKER_SLOTS 8u  /* 1 MiB out at once */

/* Start the thread and its completion event.  Without it (-errno: no thread, no
 * eventfd) slabd stocks the reserves on the main thread between bursts. */
int stocker_start(struct slabd *d);

/* Stop the thread (after stocker_quiesce) and free what stocker_start made. */
void stocker_stop(struct slabd *d);

/* Whether the stocker runs (stocker_start succeeded and not stopped). */
bool stocker_running(const struct slabd *d);

/* Hand the stocker one free block of node: 1 when a block went out, 0 when every slot is
 * out already, -1 when node has no free block of the reserve's order or its region lock
 * failed. */
int stocker_feed(struct slabd *d, unsigned node);

/* Pages of node's reserve blocks out with the stocker (for reserve_low). */
uint32_t stocker_pages_out(const struct slabd *d, unsigned node);

/* Pages the thread faulted in that were then listed on a reserve, since the start. */
uint64_t stocker_pages_stocked(const struct slabd *d);

/* Whether a slot is free for stocker_feed. */
bool stocker_has_room(const struct slabd *d);

/* List every block whose slot came back (the completion event calls it too).  Returns
 * the pages listed. */
uint32_t stocker_collect(struct slabd *d);

/* Bring every block back (S4): cancel the queued ones, wait (sleeping) for the one being
 * faulted in, and give them all to the free lists. */
void stocker_quiesce(struct slabd *d);

#endif
