/* magazine.c - slow paths of the magazine tier: refill (cache_alloc_refill), flush
 * (cache_flusharray), drain, and giving objects back to shared arrays and slabs.
 * Lock rule: one cache node lock at a time, never held across a call to arena->grow. */
#include "magazine.h"

#include <string.h>

void sm_mag_init(struct slab_mag *m, const struct slab_cache_desc *c, unsigned capacity)
{
	memset(m, 0, sizeof(*m));
	m->m_capacity = capacity;
	m->m_limit = c->c_limit < capacity ? c->c_limit : capacity;
	m->m_batchcount = c->c_batchcount < m->m_limit ? c->c_batchcount : m->m_limit;
	m->m_cache = (uint16_t)c->c_id;
	m->m_node = SLAB_NIL16;
	m->m_node_first = 0;
	m->m_node_count = UINT32_MAX; /* no alien frees until sm_mag_set_node */
	m->m_cache_serial = c->c_serial;
	m->m_state = MAG_LIVE;
}

void sm_mag_set_node(const struct sm_arena *a, struct slab_mag *m, unsigned node)
{
	if (a->hdr->ah_nr_nodes == 1 || node >= a->hdr->ah_nr_nodes) {
		m->m_node_first = 0;
		m->m_node_count = UINT32_MAX;
	} else {
		m->m_node_first = a->hdr->ah_nodes[node].nr_first_page;
		m->m_node_count = a->hdr->ah_nodes[node].nr_nr_pages;
	}
}

void sm_alien_init(struct slab_mag *alien, const struct slab_cache_desc *c, unsigned node,
		   unsigned capacity)
{
	sm_mag_init(alien, c, capacity);
	alien->m_limit = capacity < SLAB_ALIEN_LIMIT ? capacity : SLAB_ALIEN_LIMIT;
	alien->m_batchcount = alien->m_limit;
	alien->m_node = (uint16_t)node;
}

int sm_free_alien(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  struct slab_mag *alien, uint64_t off)
{
	m->m_stat[STAT_ALIEN_FREE]++;
	if (!alien) {
		sm_give_back(a, c, &off, 1, 1);
		return 0;
	}
	if (alien->m_avail >= alien->m_limit) {
		/* Home in one batch: one lock round trip on the object's node. */
		sm_give_back(a, c, sm_mag_entries(alien), alien->m_avail, 1);
		alien->m_avail = 0;
	}
	sm_mag_entries(alien)[alien->m_avail++] = off;
	return 0;
}

/* Pick up tunables changed by slabd (cache.tune) on the slow path. */
static void refresh_limits(const struct slab_cache_desc *c, struct slab_mag *m)
{
	uint32_t lim = SM_LOAD(&c->c_limit), batch = SM_LOAD(&c->c_batchcount);

	if (lim > m->m_capacity)
		lim = m->m_capacity;
	if (batch > lim)
		batch = lim;
	m->m_limit = lim;
	m->m_batchcount = batch ? batch : 1;
}

/* Take up to want objects of node into m: the shared array first (newest entries), then
 * the slabs.  Returns how many. */
static unsigned take(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		     unsigned node, unsigned want)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint64_t *dst = &sm_mag_entries(m)[m->m_avail];
	unsigned got = 0;

	if (sm_node_lock(a, c, node))
		return 0;
	if (cn->n_shared_avail) {
		got = cn->n_shared_avail < want ? cn->n_shared_avail : want;
		cn->n_shared_avail -= got;
		memcpy(dst, &cn->n_shared[cn->n_shared_avail], got * sizeof(uint64_t));
	}
	if (got < want)
		got += sm_do_alloc_objs(a, c, node, dst + got, want - got);
	sm_node_unlock(c, node);
	m->m_avail += got;
	return got;
}

int sm_mag_refill(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node)
{
	unsigned nodes = a->hdr->ah_nr_nodes, home, want;
	int rc;

	refresh_limits(c, m);
	want = m->m_batchcount;
	if (m->m_avail + want > m->m_capacity)
		want = m->m_capacity - m->m_avail;
	if (!want)
		return (int)m->m_avail;
	home = c->c_node >= 0 ? (unsigned)c->c_node : node < nodes ? node : 0;

	/* Other processes may take a granted slab before this one gets to it, so keep
	 * asking while grants succeed; the grant itself says when memory or the quota
	 * runs out.  The bound only guards against a livelock. */
	for (int attempt = 0; attempt < 1000; attempt++) {
		unsigned got = take(a, c, m, home, want);

		/* Local node dry: other nodes' objects before asking for fresh slabs. */
		for (unsigned n = 0; !got && c->c_node < 0 && n < nodes; n++)
			if (n != home)
				got = take(a, c, m, n, want);
		if (got) {
			m->m_stat[STAT_ALLOC_REFILL]++;
			return (int)m->m_avail;
		}
		if (!a->grow)
			return -ENOMEM;
		rc = a->grow(a, c->c_id, home, (want + c->c_num - 1) / c->c_num, a->grow_arg);
		if (rc < 0)
			return rc;
	}
	return -ENOMEM;
}

