/* test_geometry.c - guards sm_calculate_geometry (shm/slab.h), the slab layout every cache
 * is built on (the kernel's calculate_order).
 *
 * What must never regress, for every object size and alignment a cache may ask for:
 *   - the slot holds the object and keeps the alignment; the objects and the bufctl array
 *     fit in the slab, objects first, and no object overlaps the bufctl;
 *   - waste stays at or below 1/16 of the slab, within SLAB_MAX_ORDER;
 *   - 1-byte bufctl entries exactly when the slab holds few enough objects for them;
 *   - the reciprocal turns every object offset into its index without a division, and maps
 *     every other offset to the object that contains it, so cache_from_obj (sm_obj_lookup)
 *     refuses misaligned frees;
 *   - libslab's fast free (objcheck.h: one multiplication, one compare) accepts exactly
 *     the object starts: never an offset inside an object, past the last one or in the
 *     bufctl (checked against the division, over whole slabs where they are small);
 *   - bad sizes and alignments are refused with -EINVAL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "objcheck.h"
#include "slabs.h"

/* Random non-multiple offsets tried per geometry (scaled down under valgrind); whole slabs
 * up to this many bytes get every offset checked by the fast free's test. */
static unsigned long nr_random_deltas;
static uint64_t exhaustive_bytes;
static uint64_t seed = 0x9e3779b97f4a7c15ULL;

/* The index sm_obj_lookup computes for an offset delta from the slab start. */
static uint64_t recip_index(const struct sm_geometry *g, uint64_t delta)
{
	return (delta * g->reciprocal) >> 32;
}

/* A tiny fake arena for sm_obj_lookup (slab.h), which reads only a->size and a->pages:
 * page 0 is not a slab, pages [1, 1 + 2^order) are one slab of cache FAKE_ID, the page
 * after it is not a slab, and the arena ends there. */
#define FAKE_ID   7u
#define FAKE_HEAD 1u
static struct slab_page fake_pages[1 + (1u << SLAB_MAX_ORDER) + 1];

struct fake {
	struct sm_arena        a;
	struct slab_cache_desc c;
};

static void fake_init(struct fake *f, const struct sm_geometry *g)
{
	uint32_t n = 1u << g->order;

	memset(f, 0, sizeof(*f));
	memset(fake_pages, 0, sizeof(fake_pages));
	for (uint32_t i = 0; i < n; i++) {
		struct slab_page *pg = &fake_pages[FAKE_HEAD + i];

		pg->pg_tag = SLAB_TAG(FAKE_ID + 1, 0);
		pg->pg_state = i ? PG_TAIL : PG_SLAB_PARTIAL;
		pg->pg_order = i ? 0 : (uint8_t)g->order;
		pg->pg_next = i ? FAKE_HEAD : SLAB_NIL;
		pg->pg_prev = SLAB_NIL;
	}
	fake_pages[FAKE_HEAD + n].pg_state = PG_BLOCK;
	f->a.pages = fake_pages;
	f->a.size = (uint64_t)(FAKE_HEAD + n + 1) << SLAB_PAGE_SHIFT;
	f->a.fd = -1;
	f->c.c_id = FAKE_ID;
	f->c.c_size = g->size;
	f->c.c_align = g->align;
	f->c.c_order = g->order;
	f->c.c_num = g->num;
	f->c.c_reciprocal = g->reciprocal;
	f->c.c_bufctl_off = g->bufctl_off;
	f->c.c_bufctl_width = g->bufctl_width;
}

static enum sm_obj_err fake_lookup(const struct fake *f, uint64_t delta, uint32_t *idx)
{
	uint32_t head = SLAB_NIL;
	enum sm_obj_err e;

	*idx = SLAB_NIL;
	e = sm_obj_lookup(&f->a, &f->c, ((uint64_t)FAKE_HEAD << SLAB_PAGE_SHIFT) + delta,
			  &head, idx);
	if (e == OBJ_OK && head != FAKE_HEAD)
		fail_msg("offset %llu resolved to head %u, not %u", (unsigned long long)delta,
			 head, FAKE_HEAD);
	return e;
}

/* delta is not an object start.  The reciprocal is ceil(2^32 / size), exact for object
 * starts only: elsewhere it gives the object containing delta or, near the end of an
 * object, the next one -- never anything else.  Either way the lookup must refuse it. */
