/* adopt.c - a restarted slabd takes over the live arena, and clients come back to it.
 *
 * The arena outlives slabd: clients keep it mapped and keep allocating on their fast
 * paths while the daemon is down.  A new slabd gets the arena back either from
 * --arena-file (at start) or from the first client that reconnects (it hands its memfd
 * over the socket), and only while the daemon is still pristine (no client registered, no
 * cache created since it started; its own fresh arena is then dropped).  Adoption:
 *   1. check the header (sm_arena_attach), bump the generation;
 *   2. repair: take every page allocator lock and every cache node lock once (a holder
 *      that died with the old daemon is repaired from the page states and the bufctl
 *      arrays), and run validate, logging what it finds;
 *   3. references are counted anew: clients reopen their caches when they come back; a
 *      destroy that was pending is dropped (the cache is live again);
 *   4. every live client slot becomes a "ghost" connection watching its pid: its process
 *      comes back with `hello` + "resume" (and gets its slot and area again), or dies and
 *      is reclaimed as usual.
 * A client whose connection broke while slabd stayed up resumes the same way: the slot
 * was kept as a ghost because its process was alive (adopt_keep_ghost).
 * Two guards keep the old clients' arena the one adopted: the adoption window (a slabd
 * started on a stale socket holds newcomers' hello and cache.create, which would end the
 * pristine state, until an old client is back or --adopt-wait ms pass), and the arena
 * record (SOCKET.arena: the previous slabd's arena file, the only one adopted).
 *
 * Invariants: a ghost is a CONN_CLIENT connection with bev == NULL; it owns its slot, its
 * refs and its pidfd exactly as a connected client does (D2, D3 of slabd.h).  While
 * d->adopt_window is set and d->pristine too, no request that would clear d->pristine
 * runs (it waits with c->deferred); the window closes once and never reopens.
 * SOCKET.arena names the arena file this slabd serves (once not pristine) or the one the
 * previous slabd served (carried over while pristine), and this slabd's socket; a record
 * slabd cannot write is removed, and a record otherwise goes only with the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "buddy.h"
#include "client.h"
#include "slabd.h"
#include "stocker.h"
#include "validate.h"

static void log_problem(void *arg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_problem(void *arg, const char *fmt, ...)
{
	struct slabd *d = arg;
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	slabd_log(d, LOG_WARN, "adopted arena: %s", line);
}

/* A client slot of the adopted arena whose process has not come back yet. */
/* A ghost: a client connection without a socket, owning `slot`, the references `refs`
 * (taken over; NULL: none yet) and the pid watch `pidfd` (taken over; -1: open one).
 * NULL when out of memory (refs and pidfd are then still the caller's). */
static struct conn *ghost_new(struct slabd *d, uint32_t slot, pid_t pid, uid_t uid,
			      gid_t gid, uint64_t since_ns, uint32_t *refs, int pidfd)
{
	struct conn *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->refs = refs ? refs : calloc(d->arena.hdr->ah_nr_caches, sizeof(*g->refs));
	if (!g->refs) {
		free(g);
		return NULL;
	}
	g->d = d;
	g->role = CONN_CLIENT;
	g->slot = slot;
	g->pid = pid;
	g->uid = uid;
	g->gid = gid;
	g->since_ns = since_ns;
	g->pidfd = pidfd;
	g->next = d->conns;
	d->conns = g;
	d->nr_conns++;
	server_watch_pid(g);
	return g;
}

/* A client slot of the adopted arena whose process has not come back yet. */
static void make_ghost(struct slabd *d, uint32_t slot)
{
	struct slab_client *cl = sm_client(&d->arena, slot);
	struct conn *g = ghost_new(d, slot, cl->cl_pid, cl->cl_uid, cl->cl_gid,
				   cl->cl_since_ns, NULL, -1);

	if (!g) {
		sm_client_reclaim(&d->arena, slot);
		return;
	}
	if (g->pidfd < 0 && kill(g->pid, 0) < 0 && errno == ESRCH) {
		/* Died while slabd was down. */
		server_conn_free(g);
	}
}

