/*
** reset.c: what luapool_release does to a state before the next caller gets it.
**
** LUAPOOL_RESET_STACK empties the stack.  LUAPOOL_RESET_FULL makes the state as clean as a new
** one (doc/design.md, "What reset guarantees"):
**
** After on_create (and the sandbox's freeze), lp_reset_prepare walks everything reachable from
** the registry and the types' metatables (tables: keys, values, metatables; functions:
** upvalues; userdata: metatables, user values) and records each table and function that a script
** could change: a copy of its entries (anchored in the state, for restoring) and, C side, the
** fingerprints of its entries in traversal order.  What the FROZEN set holds (the sandbox's
** read-only tables, C functions) is walked through but not recorded.
**
** A reset traverses each recorded table and compares fingerprints in order: no hashing, no
** allocation, nothing that can raise an error.  Only when something differs does it restore,
** in protected mode: remove the keys the copy lacks, put back the copy's entries and metatable,
** then fingerprint again (the order may have changed).  Functions: the same with upvalues.
** Then the types' metatables, the hook, the collector, the warn switch, and a new math.random
** seed from the kernel.  What cannot be restored cheaply and surely taints the state.
*/
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "internal.h"

/* Registry key of the state's luapool table. */
static const char lp_key = 0;

/* Lua 5.4's collector defaults (lgc.h: LUAI_GCPAUSE, LUAI_GCMUL, LUAI_GCSTEPSIZE). */
#define LP_GC_PAUSE 200
#define LP_GC_STEPMUL 100
#define LP_GC_STEPSIZE 13
#define LP_GC_GENMINOR 20  /* LUAI_GENMINORMUL */
#define LP_GC_GENMAJOR 100 /* LUAI_GENMAJORMUL */

/*
** A table that lost this many keys keeps their empty nodes, which every later check would
** traverse: it is cheaper and surer to close the state and make a new one.
*/
#define LP_RESET_MAX_REMOVED 128

_Static_assert(sizeof(lua_Number) == sizeof(uint64_t), "lua_Number is a double");

static bool reseed(lp_sx *x);

int lp_lptable_create(lua_State *L) {
  lua_createtable(L, LP_T_COUNT, 0);
  for (int i = 1; i <= LP_T_COUNT; i++) {
    if (i == LP_T_CACHE) /* preallocated: storing a chunk must not allocate (chunk.c) */
      lua_createtable(L, (int)lp_sx_of(L)->pool->cfg.chunk_cache, 0);
    else
      lua_newtable(L);
    lua_rawseti(L, -2, i);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lp_key);
  return 0;
}

void lp_lptable_push(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lp_key);
}

static int sample_fn(lua_State *L) {
  (void)L;
  return 0;
}

/* Pushes one value of each type that has a per-type metatable (LP_TYPE_SAMPLES values). */
void lp_push_type_samples(lua_State *L) {
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  lua_pushlightuserdata(L, (void *)&lp_key);
  lua_pushinteger(L, 0);
  lua_pushliteral(L, "__index"); /* fixed by Lua (a metamethod name): pushing it allocates nothing */
  lua_pushcfunction(L, sample_fn);
  lua_pushthread(L);
}

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

