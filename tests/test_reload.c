/* Hot reload: generations, what an acquire may get after luapool_reload, and who closes the old. */
#include <lauxlib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* ---- marking states with the generation that made them ------------------------------------- */

/* on_create's ud: the number the state is marked with (global `gen`), and how often it ran. */
typedef struct mark {
  long long gen;
  atomic_int calls;
} mark;

static int on_create_mark(lua_State *L, void *ud) {
  mark *m = ud;
  atomic_fetch_add(&m->calls, 1);
  lua_pushinteger(L, m->gen);
  lua_setglobal(L, "gen"); /* set in on_create: part of the base, survives every reset */
  return 0;
}

static int on_create_fails(lua_State *L, void *ud) {
  (void)L, (void)ud;
  return 7;
}

static int on_create_raises(lua_State *L, void *ud) {
  (void)ud;
  return luaL_error(L, "syntax error in the new handlers");
}

static long long gen_of(lua_State *L) {
  return util_eval_int(L, "return gen");
}

/* on_state: creations and closes, closes by reason. */
typedef struct events {
  atomic_int created, closed, reloaded;
} events;

static void count_event(void *ud, int event, int reason, lua_State *L) {
  (void)L;
  events *e = ud;
  if (event == LUAPOOL_STATE_CREATED)
    atomic_fetch_add(&e->created, 1);
  if (event == LUAPOOL_STATE_CLOSED) {
    atomic_fetch_add(&e->closed, 1);
    if (reason == LUAPOOL_CLOSE_RELOADED)
      atomic_fetch_add(&e->reloaded, 1);
  }
}

/* A config with no watchdog thread (the test runs the passes), marking states with m, counting
   events into e. */
static void config(luapool_config *cfg, mark *m, events *e) {
  util_config(cfg);
  cfg->on_create = on_create_mark;
  cfg->on_create_ud = m;
  cfg->on_state = count_event;
  cfg->on_state_ud = e;
}

/* n states acquired, then all released: the magazine (4) takes the last released, the global
   list the others. */
static void cycle(luapool *p, lua_State **held, int n) {
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &held[i]), LUAPOOL_OK);
  for (int i = 0; i < n; i++)
    luapool_release(p, held[i]);
}

/* ---- the generation number ----------------------------------------------------------------- */

START_TEST(the_generation_starts_at_one_and_each_reload_adds_one) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  ck_assert_uint_eq(luapool_generation(p), 1);
  ck_assert_uint_eq(util_stats(p).generation, 1);
  ck_assert_uint_eq(util_stats(p).reloads, 0);
  uint64_t g = 0;
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, &g), LUAPOOL_OK);
  ck_assert_uint_eq(g, 2);
  ck_assert_uint_eq(luapool_generation(p), 2);
  ck_assert_int_eq(atomic_load(&m2.calls), 1); /* the new generation's first state, made at once */
  /* on_create NULL keeps the current pair */
  ck_assert_int_eq(luapool_reload(p, NULL, NULL, &g), LUAPOOL_OK);
  ck_assert_uint_eq(g, 3);
  ck_assert_int_eq(atomic_load(&m2.calls), 2);
  ck_assert_int_eq(luapool_reload(p, NULL, NULL, NULL), LUAPOOL_OK); /* generation may be NULL */
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.generation, 4);
  ck_assert_uint_eq(s.reloads, 3);
  ck_assert_uint_eq(luapool_generation(NULL), 0);
  luapool_destroy(p);
}
END_TEST

/* ---- what an acquire gets ------------------------------------------------------------------ */

