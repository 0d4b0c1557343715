/* client.c - client slots and areas (see client.h). */
#include "client.h"

#include <string.h>
#include <time.h>

#include "buddy.h"

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

static void reclaim_mag(void *arg, struct slab_mag *m)
{
	struct reclaim_ctx *r = arg;
	struct slab_cache_desc *c;

	if (m->m_cache >= r->a->hdr->ah_nr_caches)
		return;
	c = sm_cache(r->a, m->m_cache);
	if (c->c_state == CACHE_UNUSED || c->c_serial != m->m_cache_serial)
		return;
	if (m->m_avail > m->m_capacity)
		m->m_avail = m->m_capacity;
	r->returned += m->m_avail;
	sm_mag_drain(r->a, c, m, 1);
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