/* The reserve of an adopted arena: the previous slabd faulted its blocks in through its
 * own mapping, or died while faulting one in, which sm_reserve_rebuild lists anyway.
 * Grants write a new slab's bufctl without mapping reserve pages first (shm/cache.c,
 * populate), so fault them in here, through this slabd's mapping: resident and mapped,
 * as the stocker leaves the blocks it lists.  Best effort: a page left out faults in at
 * that write. */
static void fault_in_reserve(struct slabd *d, unsigned n)
{
	struct sm_arena *a = &d->arena;
	struct slab_node_region *r = sm_region(a, n);
	struct { uint32_t head, pages; } *blk;
	uint32_t nr = 0, total = 0;

	if (sm_region_lock(a, n))
		return;
	for (unsigned k = 0; k <= SLAB_RESERVE_ORDER; k++)
		total += r->nr_reserve[k].l_count;
	blk = malloc((size_t)total * sizeof(*blk) + 1);
	for (unsigned k = 0; blk && k <= SLAB_RESERVE_ORDER; k++) {
		uint32_t x = r->nr_reserve[k].l_head;

		for (uint32_t i = 0; i < r->nr_reserve[k].l_count && x != SLAB_NIL && nr < total;
		     i++, x = a->pages[x].pg_next)
			blk[nr++] = (__typeof__(*blk)){ x, 1u << k };
	}
	sm_region_unlock(a, n);
	for (uint32_t i = 0; i < nr; i++)
		sm_reserve_fault(a, blk[i].head, blk[i].pages);
	free(blk);
}

void adopt_after(struct slabd *d)
{
	struct sm_arena *a = &d->arena;
	unsigned bad, orphans, ghosts = 0;

	a->hdr->ah_generation++;
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		if (sm_region_lock(a, n) == 0) {
			sm_reserve_rebuild(a, n); /* a block the last slabd was stocking */
			sm_region_unlock(a, n);
		}
		fault_in_reserve(d, n);
	}
	for (uint32_t id = 0; id < a->hdr->ah_nr_caches; id++) {
		struct slab_cache_desc *c = sm_cache(a, id);

		if (c->c_state == CACHE_UNUSED)
			continue;
		for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++)
			if (sm_node_lock(a, c, n) == 0)
				sm_node_unlock(c, n);
		c->c_refcount = 0;
		if (c->c_state == CACHE_DYING)
			__atomic_store_n(&c->c_state, CACHE_LIVE, __ATOMIC_RELEASE);
		d->track[id].corrupt_seen = SM_LOAD(&c->c_corruptions);
	}
	orphans = sm_depot_orphans(a, 1);
	if (orphans)
		slabd_log(d, LOG_WARN, "released %u shared array block(s) no cache used "
			  "(a slabd died while resizing one)", orphans);
	bad = sm_validate(a, NULL, NULL, NULL, log_problem, d);
	for (uint32_t s = 0; s < a->hdr->ah_nr_clients; s++)
		if (sm_client(a, s)->cl_state == CLIENT_LIVE) {
			make_ghost(d, s);
			ghosts++;
		}
	adopt_end_pristine(d);
	commands_reserve_init(d);
	slabd_log(d, LOG_INFO, "adopted the arena (generation %llu): %u problems, %u clients to come back",
		  (unsigned long long)a->hdr->ah_generation, bad, ghosts);
}

