/*
** luapool internals, shared by the files of lib/.  Nothing here is part of the public API.
**
** Prefixes: lp_slot_ (slot arena, slot.c), lp_state_ (creating and closing Lua states,
** state.c), lp_freelist_ (the ck_stack wrappers, freelist.c), lp_local_ and lp_mag_ (per-thread
** magazines and counters, magazine.c), lp_reset_ (reset.c), lp_watchdog_ (watchdog.c),
** lp_stats_ (stats.c), lp_log (pool.c).
*/
#ifndef LUAPOOL_INTERNAL_H
#define LUAPOOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_stack.h>

#include "luapool.h"

#define LP_CACHELINE 64
#define LP_MAGAZINE_MAX 64 /* largest magazine_size accepted */

/* Slot states (lp_slot.state). */
enum {
  LP_SLOT_EMPTY = 0, /* no Lua state; on the spare list or being filled */
  LP_SLOT_IDLE,      /* in a magazine or on the global free list */
  LP_SLOT_OUT,       /* held by a caller */
  LP_SLOT_CLOSING    /* on the close list, waiting for the watchdog */
};

/*
** A slot: the pool's bookkeeping for one Lua state.  Slots live in chunks that are freed only by
** luapool_destroy, so a ck_stack pop may read entry.next of a slot another thread already took
** (the reason ck_stack_pop_mpmc is memory-safe here).  A slot is reused for a new state after
** its state is closed.  The state's extra space (lua_getextraspace) points back to its slot.
*/
typedef struct lp_slot {
  _Alignas(LP_CACHELINE) ck_stack_entry_t entry; /* first member: the lists' link.  A line per
                            slot: release writes state, and neighbours belong to other threads */
  _Atomic(lua_State *) L; /* atomic: read by luapool_release's check on any thread */
  _Atomic int state;      /* LP_SLOT_* */
  unsigned uses;          /* acquires served; the holder's, like the fields below */
  struct lp_slot *spare;  /* spare list link (under pool.slot_mutex); a maintenance pass's
                             private chain while it holds the slot */
  uint64_t expires_ms;    /* max_lifetime_ms, jittered; UINT64_MAX when none */
  uint64_t last_used_ms;  /* the coarse clock at the last release (or at creation) */
  unsigned gc_uses;       /* uses at the last background collection */
  int close_reason;       /* LUAPOOL_CLOSE_*, while on the close list */
  struct lp_sx *x;        /* the state's extension, while it has a state */
} lp_slot;

/* A value's fingerprint: its type and its identity (collectable) or bits (the others). */
typedef struct lp_fp {
  uint64_t bits;
  int type; /* lua_type, or LP_TINTEGER */
} lp_fp;

#define LP_TINTEGER (LUA_NUMTYPES + 1)

/* A table or function the reset checks: its entries' (or upvalues') fingerprints, in order. */
typedef struct lp_rec {
  int n;     /* entries (key, value) or upvalues */
  lp_fp *fp; /* 2n for a table (key, value, ...), n for a function */
  lp_fp mt;  /* a table's metatable (nil for none) */
} lp_rec;

/* A chunk luapool_load keeps compiled. */
typedef struct lp_cent {
  char *name; /* malloc'd copies of the name and the source: the cache key */
  char *src;
  size_t name_len, len;
  const void *fn; /* lua_topointer of the function in the cache table, slot idx */
  uint64_t used;  /* the cache's tick at the last use: the least recently used goes first */
} lp_cent;

#define LP_TYPE_SAMPLES 7 /* nil, boolean, light userdata, number, string, function, thread */

