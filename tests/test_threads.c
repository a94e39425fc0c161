/* Concurrency: the cap, cross-thread release, thread exit, stealing, waking, and a stress run. */
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "magazine_inline.h"
#include "util.h"

static void start(pthread_t *t, void *(*fn)(void *), void *arg) {
  ck_assert_int_eq(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t) {
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

/* ---- the cap holds with many threads ------------------------------------------------------ */

typedef struct cap_run {
  luapool *p;
  atomic_int holders, max_holders;
  atomic_int errors;
} cap_run;

static void *cap_worker(void *arg) {
  cap_run *r = arg;
  for (int i = 0; i < 300; i++) {
    lua_State *L;
    if (luapool_acquire(r->p, -1, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&r->errors, 1);
      continue;
    }
    int now = atomic_fetch_add(&r->holders, 1) + 1;
    int max = atomic_load(&r->max_holders);
    while (now > max && !atomic_compare_exchange_weak(&r->max_holders, &max, now)) {
    }
    if (i % 7 == 0)
      sched_yield(); /* hold it a little, so that others must wait */
    atomic_fetch_sub(&r->holders, 1);
    luapool_release(r->p, L);
  }
  return NULL;
}

START_TEST(the_cap_holds_with_many_threads) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 3;
  cap_run r = {.p = util_pool(&cfg)};
  pthread_t t[8];
  for (int i = 0; i < 8; i++)
    start(&t[i], cap_worker, &r);
  for (int i = 0; i < 8; i++)
    join(t[i]);
  ck_assert_int_eq(atomic_load(&r.errors), 0);
  ck_assert_int_le(atomic_load(&r.max_holders), 3);
  luapool_stats s = util_stats(r.p);
  ck_assert_uint_le(s.created, 3);
  ck_assert_uint_eq(s.acquires, 8 * 300);
  ck_assert_uint_eq(s.releases, 8 * 300);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(r.p);
}
END_TEST

/* ---- cross-thread release ----------------------------------------------------------------- */

typedef struct handoff {
  luapool *p;
  lua_State *L;
  lua_State *again;
} handoff;

static void *release_elsewhere(void *arg) {
  handoff *h = arg;
  util_run(h->L, "assert(shared == 'from the acquirer')"); /* sees the acquirer's writes */
  luapool_release(h->p, h->L);
  /* The state went to this thread's magazine: this thread gets it back without a miss. */
  ck_assert_int_eq(luapool_acquire(h->p, 0, &h->again), LUAPOOL_OK);
  luapool_release(h->p, h->again);
  return NULL;
}

START_TEST(a_state_may_be_released_on_another_thread) {
  luapool_config cfg;
  util_config(&cfg);
  handoff h = {.p = util_pool(&cfg)};
  ck_assert_int_eq(luapool_acquire(h.p, 0, &h.L), LUAPOOL_OK);
  util_run(h.L, "shared = 'from the acquirer'");
  pthread_t t;
  start(&t, release_elsewhere, &h);
  join(t);
  ck_assert_ptr_eq(h.again, h.L);
  luapool_stats s = util_stats(h.p);
  ck_assert_uint_eq(s.created, 1);
  ck_assert_uint_eq(s.releases, 2);
  ck_assert_uint_eq(s.magazine_hits, 1);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(h.p);
}
END_TEST

/* ---- creations on many threads share the walk's blocks ------------------------------------- */

/*
** Every acquire makes a state (each is discarded after its check), on four threads at once, so
** the creations' walks take and give back the pool's two map blocks (lib/snapshot.c, pmap) as
** they race.  Under LIBS_ALL the map of seen objects outgrows the block and is replaced.  A walk
** that wrote a block another walk still used would record wrong: the check is that each state's
** reset still puts back what a request wrote.  Under TSan, a give-back that did not order its
** writes before the next taker's would be a reported race.
*/
typedef struct creators {
  luapool *p;
  atomic_int errors;
} creators;

static void *create_and_check(void *arg) {
  creators *c = arg;
  for (int i = 0; i < 40; i++) {
    lua_State *L;
    if (luapool_acquire(c->p, 1000, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&c->errors, 1);
      continue;
    }
    util_run(L, "x = 1 rawset(_G, 'y', {})");
    luapool_release(c->p, L);
    lua_State *again;
    ck_assert_int_eq(luapool_acquire(c->p, 0, &again), LUAPOOL_OK);
    ck_assert_ptr_eq(again, L); /* from this thread's magazine */
    if (util_eval_int(again, "return x == nil and rawget(_G, 'y') == nil") != 1)
      atomic_fetch_add(&c->errors, 1);
    luapool_discard(c->p, again);
  }
  return NULL;
}

START_TEST(creations_on_many_threads_share_the_walk_blocks) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.min_idle = 0;
  creators c = {.p = util_pool(&cfg)};
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    start(&t[i], create_and_check, &c);
  for (int i = 0; i < 4; i++)
    join(t[i]);
  ck_assert_int_eq(atomic_load(&c.errors), 0);
  luapool_stats s = util_stats(c.p);
  ck_assert_uint_eq(s.created, 4 * 40);
  ck_assert_uint_eq(s.in_use, 0);
  luapool_destroy(c.p);
}
END_TEST

