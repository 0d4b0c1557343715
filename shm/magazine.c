/* magazine.c - slow paths of the magazine tier: refill (cache_alloc_refill), flush
 * (cache_flusharray), drain, and giving objects back to shared arrays and slabs.
 * Lock rule: one cache node lock at a time, never held across a call to arena->grow. */
#include "magazine.h"

#include <stddef.h>
#include <string.h>

#include "debug.h"
#include "testpoint.h"

void sm_mag_init(const struct sm_arena *a, struct slab_mag *m, const struct slab_cache_desc *c,
		 unsigned capacity)
{
	/* m_capacity is the stride by which slabd walks a client's area
	 * (sm_client_for_each_mag) while the client rebinds a parked magazine here: zeroed
	 * on the way, it made the walk misread every magazine after this one, and slabd's
	 * counters missed those magazines' counts and appeared to go back (the fold race
	 * test_stats kept behind SLAB_TEST_FOLD_RACE).  So it is written first and never 0. */
	const size_t cap = offsetof(struct slab_mag, m_capacity), after = cap + sizeof(m->m_capacity);
	/* base + self == m, wherever m is (unsigned arithmetic wraps) */
	const uint64_t self = (uint64_t)((uintptr_t)m - (uintptr_t)a->base);

	SM_STORE(&m->m_capacity, (uint32_t)capacity);
	memset(m, 0, cap);
	memset((uint8_t *)m + after, 0, sizeof(*m) - after);
	m->m_limit = c->c_limit < capacity ? c->c_limit : capacity;
	m->m_batchcount = c->c_batchcount < m->m_limit ? c->c_batchcount : m->m_limit;
	m->m_cache = (uint16_t)c->c_id;
	m->m_node = SLAB_NIL16;
	m->m_node_first = 0;
	m->m_node_count = UINT32_MAX; /* no alien frees until sm_mag_set_node */
	m->m_tag = SLAB_TAG_NONE;     /* libslab's fast free: none until sm_mag_set_node */
	m->m_cache_serial = c->c_serial;
	for (unsigned k = 0; k <= SM_TOP; k++)
		m->m_slots[k] = self;
	m->m_state = MAG_LIVE;
}

void sm_mag_set_node(const struct sm_arena *a, struct slab_mag *m, unsigned node)
{
	/* The pages of the thread's node (sm_mag_put's alien test), and the tag its slabs of
	 * this cache carry: libslab's fast free tests "a slab of this cache" and "not alien"
	 * with one compare of the page's pg_tag. */
	if (node >= a->hdr->ah_nr_nodes)
		node = 0;
	m->m_node_first = a->hdr->ah_nodes[node].nr_first_page;
	m->m_node_count = a->hdr->ah_nodes[node].nr_nr_pages;
	m->m_tag = SLAB_TAG(m->m_cache + 1u, node);
}

void sm_alien_init(const struct sm_arena *a, struct slab_mag *alien,
		   const struct slab_cache_desc *c, unsigned node, unsigned capacity)
{
	sm_mag_init(a, alien, c, capacity);
	alien->m_limit = capacity < SLAB_ALIEN_LIMIT ? capacity : SLAB_ALIEN_LIMIT;
	alien->m_batchcount = alien->m_limit;
	alien->m_node = (uint16_t)node;
}

/* A slow path moves delta objects into m (out when negative): not fast frees (layout.h,
 * m_moved).  Before the count that shows them, so a reader that sees it sees this too. */
static void mag_moved(struct slab_mag *m, int64_t delta)
{
	SM_STORE(&m->m_moved, m->m_moved + delta);
}

/* End a slow-path step: the new count and "no step" in one store (layout.h). */
static void step_done(struct slab_mag *m, uint32_t avail)
{
	mag_moved(m, (int64_t)avail - (int64_t)m->m_avail);
	SM_STEP_END(); /* test builds: "inside a step" is cleared before the step ends */
	__atomic_store_n(&m->m_avail_intent, (uint64_t)avail, __ATOMIC_RELEASE);
}

