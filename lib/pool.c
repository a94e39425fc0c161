/*
** pool.c: the public API.  acquire and release are the fast paths: a magazine hit touches only
** the calling thread's lp_local.  Everything rare (the global list, creating, stealing, waiting,
** closing) is out of line in *_slow functions or in the watchdog.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* ---- small helpers shared by the modules ---------------------------------------------- */

static void log_with(const luapool_config *cfg, int level, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (cfg != NULL && cfg->log != NULL)
    cfg->log(cfg->log_ud, level, msg);
  else
    fprintf(stderr, "luapool: %s\n", msg);
}

void lp_log(luapool *p, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_with(p != NULL ? &p->cfg : NULL, level, fmt, ap);
  va_end(ap);
}

static void cfg_log(const luapool_config *cfg, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void cfg_log(const luapool_config *cfg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_with(cfg, LUAPOOL_LOG_ERROR, fmt, ap);
  va_end(ap);
}

void lp_deadline(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static bool deadline_passed(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Waits on cond (a CLOCK_MONOTONIC condition) until deadline; ETIMEDOUT once it has passed. */
int lp_timed_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline) {
  int rc = pthread_cond_timedwait(cond, mutex, deadline);
  return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

static int cond_init_monotonic(pthread_cond_t *cond) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0)
    return -1;
  int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
  return rc;
}

/* Wakes one sleeping acquire: a state became idle, or room under max_states appeared. */
void lp_wake_waiter(luapool *p) {
  pthread_mutex_lock(&p->wait_mutex);
  pthread_cond_signal(&p->wait_cond);
  pthread_mutex_unlock(&p->wait_mutex);
}

/* A state came back after shutdown began: tell a draining luapool_shutdown. */
static void wake_drain(luapool *p) {
  pthread_mutex_lock(&p->wait_mutex);
  pthread_cond_broadcast(&p->drain_cond);
  pthread_mutex_unlock(&p->wait_mutex);
}

static bool pool_closed(luapool *p) {
  return atomic_load_explicit(&p->closed, memory_order_acquire) != 0;
}

/* ---- configuration ----------------------------------------------------------------------- */

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
}

static int config_check(const luapool_config *cfg) {
  if (cfg->version != LUAPOOL_CONFIG_VERSION) {
    cfg_log(cfg->version == 0 ? NULL : cfg,
            "luapool_create: config version %u is not %u: call luapool_config_init first",
            cfg->version, LUAPOOL_CONFIG_VERSION);
    return LUAPOOL_EINVAL;
  }
  const char *why = NULL;
  if (cfg->min_idle > cfg->max_idle)
    why = "min_idle is above max_idle";
  else if (cfg->max_states != 0 && cfg->min_idle > cfg->max_states)
    why = "min_idle is above max_states";
  else if (cfg->magazine_size > LP_MAGAZINE_MAX)
    why = "magazine_size is above 64";
  else if ((cfg->libs & ~(unsigned)(LUAPOOL_LIBS_ALL | LUAPOOL_LIB_OS_TIME |
                                     LUAPOOL_LIB_SANDBOX)) != 0)
    why = "libs has bits that are no LUAPOOL_LIB_*";
  else if ((cfg->libs & LUAPOOL_LIB_SANDBOX) &&
           (cfg->libs & (LUAPOOL_LIB_IO | LUAPOOL_LIB_OS | LUAPOOL_LIB_DEBUG |
                         LUAPOOL_LIB_PACKAGE)) != 0)
    why = "LUAPOOL_LIB_SANDBOX excludes io, os (but LUAPOOL_LIB_OS_TIME), debug and package";
  else if (cfg->chunk_cache > 4096)
    why = "chunk_cache is above 4096";
  else if (cfg->reset != LUAPOOL_RESET_FULL && cfg->reset != LUAPOOL_RESET_STACK)
    why = "reset is neither LUAPOOL_RESET_FULL nor LUAPOOL_RESET_STACK";
  if (why != NULL) {
    cfg_log(cfg, "luapool_create: invalid config: %s", why);
    return LUAPOOL_EINVAL;
  }
  return LUAPOOL_OK;
}

/* ---- create and destroy ------------------------------------------------------------------ */

