/* lock.c - robust mutexes (see lock.h for the rules). */
#include "lock.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

int sm_mutex_init(slab_mutex_t *m)
{
	pthread_mutexattr_t attr;
	int rc = pthread_mutexattr_init(&attr);

	if (rc)
		return -rc;
	rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!rc)
		rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (!rc)
		rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
	if (!rc)
		rc = pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
	return -rc;
}

/* A waiter looks at the lock again after this long asleep (see sm_mutex_lock). */
#define SM_LOCK_RECHECK_NS 5000000L

int sm_mutex_lock(slab_mutex_t *m)
{
	int rc = pthread_mutex_trylock(m);

	/* Never an unbounded sleep.  A robust futex loses its wakeup when the waiter that
	 * an unlock woke is killed before it takes the lock and another process takes it
	 * first: the unlock cleared FUTEX_WAITERS, the kernel's owner-died handling of the
	 * killed waiter wakes someone only when the lock is free, and the new owner's unlock
	 * sees no waiters.  The other sleepers would wait for some later contention (slabd
	 * and clients were seen asleep for good).  So wait in slices and look again.
	 * (pthread_mutex_timedlock, not clocklock: ThreadSanitizer intercepts only the
	 * former; a wall-clock step only stretches or shortens one slice.) */
	while (rc == EBUSY || rc == ETIMEDOUT) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SM_LOCK_RECHECK_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		rc = pthread_mutex_timedlock(m, &ts);
	}

	if (rc == 0)
		return 0;
	if (rc == EOWNERDEAD)
		return SM_LOCK_OWNERDEAD;
	return -rc;
}

void sm_mutex_unlock(slab_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

void sm_mutex_consistent(slab_mutex_t *m)
{
	pthread_mutex_consistent(m);
}