/* A recorded metatable on top of the stack: false (none) becomes nil, for lua_setmetatable. */
static void false_to_nil(lua_State *L) {
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

/* ---- recording (lp_reset_prepare) --------------------------------------------------------- */

typedef struct walk {
  lp_sx *x;
  int seen, todo, frozen, snap, fsnap;
  lua_Integer ntodo;
  int tcap, fcap;
} walk;

static void *grow(lua_State *L, void *p, int *cap, int need, size_t size) {
  if (need <= *cap)
    return p;
  int n = *cap < 16 ? 16 : *cap * 2;
  void *q = realloc(p, (size_t)n * size);
  if (q == NULL)
    luaL_error(L, "not enough memory");
  *cap = n;
  return q;
}

/* Queues the value at i if the walk has not seen it. */
static void visit(lua_State *L, walk *w, int i) {
  int t = lua_type(L, i);
  if (t != LUA_TTABLE && t != LUA_TFUNCTION && t != LUA_TUSERDATA)
    return;
  i = lua_absindex(L, i);
  lua_pushvalue(L, i);
  bool seen = lua_rawget(L, w->seen) != LUA_TNIL;
  lua_pop(L, 1);
  if (seen)
    return;
  lua_pushvalue(L, i);
  lua_pushboolean(L, 1);
  lua_rawset(L, w->seen);
  lua_pushvalue(L, i);
  lua_rawseti(L, w->todo, ++w->ntodo);
}

static bool frozen(lua_State *L, walk *w, int i) {
  lua_pushvalue(L, i);
  bool f = lua_rawget(L, w->frozen) != LUA_TNIL;
  lua_pop(L, 1);
  return f;
}

/* Fingerprints table t's entries in traversal order into r (which may hold an older list). */
static void fingerprint_table(lua_State *L, int t, lp_rec *r) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    n++;
  }
  lp_fp *fp = realloc(r->fp, (size_t)(n > 0 ? 2 * n : 1) * sizeof *fp);
  if (fp == NULL)
    luaL_error(L, "not enough memory");
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

static void record_table(lua_State *L, walk *w, int t) {
  lp_sx *x = w->x;
  x->tab = grow(L, x->tab, &w->tcap, x->ntab + 1, sizeof *x->tab);
  lp_rec *r = &x->tab[x->ntab];
  r->fp = NULL;
  r->n = 0;
  fingerprint_table(L, t, r);
  x->ntab++;
  lua_Integer at = 3 * (lua_Integer)(x->ntab - 1);
  lua_pushvalue(L, t);
  lua_rawseti(L, w->snap, at + 1);
  lua_createtable(L, 0, r->n);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_rawseti(L, w->snap, at + 2);
  push_metatable_fp(L, t, &r->mt);
  lua_rawseti(L, w->snap, at + 3);
}

/* A full userdata: only its metatable is recorded (n = -1); its contents are the host's. */
static void record_userdata(lua_State *L, walk *w, int u) {
  lp_sx *x = w->x;
  x->tab = grow(L, x->tab, &w->tcap, x->ntab + 1, sizeof *x->tab);
  lp_rec *r = &x->tab[x->ntab];
  r->fp = NULL;
  r->n = -1;
  push_metatable_fp(L, u, &r->mt);
  x->ntab++;
  lua_Integer at = 3 * (lua_Integer)(x->ntab - 1);
  lua_rawseti(L, w->snap, at + 3);
  lua_pushvalue(L, u);
  lua_rawseti(L, w->snap, at + 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, w->snap, at + 2);
}

static void record_function(lua_State *L, walk *w, int f, int nup) {
  lp_sx *x = w->x;
  x->fn = grow(L, x->fn, &w->fcap, x->nfn + 1, sizeof *x->fn);
  lp_rec *r = &x->fn[x->nfn];
  r->n = nup;
  r->mt.type = LUA_TNIL;
  r->mt.bits = 0;
  r->fp = malloc((size_t)nup * sizeof *r->fp);
  if (r->fp == NULL)
    luaL_error(L, "not enough memory");
  x->nfn++;
  lua_Integer at = 2 * (lua_Integer)(x->nfn - 1);
  lua_pushvalue(L, f);
  lua_rawseti(L, w->fsnap, at + 1);
  lua_createtable(L, nup, 0);
  for (int u = 1; u <= nup; u++) {
    lua_getupvalue(L, f, u);
    fp_make(L, -1, &r->fp[u - 1]);
    lua_rawseti(L, -2, u);
  }
  lua_rawseti(L, w->fsnap, at + 2);
}

