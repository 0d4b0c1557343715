/* harness.c - see harness.h.  Guards the integration tests' environment: a real slabd per
 * test on a private socket, and no daemon or helper child ever outliving the test binary.
 *
 * Environment: SLABD_BIN (the daemon), SLABD_WRAPPER (a command slabd runs under, e.g.
 * valgrind; its errors fail the test), TH_TIMEOUT (the watchdog), TH_KEEP (keep the
 * daemons' directories), SLAB_TEST_SCALE (shorter loops).  harness.h says more.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_RECS     32
#define TH_MAX_ARGS     48
#define TH_MAX_WRAP     32      /* words of $SLABD_WRAPPER */
/* Time limits on slabd, each through th_ms (longer under $SLABD_WRAPPER). */
#define TH_REPLY_MS     5000
#define TH_STOP_MS      5000
#define TH_START_MS     5000
/* How much slower slabd runs under $SLABD_WRAPPER, for th_ms: valgrind memcheck's start-up
 * alone (reading the debug info of slabd, libevent, jansson, libnuma and libc) is 1-2 s
 * on the 2-CPU test machine, and its code runs 10-50 times slower, but slabd mostly
 * waits on its socket. */
#define TH_WRAP_SLOWDOWN 6

/* Everything the harness must clean up, as copies: a failing test's stack is gone by the
 * time the atexit or signal handlers run.  Written only by the main thread outside signal
 * handlers; the handlers only read it (and clear pids they reaped). */
struct th_rec {
	volatile pid_t pid;     /* 0: free slot */
	pid_t          owner;   /* the process that started it: only it cleans up */
	bool           daemon;
	char           dir[64];
	char           socket[108];
	char           log[128];
};

static struct th_rec recs[TH_MAX_RECS];
static bool installed;

/* ---- small utilities ---------------------------------------------------------------- */

void th_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

long long th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* th_write_all and th_read_all: all len bytes, a write or read at a time, retried on
 * EINTR; each read first waits up to timeout_ms for data (< 0: forever). */
static int transfer_all(int fd, char *p, size_t len, bool reading, int timeout_ms)
{
	while (len) {
		ssize_t n;

		if (reading) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int pr = poll(&pfd, 1, timeout_ms);

			if (pr < 0 && errno == EINTR)
				continue;
			if (pr <= 0)
				return -1;
		}
		n = reading ? read(fd, p, len) : write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int th_write_all(int fd, const void *buf, size_t len)
{
	return transfer_all(fd, (char *)buf, len, false, -1); /* buf is only written out */
}

int th_read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	return transfer_all(fd, buf, len, true, timeout_ms);
}

