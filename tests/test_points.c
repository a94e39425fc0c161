/*
** The wake-up protocol's interleavings, made to happen (built with --enable-fault-injection
** only: the test points of lib/fault.h).  A release that lands between an acquire's first look
** and its entering the waiters sees no waiter and wakes nobody: only the look made after
** entering finds the state.  The hammers of test_threads and test_async meet that window by
** chance; here it is hit every run, so removing the second look fails these tests every time.
*/
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* One state, cached in the magazine, under RESET_STACK (i 0) or RESET_FULL (i 1). */
static luapool *one_state_pool_reset(int i) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.reset = i == 0 ? LUAPOOL_RESET_STACK : LUAPOOL_RESET_FULL;
  return util_pool(&cfg);
}

/*
** Two releases of one state, the second landing after the first found the slot and before it
** claimed it (the interleaving of a double release that races): the one that claims second is
** refused with its log line, and the state is released, reset and cached once.  The test
** point runs the other release at that moment, every run; test_threads'
** a_double_release_that_races_lets_one_through meets the same window by chance.
*/
START_TEST(a_release_that_loses_the_claim_is_refused) {
  luapool *p = one_state_pool_reset(_i);
  handback h = {p, util_acquire(p)};
  int logs = util_log_count();
  lp_fault_on_point(LP_POINT_BEFORE_CLAIM, release_it, &h);
  luapool_release(p, h.L); /* the point's release claims the state first */
  ck_assert_int_eq(util_log_count(), logs + 1);
  ck_assert(util_log_has("not checked out"));
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.releases, 1);
  ck_assert_uint_eq(st.idle, 1);
  ck_assert_uint_eq(st.in_use, 0);
  /* cached once: one acquire gets it, the next finds nothing (max_states 1) */
  lua_State *L, *L2;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, h.L);
  ck_assert_int_eq(luapool_acquire(p, 0, &L2), LUAPOOL_ETIMEDOUT);
  /* and a discard that loses the claim to a release is refused the same way */
  lp_fault_on_point(LP_POINT_BEFORE_CLAIM, release_it, &h);
  luapool_discard(p, L);
  ck_assert_int_eq(util_log_count(), logs + 2);
  st = util_stats(p);
  ck_assert_uint_eq(st.releases, 2);
  ck_assert_uint_eq(st.discarded, 0);
  ck_assert_uint_eq(st.idle, 1);
  luapool_destroy(p);
}
END_TEST

static void shut_down(void *ud) {
  handback *h = ud;
  ck_assert_int_eq(luapool_shutdown(h->p, 0), LUAPOOL_ETIMEDOUT); /* h->L is still out */
}

/*
** A shutdown that lands inside a release, after the release's one look at the pool's key: the
** release caches its state as if the shutdown came just after it.  The next acquire on that
** thread pops the state and must not hand it out: the key it reads is 0 since the shutdown, so
** it closes the state (as a release on a closed pool does) and says LUAPOOL_ECLOSED.  Were the
** key left as it was, that acquire would be a magazine hit on a shut-down pool.
*/
START_TEST(a_shutdown_inside_a_release_leaves_no_state_to_hand_out) {
  luapool *p = one_state_pool_reset(_i);
  handback h = {p, util_acquire(p)};
  lp_fault_on_point(LP_POINT_RELEASE_AFTER_KEY, shut_down, &h);
  luapool_release(p, h.L);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.in_use, 0);
  ck_assert_uint_eq(st.live, 1); /* cached in this thread's magazine, after the close */
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_ECLOSED);
  ck_assert_ptr_null(L);
  st = util_stats(p);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.closed, 1);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_ECLOSED);
  luapool_destroy(p);
}
END_TEST

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

/*
** A long library call looks at the interrupt inside the call, not only when it is charged (class
** 21 of doc/security.md): the point interrupts the request at the call's first look between two
** steps of its work, and the request must stop there: no later look is reached, the Lua
** statement after the call never runs (mark), and a sort leaves its table unsorted.  Before the
** guard's own move, rep, sort and utf8.len no such look existed: the point never ran and each
** call went to its end.
*/
static const char *const long_calls[] = {
    "local t = {} for i = 1, 5000 do t[i] = 5000 - i end T = t table.sort(t) mark()",
    "local s = string.rep('ab', 3 << 20, ',') mark()",
    "table.move({}, 1, 1 << 40, 1, {}) mark()",
    "local s = ('\\u{e9}'):rep(3 << 20) local n = utf8.len(s) mark()",
};

