/* test_multiproc.c - guards the engine shared by several processes on one arena (no daemon):
 * shm/magazine.c (refill, flush, drain), shm/slabs.c (free_block, list moves, robust node
 * lock), shm/validate.c (sm_node_repair) and shm/buddy.c (robust region lock, repair).
 *
 * What must never regress:
 *   - forked processes hammering one cache through their own magazines and the shared
 *     array never get the same object twice, never see an object of theirs change under
 *     them, and give everything back: afterwards every object is in a slab or a shared
 *     array, shrink empties the cache, validate is clean and the folded counters add up;
 *   - a process SIGKILLed while it holds a cache node lock in the middle of a corrupting
 *     step leaves a lock the next locker takes with 0 after rebuilding the node from the
 *     slabs' bufctl (the corruption is checked to be there first), the object it was
 *     taking is leaked to it rather than handed out twice, and the cache keeps working;
 *   - the same for a node region (page allocator) lock and its free lists;
 *   - a robust lock is never left ENOTRECOVERABLE: whoever takes it after a death (the
 *     creator or another process) repairs it, and later processes lock it normally.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "buddy.h"
#include "cache.h"
#include "list.h"
#include "lock.h"
#include "magazine.h"
#include "validate.h"

#define NR_CHILDREN   4
#define MAX_KIDS      16
#define MAG_CAP       16u
#define OBJ_SIZE      64u
#define HAMMER_HELD   2000u     /* objects a hammering child holds at most */
#define CHILD_ALARM   180u      /* a child still alive after this dies of SIGALRM */
#define WAIT_SECONDS  120.0     /* the parent gives up on hammering children after this */
#define LOCK_SECONDS  30        /* ... and on a child taking a lock after this */

/* Exit codes of the children: one per way to fail, so the parent can say which. */
enum {
	EX_OK = 0,
	EX_NOMEM = 10,  /* calloc of process memory failed */
	EX_ALLOC,       /* sm_alloc failed */
	EX_BADOFF,      /* sm_alloc returned something that is not an object of the cache */
	EX_COOKIE,      /* an object we hold changed under us (handed out twice?) */
	EX_FREE,        /* sm_free refused an object we held */
	EX_LOCK,        /* a lock call did not return 0 */
	EX_PIPE,        /* could not tell the parent */
	EX_STATS,       /* the magazine counters do not match what we did */
};

static const char *exit_name(int code)
{
	switch (code) {
	case EX_NOMEM:  return "calloc failed";
	case EX_ALLOC:  return "sm_alloc failed";
	case EX_BADOFF: return "sm_alloc returned a bad offset";
	case EX_COOKIE: return "cookie corrupt (object handed out twice?)";
	case EX_FREE:   return "sm_free refused an object it had handed out";
	case EX_LOCK:   return "lock failed";
	case EX_PIPE:   return "pipe write failed";
	case EX_STATS:  return "magazine counters inconsistent";
	case 99:        return "valgrind found errors";
	default:        return "unknown";
	}
}

/* ---- state the teardown cleans up whatever way a test ends ----------------------------- */

static struct sm_arena g_arena;
static pid_t g_kids[MAX_KIDS];    /* forked and not reaped yet; 0: free slot */
static void *g_shared;            /* MAP_SHARED results of the children */
static size_t g_shared_len;

static int teardown(void **state)
{
	(void)state;
	for (unsigned i = 0; i < MAX_KIDS; i++) {
		if (!g_kids[i])
			continue;
		kill(g_kids[i], SIGKILL);
		while (waitpid(g_kids[i], NULL, 0) < 0 && errno == EINTR)
			;
		g_kids[i] = 0;
	}
	if (g_shared) {
		munmap(g_shared, g_shared_len);
		g_shared = NULL;
	}
	sm_arena_detach(&g_arena);
	memset(&g_arena, 0, sizeof(g_arena));
	return 0;
}

