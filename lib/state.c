/*
** state.c: creating and closing the pool's Lua states, and the max_states reservation.
**
** Creation is a sequence over the state's parts (sx.h), each made by its own module, in a
** protected call: the luapool table, the libraries, the wrappers, the warn function, the chunk
** cache, on_create, the sandbox's freeze, math.random's seed, and last the snapshot the reset
** checks.  Closing hands each part back.
**
** Every state is made by one generation (lp_gen): its on_create and ud, loaded once at the start
** of the creation, and its number, which the state keeps (lp_sx.generation).  luapool_reload
** publishes a new generation (lp_state_gen_publish); acquire, release and the pass close the
** states of older ones (doc/design.md, "Hot reload").
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "fault.h"
#include "frames.h"
#include "guard.h"
#include "internal.h"
#include "lptable.h"
#include "reset.h"
#include "sx.h"
#include "wait.h"

void lp_state_init(luapool *p) {
  lp_states *st = &p->states;
  atomic_init(&st->live, 0);
  atomic_init(&st->created, 0);
  for (int r = 0; r < LP_CLOSE_REASONS; r++)
    atomic_init(&st->closed_by[r], 0);
  st->first.on_create = p->cfg.on_create;
  st->first.on_create_ud = p->cfg.on_create_ud;
  st->first.number = 1;
  st->first.older = NULL;
  atomic_init(&st->first.live, 0);
  atomic_init(&st->current, &st->first);
  atomic_init(&st->generation, 1);
  const luapool_config *cfg = &p->cfg;
  bool arms = cfg->held_warn_ms != 0 || cfg->budget_instructions != 0 || cfg->budget_ms != 0;
  atomic_init(&st->hit_key, arms ? 0 : 1);
  atomic_init(&st->reloads, 0);
  lp_walk_cache_init(&st->walk);
}

void lp_state_fini(luapool *p) {
  lp_walk_cache_fini(&p->states.walk);
  lp_gen *g = atomic_load_explicit(&p->states.current, memory_order_relaxed); /* no other thread */
  while (g != &p->states.first) {
    lp_gen *older = g->older;
    lp_free(g);
    g = older;
  }
}

/*
** A waiting acquire calls this after raising the waiter count (seq_cst, lp_wait_enter), and may
** decide "no room" from the load alone, or from the value a failed CAS read.  Both are seq_cst:
** lp_state_unreserve makes room with a seq_cst decrement and then loads the waiter count
** (seq_cst), so the four operations are in the single total order S, and either the unreserve's
** load follows the waiter's increment in S (it sees the waiter and wakes it) or the decrement
** precedes this load in S (this sees the room).  A relaxed load here would let both miss (store
** buffering: allowed by C11, seen on AArch64, not on x86-64).
*/
bool lp_state_reserve(luapool *p) {
  unsigned max = p->cfg.max_states;
  unsigned n = atomic_load_explicit(&p->states.live, memory_order_seq_cst);
  do {
    if (max != 0 && n >= max)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(&p->states.live, &n, n + 1, memory_order_seq_cst,
                                                  memory_order_seq_cst));
  return true;
}

/*
** seq_cst, then a seq_cst load of the waiter count: an acquire that is about to sleep has raised
** it (seq_cst) before it tries lp_state_reserve, whose loads are seq_cst, so either it sees the
** room or this sees it waiting and wakes it (the argument at lp_state_reserve).
*/
void lp_state_unreserve(luapool *p) {
  unsigned was = atomic_fetch_sub_explicit(&p->states.live, 1, memory_order_seq_cst);
  lp_assert(was > 0);
  (void)was;
  if (lp_wait_any(&p->wait))
    lp_wait_wake_one(&p->wait);
}

static int panic_f(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  (void)fprintf(stderr, "luapool: PANIC: unprotected error in call to Lua API (%s)\n",
                msg != NULL ? msg : "error object is not a string");
  return 0; /* Lua aborts */
}

