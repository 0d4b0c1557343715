/* test_numa.c - guards NUMA placement across processes (issue 5, must show) on a slabd
 * with two virtual nodes (--nodes 2), so it runs on a one-node host too.
 *
 * Each test drives "agents": fork + exec of this binary with --agent, each its own
 * libslab client, pinned to the CPU it starts on, with SLAB_NODE set (or not) in its
 * environment before slab_pool_connect.  The test sends an agent commands through a
 * pipe (open a cache, allocate n, free these offsets, free all, close, quit) and gets
 * back a status and the offsets (slab_offset) of what it allocated.  Every step is a
 * request and its reply: nothing depends on timing.
 *
 * Where a node's pages are: arena.stats gives meta_bytes and each node's total_bytes;
 * the node regions follow the metadata, contiguous and in node order
 * (shm/arena.c sm_arena_plan: node 0's first page is ah_meta_pages, each next region
 * starts where the previous ends, the last one ends at the arena's end), so node n holds
 * [meta_bytes + sum of total_bytes of nodes < n, + total_bytes of n).  An object lies in
 * its slab, and a slab in one node's region, so checking each object's offset checks
 * every slab.
 *
 * Refill takes the local node's objects, then the other nodes', and only then asks for a
 * fresh slab on the local node (DESIGN.md, shm/magazine.c sm_mag_refill).  So a process
 * gets its own node's slabs exactly when the other node has no free object of the cache
 * to lend; the placement test drains a node (allocates exactly what it still has) before
 * the other node's process allocates.
 *
 *  test_local_placement   cache "local" (node SLAB_NODE_LOCAL): the node-0 process
 *      allocates, drains node 0; the node-1 process allocates, drains node 1; the node-0
 *      process allocates again.  Every object of each lies in its own node's region; both
 *      nodes got slabs; all frees are local (alien_free 0); in_use 0 and validate clean.
 *  test_alien_free        cache "alien": the node-1 process allocates N (node 1's
 *      region); the node-0 process frees all N and closes its handle (which flushes its
 *      alien buffers).  Then exactly: alien_free == N, the other free counters did not
 *      move, node 1's free_objects + shared_avail grew by N, node 0's lists did not change
 *      (still no slab, no free object, nothing shared), in_use 0, validate clean.
 *  test_kfree_alien       the same through slab_kmalloc / slab_kfree (kmalloc-64): the
 *      node-0 process kfrees the node-1 process's N objects and disconnects; alien_free
 *      == N, no local free counted, node 0 has no slab, in_use 0, validate clean.
 *  test_pinned_cache      cache "pinned" created with node = 1: the node-0 process
 *      allocates N; every object lies in node 1's region and node 0 has no slab at all
 *      (partial + full + free + discard == 0), before and after it frees them.
 *  test_slab_node_ignored SLAB_NODE out of range or malformed ("2", "3", "99", "-1",
 *      "1x", "abc", ""): libclient/pool.c ignores it and the thread's real node is used
 *      (numa_node_of_cpu % nodes, pool.c slab_thread_node); with valid values ("0", "1")
 *      the process goes to that node.  Each on a fresh cache; every object lies in the
 *      expected node's region.
 *
 * N is 3000 objects (divided by $SLAB_TEST_SCALE, at least 200).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NR_NODES     2
#define NR_OBJECTS   3000ul
#define OBJ_SIZE     64
#define CHILD_ALARM  120u
#define CHILD_WAIT_S 30
#define REPLY_MS     30000

/* ---- the agent's protocol ------------------------------------------------------------ */

enum op {
	OP_OPEN = 1,   /* name: slab_cache_open; "kmalloc": slab_kmalloc/slab_kfree instead */
	OP_ALLOC,      /* n: allocate n objects, keep them; reply: their n offsets */
	OP_FREE,       /* n, then n offsets: slab_free each (objects someone else got) */
	OP_FREE_ALL,   /* free every object this agent holds */
	OP_CLOSE,      /* slab_cache_close */
	OP_NODE,       /* reply value: the real NUMA node of the CPU the agent is pinned to */
	OP_QUIT,       /* close what is open, disconnect, exit 0 */
};

struct cmd {
	uint32_t op;
	uint32_t n;
	char     name[64];
};

struct reply {
	int32_t  status;  /* 0 or a negative errno (the library's) */
	uint32_t n;       /* offsets that follow */
	int32_t  value;
	uint32_t pad;
};

/* ---- the agent process ----------------------------------------------------------------- */

