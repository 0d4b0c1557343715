/* stocker.c - the reserve stocker thread (see stocker.h for why and the invariants). */
#include "stocker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "buddy.h"
#include "slabd.h"

enum { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

#define BLOCK_PAGES (1u << SLAB_RESERVE_ORDER)

struct stock_slot {
	uint32_t        state;  /* SLOT_*, atomic (S2) */
	uint32_t        head;   /* the block: written by the main thread before QUEUED */
	unsigned        node;
	struct sm_arena view;   /* the arena's mapping and fd when it was queued */
};

struct stocker {
	pthread_t         thread;
	int               req_fd;   /* eventfd: the main thread queued slots */
	int               done_fd;  /* eventfd: the thread found no slot queued */
	struct event     *done_ev;
	uint32_t          stop;     /* atomic: the thread leaves */
	struct stock_slot slot[STOCKER_SLOTS];
	uint64_t          pages_stocked; /* main thread only: listed after the thread faulted them */
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

/* Fault in the queued slots until none is left.  Returns whether it did any. */
static bool work(struct stocker *s)
{
	bool any = false;

	for (bool again = true; again;) {
		again = false;
		for (unsigned i = 0; i < STOCKER_SLOTS; i++) {
			struct stock_slot *sl = &s->slot[i];
			uint32_t want = SLOT_QUEUED;

			if (!__atomic_compare_exchange_n(&sl->state, &want, SLOT_BUSY, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			sm_reserve_fault(&sl->view, sl->head, BLOCK_PAGES);
			slot_set(sl, SLOT_DONE);
			again = any = true;
		}
	}
	return any;
}

/* The thread keeps slabd's normal priority.  It ran under SCHED_IDLE at first, so as to
 * use only CPUs nobody else wanted, but fallocate holds the arena file's inode lock and a
 * populate holds the mmap lock for reading: preempted there by busy clients, an
 * idle-priority thread made the main thread wait 0.9-1.4 s for those locks (measured
 * with two busy processes on two CPUs; nice 19: 0.35 s).  The work is bounded (the
 * reserve's size per burst) and is work a grant would otherwise do itself. */
static void *stocker_main(void *arg)
{
	struct stocker *s = arg;

	for (;;) {
		uint64_t v;

		if (read(s->req_fd, &v, sizeof(v)) < 0 && errno != EINTR && errno != EAGAIN)
			break;
		if (__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
			break;
		/* One wake-up of the main thread when the queue runs dry, not one a block:
		 * each wake-up may land on a growing client's CPU and preempt it (measured:
		 * with one a block, a client's run-queue wait rose 5-9 ns an object).  The
		 * main thread also collects whenever it runs for other reasons. */
		if (work(s))
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
		sl->view.fd = d->arena.fd;
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

		if (slot_state(sl) != SLOT_FREE && sl->node == node)
			pages += BLOCK_PAGES;
	}
	return pages;
}

uint32_t stocker_collect(struct slabd *d)
{
	struct stocker *s = d->stocker;
	uint32_t pages = 0;

	for (unsigned i = 0; s && i < STOCKER_SLOTS; i++) {
		struct stock_slot *sl = &s->slot[i];
		int rc;

		if (slot_state(sl) != SLOT_DONE)
			continue;
		/* A lock error leaves the block a reserve head on no list, as a slabd that
		 * died stocking it would: the next adopt lists it (sm_reserve_rebuild). */
		rc = sm_reserve_put(&d->arena, sl->node, sl->head);
		slot_set(sl, SLOT_FREE);
		if (rc > 0) {
			s->pages_stocked += (uint32_t)rc;
			pages += (uint32_t)rc;
		}
	}
	return pages;
}

void stocker_quiesce(struct slabd *d)
{
	struct stocker *s = d->stocker;

	for (unsigned i = 0; s && i < STOCKER_SLOTS; i++) {
		struct stock_slot *sl = &s->slot[i];
		uint32_t want = SLOT_QUEUED;

		if (!__atomic_compare_exchange_n(&sl->state, &want, SLOT_FREE, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			if (want == SLOT_FREE)
				continue;
			/* BUSY: one block, well under a millisecond at normal priority */
			while (slot_state(sl) == SLOT_BUSY) {
				struct timespec ts = { 0, 20000 };

				nanosleep(&ts, NULL);
			}
			slot_set(sl, SLOT_FREE);
		}
		/* Cancelled or done: back to the free lists, not onto the reserve.  Every
		 * caller is about to give memory back (shrink, a grant that found the node
		 * full), validate it, or leave the arena (adopt, exit); the reserve restocks
		 * when the next grant arms it. */
		(void)sm_reserve_return(&d->arena, sl->node, sl->head);
	}
}
