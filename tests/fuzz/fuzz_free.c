/* fuzz_free.c - libFuzzer target: arbitrary offsets through the free path's validation
 * (cache_from_obj = sm_obj_lookup, the magazine push sm_mag_push, and free_block =
 * sm_do_free_block) on a real arena (8 MiB, 2 nodes) with three caches of different
 * geometry (8-byte objects with 1-byte bufctl; 200-byte objects aligned to 64; 3000-byte
 * objects in multi-page slabs) and objects really allocated from them.
 *
 * The input is a little program: allocate (from the slabs, or through a magazine refill
 * that asks for fresh slabs), look up, free through a magazine (a burst of pushes, then the
 * magazine is drained to the slabs), free a batch straight to free_block, shrink, validate.
 * The offsets it frees are raw numbers, held objects, held objects plus a delta, objects of
 * the other caches, free objects of a held object's slab (double frees), page boundaries,
 * metadata and the arena's end.
 *
 * The model: `held` is the set of objects the program allocated and not yet freed.
 * It asserts:
 *   - sm_obj_lookup accepts exactly the object starts of that cache's slabs (an oracle that
 *     divides where the engine multiplies by a reciprocal), and finds the right slab/index;
 *   - sm_mag_push refuses every non-object (PUSH_INVALID), reports the freshest double free
 *     (PUSH_DOUBLE) and an object of the other node (PUSH_ALIEN) correctly;
 *   - free_block accepts exactly the held objects of its node, once each, and refuses
 *     everything else; after a magazine drain exactly the held objects pushed are free;
 *   - nothing that was not allocated is ever freed: every held object stays ACTIVE in its
 *     slab, a fresh allocation is never an object already held, and at the end of every
 *     input, once the held objects are freed, the caches count no object out and
 *     sm_validate() is clean.
 * Frees of free objects are fed only through paths that check the slab's bufctl (a drain
 * follows each burst at once): a stale double free left in a magazine while the object is
 * reallocated is the documented limit of the fast path without SLAB_DEBUG, not a finding.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "magazine.h"
#include "slabs.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NCACHE    3
#define NNODES    2
#define MAG_CAP   32
#define MAX_HELD  2048
#define MAX_OPS   256

static struct sm_arena A;
static struct slab_cache_desc *C[NCACHE];
static struct slab_mag *mag_free[NCACHE][NNODES], *mag_alloc[NCACHE][NNODES];

/* held objects per cache: an array and an open-addressing set (0 never is an object). */
static uint64_t held[NCACHE][MAX_HELD];
static unsigned nheld[NCACHE];
#define SET_SIZE 8192u
static uint64_t set[NCACHE][SET_SIZE];

#define FAIL(...)                                                                  \
	do {                                                                       \
		fprintf(stderr, "fuzz_free: " __VA_ARGS__);                        \
		fputc('\n', stderr);                                               \
		abort();                                                           \
	} while (0)

static unsigned set_slot(unsigned k, uint64_t off)
{
	unsigned i = (unsigned)((off * 0x9E3779B97F4A7C15ull) >> 51) & (SET_SIZE - 1);

	while (set[k][i] && set[k][i] != off)
		i = (i + 1) & (SET_SIZE - 1);
	return i;
}

static bool is_held(unsigned k, uint64_t off)
{
	return off && set[k][set_slot(k, off)] == off;
}

static void hold(unsigned k, uint64_t off)
{
	if (is_held(k, off))
		FAIL("allocation handed out %#llx of cache %u, which is already held",
		     (unsigned long long)off, k);
	held[k][nheld[k]++] = off;
	set[k][set_slot(k, off)] = off;
}

/* Remove from the set (backward-shift deletion) and the array. */
static void unhold(unsigned k, uint64_t off)
{
	unsigned i = set_slot(k, off), j;

	if (set[k][i] != off)
		FAIL("unhold of an object not held");
	set[k][i] = 0;
	for (j = (i + 1) & (SET_SIZE - 1); set[k][j]; j = (j + 1) & (SET_SIZE - 1)) {
		uint64_t v = set[k][j];
		unsigned want = set_slot(k, v); /* where it would go now */

		if (want != j) {
			set[k][want] = v;
			set[k][j] = 0;
		}
	}
	for (unsigned x = 0; x < nheld[k]; x++) {
		if (held[k][x] == off) {
			held[k][x] = held[k][--nheld[k]];
			return;
		}
	}
	FAIL("held array and set disagree");
}

/* ---- the oracle ------------------------------------------------------------------------ */

