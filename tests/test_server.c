/*
** What a server needs around its requests: the host's per-request context (luapool_set_context,
** luapool_context) and the watchdog's report of states held too long (held_warn_ms).  The held
** tests run the pass by hand on a fake clock: deterministic, no sleeping; one runs the watchdog
** thread on the real clock under concurrent acquires, for TSan.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static uint64_t fake_now;

static uint64_t fake_clock(void *ud) {
  (void)ud;
  return fake_now;
}

/* The log lines the held tests look for, captured whole (any thread). */
static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
static int held_lines;
static int held_level;
static char held_last[512];

static void held_log(void *ud, int level, const char *msg) {
  (void)ud;
  if (strstr(msg, " held for ") == NULL)
    return;
  pthread_mutex_lock(&held_mutex);
  held_lines++;
  held_level = level;
  (void)snprintf(held_last, sizeof held_last, "%s", msg);
  pthread_mutex_unlock(&held_mutex);
}

static int held_count(void) {
  pthread_mutex_lock(&held_mutex);
  int n = held_lines;
  pthread_mutex_unlock(&held_mutex);
  return n;
}

static long my_tid(void) {
  return (long)syscall(SYS_gettid);
}

/* The host function a request calls: its context, as a light userdata (nil when NULL). */
static int host_context(lua_State *L) {
  void *ctx = luapool_context(L);
  if (ctx == NULL)
    lua_pushnil(L);
  else
    lua_pushlightuserdata(L, ctx);
  return 1;
}

static int setup(lua_State *L, void *ud) {
  (void)ud;
  lua_register(L, "context", host_context);
  return 0;
}

/* One state, always the same one back (magazine_size 1, max_states 1), host_context in it. */
static luapool *one_state_pool(void) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.magazine_size = 1;
  cfg.max_states = 1;
  cfg.on_create = setup;
  return util_pool(&cfg);
}

/* A pool for the held tests: no watchdog thread, the fake clock at 1000, held_warn_ms 50. */
static luapool *held_pool(unsigned held_warn_ms) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.log = held_log;
  cfg.magazine_size = 1;
  cfg.max_states = 1;
  cfg.clock_ms = fake_clock;
  cfg.held_warn_ms = held_warn_ms;
  fake_now = 1000;
  return util_pool(&cfg);
}

/* ---- context ------------------------------------------------------------------------------- */

START_TEST(config_init_turns_held_warn_off) {
  luapool_config cfg;
  memset(&cfg, 0xAB, sizeof cfg);
  luapool_config_init(&cfg);
  ck_assert_uint_eq(cfg.held_warn_ms, 0);
  ck_assert_uint_eq(cfg.stack_limit, 16384);
  ck_assert_uint_eq(sizeof(luapool_config), 256);
  ck_assert_uint_eq(sizeof(luapool_stats), 328);
}
END_TEST

START_TEST(context_is_set_and_read_on_the_main_thread) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  int request;
  ck_assert_ptr_null(luapool_context(L));
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_OK);
  ck_assert_ptr_eq(luapool_context(L), &request);
  lua_getglobal(L, "context");
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  ck_assert_ptr_eq(lua_touserdata(L, -1), &request); /* a host function finds it */
  lua_pop(L, 1);
  ck_assert_int_eq(luapool_set_context(L, NULL), LUAPOOL_OK);
  ck_assert_ptr_null(luapool_context(L));
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(context_is_read_inside_a_coroutine_and_set_through_one) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  int request, other;
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_OK);
  /* a C function called from Lua inside a coroutine: its lua_State is the coroutine's */
  lua_pushlightuserdata(L, &request);
  lua_setglobal(L, "want");
  ck_assert_int_eq(util_eval_int(L, "return coroutine.wrap(function()\n"
                                    "  coroutine.yield(context() == want)\n"
                                    "end)() and 1 or 0"),
                   1);
  /* a coroutine's lua_State in the host's hands sets it for the whole state */
  lua_State *co = lua_newthread(L);
  ck_assert_ptr_eq(luapool_context(co), &request);
  ck_assert_int_eq(luapool_set_context(co, &other), LUAPOOL_OK);
  ck_assert_ptr_eq(luapool_context(L), &other);
  lua_pop(L, 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(context_is_cleared_by_release_when_the_same_state_comes_back) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  int request;
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_OK);
  luapool_release(p, L);
  ck_assert_ptr_null(luapool_context(L)); /* not checked out: none */
  lua_State *again = util_acquire(p);
  ck_assert_ptr_eq(again, L); /* the same state, the next request */
  ck_assert_ptr_null(luapool_context(again));
  ck_assert_int_eq(util_eval_int(again, "return context() == nil and 1 or 0"), 1);
  luapool_release(p, again);
  luapool_destroy(p);
}
END_TEST

