/*
** Acquiring from an event loop: luapool_acquire_async and its notifier.  Each wake-up claim
** (none lost, none wasted, exactly one per release, a cancelled one passed on) has a test here
** that fails when it breaks; every wait is bounded (poll with a timeout, timed acquires).
*/
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"
#include "wait.h" /* the wake policy, tested on an lp_wait of its own */
#ifdef LP_FAULTS
#include "fault.h"
#endif

/* Whether fd is readable now (timeout_ms 0) or becomes so within timeout_ms. */
static bool readable_within(int fd, int timeout_ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN) != 0;
}

static bool readable(const luapool_notifier *n) {
  return readable_within(luapool_notifier_fd(n), 0);
}

static luapool_notifier *open_notifier(luapool *p) {
  luapool_notifier *n = NULL;
  ck_assert_int_eq(luapool_notifier_open(p, &n), LUAPOOL_OK);
  ck_assert_ptr_nonnull(n);
  ck_assert_int_ge(luapool_notifier_fd(n), 0);
  return n;
}

/* One state at most; magazine_size 0: a release goes to the global list. */
static luapool *one_state_pool(void) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.magazine_size = 0;
  return util_pool(&cfg);
}

/* ---- the basic contract ---------------------------------------------------------------------- */

START_TEST(acquire_async_is_immediate_when_a_state_is_free) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  luapool_notifier *n = open_notifier(p);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK); /* room for a new state */
  ck_assert_ptr_nonnull(L);
  util_run(L, "x = 1 + 1");
  luapool_release(p, L);
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK); /* the magazine's */
  ck_assert_uint_eq(util_stats(p).magazine_hits, 1);
  luapool_release(p, L);
  ck_assert(!readable(n));
  ck_assert_uint_eq(util_waiters(p), 0);
  ck_assert_uint_eq(util_stats(p).async_notified, 0);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

typedef struct handoff {
  luapool *p;
  lua_State *L;
} handoff;

static void *release_it(void *arg) {
  handoff *h = arg;
  luapool_release(h->p, h->L);
  return NULL;
}

START_TEST(eagain_then_the_fd_becomes_readable_when_another_thread_releases) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.magazine_size = _i; /* the releaser's magazine, or the global list */
  luapool *p = util_pool(&cfg);
  lua_State *held = util_acquire(p);
  luapool_notifier *n = open_notifier(p);
  lua_State *L = NULL;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_EAGAIN);
  ck_assert_ptr_null(L);
  ck_assert_uint_eq(util_waiters(p), 1); /* registered, counted */
  ck_assert(!readable(n));
  handoff h = {p, held};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, release_it, &h), 0);
  ck_assert_msg(readable_within(luapool_notifier_fd(n), 10000),
                "the release did not make the notifier's fd readable: a lost wake-up");
  pthread_join(t, NULL);
  ck_assert_uint_eq(util_waiters(p), 0); /* the wake took it off the FIFO */
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, held);
  ck_assert(!readable(n)); /* acquire_async drained it */
  ck_assert_uint_eq(util_stats(p).async_notified, 1);
  luapool_release(p, L);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

START_TEST(registering_twice_is_one_entry) {
  luapool *p = one_state_pool();
  lua_State *held = util_acquire(p);
  luapool_notifier *n = open_notifier(p);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_EAGAIN);
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_EAGAIN);
  ck_assert_uint_eq(util_waiters(p), 1);
  luapool_notifier_cancel(n);
  ck_assert_uint_eq(util_waiters(p), 0);
  luapool_notifier_cancel(n); /* not registered: nothing to do */
  ck_assert_uint_eq(util_waiters(p), 0);
  luapool_release(p, held); /* no waiter: nobody is notified */
  ck_assert(!readable(n));
  ck_assert_uint_eq(util_stats(p).async_notified, 0);
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_woken_notifier_that_finds_the_state_taken_registers_again) {
  luapool *p = one_state_pool();
  lua_State *held = util_acquire(p);
  luapool_notifier *n = open_notifier(p), *m = open_notifier(p);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_EAGAIN);
  luapool_release(p, held);
  ck_assert(readable(n));
  ck_assert_int_eq(luapool_acquire_async(m, &L), LUAPOOL_OK); /* m, not woken, takes it first */
  lua_State *L2;
  ck_assert_int_eq(luapool_acquire_async(n, &L2), LUAPOOL_EAGAIN); /* consumed, queued again */
  ck_assert(!readable(n));
  ck_assert_uint_eq(util_waiters(p), 1);
  luapool_release(p, L);
  ck_assert(readable(n));
  ck_assert(!readable(m));
  ck_assert_int_eq(luapool_acquire_async(n, &L2), LUAPOOL_OK);
  luapool_release(p, L2);
  luapool_notifier_close(n);
  luapool_notifier_close(m);
  luapool_destroy(p);
}
END_TEST

