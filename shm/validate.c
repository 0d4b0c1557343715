/* validate.c - consistency checks and repair (see validate.h). */
#include "validate.h"

#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "lock.h"
#include "debug.h"
#include "magazine.h"
#include "cache.h"

struct vctx {
	struct sm_arena         *a;
	struct slab_cache_desc  *c;
	sm_report_fn             report;
	void                    *rarg;
	unsigned                 bad;
	uint8_t                 *page_seen;   /* one byte per page: on a list already */
	uint64_t                *obj_seen;    /* one bit per 8 bytes of arena: cached already */
	/* The magazines' walk (holders): a second sighting is only a suspect the first
	 * time (suspects[], pass 1); further walks keep the suspects they see twice again
	 * (pass 2, hit[]) and the last one reports them (pass 3; see sm_validate_cache). */
	int                      pass;        /* 0: the node lists; 1-3: the magazines */
	uint64_t                *suspects;
	uint8_t                 *hit;
	size_t                   nr_suspects, cap_suspects;
};

/* Walks of the magazines a suspect must be seen twice in, the first included. */
#define SM_VALIDATE_WALKS 4

#define REPORT(v, ...)                                                                 \
	do {                                                                           \
		(v)->report((v)->rarg, __VA_ARGS__);                                   \
		(v)->bad++;                                                            \
	} while (0)

static const char *list_name(uint8_t state)
{
	switch (state) {
	case PG_SLAB_PARTIAL: return "partial";
	case PG_SLAB_FULL:    return "full";
	case PG_SLAB_FREE:    return "free";
	case PG_SLAB_DISCARD: return "discard";
	default:              return "no";
	}
}

static int is_slab_state(uint8_t s)
{
	return s >= PG_SLAB_PARTIAL && s <= PG_SLAB_DISCARD;
}

/* Check one slab's bufctl chain and tails; returns its free object count or -1. */
static long check_slab(struct vctx *v, unsigned node, uint32_t h)
{
	struct sm_arena *a = v->a;
	struct slab_cache_desc *c = v->c;
	struct slab_page *pg = &a->pages[h];
	uint8_t *slab = sm_slab_addr(a, h);
	uint8_t seen[SLAB_MAX_OBJS / 8 + 1];
	unsigned chain = 0, active = 0;
	unsigned x = pg->pg_free;

	memset(seen, 0, (c->c_num + 7) / 8);
	for (uint32_t t = 1; t < 1u << c->c_order; t++)
		if (a->pages[h + t].pg_tag != SLAB_TAG(c->c_id + 1, node) ||
		    a->pages[h + t].pg_state != PG_TAIL ||
		    a->pages[h + t].pg_next != h) {
			REPORT(v, "cache %s node %u: slab %u: page %u is not its tail", c->c_name,
			       node, h, h + t);
			break;
		}
	while (x != BUFCTL16_END) {
		if (x >= c->c_num) {
			REPORT(v, "cache %s node %u: slab %u: free chain index %u out of range (%u objects)",
			       c->c_name, node, h, x, c->c_num);
			return -1;
		}
		if (seen[x / 8] & (1u << (x % 8))) {
			REPORT(v, "cache %s node %u: slab %u: free chain loops at index %u",
			       c->c_name, node, h, x);
			return -1;
		}
		seen[x / 8] |= (uint8_t)(1u << (x % 8));
		chain++;
		x = sm_bufctl_get(c, slab, x);
		if (x == BUFCTL_ACTIVE || x == BUFCTL_CACHED) {
			REPORT(v, "cache %s node %u: slab %u: free chain runs into an active object",
			       c->c_name, node, h);
			return -1;
		}
	}
	for (unsigned i = 0; i < c->c_num; i++) {
		unsigned e = sm_bufctl_get(c, slab, i);
		int in_chain = seen[i / 8] & (1u << (i % 8));
		if (e == BUFCTL_ACTIVE || e == BUFCTL_CACHED)
			active++;
		else if (!in_chain)
			REPORT(v, "cache %s node %u: slab %u: object %u is neither free nor active",
			       c->c_name, node, h, i);
	}
	if (chain + pg->pg_inuse != c->c_num || active != pg->pg_inuse)
		REPORT(v, "cache %s node %u: slab %u: inuse %u but %u free in chain, %u active, %u objects",
		       c->c_name, node, h, pg->pg_inuse, chain, active, c->c_num);
	return chain;
}

