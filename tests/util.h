/* Helpers shared by the luapool tests. */
#ifndef LUAPOOL_TEST_UTIL_H
#define LUAPOOL_TEST_UTIL_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>

#include "luapool.h"

/* A config with no watchdog thread, so that tests decide when maintenance runs. */
void util_config(luapool_config *cfg);

/* util_config with these libraries and magazine_size 1: the released state is the next one
   acquired. */
void util_config_libs(luapool_config *cfg, unsigned libs);

/* The two profiles that loop tests run under, indexed by _i, and their names for messages. */
extern const unsigned util_profiles[2];
extern const char *const util_profile_names[2];

/* Creates a pool or fails the test. */
luapool *util_pool(const luapool_config *cfg);

/* Acquires a state without waiting, or fails the test. */
lua_State *util_acquire(luapool *p);

/* Log capture: pass util_log as cfg.log; counts messages and keeps the last one. */
void util_log(void *ud, int level, const char *msg);
int util_log_count(void);
bool util_log_has(const char *needle); /* some captured message contains needle */

/* Runs a Lua chunk in L, failing the test on error; leaves the stack as it was. */
void util_run(lua_State *L, const char *chunk);
/* Runs a chunk that returns one value and returns it as an integer (booleans: 0 or 1). */
long long util_eval_int(lua_State *L, const char *chunk);
/* An on_create that runs the Lua chunk in ud (a string); a failure is printed and fails it. */
int util_on_create_lua(lua_State *L, void *ud);
/* Runs a text chunk named chunkname (failing the test if it does not compile); returns its error
   message in a static buffer, "" when it succeeded.  Leaves the stack empty. */
const char *util_error_of(lua_State *L, const char *chunkname, const char *chunk);
/* Runs chunk as util_error_of does, with a global started() that the chunk calls; another thread
   then waits delay_ms and calls luapool_interrupt(L).  The error, or "" if the chunk finished. */
const char *util_error_interrupted(lua_State *L, const char *chunk, long delay_ms);

luapool_stats util_stats(luapool *p);

/* Polls cond(p) every millisecond until it holds or `seconds` pass; returns whether it held.
   Used only where a background thread must act: tests never assert on durations. */
bool util_wait_until(bool (*cond)(luapool *p, void *arg), luapool *p, void *arg, double seconds);

/* The pool's internals that tests poll instead of sleeping (tests/peek.c): the acquires asleep
   or about to sleep, and whether luapool_shutdown has begun. */
unsigned util_waiters(luapool *p);
bool util_pool_closed(luapool *p);

/* A thread's work (pthread_create(..., util_wait_for_state, w)): acquire from p with timeout_ms,
   and release at once; rc and L are the acquire's, to read after the join. */
typedef struct util_waiter {
  luapool *p;
  long timeout_ms;
  int rc;
  lua_State *L;
} util_waiter;
void *util_wait_for_state(void *arg);

/* Milliseconds on the monotonic clock. */
double util_now_ms(void);

void util_sleep_ms(long ms);

/* Captures what the process writes to stderr (fd 2) between begin and end, through a pipe; end
   restores fd 2 and returns what was written (a static buffer, cut at 8 KiB). */
void util_stderr_begin(void);
const char *util_stderr_end(void);

/* Runs a test case file's suite, returns the process exit status. */
int util_run_suite(Suite *s);

#endif
