/* slabs.c - slab geometry (calculate_order), slab_get_obj / slab_put_obj, free_block and
 * a cache node's list transitions.  See slabs.h for the slab layout and invariants. */
#include "slabs.h"

#include <string.h>

#include "buddy.h"
#include "debug.h"
#include "list.h"
#include "lock.h"
#include "validate.h"

/* ---- geometry ------------------------------------------------------------------ */

/* Objects a slab aims to hold before it may use a costlier order (SLUB's min_objects,
 * fixed rather than derived from the CPU count so an arena's geometry is the same on
 * every host that maps it). */
#define GEOM_MIN_OBJECTS 16u
/* Highest order tried while looking for min_objects (PAGE_ALLOC_COSTLY_ORDER). */
#define GEOM_COSTLY_ORDER 3u

/* Objects, bufctl width and waste for slot size `size` in a slab of 2^order pages. */
static void fit(uint32_t size, unsigned order, struct sm_geometry *g)
{
	uint32_t slab = SLAB_PAGE_SIZE << order;
	uint32_t n1 = slab / (size + 1), n2;

	g->order = order;
	if (n1 <= SLAB_BUFCTL8_MAX) {
		g->num = n1;
		g->bufctl_width = 1;
	} else {
		n2 = slab / (size + 2);
		if (n2 > SLAB_MAX_OBJS)
			n2 = SLAB_MAX_OBJS;
		if (n2 > SLAB_BUFCTL8_MAX) {
			g->num = n2;
			g->bufctl_width = 2;
		} else {
			g->num = SLAB_BUFCTL8_MAX;
			g->bufctl_width = 1;
		}
	}
	g->bufctl_off = g->num * size;
	g->waste = slab - g->num * (size + g->bufctl_width);
}

static int acceptable(const struct sm_geometry *g, unsigned min_objects)
{
	return g->num >= min_objects && (uint64_t)g->waste * 16 <= (SLAB_PAGE_SIZE << g->order);
}

int sm_calculate_geometry(size_t object_size, size_t align, unsigned flags,
			  struct sm_geometry *g)
{
	if (!align)
		align = SLAB_MIN_ALIGN;
	if (!object_size || object_size > SLAB_MAX_OBJECT_SIZE || (align & (align - 1)) ||
	    align > SLAB_MAX_ALIGN)
		return -EINVAL;
	if (align < SLAB_MIN_ALIGN)
		align = SLAB_MIN_ALIGN;

	g->align = (uint32_t)align;
	g->rz_off = g->track_off = 0;
	if (flags & (SM_RED_ZONE | SM_STORE_USER)) {
		size_t raw = SM_ALIGN_UP(object_size, (size_t)8);
		if (flags & SM_RED_ZONE) {
			g->rz_off = (uint32_t)raw;
			raw += 8;
		}
		if (flags & SM_STORE_USER) {
			g->track_off = (uint32_t)raw;
			raw += sizeof(struct slab_track);
		}
		object_size = raw;
	}
	g->size = (uint32_t)SM_ALIGN_UP(object_size, align);
	/* ceil(2^32 / size): exact for every multiple of size below 2^32 / size * size,
	 * i.e. every object start in a slab (slabs are < 2^32 bytes). */
	g->reciprocal = (uint32_t)(((1ull << 32) + g->size - 1) / g->size);

	/* calculate_order: prefer many objects per slab at a cheap order, accept fewer
	 * objects before a costly order, and never more than 1/16 waste. */
	for (unsigned min = GEOM_MIN_OBJECTS; min >= 1; min--) {
		for (unsigned order = 0; order <= GEOM_COSTLY_ORDER; order++) {
			fit(g->size, order, g);
			if (acceptable(g, min))
				return 0;
		}
	}
	for (unsigned order = GEOM_COSTLY_ORDER + 1; order <= SLAB_MAX_ORDER; order++) {
		fit(g->size, order, g);
		if (acceptable(g, 1))
			return 0;
	}
	return -EINVAL;
}

