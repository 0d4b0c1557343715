/* bench.c - the driver (interleaved runs, one table) and the child helpers.  See bench.h. */
#include "bench.h"
#include "bench_daemon.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- child helpers --------------------------------------------------------------------- */

double bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int bench_ncpu(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	return 1;
}

void bench_pin(int cpu)
{
	cpu_set_t set, allowed;
	int n = 0, want;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	want = cpu % CPU_COUNT(&allowed);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &allowed))
			continue;
		if (n++ == want) {
			CPU_ZERO(&set);
			CPU_SET(c, &set);
			sched_setaffinity(0, sizeof(set), &set);
			return;
		}
	}
}

static void *map_prefault(size_t len, int flags)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

void *bench_shared(size_t len)
{
	return map_prefault(len, MAP_SHARED | MAP_ANONYMOUS);
}

void *bench_private(size_t len)
{
	return map_prefault(len, MAP_PRIVATE | MAP_ANONYMOUS);
}

const char *bench_opt_str(int argc, char **argv, const char *name, const char *dflt)
{
	size_t len = strlen(name);

	for (int i = 0; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) || strncmp(argv[i] + 2, name, len))
			continue;
		if (argv[i][2 + len] == '=')
			return argv[i] + 3 + len;
		if (!argv[i][2 + len] && i + 1 < argc)
			return argv[i + 1];
	}
	return dflt;
}

long bench_opt_long(int argc, char **argv, const char *name, long dflt)
{
	const char *s = bench_opt_str(argc, argv, name, NULL);
	char *end;
	long v;

	if (!s)
		return dflt;
	v = strtol(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v *= 1000, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1000000, end++;
	if (*end || v <= 0)
		bench_die("--%s: want a positive number, got '%s'", name, s);
	return v;
}

void bench_row(const char *workload, const char *label, const char *unit, bool lower_better,
	       bool is_ref, double value)
{
	printf("ROW\t%s\t%s\t%s\t%d\t%d\t%.6g\n", workload, label, unit, lower_better, is_ref,
	       value);
	fflush(stdout);
}

static void tagged(const char *tag, const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	printf("%s\t%s\n", tag, buf);
	fflush(stdout);
}

void bench_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tagged("NOTE", fmt, ap);
	va_end(ap);
}

void bench_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tagged("SKIP", fmt, ap);
	va_end(ap);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "bench %s: ", bench_workload);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

const char *bench_symbol_origin(void *fn)
{
	Dl_info info;
	const char *s;

	if (!dladdr(fn, &info) || !info.dli_fname)
		return "?";
	s = strrchr(info.dli_fname, '/');
	return s ? s + 1 : info.dli_fname;
}

void bench_shuffle(void **a, size_t n, uint64_t seed)
{
	uint64_t s = seed ? seed : 1;

	for (size_t i = n; i > 1; i--) {
		size_t j = bench_rand(&s) % i;
		void *t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

void bench_gate_wait(struct bench_gate *g, unsigned nworkers)
{
	if (__atomic_add_fetch(&g->ready, 1, __ATOMIC_ACQ_REL) == nworkers) {
		g->t_start = bench_now_ns();
		__atomic_store_n(&g->go, 1, __ATOMIC_RELEASE);
	}
	unsigned spins = 0;

	while (!__atomic_load_n(&g->go, __ATOMIC_ACQUIRE))
		bench_spin(&spins);
}

struct bench_ring *bench_ring_new(size_t cap)
{
	struct bench_ring *r;

	if (cap & (cap - 1))
		bench_die("ring capacity %zu is not a power of two", cap);
	r = bench_shared(sizeof(*r) + cap * sizeof(uint64_t));
	r->cap = cap;
	r->mask = cap - 1;
	return r;
}

pid_t bench_fork(void)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
	}
	return pid;
}

/* Blocks in poll on a pidfd until the child exits: the 2-process workloads keep both
 * CPUs busy with their workers, and a parent that polled waitpid every millisecond
 * preempted one of them a thousand times a second.  The polling loop is the fallback
 * where pidfd_open is missing (headers or kernel).  pid must be this process's child,
 * not yet reaped. */
