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
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "lock.h"

static int is_alloc_head(uint8_t state)
{
	return state == PG_BLOCK || state == PG_AREA || state == PG_DEPOT ||
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
	r->nr_free_pages = 0;
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

int sm_do_pages_alloc(struct sm_arena *a, unsigned node, unsigned order, uint32_t *head)
{
	struct slab_node_region *r = sm_region(a, node);
	unsigned k = order;
	uint32_t h;

	while (k <= SLAB_MAX_ORDER && r->nr_free[k].l_head == SLAB_NIL)
		k++;
	if (k > SLAB_MAX_ORDER)
		return -ENOMEM;
	h = sm_list_pop(a->pages, &r->nr_free[k]);
	r->nr_free_pages -= 1u << k;
	while (k > order) {
		k--;
		make_free(a, r, h + (1u << k), k);
	}
	a->pages[h].pg_state = PG_BLOCK;
	a->pages[h].pg_order = (uint8_t)order;
	a->pages[h].pg_tag = 0;
	for (uint32_t i = h + 1; i < h + (1u << order); i++) {
		a->pages[i].pg_state = PG_TAIL;
		a->pages[i].pg_next = h;
	}
	r->nr_alloc_blocks++;
	*head = h;
	return 0;
}

void sm_do_pages_free(struct sm_arena *a, unsigned node, uint32_t head)
{
	struct slab_node_region *r = sm_region(a, node);
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
	r->nr_free_blocks++;
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
}

int sm_buddy_largest(const struct sm_arena *a, unsigned node)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[node];

	for (int k = SLAB_MAX_ORDER; k >= 0; k--)
		if (r->nr_free[k].l_count)
			return k;
	return -1;
}

unsigned sm_buddy_check(const struct sm_arena *a, unsigned node, sm_report_fn report,
			void *arg)
{
	const struct slab_node_region *r = &a->hdr->ah_nodes[node];
	const struct slab_page *p = a->pages;
	uint32_t i = r->nr_first_page, end = i + r->nr_nr_pages;
	uint64_t free_pages = 0, listed = 0;
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
	/* B2: lists against page states. */
	for (unsigned k = 0; k <= SLAB_MAX_ORDER; k++) {
		const struct slab_list *l = &r->nr_free[k];
		uint32_t x = l->l_head, seen = 0;

		while (x != SLAB_NIL && seen <= l->l_count) {
			if (x < r->nr_first_page || x >= end || p[x].pg_state != PG_FREE ||
			    p[x].pg_order != k) {
				report(arg, "node %u: free list %u holds page %u that is not a free "
				       "block of that order", node, k, x);
				bad++;
				break;
			}
			seen++;
			x = p[x].pg_next;
			if (x == l->l_head)
				break;
		}
		if (seen != l->l_count) {
			report(arg, "node %u: free list %u counts %u blocks, walked %u", node, k,
			       l->l_count, seen);
			bad++;
		}
		listed += (uint64_t)seen << k;
	}
	if (free_pages != r->nr_free_pages || listed != free_pages) {
		report(arg, "node %u: %u free pages counted, %llu in free blocks, %llu on lists",
		       node, r->nr_free_pages, (unsigned long long)free_pages,
		       (unsigned long long)listed);
		bad++;
	}
	return bad;
}