static void step_begin(struct slab_mag *m, uint32_t kind, uint32_t n)
{
	__atomic_store_n(&m->m_intent, kind | n << 8, __ATOMIC_RELEASE);
	SM_STEP_BEGIN(kind); /* test builds: set once the intent is recorded */
}

/* Record, under the node lock, the transfer about to happen (n_xfer_*). */
static void xfer_begin(struct sm_arena *a, struct slab_cache_node *cn, struct slab_mag *m,
		       uint32_t kind, uint32_t base, uint32_t count)
{
	cn->n_xfer_kind = kind;
	cn->n_xfer_base = base;
	cn->n_xfer_count = count;
	__atomic_store_n(&cn->n_xfer_mag, m ? sm_off(a, m) : 0, __ATOMIC_RELEASE);
}

static void xfer_end(struct slab_cache_node *cn)
{
	__atomic_store_n(&cn->n_xfer_mag, 0, __ATOMIC_RELEASE);
}

/* Give entries back to their nodes (shared array when use_shared and room, else their
 * slabs), zeroing each entry of objs under the node lock as it leaves.  When m is the
 * magazine objs belong to, the transfer is recorded for repair.  Refused objects (not
 * out-of-slab objects of c) are dropped and counted.  Returns the number refused. */
/* Under node nd's lock, inside a recorded FLUSH transfer: n objects of that node go to
 * its shared array while there is room (when use_shared), the rest to free_block.
 * Returns the number free_block refused. */
static unsigned put_locked(struct sm_arena *a, struct slab_cache_desc *c, unsigned nd,
			   const uint64_t *objs, unsigned n, int use_shared)
{
	struct slab_cache_node *cn = &c->c_nodes[nd];
	unsigned k = 0;

	if (use_shared && cn->n_shared_avail < cn->n_shared_limit) {
		k = cn->n_shared_limit - cn->n_shared_avail;
		if (k > n)
			k = n;
		memcpy(&sm_shared(a, cn)[cn->n_shared_avail], objs, k * sizeof(uint64_t));
		SM_BARRIER(); /* entries before the count that exposes them */
		cn->n_shared_avail += k;
	}
	SM_TEST_POINT("flush.locked");
	return k < n ? sm_do_free_block(a, c, nd, objs + k, n - k) : 0;
}

/* give_back for a one-node arena when all n entries of o lie in the node's region (or the
 * caller vouches for them: `trusted`, a live magazine's own flush, whose entries the free
 * path validated on the way in, I7):
 * to the shared array while it has room, the rest to free_block, all under one lock
 * round trip, then the entries are zeroed.  Returns the number free_block refused, or -1
 * when some entry is outside the region (zero included) or the lock could not be taken:
 * nothing moved, and the general path sorts them out. */
static int give_back_one_node(struct sm_arena *a, struct slab_cache_desc *c,
			      struct slab_mag *m, uint64_t *o, unsigned base, unsigned n,
			      int use_shared, int trusted, int *contended)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[0];
	struct slab_cache_node *cn = &c->c_nodes[0];
	uint64_t lo = (uint64_t)r->nr_first_page << SLAB_PAGE_SHIFT;
	uint64_t span = (uint64_t)r->nr_nr_pages << SLAB_PAGE_SHIFT;
	uint64_t outside;
	unsigned refused, i = 0;
	/* d = o[i] - lo lies in [0, span) iff neither d nor span - 1 - d has its top bit set
	 * (span < 2^63): OR them all and test one bit.  Two entries per step with GNU C
	 * vectors (SSE2), unsigned so that nothing overflows. */
	typedef uint64_t v2 __attribute__((vector_size(16)));
	v2 acc = { 0, 0 }, vlo = { lo, lo }, vtop = { span - 1, span - 1 };

	for (; !trusted && i + 2 <= n; i += 2) {
		v2 d;

		memcpy(&d, &o[i], sizeof(d));
		d -= vlo;
		acc |= d | (vtop - d);
	}
	outside = acc[0] | acc[1];
	for (; !trusted && i < n; i++)
		outside |= (o[i] - lo) | (span - 1 - (o[i] - lo));
	outside >>= 63;
	if (outside || sm_node_lock_c(a, c, 0, contended))
		return -1;
	xfer_begin(a, cn, m, SLAB_INTENT_FLUSH, base, n);
	if (m)
		SM_STEP_LOCKED(SLAB_INTENT_FLUSH);
	refused = put_locked(a, c, 0, o, n, use_shared);
	SM_BARRIER();
	memset(o, 0, n * sizeof(uint64_t));
	SM_BARRIER();
	xfer_end(cn);
	if (m)
		SM_STEP_UNLOCKED(SLAB_INTENT_FLUSH);
	sm_node_unlock(c, 0);
	return (int)refused;
}

