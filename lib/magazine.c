/*
** magazine.c: per-thread magazines and counters (lp_local), found through thread-local storage.
**
** The fast path (magazine_inline.h: lp_mag_local_hit, lp_mag_pop, lp_mag_push,
** lp_mag_count) touches only the calling thread's lp_local: no lock, no write to a shared line.
** The magazine is an array of atomic slot pointers.  Only the owner thread fills entries; the
** owner and, under the pool's magazine mutex, stealers (waiting acquires, the maintenance pass,
** shutdown) empty them, so each idle state is taken exactly once.  Because stealers only ever
** empty entries, the owner knows that every entry at index >= top is empty without looking.
**
** The asymmetric handshake.  A stealer empties an entry with an atomic exchange.  The owner's
** fast path, which runs millions of times for each steal, uses plain loads and stores (no
** locked instruction: they were half the time of a magazine hit) inside a window it opens by
** storing busy = 1 and then reading stealing; a stealer, under the mutex, stores stealing = 1 on
** every magazine it will look at, runs membarrier(2) (MEMBARRIER_CMD_PRIVATE_EXPEDITED: every
** thread of the process that is running executes a full memory barrier before the call returns;
** one that is not running passes one when it is scheduled again), waits for busy = 0 on each
** magazine, and takes; the owner lowers stealing again after a while (lp_mag_calm), so that a
** magazine stolen from often costs one barrier per many steals.  The barrier stands for the one
** the owner leaves out between its store of busy and its load of stealing: either the owner's
** store of busy came before the barrier in its thread (the stealer then reads it, or the release
** store of busy = 0 that closes that window, whose entries' writes it then sees), or its load of
** stealing came after it (it reads 1, and takes the read-modify-write path).  So no window is
** open while a stealer takes, and the owner's plain pop and the stealer's exchange never meet on
** one entry.  The same barrier is the waiter's half of the wake-up pattern (lp_mag_push).
** In C11 terms the pair is an asymmetric fence (C++ P1202: a light fence, here
** atomic_signal_fence, paired with a heavy one, membarrier): together they order as two seq_cst
** fences would.  Where the
** process cannot register for membarrier (an old kernel, a seccomp filter), stealing stays 1
** on every magazine and the owner uses the read-modify-writes, as before the handshake.
** doc/design.md ("The asymmetric handshake") has the argument at length.
**
** Each thread keeps a small table of (pool, serial, lp_local) for the pools it uses.  A
** pthread key's destructor gives an exiting thread's magazines back to their pools; the process's
** list of live pools (under pools_lock) tells it which pools still exist, so a pool destroyed
** first is never touched.
*/
#include <linux/membarrier.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"
#include "magazine_inline.h"
#include "wait.h"

_Thread_local lp_tls *lp_mag_tls __attribute__((tls_model("initial-exec")));

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static luapool *pools;        /* live pools, under pools_lock */
static uint64_t pools_serial; /* under pools_lock */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_rc;

/* ---- the asymmetric handshake ------------------------------------------------------------ */

/* Whether this process uses membarrier(2): 0 not asked yet, 1 registered, -1 not available.
   Relaxed: every thread that finds 0 registers for itself (idempotent) and stores the same. */
static _Atomic int asym;

static long membarrier_call(int cmd) {
  return syscall(__NR_membarrier, cmd, 0, 0);
}

