/* test_lifecycle.c - guards the cache lifecycle and the wrong-free rules of DESIGN.md
 * against a real slabd, through libslab:
 *
 *   - destroy (kmem_cache_destroy): -EBUSY while an object is allocated, leaving the cache
 *     intact (listed, stats, reopenable, alloc/free work, the object's bytes untouched);
 *     0 once freed, and the cache is gone;
 *   - destroy while another process holds the cache: 0 (pending), listed as "dying", no
 *     new opens or creates (-EBUSY); the holder's close runs shutdown_cache and the cache
 *     disappears; the name is reusable with another geometry;
 *   - create/open errors: -EEXIST (other geometry), -ENOENT, -EINVAL (bad names, size 0,
 *     align 3, ...), from the library and from the daemon itself; nothing is created;
 *   - every wrong free of DESIGN.md returns -EINVAL, changes nothing, and is counted
 *     (invalid_free / double_free, exactly); validate stays clean;
 *   - slab_alloc_bulk gets all n; slab_free_bulk is all or nothing (with SLAB_DEBUG also
 *     against an already freed object);
 *   - slab_kmalloc / slab_kfree / slab_ksize over sizes 1..8192 and their error cases;
 *   - fork(): the child re-registers (a new client pid in clients.list), allocates and frees
 *     through the inherited handle without touching the parent's magazines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define CHILD_ALARM 120u

/* Exit codes of the helper processes. */
enum {
	EX_OK = 0,
	EX_USAGE = 2,
	EX_CONNECT = 10,
	EX_OPEN,
	EX_ALLOC,
	EX_FREE,
	EX_CLOSE,
	EX_PIPE,
	EX_PARENT_OBJ,   /* a parent's object is unreadable or changed in the child */
	EX_TWICE,        /* the child got an object the parent holds */
	EX_PATTERN,      /* the child's own objects changed under it */
};

static struct th_daemon daemon_;

static const struct slab_cache_config cfg64 = { .size = 64, .node = SLAB_NODE_LOCAL };

static int setup(void **state)
{
	(void)state;
	return th_start(&daemon_, NULL);
}

/* A test that failed half-way leaves its daemon to this; a test that ends normally has
 * already checked th_stop() == 0 itself. */
static int teardown(void **state)
{
	(void)state;
	th_teardown(&daemon_);
	return 0;
}

static void assert_not_listed(const char *name)
{
	json_t *c = th_cache_listed(&daemon_, name);

	if (c) {
		char *s = json_dumps(c, JSON_COMPACT);
		fprintf(stderr, "still listed: %s\n", s ? s : "?");
		free(s);
		json_decref(c);
		fail_msg("cache '%s' is still listed", name);
	}
	assert_null(th_cache_stats(&daemon_, name));
}

/* The cache's cache.list entry must have this state; returns its refcount. */
static long long assert_listed(const char *name, const char *state)
{
	json_t *c = th_cache_listed(&daemon_, name);
	long long refs;

	if (!c)
		fail_msg("cache '%s' is not listed", name);
	if (strcmp(th_jstr(c, "state"), state))
		fail_msg("cache '%s' is in state '%s', want '%s'", name, th_jstr(c, "state"), state);
	refs = th_jint(c, "refcount");
	json_decref(c);
	return refs;
}

/* ---- destroy with an object allocated ----------------------------------------------- */

static void test_destroy_busy(void **state)
{
	slab_pool *pool;
	slab_cache *c;
	unsigned char *obj, *o2;
	json_t *r;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "busy", &cfg64, &c));
	obj = E_PTR(slab_alloc(c));
	memset(obj, 0xab, 64);

	/* The handle is closed whatever destroy returns. */
	E_IS(slab_cache_destroy(c), -EBUSY);
	assert_int_equal(assert_listed("busy", "live"), 0);
	assert_int_equal(th_stat(&daemon_, "busy", "in_use"), 1);

	/* The daemon says the same, with the count, to anyone. */
	r = th_request(&daemon_, "{\"id\":5,\"cmd\":\"cache.destroy\",\"name\":\"busy\"}");
	th_assert_error(r, "EBUSY", "cache.destroy of a cache with an object");
	assert_int_equal(th_jint(r, "id"), 5);
	assert_int_equal(th_jint(r, "objects"), 1);
	json_decref(r);
	assert_listed("busy", "live");

	/* Intact: open again, allocate and free, the object still holds its bytes. */
	E(slab_cache_open(pool, "busy", &c));
	o2 = E_PTR(slab_alloc(c));
	assert_ptr_not_equal(o2, obj);
	memset(o2, 0xcd, 64);
	E(slab_free(c, o2));
	for (int i = 0; i < 64; i++)
		assert_int_equal(obj[i], 0xab);
	assert_int_equal(th_stat(&daemon_, "busy", "in_use"), 1);
	E(slab_free(c, obj));
	assert_int_equal(th_stat(&daemon_, "busy", "in_use"), 0);

	E(slab_cache_destroy(c));
	assert_not_listed("busy");
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- destroy while another process holds the cache --------------------------------- */