/* Is fd the file dev:ino? */
static bool file_is(int fd, uint64_t dev, uint64_t ino)
{
	struct stat st;

	return fstat(fd, &st) == 0 && (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

int adopt_arena_fd(struct slabd *d, int fd, uint32_t slot, pid_t pid, char *err, size_t errlen)
{
	struct sm_arena fresh;
	int rc;

	if (d->prev_ident && !file_is(fd, d->prev_dev, d->prev_ino)) {
		struct stat st = { 0 };

		(void)fstat(fd, &st);
		snprintf(err, errlen, "not the arena the previous slabd served (file %llu:%llu, "
			 "not %llu:%llu): a copy, or another arena",
			 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
			 (unsigned long long)d->prev_dev, (unsigned long long)d->prev_ino);
		return -EPERM;
	}
	rc = sm_arena_attach(fd, &fresh, err, errlen);
	if (rc)
		return rc;
	/* Only an arena in which the offering process holds the slot it resumes (a peer
	 * with no slot there has no business offering it; a copy passes this, the arena
	 * record stops that). */
	if (slot >= fresh.hdr->ah_nr_clients || sm_client(&fresh, slot)->cl_state != CLIENT_LIVE ||
	    sm_client(&fresh, slot)->cl_pid != (int32_t)pid) {
		snprintf(err, errlen, "slot %u of that arena is not this process's (pid %d)", slot,
			 (int)pid);
		sm_arena_detach(&fresh);
		return -EPERM;
	}
	if (d->arena.hdr && fresh.hdr->ah_nr_caches > d->arena.hdr->ah_nr_caches) {
		/* The per-cache arrays were sized for the fresh arena. */
		uint32_t n = fresh.hdr->ah_nr_caches;
		struct cache_track *tr = calloc(n, sizeof(*tr));

		if (!tr) {
			sm_arena_detach(&fresh);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		/* So were the references of every connection accepted before the adoption
		 * (monitors, clients about to resume): a resume swaps them with a ghost's. */
		for (struct conn *x = d->conns; x; x = x->next) {
			uint32_t old = d->arena.hdr->ah_nr_caches, *r;

			if (!x->refs)
				continue;
			r = realloc(x->refs, n * sizeof(*r));
			if (!r) {
				/* The arrays grown so far stay grown: harmless. */
				free(tr);
				sm_arena_detach(&fresh);
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			memset(r + old, 0, (n - old) * sizeof(*r));
			x->refs = r;
		}
		free(d->track);
		d->track = tr;
	}
	stocker_quiesce(d); /* its blocks belong to the arena going away */
	sm_arena_detach(&d->arena);
	d->arena = fresh;
	adopt_after(d);
	return 0;
}

/* ---- ghosts ----------------------------------------------------------------------------- */

/* Is c's process still running?  Its pidfd says exactly: readable once the process has
 * exited, zombie or reaped (kill(pid, 0) would call a zombie alive).  Without a pidfd
 * nothing would ever tell slabd of its death, so its slot is not kept. */
static bool process_alive(struct conn *c)
{
	struct pollfd pfd = { .fd = c->pidfd, .events = POLLIN };

	if (c->pidfd >= 0)
		return poll(&pfd, 1, 0) == 0;
	return false;
}

bool adopt_keep_ghost(struct conn *c)
{
	struct slabd *d = c->d;
	struct conn *g;

	/* Only a client whose process is alive, did not say goodbye (client.bye, sent by
	 * slab_pool_disconnect after flushing) and got the arena (its hello reply carrying
	 * the fd went out): a dead one is reclaimed now. */
	if (c->role != CONN_CLIENT || !c->bev || c->bye || c->fd_reply || !process_alive(c))
		return false;
	/* The ghost takes over the slot, the references and the pidfd (the same one: a
	 * pid opened again could already be reaped, or reused). */
	if (c->pidfd_ev) {
		event_free(c->pidfd_ev);
		c->pidfd_ev = NULL;
	}
	g = ghost_new(d, c->slot, c->pid, c->uid, c->gid, c->since_ns, c->refs, c->pidfd);
	if (!g)
		return false; /* out of memory: c (and its pidfd) is reclaimed as if dead */
	c->refs = NULL;
	c->pidfd = -1;
	c->role = CONN_NEW;
	slabd_log(d, LOG_INFO, "client pid %d (slot %u) disconnected while alive: slot kept for it",
		  (int)g->pid, g->slot);
	return true;
}

struct conn *adopt_find_ghost(struct slabd *d, uint32_t slot, pid_t pid)
{
	for (struct conn *g = d->conns; g; g = g->next)
		if (!g->bev && g->role == CONN_CLIENT && g->slot == slot && g->pid == pid)
			return g;
	return NULL;
}

/* Give ghost g's slot, references and pid watch to the connection c that came back. */
void adopt_resume(struct conn *c, struct conn *g)
{
	uint32_t *refs = c->refs;

	/* The slot's references come along (a ghost of a lost connection has them; one
	 * made at adoption has none): the reply says so, and libslab reopens its caches
	 * only when they did not (commands_resume_reply "refs_kept"). */
	c->refs_kept = false;
	for (uint32_t id = 0; g->refs && id < c->d->arena.hdr->ah_nr_caches; id++)
		if (g->refs[id])
			c->refs_kept = true;

	c->role = CONN_CLIENT;
	c->slot = g->slot;
	c->since_ns = g->since_ns;
	c->refs = g->refs;
	g->refs = refs;
	memset(g->refs, 0, c->d->arena.hdr->ah_nr_caches * sizeof(*g->refs));
	if (c->pidfd < 0)
		server_watch_pid(c);
	g->role = CONN_NEW; /* freed without reclaim */
	server_conn_free(g);
}

/* ---- receiving the arena from a client ----------------------------------------------------- */

/* Is fd the arena this slabd serves (the same file)? */
static bool same_arena(struct slabd *d, int fd)
{
	struct stat b;

	return d->arena.fd >= 0 && fstat(d->arena.fd, &b) == 0 &&
	       file_is(fd, (uint64_t)b.st_dev, (uint64_t)b.st_ino);
}

static void on_arena_fd(evutil_socket_t sock, short what, void *arg)
{
	struct conn *c = arg;
	struct slabd *d = c->d;
	char byte, cbuf[CMSG_SPACE(sizeof(int))], err[256];
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	int fd = -1, rc;
	ssize_t n;
	json_t *r;

	(void)what;
	event_free(c->adopt_ev);
	c->adopt_ev = NULL;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd < 0) {
		slabd_log(d, LOG_WARN, "pid %d offered an arena but sent no fd", (int)c->pid);
		server_conn_free(c);
		adopt_window_handover_ended(d);
		return;
	}
	/* Clients that came back together may all have been asked for the arena before the
	 * first one's fd arrived: the others hand over the arena adopted meanwhile. */
	rc = d->pristine ? adopt_arena_fd(d, fd, c->resume_slot, c->pid, err, sizeof(err))
			 : same_arena(d, fd) ? 0 : -EBUSY;
	close(fd);
	if (rc) {
		r = json_pack("{s:n, s:b, s:s, s:s}", "id", "ok", 0, "error", "EPROTO", "message",
			      rc == -EBUSY ? "this slabd already serves an arena" : err);
		conn_reply(c, r);
		c->closing = true;
		adopt_window_handover_ended(d);
		return;
	}
	r = commands_resume_reply(c);
	conn_reply(c, r);
	bufferevent_enable(c->bev, EV_READ);
}

void adopt_wait_arena(struct conn *c)
{
	bufferevent_disable(c->bev, EV_READ);
	c->adopt_ev = event_new(c->d->base, bufferevent_getfd(c->bev), EV_READ, on_arena_fd, c);
	if (!c->adopt_ev || event_add(c->adopt_ev, NULL))
		c->closing = true;
}

/* ---- the adoption window ------------------------------------------------------------------ */

/* A restarted slabd can adopt the old arena only while pristine, and the first new client
 * or cache.create ends that: every client of the old slabd would then be refused for
 * good (EPROTO, "serves another arena").  Clients come back on their next slow path, which
 * looks at the connection every 10 ms (libslab's slab_pool_watch) or waits for slabd with
 * a backoff of at most 200 ms, so a busy one is back within milliseconds.  Hence the
 * window: while it is open those requests wait, unanswered, and the first arena handed
 * back closes it at once; they then run against the adopted arena.  A client that stays
 * idle for the whole window can still be locked out; the window only opens when a dead
 * slabd's socket is found (a clean stop leaves it too while clients still map the arena,
 * server_close_all), so a first start never waits. */
#define ADOPT_HANDOVER_GRACE_MS 1000u

static struct timeval ms_timeval(unsigned ms)
{
	return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

/* Has some old client been told to send its arena ({"adopt":true}), its fd not in yet? */
static bool handover_under_way(const struct slabd *d)
{
	for (const struct conn *c = d->conns; c; c = c->next)
		if (c->adopt_ev)
			return true;
	return false;
}

static void on_window_closed(evutil_socket_t fd, short what, void *arg)
{
	struct slabd *d = arg;
	struct timeval grace = ms_timeval(ADOPT_HANDOVER_GRACE_MS);
	unsigned ran = 0, dropped = 0;
	bool adopted;

	(void)fd;
	(void)what;
	if (!d->adopt_window)
		return;
	/* Releasing the newcomers while an old client's fd is on the way would lock it
	 * out: wait once more, for at most ADOPT_HANDOVER_GRACE_MS, so that a stalled
	 * peer cannot hold the window open. */
	if (d->pristine && !d->adopt_window_extended && handover_under_way(d)) {
		d->adopt_window_extended = true;
		if (evtimer_add(d->adopt_window_ev, &grace) == 0)
			return;
	}
	d->adopt_window = false;
	adopted = !d->pristine;
	server_resume_deferred(d, &ran, &dropped);
	slabd_log(d, LOG_INFO, "adoption window closed (%s): %u held request(s) run, %u dropped",
		  adopted ? "arena adopted" : "no client of the previous slabd came back", ran,
		  dropped);
}

int adopt_window_open(struct slabd *d)
{
	struct timeval tv = ms_timeval(d->opt.adopt_wait_ms);

	if (!d->pristine || !d->opt.adopt_wait_ms)
		return 0;
	d->adopt_window_ev = evtimer_new(d->base, on_window_closed, d);
	if (!d->adopt_window_ev || evtimer_add(d->adopt_window_ev, &tv))
		return -1;
	d->adopt_window = true;
	slabd_log(d, LOG_INFO, "a previous slabd left its socket: new clients and "
		  "cache.create wait up to %u ms for its clients to hand the arena back "
		  "(--adopt-wait)", d->opt.adopt_wait_ms);
	return 0;
}

void adopt_window_close(struct slabd *d)
{
	if (d->adopt_window && d->adopt_window_ev)
		event_active(d->adopt_window_ev, EV_TIMEOUT, 0);
}

void adopt_end_pristine(struct slabd *d)
{
	d->pristine = false;
	adopt_window_close(d); /* nothing left to wait for */
	adopt_ident_save(d);
}

void adopt_window_handover_ended(struct slabd *d)
{
	/* The window was waiting a little longer for a hand-over: with none left under way,
	 * it need not. */
	if (d->adopt_window && d->adopt_window_extended && !handover_under_way(d))
		adopt_window_close(d);
}

bool adopt_window_holds(struct conn *c, const char *cmd, json_t *req)
{
	/* Adopted already (the window's close is queued): nothing to wait for. */
	if (!c->d->adopt_window || !c->d->pristine)
		return false;
	if (!strcmp(cmd, "cache.create"))
		return true;
	if (!strcmp(cmd, "hello") && c->role == CONN_NEW && !c->adopt_ev) {
		const char *role = json_string_value(json_object_get(req, "role"));

		return role && !strcmp(role, "client") && !json_object_get(req, "resume");
	}
	return false;
}

/* ---- the arena's identity ------------------------------------------------------------------ */

/* The adopt exchange takes the arena fd of whichever admitted client offers one first, and
 * the header check cannot tell the arena the old clients map from a copy of it (every
 * client can read all of it) or from another arena: adopting a copy would leave slabd and
 * the old clients working on different memory.  So slabd records which file its arena is
 * (device and inode) and which socket it served it on (the socket file's inode and birth
 * time: ext4 gives a new socket the inode number of the one just unlinked, and the change
 * time is anyone's to reset who may write the socket, as every client may) in
 * SOCKET.arena, and only when the socket's directory is its own uid's and writable by no
 * one else: elsewhere (/tmp) another uid could plant, swap or pre-empt whatever slabd
 * uses there, so there is no record (logged at start).  It writes the record when it
 * starts serving an arena for good (it stops being pristine), and, still pristine on a
 * stale socket whose record it trusts, carries that record over to its own socket.  A
 * slabd restarted on a stale socket trusts the record only when it names that very
 * socket: one left by an earlier slabd whose successor did not record its own arena (an
 * older build, a failed write) names another and is ignored.  Then only that file is
 * adopted.  No record it can trust: any arena that passes the header check is adopted,
 * as before records existed.  Opening never blocks (O_NONBLOCK) nor follows a link. */

/* Is the socket's directory slabd's own, writable by no one else?  Asked once, right
 * after server_listen (adopt_ident_check); the record's path is then built on the
 * directory's resolved path (d->ident_dir), so that no link along the way is followed
 * later (a symlinked /var/run resolves to /run). */
static bool ident_usable(struct slabd *d)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(d->socket_path, '/');
	struct stat st;

	if (d->ident_where)
		return d->ident_where > 0;
	d->ident_where = -1;
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == d->socket_path ? 1 :
			 (int)(slash - d->socket_path), d->socket_path);
	if (realpath(dir, d->ident_dir) && lstat(d->ident_dir, &st) == 0 &&
	    S_ISDIR(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022))
		d->ident_where = 1;
	else
		slabd_log(d, LOG_WARN, "%s is not a directory of slabd's uid alone: no arena "
			  "record, so a restarted slabd adopts any arena a client hands back "
			  "(PROTOCOL.md 8.2.2)", dir);
	return d->ident_where > 0;
}

void adopt_ident_check(struct slabd *d)
{
	(void)ident_usable(d);
}

static int ident_path(struct slabd *d, char *buf, size_t cap, const char *suffix)
{
	const char *base = strrchr(d->socket_path, '/');
	int n;

	if (!d->socket_ino || !ident_usable(d))
		return -1;
	n = snprintf(buf, cap, "%s/%s.arena%s", d->ident_dir, base ? base + 1 : d->socket_path,
		     suffix);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Write the record: arena file dev:ino, served on this slabd's socket. */
static void ident_write(struct slabd *d, uint64_t dev, uint64_t ino)
{
	char path[PATH_MAX], tmp[PATH_MAX], line[200];
	int fd, len, e = 0;

	if (ident_path(d, path, sizeof(path), "") || ident_path(d, tmp, sizeof(tmp), ".new"))
		return;
	len = snprintf(line, sizeof(line), "slabd-arena dev %llu ino %llu socket %llu %llu\n",
		       (unsigned long long)dev, (unsigned long long)ino,
		       (unsigned long long)d->socket_ino, (unsigned long long)d->socket_born_ns);
	unlink(tmp); /* a leftover of a slabd that died here; O_EXCL below */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		e = errno;
	else if ((errno = 0, write(fd, line, (size_t)len) != len))
		e = errno ? errno : EIO;
	if (fd >= 0 && close(fd) && !e)
		e = errno;
	if (!e && rename(tmp, path))
		e = errno;
	if (e) {
		if (fd >= 0)
			unlink(tmp);
		unlink(path); /* an older record must not outlive this arena */
		slabd_log(d, LOG_WARN, "cannot record the arena's identity in %s (%s): a "
			  "restarted slabd will adopt any arena a client hands back", path,
			  strerror(e));
	}
}

void adopt_ident_load(struct slabd *d)
{
	char path[PATH_MAX], buf[200];
	unsigned long long dev, ino, sock, sock_ns;
	struct stat st;
	ssize_t n;
	int fd;

	if (ident_path(d, path, sizeof(path), ""))
		return;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			slabd_log(d, LOG_WARN, "arena record %s: %s: not used", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 022)) {
		slabd_log(d, LOG_WARN, "arena record %s is not slabd's own (owner, mode or type): "
			  "not used", path);
		close(fd);
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	if (sscanf(buf, "slabd-arena dev %llu ino %llu socket %llu %llu", &dev, &ino, &sock,
		   &sock_ns) != 4) {
		slabd_log(d, LOG_WARN, "arena record %s does not parse: not used", path);
		return;
	}
	if (sock != d->stale_socket_ino || sock_ns != d->stale_socket_born_ns) {
		slabd_log(d, LOG_INFO, "arena record %s names another socket than the stale one "
			  "(%s): not used", path, sock != d->stale_socket_ino ?
			  "an earlier slabd's" : "the same inode, made at another time");
		return;
	}
	d->prev_ident = true;
	d->prev_dev = dev;
	d->prev_ino = ino;
	ident_write(d, dev, ino); /* carried over to this slabd's socket */
	slabd_log(d, LOG_INFO, "the previous slabd served arena file %llu:%llu (%s): only that "
		  "one is adopted", dev, ino, path);
}

void adopt_ident_save(struct slabd *d)
{
	struct stat st;

	/* Before server_listen (an --arena-file adopted at start) main.c asks again. */
	if (d->ident_saved || !d->socket_ino || d->arena.fd < 0 || fstat(d->arena.fd, &st))
		return;
	d->ident_saved = true;
	ident_write(d, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
}

void adopt_ident_remove(struct slabd *d)
{
	char path[PATH_MAX];

	if (!ident_path(d, path, sizeof(path), ""))
		unlink(path);
}
