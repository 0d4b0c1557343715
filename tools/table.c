/* table.c - aligned text tables (like slabinfo's), human units, and sorting caches. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "slabctl.h"

struct table {
	int          ncols;
	const char **headers;
	char        *align;
	char       **cells;   /* row-major, rows * ncols */
	size_t       ncells, cap;
};

struct table *table_new(int ncols, const char *const *headers, const char *align)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	t->ncols = ncols;
	t->headers = (const char **)headers;
	t->align = strdup(align);
	if (!t->align)
		abort();
	return t;
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->align);
	free(t);
}

static void add(struct table *t, char *s)
{
	if (!s)
		abort();
	if (t->ncells == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->cells = realloc(t->cells, t->cap * sizeof(*t->cells));
		if (!t->cells)
			abort();
	}
	t->cells[t->ncells++] = s;
}

void table_cell(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	add(t, s);
}

void table_cell_int(struct table *t, json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		table_cell(t, "%lld", (long long)json_integer_value(v));
	else
		table_cell(t, "-");
}

size_t table_rows(const struct table *t)
{
	return t->ncells / (size_t)t->ncols;
}

void table_print(struct table *t, FILE *out, bool no_header)
{
	size_t rows = table_rows(t), *w = calloc((size_t)t->ncols, sizeof(size_t));
	int last;

	if (!w)
		abort();
	for (int k = 0; k < t->ncols; k++) {
		w[k] = no_header ? 0 : strlen(t->headers[k]);
		for (size_t r = 0; r < rows; r++) {
			size_t l = strlen(t->cells[r * (size_t)t->ncols + (size_t)k]);
			if (l > w[k])
				w[k] = l;
		}
	}
	for (size_t r = no_header ? 1 : 0; r <= rows; r++) {
		last = t->ncols - 1;
		for (int k = 0; k < t->ncols; k++) {
			const char *s = r ? t->cells[(r - 1) * (size_t)t->ncols + (size_t)k]
					  : t->headers[k];
			int pad = (int)w[k];
			if (t->align[k] == 'r')
				fprintf(out, "%*s", pad, s);
			else if (k == last)
				fputs(s, out); /* no trailing blanks */
			else
				fprintf(out, "%-*s", pad, s);
			fputs(k == last ? "\n" : "  ", out);
		}
	}
	free(w);
}

const char *fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
		return buf;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (v < 99.95 && (uint64_t)(v * 10 + 0.5) % 10)
		snprintf(buf, len, "%.1f%c", v, units[u]);
	else
		snprintf(buf, len, "%.0f%c", v, units[u]);
	return buf;
}

const char *fmt_count(double v, char *buf, size_t len)
{
	static const char units[] = "kMGT";
	int u = -1;

	if (v < 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	if (v < 10000) {
		snprintf(buf, len, "%.0f", v);
		return buf;
	}
	while (v >= 1000 && u < 3) {
		v /= 1000;
		u++;
	}
	snprintf(buf, len, v < 99.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
	return buf;
}

long long jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

long long jcounter(json_t *o, const char *key)
{
	return jint(json_object_get(o, "counters"), key);
}

const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

double hit_rate(json_t *cache)
{
	double fast = (double)(jcounter(cache, "alloc_fastpath") + jcounter(cache, "free_fastpath"));
	double all = fast + (double)(jcounter(cache, "alloc_slowpath") +
				     jcounter(cache, "free_slowpath"));

	return all > 0 ? 100.0 * fast / all : -1;
}

static const char *const sort_names[] = {
	[SORT_NAME] = "name", [SORT_SIZE] = "size", [SORT_MEMORY] = "memory",
	[SORT_USE] = "use",   [SORT_RATE] = "rate",
};

int sort_key_parse(const char *s, bool allow_rate, enum sort_key *out)
{
	for (int k = 0; k <= SORT_RATE; k++) {
		if (k == SORT_RATE && !allow_rate)
			break;
		if (!strcmp(s, sort_names[k])) {
			*out = (enum sort_key)k;
			return 0;
		}
	}
	return -1;
}

const char *sort_key_name(enum sort_key k)
{
	return sort_names[k];
}

struct sort_item {
	json_t *cache;
	double  key;
};

static int cmp_items(const void *pa, const void *pb)
{
	const struct sort_item *a = pa, *b = pb;
	const char *na = jstr(a->cache, "name"), *nb = jstr(b->cache, "name");

	if (a->key != b->key)
		return a->key > b->key ? -1 : 1; /* largest first */
	return strcmp(na ? na : "", nb ? nb : "");
}

void sort_caches(json_t *caches, enum sort_key k, double (*rate_of)(json_t *cache, void *arg),
		 void *arg)
{
	size_t n = json_array_size(caches);
	struct sort_item *it = calloc(n ? n : 1, sizeof(*it));

	if (!it)
		abort();
	for (size_t i = 0; i < n; i++) {
		json_t *c = json_array_get(caches, i);
		it[i].cache = json_incref(c);
		switch (k) {
		case SORT_NAME:
			it[i].key = 0;
			break;
		case SORT_SIZE:
			it[i].key = (double)jint(c, "object_size");
			break;
		case SORT_MEMORY:
			it[i].key = (double)jint(c, "memory_bytes");
			break;
		case SORT_USE:
			it[i].key = (double)jint(c, "in_use");
			break;
		case SORT_RATE:
			it[i].key = rate_of ? rate_of(c, arg) : 0;
			break;
		}
	}
	qsort(it, n, sizeof(*it), cmp_items);
	json_array_clear(caches);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(caches, it[i].cache);
	free(it);
}
