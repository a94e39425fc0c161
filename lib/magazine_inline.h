/*
** magazine_inline.h: the fast path of the magazines (magazine.c has the rest and the argument).
** A hit touches only the calling thread's lp_local: no lock, no write to a shared line.
*/
#ifndef LUAPOOL_MAGAZINE_INLINE_H
#define LUAPOOL_MAGAZINE_INLINE_H

#include "fault.h"
#include "internal.h"
#include "magazine.h"

/*
** The calling thread's table, allocated on its first use of any pool.  initial-exec: a plain
** %fs-relative load instead of a __tls_get_addr call (which cost ~40% of a magazine hit); it
** takes 8 bytes of static TLS, which glibc reserves room for even in a dlopen()ed library.
*/
extern _Thread_local lp_tls *lp_mag_tls __attribute__((tls_model("initial-exec")));

/*
** The first probe: the calling thread's lp_local for p if p is the pool it used last, else NULL
** (then lp_mag_local_get_slow, which pool.c calls after its own slow-path work).
*/
static inline lp_local *lp_mag_local_hit(luapool *p) {
  lp_tls *t = lp_mag_tls;
  if (t != NULL && t->e[0].pool == p && t->e[0].serial == p->serial)
    return t->e[0].local; /* never NULL in a filled entry */
  return NULL;
}

/* Counts n events for the calling thread (counters.h), or in the pool's if it has no lp_local. */
static inline void lp_mag_add(luapool *p, lp_local *l, int counter, uint64_t n) {
  if (l != NULL)
    lp_counters_add_owner(&l->counters, counter, n);
  else
    lp_counters_add_shared(&p->mags.retired, counter, n);
}

static inline void lp_mag_count(luapool *p, lp_local *l, int counter) {
  lp_mag_add(p, l, counter, 1);
}

/* Owner only.  Takes the most recently cached state; entries stolen meanwhile read as NULL. */
static inline lp_slot *lp_mag_pop(lp_local *l) {
  while (l->top > 0) {
    l->top--;
    if (atomic_load_explicit(&l->mag[l->top], memory_order_relaxed) == NULL)
      continue; /* stolen: stealers only empty entries */
    lp_slot *s = atomic_exchange_explicit(&l->mag[l->top], NULL, memory_order_acquire);
    if (s != NULL) {
      lp_assert(lp_slot_state(s) == LP_SLOT_IDLE);
      return s;
    }
  }
  return NULL;
}

/*
** The owner's side of the handshake with stealers (magazine.c, "the asymmetric handshake"):
** busy is raised, then stealing is read.  Between the two only a compiler barrier: a stealer
** raises stealing and then runs membarrier(2), which stands for the full barrier this side
** leaves out.  Not stealing: until lp_mag_owner_done, no stealer touches the magazine's
** entries, so the owner reads and writes them with plain loads and stores.  Stealing (or no
** membarrier in this process): busy is lowered again, the caller uses read-modify-writes, and
** now and then the owner lowers the flag again (lp_mag_calm).
*/
static inline bool lp_mag_owner_alone(lp_local *l) {
  atomic_store_explicit(&l->busy, 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
  if (__builtin_expect(atomic_load_explicit(&l->stealing, memory_order_relaxed) == 0, 1))
    return true;
  atomic_store_explicit(&l->busy, 0, memory_order_relaxed);
  if (__builtin_expect(++l->shared_ops >= LP_MAG_CALM_OPS, 0))
    lp_mag_calm(l);
  return false;
}

/* Release: a stealer that reads busy 0 (acquire) sees every entry this pass wrote. */
static inline void lp_mag_owner_done(lp_local *l) {
  atomic_store_explicit(&l->busy, 0, memory_order_release);
}

/*
** Owner only: lp_mag_pop's first look, inline in the hit.  The top entry's state, or NULL when
** there is none (the magazine is empty, or a stealer emptied the top entry: lp_mag_pop, out of
** line, then goes on below it).  Alone (lp_mag_owner_alone): a plain load and store; else the
** acquire exchange, which on an entry a stealer emptied writes NULL over NULL.
*/
static inline lp_slot *lp_mag_pop_top(lp_local *l) {
  unsigned i = l->top;
  if (i == 0)
    return NULL;
  lp_slot *s;
  if (__builtin_expect(lp_mag_owner_alone(l), 1)) {
    s = atomic_load_explicit(&l->mag[i - 1], memory_order_relaxed); /* its own store, or a
                                                                       stealer's NULL */
    LP_POINT(LP_POINT_POP_WINDOW);
    if (s != NULL)
      atomic_store_explicit(&l->mag[i - 1], NULL, memory_order_relaxed);
    lp_mag_owner_done(l);
  } else {
    s = atomic_exchange_explicit(&l->mag[i - 1], NULL, memory_order_acquire);
  }
  if (s != NULL) {
    l->top = i - 1;
    lp_assert(lp_slot_state(s) == LP_SLOT_IDLE);
  }
  return s;
}

/*
** Owner only.  Caches s; false when the magazine is full.  The store publishes the reset state to
** whoever takes the entry (release: a stealer's exchange reads it).  The caller then loads the
** waiter count (lp_wait_any): a store and then a load, the waker's side of Dekker's pattern
** ("Waking without lost wake-ups"), whose StoreLoad barrier is the waiter's membarrier(2) when
** alone (a waiter raises the count, then steals, whose handshake runs it), and this seq_cst
** exchange when not.
*/
static inline bool lp_mag_push(lp_local *l, lp_slot *s) {
  lp_assert(lp_slot_state(s) == LP_SLOT_IDLE);
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
  if (__builtin_expect(lp_mag_owner_alone(l), 1)) {
    lp_assert(atomic_load_explicit(&l->mag[i], memory_order_relaxed) == NULL);
    atomic_store_explicit(&l->mag[i], s, memory_order_release);
    lp_mag_owner_done(l);
    return true;
  }
  lp_slot *was = atomic_exchange_explicit(&l->mag[i], s, memory_order_seq_cst);
  lp_assert(was == NULL); /* at or above top, or a hole: empty, since only the owner fills */
  (void)was;
  return true;
}

#endif /* LUAPOOL_MAGAZINE_INLINE_H */
