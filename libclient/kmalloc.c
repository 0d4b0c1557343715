/* kmalloc.c - slab_kmalloc / slab_kfree / slab_ksize over the built-in size classes
 * kmalloc-8 ... kmalloc-8192 (the kernel's, including 96 and 192).  A class's cache is
 * created (or opened) on first use and stays open until the pool disconnects. */
#include <errno.h>
#include <stdio.h>

#include "internal.h"

static const uint32_t class_size[SLAB_KMALLOC_NR] = {
	8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};

/* size -> class index, as the kernel's size_index[]: a table by 8-byte steps up to 192
 * bytes, then powers of two (one bit scan). */
static const uint8_t small_class[24] = {
	0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6,
};

static inline int size_class(size_t size)
{
	if (likely(size <= 192))
		return small_class[(size - 1) >> 3];
	if (unlikely(size > 8192))
		return -1;
	/* 193..256 -> 7, 257..512 -> 8, ..., 4097..8192 -> 12 */
	return 64 - __builtin_clzll((unsigned long long)size - 1) - 8 + 7;
}

static sm_noinline slab_cache *class_cache_slow(slab_pool *p, int i, int *err)
{
	struct slab_cache_config cfg = { .size = class_size[i], .node = SLAB_NODE_LOCAL };
	slab_cache *h, *expected = NULL;
	char name[32];

	/* Racing threads may both create: the daemon opens the same cache for both; the
	 * loser closes its extra handle. */
	snprintf(name, sizeof(name), "kmalloc-%u", class_size[i]);
	*err = slab_cache_create(p, name, &cfg, &h);
	if (*err)
		return NULL;
	if (!__atomic_compare_exchange_n(&p->kmalloc[i], &expected, h, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		slab_cache_close(h);
		return expected;
	}
	__atomic_store_n(&p->kmalloc_by_cid[h->id], h, __ATOMIC_RELEASE);
	return h;
}

static inline slab_cache *class_cache(slab_pool *p, int i, int *err)
{
	slab_cache *h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE);

	return likely(h) ? h : class_cache_slow(p, i, err);
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
	slab_cache *h;

	if (!obj)
		return 0;
	if (!p)
		return -EINVAL;
	off = (uint64_t)((uint8_t *)obj - p->arena.base);
	if (off >= p->arena.size)
		return -EINVAL;
	/* The object's cache id names its kmalloc handle directly. */
	cid = SLAB_TAG_CID1(SM_LOAD(&p->arena.pages[off >> SLAB_PAGE_SHIFT].pg_tag));
	if (!cid || cid > SLAB_MAX_CACHES)
		return -EINVAL;
	h = __atomic_load_n(&p->kmalloc_by_cid[cid - 1], __ATOMIC_ACQUIRE);
	return h ? slab_free(h, obj) : -EINVAL;
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
	cid = SLAB_TAG_CID1(SM_LOAD(&p->arena.pages[off >> SLAB_PAGE_SHIFT].pg_tag));
	if (!cid || cid > p->arena.hdr->ah_nr_caches)
		return 0;
	c = sm_cache(&p->arena, cid - 1u);
	if (sm_obj_lookup(&p->arena, c, off, &head, &idx) != OBJ_OK)
		return 0;
	return c->c_size;
}