/* Is off the start of an object of cache k?  By division, from the page descriptors. */
static bool oracle(unsigned k, uint64_t off, uint32_t *head, uint32_t *idx)
{
	const struct slab_cache_desc *c = C[k];
	const struct slab_page *pg;
	uint32_t h;
	uint64_t delta;

	if (off >= A.size)
		return false;
	h = (uint32_t)(off >> SLAB_PAGE_SHIFT);
	pg = &A.pages[h];
	if (SLAB_TAG_CID1(pg->pg_tag) != c->c_id + 1)
		return false;
	if (pg->pg_state == PG_TAIL)
		h = pg->pg_next;
	delta = off - ((uint64_t)h << SLAB_PAGE_SHIFT);
	if (delta % c->c_size || delta / c->c_size >= c->c_num)
		return false;
	*head = h;
	*idx = (uint32_t)(delta / c->c_size);
	return true;
}

static unsigned bufctl_of(unsigned k, uint32_t head, uint32_t idx)
{
	return sm_bufctl_get(C[k], sm_slab_addr(&A, head), idx);
}

static void check_held(unsigned k, uint64_t off)
{
	uint32_t h, i;

	if (!oracle(k, off, &h, &i))
		FAIL("held object %#llx of cache %u is no object any more", (unsigned long long)off, k);
	if (bufctl_of(k, h, i) != BUFCTL_ACTIVE)
		FAIL("held object %#llx of cache %u is not ACTIVE in its slab (bufctl %#x): freed "
		     "without being freed", (unsigned long long)off, k, bufctl_of(k, h, i));
}

