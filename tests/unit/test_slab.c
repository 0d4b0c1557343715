/* test_slab.c - guards the slab engine above the page allocator: objects in slabs and the
 * cache node lists (shm/slab.c), magazines and shared arrays (shm/magazine.c), the cache
 * table (shm/cache.c) and validate/repair (shm/validate.c).
 *
 * What must never regress:
 *   - a wrong free (an offset beyond the arena, in the metadata, on a free page, inside an
 *     object, in a slab's bufctl, an object of another cache, the freshest double free on
 *     the fast path, a double free that reaches its slab) is refused with -EINVAL (or
 *     counted as refused by free_block), counted as invalid_free / double_free, and changes
 *     no other byte of the magazine, the page descriptors or the node (cache_from_obj,
 *     slab_put_obj);
 *   - free_block's four outcomes: stays partial; full becomes partial; empty and kept
 *     (below min_partial, or within free_limit); empty beyond both: onto the discard queue,
 *     from which reap gives its pages back to the page allocator;
 *   - refill moves batchcount objects per slow path (less only when the node runs dry, and
 *     only a dry node asks for a slab grant), flush moves batchcount of the oldest objects
 *     to the shared array up to its limit and the rest to the slabs, active_objs stays
 *     exact, and drain + shrink + shutdown give every page back;
 *   - cache lifecycle: bad names, sizes, alignments are -EINVAL and take no slot; the same
 *     name with the same geometry opens the cache, another geometry is -EEXIST; shutdown
 *     with an object out is -EBUSY with the count and leaves the cache working; names and
 *     slots are reused; a full table is -ENOSPC;
 *   - the slab tier's batched paths change nothing but speed: on random batches (runs,
 *     shuffles, slabs coming back, double and invalid frees mixed in, two nodes, both
 *     bufctl widths, multi-page slabs, SLAB_DEBUG) sm_do_free_block leaves every page
 *     descriptor, bufctl byte, list (in order) and counter as a one-object-at-a-time
 *     reference free_block does; an empty slab hands out objects 0, 1, 2, ... and chains
 *     the rest in order, and a corrupt chain stops alloc and parks its slab on the full
 *     list;
 *   - a magazine's self slots (layout.h) point at the magazine, the entry SLAB_MAG_AHEAD
 *     pops ahead is the one libslab prefetches, and the sentinel refuses no valid free;
 *   - sm_validate is not blind: each injected corruption is reported with the right words,
 *     and sm_node_repair rebuilds the node from the slabs' bufctl so it validates clean.
 *
 * Repair after a lock holder died is exercised across processes in test_multiproc.c.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "buddy.h"
#include "cache.h"
#include "client.h"
#include "list.h"
#include "magazine.h"
#include "slabs.h"
#include "validate.h"

#define ARENA_SIZE (32u << 20)
#define MAX_MAGS   4

/* ---- fixture ------------------------------------------------------------------------- */

struct fx {
	struct sm_arena  a;
	struct sm_arena  b;                /* a twin, for tests that compare two arenas */
	struct slab_mag *mags[MAX_MAGS];   /* reported to validate as holders */
	unsigned         nr_mags;
	unsigned         grows;            /* grow hook calls that added slabs */
	uint64_t        *objs;             /* objects the test holds (freed by teardown) */
	struct slab_mag *shm_mag;          /* mag_new_shared's (in mags[] too), unmapped */
	size_t           shm_mag_len;
};

/* The slab grant a daemon-less test does itself: sm_cache_grow, 0 once a slab was added. */
static int grow(struct sm_arena *a, uint32_t id, unsigned node, unsigned nr, void *arg)
{
	struct fx *f = arg;
	int rc = sm_cache_grow(a, id, node, nr);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return -ENOMEM;
	f->grows++;
	return 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	*state = f;
	tu_arena(&f->a, ARENA_SIZE, 1);
	f->a.grow = grow;
	f->a.grow_arg = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	for (unsigned i = 0; i < f->nr_mags; i++)
		if (f->mags[i] != f->shm_mag)
			free(f->mags[i]);
	if (f->shm_mag)
		munmap(f->shm_mag, f->shm_mag_len);
	free(f->objs);
	sm_arena_detach(&f->a);
	sm_arena_detach(&f->b);
	free(f);
	return 0;
}

static uint64_t *hold(struct fx *f, size_t n)
{
	assert_null(f->objs);
	f->objs = calloc(n, sizeof(uint64_t));
	assert_non_null(f->objs);
	return f->objs;
}

/* ---- helpers ------------------------------------------------------------------------- */

static struct sm_cache_params params(const char *name, size_t size)
{
	struct sm_cache_params p = { .name = name, .size = size, .node = -1 };

	return p;
}

static struct slab_cache_desc *cache_new(struct fx *f, const struct sm_cache_params *p)
{
	uint32_t id = SLAB_NIL;
	bool existed = true;

	E(sm_cache_create(&f->a, p, &id, &existed));
	assert_false(existed);
	assert_true(id < f->a.hdr->ah_nr_caches);
	assert_int_equal(sm_cache(&f->a, id)->c_state, CACHE_LIVE);
	return sm_cache(&f->a, id);
}

static struct slab_mag *mag_new(struct fx *f, const struct slab_cache_desc *c, unsigned cap)
{
	struct slab_mag *m;

	assert_true(f->nr_mags < MAX_MAGS);
	m = calloc(1, sm_mag_bytes(cap));
	assert_non_null(m);
	sm_mag_init(&f->a, m, c, cap);
	f->mags[f->nr_mags++] = m;
	return m;
}

