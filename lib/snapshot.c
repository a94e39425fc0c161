/*
** snapshot.c: recording a state, finding what changed, restoring it (snapshot.h).
**
** The walk records everything a request can write, itself or through a function it can reach;
** it leaves out only what the sandbox marked (LP_T_FROZEN) and finds only through read-only
** ways (below, "recording").  A reset traverses each recorded table and compares fingerprints in
** order: no hashing, no allocation, nothing that can raise an error.  Only when something
** differs does it restore, in protected mode: remove the keys the copy lacks, put back the
** copy's entries and metatable, then fingerprint again (the order may have changed).  Functions:
** the same with upvalues, and a Lua function's upvalue joined to another cell is joined back.
** Coroutines are checked, never restored: a change taints the state.  The argument for each
** channel is in doc/design.md, "What reset guarantees".
*/
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fault.h"
#include "snapshot.h"

_Static_assert(sizeof(lua_Number) == sizeof(uint64_t), "lua_Number is a double");

/* Stack indices on the check thread. */
#define LP_K_TABLE(i) (LP_TYPE_SAMPLES + 1 + (i))
#define LP_K_FUNC(s, i) (LP_TYPE_SAMPLES + 1 + (s)->ntab + (i))
#define LP_K_THREAD(s, i) (LP_TYPE_SAMPLES + 1 + (s)->ntab + (s)->nfn + (i))
/* What the check thread holds for good. */
#define LP_K_BASE(s) (LP_TYPE_SAMPLES + (s)->ntab + (s)->nfn + (s)->nthr)

/* ---- fingerprints ----------------------------------------------------------------------- */

static void fp_make(lua_State *L, int i, lp_fp *f) {
  f->type = lua_type(L, i);
  switch (f->type) {
  case LUA_TNIL:
    f->bits = 0;
    break;
  case LUA_TBOOLEAN:
    f->bits = (uint64_t)lua_toboolean(L, i);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, i)) {
      f->type = LP_TINTEGER; /* 1 and 1.0 are equal to Lua, not to math.type */
      f->bits = (uint64_t)lua_tointeger(L, i);
    } else {
      lua_Number n = lua_tonumber(L, i); /* bits: tells -0.0 from 0.0, and NaN from itself */
      memcpy(&f->bits, &n, sizeof n);
    }
    break;
  default: /* the object's address; equal short strings are one object */
    f->bits = (uint64_t)(uintptr_t)lua_topointer(L, i);
    break;
  }
}

static bool fp_same(lua_State *L, int i, const lp_fp *f) {
  lp_fp g;
  fp_make(L, i, &g);
  return g.type == f->type && g.bits == f->bits;
}

/*
** Pushes the metatable of the value at i, or false for none (the snapshot's tables cannot hold
** nil), and fingerprints it into f (as nil for none, which is what the checks compare with).
*/
static void push_metatable_fp(lua_State *L, int i, lp_fp *f) {
  if (lua_getmetatable(L, i)) {
    fp_make(L, -1, f);
  } else {
    f->type = LUA_TNIL;
    f->bits = 0;
    lua_pushboolean(L, 0);
  }
}

/* Pops a recorded metatable (false: none) and makes it the metatable of the value at i. */
static void set_recorded_metatable(lua_State *L, int i) {
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  lua_setmetatable(L, i);
}

/* How many entries lua_next gives for table t. */
static int count_entries(lua_State *L, int t) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

/* Fingerprints table t's entries in traversal order into r (which may hold an older list). */
static void fingerprint_table(lua_State *L, int t, lp_rec *r) {
  int n = count_entries(L, t);
  lp_fp *fp = lp_realloc(r->fp, (size_t)(n > 0 ? 2 * n : 1) * sizeof *fp);
  if (fp == NULL) {
    luaL_error(L, "not enough memory");
    return; /* not reached: luaL_error does not return */
  }
  r->fp = fp;
  r->n = n;
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    fp_make(L, -2, &fp[k++]);
    fp_make(L, -1, &fp[k++]);
    lua_pop(L, 1);
  }
}

/* ---- recording -------------------------------------------------------------------------- */

/*
** The walk.  Every object it finds gets a status, the most exposed way it was found:
**   ST_EXPOSED  some code a request can run may hold it and write it: recorded (a table, a
**               function with upvalues, a userdata's metatable, a coroutine);
**   ST_RAW      only read through the sandbox's lookups, which hand out its entries as they
**               are: not recorded, but what it holds is exposed;
**   ST_MAPPED   only read through a proxy's mapping, which hands out the proxy of every table
**               that has one: not recorded, and the tables it holds that have proxies are
**               ST_MAPPED too.
** Only what the sandbox marked (LP_T_FROZEN) can be less than ST_EXPOSED; every other object
** found at all is ST_EXPOSED.  Which way an object is found (the edge) decides with its kind:
**   E_EXPOSED  an entry of an exposed or raw table, an upvalue, a user value, a coroutine's
**              stack, an unprotected metatable: ST_EXPOSED;
**   E_MAPPED   an entry of an ST_MAPPED table, an upvalue of a sandbox closure, _LOADED and
**              _PRELOAD in the registry: ST_MAPPED for a LP_K_MAPPED table, else ST_EXPOSED;
**   E_RAW      a protected metatable (__metatable set: getmetatable cannot return it), the
**              __index table of a sandbox metatable: ST_RAW for a sandbox-marked table.
** A table that is not ST_EXPOSED but has a metatable of its own is made ST_EXPOSED: Lua hands
** the table to that metatable's metamethods.  LP_K_FIXED and LP_K_WRAPPER objects never change
** and are never recorded.  So an object is left out only if no code a request can reach holds it
** to write (doc/design.md, "What reset guarantees", has the argument).
*/
enum { ST_MAPPED = 1, ST_RAW = 2, ST_EXPOSED = 3, ST_SKIP = 9 /* bookkeeping: never walked */ };
enum { E_EXPOSED, E_MAPPED, E_RAW };

