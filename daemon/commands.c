/* commands.c - slabd's JSON commands (daemon/PROTOCOL.md documents each one).
 *
 * A handler gets the request object and returns the reply's fields (a new JSON object),
 * or NULL after filling in an error: an errno value and a message.  commands_dispatch adds
 * "id" and "ok".  Handlers never keep a reference to the request.
 *
 * Cache lifecycle follows kmem_cache_destroy: references are counted per connection
 * (conn.refs) and in the arena (c_refcount); destroy marks the cache CACHE_DYING and the
 * last reference runs shutdown_cache (sm_cache_shutdown), which fails with EBUSY and
 * leaves the cache LIVE while objects are still allocated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buddy.h"
#include "client.h"
#include "debug.h"
#include "slabd.h"
#include "sockpath.h"
#include "stocker.h"
#include "validate.h"

struct err {
	int     code;
	char    msg[256];
	json_t *extra;   /* more fields for the error reply, or NULL */
};

static json_t *fail(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static json_t *fail(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return NULL;
}

/* ---- request fields ------------------------------------------------------------- */

/* Optional unsigned field: 0 when absent; -1 (with e) when present but not a
 * non-negative integer <= max. */
static int get_uint(json_t *req, const char *key, uint64_t max, uint64_t *out, struct err *e)
{
	json_t *v = json_object_get(req, key);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max) {
		fail(e, EINVAL, "'%s' must be an integer from 0 to %llu", key,
		     (unsigned long long)max);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static const char *get_name(json_t *req, struct err *e)
{
	json_t *v = json_object_get(req, "name");

	if (!json_is_string(v)) {
		fail(e, EINVAL, "'name' (a string) is required");
		return NULL;
	}
	if (!sm_cache_name_ok(json_string_value(v))) {
		fail(e, EINVAL, "bad cache name: 1 to 63 characters of [A-Za-z0-9._-]");
		return NULL;
	}
	return json_string_value(v);
}

/* "name" present and not null: the command is about one cache, else about all. */
static int has_name(json_t *req)
{
	json_t *v = json_object_get(req, "name");

	return v && !json_is_null(v);
}

static int find_cache(struct slabd *d, json_t *req, uint32_t *id, struct err *e)
{
	const char *name = get_name(req, e);

	if (!name)
		return -1;
	if (sm_cache_lookup(&d->arena, name, id)) {
		fail(e, ENOENT, "no cache named '%s'", name);
		return -1;
	}
	return 0;
}

static int need_client(struct conn *c, struct err *e)
{
	if (c->role == CONN_CLIENT)
		return 0;
	fail(e, EPERM, "this command needs a client connection (hello with role client)");
	return -1;
}

static const struct {
	const char *name;
	unsigned    bit;
} flag_names[] = {
	{ "SLAB_HWCACHE_ALIGN", SM_HWCACHE_ALIGN }, { "SLAB_POISON", SM_POISON },
	{ "SLAB_RED_ZONE", SM_RED_ZONE },           { "SLAB_STORE_USER", SM_STORE_USER },
	{ "SLAB_DEBUG", SM_DEBUG },                 { "SLAB_ZERO", SM_ZERO },
};

/* "flags": an integer, or an array of names like "SLAB_POISON" (or "poison"). */
static int get_flags(json_t *req, unsigned *out, struct err *e)
{
	json_t *v = json_object_get(req, "flags"), *f;
	size_t i;

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0 || json_integer_value(v) & ~(json_int_t)SM_FLAGS_ALL) {
			fail(e, EINVAL, "unknown bits in 'flags'");
			return -1;
		}
		*out = (unsigned)json_integer_value(v);
		return 0;
	}
	if (!json_is_array(v)) {
		fail(e, EINVAL, "'flags' must be an integer or an array of flag names");
		return -1;
	}
	json_array_foreach(v, i, f) {
		const char *s = json_string_value(f);
		size_t k;

		for (k = 0; s && k < SM_ARRAY_SIZE(flag_names); k++)
			if (!strcasecmp(s, flag_names[k].name) || !strcasecmp(s, flag_names[k].name + 5))
				break;
		if (!s || k == SM_ARRAY_SIZE(flag_names)) {
			fail(e, EINVAL, "unknown flag %s%s%s", s ? "'" : "", s ? s : "(not a string)",
			     s ? "'" : "");
			return -1;
		}
		*out |= flag_names[k].bit;
	}
	return 0;
}

/* ---- references and shutdown ------------------------------------------------------ */

/* The last reference to a DYING cache is gone: shutdown_cache.  Returns 0 (destroyed)
 * or -EBUSY with *live (the cache is LIVE again, intact). */
static int try_shutdown(struct slabd *d, uint32_t id, uint64_t *live)
{
	struct slab_cache_desc *cd = sm_cache(&d->arena, id);
	char name[SLAB_NAME_MAX];
	int rc;

	memcpy(name, cd->c_name, sizeof(name));
	rc = sm_cache_shutdown(&d->arena, id, live);
	if (rc == 0) {
		memset(&d->track[id], 0, sizeof(d->track[id]));
		slabd_log(d, LOG_INFO, "cache %s destroyed", name);
	} else {
		__atomic_store_n(&cd->c_state, CACHE_LIVE, __ATOMIC_RELEASE);
		slabd_log(d, LOG_WARN, "cache %s still has %llu objects: not destroyed", name,
			  (unsigned long long)*live);
	}
	return rc;
}

static void ref_get(struct conn *c, uint32_t id)
{
	c->refs[id]++;
	sm_cache(&c->d->arena, id)->c_refcount++;
}

/* Drop one reference; runs shutdown when it was the last of a dying cache.
 * Returns 1 destroyed, 0 nothing more to do, -EBUSY shutdown refused (*live set). */
static int ref_put(struct conn *c, uint32_t id, uint64_t *live)
{
	struct slab_cache_desc *cd = sm_cache(&c->d->arena, id);

	c->refs[id]--;
	cd->c_refcount--;
	if (cd->c_refcount || cd->c_state != CACHE_DYING)
		return 0;
	return try_shutdown(c->d, id, live) ? -EBUSY : 1;
}

void commands_drop_refs(struct conn *c)
{
	uint64_t live;

	for (uint32_t id = 0; id < c->d->arena.hdr->ah_nr_caches; id++)
		while (c->refs[id])
			ref_put(c, id, &live);
}

