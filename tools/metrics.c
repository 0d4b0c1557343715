/* metrics.c - slabctl metrics: every statistic in the Prometheus text exposition format
 * (version 0.0.4): for each metric family a "# HELP" and a "# TYPE" line, then its samples,
 * grouped.  Counters end in _total.  Label values are escaped (\\, \", \n) although cache
 * names never need it.
 *
 *   slabd_up                                          1 when slabd answered
 *   slabd_cache_*{cache="msg"}                        geometry, objects, slabs, tunables
 *   slabd_cache_<counter>_total{cache="msg"}          every counter of cache.stats
 *   slabd_cache_node_*{cache="msg",node="0"}          per-node lists of a cache
 *   slabd_arena_*                                     the arena
 *   slabd_node_*{node="0",os_node="0"}                per-node memory
 */
#include <stdlib.h>
#include <string.h>

#include "slabctl.h"

static void put_escaped(const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", stdout);
		else
			putchar(*s);
	}
}

static void family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(json_t *v)
{
	if (json_is_integer(v))
		printf(" %lld\n", (long long)json_integer_value(v));
	else if (json_is_real(v))
		printf(" %.17g\n", json_real_value(v));
	else if (json_is_boolean(v))
		printf(" %d\n", json_is_true(v));
	else
		printf(" NaN\n");
}

static void cache_label(json_t *cache)
{
	fputs("{cache=\"", stdout);
	put_escaped(jstr(cache, "name"));
	fputs("\"", stdout);
}

static const struct {
	const char *metric, *key, *help;
} cache_gauges[] = {
	{ "slabd_cache_object_size_bytes", "object_size", "Object size the cache was created with." },
	{ "slabd_cache_slot_size_bytes", "size", "Bytes each object takes in its slab (aligned, with debug zones)." },
	{ "slabd_cache_objects_per_slab", "objects_per_slab", "Objects per slab." },
	{ "slabd_cache_pages_per_slab", "pages_per_slab", "4 KiB pages per slab." },
	{ "slabd_cache_active_objects", "active_objs", "Objects out of their slabs: in use plus cached (slabinfo active_objs)." },
	{ "slabd_cache_objects", "num_objs", "Objects in all slabs of the cache (slabinfo num_objs)." },
	{ "slabd_cache_in_use_objects", "in_use", "Objects held by the application." },
	{ "slabd_cache_cached_objects", "cached", "Objects in per-thread magazines and per-node shared arrays." },
	{ "slabd_cache_magazine_objects", "magazine_avail", "Objects in per-thread magazines." },
	{ "slabd_cache_shared_objects", "shared_avail", "Objects in per-node shared arrays." },
	{ "slabd_cache_active_slabs", "active_slabs", "Slabs with at least one object out." },
	{ "slabd_cache_slabs", "num_slabs", "Slabs of the cache." },
	{ "slabd_cache_memory_bytes", "memory_bytes", "Bytes in the cache's slabs." },
	{ "slabd_cache_refcount", "refcount", "Open references to the cache." },
	{ "slabd_cache_limit", "limit", "Tunable: per-thread magazine size." },
	{ "slabd_cache_batchcount", "batchcount", "Tunable: objects moved per refill or flush." },
	{ "slabd_cache_shared", "shared", "Tunable: per-node shared array size." },
	{ "slabd_cache_min_partial", "min_partial", "Tunable: empty slabs kept per node." },
	{ "slabd_cache_max_objects", "max_objects", "Quota of objects (0: none)." },
};

static const struct {
	const char *metric, *key, *help;
} arena_gauges[] = {
	{ "slabd_arena_size_bytes", "size", "Size of the shared arena." },
	{ "slabd_arena_resident_bytes", "resident_bytes", "Bytes of the arena the OS really holds." },
	{ "slabd_arena_meta_bytes", "meta_bytes", "Bytes of arena metadata (header, tables, page descriptors)." },
	{ "slabd_arena_generation", "generation", "Arena generation (grows when the daemon re-adopts it)." },
	{ "slabd_arena_caches", "caches", "Caches in use." },
	{ "slabd_arena_cache_slots", "cache_slots", "Size of the cache table." },
	{ "slabd_arena_clients", "clients", "Live client processes." },
	{ "slabd_arena_client_slots", "client_slots", "Size of the client table." },
};

