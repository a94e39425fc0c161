/*
** state.c: creating and closing the pool's Lua states, and the max_states reservation.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* The upkeep's clock: the config's, or CLOCK_MONOTONIC, in milliseconds. */
uint64_t lp_clock_ms(luapool *p) {
  if (p->cfg.clock_ms != NULL)
    return p->cfg.clock_ms(p->cfg.clock_ud);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* splitmix64: a well-mixed value from a counter, for the lifetime jitter. */
static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/*
** A new state's upkeep fields.  Its lifetime loses up to 10% at random, so that states made
** together (a prewarm, a burst) do not all expire in the same pass.
*/
static void upkeep_init(luapool *p, lp_slot *s, uint64_t nth) {
  uint64_t now = atomic_load_explicit(&p->now_ms, memory_order_relaxed);
  s->uses = 0;
  s->gc_uses = 0;
  s->last_used_ms = now;
  s->close_reason = 0;
  s->expires_ms = UINT64_MAX;
  uint64_t life = p->cfg.max_lifetime_ms;
  if (life != 0)
    s->expires_ms = now + life - mix64(p->serial * 0x100000001b3u + nth) % (life / 10 + 1);
}

/*
** Every state's allocator: malloc, with the heap counted against mem_limit and its high-water
** mark kept for recycle_kb.  A refused allocation makes Lua collect and retry, then raise a
** memory error in the script.
*/
static void *lp_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lp_sx *x = ud;
  if (ptr == NULL)
    osize = 0; /* osize is then the object's type */
  if (nsize == 0) {
    free(ptr);
    x->bytes -= osize;
    return NULL;
  }
  if (nsize > osize && nsize - osize > x->limit - x->bytes) {
    x->mem_hit = true;
    return NULL;
  }
  void *q = realloc(ptr, nsize);
  if (q == NULL)
    return nsize <= osize ? ptr : NULL; /* Lua expects shrinking to succeed */
  x->bytes = x->bytes - osize + nsize;
  if (x->bytes > x->peak)
    x->peak = x->bytes;
  return q;
}

static int lp_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "luapool: PANIC: unprotected error in call to Lua API (%s)\n",
          msg != NULL ? msg : "error object is not a string");
  return 0; /* Lua aborts */
}

