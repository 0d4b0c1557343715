/* arena.h - create, format, attach and address the shared arena.
 *
 * A struct sm_arena is one process's view of the arena: where it is mapped and the
 * hooks this process uses for work only slabd may do (granting slabs).  It is process
 * memory, never stored in the arena.
 *
 * Invariants of a view returned by sm_arena_create / sm_arena_attach:
 *   base[0 .. size) is mapped MAP_SHARED; hdr == base; sm_arena_check(base, size) == 0;
 *   pages == base + hdr->ah_pages_off.
 */
#ifndef SLABD_SHM_ARENA_H
#define SLABD_SHM_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "layout.h"

struct sm_arena;

/* Asks for nr fresh slabs for cache id on node (slabd's job: a direct call to
 * sm_cache_grow in slabd and in daemon-less tests, an RPC in libslab).
 * Returns 0 when the cache node may now have free slabs, or a negative errno. */
typedef int (*sm_grow_fn)(struct sm_arena *a, uint32_t cache_id, unsigned node,
			  unsigned nr, void *arg);

struct sm_arena {
	uint8_t               *base;
	uint64_t               size;
	struct slab_arena_hdr *hdr;
	struct slab_page      *pages;
	int                    fd;        /* the arena's fd, owned by the view; -1: none */
	int32_t                pid;       /* this process, as debug caches record it */
	sm_grow_fn             grow;      /* NULL: refill fails with -ENOMEM when dry */
	void                  *grow_arg;
};

struct sm_arena_params {
	uint64_t size;        /* bytes, rounded up to a page; >= 4 MiB */
	unsigned nr_nodes;    /* 1 .. SLAB_MAX_NODES */
	unsigned nr_caches;   /* 0: chosen from size */
	unsigned nr_clients;  /* 0: 256 */
};

/* Create an anonymous arena: memfd_create, size it, map it, format it, then seal it with
 * F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL.
 * Errors: -EINVAL (bad params), -ENOMEM / -ENOSPC / other errno from the system calls.
 * On failure err holds a one-line reason. */
int sm_arena_create(const struct sm_arena_params *p, struct sm_arena *out,
		    char *err, size_t errlen);

/* Format an arena inside an open file (tmpfs or hugetlbfs) of exactly p->size bytes
 * (the file is sized here).  The file cannot be sealed; its permissions protect it. */
int sm_arena_create_file(int fd, const struct sm_arena_params *p, struct sm_arena *out,
			 char *err, size_t errlen);

/* Map an existing arena from fd (duplicated: the caller keeps its fd) and check it.
 * Errors: -EPROTO (bad magic, version, page size or inconsistent geometry: err says
 * which), -EINVAL (fd is not a file of the arena's size), errno of fstat/mmap. */
int sm_arena_attach(int fd, struct sm_arena *out, char *err, size_t errlen);

/* Check that base[0..size) holds an arena this build understands.  0 or -EPROTO. */
int sm_arena_check(const void *base, uint64_t size, char *err, size_t errlen);

/* Unmap and close. Safe on a zeroed view. */
void sm_arena_detach(struct sm_arena *a);

/* Compute the layout for params without creating anything (for tests and sizing).
 * Fills hdr's geometry fields.  0 or -EINVAL. */
int sm_arena_plan(const struct sm_arena_params *p, struct slab_arena_hdr *hdr);

static inline struct slab_cache_desc *sm_cache(const struct sm_arena *a, uint32_t id)
{
	return (struct slab_cache_desc *)(a->base + a->hdr->ah_caches_off +
					  (uint64_t)id * a->hdr->ah_cache_stride);
}

static inline struct slab_client *sm_client(const struct sm_arena *a, uint32_t id)
{
	return (struct slab_client *)(a->base + a->hdr->ah_clients_off) + id;
}

static inline struct slab_node_region *sm_region(const struct sm_arena *a, unsigned node)
{
	return &a->hdr->ah_nodes[node];
}

/* The node whose region holds page idx, or SLAB_NIL for metadata pages. */
static inline unsigned sm_page_node(const struct sm_arena *a, uint32_t idx)
{
	const struct slab_arena_hdr *h = a->hdr;

	if (likely(h->ah_nr_nodes == 1))
		return idx - h->ah_nodes[0].nr_first_page < h->ah_nodes[0].nr_nr_pages ? 0 : SLAB_NIL;
	for (unsigned n = 0; n < h->ah_nr_nodes; n++)
		if (idx - h->ah_nodes[n].nr_first_page < h->ah_nodes[n].nr_nr_pages)
			return n;
	return SLAB_NIL;
}

static inline void *sm_ptr(const struct sm_arena *a, uint64_t off)
{
	return a->base + off;
}

static inline uint64_t sm_off(const struct sm_arena *a, const void *p)
{
	return (uint64_t)((const uint8_t *)p - a->base);
}

#endif
