/* stats.c - cache, arena and client statistics as JSON (field names follow
 * /proc/slabinfo and SLUB's /sys/kernel/slab/<cache>/ counters; see PROTOCOL.md).
 *
 * Fast-path counters live in the magazines, written only by their threads; the sums here
 * read them with relaxed loads, so reading stats never slows the fast path.  The sums are
 * exact when the pool is quiet.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "buddy.h"
#include "client.h"
#include "debug.h"
#include "slabd.h"
#include "stocker.h"

static const char *stat_names[SLAB_STAT_NR] = {
	[STAT_ALLOC_FASTPATH] = "alloc_fastpath", [STAT_ALLOC_SLOWPATH] = "alloc_slowpath",
	[STAT_FREE_FASTPATH] = "free_fastpath",   [STAT_FREE_SLOWPATH] = "free_slowpath",
	[STAT_ALLOC_REFILL] = "alloc_refill",     [STAT_FREE_FLUSH] = "free_flush",
	[STAT_ALLOC_SLAB] = "alloc_slab",         [STAT_FREE_SLAB] = "free_slab",
	[STAT_ALIEN_FREE] = "alien_free",         [STAT_INVALID_FREE] = "invalid_free",
	[STAT_DOUBLE_FREE] = "double_free",
};

static const char *flag_name[] = { "SLAB_HWCACHE_ALIGN", "SLAB_POISON", "SLAB_RED_ZONE",
				   "SLAB_STORE_USER", "SLAB_DEBUG", "SLAB_ZERO" };

json_t *stats_cache_info(struct slabd *d, uint32_t id)
{
	struct slab_cache_desc *c = sm_cache(&d->arena, id);
	json_t *flags = json_array();

	for (unsigned b = 0; b < SM_ARRAY_SIZE(flag_name); b++)
		if (c->c_flags & (1u << b))
			json_array_append_new(flags, json_string(flag_name[b]));
	return json_pack("{s:s, s:i, s:I, s:s, s:i, s:i, s:i, s:o, s:i, s:i, s:i, s:i, s:i,"
			 " s:i, s:i, s:i, s:I, s:i}",
			 "name", c->c_name, "id", (int)id, "serial", (json_int_t)c->c_serial,
			 "state", c->c_state == CACHE_DYING ? "dying" : "live",
			 "object_size", (int)c->c_object_size, "size", (int)c->c_size,
			 "align", (int)c->c_align, "flags", flags,
			 "order", (int)c->c_order, "objects_per_slab", (int)c->c_num,
			 "pages_per_slab", 1 << c->c_order, "limit", (int)SM_LOAD(&c->c_limit),
			 "batchcount", (int)SM_LOAD(&c->c_batchcount),
			 "shared", (int)SM_LOAD(&c->c_shared),
			 "min_partial", (int)SM_LOAD(&c->c_min_partial), "node", (int)c->c_node,
			 "max_objects", (json_int_t)c->c_max_objects, "refcount", (int)c->c_refcount);
}

struct mag_sum {
	uint32_t id;
	uint64_t serial;
	uint64_t avail;
	uint64_t stat[SLAB_STAT_NR];
};

/* The magazine's derived fast-free count (layout.h, m_moved) from a snapshot: its count
 * read before and after m_moved and the alloc counter, again (a few times) while a step
 * is in progress or the count moved.  What a busy owner does between the loads can still
 * put it a few objects ahead; read_counters keeps the reported counter from going back.
 * Alien buffers are 0 by construction. */
static uint64_t mag_free_fastpath(const struct slab_mag *m)
{
	uint64_t n = 0;

	if (m->m_node != SLAB_NIL16)
		return 0;
	for (int tries = 0; tries < 8; tries++) {
		uint64_t ai = __atomic_load_n(&m->m_avail_intent, __ATOMIC_ACQUIRE);

		n = sm_mag_free_fastpath(m);
		if (!(ai >> 32) && __atomic_load_n(&m->m_avail_intent, __ATOMIC_ACQUIRE) == ai)
			break;
	}
	return n;
}

