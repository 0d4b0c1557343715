/* slabd.h - the daemon's state, in one struct, and its modules.
 *
 *   main.c      options, start-up, signal events, shutdown (libevent sample shape)
 *   config.c    the --config file (admission and limits)
 *   server.c    the Unix socket: listener, admission, framing, fd passing, client death
 *   commands.c  the JSON commands (daemon/PROTOCOL.md), one handler each
 *   stats.c     stats and listings as JSON
 *
 * Invariants:
 *   D1 slabd is single-threaded: every arena write it makes happens on the event loop.
 *   D2 a connection with role CONN_CLIENT owns exactly one LIVE client slot (c_slot) until
 *      it closes; then its magazines are reclaimed and its slot freed (server.c:conn_free).
 *   D3 sum over connections of c_refs[id] == cache id's c_refcount.
 */
#ifndef SLABD_DAEMON_H
#define SLABD_DAEMON_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "arena.h"

#define SLABD_VERSION "0.1.0"
#define SLABD_MAX_ALLOW 32
/* Reply bytes queued for a peer beyond which it counts as not reading (server.c). */
#define SLABD_MAX_OUTPUT (4u << 20)

/* Defaults of the limits (slabd --help, README, PROTOCOL.md section 2). */
#define SLABD_DEF_MAX_CONNECTIONS 1024u
#define SLABD_DEF_MAX_CONN_PER_UID 256u
#define SLABD_DEF_MAX_PENDING     256u
#define SLABD_DEF_RESERVE         (16ull << 20) /* --reserve, per node */
#define SLABD_DEF_ADOPT_WAIT_MS   2000u       /* --adopt-wait */
#define SLABD_MAX_ADOPT_WAIT_MS   600000u
#define SLABD_MIN_LINE            256u        /* --max-line range */
#define SLABD_MAX_MAX_LINE        (64u << 20)

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

enum conn_role { CONN_NEW, CONN_CLIENT, CONN_MONITOR };

struct conn {
	struct slabd       *d;
	struct bufferevent *bev;
	struct conn        *next;
	enum conn_role      role;
	pid_t               pid;       /* SO_PEERCRED */
	uid_t               uid;
	gid_t               gid;
	uint32_t            slot;      /* client slot (CONN_CLIENT) */
	uint32_t           *refs;      /* open references per cache id (ah_nr_caches) */
	int                 pidfd;     /* -1: none */
	struct event       *pidfd_ev;
	uint64_t            since_ns;
	bool                closing;   /* reply flushed, then freed */
	bool                cutoff;    /* did not read its replies: freed at once */
	bool                bye;       /* client.bye: disconnecting on purpose */
	bool                refs_kept; /* resumed with its slot's references */
	char               *fd_reply;  /* hello reply waiting to carry the arena fd */
	bool                deferred;  /* its next request waits for the adoption window
					* to close (adopt.c); reading is paused */
	struct event       *adopt_ev;  /* waiting for the arena fd a client hands back */
	uint32_t            resume_slot; /* hello "resume": the slot it had */
	json_t             *resume_id; /* the request id of that hello */
	/* Replies queued in the output buffer and not yet taken by the kernel (the peer does
	 * not read): a ring of each reply's end, in bytes added since the connection began. */
	uint64_t            out_added;
	uint64_t           *out_ends;
	unsigned            out_cap, out_head, out_count;
	bool                refusing;  /* answering EAGAIN: too many pending requests */
};

/* A client that died, kept for clients.list ("what a dead client left behind"). */
#define SLABD_DEAD_KEPT 32
struct dead_client {
	pid_t    pid;
	uid_t    uid;
	uint64_t since_ns;
	uint64_t died_ns;
	uint64_t returned;       /* cached objects slabd returned from its magazines */
	uint32_t caches[8];      /* ids of caches it had open (first 8) */
	uint64_t serials[8];     /* their c_serial, so a recreated id is not confused */
	unsigned nr_caches;
};

struct slabd_options {
	const char *socket;
	uint64_t    arena_size;
	unsigned    nodes;
	uid_t       allow_uid[SLABD_MAX_ALLOW];
	unsigned    nr_allow_uid;
	gid_t       allow_gid[SLABD_MAX_ALLOW];
	unsigned    nr_allow_gid;
	const char *arena_file;
	uint64_t    reserve;           /* --reserve: bytes per node kept faulted in */
	unsigned    adopt_wait_ms;     /* --adopt-wait: the adoption window (adopt.c) */
	int         log_level;
	const char *config;            /* --config FILE, or NULL */
	unsigned    max_connections;   /* in total */
	unsigned    max_conn_per_uid;  /* per peer uid */
	unsigned    max_pending;       /* replies a peer may leave unread */
	uint32_t    max_line;          /* request line bytes, without the '\n' */
	unsigned    cli_set;           /* SLABD_SET_* given on the command line */
};

