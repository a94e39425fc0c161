/*
** watchdog.c: the maintenance pass, the thread that runs it every watchdog_interval_ms, and the
** close list.
**
** The pass runs under the pass mutex (one at a time) and touches only states nobody holds: those
** it pops from the close list or the global free list, or takes out of a magazine with an atomic
** exchange.  A state a caller holds is in none of those places.  The order of a pass, and why,
** is in doc/design.md ("The watchdog").
*/
#include <malloc.h>

#include "fault.h"
#include "internal.h"
#include "magazine.h"
#include "state.h"
#include "sx.h"
#include "wait.h"

/* A pass gives memory back to the system after its collections freed this much (or a close). */
#define LP_TRIM_BYTES ((size_t)1 << 20)

int lp_watchdog_init(luapool *p) {
  lp_watchdog *wd = &p->wd;
  lp_closelist_init(&wd->closing);
  wd->kick = false;
  wd->joinable = false;
  atomic_init(&wd->resume, false);
  atomic_init(&wd->passes, 0);
  atomic_init(&wd->pass_ns_total, 0);
  atomic_init(&wd->pass_ns_max, 0);
  atomic_init(&wd->pass_ns_last, 0);
  atomic_init(&wd->collections, 0);
  atomic_init(&wd->reclaimed, 0);
  atomic_init(&wd->held_too_long, 0);
  if (pthread_mutex_init(&wd->pass_mutex, NULL) != 0 || pthread_mutex_init(&wd->mutex, NULL) != 0 ||
      lp_cond_init(&wd->cond) != 0)
    return LUAPOOL_ENOMEM; /* on Linux these initializers do not fail */
  return LUAPOOL_OK;
}

void lp_watchdog_fini(luapool *p) {
  pthread_mutex_destroy(&p->wd.pass_mutex);
  pthread_mutex_destroy(&p->wd.mutex);
  pthread_cond_destroy(&p->wd.cond);
}

/* ---- a pass's private chains ---------------------------------------------------------------- */

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

/* One idle state from the global list, else a quiet thread's magazine, else any magazine. */
static lp_slot *take_idle(luapool *p) {
  lp_slot *s = lp_freelist_pop_mpmc(&p->idle);
  return s != NULL ? s : lp_mag_steal(p, true, NULL, false);
}

/* Idle states now: live minus those held by callers (a snapshot while threads work). */
static unsigned idle_count(luapool *p) {
  unsigned live = lp_state_live(p), in_use = lp_mag_in_use(p);
  return live > in_use ? live - in_use : 0;
}

/* ---- the steps of a pass ------------------------------------------------------------------- */

/* Closes every state on the close list, each for the reason it was queued with. */
static unsigned close_pending(luapool *p) {
  unsigned closed = 0;
  lp_slot *s = lp_closelist_pop_all_mpsc(&p->wd.closing);
  while (s != NULL) {
    lp_slot *next = lp_closelist_next(s);
    lp_state_close(p, s, s->close_reason);
    closed++;
    s = next;
  }
  return closed;
}

/*
** Every push of the pass onto the global list (here, expire_idle, take_dirty, collect, prewarm)
** is followed by lp_wait_wake_after_push, a seq_cst read-modify-write of the waiter count: the
** shape that makes a waiter's look at the list see the push or the pass see the waiter (wait.h).
*/
static void reclaim_quiet(luapool *p) {
  unsigned moved = lp_mag_reclaim_quiet(p);
  atomic_fetch_add_explicit(&p->wd.reclaimed, moved, memory_order_relaxed);
  if (moved != 0)
    lp_wait_wake_after_push(&p->wait);
}