/*
** What a state needs beyond its slot: allocated with the state, freed after lua_close.  Reached
** from any thread of the state through the extra space (lp_sx_of) by the allocator, the hooks
** and the wrappers; written only by the thread that holds the state.
*/
typedef struct lp_sx {
  luapool *pool;
  /* the allocator (state.c) */
  size_t bytes; /* the Lua heap */
  size_t peak;  /* its high-water mark since the state was made (recycle_kb) */
  size_t limit; /* mem_limit, SIZE_MAX for none (or while the reset restores) */
  bool mem_hit; /* an allocation was refused since the last reset */
  /* the budget (budget.c) */
  bool budget_armed, budget_tripped;
  const char *budget_why;
  uint64_t budget_left;     /* instructions; UINT64_MAX: no count */
  uint64_t budget_deadline; /* CLOCK_MONOTONIC ns; 0: none */
  /* the reset (reset.c, sandbox.c) */
  bool finalizer; /* a metatable with __gc was set since the last reset */
  bool warn_on, warn_cont;
  size_t warn_len;
  char warn_buf[256];
  unsigned char *ranstate; /* math.random's xoshiro256** state (32 bytes), or NULL */
  unsigned char seed[32];  /* what the reset last wrote there: unchanged means unused */
  int ntab, nfn;
  lp_rec *tab, *fn;
  int *dirty; /* ntab + nfn: the reset's list of what to restore */
  lua_State *check; /* a thread whose stack holds, for good, the type samples (1..7), then the
                       recorded tables, then the recorded functions: what the reset checks */
  lp_fp typemt[LP_TYPE_SAMPLES];
  /* the chunk cache (chunk.c) */
  unsigned ncache;
  lp_cent *cache; /* pool.cfg.chunk_cache entries */
  uint64_t cache_tick, cache_hits, cache_misses;
} lp_sx;

/* The state's luapool table (registry, light userdata key): its array slots. */
enum {
  LP_T_SNAP = 1, /* table, copy, metatable-or-false triples of the checked tables */
  LP_T_FSNAP,    /* function, upvalues pairs of the checked functions */
  LP_T_FROZEN,   /* set of what no script can write: walked, not checked */
  LP_T_CACHE,    /* the chunk cache's functions */
  LP_T_TYPEMT,   /* the types' metatables (or false), by sample index */
  LP_T_PROXIES,  /* sandbox: set of the read-only proxies */
  LP_T_MODULES,  /* sandbox: the modules this request required */
  LP_T_CHECK,    /* the reset's thread (lp_sx.check) */
  LP_T_COUNT = LP_T_CHECK
};

#define LP_SLOT_OF_ENTRY(e) ((lp_slot *)(void *)(e))

typedef struct lp_chunk {
  struct lp_chunk *next;
  size_t n;
  lp_slot slots[];
} lp_chunk;

/* A ck_stack Treiber stack of slots; 16-byte alignment for cmpxchg16b, a line of its own. */
typedef struct lp_freelist {
  _Alignas(LP_CACHELINE) ck_stack_t stack;
} lp_freelist;

/* Counters kept per thread (lp_local) and merged on read. */
enum {
  LP_C_ACQUIRES,
  LP_C_RELEASES,
  LP_C_DISCARDS,
  LP_C_MAGAZINE_HITS,
  LP_C_GLOBAL_HITS,
  LP_C_MISSES,
  LP_C_WAITS,
  LP_C_TIMEOUTS,
  LP_C_CACHE_HITS,
  LP_C_CACHE_MISSES,
  LP_C_COUNT
};

typedef struct lp_counters {
  _Atomic uint64_t c[LP_C_COUNT];
} lp_counters;

/*
** One thread's cache for one pool: its magazine and its counters.  Only the owner thread fills
** magazine entries and writes the counters; any thread holding pool.local_mutex may empty an
** entry with an atomic exchange (stealing, trimming), and read the counters.
*/
typedef struct lp_local {
  lp_counters counters;
  struct lp_local *next, *prev; /* pool.locals, under pool.local_mutex */
  uint64_t last_acquires;       /* the maintenance pass's view, to spot quiet threads */
  unsigned size;                /* magazine entries */
  unsigned top;                 /* owner only: entries at index >= top are empty */
  _Atomic(lp_slot *) mag[];     /* size entries */
} lp_local;

struct luapool {
  /* Read-mostly: the configuration and identity, shared by every thread without writes. */
  luapool_config cfg;
  uint64_t serial;    /* unique for the process's life: tells a live pool from a reused address */
  _Atomic int closed; /* set once, by luapool_shutdown: read by every acquire and release */
  _Atomic uint64_t now_ms;   /* the coarse clock: set by each maintenance pass, read by release */
  struct luapool *next_pool; /* the process's list of live pools, under lp_pools_lock */

  /* The global free list of idle states, and states waiting for the watchdog to close them. */
  lp_freelist idle;
  lp_freelist closing;

  /* Read by every release; written only when an acquire sleeps or a release spills. */
  _Alignas(LP_CACHELINE) _Atomic unsigned waiters; /* acquires asleep or about to sleep */

