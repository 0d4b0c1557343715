/* cache.c - cache handles, slab_alloc / slab_free, their slow paths, thread exit.
 *
 * Fast paths (internal.h's slab_alloc_fast and slab_free_tagged): one initial-exec TLS
 * load for the thread's magazine, then a pop or a validated push: no lock, no atomic
 * read-modify-write, no system call.  Everything else is out of line and cold.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "internal.h"

/* The magazine every unbound TLS entry points at: avail 0 and limit 0 send both fast
 * paths to their slow paths.  Never written (its counters are never incremented: the
 * fast paths only count after a successful pop/push, which cannot happen here). */
struct slab_mag slab_empty_mag = { .m_tag = SLAB_TAG_NONE };

#define EMPTY8(x) x, x, x, x, x, x, x, x
#define EMPTY64(x) EMPTY8(x), EMPTY8(x), EMPTY8(x), EMPTY8(x), EMPTY8(x), EMPTY8(x), \
		   EMPTY8(x), EMPTY8(x)
__thread struct slab_mag *slab_tls_mags[SLAB_TLS_SLOTS]
	__attribute__((tls_model("initial-exec"))) = {
	EMPTY64(&slab_empty_mag), EMPTY64(&slab_empty_mag),
	EMPTY64(&slab_empty_mag), EMPTY64(&slab_empty_mag),
};
_Static_assert(SLAB_TLS_SLOTS == 256, "initialiser above covers 256 slots");

/* One thread's magazine for one handle (L1 in internal.h). */
struct binding {
	struct slab_mag   *mag;
	struct slab_mag   *alien[SLAB_MAX_NODES]; /* alien buffers, bound on first use */
	struct slab_mag  **tls;      /* &slab_tls_mags[slot] of the owning thread */
	struct binding   **tls_bind; /* &tls_bind[slot] of the owning thread */
	slab_cache        *h;
	struct binding    *h_next;   /* h->bindings */
	struct binding   **t_prev;   /* thread list, doubly linked for O(1) unlink */
	struct binding    *t_next;
};

struct slab_thread {
	struct binding *list;
};

static __thread struct slab_thread *tls_thread;
static __thread struct binding *tls_bind[SLAB_TLS_SLOTS];  /* slow paths only */
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static uint8_t slot_used[SLAB_TLS_SLOTS];      /* lib_lock */

/* ---- bindings ----------------------------------------------------------------------- */

/* Give a binding's objects back, park its magazine as idle, forget it.  lib_lock held. */
/* Drain m back to the shared tiers and keep it for reuse.  lib_lock held. */
static void park(slab_pool *p, slab_cache *h, struct slab_mag *m)
{
	sm_mag_drain(&p->arena, h->desc, m, 1);
	m->m_state = MAG_IDLE;
	if (p->nr_idle == p->idle_cap) {
		size_t cap = p->idle_cap ? p->idle_cap * 2 : 16;
		struct slab_mag **n = realloc(p->idle, cap * sizeof(*n));
		if (n) {
			p->idle = n;
			p->idle_cap = cap;
		}
	}
	if (p->nr_idle < p->idle_cap)
		p->idle[p->nr_idle++] = m; /* else it stays idle in the area, unused */
}

static void unbind(struct binding *b)
{
	slab_pool *p = b->h->pool;
	struct binding **pp;

	park(p, b->h, b->mag);
	for (unsigned n = 0; n < SLAB_MAX_NODES; n++)
		if (b->alien[n])
			park(p, b->h, b->alien[n]);
	*b->tls = &slab_empty_mag;
	*b->tls_bind = NULL;
	for (pp = &b->h->bindings; *pp && *pp != b; pp = &(*pp)->h_next)
		;
	if (*pp)
		*pp = b->h_next;
	*b->t_prev = b->t_next;
	if (b->t_next)
		b->t_next->t_prev = b->t_prev;
	free(b);
}

static void thread_exit(void *arg)
{
	struct slab_thread *t = arg;

	pthread_mutex_lock(&slab_lib_lock);
	while (t->list)
		unbind(t->list);
	pthread_mutex_unlock(&slab_lib_lock);
	tls_thread = NULL;
	free(t);
}

static void key_init(void)
{
	pthread_key_create(&thread_key, thread_exit);
}