/* A magazine a forked child's steps update for the parent too (MAP_SHARED); one a test. */
static struct slab_mag *mag_new_shared(struct fx *f, const struct slab_cache_desc *c,
				       unsigned cap)
{
	struct slab_mag *m;

	assert_null(f->shm_mag);
	assert_true(f->nr_mags < MAX_MAGS);
	f->shm_mag_len = sm_mag_bytes(cap);
	m = mmap(NULL, f->shm_mag_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	f->shm_mag = m;
	sm_mag_init(&f->a, m, c, cap);
	f->mags[f->nr_mags++] = m;
	return m;
}

/* Tell validate about the objects our magazines hold (a live magazine of a cache still
 * bound to the same incarnation of its slot). */
static void mag_holders(void *arg, uint32_t cache_id,
			void (*add)(void *ctx, uint64_t off, const char *where), void *ctx)
{
	struct fx *f = arg;
	const struct slab_cache_desc *c = sm_cache(&f->a, cache_id);

	for (unsigned i = 0; i < f->nr_mags; i++) {
		const struct slab_mag *m = f->mags[i];

		if (m->m_state != MAG_LIVE || m->m_cache != cache_id ||
		    m->m_cache_serial != c->c_serial)
			continue;
		for (unsigned k = 0; k < m->m_avail; k++)
			add(ctx, sm_mag_entries(m)[k], "test magazine");
	}
}

static unsigned run_validate(struct fx *f, struct tu_report *r)
{
	unsigned bad;

	memset(r, 0, sizeof(*r));
	bad = sm_validate(&f->a, mag_holders, NULL, f, tu_report, r);
	if (bad != r->count)
		fail_msg("sm_validate returned %u but reported %u lines:\n%s", bad, r->count,
			 r->all);
	return bad;
}

#define assert_clean(f) assert_clean_at((f), __LINE__)
static void assert_clean_at(struct fx *f, int line)
{
	struct tu_report r;
	unsigned bad = run_validate(f, &r);

	if (bad)
		fail_msg("line %d: sm_validate found %u problem(s):\n%s", line, bad, r.all);
}

/* Validate must find something, and say `want` (or `alt`, when not NULL) about it. */
#define assert_reported(f, want, alt) assert_reported_at((f), (want), (alt), __LINE__)
static void assert_reported_at(struct fx *f, const char *want, const char *alt, int line)
{
	struct tu_report r;
	unsigned bad = run_validate(f, &r);

	if (!bad)
		fail_msg("line %d: sm_validate found nothing (wanted \"%s\")", line, want);
	if (!tu_report_has(&r, want) && !(alt && tu_report_has(&r, alt)))
		fail_msg("line %d: sm_validate found %u problem(s) but none says \"%s\"%s%s:\n%s",
			 line, bad, want, alt ? " or " : "", alt ? alt : "", r.all);
}

/* A cache node's lists and counters, read under its lock. */
struct nsnap {
	uint32_t partial, full, nfree, discard;
	uint64_t free_objects;
	uint32_t shared;
};

static struct nsnap node_snap(struct fx *f, struct slab_cache_desc *c)
{
	struct slab_cache_node *cn = &c->c_nodes[0];
	struct nsnap s;

	E(sm_node_lock(&f->a, c, 0));
	s.partial = cn->n_partial.l_count;
	s.full = cn->n_full.l_count;
	s.nfree = cn->n_free.l_count;
	s.discard = cn->n_discard.l_count;
	s.free_objects = cn->n_free_objects;
	s.shared = cn->n_shared_avail;
	sm_node_unlock(c, 0);
	return s;
}

static int snap_eq(const struct nsnap *x, const struct nsnap *y)
{
	return x->partial == y->partial && x->full == y->full && x->nfree == y->nfree &&
	       x->discard == y->discard && x->free_objects == y->free_objects &&
	       x->shared == y->shared;
}

#define assert_node(f, c, p, fu, fr, d, fo) \
	assert_node_at((f), (c), (p), (fu), (fr), (d), (fo), __LINE__)
static void assert_node_at(struct fx *f, struct slab_cache_desc *c, uint32_t partial,
			   uint32_t full, uint32_t nfree, uint32_t discard, uint64_t free_objects,
			   int line)
{
	struct nsnap s = node_snap(f, c);

	if (s.partial != partial || s.full != full || s.nfree != nfree ||
	    s.discard != discard || s.free_objects != free_objects)
		fail_msg("line %d: cache %s node 0: partial %u full %u free %u discard %u "
			 "free_objects %llu; expected %u %u %u %u %llu", line, c->c_name,
			 s.partial, s.full, s.nfree, s.discard,
			 (unsigned long long)s.free_objects, partial, full, nfree, discard,
			 (unsigned long long)free_objects);
}

/* sm_do_alloc_objs / sm_do_free_block on node 0 under its lock. */
static unsigned alloc_objs(struct fx *f, struct slab_cache_desc *c, uint64_t *dst,
			   unsigned want)
{
	unsigned got;

	E(sm_node_lock(&f->a, c, 0));
	got = sm_do_alloc_objs(&f->a, c, 0, dst, want);
	sm_node_unlock(c, 0);
	return got;
}

static unsigned free_block(struct fx *f, struct slab_cache_desc *c, const uint64_t *objs,
			   unsigned n)
{
	unsigned refused;

	E(sm_node_lock(&f->a, c, 0));
	refused = sm_do_free_block(&f->a, c, 0, objs, n);
	sm_node_unlock(c, 0);
	return refused;
}

static void node_repair(struct fx *f, struct slab_cache_desc *c)
{
	E(sm_node_lock(&f->a, c, 0));
	sm_node_repair(&f->a, c, 0);
	sm_node_unlock(c, 0);
}

/* The slab head of an object of c (which must be one). */
static uint32_t head_of(struct fx *f, const struct slab_cache_desc *c, uint64_t off,
			uint32_t *idx)
{
	uint32_t head = SLAB_NIL, i = SLAB_NIL;

	assert_int_equal(sm_obj_lookup(&f->a, c, off, &head, &i), OBJ_OK);
	if (idx)
		*idx = i;
	return head;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static void assert_distinct(const uint64_t *objs, size_t n)
{
	uint64_t *s = malloc(n * sizeof(*s));

	assert_non_null(s);
	memcpy(s, objs, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u64);
	for (size_t i = 1; i < n; i++)
		if (s[i] == s[i - 1]) {
			uint64_t dup = s[i];
			free(s);
			fail_msg("object %#llx handed out twice", (unsigned long long)dup);
		}
	free(s);
}

/* A wrong free on the fast path: -EINVAL, m_stat[stat] + 1, and no other byte of the
 * magazine (entries, avail, counters) nor of the cache node changes. */
static void expect_fast_refusal(struct fx *f, struct slab_cache_desc *c, struct slab_mag *m,
				uint64_t off, int stat, const char *what)
{
	size_t bytes = sm_mag_bytes(m->m_capacity);
	struct slab_mag *before = malloc(bytes);
	struct nsnap n0 = node_snap(f, c), n1;
	int rc, same;

	assert_non_null(before);
	memcpy(before, m, bytes);
	rc = sm_free(&f->a, c, m, 0, off);
	before->m_stat[stat]++;
	same = memcmp(before, m, bytes) == 0;
	free(before);
	n1 = node_snap(f, c);
	if (rc != -EINVAL)
		fail_msg("sm_free(%s, %#llx) returned %d, expected -EINVAL", what,
			 (unsigned long long)off, rc);
	if (!same)
		fail_msg("sm_free(%s) refused but changed the magazine (or the wrong counter)",
			 what);
	if (!snap_eq(&n0, &n1))
		fail_msg("sm_free(%s) refused but changed the cache node", what);
}

/* A wrong free reaching free_block: refused (returns 1), c_stat[stat] + 1, and no page
 * descriptor, node counter or (for an object of c) bufctl entry changes. */
static void expect_block_refusal(struct fx *f, struct slab_cache_desc *c, uint64_t off,
				 int stat, const char *what)
{
	struct sm_arena *a = &f->a;
	size_t pbytes = (size_t)a->hdr->ah_nr_pages * sizeof(struct slab_page);
	struct slab_page *pages = malloc(pbytes);
	uint64_t stats[SLAB_STAT_NR];
	uint8_t bufctl[2 * SLAB_MAX_OBJS];
	size_t blen = (size_t)c->c_num * c->c_bufctl_width;
	uint8_t *slab = NULL;
	struct nsnap n0 = node_snap(f, c), n1;
	uint32_t head, idx;
	unsigned refused;
	int same_pages, same_bufctl = 1;

	assert_non_null(pages);
	memcpy(pages, a->pages, pbytes);
	memcpy(stats, c->c_stat, sizeof(stats));
	stats[stat]++;
	if (sm_obj_lookup(a, c, off, &head, &idx) == OBJ_OK) {
		slab = sm_slab_addr(a, head) + c->c_bufctl_off;
		memcpy(bufctl, slab, blen);
	}
	refused = free_block(f, c, &off, 1);
	same_pages = memcmp(pages, a->pages, pbytes) == 0;
	free(pages);
	if (slab)
		same_bufctl = memcmp(bufctl, slab, blen) == 0;
	n1 = node_snap(f, c);
	if (refused != 1)
		fail_msg("free_block(%s, %#llx) refused %u, expected 1", what,
			 (unsigned long long)off, refused);
	if (memcmp(stats, c->c_stat, sizeof(stats)))
		fail_msg("free_block(%s): c_stat[%d] did not grow by exactly 1 (or another did)",
			 what, stat);
	if (!same_pages || !same_bufctl || !snap_eq(&n0, &n1))
		fail_msg("free_block(%s) refused but changed %s", what,
			 !same_pages ? "page descriptors" : !same_bufctl ? "the bufctl" :
			 "the cache node");
}

/* ---- 1. free-path validation ---------------------------------------------------------- */

#define FV_OBJS 10

static void test_free_validation(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params pa = params("free-a", 64), pb = params("free-b", 128);
	struct slab_cache_desc *ca = cache_new(f, &pa), *cb = cache_new(f, &pb);
	struct slab_mag *ma = mag_new(f, ca, ca->c_limit), *mb = mag_new(f, cb, cb->c_limit);
	const struct slab_node_region *r = sm_region(a, 0);
	uint32_t last = r->nr_first_page + r->nr_nr_pages - 1, head, empty;
	uint64_t objs[FV_OBJS], bobj, before, x;
	unsigned avail;
	int rc;

	for (unsigned i = 0; i < FV_OBJS; i++)
		E(sm_alloc(a, ca, ma, 0, &objs[i]));
	E(sm_alloc(a, cb, mb, 0, &bobj));
	assert_distinct(objs, FV_OBJS);
	assert_true(ma->m_avail > 0);	/* refusals below must leave these entries alone */
	head = head_of(f, ca, objs[0], NULL);
	/* A page still in the page allocator (the end of the region is usually one). */
	while (last > r->nr_first_page && a->pages[last].pg_tag)
		last--;
	assert_int_equal(a->pages[last].pg_tag, 0);
	assert_true(a->pages[last].pg_state == PG_FREE || a->pages[last].pg_state == PG_TAIL);
	assert_clean(f);

	const struct {
		uint64_t         off;
		enum sm_obj_err  why;
		const char      *what;
	} wrong[] = {
		{ a->size, OBJ_FOREIGN, "first byte past the arena" },
		{ a->size + SLAB_PAGE_SIZE, OBJ_FOREIGN, "a page past the arena" },
		{ UINT64_MAX, OBJ_FOREIGN, "~0" },
		{ 0, OBJ_NOT_SLAB, "page 0 (the header)" },
		{ a->hdr->ah_caches_off + 64, OBJ_NOT_SLAB, "the cache table" },
		{ a->hdr->ah_pages_off, OBJ_NOT_SLAB, "the page descriptors" },
		{ ((uint64_t)a->hdr->ah_meta_pages << SLAB_PAGE_SHIFT) - 8, OBJ_NOT_SLAB,
		  "the last metadata word" },
		{ (uint64_t)last << SLAB_PAGE_SHIFT, OBJ_NOT_SLAB, "a free buddy page" },
		{ objs[0] + 8, OBJ_MISALIGNED, "the middle of an object" },
		{ objs[1] + ca->c_size - 1, OBJ_MISALIGNED, "the last byte of an object" },
		{ ((uint64_t)head << SLAB_PAGE_SHIFT) + (uint64_t)ca->c_num * ca->c_size,
		  OBJ_MISALIGNED, "the slab's bufctl (index c_num)" },
		{ bobj, OBJ_WRONG_CACHE, "an object of cache B" },
	};

	/* cache_from_obj on the fast path, then the same offsets straight to free_block. */
	for (unsigned i = 0; i < SM_ARRAY_SIZE(wrong); i++) {
		uint32_t h, ix;

		assert_int_equal(sm_obj_lookup(a, ca, wrong[i].off, &h, &ix), wrong[i].why);
		expect_fast_refusal(f, ca, ma, wrong[i].off, STAT_INVALID_FREE, wrong[i].what);
		assert_int_equal(ma->m_stat[STAT_INVALID_FREE], i + 1);
		expect_block_refusal(f, ca, wrong[i].off, STAT_INVALID_FREE, wrong[i].what);
	}
	assert_int_equal(ma->m_stat[STAT_DOUBLE_FREE], 0);
	assert_int_equal(mb->m_stat[STAT_INVALID_FREE], 0);
	assert_clean(f);

	/* The freshest double free: the object is on top of the magazine. */
	avail = ma->m_avail;
	E(sm_free(a, ca, ma, 0, objs[2]));
	assert_int_equal(ma->m_avail, avail + 1);
	expect_fast_refusal(f, ca, ma, objs[2], STAT_DOUBLE_FREE, "objs[2] again");
	assert_int_equal(ma->m_stat[STAT_DOUBLE_FREE], 1);
	assert_int_equal(ma->m_avail, avail + 1);
	assert_clean(f);

	/* A double free that reaches its slab: free, drain to the slabs, free again there. */
	x = objs[4];
	E(sm_free(a, ca, ma, 0, x));
	sm_mag_drain(a, ca, ma, 0);
	assert_int_equal(ma->m_avail, 0);
	assert_int_equal(ma->m_stat[STAT_DOUBLE_FREE], 0);	/* folded into the cache */
	assert_int_equal(ca->c_stat[STAT_DOUBLE_FREE], 1);
	assert_int_equal(ca->c_stat[STAT_INVALID_FREE], 2 * SM_ARRAY_SIZE(wrong));
	assert_int_equal(node_snap(f, ca).shared, 0);		/* use_shared 0: all to slabs */
	assert_clean(f);
	before = ca->c_stat[STAT_DOUBLE_FREE];
	expect_block_refusal(f, ca, x, STAT_DOUBLE_FREE, "objs[4] again, at its slab");
	assert_int_equal(ca->c_stat[STAT_DOUBLE_FREE], before + 1);
	assert_clean(f);

	/* An object of an empty slab (on the free list) is free by definition. */
	assert_int_equal(sm_cache_grow(a, ca->c_id, 0, 1), 1);
	E(sm_node_lock(a, ca, 0));
	empty = ca->c_nodes[0].n_free.l_head;
	sm_node_unlock(ca, 0);
	assert_int_not_equal(empty, SLAB_NIL);
	expect_block_refusal(f, ca, (uint64_t)empty << SLAB_PAGE_SHIFT, STAT_DOUBLE_FREE,
			     "object 0 of an empty slab");
	expect_block_refusal(f, ca, ((uint64_t)empty << SLAB_PAGE_SHIFT) +
			     (uint64_t)(ca->c_num - 1) * ca->c_size, STAT_DOUBLE_FREE,
			     "the last object of an empty slab");
	assert_clean(f);

	/* Nothing was lost on the way: give everything back and both caches shut down. */
	for (unsigned i = 0; i < FV_OBJS; i++)
		if (i != 2 && i != 4)
			E(sm_free(a, ca, ma, 0, objs[i]));
	E(sm_free(a, cb, mb, 0, bobj));
	sm_mag_drain(a, ca, ma, 1);
	sm_mag_drain(a, cb, mb, 1);
	assert_clean(f);
	E(sm_cache_shutdown(a, ca->c_id, &before));
	assert_int_equal(before, 0);
	rc = sm_cache_shutdown(a, cb->c_id, &before);
	assert_int_equal(rc, 0);
	assert_int_equal(before, 0);
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_clean(f);
}

/* The same checks on a slab of several pages: an object in a tail page is found through
 * its head (virt_to_head_page), and misaligned offsets there are refused. */
static void test_free_validation_multipage(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("multi", 512);
	struct slab_cache_desc *c = cache_new(f, &p);
	struct slab_mag *m = mag_new(f, c, c->c_limit);
	uint64_t *objs, tail_obj = 0, live = 1;
	uint32_t head, idx, last_page;
	unsigned n;

	assert_true(c->c_order >= 1);
	n = c->c_num;
	objs = hold(f, n);
	for (unsigned i = 0; i < n; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	assert_distinct(objs, n);
	for (unsigned i = 0; i < n; i++) {
		head = head_of(f, c, objs[i], &idx);
		assert_int_equal(objs[i], ((uint64_t)head << SLAB_PAGE_SHIFT) +
					  (uint64_t)idx * c->c_size);
		if (!tail_obj && objs[i] >> SLAB_PAGE_SHIFT != head) {
			assert_int_equal(a->pages[objs[i] >> SLAB_PAGE_SHIFT].pg_state, PG_TAIL);
			tail_obj = objs[i];
		}
	}
	assert_true(tail_obj != 0);
	head = head_of(f, c, tail_obj, NULL);
	last_page = head + (1u << c->c_order) - 1;
	assert_clean(f);

	expect_fast_refusal(f, c, m, tail_obj + 8, STAT_INVALID_FREE, "inside a tail object");
	expect_block_refusal(f, c, tail_obj + 8, STAT_INVALID_FREE, "inside a tail object");
	expect_fast_refusal(f, c, m, ((uint64_t)(last_page + 1) << SLAB_PAGE_SHIFT) - 8,
			    STAT_INVALID_FREE, "the last word of the slab");
	expect_fast_refusal(f, c, m, ((uint64_t)head << SLAB_PAGE_SHIFT) + c->c_bufctl_off,
			    STAT_INVALID_FREE, "the bufctl in a tail page");
	expect_block_refusal(f, c, ((uint64_t)head << SLAB_PAGE_SHIFT) + c->c_bufctl_off,
			     STAT_INVALID_FREE, "the bufctl in a tail page");
	assert_clean(f);

	/* The tail object frees normally; then everything goes back and the cache ends. */
	for (unsigned i = 0; i < n; i++)
		E(sm_free(a, c, m, 0, objs[i]));
	sm_mag_drain(a, c, m, 1);
	assert_clean(f);
	E(sm_cache_shutdown(a, c->c_id, &live));
	assert_int_equal(live, 0);
	assert_int_equal(sm_region(a, 0)->nr_free_pages, sm_region(a, 0)->nr_nr_pages);
	assert_clean(f);
}

/* ---- 2. free_block's four outcomes ---------------------------------------------------- */

static void test_free_block_outcomes(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("outcomes", 64);
	struct slab_cache_desc *c;
	struct slab_cache_node *cn;
	const struct slab_node_region *r = sm_region(a, 0);
	uint32_t num, heads[3], free0, before_pages;
	uint64_t *objs, extra, limit, before_stat;

	p.min_partial = 1;
	c = cache_new(f, &p);
	cn = &c->c_nodes[0];
	num = c->c_num;
	assert_int_equal(c->c_min_partial, 1);
	assert_true(num >= 3);
	objs = hold(f, 3 * (size_t)num);
	free0 = r->nr_free_pages;

	assert_int_equal(sm_cache_grow(a, c->c_id, 0, 3), 3);
	assert_int_equal(c->c_stat[STAT_ALLOC_SLAB], 3);
	assert_int_equal(r->nr_free_pages, free0 - (3u << c->c_order));
	assert_node(f, c, 0, 0, 3, 0, 3 * num);

	/* Take every object: slab after slab, each one full before the next is touched. */
	assert_int_equal(alloc_objs(f, c, objs, 3 * num), 3 * num);
	assert_int_equal(alloc_objs(f, c, &extra, 1), 0);	/* dry: no grant from here */
	assert_distinct(objs, 3 * (size_t)num);
	for (unsigned s = 0; s < 3; s++) {
		heads[s] = head_of(f, c, objs[s * num], NULL);
		for (unsigned k = 0; k < num; k++) {
			uint32_t idx;

			assert_int_equal(head_of(f, c, objs[s * num + k], &idx), heads[s]);
			assert_int_equal(idx, k);	/* a fresh slab hands out 0, 1, 2, ... */
		}
		assert_int_equal(a->pages[heads[s]].pg_state, PG_SLAB_FULL);
		assert_int_equal(a->pages[heads[s]].pg_inuse, num);
	}
	assert_node(f, c, 0, 3, 0, 0, 0);
	assert_clean(f);

	/* (b) full becomes partial. */
	assert_int_equal(free_block(f, c, &objs[0], 1), 0);
	assert_node(f, c, 1, 2, 0, 0, 1);
	assert_int_equal(a->pages[heads[0]].pg_state, PG_SLAB_PARTIAL);
	assert_int_equal(a->pages[heads[0]].pg_inuse, num - 1);
	assert_int_equal(a->pages[heads[0]].pg_free, 0);	/* slab_put_obj: LIFO */
	assert_clean(f);

	/* (a) a partial slab stays partial. */
	assert_int_equal(free_block(f, c, &objs[1], 1), 0);
	assert_node(f, c, 1, 2, 0, 0, 2);
	assert_int_equal(a->pages[heads[0]].pg_state, PG_SLAB_PARTIAL);
	assert_int_equal(a->pages[heads[0]].pg_free, 1);
	assert_clean(f);

	/* (c) empty and kept below min_partial, even beyond free_limit. */
	E(sm_node_lock(a, c, 0));
	limit = cn->n_free_limit;
	cn->n_free_limit = 0;
	sm_node_unlock(c, 0);
	assert_int_equal(free_block(f, c, &objs[2], num - 2), 0);
	assert_node(f, c, 0, 2, 1, 0, num);
	assert_int_equal(a->pages[heads[0]].pg_state, PG_SLAB_FREE);
	assert_int_equal(a->pages[heads[0]].pg_inuse, 0);
	assert_clean(f);

	/* (d) empty with min_partial kept and free_objects beyond free_limit: discarded, then
	 * reaped back to the page allocator. */
	assert_int_equal(free_block(f, c, &objs[num], num), 0);
	assert_node(f, c, 0, 1, 1, 1, num);	/* discard-queue slabs hold no free_objects */
	assert_int_equal(a->pages[heads[1]].pg_state, PG_SLAB_DISCARD);
	assert_clean(f);
	before_stat = c->c_stat[STAT_FREE_SLAB];
	before_pages = r->nr_free_pages;
	assert_int_equal(sm_cache_reap(a, c->c_id), 1);
	assert_node(f, c, 0, 1, 1, 0, num);
	assert_int_equal(c->c_stat[STAT_FREE_SLAB], before_stat + 1);
	assert_int_equal(r->nr_free_pages, before_pages + (1u << c->c_order));
	assert_int_equal(a->pages[heads[1]].pg_tag, 0);
	assert_true(a->pages[heads[1]].pg_state == PG_FREE ||
		    a->pages[heads[1]].pg_state == PG_TAIL);
	assert_int_equal(sm_cache_reap(a, c->c_id), 0);		/* nothing left to reap */
	/* A stale free into the released slab is refused as not a slab at all. */
	expect_block_refusal(f, c, objs[num], STAT_INVALID_FREE, "object of a reaped slab");
	assert_clean(f);

	/* (c') empty and kept within free_limit, although min_partial is reached. */
	E(sm_node_lock(a, c, 0));
	cn->n_free_limit = limit;
	sm_node_unlock(c, 0);
	assert_true(2ull * num <= limit);
	assert_int_equal(free_block(f, c, &objs[2 * num], num), 0);
	assert_node(f, c, 0, 0, 2, 0, 2 * num);
	assert_int_equal(a->pages[heads[2]].pg_state, PG_SLAB_FREE);
	assert_clean(f);

	/* shrink releases the kept empty slabs too. */
	assert_int_equal(sm_cache_shrink(a, c->c_id), 2);
	assert_node(f, c, 0, 0, 0, 0, 0);
	assert_int_equal(c->c_stat[STAT_FREE_SLAB], before_stat + 3);
	assert_int_equal(r->nr_free_pages, free0);
	assert_clean(f);
}

/* ---- 3. refill and flush through the tiers -------------------------------------------- */

#define TIER_OBJS 100

static void test_tiers(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("tiers", 64);
	const struct slab_node_region *r = sm_region(a, 0);
	struct sm_cache_counts cnt;
	struct slab_cache_desc *c;
	struct slab_mag *m;
	uint64_t *objs, live = 1;
	unsigned avail = 0, left = 0, refills = 0, slabs = 0;
	unsigned flushes = 0, shared = 0, to_slabs = 0, batch, limit;
	uint32_t free0 = r->nr_free_pages;

	p.limit = 8;
	p.batchcount = 4;
	c = cache_new(f, &p);
	assert_int_equal(c->c_limit, 8);
	assert_int_equal(c->c_batchcount, 4);
	assert_int_equal(c->c_shared, 32);	/* default: 8 * batchcount */
	assert_int_equal(c->c_nodes[0].n_shared_limit, c->c_shared);
	m = mag_new(f, c, 8);
	assert_int_equal(m->m_limit, 8);
	assert_int_equal(m->m_batchcount, 4);
	batch = m->m_batchcount;
	limit = m->m_limit;
	objs = hold(f, TIER_OBJS);

	/* Model of cache_alloc_refill: a refill takes batchcount objects, or what the node has
	 * left when that is fewer; only a dry node asks for a grant (one slab here). */
	for (unsigned i = 0; i < TIER_OBJS; i++) {
		if (!avail) {
			unsigned got;

			if (!left) {
				left = c->c_num;
				slabs++;
			}
			got = batch < left ? batch : left;
			left -= got;
			avail += got;
			refills++;
		}
		avail--;
	}
	for (unsigned i = 0; i < TIER_OBJS; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	assert_distinct(objs, TIER_OBJS);
	assert_int_equal(m->m_stat[STAT_ALLOC_REFILL], refills);
	assert_int_equal(m->m_stat[STAT_ALLOC_SLOWPATH], refills);
	assert_int_equal(m->m_stat[STAT_ALLOC_FASTPATH], TIER_OBJS - refills);
	assert_int_equal(m->m_avail, avail);
	assert_int_equal(f->grows, slabs);
	assert_int_equal(c->c_stat[STAT_ALLOC_SLAB], slabs);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.shared_avail, 0);
	assert_int_equal(cnt.active_objs, TIER_OBJS + m->m_avail + cnt.shared_avail);
	assert_int_equal(cnt.num_slabs, slabs);
	assert_int_equal(cnt.num_objs, (uint64_t)slabs * c->c_num);
	assert_clean(f);

	/* The grants above grew free_limit and with it the shared array (cache.c:
	 * depot_fit); cache.tune puts both back to SLAB's sizes, which the model below
	 * assumes. */
	E(sm_cache_tune(a, c->c_id, 0, 0, 0, 0));
	assert_int_equal(c->c_nodes[0].n_shared_limit, c->c_shared);
	assert_int_equal(c->c_nodes[0].n_depot, SLAB_NIL);

	/* Model of the free side: a free that finds the magazine at its limit flushes the
	 * oldest batchcount objects, to the shared array while it has room, else to the
	 * slabs. */
	for (unsigned i = 0; i < TIER_OBJS; i++) {
		if (avail == limit) {
			unsigned room = c->c_shared - shared, k = batch < room ? batch : room;

			flushes++;
			shared += k;
			to_slabs += batch - k;
			avail -= batch;
		}
		avail++;
	}
	for (unsigned i = 0; i < TIER_OBJS; i++)
		E(sm_free(a, c, m, 0, objs[i]));
	assert_true(flushes > 0);
	assert_true(to_slabs > 0);	/* the shared array overflowed: its limit was hit */
	assert_int_equal(m->m_stat[STAT_FREE_FLUSH], flushes);
	assert_int_equal(m->m_stat[STAT_FREE_SLOWPATH], flushes);
	assert_int_equal(sm_mag_free_fastpath(m), TIER_OBJS - flushes);
	assert_int_equal(m->m_avail, avail);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.shared_avail, shared);
	assert_int_equal(cnt.shared_avail, c->c_nodes[0].n_shared_limit);
	assert_int_equal(cnt.active_objs, m->m_avail + cnt.shared_avail);	/* in_use 0 */
	assert_clean(f);

	/* Drain: the shared array is full, so the magazine's objects go to their slabs. */
	sm_mag_drain(a, c, m, 1);
	assert_int_equal(m->m_avail, 0);
	for (unsigned s = 0; s < SLAB_STAT_NR; s++)
		assert_int_equal(m->m_stat[s], 0);
	assert_int_equal(c->c_stat[STAT_ALLOC_REFILL], refills);
	assert_int_equal(c->c_stat[STAT_FREE_FLUSH], flushes);
	assert_int_equal(c->c_stat[STAT_ALLOC_FASTPATH] + c->c_stat[STAT_ALLOC_SLOWPATH],
			 TIER_OBJS);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.shared_avail, shared);
	assert_int_equal(cnt.active_objs, cnt.shared_avail);
	assert_clean(f);

	/* shrink: the shared array drains into the slabs and every empty slab goes back. */
	assert_int_equal(sm_cache_shrink(a, c->c_id), slabs);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.shared_avail, 0);
	assert_int_equal(cnt.active_objs, 0);
	assert_int_equal(cnt.num_slabs, 0);
	assert_int_equal(cnt.node[0].nr_discard, 0);
	assert_int_equal(cnt.node[0].free_objects, 0);
	assert_int_equal(c->c_stat[STAT_FREE_SLAB], slabs);
	assert_int_equal(r->nr_free_pages, free0);
	assert_clean(f);

	E(sm_cache_shutdown(a, c->c_id, &live));
	assert_int_equal(live, 0);
	assert_int_equal(c->c_state, CACHE_UNUSED);
	assert_clean(f);
}