/* Async-signal-safe write of a string to stderr. */
static void say(const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = write(STDERR_FILENO, s, len);
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* Async-signal-safe: "what: errno N\n" to stderr. */
static void say_errno(const char *what, int err)
{
	char num[16], *p = num + sizeof(num) - 1;

	*p = 0;
	do
		*--p = (char)('0' + err % 10);
	while ((err /= 10) && p > num);
	say(what);
	say(": errno ");
	say(p);
	say("\n");
}

unsigned long th_scaled(unsigned long n)
{
	const char *s = getenv("SLAB_TEST_SCALE");
	unsigned long d = s ? strtoul(s, NULL, 10) : 1;

	return d > 1 ? (n / d ? n / d : 1) : n;
}

/* ---- $SLABD_WRAPPER: slabd under valgrind ---------------------------------------------- */

/* The wrapper's words (split on blanks, no quoting), parsed once, its first word looked
 * up in $PATH here so that a forked child only has to execv. */
static struct {
	bool        parsed;
	bool        bad;            /* set but unusable (printed): slabd does not start */
	size_t      n;              /* 0: no wrapper */
	const char *argv[TH_MAX_WRAP];
	int         errcode;        /* its --error-exitcode=N, or -1 */
	char        words[1024];
	char        path[PATH_MAX];
} wrap = { .errcode = -1 };

static int find_in_path(const char *name, char *buf, size_t cap)
{
	const char *p = getenv("PATH");

	while (p && *p) {
		size_t len = strcspn(p, ":");
		size_t w = (size_t)snprintf(buf, cap, "%.*s/%s", len ? (int)len : 1,
					    len ? p : ".", name);

		if (w < cap && access(buf, X_OK) == 0)
			return 0;
		p += len + (p[len] == ':');
	}
	return -1;
}

static void wrap_parse(void)
{
	const char *env = getenv("SLABD_WRAPPER");
	char *save = NULL;

	if (wrap.parsed)
		return;
	wrap.parsed = true;
	if (!env || !env[strspn(env, " \t")])
		return;
	if (strlen(env) >= sizeof(wrap.words)) {
		fprintf(stderr, "harness: SLABD_WRAPPER is longer than %zu bytes\n",
			sizeof(wrap.words) - 1);
		wrap.bad = true;
		return;
	}
	strcpy(wrap.words, env);
	for (char *w = strtok_r(wrap.words, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (wrap.n == TH_MAX_WRAP) {
			fprintf(stderr, "harness: SLABD_WRAPPER has more than %d words\n", TH_MAX_WRAP);
			wrap.bad = true;
			return;
		}
		if (!strncmp(w, "--error-exitcode=", 17))
			wrap.errcode = atoi(w + 17);
		wrap.argv[wrap.n++] = w;
	}
	if (!strchr(wrap.argv[0], '/')) {
		if (find_in_path(wrap.argv[0], wrap.path, sizeof(wrap.path))) {
			fprintf(stderr, "harness: SLABD_WRAPPER: %s is not in $PATH\n", wrap.argv[0]);
			wrap.bad = true;
			return;
		}
		wrap.argv[0] = wrap.path;
	}
	fprintf(stderr, "harness: slabd runs under SLABD_WRAPPER=\"%s\"; time limits on it x%d\n",
		env, TH_WRAP_SLOWDOWN);
}

static bool th_wrapped(void)
{
	wrap_parse();
	return wrap.n || wrap.bad;
}

long long th_ms(long long ms)
{
	return th_wrapped() ? ms * TH_WRAP_SLOWDOWN : ms;
}

/* argv for slabd: the wrapper's words, bin, then args (NULL-terminated or NULL).  The
 * number of words, or -1 (printed) if they do not fit in cap - 1 or the wrapper is bad. */
static int slabd_argv(const char **argv, size_t cap, const char *bin, const char *const *args)
{
	size_t n = 0;

	wrap_parse();
	if (wrap.bad)
		return -1;
	/* cap is at least TH_MAX_WRAP + 2 (both callers), and wrap.n <= TH_MAX_WRAP */
	for (size_t i = 0; i < wrap.n; i++)
		argv[n++] = wrap.argv[i];
	argv[n++] = bin;
	for (size_t i = 0; args && args[i]; i++) {
		if (n + 1 >= cap) {
			fprintf(stderr, "harness: too many slabd arguments\n");
			return -1;
		}
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return (int)n;
}

/* In a forked child: exec slabd (bin) with args through $SLABD_WRAPPER; returns only on
 * failure (errno). */
static void exec_slabd(const char *bin, const char *const *args)
{
	const char *argv[TH_MAX_WRAP + TH_MAX_ARGS + 2];

	if (slabd_argv(argv, sizeof(argv) / sizeof(argv[0]), bin, args) < 0) {
		errno = EINVAL;
		return;
	}
	execv(argv[0], (char *const *)argv);
}

/* Runs of slabd by this process that the wrapper reported on (vg_check), and how many of them
 * no test has failed for yet (th_wrapper_check); vg_owner: the process that counted them
 * (a forked child starts from its parent's counts). */
static unsigned vg_found, vg_unchecked;
static pid_t vg_owner;

/* The lines of valgrind's reports on slabd pid in its log: with -q, valgrind writes
 * nothing else there but "==PID== Warning: ..." notes, which are not errors, and its own
 * "--PID--" messages, of which "--PID-- WARNING: unhandled ... syscall: N" counts too:
 * valgrind failed that call with ENOSYS, so the test ran a slabd that differs from the
 * real one (valgrind 3.19 and pidfd_open: tests/valgrind/pidfd_preload.c).  Returns how
 * many; prints them if print. */
/* (tests/cli/test_slabctl.sh applies the same rule, and TH_WRAP_SLOWDOWN: change them
 * together.) */
static unsigned vg_log_reports(const char *log, pid_t pid, bool print)
{
	char report[32], own[48], *line = NULL;
	size_t cap = 0, rlen, olen;
	unsigned n = 0;
	FILE *f = fopen(log, "re");

	if (!f)
		return 0;
	rlen = (size_t)snprintf(report, sizeof(report), "==%d==", (int)pid);
	olen = (size_t)snprintf(own, sizeof(own), "--%d-- WARNING: unhandled", (int)pid);
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, own, olen) &&
		    (strncmp(line, report, rlen) ||
		     !strncmp(line + rlen + strspn(line + rlen, " "), "Warning:", 8)))
			continue;
		n++;
		if (print)
			fputs(line, stderr);
	}
	free(line);
	fclose(f);
	return n;
}

/* After slabd pid ended with status rc (decode_status: 128 + signal if killed), with its
 * log still there: did the wrapper find errors in it?  valgrind then exits with its
 * --error-exitcode; a slabd SIGKILLed (th_kill, or a stop that timed out) never gets
 * there, but valgrind wrote each error to the log when it happened (leaks, found only
 * at exit, are the ones lost).  Prints the whole report, not just the log's tail, and
 * counts the run for th_wrapper_check and the exit status. */
