/*
** chunk.h: the per-state cache of compiled chunks behind luapool_load.
*/
#ifndef LUAPOOL_CHUNK_H
#define LUAPOOL_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* A chunk the cache keeps compiled. */
typedef struct lp_cent {
  char *name; /* malloc'd copies of the name and the source: the cache key */
  char *src;
  size_t name_len, len;
  const void *fn; /* lua_topointer of the function in the cache table, slot idx */
  void *env;      /* lua_upvalueid of its _ENV: a request that rebinds the cell (LIBS_ALL's
                     debug.upvaluejoin) would make every later hit write the globals into
                     another function's upvalue, so a hit checks it */
  uint64_t used;  /* the cache's tick at the last use: the least recently used goes first */
} lp_cent;

typedef struct lp_chunks {
  unsigned n, cap; /* entries used, and cfg.chunk_cache */
  unsigned room;   /* entries ent has room for: it grows by doubling up to cap (chunk.c) */
  lp_cent *ent;
  uint64_t tick;
  uint64_t hits, misses; /* since lp_chunk_take_counts */
  int ref; /* the functions' table, also at this integer key of the registry: one array read */
} lp_chunks;

void lp_chunk_init(lp_chunks *c, unsigned cap); /* allocates nothing */
/* Protected: the cache's table of functions, in L's luapool table (preallocated: storing a
   chunk allocates nothing). */
void lp_chunk_open(lua_State *L, lp_chunks *c);
void lp_chunk_free(lp_chunks *c);

/* The hits and misses since the last call, if any (every release asks). */
static inline bool lp_chunk_take_counts(lp_chunks *c, uint64_t *hits, uint64_t *misses) {
  if ((c->hits | c->misses) == 0)
    return false; /* no luapool_load in this request */
  *hits = c->hits;
  *misses = c->misses;
  c->hits = c->misses = 0;
  return true;
}

#endif /* LUAPOOL_CHUNK_H */
