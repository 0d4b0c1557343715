/* test_buddy.c - guards the per-node buddy page allocator (shm/buddy.c, shm/buddy.h).
 *
 * What must never regress:
 *   - a split leaves exactly one new free block of each order between the request and the
 *     block it split, and a free merges them back into the very same blocks;
 *   - a node hands out exactly its region's pages, no more, and -ENOMEM only when no
 *     aligned run of free pages of the requested order exists (checked against a model);
 *   - bad requests (order, node) and bad frees (tails, free blocks, metadata, out of
 *     range, double frees, descriptors claiming an impossible order) return -EINVAL and
 *     change no byte of the allocator;
 *   - a block at the end of a node's region never merges with what lies past it (the next
 *     node's first block, or whatever follows the descriptor array);
 *   - sm_buddy_check catches corrupted free lists and counters, and sm_buddy_repair
 *     rebuilds them from the page states, keeping every allocated block;
 *   - a process that dies holding a region lock leaves it EOWNERDEAD, and the next locker
 *     repairs the free lists and marks the lock consistent;
 *   - the reserve: stocking moves whole SLAB_RESERVE_ORDER blocks off the free lists with
 *     their pages resident; allocations of that order or less come from it first, in
 *     ascending page order, larger ones from the free lists; draining it gives back the
 *     very free blocks there were before; sm_buddy_check sees a block lost from its
 *     lists, and sm_reserve_rebuild (run by repair and adopt) lists it again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "buddy.h"
#include "list.h"

#define NORDERS (SLAB_MAX_ORDER + 1)

/* ---- helpers ------------------------------------------------------------------------- */

/* Run sm_buddy_check on node under its lock; returns the number of problems and prints
 * them (they go to the log when the test fails). */
static unsigned check_node(struct sm_arena *a, unsigned node, struct tu_report *out)
{
	struct tu_report r;
	unsigned bad;

	memset(&r, 0, sizeof(r));
	E(sm_region_lock(a, node));
	bad = sm_buddy_check(a, node, tu_report, &r);
	sm_region_unlock(a, node);
	if (bad != r.count)
		fail_msg("sm_buddy_check returned %u but reported %u lines", bad, r.count);
	if (bad && !out)        /* unexpected: show what the checker saw in the log */
		printf("node %u: %u problem(s):\n%s", node, bad, r.all);
	if (out)
		*out = r;
	return bad;
}

static void assert_clean(struct sm_arena *a)
{
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++)
		assert_int_equal(check_node(a, n, NULL), 0);
}

/* The allocator's state of one node, as far as "the same free blocks" goes: per-order
 * counts, the sorted heads of each free list, and every page's state (plus the order of
 * block heads).  Tails' other fields are unspecified (buddy.c) and not compared. */
struct snap {
	uint32_t  count[NORDERS];
	uint32_t *heads[NORDERS];
	uint32_t  nr_free_pages;
	uint32_t  nr_pages;
	uint8_t  *state;
	uint8_t  *order;
};

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	return a < b ? -1 : a > b;
}

static void snap_take(const struct sm_arena *a, unsigned node, struct snap *s)
{
	const struct slab_node_region *r = sm_region(a, node);

	memset(s, 0, sizeof(*s));
	s->nr_free_pages = r->nr_free_pages;
	s->nr_pages = r->nr_nr_pages;
	for (unsigned k = 0; k < NORDERS; k++) {
		uint32_t x = r->nr_free[k].l_head, n = 0;

		s->count[k] = r->nr_free[k].l_count;
		s->heads[k] = calloc(s->count[k] + 1, sizeof(uint32_t));
		assert_non_null(s->heads[k]);
		while (x != SLAB_NIL && n < s->count[k]) {
			s->heads[k][n++] = x;
			x = a->pages[x].pg_next;
			if (x == r->nr_free[k].l_head)
				break;
		}
		assert_int_equal(n, s->count[k]);
		qsort(s->heads[k], n, sizeof(uint32_t), cmp_u32);
	}
	s->state = malloc(r->nr_nr_pages);
	s->order = malloc(r->nr_nr_pages);
	assert_non_null(s->state);
	assert_non_null(s->order);
	for (uint32_t i = 0; i < r->nr_nr_pages; i++) {
		const struct slab_page *pg = &a->pages[r->nr_first_page + i];

		s->state[i] = pg->pg_state;
		s->order[i] = pg->pg_state == PG_TAIL ? 0 : pg->pg_order;
	}
}

static void snap_free(struct snap *s)
{
	for (unsigned k = 0; k < NORDERS; k++)
		free(s->heads[k]);
	free(s->state);
	free(s->order);
	memset(s, 0, sizeof(*s));
}

static void snap_assert_equal(const struct snap *x, const struct snap *y)
{
	assert_int_equal(x->nr_pages, y->nr_pages);
	assert_int_equal(x->nr_free_pages, y->nr_free_pages);
	for (unsigned k = 0; k < NORDERS; k++) {
		assert_int_equal(x->count[k], y->count[k]);
		assert_memory_equal(x->heads[k], y->heads[k], x->count[k] * sizeof(uint32_t));
	}
	for (uint32_t i = 0; i < x->nr_pages; i++) {
		if (x->state[i] != y->state[i] || x->order[i] != y->order[i])
			fail_msg("region page %u: state %u order %u, expected state %u order %u",
				 i, y->state[i], y->order[i], x->state[i], x->order[i]);
	}
}

/* The raw bytes of everything the page allocator owns on a node except the mutex (whose
 * bookkeeping words may legitimately change across a lock/unlock), plus every page
 * descriptor of the arena: used to prove that a refused call changed nothing. */
struct raw {
	uint8_t *region;
	size_t   region_len;
	uint8_t *pages;
	size_t   pages_len;
};

static void raw_take(const struct sm_arena *a, unsigned node, struct raw *w)
{
	const uint8_t *r = (const uint8_t *)sm_region(a, node);
	size_t skip = offsetof(struct slab_node_region, nr_first_page);

	w->region_len = sizeof(struct slab_node_region) - skip;
	w->region = malloc(w->region_len);
	w->pages_len = (size_t)a->hdr->ah_nr_pages * sizeof(struct slab_page);
	w->pages = malloc(w->pages_len);
	assert_non_null(w->region);
	assert_non_null(w->pages);
	memcpy(w->region, r + skip, w->region_len);
	memcpy(w->pages, a->pages, w->pages_len);
}

static void raw_assert_same(const struct sm_arena *a, unsigned node, const struct raw *w)
{
	const uint8_t *r = (const uint8_t *)sm_region(a, node);
	size_t skip = offsetof(struct slab_node_region, nr_first_page);

	assert_memory_equal(w->region, r + skip, w->region_len);
	assert_memory_equal(w->pages, a->pages, w->pages_len);
}

static void raw_free(struct raw *w)
{
	free(w->region);
	free(w->pages);
}