static void vg_check(const char *log, pid_t pid, int rc)
{
	unsigned lines;

	if (!th_wrapped())
		return;
	lines = vg_log_reports(log, pid, false);
	if (!lines && (wrap.errcode < 0 || rc != wrap.errcode))
		return;
	fprintf(stderr, "harness: ==== SLABD_WRAPPER (valgrind) reported errors, or a syscall it "
		"could not run, in slabd pid %d (exit status %d); the report, %u lines of %s: ====\n",
		(int)pid, rc, lines, log);
	vg_log_reports(log, pid, true);
	fprintf(stderr, "harness: ==== end of the report on slabd pid %d ====\n", (int)pid);
	if (vg_owner != getpid()) {
		vg_owner = getpid();
		vg_found = vg_unchecked = 0;
	}
	vg_found++;
	vg_unchecked++;
}

void th_wrapper_check(void)
{
	unsigned n = vg_owner == getpid() ? vg_unchecked : 0;

	if (!n)
		return;
	vg_unchecked = 0;
	fail_msg("SLABD_WRAPPER (valgrind) reported errors in %u slabd run(s) during this test; "
		 "the reports are above", n);
}

static struct th_rec *rec_add(pid_t pid, bool daemon)
{
	for (int i = 0; i < TH_MAX_RECS; i++) {
		if (!recs[i].pid) {
			memset(&recs[i], 0, sizeof(recs[i]));
			recs[i].owner = getpid();
			recs[i].daemon = daemon;
			recs[i].pid = pid;
			return &recs[i];
		}
	}
	fprintf(stderr, "harness: more than %d daemons and children at once\n", TH_MAX_RECS);
	return NULL;
}

static struct th_rec *rec_find(pid_t pid)
{
	for (int i = 0; i < TH_MAX_RECS; i++)
		if (recs[i].pid == pid && recs[i].owner == getpid())
			return &recs[i];
	return NULL;
}

/* slabd's arena identity record next to its socket (SOCKET.arena, and the .new it is
 * written to), which a stop leaves with the socket while clients may come back.
 * Async-signal-safe. */
static void unlink_records(const char *socket)
{
	static const char *const suffix[] = { ".arena", ".arena.new" };
	size_t len = strlen(socket);
	char path[sizeof(((struct th_rec *)0)->socket) + 16];

	if (len + 12 >= sizeof(path))
		return;
	for (unsigned i = 0; i < 2; i++) {
		memcpy(path, socket, len);
		memcpy(path + len, suffix[i], strlen(suffix[i]) + 1);
		unlink(path);
	}
}

/* Async-signal-safe: the daemon's files and directory (unlink and rmdir only). */
static void rec_remove_files(const struct th_rec *r)
{
	if (!r->dir[0])
		return;
	unlink_records(r->socket);
	unlink(r->socket);
	unlink(r->log);
	rmdir(r->dir);
}

/* ---- the last line of defence: atexit and fatal signals -------------------------------- */

/* Signal handler: SIGKILL everything this process started, reap it, remove the files
 * (the log is lost; the test is dying anyway), then die of the same signal. */
static void on_fatal(int sig)
{
	pid_t self = getpid();

	for (int i = 0; i < TH_MAX_RECS; i++) {
		pid_t pid = recs[i].pid;

		if (!pid || recs[i].owner != self)
			continue;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (recs[i].daemon)
			rec_remove_files(&recs[i]);
		recs[i].pid = 0;
	}
	if (sig == SIGALRM)
		say("harness: watchdog alarm: the test took too long; daemons and children killed\n");
	else
		say("harness: fatal signal; daemons and children killed\n");
	{
		struct sigaction sa = { .sa_handler = SIG_DFL };
		sigset_t set;

		sigemptyset(&sa.sa_mask);
		sigaction(sig, &sa, NULL);
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		raise(sig);
	}
	_exit(128 + sig);
}

static void print_log_tail(const char *path, int lines);

/* At exit: stop what a test left running (gracefully, with the log's tail), so an exit
 * after failed tests still leaves nothing behind. */
static void on_exit_cleanup(void)
{
	pid_t self = getpid();

	for (int i = 0; i < TH_MAX_RECS; i++) {
		struct th_rec *r = &recs[i];
		pid_t pid = r->pid;

		if (!pid || r->owner != self)
			continue;
		if (r->daemon) {
			struct th_daemon d = { .pid = pid };

			fprintf(stderr, "harness: slabd pid %d still running at exit: stopping it\n",
				(int)pid);
			memcpy(d.dir, r->dir, sizeof(d.dir));
			memcpy(d.socket, r->socket, sizeof(d.socket));
			memcpy(d.log, r->log, sizeof(d.log));
			th_stop(&d);
		} else {
			fprintf(stderr, "harness: child pid %d still running at exit: killing it\n",
				(int)pid);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			r->pid = 0;
		}
	}
	/* Whatever the tests checked: a test binary in which valgrind found errors in a
	 * slabd it ran does not pass. */
	if (vg_found && vg_owner == self) {
		int code = wrap.errcode > 0 ? wrap.errcode : 1;

		fprintf(stderr, "harness: SLABD_WRAPPER (valgrind) reported errors in %u slabd run(s) "
			"of this test binary (reports above): exit status %d\n", vg_found, code);
		fflush(NULL);
		_exit(code);
	}
}