/* LUAPOOL_MEMBARRIER=off in the environment: never (luapool(3), "Environment"). */
static bool asym_register(void) {
  const char *env = getenv("LUAPOOL_MEMBARRIER");
  if (env != NULL && strcmp(env, "off") == 0)
    return false;
  long q = membarrier_call(MEMBARRIER_CMD_QUERY);
  return q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
         membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

static bool asym_on(void) {
  int a = atomic_load_explicit(&asym, memory_order_relaxed);
  if (a == 0) {
    a = asym_register() ? 1 : -1;
    atomic_store_explicit(&asym, a, memory_order_relaxed);
  }
  return a > 0;
}

/*
** The heavy half.  A registered process's call does not fail; should it (the registration lost:
** registered again, then the global command, slower but needing none), no stealer could know the
** owners' windows closed: the process stops rather than hand one state to two callers.
*/
static void heavy_fence(void) {
  if (membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
  if (membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
  if (membarrier_call(MEMBARRIER_CMD_GLOBAL) == 0)
    return;
  (void)fprintf(stderr, "luapool: membarrier(2) failed after the process registered for it: "
                        "no magazine can be stolen from safely; aborting\n");
  abort();
}

/*
** Under the mutex: the stealer's side, before it looks at any of p's magazines.  The flag is
** sticky: a magazine whose stealing is already 1 has had it since a stealer's barrier (only its
** owner lowers it, under the mutex, lp_mag_calm), so no window of its owner is open or can open,
** and it publishes with exchanges: only a magazine found at 0 needs the barrier.
*/
static void steal_begin(luapool *p) {
  if (atomic_load_explicit(&asym, memory_order_relaxed) <= 0)
    return; /* no membarrier: stealing stays 1 on every magazine */
  bool fence = false;
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next) {
    if (l->size != 0 && atomic_load_explicit(&l->stealing, memory_order_relaxed) == 0) {
      atomic_store_explicit(&l->stealing, 1, memory_order_relaxed);
      fence = true;
    }
  }
  if (fence)
    heavy_fence();
}

/* Under the mutex, after steal_begin: l's owner is out of its window, and stays out.  A window
   is a few instructions; an owner preempted inside one is waited for. */
static void steal_wait(lp_local *l) {
  while (atomic_load_explicit(&l->busy, memory_order_acquire) != 0)
    sched_yield();
}

/* Whether some magazine other than self may publish with a plain store (its stealing is 0). */
static bool any_plain(luapool *p, const lp_local *self) {
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next)
    if (l != self && l->size != 0 && atomic_load_explicit(&l->stealing, memory_order_relaxed) == 0)
      return true;
  return false;
}

/*
** The owner, on its read-modify-write path (its stealing was 1): after LP_MAG_CALM_OPS of them
** (magazine_inline.h counts) it lowers its flag again, under the mutex so that no stealer is
** between its steal_begin and its takes, and goes back to its windows; the next stealer then
** pays a barrier again.  So a
** barrier is paid at most once per LP_MAG_CALM_OPS operations of an owner that stealers keep
** visiting (one state handed between two threads: a steal every acquire), and owners nobody
** steals from run alone.
*/
void lp_mag_calm(lp_local *l) {
  l->shared_ops = 0;
  if (atomic_load_explicit(&asym, memory_order_relaxed) <= 0 || pthread_mutex_trylock(l->mutex))
    return; /* no membarrier (the flag stays 1), or a stealer is at work: later */
  atomic_store_explicit(&l->stealing, 0, memory_order_relaxed);
  pthread_mutex_unlock(l->mutex); /* the next stealer's lock reads it */
}

/* ------------------------------------------------------------------------------------------- */

static bool pool_is_live_locked(const luapool *p, uint64_t serial) {
  for (luapool *it = pools; it != NULL; it = it->next_pool)
    if (it == p && it->serial == serial)
      return true;
  return false;
}

/* Flushes a magazine into the global list, folds the counters into the pool's, frees l. */
static void local_retire(luapool *p, lp_local *l) {
  pthread_mutex_lock(&p->mags.mutex);
  bool gave = false;
  for (unsigned i = 0; i < l->size; i++) {
    lp_slot *s = atomic_exchange_explicit(&l->mag[i], NULL, memory_order_acq_rel);
    if (s != NULL) {
      lp_freelist_push_mpmc(&p->idle, s);
      gave = true;
    }
  }
  for (int c = 0; c < LP_C_COUNT; c++)
    lp_counters_add_shared(&p->mags.retired, c, lp_counters_read(&l->counters, c));
  if (l->prev != NULL)
    l->prev->next = l->next;
  else
    p->mags.locals = l->next;
  if (l->next != NULL)
    l->next->prev = l->prev;
  pthread_mutex_unlock(&p->mags.mutex);
  lp_free(l);
  if (gave)
    lp_wait_wake_after_push(&p->wait);
}

/* The thread is exiting: give every magazine of a still-live pool back to it. */
static void tls_destructor(void *arg) {
  lp_tls *t = arg;
  pthread_mutex_lock(&pools_lock);
  for (int i = 0; i < LP_TLS_POOLS; i++) {
    lp_tls_entry *e = &t->e[i];
    if (e->local != NULL && pool_is_live_locked(e->pool, e->serial))
      local_retire(e->pool, e->local); /* the pool cannot be destroyed while we hold the lock */
    memset(e, 0, sizeof *e);
  }
  pthread_mutex_unlock(&pools_lock);
  lp_mag_tls = NULL;
  lp_free(t);
}

static void tls_key_create(void) {
  tls_key_rc = pthread_key_create(&tls_key, tls_destructor);
}

/* The calling thread's table, made on its first use of any pool; NULL if out of memory. */
static lp_tls *tls_self(void) {
  if (lp_mag_tls != NULL)
    return lp_mag_tls;
  pthread_once(&tls_once, tls_key_create);
  if (tls_key_rc != 0)
    return NULL;
  lp_tls *t = lp_calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  if (pthread_setspecific(tls_key, t) != 0) { /* arms the exit destructor */
    lp_free(t);
    return NULL;
  }
  lp_mag_tls = t;
  return t;
}

static lp_local *local_new(luapool *p) {
  size_t bytes = sizeof(lp_local) + p->cfg.magazine_size * sizeof(_Atomic(lp_slot *));
  bytes = (bytes + LP_CACHELINE - 1) / LP_CACHELINE * LP_CACHELINE; /* no false sharing */
  lp_local *l = lp_aligned_alloc(LP_CACHELINE, bytes);
  if (l == NULL)
    return NULL;
  memset(l, 0, bytes);
  lp_counters_init(&l->counters);
  atomic_init(&l->busy, 0);
  atomic_init(&l->stealing, asym_on() ? 0 : 1); /* 1 for good: no handshake, read-modify-writes */
  l->mutex = &p->mags.mutex;
  l->size = p->cfg.magazine_size;
  for (unsigned i = 0; i < l->size; i++)
    atomic_init(&l->mag[i], NULL);
  pthread_mutex_lock(&p->mags.mutex);
  l->prev = NULL;
  l->next = p->mags.locals;
  if (p->mags.locals != NULL)
    p->mags.locals->prev = l;
  p->mags.locals = l;
  pthread_mutex_unlock(&p->mags.mutex);
  return l;
}

/* Moves entry i to the front, where lp_mag_local_hit looks. */
static lp_local *tls_front(lp_tls *t, int i) {
  lp_tls_entry e = t->e[i];
  memmove(&t->e[1], &t->e[0], (size_t)i * sizeof e);
  t->e[0] = e;
  return e.local;
}

/*
** Past the first probe: p further down the table, or p's first use by this thread.  Entries of
** destroyed pools are recycled (their lp_local was freed by luapool_destroy).  Inside a callback
** a thread gets no new magazine (it uses the pool's shared counters and the global list): that
** would take pools_lock, which is never taken under a pass mutex, the lock a callback's caller
** may hold (the fork handlers' order, doc/design.md).
*/
lp_local *lp_mag_local_get_slow(luapool *p) {
  lp_tls *t = tls_self();
  if (t == NULL)
    return NULL;
  for (int i = 1; i < LP_TLS_POOLS; i++)
    if (t->e[i].pool == p && t->e[i].serial == p->serial)
      return tls_front(t, i);
  if (lp_cb_inside() != NULL)
    return NULL;
  int free_entry = -1;
  pthread_mutex_lock(&pools_lock);
  for (int i = LP_TLS_POOLS - 1; i >= 0 && free_entry < 0; i--) {
    if (t->e[i].local == NULL || !pool_is_live_locked(t->e[i].pool, t->e[i].serial)) {
      memset(&t->e[i], 0, sizeof t->e[i]);
      free_entry = i;
    }
  }
  pthread_mutex_unlock(&pools_lock);
  if (free_entry < 0)
    return NULL; /* this thread uses too many pools at once: no magazine for this one */
  lp_local *l = local_new(p);
  if (l == NULL)
    return NULL;
  t->e[free_entry] = (lp_tls_entry){p, p->serial, l};
  return tls_front(t, free_entry);
}

/* Under the mutex: no acquire since the last maintenance pass (or never: release-only). */
static bool local_is_quiet(lp_local *l) {
  return lp_counters_acquires(&l->counters) == l->last_acquires;
}

/*
** Under the mutex, after steal_begin: empties entry i of another thread's
** magazine; its state, or NULL.  The look that skips an empty entry is a seq_cst load, not a
** relaxed one, for the owners that publish with a seq_cst exchange (no membarrier in the
** process, or the owner saw stealing): a waiting acquire makes it after raising the waiter count
** (seq_cst), and such an owner exchanges before it loads the waiter count (seq_cst).  All four are
** in the total order S: either the owner's load follows the increment (it wakes the waiter) or its
** exchange precedes this load (this finds the state).  With a relaxed load both could miss, a lost
** wake-up that C11 and AArch64 allow.  On x86-64 a seq_cst load is a plain mov.  An owner that
** published with a plain store did so in a window steal_begin's barrier closed (magazine.c, top).
*/
static lp_slot *mag_take(lp_local *l, unsigned i) {
  if (atomic_load_explicit(&l->mag[i], memory_order_seq_cst) == NULL)
    return NULL;
  lp_slot *s = atomic_exchange_explicit(&l->mag[i], NULL, memory_order_seq_cst);
  lp_assert(s == NULL || lp_slot_state(s) == LP_SLOT_IDLE);
  return s;
}

/* Under the mutex, after steal_begin: one state out of any magazine, or only out of quiet
   threads' ones; *from: the magazine it came out of. */
static lp_slot *steal_locked(luapool *p, bool quiet_only, lp_local **from) {
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next) {
    if (l->size == 0 || (quiet_only && !local_is_quiet(l)))
      continue;
    steal_wait(l);
    for (unsigned i = 0; i < l->size; i++) {
      lp_slot *s = mag_take(l, i);
      if (s != NULL) {
        *from = l;
        return s;
      }
    }
  }
  return NULL;
}