START_TEST(context_is_cleared_by_discard) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  int request;
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_OK);
  luapool_discard(p, L);
  lua_State *next = util_acquire(p); /* a new state, in the slot the discarded one left */
  ck_assert_ptr_null(luapool_context(next));
  ck_assert_int_eq(util_eval_int(next, "return context() == nil and 1 or 0"), 1);
  ck_assert_uint_eq(util_stats(p).discarded, 1);
  luapool_release(p, next);
  luapool_destroy(p);
}
END_TEST

START_TEST(context_refuses_a_state_no_pool_made_or_not_checked_out) {
  int request;
  lua_State *foreign = luaL_newstate();
  ck_assert_ptr_nonnull(foreign);
  /* whatever its extra space holds: point it at something that looks like a slot */
  memset(lua_getextraspace(foreign), 0x5A, LUA_EXTRASPACE);
  util_stderr_begin();
  ck_assert_ptr_null(luapool_context(foreign));
  ck_assert_int_eq(luapool_set_context(foreign, &request), LUAPOOL_EINVAL);
  ck_assert_ptr_null(luapool_context(NULL));
  ck_assert_int_eq(luapool_set_context(NULL, &request), LUAPOOL_EINVAL);
  const char *err = util_stderr_end();
  ck_assert_msg(strstr(err, "luapool_set_context") != NULL && strstr(err, "refused") != NULL,
                "the refusals are logged: %s", err);
  lua_close(foreign);

  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_release(p, L);
  util_stderr_begin();
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_EINVAL); /* idle: refused */
  (void)util_stderr_end();
  lua_State *again = util_acquire(p);
  ck_assert_ptr_null(luapool_context(again)); /* and nothing leaked into the next request */
  luapool_release(p, again);
  luapool_destroy(p);
}
END_TEST

/* ---- held too long -----------------------------------------------------------------------------
 */

START_TEST(held_too_long_is_reported_once_per_acquire) {
  luapool *p = held_pool(50);
  lua_State *L = util_acquire(p);
  int request;
  ck_assert_int_eq(luapool_set_context(L, &request), LUAPOOL_OK);

  fake_now = 1049; /* 49 ms: not yet */
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 0);
  ck_assert_uint_eq(util_stats(p).held_too_long, 0);

  fake_now = 1050;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 1);
  char want[512];
  (void)snprintf(want, sizeof want, "state %p held for 50 ms by thread %ld (context %p)", (void *)L,
                 my_tid(), (void *)&request);
  ck_assert_str_eq(held_last, want);
  ck_assert_int_eq(held_level, LUAPOOL_LOG_WARN);
  ck_assert_uint_eq(util_stats(p).held_too_long, 1);

  fake_now = 5000; /* the same acquire, still held: never again */
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 1);
  ck_assert_uint_eq(util_stats(p).held_too_long, 1);

  luapool_release(p, L);
  lua_State *again = util_acquire(p); /* the same state and slot: a new acquire */
  ck_assert_ptr_eq(again, L);
  fake_now = 5049;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 1);
  fake_now = 5060;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 2);
  (void)snprintf(want, sizeof want, "state %p held for 60 ms by thread %ld (context (nil))",
                 (void *)L, my_tid());
  ck_assert_str_eq(held_last, want); /* no context this time: the last one was cleared */
  ck_assert_uint_eq(util_stats(p).held_too_long, 2);
  luapool_release(p, again);

  fake_now = 9000; /* released: nothing held, nothing reported */
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(held_too_long_is_off_by_default) {
  luapool *p = held_pool(0);
  lua_State *L = util_acquire(p);
  fake_now = 1000 + 3600 * 1000;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 0);
  ck_assert_uint_eq(util_stats(p).held_too_long, 0);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(held_too_long_is_not_reported_for_a_discarded_state) {
  luapool *p = held_pool(50);
  lua_State *L = util_acquire(p);
  luapool_discard(p, L);
  fake_now = 2000;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 0);
  lua_State *next = util_acquire(p); /* a new state in the same slot, acquired at 2000 */
  fake_now = 2050;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 1);
  ck_assert_ptr_nonnull(strstr(held_last, "held for 50 ms"));
  luapool_release(p, next);
  luapool_destroy(p);
}
END_TEST

/* A thread that acquires, says its id, and holds the state until told to release it. */
typedef struct holder {
  luapool *p;
  atomic_long tid;
  atomic_bool release;
} holder;

static void *hold_main(void *arg) {
  holder *h = arg;
  lua_State *L = util_acquire(h->p);
  atomic_store(&h->tid, my_tid());
  while (!atomic_load(&h->release))
    util_sleep_ms(1);
  luapool_release(h->p, L);
  return NULL;
}

static bool tid_known(luapool *p, void *arg) {
  (void)p;
  return atomic_load(&((holder *)arg)->tid) != 0;
}

