/*
** pool.c: the public API, on top of every other file.  acquire and release are the fast paths:
** a magazine hit touches only the calling thread's lp_local.  Everything rare (the global list,
** creating, stealing, waiting, closing) is out of line in *_slow functions or in the watchdog.
** luapool_load (chunk.c) and luapool_set_budget (budget.c) live with the part they serve.
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "internal.h"
#include "magazine_inline.h"
#include "reset.h"
#include "stats.h"
#include "sx.h"

/* ---- configuration ----------------------------------------------------------------------- */

/* The public structs keep their size (ABI): new fields come out of their reserved space. */
_Static_assert(sizeof(luapool_config) == 256 || sizeof(void *) != 8,
               "luapool_config is 256 bytes on LP64: take new fields from reserved");
_Static_assert(sizeof(luapool_stats) == 328, "luapool_stats is 328 bytes: take from reserved");

void luapool_config_init(luapool_config *cfg) {
  if (cfg == NULL)
    return;
  memset(cfg, 0, sizeof *cfg);
  cfg->version = LUAPOOL_CONFIG_VERSION;
  cfg->max_states = 0;
  cfg->max_idle = 64;
  cfg->min_idle = 0;
  cfg->magazine_size = 4;
  cfg->watchdog_interval_ms = 1000;
  cfg->libs = LUAPOOL_LIBS_SAFE;
  cfg->reset = LUAPOOL_RESET_FULL;
  cfg->idle_timeout_ms = 60000;
  cfg->max_uses = 0;
  cfg->max_lifetime_ms = 0;
  cfg->bloat_kb = 8192;
  cfg->gc_per_pass = 32;
  cfg->recycle_kb = 1024;
  cfg->mem_limit = (size_t)64 << 20;
  cfg->budget_instructions = 0;
  cfg->budget_ms = 0;
  cfg->chunk_cache = 32;
  cfg->held_warn_ms = 0;
  cfg->stack_limit = LP_STACK_LIMIT;
}

/* What is wrong with cfg's fields, or NULL. */
static const char *invalid(const luapool_config *cfg) {
  if (cfg->min_idle > cfg->max_idle)
    return "min_idle is above max_idle";
  if (cfg->max_states != 0 && cfg->min_idle > cfg->max_states)
    return "min_idle is above max_states";
  if (cfg->magazine_size > LP_MAGAZINE_MAX)
    return "magazine_size is above 64";
  if (cfg->stack_limit != 0 && cfg->stack_limit < LP_STACK_LIMIT_MIN)
    return "stack_limit is below 1024 (and not 0)";
  if ((cfg->libs & ~(unsigned)(LUAPOOL_LIBS_ALL | LUAPOOL_LIB_OS_TIME | LUAPOOL_LIB_SANDBOX)) != 0)
    return "libs has bits that are no LUAPOOL_LIB_*";
  unsigned unsafe = LUAPOOL_LIB_IO | LUAPOOL_LIB_OS | LUAPOOL_LIB_DEBUG | LUAPOOL_LIB_PACKAGE;
  if ((cfg->libs & LUAPOOL_LIB_SANDBOX) && (cfg->libs & unsafe) != 0)
    return "LUAPOOL_LIB_SANDBOX excludes io, os (but LUAPOOL_LIB_OS_TIME), debug and package";
  if (cfg->chunk_cache > 4096)
    return "chunk_cache is above 4096";
  if (cfg->reset != LUAPOOL_RESET_FULL && cfg->reset != LUAPOOL_RESET_STACK)
    return "reset is neither LUAPOOL_RESET_FULL nor LUAPOOL_RESET_STACK";
  return NULL;
}

/*
** The version is the one check of a structure luapool_config_init may not have filled: until it
** matches, every other field may be garbage (an uninitialised struct), function pointers
** included, so the refusal goes to stderr and no callback of cfg is called.  A struct with the
** right version and garbage elsewhere is not detected (luapool_config_init(3)).
*/
static int config_check(const luapool_config *cfg) {
  if (cfg->version != LUAPOOL_CONFIG_VERSION) {
    lp_log(NULL, LUAPOOL_LOG_ERROR,
           "luapool_create: config version %u is not %u: call luapool_config_init first",
           cfg->version, LUAPOOL_CONFIG_VERSION);
    return LUAPOOL_EINVAL;
  }
  const char *why = invalid(cfg);
  if (why != NULL) {
    lp_log(cfg, LUAPOOL_LOG_ERROR, "luapool_create: invalid config: %s", why);
    return LUAPOOL_EINVAL;
  }
  return LUAPOOL_OK;
}

/* ---- calls from inside a callback --------------------------------------------------------- */

/*
** True (and a log line) when the calling thread is inside a callback of any pool: then fn would
** block on what the callback's caller may hold.  A pass runs on_create, on_state, log and
** clock_ms under its pass mutex (and maintain, shutdown and destroy take it), shutdown joins the
** watchdog thread the callback may run on and waits for a drain the callback's caller may stand
** in the way of, an acquire that waits may wait for states the pass holds, and a new state runs
** on_create again.  Refusing them for every pool, not just the callback's, also keeps
** pass mutexes from nesting and the pools list's lock (magazine.c) from being taken under one:
** the order the fork handlers rely on (doc/design.md, "fork").
*/
static bool refused_in_callback(const luapool_config *cfg, const char *fn) {
  const char *cb = lp_cb_inside();
  if (cb == NULL)
    return false;
  lp_log(cfg, LUAPOOL_LOG_ERROR, "%s: called from the %s callback (refused)", fn, cb);
  return true;
}

/* ---- fork ------------------------------------------------------------------------------------ */