/*
** The states of older generations (luapool_reload) that nobody holds: every one on the global list
** and in any thread's magazine is closed; the others go (back) on the global list.  Only while
** lp_state_any_old says such states may exist: after a reload, until the last old state is
** closed (those checked out are closed at their release).  While one is checked out, each pass
** thus empties every magazine into the global list; acquires then find their states there.  The
** steals are bounded by the states that exist, so threads that keep releasing into their
** magazines cannot keep the pass here.
*/
static unsigned retire_old(luapool *p, unsigned *idle) {
  if (!lp_state_any_old(p))
    return 0;
  uint64_t gen = lp_pool_generation(p);
  unsigned closed = 0, kept = 0, bound = lp_state_live(p);
  chain all = take_all_global(p);
  lp_slot *s;
  for (unsigned i = 0; i < bound && (s = lp_mag_steal(p, false, NULL, false)) != NULL; i++)
    chain_push(&all, s);
  while ((s = chain_pop(&all)) != NULL) {
    if (lp_sx_stale(s->x, gen)) {
      lp_state_close(p, s, LUAPOOL_CLOSE_RELOADED);
      closed++;
      if (*idle > 0)
        (*idle)--;
    } else {
      lp_freelist_push_mpmc(&p->idle, s);
      kept++;
    }
  }
  if (kept != 0)
    lp_wait_wake_after_push(&p->wait);
  return closed;
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
    int reason = lp_upkeep_on_idle(&s->upkeep, &p->cfg, now, *idle > p->cfg.min_idle);
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
    lp_wait_wake_after_push(&p->wait);
  return closed;
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

/* What the background collection found. */
typedef struct collected {
  unsigned closed;   /* states closed: bloated or recycled */
  unsigned recycled; /* of those, the recycled: each gets a fresh state in its place */
  size_t freed;      /* bytes of Lua heap the collections freed */
} collected;

/* The states of the global list used since their last collection, at most gc_per_pass of them;
   the others go back at once, in the old order. */
static chain take_dirty(luapool *p) {
  unsigned clean = 0;
  chain all = take_all_global(p), dirty = {NULL, 0};
  lp_slot *s;
  while ((s = chain_pop(&all)) != NULL) {
    if (lp_upkeep_needs_gc(&s->upkeep) && dirty.n < p->cfg.gc_per_pass) {
      chain_push(&dirty, s);
    } else {
      lp_freelist_push_mpmc(&p->idle, s);
      clean++;
    }
  }
  if (clean != 0)
    lp_wait_wake_after_push(&p->wait);
  return dirty;
}

/*
** A full collection of one idle state the pass holds; the reason to close it after, or 0.  A heap
** that stays above bloat_kb closes it; so does one that once grew recycle_kb above what it keeps
** now, to be replaced: its live objects lie spread over the pages its peak used, and keep them
** resident (malloc gives memory back by the whole page).  The pass reads the allocator's figures
** only while it holds the state: the list's push (release) and pop (acquire) order them.
*/
static int collect_one(luapool *p, lp_slot *s, collected *c) {
  lua_State *L = atomic_load_explicit(&s->L, memory_order_relaxed);
  const lp_alloc *a = &s->x->alloc;
  size_t before = lp_alloc_bytes(a);
  lua_gc(L, LUA_GCCOLLECT);
  atomic_fetch_add_explicit(&p->wd.collections, 1, memory_order_relaxed);
  lp_upkeep_collected(&s->upkeep);
  size_t after = lp_alloc_bytes(a);
  c->freed += before > after ? before - after : 0;
  if (p->cfg.bloat_kb != 0 && lp_alloc_above_kb(a, p->cfg.bloat_kb))
    return LUAPOOL_CLOSE_BLOAT;
  if (p->cfg.recycle_kb != 0 && lp_alloc_peak_excess(a) > (size_t)p->cfg.recycle_kb * 1024)
    return LUAPOOL_CLOSE_RECYCLED;
  return 0;
}

/*
** Background collection: up to gc_per_pass idle states of the global list that were used since
** their last collection.  The list is held only while it is scanned: each collected state goes
** back as soon as its collection ends.
*/
static collected collect(luapool *p, unsigned *idle) {
  collected c = {0, 0, 0};
  if (p->cfg.gc_per_pass == 0)
    return c;
  chain dirty = take_dirty(p);
  lp_slot *s;
  while ((s = chain_pop(&dirty)) != NULL) {
    int reason = collect_one(p, s, &c);
    if (reason != 0) {
      lp_state_close(p, s, reason);
      c.closed++;
      c.recycled += reason == LUAPOOL_CLOSE_RECYCLED;
      (*idle)--;
    } else {
      lp_freelist_push_mpmc(&p->idle, s);
      lp_wait_wake_after_push(&p->wait);
    }
  }
  return c;
}

int lp_watchdog_prewarm(luapool *p, unsigned idle, unsigned target) {
  int rc = LUAPOOL_OK;
  for (; idle < target && !lp_pool_closed(p) && lp_state_reserve(p); idle++) {
    lp_slot *s;
    rc = lp_state_new(p, &s);
    if (rc != LUAPOOL_OK) {
      lp_state_unreserve(p);
      break;
    }
    lp_slot_move(s, LP_SLOT_EMPTY, LP_SLOT_IDLE);
    /* metrics: the new state's heap, for the stats' heap_bytes (slot.h) */
    lp_slot_heap_note(&p->arena, s, lp_alloc_bytes(&s->x->alloc), lp_alloc_peak(&s->x->alloc));
    lp_freelist_push_mpmc(&p->idle, s);
    lp_wait_wake_after_push(&p->wait);
  }
  return rc;
}

/* ---- held too long -------------------------------------------------------------------------- */

typedef struct held_scan {
  luapool *p;
  uint64_t now; /* the pass's clock */
} held_scan;

/*
** One slot of the held-too-long scan.  The slot belongs to whoever holds it: only its host part
** is read, with lp_slot_held_read's seqlock reads, and only reported (the pass's own field) is
** written; passes are serialized by the pass mutex.  The acquire time is the coarse clock the
** acquire read, at most one pass old: so the time is rounded up by at most the time between
** two passes, as idle_timeout_ms is.
*/
static void held_check(lp_slot *s, void *ud) {
  held_scan *h = ud;
  lp_slot_held_view v;
  if (!lp_slot_held_read(s, &v) || v.seq == s->host.reported)
    return;
  uint64_t held = h->now > v.since_ms ? h->now - v.since_ms : 0;
  if (held < h->p->cfg.held_warn_ms)
    return;
  s->host.reported = v.seq; /* once per acquire */
  atomic_fetch_add_explicit(&h->p->wd.held_too_long, 1, memory_order_relaxed); /* a figure */
  lp_log(&h->p->cfg, LUAPOOL_LOG_WARN, "state %p held for %llu ms by thread %ld (context %p)",
         (void *)v.L, (unsigned long long)held, v.tid, v.context);
}

/*
** Reports each state held held_warn_ms or longer, once per acquire: a leak (a request that
** forgot to release) or a request stuck in the host.  The states stay their holders': the scan
** reads, never takes.
*/
static void report_held(luapool *p, uint64_t now) {
  if (p->cfg.held_warn_ms == 0)
    return;
  held_scan h = {p, now};
  lp_slot_each_concurrent(&p->arena, held_check, &h);
}

static void record_pass(luapool *p, uint64_t ns) {
  lp_watchdog *wd = &p->wd;
  atomic_fetch_add_explicit(&wd->passes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&wd->pass_ns_total, ns, memory_order_relaxed);
  atomic_store_explicit(&wd->pass_ns_last, ns, memory_order_relaxed);
  if (ns > atomic_load_explicit(&wd->pass_ns_max, memory_order_relaxed))
    atomic_store_explicit(&wd->pass_ns_max, ns, memory_order_relaxed); /* passes are serialized */
}

/*
** One pass, under the pass mutex:
**  1. advance the coarse clock that releases stamp states with;
**     then report the states held past held_warn_ms (read only; they are their holders');
**  2. close what waits to be closed (discarded, tainted, expired on release);
**  3. move quiet threads' magazines to the global list;
**  3a. close idle states of older generations (luapool_reload), in every magazine too;
**  4. close states past their lifetime or idle timeout (not below min_idle);
**  5. close idle states beyond max_idle, counting magazines;
**  6. collect garbage in up to gc_per_pass idle states, closing bloated and recycled ones;
**  7. note each thread's acquire count, to spot quiet threads next time;
**  8. create states up to min_idle, and one in the place of each recycled state;
**  9. give freed memory back to the system if states were closed or the collections freed
**     at least LP_TRIM_BYTES.
*/
static void pass_locked(luapool *p) {
  uint64_t t0 = lp_time_ns();
  uint64_t now = lp_time_upkeep_ms(&p->cfg);
  lp_upkeep_tick(&p->clock, now);
  report_held(p, now);

  unsigned closed = close_pending(p);
  reclaim_quiet(p);
  unsigned idle = idle_count(p);
  closed += retire_old(p, &idle);
  closed += expire_idle(p, now, &idle);
  closed += trim(p, &idle);
  collected c = collect(p, &idle);
  closed += c.closed;
  lp_mag_mark_quiet(p);
  unsigned target = idle + c.recycled; /* at most max_idle: trim ran before */
  (void)lp_watchdog_prewarm(p, idle, target > p->cfg.min_idle ? target : p->cfg.min_idle);
#ifdef __GLIBC__
  if (closed != 0 || c.freed >= LP_TRIM_BYTES)
    malloc_trim(0); /* glibc keeps freed heap otherwise: a burst's memory would stay */
#endif
  record_pass(p, lp_time_ns() - t0);
}

void lp_watchdog_pass(luapool *p) {
  pthread_mutex_lock(&p->wd.pass_mutex);
  pass_locked(p);
  pthread_mutex_unlock(&p->wd.pass_mutex);
}

/*
** No malloc_trim here, unlike a pass: it is process-wide (it locks each arena in turn, and every
** thread that allocates from one waits), and took as long as closing the states (10,000 states:
** 26-130 ms to give back 338 MB).  Whether the memory goes back to the system is the host's
** call: luapool_shutdown(3) says so.
*/
void lp_watchdog_close_all(luapool *p) {
  pthread_mutex_lock(&p->wd.pass_mutex);
  close_pending(p);
  lp_slot *s;
  while ((s = take_idle(p)) != NULL)
    lp_state_close(p, s, LUAPOOL_CLOSE_SHUTDOWN);
  pthread_mutex_unlock(&p->wd.pass_mutex);
}

/* ---- the close list and the thread ---------------------------------------------------------- */

/* Asks the thread for a pass now.  Any thread. */
static void kick(luapool *p) {
  pthread_mutex_lock(&p->wd.mutex);
  p->wd.kick = true;
  pthread_cond_signal(&p->wd.cond);
  pthread_mutex_unlock(&p->wd.mutex);
}

/* ---- reload ---------------------------------------------------------------------------------- */

/*
** Room under max_states for the new generation's first state: a reservation, else one freed by
** closing what waits on the close list, else by closing an idle state (every state is older than
** the coming generation), whose reservation passes to the reload.  False when every state is
** checked out.
*/
static bool reload_room(luapool *p) {
  if (lp_state_reserve(p))
    return true;
  if (close_pending(p) != 0 && lp_state_reserve(p))
    return true;
  lp_slot *s = take_idle(p);
  if (s == NULL)
    return false;
  lp_state_close_keep(p, s, LUAPOOL_CLOSE_RELOADED);
  return true;
}

/*
** Under the pass mutex, which serializes reloads (each gets its own number) and keeps them out of
** a pass.  The new generation makes one state before it is published: a failing on_create leaves
** the current generation serving.  The state goes on the global list, ready.
*/
static int reload_locked(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud,
                         uint64_t *number) {
  if (lp_pool_closed(p))
    return LUAPOOL_ECLOSED;
  lp_gen *g = lp_state_gen_next(p, on_create, ud);
  if (g == NULL) {
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR, "luapool_reload: out of memory");
    return LUAPOOL_ENOMEM;
  }
  if (!reload_room(p)) {
    lp_state_gen_drop(g);
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR,
           "luapool_reload: max_states states are all checked out: no room to try the new "
           "generation (nothing changed)");
    return LUAPOOL_ETIMEDOUT;
  }
  lp_slot *s;
  int rc = lp_state_new_of(p, g, &s);
  if (rc != LUAPOOL_OK) {
    uint64_t serving = g->older->number;
    lp_state_unreserve(p);
    lp_state_gen_drop(g);
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR,
           "luapool_reload: the new generation cannot create a state: generation %llu keeps "
           "serving",
           (unsigned long long)serving);
    return rc;
  }
  lp_slot_move(s, LP_SLOT_EMPTY, LP_SLOT_IDLE);
  if (lp_pool_closed(p)) { /* a shutdown began: its close_all waits for the pass mutex */
    lp_state_close(p, s, LUAPOOL_CLOSE_SHUTDOWN);
    lp_state_gen_drop(g);
    return LUAPOOL_ECLOSED;
  }
  lp_state_gen_publish(p, g);
  lp_freelist_push_mpmc(&p->idle, s);
  lp_wait_wake_after_push(&p->wait);
  *number = g->number;
  return LUAPOOL_OK;
}