int bench_wait(pid_t pid, int timeout_s)
{
	double deadline = bench_now_ns() + timeout_s * 1e9;
	int status;
#ifdef SYS_pidfd_open
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	/* Sleep until the child has exited or the deadline passed (a signal does not
	 * restart the timeout); the loop below then reaps it at once, or kills it. */
	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left;

		while ((left = (int)((deadline - bench_now_ns()) / 1e6)) > 0 &&
		       poll(&p, 1, left) < 0 && errno == EINTR)
			;
		close(fd);
	}
#endif
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (w < 0 && errno != EINTR)
			return -1;
		if (bench_now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(1000);
	}
}

long bench_peak_rss_kib(void)
{
	struct rusage self, kids;

	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return self.ru_maxrss > kids.ru_maxrss ? self.ru_maxrss : kids.ru_maxrss;
}

long bench_rss_bytes(void)
{
	long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

const char *bench_exe_dir(void)
{
	static char dir[PATH_MAX];
	ssize_t n;
	char *slash;

	if (dir[0])
		return dir;
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n <= 0)
		bench_die("readlink /proc/self/exe: %s", strerror(errno));
	dir[n] = 0;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	return dir;
}

/* ---- the driver ------------------------------------------------------------------------ */

#define MAX_ROWS  96
#define MAX_NOTES 48
#define MAX_VARS  32

struct row {
	char   workload[40], label[48], unit[24];
	bool   lower_better, is_ref;
	int    var;
	int    n;
	double v[BENCH_MAX_RUNS];
	long   rss[BENCH_MAX_RUNS];
};

static struct row rows[MAX_ROWS];
static int nrows;
static char *notes[MAX_NOTES];
static int nnotes;
static char skipped[MAX_VARS][300];
static int opt_timeout = 300;

static void add_note(const char *text)
{
	for (int i = 0; i < nnotes; i++)
		if (!strcmp(notes[i], text))
			return;
	if (nnotes < MAX_NOTES)
		notes[nnotes++] = strdup(text);
}

static struct row *find_row(const char *workload, const char *label, int var)
{
	for (int i = 0; i < nrows; i++)
		if (!strcmp(rows[i].workload, workload) && !strcmp(rows[i].label, label))
			return &rows[i];
	if (nrows == MAX_ROWS)
		return NULL;
	memset(&rows[nrows], 0, sizeof(rows[nrows]));
	snprintf(rows[nrows].workload, sizeof(rows[nrows].workload), "%.39s", workload);
	snprintf(rows[nrows].label, sizeof(rows[nrows].label), "%.47s", label);
	rows[nrows].var = var;
	return &rows[nrows++];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[BENCH_MAX_RUNS];