  /* Written on the slow paths only. */
  _Alignas(LP_CACHELINE) _Atomic unsigned live; /* existing or being created: max_states */
  _Atomic uint64_t created, closed_count, discarded, tainted; /* the latter two: at the call */
  _Atomic uint64_t closed_by[LUAPOOL_CLOSE_RECYCLED + 1];     /* indexed by LUAPOOL_CLOSE_* */
  _Atomic uint64_t collections, reclaimed, passes, pass_ns_total, pass_ns_max, pass_ns_last;
  _Atomic uint64_t mem_errors, budget_exceeded, restored;
  bool budget_on; /* cfg.budget_instructions or cfg.budget_ms */
  lp_counters retired; /* counters of exited threads and of threads with no lp_local */

  pthread_mutex_t wait_mutex; /* with wait_cond: acquires asleep; also luapool_shutdown's drain */
  pthread_cond_t wait_cond;
  pthread_cond_t drain_cond;

  pthread_mutex_t local_mutex; /* the locals list */
  lp_local *locals;

  pthread_mutex_t slot_mutex; /* slot arena growth and the spare list */
  _Atomic(lp_chunk *) chunks; /* read without the lock by lp_slot_check */
  size_t nslots;
  lp_slot *spare;

  pthread_mutex_t maintain_mutex; /* one maintenance pass at a time */

  pthread_mutex_t wd_mutex; /* the watchdog thread's sleep */
  pthread_cond_t wd_cond;
  bool wd_running, wd_stop, wd_kick;
  pthread_t wd_thread;
  bool shut; /* luapool_shutdown has run (under maintain_mutex) */
};

/* pool.c */
void lp_log(luapool *p, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void lp_wake_waiter(luapool *p);
int lp_timed_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline);
void lp_deadline(struct timespec *ts, long ms);

/* slot.c */
int lp_slot_init(luapool *p);
void lp_slot_fini(luapool *p);
lp_slot *lp_slot_alloc(luapool *p);
void lp_slot_free(luapool *p, lp_slot *s);
lp_slot *lp_slot_check(luapool *p, lua_State *L);

/* state.c */
int lp_state_new(luapool *p, lp_slot **out);
void lp_state_close(luapool *p, lp_slot *s, int reason);
uint64_t lp_clock_ms(luapool *p);
bool lp_live_reserve(luapool *p);
void lp_live_unreserve(luapool *p);

/* freelist.c */
void lp_freelist_init(lp_freelist *f);
void lp_freelist_push_mpmc(lp_freelist *f, lp_slot *s);
lp_slot *lp_freelist_pop_mpmc(lp_freelist *f);
lp_slot *lp_freelist_pop_all_spmc(lp_freelist *f);

/* magazine.c (the fast path is inline, below) */
lp_local *lp_local_get_slow(luapool *p);
lp_slot *lp_mag_steal_locked(luapool *p, bool quiet_only);
unsigned lp_mag_reclaim_quiet(luapool *p);
void lp_local_register_pool(luapool *p);
void lp_local_forget_pool(luapool *p);

/* reset.c */
enum { LP_RESET_CLEAN = 0, LP_RESET_RESTORED = 1, LP_RESET_TAINTED = -1, LP_RESET_BLOAT = -2 };
int lp_lptable_create(lua_State *L);
void lp_lptable_push(lua_State *L);
void lp_push_type_samples(lua_State *L);
int lp_reset_prepare(lua_State *L);
int lp_reset(luapool *p, lp_slot *s, lua_State *L);
void lp_sx_free(lp_sx *x);

/* sandbox.c */
int lp_sandbox_open(lua_State *L);
int lp_sandbox_freeze(lua_State *L);
void lp_sandbox_warn_reset(lp_sx *x);

/* budget.c */
void lp_budget_arm(lua_State *L, lp_sx *x, uint64_t instructions, unsigned ms);
void lp_budget_clear(lua_State *L, lp_sx *x);

/* The extension of the state L belongs to (any of its threads). */
static inline lp_sx *lp_sx_of(lua_State *L) {
  return (*(lp_slot **)lua_getextraspace(L))->x;
}

/* stats.c */
unsigned lp_stats_in_use(luapool *p);
void lp_stats_fill(luapool *p, luapool_stats *out);

/* watchdog.c */
int lp_watchdog_start(luapool *p);
void lp_watchdog_stop(luapool *p);
void lp_watchdog_kick(luapool *p);
void lp_maintain_pass(luapool *p);
void lp_close_all_idle(luapool *p, int reason);

