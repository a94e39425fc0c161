/*
** fork: a prefork server creates and prewarms a pool, then forks workers.  Each child gets a
** working pool (its own watchdog thread, the parent's idle states, magazines of threads it does
** not have still reachable), the parent's pool goes on unaffected, and a fork while another
** thread hammers the pool is safe (the fork handlers take the pool's locks).  doc/design.md,
** "fork", has the argument.
**
** A child never calls Check (its failure would be reported through the test's own pipe): it
** checks with CHILD_CHECK and ends with _exit, 0 when every check held.  The parent waits for it
** with a deadline, so a child that hangs fails the test instead of hanging it.
*/
#include <errno.h>
#include <lauxlib.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define CHILD_CHECK(c)                                                                             \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "fork child %d: %s:%d: check failed: %s\n", (int)getpid(), __FILE__,         \
              __LINE__, #c);                                                                       \
      _exit(1);                                                                                    \
    }                                                                                              \
  } while (0)

/*
** The child's end: 0, or what the checks said; bounded by an alarm.  SIGALRM's default action
** kills it: the handler it inherits is Check's, which would kill the whole test's process group.
*/
static pid_t fork_child(void) {
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    signal(SIGALRM, SIG_DFL);
    alarm(60);
  }
  return pid;
}

/* Waits for the n children, at most `seconds` in all; each must exit 0. */
static void wait_children(const pid_t *pids, int n, double seconds) {
  double end = util_now_ms() + seconds * 1e3;
  int left = n, status[64];
  bool done[64] = {false};
  ck_assert_int_le(n, 64);
  while (left > 0) {
    for (int i = 0; i < n; i++) {
      if (done[i])
        continue;
      pid_t r = waitpid(pids[i], &status[i], WNOHANG);
      ck_assert_int_ne(r, -1);
      if (r == pids[i]) {
        done[i] = true;
        left--;
      }
    }
    if (left > 0 && util_now_ms() > end) {
      for (int i = 0; i < n; i++)
        if (!done[i])
          kill(pids[i], SIGKILL);
      ck_abort_msg("%d of %d children still running after %.0f s: a child hangs", left, n, seconds);
    }
    if (left > 0)
      util_sleep_ms(1);
  }
  for (int i = 0; i < n; i++) {
    ck_assert_msg(WIFEXITED(status[i]), "child %d ended by signal %d", i,
                  WIFSIGNALED(status[i]) ? WTERMSIG(status[i]) : 0);
    ck_assert_msg(WEXITSTATUS(status[i]) == 0, "child %d exited %d", i, WEXITSTATUS(status[i]));
  }
}

/*
** gcc 12's ThreadSanitizer keeps the parent's other threads in its registry after a fork; a
** thread the child creates on a dead thread's stack (glibc reuses it) has the same pthread_t,
** and TSan dies at its join.  The child detaches the dead handles first, which TSan takes as
** "forget this id" (glibc only marks the cached descriptor).  luapool does the same for its own
** watchdog thread (watchdog.c).  Plain builds need none of it.
*/
static void child_forget_thread(pthread_t t) {
#if defined(__SANITIZE_THREAD__)
  pthread_detach(t);
#else
  (void)t;
#endif
}

/* A request: a little Lua that must give the right answer. */
static bool request(luapool *p, long timeout_ms) {
  lua_State *L;
  if (luapool_acquire(p, timeout_ms, &L) != LUAPOOL_OK)
    return false;
  bool ok = luaL_dostring(L, "local t = {} for i = 1, 10 do t[i] = i * i end return #t + t[10]") ==
                LUA_OK &&
            lua_tointeger(L, -1) == 110;
  luapool_release(p, L);
  return ok;
}

typedef struct requests {
  luapool *p;
  int rounds;
  atomic_int failed;
} requests;

static void *run_requests(void *arg) {
  requests *r = arg;
  for (int i = 0; i < r->rounds; i++)
    if (!request(r->p, -1))
      atomic_fetch_add(&r->failed, 1);
  return NULL;
}

