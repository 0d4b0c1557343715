/* top.c - slabctl top: a live view of slabd like slabtop.
 *
 * Every DELAY seconds it asks for cache.stats and arena.stats on one connection, computes
 * per-second alloc and free rates from the counter deltas since the previous sample
 * (allocs = alloc_fastpath + alloc_slowpath, frees likewise; a cache whose serial changed
 * was destroyed and re-created and has no rate yet), and redraws the screen in place.
 *
 * No ncurses: plain ANSI escapes.  On a terminal it switches to the alternate screen,
 * hides the cursor, and redraws each frame from home, clearing each line's tail and the
 * rest of the screen, so nothing flickers; standard input goes non-canonical without echo
 * (termios) so single keys work.  The terminal is restored on every way out: q, -n, an
 * error, SIGINT, SIGTERM (the handler only sets a flag; the loop restores the terminal and
 * then re-raises the signal so the exit status tells the truth).
 *
 * When standard output is not a terminal, frames are printed one after the other without
 * escapes (for scripts, with -n).
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "slabctl.h"

enum { OPT_DELAY = 1, OPT_ITER, OPT_TSORT };

static const struct opt top_opts[] = {
	{ "delay", 'd', true, OPT_DELAY },
	{ "iterations", 'n', true, OPT_ITER },
	{ "sort", 'S', true, OPT_TSORT },
	{ NULL, 0, false, 0 },
};

struct top_args {
	const struct cmd *cmd;
	double            delay;
	long              iterations;   /* 0: until q */
	enum sort_key     key;
};

static int top_opt(int id, const char *val, void *arg)
{
	struct top_args *a = arg;
	char *end;
	uint64_t v;

	switch (id) {
	case OPT_DELAY:
		errno = 0;
		a->delay = strtod(val, &end);
		if (errno || end == val || *end || !(a->delay >= 0.1) || a->delay > 3600) {
			usage_error(a->cmd, "-d wants seconds from 0.1 to 3600, not '%s'", val);
			return -1;
		}
		return 0;
	case OPT_ITER:
		if (parse_u64(val, false, &v) || v < 1 || v > 1000000000) {
			usage_error(a->cmd, "-n wants a positive number of refreshes, not '%s'", val);
			return -1;
		}
		a->iterations = (long)v;
		return 0;
	case OPT_TSORT:
		if (sort_key_parse(val, true, &a->key)) {
			usage_error(a->cmd, "unknown sort key '%s' (memory, name, size, use, rate)", val);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* ---- the terminal ------------------------------------------------------------------------ */

static struct termios saved_tio;
static bool tio_saved, screen_on;
static volatile sig_atomic_t got_signal, got_winch;

static void term_restore(void)
{
	if (screen_on) {
		/* Cursor back, leave the alternate screen. */
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		screen_on = false;
	}
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		tio_saved = false;
	}
}

static void on_signal(int sig)
{
	if (sig == SIGWINCH)
		got_winch = 1;
	else
		got_signal = sig;
}

static void term_setup(bool screen, bool keys)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll() returns EINTR and the loop looks at the flags. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	atexit(term_restore);
	if (keys && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios raw = saved_tio;
		raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);   /* ISIG stays: Ctrl-C works */
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0)
			tio_saved = true;
	}
	if (screen) {
		/* Alternate screen, hide the cursor, clear, home. */
		fputs("\033[?1049h\033[?25l\033[2J\033[H", stdout);
		fflush(stdout);
		screen_on = true;
	}
}

