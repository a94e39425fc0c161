/*
** examples/epoll_server.c: an event loop that runs Lua requests without ever blocking on the
** pool.  One loop thread (main) owns a notifier; requests "arrive" in batches of BATCH (a real
** server reads them off its sockets), and each needs a state to run its Lua handler.  Two worker
** threads acquire states with the blocking luapool_acquire at the same time, so that with
** max_states = 2 the loop often finds none: luapool_acquire_async then returns LUAPOOL_EAGAIN,
** the loop waits in epoll_wait on the notifier's descriptor and on a timerfd armed for the
** oldest waiting request's deadline, and serves its queue when the descriptor becomes readable.
** A request that waits longer than TIMEOUT_MS expires; when none is left waiting, the loop calls
** luapool_notifier_cancel, so that a wake-up meant for it goes to another waiter.  It serves
** REQUESTS requests (or expires them) and exits 0; `make check` runs it.
**
** With libuv: open the notifier in the loop's thread and make a uv_poll_t on its descriptor
** (uv_poll_init(loop, &poll, luapool_notifier_fd(n))).  When luapool_acquire_async returns
** LUAPOOL_EAGAIN, uv_poll_start(&poll, UV_READABLE, on_readable); on_readable calls
** luapool_acquire_async for the waiting requests, and uv_poll_stop once none waits (after
** luapool_notifier_cancel).  Each request's timeout is a uv_timer_t (or one for the oldest,
** as the timerfd here).  Never read the descriptor yourself: luapool_acquire_async does.  At
** the end: uv_close the poll handle, then luapool_notifier_close.
*/
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <luapool.h>

#define REQUESTS 1000
#define BATCH 16
#define TIMEOUT_MS 5000
#define WORKERS 2
#define WORKER_REQUESTS 300

static const char handler[] = "local n = ... local s = 0 for i = 1, n do s = s + i end return s";

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the handler for request id on L: 0, or -1 (and a message). */
static int run_request(lua_State *L, int id) {
  lua_Integer n = id % 100 + 1;
  if (luapool_load(L, "handler", handler, sizeof handler - 1) != LUA_OK) {
    fprintf(stderr, "epoll_server: load: %s\n", lua_tostring(L, -1));
    lua_settop(L, 0);
    return -1;
  }
  lua_pushinteger(L, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "epoll_server: request %d: %s\n", id, lua_tostring(L, -1));
    lua_settop(L, 0);
    return -1;
  }
  lua_Integer got = lua_tointeger(L, -1);
  lua_settop(L, 0);
  if (got != n * (n + 1) / 2) {
    fprintf(stderr, "epoll_server: request %d: wrong answer\n", id);
    return -1;
  }
  return 0;
}

static luapool *pool;

/* A thread of a blocking server beside the loop: it competes for the same states. */
static void *worker(void *arg) {
  int *failed = arg;
  for (int i = 0; i < WORKER_REQUESTS; i++) {
    lua_State *L;
    int rc = luapool_acquire(pool, 10000, &L);
    if (rc == LUAPOOL_ETIMEDOUT)
      continue;
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "epoll_server: worker: %s\n", luapool_strerror(rc));
      *failed = 1;
      return NULL;
    }
    if (run_request(L, i) != 0)
      *failed = 1;
    usleep(500); /* a slower request than the loop's: it holds the state a while */
    luapool_release(pool, L);
    usleep(200); /* the next request of this worker comes a little later */
  }
  return NULL;
}

/* The loop's queue of waiting requests: arrival order, so deadlines ascend. */
typedef struct request {
  int id;
  uint64_t deadline_ms;
} request;

static request queue[REQUESTS];
static int head, tail; /* waiting: queue[head .. tail) */

/* Arms the timer for the oldest waiting request's deadline (one shot). */
static int arm_timer(int tfd) {
  uint64_t deadline = queue[head].deadline_ms, now = now_ms();
  uint64_t in = deadline > now ? deadline - now : 1;
  struct itimerspec its = {.it_value = {(time_t)(in / 1000), (long)(in % 1000) * 1000000L}};
  return timerfd_settime(tfd, 0, &its, NULL);
}

