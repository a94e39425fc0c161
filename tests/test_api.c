/* The public API on one thread: config, create, acquire/release, misuse, reset, shutdown. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- config ------------------------------------------------------------------------------ */

START_TEST(config_init_sets_documented_defaults) {
  luapool_config cfg;
  memset(&cfg, 0xAB, sizeof cfg);
  luapool_config_init(&cfg);
  ck_assert_uint_eq(cfg.version, LUAPOOL_CONFIG_VERSION);
  ck_assert_uint_eq(cfg.max_states, 0);
  ck_assert_uint_eq(cfg.max_idle, 64);
  ck_assert_uint_eq(cfg.min_idle, 0);
  ck_assert_uint_eq(cfg.magazine_size, 4);
  ck_assert_uint_eq(cfg.watchdog_interval_ms, 1000);
  ck_assert_uint_eq(cfg.libs, LUAPOOL_LIBS_SAFE);
  ck_assert_uint_eq(cfg.reset, LUAPOOL_RESET_FULL);
  ck_assert_ptr_null(cfg.on_create);
  ck_assert_ptr_null(cfg.log);
  for (size_t i = 0; i < sizeof cfg.reserved / sizeof cfg.reserved[0]; i++)
    ck_assert_ptr_null(cfg.reserved[i]);
}
END_TEST

START_TEST(config_has_a_fixed_size_for_binary_compatibility) {
  /* Later versions take fields out of `reserved`; the size and the offsets of today's fields
     must never change (LP64 figures). */
  if (sizeof(void *) == 8) {
    ck_assert_uint_eq(sizeof(luapool_config), 256);
    ck_assert_uint_eq(offsetof(luapool_config, on_create), 32);
    ck_assert_uint_eq(offsetof(luapool_config, log_ud), 56);
    /* version 0.1's fields, taken from what was reserved space */
    ck_assert_uint_eq(offsetof(luapool_config, idle_timeout_ms), 64);
    ck_assert_uint_eq(offsetof(luapool_config, on_state), 88);
    /* version 0.2's fields (limits, chunk cache) */
    ck_assert_uint_eq(offsetof(luapool_config, mem_limit), 120);
    ck_assert_uint_eq(offsetof(luapool_config, chunk_cache), 140);
    /* held_warn_ms (and its padding) took the first pointer of version 0.2's reserved */
    ck_assert_uint_eq(offsetof(luapool_config, held_warn_ms), 144);
    ck_assert_uint_eq(offsetof(luapool_config, reserved), 152);
    /* recycle_kb took the place of version 0.2's padding */
    ck_assert_uint_eq(offsetof(luapool_config, recycle_kb), 84);
    /* the stats: the same size, recycled from the reserved counters */
    ck_assert_uint_eq(sizeof(luapool_stats), 328);
    ck_assert_uint_eq(offsetof(luapool_stats, recycled), 240);
    ck_assert_uint_eq(offsetof(luapool_stats, held_too_long), 256);
  }
}
END_TEST

START_TEST(create_refuses_a_config_not_from_config_init) {
  luapool_config cfg;
  memset(&cfg, 0, sizeof cfg); /* a zeroed struct: version 0 */
  cfg.log = util_log;
  luapool *p = (luapool *)0x1;
  util_stderr_begin();
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  ck_assert_ptr_eq(p, (luapool *)0x1); /* untouched on failure */
  util_config(&cfg);
  cfg.version = LUAPOOL_CONFIG_VERSION + 1;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  const char *err = util_stderr_end();
  /* A wrong version means the log pointer is not to be trusted: the message goes to stderr. */
  ck_assert_int_eq(util_log_count(), 0);
  ck_assert_ptr_nonnull(strstr(err, "config version 2 is not 1: call luapool_config_init"));
}
END_TEST

/* The callbacks a garbage config names: none may be called. */
static atomic_int garbage_calls;

static void garbage_log(void *ud, int level, const char *msg) {
  (void)ud, (void)level, (void)msg;
  atomic_fetch_add(&garbage_calls, 1);
}

static int garbage_on_create(lua_State *L, void *ud) {
  (void)L, (void)ud;
  atomic_fetch_add(&garbage_calls, 1);
  return 0;
}

