/* stocker.c - the reserve stocker thread (see stocker.h for why and the invariants). */
#include "stocker.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "buddy.h"
#include "slabd.h"

enum { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

#define BLOCK_PAGES (1u << SLAB_RESERVE_ORDER)
/* How long stocker_quiesce waits for the block the thread is faulting in (normally one
 * block, about 70 us) before it faults the block in itself. */
#define QUIESCE_WAIT_NS 100000000ull

struct stock_slot {
	uint32_t        state;  /* SLOT_*, atomic (S2) */
	uint32_t        head;   /* the block: written by the main thread before QUEUED */
	unsigned        node;
	struct sm_arena view;   /* the arena's mapping when it was queued (S1) */
};

struct stocker {
	pthread_t         thread;
	int               req_fd;   /* eventfd: the main thread queued a slot */
	int               done_fd;  /* eventfd: the thread finished one */
	struct event     *done_ev;
	uint32_t          stop;     /* atomic: the thread leaves */
	struct stock_slot slot[STOCKER_SLOTS];
	/* main thread only */
	bool              abandoned[STOCKER_SLOTS]; /* listed by quiesce while still BUSY */
	uint64_t          pages_stocked;            /* listed after the thread faulted them */
};

static uint32_t slot_state(const struct stock_slot *sl)
{
	return __atomic_load_n(&sl->state, __ATOMIC_ACQUIRE);
}

static void slot_set(struct stock_slot *sl, uint32_t st)
{
	__atomic_store_n(&sl->state, st, __ATOMIC_RELEASE);
}

static void kick(int fd)
{
	uint64_t one = 1;

	/* An eventfd write fails only when the counter would overflow: it is not zero then,
	 * and the reader wakes anyway. */
	if (write(fd, &one, sizeof(one)) < 0)
		return;
}

static void *stocker_main(void *arg)
{
	struct stocker *s = arg;
	struct sched_param sp;

	/* SCHED_IDLE: a CPU only when nothing else on the host wants it.  Lowering one's
	 * own policy needs no privilege; nice 19 is the fallback. */
	memset(&sp, 0, sizeof(sp));
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp))
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	for (;;) {
		uint64_t v;

		if (read(s->req_fd, &v, sizeof(v)) < 0 && errno != EINTR && errno != EAGAIN)
			break;
		if (__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
			break;
		for (unsigned i = 0; i < STOCKER_SLOTS; i++) {
			struct stock_slot *sl = &s->slot[i];
			uint32_t want = SLOT_QUEUED;

			if (!__atomic_compare_exchange_n(&sl->state, &want, SLOT_BUSY, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			sm_reserve_fault(&sl->view, sl->head, BLOCK_PAGES);
			slot_set(sl, SLOT_DONE);
		}
		/* One wake-up of the main thread when the queue runs dry, not one a block:
		 * each wake-up may land on a growing client's CPU and preempt it (measured:
		 * with one a block, a client's run-queue wait rose 5-9 ns an object).  The
		 * main thread also collects whenever it runs for other reasons. */
		kick(s->done_fd);
	}
	return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	stocker_collect(arg);
}

int stocker_start(struct slabd *d)
{
	struct stocker *s = calloc(1, sizeof(*s));
	sigset_t all, old;
	int rc;

	if (!s)
		return -ENOMEM;
	s->req_fd = eventfd(0, EFD_CLOEXEC);
	s->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->req_fd < 0 || s->done_fd < 0) {
		rc = -errno;
		goto fail;
	}
	s->done_ev = event_new(d->base, s->done_fd, EV_READ | EV_PERSIST, on_done, d);
	if (!s->done_ev || event_add(s->done_ev, NULL)) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Signals stay with the main thread (libevent's handlers). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&s->thread, NULL, stocker_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		goto fail;
	d->stocker = s;
	return 0;
fail:
	if (s->done_ev)
		event_free(s->done_ev);
	if (s->req_fd >= 0)
		close(s->req_fd);
	if (s->done_fd >= 0)
		close(s->done_fd);
	free(s);
	return rc;
}

void stocker_stop(struct slabd *d)
{
	struct stocker *s = d->stocker;

	if (!s)
		return;
	stocker_quiesce(d);
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	kick(s->req_fd);
	pthread_join(s->thread, NULL);
	event_free(s->done_ev);
	close(s->req_fd);
	close(s->done_fd);
	free(s);
	d->stocker = NULL;
}

bool stocker_running(const struct slabd *d)
{
	return d->stocker != NULL;
}

uint64_t stocker_pages_stocked(const struct slabd *d)
{
	return d->stocker ? d->stocker->pages_stocked : 0;
}

int stocker_feed(struct slabd *d, unsigned node)
{
	struct stocker *s = d->stocker;

	for (unsigned i = 0; s && i < STOCKER_SLOTS; i++) {
		struct stock_slot *sl = &s->slot[i];
		uint32_t head;
		int rc;

		if (slot_state(sl) != SLOT_FREE)
			continue;
		rc = sm_reserve_take(&d->arena, node, &head);
		if (rc <= 0)
			return -1;
		sl->head = head;
		sl->node = node;
		memset(&sl->view, 0, sizeof(sl->view));
		sl->view.base = d->arena.base;
		sl->view.size = d->arena.size;
		sl->view.fd = d->arena.fd; /* stale after an adopt: fallocate changes no data (S1) */
		slot_set(sl, SLOT_QUEUED);
		kick(s->req_fd);
		return 1;
	}
	return 0;
}

bool stocker_has_room(const struct slabd *d)
{
	for (unsigned i = 0; d->stocker && i < STOCKER_SLOTS; i++)
		if (slot_state(&d->stocker->slot[i]) == SLOT_FREE)
			return true;
	return false;
}

uint32_t stocker_pages_out(const struct slabd *d, unsigned node)
{
	uint32_t pages = 0;

	for (unsigned i = 0; d->stocker && i < STOCKER_SLOTS; i++) {
		const struct stock_slot *sl = &d->stocker->slot[i];

		if (slot_state(sl) != SLOT_FREE && !d->stocker->abandoned[i] && sl->node == node)
			pages += BLOCK_PAGES;
	}
	return pages;
}

/* A DONE slot back to FREE, its block listed unless quiesce listed it already. */
static uint32_t finish(struct slabd *d, unsigned i)
{
	struct stocker *s = d->stocker;
	struct stock_slot *sl = &s->slot[i];
	int rc = 0;

	if (!s->abandoned[i])
		rc = sm_reserve_put(&d->arena, sl->node, sl->head);
	s->abandoned[i] = false;
	slot_set(sl, SLOT_FREE);
	return rc > 0 ? (uint32_t)rc : 0;
}

uint32_t stocker_collect(struct slabd *d)
{
	struct stocker *s = d->stocker;
	uint32_t pages = 0;

	for (unsigned i = 0; s && i < STOCKER_SLOTS; i++)
		if (slot_state(&s->slot[i]) == SLOT_DONE) {
			uint32_t got = finish(d, i);

			s->pages_stocked += got;
			pages += got;
		}
	return pages;
}

void stocker_quiesce(struct slabd *d)
{
	struct stocker *s = d->stocker;

	for (unsigned i = 0; s && i < STOCKER_SLOTS; i++) {
		struct stock_slot *sl = &s->slot[i];
		uint32_t want = SLOT_QUEUED;
		uint64_t t0 = slabd_now_ns();

		if (__atomic_compare_exchange_n(&sl->state, &want, SLOT_FREE, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			/* cancelled before the thread took it: ours again (S2) */
			sm_reserve_fault(&d->arena, sl->head, BLOCK_PAGES);
			(void)sm_reserve_put(&d->arena, sl->node, sl->head);
			continue;
		}
		if (want == SLOT_FREE || s->abandoned[i])
			continue;
		/* BUSY: sleep so that the idle-priority thread gets a CPU to finish it */
		while (slot_state(sl) == SLOT_BUSY && slabd_now_ns() - t0 < QUIESCE_WAIT_NS) {
			struct timespec ts = { 0, 50000 };

			nanosleep(&ts, NULL);
		}
		if (slot_state(sl) == SLOT_DONE) {
			s->pages_stocked += finish(d, i);
		} else {
			/* still BUSY: list it now; its DONE comes later and only frees the slot
			 * (faulting pages in twice is harmless, S1) */
			sm_reserve_fault(&d->arena, sl->head, BLOCK_PAGES);
			(void)sm_reserve_put(&d->arena, sl->node, sl->head);
			s->abandoned[i] = true;
		}
	}
}