/* fork; the child (0 returned) gets an alarm so it cannot outlive a hung test. */
static pid_t spawn(void)
{
	unsigned slot = 0;
	pid_t pid;

	while (slot < MAX_KIDS && g_kids[slot])
		slot++;
	if (slot == MAX_KIDS)
		fail_msg("too many children");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0) {
		/* cmocka catches these to fail the test and run the next one: a child must
		 * die of them instead, or it would go on running the parent's tests. */
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGSYS, SIGABRT };

		for (unsigned i = 0; i < SM_ARRAY_SIZE(sigs); i++)
			signal(sigs[i], SIG_DFL);
		alarm(CHILD_ALARM);
		return 0;
	}
	g_kids[slot] = pid;
	return pid;
}

static void forget(pid_t pid)
{
	for (unsigned i = 0; i < MAX_KIDS; i++)
		if (g_kids[i] == pid)
			g_kids[i] = 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait for child pid; on timeout kill it, reap it and fail.  Returns the wait status. */
static int reap(pid_t pid, double seconds)
{
	double end = now() + seconds;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
		if (now() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			forget(pid);
			fail_msg("child %d hung: killed after %.0f s", (int)pid, seconds);
		}
		usleep(2000);
	}
	forget(pid);
	return st;
}

static void assert_exit_ok(int st, const char *who)
{
	if (WIFSIGNALED(st))
		fail_msg("%s died of signal %d", who, WTERMSIG(st));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("%s exited %d: %s", who, WEXITSTATUS(st), exit_name(WEXITSTATUS(st)));
}

/* The child side of "I hold the lock now": one byte down the pipe. */
static void tell_parent(int fd)
{
	char b = 'L';

	if (write(fd, &b, 1) != 1)
		_exit(EX_PIPE);
}

/* The parent side: wait (bounded) for that byte. */
static void wait_for_child(int fd, pid_t pid)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n = -1;
	char b;
	int rc;

	while ((rc = poll(&pfd, 1, LOCK_SECONDS * 1000)) < 0 && errno == EINTR)
		;
	if (rc == 0) {
		kill(pid, SIGKILL);
		reap(pid, 10);
		fail_msg("child %d did not take the lock within %d s", (int)pid, LOCK_SECONDS);
	}
	while (rc > 0 && (n = read(fd, &b, 1)) < 0 && errno == EINTR)
		;
	if (n != 1) {
		int st = reap(pid, 10);
		fail_msg("child %d did not report holding the lock (status %#x: %s)", (int)pid,
			 st, WIFEXITED(st) ? exit_name(WEXITSTATUS(st)) : "signal");
	}
}

/* SIGKILL a child that is pausing with a lock held, and reap it. */
static void kill_child(pid_t pid)
{
	int st;

	assert_int_equal(kill(pid, SIGKILL), 0);
	st = reap(pid, LOCK_SECONDS);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
}

/* Fork a child that sets an alarm and pauses for its SIGKILL, after fn ran with the lock
 * held.  Returns its pid once it holds the lock. */
static pid_t spawn_holder(void (*fn)(struct sm_arena *a, void *arg), void *arg)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = spawn();
	if (pid == 0) {
		close(p[0]);
		fn(&g_arena, arg);
		tell_parent(p[1]);
		for (;;)
			pause();
	}
	close(p[1]);
	wait_for_child(p[0], pid);
	close(p[0]);
	return pid;
}

/* ---- helpers on the arena ------------------------------------------------------------- */

/* arena->grow for daemon-less tests: grant slabs right here. */
static int grow_direct(struct sm_arena *a, uint32_t cache_id, unsigned node, unsigned nr,
		       void *arg)
{
	int rc = sm_cache_grow(a, cache_id, node, nr);

	(void)arg;
	return rc >= 1 ? 0 : rc < 0 ? rc : -ENOMEM;
}

static uint32_t make_cache(struct sm_arena *a, const char *name)
{
	struct sm_cache_params p = {
		.name = name, .size = OBJ_SIZE, .limit = MAG_CAP, .batchcount = 8, .node = -1,
	};
	bool existed;
	uint32_t id;

	E(sm_cache_create(a, &p, &id, &existed));
	assert_false(existed);
	a->grow = grow_direct;
	a->grow_arg = NULL;
	return id;
}

static struct slab_mag *new_mag(const struct slab_cache_desc *c)
{
	struct slab_mag *m = calloc(1, sm_mag_bytes(MAG_CAP));

	if (m)
		sm_mag_init(&g_arena, m, c, MAG_CAP);
	return m;
}

