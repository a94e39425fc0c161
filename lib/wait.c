/*
** wait.c: waiting for a state, and waking (wait.h has the argument); the FIFO of event loops'
** notifiers (luapool_acquire_async).
*/
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fault.h"
#include "wait.h"

int lp_wait_init(lp_wait *w) {
  atomic_init(&w->waiters, 0);
  atomic_init(&w->notified, 0);
  w->sleepers = 0;
  w->signals = 0;
  w->async_next = true;
  w->shut = false;
  w->head = w->tail = w->all = NULL;
  if (pthread_mutex_init(&w->mutex, NULL) != 0 || lp_cond_init(&w->cond) != 0 ||
      lp_cond_init(&w->drained) != 0)
    return LUAPOOL_ENOMEM; /* on Linux these initializers do not fail */
  return LUAPOOL_OK;
}

void lp_wait_fini(lp_wait *w) {
  lp_assert(atomic_load(&w->waiters) == 0);
  lp_assert(w->head == NULL && w->all == NULL);
  pthread_mutex_destroy(&w->mutex);
  pthread_cond_destroy(&w->cond);
  pthread_cond_destroy(&w->drained);
}

void lp_wait_enter(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  atomic_fetch_add_explicit(&w->waiters, 1, memory_order_seq_cst);
}