static void garbage_on_state(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)event, (void)reason, (void)L;
  atomic_fetch_add(&garbage_calls, 1);
}

static uint64_t garbage_clock(void *ud) {
  (void)ud;
  atomic_fetch_add(&garbage_calls, 1);
  return 0;
}

/* Uninitialised memory, as a caller that forgot luapool_config_init passes it: byte patterns
   (0xA5 is what some allocators fill fresh memory with), then random bytes. */
static void garbage_fill(luapool_config *cfg, int i) {
  static const unsigned char patterns[] = {0xA5, 0xFF, 0x5A, 0x01, 0xCC, 0x80};
  enum { NPATTERNS = sizeof patterns };
  if (i < NPATTERNS) {
    memset(cfg, patterns[i], sizeof *cfg);
    return;
  }
  unsigned seed = (unsigned)i;
  unsigned char *b = (unsigned char *)cfg;
  for (size_t k = 0; k < sizeof *cfg; k++)
    b[k] = (unsigned char)rand_r(&seed);
  if (cfg->version == LUAPOOL_CONFIG_VERSION)
    cfg->version++; /* only the version is checked: garbage that matches it is not detected */
}

START_TEST(create_refuses_an_uninitialised_config_and_calls_none_of_its_pointers) {
  for (int i = 0; i < 6 + 32; i++) {
    luapool_config cfg;
    garbage_fill(&cfg, i);
    if (i % 2 == 1) { /* pointers that would count a call, instead of crashing on one */
      cfg.log = garbage_log;
      cfg.on_create = garbage_on_create;
      cfg.on_state = garbage_on_state;
      cfg.clock_ms = garbage_clock;
    }
    luapool *p = (luapool *)0x1;
    util_stderr_begin();
    int rc = luapool_create(&cfg, &p);
    const char *err = util_stderr_end();
    ck_assert_msg(rc == LUAPOOL_EINVAL, "garbage config %d: %s", i, luapool_strerror(rc));
    ck_assert_ptr_eq(p, (luapool *)0x1);
    ck_assert_msg(strstr(err, "luapool: luapool_create: config version") != NULL,
                  "garbage config %d: stderr has %s", i, err);
  }
  ck_assert_int_eq(atomic_load(&garbage_calls), 0);
}
END_TEST

START_TEST(create_refuses_invalid_fields) {
  luapool_config cfg;
  luapool *p;
  ck_assert_int_eq(luapool_create(NULL, &p), LUAPOOL_EINVAL);
  util_config(&cfg);
  ck_assert_int_eq(luapool_create(&cfg, NULL), LUAPOOL_EINVAL);

  util_config(&cfg);
  cfg.min_idle = 5, cfg.max_idle = 4;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  util_config(&cfg);
  cfg.min_idle = 3, cfg.max_states = 2;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  util_config(&cfg);
  cfg.magazine_size = 65;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  util_config(&cfg);
  cfg.libs = LUAPOOL_LIBS_ALL | (1u << 20);
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  util_config(&cfg);
  cfg.reset = 7;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
  ck_assert_int_eq(util_log_count(), 5); /* each refusal says why */
  ck_assert(util_log_has("magazine_size"));
}
END_TEST

START_TEST(strerror_names_every_code) {
  ck_assert_str_eq(luapool_strerror(LUAPOOL_OK), "success");
  ck_assert_str_eq(luapool_strerror(LUAPOOL_ETIMEDOUT), "timed out");
  ck_assert_str_eq(luapool_strerror(LUAPOOL_ECLOSED), "pool is shut down");
  ck_assert_str_eq(luapool_strerror(LUAPOOL_ENOMEM), "out of memory");
  ck_assert_str_eq(luapool_strerror(LUAPOOL_EINVAL), "invalid argument");
  ck_assert_str_eq(luapool_strerror(LUAPOOL_EINIT), "state initialization failed");
  ck_assert_str_eq(luapool_strerror(12345), "unknown luapool error");
}
END_TEST

/* ---- create, on_create, min_idle --------------------------------------------------------- */

static int host_add(lua_State *L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + luaL_checkinteger(L, 2));
  return 1;
}

static int on_create_host(lua_State *L, void *ud) {
  (*(int *)ud)++;
  lua_register(L, "host_add", host_add);
  return 0;
}

