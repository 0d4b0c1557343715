/* commands.c - slabctl's one-shot commands: list, stats, create, destroy, shrink,
 * validate, tune, info, clients.  Each sends one request (list may send a second one for
 * object counts) and prints a table, or the reply line untouched under --json.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "slabctl.h"

static int no_opt(int id, const char *val, void *arg)
{
	(void)id;
	(void)val;
	(void)arg;
	return 0;
}

/* Parse a command's arguments.  Returns true to go on with pos/npos (free pos after),
 * false with *rc the exit status (--help printed, or a usage error). */
static bool get_args(struct ctl *c, const struct cmd *cmd, int argc, char **argv,
		     const struct opt *opts, int (*on_opt)(int, const char *, void *), void *arg,
		     int min, int max, const char *what, char ***pos, int *npos, int *rc)
{
	int r = parse_opts(c, cmd, argc, argv, opts, on_opt ? on_opt : no_opt, arg, pos, npos);

	if (!r && *npos < min)
		r = -usage_error(cmd, "%s is required", what);
	else if (!r && *npos > max)
		r = -usage_error(cmd, "unexpected argument '%s'", (*pos)[max]);
	if (r) {
		*rc = r < 0 ? EXIT_USAGE : 0;
		free(*pos);
		*pos = NULL;
		return false;
	}
	return true;
}

/* "poison,red_zone" from ["SLAB_POISON", "SLAB_RED_ZONE"]; "-" when none. */
static const char *flags_text(json_t *cache, char *buf, size_t len)
{
	json_t *flags = json_object_get(cache, "flags"), *f;
	size_t i, used = 0;

	buf[0] = '\0';
	json_array_foreach(flags, i, f) {
		const char *s = json_string_value(f);
		if (!s)
			continue;
		if (!strncmp(s, "SLAB_", 5))
			s += 5;
		used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
					 used ? "," : "", s);
		if (used >= len)
			break;
	}
	for (char *p = buf; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	return buf[0] ? buf : "-";
}

static json_t *named(const char *cmdname, const char *name)
{
	json_t *r = json_pack("{s:s}", "cmd", cmdname);

	if (name)
		json_object_set_new(r, "name", json_string(name));
	return r;
}

static json_t *find_by_name(json_t *caches, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(caches, i, c) {
		const char *n = jstr(c, "name");
		if (n && !strcmp(n, name))
			return c;
	}
	return NULL;
}

/* ---- list ------------------------------------------------------------------------------ */

int cmd_list(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	static const char *const hdr[] = { "NAME", "OBJSIZE", "INUSE", "TOTAL", "REFCOUNT",
					   "STATE", "FLAGS" };
	json_t *reply, *stats = NULL, *caches, *cache;
	struct table *t;
	char **pos, fl[128];
	int npos, rc;
	size_t i;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 0, 0, NULL, &pos, &npos, &rc))
		return rc;
	free(pos);
	if ((rc = ctl_request(c, named("cache.list", NULL), &reply)))
		return rc;
	if (c->json) {
		json_decref(reply);
		return 0;
	}
	caches = json_object_get(reply, "caches");
	sort_caches(caches, SORT_NAME, NULL, NULL);
	/* cache.list carries geometry and state; the object counts come from cache.stats
	 * unless this slabd already puts them in the list. */
	if (json_array_size(caches) && !json_object_get(json_array_get(caches, 0), "in_use")) {
		json_t *sreply;
		int src = ctl_call(c, named("cache.stats", NULL), &sreply, NULL);
		if (src) {
			json_decref(sreply);
			json_decref(reply);
			return ctl_fail(c, src);
		}
		stats = sreply;
	}
	t = table_new(7, hdr, "lrrrrll");
	json_array_foreach(caches, i, cache) {
		json_t *s = stats ? find_by_name(json_object_get(stats, "caches"), jstr(cache, "name"))
				  : cache;
		table_cell(t, "%s", jstr(cache, "name") ? jstr(cache, "name") : "?");
		table_cell_int(t, cache, "object_size");
		table_cell_int(t, s, "in_use");
		table_cell_int(t, s, "num_objs");
		table_cell_int(t, cache, "refcount");
		table_cell(t, "%s", jstr(cache, "state") ? jstr(cache, "state") : "-");
		table_cell(t, "%s", flags_text(cache, fl, sizeof(fl)));
	}
	table_print(t, stdout, false);
	table_free(t);
	json_decref(stats);
	json_decref(reply);
	return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