static void install_handlers(void)
{
	static const int sigs[] = { SIGALRM, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGABRT,
				    SIGSEGV, SIGBUS, SIGFPE, SIGILL };
	struct sigaction sa = { .sa_handler = on_fatal };

	if (installed)
		return;
	installed = true;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	atexit(on_exit_cleanup);
}

static void arm_watchdog(void)
{
	const char *s = getenv("TH_TIMEOUT");
	unsigned secs = s && *s ? (unsigned)strtoul(s, NULL, 10) : 280;
	unsigned left = alarm(0);

	alarm(left ? left : secs);
}

/* ---- children ------------------------------------------------------------------------ */

int th_child_init(void)
{
	pid_t parent = getppid();

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return -1;
	/* The parent may have died before prctl: then nobody will signal us. */
	return getppid() == parent ? 0 : -1;
}

static int is_kept(int fd, const int *keep, size_t nkeep)
{
	for (size_t i = 0; i < nkeep; i++)
		if (keep[i] == fd)
			return 1;
	return 0;
}

/* In a freshly forked child before exec: defaults for signals and mask, and no fd from
 * 3 up except keep (which become inheritable). */
static void child_prepare(pid_t parent, const int *keep, size_t nkeep)
{
	struct rlimit rl;
	sigset_t none;
	long maxfd = 1024;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	alarm(0);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < 65536)
		maxfd = (long)rl.rlim_cur;
	for (long fd = 3; fd < maxfd; fd++) {
		if (is_kept((int)fd, keep, nkeep))
			fcntl((int)fd, F_SETFD, 0);
		else
			close((int)fd);
	}
}

static int self_exe(char *buf, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", buf, cap - 1);

	if (n <= 0 || (size_t)n >= cap - 1) {
		fprintf(stderr, "harness: readlink /proc/self/exe: %s\n", strerror(errno));
		return -1;
	}
	buf[n] = 0;
	return 0;
}

/* fork, with stdio flushed first (no buffered line printed twice); -1 printed. */
static pid_t fork_flushed(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fprintf(stderr, "harness: fork: %s\n", strerror(errno));
	return pid;
}

pid_t th_spawn_self(const char *const *args, const int *keep_fds, size_t nkeep)
{
	char exe[PATH_MAX];
	const char *argv[TH_MAX_ARGS + 2];
	size_t n = 0;
	pid_t parent = getpid(), pid;

	install_handlers();
	if (self_exe(exe, sizeof(exe)))
		return -1;
	argv[n++] = exe;
	for (; args && args[n - 1] && n < TH_MAX_ARGS; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid = fork_flushed();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		child_prepare(parent, keep_fds, nkeep);
		execv(exe, (char *const *)argv);
		say_errno("harness: execv of the test binary failed", errno);
		_exit(127);
	}
	if (!rec_add(pid, false)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

void th_track_child(pid_t pid)
{
	install_handlers();
	rec_add(pid, false);
}

void th_kill_children(void)
{
	for (int i = 0; i < TH_MAX_RECS; i++) {
		pid_t pid = recs[i].pid;

		if (!pid || recs[i].daemon || recs[i].owner != getpid())
			continue;
		fprintf(stderr, "harness: killing child pid %d left by the test\n", (int)pid);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		recs[i].pid = 0;
	}
}

static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

bool th_child_exited(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

int th_wait_child(pid_t pid, int timeout_s)
{
	long long deadline = th_now_ms() + (long long)timeout_s * 1000;
	struct th_rec *r = rec_find(pid);
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			fprintf(stderr, "harness: waitpid(%d): %s\n", (int)pid, strerror(errno));
			if (r)
				r->pid = 0;
			return -1;
		}
		if (th_now_ms() > deadline) {
			fprintf(stderr, "harness: child %d still running after %d s: killing it\n",
				(int)pid, timeout_s);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			if (r)
				r->pid = 0;
			return -1;
		}
		th_sleep_ms(5);
	}
	if (r)
		r->pid = 0;
	return decode_status(status);
}

/* ---- the daemon ------------------------------------------------------------------------- */

int th_slabd_bin(char *buf, size_t cap)
{
	const char *env = getenv("SLABD_BIN");
	char exe[PATH_MAX], *slash;

	wrap_parse(); /* here in the parent, before a test forks for th_exec_slabd */
	if (env && *env) {
		snprintf(buf, cap, "%s", env);
	} else {
		if (self_exe(exe, sizeof(exe)))
			return -1;
		slash = strrchr(exe, '/');
		if (!slash)
			return -1;
		*slash = 0;
		if ((size_t)snprintf(buf, cap, "%s/../bin/slabd", exe) >= cap)
			return -1;
	}
	if (access(buf, X_OK)) {
		fprintf(stderr, "harness: slabd binary %s: %s (set SLABD_BIN)\n", buf,
			strerror(errno));
		return -1;
	}
	return 0;
}

pid_t th_spawn_slabd(const char *log, const char *const *args)
{
	char bin[PATH_MAX];
	pid_t parent = getpid(), pid;

	if (th_slabd_bin(bin, sizeof(bin)))
		return -1;
	pid = fork_flushed();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		/* as th_start's slabd: dies with us, default signals, no fd of ours but 0-2 */
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		child_prepare(parent, NULL, 0);
		exec_slabd(bin, args);
		_exit(127);
	}
	th_track_child(pid);
	return pid;
}

