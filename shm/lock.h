/* lock.h - process-shared robust mutexes, and the arena's lock order.
 *
 * Every lock in the arena is a pthread mutex with PTHREAD_PROCESS_SHARED and
 * PTHREAD_MUTEX_ROBUST.  A holder that dies leaves the mutex EOWNERDEAD; the next locker
 * repairs what the lock guards from the source of truth (page descriptors for the page
 * allocator, each slab's bufctl for a cache node) and only then marks it consistent.
 * A mutex is never left ENOTRECOVERABLE: every EOWNERDEAD path ends in
 * pthread_mutex_consistent.
 *
 * Lock order (take lower numbers first, never the reverse):
 *   1. cache node lock   slab_cache_node.n_lock   (one at a time; never two nodes)
 *   2. node region lock  slab_node_region.nr_lock (page allocator; one at a time)
 * Nothing sleeps or makes a system call while holding either.
 */
#ifndef SLABD_SHM_LOCK_H
#define SLABD_SHM_LOCK_H

#include "layout.h"

/* Initialise a robust, process-shared, error-checking mutex in the arena.
 * Returns 0 or a negative errno from pthread. */
int sm_mutex_init(slab_mutex_t *m);

/* Lock m.  Returns 0 when locked normally, SM_LOCK_OWNERDEAD when locked but the previous
 * holder died (the caller repairs, then calls sm_mutex_consistent), or a negative errno
 * (-ENOTRECOVERABLE, -EINVAL, -EDEADLK) when it was not locked. */
#define SM_LOCK_OWNERDEAD 1
int sm_mutex_lock(slab_mutex_t *m);
/* The same, watching a held lock for up to *budget pauses before sleeping on it, and
 * adapting *budget (shared by the lock's users, updated without atomics: a hint) to
 * whether watching paid: it grows when the lock came free while watched and halves when
 * the waiter had to sleep anyway, so waiting on holders that run on another CPU costs no
 * futex sleep, while with more runnable threads than CPUs (holders preempted) little CPU
 * goes to watching.  *contended tells whether the first try found m held. */
int sm_mutex_lock_spin(slab_mutex_t *m, uint32_t *budget, int *contended);
void sm_mutex_unlock(slab_mutex_t *m);
/* Mark m consistent after repair; m must be held. */
void sm_mutex_consistent(slab_mutex_t *m);

#endif
