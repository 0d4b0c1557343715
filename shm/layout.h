/* layout.h - the shared arena, byte for byte.
 *
 * This header is the single description of the memory that slabd and every libslab client
 * map.  Processes map the arena at different addresses, so NOTHING stored in the arena is a
 * pointer: every reference is a byte offset from the arena base (uint64_t) or a page index
 * (uint32_t, SLAB_NIL for "none").
 *
 * SLAB_LAYOUT_VERSION changes whenever any struct, constant or rule in this file changes.
 * slabd and libslab refuse an arena whose magic, version, page size or size they do not
 * expect (arena.c:sm_arena_check).
 *
 * Glossary
 *   arena     the whole mapping: header, cache table, client table, page descriptors, nodes.
 *   page      4 KiB unit; page i covers bytes [i << 12, (i + 1) << 12) of the arena.
 *   page desc struct slab_page, one per page of the whole arena (the kernel's struct page).
 *   node      a NUMA node (real or virtual); owns one contiguous region of pages and a
 *             buddy allocator over it (struct slab_node_region).
 *   block     2^order pages handed out by a node's buddy allocator, aligned (relative to the
 *             region start) to its own size.
 *   slab      a block cut into objects of one cache: objects from the block start, the
 *             bufctl array (one index per object) right after the last object.
 *   cache     struct slab_cache_desc: a named pool of objects of one size (kmem_cache).
 *   cache node struct slab_cache_node: one cache's lists on one node (kmem_cache_node):
 *             partial/full/free slab lists, the shared array, the discard queue.
 *   magazine  struct slab_mag: one thread's cache of object offsets for one cache
 *             (SLAB's array_cache), living in its client's area.
 *   client    struct slab_client: one attached process; owns an area (page blocks) holding
 *             its magazines.
 *
 * Region order (each region starts on a page boundary):
 *   [0]                         struct slab_arena_hdr (page 0)
 *   [ah_caches_off]             ah_nr_caches cache descriptors, ah_cache_stride bytes each
 *   [ah_clients_off]            ah_nr_clients struct slab_client
 *   [ah_pages_off]              ah_nr_pages struct slab_page
 *   [ah_meta_pages << 12, ...)  the node regions, in node order, to the end of the arena
 *
 * Global invariants
 *   I1  ah_meta_pages <= nr_first_page(node 0); node regions are disjoint, ascending and
 *       together cover [ah_meta_pages, ah_nr_pages).  ah_size == ah_nr_pages << 12.
 *   I2  Every page of the arena is in exactly one of: metadata (PG_META), a free buddy block
 *       (head PG_FREE, tails PG_TAIL), an allocated block (head PG_SLAB_* / PG_AREA /
 *       PG_DEPOT / PG_BLOCK, tails PG_TAIL).  A tail's pg_next is its head's page index.
 *   I3  Slab pages (head and tails) carry pg_tag == SLAB_TAG(cache id + 1, node of their
 *       region); every other page has pg_tag == 0.  So virt_to_head_page(obj) is
 *       pages[off >> 12], then pg_next if tail, and one 16-bit compare tells the fast free
 *       both "a slab of this cache" and "on this thread's node".
 *   I4  A slab's pages lie in one node region; the slab belongs to that node's lists.
 *   I5  For a slab (head page h of cache c):
 *         pg_inuse + (length of the bufctl chain from pg_free) == c_num
 *         bufctl[i] in {ACTIVE, CACHED} <=> object i is out of the slab (allocated or cached)
 *         pg_state says which list of its cache node holds it:
 *           PG_SLAB_FULL    <=> pg_inuse == c_num
 *           PG_SLAB_PARTIAL <=> 0 < pg_inuse < c_num
 *           PG_SLAB_FREE, PG_SLAB_DISCARD => pg_inuse == 0
 *   I6  For a cache node n: n_nr_X == length of list X; n_free_objects == sum over slabs on
 *       its partial and free lists of (c_num - pg_inuse).  (Discard-queue slabs are counted
 *       in n_nr_discard and not in n_free_objects.)
 *   I7  Every object offset in a magazine, a shared array or an alien buffer refers to an
 *       object whose bufctl entry is BUFCTL_ACTIVE (CACHED with SLAB_DEBUG).  Objects are
 *       never in two places, except inside one slow-path step, which records itself
 *       (m_intent, n_xfer_*) so that repair and slabd's reclaim can finish or undo it.
 *       For a cache: active_objs == cached + in_use, where cached counts magazines, shared
 *       arrays and alien buffers.
 *
 * Who writes what (see lock.h for the lock order)
 *   - Header, node regions, buddy free lists and page states of non-slab blocks: the page
 *     allocator, under nr_lock (in production only slabd calls it).
 *   - Cache descriptors' identity, geometry and tunables: slabd only (single writer).
 *   - A cache node's lists, counters, shared array, and the bufctl and pg_inuse/pg_free of
 *     its slabs: whoever holds that node's n_lock.
 *   - A magazine: only its owning thread (and its process on close / thread exit, when no
 *     thread uses it), and slabd when the client is dead.  Whoever repairs a node lock
 *     left by a dead holder clears the entries of that holder's magazine named by
 *     n_xfer_mag.
 *   - A cache's c_stat, c_corruptions and its ring, c_fold_begin/end: any process, with
 *     atomic adds (slow paths and debug checks only).
 *   - A slab_track (SLAB_STORE_USER): the process that allocates, frees or caches the
 *     object.
 */