static int teardown_arena(void **state)
{
	struct sm_arena *a = *state;

	if (a) {
		sm_arena_detach(a);
		free(a);
	}
	*state = NULL;
	return 0;
}

static struct sm_arena *new_arena(void **state, uint64_t size, unsigned nodes)
{
	struct sm_arena *a = calloc(1, sizeof(*a));

	assert_non_null(a);
	a->fd = -1;
	*state = a;             /* the teardown detaches it even if the test fails */
	tu_arena(a, size, nodes);
	assert_int_equal(a->hdr->ah_nr_nodes, nodes);
	return a;
}

/* Allocate order o on node and check the block: inside the region, aligned relative to its
 * start, head PG_BLOCK of order o, tails pointing at the head. */
static uint32_t alloc_checked(struct sm_arena *a, unsigned node, unsigned o)
{
	const struct slab_node_region *r = sm_region(a, node);
	uint32_t h = SLAB_NIL;

	E(sm_pages_alloc(a, node, o, &h));
	if (h < r->nr_first_page || h - r->nr_first_page + (1u << o) > r->nr_nr_pages)
		fail_msg("block %u of order %u is outside node %u's region [%u, %u)", h, o, node,
			 r->nr_first_page, r->nr_first_page + r->nr_nr_pages);
	assert_int_equal(h & ((1u << o) - 1), 0); /* aligned in absolute page numbers */
	assert_int_equal(a->pages[h].pg_state, PG_BLOCK);
	assert_int_equal(a->pages[h].pg_order, o);
	assert_int_equal(a->pages[h].pg_tag, 0);
	for (uint32_t t = h + 1; t < h + (1u << o); t++) {
		assert_int_equal(a->pages[t].pg_state, PG_TAIL);
		assert_int_equal(a->pages[t].pg_next, h);
	}
	return h;
}

/* ---- split and merge ------------------------------------------------------------------- */

/* Allocate every free block of orders < lo, so the next order-0 request has to split a
 * block of order >= lo.  Returns how many blocks it took (heads in held[]). */
static unsigned drain_low_orders(struct sm_arena *a, unsigned lo, uint32_t *held,
				 unsigned max)
{
	const struct slab_node_region *r = sm_region(a, 0);
	unsigned n = 0;

	for (unsigned k = 0; k < lo; k++) {
		while (r->nr_free[k].l_count) {
			uint32_t before = r->nr_free[k].l_count;

			assert_true(n < max);
			held[n++] = alloc_checked(a, 0, k);
			/* an exact fit is taken from its own list: no split */
			assert_int_equal(r->nr_free[k].l_count, before - 1);
		}
	}
	return n;
}

static void test_split_and_merge(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	const struct slab_node_region *r = sm_region(a, 0);
	struct snap s0, s1;
	uint32_t held[64], h;
	unsigned nheld, split = 0;

	assert_clean(a);
	nheld = drain_low_orders(a, 3, held, 64);
	snap_take(a, 0, &s0);
	for (unsigned k = 0; k < 3; k++)
		assert_int_equal(s0.count[k], 0);
	for (split = 3; split < NORDERS && !s0.count[split]; split++)
		;
	assert_true(split < NORDERS); /* a fresh 16 MiB node has large blocks */

	/* Order 0 splits the smallest larger block: it leaves its list, and one free block
	 * of each order 0 .. split-1 appears, the buddies on the way down. */
	h = alloc_checked(a, 0, 0);
	for (unsigned k = 0; k < NORDERS; k++) {
		uint32_t want = s0.count[k];

		if (k == split)
			want--;
		else if (k < split)
			want++;
		assert_int_equal(r->nr_free[k].l_count, want);
	}
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages - 1);
	/* the block came from the split block, and the buddies sit at h ^ (1 << k) */
	{
		uint32_t base = h & ~((1u << split) - 1);
		uint32_t *pos = bsearch(&(uint32_t){ base },
					s0.heads[split], s0.count[split], sizeof(uint32_t),
					cmp_u32);

		assert_non_null(pos);
		for (unsigned k = 0; k < split; k++) {
			uint32_t b = h ^ (1u << k);

			assert_int_equal(a->pages[b].pg_state, PG_FREE);
			assert_int_equal(a->pages[b].pg_order, k);
		}
	}
	assert_clean(a);

	/* Freeing it merges all the way back to the original block. */
	E(sm_pages_free(a, h));
	snap_take(a, 0, &s1);
	snap_assert_equal(&s0, &s1);
	snap_free(&s1);
	assert_clean(a);

	/* Several orders, freed in an order unrelated to the allocation order. */
	{
		static const unsigned orders[] = { 0, 3, 1, 5, 2, 0, 4, 0, 1, 6, 2, 3 };
		static const unsigned free_order[] = { 5, 0, 11, 2, 7, 9, 1, 4, 10, 3, 8, 6 };
		uint32_t blk[SM_ARRAY_SIZE(orders)];
		uint32_t pages = 0;

		static_assert(SM_ARRAY_SIZE(orders) == SM_ARRAY_SIZE(free_order), "pairs");
		for (unsigned i = 0; i < SM_ARRAY_SIZE(orders); i++) {
			blk[i] = alloc_checked(a, 0, orders[i]);
			pages += 1u << orders[i];
			for (unsigned j = 0; j < i; j++) /* no overlap between held blocks */
				assert_true(blk[j] + (1u << orders[j]) <= blk[i] ||
					    blk[i] + (1u << orders[i]) <= blk[j]);
		}
		assert_int_equal(r->nr_free_pages, s0.nr_free_pages - pages);
		assert_clean(a);
		for (unsigned i = 0; i < SM_ARRAY_SIZE(free_order); i++) {
			unsigned j = free_order[i];

			E(sm_pages_free(a, blk[j]));
			pages -= 1u << orders[j];
			assert_int_equal(r->nr_free_pages, s0.nr_free_pages - pages);
			assert_clean(a);
		}
		snap_take(a, 0, &s1);
		snap_assert_equal(&s0, &s1);
		snap_free(&s1);
	}

	/* And the drained low-order blocks go back too: the node is as formatted. */
	for (unsigned i = 0; i < nheld; i++)
		E(sm_pages_free(a, held[i]));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_clean(a);
	snap_free(&s0);
}

/* ---- exhaustion and bad requests ------------------------------------------------------- */

