/* cache.c - cache table lifecycle and cache-wide operations (see cache.h). */
#include "cache.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buddy.h"
#include "list.h"
#include "lock.h"

int sm_cache_name_ok(const char *name)
{
	size_t len = 0;

	if (!name)
		return 0;
	for (const char *s = name; *s; s++, len++) {
		char ch = *s;
		if (len >= SLAB_NAME_MAX - 1 ||
		    !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return len > 0;
}

/* SLAB's enable_cpucache defaults. */
static unsigned default_limit(uint32_t size)
{
	if (size > 131072)
		return 1;
	if (size > SLAB_PAGE_SIZE)
		return 8;
	if (size > 1024)
		return 24;
	if (size > 256)
		return 54;
	return 252;
}

/* SLUB's set_min_partial: ilog2(size) / 2 within [5, 10]. */
static unsigned default_min_partial(uint32_t size)
{
	unsigned l = 0;

	while ((2u << l) <= size)
		l++;
	l /= 2;
	return l < 5 ? 5 : l > 10 ? 10 : l;
}

/* SLAB's free_limit: (1 + nr_cpus) * batchcount + objects per slab. */
static uint64_t free_limit(const struct slab_cache_desc *c)
{
	static long cpus; /* read once: sysconf reads a file, and the trim asks every second */
	long n = SM_LOAD(&cpus);

	if (n < 1) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
		SM_STORE(&cpus, n);
	}
	return (uint64_t)(1 + n) * c->c_batchcount + c->c_num;
}

/* n_free_limit moves between SLAB's free_limit (the floor) and the floor plus the empty
 * slabs a node may keep: at most 1/SM_KEEP_SHARE of its region.  Each grant raises it
 * by the objects granted, so a cache that needed N fresh slabs keeps N empty ones when
 * its objects come back, instead of handing them to slabd at once and asking for them
 * again on the next burst (in the kernel a discard is a cheap page free; here it is a
 * trip through slabd's queue and a grant).  Each idle second halves what is above the
 * floor, and sm_cache_trim gives back the empty slabs beyond it: the kernel's cache_reap
 * returns free slabs the same gradual way. */
#define SM_KEEP_SHARE 8u

static uint64_t keep_limit(const struct sm_arena *a, const struct slab_cache_desc *c,
			   unsigned node, uint64_t want)
{
	uint64_t floor = free_limit(c);
	uint64_t slabs = (sm_region(a, node)->nr_nr_pages / SM_KEEP_SHARE) >> c->c_order;
	uint64_t top = floor + slabs * c->c_num;

	return want < floor ? floor : want > top ? top : want;
}

/* The shared array's size follows the node's free_limit: the objects a node may keep
 * free anyway are cheaper to keep as offsets in its shared array, where a refill copies
 * them out, than back in their slabs, where free_block validates, chains and counts each
 * one and a refill walks the chains again (a batch of 100,000 objects costs about 60
 * instructions per object through the slabs, 2 through the array).  Objects in the array
 * still hold their slabs, so it grows the same way as the empty slabs a node keeps: it is
 * what grants added to free_limit above SLAB's floor (halved each idle second, reset by
 * cache.tune), at least the tunable `shared`, and with storage of at most
 * 1/SM_DEPOT_SHARE of the node's pages (8 bytes an entry: 1/128 of the node covers 1/16
 * of it in 64-byte objects).  Beyond SLAB_SHARED_MAX entries it lives in a PG_DEPOT
 * block slabd allocates on the node. */
#define SM_DEPOT_SHARE 128u

static uint64_t depot_target(const struct sm_arena *a, const struct slab_cache_desc *c,
			     unsigned node)
{
	uint64_t fl = c->c_nodes[node].n_free_limit, floor = free_limit(c);
	uint64_t want = fl > floor ? fl - floor : 0;
	uint64_t top = ((uint64_t)sm_region(a, node)->nr_nr_pages << SLAB_PAGE_SHIFT) /
		       SM_DEPOT_SHARE / sizeof(uint64_t);

	if (top > sm_depot_entries(SLAB_MAX_ORDER))
		top = sm_depot_entries(SLAB_MAX_ORDER);
	if (want > top)
		want = top;
	return want < c->c_shared ? c->c_shared : want;
}

/* Size node's shared array to depot_target (n_lock held; slabd only: it allocates pages).
 * Storage changes only when the target needs another block order (inline up to
 * SLAB_SHARED_MAX): a new block is allocated, the entries copied, the node switched to
 * it, the old block freed.  When the target shrinks below what the array holds, the
 * oldest entries go back to their slabs first.  If no block can be had the array keeps
 * its storage and is capped by its capacity. */
static void depot_fit(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint64_t want = depot_target(a, c, node);
	uint64_t *from = sm_shared(a, cn), *to;
	uint32_t old = cn->n_depot, blk = SLAB_NIL, limit;
	unsigned order = 0;

	if (want > SLAB_SHARED_MAX) {
		while (sm_depot_entries(order) < want)
			order++;
		if (old != SLAB_NIL && cn->n_depot_order == order)
			blk = old;
		else if (sm_pages_alloc(a, node, order, &blk) == 0)
			a->pages[blk].pg_state = PG_DEPOT;
		else
			blk = SLAB_NIL;
		if (blk == SLAB_NIL) { /* no block: stay where it is */
			blk = old;
			order = cn->n_depot_order;
		}
	}
	limit = blk == SLAB_NIL ? SLAB_SHARED_MAX : sm_depot_entries(order);
	if (limit > want)
		limit = (uint32_t)want;
	if (cn->n_shared_avail > limit) {
		uint32_t extra = cn->n_shared_avail - limit;

		sm_do_free_block(a, c, node, from, extra);
		memmove(from, from + extra, (size_t)limit * sizeof(uint64_t));
		cn->n_shared_avail = limit;
	}
	if (blk != old) {
		/* Entries first, then the switch, then the old block: a slabd that dies in
		 * between leaks a block at most (validate reports it) and loses nothing. */
		to = blk == SLAB_NIL ? cn->n_shared : (uint64_t *)sm_slab_addr(a, blk);
		memcpy(to, from, (size_t)cn->n_shared_avail * sizeof(uint64_t));
		SM_BARRIER();
		cn->n_depot_order = blk == SLAB_NIL ? 0 : order;
		SM_STORE(&cn->n_depot, blk);
		if (old != SLAB_NIL)
			sm_pages_free(a, old);
	}
	cn->n_shared_limit = limit;
}

static int tunables_ok(unsigned limit, unsigned batch, unsigned shared)
{
	return limit >= 1 && limit <= SLAB_MAG_MAX && batch >= 1 && batch <= limit &&
	       shared <= SLAB_SHARED_MAX;
}

int sm_cache_lookup(const struct sm_arena *a, const char *name, uint32_t *id)
{
	for (uint32_t i = 0; i < a->hdr->ah_nr_caches; i++) {
		const struct slab_cache_desc *c = sm_cache(a, i);
		uint32_t st = __atomic_load_n(&c->c_state, __ATOMIC_ACQUIRE);

		if (st != CACHE_UNUSED && strncmp(c->c_name, name, SLAB_NAME_MAX) == 0) {
			*id = i;
			return 0;
		}
	}
	return -ENOENT;
}

int sm_cache_create(struct sm_arena *a, const struct sm_cache_params *p, uint32_t *id,
		    bool *existed)
{
	struct sm_geometry g;
	struct slab_cache_desc *c = NULL;
	unsigned flags = p->flags, limit, batch, shared;
	size_t align = p->align;
	uint32_t found;

	*existed = false;
	if (!sm_cache_name_ok(p->name) || (flags & ~SM_FLAGS_ALL) ||
	    p->node < -1 || p->node >= (int)a->hdr->ah_nr_nodes)
		return -EINVAL;
	if ((flags & SM_HWCACHE_ALIGN) && align < 64)
		align = 64;
	if (sm_calculate_geometry(p->size, align, flags, &g))
		return -EINVAL;
	limit = p->limit ? p->limit : default_limit(g.size);
	batch = p->batchcount ? p->batchcount : (limit + 1) / 2;
	shared = p->shared ? p->shared : (8 * batch < SLAB_SHARED_MAX ? 8 * batch : SLAB_SHARED_MAX);
	if (!tunables_ok(limit, batch, shared))
		return -EINVAL;

	if (sm_cache_lookup(a, p->name, &found) == 0) {
		c = sm_cache(a, found);
		if (c->c_state == CACHE_DYING)
			return -EBUSY;
		if (c->c_object_size != p->size || c->c_align != g.align ||
		    c->c_flags != flags || c->c_node != p->node)
			return -EEXIST;
		*existed = true;
		*id = found;
		return 0;
	}
	for (uint32_t i = 0; i < a->hdr->ah_nr_caches && !c; i++)
		if (sm_cache(a, i)->c_state == CACHE_UNUSED)
			c = sm_cache(a, i);
	if (!c)
		return -ENOSPC;

	memset(c->c_name, 0, sizeof(c->c_name));
	strcpy(c->c_name, p->name);
	c->c_serial++;
	c->c_object_size = (uint32_t)p->size;
	c->c_size = g.size;
	c->c_align = g.align;
	c->c_flags = flags;
	c->c_order = g.order;
	c->c_num = g.num;
	c->c_reciprocal = g.reciprocal;
	c->c_bufctl_off = g.bufctl_off;
	c->c_bufctl_width = g.bufctl_width;
	c->c_rz_off = g.rz_off;
	c->c_track_off = g.track_off;
	c->c_corruptions = 0;
	memset(c->c_corrupt, 0, sizeof(c->c_corrupt));
	c->c_limit = limit;
	c->c_batchcount = batch;
	c->c_shared = shared;
	c->c_min_partial = p->min_partial ? p->min_partial : default_min_partial(g.size);
	c->c_node = p->node;
	c->c_refcount = 0;
	c->c_max_objects = p->max_objects;
	memset(c->c_stat, 0, sizeof(c->c_stat));
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_cache_node *cn = &c->c_nodes[n];
		sm_list_init(&cn->n_partial);
		sm_list_init(&cn->n_full);
		sm_list_init(&cn->n_free);
		sm_list_init(&cn->n_discard);
		cn->n_free_objects = 0;
		cn->n_free_limit = free_limit(c);
		cn->n_shared_avail = 0;
		cn->n_shared_limit = shared;
		cn->n_depot = SLAB_NIL;
		cn->n_depot_order = 0;
		cn->n_taker = 0;
	}
	__atomic_store_n(&c->c_state, CACHE_LIVE, __ATOMIC_RELEASE);
	*id = c->c_id;
	return 0;
}