/* ---- locking ----------------------------------------------------------------------- */

int sm_node_lock(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	int contended;

	return sm_node_lock_c(a, c, node, &contended);
}

int sm_node_lock_c(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		   int *contended)
{
	struct slab_cache_node *n = &c->c_nodes[node];
	int rc = sm_mutex_lock_spin(&n->n_lock, &n->n_spin, contended);

	if (rc == SM_LOCK_OWNERDEAD) {
		sm_node_repair(a, c, node);
		sm_mutex_consistent(&n->n_lock);
		rc = 0;
	}
	return rc;
}

void sm_node_unlock(struct slab_cache_desc *c, unsigned node)
{
	sm_mutex_unlock(&c->c_nodes[node].n_lock);
}

/* ---- objects in slabs (n_lock held) ----------------------------------------------- */

/* Move slab head from list `from` (the one its pg_state names) to list `to` (state to). */
static sm_always_inline void move_slab_lists(struct sm_arena *a, struct slab_list *from,
					     struct slab_list *to, uint32_t head, uint8_t state)
{
	sm_list_del(a->pages, from, head);
	SM_STORE(&a->pages[head].pg_state, state); /* sm_obj_find reads it without the lock */
	sm_list_add_tail(a->pages, to, head);
}

/* Both bufctl widths go through the same always_inline bodies below, instantiated once per
 * width (w is a constant 1 or 2 in each copy), so no loop tests the width per object.  The
 * cache's geometry is copied into locals first: every bufctl store goes through a uint8_t
 * or uint16_t pointer that may alias the descriptor, which would otherwise make the
 * compiler reload c_size, c_num ... after each one. */

static sm_always_inline unsigned bufctl_raw(const uint8_t *b, unsigned i, const unsigned w)
{
	return w == 1 ? b[i] : ((const uint16_t *)b)[i];
}

static sm_always_inline void bufctl_put(uint8_t *b, unsigned i, unsigned v, const unsigned w)
{
	if (w == 1)
		b[i] = (uint8_t)v;
	else
		((uint16_t *)b)[i] = (uint16_t)v;
}

/* A raw entry as pg_free holds it (the 1-byte markers read as 16-bit, as sm_bufctl_get). */
static sm_always_inline unsigned bufctl_wide(unsigned v, const unsigned w)
{
	return w == 1 && v >= BUFCTL8_CACHED ? v | 0xff00u : v;
}

/* ACTIVE or CACHED, from a raw entry. */
static sm_always_inline int bufctl_out(unsigned e, const unsigned w)
{
	return e - (w == 1 ? BUFCTL8_CACHED : BUFCTL16_CACHED) < 2u;
}

/* slab_get_obj, for up to want objects of one slab.  Order matters to a holder that dies
 * half-way (validate.c:sm_node_repair): each object is written to its destination first,
 * then marked ACTIVE; a death before that leaves it free in its slab (repair drops the
 * copy), after it out and held by the destination (slabd's reclaim returns it).  The
 * head's pg_free and pg_inuse are stored once at the end: repair rebuilds them from the
 * bufctl anyway.  Returns how many were taken; a corrupt chain stops it early.
 *
 * An empty slab (pg_inuse 0: every object free, whatever order its chain is in) hands out
 * objects 0, 1, 2, ... without walking the chain: all destinations first, then all marks,
 * and the rest of the slab, if any, is chained anew in index order (k, k + 1, ..., END). */