static unsigned give_back(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
			  uint64_t *objs, unsigned n, int use_shared, int trusted, int *contended)
{
	unsigned nodes = a->hdr->ah_nr_nodes, refused = 0;
	int busy = 0;
	uint64_t tmp[SLAB_MAG_MAX];
	uint16_t at[SLAB_MAG_MAX];

	for (unsigned done = 0; done < n;) {
		unsigned chunk = n - done < SLAB_MAG_MAX ? n - done : SLAB_MAG_MAX;
		uint64_t *o = objs + done;

		/* One node, every entry inside its region (the common case: a flush of
		 * objects the fast free validated): one pass to check, no sorting by node. */
		if (nodes == 1) {
			int r = give_back_one_node(a, c, m, o, done, chunk, use_shared, trusted,
						   &busy);

			*contended |= busy;
			if (r >= 0) {
				refused += (unsigned)r;
				done += chunk;
				continue;
			}
		}
		for (unsigned i = 0; i < chunk; i++)
			if (o[i] >= a->size ||
			    sm_page_node(a, (uint32_t)(o[i] >> SLAB_PAGE_SHIFT)) == SLAB_NIL) {
				/* Not in any node: never an object (zero entries included). */
				if (o[i]) {
					SM_ADD(&c->c_stat[STAT_INVALID_FREE], 1);
					refused++;
				}
				o[i] = 0;
			}
		for (unsigned nd = 0; nd < nodes; nd++) {
			struct slab_cache_node *cn = &c->c_nodes[nd];
			unsigned cnt = 0;

			for (unsigned i = 0; i < chunk; i++)
				if (o[i] && (nodes == 1 ||
					     sm_page_node(a, (uint32_t)(o[i] >> SLAB_PAGE_SHIFT)) == nd)) {
					at[cnt] = (uint16_t)i;
					tmp[cnt++] = o[i];
				}
			if (!cnt)
				continue;
			if (sm_node_lock_c(a, c, nd, &busy)) {
				refused += cnt;
				continue;
			}
			*contended |= busy;
			xfer_begin(a, cn, m, SLAB_INTENT_FLUSH, done, chunk);
			if (m)
				SM_STEP_LOCKED(SLAB_INTENT_FLUSH);
			refused += put_locked(a, c, nd, tmp, cnt, use_shared);
			SM_BARRIER();
			for (unsigned i = 0; i < cnt; i++)
				o[at[i]] = 0;
			SM_BARRIER();
			xfer_end(cn);
			if (m)
				SM_STEP_UNLOCKED(SLAB_INTENT_FLUSH);
			sm_node_unlock(c, nd);
		}
		done += chunk;
	}
	return refused;
}

