/* fuzz_protocol.c - libFuzzer target: arbitrary bytes as request lines through slabd's
 * real dispatcher (daemon/commands.c:commands_dispatch) on a real connection and a real
 * arena.
 *
 * Set-up, once: an 8 MiB arena over 2 nodes (sm_arena_create, sealed memfd), an
 * event_base, and a struct slabd as main.c fills it.  Per input: a socketpair, a struct conn
 * made by server_conn_new (a real bufferevent on one end), every '\n'-separated line of
 * the input dispatched in turn (lines over max-line are skipped, as on_read refuses them),
 * then the connection ends through server_conn_free (client reclaim, references dropped).
 *
 * What it asserts, besides ASan/UBSan finding nothing:
 *   - every reply is one line of JSON: an object with "id" and a boolean "ok", and
 *     "error" + "message" strings when ok is false;
 *   - a file descriptor only ever arrives with the reply of a successful client hello;
 *   - when the connection is gone and every cache it left is destroyed, the arena is back
 *     to empty: every page free on every node and sm_validate() clean.  A request stream
 *     cannot leak pages or leave the arena inconsistent.
 *
 * The peer's pid is one that does not exist, so a client connection is reclaimed when it
 * ends (a live pid would leave a "ghost" waiting for it to come back; see adopt.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "cache.h"
#include "slabd.h"
#include "sockpath.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_PID   0x3ffffff0   /* above any pid_max: kill() and pidfd_open() fail */
#define MAX_LINES  512

static struct slabd d;
static uint32_t free_pages[SLAB_MAX_NODES];
static int verbose;

/* main.c is not linked (it has main()): its two helpers. */
uint64_t slabd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void slabd_log(struct slabd *sd, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	(void)sd;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap); /* formatted even when quiet: ASan sees it */
	va_end(ap);
	if (verbose || level == LOG_ERR)
		fprintf(stderr, "slabd[%d]: %s\n", level, buf);
}

static void report(void *arg, const char *fmt, ...)
{
	va_list ap;

	(void)arg;
	va_start(ap, fmt);
	fputs("validate: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sm_arena_params p = { .size = 8u << 20, .nr_nodes = 2 };
	char err[256];

	(void)argc;
	(void)argv;
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	signal(SIGPIPE, SIG_IGN);
	d.opt.arena_size = p.size;
	d.opt.log_level = LOG_DEBUG;
	d.opt.max_connections = SLABD_DEF_MAX_CONNECTIONS;
	d.opt.max_conn_per_uid = SLABD_DEF_MAX_CONN_PER_UID;
	d.opt.max_pending = SLABD_DEF_MAX_PENDING;
	d.opt.max_line = SLABD_MAX_LINE;
	snprintf(d.socket_path, sizeof(d.socket_path), "/nonexistent/fuzz.sock");
	d.started_ns = slabd_now_ns();
	if (sm_arena_create(&p, &d.arena, err, sizeof(err))) {
		fprintf(stderr, "fuzz: sm_arena_create: %s\n", err);
		abort();
	}
	d.track = calloc(d.arena.hdr->ah_nr_caches, sizeof(*d.track));
	d.base = event_base_new();
	if (!d.track || !d.base)
		abort();
	for (unsigned n = 0; n < d.arena.hdr->ah_nr_nodes; n++)
		free_pages[n] = sm_region(&d.arena, n)->nr_free_pages;
	return 0;
}

/* One reply line must be a JSON object with "id" and a boolean "ok". */
static void check_reply(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *r = json_loadb(line, len, 0, &jerr), *ok;

	if (!r || !json_is_object(r)) {
		fprintf(stderr, "fuzz: reply is not a JSON object (%s): %.*s\n", r ? "" : jerr.text,
			(int)(len > 400 ? 400 : len), line);
		abort();
	}
	ok = json_object_get(r, "ok");
	if (!json_object_get(r, "id") || !json_is_boolean(ok) ||
	    (json_is_false(ok) && (!json_is_string(json_object_get(r, "error")) ||
				   !json_is_string(json_object_get(r, "message"))))) {
		fprintf(stderr, "fuzz: bad reply envelope: %.*s\n", (int)(len > 400 ? 400 : len),
			line);
		abort();
	}
	json_decref(r);
}

static void check_lines(const char *buf, size_t len)
{
	while (len) {
		const char *nl = memchr(buf, '\n', len);

		if (!nl) {
			fprintf(stderr, "fuzz: reply without its newline\n");
			abort();
		}
		check_reply(buf, (size_t)(nl - buf));
		len -= (size_t)(nl - buf) + 1;
		buf = nl + 1;
	}
}

/* What the connection queued: check and drop it (as if the peer read it). */
static void take_output(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = evbuffer_get_length(out);

	if (!len)
		return;
	evbuffer_unfreeze(out, 1);
	check_lines((const char *)evbuffer_pullup(out, -1), len);
	evbuffer_drain(out, len);
	evbuffer_freeze(out, 1);
}

/* What reached the peer's end directly (the hello reply with the arena fd). */
static void take_peer(int s, int fd_allowed)
{
	static char buf[1 << 16];
	size_t have = 0;

	for (;;) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = { buf + have, sizeof(buf) - have };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b,
				     .msg_controllen = sizeof(cbuf.b) };
		ssize_t n = recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			break;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			if (!fd_allowed) {
				fprintf(stderr, "fuzz: a file descriptor came with a reply that is "
					"not a client hello's\n");
				abort();
			}
			for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				close(fd);
			}
		}
		have += (size_t)n;
		if (have == sizeof(buf))
			abort(); /* no hello reply is that long */
	}
	if (have)
		check_lines(buf, have);
}

