/* bip.h - the C face of bip.cc (Boost.Interprocess cached_node_allocator, 64-byte nodes). */
#ifndef SLABD_BENCH_BIP_H
#define SLABD_BENCH_BIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int      bip_create(const char *name, size_t bytes);  /* 0 or -1 (printed) */
int      bip_open(const char *name);
unsigned bip_max_cached_nodes(void);
unsigned bip_boost_version(void);                    /* BOOST_VERSION */
void    *bip_alloc(void);                              /* NULL when exhausted */
void     bip_free(void *p);
uint64_t bip_offset(const void *p);
void    *bip_pointer(uint64_t off);
void     bip_close(void);
void     bip_remove(const char *name);

#ifdef __cplusplus
}
#endif

#endif
