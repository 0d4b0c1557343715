/* pool.c - connect to slabd, map the arena, RPC, fork, disconnect, the client area. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "sockpath.h"

pthread_mutex_t slab_lib_lock = PTHREAD_MUTEX_INITIALIZER;
static slab_pool *all_pools;           /* lib_lock */
unsigned slab_fork_gen;                /* bumped in every forked child */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- fork -------------------------------------------------------------------------- */

static void atfork_prepare(void)
{
	pthread_mutex_lock(&slab_lib_lock);
	for (slab_pool *p = all_pools; p; p = p->next_pool)
		pthread_mutex_lock(&p->rpc_lock);
}

static void atfork_parent(void)
{
	for (slab_pool *p = all_pools; p; p = p->next_pool)
		pthread_mutex_unlock(&p->rpc_lock);
	pthread_mutex_unlock(&slab_lib_lock);
}

static void atfork_child(void)
{
	slab_fork_gen++;
	for (slab_pool *p = all_pools; p; p = p->next_pool)
		pthread_mutex_unlock(&p->rpc_lock);
	/* The parent's magazines are not ours: forget them without touching them. */
	slab_fork_child_reset();
	pthread_mutex_unlock(&slab_lib_lock);
}

static void lib_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- socket I/O ----------------------------------------------------------------------- */

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ECONNRESET;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one reply line into a new string; with fdp, also take an SCM_RIGHTS fd. */
static int read_line(slab_pool *p, char **line, int *fdp)
{
	for (;;) {
		char *nl = p->rlen ? memchr(p->rbuf, '\n', p->rlen) : NULL;
		struct msghdr mh = { 0 };
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov;
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - p->rbuf);
			*line = malloc(len + 1);
			if (!*line)
				return -ENOMEM;
			memcpy(*line, p->rbuf, len);
			(*line)[len] = 0;
			memmove(p->rbuf, nl + 1, p->rlen - len - 1);
			p->rlen -= len + 1;
			return 0;
		}
		if (p->rcap - p->rlen < 4096) {
			size_t cap = p->rcap ? p->rcap * 2 : 8192;
			char *nb;
			if (cap > (8u << 20))
				return -EPROTO; /* no reply is this long */
			nb = realloc(p->rbuf, cap);
			if (!nb)
				return -ENOMEM;
			p->rbuf = nb;
			p->rcap = cap;
		}
		iov.iov_base = p->rbuf + p->rlen;
		iov.iov_len = p->rcap - p->rlen;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (fdp) {
			mh.msg_control = cbuf;
			mh.msg_controllen = sizeof(cbuf);
		}
		n = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -ECONNRESET;
		if (fdp) {
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
				if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
					memcpy(fdp, CMSG_DATA(cm), sizeof(int));
		}
		p->rlen += (size_t)n;
	}
}

/* One exchange, rpc_lock held.  fdp: receive a file descriptor with the reply. */
static json_t *exchange(slab_pool *p, const char *cmd, json_t *fields, int *err, int *fdp)
{
	json_t *reply;
	char *s, *line = NULL;
	uint64_t id = ++p->next_id;
	int rc;

	if (!fields)
		fields = json_object();
	json_object_set_new(fields, "id", json_integer((json_int_t)id));
	json_object_set_new(fields, "cmd", json_string(cmd));
	s = json_dumps(fields, JSON_COMPACT);
	json_decref(fields);
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	rc = write_all(p->fd, s, strlen(s));
	if (!rc)
		rc = write_all(p->fd, "\n", 1);
	free(s);
	if (rc) {
		/* A peer refused at admission (EACCES, or a connection limit) gets one error
		 * line and is closed, possibly before it could send: the send fails then, but
		 * that line is still there to read, and says why. */
		int sent_rc = rc;

		if (read_line(p, &line, NULL)) {
			*err = sent_rc;
			return NULL;
		}
		reply = json_loads(line, 0, NULL);
		free(line);
		if (!reply || json_is_true(json_object_get(reply, "ok"))) {
			json_decref(reply);
			*err = sent_rc;
			return NULL;
		}
	} else {
		rc = read_line(p, &line, fdp);
		if (rc) {
			*err = rc;
			return NULL;
		}
		reply = json_loads(line, 0, NULL);
		free(line);
	}
	if (!reply) {
		*err = -EPROTO;
		return NULL;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		/* Errors first: a refusal at admission (EACCES) carries id null. */
		int e = slabd_errno_value(json_string_value(json_object_get(reply, "error")));
		*err = e ? -e : -EPROTO;
		json_decref(reply);
		return NULL;
	}
	if (json_integer_value(json_object_get(reply, "id")) != (json_int_t)id) {
		json_decref(reply);
		*err = -EPROTO;
		return NULL;
	}
	return reply;
}

