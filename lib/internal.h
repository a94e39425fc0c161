/*
** internal.h: struct luapool, a composite of each pool-wide module's part, as Lua's lstate.h
** gathers global_State.  Nothing here is part of the public API.
**
** lib/ has one file per concern, each with its header and its prefix, and calls flow one way,
** from the public API down (doc/design.md has the module map; tests/callgraph.sh checks that the
** calls between files have no cycle):
**
**   pool.c                     luapool_* (the public API)             (statics only)
**   prom.c                     luapool_stats_prometheus               lp_prom_
**   internal.h                 struct luapool                         lp_pool_
**   stats.c                    merging the counters on read           lp_stats_
**   watchdog.c                 the pass, its thread, the close list   lp_watchdog_
**   state.c                    creating and closing states            lp_state_
**   magazine.c magazine_inline.h  per-thread magazines and counters   lp_mag_
**   reset.c                    the reset sequence                     lp_reset
**   sx.h                       a state's parts                        lp_sx_
**   guard.c                    the library wrappers of the budget     lp_guard_
**   the parts of a state: snapshot.c image.c sandbox.c chunk.c budget.c warn.c entropy.c
**     alloc.c lptable.c         lp_snapshot_ lp_image_ lp_sandbox_ lp_chunk_ lp_budget_ lp_warn_
**                               lp_entropy_ lp_alloc_ lp_lptable_
**   freelist.c                 the Treiber stacks                     lp_freelist_ lp_closelist_
**   slot.c wait.c              the slot arena; waiting and waking,    lp_slot_ lp_wait_
**                              the event loops' notifiers
**   upkeep.h counters.h        retirement rules; event counters       lp_upkeep_ lp_counters_
**   base.c                     assertions, log, callbacks, time       lp_assert lp_log lp_cb_
**                                                                      lp_time_ lp_cond_
**   fault.c fault.h            test only: fault injection (LP_FAULTS)  lp_fault_ lp_malloc ...
*/
#ifndef LUAPOOL_INTERNAL_H
#define LUAPOOL_INTERNAL_H

#include <stdatomic.h>

#include "base.h"
#include "freelist.h"
#include "magazine.h"
#include "slot.h"
#include "state.h"
#include "upkeep.h"
#include "wait.h"
#include "watchdog.h"

struct luapool {
  /* Read-mostly: the configuration and identity, shared by every thread without writes. */
  luapool_config cfg;
  uint64_t serial;       /* unique for the process's life: tells a live pool from a reused address
                            (magazine.c) */
  _Atomic int closed;    /* the one "shut down" flag: set once, by luapool_shutdown (pool.c); read
                            by every acquire and release, and ends the watchdog thread */
  lp_upkeep_clock clock; /* the coarse clock: set by each pass, read by release */
  struct luapool *next_pool; /* the process's list of live pools (magazine.c) */

  lp_freelist idle; /* the global free list of idle states (a line of its own) */
  lp_wait wait;     /* waiting acquires (its own lines) */
  lp_states states; /* state.c: max_states, created, closed */
  lp_mags mags;     /* magazine.c */
  lp_arena arena;   /* slot.c */
  lp_watchdog wd;   /* watchdog.c, with the close list */
};

static inline bool lp_pool_closed(luapool *p) {
  return atomic_load_explicit(&p->closed, memory_order_acquire) != 0;
}

/*
** The current generation (luapool_reload): one load of a line only reloads write, on every
** acquire and release.  Acquire, pairing with lp_state_gen_publish's release store: a thread that
** reads a number then creates its states with that generation or a later one (state.c).
*/
static inline uint64_t lp_pool_generation(luapool *p) {
  return atomic_load_explicit(&p->states.generation, memory_order_acquire);
}

/*
** The magazine hit's test, in place of lp_pool_closed, lp_pool_generation and the configuration's
** held_warn_ms and budgets: a state whose generation equals the key may be handed out (acquire)
** or cached (release) with none of them looked at, since the key is its generation only while
** the pool is open, the state is not stale, and acquires arm nothing (state.h).  Anything else
** (0, or another number) sends the call to its slow path, which asks each of them.  Acquire, as
** lp_pool_generation: a reload stores the key (release) before the number, which is what keeps a
** hit from handing out a state older than a number its thread saw (lp_state_gen_publish).
*/
static inline uint64_t lp_pool_hit_key(luapool *p) {
  return atomic_load_explicit(&p->states.hit_key, memory_order_acquire);
}

#endif /* LUAPOOL_INTERNAL_H */
