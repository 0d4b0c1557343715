/* debug.c - debug cache checks (see debug.h). */
#include "debug.h"

#include <string.h>
#include <time.h>

const char *sm_corruption_name(unsigned kind)
{
	switch (kind) {
	case CORRUPT_POISON:      return "poison overwritten (written after free)";
	case CORRUPT_REDZONE:     return "red zone overwritten (written past the object)";
	case CORRUPT_NOT_CACHED:  return "cached object not marked cached";
	case CORRUPT_DOUBLE_FREE: return "double free refused";
	default:                  return "unknown corruption";
	}
}

void sm_debug_report(struct slab_cache_desc *c, uint64_t off, unsigned kind, uint64_t found,
		     int32_t pid)
{
	uint64_t n = SM_ADD(&c->c_corruptions, 1);
	struct slab_corruption *r = &c->c_corrupt[n % SLAB_CORRUPT_LOG];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	SM_STORE(&r->sc_offset, off);
	SM_STORE(&r->sc_found, found);
	SM_STORE(&r->sc_time_ns, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
	SM_STORE(&r->sc_pid, pid);
	SM_STORE(&r->sc_kind, kind);
}

void sm_debug_init_free(const struct sm_arena *a, const struct slab_cache_desc *c,
			uint64_t off)
{
	uint8_t *obj = a->base + off;

	if (c->c_flags & SM_POISON) {
		memset(obj, SLAB_POISON_FREE, c->c_object_size - 1);
		obj[c->c_object_size - 1] = SLAB_POISON_END;
	}
	if (c->c_flags & SM_RED_ZONE)
		memcpy(obj + c->c_rz_off, &(uint64_t){ SLAB_RZ_INACTIVE }, 8);
	if (c->c_flags & SM_STORE_USER)
		memset(obj + c->c_track_off, 0, sizeof(struct slab_track));
}

/* The first 8 bytes of the poison that differ, as found (for the report). */
static int poison_ok(const uint8_t *obj, uint32_t size, uint64_t *found)
{
	for (uint32_t i = 0; i < size; i++) {
		uint8_t want = i + 1 == size ? SLAB_POISON_END : SLAB_POISON_FREE;
		if (obj[i] != want) {
			uint32_t at = i & ~7u;
			*found = 0;
			memcpy(found, obj + at, size - at < 8 ? size - at : 8);
			return 0;
		}
	}
	return 1;
}

static uint8_t *bufctl_entry(const struct sm_arena *a, const struct slab_cache_desc *c,
			     uint32_t head, uint32_t idx)
{
	return sm_slab_addr(a, head) + c->c_bufctl_off + (size_t)idx * c->c_bufctl_width;
}

/* Swap the bufctl entry of an out-of-slab object from `from` to `to` atomically (other
 * processes may race on the same object in a double free).  1 if it was `from`. */
static int bufctl_swap(const struct sm_arena *a, const struct slab_cache_desc *c,
		       uint32_t head, uint32_t idx, unsigned from, unsigned to, unsigned *seen)
{
	uint8_t *e = bufctl_entry(a, c, head, idx);

	if (c->c_bufctl_width == 1) {
		uint8_t f = (uint8_t)from, t = (uint8_t)to;
		int ok = __atomic_compare_exchange_n(e, &f, t, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
		*seen = f >= BUFCTL8_CACHED ? f | 0xff00u : f;
		return ok;
	}
	uint16_t f = (uint16_t)from, t = (uint16_t)to;
	int ok = __atomic_compare_exchange_n((uint16_t *)e, &f, t, 0, __ATOMIC_ACQ_REL,
					     __ATOMIC_ACQUIRE);
	*seen = f;
	return ok;
}

void sm_debug_alloc(struct sm_arena *a, struct slab_cache_desc *c, uint64_t off, int32_t pid,
		    uint64_t caller)
{
	uint8_t *obj = a->base + off;
	uint64_t found;
	uint32_t head, idx;
	unsigned seen;

	if ((c->c_flags & SM_DEBUG) && sm_obj_lookup(a, c, off, &head, &idx) == OBJ_OK &&
	    !bufctl_swap(a, c, head, idx, BUFCTL_CACHED, BUFCTL_ACTIVE, &seen))
		sm_debug_report(c, off, CORRUPT_NOT_CACHED, seen, pid);
	if ((c->c_flags & SM_POISON) && !poison_ok(obj, c->c_object_size, &found))
		sm_debug_report(c, off, CORRUPT_POISON, found, pid);
	if (c->c_flags & SM_RED_ZONE) {
		memcpy(&found, obj + c->c_rz_off, 8);
		if (found != SLAB_RZ_INACTIVE)
			sm_debug_report(c, off, CORRUPT_REDZONE, found, pid);
		memcpy(obj + c->c_rz_off, &(uint64_t){ SLAB_RZ_ACTIVE }, 8);
	}
	if (c->c_flags & SM_STORE_USER) {
		struct slab_track *t = sm_track(a, c, off);
		t->t_caller = caller;
		t->t_pid = pid;
	}
}

int sm_debug_free(struct sm_arena *a, struct slab_cache_desc *c, uint64_t off, uint32_t head,
		  uint32_t idx, int32_t pid)
{
	uint8_t *obj = a->base + off;
	uint64_t found;
	unsigned seen;

	if (c->c_flags & SM_DEBUG) {
		if (!bufctl_swap(a, c, head, idx, BUFCTL_ACTIVE, BUFCTL_CACHED, &seen)) {
			sm_debug_report(c, off, CORRUPT_DOUBLE_FREE, seen, pid);
			return -EINVAL;
		}
	}
	if (c->c_flags & SM_RED_ZONE) {
		memcpy(&found, obj + c->c_rz_off, 8);
		if (found != SLAB_RZ_ACTIVE)
			sm_debug_report(c, off, CORRUPT_REDZONE, found, pid);
		memcpy(obj + c->c_rz_off, &(uint64_t){ SLAB_RZ_INACTIVE }, 8);
	}
	if (c->c_flags & SM_POISON) {
		memset(obj, SLAB_POISON_FREE, c->c_object_size - 1);
		obj[c->c_object_size - 1] = SLAB_POISON_END;
	}
	if (c->c_flags & SM_STORE_USER)
		sm_track(a, c, off)->t_pid = pid;
	return 0;
}