/*
** An object -> small integer map keyed by the object's address (lua_topointer), in C: the walk
** asks it about every edge, which Lua tables keyed by the objects made about a quarter of a
** state's creation.  Its memory is a C block that the pool's creations reuse (lp_walk_cache): a
** walk takes one when it starts and gives it back when it ends.  Neither a Lua userdata nor a
** malloc and free per creation: the first left ~10 KB of garbage in each new state until its
** first collection, the second a hole in the heap that the next state's objects filled, so that
** the states' memory interleaved and closing them took twice as long (doc/design.md, "Closing
** many states").  While a walk holds a block, the snapshot keeps its address (scratch), so that
** an error that unwinds the walk leaves the block to lp_snapshot_free.  Addresses are identities
** here: every object the walk reaches is alive until it ends (reachable from the roots, or kept
** by the records), and the objects the walk makes (copies, keepers) are never reached, so an
** address reused by one of them is never asked.
*/
typedef struct pmap_entry {
  const void *key; /* NULL: free */
  int value;
} pmap_entry;

typedef struct lp_pmap_block {
  size_t cap; /* entries, a power of 2 */
  pmap_entry e[];
} lp_pmap_block;

typedef struct pmap {
  lp_pmap_block *b; /* also at *owner, where an error leaves it to lp_snapshot_free */
  size_t mask, n;   /* b->cap - 1, entries */
  lp_pmap_block **owner;
} pmap;

static size_t pmap_hash(const void *k) {
  uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15U; /* Fibonacci hashing */
  return (size_t)(h >> 32);
}

/* Block b (cap entries), emptied, as m's. */
static void pmap_use(pmap *m, lp_pmap_block *b) {
  memset(b->e, 0, b->cap * sizeof b->e[0]);
  m->b = b;
  *m->owner = b;
  m->mask = b->cap - 1;
  m->n = 0;
}

/* A new block of cap entries (raises on out of memory). */
static lp_pmap_block *pmap_block_new(lua_State *L, size_t cap) {
  lp_pmap_block *b = lp_malloc(sizeof *b + cap * sizeof b->e[0]);
  if (b == NULL)
    luaL_error(L, "not enough memory");
  b->cap = cap;
  return b;
}

/*
** An empty map of at least cap entries, on the cache's block if it has one that large.  The
** exchanges are acq_rel: the thread that gave the block back wrote it last, and its release
** makes those writes happen before this thread's memset (and its own give-back's release
** orders this thread's writes before the next taker's).
*/
static void pmap_init(lua_State *L, pmap *m, lp_pmap_block **owner, _Atomic(lp_pmap_block *) *cache,
                      size_t cap) {
  m->owner = owner;
  lp_pmap_block *b = atomic_exchange_explicit(cache, NULL, memory_order_acq_rel);
  if (b != NULL && b->cap < cap) {
    lp_free(b);
    b = NULL;
  }
  pmap_use(m, b != NULL ? b : pmap_block_new(L, cap));
}

/* The walk is done with m: its block goes back to the cache (one there already is freed). */
static void pmap_done(pmap *m, _Atomic(lp_pmap_block *) *cache) {
  lp_free(atomic_exchange_explicit(cache, m->b, memory_order_acq_rel));
  *m->owner = NULL;
  m->b = NULL;
}

void lp_walk_cache_init(lp_walk_cache *c) {
  atomic_init(&c->seen, NULL);
  atomic_init(&c->frozen, NULL);
  atomic_init(&c->ntab, 0);
  atomic_init(&c->nfn, 0);
}

/* Only once no creation runs (luapool_destroy). */
void lp_walk_cache_fini(lp_walk_cache *c) {
  lp_free(atomic_exchange_explicit(&c->seen, NULL, memory_order_acquire));
  lp_free(atomic_exchange_explicit(&c->frozen, NULL, memory_order_acquire));
}

static int pmap_get(const pmap *m, const void *k) {
  for (size_t i = pmap_hash(k) & m->mask;; i = (i + 1) & m->mask) {
    if (m->b->e[i].key == k)
      return m->b->e[i].value;
    if (m->b->e[i].key == NULL)
      return 0;
  }
}

/* Puts k (absent, not NULL) into m, which has room: no growth. */
static void pmap_insert(pmap *m, const void *k, int v) {
  size_t i = pmap_hash(k) & m->mask;
  while (m->b->e[i].key != NULL)
    i = (i + 1) & m->mask;
  m->b->e[i].key = k;
  m->b->e[i].value = v;
  m->n++;
}

/* Twice the capacity, at most half full. */
static void pmap_grow(lua_State *L, pmap *m) {
  pmap old = *m;
  pmap_use(m, pmap_block_new(L, 2 * old.b->cap)); /* *owner: the new block, then old's freed */
  for (size_t i = 0; i <= old.mask; i++)
    if (old.b->e[i].key != NULL)
      pmap_insert(m, old.b->e[i].key, old.b->e[i].value);
  lp_free(old.b);
}

static void pmap_put(lua_State *L, pmap *m, const void *k, int v) {
  if (k == NULL)
    return; /* not an object (LP_T_FROZEN marks only objects) */
  for (size_t i = pmap_hash(k) & m->mask; m->b->e[i].key != NULL; i = (i + 1) & m->mask)
    if (m->b->e[i].key == k) {
      m->b->e[i].value = v;
      return;
    }
  if (2 * (m->n + 1) > m->mask + 1)
    pmap_grow(L, m);
  pmap_insert(m, k, v);
}

/* The walk's working tables (stack indices) and the records' capacities. */
typedef struct walk {
  lp_snapshot *s;
  lp_walk_cache *cache;
  pmap seen;   /* an object's status (ST_*), 0: not found yet */
  pmap frozen; /* what the sandbox marked: an object's LP_K_* kind (LP_T_FROZEN, copied) */
  int snap, fsnap, tsnap;
  int cells;   /* a Lua upvalue's identity (light userdata) -> its keeper (nil until the first) */
  int factory; /* a function that makes a Lua closure with one upvalue of its own (nil until
                  the first Lua function with upvalues: the sandbox records none) */
  int spill;   /* the to-do list past LP_TODO_ON_STACK pairs: a table (nil until needed) */
  lua_Integer nspill;
  int tcap, fcap, hcap;
} walk;

/*
** The to-do list (objects found, not walked yet, with their status) is the check thread's stack
** up to this many pairs (~128 KB of stack; LIBS_ALL's walk needs a few hundred), then a table:
** Lua stacks stop at LUAI_MAXSTACK slots, and on_create may leave any number of objects.
*/
#define LP_TODO_ON_STACK 4096