static sm_always_inline unsigned get_objs_w(struct sm_arena *a, struct slab_cache_desc *c,
					    uint32_t head, uint64_t *dst, unsigned want,
					    int *corrupt, const unsigned w)
{
	struct slab_page *pg = &a->pages[head];
	const uint64_t base = (uint64_t)head << SLAB_PAGE_SHIFT, size = c->c_size;
	const unsigned num = c->c_num;
	const unsigned mark = c->c_flags & SM_DEBUG ? BUFCTL_CACHED : BUFCTL_ACTIVE;
	uint8_t *b = a->base + base + c->c_bufctl_off;
	unsigned idx = pg->pg_free, inuse = pg->pg_inuse, got;
	uint64_t *d = dst, *dend;

	if (want > num - inuse)
		want = num - inuse;
	dend = dst + want;
	if (inuse == 0) {
		uint64_t o = base;

		/* Read before the first write: on a page this process has not touched yet, a
		 * read fault maps the neighbouring pages slabd already faulted in as well
		 * (the kernel's fault-around), where a write fault maps one page.  A cache
		 * taking fresh slabs then faults once per 16 pages instead of once per page. */
		(void)*(volatile const uint8_t *)b;

		/* Four at a time: this loop is most of the cost of a refill. */
		for (; dend - d >= 4; d += 4, o += 4 * size) {
			__atomic_store_n(&d[0], o, __ATOMIC_RELAXED);
			__atomic_store_n(&d[1], o + size, __ATOMIC_RELAXED);
			__atomic_store_n(&d[2], o + 2 * size, __ATOMIC_RELAXED);
			__atomic_store_n(&d[3], o + 3 * size, __ATOMIC_RELAXED);
		}
		for (; d < dend; d++, o += size)
			__atomic_store_n(d, o, __ATOMIC_RELAXED);
		SM_BARRIER();
		if (w == 1) {
			memset(b, (uint8_t)mark, want);
		} else {
			for (unsigned k = 0; k < want; k++)
				bufctl_put(b, k, mark, w);
		}
		SM_BARRIER();
		if (want < num) {
			for (unsigned k = want; k + 1 < num; k++)
				bufctl_put(b, k, k + 1, w);
			bufctl_put(b, num - 1, BUFCTL16_END, w);
			idx = want;
		} else {
			idx = BUFCTL_END;
		}
		pg->pg_free = (uint16_t)idx;
		pg->pg_inuse = (uint16_t)want;
		return want;
	}
	for (; d < dend; d++) {
		unsigned next;

		if (unlikely(idx >= num)) {
			*corrupt = 1; /* chain corrupt or short: validate reports it */
			break;
		}
		next = bufctl_raw(b, idx, w);
		__atomic_store_n(d, base + idx * size, __ATOMIC_RELAXED);
		SM_BARRIER();
		bufctl_put(b, idx, mark, w);
		SM_BARRIER();
		idx = next;
	}
	got = (unsigned)(d - dst);
	pg->pg_free = (uint16_t)bufctl_wide(idx, w);
	pg->pg_inuse = (uint16_t)(inuse + got);
	return got;
}

static sm_noinline unsigned get_objs_1(struct sm_arena *a, struct slab_cache_desc *c,
				       uint32_t head, uint64_t *dst, unsigned want, int *corrupt)
{
	return get_objs_w(a, c, head, dst, want, corrupt, 1);
}

static sm_noinline unsigned get_objs_2(struct sm_arena *a, struct slab_cache_desc *c,
				       uint32_t head, uint64_t *dst, unsigned want, int *corrupt)
{
	return get_objs_w(a, c, head, dst, want, corrupt, 2);
}

unsigned sm_do_alloc_objs(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  uint64_t *dst, unsigned want)
{
	struct slab_cache_node *n = &c->c_nodes[node];
	const int wide = c->c_bufctl_width != 1;
	unsigned got = 0;

	while (got < want) {
		uint32_t h = n->n_partial.l_head;
		uint8_t from = PG_SLAB_PARTIAL, to;
		int corrupt = 0;
		unsigned k;

		if (h == SLAB_NIL) {
			h = n->n_free.l_head;
			if (h == SLAB_NIL)
				break;
			from = PG_SLAB_FREE;
		}
		k = wide ? get_objs_2(a, c, h, dst + got, want - got, &corrupt)
			 : get_objs_1(a, c, h, dst + got, want - got, &corrupt);
		got += k;
		n->n_free_objects -= k;
		/* One move, straight to where the slab ends up.  A corrupt chain parks its slab
		 * on the full list, where nothing more is taken from it and validate reports
		 * it. */
		to = a->pages[h].pg_inuse == c->c_num || corrupt ? PG_SLAB_FULL : PG_SLAB_PARTIAL;
		if (to != from)
			move_slab_lists(a, from == PG_SLAB_FREE ? &n->n_free : &n->n_partial,
					to == PG_SLAB_FULL ? &n->n_full : &n->n_partial, h, to);
	}
	return got;
}