static uint64_t check_list(struct vctx *v, unsigned node, const struct slab_list *l,
			   uint8_t state)
{
	struct sm_arena *a = v->a;
	struct slab_cache_desc *c = v->c;
	const struct slab_node_region *r = sm_region(a, node);
	uint32_t x = l->l_head, walked = 0;
	uint64_t free_objs = 0;

	while (x != SLAB_NIL && walked <= l->l_count) {
		struct slab_page *pg;

		if (x - r->nr_first_page >= r->nr_nr_pages) {
			REPORT(v, "cache %s node %u: %s list links to page %u outside the node",
			       c->c_name, node, list_name(state), x);
			break;
		}
		pg = &a->pages[x];
		if (v->page_seen[x]) {
			REPORT(v, "cache %s node %u: slab %u is on two lists (%s and %s)", c->c_name,
			       node, x, list_name(state), list_name(v->page_seen[x]));
			break;
		}
		v->page_seen[x] = state;
		walked++;
		if (pg->pg_tag != SLAB_TAG(c->c_id + 1, node) || !is_slab_state(pg->pg_state)) {
			REPORT(v, "cache %s node %u: %s list holds page %u that is not a slab of the cache",
			       c->c_name, node, list_name(state), x);
		} else {
			long nfree = check_slab(v, node, x);
			int want = pg->pg_inuse == c->c_num ? PG_SLAB_FULL :
				   pg->pg_inuse ? PG_SLAB_PARTIAL : -1;
			if (pg->pg_state != state)
				REPORT(v, "cache %s node %u: slab %u says list %s but is on %s",
				       c->c_name, node, x, list_name(pg->pg_state), list_name(state));
			if ((want > 0 && want != state) ||
			    (want < 0 && state != PG_SLAB_FREE && state != PG_SLAB_DISCARD))
				REPORT(v, "cache %s node %u: slab %u with %u of %u objects in use is on the wrong list (%s)",
				       c->c_name, node, x, pg->pg_inuse, c->c_num, list_name(state));
			if (nfree > 0 && state != PG_SLAB_DISCARD)
				free_objs += (uint64_t)nfree;
		}
		/* A corrupt link may point anywhere: bound it before following it. */
		if (pg->pg_next >= a->hdr->ah_nr_pages || a->pages[pg->pg_next].pg_prev != x) {
			REPORT(v, "cache %s node %u: %s list broken after slab %u", c->c_name, node,
			       list_name(state), x);
			break;
		}
		x = pg->pg_next;
		if (x == l->l_head)
			break;
	}
	if (walked != l->l_count)
		REPORT(v, "cache %s node %u: %s list counts %u slabs, walked %u", c->c_name, node,
		       list_name(state), l->l_count, walked);
	return free_objs;
}

static int cmp_off(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;

	return p < q ? -1 : p > q;
}

/* A second sighting of off: reported at once on the node lists (pass 0), a suspect in
 * the magazines' first walk (pass 1), kept by the confirming walks that see it again
 * (pass 2) and reported by the last one (pass 3). */
static void seen_twice(struct vctx *v, uint64_t off, const char *where)
{
	if (v->pass == 1) {
		if (v->nr_suspects == v->cap_suspects) {
			size_t cap = v->cap_suspects ? 2 * v->cap_suspects : 64;
			uint64_t *n = realloc(v->suspects, cap * sizeof(*n));

			if (!n)
				goto report; /* no room to confirm: say it as seen */
			v->suspects = n;
			v->cap_suspects = cap;
		}
		v->suspects[v->nr_suspects++] = off;
		return;
	}
	if (v->pass >= 2) {
		uint64_t *at = bsearch(&off, v->suspects, v->nr_suspects, sizeof(off), cmp_off);

		if (!at)
			return;
		if (v->pass == 2) {
			v->hit[at - v->suspects] = 1;
			return;
		}
	}
report:
	REPORT(v, "cache %s: object %#llx is on two lists: cached twice (again in %s)",
	       v->c->c_name, (unsigned long long)off, where);
}