/* Under the mutex, without the handshake (loads only): may a steal find a state? */
static bool any_cached(luapool *p) {
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next) {
    for (unsigned i = 0; i < l->size; i++)
      if (atomic_load_explicit(&l->mag[i], memory_order_seq_cst) != NULL)
        return true;
  }
  return false;
}

/*
** Under the mutex, after a steal from `from`: up to half of what `from` still caches moves into
** the stealer's own magazine (self: the calling thread's), so that the next acquires there are
** hits, not more steals, each of which costs a membarrier.  self's stealing flag is 1 here: its
** pushes are exchanges.
*/
static void steal_more(lp_local *from, lp_local *self) {
  unsigned left = 0;
  for (unsigned i = 0; i < from->size; i++)
    left += atomic_load_explicit(&from->mag[i], memory_order_relaxed) != NULL;
  /* below its size, self's push cannot fail: it fills the entry at top */
  for (unsigned i = 0, moved = 0; i < from->size && moved < left / 2 && self->top < self->size;
       i++) {
    lp_slot *s = mag_take(from, i);
    if (s == NULL)
      continue;
    bool kept = lp_mag_push(self, s);
    lp_assert(kept);
    (void)kept;
    moved++;
  }
}

/*
** A look that finds nothing pays no membarrier, unless the caller will sleep after it (waiter):
** a waiter's look must follow its raised waiter count by the heavy barrier, or a release that
** published with a plain store and then read the count before the raise would be missed by both
** (lp_mag_push).  A look that is no waiter's may miss a release still in flight: it is ordered
** before that release, and its caller does not sleep on what it saw.
*/
lp_slot *lp_mag_steal(luapool *p, bool prefer_quiet, lp_local *self, bool waiter) {
  pthread_mutex_lock(&p->mags.mutex);
  if (!any_cached(p) && (!waiter || !any_plain(p, self))) {
    pthread_mutex_unlock(&p->mags.mutex);
    return NULL; /* nothing to take, and nobody whose plain store the barrier must bring */
  }
  steal_begin(p);
  lp_local *from = NULL;
  lp_slot *s = prefer_quiet ? steal_locked(p, true, &from) : NULL;
  if (s == NULL)
    s = steal_locked(p, false, &from);
  if (s != NULL && self != NULL && from != self)
    steal_more(from, self);
  pthread_mutex_unlock(&p->mags.mutex);
  return s;
}

