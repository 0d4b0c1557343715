/* buddy.c - per-node buddy page allocator (see buddy.h for the invariants).
 *
 * Blocks are aligned to their size in absolute page numbers (not relative to the region):
 * a slab's head is then its page index with the low c_order bits cleared, so the free
 * fast path finds an object's slab start with one AND (magazine.h).
 *
 * Free block tails are PG_TAIL with pg_tag 0 and an unspecified pg_next: only the head
 * of a free block is ever looked at, so splitting and merging touch heads only.  Tails of
 * an allocated block point at their head (virt_to_head_page), set when it is allocated.
 */
#include "buddy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "list.h"
#include "lock.h"

static int is_alloc_head(uint8_t state)
{
	return state == PG_BLOCK || state == PG_AREA || state == PG_DEPOT || state == PG_RESERVE ||
	       (state >= PG_SLAB_PARTIAL && state <= PG_SLAB_DISCARD);
}

static void make_free(struct sm_arena *a, struct slab_node_region *r, uint32_t head,
		      unsigned order)
{
	struct slab_page *pg = &a->pages[head];

	pg->pg_state = PG_FREE;
	pg->pg_order = (uint8_t)order;
	pg->pg_tag = 0;
	pg->pg_inuse = pg->pg_free = 0;
	sm_list_add(a->pages, &r->nr_free[order], head);
	r->nr_free_pages += 1u << order;
}

/* Cut pages [s, e) of node's region into maximal aligned free blocks. */
static void carve(struct sm_arena *a, struct slab_node_region *r, uint32_t s, uint32_t e)
{
	(void)r;
	while (s < e) {
		unsigned k = SLAB_MAX_ORDER;

		while (k && ((s & ((1u << k) - 1)) || s + (1u << k) > e))
			k--;
		for (uint32_t i = s + 1; i < s + (1u << k); i++) {
			a->pages[i].pg_state = PG_TAIL;
			a->pages[i].pg_tag = 0;
			a->pages[i].pg_next = a->pages[i].pg_prev = SLAB_NIL;
		}
		make_free(a, r, s, k);
		s += 1u << k;
	}
}

void sm_buddy_init(struct sm_arena *a, unsigned node)
{
	struct slab_node_region *r = sm_region(a, node);

	for (unsigned k = 0; k <= SLAB_MAX_ORDER; k++)
		sm_list_init(&r->nr_free[k]);
	for (unsigned k = 0; k <= SLAB_RESERVE_ORDER; k++)
		sm_list_init(&r->nr_reserve[k]);
	r->nr_free_pages = 0;
	r->nr_reserve_pages = 0;
	carve(a, r, r->nr_first_page, r->nr_first_page + r->nr_nr_pages);
}

int sm_region_lock(struct sm_arena *a, unsigned node)
{
	struct slab_node_region *r = sm_region(a, node);
	int rc = sm_mutex_lock(&r->nr_lock);

	if (rc == SM_LOCK_OWNERDEAD) {
		sm_buddy_repair(a, node);
		sm_mutex_consistent(&r->nr_lock);
		rc = 0;
	}
	return rc;
}

void sm_region_unlock(struct sm_arena *a, unsigned node)
{
	sm_mutex_unlock(&sm_region(a, node)->nr_lock);
}

/* Make [h, h + 2^order) an allocated block in state st: its head and its tails. */
static void make_alloc(struct sm_arena *a, uint32_t h, unsigned order, uint8_t st)
{
	a->pages[h].pg_state = st;
	a->pages[h].pg_order = (uint8_t)order;
	a->pages[h].pg_tag = 0;
	a->pages[h].pg_inuse = a->pages[h].pg_free = 0;
	for (uint32_t i = h + 1; i < h + (1u << order); i++) {
		a->pages[i].pg_state = PG_TAIL;
		a->pages[i].pg_next = h;
	}
}

