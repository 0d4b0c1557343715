/* bench_daemon.h - slabd for the benchmarks: start one on a private socket, stop it by
 * PID (also on SIGINT/SIGTERM and at exit), and read its JSON stats.  Linked only into the
 * binaries that run slabd variants (they have libslab and jansson). */
#ifndef SLABD_BENCH_DAEMON_H
#define SLABD_BENCH_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

struct bench_daemon {
	pid_t pid;
	char  dir[64];
	char  socket[108];
	char  log[128];
};

/* Start slabd --socket <tmpdir>/slabd.sock --arena-size 512M --log-level warn, then extra
 * (NULL-terminated, may be NULL; later options override).  0 once it accepts, else -1
 * (printed, with the log's tail). */
int  bench_daemon_start(struct bench_daemon *d, const char *const *extra);
/* SIGTERM, 5 s, then SIGKILL; removes its directory.  Returns its exit status. */
int  bench_daemon_stop(struct bench_daemon *d);

/* Driver: use $SLABD_SOCKET if a slabd answers there, else start a private one and set
 * $SLABD_SOCKET for the children.  0 or -1.  (Weak: absent in peer-only binaries.) */
int  bench_daemon_ensure(void) __attribute__((weak));
/* Stop every daemon this process started (async-signal-safe enough for a handler). */
void bench_daemon_kill_all(void) __attribute__((weak));

struct bench_arena_stats {
	uint64_t size, resident_bytes, meta_bytes;
	uint64_t used_bytes;     /* summed over nodes: slabs, empty or not, and client areas */
};
/* arena.stats over a fresh connection; 0 or -1. */
int  bench_arena_stats(const char *socket, struct bench_arena_stats *out);
/* cache.stats of `name`: a top-level integer field (e.g. "limit") or, failing that, one of
 * its "counters" (e.g. "alien_free"); -1 if absent or on error. */
long long bench_cache_stat(const char *socket, const char *name, const char *field);
/* cache.shrink (name NULL: every cache): released_slabs, or -1. */
long long bench_cache_shrink(const char *socket, const char *name);
/* One request line, reply parsed into *ok; the reply text in buf (NUL-terminated).
 * 0 or -1. */
int  bench_request(const char *socket, const char *line, char *buf, size_t cap);

#endif