unsigned sm_give_back(struct sm_arena *a, struct slab_cache_desc *c, const uint64_t *objs,
		      unsigned n, int use_shared)
{
	uint64_t copy[SLAB_MAG_MAX];
	unsigned refused = 0;
	int contended = 0;

	for (unsigned done = 0; done < n;) {
		unsigned chunk = n - done < SLAB_MAG_MAX ? n - done : SLAB_MAG_MAX;
		memcpy(copy, objs + done, chunk * sizeof(uint64_t));
		refused += give_back(a, c, NULL, copy, chunk, use_shared, 0, &contended);
		done += chunk;
	}
	return refused;
}

/* Give back the oldest n entries of m (a FLUSH step), then close the gap.  Returns
 * whether a node lock was found held by someone else. */
static int flush_oldest(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
			unsigned n, int use_shared, int trusted)
{
	uint64_t *e = sm_mag_entries(m);
	uint32_t avail = m->m_avail;
	int contended = 0;

	step_begin(m, SLAB_INTENT_FLUSH, n);
	give_back(a, c, m, e, n, use_shared, trusted, &contended);
	SM_TEST_POINT("flush.unlocked");
	memmove(e, e + n, (avail - n) * sizeof(uint64_t));
	SM_BARRIER();
	step_done(m, avail - n);
	return contended;
}

int sm_free_alien(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  struct slab_mag *alien, uint64_t off)
{
	m->m_stat[STAT_ALIEN_FREE]++;
	if (!alien) {
		sm_give_back(a, c, &off, 1, 1);
		return 0;
	}
	/* Home in one batch: one lock round trip on the object's node. */
	if (alien->m_avail >= alien->m_limit)
		flush_oldest(a, c, alien, alien->m_avail, 1, 0);
	mag_moved(alien, 1);
	sm_mag_entries(alien)[alien->m_avail] = off;
	alien->m_avail++;
	return 0;
}

/* The limit and batchcount in use: the cache's tunables (slabd may change them at any
 * time: cache.tune), shifted by the magazine's resizing, within its capacity.  Applied
 * on the slow path. */
static void refresh_limits(const struct slab_cache_desc *c, struct slab_mag *m)
{
	uint64_t lim = SM_LOAD(&c->c_limit), batch = SM_LOAD(&c->c_batchcount);

	lim <<= m->m_shift;
	batch <<= m->m_shift;
	if (lim > m->m_capacity)
		lim = m->m_capacity;
	if (batch > lim)
		batch = lim;
	m->m_limit = (uint32_t)lim;
	m->m_batchcount = batch ? (uint32_t)batch : 1;
}

/* Magazine resizing (Bonwick and Adams, "Magazines and Vmem", 2001: the depot grows the
 * magazine size when its lock is contended).  A refill or flush costs one node lock
 * round trip per batch, cheap while the lock line stays on one CPU and dear when
 * threads on other CPUs take the same lock (a producer refilling what a consumer
 * flushes): then each transfer moves the lock's and the shared array's cache lines
 * between CPUs, and waits.  So the owner thread doubles its magazine (limit and
 * batchcount alike, so each transfer moves twice the objects for the same round trip)
 * when SM_MAG_GROW_AFTER transfers met pressure within a window of SM_MAG_CALM_WINDOW
 * transfers, up to its capacity (libslab binds sm_mag_capacity(limit): 4 times the
 * cache's limit), and halves it again after a whole window met none (the gap between 4
 * and 0 in 1024 keeps a magazine from flapping at a steady rate).
 *
 * Pressure is a transfer that found the lock held, or one in the same direction as the
 * magazine's previous transfer: a refill after a refill (the thread allocates more than
 * a batch without freeing between) or a flush after a flush.  Such a thread gains nothing
 * from a magazine that turns over both ways, and pays the fixed cost of a transfer (the
 * lock, the step records, the prefetches) once per batch: the batch workload (allocate
 * 100,000, free them all) ran at 4.5-5.5 ns per operation with the magazine 4 times the
 * default against 4.9-6.3 with the default (BENCH_SLAB_LIMIT=504, six alternating runs).
 * A thread whose transfers alternate keeps the cache's tunables, and with them what
 * they bound: the objects it may keep away from the other threads.  The flushes that
 * bring a magazine down to a limit just made smaller (a `tune`, a halving) are no run:
 * counted as one, four of them would undo the tune at once. */