static uint64_t slab_objects(struct sm_arena *a, struct slab_cache_desc *c)
{
	uint64_t slabs = 0;

	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		const struct slab_cache_node *cn = &c->c_nodes[n];
		slabs += SM_LOAD(&cn->n_partial.l_count) + SM_LOAD(&cn->n_full.l_count) +
			 SM_LOAD(&cn->n_free.l_count);
	}
	return slabs * c->c_num;
}

/* Make the new slabs' pages resident and mapped in slabd, one system call per run of
 * adjacent blocks, before the node lock is taken: the attach writes every slab's bufctl,
 * and page by page that is a fault each (most of what a cold cache costs).  Pages from
 * the node reserve are left alone: whoever stocked them (the stocker thread, or the
 * stocking at start-up) made them resident and mapped them through this same mapping
 * (sm_reserve_fault), and an adopted arena's reserve is faulted in the same way when it
 * is adopted (daemon/adopt.c).  Mapping them again cost 215 ns a slab of 64-byte objects,
 * two thirds of a grant's work, for page-table walks that found every page there (a
 * cache growing by 1,000,000 objects on a long-running slabd waited 6-9 ms for grants,
 * 3-7 without).  Best effort: a page left out faults in on first use. */
static void populate(struct sm_arena *a, const struct slab_cache_desc *c,
		     const uint32_t *heads, const uint8_t *resident, unsigned n)
{
	uint32_t pages = 1u << c->c_order;

	for (unsigned i = 0; i < n;) {
		unsigned j = i + 1;

		while (j < n && heads[j] == heads[j - 1] + pages && resident[j] == resident[i])
			j++;
		if (!resident[i])
			(void)sm_pages_populate(a, heads[i], (j - i) * pages);
		i = j;
	}
}