START_TEST(on_create_runs_once_per_state_and_its_work_survives_reset) {
  int calls = 0;
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = on_create_host;
  cfg.on_create_ud = &calls;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_int_eq(util_eval_int(L, "return host_add(2, 3)"), 5);
  util_run(L, "host_add = nil");
  luapool_release(p, L);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_int_eq(util_eval_int(L, "return host_add(20, 3)"), 23);
  luapool_release(p, L);
  ck_assert_int_eq(calls, 1);
  luapool_destroy(p);
}
END_TEST

static int on_create_fails(lua_State *L, void *ud) {
  (void)L;
  (void)ud;
  return 42;
}

static int on_create_raises(lua_State *L, void *ud) {
  (void)ud;
  return luaL_error(L, "no config file");
}

START_TEST(failing_on_create_gives_einit_and_the_pool_stays_usable) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = on_create_fails;
  luapool *p = util_pool(&cfg);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire(p, -1, &L), LUAPOOL_EINIT);
  ck_assert_ptr_null(L);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.created, 0);
  ck_assert_uint_eq(s.live, 0);
  ck_assert(util_log_has("on_create returned 42"));
  luapool_destroy(p);

  cfg.on_create = on_create_raises;
  p = util_pool(&cfg);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_EINIT);
  ck_assert(util_log_has("no config file"));
  luapool_destroy(p);

  /* With min_idle, create itself fails and leaks nothing (ASan builds check the leak). */
  cfg.min_idle = 2;
  p = (luapool *)0x1;
  ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINIT);
  ck_assert_ptr_eq(p, (luapool *)0x1);
}
END_TEST

/* An allocator that fails every allocation once armed: a memory error inside on_create. */
static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return NULL;
}

static int on_create_runs_out_of_memory(lua_State *L, void *ud) {
  (void)ud;
  lua_setallocf(L, failing_alloc, NULL);
  lua_newtable(L); /* raises LUA_ERRMEM */
  return 0;
}

START_TEST(out_of_memory_in_creation_gives_enomem) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = on_create_runs_out_of_memory;
  luapool *p = util_pool(&cfg);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_ENOMEM);
  ck_assert_ptr_null(L);
  ck_assert_uint_eq(util_stats(p).live, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(min_idle_states_are_ready_when_create_returns) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.min_idle = 3;
  luapool *p = util_pool(&cfg);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.created, 3);
  ck_assert_uint_eq(s.idle, 3);
  ck_assert_uint_eq(s.in_use, 0);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  s = util_stats(p);
  ck_assert_uint_eq(s.created, 3); /* served from the prewarmed states */
  ck_assert_uint_eq(s.global_hits, 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- acquire and release ------------------------------------------------------------------ */

START_TEST(acquire_gives_a_working_state_with_an_empty_stack) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire(p, -1, &L), LUAPOOL_OK);
  ck_assert_ptr_nonnull(L);
  ck_assert_int_eq(lua_gettop(L), 0);
  ck_assert_int_eq(util_eval_int(L, "return #string.rep('x', 7) + math.floor(2.5)"), 9);
  lua_pushinteger(L, 1); /* left on the stack: the reset empties it */
  luapool_release(p, L);
  lua_State *L2;
  ck_assert_int_eq(luapool_acquire(p, 0, &L2), LUAPOOL_OK);
  ck_assert_ptr_eq(L2, L); /* the thread's magazine hands the same state back */
  ck_assert_int_eq(lua_gettop(L2), 0);
  luapool_release(p, L2);

  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.created, 1);
  ck_assert_uint_eq(s.acquires, 2);
  ck_assert_uint_eq(s.releases, 2);
  ck_assert_uint_eq(s.magazine_hits, 1);
  ck_assert_uint_eq(s.misses, 1);
  ck_assert_uint_eq(s.live, 1);
  ck_assert_uint_eq(s.idle, 1);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(acquire_refuses_null_arguments) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(NULL, 0, &L), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_acquire(p, 0, NULL), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_maintain(NULL), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_shutdown(NULL, 0), LUAPOOL_EINVAL);
  luapool_stats s;
  memset(&s, 0xff, sizeof s);
  luapool_stats_get(NULL, &s);
  ck_assert_uint_eq(s.created, 0);
  luapool_stats_get(p, NULL);
  luapool_destroy(NULL);
  luapool_destroy(p);
}
END_TEST