static void term_size(int *rows, int *cols)
{
	struct winsize ws;

	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* ---- samples and rates --------------------------------------------------------------------- */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long allocs_of(json_t *c)
{
	return jcounter(c, "alloc_fastpath") + jcounter(c, "alloc_slowpath");
}

static long long frees_of(json_t *c)
{
	return jcounter(c, "free_fastpath") + jcounter(c, "free_slowpath");
}

/* Attach "alloc_rate"/"free_rate" (per second; absent = unknown) to each cache of cur,
 * from prev taken dt seconds before.  The reply objects are ours: the daemon's line was
 * already printed (or never will be). */
static void compute_rates(json_t *cur, json_t *prev, double dt)
{
	json_t *c, *p;
	size_t i, k;

	json_array_foreach(cur, i, c) {
		const char *name = jstr(c, "name");
		if (!prev || dt <= 0 || !name)
			continue;
		json_array_foreach(prev, k, p) {
			const char *pn = jstr(p, "name");
			if (!pn || strcmp(pn, name) || jint(p, "serial") != jint(c, "serial"))
				continue;
			long long da = allocs_of(c) - allocs_of(p), df = frees_of(c) - frees_of(p);
			/* Counters of a client that died may leave the sum: never show < 0. */
			json_object_set_new(c, "alloc_rate", json_real(da > 0 ? (double)da / dt : 0));
			json_object_set_new(c, "free_rate", json_real(df > 0 ? (double)df / dt : 0));
			break;
		}
	}
}

static double rate_of(json_t *c, void *arg)
{
	(void)arg;
	return json_real_value(json_object_get(c, "alloc_rate")) +
	       json_real_value(json_object_get(c, "free_rate"));
}

static const char *rate_text(json_t *c, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(c, key);

	return json_is_real(v) ? fmt_count(json_real_value(v), buf, len) : "-";
}

/* ---- one frame ------------------------------------------------------------------------------ */

static void render(FILE *f, struct ctl *ctl, const struct top_args *a, json_t *caches,
		   json_t *arena)
{
	static const char *const hdr[] = { "ACTIVE", "TOTAL", "USE%", "INUSE", "CACHED", "OBJSIZE",
					   "OBJ/SLAB", "SLABS", "MEMORY", "ALLOC/s", "FREE/s",
					   "FAST%", "NAME" };
	long long act = 0, tot = 0, inuse = 0, cached = 0, aslabs = 0, slabs = 0, mem = 0;
	long long used = 0, freeb = 0, largest = 0, fast = 0, all = 0;
	double ar = 0, fr = 0;
	bool have_rates = false;
	char b1[32], b2[32], b3[32], b4[32], now[32];
	struct table *t;
	json_t *c, *n;
	time_t tt = time(NULL);
	struct tm tm;
	size_t i;

	json_array_foreach(caches, i, c) {
		act += jint(c, "active_objs");
		tot += jint(c, "num_objs");
		inuse += jint(c, "in_use");
		cached += jint(c, "cached");
		aslabs += jint(c, "active_slabs");
		slabs += jint(c, "num_slabs");
		mem += jint(c, "memory_bytes");
		fast += jcounter(c, "alloc_fastpath") + jcounter(c, "free_fastpath");
		all += allocs_of(c) + frees_of(c);
		if (json_object_get(c, "alloc_rate")) {
			have_rates = true;
			ar += json_real_value(json_object_get(c, "alloc_rate"));
			fr += json_real_value(json_object_get(c, "free_rate"));
		}
	}
	json_array_foreach(json_object_get(arena, "nodes"), i, n) {
		used += jint(n, "used_bytes");
		freeb += jint(n, "free_bytes");
		if (jint(n, "largest_free_bytes") > largest)
			largest = jint(n, "largest_free_bytes");
	}
	localtime_r(&tt, &tm);
	strftime(now, sizeof(now), "%H:%M:%S", &tm);
	fprintf(f, "slabctl top - %s pid %d on %s - %s - every %.1fs, sorted by %s (q quits)\n",
		ctl->server, ctl->server_pid, ctl->path, now, a->delay, sort_key_name(a->key));
	fprintf(f, "Arena: %s, resident %s, used %s, free %s (largest block %s); %lld caches, %lld clients, %zu node%s\n",
		fmt_bytes((uint64_t)jint(arena, "size"), b1, sizeof(b1)),
		fmt_bytes((uint64_t)jint(arena, "resident_bytes"), b2, sizeof(b2)),
		fmt_bytes((uint64_t)used, b3, sizeof(b3)), fmt_bytes((uint64_t)freeb, b4, sizeof(b4)),
		fmt_bytes((uint64_t)largest, now, sizeof(now)), jint(arena, "caches"),
		jint(arena, "clients"), json_array_size(json_object_get(arena, "nodes")),
		json_array_size(json_object_get(arena, "nodes")) == 1 ? "" : "s");
	fprintf(f, "Objects: %lld active / %lld total (%.1f%%), %lld in use, %lld cached\n", act, tot,
		tot ? 100.0 * (double)act / (double)tot : 0.0, inuse, cached);
	if (have_rates)
		fprintf(f, "Slabs: %lld active / %lld total, memory %s; allocs %s/s, frees %s/s",
			aslabs, slabs, fmt_bytes((uint64_t)mem, b1, sizeof(b1)),
			fmt_count(ar, b2, sizeof(b2)), fmt_count(fr, b3, sizeof(b3)));
	else
		fprintf(f, "Slabs: %lld active / %lld total, memory %s; allocs -/s, frees -/s",
			aslabs, slabs, fmt_bytes((uint64_t)mem, b1, sizeof(b1)));
	if (all)
		fprintf(f, ", fast path %.1f%%\n\n", 100.0 * (double)fast / (double)all);
	else
		fprintf(f, ", fast path -\n\n");

	t = table_new(13, hdr, "rrrrrrrrrrrrl");
	json_array_foreach(caches, i, c) {
		double hr = hit_rate(c);
		long long na = jint(c, "num_objs");
		table_cell_int(t, c, "active_objs");
		table_cell_int(t, c, "num_objs");
		if (na)
			table_cell(t, "%.0f%%", 100.0 * (double)jint(c, "active_objs") / (double)na);
		else
			table_cell(t, "-");
		table_cell_int(t, c, "in_use");
		table_cell_int(t, c, "cached");
		table_cell_int(t, c, "object_size");
		table_cell_int(t, c, "objects_per_slab");
		table_cell_int(t, c, "num_slabs");
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(c, "memory_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", rate_text(c, "alloc_rate", b2, sizeof(b2)));
		table_cell(t, "%s", rate_text(c, "free_rate", b3, sizeof(b3)));
		if (hr < 0)
			table_cell(t, "-");
		else
			table_cell(t, "%.1f", hr);
		table_cell(t, "%s", jstr(c, "name") ? jstr(c, "name") : "?");
	}
	table_print(t, f, false);
	table_free(t);
}

/* Put a rendered frame on the terminal: from home, each line cut to the width and its
 * tail cleared, at most rows lines, then the rest of the screen cleared. */
static void show(const char *frame, bool tty)
{
	int rows, cols, row = 0;
	const char *p = frame;

	if (!tty) {
		fputs(frame, stdout);
		fputs("\n", stdout);
		fflush(stdout);
		return;
	}
	term_size(&rows, &cols);
	fputs("\033[H", stdout);
	while (*p && row < rows) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		fwrite(p, 1, len < (size_t)cols ? len : (size_t)cols, stdout);
		fputs("\033[K", stdout);
		row++;
		p += len + (nl ? 1 : 0);
		if (row < rows && *p)
			fputs("\r\n", stdout);
	}
	fputs("\033[J", stdout);
	fflush(stdout);
}

