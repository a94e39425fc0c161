/*
** stats.c: merging the per-thread counters on read.  Counting on the fast path writes only the
** thread's own lp_local (magazine.c: lp_local_count); the cost of a sum is paid here.
*/
#include "internal.h"

/* Under pool.local_mutex: the counters of every thread, plus those of exited threads. */
static void sum_locked(luapool *p, uint64_t sums[LP_C_COUNT]) {
  for (int c = 0; c < LP_C_COUNT; c++)
    sums[c] = lp_counter_read(&p->retired.c[c]);
  for (lp_local *l = p->locals; l != NULL; l = l->next)
    for (int c = 0; c < LP_C_COUNT; c++)
      sums[c] += lp_counter_read(&l->counters.c[c]);
}

static unsigned in_use_of(const uint64_t sums[LP_C_COUNT]) {
  uint64_t out = sums[LP_C_RELEASES] + sums[LP_C_DISCARDS];
  /* counters are read one after another while threads work: never report a negative count */
  return sums[LP_C_ACQUIRES] > out ? (unsigned)(sums[LP_C_ACQUIRES] - out) : 0;
}

/* States held by callers: acquired and neither released nor discarded yet. */
unsigned lp_stats_in_use(luapool *p) {
  uint64_t sums[LP_C_COUNT];
  pthread_mutex_lock(&p->local_mutex);
  sum_locked(p, sums);
  pthread_mutex_unlock(&p->local_mutex);
  return in_use_of(sums);
}

void lp_stats_fill(luapool *p, luapool_stats *out) {
  uint64_t sums[LP_C_COUNT];
  pthread_mutex_lock(&p->local_mutex);
  sum_locked(p, sums);
  pthread_mutex_unlock(&p->local_mutex);
  out->created = atomic_load_explicit(&p->created, memory_order_relaxed);
  out->closed = atomic_load_explicit(&p->closed_count, memory_order_relaxed);
  out->acquires = sums[LP_C_ACQUIRES];
  out->releases = sums[LP_C_RELEASES];
  out->magazine_hits = sums[LP_C_MAGAZINE_HITS];
  out->global_hits = sums[LP_C_GLOBAL_HITS];
  out->misses = sums[LP_C_MISSES];
  out->waits = sums[LP_C_WAITS];
  out->timeouts = sums[LP_C_TIMEOUTS];
  out->trimmed = atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_TRIMMED], memory_order_relaxed);
  out->discarded = atomic_load_explicit(&p->discarded, memory_order_relaxed);
  out->tainted = atomic_load_explicit(&p->tainted, memory_order_relaxed);
  out->expired_idle =
      atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_IDLE_TIMEOUT], memory_order_relaxed);
  out->expired_uses =
      atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_MAX_USES], memory_order_relaxed);
  out->expired_lifetime =
      atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_LIFETIME], memory_order_relaxed);
  out->bloated = atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_BLOAT], memory_order_relaxed);
  out->shutdown_closed =
      atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_SHUTDOWN], memory_order_relaxed);
  out->recycled =
      atomic_load_explicit(&p->closed_by[LUAPOOL_CLOSE_RECYCLED], memory_order_relaxed);
  out->collections = atomic_load_explicit(&p->collections, memory_order_relaxed);
  out->reclaimed = atomic_load_explicit(&p->reclaimed, memory_order_relaxed);
  out->passes = atomic_load_explicit(&p->passes, memory_order_relaxed);
  out->pass_ns_total = atomic_load_explicit(&p->pass_ns_total, memory_order_relaxed);
  out->pass_ns_max = atomic_load_explicit(&p->pass_ns_max, memory_order_relaxed);
  out->pass_ns_last = atomic_load_explicit(&p->pass_ns_last, memory_order_relaxed);
  out->mem_errors = atomic_load_explicit(&p->mem_errors, memory_order_relaxed);
  out->budget_exceeded = atomic_load_explicit(&p->budget_exceeded, memory_order_relaxed);
  out->restored = atomic_load_explicit(&p->restored, memory_order_relaxed);
  out->cache_hits = sums[LP_C_CACHE_HITS];
  out->cache_misses = sums[LP_C_CACHE_MISSES];
  uint64_t live = out->created > out->closed ? out->created - out->closed : 0;
  out->live = (unsigned)live;
  out->in_use = in_use_of(sums);
  if (out->in_use > out->live)
    out->in_use = out->live;
  out->idle = out->live - out->in_use;
}