static int marks;

static int mark(lua_State *L) {
  (void)L;
  marks++;
  return 0;
}

static int looks; /* the call's looks reached */

/* The first look interrupts the request; the point stays armed, to count the looks after. */
static void interrupt_it(void *ud) {
  if (looks++ == 0)
    ck_assert_int_eq(luapool_interrupt(ud), LUAPOOL_OK);
  lp_fault_on_point(LP_POINT_GUARD_LOOK, interrupt_it, ud);
}

START_TEST(a_long_library_call_looks_as_it_goes) {
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_SAFE);
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  lua_pushcfunction(L, mark);
  lua_setglobal(L, "mark");
  lua_pushliteral(L, "T");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "test_points T"); /* "T" stays interned for the check */
  lua_pop(L, 1);
  marks = looks = 0;
  lp_fault_on_point(LP_POINT_GUARD_LOOK, interrupt_it, L);
  const char *msg = util_error_of(L, "=long", long_calls[_i]);
  ck_assert_msg(strstr(msg, "interrupted") != NULL, "%s: %s", long_calls[_i], msg);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_INTERRUPTED);
  ck_assert_int_eq(marks, 0);
  ck_assert_msg(looks == 1, "%s: %d looks: the one after the interrupt did not stop the call",
                long_calls[_i], looks);
  if (_i == 0) { /* stopped inside: 5000 down to 1 is not yet ascending */
    ck_assert_int_eq(lua_getglobal(L, "T"), LUA_TTABLE);
    bool sorted = true;
    for (int i = 2; i <= 5000 && sorted; i++) {
      lua_rawgeti(L, -1, i - 1);
      lua_rawgeti(L, -2, i);
      sorted = lua_tointeger(L, -2) <= lua_tointeger(L, -1);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    ck_assert_msg(!sorted, "the sort ran to its end");
  }
  lp_fault_on_point(LP_POINT_GUARD_LOOK, NULL, NULL);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/*
** A steal that comes while the owner is inside its plain pop's window (the point holds it there
** for 100 ms): the stealer must wait for the window to close (magazine.c, steal_wait), then find
** the entry the owner emptied, and time out; the owner gets the state.  Without that wait both
** would take it.  The stealer is a thread of its own: the owner cannot wait for it inside its
** window, since a correct stealer waits for the owner.
*/
typedef struct window_run {
  luapool *p;
  pthread_t stealer;
  int rc;
  lua_State *L;
} window_run;

static void *steal_it(void *arg) {
  window_run *w = arg;
  w->rc = luapool_acquire(w->p, 0, &w->L);
  return NULL;
}

static void steal_meanwhile(void *ud) {
  window_run *w = ud;
  ck_assert_int_eq(pthread_create(&w->stealer, NULL, steal_it, w), 0);
  struct timespec hold = {0, 100 * 1000 * 1000};
  nanosleep(&hold, NULL);
}

START_TEST(a_steal_waits_for_the_owners_pop_window) {
  luapool *p = one_state_pool_reset(0); /* one state, cached in this thread's magazine */
  luapool_release(p, util_acquire(p));
  window_run w = {.p = p, .L = NULL};
  lp_fault_on_point(LP_POINT_POP_WINDOW, steal_meanwhile, &w);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_int_eq(pthread_join(w.stealer, NULL), 0);
  ck_assert_int_eq(w.rc, LUAPOOL_ETIMEDOUT); /* it found the entry the owner emptied */
  ck_assert_ptr_null(w.L);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.in_use, 1);
  ck_assert_uint_eq(st.created, 1);
  luapool_release(p, L);
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
  tcase_add_loop_test(tc, a_release_that_loses_the_claim_is_refused, 0, 2);
  tcase_add_loop_test(tc, a_shutdown_inside_a_release_leaves_no_state_to_hand_out, 0, 2);
  tcase_add_loop_test(tc, a_long_library_call_looks_as_it_goes, 0, 4);
  tcase_add_test(tc, a_steal_waits_for_the_owners_pop_window);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