/* Log what the debug checks of cache id found since the last look (debug.h). */
static void log_corruptions(struct slabd *d, uint32_t id)
{
	struct slab_cache_desc *cd = sm_cache(&d->arena, id);
	uint64_t total = SM_LOAD(&cd->c_corruptions), i = d->track[id].corrupt_seen;

	if (total < i)
		i = 0; /* the cache was created anew */
	if (total - i > SLAB_CORRUPT_LOG)
		i = total - SLAB_CORRUPT_LOG;
	for (; i < total; i++) {
		const struct slab_corruption *r = &cd->c_corrupt[i % SLAB_CORRUPT_LOG];
		slabd_log(d, LOG_ERR, "cache %s: object %#llx: %s (found %#018llx), seen by pid %d",
			  cd->c_name, (unsigned long long)r->sc_offset,
			  sm_corruption_name(r->sc_kind), (unsigned long long)r->sc_found,
			  (int)r->sc_pid);
	}
	d->track[id].corrupt_seen = total;
}

static void reserve_decay(struct slabd *d, uint64_t now);
static void reserve_note_grant(struct slabd *d, unsigned node, uint64_t pages);

/* Give large free ranges back to the OS (MADV_REMOVE punches holes in the memfd or the
 * tmpfs/hugetlbfs file): every free buddy block of 64 KiB or more.  Only slabd allocates
 * pages, and it is single-threaded, so the blocks cannot change between the walk under the
 * region lock and the madvise after it.  Returns the pages handed back. */
#define PUNCH_MIN_ORDER 4u
uint64_t commands_punch(struct slabd *d)
{
	struct sm_arena *a = &d->arena;
	uint64_t pages = 0;

	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_node_region *r = sm_region(a, n);
		uint64_t here = 0;

		if (sm_region_lock(a, n))
			continue;
		for (unsigned k = PUNCH_MIN_ORDER; k <= SLAB_MAX_ORDER; k++) {
			uint32_t x = r->nr_free[k].l_head;

			for (uint32_t i = 0; x != SLAB_NIL && i < r->nr_free[k].l_count; i++) {
				if (madvise(a->base + ((uint64_t)x << SLAB_PAGE_SHIFT),
					    (size_t)SLAB_PAGE_SIZE << k, MADV_REMOVE) == 0)
					here += 1u << k;
				x = a->pages[x].pg_next;
			}
		}
		r->nr_punched_pages = here;
		sm_region_unlock(a, n);
		pages += here;
	}
	d->punched_at_free = 0;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++)
		d->punched_at_free += sm_region(a, n)->nr_free_pages;
	return pages;
}

void commands_reap(struct slabd *d)
{
	uint64_t now = slabd_now_ns();

	d->reap_ticks++;
	for (uint32_t id = 0; id < d->arena.hdr->ah_nr_caches; id++) {
		struct slab_cache_desc *cd = sm_cache(&d->arena, id);
		unsigned n;

		if (cd->c_state == CACHE_UNUSED)
			continue;
		/* A cache that stopped growing starts again from single-slab grants. */
		if (d->track[id].grant_streak && now - d->track[id].last_grant_ns > 1000000000ull)
			d->track[id].grant_streak = 0;
		for (n = 0; n < d->arena.hdr->ah_nr_nodes; n++)
			if (SM_LOAD(&cd->c_nodes[n].n_discard.l_count))
				break;
		if (n < d->arena.hdr->ah_nr_nodes)
			sm_cache_reap(&d->arena, id);
		/* Every second (50 ticks): free slabs beyond the limits go back gradually
		 * (the kernel's cache_reap -> drain_freelist), unless it is still growing. */
		if (d->reap_ticks % 50 == 0 && now - d->track[id].last_grant_ns > 1000000000ull)
			sm_cache_trim(&d->arena, id, 1024);
		log_corruptions(d, id);
	}
	/* Every second: when the page allocator holds 4 MiB more free memory than at the
	 * last punch and nothing was granted for 2 s, give the large free ranges back to the
	 * OS.  (While slabs are being granted, memory given back would only be faulted in
	 * again, zeroed, by the next grant.) */
	if (d->reap_ticks % 50 == 10)
		reserve_decay(d, now);
	if (d->reap_ticks % 50 == 25 && now - d->last_any_grant_ns > 2000000000ull) {
		uint64_t free_pages = 0;

		for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++)
			free_pages += SM_LOAD(&sm_region(&d->arena, n)->nr_free_pages);
		if (free_pages > d->punched_at_free + 1024)
			commands_punch(d);
		else if (free_pages < d->punched_at_free)
			d->punched_at_free = free_pages;
	}
}

void commands_client_gone(struct conn *c, uint64_t returned)
{
	struct slabd *d = c->d;
	struct dead_client *dc = &d->dead[d->nr_dead++ % SLABD_DEAD_KEPT];

	memset(dc, 0, sizeof(*dc));
	dc->pid = c->pid;
	dc->uid = c->uid;
	dc->since_ns = c->since_ns;
	dc->died_ns = slabd_now_ns();
	dc->returned = returned;
	for (uint32_t id = 0; id < d->arena.hdr->ah_nr_caches && dc->nr_caches < 8; id++)
		if (c->refs[id]) {
			dc->serials[dc->nr_caches] = sm_cache(&d->arena, id)->c_serial;
			dc->caches[dc->nr_caches++] = id;
		}
}

/* ---- handlers ------------------------------------------------------------------------ */

