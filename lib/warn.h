/*
** warn.h: luapool's warn function (Lua's warn): lauxlib's semantics, with the on/off switch and
** the pending message kept per state, so that the reset can turn warnings off again.  A request
** logs at most LP_WARN_LINES warnings, then one line saying the rest were dropped: a script in a
** loop must not flood the host's log (each warning costs it one budgeted instruction).
*/
#ifndef LUAPOOL_WARN_H
#define LUAPOOL_WARN_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#include "luapool.h"

#define LP_WARN_LINES 16

typedef struct lp_warn {
  const luapool_config *cfg; /* its log function, if any */
  bool on, cont;
  unsigned lines; /* warnings logged in this request (LP_WARN_LINES + 1: the drop noted) */
  size_t len;
  char buf[256];
} lp_warn;

/* Makes w the warn function of L (any time after lua_newstate). */
void lp_warn_open(lua_State *L, lp_warn *w, const luapool_config *cfg);
/* Off, as in a new state, with nothing pending and no warning logged. */
void lp_warn_reset(lp_warn *w);

#endif /* LUAPOOL_WARN_H */
