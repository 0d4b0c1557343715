/* prodcons.c - `prodcons`: a producer allocates 64-byte objects, writes a sequence number
 * into each and sends them through a single-producer/single-consumer ring to a consumer,
 * which reads the number and frees the object.  Objects per second, timed from a start
 * gate both sides pass to the consumer's last free (after an untimed warm-up of N/10).
 *
 *  - 2proc: two processes; the ring is a separate MAP_SHARED mapping made before fork and
 *    carries arena offsets (slab_offset / slab_pointer); each process connects to slabd
 *    on its own.  Boost.Interprocess the same way (segment handles as offsets).
 *  - 2thr: two threads of one process, the same ring carrying pointers (DPDK: two EAL
 *    lcores; the others pthreads pinned to the two cpus).
 *  - iceoryx: iox-roudi (started by the driver with a 64-byte mempool) and the C binding:
 *    the publisher loans a 64-byte chunk, writes it and publishes it; the subscriber takes
 *    it, reads it and releases it.  Its subscriber queue holds at most 256 chunks, so
 *    the publisher keeps at most 224 in flight (a shared counter the subscriber bumps
 *    every 32), instead of iceoryx's blocking WAIT_FOR_CONSUMER, which sleeps.
 * The consumer checks the sum of the sequence numbers, so a broken hand-over fails.
 */
#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>

#ifdef BA_HAVE_BOOST
#include "bip.h"
#endif
#ifdef BA_HAVE_ICEORYX
#include "iceoryx_binding_c/enums.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"
#endif

const char *bench_workload = "prodcons";
const char *bench_title = "producer allocs + sends 64-byte objects through an SPSC ring, consumer frees (M objects/s)";
const char *bench_usage = "[--objects N (3M)] [--boost-objects N (1M)] [--iceoryx-objects N (200k)] [--ring R (4096)]";

const struct bench_variant bench_variants[] = {
	{ "slabd-2proc", NULL },
	{ "slabd-2thr", NULL },
	{ "dpdk-2thr", "dpdk" },
	{ "mimalloc-2thr", "mimalloc" },
	{ "jemalloc-2thr", "jemalloc" },
	{ "tcmalloc-2thr", "tcmalloc" },
	{ "glibc-2thr", NULL },
	{ "boost-2proc", "boost" },
	{ "iceoryx-2proc", "iceoryx" },
	{ NULL, NULL },
};

#define ICEORYX_WINDOW 224

struct shared {
	struct bench_gate warm, main;
	_Alignas(64) uint64_t released;      /* iceoryx: chunks the subscriber released */
	_Alignas(64) uint64_t sum;           /* consumer's checksum */
	uint64_t expect;
	int failed;
};

struct job {
	int role;                /* 0 consumer, 1 producer */
	struct ba *b;
	struct bench_ring *ring;
	struct shared *sh;
	long n, warm;
	bool xproc;
};

BA_AI void produce(struct ba *b, const int K, struct bench_ring_end *e, long from, long n, bool xproc)
{
	for (long i = from; i < from + n; i++) {
		uint64_t *p = ba_alloc(b, K);
		p[0] = (uint64_t)i;
		bench_ring_push(e, ba_to_wire(b, K, p, xproc));
	}
	bench_ring_flush_head(e);
}

BA_AI uint64_t consume(struct ba *b, const int K, struct bench_ring_end *e, long n, bool xproc)
{
	uint64_t sum = 0;

	for (long i = 0; i < n; i++) {
		uint64_t *p = ba_from_wire(b, K, bench_ring_pop(e), xproc);
		sum += p[0];
		ba_free(b, K, p);
	}
	return sum;
}

static uint64_t range_sum(long from, long n)
{
	return (uint64_t)n * (uint64_t)from + (uint64_t)n * (uint64_t)(n - 1) / 2;
}

static int worker(void *arg)
{
	struct job *j = arg;
	struct bench_ring_end e = { .r = j->ring };
	struct ba *b = j->b;

	(void)e;
	if (j->role == 1) {
		bench_gate_wait(&j->sh->warm, 2);
		BA_DISPATCH(b, produce(b, K, &e, 0, j->warm, j->xproc));
		bench_gate_wait(&j->sh->main, 2);
		BA_DISPATCH(b, produce(b, K, &e, j->warm, j->n, j->xproc));
		j->sh->main.t_end[1] = bench_now_ns();
	} else {
		uint64_t s = 0;

		bench_gate_wait(&j->sh->warm, 2);
		BA_DISPATCH(b, s = consume(b, K, &e, j->warm, j->xproc));
		bench_gate_wait(&j->sh->main, 2);
		BA_DISPATCH(b, s += consume(b, K, &e, j->n, j->xproc));
		j->sh->main.t_end[0] = bench_now_ns();
		j->sh->sum = s;
	}
	return 0;
}

