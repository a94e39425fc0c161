/*
** wait.c: waiting for a state, and waking (wait.h has the argument).
*/

#include "wait.h"

int lp_wait_init(lp_wait *w) {
  atomic_init(&w->waiters, 0);
  if (pthread_mutex_init(&w->mutex, NULL) != 0 || lp_cond_init(&w->cond) != 0 ||
      lp_cond_init(&w->drained) != 0)
    return LUAPOOL_ENOMEM; /* on Linux these initializers do not fail */
  return LUAPOOL_OK;
}

void lp_wait_fini(lp_wait *w) {
  lp_assert(atomic_load(&w->waiters) == 0);
  pthread_mutex_destroy(&w->mutex);
  pthread_cond_destroy(&w->cond);
  pthread_cond_destroy(&w->drained);
}

void lp_wait_enter(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  atomic_fetch_add_explicit(&w->waiters, 1, memory_order_seq_cst);
}

int lp_wait_sleep(lp_wait *w, const struct timespec *deadline) {
  return lp_cond_wait(&w->cond, &w->mutex, deadline);
}

void lp_wait_leave(lp_wait *w) {
  lp_assert(atomic_load(&w->waiters) > 0);
  atomic_fetch_sub_explicit(&w->waiters, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_lock(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
}

void lp_wait_unlock(lp_wait *w) {
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_sleep_drain(lp_wait *w, const struct timespec *deadline) {
  lp_cond_wait(&w->drained, &w->mutex, deadline);
}

void lp_wait_wake_one(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_wake_all(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_wake_drain(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  pthread_cond_broadcast(&w->drained);
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_fork_prepare(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
}

void lp_wait_fork_parent(lp_wait *w) {
  pthread_mutex_unlock(&w->mutex);
}

void lp_wait_fork_child(lp_wait *w) {
  /* The one plain store of waiters (wait.h): no other thread exists to be in its modification
     order. */
  atomic_store_explicit(&w->waiters, 0, memory_order_relaxed);
  lp_cond_init_after_fork(&w->cond);
  lp_cond_init_after_fork(&w->drained);
  pthread_mutex_unlock(&w->mutex);
}
