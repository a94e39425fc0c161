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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "chunk.h"
#include "fault.h"
#include "lptable.h"
#include "sx.h"

/*
** The entries' array starts empty and grows by doubling (4, 8, ... up to cap) as chunks are
** kept: most states keep a few.  One block of cap entries at creation (1,792 bytes at the default
** 32) was glibc's "large" request, before which it consolidates its fast bins: ~16,000
** instructions of every creation, a quarter of what a bare state's libraries cost.
*/
void lp_chunk_init(lp_chunks *c, unsigned cap) {
  memset(c, 0, sizeof *c);
  c->cap = cap;
}

/* Room for entry c->n (c->n < c->cap); false when out of memory. */
static bool make_room(lp_chunks *c) {
  if (c->n < c->room)
    return true;
  unsigned room = c->room == 0 ? 4 : 2 * c->room;
  if (room > c->cap)
    room = c->cap;
  lp_cent *ent = lp_realloc(c->ent, room * sizeof *ent);
  if (ent == NULL)
    return false;
  memset(ent + c->room, 0, (room - c->room) * sizeof *ent);
  c->ent = ent;
  c->room = room;
  return true;
}

/*
** The table lives in the luapool table (LP_T_CACHE: the snapshot skips it by identity) and, for
** the hit's one array read instead of two hash lookups, at an integer key of the registry.  Under
** LIBS_ALL a request can reach the registry (debug.getregistry) and swap that entry: the hit
** checks the function it finds (luapool_load), and the reset puts the registry back.
*/
void lp_chunk_open(lua_State *L, lp_chunks *c) {
  lua_createtable(L, (int)c->cap, 0);
  lua_pushvalue(L, -1);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lp_lptable_set(L, LP_T_CACHE);
}

void lp_chunk_free(lp_chunks *c) {
  for (unsigned i = 0; i < c->n; i++) {
    lp_free(c->ent[i].name);
    lp_free(c->ent[i].src);
  }
  lp_free(c->ent);
  memset(c, 0, sizeof *c);
}

static char *copy(const char *s, size_t n) {
  char *c = lp_malloc(n + 1);
  if (c != NULL) {
    memcpy(c, s, n);
    c[n] = '\0';
  }
  return c;
}

/* Pushes the cache's slot i. */
static void push_cached(lua_State *L, const lp_chunks *c, unsigned i) {
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L); /* swapped: a miss */
    return;
  }
  lua_rawgeti(L, -1, (lua_Integer)i + 1);
  lua_replace(L, -2);
}

/* Stores the function on top of the stack in slot i (preallocated: allocates nothing). */
static void store_cached(lua_State *L, unsigned i) {
  lp_lptable_get(L, LP_T_CACHE);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (lua_Integer)i + 1);
  lua_pop(L, 1);
}

/* The function on top gets the current globals as its _ENV (a main chunk's first upvalue). */
static void set_env(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (lua_setupvalue(L, -2, 1) == NULL)
    lua_pop(L, 1);
}

/* The entry named name, or NULL. */
static lp_cent *find(lp_chunks *c, const char *name, size_t name_len) {
  for (unsigned i = 0; i < c->n; i++) {
    lp_cent *e = &c->ent[i];
    if (e->name_len == name_len && memcmp(e->name, name, name_len) == 0)
      return e;
  }
  return NULL;
}

/* A free entry, or the least recently used one, renamed to name (NULL name: out of memory);
   NULL when there is no entry and no memory for one. */
static lp_cent *take_entry(lp_chunks *c, const char *name, size_t name_len) {
  lp_cent *e;
  if (c->n < c->cap && make_room(c)) {
    e = &c->ent[c->n++];
  } else if (c->n == 0) {
    return NULL;
  } else {
    e = &c->ent[0];
    for (unsigned i = 1; i < c->n; i++)
      if (c->ent[i].used < e->used)
        e = &c->ent[i];
  }
  lp_free(e->name);
  e->name = copy(name, name_len);
  e->name_len = name_len;
  return e;
}

/* Keeps the compiled function on top of the stack in e, unless there is no memory for the key. */
static void keep(lua_State *L, lp_chunks *c, lp_cent *e, const char *src, size_t len) {
  lp_free(e->src);
  e->src = copy(src, len);
  e->len = len;
  if (e->name == NULL || e->src == NULL) { /* not cached, and never matched */
    lp_free(e->name);
    lp_free(e->src);
    e->name = e->src = NULL;
    e->name_len = (size_t)-1;
    e->fn = NULL;
    e->env = NULL;
    return;
  }
  store_cached(L, (unsigned)(e - c->ent));
  e->fn = lua_topointer(L, -1);
  e->env = lua_upvalueid(L, -1, 1);
  e->used = ++c->tick;
}

int luapool_load(lua_State *L, const char *name, const char *src, size_t len) {
  lp_sx *x = lp_sx_check(L);
  if (x == NULL) {
    if (L != NULL)
      lua_pushliteral(L, "luapool_load: not a state of a luapool pool");
    return LUA_ERRERR;
  }
  if (src == NULL) {
    lua_pushliteral(L, "luapool_load: NULL source");
    return LUA_ERRERR;
  }
  if (name == NULL)
    name = "?";
  lp_chunks *c = &x->chunks;
  size_t name_len = strlen(name);
  lp_cent *e = find(c, name, name_len);
  if (e != NULL && e->len == len && memcmp(e->src, src, len) == 0) {
    push_cached(L, c, (unsigned)(e - c->ent));
    if (lua_type(L, -1) == LUA_TFUNCTION && lua_topointer(L, -1) == e->fn &&
        lua_upvalueid(L, -1, 1) == e->env) {
      set_env(L);
      e->used = ++c->tick;
      c->hits++;
      return LUA_OK;
    }
    lua_pop(L, 1);
  }
  c->misses++;
  int status = luaL_loadbufferx(L, src, len, name, "t");
  if (status != LUA_OK || c->cap == 0)
    return status;
  if (e == NULL)
    e = take_entry(c, name, name_len);
  if (e != NULL)
    keep(L, c, e, src, len);
  return LUA_OK;
}