static json_t *cmd_hello(struct conn *c, json_t *req, struct err *e)
{
	struct slabd *d = c->d;
	json_t *role = json_object_get(req, "role"), *r, *resume;
	const char *rs = role ? json_string_value(role) : "monitor";
	uint64_t ver;

	/* A resuming client waiting to hand over its arena has said hello too (a second,
	 * pipelined hello must not start a second hand-over on the same connection). */
	if (c->role != CONN_NEW || c->adopt_ev)
		return fail(e, EPROTO, "hello was already said on this connection");
	if (get_uint(req, "version", 1000, &ver, e))
		return NULL;
	if (ver && ver != SLABD_PROTOCOL_VERSION)
		return fail(e, EPROTO, "protocol version %llu not supported (this slabd speaks %d)",
			    (unsigned long long)ver, SLABD_PROTOCOL_VERSION);
	if (!rs || (strcmp(rs, "client") && strcmp(rs, "monitor")))
		return fail(e, EINVAL, "'role' is \"client\" or \"monitor\"");
	resume = json_object_get(req, "resume");
	if (!strcmp(rs, "client") && resume) {
		/* A client coming back: same arena, or a pristine slabd that takes it over. */
		uint64_t slot, arena_id;
		json_t *id = json_object_get(req, "id");

		if (get_uint(resume, "slot", d->arena.hdr->ah_nr_clients - 1, &slot, e) ||
		    get_uint(resume, "arena_id", UINT64_MAX >> 1, &arena_id, e))
			return NULL;
		c->resume_slot = (uint32_t)slot;
		if (arena_id == (d->arena.hdr->ah_created_ns & (UINT64_MAX >> 1)))
			return commands_resume_reply(c);
		if (!d->pristine)
			return fail(e, EPROTO, "this slabd serves another arena (it was restarted and "
				    "clients registered before this one came back)");
		c->resume_id = id ? json_incref(id) : json_null();
		adopt_wait_arena(c);
		return json_pack("{s:b}", "adopt", 1);
	}
	if (!strcmp(rs, "client")) {
		int rc = sm_client_attach(&d->arena, c->pid, c->uid, c->gid, &c->slot);
		if (rc)
			return fail(e, EUSERS, "client table full (%u clients)",
				    d->arena.hdr->ah_nr_clients);
		c->role = CONN_CLIENT;
		adopt_end_pristine(d);
		server_watch_pid(c);
		slabd_log(d, LOG_INFO, "client pid %d uid %u admitted (slot %u)", (int)c->pid,
			  (unsigned)c->uid, c->slot);
	} else {
		c->role = CONN_MONITOR;
	}
	r = json_pack("{s:i, s:s, s:i, s:s, s:I, s:i, s:i, s:I, s:I}", "version",
		      SLABD_PROTOCOL_VERSION, "server", "slabd " SLABD_VERSION, "pid",
		      (int)getpid(), "role", rs, "arena_size", (json_int_t)d->arena.size, "nodes",
		      (int)d->arena.hdr->ah_nr_nodes, "page_size", SLAB_PAGE_SIZE, "generation",
		      (json_int_t)d->arena.hdr->ah_generation, "arena_id",
		      (json_int_t)(d->arena.hdr->ah_created_ns & (UINT64_MAX >> 1)));
	if (c->role == CONN_CLIENT)
		json_object_set_new(r, "client", json_integer(c->slot));
	return r;
}

json_t *commands_resume_reply(struct conn *c)
{
	struct slabd *d = c->d;
	struct conn *g = adopt_find_ghost(d, c->resume_slot, c->pid);
	json_t *r;

	if (!g) {
		r = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", "ENOENT", "message",
			      "no client slot of this process to resume: register anew");
	} else {
		adopt_resume(c, g);
		slabd_log(d, LOG_INFO, "client pid %d resumed slot %u", (int)c->pid, c->slot);
		r = json_pack("{s:b, s:i, s:b, s:b, s:I, s:I}", "ok", 1, "client", (int)c->slot,
			      "resumed", 1, "refs_kept", c->refs_kept,
			      "generation", (json_int_t)d->arena.hdr->ah_generation, "arena_id",
			      (json_int_t)(d->arena.hdr->ah_created_ns & (UINT64_MAX >> 1)));
	}
	if (c->resume_id) {
		json_object_set(r, "id", c->resume_id);
		json_decref(c->resume_id);
		c->resume_id = NULL;
	}
	return r;
}

static json_t *cmd_cache_create(struct conn *c, json_t *req, struct err *e)
{
	struct slabd *d = c->d;
	struct sm_cache_params p = { .node = -1 };
	uint64_t v[7];
	json_t *node = json_object_get(req, "node"), *open = json_object_get(req, "open"), *r;
	bool existed, want_open;
	uint32_t id;
	int rc;

	if (!(p.name = get_name(req, e)) || get_flags(req, &p.flags, e) ||
	    get_uint(req, "size", SLAB_MAX_OBJECT_SIZE, &v[0], e) ||
	    get_uint(req, "align", SLAB_MAX_ALIGN, &v[1], e) ||
	    get_uint(req, "limit", SLAB_MAG_MAX, &v[2], e) ||
	    get_uint(req, "batchcount", SLAB_MAG_MAX, &v[3], e) ||
	    get_uint(req, "shared", SLAB_SHARED_MAX, &v[4], e) ||
	    get_uint(req, "min_partial", 1024, &v[5], e) ||
	    get_uint(req, "max_objects", UINT64_MAX >> 1, &v[6], e))
		return NULL;
	if (!v[0])
		return fail(e, EINVAL, "'size' is required: 1 to %u bytes", SLAB_MAX_OBJECT_SIZE);
	if (v[1] & (v[1] - 1))
		return fail(e, EINVAL, "'align' must be a power of two (up to %u)", SLAB_MAX_ALIGN);
	if (node && !json_is_null(node)) {
		if (!json_is_integer(node) || json_integer_value(node) < -1 ||
		    json_integer_value(node) >= d->arena.hdr->ah_nr_nodes)
			return fail(e, EINVAL, "'node' must be -1 (local) or 0 to %u",
				    d->arena.hdr->ah_nr_nodes - 1);
		p.node = (int)json_integer_value(node);
	}
	want_open = open && (json_is_true(open) ||
			     (json_is_integer(open) && json_integer_value(open) != 0));
	if (want_open && need_client(c, e))
		return NULL;
	p.size = v[0];
	p.align = v[1];
	p.limit = (unsigned)v[2];
	p.batchcount = (unsigned)v[3];
	p.shared = (unsigned)v[4];
	p.min_partial = (unsigned)v[5];
	p.max_objects = v[6];
	rc = sm_cache_create(&d->arena, &p, &id, &existed);
	if (rc == 0)
		adopt_end_pristine(d);
	if (rc == -EEXIST)
		return fail(e, EEXIST, "cache '%s' exists with another geometry", p.name);
	if (rc == -EBUSY)
		return fail(e, EBUSY, "cache '%s' is being destroyed", p.name);
	if (rc == -ENOSPC)
		return fail(e, ENOSPC, "the cache table is full (%u caches)", d->arena.hdr->ah_nr_caches);
	if (rc)
		return fail(e, EINVAL, "invalid cache geometry or tunables (batchcount <= limit <= %u, shared <= %u)",
			    SLAB_MAG_MAX, SLAB_SHARED_MAX);
	if (want_open)
		ref_get(c, id);
	if (!existed)
		slabd_log(d, LOG_INFO, "cache %s created: %u-byte objects, %u per %u-page slab",
			  p.name, sm_cache(&d->arena, id)->c_size, sm_cache(&d->arena, id)->c_num,
			  1u << sm_cache(&d->arena, id)->c_order);
	r = json_pack("{s:b, s:o}", "existed", existed, "cache", stats_cache_info(d, id));
	return r;
}