static void walk_one(lua_State *L, walk *w, int o) {
  switch (lua_type(L, o)) {
  case LUA_TTABLE:
    if (!frozen(L, w, o))
      record_table(L, w, o);
    lua_pushnil(L);
    while (lua_next(L, o) != 0) {
      visit(L, w, -2);
      visit(L, w, -1);
      lua_pop(L, 1);
    }
    if (lua_getmetatable(L, o)) {
      visit(L, w, -1);
      lua_pop(L, 1);
    }
    break;
  case LUA_TFUNCTION: {
    int nup = 0;
    while (lua_getupvalue(L, o, nup + 1) != NULL) {
      visit(L, w, -1);
      lua_pop(L, 1);
      nup++;
    }
    if (nup > 0 && !frozen(L, w, o))
      record_function(L, w, o, nup);
    break;
  }
  case LUA_TUSERDATA:
    if (!frozen(L, w, o))
      record_userdata(L, w, o);
    if (lua_getmetatable(L, o)) {
      visit(L, w, -1);
      lua_pop(L, 1);
    }
    for (int n = 1; lua_getiuservalue(L, o, n) != LUA_TNONE; n++) {
      visit(L, w, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    break;
  }
}

/* The xoshiro256** state behind math.random (lmathlib's 32-byte upvalue), or NULL. */
static unsigned char *find_ranstate(lua_State *L) {
  unsigned char *st = NULL;
  lua_getglobal(L, LUA_MATHLIBNAME);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "random") == LUA_TFUNCTION &&
      lua_getupvalue(L, -1, 1) != NULL) {
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_rawlen(L, -1) == 32)
      st = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  return st;
}

