/* testpoint.h - crash points inside slow-path steps, compiled only into test builds.
 *
 * With -DSLAB_TEST_HOOKS (build/lib/libslab-hooks.a, linked only into tests/crash):
 *
 *   SM_TEST_POINT("name") stops the calling process (SIGSTOP) when $SLAB_TEST_STOP names
 *   that point, so a test can SIGKILL it exactly there and check that slabd loses nothing.
 *   $SLAB_TEST_SKIP=N lets the first N hits of that point pass (stop at hit N + 1), so the
 *   process can hold objects and cached state when it stops.
 *
 *   SM_STEP_BEGIN(kind) / SM_STEP_END() bracket a slow-path step (kind: SLAB_INTENT_REFILL
 *   or SLAB_INTENT_FLUSH); SM_STEP_LOCKED(kind) / SM_STEP_UNLOCKED(kind) bracket the part
 *   of it that holds a cache node lock.  When $SLAB_TEST_STEP_PAGE is "FD" or "FD:SLOT"
 *   (FD: an inherited memfd or file of at least one page, mapped on first use; SLOT: a
 *   uint32_t index in that page, 0 .. 1023, default 0), the calling process keeps in
 *   word SLOT of that page: 0 outside a step, else kind | SM_STEP_LOCKED_BIT while it
 *   holds the node lock.  A test that SIGKILLs the process reads the word afterwards to
 *   know whether the kill landed inside a step.  The word is set only after the step's
 *   intent is recorded (and after the lock is taken) and cleared before the step ends
 *   (before the unlock), so a non-zero word proves the process died inside it.
 *
 * In every other build the macros are empty.
 */
#ifndef SLABD_SHM_TESTPOINT_H
#define SLABD_SHM_TESTPOINT_H

#define SM_STEP_LOCKED_BIT 0x100u
#define SM_STEP_PAGE_SLOTS 1024u

#ifdef SLAB_TEST_HOOKS
void sm_test_point(const char *name);
/* op: 0 begin (word = kind), 1 locked (kind | LOCKED_BIT), 2 unlocked (kind), 3 end (0). */
void sm_test_step(unsigned op, unsigned kind);
#define SM_TEST_POINT(name)     sm_test_point(name)
#define SM_STEP_BEGIN(kind)     sm_test_step(0, (kind))
#define SM_STEP_LOCKED(kind)    sm_test_step(1, (kind))
#define SM_STEP_UNLOCKED(kind)  sm_test_step(2, (kind))
#define SM_STEP_END()           sm_test_step(3, 0)
#else
#define SM_TEST_POINT(name)     ((void)0)
#define SM_STEP_BEGIN(kind)     ((void)0)
#define SM_STEP_LOCKED(kind)    ((void)0)
#define SM_STEP_UNLOCKED(kind)  ((void)0)
#define SM_STEP_END()           ((void)0)
#endif

#endif