static const struct {
	const char *metric, *key, *help;
} node_gauges[] = {
	{ "slabd_node_total_bytes", "total_bytes", "Bytes of the node's region of the arena." },
	{ "slabd_node_free_bytes", "free_bytes", "Free bytes in the node's page allocator." },
	{ "slabd_node_reserve_bytes", "reserve_bytes", "Free bytes slabd keeps faulted in for growing caches (part of free_bytes)." },
	{ "slabd_node_reserve_target_bytes", "reserve_target_bytes", "What the reserve is stocked to: slabd --reserve, raised by bursts of growth, decaying when idle." },
	{ "slabd_node_used_bytes", "used_bytes", "Bytes handed out by the node's page allocator." },
	{ "slabd_node_largest_free_bytes", "largest_free_bytes", "Largest free block of the node's page allocator." },
};

static const char *const slab_states[] = { "partial", "full", "free", "discard" };

/* Counter names to export: the union of every cache's counters, in order. */
static json_t *counter_names(json_t *caches)
{
	json_t *names = json_object(), *c, *v;
	const char *key;
	size_t i;

	json_array_foreach(caches, i, c)
		json_object_foreach(json_object_get(c, "counters"), key, v)
			json_object_set_new(names, key, json_true());
	return names;
}

static bool metric_name_ok(const char *s)
{
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		      (p != s && *p >= '0' && *p <= '9')))
			return false;
	return *s != '\0';
}

static void print_caches(json_t *caches)
{
	json_t *c, *names, *v, *n;
	const char *key;
	char metric[160];
	size_t i, k;

	family("slabd_cache_info", "gauge", "Always 1; labels carry the cache's state and flags.");
	json_array_foreach(caches, i, c) {
		json_t *flags = json_object_get(c, "flags"), *f;
		fputs("slabd_cache_info", stdout);
		cache_label(c);
		fputs(",state=\"", stdout);
		put_escaped(jstr(c, "state"));
		fputs("\",flags=\"", stdout);
		json_array_foreach(flags, k, f) {
			if (k)
				putchar(',');
			put_escaped(json_string_value(f));
		}
		fputs("\"} 1\n", stdout);
	}
	for (k = 0; k < sizeof(cache_gauges) / sizeof(cache_gauges[0]); k++) {
		family(cache_gauges[k].metric, "gauge", cache_gauges[k].help);
		json_array_foreach(caches, i, c) {
			fputs(cache_gauges[k].metric, stdout);
			cache_label(c);
			fputs("}", stdout);
			value(json_object_get(c, cache_gauges[k].key));
		}
	}

	family("slabd_cache_fastpath_hit_ratio", "gauge",
	       "(alloc_fastpath + free_fastpath) / (allocs + frees); NaN before any traffic.");
	json_array_foreach(caches, i, c) {
		double hr = hit_rate(c);
		fputs("slabd_cache_fastpath_hit_ratio", stdout);
		cache_label(c);
		if (hr < 0)
			fputs("} NaN\n", stdout);
		else
			printf("} %.6f\n", hr / 100.0);
	}

	names = counter_names(caches);
	json_object_foreach(names, key, v) {
		char help[200];
		if (!metric_name_ok(key))
			continue;
		snprintf(metric, sizeof(metric), "slabd_cache_%s_total", key);
		snprintf(help, sizeof(help), "Counter %s of the cache (SLUB statistics).", key);
		family(metric, "counter", help);
		json_array_foreach(caches, i, c) {
			json_t *cv = json_object_get(json_object_get(c, "counters"), key);
			if (!cv)
				continue;
			fputs(metric, stdout);
			cache_label(c);
			fputs("}", stdout);
			value(cv);
		}
	}
	json_decref(names);

	family("slabd_cache_node_slabs", "gauge", "Slabs of the cache on a node's lists, by list.");
	for (k = 0; k < sizeof(slab_states) / sizeof(slab_states[0]); k++)
		json_array_foreach(caches, i, c) {
			size_t j;
			json_array_foreach(json_object_get(c, "nodes"), j, n) {
				fputs("slabd_cache_node_slabs", stdout);
				cache_label(c);
				printf(",node=\"%lld\",state=\"%s\"}", jint(n, "node"), slab_states[k]);
				value(json_object_get(n, slab_states[k]));
			}
		}
	{
		static const char *const nk[][3] = {
			{ "slabd_cache_node_free_objects", "free_objects", "Free objects in the cache's slabs on a node." },
			{ "slabd_cache_node_shared_objects", "shared_avail", "Objects in the node's shared array of the cache." },
			{ "slabd_cache_node_free_limit", "free_limit", "Free objects a node keeps before giving empty slabs back." },
		};
		for (k = 0; k < sizeof(nk) / sizeof(nk[0]); k++) {
			family(nk[k][0], "gauge", nk[k][2]);
			json_array_foreach(caches, i, c) {
				size_t j;
				json_array_foreach(json_object_get(c, "nodes"), j, n) {
					fputs(nk[k][0], stdout);
					cache_label(c);
					printf(",node=\"%lld\"}", jint(n, "node"));
					value(json_object_get(n, nk[k][1]));
				}
			}
		}
	}
}

