/* test_crashpoints.c - guards "nothing lost at any point of a slow-path step" (DESIGN.md,
 * Reliability; issue 6) with SIGKILL at chosen instructions:
 *
 *   For each test point of shm/magazine.c (refill.locked, refill.unlocked, flush.locked,
 *   flush.unlocked: inside the refill and flush steps, with and without the cache node
 *   lock held) and for two caches (64-byte objects with the default tunables, whose
 *   refills come from the shared array; and 64-byte objects with limit 16 / batchcount 8,
 *   so flushes fill the shared array and spill to the slabs):
 *     - the parent populates slabs, partial lists and the shared array, and keeps a few
 *       objects allocated;
 *     - a forked child (a new client on its first libslab call) runs with
 *       SLAB_TEST_STOP=<point> (and SLAB_TEST_SKIP=N: stop at the (N+1)-th hit, so the
 *       child holds objects and a non-empty magazine when it stops), allocating and
 *       freeing in rounds; every object its application holds is in a ledger in shared
 *       memory (recorded right after slab_alloc returns, removed only after slab_free
 *       returns);
 *     - the parent waits until the child is stopped at the point (it must be: the point
 *       was reached), SIGKILLs it, waits until slabd has reclaimed it (the pid leaves
 *       clients.list), frees the ledger's objects through its own handle (each free must
 *       succeed), closes its handle and checks: in_use == 0 (active_objs == cached, no
 *       magazine left), no invalid or double free counted, cache.validate clean, and the
 *       cache destroys with success.  So nothing was lost (a leak leaves in_use > 0) and
 *       nothing duplicated (validate sees an object twice, or free in its slab and
 *       cached; a ledger free would be refused or counted) at that point.
 *   - With the child stopped at refill.locked / flush.locked it holds the node lock: a
 *     second live client ("racer") is started and blocks on that lock (checked: it has
 *     allocated nothing while the child is stopped); then the child is SIGKILLed and the
 *     racer, and the parent right after it, must allocate and free from the same cache at
 *     once (robust mutex: EOWNERDEAD, repair from the slabs' bufctl, consistent): a hang
 *     fails the test.
 *
 * And a client killed inside a fold of its magazine's counters (fold.begun, reached by
 * slab_cache_close): slabd takes the fold that never ends as the cache's baseline (it
 * logs so) and the counters stay exact (test_fold_cut_short).
 *
 * The test points exist only in build/lib/libslab-hooks.a (shm/testpoint.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define LEDGER_CAP   4096u
#define ROUNDS       16u
#define STOP_WAIT_MS 10000
#define GONE_WAIT_MS 5000

/* Exit codes of the children. */
enum {
	EX_OK = 0,
	EX_INIT = 20,
	EX_ALLOC,
	EX_FREE,
	EX_COOKIE,
	EX_FULL,
	EX_CLOSE,
	EX_NOT_REACHED,   /* the child ran its whole pattern without stopping */
};

/* What the child's application holds, in shared memory (MAP_SHARED before fork). */
struct ledger {
	volatile uint32_t phase;   /* 1: running the pattern; 2: finished it (not stopped) */
	volatile uint32_t allocs;  /* successful slab_alloc calls (the racer's progress) */
	volatile uint64_t objs[LEDGER_CAP]; /* arena offsets; 0 = empty slot */
};

struct point_case {
	const char *point;
	int         small;    /* 1: limit 16, batchcount 8 */
	unsigned    skip;     /* SLAB_TEST_SKIP */
	int         racer;    /* a second client blocks on the lock the child holds */
};

static struct th_daemon daemon_;

static int setup(void **state)
{
	(void)state;
	return th_start(&daemon_, (const char *const[]){ "--nodes", "1", NULL });
}

static int teardown(void **state)
{
	(void)state;
	th_teardown(&daemon_);
	return 0;
}

static uint64_t cookie_of(uint64_t off)
{
	return off * 0x9E3779B97F4A7C15ULL ^ 0x5ca1ab1e0ddba11ULL;
}

/* ---- the children ---------------------------------------------------------------- */

static unsigned held[LEDGER_CAP], nheld;   /* the child's ledger slots in use */
static unsigned freeslots[LEDGER_CAP], nfree;