struct agent_state {
	slab_pool  *pool;
	slab_cache *cache;
	bool        km;        /* objects of slab_kmalloc(OBJ_SIZE), freed with slab_kfree */
	void      **held;
	size_t      nheld, cap;
	int         node;      /* real NUMA node of the pinned CPU */
};

static int reply_to(int fd, int32_t status, int32_t value, const uint64_t *offs, uint32_t n)
{
	struct reply r = { .status = status, .n = n, .value = value };

	if (th_write_all(fd, &r, sizeof(r)) || (n && th_write_all(fd, offs, n * sizeof(*offs))))
		return -1;
	return 0;
}

static bool agent_ready(const struct agent_state *s)
{
	return s->cache || s->km;
}

static void *obj_alloc(struct agent_state *s)
{
	return s->km ? slab_kmalloc(s->pool, OBJ_SIZE) : slab_alloc(s->cache);
}

static int obj_free(struct agent_state *s, void *o)
{
	return s->km ? slab_kfree(s->pool, o) : slab_free(s->cache, o);
}

static int agent_alloc(struct agent_state *s, uint32_t n, int rfd)
{
	uint64_t *offs = malloc((n ? n : 1) * sizeof(*offs));
	int32_t status = 0;
	uint32_t got = 0;

	if (offs && s->nheld + n > s->cap) {
		size_t cap = s->nheld + n + 1024;
		void **held = realloc(s->held, cap * sizeof(*held));

		if (held) {
			s->held = held;
			s->cap = cap;
		}
	}
	if (!offs || s->nheld + n > s->cap) {
		fprintf(stderr, "agent: out of memory\n");
		free(offs);
		return -1;
	}
	if (!agent_ready(s))
		status = -EBADF;
	for (; !status && got < n; got++) {
		void *o = obj_alloc(s);

		if (!o) {
			status = errno ? -errno : -ENOMEM;
			fprintf(stderr, "agent pid %d: slab_alloc: %s\n", (int)getpid(),
				slab_strerror(status));
			break;
		}
		offs[got] = slab_offset(s->pool, o);
		if (offs[got] == UINT64_MAX || slab_pointer(s->pool, offs[got]) != o) {
			fprintf(stderr, "agent: slab_offset/slab_pointer do not round-trip\n");
			status = -EFAULT;
			obj_free(s, o);
			break;
		}
		memset(o, 0xa5, OBJ_SIZE);
		s->held[s->nheld++] = o;
	}
	got = status ? 0 : n;
	status = reply_to(rfd, status, 0, offs, got);
	free(offs);
	return status;
}

static int agent_free(struct agent_state *s, uint32_t n, int cfd, int rfd)
{
	uint64_t *offs = malloc((n ? n : 1) * sizeof(*offs));
	int32_t status = 0;

	if (!offs)
		return -1;
	if (n && th_read_all(cfd, offs, n * sizeof(*offs), -1)) {
		free(offs);
		return -1;
	}
	if (!agent_ready(s))
		status = -EBADF;
	for (uint32_t i = 0; i < n && !status; i++) {
		void *o = slab_pointer(s->pool, offs[i]);

		status = o ? obj_free(s, o) : -EFAULT;
		if (status)
			fprintf(stderr, "agent pid %d: slab_free(offset %llu): %s\n", (int)getpid(),
				(unsigned long long)offs[i], slab_strerror(status));
	}
	free(offs);
	return reply_to(rfd, status, 0, NULL, 0);
}

static int agent_free_all(struct agent_state *s)
{
	while (s->nheld) {
		int rc = obj_free(s, s->held[s->nheld - 1]);

		if (rc) {
			fprintf(stderr, "agent pid %d: slab_free of a held object: %s\n",
				(int)getpid(), slab_strerror(rc));
			return rc;
		}
		s->nheld--;
	}
	return 0;
}

/* Pin the process to the CPU it runs on, so the node libslab sees (getcpu) is stable,
 * and remember that CPU's node. */