/* Bind a magazine for the calling thread to h.  Returns it, or NULL with *err. */
static struct slab_mag *bind_mag(slab_cache *h, int *err)
{
	struct slab_mag *m;
	struct binding *b = tls_bind[h->slot];

	if (b)
		return b->mag;
	pthread_once(&key_once, key_init);
	if (!tls_thread) {
		tls_thread = calloc(1, sizeof(*tls_thread));
		if (!tls_thread || pthread_setspecific(thread_key, tls_thread)) {
			free(tls_thread);
			tls_thread = NULL;
			*err = -ENOMEM;
			return NULL;
		}
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&slab_lib_lock);
	m = slab_area_mag(h->pool, sm_mag_capacity(SM_LOAD(&h->desc->c_limit)), err);
	if (!m) {
		pthread_mutex_unlock(&slab_lib_lock);
		free(b);
		return NULL;
	}
	sm_mag_init(&h->pool->arena, m, h->desc, m->m_capacity);
	sm_mag_set_node(&h->pool->arena, m, slab_thread_node(h->pool));
	b->mag = m;
	b->tls = &slab_tls_mags[h->slot];
	b->tls_bind = &tls_bind[h->slot];
	b->h = h;
	b->h_next = h->bindings;
	h->bindings = b;
	b->t_next = tls_thread->list;
	if (b->t_next)
		b->t_next->t_prev = &b->t_next;
	b->t_prev = &tls_thread->list;
	tls_thread->list = b;
	/* Debug caches keep the TLS entry on the empty magazine: every alloc and free of
	 * theirs takes the out-of-line path, which uses the bound magazine. */
	if (!h->debug)
		slab_tls_mags[h->slot] = m;
	tls_bind[h->slot] = b;
	pthread_mutex_unlock(&slab_lib_lock);
	return m;
}

/* The calling thread's alien buffer of h for node, bound on first use; NULL when none
 * can be had (the object then goes home at once). */
static struct slab_mag *alien_buffer(slab_cache *h, unsigned node)
{
	struct binding *b = tls_bind[h->slot];
	struct slab_mag *m;
	int err = 0;

	if (!b || node >= SLAB_MAX_NODES)
		return NULL;
	if (b->alien[node])
		return b->alien[node];
	pthread_mutex_lock(&slab_lib_lock);
	m = slab_area_mag(h->pool, SLAB_ALIEN_LIMIT, &err);
	if (m) {
		sm_alien_init(&h->pool->arena, m, h->desc, node, m->m_capacity);
		b->alien[node] = m;
	}
	pthread_mutex_unlock(&slab_lib_lock);
	return m;
}

void slab_cache_flush_all(slab_cache *h)
{
	while (h->bindings)
		unbind(h->bindings);
}