typedef struct passes_since {
  uint64_t base, more;
} passes_since;

static bool passes_grew(luapool *p, void *arg) {
  passes_since *ps = arg;
  return util_stats(p).passes >= ps->base + ps->more;
}

/*
** Waits until the pool's watchdog thread has run a pass.  Not for luapool: gcc 12's
** AddressSanitizer has no fork handler for its own allocator (see HAMMER_ASIDE below), and a
** thread just created is still inside it (its start reads its stack's attributes, which mallocs);
** a fork at that moment leaves the child an allocator lock nobody will release.  Once the thread
** runs, luapool's own fork handler keeps it out of malloc at a fork: it holds the pass mutex.
*/
static void watchdog_started(luapool *p) {
  passes_since ps = {0, 1};
  ck_assert(util_wait_until(passes_grew, p, &ps, 30.0));
}

/* ---- prefork: create and prewarm, fork workers ------------------------------------------------
 */

/* A child: two threads of requests, maintain, its own watchdog, a clean shutdown. */
static void prefork_child(luapool *p) {
  passes_since ps = {util_stats(p).passes, 3};
  CHILD_CHECK(util_stats(p).idle == 4); /* the parent's prewarmed states */
  requests r = {.p = p, .rounds = 200};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    CHILD_CHECK(pthread_create(&t[i], NULL, run_requests, &r) == 0);
  for (int i = 0; i < 2; i++)
    CHILD_CHECK(pthread_join(t[i], NULL) == 0);
  CHILD_CHECK(atomic_load(&r.failed) == 0);
  CHILD_CHECK(request(p, 0)); /* and from the forking thread */
  CHILD_CHECK(luapool_maintain(p) == LUAPOOL_OK);
  /* The parent's watchdog thread is not in this process; the child runs one of its own. */
  CHILD_CHECK(util_wait_until(passes_grew, p, &ps, 30.0));
  luapool_stats s = util_stats(p);
  CHILD_CHECK(s.in_use == 0);
  CHILD_CHECK(s.acquires >= 401);
  CHILD_CHECK(luapool_shutdown(p, 10000) == LUAPOOL_OK);
  CHILD_CHECK(util_stats(p).live == 0);
  luapool_destroy(p);
  _exit(0);
}

START_TEST(children_of_a_prewarmed_pool_work_and_the_parent_is_unaffected) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 5;
  cfg.min_idle = 4;
  cfg.max_idle = 8;
  luapool *p = util_pool(&cfg);
  ck_assert_uint_eq(util_stats(p).idle, 4);
  watchdog_started(p);
  enum { N = 4 };
  pid_t pids[N];
  for (int i = 0; i < N; i++) {
    pids[i] = fork_child();
    if (pids[i] == 0)
      prefork_child(p);
  }
  wait_children(pids, N, 90.0);
  /* The parent: its watchdog still runs, its states still serve. */
  passes_since ps = {util_stats(p).passes, 2};
  ck_assert(util_wait_until(passes_grew, p, &ps, 30.0));
  requests r = {.p = p, .rounds = 100};
  run_requests(&r);
  ck_assert_int_eq(atomic_load(&r.failed), 0);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_eq(s.acquires, 100);
  ck_assert_int_eq(luapool_shutdown(p, 10000), LUAPOOL_OK);
  luapool_destroy(p);
}
END_TEST