static double rate_of(struct shared *sh, long n)
{
	double end = sh->main.t_end[0] > sh->main.t_end[1] ? sh->main.t_end[0] : sh->main.t_end[1];

	return (double)n / (end - sh->main.t_start) * 1e3; /* M objects/s */
}

static int check_sum(struct shared *sh, long warm, long n, const char *who)
{
	uint64_t want = range_sum(0, warm + n);

	if (sh->sum != want) {
		bench_skip("%s: the consumer's checksum is %llu, want %llu: objects were lost or "
			   "corrupted on the way", who, (unsigned long long)sh->sum,
			   (unsigned long long)want);
		return -1;
	}
	return 0;
}

static void report(const char *variant, double rate)
{
	bench_row("prodcons", variant, "M obj/s", false, !strcmp(variant, "slabd-2proc"), rate);
}

/* ---- two processes over slabd ---------------------------------------------------------- */

#ifdef BA_HAVE_SLABD
static int slabd_2proc(const char *variant, long n, long warm, size_t ringcap)
{
	struct shared *sh = bench_shared(sizeof(*sh));
	struct bench_ring *ring = bench_ring_new(ringcap);
	pid_t pid[2];
	int rc[2];

	for (int role = 0; role < 2; role++) {
		pid[role] = bench_fork();
		if (pid[role] == 0) {
			struct ba_opts o = { .size = 64 };
			struct ba b;
			struct job j = { role, &b, ring, sh, n, warm, true };

			bench_pin(role);
			if (ba_setup(&b, "slabd", &o)) {
				sh->failed = 1;
				sh->warm.go = sh->main.go = 1;
				_exit(1);
			}
			worker(&j);
			ba_teardown(&b);
			_exit(0);
		}
	}
	rc[0] = bench_wait(pid[0], 600);
	rc[1] = bench_wait(pid[1], 600);
	if (rc[0] || rc[1] || sh->failed) {
		bench_skip("%s: a worker process failed (exit %d, %d)", variant, rc[0], rc[1]);
		return 0;
	}
	if (check_sum(sh, warm, n, variant))
		return 0;
	report(variant, rate_of(sh, n));
	return 0;
}
#endif

/* ---- two threads ---------------------------------------------------------------------- */

static int threads_2(const char *variant, const char *alloc, long n, long warm, size_t ringcap)
{
	struct shared *sh = bench_shared(sizeof(*sh));
	struct bench_ring *ring = bench_ring_new(ringcap);
	struct ba_opts o = { .size = 64, .nthreads = 2, .first_cpu = 0,
			     .pool_objs = (unsigned)(ringcap * 4 + 16384) - 1 };
	struct ba b;
	struct job j[2];
	void *args[2] = { &j[0], &j[1] };

	if (ba_setup(&b, alloc, &o))
		return 0;
	for (int r = 0; r < 2; r++)
		j[r] = (struct job){ r, &b, ring, sh, n, warm, false };
	ba_run_workers(&b, 2, 0, worker, args);
	if (check_sum(sh, warm, n, variant) == 0)
		report(variant, rate_of(sh, n));
	ba_teardown(&b);
	return 0;
}

/* ---- Boost.Interprocess ---------------------------------------------------------------- */

