/*
** wait.h: acquires that wait for a state, and the wake-ups that must never be lost.
**
** A waiter raises waiters (a seq_cst read-modify-write) under the mutex and then looks for a
** state; whoever makes a state available (a release, a push on the global list, room under
** max_states) does so first and then reads waiters.  Either the look finds the state or the
** reader sees the waiter and wakes it; the wake takes the mutex, which the waiter holds from its
** look until pthread_cond_wait releases it, so the signal cannot fall in between (the whole
** argument: doc/design.md, "Waking without lost wake-ups").
**
** Under the C11 model this needs, on each pair of sides, either all four operations seq_cst (a
** magazine or max_states look: seq_cst loads; the publish and the count's load: seq_cst), or a
** read-modify-write of waiters on the publishing side (the global list, whose ck push is no C11
** atomic): every write of waiters is a read-modify-write, so the waiter's increment reads from
** the release sequence of any read-modify-write before it and synchronizes with it.  (The one
** plain store, in a fork's child, runs with no other thread in the process.)
*/
#ifndef LUAPOOL_WAIT_H
#define LUAPOOL_WAIT_H

#include <stdatomic.h>

#include "base.h"

typedef struct lp_wait {
  /* Read by every release; written only when an acquire sleeps. */
  _Alignas(LP_CACHELINE) _Atomic unsigned waiters; /* acquires asleep or about to sleep */
  _Alignas(LP_CACHELINE) pthread_mutex_t mutex;
  pthread_cond_t cond;    /* a state or room may be there: wakes an acquire */
  pthread_cond_t drained; /* a state came back after shutdown: wakes luapool_shutdown's drain */
} lp_wait;

int lp_wait_init(lp_wait *w);
void lp_wait_fini(lp_wait *w);

/* The waiting side: enter (lock, count), sleep (any number of times), leave (uncount, unlock). */
void lp_wait_enter(lp_wait *w);
int lp_wait_sleep(lp_wait *w, const struct timespec *deadline); /* ETIMEDOUT once it passed */
void lp_wait_leave(lp_wait *w);

/* The drain: under lp_wait_lock, sleeps until a state comes back or deadline passes. */
void lp_wait_lock(lp_wait *w);
void lp_wait_unlock(lp_wait *w);
void lp_wait_sleep_drain(lp_wait *w, const struct timespec *deadline);

/* The waking side. */
void lp_wait_wake_one(lp_wait *w);   /* a state or room became available */
void lp_wait_wake_all(lp_wait *w);   /* shutdown: every waiter returns LUAPOOL_ECLOSED */
void lp_wait_wake_drain(lp_wait *w); /* a state came back after shutdown */

/*
** fork (pool.c's handlers): the mutex is taken before the fork and released after it.  In the
** child the parent's sleepers do not exist, but the condition variables still count them
** (signalling would wake nobody, destroying would wait for them for good): they are made anew,
** and the waiter count, which counted them too, is 0 (the child's one thread is in fork).
*/
void lp_wait_fork_prepare(lp_wait *w);
void lp_wait_fork_parent(lp_wait *w);
void lp_wait_fork_child(lp_wait *w);

/* Any waiter, after the caller made a state available with a seq_cst atomic of its own. */
static inline bool lp_wait_any(lp_wait *w) {
  return atomic_load_explicit(&w->waiters, memory_order_seq_cst) != 0;
}

/*
** Any waiter, after a push on the global free list.  ck's push is no C11 atomic, so this is a
** read-modify-write, not a load: read-modify-writes of one variable are totally ordered, so
** either this one reads the waiter's increment (and the caller wakes it), or the waiter's reads
** this one, synchronizes with it, and its pop sees the push.  (A fence would also do, but
** ThreadSanitizer does not model fences.)
*/
static inline bool lp_wait_any_after_push(lp_wait *w) {
  return atomic_fetch_add_explicit(&w->waiters, 0, memory_order_seq_cst) != 0;
}

/* After pushes on the global free list: wake a waiter, if any. */
static inline void lp_wait_wake_after_push(lp_wait *w) {
  if (lp_wait_any_after_push(w))
    lp_wait_wake_one(w);
}

#endif /* LUAPOOL_WAIT_H */
