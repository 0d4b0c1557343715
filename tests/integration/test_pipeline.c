/* test_pipeline.c - the multi-process pipeline: guards that objects really are shared
 * between processes through a real slabd.
 *
 * A real slabd on a private socket; the test creates cache "pipe" (64-byte objects); then
 * NR_PRODUCERS producer processes and one consumer, each a fork + exec of this binary
 * with a role argument, each with its own slab_pool_connect + slab_cache_open.  Producers
 * allocate, fill all 64 bytes with a verifiable pattern (producer id, sequence, derived
 * words, checksum) and send slab_offset() through a pipe; the consumer maps each offset
 * back with slab_pointer(), checks the pattern and the per-producer order, clears the
 * object and frees it.  A producer that gets an object still carrying a live pattern has
 * been handed an object someone else holds.  200,000 objects (divided by
 * $SLAB_TEST_SCALE).
 *
 * Run twice: on one node, and on a slabd with two virtual nodes (--nodes 2) where the
 * producers sit on node 0 and the consumer on node 1 (SLAB_NODE), so every free is an
 * alien free (cache_free_alien) going back to node 0, and no slab ever lands on node 1.
 *
 * Must hold afterwards: every child exited 0; cache.stats says in_use 0 and the folded
 * counters account for exactly that many allocations and frees and no wrong frees (on
 * two nodes: every free alien, node 1 without slabs);
 * cache.validate is clean; slab_cache_destroy succeeds and the cache is gone; the daemon
 * shuts down cleanly (exit 0, socket removed).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NR_PRODUCERS  4
#define NR_OBJECTS    200000ul
#define OBJ_SIZE      64
#define BATCH         64          /* offsets per pipe write: 512 bytes <= PIPE_BUF */
#define CHILD_ALARM   240u
#define CHILD_WAIT_S  250
#define PIPE_MAGIC    0x51ab0000d00dfeedULL
#define PIPE_SUM_SEED 0x243f6a8885a308d3ULL /* th_sum7 seed of the pattern checksum */
#define CACHE_NAME    "pipe"

/* Exit codes of the role processes. */
enum {
	EX_OK = 0,
	EX_USAGE = 2,
	EX_CONNECT = 10, /* slab_pool_connect */
	EX_OPEN,         /* slab_cache_open */
	EX_ALLOC,        /* slab_alloc returned NULL */
	EX_OFFSET,       /* slab_offset / slab_pointer do not round-trip */
	EX_LIVE,         /* a fresh object still carried a live pattern: handed out twice */
	EX_WRITE,        /* pipe write */
	EX_READ,         /* pipe read */
	EX_PATTERN,      /* the consumer found a corrupt object */
	EX_ORDER,        /* a producer's sequence arrived out of order or twice */
	EX_FREE,         /* slab_free refused an object */
	EX_COUNT,        /* the consumer did not get every object */
	EX_CLOSE,        /* slab_cache_close */
};

static void fill(uint64_t *w, unsigned id, uint64_t seq)
{
	w[0] = PIPE_MAGIC ^ id;
	w[1] = seq;
	for (int k = 2; k < 7; k++)
		w[k] = th_mix64(((uint64_t)id << 48) ^ (seq << 8) ^ (uint64_t)k);
	w[7] = th_sum7(w, PIPE_SUM_SEED);
}

/* Does w hold a pattern a producer wrote (a live object)? */
static int looks_live(const uint64_t *w)
{
	return (w[0] ^ PIPE_MAGIC) < NR_PRODUCERS && w[7] == th_sum7(w, PIPE_SUM_SEED);
}

static unsigned long share(unsigned long total, unsigned id)
{
	return total / NR_PRODUCERS + (id < total % NR_PRODUCERS);
}

/* ---- the role processes ------------------------------------------------------------- */

static int connect_open(const char *sock, const char *node, const char *who, slab_pool **pool,
			slab_cache **c)
{
	int rc;

	/* "-": the thread's own node; else pin this process to that (virtual) node. */
	if (strcmp(node, "-") && setenv("SLAB_NODE", node, 1))
		return EX_USAGE;
	rc = slab_pool_connect(sock, pool);

	if (rc) {
		fprintf(stderr, "%s: slab_pool_connect(%s): %s\n", who, sock, slab_strerror(rc));
		return EX_CONNECT;
	}
	rc = slab_cache_open(*pool, CACHE_NAME, c);
	if (rc) {
		fprintf(stderr, "%s: slab_cache_open(%s): %s\n", who, CACHE_NAME, slab_strerror(rc));
		return EX_OPEN;
	}
	return 0;
}

static int close_all(const char *who, slab_pool *pool, slab_cache *c)
{
	int rc = slab_cache_close(c);

	if (rc) {
		fprintf(stderr, "%s: slab_cache_close: %s\n", who, slab_strerror(rc));
		return EX_CLOSE;
	}
	slab_pool_disconnect(pool);
	return EX_OK;
}