int lp_watchdog_reload(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud,
                       uint64_t *number) {
  pthread_mutex_lock(&p->wd.pass_mutex);
  int rc = reload_locked(p, on_create, ud, number);
  pthread_mutex_unlock(&p->wd.pass_mutex);
  if (rc == LUAPOOL_OK && p->cfg.watchdog_interval_ms != 0)
    kick(p); /* a pass now closes the old idle states and prewarms new ones */
  return rc;
}

/*
** A state on the close list after the pool closed is still closed: luapool_shutdown's drain
** waits for its discard or release to be counted, which comes after the push, then empties the
** list; past the drain's timeout, luapool_destroy closes whatever is left in any slot.
*/
void lp_watchdog_close_later(luapool *p, lp_slot *s, int reason) {
  lp_assert(lp_slot_state(s) == LP_SLOT_CLOSING);
  if (p->cfg.watchdog_interval_ms != 0 && !lp_pool_closed(p)) {
    s->close_reason = reason;
    lp_closelist_push_mpsc(&p->wd.closing, s);
    kick(p);
  } else {
    lp_state_close(p, s, reason);
  }
}

/*
** The thread sleeps under wd.mutex until the interval passes or a kick; it ends once the pool is
** closed.  luapool_shutdown sets closed (seq_cst) before lp_watchdog_stop takes wd.mutex to
** signal, so the thread either sees closed before it sleeps or is asleep and gets the signal.
*/
static void *watchdog_main(void *arg) {
  luapool *p = arg;
  lp_watchdog *wd = &p->wd;
  pthread_mutex_lock(&wd->mutex);
  while (!lp_pool_closed(p)) {
    if (!wd->kick) {
      struct timespec deadline;
      lp_time_deadline(&deadline, (long)p->cfg.watchdog_interval_ms);
      lp_cond_wait(&wd->cond, &wd->mutex, &deadline);
    }
    if (lp_pool_closed(p))
      break;
    wd->kick = false;
    pthread_mutex_unlock(&wd->mutex);
    lp_watchdog_pass(p);
    pthread_mutex_lock(&wd->mutex);
  }
  pthread_mutex_unlock(&wd->mutex);
  return NULL;
}