/* Back to slabd after the connection broke (slabd restarted, or the socket was lost):
 * say hello with the slot and arena this process has; a restarted slabd that has no
 * arena of its own yet asks for ours ("adopt") and takes it over.  Then reopen every
 * cache handle (references are counted anew).  rpc_lock held.  0, -ECONNREFUSED (not
 * back yet), -ENOENT (our slot is gone: this pool cannot go on), -EPROTO. */
static int resume_client(slab_pool *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *r;
	int fd, err = 0, reopen;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, p->socket_path, strlen(p->socket_path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -ECONNREFUSED;
	}
	p->fd = fd;
	p->rlen = 0;
	r = exchange(p, "hello",
		     json_pack("{s:i, s:s, s:i, s:{s:i, s:I}}", "version", SLABD_PROTOCOL_VERSION,
			       "role", "client", "pid", (int)getpid(), "resume", "slot",
			       (int)p->client_slot, "arena_id", (json_int_t)p->arena_id),
		     &err, NULL);
	if (r && json_is_true(json_object_get(r, "adopt"))) {
		/* Hand the arena over: one byte carrying our memfd. */
		char cbuf[CMSG_SPACE(sizeof(int))], byte = 'A', *line = NULL;
		struct iovec iov = { &byte, 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm;

		json_decref(r);
		r = NULL;
		memset(cbuf, 0, sizeof(cbuf));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &p->arena.fd, sizeof(int));
		if (sendmsg(fd, &mh, MSG_NOSIGNAL) != 1 || read_line(p, &line, NULL)) {
			err = -ECONNRESET;
		} else {
			r = json_loads(line, 0, NULL);
			if (!r || !json_is_true(json_object_get(r, "ok"))) {
				int e = r ? slabd_errno_value(json_string_value(json_object_get(r, "error"))) : 0;
				err = e ? -e : -EPROTO;
				json_decref(r);
				r = NULL;
			}
		}
		free(line);
	}
	if (!r) {
		close(fd);
		p->fd = -1;
		return err ? err : -EPROTO;
	}
	/* A slot kept across a lost connection still holds our references. */
	reopen = !json_is_true(json_object_get(r, "refs_kept"));
	json_decref(r);
	for (size_t i = 0; reopen && i < p->nr_names; i++) {
		r = exchange(p, "cache.open", json_pack("{s:s}", "name", p->names[i]), &err, NULL);
		json_decref(r);
		if (!r && err == -ECONNRESET) {
			/* slabd went away again: start over with the next one. */
			close(fd);
			p->fd = -1;
			return -ECONNREFUSED;
		}
	}
	return 0;
}

/* Keep trying to get back to slabd until $SLAB_RECONNECT_MS (default 10000) has passed,
 * with backoff from 5 ms to 200 ms.  rpc_lock held. */
static int reconnect(slab_pool *p)
{
	const char *env = getenv("SLAB_RECONNECT_MS");
	long budget = env ? strtol(env, NULL, 10) : 10000, waited = 0, step = 5;
	int rc;

	if (p->fd >= 0) {
		close(p->fd);
		p->fd = -1;
	}
	for (;;) {
		rc = resume_client(p);
		if (rc == 0 || rc == -ENOENT || rc == -EPROTO || waited >= budget)
			return rc == -ECONNREFUSED ? -ECONNRESET : rc;
		usleep((useconds_t)step * 1000);
		waited += step;
		step = step * 2 > 200 ? 200 : step * 2;
	}
}

json_t *slab_rpc(slab_pool *p, const char *cmd, json_t *fields, int *err)
{
	json_t *r = NULL, *again;

	pthread_mutex_lock(&p->rpc_lock);
	again = json_deep_copy(fields ? fields : json_object());
	if (p->fd >= 0)
		r = exchange(p, cmd, fields, err, NULL);
	else
		json_decref(fields);
	/* slabd went away: the slow path waits for it, then goes on (again if the new one
	 * dies too before it answers). */
	while (!r && (p->fd < 0 || *err == -ECONNRESET) && p->arena.base) {
		*err = reconnect(p);
		if (*err)
			break;
		r = exchange(p, cmd, json_incref(again), err, NULL);
	}
	json_decref(again);
	pthread_mutex_unlock(&p->rpc_lock);
	return r;
}