START_TEST(after_a_reload_no_acquire_returns_an_old_state) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  lua_State *held[6];
  cycle(p, held, 6); /* 4 in this thread's magazine, 2 on the global list */
  ck_assert_uint_eq(util_stats(p).idle, 6);
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(luapool_acquire(p, 0, &held[i]), LUAPOOL_OK);
    ck_assert_int_eq(gen_of(held[i]), 2);
  }
  /* each old state the acquires met was closed for the reload, none handed out */
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reload_closed, 6);
  ck_assert_int_eq(atomic_load(&e.reloaded), 6);
  ck_assert_uint_eq(s.live, 6);
  for (int i = 0; i < 6; i++)
    luapool_release(p, held[i]);
  luapool_destroy(p);
}
END_TEST

START_TEST(after_a_reload_no_async_acquire_returns_an_old_state) {
  /* luapool_acquire_async's own fast and slow paths: the same rule as luapool_acquire's. */
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  cfg.max_states = 6;
  luapool *p = util_pool(&cfg);
  lua_State *held[6];
  cycle(p, held, 6); /* 4 in this thread's magazine, 2 on the global list */
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  luapool_notifier *n;
  ck_assert_int_eq(luapool_notifier_open(p, &n), LUAPOOL_OK);
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(luapool_acquire_async(n, &held[i]), LUAPOOL_OK);
    ck_assert_int_eq(gen_of(held[i]), 2);
  }
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(n, &none), LUAPOOL_EAGAIN); /* max_states out */
  ck_assert_uint_eq(util_stats(p).live, 6);
  ck_assert_int_eq(atomic_load(&e.reloaded), 6);
  for (int i = 0; i < 6; i++)
    luapool_release(p, held[i]);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_state_held_across_a_reload_is_closed_at_its_release) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(gen_of(L), 1);
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(gen_of(L), 1); /* still the caller's: the pass leaves it alone */
  ck_assert_uint_eq(util_stats(p).live, 2);
  luapool_release(p, L);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reload_closed, 1);
  ck_assert_int_eq(atomic_load(&e.reloaded), 1);
  ck_assert_uint_eq(s.live, 1);
  ck_assert_uint_eq(s.releases, 1);
  L = util_acquire(p);
  ck_assert_int_eq(gen_of(L), 2);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* A creation that started before a reload and ends after it: on_create waits for the signal. */
typedef struct slow_create {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  bool inside, go;
  luapool *p;
  long long gen_got;
} slow_create;

static int on_create_slowly(lua_State *L, void *ud) {
  slow_create *c = ud;
  pthread_mutex_lock(&c->mutex);
  c->inside = true;
  pthread_cond_broadcast(&c->cond);
  while (!c->go)
    pthread_cond_wait(&c->cond, &c->mutex);
  pthread_mutex_unlock(&c->mutex);
  lua_pushinteger(L, 1);
  lua_setglobal(L, "gen");
  return 0;
}

static void *acquire_during_reload(void *arg) {
  slow_create *c = arg;
  lua_State *L;
  if (luapool_acquire(c->p, 10000, &L) != LUAPOOL_OK)
    return NULL;
  lua_getglobal(L, "gen");
  c->gen_got = lua_tointeger(L, -1);
  lua_pop(L, 1);
  luapool_release(c->p, L);
  return NULL;
}

