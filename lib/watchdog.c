/*
** watchdog.c: the maintenance pass and the thread that runs it every watchdog_interval_ms.
**
** The pass runs under pool.maintain_mutex (one at a time) and touches only states nobody holds:
** those it pops from the close list or the global free list, or takes out of a magazine with an
** atomic exchange (under pool.local_mutex).  A state a caller holds is in none of those places.
** The order of a pass, and why, is in doc/design.md ("The watchdog").
*/
#include <malloc.h>
#include <time.h>

#include "internal.h"

/* A pass gives memory back to the system after its collections freed this much (or a close). */
#define LP_TRIM_BYTES ((size_t)1 << 20)

/* A private chain of slots the pass holds, linked through slot.spare (unused while IDLE). */
typedef struct chain {
  lp_slot *head;
  unsigned n;
} chain;

static void chain_push(chain *c, lp_slot *s) {
  s->spare = c->head;
  c->head = s;
  c->n++;
}

static lp_slot *chain_pop(chain *c) {
  lp_slot *s = c->head;
  if (s != NULL) {
    c->head = s->spare;
    s->spare = NULL;
    c->n--;
  }
  return s;
}

/*
** Pops every state off the global list.  The chain holds them bottom-most (least recently
** pushed) first, so pushing them back in chain order restores the list's order.
*/
static chain take_all_global(luapool *p) {
  chain c = {NULL, 0};
  lp_slot *s;
  while ((s = lp_freelist_pop_mpmc(&p->idle)) != NULL)
    chain_push(&c, s);
  return c;
}

/*
** Closes every state on the close list, each for the reason it was queued with, or for reason
** when that is nonzero (shutdown).
*/
static unsigned close_pending(luapool *p, int reason) {
  unsigned closed = 0;
  lp_slot *s = lp_freelist_pop_all_spmc(&p->closing);
  while (s != NULL) {
    lp_slot *next = s->entry.next != NULL ? LP_SLOT_OF_ENTRY(s->entry.next) : NULL;
    lp_state_close(p, s, reason != 0 ? reason : s->close_reason);
    closed++;
    s = next;
  }
  return closed;
}

/* Idle states now: live minus those held by callers (a snapshot while threads work). */
static unsigned idle_count(luapool *p) {
  uint64_t created = atomic_load_explicit(&p->created, memory_order_relaxed);
  uint64_t closed = atomic_load_explicit(&p->closed_count, memory_order_relaxed);
  unsigned live = (unsigned)(created - closed);
  unsigned in_use = lp_stats_in_use(p);
  return live > in_use ? live - in_use : 0;
}

/* Remember each thread's acquire count: a thread whose count is unchanged next time is quiet. */
static void mark_quiet_threads(luapool *p) {
  pthread_mutex_lock(&p->local_mutex);
  for (lp_local *l = p->locals; l != NULL; l = l->next)
    l->last_acquires = lp_counter_read(&l->counters.c[LP_C_ACQUIRES]);
  pthread_mutex_unlock(&p->local_mutex);
}

/*
** Lifetime and idle timeout over every state on the global list (quiet magazines were emptied
** into it just before).  The list is held only for the length of the scan: no collection here.
*/
static unsigned expire_idle(luapool *p, uint64_t now, unsigned *idle) {
  if (p->cfg.max_lifetime_ms == 0 && p->cfg.idle_timeout_ms == 0)
    return 0;
  unsigned closed = 0, kept = 0;
  chain all = take_all_global(p);
  lp_slot *s;
  while ((s = chain_pop(&all)) != NULL) { /* the oldest first: they go first */
    int reason = 0;
    if (s->expires_ms <= now)
      reason = LUAPOOL_CLOSE_LIFETIME;
    else if (p->cfg.idle_timeout_ms != 0 && now - s->last_used_ms >= p->cfg.idle_timeout_ms &&
             *idle > p->cfg.min_idle)
      reason = LUAPOOL_CLOSE_IDLE_TIMEOUT;
    if (reason != 0) {
      lp_state_close(p, s, reason);
      closed++;
      (*idle)--;
    } else {
      lp_freelist_push_mpmc(&p->idle, s); /* back at once, in the old order */
      kept++;
    }
  }
  if (kept != 0)
    lp_wake_after_push(p);
  return closed;
}