#ifdef BA_HAVE_BOOST
static int boost_2proc(const char *variant, long n, long warm, size_t ringcap)
{
	struct shared *sh = bench_shared(sizeof(*sh));
	struct bench_ring *ring = bench_ring_new(ringcap);
	char name[64];
	pid_t pid[2];
	int rc[2];

	snprintf(name, sizeof(name), "slabbench-bip-%d", (int)getpid());
	/* room for the ring's worth of nodes in flight, the caches, and the pool's chunks */
	if (bip_create(name, 64u << 20)) {
		bench_skip("managed_shared_memory create failed");
		return 0;
	}
	bench_note("cached_node_allocator<64 B>, max_cached_nodes %u per process (the default), "
		   "Boost %d.%d's process-shared pthread mutex; %ld objects per run",
		   bip_max_cached_nodes(), bip_boost_version() / 100000,
		   bip_boost_version() / 100 % 1000, n);
	bip_close();
	for (int role = 0; role < 2; role++) {
		pid[role] = bench_fork();
		if (pid[role] == 0) {
			struct bench_ring_end e = { .r = ring };
			uint64_t s = 0;

			bench_pin(role);
			if (bip_open(name))
				_exit(1);
			for (int phase = 0; phase < 2; phase++) {
				long from = phase ? warm : 0, cnt = phase ? n : warm;

				bench_gate_wait(phase ? &sh->main : &sh->warm, 2);
				if (role == 1) {
					for (long i = from; i < from + cnt; i++) {
						uint64_t *p = bip_alloc();
						if (!p)
							_exit(3);
						p[0] = (uint64_t)i;
						bench_ring_push(&e, bip_offset(p));
					}
					bench_ring_flush_head(&e);
				} else {
					for (long i = 0; i < cnt; i++) {
						uint64_t *p = bip_pointer(bench_ring_pop(&e));
						s += p[0];
						bip_free(p);
					}
				}
			}
			sh->main.t_end[role] = bench_now_ns();
			if (role == 0)
				sh->sum = s;
			bip_close();
			_exit(0);
		}
	}
	rc[0] = bench_wait(pid[0], 600);
	rc[1] = bench_wait(pid[1], 600);
	bip_remove(name);
	if (rc[0] || rc[1]) {
		bench_skip("%s: a worker process failed (exit %d, %d)", variant, rc[0], rc[1]);
		return 0;
	}
	if (check_sum(sh, warm, n, variant) == 0)
		report(variant, rate_of(sh, n));
	return 0;
}
#endif

/* ---- iceoryx ---------------------------------------------------------------------------- */