int sm_cache_grow(struct sm_arena *a, uint32_t id, unsigned node, unsigned nr)
{
	struct slab_cache_desc *c;
	uint32_t heads[SM_GROW_MAX];
	uint8_t resident[SM_GROW_MAX];
	unsigned got = 0;
	int rc;

	if (id >= a->hdr->ah_nr_caches || node >= a->hdr->ah_nr_nodes || !nr)
		return -EINVAL;
	c = sm_cache(a, id);
	if (c->c_state == CACHE_UNUSED)
		return -EINVAL;
	if (nr > SM_ARRAY_SIZE(heads))
		nr = SM_ARRAY_SIZE(heads);
	if (c->c_max_objects) {
		uint64_t have = slab_objects(a, c), room;
		if (have + c->c_num > c->c_max_objects)
			return -EDQUOT;
		room = (c->c_max_objects - have) / c->c_num;
		if (nr > room)
			nr = (unsigned)room;
	}
	rc = sm_region_lock(a, node);
	if (rc)
		return rc;
	while (got < nr && (rc = sm_do_pages_take(a, node, c->c_order, &heads[got])) >= 0)
		resident[got++] = (uint8_t)rc;
	sm_region_unlock(a, node);
	if (!got)
		return -ENOMEM;
	populate(a, c, heads, resident, got);
	/* The slabs' own bytes before the node lock, which clients wait for: the lock is
	 * held only to link them in. */
	for (unsigned i = 0; i < got; i++)
		sm_slab_prepare(a, c, heads[i]);
	rc = sm_node_lock(a, c, node);
	if (rc) {
		for (unsigned i = 0; i < got; i++)
			sm_pages_free(a, heads[i]);
		return rc;
	}
	for (unsigned i = 0; i < got; i++)
		sm_do_slab_link(a, c, node, heads[i]);
	c->c_nodes[node].n_free_limit = keep_limit(a, c, node, c->c_nodes[node].n_free_limit +
						   (uint64_t)got * c->c_num);
	depot_fit(a, c, node);
	sm_node_unlock(c, node);
	return (int)got;
}