/* Mark off as cached; whether it was marked already.  off < the arena size. */
/* off's word and bit in a map of one bit per 8 bytes of arena (obj_seen's form). */
static uint64_t *map_word(uint64_t *map, uint64_t off, uint64_t *bit)
{
	*bit = 1ull << ((off >> 3) % 64);
	return &map[(off >> 3) / 64];
}

static int seen_before(struct vctx *v, uint64_t off)
{
	uint64_t bit, *w = map_word(v->obj_seen, off, &bit);
	int was = (*w & bit) != 0;

	*w |= bit;
	return was;
}

/* A cached object: must be an out-of-slab object of the cache, held only once. */
static void add_cached(void *ctx, uint64_t off, const char *where)
{
	struct vctx *v = ctx;
	struct sm_arena *a = v->a;
	struct slab_cache_desc *c = v->c;
	uint32_t h, i;
	unsigned e;

	if (v->pass >= 2) { /* the confirming walks only look at the suspects */
		if (off < a->size && seen_before(v, off))
			seen_twice(v, off, where);
		return;
	}
	if (sm_obj_lookup(a, c, off, &h, &i) != OBJ_OK) {
		REPORT(v, "cache %s: %s holds offset %#llx that is not an object of the cache",
		       c->c_name, where, (unsigned long long)off);
		return;
	}
	e = sm_bufctl_get(c, sm_slab_addr(a, h), i);
	if (e != BUFCTL_ACTIVE && e != BUFCTL_CACHED)
		REPORT(v, "cache %s: object %#llx is on two lists: free in slab %u and in %s",
		       c->c_name, (unsigned long long)off, h, where);
	if (seen_before(v, off))
		seen_twice(v, off, where);
}

/* n_depot is SLAB_NIL or the head of a PG_DEPOT block of order n_depot_order that lies
 * in node's region. */
static int depot_ok(const struct sm_arena *a, unsigned node, const struct slab_cache_node *cn)
{
	const struct slab_node_region *r = sm_region(a, node);
	uint32_t h = cn->n_depot;

	if (h == SLAB_NIL)
		return 1;
	return cn->n_depot_order <= SLAB_MAX_ORDER && h >= r->nr_first_page &&
	       h - r->nr_first_page < r->nr_nr_pages && a->pages[h].pg_state == PG_DEPOT &&
	       a->pages[h].pg_order == cn->n_depot_order;
}

static void check_node(struct vctx *v, unsigned node)
{
	struct slab_cache_desc *c = v->c;
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint64_t free_objs;
	char where[64];

	free_objs = check_list(v, node, &cn->n_partial, PG_SLAB_PARTIAL);
	free_objs += check_list(v, node, &cn->n_full, PG_SLAB_FULL);
	free_objs += check_list(v, node, &cn->n_free, PG_SLAB_FREE);
	check_list(v, node, &cn->n_discard, PG_SLAB_DISCARD);
	if (free_objs != cn->n_free_objects)
		REPORT(v, "cache %s node %u: free_objects is %llu, slabs hold %llu free",
		       c->c_name, node, (unsigned long long)cn->n_free_objects,
		       (unsigned long long)free_objs);
	if (!depot_ok(v->a, node, cn)) {
		REPORT(v, "cache %s node %u: shared array block %u (order %u) is not a depot "
		       "block of the node", c->c_name, node, cn->n_depot, cn->n_depot_order);
		return;
	}
	if (cn->n_shared_avail > cn->n_shared_limit || cn->n_shared_limit > sm_shared_cap(cn)) {
		REPORT(v, "cache %s node %u: shared array avail %u limit %u out of range",
		       c->c_name, node, cn->n_shared_avail, cn->n_shared_limit);
		return;
	}
	snprintf(where, sizeof(where), "node %u shared array", node);
	for (unsigned i = 0; i < cn->n_shared_avail; i++) {
		uint64_t off = sm_shared(v->a, cn)[i];
		uint32_t h, ix;

		add_cached(v, off, where);
		if (sm_obj_lookup(v->a, c, off, &h, &ix) == OBJ_OK &&
		    sm_slab_node(v->a, h) != node)
			REPORT(v, "cache %s: node %u shared array holds an object of node %u",
			       c->c_name, node, sm_slab_node(v->a, h));
	}
}