static void check_misaligned(size_t osize, size_t align, const struct fake *f,
			     const struct sm_geometry *g, uint64_t delta)
{
	uint64_t idx = recip_index(g, delta), q = delta / g->size;
	uint32_t li;
	enum sm_obj_err e;

	if (idx != q && idx != q + 1)
		fail_msg("size %zu align %zu: offset %llu maps to index %llu, object %llu "
			 "contains it", osize, align, (unsigned long long)delta,
			 (unsigned long long)idx, (unsigned long long)q);
	{
		struct sm_objcheck oc = sm_objcheck_make(g->size, g->num);

		if (sm_objcheck_ok(&oc, delta))
			fail_msg("size %zu align %zu: the fast free's test accepts misaligned "
				 "offset %llu", osize, align, (unsigned long long)delta);
	}
	e = fake_lookup(f, delta, &li);
	if (e != OBJ_MISALIGNED)
		fail_msg("size %zu align %zu: misaligned offset %llu: lookup gave %d (index %u)",
			 osize, align, (unsigned long long)delta, e, li);
}

/* Every invariant of layout.h's struct slab_cache_desc for one computed geometry. */
static void check_geometry(size_t osize, size_t align, const struct sm_geometry *g)
{
	uint64_t slab = (uint64_t)SLAB_PAGE_SIZE << g->order;
	uint64_t used, waste, recip;
	struct fake f;
	uint32_t li;

	if (!align)
		align = SLAB_MIN_ALIGN;

#define G_FAIL(...)                                                                     \
	fail_msg("size %zu align %zu (slot %u order %u num %u bufctl_off %u width %u "    \
		 "waste %u): %s", osize, align, g->size, g->order, g->num, g->bufctl_off,  \
		 g->bufctl_width, g->waste, __VA_ARGS__)

	if (g->order > SLAB_MAX_ORDER)
		G_FAIL("order above SLAB_MAX_ORDER");
	if (g->align < align || g->align < SLAB_MIN_ALIGN || (g->align & (g->align - 1)))
		G_FAIL("alignment not kept");
	if (g->size < osize || g->size % g->align || g->size % align)
		G_FAIL("slot does not hold the object at its alignment");
	/* no flags: the slot is the object rounded up to its alignment, no more */
	if (g->size >= osize + g->align)
		G_FAIL("slot padded beyond the alignment");
	if (g->num < 1)
		G_FAIL("no object fits");
	if (g->bufctl_width != 1 && g->bufctl_width != 2)
		G_FAIL("bufctl width not 1 or 2");
	if ((g->bufctl_width == 1) != (g->num <= SLAB_BUFCTL8_MAX))
		G_FAIL("bufctl width does not match the object count");
	if (g->num > SLAB_MAX_OBJS)
		G_FAIL("more objects than 16-bit bufctl entries can name");
	if ((uint64_t)g->num * g->size > g->bufctl_off)
		G_FAIL("objects overlap the bufctl");
	if (g->bufctl_off % g->bufctl_width)
		G_FAIL("bufctl misaligned");
	if ((uint64_t)g->bufctl_off + (uint64_t)g->num * g->bufctl_width > slab)
		G_FAIL("bufctl runs past the slab");
	used = (uint64_t)g->num * (g->size + g->bufctl_width);
	waste = slab - used;
	if (g->waste != waste)
		G_FAIL("waste is not slab - num * (size + bufctl width)");
	if (waste * 16 > slab)
		G_FAIL("waste above 1/16 of the slab");
	recip = ((1ull << 32) + g->size - 1) / g->size;
	if (g->reciprocal != recip)
		G_FAIL("reciprocal is not ceil(2^32 / size)");

	/* The fast free's test agrees with the division at every offset of small slabs
	 * (larger ones: object starts, the offsets past them, and the misaligned ones below). */
	{
		struct sm_objcheck oc = sm_objcheck_make(g->size, g->num);

		if (slab <= exhaustive_bytes)
			for (uint64_t d = 0; d < slab; d++)
				if (sm_objcheck_ok(&oc, d) != (d % g->size == 0 && d / g->size < g->num))
					fail_msg("size %zu align %zu: the fast free's test is wrong at "
						 "offset %llu", osize, align, (unsigned long long)d);
		for (uint64_t i = 0; i < g->num; i++)
			if (!sm_objcheck_ok(&oc, i * g->size))
				G_FAIL("the fast free's test refuses an object start");
		for (uint64_t d = (uint64_t)g->num * g->size; d < slab; d += g->size)
			if (sm_objcheck_ok(&oc, d) || sm_objcheck_ok(&oc, slab - 1))
				G_FAIL("the fast free's test accepts an offset past the objects");
	}

	/* Every object lies before the bufctl, its offset maps back to its index, and the
	 * free-time lookup (cache_from_obj) accepts it, from whichever page it starts in. */
	fake_init(&f, g);
	for (uint64_t i = 0; i < g->num; i++) {
		uint64_t delta = i * g->size;

		if (delta + g->size > g->bufctl_off)
			G_FAIL("an object is not fully before the bufctl");
		if (recip_index(g, delta) != i)
			fail_msg("size %zu align %zu: object %llu at %llu maps to index %llu",
				 osize, align, (unsigned long long)i, (unsigned long long)delta,
				 (unsigned long long)recip_index(g, delta));
		if (fake_lookup(&f, delta, &li) != OBJ_OK || li != i)
			fail_msg("size %zu align %zu: lookup of object %llu failed (index %u)",
				 osize, align, (unsigned long long)i, li);
	}
	/* Offsets at or past the end of the last object map to an index >= num, and the
	 * lookup refuses them: the slot after the last, the bufctl, the slab's last byte. */
	{
		uint64_t past[] = { (uint64_t)g->num * g->size, g->bufctl_off, slab - 1 };

		for (unsigned j = 0; j < SM_ARRAY_SIZE(past); j++) {
			if (recip_index(g, past[j]) < g->num)
				G_FAIL("an offset past the objects maps inside them");
			if (fake_lookup(&f, past[j], &li) != OBJ_MISALIGNED)
				G_FAIL("an offset past the objects is not refused");
		}
	}
	/* Not this slab: another cache's id, the page after the slab, the arena's end. */
	f.c.c_id = FAKE_ID + 1;
	if (fake_lookup(&f, 0, &li) != OBJ_WRONG_CACHE)
		G_FAIL("an object of another cache is not refused");
	f.c.c_id = FAKE_ID;
	if (fake_lookup(&f, slab, &li) != OBJ_NOT_SLAB)
		G_FAIL("the page after the slab is taken for a slab page");
	if (fake_lookup(&f, slab + SLAB_PAGE_SIZE, &li) != OBJ_FOREIGN)
		G_FAIL("an offset past the arena is not refused");
	/* Misaligned offsets: around some object starts, and random ones. */
	{
		uint64_t step = g->num > 64 ? g->num / 64 : 1;
		uint64_t in[] = { 1, 7, 8, g->size / 2, g->size - 8, g->size - 1 };

		for (uint64_t i = 0; i < g->num; i += step)
			for (unsigned j = 0; j < SM_ARRAY_SIZE(in); j++)
				if (in[j] % g->size)
					check_misaligned(osize, align, &f, g,
							 i * g->size + in[j]);
		for (unsigned long j = 0; j < nr_random_deltas; j++) {
			uint64_t delta = tu_rand(&seed) % ((uint64_t)g->num * g->size);

			if (delta % g->size)
				check_misaligned(osize, align, &f, g, delta);
		}
	}
#undef G_FAIL
}