/* A child forks again: the child's own watchdog thread is forgotten and replaced in turn. */
START_TEST(a_child_of_a_child_works_too) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 5;
  cfg.min_idle = 2;
  luapool *p = util_pool(&cfg);
  watchdog_started(p);
  pid_t child = fork_child();
  if (child == 0) {
    CHILD_CHECK(request(p, -1)); /* starts the child's watchdog */
    passes_since ps = {util_stats(p).passes, 2};
    CHILD_CHECK(util_wait_until(passes_grew, p, &ps, 30.0));
    fflush(NULL);
    pid_t grandchild = fork();
    CHILD_CHECK(grandchild >= 0);
    if (grandchild == 0) {
      alarm(60);
      CHILD_CHECK(request(p, -1));
      passes_since gps = {util_stats(p).passes, 2};
      CHILD_CHECK(util_wait_until(passes_grew, p, &gps, 30.0));
      CHILD_CHECK(luapool_shutdown(p, 10000) == LUAPOOL_OK);
      luapool_destroy(p);
      _exit(0);
    }
    int status;
    CHILD_CHECK(waitpid(grandchild, &status, 0) == grandchild);
    CHILD_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHILD_CHECK(request(p, -1));
    CHILD_CHECK(luapool_shutdown(p, 10000) == LUAPOOL_OK);
    luapool_destroy(p);
    _exit(0);
  }
  wait_children(&child, 1, 90.0);
  ck_assert(request(p, -1));
  luapool_destroy(p);
}
END_TEST

/* ---- sleepers in the parent -------------------------------------------------------------------
 */

static void *acquire_and_release(void *arg) {
  luapool *p = arg;
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, -1, &L), LUAPOOL_OK);
  luapool_release(p, L);
  return NULL;
}

static bool one_waiter(luapool *p, void *arg) {
  (void)arg;
  return util_waiters(p) == 1;
}

/*
** At the fork the parent's watchdog thread sleeps on its condition variable and an acquire
** sleeps on the wait's: threads the child does not have.  Destroying the pool in the child used
** to hang for good (a condition variable that counts them, a join of a thread not there).
*/
START_TEST(a_child_destroys_the_pool_at_once_while_the_parent_has_sleepers) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 10000; /* asleep, between passes */
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  luapool_discard(p, util_acquire(p)); /* the watchdog closes it: one pass, then asleep */
  watchdog_started(p);
  lua_State *L = util_acquire(p);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, acquire_and_release, p), 0);
  ck_assert(util_wait_until(one_waiter, p, NULL, 30.0));
  pid_t child = fork_child();
  if (child == 0) {
    child_forget_thread(t);
    CHILD_CHECK(util_waiters(p) == 0); /* the sleeper is not here */
    luapool_release(p, L);             /* wakes nobody, and nothing hangs */
    luapool_destroy(p);
    _exit(0);
  }
  wait_children(&child, 1, 60.0);
  luapool_release(p, L); /* the parent's sleeper gets it */
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(util_stats(p).acquires, 3);
  luapool_destroy(p);
}
END_TEST

/* ---- a fork while another thread works --------------------------------------------------------
 */

typedef struct hammer {
  luapool *p;
  atomic_bool stop;
  atomic_int failed, rounds;
  int target;            /* the rounds to wait for before the next fork */
  pthread_mutex_t aside; /* AddressSanitizer builds only: see fork_beside */
} hammer;

/*
** gcc 12's AddressSanitizer and ThreadSanitizer replace malloc with allocators of their own that
** have no fork handler (glibc's malloc has one; later LLVM runtimes gained theirs): a fork while
** another thread is inside malloc leaves the child an allocator lock that nobody releases, and
** the child hangs in its first malloc (seen: a child stuck in SizeClassAllocator64's region
** mutex).  No fork handler of luapool's can help with that, so in those builds the hammer steps
** aside for each fork (it works under `aside`, and the fork is made holding it): there this test
** checks the child's pool, not a fork in the middle of a call.  Plain, debug and UBSan builds
** fork in the middle of the hammer's calls.
*/
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HAMMER_ASIDE 1
#else
#define HAMMER_ASIDE 0
#endif

static pid_t fork_beside(hammer *h) {
  if (HAMMER_ASIDE)
    pthread_mutex_lock(&h->aside);
  pid_t pid = fork_child();
  if (HAMMER_ASIDE && pid != 0)
    pthread_mutex_unlock(&h->aside);
  return pid; /* the child's copy of aside stays locked: nobody else there takes it */
}