static void *grow(lua_State *L, void *p, int *cap, int need, size_t size) {
  if (need <= *cap)
    return p;
  int n = *cap < 16 ? 16 : *cap * 2;
  void *q = lp_realloc(p, (size_t)n * size);
  if (q == NULL)
    luaL_error(L, "not enough memory");
  *cap = n;
  return q;
}

static int int_at(lua_State *L, const pmap *m, int i) {
  return pmap_get(m, lua_topointer(L, i));
}

static void set_int(lua_State *L, pmap *m, int i, int v) {
  pmap_put(L, m, lua_topointer(L, i), v);
}

static bool immutable(int kind) {
  return kind == LP_K_FIXED || kind == LP_K_WRAPPER;
}

static bool mapped(int kind) {
  return kind == LP_K_MAPPED || kind == LP_K_LEAF;
}

/* The status an edge gives an object of this kind. */
static int status_for(int kind, int edge) {
  if (immutable(kind))
    return ST_MAPPED; /* walked once, never recorded */
  if (edge == E_MAPPED)
    return mapped(kind) ? ST_MAPPED : ST_EXPOSED;
  if (edge == E_RAW)
    return mapped(kind) || kind == LP_K_PROXYMT || kind == LP_K_PROTMT ? ST_RAW : ST_EXPOSED;
  return ST_EXPOSED;
}

static bool has_upvalues(lua_State *L, int i) {
  if (lua_getupvalue(L, i, 1) == NULL)
    return false;
  lua_pop(L, 1);
  return true;
}

/* Queues the value at i for the status the edge gives it, unless it has that one or more. */
static void reach_object(lua_State *L, walk *w, int i, int t, int edge) {
  if (t == LUA_TFUNCTION && !has_upvalues(L, i))
    return; /* nothing in it to walk or record: the libraries' ~150 C functions */
  i = lua_absindex(L, i);
  int kind = int_at(L, &w->frozen, i);
  if (kind == LP_K_BOOK)
    return;
  int st = status_for(kind, edge);
  if (int_at(L, &w->seen, i) >= st)
    return;
  set_int(L, &w->seen, i, st);
  lua_State *K = w->s->check; /* the to-do list: object, status */
  if (lua_gettop(K) < 2 * LP_TODO_ON_STACK && lua_checkstack(K, 2)) {
    lua_pushvalue(L, i);
    lua_xmove(L, K, 1);
    lua_pushinteger(K, st);
    return;
  }
  if (lua_isnil(L, w->spill)) {
    lua_newtable(L);
    lua_replace(L, w->spill);
  }
  lua_pushvalue(L, i);
  lua_rawseti(L, w->spill, 2 * ++w->nspill - 1);
  lua_pushinteger(L, st);
  lua_rawseti(L, w->spill, 2 * w->nspill);
}

/* reach's test inline: most of what the walk meets (keys, numbers, strings) is no object. */
static inline void reach(lua_State *L, walk *w, int i, int edge) {
  int t = lua_type(L, i);
  if (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA || t == LUA_TTHREAD)
    reach_object(L, w, i, t, edge);
}

/* Pushes the next object to walk and returns its status; 0 when none is left. */
static int todo_next(lua_State *L, walk *w) {
  lua_State *K = w->s->check;
  if (lua_gettop(K) > 0) {
    int st = (int)lua_tointeger(K, -1);
    lua_pop(K, 1);
    lua_xmove(K, L, 1);
    return st;
  }
  if (w->nspill == 0)
    return 0;
  lua_Integer at = 2 * w->nspill - 1;
  lua_rawgeti(L, w->spill, at + 1);
  int st = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, w->spill, at);
  lua_pushnil(L);
  lua_rawseti(L, w->spill, at);
  w->nspill--;
  return st;
}

/* Reaches the metatable at i: protected (getmetatable cannot return it), it is only read. */
static void reach_mt_at(lua_State *L, walk *w, int i) {
  lua_pushliteral(L, "__metatable");
  bool protect = lua_rawget(L, i < 0 ? i - 1 : i) != LUA_TNIL;
  lua_pop(L, 1);
  reach(L, w, i, protect ? E_RAW : E_EXPOSED);
}

static void reach_metatable(lua_State *L, walk *w, int o) {
  if (lua_getmetatable(L, o)) {
    reach_mt_at(L, w, -1);
    lua_pop(L, 1);
  }
}

/* A new table record; its snap triple (object, copy, metatable) is at 3 * index. */
static lp_rec *new_table_rec(lua_State *L, walk *w, lua_Integer *at) {
  lp_snapshot *s = w->s;
  s->tab = grow(L, s->tab, &w->tcap, s->ntab + 1, sizeof *s->tab);
  lp_rec *r = &s->tab[s->ntab];
  r->fp = NULL;
  r->n = 0;
  r->uid = NULL;
  memset(&r->img, 0, sizeof r->img);
  r->bytes0 = 0;
  *at = 3 * (lua_Integer)s->ntab++;
  return r;
}

/*
** Table t's entries, for the sizes of its record: read from its parts where the image's probe
** passed (image.h; no lua_next pass), else counted through the API.  In verify mode both, and
** they must agree.  Only sizes hang on it: record_table_entry grows the record if it must.
*/
static int entries_of(lua_State *L, const lp_snapshot *s, int t) {
  if (s->image == LP_IMAGE_OFF)
    return count_entries(L, t);
  int n = lp_image_count(lua_topointer(L, t));
  if (s->image == LP_IMAGE_VERIFY) {
    int api = count_entries(L, t);
    if (n != api)
      lp_image_disagree_count(s->ntab - 1, n, api);
  }
  return n;
}

/*
** Starts table t's record: its entries counted, room for their fingerprints, t itself in the
** snap triple, and an empty copy of that size pushed; walk_table's traversal fills both and
** record_table_end closes the record.  The fingerprints and the copy are made in that one
** traversal, so they hold the same entries even if the collector cleared weak ones meanwhile.
*/
static lp_rec *record_table_begin(lua_State *L, walk *w, int t, lua_Integer *at, int *cap) {
  lp_rec *r = new_table_rec(L, w, at);
  int n = entries_of(L, w->s, t);
  r->fp = lp_malloc((size_t)(n > 0 ? 2 * n : 1) * sizeof *r->fp);
  if (r->fp == NULL)
    luaL_error(L, "not enough memory");
  *cap = n;
  lua_pushvalue(L, t);
  lua_rawseti(L, w->snap, *at + 1);
  lua_createtable(L, 0, n);
  return r;
}

