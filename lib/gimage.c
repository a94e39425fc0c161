/*
** gimage.c: the global image (gimage.h).
**
** The layout below describes the start of Lua 5.4.4's lua_State and global_State (lstate.h) in
** luapool's own names, up to the types' metatables: everything the image reads, and the fields
** before them that place them.  Only this file reads it, and only through the thread a state's
** snapshot keeps (the global state lives as long as the state).
*/
#include <lauxlib.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gimage.h"

#if LP_LAYOUT_BUILT

/* A value: 8 bytes of payload, then its type tag (TValue). */
typedef struct lp_gtv {
  void *p;
  unsigned char tt;
} lp_gtv;

/* Lua's TM_N metamethod names, the index of __call among them, and its list of the collector's
   object lists (allgc to finobjrold) between the settings and the main thread. */
#define LP_G_TM_N 25
#define LP_G_TM_INDEX 0
#define LP_G_TM_CALL 23
#define LP_G_TM_CLOSE 24
#define LP_G_GCLISTS 17

typedef struct lp_lglobal {
  lua_Alloc frealloc;
  void *ud;
  ptrdiff_t totalbytes, gcdebt;  /* l_mem */
  size_t gcestimate, lastatomic; /* lu_mem; lastatomic != 0: a generational mode after a bad
                                    collection, which runs as incremental meanwhile */
  struct {
    void *hash;
    int nuse, size;
  } strt;
  lp_gtv registry, nilvalue;
  unsigned seed;
  unsigned char currentwhite, gcstate, gckind, gcstopem, genminormul, genmajormul, gcstp,
      gcemergency, gcpause, gcstepmul, gcstepsize;
  void *gclists[LP_G_GCLISTS];
  void *twups;
  lua_CFunction panic;
  lua_State *mainthread;
  void *memerrmsg;
  const void *tmname[LP_G_TM_N];
  const void *mt[LP_GIMAGE_TYPES];
} lp_lglobal;

/* A thread: the collector's header (next, tt, marked), status, allowhook, nci, top, its global
   state, its call info, then the end and the start of its stack (slots are lp_gtv: 16 bytes). */
typedef struct lp_lthread {
  void *next;
  unsigned char tt, marked, status, allowhook;
  unsigned short nci;
  lp_gtv *top;
  lp_lglobal *g;
  const lp_gtv *const *ci; /* a CallInfo, whose first field is its function's slot */
  lp_gtv *stack_last;
  lp_gtv *stack;
} lp_lthread;

_Static_assert(sizeof(lp_gtv) == 16, "a stack slot is a TValue and its padding: 16 bytes");

#define LP_G_KGC_INC 0 /* gckind */
#define LP_G_KGC_GEN 1
#define LP_G_GCSTPUSR 1 /* gcstp: stopped by lua_gc(LUA_GCSTOP) */
#define LP_G_VTHREAD LUA_TTHREAD
#define LP_G_CTABLE (LUA_TTABLE | (1 << 6)) /* a table's tag, collectable bit set */

/*
** A probe's verdict, once per process: *v (0: not probed yet), else probe()'s, kept unless it is
** 0 (no memory: a transient failure must not turn a layout off for the process).  Relaxed, as
** image.c's: each thread that reads 0 probes for itself, and all probes agree.
*/
static bool verdict_once(_Atomic int *v, int (*probe_fn)(void)) {
  int verdict = atomic_load_explicit(v, memory_order_relaxed);
  if (verdict == 0) {
    verdict = probe_fn();
    if (verdict != 0)
      atomic_store_explicit(v, verdict, memory_order_relaxed);
  }
  return verdict > 0;
}

#endif /* LP_LAYOUT_BUILT */

#if LP_GIMAGE_BUILT

/* Lua stores pause, step multiplier and generational major multiplier divided by 4 (lgc.h,
   setgcparam), the step size and minor multiplier as they are. */
static bool gc_settings_are(const lp_lglobal *g, int pause, int stepmul, int stepsize) {
  return g->gcpause == pause / 4 && g->gcstepmul == stepmul / 4 && g->gcstepsize == stepsize;
}

static bool gen_settings_are(const lp_lglobal *g, int minor, int major) {
  return g->genminormul == minor && g->genmajormul == major / 4;
}

static const lp_lglobal *global_of(lua_State *L) {
  return ((const lp_lthread *)(const void *)L)->g;
}

static bool gc_clean(const lp_lglobal *g) {
  return g->gckind == LP_G_KGC_INC && g->lastatomic == 0 && g->gcstp == 0 &&
         gc_settings_are(g, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE) &&
         gen_settings_are(g, LP_GC_GENMINOR, LP_GC_GENMAJOR);
}

