/* test_storm.c - the crash storm of issue 6: "no object is ever lost, whatever dies and
 * whenever".
 *
 *   - One cache of 64-byte objects with SLAB_STORE_USER (owner tracking) and limit 8 /
 *     batchcount 4, so roughly one call in four takes a slow path (refill or flush step).
 *   - 4 worker processes (fork()ed; each becomes a new libslab client on its first call)
 *     allocate and free at random (seeded) in bursts, holding up to HOLD_MAX objects each.
 *     Each object gets a cookie (its offset mixed with the worker's pid) in its first and
 *     last word, checked before it is freed: an object handed to two holders is caught.
 *     Each worker keeps an exact ledger in shared memory: one slot per held object (the
 *     arena offset; written right after slab_alloc returns, zeroed only after slab_free
 *     returns, each a single store) and the call in flight (alloc / free / none).
 *   - Every 10-200 ms (random; kill times are scheduled, the accounting below runs in
 *     between) the parent SIGKILLs a random worker, $SLAB_STORM_KILLS times
 *     (default 200; `make soak`: 5000), and replaces it.  After each kill it:
 *       * reads the dead worker's step word (shm/testpoint.h: SM_STEP_*, compiled only into
 *         libslab-hooks.a): non-zero means the kill landed inside a slow-path step (after
 *         its intent was recorded and before it ended), with the node lock held when
 *         SM_STEP_LOCKED_BIT is set; these are counted (kills_in_step, _locked) and the test
 *         fails if none landed inside a step;
 *       * waits until the pid leaves clients.list's "clients": slabd has then returned the
 *         dead worker's magazines to the shared tiers (finishing or undoing the step it
 *         died in); the reclaim latency is the dead entry's died_ns (stamped by slabd right
 *         after that return) minus the CLOCK_REALTIME of the kill;
 *       * sends {"cmd":"cache.reclaim","pid":PID} and checks the count against the ledger.
 *         Accounting for the call in flight at the kill: with owner tracking, the objects
 *         stamped with the dead pid that are out of their slabs and in no live magazine or
 *         shared array are exactly (a) the ledger's objects, plus (b) during slab_alloc,
 *         the object already popped from the magazine but not yet in the ledger, minus (c)
 *         during slab_free, the ledger's object once it was pushed into the magazine (slabd
 *         returned it with the magazine).  So: no call in flight: reclaimed == ledger;
 *         in slab_alloc: ledger or ledger + 1; in slab_free: ledger - 1 or ledger.  Anything
 *         else is a lost or duplicated object.  Since reclaim frees what the dead worker
 *         held, the parent frees nothing of a killed worker's ledger (that would be a
 *         double free): the ledger only checks the count.
 *   - Finally the workers are stopped cleanly (a stop flag: each frees what it holds,
 *     closes the cache and exits 0).  Then: in_use == 0 (active_objs == cached, no
 *     magazine left), no invalid or double free counted, cache.validate clean, and
 *     slab_cache_destroy succeeds (the cache is gone).
 *   Printed: kills, kills_in_step (refill / flush / holding the node lock), kills during a
 *   libslab call, reclaimed objects, and the reclaim latency median and maximum in ms.
 *
 * $SLAB_STORM_SEED sets the seed (printed, to replay a failure's schedule);
 * $SLAB_STORM_VERBOSE prints one line per kill.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testpoint.h"

#define NW          4
#define HOLD_MAX    1000u
#define LEDGER_CAP  1024u
#define BURST_MAX   48u
#define GONE_WAIT_MS 5000
#define CACHE_NAME  "storm"

enum { EX_OK = 0, EX_INIT = 20, EX_ALLOC, EX_FREE, EX_COOKIE, EX_CLOSE };
enum { IN_NONE = 0, IN_ALLOC, IN_FREE };

/* One worker's ledger, in shared memory. */
struct wslot {
	volatile int32_t  pid;
	volatile uint32_t ready;     /* registered and allocating */
	volatile uint32_t inflight;  /* IN_* : the libslab call in progress */
	uint32_t          pad;
	volatile uint64_t objs[LEDGER_CAP]; /* arena offsets of held objects; 0: empty */
};