static const struct {
  unsigned bit;
  const char *name;
  lua_CFunction open;
} lp_libs[] = {
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

typedef struct lp_init_args {
  const luapool_config *cfg;
  int on_create_rc;
} lp_init_args;

/* Runs protected: a Lua error here (memory, or raised by on_create) fails the creation. */
static int state_init(lua_State *L) {
  lp_init_args *a = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lp_lptable_create(L);
  unsigned libs = a->cfg->libs;
  if ((libs & LUAPOOL_LIB_OS_TIME) && !(libs & LUAPOOL_LIB_OS))
    libs |= LUAPOOL_LIB_OS; /* opened, then trimmed below */
  for (size_t i = 0; i < sizeof lp_libs / sizeof lp_libs[0]; i++) {
    if (libs & lp_libs[i].bit) {
      luaL_requiref(L, lp_libs[i].name, lp_libs[i].open, 1);
      lua_pop(L, 1);
    }
  }
  if ((a->cfg->libs & LUAPOOL_LIB_OS_TIME) && !(a->cfg->libs & LUAPOOL_LIB_OS)) {
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
  lp_sandbox_open(L);
  if (a->cfg->on_create != NULL) {
    a->on_create_rc = a->cfg->on_create(L, a->cfg->on_create_ud);
    if (a->on_create_rc != 0)
      return 0;
  }
  lua_settop(L, 0);
  if (a->cfg->libs & LUAPOOL_LIB_SANDBOX)
    lp_sandbox_freeze(L);
  return lp_reset_prepare(L);
}

/*
** Creates a state into a fresh slot.  The caller holds a max_states reservation (lp_live_reserve)
** and keeps it on success; on failure the reservation is the caller's to return.
*/
int lp_state_new(luapool *p, lp_slot **out) {
  lp_slot *s = lp_slot_alloc(p);
  if (s == NULL)
    return LUAPOOL_ENOMEM;
  lp_sx *x = calloc(1, sizeof *x);
  lp_cent *cache = p->cfg.chunk_cache != 0 ? calloc(p->cfg.chunk_cache, sizeof *cache) : NULL;
  lua_State *L = NULL;
  if (x != NULL && (cache != NULL || p->cfg.chunk_cache == 0)) {
    x->pool = p;
    x->limit = p->cfg.mem_limit != 0 ? p->cfg.mem_limit : SIZE_MAX;
    x->cache = cache;
    L = lua_newstate(lp_alloc, x);
  }
  if (L == NULL) {
    free(cache);
    free(x);
    lp_slot_free(p, s);
    lp_log(p, LUAPOOL_LOG_ERROR, "cannot create a Lua state: out of memory");
    return LUAPOOL_ENOMEM;
  }
  lua_atpanic(L, lp_panic);
  s->x = x;
  *(lp_slot **)lua_getextraspace(L) = s;

  lp_init_args a = {&p->cfg, 0};
  lua_pushcfunction(L, state_init);
  lua_pushlightuserdata(L, &a);
  int status = lua_pcall(L, 1, 0, 0);
  int rc = LUAPOOL_OK;
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    lp_log(p, LUAPOOL_LOG_ERROR, "cannot create a Lua state: %s",
           msg != NULL ? msg : "(error object is not a string)");
    rc = status == LUA_ERRMEM ? LUAPOOL_ENOMEM : LUAPOOL_EINIT;
  } else if (a.on_create_rc != 0) {
    lp_log(p, LUAPOOL_LOG_ERROR, "cannot create a Lua state: on_create returned %d",
           a.on_create_rc);
    rc = LUAPOOL_EINIT;
  }
  if (rc != LUAPOOL_OK) {
    lua_close(L);
    lp_sx_free(x);
    s->x = NULL;
    lp_slot_free(p, s);
    return rc;
  }
  lua_settop(L, 0);
  x->peak = x->bytes; /* what creation used and let go is not a request's peak */
  x->mem_hit = false;
  x->finalizer = false;
  atomic_store_explicit(&s->L, L, memory_order_relaxed);
  upkeep_init(p, s, atomic_fetch_add_explicit(&p->created, 1, memory_order_relaxed));
  if (p->cfg.on_state != NULL)
    p->cfg.on_state(p->cfg.on_state_ud, LUAPOOL_STATE_CREATED, 0, L);
  *out = s;
  return LUAPOOL_OK;
}

/*
** Closes the state of a slot nobody else can reach (popped from a list, or checked out by the
** caller) for reason (LUAPOOL_CLOSE_*), returns the slot to the spare list and the reservation
** to max_states, and wakes a waiter, which may now create a state.
*/
void lp_state_close(luapool *p, lp_slot *s, int reason) {
  lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
  if (p->cfg.on_state != NULL)
    p->cfg.on_state(p->cfg.on_state_ud, LUAPOOL_STATE_CLOSED, reason, L);
  lua_close(L);
  lp_sx_free(s->x);
  s->x = NULL;
  lp_slot_free(p, s);
  atomic_fetch_add_explicit(&p->closed_by[reason], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->closed_count, 1, memory_order_relaxed);
  lp_live_unreserve(p);
}

/* Claims room for one more live state under max_states.  Any thread. */
bool lp_live_reserve(luapool *p) {
  unsigned max = p->cfg.max_states;
  unsigned n = atomic_load_explicit(&p->live, memory_order_relaxed);
  do {
    if (max != 0 && n >= max)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(&p->live, &n, n + 1, memory_order_seq_cst,
                                                  memory_order_relaxed));
  return true;
}

/*
** Returns a reservation.  seq_cst, then a seq_cst load of waiters: an acquire that is about to
** sleep has raised waiters (seq_cst) before it tries lp_live_reserve, so either it sees the room
** or this sees it waiting and wakes it.
*/
void lp_live_unreserve(luapool *p) {
  atomic_fetch_sub_explicit(&p->live, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&p->waiters, memory_order_seq_cst) != 0)
    lp_wake_waiter(p);
}