enum { OPT_SORT = 1 };

static const struct opt sort_opts[] = {
	{ "sort", 'S', true, OPT_SORT },
	{ NULL, 0, false, 0 },
};

struct stats_args {
	const struct cmd *cmd;
	enum sort_key     key;
};

static int stats_opt(int id, const char *val, void *arg)
{
	struct stats_args *a = arg;

	if (id == OPT_SORT && sort_key_parse(val, false, &a->key)) {
		usage_error(a->cmd, "unknown sort key '%s' (name, size, memory, use)", val);
		return -1;
	}
	return 0;
}

static void stats_table(json_t *caches)
{
	static const char *const hdr[] = { "NAME", "OBJSIZE", "SLOT", "ACTIVE", "TOTAL", "INUSE",
					   "CACHED", "OBJ/SLAB", "PG/SLAB", "ASLABS", "SLABS",
					   "MEMORY", "FAST%" };
	struct table *t = table_new(13, hdr, "lrrrrrrrrrrrr");
	json_t *cache;
	size_t i;
	char b[32];

	json_array_foreach(caches, i, cache) {
		double hr = hit_rate(cache);
		table_cell(t, "%s", jstr(cache, "name") ? jstr(cache, "name") : "?");
		table_cell_int(t, cache, "object_size");
		table_cell_int(t, cache, "size");
		table_cell_int(t, cache, "active_objs");
		table_cell_int(t, cache, "num_objs");
		table_cell_int(t, cache, "in_use");
		table_cell_int(t, cache, "cached");
		table_cell_int(t, cache, "objects_per_slab");
		table_cell_int(t, cache, "pages_per_slab");
		table_cell_int(t, cache, "active_slabs");
		table_cell_int(t, cache, "num_slabs");
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(cache, "memory_bytes"), b, sizeof(b)));
		if (hr < 0)
			table_cell(t, "-");
		else
			table_cell(t, "%.1f", hr);
	}
	table_print(t, stdout, false);
	table_free(t);
}

static void stats_detail(json_t *cache)
{
	static const char *const nhdr[] = { "NODE", "PARTIAL", "FULL", "FREE", "DISCARD",
					    "FREE_OBJECTS", "SHARED_AVAIL", "FREE_LIMIT" };
	json_t *nodes = json_object_get(cache, "nodes"), *counters = json_object_get(cache, "counters");
	json_t *n, *v;
	struct table *t;
	const char *key;
	size_t i, w = 0;
	char fl[128], nodebuf[16], maxbuf[32];

	if (jint(cache, "node") >= 0)
		snprintf(nodebuf, sizeof(nodebuf), "%lld", jint(cache, "node"));
	else
		snprintf(nodebuf, sizeof(nodebuf), "local");
	if (jint(cache, "max_objects") > 0)
		snprintf(maxbuf, sizeof(maxbuf), "%lld", jint(cache, "max_objects"));
	else
		snprintf(maxbuf, sizeof(maxbuf), "none");
	printf("\n%s: %lld-byte objects in %lld-byte slots, align %lld, order %lld, flags %s\n",
	       jstr(cache, "name"), jint(cache, "object_size"), jint(cache, "size"),
	       jint(cache, "align"), jint(cache, "order"), flags_text(cache, fl, sizeof(fl)));
	printf("  state %s, refcount %lld, node %s, max_objects %s\n",
	       jstr(cache, "state") ? jstr(cache, "state") : "-", jint(cache, "refcount"), nodebuf,
	       maxbuf);
	printf("  tunables: limit %lld, batchcount %lld, shared %lld, min_partial %lld\n",
	       jint(cache, "limit"), jint(cache, "batchcount"), jint(cache, "shared"),
	       jint(cache, "min_partial"));
	printf("  objects: in_use %lld, cached %lld (magazines %lld, shared arrays %lld)\n\n",
	       jint(cache, "in_use"), jint(cache, "cached"), jint(cache, "magazine_avail"),
	       jint(cache, "shared_avail"));

	t = table_new(8, nhdr, "rrrrrrrr");
	json_array_foreach(nodes, i, n) {
		table_cell_int(t, n, "node");
		table_cell_int(t, n, "partial");
		table_cell_int(t, n, "full");
		table_cell_int(t, n, "free");
		table_cell_int(t, n, "discard");
		table_cell_int(t, n, "free_objects");
		table_cell_int(t, n, "shared_avail");
		table_cell_int(t, n, "free_limit");
	}
	table_print(t, stdout, false);
	table_free(t);

	printf("\ncounters:\n");
	json_object_foreach(counters, key, v)
		if (strlen(key) > w)
			w = strlen(key);
	json_object_foreach(counters, key, v)
		printf("  %-*s  %lld\n", (int)w, key,
		       json_is_integer(v) ? (long long)json_integer_value(v) : 0);
}