struct storm_shared {
	volatile uint32_t stop;
	struct wslot w[NW];
};

static struct th_daemon daemon_;
static long long *lat_; /* the kill latencies; freed by teardown even when a check fails */

static int setup(void **state)
{
	(void)state;
	/* 16 MiB: ample for 4 x 1000 objects, and it keeps clients.list cheap (it scans the
	 * arena for each recently dead client's objects_left). */
	return th_start(&daemon_, (const char *const[]){ "--arena-size", "16M", NULL });
}

static int teardown(void **state)
{
	(void)state;
	free(lat_);
	lat_ = NULL;
	th_teardown(&daemon_); /* last: it fails the test (longjmp) on valgrind errors */
	return 0;
}

static long long realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* For a failure's report: slabd's log lines that mention `needle`. */
static void print_log_lines(const char *needle)
{
	FILE *f = fopen(daemon_.log, "r");
	char line[512];
	unsigned n = 0;

	if (!f)
		return;
	fprintf(stderr, "---- slabd log lines with \"%s\" ----\n", needle);
	while (fgets(line, sizeof(line), f) && n < 40)
		if (strstr(line, needle)) {
			fputs(line, stderr);
			n++;
		}
	fclose(f);
}

/* For a failure's report: where slabd sleeps (a futex: a lock nobody wakes it from). */
static void print_daemon_wchan(void)
{
	char path[64], wchan[128] = "?";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)daemon_.pid);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(wchan, sizeof(wchan), f))
			snprintf(wchan, sizeof(wchan), "?");
		fclose(f);
	}
	fprintf(stderr, "storm: slabd (pid %d) does not answer; it sleeps in %s\n",
		(int)daemon_.pid, wchan);
}

