/* testutil.h - helpers shared by the cmocka unit tests (tests/unit/test_*.c).
 *
 * E(expr): check a call that returns 0 or -errno; on failure print the call, the error
 * text and the line, then fail the test (LMDB mtest.c style).
 */
#ifndef SLABD_TESTUTIL_H
#define SLABD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arena.h"

#define E(expr)                                                                        \
	do {                                                                           \
		int e_rc_ = (expr);                                                    \
		if (e_rc_ < 0)                                                         \
			fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #expr,           \
				 strerror(-e_rc_));                                    \
	} while (0)

/* Create a memfd arena of size bytes over nr_nodes nodes; fails the test on error. */
void tu_arena(struct sm_arena *a, uint64_t size, unsigned nr_nodes);

/* A report sink that counts lines and keeps the last few for assertions. */
struct tu_report {
	unsigned count;
	char     last[512];
	char     all[8192];
};
void tu_report(void *arg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tu_report_has(const struct tu_report *r, const char *needle);

/* Scale factor for long loops: $SLAB_TEST_SCALE divides iteration counts (valgrind). */
unsigned long tu_scaled(unsigned long n);

/* Deterministic xorshift64* generator. */
static inline uint64_t tu_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

#endif