/* ---- exactly one wake per release ------------------------------------------------------------ */

START_TEST(one_release_makes_exactly_one_fd_readable) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *n[3];
  for (int i = 0; i < 3; i++) {
    n[i] = open_notifier(p);
    lua_State *none;
    ck_assert_int_eq(luapool_acquire_async(n[i], &none), LUAPOOL_EAGAIN);
  }
  ck_assert_uint_eq(util_waiters(p), 3);
  for (int round = 0; round < 3; round++) {
    luapool_release(p, L); /* the wake is written before release returns */
    for (int i = 0; i < 3; i++)
      ck_assert_msg(readable(n[i]) == (i == round),
                    "release %d: notifier %d is %sreadable (FIFO: only notifier %d should be)",
                    round, i, readable(n[i]) ? "" : "not ", round);
    ck_assert_uint_eq(util_waiters(p), 2 - (unsigned)round);
    ck_assert_int_eq(luapool_acquire_async(n[round], &L), LUAPOOL_OK);
    ck_assert(!readable(n[round]));
  }
  luapool_release(p, L); /* nobody registered any more */
  for (int i = 0; i < 3; i++)
    ck_assert(!readable(n[i]));
  ck_assert_uint_eq(util_stats(p).async_notified, 3);
  for (int i = 0; i < 3; i++)
    luapool_notifier_close(n[i]);
  luapool_destroy(p);
}
END_TEST

/* A blocked acquire on another thread, with a bounded wait. */
typedef struct blocked {
  luapool *p;
  pthread_t t;
  atomic_int rc;   /* 1 until it returns */
  atomic_int done; /* it released what it got */
  atomic_int go;   /* may release now */
} blocked;

static void *blocked_acquire(void *arg) {
  blocked *b = arg;
  lua_State *L = NULL;
  int rc = luapool_acquire(b->p, 10000, &L);
  atomic_store(&b->rc, rc);
  if (rc == LUAPOOL_OK) {
    for (int i = 0; i < 10000 && !atomic_load(&b->go); i++)
      util_sleep_ms(1);
    luapool_release(b->p, L);
  }
  atomic_store(&b->done, 1);
  return NULL;
}

static void blocked_start(blocked *b, luapool *p) {
  b->p = p;
  atomic_init(&b->rc, 1);
  atomic_init(&b->done, 0);
  atomic_init(&b->go, 0);
  ck_assert_int_eq(pthread_create(&b->t, NULL, blocked_acquire, b), 0);
}

static bool waiters_are(luapool *p, void *arg) {
  return util_waiters(p) == *(unsigned *)arg;
}

static bool blocked_returned(luapool *p, void *arg) {
  (void)p;
  return atomic_load(&((blocked *)arg)->rc) != 1;
}

START_TEST(cancel_passes_an_unconsumed_wakeup_to_a_blocked_acquire) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *a = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(a, &none), LUAPOOL_EAGAIN);
  blocked b;
  blocked_start(&b, p);
  unsigned two = 2;
  ck_assert(util_wait_until(waiters_are, p, &two, 10.0)); /* b sleeps (it holds the mutex until) */
  luapool_release(p, L);
  ck_assert_msg(readable(a), "the first wake of a pool goes to a notifier (the policy)");
  ck_assert_int_eq(atomic_load(&b.rc), 1); /* b was not woken too */
  luapool_notifier_cancel(a);              /* a's loop no longer wants it */
  ck_assert(!readable(a));
  ck_assert_msg(util_wait_until(blocked_returned, p, &b, 10.0),
                "the cancelled wake-up did not reach the blocked acquire: lost");
  ck_assert_int_eq(atomic_load(&b.rc), LUAPOOL_OK);
  atomic_store(&b.go, 1);
  pthread_join(b.t, NULL);
  ck_assert_uint_eq(util_waiters(p), 0);
  luapool_notifier_close(a);
  luapool_destroy(p);
}
END_TEST

