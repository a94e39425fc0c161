/*
** base.c: assertions, the log, the callbacks' mark, time, condition variables (base.h).
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base.h"

#ifdef LP_DEBUG
void lp_assert_fail(const char *what, const char *file, int line, const char *fn) {
  (void)fprintf(stderr, "luapool: %s:%d: %s: assertion failed: %s\n", file, line, fn, what);
  abort();
}
#endif

/* The calling thread's mark (base.h).  Not initial-exec: it is read on slow paths only. */
static _Thread_local lp_cb_mark cb;

lp_cb_mark lp_cb_save(void) {
  return cb;
}

void lp_cb_restore(lp_cb_mark mark) {
  cb = mark;
}

const char *lp_cb_inside(void) {
  return cb.depth != 0 ? cb.name : NULL;
}

static lp_cb_mark cb_enter(const char *name) {
  lp_cb_mark was = cb;
  cb.depth++;
  cb.name = name;
  return was;
}

int lp_cb_on_create(int (*on_create)(lua_State *L, void *ud), void *ud, lua_State *L) {
  lp_cb_mark was = cb_enter("on_create");
  int rc = on_create(L, ud); /* a Lua error skips the restore: state.c's protected call restores
                                instead */
  cb = was;
  return rc;
}

int lp_cb_pcall(lua_State *L, int nargs, int nresults, const char *name) {
  lp_cb_mark was = cb_enter(name);
  int status = lua_pcall(L, nargs, nresults, 0);
  cb = was;
  return status;
}

void lp_cb_on_state(const luapool_config *cfg, int event, int reason, lua_State *L) {
  lp_cb_mark was = cb_enter("on_state");
  cfg->on_state(cfg->on_state_ud, event, reason, L);
  cb = was;
}

void lp_log(const luapool_config *cfg, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(msg, sizeof msg, fmt, ap); /* a longer message is cut: fine for a log */
  va_end(ap);
  if (cfg != NULL && cfg->log != NULL && cb.in_log == 0) {
    lp_cb_mark was = cb_enter("log");
    cb.in_log++;
    cfg->log(cfg->log_ud, level, msg);
    cb = was;
  } else {
    (void)fprintf(stderr, "luapool: %s\n", msg);
  }
}

/* The calling thread's id, 0 until its first lp_thread_id.  Read only when held_warn_ms is on. */
static _Thread_local long thread_id;

long lp_thread_id(void) {
  if (thread_id == 0)
    thread_id = (long)syscall(SYS_gettid);
  return thread_id;
}

void lp_thread_id_after_fork(void) {
  thread_id = 0;
}

uint64_t lp_time_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000U + (uint64_t)ts.tv_nsec;
}

uint64_t lp_time_upkeep_ms(const luapool_config *cfg) {
  if (cfg->clock_ms == NULL)
    return lp_time_ns() / 1000000U;
  lp_cb_mark was = cb_enter("clock_ms");
  uint64_t now = cfg->clock_ms(cfg->clock_ud);
  cb = was;
  return now;
}

void lp_time_deadline(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

bool lp_time_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

bool lp_time_passed(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return !lp_time_before(&now, deadline);
}

int lp_cond_init(pthread_cond_t *cond) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0)
    return -1;
  int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
  return rc;
}

void lp_cond_init_after_fork(pthread_cond_t *cond) {
  memset(cond, 0, sizeof(pthread_cond_t));
  (void)lp_cond_init(cond); /* on Linux it does not fail */
}

int lp_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline) {
  if (deadline == NULL) {
    pthread_cond_wait(cond, mutex);
    return 0;
  }
  int rc = pthread_cond_timedwait(cond, mutex, deadline);
  return rc == ETIMEDOUT || lp_time_passed(deadline) ? ETIMEDOUT : 0;
}