/*
** A prefork server creates and prewarms its pools, then forks workers.  The child has one
** thread, the forking one: a lock another thread held at the fork would stay held for good, and
** a condition variable still counts the parent's sleepers.  So the prepare handler takes every
** lock a child may need, in this order, and the parent and child handlers release them:
**   1. the live pools' list (magazine.c's pools_lock);
**   2. every pool's pass mutex, in list order;
**   3. for each pool in list order: the watchdog thread's mutex, the wait mutex, the magazine
**      mutex, the arena mutex.
** It is the order of every other path, so prepare cannot deadlock with one.  pools_lock is
** taken only by a thread that holds no other luapool lock (a thread's first call on a pool,
** create, destroy, thread exit; inside a callback, where a pass mutex may be held, none of those
** take it: pool.c's refusals, lp_mag_local_get_slow).  A pass mutex is taken holding nothing (a
** pass, shutdown), and pass mutexes never nest (maintain, shutdown and destroy refuse inside a
** callback); under one, the pass and its callbacks take the class-3 locks of any pool.  Among
** class 3 only the wait mutex is held while another is taken: the magazine mutex (a waiting
** acquire steals, the drain sums counters), so class 3 never waits across pools.  Thread exit
** takes pools_lock, then a magazine mutex, then a wait mutex: 1 before 3.
**
** In the child: every mutex is released, the condition variables are made anew and the waiter
** count is 0 (wait.c), the parent's watchdog thread is forgotten and the child's first call
** starts one (watchdog.c), each pool gets a new serial so that the forking thread's next call
** takes the slow path that does so (magazine.c).  The states cached in magazines of threads
** that did not survive the fork stay on the pool's list of magazines, where waiting acquires
** steal them and the pass reclaims them (such a thread is quiet).  Every idle state on a list
** gets a new math.random seed: the parent holds the same state.  A state no list holds was in a
** thread's hands: stranded (slot.h).
*/

static void fork_prepare_pool(luapool *p) {
  lp_watchdog_fork_prepare(p);
  lp_wait_fork_prepare(&p->wait);
  lp_mag_fork_prepare_pool(p);
  lp_slot_arena_fork_prepare(&p->arena);
}

static void fork_prepare(void) {
  lp_mag_fork_prepare();
  lp_mag_each_pool_locked(lp_watchdog_fork_prepare_pass);
  lp_mag_each_pool_locked(fork_prepare_pool);
}

static void fork_parent_pool(luapool *p) {
  lp_slot_arena_fork_parent(&p->arena);
  lp_mag_fork_parent_pool(p);
  lp_wait_fork_parent(&p->wait);
  lp_watchdog_fork_parent(p); /* its mutex, and the pass mutex */
}

static void fork_parent(void) {
  lp_mag_each_pool_locked(fork_parent_pool);
  lp_mag_fork_parent();
}

static void strand(lp_slot *s, void *ud) {
  (void)ud;
  lp_slot_strand(s);
}

static void unstrand(lp_slot *s, void *ud) {
  (void)ud;
  lp_slot_unstrand(s);
}

/* An idle state on a list: not stranded, and reseeded (a failure leaves the parent's seed). */
static void unstrand_reseed(lp_slot *s, void *ud) {
  (void)ud;
  lp_slot_unstrand(s);
  (void)lp_entropy_reseed_now(&s->x->seed);
}

static void fork_child_pool(luapool *p) {
  lp_slot_arena_fork_child(&p->arena);
  lp_mag_fork_child_pool(p);
  lp_wait_fork_child(&p->wait);
  lp_watchdog_fork_child(p);
  lp_slot_each_state(&p->arena, strand, NULL); /* all, then those a list holds */
  lp_freelist_each_alone(&p->idle, unstrand_reseed, NULL);
  lp_mag_each_cached_alone(p, unstrand_reseed, NULL);
  lp_watchdog_each_closing_alone(p, unstrand, NULL);
}