START_TEST(a_state_created_across_a_reload_keeps_its_generation_and_is_closed_at_release) {
  slow_create c = {.inside = false, .go = false, .gen_got = 0};
  pthread_mutex_init(&c.mutex, NULL);
  pthread_cond_init(&c.cond, NULL);
  mark m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = on_create_slowly;
  cfg.on_create_ud = &c;
  cfg.on_state = count_event;
  cfg.on_state_ud = &e;
  c.p = util_pool(&cfg);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, acquire_during_reload, &c), 0);
  pthread_mutex_lock(&c.mutex);
  while (!c.inside)
    pthread_cond_wait(&c.cond, &c.mutex);
  pthread_mutex_unlock(&c.mutex);
  /* the creation is inside generation 1's on_create: the reload does not wait for it */
  ck_assert_int_eq(luapool_reload(c.p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  pthread_mutex_lock(&c.mutex);
  c.go = true;
  pthread_cond_broadcast(&c.cond);
  pthread_mutex_unlock(&c.mutex);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* its acquire began before the reload returned: generation 1 was its to get, wholly */
  ck_assert_int_eq(c.gen_got, 1);
  luapool_stats s = util_stats(c.p);
  ck_assert_uint_eq(s.reload_closed, 1); /* at its release */
  ck_assert_int_eq(atomic_load(&e.reloaded), 1);
  ck_assert_uint_eq(s.live, 1);
  lua_State *L = util_acquire(c.p);
  ck_assert_int_eq(gen_of(L), 2);
  luapool_release(c.p, L);
  luapool_destroy(c.p);
  pthread_mutex_destroy(&c.mutex);
  pthread_cond_destroy(&c.cond);
}
END_TEST

/* ---- the pass ------------------------------------------------------------------------------ */

typedef struct parked {
  luapool *p;
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  bool cached, done;
} parked;

/* Caches two states in this thread's magazine, then stays alive (its magazine with it). */
static void *park_two(void *arg) {
  parked *k = arg;
  lua_State *a = util_acquire(k->p), *b = util_acquire(k->p);
  luapool_release(k->p, a);
  luapool_release(k->p, b);
  pthread_mutex_lock(&k->mutex);
  k->cached = true;
  pthread_cond_broadcast(&k->cond);
  while (!k->done)
    pthread_cond_wait(&k->cond, &k->mutex);
  pthread_mutex_unlock(&k->mutex);
  return NULL;
}

START_TEST(the_pass_closes_old_idle_states_in_magazines_and_on_the_global_list) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  parked k = {.p = p, .cached = false, .done = false};
  pthread_mutex_init(&k.mutex, NULL);
  pthread_cond_init(&k.cond, NULL);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, park_two, &k), 0); /* 2 new states in its magazine */
  pthread_mutex_lock(&k.mutex);
  while (!k.cached)
    pthread_cond_wait(&k.cond, &k.mutex);
  pthread_mutex_unlock(&k.mutex);
  lua_State *held[6];
  cycle(p, held, 6); /* this thread: 4 in its magazine, 2 on the global list */
  ck_assert_uint_eq(util_stats(p).idle, 8);

  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reload_closed, 8); /* both threads' magazines and the global list */
  ck_assert_int_eq(atomic_load(&e.reloaded), 8);
  ck_assert_uint_eq(s.live, 1); /* the new generation's first state */
  ck_assert_uint_eq(s.idle, 1);
  /* a second pass finds nothing more to do */
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(p).reload_closed, 8);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(gen_of(L), 2);
  luapool_release(p, L);

  pthread_mutex_lock(&k.mutex);
  k.done = true;
  pthread_cond_broadcast(&k.cond);
  pthread_mutex_unlock(&k.mutex);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  luapool_destroy(p);
  pthread_mutex_destroy(&k.mutex);
  pthread_cond_destroy(&k.cond);
}
END_TEST

START_TEST(the_pass_closes_even_a_single_old_idle_state) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  luapool_release(p, L); /* in this thread's magazine */
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reload_closed, 1);
  ck_assert_uint_eq(s.live, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(the_pass_prewarms_min_idle_states_of_the_new_generation) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  cfg.min_idle = 3;
  luapool *p = util_pool(&cfg);
  ck_assert_uint_eq(util_stats(p).created, 3);
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reload_closed, 3);
  ck_assert_uint_eq(s.idle, 3);
  ck_assert_uint_eq(s.created, 3 + 1 + 2); /* the reload's first state, and two by the pass */
  ck_assert_int_eq(atomic_load(&m2.calls), 3);
  /* the requests find them ready: none pays a creation */
  lua_State *held[3];
  for (int i = 0; i < 3; i++) {
    held[i] = util_acquire(p);
    ck_assert_int_eq(gen_of(held[i]), 2);
  }
  ck_assert_uint_eq(util_stats(p).created, 6);
  for (int i = 0; i < 3; i++)
    luapool_release(p, held[i]);
  luapool_destroy(p);
}
END_TEST

