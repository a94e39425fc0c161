/*
** watchdog.c: the maintenance pass and the thread that runs it every watchdog_interval_ms.
**
** The pass runs under pool.maintain_mutex (one at a time) and touches only states nobody holds:
** those it pops from the close list or the global free list, or takes out of a magazine with an
** atomic exchange (under pool.local_mutex).  A state a caller holds is in none of those places.
*/
#include "internal.h"

/* Closes every state on the close list (discarded, tainted).  Under maintain_mutex. */
static void close_pending(luapool *p) {
  lp_slot *s = lp_freelist_pop_all_spmc(&p->closing);
  while (s != NULL) {
    lp_slot *next = s->entry.next != NULL ? LP_SLOT_OF_ENTRY(s->entry.next) : NULL;
    lp_state_close(p, s);
    s = next;
  }
}

/* One idle state from the global list, else a quiet thread's magazine, else any magazine. */
static lp_slot *take_idle(luapool *p, bool any_magazine) {
  lp_slot *s = lp_freelist_pop_mpmc(&p->idle);
  if (s == NULL) {
    pthread_mutex_lock(&p->local_mutex);
    s = lp_mag_steal_locked(p, true);
    if (s == NULL && any_magazine)
      s = lp_mag_steal_locked(p, false);
    pthread_mutex_unlock(&p->local_mutex);
  }
  return s;
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
** One pass: close what waits to be closed; close idle states beyond max_idle, counting those in
** magazines (global list first, then quiet threads' magazines, then any); create states up to
** min_idle.  Under maintain_mutex.
*/
static void maintain_locked(luapool *p) {
  close_pending(p);

  unsigned idle = idle_count(p);
  while (idle > p->cfg.max_idle) {
    lp_slot *s = take_idle(p, true);
    if (s == NULL)
      break;
    lp_state_close(p, s);
    atomic_fetch_add_explicit(&p->trimmed, 1, memory_order_relaxed);
    idle--;
  }
  mark_quiet_threads(p);

  while (idle < p->cfg.min_idle && !atomic_load_explicit(&p->closed, memory_order_acquire)) {
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
    if (lp_waiters_after_push(p))
      lp_wake_waiter(p);
  }
}

void lp_maintain_pass(luapool *p) {
  pthread_mutex_lock(&p->maintain_mutex);
  maintain_locked(p);
  pthread_mutex_unlock(&p->maintain_mutex);
}

/* Shutdown and destroy: close every state nobody holds.  Under maintain_mutex. */
void lp_close_all_idle(luapool *p) {
  close_pending(p);
  lp_slot *s;
  while ((s = take_idle(p, true)) != NULL)
    lp_state_close(p, s);
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
