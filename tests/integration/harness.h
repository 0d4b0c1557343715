/* harness.h - helpers for the integration tests (tests/integration/test_*.c): a real
 * slabd on a private socket, raw protocol exchanges, and child processes.
 *
 * What it guards: that every integration test talks to a real daemon started from the
 * build, and that no test ever leaves a slabd (or a helper child) running, however it ends:
 * a cmocka failure (longjmp), abort(), SIGALRM (the harness watchdog), SIGTERM/SIGINT
 * (run-tests.sh's timeout, ^C) or a plain exit.  Daemons and children are recorded in a
 * static table (copies, never pointers into a test's stack); an atexit handler stops what
 * is left, the signal handlers SIGKILL it, and every daemon and child also has
 * PR_SET_PDEATHSIG = SIGKILL as the last line of defence (SIGKILL of the test itself).
 *
 * Environment:
 *   SLABD_BIN      the slabd to run (default: <dir of the test binary>/../bin/slabd)
 *   SLABD_WRAPPER  a command slabd runs under, split on blanks (no quoting), e.g.
 *                  "valgrind -q --error-exitcode=99 --leak-check=full" (make
 *                  check-valgrind's also preloads tests/valgrind/pidfd_preload.so, as
 *                  valgrind 3.19 lacks pidfd_open; the Makefile says why).  Valgrind
 *                  runs slabd in the same process, so the pid the harness signals and
 *                  reaps is slabd's.  What valgrind reports fails the test: a slabd that
 *                  exits with the wrapper's --error-exitcode, or whose log holds a
 *                  report (a SIGKILLed one), has the report printed in full when it
 *                  ends; th_teardown (th_wrapper_check) fails the test, and the test
 *                  binary exits with that code whatever the tests checked.  The wrapper
 *                  must be quiet (valgrind -q): every "==PID==" line in the log but
 *                  "Warning:" notes counts as a report, and so does "--PID-- WARNING:
 *                  unhandled ... syscall" (slabd got ENOSYS from valgrind, not the
 *                  kernel: the test ran another slabd).  The time limits on slabd
 *                  (start, stop, replies, th_wait_log) are th_ms()'s, 6 times longer
 *                  under a wrapper.
 *   TH_TIMEOUT     the watchdog, in seconds (default 280)
 *   TH_KEEP        keep each daemon's directory (socket, log) instead of removing it
 *   SLAB_TEST_SCALE  divides long loops (th_scaled)
 *
 * E(expr): check a libslab call returning 0 or -errno; on failure print the call, the
 * library's slab_strerror text, the value and the line, and fail the test.
 * E_IS(expr, want): the call must return exactly want (e.g. -EBUSY).
 */
#ifndef SLABD_TEST_HARNESS_H
#define SLABD_TEST_HARNESS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>
#include <jansson.h>

#include "slab.h"

#define E(expr)                                                                        \
	do {                                                                           \
		int e_rc_ = (expr);                                                    \
		if (e_rc_ != 0)                                                        \
			fail_msg("%s:%d: %s: %s (%d)", __FILE__, __LINE__, #expr,      \
				 slab_strerror(e_rc_), e_rc_);                         \
	} while (0)

#define E_IS(expr, want)                                                               \
	do {                                                                           \
		int e_rc_ = (expr), e_want_ = (want);                                  \
		if (e_rc_ != e_want_)                                                  \
			fail_msg("%s:%d: %s: got %d (%s), want %d (%s)", __FILE__,     \
				 __LINE__, #expr, e_rc_, slab_strerror(e_rc_), e_want_,  \
				 slab_strerror(e_want_));                              \
	} while (0)