/* The entry at -2, -1 into the record (room for cap entries, grown if need be) and the copy. */
static void record_table_entry(lua_State *L, lp_rec *r, int *k, int *cap, int copy) {
  if (*k >= 2 * *cap) {
    int more = *cap < 8 ? 16 : 2 * *cap;
    lp_fp *fp = lp_realloc(r->fp, (size_t)(2 * more) * sizeof *fp);
    if (fp == NULL) {
      luaL_error(L, "not enough memory");
      return; /* not reached: luaL_error does not return */
    }
    r->fp = fp;
    *cap = more;
  }
  fp_make(L, -2, &r->fp[(*k)++]);
  fp_make(L, -1, &r->fp[(*k)++]);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_rawset(L, copy);
}

/* Pops the copy into the snap triple, with t's metatable. */
static void record_table_end(lua_State *L, walk *w, int t, lp_rec *r, lua_Integer at, int k) {
  r->n = k / 2;
  lua_rawseti(L, w->snap, at + 2);
  push_metatable_fp(L, t, &r->mt);
  lua_rawseti(L, w->snap, at + 3);
}

/* A full userdata: only its metatable is recorded (n = -1); its contents are the host's. */
static void record_userdata(lua_State *L, walk *w, int u) {
  lua_Integer at;
  lp_rec *r = new_table_rec(L, w, &at);
  r->n = -1;
  push_metatable_fp(L, u, &r->mt);
  lua_rawseti(L, w->snap, at + 3);
  lua_pushvalue(L, u);
  lua_rawseti(L, w->snap, at + 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, w->snap, at + 2);
}

/*
** Pushes the keeper of Lua function f's upvalue u: a closure of luapool's own whose one upvalue
** is that cell, made once per cell, so that a restore can join f back to its cell whatever
** debug.upvaluejoin did to f and to every other closure that shared the cell.
*/
static void push_keeper(lua_State *L, walk *w, int f, int u) {
  void *id = lua_upvalueid(L, f, u);
  if (lua_isnil(L, w->cells)) {
    lua_newtable(L);
    lua_replace(L, w->cells);
  }
  if (lua_rawgetp(L, w->cells, id) != LUA_TNIL)
    return;
  lua_pop(L, 1);
  if (lua_isnil(L, w->factory)) {
    if (luaL_loadstring(L, "local u return function() return u end") != LUA_OK)
      lua_error(L);
    lua_replace(L, w->factory);
  }
  lua_pushvalue(L, w->factory);
  lua_call(L, 0, 1);
  lua_upvaluejoin(L, -1, 1, f, u);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, w->cells, id);
}

/* The copy of a function's upvalues: value u at u, and for a Lua function its keeper at n + u. */
static void record_function(lua_State *L, walk *w, int f, int nup) {
  lp_snapshot *s = w->s;
  s->fn = grow(L, s->fn, &w->fcap, s->nfn + 1, sizeof *s->fn);
  lp_rec *r = &s->fn[s->nfn];
  bool lua_fn = !lua_iscfunction(L, f);
  r->n = nup;
  r->mt.type = LUA_TNIL;
  r->mt.bits = 0;
  memset(&r->img, 0, sizeof r->img);
  r->fp = lp_malloc((size_t)nup * sizeof *r->fp);
  r->uid = lua_fn ? lp_malloc((size_t)nup * sizeof *r->uid) : NULL;
  lua_Integer at = 2 * (lua_Integer)s->nfn++; /* counted now: lp_snapshot_free frees both */
  if (r->fp == NULL || (lua_fn && r->uid == NULL)) {
    luaL_error(L, "not enough memory");
    return; /* not reached */
  }
  lua_pushvalue(L, f);
  lua_rawseti(L, w->fsnap, at + 1);
  lua_createtable(L, lua_fn ? 2 * nup : nup, 0);
  for (int u = 1; u <= nup; u++) {
    lua_getupvalue(L, f, u);
    fp_make(L, -1, &r->fp[u - 1]);
    lua_rawseti(L, -2, u);
    if (lua_fn) {
      r->uid[u - 1] = lua_upvalueid(L, f, u);
      push_keeper(L, w, f, u);
      lua_rawseti(L, -2, nup + u);
    }
  }
  lua_rawseti(L, w->fsnap, at + 2);
}

/*
** A coroutine: status, stack and hook.  Nothing puts a coroutine back where it stood, so a change
** taints the state.  One with frames (suspended in a yield, or stopped by an error) is refused: a
** resume that yields again on the same line with the same values, or debug.setlocal into a dead
** one's frames, changes it without a trace the C API shows.  Not started, or finished: a
** resume or a close changes its status or its stack.
*/
static void record_thread(lua_State *L, walk *w, int o) {
  lua_State *co = lua_tothread(L, o);
  lua_Debug ar;
  if (lua_status(co) == LUA_YIELD || lua_getstack(co, 0, &ar))
    luaL_error(L, "on_create left a coroutine reachable that is suspended (or stopped by an "
                  "error): the reset can neither check nor restore where it stands (let it "
                  "finish, or make it in each request)");
  lp_snapshot *s = w->s;
  s->thr = grow(L, s->thr, &w->hcap, s->nthr + 1, sizeof *s->thr);
  lp_thr *t = &s->thr[s->nthr];
  t->status = lua_status(co);
  t->top = lua_gettop(co);
  t->hook = lua_gethook(co);
  t->mask = lua_gethookmask(co);
  t->count = lua_gethookcount(co);
  t->fp = lp_malloc((size_t)(t->top > 0 ? t->top : 1) * sizeof *t->fp);
  s->nthr++;
  if (t->fp == NULL) {
    luaL_error(L, "not enough memory");
    return; /* not reached (luaL_error does not return), but the analyzer cannot know */
  }
  for (int i = 1; i <= t->top; i++)
    fp_make(co, i, &t->fp[i - 1]);
  lua_pushvalue(L, o);
  lua_rawseti(L, w->tsnap, s->nthr);
}

/* Does the table at o have a metatable that is not the sandbox's? */
static bool own_metatable(lua_State *L, walk *w, int o) {
  if (!lua_getmetatable(L, o))
    return false;
  bool own = int_at(L, &w->frozen, lua_gettop(L)) != LP_K_PROXYMT;
  lua_pop(L, 1);
  return own;
}