static void sum_mag(void *arg, struct slab_mag *m)
{
	struct mag_sum *s = arg;
	uint32_t avail;

	if (m->m_cache != s->id || m->m_cache_serial != s->serial || m->m_state != MAG_LIVE)
		return;
	avail = SM_LOAD(&m->m_avail);
	s->avail += avail <= m->m_capacity ? avail : 0;
	for (unsigned i = 0; i < SLAB_STAT_NR; i++) /* acquire: read_counters' last load */
		s->stat[i] += __atomic_load_n(&m->m_stat[i], __ATOMIC_ACQUIRE);
	s->stat[STAT_FREE_FASTPATH] += mag_free_fastpath(m);
}

static void sum_mags(struct slabd *d, uint32_t id, int slot, struct mag_sum *s)
{
	struct slab_cache_desc *c = sm_cache(&d->arena, id);

	memset(s, 0, sizeof(*s));
	s->id = id;
	s->serial = c->c_serial;
	for (uint32_t i = 0; i < d->arena.hdr->ah_nr_clients; i++)
		if ((slot < 0 || (uint32_t)slot == i) &&
		    SM_LOAD(&sm_client(&d->arena, i)->cl_state) == CLIENT_LIVE)
			sm_client_for_each_mag(&d->arena, i, sum_mag, s);
}

/* Objects in magazines as this snapshot may count them.  The snapshot of a busy pool is
 * not atomic: the lists are read under the node locks, the magazines afterwards with
 * relaxed loads, so an object moving between a magazine and its node (a flush or refill
 * step in progress) can be seen in both places or in neither.  Clamp the magazines' count
 * so the published identities hold in every reply, busy or quiet:
 * cached = shared_avail + magazine_avail <= active_objs and active_objs = in_use + cached.
 * (Exact when the pool is quiet: then nothing is in flight and no clamp applies.) */
static uint64_t snapshot_mags(const struct sm_cache_counts *cnt, const struct mag_sum *ms)
{
	uint64_t room = cnt->active_objs >= cnt->shared_avail ?
				cnt->active_objs - cnt->shared_avail : 0;

	return ms->avail < room ? ms->avail : room;
}

json_t *stats_cache_summary(struct slabd *d, uint32_t id)
{
	struct sm_cache_counts cnt;
	struct mag_sum ms;
	json_t *r = stats_cache_info(d, id);
	uint64_t cached;

	sm_cache_counts(&d->arena, id, &cnt);
	sum_mags(d, id, -1, &ms);
	ms.avail = snapshot_mags(&cnt, &ms);
	cached = cnt.shared_avail + ms.avail;
	json_object_update_new(r, json_pack("{s:I, s:I, s:I, s:I}",
		"active_objs", (json_int_t)cnt.active_objs, "num_objs", (json_int_t)cnt.num_objs,
		"in_use", (json_int_t)(cnt.active_objs >= cached ? cnt.active_objs - cached : 0),
		"cached", (json_int_t)cached));
	return r;
}

/* Folds that never end: a client that died inside sm_mag_fold left c_fold_begin ahead
 * of c_fold_end for good (slabd folds its magazine again, whole), and every read after
 * it came out unclean, each one after 1000 walks of every live magazine.  Live folds only
 * add to the imbalance that dead ones leave, so the baseline is its floor: it drops as
 * soon as a read finds the imbalance lower, and rises to a higher value only when every
 * read for FOLD_STUCK_NS found at least that.  A read is clean when it finds just the
 * baseline and begin does not move.  (A client stopped inside a fold that long counts as
 * dead until it goes on: the imbalance then drops, and the baseline with it.) */
#define FOLD_STUCK_NS 1000000000ull