/* Under wd.mutex: the thread's handle and joinable are read by the fork handlers and stop. */
static int start_locked(luapool *p) {
  if (lp_pthread_create(&p->wd.thread, NULL, watchdog_main, p) != 0)
    return LUAPOOL_ENOMEM;
  p->wd.joinable = true;
  return LUAPOOL_OK;
}

int lp_watchdog_start(luapool *p) {
  if (p->cfg.watchdog_interval_ms == 0)
    return LUAPOOL_OK;
  pthread_mutex_lock(&p->wd.mutex);
  int rc = start_locked(p);
  pthread_mutex_unlock(&p->wd.mutex);
  return rc;
}

void lp_watchdog_stop(luapool *p) {
  lp_assert(lp_pool_closed(p));
  pthread_mutex_lock(&p->wd.mutex);
  bool join = p->wd.joinable;
  p->wd.joinable = false;
  pthread_cond_signal(&p->wd.cond);
  pthread_mutex_unlock(&p->wd.mutex);
  if (join)
    pthread_join(p->wd.thread, NULL);
}

void lp_watchdog_stats(luapool *p, luapool_stats *out) {
  lp_watchdog *wd = &p->wd;
  out->collections = atomic_load_explicit(&wd->collections, memory_order_relaxed);
  out->reclaimed = atomic_load_explicit(&wd->reclaimed, memory_order_relaxed);
  out->held_too_long = atomic_load_explicit(&wd->held_too_long, memory_order_relaxed);
  out->passes = atomic_load_explicit(&wd->passes, memory_order_relaxed);
  out->pass_ns_total = atomic_load_explicit(&wd->pass_ns_total, memory_order_relaxed);
  out->pass_ns_max = atomic_load_explicit(&wd->pass_ns_max, memory_order_relaxed);
  out->pass_ns_last = atomic_load_explicit(&wd->pass_ns_last, memory_order_relaxed);
}