static json_t *cmd_cache_open(struct conn *c, json_t *req, struct err *e)
{
	uint32_t id;

	if (need_client(c, e) || find_cache(c->d, req, &id, e))
		return NULL;
	if (sm_cache(&c->d->arena, id)->c_state == CACHE_DYING)
		return fail(e, EBUSY, "cache '%s' is being destroyed", sm_cache(&c->d->arena, id)->c_name);
	ref_get(c, id);
	return json_pack("{s:o}", "cache", stats_cache_info(c->d, id));
}

static json_t *cmd_cache_close(struct conn *c, json_t *req, struct err *e)
{
	uint64_t live = 0;
	uint32_t id;
	int rc;

	if (need_client(c, e) || find_cache(c->d, req, &id, e))
		return NULL;
	if (!c->refs[id])
		return fail(e, EINVAL, "cache '%s' is not open on this connection",
			    sm_cache(&c->d->arena, id)->c_name);
	rc = ref_put(c, id, &live);
	if (rc < 0)
		return json_pack("{s:b, s:I}", "destroyed", 0, "busy_objects", (json_int_t)live);
	return json_pack("{s:b}", "destroyed", rc == 1);
}

static json_t *cmd_cache_destroy(struct conn *c, json_t *req, struct err *e)
{
	struct slabd *d = c->d;
	struct slab_cache_desc *cd;
	uint64_t live = 0;
	uint32_t id;

	if (find_cache(d, req, &id, e))
		return NULL;
	cd = sm_cache(&d->arena, id);
	if (c->refs[id]) {
		c->refs[id]--;
		cd->c_refcount--;
	}
	__atomic_store_n(&cd->c_state, CACHE_DYING, __ATOMIC_RELEASE);
	if (cd->c_refcount)
		return json_pack("{s:b, s:b, s:i}", "destroyed", 0, "pending", 1, "refcount",
				 (int)cd->c_refcount);
	if (try_shutdown(d, id, &live)) {
		e->extra = json_pack("{s:I}", "objects", (json_int_t)live);
		return fail(e, EBUSY, "cache still has %llu objects", (unsigned long long)live);
	}
	return json_pack("{s:b}", "destroyed", 1);
}

static json_t *cmd_cache_list(struct conn *c, json_t *req, struct err *e)
{
	json_t *list = json_array();

	(void)req;
	(void)e;
	for (uint32_t id = 0; id < c->d->arena.hdr->ah_nr_caches; id++)
		if (sm_cache(&c->d->arena, id)->c_state != CACHE_UNUSED)
			json_array_append_new(list, stats_cache_summary(c->d, id));
	return json_pack("{s:o}", "caches", list);
}

static json_t *cmd_cache_stats(struct conn *c, json_t *req, struct err *e)
{
	json_t *list = json_array();
	uint32_t id;

	if (has_name(req)) {
		if (find_cache(c->d, req, &id, e)) {
			json_decref(list);
			return NULL;
		}
		json_array_append_new(list, stats_cache(c->d, id));
	} else {
		for (id = 0; id < c->d->arena.hdr->ah_nr_caches; id++)
			if (sm_cache(&c->d->arena, id)->c_state != CACHE_UNUSED)
				json_array_append_new(list, stats_cache(c->d, id));
	}
	return json_pack("{s:o}", "caches", list);
}

static void unschedule_restock(struct slabd *d, uint32_t id);

static json_t *cmd_cache_shrink(struct conn *c, json_t *req, struct err *e)
{
	unsigned released = 0;
	uint32_t id;

	if (has_name(req)) {
		if (find_cache(c->d, req, &id, e))
			return NULL;
		unschedule_restock(c->d, id);
		released = sm_cache_shrink(&c->d->arena, id);
	} else {
		for (id = 0; id < c->d->arena.hdr->ah_nr_caches; id++)
			if (sm_cache(&c->d->arena, id)->c_state != CACHE_UNUSED) {
				unschedule_restock(c->d, id);
				released += sm_cache_shrink(&c->d->arena, id);
			}
	}
	/* The reserve is free memory too: back with the rest, until the next grant, and
	 * what bursts added to its target goes with it. */
	c->d->reserve_armed = false;
	stocker_quiesce(c->d);
	for (unsigned n = 0; n < c->d->arena.hdr->ah_nr_nodes; n++) {
		sm_reserve_drain(&c->d->arena, n);
		c->d->reserve_target[n] = c->d->reserve_floor[n];
		c->d->burst_pages[n] = c->d->decay_pages[n] = 0;
	}
	return json_pack("{s:i, s:I}", "released_slabs", (int)released, "punched_bytes",
			 (json_int_t)(commands_punch(c->d) << SLAB_PAGE_SHIFT));
}

struct vreport {
	json_t  *lines;
};