static int child_alloc(slab_pool *pool, slab_cache *c, struct ledger *lg)
{
	uint64_t *p = slab_alloc(c), off;
	unsigned slot;

	if (!p) {
		fprintf(stderr, "child %d: slab_alloc: %s\n", (int)getpid(), slab_strerror(errno));
		return EX_ALLOC;
	}
	off = slab_offset(pool, p);
	if (!nfree)
		return EX_FULL;
	slot = freeslots[--nfree];
	p[0] = p[7] = cookie_of(off);
	__atomic_store_n(&lg->objs[slot], off, __ATOMIC_SEQ_CST);
	held[nheld++] = slot;
	lg->allocs++;
	return EX_OK;
}

static int child_free(slab_pool *pool, slab_cache *c, struct ledger *lg, unsigned i)
{
	unsigned slot = held[i];
	uint64_t off = lg->objs[slot], *p = slab_pointer(pool, off);
	int rc;

	if (!p || p[0] != cookie_of(off) || p[7] != cookie_of(off)) {
		fprintf(stderr, "child %d: object %#llx lost its cookie\n", (int)getpid(),
			(unsigned long long)off);
		return EX_COOKIE;
	}
	rc = slab_free(c, p);
	if (rc) {
		fprintf(stderr, "child %d: slab_free: %s\n", (int)getpid(), slab_strerror(rc));
		return EX_FREE;
	}
	__atomic_store_n(&lg->objs[slot], 0, __ATOMIC_SEQ_CST);
	held[i] = held[--nheld];
	freeslots[nfree++] = slot;
	return EX_OK;
}

/* The stopped child: rounds of 6 * limit allocations and 5 * limit frees (at random),
 * more than a magazine grown to 4 times the cache's limit holds (runs of refills or of
 * flushes grow it, magazine.c: mag_resize), so every round refills and flushes several
 * times; it must stop at the point before the pattern ends. */
static int point_child(slab_pool *pool, slab_cache *c, struct ledger *lg,
		       const struct point_case *pc, unsigned limit)
{
	uint64_t seed = 0x1234567u + (uint64_t)getpid();
	char skip[16];
	int rc;

	if (th_child_init())
		return EX_INIT;
	if (setenv("SLAB_TEST_STOP", pc->point, 1))
		return EX_INIT;
	snprintf(skip, sizeof(skip), "%u", pc->skip);
	if (setenv("SLAB_TEST_SKIP", skip, 1))
		return EX_INIT;
	nheld = nfree = 0;
	for (unsigned i = 0; i < LEDGER_CAP; i++)
		freeslots[nfree++] = LEDGER_CAP - 1 - i;
	lg->phase = 1;
	for (unsigned r = 0; r < ROUNDS; r++) {
		for (unsigned i = 0; i < 6 * limit; i++)
			if ((rc = child_alloc(pool, c, lg)))
				return rc;
		for (unsigned i = 0; i < 5 * limit; i++)
			if ((rc = child_free(pool, c, lg, (unsigned)(th_rand(&seed) % nheld))))
				return rc;
	}
	lg->phase = 2;
	return EX_NOT_REACHED;
}

/* The racer: a new client whose first allocation must refill on the node whose lock the
 * stopped child holds; then it allocates and frees a few magazines' worth and closes. */
static int racer_child(slab_pool *pool, slab_cache *c, struct ledger *lg, unsigned limit)
{
	uint64_t seed = 99;
	int rc;

	if (th_child_init())
		return EX_INIT;
	nheld = nfree = 0;
	for (unsigned i = 0; i < LEDGER_CAP; i++)
		freeslots[nfree++] = LEDGER_CAP - 1 - i;
	lg->phase = 1;
	for (unsigned i = 0; i < 4 * limit; i++)
		if ((rc = child_alloc(pool, c, lg)))
			return rc;
	while (nheld)
		if ((rc = child_free(pool, c, lg, (unsigned)(th_rand(&seed) % nheld))))
			return rc;
	rc = slab_cache_close(c);
	if (rc) {
		fprintf(stderr, "racer: slab_cache_close: %s\n", slab_strerror(rc));
		return EX_CLOSE;
	}
	lg->phase = 2;
	return EX_OK;
}

/* ---- the parent ---------------------------------------------------------------------- */