/* Destroy what the input left and check the arena is empty and sound again. */
static void reset_arena(void)
{
	unsigned bad;

	/* Ghosts (client connections whose process lives on) and leftovers. */
	while (d.conns)
		server_conn_free(d.conns);
	for (uint32_t id = 0; id < d.arena.hdr->ah_nr_caches; id++) {
		struct slab_cache_desc *cd = sm_cache(&d.arena, id);
		uint64_t live = 0;

		if (cd->c_state == CACHE_UNUSED)
			continue;
		if (cd->c_refcount) {
			fprintf(stderr, "fuzz: cache %s keeps %u references after its connection\n",
				cd->c_name, (unsigned)cd->c_refcount);
			abort();
		}
		__atomic_store_n(&cd->c_state, CACHE_DYING, __ATOMIC_RELEASE);
		if (sm_cache_shutdown(&d.arena, id, &live)) {
			fprintf(stderr, "fuzz: cache %s: shutdown refused, %llu objects out, yet no "
				"request can allocate one\n", cd->c_name, (unsigned long long)live);
			abort();
		}
		memset(&d.track[id], 0, sizeof(d.track[id]));
	}
	for (uint32_t s = 0; s < d.arena.hdr->ah_nr_clients; s++) {
		if (sm_client(&d.arena, s)->cl_state != CLIENT_UNUSED) {
			fprintf(stderr, "fuzz: client slot %u still in use\n", s);
			abort();
		}
	}
	for (unsigned n = 0; n < d.arena.hdr->ah_nr_nodes; n++) {
		if (sm_region(&d.arena, n)->nr_free_pages != free_pages[n]) {
			fprintf(stderr, "fuzz: node %u: %u pages free, %u before the input: pages "
				"leaked\n", n, sm_region(&d.arena, n)->nr_free_pages, free_pages[n]);
			abort();
		}
	}
	bad = sm_validate(&d.arena, NULL, NULL, NULL, report, NULL);
	if (bad) {
		fprintf(stderr, "fuzz: sm_validate found %u problems\n", bad);
		abort();
	}
	d.pristine = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct conn *c;
	int sv[2], lines = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv))
		abort();
	c = server_conn_new(&d, sv[0], FUZZ_PID, getuid(), getgid());
	if (!c)
		abort();
	d.pristine = true;
	while (p < end && lines++ < MAX_LINES) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		/* A copy of exactly len bytes: ASan catches a read past the line. */
		char *line = malloc(len ? len : 1);
		bool keep;
		int was_client = c->role == CONN_CLIENT;

		if (!line)
			abort();
		memcpy(line, p, len);
		p += len + (nl != NULL);
		if (len > d.opt.max_line) {
			free(line);
			break;
		}
		keep = commands_dispatch(c, line, len);
		free(line);
		take_output(c);
		take_peer(sv[1], !was_client && c->role == CONN_CLIENT);
		if (!keep || c->closing)
			break;
	}
	server_conn_free(c);
	take_peer(sv[1], 0);
	close(sv[1]);
	reset_arena();
	/* libevent frees a bufferevent in a finalizer run by the loop: run it, so every input
	 * frees what it allocated (and libFuzzer's leak check has nothing to chase). */
	event_base_loop(d.base, EVLOOP_NONBLOCK);
	return 0;
}