/* One idle state from the global list, else a quiet thread's magazine, else any magazine. */
static lp_slot *take_idle(luapool *p) {
  lp_slot *s = lp_freelist_pop_mpmc(&p->idle);
  if (s == NULL) {
    pthread_mutex_lock(&p->local_mutex);
    s = lp_mag_steal_locked(p, true);
    if (s == NULL)
      s = lp_mag_steal_locked(p, false);
    pthread_mutex_unlock(&p->local_mutex);
  }
  return s;
}

static unsigned trim(luapool *p, unsigned *idle) {
  unsigned closed = 0;
  while (*idle > p->cfg.max_idle) {
    lp_slot *s = take_idle(p);
    if (s == NULL)
      break;
    lp_state_close(p, s, LUAPOOL_CLOSE_TRIMMED);
    closed++;
    (*idle)--;
  }
  return closed;
}

/* What one background collection found. */
typedef struct collected {
  unsigned closed;   /* states closed: bloated or recycled */
  unsigned recycled; /* of those, the recycled: each gets a fresh state in its place */
  size_t freed;      /* bytes of Lua heap the collections freed */
} collected;

/*
** Background collection: a full collection for up to gc_per_pass states of the global list that
** were used since their last one.  After it, a state whose heap stays above bloat_kb is closed;
** one whose heap once grew recycle_kb above what it keeps now is closed too, to be replaced:
** its live objects lie spread over the pages its peak used, and keep them resident (malloc
** gives memory back by the whole page).  The list is held only while it is scanned: the clean
** states go back at once, and each collected state as soon as its collection ends.
*/
static collected collect(luapool *p, unsigned *idle) {
  collected c = {0, 0, 0};
  if (p->cfg.gc_per_pass == 0)
    return c;
  size_t recycle = (size_t)p->cfg.recycle_kb * 1024;
  unsigned clean = 0;
  chain all = take_all_global(p), dirty = {NULL, 0};
  lp_slot *s;
  while ((s = chain_pop(&all)) != NULL) {
    if (s->uses != s->gc_uses && dirty.n < p->cfg.gc_per_pass) {
      chain_push(&dirty, s);
    } else {
      lp_freelist_push_mpmc(&p->idle, s); /* back at once, in the old order */
      clean++;
    }
  }
  if (clean != 0)
    lp_wake_after_push(p);
  while ((s = chain_pop(&dirty)) != NULL) {
    lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
    lp_sx *x = s->x;
    size_t before = x->bytes;
    lua_gc(L, LUA_GCCOLLECT);
    atomic_fetch_add_explicit(&p->collections, 1, memory_order_relaxed);
    s->gc_uses = s->uses;
    c.freed += before > x->bytes ? before - x->bytes : 0;
    int reason = 0;
    if (p->cfg.bloat_kb != 0 && (unsigned)lua_gc(L, LUA_GCCOUNT) > p->cfg.bloat_kb)
      reason = LUAPOOL_CLOSE_BLOAT;
    else if (recycle != 0 && x->peak - x->bytes > recycle)
      reason = LUAPOOL_CLOSE_RECYCLED;
    if (reason != 0) {
      lp_state_close(p, s, reason);
      c.closed++;
      c.recycled += reason == LUAPOOL_CLOSE_RECYCLED;
      (*idle)--;
    } else {
      lp_freelist_push_mpmc(&p->idle, s);
      lp_wake_after_push(p);
    }
  }
  return c;
}

/* Creates idle states until there are target (min_idle, plus the recycled ones' places). */
static void prewarm(luapool *p, unsigned idle, unsigned target) {
  while (idle < target && !atomic_load_explicit(&p->closed, memory_order_acquire)) {
    lp_slot *s;
    if (!lp_live_reserve(p))
      break;
    if (lp_state_new(p, &s) != LUAPOOL_OK) {
      lp_live_unreserve(p);
      break;
    }
    atomic_store_explicit(&s->state, LP_SLOT_IDLE, memory_order_relaxed);
    lp_freelist_push_mpmc(&p->idle, s);
    idle++;
    lp_wake_after_push(p);
  }
}

static uint64_t elapsed_ns(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec -
         (uint64_t)t0->tv_nsec;
}

static void record_pass(luapool *p, uint64_t ns) {
  atomic_fetch_add_explicit(&p->passes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->pass_ns_total, ns, memory_order_relaxed);
  atomic_store_explicit(&p->pass_ns_last, ns, memory_order_relaxed);
  if (ns > atomic_load_explicit(&p->pass_ns_max, memory_order_relaxed))
    atomic_store_explicit(&p->pass_ns_max, ns, memory_order_relaxed); /* passes are serialized */
}

