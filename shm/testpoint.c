/* testpoint.c - see testpoint.h. */
#include "testpoint.h"

#ifdef SLAB_TEST_HOOKS
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned long skipped;   /* hits of $SLAB_TEST_STOP let through ($SLAB_TEST_SKIP) */

void sm_test_point(const char *name)
{
	const char *stop = getenv("SLAB_TEST_STOP");
	const char *skip;

	if (!stop || strcmp(stop, name))
		return;
	skip = getenv("SLAB_TEST_SKIP");
	if (skip && skipped < strtoul(skip, NULL, 10)) {
		skipped++;
		return;
	}
	raise(SIGSTOP);
}

/* This process's word of the step page, or NULL.  Resolved again in a forked child (a
 * new pid): the child may have been given another page or slot. */
static uint32_t *step_word(void)
{
	static pid_t for_pid;
	static uint32_t *word;
	pid_t me = getpid();
	const char *env;
	char *end;
	unsigned long fd, slot = 0;
	void *page;

	if (for_pid == me)
		return word;
	for_pid = me;
	word = NULL;
	env = getenv("SLAB_TEST_STEP_PAGE");
	if (!env || !*env)
		return NULL;
	fd = strtoul(env, &end, 10);
	if (*end == ':')
		slot = strtoul(end + 1, &end, 10);
	if (*end || fd > 65535 || slot >= SM_STEP_PAGE_SLOTS)
		return NULL;
	page = mmap(NULL, SM_STEP_PAGE_SLOTS * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		    MAP_SHARED, (int)fd, 0);
	if (page == MAP_FAILED)
		return NULL;
	word = (uint32_t *)page + slot;
	return word;
}

void sm_test_step(unsigned op, unsigned kind)
{
	uint32_t *w = step_word();
	uint32_t v;

	if (!w)
		return;
	switch (op) {
	case 0:  v = kind; break;
	case 1:  v = kind | SM_STEP_LOCKED_BIT; break;
	case 2:  v = kind; break;
	default: v = 0; break;
	}
	/* Ordered with the step's own stores to the arena (both release, same thread). */
	__atomic_store_n(w, v, __ATOMIC_SEQ_CST);
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int sm_testpoint_unused;
#endif