static uint64_t cookie_of(uint64_t off, pid_t pid)
{
	uint64_t x = off ^ ((uint64_t)(uint32_t)pid << 32) ^ 0xc0ffee5eedULL;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* ---- the workers -------------------------------------------------------------------- */

static unsigned held[LEDGER_CAP], nheld;    /* ledger slots in use (worker-private) */
static unsigned freeslots[LEDGER_CAP], nfree;

static int worker_alloc(slab_pool *pool, slab_cache *c, struct wslot *ws, pid_t me)
{
	uint64_t *p, off;
	unsigned slot;

	ws->inflight = IN_ALLOC;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	p = slab_alloc(c);
	if (!p) {
		fprintf(stderr, "worker %d: slab_alloc: %s\n", (int)me, slab_strerror(errno));
		return EX_ALLOC;
	}
	off = slab_offset(pool, p);
	slot = freeslots[--nfree];
	__atomic_store_n(&ws->objs[slot], off, __ATOMIC_SEQ_CST);
	__atomic_store_n(&ws->inflight, IN_NONE, __ATOMIC_SEQ_CST);
	held[nheld++] = slot;
	p[0] = p[7] = cookie_of(off, me);
	return EX_OK;
}

static int worker_free(slab_pool *pool, slab_cache *c, struct wslot *ws, pid_t me, unsigned i)
{
	unsigned slot = held[i];
	uint64_t off = ws->objs[slot], *p = slab_pointer(pool, off);
	int rc;

	if (!p || p[0] != cookie_of(off, me) || p[7] != cookie_of(off, me)) {
		fprintf(stderr, "worker %d: object %#llx: cookie %#llx/%#llx, want %#llx: "
			"another holder wrote it\n", (int)me, (unsigned long long)off,
			p ? (unsigned long long)p[0] : 0ULL, p ? (unsigned long long)p[7] : 0ULL,
			(unsigned long long)cookie_of(off, me));
		return EX_COOKIE;
	}
	ws->inflight = IN_FREE;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	rc = slab_free(c, p);
	if (rc) {
		fprintf(stderr, "worker %d: slab_free(%#llx): %s\n", (int)me,
			(unsigned long long)off, slab_strerror(rc));
		return EX_FREE;
	}
	__atomic_store_n(&ws->objs[slot], 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&ws->inflight, IN_NONE, __ATOMIC_SEQ_CST);
	held[i] = held[--nheld];
	freeslots[nfree++] = slot;
	return EX_OK;
}

static int worker_main(slab_pool *pool, slab_cache *c, struct storm_shared *sh, unsigned w,
		       int stepfd, uint64_t seed)
{
	struct wslot *ws = &sh->w[w];
	pid_t me = getpid();
	unsigned target = 0;
	char env[32];
	int rc;

	if (th_child_init())
		return EX_INIT;
	snprintf(env, sizeof(env), "%d:%u", stepfd, w);
	if (setenv("SLAB_TEST_STEP_PAGE", env, 1))
		return EX_INIT;
	nheld = nfree = 0;
	for (unsigned i = 0; i < LEDGER_CAP; i++)
		freeslots[nfree++] = LEDGER_CAP - 1 - i;
	if ((rc = worker_alloc(pool, c, ws, me)))
		return rc;
	ws->ready = 1;
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		unsigned burst = 1 + (unsigned)(th_rand(&seed) % BURST_MAX);

		if (th_rand(&seed) % 16 == 0 || nheld == target)
			target = (unsigned)(th_rand(&seed) % (HOLD_MAX + 1));
		if (nheld < target) {
			if (burst > target - nheld)
				burst = target - nheld;
			while (burst--)
				if ((rc = worker_alloc(pool, c, ws, me)))
					return rc;
		} else if (nheld > target) {
			if (burst > nheld - target)
				burst = nheld - target;
			while (burst--)
				if ((rc = worker_free(pool, c, ws, me,
						      (unsigned)(th_rand(&seed) % nheld))))
					return rc;
		}
	}
	while (nheld)
		if ((rc = worker_free(pool, c, ws, me, nheld - 1)))
			return rc;
	rc = slab_cache_close(c);
	if (rc) {
		fprintf(stderr, "worker %d: slab_cache_close: %s\n", (int)me, slab_strerror(rc));
		return EX_CLOSE;
	}
	slab_pool_disconnect(pool);
	return EX_OK;
}

/* ---- the parent --------------------------------------------------------------------- */

struct storm {
	slab_pool           *pool;
	slab_cache          *c;
	struct storm_shared *sh;
	uint32_t            *steps;     /* the step page (SM_STEP_*), one word per worker */
	int                  stepfd;
	uint64_t             seed;
	unsigned             spawned;
};

static void spawn_worker(struct storm *s, unsigned w)
{
	struct wslot *ws = &s->sh->w[w];
	uint64_t wseed = s->seed ^ (0x9E3779B97F4A7C15ULL * (s->spawned + 1));
	long long deadline;
	pid_t pid;

	memset((void *)ws, 0, sizeof(*ws));
	__atomic_store_n(&s->steps[w], 0, __ATOMIC_SEQ_CST);
	if (!wseed)
		wseed = 1;
	s->spawned++;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(worker_main(s->pool, s->c, s->sh, w, s->stepfd, wseed));
	th_track_child(pid);
	ws->pid = pid;
	/* Ready: registered with slabd (so listed in clients.list) and allocating. */
	deadline = th_now_ms() + 10000;
	while (!ws->ready) {
		if (th_child_exited(pid))
			fail_msg("worker %d died while starting (exit %d)", (int)pid,
				 th_wait_child(pid, 1));
		if (th_now_ms() > deadline) {
			print_daemon_wchan();
			fail_msg("worker %d did not start within 10 s", (int)pid);
		}
		th_sleep_ms(1);
	}
}

