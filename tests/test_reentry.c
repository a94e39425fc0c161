/*
** Calls into luapool from inside its callbacks (on_create, on_state, log, clock_ms), on the
** caller's thread (luapool_maintain) and on the watchdog thread: every public function either
** works or is refused with a log line, and none deadlocks.  A deadlock hangs the test, which the
** tcase's timeout and an alarm() fail.  The rule per callback is in luapool_config_init(3),
** "Callbacks".
*/
#include <lauxlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* The callback that acts, and what it calls. */
enum { CB_ON_CREATE, CB_ON_STATE_CREATED, CB_ON_STATE_CLOSED, CB_LOG, CB_CLOCK_MS, CB_COUNT };
enum {
  FN_MAINTAIN,
  FN_SHUTDOWN,
  FN_DESTROY,
  FN_CREATE,
  FN_ACQUIRE,
  FN_RELEASE,
  FN_DISCARD,
  FN_STATS_GET,
  FN_STRERROR,
  FN_COUNT
};
static const char *const fn_names[FN_COUNT] = {
    "luapool_maintain", "luapool_shutdown",  "luapool_destroy",
    "luapool_create",   "luapool_acquire",   "luapool_release",
    "luapool_discard",  "luapool_stats_get", "luapool_strerror"};

/* One test's run (each runs in a process of its own: Check forks). */
static struct {
  luapool *p;
  atomic_int armed;        /* the CB_* that acts next (once), or -1 */
  int fn;                  /* FN_*: what it calls */
  lua_State *spare;        /* the state FN_RELEASE and FN_DISCARD give back */
  atomic_int done;         /* the callback acted */
  int rc;                  /* what the call returned, or 0 / -100 for the checks of void calls */
  atomic_bool fail_create; /* on_create fails: a pass logs that it could not create a state */
  atomic_bool close_again; /* on_state CLOSED releases its own state (destroy's case) */
  atomic_int log_calls;
  atomic_uint_fast64_t now_ms; /* clock_ms's clock */
} R = {.armed = -1};

static void act(void) {
  luapool_stats before, after;
  switch (R.fn) {
  case FN_MAINTAIN:
    R.rc = luapool_maintain(R.p);
    break;
  case FN_SHUTDOWN:
    R.rc = luapool_shutdown(R.p, -1); /* no limit: if it were not refused, a drain would hang */
    break;
  case FN_DESTROY:
    luapool_destroy(R.p); /* refused: the pool must still be there afterwards */
    R.rc = 0;
    break;
  case FN_CREATE: {
    luapool_config cfg;
    util_config(&cfg);
    luapool *q = NULL;
    R.rc = luapool_create(&cfg, &q);
    if (q != NULL)
      luapool_destroy(q);
    break;
  }
  case FN_ACQUIRE: {
    lua_State *L = NULL;
    R.rc = luapool_acquire(R.p, -1, &L); /* no limit: if it waited, the pass would hang */
    if (R.rc == LUAPOOL_OK) {
      if (luaL_dostring(L, "return 6 * 7") != LUA_OK || lua_tointeger(L, -1) != 42)
        R.rc = -100;
      luapool_release(R.p, L);
    }
    break;
  }
  case FN_RELEASE:
  case FN_DISCARD:
    luapool_stats_get(R.p, &before);
    if (R.fn == FN_RELEASE)
      luapool_release(R.p, R.spare);
    else
      luapool_discard(R.p, R.spare);
    R.spare = NULL;
    luapool_stats_get(R.p, &after);
    if (R.fn == FN_RELEASE)
      R.rc = after.releases == before.releases + 1 ? 0 : -100;
    else
      R.rc = after.discarded == before.discarded + 1 ? 0 : -100;
    break;
  case FN_STATS_GET:
    luapool_stats_get(R.p, &after);
    R.rc = after.created >= 2 && after.in_use >= 1 ? 0 : -100;
    break;
  case FN_STRERROR:
    R.rc = strcmp(luapool_strerror(LUAPOOL_EINVAL), "invalid argument") == 0 ? 0 : -100;
    break;
  }
}

