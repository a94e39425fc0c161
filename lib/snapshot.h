/*
** snapshot.h: what a state looked like when it was made, and whether a request changed it.
**
** lp_snapshot_record walks everything reachable from the registry and the types' metatables
** once, after on_create (and the sandbox's freeze), and records each table, function and full
** userdata a request could change, itself or through any function it can reach: a copy of its
** entries (anchored in the state, for restoring) and, C side, the fingerprints of its entries in
** traversal order (and of a Lua function's upvalues, their identity too).  The reset compares
** those fingerprints (lp_snapshot_find_dirty: no allocation, no error) and restores only what
** differs; a table whose byte image (image.h) is unchanged is not walked at all.  Coroutines cannot be restored: a suspended one fails the recording, any other is
** checked, and a change taints the state.
*/
#ifndef LUAPOOL_SNAPSHOT_H
#define LUAPOOL_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "gimage.h"
#include "image.h"
#include "lptable.h"

/* A value's fingerprint: its type and its identity (collectable) or bits (the others). */
typedef struct lp_fp {
  uint64_t bits;
  int type; /* lua_type, or LP_TINTEGER */
} lp_fp;

#define LP_TINTEGER (LUA_NUMTYPES + 1)

/* A table, userdata (n = -1: only its metatable) or function (its upvalues) the reset checks. */
typedef struct lp_rec {
  int n;        /* entries (key, value) or upvalues */
  lp_fp *fp;    /* 2n for a table (key, value, ...), n for a function */
  lp_fp mt;     /* a table's or userdata's metatable (nil for none) */
  void **uid;   /* a Lua function's: the identity of each upvalue (lua_upvalueid); else NULL */
  lp_image img; /* a table's byte image (image.h); unused for functions and userdata */
  size_t bytes0; /* the image's parts (array and nodes) when the walk recorded the table */
} lp_rec;

/* A coroutine the reset checks: whatever a resume, a close or a hook changes. */
typedef struct lp_thr {
  int status, top; /* lua_status, lua_gettop */
  lua_Hook hook;
  int mask, count;
  lp_fp *fp; /* top values on its stack */
} lp_thr;

typedef struct lp_snapshot {
  int ntab, nfn, nthr;
  lp_rec *tab, *fn;
  lp_thr *thr;
  int ndirty;
  int *dirty;          /* ntab + nfn: what find_dirty found (>= 0 a table, < 0 function -1-i) */
  bool thread_changed; /* find_dirty found a coroutine changed: restore taints */
  bool oversized;      /* a recorded table's parts grew far past its entries: restore taints */
  lua_State *check;    /* a thread whose stack holds, for good, the type samples (1..7), then the
                          recorded tables, functions and coroutines: what the reset checks (while
                          lp_snapshot_record walks, its to-do list: object, status pairs) */
  lp_fp typemt[LP_TYPE_SAMPLES];
  int image;        /* LP_IMAGE_OFF, _ON or _VERIFY (image.h) */
  lp_gimage gimage; /* the types' metatables and the collector, read in place (gimage.h) */
  struct lp_pmap_block *scratch[2]; /* the walk's maps while lp_snapshot_record runs */
} lp_snapshot;

/*
** The blocks the walks of one pool's creations reuse for their maps (snapshot.c, pmap): a walk
** takes them when it starts and gives them back when it ends, on any thread.
*/
typedef struct lp_walk_cache {
  _Atomic(struct lp_pmap_block *) seen, frozen;
  _Atomic int ntab, nfn; /* what the last walk recorded: the next one's sizes (hints) */
} lp_walk_cache;
void lp_walk_cache_init(lp_walk_cache *c);
void lp_walk_cache_fini(lp_walk_cache *c);

/* Protected, after on_create and the freeze: records what the reset checks.  Raises an error
   when on_create left a suspended coroutine reachable. */
int lp_snapshot_record(lua_State *L, lp_snapshot *s, lp_walk_cache *cache);
/* How many recorded tables, functions and coroutines changed: a table by its image where it
   has one (a different image may hide the same contents: the restore tells), else by the walk.
   Raises no error and allocates nothing in the state. */
int lp_snapshot_find_dirty(lp_snapshot *s);
/* What lp_snapshot_restore returns when a coroutine changed: no restore can put it back. */
#define LP_SNAPSHOT_UNRESTORABLE (-1)
/* Puts back what lp_snapshot_find_dirty found, in a protected call on L: LUA_OK, or its error
   status (memory), or LP_SNAPSHOT_UNRESTORABLE.  *removed: the keys it had to remove;
   *changed: whether it put anything back (a table whose image changed may hold what it held). */
int lp_snapshot_restore(lua_State *L, lp_snapshot *s, int *removed, bool *changed);
/* Puts back the types' metatables that changed; returns whether any had.  Raises nothing. */
bool lp_snapshot_restore_type_metatables(lp_snapshot *s);
void lp_snapshot_free(lp_snapshot *s);

#endif /* LUAPOOL_SNAPSHOT_H */
