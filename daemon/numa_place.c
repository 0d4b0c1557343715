/* numa_place.c - see numa_place.h. */
#include "numa_place.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <string.h>

#include "slabd.h"

unsigned numa_place_host_nodes(void)
{
	int max;

	if (numa_available() < 0)
		return 1;
	max = numa_max_node();
	return max < 0 ? 1 : (unsigned)max + 1;
}

void numa_place_arena(struct slabd *d)
{
	struct sm_arena *a = &d->arena;
	unsigned host = numa_place_host_nodes();

	if (numa_available() < 0) {
		slabd_log(d, LOG_WARN, "NUMA is not available on this host: one node, no binding");
		return;
	}
	for (unsigned n = 0; n < a->hdr->ah_nr_nodes; n++) {
		struct slab_node_region *r = sm_region(a, n);
		unsigned real = n % host;
		unsigned long mask = 1ul << real;
		void *start = a->base + ((uint64_t)r->nr_first_page << SLAB_PAGE_SHIFT);
		size_t len = (size_t)r->nr_nr_pages << SLAB_PAGE_SHIFT;

		/* MPOL_PREFERRED: place on the node, fall back rather than fail a page
		 * fault (a shared mapping faulted by a client must never SIGBUS). */
		if (mbind(start, len, MPOL_PREFERRED, &mask, sizeof(mask) * 8, 0) == 0) {
			r->nr_os_node = (int32_t)real;
			slabd_log(d, LOG_INFO, "node %u: %zu MiB bound to NUMA node %u (preferred)",
				  n, len >> 20, real);
		} else {
			r->nr_os_node = -1;
			slabd_log(d, LOG_WARN, "node %u: mbind to NUMA node %u failed: %s", n, real,
				  strerror(errno));
		}
	}
}