static void test_exhaustion(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	const struct slab_node_region *r = sm_region(a, 0);
	uint32_t n = 0, h, again;
	uint32_t *held = calloc(r->nr_nr_pages + 1, sizeof(uint32_t));
	uint8_t *own = calloc(r->nr_nr_pages, 1);
	int rc;

	assert_non_null(held);
	assert_non_null(own);
	for (;;) {
		rc = sm_pages_alloc(a, 0, 0, &h);
		if (rc == -ENOMEM)
			break;
		E(rc);
		assert_true(n < r->nr_nr_pages);
		assert_true(h >= r->nr_first_page && h < r->nr_first_page + r->nr_nr_pages);
		assert_int_equal(own[h - r->nr_first_page], 0); /* never handed out twice */
		own[h - r->nr_first_page] = 1;
		held[n++] = h;
	}
	assert_int_equal(n, r->nr_nr_pages);
	assert_int_equal(r->nr_free_pages, 0);
	assert_int_equal(sm_buddy_largest(a, 0), -1);
	for (unsigned o = 1; o <= SLAB_MAX_ORDER; o++)
		assert_int_equal(sm_pages_alloc(a, 0, o, &h), -ENOMEM);
	assert_clean(a);

	/* One page back: exactly that page can be had again, then nothing. */
	E(sm_pages_free(a, held[n / 2]));
	assert_int_equal(r->nr_free_pages, 1);
	assert_int_equal(sm_buddy_largest(a, 0), 0);
	assert_int_equal(sm_pages_alloc(a, 0, 1, &h), -ENOMEM);
	E(sm_pages_alloc(a, 0, 0, &again));
	assert_int_equal(again, held[n / 2]);
	assert_int_equal(sm_pages_alloc(a, 0, 0, &h), -ENOMEM);

	/* Two buddies back (the region's first even-aligned pair) merge into an order-1
	 * block, which splits into the same two pages again. */
	{
		uint32_t p0 = (r->nr_first_page + 1) & ~1u, p1 = p0 + 1;

		E(sm_pages_free(a, p0));
		E(sm_pages_free(a, p1));
		assert_int_equal(r->nr_free[1].l_count, 1);
		assert_int_equal(r->nr_free[0].l_count, 0);
		assert_int_equal(r->nr_free_pages, 2);
		E(sm_pages_alloc(a, 0, 1, &h));
		assert_int_equal(h, p0);
		E(sm_pages_free(a, h));
		E(sm_pages_alloc(a, 0, 0, &h));
		E(sm_pages_alloc(a, 0, 0, &again));
		assert_true((h == p0 && again == p1) || (h == p1 && again == p0));
		assert_int_equal(sm_pages_alloc(a, 0, 0, &h), -ENOMEM);
	}
	assert_clean(a);

	for (uint32_t i = 0; i < n; i++)
		E(sm_pages_free(a, held[i]));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_clean(a);
	free(held);
	free(own);
}

static void test_bad_requests(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	const struct slab_node_region *r = sm_region(a, 0);
	uint32_t h = 12345, blk, freehead = SLAB_NIL, freetail = SLAB_NIL;
	struct raw w;
	uint32_t bad[8];
	unsigned nbad = 0;

	assert_int_equal(sm_pages_alloc(a, 0, SLAB_MAX_ORDER + 1, &h), -EINVAL);
	assert_int_equal(sm_pages_alloc(a, 0, 255, &h), -EINVAL);
	assert_int_equal(sm_pages_alloc(a, 1, 0, &h), -EINVAL);           /* one node only */
	assert_int_equal(sm_pages_alloc(a, SLAB_MAX_NODES, 0, &h), -EINVAL);
	assert_int_equal(sm_pages_alloc(a, SLAB_NIL, 0, &h), -EINVAL);
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	E(sm_pages_alloc(a, 0, SLAB_MAX_ORDER, &h));                       /* the boundary is fine */
	E(sm_pages_free(a, h));

	blk = alloc_checked(a, 0, 3);
	for (unsigned k = 1; k < NORDERS && freehead == SLAB_NIL; k++)
		if (r->nr_free[k].l_count) {
			freehead = r->nr_free[k].l_head;
			freetail = freehead + (1u << k) - 1;
		}
	assert_int_not_equal(freehead, SLAB_NIL);

	bad[nbad++] = blk + 1;                        /* tail of an allocated block */
	bad[nbad++] = blk + 7;                        /* its last tail */
	bad[nbad++] = freehead;                       /* head of a free block */
	bad[nbad++] = freetail;                       /* tail of a free block */
	bad[nbad++] = 0;                              /* the header page */
	bad[nbad++] = a->hdr->ah_meta_pages - 1;      /* the last metadata page */
	bad[nbad++] = a->hdr->ah_nr_pages;            /* past the end */
	bad[nbad++] = SLAB_NIL;
	assert_int_equal(a->pages[0].pg_state, PG_META);
	assert_int_equal(a->pages[a->hdr->ah_meta_pages - 1].pg_state, PG_META);

	raw_take(a, 0, &w);
	for (unsigned i = 0; i < nbad; i++) {
		if (sm_pages_free(a, bad[i]) != -EINVAL)
			fail_msg("sm_pages_free(%u) was not refused", bad[i]);
		raw_assert_same(a, 0, &w);
		assert_clean(a);
	}
	raw_free(&w);

	/* A double free is refused and changes nothing either. */
	E(sm_pages_free(a, blk));
	raw_take(a, 0, &w);
	assert_int_equal(sm_pages_free(a, blk), -EINVAL);
	raw_assert_same(a, 0, &w);
	raw_free(&w);
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_clean(a);
}

/* A head whose descriptor claims an order it cannot have (misaligned, or running past the
 * region) is refused: sm_pages_free validates the descriptor before trusting it. */
static void test_bad_descriptors(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	const struct slab_node_region *r = sm_region(a, 0);
	uint32_t *all = calloc(r->nr_nr_pages, sizeof(uint32_t)), n = 0, h;
	uint32_t odd = r->nr_first_page | 1; /* an odd page number: no order-1 block starts there */
	unsigned tried = 0;
	struct raw w;

	assert_non_null(all);
	while (sm_pages_alloc(a, 0, 0, &h) == 0)
		all[n++] = h;
	assert_int_equal(n, r->nr_nr_pages);

	a->pages[odd].pg_order = 1;              /* two pages from an odd page: misaligned */
	raw_take(a, 0, &w);
	assert_int_equal(sm_pages_free(a, odd), -EINVAL);
	raw_assert_same(a, 0, &w);
	raw_free(&w);
	a->pages[odd].pg_order = 0;

	/* an aligned page near the end claims 2^k pages, running past the region's end */
	for (unsigned k = 1; k <= SLAB_MAX_ORDER; k++) {
		uint32_t p = r->nr_first_page + (r->nr_nr_pages & ~((1u << k) - 1));

		if (!(r->nr_nr_pages & ((1u << k) - 1)))
			continue;       /* 2^k divides the region: no such page */
		tried++;
		a->pages[p].pg_order = (uint8_t)k;
		raw_take(a, 0, &w);
		if (sm_pages_free(a, p) != -EINVAL)
			fail_msg("page %u claiming order %u past the region end was freed", p, k);
		raw_assert_same(a, 0, &w);
		raw_free(&w);
		a->pages[p].pg_order = 0;
	}
	assert_true(tried > 0);
	a->pages[odd].pg_order = SLAB_MAX_ORDER + 1;
	raw_take(a, 0, &w);
	assert_int_equal(sm_pages_free(a, odd), -EINVAL);
	raw_assert_same(a, 0, &w);
	raw_free(&w);
	a->pages[odd].pg_order = 0;

	for (uint32_t i = 0; i < n; i++)
		E(sm_pages_free(a, all[i]));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_clean(a);
	free(all);
}

