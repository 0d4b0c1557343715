/* server.c - slabd's Unix socket: listener, admission, framing, fd passing, client death.
 *
 * Admission (on_accept): the peer's SO_PEERCRED uid/gid against the allow lists (EACCES),
 * then the connection limits: max-connections in total (EAGAIN) and
 * max-connections-per-uid (EUSERS).  A refused peer gets one error line and is closed.
 *
 * Framing: one JSON object per line, both ways.  A request line longer than max-line
 * gets an EMSGSIZE reply and the connection is closed (the rest of the stream cannot be
 * re-synchronised).
 *
 * Pending requests (on_read, pending_check): requests are answered at once, so what piles
 * up for a peer that does not read is its replies.  slabd counts the replies still in its
 * output buffer (the kernel's socket buffer already full).  Once a peer has max-pending of
 * them (or SLABD_MAX_OUTPUT bytes), each further request is not run and gets a short
 * EAGAIN "too many pending requests" instead; when it has 2 x max-pending unread (it
 * ignores the EAGAINs too), it is cut off: closed at once, its queued output dropped.
 * A peer that reads its replies as it goes never sees either; one that pipelines more
 * than the kernel buffer plus max-pending replies without reading gets EAGAINs for the
 * excess, which it can send again.
 *
 * A client's death is seen twice, whichever comes first: EOF on its socket, and its
 * pidfd becoming readable (which also covers a forked child keeping the socket open).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "client.h"
#include "slabd.h"
#include "sockpath.h"


/* ---- listener ------------------------------------------------------------------ */

/* Is a live slabd answering on path? */
static int socket_is_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), live;

	if (fd < 0)
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return live;
}

/* mkdir -p of the socket's directory: every missing directory is created 0750 (owner and
 * group: the socket's audience), whatever the umask; existing ones are left alone. */
static int make_parent_dir(struct slabd *d, const char *path, char *err, size_t errlen)
{
	char dir[sizeof(d->socket_path)];
	char *slash, *p;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	for (p = dir + 1;; p++) {
		bool last = !*p;

		if (*p != '/' && !last)
			continue;
		*p = 0;
		if (mkdir(dir, 0750) == 0) {
			if (chmod(dir, 0750) < 0) {
				snprintf(err, errlen, "chmod %s: %s", dir, strerror(errno));
				return -1;
			}
			slabd_log(d, LOG_INFO, "created %s (0750)", dir);
		} else if (errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
			return -1;
		}
		if (last)
			return 0;
		*p = '/';
		while (p[1] == '/')
			p++;
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg);

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct slabd *d = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(d->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct slabd *d = arg;
	int e = EVUTIL_SOCKET_ERROR();

	slabd_log(d, LOG_WARN, "accept: %s", strerror(e));
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		/* The pending connection stays pending: without a pause the listener would
		 * spin on it.  Try again in 100 ms. */
		struct timeval later = { 0, 100 * 1000 };

		if (!d->accept_retry)
			d->accept_retry = evtimer_new(d->base, on_accept_retry, d);
		if (d->accept_retry && evconnlistener_disable(l) == 0)
			evtimer_add(d->accept_retry, &later);
	}
}

/* What names one socket file among all that ever were at its path (adopt.c's arena
 * record): its inode and its birth time, which nobody can set (statx); where the file
 * system keeps no birth time, the change time, which any client may reset (the record
 * is then distrusted: it fails open). */
static void socket_stamp(const char *path, const struct stat *st, uint64_t *ino, uint64_t *ns)
{
	struct statx sx;

	*ino = (uint64_t)st->st_ino;
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME, &sx) == 0 &&
	    (sx.stx_mask & STATX_BTIME) && sx.stx_ino == st->st_ino)
		*ns = (uint64_t)sx.stx_btime.tv_sec * 1000000000ull + sx.stx_btime.tv_nsec;
	else
		*ns = (uint64_t)st->st_ctim.tv_sec * 1000000000ull + (uint64_t)st->st_ctim.tv_nsec;
}

