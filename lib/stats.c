/*
** stats.c: luapool_stats, derived on read.  Every event is counted once, where it happens: the
** request path's per thread (magazine.c), creations and closes by reason (state.c), the pass's
** figures (watchdog.c).  Totals (closed, live, idle, in_use) are sums and differences of those.
*/
#include "stats.h"
#include "internal.h"
#include "magazine.h"
#include "state.h"
#include "watchdog.h"

/* The struct's size is part of the ABI: later counters come out of reserved. */
_Static_assert(sizeof(void *) != 8 || sizeof(luapool_stats) == 328, "luapool_stats is 328 bytes");

void lp_stats_fill(luapool *p, luapool_stats *out) {
  uint64_t sums[LP_C_COUNT], by[LUAPOOL_CLOSE_RECYCLED + 1];
  lp_mag_sum(p, sums);
  out->created = lp_state_counts(p, by);
  out->closed = 0;
  for (int r = 0; r <= LUAPOOL_CLOSE_RECYCLED; r++)
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
  lp_watchdog_stats(p, out);
  uint64_t live = out->created > out->closed ? out->created - out->closed : 0;
  out->live = (unsigned)live;
  out->in_use = lp_mag_in_use_of(sums);
  if (out->in_use > out->live)
    out->in_use = out->live;
  out->idle = out->live - out->in_use;
}
