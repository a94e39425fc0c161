/*
** bench_pool.c: acquire+release throughput under contention, luapool against a mutex pool.
**
** The mutex pool is one pthread mutex around a stack of states: the pool most projects write by
** hand (GopherLua's README shows it).  Both reset with RESET_STACK (lua_settop(L, 0)), so the
** figures compare what the pools themselves cost.  For each thread count, N threads loop
** { acquire; release } until the main thread raises a stop flag; after one warm-up run, each
** repetition runs luapool and then the mutex pool, so both see the same machine noise.
**
** A benchmark measures and never asserts: it exits 1 only when setup fails.
*/
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "bench_util.h"
#include "luapool.h"

#define CACHE_LINE 64
#define MAX_THREADS 256      /* per run; luapool's max_idle below stays above the states used */
#define MAX_THREAD_COUNTS 16 /* entries in --threads */
#define MAX_REPS BENCH_MAX_REPS

/* ---- the two pools behind one interface ------------------------------------------------ */

/* Every operation returns LUAPOOL_OK or a LUAPOOL_E* code, so luapool_strerror reports both. */
typedef struct pool_ops {
  const char *name;
  int (*open)(void **handle);
  int (*acquire)(void *handle, lua_State **out); /* waits without limit */
  void (*release)(void *handle, lua_State *L);
  void (*close)(void *handle); /* every state is released */
} pool_ops;

typedef struct tested_pool {
  const pool_ops *ops;
  void *handle;
} tested_pool;

static int luapool_bench_open(void **handle) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.reset = LUAPOOL_RESET_STACK;
  /* Above any state count a run reaches: a trim mid-run would make luapool create states again,
     which the mutex pool, keeping every state it ever made, never does. */
  cfg.max_idle = 1024;
  luapool *p;
  int rc = luapool_create(&cfg, &p);
  if (rc == LUAPOOL_OK)
    *handle = p;
  return rc;
}

static int luapool_bench_acquire(void *handle, lua_State **out) {
  return luapool_acquire(handle, -1, out);
}

static void luapool_bench_release(void *handle, lua_State *L) {
  luapool_release(handle, L);
}

static void luapool_bench_close(void *handle) {
  (void)luapool_shutdown(handle, -1); /* every state is back: the drain is immediate */
  luapool_destroy(handle);
}

static const pool_ops luapool_bench_ops = {"luapool", luapool_bench_open, luapool_bench_acquire,
                                           luapool_bench_release, luapool_bench_close};

typedef struct mutex_pool {
  pthread_mutex_t lock;
  lua_State **states; /* the idle states, a stack: the last released is the next acquired */
  size_t count, capacity;
} mutex_pool;

static int mutex_pool_new_state(lua_State **out) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return LUAPOOL_ENOMEM;
  lua_pushcfunction(L, bench_open_safe_libs);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_close(L);
    return LUAPOOL_EINIT;
  }
  *out = L;
  return LUAPOOL_OK;
}

static int mutex_pool_open(void **handle) {
  mutex_pool *m = calloc(1, sizeof *m);
  if (m == NULL)
    return LUAPOOL_ENOMEM;
  if (pthread_mutex_init(&m->lock, NULL) != 0) {
    free(m);
    return LUAPOOL_ENOMEM;
  }
  *handle = m;
  return LUAPOOL_OK;
}

static int mutex_pool_acquire(void *handle, lua_State **out) {
  mutex_pool *m = handle;
  pthread_mutex_lock(&m->lock);
  if (m->count > 0) {
    *out = m->states[--m->count];
    pthread_mutex_unlock(&m->lock);
    return LUAPOOL_OK;
  }
  pthread_mutex_unlock(&m->lock);
  /* Empty: create outside the lock, as a hand-written pool does, so others are not held up. */
  return mutex_pool_new_state(out);
}

/* Under m->lock.  Rare: the stack only grows to the most states ever out at once. */
static bool mutex_pool_grow_locked(mutex_pool *m) {
  size_t capacity = m->capacity == 0 ? 16 : 2 * m->capacity;
  lua_State **states = realloc(m->states, capacity * sizeof *states);
  if (states == NULL)
    return false;
  m->states = states;
  m->capacity = capacity;
  return true;
}