int cmd_stats(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	struct stats_args a = { .cmd = cmd, .key = SORT_NAME };
	json_t *reply, *caches;
	char **pos;
	int npos, rc;

	if (!get_args(c, cmd, argc, argv, sort_opts, stats_opt, &a, 0, 1, NULL, &pos, &npos, &rc))
		return rc;
	rc = ctl_request(c, named("cache.stats", npos ? pos[0] : NULL), &reply);
	free(pos);
	if (rc)
		return rc;
	if (!c->json) {
		caches = json_object_get(reply, "caches");
		sort_caches(caches, a.key, NULL, NULL);
		stats_table(caches);
		if (npos && json_array_size(caches) == 1)
			stats_detail(json_array_get(caches, 0));
	}
	json_decref(reply);
	return 0;
}

/* ---- create ------------------------------------------------------------------------------ */

enum { OPT_SIZE = 1, OPT_ALIGN, OPT_FLAGS, OPT_LIMIT, OPT_BATCH, OPT_SHARED, OPT_MINP,
       OPT_NODE, OPT_MAXOBJ };

static const struct opt create_opts[] = {
	{ "size", 0, true, OPT_SIZE },          { "align", 0, true, OPT_ALIGN },
	{ "flags", 0, true, OPT_FLAGS },        { "limit", 0, true, OPT_LIMIT },
	{ "batchcount", 0, true, OPT_BATCH },   { "shared", 0, true, OPT_SHARED },
	{ "min-partial", 0, true, OPT_MINP },   { "min_partial", 0, true, OPT_MINP },
	{ "node", 0, true, OPT_NODE },          { "max-objects", 0, true, OPT_MAXOBJ },
	{ "max_objects", 0, true, OPT_MAXOBJ }, { NULL, 0, false, 0 },
};

struct create_args {
	const struct cmd *cmd;
	json_t           *req;
	bool              have_size;
};

static int create_opt(int id, const char *val, void *arg)
{
	static const char *const keys[] = {
		[OPT_SIZE] = "size",     [OPT_ALIGN] = "align",        [OPT_LIMIT] = "limit",
		[OPT_BATCH] = "batchcount", [OPT_SHARED] = "shared",   [OPT_MINP] = "min_partial",
		[OPT_MAXOBJ] = "max_objects",
	};
	struct create_args *a = arg;
	uint64_t v;

	if (id == OPT_FLAGS) {
		json_t *flags = json_array();
		char *copy = strdup(val), *save = NULL;
		for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
			if (*f)
				json_array_append_new(flags, json_string(f));
		free(copy);
		json_object_set_new(a->req, "flags", flags);
		return 0;
	}
	if (id == OPT_NODE) {
		if (!strcmp(val, "local") || !strcmp(val, "-1")) {
			json_object_set_new(a->req, "node", json_integer(-1));
			return 0;
		}
		if (parse_u64(val, false, &v) || v > 1024) {
			usage_error(a->cmd, "--node wants a node number or 'local', not '%s'", val);
			return -1;
		}
		json_object_set_new(a->req, "node", json_integer((json_int_t)v));
		return 0;
	}
	if (parse_u64(val, id == OPT_SIZE || id == OPT_ALIGN || id == OPT_MAXOBJ, &v) ||
	    v > (UINT64_MAX >> 1)) {
		usage_error(a->cmd, "--%s wants a non-negative number, not '%s'", keys[id], val);
		return -1;
	}
	if (id == OPT_SIZE)
		a->have_size = true;
	json_object_set_new(a->req, keys[id], json_integer((json_int_t)v));
	return 0;
}