static void fork_child(void) {
  lp_entropy_after_fork();
  lp_thread_id_after_fork();
  lp_mag_each_pool_locked(fork_child_pool);
  lp_mag_fork_child();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_rc;

static void fork_register(void) {
  fork_rc = pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- create and destroy ------------------------------------------------------------------ */

/* Each module's part of a new pool.  On Linux none of these fails. */
static int pool_init(luapool *p) {
  atomic_init(&p->closed, 0);
  lp_upkeep_clock_init(&p->clock, lp_time_upkeep_ms(&p->cfg));
  lp_freelist_init(&p->idle);
  lp_state_init(p);
  if (lp_wait_init(&p->wait) != LUAPOOL_OK || lp_mag_init(p) != LUAPOOL_OK ||
      lp_slot_arena_init(&p->arena) != LUAPOOL_OK || lp_watchdog_init(p) != LUAPOOL_OK)
    return LUAPOOL_ENOMEM;
  lp_mag_register_pool(p);
  return LUAPOOL_OK;
}

int luapool_create(const luapool_config *cfg, luapool **out) {
  if (cfg == NULL || out == NULL)
    return LUAPOOL_EINVAL;
  int rc = config_check(cfg);
  if (rc != LUAPOOL_OK)
    return rc;
  if (refused_in_callback(cfg, "luapool_create"))
    return LUAPOOL_EINVAL;
  pthread_once(&fork_once, fork_register); /* before the first pool is on the list */
  if (fork_rc != 0)
    return LUAPOOL_ENOMEM;
  size_t bytes = (sizeof(luapool) + LP_CACHELINE - 1) / LP_CACHELINE * LP_CACHELINE;
  luapool *p = lp_aligned_alloc(LP_CACHELINE, bytes); /* the free list's cmpxchg16b needs 16 */
  if (p == NULL)
    return LUAPOOL_ENOMEM;
  memset(p, 0, bytes);
  p->cfg = *cfg;
  if (pool_init(p) != LUAPOOL_OK) {
    lp_free(p);
    return LUAPOOL_ENOMEM;
  }
  rc = lp_watchdog_prewarm(p, 0, cfg->min_idle); /* min_idle states are ready at return */
  if (rc == LUAPOOL_OK)
    rc = lp_watchdog_start(p);
  if (rc != LUAPOOL_OK) {
    luapool_destroy(p);
    return rc;
  }
  *out = p;
  return LUAPOOL_OK;
}

typedef struct leftover {
  luapool *p;
  unsigned out;      /* of those, still checked out */
  unsigned stranded; /* left unclosed: held at a fork by a thread this process does not have */
} leftover;

/*
** luapool_destroy: closes a state left in a slot.  The slot becomes CLOSING first, so that a
** release or discard of the state from on_state, called as it closes, is refused instead of
** closing it a second time.  A stranded state (a fork's child) is left as it is: the thread
** that had it may have been halfway through changing it, or through closing it.
*/
static void close_left(lp_slot *s, void *ud) {
  leftover *left = ud;
  if (lp_slot_stranded(s)) {
    left->stranded++;
    return;
  }
  int was = lp_slot_state(s);
  if (was == LP_SLOT_OUT)
    left->out++;
  if (was == LP_SLOT_OUT || was == LP_SLOT_IDLE)
    lp_slot_try_move(s, was, LP_SLOT_CLOSING);
  lp_state_close(left->p, s, LUAPOOL_CLOSE_SHUTDOWN);
}

void luapool_destroy(luapool *p) {
  if (p == NULL || refused_in_callback(&p->cfg, "luapool_destroy"))
    return;
  luapool_shutdown(p, 0);
  /* From here no exiting thread reaches p's magazines, and every state is closed by scanning
     the slots: idle ones any racing release left behind, and those still checked out. */
  lp_mag_forget_pool(p);
  leftover left = {p, 0, 0};
  lp_slot_each_state(&p->arena, close_left, &left);
  lp_state_fini(p);
  if (left.out != 0)
    lp_log(&p->cfg, LUAPOOL_LOG_WARN, "luapool_destroy: closed %u state(s) still checked out",
           left.out);
  if (left.stranded != 0)
    lp_log(&p->cfg, LUAPOOL_LOG_WARN,
           "luapool_destroy: left %u state(s) unclosed that threads which did not survive a "
           "fork held",
           left.stranded);
  unsigned open = lp_wait_detach_all(&p->wait);
  if (open != 0)
    lp_log(&p->cfg, LUAPOOL_LOG_WARN,
           "luapool_destroy: %u notifier(s) still open: detached (luapool_acquire_async returns "
           "LUAPOOL_ECLOSED on them; luapool_notifier_close frees them)",
           open);
  lp_slot_arena_fini(&p->arena);
  lp_watchdog_fini(p);
  lp_mag_fini(p);
  lp_wait_fini(&p->wait);
  lp_free(p);
}

/* ---- the calling thread's lp_local ----------------------------------------------------------- */

/*
** Past the first probe (a thread's first call on p, or after a fork: the pool's serial changed),
** the child of a fork starts its watchdog thread first.
*/
static __attribute__((noinline)) lp_local *local_slow(luapool *p) {
  lp_watchdog_resume(p);
  return lp_mag_local_get_slow(p);
}

static inline lp_local *local_of(luapool *p) {
  lp_local *l = lp_mag_local_hit(p);
  return l != NULL ? l : local_slow(p);
}

/* ---- acquire ------------------------------------------------------------------------------ */

/*
** s (from a list) was made by a generation older than the one this acquire loaded: it is closed
** instead of handed out (through the close list, as a discard), and the acquire looks again.
*/
static __attribute__((noinline)) void retire(luapool *p, lp_slot *s) {
  lp_slot_move(s, LP_SLOT_IDLE, LP_SLOT_CLOSING);
  lp_watchdog_close_later(p, s, LUAPOOL_CLOSE_RELOADED);
}

/*
** s (from its list, or new) goes to the caller, counted by where it came from.  Inline in the
** magazine hit (luapool_acquire, with constant from and source), out of line elsewhere
** (acquired_slow): a call and its argument shuffling were a tenth of a hit.  hit: luapool_acquire's
** magazine hit, whose key said that nothing arms; it leaves check_in's hint (lp_local.held_L).
*/
/* What an acquire does when held_warn_ms or a budget is on: out of line, a tail call. */
static __attribute__((noinline)) int acquired_armed(luapool *p, lp_slot *s, lua_State *L) {
  if (p->cfg.held_warn_ms != 0)
    lp_slot_held_begin(s, lp_upkeep_now(&p->clock), lp_thread_id(), L);
  if (p->cfg.budget_instructions != 0 || p->cfg.budget_ms != 0)
    lp_budget_arm(L, &s->x->budget, p->cfg.budget_instructions, p->cfg.budget_ms);
  return LUAPOOL_OK;
}

static inline __attribute__((always_inline)) int
acquired(luapool *p, lp_local *l, lp_slot *s, int from, int source, bool hit, lua_State **out) {
  lp_slot_move(s, from, LP_SLOT_OUT);
  lp_upkeep_acquired(&s->upkeep);
  lp_mag_count(p, l, source); /* which also counts the acquire (counters.h) */
  lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
  lp_budget_begin(&s->x->budget); /* an earlier holder's interrupt goes before anything arms */
  *out = L;
  if (hit) { /* the key said nothing arms: no test at all; and check_in's hint */
    l->held_s = s;
    l->held_L = L;
    return LUAPOOL_OK;
  }
  if (p->cfg.held_warn_ms != 0 || p->cfg.budget_instructions != 0 || p->cfg.budget_ms != 0)
    return acquired_armed(p, s, L);
  return LUAPOOL_OK;
}

/* acquired, for the paths past the magazine: one copy of it, not one per caller. */
static __attribute__((noinline)) int acquired_slow(luapool *p, lp_local *l, lp_slot *s, int from,
                                                   int source, lua_State **out) {
  return acquired(p, l, s, from, source, false, out);
}

/*
** Past the magazine: the global list, then room for a new state (*reserved), then another
** thread's magazine.  *source says where a state came from.
**
** After lp_wait_enter each of the three looks must see what a releaser published before it read
** the waiter count, or that releaser must see the waiter (doc/design.md, "Waking without lost
** wake-ups"):
**  - the global list: ck's pop starts with a plain load of head.  Its releasers publish with
**    ck's push and then read the count with a read-modify-write (lp_wait_any_after_push), and
**    every write of the count is a read-modify-write: either that one reads the waiter's
**    increment (it wakes the waiter), or it precedes the increment in the count's modification
**    order, so the increment (seq_cst, hence acquire) reads from its release sequence and
**    synchronizes with it: the push happens before this pop, which then sees it (coherence).
**    No fence needed, on any architecture;
**  - room under max_states: lp_state_reserve's loads are seq_cst (the argument is there);
**  - other magazines: lp_mag_steal's loads are seq_cst (magazine.c, mag_take), and a waiter's
**    look runs the handshake's membarrier for owners that publish with a plain store.
*/
static lp_slot *take_slow(luapool *p, lp_local *l, bool waiter, bool may_create, bool *reserved,
                          int *source) {
  *source = LP_C_MISSES;
  lp_slot *s = lp_freelist_pop_mpmc(&p->idle);
  if (s != NULL) {
    *source = LP_C_GLOBAL_HITS;
    return s;
  }
  if (may_create && lp_state_reserve(p)) {
    *reserved = true;
    return NULL;
  }
  return lp_mag_steal(p, false, l, waiter);
}

/*
** Sleeps until take_slow succeeds, the pool closes, or the deadline (if any) passes; each look
** is made after lp_wait_enter raised the waiter count, so no wake-up is lost (wait.h).
*/
static lp_slot *wait_slow(luapool *p, lp_local *l, const struct timespec *deadline, bool *reserved,
                          int *rc) {
  lp_slot *s = NULL;
  int source;
  bool slept = false, timed_out = false;
  LP_POINT(LP_POINT_BEFORE_WAIT);
  lp_wait_enter(&p->wait);
  for (;;) {
    if (lp_pool_closed(p)) {
      *rc = LUAPOOL_ECLOSED;
      break;
    }
    s = take_slow(p, l, true, true, reserved, &source);
    if (s != NULL || *reserved || timed_out) {
      *rc = s != NULL || *reserved ? LUAPOOL_OK : LUAPOOL_ETIMEDOUT;
      break;
    }
    slept = true;
    if (lp_wait_sleep(&p->wait, deadline) == ETIMEDOUT)
      timed_out = true; /* one more look, then give up */
  }
  lp_wait_leave(&p->wait);
  if (slept)
    lp_mag_count(p, l, LP_C_WAITS);
  if (*rc == LUAPOOL_ETIMEDOUT)
    lp_mag_count(p, l, LP_C_TIMEOUTS);
  return s;
}

static void refuse_in_callback(luapool *p, const char *fn) {
  lp_log(&p->cfg, LUAPOOL_LOG_ERROR,
         "%s: called from the %s callback with no idle state: it neither creates nor waits there "
         "(refused)",
         fn, lp_cb_inside());
}

/*
** take_slow found neither a state nor room.  Inside a callback an acquire takes an idle state if
** there is one (the global list, another thread's magazine: locks no callback's caller holds),
** but neither creates a state (on_create would run again, inside the callback) nor waits (the
** states it would wait for may be the ones the pass that runs the callback holds): it is refused
** with LUAPOOL_EINVAL instead.  A try (timeout 0) times out; anything else waits.  NULL, with
** *rc, when the acquire ends here.
*/
static lp_slot *look_longer(luapool *p, lp_local *l, bool in_callback, long timeout_ms,
                            const struct timespec *deadline, bool *reserved, int *rc) {
  if (in_callback) {
    refuse_in_callback(p, "luapool_acquire");
    *rc = LUAPOOL_EINVAL;
    return NULL;
  }
  if (timeout_ms == 0) {
    lp_mag_count(p, l, LP_C_TIMEOUTS);
    *rc = LUAPOOL_ETIMEDOUT;
    return NULL;
  }
  return wait_slow(p, l, timeout_ms < 0 ? NULL : deadline, reserved, rc);
}

/* A new state under the reservation the caller holds (given back if the creation fails). */
static int acquire_new(luapool *p, lp_local *l, uint64_t gen, lua_State **out) {
  lp_slot *s;
  int rc = lp_state_new(p, &s);
  if (rc != LUAPOOL_OK) {
    lp_state_unreserve(p);
    return rc;
  }
  lp_assert(!lp_sx_stale(s->x, gen)); /* lp_state_new read gen's triple or a later one */
  (void)gen;
  return acquired_slow(p, l, s, LP_SLOT_EMPTY, LP_C_MISSES, out);
}

/* The state's heap figures for the stats (slot.h), noted by its holder. */
static void note_heap(luapool *p, lp_slot *s) {
  const lp_alloc *a = &s->x->alloc;
  lp_slot_heap_note(&p->arena, s, lp_alloc_bytes(a), lp_alloc_peak(a));
}

/*
** Past the magazine.  A state of a generation older than gen is retired and the look starts
** again (the deadline stays): there are finitely many, and a state this acquire creates is never
** one (state.c, lp_state_new).  Retiring is outside wait_slow, which holds the wait mutex:
** closing a state wakes a waiter.
*/
static int acquire_slow(luapool *p, lp_local *l, uint64_t gen, long timeout_ms, lua_State **out) {
  bool in_callback = lp_cb_inside() != NULL;
  struct timespec deadline;
  if (timeout_ms > 0)
    lp_time_deadline(&deadline, timeout_ms);
  for (;;) {
    bool reserved = false;
    int source, rc = LUAPOOL_OK;
    lp_slot *s = take_slow(p, l, false, !in_callback, &reserved, &source);
    if (s == NULL && !reserved) {
      s = look_longer(p, l, in_callback, timeout_ms, &deadline, &reserved, &rc);
      if (rc != LUAPOOL_OK)
        return rc;
      source = LP_C_MISSES;
    }
    if (reserved)
      return acquire_new(p, l, gen, out);
    if (!lp_sx_stale(s->x, gen))
      return acquired_slow(p, l, s, LP_SLOT_IDLE, source, out);
    retire(p, s);
  }
}

/*
** The slow path, timed for the wait histogram (counters.h): the clock is read here, never on the
** magazine hit, which is bucket 0 by derivation.  Only what the histogram's total counts is timed
** (acquires and timeouts); its counts go to the thread's own counters, no shared line.  A state
** acquired here may be new, or unmeasured since its creation: its heap is noted.
*/
static __attribute__((noinline)) int acquire_slow_timed(luapool *p, lp_local *l, uint64_t gen,
                                                        long timeout_ms, lua_State **out) {
  uint64_t t0 = lp_time_ns();
  int rc = acquire_slow(p, l, gen, timeout_ms, out);
  if (rc != LUAPOOL_OK && rc != LUAPOOL_ETIMEDOUT)
    return rc;
  uint64_t ns = lp_time_ns() - t0;
  int bucket = lp_counters_wait_bucket(ns);
  if (bucket >= 0)
    lp_mag_count(p, l, bucket);
  lp_mag_add(p, l, LP_C_WAIT_NS, ns);
  if (rc == LUAPOOL_OK)
    note_heap(p, lp_slot_of(*out));
  return rc;
}

/* The calling thread's magazine's next state of generation gen or later, or NULL; the older ones
   it meets are retired (doc/design.md, hot reload). */
static inline lp_slot *mag_pop_fresh(luapool *p, lp_local *l, uint64_t gen) {
  lp_slot *s;
  while (l != NULL && (s = lp_mag_pop(l)) != NULL) {
    if (!lp_sx_stale(s->x, gen))
      return s;
    retire(p, s);
  }
  return NULL;
}

/*
** luapool_acquire past its first look: the calling thread's lp_local past the first probe (l
** NULL), the popped top state if the key did not match (top), the rest of the magazine, then the
** slow path.  The key's mismatch has one of three causes, asked here in turn: the pool is shut
** down (top is closed, as a release on a closed pool closes its state), top is stale (retired),
** or the pool arms each acquire (top is handed out through acquired_slow, which arms).  Out of
** line, so that the hit makes no call but this tail call and saves no register.
*/
static __attribute__((noinline)) int acquire_miss(luapool *p, lp_local *l, lp_slot *top,
                                                  long timeout_ms, lua_State **out) {
  if (lp_pool_closed(p)) {
    if (top != NULL)
      lp_state_close(p, top, LUAPOOL_CLOSE_SHUTDOWN);
    return LUAPOOL_ECLOSED;
  }
  uint64_t gen = lp_pool_generation(p); /* no state of an older one leaves (doc/design.md) */
  if (l == NULL)
    l = local_slow(p);
  if (top != NULL) {
    if (!lp_sx_stale(top->x, gen))
      return acquired_slow(p, l, top, LP_SLOT_IDLE, LP_C_MAGAZINE_HITS, out);
    retire(p, top);
  }
  lp_slot *s = mag_pop_fresh(p, l, gen);
  if (s != NULL)
    return acquired_slow(p, l, s, LP_SLOT_IDLE, LP_C_MAGAZINE_HITS, out);
  return acquire_slow_timed(p, l, gen, timeout_ms, out);
}

/*
** The magazine hit: the thread's top state, if its generation is the pool's key (lp_pool_hit_key:
** open, fresh, nothing to arm).  One load of the key stands for the shutdown flag, the
** generation and the configuration's arming; acquire_miss asks them one by one.
*/
int luapool_acquire(luapool *p, long timeout_ms, lua_State **out) {
  if (p == NULL || out == NULL)
    return LUAPOOL_EINVAL;
  lp_local *l = lp_mag_local_hit(p);
  lp_slot *s = l != NULL ? lp_mag_pop_top(l) : NULL;
  if (__builtin_expect(s != NULL && s->x->generation == lp_pool_hit_key(p), 1))
    return acquired(p, l, s, LP_SLOT_IDLE, LP_C_MAGAZINE_HITS, true, out);
  return acquire_miss(p, l, s, timeout_ms, out);
}

/* ---- acquire from an event loop ---------------------------------------------------------- */

/*
** The notifier's pool, or NULL (and a log line) when n cannot be used: NULL, opened before a
** fork (in the child), or detached by luapool_destroy (*rc says which error).
*/
static luapool *notifier_pool(luapool_notifier *n, const char *fn, int *rc) {
  *rc = LUAPOOL_EINVAL;
  if (n == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR, "%s: NULL notifier (refused)", fn);
    return NULL;
  }
  if (n->forked) {
    lp_log(NULL, LUAPOOL_LOG_ERROR,
           "%s: notifier %p was opened before a fork: open a new one in this process (refused)", fn,
           (void *)n);
    return NULL;
  }
  if (n->pool == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR, "%s: notifier %p outlived its pool (luapool_destroy)", fn,
           (void *)n);
    *rc = LUAPOOL_ECLOSED;
    return NULL;
  }
  return n->pool;
}