#ifdef BA_HAVE_ICEORYX
static int iceoryx_2proc(const char *variant, long n, long warm)
{
	struct shared *sh = bench_shared(sizeof(*sh));
	const char *skip = getenv("BENCH_ICEORYX_SKIP");
	char instance[32];
	pid_t pid[2];
	int rc[2];

	if (skip && *skip) {
		bench_skip("%s", skip);
		return 0;
	}
	if (!getenv("BENCH_ROUDI_PID")) {
		bench_skip("no iox-roudi started by the driver (run build/bench/prodcons, not the peer binary)");
		return 0;
	}
	snprintf(instance, sizeof(instance), "pc%d", (int)getpid());
	for (int role = 0; role < 2; role++) {
		pid[role] = bench_fork();
		if (pid[role] == 0) {
			char rt[64];
			uint64_t s = 0;

			bench_pin(role);
			snprintf(rt, sizeof(rt), "slabbench-%s-%d", role ? "pub" : "sub", (int)getpid());
			iox_runtime_init(rt);
			if (role == 1) {
				iox_pub_options_t po;
				iox_pub_storage_t st;
				iox_pub_t pub;
				long sent = 0;
				unsigned spins = 0;

				iox_pub_options_init(&po);
				po.historyCapacity = 0;
				po.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
				pub = iox_pub_init(&st, "slabbench", instance, "obj", &po);
				for (int ms = 0; !iox_pub_has_subscribers(pub); ms++) {
					if (ms > 20000)
						_exit(4); /* no subscriber connected within 20 s */
					usleep(1000);
				}
				for (int phase = 0; phase < 2; phase++) {
					long cnt = phase ? n : warm;

					bench_gate_wait(phase ? &sh->main : &sh->warm, 2);
					for (long i = 0; i < cnt; i++, sent++) {
						void *c;

						while (sent - (long)__atomic_load_n(&sh->released, __ATOMIC_ACQUIRE) >=
						       ICEORYX_WINDOW)
							bench_spin(&spins);
						while (iox_pub_loan_chunk(pub, &c, 64) != AllocationResult_SUCCESS)
							bench_spin(&spins);
						*(uint64_t *)c = (uint64_t)sent;
						iox_pub_publish_chunk(pub, c);
					}
				}
				sh->main.t_end[1] = bench_now_ns();
				/* wait for the subscriber before tearing the publisher down */
				while (__atomic_load_n(&sh->released, __ATOMIC_ACQUIRE) < (uint64_t)(warm + n))
					usleep(100);
				iox_pub_deinit(pub);
			} else {
				iox_sub_options_t so;
				iox_sub_storage_t st;
				iox_sub_t sub;
				long got = 0;
				unsigned spins = 0;

				iox_sub_options_init(&so);
				so.queueCapacity = 256;
				so.historyRequest = 0;
				so.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
				sub = iox_sub_init(&st, "slabbench", instance, "obj", &so);
				for (int ms = 0; iox_sub_get_subscription_state(sub) != SubscribeState_SUBSCRIBED; ms++) {
					if (ms > 20000)
						_exit(4); /* not subscribed within 20 s */
					usleep(1000);
				}
				for (int phase = 0; phase < 2; phase++) {
					long cnt = phase ? n : warm;

					bench_gate_wait(phase ? &sh->main : &sh->warm, 2);
					for (long i = 0; i < cnt; ) {
						const void *c;

						if (iox_sub_take_chunk(sub, &c) != ChunkReceiveResult_SUCCESS) {
							bench_spin(&spins);
							continue;
						}
						s += *(const uint64_t *)c;
						iox_sub_release_chunk(sub, c);
						i++;
						got++;
						if ((got & 31) == 0 || i == cnt)
							__atomic_store_n(&sh->released, (uint64_t)got, __ATOMIC_RELEASE);
					}
				}
				sh->main.t_end[0] = bench_now_ns();
				sh->sum = s;
				iox_sub_deinit(sub);
			}
			iox_runtime_shutdown();
			_exit(0);
		}
	}
	rc[0] = bench_wait(pid[0], 90);
	rc[1] = bench_wait(pid[1], 5);
	for (int role = 0; role < 2; role++) {
		/* the runtimes leave their sockets and lock files in /tmp */
		char f[96];

		snprintf(f, sizeof(f), "/tmp/slabbench-%s-%d", role ? "pub" : "sub", (int)pid[role]);
		unlink(f);
		strcat(f, ".lock");
		unlink(f);
	}
	if (rc[0] || rc[1]) {
		bench_skip("%s: a worker process failed or hung (subscriber %d, publisher %d; -1: killed "
			   "after a timeout, 4: the subscription did not connect within 20 s)", variant,
			   rc[0], rc[1]);
		return 0;
	}
	if (check_sum(sh, warm, n, variant) == 0)
		report(variant, rate_of(sh, n));
	bench_note("iox-roudi with one 64-byte mempool (16384 chunks); subscriber queue 256, "
		   "publisher window %d; %ld objects per run", ICEORYX_WINDOW, n);
	return 0;
}
#endif

int bench_child(const char *variant, int argc, char **argv)
{
	long n = bench_opt_long(argc, argv, "objects", 3000000);
	long nboost = bench_opt_long(argc, argv, "boost-objects", 1000000);
	long slow = bench_opt_long(argc, argv, "iceoryx-objects", 200000);
	size_t ringcap = (size_t)bench_opt_long(argc, argv, "ring", 4096);
	char alloc[32];
	const char *dash = strchr(variant, '-');

	snprintf(alloc, sizeof(alloc), "%.*s", dash ? (int)(dash - variant) : (int)strlen(variant),
		 variant);
#ifdef BA_HAVE_SLABD
	if (!strcmp(variant, "slabd-2proc"))
		return slabd_2proc(variant, n, n / 10, ringcap);
#endif
#ifdef BA_HAVE_BOOST
	if (!strcmp(variant, "boost-2proc"))
		return boost_2proc(variant, nboost, nboost / 10, ringcap);
#endif
#ifdef BA_HAVE_ICEORYX
	if (!strcmp(variant, "iceoryx-2proc"))
		return iceoryx_2proc(variant, slow, slow / 10);
#endif
	(void)slow;
	(void)nboost;
	if (dash && !strcmp(dash, "-2thr"))
		return threads_2(variant, alloc, n, n / 10, ringcap);
	bench_skip("variant %s is not built into this binary", variant);
	return 0;
}

/* ---- the driver starts iox-roudi for the iceoryx variant ---------------------------------- */

#ifdef BA_HAVE_SLABD
static pid_t roudi_pid;
static char roudi_dir[64];
static time_t roudi_started;

/* iox-roudi does not always remove its shared memory and lock files when it stops after
 * clients have come and gone: remove the ones our roudi made (not older than its start). */