/* A block at the very end of a region must never merge with a "buddy" beyond it: the first
 * block of the next node's region, or the descriptor just past the array (which lies in
 * metadata padding or in data a client may have written anything into). */
static void test_region_edges(void **state)
{
	struct sm_arena *a = new_arena(state, 32 << 20, 2);
	struct slab_node_region *r0 = sm_region(a, 0), *r1 = sm_region(a, 1);
	uint32_t total = r0->nr_nr_pages + r1->nr_nr_pages, n = 0, h;
	uint32_t *all = calloc(total, sizeof(uint32_t));
	uint32_t bnd = r1->nr_first_page, end1 = r1->nr_first_page + r1->nr_nr_pages;
	/* Blocks are aligned in absolute page numbers: [bnd - 2^k, bnd) of node 0 and
	 * [bnd, bnd + 2^k) of node 1 are buddies for k = ctz(bnd); they must never merge. */
	unsigned k = (unsigned)__builtin_ctz(bnd);
	struct slab_page *beyond = &a->pages[a->hdr->ah_nr_pages], saved;

	assert_non_null(all);
	assert_int_equal(r0->nr_first_page + r0->nr_nr_pages, bnd);
	if (k >= SLAB_MAX_ORDER || (1u << k) > r0->nr_nr_pages || bnd + (1u << k) > end1)
		fail_msg("node boundary %u leaves no cross-node buddies to test: change the arena size",
			 bnd);
	while (sm_pages_alloc(a, 0, 0, &h) == 0)
		all[n++] = h;
	while (sm_pages_alloc(a, 1, 0, &h) == 0)
		all[n++] = h;
	assert_int_equal(n, total);
	for (uint32_t i = 0; i < n; i++)
		if (all[i] >= bnd - (1u << k) && all[i] < bnd + (1u << k))
			E(sm_pages_free(a, all[i]));
	assert_int_equal(r0->nr_free_pages, 1u << k);
	assert_int_equal(r1->nr_free_pages, 1u << k);
	assert_int_equal(a->pages[bnd - (1u << k)].pg_state, PG_FREE);
	assert_int_equal(a->pages[bnd - (1u << k)].pg_order, k);
	assert_int_equal(a->pages[bnd].pg_state, PG_FREE);
	assert_int_equal(a->pages[bnd].pg_order, k);
	assert_clean(a);
	for (uint32_t i = 0; i < n; i++)
		if (all[i] < bnd - (1u << k) || all[i] >= bnd + (1u << k))
			E(sm_pages_free(a, all[i]));
	assert_int_equal(r0->nr_free_pages, r0->nr_nr_pages);
	assert_int_equal(r1->nr_free_pages, r1->nr_nr_pages);
	assert_clean(a);

	/* The last block of the last node, with a free-looking descriptor just past the
	 * array where its buddy would be: it must not merge with it. */
	assert_true((uint8_t *)(beyond + 1) <= a->base + a->size);
	k = (unsigned)__builtin_ctz(end1);
	if (k < SLAB_MAX_ORDER && (1u << k) <= r1->nr_nr_pages) {
		saved = *beyond;
		beyond->pg_state = PG_FREE;
		beyond->pg_order = (uint8_t)k;
		beyond->pg_next = beyond->pg_prev = SLAB_NIL;
		n = 0;
		while (sm_pages_alloc(a, 1, 0, &h) == 0)
			all[n++] = h;
		for (uint32_t i = 0; i < n; i++)
			E(sm_pages_free(a, all[i]));
		assert_int_equal(r1->nr_free_pages, r1->nr_nr_pages);
		assert_int_equal(a->pages[end1 - (1u << k)].pg_state, PG_FREE);
		assert_int_equal(a->pages[end1 - (1u << k)].pg_order, k);
		*beyond = saved;
	}
	assert_clean(a);
	free(all);
}

/* ---- the model test -------------------------------------------------------------------- */

struct held_blk {
	uint32_t head;
	uint8_t  order;
	uint8_t  node;
};

/* Does node's region hold an aligned run of 2^o pages that the model says is free?  If it
 * does, a buddy allocator with merged buddies must have a free block of order >= o. */
static int model_has_free_run(const struct sm_arena *a, unsigned node, const uint8_t *own,
			      unsigned o)
{
	const struct slab_node_region *r = sm_region(a, node);
	uint32_t n = 1u << o, end = r->nr_first_page + r->nr_nr_pages;

	/* Runs aligned to their size in absolute page numbers, inside the region. */
	for (uint32_t p = (r->nr_first_page + n - 1) & ~(n - 1); p + n <= end; p += n) {
		uint32_t i;

		for (i = 0; i < n && !own[p + i]; i++)
			;
		if (i == n)
			return 1;
	}
	return 0;
}