/* A cache id that names a created cache. */
static struct slab_cache_desc *live_cache(struct sm_arena *a, uint32_t id)
{
	struct slab_cache_desc *c;

	if (id >= a->hdr->ah_nr_caches)
		return NULL;
	c = sm_cache(a, id);
	return c->c_state == CACHE_UNUSED ? NULL : c;
}

/* The cache node whose shared array lives in depot block h, or NULL. */
static struct slab_cache_node *depot_owner(struct sm_arena *a, uint32_t h)
{
	for (uint32_t id = 0; id < a->hdr->ah_nr_caches; id++) {
		struct slab_cache_desc *c = sm_cache(a, id);

		if (c->c_state == CACHE_UNUSED)
			continue;
		for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++)
			if (SM_LOAD(&c->c_nodes[n].n_depot) == h)
				return &c->c_nodes[n];
	}
	return NULL;
}

unsigned sm_depot_orphans(struct sm_arena *a, int release)
{
	unsigned found = 0;

	for (uint32_t p = a->hdr->ah_meta_pages; p < a->hdr->ah_nr_pages; p++) {
		if (a->pages[p].pg_state != PG_DEPOT || depot_owner(a, p))
			continue;
		found++;
		if (release)
			sm_pages_free(a, p);
	}
	return found;
}

/* An empty shared array back to its inline storage, its block to the page allocator
 * (shrink and shutdown; the next grant sizes it again). */
static void depot_release(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint32_t old = cn->n_depot;

	if (old == SLAB_NIL || cn->n_shared_avail)
		return;
	cn->n_shared_limit = c->c_shared;
	cn->n_depot_order = 0;
	SM_STORE(&cn->n_depot, SLAB_NIL);
	sm_pages_free(a, old);
}

static unsigned for_each_node_discard(struct sm_arena *a, uint32_t id, int shrink)
{
	struct slab_cache_desc *c = live_cache(a, id);
	unsigned released = 0;

	if (!c)
		return 0;

	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_node_lock(a, c, n))
			continue;
		if (shrink) {
			sm_do_drain_shared(a, c, n);
			depot_release(a, c, n);
		}
		released += sm_do_discard(a, c, n, shrink);
		sm_node_unlock(c, n);
	}
	return released;
}

unsigned sm_cache_trim(struct sm_arena *a, uint32_t id, unsigned max_slabs)
{
	struct slab_cache_desc *c = live_cache(a, id);
	unsigned released = 0;

	if (!c)
		return 0;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_cache_node *cn = &c->c_nodes[n];
		unsigned done = 0;

		if ((SM_LOAD(&cn->n_free.l_count) <= c->c_min_partial &&
		     SM_LOAD(&cn->n_free_limit) <= free_limit(c) &&
		     SM_LOAD(&cn->n_depot) == SLAB_NIL) || sm_node_lock(a, c, n))
			continue;
		/* An idle second: halve what the last grants added to the limit. */
		{
			uint64_t floor = free_limit(c);
			uint64_t above = cn->n_free_limit > floor ? cn->n_free_limit - floor : 0;

			cn->n_free_limit = keep_limit(a, c, n, floor + above / 2);
			depot_fit(a, c, n);
		}
		while (done < max_slabs && cn->n_free.l_count > c->c_min_partial &&
		       cn->n_free_objects >= cn->n_free_limit + c->c_num) {
			uint32_t h = cn->n_free.l_head;

			sm_list_del(a->pages, &cn->n_free, h);
			a->pages[h].pg_state = PG_SLAB_DISCARD;
			sm_list_add_tail(a->pages, &cn->n_discard, h);
			cn->n_free_objects -= c->c_num;
			done++;
		}
		if (done)
			released += sm_do_discard(a, c, n, 0);
		sm_node_unlock(c, n);
	}
	return released;
}