/* Protected, after on_create and the freeze: records what the reset checks. */
int lp_reset_prepare(lua_State *L) {
  lp_sx *x = lp_sx_of(L);
  x->ranstate = find_ranstate(L);
  if (x->ranstate != NULL) { /* Lua seeds from the time and addresses: a guess away */
    memset(x->seed, 0, sizeof x->seed);
    x->seed[0] = 1; /* differs from any state reseed() writes (those it compares with) */
    memcpy(x->ranstate, x->seed, sizeof x->seed);
    x->ranstate[1] = 1;
    if (!reseed(x))
      luaL_error(L, "no random bytes from the kernel for math.random's seed");
  }
  walk w = {x, 0, 0, 0, 0, 0, 0, 0, 0};
  lp_lptable_push(L);
  int lp = lua_gettop(L);
  x->check = lua_newthread(L); /* before the walk: under LIBS_ALL the luapool table is recorded */
  lua_rawseti(L, lp, LP_T_CHECK);
  lua_newtable(L);
  w.seen = lua_gettop(L);
  lua_newtable(L);
  w.todo = lua_gettop(L);
  lua_rawgeti(L, lp, LP_T_FROZEN);
  w.frozen = lua_gettop(L);
  lua_rawgeti(L, lp, LP_T_SNAP);
  w.snap = lua_gettop(L);
  lua_rawgeti(L, lp, LP_T_FSNAP);
  w.fsnap = lua_gettop(L);
  /* never recorded nor walked: the bookkeeping itself, and the cache (it changes by design) */
  static const int skip[] = {LP_T_SNAP,  LP_T_FSNAP,   LP_T_FROZEN, LP_T_CACHE,
                             LP_T_TYPEMT, LP_T_PROXIES, LP_T_CHECK};
  for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
    lua_rawgeti(L, lp, skip[i]);
    lua_pushboolean(L, 1);
    lua_rawset(L, w.seen);
  }
  lua_pushvalue(L, LUA_REGISTRYINDEX);
  visit(L, &w, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, lp, LP_T_TYPEMT);
  int typemt = lua_gettop(L);
  lp_push_type_samples(L);
  for (int i = 0; i < LP_TYPE_SAMPLES; i++) {
    push_metatable_fp(L, typemt + 1 + i, &x->typemt[i]);
    visit(L, &w, -1);
    lua_rawseti(L, typemt, i + 1);
  }
  lua_settop(L, typemt);
  while (w.ntodo > 0) {
    lua_rawgeti(L, w.todo, w.ntodo);
    lua_pushnil(L);
    lua_rawseti(L, w.todo, w.ntodo--);
    walk_one(L, &w, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  x->dirty = malloc((size_t)(x->ntab + x->nfn + 1) * sizeof *x->dirty);
  if (x->dirty == NULL)
    luaL_error(L, "not enough memory");

  /* The check thread: what the reset reads, at fixed stack indices, with no push per reset. */
  lua_State *K = x->check;
  if (!lua_checkstack(K, LP_TYPE_SAMPLES + x->ntab + x->nfn + 8))
    luaL_error(L, "not enough memory");
  lp_push_type_samples(K);
  lp_lptable_push(L);
  lua_rawgeti(L, -1, LP_T_SNAP); /* LP, SNAP */
  for (int i = 0; i < x->ntab; i++)
    lua_rawgeti(L, -1 - i, 3 * (lua_Integer)i + 1);
  lua_xmove(L, K, x->ntab);
  lua_rawgeti(L, -2, LP_T_FSNAP); /* LP, SNAP, FSNAP */
  for (int i = 0; i < x->nfn; i++)
    lua_rawgeti(L, -1 - i, 2 * (lua_Integer)i + 1);
  lua_xmove(L, K, x->nfn);
  lua_settop(L, 0);
  return 0;
}

void lp_sx_free(lp_sx *x) {
  if (x == NULL)
    return;
  for (int i = 0; i < x->ntab; i++)
    free(x->tab[i].fp);
  for (int i = 0; i < x->nfn; i++)
    free(x->fn[i].fp);
  free(x->tab);
  free(x->fn);
  free(x->dirty);
  for (unsigned i = 0; i < x->ncache; i++) {
    free(x->cache[i].name);
    free(x->cache[i].src);
  }
  free(x->cache);
  free(x);
}

/* ---- checking and restoring ---------------------------------------------------------------- */

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

typedef struct restore_args {
  lp_sx *x;
  int removed;
  int ndirty;
  int *dirty; /* >= 0: table index; < 0: function -1-index */
} restore_args;

/* Protected: puts back the dirty tables and functions (a rawset may allocate). */
static int restore(lua_State *L) {
  restore_args *a = lua_touserdata(L, 1);
  lp_lptable_push(L);
  int lp = lua_gettop(L);
  lua_rawgeti(L, lp, LP_T_SNAP);
  int snap = lua_gettop(L);
  lua_rawgeti(L, lp, LP_T_FSNAP);
  int fsnap = lua_gettop(L);
  for (int d = 0; d < a->ndirty; d++) {
    int i = a->dirty[d];
    if (i < 0) {
      i = -1 - i;
      lp_rec *r = &a->x->fn[i];
      lua_rawgeti(L, fsnap, 2 * (lua_Integer)i + 1);
      lua_rawgeti(L, fsnap, 2 * (lua_Integer)i + 2);
      for (int u = 1; u <= r->n; u++) {
        lua_rawgeti(L, -1, u);
        if (lua_setupvalue(L, -3, u) == NULL)
          lua_pop(L, 1);
      }
      lua_settop(L, fsnap);
      continue;
    }
    lua_Integer at = 3 * (lua_Integer)i;
    lua_rawgeti(L, snap, at + 1);
    int t = lua_gettop(L);
    if (a->x->tab[i].n < 0) { /* a userdata: its metatable */
      lua_rawgeti(L, snap, at + 3);
      false_to_nil(L);
      lua_setmetatable(L, t);
      lua_settop(L, fsnap);
      continue;
    }
    lua_rawgeti(L, snap, at + 2);
    int copy = t + 1;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) { /* clearing existing fields during next() is allowed */
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, copy) == LUA_TNIL) {
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, t);
        a->removed++;
      }
      lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, copy) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, t);
    }
    lua_rawgeti(L, snap, at + 3);
    false_to_nil(L);
    lua_setmetatable(L, t);
    fingerprint_table(L, t, &a->x->tab[i]);
    lua_settop(L, fsnap);
  }
  return 0;
}