int cmd_create(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	struct create_args a = { .cmd = cmd, .req = json_pack("{s:s}", "cmd", "cache.create") };
	json_t *reply, *cache;
	char **pos;
	int npos, rc;

	if (!get_args(c, cmd, argc, argv, create_opts, create_opt, &a, 1, 1, "a cache NAME", &pos,
		      &npos, &rc)) {
		json_decref(a.req);
		return rc;
	}
	json_object_set_new(a.req, "name", json_string(pos[0]));
	free(pos);
	if (!a.have_size) {
		json_decref(a.req);
		return usage_error(cmd, "--size is required");
	}
	if ((rc = ctl_request(c, a.req, &reply)))
		return rc;
	cache = json_object_get(reply, "cache");
	if (!c->json) {
		if (json_is_true(json_object_get(reply, "existed")))
			printf("cache '%s' already exists with this geometry\n", jstr(cache, "name"));
		else
			printf("created cache '%s': %lld-byte objects in %lld-byte slots, %lld per %lld-page slab\n",
			       jstr(cache, "name"), jint(cache, "object_size"), jint(cache, "size"),
			       jint(cache, "objects_per_slab"), jint(cache, "pages_per_slab"));
	}
	json_decref(reply);
	return 0;
}

/* ---- destroy, shrink, validate, tune ------------------------------------------------------ */

int cmd_destroy(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	json_t *reply;
	char **pos, name[64];
	int npos, rc;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 1, 1, "a cache NAME", &pos, &npos, &rc))
		return rc;
	snprintf(name, sizeof(name), "%s", pos[0]);
	rc = ctl_request(c, named("cache.destroy", pos[0]), &reply);
	free(pos);
	if (rc)
		return rc;
	if (!c->json) {
		if (json_is_true(json_object_get(reply, "destroyed")))
			printf("destroyed cache '%s'\n", name);
		else
			printf("destroy of cache '%s' pending (refcount %lld): the last close destroys it\n",
			       name, jint(reply, "refcount"));
	}
	json_decref(reply);
	return 0;
}

int cmd_shrink(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	json_t *reply;
	char **pos;
	int npos, rc;
	long long n;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 0, 1, NULL, &pos, &npos, &rc))
		return rc;
	rc = ctl_request(c, named("cache.shrink", npos ? pos[0] : NULL), &reply);
	if (!rc && !c->json) {
		n = jint(reply, "released_slabs");
		printf("%s%sreleased %lld slab%s\n", npos ? pos[0] : "", npos ? ": " : "", n,
		       n == 1 ? "" : "s");
	}
	free(pos);
	json_decref(reply);
	return rc;
}

int cmd_validate(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	json_t *reply, *line;
	char **pos;
	int npos, rc;
	bool clean;
	size_t i;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 0, 1, NULL, &pos, &npos, &rc))
		return rc;
	rc = ctl_request(c, named("cache.validate", npos ? pos[0] : NULL), &reply);
	free(pos);
	if (rc)
		return rc;
	clean = json_is_true(json_object_get(reply, "clean"));
	if (!c->json) {
		json_t *report = json_object_get(reply, "report");
		if (clean)
			printf("clean\n");
		json_array_foreach(report, i, line)
			if (json_is_string(line))
				printf("%s\n", json_string_value(line));
		if (!clean && (long long)json_array_size(report) < jint(reply, "problems"))
			printf("... %lld problems in all\n", jint(reply, "problems"));
	}
	if (!clean)
		fprintf(stderr, "slabctl: validate found %lld problem%s\n", jint(reply, "problems"),
			jint(reply, "problems") == 1 ? "" : "s");
	json_decref(reply);
	return clean ? 0 : EXIT_DAEMON;
}