void slab_cache_release(slab_cache *h)
{
	slab_cache **pp;

	slab_cache_flush_all(h);
	for (pp = &h->pool->caches; *pp && *pp != h; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = h->next;
	slot_used[h->slot] = 0;
	free(h);
}

/* In a forked child: the bindings name the parent's magazines; drop them unread. */
void slab_fork_child_reset(void)
{
	for (unsigned i = 0; i < SLAB_TLS_SLOTS; i++) {
		slab_tls_mags[i] = &slab_empty_mag;
		tls_bind[i] = NULL;
	}
	if (tls_thread) {
		while (tls_thread->list) {
			struct binding *b = tls_thread->list, **pp;
			for (pp = &b->h->bindings; *pp && *pp != b; pp = &(*pp)->h_next)
				;
			if (*pp)
				*pp = b->h_next;
			tls_thread->list = b->t_next;
			free(b);
		}
	}
	/* Bindings of other (now absent) threads: their handles keep no magazines. */
	/* Handles are reached through each pool's list by slab_pool_check_fork. */
}

/* ---- handles --------------------------------------------------------------------------- */

int slab_cache_attach(slab_pool *p, json_t *info, slab_cache **out)
{
	slab_cache *h = calloc(1, sizeof(*h));
	json_int_t id = json_integer_value(json_object_get(info, "id"));
	unsigned slot;

	if (!h)
		return -ENOMEM;
	if (id < 0 || id >= p->arena.hdr->ah_nr_caches) {
		free(h);
		return -EPROTO;
	}
	pthread_mutex_lock(&slab_lib_lock);
	for (slot = 0; slot < SLAB_TLS_SLOTS && slot_used[slot]; slot++)
		;
	if (slot == SLAB_TLS_SLOTS) {
		pthread_mutex_unlock(&slab_lib_lock);
		free(h);
		return -EMFILE;
	}
	slot_used[slot] = 1;
	h->base = p->arena.base;
	h->pages = p->arena.pages;
	h->arena = &p->arena;
	h->desc = sm_cache(&p->arena, (uint32_t)id);
	h->slot = slot;
	h->cid1 = (uint32_t)id + 1;
	h->nr_pages = p->arena.size >> SLAB_PAGE_SHIFT;
	h->tls_off = (uint64_t)((uintptr_t)&slab_tls_mags[slot] - slab_thread_pointer());
	h->slab_mask = ((uint64_t)SLAB_PAGE_SIZE << h->desc->c_order) - 1;
	h->objcheck = sm_objcheck_make(h->desc->c_size, h->desc->c_num);
	h->debug = h->desc->c_flags & (SM_FLAGS_DEBUG | SM_ZERO);
	h->pool = p;
	h->id = (uint32_t)id;
	h->serial = h->desc->c_serial;
	memcpy(h->name, h->desc->c_name, sizeof(h->name));
	h->next = p->caches;
	p->caches = h;
	pthread_mutex_unlock(&slab_lib_lock);
	*out = h;
	return 0;
}

static int open_common(slab_pool *p, const char *cmd, json_t *req, slab_cache **out)
{
	json_t *r;
	int err = 0;

	if (!p || !out) {
		json_decref(req);
		return -EINVAL;
	}
	*out = NULL;
	err = slab_pool_check_fork(p);
	if (err) {
		json_decref(req);
		return err;
	}
	r = slab_rpc(p, cmd, req, &err);
	if (!r)
		return err;
	err = slab_cache_attach(p, json_object_get(r, "cache"), out);
	if (!err)
		slab_pool_note_open(p, (*out)->name, 1);
	if (err) {
		/* Keep the daemon's reference count right: give the reference back. */
		json_t *c = slab_rpc(p, "cache.close",
				     json_pack("{s:O}", "name", json_object_get(json_object_get(r, "cache"), "name")),
				     &(int){ 0 });
		json_decref(c);
	}
	json_decref(r);
	return err;
}

int slab_cache_create(slab_pool *pool, const char *name, const struct slab_cache_config *cfg,
		      slab_cache **out)
{
	json_t *req;

	if (!cfg || !name || !sm_cache_name_ok(name) || !cfg->size ||
	    (cfg->align & (cfg->align - 1)) || (cfg->flags & ~SM_FLAGS_ALL))
		return -EINVAL;
	req = json_pack("{s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:I, s:b}", "name", name,
			"size", (json_int_t)cfg->size, "align", (json_int_t)cfg->align,
			"flags", (int)cfg->flags, "limit", (int)cfg->limit,
			"batchcount", (int)cfg->batchcount, "min_partial", (int)cfg->min_partial,
			"node", cfg->node, "max_objects", (json_int_t)cfg->max_objects, "open", 1);
	return open_common(pool, "cache.create", req, out);
}

int slab_cache_open(slab_pool *pool, const char *name, slab_cache **out)
{
	if (!name || !sm_cache_name_ok(name))
		return -EINVAL;
	return open_common(pool, "cache.open", json_pack("{s:s}", "name", name), out);
}

static int close_common(slab_cache *h, const char *cmd)
{
	slab_pool *p;
	json_t *r;
	int err = 0;

	if (!h)
		return -EINVAL;
	p = h->pool;
	slab_pool_check_fork(p);
	pthread_mutex_lock(&slab_lib_lock);
	slab_cache_flush_all(h);
	r = slab_rpc(p, cmd, json_pack("{s:s}", "name", h->name), &err);
	slab_pool_note_open(p, h->name, 0);
	slab_cache_release(h);
	pthread_mutex_unlock(&slab_lib_lock);
	json_decref(r);
	return r ? 0 : err;
}

int slab_cache_close(slab_cache *h)
{
	return close_common(h, "cache.close");
}

int slab_cache_destroy(slab_cache *h)
{
	return close_common(h, "cache.destroy");
}

/* ---- alloc / free ----------------------------------------------------------------------- */

/* Debug caches and SLAB_ZERO: checks, stamps and clearing on the way out (debug.h). */
static sm_noinline void *alloc_debug(slab_cache *h, uint64_t off, void *caller)
{
	void *obj = h->base + off;

	if (h->debug & SM_FLAGS_DEBUG)
		sm_debug_alloc(h->arena, h->desc, off, h->arena->pid, (uint64_t)(uintptr_t)caller);
	if (h->debug & SM_ZERO)
		memset(obj, 0, h->desc->c_object_size);
	return obj;
}

sm_noinline sm_cold void *slab_alloc_slow(slab_cache *h, void *caller)
{
	slab_pool *p = h->pool;
	struct slab_mag *m;
	uint64_t off;
	unsigned node;
	int err = slab_pool_check_fork(p);

	slab_pool_watch(p);
	if (err || !(m = bind_mag(h, &err))) {
		errno = -err;
		return NULL;
	}
	if (!sm_mag_pop(m, &off)) { /* a debug cache's magazine may still hold some */
		node = slab_thread_node(p);
		sm_mag_set_node(&p->arena, m, node);
		err = sm_alloc_slow(&p->arena, h->desc, m, node, &off);
		if (err) {
			errno = -err;
			return NULL;
		}
	}
	if (h->debug)
		return alloc_debug(h, off, caller);
	return h->base + off;
}

/* The fast paths themselves are internal.h's slab_alloc_fast and slab_free_tagged,
 * shared with slab_kmalloc and slab_kfree. */
sm_fastpath void *slab_alloc(slab_cache *h)
{
	void *obj;

	if (likely(slab_alloc_fast(h, &obj)))
		return obj;
	return slab_alloc_slow(h, __builtin_return_address(0));
}

/* Everything the fast free does not do: wrong frees (found and counted), the freshest
 * double free, alien objects (cache_free_alien), a full magazine (cache_flusharray), a
 * thread with no magazine yet, debug caches. */
sm_noinline sm_cold int slab_free_slow(slab_cache *h, uint64_t off)
{
	slab_pool *p = h->pool;
	struct slab_mag *m;
	uint32_t head, idx;
	unsigned node;
	int err = slab_pool_check_fork(p);

	slab_pool_watch(p);
	if (err || !(m = bind_mag(h, &err)))
		return err;
	if (sm_obj_lookup(&p->arena, h->desc, off, &head, &idx) != OBJ_OK)
		return sm_free_refused(h->desc, m, STAT_INVALID_FREE);
	if ((h->debug & SM_FLAGS_DEBUG) &&
	    sm_debug_free(h->arena, h->desc, off, head, idx, h->arena->pid))
		return sm_free_refused(h->desc, m, STAT_DOUBLE_FREE);
	switch (sm_mag_put(m, off, head)) {
	case PUSH_OK:
		return 0;
	case PUSH_DOUBLE:
		return sm_free_refused(h->desc, m, STAT_DOUBLE_FREE);
	case PUSH_ALIEN:
		/* Maybe it is the thread that moved: refresh its node first. */
		node = slab_thread_node(p);
		sm_mag_set_node(&p->arena, m, node);
		switch (sm_mag_put(m, off, head)) {
		case PUSH_OK:
			return 0;
		case PUSH_ALIEN:
			return sm_free_alien(&p->arena, h->desc, m,
					     alien_buffer(h, sm_slab_node(&p->arena, head)), off);
		default:
			break; /* full: flush below */
		}
		return sm_free_slow(&p->arena, h->desc, m, node, off);
	default:
		node = slab_thread_node(p);
		sm_mag_set_node(&p->arena, m, node);
		return sm_free_slow(&p->arena, h->desc, m, node, off);
	}
}

/* cache_from_obj's first test, inside the arena, then slab_free_tagged. */
sm_fastpath int slab_free(slab_cache *h, void *obj)
{
	struct slab_mag *m = slab_tls_mag(h);
	uint64_t off = (uint64_t)((uint8_t *)obj - h->base), pg = off >> SLAB_PAGE_SHIFT;

	if (unlikely(pg >= h->nr_pages))
		return slab_free_slow(h, off);
	return slab_free_tagged(h, m, off, SM_LOAD(&h->pages[pg].pg_tag));
}

int slab_alloc_bulk(slab_cache *h, size_t n, void **objs)
{
	size_t i;

	if (!h || (n && !objs))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		objs[i] = slab_alloc(h);
		if (!objs[i]) {
			int err = errno ? -errno : -ENOMEM;
			while (i--)
				slab_free(h, objs[i]);
			return err;
		}
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int slab_free_bulk(slab_cache *h, size_t n, void **objs)
{
	uint64_t *offs;
	size_t i;
	int bad = 0, err = 0;

	if (!h || (n && !objs))
		return -EINVAL;
	if (!n)
		return 0;
	offs = malloc(n * sizeof(*offs));
	if (!offs)
		return -ENOMEM;
	/* All or nothing: every object must be an allocated object of this cache, once. */
	for (i = 0; i < n && !bad; i++) {
		uint32_t head, idx;
		unsigned e;

		offs[i] = (uint64_t)((uint8_t *)objs[i] - h->base);
		if (sm_obj_lookup(h->arena, h->desc, offs[i], &head, &idx) != OBJ_OK) {
			bad = 1;
			break;
		}
		e = sm_bufctl_get(h->desc, sm_slab_addr(h->arena, head), idx);
		/* CACHED (SLAB_DEBUG): already freed, sitting in a magazine or shared
		 * array.  Without SLAB_DEBUG cached objects read ACTIVE (caught later). */
		bad = e != BUFCTL_ACTIVE;
	}
	if (!bad) {
		qsort(offs, n, sizeof(*offs), cmp_u64);
		for (i = 1; i < n && !bad; i++)
			bad = offs[i] == offs[i - 1];
	}
	free(offs);
	if (bad) {
		err = slab_free_slow(h, UINT64_MAX);
		return err ? err : -EINVAL;
	}
	/* Checked above: only a debug check racing another process's free of the same
	 * object can refuse one now; report it. */
	for (i = 0; i < n; i++) {
		int rc = slab_free(h, objs[i]);
		if (rc && !err)
			err = rc;
	}
	return err;
}

/* ---- offsets ---------------------------------------------------------------------------- */

/* slab.h's inline copies read the arena's base and size through struct slab_pool_head_:
 * the pool must begin with them. */
#if defined(__GNUC__) && !defined(SLAB_NO_INLINE)
static_assert(offsetof(struct slab_pool, arena) == 0 &&
		      offsetof(struct sm_arena, base) == offsetof(struct slab_pool_head_, base_) &&
		      offsetof(struct sm_arena, size) == offsetof(struct slab_pool_head_, size_) &&
		      sizeof(((struct sm_arena *)0)->base) == sizeof(unsigned char *) &&
		      sizeof(((struct sm_arena *)0)->size) == sizeof(uint64_t),
	      "struct slab_pool must begin with slab.h's struct slab_pool_head_");
#endif

/* The exported copies (slab.h inlines the same bodies). */
uint64_t slab_offset(slab_pool *p, const void *obj)
{
	uint64_t off = (uint64_t)((uintptr_t)obj - (uintptr_t)p->arena.base);

	return off < p->arena.size ? off : UINT64_MAX;
}

void *slab_pointer(slab_pool *p, uint64_t offset)
{
	return offset < p->arena.size ? p->arena.base + offset : NULL;
}

const char *slab_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:            return "success";
	case ECONNREFUSED: return "slabd is not running on that socket";
	case ECONNRESET:   return "the connection to slabd was lost";
	case EACCES:       return "slabd did not admit this user";
	case EPROTO:       return "slabd speaks a protocol or arena layout this library does not know";
	case EBUSY:        return "cache busy: being destroyed, or it still has allocated objects";
	case EEXIST:       return "a cache of that name exists with another geometry";
	case ENOENT:       return "no such cache";
	case EDQUOT:       return "the cache reached its max_objects quota";
	case ENOMEM:       return "the arena is exhausted";
	case ENOSPC:       return "the cache table is full";
	case EINVAL:       return "invalid argument (or a wrong free)";
	case EMFILE:       return "too many cache handles open in this process";
	default:           return strerror(err);
	}
}