START_TEST(cancel_passes_an_unconsumed_wakeup_to_another_notifier) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *a = open_notifier(p), *b = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(a, &none), LUAPOOL_EAGAIN);
  ck_assert_int_eq(luapool_acquire_async(b, &none), LUAPOOL_EAGAIN);
  luapool_release(p, L);
  ck_assert(readable(a));
  ck_assert(!readable(b));
  if (_i == 0)
    luapool_notifier_cancel(a);
  else
    luapool_notifier_close(a); /* close cancels first */
  ck_assert_msg(readable(b), "the cancelled wake-up did not reach the other notifier: lost");
  if (_i == 0)
    ck_assert(!readable(a));
  ck_assert_uint_eq(util_stats(p).async_notified, 2); /* the passed-on one counts too */
  ck_assert_int_eq(luapool_acquire_async(b, &L), LUAPOOL_OK);
  luapool_release(p, L);
  if (_i == 0)
    luapool_notifier_close(a);
  luapool_notifier_close(b);
  luapool_destroy(p);
}
END_TEST

START_TEST(wakes_alternate_between_notifiers_and_blocked_acquires) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *a = open_notifier(p), *c = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(a, &none), LUAPOOL_EAGAIN);
  ck_assert_int_eq(luapool_acquire_async(c, &none), LUAPOOL_EAGAIN);
  blocked b;
  blocked_start(&b, p);
  unsigned three = 3;
  ck_assert(util_wait_until(waiters_are, p, &three, 10.0));
  luapool_release(p, L); /* 1st wake: the oldest notifier */
  ck_assert(readable(a) && !readable(c));
  ck_assert_int_eq(luapool_acquire_async(a, &L), LUAPOOL_OK);
  luapool_release(p, L); /* 2nd: the blocked acquire, though c waits */
  ck_assert(util_wait_until(blocked_returned, p, &b, 10.0));
  ck_assert_int_eq(atomic_load(&b.rc), LUAPOOL_OK);
  ck_assert(!readable(c));
  atomic_store(&b.go, 1); /* b releases: 3rd wake, c */
  pthread_join(b.t, NULL);
  ck_assert(readable(c));
  ck_assert_int_eq(luapool_acquire_async(c, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_notifier_close(a);
  luapool_notifier_close(c);
  luapool_destroy(p);
}
END_TEST

/* A blocked acquire's side, on a bare lp_wait: enter, one sleep (bounded), leave. */
typedef struct sleeper {
  lp_wait *w;
  pthread_t t;
  atomic_int woke;
} sleeper;

static void *sleep_once(void *arg) {
  sleeper *z = arg;
  struct timespec deadline;
  lp_time_deadline(&deadline, 10000);
  lp_wait_enter(z->w);
  int rc = lp_wait_sleep(z->w, &deadline);
  lp_wait_leave(z->w);
  atomic_store(&z->woke, rc == 0 ? 1 : 2);
  return NULL;
}

static unsigned sleepers_of(lp_wait *w) {
  lp_wait_lock(w);
  unsigned n = w->sleepers;
  lp_wait_unlock(w);
  return n;
}

static void register_bare(lp_wait *w, luapool_notifier *n) {
  lp_wait_async_enter(w, n);
  lp_wait_async_leave(w, n, false);
}

/*
** A signal goes only to a sleeper no earlier signal claimed.  One sleeper, two notifiers, three
** wakes while the mutex is held, so the signalled sleeper cannot take it back in between: the
** cond, the first notifier, and then the second notifier, not a second signal to the one
** sleeper already signalled (which would wake nobody: the second notifier's wake-up lost).
*/
START_TEST(a_signal_is_never_wasted_on_a_sleeper_already_signalled) {
  lp_wait w;
  ck_assert_int_eq(lp_wait_init(&w), LUAPOOL_OK);
  luapool_notifier *n1, *n2;
  ck_assert_int_eq(lp_wait_notifier_open(&w, NULL, &n1), LUAPOOL_OK);
  ck_assert_int_eq(lp_wait_notifier_open(&w, NULL, &n2), LUAPOOL_OK);
  register_bare(&w, n1);
  register_bare(&w, n2);
  sleeper z = {.w = &w};
  atomic_init(&z.woke, 0);
  ck_assert_int_eq(pthread_create(&z.t, NULL, sleep_once, &z), 0);
  for (int i = 0; i < 10000 && sleepers_of(&w) == 0; i++)
    util_sleep_ms(1);
  lp_wait_lock(&w);
  ck_assert_uint_eq(w.sleepers, 1);
  w.async_next = false; /* the cond's turn first */
  lp_wait_wake_one_locked(&w);
  ck_assert_uint_eq(w.signals, 1);
  ck_assert(!readable(n1) && !readable(n2));
  lp_wait_wake_one_locked(&w); /* alternation: a notifier */
  ck_assert(readable(n1) && !readable(n2));
  lp_wait_wake_one_locked(&w); /* the cond's turn, but its one sleeper is claimed */
  ck_assert_msg(readable(n2), "a second signal went to the one signalled sleeper: n2's lost");
  ck_assert_uint_eq(w.signals, 1);
  lp_wait_wake_one_locked(&w); /* nobody left: nothing */
  ck_assert_uint_eq(w.signals, 1);
  ck_assert_uint_eq(atomic_load(&w.notified), 2);
  lp_wait_unlock(&w);
  pthread_join(z.t, NULL);
  ck_assert_int_eq(atomic_load(&z.woke), 1); /* signalled, not timed out */
  ck_assert_uint_eq(w.sleepers, 0);
  ck_assert_uint_eq(w.signals, 0);
  ck_assert_uint_eq(atomic_load(&w.waiters), 0);
  lp_wait_notifier_close(&w, n1);
  lp_wait_notifier_close(&w, n2);
  lp_wait_fini(&w);
}
END_TEST

/* ---- shutdown, destroy, misuse, fork --------------------------------------------------------- */

START_TEST(shutdown_makes_fds_readable_and_acquire_async_returns_eclosed) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *queued = open_notifier(p), *idle = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(queued, &none), LUAPOOL_EAGAIN);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_ETIMEDOUT); /* L is still out */
  ck_assert(readable(queued));
  ck_assert(readable(idle)); /* every open notifier: loops notice */
  ck_assert_uint_eq(util_waiters(p), 0);
  ck_assert_int_eq(luapool_acquire_async(queued, &none), LUAPOOL_ECLOSED);
  ck_assert_int_eq(luapool_acquire_async(idle, &none), LUAPOOL_ECLOSED);
  luapool_notifier_cancel(queued);
  ck_assert(readable(queued)); /* and they stay so */
  luapool_notifier *late = NULL;
  ck_assert_int_eq(luapool_notifier_open(p, &late), LUAPOOL_ECLOSED);
  ck_assert_ptr_null(late);
  luapool_release(p, L);
  ck_assert_uint_eq(util_stats(p).async_notified, 0); /* shutdown's are not wake-ups for states */
  luapool_notifier_close(queued);
  luapool_notifier_close(idle);
  luapool_destroy(p);
}
END_TEST

