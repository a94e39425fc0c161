/*
** base.h: the bottom of lib/, called by every other file and calling none: assertions, the log,
** time and deadlines, monotonic condition variables.
*/
#ifndef LUAPOOL_BASE_H
#define LUAPOOL_BASE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "luapool.h"

#define LP_CACHELINE 64

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

/* A message to cfg's log function, or "luapool: msg" on stderr (cfg NULL or without one). */
void lp_log(const luapool_config *cfg, int level, const char *fmt, ...) LP_PRINTF(3, 4);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t lp_time_ns(void);

/* The upkeep's clock in milliseconds: cfg's clock_ms, or CLOCK_MONOTONIC. */
uint64_t lp_time_upkeep_ms(const luapool_config *cfg);

/* A CLOCK_MONOTONIC deadline ms milliseconds from now, and whether it has passed. */
void lp_time_deadline(struct timespec *ts, long ms);
bool lp_time_passed(const struct timespec *deadline);
bool lp_time_before(const struct timespec *a, const struct timespec *b);

/* Condition variables that wait on CLOCK_MONOTONIC, so timeouts ignore wall-clock jumps. */
int lp_cond_init(pthread_cond_t *cond);
/* Waits until signalled or deadline (NULL: no limit); ETIMEDOUT once it has passed, else 0. */
int lp_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline);

#endif /* LUAPOOL_BASE_H */