static void maybe_act(int cb) {
  int expected = cb;
  if (!atomic_compare_exchange_strong(&R.armed, &expected, -1))
    return;
  act();
  atomic_store(&R.done, 1);
}

static int on_create(lua_State *L, void *ud) {
  (void)L, (void)ud;
  if (atomic_load(&R.fail_create))
    return 1;
  maybe_act(CB_ON_CREATE);
  return 0;
}

static void on_state(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)reason;
  if (event == LUAPOOL_STATE_CLOSED && atomic_load(&R.close_again))
    luapool_release(R.p, L); /* the state being closed: must be refused, never closed twice */
  maybe_act(event == LUAPOOL_STATE_CREATED ? CB_ON_STATE_CREATED : CB_ON_STATE_CLOSED);
}

static void log_cb(void *ud, int level, const char *msg) {
  atomic_fetch_add(&R.log_calls, 1);
  util_log(ud, level, msg);
  maybe_act(CB_LOG);
}

static uint64_t clock_cb(void *ud) {
  (void)ud;
  maybe_act(CB_CLOCK_MS);
  return atomic_load(&R.now_ms);
}

/* A deadlock must fail the test even where Check does not fork (CK_FORK=no). */
static void bound(void) {
  signal(SIGALRM, SIG_DFL); /* a hang ends as "signal 14" (Check's handler would kill -9) */
  alarm(120);
}

static void unbound(void) {
  alarm(0);
}

static void config(luapool_config *cfg, bool watchdog) {
  util_config(cfg);
  cfg->libs = LUAPOOL_LIB_BASE; /* cheap states */
  cfg->on_create = on_create;
  cfg->on_state = on_state;
  cfg->log = log_cb;
  cfg->clock_ms = clock_cb;
  cfg->watchdog_interval_ms = watchdog ? 5 : 0;
}

static bool acted(luapool *p, void *arg) {
  (void)p, (void)arg;
  return atomic_load(&R.done) != 0;
}

static bool idle_is(luapool *p, void *arg) {
  return util_stats(p).idle == *(unsigned *)arg;
}

