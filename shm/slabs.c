/* slabs.c - slab geometry (calculate_order), slab_get_obj / slab_put_obj, free_block and
 * a cache node's list transitions.  See slabs.h for the slab layout and invariants. */
#include "slabs.h"

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
	struct slab_cache_node *n = &c->c_nodes[node];
	int rc = sm_mutex_lock(&n->n_lock);

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

static struct slab_list *list_of(struct slab_cache_node *n, uint8_t state)
{
	switch (state) {
	case PG_SLAB_PARTIAL: return &n->n_partial;
	case PG_SLAB_FULL:    return &n->n_full;
	case PG_SLAB_FREE:    return &n->n_free;
	default:              return &n->n_discard;
	}
}

static void move_slab(struct sm_arena *a, struct slab_cache_node *n, uint32_t head,
		      uint8_t to)
{
	struct slab_page *pg = &a->pages[head];

	sm_list_del(a->pages, list_of(n, pg->pg_state), head);
	SM_STORE(&pg->pg_state, to); /* sm_obj_find reads it without the lock */
	sm_list_add_tail(a->pages, list_of(n, to), head);
}

/* slab_get_obj, for up to want objects of one slab.  Order matters to a holder that dies
 * half-way (validate.c:sm_node_repair): each object is written to its destination first,
 * then marked ACTIVE; a death before that leaves it free in its slab (repair drops the
 * copy), after it out and held by the destination (slabd's reclaim returns it).  The
 * head's pg_free and pg_inuse are stored once at the end: repair rebuilds them from the
 * bufctl anyway.  Returns how many were taken; a corrupt chain stops it early. */
static unsigned slab_get_objs(struct sm_arena *a, struct slab_cache_desc *c, uint32_t head,
			      uint64_t *dst, unsigned want, int *corrupt)
{
	struct slab_page *pg = &a->pages[head];
	uint8_t *slab = sm_slab_addr(a, head);
	uint64_t base = (uint64_t)head << SLAB_PAGE_SHIFT;
	unsigned idx = pg->pg_free, inuse = pg->pg_inuse, got = 0;
	unsigned mark = c->c_flags & SM_DEBUG ? BUFCTL_CACHED : BUFCTL_ACTIVE;

	if (want > c->c_num - inuse)
		want = c->c_num - inuse;
	while (got < want) {
		unsigned next;

		if (unlikely(idx >= c->c_num)) {
			*corrupt = 1; /* chain corrupt or short: validate reports it */
			break;
		}
		next = sm_bufctl_get(c, slab, idx);
		__atomic_store_n(&dst[got], base + (uint64_t)idx * c->c_size, __ATOMIC_RELAXED);
		SM_BARRIER();
		sm_bufctl_set(c, slab, idx, mark);
		SM_BARRIER();
		idx = next;
		got++;
	}
	pg->pg_free = (uint16_t)idx;
	pg->pg_inuse = (uint16_t)(inuse + got);
	return got;
}

unsigned sm_do_alloc_objs(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  uint64_t *dst, unsigned want)
{
	struct slab_cache_node *n = &c->c_nodes[node];
	unsigned got = 0;

	while (got < want) {
		uint32_t h = n->n_partial.l_head;
		int corrupt = 0;

		if (h == SLAB_NIL) {
			h = n->n_free.l_head;
			if (h == SLAB_NIL)
				break;
			move_slab(a, n, h, PG_SLAB_PARTIAL);
		}
		{
			unsigned k = slab_get_objs(a, c, h, dst + got, want - got, &corrupt);
			got += k;
			n->n_free_objects -= k;
		}
		/* A corrupt chain parks its slab on the full list, where nothing more is taken
		 * from it and validate reports it. */
		if (a->pages[h].pg_inuse == c->c_num || corrupt)
			move_slab(a, n, h, PG_SLAB_FULL);
	}
	return got;
}

/* slab_put_obj: refuse anything that is not an object of c out of its slab on this node.
 * Returns 0, or the stat to count (STAT_INVALID_FREE / STAT_DOUBLE_FREE). */
static int slab_put_obj(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			uint64_t off, uint32_t *headp)
{
	uint32_t head, idx;
	struct slab_page *pg;
	uint8_t *slab;
	unsigned e;

	const struct slab_node_region *r = sm_region(a, node);

	if (sm_obj_lookup(a, c, off, &head, &idx) != OBJ_OK ||
	    head - r->nr_first_page >= r->nr_nr_pages)
		return STAT_INVALID_FREE; /* not an object of c on this node */
	pg = &a->pages[head];
	if (pg->pg_state != PG_SLAB_PARTIAL && pg->pg_state != PG_SLAB_FULL)
		return STAT_DOUBLE_FREE; /* every object of an empty slab is already free */
	slab = sm_slab_addr(a, head);
	e = sm_bufctl_get(c, slab, idx);
	if (e != BUFCTL_ACTIVE && e != BUFCTL_CACHED)
		return STAT_DOUBLE_FREE;
	sm_bufctl_set(c, slab, idx, pg->pg_free);
	pg->pg_free = (uint16_t)idx;
	pg->pg_inuse--;
	*headp = head;
	return 0;
}

unsigned sm_do_free_block(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
			  const uint64_t *objs, unsigned n)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	unsigned refused = 0;

	for (unsigned i = 0; i < n; i++) {
		uint32_t head;
		int bad = slab_put_obj(a, c, node, objs[i], &head);
		struct slab_page *pg;

		if (bad) {
			SM_ADD(&c->c_stat[bad], 1);
			refused++;
			continue;
		}
		pg = &a->pages[head];
		cn->n_free_objects++;
		if (pg->pg_inuse == 0) {
			/* Empty: keep it while fewer than min_partial are kept or the node holds
			 * no more than free_limit free objects; else discard it (discard_slab). */
			if (cn->n_free.l_count >= c->c_min_partial &&
			    cn->n_free_objects > cn->n_free_limit) {
				move_slab(a, cn, head, PG_SLAB_DISCARD);
				cn->n_free_objects -= c->c_num;
			} else {
				move_slab(a, cn, head, PG_SLAB_FREE);
			}
		} else if (pg->pg_state == PG_SLAB_FULL) {
			move_slab(a, cn, head, PG_SLAB_PARTIAL);
		}
		/* else: it stays partial. */
	}
	return refused;
}

void sm_do_slab_attach(struct sm_arena *a, struct slab_cache_desc *c, unsigned node,
		       uint32_t head)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint8_t *slab = sm_slab_addr(a, head);
	struct slab_page *pg = &a->pages[head];

	for (unsigned i = 0; i < c->c_num; i++) {
		sm_bufctl_set(c, slab, i, i + 1 < c->c_num ? i + 1 : BUFCTL16_END);
		if (c->c_flags & (SM_POISON | SM_RED_ZONE | SM_STORE_USER))
			sm_debug_init_free(a, c, ((uint64_t)head << SLAB_PAGE_SHIFT) +
						 (uint64_t)i * c->c_size);
	}
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

	sm_do_free_block(a, c, node, cn->n_shared, cn->n_shared_avail);
	cn->n_shared_avail = 0;
}