static void test_model(void **state)
{
	struct sm_arena *a = new_arena(state, 32 << 20, 2);
	unsigned long ops = tu_scaled(100000), nomem = 0, allocs = 0, frees = 0;
	uint32_t npages = a->hdr->ah_nr_pages, cap = npages + 1, nheld = 0;
	uint32_t held_pages[2] = { 0, 0 };
	uint8_t *own = calloc(npages, 1);   /* 1: page inside a block the test holds */
	struct held_blk *held = calloc(cap, sizeof(*held));
	uint64_t seed = 0x5eed0b0ddu;
	struct snap init[2], end;
	unsigned bias = 35;

	assert_non_null(own);
	assert_non_null(held);
	for (unsigned n = 0; n < 2; n++) {
		assert_int_equal(sm_region(a, n)->nr_free_pages, sm_region(a, n)->nr_nr_pages);
		snap_take(a, n, &init[n]);
	}
	assert_clean(a);

	for (unsigned long op = 0; op < ops; op++) {
		uint64_t x = tu_rand(&seed);

		/* Phases push the nodes towards full and back towards empty. */
		if (op % 5000 == 0)
			bias = bias == 60 ? 35 : 60;
		if (nheld == 0 || (x % 100) < bias) {
			unsigned node = (unsigned)(x >> 8) & 1, o = (unsigned)((x >> 16) % 7);
			const struct slab_node_region *r = sm_region(a, node);
			uint32_t h = SLAB_NIL;
			int rc = sm_pages_alloc(a, node, o, &h);

			if (rc == -ENOMEM) {
				if (model_has_free_run(a, node, own, o))
					fail_msg("op %lu: -ENOMEM for order %u on node %u with an "
						 "aligned free run", op, o, node);
				assert_true(sm_buddy_largest(a, node) < (int)o);
				nomem++;
			} else {
				E(rc);
				if (h < r->nr_first_page ||
				    h - r->nr_first_page + (1u << o) > r->nr_nr_pages)
					fail_msg("op %lu: block %u order %u outside node %u", op, h,
						 o, node);
				if (h & ((1u << o) - 1))
					fail_msg("op %lu: block %u order %u misaligned in node %u",
						 op, h, o, node);
				for (uint32_t i = h; i < h + (1u << o); i++) {
					if (own[i])
						fail_msg("op %lu: block %u order %u overlaps a held "
							 "block at page %u", op, h, o, i);
					own[i] = 1;
				}
				assert_int_equal(a->pages[h].pg_state, PG_BLOCK);
				assert_int_equal(a->pages[h].pg_order, o);
				assert_true(nheld < cap);
				held[nheld++] = (struct held_blk){ h, (uint8_t)o, (uint8_t)node };
				held_pages[node] += 1u << o;
				allocs++;
			}
		} else {
			uint32_t j = (uint32_t)((x >> 8) % nheld);
			struct held_blk b = held[j];

			/* now and then a wrong free first: a tail of the block */
			if (b.order && (x >> 40) % 8 == 0)
				assert_int_equal(sm_pages_free(a, b.head + 1 +
						 (uint32_t)((x >> 44) % ((1u << b.order) - 1))),
						 -EINVAL);
			E(sm_pages_free(a, b.head));
			/* and now and then a double free */
			if ((x >> 48) % 16 == 0)
				assert_int_equal(sm_pages_free(a, b.head), -EINVAL);
			memset(own + b.head, 0, 1u << b.order);
			held[j] = held[--nheld];
			held_pages[b.node] -= 1u << b.order;
			frees++;
		}
		for (unsigned n = 0; n < 2; n++) {
			const struct slab_node_region *r = sm_region(a, n);

			if (r->nr_free_pages != r->nr_nr_pages - held_pages[n])
				fail_msg("op %lu: node %u has %u free pages, model says %u", op, n,
					 r->nr_free_pages, r->nr_nr_pages - held_pages[n]);
		}
		if (op % 1000 == 999)
			assert_clean(a);
	}
	assert_clean(a);
	printf("model: %lu ops, %lu allocs, %lu frees, %lu -ENOMEM, %u blocks held at the end\n",
	       ops, allocs, frees, nomem, nheld);
	if (ops >= 10000)
		assert_true(nomem > 0); /* the phases must really have filled a node */

	while (nheld) {
		struct held_blk b = held[--nheld];

		E(sm_pages_free(a, b.head));
	}
	for (unsigned n = 0; n < 2; n++) {
		snap_take(a, n, &end);
		snap_assert_equal(&init[n], &end);
		snap_free(&end);
		snap_free(&init[n]);
	}
	assert_clean(a);
	free(own);
	free(held);
}

/* ---- repair ---------------------------------------------------------------------------- */

enum corruption {
	CORRUPT_HEAD_NIL,       /* a free list loses its head */
	CORRUPT_COUNT,          /* a free list count is off by one */
	CORRUPT_FREE_PAGES,     /* the free page counter is off */
	CORRUPT_POPPED,         /* a block popped off its list, died before marking it */
	CORRUPT_LOST_HEAD,      /* a free block's head turned into a tail */
	CORRUPT_AMNESIA,        /* every list and the counter zeroed */
	CORRUPT_UNMERGED,       /* a free block split into two free buddies, lists right */
	CORRUPT_TAILS,          /* died while pointing an allocated block's tails at it */
	CORRUPT_NR
};

static const char *const corruption_name[CORRUPT_NR] = {
	"head nil", "count", "free pages", "popped", "lost head", "amnesia", "unmerged",
	"tails",
};

/* Runs in a forked child too (die_holding_lock): no cmocka assertions here. */
static void corrupt(struct sm_arena *a, enum corruption c)
{
	struct slab_node_region *r = sm_region(a, 0);
	unsigned k = 0;

	/* the smallest order with free blocks (test_repair makes sure there is one) */
	while (k < SLAB_MAX_ORDER && !r->nr_free[k].l_count)
		k++;
	switch (c) {
	case CORRUPT_HEAD_NIL:
		r->nr_free[k].l_head = SLAB_NIL;
		break;
	case CORRUPT_COUNT:
		r->nr_free[k].l_count++;
		break;
	case CORRUPT_FREE_PAGES:
		r->nr_free_pages += 5;
		break;
	case CORRUPT_POPPED:
		sm_list_pop(a->pages, &r->nr_free[k]);
		break;
	case CORRUPT_LOST_HEAD:
		a->pages[r->nr_free[k].l_head].pg_state = PG_TAIL;
		break;
	case CORRUPT_AMNESIA:
		for (unsigned o = 0; o < NORDERS; o++)
			sm_list_init(&r->nr_free[o]);
		r->nr_free_pages = 0;
		break;
	case CORRUPT_UNMERGED: {
		/* only B3 can tell: every list, count and page state is consistent */
		unsigned o = k + 1;
		uint32_t h;

		while (o < SLAB_MAX_ORDER && !r->nr_free[o].l_count)
			o++;
		h = sm_list_pop(a->pages, &r->nr_free[o]);
		if (h == SLAB_NIL)
			break;
		for (unsigned half = 0; half < 2; half++) {
			uint32_t b = h + half * (1u << (o - 1));

			a->pages[b].pg_state = PG_FREE;
			a->pages[b].pg_order = (uint8_t)(o - 1);
			sm_list_add(a->pages, &r->nr_free[o - 1], b);
		}
		break;
	}
	case CORRUPT_TAILS:
		/* the first allocated block of order >= 2 gets its tails half done */
		for (uint32_t i = r->nr_first_page; i < r->nr_first_page + r->nr_nr_pages; i++) {
			struct slab_page *pg = &a->pages[i];

			if (pg->pg_state != PG_BLOCK || pg->pg_order < 2)
				continue;
			for (uint32_t t = i + 2; t < i + (1u << pg->pg_order); t++) {
				a->pages[t].pg_state = PG_TAIL;
				a->pages[t].pg_next = SLAB_NIL;
			}
			break;
		}
		break;
	case CORRUPT_NR:
		break;
	}
}

