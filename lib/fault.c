/*
** fault.c: fault injection (fault.h); compiled to nothing without LP_FAULTS.
**
** Each kind has a countdown: 0 is disarmed; n > 0 means the nth call from now fails.  A call
** takes one from it with a CAS, and the call that takes the last one fails; armed to persist,
** the countdown stays at 1 then, and every later call fails too.  Relaxed throughout:
** the counts publish no data, and a test reads them after the calls it cares about returned
** (on its own thread, or after joining the watchdog thread in destroy).
*/
#include "fault.h"

#ifdef LP_FAULTS

#include <errno.h>
#include <stdatomic.h>

static _Atomic unsigned long countdown[LP_FAULT_KINDS];
static _Atomic bool persist[LP_FAULT_KINDS];
static _Atomic unsigned long injected;
static _Atomic long balance;

static void arm(int kind, unsigned long n, bool persistent) {
  if (kind < 0 || kind >= LP_FAULT_KINDS)
    return;
  atomic_store_explicit(&countdown[kind], 0, memory_order_relaxed); /* no call sees half of it */
  atomic_store_explicit(&persist[kind], persistent, memory_order_relaxed);
  atomic_store_explicit(&countdown[kind], n, memory_order_relaxed);
}

void lp_fault_arm(int kind, unsigned long n) {
  arm(kind, n, false);
}

void lp_fault_arm_persistent(int kind, unsigned long n) {
  arm(kind, n, true);
}

void lp_fault_disarm(void) {
  for (int k = 0; k < LP_FAULT_KINDS; k++) {
    atomic_store_explicit(&countdown[k], 0, memory_order_relaxed);
    atomic_store_explicit(&persist[k], false, memory_order_relaxed);
  }
}

unsigned long lp_fault_injected(void) {
  return atomic_load_explicit(&injected, memory_order_relaxed);
}

long lp_fault_balance(void) {
  return atomic_load_explicit(&balance, memory_order_relaxed);
}

bool lp_fault_hit(int kind) {
  _Atomic unsigned long *c = &countdown[kind];
  unsigned long n = atomic_load_explicit(c, memory_order_relaxed);
  do {
    if (n == 0)
      return false;
    if (n == 1 && atomic_load_explicit(&persist[kind], memory_order_relaxed))
      break; /* stays at 1 */
  } while (!atomic_compare_exchange_weak_explicit(c, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed));
  if (n != 1)
    return false;
  atomic_fetch_add_explicit(&injected, 1, memory_order_relaxed);
  return true;
}

static void *counted(void *p) {
  if (p != NULL)
    atomic_fetch_add_explicit(&balance, 1, memory_order_relaxed);
  return p;
}

void *lp_fault_malloc(size_t n) {
  return lp_fault_hit(LP_FAULT_MALLOC) ? NULL : counted(malloc(n));
}

void *lp_fault_calloc(size_t n, size_t size) {
  return lp_fault_hit(LP_FAULT_MALLOC) ? NULL : counted(calloc(n, size));
}

/* A block moved by realloc is still one block; realloc(NULL, n) is a new one. */
void *lp_fault_realloc(void *p, size_t n) {
  if (lp_fault_hit(LP_FAULT_MALLOC))
    return NULL;
  void *q = realloc(p, n);
  return p == NULL ? counted(q) : q;
}

void *lp_fault_aligned_alloc(size_t align, size_t n) {
  return lp_fault_hit(LP_FAULT_MALLOC) ? NULL : counted(aligned_alloc(align, n));
}

void lp_fault_free(void *p) {
  if (p != NULL)
    atomic_fetch_sub_explicit(&balance, 1, memory_order_relaxed);
  free(p);
}

int lp_fault_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*f)(void *),
                            void *arg) {
  return lp_fault_hit(LP_FAULT_THREAD) ? EAGAIN : pthread_create(t, attr, f, arg);
}

/* The test points: a function and its argument each, taken (and so run) once. */
typedef struct point_fn {
  void (*fn)(void *ud);
  void *ud;
} point_fn;

static pthread_mutex_t point_mu = PTHREAD_MUTEX_INITIALIZER;
static point_fn points[LP_POINTS];
static _Atomic bool point_armed[LP_POINTS]; /* a load on the path, the mutex only when set */

void lp_fault_on_point(int point, void (*fn)(void *ud), void *ud) {
  pthread_mutex_lock(&point_mu);
  points[point].fn = fn;
  points[point].ud = ud;
  atomic_store(&point_armed[point], fn != NULL);
  pthread_mutex_unlock(&point_mu);
}

void lp_fault_point(int point) {
  if (!atomic_load(&point_armed[point]))
    return;
  pthread_mutex_lock(&point_mu);
  point_fn f = points[point];
  points[point].fn = NULL;
  atomic_store(&point_armed[point], false);
  pthread_mutex_unlock(&point_mu);
  if (f.fn != NULL)
    f.fn(f.ud); /* unlocked: it may call luapool, which may reach another point */
}

#else

typedef int lp_fault_unused; /* ISO C wants a translation unit to declare something */

#endif /* LP_FAULTS */