unsigned sm_give_back(struct sm_arena *a, struct slab_cache_desc *c, const uint64_t *objs,
		      unsigned n, int use_shared)
{
	unsigned nodes = a->hdr->ah_nr_nodes, refused = 0;
	uint64_t tmp[SLAB_MAG_MAX];

	for (unsigned done = 0; done < n;) {
		unsigned chunk = n - done < SLAB_MAG_MAX ? n - done : SLAB_MAG_MAX;
		const uint64_t *o = objs + done;

		for (unsigned nd = 0; nd < nodes; nd++) {
			struct slab_cache_node *cn = &c->c_nodes[nd];
			unsigned cnt = 0, k = 0;

			if (nodes == 1) {
				memcpy(tmp, o, chunk * sizeof(uint64_t));
				cnt = chunk;
			} else {
				for (unsigned i = 0; i < chunk; i++)
					if (o[i] < a->size &&
					    sm_page_node(a, (uint32_t)(o[i] >> SLAB_PAGE_SHIFT)) == nd)
						tmp[cnt++] = o[i];
			}
			if (!cnt)
				continue;
			if (sm_node_lock(a, c, nd)) {
				refused += cnt;
				continue;
			}
			if (use_shared && cn->n_shared_avail < cn->n_shared_limit) {
				k = cn->n_shared_limit - cn->n_shared_avail;
				if (k > cnt)
					k = cnt;
				memcpy(&cn->n_shared[cn->n_shared_avail], tmp, k * sizeof(uint64_t));
				cn->n_shared_avail += k;
			}
			if (k < cnt)
				refused += sm_do_free_block(a, c, nd, tmp + k, cnt - k);
			sm_node_unlock(c, nd);
		}
		/* Offsets outside every node (metadata, beyond the arena) were never placed:
		 * they are not objects; count them as refused too. */
		if (nodes > 1)
			for (unsigned i = 0; i < chunk; i++)
				if (o[i] >= a->size ||
				    sm_page_node(a, (uint32_t)(o[i] >> SLAB_PAGE_SHIFT)) == SLAB_NIL) {
					SM_ADD(&c->c_stat[STAT_INVALID_FREE], 1);
					refused++;
				}
		done += chunk;
	}
	return refused;
}

void sm_mag_flush(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node)
{
	unsigned n = m->m_batchcount < m->m_avail ? m->m_batchcount : m->m_avail;

	(void)node;
	if (!n)
		return;
	uint64_t *e = sm_mag_entries(m);

	sm_give_back(a, c, e, n, 1);
	memmove(e, e + n, (m->m_avail - n) * sizeof(uint64_t));
	m->m_avail -= n;
	m->m_stat[STAT_FREE_FLUSH]++;
}

void sm_mag_drain(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  int use_shared)
{
	if (m->m_avail)
		sm_give_back(a, c, sm_mag_entries(m), m->m_avail, use_shared);
	m->m_avail = 0;
	for (unsigned s = 0; s < SLAB_STAT_NR; s++) {
		if (m->m_stat[s])
			SM_ADD(&c->c_stat[s], m->m_stat[s]);
		m->m_stat[s] = 0;
	}
}

int sm_alloc_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node, uint64_t *off)
{
	int rc;

	m->m_stat[STAT_ALLOC_SLOWPATH]++;
	rc = sm_mag_refill(a, c, m, node);
	if (rc < 0)
		return rc;
	*off = sm_mag_entries(m)[--m->m_avail];
	return 0;
}

int sm_free_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		 unsigned node, uint64_t off)
{
	m->m_stat[STAT_FREE_SLOWPATH]++;
	refresh_limits(c, m);
	if (m->m_avail >= m->m_limit)
		sm_mag_flush(a, c, m, node);
	if (m->m_avail >= m->m_capacity) /* limit 0 on a zero-capacity magazine */
		return sm_give_back(a, c, &off, 1, 1) ? -EINVAL : 0;
	sm_mag_entries(m)[m->m_avail++] = off;
	return 0;
}

int sm_free_refused(struct slab_cache_desc *c, struct slab_mag *m, int stat)
{
	(void)c;
	m->m_stat[stat]++;
	return -EINVAL;
}