static uint64_t fold_baseline(struct slabd *d, uint32_t id, const struct slab_cache_desc *c)
{
	struct cache_track *t = &d->track[id];
	uint64_t b = __atomic_load_n(&c->c_fold_begin, __ATOMIC_SEQ_CST);
	uint64_t x = b - __atomic_load_n(&c->c_fold_end, __ATOMIC_SEQ_CST);
	uint64_t now = slabd_now_ns();

	if (x <= t->fold_base) {
		t->fold_base = x;
		t->fold_since_ns = 0;
	} else if (!t->fold_since_ns || x < t->fold_cand) {
		t->fold_cand = x;
		t->fold_since_ns = now;
	} else if (now - t->fold_since_ns >= FOLD_STUCK_NS) {
		slabd_log(d, LOG_WARN, "cache %s: %llu fold(s) of magazine counters never "
			  "finished (clients that died in one); counting from there",
			  c->c_name, (unsigned long long)t->fold_cand);
		t->fold_base = t->fold_cand;
		t->fold_since_ns = 0;
	}
	return t->fold_base;
}

/* The counters of cache id: c_stat plus every live magazine's, read again if a magazine
 * was folded into c_stat meanwhile (sm_mag_fold), so they never appear to go backwards.
 * The retries are bounded (a fold left half-done by a dying client never ends, and
 * clients that close caches all the time can keep folding through every try); a read
 * that never came out clean reports no counter below what it reported last.
 *
 * c_stat is read before the magazines.  A fold adds a magazine's count to c_stat and
 * then zeroes it, so a read that overlaps a fold can only miss that count (the fold fell
 * between the two reads), which the clamp turns into a counter holding still for one
 * reply, and not count it twice, which no clamp could take back: the next clean read
 * would go backwards.  (Read the other way round, the magazines first, a fold could fall
 * in between and be counted twice; in one run of test_stats on a loaded host free_flush
 * went from 253 to 252 in a clean read, which only such a count explains.)  Counting
 * twice now needs both reads of one counter to fall between the fold's two stores.
 * Ordering: every load of a counter here is an acquire (so the last load of c_fold_begin
 * stays after them), and sm_mag_fold's stores are releases (none is seen before its
 * begin increment): the clean test holds on weaker memory models than x86's too. */
static void read_counters(struct slabd *d, uint32_t id, struct mag_sum *ms,
			  uint64_t out[SLAB_STAT_NR])
{
	struct slab_cache_desc *c = sm_cache(&d->arena, id);
	uint64_t *last = d->track[id].counters, base = fold_baseline(d, id, c);
	bool clean = false;

	for (int tries = 0; tries < 1000 && !clean; tries++) {
		uint64_t b1 = __atomic_load_n(&c->c_fold_begin, __ATOMIC_SEQ_CST);
		uint64_t e1 = __atomic_load_n(&c->c_fold_end, __ATOMIC_SEQ_CST);

		for (unsigned i = 0; i < SLAB_STAT_NR; i++) /* acquire: before the magazines */
			out[i] = __atomic_load_n(&c->c_stat[i], __ATOMIC_ACQUIRE);
		sum_mags(d, id, -1, ms);
		for (unsigned i = 0; i < SLAB_STAT_NR; i++)
			out[i] += ms->stat[i];
		clean = b1 - e1 == base &&
			__atomic_load_n(&c->c_fold_begin, __ATOMIC_SEQ_CST) == b1;
	}
	for (unsigned i = 0; i < SLAB_STAT_NR; i++) {
		/* free_fastpath is derived from each magazine's count, which falls as well as
		 * rises: a read may catch it a few ahead (mag_free_fastpath) */
		if ((!clean || i == STAT_FREE_FASTPATH) && out[i] < last[i])
			out[i] = last[i];
		last[i] = out[i];
	}
}