static int pool_init_sync(luapool *p) {
  if (pthread_mutex_init(&p->wait_mutex, NULL) != 0 || cond_init_monotonic(&p->wait_cond) != 0 ||
      cond_init_monotonic(&p->drain_cond) != 0 || pthread_mutex_init(&p->local_mutex, NULL) != 0 ||
      pthread_mutex_init(&p->maintain_mutex, NULL) != 0 ||
      pthread_mutex_init(&p->wd_mutex, NULL) != 0 || cond_init_monotonic(&p->wd_cond) != 0)
    return LUAPOOL_ENOMEM; /* on Linux these initializers do not fail */
  return lp_slot_init(p);
}

int luapool_create(const luapool_config *cfg, luapool **out) {
  if (cfg == NULL || out == NULL)
    return LUAPOOL_EINVAL;
  int rc = config_check(cfg);
  if (rc != LUAPOOL_OK)
    return rc;
  size_t bytes = (sizeof(luapool) + LP_CACHELINE - 1) / LP_CACHELINE * LP_CACHELINE;
  luapool *p = aligned_alloc(LP_CACHELINE, bytes); /* the free list's cmpxchg16b needs 16 */
  if (p == NULL)
    return LUAPOOL_ENOMEM;
  memset(p, 0, bytes);
  p->cfg = *cfg;
  p->budget_on = cfg->budget_instructions != 0 || cfg->budget_ms != 0;
  lp_freelist_init(&p->idle);
  lp_freelist_init(&p->closing);
  atomic_init(&p->closed, 0);
  atomic_init(&p->waiters, 0);
  atomic_init(&p->live, 0);
  atomic_init(&p->created, 0);
  atomic_init(&p->closed_count, 0);
  atomic_init(&p->discarded, 0);
  atomic_init(&p->tainted, 0);
  for (int r = 0; r <= LUAPOOL_CLOSE_RECYCLED; r++)
    atomic_init(&p->closed_by[r], 0);
  atomic_init(&p->collections, 0);
  atomic_init(&p->reclaimed, 0);
  atomic_init(&p->passes, 0);
  atomic_init(&p->pass_ns_total, 0);
  atomic_init(&p->pass_ns_max, 0);
  atomic_init(&p->pass_ns_last, 0);
  atomic_init(&p->mem_errors, 0);
  atomic_init(&p->budget_exceeded, 0);
  atomic_init(&p->restored, 0);
  for (int c = 0; c < LP_C_COUNT; c++)
    atomic_init(&p->retired.c[c], 0);
  if (pool_init_sync(p) != LUAPOOL_OK) {
    free(p);
    return LUAPOOL_ENOMEM;
  }
  lp_local_register_pool(p);
  atomic_init(&p->now_ms, lp_clock_ms(p));

  /* min_idle states are ready when create returns */
  for (unsigned i = 0; i < cfg->min_idle && rc == LUAPOOL_OK; i++) {
    lp_slot *s;
    if (!lp_live_reserve(p))
      break;
    rc = lp_state_new(p, &s);
    if (rc != LUAPOOL_OK) {
      lp_live_unreserve(p);
      break;
    }
    atomic_store_explicit(&s->state, LP_SLOT_IDLE, memory_order_relaxed);
    lp_freelist_push_mpmc(&p->idle, s);
  }
  if (rc == LUAPOOL_OK)
    rc = lp_watchdog_start(p);
  if (rc != LUAPOOL_OK) {
    luapool_destroy(p);
    return rc;
  }
  *out = p;
  return LUAPOOL_OK;
}

void luapool_destroy(luapool *p) {
  if (p == NULL)
    return;
  if (!p->shut)
    luapool_shutdown(p, 0);
  /* From here no exiting thread reaches p's magazines, and every state is closed by scanning
     the slots: idle ones any racing release left behind, and those still checked out. */
  lp_local_forget_pool(p);
  unsigned out = 0;
  for (lp_chunk *c = atomic_load_explicit(&p->chunks, memory_order_acquire); c != NULL;
       c = c->next) {
    for (size_t i = 0; i < c->n; i++) {
      lp_slot *s = &c->slots[i];
      lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
      if (L == NULL)
        continue;
      if (atomic_load_explicit(&s->state, memory_order_relaxed) == LP_SLOT_OUT)
        out++;
      lp_state_close(p, s, LUAPOOL_CLOSE_SHUTDOWN);
    }
  }
  if (out != 0)
    lp_log(p, LUAPOOL_LOG_WARN, "luapool_destroy: closed %u state(s) still checked out", out);
  lp_slot_fini(p);
  pthread_mutex_destroy(&p->wait_mutex);
  pthread_cond_destroy(&p->wait_cond);
  pthread_cond_destroy(&p->drain_cond);
  pthread_mutex_destroy(&p->local_mutex);
  pthread_mutex_destroy(&p->maintain_mutex);
  pthread_mutex_destroy(&p->wd_mutex);
  pthread_cond_destroy(&p->wd_cond);
  free(p);
}