/* The suspects (sorted) held twice at one moment: the shared arrays, whose entries base
 * marks (read under the node locks, still held), count once, and count says how many
 * magazines hold each together.  A few tries, as a busy magazine may not read still;
 * each asks only about the suspects not confirmed yet.  v->hit: one byte a suspect. */
static void confirm_by_count(struct vctx *v, uint32_t id, sm_holder_count_fn count,
			     void *harg, uint64_t *base)
{
	size_t n = 0;

	for (size_t k = 0; k < v->nr_suspects; k++) /* distinct: seen thrice */
		if (!n || v->suspects[k] != v->suspects[n - 1])
			v->suspects[n++] = v->suspects[k];
	v->nr_suspects = n;
	for (int w = 0; w < SM_VALIDATE_WALKS && v->nr_suspects; w++) {
		size_t kept = 0;

		if (w)
			sched_yield();
		if (count(harg, id, v->suspects, v->nr_suspects, v->hit)) {
			REPORT(v, "cache %s: validate: out of memory confirming %zu object(s) a "
			       "magazine walk saw twice", v->c->c_name, v->nr_suspects);
			return;
		}
		for (size_t k = 0; k < v->nr_suspects; k++) {
			uint64_t off = v->suspects[k], bit;
			unsigned shared = off < v->a->size && (*map_word(base, off, &bit) & bit);

			if (shared + v->hit[k] < 2) {
				v->suspects[kept++] = off; /* not yet: again */
				continue;
			}
			REPORT(v, "cache %s: object %#llx is on two lists: cached twice (%s)",
			       v->c->c_name, (unsigned long long)off,
			       shared ? "in the shared array and a magazine" : "twice in the magazines");
		}
		v->nr_suspects = kept;
	}
}

