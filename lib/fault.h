/*
** fault.h: fault injection, a test-only switch (configure --enable-fault-injection defines
** LP_FAULTS).  Every allocation in luapool's own code (every file of lib/) goes through lp_malloc,
** lp_calloc, lp_realloc, lp_aligned_alloc and lp_free; the Lua allocator's growths ask
** LP_FAULT(LP_FAULT_LUA); the watchdog thread is started with lp_pthread_create.  Without
** LP_FAULTS each of these is the plain libc call, and LP_FAULT is the constant 0: a release build
** has no trace of this file.
**
** With LP_FAULTS a test arms one kind (lp_fault_arm) so that the nth call of that kind from now
** fails, once (or from then on: lp_fault_arm_persistent), and reads back how many failures were
** injected and the balance of luapool's own blocks (allocated minus freed).  The counts are
** atomics: the watchdog thread allocates too.
** None of this is exported from libluapool.so (only luapool_* is); the tests link the core
** library.  At the bottom of the module order: it calls nothing of luapool's.
*/
#ifndef LUAPOOL_FAULT_H
#define LUAPOOL_FAULT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

enum {
  LP_FAULT_MALLOC, /* luapool's own malloc, calloc, realloc, aligned_alloc */
  LP_FAULT_LUA,    /* a growth of a Lua heap (alloc.c): refused as a failed realloc would be */
  LP_FAULT_THREAD, /* pthread_create (the watchdog thread) */
  LP_FAULT_KINDS
};

/*
** Test points: places in a concurrent path where a test (built with LP_FAULTS) runs code of its
** own, once, to make an interleaving happen deterministically that a hammer test meets only by
** chance.  Without LP_FAULTS, LP_POINT is nothing.
*/
enum {
  LP_POINT_BEFORE_WAIT,           /* pool.c: an acquire's first look failed; it has not entered
                                     the waiters yet */
  LP_POINT_ASYNC_BEFORE_REGISTER, /* pool.c: luapool_acquire_async's first look failed; the
                                     notifier is not registered yet */
  LP_POINT_BEFORE_CLAIM,          /* pool.c: a release or discard found its slot (OUT) and has
                                     not claimed it yet (check_in's CAS) */
  LP_POINT_RELEASE_AFTER_KEY,     /* pool.c: a release passed the key's test (lp_pool_hit_key)
                                     and has neither reset nor cached its state yet */
  LP_POINT_POP_WINDOW,            /* magazine_inline.h: a magazine hit's plain pop has read the
                                     top entry and not yet emptied it (the owner's window) */
  LP_POINT_GUARD_LOOK,            /* guard.c: table.move, string.rep, a long table.sort or a
                                     long utf8.len is about to look at the deadline and the
                                     interrupt, inside the call */
  LP_POINTS
};

#ifdef LP_FAULTS

/* fn(ud) runs at the next time the calling code reaches point, once (any thread). */
void lp_fault_on_point(int point, void (*fn)(void *ud), void *ud);
void lp_fault_point(int point);
#define LP_POINT(point) lp_fault_point(point)

/* The nth call of kind from now fails (n >= 1); n 0 disarms that kind.  Any other armed kind
   stays armed. */
void lp_fault_arm(int kind, unsigned long n);
/* The nth call of kind from now fails, and every later one, until lp_fault_disarm: memory that
   stays exhausted (Lua collects and retries a refused growth once, which a one-shot failure of
   the Lua kind rarely survives to be seen). */
void lp_fault_arm_persistent(int kind, unsigned long n);
/* Disarms every kind. */
void lp_fault_disarm(void);
/* Failures injected since the process began (every kind). */
unsigned long lp_fault_injected(void);
/* luapool's own blocks allocated minus those freed, since the process began. */
long lp_fault_balance(void);

/* Should this call of kind fail?  Counts the call down if kind is armed. */
bool lp_fault_hit(int kind);

void *lp_fault_malloc(size_t n);
void *lp_fault_calloc(size_t n, size_t size);
void *lp_fault_realloc(void *p, size_t n);
void *lp_fault_aligned_alloc(size_t align, size_t n);
void lp_fault_free(void *p);
int lp_fault_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*f)(void *),
                            void *arg);

#define LP_FAULT(kind) lp_fault_hit(kind)
#define lp_malloc(n) lp_fault_malloc(n)
#define lp_calloc(n, size) lp_fault_calloc((n), (size))
#define lp_realloc(p, n) lp_fault_realloc((p), (n))
#define lp_aligned_alloc(align, n) lp_fault_aligned_alloc((align), (n))
#define lp_free(p) lp_fault_free(p)
#define lp_pthread_create(t, attr, f, arg) lp_fault_pthread_create((t), (attr), (f), (arg))

#else /* the plain calls: no cost */

#define LP_POINT(point) ((void)0)

#define LP_FAULT(kind) 0
#define lp_malloc(n) malloc(n)
#define lp_calloc(n, size) calloc((n), (size))
#define lp_realloc(p, n) realloc((p), (n))
#define lp_aligned_alloc(align, n) aligned_alloc((align), (n))
#define lp_free(p) free(p)
#define lp_pthread_create(t, attr, f, arg) pthread_create((t), (attr), (f), (arg))

#endif /* LP_FAULTS */

#endif /* LUAPOOL_FAULT_H */