/* ---- an exiting thread's states come back -------------------------------------------------- */

static void *cache_three_and_exit(void *arg) {
  luapool *p = arg;
  lua_State *L[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
  for (int i = 0; i < 3; i++)
    luapool_release(p, L[i]); /* into this thread's magazine (size 4) */
  return NULL;
}

START_TEST(an_exiting_thread_gives_its_magazine_back) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 3;
  luapool *p = util_pool(&cfg);
  pthread_t t;
  start(&t, cache_three_and_exit, p);
  join(t);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.idle, 3);
  ck_assert_uint_eq(s.acquires, 3); /* the exited thread's counts are kept */
  lua_State *L[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
  s = util_stats(p);
  ck_assert_uint_eq(s.global_hits, 3); /* from the global list, where the exit put them */
  ck_assert_uint_eq(s.created, 3);
  for (int i = 0; i < 3; i++)
    luapool_release(p, L[i]);
  luapool_destroy(p);
}
END_TEST

/* ---- states in an idle thread's magazine reach a waiter ------------------------------------ */

typedef struct idle_owner {
  luapool *p;
  sem_t cached, done;
  lua_State *L[2];
} idle_owner;

/* Caches two states, then sleeps without touching the pool until told to go on. */
static void *cache_two_then_idle(void *arg) {
  idle_owner *o = arg;
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(luapool_acquire(o->p, 0, &o->L[i]), LUAPOOL_OK);
  for (int i = 0; i < 2; i++)
    luapool_release(o->p, o->L[i]);
  sem_post(&o->cached);
  sem_wait(&o->done);
  return NULL;
}

START_TEST(states_in_an_idle_threads_magazine_reach_a_waiter) {
  luapool_config cfg;
  util_config(&cfg); /* no watchdog: the acquire itself must find them */
  cfg.max_states = 2;
  idle_owner o = {.p = util_pool(&cfg)};
  sem_init(&o.cached, 0, 0);
  sem_init(&o.done, 0, 0);
  pthread_t t;
  start(&t, cache_two_then_idle, &o);
  sem_wait(&o.cached);
  /* Both states sit in the other thread's magazine and the cap is reached. */
  lua_State *a, *b, *c;
  ck_assert_int_eq(luapool_acquire(o.p, 0, &a), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(o.p, -1, &b), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(o.p, 0, &c), LUAPOOL_ETIMEDOUT);
  ck_assert(a != b && (a == o.L[0] || a == o.L[1]) && (b == o.L[0] || b == o.L[1]));
  ck_assert_uint_eq(util_stats(o.p).created, 2);
  luapool_release(o.p, a);
  luapool_release(o.p, b);
  sem_post(&o.done);
  join(t);
  luapool_destroy(o.p);
}
END_TEST

/* ---- a release wakes a waiter; shutdown wakes waiters with ECLOSED ------------------------ */

static bool waiters_are(luapool *p, void *arg) {
  return util_waiters(p) == *(unsigned *)arg;
}