static void make_reserve(struct sm_arena *a, struct slab_node_region *r, uint32_t h,
			 unsigned order)
{
	make_alloc(a, h, order, PG_RESERVE);
	sm_list_add_tail(a->pages, &r->nr_reserve[order], h);
	r->nr_reserve_pages += 1u << order;
}

/* The smallest block that fits off lists[order .. max] (counted in *pages), split down to
 * 2^order pages, the upper halves going back with put; the block's own page states are
 * the caller's. */
static int take_split(struct sm_arena *a, struct slab_node_region *r, struct slab_list *lists,
		      unsigned max, uint32_t *pages, unsigned order, uint32_t *head,
		      void (*put)(struct sm_arena *, struct slab_node_region *, uint32_t, unsigned))
{
	unsigned k = order;
	uint32_t h;

	while (k <= max && lists[k].l_head == SLAB_NIL)
		k++;
	if (k > max)
		return -ENOMEM;
	h = sm_list_pop(a->pages, &lists[k]);
	*pages -= 1u << k;
	while (k > order) {
		k--;
		put(a, r, h + (1u << k), k);
	}
	*head = h;
	return 0;
}

static int buddy_take(struct sm_arena *a, struct slab_node_region *r, unsigned order,
		      uint32_t *head)
{
	return take_split(a, r, r->nr_free, SLAB_MAX_ORDER, &r->nr_free_pages, order, head,
			  make_free);
}

/* From the reserve: its pieces stay in it, so that consecutive takes run up the
 * addresses. */
static int reserve_take(struct sm_arena *a, struct slab_node_region *r, unsigned order,
			uint32_t *head)
{
	return take_split(a, r, r->nr_reserve, SLAB_RESERVE_ORDER, &r->nr_reserve_pages, order,
			  head, make_reserve);
}

static void buddy_put(struct sm_arena *a, struct slab_node_region *r, uint32_t head);

/* Reserve blocks of r back to the free lists, merged, largest first, until the reserve
 * holds at most keep pages (0: all of it).  Returns the pages given back.  Lock held. */
static uint32_t reserve_release(struct sm_arena *a, struct slab_node_region *r, uint32_t keep)
{
	uint32_t before = r->nr_reserve_pages, h;

	for (int k = (int)SLAB_RESERVE_ORDER; k >= 0 && r->nr_reserve_pages > keep; k--)
		while (r->nr_reserve_pages > keep &&
		       (h = sm_list_pop(a->pages, &r->nr_reserve[k])) != SLAB_NIL) {
			r->nr_reserve_pages -= 1u << k;
			buddy_put(a, r, h);
		}
	return before - r->nr_reserve_pages;
}

int sm_do_pages_take(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head)
{
	struct slab_node_region *r = sm_region(a, node);
	uint32_t h;
	int resident = 1;

	if (reserve_take(a, r, order, &h)) {
		/* The reserve is free memory: a block larger than its blocks, or one the
		 * pieces around them no longer fit, may need it back and merged. */
		if (buddy_take(a, r, order, &h) &&
		    (!reserve_release(a, r, 0) || buddy_take(a, r, order, &h)))
			return -ENOMEM;
		resident = 0;
	}
	make_alloc(a, h, order, PG_BLOCK);
	r->nr_alloc_blocks++;
	*head = h;
	return resident;
}

int sm_do_pages_alloc(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head)
{
	int rc = sm_do_pages_take(a, node, order, head);

	return rc < 0 ? rc : 0;
}

/* Back to the free lists, merged with its free buddies. */
static void buddy_put(struct sm_arena *a, struct slab_node_region *r, uint32_t head)
{
	struct slab_page *p = a->pages;
	unsigned k = p[head].pg_order;

	for (uint32_t i = head + 1; i < head + (1u << k); i++) {
		p[i].pg_state = PG_TAIL;
		p[i].pg_tag = 0;
		p[i].pg_next = p[i].pg_prev = SLAB_NIL;
	}
	p[head].pg_next = p[head].pg_prev = SLAB_NIL;
	while (k < SLAB_MAX_ORDER) {
		uint32_t b = head ^ (1u << k);

		if (b < r->nr_first_page || b + (1u << k) > r->nr_first_page + r->nr_nr_pages ||
		    p[b].pg_state != PG_FREE || p[b].pg_order != k)
			break;
		sm_list_del(p, &r->nr_free[k], b);
		r->nr_free_pages -= 1u << k;
		if (b < head) {
			p[head].pg_state = PG_TAIL;
			p[head].pg_tag = 0;
			head = b;
		} else {
			p[b].pg_state = PG_TAIL;
		}
		k++;
	}
	make_free(a, r, head, k);
}