/* Is the key at k one of the registry's that only luapool's require machinery reads? */
static bool loaded_key(lua_State *L, int k) {
  if (lua_type(L, k) != LUA_TSTRING)
    return false;
  const char *s = lua_tostring(L, k);
  return strcmp(s, LUA_LOADED_TABLE) == 0 || strcmp(s, LUA_PRELOAD_TABLE) == 0;
}

static void walk_table(lua_State *L, walk *w, int o, int st, int kind) {
  if (st < ST_EXPOSED && !immutable(kind) && own_metatable(L, w, o)) {
    st = ST_EXPOSED;
    set_int(L, &w->seen, o, st);
  }
  lp_rec *r = NULL;
  lua_Integer at = 0;
  int k = 0, cap = 0, copy = 0;
  if (st == ST_EXPOSED && !immutable(kind)) {
    r = record_table_begin(L, w, o, &at, &cap);
    copy = lua_gettop(L);
  }
  bool sandbox_mt = st == ST_RAW && kind == LP_K_PROXYMT;
  bool registry = lua_rawequal(L, o, LUA_REGISTRYINDEX);
  lua_pushnil(L);
  while (lua_next(L, o) != 0) {
    if (r != NULL)
      record_table_entry(L, r, &k, &cap, copy);
    int ek = st == ST_MAPPED && !immutable(kind) ? E_MAPPED : E_EXPOSED, ev = ek;
    if (sandbox_mt) { /* __index is read raw; the real table behind a proxy only mapped */
      bool index = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "__index") == 0;
      ev = index ? E_RAW : lua_istable(L, -1) ? E_MAPPED : E_EXPOSED;
    } else if (registry && loaded_key(L, -2)) {
      ev = E_MAPPED;
    }
    reach(L, w, -2, ek);
    reach(L, w, -1, ev);
    lua_pop(L, 1);
  }
  if (r != NULL)
    record_table_end(L, w, o, r, at, k);
  reach_metatable(L, w, o);
}

/*
** A leaf found only mapped or raw: walking it would queue nothing (it holds no object the walk
** queues) and record nothing (not exposed, and no metatable of its own to make it so), so it is
** passed over: the libraries' tables, most of a creation's traversals.  Debug builds walk it
** all the same and check that.
*/
static bool pass_over(lua_State *L, walk *w, int o, int st, int kind) {
  if (kind != LP_K_LEAF || st == ST_EXPOSED)
    return false;
#ifdef LP_DEBUG
  int todo = lua_gettop(w->s->check), ntab = w->s->ntab;
  lua_Integer nspill = w->nspill;
  walk_table(L, w, o, st, kind);
  lp_assert(lua_gettop(w->s->check) == todo && w->nspill == nspill && w->s->ntab == ntab);
#else
  (void)L, (void)w, (void)o;
#endif
  return true;
}