/*
** Moves every state cached by a quiet thread (or one that only releases) to the global list, so
** that the watchdog's rules reach them and acquires elsewhere find them first.  The caller wakes
** a waiter.
*/
unsigned lp_mag_reclaim_quiet(luapool *p) {
  unsigned moved = 0;
  pthread_mutex_lock(&p->mags.mutex);
  steal_begin(p);
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next) {
    if (!local_is_quiet(l))
      continue;
    steal_wait(l);
    for (unsigned i = 0; i < l->size; i++) {
      lp_slot *s = mag_take(l, i);
      if (s != NULL) {
        lp_freelist_push_mpmc(&p->idle, s);
        moved++;
      }
    }
  }
  pthread_mutex_unlock(&p->mags.mutex);
  return moved;
}

void lp_mag_mark_quiet(luapool *p) {
  pthread_mutex_lock(&p->mags.mutex);
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next)
    l->last_acquires = lp_counters_acquires(&l->counters);
  pthread_mutex_unlock(&p->mags.mutex);
}

void lp_mag_sum(luapool *p, uint64_t sums[LP_C_COUNT]) {
  pthread_mutex_lock(&p->mags.mutex);
  for (int c = 0; c < LP_C_COUNT; c++)
    sums[c] = lp_counters_read(&p->mags.retired, c);
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next)
    for (int c = 0; c < LP_C_COUNT; c++)
      sums[c] += lp_counters_read(&l->counters, c);
  pthread_mutex_unlock(&p->mags.mutex);
  lp_counters_derive(sums);
}

