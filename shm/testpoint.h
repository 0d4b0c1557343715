/* testpoint.h - crash points inside slow-path steps, compiled only into test builds.
 *
 * With -DSLAB_TEST_HOOKS, SM_TEST_POINT("name") stops the calling process (SIGSTOP) when
 * $SLAB_TEST_STOP names that point, so a test can SIGKILL it exactly there and check that
 * slabd loses nothing.  In every other build the macro is empty.
 */
#ifndef SLABD_SHM_TESTPOINT_H
#define SLABD_SHM_TESTPOINT_H

#ifdef SLAB_TEST_HOOKS
void sm_test_point(const char *name);
#define SM_TEST_POINT(name) sm_test_point(name)
#else
#define SM_TEST_POINT(name) ((void)0)
#endif

#endif