int server_listen(struct slabd *d, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old_mask;
	int fd, rc;

	if (make_parent_dir(d, d->socket_path, err, errlen))
		return -1;
	if (lstat(d->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; not touching it",
				 d->socket_path);
			return -1;
		}
		if (socket_is_live(d->socket_path)) {
			snprintf(err, errlen, "another slabd is live on %s", d->socket_path);
			return -1;
		}
		/* A stale socket of a dead slabd: nobody answers on it. */
		socket_stamp(d->socket_path, &st, &d->stale_socket_ino, &d->stale_socket_born_ns);
		unlink(d->socket_path);
		d->stale_socket = true;
		slabd_log(d, LOG_INFO, "replaced stale socket %s", d->socket_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	memcpy(sa.sun_path, d->socket_path, strlen(d->socket_path) + 1);
	/* Born 0660: no window in which the umask's permissions apply. */
	old_mask = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_mask);
	if (rc < 0 || chmod(d->socket_path, 0660) < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", d->socket_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (lstat(d->socket_path, &st) == 0) /* the arena record names it (adopt.c) */
		socket_stamp(d->socket_path, &st, &d->socket_ino, &d->socket_born_ns);
	d->listener = evconnlistener_new(d->base, on_accept, d,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!d->listener) {
		snprintf(err, errlen, "evconnlistener_new failed");
		close(fd);
		unlink(d->socket_path);
		return -1;
	}
	evconnlistener_set_error_cb(d->listener, on_accept_error);
	return 0;
}

void server_close_all(struct slabd *d)
{
	/* slabd is stopping, not its clients: they keep the arena mapped and go on with
	 * what they hold, so their slots and magazines are left as they are for the next
	 * slabd to adopt (adopt.c).  Only connections go. */
	for (struct conn *c = d->conns; c; c = c->next)
		if (c->role == CONN_CLIENT) {
			c->role = CONN_NEW;
			free(c->refs);
			c->refs = NULL;
		}
	while (d->conns)
		server_conn_free(d->conns);
	if (d->listener) {
		unsigned live = 0;

		evconnlistener_free(d->listener);
		d->listener = NULL;
		for (uint32_t s = 0; d->arena.hdr && s < d->arena.hdr->ah_nr_clients; s++)
			live += sm_client(&d->arena, s)->cl_state == CLIENT_LIVE;
		/* The socket file is how the next slabd knows clients may come back with
		 * an arena (the adoption window, adopt.c): left while any still map this
		 * arena, or, on a slabd still pristine after a dead one, the old arena. */
		if (live)
			slabd_log(d, LOG_INFO, "%u client(s) still map the arena: socket %s left "
				  "for the next slabd to wait for them", live, d->socket_path);
		else if (d->stale_socket && d->pristine)
			slabd_log(d, LOG_INFO, "no client of the previous slabd came back: socket %s "
				  "left for the next slabd to wait for them", d->socket_path);
		else {
			unlink(d->socket_path);
			adopt_ident_remove(d);
		}
	}
}

static void on_read(struct bufferevent *bev, void *arg);

void server_resume_deferred(struct slabd *d, unsigned *ran, unsigned *dropped)
{
	/* Oldest connection first (d->conns is newest first).  on_read may free the one
	 * it runs, so each turn scans the list again: quadratic in the connections held,
	 * once per start (1024 connections by default). */
	for (;;) {
		struct pollfd p = { .events = POLLIN };
		struct conn *c = NULL;

		for (struct conn *x = d->conns; x; x = x->next)
			if (x->deferred)
				c = x;
		if (!c)
			return;
		c->deferred = false;
		/* A peer that gave up meanwhile (slabctl's 10 s timeout, a client that
		 * exited) must not have its request run: a cache nobody asked for any
		 * more, or a slot for a process that never got the arena, would end the
		 * pristine state for nothing.  Its close shows as POLLHUP (a half-close
		 * does not: that peer still reads its replies). */
		p.fd = bufferevent_getfd(c->bev);
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
			slabd_log(d, LOG_INFO, "pid %d hung up while its request was held: dropped",
				  (int)c->pid);
			server_conn_free(c);
			++*dropped;
			continue;
		}
		++*ran;
		bufferevent_enable(c->bev, EV_READ);
		on_read(c->bev, c);
	}
}

/* ---- connections ------------------------------------------------------------------ */

static int admitted(const struct slabd *d, uid_t uid, gid_t gid)
{
	if (uid == 0 || uid == getuid())
		return 1;
	for (unsigned i = 0; i < d->opt.nr_allow_uid; i++)
		if (d->opt.allow_uid[i] == uid)
			return 1;
	for (unsigned i = 0; i < d->opt.nr_allow_gid; i++)
		if (d->opt.allow_gid[i] == gid)
			return 1;
	return 0;
}

static void conn_unlink(struct conn *c)
{
	struct conn **pp = &c->d->conns;

	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	c->d->nr_conns--;
}

