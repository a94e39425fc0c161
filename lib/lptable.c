/*
** lptable.c: each state's luapool table (lptable.h).
*/
#include "lptable.h"

/* The registry key of the luapool table: this variable's address. */
static const char lp_key = 0;

void lp_lptable_create(lua_State *L) {
  lua_createtable(L, LP_T_COUNT, 0);
  for (int i = 1; i <= LP_T_COUNT; i++) {
    if (i == LP_T_SNAP || i == LP_T_FSNAP || i == LP_T_TSNAP)
      continue; /* lp_snapshot_record makes them, at their sizes */
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