int luapool_notifier_open(luapool *p, luapool_notifier **out) {
  if (p == NULL || out == NULL) {
    lp_log(p != NULL ? &p->cfg : NULL, LUAPOOL_LOG_ERROR,
           "luapool_notifier_open: NULL %s (refused)", p == NULL ? "pool" : "out");
    return LUAPOOL_EINVAL;
  }
  if (lp_pool_closed(p))
    return LUAPOOL_ECLOSED;
  int rc = lp_wait_notifier_open(&p->wait, p, out);
  if (rc == LUAPOOL_ENOMEM) {
    int e = errno;
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "luapool_notifier_open: %s", strerror(e));
  }
  return rc;
}

int luapool_notifier_fd(const luapool_notifier *n) {
  if (n == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR, "luapool_notifier_fd: NULL notifier (refused)");
    return LUAPOOL_EINVAL;
  }
  return n->fd;
}

/*
** Past the magazine: take_slow as luapool_acquire(p, 0) does; when it finds nothing, the notifier
** registers (lp_wait_async_enter: the waiter count raised under the wait mutex, as a blocked
** acquire enters) and take_slow looks once more.  Either that look finds what a releaser
** published, or the releaser reads the count after the increment and wakes one waiter: the
** argument of wait.h and doc/design.md ("Waking without lost wake-ups") as it is.
*/
static __attribute__((noinline)) int
acquire_async_slow(luapool *p, lp_local *l, luapool_notifier *n, uint64_t gen, lua_State **out) {
  bool in_callback = lp_cb_inside() != NULL;
  for (;;) {
    bool reserved = false;
    int source;
    lp_slot *s = take_slow(p, l, false, !in_callback, &reserved, &source);
    if (s != NULL || reserved) {
      lp_wait_async_cancel(&p->wait, n); /* registered by an earlier call: served now */
    } else {
      if (in_callback) {
        refuse_in_callback(p, "luapool_acquire_async");
        return LUAPOOL_EINVAL;
      }
      LP_POINT(LP_POINT_ASYNC_BEFORE_REGISTER);
      lp_wait_async_enter(&p->wait, n);
      if (lp_pool_closed(p)) {
        lp_wait_async_leave(&p->wait, n, true);
        return LUAPOOL_ECLOSED;
      }
      s = take_slow(p, l, true, true, &reserved, &source);
      bool found = s != NULL || reserved;
      lp_wait_async_leave(&p->wait, n, found);
      if (!found)
        return LUAPOOL_EAGAIN;
    }
    int rc;
    if (reserved)
      rc = acquire_new(p, l, gen, out);
    else if (!lp_sx_stale(s->x, gen))
      rc = acquired_slow(p, l, s, LP_SLOT_IDLE, source, out);
    else {
      retire(p, s); /* outside the wait mutex: closing wakes a waiter */
      continue;
    }
    if (rc == LUAPOOL_OK)
      note_heap(p, lp_slot_of(*out));
    return rc;
  }
}