static bool reload_closed_reaches(luapool *p, void *arg) {
  return util_stats(p).reload_closed >= *(uint64_t *)arg && util_stats(p).idle >= 2;
}

START_TEST(the_watchdog_thread_retires_and_prewarms_after_a_reload) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  cfg.min_idle = 2;
  cfg.watchdog_interval_ms = 60000; /* the reload's kick runs the pass, not the interval */
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  uint64_t want = 2;
  ck_assert(util_wait_until(reload_closed_reaches, p, &want, 10.0));
  lua_State *a = util_acquire(p), *b = util_acquire(p);
  ck_assert_int_eq(gen_of(a), 2);
  ck_assert_int_eq(gen_of(b), 2);
  luapool_release(p, a);
  luapool_release(p, b);
  luapool_destroy(p);
}
END_TEST

/* ---- a new generation that cannot make states ---------------------------------------------- */

START_TEST(a_failing_new_on_create_returns_einit_and_the_old_generation_keeps_serving) {
  mark m1 = {1, 0}, m3 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  luapool *p = util_pool(&cfg);
  lua_State *held[2];
  cycle(p, held, 2);
  uint64_t g = 99;
  ck_assert_int_eq(luapool_reload(p, on_create_fails, NULL, &g), LUAPOOL_EINIT);
  ck_assert(util_log_has("on_create returned 7"));
  ck_assert(util_log_has("generation 1 keeps serving"));
  ck_assert_int_eq(luapool_reload(p, on_create_raises, NULL, &g), LUAPOOL_EINIT);
  ck_assert(util_log_has("syntax error in the new handlers"));
  ck_assert_uint_eq(g, 99); /* untouched */
  ck_assert_uint_eq(luapool_generation(p), 1);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.reloads, 0);
  ck_assert_uint_eq(s.reload_closed, 0);
  ck_assert_uint_eq(s.created, 2);
  ck_assert_uint_eq(s.live, 2);
  /* the old states still serve, and the old on_create still makes new ones */
  lua_State *L[3];
  for (int i = 0; i < 3; i++) {
    L[i] = util_acquire(p);
    ck_assert_int_eq(gen_of(L[i]), 1);
  }
  for (int i = 0; i < 3; i++)
    luapool_release(p, L[i]);
  /* a good reload afterwards takes the next number: failed ones took none */
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m3, &g), LUAPOOL_OK);
  ck_assert_uint_eq(g, 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_reload_at_max_states_makes_room_from_an_idle_state_or_says_etimedout) {
  mark m1 = {1, 0}, m2 = {2, 0};
  events e = {0};
  luapool_config cfg;
  config(&cfg, &m1, &e);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  /* the one state is checked out: no room to try the new generation */
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_ETIMEDOUT);
  ck_assert_uint_eq(luapool_generation(p), 1);
  ck_assert(util_log_has("all checked out"));
  luapool_release(p, L);
  /* idle: it makes room for the new generation's first state */
  ck_assert_int_eq(luapool_reload(p, on_create_mark, &m2, NULL), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.live, 1);
  ck_assert_uint_eq(s.reload_closed, 1);
  L = util_acquire(p);
  ck_assert_int_eq(gen_of(L), 2);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- refusals ------------------------------------------------------------------------------ */

static atomic_int reload_rc_in_callback;
static luapool *callback_pool;

static void reload_from_on_state(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)event, (void)reason, (void)L;
  atomic_store(&reload_rc_in_callback, luapool_reload(callback_pool, NULL, NULL, NULL));
}

static int reload_from_on_create(lua_State *L, void *ud) {
  (void)L, (void)ud;
  if (callback_pool != NULL)
    atomic_store(&reload_rc_in_callback, luapool_reload(callback_pool, NULL, NULL, NULL));
  return 0;
}