static int pin_here(struct agent_state *s)
{
	unsigned cpu, node;
	cpu_set_t set;
	int c = sched_getcpu();

	if (c < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(c, &set);
	if (sched_setaffinity(0, sizeof(set), &set) || getcpu(&cpu, &node))
		return -1;
	s->node = (int)node;
	return 0;
}

/* --agent SOCKET NODEENV CMDFD REPLYFD; NODEENV "-": no SLAB_NODE, "=V": SLAB_NODE=V. */
static int agent_main(char **argv)
{
	const char *sock = argv[2], *nodeenv = argv[3];
	int cfd = atoi(argv[4]), rfd = atoi(argv[5]), rc;
	struct agent_state s = { 0 };
	struct cmd c;

	alarm(CHILD_ALARM);
	if (th_child_init() || pin_here(&s)) {
		fprintf(stderr, "agent: pinning to a CPU failed: %s\n", strerror(errno));
		return 3;
	}
	if (nodeenv[0] == '=' ? setenv("SLAB_NODE", nodeenv + 1, 1) : unsetenv("SLAB_NODE"))
		return 3;
	rc = slab_pool_connect(sock, &s.pool);
	if (rc) {
		fprintf(stderr, "agent: slab_pool_connect(%s): %s\n", sock, slab_strerror(rc));
		return 4;
	}
	for (;;) {
		int32_t status = 0;

		if (th_read_all(cfd, &c, sizeof(c), -1))
			return 5; /* the test is gone */
		c.name[sizeof(c.name) - 1] = 0;
		switch (c.op) {
		case OP_OPEN:
			if (agent_ready(&s))
				status = -EBUSY;
			else if (!strcmp(c.name, "kmalloc"))
				s.km = true;
			else
				status = slab_cache_open(s.pool, c.name, &s.cache);
			break;
		case OP_ALLOC:
			if (agent_alloc(&s, c.n, rfd))
				return 6;
			continue;
		case OP_FREE:
			if (agent_free(&s, c.n, cfd, rfd))
				return 6;
			continue;
		case OP_FREE_ALL:
			status = agent_ready(&s) ? agent_free_all(&s) : -EBADF;
			break;
		case OP_CLOSE:
			/* kmalloc: its handles are the pool's, flushed at OP_QUIT */
			status = s.km ? 0 : s.cache ? slab_cache_close(s.cache) : -EBADF;
			s.cache = NULL;
			s.km = false;
			s.nheld = 0;
			break;
		case OP_NODE:
			if (reply_to(rfd, 0, s.node, NULL, 0))
				return 6;
			continue;
		case OP_QUIT:
			if (s.cache)
				status = slab_cache_close(s.cache);
			slab_pool_disconnect(s.pool);
			free(s.held);
			if (reply_to(rfd, status, 0, NULL, 0))
				return 6;
			return status ? 7 : 0;
		default:
			status = -EINVAL;
		}
		if (reply_to(rfd, status, 0, NULL, 0))
			return 6;
	}
}

/* ---- the test's side of the agents ------------------------------------------------------ */

struct agent {
	pid_t       pid;
	int         cmd, rep;   /* our ends of the pipes */
	const char *who;
};

static void agent_start(struct agent *ag, const char *socket, const char *nodeenv,
			const char *who)
{
	int cp[2], rp[2];
	char a_c[16], a_r[16];

	assert_int_equal(pipe2(cp, O_CLOEXEC), 0);
	assert_int_equal(pipe2(rp, O_CLOEXEC), 0);
	snprintf(a_c, sizeof(a_c), "%d", cp[0]);
	snprintf(a_r, sizeof(a_r), "%d", rp[1]);
	ag->pid = th_spawn_self((const char *const[]){ "--agent", socket, nodeenv, a_c, a_r,
						       NULL },
				(const int[]){ cp[0], rp[1] }, 2);
	assert_true(ag->pid > 0);
	assert_int_equal(close(cp[0]), 0);
	assert_int_equal(close(rp[1]), 0);
	ag->cmd = cp[1];
	ag->rep = rp[0];
	ag->who = who;
}

/* One command; returns the agent's status.  With out, *out gets the offsets (free it)
 * and *nout their number; with value, the reply's value. */
static int agent_call(struct agent *ag, uint32_t op, const char *name, uint32_t n,
		      const uint64_t *in, uint64_t **out, size_t *nout, int *value)
{
	struct cmd c = { .op = op, .n = n };
	struct reply r;

	if (name)
		snprintf(c.name, sizeof(c.name), "%s", name);
	if (th_write_all(ag->cmd, &c, sizeof(c)) ||
	    (op == OP_FREE && n && th_write_all(ag->cmd, in, n * sizeof(*in))))
		fail_msg("%s (pid %d): cannot send command %u: %s", ag->who, (int)ag->pid, op,
			 strerror(errno));
	if (th_read_all(ag->rep, &r, sizeof(r), REPLY_MS))
		fail_msg("%s (pid %d): no reply to command %u (it died or hung)", ag->who,
			 (int)ag->pid, op);
	if (r.n) {
		uint64_t *offs = malloc(r.n * sizeof(*offs));

		assert_non_null(offs);
		if (th_read_all(ag->rep, offs, r.n * sizeof(*offs), REPLY_MS))
			fail_msg("%s (pid %d): short reply to command %u", ag->who, (int)ag->pid, op);
		if (out) {
			*out = offs;
			*nout = r.n;
		} else {
			free(offs);
		}
	} else if (out) {
		*out = NULL;
		*nout = 0;
	}
	if (value)
		*value = r.value;
	return r.status;
}

/* A command that must succeed. */
static void agent_ok(struct agent *ag, uint32_t op, const char *name)
{
	int rc = agent_call(ag, op, name, 0, NULL, NULL, NULL, NULL);

	if (rc)
		fail_msg("%s (pid %d): command %u (%s): %s", ag->who, (int)ag->pid, op,
			 name ? name : "", slab_strerror(rc));
}

/* Allocate n objects in the agent; returns their offsets (exactly n). */
static uint64_t *agent_alloc_n(struct agent *ag, size_t n)
{
	uint64_t *offs;
	size_t got;
	int rc = agent_call(ag, OP_ALLOC, NULL, (uint32_t)n, NULL, &offs, &got, NULL);

	if (rc)
		fail_msg("%s (pid %d): allocating %zu objects: %s", ag->who, (int)ag->pid, n,
			 slab_strerror(rc));
	assert_int_equal(got, n);
	return offs;
}

static void agent_free_offsets(struct agent *ag, const uint64_t *offs, size_t n)
{
	int rc = agent_call(ag, OP_FREE, NULL, (uint32_t)n, offs, NULL, NULL, NULL);

	if (rc)
		fail_msg("%s (pid %d): freeing %zu objects: %s", ag->who, (int)ag->pid, n,
			 slab_strerror(rc));
}

static void agent_quit(struct agent *ag)
{
	int rc;

	agent_ok(ag, OP_QUIT, NULL);
	rc = th_wait_child(ag->pid, CHILD_WAIT_S);
	if (rc)
		fail_msg("%s (pid %d) exited with %d", ag->who, (int)ag->pid, rc);
	assert_int_equal(close(ag->cmd), 0);
	assert_int_equal(close(ag->rep), 0);
	ag->pid = 0;
}

/* ---- where the nodes are, what the caches hold ------------------------------------------- */

struct regions {
	uint64_t start[NR_NODES + 1];   /* node n: [start[n], start[n + 1]) */
};

static void get_regions(struct th_daemon *d, struct regions *rg)
{
	json_t *r = th_request(d, "{\"id\":1,\"cmd\":\"arena.stats\"}"), *nodes, *n;
	size_t i;

	th_assert_ok(r, "arena.stats");
	nodes = json_object_get(r, "nodes");
	assert_int_equal(json_array_size(nodes), NR_NODES);
	rg->start[0] = (uint64_t)th_jint(r, "meta_bytes");
	assert_true(rg->start[0] > 0 && rg->start[0] % 4096 == 0);
	json_array_foreach(nodes, i, n) {
		assert_int_equal(th_jint(n, "node"), (long long)i);
		assert_true(th_jint(n, "total_bytes") > 0);
		rg->start[i + 1] = rg->start[i] + (uint64_t)th_jint(n, "total_bytes");
	}
	/* The regions tile the arena after the metadata. */
	assert_int_equal(rg->start[NR_NODES], (uint64_t)th_jint(r, "size"));
	json_decref(r);
}

static int region_of(const struct regions *rg, uint64_t off)
{
	for (int n = 0; n < NR_NODES; n++)
		if (off >= rg->start[n] && off < rg->start[n + 1])
			return n;
	return -1;
}

/* Every object (and so every slab) lies in node's region. */
static void assert_all_in(const struct regions *rg, const uint64_t *offs, size_t n, int node,
			  const char *who)
{
	size_t wrong = 0, first = 0;

	for (size_t i = 0; i < n; i++)
		if (region_of(rg, offs[i]) != node && !wrong++)
			first = i;
	if (wrong)
		fail_msg("%s: %zu of %zu objects are not in node %d's region [%llu, %llu); the "
			 "first, offset %llu, is in node %d's", who, wrong, n, node,
			 (unsigned long long)rg->start[node], (unsigned long long)rg->start[node + 1],
			 (unsigned long long)offs[first], region_of(rg, offs[first]));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* No object was handed out twice: the union of these lists has no duplicate. */
static void assert_distinct(const uint64_t *const *lists, const size_t *ns, size_t nlists)
{
	size_t total = 0, k = 0;
	uint64_t *all;

	for (size_t i = 0; i < nlists; i++)
		total += ns[i];
	all = malloc((total ? total : 1) * sizeof(*all));
	assert_non_null(all);
	for (size_t i = 0; i < nlists; i++)
		for (size_t j = 0; j < ns[i]; j++)
			all[k++] = lists[i][j];
	qsort(all, total, sizeof(*all), cmp_u64);
	for (size_t i = 1; i < total; i++)
		if (all[i] == all[i - 1])
			fail_msg("offset %llu was handed out twice", (unsigned long long)all[i]);
	free(all);
}

struct nstat {
	long long partial, full, free, discard, free_objects, shared_avail;
};

static struct nstat node_stat(json_t *st, unsigned node)
{
	json_t *nodes = json_object_get(st, "nodes"), *n = json_array_get(nodes, node);
	struct nstat s;

	assert_int_equal(json_array_size(nodes), NR_NODES);
	assert_int_equal(th_jint(n, "node"), (long long)node);
	s.partial = th_jint(n, "partial");
	s.full = th_jint(n, "full");
	s.free = th_jint(n, "free");
	s.discard = th_jint(n, "discard");
	s.free_objects = th_jint(n, "free_objects");
	s.shared_avail = th_jint(n, "shared_avail");
	return s;
}

static long long slabs_of(struct nstat s)
{
	return s.partial + s.full + s.free;
}

static void dump(const char *what, json_t *st)
{
	char *s = json_dumps(st, JSON_COMPACT);

	fprintf(stderr, "%s: %s\n", what, s ? s : "?");
	free(s);
}

/* Objects in this client's magazines (and alien buffers) for the cache. */
static long long client_cached(struct th_daemon *d, pid_t pid, const char *cache)
{
	json_t *r = th_request(d, "{\"id\":1,\"cmd\":\"clients.list\"}"), *cl, *cc;
	long long cached = -1;
	size_t i, j;

	th_assert_ok(r, "clients.list");
	json_array_foreach(json_object_get(r, "clients"), i, cl) {
		if (th_jint(cl, "pid") != pid)
			continue;
		json_array_foreach(json_object_get(cl, "caches"), j, cc)
			if (!strcmp(th_jstr(cc, "name"), cache))
				cached = th_jint(cc, "cached");
	}
	if (cached < 0) {
		dump("clients.list", r);
		fail_msg("pid %d with cache %s is not in clients.list", (int)pid, cache);
	}
	json_decref(r);
	return cached;
}

/* Create a cache and leave it open to nobody (it lives on). */
static void create_cache(struct th_daemon *d, const char *name, int node, unsigned min_partial)
{
	struct slab_cache_config cfg = { .size = OBJ_SIZE, .node = node,
					 .min_partial = min_partial };
	slab_pool *pool;
	slab_cache *c;

	E(slab_pool_connect(d->socket, &pool));
	E(slab_cache_create(pool, name, &cfg, &c));
	E(slab_cache_close(c));
	slab_pool_disconnect(pool);
}

/* Make the agent allocate exactly what node still has of cache (its shared array, its
 * slabs' free objects, and the agent's own magazine, which holds only that node's
 * objects): afterwards the node has nothing to lend.  slabd may still be restocking the
 * node's reserve in the background after the last grant (it stops at twice the last
 * grant), so this takes what is there until a round finds nothing more, within a bound.
 * Returns the offsets (*n of them). */
static uint64_t *drain_node(struct th_daemon *d, struct agent *ag, const char *cache,
			    unsigned node, size_t *n)
{
	uint64_t *offs = NULL;
	size_t have = 0;

	for (int round = 0;; round++) {
		json_t *st = th_cache_stats(d, cache);
		struct nstat s;
		long long extra;
		uint64_t *more;

		assert_non_null(st);
		s = node_stat(st, node);
		extra = s.free_objects + s.shared_avail + client_cached(d, ag->pid, cache);
		if (!extra) {
			json_decref(st);
			break;
		}
		if (round == 50) {
			dump("cache.stats", st);
			fail_msg("%s: node %u still has objects after the drain", cache, node);
		}
		json_decref(st);
		more = agent_alloc_n(ag, (size_t)extra);
		offs = realloc(offs, (have + (size_t)extra) * sizeof(*offs));
		assert_non_null(offs);
		memcpy(offs + have, more, (size_t)extra * sizeof(*offs));
		free(more);
		have += (size_t)extra;
		usleep(2000); /* a restock step takes about 50 us */
	}
	*n = have;
	return offs;
}

/* cache.stats once the cache stops growing: after a grant slabd restocks the node in
 * the background (two grants ahead, a step per loop turn), so slabs may still arrive
 * after the client has its objects.  Waits (up to 5 s) until num_slabs reads the same
 * over 50 ms. */
static json_t *settled_stats(struct th_daemon *d, const char *cache)
{
	json_t *st = th_cache_stats(d, cache);
	long long until = th_now_ms() + 5000;

	assert_non_null(st);
	for (;;) {
		long long slabs = th_jint(st, "num_slabs");
		json_t *again;

		th_sleep_ms(50);
		again = th_cache_stats(d, cache);
		assert_non_null(again);
		json_decref(st);
		st = again;
		if (th_jint(st, "num_slabs") == slabs || th_now_ms() > until)
			return st;
	}
}

/* ---- the tests ---------------------------------------------------------------------------- */

static struct th_daemon daemon_;
static struct regions regions;

static int setup(void **state)
{
	(void)state;
	return th_start(&daemon_, (const char *const[]){ "--nodes", "2", NULL });
}

static int teardown(void **state)
{
	(void)state;
	th_kill_children();
	return daemon_.pid > 0 && th_stop(&daemon_) != 0 ? -1 : 0;
}

static size_t nr_objects(void)
{
	size_t n = th_scaled(NR_OBJECTS);

	return n < 200 ? 200 : n;
}

/* The end of every test: the cache is quiet and consistent, slabd stops cleanly. */
static void finish(const char *cache, long long want_alien)
{
	json_t *st = th_cache_stats(&daemon_, cache);

	assert_non_null(st);
	if (th_jint(st, "in_use") != 0 || th_jint(st, "magazine_avail") != 0 ||
	    th_jcounter(st, "alloc_fastpath") + th_jcounter(st, "alloc_slowpath") !=
		    th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath") +
			    th_jcounter(st, "alien_free") ||
	    th_jcounter(st, "alien_free") != want_alien || th_jcounter(st, "invalid_free") ||
	    th_jcounter(st, "double_free")) {
		dump("cache.stats", st);
		fail_msg("%s: not quiet and balanced at the end (want alien_free %lld)", cache,
			 want_alien);
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, cache), 0);
	TH_STOP_CLEAN(&daemon_);
}

static void test_local_placement(void **state)
{
	const char *cache = "local";
	size_t n = nr_objects(), n0b, n1b;
	struct agent a0, a1;
	uint64_t *o0a, *o0b, *o1a, *o1b, *o0c;
	json_t *st;

	(void)state;
	get_regions(&daemon_, &regions);
	create_cache(&daemon_, cache, SLAB_NODE_LOCAL, 0);
	agent_start(&a0, daemon_.socket, "=0", "node-0 process");
	agent_start(&a1, daemon_.socket, "=1", "node-1 process");
	agent_ok(&a0, OP_OPEN, cache);
	agent_ok(&a1, OP_OPEN, cache);

	/* Node 0's process first: slabs granted on node 0. */
	o0a = agent_alloc_n(&a0, n);
	assert_all_in(&regions, o0a, n, 0, "node-0 process, first allocations");
	o0b = drain_node(&daemon_, &a0, cache, 0, &n0b);
	assert_all_in(&regions, o0b, n0b, 0, "node-0 process, draining node 0");

	/* Node 0 has nothing left to lend: node 1's process gets node-1 slabs. */
	o1a = agent_alloc_n(&a1, n);
	assert_all_in(&regions, o1a, n, 1, "node-1 process");
	o1b = drain_node(&daemon_, &a1, cache, 1, &n1b);
	assert_all_in(&regions, o1b, n1b, 1, "node-1 process, draining node 1");

	/* And node 0's process again, after node 1's. */
	o0c = agent_alloc_n(&a0, n);
	assert_all_in(&regions, o0c, n, 0, "node-0 process, second allocations");
	assert_distinct((const uint64_t *const[]){ o0a, o0b, o1a, o1b, o0c },
			(const size_t[]){ n, n0b, n, n1b, n }, 5);

	st = th_cache_stats(&daemon_, cache);
	assert_non_null(st);
	if (slabs_of(node_stat(st, 0)) == 0 || slabs_of(node_stat(st, 1)) == 0 ||
	    th_jint(st, "in_use") != (long long)(3 * n + n0b + n1b) ||
	    th_jcounter(st, "alien_free") != 0) {
		dump("cache.stats", st);
		fail_msg("%s: want slabs on both nodes and %zu objects in use", cache,
			 3 * n + n0b + n1b);
	}
	json_decref(st);

	/* Each frees its own: every free is local. */
	agent_ok(&a0, OP_FREE_ALL, NULL);
	agent_ok(&a1, OP_FREE_ALL, NULL);
	agent_ok(&a0, OP_CLOSE, NULL);
	agent_ok(&a1, OP_CLOSE, NULL);
	agent_quit(&a0);
	agent_quit(&a1);
	free(o0a);
	free(o0b);
	free(o1a);
	free(o1b);
	free(o0c);
	finish(cache, 0);
}

static void test_alien_free(void **state)
{
	const char *cache = "alien";
	size_t n = nr_objects();
	struct agent b0, b1;
	struct nstat n0_before, n1_before, n0_after, n1_after;
	long long free_before;
	uint64_t *offs;
	json_t *st;

	(void)state;
	get_regions(&daemon_, &regions);
	/* min_partial 1024: empty slabs stay on their node's free list (never discarded),
	 * so every object freed home shows in free_objects or shared_avail. */
	create_cache(&daemon_, cache, SLAB_NODE_LOCAL, 1024);
	agent_start(&b1, daemon_.socket, "=1", "node-1 process");
	agent_start(&b0, daemon_.socket, "=0", "node-0 process");
	agent_ok(&b1, OP_OPEN, cache);
	offs = agent_alloc_n(&b1, n);
	assert_all_in(&regions, offs, n, 1, "node-1 process");

	st = settled_stats(&daemon_, cache); /* the restock after the last grant is done */
	n0_before = node_stat(st, 0);
	n1_before = node_stat(st, 1);
	free_before = th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath");
	if (th_jint(st, "in_use") != (long long)n || th_jcounter(st, "alien_free") != 0 ||
	    slabs_of(n0_before) != 0) {
		dump("cache.stats", st);
		fail_msg("%s: want %zu objects in use, all on node 1", cache, n);
	}
	json_decref(st);

	/* The node-0 process frees node 1's objects, then closes its handle: its alien
	 * buffers go home. */
	agent_ok(&b0, OP_OPEN, cache);
	agent_free_offsets(&b0, offs, n);
	agent_ok(&b0, OP_CLOSE, NULL);

	st = th_cache_stats(&daemon_, cache);
	assert_non_null(st);
	n0_after = node_stat(st, 0);
	n1_after = node_stat(st, 1);
	if (th_jcounter(st, "alien_free") != (long long)n ||
	    th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath") != free_before ||
	    th_jint(st, "in_use") != 0 ||
	    (n1_after.free_objects + n1_after.shared_avail) -
			    (n1_before.free_objects + n1_before.shared_avail) != (long long)n ||
	    slabs_of(n1_after) != slabs_of(n1_before) ||
	    memcmp(&n0_after, &n0_before, sizeof(n0_after))) {
		dump("cache.stats", st);
		fail_msg("%s: after %zu alien frees by the node-0 process: alien_free %lld, node 1 "
			 "free_objects %lld -> %lld and shared_avail %lld -> %lld, node 0 "
			 "free_objects %lld -> %lld and shared_avail %lld -> %lld", cache, n,
			 th_jcounter(st, "alien_free"), n1_before.free_objects,
			 n1_after.free_objects, n1_before.shared_avail, n1_after.shared_avail,
			 n0_before.free_objects, n0_after.free_objects, n0_before.shared_avail,
			 n0_after.shared_avail);
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, cache), 0);

	agent_ok(&b1, OP_CLOSE, NULL);
	agent_quit(&b0);
	agent_quit(&b1);
	free(offs);
	finish(cache, (long long)n);
}