/* A worker that ended on its own failed (a cookie, a refused free, a NULL alloc). */
static void check_workers_alive(struct storm *s)
{
	for (unsigned w = 0; w < NW; w++) {
		pid_t pid = s->sh->w[w].pid;

		if (th_child_exited(pid))
			fail_msg("worker %d ended on its own: exit %d", (int)pid,
				 th_wait_child(pid, 1));
	}
}

/* After the pid left "clients": its "dead" entry's died_ns (the latest, pids recycle).
 * -1 while it is still a live client. */
static long long died_ns(pid_t pid)
{
	json_t *r = th_request(&daemon_, "{\"id\":1,\"cmd\":\"clients.list\"}"), *cl;
	long long died = 0;
	size_t i;

	if (!r)
		print_daemon_wchan();
	th_assert_ok(r, "clients.list");
	json_array_foreach(json_object_get(r, "clients"), i, cl)
		if (th_jint(cl, "pid") == pid) {
			json_decref(r);
			return -1;
		}
	json_array_foreach(json_object_get(r, "dead"), i, cl)
		if (th_jint(cl, "pid") == pid && th_jint(cl, "died_ns") > died)
			died = th_jint(cl, "died_ns");
	json_decref(r);
	if (!died)
		fail_msg("pid %d is neither a live nor a dead client in clients.list", (int)pid);
	return died;
}