#ifndef SLABD_SHM_LAYOUT_H
#define SLABD_SHM_LAYOUT_H

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SLAB_ARENA_MAGIC     0x414e455241424c53ULL  /* "SLBARENA" little-endian */
#define SLAB_LAYOUT_VERSION  16u                    /* bump on ANY change to this file */

#define SLAB_PAGE_SHIFT      12
#define SLAB_PAGE_SIZE       (1u << SLAB_PAGE_SHIFT)
#define SLAB_MAX_ORDER       10u        /* largest block: 2^10 pages = 4 MiB */
#define SLAB_MAX_NODES       16u
#define SLAB_MAX_CACHES      1024u      /* hard cap; an arena may hold fewer (ah_nr_caches) */
#define SLAB_MAX_CLIENTS     1024u
#define SLAB_NAME_MAX        64u        /* 1..63 bytes of [A-Za-z0-9._-] plus NUL */
#define SLAB_NIL             0xffffffffu
#define SLAB_SHARED_MAX      1024u      /* entries of a per-node shared array */
#define SLAB_MAG_MAX         1024u      /* largest magazine limit */
#define SLAB_MAG_AHEAD       64u        /* slab_alloc prefetches the object this many pops
					 * ahead (struct slab_mag, m_slots) */
#define SLAB_MAX_OBJECT_SIZE (256u << 10) /* keeps waste <= 1/16 within SLAB_MAX_ORDER */
#define SLAB_MAX_ALIGN       SLAB_PAGE_SIZE
#define SLAB_MIN_ALIGN       8u

/* bufctl entries (SLAB's kmem_bufctl_t): for a free object, the index of the next free
 * object or END; for an object out of its slab, ACTIVE; with SLAB_DEBUG an object sitting
 * in a magazine/shared array is CACHED instead of ACTIVE, so every double free is caught
 * on the fast path.  A cache whose slabs hold <= SLAB_BUFCTL8_MAX objects uses 1-byte
 * entries, else 2-byte ones. */
#define BUFCTL_END       0xffffu  /* as stored in pg_free, whatever the width */
#define BUFCTL8_END      0xffu
#define BUFCTL8_ACTIVE   0xfeu
#define BUFCTL8_CACHED   0xfdu
#define BUFCTL16_END     0xffffu
#define BUFCTL16_ACTIVE  0xfffeu
#define BUFCTL16_CACHED  0xfffdu
#define SLAB_BUFCTL8_MAX 0xfcu    /* objects per slab with 1-byte entries */
#define SLAB_MAX_OBJS    0xfffcu
/* Inside a repair only (validate.c:sm_node_repair, under the node lock): an object of the
 * shared array already kept.  No index reaches it (above); sm_bufctl_set stores its low
 * byte in 1-byte entries; a repair that finds it reads it as free. */
#define BUFCTL_SEEN      0xfffcu

typedef pthread_mutex_t slab_mutex_t;   /* always PTHREAD_PROCESS_SHARED + ROBUST (lock.h) */