unsigned sm_validate_cache(struct sm_arena *a, uint32_t id, sm_holder_fn holders,
			   sm_holder_count_fn count, void *harg, sm_report_fn report, void *rarg)
{
	struct vctx v = { .a = a, .c = sm_cache(a, id), .report = report, .rarg = rarg };
	uint64_t words = (a->size >> 3) / 64 + 1;
	uint8_t locked[SLAB_MAX_NODES] = { 0 };

	if (v.c->c_state == CACHE_UNUSED)
		return 0;
	v.page_seen = calloc(a->hdr->ah_nr_pages, 1);
	v.obj_seen = calloc(words, sizeof(uint64_t));
	if (!v.page_seen || !v.obj_seen) {
		free(v.page_seen);
		free(v.obj_seen);
		report(rarg, "validate: out of memory");
		return 1;
	}
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_node_lock(a, v.c, n)) {
			REPORT(&v, "cache %s node %u: lock unusable", v.c->c_name, n);
			continue;
		}
		locked[n] = 1;
		check_node(&v, n);
	}
	/* The magazines while every node lock is still held: refills and flushes wait, so
	 * no object moves between the lists checked above and the magazines walked here.
	 * (Unlocked in between, a thread whose refill had waited for check_node took objects
	 * the shared array had just been seen holding, and its magazine showed them again:
	 * "cached twice" in 20 of 100 validates of a healthy cache that two clients grew and
	 * emptied in bursts.)  Node locks are taken in node order; no other path holds two.
	 * The fast paths still move objects between magazines without a lock (allocated
	 * from one, freed into another walked later: 88 of 200 validates with one thread
	 * passing an object between two handles), so a second sighting in a magazine is
	 * only a suspect.  With count (slabd's), a suspect is reported when count finds it
	 * held twice by the magazines at one moment, or once while the shared array holds
	 * it.
	 * Without, when each of SM_VALIDATE_WALKS - 1 more walks sees it twice again: a
	 * real double free stays where it is, while a thread passing one object to and fro
	 * can line up with one more walk (2 in 30 runs of test_debug test_validate_live
	 * with two walks) but hardly with three -- unless the walks are slow: with slabd
	 * under valgrind, one run in several reported "cached twice" anyway, which is what
	 * count is for. */
	if (holders) {
		uint64_t *base = malloc(words * sizeof(uint64_t));

		v.pass = 1;
		if (base)
			memcpy(base, v.obj_seen, words * sizeof(uint64_t));
		holders(harg, id, add_cached, &v);
		if (v.nr_suspects)
			qsort(v.suspects, v.nr_suspects, sizeof(uint64_t), cmp_off);
		if (v.nr_suspects && base && count && (v.hit = calloc(v.nr_suspects, 1))) {
			confirm_by_count(&v, id, count, harg, base);
		} else if (v.nr_suspects && base && (v.hit = calloc(v.nr_suspects, 1))) {
			for (int w = 2; w <= SM_VALIDATE_WALKS && v.nr_suspects; w++) {
				size_t kept = 0;

				memcpy(v.obj_seen, base, words * sizeof(uint64_t));
				v.pass = w == SM_VALIDATE_WALKS ? 3 : 2;
				sched_yield(); /* a walk at another moment than the last */
				holders(harg, id, add_cached, &v);
				for (size_t k = 0; v.pass == 2 && k < v.nr_suspects; k++)
					if (v.hit[k]) {
						v.suspects[kept] = v.suspects[k];
						v.hit[kept++] = 0;
					}
				if (v.pass == 2)
					v.nr_suspects = kept;
			}
		} else if (v.nr_suspects) { /* no memory for the other walks: as seen */
			v.pass = 0;
			for (size_t k = 0; k < v.nr_suspects; k++)
				seen_twice(&v, v.suspects[k], "a magazine");
		}
		free(base);
		free(v.suspects);
		free(v.hit);
		v.pass = 0;
	}
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++)
		if (locked[n])
			sm_node_unlock(v.c, n);
	/* Corruptions the debug checks found (debug.h), the last ones with details. */
	{
		uint64_t total = SM_LOAD(&v.c->c_corruptions);
		uint64_t first = total > SLAB_CORRUPT_LOG ? total - SLAB_CORRUPT_LOG : 0;

		for (uint64_t i = first; i < total; i++) {
			const struct slab_corruption *r = &v.c->c_corrupt[i % SLAB_CORRUPT_LOG];
			REPORT(&v, "cache %s: object %#llx: %s (found %#018llx), seen by pid %d",
			       v.c->c_name, (unsigned long long)r->sc_offset,
			       sm_corruption_name(r->sc_kind), (unsigned long long)r->sc_found,
			       (int)r->sc_pid);
		}
		if (first)
			REPORT(&v, "cache %s: %llu earlier corruptions not shown", v.c->c_name,
			       (unsigned long long)first);
	}
	/* Every slab of the cache must be on a list. */
	for (uint32_t p = a->hdr->ah_meta_pages; p < a->hdr->ah_nr_pages; p++) {
		struct slab_page *pg = &a->pages[p];
		if (SLAB_TAG_CID1(pg->pg_tag) == id + 1 && pg->pg_state != PG_TAIL && !v.page_seen[p])
			REPORT(&v, "cache %s: slab %u (state %s) is on no list", v.c->c_name, p,
			       list_name(pg->pg_state));
	}
	free(v.page_seen);
	free(v.obj_seen);
	return v.bad;
}

unsigned sm_validate(struct sm_arena *a, sm_holder_fn holders, sm_holder_count_fn count,
		     void *harg, sm_report_fn report, void *rarg)
{
	unsigned bad = 0;

	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_region_lock(a, n)) {
			report(rarg, "node %u: page allocator lock unusable", n);
			bad++;
			continue;
		}
		bad += sm_buddy_check(a, n, report, rarg);
		sm_region_unlock(a, n);
	}
	for (uint32_t id = 0; id < a->hdr->ah_nr_caches; id++)
		bad += sm_validate_cache(a, id, holders, count, harg, report, rarg);
	{
		unsigned orphans = sm_depot_orphans(a, 0);

		if (orphans) {
			report(rarg, "%u shared array block(s) belong to no cache node", orphans);
			bad += orphans;
		}
	}
	/* Slab pages of caches that no longer exist. */
	for (uint32_t p = a->hdr->ah_meta_pages; p < a->hdr->ah_nr_pages; p++) {
		unsigned cid = SLAB_TAG_CID1(a->pages[p].pg_tag);
		if (cid && (cid > a->hdr->ah_nr_caches ||
			    sm_cache(a, cid - 1u)->c_state == CACHE_UNUSED)) {
			report(rarg, "page %u belongs to cache id %u, which does not exist", p,
			       cid - 1u);
			bad++;
		}
	}
	return bad;
}