static void mutex_pool_release(void *handle, lua_State *L) {
  mutex_pool *m = handle;
  lua_settop(L, 0); /* RESET_STACK, as luapool does it; outside the lock, like any reset */
  pthread_mutex_lock(&m->lock);
  if (m->count == m->capacity && !mutex_pool_grow_locked(m)) {
    pthread_mutex_unlock(&m->lock);
    lua_close(L); /* no room to keep it: dropping a state is safe, leaking it is not */
    return;
  }
  m->states[m->count++] = L;
  pthread_mutex_unlock(&m->lock);
}

static void mutex_pool_close(void *handle) {
  mutex_pool *m = handle;
  for (size_t i = 0; i < m->count; i++)
    lua_close(m->states[i]);
  free(m->states);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static const pool_ops mutex_pool_ops = {"mutex pool", mutex_pool_open, mutex_pool_acquire,
                                        mutex_pool_release, mutex_pool_close};

/* ---- one timed run ----------------------------------------------------------------------- */

/*
** What the workers of one run share.  stop has a cache line of its own: every worker reads it
** on every iteration, so a write to anything beside it would cost them all a miss.
*/
typedef struct run {
  _Alignas(CACHE_LINE) atomic_bool stop;
  _Alignas(CACHE_LINE) pthread_barrier_t start; /* the workers and the main thread */
  const tested_pool *pool;
} run;

/* One per thread, each on its own cache lines: the benchmark adds no false sharing. */
typedef struct worker {
  _Alignas(CACHE_LINE) uint64_t ops; /* acquire+release pairs completed */
  int rc;                            /* LUAPOOL_OK, or the error that stopped this worker */
  pthread_t thread;
  run *run;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  const tested_pool *pool = w->run->pool;
  uint64_t ops = 0; /* a local: the loop writes nothing but the pools' own memory */
  pthread_barrier_wait(&w->run->start);
  /* Relaxed: the flag only has to be seen eventually; pthread_join publishes the results. */
  while (!atomic_load_explicit(&w->run->stop, memory_order_relaxed)) {
    lua_State *L;
    int rc = pool->ops->acquire(pool->handle, &L);
    if (rc != LUAPOOL_OK) {
      w->rc = rc;
      break;
    }
    pool->ops->release(pool->handle, L);
    ops++;
  }
  w->ops = ops;
  return NULL;
}

/* Sleeps until seconds have passed since begin (CLOCK_MONOTONIC); a signal only shortens a nap. */
static void sleep_until(const struct timespec *begin, double seconds) {
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left = seconds - bench_seconds_between(begin, &now);
    if (left <= 0)
      return;
    struct timespec nap = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
    nanosleep(&nap, NULL);
  }
}

static void start_workers(run *r, worker *workers, int nthreads) {
  for (int i = 0; i < nthreads; i++) {
    workers[i] = (worker){.ops = 0, .rc = LUAPOOL_OK, .run = r};
    int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    if (err != 0) {
      /* The workers started so far wait at a barrier that can never open now: nothing can be
         cleaned up safely, so the process ends here. */
      fprintf(stderr, "bench_pool: cannot start thread %d: %s\n", i + 1, strerror(err));
      exit(1);
    }
  }
}

/* Runs nthreads workers on pool for seconds; *ops_per_sec is their total throughput. */
static int run_once(const tested_pool *pool, int nthreads, double seconds, double *ops_per_sec) {
  worker *workers = aligned_alloc(CACHE_LINE, (size_t)nthreads * sizeof *workers);
  if (workers == NULL)
    return LUAPOOL_ENOMEM;
  run r = {.pool = pool};
  atomic_init(&r.stop, false);
  if (pthread_barrier_init(&r.start, NULL, (unsigned)nthreads + 1) != 0) {
    free(workers);
    return LUAPOOL_ENOMEM;
  }
  start_workers(&r, workers, nthreads);

  /* The clock starts when every worker is released, not while threads are still being made. */
  struct timespec begin, end;
  pthread_barrier_wait(&r.start);
  clock_gettime(CLOCK_MONOTONIC, &begin);
  sleep_until(&begin, seconds);
  atomic_store_explicit(&r.stop, true, memory_order_relaxed);
  clock_gettime(CLOCK_MONOTONIC, &end);

  uint64_t total = 0;
  int rc = LUAPOOL_OK;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(workers[i].thread, NULL);
    total += workers[i].ops;
    if (rc == LUAPOOL_OK)
      rc = workers[i].rc;
  }
  pthread_barrier_destroy(&r.start);
  free(workers);
  *ops_per_sec = (double)total / bench_seconds_between(&begin, &end);
  return rc;
}

