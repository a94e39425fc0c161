/*
** Fault injection (configure --enable-fault-injection): for each phase of a pool's life, each
** profile and each kind of fault, fail the nth call for n = 1, 2, 3, ... until a run injects no
** failure.  For every n: each call returns OK or a documented error, the stats add up, the pool
** works afterwards (and keeps no request's globals), and after destroy luapool's own blocks are
** all freed.  The Lua kind sweeps every n up to 64, then steps by n/32 (TEST_FAULTS_DENSE=1: every
** n); the others sweep every n.
*/
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "util.h"

static const int kinds[] = {LP_FAULT_MALLOC, LP_FAULT_LUA, LP_FAULT_THREAD};
static const char *const kind_names[] = {"malloc", "lua", "thread"};

/* One run of a phase: the pool (NULL once destroyed or when create failed), the state held. */
typedef struct run {
  unsigned libs;
  int kind;
  luapool *p;
  lua_State *L;
  unsigned held; /* states the test holds after act */
} run;

static void cfg_for(const run *r, luapool_config *cfg) {
  util_config_libs(cfg, r->libs);
  cfg->max_idle = 8;
}

/* No on_create here: a failed allocation or thread is LUAPOOL_ENOMEM, never LUAPOOL_EINIT. */
static bool documented_pool_rc(int rc) {
  return rc == LUAPOOL_OK || rc == LUAPOOL_ENOMEM;
}

/* A request that changes what the reset must restore: globals, and under ALL a library table. */
static const char *const request =
    "g_req = {1, 2, 3}; tostring = nil; g_str = string.rep('x', 100)\n"
    "if rawget(_G, 'io') then string.x = 1; table.insert = nil; math.pi = 3\n"
    "  math.huge = nil; for i = 1, 100 do math['k' .. i] = i end\n" /* a rehash drops huge */
    "  for k in pairs(table) do table[k] = nil end table.zz = 1\n"
    /* new keys that collide force a rehash that shrinks table: the restore must grow it (the
       Lua heap grows inside the reset) */
    "  for i = 1, 16 do table['t' .. i] = i end for i = 1, 16 do table['t' .. i] = nil end\n"
    "  setmetatable(_G, {__index = function() return 1 end}); collectgarbage('stop') end";
static const char *const unchanged =
    "return g_req == nil and g_str == nil and tostring ~= nil and g_leak == nil"
    " and string.x == nil and table.insert ~= nil and math.pi > 3.14 and math.huge > 0"
    " and math.k1 == nil and table.concat ~= nil and table.zz == nil and (rawget(_G, 'io') == nil "
    "or getmetatable(_G) == nil)";

static void check_stats(luapool *p, unsigned held) {
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.live, s.created - s.closed);
  ck_assert_uint_eq(s.idle + s.in_use, s.live);
  ck_assert_uint_eq(s.in_use, held);
  ck_assert_uint_eq(s.mem_errors, 0); /* an injected failure is no mem_limit hit */
}

/* Disarmed: the pool serves a request and keeps nothing of it, twice. */
static void check_works(luapool *p) {
  for (int i = 0; i < 2; i++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, unchanged), 1);
    util_run(L, "g_leak = 1; tostring = nil");
    luapool_release(p, L);
  }
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return g_leak == nil and tostring ~= nil"), 1);
  luapool_release(p, L);
  check_stats(p, 0);
}

/* ---- the phases: setup runs disarmed, act armed -------------------------------------------- */

static void create_act(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 3;
  if (r->kind == LP_FAULT_THREAD)
    cfg.watchdog_interval_ms = 60000; /* a thread, whose passes never come during the test */
  int rc = luapool_create(&cfg, &r->p);
  ck_assert_msg(documented_pool_rc(rc), "luapool_create: %d", rc);
  if (rc != LUAPOOL_OK) {
    r->p = NULL;
    return;
  }
  luapool_stats s = util_stats(r->p);
  ck_assert_uint_eq(s.live, 3);
}

/* A module whose functions keep state in upvalues: more for the snapshot to record. */
static int on_create_module(lua_State *L, void *ud) {
  (void)ud;
  static const char src[] = "local cache, n = {}, 0\n"
                            "mod = {put = function(k, v) cache[k] = v; n = n + 1 end,\n"
                            "       get = function(k) return cache[k] end, conf = {a = {1, 2}}}";
  if (luaL_loadstring(L, src) != LUA_OK)
    lua_error(L); /* a memory error: luapool_create reports LUAPOOL_ENOMEM */
  lua_call(L, 0, 0);
  return 0;
}

static void create_module_act(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 2;
  cfg.on_create = on_create_module;
  int rc = luapool_create(&cfg, &r->p);
  ck_assert_msg(documented_pool_rc(rc), "luapool_create with on_create: %d", rc);
  if (rc != LUAPOOL_OK) {
    r->p = NULL;
    return;
  }
}