/* Limits given on the command line (a config file does not override them). */
#define SLABD_SET_MAX_CONNECTIONS  0x1u
#define SLABD_SET_MAX_CONN_PER_UID 0x2u
#define SLABD_SET_MAX_PENDING      0x4u
#define SLABD_SET_MAX_LINE         0x8u

/* What slabd remembers about one cache slot between requests; zeroed when the slot's
 * cache is destroyed. */
#define SLABD_RESTOCK_MAX 64u  /* (cache, node) pairs restocking at once */

struct cache_track {
	uint32_t grant_streak;             /* slabs of the last grant */
	uint64_t last_grant_ns;            /* when it was granted last */
	uint64_t corrupt_seen;             /* corruptions already logged */
	uint64_t counters[SLAB_STAT_NR];   /* the counters cache.stats reported last */
	uint64_t fold_base;                /* c_fold_begin - c_fold_end left by folds that
					    * never end (stats.c fold_baseline) */
	uint64_t fold_cand, fold_since_ns; /* a higher floor, every read since this time */
};

struct slabd {
	struct slabd_options   opt;
	char                   socket_path[108];
	struct event_base     *base;
	struct evconnlistener *listener;
	struct event          *sigterm, *sigint, *reap_timer;
	struct event          *accept_retry;  /* re-enables the listener after EMFILE */
	struct sm_arena        arena;
	struct conn           *conns;
	unsigned               nr_conns;
	uint64_t               started_ns;
	uint64_t               reap_ticks;    /* reap timer ticks (20 ms) */
	uint64_t               punched_at_free; /* free pages when holes were last punched */
	uint64_t               last_any_grant_ns; /* when any cache was granted slabs last */
	bool                   pristine;      /* no client, no cache yet: may adopt an arena */
	bool                   adopt_at_start; /* --arena-file held an arena */
	bool                   stale_socket;  /* a dead slabd's socket was there at start */
	uint64_t               stale_socket_ino; /* its inode and birth time (ns): the */
	uint64_t               stale_socket_born_ns; /* arena record names a socket so */
	uint64_t               socket_ino;    /* this slabd's socket file's, once bound */
	uint64_t               socket_born_ns;
	int                    ident_where;   /* arena record usable: 1, not: -1, unknown: 0 */
	char                   ident_dir[PATH_MAX]; /* the socket's directory, resolved */
	bool                   adopt_window;  /* requests that would end pristine wait */
	bool                   adopt_window_extended; /* once, for a hand-over under way */
	bool                   prev_ident;    /* the previous slabd recorded its arena: */
	uint64_t               prev_dev, prev_ino; /* only that file is adopted (adopt.c) */
	bool                   ident_saved;   /* this slabd's arena recorded */
	struct event          *adopt_window_ev; /* closes the window (timer, or at once) */
	struct cache_track    *track;         /* per cache id (ah_nr_caches entries) */
	uint32_t               restock[SLABD_RESTOCK_MAX]; /* pending restock work (commands.c) */
	unsigned               nr_restock;
	uint32_t               reserve_target[SLAB_MAX_NODES]; /* pages, per node (commands.c):
							 * floor <= target <= cap */
	uint32_t               reserve_floor[SLAB_MAX_NODES];  /* --reserve, in pages */
	uint32_t               reserve_cap[SLAB_MAX_NODES];    /* 1/8 of the node, in pages */
	uint64_t               burst_pages[SLAB_MAX_NODES];    /* granted in the burst's window */
	uint64_t               decay_pages[SLAB_MAX_NODES];    /* granted since the decay's look */
	uint64_t               burst_start_ns;   /* the burst window's start */
	uint64_t               reserve_decay_ns; /* the decay's last look */
	bool                   reserve_armed; /* stock the reserves: set by grants, cleared by shrink */
	struct stocker        *stocker;       /* the reserve stocker thread, or NULL (stocker.h) */
	struct dead_client     dead[SLABD_DEAD_KEPT]; /* ring of the last dead clients */
	unsigned               nr_dead;       /* total ever; dead[nr_dead % KEPT] is next */
};