START_TEST(destroy_with_an_open_notifier_logs_and_detaches_it) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *n = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(n, &none), LUAPOOL_EAGAIN);
  luapool_release(p, L);
  luapool_destroy(p);
  ck_assert(util_log_has("luapool_destroy: 1 notifier(s) still open"));
  util_stderr_begin();
  ck_assert_int_eq(luapool_acquire_async(n, &none), LUAPOOL_ECLOSED);
  luapool_notifier_cancel(n);
  const char *err = util_stderr_end();
  ck_assert_ptr_nonnull(strstr(err, "luapool_acquire_async: notifier"));
  ck_assert_ptr_nonnull(strstr(err, "outlived its pool"));
  luapool_notifier_close(n); /* frees it: no pool to touch */
}
END_TEST

START_TEST(misuse_is_refused_with_einval) {
  luapool *p = one_state_pool();
  luapool_notifier *n = (luapool_notifier *)0x1;
  lua_State *L = (lua_State *)0x1;
  util_stderr_begin();
  ck_assert_int_eq(luapool_notifier_open(NULL, &n), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_notifier_fd(NULL), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_acquire_async(NULL, &L), LUAPOOL_EINVAL);
  luapool_notifier_cancel(NULL);
  luapool_notifier_close(NULL); /* as free(NULL): nothing */
  const char *err = util_stderr_end();
  ck_assert_ptr_eq(n, (luapool_notifier *)0x1);
  ck_assert_ptr_eq(L, (lua_State *)0x1);
  ck_assert_ptr_nonnull(strstr(err, "luapool_notifier_open: NULL pool (refused)"));
  ck_assert_ptr_nonnull(strstr(err, "luapool_notifier_fd: NULL notifier (refused)"));
  ck_assert_ptr_nonnull(strstr(err, "luapool_acquire_async: NULL notifier (refused)"));
  ck_assert_ptr_nonnull(strstr(err, "luapool_notifier_cancel: NULL notifier (refused)"));
  ck_assert_int_eq(luapool_notifier_open(p, NULL), LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_notifier_open: NULL out (refused)"));
  n = open_notifier(p);
  ck_assert_int_eq(luapool_acquire_async(n, NULL), LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_acquire_async: NULL out (refused)"));
  ck_assert_uint_eq(util_waiters(p), 0);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

static luapool_notifier *in_callback_notifier;
static int in_callback_rc;
static unsigned in_callback_waiters;
static luapool *in_callback_pool;

static int acquire_async_on_create(lua_State *L, void *ud) {
  (void)L, (void)ud;
  lua_State *other = NULL;
  in_callback_rc = luapool_acquire_async(in_callback_notifier, &other);
  in_callback_waiters = util_waiters(in_callback_pool);
  return 0;
}

/* As luapool_acquire there: no state is created and nothing waits, so no notifier registers. */
START_TEST(inside_a_callback_with_no_idle_state_it_is_refused_and_does_not_register) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_create = acquire_async_on_create;
  in_callback_pool = util_pool(&cfg);
  in_callback_notifier = open_notifier(in_callback_pool);
  in_callback_rc = 1;
  lua_State *L = util_acquire(in_callback_pool); /* creates: on_create runs */
  ck_assert_int_eq(in_callback_rc, LUAPOOL_EINVAL);
  ck_assert_uint_eq(in_callback_waiters, 0);
  ck_assert(util_log_has("luapool_acquire_async: called from the on_create callback"));
  luapool_release(in_callback_pool, L);
  luapool_notifier_close(in_callback_notifier);
  luapool_destroy(in_callback_pool);
}
END_TEST

/* No descriptor left (RLIMIT_NOFILE): the eventfd fails, the pool is as it was. */
START_TEST(an_eventfd_failure_is_enomem_and_leaves_the_pool_healthy) {
  luapool *p = one_state_pool();
  struct rlimit was;
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
  struct rlimit none = {.rlim_cur = 3, .rlim_max = was.rlim_max}; /* 0, 1, 2 are open */
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &none), 0);
  luapool_notifier *n = NULL;
  int rc = luapool_notifier_open(p, &n);
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
  ck_assert_int_eq(rc, LUAPOOL_ENOMEM);
  ck_assert_ptr_null(n);
  ck_assert(util_log_has("luapool_notifier_open: Too many open files"));
  n = open_notifier(p);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

#ifdef LP_FAULTS
START_TEST(an_allocation_failure_is_enomem_and_leaves_the_pool_healthy) {
  luapool *p = one_state_pool();
  luapool_release(p, util_acquire(p)); /* the state and this thread's blocks exist from here */
  long before = lp_fault_balance();
  luapool_notifier *n = NULL;
  lp_fault_arm(LP_FAULT_MALLOC, 1);
  ck_assert_int_eq(luapool_notifier_open(p, &n), LUAPOOL_ENOMEM);
  lp_fault_disarm();
  ck_assert_ptr_null(n);
  ck_assert_int_eq(lp_fault_balance(), before);
  n = open_notifier(p);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_notifier_close(n);
  ck_assert_int_eq(lp_fault_balance(), before); /* nothing leaked */
  luapool_destroy(p);
}
END_TEST
#endif

START_TEST(the_new_error_and_counter_have_their_documented_place) {
  ck_assert_int_eq(LUAPOOL_EAGAIN, -6);
  ck_assert_str_eq(luapool_strerror(LUAPOOL_EAGAIN),
                   "no state now: the notifier's descriptor becomes readable when one may be");
  if (sizeof(void *) == 8) {
    ck_assert_uint_eq(sizeof(luapool_stats), 328);
    /* the last counter taken from reserved (after interrupted, and after whatever other
       counters later versions put between them) */
    ck_assert_uint_gt(offsetof(luapool_stats, async_notified),
                      offsetof(luapool_stats, interrupted));
    ck_assert_uint_eq(offsetof(luapool_stats, reserved),
                      offsetof(luapool_stats, async_notified) + 8);
  }
}
END_TEST

#define CHILD_CHECK(c)                                                                             \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      (void)fprintf(stderr, "child: %s failed (line %d)\n", #c, __LINE__);                         \
      _exit(1);                                                                                    \
    }                                                                                              \
  } while (0)