void server_conn_free(struct conn *c)
{
	struct slabd *d = c->d;
	bool told_gone = false;

	/* Output accounting ends here (before a ghost copies the connection). */
	free(c->out_ends);
	c->out_ends = NULL;
	c->out_cap = c->out_count = c->out_head = 0;
	if (c->role == CONN_CLIENT && adopt_keep_ghost(c)) {
		/* Alive without its socket: its slot waits for it (adopt.c). */
	} else if (c->role == CONN_CLIENT) {
		/* Objects first (their caches may be dying), then references. */
		uint64_t back = sm_client_reclaim(&d->arena, c->slot);
		slabd_log(d, LOG_INFO, "client pid %d (slot %u) gone: %llu cached objects returned",
			  (int)c->pid, c->slot, (unsigned long long)back);
		commands_client_gone(c, back);
	}
	if (c->refs)
		commands_drop_refs(c);
	if (c->adopt_ev) {
		event_free(c->adopt_ev);
		c->adopt_ev = NULL;
		told_gone = true;
	}
	json_decref(c->resume_id);
	if (c->pidfd_ev)
		event_free(c->pidfd_ev);
	if (c->pidfd >= 0)
		close(c->pidfd);
	free(c->fd_reply);
	if (c->bev)
		bufferevent_free(c->bev);
	conn_unlink(c);
	free(c->refs);
	free(c);
	if (told_gone)
		adopt_window_handover_ended(d);
}

/* ---- output and pending replies ------------------------------------------------------- */

/* Replies still in the output buffer: the ones whose last byte has not left yet. */
static unsigned conn_unread(struct conn *c)
{
	uint64_t left = c->out_added - evbuffer_get_length(bufferevent_get_output(c->bev));

	while (c->out_count && c->out_ends[c->out_head] <= left) {
		c->out_head = (c->out_head + 1) % c->out_cap;
		c->out_count--;
	}
	return c->out_count;
}

/* Queue len bytes ending a reply. */
static void out_add(struct conn *c, const char *s, size_t len, bool ends_reply)
{
	if (evbuffer_add(bufferevent_get_output(c->bev), s, len))
		return;
	c->out_added += len;
	if (!ends_reply)
		return;
	conn_unread(c);
	if (c->out_count == c->out_cap) {
		unsigned cap = c->out_cap ? c->out_cap * 2 : 16;
		uint64_t *ends = malloc(cap * sizeof(*ends));

		if (!ends)
			return; /* not counted: only the EAGAIN decision is less exact */
		for (unsigned i = 0; i < c->out_count; i++)
			ends[i] = c->out_ends[(c->out_head + i) % c->out_cap];
		free(c->out_ends);
		c->out_ends = ends;
		c->out_cap = cap;
		c->out_head = 0;
	}
	c->out_ends[(c->out_head + c->out_count) % c->out_cap] = c->out_added;
	c->out_count++;
}

void conn_reply(struct conn *c, json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT);

	json_decref(reply);
	if (!s)
		return;
	out_add(c, s, strlen(s), false);
	out_add(c, "\n", 1, true);
	free(s);
}

/* An error reply to a request line that is not run: its "id" if it has one. */
static void reply_refused(struct conn *c, const char *line, size_t len, const char *code,
			  const char *msg)
{
	json_t *req = len ? json_loadb(line, len, 0, NULL) : NULL;
	json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;

	conn_reply(c, json_pack("{s:O?, s:b, s:s, s:s}", "id", id, "ok", 0, "error", code,
				"message", msg));
	json_decref(req);
}

/* Write queued output to the socket now, as the bufferevent would from the loop (it keeps
 * the buffer's start frozen between its own writes).  Bytes written, or <= 0. */
static int flush_output(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int n;

	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(c->bev));
	evbuffer_freeze(out, 1);
	return n;
}

/* Before running a request: 0 run it, 1 answer EAGAIN, -1 cut the peer off. */
static int pending_check(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	unsigned max = c->d->opt.max_pending, unread = conn_unread(c);

	if (unread < max && evbuffer_get_length(out) < SLABD_MAX_OUTPUT) {
		c->refusing = false;
		return 0;
	}
	/* Replies pile up within one read of many requests before the loop writes any:
	 * hand them to the kernel now, so only a peer that really does not read counts. */
	if (flush_output(c) > 0) {
		unread = conn_unread(c);
		if (unread < max && evbuffer_get_length(out) < SLABD_MAX_OUTPUT) {
			c->refusing = false;
			return 0;
		}
	}
	if (unread >= 2 * max) {
		slabd_log(c->d, LOG_WARN, "pid %d uid %u does not read its replies (%u unread, "
			  "%zu bytes): cut off", (int)c->pid, (unsigned)c->uid, unread,
			  evbuffer_get_length(out));
		return -1;
	}
	if (!c->refusing)
		slabd_log(c->d, LOG_WARN, "pid %d uid %u has %u unread replies (%zu bytes, "
			  "max-pending %u): answering EAGAIN until it reads", (int)c->pid,
			  (unsigned)c->uid, unread, evbuffer_get_length(out), max);
	c->refusing = true;
	return 1;
}