START_TEST(held_too_long_names_the_thread_that_acquired) {
  luapool *p = held_pool(50);
  holder h = {p, 0, false};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_main, &h), 0);
  ck_assert(util_wait_until(tid_known, p, &h, 10));
  long tid = atomic_load(&h.tid);
  ck_assert_int_ne(tid, my_tid());
  fake_now = 1100;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  ck_assert_int_eq(held_count(), 1);
  char want[64];
  (void)snprintf(want, sizeof want, " by thread %ld ", tid);
  ck_assert_msg(strstr(held_last, want) != NULL, "%s names thread %ld", held_last, tid);
  atomic_store(&h.release, true);
  pthread_join(t, NULL);
  luapool_destroy(p);
}
END_TEST

/*
** Workers acquire, set a context naming themselves, hold (now and then across a pass), release;
** the watchdog thread scans every millisecond with held_warn_ms 1 on the real clock.  Every
** report must be consistent: the context it names, when it names one, is the one the reported
** thread set (a record torn between two acquires would name another worker's), and the count
** matches the lines and stays within the acquires.  Bounded: a fixed number of iterations.
*/
#define WORKERS 4
#define ROUNDS 300

typedef struct worker {
  luapool *p;
  atomic_long tid;
  int failed;
} worker;

static worker workers[WORKERS];
static atomic_int torn, reports;

static void race_log(void *ud, int level, const char *msg) {
  (void)ud;
  (void)level;
  void *L, *ctx;
  unsigned long long ms;
  long tid;
  if (sscanf(msg, "state %p held for %llu ms by thread %ld (context %p)", &L, &ms, &tid, &ctx) < 3)
    return;
  atomic_fetch_add(&reports, 1);
  if (strstr(msg, "(context (nil))") != NULL)
    return;
  bool ok = false;
  for (int i = 0; i < WORKERS; i++)
    if ((void *)&workers[i] == ctx)
      ok = atomic_load(&workers[i].tid) == tid;
  if (!ok)
    atomic_fetch_add(&torn, 1);
}

static void *race_main(void *arg) {
  worker *w = arg;
  atomic_store(&w->tid, my_tid());
  for (int i = 0; i < ROUNDS; i++) {
    lua_State *L;
    if (luapool_acquire(w->p, 5000, &L) != LUAPOOL_OK) {
      w->failed++;
      continue;
    }
    if (luapool_set_context(L, w) != LUAPOOL_OK)
      w->failed++;
    if (i % 16 == 0)
      util_sleep_ms(2); /* held across a pass, now and then */
    if (luapool_context(L) != w)
      w->failed++;
    if (i % 7 == 0)
      luapool_discard(w->p, L);
    else
      luapool_release(w->p, L);
  }
  return NULL;
}

START_TEST(held_too_long_under_concurrent_acquires_and_the_watchdog_thread) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.watchdog_interval_ms = 1;
  cfg.held_warn_ms = 1;
  cfg.max_states = 3; /* fewer than the workers: states change hands between threads */
  cfg.magazine_size = 1;
  cfg.log = race_log;
  luapool *p = util_pool(&cfg);
  pthread_t t[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    workers[i] = (worker){p, 0, 0};
    ck_assert_int_eq(pthread_create(&t[i], NULL, race_main, &workers[i]), 0);
  }
  for (int i = 0; i < WORKERS; i++)
    pthread_join(t[i], NULL);
  ck_assert_int_eq(luapool_shutdown(p, 5000), LUAPOOL_OK); /* joins the watchdog thread */
  luapool_stats st = util_stats(p);
  for (int i = 0; i < WORKERS; i++)
    ck_assert_int_eq(workers[i].failed, 0);
  ck_assert_uint_eq(st.acquires, (uint64_t)WORKERS * ROUNDS);
  ck_assert_uint_le(st.held_too_long, st.acquires);
  ck_assert_uint_eq(st.held_too_long, (uint64_t)atomic_load(&reports));
  ck_assert_int_eq(atomic_load(&torn), 0);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server");
  TCase *tc = tcase_create("context");
  tcase_add_test(tc, config_init_turns_held_warn_off);
  tcase_add_test(tc, context_is_set_and_read_on_the_main_thread);
  tcase_add_test(tc, context_is_read_inside_a_coroutine_and_set_through_one);
  tcase_add_test(tc, context_is_cleared_by_release_when_the_same_state_comes_back);
  tcase_add_test(tc, context_is_cleared_by_discard);
  tcase_add_test(tc, context_refuses_a_state_no_pool_made_or_not_checked_out);
  suite_add_tcase(s, tc);

  tc = tcase_create("held");
  tcase_add_test(tc, held_too_long_is_reported_once_per_acquire);
  tcase_add_test(tc, held_too_long_is_off_by_default);
  tcase_add_test(tc, held_too_long_is_not_reported_for_a_discarded_state);
  tcase_add_test(tc, held_too_long_names_the_thread_that_acquired);
  tcase_add_test(tc, held_too_long_under_concurrent_acquires_and_the_watchdog_thread);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
