/*
** The wake-up protocol's interleavings, made to happen (built with --enable-fault-injection
** only: the test points of lib/fault.h).  A release that lands between an acquire's first look
** and its entering the waiters sees no waiter and wakes nobody: only the look made after
** entering finds the state.  The hammers of test_threads and test_async meet that window by
** chance; here it is hit every run, so removing the second look fails these tests every time.
*/
#include <poll.h>
#include <stdlib.h>

#include "fault.h"
#include "util.h"

/* The state a test point gives back, on the acquiring thread, inside the acquire. */
typedef struct handback {
  luapool *p;
  lua_State *L;
} handback;

static void release_it(void *ud) {
  handback *h = ud;
  luapool_release(h->p, h->L);
}

static luapool *one_state_pool(void) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.magazine_size = 0; /* the release goes to the global list, where the second look finds it */
  return util_pool(&cfg);
}

START_TEST(a_release_before_the_waiter_enters_is_found_by_the_look_after) {
  luapool *p = one_state_pool();
  handback h = {p, util_acquire(p)};
  lp_fault_on_point(LP_POINT_BEFORE_WAIT, release_it, &h);
  lua_State *L = NULL;
  /* Without the look after entering, this sleeps its full second and times out: the release saw
     no waiter. */
  ck_assert_int_eq(luapool_acquire(p, 1000, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, h.L);
  ck_assert_uint_eq(util_stats(p).waits, 0); /* found without sleeping */
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_release_before_the_notifier_registers_is_found_by_the_look_after) {
  luapool *p = one_state_pool();
  handback h = {p, util_acquire(p)};
  luapool_notifier *n;
  ck_assert_int_eq(luapool_notifier_open(p, &n), LUAPOOL_OK);
  lp_fault_on_point(LP_POINT_ASYNC_BEFORE_REGISTER, release_it, &h);
  lua_State *L = NULL;
  /* Without the look after registering, this says EAGAIN and the descriptor never becomes
     readable: the release saw no waiter. */
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, h.L);
  luapool_release(p, L);
  /* Registered and unregistered again: no wake-up is left pending for it. */
  struct pollfd pfd = {.fd = luapool_notifier_fd(n), .events = POLLIN};
  ck_assert_int_eq(poll(&pfd, 1, 0), 0);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_release_after_the_notifier_registered_wakes_it) {
  /* The other side of the same window: the release comes after the registration, so it sees the
     waiter and makes the descriptor readable. */
  luapool *p = one_state_pool();
  lua_State *held = util_acquire(p);
  luapool_notifier *n;
  ck_assert_int_eq(luapool_notifier_open(p, &n), LUAPOOL_OK);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_EAGAIN);
  luapool_release(p, held);
  struct pollfd pfd = {.fd = luapool_notifier_fd(n), .events = POLLIN};
  ck_assert_int_eq(poll(&pfd, 1, 5000), 1); /* bounded: fails instead of hanging */
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, held);
  luapool_release(p, L);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("points");
  TCase *tc = tcase_create("points");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, a_release_before_the_waiter_enters_is_found_by_the_look_after);
  tcase_add_test(tc, a_release_before_the_notifier_registers_is_found_by_the_look_after);
  tcase_add_test(tc, a_release_after_the_notifier_registered_wakes_it);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