static const struct {
  unsigned bit;
  const char *name;
  lua_CFunction open;
} libraries[] = {
    {LUAPOOL_LIB_BASE, LUA_GNAME, luaopen_base},
    {LUAPOOL_LIB_PACKAGE, LUA_LOADLIBNAME, luaopen_package},
    {LUAPOOL_LIB_COROUTINE, LUA_COLIBNAME, luaopen_coroutine},
    {LUAPOOL_LIB_TABLE, LUA_TABLIBNAME, luaopen_table},
    {LUAPOOL_LIB_IO, LUA_IOLIBNAME, luaopen_io},
    {LUAPOOL_LIB_OS, LUA_OSLIBNAME, luaopen_os},
    {LUAPOOL_LIB_STRING, LUA_STRLIBNAME, luaopen_string},
    {LUAPOOL_LIB_MATH, LUA_MATHLIBNAME, luaopen_math},
    {LUAPOOL_LIB_UTF8, LUA_UTF8LIBNAME, luaopen_utf8},
    {LUAPOOL_LIB_DEBUG, LUA_DBLIBNAME, luaopen_debug},
};

/* LUAPOOL_LIB_OS_TIME without LUAPOOL_LIB_OS: os holds clock, date, difftime and time only. */
static void trim_os(lua_State *L) {
  static const char *const keep[] = {"clock", "date", "difftime", "time"};
  lua_getglobal(L, LUA_OSLIBNAME);
  lua_createtable(L, 0, 4);
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    lua_getfield(L, -2, keep[i]);
    lua_setfield(L, -2, keep[i]);
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, LUA_OSLIBNAME);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, LUA_OSLIBNAME);
  lua_settop(L, 0);
}

static void open_libraries(lua_State *L, unsigned libs) {
  bool os_time_only = (libs & LUAPOOL_LIB_OS_TIME) && !(libs & LUAPOOL_LIB_OS);
  if (os_time_only)
    libs |= LUAPOOL_LIB_OS; /* opened, then trimmed */
  for (size_t i = 0; i < sizeof libraries / sizeof libraries[0]; i++) {
    if (libs & libraries[i].bit) {
      luaL_requiref(L, libraries[i].name, libraries[i].open, 1);
      lua_pop(L, 1);
    }
  }
  if (os_time_only)
    trim_os(L);
}

typedef struct init_args {
  const luapool_config *cfg;
  const lp_gen *gen; /* on_create and its ud */
  lp_sx *x;
  lp_walk_cache *walk;
  int on_create_rc;
} init_args;

/* Runs protected: a Lua error here (memory, or raised by on_create) fails the creation. */
static int state_init(lua_State *L) {
  init_args *a = lua_touserdata(L, 1);
  lp_sx *x = a->x;
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTOP); /* luapool's parts, below, make what the state keeps (doc/design.md) */
  lp_lptable_create(L);
  open_libraries(L, a->cfg->libs);
  lp_frames_probe(L); /* once per process: before a stop's first walk of the frames */
  lp_budget_open(L, x, a->cfg->stack_limit);
  lp_guard_open(L); /* on the stock functions: the sandbox's load charges for itself */
  lp_sandbox_open(L, a->cfg->libs);
  lp_warn_open(L, &x->warn, a->cfg);
  lp_chunk_open(L, &x->chunks);
  lua_gc(L, LUA_GCRESTART); /* on_create runs with the collector as in any state */
  if (a->gen->on_create != NULL) {
    lp_module_begin(&x->modules);
    a->on_create_rc = lp_cb_on_create(a->gen->on_create, a->gen->on_create_ud, L);
    lp_module_end(&x->modules);
    if (a->on_create_rc != 0)
      return 0;
  }
  lua_settop(L, 0);
  bool running = lua_gc(L, LUA_GCISRUNNING); /* on_create may have stopped it: left so */
  lua_gc(L, LUA_GCSTOP);
  if (a->cfg->libs & LUAPOOL_LIB_SANDBOX)
    lp_sandbox_freeze(L);
  lp_entropy_seed_open(L, &x->seed);
  lp_snapshot_record(L, &x->snapshot, a->walk);
  if (running)
    lua_gc(L, LUA_GCRESTART);
  return 0;
}

/* The parts a state needs before lua_newstate; NULL when out of memory. */
static lp_sx *sx_new(const luapool_config *cfg) {
  lp_sx *x = lp_calloc(1, sizeof *x);
  if (x == NULL)
    return NULL;
  lp_alloc_init(&x->alloc, cfg->mem_limit);
  lp_budget_init(&x->budget);
  lp_chunk_init(&x->chunks, cfg->chunk_cache);
  return x;
}

/* Hands each part back, after lua_close. */
static void sx_free(lp_sx *x) {
  lp_snapshot_free(&x->snapshot);
  lp_chunk_free(&x->chunks);
  lp_free(x);
}