/*
** One combination: callback cb calls function fn, from a pass that luapool_maintain runs on the
** test's thread, or (watchdog) that the watchdog thread runs.
**
** A pass that creates a state (on_create, on_state CREATED, clock_ms; log: a creation that
** fails): min_idle 1, and the test holds every state, so the next pass creates one.  A pass
** that closes one (on_state CLOSED): max_idle 0, and the test releases a state, which the next
** pass trims.  So when the callback acts, no state is idle: an acquire there is refused.
** clock_ms, read at the start of every pass: min_idle 0, and the test holds the two states it
** made, so no pass creates one (with min_idle 1, a pass that read the clock before it was armed
** could create one, and the next pass's clock_ms acquired it: CI at 73b85da, under valgrind).
*/
static void run_combination(int cb, int fn, bool watchdog) {
  luapool_config cfg;
  config(&cfg, watchdog);
  bool closes = cb == CB_ON_STATE_CLOSED, clock = cb == CB_CLOCK_MS;
  cfg.min_idle = closes || clock ? 0 : 1;
  cfg.max_idle = closes ? 0 : 4;
  R.fn = fn;
  R.p = util_pool(&cfg);
  unsigned one = 1;
  lua_State *hold = NULL, *victim = NULL;
  R.spare = util_acquire(R.p); /* the prewarmed state, or a new one */
  if (clock) {
    /* nothing to prewarm: hold, below, is a new state */
  } else if (!closes) {
    if (!watchdog)
      ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK); /* another state, for hold */
    ck_assert_msg(util_wait_until(idle_is, R.p, &one, 30.0), "no state was prewarmed");
  } else {
    victim = util_acquire(R.p);
  }
  /* a refusal logged from inside log goes to stderr: captured from before the watchdog's next
     pass can act (it did act between the acquire below and a later capture, under valgrind) */
  util_stderr_begin();
  if (cb == CB_LOG)
    atomic_store(&R.fail_create, true);
  if (cb != CB_CLOCK_MS) /* any pass reads the clock: arm it once nothing is idle */
    atomic_store(&R.armed, cb);
  if (!closes)
    hold = util_acquire(R.p); /* idle 0: below min_idle, the next pass creates one (clock_ms:
                                 a new state, and no pass creates one) */
  else
    luapool_release(R.p, victim); /* idle: 1, above max_idle: the next pass closes it */
  if (cb == CB_CLOCK_MS)
    atomic_store(&R.armed, cb);
  if (!watchdog)
    ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK);
  bool did = util_wait_until(acted, R.p, NULL, 30.0);
  const char *err = util_stderr_end();
  ck_assert_msg(did, "the %s callback never ran", cb == CB_LOG ? "log" : "armed");
  atomic_store(&R.fail_create, false);

  const char *name = fn_names[fn];
  switch (fn) {
  case FN_MAINTAIN:
  case FN_SHUTDOWN:
  case FN_CREATE:
  case FN_ACQUIRE: /* no state is idle when the callback runs */
    ck_assert_msg(R.rc == LUAPOOL_EINVAL, "%s: %d", name, R.rc);
    ck_assert_msg(util_log_has("callback") || strstr(err, "callback") != NULL,
                  "%s: the refusal was not logged", name);
    break;
  case FN_DESTROY:
    ck_assert(util_log_has("luapool_destroy: called from the") ||
              strstr(err, "luapool_destroy: called from the") != NULL);
    break;
  default:
    ck_assert_msg(R.rc == 0, "%s: %d", name, R.rc);
  }
  /* Whatever the callback did, the pool works on: not shut down, not destroyed. */
  ck_assert(!util_pool_closed(R.p));
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(R.p, -1, &L), LUAPOOL_OK);
  luapool_release(R.p, L);
  if (hold != NULL)
    luapool_release(R.p, hold);
  if (R.spare != NULL)
    luapool_release(R.p, R.spare);
  ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK);
  ck_assert_int_eq(luapool_shutdown(R.p, 10000), LUAPOOL_OK);
  luapool_stats s = util_stats(R.p);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(R.p);
}

/* _i: the function, and with or without a watchdog thread. */
#define COMBINATIONS (2 * FN_COUNT)

START_TEST(calls_from_on_create_work_or_are_refused) {
  run_combination(CB_ON_CREATE, _i % FN_COUNT, _i >= FN_COUNT);
}
END_TEST

START_TEST(calls_from_on_state_created_work_or_are_refused) {
  run_combination(CB_ON_STATE_CREATED, _i % FN_COUNT, _i >= FN_COUNT);
}
END_TEST

START_TEST(calls_from_on_state_closed_work_or_are_refused) {
  run_combination(CB_ON_STATE_CLOSED, _i % FN_COUNT, _i >= FN_COUNT);
}
END_TEST

START_TEST(calls_from_log_work_or_are_refused) {
  run_combination(CB_LOG, _i % FN_COUNT, _i >= FN_COUNT);
}
END_TEST

START_TEST(calls_from_clock_ms_work_or_are_refused) {
  run_combination(CB_CLOCK_MS, _i % FN_COUNT, _i >= FN_COUNT);
}
END_TEST

/* ---- the rules one at a time ------------------------------------------------------------------
 */