START_TEST(a_release_wakes_a_waiter) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  util_waiter w = {.p = p, .timeout_ms = -1};
  pthread_t t;
  start(&t, util_wait_for_state, &w);
  unsigned one = 1;
  /* Counted under wait_mutex, held until it sleeps, and the release takes it: none is lost. */
  ck_assert_msg(util_wait_until(waiters_are, p, &one, 30.0), "the acquire never waited");
  luapool_release(p, L);
  join(t); /* a lost wakeup hangs here, and the test times out */
  ck_assert_int_eq(w.rc, LUAPOOL_OK);
  ck_assert_ptr_eq(w.L, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(shutdown_wakes_waiters_with_eclosed) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  util_waiter w[3];
  pthread_t t[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (util_waiter){.p = p, .timeout_ms = -1};
    start(&t[i], util_wait_for_state, &w[i]);
  }
  unsigned three = 3;
  /* Counted under wait_mutex, held until they sleep, and shutdown takes it: none is missed. */
  ck_assert_msg(util_wait_until(waiters_are, p, &three, 30.0), "not all three acquires waited");
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_ETIMEDOUT); /* L is still out */
  for (int i = 0; i < 3; i++) {
    join(t[i]);
    ck_assert_int_eq(w[i].rc, LUAPOOL_ECLOSED);
  }
  luapool_release(p, L);
  ck_assert_uint_eq(util_stats(p).live, 0);
  luapool_destroy(p);
}
END_TEST

/* ---- shutdown drains states released by other threads ------------------------------------- */

typedef struct late {
  luapool *p;
  lua_State *L;
} late;

static bool closed(luapool *p, void *arg) {
  (void)arg;
  return util_pool_closed(p);
}

/* Releases once luapool_shutdown has begun, so that its drain must see the release. */
static void *release_later(void *arg) {
  late *l = arg;
  ck_assert_msg(util_wait_until(closed, l->p, NULL, 30.0), "the shutdown never began");
  luapool_release(l->p, l->L);
  return NULL;
}

START_TEST(shutdown_drains_states_released_meanwhile) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 10;
  luapool *p = util_pool(&cfg);
  late l[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    l[i].p = p;
    ck_assert_int_eq(luapool_acquire(p, 0, &l[i].L), LUAPOOL_OK);
    start(&t[i], release_later, &l[i]);
  }
  ck_assert_int_eq(luapool_shutdown(p, -1), LUAPOOL_OK);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.closed, 4);
  for (int i = 0; i < 4; i++)
    join(t[i]);
  luapool_destroy(p);
}
END_TEST

/* ---- stress: no state is ever held by two callers ------------------------------------------ */

#define TAGS 4096
#define HANDOFF_MAX 3 /* below max_states, so that acquirers keep going */

/* An open-addressing table from lua_State* to "held by someone", outside the pool. */
typedef struct tag {
  _Atomic(uintptr_t) key;
  atomic_int held;
} tag;

typedef struct stress {
  luapool *p;
  tag tags[TAGS];
  atomic_int double_holds, errors;
  pthread_mutex_t handoff_mutex;
  lua_State *handoff[HANDOFF_MAX]; /* states passed to another thread to release */
  int nhandoff;
} stress;

static tag *tag_of(stress *st, lua_State *L) {
  uintptr_t k = (uintptr_t)L;
  for (size_t i = (k >> 4) % TAGS;; i = (i + 1) % TAGS) {
    uintptr_t cur = atomic_load(&st->tags[i].key);
    if (cur == k)
      return &st->tags[i];
    if (cur == 0 && atomic_compare_exchange_strong(&st->tags[i].key, &cur, k))
      return &st->tags[i];
    if (cur == k)
      return &st->tags[i];
  }
}

static void put_back(stress *st, lua_State *L, unsigned *seed) {
  atomic_store(&tag_of(st, L)->held, 0);
  if (rand_r(seed) % 20 == 0)
    luapool_discard(st->p, L);
  else
    luapool_release(st->p, L);
}