/* ---- fork ------------------------------------------------------------------------------------ */

void lp_watchdog_fork_prepare_pass(luapool *p) {
  pthread_mutex_lock(&p->wd.pass_mutex);
}

void lp_watchdog_fork_prepare(luapool *p) {
  pthread_mutex_lock(&p->wd.mutex);
}

void lp_watchdog_fork_parent(luapool *p) {
  pthread_mutex_unlock(&p->wd.mutex);
  pthread_mutex_unlock(&p->wd.pass_mutex);
}

void lp_watchdog_fork_child(luapool *p) {
  lp_watchdog *wd = &p->wd;
  lp_cond_init_after_fork(&wd->cond); /* the parent's thread slept on it */
  if (wd->joinable) {
#ifdef LP_TSAN
    /*
    ** ThreadSanitizer (gcc 12's) keeps the threads that did not survive the fork in its
    ** registry, under their pthread_t.  glibc gives the child's next thread the dead thread's
    ** stack, and with it the same pthread_t, and TSan then dies at that thread's join ("dup
    ** thread with used id").  Detaching the dead handle makes TSan drop it.  glibc keeps the
    ** dead thread's descriptor in its stack cache, so the call touches only that; plain builds
    ** skip it all the same: the thread is not in this process.
    */
    pthread_detach(wd->thread);
#endif
    wd->joinable = false;
    atomic_store_explicit(&wd->resume, !lp_pool_closed(p), memory_order_relaxed);
  }
  pthread_mutex_unlock(&wd->mutex);
  pthread_mutex_unlock(&wd->pass_mutex);
}