/* How often a slow path looks at the connection (slab_pool_watch). */
#define WATCH_NS 10000000ull

void slab_pool_watch(slab_pool *p)
{
	struct timespec ts;
	uint64_t now;
	char c;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (now - SM_LOAD(&p->watch_ns) < WATCH_NS || !p->arena.base)
		return;
	SM_STORE(&p->watch_ns, now);
	if (pthread_mutex_trylock(&p->rpc_lock))
		return; /* a call to slabd is under way: it sees for itself */
	if (p->fd >= 0) {
		ssize_t n = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			close(p->fd); /* slabd is gone */
			p->fd = -1;
		}
	}
	if (p->fd < 0)
		resume_client(p); /* one try; the next watch tries again */
	pthread_mutex_unlock(&p->rpc_lock);
}

/* Remember (or forget) an open handle's cache name, for reopening after a reconnect. */
void slab_pool_note_open(slab_pool *p, const char *name, int open)
{
	pthread_mutex_lock(&p->rpc_lock);
	if (open) {
		if (p->nr_names == p->names_cap) {
			size_t cap = p->names_cap ? p->names_cap * 2 : 8;
			char (*n)[SLAB_NAME_MAX] = realloc(p->names, cap * sizeof(*n));
			if (n) {
				p->names = n;
				p->names_cap = cap;
			}
		}
		if (p->nr_names < p->names_cap)
			snprintf(p->names[p->nr_names++], SLAB_NAME_MAX, "%s", name);
	} else {
		for (size_t i = 0; i < p->nr_names; i++)
			if (!strcmp(p->names[i], name)) {
				memcpy(p->names[i], p->names[--p->nr_names], SLAB_NAME_MAX);
				break;
			}
	}
	pthread_mutex_unlock(&p->rpc_lock);
}

/* ---- connect ----------------------------------------------------------------------------- */

static int grow_rpc(struct sm_arena *a, uint32_t cache_id, unsigned node, unsigned nr,
		    void *arg)
{
	slab_pool *p = arg;
	json_t *r;
	int err = 0;

	(void)a;
	r = slab_rpc(p, "slab.grant",
		     json_pack("{s:i, s:i, s:i}", "cache", (int)cache_id, "node", (int)node,
			       "nr", (int)(nr > 64 ? 64 : nr)),
		     &err);
	if (!r)
		return err;
	json_decref(r);
	return 0;
}

/* Open the socket and say hello; maps the arena unless it is mapped already. */
static int register_client(slab_pool *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *r;
	int fd, err = 0, arena_fd = -1;
	char msg[256];

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, p->socket_path, strlen(p->socket_path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return e == EACCES || e == EPERM ? -EACCES : -ECONNREFUSED;
	}
	pthread_mutex_lock(&p->rpc_lock);
	p->fd = fd;
	p->rlen = 0;
	r = exchange(p, "hello",
		     json_pack("{s:i, s:s, s:i}", "version", SLABD_PROTOCOL_VERSION, "role",
			       "client", "pid", (int)getpid()),
		     &err, &arena_fd);
	pthread_mutex_unlock(&p->rpc_lock);
	if (!r)
		goto fail;
	p->client_slot = (uint32_t)json_integer_value(json_object_get(r, "client"));
	p->arena_id = (uint64_t)json_integer_value(json_object_get(r, "arena_id"));
	json_decref(r);
	if (arena_fd < 0) {
		err = -EPROTO;
		goto fail;
	}
	if (!p->arena.base) {
		err = sm_arena_attach(arena_fd, &p->arena, msg, sizeof(msg));
		if (err)
			goto fail;
		p->arena.grow = grow_rpc;
		p->arena.grow_arg = p;
	}
	close(arena_fd);
	p->pid = getpid();
	p->arena.pid = p->pid;
	p->fork_gen = slab_fork_gen;
	return 0;
fail:
	if (arena_fd >= 0)
		close(arena_fd);
	close(fd);
	p->fd = -1;
	return err;
}