/* The report: on_create runs inside a pass, under its mutex; maintain there deadlocked. */
START_TEST(maintain_from_on_create_during_a_pass_returns_einval) {
  luapool_config cfg;
  config(&cfg, false);
  R.fn = FN_MAINTAIN;
  cfg.min_idle = 1;
  R.p = util_pool(&cfg);
  lua_State *L = util_acquire(R.p);
  atomic_store(&R.armed, CB_ON_CREATE);
  ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK); /* creates one: on_create calls maintain */
  ck_assert_int_eq(atomic_load(&R.done), 1);
  ck_assert_int_eq(R.rc, LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_maintain: called from the on_create callback (refused)"));
  ck_assert_uint_eq(util_stats(R.p).created, 2);
  luapool_release(R.p, L);
  luapool_destroy(R.p);
}
END_TEST

/* An acquire inside a callback takes an idle state if one is there... */
START_TEST(acquire_from_a_callback_takes_an_idle_state) {
  luapool_config cfg;
  config(&cfg, false);
  cfg.min_idle = 1;
  R.fn = FN_ACQUIRE;
  R.p = util_pool(&cfg); /* one idle state, on the global list */
  atomic_store(&R.armed, CB_CLOCK_MS);
  ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK);
  ck_assert_int_eq(atomic_load(&R.done), 1);
  ck_assert_int_eq(R.rc, LUAPOOL_OK); /* and ran Lua on it, and released it */
  luapool_stats s = util_stats(R.p);
  ck_assert_uint_eq(s.acquires, 1);
  ck_assert_uint_eq(s.releases, 1);
  ck_assert_uint_eq(s.created, 1);
  luapool_destroy(R.p);
}
END_TEST

/* ...but never creates one nor waits for one: with none idle and none to create, at once. */
START_TEST(acquire_from_a_callback_never_creates_nor_waits) {
  for (int capped = 0; capped < 2; capped++) {
    luapool_config cfg;
    config(&cfg, false);
    cfg.max_states = capped ? 1 : 0; /* capped: waiting is all a plain acquire could do */
    R.fn = FN_ACQUIRE;
    atomic_store(&R.done, 0);
    R.p = util_pool(&cfg);
    lua_State *L = util_acquire(R.p);
    atomic_store(&R.armed, CB_CLOCK_MS);
    ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK);
    ck_assert_int_eq(atomic_load(&R.done), 1);
    ck_assert_int_eq(R.rc, LUAPOOL_EINVAL);
    ck_assert(
        util_log_has("luapool_acquire: called from the clock_ms callback with no idle state"));
    ck_assert_uint_eq(util_stats(R.p).created, 1);
    luapool_release(R.p, L);
    luapool_destroy(R.p);
  }
}
END_TEST

static void log_then_maintain(void *ud, int level, const char *msg) {
  atomic_fetch_add(&R.log_calls, 1);
  util_log(ud, level, msg);
  (void)luapool_maintain(R.p); /* refused, and the refusal logged: where to? */
}

/* What luapool logs while inside log goes to stderr: log is never entered again. */
START_TEST(a_log_callback_that_calls_luapool_is_not_reentered) {
  luapool_config cfg;
  config(&cfg, false);
  cfg.log = log_then_maintain;
  R.p = util_pool(&cfg);
  util_stderr_begin();
  luapool_release(R.p, NULL); /* refused: one message to log */
  const char *err = util_stderr_end();
  ck_assert_int_eq(atomic_load(&R.log_calls), 1);
  ck_assert(util_log_has("luapool_release: NULL lua_State (refused)"));
  ck_assert_ptr_nonnull(strstr(err, "luapool: luapool_maintain: called from the log callback"));
  luapool_destroy(R.p);
}
END_TEST

/* destroy closes a state still checked out; its on_state releasing it is refused. */
START_TEST(a_release_from_on_state_of_a_state_destroy_closes_is_refused) {
  luapool_config cfg;
  config(&cfg, false);
  R.p = util_pool(&cfg);
  lua_State *L = util_acquire(R.p);
  (void)L;
  atomic_store(&R.close_again, true);
  luapool_destroy(R.p); /* closes L once: a second close would be a double free */
  ck_assert(util_log_has("luapool_destroy: closed 1 state(s) still checked out"));
  ck_assert(util_log_has("is not checked out"));
}
END_TEST

