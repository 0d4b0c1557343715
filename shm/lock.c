/* lock.c - robust mutexes (see lock.h for the rules). */
#include "lock.h"

#include "compiler.h"

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

/* A waiter looks at the lock again after this long asleep (see lock_slow). */
#define SM_LOCK_RECHECK_NS 5000000L
/* Bounds of a spin budget (pauses; one is 10-40 ns on current x86, so 0.3-2.5 us).
 * Measured on 2 CPUs: watching up to 128 pauses took prodcons from futex sleeps to DPDK's
 * rate, but when more processes run than CPUs (test_storm) the watchers starve slabd and
 * the median reclaim grew from 0.7 to 1.9 ms; 64, adapted per lock, is the compromise. */
#define SM_SPIN_MIN 16u
#define SM_SPIN_MAX 64u

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int lock_slow(slab_mutex_t *m, int rc);

int sm_mutex_lock(slab_mutex_t *m)
{
	return lock_slow(m, pthread_mutex_trylock(m));
}

int sm_mutex_lock_spin(slab_mutex_t *m, uint32_t *budget, int *contended)
{
	int rc = pthread_mutex_trylock(m);
	uint32_t b, i = 0;

	*contended = rc == EBUSY;
	if (rc != EBUSY)
		return lock_slow(m, rc);
	b = SM_LOAD(budget);
	if (b < SM_SPIN_MIN || b > SM_SPIN_MAX)
		b = SM_SPIN_MIN;
	/* Watch the lock word (glibc's owner tid; reading it leaves the holder's cache line
	 * shared, where retrying the CAS would steal it) and try again when it reads free.
	 * A holder that died leaves the word non-zero (FUTEX_OWNER_DIED): lock_slow takes
	 * it with EOWNERDEAD. */
	for (; rc == EBUSY && i < b; i++) {
		cpu_relax();
		if (__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) == 0)
			rc = pthread_mutex_trylock(m);
	}
	if (rc == EBUSY) {
		SM_STORE(budget, b / 2 > SM_SPIN_MIN ? b / 2 : SM_SPIN_MIN);
	} else if (rc == 0) {
		b += b / 4 + 1;
		SM_STORE(budget, b < SM_SPIN_MAX ? b : SM_SPIN_MAX);
	}
	return lock_slow(m, rc);
}

/* Take m after a first try gave rc. */
static int lock_slow(slab_mutex_t *m, int rc)
{
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