/*
** One pass, under maintain_mutex:
**  1. advance the coarse clock that releases stamp states with;
**  2. close what waits to be closed (discarded, tainted, expired on release);
**  3. move quiet threads' magazines to the global list;
**  4. close states past their lifetime or idle timeout (not below min_idle);
**  5. close idle states beyond max_idle, counting magazines;
**  6. collect garbage in up to gc_per_pass idle states, closing bloated and recycled ones;
**  7. note each thread's acquire count, to spot quiet threads next time;
**  8. create states up to min_idle, and one in the place of each recycled state;
**  9. give freed memory back to the system if states were closed or the collections freed
**     at least LP_TRIM_BYTES.
*/
static void maintain_locked(luapool *p) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t now = lp_clock_ms(p);
  atomic_store_explicit(&p->now_ms, now, memory_order_relaxed);

  unsigned closed = close_pending(p, 0);
  unsigned reclaimed = lp_mag_reclaim_quiet(p);
  atomic_fetch_add_explicit(&p->reclaimed, reclaimed, memory_order_relaxed);
  if (reclaimed != 0)
    lp_wake_after_push(p);
  unsigned idle = idle_count(p);
  closed += expire_idle(p, now, &idle);
  closed += trim(p, &idle);
  collected c = collect(p, &idle);
  closed += c.closed;
  mark_quiet_threads(p);
  unsigned target = idle + c.recycled; /* at most max_idle: trim ran before */
  prewarm(p, idle, target > p->cfg.min_idle ? target : p->cfg.min_idle);
#ifdef __GLIBC__
  if (closed != 0 || c.freed >= LP_TRIM_BYTES)
    malloc_trim(0); /* glibc keeps freed heap otherwise: a burst's memory would stay */
#endif
  record_pass(p, elapsed_ns(&t0));
}

void lp_maintain_pass(luapool *p) {
  pthread_mutex_lock(&p->maintain_mutex);
  maintain_locked(p);
  pthread_mutex_unlock(&p->maintain_mutex);
}

/* Shutdown and destroy: close every state nobody holds.  Under maintain_mutex. */
void lp_close_all_idle(luapool *p, int reason) {
  close_pending(p, reason);
  lp_slot *s;
  while ((s = take_idle(p)) != NULL)
    lp_state_close(p, s, reason);
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void *watchdog_main(void *arg) {
  luapool *p = arg;
  pthread_mutex_lock(&p->wd_mutex);
  while (!p->wd_stop) {
    if (!p->wd_kick) {
      struct timespec deadline;
      lp_deadline(&deadline, (long)p->cfg.watchdog_interval_ms);
      lp_timed_wait(&p->wd_cond, &p->wd_mutex, &deadline);
    }
    if (p->wd_stop)
      break;
    p->wd_kick = false;
    pthread_mutex_unlock(&p->wd_mutex);
    lp_maintain_pass(p);
    pthread_mutex_lock(&p->wd_mutex);
  }
  pthread_mutex_unlock(&p->wd_mutex);
  return NULL;
}

int lp_watchdog_start(luapool *p) {
  if (p->cfg.watchdog_interval_ms == 0)
    return LUAPOOL_OK;
  p->wd_stop = false;
  p->wd_kick = false;
  if (pthread_create(&p->wd_thread, NULL, watchdog_main, p) != 0)
    return LUAPOOL_ENOMEM;
  p->wd_running = true;
  return LUAPOOL_OK;
}

/* Stops and joins the thread; the caller that sets wd_stop first joins, later ones return. */
void lp_watchdog_stop(luapool *p) {
  pthread_mutex_lock(&p->wd_mutex);
  bool join = p->wd_running && !p->wd_stop;
  p->wd_stop = true;
  pthread_cond_signal(&p->wd_cond);
  pthread_mutex_unlock(&p->wd_mutex);
  if (join)
    pthread_join(p->wd_thread, NULL);
}

/* Asks for a pass now (a discard left a state to close).  Any thread. */
void lp_watchdog_kick(luapool *p) {
  pthread_mutex_lock(&p->wd_mutex);
  p->wd_kick = true;
  pthread_cond_signal(&p->wd_cond);
  pthread_mutex_unlock(&p->wd_mutex);
}
