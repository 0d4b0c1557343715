/* hostcheck.c - what the host gives this run's two CPUs, printed by `make bench` (run.sh)
 * before and after each workload, so that a table can be read against it.
 *
 * On the project's VM the two vCPUs move between host placements: a cache line's round
 * trip between them took 64, 85 or 330 ns, and slabd's prodcons ran at 140, 60 and
 * 17 M objects/s in those three modes (issue 8's notes).  Two measures:
 *   - round trip: two threads pinned to cpus 0 and 1 hand one cache line back and forth;
 *     ns per round trip (two transfers);
 *   - shared: the same spin loop on cpu 0 alone, then on cpus 0 and 1 at once; the time
 *     of the pair over the time alone (1.0: two real cpus; near 2: they share one).
 * Usage: hostcheck [LABEL]; prints one line.  Exit 0, or 1 with fewer than two cpus.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define TRIPS 200000L
#define SPINS 50000000L

static _Alignas(64) volatile uint64_t line;

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static void *pong(void *arg)
{
	(void)arg;
	(void)pin(1); /* unpinned it still answers: the number is then the scheduler's */
	for (long i = 0; i < TRIPS; i++) {
		while (line != (uint64_t)(2 * i + 1))
			;
		line = (uint64_t)(2 * i + 2);
	}
	return NULL;
}

static void *spin(void *arg)
{
	volatile uint64_t x = 0;

	(void)pin((int)(intptr_t)arg);
	for (long i = 0; i < SPINS; i++)
		x += (uint64_t)i;
	return NULL;
}

static double spin_ms(int threads)
{
	pthread_t t[2];
	double t0 = now_ns();

	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, spin, (void *)(intptr_t)i))
			return -1;
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return (now_ns() - t0) / 1e6;
}

int main(int argc, char **argv)
{
	pthread_t t;
	double t0, trip, alone, both;

	if (pin(0) || pthread_create(&t, NULL, pong, NULL)) {
		printf("host %s: needs two cpus (0 and 1)\n", argc > 1 ? argv[1] : "");
		return 1;
	}
	t0 = now_ns();
	for (long i = 0; i < TRIPS; i++) {
		line = (uint64_t)(2 * i + 1);
		while (line != (uint64_t)(2 * i + 2))
			;
	}
	trip = (now_ns() - t0) / TRIPS;
	pthread_join(t, NULL);
	alone = spin_ms(1);
	both = spin_ms(2);
	printf("host %s: cache-line round trip cpu0<->cpu1 %.0f ns; two spinning cpus take "
	       "%.2fx the time of one\n", argc > 1 ? argv[1] : "", trip, alone > 0 ? both / alone : 0);
	return 0;
}