START_TEST(a_fork_child_forgets_the_parents_notifiers) {
  luapool *p = one_state_pool();
  lua_State *L = util_acquire(p);
  luapool_notifier *n = open_notifier(p);
  lua_State *none;
  ck_assert_int_eq(luapool_acquire_async(n, &none), LUAPOOL_EAGAIN);
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(60);
    CHILD_CHECK(util_waiters(p) == 0); /* the FIFO is empty in the child */
    util_stderr_begin();
    int rc = luapool_acquire_async(n, &none);
    const char *err = util_stderr_end();
    CHILD_CHECK(rc == LUAPOOL_EINVAL); /* its eventfd is the parent's */
    CHILD_CHECK(strstr(err, "was opened before a fork") != NULL);
    luapool_notifier_close(n);
    luapool_notifier *m = NULL;
    CHILD_CHECK(luapool_notifier_open(p, &m) == LUAPOOL_OK);
    CHILD_CHECK(luapool_acquire_async(m, &none) == LUAPOOL_EAGAIN);
    luapool_release(p, L); /* the forking thread held it: it gives it back */
    CHILD_CHECK(readable(m));
    lua_State *L2;
    CHILD_CHECK(luapool_acquire_async(m, &L2) == LUAPOOL_OK);
    luapool_release(p, L2);
    luapool_notifier_close(m);
    luapool_destroy(p);
    _exit(0);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
  ck_assert_uint_eq(util_waiters(p), 1); /* the parent's registration stands */
  ck_assert(!readable(n));
  luapool_release(p, L);
  ck_assert(readable(n));
  ck_assert_int_eq(luapool_acquire_async(n, &L), LUAPOOL_OK);
  luapool_release(p, L);
  luapool_notifier_close(n);
  luapool_destroy(p);
}
END_TEST