static long long reclaim(pid_t pid)
{
	json_t *r = th_request_fmt(&daemon_, "{\"id\":1,\"cmd\":\"cache.reclaim\",\"pid\":%d,"
				   "\"name\":\"%s\"}", (int)pid, CACHE_NAME);
	long long n;

	if (!r)
		print_daemon_wchan();
	th_assert_ok(r, "cache.reclaim");
	n = th_jint(r, "reclaimed");
	json_decref(r);
	return n;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static void test_storm(void **state)
{
	struct slab_cache_config cfg = { .size = 64, .node = SLAB_NODE_LOCAL,
					 .flags = SLAB_STORE_USER, .limit = 8, .batchcount = 4 };
	const char *ks = getenv("SLAB_STORM_KILLS"), *ss = getenv("SLAB_STORM_SEED");
	unsigned kills = ks && *ks ? (unsigned)strtoul(ks, NULL, 10) : 200;
	unsigned in_step = 0, in_refill = 0, in_flush = 0, in_locked = 0, in_call = 0;
	unsigned in_alloc_extra = 0, in_free_gone = 0;
	long long reclaimed = 0, ledger_total = 0, *lat, t_start = th_now_ms(), list_ns = 0, t_next;
	unsigned polls = 0;
	bool verbose = getenv("SLAB_STORM_VERBOSE") != NULL;
	struct storm s = { .seed = ss && *ss ? strtoull(ss, NULL, 0) : 0x5eed0f57011ULL };
	uint64_t rng;
	json_t *st, *counters;

	(void)state;
	if (!kills)
		kills = 1;
	if (!s.seed)
		s.seed = 1;
	rng = s.seed;
	printf("storm: %u kills, seed %#llx\n", kills, (unsigned long long)s.seed);
	lat = lat_ = calloc(kills, sizeof(*lat));
	assert_non_null(lat);
	s.sh = mmap(NULL, sizeof(*s.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s.sh == MAP_FAILED)
		fail_msg("mmap: %s", strerror(errno));
	/* The step page: a memfd the workers inherit and map (SLAB_TEST_STEP_PAGE=fd:slot). */
	s.stepfd = memfd_create("slab-test-steps", 0);
	if (s.stepfd < 0 || ftruncate(s.stepfd, SM_STEP_PAGE_SLOTS * sizeof(uint32_t)))
		fail_msg("memfd: %s", strerror(errno));
	s.steps = mmap(NULL, SM_STEP_PAGE_SLOTS * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		       MAP_SHARED, s.stepfd, 0);
	if (s.steps == MAP_FAILED)
		fail_msg("mmap memfd: %s", strerror(errno));

	E(slab_pool_connect(daemon_.socket, &s.pool));
	E(slab_cache_create(s.pool, CACHE_NAME, &cfg, &s.c));
	for (unsigned w = 0; w < NW; w++)
		spawn_worker(&s, w);

	t_next = th_now_ms();
	for (unsigned k = 0; k < kills; k++) {
		unsigned w, step, inflight, ledger = 0;
		long long t_kill, died, n;
		pid_t pid;
		struct wslot *ws;

		/* Kill k comes 10-200 ms after kill k - 1 (the accounting of k - 1 runs in
		 * that time; if it took longer, at once). */
		t_next += 10 + (long long)(th_rand(&rng) % 191);
		if (th_now_ms() < t_next)
			th_sleep_ms((long)(t_next - th_now_ms()));
		else
			t_next = th_now_ms();
		check_workers_alive(&s);
		w = (unsigned)(th_rand(&rng) % NW);
		ws = &s.sh->w[w];
		pid = ws->pid;
		t_kill = realtime_ns();
		if (kill(pid, SIGKILL))
			fail_msg("kill %d: %s", (int)pid, strerror(errno));
		/* Dead (a zombie) before anything of it is read; then reaped. */
		{
			siginfo_t si = { 0 };
			while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0)
				if (errno != EINTR)
					fail_msg("waitid %d: %s", (int)pid, strerror(errno));
		}
		if (th_wait_child(pid, 5) != 128 + SIGKILL)
			fail_msg("worker %d did not die of SIGKILL", (int)pid);

		step = __atomic_load_n(&s.steps[w], __ATOMIC_SEQ_CST);
		if (step) {
			in_step++;
			in_refill += (step & 0xff) == 1;  /* SLAB_INTENT_REFILL */
			in_flush += (step & 0xff) == 2;   /* SLAB_INTENT_FLUSH */
			in_locked += !!(step & SM_STEP_LOCKED_BIT);
		}
		inflight = ws->inflight;
		in_call += inflight != IN_NONE;
		for (unsigned i = 0; i < LEDGER_CAP; i++)
			ledger += ws->objs[i] != 0;
		if (step && inflight == IN_NONE)
			fail_msg("worker %d died inside a step but outside any libslab call", (int)pid);

		/* slabd returns its magazines when it notices; the pid then leaves "clients". */
		for (long long dl = th_now_ms() + GONE_WAIT_MS; ; th_sleep_ms(1)) {
			long long t0 = realtime_ns();

			died = died_ns(pid);
			list_ns += realtime_ns() - t0;
			polls++;
			if (died >= 0)
				break;
			if (th_now_ms() > dl) {
				char needle[32];

				snprintf(needle, sizeof(needle), "pid %d ", (int)pid);
				print_log_lines(needle);
				fail_msg("slabd still lists the dead pid %d after %d ms (reaped by "
					 "its parent at once: a lost pid watch?)", (int)pid,
					 GONE_WAIT_MS);
			}
		}
		lat[k] = died - t_kill;

		n = reclaim(pid);
		if (!(inflight == IN_NONE ? n == ledger :
		      inflight == IN_ALLOC ? n == ledger || n == ledger + 1 :
					     n == ledger || n + 1 == ledger))
			fail_msg("kill %u: worker %d held %u objects (call in flight: %s, step %#x) "
				 "but cache.reclaim freed %lld", k, (int)pid, ledger,
				 inflight == IN_ALLOC ? "slab_alloc" : inflight == IN_FREE ? "slab_free" :
				 "none", step, n);
		if (verbose)
			printf("kill %u: pid %d step %#x inflight %u ledger %u reclaimed %lld latency %.3f ms\n",
			       k, (int)pid, step, inflight, ledger, n, (double)lat[k] / 1e6);
		in_alloc_extra += inflight == IN_ALLOC && n == ledger + 1;
		in_free_gone += inflight == IN_FREE && n + 1 == ledger;
		reclaimed += n;
		ledger_total += ledger;
		spawn_worker(&s, w);
	}

	/* Stop: every worker frees what it holds, closes and exits 0. */
	__atomic_store_n(&s.sh->stop, 1, __ATOMIC_RELEASE);
	for (unsigned w = 0; w < NW; w++) {
		int rc = th_wait_child(s.sh->w[w].pid, 30);
		unsigned left = 0;

		if (rc != EX_OK)
			fail_msg("worker %d exited with %d at the stop", (int)s.sh->w[w].pid, rc);
		for (unsigned i = 0; i < LEDGER_CAP; i++)
			left += s.sh->w[w].objs[i] != 0;
		assert_int_equal(left, 0);
		assert_int_equal(s.sh->w[w].inflight, IN_NONE);
	}
	/* Nothing of the killed workers is left to free: cache.reclaim freed each one's
	 * ledger (checked above), and freeing it again would be a double free. */

	st = th_cache_stats(&daemon_, CACHE_NAME);
	assert_non_null(st);
	counters = json_object_get(st, "counters");
	if (th_jint(st, "in_use") != 0 || th_jint(st, "active_objs") != th_jint(st, "cached") ||
	    th_jint(st, "magazine_avail") != 0 || th_jint(counters, "double_free") != 0 ||
	    th_jint(counters, "invalid_free") != 0) {
		char *j = json_dumps(st, JSON_COMPACT);
		fprintf(stderr, "storm: %s\n", j ? j : "?");
		free(j);
		fail_msg("after the storm: in_use %lld, active %lld, cached %lld: objects lost or duplicated",
			 th_jint(st, "in_use"), th_jint(st, "active_objs"), th_jint(st, "cached"));
	}
	printf("storm: counters: alloc_refill %lld, free_flush %lld, alloc_slab %lld, free_slab %lld\n",
	       th_jint(counters, "alloc_refill"), th_jint(counters, "free_flush"),
	       th_jint(counters, "alloc_slab"), th_jint(counters, "free_slab"));
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, CACHE_NAME), 0);
	E(slab_cache_destroy(s.c));
	st = th_cache_listed(&daemon_, CACHE_NAME);
	if (st) {
		json_decref(st);
		fail_msg("cache %s still listed after destroy", CACHE_NAME);
	}
	slab_pool_disconnect(s.pool);

	qsort(lat, kills, sizeof(*lat), cmp_ll);
	printf("storm: kills %u, kills_in_step %u (refill %u, flush %u; holding the node lock %u), "
	       "kills during a libslab call %u\n", kills, in_step, in_refill, in_flush, in_locked,
	       in_call);
	printf("storm: reclaimed %lld objects by cache.reclaim (ledgers %lld; +%u popped in "
	       "slab_alloc, -%u already in the magazine in slab_free)\n", reclaimed, ledger_total,
	       in_alloc_extra, in_free_gone);
	printf("storm: reclaim latency (SIGKILL to magazines returned): median %.3f ms, max %.3f ms\n",
	       (double)lat[kills / 2] / 1e6, (double)lat[kills - 1] / 1e6);
	printf("storm: %u workers in all, %.1f s; %u clients.list polls, %.3f ms each on average\n",
	       s.spawned, (double)(th_now_ms() - t_start) / 1e3, polls,
	       (double)list_ns / polls / 1e6);
	free(lat);
	lat_ = NULL;
	munmap(s.steps, SM_STEP_PAGE_SLOTS * sizeof(uint32_t));
	close(s.stepfd);
	munmap(s.sh, sizeof(*s.sh));
	if (in_step == 0)
		fail_msg("no kill landed inside a slow-path step in %u kills", kills);
	assert_int_equal(th_stop(&daemon_), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_storm, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
