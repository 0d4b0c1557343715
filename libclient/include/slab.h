/* slab.h - libslab, the client library of slabd: fixed-size objects in shared memory,
 * shared by many processes.
 *
 * Build:  cc app.c $(pkg-config --cflags --libs slab)
 *
 * A slab_pool is one connection to slabd plus the mapped arena.  A slab_cache is this
 * process's handle on a named, shared cache of objects of one size.  Objects are plain
 * memory in the arena: inside a process a pointer works as usual; to hand an object to
 * another process, send slab_offset() and turn it back with slab_pointer() there.
 *
 * Errors: functions returning int return 0 or a negative errno value; slab_strerror()
 * turns one into text.  slab_alloc / slab_kmalloc return NULL and set errno.  The library
 * never prints and never exits.
 *
 * Threads: every handle may be used from many threads at once.  Each thread allocates
 * and frees on its own magazine (no lock, no atomic, no system call on the fast path).  A
 * cache handle must not be used concurrently with its own close or destroy.  A thread's
 * magazines go back to the shared tiers when it exits.
 *
 * Caveats
 *  - fork(): the child keeps the mapping (objects stay reachable, offsets and pointers
 *    alike) but never touches the parent's per-thread state; on its first call into the
 *    library it registers with slabd as a new client and reopens the caches the parent
 *    had open.  Handles stay valid in the child.
 *  - Dead processes: if a process dies, slabd returns the objects cached in its
 *    magazines; objects it had allocated stay allocated (another process may hold them).
 *  - Daemon restarts: the fast path never needs slabd.  Operations that do (opening
 *    caches, fresh slabs) fail with -ECONNRESET / -ECONNREFUSED while it is down.
 *  - Permissions: slabd admits only the uids/gids it is told to (its own uid and root by
 *    default); others get -EACCES at connect.
 *  - NUMA: a thread allocates from its own node's slabs first (the node of the CPU it
 *    runs on, looked up again on each slow path), then other nodes', then a fresh slab of
 *    its node; an object freed on another node goes home in batches.  For tests,
 *    SLAB_NODE=K in the environment (read at slab_pool_connect; a whole number from 0 to
 *    the node count - 1, anything else is ignored) puts every thread of the process on
 *    node K.  slabd --nodes N makes N virtual nodes on a smaller host.
 *  - Wrong frees (a pointer not from this cache, into an object's middle, outside the
 *    arena, NULL, or a repeated free caught on the fast path) return -EINVAL and change
 *    nothing; slabd counts them (invalid_free / double_free).  A double free that is not
 *    the thread's most recent free is caught later, when the object reaches its slab,
 *    and only counted; create the cache with SLAB_DEBUG to catch every one at once.
 */
#ifndef SLAB_H
#define SLAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLAB_API_VERSION 1

typedef struct slab_pool  slab_pool;    /* one connection to slabd plus the mapped arena */
typedef struct slab_cache slab_cache;   /* this process's handle on a shared cache */

/* Cache flags. */
#define SLAB_HWCACHE_ALIGN 0x01u  /* align objects to 64-byte cache lines */
#define SLAB_POISON        0x02u  /* fill freed objects with a pattern, checked on alloc */
#define SLAB_RED_ZONE      0x04u  /* guard bytes around each object, checked on free */
#define SLAB_STORE_USER    0x08u  /* record the owner pid and caller of each object */
#define SLAB_DEBUG         0x10u  /* catch every double free on the fast path */
#define SLAB_ZERO          0x20u  /* hand out zero-filled objects */

#define SLAB_NODE_LOCAL (-1)

struct slab_cache_config {
	size_t   size;          /* object size in bytes, required (1 .. 262144) */
	size_t   align;         /* 0: 8; else a power of two up to 4096 */
	unsigned flags;         /* SLAB_* flags above */
	unsigned limit;         /* per-thread magazine size; 0: chosen from size */
	unsigned batchcount;    /* objects moved per refill/flush; 0: limit/2 */
	unsigned min_partial;   /* empty slabs kept per node; 0: default */
	int      node;          /* SLAB_NODE_LOCAL (-1) or a node to place every slab on */
	size_t   max_objects;   /* quota; 0: none */
};

/* Connect to slabd and map its arena.  socket_path NULL: $SLABD_SOCKET, else
 * $XDG_RUNTIME_DIR/slabd.sock, else /tmp/slabd-<uid>.sock.
 * Errors: -ECONNREFUSED (no slabd there), -EACCES (not admitted), -EPROTO (protocol or
 * arena layout this library does not understand), -ENAMETOOLONG, -ENOMEM, -EINVAL. */
int  slab_pool_connect(const char *socket_path, slab_pool **out);

/* Close every cache handle still open (their objects go back to the shared tiers), then
 * the connection.  Objects the process still holds stay allocated. */
void slab_pool_disconnect(slab_pool *pool);

/* Create a cache and open it, or open the existing cache of that name when its geometry
 * (size, align, flags, node) is the same.
 * Errors: -EINVAL (name not 1-63 bytes of [A-Za-z0-9._-], size 0 or too large, align not
 * a power of two, bad flags, node or tunables), -EEXIST (the name exists with another
 * geometry), -EBUSY (the name is being destroyed), -ENOSPC (cache table full),
 * -ECONNRESET (slabd went away). */