json_t *stats_cache(struct slabd *d, uint32_t id)
{
	struct slab_cache_desc *c = sm_cache(&d->arena, id);
	struct sm_cache_counts cnt;
	struct mag_sum ms;
	json_t *r = stats_cache_info(d, id), *counters = json_object(), *nodes = json_array();
	uint64_t cached, slab_bytes = (uint64_t)SLAB_PAGE_SIZE << c->c_order;

	uint64_t totals[SLAB_STAT_NR];

	sm_cache_counts(&d->arena, id, &cnt);
	read_counters(d, id, &ms, totals);
	ms.avail = snapshot_mags(&cnt, &ms);
	cached = cnt.shared_avail + ms.avail;
	for (unsigned i = 0; i < SLAB_STAT_NR; i++)
		json_object_set_new(counters, stat_names[i], json_integer((json_int_t)totals[i]));
	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++) {
		struct sm_node_counts *nc = &cnt.node[n];
		json_array_append_new(nodes, json_pack(
			"{s:i, s:i, s:i, s:i, s:i, s:I, s:i, s:i, s:I, s:I}", "node", (int)n,
			"partial", (int)nc->nr_partial, "full", (int)nc->nr_full, "free",
			(int)nc->nr_free, "discard", (int)nc->nr_discard, "free_objects",
			(json_int_t)nc->free_objects, "shared_avail", (int)nc->shared_avail,
			"shared_limit", (int)nc->shared_limit,
			"depot_bytes", (json_int_t)nc->depot_bytes,
			"free_limit", (json_int_t)c->c_nodes[n].n_free_limit));
	}
	uint64_t free_objs = 0;

	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++)
		free_objs += cnt.node[n].free_objects;
	json_object_update_new(r, json_pack(
		"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
		"now_ns", (json_int_t)slabd_now_ns(), "free_objs", (json_int_t)free_objs,
		"active_objs", (json_int_t)cnt.active_objs, "num_objs", (json_int_t)cnt.num_objs,
		"active_slabs", (json_int_t)cnt.active_slabs, "num_slabs", (json_int_t)cnt.num_slabs,
		"in_use", (json_int_t)(cnt.active_objs >= cached ? cnt.active_objs - cached : 0),
		"cached", (json_int_t)cached, "shared_avail", (json_int_t)cnt.shared_avail,
		"magazine_avail", (json_int_t)ms.avail,
		"memory_bytes", (json_int_t)(cnt.num_slabs * slab_bytes),
		"counters", counters, "nodes", nodes));
	json_object_set_new(r, "corruptions", json_integer((json_int_t)SM_LOAD(&c->c_corruptions)));
	{
		json_t *log = json_array();
		uint64_t total = SM_LOAD(&c->c_corruptions);

		for (uint64_t i = total > SLAB_CORRUPT_LOG ? total - SLAB_CORRUPT_LOG : 0; i < total; i++) {
			const struct slab_corruption *cr = &c->c_corrupt[i % SLAB_CORRUPT_LOG];
			char found[24];

			/* The bytes found, as hex: patterns like the red zone's do not fit a
			 * signed JSON integer. */
			snprintf(found, sizeof(found), "%#018llx", (unsigned long long)cr->sc_found);
			json_array_append_new(log, json_pack("{s:I, s:s, s:s, s:i, s:I}",
				"offset", (json_int_t)cr->sc_offset, "kind", sm_corruption_name(cr->sc_kind),
				"found", found, "pid", (int)cr->sc_pid,
				"time_ns", (json_int_t)cr->sc_time_ns));
		}
		json_object_set_new(r, "corruption_log", log);
	}
	return r;
}

/* Bytes of node n's region the OS really holds (mincore over this mapping: shared
 * memfd pages count as resident once any process has touched them). */