int cmd_tune(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	static const char *const keys[] = { "limit", "batchcount", "shared", "min_partial" };
	json_t *req, *reply, *cache;
	char **pos;
	int npos, rc;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 2, argc, "a cache NAME and KEY=VALUE",
		      &pos, &npos, &rc))
		return rc;
	req = named("cache.tune", pos[0]);
	for (int i = 1; i < npos; i++) {
		char *eq = strchr(pos[i], '='), key[32];
		uint64_t v;
		size_t k, kl = eq ? (size_t)(eq - pos[i]) : 0;

		if (!eq || kl >= sizeof(key)) {
			rc = usage_error(cmd, "'%s' is not KEY=VALUE", pos[i]);
			goto out;
		}
		memcpy(key, pos[i], kl);
		key[kl] = '\0';
		if (!strcmp(key, "min-partial"))
			strcpy(key, "min_partial");
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strcmp(key, keys[k]))
				break;
		if (k == sizeof(keys) / sizeof(keys[0])) {
			rc = usage_error(cmd, "unknown tunable '%s' (limit, batchcount, shared, min_partial)",
					 key);
			goto out;
		}
		if (parse_u64(eq + 1, false, &v) || v > INT32_MAX) {
			rc = usage_error(cmd, "%s wants a non-negative number, not '%s'", key, eq + 1);
			goto out;
		}
		json_object_set_new(req, keys[k], json_integer((json_int_t)v));
	}
	free(pos);
	if ((rc = ctl_request(c, req, &reply)))
		return rc;
	cache = json_object_get(reply, "cache");
	if (!c->json)
		printf("%s: limit %lld, batchcount %lld, shared %lld, min_partial %lld\n",
		       jstr(cache, "name"), jint(cache, "limit"), jint(cache, "batchcount"),
		       jint(cache, "shared"), jint(cache, "min_partial"));
	json_decref(reply);
	return 0;
out:
	free(pos);
	json_decref(req);
	return rc;
}

/* ---- info, clients --------------------------------------------------------------------------- */

int cmd_info(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	static const char *const hdr[] = { "NODE", "OS_NODE", "TOTAL", "USED", "FREE",
					   "RESERVE", "TARGET", "LARGEST_FREE", "PARTIAL", "FULL", "EMPTY",
					   "DISCARD" };
	json_t *reply, *n;
	struct table *t;
	char **pos, b1[32], b2[32], b3[32];
	int npos, rc;
	size_t i;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 0, 0, NULL, &pos, &npos, &rc))
		return rc;
	free(pos);
	if ((rc = ctl_request(c, json_pack("{s:s}", "cmd", "arena.stats"), &reply)))
		return rc;
	if (c->json) {
		json_decref(reply);
		return 0;
	}
	printf("server      %s, pid %d, socket %s\n", c->server, c->server_pid, c->path);
	printf("arena       %s (%lld bytes), resident %s, metadata %s, page size %lld\n",
	       fmt_bytes((uint64_t)jint(reply, "size"), b1, sizeof(b1)), jint(reply, "size"),
	       fmt_bytes((uint64_t)jint(reply, "resident_bytes"), b2, sizeof(b2)),
	       fmt_bytes((uint64_t)jint(reply, "meta_bytes"), b3, sizeof(b3)),
	       jint(reply, "page_size"));
	printf("layout      version %lld, generation %lld\n", jint(reply, "layout_version"),
	       jint(reply, "generation"));
	printf("caches      %lld of %lld slots\n", jint(reply, "caches"), jint(reply, "cache_slots"));
	printf("clients     %lld of %lld slots\n", jint(reply, "clients"), jint(reply, "client_slots"));
	printf("nodes       %zu\n\n", json_array_size(json_object_get(reply, "nodes")));
	t = table_new(12, hdr, "rrrrrrrrrrrr");
	json_array_foreach(json_object_get(reply, "nodes"), i, n) {
		json_t *s = json_object_get(n, "slabs");
		table_cell_int(t, n, "node");
		table_cell_int(t, n, "os_node");
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "total_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "used_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "free_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "reserve_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "reserve_target_bytes"), b1, sizeof(b1)));
		table_cell(t, "%s", fmt_bytes((uint64_t)jint(n, "largest_free_bytes"), b1, sizeof(b1)));
		table_cell_int(t, s, "partial");
		table_cell_int(t, s, "full");
		table_cell_int(t, s, "free");
		table_cell_int(t, s, "discard");
	}
	table_print(t, stdout, false);
	table_free(t);
	printf("(PARTIAL/FULL/EMPTY/DISCARD: slabs by state; EMPTY are the per-node \"free\" lists;\n"
	       " RESERVE: the part of FREE slabd keeps faulted in for growing caches, up to TARGET,\n"
	       " which follows bursts of growth and decays back to slabd --reserve when idle)\n");
	json_decref(reply);
	return 0;
}

static const char *local_time(long long ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000LL);
	struct tm tm;

	if (ns <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
	return buf;
}