static void geometry_ok(size_t osize, size_t align, struct sm_geometry *g)
{
	int rc;

	memset(g, 0xa5, sizeof(*g));
	rc = sm_calculate_geometry(osize, align, 0, g);
	if (rc)
		fail_msg("sm_calculate_geometry(%zu, %zu) = %d (%s)", osize, align, rc,
			 strerror(-rc));
	check_geometry(osize, align, g);
}

static void all_alignments(size_t osize, unsigned long *n)
{
	struct sm_geometry g;

	for (size_t align = 8; align <= SLAB_MAX_ALIGN; align <<= 1) {
		geometry_ok(osize, align, &g);
		(*n)++;
	}
}

static void test_small_sizes(void **state)
{
	unsigned long n = 0;

	(void)state;
	for (size_t osize = 8; osize <= 1024; osize++)
		all_alignments(osize, &n);
	assert_int_equal(n, (1024 - 8 + 1) * 10);
	printf("small sizes: %lu geometries checked\n", n);
}

static void test_large_sizes(void **state)
{
	unsigned long n = 0;

	(void)state;
	/* every power of two and its neighbours at +-8 and +-1 */
	for (size_t p = 16; p <= 65536; p <<= 1) {
		all_alignments(p - 8, &n);
		all_alignments(p - 1, &n);
		all_alignments(p, &n);
		if (p < 65536) {
			all_alignments(p + 1, &n);
			all_alignments(p + 8, &n);
		}
	}
	/* a geometric spread of unround sizes above 1 KiB */
	for (size_t s = 1025; s <= 65536; s += s / 37 + 3)
		all_alignments(s, &n);
	/* every multiple of 512 up to 64 KiB: where the object count per order steps */
	for (size_t s = 1536; s <= 65536; s += 512)
		all_alignments(s, &n);
	printf("large sizes: %lu geometries checked\n", n);
}