#define SM_MAG_GROW_AFTER  4u
#define SM_MAG_CALM_WINDOW 1024u

/* After a transfer of m in direction dir (SLAB_INTENT_REFILL or _FLUSH; 0 for a flush
 * down to a smaller limit, which neither continues nor starts a run). */
static void mag_resize(const struct slab_cache_desc *c, struct slab_mag *m, unsigned dir,
		       int contended)
{
	int pressure = contended || (dir && m->m_last == dir);

	if (dir)
		m->m_last = (uint8_t)dir;
	m->m_calm++;
	if (pressure && ++m->m_cont >= SM_MAG_GROW_AFTER) {
		if (m->m_shift < SM_MAG_MAX_SHIFT && m->m_limit < m->m_capacity)
			m->m_shift++;
		m->m_cont = 0;
		m->m_calm = 0;
	} else if (m->m_calm >= SM_MAG_CALM_WINDOW) {
		if (m->m_cont == 0 && m->m_shift)
			m->m_shift--;
		m->m_cont = 0;
		m->m_calm = 0;
	}
	refresh_limits(c, m);
}

/* The node whose lists a magazine of thread node trades with: the cache's fixed node,
 * else the thread's (node 0 for a node the arena does not have). */
static unsigned home_node(const struct sm_arena *a, const struct slab_cache_desc *c,
			  unsigned node)
{
	return c->c_node >= 0 ? (unsigned)c->c_node : node < a->hdr->ah_nr_nodes ? node : 0;
}

/* A refill's objects are about to be handed out, and most callers write an object as
 * soon as they get it.  Objects that come back through a shared array come in the order
 * they were freed, which after scattered frees is no order at all (each a miss of its
 * own, and a TLB miss more often than not: 100,000 64-byte objects span 1,600 pages), and
 * in a producer and consumer pair each one was last touched on the other CPU: either way
 * every first write would miss on its own, one after the other.  Asking for their lines
 * ahead lets the misses overlap.  For writing: a plain prefetch fetched the consumer's
 * lines shared and every write then paid an upgrade (prodcons 120 -> 48 M objects/s);
 * with PREFETCHW prodcons went 119 -> 133 and batch 5.0 -> 4.2 ns per operation (the test
 * machine before 2026-12).  On an AMD EPYC a PREFETCHW of a line this CPU still holds
 * Owned does nothing; the consumer's flush writes such lines first (touch_for_handover).
 *
 * libslab's fast path prefetches the object SLAB_MAG_AHEAD pops ahead, which covers every
 * object of a refill but the first SLAB_MAG_AHEAD out: those are prefetched here.  (Before
 * the fast path prefetched, a refill took up to 128, and prefetching all of a contended
 * magazine's 504 had cost 700 cycles and prodcons 2 threads 116 against 140 M objects/s.)
 *
 * So are the first SLAB_MAG_AHEAD the next refill will take, the entries now under the
 * shared array's top (unless a flush lands on them first): a whole batch of allocations
 * before the first of them is written, where this refill's own are wanted at once.
 * Measured on the batch workload (allocate 100,000, free them shuffled), alternating
 * builds against one slabd, the allocation phase alone, before the fast path prefetched:
 * 5.5-9.7 ns per allocation without, 4.6-7.2 with (six runs each; mimalloc 4.5-5.4 in the
 * same runs).  Only when this magazine took from the node last as well (n_taker): where
 * several magazines take turns, the next entries are as likely another's, and a PREFETCHW
 * would pull their lines to this CPU only for the other to pull them back.  Those
 * offsets are copied under the lock (next_refill) and all prefetches issued after it
 * (prefetches stall once the CPU's miss buffers are full, and the lock's waiters would
 * wait for that too); the copy is a hint, whatever happens to the entries meanwhile, and
 * a prefetch never faults. */