START_TEST(try_acquire_returns_at_once_when_the_cap_is_reached) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 2;
  luapool *p = util_pool(&cfg);
  lua_State *a, *b, *c = NULL;
  ck_assert_int_eq(luapool_acquire(p, 0, &a), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &b), LUAPOOL_OK);
  /* Nothing else could release: a blocking acquire would hang this test. */
  ck_assert_int_eq(luapool_acquire(p, 0, &c), LUAPOOL_ETIMEDOUT);
  ck_assert_ptr_null(c);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.created, 2);
  ck_assert_uint_eq(s.timeouts, 1);
  ck_assert_uint_eq(s.waits, 0);
  luapool_release(p, a);
  ck_assert_int_eq(luapool_acquire(p, 0, &c), LUAPOOL_OK);
  ck_assert_ptr_eq(c, a);
  luapool_release(p, b);
  luapool_release(p, c);
  luapool_destroy(p);
}
END_TEST

START_TEST(timed_acquire_waits_about_as_long_as_asked) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *a, *b = NULL;
  ck_assert_int_eq(luapool_acquire(p, 0, &a), LUAPOOL_OK);
  double t0 = util_now_ms();
  ck_assert_int_eq(luapool_acquire(p, 150, &b), LUAPOOL_ETIMEDOUT);
  double waited = util_now_ms() - t0;
  ck_assert_ptr_null(b);
  /* Behaviour, not speed: it must not give up early, and must give up (the bound is loose). */
  ck_assert_msg(waited >= 149.0, "gave up after %.1f ms of 150", waited);
  ck_assert_msg(waited < 10000.0, "waited %.1f ms for 150", waited);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.waits, 1);
  ck_assert_uint_eq(s.timeouts, 1);
  luapool_release(p, a);
  luapool_destroy(p);
}
END_TEST

/* ---- misuse --------------------------------------------------------------------------------- */

START_TEST(release_refuses_a_state_from_elsewhere) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  luapool *other = util_pool(&cfg);
  lua_State *mine, *theirs;
  ck_assert_int_eq(luapool_acquire(p, 0, &mine), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(other, 0, &theirs), LUAPOOL_OK);

  lua_State *bare = luaL_newstate();
  *(void **)lua_getextraspace(bare) = NULL;
  luapool_release(p, bare);
  luapool_discard(p, bare);
  lua_close(bare);
  luapool_release(p, theirs);          /* a state of another pool */
  lua_State *co = lua_newthread(mine); /* a coroutine of a pooled state */
  luapool_release(p, co);
  lua_pop(mine, 1);
  luapool_release(p, NULL);
  luapool_release(NULL, mine); /* no pool, no log callback: this one goes to stderr */
  ck_assert_int_eq(util_log_count(), 5);
  ck_assert(util_log_has("not a state of this pool"));
  ck_assert(util_log_has("NULL"));

  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.releases, 0);
  ck_assert_uint_eq(s.discarded, 0);
  ck_assert_uint_eq(s.in_use, 1);
  /* Both pools are intact: the rightful owners release, and the states come back. */
  luapool_release(p, mine);
  luapool_release(other, theirs);
  lua_State *again;
  ck_assert_int_eq(luapool_acquire(p, 0, &again), LUAPOOL_OK);
  ck_assert_ptr_eq(again, mine);
  luapool_release(p, again);
  ck_assert_uint_eq(util_stats(other).idle, 1);
  luapool_destroy(other);
  luapool_destroy(p);
}
END_TEST