/* --holder SOCKET NAME READYFD GOFD: open NAME, allocate and free one object (so the close
 * has a magazine to flush), say 'R', wait for a byte, close, exit. */
static int holder_main(char **argv)
{
	const char *sock = argv[2], *name = argv[3];
	int ready = atoi(argv[4]), go = atoi(argv[5]), rc;
	slab_pool *pool;
	slab_cache *c;
	char ch;
	void *o;

	alarm(CHILD_ALARM);
	rc = slab_pool_connect(sock, &pool);
	if (rc) {
		fprintf(stderr, "holder: slab_pool_connect: %s\n", slab_strerror(rc));
		return EX_CONNECT;
	}
	rc = slab_cache_open(pool, name, &c);
	if (rc) {
		fprintf(stderr, "holder: slab_cache_open(%s): %s\n", name, slab_strerror(rc));
		return EX_OPEN;
	}
	o = slab_alloc(c);
	if (!o) {
		fprintf(stderr, "holder: slab_alloc: %s\n", slab_strerror(errno));
		return EX_ALLOC;
	}
	memset(o, 0x5a, cfg64.size);
	rc = slab_free(c, o);
	if (rc) {
		fprintf(stderr, "holder: slab_free: %s\n", slab_strerror(rc));
		return EX_FREE;
	}
	if (th_write_all(ready, "R", 1) || th_read_all(go, &ch, 1, -1)) {
		fprintf(stderr, "holder: pipe: %s\n", strerror(errno));
		return EX_PIPE;
	}
	rc = slab_cache_close(c);
	if (rc) {
		fprintf(stderr, "holder: slab_cache_close: %s\n", slab_strerror(rc));
		return EX_CLOSE;
	}
	slab_pool_disconnect(pool);
	return EX_OK;
}

static void test_destroy_pending(void **state)
{
	struct slab_cache_config cfg128 = { .size = 128, .node = SLAB_NODE_LOCAL };
	int ready[2], go[2];
	char a_ready[16], a_go[16], ch;
	slab_pool *pool, *pool2;
	slab_cache *c, *c2 = NULL;
	pid_t pid;
	void *o;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "shared", &cfg64, &c));
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	snprintf(a_ready, sizeof(a_ready), "%d", ready[1]);
	snprintf(a_go, sizeof(a_go), "%d", go[0]);
	pid = th_spawn_self((const char *const[]){ "--holder", daemon_.socket, "shared", a_ready,
						   a_go, NULL },
			    (const int[]){ ready[1], go[0] }, 2);
	assert_true(pid > 0);
	close(ready[1]);
	close(go[0]);
	if (th_read_all(ready[0], &ch, 1, -1) || ch != 'R')
		fail_msg("the holder did not get ready (exit %d)", th_wait_child(pid, 10));
	assert_int_equal(assert_listed("shared", "live"), 2);

	/* Pending: our reference is dropped, the holder's keeps the cache alive. */
	E(slab_cache_destroy(c));
	assert_int_equal(assert_listed("shared", "dying"), 1);

	/* A third connection can neither open nor re-create it. */
	E(slab_pool_connect(daemon_.socket, &pool2));
	E_IS(slab_cache_open(pool2, "shared", &c2), -EBUSY);
	assert_null(c2);
	E_IS(slab_cache_create(pool2, "shared", &cfg64, &c2), -EBUSY);
	E_IS(slab_cache_create(pool2, "shared", &cfg128, &c2), -EBUSY);
	assert_int_equal(assert_listed("shared", "dying"), 1);

	/* The holder's close is the last reference: shutdown_cache runs. */
	assert_int_equal(th_write_all(go[1], "G", 1), 0);
	assert_int_equal(th_wait_child(pid, 30), 0);
	close(ready[0]);
	close(go[1]);
	assert_not_listed("shared");

	/* The name is free again, for another geometry. */
	E(slab_cache_create(pool2, "shared", &cfg128, &c2));
	assert_int_equal(assert_listed("shared", "live"), 1);
	assert_int_equal(th_stat(&daemon_, "shared", "object_size"), 128);
	assert_int_equal(th_stat(&daemon_, "shared", "in_use"), 0);
	o = E_PTR(slab_alloc(c2));
	memset(o, 1, 128);
	E(slab_free(c2, o));
	E(slab_cache_destroy(c2));
	assert_not_listed("shared");

	slab_pool_disconnect(pool2);
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- create / open errors ----------------------------------------------------------- */