/* slab_kfree finds the cache from the page's tag and takes slab_free's fast path with
 * that tag (libclient/kmalloc.c): a node-1 object freed on node 0 must still take the
 * alien path (the tag's node differs), not land in node 0's magazine. */
static void test_kfree_alien(void **state)
{
	const char *cache = "kmalloc-64";
	size_t n = nr_objects();
	struct agent b0, b1;
	long long free_before;
	uint64_t *offs;
	json_t *st;

	(void)state;
	get_regions(&daemon_, &regions);
	agent_start(&b1, daemon_.socket, "=1", "node-1 process");
	agent_start(&b0, daemon_.socket, "=0", "node-0 process");
	agent_ok(&b1, OP_OPEN, "kmalloc");
	offs = agent_alloc_n(&b1, n);
	assert_all_in(&regions, offs, n, 1, "node-1 process (kmalloc)");

	st = settled_stats(&daemon_, cache);
	free_before = th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath");
	if (th_jint(st, "in_use") != (long long)n || th_jcounter(st, "alien_free") != 0 ||
	    slabs_of(node_stat(st, 0)) != 0) {
		dump("cache.stats", st);
		fail_msg("%s: want %zu objects in use, all on node 1", cache, n);
	}
	json_decref(st);

	/* The node-0 process kfrees them and disconnects: its alien buffers go home. */
	agent_ok(&b0, OP_OPEN, "kmalloc");
	agent_free_offsets(&b0, offs, n);
	agent_quit(&b0);

	st = th_cache_stats(&daemon_, cache);
	assert_non_null(st);
	if (th_jcounter(st, "alien_free") != (long long)n ||
	    th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath") != free_before ||
	    th_jint(st, "in_use") != 0 || slabs_of(node_stat(st, 0)) != 0) {
		dump("cache.stats", st);
		fail_msg("%s: after %zu kfrees of node 1's objects on node 0: alien_free %lld "
			 "(want all), or a local free counted, or node 0 got slabs", cache, n,
			 th_jcounter(st, "alien_free"));
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, cache), 0);

	agent_quit(&b1);
	free(offs);
	finish(cache, (long long)n);
}