static struct ledger *ledger_new(void)
{
	void *m = mmap(NULL, sizeof(struct ledger), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		fail_msg("mmap ledger: %s", strerror(errno));
	return m;
}

/* Wait until pid is stopped (0), or has exited (its exit code, left unreaped), or the
 * deadline passes (-1). */
static int wait_stopped(pid_t pid, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;

	for (;;) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WEXITED | WNOHANG | WNOWAIT) < 0) {
			if (errno == EINTR)
				continue;
			fail_msg("waitid(%d): %s", (int)pid, strerror(errno));
		}
		if (si.si_pid == pid) {
			if (si.si_code == CLD_STOPPED)
				return si.si_status == SIGSTOP ? 0 : 1000 + si.si_status;
			return si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
		}
		if (th_now_ms() > deadline)
			return -1;
		th_sleep_ms(1);
	}
}

/* Is pid among clients.list's live "clients"? */
static bool client_listed(pid_t pid)
{
	json_t *r = th_request(&daemon_, "{\"id\":1,\"cmd\":\"clients.list\"}"), *cl;
	bool found = false;
	size_t i;

	th_assert_ok(r, "clients.list");
	json_array_foreach(json_object_get(r, "clients"), i, cl)
		if (th_jint(cl, "pid") == pid)
			found = true;
	json_decref(r);
	return found;
}

static void wait_reclaimed(pid_t pid)
{
	long long deadline = th_now_ms() + GONE_WAIT_MS;

	while (client_listed(pid)) {
		if (th_now_ms() > deadline)
			fail_msg("slabd still lists the dead pid %d after %d ms", (int)pid,
				 GONE_WAIT_MS);
		th_sleep_ms(1);
	}
}

static long long stat_int(json_t *st, const char *key)
{
	return th_jint(st, key);
}