static void test_create_errors(void **state)
{
	static const char *const bad_names[] = {
		"", "has space", "a/b", "tab\there", "caf\xc3\xa9", "new\nline", "semi;colon",
		"quote\"", "0123456789012345678901234567890123456789012345678901234567890123",
	};
	char name63[64];
	slab_pool *pool;
	slab_cache *c1, *c2, *c3 = (slab_cache *)&c3;
	struct slab_cache_config cfg = cfg64;
	json_t *r;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "geo", &cfg64, &c1));

	/* Same name, other geometry. */
	cfg.size = 128;
	E_IS(slab_cache_create(pool, "geo", &cfg, &c3), -EEXIST);
	assert_null(c3);
	cfg = cfg64;
	cfg.align = 64;
	E_IS(slab_cache_create(pool, "geo", &cfg, &c3), -EEXIST);
	cfg = cfg64;
	cfg.flags = SLAB_POISON;
	E_IS(slab_cache_create(pool, "geo", &cfg, &c3), -EEXIST);
	/* Same geometry: opens it (a second reference). */
	E(slab_cache_create(pool, "geo", &cfg64, &c2));
	assert_int_equal(assert_listed("geo", "live"), 2);

	E_IS(slab_cache_open(pool, "missing", &c3), -ENOENT);
	assert_null(c3);

	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		int rc = slab_cache_create(pool, bad_names[i], &cfg64, &c3);
		if (rc != -EINVAL)
			fail_msg("create of bad name #%zu: %d (%s), want -EINVAL", i, rc,
				 slab_strerror(rc));
		rc = slab_cache_open(pool, bad_names[i], &c3);
		if (rc != -EINVAL)
			fail_msg("open of bad name #%zu: %d (%s), want -EINVAL", i, rc,
				 slab_strerror(rc));
	}
	E_IS(slab_cache_create(pool, NULL, &cfg64, &c3), -EINVAL);
	E_IS(slab_cache_open(pool, NULL, &c3), -EINVAL);
	E_IS(slab_cache_create(pool, "cfgless", NULL, &c3), -EINVAL);

	cfg = cfg64;
	cfg.size = 0;
	E_IS(slab_cache_create(pool, "size0", &cfg, &c3), -EINVAL);
	cfg = cfg64;
	cfg.align = 3;
	E_IS(slab_cache_create(pool, "align3", &cfg, &c3), -EINVAL);
	cfg.align = 24;
	E_IS(slab_cache_create(pool, "align24", &cfg, &c3), -EINVAL);
	cfg = cfg64;
	cfg.size = (256u << 10) + 1;
	E_IS(slab_cache_create(pool, "toobig", &cfg, &c3), -EINVAL);
	cfg = cfg64;
	cfg.flags = 0x1000;
	E_IS(slab_cache_create(pool, "badflags", &cfg, &c3), -EINVAL);
	cfg = cfg64;
	cfg.node = 4096;
	E_IS(slab_cache_create(pool, "badnode", &cfg, &c3), -EINVAL);

	/* The daemon checks for itself (the library's checks are not the only guard). */
	th_expect_error(&daemon_, "{\"id\":1,\"cmd\":\"cache.create\",\"name\":\"bad name\",\"size\":64}",
			"EINVAL", "daemon: bad name");
	th_expect_error(&daemon_, "{\"id\":2,\"cmd\":\"cache.create\",\"name\":\"z\",\"size\":0}",
			"EINVAL", "daemon: size 0");
	th_expect_error(&daemon_, "{\"id\":3,\"cmd\":\"cache.create\",\"name\":\"z\",\"size\":64,\"align\":3}",
			"EINVAL", "daemon: align 3");
	th_expect_error(&daemon_, "{\"id\":4,\"cmd\":\"cache.create\",\"size\":64}",
			"EINVAL", "daemon: no name");
	th_expect_error(&daemon_, "{\"id\":5,\"cmd\":\"cache.create\",\"name\":\"z\",\"size\":-64}",
			"EINVAL", "daemon: negative size");
	th_expect_error(&daemon_, "{\"id\":6,\"cmd\":\"cache.create\",\"name\":\"z\",\"size\":\"64\"}",
			"EINVAL", "daemon: size as a string");
	th_expect_error(&daemon_, "{\"id\":7,\"cmd\":\"cache.create\",\"name\":\"geo\",\"size\":128}",
			"EEXIST", "daemon: other geometry");
	th_expect_error(&daemon_, "{\"id\":8,\"cmd\":\"cache.stats\",\"name\":\"missing\"}",
			"ENOENT", "daemon: stats of a missing cache");

	/* A 63-byte name is fine. */
	memset(name63, 'n', 63);
	name63[63] = 0;
	E(slab_cache_create(pool, name63, &cfg64, &c3));
	E(slab_cache_destroy(c3));
	assert_not_listed(name63);

	/* Nothing was created by the failures; "geo" is unchanged. */
	r = th_request(&daemon_, "{\"id\":9,\"cmd\":\"cache.list\"}");
	th_assert_ok(r, "cache.list");
	assert_int_equal(json_array_size(json_object_get(r, "caches")), 1);
	json_decref(r);
	assert_int_equal(th_stat(&daemon_, "geo", "object_size"), 64);
	assert_int_equal(th_stat(&daemon_, "geo", "align"), 8);

	E(slab_cache_close(c2));
	assert_int_equal(assert_listed("geo", "live"), 1);
	E(slab_cache_destroy(c1));
	assert_not_listed("geo");
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- wrong frees -------------------------------------------------------------------- */

