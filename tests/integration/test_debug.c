/* test_debug.c - guards the debug flags of a cache (shm/debug.h), as slub_debug would:
 * each flag catches the corruption this test injects, reports it with the cache, the object
 * offset and what was found (cache.stats "corruption_log", cache.validate), and a cache
 * without the flag stays silent.
 *
 *   SLAB_POISON      a write into a freed object is found when the object is handed out;
 *   SLAB_RED_ZONE    a write past the end of an object is found when it is freed;
 *   SLAB_DEBUG       a double free that is not the thread's freshest is refused at once;
 *   SLAB_STORE_USER  every object names its holder: a dead process's objects are reclaimed
 *                    (and the cache then destroys cleanly);
 *   SLAB_ZERO        objects come out zero-filled, also when reused;
 * and validate stays silent about a healthy cache while clients refill and flush.
 */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "slab.h"

static struct th_daemon daemon_;
static slab_pool *pool;

static int setup(void **state)
{
	(void)state;
	if (th_start(&daemon_, NULL))
		return -1;
	return slab_pool_connect(daemon_.socket, &pool) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	slab_pool_disconnect(pool);
	return th_stop(&daemon_) ? -1 : 0;
}

static slab_cache *make(const char *name, size_t size, unsigned flags)
{
	struct slab_cache_config cfg = { .size = size, .flags = flags, .node = SLAB_NODE_LOCAL };
	slab_cache *c = NULL;

	E(slab_cache_create(pool, name, &cfg, &c));
	return c;
}

/* The corruption_log entry of cache `name` whose kind contains `kind`, or NULL. */
static json_t *find_corruption(const char *name, const char *kind, uint64_t off)
{
	json_t *st = th_cache_stats(&daemon_, name), *log = json_object_get(st, "corruption_log"), *e;
	size_t i;

	assert_non_null(log);
	json_array_foreach(log, i, e) {
		if (strstr(th_jstr(e, "kind"), kind) && (uint64_t)th_jint(e, "offset") == off) {
			json_incref(e);
			json_decref(st);
			return e;
		}
	}
	json_decref(st);
	return NULL;
}

static long long corruptions(const char *name)
{
	json_t *st = th_cache_stats(&daemon_, name);
	long long n = th_jint(st, "corruptions");

	json_decref(st);
	return n;
}

static void test_poison(void **state)
{
	slab_cache *c = make("dbg-poison", 40, SLAB_POISON), *plain = make("dbg-plain", 40, 0);
	unsigned char *o, *p;
	json_t *e;

	(void)state;
	o = E_PTR(slab_alloc(c));
	memset(o, 0x11, 40);
	E(slab_free(c, o));
	for (int i = 0; i < 39; i++) /* freed objects carry the poison */
		assert_int_equal(o[i], 0x6b);
	assert_int_equal(o[39], 0xa5);
	o[17] = 0x42; /* use after free */
	p = E_PTR(slab_alloc(c)); /* the freshest free comes back first: the same object */
	assert_ptr_equal(p, o);
	e = find_corruption("dbg-poison", "poison", slab_offset(pool, o));
	assert_non_null(e);
	/* what was found: the 8 bytes at offset 16, with the 0x42 in them */
	assert_int_equal(strtoull(th_jstr(e, "found"), NULL, 16) & 0xff00, 0x4200);
	assert_int_equal(th_jint(e, "pid"), getpid());
	json_decref(e);
	assert_true(th_validate(&daemon_, "dbg-poison") > 0); /* validate lists it */
	E(slab_free(c, p));

	/* Without the flag nothing is checked, nothing reported. */
	o = E_PTR(slab_alloc(plain));
	E(slab_free(plain, o));
	o[17] = 0x42;
	p = E_PTR(slab_alloc(plain));
	E(slab_free(plain, p));
	assert_int_equal(corruptions("dbg-plain"), 0);
	assert_int_equal(th_validate(&daemon_, "dbg-plain"), 0);
	E(slab_cache_destroy(plain));
	E(slab_cache_destroy(c));
}