/* Runs the creation sequence on L; LUAPOOL_OK, or the error (logged). */
static int state_fill(luapool *p, const lp_gen *g, lua_State *L, lp_sx *x) {
  init_args a = {&p->cfg, g, x, &p->states.walk, 0};
  lua_pushcfunction(L, state_init);
  lua_pushlightuserdata(L, &a);
  lp_cb_mark mark = lp_cb_save();
  int status = lua_pcall(L, 1, 0, 0);
  lp_cb_restore(mark); /* an error raised in on_create unwound past the callback's own restore */
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "cannot create a Lua state: %s",
           msg != NULL ? msg : "(error object is not a string)");
    return status == LUA_ERRMEM ? LUAPOOL_ENOMEM : LUAPOOL_EINIT;
  }
  if (a.on_create_rc != 0) {
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "cannot create a Lua state: on_create returned %d",
           a.on_create_rc);
    return LUAPOOL_EINIT;
  }
  lua_settop(L, 0);
  return LUAPOOL_OK;
}

/*
** The current generation, loaded with acquire: it pairs with lp_state_gen_publish's release
** stores, so a creation that starts after a thread saw the new number (lp_pool_generation, an
** acquire load, or its own reload) reads that generation or a later one, never an older: the
** store of current is sequenced before the store of the number that the load read, hence
** happens before this load (write-read coherence).
*/
int lp_state_new(luapool *p, lp_slot **out) {
  return lp_state_new_of(p, atomic_load_explicit(&p->states.current, memory_order_acquire), out);
}

int lp_state_new_of(luapool *p, lp_gen *g, lp_slot **out) {
  lp_slot *s = lp_slot_alloc(&p->arena);
  lp_sx *x = s != NULL ? sx_new(&p->cfg) : NULL;
  lua_State *L = x != NULL ? lp_alloc_newstate(&x->alloc) : NULL;
  if (L == NULL) {
    if (x != NULL)
      sx_free(x);
    if (s != NULL)
      lp_slot_free(&p->arena, s);
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "cannot create a Lua state: out of memory");
    return LUAPOOL_ENOMEM;
  }
  lua_atpanic(L, panic_f);
  s->x = x;
  *(lp_slot **)lua_getextraspace(L) = s;
  int rc = state_fill(p, g, L, x);
  if (rc != LUAPOOL_OK) {
    lua_close(L);
    sx_free(x);
    lp_slot_free(&p->arena, s);
    return rc;
  }
  lp_alloc_settle(&x->alloc);
  lp_sandbox_settle(&x->sandbox);
  atomic_store_explicit(&s->L, L, memory_order_relaxed);
  x->generation = g->number;
  x->gen = g;
  uint64_t nth = atomic_fetch_add_explicit(&p->states.created, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g->live, 1, memory_order_relaxed); /* a count: orders nothing */
  lp_upkeep_init(&s->upkeep, &p->cfg, lp_upkeep_now(&p->clock), p->serial, nth);
  if (p->cfg.on_state != NULL)
    lp_cb_on_state(&p->cfg, LUAPOOL_STATE_CREATED, 0, L);
  *out = s;
  return LUAPOOL_OK;
}

/*
** Closes the state of a slot nobody else can reach (popped from a list, or checked out by the
** caller) and returns the slot to the spare list; its max_states reservation stays the caller's.
*/
void lp_state_close_keep(luapool *p, lp_slot *s, int reason) {
  lp_assert(lp_slot_state(s) != LP_SLOT_EMPTY && s->x != NULL);
  lp_assert(reason >= LUAPOOL_CLOSE_TRIMMED && reason < LP_CLOSE_REASONS);
  lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
  if (p->cfg.on_state != NULL)
    lp_cb_on_state(&p->cfg, LUAPOOL_STATE_CLOSED, reason, L);
  lp_gen *g = s->x->gen;
  lp_reset_defuse(s->x, L); /* lua_close runs no code a request left behind */
  lua_close(L);
  sx_free(s->x);
  lp_slot_free(&p->arena, s);
  atomic_fetch_add_explicit(&p->states.closed_by[reason], 1, memory_order_relaxed);
  unsigned was = atomic_fetch_sub_explicit(&g->live, 1, memory_order_relaxed); /* a count */
  lp_assert(was > 0);
  (void)was;
}

/* The same, then the reservation goes back to max_states and a waiter, who may now create a
   state, is woken. */