int th_wait_slabd(pid_t pid, const char *log, int timeout_ms)
{
	int rc = th_wait_child(pid, (int)(th_ms(timeout_ms) / 1000));

	vg_check(log, pid, rc);
	return rc;
}

static void print_log_tail(const char *path, int lines)
{
	char buf[16384];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size;
	char *p;

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	p = buf + n;
	while (p > buf && lines >= 0)
		if (*--p == '\n')
			lines--;
	if (*p == '\n')
		p++;
	fprintf(stderr, "---- last lines of %s ----\n%s---- end of log ----\n", path, p);
}

bool th_log_has(const struct th_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[1024];
	bool found = false;

	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

bool th_wait_log(const struct th_daemon *d, const char *needle)
{
	for (long long until = th_now_ms() + th_ms(5000);; th_sleep_ms(10))
		if (th_log_has(d, needle))
			return true;
		else if (th_now_ms() > until)
			return false;
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Fork + exec slabd in d's directory (paths already set) and wait until its socket
 * accepts.  restart: the log is appended to, and a failure keeps the directory (d stays
 * "killed" for th_stop to clean up); else a failure removes it. */
static int spawn_daemon(struct th_daemon *d, const char *const *extra_args, bool restart)
{
	char bin[PATH_MAX];
	const char *args[TH_MAX_ARGS + 8], *argv[TH_MAX_WRAP + TH_MAX_ARGS + 10];
	size_t n = 0;
	int logfd, nullfd, status;
	pid_t parent = getpid(), pid;
	struct th_rec *r;
	long long deadline;

	if (th_slabd_bin(bin, sizeof(bin)))
		goto fail_files;
	args[n++] = "--socket";
	args[n++] = d->socket;
	args[n++] = "--arena-size";
	args[n++] = "64M";
	args[n++] = "--log-level";
	args[n++] = "info";
	for (size_t i = 0; extra_args && extra_args[i]; i++) {
		if (n >= TH_MAX_ARGS + 7) {
			fprintf(stderr, "harness: too many extra slabd arguments\n");
			goto fail_files;
		}
		args[n++] = extra_args[i];
	}
	args[n] = NULL;
	/* Under $SLABD_WRAPPER the wrapper's words come first; valgrind runs slabd in its
	 * own process, so pid is slabd's still (signals, waitpid, clients' pidfds). */
	if (slabd_argv(argv, sizeof(argv) / sizeof(argv[0]), bin, args) < 0)
		goto fail_files;

	logfd = open(d->log, O_WRONLY | O_CREAT | O_CLOEXEC | (restart ? O_APPEND : O_TRUNC),
		     0600);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0) {
		fprintf(stderr, "harness: open %s: %s\n", d->log, strerror(errno));
		if (logfd >= 0)
			close(logfd);
		if (nullfd >= 0)
			close(nullfd);
		goto fail_files;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "harness: fork: %s\n", strerror(errno));
		close(logfd);
		close(nullfd);
		goto fail_files;
	}
	if (pid == 0) {
		if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
			_exit(127);
		child_prepare(parent, NULL, 0);
		execv(argv[0], (char *const *)argv);
		say_errno("harness: execv slabd failed", errno);
		_exit(127);
	}
	close(logfd);
	close(nullfd);
	r = rec_add(pid, true);
	if (!r) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail_files;
	}
	memcpy(r->dir, d->dir, sizeof(r->dir));
	memcpy(r->socket, d->socket, sizeof(r->socket));
	memcpy(r->log, d->log, sizeof(r->log));
	d->pid = pid;
	d->killed = false;

	deadline = th_now_ms() + th_ms(TH_START_MS);
	for (;;) {
		int fd = try_connect(d->socket);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "harness: slabd exited during start-up (status %d)\n",
				decode_status(status));
			print_log_tail(d->log, 30);
			vg_check(d->log, pid, decode_status(status));
			r->pid = 0;
			d->pid = 0;
			if (restart) {
				d->killed = true;
				return -1;
			}
			rec_remove_files(r);
			return -1;
		}
		if (th_now_ms() > deadline)
			break;
		th_sleep_ms(10);
	}
	fprintf(stderr, "harness: slabd did not accept on %s within %lld ms\n", d->socket,
		th_ms(TH_START_MS));
	th_stop(d);
	return -1;