static void test_repair(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	struct slab_node_region *r = sm_region(a, 0);
	struct snap init;
	uint64_t seed = 42;

	snap_take(a, 0, &init);
	for (unsigned c = 0; c < CORRUPT_NR; c++) {
		uint32_t *held, held_pages = 0, *all, n = 0, h, first = r->nr_first_page;
		uint32_t last = first + r->nr_nr_pages - 1;
		unsigned nheld = 0, kept = 0;
		struct tu_report rep;

		/* Fill the node with blocks of random orders, then free about half of them,
		 * always including those at the region's two ends: free runs and held blocks
		 * alternate all over the region, and free runs touch both of its ends. */
		held = calloc(r->nr_nr_pages, sizeof(uint32_t));
		assert_non_null(held);
		for (;;) {
			unsigned o = (unsigned)(tu_rand(&seed) % 6);
			int rc = sm_pages_alloc(a, 0, o, &h);

			if (rc == -ENOMEM && o == 0)
				break;
			if (rc == -ENOMEM)
				continue;
			E(rc);
			assert_true(nheld < r->nr_nr_pages);
			held[nheld++] = h;
		}
		assert_int_equal(r->nr_free_pages, 0);
		for (unsigned i = 0; i < nheld; i++) {
			uint32_t end = held[i] + (1u << a->pages[held[i]].pg_order) - 1;

			if (held[i] == first || end == last || tu_rand(&seed) % 2) {
				E(sm_pages_free(a, held[i]));
			} else {
				held_pages += end - held[i] + 1;
				held[kept++] = held[i];
			}
		}
		nheld = kept;
		assert_int_equal(a->pages[first].pg_state, PG_FREE);
		assert_int_not_equal(a->pages[last].pg_state, PG_BLOCK);
		assert_true(nheld > 10);
		assert_int_equal(r->nr_free_pages, r->nr_nr_pages - held_pages);
		assert_true(r->nr_free_pages > 0);
		assert_clean(a);

		corrupt(a, c);
		if (check_node(a, 0, &rep) == 0)
			fail_msg("corruption '%s' went unnoticed by sm_buddy_check",
				 corruption_name[c]);
		printf("corruption '%s': %u problem(s), e.g. %s\n", corruption_name[c], rep.count,
		       rep.last);

		E(sm_region_lock(a, 0));
		sm_buddy_repair(a, 0);
		sm_region_unlock(a, 0);
		assert_int_equal(check_node(a, 0, NULL), 0);
		assert_int_equal(r->nr_free_pages, r->nr_nr_pages - held_pages);

		/* the held blocks are intact ... */
		for (unsigned i = 0; i < nheld; i++) {
			assert_int_equal(a->pages[held[i]].pg_state, PG_BLOCK);
			for (uint32_t t = 1; t < 1u << a->pages[held[i]].pg_order; t++) {
				assert_int_equal(a->pages[held[i] + t].pg_state, PG_TAIL);
				assert_int_equal(a->pages[held[i] + t].pg_next, held[i]);
			}
		}
		/* ... and every other page can be allocated again, once */
		all = calloc(r->nr_nr_pages, sizeof(uint32_t));
		assert_non_null(all);
		while (sm_pages_alloc(a, 0, 0, &h) == 0) {
			assert_true(n < r->nr_nr_pages);
			all[n++] = h;
		}
		assert_int_equal(n, r->nr_nr_pages - held_pages);
		for (uint32_t i = 0; i < n; i++)
			E(sm_pages_free(a, all[i]));
		free(all);
		for (unsigned i = 0; i < nheld; i++)
			E(sm_pages_free(a, held[i]));
		free(held);

		/* repair left properly merged blocks: the node is as formatted again */
		{
			struct snap now;

			snap_take(a, 0, &now);
			snap_assert_equal(&init, &now);
			snap_free(&now);
		}
		assert_clean(a);
	}
	snap_free(&init);
}

/* ---- robust lock ----------------------------------------------------------------------- */

/* Fork a child that takes node 0's region lock, optionally wipes the free lists (as if it
 * died in the middle of an update), and exits holding the lock. */
static void die_holding_lock(struct sm_arena *a, int wipe)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (sm_region_lock(a, 0) != 0)
			_exit(2);
		if (wipe)
			corrupt(a, CORRUPT_AMNESIA);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_robust_lock(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 2);
	struct slab_node_region *r = sm_region(a, 0);
	uint32_t h, h2, node1_free = sm_region(a, 1)->nr_free_pages;
	struct snap s0, s1;

	snap_take(a, 0, &s0);
	alarm(120); /* a lock that stayed held would hang the test: fail it instead */

	/* The child dies holding the lock; nothing was corrupted. */
	die_holding_lock(a, 0);
	E(sm_pages_alloc(a, 0, 2, &h));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages - 4);
	assert_clean(a);
	/* the lock was made consistent: it locks normally again, repeatedly */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(sm_region_lock(a, 0), 0);
		sm_region_unlock(a, 0);
	}

	/* The child wipes the free lists and dies: the next locker rebuilds them from the
	 * page states, keeping the block we hold. */
	die_holding_lock(a, 1);
	E(sm_pages_alloc(a, 0, 0, &h2));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages - 5);
	assert_int_equal(a->pages[h].pg_state, PG_BLOCK);
	assert_int_equal(a->pages[h].pg_order, 2);
	assert_true(h2 < h || h2 >= h + 4);
	assert_clean(a);
	E(sm_pages_free(a, h2));
	E(sm_pages_free(a, h));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	snap_take(a, 0, &s1);
	snap_assert_equal(&s0, &s1);
	snap_free(&s1);
	snap_free(&s0);

	alarm(0);

	/* The other node never noticed. */
	assert_int_equal(sm_region(a, 1)->nr_free_pages, node1_free);
	assert_clean(a);
}

/* ---- the reserve ------------------------------------------------------------------------ */

static unsigned resident_pages(const struct sm_arena *a, uint32_t h, unsigned n)
{
	unsigned char vec[1u << SLAB_RESERVE_ORDER];
	unsigned in = 0;

	assert_true(n <= sizeof(vec));
	E(mincore(a->base + ((uint64_t)h << SLAB_PAGE_SHIFT), (size_t)n << SLAB_PAGE_SHIFT, vec) ? -errno : 0);
	for (unsigned i = 0; i < n; i++)
		in += vec[i] & 1;
	return in;
}

