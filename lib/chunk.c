/*
** chunk.c: luapool_load, the per-state cache of compiled chunks.
**
** Each state keeps up to cfg.chunk_cache main functions, keyed by name and source (a copy of
** both, compared byte for byte: a hash could be made to collide).  The functions live in the
** luapool table's LP_T_CACHE array, which the reset neither checks nor restores; the entry keeps
** the function's address and checks it on a hit, so a function swapped there (debug.getregistry
** under LUAPOOL_LIBS_ALL) is recompiled, never run.  A hit sets the function's _ENV upvalue to
** the current globals table: a cached chunk always runs against the clean globals.
*/
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static char *copy(const char *s, size_t n) {
  char *c = malloc(n + 1);
  if (c != NULL) {
    memcpy(c, s, n);
    c[n] = '\0';
  }
  return c;
}

/* Pushes the cache's slot i. */
static void push_cached(lua_State *L, unsigned i) {
  lp_lptable_push(L);
  lua_rawgeti(L, -1, LP_T_CACHE);
  lua_rawgeti(L, -1, (lua_Integer)i + 1);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

/* Stores the function on top of the stack in slot i (preallocated: allocates nothing). */
static void store_cached(lua_State *L, unsigned i) {
  lp_lptable_push(L);
  lua_rawgeti(L, -1, LP_T_CACHE);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, (lua_Integer)i + 1);
  lua_pop(L, 2);
}

/* The function on top gets the current globals as its _ENV (a main chunk's first upvalue). */
static void set_env(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (lua_setupvalue(L, -2, 1) == NULL)
    lua_pop(L, 1);
}

int luapool_load(lua_State *L, const char *name, const char *src, size_t len) {
  if (src == NULL) {
    lua_pushliteral(L, "luapool_load: NULL source");
    return LUA_ERRERR;
  }
  if (name == NULL)
    name = "?";
  lp_sx *x = lp_sx_of(L);
  unsigned cap = x->pool->cfg.chunk_cache;
  size_t name_len = strlen(name);
  lp_cent *e = NULL;
  for (unsigned i = 0; i < x->ncache; i++) {
    lp_cent *c = &x->cache[i];
    if (c->name_len == name_len && memcmp(c->name, name, name_len) == 0) {
      e = c;
      break;
    }
  }
  if (e != NULL && e->len == len && memcmp(e->src, src, len) == 0) {
    push_cached(L, (unsigned)(e - x->cache));
    if (lua_type(L, -1) == LUA_TFUNCTION && lua_topointer(L, -1) == e->fn) {
      set_env(L);
      e->used = ++x->cache_tick;
      x->cache_hits++;
      return LUA_OK;
    }
    lua_pop(L, 1);
  }
  x->cache_misses++;
  int status = luaL_loadbufferx(L, src, len, name, "t");
  if (status != LUA_OK || cap == 0)
    return status;
  if (e == NULL) { /* a free entry, or the least recently used one */
    if (x->ncache < cap) {
      e = &x->cache[x->ncache++];
    } else {
      e = &x->cache[0];
      for (unsigned i = 1; i < x->ncache; i++)
        if (x->cache[i].used < e->used)
          e = &x->cache[i];
    }
    free(e->name);
    e->name = copy(name, name_len);
    e->name_len = name_len;
  }
  free(e->src);
  e->src = copy(src, len);
  e->len = len;
  if (e->name == NULL || e->src == NULL) { /* no memory for the key: just not cached */
    free(e->name);
    free(e->src);
    e->name = e->src = NULL;
    e->name_len = (size_t)-1;
    e->fn = NULL;
    return LUA_OK;
  }
  store_cached(L, (unsigned)(e - x->cache));
  e->fn = lua_topointer(L, -1);
  e->used = ++x->cache_tick;
  return LUA_OK;
}