/* Send c->fd_reply with the arena fd attached.  0, or -errno (the connection is dead). */
static int send_fd_reply(struct conn *c)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	size_t len = strlen(c->fd_reply);
	ssize_t n;
	int fd = c->d->arena.fd;

	iov.iov_base = c->fd_reply;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	memset(cbuf, 0, sizeof(cbuf));
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do
		n = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		free(c->fd_reply);
		c->fd_reply = NULL;
		slabd_log(c->d, LOG_WARN, "cannot pass the arena to pid %d: %s", (int)c->pid,
			  strerror(e));
		c->bye = true; /* it never got the arena: no slot to keep for it */
		return -e;
	}
	/* The fd went with the first byte; whatever did not fit is ordinary output. */
	if ((size_t)n < len)
		out_add(c, c->fd_reply + n, len - (size_t)n, true);
	free(c->fd_reply);
	c->fd_reply = NULL;
	return 0;
}

int conn_reply_fd(struct conn *c, json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	size_t len;

	json_decref(reply);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	c->fd_reply = realloc(s, len + 2);
	if (!c->fd_reply) {
		free(s);
		return -ENOMEM;
	}
	memcpy(c->fd_reply + len, "\n", 2);
	/* The fd rides on the reply's first byte, so everything queued before it goes
	 * first: if output is pending, stop reading and send from on_write. */
	if (evbuffer_get_length(bufferevent_get_output(c->bev))) {
		bufferevent_disable(c->bev, EV_READ);
		return 0;
	}
	return send_fd_reply(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t max_line = c->d->opt.max_line;
	char *line;
	size_t len;

	while (!c->closing && !c->fd_reply && !c->adopt_ev && !c->deferred &&
	       (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		bool keep = true;
		int pending;

		if (len > max_line) {
			char msg[96];

			snprintf(msg, sizeof(msg), "request line too long (%zu bytes, max-line %zu)",
				 len, max_line);
			slabd_log(c->d, LOG_WARN, "pid %d uid %u sent a %zu-byte line (max-line "
				  "%zu); closing", (int)c->pid, (unsigned)c->uid, len, max_line);
			reply_refused(c, NULL, 0, "EMSGSIZE", msg);
			keep = false;
		} else if ((pending = pending_check(c)) < 0) {
			c->cutoff = true;
			keep = false;
		} else if (pending) {
			char msg[128];

			snprintf(msg, sizeof(msg), "too many pending requests: %u replies not read "
				 "yet (max-pending %u); read them and send again", c->out_count,
				 c->d->opt.max_pending);
			reply_refused(c, line, len, "EAGAIN", msg);
		} else {
			keep = commands_dispatch(c, line, len);
			if (c->deferred) {
				/* Held for the adoption window: the line goes back in front,
				 * and nothing more is read until it has run. */
				if (evbuffer_prepend(in, "\n", 1) || evbuffer_prepend(in, line, len))
					keep = false;
				bufferevent_disable(bev, EV_READ);
			}
		}
		free(line);
		if (!keep)
			c->closing = true;
	}
	if (!c->closing && !c->fd_reply && !c->deferred && evbuffer_get_length(in) > max_line) {
		char msg[96];

		snprintf(msg, sizeof(msg), "request line longer than %zu bytes (max-line)", max_line);
		slabd_log(c->d, LOG_WARN, "pid %d uid %u sent more than %zu bytes without a "
			  "newline (max-line); closing", (int)c->pid, (unsigned)c->uid, max_line);
		reply_refused(c, NULL, 0, "EMSGSIZE", msg);
		c->closing = true;
	}
	if (c->cutoff) {
		server_conn_free(c); /* it does not read: what is queued would never leave */
		return;
	}
	if (c->closing) {
		evbuffer_drain(in, evbuffer_get_length(in));
		bufferevent_disable(bev, EV_READ);
		if (!evbuffer_get_length(bufferevent_get_output(bev)) && !c->fd_reply)
			server_conn_free(c);
	}
}

static int send_fd_reply(struct conn *c);

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)))
		return;
	if (c->fd_reply) {
		/* The replies queued before hello are out: now the fd can ride. */
		if (send_fd_reply(c)) {
			server_conn_free(c);
			return;
		}
		if (!c->closing) {
			bufferevent_enable(bev, EV_READ);
			/* Lines that came with the hello are already buffered: no new
			 * bytes will call on_read for them. */
			if (evbuffer_get_length(bufferevent_get_input(bev)))
				on_read(bev, c);
		}
		return;
	}
	if (c->closing)
		server_conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		slabd_log(c->d, LOG_DEBUG, "pid %d: connection error", (int)c->pid);
		server_conn_free(c);
	} else if (what & BEV_EVENT_EOF) {
		/* A half-close (`printf ... | socat`) still wants its replies: free once the
		 * output has drained (on_write), or now if nothing is queued. */
		slabd_log(c->d, LOG_DEBUG, "pid %d disconnected", (int)c->pid);
		c->closing = true;
		if (!evbuffer_get_length(bufferevent_get_output(bev)) && !c->fd_reply)
			server_conn_free(c);
	}
}