static void test_pinned_cache(void **state)
{
	const char *cache = "pinned";
	size_t n = nr_objects();
	struct agent c0;
	uint64_t *offs;
	json_t *st;
	struct nstat s0;

	(void)state;
	get_regions(&daemon_, &regions);
	create_cache(&daemon_, cache, 1, 0);
	agent_start(&c0, daemon_.socket, "=0", "node-0 process");
	agent_ok(&c0, OP_OPEN, cache);
	offs = agent_alloc_n(&c0, n);
	assert_all_in(&regions, offs, n, 1, "node-0 process on a cache bound to node 1");

	st = th_cache_stats(&daemon_, cache);
	assert_non_null(st);
	s0 = node_stat(st, 0);
	if (th_jint(st, "node") != 1 || slabs_of(s0) + s0.discard != 0 || s0.free_objects ||
	    s0.shared_avail || slabs_of(node_stat(st, 1)) == 0) {
		dump("cache.stats", st);
		fail_msg("%s: a cache bound to node 1 has slabs on node 0", cache);
	}
	json_decref(st);

	/* Its frees (alien: node-1 objects freed on node 0) go back to node 1 too. */
	agent_ok(&c0, OP_FREE_ALL, NULL);
	agent_ok(&c0, OP_CLOSE, NULL);
	st = th_cache_stats(&daemon_, cache);
	assert_non_null(st);
	s0 = node_stat(st, 0);
	if (slabs_of(s0) + s0.discard != 0 || s0.free_objects || s0.shared_avail) {
		dump("cache.stats", st);
		fail_msg("%s: node 0 got objects of a cache bound to node 1", cache);
	}
	json_decref(st);
	agent_quit(&c0);
	free(offs);
	finish(cache, (long long)n);
}