/* ---- the race hammer ------------------------------------------------------------------------- */

#define HAMMER_LOOPS 3
#define HAMMER_BLOCKERS 2
#define HAMMER_ROUNDS 400
#define HAMMER_POLL_MS 5000
#define HAMMER_GIVE_UP_MS 60000.0

typedef struct hammer {
  luapool *p;
  atomic_int failed;
  atomic_int eagains;
  pthread_mutex_t lock;
  char why[256];
} hammer;

static void hammer_fail(hammer *h, const char *why, int rc) {
  pthread_mutex_lock(&h->lock);
  if (!atomic_load(&h->failed))
    (void)snprintf(h->why, sizeof h->why, "%s (rc %d: %s)", why, rc, luapool_strerror(rc));
  atomic_store(&h->failed, 1);
  pthread_mutex_unlock(&h->lock);
}

/*
** A wait that ended with nothing while a state stayed free: idle states and not one acquire in
** the whole wait (every thread is trying to acquire all along), so the wake-up was lost.
*/
static bool lost_while_free(luapool *p, uint64_t acquires_before) {
  luapool_stats s = util_stats(p);
  return s.idle > 0 && s.acquires == acquires_before;
}

static void use_state(lua_State *L, int i) {
  lua_pushinteger(L, i);
  lua_setglobal(L, "request");
  lua_pushnil(L);
  lua_setglobal(L, "request");
}

