/* kmalloc.c - slab_kmalloc / slab_kfree / slab_ksize over the built-in size classes
 * kmalloc-8 ... kmalloc-8192 (the kernel's, including 96 and 192).  A class's cache is
 * created (or opened) by its first slab_kmalloc in this pool, or by the first slab_kfree
 * of an object of it another process handed over, and stays open until the pool
 * disconnects. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const uint32_t class_size[SLAB_KMALLOC_NR] = {
	8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
};

/* (size - 1) >> 3 -> class index up to 192 bytes, as the kernel's size_index[]; past
 * that, powers of two: the class of 193..8192 bytes is the bit scan of size - 1
 * (255 -> 7, kmalloc-256; 8191 -> 12, kmalloc-8192). */
static const uint8_t small_class[24] = {
	0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6,
};

/* *i: the class of a size of s1 + 1 bytes; false past the largest (the fast path passes
 * size - 1, which wraps for 0 and so goes the slow way). */
static inline bool class_of(size_t s1, unsigned *i)
{
	if (likely(s1 < 192))
		*i = small_class[s1 >> 3];
	else if (likely(s1 < 8192))
		*i = 63u - (unsigned)__builtin_clzll((unsigned long long)s1);
	else
		return false;
	return true;
}

/* The name every process gives class i's cache: kfree finds a class by it. */
static void class_name(char name[32], unsigned i)
{
	snprintf(name, 32, "kmalloc-%u", class_size[i]);
}

/* A class's first allocation in this pool: create (or open) its cache.  NULL with errno
 * set when that fails. */
static sm_noinline sm_cold slab_cache *class_cache_create(slab_pool *p, unsigned i)
{
	struct slab_cache_config cfg = { .size = class_size[i], .node = SLAB_NODE_LOCAL };
	slab_cache *h, *expected = NULL;
	char name[32];
	int err;

	/* Racing threads may both create: the daemon opens the same cache for both; the
	 * loser closes its extra handle. */
	class_name(name, i);
	err = slab_cache_create(p, name, &cfg, &h);
	if (err) {
		errno = -err;
		return NULL;
	}
	if (!__atomic_compare_exchange_n(&p->kmalloc[i], &expected, h, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		slab_cache_close(h);
		return expected;
	}
	__atomic_store_n(&p->kmalloc_by_cid1[h->cid1], h, __ATOMIC_RELEASE);
	return h;
}

/* Everything slab_kmalloc's fast path leaves out: a NULL pool, size 0 (the smallest
 * class, as before), sizes past the largest class, a class not used yet. */
static sm_noinline sm_cold void *kmalloc_slow(slab_pool *p, size_t size, void *caller)
{
	slab_cache *h;
	void *obj;
	unsigned i;

	if (!p || !class_of(size ? size - 1 : 0, &i)) {
		errno = EINVAL;
		return NULL;
	}
	h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE);
	if (!h && !(h = class_cache_create(p, i)))
		return NULL;
	return slab_alloc_fast(h, &obj) ? obj : slab_alloc_slow(h, caller);
}

/* The class, its handle (set once, never cleared while the pool lives), and
 * slab_alloc's fast path inline; size - 1 wraps for 0, which goes the slow way. */
sm_fastpath void *slab_kmalloc(slab_pool *p, size_t size)
{
	slab_cache *h;
	void *obj;
	unsigned i;

	if (unlikely(!class_of(size - 1, &i) || !p ||
		     !(h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE))))
		return kmalloc_slow(p, size, __builtin_return_address(0));
	if (likely(slab_alloc_fast(h, &obj)))
		return obj;
	return slab_alloc_slow(h, __builtin_return_address(0));
}

/* An object whose cache has no kmalloc handle in this pool: not a kmalloc object at all
 * (-EINVAL), or one of a class this process has not allocated from yet, which another
 * process handed over (the arena is shared): open the class and free it.  Everything
 * that can refuse the pointer is checked first, so a refused free opens nothing (no
 * reference on the cache, no handle, no count). */
static sm_noinline sm_cold int kfree_slow(slab_pool *p, uint64_t off, unsigned tag)
{
	unsigned cid1 = SLAB_TAG_CID1(tag), i;
	const struct slab_cache_desc *c;
	uint32_t size, head, idx;
	char name[32];
	slab_cache *h;

	if (!cid1 || cid1 > p->arena.hdr->ah_nr_caches)
		return -EINVAL;
	c = sm_cache(&p->arena, cid1 - 1u);
	size = SM_LOAD(&c->c_object_size); /* once: slabd may rewrite a dying slot */
	if (__atomic_load_n(&c->c_state, __ATOMIC_ACQUIRE) == CACHE_UNUSED || !size ||
	    !class_of(size - 1, &i))
		return -EINVAL;
	class_name(name, i);
	if (class_size[i] != size || strncmp(c->c_name, name, sizeof(c->c_name)) ||
	    sm_obj_lookup(&p->arena, c, off, &head, &idx) != OBJ_OK)
		return -EINVAL;
	h = __atomic_load_n(&p->kmalloc[i], __ATOMIC_ACQUIRE);
	if (!h && !(h = class_cache_create(p, i)))
		return -errno;
	if (h->cid1 != cid1)
		return -EINVAL;
	return slab_free_tagged(h, slab_tls_mag(h), off, tag);
}

/* The page's tag names the object's cache (and node): its kmalloc handle in one load,
 * NULL for any other cache (kfree_slow tells which), a page holding no slab or an id
 * past the table; then slab_free's fast path inline, with the tag already read. */
sm_fastpath int slab_kfree(slab_pool *p, void *obj)
{
	uint64_t off;
	unsigned tag;
	slab_cache *h;

	if (!obj)
		return 0;
	if (unlikely(!p))
		return -EINVAL;
	off = (uint64_t)((uint8_t *)obj - p->arena.base);
	if (unlikely(off >= p->arena.size))
		return -EINVAL;
	tag = SM_LOAD(&p->arena.pages[off >> SLAB_PAGE_SHIFT].pg_tag);
	h = __atomic_load_n(&p->kmalloc_by_cid1[SLAB_TAG_CID1(tag)], __ATOMIC_ACQUIRE);
	if (unlikely(!h))
		return kfree_slow(p, off, tag);
	return slab_free_tagged(h, slab_tls_mag(h), off, tag);
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
