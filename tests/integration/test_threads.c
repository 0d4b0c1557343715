/* test_threads.c - guards libslab's per-thread fast paths and cross-thread frees against
 * a real slabd: NR_THREADS threads x 1,000,000 alloc/free pairs (divided by
 * $SLAB_TEST_SCALE) on one 64-byte cache.  Each thread fills every object with a pattern
 * (thread, sequence, derived words, checksum); three in four it checks, clears and frees
 * itself (from a small FIFO, so not in LIFO order), one in four it hands, in batches,
 * through a mutex-protected queue to the next thread, which checks the sender, the order
 * and the bytes, clears it and frees it: its magazine, the shared array and the slabs see
 * objects of other threads all the time.  An object that comes out of slab_alloc still
 * carrying a live pattern was handed out twice.
 *
 * Must hold afterwards: no thread saw an error; cache.stats in_use is 0 (threads' exits
 * gave their magazines back) and still 0 after closing the handle, the counters account
 * for exactly every alloc and free and no wrong free; cache.validate is clean.
 *
 * The test itself is free of data races (ThreadSanitizer: make check-tsan): objects and
 * queues change hands only under the queue mutexes; a TSan report here is a race in
 * libslab or shm.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NR_THREADS  8
#define PAIRS       1000000ul
#define OBJ_SIZE    64
#define HAND_EVERY  4          /* one object in HAND_EVERY goes to the next thread */
#define QBATCH      32         /* objects per hand-off */
#define QCAP        64         /* batches a queue holds */
#define FIFO        16         /* objects a thread keeps before freeing its own */
#define DRAIN_EVERY 256        /* iterations between non-blocking looks at the inbox */
#define TH_MAGIC    0x7e57000000000000ULL
#define TH_SUM_SEED 0x13198a2e03707344ULL /* th_sum7 seed of the pattern checksum */

struct batch {
	unsigned n;
	void    *objs[QBATCH];
};

/* Thread i's inbox: thread i - 1 is its only producer. */
struct queue {
	pthread_mutex_t lock;
	pthread_cond_t  cond;       /* signalled on push and on done */
	struct batch    ring[QCAP];
	unsigned        head, count;
	bool            done;       /* the producer will push nothing more */
};

struct worker {
	pthread_t     tid;
	unsigned      id;
	unsigned long pairs;
	slab_cache   *cache;
	struct queue *inbox, *outbox;
	/* results, read by the main thread after pthread_join */
	unsigned long allocs, frees, handed, received;
	uint64_t      last_seq_received;
	bool          got_any;
	int           failed;
	char          why[256];
};

static struct th_daemon daemon_;
static struct queue queues[NR_THREADS];
static struct worker workers[NR_THREADS];

static void fill(uint64_t *w, unsigned id, uint64_t seq)
{
	w[0] = TH_MAGIC | id;
	w[1] = seq;
	for (int k = 2; k < 7; k++)
		w[k] = th_mix64(((uint64_t)id << 56) ^ (seq << 4) ^ (uint64_t)k);
	w[7] = th_sum7(w, TH_SUM_SEED);
}

static int looks_live(const uint64_t *w)
{
	return (w[0] & ~0xffULL) == TH_MAGIC && w[7] == th_sum7(w, TH_SUM_SEED);
}