static void test_wrong_frees(void **state)
{
	slab_pool *pool;
	slab_cache *c, *other;
	unsigned char *a, *b, *x, *p, *p2, *heap;
	int local = 0, nr_invalid = 0, nr_double = 0, other_invalid = 0;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "wf", &cfg64, &c));
	E(slab_cache_create(pool, "wf-other", &cfg64, &other));
	a = E_PTR(slab_alloc(c));
	b = E_PTR(slab_alloc(c));
	x = E_PTR(slab_alloc(other));
	memset(a, 0xaa, 64);
	memset(b, 0xbb, 64);
	memset(x, 0xcc, 64);
	heap = malloc(64);
	assert_non_null(heap);

	E_IS(slab_free(c, NULL), -EINVAL);                       /* NULL */
	nr_invalid++;
	E_IS(slab_free(c, &local), -EINVAL);                     /* the stack */
	nr_invalid++;
	E_IS(slab_free(c, heap), -EINVAL);                       /* malloc'd */
	nr_invalid++;
	E_IS(slab_free(c, slab_pointer(pool, 0)), -EINVAL);      /* the arena header */
	nr_invalid++;
	E_IS(slab_free(c, a + 8), -EINVAL);                      /* inside an object */
	nr_invalid++;
	E_IS(slab_free(c, a + 63), -EINVAL);
	nr_invalid++;
	E_IS(slab_free(c, x), -EINVAL);                          /* another cache's */
	nr_invalid++;
	E_IS(slab_free(other, b), -EINVAL);
	other_invalid++;
	E(slab_free(c, a));
	E_IS(slab_free(c, a), -EINVAL);                          /* freshest double free */
	nr_double++;
	free(heap);

	/* Nothing changed: a is in the magazine once, b and x are intact. */
	p = E_PTR(slab_alloc(c));
	p2 = E_PTR(slab_alloc(c));
	assert_ptr_not_equal(p, p2);
	assert_ptr_not_equal(p2, b);
	assert_ptr_not_equal(p, b);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(b[i], 0xbb);
		assert_int_equal(x[i], 0xcc);
	}
	assert_int_equal(th_stat(&daemon_, "wf", "in_use"), 3);
	assert_int_equal(th_stat(&daemon_, "wf-other", "in_use"), 1);

	/* Counted, the live magazine's counters included... */
	assert_int_equal(th_counter(&daemon_, "wf", "invalid_free"), nr_invalid);
	assert_int_equal(th_counter(&daemon_, "wf", "double_free"), nr_double);
	assert_int_equal(th_counter(&daemon_, "wf-other", "invalid_free"), other_invalid);
	assert_int_equal(th_counter(&daemon_, "wf-other", "double_free"), 0);

	E(slab_free(c, p));
	E(slab_free(c, p2));
	E(slab_free(c, b));
	E(slab_free(other, x));
	assert_int_equal(th_stat(&daemon_, "wf", "in_use"), 0);

	/* ...and once folded into the cache by the close. */
	E(slab_cache_close(c));
	E(slab_cache_close(other));
	assert_int_equal(th_counter(&daemon_, "wf", "invalid_free"), nr_invalid);
	assert_int_equal(th_counter(&daemon_, "wf", "double_free"), nr_double);
	assert_int_equal(th_counter(&daemon_, "wf-other", "invalid_free"), other_invalid);
	assert_int_equal(th_counter(&daemon_, "wf-other", "double_free"), 0);
	assert_int_equal(th_counter(&daemon_, "wf", "alloc_fastpath") +
			 th_counter(&daemon_, "wf", "alloc_slowpath"), 4);
	assert_int_equal(th_counter(&daemon_, "wf", "free_fastpath") +
			 th_counter(&daemon_, "wf", "free_slowpath"), 4);
	assert_int_equal(th_stat(&daemon_, "wf", "in_use"), 0);
	assert_int_equal(th_stat(&daemon_, "wf-other", "in_use"), 0);
	assert_int_equal(th_validate(&daemon_, "wf"), 0);
	assert_int_equal(th_validate(&daemon_, "wf-other"), 0);
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- bulk ----------------------------------------------------------------------------- */

static int cmp_ptr(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t)*(void *const *)x, b = (uintptr_t)*(void *const *)y;

	return a < b ? -1 : a > b;
}

#define NR_BULK 1000

