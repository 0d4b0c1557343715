/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tu_arena(struct sm_arena *a, uint64_t size, unsigned nr_nodes)
{
	struct sm_arena_params p = { .size = size, .nr_nodes = nr_nodes };
	char err[256];
	int rc = sm_arena_create(&p, a, err, sizeof(err));

	if (rc)
		fail_msg("sm_arena_create(%llu, %u): %s", (unsigned long long)size, nr_nodes, err);
}

void tu_report(void *arg, const char *fmt, ...)
{
	struct tu_report *r = arg;
	va_list ap;
	size_t len = strlen(r->all);

	va_start(ap, fmt);
	vsnprintf(r->last, sizeof(r->last), fmt, ap);
	va_end(ap);
	r->count++;
	if (len + strlen(r->last) + 2 < sizeof(r->all)) {
		strcat(r->all, r->last);
		strcat(r->all, "\n");
	}
	if (getenv("TU_VERBOSE"))
		fprintf(stderr, "report: %s\n", r->last);
}

int tu_report_has(const struct tu_report *r, const char *needle)
{
	return strstr(r->all, needle) != NULL;
}

unsigned long tu_scaled(unsigned long n)
{
	const char *s = getenv("SLAB_TEST_SCALE");
	unsigned long d = s ? strtoul(s, NULL, 10) : 1;

	return d > 1 ? (n / d ? n / d : 1) : n;
}