unsigned lp_mag_in_use_of(const uint64_t sums[LP_C_COUNT]) {
  uint64_t out = sums[LP_C_RELEASES] + sums[LP_C_DISCARDS];
  /* counters are read one after another while threads work: never report a negative count */
  return sums[LP_C_ACQUIRES] > out ? (unsigned)(sums[LP_C_ACQUIRES] - out) : 0;
}

unsigned lp_mag_in_use(luapool *p) {
  uint64_t sums[LP_C_COUNT];
  lp_mag_sum(p, sums);
  return lp_mag_in_use_of(sums);
}

int lp_mag_init(luapool *p) {
  p->mags.locals = NULL;
  lp_counters_init(&p->mags.retired);
  return pthread_mutex_init(&p->mags.mutex, NULL) == 0 ? LUAPOOL_OK : LUAPOOL_ENOMEM;
}

/* luapool_create: gives p its serial and enters it in the list of live pools. */
void lp_mag_register_pool(luapool *p) {
  pthread_mutex_lock(&pools_lock);
  p->serial = ++pools_serial;
  p->next_pool = pools;
  pools = p;
  pthread_mutex_unlock(&pools_lock);
}

/*
** luapool_destroy: frees every lp_local of p (their states were closed already).  Thread tables
** that still name p are ignored from now on: p's serial leaves the live list first.
*/
void lp_mag_forget_pool(luapool *p) {
  pthread_mutex_lock(&pools_lock);
  for (luapool **it = &pools; *it != NULL; it = &(*it)->next_pool) {
    if (*it == p) {
      *it = p->next_pool;
      break;
    }
  }
  pthread_mutex_unlock(&pools_lock);
  /* The calling thread's own table may name p: clear it so a new pool at p's address with a
     new serial is not confused (the serial check would catch it anyway). */
  lp_tls *t = lp_mag_tls;
  for (int i = 0; t != NULL && i < LP_TLS_POOLS; i++)
    if (t->e[i].pool == p)
      memset(&t->e[i], 0, sizeof t->e[i]);
  pthread_mutex_lock(&p->mags.mutex);
  lp_local *l = p->mags.locals;
  p->mags.locals = NULL;
  pthread_mutex_unlock(&p->mags.mutex);
  while (l != NULL) {
    lp_local *next = l->next;
    lp_free(l);
    l = next;
  }
}

/* luapool_destroy, last: after the states are closed, whose on_state may still read the stats. */
void lp_mag_fini(luapool *p) {
  pthread_mutex_destroy(&p->mags.mutex);
}

/* ---- fork ------------------------------------------------------------------------------------ */

void lp_mag_fork_prepare(void) {
  pthread_mutex_lock(&pools_lock);
}

void lp_mag_fork_parent(void) {
  pthread_mutex_unlock(&pools_lock);
}

void lp_mag_fork_child(void) {
  pthread_mutex_unlock(&pools_lock); /* the child's one thread took it before the fork */
}

void lp_mag_each_pool_locked(void (*fn)(luapool *p)) {
  for (luapool *p = pools; p != NULL; p = p->next_pool)
    fn(p);
}

void lp_mag_fork_prepare_pool(luapool *p) {
  pthread_mutex_lock(&p->mags.mutex);
}

void lp_mag_fork_parent_pool(luapool *p) {
  pthread_mutex_unlock(&p->mags.mutex);
}

/*
** In the child, alone: the other threads' windows stay as the fork found them, so their busy goes
** back to 0 (a pop cut short leaves its state in the entry, or out like a held one; a push, in
** the entry or out).  The registration for membarrier is the process's, inherited by the child;
** it is asked for again (idempotent) and, should that fail, every magazine of the child uses the
** read-modify-writes from now on.
*/
void lp_mag_fork_child_pool(luapool *p) {
  p->serial = ++pools_serial; /* under pools_lock, which the handler holds */
  if (atomic_load_explicit(&asym, memory_order_relaxed) > 0 && !asym_register())
    atomic_store_explicit(&asym, -1, memory_order_relaxed);
  bool alone_ok = atomic_load_explicit(&asym, memory_order_relaxed) > 0;
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next) {
    atomic_store_explicit(&l->busy, 0, memory_order_relaxed);
    atomic_store_explicit(&l->stealing, alone_ok ? 0 : 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&p->mags.mutex);
}

void lp_mag_each_cached_alone(luapool *p, void (*fn)(lp_slot *s, void *ud), void *ud) {
  for (lp_local *l = p->mags.locals; l != NULL; l = l->next)
    for (unsigned i = 0; i < l->size; i++) {
      lp_slot *s = atomic_load_explicit(&l->mag[i], memory_order_relaxed);
      if (s != NULL)
        fn(s, ud);
    }
}
