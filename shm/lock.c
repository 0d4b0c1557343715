/* lock.c - robust mutexes (see lock.h for the rules). */
#include "lock.h"

#include <errno.h>
#include <pthread.h>

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

int sm_mutex_lock(slab_mutex_t *m)
{
	int rc = pthread_mutex_lock(m);

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