static void run_case(const struct point_case *pc)
{
	struct slab_cache_config cfg = { .size = 64, .node = SLAB_NODE_LOCAL };
	const char *name = "crash64";
	slab_pool *pool;
	slab_cache *c;
	struct ledger *lg = ledger_new(), *rl = NULL;
	void *keep[300], *tmp[1200];
	unsigned limit, nkeep = 0, nledger = 0;
	pid_t pid, racer = 0;
	json_t *st, *counters;
	int rc;

	if (pc->small) {
		cfg.limit = 16;
		cfg.batchcount = 8;
	}
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, name, &cfg, &c));
	st = th_cache_stats(&daemon_, name);
	assert_non_null(st);
	limit = (unsigned)stat_int(st, "limit");
	json_decref(st);
	assert_true(limit >= 8 && limit <= 256);

	/* Populate: slabs with objects kept allocated (partial lists), then a burst freed
	 * so flushes fill the shared array and spill into the slabs. */
	for (unsigned i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++)
		tmp[i] = E_PTR(slab_alloc(c));
	for (unsigned i = 0; i < sizeof(tmp) / sizeof(tmp[0]); i++) {
		if (i % 4 == 0 && nkeep < sizeof(keep) / sizeof(keep[0]))
			keep[nkeep++] = tmp[i];
		else
			E(slab_free(c, tmp[i]));
	}
	st = th_cache_stats(&daemon_, name);
	assert_non_null(st);
	if (stat_int(st, "shared_avail") == 0)
		fail_msg("the parent's frees left the shared array empty");
	json_decref(st);

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(point_child(pool, c, lg, pc, limit));
	th_track_child(pid);

	rc = wait_stopped(pid, STOP_WAIT_MS);
	if (rc < 0)
		fail_msg("%s: the child did not stop within %d ms", pc->point, STOP_WAIT_MS);
	if (rc > 0) {
		int code = th_wait_child(pid, 5);
		fail_msg("%s (skip %u): the child did not stop at the point (exit %d%s)",
			 pc->point, pc->skip, code,
			 code == EX_NOT_REACHED ? ": pattern ended, point never reached" : "");
	}
	assert_int_equal(lg->phase, 1);

	if (pc->racer) {
		rl = ledger_new();
		fflush(NULL);
		racer = fork();
		if (racer < 0)
			fail_msg("fork: %s", strerror(errno));
		if (racer == 0)
			_exit(racer_child(pool, c, rl, limit));
		th_track_child(racer);
		/* It registers, binds a magazine and blocks in its first refill on the
		 * node lock the stopped child holds: it can allocate nothing. */
		for (long long dl = th_now_ms() + 5000; rl->phase != 1; th_sleep_ms(1))
			if (th_now_ms() > dl)
				fail_msg("the racer did not start");
		th_sleep_ms(150);
		if (rl->allocs != 0)
			fail_msg("%s: the racer allocated %u objects while the child held the node lock",
				 pc->point, rl->allocs);
		assert_int_equal(wait_stopped(racer, 0), -1); /* still running (blocked) */
	}

	if (kill(pid, SIGKILL))
		fail_msg("kill: %s", strerror(errno));
	assert_int_equal(th_wait_child(pid, 5), 128 + SIGKILL);

	if (pc->racer) {
		/* The parent too, at once: a few magazines' worth, so it refills. */
		void *mine[600];
		unsigned n = 3 * limit < 600 ? 3 * limit : 600;

		for (unsigned i = 0; i < n; i++)
			mine[i] = E_PTR(slab_alloc(c));
		for (unsigned i = 0; i < n; i++)
			E(slab_free(c, mine[i]));
		rc = th_wait_child(racer, 10);
		if (rc != EX_OK)
			fail_msg("%s: the racer %s (exit %d)", pc->point,
				 rc < 0 ? "hung on the dead child's lock" : "failed", rc);
		assert_int_equal(rl->phase, 2);
		assert_int_equal(rl->allocs, 4 * limit);
	}

	wait_reclaimed(pid);

	/* What the child's application held: ours to free now (cross-process free). */
	for (unsigned i = 0; i < LEDGER_CAP; i++) {
		uint64_t off = lg->objs[i], *p;

		if (!off)
			continue;
		p = slab_pointer(pool, off);
		assert_non_null(p);
		if (p[0] != cookie_of(off) || p[7] != cookie_of(off))
			fail_msg("%s: ledger object %#llx was overwritten", pc->point,
				 (unsigned long long)off);
		rc = slab_free(c, p);
		if (rc)
			fail_msg("%s: free of the dead child's object %#llx: %s", pc->point,
				 (unsigned long long)off, slab_strerror(rc));
		nledger++;
	}
	for (unsigned i = 0; i < nkeep; i++)
		E(slab_free(c, keep[i]));
	E(slab_cache_close(c));

	st = th_cache_stats(&daemon_, name);
	assert_non_null(st);
	counters = json_object_get(st, "counters");
	if (stat_int(st, "in_use") != 0 || stat_int(st, "active_objs") != stat_int(st, "cached") ||
	    stat_int(st, "magazine_avail") != 0 || th_jint(counters, "double_free") != 0 ||
	    th_jint(counters, "invalid_free") != 0) {
		char *s = json_dumps(st, JSON_COMPACT);
		fprintf(stderr, "%s: %s\n", pc->point, s ? s : "?");
		free(s);
		fail_msg("%s (%s, skip %u): objects lost or duplicated: in_use %lld, active %lld, cached %lld",
			 pc->point, pc->small ? "small" : "plain", pc->skip, stat_int(st, "in_use"),
			 stat_int(st, "active_objs"), stat_int(st, "cached"));
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, name), 0);
	printf("  %-16s %-5s skip %-2u%s: stopped, killed, reclaimed; %u ledger objects freed by the parent\n",
	       pc->point, pc->small ? "small" : "plain", pc->skip, pc->racer ? " + racer" : "",
	       nledger);

	E(slab_cache_open(pool, name, &c));
	E(slab_cache_destroy(c));
	st = th_cache_listed(&daemon_, name);
	if (st) {
		json_decref(st);
		fail_msg("cache %s still listed after destroy", name);
	}
	slab_pool_disconnect(pool);
	munmap(lg, sizeof(*lg));
	if (rl)
		munmap(rl, sizeof(*rl));
	assert_int_equal(th_stop(&daemon_), 0);
}

static void test_point(void **state)
{
	run_case(*state);
}

/* A client killed inside a fold of its magazine's counters (SLAB_TEST_STOP=fold.begun,
 * reached by slab_cache_close) leaves c_fold_begin one ahead of c_fold_end for good.
 * slabd must take that as the cache's baseline (daemon/stats.c fold_baseline, logged)
 * rather than retry every stats read 1000 times, and the counters stay exact: after the
 * parent's own allocations and frees, allocs == frees and nothing is in use. */