/* ---- page descriptors ------------------------------------------------------------ */

enum slab_page_state {
	PG_META = 1,       /* header/tables/descriptors: never allocated */
	PG_FREE,           /* head of a free buddy block of order pg_order */
	PG_TAIL,           /* non-head page of a block; pg_next = head page index */
	PG_BLOCK,          /* head of an allocated block not (yet) a slab */
	PG_AREA,           /* head of a block in a client's area (magazines) */
	PG_SLAB_PARTIAL,   /* slab heads, by the list that holds them (I5) */
	PG_SLAB_FULL,
	PG_SLAB_FREE,
	PG_SLAB_DISCARD,   /* empty, on the discard queue for the page allocator */
	PG_DEPOT,          /* head of a cache node's external shared array (n_depot) */
	PG_RESERVE,        /* head of a block of the node's reserve (nr_reserve) */
};

/* One per 4 KiB page (the kernel's struct page); 16 bytes keeps the descriptor array at
 * 0.4% of the arena.  pg_inuse and pg_free are meaningful on slab heads only.  */
struct slab_page {
	uint32_t pg_next;   /* list link (page index) or SLAB_NIL; on a tail: head index */
	uint32_t pg_prev;   /* list link (page index) or SLAB_NIL */
	uint16_t pg_tag;    /* slab pages: SLAB_TAG(cache id + 1, node); otherwise 0 (I3) */
	uint8_t  pg_order;  /* heads: block order */
	uint8_t  pg_state;  /* enum slab_page_state */
	uint16_t pg_inuse;  /* slab head: objects with bufctl ACTIVE */
	uint16_t pg_free;   /* slab head: first free object index, or BUFCTL_END (0xffff) */
};
static_assert(sizeof(struct slab_page) == 16, "page descriptor must stay 16 bytes");

/* A slab page's tag: its cache id + 1 in the low 11 bits, its node above them. */
#define SLAB_TAG_CID_BITS 11u
#define SLAB_TAG(cid1, node) ((uint16_t)((cid1) | ((unsigned)(node) << SLAB_TAG_CID_BITS)))
#define SLAB_TAG_CID1(tag)   ((unsigned)(tag) & ((1u << SLAB_TAG_CID_BITS) - 1))
#define SLAB_TAG_NODE(tag)   ((unsigned)(tag) >> SLAB_TAG_CID_BITS)
#define SLAB_TAG_NONE        0xffffu   /* matches no page */
static_assert(SLAB_MAX_CACHES < (1u << SLAB_TAG_CID_BITS), "cache id + 1 fits the tag");
static_assert(SLAB_TAG(SLAB_MAX_CACHES, SLAB_MAX_NODES - 1) < SLAB_TAG_NONE, "tags fit 16 bits");

/* A doubly linked list of head pages threaded through pg_next/pg_prev. */
struct slab_list {
	uint32_t l_head;    /* first page index or SLAB_NIL */
	uint32_t l_count;   /* number of entries */
};

/* ---- nodes and their page allocators ----------------------------------------------- */

/* One node's region, its buddy allocator and its reserve.
 * Invariants: nr_free_pages == sum over orders k of (nr_free[k].l_count << k);
 * each free block's head is PG_FREE with pg_order k and is on nr_free[k];
 * nr_reserve_pages == sum over k of (nr_reserve[k].l_count << k), and each block on
 * nr_reserve[k] is a PG_RESERVE head of order k whose tails point at it (buddy.h). */
#define SLAB_RESERVE_ORDER 5u  /* reserve blocks are stocked 2^5 pages (128 KiB) at a time */
struct slab_node_region {
	slab_mutex_t     nr_lock;                     /* guards everything below */
	uint32_t         nr_first_page;               /* region = [first, first + nr_pages) */
	uint32_t         nr_nr_pages;
	uint32_t         nr_free_pages;
	int32_t          nr_os_node;                  /* real NUMA node it is bound to, -1: none */
	struct slab_list nr_free[SLAB_MAX_ORDER + 1]; /* free blocks by order */
	uint64_t         nr_alloc_blocks;             /* counters, for stats */
	uint64_t         nr_free_blocks;
	uint64_t         nr_punched_pages;            /* pages given back to the OS */
	struct slab_list nr_reserve[SLAB_RESERVE_ORDER + 1]; /* reserve blocks by order */
	uint32_t         nr_reserve_pages;
	uint32_t         nr_pad;
};