/* A pointer-returning call (slab_alloc, slab_kmalloc): NULL fails with errno's text. */
#define E_PTR(expr)                                                                    \
	({                                                                             \
		void *e_p_ = (expr);                                                   \
		if (!e_p_)                                                             \
			fail_msg("%s:%d: %s: NULL: %s (errno %d)", __FILE__, __LINE__, \
				 #expr, slab_strerror(errno), errno);                  \
		e_p_;                                                                  \
	})

struct th_daemon {
	pid_t pid;              /* 0: not running */
	char  dir[64];          /* mkdtemp'd directory holding the socket and the log */
	char  socket[108];      /* <dir>/slabd.sock */
	char  log[128];         /* <dir>/slabd.log (the daemon's stderr) */
	bool  socket_left;      /* th_stop: the socket file still existed after exit */
	bool  record_left;      /* th_stop: so did slabd's arena record, SOCKET.arena */
	bool  killed;           /* th_kill'ed: not running, directory kept for th_restart */
};

/* Start slabd (--socket <dir>/slabd.sock --arena-size 64M --log-level info, then
 * extra_args, NULL-terminated or NULL, which may override those).  Binary: $SLABD_BIN,
 * else <dir of this executable>/../bin/slabd, run through $SLABD_WRAPPER.  Returns 0
 * once the socket accepts, else prints why (with the log's tail) and returns -1 with
 * nothing left running.  Also arms the watchdog alarm ($TH_TIMEOUT seconds, default 280)
 * if none is pending. */
int th_start(struct th_daemon *d, const char *const *extra_args);

/* SIGKILL the daemon (a crash) and reap it; its directory, stale socket file and log stay
 * for th_restart.  Returns 0, or -1 if it was not running. */
int th_kill(struct th_daemon *d);
/* SIGTERM the daemon (a clean stop) and reap it, keeping its directory for th_restart as
 * th_kill does.  Returns its exit status (0: clean), or -1 if it was not running. */
int th_term(struct th_daemon *d);

/* Start a new slabd where a th_kill'ed one ran: same directory, same --socket path (the
 * new daemon replaces the stale socket), the log appended to; the arguments as th_start.
 * Returns 0 once the socket accepts, else -1 (printed; nothing left running; the
 * directory is kept for th_stop to remove). */
int th_restart(struct th_daemon *d, const char *const *extra_args);

/* SIGTERM, up to th_ms(5000), then SIGKILL.  Prints the log's tail if the daemon did not
 * exit 0 (and valgrind's whole report, see SLABD_WRAPPER); records whether the socket
 * file was left behind; removes the directory ($TH_KEEP set: keeps it and says where).
 * Returns the exit status (0 = clean shutdown), 128 + signal if it was killed by one, or
 * -1 if it was not running (a th_kill'ed daemon's directory is removed then). */
int th_stop(struct th_daemon *d);
/* th_start, failing the test ("slabd did not start") if it returns -1. */
void th_start_or_fail(struct th_daemon *d, const char *const *extra_args);
/* Stop d and check a clean shutdown: exit status 0 and no socket file left (a macro, so
 * that a failure names the caller's line). */
#define TH_STOP_CLEAN(d)                                                               \
	do {                                                                           \
		assert_int_equal(th_stop(d), 0);                                       \
		assert_false((d)->socket_left);                                        \
		assert_false((d)->record_left);                                        \
	} while (0)
/* A teardown after a test that may have failed half-way: th_kill_children, th_stop if the
 * daemon still runs (or was th_kill'ed: its files are removed), then th_wrapper_check. */
void th_teardown(struct th_daemon *d);
/* Fail the test if $SLABD_WRAPPER (valgrind) reported errors in a slabd this process ran
 * since the last check (each report was printed when that slabd ended).  For teardowns
 * that stop slabd themselves; th_teardown calls it. */
void th_wrapper_check(void);
/* A time limit on something slabd does, in ms: ms, or TH_WRAP_SLOWDOWN (6) times ms under
 * $SLABD_WRAPPER.  Only for limits (waits that end early when the thing happens), never
 * for how long a test lets something run. */
long long th_ms(long long ms);
/* A slabd a test runs itself (not th_start's): args (NULL-terminated, without argv[0])
 * through $SLABD_WRAPPER, stdout and stderr into log (created or truncated), a tracked
 * child that dies with this process.  Its pid, or -1 (printed). */
pid_t th_spawn_slabd(const char *log, const char *const *args);
/* Wait up to th_ms(timeout_ms) for a th_spawn_slabd slabd to end: th_wait_child's status,
 * after $SLABD_WRAPPER's report on it, if any, is printed and counted (th_wrapper_check,
 * the binary's exit status).  Before the log is removed. */
int th_wait_slabd(pid_t pid, const char *log, int timeout_ms);
/* The slabd binary th_start runs ($SLABD_BIN, else <dir of this executable>/../bin/slabd)
 * into buf: 0, or -1 (printed) if it is not an executable file. */
int th_slabd_bin(char *buf, size_t cap);
/* Whether a line of the daemon's log contains needle (fails the test if the log cannot
 * be opened). */
bool th_log_has(const struct th_daemon *d, const char *needle);
/* th_log_has, waiting up to th_ms(5000) for the line: slabd accepts connections (th_start
 * returns) a moment before it logs the rest of its start-up ("ready" comes last). */
bool th_wait_log(const struct th_daemon *d, const char *needle);

/* One request on a fresh connection: send line + "\n", read one reply line (th_ms(5000)).
 * Returns the parsed reply (json_decref it) or NULL after printing why. */
json_t *th_request(struct th_daemon *d, const char *line);
json_t *th_request_fmt(struct th_daemon *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A persistent connection: th_connect returns a socket fd (or -1); th_conn_request sends
 * one line (plus "\n") on it and reads one reply line (NULL on EOF, timeout or bad
 * JSON, printed). */
int th_connect(struct th_daemon *d);
json_t *th_conn_request(int fd, const char *line);
/* Read one more reply line on a persistent connection (pipelined requests). */
json_t *th_conn_read(int fd);
/* th_conn_read for a reply that may carry a file descriptor (SCM_RIGHTS, as a client's
 * hello reply carries the arena): *passed is the fd, or -1 when none came. */
json_t *th_conn_read_fd(int fd, int *passed);
/* Send one byte carrying `passed` (SCM_RIGHTS), as the adopt exchange does.  0 or -1. */
int th_send_fd(int fd, int passed);

/* Send len arbitrary bytes on a fresh connection (nothing appended), then read whatever
 * comes back until EOF or until timeout_ms passes without more bytes.  reply gets at most
 * cap - 1 bytes, NUL-terminated.  Returns the number of bytes kept, or -1 if connecting
 * failed; *eof tells whether the daemon closed the connection. */
ssize_t th_raw(struct th_daemon *d, const void *buf, size_t len, char *reply, size_t cap,
	       int timeout_ms, bool *eof);

/* cache.stats of one cache: its stats object (json_decref it), or NULL if the daemon
 * says there is no such cache (or did not answer; printed). */
json_t *th_cache_stats(struct th_daemon *d, const char *name);
/* th_cache_stats(d, cache)[key] / [counters][key] as an integer; fails the test if there
 * is no such cache or field. */
long long th_stat(struct th_daemon *d, const char *cache, const char *key);
long long th_counter(struct th_daemon *d, const char *cache, const char *key);
/* cache.list: the cache's entry (json_decref it) or NULL when it is not listed. */
json_t *th_cache_listed(struct th_daemon *d, const char *name);
/* cache.validate of one cache: the number of problems (0 = clean; the report is printed
 * otherwise), or -1 if the request failed. */
int th_validate(struct th_daemon *d, const char *name);

/* obj[key] as an integer; fails the test if it is missing or not an integer. */
long long th_jint(json_t *obj, const char *key);
/* obj[key] as a string; fails the test if missing. */
const char *th_jstr(json_t *obj, const char *key);
/* A cache.stats object's counters[name] as an integer; fails the test if missing. */
long long th_jcounter(json_t *stats, const char *name);
/* A reply must be {"ok": true}; fails the test with the reply otherwise. */
void th_assert_ok(json_t *reply, const char *what);
/* A reply must be {"ok": false, "error": code}. */
void th_assert_error(json_t *reply, const char *code, const char *what);
/* th_request(d, line), whose reply must be th_assert_error(reply, code, what). */
void th_expect_error(struct th_daemon *d, const char *line, const char *code, const char *what);

/* Fork + exec this same test binary with args (argv[1..], NULL-terminated).  Every fd the
 * test made is expected to be O_CLOEXEC; the keep_fds (nkeep of them) are made
 * inheritable in the child.  The child gets PR_SET_PDEATHSIG = SIGKILL and is recorded,
 * so the harness kills it if the test dies.  Returns the pid or -1 (printed). */
pid_t th_spawn_self(const char *const *args, const int *keep_fds, size_t nkeep);
/* Record a plain fork()ed child so the harness kills it if the test dies. */
void th_track_child(pid_t pid);
/* SIGKILL and reap every child this process recorded (not the daemons): for teardowns of
 * tests that failed half-way. */
void th_kill_children(void);
/* Wait for a child (tracked or not) up to timeout_s; on timeout SIGKILL it.  Returns its
 * exit code, 128 + signal, or -1 on timeout or error (printed). */
int th_wait_child(pid_t pid, int timeout_s);
/* Has the child exited?  It is left unreaped (WNOWAIT) for th_wait_child. */
bool th_child_exited(pid_t pid);

/* In a child process: die with SIGKILL when the parent dies; returns 0 or -1. */
int th_child_init(void);

/* $SLAB_TEST_SCALE divides long loops (valgrind); never below 1. */
unsigned long th_scaled(unsigned long n);

/* nanosleep for ms milliseconds, resumed after signals. */
void th_sleep_ms(long ms);
/* CLOCK_MONOTONIC in milliseconds. */
long long th_now_ms(void);
/* Write all len bytes (retrying on EINTR): 0, or -1 on an error or a zero-byte write. */
int th_write_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes (retrying on EINTR), each read waiting up to timeout_ms (< 0:
 * forever): 0, or -1 on EOF, error or timeout. */
int th_read_all(int fd, void *buf, size_t len, int timeout_ms);

/* Deterministic xorshift64* generator. */
static inline uint64_t th_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* The splitmix64 finalizer: a well-mixed 64-bit hash of x. */
static inline uint64_t th_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* A checksum of the words w[0..6] (for w[7] of a 64-byte test pattern), from seed. */
static inline uint64_t th_sum7(const uint64_t *w, uint64_t seed)
{
	uint64_t s = seed;

	for (int i = 0; i < 7; i++)
		s = th_mix64(s ^ w[i]);
	return s;
}

#endif