/* Stack indices on the check thread. */
#define LP_K_TABLE(i) (LP_TYPE_SAMPLES + 1 + (i))
#define LP_K_FUNC(x, i) (LP_TYPE_SAMPLES + 1 + (x)->ntab + (i))

/* Lists in a->dirty what changed since it was recorded.  Raises no error, allocates nothing. */
static void find_dirty(lp_sx *x, restore_args *a) {
  lua_State *K = x->check;
  int base = lua_gettop(K);
  for (int i = 0; i < x->ntab; i++) {
    int t = LP_K_TABLE(i);
    bool clean = x->tab[i].n < 0 || table_clean(K, t, &x->tab[i]);
    if (!lua_getmetatable(K, t))
      clean = clean && x->tab[i].mt.type == LUA_TNIL;
    else if (!fp_same(K, -1, &x->tab[i].mt))
      clean = false;
    lua_settop(K, base);
    if (!clean)
      a->dirty[a->ndirty++] = i;
  }
  for (int i = 0; i < x->nfn; i++) {
    const lp_rec *r = &x->fn[i];
    for (int u = 1; u <= r->n; u++) {
      lua_getupvalue(K, LP_K_FUNC(x, i), u);
      bool same = fp_same(K, -1, &r->fp[u - 1]);
      lua_settop(K, base);
      if (!same) {
        a->dirty[a->ndirty++] = -1 - i;
        break;
      }
    }
  }
}

/* The types' metatables: put back any that changed (lua_setmetatable raises nothing). */
static bool reset_type_metatables(lp_sx *x) {
  lua_State *K = x->check;
  bool changed = false;
  int base = lua_gettop(K);
  for (int i = 0; i < LP_TYPE_SAMPLES; i++) {
    int v = 1 + i;
    bool same;
    if (!lua_getmetatable(K, v)) {
      same = x->typemt[i].type == LUA_TNIL; /* the usual case, without a push */
    } else {
      same = fp_same(K, -1, &x->typemt[i]);
      lua_settop(K, base);
    }
    if (same)
      continue;
    changed = true;
    lp_lptable_push(K);
    lua_rawgeti(K, -1, LP_T_TYPEMT);
    lua_rawgeti(K, -1, i + 1);
    false_to_nil(K);
    lua_setmetatable(K, v);
    lua_settop(K, base);
  }
  return changed;
}

/* ---- math.random's seed: from the kernel, buffered per thread --------------------------- */

#define LP_RNG_BUF 1024

static _Thread_local struct {
  unsigned char buf[LP_RNG_BUF];
  unsigned pos;
  unsigned gen;
} lp_rng = {{0}, LP_RNG_BUF, 0};

static _Atomic unsigned lp_fork_gen = 1; /* a forked child must not replay its parent's bytes */
static pthread_once_t lp_rng_once = PTHREAD_ONCE_INIT;

static void rng_after_fork(void) {
  atomic_fetch_add_explicit(&lp_fork_gen, 1, memory_order_relaxed);
}

static void rng_init(void) {
  pthread_atfork(NULL, NULL, rng_after_fork);
}

