/* list.h - circular doubly linked lists of page descriptors, by page index.
 *
 * Invariants of a struct slab_list L over descriptor array P:
 *   L.l_head == SLAB_NIL  <=>  L.l_count == 0;
 *   otherwise following pg_next from L.l_head visits L.l_count distinct pages and returns
 *   to L.l_head; P[x].pg_prev is the page whose pg_next is x (so P[head].pg_prev is the tail).
 * A page is on at most one list; off-list pages have pg_next == pg_prev == SLAB_NIL.
 * Callers hold the lock that guards L.
 */
#ifndef SLABD_SHM_LIST_H
#define SLABD_SHM_LIST_H

#include "layout.h"

static inline void sm_list_init(struct slab_list *l)
{
	l->l_head = SLAB_NIL;
	l->l_count = 0;
}

/* Insert x at the tail (before the head). */
static inline void sm_list_add_tail(struct slab_page *p, struct slab_list *l, uint32_t x)
{
	if (l->l_head == SLAB_NIL) {
		p[x].pg_next = p[x].pg_prev = x;
		l->l_head = x;
	} else {
		uint32_t h = l->l_head, t = p[h].pg_prev;
		p[x].pg_next = h;
		p[x].pg_prev = t;
		p[t].pg_next = x;
		p[h].pg_prev = x;
	}
	l->l_count++;
}

/* Insert x at the head. */
static inline void sm_list_add(struct slab_page *p, struct slab_list *l, uint32_t x)
{
	sm_list_add_tail(p, l, x);
	l->l_head = x;
}

static inline void sm_list_del(struct slab_page *p, struct slab_list *l, uint32_t x)
{
	uint32_t n = p[x].pg_next, v = p[x].pg_prev;

	if (n == x) {
		l->l_head = SLAB_NIL;
	} else {
		p[v].pg_next = n;
		p[n].pg_prev = v;
		if (l->l_head == x)
			l->l_head = n;
	}
	p[x].pg_next = p[x].pg_prev = SLAB_NIL;
	l->l_count--;
}

/* Remove and return the head, or SLAB_NIL. */
static inline uint32_t sm_list_pop(struct slab_page *p, struct slab_list *l)
{
	uint32_t x = l->l_head;

	if (x != SLAB_NIL)
		sm_list_del(p, l, x);
	return x;
}

#endif