/* Copy the offsets of the first n (at most SLAB_MAG_AHEAD) entries the next refill from
 * cn takes into next[]; n_lock held.  Returns how many. */
static unsigned next_refill(const struct sm_arena *a, struct slab_cache_node *cn,
			    unsigned n, uint64_t *next)
{
	const uint64_t *sh = sm_shared(a, cn);
	uint32_t top = cn->n_shared_avail;

	if (n > SLAB_MAG_AHEAD)
		n = SLAB_MAG_AHEAD;
	if (n > top)
		n = top;
	memcpy(next, &sh[top - n], n * sizeof(uint64_t));
	return n;
}

/* The first SLAB_MAG_AHEAD out of got objects just taken into dst (the last is out
 * first), then the nnext of next[] (the next refill's first out last). */
static void prefetch_refill(const struct sm_arena *a, const uint64_t *dst, unsigned got,
			    const uint64_t *next, unsigned nnext)
{
	unsigned lo = got > SLAB_MAG_AHEAD ? got - SLAB_MAG_AHEAD : 0;

	while (got > lo)
		sm_prefetch_w(a->base, dst[--got]);
	while (nnext)
		sm_prefetch_w(a->base, next[--nnext]);
}

/* Take up to want objects of node into dst (entries of m from index base): the shared
 * array first (newest entries), then the slabs.  Each object is written to dst before it
 * leaves its source (see sm_node_repair).  Returns how many. */
static unsigned take(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		     unsigned node, uint32_t base, unsigned want, int *contended)
{
	struct slab_cache_node *cn = &c->c_nodes[node];
	uint64_t *dst = &sm_mag_entries(m)[base];
	uint64_t next[SLAB_MAG_AHEAD];
	unsigned got = 0, nnext = 0;
	int busy = 0;

	if (sm_node_lock_c(a, c, node, &busy))
		return 0;
	*contended |= busy;
	xfer_begin(a, cn, m, SLAB_INTENT_REFILL, base, want);
	SM_STEP_LOCKED(SLAB_INTENT_REFILL);
	if (cn->n_shared_avail) {
		got = cn->n_shared_avail < want ? cn->n_shared_avail : want;
		memcpy(dst, &sm_shared(a, cn)[cn->n_shared_avail - got], got * sizeof(uint64_t));
		SM_BARRIER();
		SM_TEST_POINT("refill.locked");
		cn->n_shared_avail -= got;
		if (SM_LOAD(&cn->n_taker) == sm_off(a, m))
			nnext = next_refill(a, cn, got, next);
	}
	if (got < want)
		got += sm_do_alloc_objs(a, c, node, dst + got, want - got);
	SM_STORE(&cn->n_taker, sm_off(a, m));
	/* SLAB_STORE_USER: objects in a magazine name the magazine's process. */
	for (unsigned i = 0; (c->c_flags & SM_STORE_USER) && i < got; i++)
		sm_track(a, c, dst[i])->t_pid = a->pid;
	xfer_end(cn);
	SM_STEP_UNLOCKED(SLAB_INTENT_REFILL);
	sm_node_unlock(c, node);
	prefetch_refill(a, dst, got, next, nnext);
	return got;
}