/* ---- repetitions and their bench_summary ------------------------------------------------------- */

enum { POOL_LUAPOOL, POOL_MUTEX, POOL_COUNT };

typedef struct options {
  double seconds; /* measured time of one repetition */
  int reps;
  int thread_counts[MAX_THREAD_COUNTS];
  int n_thread_counts;
} options;

static void report_failure(const char *what, int nthreads, int rc) {
  fprintf(stderr, "bench_pool: %s at %d thread(s): %s\n", what, nthreads, luapool_strerror(rc));
}

/*
** Measures one thread count on every pool.  The warm-up run (not reported) creates the states
** this thread count needs and warms the caches; then each repetition runs every pool in turn.
*/
static int measure_row(const tested_pool pools[POOL_COUNT], int nthreads, const options *opt,
                       bench_summary out[POOL_COUNT]) {
  double samples[POOL_COUNT][MAX_REPS]; /* 16 KiB */
  double ignored;
  for (int p = 0; p < POOL_COUNT; p++) {
    int rc = run_once(&pools[p], nthreads, opt->seconds, &ignored);
    if (rc != LUAPOOL_OK) {
      report_failure(pools[p].ops->name, nthreads, rc);
      return rc;
    }
  }
  for (int rep = 0; rep < opt->reps; rep++) {
    for (int p = 0; p < POOL_COUNT; p++) {
      int rc = run_once(&pools[p], nthreads, opt->seconds, &samples[p][rep]);
      if (rc != LUAPOOL_OK) {
        report_failure(pools[p].ops->name, nthreads, rc);
        return rc;
      }
    }
  }
  for (int p = 0; p < POOL_COUNT; p++)
    out[p] = bench_summarize(samples[p], opt->reps);
  return LUAPOOL_OK;
}

/* ---- output ------------------------------------------------------------------------------ */

static void print_header(const options *opt, long cores) {
  char cpu[128];
  bench_cpu_model(cpu, sizeof cpu);
  printf("bench_pool: acquire+release throughput, luapool against a mutex pool, RESET_STACK\n");
  printf("machine: %s, %ld online core(s), %s\n", cpu, cores, LUA_RELEASE);
  printf("each cell: %d repetition(s) of %.2f s after one warm-up, pools interleaved\n\n",
         opt->reps, opt->seconds);
  printf("threads  %-24s %8s  %-24s %8s  %s\n", "luapool Mops/s", "ns/op", "mutex pool Mops/s",
         "ns/op", "luapool/mutex");
  fflush(stdout);
}

/* "median [min-max]" in millions of operations per second. */
static void format_mops(char *buf, size_t size, bench_summary s) {
  snprintf(buf, size, "%.2f [%.2f-%.2f]", s.median / 1e6, s.min / 1e6, s.max / 1e6);
}

/* Time one thread spends per acquire+release: threads * 1e9 / total throughput. */
static double ns_per_op(int nthreads, double ops_per_sec) {
  return nthreads * 1e9 / ops_per_sec;
}

static void print_row(int nthreads, long cores, const bench_summary s[POOL_COUNT]) {
  char lib[64], mutex[64];
  format_mops(lib, sizeof lib, s[POOL_LUAPOOL]);
  format_mops(mutex, sizeof mutex, s[POOL_MUTEX]);
  double lib_median = s[POOL_LUAPOOL].median, mutex_median = s[POOL_MUTEX].median;
  printf("%6d%c  %-24s %8.1f  %-24s %8.1f  %.2f\n", nthreads, nthreads > cores ? '*' : ' ', lib,
         ns_per_op(nthreads, lib_median), mutex, ns_per_op(nthreads, mutex_median),
         lib_median / mutex_median);
  fflush(stdout);
}