/* ---- caches ---------------------------------------------------------------------- */

/* c_flags: the same values as the SLAB_* flags of the public slab.h. */
#define SM_HWCACHE_ALIGN 0x01u
#define SM_POISON        0x02u
#define SM_RED_ZONE      0x04u
#define SM_STORE_USER    0x08u
#define SM_DEBUG         0x10u
#define SM_ZERO          0x20u
#define SM_FLAGS_ALL     0x3fu
#define SM_FLAGS_DEBUG   (SM_POISON | SM_RED_ZONE | SM_STORE_USER | SM_DEBUG)

enum slab_cache_state {
	CACHE_UNUSED = 0,  /* slot free; name empty */
	CACHE_LIVE,        /* open-able */
	CACHE_DYING,       /* destroy pending: no new opens */
};

/* Statistics counters: names follow SLUB's /sys/kernel/slab/<cache>/ files. */
enum slab_stat {
	STAT_ALLOC_FASTPATH,
	STAT_ALLOC_SLOWPATH,
	STAT_FREE_FASTPATH,   /* in a magazine: not counted but derived (sm_mag_free_fastpath) */
	STAT_FREE_SLOWPATH,
	STAT_ALLOC_REFILL,    /* magazine refills (each moves up to batchcount objects) */
	STAT_FREE_FLUSH,      /* cache_flusharray calls */
	STAT_ALLOC_SLAB,      /* slabs added to the cache */
	STAT_FREE_SLAB,       /* slabs returned to the page allocator */
	STAT_ALIEN_FREE,      /* objects freed on a node other than their slab's */
	STAT_INVALID_FREE,    /* frees refused by cache_from_obj */
	STAT_DOUBLE_FREE,     /* frees of an object already free */
	SLAB_STAT_NR
};

/* kmem_cache_node: one cache's state on one node, all guarded by n_lock.
 * Invariants: I5, I6 above; 0 <= n_shared_avail <= n_shared_limit <= the storage's
 * capacity: SLAB_SHARED_MAX entries inline (n_shared[], n_depot == SLAB_NIL), or a
 * PG_DEPOT block of 2^n_depot_order pages on this node holding (4096 << order) / 8
 * entries (n_depot its head page).  Only slabd allocates, switches and frees that
 * block (cache.c:depot_fit): the shared array grows with the node's free_limit, so a
 * cache that needed N fresh objects keeps up to N of them as plain offsets instead of
 * back in their slabs (Bonwick's depot; SLAB's shared array, sized by use). */
struct slab_cache_node {
	slab_mutex_t     n_lock;         /* list_lock */
	struct slab_list n_partial;      /* 0 < inuse < num */
	struct slab_list n_full;         /* inuse == num */
	struct slab_list n_free;         /* inuse == 0, kept */
	struct slab_list n_discard;      /* inuse == 0, waiting for the page allocator */
	uint64_t         n_free_objects; /* free objects in partial + free slabs */
	uint64_t         n_free_limit;   /* keep empty slabs while free_objects <= this */
	uint32_t         n_shared_avail; /* entries in n_shared[] */
	uint32_t         n_shared_limit; /* capacity in use (tunable "shared") */
	/* The transfer under way while n_lock is held (0: none): which magazine (arena
	 * offset), which way (SLAB_INTENT_*), which of its entries.  A locker that finds
	 * the lock EOWNERDEAD uses it to make the magazine agree with the lists
	 * (validate.c:sm_node_repair). */
	uint64_t         n_xfer_mag;
	uint32_t         n_xfer_kind;
	uint32_t         n_xfer_base;    /* first entry index (0-based) */
	uint32_t         n_xfer_count;
	uint32_t         n_spin;         /* lockers' spin budget for n_lock (lock.c; racy hint) */
	uint32_t         n_depot;        /* external shared array block (page), or SLAB_NIL */
	uint32_t         n_depot_order;  /* its order */
	uint64_t         n_taker;        /* arena offset of the magazine that last refilled
					  * from this node (a racy hint: magazine.c,
					  * touch_for_handover); 0: none yet */
	uint64_t         n_shared[SLAB_SHARED_MAX]; /* object offsets (SLAB's shared array),
						     * while n_depot is SLAB_NIL */
};