/* Releases one state another thread handed over, if any. */
static void release_handed_over(stress *st, unsigned *seed) {
  lua_State *other = NULL;
  pthread_mutex_lock(&st->handoff_mutex);
  if (st->nhandoff > 0 && rand_r(seed) % 2 == 0)
    other = st->handoff[--st->nhandoff];
  pthread_mutex_unlock(&st->handoff_mutex);
  if (other != NULL)
    put_back(st, other, seed);
}

/* Keeps L for another thread to release; false when the queue is full. */
static bool hand_over(stress *st, lua_State *L) {
  bool queued = false;
  pthread_mutex_lock(&st->handoff_mutex);
  if (st->nhandoff < HANDOFF_MAX) {
    atomic_store(&tag_of(st, L)->held, 2); /* held by the queue */
    st->handoff[st->nhandoff++] = L;
    queued = true;
  }
  pthread_mutex_unlock(&st->handoff_mutex);
  return queued;
}

static void *stress_worker(void *arg) {
  stress *st = arg;
  unsigned seed = (unsigned)(uintptr_t)pthread_self();
  for (int i = 0; i < 3000; i++) {
    release_handed_over(st, &seed);
    lua_State *L;
    int rc = luapool_acquire(st->p, (rand_r(&seed) % 4 == 0) ? 0 : 1000, &L);
    if (rc == LUAPOOL_ETIMEDOUT)
      continue;
    if (rc != LUAPOOL_OK) {
      atomic_fetch_add(&st->errors, 1);
      continue;
    }
    int was = 0;
    if (!atomic_compare_exchange_strong(&tag_of(st, L)->held, &was, 1))
      atomic_fetch_add(&st->double_holds, 1);
    /* Use the state: a second holder would corrupt it and fail here too (and under TSan). */
    lua_pushinteger(L, i);
    lua_setglobal(L, "i");
    for (unsigned spin = rand_r(&seed) % 2000; spin > 0; spin--)
      __asm__ volatile("" ::: "memory");
    lua_getglobal(L, "i");
    if (lua_tointeger(L, -1) != i)
      atomic_fetch_add(&st->double_holds, 1);
    lua_pop(L, 1);
    /* A third of the states go to another thread to be released there. */
    if (rand_r(&seed) % 3 != 0 || !hand_over(st, L))
      put_back(st, L, &seed);
  }
  return NULL;
}

START_TEST(stress_no_state_is_ever_held_twice) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 6; /* below the thread count: callers wait */
  cfg.max_idle = 3;
  cfg.magazine_size = 2;
  cfg.watchdog_interval_ms = 1; /* trims and closes concurrently with the workers */
  cfg.reset = LUAPOOL_RESET_STACK;
  stress *st = calloc(1, sizeof *st);
  st->p = util_pool(&cfg);
  pthread_mutex_init(&st->handoff_mutex, NULL);
  enum { N = 8 };
  pthread_t t[N];
  for (int i = 0; i < N; i++)
    start(&t[i], stress_worker, st);
  for (int i = 0; i < N; i++)
    join(t[i]);
  for (int i = 0; i < st->nhandoff; i++) {
    atomic_store(&tag_of(st, st->handoff[i])->held, 0);
    luapool_release(st->p, st->handoff[i]);
  }
  ck_assert_int_eq(atomic_load(&st->double_holds), 0);
  ck_assert_int_eq(atomic_load(&st->errors), 0);
  luapool_stats s = util_stats(st->p);
  ck_assert_uint_eq(s.live, s.created - s.closed);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_eq(s.acquires, s.releases + s.discarded);
  ck_assert_uint_gt(s.discarded, 0);
  ck_assert_int_eq(luapool_shutdown(st->p, 1000), LUAPOOL_OK);
  s = util_stats(st->p);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.created, s.closed);
  luapool_destroy(st->p);
  pthread_mutex_destroy(&st->handoff_mutex);
  free(st);
}
END_TEST

/* ---- no wake-up is lost ---------------------------------------------------------------- */