/* An event loop's thread: its notifier, a bounded poll, a request per state. */
static void *hammer_loop(void *arg) {
  hammer *h = arg;
  luapool_notifier *n = NULL;
  int rc = luapool_notifier_open(h->p, &n);
  if (rc != LUAPOOL_OK) {
    hammer_fail(h, "luapool_notifier_open", rc);
    return NULL;
  }
  for (int i = 0; i < HAMMER_ROUNDS && !atomic_load(&h->failed); i++) {
    lua_State *L;
    double give_up = util_now_ms() + HAMMER_GIVE_UP_MS;
    while ((rc = luapool_acquire_async(n, &L)) == LUAPOOL_EAGAIN) {
      atomic_fetch_add(&h->eagains, 1);
      uint64_t before = util_stats(h->p).acquires;
      if (!readable_within(luapool_notifier_fd(n), HAMMER_POLL_MS)) {
        if (lost_while_free(h->p, before)) {
          hammer_fail(h, "a notifier's poll timed out while a state was free: lost wake-up", rc);
          break;
        }
        if (util_now_ms() > give_up) {
          hammer_fail(h, "a notifier was never served in 60 s", rc);
          break;
        }
      }
    }
    if (rc != LUAPOOL_OK) {
      if (rc != LUAPOOL_EAGAIN)
        hammer_fail(h, "luapool_acquire_async", rc);
      break;
    }
    use_state(L, i);
    sched_yield(); /* hold it across a yield, so that others find none */
    luapool_release(h->p, L);
    sched_yield(); /* and let another take it: a magazine would keep it for this thread */
  }
  luapool_notifier_close(n);
  return NULL;
}

/* A blocking acquirer beside the loops, with a bounded wait. */
static void *hammer_blocker(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < HAMMER_ROUNDS && !atomic_load(&h->failed); i++) {
    lua_State *L;
    uint64_t before = util_stats(h->p).acquires;
    int rc = luapool_acquire(h->p, 10000, &L);
    if (rc == LUAPOOL_ETIMEDOUT) {
      if (lost_while_free(h->p, before))
        hammer_fail(h, "a blocked acquire timed out while a state was free: lost wake-up", rc);
      i--; /* try again: another thread was served meanwhile */
      continue;
    }
    if (rc != LUAPOOL_OK) {
      hammer_fail(h, "luapool_acquire", rc);
      break;
    }
    use_state(L, i);
    if (i % 4 == 0)
      util_sleep_ms(1); /* hold it a while, so that loops find none */
    luapool_release(h->p, L);
    sched_yield();
  }
  return NULL;
}

START_TEST(no_wakeup_is_lost_between_loops_and_blocked_acquires) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1 + (unsigned)_i / 2; /* 1: a lost wake-up strands everyone, no other state
                                           circulates to heal it, so the poll times out */
  cfg.magazine_size = (unsigned)_i % 2;  /* 0: every release through the global list */
  hammer h = {.p = util_pool(&cfg)};
  atomic_init(&h.failed, 0);
  atomic_init(&h.eagains, 0);
  pthread_mutex_init(&h.lock, NULL);
  pthread_t t[HAMMER_LOOPS + HAMMER_BLOCKERS];
  for (int i = 0; i < HAMMER_LOOPS + HAMMER_BLOCKERS; i++)
    ck_assert_int_eq(
        pthread_create(&t[i], NULL, i < HAMMER_LOOPS ? hammer_loop : hammer_blocker, &h), 0);
  for (int i = 0; i < HAMMER_LOOPS + HAMMER_BLOCKERS; i++)
    pthread_join(t[i], NULL);
  ck_assert_msg(!atomic_load(&h.failed), "%s", h.why);
  luapool_stats s = util_stats(h.p);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_le(s.live, cfg.max_states);
  ck_assert_uint_eq(util_waiters(h.p), 0);
  ck_assert_msg(atomic_load(&h.eagains) > 0 && s.async_notified > 0,
                "no loop ever had to wait: the test tested nothing");
  luapool_destroy(h.p);
  pthread_mutex_destroy(&h.lock);
}
END_TEST