START_TEST(reload_is_refused_in_a_callback_after_shutdown_and_for_null) {
  ck_assert_int_eq(luapool_reload(NULL, NULL, NULL, NULL), LUAPOOL_EINVAL);
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_state = reload_from_on_state;
  callback_pool = util_pool(&cfg);
  atomic_store(&reload_rc_in_callback, 1);
  lua_State *L = util_acquire(callback_pool); /* on_state CREATED reloads: refused */
  ck_assert_int_eq(atomic_load(&reload_rc_in_callback), LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_reload: called from the on_state callback"));
  luapool_release(callback_pool, L);
  ck_assert_uint_eq(luapool_generation(callback_pool), 1);
  luapool_destroy(callback_pool);

  util_config(&cfg);
  cfg.on_create = reload_from_on_create;
  callback_pool = NULL;
  luapool *p = util_pool(&cfg);
  callback_pool = p;
  atomic_store(&reload_rc_in_callback, 1);
  L = util_acquire(p); /* on_create reloads: refused */
  ck_assert_int_eq(atomic_load(&reload_rc_in_callback), LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_reload: called from the on_create callback"));
  luapool_release(p, L);
  callback_pool = NULL;
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK);
  ck_assert_int_eq(luapool_reload(p, NULL, NULL, NULL), LUAPOOL_ECLOSED);
  ck_assert_uint_eq(luapool_generation(p), 1);
  luapool_destroy(p);
}
END_TEST

/* ---- concurrency --------------------------------------------------------------------------- */

#define RELOADERS 4
#define RELOADS_EACH 25

typedef struct reload_race {
  luapool *p;
  uint64_t got[RELOADERS][RELOADS_EACH];
  atomic_int errors;
} reload_race;

typedef struct reloader_arg {
  reload_race *r;
  int id;
} reloader_arg;

static void *reload_many(void *arg) {
  reloader_arg *a = arg;
  for (int i = 0; i < RELOADS_EACH; i++)
    if (luapool_reload(a->r->p, NULL, NULL, &a->r->got[a->id][i]) != LUAPOOL_OK)
      atomic_fetch_add(&a->r->errors, 1);
  return NULL;
}

START_TEST(concurrent_reloads_each_get_their_own_number) {
  luapool_config cfg;
  util_config(&cfg);
  reload_race r = {.p = util_pool(&cfg)};
  pthread_t t[RELOADERS];
  reloader_arg args[RELOADERS];
  for (int i = 0; i < RELOADERS; i++) {
    args[i] = (reloader_arg){&r, i};
    ck_assert_int_eq(pthread_create(&t[i], NULL, reload_many, &args[i]), 0);
  }
  for (int i = 0; i < RELOADERS; i++)
    ck_assert_int_eq(pthread_join(t[i], NULL), 0);
  ck_assert_int_eq(atomic_load(&r.errors), 0);
  bool seen[RELOADERS * RELOADS_EACH + 2] = {false};
  for (int i = 0; i < RELOADERS; i++) {
    uint64_t last = 0;
    for (int j = 0; j < RELOADS_EACH; j++) {
      uint64_t g = r.got[i][j];
      ck_assert_uint_ge(g, 2);
      ck_assert_uint_le(g, RELOADERS * RELOADS_EACH + 1);
      ck_assert_msg(!seen[g], "generation %llu returned twice", (unsigned long long)g);
      ck_assert_uint_gt(g, last); /* one thread's reloads come in order */
      seen[g] = true;
      last = g;
    }
  }
  luapool_stats s = util_stats(r.p);
  ck_assert_uint_eq(s.generation, RELOADERS * RELOADS_EACH + 1);
  ck_assert_uint_eq(s.reloads, RELOADERS * RELOADS_EACH);
  luapool_destroy(r.p);
}
END_TEST

#define WORKERS 4
#define GENERATIONS 30
#define MAX_TRACKED 4096

/*
** The stress run: workers acquire and release in a loop while a reloader starts GENERATIONS new
** ones.  Each request checks that its state is of the generation the worker saw before it called
** luapool_acquire, or a later one (a stale state would be older).  on_create and on_state keep
** the table of live states and their generations, for the check at the end.
*/
typedef struct stress {
  luapool *p;
  mark marks[GENERATIONS + 2];
  atomic_bool stop;
  atomic_int stale, errors, requests;
  pthread_mutex_t mutex; /* the table */
  lua_State *live_L[MAX_TRACKED];
  long long live_gen[MAX_TRACKED];
  int nlive, overflow;
} stress;

static stress *the_stress;

static void track(lua_State *L, long long gen) {
  stress *r = the_stress;
  pthread_mutex_lock(&r->mutex);
  if (r->nlive < MAX_TRACKED) {
    r->live_L[r->nlive] = L;
    r->live_gen[r->nlive++] = gen;
  } else {
    r->overflow++;
  }
  pthread_mutex_unlock(&r->mutex);
}

static void untrack(lua_State *L) {
  stress *r = the_stress;
  pthread_mutex_lock(&r->mutex);
  for (int i = 0; i < r->nlive; i++) {
    if (r->live_L[i] == L) {
      r->live_L[i] = r->live_L[--r->nlive];
      r->live_gen[i] = r->live_gen[r->nlive];
      break;
    }
  }
  pthread_mutex_unlock(&r->mutex);
}

static int on_create_tracked(lua_State *L, void *ud) {
  mark *m = ud;
  lua_pushinteger(L, m->gen);
  lua_setglobal(L, "gen");
  track(L, m->gen); /* every creation in this test succeeds: tracked once */
  return 0;
}

static void on_state_tracked(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)reason;
  if (event == LUAPOOL_STATE_CLOSED)
    untrack(L);
}