/*
** One state and eight threads that acquire it with no time limit: all but one are asleep or
** about to sleep nearly all the time, so every hand-off goes through a wake-up, by one of the
** three ways a state becomes available (_i): into the releaser's magazine, onto the global list,
** or as room under max_states when a discard closes it.  A lost wake-up leaves every thread
** asleep for good: the main thread sees no hand-off for WAKE_STALL_MS, fails the test, and shuts
** the pool down so that the sleepers wake and can be joined.  The bound is on progress, not on
** the whole run: each hand-off is a wake-up and a context switch, and on a loaded machine (a
** parallel make check beside other jobs) each may wait a scheduler period for a core, so the
** run's length varies a hundredfold while a hand-off never takes more than a fraction of a
** second.  (On x86-64 the hardware never shows the store
** buffering a relaxed look would allow; on AArch64 this is the test that would catch it.)
*/
enum { WAKE_THREADS = 8, WAKE_ROUNDS = 300, WAKE_STALL_MS = 30000 };

typedef struct wake_run {
  luapool *p;
  int path;
  pthread_barrier_t go;
  atomic_int errors, holders;
  atomic_int handoffs; /* acquires made, all threads */
  atomic_int finished; /* threads done with their rounds */
} wake_run;

static void *wake_worker(void *arg) {
  wake_run *r = arg;
  pthread_barrier_wait(&r->go); /* all start together, so that they contend */
  for (int i = 0; i < WAKE_ROUNDS; i++) {
    lua_State *L;
    if (luapool_acquire(r->p, -1, &L) != LUAPOOL_OK) {
      atomic_fetch_add(&r->errors, 1); /* ECLOSED after a stall: the test has failed already */
      continue;
    }
    atomic_fetch_add(&r->handoffs, 1);
    if (atomic_fetch_add(&r->holders, 1) != 0)
      atomic_fetch_add(&r->errors, 1); /* max_states 1: never two holders */
    /* hold it a moment: the others go to sleep */
    sched_yield();
    atomic_fetch_sub(&r->holders, 1);
    if (r->path == 2)
      luapool_discard(r->p, L); /* closed here (no watchdog): room for the next one */
    else
      luapool_release(r->p, L);
  }
  atomic_fetch_add(&r->finished, 1);
  return NULL;
}