/* Requests without pause; one in eight discards (the close list), all in the pool's calls. */
static void *hammer_main(void *arg) {
  hammer *h = arg;
  for (unsigned i = 0; !atomic_load(&h->stop); i++) {
    if (HAMMER_ASIDE)
      pthread_mutex_lock(&h->aside);
    lua_State *L;
    if (luapool_acquire(h->p, -1, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&h->failed, 1);
      if (HAMMER_ASIDE)
        pthread_mutex_unlock(&h->aside);
      continue;
    }
    if (luaL_dostring(L, "x = (x or 0) + 1 return x") != LUA_OK)
      atomic_fetch_add(&h->failed, 1);
    lua_settop(L, 0);
    if (i % 8 == 7)
      luapool_discard(h->p, L);
    else
      luapool_release(h->p, L);
    atomic_fetch_add(&h->rounds, 1);
    if (HAMMER_ASIDE)
      pthread_mutex_unlock(&h->aside);
  }
  return NULL;
}

static bool hammered(luapool *p, void *arg) {
  (void)p;
  hammer *h = arg;
  return atomic_load(&h->rounds) >= h->target;
}

/*
** A child forked in the middle of the hammer's work.  The state the hammer held, if it held one
** (or was taking or giving back one), stays out: in_use counts it, shutdown times out on it, and
** destroy leaves it unclosed.  Everything else works.
*/
static void hammered_child(luapool *p, pthread_t hammer_thread) {
  child_forget_thread(hammer_thread);
  unsigned out_at_fork = util_stats(p).in_use;
  CHILD_CHECK(out_at_fork <= 1);
  for (int i = 0; i < 50; i++)
    CHILD_CHECK(request(p, -1));
  requests r = {.p = p, .rounds = 50};
  pthread_t t;
  CHILD_CHECK(pthread_create(&t, NULL, run_requests, &r) == 0);
  CHILD_CHECK(pthread_join(t, NULL) == 0);
  CHILD_CHECK(atomic_load(&r.failed) == 0);
  CHILD_CHECK(luapool_maintain(p) == LUAPOOL_OK);
  passes_since ps = {util_stats(p).passes, 2};
  CHILD_CHECK(util_wait_until(passes_grew, p, &ps, 30.0));
  CHILD_CHECK(util_stats(p).in_use == out_at_fork);
  int rc = luapool_shutdown(p, 0);
  CHILD_CHECK(rc == (out_at_fork != 0 ? LUAPOOL_ETIMEDOUT : LUAPOOL_OK));
  luapool_destroy(p);
  _exit(0);
}

START_TEST(a_fork_while_another_thread_hammers_the_pool_leaves_a_working_child) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 1;
  cfg.min_idle = 2;
  cfg.max_idle = 4;
  cfg.magazine_size = 2;
  luapool *p = util_pool(&cfg);
  watchdog_started(p);
  hammer h = {.p = p};
  pthread_mutex_init(&h.aside, NULL);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hammer_main, &h), 0);
  enum { N = 12 };
  for (int i = 0; i < N; i++) {
    h.target = atomic_load(&h.rounds) + 20; /* fork at a different point each time */
    ck_assert(util_wait_until(hammered, p, &h, 30.0));
    pid_t child = fork_beside(&h);
    if (child == 0)
      hammered_child(p, t);
    wait_children(&child, 1, 90.0);
  }
  atomic_store(&h.stop, true);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_int_eq(atomic_load(&h.failed), 0);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_eq(s.acquires, s.releases + s.discarded);
  ck_assert_int_eq(luapool_shutdown(p, 10000), LUAPOOL_OK);
  luapool_destroy(p);
  pthread_mutex_destroy(&h.aside);
}
END_TEST

/* ---- what the child finds ---------------------------------------------------------------------
 */

typedef struct owner {
  luapool *p;
  int n;
  lua_State *held; /* hold_one: the state it keeps out */
  sem_t ready, done;
} owner;