/* ---- 4. cache lifecycle --------------------------------------------------------------- */

static unsigned live_caches(const struct sm_arena *a)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < a->hdr->ah_nr_caches; i++)
		n += sm_cache(a, i)->c_state != CACHE_UNUSED;
	return n;
}

static void expect_create(struct fx *f, const struct sm_cache_params *p, int want,
			  const char *what)
{
	uint32_t id = SLAB_NIL;
	bool existed = false;
	unsigned nr = live_caches(&f->a);
	int rc = sm_cache_create(&f->a, p, &id, &existed);

	if (rc != want)
		fail_msg("sm_cache_create(%s) returned %d (%s), expected %d", what, rc,
			 strerror(-rc), want);
	assert_false(existed);
	assert_int_equal(live_caches(&f->a), nr);	/* no slot taken */
}

static void test_lifecycle(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	const struct slab_node_region *r = sm_region(a, 0);
	char name64[SLAB_NAME_MAX + 1], name63[SLAB_NAME_MAX], fill[32];
	struct sm_cache_params p;
	struct slab_cache_desc *c;
	struct slab_mag *m;
	uint64_t x, y, live, serial;
	uint32_t id, id2, freed;
	uint32_t free0 = r->nr_free_pages;
	bool existed;
	int rc;

	memset(name64, 'x', SLAB_NAME_MAX);
	name64[SLAB_NAME_MAX] = '\0';
	memset(name63, 'y', SLAB_NAME_MAX - 1);
	name63[SLAB_NAME_MAX - 1] = '\0';

	/* Bad input is -EINVAL and takes no slot. */
	const char *bad_names[] = { "", "a b", name64, "tab\tname", "slash/name", "nul\x01",
				    "caf\xc3\xa9", "semi;colon" };
	for (unsigned i = 0; i < SM_ARRAY_SIZE(bad_names); i++) {
		p = params(bad_names[i], 64);
		expect_create(f, &p, -EINVAL, "bad name");
		assert_int_equal(sm_cache_name_ok(bad_names[i]), 0);
	}
	p = params(NULL, 64);
	expect_create(f, &p, -EINVAL, "NULL name");
	p = params("sz", 0);
	expect_create(f, &p, -EINVAL, "size 0");
	p = params("sz", SLAB_MAX_OBJECT_SIZE + 1);
	expect_create(f, &p, -EINVAL, "size beyond the maximum");
	p = params("al", 64);
	p.align = 3;
	expect_create(f, &p, -EINVAL, "align 3");
	p.align = 2 * SLAB_MAX_ALIGN;
	expect_create(f, &p, -EINVAL, "align beyond the maximum");
	p = params("fl", 64);
	p.flags = SM_FLAGS_ALL + 1;
	expect_create(f, &p, -EINVAL, "unknown flag");
	p = params("nd", 64);
	p.node = (int)a->hdr->ah_nr_nodes;
	expect_create(f, &p, -EINVAL, "node out of range");
	p.node = -2;
	expect_create(f, &p, -EINVAL, "node -2");
	p = params("tn", 64);
	p.limit = SLAB_MAG_MAX + 1;
	expect_create(f, &p, -EINVAL, "limit beyond SLAB_MAG_MAX");
	p.limit = 4;
	p.batchcount = 5;
	expect_create(f, &p, -EINVAL, "batchcount above limit");
	p = params("sh", 64);
	p.shared = SLAB_SHARED_MAX + 1;
	expect_create(f, &p, -EINVAL, "shared beyond SLAB_SHARED_MAX");
	assert_int_equal(live_caches(a), 0);

	/* The longest name is fine. */
	p = params(name63, 64);
	c = cache_new(f, &p);
	assert_string_equal(c->c_name, name63);

	/* Same name, same geometry: opens it; other geometry: -EEXIST. */
	p = params("life", 64);
	c = cache_new(f, &p);
	id = c->c_id;
	serial = c->c_serial;
	existed = false;
	E(sm_cache_create(a, &p, &id2, &existed));
	assert_true(existed);
	assert_int_equal(id2, id);
	p.align = 8;					/* align 0 means 8: same geometry */
	existed = false;
	E(sm_cache_create(a, &p, &id2, &existed));
	assert_true(existed);
	assert_int_equal(id2, id);
	p = params("life", 128);
	expect_create(f, &p, -EEXIST, "same name, other size");
	p = params("life", 64);
	p.align = 16;
	expect_create(f, &p, -EEXIST, "same name, other align");
	p = params("life", 64);
	p.flags = SM_ZERO;
	expect_create(f, &p, -EEXIST, "same name, other flags");
	assert_int_equal(c->c_object_size, 64);
	assert_int_equal(c->c_serial, serial);
	E(sm_cache_lookup(a, "life", &id2));
	assert_int_equal(id2, id);

	/* Shutdown with an object out: -EBUSY, the count, and the cache still works. */
	m = mag_new(f, c, c->c_limit);
	E(sm_alloc(a, c, m, 0, &x));
	sm_mag_drain(a, c, m, 1);	/* shutdown expects magazines flushed */
	live = 0;
	rc = sm_cache_shutdown(a, id, &live);
	assert_int_equal(rc, -EBUSY);
	assert_int_equal(live, 1);
	assert_int_equal(c->c_state, CACHE_LIVE);
	E(sm_cache_lookup(a, "life", &id2));
	assert_int_equal(id2, id);
	assert_clean(f);
	E(sm_alloc(a, c, m, 0, &y));
	assert_true(y != x);
	E(sm_free(a, c, m, 0, y));
	E(sm_free(a, c, m, 0, x));
	sm_mag_drain(a, c, m, 1);
	assert_clean(f);
	live = 99;
	E(sm_cache_shutdown(a, id, &live));
	assert_int_equal(live, 0);
	assert_int_equal(c->c_state, CACHE_UNUSED);
	assert_int_equal(sm_cache_lookup(a, "life", &id2), -ENOENT);
	assert_int_equal(r->nr_free_pages, free0);	/* every slab went back */
	assert_clean(f);

	/* The name is free again: a new cache, other geometry, a new incarnation. */
	p = params("life", 256);
	c = cache_new(f, &p);
	assert_int_equal(c->c_object_size, 256);
	if (c->c_id == id)
		assert_true(c->c_serial > serial);
	E(sm_cache_lookup(a, "life", &id2));
	assert_int_equal(id2, c->c_id);

	/* Fill the table, then -ENOSPC. */
	for (unsigned i = 0;; i++) {
		assert_true(i <= a->hdr->ah_nr_caches);
		snprintf(fill, sizeof(fill), "fill-%u", i);
		p = params(fill, 32 + 8 * (i % 4));
		rc = sm_cache_create(a, &p, &id2, &existed);
		if (rc == -ENOSPC)
			break;
		E(rc);
		assert_false(existed);
	}
	assert_int_equal(live_caches(a), a->hdr->ah_nr_caches);
	p = params("one-more", 64);
	expect_create(f, &p, -ENOSPC, "a full table");
	assert_int_equal(sm_cache_lookup(a, "one-more", &id2), -ENOENT);
	/* An existing name still opens while the table is full. */
	p = params("life", 256);
	existed = false;
	E(sm_cache_create(a, &p, &id2, &existed));
	assert_true(existed);
	assert_clean(f);

	/* Freeing one slot makes room for exactly one more. */
	E(sm_cache_lookup(a, "fill-0", &freed));
	E(sm_cache_shutdown(a, freed, &live));
	assert_int_equal(live, 0);
	p = params("one-more", 64);
	E(sm_cache_create(a, &p, &id2, &existed));
	assert_false(existed);
	assert_int_equal(id2, freed);
	p = params("one-more-again", 64);
	expect_create(f, &p, -ENOSPC, "a full table again");
	assert_clean(f);
}

