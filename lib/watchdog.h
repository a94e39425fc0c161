/*
** watchdog.h: the maintenance pass, the thread that runs it every watchdog_interval_ms, and the
** close list it empties.
*/
#ifndef LUAPOOL_WATCHDOG_H
#define LUAPOOL_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>

#include "freelist.h"

/* A pool's part. */
typedef struct lp_watchdog {
  lp_closelist closing;       /* states waiting for a pass to close them */
  pthread_mutex_t pass_mutex; /* one pass at a time */
  pthread_mutex_t mutex;      /* with cond: the thread's sleep, kick and joined */
  pthread_cond_t cond;
  bool kick;     /* a pass is wanted now */
  bool joinable; /* the thread runs and nobody has joined it */
  pthread_t thread;
  _Atomic bool resume; /* a fork's child whose parent had the thread: start one at the child's
                          first call (lp_watchdog_resume) */
  /* figures for the stats, written by passes (serialized) */
  _Atomic uint64_t passes, pass_ns_total, pass_ns_max, pass_ns_last, collections, reclaimed;
  _Atomic uint64_t held_too_long; /* acquires reported held past held_warn_ms */
} lp_watchdog;

int lp_watchdog_init(luapool *p);
void lp_watchdog_fini(luapool *p);
int lp_watchdog_start(luapool *p);
/* Stops and joins the thread (the first caller joins); it ends once the pool is closed. */
void lp_watchdog_stop(luapool *p);

/* One pass now, on the calling thread. */
void lp_watchdog_pass(luapool *p);
/* Creates idle states until target are idle (within max_states): LUAPOOL_OK, or the error of the
   creation that failed (it stops there).  luapool_create's min_idle and each pass. */
int lp_watchdog_prewarm(luapool *p, unsigned idle, unsigned target);
/* A state nobody will use again (CLOSING): closed by the watchdog thread (woken now), or here
   when the pool has none or is shut down. */
void lp_watchdog_close_later(luapool *p, lp_slot *s, int reason);
/*
** luapool_reload, under the pass mutex: starts the generation after the current one (on_create
** NULL: the current on_create and ud), once a state of it was created (it goes on the global
** list); wakes the thread for a pass, which closes the older idle states and prewarms.
** LUAPOOL_OK and the new number in *number, or LUAPOOL_EINIT (on_create failed), LUAPOOL_ENOMEM,
** LUAPOOL_ETIMEDOUT (max_states states, all checked out), LUAPOOL_ECLOSED; then nothing changed.
*/
int lp_watchdog_reload(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud,
                       uint64_t *number);
/* Shutdown: closes every state nobody holds. */
void lp_watchdog_close_all(luapool *p);
/* The pass figures of luapool_stats. */
void lp_watchdog_stats(luapool *p, luapool_stats *out);

/*
** fork (pool.c's handlers; the order is in doc/design.md, "fork").  prepare_pass takes the pass
** mutex, so that no pass is halfway (holding states in its private chains) at the fork; prepare
** takes the thread's mutex.  In the child the parent's watchdog thread does not exist: its handle
** is forgotten, never joined, and the child's first call on the pool (lp_watchdog_resume, from
** pool.c's slow paths) starts one of its own, outside the fork handler.
*/
void lp_watchdog_fork_prepare_pass(luapool *p);
void lp_watchdog_fork_prepare(luapool *p);
void lp_watchdog_fork_parent(luapool *p);
void lp_watchdog_fork_child(luapool *p);
/* Calls fn for every state on the close list.  Only while no other thread exists. */
void lp_watchdog_each_closing_alone(luapool *p, void (*fn)(lp_slot *s, void *ud), void *ud);
/* In a fork's child: starts the watchdog thread if the parent's pool had one and none runs yet.
   Any thread; cheap (one load) once done. */
void lp_watchdog_resume(luapool *p);

#endif /* LUAPOOL_WATCHDOG_H */
