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
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "numa_place.h"
#include "slabd.h"
#include "stocker.h"
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
		"             [--allow-gid G]... [--config FILE] [--max-connections N]\n"
		"             [--max-connections-per-uid N] [--max-pending N] [--max-line BYTES]\n"
		"             [--arena-file PATH] [--reserve SIZE] [--adopt-wait MS]\n"
		"             [--log-level L]\n"
		"\n"
		"slabd owns a shared-memory arena of slabs and serves libslab clients and slabctl\n"
		"over a Unix socket (newline-delimited JSON, see daemon/PROTOCOL.md).  It runs in\n"
		"the foreground until SIGTERM or SIGINT, logs to stderr, and is ready once its\n"
		"socket accepts connections.\n"
		"\n"
		"  -s, --socket PATH      socket path (default: $SLABD_SOCKET, else\n"
		"                         $XDG_RUNTIME_DIR/slabd.sock, else /tmp/slabd-<uid>.sock).\n"
		"                         The socket is made mode 0660.  Directories of the path\n"
		"                         that do not exist are created mode 0750 (owner and group\n"
		"                         only); an existing directory is left as it is.\n"
		"  -a, --arena-size SIZE  arena bytes, with K, M or G suffix (default 256M)\n"
		"  -n, --nodes N          NUMA nodes to spread the arena over; more than the host\n"
		"                         has makes virtual nodes over the real ones (default: the\n"
		"                         host's node count)\n"
		"  -u, --allow-uid U      also admit peers with this uid or user name (repeatable);\n"
		"                         the daemon's own uid and root are always admitted\n"
		"  -g, --allow-gid G      also admit peers with this gid or group name\n"
		"                         (repeatable).  The gid is the peer's primary (effective)\n"
		"                         gid from SO_PEERCRED: supplementary groups are not seen.\n"
		"                         A peer also needs write permission on the socket file\n"
		"                         and search permission on its directories.\n"
		"  -c, --config FILE      read admission and limits from FILE, one 'KEY VALUE' a\n"
		"                         line, '#' comments: allow-uid U, allow-gid G (both add to\n"
		"                         the lists above), max-connections N,\n"
		"                         max-connections-per-uid N, max-pending N, max-line BYTES.\n"
		"                         Limits given on the command line override the file's.\n"
		"      --max-connections N\n"
		"                         connections at once, all peers together (default %u);\n"
		"                         beyond it a new peer gets EAGAIN and is closed\n"
		"      --max-connections-per-uid N\n"
		"                         connections at once of one uid (default %u); beyond it\n"
		"                         a new peer gets EUSERS and is closed\n"
		"      --max-pending N    replies a peer may leave unread (default %u): further\n"
		"                         requests get EAGAIN without being run; at twice that\n"
		"                         the peer is cut off\n"
		"      --max-line BYTES   longest request line (default 64K, %u to %u): a longer\n"
		"                         line gets EMSGSIZE and the connection is closed\n"
		"  -f, --arena-file PATH  put the arena in this file (tmpfs or hugetlbfs) instead of\n"
		"                         an anonymous sealed memfd\n"
		"  -r, --reserve SIZE     free memory per node kept faulted in, so that growing\n"
		"                         caches get resident pages (default 16M; at most 1/8 of\n"
		"                         a node; 0: none).  A burst of grants raises it to the\n"
		"                         burst's size (at most 1/8 of the node); it halves back\n"
		"                         towards SIZE every 10 s in which grants took less than\n"
		"                         half of it.  A shrink gives it back; the next grant\n"
		"                         stocks it again\n"
		"  -W, --adopt-wait MS    when slabd starts on the socket of a slabd that died\n"
		"                         (or stopped while clients still mapped its arena),\n"
		"                         new clients and cache.create wait up to MS\n"
		"                         (default %u, at most 600000; 0: not at all) for\n"
		"                         the old clients to hand the arena back, so a\n"
		"                         newcomer cannot lock them out; the first one back\n"
		"                         ends the wait\n"
		"  -l, --log-level L      error, warn, info (default) or debug\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n",
		SLABD_DEF_MAX_CONNECTIONS, SLABD_DEF_MAX_CONN_PER_UID, SLABD_DEF_MAX_PENDING,
		SLABD_MIN_LINE, SLABD_MAX_MAX_LINE, SLABD_DEF_ADOPT_WAIT_MS);
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
		{ "config", required_argument, NULL, 'c' },
		{ "max-connections", required_argument, NULL, 'C' },
		{ "max-connections-per-uid", required_argument, NULL, 'U' },
		{ "max-pending", required_argument, NULL, 'P' },
		{ "max-line", required_argument, NULL, 'L' },
		{ "reserve", required_argument, NULL, 'r' },
		{ "adopt-wait", required_argument, NULL, 'W' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	uint64_t big;
	char err[512];
	int ch;

	o->arena_size = 256u << 20;
	o->reserve = SLABD_DEF_RESERVE;
	o->adopt_wait_ms = SLABD_DEF_ADOPT_WAIT_MS;
	o->log_level = LOG_INFO;
	o->max_connections = SLABD_DEF_MAX_CONNECTIONS;
	o->max_conn_per_uid = SLABD_DEF_MAX_CONN_PER_UID;
	o->max_pending = SLABD_DEF_MAX_PENDING;
	o->max_line = SLABD_MAX_LINE;
	while ((ch = getopt_long(argc, argv, "s:a:n:u:g:f:r:W:l:c:hV", longs, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->socket = optarg;
			break;
		case 'a':
			if (config_parse_size(optarg, &o->arena_size)) {
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
			if (config_parse_id(optarg, ch == 'g', &v) ||
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
		case 'r':
			if (config_parse_size(optarg, &o->reserve)) {
				fprintf(stderr, "slabd: bad --reserve '%s' (e.g. 16M, or 0)\n", optarg);
				return 2;
			}
			break;
		case 'c':
			o->config = optarg;
			break;
		case 'W':
			if (parse_uint(optarg, SLABD_MAX_ADOPT_WAIT_MS, &v)) {
				fprintf(stderr, "slabd: --adopt-wait takes milliseconds, 0 to %u\n",
					SLABD_MAX_ADOPT_WAIT_MS);
				return 2;
			}
			o->adopt_wait_ms = (unsigned)v;
			break;
		case 'C':
		case 'U':
		case 'P':
		case 'L': {
			static const struct {
				int ch;
				const char *name;
				unsigned bit;
				uint64_t lo, hi;
			} lim[] = {
				{ 'C', "max-connections", SLABD_SET_MAX_CONNECTIONS, 1, 1u << 20 },
				{ 'U', "max-connections-per-uid", SLABD_SET_MAX_CONN_PER_UID, 1, 1u << 20 },
				{ 'P', "max-pending", SLABD_SET_MAX_PENDING, 1, 1u << 20 },
				{ 'L', "max-line", SLABD_SET_MAX_LINE, SLABD_MIN_LINE, SLABD_MAX_MAX_LINE },
			};
			unsigned k = 0;

			while (lim[k].ch != ch)
				k++;
			if (config_parse_size(optarg, &big) || big < lim[k].lo || big > lim[k].hi) {
				fprintf(stderr, "slabd: --%s takes %llu to %llu, not '%s'\n",
					lim[k].name, (unsigned long long)lim[k].lo,
					(unsigned long long)lim[k].hi, optarg);
				return 2;
			}
			o->cli_set |= lim[k].bit;
			if (ch == 'C')
				o->max_connections = (unsigned)big;
			else if (ch == 'U')
				o->max_conn_per_uid = (unsigned)big;
			else if (ch == 'P')
				o->max_pending = (unsigned)big;
			else
				o->max_line = (uint32_t)big;
			break;
		}
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
	if (o->config && config_load(o->config, o, err, sizeof(err))) {
		fprintf(stderr, "slabd: config: %s\n", err);
		return 2;
	}
	return 0;
}

/* Every connection costs up to two fds (the socket and a client's pidfd): raise the soft
 * RLIMIT_NOFILE to what max-connections needs (up to the hard limit), or lower
 * max-connections to what the limit allows, so slabd refuses with a clear EAGAIN instead
 * of failing accept(2) with EMFILE. */
static void fit_fd_limit(struct slabd *d)
{
	rlim_t need = (rlim_t)d->opt.max_connections * 2 + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		unsigned fit = rl.rlim_cur > 96 ? (unsigned)((rl.rlim_cur - 64) / 2) : 16;

		slabd_log(d, LOG_WARN, "RLIMIT_NOFILE %llu is too low for %u connections: "
			  "max-connections lowered to %u", (unsigned long long)rl.rlim_cur,
			  d->opt.max_connections, fit);
		d->opt.max_connections = fit;
	}
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
		struct stat st;

		if (fd < 0) {
			slabd_log(d, LOG_ERR, "open %s: %s", d->opt.arena_file, strerror(errno));
			return -1;
		}
		/* An arena left by an earlier slabd is adopted, never formatted over. */
		if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(struct slab_arena_hdr)) {
			rc = sm_arena_attach(fd, &d->arena, err, sizeof(err));
			if (rc == 0) {
				close(fd);
				slabd_log(d, LOG_INFO, "adopting the arena in %s", d->opt.arena_file);
				d->adopt_at_start = true;
				return 0;
			}
			uint64_t magic = 0;
			if (pread(fd, &magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
			    magic == SLAB_ARENA_MAGIC) {
				slabd_log(d, LOG_ERR, "%s holds an arena slabd cannot adopt (%s); "
					  "move it away to start afresh", d->opt.arena_file, err);
				close(fd);
				return -1;
			}
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
	fit_fd_limit(&d);
	if (slabd_socket_path(d.opt.socket, d.socket_path, sizeof(d.socket_path))) {
		slabd_log(&d, LOG_ERR, "socket path too long");
		return 1;
	}
	d.pristine = true;
	if (make_arena(&d))
		return 1;
	d.track = calloc(d.arena.hdr->ah_nr_caches, sizeof(*d.track));
	d.base = event_base_new();
	if (!d.track || !d.base) {
		slabd_log(&d, LOG_ERR, "out of memory");
		return 1;
	}
	if (d.adopt_at_start)
		adopt_after(&d);
	else
		commands_reserve_init(&d);
	/* Signals first: slabd is ready once its socket accepts connections, and a SIGTERM
	 * from then on must be a clean stop (the socket removed unless clients may come
	 * back, server_close_all), not the default death. */
	d.sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
	d.reap_timer = event_new(d.base, -1, EV_PERSIST, on_reap, &d);
	if (!d.sigterm || !d.sigint || !d.reap_timer || event_add(d.sigterm, NULL) ||
	    event_add(d.sigint, NULL) || event_add(d.reap_timer, &reap_every)) {
		slabd_log(&d, LOG_ERR, "cannot set up events");
		return 1;
	}
	if (server_listen(&d, err, sizeof(err))) {
		slabd_log(&d, LOG_ERR, "%s", err);
		event_free(d.reap_timer);
		event_free(d.sigint);
		event_free(d.sigterm);
		sm_arena_detach(&d.arena);
		event_base_free(d.base);
		return 1;
	}
	adopt_ident_check(&d);
	if (d.stale_socket && d.pristine)
		adopt_ident_load(&d);
	if (!d.pristine)
		adopt_ident_save(&d); /* an --arena-file adopted before the socket existed */
	if (d.stale_socket && adopt_window_open(&d))
		slabd_log(&d, LOG_WARN, "cannot set up the adoption window: new clients may "
			  "lock out the previous slabd's");
	rc = stocker_start(&d);
	if (rc)
		slabd_log(&d, LOG_WARN, "no reserve stocker thread (%s): the reserve is restocked "
			  "on the main thread between bursts", strerror(-rc));
	slabd_log(&d, LOG_INFO, "ready: socket %s, arena %llu MiB over %u node(s), %u cache slots",
		  d.socket_path, (unsigned long long)(d.arena.size >> 20),
		  d.arena.hdr->ah_nr_nodes, d.arena.hdr->ah_nr_caches);
	slabd_log(&d, LOG_INFO, "admitting root%s, %u more uid(s), %u gid(s); limits: "
		  "%u connections, %u per uid, %u pending replies, %u-byte lines%s%s",
		  getuid() ? " and slabd's own uid" : "", d.opt.nr_allow_uid, d.opt.nr_allow_gid,
		  d.opt.max_connections, d.opt.max_conn_per_uid, d.opt.max_pending,
		  d.opt.max_line, d.opt.config ? "; config " : "",
		  d.opt.config ? d.opt.config : "");

	/* The loop, with the slab restock's steps between its turns: while restock work is
	 * pending, each turn only looks at what is ready (requests first), then one step. */
	for (bool more = false;;) {
		if (event_base_loop(d.base, more ? EVLOOP_NONBLOCK : EVLOOP_ONCE) < 0 ||
		    event_base_got_exit(d.base) || event_base_got_break(d.base))
			break;
		more = slabd_restock(&d);
	}

	stocker_stop(&d);
	server_close_all(&d);
	if (d.adopt_window_ev)
		event_free(d.adopt_window_ev);
	if (d.accept_retry)
		event_free(d.accept_retry);
	event_free(d.reap_timer);
	event_free(d.sigint);
	event_free(d.sigterm);
	event_base_free(d.base);
	free(d.track);
	sm_arena_detach(&d.arena);
	slabd_log(&d, LOG_INFO, "stopped");
	return 0;
}