int luapool_acquire_async(luapool_notifier *n, lua_State **out) {
  int rc;
  luapool *p = notifier_pool(n, "luapool_acquire_async", &rc);
  if (p == NULL)
    return rc;
  if (out == NULL) {
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "luapool_acquire_async: NULL out (refused)");
    return LUAPOOL_EINVAL;
  }
  if (lp_pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_wait_notifier_consume(&p->wait, n);
  lp_local *l = local_of(p);
  uint64_t gen = lp_pool_generation(p); /* as luapool_acquire: no older state leaves */
  lp_slot *s = mag_pop_fresh(p, l, gen);
  if (s == NULL)
    return acquire_async_slow(p, l, n, gen, out);
  lp_wait_async_cancel(&p->wait, n);
  return acquired(p, l, s, LP_SLOT_IDLE, LP_C_MAGAZINE_HITS, false, out);
}

void luapool_notifier_cancel(luapool_notifier *n) {
  int rc;
  luapool *p = notifier_pool(n, "luapool_notifier_cancel", &rc);
  if (p != NULL)
    lp_wait_async_cancel(&p->wait, n);
}

void luapool_notifier_close(luapool_notifier *n) {
  if (n == NULL)
    return;
  if (n->forked || n->pool == NULL)
    lp_wait_notifier_free_detached(n);
  else
    lp_wait_notifier_close(&n->pool->wait, n);
}

