/*
** stats.c: luapool_stats, derived on read.  Every event is counted once, where it happens: the
** request path's per thread (magazine.c), creations and closes by reason (state.c), the pass's
** figures (watchdog.c).  Totals (closed, live, idle, in_use) are sums and differences of those.
** The wait histogram comes from the same per-thread counters; the heap figures from the slots
** (slot.h), each written by its state's holder and summed here without a lock.
*/
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "magazine.h"
#include "state.h"
#include "stats.h"
#include "watchdog.h"

_Static_assert(LUAPOOL_WAIT_BUCKETS == LP_WAIT_BUCKETS, "the public and the counted buckets");
_Static_assert(sizeof(luapool_stats) == 328, "luapool_stats has a fixed size (reserved space)");
_Static_assert(sizeof(luapool_wait_histogram) == (2 * (size_t)LUAPOOL_WAIT_BUCKETS + 2) * 8,
               "luapool_wait_histogram has no padding");

static void fill_from(luapool *p, const uint64_t sums[LP_C_COUNT], luapool_stats *out) {
  uint64_t by[LP_CLOSE_REASONS];
  out->created = lp_state_counts(p, by);
  out->closed = 0;
  for (int r = 0; r < LP_CLOSE_REASONS; r++)
    out->closed += by[r];
  out->acquires = sums[LP_C_ACQUIRES];
  out->releases = sums[LP_C_RELEASES];
  out->magazine_hits = sums[LP_C_MAGAZINE_HITS];
  out->global_hits = sums[LP_C_GLOBAL_HITS];
  out->misses = sums[LP_C_MISSES];
  out->waits = sums[LP_C_WAITS];
  out->timeouts = sums[LP_C_TIMEOUTS];
  out->discarded = sums[LP_C_DISCARDS];
  out->mem_errors = sums[LP_C_MEM_ERRORS];
  out->budget_exceeded = sums[LP_C_BUDGET_EXCEEDED];
  out->restored = sums[LP_C_RESTORED];
  out->interrupted = sums[LP_C_INTERRUPTED];
  out->async_notified = lp_wait_notified(&p->wait); /* counted under the wait mutex (wait.c) */
  out->cache_hits = sums[LP_C_CACHE_HITS];
  out->cache_misses = sums[LP_C_CACHE_MISSES];
  out->trimmed = by[LUAPOOL_CLOSE_TRIMMED];
  out->tainted = by[LUAPOOL_CLOSE_TAINTED];
  out->expired_idle = by[LUAPOOL_CLOSE_IDLE_TIMEOUT];
  out->expired_uses = by[LUAPOOL_CLOSE_MAX_USES];
  out->expired_lifetime = by[LUAPOOL_CLOSE_LIFETIME];
  out->bloated = by[LUAPOOL_CLOSE_BLOAT];
  out->shutdown_closed = by[LUAPOOL_CLOSE_SHUTDOWN];
  out->recycled = by[LUAPOOL_CLOSE_RECYCLED];
  out->reload_closed = by[LUAPOOL_CLOSE_RELOADED];
  out->reloads = lp_state_reloads(p);
  out->generation = lp_pool_generation(p);
  lp_watchdog_stats(p, out);
  uint64_t live = out->created > out->closed ? out->created - out->closed : 0;
  out->live = (unsigned)live;
  out->in_use = lp_mag_in_use_of(sums);
  if (out->in_use > out->live)
    out->in_use = out->live;
  out->idle = out->live - out->in_use;
  out->heap_bytes = lp_slot_heap_sum_concurrent(&p->arena);
  out->heap_max = lp_slot_heap_max_concurrent(&p->arena);
}

/*
** Bucket 0 is what the other buckets leave of the total (counters.h).  The counters are read one
** after another while threads work, so an acquire in flight may be in the total and not yet in
** its bucket, or the other way round: bucket 0 is then off by the acquires in flight, and never
** reported below 0.
*/
static void histogram_from(const uint64_t sums[LP_C_COUNT], luapool_wait_histogram *out) {
  out->total = sums[LP_C_ACQUIRES] + sums[LP_C_TIMEOUTS];
  out->sum_ns = sums[LP_C_WAIT_NS];
  uint64_t counted = 0;
  for (int i = 1; i < LUAPOOL_WAIT_BUCKETS; i++) {
    out->count[i] = sums[LP_C_WAIT_BUCKET1 + i - 1];
    counted += out->count[i];
  }
  out->count[0] = out->total > counted ? out->total - counted : 0;
  for (int i = 0; i < LUAPOOL_WAIT_BUCKETS; i++)
    out->le_ns[i] = lp_counters_wait_le_ns(i);
}

void lp_stats_fill(luapool *p, luapool_stats *out) {
  uint64_t sums[LP_C_COUNT];
  lp_mag_sum(p, sums);
  fill_from(p, sums, out);
}

void lp_stats_read(luapool *p, luapool_stats *st, luapool_wait_histogram *hist) {
  uint64_t sums[LP_C_COUNT];
  lp_mag_sum(p, sums);
  fill_from(p, sums, st);
  histogram_from(sums, hist);
}

int luapool_wait_histogram_get(luapool *p, luapool_wait_histogram *out) {
  if (p == NULL || out == NULL) {
    lp_log(p != NULL ? &p->cfg : NULL, LUAPOOL_LOG_ERROR,
           "luapool_wait_histogram_get: NULL %s (refused)", p == NULL ? "pool" : "out");
    return LUAPOOL_EINVAL;
  }
  uint64_t sums[LP_C_COUNT];
  lp_mag_sum(p, sums);
  memset(out, 0, sizeof *out);
  histogram_from(sums, out);
  return LUAPOOL_OK;
}