int slab_pool_connect(const char *socket_path, slab_pool **out)
{
	slab_pool *p;
	const char *node;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	pthread_once(&init_once, lib_init);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = -1;
	p->arena.fd = -1;
	p->area_block = SLAB_NIL;
	p->forced_node = -1;
	pthread_mutex_init(&p->rpc_lock, NULL);
	rc = slabd_socket_path(socket_path, p->socket_path, sizeof(p->socket_path));
	if (!rc)
		rc = register_client(p);
	if (rc) {
		pthread_mutex_destroy(&p->rpc_lock);
		free(p->rbuf);
		free(p);
		return rc;
	}
	node = getenv("SLAB_NODE");
	if (node && *node) {
		char *end;
		long v = strtol(node, &end, 10);
		if (!*end && v >= 0 && v < (long)p->arena.hdr->ah_nr_nodes)
			p->forced_node = (int)v;
	}
	pthread_mutex_lock(&slab_lib_lock);
	p->next_pool = all_pools;
	all_pools = p;
	pthread_mutex_unlock(&slab_lib_lock);
	p->pid = getpid();
	*out = p;
	return 0;
}

/* After fork(): a new client slot, a new area, the same caches reopened. */
int slab_pool_check_fork(slab_pool *p)
{
	int rc = 0;

	if (likely(p->fork_gen == SM_LOAD(&slab_fork_gen)))
		return 0;
	pthread_mutex_lock(&slab_lib_lock);
	if (p->fork_gen != slab_fork_gen) {
		if (p->fd >= 0)
			close(p->fd); /* the parent's connection: ours is a copy */
		p->fd = -1;
		p->area_block = SLAB_NIL;
		p->nr_idle = 0;
		rc = register_client(p);
		for (slab_cache *h = p->caches; h && !rc; h = h->next) {
			json_t *r = slab_rpc(p, "cache.open", json_pack("{s:s}", "name", h->name), &rc);
			json_decref(r);
		}
	}
	pthread_mutex_unlock(&slab_lib_lock);
	return rc;
}

void slab_pool_disconnect(slab_pool *p)
{
	slab_pool **pp;

	if (!p)
		return;
	slab_pool_check_fork(p);
	pthread_mutex_lock(&slab_lib_lock);
	while (p->caches) {
		slab_cache *h = p->caches;
		json_t *r;
		int err;

		slab_cache_flush_all(h);
		r = slab_rpc(p, "cache.close", json_pack("{s:s}", "name", h->name), &err);
		json_decref(r);
		slab_cache_release(h);
	}
	if (p->fd >= 0) {
		json_t *r;
		int err;

		pthread_mutex_lock(&p->rpc_lock);
		r = exchange(p, "client.bye", NULL, &err, NULL);
		pthread_mutex_unlock(&p->rpc_lock);
		json_decref(r);
	}
	for (pp = &all_pools; *pp && *pp != p; pp = &(*pp)->next_pool)
		;
	if (*pp)
		*pp = p->next_pool;
	pthread_mutex_unlock(&slab_lib_lock);
	if (p->fd >= 0)
		close(p->fd); /* slabd reclaims the client slot and its area */
	sm_arena_detach(&p->arena);
	pthread_mutex_destroy(&p->rpc_lock);
	free(p->idle);
	free(p->names);
	free(p->rbuf);
	free(p);
}

/* ---- nodes and magazines ------------------------------------------------------------------ */

unsigned slab_thread_node(slab_pool *p)
{
	unsigned cpu, node = 0, nodes = p->arena.hdr->ah_nr_nodes;

	if (p->forced_node >= 0)
		return (unsigned)p->forced_node;
	if (nodes == 1 || getcpu(&cpu, &node) != 0)
		return 0;
	return node % nodes;
}

struct slab_mag *slab_area_mag(slab_pool *p, unsigned capacity, int *err)
{
	struct slab_mag *m;
	json_t *r;

	for (size_t i = 0; i < p->nr_idle; i++) {
		if (p->idle[i]->m_capacity >= capacity) {
			m = p->idle[i];
			p->idle[i] = p->idle[--p->nr_idle];
			return m;
		}
	}
	if (p->area_block != SLAB_NIL && (m = sm_area_carve(&p->arena, p->area_block, capacity)))
		return m;
	r = slab_rpc(p, "area.grow", json_pack("{s:i}", "node", (int)slab_thread_node(p)), err);
	if (!r)
		return NULL;
	p->area_block = (uint32_t)json_integer_value(json_object_get(r, "block"));
	json_decref(r);
	if (p->area_block >= p->arena.hdr->ah_nr_pages) {
		p->area_block = SLAB_NIL;
		*err = -EPROTO;
		return NULL;
	}
	m = sm_area_carve(&p->arena, p->area_block, capacity);
	if (!m)
		*err = -ENOMEM;
	return m;
}
