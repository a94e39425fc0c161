/*
** reset.c: what luapool_release does to a state before the next caller gets it.
**
** LUAPOOL_RESET_STACK empties the stack.  LUAPOOL_RESET_FULL also closes pending to-be-closed
** variables and shrinks the stack (lua_closethread / lua_resetthread), puts the globals table
** back to the snapshot taken after on_create, and restarts the collector in incremental mode
** with Lua's default parameters.  The complete reset (library tables, metatables, registry...)
** grows here.
*/
#include <lauxlib.h>

#include "config.h"
#include "internal.h"

/* Registry key of the globals snapshot: a table copy of _G taken after on_create. */
static const char lp_globals_key = 0;

/* Lua 5.4's collector defaults (lgc.h: LUAI_GCPAUSE, LUAI_GCMUL, LUAI_GCSTEPSIZE). */
#define LP_GC_PAUSE 200
#define LP_GC_STEPMUL 100
#define LP_GC_STEPSIZE 13

/* Protected, after on_create: snapshot the globals table. */
int lp_reset_prepare(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3) != 0) {
    lua_pushvalue(L, -2); /* key, value, key */
    lua_insert(L, -2);    /* key, key, value */
    lua_rawset(L, -4);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lp_globals_key);
  lua_pop(L, 1);
  return 0;
}

/* Protected: make _G hold exactly the snapshot's entries, with no metatable. */
static int reset_globals(lua_State *L) {
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); /* 1: _G */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lp_globals_key);  /* 2: snapshot */
  /* Remove what the snapshot lacks; clearing an existing field during next() is allowed. */
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 2) == LUA_TNIL) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, 1);
    }
    lua_pop(L, 1);
  }
  /* Put back every snapshot entry (changed or removed ones); this traverses the snapshot. */
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, 1);
  }
  lua_pushnil(L);
  lua_setmetatable(L, 1);
  return 0;
}

/* Closes pending to-be-closed variables, unwinds and shrinks the stack. */
static void reset_thread(lua_State *L) {
#if defined(HAVE_LUA_CLOSETHREAD)
  (void)lua_closethread(L, L);
#else
  (void)lua_resetthread(L);
#endif
  lua_settop(L, 0); /* an error from a __close handler is left on the stack */
}

/* 0 when L is clean again; nonzero when it could not be restored (tainted: close it). */
int lp_reset(lua_State *L, unsigned mode) {
  if (mode == LUAPOOL_RESET_STACK) {
    lua_settop(L, 0);
    return 0;
  }
  reset_thread(L);
  lua_pushcfunction(L, reset_globals);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_settop(L, 0);
    return -1;
  }
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE);
  return 0;
}