/* ---- acquire ------------------------------------------------------------------------------ */

static int acquired(luapool *p, lp_local *l, lp_slot *s, int source, lua_State **out) {
  atomic_store_explicit(&s->state, LP_SLOT_OUT, memory_order_relaxed);
  s->uses++;
  lp_local_count(p, l, source);
  lp_local_count(p, l, LP_C_ACQUIRES);
  lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
  if (p->budget_on)
    lp_budget_arm(L, s->x, p->cfg.budget_instructions, p->cfg.budget_ms);
  *out = L;
  return LUAPOOL_OK;
}

/*
** Past the magazine: the global list, then room for a new state (*reserved), then another
** thread's magazine.  *source says where a state came from.
*/
static lp_slot *take_slow(luapool *p, bool *reserved, int *source) {
  *source = LP_C_MISSES;
  lp_slot *s = lp_freelist_pop_mpmc(&p->idle);
  if (s != NULL) {
    *source = LP_C_GLOBAL_HITS;
    return s;
  }
  if (lp_live_reserve(p)) {
    *reserved = true;
    return NULL;
  }
  pthread_mutex_lock(&p->local_mutex);
  s = lp_mag_steal_locked(p, false);
  pthread_mutex_unlock(&p->local_mutex);
  return s;
}

/*
** Sleeps until take_slow succeeds, the pool closes, or the deadline (if any) passes.  Under
** wait_mutex, waiters is raised (seq_cst) before each look: whoever makes a state idle or frees
** room under max_states does so (seq_cst) before it loads waiters, so either this look sees
** the state or that thread sees the waiter and signals wait_cond, which needs wait_mutex,
** which this thread releases only inside pthread_cond_wait: no wakeup is lost.
*/
static lp_slot *wait_slow(luapool *p, lp_local *l, long timeout_ms, bool *reserved, int *rc) {
  struct timespec deadline;
  if (timeout_ms > 0)
    lp_deadline(&deadline, timeout_ms);
  lp_slot *s = NULL;
  int source;
  bool slept = false, timed_out = false;
  pthread_mutex_lock(&p->wait_mutex);
  atomic_fetch_add_explicit(&p->waiters, 1, memory_order_seq_cst);
  for (;;) {
    if (pool_closed(p)) {
      *rc = LUAPOOL_ECLOSED;
      break;
    }
    s = take_slow(p, reserved, &source);
    if (s != NULL || *reserved || timed_out) {
      *rc = s != NULL || *reserved ? LUAPOOL_OK : LUAPOOL_ETIMEDOUT;
      break;
    }
    slept = true;
    if (timeout_ms < 0)
      pthread_cond_wait(&p->wait_cond, &p->wait_mutex);
    else if (lp_timed_wait(&p->wait_cond, &p->wait_mutex, &deadline) == ETIMEDOUT ||
             deadline_passed(&deadline))
      timed_out = true; /* one more look, then give up */
  }
  atomic_fetch_sub_explicit(&p->waiters, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&p->wait_mutex);
  if (slept)
    lp_local_count(p, l, LP_C_WAITS);
  if (*rc == LUAPOOL_ETIMEDOUT)
    lp_local_count(p, l, LP_C_TIMEOUTS);
  return s;
}

static int acquire_slow(luapool *p, lp_local *l, long timeout_ms, lua_State **out) {
  bool reserved = false;
  int source, rc = LUAPOOL_OK;
  lp_slot *s = take_slow(p, &reserved, &source);
  if (s == NULL && !reserved) {
    if (timeout_ms == 0) {
      lp_local_count(p, l, LP_C_TIMEOUTS);
      return LUAPOOL_ETIMEDOUT;
    }
    s = wait_slow(p, l, timeout_ms, &reserved, &rc);
    if (rc != LUAPOOL_OK)
      return rc;
    source = LP_C_MISSES;
  }
  if (reserved) {
    rc = lp_state_new(p, &s);
    if (rc != LUAPOOL_OK) {
      lp_live_unreserve(p);
      return rc;
    }
    source = LP_C_MISSES;
  }
  return acquired(p, l, s, source, out);
}