static void walk_one(lua_State *L, walk *w, int o, int st) {
  int kind = int_at(L, &w->frozen, o);
  switch (lua_type(L, o)) {
  case LUA_TTABLE:
    if (!pass_over(L, w, o, st, kind))
      walk_table(L, w, o, st, kind);
    break;
  case LUA_TFUNCTION: {
    int edge = kind == LP_K_WRAPPER ? E_MAPPED : E_EXPOSED, nup = 0;
    while (lua_getupvalue(L, o, nup + 1) != NULL) {
      reach(L, w, -1, edge);
      lua_pop(L, 1);
      nup++;
    }
    if (nup > 0 && st == ST_EXPOSED && !immutable(kind))
      record_function(L, w, o, nup);
    break;
  }
  case LUA_TUSERDATA:
    if (st == ST_EXPOSED && !immutable(kind))
      record_userdata(L, w, o);
    reach_metatable(L, w, o);
    for (int n = 1; lua_getiuservalue(L, o, n) != LUA_TNONE; n++) {
      reach(L, w, -1, E_EXPOSED);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    break;
  case LUA_TTHREAD: {
    record_thread(L, w, o);
    lua_State *co = lua_tothread(L, o);
    if (!lua_checkstack(co, 1))
      luaL_error(L, "not enough memory");
    for (int i = 1, top = lua_gettop(co); i <= top; i++) {
      lua_pushvalue(co, i);
      lua_xmove(co, L, 1);
      reach(L, w, -1, E_EXPOSED);
      lua_pop(L, 1);
    }
    break;
  }
  }
}

/* Makes list i of the luapool table (at lp) with room for n entries, pushed: its stack index. */
static int new_list(lua_State *L, int lp, int i, int n) {
  lua_createtable(L, n, 0);
  lua_pushvalue(L, -1);
  lua_rawseti(L, lp, i);
  return lua_gettop(L);
}

/* Pushes the walk's working tables and marks luapool's bookkeeping as seen (never recorded). */
static void walk_begin(lua_State *L, walk *w, int lp) {
  /* either profile's walk finds ~45 objects (5.4.4, no on_create), the sandbox marks 53: room
     for 63 each (half full).  A larger block, which glibc's memset fills with rep stosb, would
     cost every creation ~4,000 instructions; a walk that needs more grows it, and the pool's
     cache keeps the grown block. */
  pmap_init(L, &w->seen, &w->s->scratch[0], &w->cache->seen, 128);
  pmap_init(L, &w->frozen, &w->s->scratch[1], &w->cache->frozen, 128);
  if (lua_rawgeti(L, lp, LP_T_FROZEN) == LUA_TTABLE) { /* nil without the sandbox */
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      set_int(L, &w->frozen, -2, (int)lua_tointeger(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L); /* the cells' slot: a table once the first keeper is made */
  w->cells = lua_gettop(L);
  lua_pushnil(L); /* the to-do list's spill: a table once the check thread's part is full */
  w->spill = lua_gettop(L);
  lua_pushnil(L); /* the factory's slot */
  w->factory = lua_gettop(L);
  /* the records' lists, at the sizes the pool's last walk needed (no rehash as they fill) */
  w->snap =
      new_list(L, lp, LP_T_SNAP, 3 * atomic_load_explicit(&w->cache->ntab, memory_order_relaxed));
  w->fsnap =
      new_list(L, lp, LP_T_FSNAP, 2 * atomic_load_explicit(&w->cache->nfn, memory_order_relaxed));
  w->tsnap = new_list(L, lp, LP_T_TSNAP, 0);
  /* the bookkeeping itself, and the cache (it changes by design); the request's modules table
     is recorded (empty under the sandbox), so the reset empties it */
  static const int skip[] = {LP_T_SNAP,    LP_T_FSNAP, LP_T_FROZEN, LP_T_CACHE,     LP_T_TYPEMT,
                             LP_T_PROXIES, LP_T_CHECK, LP_T_TSNAP,  LP_T_FINALIZERS};
  for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
    lua_rawgeti(L, lp, skip[i]);
    set_int(L, &w->seen, lua_gettop(L), ST_SKIP);
    lua_pop(L, 1);
  }
  lua_pushthread(L); /* the main thread: its stack is the reset's own business */
  set_int(L, &w->seen, lua_gettop(L), ST_SKIP);
  lua_pop(L, 1);
}

/* The roots: the registry, and the types' metatables (recorded in typemt and LP_T_TYPEMT). */
static void walk_roots(lua_State *L, walk *w, int lp) {
  lua_pushvalue(L, LUA_REGISTRYINDEX);
  reach(L, w, -1, E_EXPOSED);
  lua_pop(L, 1);
  lua_rawgeti(L, lp, LP_T_TYPEMT);
  int typemt = lua_gettop(L);
  lp_lptable_push_type_samples(L);
  for (int i = 0; i < LP_TYPE_SAMPLES; i++) {
    push_metatable_fp(L, typemt + 1 + i, &w->s->typemt[i]);
    if (lua_istable(L, -1))
      reach_mt_at(L, w, -1);
    lua_rawseti(L, typemt, i + 1);
  }
  lua_settop(L, typemt - 1);
}

/* Puts on the check thread, for good, what the reset reads: no push per reset. */
static void fill_check_thread(lua_State *L, lp_snapshot *s) {
  lua_State *K = s->check;
  if (!lua_checkstack(K, LP_K_BASE(s) + 8))
    luaL_error(L, "not enough memory");
  lp_lptable_push_type_samples(K);
  lp_lptable_push(L);
  static const struct {
    int slot, stride;
  } lists[] = {{LP_T_SNAP, 3}, {LP_T_FSNAP, 2}, {LP_T_TSNAP, 1}};
  int count[] = {s->ntab, s->nfn, s->nthr};
  for (int l = 0; l < 3; l++) {
    if (!lua_checkstack(L, count[l] + 2))
      luaL_error(L, "not enough memory");
    lua_rawgeti(L, -1, lists[l].slot);
    for (int i = 0; i < count[l]; i++)
      lua_rawgeti(L, -1 - i, lists[l].stride * (lua_Integer)i + 1);
    lua_xmove(L, K, count[l]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lp_assert(lua_gettop(K) == LP_K_BASE(s));
}

/* After the walk, the images of the recorded tables (not userdata: only their metatables are
   checked, through the API), as the tables are now. */
static void take_images(lp_snapshot *s) {
  if (s->image == LP_IMAGE_OFF)
    return;
  for (int i = 0; i < s->ntab; i++)
    if (s->tab[i].n >= 0) {
      lp_image_take(&s->tab[i].img, lua_topointer(s->check, LP_K_TABLE(i)));
      s->tab[i].bytes0 = s->tab[i].img.abytes + s->tab[i].img.nbytes;
    }
}

/*
** A recorded table whose parts (array and nodes, as its new image shows them) grew past twice
** their size at the record, past 128 bytes per entry it holds (plus 32) and past
** LP_SNAPSHOT_SLACK: a request that added many keys and removed them itself, which the restore
** (LP_RESET_MAX_REMOVED) never counts.  Lua never shrinks a table that no insertion rehashes, so
** every later reset would compare (or walk) all those empty slots: 3 MB, ~350 us a release, for a
** table that once held 100,000 keys.  The state is closed instead (s->oversized).  The floor
** weighs the two costs: keeping 32 KiB of empty slots costs each later reset ~5 us, closing costs
** one creation (~100 us), so a request that churns some 500 keys of its own keeps its state.
** Only with the image on: without it, the sizes are not known.
*/
#define LP_SNAPSHOT_SLACK ((size_t)32 << 10)

static void note_size(lp_snapshot *s, const lp_rec *r) {
  if (r->img.t == NULL)
    return;
  size_t bytes = r->img.abytes + r->img.nbytes;
  if (bytes > LP_SNAPSHOT_SLACK && bytes > 2 * r->bytes0 && bytes > 128 * ((size_t)r->n + 32))
    s->oversized = true;
}

int lp_snapshot_record(lua_State *L, lp_snapshot *s, lp_walk_cache *cache) {
  walk w;
  memset(&w, 0, sizeof w);
  w.s = s;
  w.cache = cache;
  int base = lua_gettop(L);
  luaL_checkstack(L, 40, "recording the state");
  lp_lptable_push(L);
  int lp = lua_gettop(L);
  s->check = lua_newthread(L); /* before the walk: under LIBS_ALL the luapool table is recorded */
  lua_rawseti(L, lp, LP_T_CHECK);
  s->image = lp_image_mode(L); /* before the walk too: it counts entries through the layout */
  walk_begin(L, &w, lp);
  walk_roots(L, &w, lp);
  int st;
  while ((st = todo_next(L, &w)) != 0) {
    int o = lua_gettop(L);
    if (int_at(L, &w.seen, o) == st) /* else it was found more exposed since, and queued again */
      walk_one(L, &w, o, st);
    lua_settop(L, o - 1);
  }
  lua_settop(L, base);
  pmap_done(&w.seen, &cache->seen);
  pmap_done(&w.frozen, &cache->frozen);
  atomic_store_explicit(&cache->ntab, s->ntab, memory_order_relaxed); /* hints: orders nothing */
  atomic_store_explicit(&cache->nfn, s->nfn, memory_order_relaxed);
  s->dirty = lp_malloc((size_t)(s->ntab + s->nfn + 1) * sizeof *s->dirty);
  if (s->dirty == NULL)
    luaL_error(L, "not enough memory");
  fill_check_thread(L, s);
  take_images(s);
  if (s->image != LP_IMAGE_OFF)
    lp_gimage_take(&s->gimage, L); /* after walk_roots recorded the types' metatables */
  return 0;
}

void lp_snapshot_free(lp_snapshot *s) {
  for (int i = 0; i < s->ntab; i++) {
    lp_free(s->tab[i].fp);
    lp_image_free(&s->tab[i].img);
  }
  for (int i = 0; i < s->nfn; i++) {
    lp_free(s->fn[i].fp);
    lp_free(s->fn[i].uid);
  }
  for (int i = 0; i < s->nthr; i++)
    lp_free(s->thr[i].fp);
  lp_free(s->tab);
  lp_free(s->fn);
  lp_free(s->thr);
  lp_free(s->dirty);
  lp_free(s->scratch[0]); /* an error in lp_snapshot_record left its maps */
  lp_free(s->scratch[1]);
  memset(s, 0, sizeof *s);
}

/* ---- checking ------------------------------------------------------------------------------ */

/* Does table t still have exactly the recorded entries, in the recorded order? */
static bool table_clean(lua_State *L, int t, const lp_rec *r) {
  int k = 0, end = 2 * r->n;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (k == end || !fp_same(L, -2, &r->fp[k]) || !fp_same(L, -1, &r->fp[k + 1])) {
      lua_pop(L, 2);
      return false;
    }
    k += 2;
    lua_pop(L, 1);
  }
  return k == end;
}

/* A recorded table (or userdata) with the same entries and metatable as recorded?  Leaves
   K's stack at base. */
static bool tab_clean(lua_State *K, int base, int t, const lp_rec *r) {
  bool clean = r->n < 0 || table_clean(K, t, r);
  if (!lua_getmetatable(K, t))
    clean = clean && r->mt.type == LUA_TNIL;
  else if (!fp_same(K, -1, &r->mt))
    clean = false;
  lua_settop(K, base);
  return clean;
}

/*
** Table i as recorded?  An image that matches says so without the walk (image.h); one that does
** not sends the table to the restore, whose one traversal puts back what differs and tells
** whether anything did (the bytes may change without the contents: a rehash, a dead key, a
** length hint), then takes a new image.  A walk here first would traverse the table twice when
** it did change, the common case.  In verify mode the walk runs for a matching image too and
** must agree.
*/
static bool tab_clean_imaged(lua_State *K, int base, int i, lp_snapshot *s) {
  lp_rec *r = &s->tab[i];
  if (s->image == LP_IMAGE_OFF || r->n < 0)
    return tab_clean(K, base, LP_K_TABLE(i), r);
  if (!lp_image_same(&r->img))
    return false;
  if (s->image == LP_IMAGE_VERIFY && !tab_clean(K, base, LP_K_TABLE(i), r))
    lp_image_disagree(i);
  return true;
}

/* A recorded function with the same upvalues (and cells) as recorded?  Leaves K's stack at base. */
static bool fn_clean(lua_State *K, int base, int f, const lp_rec *r) {
  for (int u = 1; u <= r->n; u++) {
    if (r->uid != NULL && lua_upvalueid(K, f, u) != r->uid[u - 1])
      return false; /* debug.upvaluejoin */
    lua_getupvalue(K, f, u);
    bool same = fp_same(K, -1, &r->fp[u - 1]);
    lua_settop(K, base);
    if (!same)
      return false;
  }
  return true;
}

/* A recorded coroutine as it was: status, stack, hook?  Reads its stack, pushes nothing. */
static bool thr_clean(lua_State *K, int t, const lp_thr *r) {
  lua_State *co = lua_tothread(K, t);
  if (lua_status(co) != r->status || lua_gettop(co) != r->top || lua_gethook(co) != r->hook ||
      lua_gethookmask(co) != r->mask || lua_gethookcount(co) != r->count)
    return false;
  for (int i = 1; i <= r->top; i++)
    if (!fp_same(co, i, &r->fp[i - 1]))
      return false;
  return true;
}

int lp_snapshot_find_dirty(lp_snapshot *s) {
  lua_State *K = s->check;
  int base = LP_K_BASE(s);
  lp_assert(lua_gettop(K) == base);
  s->ndirty = 0;
  s->oversized = false;
  for (int i = 0; i < s->ntab; i++)
    if (!tab_clean_imaged(K, base, i, s))
      s->dirty[s->ndirty++] = i;
  for (int i = 0; i < s->nfn; i++)
    if (!fn_clean(K, base, LP_K_FUNC(s, i), &s->fn[i]))
      s->dirty[s->ndirty++] = -1 - i;
  s->thread_changed = false;
  for (int i = 0; i < s->nthr && !s->thread_changed; i++)
    s->thread_changed = !thr_clean(K, LP_K_THREAD(s, i), &s->thr[i]);
  return s->ndirty + (s->thread_changed || s->oversized ? 1 : 0);
}

/* ---- restoring ----------------------------------------------------------------------------- */

typedef struct restore_args {
  lp_snapshot *s;
  int removed;
  bool changed; /* something was put back (a dirty table may have changed only its bytes) */
} restore_args;

/*
** Puts back function i's upvalues: a Lua function joined elsewhere is joined back to its own
** cell (its keeper's), then each value is put back (which also restores every closure sharing
** that cell).
*/
static void restore_function(lua_State *L, const lp_rec *r, int fsnap, int i) {
  lua_rawgeti(L, fsnap, 2 * (lua_Integer)i + 1);
  lua_rawgeti(L, fsnap, 2 * (lua_Integer)i + 2);
  for (int u = 1; u <= r->n; u++) {
    if (r->uid != NULL && lua_upvalueid(L, -2, u) != r->uid[u - 1]) {
      lua_rawgeti(L, -1, r->n + u);
      lua_upvaluejoin(L, -3, u, -1, 1);
      lua_pop(L, 1);
    }
    lua_rawgeti(L, -1, u);
    if (lua_setupvalue(L, -3, u) == NULL)
      lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/*
** Puts back the entries of table t from its copy: one traversal of t removes the keys the copy
** lacks and sets the values that differ (by fingerprint: rawequal calls -0.0 and 0.0 equal), which
** next() allows for existing fields, and fingerprints the result as it goes; neither moves an
** entry, so the traversal order is the final table's.  Only when a recorded key was missing (some
** key of the copy was never met) are the copy's entries all set again, which may move entries,
** and the result fingerprinted afresh.  Returns the keys removed.
*/
static bool fp_eq(const lp_fp *a, const lp_fp *b) {
  return a->type == b->type && a->bits == b->bits;
}

static int restore_entries(lua_State *L, lp_rec *r, int t, int copy, bool *changed) {
  int removed = 0, kept = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) { /* key, value */
    /* kept <= r->n: each kept key is a distinct key of the copy, which has r->n; the record's
       entry kept is read here before it is written */
    lp_fp *kv = &r->fp[(size_t)2 * (size_t)kept];
    lp_fp key, now;
    bool made = kept < r->n; /* else every recorded key was met: this one goes */
    if (made) {
      fp_make(L, -2, &key);
      fp_make(L, -1, &now);
      if (fp_eq(&kv[0], &key) && fp_eq(&kv[1], &now)) {
        kept++; /* where it was recorded, as recorded (the record's entries are the copy's) */
        lua_pop(L, 1);
        continue;
      }
    }
    lua_pushvalue(L, -2);
    if (lua_rawget(L, copy) == LUA_TNIL) { /* key, value, nil */
      lua_pop(L, 2);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, t);
      removed++;
      *changed = true;
      continue;
    }
    if (!made) {
      fp_make(L, -3, &key);
      fp_make(L, -2, &now);
    }
    lp_fp was; /* key, value, recorded value */
    fp_make(L, -1, &was);
    if (!fp_eq(&now, &was)) {
      lua_pushvalue(L, -3);
      lua_pushvalue(L, -2);
      lua_rawset(L, t);
      *changed = true;
    }
    kv[0] = key;
    kv[1] = was;
    kept++;
    lua_pop(L, 2);
  }
  if (kept == r->n)
    return removed;
  *changed = true; /* a recorded key was gone */
  lua_pushnil(L);
  while (lua_next(L, copy) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, t);
  }
  fingerprint_table(L, t, r);
  return removed;
}

/* Puts back table i's entries and metatable (a userdata's metatable); returns keys removed. */
static int restore_table(lua_State *L, lp_snapshot *s, int snap, int i, bool *changed) {
  lp_rec *r = &s->tab[i];
  bool image = s->image != LP_IMAGE_OFF;
  int removed = 0, base = lua_gettop(L);
  lua_Integer at = 3 * (lua_Integer)i;
  lua_rawgeti(L, snap, at + 1);
  int t = lua_gettop(L);
  if (r->n >= 0) {
    lua_rawgeti(L, snap, at + 2);
    removed = restore_entries(L, r, t, t + 1, changed);
  }
  lp_fp mt;
  push_metatable_fp(L, t, &mt);
  lua_pop(L, 1);
  if (!fp_eq(&mt, &r->mt))
    *changed = true;
  lua_rawgeti(L, snap, at + 3);
  set_recorded_metatable(L, t);
  if (r->n >= 0 && image) {
    lp_image_take(&r->img, lua_topointer(L, t));
    note_size(s, r);
  }
  lua_settop(L, base);
  return removed;
}

/* Protected: puts back the dirty tables and functions (a rawset may allocate). */
static int restore(lua_State *L) {
  restore_args *a = lua_touserdata(L, 1);
  lp_snapshot *s = a->s;
  lp_lptable_get(L, LP_T_SNAP);
  int snap = lua_gettop(L);
  lp_lptable_get(L, LP_T_FSNAP);
  int fsnap = lua_gettop(L);
  for (int d = 0; d < s->ndirty; d++) {
    int i = s->dirty[d];
    if (i < 0) {
      restore_function(L, &s->fn[-1 - i], fsnap, -1 - i);
      a->changed = true; /* found dirty by its upvalues themselves */
    } else {
      a->removed += restore_table(L, s, snap, i, &a->changed);
    }
  }
  return 0;
}

int lp_snapshot_restore(lua_State *L, lp_snapshot *s, int *removed, bool *changed) {
  *removed = 0;
  *changed = false;
  if (s->thread_changed || s->oversized)
    return LP_SNAPSHOT_UNRESTORABLE; /* the state is closed: nothing to put back */
  restore_args a = {s, 0, false};
  lua_pushcfunction(L, restore);
  lua_pushlightuserdata(L, &a);
  int status = lua_pcall(L, 1, 0, 0);
  lua_settop(L, 0);
  *removed = a.removed;
  *changed = a.changed;
  if (status == LUA_OK && s->oversized)
    return LP_SNAPSHOT_UNRESTORABLE; /* restored, but a table it put back is mostly empty slots */
  return status;
}

/*
** Type sample i's metatable (on K) as recorded?  Leaves K's stack at base.  Allocates nothing.
*/
static bool type_mt_same(lp_snapshot *s, lua_State *K, int base, int i) {
  if (!lua_getmetatable(K, 1 + i))
    return s->typemt[i].type == LUA_TNIL; /* the usual case, without a push */
  /* a metatable is a table: its fingerprint is its address */
  bool same = s->typemt[i].type == LUA_TTABLE &&
              (uint64_t)(uintptr_t)lua_topointer(K, -1) == s->typemt[i].bits;
  lua_settop(K, base);
  return same;
}

/*
** The types' metatables: an image that matches says none changed without asking the API
** (gimage.h; in verify mode the API is asked too and must agree); else each is asked, and put
** back if it differs (which makes the image match again: it holds the recorded pointers).
*/
bool lp_snapshot_restore_type_metatables(lp_snapshot *s) {
  lua_State *K = s->check;
  int base = LP_K_BASE(s);
  lp_assert(lua_gettop(K) == base);
  if (lp_gimage_mt_same(&s->gimage)) {
    if (s->image == LP_IMAGE_VERIFY)
      for (int i = 0; i < LP_TYPE_SAMPLES; i++)
        if (!type_mt_same(s, K, base, i))
          lp_gimage_disagree("the types' metatables");
    return false;
  }
  bool changed = false;
  for (int i = 0; i < LP_TYPE_SAMPLES; i++) {
    if (type_mt_same(s, K, base, i))
      continue;
    changed = true;
    lp_lptable_get(K, LP_T_TYPEMT);
    lua_rawgeti(K, -1, i + 1);
    set_recorded_metatable(K, 1 + i); /* lua_setmetatable raises nothing */
    lua_settop(K, base);
  }
  lp_assert(s->gimage.g == NULL || lp_gimage_mt_same(&s->gimage));
  return changed;
}