/* validate's view of the objects cached in one magazine. */
struct mag_holder {
	uint32_t         cache_id;
	struct slab_mag *m;
};

static void hold_mag(void *arg, uint32_t cache_id,
		     void (*add)(void *ctx, uint64_t off, const char *where), void *ctx)
{
	struct mag_holder *h = arg;

	if (!h || !h->m || cache_id != h->cache_id)
		return;
	for (unsigned i = 0; i < h->m->m_avail; i++)
		add(ctx, sm_mag_entries(h->m)[i], "test magazine");
}

static void assert_valid(struct sm_arena *a, struct mag_holder *h)
{
	struct tu_report r;
	unsigned bad;

	memset(&r, 0, sizeof(r));
	bad = sm_validate(a, h ? hold_mag : NULL, NULL, h, tu_report, &r);
	if (bad)
		fail_msg("sm_validate: %u problem(s):\n%s", bad, r.all);
}

/* Stamp an object with its owner and sequence number; every byte depends on both. */
static void cookie_write(struct sm_arena *a, uint64_t off, unsigned who, uint64_t seq)
{
	uint64_t *w = sm_ptr(a, off), k = ((uint64_t)who << 56) ^ seq;

	w[0] = k;
	w[1] = off;
	for (unsigned i = 2; i < OBJ_SIZE / 8; i++)
		w[i] = (k + i) * 0x9E3779B97F4A7C15ULL;
}

static int cookie_ok(struct sm_arena *a, uint64_t off, unsigned who, uint64_t seq)
{
	const uint64_t *w = sm_ptr(a, off);
	uint64_t k = ((uint64_t)who << 56) ^ seq;

	if (w[0] != k || w[1] != off)
		return 0;
	for (unsigned i = 2; i < OBJ_SIZE / 8; i++)
		if (w[i] != (k + i) * 0x9E3779B97F4A7C15ULL)
			return 0;
	return 1;
}

/* What the slabs themselves say (their bufctl), against what node's lists say; read
 * without the node lock (its holder is dead) or with it. */
struct truth {
	unsigned slabs;           /* slab heads of the cache on node (not on discard) */
	unsigned listed;          /* partial + full + free list counts */
	uint64_t free_bufctl;     /* objects whose bufctl is not ACTIVE/CACHED */
	uint64_t free_objects;    /* n_free_objects */
	unsigned chain_broken;    /* slabs whose free chain is not their free objects */
};

static struct truth node_truth(struct sm_arena *a, struct slab_cache_desc *c, unsigned node)
{
	const struct slab_node_region *r = sm_region(a, node);
	const struct slab_cache_node *cn = &c->c_nodes[node];
	struct truth t = { 0 };

	for (uint32_t p = r->nr_first_page; p < r->nr_first_page + r->nr_nr_pages; p++) {
		const struct slab_page *pg = &a->pages[p];
		uint8_t *slab = sm_slab_addr(a, p);
		unsigned nfree = 0, chain = 0, x;

		if (SLAB_TAG_CID1(pg->pg_tag) != c->c_id + 1 || pg->pg_state == PG_TAIL ||
		    pg->pg_state == PG_SLAB_DISCARD)
			continue;
		t.slabs++;
		for (unsigned i = 0; i < c->c_num; i++) {
			unsigned e = sm_bufctl_get(c, slab, i);
			if (e != BUFCTL_ACTIVE && e != BUFCTL_CACHED)
				nfree++;
		}
		for (x = pg->pg_free; x < c->c_num && chain <= c->c_num; chain++) {
			x = sm_bufctl_get(c, slab, x);
			if (x == BUFCTL_ACTIVE || x == BUFCTL_CACHED)
				break;
		}
		if (chain != nfree || x != BUFCTL16_END || pg->pg_inuse + nfree != c->c_num)
			t.chain_broken++;
		t.free_bufctl += nfree;
	}
	t.listed = cn->n_partial.l_count + cn->n_full.l_count + cn->n_free.l_count;
	t.free_objects = cn->n_free_objects;
	return t;
}

/* ---- 1. many processes, one cache ------------------------------------------------------ */

struct kid_result {
	uint64_t allocs, frees, max_held;
	int64_t  err;           /* the failing call's return value, or 0 */
	uint64_t err_step;      /* the step that failed (steps when none did) */
};