/* free_block's list decision for slab pg, after a free emptied it or took it off the full
 * list (pg_state still says where it is), with the kernel's outcomes.  Empty: kept while
 * fewer than min_partial are kept or the node holds no more than free_limit free objects
 * (n_free_objects, counting this free), otherwise onto the discard queue; full: becomes
 * partial. */
static sm_noinline void put_move(struct sm_arena *a, struct slab_cache_desc *c,
				 struct slab_cache_node *cn, struct slab_page *pg)
{
	uint32_t head = (uint32_t)(pg - a->pages);
	/* free_block only frees into partial and full slabs */
	struct slab_list *from = pg->pg_state == PG_SLAB_FULL ? &cn->n_full : &cn->n_partial;

	if (pg->pg_inuse == 0) {
		if (cn->n_free.l_count >= c->c_min_partial &&
		    cn->n_free_objects > cn->n_free_limit) {
			move_slab_lists(a, from, &cn->n_discard, head, PG_SLAB_DISCARD);
			cn->n_free_objects -= c->c_num;
		} else {
			move_slab_lists(a, from, &cn->n_free, head, PG_SLAB_FREE);
		}
	} else if (pg->pg_state == PG_SLAB_FULL) {
		move_slab_lists(a, from, &cn->n_partial, head, PG_SLAB_PARTIAL);
	}
}

#define SLAB_KEY_MASK 0xfe00ffffu
#define FULL_BIT      (1u << 24) /* in such a word: PG_SLAB_FULL, not PARTIAL */
static_assert(PG_SLAB_PARTIAL == 6 && PG_SLAB_FULL == 7, "SLAB_KEY_MASK, FULL_BIT");
static_assert(offsetof(struct slab_page, pg_order) == offsetof(struct slab_page, pg_tag) + 2 &&
	      offsetof(struct slab_page, pg_state) == offsetof(struct slab_page, pg_tag) + 3,
	      "pg_tag, pg_order, pg_state form one word");

/* free_block (slab_put_obj folded in).  Each object's slab is looked up (the head is the
 * object's page with the low c_order bits cleared: buddy.c aligns blocks to their size in
 * absolute page numbers, and I3 gives the head the cache id too); it must be a partial or
 * full slab of c on this node, the object on an object boundary and ACTIVE/CACHED.  The
 * free updates bufctl, pg_free and pg_inuse in place and takes its list decision at once,
 * as slab_put_obj + free_block did.
 *
 * Objects of one call often come in runs from one slab, so after a free the objects that
 * follow in the same slab go through an inner loop that needs no descriptor: [soff, soff +
 * boff) is the slab's objects, so one comparison says "this slab, index < c_num", and the
 * chain head and count stay in registers until the run ends.  Each object is still
 * checked (object boundary, bufctl ACTIVE/CACHED, which also catches a double free inside
 * the run, and every free after the one that emptied the slab).  The list decision waits
 * for the end of the run: nothing but this slab's frees happens in between (refused
 * objects change nothing), so it is the one deciding at each free would reach: full
 * becomes partial, or the slab is empty, kept or discarded by the counts as they were at
 * the free that emptied it (a full slab that empties in one run goes straight to its
 * empty list, leaving the partial list as the two moves would).  A slab that comes back
 * later in the call starts a new run from its stored descriptor.
 *
 * n_free_objects is not counted per object: it is its value at entry plus the objects
 * freed so far, stored before each list decision and at the end (repair recomputes it
 * anyway, as it does chains and counts from bufctl if the holder dies in here). */