void lp_watchdog_each_closing_alone(luapool *p, void (*fn)(lp_slot *s, void *ud), void *ud) {
  lp_closelist_each_alone(&p->wd.closing, fn, ud);
}

/*
** Not in the fork's child handler itself: a thread created there is unsafe under some runtimes
** (ThreadSanitizer's fork handling is still in progress then).  resume is set once, in the child
** before any other thread exists, so a relaxed load that reads false is the common, final case;
** the one that reads true takes wd.mutex, where start and stop agree.  luapool_shutdown sets
** closed before it takes wd.mutex, so no thread starts after a shutdown began.
*/
void lp_watchdog_resume(luapool *p) {
  lp_watchdog *wd = &p->wd;
  if (!atomic_load_explicit(&wd->resume, memory_order_relaxed))
    return;
  int rc = LUAPOOL_OK;
  pthread_mutex_lock(&wd->mutex);
  if (atomic_load_explicit(&wd->resume, memory_order_relaxed) && !lp_pool_closed(p))
    rc = start_locked(p);
  atomic_store_explicit(&wd->resume, false, memory_order_relaxed);
  pthread_mutex_unlock(&wd->mutex);
  if (rc != LUAPOOL_OK) /* logged after the unlock: no callback runs under wd.mutex */
    lp_log(&p->cfg, LUAPOOL_LOG_ERROR,
           "cannot start the watchdog thread after fork: call luapool_maintain");
}