struct held {
	uint64_t off, seq;
};

/* One hammering child: never returns. */
static void hammer(struct sm_arena *a, uint32_t id, unsigned who, unsigned long steps,
		   int gate, struct kid_result *res)
{
	struct slab_cache_desc *c = sm_cache(a, id);
	struct slab_mag *m = new_mag(c);
	struct held *h = calloc(HAMMER_HELD, sizeof(*h));
	uint64_t seed = 0x5eed0000ull + who * 0x1000193ull, seq = 0;
	unsigned long step;
	unsigned n = 0;
	int code = EX_OK, filling = 1;
	char go;

	if (!m || !h)
		_exit(EX_NOMEM);
	/* The start gate: all children begin together, so they really contend. */
	while (read(gate, &go, 1) < 0 && errno == EINTR)
		;
	close(gate);
	for (step = 0; step < steps && code == EX_OK; step++) {
		uint64_t r = tu_rand(&seed), off;
		uint32_t head, idx;
		int alloc;

		/* Sweep: mostly allocate up to the cap, then mostly free down to nothing, so
		 * magazines keep running dry and overflowing, and slabs go full, partial,
		 * empty (discarded, reaped) and back. */
		if (n == HAMMER_HELD)
			filling = 0;
		else if (n == 0)
			filling = 1;
		alloc = n == 0 || (n < HAMMER_HELD && (filling ? (r & 3) != 0 : (r & 3) == 0));

		if (alloc) {
			int rc = sm_alloc(a, c, m, 0, &off);

			if (rc) {
				res->err = rc;
				code = EX_ALLOC;
				break;
			}
			if (sm_obj_lookup(a, c, off, &head, &idx) != OBJ_OK) {
				code = EX_BADOFF;
				break;
			}
			h[n].off = off;
			h[n].seq = ++seq;
			cookie_write(a, off, who, seq);
			n++;
			res->allocs++;
			if (n > res->max_held)
				res->max_held = n;
		} else {
			unsigned i = (unsigned)((r >> 16) % n);

			off = h[i].off;
			if (!cookie_ok(a, off, who, h[i].seq)) {
				code = EX_COOKIE;
				break;
			}
			memset(sm_ptr(a, off), 0x6b, OBJ_SIZE); /* POISON_FREE */
			if (sm_free(a, c, m, 0, off)) {
				code = EX_FREE;
				break;
			}
			h[i] = h[--n];
			res->frees++;
		}
	}
	res->err_step = step;
	/* Check and give back everything, even after a failure, so the parent's report
	 * is about the first problem only. */
	while (n) {
		n--;
		if (!cookie_ok(a, h[n].off, who, h[n].seq) && code == EX_OK)
			code = EX_COOKIE;
		if (sm_free(a, c, m, 0, h[n].off) && code == EX_OK)
			code = EX_FREE;
		res->frees++;
	}
	if (code == EX_OK &&
	    (m->m_stat[STAT_ALLOC_FASTPATH] + m->m_stat[STAT_ALLOC_SLOWPATH] != res->allocs ||
	     sm_mag_free_fastpath(m) + m->m_stat[STAT_FREE_SLOWPATH] != res->frees))
		code = EX_STATS;
	sm_mag_drain(a, c, m, 1);
	free(m);
	free(h);
	_exit(code);
}

