/* objcheck.h - cache_from_obj's "on an object boundary" test in one multiplication and
 * one comparison, for the fast free.
 *
 * A slab holds num slots of `size` bytes from its start.  An offset d from the slab start
 * (0 <= d < slab bytes) is the start of one of its objects -- d == k * size with k < num --
 * if and only if
 *
 *     d * magic < limit        (64-bit unsigned arithmetic, wrapping)
 *
 * with magic = floor(2^64 / size) + 1 and limit = num * eps, eps = magic * size - 2^64.
 *
 * Why (Lemire, Kaser and Kurz's divisibility test, with the bound folded in):
 *   magic * size lies in (2^64, 2^64 + size], so 0 < eps <= size.  Write d = k * size + r
 *   with 0 <= r < size.  Then d * magic == k * eps + r * magic (mod 2^64).
 *   - r == 0: the product is k * eps, below limit exactly when k < num (eps > 0, and
 *     k * eps <= d < 2^22 never wraps).
 *   - r > 0: r * magic lies in [magic, 2^64 - 2^64/size + size) and k * eps < 2^22, so the
 *     sum does not wrap (size <= 2^20) and is at least magic > 2^44 > limit (limit <=
 *     num * size <= 2^22).
 * A power-of-two size needs the "+ 1" in magic: with magic = 2^64 / size exactly, eps
 * would be 0 and every multiple would pass.
 *
 * Invariants: 8 <= size <= 2^20; num * size <= slab bytes <= 2^22 (SLAB_MAX_ORDER);
 * tests/unit/test_geometry.c checks the test against the division for every geometry.
 */
#ifndef SLABD_SHM_OBJCHECK_H
#define SLABD_SHM_OBJCHECK_H

#include <stdint.h>

struct sm_objcheck {
	uint64_t magic;
	uint64_t limit;
};

static inline struct sm_objcheck sm_objcheck_make(uint32_t size, uint32_t num)
{
	uint64_t s = size;
	/* floor(2^64 / s): UINT64_MAX / s, plus one when s divides 2^64 (a power of two) */
	uint64_t fl = UINT64_MAX / s + ((s & (s - 1)) == 0);
	struct sm_objcheck oc;

	oc.magic = fl + 1;
	oc.limit = (uint64_t)num * (oc.magic * s); /* magic * s wraps to eps */
	return oc;
}

/* 1 when d (an offset from the slab start, below the slab's size) starts an object. */
static inline int sm_objcheck_ok(const struct sm_objcheck *oc, uint64_t d)
{
	return d * oc->magic < oc->limit;
}

#endif