/* Disarmed: the module's upvalue state is put back by the reset. */
static void create_module_after(run *r) {
  if (r->p == NULL)
    return;
  lua_State *L = util_acquire(r->p);
  util_run(L, "mod.put('k', 1)");
  luapool_release(r->p, L);
  L = util_acquire(r->p);
  ck_assert_int_eq(util_eval_int(L, "return mod.get('k') == nil"), 1);
  luapool_release(r->p, L);
}

static void pool_setup(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  r->p = util_pool(&cfg);
}

static void acquire_act(run *r) {
  int rc = luapool_acquire(r->p, 0, &r->L);
  ck_assert_msg(documented_pool_rc(rc), "luapool_acquire: %d", rc);
  r->held = rc == LUAPOOL_OK;
}

static void release_setup(run *r) {
  pool_setup(r);
  r->L = util_acquire(r->p);
  util_run(r->L, request);
}

static void release_act(run *r) {
  luapool_release(r->p, r->L);
  r->L = NULL;
}

static void load_setup(run *r) {
  pool_setup(r);
  r->L = util_acquire(r->p);
  r->held = 1;
}

static void load_act(run *r) {
  static const char src[] = "local t = {} for i = 1, 10 do t[i] = i end g_load = #t return #t";
  for (int i = 0; i < 2; i++) { /* compile, then the cache */
    int rc = luapool_load(r->L, "=chunk", src, sizeof src - 1);
    ck_assert_msg(rc == LUA_OK || rc == LUA_ERRMEM, "luapool_load: %d", rc);
    if (rc == LUA_OK)
      (void)lua_pcall(r->L, 0, 1, 0);
    lua_settop(r->L, 0);
  }
  ck_assert_int_ne(luapool_status(r->L), LUAPOOL_STATUS_MEMORY); /* not mem_limit's */
}

/* A pass with work of each kind: states to prewarm up to min_idle, one to recycle, one bloated. */
static void pass_setup(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 3;
  cfg.recycle_kb = 64;
  cfg.bloat_kb = 2048;
  cfg.magazine_size = 0; /* released states go to the global list, where the pass collects */
  r->p = util_pool(&cfg);
  lua_State *a = util_acquire(r->p), *b = util_acquire(r->p), *c = util_acquire(r->p);
  util_run(a, "local t = {} for i = 1, 20000 do t[i] = {i} end"); /* a peak: recycled */
  util_run(b, request);
  luapool_release(r->p, a);
  luapool_release(r->p, b);
  luapool_discard(r->p, c); /* below min_idle: the pass makes one */
}

static void pass_act(run *r) {
  int rc = luapool_maintain(r->p);
  ck_assert_msg(rc == LUAPOOL_OK, "luapool_maintain: %d", rc);
}

static void shutdown_setup(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 2;
  if (r->kind == LP_FAULT_THREAD)
    cfg.watchdog_interval_ms = 60000;
  r->p = util_pool(&cfg);
  lua_State *L = util_acquire(r->p);
  util_run(L, request);
  luapool_release(r->p, L);
}

static void shutdown_act(run *r) {
  int rc = luapool_shutdown(r->p, 0);
  ck_assert_msg(rc == LUAPOOL_OK || rc == LUAPOOL_ETIMEDOUT, "luapool_shutdown: %d", rc);
  luapool_destroy(r->p);
  r->p = NULL;
}

/* A thread of its own: its first call on any pool makes its magazine table, freed at its exit. */
typedef struct worker {
  luapool *p;
  int rc;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  lua_State *L;
  w->rc = luapool_acquire(w->p, 0, &L);
  if (w->rc == LUAPOOL_OK) {
    if (luaL_loadstring(L, "g_thread = {1, 2}") == LUA_OK)
      (void)lua_pcall(L, 0, 0, 0);
    lua_settop(L, 0);
    luapool_release(w->p, L);
  }
  return NULL;
}

static void thread_setup(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 1;
  r->p = util_pool(&cfg);
}

static void thread_act(run *r) {
  worker w = {r->p, 0};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, worker_main, &w), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_msg(documented_pool_rc(w.rc), "luapool_acquire on a new thread: %d", w.rc);
}

/* The watchdog thread's pass, woken by a discard, prewarms to min_idle while faults are armed. */
static void discard_setup(run *r) {
  luapool_config cfg;
  cfg_for(r, &cfg);
  cfg.min_idle = 2;
  cfg.watchdog_interval_ms = 60000; /* only the discard's kick runs a pass */
  r->p = util_pool(&cfg);
  r->L = util_acquire(r->p);
  util_run(r->L, request);
}

static bool passed(luapool *p, void *arg) {
  (void)arg;
  return util_stats(p).passes >= 1;
}