static void test_fold_cut_short(void **state)
{
	struct slab_cache_config cfg = { .size = 64, .node = SLAB_NODE_LOCAL };
	const char *name = "crashfold";
	long long allocs, frees;
	slab_pool *pool;
	slab_cache *c;
	void *objs[500];
	json_t *st, *counters;
	pid_t pid;
	bool logged = false;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, name, &cfg, &c));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		if (th_child_init() || setenv("SLAB_TEST_STOP", "fold.begun", 1))
			_exit(EX_INIT);
		for (unsigned i = 0; i < 500; i++)
			if (!(objs[i] = slab_alloc(c)))
				_exit(EX_ALLOC);
		for (unsigned i = 0; i < 500; i++)
			if (slab_free(c, objs[i]))
				_exit(EX_FREE);
		slab_cache_close(c); /* drains and folds the magazine: stops in the fold */
		_exit(EX_NOT_REACHED);
	}
	th_track_child(pid);
	if (wait_stopped(pid, STOP_WAIT_MS) != 0)
		fail_msg("the child did not stop in the fold (exit %d)", th_wait_child(pid, 5));
	if (kill(pid, SIGKILL))
		fail_msg("kill: %s", strerror(errno));
	assert_int_equal(th_wait_child(pid, 5), 128 + SIGKILL);
	wait_reclaimed(pid);

	/* Stats reads more than a second apart: the second one takes the imbalance as
	 * the baseline and says so. */
	for (long long dl = th_now_ms() + 5000; !logged && th_now_ms() < dl; th_sleep_ms(200)) {
		st = th_cache_stats(&daemon_, name);
		assert_non_null(st);
		json_decref(st);
		logged = th_log_has(&daemon_, "fold(s) of magazine counters never finished");
	}
	if (!logged)
		fail_msg("slabd did not take the dead client's unfinished fold as the baseline");

	for (unsigned i = 0; i < 500; i++)
		objs[i] = E_PTR(slab_alloc(c));
	for (unsigned i = 0; i < 500; i++)
		E(slab_free(c, objs[i]));
	E(slab_cache_close(c));
	st = th_cache_stats(&daemon_, name);
	assert_non_null(st);
	counters = json_object_get(st, "counters");
	allocs = th_jint(counters, "alloc_fastpath") + th_jint(counters, "alloc_slowpath");
	frees = th_jint(counters, "free_fastpath") + th_jint(counters, "free_slowpath");
	if (allocs != 1000 || frees != 1000 || stat_int(st, "in_use") != 0) {
		char *s = json_dumps(st, JSON_COMPACT);
		fprintf(stderr, "%s\n", s ? s : "?");
		free(s);
		fail_msg("after the dead fold: %lld allocs and %lld frees counted (want 1000 each), "
			 "in_use %lld", allocs, frees, stat_int(st, "in_use"));
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, name), 0);
	E(slab_cache_open(pool, name, &c));
	E(slab_cache_destroy(c));
	slab_pool_disconnect(pool);
	assert_int_equal(th_stop(&daemon_), 0);
}

#define CASE(pt, sm, sk, rc) { .point = pt, .small = sm, .skip = sk, .racer = rc }
static struct point_case cases[] = {
	CASE("refill.locked", 0, 0, 0),   CASE("refill.locked", 1, 0, 0),
	CASE("refill.locked", 0, 5, 0),   CASE("refill.locked", 1, 5, 0),
	CASE("refill.unlocked", 0, 0, 0), CASE("refill.unlocked", 1, 0, 0),
	CASE("refill.unlocked", 0, 5, 0), CASE("refill.unlocked", 1, 5, 0),
	CASE("flush.locked", 0, 0, 0),    CASE("flush.locked", 1, 0, 0),
	CASE("flush.locked", 0, 5, 0),    CASE("flush.locked", 1, 5, 0),
	CASE("flush.unlocked", 0, 0, 0),  CASE("flush.unlocked", 1, 0, 0),
	CASE("flush.unlocked", 0, 5, 0),  CASE("flush.unlocked", 1, 5, 0),
	/* The child dies holding the node lock; another client is waiting for it. */
	CASE("refill.locked", 0, 0, 1),   CASE("refill.locked", 1, 3, 1),
	CASE("flush.locked", 0, 0, 1),    CASE("flush.locked", 1, 3, 1),
};

int main(void)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0]) + 1];
	char names[sizeof(cases) / sizeof(cases[0])][80];

	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "%s/%s/skip%u%s", cases[i].point,
			 cases[i].small ? "small" : "plain", cases[i].skip,
			 cases[i].racer ? "/racer" : "");
		tests[i] = (struct CMUnitTest){ .name = names[i], .test_func = test_point,
						.setup_func = setup, .teardown_func = teardown,
						.initial_state = &cases[i] };
	}
	tests[n] = (struct CMUnitTest){ .name = "fold.begun", .test_func = test_fold_cut_short,
					.setup_func = setup, .teardown_func = teardown };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