/* Where luapool's states came from: shows the watchdog never trimmed during the runs. */
static void print_luapool_stats(luapool *p) {
  luapool_stats st;
  luapool_stats_get(p, &st);
  double acquires = st.acquires > 0 ? (double)st.acquires : 1;
  printf("\nluapool: %llu state(s) created, %llu trimmed; acquires: %.3f%% magazine, "
         "%.3f%% global list, %.3f%% other\n",
         (unsigned long long)st.created, (unsigned long long)st.trimmed,
         100.0 * (double)st.magazine_hits / acquires, 100.0 * (double)st.global_hits / acquires,
         100.0 * (double)st.misses / acquires);
}

static void print_legend(void) {
  printf("Mops/s: million acquire+release pairs per second, all threads together, median "
         "[min-max]; ns/op: threads * 1e9 / median, one thread's time per pair; luapool/mutex: "
         "ratio of the medians (above 1: luapool is faster); *: more threads than online "
         "cores.\n");
}

/* ---- options ----------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_pool [--seconds S] [--reps N] [--threads LIST] [--help]\n"
          "  --seconds S     measured time of one repetition: above 0, at most 3600 (default 0.3)\n"
          "  --reps N        repetitions per cell, 1 to %d; the median is reported (default 5)\n"
          "  --threads LIST  comma-separated thread counts, each 1 to %d, at most %d of them\n"
          "                  (default 1,2,4)\n",
          MAX_REPS, MAX_THREADS, MAX_THREAD_COUNTS);
}

static int one_option(void *o, const char *arg, const char *value) {
  options *opt = o;
  bool ok;
  if (strcmp(arg, "--seconds") == 0)
    ok = bench_parse_seconds(value, &opt->seconds);
  else if (strcmp(arg, "--reps") == 0)
    ok = bench_parse_reps(value, &opt->reps);
  else if (strcmp(arg, "--threads") == 0)
    ok = bench_parse_list(value, 1, MAX_THREADS, opt->thread_counts, MAX_THREAD_COUNTS,
                          &opt->n_thread_counts);
  else
    return BENCH_OPT_UNKNOWN;
  return ok ? BENCH_OPT_GOOD : BENCH_OPT_BAD;
}

/* 0: run; 1: --help printed; -1: bad options (reported). */
static int parse_args(int argc, char **argv, options *opt) {
  *opt = (options){.seconds = 0.3, .reps = 5, .thread_counts = {1, 2, 4}, .n_thread_counts = 3};
  return bench_parse_options(argc, argv, "bench_pool", usage, one_option, opt);
}

/* ---- main -------------------------------------------------------------------------------- */

static int open_pools(tested_pool pools[POOL_COUNT]) {
  for (int p = 0; p < POOL_COUNT; p++) {
    int rc = pools[p].ops->open(&pools[p].handle);
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "bench_pool: cannot create the %s: %s\n", pools[p].ops->name,
              luapool_strerror(rc));
      for (int q = 0; q < p; q++)
        pools[q].ops->close(pools[q].handle);
      return rc;
    }
  }
  return LUAPOOL_OK;
}

int main(int argc, char **argv) {
  options opt;
  int args = parse_args(argc, argv, &opt);
  if (args != 0)
    return args > 0 ? 0 : 2;

  tested_pool pools[POOL_COUNT] = {{&luapool_bench_ops, NULL}, {&mutex_pool_ops, NULL}};
  if (open_pools(pools) != LUAPOOL_OK)
    return 1;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  print_header(&opt, cores);
  int rc = LUAPOOL_OK;
  for (int i = 0; i < opt.n_thread_counts && rc == LUAPOOL_OK; i++) {
    bench_summary row[POOL_COUNT];
    rc = measure_row(pools, opt.thread_counts[i], &opt, row);
    if (rc == LUAPOOL_OK)
      print_row(opt.thread_counts[i], cores, row);
  }
  if (rc == LUAPOOL_OK) {
    print_luapool_stats(pools[POOL_LUAPOOL].handle);
    print_legend();
  }
  for (int p = 0; p < POOL_COUNT; p++)
    pools[p].ops->close(pools[p].handle);
  return rc == LUAPOOL_OK ? 0 : 1;
}