/*
** The race at its narrowest: two loops, one state, released the moment the other registers.
** Each phase both start at a barrier and each wants one state once; one takes it and gives it
** back at once while the other is between its first look and its registration.  Nothing runs
** after the release to heal a lost wake-up: the other's poll times out with the state idle.
*/
#define PHASES 10000

typedef struct duel {
  luapool *p;
  pthread_barrier_t go;
  atomic_int failed;
  char why[160];
} duel;

static void *duel_loop(void *arg) {
  duel *d = arg;
  luapool_notifier *n = NULL;
  if (luapool_notifier_open(d->p, &n) != LUAPOOL_OK) {
    atomic_store(&d->failed, 1);
    return NULL;
  }
  for (int phase = 0; phase < PHASES; phase++) {
    pthread_barrier_wait(&d->go);
    if (atomic_load(&d->failed))
      continue; /* keep the barrier's count */
    lua_State *L;
    int rc;
    while ((rc = luapool_acquire_async(n, &L)) == LUAPOOL_EAGAIN) {
      uint64_t before = util_stats(d->p).acquires;
      if (!readable_within(luapool_notifier_fd(n), HAMMER_POLL_MS) &&
          lost_while_free(d->p, before)) {
        (void)snprintf(d->why, sizeof d->why, "phase %d: the poll timed out, the state idle",
                       phase);
        atomic_store(&d->failed, 1);
        break;
      }
    }
    if (rc == LUAPOOL_OK)
      luapool_release(d->p, L);
  }
  luapool_notifier_close(n);
  return NULL;
}

START_TEST(no_wakeup_is_lost_when_the_release_races_the_registration) {
  duel d = {.p = one_state_pool()};
  atomic_init(&d.failed, 0);
  pthread_barrier_init(&d.go, NULL, 2);
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, duel_loop, &d), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  ck_assert_msg(!atomic_load(&d.failed), "lost wake-up: %s", d.why);
  ck_assert_uint_eq(util_stats(d.p).acquires, 2 * PHASES);
  pthread_barrier_destroy(&d.go);
  luapool_destroy(d.p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("async");
  TCase *tc = tcase_create("contract");
  tcase_add_test(tc, acquire_async_is_immediate_when_a_state_is_free);
  tcase_add_loop_test(tc, eagain_then_the_fd_becomes_readable_when_another_thread_releases, 0, 2);
  tcase_add_test(tc, registering_twice_is_one_entry);
  tcase_add_test(tc, a_woken_notifier_that_finds_the_state_taken_registers_again);
  tcase_add_test(tc, one_release_makes_exactly_one_fd_readable);
  tcase_add_test(tc, cancel_passes_an_unconsumed_wakeup_to_a_blocked_acquire);
  tcase_add_loop_test(tc, cancel_passes_an_unconsumed_wakeup_to_another_notifier, 0, 2);
  tcase_add_test(tc, wakes_alternate_between_notifiers_and_blocked_acquires);
  tcase_add_test(tc, a_signal_is_never_wasted_on_a_sleeper_already_signalled);
  tcase_add_test(tc, shutdown_makes_fds_readable_and_acquire_async_returns_eclosed);
  tcase_add_test(tc, destroy_with_an_open_notifier_logs_and_detaches_it);
  tcase_add_test(tc, misuse_is_refused_with_einval);
  tcase_add_test(tc, inside_a_callback_with_no_idle_state_it_is_refused_and_does_not_register);
  tcase_add_test(tc, an_eventfd_failure_is_enomem_and_leaves_the_pool_healthy);
#ifdef LP_FAULTS
  tcase_add_test(tc, an_allocation_failure_is_enomem_and_leaves_the_pool_healthy);
#endif
  tcase_add_test(tc, the_new_error_and_counter_have_their_documented_place);
  tcase_add_test(tc, a_fork_child_forgets_the_parents_notifiers);
  suite_add_tcase(s, tc);
  tc = tcase_create("hammer");
  tcase_set_timeout(tc, 240); /* every wait inside is bounded; this bounds the whole */
  tcase_add_loop_test(tc, no_wakeup_is_lost_between_loops_and_blocked_acquires, 0, 4);
  tcase_add_test(tc, no_wakeup_is_lost_when_the_release_races_the_registration);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