static void test_red_zone(void **state)
{
	slab_cache *c = make("dbg-rz", 40, SLAB_RED_ZONE);
	unsigned char *o, *q;

	(void)state;
	o = E_PTR(slab_alloc(c));
	q = E_PTR(slab_alloc(c));
	E(slab_free(c, q)); /* an intact object frees silently */
	assert_int_equal(corruptions("dbg-rz"), 0);
	o[40] = 0x99; /* one byte past the object */
	E(slab_free(c, o)); /* the free itself goes on: the object is valid */
	json_t *e = find_corruption("dbg-rz", "red zone", slab_offset(pool, o));
	assert_non_null(e);
	assert_int_equal(strtoull(th_jstr(e, "found"), NULL, 16) & 0xff, 0x99);
	json_decref(e);
	assert_int_equal(corruptions("dbg-rz"), 1);
	E(slab_cache_destroy(c));
}

static void test_debug_double_free(void **state)
{
	slab_cache *c = make("dbg-double", 64, SLAB_DEBUG), *plain = make("dbg-double-plain", 64, 0);
	void *a, *b, *x, *y;

	(void)state;
	a = E_PTR(slab_alloc(c));
	b = E_PTR(slab_alloc(c));
	E(slab_free(c, a));
	E(slab_free(c, b)); /* a is no longer the freshest free */
	E_IS(slab_free(c, a), -EINVAL); /* still caught at once */
	E_IS(slab_free(c, b), -EINVAL);
	x = E_PTR(slab_alloc(c));
	y = E_PTR(slab_alloc(c));
	assert_ptr_not_equal(x, y); /* nothing was handed out twice */
	E(slab_free(c, x));
	E(slab_free(c, y));
	E(slab_cache_close(c));
	{
		json_t *st = th_cache_stats(&daemon_, "dbg-double");
		assert_int_equal(th_jint(json_object_get(st, "counters"), "double_free"), 2);
		assert_int_equal(th_jint(st, "in_use"), 0);
		json_decref(st);
	}
	/* Without SLAB_DEBUG only the freshest double free is caught on the fast path. */
	a = E_PTR(slab_alloc(plain));
	b = E_PTR(slab_alloc(plain));
	E(slab_free(plain, a));
	E_IS(slab_free(plain, a), -EINVAL);
	E(slab_free(plain, b));
	E(slab_cache_close(plain));
	E(slab_cache_open(pool, "dbg-double", &c));
	E(slab_cache_destroy(c));
	E(slab_cache_open(pool, "dbg-double-plain", &plain));
	E(slab_cache_destroy(plain));
}

static void test_store_user_reclaim(void **state)
{
	slab_cache *c = make("dbg-owned", 32, SLAB_STORE_USER);
	int ready[2];
	pid_t pid;
	char buf;
	json_t *r, *st;

	(void)state;
	E(pipe(ready) ? -errno : 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A child that allocates 50 objects, says so, and waits to be killed. */
		for (int i = 0; i < 50; i++)
			if (!slab_alloc(c))
				_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	th_track_child(pid);
	assert_int_equal(read(ready[0], &buf, 1), 1);
	/* A live client's objects are its own. */
	r = th_request_fmt(&daemon_, "{\"cmd\":\"cache.reclaim\",\"pid\":%d}", (int)pid);
	th_assert_error(r, "EBUSY", "reclaim of a live client");
	json_decref(r);
	kill(pid, SIGKILL);
	assert_int_equal(th_wait_child(pid, 10), 128 + SIGKILL);
	st = th_cache_stats(&daemon_, "dbg-owned");
	assert_int_equal(th_jint(st, "in_use"), 50);
	json_decref(st);
	/* The daemon noticed the death (its cached objects went back); reclaim the rest. */
	for (int i = 0; i < 200; i++) {
		r = th_request_fmt(&daemon_, "{\"cmd\":\"cache.reclaim\",\"pid\":%d,\"name\":\"dbg-owned\"}",
				   (int)pid);
		if (json_is_true(json_object_get(r, "ok")))
			break;
		json_decref(r);
		r = NULL;
		usleep(10000);
	}
	th_assert_ok(r, "cache.reclaim");
	assert_int_equal(th_jint(r, "reclaimed"), 50);
	json_decref(r);
	st = th_cache_stats(&daemon_, "dbg-owned");
	assert_int_equal(th_jint(st, "in_use"), 0);
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, "dbg-owned"), 0);
	/* A cache without owner tracking refuses. */
	{
		slab_cache *plain = make("dbg-unowned", 32, 0);
		r = th_request_fmt(&daemon_, "{\"cmd\":\"cache.reclaim\",\"pid\":%d,\"name\":\"dbg-unowned\"}",
				   (int)pid);
		th_assert_error(r, "EINVAL", "reclaim without SLAB_STORE_USER");
		json_decref(r);
		E(slab_cache_destroy(plain));
	}
	E(slab_cache_destroy(c));
	close(ready[0]);
	close(ready[1]);
}

