/*
** lptable.c: each state's luapool table (lptable.h).
*/
#include "lptable.h"

#include <stdbool.h>

/* The registry key of the luapool table: this variable's address. */
static const char lp_key = 0;

/* Whether slot i's owner makes its table itself (lptable.h): an empty one here would be garbage
   before the state is handed out. */
static bool made_by_owner(int i) {
  switch (i) {
  case LP_T_SNAP:
  case LP_T_FSNAP:
  case LP_T_TSNAP:
  case LP_T_CHECK: /* lp_snapshot_record, at their sizes */
  case LP_T_CACHE: /* lp_chunk_open, at the cache's size */
  case LP_T_FROZEN:
  case LP_T_PROXIES: /* the sandbox (FROZEN at its size); nil in a state without it */
    return true;
  default:
    return false;
  }
}

void lp_lptable_create(lua_State *L) {
  lua_createtable(L, LP_T_COUNT, 0);
  for (int i = 1; i <= LP_T_COUNT; i++) {
    if (made_by_owner(i))
      continue;
    lua_newtable(L);
    lua_rawseti(L, -2, i);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lp_key);
}

void lp_lptable_push(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lp_key);
}

int lp_lptable_get(lua_State *L, int i) {
  lp_lptable_push(L);
  int t = lua_rawgeti(L, -1, i);
  lua_replace(L, -2); /* a copy and a pop: cheaper than lua_remove's rotation */
  return t;
}

void lp_lptable_set(lua_State *L, int i) {
  lp_lptable_push(L);
  lua_insert(L, -2);
  lua_rawseti(L, -2, i);
  lua_pop(L, 1);
}

static int sample_fn(lua_State *L) {
  (void)L;
  return 0;
}

void lp_lptable_push_type_samples(lua_State *L) {
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  lua_pushlightuserdata(L, (void *)&lp_key);
  lua_pushinteger(L, 0);
  lua_pushliteral(L, "__index"); /* a metamethod name, fixed by Lua: pushing it allocates nothing */
  lua_pushcfunction(L, sample_fn);
  lua_pushthread(L);
}