int cmd_clients(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	static const char *const hdr[] = { "PID", "UID", "GID", "SINCE", "AREA_PAGES", "CACHE",
					   "REFS", "CACHED" };
	json_t *reply, *cl, *ca;
	struct table *t;
	char **pos, tb[64];
	int npos, rc;
	size_t i, k;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 0, 0, NULL, &pos, &npos, &rc))
		return rc;
	free(pos);
	if ((rc = ctl_request(c, json_pack("{s:s}", "cmd", "clients.list"), &reply)))
		return rc;
	if (c->json) {
		json_decref(reply);
		return 0;
	}
	t = table_new(8, hdr, "rrrlrlrr");
	json_array_foreach(json_object_get(reply, "clients"), i, cl) {
		json_t *caches = json_object_get(cl, "caches");
		size_t n = json_array_size(caches);
		for (k = 0; k < (n ? n : 1); k++) {
			ca = json_array_get(caches, k);
			if (k == 0) {
				table_cell_int(t, cl, "pid");
				table_cell_int(t, cl, "uid");
				table_cell_int(t, cl, "gid");
				table_cell(t, "%s", local_time(jint(cl, "since_ns"), tb, sizeof(tb)));
				table_cell_int(t, cl, "area_pages");
			} else {
				for (int e = 0; e < 5; e++)
					table_cell(t, "%s", "");
			}
			if (ca) {
				table_cell(t, "%s", jstr(ca, "name") ? jstr(ca, "name") : "?");
				table_cell_int(t, ca, "refs");
				table_cell_int(t, ca, "cached");
			} else {
				table_cell(t, "-");
				table_cell(t, "-");
				table_cell(t, "-");
			}
		}
	}
	table_print(t, stdout, false);
	table_free(t);
	if (json_array_size(json_object_get(reply, "dead"))) {
		static const char *const dhdr[] = { "DEAD PID", "UID", "DIED", "RETURNED", "CACHE",
						    "LEFT" };
		json_t *dc;

		printf("\nrecently dead clients (cached objects returned; objects left allocated,\n"
		       "known for SLAB_STORE_USER caches: free them with slabctl reclaim PID)\n");
		t = table_new(6, dhdr, "rrlrlr");
		json_array_foreach(json_object_get(reply, "dead"), i, dc) {
			json_t *caches = json_object_get(dc, "caches");
			size_t n = json_array_size(caches);
			for (k = 0; k < (n ? n : 1); k++) {
				ca = json_array_get(caches, k);
				if (k == 0) {
					table_cell_int(t, dc, "pid");
					table_cell_int(t, dc, "uid");
					table_cell(t, "%s", local_time(jint(dc, "died_ns"), tb, sizeof(tb)));
					table_cell_int(t, dc, "cached_returned");
				} else {
					for (int e = 0; e < 4; e++)
						table_cell(t, "%s", "");
				}
				table_cell(t, "%s", ca && jstr(ca, "name") ? jstr(ca, "name") : "-");
				if (ca && json_object_get(ca, "objects_left"))
					table_cell_int(t, ca, "objects_left");
				else
					table_cell(t, "%s", "?");
			}
		}
		table_print(t, stdout, false);
		table_free(t);
	}
	json_decref(reply);
	return 0;
}

int cmd_reclaim(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	json_t *reply, *req, *ca;
	char **pos, *end;
	int npos, rc;
	long pid;
	size_t i;

	if (!get_args(c, cmd, argc, argv, NULL, NULL, NULL, 1, 2, NULL, &pos, &npos, &rc))
		return rc;
	pid = strtol(pos[0], &end, 10);
	if (*end || pid <= 0) {
		fprintf(stderr, "slabctl: reclaim: '%s' is not a pid\n", pos[0]);
		free(pos);
		return 2;
	}
	req = named("cache.reclaim", npos > 1 ? pos[1] : NULL);
	json_object_set_new(req, "pid", json_integer(pid));
	free(pos);
	rc = ctl_request(c, req, &reply);
	if (!rc && !c->json) {
		json_array_foreach(json_object_get(reply, "caches"), i, ca)
			printf("%s: %lld object%s of pid %ld freed\n", jstr(ca, "name"),
			       (long long)jint(ca, "objects"), jint(ca, "objects") == 1 ? "" : "s", pid);
		printf("reclaimed %lld object%s\n", (long long)jint(reply, "reclaimed"),
		       jint(reply, "reclaimed") == 1 ? "" : "s");
	}
	json_decref(reply);
	return rc;
}