/* Until every worker is done (true), or no acquire succeeds for WAKE_STALL_MS (false). */
static bool wake_progresses(wake_run *r) {
  int seen = -1;
  double stall_end = 0;
  while (atomic_load(&r->finished) < WAKE_THREADS) {
    int now = atomic_load(&r->handoffs);
    if (now != seen) {
      seen = now;
      stall_end = util_now_ms() + WAKE_STALL_MS;
    } else if (util_now_ms() > stall_end) {
      return false;
    }
    struct timespec nap = {0, 10 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  return true;
}

START_TEST(no_wakeup_is_lost_with_one_state_and_eight_waiters) {
  static const char *const paths[] = {"magazine", "global list", "room after a discard"};
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.libs = 0; /* creations are cheap: the discard path makes one per round */
  cfg.reset = LUAPOOL_RESET_STACK;
  cfg.magazine_size = _i == 0 ? 1 : 0;
  wake_run r = {.p = util_pool(&cfg), .path = _i};
  pthread_barrier_init(&r.go, NULL, WAKE_THREADS);
  pthread_t t[WAKE_THREADS];
  for (int i = 0; i < WAKE_THREADS; i++)
    start(&t[i], wake_worker, &r);
  bool progressed = wake_progresses(&r);
  if (!progressed)
    luapool_shutdown(r.p, 0); /* the sleepers wake with ECLOSED, so that they can be joined */
  for (int i = 0; i < WAKE_THREADS; i++)
    join(t[i]);
  ck_assert_msg(progressed, "%s: no acquire succeeded for %d ms after %d: a lost wake-up",
                paths[_i], WAKE_STALL_MS, atomic_load(&r.handoffs));
  ck_assert_msg(atomic_load(&r.errors) == 0, "%s: %d errors", paths[_i], atomic_load(&r.errors));
  luapool_stats s = util_stats(r.p);
  ck_assert_uint_eq(s.acquires, WAKE_THREADS * WAKE_ROUNDS);
  ck_assert_uint_eq(s.in_use, 0);
  ck_assert_uint_le(s.live, 1);
  ck_assert_msg(s.waits > 0, "%s: no acquire ever waited: the test tested nothing", paths[_i]);
  if (_i == 2)
    ck_assert_uint_eq(s.created, WAKE_THREADS * WAKE_ROUNDS);
  else
    ck_assert_uint_eq(s.created, 1);
  luapool_destroy(r.p);
  pthread_barrier_destroy(&r.go);
}
END_TEST

/* ---- a double release that races --------------------------------------------------------- */

/*
** RACERS threads release the one state at the same moment, round after round: the release's CAS
** on the slot (OUT to IDLE, before the reset touches the state) lets exactly one through, and
** the others are refused with their log line; the winner caches the state in its magazine, so
** the next round's acquire steals it (max_states 1).  Without the CAS (a check of OUT, then a
** store) two could pass in a round: the state reset twice at once and cached twice, which this
** test sees as a release count above the rounds, a refusal missing, or a second idle state.
** The racers spin on the round number rather than block on a barrier, so that they start within
** a few hundred nanoseconds of each other; the window the CAS closes is a few nanoseconds wide,
** so the test catches its loss only some of the time, more often on more cores.  Every wait is
** bounded.
*/
#define RACE_ROUNDS 1000
#define RACERS 3

typedef struct race_run {
  luapool *p;
  lua_State *L;       /* this round's state, set before round is raised */
  atomic_int round;   /* raised by the main thread: the racers release */
  atomic_int done;    /* releases made, all rounds */
  atomic_bool failed; /* a wait ran past its bound */
} race_run;

/* Spins (yielding) until *v reaches at_least; false after 10 s. */
static bool race_wait(atomic_int *v, int at_least) {
  double end = util_now_ms() + 10e3;
  while (atomic_load(v) < at_least) {
    if (util_now_ms() > end)
      return false;
    sched_yield();
  }
  return true;
}

static void *race_releaser(void *arg) {
  race_run *r = arg;
  for (int i = 1; i <= RACE_ROUNDS; i++) {
    if (!race_wait(&r->round, i)) {
      atomic_store(&r->failed, true);
      return NULL;
    }
    luapool_release(r->p, r->L);
    atomic_fetch_add(&r->done, 1);
  }
  return NULL;
}

START_TEST(a_double_release_that_races_lets_one_through) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.reset = _i == 0 ? LUAPOOL_RESET_STACK : LUAPOOL_RESET_FULL;
  race_run r = {.p = util_pool(&cfg)};
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++)
    start(&t[i], race_releaser, &r);
  int logs = util_log_count();
  for (int i = 1; i <= RACE_ROUNDS && !atomic_load(&r.failed); i++) {
    lua_State *L;
    ck_assert_int_eq(luapool_acquire(r.p, 5000, &L), LUAPOOL_OK); /* stolen from the winner */
    ck_assert(i == 1 || L == r.L);
    r.L = L;
    atomic_store(&r.round, i);
    ck_assert_msg(race_wait(&r.done, i * RACERS), "round %d: the releasers did not finish", i);
    luapool_stats st = util_stats(r.p);
    ck_assert_uint_eq(st.releases, (uint64_t)i);
    ck_assert_uint_eq(st.in_use, 0);
    ck_assert_uint_eq(st.idle, 1);
    ck_assert_int_eq(util_log_count(), logs + i * (RACERS - 1)); /* the losers' refusals */
  }
  for (int i = 0; i < RACERS; i++)
    join(t[i]);
  ck_assert(!atomic_load(&r.failed));
  ck_assert(util_log_has("not checked out"));
  ck_assert_uint_eq(util_stats(r.p).created, 1);
  luapool_destroy(r.p);
}
END_TEST

/* ---- the owner's plain pop against steals ------------------------------------------------ */

/*
** One state (max_states 1), two threads that each acquire it without waiting and release it at
** once: each release caches it in the releaser's magazine, so every acquire either pops it from
** its own magazine (in the handshake's window, magazine.c, or with an exchange while its stealing
** flag is up) or steals it from the other thread's magazine, often while that thread is about to
** pop it.  Two callers must never hold it at once.  An owner that ignored the flag (always in a
** window) fails it in every run; a steal that comes inside a window is test_points.c's
** a_steal_waits_for_the_owners_pop_window; a missing membarrier shows only when a store buffer
** delays the owner's busy past its look at stealing (rare on x86-64, less so on AArch64).
*/
enum { POP_ROUNDS = 100000 };