/*
** luapool_load and luapool_set_budget take no pool: they must tell a pooled state (or one of its
** coroutines) from any other lua_State, whatever its extra space holds, and refuse the others
** with an error instead of following the pointer.
*/
START_TEST(load_and_set_budget_refuse_a_state_that_is_not_pooled) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *mine = util_acquire(p);
  ck_assert_int_eq(luapool_load(mine, "=c", "return 6 * 7", 12), LUA_OK); /* cached in mine */
  lua_pop(mine, 1);
  void *forged[] = {NULL, (void *)(uintptr_t)0xdeadbeef, *(void **)lua_getextraspace(mine)};
  for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
    lua_State *bare = luaL_newstate();
    *(void **)lua_getextraspace(bare) = forged[i]; /* the last one names mine's slot */
    ck_assert_int_eq(luapool_set_budget(bare, 1000, 10), LUAPOOL_EINVAL);
    ck_assert(lua_gethook(bare) == NULL);
    ck_assert_int_eq(luapool_load(bare, "=c", "return 6 * 7", 12), LUA_ERRERR);
    ck_assert_str_eq(lua_tostring(bare, -1), "luapool_load: not a state of a luapool pool");
    lua_close(bare);
  }
  ck_assert_int_eq(luapool_set_budget(NULL, 1, 1), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_load(NULL, "=c", "return 1", 8), LUA_ERRERR);

  /* A coroutine of a pooled state is that state: both work there, on mine's cache. */
  lua_State *co = lua_newthread(mine);
  ck_assert_int_eq(luapool_set_budget(co, 1000000, 0), LUAPOOL_OK);
  ck_assert_int_eq(luapool_load(co, "=c", "return 6 * 7", 12), LUA_OK);
  ck_assert_int_eq(lua_pcall(co, 0, 1, 0), LUA_OK);
  ck_assert_int_eq(lua_tointeger(co, -1), 42);
  lua_pop(mine, 1);
  luapool_release(p, mine);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.cache_misses, 1);
  ck_assert_uint_eq(st.cache_hits, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(double_release_and_discard_after_release_are_refused) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L, *L2;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_release(p, L); /* twice */
  luapool_discard(p, L); /* discard of an idle state */
  ck_assert_int_eq(util_log_count(), 2);
  ck_assert(util_log_has("not checked out"));
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.releases, 1);
  ck_assert_uint_eq(s.idle, 1);
  /* The idle state is still handed out once, not twice. */
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &L2), LUAPOOL_OK);
  ck_assert_ptr_ne(L, L2);
  luapool_discard(p, L2); /* closed now: touching L2 again would be a use after free */
  ck_assert_int_eq(util_log_count(), 2);
  luapool_release(p, L);
  s = util_stats(p);
  ck_assert_uint_eq(s.discarded, 1);
  ck_assert_uint_eq(s.live, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(discard_closes_the_state) {
  luapool_config cfg;
  util_config(&cfg); /* no watchdog thread: discard closes on the calling thread */
  luapool *p = util_pool(&cfg);
  lua_State *L, *L2;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  util_run(L, "x = 1");
  luapool_discard(p, L);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.discarded, 1);
  ck_assert_uint_eq(s.closed, 1);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_int_eq(luapool_acquire(p, 0, &L2), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(p).created, 2); /* a new state, not the discarded one */
  luapool_release(p, L2);
  luapool_destroy(p);
}
END_TEST

static bool closed_at_least(luapool *p, void *arg) {
  return util_stats(p).closed >= *(uint64_t *)arg;
}

START_TEST(discard_with_a_watchdog_closes_on_the_watchdog) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 60000; /* the discard itself must wake it */
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_discard(p, L);
  uint64_t one = 1;
  ck_assert(util_wait_until(closed_at_least, p, &one, 30.0));
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.discarded, 1);
  ck_assert_uint_eq(s.live, 0);
  luapool_shutdown(p, 0);
  luapool_destroy(p);
}
END_TEST

/* ---- reset (the foundation's part: stack, globals, collector) ----------------------------- */

static lua_State *reacquire(luapool *p, lua_State *L) {
  luapool_release(p, L);
  lua_State *L2;
  ck_assert_int_eq(luapool_acquire(p, 0, &L2), LUAPOOL_OK);
  ck_assert_ptr_eq(L2, L); /* same state: what one user did must be gone for the next */
  return L2;
}

static int closes;

static int count_close(lua_State *L) {
  (void)L;
  closes++;
  return 0;
}