/* n <= LP_RNG_BUF bytes from getrandom(2); false if the kernel gives none. */
static bool rng_bytes(void *out, size_t n) {
  pthread_once(&lp_rng_once, rng_init);
  unsigned gen = atomic_load_explicit(&lp_fork_gen, memory_order_relaxed);
  if (lp_rng.gen != gen || LP_RNG_BUF - lp_rng.pos < n) {
    size_t got = 0;
    while (got < LP_RNG_BUF) {
      ssize_t r = getrandom(lp_rng.buf + got, LP_RNG_BUF - got, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return false;
      got += (size_t)r;
    }
    lp_rng.pos = 0;
    lp_rng.gen = gen;
  }
  memcpy(out, lp_rng.buf + lp_rng.pos, n);
  memset(lp_rng.buf + lp_rng.pos, 0, n); /* used bytes do not linger */
  lp_rng.pos += (unsigned)n;
  return true;
}

/*
** A new seed, unless math.random's state is still the one the last reseed wrote: then nobody
** drew from it, so nobody has seen the sequence the next user will get.
*/
static bool reseed(lp_sx *x) {
  if (x->ranstate == NULL || memcmp(x->ranstate, x->seed, sizeof x->seed) == 0)
    return true;
  if (!rng_bytes(x->seed, sizeof x->seed))
    return false;
  x->seed[0] |= 1; /* xoshiro's state must not be all zero */
  memcpy(x->ranstate, x->seed, sizeof x->seed);
  return true;
}

/* ---- the reset -------------------------------------------------------------------------- */

/*
** Closes pending to-be-closed variables, unwinds and shrinks the stack.  Only when something is
** left: a to-be-closed value lives on the stack, and an empty stack at the base level with
** status LUA_OK has nothing to unwind (5.4.4's lua_resetthread reallocates the stack each
** time; the collector shrinks a stack that grew).
*/
static void reset_thread(lua_State *L) {
  if (lua_gettop(L) == 0 && lua_status(L) == LUA_OK)
    return;
#if defined(HAVE_LUA_CLOSETHREAD)
  (void)lua_closethread(L, L);
#else
  (void)lua_resetthread(L);
#endif
  lua_settop(L, 0); /* an error from a __close handler is left on the stack */
}

/*
** Makes L clean for the next caller.  LP_RESET_CLEAN or LP_RESET_RESTORED: hand it out;
** LP_RESET_TAINTED or LP_RESET_BLOAT: close it.
*/
int lp_reset(luapool *p, lp_slot *s, lua_State *L) {
  lp_sx *x = s->x;
  if (p->cfg.reset == LUAPOOL_RESET_STACK) {
    lua_settop(L, 0);
    return LP_RESET_CLEAN;
  }
  if (x->finalizer)
    return LP_RESET_TAINTED; /* a user finalizer could run in the next user's turn */
  reset_thread(L);
  if (lua_gethook(L) != NULL)
    lua_sethook(L, NULL, 0, 0);
  x->budget_armed = false;

  restore_args a = {x, 0, 0, x->dirty};
  find_dirty(x, &a);
  bool changed = a.ndirty > 0;
  if (changed) {
    size_t limit = x->limit;
    x->limit = SIZE_MAX; /* putting the state back never fails for mem_limit */
    lua_pushcfunction(L, restore);
    lua_pushlightuserdata(L, &a);
    int status = lua_pcall(L, 1, 0, 0);
    x->limit = limit;
    lua_settop(L, 0);
    if (status != LUA_OK || a.removed > LP_RESET_MAX_REMOVED)
      return LP_RESET_TAINTED;
  }
  changed |= reset_type_metatables(x);
  if (p->cfg.bloat_kb != 0 && x->bytes / 1024 > p->cfg.bloat_kb) {
    /* Rare (a request that allocated megabytes), so paid here, once what the user kept is
       unreachable: the garbage goes; a heap still above the bound closes the state.  No user
       finalizer can run: a state with one is tainted above. */
    lua_gc(L, LUA_GCCOLLECT);
    if (x->bytes / 1024 > p->cfg.bloat_kb)
      return LP_RESET_BLOAT;
  }
  if (!lua_gc(L, LUA_GCISRUNNING))
    lua_gc(L, LUA_GCRESTART);
  if (lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE) == LUA_GCGEN) {
    /* left generational: its parameters go back too (switching runs a full collection, paid
       only by states whose user chose that mode) */
    lua_gc(L, LUA_GCGEN, LP_GC_GENMINOR, LP_GC_GENMAJOR);
    lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE);
  }
  lp_sandbox_warn_reset(x);
  if (!reseed(x))
    return LP_RESET_TAINTED; /* never hand out a sequence someone may know */
  x->finalizer = false;
  lua_settop(L, 0);
  return changed ? LP_RESET_RESTORED : LP_RESET_CLEAN;
}
