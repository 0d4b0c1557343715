/* server.c - slabd's Unix socket: listener, admission, framing, fd passing, client death.
 *
 * Framing: one JSON object per line, both ways.  A request line longer than
 * SLABD_MAX_LINE gets an EMSGSIZE reply and the connection is closed (the rest of the
 * stream cannot be re-synchronised).  A peer that stops reading its replies is cut off
 * once SLABD_MAX_OUTPUT bytes are queued for it.
 *
 * A client's death is seen twice, whichever comes first: EOF on its socket, and its
 * pidfd becoming readable (which also covers a forked child keeping the socket open).
 */
#include <errno.h>
#include <fcntl.h>
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

static void conn_free(struct conn *c);

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

static void make_parent_dir(struct slabd *d, const char *path)
{
	char dir[sizeof(d->socket_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = 0;
	if (mkdir(dir, 0750) == 0)
		slabd_log(d, LOG_INFO, "created %s (0750)", dir);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg);

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct slabd *d = arg;

	(void)l;
	slabd_log(d, LOG_WARN, "accept: %s", strerror(EVUTIL_SOCKET_ERROR()));
}

int server_listen(struct slabd *d, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old_mask;
	int fd, rc;

	make_parent_dir(d, d->socket_path);
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
		unlink(d->socket_path);
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
	while (d->conns)
		conn_free(d->conns);
	if (d->listener) {
		evconnlistener_free(d->listener);
		d->listener = NULL;
		unlink(d->socket_path);
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

static void conn_free(struct conn *c)
{
	struct slabd *d = c->d;

	if (c->role == CONN_CLIENT) {
		/* Objects first (their caches may be dying), then references. */
		uint64_t back = sm_client_reclaim(&d->arena, c->slot);
		slabd_log(d, LOG_INFO, "client pid %d (slot %u) gone: %llu cached objects returned",
			  (int)c->pid, c->slot, (unsigned long long)back);
	}
	commands_drop_refs(c);
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
}

void conn_reply(struct conn *c, json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	json_decref(reply);
	if (!s)
		return;
	if (evbuffer_get_length(out) > SLABD_MAX_OUTPUT) {
		slabd_log(c->d, LOG_WARN, "pid %d does not read its replies; closing", (int)c->pid);
		c->closing = true;
		c->cutoff = true;
	} else {
		evbuffer_add(out, s, strlen(s));
		evbuffer_add(out, "\n", 1);
	}
	free(s);
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
		return -e;
	}
	/* The fd went with the first byte; whatever did not fit is ordinary output. */
	if ((size_t)n < len)
		evbuffer_add(bufferevent_get_output(c->bev), c->fd_reply + n, len - (size_t)n);
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
	char *line;
	size_t len;

	while (!c->closing && !c->fd_reply && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		bool keep = len <= SLABD_MAX_LINE ? commands_dispatch(c, line, len) : false;

		if (len > SLABD_MAX_LINE) {
			json_t *r = json_pack("{s:n, s:b, s:s, s:s}", "id", "ok", 0, "error",
					      "EMSGSIZE", "message", "request line too long");
			conn_reply(c, r);
		}
		free(line);
		if (!keep)
			c->closing = true;
	}
	if (!c->closing && !c->fd_reply && evbuffer_get_length(in) > SLABD_MAX_LINE) {
		json_t *r = json_pack("{s:n, s:b, s:s, s:s}", "id", "ok", 0, "error", "EMSGSIZE",
				      "message", "request line longer than 65536 bytes");
		slabd_log(c->d, LOG_WARN, "pid %d sent an oversize line; closing", (int)c->pid);
		conn_reply(c, r);
		c->closing = true;
	}
	if (c->cutoff) {
		conn_free(c); /* it does not read: what is queued would never leave */
		return;
	}
	if (c->closing) {
		evbuffer_drain(in, evbuffer_get_length(in));
		bufferevent_disable(bev, EV_READ);
		if (!evbuffer_get_length(bufferevent_get_output(bev)) && !c->fd_reply)
			conn_free(c);
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
			conn_free(c);
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
		conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		slabd_log(c->d, LOG_DEBUG, "pid %d: connection error", (int)c->pid);
		conn_free(c);
	} else if (what & BEV_EVENT_EOF) {
		/* A half-close (`printf ... | socat`) still wants its replies: free once the
		 * output has drained (on_write), or now if nothing is queued. */
		slabd_log(c->d, LOG_DEBUG, "pid %d disconnected", (int)c->pid);
		c->closing = true;
		if (!evbuffer_get_length(bufferevent_get_output(bev)) && !c->fd_reply)
			conn_free(c);
	}
}

static void on_pidfd(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	slabd_log(c->d, LOG_INFO, "pid %d exited", (int)c->pid);
	conn_free(c);
}

/* Watch the peer's process: its death ends the connection even if a child holds the
 * socket.  Called once the peer registers as a client. */
void server_watch_pid(struct conn *c);
void server_watch_pid(struct conn *c)
{
	int fd = (int)syscall(SYS_pidfd_open, c->pid, 0);

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

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct slabd *d = arg;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct conn *c;

	(void)l;
	(void)sa;
	(void)salen;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		close(fd);
		return;
	}
	if (!admitted(d, cred.uid, cred.gid)) {
		static const char msg[] = "{\"id\":null,\"ok\":false,\"error\":\"EACCES\","
					  "\"message\":\"uid not allowed by slabd\"}\n";
		slabd_log(d, LOG_WARN, "refused pid %d uid %u gid %u: not in the allow list",
			  (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
		if (write(fd, msg, sizeof(msg) - 1) < 0) {
			/* nothing more to tell a peer that cannot be written to */
		}
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->refs = calloc(d->arena.hdr->ah_nr_caches, sizeof(*c->refs));
	if (c && c->refs)
		c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !c->refs || !c->bev) {
		slabd_log(d, LOG_ERR, "out of memory accepting pid %d", (int)cred.pid);
		if (c)
			free(c->refs);
		free(c);
		close(fd);
		return;
	}
	c->d = d;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pidfd = -1;
	c->since_ns = slabd_now_ns();
	c->next = d->conns;
	d->conns = c;
	d->nr_conns++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	slabd_log(d, LOG_DEBUG, "accepted pid %d uid %u", (int)c->pid, (unsigned)c->uid);
}