static void test_reserve(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	struct slab_node_region *r = sm_region(a, 0);
	const unsigned rp = 1u << SLAB_RESERVE_ORDER;
	uint32_t blk[2], h, small[3], big, x;
	struct snap s0, s1;
	struct tu_report rep;

	snap_take(a, 0, &s0);
	assert_int_equal(r->nr_reserve_pages, 0);

	/* Stocking: two whole blocks off the free lists, resident, listed in order. */
	assert_int_equal(sm_reserve_stock(a, 0), (int)rp);
	assert_int_equal(sm_reserve_stock(a, 0), (int)rp);
	assert_int_equal(r->nr_reserve_pages, 2 * rp);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages - 2 * rp);
	assert_int_equal(r->nr_reserve[SLAB_RESERVE_ORDER].l_count, 2);
	blk[0] = r->nr_reserve[SLAB_RESERVE_ORDER].l_head;
	blk[1] = a->pages[blk[0]].pg_next;
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(a->pages[blk[i]].pg_state, PG_RESERVE);
		assert_int_equal(a->pages[blk[i]].pg_order, SLAB_RESERVE_ORDER);
		assert_int_equal(blk[i] & (rp - 1), 0);
		assert_int_equal(resident_pages(a, blk[i], rp), rp);
		for (uint32_t t = blk[i] + 1; t < blk[i] + rp; t++)
			assert_int_equal(a->pages[t].pg_next, blk[i]);
	}
	assert_clean(a);

	/* Small allocations come from the first block, up the pages; the free lists do not
	 * move.  An order above SLAB_RESERVE_ORDER comes from the free lists. */
	for (unsigned i = 0; i < 3; i++) {
		small[i] = alloc_checked(a, 0, 0);
		assert_int_equal(small[i], blk[0] + i);
	}
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages - 2 * rp);
	assert_int_equal(r->nr_reserve_pages, 2 * rp - 3);
	h = alloc_checked(a, 0, SLAB_RESERVE_ORDER - 1); /* the rest of block 0's upper half */
	assert_int_equal(h, blk[0] + rp / 2);
	big = alloc_checked(a, 0, SLAB_RESERVE_ORDER + 1);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages - 2 * rp - 2 * rp);
	assert_clean(a);

	/* A block lost from the lists (a slabd that died stocking it) is seen, and listed
	 * again by the rebuild. */
	E(sm_region_lock(a, 0));
	sm_list_del(a->pages, &r->nr_reserve[SLAB_RESERVE_ORDER], blk[1]);
	r->nr_reserve_pages -= rp;
	sm_region_unlock(a, 0);
	assert_int_not_equal(check_node(a, 0, &rep), 0);
	assert_non_null(strstr(rep.all, "reserve pages counted"));
	E(sm_region_lock(a, 0));
	sm_reserve_rebuild(a, 0);
	sm_region_unlock(a, 0);
	assert_clean(a);
	assert_int_equal(r->nr_reserve_pages, 2 * rp - 3 - rp / 2);
	x = 0;
	for (unsigned k = 0; k <= SLAB_RESERVE_ORDER; k++)
		x += r->nr_reserve[k].l_count;
	assert_true(x >= 2);

	/* Everything back and the reserve drained: the very free blocks of the start. */
	E(sm_pages_free(a, big));
	E(sm_pages_free(a, h));
	for (unsigned i = 0; i < 3; i++)
		E(sm_pages_free(a, small[i]));
	/* the freed blocks went to the free lists; the drain gives back what was left */
	assert_int_equal(sm_reserve_drain(a, 0), (int)(2 * rp - 3 - rp / 2));
	assert_int_equal(r->nr_reserve_pages, 0);
	snap_take(a, 0, &s1);
	snap_assert_equal(&s0, &s1);
	assert_clean(a);
	snap_free(&s0);
	snap_free(&s1);

	/* A node with no block of that order left stocks nothing. */
	while (sm_buddy_largest(a, 0) >= (int)SLAB_RESERVE_ORDER)
		(void)alloc_checked(a, 0, SLAB_RESERVE_ORDER);
	assert_int_equal(sm_reserve_stock(a, 0), 0);
	assert_int_equal(r->nr_reserve_pages, 0);
	assert_clean(a);
}

/* sm_reserve_trim: blocks back to the free lists, largest first, until the reserve holds
 * at most `keep`; a keep at or above what it holds changes nothing. */