/* ---- repair ------------------------------------------------------------------------ */

/* Rebuild one slab's free chain from its bufctl: every entry that is not ACTIVE/CACHED
 * is free.  Returns the objects in use. */
static unsigned rebuild_slab(struct sm_arena *a, struct slab_cache_desc *c, uint32_t h)
{
	uint8_t *slab = sm_slab_addr(a, h);
	unsigned inuse = 0, prev = BUFCTL16_END;

	for (unsigned i = c->c_num; i-- > 0;) {
		unsigned e = sm_bufctl_get(c, slab, i);
		if (e == BUFCTL_ACTIVE || e == BUFCTL_CACHED) {
			inuse++;
			continue;
		}
		sm_bufctl_set(c, slab, i, prev);
		prev = i;
	}
	a->pages[h].pg_free = (uint16_t)prev;
	a->pages[h].pg_inuse = (uint16_t)inuse;
	for (uint32_t t = 1; t < 1u << c->c_order; t++) {
		a->pages[h + t].pg_tag = SLAB_TAG(c->c_id + 1, sm_page_node(a, h));
		a->pages[h + t].pg_state = PG_TAIL;
		a->pages[h + t].pg_next = h;
	}
	return inuse;
}

/* The magazine at arena offset off, or NULL if off cannot be one (it must lie in a
 * client area block, and all of it, by its capacity, inside the arena: its entries start
 * SLAB_MAG_AHEAD words after the header). */
static struct slab_mag *mag_at(struct sm_arena *a, uint64_t off)
{
	struct slab_mag *m;
	uint32_t pg, cap;

	if (off < sizeof(struct slab_area_block) || off + sizeof(struct slab_mag) > a->size ||
	    off % 8)
		return NULL;
	pg = (uint32_t)(off >> SLAB_PAGE_SHIFT);
	if (a->pages[pg].pg_state == PG_TAIL && a->pages[pg].pg_next < a->hdr->ah_nr_pages)
		pg = a->pages[pg].pg_next;
	if (a->pages[pg].pg_state != PG_AREA)
		return NULL;
	m = (struct slab_mag *)(a->base + off);
	cap = SM_LOAD(&m->m_capacity);
	return cap <= SLAB_MAG_MAX && off + sm_mag_bytes(cap) <= a->size ? m : NULL;
}

/* The holder died in the middle of a transfer between a magazine and this node's lists
 * (n_xfer_*).  Every object of the transfer is now either back on the node (in the
 * shared array, or free in its slab) or still out; make the magazine say the same: an
 * entry whose object is back on the node is cleared.  Works for both directions. */
static void repair_xfer(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	struct slab_mag *m = mag_at(a, cn->n_xfer_mag);
	uint32_t end;

	if (!m) {
		cn->n_xfer_mag = 0;
		return;
	}
	end = cn->n_xfer_base + cn->n_xfer_count;
	if (end > m->m_capacity)
		end = m->m_capacity;
	for (uint32_t i = cn->n_xfer_base; i < end; i++) {
		uint64_t off = sm_mag_entries(m)[i];
		uint32_t h, ix;
		unsigned e;
		int back = 0;

		if (!off || sm_obj_lookup(a, c, off, &h, &ix) != OBJ_OK ||
		    sm_slab_node(a, h) != node)
			continue;
		/* free in its slab, or in the shared array (marked SEEN by the caller) */
		e = sm_bufctl_get(c, sm_slab_addr(a, h), ix);
		back = e != BUFCTL_ACTIVE && e != BUFCTL_CACHED;
		if (back)
			sm_mag_entries(m)[i] = 0;
	}
	cn->n_xfer_mag = 0;
}