fail_files:
	if (restart) {
		d->killed = true;
		return -1;
	}
	unlink(d->log);
	rmdir(d->dir);
	return -1;
}

int th_start(struct th_daemon *d, const char *const *extra_args)
{
	memset(d, 0, sizeof(*d));
	install_handlers();
	arm_watchdog();
	snprintf(d->dir, sizeof(d->dir), "/tmp/slabd-test-XXXXXX");
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(d->socket, sizeof(d->socket), "%s/slabd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/slabd.log", d->dir);
	return spawn_daemon(d, extra_args, false);
}

/* Send sig and reap; the files stay for th_restart.  The exit status, or -1. */
static int stop_for_restart(struct th_daemon *d, int sig)
{
	struct th_rec *r;
	int status = 0, rc;
	pid_t pid;

	if (!d || d->pid <= 0)
		return -1;
	pid = d->pid;
	r = rec_find(pid);
	kill(pid, sig);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r)
		r->pid = 0;
	d->pid = 0;
	d->killed = true;
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	vg_check(d->log, pid, rc);
	return rc;
}

int th_kill(struct th_daemon *d)
{
	return stop_for_restart(d, SIGKILL) < 0 ? -1 : 0;
}

int th_term(struct th_daemon *d)
{
	return stop_for_restart(d, SIGTERM);
}

int th_restart(struct th_daemon *d, const char *const *extra_args)
{
	if (!d || d->pid > 0 || !d->killed || !d->dir[0]) {
		fprintf(stderr, "harness: th_restart needs a daemon stopped by th_kill\n");
		return -1;
	}
	install_handlers();
	arm_watchdog();
	return spawn_daemon(d, extra_args, true);
}

/* The files of a th_kill'ed daemon that was not restarted. */
static void remove_killed(struct th_daemon *d)
{
	d->killed = false;
	if (getenv("TH_KEEP")) {
		fprintf(stderr, "harness: keeping %s (TH_KEEP)\n", d->dir);
		return;
	}
	unlink_records(d->socket);
	unlink(d->socket);
	unlink(d->log);
	if (rmdir(d->dir))
		fprintf(stderr, "harness: rmdir %s: %s\n", d->dir, strerror(errno));
}

int th_stop(struct th_daemon *d)
{
	struct th_rec *r;
	struct stat st;
	long long deadline;
	int status = 0, rc;
	pid_t w = 0;

	if (d && d->pid <= 0 && d->killed)
		remove_killed(d);
	if (!d || d->pid <= 0)
		return -1;
	r = rec_find(d->pid);
	kill(d->pid, SIGTERM);
	deadline = th_now_ms() + th_ms(TH_STOP_MS);
	while ((w = waitpid(d->pid, &status, WNOHANG)) == 0 && th_now_ms() < deadline)
		th_sleep_ms(5);
	if (w != d->pid) {
		fprintf(stderr, "harness: slabd pid %d ignored SIGTERM for %lld ms: SIGKILL\n",
			(int)d->pid, th_ms(TH_STOP_MS));
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
		rc = 128 + SIGKILL;
	} else {
		rc = decode_status(status);
	}
	if (r)
		r->pid = 0;
	vg_check(d->log, d->pid, rc);
	d->pid = 0;
	d->socket_left = lstat(d->socket, &st) == 0;
	{
		char rec[sizeof(d->socket) + 8];

		snprintf(rec, sizeof(rec), "%s.arena", d->socket);
		d->record_left = lstat(rec, &st) == 0;
	}
	if (rc != 0) {
		fprintf(stderr, "harness: slabd exited with status %d%s\n", rc,
			rc > 128 ? " (killed by a signal)" : "");
		print_log_tail(d->log, 40);
	}
	if (getenv("TH_KEEP")) {
		fprintf(stderr, "harness: keeping %s (TH_KEEP)\n", d->dir);
	} else {
		unlink_records(d->socket);
		unlink(d->socket);
		unlink(d->log);
		if (rmdir(d->dir))
			fprintf(stderr, "harness: rmdir %s: %s\n", d->dir, strerror(errno));
	}
	return rc;
}

void th_start_or_fail(struct th_daemon *d, const char *const *extra_args)
{
	if (th_start(d, extra_args))
		fail_msg("slabd did not start");
}

void th_teardown(struct th_daemon *d)
{
	th_kill_children();
	if (d->pid > 0 || d->killed)
		th_stop(d);
	th_wrapper_check();
}

/* ---- requests ------------------------------------------------------------------------- */

int th_connect(struct th_daemon *d)
{
	int fd = try_connect(d->socket);

	if (fd < 0)
		fprintf(stderr, "harness: connect %s: %s\n", d->socket, strerror(errno));
	return fd;
}

static int send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly one line (without its '\n') into a malloc'd string, leaving any bytes
 * after it in the socket (MSG_PEEK first).  NULL on EOF, error or timeout. */