/* Caches n states in its magazine, then stays alive without touching the pool. */
static void *cache_then_wait(void *arg) {
  owner *o = arg;
  lua_State *L[8];
  for (int i = 0; i < o->n; i++)
    ck_assert_int_eq(luapool_acquire(o->p, 0, &L[i]), LUAPOOL_OK);
  for (int i = 0; i < o->n; i++)
    luapool_release(o->p, L[i]);
  sem_post(&o->ready);
  sem_wait(&o->done);
  return NULL;
}

/*
** The states in the magazine of a thread that the child does not have: a waiting acquire steals
** them (_i 0), and two passes move them to the global list (_i 1: the thread is quiet).
*/
START_TEST(a_child_reaches_states_cached_by_threads_it_does_not_have) {
  luapool_config cfg;
  util_config(&cfg); /* no watchdog: luapool_maintain decides when a pass runs */
  cfg.max_states = 4;
  cfg.magazine_size = 4;
  owner o = {.p = util_pool(&cfg), .n = 4};
  sem_init(&o.ready, 0, 0);
  sem_init(&o.done, 0, 0);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, cache_then_wait, &o), 0);
  sem_wait(&o.ready);
  pid_t child = fork_child();
  if (child == 0) {
    child_forget_thread(t);
    luapool *p = o.p;
    if (_i == 1) {
      CHILD_CHECK(luapool_maintain(p) == LUAPOOL_OK);
      CHILD_CHECK(luapool_maintain(p) == LUAPOOL_OK);
      CHILD_CHECK(util_stats(p).reclaimed == 4);
    }
    luapool_stats before = util_stats(p);
    lua_State *L[4];
    for (int i = 0; i < 4; i++) /* the cap is reached: only those four can serve */
      CHILD_CHECK(luapool_acquire(p, 0, &L[i]) == LUAPOOL_OK);
    luapool_stats s = util_stats(p);
    CHILD_CHECK(s.created == 4);
    if (_i == 0) /* stolen, or moved into this thread's magazine along with one stolen */
      CHILD_CHECK(s.misses > before.misses &&
                  s.misses + s.magazine_hits == before.misses + before.magazine_hits + 4);
    else
      CHILD_CHECK(s.global_hits == before.global_hits + 4);
    for (int i = 0; i < 4; i++)
      luapool_release(p, L[i]);
    CHILD_CHECK(luapool_shutdown(p, 0) == LUAPOOL_OK);
    CHILD_CHECK(util_stats(p).live == 0);
    luapool_destroy(p);
    _exit(0);
  }
  wait_children(&child, 1, 60.0);
  sem_post(&o.done);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(util_stats(o.p).idle, 4);
  luapool_destroy(o.p);
}
END_TEST

static void *hold_one(void *arg) {
  owner *o = arg;
  ck_assert_int_eq(luapool_acquire(o->p, 0, &o->held), LUAPOOL_OK);
  sem_post(&o->ready);
  sem_wait(&o->done);
  luapool_release(o->p, o->held);
  return NULL;
}

static atomic_int closes;

static void count_closes(void *ud, int event, int reason, lua_State *L) {
  (void)ud, (void)reason, (void)L;
  if (event == LUAPOOL_STATE_CLOSED)
    atomic_fetch_add(&closes, 1);
}

/*
** At the fork another thread holds a state and the forking thread holds one.  In the child the
** first stays out for good (shutdown times out on it, destroy leaves it unclosed: that thread
** may have been changing it); the second is the forking thread's, which releases it as usual.
*/
START_TEST(a_state_another_thread_held_at_the_fork_stays_out_in_the_child) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.on_state = count_closes;
  owner o = {.p = util_pool(&cfg)};
  sem_init(&o.ready, 0, 0);
  sem_init(&o.done, 0, 0);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_one, &o), 0);
  sem_wait(&o.ready);
  lua_State *mine = util_acquire(o.p);
  pid_t child = fork_child();
  if (child == 0) {
    child_forget_thread(t);
    luapool *p = o.p;
    CHILD_CHECK(util_stats(p).in_use == 2);
    luapool_release(p, mine);
    CHILD_CHECK(util_stats(p).in_use == 1);
    CHILD_CHECK(request(p, 0)); /* mine again, reset */
    CHILD_CHECK(luapool_shutdown(p, 0) == LUAPOOL_ETIMEDOUT);
    CHILD_CHECK(atomic_load(&closes) == 1); /* mine */
    luapool_destroy(p);
    CHILD_CHECK(atomic_load(&closes) == 1); /* the other thread's: left alone */
    CHILD_CHECK(util_log_has("left 1 state(s) unclosed"));
    _exit(0);
  }
  wait_children(&child, 1, 60.0);
  luapool_release(o.p, mine);
  sem_post(&o.done);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  luapool_stats s = util_stats(o.p);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_eq(s.releases, 2);
  luapool_destroy(o.p);
  ck_assert_int_eq(atomic_load(&closes), 2);
}
END_TEST

