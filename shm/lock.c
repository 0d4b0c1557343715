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
/* Looks at a held lock before sleeping on it: 128 pauses are 2-5 us on current x86,
 * longer than a batch transfer holds a node lock, short enough that a waiter whose holder
 * was preempted (more runnable threads than CPUs) soon gives its CPU back. */
#define SM_LOCK_SPIN 128

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

int sm_mutex_lock(slab_mutex_t *m)
{
	int rc = pthread_mutex_trylock(m);

	/* Held: the holders are short (one batch), and sleeping on the futex costs two
	 * context switches, so first watch the lock word (glibc's owner tid; reading it
	 * leaves the holder's cache line shared, where retrying the CAS would steal it) and
	 * try again when it reads free.  A holder that died leaves the word non-zero
	 * (FUTEX_OWNER_DIED): the loop below takes it with EOWNERDEAD. */
	for (unsigned i = 0; rc == EBUSY && i < SM_LOCK_SPIN; i++) {
		cpu_relax();
		if (__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) == 0)
			rc = pthread_mutex_trylock(m);
	}

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