static void on_pidfd(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	slabd_log(c->d, LOG_INFO, "pid %d exited", (int)c->pid);
	server_conn_free(c);
}

/* Watch the peer's process: its death ends the connection even if a child holds the
 * socket.  Called once the peer registers as a client. */
void server_watch_pid(struct conn *c)
{
	/* A connection handing its watch over (adopt.c) passes its pidfd along: a pid
	 * opened again could already be reaped, or reused. */
	int fd = c->pidfd >= 0 ? c->pidfd : (int)syscall(SYS_pidfd_open, c->pid, 0);

	if (fd < 0) {
		slabd_log(c->d, LOG_DEBUG, "pidfd_open(%d): %s", (int)c->pid, strerror(errno));
		return;
	}
	c->pidfd = fd;
	c->pidfd_ev = event_new(c->d->base, fd, EV_READ, on_pidfd, c);
	if (!c->pidfd_ev || event_add(c->pidfd_ev, NULL)) {
		close(fd);
		c->pidfd = -1;
	}
}

struct conn *server_conn_new(struct slabd *d, int fd, pid_t pid, uid_t uid, gid_t gid)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c)
		c->refs = calloc(d->arena.hdr->ah_nr_caches, sizeof(*c->refs));
	if (c && c->refs)
		c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !c->refs || !c->bev) {
		slabd_log(d, LOG_ERR, "out of memory accepting pid %d", (int)pid);
		if (c)
			free(c->refs);
		free(c);
		close(fd);
		return NULL;
	}
	c->d = d;
	c->pid = pid;
	c->uid = uid;
	c->gid = gid;
	c->pidfd = -1;
	c->since_ns = slabd_now_ns();
	c->next = d->conns;
	d->conns = c;
	d->nr_conns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return c;
}

/* Tell a peer why it is not served, log it with its pid and uid, close it. */
static void refuse(struct slabd *d, int fd, const struct ucred *cred, const char *code,
		   const char *msg)
{
	char line[256];
	int n;

	slabd_log(d, LOG_WARN, "refused pid %d uid %u gid %u: %s", (int)cred->pid,
		  (unsigned)cred->uid, (unsigned)cred->gid, msg);
	n = snprintf(line, sizeof(line), "{\"id\":null,\"ok\":false,\"error\":\"%s\","
		     "\"message\":\"%s\"}\n", code, msg);
	if (n > 0 && (size_t)n < sizeof(line) && send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0) {
		/* nothing more to tell a peer that cannot be written to */
	}
	close(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct slabd *d = arg;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct conn *c;
	unsigned same_uid = 0;
	char msg[128];

	(void)l;
	(void)sa;
	(void)salen;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		close(fd);
		return;
	}
	if (!admitted(d, cred.uid, cred.gid)) {
		refuse(d, fd, &cred, "EACCES", "uid not allowed by slabd");
		return;
	}
	if (d->nr_conns >= d->opt.max_connections) {
		snprintf(msg, sizeof(msg), "too many connections (%u, max-connections)",
			 d->nr_conns);
		refuse(d, fd, &cred, "EAGAIN", msg);
		return;
	}
	for (c = d->conns; c; c = c->next)
		same_uid += c->uid == cred.uid;
	if (same_uid >= d->opt.max_conn_per_uid) {
		snprintf(msg, sizeof(msg), "too many connections of uid %u (%u, "
			 "max-connections-per-uid)", (unsigned)cred.uid, same_uid);
		refuse(d, fd, &cred, "EUSERS", msg);
		return;
	}
	c = server_conn_new(d, fd, cred.pid, cred.uid, cred.gid);
	if (c)
		slabd_log(d, LOG_DEBUG, "accepted pid %d uid %u", (int)c->pid, (unsigned)c->uid);
}