START_TEST(to_be_closed_values_left_on_the_stack_are_closed_by_reset) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, count_close);
  lua_setfield(L, -2, "__close");
  lua_setmetatable(L, -2);
  lua_toclose(L, -1); /* a pending to-be-closed value, as an aborted request may leave */
  luaL_loadstring(L, "return 1");
  closes = 0;
  L = reacquire(p, L);
  ck_assert_int_eq(closes, 1); /* closed by the reset, before the next user */
  ck_assert_int_eq(lua_gettop(L), 0);
  luapool_release(p, L);
  ck_assert_int_eq(closes, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(reset_stack_only_empties_the_stack) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.reset = LUAPOOL_RESET_STACK;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  util_run(L, "kept = 7");
  lua_pushinteger(L, 1);
  lua_pushinteger(L, 2);
  L = reacquire(p, L);
  ck_assert_int_eq(lua_gettop(L), 0);
  ck_assert_int_eq(util_eval_int(L, "return kept"), 7); /* the caller vouches for the rest */
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- maintenance and shutdown on one thread ---------------------------------------------- */

START_TEST(shutdown_with_nothing_out_closes_everything) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.min_idle = 2;
  cfg.max_idle = 8;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_release(p, L); /* one in the magazine, one on the global list */
  ck_assert_int_eq(luapool_shutdown(p, 1000), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.closed, 2);
  ck_assert_int_eq(luapool_acquire(p, -1, &L), LUAPOOL_ECLOSED);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_ECLOSED);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK); /* again: nothing to do */
  luapool_destroy(p);
}
END_TEST

START_TEST(shutdown_times_out_and_a_late_release_closes_the_state) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_int_eq(luapool_shutdown(p, 20), LUAPOOL_ETIMEDOUT);
  ck_assert_uint_eq(util_stats(p).live, 1);
  util_run(L, "x = 1"); /* still the caller's to use */
  luapool_release(p, L);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.closed, 1);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(destroy_without_shutdown_closes_what_is_left) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 50;
  luapool *p = util_pool(&cfg);
  lua_State *a, *b;
  ck_assert_int_eq(luapool_acquire(p, 0, &a), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &b), LUAPOOL_OK);
  luapool_release(p, a);
  luapool_destroy(p); /* b is still out: closed by destroy, with a warning */
  ck_assert(util_log_has("still checked out"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("config");
  tcase_add_test(tc, config_init_sets_documented_defaults);
  tcase_add_test(tc, config_has_a_fixed_size_for_binary_compatibility);
  tcase_add_test(tc, create_refuses_a_config_not_from_config_init);
  tcase_add_test(tc, create_refuses_an_uninitialised_config_and_calls_none_of_its_pointers);
  tcase_add_test(tc, create_refuses_invalid_fields);
  tcase_add_test(tc, strerror_names_every_code);
  suite_add_tcase(s, tc);

  tc = tcase_create("create");
  tcase_add_test(tc, on_create_runs_once_per_state_and_its_work_survives_reset);
  tcase_add_test(tc, failing_on_create_gives_einit_and_the_pool_stays_usable);
  tcase_add_test(tc, out_of_memory_in_creation_gives_enomem);
  tcase_add_test(tc, min_idle_states_are_ready_when_create_returns);
  suite_add_tcase(s, tc);

  tc = tcase_create("acquire_release");
  tcase_add_test(tc, acquire_gives_a_working_state_with_an_empty_stack);
  tcase_add_test(tc, acquire_refuses_null_arguments);
  tcase_add_test(tc, try_acquire_returns_at_once_when_the_cap_is_reached);
  tcase_add_test(tc, timed_acquire_waits_about_as_long_as_asked);
  suite_add_tcase(s, tc);

  tc = tcase_create("misuse");
  tcase_add_test(tc, release_refuses_a_state_from_elsewhere);
  tcase_add_test(tc, load_and_set_budget_refuse_a_state_that_is_not_pooled);
  tcase_add_test(tc, double_release_and_discard_after_release_are_refused);
  tcase_add_test(tc, discard_closes_the_state);
  tcase_add_test(tc, discard_with_a_watchdog_closes_on_the_watchdog);
  suite_add_tcase(s, tc);

  tc = tcase_create("reset");
  tcase_add_test(tc, to_be_closed_values_left_on_the_stack_are_closed_by_reset);
  tcase_add_test(tc, reset_stack_only_empties_the_stack);
  suite_add_tcase(s, tc);

  tc = tcase_create("shutdown");
  tcase_add_test(tc, shutdown_with_nothing_out_closes_everything);
  tcase_add_test(tc, shutdown_times_out_and_a_late_release_closes_the_state);
  tcase_add_test(tc, destroy_without_shutdown_closes_what_is_left);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