static void test_hammer(void **state)
{
	struct sm_arena *a = &g_arena;
	unsigned long steps = tu_scaled(200000);
	struct sm_cache_counts cnt;
	struct kid_result *res, sum = { 0 };
	struct slab_cache_desc *c;
	pid_t pids[NR_CHILDREN];
	int gate[2];
	unsigned pending = NR_CHILDREN, reaps = 0, released = 0;
	double t0 = now(), end = t0 + WAIT_SECONDS;
	uint32_t id;

	(void)state;
	tu_arena(a, 64 << 20, 1);
	id = make_cache(a, "mp-hammer");
	c = sm_cache(a, id);

	g_shared_len = NR_CHILDREN * sizeof(struct kid_result);
	g_shared = mmap(NULL, g_shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	assert_true(g_shared != MAP_FAILED);
	res = g_shared;
	memset(res, 0, g_shared_len);

	assert_int_equal(pipe(gate), 0);
	for (unsigned i = 0; i < NR_CHILDREN; i++) {
		pids[i] = spawn();
		if (pids[i] == 0) {
			close(gate[1]);
			hammer(a, id, i + 1, steps, gate[0], &res[i]);
		}
	}
	close(gate[0]);
	close(gate[1]);         /* open the gate: every child's read returns 0 */

	/* While they run, play the daemon's background reaper: give discarded slabs back
	 * to the page allocator under the node lock they contend for. */
	while (pending) {
		for (unsigned i = 0; i < NR_CHILDREN; i++) {
			char who[128];
			int st;
			pid_t r;

			if (!pids[i])
				continue;
			r = waitpid(pids[i], &st, WNOHANG);
			if (r == 0)
				continue;
			if (r < 0)
				fail_msg("waitpid: %s", strerror(errno));
			forget(pids[i]);
			pids[i] = 0;
			pending--;
			snprintf(who, sizeof(who), "hammering child %u (rc %lld at step %llu, %u "
				 "pages free)", i + 1, (long long)res[i].err,
				 (unsigned long long)res[i].err_step, sm_region(a, 0)->nr_free_pages);
			assert_exit_ok(st, who);
		}
		if (now() > end)
			fail_msg("hammering children still running after %.0f s", WAIT_SECONDS);
		released += sm_cache_reap(a, id);
		reaps++;
		usleep(1000);
	}

	for (unsigned i = 0; i < NR_CHILDREN; i++) {
		sum.allocs += res[i].allocs;
		sum.frees += res[i].frees;
		assert_int_equal(res[i].allocs, res[i].frees);
		assert_true(res[i].max_held > HAMMER_HELD / 2 || steps < 2 * HAMMER_HELD);
	}

	/* Every object is back in a slab or a shared array. */
	sm_cache_counts(a, id, &cnt);
	assert_int_equal(cnt.active_objs, cnt.shared_avail);
	assert_valid(a, NULL);

	/* The children's folded counters: all they allocated, they freed, nothing refused. */
	assert_int_equal(c->c_stat[STAT_ALLOC_FASTPATH] + c->c_stat[STAT_ALLOC_SLOWPATH],
			 sum.allocs);
	assert_int_equal(c->c_stat[STAT_FREE_FASTPATH] + c->c_stat[STAT_FREE_SLOWPATH],
			 sum.frees);
	assert_int_equal(sum.allocs, sum.frees);
	assert_int_equal(c->c_stat[STAT_DOUBLE_FREE], 0);
	assert_int_equal(c->c_stat[STAT_INVALID_FREE], 0);
	/* limit 16 / batchcount 8: the slow paths ran, each slow alloc refilled once and
	 * each slow free flushed once. */
	assert_true(c->c_stat[STAT_ALLOC_SLOWPATH] > 0);
	assert_true(c->c_stat[STAT_FREE_SLOWPATH] > 0);
	assert_int_equal(c->c_stat[STAT_ALLOC_REFILL], c->c_stat[STAT_ALLOC_SLOWPATH]);
	assert_int_equal(c->c_stat[STAT_FREE_FLUSH], c->c_stat[STAT_FREE_SLOWPATH]);
	assert_true(c->c_stat[STAT_ALLOC_SLAB] >= (HAMMER_HELD / c->c_num) ||
		    steps < 2 * HAMMER_HELD);

	/* kmem_cache_shrink: drain the shared array, release every slab. */
	released += sm_cache_shrink(a, id);
	sm_cache_counts(a, id, &cnt);
	assert_int_equal(cnt.active_objs, 0);
	assert_int_equal(cnt.shared_avail, 0);
	assert_int_equal(cnt.num_slabs, 0);
	assert_int_equal(cnt.node[0].nr_discard, 0);
	assert_int_equal(c->c_stat[STAT_FREE_SLAB], c->c_stat[STAT_ALLOC_SLAB]);
	assert_int_equal(released, c->c_stat[STAT_FREE_SLAB]);
	assert_int_equal(sm_region(a, 0)->nr_free_pages, sm_region(a, 0)->nr_nr_pages);
	assert_valid(a, NULL);

	printf("hammer: %d children x %lu steps, %llu allocs (%llu slow), %llu frees "
	       "(%llu slow), %llu slabs granted, %u reaps, %.2f s\n", NR_CHILDREN, steps,
	       (unsigned long long)sum.allocs,
	       (unsigned long long)c->c_stat[STAT_ALLOC_SLOWPATH],
	       (unsigned long long)sum.frees,
	       (unsigned long long)c->c_stat[STAT_FREE_SLOWPATH],
	       (unsigned long long)c->c_stat[STAT_ALLOC_SLAB], reaps, now() - t0);
}

/* ---- 2. a node lock holder dies mid-step ---------------------------------------------- */

struct node_victim {
	uint32_t cache_id;
	uint32_t partial;   /* the slab an object is half taken from */
	uint32_t full;      /* the slab half moved off the full list */
	unsigned idx;       /* the object half taken */
};

/* Child, node lock held: take an object out of a partial slab by hand (bufctl ACTIVE,
 * nothing else updated: slab_get_obj cut short), and unlink the full slab without
 * putting it anywhere (move_slab cut short). */
static void corrupt_node(struct sm_arena *a, void *arg)
{
	struct node_victim *v = arg;
	struct slab_cache_desc *c = sm_cache(a, v->cache_id);
	struct slab_cache_node *cn = &c->c_nodes[0];

	if (sm_node_lock(a, c, 0))
		_exit(EX_LOCK);
	sm_bufctl_set(c, sm_slab_addr(a, v->partial), v->idx, BUFCTL_ACTIVE);
	sm_list_del(a->pages, &cn->n_full, v->full);
}

static void lock_node_and_die(struct sm_arena *a, void *arg)
{
	const uint32_t *id = arg;

	if (sm_node_lock(a, sm_cache(a, *id), 0))
		_exit(EX_LOCK);
}

/* A child that takes and releases the node lock (and the region lock) normally. */
static void lock_normally(struct sm_arena *a, uint32_t id)
{
	pid_t pid = spawn();
	int st;

	if (pid == 0) {
		struct slab_cache_desc *c = sm_cache(a, id);

		if (sm_node_lock(a, c, 0))
			_exit(EX_LOCK);
		sm_node_unlock(c, 0);
		if (sm_region_lock(a, 0))
			_exit(EX_LOCK);
		sm_region_unlock(a, 0);
		_exit(EX_OK);
	}
	st = reap(pid, LOCK_SECONDS);
	assert_exit_ok(st, "locking child");
}

static void test_node_lock_owner_dead(void **state)
{
	struct sm_arena *a = &g_arena;
	struct slab_cache_desc *c;
	struct slab_cache_node *cn;
	struct sm_cache_counts cnt;
	struct node_victim v;
	struct mag_holder hm;
	struct slab_mag *m;
	struct truth t;
	uint64_t *objs, leaked, seq = 0;
	unsigned nobj = 0, inuse_before;
	uint32_t id;
	pid_t pid;

	(void)state;
	tu_arena(a, 16 << 20, 1);
	id = make_cache(a, "mp-node-dead");
	c = sm_cache(a, id);
	cn = &c->c_nodes[0];
	m = new_mag(c);
	objs = calloc(1024, sizeof(*objs));
	assert_non_null(m);
	assert_non_null(objs);
	hm.cache_id = id;
	hm.m = m;

	/* One full slab and one partial one. */
	while (nobj < c->c_num + c->c_num / 2) {
		E(sm_alloc(a, c, m, 0, &objs[nobj]));
		cookie_write(a, objs[nobj], 0, ++seq);
		nobj++;
	}
	assert_int_equal(cn->n_full.l_count, 1);
	assert_int_equal(cn->n_partial.l_count, 1);
	assert_valid(a, &hm);

	v.cache_id = id;
	v.partial = cn->n_partial.l_head;
	v.full = cn->n_full.l_head;
	v.idx = a->pages[v.partial].pg_free;
	assert_true(v.idx < c->c_num);
	leaked = ((uint64_t)v.partial << SLAB_PAGE_SHIFT) + (uint64_t)v.idx * c->c_size;
	inuse_before = a->pages[v.partial].pg_inuse;

	pid = spawn_holder(corrupt_node, &v);
	kill_child(pid);

	/* The corruption is there (read without the lock, whose holder is dead). */
	t = node_truth(a, c, 0);
	assert_int_equal(t.slabs, 2);
	assert_int_equal(t.listed, 1);                 /* the full slab is on no list */
	assert_int_equal(t.free_bufctl + 1, t.free_objects); /* one object taken unaccounted */
	assert_int_equal(t.chain_broken, 1);           /* its chain runs into it */
	assert_int_equal(cn->n_full.l_count, 0);
	assert_int_equal(a->pages[v.full].pg_state, PG_SLAB_FULL);

	/* The next locker repairs and gets the lock. */
	E(sm_node_lock(a, c, 0));
	t = node_truth(a, c, 0);
	assert_int_equal(t.slabs, 2);
	assert_int_equal(t.listed, 2);
	assert_int_equal(t.free_bufctl, t.free_objects);
	assert_int_equal(t.chain_broken, 0);
	assert_int_equal(cn->n_full.l_count, 1);
	assert_int_equal(cn->n_partial.l_count, 1);
	/* The half-taken object stays out: leaked to the dead holder, never handed twice. */
	assert_int_equal(a->pages[v.partial].pg_inuse, inuse_before + 1);
	sm_node_unlock(c, 0);
	assert_valid(a, &hm);

	/* The cache still works: more objects (new slabs too), none of them the leaked
	 * one, none of the old ones disturbed. */
	for (unsigned i = 0; i < 4 * c->c_num; i++) {
		E(sm_alloc(a, c, m, 0, &objs[nobj]));
		assert_true(objs[nobj] != leaked);
		cookie_write(a, objs[nobj], 0, ++seq);
		nobj++;
	}
	assert_valid(a, &hm);
	for (unsigned i = 0; i < nobj; i++) {
		assert_true(cookie_ok(a, objs[i], 0, i + 1));
		E(sm_free(a, c, m, 0, objs[i]));
	}
	sm_mag_drain(a, c, m, 1);
	sm_cache_counts(a, id, &cnt);
	assert_int_equal(cnt.active_objs - cnt.shared_avail, 1); /* the leaked object */
	assert_int_equal(c->c_stat[STAT_DOUBLE_FREE] + c->c_stat[STAT_INVALID_FREE], 0);

	/* Reclaiming it (what slabd does for a dead client) empties the cache. */
	assert_int_equal(sm_give_back(a, c, &leaked, 1, 0), 0);
	sm_cache_shrink(a, id);
	sm_cache_counts(a, id, &cnt);
	assert_int_equal(cnt.active_objs, 0);
	assert_int_equal(cnt.num_slabs, 0);
	assert_valid(a, NULL);

	/* The lock is usable by anyone afterwards (see also test 3). */
	lock_normally(a, id);
	E(sm_node_lock(a, c, 0));
	sm_node_unlock(c, 0);

	free(m);
	free(objs);
}

/* ---- 2b. a region lock holder dies mid-step ------------------------------------------- */

/* Child, region lock held: pop the largest free block off its list without updating
 * nr_free_pages or its page state (sm_do_pages_alloc cut short). */
static void corrupt_region(struct sm_arena *a, void *arg)
{
	struct slab_node_region *r = sm_region(a, 0);
	int k;

	(void)arg;
	if (sm_region_lock(a, 0))
		_exit(EX_LOCK);
	k = sm_buddy_largest(a, 0);
	if (k < 0)
		_exit(EX_LOCK);
	sm_list_pop(a->pages, &r->nr_free[k]);
}

static void test_region_lock_owner_dead(void **state)
{
	struct sm_arena *a = &g_arena;
	struct slab_node_region *r;
	struct tu_report rep;
	uint32_t blocks[6], head;
	unsigned bad;
	pid_t pid;

	(void)state;
	tu_arena(a, 16 << 20, 1);
	r = sm_region(a, 0);
	/* Some allocated blocks of mixed orders the repair must keep. */
	for (unsigned i = 0; i < SM_ARRAY_SIZE(blocks); i++)
		E(sm_pages_alloc(a, 0, i % 4, &blocks[i]));

	pid = spawn_holder(corrupt_region, NULL);
	kill_child(pid);

	memset(&rep, 0, sizeof(rep));
	bad = sm_buddy_check(a, 0, tu_report, &rep); /* no lock: its holder is dead */
	assert_true(bad > 0);

	/* The next locker (an allocation) repairs the free lists first. */
	E(sm_pages_alloc(a, 0, 2, &head));
	E(sm_region_lock(a, 0));
	memset(&rep, 0, sizeof(rep));
	bad = sm_buddy_check(a, 0, tu_report, &rep);
	sm_region_unlock(a, 0);
	if (bad)
		fail_msg("after repair: %u problem(s):\n%s", bad, rep.all);
	for (unsigned i = 0; i < SM_ARRAY_SIZE(blocks); i++) {
		assert_int_equal(a->pages[blocks[i]].pg_state, PG_BLOCK);
		assert_true(head < blocks[i] || head >= blocks[i] + (1u << (i % 4)));
	}
	assert_valid(a, NULL);

	E(sm_pages_free(a, head));
	for (unsigned i = 0; i < SM_ARRAY_SIZE(blocks); i++)
		E(sm_pages_free(a, blocks[i]));
	assert_int_equal(r->nr_free_pages, r->nr_nr_pages);
	assert_valid(a, NULL);
}

/* ---- 3. never ENOTRECOVERABLE ---------------------------------------------------------- */

static void lock_region_and_die(struct sm_arena *a, void *arg)
{
	(void)arg;
	if (sm_region_lock(a, 0))
		_exit(EX_LOCK);
}

/* A child that takes a lock whose holder died (so it is the one that repairs) and then
 * exits still holding it (a clean _exit is a death too, for a robust mutex). */
static void repair_and_exit(struct sm_arena *a, uint32_t id)
{
	pid_t pid = spawn();
	int st;

	if (pid == 0) {
		if (sm_node_lock(a, sm_cache(a, id), 0) || sm_region_lock(a, 0))
			_exit(EX_LOCK);
		_exit(EX_OK);
	}
	st = reap(pid, LOCK_SECONDS);
	assert_exit_ok(st, "repairing child");
}

static void test_never_unrecoverable(void **state)
{
	struct sm_arena *a = &g_arena;
	struct slab_cache_desc *c;
	struct mag_holder hm;
	struct slab_mag *m;
	uint64_t objs[100];
	uint32_t id;

	(void)state;
	tu_arena(a, 16 << 20, 1);
	id = make_cache(a, "mp-recover");
	c = sm_cache(a, id);
	m = new_mag(c);
	assert_non_null(m);
	hm.cache_id = id;
	hm.m = m;
	for (unsigned i = 0; i < SM_ARRAY_SIZE(objs); i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));

	for (unsigned round = 0; round < 3; round++) {
		/* Killed holders; the parent repairs. */
		kill_child(spawn_holder(lock_node_and_die, &id));
		kill_child(spawn_holder(lock_region_and_die, NULL));
		E(sm_node_lock(a, c, 0));
		sm_node_unlock(c, 0);
		E(sm_region_lock(a, 0));
		sm_region_unlock(a, 0);
		lock_normally(a, id);

		/* Killed holders; another process repairs, then dies holding both. */
		kill_child(spawn_holder(lock_node_and_die, &id));
		kill_child(spawn_holder(lock_region_and_die, NULL));
		repair_and_exit(a, id);
		lock_normally(a, id);
		E(sm_node_lock(a, c, 0));
		sm_node_unlock(c, 0);
		E(sm_region_lock(a, 0));
		sm_region_unlock(a, 0);
		assert_valid(a, &hm);
	}

	/* And the cache still works across it all. */
	for (unsigned i = 0; i < SM_ARRAY_SIZE(objs); i++)
		E(sm_free(a, c, m, 0, objs[i]));
	for (unsigned i = 0; i < SM_ARRAY_SIZE(objs); i++)
		E(sm_alloc(a, c, m, 0, &objs[i]));
	for (unsigned i = 0; i < SM_ARRAY_SIZE(objs); i++)
		E(sm_free(a, c, m, 0, objs[i]));
	sm_mag_drain(a, c, m, 0);
	assert_valid(a, NULL);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_hammer, teardown),
		cmocka_unit_test_teardown(test_node_lock_owner_dead, teardown),
		cmocka_unit_test_teardown(test_region_lock_owner_dead, teardown),
		cmocka_unit_test_teardown(test_never_unrecoverable, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