/* A corruption found by a debug cache (SLAB_POISON, SLAB_RED_ZONE, SLAB_DEBUG), written by
 * whichever process found it into its cache's ring of the last SLAB_CORRUPT_LOG. */
enum slab_corrupt_kind {
	CORRUPT_POISON = 1,   /* alloc: a free object was written to (use after free) */
	CORRUPT_REDZONE,      /* free: the red zone after the object was overwritten */
	CORRUPT_NOT_CACHED,   /* alloc (SLAB_DEBUG): a cached object's bufctl was not CACHED */
	CORRUPT_DOUBLE_FREE,  /* free (SLAB_DEBUG): the object was not allocated */
};
struct slab_corruption {
	uint64_t sc_offset;   /* object offset */
	uint64_t sc_found;    /* the first 8 bytes found where the pattern should be */
	uint64_t sc_time_ns;  /* CLOCK_REALTIME */
	int32_t  sc_pid;      /* process that found it */
	uint32_t sc_kind;     /* enum slab_corrupt_kind */
};
#define SLAB_CORRUPT_LOG 8u

/* SLAB_STORE_USER: who holds an object out of its slab, kept after the object (and its
 * red zone).  Stamped by the process that allocates it, frees it, or refills it into a
 * magazine, so an object out of its slab always names its holder's pid. */
struct slab_track {
	int32_t  t_pid;
	uint32_t t_pad;
	uint64_t t_caller;    /* return address in the allocating process (for humans) */
};

/* kmem_cache.  Geometry and tunables are written by slabd only, before the cache turns
 * CACHE_LIVE or under its single-threaded control; clients read them.
 * Invariants: c_size >= c_object_size, c_size % c_align == 0;
 *   c_num * c_size + c_num * c_bufctl_width <= (PAGE_SIZE << c_order);
 *   waste = (PAGE_SIZE << c_order) - c_num * (c_size + c_bufctl_width) <= slab bytes / 16;
 *   c_reciprocal == ceil(2^32 / c_size)  (obj index = (delta * c_reciprocal) >> 32). */
struct slab_cache_desc {
	char     c_name[SLAB_NAME_MAX];
	uint32_t c_state;          /* enum slab_cache_state */
	uint32_t c_id;             /* index in the cache table; its pages' tag carries c_id + 1 */
	uint64_t c_serial;         /* bumped each time the slot is created anew */
	uint32_t c_object_size;    /* requested size */
	uint32_t c_size;           /* slot size: object + padding (and debug zones) */
	uint32_t c_align;
	uint32_t c_flags;          /* SLAB_* flags of slab.h */
	uint32_t c_order;          /* slab = 2^c_order pages */
	uint32_t c_num;            /* objects per slab */
	uint32_t c_reciprocal;
	uint32_t c_bufctl_off;     /* byte offset of bufctl[] from the slab start */
	uint32_t c_bufctl_width;   /* 1 or 2 */
	uint32_t c_limit;          /* magazine limit (tunable) */
	uint32_t c_batchcount;     /* objects per refill/flush (tunable) */
	uint32_t c_shared;         /* shared array size (tunable), <= SLAB_SHARED_MAX */
	uint32_t c_min_partial;    /* empty slabs always kept per node (tunable) */
	int32_t  c_node;           /* -1: local node; else every slab on this node */
	uint32_t c_refcount;       /* open handles, all processes */
	uint32_t c_pad;
	uint64_t c_max_objects;    /* quota on slab objects (num_objs), 0: none */
	uint64_t c_stat[SLAB_STAT_NR]; /* slow-path counts and folded magazine counts (atomic) */
	uint32_t c_rz_off;         /* debug caches: red zone offset in the slot */
	uint32_t c_track_off;      /* debug caches: struct slab_track offset in the slot */
	uint64_t c_corruptions;    /* corruptions found (atomic); the last ones in the ring */
	uint64_t c_fold_begin;     /* magazine counters being folded into c_stat: bumped */
	uint64_t c_fold_end;       /*   before and after each fold (magazine.c:sm_mag_fold) */
	struct slab_corruption c_corrupt[SLAB_CORRUPT_LOG];
	struct slab_cache_node c_nodes[]; /* ah_nr_nodes entries */
};