static void test_zero(void **state)
{
	slab_cache *c = make("dbg-zero", 100, SLAB_ZERO);
	unsigned char *o;

	(void)state;
	for (int round = 0; round < 3; round++) {
		o = E_PTR(slab_alloc(c));
		for (int i = 0; i < 100; i++)
			assert_int_equal(o[i], 0);
		memset(o, 0xee, 100);
		E(slab_free(c, o));
	}
	E(slab_cache_destroy(c));
}

/* A child of test_validate_live: grow the cache by n objects and empty it again, in
 * bursts, until *stop.  Exit 0, or 1..3 on a failure. */
static int burst_child(const char *socket, unsigned n, volatile int *stop)
{
	void *objs[1024];
	slab_pool *p;
	slab_cache *c;

	if (th_child_init() || slab_pool_connect(socket, &p) || slab_cache_open(p, "dbg-live", &c))
		return 1;
	while (!*stop) {
		for (unsigned i = 0; i < n; i++)
			if (!(objs[i] = slab_alloc(c)))
				return 2;
		for (unsigned i = 0; i < n; i++)
			if (slab_free(c, objs[i]))
				return 3;
		usleep(50);
	}
	slab_cache_close(c);
	slab_pool_disconnect(p);
	return 0;
}

/* A child of test_validate_live: pass objects between two handles of the cache (two
 * magazines of one thread) until *stop: allocated from one, freed into the other. */
static int mover_child(const char *socket, volatile int *stop)
{
	slab_pool *p;
	slab_cache *h[2];
	void *o;

	if (th_child_init() || slab_pool_connect(socket, &p) ||
	    slab_cache_open(p, "dbg-live", &h[0]) || slab_cache_open(p, "dbg-live", &h[1]))
		return 1;
	for (unsigned k = 0; !*stop; k ^= 1) {
		if (!(o = slab_alloc(h[k])))
			return 2;
		if (slab_free(h[k ^ 1], o))
			return 3;
		usleep(20);
	}
	slab_cache_close(h[0]);
	slab_cache_close(h[1]);
	slab_pool_disconnect(p);
	return 0;
}

/* A healthy cache validates clean while clients use it: two processes refill and flush
 * in bursts, and a third passes objects between two magazines, during 400 validates.
 * (Before validate held the node locks across its walk of the magazines, a refill that
 * had waited for the lock took objects validate had just seen in the shared array, and
 * 20 of 100 validates said "cached twice".  Before a second walk had to confirm it, an
 * object allocated from a magazine already read and freed into one not read yet was
 * reported too: in 3 of 6 runs of this test.) */
