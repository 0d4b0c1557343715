/* arena.c - arena creation, formatting, attach and checks (see arena.h, layout.h). */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buddy.h"
#include "lock.h"

#define MIN_ARENA_SIZE (4u << 20)
#define MIN_NODE_PAGES 64u

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static uint64_t page_up(uint64_t x)
{
	return SM_ALIGN_UP(x, (uint64_t)SLAB_PAGE_SIZE);
}

int sm_arena_plan(const struct sm_arena_params *p, struct slab_arena_hdr *h)
{
	uint64_t size = page_up(p->size);
	unsigned nodes = p->nr_nodes ? p->nr_nodes : 1;
	unsigned caches = p->nr_caches, clients = p->nr_clients ? p->nr_clients : 256;

	if (size < MIN_ARENA_SIZE || size >> SLAB_PAGE_SHIFT >= SLAB_NIL ||
	    nodes > SLAB_MAX_NODES || clients > SLAB_MAX_CLIENTS || caches > SLAB_MAX_CACHES)
		return -EINVAL;
	if (!caches) {
		/* One cache slot per 2 MiB of arena, within [32, 256]: the table stays
		 * well under 1% of the arena whatever the node count. */
		uint64_t c = size >> 21;
		caches = c < 32 ? 32 : c > 256 ? 256 : (unsigned)c;
	}
	memset(h, 0, sizeof(*h));
	h->ah_magic = SLAB_ARENA_MAGIC;
	h->ah_version = SLAB_LAYOUT_VERSION;
	h->ah_page_size = SLAB_PAGE_SIZE;
	h->ah_size = size;
	h->ah_nr_nodes = nodes;
	h->ah_nr_caches = caches;
	h->ah_nr_clients = clients;
	h->ah_cache_stride = (uint32_t)SM_ALIGN_UP(sizeof(struct slab_cache_desc) +
						    nodes * sizeof(struct slab_cache_node), 64);
	h->ah_caches_off = SLAB_PAGE_SIZE;
	h->ah_clients_off = page_up(h->ah_caches_off + (uint64_t)caches * h->ah_cache_stride);
	h->ah_pages_off = page_up(h->ah_clients_off + (uint64_t)clients * sizeof(struct slab_client));
	h->ah_nr_pages = (uint32_t)(size >> SLAB_PAGE_SHIFT);
	h->ah_meta_pages = (uint32_t)(page_up(h->ah_pages_off + (uint64_t)h->ah_nr_pages *
					       sizeof(struct slab_page)) >> SLAB_PAGE_SHIFT);
	if (h->ah_meta_pages + (uint64_t)nodes * MIN_NODE_PAGES > h->ah_nr_pages)
		return -EINVAL;

	/* Split the data pages evenly; the last node takes the remainder. */
	uint32_t data = h->ah_nr_pages - h->ah_meta_pages, each = data / nodes;
	uint32_t first = h->ah_meta_pages;
	for (unsigned n = 0; n < nodes; n++) {
		struct slab_node_region *r = &h->ah_nodes[n];
		r->nr_first_page = first;
		r->nr_nr_pages = n + 1 == nodes ? h->ah_nr_pages - first : each;
		r->nr_os_node = -1;
		first += r->nr_nr_pages;
	}
	return 0;
}

