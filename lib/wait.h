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
**
** Two kinds of waiter share the count: blocked acquires (the condition variable) and the
** notifiers of event loops (luapool_acquire_async), which register on a FIFO and are woken by a
** write to their eventfd.  A notifier registers exactly as a blocked acquire enters: under the
** mutex, a seq_cst increment of waiters, then a look (pool.c's take_slow), so the argument above
** holds for it unchanged.  lp_wait_wake_one wakes exactly one waiter of either kind (the policy
** and why no wake-up is lost or wasted: lp_wait_wake_one in wait.c, and doc/design.md,
** "Acquiring from an event loop").
*/
#ifndef LUAPOOL_WAIT_H
#define LUAPOOL_WAIT_H

#include <stdatomic.h>

#include "base.h"

/* A notifier's registration; every change is made under the wait mutex. */
enum {
  LP_NOTIFIER_IDLE = 0, /* not registered, no wake-up pending */
  LP_NOTIFIER_QUEUED,   /* on the FIFO and counted in waiters */
  LP_NOTIFIER_SIGNALLED /* taken off the FIFO and uncounted by a wake: its eventfd holds 1 that
                           the next luapool_acquire_async (or cancel) consumes */
};

/*
** luapool_notifier: one per event loop, used by one thread at a time (its loop).  The owner is
** the only thread that moves state out of IDLE (registering); wakers move it from QUEUED (to
** SIGNALLED, or to IDLE at shutdown).  So the owner may read state without the mutex to learn
** that it is IDLE (then it stays so until the owner changes it); any other decision is taken
** again under the mutex.
*/
struct luapool_notifier {
  luapool *pool;     /* NULL once luapool_destroy detached it */
  int fd;            /* eventfd(EFD_NONBLOCK | EFD_CLOEXEC) */
  bool forked;       /* opened before a fork, in the child: refused, may only be closed */
  _Atomic int state; /* LP_NOTIFIER_*: written under the mutex, relaxed (the mutex orders the
                        writes; the owner's unlocked read is a hint, see above) */
  struct luapool_notifier *next, *prev;         /* the FIFO of registered notifiers */
  struct luapool_notifier *all_next, *all_prev; /* every open notifier of the pool */
};

typedef struct lp_wait {
  /* Read by every release; written only when an acquire sleeps or a notifier registers. */
  _Alignas(LP_CACHELINE) _Atomic unsigned waiters; /* acquires asleep or about to sleep, and
                                                      registered notifiers */
  _Alignas(LP_CACHELINE) pthread_mutex_t mutex;
  pthread_cond_t cond;    /* a state or room may be there: wakes an acquire */
  pthread_cond_t drained; /* a state came back after shutdown: wakes luapool_shutdown's drain */
  /* Under the mutex. */
  unsigned sleepers;             /* blocked acquires inside pthread_cond_wait on cond */
  unsigned signals;              /* signals sent to cond that no returning sleeper has taken yet */
  bool async_next;               /* the kind the next wake prefers when both wait: alternate */
  bool shut;                     /* lp_wait_wake_all ran: no notifier opens any more */
  luapool_notifier *head, *tail; /* the FIFO of registered notifiers, oldest first */
  luapool_notifier *all;         /* every open notifier */
  /* Written under the mutex, read by stats with no lock: relaxed (a snapshot, may lag). */
  _Atomic uint64_t notified; /* wake-ups written to notifiers (shutdown's are not counted) */
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
void lp_wait_wake_one(lp_wait *w);        /* a state or room became available */
void lp_wait_wake_one_locked(lp_wait *w); /* the same, the caller holding the mutex (lp_wait_lock;
                                             cancel's pass-on, and tests/test_async.c) */
void lp_wait_wake_all(lp_wait *w);        /* shutdown: every waiter returns LUAPOOL_ECLOSED */
void lp_wait_wake_drain(lp_wait *w);      /* a state came back after shutdown */

/*
** Notifiers.  open: a new notifier on w's list (LUAPOOL_ECLOSED once lp_wait_wake_all ran,
** LUAPOOL_ENOMEM when the allocation or eventfd fails).  close: cancel, off the list, its fd
** closed, freed.  consume: a pending wake-up read off the fd (the owner, before it looks).
** async_enter: lock, register (once: already queued stays where it is), raise waiters; the
** caller looks, then leaves with async_leave (found: unregister too) and the mutex is released.
** cancel: unregister; a wake-up sent and not consumed goes on to another waiter.
** detach_all (luapool_destroy): every open notifier forgotten (pool NULL); returns how many.
*/
int lp_wait_notifier_open(lp_wait *w, luapool *p, luapool_notifier **out);
void lp_wait_notifier_close(lp_wait *w, luapool_notifier *n);
void lp_wait_notifier_consume(lp_wait *w, luapool_notifier *n);
void lp_wait_async_enter(lp_wait *w, luapool_notifier *n);
void lp_wait_async_leave(lp_wait *w, luapool_notifier *n, bool unregister);
void lp_wait_async_cancel(lp_wait *w, luapool_notifier *n);
unsigned lp_wait_detach_all(lp_wait *w);
/* A notifier that luapool_destroy detached: only the fd is left to close, and the memory. */
void lp_wait_notifier_free_detached(luapool_notifier *n);
uint64_t lp_wait_notified(lp_wait *w);

/*
** fork (pool.c's handlers): the mutex is taken before the fork and released after it.  In the
** child the parent's sleepers do not exist, but the condition variables still count them
** (signalling would wake nobody, destroying would wait for them for good): they are made anew,
** and the waiter count, which counted them too, is 0 (the child's one thread is in fork).  The
** child has none of the parent's event loops, and a notifier's eventfd is shared with the
** parent: the FIFO is emptied and every open notifier is marked forked (refused by
** luapool_acquire_async; luapool_notifier_close frees it) and forgotten.
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