static char *read_line(int fd, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	char *line = NULL;
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char buf[4096], *nl, *nline;
		long long left = deadline - th_now_ms();
		ssize_t n, take;
		int pr;

		if (left <= 0) {
			fprintf(stderr, "harness: no reply line within %d ms\n", timeout_ms);
			break;
		}
		pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_PEEK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* EOF or error before a whole line */
		nl = memchr(buf, '\n', (size_t)n);
		take = nl ? nl - buf + 1 : n;
		nline = realloc(line, len + (size_t)take + 1);
		if (!nline)
			break;
		line = nline;
		n = recv(fd, line + len, (size_t)take, 0);
		if (n != take)
			break;
		len += (size_t)take;
		line[len] = 0;
		if (nl) {
			line[len - 1] = 0;
			return line;
		}
	}
	free(line);
	return NULL;
}

json_t *th_conn_read(int fd)
{
	json_error_t jerr;
	json_t *reply;
	char *r = read_line(fd, (int)th_ms(TH_REPLY_MS));

	if (!r)
		return NULL;
	reply = json_loads(r, 0, &jerr);
	if (!reply)
		fprintf(stderr, "harness: reply is not JSON (%s): %.300s\n", jerr.text, r);
	free(r);
	return reply;
}

json_t *th_conn_read_fd(int fd, int *passed)
{
	char buf[65536];
	size_t len = 0;
	json_t *reply;

	*passed = -1;
	/* A byte at a time: the fd rides on the reply's first byte. */
	while (len < sizeof(buf) - 1) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { buf + len, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
				     .msg_controllen = sizeof(cbuf.b) };
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, (int)th_ms(TH_REPLY_MS)) != 1)
			break;
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			break;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    *passed < 0)
				memcpy(passed, CMSG_DATA(cm), sizeof(int));
		if (buf[len++] == '\n')
			break;
	}
	buf[len] = 0;
	reply = len && buf[len - 1] == '\n' ? json_loads(buf, 0, NULL) : NULL;
	if (!reply)
		fprintf(stderr, "harness: no reply line with an fd: %.300s\n", buf);
	return reply;
}

int th_send_fd(int fd, int passed)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	char byte = 'A';
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
			     .msg_controllen = sizeof(cbuf.b) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	memset(cbuf.b, 0, sizeof(cbuf.b));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &passed, sizeof(int));
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

json_t *th_conn_request(int fd, const char *line)
{
	json_t *reply;

	if (send_all(fd, line, strlen(line)) || send_all(fd, "\n", 1)) {
		fprintf(stderr, "harness: send: %s\n", strerror(errno));
		return NULL;
	}
	reply = th_conn_read(fd);
	if (!reply)
		fprintf(stderr, "harness: no reply to %.200s\n", line);
	return reply;
}

json_t *th_request(struct th_daemon *d, const char *line)
{
	int fd = th_connect(d);
	json_t *r;

	if (fd < 0)
		return NULL;
	r = th_conn_request(fd, line);
	close(fd);
	return r;
}

json_t *th_request_fmt(struct th_daemon *d, const char *fmt, ...)
{
	va_list ap;
	char *line;
	json_t *r;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	r = th_request(d, line);
	free(line);
	return r;
}

ssize_t th_raw(struct th_daemon *d, const void *buf, size_t len, char *reply, size_t cap,
	       int timeout_ms, bool *eof)
{
	const char *p = buf;
	size_t sent = 0, got = 0;
	long long idle_deadline = th_now_ms() + timeout_ms;
	int fd = th_connect(d);

	*eof = false;
	if (cap)
		reply[0] = 0;
	if (fd < 0)
		return -1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0) };
		long long left = idle_deadline - th_now_ms();
		int pr;

		if (left <= 0)
			break;
		pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			char tmp[4096];
			ssize_t n = recv(fd, tmp, sizeof(tmp), 0);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				*eof = true;
				break;
			}
			if (n > 0) {
				size_t keep = cap && got < cap - 1 ? cap - 1 - got : 0;
				if (keep > (size_t)n)
					keep = (size_t)n;
				memcpy(reply + got, tmp, keep);
				got += keep;
				if (cap)
					reply[got] = 0;
				idle_deadline = th_now_ms() + timeout_ms;
			}
		}
		if (sent < len && (pfd.revents & POLLOUT)) {
			ssize_t n = send(fd, p + sent, len - sent, MSG_NOSIGNAL);

			if (n > 0) {
				sent += (size_t)n;
				idle_deadline = th_now_ms() + timeout_ms;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				sent = len; /* the daemon closed on us: read what it said */
			}
		}
	}
	close(fd);
	return (ssize_t)got;
}

/* ---- JSON helpers ------------------------------------------------------------------- */

long long th_jint(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v)) {
		char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
		fprintf(stderr, "harness: no integer '%s' in %.1500s\n", key, s ? s : "(null)");
		free(s);
		fail_msg("integer field '%s' missing", key);
	}
	return (long long)json_integer_value(v);
}