static void test_reserve_trim(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	struct slab_node_region *r = sm_region(a, 0);
	const unsigned rp = 1u << SLAB_RESERVE_ORDER;
	uint32_t small, free0;
	struct snap s0, s1;

	snap_take(a, 0, &s0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(sm_reserve_stock(a, 0), (int)rp);
	/* one page off the first block: it splits into pieces of orders 0 .. 4 */
	small = alloc_checked(a, 0, 0);
	free0 = r->nr_free_pages;
	assert_int_equal(r->nr_reserve_pages, 4 * rp - 1);

	assert_int_equal(sm_reserve_trim(a, 0, 4 * rp), 0);
	assert_int_equal(sm_reserve_trim(a, 0, 4 * rp - 1), 0);
	assert_int_equal(r->nr_reserve_pages, 4 * rp - 1);
	/* two whole blocks go (127 -> 95 -> 63 <= 64) */
	assert_int_equal(sm_reserve_trim(a, 0, 2 * rp), (int)(2 * rp));
	assert_int_equal(r->nr_reserve_pages, 2 * rp - 1);
	assert_int_equal(r->nr_reserve[SLAB_RESERVE_ORDER].l_count, 1);
	assert_int_equal(r->nr_free_pages, free0 + 2 * rp);
	assert_clean(a);
	/* the last whole block, then the order-4 piece (63 -> 31 -> 15 <= 16) */
	assert_int_equal(sm_reserve_trim(a, 0, rp / 2), (int)(rp + rp / 2));
	assert_int_equal(r->nr_reserve_pages, rp / 2 - 1);
	assert_int_equal(r->nr_reserve[SLAB_RESERVE_ORDER].l_count, 0);
	assert_int_equal(r->nr_reserve[SLAB_RESERVE_ORDER - 1].l_count, 0);
	assert_clean(a);
	/* all of it; with the page back, the free lists are those of the start (merged) */
	assert_int_equal(sm_reserve_trim(a, 0, 0), (int)(rp / 2 - 1));
	assert_int_equal(r->nr_reserve_pages, 0);
	E(sm_pages_free(a, small));
	snap_take(a, 0, &s1);
	snap_assert_equal(&s0, &s1);
	assert_clean(a);
	snap_free(&s0);
	snap_free(&s1);
}

/* sm_pages_populate: fresh pages end up resident and zero, pages somebody wrote keep
 * every byte (fallocate only fills holes), both with the arena's fd and without. */
static void test_populate(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	const unsigned rp = 1u << SLAB_RESERVE_ORDER;
	uint32_t h = alloc_checked(a, 0, SLAB_RESERVE_ORDER);
	uint32_t w = alloc_checked(a, 0, SLAB_RESERVE_ORDER);
	uint8_t *fresh = a->base + ((uint64_t)h << SLAB_PAGE_SHIFT);
	uint8_t *used = a->base + ((uint64_t)w << SLAB_PAGE_SHIFT);
	size_t len = (size_t)rp << SLAB_PAGE_SHIFT;
	int fd = a->fd;

	assert_true(fd >= 0); /* a memfd arena: the fallocate path */
	assert_int_equal(resident_pages(a, h, rp), 0);
	for (size_t i = 0; i < len; i += 61)
		used[i] = (uint8_t)(i * 7 + 1);
	E(sm_pages_populate(a, h, rp));
	E(sm_pages_populate(a, w, rp));
	assert_int_equal(resident_pages(a, h, rp), rp);
	for (size_t i = 0; i < len; i++)
		if (fresh[i])
			fail_msg("byte %zu of a fresh block reads %u after populate", i, fresh[i]);
	for (size_t i = 0; i < len; i += 61)
		assert_int_equal(used[i], (uint8_t)(i * 7 + 1));
	/* sm_pages_map and the fd-less path (MADV_POPULATE_WRITE) keep them too */
	E(sm_pages_map(a, w, rp));
	a->fd = -1;
	E(sm_pages_populate(a, w, rp));
	a->fd = fd;
	for (size_t i = 0; i < len; i += 61)
		assert_int_equal(used[i], (uint8_t)(i * 7 + 1));
	E(sm_pages_free(a, h));
	E(sm_pages_free(a, w));
	assert_clean(a);
}

/* The stocker's hand-over (daemon/stocker.h): a block taken with sm_reserve_take is off
 * every list (validate counts it missing, B4) until sm_reserve_put lists it; a repair in
 * between lists it itself, and the put then changes nothing, even after the block was
 * handed out. */
static void test_reserve_handover(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	struct slab_node_region *r = sm_region(a, 0);
	const unsigned rp = 1u << SLAB_RESERVE_ORDER;
	struct tu_report rep;
	struct snap s0;
	uint32_t h, h2, x;

	snap_take(a, 0, &s0);
	assert_int_equal(sm_reserve_take(a, 0, &h), 1);
	assert_int_equal(a->pages[h].pg_state, PG_RESERVE);
	assert_int_equal(a->pages[h].pg_next, SLAB_NIL);
	assert_int_equal(a->pages[h].pg_prev, SLAB_NIL);
	assert_int_equal(r->nr_reserve_pages, 0);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages - rp);
	assert_int_not_equal(check_node(a, 0, &rep), 0);
	assert_non_null(strstr(rep.all, "reserve pages counted"));
	sm_reserve_fault(a, h, rp);
	assert_int_equal(resident_pages(a, h, rp), rp);
	assert_int_equal(sm_reserve_put(a, 0, h), (int)rp);
	assert_int_equal(r->nr_reserve_pages, rp);
	assert_clean(a);
	/* a second put of the same block: listed already, nothing changes */
	assert_int_equal(sm_reserve_put(a, 0, h), 0);
	assert_int_equal(r->nr_reserve_pages, rp);
	assert_int_equal(r->nr_reserve[SLAB_RESERVE_ORDER].l_count, 1);
	assert_clean(a);

	/* A repair between take and put lists the block; the late put leaves it alone. */
	assert_int_equal(sm_reserve_take(a, 0, &h2), 1);
	E(sm_region_lock(a, 0));
	sm_buddy_repair(a, 0);
	sm_region_unlock(a, 0);
	assert_clean(a);
	assert_int_equal(r->nr_reserve_pages, 2 * rp);
	/* ... and hands it out: the late put must not list a block in use */
	E(sm_reserve_drain(a, 0) == (int)(2 * rp) ? 0 : -EINVAL);
	x = alloc_checked(a, 0, SLAB_RESERVE_ORDER);
	(void)x;
	assert_int_equal(sm_reserve_put(a, 0, h2), 0);
	assert_int_equal(r->nr_reserve_pages, 0);
	assert_clean(a);
	E(sm_pages_free(a, x));
	assert_clean(a);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages);

	/* sm_reserve_return: a taken block back to the free lists; a second return, or one
	 * after a repair listed it, changes nothing. */
	assert_int_equal(sm_reserve_take(a, 0, &h), 1);
	assert_int_equal(sm_reserve_return(a, 0, h), 1);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages);
	assert_clean(a);
	assert_int_equal(sm_reserve_return(a, 0, h), 0);
	assert_int_equal(sm_reserve_take(a, 0, &h), 1);
	E(sm_region_lock(a, 0));
	sm_buddy_repair(a, 0);
	sm_region_unlock(a, 0);
	assert_int_equal(sm_reserve_return(a, 0, h), 0);
	assert_int_equal(r->nr_reserve_pages, rp);
	assert_clean(a);
	snap_free(&s0);
}

/* The reserve is free memory to the allocator too: with no free block large enough, an
 * allocation takes the reserve back to the free lists, merged, and is served. */
static void test_reserve_fallback(void **state)
{
	struct sm_arena *a = new_arena(state, 16 << 20, 1);
	struct slab_node_region *r = sm_region(a, 0);
	const unsigned rp = 1u << SLAB_RESERVE_ORDER;
	uint32_t held[1024], b = SLAB_NIL, bsize = 0, h;
	unsigned n = 0, bi = 0;
	struct snap s0;

	snap_take(a, 0, &s0);
	/* the node full, then one block above the reserve's order free again, and all of
	 * it stocked: the reserve is the only free memory, in blocks too small to serve */
	for (int k = SLAB_MAX_ORDER; k >= 0; k--)
		while (n < 1024 && sm_pages_alloc(a, 0, (unsigned)k, &held[n]) == 0)
			n++;
	assert_true(n < 1024);
	assert_int_equal(r->nr_free_pages, 0);
	for (unsigned i = 0; i < n && b == SLAB_NIL; i++)
		if (a->pages[held[i]].pg_order > SLAB_RESERVE_ORDER)
			b = held[bi = i];
	assert_int_not_equal(b, SLAB_NIL);
	bsize = 1u << a->pages[b].pg_order;
	E(sm_pages_free(a, b));
	held[bi] = held[--n];
	while (sm_reserve_stock(a, 0) > 0)
		;
	assert_int_equal(r->nr_free_pages, 0);
	assert_true(r->nr_reserve_pages >= 2 * rp);
	E(sm_pages_alloc(a, 0, SLAB_RESERVE_ORDER + 1, &h));
	assert_int_equal(h & ~((2u * rp) - 1), h);
	assert_true(h >= b && h + 2 * rp <= b + bsize); /* from that block, merged again */
	assert_int_equal(r->nr_reserve_pages, 0);
	assert_clean(a);
	E(sm_pages_free(a, h));
	while (n)
		E(sm_pages_free(a, held[--n]));
	assert_clean(a);
	assert_int_equal(r->nr_free_pages, s0.nr_free_pages);
	snap_free(&s0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_split_and_merge, teardown_arena),
		cmocka_unit_test_teardown(test_exhaustion, teardown_arena),
		cmocka_unit_test_teardown(test_bad_requests, teardown_arena),
		cmocka_unit_test_teardown(test_bad_descriptors, teardown_arena),
		cmocka_unit_test_teardown(test_region_edges, teardown_arena),
		cmocka_unit_test_teardown(test_model, teardown_arena),
		cmocka_unit_test_teardown(test_repair, teardown_arena),
		cmocka_unit_test_teardown(test_robust_lock, teardown_arena),
		cmocka_unit_test_teardown(test_reserve, teardown_arena),
		cmocka_unit_test_teardown(test_reserve_trim, teardown_arena),
		cmocka_unit_test_teardown(test_populate, teardown_arena),
		cmocka_unit_test_teardown(test_reserve_handover, teardown_arena),
		cmocka_unit_test_teardown(test_reserve_fallback, teardown_arena),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
