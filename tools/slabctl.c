/* slabctl.c - main: global options, the command table with every --help text, and the
 * small option parser each command uses.  See slabctl.h for the layout of the tool and
 * tools/slabctl.1 for the manual.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "slabctl.h"
#include "sockpath.h"

#define SLABCTL_VERSION "0.1.0"

static const struct cmd commands[] = {
	{ "list", cmd_list, "list",
	  "List every cache: object size, objects in use and in all, refcount (processes that\n"
	  "have it open), state (live, or dying while a destroy waits), and flags.\n" },
	{ "stats", cmd_stats, "stats [-S KEY] [NAME]",
	  "A slabinfo-like table of every cache (or of NAME):\n"
	  "  OBJSIZE    object size asked for; SLOT is its size in the slab\n"
	  "  ACTIVE     objects out of their slabs (INUSE + CACHED)\n"
	  "  TOTAL      objects in all slabs (num_objs)\n"
	  "  INUSE      objects held by the application (exact when the pool is quiet)\n"
	  "  CACHED     objects in per-thread magazines and per-node shared arrays\n"
	  "  OBJ/SLAB, PG/SLAB   objects per slab, 4 KiB pages per slab\n"
	  "  ASLABS, SLABS       slabs with an object out, all slabs\n"
	  "  MEMORY     bytes in slabs\n"
	  "  FAST%      fast-path hit rate: (alloc_fastpath + free_fastpath) / (allocs + frees)\n"
	  "With NAME, also the cache's geometry and tunables, a per-node breakdown (partial,\n"
	  "full, free and discard slabs, free objects, shared array) and every counter.\n"
	  "\n"
	  "Options:\n"
	  "  -S, --sort KEY   name (default), size (object size), memory, use (objects in use);\n"
	  "                   numeric keys sort largest first\n" },
	{ "top", cmd_top, "top [-d SECONDS] [-n ITERATIONS] [-S KEY]",
	  "A live view like slabtop: arena totals, then one line per cache with per-second\n"
	  "alloc and free rates from counter deltas, refreshed in place.  Keys: q quits;\n"
	  "n, s, m, u, r sort by name, size, memory, use, rate.  Ctrl-C quits too.\n"
	  "When standard output is not a terminal, frames are printed one after the other\n"
	  "without escape codes (use -n).  With --json, each refresh prints the daemon's\n"
	  "cache.stats reply line.\n"
	  "\n"
	  "Options:\n"
	  "  -d, --delay SECONDS     refresh interval (default 1; fractions allowed, >= 0.1)\n"
	  "  -n, --iterations N      stop after N refreshes (default: until q)\n"
	  "  -S, --sort KEY          memory (default), name, size, use, rate (allocs+frees/s)\n" },
	{ "create", cmd_create,
	  "create NAME --size N [--align A] [--flags F,...] [--limit L] [--batchcount B]\n"
	  "                 [--shared S] [--min-partial M] [--node N] [--max-objects Q]",
	  "Create a cache.  A cache nobody has open lives on until destroyed.  Creating a\n"
	  "name that exists with the same geometry succeeds (\"already exists\"); with another\n"
	  "geometry it is EEXIST.\n"
	  "\n"
	  "Options:\n"
	  "  --size N          object size in bytes (K, M suffixes), required\n"
	  "  --align A         alignment, a power of two (default 8)\n"
	  "  --flags F,...     hwcache_align, poison, red_zone, store_user, debug, zero\n"
	  "  --limit L         per-thread magazine size (default: from the size)\n"
	  "  --batchcount B    objects moved per refill or flush (default: limit/2)\n"
	  "  --shared S        per-node shared array size\n"
	  "  --min-partial M   empty slabs kept per node\n"
	  "  --node N          place every slab on node N (default: the allocating thread's)\n"
	  "  --max-objects Q   quota of objects (default: none)\n" },
	{ "destroy", cmd_destroy, "destroy NAME",
	  "Destroy a cache (kmem_cache_destroy).  Prints \"destroyed\", or \"pending\" with the\n"
	  "refcount while processes still have it open (the last close destroys it).  If\n"
	  "objects are still allocated the cache stays intact and slabctl fails with\n"
	  "\"cache still has N objects (EBUSY)\".\n" },
	{ "shrink", cmd_shrink, "shrink [NAME]",
	  "Give the empty slabs of NAME (or of every cache) back to the page allocator and\n"
	  "print how many slabs were released.\n" },
	{ "validate", cmd_validate, "validate [NAME]",
	  "Check NAME (or every cache and the page allocator): slab lists, free lists, object\n"
	  "counts, magazines.  Prints \"clean\", or one line per problem and exits with 1.\n" },
	{ "tune", cmd_tune, "tune NAME KEY=VALUE...",
	  "Change a cache's tunables while it runs.  KEY is limit (magazine size),\n"
	  "batchcount (objects per refill/flush), shared (per-node shared array size) or\n"
	  "min_partial (empty slabs kept per node).  0 leaves a tunable as it is.\n"
	  "Prints the tunables in force afterwards.\n" },
	{ "info", cmd_info, "info",
	  "The arena: size, resident bytes (what the OS holds), metadata, layout version,\n"
	  "generation, caches and clients; per node: OS node, total, used and free bytes,\n"
	  "the largest free block, and slabs by state.\n" },
	{ "clients", cmd_clients, "clients",
	  "Client processes connected to slabd: pid, uid, gid, connected since (local time),\n"
	  "pages of magazine area, and per open cache its references and cached objects.\n" },
	{ "reclaim", cmd_reclaim, "reclaim PID [NAME]",
	  "Free the objects a dead client process PID left allocated, in every cache made\n"
	  "with SLAB_STORE_USER (owner tracking), or only in NAME.  Refused while PID is a\n"
	  "live client.  Only for objects nobody else uses: an object the dead process had\n"
	  "handed to another process still names the dead one as its owner.\n" },
	{ "metrics", cmd_metrics, "metrics",
	  "Every cache, node and arena statistic in the Prometheus text exposition format\n"
	  "(version 0.0.4), e.g. for node_exporter's textfile collector or a scrape wrapper.\n"
	  "With --json, prints the daemon's cache.stats and arena.stats reply lines.\n" },
};

#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: slabctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
		"\n"
		"The operator's tool for slabd, the shared-memory slab allocator.\n"
		"\n"
		"Commands:\n"
		"  list                    caches: object size, objects in use/total, refcount, state\n"
		"  stats [NAME]            slabinfo-like table; with NAME also nodes and counters\n"
		"  top                     live view like slabtop, with alloc/free rates (q quits)\n"
		"  create NAME --size N    create a cache\n"
		"  destroy NAME            destroy a cache\n"
		"  shrink [NAME]           release empty slabs to the page allocator\n"
		"  validate [NAME]         check caches and slabs (exit 1 on problems)\n"
		"  tune NAME KEY=VALUE...  change limit, batchcount, shared, min_partial\n"
		"  info                    the arena and its NUMA nodes\n"
		"  clients                 connected client processes (and recently dead ones)\n"
		"  reclaim PID [NAME]      free a dead client's objects (SLAB_STORE_USER caches)\n"
		"  metrics                 every statistic in the Prometheus text format\n"
		"  help [COMMAND]          this text, or a command's (as COMMAND --help)\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH  slabd's socket; default $SLABD_SOCKET, else\n"
		"                     $XDG_RUNTIME_DIR/slabd.sock, else /tmp/slabd-UID.sock\n"
		"      --json         print the daemon's JSON replies untouched, one per line\n"
		"  -h, --help         this help\n"
		"  -V, --version      slabctl's version\n"
		"\n"
		"Exit status: 0 success, 1 the daemon reported an error (or validate found\n"
		"problems), 2 usage error, 3 slabd cannot be reached.  See slabctl(1).\n");
}

static void cmd_help(const struct cmd *cmd)
{
	printf("Usage: slabctl [-s SOCKET] [--json] %s\n\n%s", cmd->synopsis, cmd->help);
	printf("\nGlobal options (anywhere): -s/--socket PATH, --json, -h/--help.\n");
}

int usage_error(const struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "slabctl%s%s: ", cmd ? " " : "", cmd ? cmd->name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'slabctl %s%s--help'.\n", cmd ? cmd->name : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int parse_u64(const char *s, bool suffixes, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (suffixes && *end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -1;
		}
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

enum { GOPT_SOCKET = -100, GOPT_JSON, GOPT_HELP };

static const struct opt global_opts[] = {
	{ "socket", 's', true, GOPT_SOCKET },
	{ "json", 0, false, GOPT_JSON },
	{ "help", 'h', false, GOPT_HELP },
	{ NULL, 0, false, 0 },
};

static const struct opt *find_opt(const struct opt *opts, const char *lname, char sname)
{
	for (const struct opt *o = opts; o && o->name; o++)
		if ((lname && !strcmp(o->name, lname)) || (!lname && sname && o->short_name == sname))
			return o;
	return NULL;
}

int parse_opts(struct ctl *c, const struct cmd *cmd, int argc, char **argv,
	       const struct opt *opts, int (*on_opt)(int id, const char *val, void *arg),
	       void *arg, char ***pos, int *npos)
{
	bool dashdash = false;

	*pos = calloc((size_t)argc + 1, sizeof(char *));
	*npos = 0;
	if (!*pos)
		abort();
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const struct opt *o;
		char lname[64];

		if (dashdash || a[0] != '-' || !a[1]) {
			(*pos)[(*npos)++] = argv[i];
			continue;
		}
		if (!strcmp(a, "--")) {
			dashdash = true;
			continue;
		}
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t l = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			if (l >= sizeof(lname))
				l = sizeof(lname) - 1;
			memcpy(lname, a + 2, l);
			lname[l] = '\0';
			o = find_opt(global_opts, lname, 0);
			if (!o)
				o = find_opt(opts, lname, 0);
			if (!o) {
				usage_error(cmd, "unknown option '--%s'", lname);
				return -1;
			}
			if (eq && !o->has_arg) {
				usage_error(cmd, "option '--%s' takes no value", lname);
				return -1;
			}
			val = eq ? eq + 1 : NULL;
		} else {
			o = find_opt(global_opts, NULL, a[1]);
			if (!o)
				o = find_opt(opts, NULL, a[1]);
			if (!o) {
				usage_error(cmd, "unknown option '-%c'", a[1]);
				return -1;
			}
			if (a[2] && !o->has_arg) {
				usage_error(cmd, "unknown option '%s'", a);
				return -1;
			}
			val = a[2] ? a + 2 : NULL;
		}
		if (o->has_arg && !val) {
			if (i + 1 >= argc) {
				usage_error(cmd, "option '%s' needs a value", a);
				return -1;
			}
			val = argv[++i];
		}
		switch (o->id) {
		case GOPT_SOCKET:
			c->sock_arg = val;
			break;
		case GOPT_JSON:
			c->json = true;
			break;
		case GOPT_HELP:
			cmd_help(cmd);
			return 1;
		default:
			if (on_opt(o->id, val, arg))
				return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl c;
	int i, rc;

	ctl_init(&c);
	/* Global options up to the command. */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || !a[1])
			break;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("slabctl %s (protocol %d)\n", SLABCTL_VERSION, SLABD_PROTOCOL_VERSION);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			c.json = true;
		} else if (!strcmp(a, "-s") || !strcmp(a, "--socket")) {
			if (i + 1 >= argc)
				return usage_error(NULL, "option '%s' needs a value", a);
			c.sock_arg = argv[++i];
		} else if (!strncmp(a, "--socket=", 9)) {
			c.sock_arg = a + 9;
		} else if (!strncmp(a, "-s", 2)) {
			c.sock_arg = a + 2;
		} else {
			return usage_error(NULL, "unknown option '%s'", a);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[i], "help")) {
		if (i + 1 >= argc) {
			usage(stdout);
			return 0;
		}
		for (size_t k = 0; k < NR_COMMANDS; k++)
			if (!strcmp(commands[k].name, argv[i + 1])) {
				cmd_help(&commands[k]);
				return 0;
			}
		return usage_error(NULL, "unknown command '%s'", argv[i + 1]);
	}
	for (size_t k = 0; k < NR_COMMANDS; k++) {
		if (strcmp(commands[k].name, argv[i]))
			continue;
		rc = commands[k].run(&c, &commands[k], argc - i, argv + i);
		ctl_close(&c);
		if (fflush(stdout) && !rc) {
			fprintf(stderr, "slabctl: writing the output: %s\n", strerror(errno));
			rc = EXIT_DAEMON;
		}
		return rc;
	}
	return usage_error(NULL, "unknown command '%s'", argv[i]);
}
