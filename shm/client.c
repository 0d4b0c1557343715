/* client.c - client slots and areas (see client.h). */
#include "client.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buddy.h"
#include "debug.h"

int sm_client_attach(struct sm_arena *a, int32_t pid, uint32_t uid, uint32_t gid,
		     uint32_t *slot)
{
	struct timespec ts;

	for (uint32_t i = 0; i < a->hdr->ah_nr_clients; i++) {
		struct slab_client *cl = sm_client(a, i);

		if (cl->cl_state != CLIENT_UNUSED)
			continue;
		clock_gettime(CLOCK_REALTIME, &ts);
		cl->cl_pid = pid;
		cl->cl_uid = uid;
		cl->cl_gid = gid;
		cl->cl_serial++;
		cl->cl_since_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		cl->cl_area = SLAB_NIL;
		cl->cl_area_pages = 0;
		__atomic_store_n(&cl->cl_state, CLIENT_LIVE, __ATOMIC_RELEASE);
		*slot = i;
		return 0;
	}
	return -EUSERS;
}

static struct slab_area_block *block_hdr(struct sm_arena *a, uint32_t block)
{
	return (struct slab_area_block *)sm_slab_addr(a, block);
}

int sm_area_grow(struct sm_arena *a, uint32_t slot, unsigned node, unsigned order,
		 uint32_t *block)
{
	struct slab_client *cl;
	struct slab_area_block *b;
	uint32_t h;
	int rc;

	if (slot >= a->hdr->ah_nr_clients || order > 4)
		return -EINVAL;
	cl = sm_client(a, slot);
	if (cl->cl_state != CLIENT_LIVE)
		return -EINVAL;
	rc = sm_pages_alloc(a, node, order, &h);
	if (rc)
		return rc;
	memset(sm_slab_addr(a, h), 0, (size_t)SLAB_PAGE_SIZE << order);
	a->pages[h].pg_state = PG_AREA;
	b = block_hdr(a, h);
	b->ab_magic = SLAB_AREA_MAGIC;
	b->ab_client = slot;
	b->ab_size = SLAB_PAGE_SIZE << order;
	b->ab_used = sizeof(*b);
	b->ab_next = cl->cl_area;
	__atomic_store_n(&cl->cl_area, h, __ATOMIC_RELEASE);
	cl->cl_area_pages += 1u << order;
	*block = h;
	return 0;
}

struct slab_mag *sm_area_carve(struct sm_arena *a, uint32_t block, unsigned capacity)
{
	struct slab_area_block *b = block_hdr(a, block);
	uint32_t used = b->ab_used;
	size_t bytes = SM_ALIGN_UP(sm_mag_bytes(capacity), 64);
	struct slab_mag *m;

	if (used + bytes > b->ab_size)
		return NULL;
	m = (struct slab_mag *)((uint8_t *)b + used);
	memset(m, 0, bytes);
	m->m_capacity = capacity;
	m->m_state = MAG_IDLE;
	m->m_cache = SLAB_NIL16;
	__atomic_store_n(&b->ab_used, used + (uint32_t)bytes, __ATOMIC_RELEASE);
	return m;
}

void sm_client_for_each_mag(struct sm_arena *a, uint32_t slot, sm_mag_fn fn, void *arg)
{
	struct slab_client *cl = sm_client(a, slot);
	uint32_t blk = __atomic_load_n(&cl->cl_area, __ATOMIC_ACQUIRE);
	unsigned guard = 0;

	while (blk != SLAB_NIL && blk < a->hdr->ah_nr_pages && guard++ < a->hdr->ah_nr_pages) {
		struct slab_area_block *b = block_hdr(a, blk);
		uint32_t used = __atomic_load_n(&b->ab_used, __ATOMIC_ACQUIRE), pos;

		if (a->pages[blk].pg_state != PG_AREA || b->ab_magic != SLAB_AREA_MAGIC ||
		    used > b->ab_size)
			break;
		for (pos = sizeof(*b); pos + sizeof(struct slab_mag) <= used;) {
			struct slab_mag *m = (struct slab_mag *)((uint8_t *)b + pos);
			size_t bytes = SM_ALIGN_UP(sm_mag_bytes(m->m_capacity), 64);

			if (m->m_capacity > SLAB_MAG_MAX || pos + bytes > used)
				break;
			fn(arg, m);
			pos += (uint32_t)bytes;
		}
		blk = b->ab_next;
	}
}

