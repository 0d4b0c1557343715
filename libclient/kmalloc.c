/* kmalloc.c - slab_kmalloc / slab_kfree / slab_ksize over the built-in size classes
 * kmalloc-8 ... kmalloc-8192 (the kernel's, including 96 and 192).  A class's cache is
 * created (or opened) on first use and stays open until the pool disconnects. */
#include <errno.h>
#include <stdio.h>

#include "internal.h"

static const uint32_t class_size[SLAB_KMALLOC_NR] = {
	8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};

static int size_class(size_t size)
{
	int i = 0;

	if (size > 8192)
		return -1;
	while (class_size[i] < size)
		i++;
	return i;
}

static slab_cache *class_cache(slab_pool *p, int i, int *err)
{
	slab_cache *h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE);
	struct slab_cache_config cfg = { .size = class_size[i], .node = SLAB_NODE_LOCAL };
	char name[32];

	if (likely(h))
		return h;
	/* Racing threads may both create: the daemon opens the same cache for both; the
	 * loser closes its extra handle. */
	snprintf(name, sizeof(name), "kmalloc-%u", class_size[i]);
	*err = slab_cache_create(p, name, &cfg, &h);
	if (*err)
		return NULL;
	slab_cache *expected = NULL;
	if (!__atomic_compare_exchange_n(&p->kmalloc[i], &expected, h, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		slab_cache_close(h);
		h = expected;
	}
	return h;
}

void *slab_kmalloc(slab_pool *p, size_t size)
{
	int i = size_class(size ? size : 1), err = 0;
	slab_cache *h;

	if (!p || i < 0) {
		errno = EINVAL;
		return NULL;
	}
	h = class_cache(p, i, &err);
	if (!h) {
		errno = -err;
		return NULL;
	}
	return slab_alloc(h);
}

int slab_kfree(slab_pool *p, void *obj)
{
	uint64_t off;
	uint16_t cid;

	if (!obj)
		return 0;
	if (!p)
		return -EINVAL;
	off = (uint64_t)((uint8_t *)obj - p->arena.base);
	if (off >= p->arena.size)
		return -EINVAL;
	cid = SM_LOAD(&p->arena.pages[off >> SLAB_PAGE_SHIFT].pg_cache);
	for (int i = 0; cid && i < SLAB_KMALLOC_NR; i++) {
		slab_cache *h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE);
		if (h && h->id + 1 == cid)
			return slab_free(h, obj);
	}
	return -EINVAL;
}

size_t slab_ksize(slab_pool *p, const void *obj)
{
	uint64_t off;
	uint32_t head, idx;
	uint16_t cid;
	const struct slab_cache_desc *c;

	if (!p || !obj)
		return 0;
	off = (uint64_t)((const uint8_t *)obj - p->arena.base);
	if (off >= p->arena.size)
		return 0;
	cid = SM_LOAD(&p->arena.pages[off >> SLAB_PAGE_SHIFT].pg_cache);
	if (!cid || cid > p->arena.hdr->ah_nr_caches)
		return 0;
	c = sm_cache(&p->arena, cid - 1u);
	if (sm_obj_lookup(&p->arena, c, off, &head, &idx) != OBJ_OK)
		return 0;
	return c->c_size;
}
