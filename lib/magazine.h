/*
** magazine.h: per-thread magazines and counters (lp_local), found through thread-local storage.
** The types and the out-of-line half; the fast path is in magazine_inline.h.
*/
#ifndef LUAPOOL_MAGAZINE_H
#define LUAPOOL_MAGAZINE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "counters.h"
#include "slot.h"

#define LP_MAGAZINE_MAX 64 /* largest magazine_size accepted */
#define LP_TLS_POOLS 8     /* pools a thread keeps magazines for at once */

/*
** One thread's cache for one pool: its magazine and its counters.  Only the owner thread fills
** magazine entries and writes the counters; any thread holding the pool's magazine mutex may
** empty an entry with an atomic exchange (stealing, trimming), after the handshake that keeps
** the owner's fast path off the entries meanwhile (magazine.c), and read the counters.
*/
typedef struct lp_local {
  lp_counters counters;
  struct lp_local *next, *prev; /* the pool's list, under its magazine mutex */
  uint64_t last_acquires;       /* the maintenance pass's view, to spot quiet threads */
  unsigned size;                /* magazine entries */
  unsigned top;                 /* owner only: entries at index >= top are empty */
  /* The asymmetric handshake (magazine.c): busy is the owner's, 1 while its fast path reads
     and writes entries with plain loads and stores; stealing is a stealer's, 1 from before its
     membarrier(2) until the owner lowers it again (lp_mag_calm; for good where there is no
     membarrier: every owner path then uses read-modify-writes). */
  _Atomic unsigned char busy, stealing;
  unsigned shared_ops;    /* owner only: read-modify-write operations since stealing was seen */
  pthread_mutex_t *mutex; /* the pool's magazine mutex (lp_mag_calm) */
  /* Owner only: the state this thread's last magazine hit handed out, and its slot, until a
     release on this thread names it (pool.c, check_in); held_L NULL: none.  A hint: check_in
     asks the slot as lp_slot_check does. */
  lua_State *held_L;
  lp_slot *held_s;
  _Atomic(lp_slot *) mag[];     /* size entries */
} lp_local;

/* A pool's part: every thread's lp_local, and the counters of threads that have none. */
typedef struct lp_mags {
  pthread_mutex_t mutex; /* the list; stealing */
  lp_local *locals;
  lp_counters retired; /* counters of exited threads and of threads with no lp_local */
} lp_mags;

/* The calling thread's table of (pool, serial, lp_local). */
typedef struct lp_tls_entry {
  luapool *pool;
  uint64_t serial;
  lp_local *local;
} lp_tls_entry;

typedef struct lp_tls {
  lp_tls_entry e[LP_TLS_POOLS]; /* e[0] is the pool used last */
} lp_tls;

/* luapool_create and luapool_destroy: the pool's part, its serial, the live pools' list. */
int lp_mag_init(luapool *p);
void lp_mag_register_pool(luapool *p);
void lp_mag_forget_pool(luapool *p); /* frees every lp_local; their states are closed */
void lp_mag_fini(luapool *p);

/*
** fork (pool.c's handlers).  lp_mag_fork_prepare takes the live pools' list's lock, the first
** lock of the fork's order (no thread takes it while holding any other luapool lock); until
** lp_mag_fork_parent or lp_mag_fork_child releases it, the list holds still and
** lp_mag_each_pool_locked walks it.  The _pool functions take and release one pool's magazine
** mutex.  In the child, lp_mag_fork_child_pool also gives the pool a new serial: the forking
** thread's table entries then no longer match it, so its next call on the pool goes through
** lp_mag_local_get_slow (the slow path pool.c resumes the watchdog on) and gets a new lp_local;
** the old one stays on the pool's list, its states reachable like any other thread's.
*/
void lp_mag_fork_prepare(void);
void lp_mag_fork_parent(void);
void lp_mag_fork_child(void);
void lp_mag_each_pool_locked(void (*fn)(luapool *p));
void lp_mag_fork_prepare_pool(luapool *p);
void lp_mag_fork_parent_pool(luapool *p);
void lp_mag_fork_child_pool(luapool *p);
/* Calls fn for every state cached in any magazine of p.  Only while no other thread exists (a
   fork's child). */
void lp_mag_each_cached_alone(luapool *p, void (*fn)(lp_slot *s, void *ud), void *ud);

/* The owner, after LP_MAG_CALM_OPS operations that found its stealing flag 1
   (magazine_inline.h): lowers it, if it can (magazine.c). */
#define LP_MAG_CALM_OPS 4096
void lp_mag_calm(lp_local *l);

/* The calling thread's lp_local for p past the first probe (magazine_inline.h); NULL if it cannot
   have one (the pool's counters serve). */
lp_local *lp_mag_local_get_slow(luapool *p);
/*
** One idle state out of any thread's magazine (quiet threads' first, if prefer_quiet), or NULL.
** self: the calling thread's lp_local, or NULL; more of the same magazine may move into it.
** waiter: the caller raised the waiter count and sleeps if this finds nothing (magazine.c).
*/
lp_slot *lp_mag_steal(luapool *p, bool prefer_quiet, lp_local *self, bool waiter);
/* Moves the states of quiet threads' magazines to the global list; returns how many. */
unsigned lp_mag_reclaim_quiet(luapool *p);
/* Notes each thread's acquire count: a thread whose count is unchanged next time is quiet. */
void lp_mag_mark_quiet(luapool *p);
/* Every thread's counters summed, with those of exited threads. */
void lp_mag_sum(luapool *p, uint64_t sums[LP_C_COUNT]);
/* States held by callers: acquired and neither released nor discarded (a snapshot). */
unsigned lp_mag_in_use(luapool *p);
unsigned lp_mag_in_use_of(const uint64_t sums[LP_C_COUNT]);

#endif /* LUAPOOL_MAGAZINE_H */
