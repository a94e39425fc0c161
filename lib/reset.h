/*
** reset.h: what luapool_release does to a state before the next caller gets it.
*/
#ifndef LUAPOOL_RESET_H
#define LUAPOOL_RESET_H

#include "sx.h"

enum { LP_RESET_CLEAN = 0, LP_RESET_RESTORED = 1, LP_RESET_TAINTED = -1, LP_RESET_BLOAT = -2 };

/* LUAPOOL_RESET_FULL's reset (reset.c); stopped: the request's budget ran out or it was
   interrupted. */
int lp_reset_full(const luapool_config *cfg, lp_sx *x, lua_State *L, bool stopped);

/* Empties L's stack, running what it left pending under a bound (reset.c): LP_RESET_CLEAN or
   LP_RESET_TAINTED. */
int lp_reset_stack(lp_sx *x, lua_State *L, bool stopped);

/*
** Before lua_close: what lua_close would run of a request's code is defused (the pending __close
** handlers of the main thread, the finalizers scripts set, the types' metatables).  Raises
** nothing.
*/
void lp_reset_defuse(lp_sx *x, lua_State *L);

/*
** Makes L (a main thread whose request is over) clean for the next caller under cfg.reset.
** LP_RESET_CLEAN or LP_RESET_RESTORED: hand it out; LP_RESET_TAINTED or LP_RESET_BLOAT: close it.
** LUAPOOL_RESET_STACK empties the stack: the caller vouches for the rest.  Either way, the
** pending __close handlers run under a bound (reset.c).
*/
static inline int lp_reset(const luapool_config *cfg, lp_sx *x, lua_State *L, bool stopped) {
  if (cfg->reset == LUAPOOL_RESET_STACK) {
    if (lua_gettop(L) == 0 && lua_status(L) == LUA_OK)
      return LP_RESET_CLEAN;
    return lp_reset_stack(x, L, stopped);
  }
  return lp_reset_full(cfg, x, L, stopped);
}

#endif /* LUAPOOL_RESET_H */