static sm_always_inline unsigned free_block_w(struct sm_arena *a, struct slab_cache_desc *c,
					      unsigned node, const uint64_t *objs, unsigned n,
					      const unsigned w)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	const struct slab_node_region *r = sm_region(a, node);
	const uint64_t size = c->c_size, recip = c->c_reciprocal, boff = c->c_bufctl_off;
	uint8_t *const pbase = (uint8_t *)a->pages;
	uint8_t *const bbase = a->base + boff; /* + a slab's offset: its bufctl */
	/* The node's bytes, and an offset's slab start (offset & smask_not). */
	const uint64_t first = (uint64_t)r->nr_first_page << SLAB_PAGE_SHIFT;
	const uint64_t bytes = (uint64_t)r->nr_nr_pages << SLAB_PAGE_SHIFT;
	const uint64_t smask_not = ~(((uint64_t)SLAB_PAGE_SIZE << c->c_order) - 1);
	/* pg_tag, pg_order, pg_state as one little-endian word (layout.h): a partial or
	 * full slab of c on this node is (word & SLAB_KEY_MASK) == key, PARTIAL and FULL
	 * differing in bit 0 only. */
	const uint32_t key = SLAB_TAG(c->c_id + 1, node) | (uint32_t)PG_SLAB_PARTIAL << 24;
	uint64_t nfo0 = cn->n_free_objects; /* n_free_objects == nfo0 + objects freed so far */
	unsigned refused = 0;
	const uint64_t *p = objs, *const end = objs + n;

	while (p < end) {
		uint64_t off = *p++, soff = off & smask_not, delta, idx;
		struct slab_page *pg;
		uint32_t word;
		uint8_t *b;
		unsigned fr, inuse;
		int bad;

		if (soff - first >= bytes)
			goto invalid; /* not in this node (nor in the arena) */
		/* The head: the slab's first page (buddy.c aligns blocks to their size). */
		pg = (struct slab_page *)(pbase + (soff >> (SLAB_PAGE_SHIFT - 4)));
		memcpy(&word, &pg->pg_tag, sizeof(word));
		delta = off - soff;
		if (unlikely((word & SLAB_KEY_MASK) != key)) {
			if ((uint16_t)word != (uint16_t)key)
				goto invalid; /* not a slab of c on this node */
			idx = (delta * recip) >> 32;
			if (delta >= boff || idx * size != delta)
				goto invalid; /* not an object */
			goto double_free; /* an empty slab's objects are all free */
		}
		if (delta >= boff)
			goto invalid; /* in the bufctl or the waste */
		idx = (delta * recip) >> 32;
		if (idx * size != delta)
			goto invalid; /* not an object boundary */
		b = bbase + soff;
		if (unlikely(!bufctl_out(bufctl_raw(b, (unsigned)idx, w), w)))
			goto double_free;
		bufctl_put(b, (unsigned)idx, pg->pg_free, w);
		fr = (unsigned)idx;
		inuse = pg->pg_inuse - 1u;
		/* The run: the objects that follow in this slab. */
		while (p < end && (delta = *p - soff) < boff) {
			p++;
			idx = (delta * recip) >> 32;
			if (unlikely(idx * size != delta)) {
				SM_ADD(&c->c_stat[STAT_INVALID_FREE], 1);
				refused++;
				continue;
			}
			if (unlikely(!bufctl_out(bufctl_raw(b, (unsigned)idx, w), w))) {
				SM_ADD(&c->c_stat[STAT_DOUBLE_FREE], 1);
				refused++;
				continue;
			}
			bufctl_put(b, (unsigned)idx, fr, w);
			fr = (unsigned)idx;
			inuse--;
		}
		pg->pg_free = (uint16_t)fr;
		pg->pg_inuse = (uint16_t)inuse;
		if (unlikely((uint16_t)inuse == 0 || (word & FULL_BIT))) {
			uint64_t freed = (uint64_t)(p - objs) - refused;

			cn->n_free_objects = nfo0 + freed;
			put_move(a, c, cn, pg);
			nfo0 = cn->n_free_objects - freed;
		}
		continue;
invalid:
		bad = STAT_INVALID_FREE;
		goto refuse;
double_free:
		bad = STAT_DOUBLE_FREE;
refuse:
		SM_ADD(&c->c_stat[bad], 1);
		refused++;
	}
	cn->n_free_objects = nfo0 + (n - refused);
	return refused;
}

