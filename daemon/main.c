/* main.c - slabd: options, start-up, signals, shutdown.
 *
 * Shape of libevent's sample/hello-world.c: every constructor checked, signals turned into
 * events (SIGTERM/SIGINT -> event_base_loopexit), everything freed in reverse order.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "numa_place.h"
#include "slabd.h"
#include "sockpath.h"

static const char *level_names[] = { "error", "warn", "info", "debug" };

uint64_t slabd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void slabd_log(struct slabd *d, int level, const char *fmt, ...)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > d->opt.log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld slabd[%d] %s: ", stamp, ts.tv_nsec / 1000000, (int)getpid(),
		level_names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: slabd [--socket PATH] [--arena-size SIZE] [--nodes N] [--allow-uid U]...\n"
		"             [--allow-gid G]... [--arena-file PATH] [--log-level L]\n"
		"\n"
		"slabd owns a shared-memory arena of slabs and serves libslab clients and slabctl\n"
		"over a Unix socket (newline-delimited JSON, see daemon/PROTOCOL.md).  It runs in\n"
		"the foreground until SIGTERM or SIGINT, logs to stderr, and is ready once its\n"
		"socket accepts connections.\n"
		"\n"
		"  -s, --socket PATH      socket path (default: $SLABD_SOCKET, else\n"
		"                         $XDG_RUNTIME_DIR/slabd.sock, else /tmp/slabd-<uid>.sock)\n"
		"  -a, --arena-size SIZE  arena bytes, with K, M or G suffix (default 256M)\n"
		"  -n, --nodes N          NUMA nodes to spread the arena over; more than the host\n"
		"                         has makes virtual nodes over the real ones (default: the\n"
		"                         host's node count)\n"
		"  -u, --allow-uid U      also admit peers with this uid (repeatable); the\n"
		"                         daemon's own uid and root are always admitted\n"
		"  -g, --allow-gid G      also admit peers with this primary gid (repeatable)\n"
		"  -f, --arena-file PATH  put the arena in this file (tmpfs or hugetlbfs) instead of\n"
		"                         an anonymous sealed memfd\n"
		"  -l, --log-level L      error, warn, info (default) or debug\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n");
}

/* "256M" -> bytes.  0 on success. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end || *out > max ? -1 : 0;
}

static int parse_options(int argc, char **argv, struct slabd_options *o)
{
	static const struct option longs[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "arena-size", required_argument, NULL, 'a' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "allow-uid", required_argument, NULL, 'u' },
		{ "allow-gid", required_argument, NULL, 'g' },
		{ "arena-file", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int ch;

	o->arena_size = 256u << 20;
	o->log_level = LOG_INFO;
	while ((ch = getopt_long(argc, argv, "s:a:n:u:g:f:l:hV", longs, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->socket = optarg;
			break;
		case 'a':
			if (parse_size(optarg, &o->arena_size)) {
				fprintf(stderr, "slabd: bad --arena-size '%s' (e.g. 256M)\n", optarg);
				return 2;
			}
			break;
		case 'n':
			if (parse_uint(optarg, SLAB_MAX_NODES, &v) || !v) {
				fprintf(stderr, "slabd: --nodes takes 1..%u\n", SLAB_MAX_NODES);
				return 2;
			}
			o->nodes = (unsigned)v;
			break;
		case 'u':
		case 'g':
			if (parse_uint(optarg, 0xfffffffeul, &v) ||
			    (ch == 'u' ? o->nr_allow_uid : o->nr_allow_gid) >= SLABD_MAX_ALLOW) {
				fprintf(stderr, "slabd: bad or too many --allow-%s '%s'\n",
					ch == 'u' ? "uid" : "gid", optarg);
				return 2;
			}
			if (ch == 'u')
				o->allow_uid[o->nr_allow_uid++] = (uid_t)v;
			else
				o->allow_gid[o->nr_allow_gid++] = (gid_t)v;
			break;
		case 'f':
			o->arena_file = optarg;
			break;
		case 'l':
			for (v = 0; v < 4 && strcasecmp(optarg, level_names[v]); v++)
				;
			if (v == 4) {
				fprintf(stderr, "slabd: --log-level is error, warn, info or debug\n");
				return 2;
			}
			o->log_level = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("slabd %s (protocol %d, arena layout %u)\n", SLABD_VERSION,
			       SLABD_PROTOCOL_VERSION, SLAB_LAYOUT_VERSION);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "slabd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

static int make_arena(struct slabd *d)
{
	struct sm_arena_params p = {
		.size = d->opt.arena_size,
		.nr_nodes = d->opt.nodes ? d->opt.nodes : numa_place_host_nodes(),
	};
	char err[256];
	int rc;

	if (d->opt.arena_file) {
		int fd = open(d->opt.arena_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			slabd_log(d, LOG_ERR, "open %s: %s", d->opt.arena_file, strerror(errno));
			return -1;
		}
		rc = sm_arena_create_file(fd, &p, &d->arena, err, sizeof(err));
		close(fd);
	} else {
		rc = sm_arena_create(&p, &d->arena, err, sizeof(err));
	}
	if (rc) {
		slabd_log(d, LOG_ERR, "cannot create the arena: %s", err);
		return -1;
	}
	numa_place_arena(d);
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct slabd *d = arg;

	(void)what;
	slabd_log(d, LOG_INFO, "%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	event_base_loopexit(d->base, NULL);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	commands_reap(arg);
}

int main(int argc, char **argv)
{
	static struct slabd d;
	struct timeval reap_every = { 0, 20 * 1000 };
	char err[256];
	int rc;

	rc = parse_options(argc, argv, &d.opt);
	if (rc)
		return rc == 1 ? 0 : 2;
	signal(SIGPIPE, SIG_IGN);
	d.started_ns = slabd_now_ns();
	if (slabd_socket_path(d.opt.socket, d.socket_path, sizeof(d.socket_path))) {
		slabd_log(&d, LOG_ERR, "socket path too long");
		return 1;
	}
	if (make_arena(&d))
		return 1;
	d.grant_streak = calloc(d.arena.hdr->ah_nr_caches, sizeof(*d.grant_streak));
	d.last_grant_ns = calloc(d.arena.hdr->ah_nr_caches, sizeof(*d.last_grant_ns));
	d.base = event_base_new();
	if (!d.grant_streak || !d.last_grant_ns || !d.base) {
		slabd_log(&d, LOG_ERR, "out of memory");
		return 1;
	}
	if (server_listen(&d, err, sizeof(err))) {
		slabd_log(&d, LOG_ERR, "%s", err);
		sm_arena_detach(&d.arena);
		event_base_free(d.base);
		return 1;
	}
	d.sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
	d.reap_timer = event_new(d.base, -1, EV_PERSIST, on_reap, &d);
	if (!d.sigterm || !d.sigint || !d.reap_timer || event_add(d.sigterm, NULL) ||
	    event_add(d.sigint, NULL) || event_add(d.reap_timer, &reap_every)) {
		slabd_log(&d, LOG_ERR, "cannot set up events");
		return 1;
	}
	slabd_log(&d, LOG_INFO, "ready: socket %s, arena %llu MiB over %u node(s), %u cache slots",
		  d.socket_path, (unsigned long long)(d.arena.size >> 20),
		  d.arena.hdr->ah_nr_nodes, d.arena.hdr->ah_nr_caches);

	event_base_dispatch(d.base);

	server_close_all(&d);
	event_free(d.reap_timer);
	event_free(d.sigint);
	event_free(d.sigterm);
	event_base_free(d.base);
	free(d.grant_streak);
	free(d.last_grant_ns);
	sm_arena_detach(&d.arena);
	slabd_log(&d, LOG_INFO, "stopped");
	return 0;
}