/* ---- release and discard ------------------------------------------------------------------ */

/* check_in's refusal: the log line that says what was wrong with the call.  Out of line. */
static __attribute__((noinline, cold)) lp_slot *check_in_refused(luapool *p, lua_State *L,
                                                                 bool ours, const char *fn) {
  if (p == NULL)
    lp_log(NULL, LUAPOOL_LOG_ERROR, "%s: NULL pool (refused)", fn);
  else if (L == NULL)
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "%s: NULL lua_State (refused)", fn);
  else if (!ours)
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "%s: lua_State %p is not a state of this pool (refused)", fn,
           (void *)L);
  else
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR,
           "%s: lua_State %p is not checked out: released or discarded twice? (refused)", fn,
           (void *)L);
  return NULL;
}

/*
** The slot of L, moved from OUT to next, if the call is well-formed, L is this pool's and it was
** checked out; otherwise NULL, and a log line (the functions that take a state and a pool).
** *lp: the calling thread's lp_local past the first probe, or NULL (local_of's first look).
**
** Where to look: the state this thread's last magazine hit handed out (l->held_L) names its slot
** (l->held_s, a slot of this pool, so memory that stays valid while the pool lives); any other L,
** the arena (lp_slot_check: its extra space is compared, never followed).  Either way the slot
** must name L back, and then the CAS from OUT decides, so the hint changes how fast the slot is
** found, never which L a call may release.  Inline: every release runs it.
*/
static inline __attribute__((always_inline)) lp_slot *check_in(luapool *p, lua_State *L, int next,
                                                               const char *fn, lp_local **lp) {
  if (__builtin_expect(p == NULL || L == NULL, 0))
    return check_in_refused(p, L, false, fn);
  lp_local *l = lp_mag_local_hit(p);
  *lp = l;
  lp_slot *s;
  if (l != NULL && l->held_L == L &&
      atomic_load_explicit(&l->held_s->L, memory_order_relaxed) == L) {
    s = l->held_s;
    l->held_L = NULL;
  } else {
    s = lp_slot_check(&p->arena, L);
    if (__builtin_expect(s == NULL, 0))
      return check_in_refused(p, L, false, fn);
  }
  LP_POINT(LP_POINT_BEFORE_CLAIM); /* a racing release or discard of L claims it here */
  if (__builtin_expect(!lp_slot_try_move(s, LP_SLOT_OUT, next), 0))
    return check_in_refused(p, L, true, fn);
  lp_slot_unstrand(s); /* a fork's child: the forking thread held it, and gives it back */
  return s;
}

/* The chunk cache's hits and misses of the request, into the thread's counters (every release). */
static inline void count_chunks(luapool *p, lp_local *l, lp_sx *x) {
  uint64_t hits, misses;
  if (lp_chunk_take_counts(&x->chunks, &hits, &misses)) {
    lp_mag_add(p, l, LP_C_CACHE_HITS, hits);
    lp_mag_add(p, l, LP_C_CACHE_MISSES, misses);
  }
}