/*
** sleepers counts the acquires inside pthread_cond_wait, signals the signals sent that no
** returning sleeper has taken: whoever returns (signalled, timed out, or spuriously) takes one,
** and looks next.  lp_wait_wake_one signals only while sleepers > signals, so a signal always
** has a sleeper of its own that will look after it (the invariant at lp_wait_wake_one).
*/
int lp_wait_sleep(lp_wait *w, const struct timespec *deadline) {
  w->sleepers++;
  int rc = lp_cond_wait(&w->cond, &w->mutex, deadline);
  w->sleepers--;
  if (w->signals > 0)
    w->signals--;
  return rc;
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

/* ---- notifiers: the FIFO and the eventfd ------------------------------------------------- */

/* Relaxed: every write is made under the mutex, which orders them (wait.h, luapool_notifier). */
static int state_of(const luapool_notifier *n) {
  return atomic_load_explicit(&n->state, memory_order_relaxed);
}

static void set_state(luapool_notifier *n, int state) {
  atomic_store_explicit(&n->state, state, memory_order_relaxed);
}

/* Makes fd readable.  An eventfd's write fails only past 2^64 - 2, which 1s cannot reach. */
static void fd_signal(int fd) {
  uint64_t one = 1;
  ssize_t r;
  do
    r = write(fd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
}

/* Makes fd unreadable (an eventfd's read takes its whole count). */
static void fd_drain(int fd) {
  uint64_t count;
  ssize_t r;
  do
    r = read(fd, &count, sizeof count);
  while (r < 0 && errno == EINTR);
}

static void fifo_push(lp_wait *w, luapool_notifier *n) {
  n->next = NULL;
  n->prev = w->tail;
  if (w->tail != NULL)
    w->tail->next = n;
  else
    w->head = n;
  w->tail = n;
}

static void fifo_remove(lp_wait *w, luapool_notifier *n) {
  if (n->prev != NULL)
    n->prev->next = n->next;
  else
    w->head = n->next;
  if (n->next != NULL)
    n->next->prev = n->prev;
  else
    w->tail = n->prev;
  n->next = n->prev = NULL;
}

/* Off the FIFO and uncounted (seq_cst, as every write of waiters: a read-modify-write). */
static void unqueue_locked(lp_wait *w, luapool_notifier *n) {
  fifo_remove(w, n);
  lp_assert(atomic_load(&w->waiters) > 0);
  atomic_fetch_sub_explicit(&w->waiters, 1, memory_order_seq_cst);
}

/* The oldest registered notifier is woken: off the FIFO, uncounted, its fd readable. */
static void notify_first_locked(lp_wait *w) {
  luapool_notifier *n = w->head;
  unqueue_locked(w, n);
  set_state(n, LP_NOTIFIER_SIGNALLED);
  /* one writer at a time (the mutex); stats read it with no lock */
  atomic_store_explicit(&w->notified, atomic_load_explicit(&w->notified, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  fd_signal(n->fd);
}

/*
** Exactly one waiter, if there is one to wake: a blocked acquire (a signal) or the oldest
** notifier (its eventfd).  When both kinds wait, the kinds alternate (async_next), so neither
** starves the other; among notifiers the order is FIFO, among blocked acquires it is the
** condition variable's.  A signal goes only to a sleeper no earlier signal has claimed
** (sleepers > signals): one sent while every sleeper is already claimed would wake nobody new,
** and the wake-up a notifier needed would be lost.  Invariant: the sleepers that have returned
** from pthread_cond_wait but not yet taken the mutex back are at least signals (a signal either
** unblocks one, or finds none blocked: then all sleepers, more than signals, are returning), and
** each of them looks after taking the mutex, so after this wake's publish.
*/
void lp_wait_wake_one_locked(lp_wait *w) {
  bool cond = w->sleepers > w->signals, async = w->head != NULL;
  if (async && (!cond || w->async_next)) {
    notify_first_locked(w);
    w->async_next = false;
  } else if (cond) {
    w->signals++;
    pthread_cond_signal(&w->cond);
    w->async_next = true;
  }
}

/*
** The notifier no longer waits: off the FIFO; or, woken and not consumed, its wake-up goes on
** to the next waiter (none is lost).  After shutdown its fd is left readable.
*/
static void cancel_locked(lp_wait *w, luapool_notifier *n) {
  switch (state_of(n)) {
  case LP_NOTIFIER_QUEUED:
    unqueue_locked(w, n);
    break;
  case LP_NOTIFIER_SIGNALLED:
    if (!w->shut) {
      fd_drain(n->fd);
      lp_wait_wake_one_locked(w);
    }
    break;
  default:
    break;
  }
  set_state(n, LP_NOTIFIER_IDLE);
}

int lp_wait_notifier_open(lp_wait *w, luapool *p, luapool_notifier **out) {
  luapool_notifier *n = lp_calloc(1, sizeof *n);
  if (n == NULL)
    return LUAPOOL_ENOMEM;
  n->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (n->fd < 0) {
    int e = errno;
    lp_free(n);
    errno = e; /* for the caller's log line */
    return LUAPOOL_ENOMEM;
  }
  n->pool = p;
  atomic_init(&n->state, LP_NOTIFIER_IDLE);
  pthread_mutex_lock(&w->mutex);
  if (w->shut) { /* shutdown began after the caller's check: it would not make this one readable */
    pthread_mutex_unlock(&w->mutex);
    close(n->fd);
    lp_free(n);
    return LUAPOOL_ECLOSED;
  }
  n->all_next = w->all;
  if (w->all != NULL)
    w->all->all_prev = n;
  w->all = n;
  pthread_mutex_unlock(&w->mutex);
  *out = n;
  return LUAPOOL_OK;
}

void lp_wait_notifier_free_detached(luapool_notifier *n) {
  close(n->fd);
  lp_free(n);
}

void lp_wait_notifier_close(lp_wait *w, luapool_notifier *n) {
  pthread_mutex_lock(&w->mutex);
  cancel_locked(w, n);
  if (n->all_prev != NULL)
    n->all_prev->all_next = n->all_next;
  else
    w->all = n->all_next;
  if (n->all_next != NULL)
    n->all_next->all_prev = n->all_prev;
  pthread_mutex_unlock(&w->mutex);
  lp_wait_notifier_free_detached(n);
}

/*
** The owner, before it looks: a wake-up sent to n is taken off its fd, and the look that follows
** is what it was for.  Unlocked while n is not SIGNALLED (a waker may make it so meanwhile: then
** async_enter or cancel, under the mutex, deal with it).
*/
void lp_wait_notifier_consume(lp_wait *w, luapool_notifier *n) {
  if (state_of(n) != LP_NOTIFIER_SIGNALLED)
    return;
  pthread_mutex_lock(&w->mutex);
  if (state_of(n) == LP_NOTIFIER_SIGNALLED && !w->shut) {
    fd_drain(n->fd);
    set_state(n, LP_NOTIFIER_IDLE);
  }
  pthread_mutex_unlock(&w->mutex);
}

/*
** As lp_wait_enter, for a notifier: the seq_cst increment under the mutex, then the caller's
** look, so the argument of wait.h holds as it is.  Already QUEUED: it keeps its place and its
** one count.  SIGNALLED (a wake came since consume): taken, the look that follows serves it, and
** the notifier queues again.  After shutdown nothing registers (the caller sees closed).
*/
void lp_wait_async_enter(lp_wait *w, luapool_notifier *n) {
  pthread_mutex_lock(&w->mutex);
  int state = state_of(n);
  if (w->shut || state == LP_NOTIFIER_QUEUED)
    return;
  if (state == LP_NOTIFIER_SIGNALLED)
    fd_drain(n->fd);
  fifo_push(w, n);
  set_state(n, LP_NOTIFIER_QUEUED);
  atomic_fetch_add_explicit(&w->waiters, 1, memory_order_seq_cst);
}

/* The mutex was held since async_enter, so no waker took n meanwhile: QUEUED or IDLE (shut). */
void lp_wait_async_leave(lp_wait *w, luapool_notifier *n, bool unregister) {
  if (unregister && state_of(n) == LP_NOTIFIER_QUEUED) {
    unqueue_locked(w, n);
    set_state(n, LP_NOTIFIER_IDLE);
  }
  pthread_mutex_unlock(&w->mutex);
}

/* Unlocked when IDLE: only the owner, the caller, moves n out of IDLE. */
void lp_wait_async_cancel(lp_wait *w, luapool_notifier *n) {
  if (state_of(n) == LP_NOTIFIER_IDLE)
    return;
  pthread_mutex_lock(&w->mutex);
  cancel_locked(w, n);
  pthread_mutex_unlock(&w->mutex);
}

/* luapool_destroy, after shutdown (the FIFO is empty): the leftovers are forgotten. */
unsigned lp_wait_detach_all(lp_wait *w) {
  unsigned count = 0;
  pthread_mutex_lock(&w->mutex);
  while (w->all != NULL) {
    luapool_notifier *n = w->all;
    w->all = n->all_next;
    cancel_locked(w, n);
    n->pool = NULL;
    n->all_next = n->all_prev = NULL;
    count++;
  }
  pthread_mutex_unlock(&w->mutex);
  return count;
}

uint64_t lp_wait_notified(lp_wait *w) {
  return atomic_load_explicit(&w->notified, memory_order_relaxed);
}

/* ---- the waking side ------------------------------------------------------------------------ */

void lp_wait_wake_one(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  lp_wait_wake_one_locked(w);
  pthread_mutex_unlock(&w->mutex);
}

/*
** Shutdown: every blocked acquire wakes, every notifier leaves the FIFO, and every open
** notifier's fd becomes readable (and stays so: nothing drains it once shut).
*/
void lp_wait_wake_all(lp_wait *w) {
  pthread_mutex_lock(&w->mutex);
  w->shut = true;
  pthread_cond_broadcast(&w->cond);
  while (w->head != NULL) {
    luapool_notifier *n = w->head;
    unqueue_locked(w, n);
    set_state(n, LP_NOTIFIER_IDLE);
  }
  for (luapool_notifier *n = w->all; n != NULL; n = n->all_next)
    fd_signal(n->fd);
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
  w->sleepers = 0;
  w->signals = 0;
  /* The child has no event loops, and each eventfd is shared with the parent: every notifier
     is forgotten, marked so that the child can only close it. */
  while (w->all != NULL) {
    luapool_notifier *n = w->all;
    w->all = n->all_next;
    n->forked = true;
    n->next = n->prev = n->all_next = n->all_prev = NULL;
    set_state(n, LP_NOTIFIER_IDLE);
  }
  w->head = w->tail = NULL;
  lp_cond_init_after_fork(&w->cond);
  lp_cond_init_after_fork(&w->drained);
  pthread_mutex_unlock(&w->mutex);
}