static void vreport_line(void *arg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void vreport_line(void *arg, const char *fmt, ...)
{
	struct vreport *v = arg;
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (json_array_size(v->lines) < 1000)
		json_array_append_new(v->lines, json_string(line));
}

static json_t *cmd_cache_validate(struct conn *c, json_t *req, struct err *e)
{
	struct vreport v = { .lines = json_array() };
	unsigned bad;
	uint32_t id;

	stocker_quiesce(c->d); /* the blocks it holds off the reserve lists (B4) */
	if (has_name(req)) {
		if (find_cache(c->d, req, &id, e)) {
			json_decref(v.lines);
			return NULL;
		}
		bad = sm_validate_cache(&c->d->arena, id, stats_holders, stats_holder_count, c->d,
					 vreport_line, &v);
	} else {
		bad = sm_validate(&c->d->arena, stats_holders, stats_holder_count, c->d, vreport_line,
				  &v);
	}
	return json_pack("{s:b, s:i, s:o}", "clean", bad == 0, "problems", (int)bad, "report",
			 v.lines);
}

static json_t *cmd_cache_tune(struct conn *c, json_t *req, struct err *e)
{
	uint64_t limit, batch, shared, minp;
	uint32_t id;

	if (find_cache(c->d, req, &id, e) || get_uint(req, "limit", SLAB_MAG_MAX, &limit, e) ||
	    get_uint(req, "batchcount", SLAB_MAG_MAX, &batch, e) ||
	    get_uint(req, "shared", SLAB_SHARED_MAX, &shared, e) ||
	    get_uint(req, "min_partial", 1024, &minp, e))
		return NULL;
	if (sm_cache_tune(&c->d->arena, id, (unsigned)limit, (unsigned)batch, (unsigned)shared,
			  (unsigned)minp))
		return fail(e, EINVAL, "need 1 <= batchcount <= limit <= %u, shared <= %u",
			    SLAB_MAG_MAX, SLAB_SHARED_MAX);
	return json_pack("{s:o}", "cache", stats_cache_info(c->d, id));
}

/* A dead client's allocations in SLAB_STORE_USER caches (slabctl reclaim PID). */
static json_t *cmd_cache_reclaim(struct conn *c, json_t *req, struct err *e)
{
	struct slabd *d = c->d;
	json_t *list = json_array();
	uint64_t pid, dry = json_is_true(json_object_get(req, "dry_run"));
	int64_t total = 0;
	uint32_t id;

	if (get_uint(req, "pid", 0x7fffffff, &pid, e) || !pid) {
		json_decref(list);
		return e->code ? NULL : fail(e, EINVAL, "'pid' (a dead client's pid) is required");
	}
	for (struct conn *o = d->conns; o; o = o->next)
		if (o->role == CONN_CLIENT && o->pid == (pid_t)pid) {
			json_decref(list);
			return fail(e, EBUSY, "pid %llu is a live client: its objects are its own",
				    (unsigned long long)pid);
		}
	if (has_name(req)) {
		if (find_cache(d, req, &id, e)) {
			json_decref(list);
			return NULL;
		}
		if (!(sm_cache(&d->arena, id)->c_flags & SM_STORE_USER)) {
			json_decref(list);
			return fail(e, EINVAL, "cache '%s' has no owner tracking (create it with SLAB_STORE_USER)",
				    sm_cache(&d->arena, id)->c_name);
		}
	}
	for (uint32_t i = 0; i < d->arena.hdr->ah_nr_caches; i++) {
		struct slab_cache_desc *cd = sm_cache(&d->arena, i);
		int64_t n;

		if (cd->c_state == CACHE_UNUSED || !(cd->c_flags & SM_STORE_USER) ||
		    (has_name(req) && i != id))
			continue;
		n = sm_cache_reclaim_pid(&d->arena, i, (int32_t)pid, stats_holders, d, (int)dry);
		if (n < 0) {
			json_decref(list);
			return fail(e, -n == ENOMEM ? ENOMEM : EIO, "reclaim in cache '%s' failed: %s",
				    cd->c_name, strerror((int)-n));
		}
		total += n;
		json_array_append_new(list, json_pack("{s:s, s:I}", "name", cd->c_name,
						       "objects", (json_int_t)n));
		if (n && !dry)
			slabd_log(d, LOG_INFO, "cache %s: %lld objects of dead pid %llu reclaimed",
				  cd->c_name, (long long)n, (unsigned long long)pid);
	}
	return json_pack("{s:I, s:b, s:o}", "reclaimed", (json_int_t)total, "dry_run", (int)dry,
			 "caches", list);
}

static json_t *cmd_arena_stats(struct conn *c, json_t *req, struct err *e)
{
	(void)req;
	(void)e;
	return stats_arena(c->d);
}

static json_t *cmd_clients_list(struct conn *c, json_t *req, struct err *e)
{
	(void)req;
	(void)e;
	return stats_clients(c->d);
}

/* The cache restock: right after a grant, while the client consumes it, slabd grants
 * the next batch onto the cache node's free list in the background (the loop's next
 * turn), so a cache that keeps growing finds slabs ready instead of a round trip each.
 * Slabs left unused go back after a second without grants (sm_cache_trim).
 * Restock work: (cache id, node) pairs, packed as id | node << 20, that slabd_restock
 * grows one step at a time between turns of the event loop (main.c), so requests are
 * read and answered between steps.  (Run as libevent callbacks, a step that scheduled
 * the next one immediately ran the whole chain without polling the sockets: a client
 * waiting for a grant waited for the whole restock, 0.5-0.8 ms.) */
#define RESTOCK_STEP 32u  /* slabs per restock step */
#define GRANT_SYNC   32u  /* most slabs a grant request waits for */
/* Batches (the grant streak, up to 4 MiB of slabs) the restock keeps a growing cache
 * ahead.  A client allocating 64-byte objects in a loop empties two batches (512 slabs)
 * in about 0.3 ms and then waits for a grant: 38-42 grants for 1,000,000 objects on a
 * long-running slabd with two, 24-25 with four, 15-17 with eight (an instrumented
 * client).  Eight would hold up to 32 MiB for each growing cache; four is the compromise.
 * What a burst leaves unused goes back after a second without grants (sm_cache_trim). */
#define RESTOCK_AHEAD 4u
/* ... but never more free slabs ahead than 1/RESTOCK_NODE_SHARE of the node: on a small
 * arena four batches would be a good part of it, and a free slab one cache holds is one
 * no other cache's grant can have until the trim gives it back. */
#define RESTOCK_NODE_SHARE 32u
#define RESTOCK_KEY(id, node) ((uint32_t)(id) | (uint32_t)(node) << 20)

static void schedule_restock(struct slabd *d, uint32_t id, unsigned node)
{
	uint32_t key = RESTOCK_KEY(id, node);

	for (unsigned i = 0; i < d->nr_restock; i++)
		if (d->restock[i] == key)
			return;
	if (d->nr_restock == SLABD_RESTOCK_MAX)
		return; /* that many caches growing at once: this one waits for its grants */
	d->restock[d->nr_restock++] = key;
}

/* A shrink gives the cache's memory back: pending restock work for it would take it
 * again at once (seen: a closed cache regrown to 8 MiB right after its shrink). */
static void unschedule_restock(struct slabd *d, uint32_t id)
{
	unsigned k = 0;

	for (unsigned i = 0; i < d->nr_restock; i++)
		if ((d->restock[i] & 0xfffff) != id)
			d->restock[k++] = d->restock[i];
	d->nr_restock = k;
	d->track[id].grant_streak = 0;
}

static void cache_restock_step(struct slabd *d)
{
	uint32_t key, id, want;
	unsigned node;
	int got;
	struct slab_cache_desc *cd;

	key = d->restock[0];
	memmove(d->restock, d->restock + 1, --d->nr_restock * sizeof(d->restock[0]));
	id = key & 0xfffff;
	node = key >> 20;
	if (id >= d->arena.hdr->ah_nr_caches || node >= d->arena.hdr->ah_nr_nodes)
		return;
	cd = sm_cache(&d->arena, id);
	want = d->track[id].grant_streak;
	/* RESTOCK_AHEAD batches ahead, so a cache that keeps growing finds slabs ready while
	 * slabd prepares more; RESTOCK_STEP slabs a step, so that a grant request waits for
	 * one step at most, not for the whole reserve. */
	if (cd->c_state == CACHE_LIVE && want && SM_LOAD(&cd->c_refcount) &&
	    SM_LOAD(&cd->c_nodes[node].n_free.l_count) < RESTOCK_AHEAD * want &&
	    ((uint64_t)SM_LOAD(&cd->c_nodes[node].n_free.l_count) << cd->c_order) <
		    sm_region(&d->arena, node)->nr_nr_pages / RESTOCK_NODE_SHARE &&
	    (got = sm_cache_grow(&d->arena, id, node, want < RESTOCK_STEP ? want : RESTOCK_STEP)) > 0) {
		reserve_note_grant(d, node, (uint64_t)got << cd->c_order);
		schedule_restock(d, id, node);
	}
}

/* The per-node page reserve (buddy.h): free memory slabd faults in ahead of need, so that
 * the pages a growing cache gets are already resident.  A page fault of fresh shared
 * memory costs 1-2.2 us on the VMs measured, 16-34 ns for each 64-byte object on it:
 * without the reserve a new cache on a fresh arena waited for slabd's page faults (cold
 * 3.6x warm).  Stocked to reserve_target at start-up, before slabd is ready, and again
 * once grants have used it: by the stocker thread (stocker.h) block by block while the
 * grants go on, or, without that thread, one block a step between loop turns once grants
 * paused.  A shrink gives it back (it counts as resident memory) and it stays empty until
 * the next grant. */
#define RESERVE_QUIET_NS 100000000ull /* without the stocker: after grants paused this long */

/* Whether node's reserve (with the blocks out with the stocker) is a block or more below
 * `level` pages, and a free block could raise it. */
static bool reserve_low(struct slabd *d, unsigned node, uint32_t level)
{
	const struct slab_node_region *r = sm_region(&d->arena, node);

	return SM_LOAD(&r->nr_reserve_pages) + stocker_pages_out(d, node) +
			       (1u << SLAB_RESERVE_ORDER) <=
		       level &&
	       sm_buddy_largest(&d->arena, node) >= (int)SLAB_RESERVE_ORDER;
}

/* When to stock.  Between bursts (grants paused for RESERVE_QUIET_NS): up to the target.
 * During a burst only the stocker thread, and only once the reserve fell below a quarter
 * of its target: stocking then faults fresh pages in on the CPU slabd's main thread
 * prepares the client's slabs on (or the client's own), and on a 2-CPU host that made a
 * new cache on a fresh arena whose burst the reserve covered 4.4x slower than warm
 * (45-52 against 13 ns an object without the thread stocking meanwhile; 1,000,000
 * objects, --reserve 80M).  Below a quarter the burst outgrows the reserve, and the
 * pages must be faulted in by someone while the client waits: the thread, on a CPU the
 * scheduler picks, rather than the grant.  The reap timer's 20 ms ticks bring the loop
 * back to it. */
static bool reserve_wanted(struct slabd *d, unsigned *node)
{
	bool quiet;

	if (!d->reserve_armed)
		return false;
	quiet = slabd_now_ns() - d->last_any_grant_ns > RESERVE_QUIET_NS;
	if (!quiet && !stocker_running(d))
		return false;
	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++)
		if (reserve_low(d, n, quiet ? d->reserve_target[n] : d->reserve_target[n] / 4)) {
			*node = n;
			return true;
		}
	return false;
}