unsigned sm_cache_reap(struct sm_arena *a, uint32_t id)
{
	return for_each_node_discard(a, id, 0);
}

unsigned sm_cache_shrink(struct sm_arena *a, uint32_t id)
{
	return for_each_node_discard(a, id, 1);
}

int sm_cache_tune(struct sm_arena *a, uint32_t id, unsigned limit, unsigned batchcount,
		  unsigned shared, unsigned min_partial)
{
	struct slab_cache_desc *c = live_cache(a, id);
	unsigned l, b, s;

	if (!c)
		return -EINVAL;
	l = limit ? limit : c->c_limit;
	b = batchcount ? batchcount : (limit ? (l + 1) / 2 : c->c_batchcount);
	s = shared ? shared : c->c_shared;

	if (b > l && !batchcount)
		b = l;
	if (!tunables_ok(l, b, s) || min_partial > 1024)
		return -EINVAL;
	SM_STORE(&c->c_limit, l);
	SM_STORE(&c->c_batchcount, b);
	SM_STORE(&c->c_shared, s);
	if (min_partial)
		SM_STORE(&c->c_min_partial, min_partial);
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_cache_node *cn = &c->c_nodes[n];
		if (sm_node_lock(a, c, n))
			continue;
		/* free_limit back to SLAB's, and the shared array to its size (the oldest
		 * objects beyond it go back to their slabs). */
		cn->n_free_limit = free_limit(c);
		depot_fit(a, c, n);
		sm_node_unlock(c, n);
	}
	return 0;
}

int sm_cache_shutdown(struct sm_arena *a, uint32_t id, uint64_t *live)
{
	struct slab_cache_desc *c = live_cache(a, id);
	struct sm_cache_counts cnt;

	*live = 0;
	if (!c)
		return -EINVAL;

	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_node_lock(a, c, n))
			return -EIO;
		sm_do_drain_shared(a, c, n);
		sm_node_unlock(c, n);
	}
	sm_cache_counts(a, id, &cnt);
	*live = cnt.active_objs;
	if (cnt.active_objs)
		return -EBUSY;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_node_lock(a, c, n))
			return -EIO;
		depot_release(a, c, n);
		sm_do_discard(a, c, n, 1);
		sm_node_unlock(c, n);
	}
	__atomic_store_n(&c->c_state, CACHE_UNUSED, __ATOMIC_RELEASE);
	memset(c->c_name, 0, sizeof(c->c_name));
	c->c_refcount = 0;
	return 0;
}

void sm_cache_counts(struct sm_arena *a, uint32_t id, struct sm_cache_counts *out)
{
	struct slab_cache_desc *c = live_cache(a, id);

	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_cache_node *cn = &c->c_nodes[n];
		struct sm_node_counts *nc = &out->node[n];
		int locked = sm_node_lock(a, c, n) == 0;

		nc->nr_partial = cn->n_partial.l_count;
		nc->nr_full = cn->n_full.l_count;
		nc->nr_free = cn->n_free.l_count;
		nc->nr_discard = cn->n_discard.l_count;
		nc->free_objects = cn->n_free_objects;
		nc->shared_avail = cn->n_shared_avail;
		nc->shared_limit = cn->n_shared_limit;
		nc->depot_bytes = cn->n_depot == SLAB_NIL ? 0 :
				  (uint64_t)SLAB_PAGE_SIZE << cn->n_depot_order;
		if (locked)
			sm_node_unlock(c, n);
		out->num_slabs += nc->nr_partial + nc->nr_full + nc->nr_free;
		out->active_slabs += nc->nr_partial + nc->nr_full;
		out->shared_avail += nc->shared_avail;
		out->num_objs += (uint64_t)(nc->nr_partial + nc->nr_full + nc->nr_free) * c->c_num;
		out->active_objs += (uint64_t)(nc->nr_partial + nc->nr_full + nc->nr_free) *
				    c->c_num - nc->free_objects;
	}
}