void sm_do_pages_free(struct sm_arena *a, unsigned node, uint32_t head)
{
	struct slab_node_region *r = sm_region(a, node);

	buddy_put(a, r, head);
	r->nr_free_blocks++;
}

/* Whether every page of the run is in the arena's page cache already (mincore on a
 * shared file mapping looks at the page cache, not at this process's page table).  A
 * recycled page is: a fallocate would walk it for nothing (0.3 us a page, twice). */
static int all_resident(struct sm_arena *a, off_t off, uint32_t pages)
{
	unsigned char vec[64];

	for (uint32_t done = 0; done < pages;) {
		uint32_t n = pages - done < sizeof(vec) ? pages - done : (uint32_t)sizeof(vec);

		if (mincore(a->base + off + ((off_t)done << SLAB_PAGE_SHIFT),
			    (size_t)n << SLAB_PAGE_SHIFT, vec))
			return 0;
		for (uint32_t i = 0; i < n; i++)
			if (!(vec[i] & 1))
				return 0;
		done += n;
	}
	return 1;
}

/* How (measured on this project's 2-CPU VM, 64 MiB of a fresh memfd in 128 KiB runs, us
 * per 4 KiB page): MADV_POPULATE_WRITE allocates, zeroes and maps page by page, one
 * write fault each, 2.1-2.4.  A first fallocate puts the pages in the page cache without
 * zeroing them, 0.9 (tmpfs zeroes such a page when it is first used); a second fallocate
 * of the same range zeroes them and marks them up to date, 0.4 (that is what tmpfs does
 * for a page an earlier fallocate left); then a read populate maps them 16 a fault
 * (fault-around maps only up-to-date pages), 0.3: 1.7 in all.  fallocate never changes a
 * byte that was written: it only fills holes and zeroes pages nobody has used yet. */
int sm_pages_populate(struct sm_arena *a, uint32_t head, uint32_t pages)
{
	off_t off = (off_t)head << SLAB_PAGE_SHIFT, len = (off_t)pages << SLAB_PAGE_SHIFT;

	if (a->fd >= 0 && (all_resident(a, off, pages) ||
			   (fallocate(a->fd, 0, off, len) == 0 &&
			    fallocate(a->fd, 0, off, len) == 0)))
		return sm_pages_map(a, head, pages);
#ifdef MADV_POPULATE_WRITE
	/* no fd, or one fallocate does not serve */
	return madvise(a->base + off, (size_t)len, MADV_POPULATE_WRITE) ? -errno : 0;
#else
	return -ENOSYS;
#endif
}

int sm_pages_map(struct sm_arena *a, uint32_t head, uint32_t pages)
{
#ifdef MADV_POPULATE_READ
	return madvise(a->base + ((uint64_t)head << SLAB_PAGE_SHIFT),
		       (size_t)pages << SLAB_PAGE_SHIFT, MADV_POPULATE_READ) ? -errno : 0;
#else
	(void)a, (void)head, (void)pages;
	return -ENOSYS;
#endif
}