/* The reserve follows the bursts it is for.  --reserve is its floor; a burst of grants
 * raises the node's target to the pages the burst took, up to 1/8 of the node, so that
 * the next burst of that size finds its pages resident: a new cache of 1,000,000 64-byte
 * objects on a long-running slabd came out 2.2-2.9x warm with the 16 MiB floor, as its
 * pages had been given back to the OS since the last burst.  A burst is counted in
 * windows: grants less than RESERVE_BURST_GAP_NS apart, for at most RESERVE_WINDOW_NS, so
 * that steady growth raises the target to what a window takes, not to all it ever took.
 * Every RESERVE_DECAY_NS the target halves, down to the floor, unless grants took half
 * of it or more meanwhile; what the reserve holds above the target goes back to the free
 * lists, and from there to the OS (commands_punch).  That is jemalloc's dirty-page decay
 * (10 s), with the reserve for the dirty pages kept.  A shrink resets the target to the
 * floor; --reserve 0 turns it all off. */
#define RESERVE_BURST_GAP_NS 1000000000ull
#define RESERVE_WINDOW_NS    2000000000ull
#define RESERVE_DECAY_NS     10000000000ull

static uint32_t reserve_blocks(uint64_t pages)
{
	return (uint32_t)(pages & ~((1ull << SLAB_RESERVE_ORDER) - 1));
}

/* A grant of `pages` pages on node: the burst grows, and the target with it.  Sets
 * last_any_grant_ns. */
static void reserve_note_grant(struct slabd *d, unsigned node, uint64_t pages)
{
	uint64_t now = slabd_now_ns(), want;

	if (now - d->last_any_grant_ns > RESERVE_BURST_GAP_NS ||
	    now - d->burst_start_ns > RESERVE_WINDOW_NS) {
		memset(d->burst_pages, 0, sizeof(d->burst_pages));
		d->burst_start_ns = now;
	}
	d->last_any_grant_ns = now;
	d->burst_pages[node] += pages;
	d->decay_pages[node] += pages;
	if (!d->reserve_floor[node])
		return;
	want = reserve_blocks(d->burst_pages[node] + (1u << SLAB_RESERVE_ORDER) - 1);
	if (want > d->reserve_cap[node]) /* block-aligned */
		want = d->reserve_cap[node];
	if (want > d->reserve_target[node])
		d->reserve_target[node] = (uint32_t)want; /* arena.stats: reserve_target_bytes */
}