/* ---- the loop --------------------------------------------------------------------------------- */

static int sample(struct ctl *c, json_t **stats, json_t **arena)
{
	char *line = NULL;
	int rc;

	*arena = NULL;
	rc = ctl_call(c, json_pack("{s:s}", "cmd", "cache.stats"), stats, &line);
	if (c->json && line)
		printf("%s\n", line);
	free(line);
	if (!rc && !c->json)
		rc = ctl_call(c, json_pack("{s:s}", "cmd", "arena.stats"), arena, NULL);
	return rc;
}

static void draw(struct ctl *c, const struct top_args *a, json_t *stats, json_t *arena, bool tty)
{
	char *frame = NULL;
	size_t flen = 0;
	FILE *f;

	sort_caches(json_object_get(stats, "caches"), a->key, rate_of, NULL);
	f = open_memstream(&frame, &flen);
	if (!f)
		abort();
	render(f, c, a, json_object_get(stats, "caches"), arena);
	fclose(f);
	show(frame, tty);
	free(frame);
}

int cmd_top(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	struct top_args a = { .cmd = cmd, .delay = 1.0, .key = SORT_MEMORY };
	json_t *stats = NULL, *arena = NULL, *prev = NULL;
	double prev_t = 0, next;
	bool tty, keys, quit = false;
	char **pos;
	int npos, rc;
	long iter = 0;

	rc = parse_opts(c, cmd, argc, argv, top_opts, top_opt, &a, &pos, &npos);
	if (!rc && npos)
		rc = -usage_error(cmd, "unexpected argument '%s'", pos[0]);
	free(pos);
	if (rc)
		return rc < 0 ? EXIT_USAGE : 0;
	if ((rc = ctl_connect(c)))
		return ctl_fail(c, rc);
	tty = isatty(STDOUT_FILENO) && !c->json;
	keys = isatty(STDIN_FILENO);
	term_setup(tty, keys);

	for (;;) {
		double t;

		json_decref(prev);
		prev = stats ? json_incref(json_object_get(stats, "caches")) : NULL;
		json_decref(stats);
		json_decref(arena);
		stats = arena = NULL;
		rc = sample(c, &stats, &arena);
		t = mono_s();
		if (rc)
			break;
		iter++;
		if (!c->json) {
			compute_rates(json_object_get(stats, "caches"), prev, t - prev_t);
			draw(c, &a, stats, arena, tty);
		} else {
			fflush(stdout);
		}
		prev_t = t;
		if (a.iterations && iter >= a.iterations)
			break;
		/* Wait for the next refresh, a key or a signal. */
		next = t + a.delay;
		for (;;) {
			struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
			double left = next - mono_s();
			int pr;
			char ch;

			if (got_signal || left <= 0)
				break;
			if (got_winch && !c->json) {
				got_winch = 0;
				draw(c, &a, stats, arena, tty);
			}
			pr = poll(&p, keys ? 1 : 0, (int)ceil(left * 1000));
			if (pr <= 0 || !(p.revents & (POLLIN | POLLHUP)))
				continue;
			if (read(STDIN_FILENO, &ch, 1) != 1) {
				keys = false; /* stdin closed: keep going until -n or a signal */
				continue;
			}
			if (ch == 'q' || ch == 'Q') {
				quit = true;
				break;
			}
			if (!c->json && strchr("nsmur", ch)) {
				sort_key_parse(ch == 'n' ? "name" : ch == 's' ? "size" :
					       ch == 'm' ? "memory" : ch == 'u' ? "use" : "rate",
					       true, &a.key);
				draw(c, &a, stats, arena, tty);
			}
		}
		if (got_signal || quit)
			break;
	}
	json_decref(prev);
	json_decref(stats);
	json_decref(arena);
	term_restore();
	if (got_signal) {
		int sig = got_signal;
		signal(sig, SIG_DFL);
		raise(sig);
		return 128 + sig;
	}
	return rc ? ctl_fail(c, rc) : 0;
}