void lp_state_close(luapool *p, lp_slot *s, int reason) {
  lp_state_close_keep(p, s, reason);
  lp_state_unreserve(p);
}

uint64_t lp_state_counts(luapool *p, uint64_t closed_by[LP_CLOSE_REASONS]) {
  for (int r = 0; r < LP_CLOSE_REASONS; r++)
    closed_by[r] = atomic_load_explicit(&p->states.closed_by[r], memory_order_relaxed);
  return atomic_load_explicit(&p->states.created, memory_order_relaxed);
}

unsigned lp_state_live(luapool *p) {
  uint64_t closed_by[LP_CLOSE_REASONS], closed = 0;
  uint64_t created = lp_state_counts(p, closed_by);
  for (int r = 0; r < LP_CLOSE_REASONS; r++)
    closed += closed_by[r];
  return created > closed ? (unsigned)(created - closed) : 0;
}

/* ---- generations ---------------------------------------------------------------------------- */

/*
** current is loaded relaxed: the caller holds the pass mutex, under which every reload stored it,
** so the mutex orders the last store before this load.
*/
lp_gen *lp_state_gen_next(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud) {
  lp_gen *cur = atomic_load_explicit(&p->states.current, memory_order_relaxed);
  lp_gen *g = lp_calloc(1, sizeof *g);
  if (g == NULL)
    return NULL;
  g->on_create = on_create != NULL ? on_create : cur->on_create;
  g->on_create_ud = on_create != NULL ? ud : cur->on_create_ud;
  g->number = cur->number + 1;
  g->older = cur;
  atomic_init(&g->live, 0);
  return g;
}

/*
** current first, then the number, both release.  A thread whose acquire load reads the new number
** (lp_pool_generation) synchronizes with the second store, so the first happens before anything
** it does next: its creations load current with acquire and get g or a later generation, never
** the one g replaces (else an acquire that closed an old state could create another old one).
** The release also publishes g's fields, which never change from here on.
**
** hit_key goes between the two (release), unless it is 0 (a pool that arms, or one shut down
** meanwhile: the CAS fails and it stays 0).  Before the number, not after: a thread that read
** the new number (luapool_generation) then reads this key or a later one in its next acquire
** (the store happens before that load: write-read coherence), so its magazine hit turns down
** every state older than the number it saw.  Stored after the number, the key would still name
** the old generation for a while, and a hit would hand such a state out (test_reload's
** acquires_racing_reloads_never_get_a_state_older_than_they_saw caught that order).  Between
** the two stores the key is ahead of the number: a hit may take a state of g, which is newer
** than the number its thread can have seen.
*/
void lp_state_gen_publish(luapool *p, lp_gen *g) {
  lp_states *st = &p->states;
  atomic_store_explicit(&st->current, g, memory_order_release);
  uint64_t key = atomic_load_explicit(&st->hit_key, memory_order_relaxed);
  if (key != 0)
    atomic_compare_exchange_strong_explicit(&st->hit_key, &key, g->number, memory_order_release,
                                            memory_order_relaxed);
  atomic_store_explicit(&st->generation, g->number, memory_order_release);
  atomic_fetch_add_explicit(&st->reloads, 1, memory_order_relaxed); /* a count */
}

void lp_state_key_close(luapool *p) {
  atomic_store_explicit(&p->states.hit_key, 0, memory_order_seq_cst);
}

/* g was never published: only the reloading thread ever had it, so relaxed. */
void lp_state_gen_drop(lp_gen *g) {
  lp_assert(atomic_load_explicit(&g->live, memory_order_relaxed) == 0);
  lp_free(g);
}

/*
** States that exist minus those of the current generation: the rest are older.  Relaxed counts
** read at slightly different times, so while threads create and close states the answer may be
** off either way for a moment (the pass asks again next time; acquire and release check every
** state themselves); once the pool is quiet it is exact.
*/
bool lp_state_any_old(luapool *p) {
  /* acquire: g is dereferenced, and its initialization was published with release */
  lp_gen *g = atomic_load_explicit(&p->states.current, memory_order_acquire);
  unsigned current = atomic_load_explicit(&g->live, memory_order_relaxed);
  return lp_state_live(p) > current;
}

uint64_t lp_state_reloads(luapool *p) {
  return atomic_load_explicit(&p->states.reloads, memory_order_relaxed); /* a count, a snapshot */
}