int sm_mag_refill(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node)
{
	unsigned nodes = a->hdr->ah_nr_nodes, home, want;
	uint32_t avail = m->m_avail;
	int rc;

	refresh_limits(c, m);
	want = m->m_batchcount;
	if (avail + want > m->m_capacity)
		want = m->m_capacity - avail;
	if (!want)
		return (int)avail;
	home = home_node(a, c, node);
	/* REFILL step: the slots it may fill start zeroed (layout.h). */
	memset(&sm_mag_entries(m)[avail], 0, want * sizeof(uint64_t));
	SM_BARRIER();
	step_begin(m, SLAB_INTENT_REFILL, want);

	/* Other processes may take a granted slab before this one gets to it, so keep
	 * asking while grants succeed; the grant itself says when memory or the quota
	 * runs out.  The bound only guards against a livelock. */
	for (int attempt = 0, contended = 0; attempt < 1000; attempt++) {
		unsigned got = take(a, c, m, home, avail, want, &contended);

		/* Local node dry: other nodes' objects before asking for fresh slabs. */
		for (unsigned n = 0; !got && c->c_node < 0 && n < nodes; n++)
			if (n != home)
				got = take(a, c, m, n, avail, want, &contended);
		if (got) {
			SM_TEST_POINT("refill.unlocked");
			SM_BARRIER();
			step_done(m, avail + got);
			m->m_stat[STAT_ALLOC_REFILL]++;
			mag_resize(c, m, SLAB_INTENT_REFILL, contended);
			return (int)(avail + got);
		}
		if (!a->grow)
			break;
		rc = a->grow(a, c->c_id, home, (want + c->c_num - 1) / c->c_num, a->grow_arg);
		if (rc < 0) {
			step_done(m, avail);
			return rc;
		}
	}
	step_done(m, avail);
	return -ENOMEM;
}

/* A flush whose objects another thread will take: make them this CPU's alone first.
 *
 * In a producer/consumer pair the consumer reads each object the producer wrote, and its
 * CPU and the producer's then share the line (Shared here, Owned there).  The consumer
 * frees it, the flush hands it to the shared array, the producer refills and writes it:
 * and that write must first invalidate the consumer's copy.  A PREFETCHW at refill does
 * not help (a hit on a line the producer still holds Owned is no miss to prefetch, on the
 * AMD EPYC measured), so every first write of a refilled object waited for the other CPU
 * in turn: prodcons 2 processes 55-68 M objects/s against DPDK's 125-150, whose FIFO
 * pool of 32K objects hands out lines long gone from both caches (with a pool of 8K,
 * barely more than in flight, DPDK fell to 60-75 too).  Writing each line here, on the
 * consumer's CPU, which has slack (it waits on the producer), invalidates the producer's
 * copy before the objects travel; the producer's refill prefetch then fetches them
 * exclusive, overlapped: 115-124 M objects/s (tests/bench/prodcons, same runs).
 *
 * Only when another magazine took from this node last (n_taker, a hint read without the
 * lock): a thread that refills from its own flushes (batch: free 100,000, allocate them
 * again) would pay a miss per cold line for nothing, 15% of its time in batch.  Each
 * word is written back with the value it holds, so a flush never changes an object's
 * bytes; the entries are this magazine's own, validated on the way in (I7), and nobody
 * else may write a free object.  Before the flush, while the objects are still only in
 * this magazine. */
static void touch_for_handover(const struct sm_arena *a, const struct slab_cache_desc *c,
			       const struct slab_mag *m, unsigned node, unsigned n)
{
	const uint64_t *e = sm_mag_entries(m);

	/* Debug caches are left alone: a write into a freed object that landed between the
	 * touch's read and its write back would be undone before SLAB_POISON sees it. */
	if ((c->c_flags & SM_FLAGS_DEBUG) || SM_LOAD(&c->c_nodes[node].n_taker) == sm_off(a, m))
		return;
	for (unsigned i = 0; i < n; i++) {
		volatile uint64_t *w = (volatile uint64_t *)(a->base + e[i]);

		*w = *w;
	}
	SM_BARRIER();
}

/* sm_mag_flush, dir as mag_resize's. */
static void flush_batch(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
			unsigned node, unsigned dir)
{
	unsigned n = m->m_batchcount < m->m_avail ? m->m_batchcount : m->m_avail;

	if (!n)
		return;
	touch_for_handover(a, c, m, home_node(a, c, node), n);
	/* the owner's own flush: entries validated (I7) */
	mag_resize(c, m, dir, flush_oldest(a, c, m, n, 1, 1));
	m->m_stat[STAT_FREE_FLUSH]++;
}