static void test_bulk(void **state)
{
	static void *objs[NR_BULK], *sorted[NR_BULK], *bad[64];
	slab_pool *pool;
	slab_cache *c;
	int local = 0, refused = 0;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "bulk", &cfg64, &c));
	E(slab_alloc_bulk(c, 0, NULL));
	E(slab_free_bulk(c, 0, NULL));
	E(slab_alloc_bulk(c, NR_BULK, objs));
	for (int i = 0; i < NR_BULK; i++) {
		assert_non_null(objs[i]);
		assert_int_not_equal(slab_offset(pool, objs[i]), UINT64_MAX);
		assert_true(slab_ksize(pool, objs[i]) >= 64);
		memset(objs[i], i & 0xff, 64);
	}
	memcpy(sorted, objs, sizeof(objs));
	qsort(sorted, NR_BULK, sizeof(void *), cmp_ptr);
	for (int i = 1; i < NR_BULK; i++)
		if ((uintptr_t)sorted[i] - (uintptr_t)sorted[i - 1] < 64)
			fail_msg("slab_alloc_bulk: objects %p and %p overlap", sorted[i - 1], sorted[i]);
	assert_int_equal(th_stat(&daemon_, "bulk", "in_use"), NR_BULK);

	/* One bad pointer: nothing is freed. */
	memcpy(bad, objs, sizeof(bad));
	bad[17] = (char *)objs[17] + 8;
	E_IS(slab_free_bulk(c, 64, bad), -EINVAL);
	refused++;
	memcpy(bad, objs, sizeof(bad));
	bad[63] = &local;
	E_IS(slab_free_bulk(c, 64, bad), -EINVAL);
	refused++;
	memcpy(bad, objs, sizeof(bad));
	bad[0] = NULL;
	E_IS(slab_free_bulk(c, 64, bad), -EINVAL);
	refused++;
	memcpy(bad, objs, sizeof(bad));
	bad[40] = objs[3];                                /* the same object twice */
	E_IS(slab_free_bulk(c, 64, bad), -EINVAL);
	refused++;
	assert_int_equal(th_stat(&daemon_, "bulk", "in_use"), NR_BULK);
	for (int i = 0; i < NR_BULK; i++)
		for (int k = 0; k < 64; k++)
			if (((unsigned char *)objs[i])[k] != (i & 0xff))
				fail_msg("object %d changed after a refused bulk free", i);

	/* Every one of them can still be freed, all at once. */
	E(slab_free_bulk(c, NR_BULK, objs));
	assert_int_equal(th_stat(&daemon_, "bulk", "in_use"), 0);
	E(slab_cache_close(c));
	assert_int_equal(th_counter(&daemon_, "bulk", "invalid_free") +
			 th_counter(&daemon_, "bulk", "double_free"), refused);
	assert_int_equal(th_validate(&daemon_, "bulk"), 0);

	/* SLAB_DEBUG knows a cached (already freed) object: a bulk free naming one is
	 * refused whole, even when it is not the freshest free. */
	{
		struct slab_cache_config dcfg = cfg64;
		slab_cache *dc;
		void *a, *b, *x;

		dcfg.flags = SLAB_DEBUG;
		E(slab_cache_create(pool, "bulk-debug", &dcfg, &dc));
		a = E_PTR(slab_alloc(dc));
		b = E_PTR(slab_alloc(dc));
		x = E_PTR(slab_alloc(dc));
		E(slab_free(dc, a));
		E(slab_free(dc, x));
		bad[0] = b;
		bad[1] = a;
		E_IS(slab_free_bulk(dc, 2, bad), -EINVAL);
		assert_int_equal(th_stat(&daemon_, "bulk-debug", "in_use"), 1); /* b is still ours */
		bad[0] = b;
		E(slab_free_bulk(dc, 1, bad));
		assert_int_equal(th_stat(&daemon_, "bulk-debug", "in_use"), 0);
		E(slab_cache_destroy(dc));
	}
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- kmalloc -------------------------------------------------------------------------- */

#define KM_RING 64

/* ---- slab_offset / slab_pointer: slab.h's inline copies and the exported functions -- */

/* The exported symbols, called through pointers the compiler cannot see through (slab.h
 * inlines its own copies of the two where it can). */
static uint64_t (*volatile offset_fn)(slab_pool *, const void *) = slab_offset;
static void *(*volatile pointer_fn)(slab_pool *, uint64_t) = slab_pointer;