/* ---- the probe ---------------------------------------------------------------------------- */

/* g->mt as the probe expects it: want[t] for each type t (NULL: none). */
static bool mts_are(const lp_lglobal *g, const void *const want[LP_GIMAGE_TYPES]) {
  for (int t = 0; t < LP_GIMAGE_TYPES; t++)
    if (g->mt[t] != want[t])
      return false;
  return true;
}

/* Pushes a value of type t (one with a per-type metatable). */
static void push_sample(lua_State *P, int t) {
  switch (t) {
  case LUA_TNIL:
    lua_pushnil(P);
    break;
  case LUA_TBOOLEAN:
    lua_pushboolean(P, 1);
    break;
  case LUA_TLIGHTUSERDATA:
    lua_pushlightuserdata(P, (void *)P);
    break;
  case LUA_TNUMBER:
    lua_pushinteger(P, 1);
    break;
  case LUA_TSTRING:
    lua_pushliteral(P, "");
    break;
  case LUA_TFUNCTION:
    lua_pushcfunction(P, lua_error);
    break;
  default:
    lua_pushthread(P);
    break;
  }
}

static const int probe_types[] = {LUA_TNIL,    LUA_TBOOLEAN,  LUA_TLIGHTUSERDATA, LUA_TNUMBER,
                                  LUA_TSTRING, LUA_TFUNCTION, LUA_TTHREAD};