static lua_State *during_destroy[2];
static atomic_int destroy_closes;
static luapool_stats stats_in_destroy;
static int acquire_in_destroy = 1;

static void on_state_in_destroy(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)reason;
  if (event != LUAPOOL_STATE_CLOSED || atomic_fetch_add(&destroy_closes, 1) != 0)
    return;
  luapool_stats_get(R.p, &stats_in_destroy);
  lua_State *other = L == during_destroy[0] ? during_destroy[1] : during_destroy[0];
  luapool_release(R.p, other); /* works: the pool is shut down, so it is closed here, nested */
  lua_State *again;
  acquire_in_destroy = luapool_acquire(R.p, -1, &again);
}

/* luapool_destroy closes the states still out; on_state, as it does, can still use the pool. */
START_TEST(calls_from_on_state_during_destroy_work_or_are_refused) {
  luapool_config cfg;
  config(&cfg, false);
  cfg.on_state = on_state_in_destroy;
  R.p = util_pool(&cfg);
  during_destroy[0] = util_acquire(R.p);
  during_destroy[1] = util_acquire(R.p);
  luapool_destroy(R.p);
  ck_assert_int_eq(atomic_load(&destroy_closes), 2);
  ck_assert_uint_eq(stats_in_destroy.created, 2);
  ck_assert_int_eq(acquire_in_destroy, LUAPOOL_ECLOSED);
  ck_assert(util_log_has("luapool_destroy: closed 1 state(s) still checked out"));
}
END_TEST

static int on_create_raises(lua_State *L, void *ud) {
  (void)ud;
  return luaL_error(L, "on_create fails");
}

/* A Lua error unwinds through on_create (a longjmp): the thread is not left "in a callback". */
START_TEST(an_error_raised_in_on_create_leaves_no_callback_mark) {
  luapool_config cfg;
  config(&cfg, false);
  cfg.on_create = on_create_raises;
  R.p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(R.p, 0, &L), LUAPOOL_EINIT);
  ck_assert_int_eq(luapool_maintain(R.p), LUAPOOL_OK); /* not refused */
  ck_assert_int_eq(luapool_shutdown(R.p, 0), LUAPOOL_OK);
  luapool_destroy(R.p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("reentry");
  TCase *tc = tcase_create("combinations");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, bound, unbound);
  tcase_add_loop_test(tc, calls_from_on_create_work_or_are_refused, 0, COMBINATIONS);
  tcase_add_loop_test(tc, calls_from_on_state_created_work_or_are_refused, 0, COMBINATIONS);
  tcase_add_loop_test(tc, calls_from_on_state_closed_work_or_are_refused, 0, COMBINATIONS);
  tcase_add_loop_test(tc, calls_from_log_work_or_are_refused, 0, COMBINATIONS);
  tcase_add_loop_test(tc, calls_from_clock_ms_work_or_are_refused, 0, COMBINATIONS);
  suite_add_tcase(s, tc);

  tc = tcase_create("rules");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, bound, unbound);
  tcase_add_test(tc, maintain_from_on_create_during_a_pass_returns_einval);
  tcase_add_test(tc, acquire_from_a_callback_takes_an_idle_state);
  tcase_add_test(tc, acquire_from_a_callback_never_creates_nor_waits);
  tcase_add_test(tc, a_log_callback_that_calls_luapool_is_not_reentered);
  tcase_add_test(tc, a_release_from_on_state_of_a_state_destroy_closes_is_refused);
  tcase_add_test(tc, calls_from_on_state_during_destroy_work_or_are_refused);
  tcase_add_test(tc, an_error_raised_in_on_create_leaves_no_callback_mark);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
