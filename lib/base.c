/*
** base.c: assertions, the log, time, condition variables (base.h).
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base.h"

#ifdef LP_DEBUG
void lp_assert_fail(const char *what, const char *file, int line, const char *fn) {
  fprintf(stderr, "luapool: %s:%d: %s: assertion failed: %s\n", file, line, fn, what);
  abort();
}
#endif

void lp_log(const luapool_config *cfg, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (cfg != NULL && cfg->log != NULL)
    cfg->log(cfg->log_ud, level, msg);
  else
    fprintf(stderr, "luapool: %s\n", msg);
}

uint64_t lp_time_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lp_time_upkeep_ms(const luapool_config *cfg) {
  if (cfg->clock_ms != NULL)
    return cfg->clock_ms(cfg->clock_ud);
  return lp_time_ns() / 1000000u;
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

int lp_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline) {
  if (deadline == NULL) {
    pthread_cond_wait(cond, mutex);
    return 0;
  }
  int rc = pthread_cond_timedwait(cond, mutex, deadline);
  return rc == ETIMEDOUT || lp_time_passed(deadline) ? ETIMEDOUT : 0;
}