static void test_offsets(void **state)
{
	slab_pool *pool, *pool2;
	slab_cache *c;
	unsigned char *o, *base;
	uint64_t size, off;
	json_t *r;
	int local = 0;

	(void)state;
	r = th_request(&daemon_, "{\"cmd\": \"arena.stats\"}");
	th_assert_ok(r, "arena.stats");
	size = (uint64_t)th_jint(r, "size");
	json_decref(r);
	assert_true(size >= 4u << 20);
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_pool_connect(daemon_.socket, &pool2));
	E(slab_cache_create(pool, "offsets", &cfg64, &c));
	o = slab_alloc(c);
	assert_non_null(o);
	base = slab_pointer(pool, 0);
	assert_non_null(base);
	assert_ptr_equal(pointer_fn(pool, 0), base);

	/* In the arena: a round trip, the same in both copies, and the same object (the same
	 * bytes) through a second mapping. */
	off = slab_offset(pool, o);
	assert_int_equal(off, (uint64_t)(o - base));
	assert_int_equal(offset_fn(pool, o), off);
	assert_ptr_equal(slab_pointer(pool, off), o);
	assert_ptr_equal(pointer_fn(pool, off), o);
	memset(o, 0x5a, 64);
	assert_int_equal(((unsigned char *)slab_pointer(pool2, off))[63], 0x5a);
	assert_int_equal(slab_offset(pool, base + size - 1), size - 1);
	assert_int_equal(offset_fn(pool, base + size - 1), size - 1);
	assert_ptr_equal(slab_pointer(pool, size - 1), base + size - 1);
	assert_ptr_equal(pointer_fn(pool, size - 1), base + size - 1);

	/* Outside it: UINT64_MAX and NULL from both. */
	assert_int_equal(slab_offset(pool, base + size), UINT64_MAX);
	assert_int_equal(offset_fn(pool, base + size), UINT64_MAX);
	assert_int_equal(slab_offset(pool, base - 1), UINT64_MAX);
	assert_int_equal(offset_fn(pool, base - 1), UINT64_MAX);
	assert_int_equal(slab_offset(pool, NULL), UINT64_MAX);
	assert_int_equal(offset_fn(pool, NULL), UINT64_MAX);
	assert_int_equal(slab_offset(pool, &local), UINT64_MAX);
	assert_int_equal(offset_fn(pool, &local), UINT64_MAX);
	assert_null(slab_pointer(pool, size));
	assert_null(pointer_fn(pool, size));
	assert_null(slab_pointer(pool, UINT64_MAX));
	assert_null(pointer_fn(pool, UINT64_MAX));

	E(slab_free(c, o));
	E(slab_cache_destroy(c));
	slab_pool_disconnect(pool2);
	slab_pool_disconnect(pool);
}

