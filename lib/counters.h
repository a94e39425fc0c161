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
  LP_C_ACQUIRES, /* derived, never counted: the sum of the three sources below (lp_counters_sum
                    and lp_counters_acquires), which every acquire counts one of */
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
  /* The acquire wait histogram (luapool_wait_histogram_get): slow acquires whose time went past
     bucket 0's bound, by bucket (1 to LP_WAIT_BUCKETS - 1), and the time of every slow acquire.
     Bucket 0 has no counter: it is derived on read (lp_counters_wait_bucket). */
  LP_C_WAIT_BUCKET1,
  LP_C_WAIT_BUCKET_LAST = LP_C_WAIT_BUCKET1 + 18, /* LP_WAIT_BUCKETS - 2 */
  LP_C_WAIT_NS,
  LP_C_COUNT
};

/*
** The acquire wait histogram's buckets.  Bucket i (i < LP_WAIT_BUCKETS - 1) holds the acquires
** whose time in luapool_acquire was at most LP_WAIT_BUCKET0_NS << i nanoseconds (and more than
** the bound before it); the last bucket holds the rest.  A magazine hit is not timed (the fast
** path reads no clock) and counts as bucket 0, as does a slow acquire within bucket 0's bound:
** neither is counted anywhere, bucket 0 being what the other buckets leave of the acquires.
*/
#define LP_WAIT_BUCKETS 20
#define LP_WAIT_BUCKET0_NS 4000U

_Static_assert(LP_C_WAIT_BUCKET_LAST - LP_C_WAIT_BUCKET1 == LP_WAIT_BUCKETS - 2,
               "one counter per bucket but bucket 0");

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

/* The upper bound of bucket i in nanoseconds; UINT64_MAX for the last. */
static inline uint64_t lp_counters_wait_le_ns(int i) {
  return i < LP_WAIT_BUCKETS - 1 ? (uint64_t)LP_WAIT_BUCKET0_NS << i : UINT64_MAX;
}

/*
** The counter of a slow acquire that took ns nanoseconds, or -1 for bucket 0 (not counted).  For
** ns above bucket 0's bound, q = (ns - 1) / LP_WAIT_BUCKET0_NS is at least 1, and ns lies in
** bucket i exactly when 2^(i-1) <= q < 2^i, i.e. i is q's bit length.
*/
static inline int lp_counters_wait_bucket(uint64_t ns) {
  if (ns <= LP_WAIT_BUCKET0_NS)
    return -1;
  int bits = 64 - __builtin_clzll((ns - 1) / LP_WAIT_BUCKET0_NS);
  return LP_C_WAIT_BUCKET1 - 1 + (bits < LP_WAIT_BUCKETS - 1 ? bits : LP_WAIT_BUCKETS - 1);
}

/* Any thread; acquire: a count seen implies what its thread did before counting it. */
static inline uint64_t lp_counters_read(lp_counters *k, int i) {
  return atomic_load_explicit(&k->c[i], memory_order_acquire);
}

/* The sources an acquire is counted under, one each: LP_C_ACQUIRES is their sum. */
static const int lp_counters_sources[] = {LP_C_MAGAZINE_HITS, LP_C_GLOBAL_HITS, LP_C_MISSES};
enum { LP_COUNTERS_SOURCES = sizeof lp_counters_sources / sizeof lp_counters_sources[0] };

/* Any thread: the acquires k counted. */
static inline uint64_t lp_counters_acquires(lp_counters *k) {
  uint64_t n = 0;
  for (int i = 0; i < LP_COUNTERS_SOURCES; i++)
    n += lp_counters_read(k, lp_counters_sources[i]);
  return n;
}

/* Fills in the derived count of sums, a total of counter arrays. */
static inline void lp_counters_derive(uint64_t sums[LP_C_COUNT]) {
  sums[LP_C_ACQUIRES] = 0;
  for (int i = 0; i < LP_COUNTERS_SOURCES; i++)
    sums[LP_C_ACQUIRES] += sums[lp_counters_sources[i]];
}

#endif /* LUAPOOL_COUNTERS_H */