int sm_reserve_take(struct sm_arena *a, unsigned node, uint32_t *head)
{
	struct slab_node_region *r = sm_region(a, node);
	uint32_t h;
	int rc = sm_region_lock(a, node);

	if (rc)
		return rc;
	if (buddy_take(a, r, SLAB_RESERVE_ORDER, &h)) {
		sm_region_unlock(a, node);
		return 0;
	}
	/* Held off the lists while its pages fault in: only slabd's main thread allocates
	 * and lists blocks, so nothing else looks for it meanwhile (a repair or an adopt
	 * lists a block left here; sm_reserve_put then finds it listed). */
	make_alloc(a, h, SLAB_RESERVE_ORDER, PG_RESERVE);
	sm_region_unlock(a, node);
	*head = h;
	return 1;
}

/* A block sm_reserve_take took and nobody listed: PG_RESERVE, of the reserve's order, on
 * no list (lists are circular, so a listed page never has pg_prev == SLAB_NIL). */
static int taken_unlisted(const struct sm_arena *a, const struct slab_node_region *r,
			  uint32_t head)
{
	const struct slab_page *pg = &a->pages[head];

	return pg->pg_state == PG_RESERVE && pg->pg_order == SLAB_RESERVE_ORDER &&
	       r->nr_reserve[SLAB_RESERVE_ORDER].l_head != head && pg->pg_prev == SLAB_NIL;
}

int sm_reserve_put(struct sm_arena *a, unsigned node, uint32_t head)
{
	struct slab_node_region *r = sm_region(a, node);
	const unsigned order = SLAB_RESERVE_ORDER;
	int rc = sm_region_lock(a, node);

	if (rc)
		return rc;
	/* Only a block still held off the lists: a repair since sm_reserve_take listed it
	 * already (sm_reserve_rebuild), and then it may have been handed out. */
	if (!taken_unlisted(a, r, head)) {
		sm_region_unlock(a, node);
		return 0;
	}
	sm_list_add_tail(a->pages, &r->nr_reserve[order], head);
	r->nr_reserve_pages += 1u << order;
	sm_region_unlock(a, node);
	return 1 << order;
}

int sm_reserve_return(struct sm_arena *a, unsigned node, uint32_t head)
{
	struct slab_node_region *r = sm_region(a, node);
	int rc = sm_region_lock(a, node), done = 0;

	if (rc)
		return rc;
	if (taken_unlisted(a, r, head)) {
		buddy_put(a, r, head);
		done = 1;
	}
	sm_region_unlock(a, node);
	return done;
}

void sm_reserve_fault(struct sm_arena *a, uint32_t head, uint32_t pages)
{
	uint8_t *p = a->base + ((uint64_t)head << SLAB_PAGE_SHIFT);

	if (sm_pages_populate(a, head, pages) == -ENOSYS)
		for (size_t off = 0; off < (size_t)pages << SLAB_PAGE_SHIFT; off += SLAB_PAGE_SIZE)
			(void)*(volatile uint8_t *)(p + off); /* a read faults shmem in too */
}

int sm_reserve_stock(struct sm_arena *a, unsigned node)
{
	uint32_t h;
	int rc = sm_reserve_take(a, node, &h);

	if (rc <= 0)
		return rc;
	sm_reserve_fault(a, h, 1u << SLAB_RESERVE_ORDER);
	rc = sm_reserve_put(a, node, h);
	return rc < 0 ? rc : 1 << SLAB_RESERVE_ORDER;
}

int sm_reserve_drain(struct sm_arena *a, unsigned node)
{
	return sm_reserve_trim(a, node, 0);
}

int sm_reserve_trim(struct sm_arena *a, unsigned node, uint32_t keep)
{
	uint32_t pages;
	int rc = sm_region_lock(a, node);

	if (rc)
		return rc;
	pages = reserve_release(a, sm_region(a, node), keep);
	sm_region_unlock(a, node);
	return (int)pages;
}