/* Reap tick: every RESERVE_DECAY_NS, halve each target above its floor that grants did
 * not use half of since the last look, and give back what the reserve holds above its
 * target (also one adopted from an earlier slabd). */
static void reserve_decay(struct slabd *d, uint64_t now)
{
	bool some = false;

	if (now - d->reserve_decay_ns <= RESERVE_DECAY_NS)
		return;
	d->reserve_decay_ns = now;
	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++) {
		uint32_t t = reserve_blocks(d->reserve_target[n] / 2);

		if (d->reserve_target[n] > d->reserve_floor[n] &&
		    d->decay_pages[n] * 2 < d->reserve_target[n]) {
			d->reserve_target[n] = t > d->reserve_floor[n] ? t : d->reserve_floor[n];
			slabd_log(d, LOG_DEBUG, "node %u reserve target down to %llu MiB", n,
				  (unsigned long long)(d->reserve_target[n] >> (20 - SLAB_PAGE_SHIFT)));
		}
		d->decay_pages[n] = 0;
		some |= SM_LOAD(&sm_region(&d->arena, n)->nr_reserve_pages) +
				stocker_pages_out(d, n) > d->reserve_target[n];
	}
	if (!some)
		return;
	stocker_quiesce(d); /* its blocks back on the free lists: the trim sees them all */
	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++)
		(void)sm_reserve_trim(&d->arena, n, d->reserve_target[n]);
}

void commands_reserve_init(struct slabd *d)
{
	uint64_t pages = 0, t0 = slabd_now_ns();

	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++) {
		uint64_t t = d->opt.reserve >> SLAB_PAGE_SHIFT;
		uint64_t cap = sm_region(&d->arena, n)->nr_nr_pages / 8;
		uint64_t held = SM_LOAD(&sm_region(&d->arena, n)->nr_reserve_pages);

		t = t < cap ? t : cap;
		d->reserve_floor[n] = reserve_blocks(t);
		d->reserve_cap[n] = reserve_blocks(cap);
		/* An adopted arena's reserve may hold more (an earlier slabd's bursts): the
		 * target starts there, and decays as any other. */
		held = reserve_blocks(held < cap ? held : cap);
		d->reserve_target[n] = held > d->reserve_floor[n] ? (uint32_t)held
								   : d->reserve_floor[n];
		d->burst_pages[n] = d->decay_pages[n] = 0;
	}
	d->reserve_decay_ns = slabd_now_ns();
	d->reserve_armed = true;
	for (unsigned n = 0; n < d->arena.hdr->ah_nr_nodes; n++) {
		while (reserve_low(d, n, d->reserve_target[n])) {
			int got = sm_reserve_stock(&d->arena, n);

			if (got <= 0)
				break;
			pages += (uint64_t)got;
		}
	}
	if (pages)
		slabd_log(d, LOG_DEBUG, "stocked the node reserves: %llu MiB in %.1f ms",
			  (unsigned long long)(pages >> (20 - SLAB_PAGE_SHIFT)),
			  (double)(slabd_now_ns() - t0) / 1e6);
}

bool slabd_restock(struct slabd *d)
{
	unsigned node;

	/* Slabs for caches first: clients may be waiting for those.  A reserve block a step
	 * otherwise; a lock error disarms the reserve (until the next grant) rather than
	 * spin on it. */
	stocker_collect(d);
	if (d->nr_restock)
		cache_restock_step(d);
	else if (reserve_wanted(d, &node) &&
		 (stocker_running(d) ? stocker_feed(d, node) : sm_reserve_stock(&d->arena, node)) < 0)
		d->reserve_armed = false;
	/* With every stocker slot out, the completion event brings the loop back. */
	return d->nr_restock > 0 ||
	       (reserve_wanted(d, &node) && (!stocker_running(d) || stocker_has_room(d)));
}

/* A node found full: the blocks out with the stocker go back to the free lists (the
 * page allocator takes the listed reserve back itself, sm_do_pages_take), and the
 * reserve is not stocked again until a grant finds enough memory.  Returns whether any
 * came back. */
static bool reclaim_reserve(struct slabd *d, unsigned node)
{
	bool some = stocker_pages_out(d, node) != 0;

	if (some)
		stocker_quiesce(d);
	d->reserve_armed = false;
	return some;
}

/* Internal (libslab): fresh slabs for a cache the client has open. */
static json_t *cmd_slab_grant(struct conn *c, json_t *req, struct err *e)
{
	struct slabd *d = c->d;
	uint64_t id, node, nr;
	struct slab_cache_desc *cd;
	uint32_t cap, *streak;
	bool drained = false;
	int rc;

	if (!json_is_integer(json_object_get(req, "cache")))
		return fail(e, EINVAL, "'cache' (the cache id) is required");
	if (need_client(c, e) || get_uint(req, "cache", d->arena.hdr->ah_nr_caches - 1, &id, e) ||
	    get_uint(req, "node", d->arena.hdr->ah_nr_nodes - 1, &node, e) ||
	    get_uint(req, "nr", 64, &nr, e))
		return NULL;
	if (!c->refs[id])
		return fail(e, EPERM, "cache %llu is not open on this connection",
			    (unsigned long long)id);
	cd = sm_cache(&d->arena, id);
	if (cd->c_node >= 0)
		node = (uint64_t)cd->c_node;
	/* Grant in growing batches (the streak: up to 4 MiB or 256 slabs) so a cache that is
	 * filling up costs few round trips: at most GRANT_SYNC of them while the client
	 * waits, the rest by the restock right after; what a burst leaves unused goes back
	 * over the next idle seconds (sm_cache_trim). */
	streak = &d->track[id].grant_streak;
	cap = (uint32_t)((4u << 20) >> (SLAB_PAGE_SHIFT + cd->c_order));
	if (cap > SM_GROW_MAX)
		cap = SM_GROW_MAX;
	if (cap < 1)
		cap = 1;
	*streak = *streak ? *streak * 2 : 1;
	if (*streak > cap)
		*streak = cap;
	if (!nr)
		nr = 1;
	/* The restock may have put slabs there since the client looked: it takes those. */
	if (SM_LOAD(&cd->c_nodes[node].n_free.l_count) >= nr) {
		rc = 0;
	} else {
		if (nr < *streak) /* the client waits for GRANT_SYNC at most: the rest restocks */
			nr = *streak < GRANT_SYNC ? *streak : GRANT_SYNC;
		rc = sm_cache_grow(&d->arena, (uint32_t)id, (unsigned)node, (unsigned)nr);
		/* Blocks out with the stocker are free memory: exhausted only once back. */
		if (rc == -ENOMEM && reclaim_reserve(d, (unsigned)node)) {
			drained = true;
			rc = sm_cache_grow(&d->arena, (uint32_t)id, (unsigned)node, (unsigned)nr);
		}
	}
	if (rc == -EDQUOT)
		return fail(e, EDQUOT, "cache '%s' reached its quota of %llu objects", cd->c_name,
			    (unsigned long long)cd->c_max_objects);
	if (rc == -ENOMEM) {
		d->reserve_armed = false; /* stocking would only take what grants need */
		return fail(e, ENOMEM, "arena exhausted on node %llu", (unsigned long long)node);
	}
	if (rc < 0)
		return fail(e, EIO, "cannot grow cache '%s': %s", cd->c_name, strerror(-rc));
	reserve_note_grant(d, (unsigned)node, (uint64_t)(rc > 0 ? rc : 0) << cd->c_order);
	d->track[id].last_grant_ns = d->last_any_grant_ns;
	/* Stock the reserve again, unless this grant needed it: then memory is short, and
	 * stocking would only take what the next grant needs, until a grant finds enough. */
	d->reserve_armed = !drained;
	schedule_restock(d, (uint32_t)id, (unsigned)node);
	return json_pack("{s:i}", "granted", rc);
}