static void print_arena(json_t *arena)
{
	json_t *nodes = json_object_get(arena, "nodes"), *n;
	size_t i, k;

	for (k = 0; k < sizeof(arena_gauges) / sizeof(arena_gauges[0]); k++) {
		family(arena_gauges[k].metric, "gauge", arena_gauges[k].help);
		fputs(arena_gauges[k].metric, stdout);
		value(json_object_get(arena, arena_gauges[k].key));
	}
	for (k = 0; k < sizeof(node_gauges) / sizeof(node_gauges[0]); k++) {
		family(node_gauges[k].metric, "gauge", node_gauges[k].help);
		json_array_foreach(nodes, i, n) {
			printf("%s{node=\"%lld\",os_node=\"%lld\"}", node_gauges[k].metric, jint(n, "node"),
			       jint(n, "os_node"));
			value(json_object_get(n, node_gauges[k].key));
		}
	}
	family("slabd_node_slabs", "gauge", "Slabs of all caches on a node's lists, by list.");
	for (k = 0; k < sizeof(slab_states) / sizeof(slab_states[0]); k++)
		json_array_foreach(nodes, i, n) {
			printf("slabd_node_slabs{node=\"%lld\",state=\"%s\"}", jint(n, "node"),
			       slab_states[k]);
			value(json_object_get(json_object_get(n, "slabs"), slab_states[k]));
		}
}

int cmd_metrics(struct ctl *c, const struct cmd *cmd, int argc, char **argv)
{
	json_t *stats, *arena;
	char **pos;
	int npos, rc;

	rc = parse_opts(c, cmd, argc, argv, NULL, NULL, NULL, &pos, &npos);
	if (!rc && npos)
		rc = -usage_error(cmd, "unexpected argument '%s'", pos[0]);
	free(pos);
	if (rc)
		return rc < 0 ? EXIT_USAGE : 0;
	if ((rc = ctl_request(c, json_pack("{s:s}", "cmd", "cache.stats"), &stats)))
		return rc;
	if ((rc = ctl_request(c, json_pack("{s:s}", "cmd", "arena.stats"), &arena))) {
		json_decref(stats);
		return rc;
	}
	if (!c->json) {
		family("slabd_up", "gauge", "1 when slabd answered.");
		printf("slabd_up 1\n");
		print_caches(json_object_get(stats, "caches"));
		print_arena(arena);
	}
	json_decref(stats);
	json_decref(arena);
	return 0;
}