static void test_kmalloc(void **state)
{
	struct {
		unsigned char *p;
		size_t         len;
		unsigned char  tag;
	} ring[KM_RING] = { { 0 } };
	slab_pool *pool, *pool2;
	slab_cache *plain;
	unsigned char *p, *x;
	size_t ks;
	int local = 0;
	json_t *r, *cache;
	size_t i;
	long long in_use = 0, classes = 0;
	static const size_t exact[][2] = { { 1, 8 }, { 96, 96 }, { 161, 192 }, { 0, 8 },
					   { 193, 256 }, { 2049, 4096 } };

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	for (size_t size = 1; size <= 8192; size++) {
		unsigned slot = (unsigned)(size % KM_RING);

		p = E_PTR(slab_kmalloc(pool, size));
		ks = slab_ksize(pool, p);
		if (ks < size || ks > 8192)
			fail_msg("slab_ksize(kmalloc(%zu)) = %zu", size, ks);
		assert_int_not_equal(slab_offset(pool, p), UINT64_MAX);
		if (ring[slot].p) {
			for (size_t k = 0; k < ring[slot].len; k++)
				if (ring[slot].p[k] != ring[slot].tag)
					fail_msg("kmalloc object of %zu usable bytes changed at %zu",
						 ring[slot].len, k);
			E(slab_kfree(pool, ring[slot].p));
		}
		/* All ksize bytes are usable: a neighbour's check would catch an overrun. */
		ring[slot].p = p;
		ring[slot].len = ks;
		ring[slot].tag = (unsigned char)(size * 7 + 1);
		memset(p, ring[slot].tag, ks);
	}
	assert_int_equal(slab_ksize(pool, ring[1].p), 8192); /* kmalloc(8129): kmalloc-8192 */
	for (i = 0; i < KM_RING; i++)
		E(slab_kfree(pool, ring[i].p));

	/* Exact classes, including 96 and 192; kmalloc(0) is the smallest class (size - 1
	 * wraps: the slow path's case); the first sizes of the bit-scan classes. */
	for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		p = E_PTR(slab_kmalloc(pool, exact[i][0]));
		if (slab_ksize(pool, p) != exact[i][1])
			fail_msg("slab_ksize(kmalloc(%zu)) = %zu, want %zu", exact[i][0],
				 slab_ksize(pool, p), exact[i][1]);
		/* Inside the object: refused, nothing changes. */
		E_IS(slab_kfree(pool, p + 1), -EINVAL);
		E(slab_kfree(pool, p));
	}
	p = E_PTR(slab_kmalloc(pool, 4097));
	assert_int_equal(slab_ksize(pool, p), 8192);
	/* No pool: refused, the object stays allocated. */
	E_IS(slab_kfree(NULL, p), -EINVAL);
	assert_int_equal(th_stat(&daemon_, "kmalloc-8192", "in_use"), 1);
	E(slab_kfree(pool, p));
	errno = 0;
	assert_null(slab_kmalloc(NULL, 64));
	assert_int_equal(errno, EINVAL);

	E(slab_kfree(pool, NULL));
	E_IS(slab_kfree(pool, &local), -EINVAL);
	assert_int_equal(slab_ksize(pool, &local), 0);
	assert_int_equal(slab_ksize(pool, NULL), 0);

	/* An object of a class this pool never allocated from, which another pool (another
	 * process, as far as the arena goes) handed over: kfree opens the class.  Inside
	 * the object: refused the same way. */
	E(slab_pool_connect(daemon_.socket, &pool2));
	p = E_PTR(slab_kmalloc(pool, 2048));
	x = slab_pointer(pool2, slab_offset(pool, p));
	assert_non_null(x);
	E_IS(slab_kfree(pool2, x + 8), -EINVAL);
	/* refused before the class is opened: no second reference */
	assert_int_equal(th_stat(&daemon_, "kmalloc-2048", "refcount"), 1);
	assert_int_equal(th_stat(&daemon_, "kmalloc-2048", "in_use"), 1);
	E(slab_kfree(pool2, x));
	assert_int_equal(th_stat(&daemon_, "kmalloc-2048", "refcount"), 2);
	assert_int_equal(th_stat(&daemon_, "kmalloc-2048", "in_use"), 0);
	slab_pool_disconnect(pool2);

	/* An object of an ordinary cache is not kfree's to free. */
	E(slab_cache_create(pool, "not-kmalloc", &cfg64, &plain));
	x = E_PTR(slab_alloc(plain));
	E_IS(slab_kfree(pool, x), -EINVAL);
	assert_int_equal(th_stat(&daemon_, "not-kmalloc", "in_use"), 1);
	E(slab_free(plain, x));
	E(slab_cache_destroy(plain));

	errno = 0;
	assert_null(slab_kmalloc(pool, 8193));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(slab_kmalloc(pool, SIZE_MAX));
	assert_int_equal(errno, EINVAL);

	/* Every class exists and holds nothing now. */
	r = th_request(&daemon_, "{\"id\":1,\"cmd\":\"cache.stats\"}");
	th_assert_ok(r, "cache.stats");
	json_array_foreach(json_object_get(r, "caches"), i, cache) {
		if (strncmp(th_jstr(cache, "name"), "kmalloc-", 8))
			continue;
		classes++;
		in_use += th_jint(cache, "in_use");
		assert_int_equal(th_jint(cache, "object_size"), atoi(th_jstr(cache, "name") + 8));
	}
	json_decref(r);
	assert_int_equal(classes, 13);
	assert_int_equal(in_use, 0);
	r = th_request(&daemon_, "{\"id\":2,\"cmd\":\"cache.validate\"}");
	th_assert_ok(r, "cache.validate");
	assert_true(json_is_true(json_object_get(r, "clean")));
	json_decref(r);
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

/* ---- fork ----------------------------------------------------------------------------- */

#define FK_HELD   50
#define FK_CHILD  200
#define FK_PARENT 200

static uint64_t fk_tag(uint64_t who, unsigned i)
{
	return 0xf0f0000000000000ULL ^ (who << 32) ^ i;
}

static int fk_check(void *obj, uint64_t tag)
{
	uint64_t *w = obj;

	for (int k = 0; k < 8; k++)
		if (w[k] != tag + (uint64_t)k)
			return -1;
	return 0;
}

static void fk_fill(void *obj, uint64_t tag)
{
	uint64_t *w = obj;

	for (int k = 0; k < 8; k++)
		w[k] = tag + (uint64_t)k;
}

/* The forked child: the parent's held objects are readable; its own allocations go
 * through the inherited handle (re-registering) and never hit a parent's object. */