static void *stress_worker(void *arg) {
  stress *r = arg;
  for (int i = 0; i < 100000 && (i < 200 || !atomic_load(&r->stop)); i++) {
    long long seen = (long long)luapool_generation(r->p);
    lua_State *L;
    if (luapool_acquire(r->p, 5000, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&r->errors, 1);
      continue;
    }
    lua_getglobal(L, "gen");
    long long gen = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (gen < seen)
      atomic_fetch_add(&r->stale, 1);
    atomic_fetch_add(&r->requests, 1);
    if (i % 5 == 0)
      sched_yield();
    luapool_release(r->p, L);
  }
  return NULL;
}

static void *stress_reloader(void *arg) {
  stress *r = arg;
  for (int g = 2; g < GENERATIONS + 2; g++) {
    uint64_t got = 0;
    if (luapool_reload(r->p, on_create_tracked, &r->marks[g], &got) != LUAPOOL_OK ||
        got != (uint64_t)g)
      atomic_fetch_add(&r->errors, 1);
    /* from the return, this thread gets no older state either */
    lua_State *L;
    if (luapool_acquire(r->p, 5000, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&r->errors, 1);
      continue;
    }
    lua_getglobal(L, "gen");
    if (lua_tointeger(L, -1) < g)
      atomic_fetch_add(&r->stale, 1);
    lua_pop(L, 1);
    luapool_release(r->p, L);
    if (g % 4 == 0)
      (void)luapool_maintain(r->p);
    for (int spin = 0; spin < 50; spin++)
      sched_yield(); /* let the workers run a while under this generation */
  }
  atomic_store(&r->stop, true);
  return NULL;
}

