/*
** module.c: modules loaded once per state.
**
** on_create calls luapool_module (a C module's luaopen_ function) or luapool_module_source (a
** pure-Lua module's text); either puts the loader in package.preload (the registry's _PRELOAD)
** and requires the module at once, through the state's own require: under the sandbox that is
** the sandbox's require, and the freeze then keeps the module among the pristine ones, which
** every request's require returns as a read-only proxy at no cost.  Everything the module's
** Lua values can reach (its tables, its functions' upvalues, the registry) is part of what the
** snapshot records after on_create, so the reset puts back whatever a request changed there.
**
** What it keeps out of Lua's sight (C statics, the bytes of its userdata: lua-cjson's encoder
** and decoder settings live in a userdata upvalue) no snapshot can see.  For that the host
** passes a reset function: every full reset calls it, with the module as its argument, after
** the snapshot's restore.  An error raised there closes the state: the next request never gets
** a module in an unknown state.
*/
#include <lauxlib.h>

#include "base.h"
#include "lptable.h"
#include "module.h"
#include "sx.h"

/* The state L belongs to, if L is a pooled state inside on_create; else NULL. */
static lp_sx *creating(lua_State *L) {
  lp_sx *x = L != NULL ? lp_sx_check(L) : NULL;
  return x != NULL && x->modules.creating ? x : NULL;
}

/*
** Protected.  Stack: name, loader, reset (a C function or nil).  Puts the loader in _PRELOAD,
** requires the module (the state's require, or as luaL_requiref with a global when the state
** has no require) and, with a reset function, appends reset and the module to LP_T_MODRESET.
*/
static int load_module(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  if (lua_getfield(L, -1, "require") == LUA_TFUNCTION) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
  } else {
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushliteral(L, ":preload:");
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
    }
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name); /* the global: with no require, the one way a script gets it */
  }
  if (!lua_isnil(L, 3)) {
    lp_lptable_get(L, LP_T_MODRESET);
    lua_Integer n = (lua_Integer)luaL_len(L, -1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, n + 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, n + 2);
  }
  return 0;
}

/* The loader is on top of L's stack. */
static int load_with(lp_sx *x, lua_State *L, const char *name, lua_CFunction reset) {
  int top = lua_gettop(L) - 1;
  lua_pushcfunction(L, load_module);
  lua_pushstring(L, name);
  lua_pushvalue(L, top + 1);
  if (reset != NULL)
    lua_pushcfunction(L, reset);
  else
    lua_pushnil(L);
  int status = lua_pcall(L, 3, 0, 0);
  if (status != LUA_OK) {
    lua_replace(L, top + 1); /* the message, where the loader was */
    lua_settop(L, top + 1);
    return status == LUA_ERRMEM ? LUAPOOL_ENOMEM : LUAPOOL_EINIT;
  }
  lua_settop(L, top);
  if (reset != NULL)
    x->modules.resets++;
  return LUAPOOL_OK;
}

int luapool_module(lua_State *L, const char *name, lua_CFunction open, lua_CFunction reset) {
  lp_sx *x = creating(L);
  if (x == NULL || name == NULL || open == NULL)
    return LUAPOOL_EINVAL;
  if (!lua_checkstack(L, 8))
    return LUAPOOL_ENOMEM;
  lua_pushcfunction(L, open);
  return load_with(x, L, name, reset);
}

int luapool_module_source(lua_State *L, const char *name, const char *src, size_t len) {
  lp_sx *x = creating(L);
  if (x == NULL || name == NULL || src == NULL)
    return LUAPOOL_EINVAL;
  if (!lua_checkstack(L, 8))
    return LUAPOOL_ENOMEM;
  lua_pushfstring(L, "=%s", name);
  int status = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
  lua_remove(L, -2);
  if (status != LUA_OK)
    return status == LUA_ERRMEM ? LUAPOOL_ENOMEM : LUAPOOL_EINIT; /* the message is on top */
  return load_with(x, L, name, NULL);
}

/* Protected: calls each reset function with its module. */
static int run_resets(lua_State *L) {
  lp_lptable_get(L, LP_T_MODRESET);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i < n; i += 2) {
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -2, i + 1);
    lua_call(L, 1, 0);
  }
  return 0;
}

bool lp_module_reset_slow(lp_modules *m, lua_State *L) {
  (void)m;
  lua_pushcfunction(L, run_resets);
  bool ok = lp_cb_pcall(L, 0, 0, "module reset") == LUA_OK; /* the host's code: no luapool
                                                               call that would block in it */
  lua_settop(L, 0);
  return ok;
}