static void test_slab_node_ignored(void **state)
{
	static const struct {
		const char *env;
		int         node;   /* -1: ignored, the thread's real node */
	} cases[] = {
		{ "=2", -1 }, { "=3", -1 }, { "=99", -1 }, { "=-1", -1 }, { "=1x", -1 },
		{ "=abc", -1 }, { "=", -1 }, { "-", -1 }, { "=0", 0 }, { "=1", 1 },
	};
	size_t n = nr_objects() / 4;

	(void)state;
	get_regions(&daemon_, &regions);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cache[32], who[64];
		struct agent ag;
		uint64_t *offs;
		int real, want;

		/* A fresh cache each time: no other node has objects to lend. */
		snprintf(cache, sizeof(cache), "env-%zu", i);
		snprintf(who, sizeof(who), "process with SLAB_NODE%s", cases[i].env[0] == '=' ?
			 cases[i].env : " unset");
		create_cache(&daemon_, cache, SLAB_NODE_LOCAL, 0);
		agent_start(&ag, daemon_.socket, cases[i].env, who);
		if (agent_call(&ag, OP_NODE, NULL, 0, NULL, NULL, NULL, &real))
			fail_msg("%s: no node", who);
		assert_true(real >= 0);
		/* libclient/pool.c slab_thread_node: the CPU's node modulo the arena's nodes. */
		want = cases[i].node >= 0 ? cases[i].node : real % NR_NODES;
		agent_ok(&ag, OP_OPEN, cache);
		offs = agent_alloc_n(&ag, n);
		assert_all_in(&regions, offs, n, want, who);
		agent_ok(&ag, OP_FREE_ALL, NULL);
		agent_ok(&ag, OP_CLOSE, NULL);
		agent_quit(&ag);
		free(offs);
		assert_int_equal(th_validate(&daemon_, cache), 0);
	}
	TH_STOP_CLEAN(&daemon_);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_local_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alien_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kfree_alien, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pinned_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slab_node_ignored, setup, teardown),
	};

	if (argc == 6 && !strcmp(argv[1], "--agent"))
		return agent_main(argv);
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--agent SOCKET NODEENV CMDFD REPLYFD]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