void sm_reserve_rebuild(struct sm_arena *a, unsigned node)
{
	struct slab_node_region *r = sm_region(a, node);
	uint32_t end = r->nr_first_page + r->nr_nr_pages;

	for (unsigned k = 0; k <= SLAB_RESERVE_ORDER; k++)
		sm_list_init(&r->nr_reserve[k]);
	r->nr_reserve_pages = 0;
	for (uint32_t i = r->nr_first_page; i < end; i++) {
		struct slab_page *pg = &a->pages[i];
		unsigned k = pg->pg_order;

		if (pg->pg_state != PG_RESERVE || k > SLAB_MAX_ORDER || (i & ((1u << k) - 1)) ||
		    i + (1u << k) > end)
			continue; /* not a block head at all: validate reports it (B1) */
		if (k > SLAB_RESERVE_ORDER) {
			buddy_put(a, r, i); /* not one the reserve makes: free memory anyway */
		} else {
			sm_list_add_tail(a->pages, &r->nr_reserve[k], i);
			r->nr_reserve_pages += 1u << k;
		}
		i += (1u << k) - 1;
	}
}

int sm_pages_alloc(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head)
{
	int rc;

	if (node >= a->hdr->ah_nr_nodes || order > SLAB_MAX_ORDER)
		return -EINVAL;
	rc = sm_region_lock(a, node);
	if (rc)
		return rc;
	rc = sm_do_pages_alloc(a, node, order, head);
	sm_region_unlock(a, node);
	return rc;
}

int sm_pages_free(struct sm_arena *a, uint32_t head)
{
	unsigned node;
	struct slab_node_region *r;
	int rc;

	if (head >= a->hdr->ah_nr_pages)
		return -EINVAL;
	node = sm_page_node(a, head);
	if (node == SLAB_NIL)
		return -EINVAL;
	r = sm_region(a, node);
	rc = sm_region_lock(a, node);
	if (rc)
		return rc;
	struct slab_page *pg = &a->pages[head];
	if (!is_alloc_head(pg->pg_state) || pg->pg_order > SLAB_MAX_ORDER ||
	    (head & ((1u << pg->pg_order) - 1)) ||
	    head + (1u << pg->pg_order) > r->nr_first_page + r->nr_nr_pages) {
		sm_region_unlock(a, node);
		return -EINVAL;
	}
	sm_do_pages_free(a, node, head);
	sm_region_unlock(a, node);
	return 0;
}

void sm_buddy_repair(struct sm_arena *a, unsigned node)
{
	struct slab_node_region *r = sm_region(a, node);
	uint32_t i = r->nr_first_page, end = i + r->nr_nr_pages, run = SLAB_NIL;

	for (unsigned k = 0; k <= SLAB_MAX_ORDER; k++)
		sm_list_init(&r->nr_free[k]);
	r->nr_free_pages = 0;
	while (i < end) {
		struct slab_page *pg = &a->pages[i];

		if (is_alloc_head(pg->pg_state) && pg->pg_order <= SLAB_MAX_ORDER &&
		    !(i & ((1u << pg->pg_order) - 1)) && i + (1u << pg->pg_order) <= end) {
			if (run != SLAB_NIL)
				carve(a, r, run, i);
			run = SLAB_NIL;
			for (uint32_t t = i + 1; t < i + (1u << pg->pg_order); t++) {
				a->pages[t].pg_state = PG_TAIL;
				a->pages[t].pg_next = i;
			}
			i += 1u << pg->pg_order;
			continue;
		}
		if (run == SLAB_NIL)
			run = i;
		i++;
	}
	if (run != SLAB_NIL)
		carve(a, r, run, end);
	sm_reserve_rebuild(a, node);
}

int sm_buddy_largest(const struct sm_arena *a, unsigned node)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[node];

	for (int k = SLAB_MAX_ORDER; k >= 0; k--)
		if (r->nr_free[k].l_count)
			return k;
	return -1;
}

/* Walk list l of node (free or reserve blocks of order k, heads in state st); returns
 * the entries walked, each problem reported and counted in *bad. */