void sm_mag_flush(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node)
{
	flush_batch(a, c, m, node, SLAB_INTENT_FLUSH);
}

void sm_mag_fold(struct slab_cache_desc *c, struct slab_mag *m)
{
	uint64_t fast_frees = sm_mag_free_fastpath(m);

	/* Every store between begin and end is a release: none becomes visible before
	 * begin's increment, so a reader that sees one of them (with an acquire load,
	 * daemon/stats.c read_counters) sees begin moved too, on any memory model. */
	__atomic_fetch_add(&c->c_fold_begin, 1, __ATOMIC_SEQ_CST);
	SM_TEST_POINT("fold.begun");
	if (fast_frees)
		__atomic_fetch_add(&c->c_stat[STAT_FREE_FASTPATH], fast_frees, __ATOMIC_RELEASE);
	/* derived count 0 at once: a fold cut short by a dying client (slabd folds the
	 * magazine again) must not add the same frees twice */
	__atomic_store_n(&m->m_moved,
			 (int64_t)m->m_avail + (int64_t)m->m_stat[STAT_ALLOC_FASTPATH],
			 __ATOMIC_RELEASE);
	for (unsigned s = 0; s < SLAB_STAT_NR; s++) {
		if (m->m_stat[s])
			__atomic_fetch_add(&c->c_stat[s], m->m_stat[s], __ATOMIC_RELEASE);
		__atomic_store_n(&m->m_stat[s], 0, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&m->m_moved, (int64_t)m->m_avail, __ATOMIC_RELEASE);
	__atomic_fetch_add(&c->c_fold_end, 1, __ATOMIC_SEQ_CST);
}

void sm_mag_drain(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  int use_shared)
{
	if (m->m_avail)
		flush_oldest(a, c, m, m->m_avail, use_shared, 0);
	sm_mag_fold(c, m);
}

int sm_alloc_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		  unsigned node, uint64_t *off)
{
	int rc;

	m->m_stat[STAT_ALLOC_SLOWPATH]++;
	rc = sm_mag_refill(a, c, m, node);
	if (rc < 0)
		return rc;
	/* A pop: the count first and m_moved after it, as the fast pop counts after the
	 * count, so that slabd's still reads of a live magazine (daemon/stats.c,
	 * mag_version) see any pop that began after they started.  A stats reader may see
	 * the new count with the old m_moved for a moment: one fast free too few, which
	 * its clamp holds (stats.c, read_counters). */
	*off = sm_mag_entries(m)[--m->m_avail];
	SM_PUBLISH(&m->m_moved, m->m_moved - 1); /* mag_moved(m, -1), after the count */
	return 0;
}

int sm_free_slow(struct sm_arena *a, struct slab_cache_desc *c, struct slab_mag *m,
		 unsigned node, uint64_t off)
{
	m->m_stat[STAT_FREE_SLOWPATH]++;
	refresh_limits(c, m);
	/* More than one flush only when the magazine was just made smaller: those bring it
	 * down to its new limit and count as no run (mag_resize). */
	while (m->m_avail >= m->m_limit && m->m_avail)
		flush_batch(a, c, m, node, m->m_avail > m->m_limit ? 0 : SLAB_INTENT_FLUSH);
	if (m->m_avail >= m->m_capacity) /* limit 0 on a zero-capacity magazine */
		return sm_give_back(a, c, &off, 1, 1) ? -EINVAL : 0;
	mag_moved(m, 1);
	sm_mag_entries(m)[m->m_avail] = off;
	SM_PUBLISH(&m->m_avail, m->m_avail + 1);
	return 0;
}

int sm_free_refused(struct slab_cache_desc *c, struct slab_mag *m, int stat)
{
	(void)c;
	m->m_stat[stat]++;
	return -EINVAL;
}
