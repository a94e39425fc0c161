/*
** stats.h: luapool_stats, derived on read from the counters each module keeps.
*/
#ifndef LUAPOOL_STATS_H
#define LUAPOOL_STATS_H

#include "luapool.h"

void lp_stats_fill(luapool *p, luapool_stats *out);

#endif /* LUAPOOL_STATS_H */