static uint32_t check_list(const struct sm_arena *a, unsigned node, const struct slab_list *l,
			   uint8_t st, unsigned k, const char *what, sm_report_fn report,
			   void *arg, unsigned *bad)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[node];
	const struct slab_page *p = a->pages;
	uint32_t x = l->l_head, seen = 0, end = r->nr_first_page + r->nr_nr_pages;

	while (x != SLAB_NIL && seen <= l->l_count) {
		if (x < r->nr_first_page || x >= end || p[x].pg_state != st || p[x].pg_order != k) {
			report(arg, "node %u: %s list %u holds page %u that is not a %s block of "
			       "that order", node, what, k, x, what);
			(*bad)++;
			break;
		}
		seen++;
		x = p[x].pg_next;
		if (x == l->l_head)
			break;
	}
	if (seen != l->l_count) {
		report(arg, "node %u: %s list %u counts %u blocks, walked %u", node, what, k,
		       l->l_count, seen);
		(*bad)++;
	}
	return seen;
}

unsigned sm_buddy_check(const struct sm_arena *a, unsigned node, sm_report_fn report,
			void *arg)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[node];
	const struct slab_page *p = a->pages;
	uint32_t i = r->nr_first_page, end = i + r->nr_nr_pages;
	uint64_t free_pages = 0, listed = 0, reserve_pages = 0, reserve_listed = 0;
	unsigned bad = 0;

	/* B1: walk the region block by block. */
	while (i < end) {
		const struct slab_page *pg = &p[i];
		uint32_t n;

		if (pg->pg_state != PG_FREE && !is_alloc_head(pg->pg_state)) {
			report(arg, "node %u: page %u is state %u where a block should start",
			       node, i, pg->pg_state);
			bad++;
			i++;
			continue;
		}
		if (pg->pg_order > SLAB_MAX_ORDER || (i & ((1u << pg->pg_order) - 1)) ||
		    i + (1u << pg->pg_order) > end) {
			report(arg, "node %u: block at page %u has bad order %u", node, i,
			       pg->pg_order);
			bad++;
			i++;
			continue;
		}
		n = 1u << pg->pg_order;
		for (uint32_t t = i + 1; t < i + n; t++) {
			if (p[t].pg_state != PG_TAIL ||
			    (pg->pg_state != PG_FREE && p[t].pg_next != i)) {
				report(arg, "node %u: page %u inside the block at %u is not its tail",
				       node, t, i);
				bad++;
				break;
			}
		}
		if (pg->pg_state == PG_RESERVE)
			reserve_pages += n;
		if (pg->pg_state == PG_FREE) {
			uint32_t b = i ^ n;
			free_pages += n;
			if (pg->pg_order < SLAB_MAX_ORDER && b >= r->nr_first_page && b + n <= end &&
			    p[b].pg_state == PG_FREE && p[b].pg_order == pg->pg_order) {
				report(arg, "node %u: free buddies %u and %u of order %u not merged",
				       node, i, b, pg->pg_order);
				bad++;
			}
		}
		i += n;
	}
	/* B2, B4: lists against page states. */
	for (unsigned k = 0; k <= SLAB_MAX_ORDER; k++)
		listed += (uint64_t)check_list(a, node, &r->nr_free[k], PG_FREE, k, "free", report,
					       arg, &bad) << k;
	for (unsigned k = 0; k <= SLAB_RESERVE_ORDER; k++)
		reserve_listed += (uint64_t)check_list(a, node, &r->nr_reserve[k], PG_RESERVE, k,
						       "reserve", report, arg, &bad) << k;
	if (reserve_pages != r->nr_reserve_pages || reserve_listed != reserve_pages) {
		report(arg, "node %u: %u reserve pages counted, %llu in reserve blocks, %llu on "
		       "lists", node, r->nr_reserve_pages, (unsigned long long)reserve_pages,
		       (unsigned long long)reserve_listed);
		bad++;
	}
	if (free_pages != r->nr_free_pages || listed != free_pages) {
		report(arg, "node %u: %u free pages counted, %llu in free blocks, %llu on lists",
		       node, r->nr_free_pages, (unsigned long long)free_pages,
		       (unsigned long long)listed);
		bad++;
	}
	return bad;
}