	if (!n)
		return NAN;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double best(const struct row *r)
{
	double b = r->v[0];

	for (int i = 1; i < r->n; i++)
		b = r->lower_better ? fmin(b, r->v[i]) : fmax(b, r->v[i]);
	return b;
}

static volatile pid_t running_child;

static void on_signal(int sig)
{
	pid_t c = running_child;

	if (c > 0)
		kill(-c, SIGKILL);
	if (bench_driver_teardown)
		bench_driver_teardown();
	if (bench_daemon_kill_all)
		bench_daemon_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Run one child; parse its lines into the table.  Returns 0, or -1 if the variant is to
 * be skipped from now on (reason in skipped[var]). */
static int run_child(int var, int run, int argc, char **argv)
{
	const struct bench_variant *v = &bench_variants[var];
	char path[PATH_MAX], errpath[64], *args[128];
	char buf[1 << 16];
	size_t len = 0;
	int pfd[2], errfd, n = 0, status = 0, got_rows = 0;
	double deadline;
	pid_t pid;

	if (v->binary)
		snprintf(path, sizeof(path), "%s/peers/%s.%s", bench_exe_dir(), bench_workload,
			 v->binary);
	else
		snprintf(path, sizeof(path), "/proc/self/exe");
	if (access(path, X_OK)) {
		snprintf(skipped[var], sizeof(skipped[var]),
			 "%.160s not built (its Debian package is missing or failed to "
			 "install; `make bench` installs it)", path);
		return -1;
	}
	args[n++] = path;
	args[n++] = (char *)"--child";
	args[n++] = (char *)v->name;
	for (int i = 0; i < argc && n < 120; i++)
		args[n++] = argv[i];
	args[n] = NULL;

	snprintf(errpath, sizeof(errpath), "/tmp/slabbench-err-%d", (int)getpid());
	errfd = open(errpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (errfd < 0 || pipe2(pfd, O_CLOEXEC))
		bench_die("pipe/open: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pfd[1], 1);
		dup2(errfd, 2);
		execv(path, args);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	running_child = pid;
	close(pfd[1]);
	deadline = bench_now_ns() + opt_timeout * 1e9;
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int left = (int)((deadline - bench_now_ns()) / 1e6);
		ssize_t k;

		if (left <= 0) {
			kill(-pid, SIGKILL);
			snprintf(skipped[var], sizeof(skipped[var]), "timed out after %d s (run %d)",
				 opt_timeout, run + 1);
			break;
		}
		if (poll(&p, 1, left) <= 0)
			continue;
		if (len >= sizeof(buf) - 1)
			len = 0; /* a runaway child: drop its chatter */
		k = read(pfd[0], buf + len, sizeof(buf) - 1 - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(pfd[0]);
	waitpid(pid, &status, 0);
	kill(-pid, SIGKILL); /* grandchildren a failed child left behind */
	running_child = 0;
	buf[len] = 0;

	long rss = -1;
	struct row *mine[MAX_ROWS];
	int nmine = 0;

	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[8];
		int nf = 0;

		for (char *t = line; nf < 8; ) {
			f[nf++] = t;
			t = strchr(t, '\t');
			if (!t)
				break;
			*t++ = 0;
		}
		if (!strcmp(f[0], "ROW") && nf == 7) {
			struct row *r = find_row(f[1], f[2], var);
			if (!r || r->n >= BENCH_MAX_RUNS)
				continue;
			snprintf(r->unit, sizeof(r->unit), "%.23s", f[3]);
			r->lower_better = atoi(f[4]);
			r->is_ref = atoi(f[5]);
			r->v[r->n] = strtod(f[6], NULL);
			r->rss[r->n++] = -1;
			mine[nmine++] = r;
			got_rows++;
		} else if (!strcmp(f[0], "NOTE") && nf >= 2) {
			char t[1200];
			snprintf(t, sizeof(t), "%.60s: %.1000s", v->name, f[1]);
			add_note(t);
		} else if (!strcmp(f[0], "SKIP") && nf >= 2 && !skipped[var][0]) {
			snprintf(skipped[var], sizeof(skipped[var]), "%.290s", f[1]);
		} else if (!strcmp(f[0], "RSS") && nf >= 2) {
			rss = atol(f[1]);
		}
	}
	for (int i = 0; i < nmine; i++)
		mine[i]->rss[mine[i]->n - 1] = rss;
	if (!skipped[var][0] && (!WIFEXITED(status) || WEXITSTATUS(status) || !got_rows)) {
		char tail[200] = "";
		ssize_t k = pread(errfd, tail, sizeof(tail) - 1, 0);
		off_t end = lseek(errfd, 0, SEEK_END);

		if (end > (off_t)sizeof(tail) - 1)
			k = pread(errfd, tail, sizeof(tail) - 1, end - (off_t)sizeof(tail) + 1);
		tail[k > 0 ? k : 0] = 0;
		for (char *p = tail; *p; p++)
			if (*p == '\n' || *p == '\t')
				*p = ' ';
		snprintf(skipped[var], sizeof(skipped[var]), "failed in run %d (%s %d): %.199s", run + 1,
			 WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail);
	}
	close(errfd);
	unlink(errpath);
	return skipped[var][0] ? -1 : 0;
}

static void print_table(int runs)
{
	printf("\n== %s: %s ==\n", bench_workload, bench_title);
	printf("   %d runs per row, variants interleaved run by run (A B C A B C ...).\n", runs);
	printf("%-22s %-28s %11s %11s  %-9s %11s %10s\n", "workload", "allocator", "median", "best",
	       "unit", "slabd/peer", "peak RSS");
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i], *ref = NULL;
		double med = median(r->v, r->n);
		double rss[BENCH_MAX_RUNS];
		char ratio[32] = "-", rsss[32] = "-";
		int nr = 0;

		for (int j = 0; j < nrows; j++)
			if (rows[j].is_ref && !strcmp(rows[j].workload, r->workload))
				ref = &rows[j];
		if (ref && ref != r && ref->n && r->n) {
			double rm = median(ref->v, ref->n);
			double q = r->lower_better ? rm / med : med / rm;
			snprintf(ratio, sizeof(ratio), "%.2f", q);
		} else if (r->is_ref) {
			snprintf(ratio, sizeof(ratio), "(ref)");
		}
		for (int k = 0; k < r->n; k++)
			if (r->rss[k] >= 0)
				rss[nr++] = (double)r->rss[k];
		if (nr)
			snprintf(rsss, sizeof(rsss), "%.1f MiB", median(rss, nr) / 1024.0);
		printf("%-22s %-28s %11.4g %11.4g  %-9s %11s %10s\n", r->workload, r->label, med,
		       best(r), r->unit, ratio, rsss);
	}
	for (int v = 0; bench_variants[v].name; v++)
		if (skipped[v][0])
			printf("SKIPPED %-12s %s\n", bench_variants[v].name, skipped[v]);
	printf("   median/best over the runs (best = min for times, max for rates).\n"
	       "   slabd/peer: slabd's median time divided by the peer's (rates inverted),\n"
	       "   against the (ref) slabd row of the same workload: below 1.00 slabd is faster.\n"
	       "   peak RSS: the child's (and its children's) maximum resident set, median.\n");
	for (int i = 0; i < nnotes; i++)
		printf("   note: %s\n", notes[i]);
	fflush(stdout);
}

static int driver(int argc, char **argv)
{
	int runs = 5;
	char *fwd[128];
	int nfwd = 0;
	const char *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
			runs = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			opt_timeout = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i];
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			setenv("SLABD_SOCKET", argv[++i], 1);
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: %s [--runs N (5)] [--only v1,v2] [--timeout S] [--socket PATH] %s\n"
			       "  %s\n  variants:", argv[0], bench_usage, bench_title);
			for (int v = 0; bench_variants[v].name; v++)
				printf(" %s", bench_variants[v].name);
			printf("\n  Without --socket or $SLABD_SOCKET a private slabd is started.\n");
			return 0;
		} else if (nfwd < 120) {
			fwd[nfwd++] = argv[i];
		}
	}
	if (runs < 1 || runs > BENCH_MAX_RUNS)
		bench_die("--runs must be 1..%d", BENCH_MAX_RUNS);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (bench_daemon_ensure && !(&bench_own_daemon && bench_own_daemon) && bench_daemon_ensure())
		return 1;
	if (bench_driver_setup && bench_driver_setup()) {
		if (bench_daemon_kill_all)
			bench_daemon_kill_all();
		return 1;
	}
	for (int v = 0; bench_variants[v].name; v++) {
		if (only) {
			char pat[64];
			snprintf(pat, sizeof(pat), ",%s,", bench_variants[v].name);
			char list[512];
			snprintf(list, sizeof(list), ",%s,", only);
			if (!strstr(list, pat))
				snprintf(skipped[v], sizeof(skipped[v]), "not selected (--only)");
		}
	}
	for (int run = 0; run < runs; run++)
		for (int v = 0; bench_variants[v].name; v++)
			if (!skipped[v][0])
				run_child(v, run, nfwd, fwd);
	for (int v = 0; bench_variants[v].name; v++)
		if (only && !strcmp(skipped[v], "not selected (--only)"))
			skipped[v][0] = 0;
	print_table(runs);
	if (bench_driver_teardown)
		bench_driver_teardown();
	if (bench_daemon_kill_all)
		bench_daemon_kill_all();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "--child")) {
		int rc;

		setvbuf(stdout, NULL, _IOLBF, 0);
		rc = bench_child(argv[2], argc - 3, argv + 3);
		printf("RSS\t%ld\n", bench_peak_rss_kib());
		fflush(stdout);
		return rc;
	}
	return driver(argc, argv);
}