/* math.random's draws of the one state, in whichever process runs this, as text. */
static void draws(luapool *p, char *out, size_t size) {
  lua_State *L;
  out[0] = '\0';
  if (luapool_acquire(p, -1, &L) != LUAPOOL_OK)
    return;
  if (luaL_dostring(L, "return string.format('%d %d %d', math.random(0, 1 << 52), "
                       "math.random(0, 1 << 52), math.random(0, 1 << 52))") == LUA_OK)
    snprintf(out, size, "%s", lua_tostring(L, -1));
  luapool_release(p, L);
}

/* The parent and its children hold copies of one prewarmed state: each draws its own numbers. */
START_TEST(children_draw_their_own_random_numbers_from_a_prewarmed_state) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.min_idle = 1;
  luapool *p = util_pool(&cfg);
  enum { N = 2 };
  int fds[N][2];
  pid_t pids[N];
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(pipe(fds[i]), 0);
    pids[i] = fork_child();
    if (pids[i] == 0) {
      char got[128];
      draws(p, got, sizeof got);
      CHILD_CHECK(got[0] != '\0');
      CHILD_CHECK(write(fds[i][1], got, strlen(got) + 1) == (ssize_t)(strlen(got) + 1));
      _exit(0);
    }
    close(fds[i][1]);
  }
  wait_children(pids, N, 60.0);
  char seen[N + 1][128];
  for (int i = 0; i < N; i++) {
    ssize_t n = read(fds[i][0], seen[i], sizeof seen[i] - 1);
    ck_assert_int_gt(n, 0);
    seen[i][n] = '\0';
    close(fds[i][0]);
  }
  draws(p, seen[N], sizeof seen[N]);
  for (int i = 0; i <= N; i++)
    for (int j = i + 1; j <= N; j++)
      ck_assert_msg(strcmp(seen[i], seen[j]) != 0, "%s and %s drew the same: %s",
                    i == N ? "the parent" : "a child", j == N ? "the parent" : "a child", seen[i]);
  luapool_destroy(p);
}
END_TEST

static void bound(void) {
  signal(SIGALRM, SIG_DFL); /* not Check's handler, which kills the process group */
  alarm(240);
}

static void unbound(void) {
  alarm(0);
}

int main(void) {
  Suite *s = suite_create("fork");
  TCase *tc = tcase_create("fork");
  tcase_set_timeout(tc, 240);
  tcase_add_checked_fixture(tc, bound, unbound);
  tcase_add_test(tc, children_of_a_prewarmed_pool_work_and_the_parent_is_unaffected);
  tcase_add_test(tc, a_child_of_a_child_works_too);
  tcase_add_test(tc, a_child_destroys_the_pool_at_once_while_the_parent_has_sleepers);
  tcase_add_test(tc, a_fork_while_another_thread_hammers_the_pool_leaves_a_working_child);
  tcase_add_loop_test(tc, a_child_reaches_states_cached_by_threads_it_does_not_have, 0, 2);
  tcase_add_test(tc, a_state_another_thread_held_at_the_fork_stays_out_in_the_child);
  tcase_add_test(tc, children_draw_their_own_random_numbers_from_a_prewarmed_state);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