/* ---- clients and their magazines --------------------------------------------------- */

enum slab_client_state {
	CLIENT_UNUSED = 0,
	CLIENT_LIVE,
	CLIENT_DEAD,        /* reclaim in progress */
};

/* One attached process.  Written by slabd (identity, area chain) and by the client
 * (its magazines, inside its area).  Padded so clients never share a cache line. */
struct slab_client {
	uint32_t cl_state;       /* enum slab_client_state */
	int32_t  cl_pid;
	uint32_t cl_uid;
	uint32_t cl_gid;
	uint64_t cl_serial;      /* bumped each time the slot is reused */
	uint64_t cl_since_ns;    /* CLOCK_REALTIME at admission */
	uint32_t cl_area;        /* first area block (page index) or SLAB_NIL */
	uint32_t cl_area_pages;  /* pages in the area */
	uint8_t  cl_pad[24];
};
static_assert(sizeof(struct slab_client) == 64, "client slot is one cache line");

/* The head of each block of a client's area.  Magazines are carved from the rest of the
 * block by the client itself: ab_used bytes from the block start are taken. */
struct slab_area_block {
	uint32_t ab_magic;       /* SLAB_AREA_MAGIC */
	uint32_t ab_client;      /* owning client slot */
	uint32_t ab_next;        /* next block (page index) or SLAB_NIL */
	uint32_t ab_used;        /* bytes carved, from the block start, header included */
	uint32_t ab_size;        /* block bytes */
	uint32_t ab_pad[11];
};
#define SLAB_AREA_MAGIC 0x41524541u /* "AREA" */

enum slab_mag_state {
	MAG_UNUSED = 0,
	MAG_LIVE,              /* owned by a thread */
	MAG_IDLE,              /* owned by the client, no thread (reusable) */
};

/* A magazine's slow-path step in progress (m_intent), so that slabd can finish or undo
 * it when the client dies between any two instructions (client.c:sm_client_reclaim):
 *   REFILL n: slots [avail + 1, avail + n] were zeroed before the step; a non-zero one
 *             holds an object taken out of the shared tiers for this magazine.
 *   FLUSH n:  the oldest n entries are going back; each is zeroed (under the node lock)
 *             as it leaves, so a non-zero entry is still the magazine's. */
#define SLAB_INTENT_NONE   0u
#define SLAB_INTENT_REFILL 1u
#define SLAB_INTENT_FLUSH  2u

/* SLAB's array_cache: one thread's objects of one cache.  Only the owning thread writes it
 * (see the "who writes" rules above).  Invariants: m_avail <= m_capacity, m_limit <=
 * m_capacity, and m_avail <= m_limit except between a resize that made it smaller and the
 * next free, which flushes down to it;
 * m_slots[0 .. SLAB_MAG_AHEAD - 1] all hold the magazine's own offset from the arena base
 * (so base + m_slots[k] is the magazine itself): the last of them is the sentinel under
 * the entries, which no object offset equals, so the freshest-double-free check needs no
 * test for an empty magazine, and the ones below it are what slab_alloc's prefetch of
 * the entry SLAB_MAG_AHEAD pops ahead reads when the magazine holds fewer, so it needs
 * no test either (it prefetches the magazine's own line, which its thread holds).
 * m_slots[SLAB_MAG_AHEAD .. SLAB_MAG_AHEAD + m_avail - 1] are object offsets of cache
 * m_cache, oldest first (I7): sm_mag_entries(m) is &m_slots[SLAB_MAG_AHEAD]. */