/* main.c */
void slabd_log(struct slabd *d, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
uint64_t slabd_now_ns(void);

/* config.c */
/* Read the --config file into o: allow-uid/allow-gid add to the allow lists; a limit set
 * on the command line (o->cli_set) is kept.  0, or -1 with err "FILE:LINE: why". */
int config_load(const char *path, struct slabd_options *o, char *err, size_t errlen);
/* A uid or gid: a number, or a user/group name.  0 or -1. */
int config_parse_id(const char *s, int is_gid, unsigned long *out);
/* "64K", "1M", "256" -> bytes.  0 or -1. */
int config_parse_size(const char *s, uint64_t *out);

/* server.c */
int server_listen(struct slabd *d, char *err, size_t errlen);
void server_close_all(struct slabd *d);
/* A connection over fd (owned from now on) for a peer with these credentials, linked into
 * d->conns and reading.  NULL when out of memory (fd closed). */
struct conn *server_conn_new(struct slabd *d, int fd, pid_t pid, uid_t uid, gid_t gid);
/* End a connection: reclaim a client's magazines, drop its references, free it. */
void server_conn_free(struct conn *c);
/* Queue one reply line on c (the JSON is consumed). */
void conn_reply(struct conn *c, json_t *reply);
/* Send reply with the arena fd attached (SCM_RIGHTS), after whatever is queued; reading
 * pauses until it is sent.  0 or -errno. */
int conn_reply_fd(struct conn *c, json_t *reply);
/* Watch a client's process through a pidfd (its death ends the connection). */
void server_watch_pid(struct conn *c);
/* Go on reading every connection whose request was deferred (c->deferred): the
 * adoption window has closed.  Counts the requests run, and those dropped because their
 * peer hung up meanwhile. */
void server_resume_deferred(struct slabd *d, unsigned *ran, unsigned *dropped);

/* commands.c */
/* Handle one request line; returns false when the connection must be closed. */
bool commands_dispatch(struct conn *c, const char *line, size_t len);
/* One step of pending slab restock work (main.c runs it between loop turns).  Returns
 * whether more is pending. */
bool slabd_restock(struct slabd *d);
/* Size the per-node reserves from --reserve and stock them (start-up, after an adopt). */
void commands_reserve_init(struct slabd *d);
/* Drop every reference c holds (a closing or dead client). */
void commands_drop_refs(struct conn *c);
/* Punch holes for free blocks of 64 KiB and more; returns the pages handed back. */
uint64_t commands_punch(struct slabd *d);
/* Periodic work: drain discard queues, trim free slabs, log corruptions found by debug
 * caches, punch holes when much memory came free. */
void commands_reap(struct slabd *d);
/* A client connection is gone: remember it for clients.list. */
void commands_client_gone(struct conn *c, uint64_t returned);

/* adopt.c */
void adopt_after(struct slabd *d);
/* Adopt the arena in fd, offered by process pid resuming slot: it must be the previous
 * slabd's (the record, if one is trusted), pass the header check, and hold slot for pid.
 * 0, or -errno with err set (slabd stays as it was). */
int adopt_arena_fd(struct slabd *d, int fd, uint32_t slot, pid_t pid, char *err, size_t errlen);
bool adopt_keep_ghost(struct conn *c);
struct conn *adopt_find_ghost(struct slabd *d, uint32_t slot, pid_t pid);
void adopt_resume(struct conn *c, struct conn *g);
void adopt_wait_arena(struct conn *c);
/* The adoption window: at start on a dead slabd's socket, a pristine slabd holds back the
 * requests that would end its pristine state (a new client's hello, cache.create) for
 * --adopt-wait ms, or until a client of the old slabd hands its arena back, so that the
 * old clients are not locked out by a newcomer.  0 or -1 (no event). */
int adopt_window_open(struct slabd *d);
/* Close it now (from the event loop, not from the caller's stack). */
void adopt_window_close(struct slabd *d);
/* slabd serves its arena for good (a client registered, a cache created, an arena
 * adopted): no longer pristine, the window closes, the arena record is written. */
void adopt_end_pristine(struct slabd *d);
/* A hand-over the window waits for is over (its fd refused, or its peer gone). */
void adopt_window_handover_ended(struct slabd *d);
/* Must this request wait for the window?  (c's connection; cmd its name.) */
bool adopt_window_holds(struct conn *c, const char *cmd, json_t *req);
/* The arena record, SOCKET.arena, kept only in a directory of slabd's uid alone (adopt.c):
 * read the previous slabd's at start (after a stale socket; a trusted one is carried over
 * to this slabd's socket), write this one's once it serves its arena for good (it stopped
 * being pristine, and listens), remove it when the socket goes. */
void adopt_ident_load(struct slabd *d);
/* Decide (and log) once, after server_listen, whether a record can be kept at all. */
void adopt_ident_check(struct slabd *d);
void adopt_ident_save(struct slabd *d);
void adopt_ident_remove(struct slabd *d);
/* commands.c: the reply to a resuming hello once the arena is the client's. */
json_t *commands_resume_reply(struct conn *c);

/* stats.c */
json_t *stats_cache_info(struct slabd *d, uint32_t id);
json_t *stats_cache(struct slabd *d, uint32_t id);
json_t *stats_cache_summary(struct slabd *d, uint32_t id);
json_t *stats_arena(struct slabd *d);
json_t *stats_clients(struct slabd *d);
/* Magazines of every live client, as engine holders (validate, reclaim). */
void stats_holders(void *arg, uint32_t id,
		   void (*add)(void *ctx, uint64_t off, const char *where), void *ctx);
/* How many of them hold each of offs[] at one moment (validate's sm_holder_count_fn). */
int stats_holder_count(void *arg, uint32_t id, const uint64_t *offs, size_t n, uint8_t *held);

#endif
