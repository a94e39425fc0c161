/*
** stats.h: luapool_stats and the wait histogram, derived on read from the counters each module
** keeps.
*/
#ifndef LUAPOOL_STATS_H
#define LUAPOOL_STATS_H

#include "luapool.h"

void lp_stats_fill(luapool *p, luapool_stats *out);
/* The stats and the histogram from one reading of the counters, so that they agree with each
   other (hist->total == st->acquires + st->timeouts, however busy the pool). */
void lp_stats_read(luapool *p, luapool_stats *st, luapool_wait_histogram *hist);

#endif /* LUAPOOL_STATS_H */