void sm_node_repair(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	const struct slab_node_region *r = sm_region(a, node);
	uint32_t end = r->nr_first_page + r->nr_nr_pages;
	unsigned kept = 0;
	uint64_t *sh;

	sm_list_init(&cn->n_partial);
	sm_list_init(&cn->n_full);
	sm_list_init(&cn->n_free);
	sm_list_init(&cn->n_discard);
	cn->n_free_objects = 0;
	if (c->c_state == CACHE_UNUSED)
		return;
	for (uint32_t p = r->nr_first_page; p < end; p++) {
		struct slab_page *pg = &a->pages[p];
		uint8_t to;
		unsigned inuse;

		if (SLAB_TAG_CID1(pg->pg_tag) != c->c_id + 1 || pg->pg_state == PG_TAIL)
			continue;
		if (pg->pg_state == PG_BLOCK && pg->pg_order == c->c_order) {
			/* sm_do_slab_attach was cut short: finish it. */
			pg->pg_next = pg->pg_prev = SLAB_NIL;
			pg->pg_state = PG_SLAB_FREE;
			for (unsigned i = 0; i < c->c_num; i++)
				sm_bufctl_set(c, sm_slab_addr(a, p), i,
					      i + 1 < c->c_num ? i + 1 : BUFCTL16_END);
		} else if (!is_slab_state(pg->pg_state)) {
			continue;
		}
		inuse = rebuild_slab(a, c, p);
		to = inuse == c->c_num ? PG_SLAB_FULL : inuse ? PG_SLAB_PARTIAL :
		     pg->pg_state == PG_SLAB_DISCARD ? PG_SLAB_DISCARD : PG_SLAB_FREE;
		pg->pg_state = to;
		sm_list_add_tail(a->pages, to == PG_SLAB_FULL ? &cn->n_full :
					    to == PG_SLAB_PARTIAL ? &cn->n_partial :
					    to == PG_SLAB_FREE ? &cn->n_free : &cn->n_discard, p);
		if (to != PG_SLAB_DISCARD)
			cn->n_free_objects += c->c_num - inuse;
		p += (1u << c->c_order) - 1;
	}
	/* Keep the shared array's entries that are still out-of-slab objects of this
	 * node, once each.  A storage block that is not one (a client wrote over the node)
	 * cannot be trusted: its entries are dropped (their objects stay ACTIVE, lost to
	 * validate's report, never handed out twice). */
	if (!depot_ok(a, node, cn)) {
		cn->n_depot = SLAB_NIL;
		cn->n_depot_order = 0;
		cn->n_shared_avail = 0;
	}
	if (cn->n_shared_limit > sm_shared_cap(cn))
		cn->n_shared_limit = sm_shared_cap(cn);
	if (cn->n_shared_avail > cn->n_shared_limit)
		cn->n_shared_avail = cn->n_shared_limit;
	/* Duplicates without a search (the array may hold hundreds of thousands): each kept
	 * entry's bufctl turns SEEN (a value no index or marker takes), so a second copy
	 * finds SEEN and is dropped; repair_xfer reads SEEN as "back in the array"; then
	 * every SEEN turns back into what a shared array's object carries. */
	sh = sm_shared(a, cn);
	for (unsigned i = 0; i < cn->n_shared_avail; i++) {
		uint64_t off = sh[i];
		uint32_t h, ix;
		unsigned e;

		if (sm_obj_lookup(a, c, off, &h, &ix) != OBJ_OK || sm_slab_node(a, h) != node)
			continue;
		e = sm_bufctl_get(c, sm_slab_addr(a, h), ix);
		if (e != BUFCTL_ACTIVE && e != BUFCTL_CACHED)
			continue; /* free in its slab, or SEEN: a copy */
		sm_bufctl_set(c, sm_slab_addr(a, h), ix, BUFCTL_SEEN);
		sh[kept++] = off;
	}
	cn->n_shared_avail = kept;
	repair_xfer(a, c, node);
	for (unsigned i = 0; i < kept; i++) {
		uint32_t h, ix;

		if (sm_obj_lookup(a, c, sh[i], &h, &ix) == OBJ_OK)
			sm_bufctl_set(c, sm_slab_addr(a, h), ix,
				      c->c_flags & SM_DEBUG ? BUFCTL_CACHED : BUFCTL_ACTIVE);
	}
}