static void test_validate_live(void **state)
{
	slab_cache *c = make("dbg-live", 64, 0);
	volatile int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				  -1, 0);
	pid_t kid[3];
	int bad = 0;

	(void)state;
	assert_true(stop != MAP_FAILED);
	*stop = 0;
	for (int k = 0; k < 3; k++) {
		kid[k] = fork();
		assert_true(kid[k] >= 0);
		if (kid[k] == 0)
			_exit(k == 2 ? mover_child(daemon_.socket, stop)
				     : burst_child(daemon_.socket, k ? 900 : 700, stop));
		th_track_child(kid[k]);
	}
	th_sleep_ms(200); /* both bursting */
	for (int i = 0; i < 400; i++)
		bad += th_validate(&daemon_, "dbg-live") != 0;
	*stop = 1;
	for (int k = 0; k < 3; k++)
		assert_int_equal(th_wait_child(kid[k], 60), 0);
	assert_int_equal(bad, 0);
	assert_int_equal(th_validate(&daemon_, "dbg-live"), 0);
	munmap((void *)stop, 4096);
	E(slab_cache_destroy(c));
}

/* A double free that leaves one object in two magazines of a live client (two handles
 * of one thread: the fast free checks only the magazine's own newest entry) is reported
 * by a live validate, confirmed by slabd's count of the magazines holding it at one
 * moment (stats_holder_count); once the handles have closed and a shrink has drained
 * the shared array, the second copy is caught at its slab (double_free) and the cache
 * validates clean. */
static void test_validate_double_in_mags(void **state)
{
	slab_cache *c = make("dbg-twice", 64, 0), *h[2];
	json_t *r, *rep, *line;
	char *o, *keep[4];
	size_t i;
	bool said = false;

	(void)state;
	E(slab_cache_open(pool, "dbg-twice", &h[0]));
	E(slab_cache_open(pool, "dbg-twice", &h[1]));
	for (i = 0; i < 4; i++) /* so that o is not h[0]'s newest entry when freed there */
		assert_non_null(keep[i] = slab_alloc(h[0]));
	o = slab_alloc(h[0]);
	assert_non_null(o);
	E(slab_free(h[0], keep[0]));
	E(slab_free(h[1], o));
	E(slab_free(h[0], o)); /* the double free the fast path cannot see */
	r = th_request(&daemon_, "{\"id\":1,\"cmd\":\"cache.validate\",\"name\":\"dbg-twice\"}");
	th_assert_ok(r, "cache.validate");
	assert_false(json_is_true(json_object_get(r, "clean")));
	assert_int_equal(th_jint(r, "problems"), 1);
	rep = json_object_get(r, "report");
	json_array_foreach(rep, i, line)
		said |= strstr(json_string_value(line), "cached twice (twice in the magazines)") != NULL;
	assert_true(said);
	json_decref(r);

	/* Closed, the handles flush both copies to the shared array (validate says so);
	 * a shrink drains it into the slabs, where the second copy is caught. */
	E(slab_cache_close(h[0]));
	E(slab_cache_close(h[1]));
	assert_int_not_equal(th_validate(&daemon_, "dbg-twice"), 0);
	r = th_request(&daemon_, "{\"id\":2,\"cmd\":\"cache.shrink\",\"name\":\"dbg-twice\"}");
	th_assert_ok(r, "cache.shrink");
	json_decref(r);
	assert_int_equal(th_counter(&daemon_, "dbg-twice", "double_free"), 1);
	assert_int_equal(th_validate(&daemon_, "dbg-twice"), 0);
	for (i = 1; i < 4; i++)
		E(slab_free(c, keep[i]));
	assert_int_equal(th_validate(&daemon_, "dbg-twice"), 0);
	E(slab_cache_destroy(c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poison),
		cmocka_unit_test(test_red_zone),
		cmocka_unit_test(test_debug_double_free),
		cmocka_unit_test(test_store_user_reclaim),
		cmocka_unit_test(test_zero),
		cmocka_unit_test(test_validate_live),
		cmocka_unit_test(test_validate_double_in_mags),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