unsigned sm_do_free_block(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  const uint64_t *objs, unsigned n)
{
	if (c->c_bufctl_width == 1)
		return free_block_w(a, c, node, objs, n, 1);
	return free_block_w(a, c, node, objs, n, 2);
}

void sm_slab_prepare(struct sm_arena *a, struct slab_cache_desc *c, uint32_t head)
{
	uint8_t *slab = sm_slab_addr(a, head);

	for (unsigned i = 0; i < c->c_num; i++) {
		sm_bufctl_set(c, slab, i, i + 1 < c->c_num ? i + 1 : BUFCTL16_END);
		if (c->c_flags & (SM_POISON | SM_RED_ZONE | SM_STORE_USER))
			sm_debug_init_free(a, c, ((uint64_t)head << SLAB_PAGE_SHIFT) +
						 (uint64_t)i * c->c_size);
	}
}

void sm_do_slab_attach(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		       uint32_t head)
{
	sm_slab_prepare(a, c, head);
	sm_do_slab_link(a, c, node, head);
}

void sm_do_slab_link(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		     uint32_t head)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	struct slab_page *pg = &a->pages[head];

	pg->pg_inuse = 0;
	pg->pg_free = 0;
	for (uint32_t i = 0; i < 1u << c->c_order; i++)
		a->pages[head + i].pg_tag = SLAB_TAG(c->c_id + 1, node);
	pg->pg_state = PG_SLAB_FREE;
	sm_list_add_tail(a->pages, &cn->n_free, head);
	cn->n_free_objects += c->c_num;
	SM_ADD(&c->c_stat[STAT_ALLOC_SLAB], 1);
}

/* Give a slab (off every list) back to the page allocator.  The head turns PG_BLOCK
 * before any page loses its cache id, so a holder dying half-way leaves a block that
 * repair (validate.c: "attach was cut short") puts back on the free list; the head's
 * cache id goes last. */
static void release_slab(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			 uint32_t head)
{
	a->pages[head].pg_state = PG_BLOCK;
	for (uint32_t i = (1u << c->c_order) - 1; i > 0; i--)
		a->pages[head + i].pg_tag = 0;
	a->pages[head].pg_tag = 0;
	if (sm_region_lock(a, node) == 0) {
		sm_do_pages_free(a, node, head);
		sm_region_unlock(a, node);
		SM_ADD(&c->c_stat[STAT_FREE_SLAB], 1);
	}
}

unsigned sm_do_discard(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		       int all_free)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	unsigned released = 0;
	uint32_t h;

	while ((h = sm_list_pop(a->pages, &cn->n_discard)) != SLAB_NIL) {
		release_slab(a, c, node, h);
		released++;
	}
	while (all_free && (h = sm_list_pop(a->pages, &cn->n_free)) != SLAB_NIL) {
		cn->n_free_objects -= c->c_num;
		release_slab(a, c, node, h);
		released++;
	}
	return released;
}

void sm_do_drain_shared(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	struct slab_cache_node *cn = &c->c_nodes[node];

	sm_do_free_block(a, c, node, sm_shared(a, cn), cn->n_shared_avail);
	cn->n_shared_avail = 0;
}