/* ---- 5. validate finds injected corruption, repair fixes it --------------------------- */

/* A cache with one full slab and one partial slab (5 objects out), all held by the test. */
struct victim {
	struct slab_cache_desc *c;
	struct slab_cache_node *cn;
	uint64_t               *objs;
	unsigned                nr;
	uint32_t                full, partial;
};

static void victim_build(struct fx *f, struct victim *v)
{
	struct sm_cache_params p = params("victim", 64);

	v->c = cache_new(f, &p);
	v->cn = &v->c->c_nodes[0];
	v->nr = v->c->c_num + 5;
	v->objs = hold(f, v->nr);
	assert_int_equal(sm_cache_grow(&f->a, v->c->c_id, 0, 2), 2);
	assert_int_equal(alloc_objs(f, v->c, v->objs, v->nr), v->nr);
	v->full = head_of(f, v->c, v->objs[0], NULL);
	v->partial = head_of(f, v->c, v->objs[v->c->c_num], NULL);
	assert_int_equal(f->a.pages[v->full].pg_state, PG_SLAB_FULL);
	assert_int_equal(f->a.pages[v->partial].pg_state, PG_SLAB_PARTIAL);
	assert_node(f, v->c, 1, 1, 0, 0, v->c->c_num - 5);
	assert_clean(f);
}

static void victim_repaired(struct fx *f, struct victim *v)
{
	node_repair(f, v->c);
	assert_clean(f);
	assert_node(f, v->c, 1, 1, 0, 0, v->c->c_num - 5);
	assert_int_equal(f->a.pages[v->full].pg_state, PG_SLAB_FULL);
	assert_int_equal(f->a.pages[v->partial].pg_state, PG_SLAB_PARTIAL);
}

/* sm_give_back (what slabd's reclaim and a drain use): a batch that mixes objects with
 * entries that are not objects goes through the general path, which returns every object
 * and refuses and counts every other entry; a clean batch takes the one-node path; both
 * leave the cache valid and account for every object. */
static void test_give_back_mixed(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("giveback", 64);
	const struct slab_node_region *r = sm_region(a, 0);
	uint64_t end = (uint64_t)(r->nr_first_page + r->nr_nr_pages) << SLAB_PAGE_SHIFT;
	struct sm_cache_counts cnt;
	struct slab_cache_desc *c;
	struct slab_mag *m;
	uint64_t *objs, batch[64];
	uint64_t inval0, dbl0;
	unsigned n = 0, k = 0;

	p.limit = 64;
	p.batchcount = 32;
	c = cache_new(f, &p);
	m = mag_new(f, c, 64);
	objs = hold(f, 48);
	for (unsigned i = 0; i < 48; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	sm_mag_drain(a, c, m, 0); /* what the magazine cached goes back: only the 48 are out */
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.active_objs, 48);
	inval0 = c->c_stat[STAT_INVALID_FREE];
	dbl0 = c->c_stat[STAT_DOUBLE_FREE];

	/* 20 objects and 6 entries that are none: zero (an empty slot of a refill step:
	 * dropped, not counted), the header, past the node, past the arena, inside an object,
	 * and the same object twice (the second is a double free when it reaches its slab). */
	for (; k < 20; k++)
		batch[n++] = objs[k];
	batch[n++] = 0;
	batch[n++] = 64;
	batch[n++] = end;
	batch[n++] = a->size + 4096;
	batch[n++] = objs[20] + 8;
	batch[n++] = objs[0];
	assert_int_equal(sm_give_back(a, c, batch, n, 0), 5);
	assert_int_equal(c->c_stat[STAT_INVALID_FREE] - inval0, 4);
	assert_int_equal(c->c_stat[STAT_DOUBLE_FREE] - dbl0, 1);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.active_objs, 28);
	assert_clean(f);

	/* The rest, clean: all returned, to the shared array first. */
	n = 0;
	for (; k < 48; k++)
		batch[n++] = objs[k];
	assert_int_equal(sm_give_back(a, c, batch, n, 1), 0);
	sm_cache_counts(a, c->c_id, &cnt);
	assert_int_equal(cnt.shared_avail, 28);
	assert_int_equal(cnt.active_objs, 28);
	assert_int_equal(c->c_stat[STAT_INVALID_FREE] - inval0, 4);
	assert_int_equal(c->c_stat[STAT_DOUBLE_FREE] - dbl0, 1);
	assert_clean(f);
	free(f->objs);
	f->objs = NULL;
}

/* The adaptive free_limit (cache.c keep_limit): a grant raises the node's free_limit by
 * the objects granted, so the slabs a burst needed stay as empty slabs when it frees;
 * each sm_cache_trim (slabd's idle second) halves what is above SLAB's floor and gives
 * back the empty slabs beyond it; shrink gives back all. */