static void discard_act(run *r) {
  luapool_discard(r->p, r->L);
  r->L = NULL;
  ck_assert(util_wait_until(passed, r->p, NULL, 60)); /* the pass ran before the disarm */
}

typedef struct phase {
  const char *name;
  void (*setup)(run *r);
  void (*act)(run *r);
  void (*after)(run *r); /* disarmed, before the common checks; may be NULL */
} phase;

static const phase phases[] = {
    {"create", NULL, create_act, NULL},
    {"create_module", NULL, create_module_act, create_module_after},
    {"acquire", pool_setup, acquire_act, NULL},
    {"release", release_setup, release_act, NULL},
    {"load", load_setup, load_act, NULL},
    {"pass", pass_setup, pass_act, NULL},
    {"shutdown", shutdown_setup, shutdown_act, NULL},
    {"thread", thread_setup, thread_act, NULL},
    {"discard", discard_setup, discard_act, NULL},
};
#define NPHASES (sizeof phases / sizeof phases[0])

/* ---- the sweep ---------------------------------------------------------------------------- */

/* One n: returns how many failures it injected. */
static unsigned long one(const phase *ph, unsigned libs, int kind, bool persist, unsigned long n) {
  long balance = lp_fault_balance();
  run r = {libs, kind, NULL, NULL, 0};
  if (ph->setup != NULL)
    ph->setup(&r);
  unsigned long before = lp_fault_injected();
  if (persist)
    lp_fault_arm_persistent(kind, n);
  else
    lp_fault_arm(kind, n);
  ph->act(&r);
  lp_fault_disarm();
  unsigned long injected = lp_fault_injected() - before;
  if (ph->after != NULL)
    ph->after(&r);
  if (r.p != NULL) {
    check_stats(r.p, r.held);
    if (r.held) {
      luapool_release(r.p, r.L);
      r.held = 0;
    }
    check_works(r.p);
    luapool_destroy(r.p);
  } else { /* create failed, or destroy ran: a new pool still works */
    luapool_config cfg;
    cfg_for(&r, &cfg);
    luapool *p = util_pool(&cfg);
    check_works(p);
    luapool_destroy(p);
  }
  ck_assert_msg(lp_fault_balance() == balance, "%s %s %s%s n=%lu: %ld block(s) leaked", ph->name,
                util_profile_names[libs == LUAPOOL_LIBS_ALL], kind_names[kind],
                persist ? " (persistent)" : "", n, lp_fault_balance() - balance);
  return injected;
}

static unsigned long next_n(int kind, unsigned long n) {
  static int dense = -1;
  if (dense < 0)
    dense = getenv("TEST_FAULTS_DENSE") != NULL;
  return kind == LP_FAULT_LUA && !dense && n >= 64 ? n + n / 32 : n + 1;
}

/* One-shot, then (memory only: a thread that cannot start stays the same) persistent. */
static void sweep(const phase *ph, int kind) {
  for (int persist = 0; persist < (kind == LP_FAULT_THREAD ? 1 : 2); persist++) {
    for (int pi = 0; pi < 2; pi++) {
      unsigned long n = 1;
      while (one(ph, util_profiles[pi], kind, persist, n) != 0)
        n = next_n(kind, n);
      if (getenv("TEST_FAULTS_VERBOSE") != NULL)
        fprintf(stderr, "%s %s %s%s: no fault at n=%lu\n", ph->name, util_profile_names[pi],
                kind_names[kind], persist ? " (persistent)" : "", n);
    }
  }
}

/* The calling thread's magazine table is made once and kept for its life: made here, before any
   balance is taken. */
static void warm_up(void) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  check_works(p);
  luapool_destroy(p);
}

START_TEST(each_phase_survives_every_nth_fault) {
  int ph = _i / 3, kind = kinds[_i % 3];
  warm_up();
  sweep(&phases[ph], kind);
}
END_TEST

START_TEST(an_armed_fault_fails_the_nth_call_once) {
  long balance = lp_fault_balance();
  unsigned long before = lp_fault_injected();
  lp_fault_arm(LP_FAULT_MALLOC, 2);
  void *a = lp_malloc(8), *b = lp_malloc(8), *c = lp_malloc(8);
  lp_fault_disarm();
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_null(b);
  ck_assert_ptr_nonnull(c);
  ck_assert_uint_eq(lp_fault_injected() - before, 1);
  ck_assert_int_eq(lp_fault_balance() - balance, 2);
  lp_free(a);
  lp_free(c);
  ck_assert_int_eq(lp_fault_balance(), balance);
}
END_TEST

int main(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("faults");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, an_armed_fault_fails_the_nth_call_once);
  tcase_add_loop_test(tc, each_phase_survives_every_nth_fault, 0, (int)NPHASES * 3);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
