/* stocker.h - the reserve stocker: one thread of slabd, at idle priority, that faults the
 * node reserves' blocks in while clients grow caches.
 *
 * Why a thread: a page of fresh shared memory costs 2.2 us to fault in on this project's
 * VMs (MADV_POPULATE_WRITE of a memfd, measured), 34 ns for each 64-byte object on it.
 * Done by the event loop, that time comes out of the grants clients wait for, and with
 * the synchronous wake-ups of Unix sockets often out of the client's own CPU, so the
 * reserve used to be restocked only once grants had paused.  The stocker runs under
 * SCHED_IDLE: it gets a CPU only when no other thread of the host wants it, so it keeps
 * the reserves stocked during a burst on otherwise idle CPUs and never delays a client.
 *
 * Division of work: the main thread takes a free block off the page allocator
 * (sm_reserve_take), hands it over in a slot, and lists it on the reserve once the slot
 * comes back (sm_reserve_put).  The stocker thread only faults pages in
 * (sm_reserve_fault), and never touches the arena's metadata or locks, so it holds
 * nothing a client or the main thread could wait for while it is preempted.
 *
 * Invariants:
 *   S1 the stocker thread calls nothing but sm_reserve_fault on the arena: that changes
 *      no byte of memory and no descriptor, so a slot it works on after the main thread
 *      took its block back (stocker_quiesce) or after the arena was replaced is harmless;
 *   S2 a slot's state moves FREE -> QUEUED (main) -> BUSY (stocker, by CAS) -> DONE
 *      (stocker) -> FREE (main), or QUEUED -> FREE by the main thread's CAS (cancelled):
 *      exactly one thread owns a slot's fields at a time;
 *   S3 a block in a slot that is not FREE is a PG_RESERVE head on no list, unless a
 *      repair listed it meanwhile (sm_reserve_put then leaves it alone);
 *   S4 at most STOCKER_SLOTS blocks are out at once; the main thread's validate, shrink,
 *      adoption and exit call stocker_quiesce first, which lists every block still out.
 */
#ifndef SLABD_DAEMON_STOCKER_H
#define SLABD_DAEMON_STOCKER_H

#include <stdbool.h>
#include <stdint.h>

struct slabd;

#define STOCKER_SLOTS 8u  /* 1 MiB out at once */

/* Start the thread and its completion event.  Without it (-errno: no thread, no
 * eventfd) slabd stocks the reserves on the main thread between bursts, as before. */
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

/* Bring every block back: cancel the queued ones, wait (sleeping, up to 100 ms) for the
 * one the thread is faulting in, fault the rest in here, and list them all.  Afterwards
 * no block is out and the reserve lists are whole (B4). */
void stocker_quiesce(struct slabd *d);

#endif