/* The fields around the metatables hold what they must (a fresh state: no metatable yet). */
static bool frame_holds(lua_State *P, const lp_lglobal *g) {
  void *ud;
  lua_Alloc f = lua_getallocf(P, &ud);
  if (((const lp_lthread *)(const void *)P)->tt != LP_G_VTHREAD || g->mainthread != P ||
      g->frealloc != f || g->ud != ud || g->registry.tt != LP_G_CTABLE ||
      g->registry.p != lua_topointer(P, LUA_REGISTRYINDEX) || g->nilvalue.tt != LUA_TNIL)
    return false;
  static const struct {
    int tm;
    const char *name;
  } names[] = {{LP_G_TM_INDEX, "__index"}, {LP_G_TM_CALL, "__call"}, {LP_G_TM_CLOSE, "__close"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    lua_pushstring(P, names[i].name); /* a short string: the one object with these bytes */
    bool same = g->tmname[names[i].tm] == lua_topointer(P, -1);
    lua_pop(P, 1);
    if (!same)
      return false;
  }
  const void *none[LP_GIMAGE_TYPES] = {NULL};
  return mts_are(g, none);
}

/* Each type's metatable, set and cleared through the API, reads where it must and nowhere else. */
static bool metatables_read(lua_State *P, const lp_lglobal *g) {
  const void *want[LP_GIMAGE_TYPES] = {NULL};
  for (size_t i = 0; i < sizeof probe_types / sizeof probe_types[0]; i++) {
    int t = probe_types[i];
    push_sample(P, t);
    lua_newtable(P);
    want[t] = lua_topointer(P, -1);
    lua_setmetatable(P, -2);
    lua_pop(P, 1);
    if (!mts_are(g, want))
      return false;
  }
  for (size_t i = 0; i < sizeof probe_types / sizeof probe_types[0]; i++) {
    int t = probe_types[i];
    push_sample(P, t);
    lua_pushnil(P);
    lua_setmetatable(P, -2);
    lua_pop(P, 1);
    want[t] = NULL;
    if (!mts_are(g, want))
      return false;
  }
  return true;
}

/* Each collector setting, changed through the API, reads as it must, and the reset's calls make
   the bytes gc_clean calls clean. */
static bool collector_reads(lua_State *P, const lp_lglobal *g) {
  if (!lua_gc(P, LUA_GCISRUNNING) || g->gcstp != 0 || g->gckind != LP_G_KGC_INC ||
      g->lastatomic != 0 || !gc_clean(g))
    return false; /* a fresh state: Lua's defaults, which are the LP_GC_ ones */
  lua_gc(P, LUA_GCSTOP);
  if (g->gcstp != LP_G_GCSTPUSR || gc_clean(g))
    return false;
  lua_gc(P, LUA_GCRESTART);
  if (g->gcstp != 0 || !gc_clean(g))
    return false;
  lua_gc(P, LUA_GCINC, 300, 0, 0);
  if (!gc_settings_are(g, 300, LP_GC_STEPMUL, LP_GC_STEPSIZE) || gc_clean(g))
    return false;
  lua_gc(P, LUA_GCINC, LP_GC_PAUSE, 200, 0);
  if (!gc_settings_are(g, LP_GC_PAUSE, 200, LP_GC_STEPSIZE) || gc_clean(g))
    return false;
  lua_gc(P, LUA_GCINC, 0, LP_GC_STEPMUL, 14);
  if (!gc_settings_are(g, LP_GC_PAUSE, LP_GC_STEPMUL, 14) || gc_clean(g))
    return false;
  lua_gc(P, LUA_GCINC, 0, 0, LP_GC_STEPSIZE);
  if (!gc_clean(g))
    return false;
  if (lua_gc(P, LUA_GCGEN, 10, 60) != LUA_GCINC || g->gckind != LP_G_KGC_GEN ||
      !gen_settings_are(g, 10, 60) || gc_clean(g))
    return false;
  if (lua_gc(P, LUA_GCINC, 0, 0, 0) != LUA_GCGEN || g->gckind != LP_G_KGC_INC ||
      g->lastatomic != 0 || !gen_settings_are(g, 10, 60) || gc_clean(g))
    return false; /* incremental again, the generational settings still changed */
  lua_gc(P, LUA_GCGEN, LP_GC_GENMINOR, LP_GC_GENMAJOR);
  lua_gc(P, LUA_GCINC, 0, 0, 0);
  return gc_clean(g) && lua_gc(P, LUA_GCISRUNNING);
}

/* The probe's steps, protected (they allocate in P): the verdict into the light userdata. */
static int probe_steps(lua_State *P) {
  int *verdict = lua_touserdata(P, 1);
  const lp_lglobal *g = global_of(P);
  *verdict = frame_holds(P, g) && metatables_read(P, g) && collector_reads(P, g) ? 1 : -1;
  return 0;
}

/*
** On a state of its own, which nothing else sees.  1: the layout is the one described above;
** -1: it is not; 0: no memory for the probe (no verdict: a transient failure must not turn the
** image off for the process).
*/
static int probe(void) {
  lua_State *P = luaL_newstate();
  if (P == NULL)
    return 0;
  int verdict = 0;
  lua_pushcfunction(P, probe_steps);
  lua_pushlightuserdata(P, &verdict);
  if (lua_pcall(P, 1, 0, 0) != LUA_OK)
    verdict = 0; /* out of memory: the only error the steps can raise */
  lua_close(P);
  return verdict;
}

/* The verdict, once per process (0: not probed yet): as image.c's, relaxed. */
static _Atomic int probed;

static bool accepted(void) {
  return verdict_once(&probed, probe);
}

void lp_gimage_take(lp_gimage *im, lua_State *L) {
  im->g = NULL;
  if (!accepted())
    return;
  const lp_lglobal *g = global_of(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD); /* preallocated: allocates nothing */
  bool ours = g->mainthread == lua_tothread(L, -1);
  lua_pop(L, 1);
  if (!ours)
    return; /* not what the probe saw: the API decides for this state */
  memcpy(im->mt, g->mt, sizeof im->mt);
  im->g = g;
}

bool lp_gimage_mt_same(const lp_gimage *im) {
  const lp_lglobal *g = im->g;
  if (g == NULL)
    return false;
  uintptr_t diff = 0; /* nine words, no call and one branch: half memcmp's instructions */
#pragma GCC unroll 9
  for (int t = 0; t < LP_GIMAGE_TYPES; t++)
    diff |= (uintptr_t)g->mt[t] ^ (uintptr_t)im->mt[t];
  return diff == 0;
}

bool lp_gimage_gc_clean(const lp_gimage *im) {
  return im->g != NULL && gc_clean(im->g);
}

bool lp_gimage_gc_gen_changed(const lp_gimage *im) {
  const lp_lglobal *g = im->g;
  return g != NULL && !gen_settings_are(g, LP_GC_GENMINOR, LP_GC_GENMAJOR);
}

#else /* not built: the API decides every time */

void lp_gimage_take(lp_gimage *im, lua_State *L) {
  (void)L;
  im->g = NULL;
}

bool lp_gimage_mt_same(const lp_gimage *im) {
  (void)im;
  return false;
}

bool lp_gimage_gc_clean(const lp_gimage *im) {
  (void)im;
  return false;
}

bool lp_gimage_gc_gen_changed(const lp_gimage *im) {
  (void)im;
  return false;
}

#endif

/* ---- the stack ---------------------------------------------------------------------------- */

#if LP_LAYOUT_BUILT

/* The probe's allocator: P's own, noting the last new block without an old one (a vector). */
typedef struct probe_rec {
  lua_Alloc f;
  void *ud;
  void *last;
  size_t last_bytes;
} probe_rec;

static void *probe_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  probe_rec *r = ud;
  void *q = r->f(r->ud, ptr, osize, nsize);
  if (ptr == NULL && osize == 0 && q != NULL) {
    r->last = q;
    r->last_bytes = nsize;
  }
  return q;
}