int  slab_cache_create(slab_pool *pool, const char *name,
		       const struct slab_cache_config *cfg, slab_cache **out);

/* Open an existing cache.  Errors: -ENOENT (no such cache), -EBUSY (being destroyed),
 * -EINVAL (bad name), -ECONNRESET. */
int  slab_cache_open(slab_pool *pool, const char *name, slab_cache **out);

/* Flush every thread's cached objects of this cache back to the shared tiers, drop this
 * process's reference and free the handle.  If the cache was being destroyed and this was
 * the last reference, the destroy runs now.  Errors: -ECONNRESET (the handle is freed
 * anyway; slabd drops the reference when it notices). */
int  slab_cache_close(slab_cache *cache);

/* kmem_cache_destroy: flush, drop this reference, and destroy the cache once nobody has
 * it open.  Closes the handle whatever it returns.  0: destroyed, or pending until the
 * other processes close it.  -EBUSY: objects are still allocated ("cache still has N
 * objects"); the cache stays intact and can be opened again. */
int  slab_cache_destroy(slab_cache *cache);

/* Allocate one object.  NULL with errno ENOMEM (arena exhausted), EDQUOT (quota
 * max_objects reached) or ECONNRESET (fresh slabs needed and slabd is gone). */
void *slab_alloc(slab_cache *cache);

/* Free an object of this cache.  -EINVAL for a wrong free (see Caveats): nothing changes. */
int  slab_free(slab_cache *cache, void *obj);

/* Allocate n objects into objs: all n, or none and an error as slab_alloc's (negative). */
int  slab_alloc_bulk(slab_cache *cache, size_t n, void **objs);

/* Free n objects: all are checked first; if any is a wrong free (or appears twice),
 * -EINVAL and none is freed. */
int  slab_free_bulk(slab_cache *cache, size_t n, void **objs);

/* kmalloc over the built-in size classes kmalloc-8 ... kmalloc-8192.  NULL with errno
 * EINVAL for sizes above 8192, else as slab_alloc. */
void  *slab_kmalloc(slab_pool *pool, size_t size);

/* Free an object of slab_kmalloc, this process's or one another process allocated and
 * handed over; the cache is found from the object.  NULL: 0.  -EINVAL: not an object of
 * a kmalloc cache, or not the start of one (nothing changes).  The first free of a class
 * this process has not allocated from opens the class, as slab_kmalloc's first call
 * does: it asks slabd, may wait for it as slab_cache_create does, and can fail with
 * slab_cache_create's errors; the object then stays allocated and the free may be
 * retried. */
int    slab_kfree(slab_pool *pool, void *obj);

/* Usable size of an object in the arena (its cache's slot size); 0 if obj is not one. */
size_t slab_ksize(slab_pool *pool, const void *obj);

/* The same object in every process: its byte offset in the arena, and back.
 * slab_offset returns UINT64_MAX for a pointer outside the arena; slab_pointer returns
 * NULL for an offset outside it. */
uint64_t slab_offset(slab_pool *pool, const void *obj);
void    *slab_pointer(slab_pool *pool, uint64_t offset);

#if defined(__GNUC__) && !defined(SLAB_NO_INLINE)
/* Not API: the members every slab_pool begins with, read by the inline copies of
 * slab_offset and slab_pointer below.  A hand-over between processes costs two
 * conversions an object, and as calls they cost 5-14% of tests/bench/prodcons'
 * 2-process rate.  libslab keeps this prefix for the life of its soname (libslab.so.1)
 * and checks it when it is built (cache.c); the exported functions stay, with the same
 * behaviour, for other compilers and languages.  Define SLAB_NO_INLINE to always call
 * them.  GNU inline semantics: inlined where the compiler inlines, the library's symbol
 * otherwise (never a second definition, in C or C++, whatever the -std). */
struct __attribute__((__may_alias__)) slab_pool_head_ {
	unsigned char *base_;    /* the arena's mapping in this process (fixed once mapped) */
	uint64_t       size_;    /* the arena's size in bytes */
};

#ifdef __cplusplus /* C casts, and no nullptr before C++11: keep -Werror clients quiet */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wzero-as-null-pointer-constant"
#pragma GCC diagnostic ignored "-Wcast-align"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wuseless-cast"
#endif
#endif
extern __inline__ __attribute__((__gnu_inline__)) uint64_t
slab_offset(slab_pool *pool, const void *obj)
{
	const struct slab_pool_head_ *h = (const struct slab_pool_head_ *)(const void *)pool;
	uint64_t off = (uint64_t)((uintptr_t)obj - (uintptr_t)h->base_);

	return off < h->size_ ? off : UINT64_MAX;
}

extern __inline__ __attribute__((__gnu_inline__)) void *
slab_pointer(slab_pool *pool, uint64_t offset)
{
	const struct slab_pool_head_ *h = (const struct slab_pool_head_ *)(const void *)pool;

	return offset < h->size_ ? (void *)(h->base_ + offset) : (void *)0;
}
#ifdef __cplusplus
#pragma GCC diagnostic pop
#endif
#endif

/* Text for an error value (negative or positive errno). */
const char *slab_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
