/* numa_place.h - NUMA placement of the arena's node regions (libnuma).
 *
 * Node region n is bound with mbind(MPOL_PREFERRED) to real node n % host_nodes, so
 * `--nodes N` on a smaller host makes virtual nodes over the real ones.  Preferred, not
 * bound: a page fault a client takes must never fail (SIGBUS) because one node is full.
 * The binding achieved is logged and kept in nr_os_node (-1: none).  On a host without
 * NUMA support everything is node 0 and slabd says so.
 */
#ifndef SLABD_NUMA_PLACE_H
#define SLABD_NUMA_PLACE_H

struct slabd;

/* Real NUMA nodes of this host (1 when libnuma says NUMA is unavailable). */
unsigned numa_place_host_nodes(void);

/* Bind every node region to its real node; records nr_os_node and logs the outcome. */
void numa_place_arena(struct slabd *d);

#endif