static void stress_run(unsigned watchdog_ms, unsigned magazine_size) {
  static stress r;
  memset(&r, 0, sizeof r);
  pthread_mutex_init(&r.mutex, NULL);
  the_stress = &r;
  for (int g = 0; g < GENERATIONS + 2; g++)
    r.marks[g].gen = g;
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = on_create_tracked;
  cfg.on_create_ud = &r.marks[1];
  cfg.on_state = on_state_tracked;
  cfg.watchdog_interval_ms = watchdog_ms;
  cfg.magazine_size = magazine_size;
  cfg.min_idle = 2;
  r.p = util_pool(&cfg);
  pthread_t w[WORKERS], rl;
  for (int i = 0; i < WORKERS; i++)
    ck_assert_int_eq(pthread_create(&w[i], NULL, stress_worker, &r), 0);
  ck_assert_int_eq(pthread_create(&rl, NULL, stress_reloader, &r), 0);
  ck_assert_int_eq(pthread_join(rl, NULL), 0);
  for (int i = 0; i < WORKERS; i++)
    ck_assert_int_eq(pthread_join(w[i], NULL), 0);
  int errors = atomic_load(&r.errors), stale = atomic_load(&r.stale);
  int requests = atomic_load(&r.requests);
  ck_assert_int_eq(errors, 0);
  ck_assert_msg(stale == 0, "%d requests got a state older than the generation they saw", stale);
  ck_assert_int_ge(requests, WORKERS * 200);

  ck_assert_int_eq(luapool_maintain(r.p), LUAPOOL_OK);
  luapool_stats s = util_stats(r.p);
  ck_assert_uint_eq(s.generation, GENERATIONS + 1);
  ck_assert_uint_eq(s.reloads, GENERATIONS);
  ck_assert_uint_eq(s.in_use, 0);
  pthread_mutex_lock(&r.mutex);
  ck_assert_int_eq(r.overflow, 0);
  ck_assert_int_eq(r.nlive, (int)s.live);
  for (int i = 0; i < r.nlive; i++)
    ck_assert_int_eq(r.live_gen[i], GENERATIONS + 1); /* every live state is of the last one */
  pthread_mutex_unlock(&r.mutex);
  ck_assert_uint_ge(s.idle, 2); /* min_idle, prewarmed */
  luapool_destroy(r.p);
  the_stress = NULL;
  pthread_mutex_destroy(&r.mutex);
}

START_TEST(acquires_racing_reloads_never_get_a_state_older_than_they_saw) {
  stress_run(0, 4);
}
END_TEST

START_TEST(acquires_racing_reloads_with_a_watchdog_thread) {
  stress_run(5, 2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("reload");
  TCase *tc = tcase_create("generations");
  tcase_add_test(tc, the_generation_starts_at_one_and_each_reload_adds_one);
  tcase_add_test(tc, after_a_reload_no_acquire_returns_an_old_state);
  tcase_add_test(tc, after_a_reload_no_async_acquire_returns_an_old_state);
  tcase_add_test(tc, a_state_held_across_a_reload_is_closed_at_its_release);
  tcase_add_test(tc, a_state_created_across_a_reload_keeps_its_generation_and_is_closed_at_release);
  tcase_add_test(tc, the_pass_closes_old_idle_states_in_magazines_and_on_the_global_list);
  tcase_add_test(tc, the_pass_closes_even_a_single_old_idle_state);
  tcase_add_test(tc, the_pass_prewarms_min_idle_states_of_the_new_generation);
  tcase_add_test(tc, the_watchdog_thread_retires_and_prewarms_after_a_reload);
  tcase_add_test(tc, a_failing_new_on_create_returns_einit_and_the_old_generation_keeps_serving);
  tcase_add_test(tc, a_reload_at_max_states_makes_room_from_an_idle_state_or_says_etimedout);
  tcase_add_test(tc, reload_is_refused_in_a_callback_after_shutdown_and_for_null);
  suite_add_tcase(s, tc);

  tc = tcase_create("concurrency");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, concurrent_reloads_each_get_their_own_number);
  tcase_add_test(tc, acquires_racing_reloads_never_get_a_state_older_than_they_saw);
  tcase_add_test(tc, acquires_racing_reloads_with_a_watchdog_thread);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