static inline uint64_t lp_counter_read(_Atomic uint64_t *c) {
  /* acquire: a count seen implies the state movement made before it (see lp_local_count) */
  return atomic_load_explicit(c, memory_order_acquire);
}

/*
** After a push on the global free list: is an acquire waiting?  A read-modify-write, not a load:
** a waiter raises waiters with a seq_cst read-modify-write before it pops, and the
** read-modify-writes of one variable are totally ordered, so either this one reads the waiter's
** increment (and the caller wakes it), or the waiter's reads this one, synchronizes with it, and
** its pop sees the push.  (A fence would also do, but ThreadSanitizer does not model fences.)
*/
static inline bool lp_waiters_after_push(luapool *p) {
  return atomic_fetch_add_explicit(&p->waiters, 0, memory_order_seq_cst) != 0;
}

/* After pushes on the global free list: wake a waiting acquire, if any. */
static inline void lp_wake_after_push(luapool *p) {
  if (lp_waiters_after_push(p))
    lp_wake_waiter(p);
}

/* ---- the magazine fast path (magazine.c has the rest and the argument) ------------------ */

#define LP_TLS_POOLS 8 /* pools a thread keeps magazines for at once */

typedef struct lp_tls_entry {
  luapool *pool;
  uint64_t serial;
  lp_local *local;
} lp_tls_entry;

typedef struct lp_tls {
  lp_tls_entry e[LP_TLS_POOLS]; /* e[0] is the pool used last */
} lp_tls;

/*
** The calling thread's table, allocated on its first use of any pool.  initial-exec: a plain
** %fs-relative load instead of a __tls_get_addr call (which cost ~40% of a magazine hit); it
** takes 8 bytes of static TLS, which glibc reserves room for even in a dlopen()ed library.
*/
extern _Thread_local lp_tls *lp_tls_self __attribute__((tls_model("initial-exec")));

/* The calling thread's lp_local for p; NULL if it cannot have one (the pool's counters serve). */
static inline lp_local *lp_local_get(luapool *p) {
  lp_tls *t = lp_tls_self;
  if (t != NULL && t->e[0].pool == p && t->e[0].serial == p->serial)
    return t->e[0].local;
  return lp_local_get_slow(p);
}

/*
** Counts n events for the calling thread.  The owner is the only writer, so a load and a
** store do (no atomic read-modify-write); release, so that a reader who sees the count sees the
** state movement the thread made before counting it (luapool_shutdown's drain relies on it).
*/
static inline void lp_local_add(luapool *p, lp_local *l, int counter, uint64_t n) {
  if (l != NULL) {
    _Atomic uint64_t *c = &l->counters.c[counter];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_release);
  } else {
    atomic_fetch_add_explicit(&p->retired.c[counter], n, memory_order_release);
  }
}

static inline void lp_local_count(luapool *p, lp_local *l, int counter) {
  lp_local_add(p, l, counter, 1);
}

/* Owner only.  Takes the most recently cached state; entries stolen meanwhile read as NULL. */
static inline lp_slot *lp_mag_pop(lp_local *l) {
  while (l->top > 0) {
    l->top--;
    if (atomic_load_explicit(&l->mag[l->top], memory_order_relaxed) == NULL)
      continue; /* stolen: stealers only empty entries */
    lp_slot *s = atomic_exchange_explicit(&l->mag[l->top], NULL, memory_order_acquire);
    if (s != NULL)
      return s;
  }
  return NULL;
}

/*
** Owner only.  Caches s; false when the magazine is full.  The exchange is seq_cst: the caller
** then loads pool.waiters (seq_cst), and a waiter raises waiters (seq_cst) before it scans the
** magazines, so either the waiter finds s or the caller sees the waiter and wakes it.  It also
** publishes the reset state to whoever takes the entry (a stealer's exchange reads it).
*/
static inline bool lp_mag_push(lp_local *l, lp_slot *s) {
  unsigned i = l->top;
  if (i == l->size) {
    /* full up to top, but stealers may have left holes below */
    for (i = 0; i < l->size; i++)
      if (atomic_load_explicit(&l->mag[i], memory_order_relaxed) == NULL)
        break;
    if (i == l->size)
      return false;
  } else {
    l->top++;
  }
  atomic_exchange_explicit(&l->mag[i], s, memory_order_seq_cst);
  return true;
}

#endif /* LUAPOOL_INTERNAL_H */