static void test_huge_sizes(void **state)
{
	static const size_t sizes[] = {
		65536 + 8, 100000, 128 << 10, (128 << 10) + 8, 200000, (256 << 10) - 4096 - 1,
		(256 << 10) - 8, SLAB_MAX_OBJECT_SIZE,
	};
	unsigned long n = 0;

	(void)state;
	for (unsigned i = 0; i < SM_ARRAY_SIZE(sizes); i++)
		all_alignments(sizes[i], &n);
	printf("huge sizes: %lu geometries checked\n", n);
}

static void test_small_alignments(void **state)
{
	struct sm_geometry g, g8;

	(void)state;
	/* 0 means 8; 1, 2 and 4 are powers of two and give the same slab as 8 */
	geometry_ok(100, 8, &g8);
	for (size_t align = 0; align < 8; align = align ? align << 1 : 1) {
		geometry_ok(100, align, &g);
		assert_int_equal(g.align, SLAB_MIN_ALIGN);
		assert_memory_equal(&g, &g8, sizeof(g));
	}
}

static void test_errors(void **state)
{
	static const struct {
		size_t size, align;
	} bad[] = {
		{ 0, 8 },
		{ 0, 0 },
		{ SLAB_MAX_OBJECT_SIZE + 1, 8 },
		{ SLAB_MAX_OBJECT_SIZE + 8, 8 },
		{ (size_t)1 << 32, 8 },
		{ SIZE_MAX, 8 },
		{ 64, 3 },
		{ 64, 6 },
		{ 64, 24 },
		{ 64, 4097 },
		{ 64, 8192 },
		{ 64, (size_t)1 << 40 },
		{ 64, SIZE_MAX },
	};
	struct sm_geometry g;

	(void)state;
	for (unsigned i = 0; i < SM_ARRAY_SIZE(bad); i++) {
		int rc = sm_calculate_geometry(bad[i].size, bad[i].align, 0, &g);

		if (rc != -EINVAL)
			fail_msg("sm_calculate_geometry(%zu, %zu) = %d, expected -EINVAL",
				 bad[i].size, bad[i].align, rc);
	}
	/* the boundaries themselves are fine */
	E(sm_calculate_geometry(SLAB_MAX_OBJECT_SIZE, 8, 0, &g));
	E(sm_calculate_geometry(64, SLAB_MAX_ALIGN, 0, &g));
	E(sm_calculate_geometry(1, 8, 0, &g));
}

static void test_64_byte_objects(void **state)
{
	struct sm_geometry g;

	(void)state;
	geometry_ok(64, 8, &g);
	printf("64-byte objects: order %u, %u objects per slab, slot %u, bufctl at %u "
	       "(%u byte(s) each), waste %u bytes of %u\n", g.order, g.num, g.size,
	       g.bufctl_off, g.bufctl_width, g.waste, SLAB_PAGE_SIZE << g.order);
	assert_int_equal(g.size, 64);
	assert_int_equal(g.bufctl_width, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_64_byte_objects),
		cmocka_unit_test(test_small_alignments),
		cmocka_unit_test(test_small_sizes),
		cmocka_unit_test(test_large_sizes),
		cmocka_unit_test(test_huge_sizes),
	};

	nr_random_deltas = tu_scaled(64);
	exhaustive_bytes = tu_scaled(64) >= 64 ? 4 * SLAB_PAGE_SIZE : 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
