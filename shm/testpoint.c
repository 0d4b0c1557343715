/* testpoint.c - see testpoint.h. */
#include "testpoint.h"

#ifdef SLAB_TEST_HOOKS
#include <signal.h>
#include <stdlib.h>
#include <string.h>

void sm_test_point(const char *name)
{
	const char *stop = getenv("SLAB_TEST_STOP");

	if (stop && strcmp(stop, name) == 0)
		raise(SIGSTOP);
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int sm_testpoint_unused;
#endif