/* Did the stack just move to the vector the allocator handed out last, of want slots? */
static bool moved_to(const lp_lthread *t, const probe_rec *r, size_t want) {
  return (void *)t->stack == r->last && (size_t)(t->stack_last - t->stack) == want &&
         r->last_bytes == (want + LP_STACK_EXTRA) * sizeof(lp_gtv);
}

/*
** The stack's words read as they must: top against lua_gettop (through the frame's function
** slot), a pushed integer where top was, and both of Lua's growths (to what a large
** lua_checkstack needs, and to twice the size when one more slot is missing) as new vectors of
** that many slots plus LP_STACK_EXTRA, which the stack then is.
*/
static int stack_steps(lua_State *P) {
  int *verdict = lua_touserdata(P, 1);
  const lp_lthread *t = (const lp_lthread *)(const void *)P;
  probe_rec *r = lua_touserdata(P, 2);
  *verdict = -1;
  const lp_gtv *func = *t->ci;
  if (t->tt != LUA_TTHREAD || t->g == NULL || func < t->stack ||
      t->top - func - 1 != lua_gettop(P) || t->stack_last < t->top)
    return 0;
  const lp_gtv *before = t->top;
  lua_pushinteger(P, 0x5a17);
  lua_Integer got;
  memcpy(&got, &t->top[-1].p, sizeof got);
  if (t->top != before + 1 || got != 0x5a17 || t->top[-1].tt != LUA_TNUMBER) /* LUA_VNUMINT */
    return 0;
  size_t size = (size_t)(t->stack_last - t->stack), inuse = (size_t)(t->top - t->stack);
  int n = (int)(3 * size);
  if (!lua_checkstack(P, n) || !moved_to(t, r, inuse + (size_t)n))
    return 0;
  size = (size_t)(t->stack_last - t->stack);
  int fill = (int)(t->stack_last - t->top) - 1;
  if (!lua_checkstack(P, fill))
    return 0;
  for (int i = 0; i < fill; i++)
    lua_pushnil(P);
  if (t->stack_last - t->top != 1 || !lua_checkstack(P, 1) || !moved_to(t, r, 2 * size))
    return 0;
  *verdict = lua_tointeger(P, 3) == 0x5a17 ? 1 : -1; /* moved with the stack */
  return 0;
}

/* 1: the stack's layout is the one described; -1: it is not; 0: no memory (no verdict). */
static int stack_probe(void) {
  probe_rec r = {.last = NULL};
  lua_State *P = luaL_newstate();
  if (P == NULL)
    return 0;
  r.f = lua_getallocf(P, &r.ud);
  lua_setallocf(P, probe_alloc, &r);
  int verdict = 0;
  lua_pushcfunction(P, stack_steps);
  lua_pushlightuserdata(P, &verdict);
  lua_pushlightuserdata(P, &r);
  if (lua_pcall(P, 2, 0, 0) != LUA_OK)
    verdict = 0;
  lua_close(P);
  return verdict;
}

static _Atomic int stack_probed;

bool lp_gimage_stack_known(void) {
  return verdict_once(&stack_probed, stack_probe);
}

bool lp_gimage_stack(lua_State *L, size_t *size, size_t *inuse) {
  if (atomic_load_explicit(&stack_probed, memory_order_relaxed) <= 0)
    return false;
  const lp_lthread *t = (const lp_lthread *)(const void *)L;
  *size = (size_t)(t->stack_last - t->stack);
  *inuse = (size_t)(t->top - t->stack);
  return true;
}

#else

bool lp_gimage_stack_known(void) {
  return false;
}

bool lp_gimage_stack(lua_State *L, size_t *size, size_t *inuse) {
  (void)L;
  *size = *inuse = 0;
  return false;
}

#endif

void lp_gimage_disagree(const char *what) {
  (void)fprintf(stderr,
                "luapool: LUAPOOL_TABLE_IMAGE=verify: the global image called %s unchanged but "
                "the C API found a change: the image is unsound here; aborting\n",
                what);
  abort();
}