static void failf(struct worker *me, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(struct worker *me, const char *fmt, ...)
{
	va_list ap;

	if (me->failed++)
		return;
	va_start(ap, fmt);
	vsnprintf(me->why, sizeof(me->why), fmt, ap);
	va_end(ap);
}

/* Check an object filled by thread `from`, clear it, free it. */
static void check_free(struct worker *me, uint64_t *w, unsigned from)
{
	uint64_t want[8];
	int rc;

	if (!looks_live(w) || (unsigned)(w[0] & 0xff) != from) {
		failf(me, "object %p from thread %u is corrupt: %016llx %016llx ... %016llx",
		      (void *)w, from, (unsigned long long)w[0], (unsigned long long)w[1],
		      (unsigned long long)w[7]);
		return;
	}
	fill(want, from, w[1]);
	if (memcmp(want, w, OBJ_SIZE)) {
		failf(me, "object %p from thread %u #%llu: body corrupt", (void *)w, from,
		      (unsigned long long)w[1]);
		return;
	}
	memset(w, 0, OBJ_SIZE);
	rc = slab_free(me->cache, w);
	if (rc) {
		failf(me, "slab_free(%p): %s", (void *)w, slab_strerror(rc));
		return;
	}
	me->frees++;
}

static void take_batch(struct worker *me, const struct batch *b)
{
	unsigned from = (me->id + NR_THREADS - 1) % NR_THREADS;

	for (unsigned k = 0; k < b->n; k++) {
		uint64_t *w = b->objs[k];

		/* One producer, FIFO queue: its sequences arrive increasing. */
		if (looks_live(w) && me->got_any && w[1] <= me->last_seq_received)
			failf(me, "thread %u's #%llu arrived after #%llu", from,
			      (unsigned long long)w[1], (unsigned long long)me->last_seq_received);
		me->last_seq_received = w[1];
		me->got_any = true;
		me->received++;
		check_free(me, w, from);
	}
}

/* Pop at most one batch.  wait: block until one comes or the producer is done.
 * Returns 1 if it took one, 0 if the queue was empty, -1 if empty and done. */
static int drain_one(struct worker *me, bool wait)
{
	struct queue *q = me->inbox;
	struct batch b;
	int rc;

	pthread_mutex_lock(&q->lock);
	while (wait && !q->count && !q->done)
		pthread_cond_wait(&q->cond, &q->lock);
	if (q->count) {
		b = q->ring[q->head];
		q->head = (q->head + 1) % QCAP;
		q->count--;
		rc = 1;
	} else {
		rc = q->done ? -1 : 0;
	}
	pthread_mutex_unlock(&q->lock);
	if (rc == 1)
		take_batch(me, &b);
	return rc;
}

static void drain_available(struct worker *me)
{
	while (drain_one(me, false) == 1)
		;
}

/* Hand a batch to the next thread.  While its queue is full, empty our own inbox: every
 * thread keeps consuming while it waits, so the ring of queues cannot deadlock. */
static void push(struct worker *me, struct batch *b)
{
	struct queue *q = me->outbox;

	if (!b->n)
		return;
	for (;;) {
		pthread_mutex_lock(&q->lock);
		if (q->count < QCAP) {
			q->ring[(q->head + q->count) % QCAP] = *b;
			q->count++;
			pthread_cond_signal(&q->cond);
			pthread_mutex_unlock(&q->lock);
			break;
		}
		pthread_mutex_unlock(&q->lock);
		drain_available(me);
		sched_yield();
	}
	me->handed += b->n;
	b->n = 0;
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	struct batch out = { 0 };
	uint64_t *fifo[FIFO];
	unsigned fhead = 0, fcount = 0;

	for (unsigned long seq = 0; seq < me->pairs && !me->failed; seq++) {
		uint64_t *w = slab_alloc(me->cache);

		if (!w) {
			failf(me, "slab_alloc #%lu: %s", seq, slab_strerror(errno));
			break;
		}
		me->allocs++;
		if (looks_live(w)) {
			failf(me, "slab_alloc returned %p still holding thread %u's #%llu: "
			      "handed out twice", (void *)w, (unsigned)(w[0] & 0xff),
			      (unsigned long long)w[1]);
			break;
		}
		fill(w, me->id, seq);
		if (seq % HAND_EVERY == 0) {
			out.objs[out.n++] = w;
			if (out.n == QBATCH)
				push(me, &out);
		} else {
			if (fcount == FIFO) {
				check_free(me, fifo[fhead], me->id);
				fhead = (fhead + 1) % FIFO;
				fcount--;
			}
			fifo[(fhead + fcount++) % FIFO] = w;
		}
		if (seq % DRAIN_EVERY == 0)
			drain_available(me);
	}
	while (fcount) {
		check_free(me, fifo[fhead], me->id);
		fhead = (fhead + 1) % FIFO;
		fcount--;
	}
	push(me, &out);
	pthread_mutex_lock(&me->outbox->lock);
	me->outbox->done = true;
	pthread_cond_broadcast(&me->outbox->cond);
	pthread_mutex_unlock(&me->outbox->lock);
	/* Everything the previous thread hands us, until it is done. */
	while (drain_one(me, true) != -1)
		;
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	return th_start(&daemon_, NULL);
}

static int teardown(void **state)
{
	(void)state;
	th_teardown(&daemon_);
	return 0;
}

static void check_stats(unsigned long total, const char *when)
{
	json_t *st = th_cache_stats(&daemon_, "threads");

	if (!st)
		fail_msg("%s: cache 'threads' has no stats", when);
	if (th_jint(st, "in_use") != 0)
		fail_msg("%s: in_use %lld, want 0", when, th_jint(st, "in_use"));
	assert_int_equal(th_jcounter(st, "alloc_fastpath") + th_jcounter(st, "alloc_slowpath"),
			 (long long)total);
	assert_int_equal(th_jcounter(st, "free_fastpath") + th_jcounter(st, "free_slowpath"),
			 (long long)total);
	assert_int_equal(th_jcounter(st, "invalid_free"), 0);
	assert_int_equal(th_jcounter(st, "double_free"), 0);
	json_decref(st);
}

static void test_threads(void **state)
{
	struct slab_cache_config cfg = { .size = OBJ_SIZE, .node = SLAB_NODE_LOCAL };
	unsigned long pairs = th_scaled(PAIRS), total = 0, handed = 0, received = 0;
	slab_pool *pool;
	slab_cache *c;
	int failed = 0;

	(void)state;
	E(slab_pool_connect(daemon_.socket, &pool));
	E(slab_cache_create(pool, "threads", &cfg, &c));
	for (unsigned i = 0; i < NR_THREADS; i++) {
		assert_int_equal(pthread_mutex_init(&queues[i].lock, NULL), 0);
		assert_int_equal(pthread_cond_init(&queues[i].cond, NULL), 0);
		queues[i].head = queues[i].count = 0;
		queues[i].done = false;
	}
	for (unsigned i = 0; i < NR_THREADS; i++) {
		memset(&workers[i], 0, sizeof(workers[i]));
		workers[i].id = i;
		workers[i].pairs = pairs;
		workers[i].cache = c;
		workers[i].inbox = &queues[i];
		workers[i].outbox = &queues[(i + 1) % NR_THREADS];
	}
	for (unsigned i = 0; i < NR_THREADS; i++)
		assert_int_equal(pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]), 0);
	for (unsigned i = 0; i < NR_THREADS; i++)
		assert_int_equal(pthread_join(workers[i].tid, NULL), 0);
	for (unsigned i = 0; i < NR_THREADS; i++) {
		struct worker *w = &workers[i];

		if (w->failed) {
			fprintf(stderr, "thread %u: %d failures; first: %s\n", i, w->failed, w->why);
			failed++;
		}
		if (w->received != workers[(i + NR_THREADS - 1) % NR_THREADS].handed) {
			fprintf(stderr, "thread %u received %lu objects, its neighbour handed %lu\n",
				i, w->received, workers[(i + NR_THREADS - 1) % NR_THREADS].handed);
			failed++;
		}
		total += w->allocs;
		handed += w->handed;
		received += w->received;
	}
	if (failed)
		fail_msg("%d threads failed", failed);
	assert_int_equal(total, (unsigned long)NR_THREADS * pairs);
	assert_int_equal(handed, received);
	assert_true(handed >= total / HAND_EVERY);
	{
		unsigned long frees = 0;
		for (unsigned i = 0; i < NR_THREADS; i++)
			frees += workers[i].frees;
		assert_int_equal(frees, total);
	}
	for (unsigned i = 0; i < NR_THREADS; i++) {
		pthread_mutex_destroy(&queues[i].lock);
		pthread_cond_destroy(&queues[i].cond);
	}

	/* The workers' magazines went back when they exited. */
	check_stats(total, "after the threads exited");
	E(slab_cache_close(c));
	check_stats(total, "after closing the handle");
	assert_int_equal(th_validate(&daemon_, "threads"), 0);
	slab_pool_disconnect(pool);
	TH_STOP_CLEAN(&daemon_);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