/* Internal (libslab): one more block for the client's magazines.  Order 3 (32 KiB): a
 * magazine of a small-object cache may grow to 1008 entries (8 KiB, magazine.h), and a
 * block should hold a few. */
#define AREA_BLOCK_ORDER 3u
static json_t *cmd_area_grow(struct conn *c, json_t *req, struct err *e)
{
	uint64_t node;
	uint32_t block;

	if (need_client(c, e) || get_uint(req, "node", c->d->arena.hdr->ah_nr_nodes - 1, &node, e))
		return NULL;
	if (sm_client(&c->d->arena, c->slot)->cl_area_pages >= 4096)
		return fail(e, ENOMEM, "client area limit reached (16 MiB of magazines)");
	if (sm_area_grow(&c->d->arena, c->slot, (unsigned)node, AREA_BLOCK_ORDER, &block)) {
		/* the blocks out with the stocker are free memory too */
		reclaim_reserve(c->d, (unsigned)node);
		if (sm_area_grow(&c->d->arena, c->slot, (unsigned)node, AREA_BLOCK_ORDER, &block))
			return fail(e, ENOMEM, "arena exhausted on node %llu",
				    (unsigned long long)node);
	}
	return json_pack("{s:i}", "block", (int)block);
}

/* Internal (libslab, slab_pool_disconnect): the client flushed and is leaving on purpose;
 * when its socket closes its slot is freed even though its process lives on. */
static json_t *cmd_client_bye(struct conn *c, json_t *req, struct err *e)
{
	(void)req;
	if (need_client(c, e))
		return NULL;
	c->bye = true;
	return json_object();
}

static const struct command {
	const char *name;
	json_t *(*fn)(struct conn *c, json_t *req, struct err *e);
} commands[] = {
	{ "hello", cmd_hello },
	{ "cache.create", cmd_cache_create },
	{ "cache.open", cmd_cache_open },
	{ "cache.close", cmd_cache_close },
	{ "cache.destroy", cmd_cache_destroy },
	{ "cache.list", cmd_cache_list },
	{ "cache.stats", cmd_cache_stats },
	{ "cache.shrink", cmd_cache_shrink },
	{ "cache.validate", cmd_cache_validate },
	{ "cache.tune", cmd_cache_tune },
	{ "cache.reclaim", cmd_cache_reclaim },
	{ "arena.stats", cmd_arena_stats },
	{ "clients.list", cmd_clients_list },
	{ "slab.grant", cmd_slab_grant },
	{ "area.grow", cmd_area_grow },
	{ "client.bye", cmd_client_bye },
};

bool commands_dispatch(struct conn *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req, *id = NULL, *cmd, *r = NULL;
	struct err e = { 0 };
	const struct command *found = NULL;
	int fd_reply = 0;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return true; /* blank lines are ignored */
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		fail(&e, EBADMSG, req ? "a request is a JSON object" : "malformed JSON: %s", jerr.text);
		goto reply;
	}
	id = json_object_get(req, "id");
	if (id)
		json_incref(id);
	cmd = json_object_get(req, "cmd");
	if (!json_is_string(cmd)) {
		fail(&e, EINVAL, "'cmd' (a string) is required");
		goto reply;
	}
	for (size_t i = 0; i < SM_ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, json_string_value(cmd)))
			found = &commands[i];
	if (!found) {
		fail(&e, ENOSYS, "unknown command '%.64s'", json_string_value(cmd));
		goto reply;
	}
	if (adopt_window_holds(c, found->name, req)) {
		/* Not now: server.c keeps the line and runs it when the window closes. */
		c->deferred = true;
		json_decref(req);
		json_decref(id);
		return true;
	}
	r = found->fn(c, req, &e);
	fd_reply = r && found->fn == cmd_hello && c->role == CONN_CLIENT &&
		   !json_object_get(r, "resumed"); /* a resuming client has the arena */
reply:
	json_decref(req);
	{
		/* "id" and "ok" first: easier to read in a terminal. */
		json_t *out = json_object();
		json_object_set_new(out, "id", id ? id : json_null());
		json_object_set_new(out, "ok", json_boolean(r != NULL));
		if (r) {
			json_object_update(out, r);
			json_decref(r);
		} else {
			json_t *msg = json_string(e.msg);

			/* "%.64s" or the message buffer may have cut a UTF-8 sequence, and
			 * jansson refuses invalid UTF-8: keep the message, lose the bytes. */
			if (!msg) {
				for (unsigned char *s = (unsigned char *)e.msg; *s; s++)
					if (*s >= 0x80)
						*s = '?';
				msg = json_string(e.msg);
			}
			json_object_set_new(out, "error", json_string(slabd_errno_name(e.code)));
			json_object_set_new(out, "message", msg);
			if (e.extra) {
				json_object_update(out, e.extra);
				json_decref(e.extra);
			}
		}
		r = out;
	}
	if (fd_reply)
		return conn_reply_fd(c, r) == 0;
	conn_reply(c, r);
	return true;
}
