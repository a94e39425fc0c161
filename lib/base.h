/*
** base.h: the bottom of lib/, called by every other file and calling none: assertions, the log,
** the callbacks' mark, time and deadlines, monotonic condition variables.
*/
#ifndef LUAPOOL_BASE_H
#define LUAPOOL_BASE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "luapool.h"

#define LP_CACHELINE 64

/* LP_TSAN: built with ThreadSanitizer (gcc defines __SANITIZE_THREAD__, clang has the feature). */
#if defined(__SANITIZE_THREAD__)
#define LP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LP_TSAN 1
#endif
#endif

#if defined(__GNUC__)
#define LP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define LP_PRINTF(fmt, args)
#endif

/*
** lp_assert(c): an invariant the code relies on.  Checked in `./configure --enable-debug` builds
** (LP_DEBUG), where a violation prints where it failed and aborts; compiled away otherwise, as
** Lua's lua_assert.  c must have no side effects.
*/
#ifdef LP_DEBUG
#define lp_assert(c) ((c) ? (void)0 : lp_assert_fail(#c, __FILE__, __LINE__, __func__))
_Noreturn void lp_assert_fail(const char *what, const char *file, int line, const char *fn);
#else
#define lp_assert(c) ((void)sizeof((c) ? 1 : 0))
#endif

/*
** A message to cfg's log function, or "luapool: msg" on stderr (cfg NULL or without one).  A
** message logged while the calling thread is already inside a log callback (the callback called
** luapool, and luapool had something to say) goes to stderr too: never into log again.
*/
void lp_log(const luapool_config *cfg, int level, const char *fmt, ...) LP_PRINTF(3, 4);

/*
** The callbacks.  Every call of a config's function pointer goes through one of these (lp_log
** for log, lp_time_upkeep_ms for clock_ms), which mark the calling thread as inside a callback
** for the length of the call.  The mark is thread-local and nests; it names the innermost
** callback.  Public functions that would block on a lock or a thread the callback's caller may
** hold (pool.c: maintain, shutdown, destroy, create, and an acquire that would create or wait)
** refuse while it is set.  A Lua error can unwind through on_create (a longjmp): the protected
** call around it saves the mark and puts it back (lp_cb_save, lp_cb_restore).
*/
typedef struct lp_cb_mark {
  unsigned depth;   /* callbacks the thread is inside */
  unsigned in_log;  /* of those, log callbacks */
  const char *name; /* the innermost: "on_create", "on_state", "log", "clock_ms" */
} lp_cb_mark;

/* The innermost callback the calling thread is inside, or NULL. */
const char *lp_cb_inside(void);
lp_cb_mark lp_cb_save(void);
void lp_cb_restore(lp_cb_mark mark);
/* A generation's on_create (not NULL; state.c: the current one, not always cfg's) and
   cfg->on_state (not NULL), marked. */
int lp_cb_on_create(int (*on_create)(lua_State *L, void *ud), void *ud, lua_State *L);
void lp_cb_on_state(const luapool_config *cfg, int event, int reason, lua_State *L);
/* lua_pcall(L, nargs, nresults, 0) of host code, marked as the callback name (module.c's reset
   functions): the mark is put back however the call ends. */
int lp_cb_pcall(lua_State *L, int nargs, int nresults, const char *name);

/*
** The calling thread's Linux thread id (gettid), as ps and /proc show it; one system call per
** thread, then a thread-local load.  lp_thread_id_after_fork: in a fork's child (its one thread
** is the forking one, which has a new id there), forget the cached id.
*/
long lp_thread_id(void);
void lp_thread_id_after_fork(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t lp_time_ns(void);

/* The upkeep's clock in milliseconds: cfg's clock_ms (marked as a callback), or CLOCK_MONOTONIC. */
uint64_t lp_time_upkeep_ms(const luapool_config *cfg);

/* A CLOCK_MONOTONIC deadline ms milliseconds from now, and whether it has passed. */
void lp_time_deadline(struct timespec *ts, long ms);
bool lp_time_passed(const struct timespec *deadline);
bool lp_time_before(const struct timespec *a, const struct timespec *b);

/* Condition variables that wait on CLOCK_MONOTONIC, so timeouts ignore wall-clock jumps. */
int lp_cond_init(pthread_cond_t *cond);
/*
** In a fork's child: cond as new, whatever the parent's threads left in it (waiters that do not
** exist here, whom a signal would go to and a destroy would wait for).  Not destroyed first, for
** that reason: glibc's initializer writes every field.
*/
void lp_cond_init_after_fork(pthread_cond_t *cond);
/* Waits until signalled or deadline (NULL: no limit); ETIMEDOUT once it has passed, else 0. */
int lp_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline);

#endif /* LUAPOOL_BASE_H */
