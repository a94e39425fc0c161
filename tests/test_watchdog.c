/* The watchdog: trimming to max_idle (magazines included) and prewarming to min_idle. */
#include <semaphore.h>

#include "util.h"

/* ---- deterministic: luapool_maintain runs the pass on the test's thread ------------------- */

START_TEST(maintain_trims_idle_states_to_max_idle) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_idle = 2;
  luapool *p = util_pool(&cfg);
  lua_State *L[8];
  for (int i = 0; i < 8; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
  for (int i = 0; i < 8; i++)
    luapool_release(p, L[i]); /* 4 into the magazine, 4 onto the global list */
  ck_assert_uint_eq(util_stats(p).idle, 8);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.idle, 2);
  ck_assert_uint_eq(s.live, 2);
  ck_assert_uint_eq(s.trimmed, 6);
  ck_assert_uint_eq(s.closed, 6);
  luapool_destroy(p);
}
END_TEST

typedef struct quiet_thread {
  luapool *p;
  sem_t *cached, *done;
} quiet_thread;

/* Caches four states in its magazine, then goes quiet (alive, not touching the pool). */
static void *cache_four_then_quiet(void *arg) {
  quiet_thread *q = arg;
  lua_State *L[4];
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(luapool_acquire(q->p, -1, &L[i]), LUAPOOL_OK);
  for (int i = 0; i < 4; i++)
    luapool_release(q->p, L[i]);
  sem_post(q->cached);
  sem_wait(q->done);
  return NULL;
}

START_TEST(maintain_counts_and_trims_states_in_quiet_threads_magazines) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_idle = 3;
  luapool *p = util_pool(&cfg);
  enum { N = 6 };
  sem_t cached, done;
  sem_init(&cached, 0, 0);
  sem_init(&done, 0, 0);
  quiet_thread q = {p, &cached, &done};
  pthread_t t[N];
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, cache_four_then_quiet, &q), 0);
  for (int i = 0; i < N; i++)
    sem_wait(&cached);
  ck_assert_uint_eq(util_stats(p).idle, 4 * N); /* all in magazines, none on the global list */
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.idle, 3);
  ck_assert_uint_eq(s.trimmed, 4 * N - 3);
  for (int i = 0; i < N; i++)
    sem_post(&done);
  for (int i = 0; i < N; i++)
    pthread_join(t[i], NULL);
  luapool_destroy(p);
}
END_TEST

START_TEST(maintain_refills_to_min_idle_within_max_states) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.min_idle = 2;
  cfg.max_idle = 4;
  cfg.max_states = 3;
  luapool *p = util_pool(&cfg);
  lua_State *a, *b;
  ck_assert_int_eq(luapool_acquire(p, 0, &a), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &b), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(p).idle, 0);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.idle, 1); /* two would break max_states */
  ck_assert_uint_eq(s.live, 3);
  luapool_release(p, a);
  luapool_release(p, b);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  s = util_stats(p);
  ck_assert_uint_eq(s.idle, 3); /* within max_idle: nothing trimmed */
  ck_assert_uint_eq(s.trimmed, 0);
  luapool_destroy(p);
}
END_TEST

/* ---- the watchdog thread does the same on its own ---------------------------------------- */

static bool idle_is(luapool *p, void *arg) {
  return util_stats(p).idle == *(unsigned *)arg;
}

START_TEST(the_watchdog_thread_trims_and_prewarms) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 5;
  cfg.min_idle = 2;
  cfg.max_idle = 3;
  luapool *p = util_pool(&cfg);
  lua_State *L[6];
  for (int i = 0; i < 6; i++)
    ck_assert_int_eq(luapool_acquire(p, -1, &L[i]), LUAPOOL_OK);
  unsigned two = 2, three = 3;
  /* all six out: the watchdog makes two more ready */
  ck_assert_msg(util_wait_until(idle_is, p, &two, 30.0), "no prewarm to min_idle");
  for (int i = 0; i < 6; i++)
    luapool_release(p, L[i]);
  /* eight idle: the watchdog closes five */
  ck_assert_msg(util_wait_until(idle_is, p, &three, 30.0), "no trim to max_idle");
  luapool_stats s = util_stats(p);
  ck_assert_uint_ge(s.trimmed, 5);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("watchdog");
  TCase *tc = tcase_create("watchdog");
  tcase_add_test(tc, maintain_trims_idle_states_to_max_idle);
  tcase_add_test(tc, maintain_counts_and_trims_states_in_quiet_threads_magazines);
  tcase_add_test(tc, maintain_refills_to_min_idle_within_max_states);
  tcase_add_test(tc, the_watchdog_thread_trims_and_prewarms);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