struct reclaim_ctx {
	struct sm_arena *a;
	uint64_t         returned;
};

static int cmp_off(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* Return everything a dead client's magazine (or alien buffer) holds, whatever step it
 * was in (layout.h SLAB_INTENT_*): entries [0, avail), plus the refill slots of an
 * interrupted REFILL; cleared entries are skipped, duplicates left by an interrupted
 * memmove are returned once, and only objects still out of their slabs go back. */
static void reclaim_mag(void *arg, struct slab_mag *m)
{
	struct reclaim_ctx *r = arg;
	struct sm_arena *a = r->a;
	struct slab_cache_desc *c;
	uint64_t ai, tmp[SLAB_MAG_MAX + 1];
	uint32_t avail, intent, end, n = 0, kept = 0;

	if (m->m_cache >= a->hdr->ah_nr_caches || m->m_capacity > SLAB_MAG_MAX)
		return;
	c = sm_cache(a, m->m_cache);
	if (c->c_state == CACHE_UNUSED || c->c_serial != m->m_cache_serial)
		return;
	/* A lock the client died holding is repaired by taking it; that also makes this
	 * magazine agree with the lists (validate.c:repair_xfer). */
	for (unsigned nd = 0; nd < a->hdr->ah_nr_nodes; nd++)
		if (sm_node_lock(a, c, nd) == 0)
			sm_node_unlock(c, nd);
	ai = __atomic_load_n(&m->m_avail_intent, __ATOMIC_ACQUIRE);
	avail = (uint32_t)ai;
	intent = (uint32_t)(ai >> 32);
	end = avail;
	if ((intent & 0xff) == SLAB_INTENT_REFILL)
		end += intent >> 8;
	if (end > m->m_capacity)
		end = m->m_capacity;
	for (uint32_t i = 0; i < end; i++)
		if (sm_mag_entries(m)[i])
			tmp[n++] = sm_mag_entries(m)[i];
	qsort(tmp, n, sizeof(tmp[0]), cmp_off);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t h, ix;
		unsigned e;

		if (i && tmp[i] == tmp[i - 1])
			continue;
		if (sm_obj_lookup(a, c, tmp[i], &h, &ix) != OBJ_OK)
			continue;
		e = sm_bufctl_get(c, sm_slab_addr(a, h), ix);
		if (e == BUFCTL_ACTIVE || e == BUFCTL_CACHED)
			tmp[kept++] = tmp[i];
	}
	r->returned += kept;
	sm_give_back(a, c, tmp, kept, 1);
	m->m_moved -= avail; /* taken out by slabd: no fast free (layout.h) */
	__atomic_store_n(&m->m_avail_intent, 0, __ATOMIC_RELEASE);
	sm_mag_fold(c, m);
	m->m_state = MAG_IDLE;
}

uint64_t sm_client_reclaim(struct sm_arena *a, uint32_t slot)
{
	struct slab_client *cl = sm_client(a, slot);
	struct reclaim_ctx r = { .a = a };
	uint32_t blk;

	__atomic_store_n(&cl->cl_state, CLIENT_DEAD, __ATOMIC_RELEASE);
	sm_client_for_each_mag(a, slot, reclaim_mag, &r);
	blk = cl->cl_area;
	while (blk != SLAB_NIL && blk < a->hdr->ah_nr_pages && a->pages[blk].pg_state == PG_AREA) {
		uint32_t next = block_hdr(a, blk)->ab_next;
		block_hdr(a, blk)->ab_magic = 0;
		sm_pages_free(a, blk);
		blk = next;
	}
	cl->cl_area = SLAB_NIL;
	cl->cl_area_pages = 0;
	cl->cl_pid = 0;
	__atomic_store_n(&cl->cl_state, CLIENT_UNUSED, __ATOMIC_RELEASE);
	return r.returned;
}