/* --producer SOCKET NODE ID COUNT WRITEFD */
static int producer_main(char **argv)
{
	const char *sock = argv[2], *node = argv[3];
	unsigned id = (unsigned)strtoul(argv[4], NULL, 10);
	unsigned long count = strtoul(argv[5], NULL, 10);
	int wfd = atoi(argv[6]), rc;
	uint64_t batch[BATCH];
	unsigned nb = 0;
	slab_pool *pool;
	slab_cache *c;
	char who[32];

	snprintf(who, sizeof(who), "producer %u", id);
	alarm(CHILD_ALARM);
	if (id >= NR_PRODUCERS)
		return EX_USAGE;
	rc = connect_open(sock, node, who, &pool, &c);
	if (rc)
		return rc;
	for (unsigned long seq = 0; seq < count; seq++) {
		uint64_t *w = slab_alloc(c), off;

		if (!w) {
			fprintf(stderr, "%s: slab_alloc #%lu: %s\n", who, seq, slab_strerror(errno));
			return EX_ALLOC;
		}
		off = slab_offset(pool, w);
		if (off == UINT64_MAX || slab_pointer(pool, off) != (void *)w) {
			fprintf(stderr, "%s: slab_offset/slab_pointer of %p do not round-trip\n",
				who, (void *)w);
			return EX_OFFSET;
		}
		if (looks_live(w)) {
			fprintf(stderr, "%s: object at offset %llu still holds producer %llu's "
				"object #%llu: handed out twice\n", who, (unsigned long long)off,
				(unsigned long long)(w[0] ^ PIPE_MAGIC), (unsigned long long)w[1]);
			return EX_LIVE;
		}
		fill(w, id, seq);
		batch[nb++] = off;
		if (nb == BATCH || seq + 1 == count) {
			if (th_write_all(wfd, batch, nb * sizeof(uint64_t))) {
				fprintf(stderr, "%s: pipe write: %s\n", who, strerror(errno));
				return EX_WRITE;
			}
			nb = 0;
		}
	}
	close(wfd);
	return close_all(who, pool, c);
}

/* --consumer SOCKET NODE TOTAL READFD */
static int consumer_main(char **argv)
{
	const char *sock = argv[2], *node = argv[3];
	unsigned long total = strtoul(argv[4], NULL, 10), got = 0;
	int rfd = atoi(argv[5]), rc;
	uint64_t next[NR_PRODUCERS] = { 0 };
	unsigned char buf[BATCH * 8 * 4];
	size_t have = 0;
	slab_pool *pool;
	slab_cache *c;

	alarm(CHILD_ALARM);
	rc = connect_open(sock, node, "consumer", &pool, &c);
	if (rc)
		return rc;
	for (;;) {
		ssize_t n = read(rfd, buf + have, sizeof(buf) - have);
		size_t i;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "consumer: pipe read: %s\n", strerror(errno));
			return EX_READ;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		for (i = 0; i + 8 <= have; i += 8) {
			uint64_t off, *w;
			unsigned id;

			memcpy(&off, buf + i, 8);
			w = slab_pointer(pool, off);
			if (!w) {
				fprintf(stderr, "consumer: offset %llu is outside the arena\n",
					(unsigned long long)off);
				return EX_OFFSET;
			}
			id = (unsigned)(w[0] ^ PIPE_MAGIC);
			if (!looks_live(w)) {
				fprintf(stderr, "consumer: object at offset %llu (#%lu received) "
					"is corrupt: %016llx %016llx ... %016llx\n",
					(unsigned long long)off, got, (unsigned long long)w[0],
					(unsigned long long)w[1], (unsigned long long)w[7]);
				return EX_PATTERN;
			}
			{
				uint64_t want[8];
				fill(want, id, w[1]);
				if (memcmp(want, w, OBJ_SIZE)) {
					fprintf(stderr, "consumer: object at offset %llu: body does "
						"not match producer %u #%llu\n", (unsigned long long)off,
						id, (unsigned long long)w[1]);
					return EX_PATTERN;
				}
			}
			if (w[1] != next[id]) {
				fprintf(stderr, "consumer: producer %u: got #%llu, expected #%llu\n",
					id, (unsigned long long)w[1], (unsigned long long)next[id]);
				return EX_ORDER;
			}
			next[id]++;
			memset(w, 0, OBJ_SIZE); /* no longer live: a reuse must not look live */
			rc = slab_free(c, w);
			if (rc) {
				fprintf(stderr, "consumer: slab_free(offset %llu): %s\n",
					(unsigned long long)off, slab_strerror(rc));
				return EX_FREE;
			}
			got++;
		}
		memmove(buf, buf + i, have - i);
		have -= i;
	}
	if (have || got != total) {
		fprintf(stderr, "consumer: received %lu objects (+%zu stray bytes), expected %lu\n",
			got, have, total);
		return EX_COUNT;
	}
	for (unsigned id = 0; id < NR_PRODUCERS; id++) {
		if (next[id] != share(total, id)) {
			fprintf(stderr, "consumer: producer %u sent %llu objects, expected %lu\n",
				id, (unsigned long long)next[id], share(total, id));
			return EX_COUNT;
		}
	}
	return close_all("consumer", pool, c);
}