int luapool_acquire(luapool *p, long timeout_ms, lua_State **out) {
  if (p == NULL || out == NULL)
    return LUAPOOL_EINVAL;
  if (pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_local *l = lp_local_get(p);
  lp_slot *s = l != NULL ? lp_mag_pop(l) : NULL;
  if (s != NULL)
    return acquired(p, l, s, LP_C_MAGAZINE_HITS, out);
  return acquire_slow(p, l, timeout_ms, out);
}

/* ---- release and discard ------------------------------------------------------------------ */

/* The slot of L if the call is well-formed and L is this pool's; otherwise logs and NULL. */
static lp_slot *checked_slot(luapool *p, lua_State *L, const char *fn) {
  if (p == NULL) {
    lp_log(NULL, LUAPOOL_LOG_ERROR, "%s: NULL pool (refused)", fn);
    return NULL;
  }
  if (L == NULL) {
    lp_log(p, LUAPOOL_LOG_ERROR, "%s: NULL lua_State (refused)", fn);
    return NULL;
  }
  lp_slot *s = lp_slot_check(p, L);
  if (s == NULL)
    lp_log(p, LUAPOOL_LOG_ERROR, "%s: lua_State %p is not a state of this pool (refused)", fn,
           (void *)L);
  return s;
}

/* Moves a checked-out slot from OUT to next; false (and a log line) if it was not out. */
static bool check_out_to(luapool *p, lp_slot *s, int next, const char *fn) {
  int expected = LP_SLOT_OUT;
  if (atomic_compare_exchange_strong_explicit(&s->state, &expected, next, memory_order_acq_rel,
                                              memory_order_relaxed))
    return true;
  lp_log(p, LUAPOOL_LOG_ERROR,
         "%s: lua_State %p is not checked out: released or discarded twice? (refused)", fn,
         (void *)atomic_load_explicit(&s->L, memory_order_relaxed));
  return false;
}

/*
** A state that will not be used again: closed by the watchdog (woken now), or here when the pool
** has no watchdog thread or is shut down.
*/
static void retire(luapool *p, lp_slot *s, int reason) {
  atomic_store_explicit(&s->state, LP_SLOT_CLOSING, memory_order_relaxed);
  if (p->wd_running && !pool_closed(p)) {
    s->close_reason = reason;
    lp_freelist_push_mpmc(&p->closing, s);
    lp_watchdog_kick(p);
  } else {
    lp_state_close(p, s, pool_closed(p) ? LUAPOOL_CLOSE_SHUTDOWN : reason);
  }
}

/* max_uses and max_lifetime_ms, checked as a state comes back: the reason to close it, or 0. */
static int expired_on_release(luapool *p, const lp_slot *s, uint64_t now) {
  if (p->cfg.max_uses != 0 && s->uses >= p->cfg.max_uses)
    return LUAPOOL_CLOSE_MAX_USES;
  if (s->expires_ms <= now)
    return LUAPOOL_CLOSE_LIFETIME;
  return 0;
}

/*
** The end of a request: its counts (memory errors, budget, chunk cache), the budget's hook
** removed, then the reset (an LP_RESET_* result).
*/
static int request_done(luapool *p, lp_local *l, lp_slot *s, lua_State *L) {
  lp_sx *x = s->x;
  if (x->mem_hit) {
    x->mem_hit = false;
    atomic_fetch_add_explicit(&p->mem_errors, 1, memory_order_relaxed);
  }
  if (x->budget_tripped)
    atomic_fetch_add_explicit(&p->budget_exceeded, 1, memory_order_relaxed);
  lp_budget_clear(L, x);
  if (x->cache_hits != 0) {
    lp_local_add(p, l, LP_C_CACHE_HITS, x->cache_hits);
    x->cache_hits = 0;
  }
  if (x->cache_misses != 0) {
    lp_local_add(p, l, LP_C_CACHE_MISSES, x->cache_misses);
    x->cache_misses = 0;
  }
  int r = lp_reset(p, s, L);
  if (r == LP_RESET_RESTORED)
    atomic_fetch_add_explicit(&p->restored, 1, memory_order_relaxed);
  return r;
}

void luapool_release(luapool *p, lua_State *L) {
  lp_slot *s = checked_slot(p, L, "luapool_release");
  if (s == NULL || !check_out_to(p, s, LP_SLOT_IDLE, "luapool_release"))
    return;
  lp_local *l = lp_local_get(p);
  bool waiters = false;
  uint64_t now = atomic_load_explicit(&p->now_ms, memory_order_relaxed);
  int expired = expired_on_release(p, s, now);
  s->last_used_ms = now;
  int reset = expired != 0 ? LP_RESET_CLEAN : request_done(p, l, s, L);
  if (expired != 0) {
    retire(p, s, expired);
  } else if (reset == LP_RESET_TAINTED) {
    lp_log(p, LUAPOOL_LOG_WARN, "luapool_release: reset cannot vouch for state %p: closed",
           (void *)L);
    atomic_fetch_add_explicit(&p->tainted, 1, memory_order_relaxed);
    retire(p, s, LUAPOOL_CLOSE_TAINTED);
  } else if (reset == LP_RESET_BLOAT) {
    retire(p, s, LUAPOOL_CLOSE_BLOAT);
  } else if (pool_closed(p)) {
    lp_state_close(p, s, LUAPOOL_CLOSE_SHUTDOWN);
  } else if (l != NULL && lp_mag_push(l, s)) {
    /* the push was a seq_cst exchange: a seq_cst load is enough (lp_mag_push) */
    waiters = atomic_load_explicit(&p->waiters, memory_order_seq_cst) != 0;
  } else {
    lp_freelist_push_mpmc(&p->idle, s);
    waiters = lp_waiters_after_push(p);
  }
  lp_local_count(p, l, LP_C_RELEASES);
  if (pool_closed(p))
    wake_drain(p);
  else if (waiters)
    lp_wake_waiter(p);
}

void luapool_discard(luapool *p, lua_State *L) {
  lp_slot *s = checked_slot(p, L, "luapool_discard");
  if (s == NULL || !check_out_to(p, s, LP_SLOT_CLOSING, "luapool_discard"))
    return;
  lp_local *l = lp_local_get(p);
  atomic_fetch_add_explicit(&p->discarded, 1, memory_order_relaxed);
  retire(p, s, LUAPOOL_CLOSE_DISCARDED);
  lp_local_count(p, l, LP_C_DISCARDS);
  if (pool_closed(p))
    wake_drain(p);
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
  if (p == NULL)
    return LUAPOOL_EINVAL;
  if (pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_maintain_pass(p);
  return LUAPOOL_OK;
}

int luapool_shutdown(luapool *p, long drain_timeout_ms) {
  if (p == NULL)
    return LUAPOOL_EINVAL;
  atomic_store_explicit(&p->closed, 1, memory_order_seq_cst);
  pthread_mutex_lock(&p->wait_mutex);
  pthread_cond_broadcast(&p->wait_cond); /* sleeping acquires wake with LUAPOOL_ECLOSED */
  pthread_mutex_unlock(&p->wait_mutex);
  lp_watchdog_stop(p);

  /* Drain: releases after the close wake drain_cond; a release that raced with the close and
     cached its state instead is seen by the next 10 ms poll. */
  int rc = LUAPOOL_OK;
  struct timespec deadline;
  if (drain_timeout_ms > 0)
    lp_deadline(&deadline, drain_timeout_ms);
  pthread_mutex_lock(&p->wait_mutex);
  while (lp_stats_in_use(p) != 0) {
    if (drain_timeout_ms == 0 || (drain_timeout_ms > 0 && deadline_passed(&deadline))) {
      rc = LUAPOOL_ETIMEDOUT;
      break;
    }
    struct timespec slice;
    lp_deadline(&slice, 10);
    if (drain_timeout_ms > 0 &&
        (slice.tv_sec > deadline.tv_sec ||
         (slice.tv_sec == deadline.tv_sec && slice.tv_nsec > deadline.tv_nsec)))
      slice = deadline;
    lp_timed_wait(&p->drain_cond, &p->wait_mutex, &slice);
  }
  pthread_mutex_unlock(&p->wait_mutex);

  pthread_mutex_lock(&p->maintain_mutex);
  lp_close_all_idle(p, LUAPOOL_CLOSE_SHUTDOWN);
  p->shut = true;
  pthread_mutex_unlock(&p->maintain_mutex);
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
  default:
    return "unknown luapool error";
  }
}