static void report(void *arg, const char *fmt, ...)
{
	va_list ap;

	(void)arg;
	va_start(ap, fmt);
	fputs("validate: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void validate(void)
{
	unsigned bad = sm_validate(&A, NULL, NULL, NULL, report, NULL);

	if (bad)
		FAIL("sm_validate: %u problems", bad);
}

/* ---- set-up ---------------------------------------------------------------------------- */

static int grow_direct(struct sm_arena *a, uint32_t id, unsigned node, unsigned nr, void *arg)
{
	int rc = sm_cache_grow(a, id, node, nr);

	(void)arg;
	return rc < 0 ? rc : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct sm_cache_params params[NCACHE] = {
		{ .name = "f8", .size = 8, .node = -1, .limit = 16, .batchcount = 8 },
		{ .name = "f200", .size = 200, .align = 64, .node = -1, .limit = 16, .batchcount = 8 },
		{ .name = "f3000", .size = 3000, .node = -1, .limit = 8, .batchcount = 4 },
	};
	struct sm_arena_params p = { .size = 8u << 20, .nr_nodes = NNODES };
	char err[256];

	(void)argc;
	(void)argv;
	if (sm_arena_create(&p, &A, err, sizeof(err)))
		FAIL("sm_arena_create: %s", err);
	A.grow = grow_direct;
	for (unsigned k = 0; k < NCACHE; k++) {
		uint32_t id;
		bool existed;

		if (sm_cache_create(&A, &params[k], &id, &existed))
			FAIL("sm_cache_create %s", params[k].name);
		C[k] = sm_cache(&A, id);
		for (unsigned n = 0; n < NNODES; n++) {
			mag_free[k][n] = calloc(1, sm_mag_bytes(MAG_CAP));
			mag_alloc[k][n] = calloc(1, sm_mag_bytes(MAG_CAP));
			if (!mag_free[k][n] || !mag_alloc[k][n])
				abort();
			sm_mag_init(&A, mag_free[k][n], C[k], MAG_CAP);
			sm_mag_set_node(&A, mag_free[k][n], n);
			sm_mag_init(&A, mag_alloc[k][n], C[k], MAG_CAP);
			sm_mag_set_node(&A, mag_alloc[k][n], n);
		}
	}
	return 0;
}

/* ---- reading the program ---------------------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t         left;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->left) {
			v |= *in->p++;
			in->left--;
		}
	}
	return v;
}

/* An offset to free or look up, for cache k. */
static uint64_t pick(struct in *in, unsigned k)
{
	unsigned mode = (unsigned)take(in, 1) % 9, k2;
	uint64_t base;
	uint32_t h, i;

	switch (mode) {
	case 0:
		return take(in, 8);
	case 1:
	case 2:
		if (!nheld[k])
			return take(in, 4);
		base = held[k][take(in, 2) % nheld[k]];
		if (mode == 1)
			return base;
		return base + (uint64_t)(int64_t)(int16_t)take(in, 2);
	case 3:
		k2 = (k + 1 + (unsigned)take(in, 1) % (NCACHE - 1)) % NCACHE;
		if (!nheld[k2])
			return take(in, 3);
		return held[k2][take(in, 2) % nheld[k2]];
	case 4:
		return ((take(in, 2) % A.hdr->ah_nr_pages) << SLAB_PAGE_SHIFT) + take(in, 1) % 3;
	case 5:
		/* A slot of a held object's slab: often a free object (a double free). */
		if (!nheld[k] || !oracle(k, held[k][take(in, 2) % nheld[k]], &h, &i))
			return take(in, 2);
		return ((uint64_t)h << SLAB_PAGE_SHIFT) +
		       (uint64_t)(take(in, 2) % C[k]->c_num) * C[k]->c_size;
	case 6:
		return A.size - 1 - take(in, 2) % 64 + take(in, 1) % 128;
	case 7:
		return UINT64_MAX - take(in, 1);
	default:
		return take(in, 2) % (A.hdr->ah_nodes[0].nr_first_page << SLAB_PAGE_SHIFT);
	}
}

/* ---- operations ------------------------------------------------------------------------- */

static void op_alloc_slabs(struct in *in, unsigned k, unsigned node)
{
	uint64_t objs[32];
	unsigned want = 1 + (unsigned)take(in, 1) % 32, got;

	if (nheld[k] + want > MAX_HELD)
		return;
	if (sm_node_lock(&A, C[k], node))
		FAIL("sm_node_lock");
	got = sm_do_alloc_objs(&A, C[k], node, objs, want);
	sm_node_unlock(C[k], node);
	if (!got) {
		if (sm_cache_grow(&A, C[k]->c_id, node, 1) < 0)
			return; /* arena full: fine */
		if (sm_node_lock(&A, C[k], node))
			FAIL("sm_node_lock");
		got = sm_do_alloc_objs(&A, C[k], node, objs, want);
		sm_node_unlock(C[k], node);
	}
	for (unsigned i = 0; i < got; i++) {
		hold(k, objs[i]);
		check_held(k, objs[i]);
	}
}

static void op_alloc_mag(unsigned k, unsigned node)
{
	struct slab_mag *m = mag_alloc[k][node];
	uint64_t off;
	int rc;

	if (nheld[k] + 1 > MAX_HELD)
		return;
	rc = sm_alloc(&A, C[k], m, node, &off);
	if (rc == 0) {
		hold(k, off);
		check_held(k, off);
	} else if (rc != -ENOMEM) {
		FAIL("sm_alloc: %d", rc);
	}
	/* What the refill cached goes straight back to the slabs. */
	sm_mag_drain(&A, C[k], m, 0);
	if (m->m_avail)
		FAIL("drained magazine still holds %u", (unsigned)m->m_avail);
}

static void op_lookup(struct in *in, unsigned k)
{
	uint64_t off = pick(in, k);
	uint32_t h = 0, i = 0, oh = 0, oi = 0;
	enum sm_obj_err e = sm_obj_lookup(&A, C[k], off, &h, &i);
	bool ok = oracle(k, off, &oh, &oi);

	if ((e == OBJ_OK) != ok)
		FAIL("sm_obj_lookup(%#llx) of cache %u: %d, the oracle says %s",
		     (unsigned long long)off, k, (int)e, ok ? "an object" : "no object");
	if (ok && (h != oh || i != oi))
		FAIL("sm_obj_lookup(%#llx): slab %u index %u, the oracle says %u/%u",
		     (unsigned long long)off, h, i, oh, oi);
}

/* Free one object straight through free_block on its node (as the alien path would, but
 * through the checking tier).  Returns whether it was accepted. */
static bool free_one_block(unsigned k, unsigned node, uint64_t off)
{
	unsigned refused;

	if (sm_node_lock(&A, C[k], node))
		FAIL("sm_node_lock");
	refused = sm_do_free_block(&A, C[k], node, &off, 1);
	sm_node_unlock(C[k], node);
	return refused == 0;
}

static void op_free_mag(struct in *in, unsigned k, unsigned node)
{
	struct slab_mag *m = mag_free[k][node];
	uint64_t pushed[MAG_CAP];
	bool was_held[MAG_CAP];
	unsigned n = 1 + (unsigned)take(in, 1) % 8, np = 0;

	for (unsigned j = 0; j < n; j++) {
		uint64_t off = pick(in, k);
		uint32_t h, i;
		bool obj = oracle(k, off, &h, &i);
		unsigned top = m->m_avail;
		enum sm_push r = sm_mag_push(&A, C[k], m, off);

		switch (r) {
		case PUSH_INVALID:
			if (obj)
				FAIL("sm_mag_push refused %#llx, an object of cache %u",
				     (unsigned long long)off, k);
			break;
		case PUSH_DOUBLE:
			if (!obj || !top || sm_mag_entries(m)[top - 1] != off)
				FAIL("PUSH_DOUBLE for %#llx, which is not the newest entry",
				     (unsigned long long)off);
			break;
		case PUSH_ALIEN:
			if (!obj || sm_slab_node(&A, h) == node)
				FAIL("PUSH_ALIEN for %#llx of node %u in a node-%u magazine",
				     (unsigned long long)off, sm_slab_node(&A, h), node);
			if (free_one_block(k, sm_slab_node(&A, h), off) != is_held(k, off))
				FAIL("free_block on the home node of %#llx: %s", (unsigned long long)off,
				     is_held(k, off) ? "refused a held object" : "accepted an object "
				     "not held");
			if (is_held(k, off))
				unhold(k, off);
			break;
		case PUSH_FULL:
			if (top < m->m_limit)
				FAIL("PUSH_FULL with %u of %u", top, (unsigned)m->m_limit);
			break;
		case PUSH_OK:
			if (!obj || sm_slab_node(&A, h) != node)
				FAIL("sm_mag_push took %#llx (object %d, node %u) into a node-%u "
				     "magazine", (unsigned long long)off, obj, obj ? sm_slab_node(&A, h) : 0,
				     node);
			pushed[np] = off;
			was_held[np] = is_held(k, off);
			if (was_held[np])
				unhold(k, off); /* freed: no longer ours */
			np++;
			break;
		}
		if (r == PUSH_FULL)
			break;
	}
	/* Drain to the slabs: free_block accepts the held ones and refuses the rest. */
	sm_mag_drain(&A, C[k], m, 0);
	for (unsigned j = 0; j < np; j++) {
		uint32_t h, i;
		unsigned b;

		if (!oracle(k, pushed[j], &h, &i))
			continue; /* its slab went back to the page allocator: it was freed */
		b = bufctl_of(k, h, i);
		if (b == BUFCTL_ACTIVE || b == BUFCTL_CACHED)
			FAIL("after the drain %#llx (%s) is still %s", (unsigned long long)pushed[j],
			     was_held[j] ? "held, freed" : "not held", b == BUFCTL_ACTIVE ? "ACTIVE" :
			     "CACHED");
	}
}

static void op_free_block(struct in *in, unsigned k, unsigned node)
{
	uint64_t objs[16];
	unsigned n = 1 + (unsigned)take(in, 1) % 16, refused, expect = 0;

	for (unsigned j = 0; j < n; j++)
		objs[j] = pick(in, k);
	if (sm_node_lock(&A, C[k], node))
		FAIL("sm_node_lock");
	refused = sm_do_free_block(&A, C[k], node, objs, n);
	sm_node_unlock(C[k], node);
	for (unsigned j = 0; j < n; j++) {
		uint32_t h, i;

		if (is_held(k, objs[j]) && oracle(k, objs[j], &h, &i) && sm_slab_node(&A, h) == node)
			unhold(k, objs[j]);
		else
			expect++;
	}
	if (refused != expect)
		FAIL("free_block of %u offsets on node %u refused %u, the model says %u", n, node,
		     refused, expect);
}

/* Free everything held, check nothing is out, shrink, validate. */
static void settle(void)
{
	for (unsigned k = 0; k < NCACHE; k++) {
		struct sm_cache_counts cnt;

		while (nheld[k]) {
			uint64_t off = held[k][nheld[k] - 1];
			uint32_t h, i;

			if (!oracle(k, off, &h, &i))
				FAIL("held %#llx lost its slab", (unsigned long long)off);
			if (!free_one_block(k, sm_slab_node(&A, h), off))
				FAIL("free_block refused held %#llx", (unsigned long long)off);
			unhold(k, off);
		}
		sm_cache_counts(&A, C[k]->c_id, &cnt);
		if (cnt.active_objs)
			FAIL("cache %u counts %llu objects out with none held", k,
			     (unsigned long long)cnt.active_objs);
		sm_cache_shrink(&A, C[k]->c_id);
	}
	validate();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	unsigned ops = 0;

	while (in.left && ops++ < MAX_OPS) {
		unsigned op = (unsigned)take(&in, 1), k = (op >> 3) % NCACHE, node = (op >> 5) & 1;

		switch (op & 7) {
		case 0:
		case 1:
			op_alloc_slabs(&in, k, node);
			break;
		case 2:
			op_alloc_mag(k, node);
			break;
		case 3:
			op_lookup(&in, k);
			break;
		case 4:
			op_free_mag(&in, k, node);
			break;
		case 5:
			op_free_block(&in, k, node);
			break;
		case 6:
			sm_cache_shrink(&A, C[k]->c_id);
			for (unsigned j = 0; j < nheld[k]; j++)
				check_held(k, held[k][j]);
			break;
		default:
			for (unsigned kk = 0; kk < NCACHE; kk++)
				for (unsigned j = 0; j < nheld[kk]; j++)
					check_held(kk, held[kk][j]);
			break;
		}
	}
	for (unsigned k = 0; k < NCACHE; k++)
		for (unsigned j = 0; j < nheld[k]; j++)
			check_held(k, held[k][j]);
	settle();
	return 0;
}