int main(void) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.max_states = 2;    /* fewer states than threads that want one */
  cfg.magazine_size = 0; /* every state through the global list: the loop competes for each */
  int rc = luapool_create(&cfg, &pool);
  if (rc != LUAPOOL_OK) {
    fprintf(stderr, "epoll_server: luapool_create: %s\n", luapool_strerror(rc));
    return 1;
  }
  luapool_notifier *n;
  rc = luapool_notifier_open(pool, &n);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (rc != LUAPOOL_OK || ep < 0 || tfd < 0) {
    fprintf(stderr, "epoll_server: setup: %s\n",
            rc != LUAPOOL_OK ? luapool_strerror(rc) : strerror(errno));
    return 1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = luapool_notifier_fd(n)};
  struct epoll_event tev = {.events = EPOLLIN, .data.fd = tfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, luapool_notifier_fd(n), &ev) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) != 0) {
    perror("epoll_server: epoll_ctl");
    return 1;
  }

  int failed = 0, worker_failed[WORKERS] = {0};
  pthread_t workers[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    if (pthread_create(&workers[i], NULL, worker, &worker_failed[i]) != 0) {
      fprintf(stderr, "epoll_server: pthread_create failed\n");
      return 1;
    }

  int arrived = 0, served = 0, expired = 0, waits = 0;
  while (!failed && served + expired < REQUESTS) {
    for (int k = 0; k < BATCH && arrived < REQUESTS; k++, arrived++)
      queue[tail++] = (request){arrived, now_ms() + TIMEOUT_MS};
    /* Serve the waiting requests while states come. */
    rc = LUAPOOL_OK;
    while (head < tail) {
      lua_State *L;
      rc = luapool_acquire_async(n, &L);
      if (rc != LUAPOOL_OK)
        break;
      if (run_request(L, queue[head].id) != 0)
        failed = 1;
      luapool_release(pool, L);
      head++;
      served++;
    }
    if (rc != LUAPOOL_OK && rc != LUAPOOL_EAGAIN) {
      fprintf(stderr, "epoll_server: luapool_acquire_async: %s\n", luapool_strerror(rc));
      failed = 1;
      break;
    }
    if (head == tail) {
      usleep(500); /* none waits: the next batch comes in a while (a real loop polls sockets) */
      continue;
    }
    /* LUAPOOL_EAGAIN: wait for the notifier or the oldest deadline, never on the pool. */
    waits++;
    if (arm_timer(tfd) != 0) {
      perror("epoll_server: timerfd_settime");
      failed = 1;
      break;
    }
    struct epoll_event got[2];
    int k = epoll_wait(ep, got, 2, 2 * TIMEOUT_MS); /* the timer fires within TIMEOUT_MS */
    if (k <= 0) {
      fprintf(stderr, "epoll_server: epoll_wait: %s\n",
              k == 0 ? "neither fd fired" : strerror(errno));
      failed = 1;
      break;
    }
    for (int i = 0; i < k; i++) {
      if (got[i].data.fd != tfd)
        continue; /* the notifier: the next turn's luapool_acquire_async reads it */
      uint64_t ticks;
      if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        perror("epoll_server: read timerfd");
      for (uint64_t now = now_ms(); head < tail && queue[head].deadline_ms <= now; head++)
        expired++; /* a real server answers 503 here */
      if (head == tail)
        luapool_notifier_cancel(n); /* no request wants a state: pass a wake-up on */
    }
  }

  for (int i = 0; i < WORKERS; i++) {
    pthread_join(workers[i], NULL);
    failed |= worker_failed[i];
  }
  luapool_notifier_close(n);
  close(tfd);
  close(ep);
  luapool_stats s;
  luapool_stats_get(pool, &s);
  rc = luapool_shutdown(pool, 10000);
  luapool_destroy(pool);
  printf("epoll_server: %d requests served, %d expired; the loop waited %d times, notified %llu "
         "times\n",
         served, expired, waits, (unsigned long long)s.async_notified);
  if (failed || rc != LUAPOOL_OK || served == 0) {
    fprintf(stderr, "epoll_server: FAILED\n");
    return 1;
  }
  return 0;
}