static uint64_t node_resident(struct slabd *d, unsigned n)
{
	struct slab_node_region *r = sm_region(&d->arena, n);
	size_t pages = r->nr_nr_pages, count = 0;
	unsigned char *vec = malloc(pages);

	if (!vec)
		return 0;
	if (mincore(d->arena.base + ((uint64_t)r->nr_first_page << SLAB_PAGE_SHIFT),
		    pages << SLAB_PAGE_SHIFT, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			count += vec[i] & 1;
	free(vec);
	return (uint64_t)count << SLAB_PAGE_SHIFT;
}

/* Bytes the OS really holds for the arena (tmpfs pages of the memfd). */
static uint64_t resident_bytes(struct slabd *d)
{
	struct stat st;

	return fstat(d->arena.fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

json_t *stats_arena(struct slabd *d)
{
	struct sm_arena *a = &d->arena;
	json_t *nodes = json_array();
	unsigned caches = 0, clients = 0;

	for (uint32_t id = 0; id < a->hdr->ah_nr_caches; id++)
		caches += sm_cache(a, id)->c_state != CACHE_UNUSED;
	for (uint32_t s = 0; s < a->hdr->ah_nr_clients; s++)
		clients += sm_client(a, s)->cl_state == CLIENT_LIVE;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_node_region *r = sm_region(a, n);
		uint32_t slabs[4] = { 0 };
		uint64_t depot = 0;
		int largest;
		uint32_t free_pages, reserve_pages;

		for (uint32_t id = 0; id < a->hdr->ah_nr_caches; id++) {
			struct slab_cache_desc *c = sm_cache(a, id);
			if (c->c_state == CACHE_UNUSED)
				continue;
			slabs[0] += SM_LOAD(&c->c_nodes[n].n_partial.l_count);
			slabs[1] += SM_LOAD(&c->c_nodes[n].n_full.l_count);
			slabs[2] += SM_LOAD(&c->c_nodes[n].n_free.l_count);
			slabs[3] += SM_LOAD(&c->c_nodes[n].n_discard.l_count);
			if (SM_LOAD(&c->c_nodes[n].n_depot) != SLAB_NIL)
				depot += (uint64_t)SLAB_PAGE_SIZE <<
					 SM_LOAD(&c->c_nodes[n].n_depot_order);
		}
		if (sm_region_lock(a, n) == 0) {
			largest = sm_buddy_largest(a, n);
			reserve_pages = r->nr_reserve_pages;
			free_pages = r->nr_free_pages + reserve_pages;
			sm_region_unlock(a, n);
		} else {
			largest = -1;
			free_pages = reserve_pages = 0;
		}
		json_array_append_new(nodes, json_pack(
			"{s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I, s:I, s:{s:i, s:i, s:i, s:i}}",
			"node", (int)n, "os_node", (int)r->nr_os_node,
			"depot_bytes", (json_int_t)depot,
			"resident_bytes", (json_int_t)node_resident(d, n),
			"blocks_allocated", (json_int_t)SM_LOAD(&r->nr_alloc_blocks),
			"blocks_freed", (json_int_t)SM_LOAD(&r->nr_free_blocks),
			"punched_bytes", (json_int_t)(SM_LOAD(&r->nr_punched_pages) << SLAB_PAGE_SHIFT),
			"total_bytes", (json_int_t)((uint64_t)r->nr_nr_pages << SLAB_PAGE_SHIFT),
			"free_bytes", (json_int_t)((uint64_t)free_pages << SLAB_PAGE_SHIFT),
			"reserve_bytes", (json_int_t)((uint64_t)reserve_pages << SLAB_PAGE_SHIFT),
			"reserve_target_bytes", (json_int_t)((uint64_t)d->reserve_target[n] << SLAB_PAGE_SHIFT),
			"used_bytes", (json_int_t)((uint64_t)(r->nr_nr_pages - free_pages) << SLAB_PAGE_SHIFT),
			"largest_free_order", largest,
			"largest_free_bytes", (json_int_t)(largest < 0 ? 0 : (uint64_t)SLAB_PAGE_SIZE << largest),
			"slabs", "partial", (int)slabs[0], "full", (int)slabs[1], "free", (int)slabs[2],
			"discard", (int)slabs[3]));
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I, s:i, s:i, s:i, s:i, s:b, s:I, s:o}",
			 "now_ns", (json_int_t)slabd_now_ns(),
			 "started_ns", (json_int_t)d->started_ns,
			 "size", (json_int_t)a->size, "resident_bytes", (json_int_t)resident_bytes(d),
			 "meta_bytes", (json_int_t)((uint64_t)a->hdr->ah_meta_pages << SLAB_PAGE_SHIFT),
			 "page_size", SLAB_PAGE_SIZE, "layout_version", (int)a->hdr->ah_version,
			 "generation", (json_int_t)a->hdr->ah_generation,
			 "caches", (int)caches, "cache_slots", (int)a->hdr->ah_nr_caches,
			 "clients", (int)clients, "client_slots", (int)a->hdr->ah_nr_clients,
			 "stocker", stocker_running(d),
			 "stocked_bytes", (json_int_t)(stocker_pages_stocked(d) << SLAB_PAGE_SHIFT),
			 "nodes", nodes);
}

json_t *stats_clients(struct slabd *d)
{
	json_t *list = json_array();

	for (struct conn *c = d->conns; c; c = c->next) {
		struct slab_client *cl;
		json_t *caches;

		if (c->role != CONN_CLIENT)
			continue;
		caches = json_array();
		cl = sm_client(&d->arena, c->slot);
		for (uint32_t id = 0; id < d->arena.hdr->ah_nr_caches; id++) {
			struct mag_sum ms;
			if (!c->refs[id])
				continue;
			sum_mags(d, id, (int)c->slot, &ms);
			json_array_append_new(caches, json_pack("{s:s, s:i, s:I}", "name",
				sm_cache(&d->arena, id)->c_name, "refs", (int)c->refs[id],
				"cached", (json_int_t)ms.avail));
		}
		json_array_append_new(list, json_pack(
			"{s:i, s:i, s:I, s:I, s:I, s:i, s:o}", "slot", (int)c->slot, "pid", (int)c->pid,
			"uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
			"since_ns", (json_int_t)cl->cl_since_ns,
			"area_pages", (int)cl->cl_area_pages, "caches", caches));
	}
	{
		json_t *dead = json_array();
		unsigned first = d->nr_dead > SLABD_DEAD_KEPT ? d->nr_dead - SLABD_DEAD_KEPT : 0;

		for (unsigned i = first; i < d->nr_dead; i++) {
			struct dead_client *dc = &d->dead[i % SLABD_DEAD_KEPT];
			json_t *caches = json_array();

			for (unsigned k = 0; k < dc->nr_caches; k++) {
				struct slab_cache_desc *cd = sm_cache(&d->arena, dc->caches[k]);
				json_t *ce;

				if (cd->c_state == CACHE_UNUSED || cd->c_serial != dc->serials[k])
					continue;
				ce = json_pack("{s:s}", "name", cd->c_name);
				/* Owner tracking tells what it left allocated; else nobody can. */
				if (cd->c_flags & SM_STORE_USER)
					json_object_set_new(ce, "objects_left", json_integer((json_int_t)
						sm_cache_reclaim_pid(&d->arena, dc->caches[k], dc->pid,
								     stats_holders, d, 1)));
				json_array_append_new(caches, ce);
			}
			json_array_append_new(dead, json_pack("{s:i, s:I, s:I, s:I, s:I, s:o}",
				"pid", (int)dc->pid, "uid", (json_int_t)dc->uid,
				"since_ns", (json_int_t)dc->since_ns, "died_ns", (json_int_t)dc->died_ns,
				"cached_returned", (json_int_t)dc->returned, "caches", caches));
		}
		return json_pack("{s:o, s:o}", "clients", list, "dead", dead);
	}
}

/* ---- holders -------------------------------------------------------------------------- */

struct holder_walk {
	struct sm_arena *a;
	uint32_t         id;
	void (*add)(void *ctx, uint64_t off, const char *where);
	void            *ctx;
	char             where[64];
};

/* A live magazine is read while its owner uses it, and a copy of its entries counts only
 * if the magazine stood still meanwhile.  A slow-path step (m_intent set) moves entries
 * in or out and zeroes the slots it empties (validate reported those as "offset 0"); the
 * fast paths change no step, and pops and pushes that cancel out leave the count as it
 * was while the slots change under the copy, so that a copy can hold one object twice
 * ("cached twice" in 2 of 10 runs of test_debug test_validate_live).  Every way out of a
 * magazine moves a counter after the count: a fast pop stores the count, then counts
 * itself in m_stat[STAT_ALLOC_FASTPATH] (shm/magazine.h); the pop after a refill stores
 * the count, then m_moved; steps set m_intent, which shares the count's word.  Pushes
 * land above the entries already there.  So a copy is still when the counters, read
 * before the count, and the count, read before the copy, read the same again after it
 * (a seqlock's order): a pop that began after the first reads shows in the last ones.
 * The owner publishes those stores in order with SM_PUBLISH (compiler.h): on x86-64,
 * whose stores stay in program order, a compiler barrier only; elsewhere release stores.
 * A magazine that does not stand still is skipped: its objects go uncounted, which
 * validate does not report. */
struct mag_version {
	uint64_t ai, pops;   /* m_avail_intent, m_stat[STAT_ALLOC_FASTPATH] */
	int64_t  moved;      /* m_moved */
};

/* Before a copy: the counters, then the count. */
static struct mag_version version_before(struct slab_mag *m)
{
	struct mag_version v;

	v.pops = __atomic_load_n(&m->m_stat[STAT_ALLOC_FASTPATH], __ATOMIC_ACQUIRE);
	v.moved = __atomic_load_n(&m->m_moved, __ATOMIC_ACQUIRE);
	v.ai = __atomic_load_n(&m->m_avail_intent, __ATOMIC_ACQUIRE);
	return v;
}

/* After it: the count, then the counters. */
static struct mag_version version_after(struct slab_mag *m)
{
	struct mag_version v;

	v.ai = __atomic_load_n(&m->m_avail_intent, __ATOMIC_ACQUIRE);
	v.pops = __atomic_load_n(&m->m_stat[STAT_ALLOC_FASTPATH], __ATOMIC_ACQUIRE);
	v.moved = __atomic_load_n(&m->m_moved, __ATOMIC_ACQUIRE);
	return v;
}

static bool same_version(struct mag_version x, struct mag_version y)
{
	return x.ai == y.ai && x.pops == y.pops && x.moved == y.moved;
}

/* Copy the entries of m, a magazine of cache id, into copy[] (SLAB_MAG_MAX of them) while
 * it stands still; *v its version then.  Returns how many, or -1: not bound to this
 * incarnation of the cache, a step under way, or it moved. */
static int mag_copy_still(struct sm_arena *a, uint32_t id, struct slab_mag *m,
			  uint64_t *copy, struct mag_version *v)
{
	const struct slab_cache_desc *cd = sm_cache(a, id);
	uint32_t avail;

	*v = version_before(m);
	avail = (uint32_t)v->ai;
	if (m->m_cache != id || m->m_cache_serial != cd->c_serial || avail > m->m_capacity ||
	    avail > SLAB_MAG_MAX || (uint32_t)(v->ai >> 32))
		return -1;
	memcpy(copy, sm_mag_entries(m), avail * sizeof(uint64_t));
	return same_version(version_after(m), *v) ? (int)avail : -1;
}

static void holder_mag(void *arg, struct slab_mag *m)
{
	struct holder_walk *h = arg;
	uint64_t copy[SLAB_MAG_MAX];
	struct mag_version v;
	int n = mag_copy_still(h->a, h->id, m, copy, &v);

	for (int i = 0; i < n; i++)
		h->add(h->ctx, copy[i], h->where);
}

/* stats_holder_count: for each object asked about, the first two magazines seen holding
 * it, read still, and their versions then. */
struct mag_seen {
	struct slab_mag   *m;
	uint32_t           ix;        /* the entry */
	struct mag_version v;
};

struct sighting {
	uint32_t        n;            /* sightings, each in a magazine read still */
	struct mag_seen at[2];        /* the first two */
};

struct holder_count {
	struct sm_arena *a;
	uint32_t         id;
	const uint64_t  *offs;        /* sorted, distinct */
	size_t           n;
	struct sighting *seen;        /* one per offs[] */
};

/* Whether the magazine of a sighting is as it was, and still holds off there. */
static bool still_there(const struct mag_seen *w, uint64_t off)
{
	bool same = same_version(version_before(w->m), w->v) &&
		    __atomic_load_n(&sm_mag_entries(w->m)[w->ix], __ATOMIC_ACQUIRE) == off;

	return same && same_version(version_after(w->m), w->v);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static void count_mag(void *arg, struct slab_mag *m)
{
	struct holder_count *hc = arg;
	uint64_t copy[SLAB_MAG_MAX];
	struct mag_version v;
	int n = mag_copy_still(hc->a, hc->id, m, copy, &v);

	for (int i = 0; i < n; i++) {
		const uint64_t *at = bsearch(&copy[i], hc->offs, hc->n, sizeof(uint64_t), cmp_u64);
		struct sighting *s;

		if (!at)
			continue;
		s = &hc->seen[at - hc->offs];
		if (s->n < 2)
			s->at[s->n] = (struct mag_seen){ .m = m, .ix = (uint32_t)i, .v = v };
		s->n++;
	}
}

/* validate's sm_holder_count_fn.  A sighting counts only in a magazine read still; two
 * count only if, once the walk is over, both magazines are still as they were and hold
 * the object where they did (nothing left either in between: the object was in both
 * when the later one was read).  Returns 0, or -ENOMEM (held[] then all 0). */
int stats_holder_count(void *arg, uint32_t id, const uint64_t *offs, size_t n, uint8_t *held)
{
	struct slabd *d = arg;
	struct holder_count hc = { .a = &d->arena, .id = id, .offs = offs, .n = n,
				   .seen = calloc(n ? n : 1, sizeof(struct sighting)) };

	if (!hc.seen) {
		memset(held, 0, n);
		return -ENOMEM;
	}
	for (uint32_t s = 0; s < d->arena.hdr->ah_nr_clients; s++)
		if (SM_LOAD(&sm_client(&d->arena, s)->cl_state) == CLIENT_LIVE)
			sm_client_for_each_mag(&d->arena, s, count_mag, &hc);
	for (size_t k = 0; k < n; k++) {
		struct sighting *s = &hc.seen[k];

		if (s->n >= 2 && (!still_there(&s->at[0], offs[k]) || !still_there(&s->at[1], offs[k])))
			s->n = 1;
		held[k] = (uint8_t)(s->n >= 2 ? 2 : s->n);
	}
	free(hc.seen);
	return 0;
}

void stats_holders(void *arg, uint32_t id,
		   void (*add)(void *ctx, uint64_t off, const char *where), void *ctx)
{
	struct slabd *d = arg;
	struct holder_walk h = { .a = &d->arena, .id = id, .add = add, .ctx = ctx };

	for (uint32_t s = 0; s < d->arena.hdr->ah_nr_clients; s++) {
		if (SM_LOAD(&sm_client(&d->arena, s)->cl_state) != CLIENT_LIVE)
			continue;
		snprintf(h.where, sizeof(h.where), "a magazine of client pid %d",
			 (int)sm_client(&d->arena, s)->cl_pid);
		sm_client_for_each_mag(&d->arena, s, holder_mag, &h);
	}
}
