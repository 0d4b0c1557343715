// bip.cc - Boost.Interprocess peer for `prodcons`: a managed_shared_memory segment and a
// cached_node_allocator of 64-byte nodes in it, behind a tiny C interface (bip.h).
//
// cached_node_allocator: nodes come from a segregated storage shared by every process
// that opens the segment (guarded by the segment's interprocess mutex), and each
// allocator instance keeps a private cache of nodes (max_cached_nodes, default 64) to
// skip that mutex.  Each process has its own instance: the producer's cache refills from
// the shared pool, the consumer's cache overflows back into it.
#include <boost/interprocess/allocators/cached_node_allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <cstdio>
#include <new>

#include <boost/version.hpp>

#include "bip.h"

namespace bi = boost::interprocess;

namespace {
struct Obj {
	unsigned char bytes[64];
};
typedef bi::cached_node_allocator<Obj, bi::managed_shared_memory::segment_manager> Alloc;

bi::managed_shared_memory *segment;
Alloc *alloc;
}  // namespace

extern "C" int bip_create(const char *name, size_t bytes)
{
	try {
		bi::shared_memory_object::remove(name);
		segment = new bi::managed_shared_memory(bi::create_only, name, bytes);
		alloc = new Alloc(segment->get_segment_manager());
		return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "bip_create: %s\n", e.what());
		return -1;
	}
}

extern "C" int bip_open(const char *name)
{
	try {
		segment = new bi::managed_shared_memory(bi::open_only, name);
		alloc = new Alloc(segment->get_segment_manager());
		return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "bip_open: %s\n", e.what());
		return -1;
	}
}

extern "C" unsigned bip_boost_version(void)
{
	return BOOST_VERSION;
}

extern "C" unsigned bip_max_cached_nodes(void)
{
	return (unsigned)alloc->get_max_cached_nodes();
}

extern "C" void *bip_alloc(void)
{
	try {
		return &*alloc->allocate(1);
	} catch (const std::exception &) {
		return nullptr;
	}
}

extern "C" void bip_free(void *p)
{
	alloc->deallocate(static_cast<Obj *>(p), 1);
}

extern "C" uint64_t bip_offset(const void *p)
{
	return (uint64_t)segment->get_handle_from_address(p);
}

extern "C" void *bip_pointer(uint64_t off)
{
	return segment->get_address_from_handle((bi::managed_shared_memory::handle_t)off);
}

extern "C" void bip_close(void)
{
	delete alloc;   // returns the cached nodes to the shared pool
	delete segment;
	alloc = nullptr;
	segment = nullptr;
}

extern "C" void bip_remove(const char *name)
{
	bi::shared_memory_object::remove(name);
}
