/*
** counters.h: event counters, kept per thread and merged on read (jemalloc's tcache stats do the
** same), so that counting on the fast path adds no contended line.  One count per event: the
** totals luapool_stats shows (closed, live, idle, in_use) are derived when it is read.
**
** An lp_counters array has one writer, its owner thread, which adds with a load and a release
** store (no read-modify-write); a shared array (a pool's, for threads with no array of their own
** and for exited threads' sums) is added to with fetch_add.  Release, so that whoever reads a
** count with acquire also sees what the counting thread did before it: luapool_shutdown's drain
** relies on that (doc/design.md, "Shutdown and destroy").
*/
#ifndef LUAPOOL_COUNTERS_H
#define LUAPOOL_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

enum {
  LP_C_ACQUIRES,
  LP_C_RELEASES,
  LP_C_DISCARDS,
  LP_C_MAGAZINE_HITS,
  LP_C_GLOBAL_HITS,
  LP_C_MISSES,
  LP_C_WAITS,
  LP_C_TIMEOUTS,
  LP_C_CACHE_HITS,
  LP_C_CACHE_MISSES,
  LP_C_MEM_ERRORS,      /* requests in which an allocation hit mem_limit */
  LP_C_BUDGET_EXCEEDED, /* requests whose budget ran out */
  LP_C_RESTORED,        /* releases whose reset found and undid a change */
  LP_C_INTERRUPTED,     /* requests luapool_interrupt stopped */
  LP_C_COUNT
};

typedef struct lp_counters {
  _Atomic uint64_t c[LP_C_COUNT];
} lp_counters;

static inline void lp_counters_init(lp_counters *k) {
  for (int i = 0; i < LP_C_COUNT; i++)
    atomic_init(&k->c[i], 0);
}

/* Owner only: the one writer of k. */
static inline void lp_counters_add_owner(lp_counters *k, int i, uint64_t n) {
  _Atomic uint64_t *c = &k->c[i];
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_release);
}

/* Any thread. */
static inline void lp_counters_add_shared(lp_counters *k, int i, uint64_t n) {
  atomic_fetch_add_explicit(&k->c[i], n, memory_order_release);
}

/* Any thread; acquire: a count seen implies what its thread did before counting it. */
static inline uint64_t lp_counters_read(lp_counters *k, int i) {
  return atomic_load_explicit(&k->c[i], memory_order_acquire);
}

#endif /* LUAPOOL_COUNTERS_H */
