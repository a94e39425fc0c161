/*
** reset.h: what luapool_release does to a state before the next caller gets it.
*/
#ifndef LUAPOOL_RESET_H
#define LUAPOOL_RESET_H

#include "sx.h"

enum { LP_RESET_CLEAN = 0, LP_RESET_RESTORED = 1, LP_RESET_TAINTED = -1, LP_RESET_BLOAT = -2 };

/* LUAPOOL_RESET_FULL's reset (reset.c). */
int lp_reset_full(const luapool_config *cfg, lp_sx *x, lua_State *L);

/*
** Makes L (a main thread whose request is over) clean for the next caller under cfg.reset.
** LP_RESET_CLEAN or LP_RESET_RESTORED: hand it out; LP_RESET_TAINTED or LP_RESET_BLOAT: close it.
** LUAPOOL_RESET_STACK empties the stack: the caller vouches for the rest.
*/
static inline int lp_reset(const luapool_config *cfg, lp_sx *x, lua_State *L) {
  if (cfg->reset == LUAPOOL_RESET_STACK) {
    lua_settop(L, 0);
    return LP_RESET_CLEAN;
  }
  return lp_reset_full(cfg, x, L);
}

#endif /* LUAPOOL_RESET_H */