struct slab_mag {
	union {
		struct {
			uint32_t m_avail;  /* objects held */
			uint32_t m_intent; /* slow-path step in progress: SLAB_INTENT_* | n << 8 */
		};
		uint64_t m_avail_intent;   /* both in one store: a step ends atomically */
	};
	uint32_t m_limit;        /* flush when a free finds avail == limit */
	uint32_t m_batchcount;   /* objects per refill / flush */
	uint64_t m_node_first;   /* the owner thread's node region: freeing an object whose */
	uint64_t m_node_count;   /*   slab lies outside these pages is an alien free (64-bit:
				  *   the fast free compares them with a page index as is) */
	uint32_t m_capacity;     /* entries after the sentinel */
	uint32_t m_state;        /* enum slab_mag_state */
	uint16_t m_cache;        /* cache id */
	uint16_t m_node;         /* alien buffers: the node they return to; else SLAB_NIL16 */
	uint32_t m_tag;          /* SLAB_TAG(m_cache + 1, the owner thread's node), the pg_tag
				  * of the slabs whose objects the fast free may push here;
				  * SLAB_TAG_NONE until the node is known */
	/* Magazine resizing (Bonwick's, driven by lock contention and by runs of transfers
	 * one way; magazine.c): the limit and batchcount in use are the cache's shifted left
	 * by m_shift, within m_capacity.  m_cont and m_calm count this magazine's slow-path
	 * transfers since the last decision that met pressure (the node lock held by
	 * someone else, or the same direction as m_last), and all of them. */
	uint8_t  m_shift;
	uint8_t  m_last;         /* the last transfer: SLAB_INTENT_REFILL / _FLUSH, or 0 */
	uint16_t m_cont;
	uint32_t m_calm;
	uint64_t m_cache_serial; /* the cache's c_serial when this magazine was bound */
	/* The fast free counts nothing (one store fewer a free: a consumer thread freeing
	 * objects another CPU wrote went from 63 to 83 M objects/s without the fast paths'
	 * counters).  Its count is derived instead: every change of m_avail is a fast push
	 * (+1), a fast pop (-1, counted in m_stat[STAT_ALLOC_FASTPATH]) or a slow path's,
	 * and the slow paths add theirs to m_moved, so
	 *     free_fastpath = m_avail - m_moved + m_stat[STAT_ALLOC_FASTPATH]
	 * (sm_mag_free_fastpath); a fold adds it to the cache's counter and sets m_moved to
	 * m_avail.  Written by whoever runs the magazine's slow paths (its owner, a thread
	 * flushing all, slabd reclaiming a dead client), just before the count a step
	 * publishes; a client dying between those two stores leaves the count off by that
	 * step's objects (a refill's or flush's batch, a drain's whole magazine). */
	int64_t  m_moved;
	uint64_t m_stat[SLAB_STAT_NR]; /* this thread's counts, summed by stats; the
					* STAT_FREE_FASTPATH entry stays 0 (m_moved) */
	uint64_t m_slots[];      /* SLAB_MAG_AHEAD self offsets (the last: the sentinel),
				  * then the object offsets */
};
#define SLAB_NIL16 0xffffu

/* ---- the header ---------------------------------------------------------------- */

struct slab_arena_hdr {
	uint64_t ah_magic;          /* SLAB_ARENA_MAGIC */
	uint32_t ah_version;        /* SLAB_LAYOUT_VERSION */
	uint32_t ah_page_size;      /* SLAB_PAGE_SIZE */
	uint64_t ah_size;           /* arena bytes */
	uint64_t ah_generation;     /* bumped by each daemon that adopts the arena */
	uint32_t ah_nr_nodes;
	uint32_t ah_nr_caches;      /* cache table capacity */
	uint32_t ah_nr_clients;     /* client table capacity */
	uint32_t ah_cache_stride;   /* bytes per cache descriptor (depends on ah_nr_nodes) */
	uint64_t ah_caches_off;
	uint64_t ah_clients_off;
	uint64_t ah_pages_off;
	uint32_t ah_nr_pages;       /* descriptors: one per page of the whole arena */
	uint32_t ah_meta_pages;     /* pages [0, ah_meta_pages) are metadata */
	uint64_t ah_created_ns;
	struct slab_node_region ah_nodes[SLAB_MAX_NODES];
};
static_assert(sizeof(struct slab_arena_hdr) <= SLAB_PAGE_SIZE, "header fits page 0");
static_assert(offsetof(struct slab_arena_hdr, ah_magic) == 0, "magic first");
static_assert(sizeof(pthread_mutex_t) == 40, "layout assumes the x86-64 glibc mutex");
static_assert(offsetof(struct slab_mag, m_slots) % 8 == 0, "slots aligned");

#endif