static void roudi_remove_leftovers(void)
{
	struct passwd *pw = getpwuid(getuid());
	char user[96];
	const char *files[] = { "/dev/shm/iceoryx_mgmt", user, "/tmp/roudi", "/tmp/roudi.lock",
				"/tmp/iox-unique-roudi.lock" };
	struct stat st;

	snprintf(user, sizeof(user), "/dev/shm/%.80s", pw ? pw->pw_name : "root");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (lstat(files[i], &st) == 0 && st.st_mtime >= roudi_started - 1)
			unlink(files[i]);
}

static void roudi_skip(const char *why)
{
	setenv("BENCH_ICEORYX_SKIP", why, 1);
}

int bench_driver_setup(void)
{
	char peer[512], cfg[128], logp[128], buf[4096];
	const char *bin = "/usr/bin/iox-roudi";
	FILE *f;

	snprintf(peer, sizeof(peer), "%s/peers/prodcons.iceoryx", bench_exe_dir());
	if (access(peer, X_OK))
		return 0; /* the driver reports it as not built */
	if (access(bin, X_OK)) {
		roudi_skip("iox-roudi is not installed (Debian package iceoryx)");
		return 0;
	}
	snprintf(roudi_dir, sizeof(roudi_dir), "/tmp/slabbench-roudi-XXXXXX");
	if (!mkdtemp(roudi_dir)) {
		roudi_skip("mkdtemp failed");
		return 0;
	}
	snprintf(cfg, sizeof(cfg), "%s/roudi.toml", roudi_dir);
	snprintf(logp, sizeof(logp), "%s/roudi.log", roudi_dir);
	f = fopen(cfg, "w");
	if (!f) {
		roudi_skip("cannot write the roudi config");
		return 0;
	}
	fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n[[segment.mempool]]\nsize = 64\ncount = 16384\n");
	fclose(f);
	fflush(NULL);
	roudi_started = time(NULL);
	roudi_pid = fork();
	if (roudi_pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		setpgid(0, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, bin, "-c", cfg, "-l", "warning", (char *)NULL);
		_exit(127);
	}
	if (roudi_pid < 0) {
		roudi_skip("fork failed");
		return 0;
	}
	for (int i = 0; i < 1000; i++) {
		int status, fd;
		ssize_t k;

		usleep(10000);
		fd = open(logp, O_RDONLY);
		k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : 0;
		if (fd >= 0)
			close(fd);
		buf[k > 0 ? k : 0] = 0;
		if (strstr(buf, "RouDi is ready for clients")) {
			char pid[16];
			snprintf(pid, sizeof(pid), "%d", (int)roudi_pid);
			setenv("BENCH_ROUDI_PID", pid, 1);
			fprintf(stderr, "bench: started iox-roudi pid %d (config %s)\n", (int)roudi_pid, cfg);
			return 0;
		}
		if (waitpid(roudi_pid, &status, WNOHANG) == roudi_pid) {
			char why[600];
			for (char *p = buf; *p; p++)
				if (*p == '\n' || *p == '\t')
					*p = ' ';
			snprintf(why, sizeof(why), "iox-roudi exited at start-up: %.500s", buf);
			roudi_pid = 0;
			roudi_skip(why);
			return 0;
		}
	}
	roudi_skip("iox-roudi did not become ready within 10 s");
	bench_driver_teardown();
	return 0;
}

void bench_driver_teardown(void)
{
	char p[160];

	if (roudi_pid > 0) {
		int status, reaped = 0;

		kill(roudi_pid, SIGTERM);
		for (int i = 0; i < 500 && !reaped; i++) {
			reaped = waitpid(roudi_pid, &status, WNOHANG) == roudi_pid;
			if (!reaped)
				usleep(10000);
		}
		if (!reaped) {
			kill(roudi_pid, SIGKILL);
			waitpid(roudi_pid, &status, 0);
		}
		roudi_pid = 0;
		roudi_remove_leftovers();
	}
	if (roudi_dir[0]) {
		snprintf(p, sizeof(p), "%s/roudi.toml", roudi_dir);
		unlink(p);
		snprintf(p, sizeof(p), "%s/roudi.log", roudi_dir);
		unlink(p);
		rmdir(roudi_dir);
		roudi_dir[0] = 0;
	}
}
#endif