static int fork_child(slab_pool *pool, slab_cache *c, void **held, int to_parent,
		      int from_parent)
{
	void *mine[FK_CHILD];
	uint64_t offs[FK_CHILD];
	char ch;
	int rc;

	alarm(CHILD_ALARM);
	for (int i = 0; i < FK_HELD; i++)
		if (fk_check(held[i], fk_tag(1, (unsigned)i)))
			return EX_PARENT_OBJ;
	for (int i = 0; i < FK_CHILD; i++) {
		mine[i] = slab_alloc(c);
		if (!mine[i]) {
			fprintf(stderr, "fork child: slab_alloc: %s\n", slab_strerror(errno));
			return EX_ALLOC;
		}
		for (int k = 0; k < FK_HELD; k++)
			if (mine[i] == held[k])
				return EX_TWICE;
		fk_fill(mine[i], fk_tag(2, (unsigned)i));
		offs[i] = slab_offset(pool, mine[i]);
	}
	if (th_write_all(to_parent, offs, sizeof(offs)) || th_read_all(from_parent, &ch, 1, -1))
		return EX_PIPE;
	for (int i = 0; i < FK_CHILD; i++) {
		if (fk_check(mine[i], fk_tag(2, (unsigned)i)))
			return EX_PATTERN;
		rc = slab_free(c, mine[i]);
		if (rc) {
			fprintf(stderr, "fork child: slab_free: %s\n", slab_strerror(rc));
			return EX_FREE;
		}
	}
	rc = slab_cache_close(c);
	if (rc) {
		fprintf(stderr, "fork child: slab_cache_close: %s\n", slab_strerror(rc));
		return EX_CLOSE;
	}
	slab_pool_disconnect(pool);
	return EX_OK;
}

static void test_fork(void **state)
{
	void *held[FK_HELD], *freed[FK_HELD], *mine[FK_PARENT];
	uint64_t child_offs[FK_CHILD];
	int c2p[2], p2c[2], seen_parent = 0, seen_child = 0, rc;
	slab_pool *pool;
	slab_cache *c;
	json_t *r, *cl;
	size_t i;
	pid_t pid;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "fk", &cfg64, &c));
	for (int k = 0; k < FK_HELD; k++) {
		held[k] = E_PTR(slab_alloc(c));
		fk_fill(held[k], fk_tag(1, (unsigned)k));
		freed[k] = E_PTR(slab_alloc(c));
	}
	/* These now sit in the parent's magazine: the child must not hand them out. */
	for (int k = 0; k < FK_HELD; k++)
		E(slab_free(c, freed[k]));
	assert_int_equal(pipe2(c2p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(p2c, O_CLOEXEC), 0);

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(c2p[0]);
		close(p2c[1]);
		_exit(th_child_init() ? EX_USAGE : fork_child(pool, c, held, c2p[1], p2c[0]));
	}
	th_track_child(pid);
	close(c2p[1]);
	close(p2c[0]);
	if (th_read_all(c2p[0], child_offs, sizeof(child_offs), -1))
		fail_msg("the fork child died early: exit %d", th_wait_child(pid, 10));

	/* The child registered as a client of its own. */
	r = th_request(&daemon_, "{\"id\":1,\"cmd\":\"clients.list\"}");
	th_assert_ok(r, "clients.list");
	json_array_foreach(json_object_get(r, "clients"), i, cl) {
		long long p = th_jint(cl, "pid");
		seen_parent += p == getpid();
		seen_child += p == pid;
	}
	json_decref(r);
	assert_int_equal(seen_parent, 1);
	assert_int_equal(seen_child, 1);

	/* The parent's magazine was not touched: what it hands out now (its freed objects
	 * first) is nothing the child holds, and the child's objects stay intact. */
	for (int k = 0; k < FK_PARENT; k++) {
		mine[k] = E_PTR(slab_alloc(c));
		for (int j = 0; j < FK_CHILD; j++)
			if (slab_offset(pool, mine[k]) == child_offs[j])
				fail_msg("parent and child both got offset %llu",
					 (unsigned long long)child_offs[j]);
		fk_fill(mine[k], fk_tag(3, (unsigned)k));
	}
	for (int j = 0; j < FK_CHILD; j++)
		if (fk_check(slab_pointer(pool, child_offs[j]), fk_tag(2, (unsigned)j)))
			fail_msg("the child's object #%d changed in the parent's view", j);
	assert_int_equal(th_write_all(p2c[1], "F", 1), 0);
	rc = th_wait_child(pid, 30);
	if (rc)
		fail_msg("fork child exited with %d", rc);
	close(c2p[0]);
	close(p2c[1]);

	for (int k = 0; k < FK_PARENT; k++) {
		if (fk_check(mine[k], fk_tag(3, (unsigned)k)))
			fail_msg("parent object #%d changed", k);
		E(slab_free(c, mine[k]));
	}
	for (int k = 0; k < FK_HELD; k++) {
		if (fk_check(held[k], fk_tag(1, (unsigned)k)))
			fail_msg("parent held object #%d changed", k);
		E(slab_free(c, held[k]));
	}
	assert_int_equal(th_stat(&daemon_, "fk", "in_use"), 0);
	E(slab_cache_close(c));
	assert_int_equal(th_stat(&daemon_, "fk", "in_use"), 0);
	assert_int_equal(th_validate(&daemon_, "fk"), 0);
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_destroy_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bulk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kmalloc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
	};

	if (argc == 6 && !strcmp(argv[1], "--holder"))
		return holder_main(argv);
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--holder SOCKET NAME READYFD GOFD]\n", argv[0]);
		return EX_USAGE;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