/*
** The end of a request, however it ends (released, expired at release, discarded): the host's
** context goes (the next request never sees it), the held record ends, what each part counted
** (memory errors, the budget, the chunk cache) is handed back and counted, and the budget and
** the hooks go.  Returns why the request stopped (budget.h), 0 if it did not.  The fast release
** does the quiet case of it inline (luapool_release).
*/
static int request_end(luapool *p, lp_local *l, lp_slot *s) {
  lp_sx *x = s->x;
  lp_slot_context_set(s, NULL);
  if (p->cfg.held_warn_ms != 0)
    lp_slot_held_end(s);
  if (lp_alloc_take_hit(&x->alloc))
    lp_mag_count(p, l, LP_C_MEM_ERRORS);
  int why = lp_budget_end(&x->budget);
  if (why == LUAPOOL_STATUS_INTERRUPTED)
    lp_mag_count(p, l, LP_C_INTERRUPTED);
  else if (why != 0)
    lp_mag_count(p, l, LP_C_BUDGET_EXCEEDED);
  count_chunks(p, l, x);
  return why;
}

/* The reset; returns the reason to close the state, or 0 to keep it. */
static inline int reset(luapool *p, lp_local *l, lp_sx *x, lua_State *L, bool stopped) {
  switch (lp_reset(&p->cfg, x, L, stopped)) {
  case LP_RESET_RESTORED:
    lp_mag_count(p, l, LP_C_RESTORED);
    return 0;
  case LP_RESET_TAINTED:
    lp_log(&p->cfg, LUAPOOL_LOG_WARN, "luapool_release: reset cannot vouch for state %p: closed",
           (void *)L);
    return LUAPOOL_CLOSE_TAINTED;
  case LP_RESET_BLOAT:
    return LUAPOOL_CLOSE_BLOAT;
  default:
    return 0;
  }
}

/*
** Caches s (or puts it on the global list); whether an acquire is waiting for it.  Publish, then
** read the waiter count, in one of the two shapes of doc/design.md ("Waking without lost
** wake-ups"): into the magazine (a release store in the owner's window, whose StoreLoad barrier
** is the waiter's membarrier, or a seq_cst exchange), then a seq_cst load (the waiter's look,
** mag_take, is a seq_cst load); onto the global list with ck's push, then a seq_cst
** read-modify-write of the count (the waiter's increment synchronizes with it).
*/
static inline bool keep_idle(luapool *p, lp_local *l, lp_slot *s) {
  if (l != NULL && lp_mag_push(l, s))
    return lp_wait_any(&p->wait);
  lp_freelist_push_mpmc(&p->idle, s);
  return lp_wait_any_after_push(&p->wait);
}

/* A release's wake-ups, when there are any (a waiter, or a shutdown to drain): out of line. */
static __attribute__((noinline)) void release_wake(luapool *p) {
  if (lp_pool_closed(p))
    lp_wait_wake_drain(&p->wait);
  else
    lp_wait_wake_one(&p->wait);
}

/*
** The release past its common case (out of line): the state is closed (reason, or the pool is
** shut down), or goes to the global list (no magazine, or a full one); then the count and the
** wake-ups.  l may be NULL (no lp_local, or the first probe missed: local_of).
*/
static __attribute__((noinline)) void release_rest(luapool *p, lp_local *l, lp_slot *s,
                                                   int reason) {
  bool waiters = false;
  if (reason != 0) {
    lp_slot_move(s, LP_SLOT_IDLE, LP_SLOT_CLOSING);
    lp_watchdog_close_later(p, s, reason);
  } else if (lp_pool_closed(p)) {
    lp_state_close(p, s, LUAPOOL_CLOSE_SHUTDOWN);
  } else {
    waiters = keep_idle(p, l, s);
  }
  lp_mag_count(p, l, LP_C_RELEASES);
  if (waiters || lp_pool_closed(p))
    release_wake(p);
}

/*
** The release when luapool_release's inline test fails: no lp_local yet, a key that does not
** match (the pool shut down, the state stale, or acquires arm), or a request that left
** something to count or clear (a memory error, the budget's flags, an interrupt, a hook).  Each
** is asked in turn, as every release did before the inline path existed.
*/
static __attribute__((noinline)) void release_checked(luapool *p, lp_slot *s, lua_State *L) {
  lp_local *l = local_of(p);
  int why = request_end(p, l, s);
  int reason = lp_upkeep_on_release(&s->upkeep, lp_upkeep_now(&p->clock));
  if (reason == 0 && lp_sx_stale(s->x, lp_pool_generation(p)))
    reason = LUAPOOL_CLOSE_RELOADED; /* no reset: it is closed */
  if (reason == 0)
    reason = reset(p, l, s->x, L, why != 0);
  note_heap(p, s); /* before the state goes where others take it */
  release_rest(p, l, s, reason);
}

/*
** The common case inline: the thread has its lp_local, the state's generation is the pool's key
** (lp_pool_hit_key: open, fresh, no held record) and the request left nothing to count or clear
** but the chunk cache's counts (no memory error, lp_budget_quiet), so none of those is asked
** again; kept, into the magazine (the order of keep_idle and release_rest).  Anything else is
** release_checked's, before this release changed anything.  A shutdown during the reset is not
** looked for again: it is one that came just after this release, whose cached state drain's
** poll counts back and lp_watchdog_close_all closes (luapool_shutdown).
*/
void luapool_release(luapool *p, lua_State *L) {
  lp_local *l = NULL;
  lp_slot *s = check_in(p, L, LP_SLOT_IDLE, "luapool_release", &l);
  if (s == NULL)
    return;
  lp_sx *x = s->x;
  if (__builtin_expect(l == NULL || x->generation != lp_pool_hit_key(p) ||
                           x->alloc.hit_or_refusing != 0 || !lp_budget_quiet(&x->budget),
                       0)) {
    release_checked(p, s, L);
    return;
  }
  LP_POINT(LP_POINT_RELEASE_AFTER_KEY); /* a shutdown here: test_points */
  lp_slot_context_set(s, NULL);
  count_chunks(p, l, x);
  int reason = lp_upkeep_on_release(&s->upkeep, lp_upkeep_now(&p->clock));
  if (reason == 0)
    reason = reset(p, l, x, L, false);
  note_heap(p, s); /* before the state goes where others take it */
  if (__builtin_expect(reason == 0 && lp_mag_push(l, s), 1)) {
    lp_mag_count(p, l, LP_C_RELEASES);
    if (__builtin_expect(lp_wait_any(&p->wait), 0))
      release_wake(p);
    return;
  }
  release_rest(p, l, s, reason);
}