/* ---- reclaim of a dead process's allocations (SLAB_STORE_USER) ----------------------- */

struct held {
	const struct sm_arena *a;
	uint64_t              *bits;   /* one bit per 8 bytes of arena */
};

static void held_add(void *ctx, uint64_t off, const char *where)
{
	struct held *h = ctx;

	(void)where;
	if (off < h->a->size)
		h->bits[(off >> 3) / 64] |= 1ull << ((off >> 3) % 64);
}

static int held_has(const struct held *h, uint64_t off)
{
	return (h->bits[(off >> 3) / 64] >> ((off >> 3) % 64)) & 1;
}

#define RECLAIM_SCAN 512u /* pages scanned per node lock hold */

int64_t sm_cache_reclaim_pid(struct sm_arena *a, uint32_t id, int32_t pid,
			     sm_holder_fn holders, void *harg, int dry_run)
{
	struct slab_cache_desc *c;
	struct held h = { .a = a };
	uint64_t batch[SLAB_MAG_MAX];
	int64_t found = 0;

	if (id >= a->hdr->ah_nr_caches)
		return -EINVAL;
	c = sm_cache(a, id);
	if (c->c_state == CACHE_UNUSED || !(c->c_flags & SM_STORE_USER) || pid <= 0)
		return -EINVAL;
	h.bits = calloc((a->size >> 3) / 64 + 1, sizeof(uint64_t));
	if (!h.bits)
		return -ENOMEM;
	if (holders)
		holders(harg, id, held_add, &h);
	/* Each node's slabs are read under its lock: a refill marks objects ACTIVE and then
	 * stamps its pid, both under that lock, so an object read between the two (ACTIVE,
	 * still carrying the pid of whoever freed it last) would be taken from the live
	 * magazine being refilled.  A lock hold covers at most RECLAIM_SCAN pages and
	 * SLAB_MAG_MAX objects found (so other clients' slow paths wait little); the objects
	 * go back after the unlock (give_back takes the lock itself), then the scan resumes. */
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		const struct slab_node_region *r = sm_region(a, n);
		uint32_t p = r->nr_first_page, end = r->nr_first_page + r->nr_nr_pages, i = 0;

		while (p < end) {
			unsigned nb = 0, scanned = 0;

			if (sm_node_lock(a, c, n))
				break;
			for (unsigned k = 0; k < c->c_nodes[n].n_shared_avail; k++)
				held_add(&h, sm_shared(a, &c->c_nodes[n])[k], NULL);
			for (; p < end && nb < SLAB_MAG_MAX && scanned < RECLAIM_SCAN;
			     p++, i = 0, scanned++) {
				struct slab_page *pg = &a->pages[p];

				if (SLAB_TAG_CID1(pg->pg_tag) != id + 1 ||
				    (pg->pg_state != PG_SLAB_PARTIAL && pg->pg_state != PG_SLAB_FULL))
					continue;
				for (; i < c->c_num && nb < SLAB_MAG_MAX; i++) {
					uint64_t off = ((uint64_t)p << SLAB_PAGE_SHIFT) +
						       (uint64_t)i * c->c_size;
					unsigned e = sm_bufctl_get(c, sm_slab_addr(a, p), i);

					if ((e != BUFCTL_ACTIVE && e != BUFCTL_CACHED) ||
					    SM_LOAD(&sm_track(a, c, off)->t_pid) != pid ||
					    held_has(&h, off))
						continue;
					found++;
					if (dry_run)
						continue;
					sm_debug_init_free(a, c, off);
					if (c->c_flags & SM_DEBUG)
						sm_bufctl_set(c, sm_slab_addr(a, p), i, BUFCTL_CACHED);
					batch[nb++] = off;
				}
				if (i < c->c_num)
					break; /* batch full: resume at object i of this slab */
				p += (1u << c->c_order) - 1;
			}
			sm_node_unlock(c, n);
			if (nb)
				sm_give_back(a, c, batch, nb, 1);
		}
	}
	free(h.bits);
	return found;
}