const char *th_jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v)) {
		char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
		fprintf(stderr, "harness: no string '%s' in %.1500s\n", key, s ? s : "(null)");
		free(s);
		fail_msg("string field '%s' missing", key);
	}
	return json_string_value(v);
}

long long th_jcounter(json_t *stats, const char *name)
{
	return th_jint(json_object_get(stats, "counters"), name);
}

void th_assert_ok(json_t *reply, const char *what)
{
	if (!reply)
		fail_msg("%s: no reply from slabd", what);
	if (!json_is_true(json_object_get(reply, "ok"))) {
		char *s = json_dumps(reply, JSON_COMPACT);
		fprintf(stderr, "%s: %s\n", what, s ? s : "?");
		free(s);
		fail_msg("%s: slabd replied ok:false", what);
	}
}

void th_assert_error(json_t *reply, const char *code, const char *what)
{
	const char *got;

	if (!reply)
		fail_msg("%s: no reply from slabd", what);
	got = json_string_value(json_object_get(reply, "error"));
	if (!json_is_false(json_object_get(reply, "ok")) || !got || strcmp(got, code) ||
	    !json_is_string(json_object_get(reply, "message"))) {
		char *s = json_dumps(reply, JSON_COMPACT);
		fprintf(stderr, "%s: %s\n", what, s ? s : "?");
		free(s);
		fail_msg("%s: want ok:false error %s (with a message)", what, code);
	}
}

void th_expect_error(struct th_daemon *d, const char *line, const char *code, const char *what)
{
	json_t *r = th_request(d, line);

	th_assert_error(r, code, what);
	json_decref(r);
}

static json_t *find_named(json_t *list, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(list, i, c) {
		const char *n = json_string_value(json_object_get(c, "name"));
		if (n && !strcmp(n, name))
			return c;
	}
	return NULL;
}

json_t *th_cache_stats(struct th_daemon *d, const char *name)
{
	json_t *r = th_request_fmt(d, "{\"id\":1,\"cmd\":\"cache.stats\",\"name\":\"%s\"}", name);
	json_t *c;

	if (!r) {
		fprintf(stderr, "harness: cache.stats %s: no reply\n", name);
		return NULL;
	}
	if (!json_is_true(json_object_get(r, "ok"))) {
		const char *e = json_string_value(json_object_get(r, "error"));
		if (!e || strcmp(e, "ENOENT"))
			fprintf(stderr, "harness: cache.stats %s: %s\n", name, e ? e : "?");
		json_decref(r);
		return NULL;
	}
	c = find_named(json_object_get(r, "caches"), name);
	if (c)
		json_incref(c);
	json_decref(r);
	return c;
}

json_t *th_cache_listed(struct th_daemon *d, const char *name)
{
	json_t *r = th_request(d, "{\"id\":1,\"cmd\":\"cache.list\"}"), *c;

	th_assert_ok(r, "cache.list");
	c = find_named(json_object_get(r, "caches"), name);
	if (c)
		json_incref(c);
	json_decref(r);
	return c;
}

/* th_stat and th_counter: stats[key], or stats["counters"][key]. */
static long long stats_field(struct th_daemon *d, const char *cache, const char *key,
			     bool counter)
{
	json_t *st = th_cache_stats(d, cache);
	long long v;

	if (!st)
		fail_msg("cache.stats %s: no such cache", cache);
	v = th_jint(counter ? json_object_get(st, "counters") : st, key);
	json_decref(st);
	return v;
}

long long th_stat(struct th_daemon *d, const char *cache, const char *key)
{
	return stats_field(d, cache, key, false);
}

long long th_counter(struct th_daemon *d, const char *cache, const char *key)
{
	return stats_field(d, cache, key, true);
}

int th_validate(struct th_daemon *d, const char *name)
{
	json_t *r = th_request_fmt(d, "{\"id\":1,\"cmd\":\"cache.validate\",\"name\":\"%s\"}", name);
	json_t *problems, *clean;
	int n;

	if (!r || !json_is_true(json_object_get(r, "ok"))) {
		char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
		fprintf(stderr, "harness: cache.validate %s failed: %s\n", name, s ? s : "no reply");
		free(s);
		json_decref(r);
		return -1;
	}
	problems = json_object_get(r, "problems");
	clean = json_object_get(r, "clean");
	if (!json_is_integer(problems) || !json_is_boolean(clean)) {
		fprintf(stderr, "harness: cache.validate %s: no problems/clean fields\n", name);
		json_decref(r);
		return -1;
	}
	n = (int)json_integer_value(problems);
	if (n || !json_is_true(clean)) {
		char *s = json_dumps(json_object_get(r, "report"), JSON_INDENT(1));
		fprintf(stderr, "harness: cache.validate %s: %d problems%s:\n%s\n", name, n,
			json_is_true(clean) ? " but clean:true" : "", s ? s : "");
		free(s);
		if (!n)
			n = 1; /* inconsistent reply counts as a problem */
	}
	json_decref(r);
	return n;
}