typedef struct pop_run {
  luapool *p;
  atomic_int held, doubles, errors, finished;
} pop_run;

/* Each does POP_ROUNDS rounds and goes on until the other has done its own: they overlap. */
static void *pop_worker(void *arg) {
  pop_run *r = arg;
  unsigned seed = (unsigned)(uintptr_t)pthread_self();
  for (int i = 0; atomic_load_explicit(&r->finished, memory_order_relaxed) < 2; i++) {
    if (i == POP_ROUNDS)
      atomic_fetch_add(&r->finished, 1);
    lua_State *L;
    int rc = luapool_acquire(r->p, 0, &L);
    if (rc == LUAPOOL_ETIMEDOUT)
      continue; /* the other thread holds it */
    if (rc != LUAPOOL_OK) {
      atomic_fetch_add(&r->errors, 1);
      atomic_store(&r->finished, 2);
      break;
    }
    int was = 0;
    if (!atomic_compare_exchange_strong(&r->held, &was, 1))
      atomic_fetch_add(&r->doubles, 1);
    else
      atomic_store(&r->held, 0);
    luapool_release(r->p, L);
    /* leave it cached a moment, about as long as a steal takes, so that the two meet */
    for (unsigned spin = rand_r(&seed) % 4000; spin > 0; spin--)
      __asm__ volatile("" ::: "memory");
  }
  return NULL;
}

START_TEST(the_owners_plain_pop_and_a_steal_never_share_a_state) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.magazine_size = 4;
  cfg.reset = LUAPOOL_RESET_STACK;
  pop_run r = {.p = util_pool(&cfg)};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    start(&t[i], pop_worker, &r);
  for (int i = 0; i < 2; i++)
    join(t[i]);
  ck_assert_int_eq(atomic_load(&r.doubles), 0);
  ck_assert_int_eq(atomic_load(&r.errors), 0);
  luapool_stats st = util_stats(r.p);
  ck_assert_uint_eq(st.created, 1);
  ck_assert_uint_eq(st.in_use, 0);
  ck_assert_uint_gt(st.magazine_hits, 1000); /* the plain pop ran */
  ck_assert_uint_gt(st.misses, 0); /* and steals against it (max_states 1: no new state) */
  const char *mb = getenv("LUAPOOL_MEMBARRIER");
  if (mb != NULL && strcmp(mb, "off") == 0) { /* tests/no-membarrier.sh */
    luapool_release(r.p, util_acquire(r.p));  /* this thread's magazine */
    lp_local *l = lp_mag_local_hit(r.p);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(atomic_load(&l->stealing), 1); /* no window: the exchanges, for good */
  }
  luapool_destroy(r.p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("threads");
  TCase *tc = tcase_create("threads");
  tcase_add_test(tc, the_cap_holds_with_many_threads);
  tcase_add_test(tc, a_state_may_be_released_on_another_thread);
  tcase_add_test(tc, an_exiting_thread_gives_its_magazine_back);
  tcase_add_loop_test(tc, creations_on_many_threads_share_the_walk_blocks, 0, 2);
  tcase_add_test(tc, states_in_an_idle_threads_magazine_reach_a_waiter);
  tcase_add_test(tc, a_release_wakes_a_waiter);
  tcase_add_test(tc, shutdown_wakes_waiters_with_eclosed);
  tcase_add_test(tc, shutdown_drains_states_released_meanwhile);
  tcase_add_test(tc, stress_no_state_is_ever_held_twice);
  tcase_add_test(tc, the_owners_plain_pop_and_a_steal_never_share_a_state);
  tcase_add_loop_test(tc, a_double_release_that_races_lets_one_through, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("wakeups");
  /* the test bounds a stall itself (wake_progresses); this only bounds a run on a machine so
     loaded that it keeps progressing, slowly */
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, no_wakeup_is_lost_with_one_state_and_eight_waiters, 0, 3);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