static int format(struct sm_arena *a, const struct slab_arena_hdr *plan)
{
	struct slab_arena_hdr *h = a->hdr;
	struct timespec ts;
	int rc;

	/* A fresh memfd reads as zeros; a reused file may not. */
	memset(a->base, 0, (size_t)plan->ah_meta_pages << SLAB_PAGE_SHIFT);
	memcpy(h, plan, sizeof(*h));
	h->ah_magic = 0; /* published last */
	clock_gettime(CLOCK_REALTIME, &ts);
	h->ah_created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	h->ah_generation = 1;
	a->pages = (struct slab_page *)(a->base + h->ah_pages_off);

	for (uint32_t i = 0; i < h->ah_meta_pages; i++) {
		a->pages[i].pg_state = PG_META;
		a->pages[i].pg_next = a->pages[i].pg_prev = SLAB_NIL;
	}
	for (unsigned n = 0; n < h->ah_nr_nodes; n++) {
		rc = sm_mutex_init(&h->ah_nodes[n].nr_lock);
		if (rc)
			return rc;
		sm_buddy_init(a, n);
	}
	for (uint32_t c = 0; c < h->ah_nr_caches; c++) {
		struct slab_cache_desc *cd = sm_cache(a, c);
		cd->c_id = c;
		for (unsigned n = 0; n < h->ah_nr_nodes; n++) {
			rc = sm_mutex_init(&cd->c_nodes[n].n_lock);
			if (rc)
				return rc;
		}
	}
	__atomic_store_n(&h->ah_magic, SLAB_ARENA_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

static int map_and_format(int fd, const struct slab_arena_hdr *plan, struct sm_arena *out,
			  char *err, size_t errlen)
{
	void *base = mmap(NULL, plan->ah_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int rc;

	if (base == MAP_FAILED)
		return fail(err, errlen, -errno, "mmap of %llu bytes: %s",
			    (unsigned long long)plan->ah_size, strerror(errno));
	memset(out, 0, sizeof(*out));
	out->base = base;
	out->size = plan->ah_size;
	out->hdr = base;
	out->fd = fd;
	out->pid = getpid();
	rc = format(out, plan);
	if (rc) {
		munmap(base, plan->ah_size);
		memset(out, 0, sizeof(*out));
		out->fd = -1;
		return fail(err, errlen, rc, "formatting the arena: %s", strerror(-rc));
	}
	return 0;
}

int sm_arena_create(const struct sm_arena_params *p, struct sm_arena *out,
		    char *err, size_t errlen)
{
	struct slab_arena_hdr plan;
	int fd, rc;

	if (sm_arena_plan(p, &plan))
		return fail(err, errlen, -EINVAL,
			    "invalid arena: size %llu bytes, %u nodes (need >= 4 MiB and %u pages per node)",
			    (unsigned long long)p->size, p->nr_nodes, MIN_NODE_PAGES);
	fd = memfd_create("slabd-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fail(err, errlen, -errno, "memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)plan.ah_size) < 0) {
		rc = -errno;
		close(fd);
		return fail(err, errlen, rc, "sizing the arena to %llu bytes: %s",
			    (unsigned long long)plan.ah_size, strerror(-rc));
	}
	rc = map_and_format(fd, &plan, out, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		rc = -errno;
		sm_arena_detach(out);
		return fail(err, errlen, rc, "sealing the arena: %s", strerror(-rc));
	}
	return 0;
}

int sm_arena_create_file(int fd, const struct sm_arena_params *p, struct sm_arena *out,
			 char *err, size_t errlen)
{
	struct slab_arena_hdr plan;
	int dfd, rc;

	if (sm_arena_plan(p, &plan))
		return fail(err, errlen, -EINVAL, "invalid arena size or node count");
	if (ftruncate(fd, (off_t)plan.ah_size) < 0)
		return fail(err, errlen, -errno, "sizing the arena file: %s", strerror(errno));
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return fail(err, errlen, -errno, "dup: %s", strerror(errno));
	rc = map_and_format(dfd, &plan, out, err, errlen);
	if (rc)
		close(dfd);
	return rc;
}

int sm_arena_check(const void *base, uint64_t size, char *err, size_t errlen)
{
	const struct slab_arena_hdr *h = base;
	struct sm_arena_params p;
	struct slab_arena_hdr plan;

	if (size < sizeof(*h))
		return fail(err, errlen, -EPROTO, "arena of %llu bytes is too small",
			    (unsigned long long)size);
	if (__atomic_load_n(&h->ah_magic, __ATOMIC_ACQUIRE) != SLAB_ARENA_MAGIC)
		return fail(err, errlen, -EPROTO, "not a slabd arena (bad magic %#llx)",
			    (unsigned long long)h->ah_magic);
	if (h->ah_version != SLAB_LAYOUT_VERSION)
		return fail(err, errlen, -EPROTO,
			    "arena layout version %u, this build understands %u",
			    h->ah_version, SLAB_LAYOUT_VERSION);
	if (h->ah_page_size != SLAB_PAGE_SIZE)
		return fail(err, errlen, -EPROTO, "arena page size %u, expected %u",
			    h->ah_page_size, SLAB_PAGE_SIZE);
	if (h->ah_size != size)
		return fail(err, errlen, -EPROTO, "arena header says %llu bytes, mapping has %llu",
			    (unsigned long long)h->ah_size, (unsigned long long)size);
	/* The geometry must be exactly what this build would lay out for the same
	 * parameters: nothing else can be trusted to stay inside the mapping. */
	p.size = h->ah_size;
	p.nr_nodes = h->ah_nr_nodes;
	p.nr_caches = h->ah_nr_caches;
	p.nr_clients = h->ah_nr_clients;
	if (h->ah_nr_nodes == 0 || sm_arena_plan(&p, &plan) ||
	    plan.ah_cache_stride != h->ah_cache_stride || plan.ah_caches_off != h->ah_caches_off ||
	    plan.ah_clients_off != h->ah_clients_off || plan.ah_pages_off != h->ah_pages_off ||
	    plan.ah_nr_pages != h->ah_nr_pages || plan.ah_meta_pages != h->ah_meta_pages)
		return fail(err, errlen, -EPROTO, "arena geometry is inconsistent");
	for (unsigned n = 0; n < h->ah_nr_nodes; n++)
		if (plan.ah_nodes[n].nr_first_page != h->ah_nodes[n].nr_first_page ||
		    plan.ah_nodes[n].nr_nr_pages != h->ah_nodes[n].nr_nr_pages)
			return fail(err, errlen, -EPROTO, "node %u region is inconsistent", n);
	return 0;
}

int sm_arena_attach(int fd, struct sm_arena *out, char *err, size_t errlen)
{
	struct stat st;
	void *base;
	int dfd, rc;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (fstat(fd, &st) < 0)
		return fail(err, errlen, -errno, "fstat of the arena fd: %s", strerror(errno));
	if (st.st_size < (off_t)MIN_ARENA_SIZE || st.st_size % SLAB_PAGE_SIZE)
		return fail(err, errlen, -EINVAL, "arena fd has %lld bytes, not an arena",
			    (long long)st.st_size);
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return fail(err, errlen, -errno, "mmap of the arena: %s", strerror(errno));
	rc = sm_arena_check(base, (uint64_t)st.st_size, err, errlen);
	if (rc) {
		munmap(base, (size_t)st.st_size);
		return rc;
	}
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0) {
		rc = -errno;
		munmap(base, (size_t)st.st_size);
		return fail(err, errlen, rc, "dup: %s", strerror(-rc));
	}
	out->base = base;
	out->size = (uint64_t)st.st_size;
	out->hdr = base;
	out->pages = (struct slab_page *)(out->base + out->hdr->ah_pages_off);
	out->fd = dfd;
	out->pid = getpid();
	return 0;
}

void sm_arena_detach(struct sm_arena *a)
{
	if (a->base)
		munmap(a->base, a->size);
	if (a->fd >= 0 && a->base)
		close(a->fd);
	memset(a, 0, sizeof(*a));
	a->fd = -1;
}