/* ---- the test ----------------------------------------------------------------------- */

static struct th_daemon daemon_;

static int setup_one(void **state)
{
	(void)state;
	return th_start(&daemon_, NULL);
}

static int setup_two(void **state)
{
	(void)state;
	return th_start(&daemon_, (const char *const[]){ "--nodes", "2", NULL });
}

static int teardown(void **state)
{
	(void)state;
	th_teardown(&daemon_);
	return 0;
}

static void run_pipeline(bool two_nodes)
{
	struct slab_cache_config cfg = { .size = OBJ_SIZE, .node = SLAB_NODE_LOCAL };
	unsigned long total = th_scaled(NR_OBJECTS);
	pid_t prod[NR_PRODUCERS], cons;
	char a_total[32], a_fd[16], a_id[16], a_n[32];
	slab_pool *pool;
	slab_cache *c;
	json_t *st;
	int pfd[2];

	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, CACHE_NAME, &cfg, &c));
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);

	snprintf(a_total, sizeof(a_total), "%lu", total);
	snprintf(a_fd, sizeof(a_fd), "%d", pfd[0]);
	cons = th_spawn_self((const char *const[]){ "--consumer", daemon_.socket,
						    two_nodes ? "1" : "-", a_total, a_fd, NULL },
			     &pfd[0], 1);
	assert_true(cons > 0);
	snprintf(a_fd, sizeof(a_fd), "%d", pfd[1]);
	for (unsigned id = 0; id < NR_PRODUCERS; id++) {
		snprintf(a_id, sizeof(a_id), "%u", id);
		snprintf(a_n, sizeof(a_n), "%lu", share(total, id));
		prod[id] = th_spawn_self((const char *const[]){ "--producer", daemon_.socket,
								two_nodes ? "0" : "-",
								a_id, a_n, a_fd, NULL },
					 &pfd[1], 1);
		assert_true(prod[id] > 0);
	}
	/* Only the producers may hold the write end: the consumer stops at EOF. */
	close(pfd[0]);
	close(pfd[1]);

	for (unsigned id = 0; id < NR_PRODUCERS; id++) {
		int rc = th_wait_child(prod[id], CHILD_WAIT_S);
		if (rc)
			fail_msg("producer %u (pid %d) exited with %d", id, (int)prod[id], rc);
	}
	{
		int rc = th_wait_child(cons, CHILD_WAIT_S);
		if (rc)
			fail_msg("consumer (pid %d) exited with %d", (int)cons, rc);
	}

	/* Every child closed its handle before exiting: its magazines (and alien buffers)
	 * are drained and its counters folded into the cache's. */
	st = th_cache_stats(&daemon_, CACHE_NAME);
	assert_non_null(st);
	assert_int_equal(th_jint(st, "in_use"), 0);
	assert_int_equal(th_jint(st, "object_size"), OBJ_SIZE);
	assert_int_equal(json_array_size(json_object_get(st, "nodes")), two_nodes ? 2 : 1);
	assert_int_equal(th_jcounter(st, "alloc_fastpath") + th_jcounter(st, "alloc_slowpath"),
			 (long long)total);
	assert_int_equal(th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath"),
			 two_nodes ? 0 : (long long)total);
	assert_int_equal(th_jcounter(st, "alien_free"), two_nodes ? (long long)total : 0);
	assert_int_equal(th_jcounter(st, "invalid_free"), 0);
	assert_int_equal(th_jcounter(st, "double_free"), 0);
	assert_true(th_jcounter(st, "alloc_slab") > 0);
	if (two_nodes) {
		json_t *n1 = json_array_get(json_object_get(st, "nodes"), 1);

		assert_int_equal(th_jint(n1, "partial") + th_jint(n1, "full") + th_jint(n1, "free") +
				 th_jint(n1, "discard") + th_jint(n1, "shared_avail"), 0);
	}
	json_decref(st);
	assert_int_equal(th_validate(&daemon_, CACHE_NAME), 0);

	E(slab_cache_destroy(c));
	st = th_cache_listed(&daemon_, CACHE_NAME);
	if (st) {
		json_decref(st);
		fail_msg("cache %s still listed after slab_cache_destroy returned 0", CACHE_NAME);
	}
	slab_pool_disconnect(pool);

	TH_STOP_CLEAN(&daemon_);
}

static void test_pipeline(void **state)
{
	(void)state;
	run_pipeline(false);
}

static void test_pipeline_two_nodes(void **state)
{
	(void)state;
	run_pipeline(true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pipeline, setup_one, teardown),
		cmocka_unit_test_setup_teardown(test_pipeline_two_nodes, setup_two, teardown),
	};

	if (argc == 7 && !strcmp(argv[1], "--producer"))
		return producer_main(argv);
	if (argc == 6 && !strcmp(argv[1], "--consumer"))
		return consumer_main(argv);
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--producer SOCKET NODE ID COUNT FD | --consumer "
			"SOCKET NODE TOTAL FD]\n", argv[0]);
		return EX_USAGE;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