void luapool_discard(luapool *p, lua_State *L) {
  lp_local *l = NULL;
  lp_slot *s = check_in(p, L, LP_SLOT_CLOSING, "luapool_discard", &l);
  if (s == NULL)
    return;
  if (l == NULL)
    l = local_slow(p);
  (void)request_end(p, l, s);
  lp_watchdog_close_later(p, s, LUAPOOL_CLOSE_DISCARDED);
  lp_mag_count(p, l, LP_C_DISCARDS);
  if (lp_pool_closed(p))
    lp_wait_wake_drain(&p->wait);
}

/* ---- the host's context ------------------------------------------------------------------- */

/*
** The slot of the state L is a thread of, if a pool made that state and it is checked out; else
** NULL.  As luapool_interrupt and luapool_status, the allocator decides whether L is luapool's
** (lp_sx_check): a foreign state's extra space holds anything, and is read only once that test
** passed.  The slot's state is read relaxed: on the holder's thread it is the holder's own last
** store (or the one it was handed); another thread asks at its own risk, as for the interrupt.
*/
static lp_slot *checked_out(lua_State *L) {
  if (L == NULL || lp_sx_check(L) == NULL)
    return NULL;
  lp_slot *s = lp_slot_of(L);
  return lp_slot_state(s) == LP_SLOT_OUT ? s : NULL;
}

int luapool_set_context(lua_State *L, void *ctx) {
  lp_slot *s = checked_out(L);
  if (s == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR,
           "luapool_set_context: lua_State %p is no checked-out state of a pool (refused)",
           (void *)L);
    return LUAPOOL_EINVAL;
  }
  lp_slot_context_set(s, ctx);
  return LUAPOOL_OK;
}

void *luapool_context(lua_State *L) {
  lp_slot *s = checked_out(L);
  return s != NULL ? lp_slot_context(s) : NULL;
}

/* ---- stats, maintenance, shutdown, errors ------------------------------------------------- */

void luapool_stats_get(luapool *p, luapool_stats *out) {
  if (out == NULL)
    return;
  memset(out, 0, sizeof *out);
  if (p != NULL)
    lp_stats_fill(p, out);
}

int luapool_maintain(luapool *p) {
  if (p == NULL || refused_in_callback(&p->cfg, "luapool_maintain"))
    return LUAPOOL_EINVAL;
  if (lp_pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_watchdog_resume(p); /* a fork's child that calls nothing else */
  lp_watchdog_pass(p);
  return LUAPOOL_OK;
}

/*
** Refused inside a callback: it takes the pass mutex (a pass runs callbacks under it), and it
** runs on_create.
*/
int luapool_reload(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud,
                   uint64_t *generation) {
  if (p == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR, "luapool_reload: NULL pool (refused)");
    return LUAPOOL_EINVAL;
  }
  if (refused_in_callback(&p->cfg, "luapool_reload"))
    return LUAPOOL_EINVAL;
  if (lp_pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_watchdog_resume(p); /* a fork's child that calls nothing else */
  uint64_t number;
  int rc = lp_watchdog_reload(p, on_create, ud, &number);
  if (rc == LUAPOOL_OK && generation != NULL)
    *generation = number;
  return rc;
}

uint64_t luapool_generation(luapool *p) {
  return p != NULL ? lp_pool_generation(p) : 0;
}

/*
** Waits until no state is out: releases after the close wake the drain; a release that raced
** with the close and cached its state instead is seen by the next 10 ms poll.
*/
static int drain(luapool *p, long timeout_ms) {
  int rc = LUAPOOL_OK;
  struct timespec deadline;
  if (timeout_ms > 0)
    lp_time_deadline(&deadline, timeout_ms);
  lp_wait_lock(&p->wait);
  while (lp_mag_in_use(p) != 0) {
    if (timeout_ms == 0 || (timeout_ms > 0 && lp_time_passed(&deadline))) {
      rc = LUAPOOL_ETIMEDOUT;
      break;
    }
    struct timespec slice;
    lp_time_deadline(&slice, 10);
    if (timeout_ms > 0 && lp_time_before(&deadline, &slice))
      slice = deadline;
    lp_wait_sleep_drain(&p->wait, &slice);
  }
  lp_wait_unlock(&p->wait);
  return rc;
}

int luapool_shutdown(luapool *p, long drain_timeout_ms) {
  if (p == NULL || refused_in_callback(&p->cfg, "luapool_shutdown"))
    return LUAPOOL_EINVAL;
  lp_state_key_close(p); /* no magazine hit from here on */
  atomic_store_explicit(&p->closed, 1, memory_order_seq_cst);
  lp_wait_wake_all(&p->wait); /* sleeping acquires wake with LUAPOOL_ECLOSED */
  lp_watchdog_stop(p);
  int rc = drain(p, drain_timeout_ms);
  lp_watchdog_close_all(p);
  return rc;
}

const char *luapool_strerror(int err) {
  switch (err) {
  case LUAPOOL_OK:
    return "success";
  case LUAPOOL_ETIMEDOUT:
    return "timed out";
  case LUAPOOL_ECLOSED:
    return "pool is shut down";
  case LUAPOOL_ENOMEM:
    return "out of memory";
  case LUAPOOL_EINVAL:
    return "invalid argument";
  case LUAPOOL_EINIT:
    return "state initialization failed";
  case LUAPOOL_EAGAIN:
    return "no state now: the notifier's descriptor becomes readable when one may be";
  default:
    return "unknown luapool error";
  }
}