static void test_free_limit_adapts(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("keep", 64);
	struct slab_cache_node *cn;
	struct slab_cache_desc *c;
	struct slab_mag *m;
	uint64_t floor, *objs;
	unsigned nobj = 4096, nslabs, kept, prev;

	p.limit = 16;
	p.batchcount = 8;
	p.min_partial = 1;
	c = cache_new(f, &p);
	cn = &c->c_nodes[0];
	floor = cn->n_free_limit;
	m = mag_new(f, c, 16);
	objs = hold(f, nobj);
	for (unsigned i = 0; i < nobj; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	nslabs = cn->n_full.l_count + cn->n_partial.l_count;
	assert_true(nslabs >= nobj / c->c_num);
	/* every grant raised the limit by what it added */
	assert_true(cn->n_free_limit >= floor + (uint64_t)(nslabs - 1) * c->c_num);
	assert_true(cn->n_free_limit <= floor + (uint64_t)(nslabs + 1) * c->c_num);
	for (unsigned i = 0; i < nobj; i++)
		E(sm_free(a, c, m, 0, objs[i]));
	sm_mag_drain(a, c, m, 0);
	/* the shared array grew with free_limit and holds most of them: back to the slabs */
	assert_true(cn->n_shared_avail > SLAB_SHARED_MAX / 2);
	E(sm_node_lock(a, c, 0));
	sm_do_drain_shared(a, c, 0);
	sm_node_unlock(c, 0);
	/* all of them kept, none went to the discard queue */
	assert_int_equal(cn->n_discard.l_count, 0);
	assert_int_equal(cn->n_free.l_count + cn->n_partial.l_count, nslabs);
	assert_true(cn->n_free.l_count + 2 >= nslabs);
	assert_clean(f);

	/* idle seconds: the allowance halves and empty slabs beyond it go back */
	prev = cn->n_free.l_count;
	for (int sec = 0; sec < 40 && cn->n_free_limit > floor; sec++) {
		uint64_t above = cn->n_free_limit - floor;

		sm_cache_trim(a, c->c_id, 1024);
		assert_int_equal(cn->n_free_limit - floor, above / 2);
		assert_true(cn->n_free.l_count <= prev);
		assert_true(cn->n_free_objects < cn->n_free_limit + c->c_num ||
			    cn->n_free.l_count <= c->c_min_partial);
		prev = cn->n_free.l_count;
	}
	assert_int_equal(cn->n_free_limit, floor);
	kept = cn->n_free.l_count;
	assert_true((uint64_t)kept * c->c_num <= floor + c->c_num);
	assert_true(kept >= c->c_min_partial);
	assert_clean(f);
	sm_cache_shrink(a, c->c_id);
	assert_int_equal(cn->n_free.l_count, 0);
	assert_clean(f);
	free(f->objs);
	f->objs = NULL;
}

/* ---- magazine resizing ------------------------------------------------------------- */

/* A thread that holds a cache node's lock for a few milliseconds, so that the next slow
 * path of the test's magazine finds it held. */
struct lock_holder {
	struct sm_arena *a;
	struct slab_cache_desc *c;
	const struct slab_mag *m; /* the magazine whose transfer must find the lock held */
	pthread_t t;
	volatile int held;
};

/* Hold node 0's lock until m's transfer has begun (its step is recorded just before it
 * takes the lock), then 3 ms more.  A fixed 3 ms from the start was not always enough
 * under valgrind on a loaded machine: the transfer then found the lock free. */
static void *hold_lock(void *arg)
{
	struct lock_holder *h = arg;
	struct timespec ts = { 0, 3 * 1000 * 1000 }, poll = { 0, 100 * 1000 };

	assert_int_equal(sm_node_lock(h->a, h->c, 0), 0);
	__atomic_store_n(&h->held, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 50000 && !__atomic_load_n(&h->m->m_intent, __ATOMIC_ACQUIRE); i++)
		nanosleep(&poll, NULL);
	nanosleep(&ts, NULL);
	sm_node_unlock(h->c, 0);
	return NULL;
}

static void lock_elsewhere(struct lock_holder *h)
{
	__atomic_store_n(&h->held, 0, __ATOMIC_RELAXED);
	assert_int_equal(pthread_create(&h->t, NULL, hold_lock, h), 0);
	while (!__atomic_load_n(&h->held, __ATOMIC_ACQUIRE))
		sched_yield();
}

/* One transfer of m with the node lock held elsewhere at its start: a refill when
 * `refill`, else a flush.  objs/held: the objects the test holds. */
static void contended_transfer(struct fx *f, struct slab_cache_desc *c, struct slab_mag *m,
			       uint64_t *objs, unsigned *held, int refill)
{
	struct lock_holder h = { .a = &f->a, .c = c, .m = m };
	uint64_t refills = m->m_stat[STAT_ALLOC_REFILL], flushes = m->m_stat[STAT_FREE_FLUSH];

	if (refill) {
		while (m->m_avail)
			E(sm_alloc(&f->a, c, m, 0, &objs[(*held)++]));
		lock_elsewhere(&h);
		E(sm_alloc(&f->a, c, m, 0, &objs[(*held)++]));
		assert_int_equal(m->m_stat[STAT_ALLOC_REFILL], refills + 1);
	} else {
		while (*held <= m->m_limit)	/* enough to fill it and one more */
			E(sm_alloc(&f->a, c, m, 0, &objs[(*held)++]));
		flushes = m->m_stat[STAT_FREE_FLUSH];
		while (m->m_avail < m->m_limit)
			E(sm_free(&f->a, c, m, 0, objs[--(*held)]));
		lock_elsewhere(&h);
		E(sm_free(&f->a, c, m, 0, objs[--(*held)]));
		assert_int_equal(m->m_stat[STAT_FREE_FLUSH], flushes + 1);
	}
	assert_int_equal(pthread_join(h.t, NULL), 0);
}

/* A magazine doubles after 4 transfers that found the node lock held, up to its capacity
 * and 4x the cache's limit, and halves after 1024 transfers that met no pressure; one
 * bound with only the cache's limit as capacity never grows. */
static void test_mag_resize(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("resize", 64);
	struct slab_cache_desc *c;
	struct slab_mag *m, *fixed;
	uint64_t *objs;
	unsigned held = 0, transfers = 0;

	p.limit = 16;
	p.batchcount = 8;
	c = cache_new(f, &p);
	objs = hold(f, 4096);
	assert_int_equal(sm_mag_capacity(16), 64);
	m = mag_new(f, c, sm_mag_capacity(c->c_limit));
	assert_int_equal(m->m_limit, 16);

	/* three contended refills and a contended flush: doubled */
	for (int i = 0; i < 3; i++) {
		contended_transfer(f, c, m, objs, &held, 1);
		assert_int_equal(m->m_limit, 16);
	}
	contended_transfer(f, c, m, objs, &held, 0);
	assert_int_equal(m->m_shift, 1);
	assert_int_equal(m->m_limit, 32);
	assert_int_equal(m->m_batchcount, 16);
	for (int i = 0; i < 4; i++)
		contended_transfer(f, c, m, objs, &held, i & 1);
	assert_int_equal(m->m_limit, 64);
	assert_int_equal(m->m_batchcount, 32);
	/* at its capacity it stays */
	for (int i = 0; i < 4; i++)
		contended_transfer(f, c, m, objs, &held, 1);
	assert_int_equal(m->m_shift, 2);
	assert_int_equal(m->m_limit, 64);
	assert_clean(f);

	/* free locks: one flush, one refill, in turn (the last transfer was a refill), until
	 * a whole window passed without pressure, then once more: halved once, not more.
	 * The window under way may have met pressure before the loop (contended_transfer's
	 * flush first allocates, and those refills may run one way), so the first window
	 * to pass without any may be the second. */
	while (m->m_shift == 2) {
		uint64_t before = m->m_stat[STAT_ALLOC_REFILL] + m->m_stat[STAT_FREE_FLUSH];

		assert_true(held > m->m_limit - m->m_avail);
		while (m->m_avail < m->m_limit)
			E(sm_free(a, c, m, 0, objs[--held]));
		E(sm_free(a, c, m, 0, objs[--held]));
		while (m->m_avail)
			E(sm_alloc(a, c, m, 0, &objs[held++]));
		E(sm_alloc(a, c, m, 0, &objs[held++]));
		/* (the flush that halves it flushes once more, down to the new limit) */
		if (m->m_shift == 2)
			assert_int_equal(m->m_stat[STAT_ALLOC_REFILL] + m->m_stat[STAT_FREE_FLUSH],
					 before + 2);
		transfers += (unsigned)(m->m_stat[STAT_ALLOC_REFILL] + m->m_stat[STAT_FREE_FLUSH] -
					before);
		assert_true(transfers <= 2 * 1024 + 64);
	}
	assert_true(transfers >= 1024);
	assert_int_equal(m->m_shift, 1);
	assert_int_equal(m->m_limit, 32);
	assert_true(m->m_avail <= m->m_limit); /* the free that found it smaller flushed down */
	assert_clean(f);

	/* capacity == the cache's limit: contention changes nothing */
	fixed = mag_new(f, c, c->c_limit);
	for (int i = 0; i < 8; i++)
		contended_transfer(f, c, fixed, objs, &held, 1);
	assert_int_equal(fixed->m_limit, 16);
	assert_int_equal(fixed->m_batchcount, 8);
	while (held)
		E(sm_free(a, c, fixed, 0, objs[--held]));
	assert_clean(f);
}

/* Refills (or flushes) of m, limit 16 and batchcount 8, one after the other: the 1st
 * has no predecessor and the 2nd-5th are a run, which doubles m; the 6th-9th are
 * another, which doubles it again. */
static void expect_run_grows(struct fx *f, struct slab_cache_desc *c, struct slab_mag *m,
			     uint64_t *objs, unsigned *held, int refill)
{
	static const struct { uint64_t transfers; unsigned shift, limit; } steps[] = {
		{ 4, 0, 16 }, { 5, 1, 32 }, { 9, 2, 64 },
	};
	const uint64_t *count = &m->m_stat[refill ? STAT_ALLOC_REFILL : STAT_FREE_FLUSH];

	for (unsigned k = 0; k < SM_ARRAY_SIZE(steps); k++) {
		while (*count < steps[k].transfers) {
			if (refill)
				E(sm_alloc(&f->a, c, m, 0, &objs[(*held)++]));
			else
				E(sm_free(&f->a, c, m, 0, objs[--(*held)]));
		}
		assert_int_equal(m->m_shift, steps[k].shift);
		assert_int_equal(m->m_limit, steps[k].limit);
		assert_int_equal(m->m_batchcount, steps[k].limit / 2);
	}
}

/* Runs of transfers one way grow a magazine as contention does: a thread allocating
 * 4 batches past its first without a free between doubles it, 4 more quadruple it (its
 * capacity), and so does a thread freeing in bulk; a thread whose refills and flushes
 * alternate keeps the cache's limit however long it runs, and the flushes down to a
 * limit a tune just lowered do not grow it back. */
static void test_mag_streak(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("streak", 64);
	struct slab_cache_desc *c;
	struct slab_mag *m, *m2, *m3, *src;
	uint64_t *objs;
	unsigned held = 0;

	p.limit = 16;
	p.batchcount = 8;
	c = cache_new(f, &p);
	objs = hold(f, 4096);
	src = mag_new(f, c, c->c_limit);
	while (held < 64)
		E(sm_alloc(a, c, src, 0, &objs[held++]));

	/* alternating: 200 rounds of one refill and one flush */
	m = mag_new(f, c, sm_mag_capacity(c->c_limit));
	for (int round = 0; round < 200; round++) {
		uint64_t before = m->m_stat[STAT_ALLOC_REFILL] + m->m_stat[STAT_FREE_FLUSH];

		while (m->m_avail)
			E(sm_alloc(a, c, m, 0, &objs[held++]));
		E(sm_alloc(a, c, m, 0, &objs[held++]));
		while (m->m_avail < m->m_limit)
			E(sm_free(a, c, m, 0, objs[--held]));
		E(sm_free(a, c, m, 0, objs[--held]));
		assert_int_equal(m->m_stat[STAT_ALLOC_REFILL] + m->m_stat[STAT_FREE_FLUSH],
				 before + 2);
		assert_int_equal(m->m_shift, 0);
		assert_int_equal(m->m_limit, 16);
	}
	while (held)
		E(sm_free(a, c, src, 0, objs[--held]));
	sm_mag_drain(a, c, src, 1);
	sm_mag_drain(a, c, m, 1);
	assert_clean(f);

	/* allocating in bulk, then freeing all of it into a fresh magazine */
	m = mag_new(f, c, sm_mag_capacity(c->c_limit));
	expect_run_grows(f, c, m, objs, &held, 1);
	while (held < 400)	/* at its capacity it stays */
		E(sm_alloc(a, c, m, 0, &objs[held++]));
	assert_int_equal(m->m_shift, 2);
	m2 = mag_new(f, c, sm_mag_capacity(c->c_limit));
	expect_run_grows(f, c, m2, objs, &held, 0);
	while (held)
		E(sm_free(a, c, m2, 0, objs[--held]));
	sm_mag_drain(a, c, m2, 1);
	sm_mag_drain(a, c, m, 1);
	assert_clean(f);

	/* a tune down: the flushes down to the new limit are no run, or they would undo it */
	m3 = m;	/* drained: bind it afresh (shift 0, no last transfer) */
	sm_mag_init(a, m3, c, m3->m_capacity);
	assert_int_equal(m3->m_limit, 16);
	while (held < 64)
		E(sm_alloc(a, c, src, 0, &objs[held++]));
	while (m3->m_stat[STAT_FREE_FLUSH] < 1)	/* last transfer: a flush */
		E(sm_free(a, c, m3, 0, objs[--held]));
	while (m3->m_avail < m3->m_limit)
		E(sm_free(a, c, m3, 0, objs[--held]));
	E(sm_cache_tune(a, c->c_id, 2, 1, 0, 0));
	E(sm_free(a, c, m3, 0, objs[--held]));
	assert_true(m3->m_stat[STAT_FREE_FLUSH] >= 1 + 14);
	assert_int_equal(m3->m_shift, 0);
	assert_int_equal(m3->m_limit, 2);
	assert_true(m3->m_avail <= 2);
	while (held)
		E(sm_free(a, c, src, 0, objs[--held]));
	sm_mag_drain(a, c, src, 1);
	sm_mag_drain(a, c, m3, 1);
	assert_clean(f);
}

/* ---- a flush of objects another magazine takes: the hand-over touch ------------------- */

/* In a child: make the pages of m's oldest batch read-only, then free off into m (which
 * is full, so the free flushes that batch).  Returns the child's wait status. */
static int flush_readonly_in_child(struct fx *f, struct slab_cache_desc *c, struct slab_mag *m,
				   uint64_t off)
{
	int st = 0;
	pid_t pid;

	assert_int_equal(m->m_avail, m->m_limit);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL); /* not cmocka's handler: die of it */
		for (unsigned i = 0; i < m->m_batchcount; i++) {
			uintptr_t pg = (uintptr_t)(f->a.base + sm_mag_entries(m)[i]) &
				       ~(uintptr_t)(SLAB_PAGE_SIZE - 1);

			if (mprotect((void *)pg, SLAB_PAGE_SIZE, PROT_READ))
				_exit(2);
		}
		_exit(sm_free(&f->a, c, m, 0, off) ? 3 : 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static uint8_t pattern(uint64_t off, unsigned i)
{
	return (uint8_t)(off * 131 + i * 7 + 1);
}

/* A flush writes the lines of objects another magazine refilled last, before they leave
 * (read-only pages fault then), and not those of a magazine that refills itself; either
 * way no byte of any object changes, and n_taker names the last refiller. */
/* A 64-byte cache of limit 16 and batch 8 with a producer's magazine and a consumer's
 * that a forked child's flush updates for this process too (mag_new_shared). */
static struct slab_cache_desc *handover_pair(struct fx *f, const char *name, unsigned flags,
					     struct slab_mag **prod, struct slab_mag **cons)
{
	struct sm_cache_params p = params(name, 64);
	struct slab_cache_desc *c;

	p.flags = flags;
	p.limit = 16;
	p.batchcount = 8;
	c = cache_new(f, &p);
	*prod = mag_new(f, c, c->c_limit);
	*cons = mag_new_shared(f, c, c->c_limit);
	return c;
}

enum { AHEAD_N = 2 * SLAB_MAG_AHEAD + 5 };

/* test_mag_ahead on one magazine m of c: objs are AHEAD_N objects of c held elsewhere. */
static void check_mag_ahead(struct fx *f, struct slab_cache_desc *c, struct slab_mag *m,
			    const uint64_t *objs)
{
	struct sm_arena *a = &f->a;
	uint64_t off = 0, ahead = 0;

	for (int round = 0; round < 2; round++) {
		for (unsigned k = 0; k < SLAB_MAG_AHEAD; k++)
			assert_ptr_equal(a->base + m->m_slots[k], (uint8_t *)m);
		/* an empty magazine takes any valid object: the sentinel is no object */
		for (unsigned i = 0; i < AHEAD_N; i++)
			E(sm_free(a, c, m, 0, objs[i]));
		assert_int_equal(m->m_avail, AHEAD_N);
		assert_int_equal(m->m_stat[STAT_DOUBLE_FREE], 0);
		for (unsigned i = AHEAD_N; i-- > 0;) {
			assert_int_equal(sm_mag_pop_ahead(m, &off, &ahead), 1);
			assert_int_equal(off, objs[i]);
			if (i >= SLAB_MAG_AHEAD)
				assert_int_equal(ahead, objs[i - SLAB_MAG_AHEAD]);
			else
				assert_ptr_equal(a->base + ahead, (uint8_t *)m);
		}
		assert_int_equal(sm_mag_pop_ahead(m, &off, &ahead), 0);
	}
}

/* The self slots under a magazine's entries (layout.h): sm_mag_init points each of the
 * SLAB_MAG_AHEAD of them at the magazine itself, sm_mag_pop_ahead gives the entry
 * SLAB_MAG_AHEAD pops ahead while the magazine holds one and the magazine's own offset
 * after that (what libslab's fast path prefetches), and the last self slot, the
 * sentinel, refuses no valid free into an empty magazine.  Both for a magazine outside
 * the arena (as the other tests use) and for one carved from a client's area, as
 * libslab's are: there the self offset lies inside the arena, on an area page, and is
 * no object. */
static void test_mag_ahead(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("ahead", 64);
	struct slab_cache_desc *c;
	struct slab_mag *m, *src;
	uint64_t objs[AHEAD_N], self;
	uint32_t slot, block, head, idx;

	p.limit = AHEAD_N + 3;
	c = cache_new(f, &p);
	m = mag_new(f, c, AHEAD_N + 3);
	src = mag_new(f, c, AHEAD_N + 3);
	for (unsigned i = 0; i < AHEAD_N; i++)
		E(sm_alloc(a, c, src, 0, &objs[i]));
	assert_distinct(objs, AHEAD_N);
	check_mag_ahead(f, c, m, objs);

	E(sm_client_attach(a, getpid(), 0, 0, &slot));
	E(sm_area_grow(a, slot, 0, 3, &block));
	m = sm_area_carve(a, block, AHEAD_N + 3);
	assert_non_null(m);
	sm_mag_init(a, m, c, AHEAD_N + 3);
	self = (uint64_t)((uint8_t *)m - a->base);
	assert_true(self < a->size);
	assert_int_equal(m->m_slots[SM_TOP], self);
	assert_int_equal(a->pages[self >> SLAB_PAGE_SHIFT].pg_state == PG_TAIL ?
			 a->pages[a->pages[self >> SLAB_PAGE_SHIFT].pg_next].pg_state :
			 a->pages[self >> SLAB_PAGE_SHIFT].pg_state, PG_AREA);
	assert_int_not_equal(sm_obj_lookup(a, c, self, &head, &idx), OBJ_OK);
	check_mag_ahead(f, c, m, objs);
	sm_client_reclaim(a, slot);

	for (unsigned i = 0; i < AHEAD_N; i++)
		E(sm_free(a, c, src, 0, objs[i]));
	assert_clean(f);
}

static void test_handover_touch(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct slab_mag *prod, *cons;
	struct slab_cache_desc *c = handover_pair(f, "handover", 0, &prod, &cons);
	struct slab_cache_node *cn = &c->c_nodes[0];
	uint64_t *objs = hold(f, 64), extra;
	unsigned n = 0;
	int st;

	assert_int_equal(cn->n_taker, 0);

	/* the producer takes 24 and writes every byte of them */
	for (n = 0; n < 24; n++) {
		E(sm_alloc(a, c, prod, 0, &objs[n]));
		for (unsigned i = 0; i < 64; i++)
			a->base[objs[n] + i] = pattern(objs[n], i);
	}
	assert_int_equal(cn->n_taker, sm_off(a, prod));

	/* the consumer frees 16 (full, no flush yet); the 17th flushes 8: their pages
	 * read-only, the touch faults before anything moved */
	for (unsigned i = 0; i < 16; i++)
		E(sm_free(a, c, cons, 0, objs[i]));
	assert_int_equal(cn->n_shared_avail, 0);
	st = flush_readonly_in_child(f, c, cons, objs[16]);
	if (!WIFSIGNALED(st))
		fail_msg("the child's flush did not fault: wait status %#x", st);
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	assert_int_equal(cn->n_shared_avail, 0);
	assert_int_equal(cons->m_avail, 16);
	assert_int_equal(cons->m_intent, 0);

	/* the same flush here: 8 to the shared array, every byte as the producer wrote it */
	E(sm_free(a, c, cons, 0, objs[16]));
	assert_int_equal(cn->n_shared_avail, 8);
	assert_int_equal(cons->m_avail, 9);
	for (unsigned k = 0; k < 24; k++)
		for (unsigned i = 0; i < 64; i++)
			if (a->base[objs[k] + i] != pattern(objs[k], i))
				fail_msg("object %u byte %u changed", k, i);
	assert_clean(f);

	/* the consumer refills itself (n_taker is now its own): its flush leaves the lines
	 * alone, read-only pages and all */
	for (unsigned i = 17; i < 24; i++)
		E(sm_free(a, c, cons, 0, objs[i]));
	assert_int_equal(cons->m_avail, 16);
	for (n = 0; n < 17; n++)
		E(sm_alloc(a, c, cons, 0, &objs[n]));
	assert_int_equal(cn->n_taker, sm_off(a, cons));
	for (unsigned i = 0; i < 9; i++)
		E(sm_free(a, c, cons, 0, objs[--n]));
	assert_int_equal(cons->m_avail, 16);
	extra = objs[--n];
	st = flush_readonly_in_child(f, c, cons, extra);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(cons->m_avail, 9); /* the child's flush, seen here (MAP_SHARED) */
	assert_clean(f);

	while (n)
		E(sm_free(a, c, cons, 0, objs[--n]));
	sm_mag_drain(a, c, cons, 0);
	sm_mag_drain(a, c, prod, 0);
	assert_clean(f);
}

/* A debug cache's flush leaves the lines alone even when another magazine took last: a
 * write into a freed object between the touch's read and write back would be undone
 * before SLAB_POISON could see it. */
static void test_handover_touch_debug(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct slab_mag *prod, *cons;
	struct slab_cache_desc *c = handover_pair(f, "handover-dbg", SM_POISON, &prod, &cons);
	uint64_t *objs = hold(f, 32);
	int st;

	for (unsigned n = 0; n < 17; n++)
		E(sm_alloc(a, c, prod, 0, &objs[n]));
	assert_int_equal(c->c_nodes[0].n_taker, sm_off(a, prod));
	for (unsigned i = 0; i < 16; i++)
		E(sm_free(a, c, cons, 0, objs[i]));
	st = flush_readonly_in_child(f, c, cons, objs[16]);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(cons->m_avail, 9);
	sm_mag_drain(a, c, cons, 0);
	sm_mag_drain(a, c, prod, 0);
	assert_clean(f);
}

/* ---- the shared array grows with free_limit ------------------------------------------ */

/* A burst of N objects that needed grants comes back into the shared array (a PG_DEPOT
 * block past SLAB_SHARED_MAX entries) and not into its slabs, and the next burst takes
 * it from there without a grant; repair deduplicates a large array; idle trims shrink it
 * back inline, and shutdown returns every page. */
static void test_depot(void **state)
{
	struct fx *f = *state;
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params("depot", 64);
	const struct slab_node_region *r = sm_region(a, 0);
	const unsigned nobj = 20000;
	struct slab_cache_node *cn;
	struct slab_cache_desc *c;
	struct slab_mag *m;
	uint64_t *objs, *again, live = 1;
	uint32_t free0 = r->nr_free_pages, blk, order;
	unsigned grows, nslabs, spare;

	c = cache_new(f, &p);
	cn = &c->c_nodes[0];
	assert_int_equal(cn->n_depot, SLAB_NIL);
	assert_int_equal(cn->n_shared_limit, c->c_shared);
	m = mag_new(f, c, c->c_limit);
	objs = hold(f, 2 * (size_t)nobj);
	again = objs + nobj;
	for (unsigned i = 0; i < nobj; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	blk = cn->n_depot;
	order = cn->n_depot_order;
	assert_int_not_equal(blk, SLAB_NIL);
	assert_int_equal(a->pages[blk].pg_state, PG_DEPOT);
	assert_int_equal(a->pages[blk].pg_order, order);
	assert_int_equal(a->pages[blk].pg_tag, 0);
	assert_true(cn->n_shared_limit >= nobj - c->c_num);
	assert_true(cn->n_shared_limit <= sm_depot_entries(order));
	assert_true(sm_depot_entries(order) < 2 * cn->n_shared_limit);
	nslabs = cn->n_full.l_count + cn->n_partial.l_count;
	spare = m->m_avail; /* the last refill's rest */
	assert_clean(f);

	/* Back: into the array, not the slabs (free_block never ran: no slab has a free
	 * object but the last grant's). */
	for (unsigned i = 0; i < nobj; i++)
		E(sm_free(a, c, m, 0, objs[i]));
	assert_int_equal(cn->n_shared_avail + m->m_avail, nobj + spare);
	assert_true(cn->n_free_objects <= (uint64_t)nslabs * c->c_num - nobj - spare);
	assert_clean(f);

	/* Again: the same objects, no grant. */
	grows = f->grows;
	for (unsigned i = 0; i < nobj; i++)
		E(sm_alloc(a, c, m, 0, &again[i]));
	assert_int_equal(f->grows, grows);
	qsort(objs, nobj, sizeof(uint64_t), cmp_u64);
	qsort(again, nobj, sizeof(uint64_t), cmp_u64);
	assert_memory_equal(objs, again, (size_t)nobj * sizeof(uint64_t));
	for (unsigned i = 0; i < nobj; i++)
		E(sm_free(a, c, m, 0, again[i]));
	sm_mag_drain(a, c, m, 1);
	assert_int_equal(cn->n_shared_avail, nobj + spare);
	/* the spare ones back to their slabs: the array holds exactly nobj */
	E(sm_node_lock(a, c, 0));
	assert_int_equal(sm_do_free_block(a, c, 0, sm_shared(a, cn), spare), 0);
	memmove(sm_shared(a, cn), sm_shared(a, cn) + spare, (size_t)nobj * sizeof(uint64_t));
	cn->n_shared_avail = nobj;
	sm_node_unlock(c, 0);
	assert_clean(f);

	/* Repair keeps each entry once, whatever the array's size: every entry twice
	 * (a second copy of the first half over the back half) and nothing lost. */
	E(sm_node_lock(a, c, 0));
	{
		uint64_t *sh = sm_shared(a, cn);

		memcpy(again, sh, (size_t)nobj * sizeof(uint64_t));
		memcpy(sh + nobj / 2, sh, (size_t)(nobj / 2) * sizeof(uint64_t));
	}
	sm_node_unlock(c, 0);
	node_repair(f, c);
	assert_int_equal(cn->n_shared_avail, nobj / 2);
	assert_memory_equal(sm_shared(a, cn), again, (size_t)(nobj / 2) * sizeof(uint64_t));
	/* the back half's objects are lost to the array: ACTIVE, held by no one */
	for (unsigned i = nobj / 2; i < nobj; i++) {
		uint32_t h = 0, ix = 0;

		assert_int_equal(sm_obj_lookup(a, c, again[i], &h, &ix), OBJ_OK);
		assert_int_equal(sm_bufctl_get(c, sm_slab_addr(a, h), ix), BUFCTL_ACTIVE);
	}
	/* give them back as a reclaim would */
	assert_int_equal(sm_give_back(a, c, again + nobj / 2, nobj / 2, 0), 0);
	assert_clean(f);

	/* Idle seconds: free_limit halves, the array follows it back inline. */
	for (int sec = 0; sec < 40 && cn->n_depot != SLAB_NIL; sec++) {
		uint32_t before = cn->n_shared_limit;

		sm_cache_trim(a, c->c_id, 1024);
		assert_true(cn->n_shared_limit <= before);
		assert_true(cn->n_shared_avail <= cn->n_shared_limit);
		assert_clean(f);
	}
	assert_int_equal(cn->n_depot, SLAB_NIL);
	assert_int_equal(cn->n_shared_limit, c->c_shared);

	/* Grow again, then shutdown: every page back, the depot block included. */
	for (unsigned i = 0; i < nobj; i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	assert_int_not_equal(cn->n_depot, SLAB_NIL);
	for (unsigned i = 0; i < nobj; i++)
		E(sm_free(a, c, m, 0, objs[i]));
	sm_mag_drain(a, c, m, 1);
	E(sm_cache_shutdown(a, c->c_id, &live));
	assert_int_equal(live, 0);
	assert_int_equal(r->nr_free_pages, free0);
	assert_clean(f);

	/* A depot block no cache node uses (a slabd died inside depot_fit): reported, and
	 * released by sm_depot_orphans (slabd's adoption). */
	E(sm_pages_alloc(a, 0, 2, &blk));
	a->pages[blk].pg_state = PG_DEPOT;
	assert_reported(f, "belong to no cache node", NULL);
	assert_int_equal(sm_depot_orphans(a, 0), 1);
	assert_int_equal(sm_depot_orphans(a, 1), 1);
	assert_int_equal(sm_depot_orphans(a, 0), 0);
	assert_int_equal(r->nr_free_pages, free0);
	assert_clean(f);
}

static void test_validate_free_objects(void **state)
{
	struct fx *f = *state;
	struct victim v;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	v.cn->n_free_objects++;
	sm_node_unlock(v.c, 0);
	assert_reported(f, "free_objects", NULL);
	victim_repaired(f, &v);
}

static void test_validate_list_count(void **state)
{
	struct fx *f = *state;
	struct victim v;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	v.cn->n_partial.l_count++;
	sm_node_unlock(v.c, 0);
	assert_reported(f, "counts", NULL);
	victim_repaired(f, &v);
}

static void test_validate_shared_twice(void **state)
{
	struct fx *f = *state;
	struct victim v;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	sm_shared(&f->a, v.cn)[v.cn->n_shared_avail++] = v.objs[3];
	sm_shared(&f->a, v.cn)[v.cn->n_shared_avail++] = v.objs[3];
	sm_node_unlock(v.c, 0);
	assert_reported(f, "two lists", NULL);
	/* Repair keeps a shared entry once. */
	node_repair(f, v.c);
	assert_int_equal(v.cn->n_shared_avail, 1);
	assert_int_equal(sm_shared(&f->a, v.cn)[0], v.objs[3]);
	assert_clean(f);
}

/* A double free that left one object in two magazines, or in a magazine and the shared
 * array, stays there: validate's second walk of the magazines sees it again and reports
 * it (the first walk only makes it a suspect). */
static void test_validate_mag_twice(void **state)
{
	struct fx *f = *state;
	struct victim v;
	struct slab_mag *m1, *m2;
	struct tu_report r;

	victim_build(f, &v);
	m1 = mag_new(f, v.c, v.c->c_limit);
	m2 = mag_new(f, v.c, v.c->c_limit);
	sm_mag_entries(m1)[m1->m_avail++] = v.objs[3];
	sm_mag_entries(m2)[m2->m_avail++] = v.objs[3];
	assert_reported(f, "cached twice", NULL);
	assert_int_equal(run_validate(f, &r), 1);

	/* one in a magazine and in the shared array */
	m2->m_avail = 0;
	assert_clean(f);
	E(sm_node_lock(&f->a, v.c, 0));
	sm_shared(&f->a, v.cn)[v.cn->n_shared_avail++] = v.objs[3];
	sm_node_unlock(v.c, 0);
	assert_reported(f, "cached twice", NULL);
	assert_int_equal(run_validate(f, &r), 1);
	E(sm_node_lock(&f->a, v.c, 0));
	v.cn->n_shared_avail--;
	sm_node_unlock(v.c, 0);
	m1->m_avail = 0;
	assert_clean(f);
}

/* With a count function (slabd's stats_holder_count), validate reports an object a walk
 * of the magazines saw twice only when the count confirms it: not one a thread moved
 * from a magazine read early into one read late (count 1, or 0 once it left both), but
 * one two magazines hold at once (count 2), or one a magazine holds while the shared
 * array does (count 1).  It asks again, up to SM_VALIDATE_WALKS (4) times, for the
 * suspects not confirmed yet (a busy magazine may not read still), all of them in one
 * call each time. */
struct fake_holders {
	uint64_t off[2];
	unsigned seen[2];     /* sightings of off[i] in each walk */
	unsigned held[2];     /* what count says of off[i] ... */
	unsigned from_call;   /* ... from this call on (0 and 1: the first); 0 before */
	int      fail;        /* count fails (-ENOMEM) */
	unsigned calls;       /* count calls */
	size_t   asked;       /* suspects in the last call */
};

static void walk_fake(void *arg, uint32_t cache_id,
		      void (*add)(void *ctx, uint64_t off, const char *where), void *ctx)
{
	struct fake_holders *fh = arg;

	(void)cache_id;
	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < fh->seen[k]; i++)
			add(ctx, fh->off[k], "a test magazine");
}

static int count_fake(void *arg, uint32_t cache_id, const uint64_t *offs, size_t n,
		      uint8_t *held)
{
	struct fake_holders *fh = arg;

	(void)cache_id;
	fh->calls++;
	fh->asked = n;
	for (size_t i = 0; i < n; i++) {
		assert_true(i == 0 || offs[i - 1] < offs[i]); /* sorted, distinct */
		held[i] = 0;
		for (unsigned k = 0; k < 2; k++)
			if (offs[i] == fh->off[k] && fh->calls >= fh->from_call && !fh->fail)
				held[i] = (uint8_t)fh->held[k];
	}
	return fh->fail ? -ENOMEM : 0;
}

static unsigned validate_fake(struct fx *f, struct fake_holders *fh, unsigned seen,
			      unsigned held, struct tu_report *r)
{
	unsigned bad;

	fh->seen[0] = seen;
	fh->held[0] = held;
	fh->calls = 0;
	memset(r, 0, sizeof(*r));
	bad = sm_validate(&f->a, walk_fake, count_fake, fh, tu_report, r);
	assert_int_equal(bad, r->count);
	return bad;
}

static void test_validate_count(void **state)
{
	struct fx *f = *state;
	struct fake_holders fh = { 0 };
	struct victim v;
	struct tu_report r;

	victim_build(f, &v);
	fh.off[0] = v.objs[3];
	fh.off[1] = v.objs[5];

	/* Seen once: no suspect, count not asked. */
	assert_int_equal(validate_fake(f, &fh, 1, 2, &r), 0);
	assert_int_equal(fh.calls, 0);
	/* Seen twice, moved (count 1, or 0: gone from both): clean, after four tries. */
	assert_int_equal(validate_fake(f, &fh, 2, 1, &r), 0);
	assert_int_equal(fh.calls, 4);
	assert_int_equal(validate_fake(f, &fh, 2, 0, &r), 0);
	/* Held twice at once: one report, whether the walk saw it twice or three times. */
	assert_int_equal(validate_fake(f, &fh, 2, 2, &r), 1);
	assert_true(tu_report_has(&r, "cached twice (twice in the magazines)"));
	assert_int_equal(fh.calls, 1);
	assert_int_equal(validate_fake(f, &fh, 3, 2, &r), 1);
	assert_int_equal(fh.asked, 1);
	/* Confirmed only at the third try (a magazine busy at the first two). */
	fh.from_call = 3;
	assert_int_equal(validate_fake(f, &fh, 2, 2, &r), 1);
	assert_int_equal(fh.calls, 3);
	/* Two suspects, one held twice, one moved: one report; the other is asked about
	 * again, alone. */
	fh.from_call = 0;
	fh.seen[1] = 2;
	fh.held[1] = 1;
	assert_int_equal(validate_fake(f, &fh, 2, 2, &r), 1);
	assert_true(tu_report_has(&r, "cached twice (twice in the magazines)"));
	assert_int_equal(fh.calls, 4);
	assert_int_equal(fh.asked, 1);
	fh.seen[1] = 0;
	/* The count out of memory: said, and nothing reported as seen twice. */
	fh.fail = 1;
	assert_int_equal(validate_fake(f, &fh, 2, 2, &r), 1);
	assert_true(tu_report_has(&r, "out of memory confirming 1 object(s)"));
	assert_false(tu_report_has(&r, "cached twice"));
	fh.fail = 0;
	/* Without count the walks decide: a double sighting every walk is reported. */
	fh.seen[0] = 2;
	memset(&r, 0, sizeof(r));
	assert_int_equal(sm_validate(&f->a, walk_fake, NULL, &fh, tu_report, &r), 1);

	/* In the shared array and seen once by the walk: count 1 confirms it, count 0
	 * (it moved on since) does not. */
	E(sm_node_lock(&f->a, v.c, 0));
	sm_shared(&f->a, v.cn)[v.cn->n_shared_avail++] = v.objs[3];
	sm_node_unlock(v.c, 0);
	assert_int_equal(validate_fake(f, &fh, 1, 1, &r), 1);
	assert_true(tu_report_has(&r, "cached twice (in the shared array and a magazine)"));
	assert_int_equal(validate_fake(f, &fh, 1, 0, &r), 0);
	E(sm_node_lock(&f->a, v.c, 0));
	v.cn->n_shared_avail--;
	sm_node_unlock(v.c, 0);
	assert_clean(f);
}

static void test_validate_shared_free_obj(void **state)
{
	struct fx *f = *state;
	struct slab_page *pg;
	struct victim v;
	uint64_t off;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	pg = &f->a.pages[v.partial];
	assert_true(pg->pg_free < v.c->c_num);
	off = ((uint64_t)v.partial << SLAB_PAGE_SHIFT) + (uint64_t)pg->pg_free * v.c->c_size;
	sm_shared(&f->a, v.cn)[v.cn->n_shared_avail++] = off;
	sm_node_unlock(v.c, 0);
	assert_reported(f, "two lists", NULL);
	/* Repair drops a shared entry whose object is free in its slab. */
	node_repair(f, v.c);
	assert_int_equal(v.cn->n_shared_avail, 0);
	victim_repaired(f, &v);
}

static void test_validate_bufctl_range(void **state)
{
	struct fx *f = *state;
	struct victim v;
	uint64_t more[SLAB_BUFCTL8_MAX];
	uint16_t was;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	was = f->a.pages[v.partial].pg_free;
	f->a.pages[v.partial].pg_free = (uint16_t)(v.c->c_num + 5);
	sm_node_unlock(v.c, 0);
	assert_reported(f, "out of range", NULL);
	victim_repaired(f, &v);
	assert_int_equal(f->a.pages[v.partial].pg_free, was);
	assert_int_equal(f->a.pages[v.partial].pg_inuse, 5);
	/* The rebuilt chain hands out every free object of the slab, each once. */
	assert_true(v.c->c_num - 5 <= SM_ARRAY_SIZE(more));
	assert_int_equal(alloc_objs(f, v.c, more, v.c->c_num - 5), v.c->c_num - 5);
	for (unsigned i = 0; i < v.c->c_num - 5; i++)
		assert_int_equal(head_of(f, v.c, more[i], NULL), v.partial);
	assert_distinct(more, v.c->c_num - 5);
	assert_node(f, v.c, 0, 2, 0, 0, 0);
	assert_clean(f);
}

static void test_validate_wrong_list(void **state)
{
	struct fx *f = *state;
	struct victim v;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	f->a.pages[v.full].pg_state = PG_SLAB_PARTIAL;	/* still on the full list */
	sm_node_unlock(v.c, 0);
	assert_reported(f, "wrong list", "says list");
	victim_repaired(f, &v);
}

/* A list link pointing outside the arena: reported, not followed (validate must survive
 * any corruption), and repair relinks the lists. */
static void test_validate_broken_link(void **state)
{
	struct fx *f = *state;
	struct victim v;

	victim_build(f, &v);
	E(sm_node_lock(&f->a, v.c, 0));
	f->a.pages[v.partial].pg_next = SLAB_NIL;
	sm_node_unlock(v.c, 0);
	assert_reported(f, "broken", NULL);
	victim_repaired(f, &v);
	assert_int_equal(f->a.pages[v.partial].pg_next, v.partial);	/* alone on its list */
}

/* ---- 6. the slab tier's batched paths ----------------------------------------------- */

/* The bufctl chain of slab h as a list of indexes (at most max, stops at END or out of
 * range); returns its length. */
static unsigned chain_of(struct fx *f, const struct slab_cache_desc *c, uint32_t h,
			 unsigned *out, unsigned max)
{
	uint8_t *slab = sm_slab_addr(&f->a, h);
	unsigned x = f->a.pages[h].pg_free, n = 0;

	while (x < c->c_num && n < max) {
		out[n++] = x;
		x = sm_bufctl_get(c, slab, x);
	}
	return n;
}

/* An empty slab hands out objects 0, 1, 2, ... whatever order its chain is in, chains the
 * rest anew, and a corrupt chain stops alloc and parks its slab on the full list; for
 * 1-byte and 2-byte bufctl and for a SLAB_DEBUG cache (objects marked CACHED). */
static void alloc_empty_slab(struct fx *f, const char *name, size_t size, unsigned flags,
			     unsigned width)
{
	struct sm_arena *a = &f->a;
	struct sm_cache_params p = params(name, size);
	struct slab_cache_desc *c;
	unsigned num, k, got, idx[1024], mark;
	uint64_t *objs, seed = 7;
	uint32_t h;

	p.flags = flags;
	p.min_partial = 4;
	c = cache_new(f, &p);
	num = c->c_num;
	assert_true(num <= SM_ARRAY_SIZE(idx));
	mark = flags & SM_DEBUG ? BUFCTL_CACHED : BUFCTL_ACTIVE;
	assert_int_equal(c->c_bufctl_width, width);
	objs = calloc(num + 16, sizeof(*objs));
	assert_non_null(objs);
	assert_int_equal(sm_cache_grow(a, c->c_id, 0, 1), 1);

	/* Part of a fresh slab: 0 .. k-1, the rest chained k, k+1, ..., END. */
	k = num / 3;
	assert_int_equal(alloc_objs(f, c, objs, k), k);
	h = head_of(f, c, objs[0], NULL);
	for (unsigned i = 0; i < k; i++) {
		assert_int_equal(objs[i], ((uint64_t)h << SLAB_PAGE_SHIFT) + (uint64_t)i * c->c_size);
		assert_int_equal(sm_bufctl_get(c, sm_slab_addr(a, h), i), mark);
	}
	assert_int_equal(a->pages[h].pg_state, PG_SLAB_PARTIAL);
	assert_int_equal(a->pages[h].pg_inuse, k);
	assert_int_equal(chain_of(f, c, h, idx, num), num - k);
	for (unsigned i = 0; i < num - k; i++)
		assert_int_equal(idx[i], k + i);
	assert_node(f, c, 1, 0, 0, 0, num - k);
	assert_clean(f);

	/* The rest through the chain, then everything back in a shuffled order: an empty
	 * slab (kept: min_partial) with a scrambled chain. */
	assert_int_equal(alloc_objs(f, c, objs + k, num), num - k);
	assert_distinct(objs, num);
	assert_int_equal(a->pages[h].pg_state, PG_SLAB_FULL);
	for (unsigned i = num - 1; i > 0; i--) {
		unsigned j = (unsigned)(tu_rand(&seed) % (i + 1));
		uint64_t t = objs[i];

		objs[i] = objs[j];
		objs[j] = t;
	}
	assert_int_equal(free_block(f, c, objs, num), 0);
	assert_int_equal(a->pages[h].pg_state, PG_SLAB_FREE);
	assert_node(f, c, 0, 0, 1, 0, num);
	assert_clean(f);

	/* A whole empty slab in one go: 0 .. num-1 in order, no chain left. */
	assert_int_equal(alloc_objs(f, c, objs, num + 8), num);
	for (unsigned i = 0; i < num; i++)
		assert_int_equal(objs[i], ((uint64_t)h << SLAB_PAGE_SHIFT) + (uint64_t)i * c->c_size);
	assert_int_equal(a->pages[h].pg_state, PG_SLAB_FULL);
	assert_int_equal(a->pages[h].pg_free, BUFCTL_END);
	assert_node(f, c, 0, 1, 0, 0, 0);
	assert_clean(f);

	/* A corrupt chain: ten objects back (chain of ten), the third link broken.  Alloc
	 * takes the three objects before the break and parks the slab on the full list;
	 * repair rebuilds the chain from bufctl and the other seven come out again. */
	assert_int_equal(free_block(f, c, objs, 10), 0);
	assert_int_equal(chain_of(f, c, h, idx, num), 10);
	E(sm_node_lock(a, c, 0));
	sm_bufctl_set(c, sm_slab_addr(a, h), idx[2], num + 3);
	sm_node_unlock(c, 0);
	got = alloc_objs(f, c, objs + num, 10);
	assert_int_equal(got, 3);
	for (unsigned i = 0; i < 3; i++) {
		uint32_t ix;

		assert_int_equal(head_of(f, c, objs[num + i], &ix), h);
		assert_int_equal(ix, idx[i]);
	}
	assert_int_equal(a->pages[h].pg_state, PG_SLAB_FULL);
	assert_reported(f, "out of range", "wrong list");
	node_repair(f, c);
	assert_clean(f);
	assert_node(f, c, 1, 0, 0, 0, 7);
	assert_int_equal(alloc_objs(f, c, objs + num + 3, 10), 7);
	assert_distinct(objs + 10, num);	/* objs[0..9] came back as objs[num..] */
	assert_node(f, c, 0, 1, 0, 0, 0);

	/* Everything back: the slab empties, and the cache shuts down clean. */
	{
		uint64_t *back = calloc(num, sizeof(*back));
		unsigned nb = 0;
		uint64_t live = 1;

		assert_non_null(back);
		for (unsigned i = 10; i < num; i++)
			back[nb++] = objs[i];
		for (unsigned i = 0; i < 10; i++)
			back[nb++] = objs[num + i];
		assert_int_equal(nb, num);
		assert_int_equal(free_block(f, c, back, nb), 0);
		free(back);
		assert_node(f, c, 0, 0, 1, 0, num);
		assert_clean(f);
		E(sm_cache_shutdown(a, c->c_id, &live));
		assert_int_equal(live, 0);
	}
	free(objs);
}

static void test_alloc_empty_slab(void **state)
{
	struct fx *f = *state;

	alloc_empty_slab(f, "empty-w1", 64, 0, 1);
	alloc_empty_slab(f, "empty-w2", 8, 0, 2);
	alloc_empty_slab(f, "empty-dbg", 64, SM_DEBUG | SM_RED_ZONE | SM_POISON, 1);
	alloc_empty_slab(f, "empty-dbg2", 8, SM_DEBUG, 2);
}

/* free_block as it was written before the slab tier was tuned: one object at a time
 * through the public helpers (cache_from_obj, slab_put_obj, the four outcomes).  The
 * tuned sm_do_free_block must leave every byte it owns exactly as this does. */
static struct slab_list *ref_list(struct slab_cache_node *n, uint8_t state)
{
	return state == PG_SLAB_PARTIAL ? &n->n_partial : state == PG_SLAB_FULL ? &n->n_full :
	       state == PG_SLAB_FREE ? &n->n_free : &n->n_discard;
}

static void ref_move(struct sm_arena *a, struct slab_cache_node *n, uint32_t h, uint8_t to)
{
	sm_list_del(a->pages, ref_list(n, a->pages[h].pg_state), h);
	a->pages[h].pg_state = to;
	sm_list_add_tail(a->pages, ref_list(n, to), h);
}

static unsigned ref_free_block(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			       const uint64_t *objs, unsigned n)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	const struct slab_node_region *r = sm_region(a, node);
	unsigned refused = 0;

	for (unsigned i = 0; i < n; i++) {
		struct slab_page *pg;
		uint32_t h, ix;
		unsigned e;
		int bad = -1;

		if (sm_obj_lookup(a, c, objs[i], &h, &ix) != OBJ_OK ||
		    h - r->nr_first_page >= r->nr_nr_pages)
			bad = STAT_INVALID_FREE;
		else if (a->pages[h].pg_state != PG_SLAB_PARTIAL &&
			 a->pages[h].pg_state != PG_SLAB_FULL)
			bad = STAT_DOUBLE_FREE;
		else if ((e = sm_bufctl_get(c, sm_slab_addr(a, h), ix)) != BUFCTL_ACTIVE &&
			 e != BUFCTL_CACHED)
			bad = STAT_DOUBLE_FREE;
		if (bad >= 0) {
			c->c_stat[bad]++;
			refused++;
			continue;
		}
		pg = &a->pages[h];
		sm_bufctl_set(c, sm_slab_addr(a, h), ix, pg->pg_free);
		pg->pg_free = (uint16_t)ix;
		pg->pg_inuse--;
		cn->n_free_objects++;
		if (pg->pg_inuse == 0) {
			if (cn->n_free.l_count >= c->c_min_partial &&
			    cn->n_free_objects > cn->n_free_limit) {
				ref_move(a, cn, h, PG_SLAB_DISCARD);
				cn->n_free_objects -= c->c_num;
			} else {
				ref_move(a, cn, h, PG_SLAB_FREE);
			}
		} else if (pg->pg_state == PG_SLAB_FULL) {
			ref_move(a, cn, h, PG_SLAB_PARTIAL);
		}
	}
	return refused;
}

/* The slab of an object of c, or (for anything else) the page it falls in. */
static uint32_t head_or_page(struct sm_arena *a, const struct slab_cache_desc *c, uint64_t off)
{
	uint32_t h, i;

	return sm_obj_lookup(a, c, off, &h, &i) == OBJ_OK ? h : (uint32_t)(off >> SLAB_PAGE_SHIFT);
}

#define REF_CACHES 4
#define REF_NODES  2
#define REF_HELD   4096

/* Arenas x (tuned) and y (reference) went through the same steps: they must agree on
 * every page descriptor, every slab's bufctl (with full, every byte of the node regions),
 * and each cache's counters and lists. */
static void assert_same_arenas(struct sm_arena *x, struct sm_arena *y,
			       struct slab_cache_desc *const *cx,
			       struct slab_cache_desc *const *cy, int full, int step)
{
	uint64_t data = (uint64_t)x->hdr->ah_meta_pages << SLAB_PAGE_SHIFT;

	if (memcmp(x->pages, y->pages, (size_t)x->hdr->ah_nr_pages * sizeof(struct slab_page)))
		fail_msg("step %d: page descriptors differ from the reference", step);
	for (uint32_t p = x->hdr->ah_meta_pages; p < x->hdr->ah_nr_pages; p++) {
		const struct slab_page *pg = &x->pages[p];
		const struct slab_cache_desc *c;

		if (!pg->pg_tag || pg->pg_state < PG_SLAB_PARTIAL)
			continue;
		c = sm_cache(x, SLAB_TAG_CID1(pg->pg_tag) - 1u);
		if (memcmp(sm_slab_addr(x, p) + c->c_bufctl_off, sm_slab_addr(y, p) + c->c_bufctl_off,
			   (size_t)c->c_num * c->c_bufctl_width))
			fail_msg("step %d: cache %s: slab %u: bufctl differs from the reference",
				 step, c->c_name, p);
	}
	if (full && memcmp(x->base + data, y->base + data, x->size - data))
		fail_msg("step %d: slab memory differs from the reference", step);
	for (unsigned k = 0; k < REF_CACHES; k++) {
		if (memcmp(cx[k]->c_stat, cy[k]->c_stat, sizeof(cx[k]->c_stat)))
			fail_msg("step %d: cache %s: counters differ from the reference", step,
				 cx[k]->c_name);
		for (unsigned nd = 0; nd < REF_NODES; nd++) {
			const struct slab_cache_node *p = &cx[k]->c_nodes[nd];
			const struct slab_cache_node *q = &cy[k]->c_nodes[nd];

			if (memcmp(&p->n_partial, &q->n_partial, sizeof(p->n_partial)) ||
			    memcmp(&p->n_full, &q->n_full, sizeof(p->n_full)) ||
			    memcmp(&p->n_free, &q->n_free, sizeof(p->n_free)) ||
			    memcmp(&p->n_discard, &q->n_discard, sizeof(p->n_discard)) ||
			    p->n_free_objects != q->n_free_objects)
				fail_msg("step %d: cache %s node %u: lists or free_objects differ from "
					 "the reference (free_objects %llu vs %llu)", step,
					 cx[k]->c_name, nd, (unsigned long long)p->n_free_objects,
					 (unsigned long long)q->n_free_objects);
		}
	}
}

/* Random batches (runs from one slab, shuffled objects, LIFO tails, slabs coming back
 * later in a batch, double frees inside a batch and of objects already in their slab,
 * misaligned offsets, bufctl offsets, objects of another cache and of the other node,
 * offsets outside the arena) through sm_do_free_block on one arena and ref_free_block on
 * a twin; alloc, grants and reaping are the same code on both.  After every step the
 * twins must be identical, and the tuned one must validate. */
static void test_free_block_reference(void **state)
{
	struct fx *f = *state;
	static const struct { const char *name; size_t size; unsigned flags; } cs[REF_CACHES] = {
		{ "ref-w1", 64, 0 },                  /* 1-byte bufctl, order 0 */
		{ "ref-w2", 8, 0 },                   /* 2-byte bufctl */
		{ "ref-order", 1000, 0 },             /* several pages: tails */
		{ "ref-dbg", 96, SM_DEBUG },          /* CACHED marks */
	};
	struct sm_arena *x = &f->a, *y = &f->b;
	struct slab_cache_desc *cx[REF_CACHES], *cy[REF_CACHES];
	uint64_t *held[REF_CACHES][REF_NODES], *batch, seed = 0x5eed;
	unsigned nheld[REF_CACHES][REF_NODES] = { { 0 } };
	unsigned long steps = tu_scaled(3000);

	/* Two nodes, so objects of the other node are refused. */
	sm_arena_detach(&f->a);
	tu_arena(x, 16u << 20, REF_NODES);
	tu_arena(y, 16u << 20, REF_NODES);
	x->grow = y->grow = NULL;
	for (unsigned k = 0; k < REF_CACHES; k++) {
		struct sm_cache_params p = params(cs[k].name, cs[k].size);
		uint32_t ix = SLAB_NIL, iy = SLAB_NIL;
		bool ex;

		p.flags = cs[k].flags;
		p.min_partial = 2;
		E(sm_cache_create(x, &p, &ix, &ex));
		E(sm_cache_create(y, &p, &iy, &ex));
		assert_int_equal(ix, iy);
		cx[k] = sm_cache(x, ix);
		cy[k] = sm_cache(y, iy);
		for (unsigned nd = 0; nd < REF_NODES; nd++) {
			held[k][nd] = calloc(REF_HELD, sizeof(uint64_t));
			assert_non_null(held[k][nd]);
		}
	}
	assert_int_equal(cx[0]->c_bufctl_width, 1);
	assert_int_equal(cx[1]->c_bufctl_width, 2);
	assert_true(cx[2]->c_order >= 1);
	batch = calloc(2 * REF_HELD, sizeof(uint64_t));
	assert_non_null(batch);

	for (unsigned long step = 0; step < steps; step++) {
		unsigned k = (unsigned)(tu_rand(&seed) % REF_CACHES);
		unsigned nd = (unsigned)(tu_rand(&seed) % REF_NODES);
		struct slab_cache_desc *c = cx[k];
		uint64_t *h = held[k][nd];
		unsigned *nh = &nheld[k][nd], op = (unsigned)(tu_rand(&seed) % 8);

		if (op < 3 || *nh < 8) {
			/* alloc, granting a few slabs to both twins when the node runs dry */
			unsigned want = 1 + (unsigned)(tu_rand(&seed) % (2 * c->c_num + 2)), gx, gy;

			if (want > REF_HELD - *nh)
				want = REF_HELD - *nh;
			E(sm_node_lock(x, cx[k], nd));
			E(sm_node_lock(y, cy[k], nd));
			gx = sm_do_alloc_objs(x, cx[k], nd, h + *nh, want);
			gy = sm_do_alloc_objs(y, cy[k], nd, batch, want);
			sm_node_unlock(cy[k], nd);
			sm_node_unlock(cx[k], nd);
			assert_int_equal(gx, gy);
			assert_memory_equal(h + *nh, batch, gx * sizeof(uint64_t));
			*nh += gx;
			if (gx < want) {
				unsigned nr = 1 + (unsigned)(tu_rand(&seed) % 3);
				int rx = sm_cache_grow(x, cx[k]->c_id, nd, nr);

				assert_int_equal(sm_cache_grow(y, cy[k]->c_id, nd, nr), rx);
			}
		} else if (op == 7) {
			/* reap the discard queues (and sometimes the kept empty slabs) */
			int all = (int)(tu_rand(&seed) % 4 == 0);

			E(sm_node_lock(x, cx[k], nd));
			E(sm_node_lock(y, cy[k], nd));
			assert_int_equal(sm_do_discard(x, cx[k], nd, all),
					 sm_do_discard(y, cy[k], nd, all));
			sm_node_unlock(cy[k], nd);
			sm_node_unlock(cx[k], nd);
		} else {
			/* a batch */
			unsigned m = 1 + (unsigned)(tu_rand(&seed) % (*nh < 300 ? *nh : 300));
			unsigned pat = (unsigned)(tu_rand(&seed) % 4), nb = 0, rx, ry, kept = 0;

			if (pat == 0) {            /* newest first (LIFO): long runs */
				for (unsigned i = 0; i < m; i++)
					batch[nb++] = h[*nh - 1 - i];
			} else if (pat == 1) {     /* oldest first */
				for (unsigned i = 0; i < m; i++)
					batch[nb++] = h[i];
			} else if (pat == 2) {     /* sorted: runs, ascending */
				for (unsigned i = 0; i < m; i++)
					batch[nb++] = h[*nh - 1 - i];
				qsort(batch, nb, sizeof(uint64_t), cmp_u64);
			} else {                   /* shuffled */
				for (unsigned i = 0; i < m; i++)
					batch[nb++] = h[(unsigned)(tu_rand(&seed) % *nh)];
			}
			/* Wrong ones, anywhere in the batch. */
			for (unsigned extra = (unsigned)(tu_rand(&seed) % 6); extra > 0; extra--) {
				uint64_t o = batch[(unsigned)(tu_rand(&seed) % nb)], bad;
				uint32_t hd = head_or_page(x, c, o);
				unsigned other = (unsigned)(tu_rand(&seed) % REF_CACHES);

				switch (tu_rand(&seed) % 8) {
				case 0: bad = o; break;                            /* twice */
				case 1: bad = o + 8; break;                        /* misaligned */
				case 2: bad = ((uint64_t)hd << SLAB_PAGE_SHIFT) + c->c_bufctl_off; break;
				case 3: bad = nheld[other][nd] ? held[other][nd][0] : 0; break;
				case 4: bad = nheld[k][!nd] ? held[k][!nd][0] : 1; break; /* other node */
				case 5: bad = x->size + 64; break;
				case 6: bad = UINT64_MAX - 7; break;
				default: bad = ((uint64_t)hd << SLAB_PAGE_SHIFT) +
					       (uint64_t)(tu_rand(&seed) % c->c_num) * c->c_size;
					 break;                                    /* maybe free */
				}
				if (nb < 2 * REF_HELD) {
					unsigned at = (unsigned)(tu_rand(&seed) % (nb + 1));

					memmove(&batch[at + 1], &batch[at], (nb - at) * sizeof(uint64_t));
					batch[at] = bad;
					nb++;
				}
			}
			E(sm_node_lock(x, cx[k], nd));
			E(sm_node_lock(y, cy[k], nd));
			rx = sm_do_free_block(x, cx[k], nd, batch, nb);
			ry = ref_free_block(y, cy[k], nd, batch, nb);
			sm_node_unlock(cy[k], nd);
			sm_node_unlock(cx[k], nd);
			if (rx != ry)
				fail_msg("step %lu: free_block refused %u, the reference %u", step, rx, ry);
			/* Keep what is still out (the batch may have held repeats and strays). */
			for (unsigned i = 0; i < *nh; i++) {
				uint32_t hh = 0, ix = 0;
				unsigned e;

				assert_int_equal(sm_obj_lookup(x, c, h[i], &hh, &ix), OBJ_OK);
				e = sm_bufctl_get(c, sm_slab_addr(x, hh), ix);
				if (e == BUFCTL_ACTIVE || e == BUFCTL_CACHED)
					h[kept++] = h[i];
			}
			*nh = kept;
		}
		assert_same_arenas(x, y, cx, cy, step % 32 == 0, (int)step);
		if (step % 64 == 0)
			assert_clean(f);
	}
	/* Everything back; both twins end with empty slabs only. */
	for (unsigned k = 0; k < REF_CACHES; k++)
		for (unsigned nd = 0; nd < REF_NODES; nd++) {
			E(sm_node_lock(x, cx[k], nd));
			E(sm_node_lock(y, cy[k], nd));
			assert_int_equal(sm_do_free_block(x, cx[k], nd, held[k][nd], nheld[k][nd]), 0);
			assert_int_equal(ref_free_block(y, cy[k], nd, held[k][nd], nheld[k][nd]), 0);
			assert_int_equal(cx[k]->c_nodes[nd].n_partial.l_count +
					 cx[k]->c_nodes[nd].n_full.l_count, 0);
			sm_node_unlock(cy[k], nd);
			sm_node_unlock(cx[k], nd);
			free(held[k][nd]);
		}
	assert_same_arenas(x, y, cx, cy, 1, -1);
	assert_clean(f);
	free(batch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_free_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_validation_multipage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_block_outcomes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tiers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_give_back_mixed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_limit_adapts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mag_resize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mag_streak, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mag_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handover_touch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handover_touch_debug, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_free_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_list_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_shared_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_mag_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_shared_free_obj, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_bufctl_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_wrong_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validate_broken_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_empty_slab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_block_reference, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
