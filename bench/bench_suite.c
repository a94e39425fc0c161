/*
** bench_suite.c: the contention benchmark suite.  Six workloads, six implementations, 1 to 16
** threads; a table on stdout, a CSV file per workload and gnuplot plots under bench/results/.
**
** Implementations:
**   luapool        the defaults (magazine_size 4), with the workload's reset, no watchdog thread
**                  (but in workload 6)
**   luapool mag=0  magazine_size 0: every acquire and release goes to the global Treiber stack
**   mutex pool     one pthread mutex (and a condition variable, for a cap) around a stack of
**                  states: the pool most projects write by hand.  It resets the stack only.
**   fresh state    luaL_newstate, the libraries, the work, lua_close: no pool at all
**   pinned state   each thread keeps one state for the whole run and runs the compiled handler
**                  again and again, never released nor reset (what HAProxy and Envoy do): the
**                  limit for a request
**   thread-local   a _Thread_local array of 4 states per thread, popped and pushed (the stack
**                  emptied): the lower bound of any pool's overhead
** Every state but the fresh one is made by luapool with the default libraries (the sandbox), so
** every implementation runs the same Lua; the mutex pool, the pinned state and the thread-local
** array take theirs from a luapool of their own and hold them for the whole run.  The fresh state
** opens the same libraries by hand, without the sandbox, as a server without a pool does.
**
** Workloads, and which implementation each one measures:
**                                               luapool mag=0 mutex fresh pinned thread-local
**   1 acquire + release, LUAPOOL_RESET_STACK       x      x     x     .     .        x
**   2 acquire + release, LUAPOOL_RESET_FULL        x      x     x     x     .        x
**   3 request: acquire, cached handler, release    x      x     x     x     x        x
**   4 cross-thread hand-off                        x      x     x     .     .        .
**   5 capped: max_states below the threads         x      x     x     .     .        .
**   6 bursts, the watchdog trims; RSS over time    x      .     x     .     .        .
**   7 request, a tiny handler                      x      x     x     x     x        x
**  1: the pool's own overhead: luapool empties the stack only, as the others do.
**  2: an untouched state under the default reset (LUAPOOL_RESET_FULL, LUAPOOL_LIBS_SAFE).  The
**     mutex pool and the thread-local array have no reset: their ratio is the reset's price; the
**     fresh state (new state, libraries, close) is what a reset replaces.
**  3: the handler (a 12-element table and a string.format, about 1 us) by luapool_load and
**     lua_pcall, under the default reset; the fresh state compiles it each time; the pinned
**     state calls the function it compiled once.
**  4: N threads acquire and pass each state through a ring of 8 to a partner among N other
**     threads, which releases it (2N threads; the row says N+N).  LUAPOOL_RESET_STACK.
**  5: the request of 3 with max_states max(1, threads / 2), so callers wait (luapool sleeps on a
**     condition variable; so does the mutex pool).  LUAPOOL_RESET_STACK, so that every pool
**     holds a state for the same work.  "waited": the share of acquires that slept.
**  6: 4 threads; in a burst each request holds 32 states with ~170 KB of Lua data each; then the
**     threads go quiet.  luapool with watchdog_interval_ms 100 and max_idle 16, against the
**     mutex pool; resident memory from /proc/self/statm every 20 ms (rss.csv, rss.png).
**  7: the request of 3 with a tiny handler (two table reads and a string.sub, about 0.2 us on a
**     pinned state), where the pool's and the reset's own cost weigh most.
**
** Measurement: for each thread count, one warm-up run per implementation (not reported), then
** the repetitions, the implementations interleaved so that all see the same machine noise.  The
** threads start together at a barrier and loop until the main thread raises a stop flag.  Each
** figure is the median with the [min-max] over the repetitions.  Latency: every 16th acquire is
** timed with clock_gettime into a per-thread log-linear histogram (1.6% resolution), merged over
** the threads and the repetitions.
**
** Output: the tables and the project's targets (2 threads, met or missed) on stdout; under --csv
** (bench/results): w<N>-<name>.csv per workload (implementation, threads, ops_per_sec_median,
** min, max, ratio_to_mutex, p50_ns, p99_ns, p999_ns, max_ns; empty where not measured; threads is
** N for workload 4's N+N), rss.csv (implementation, time_ms, rss_kb, phase), and when gnuplot is
** on PATH, throughput.png (workloads 1 and 3) and rss.png from the script plots.gp.
**
** A benchmark measures and never asserts: the targets are printed with met or missed; it exits
** 1 only when something fails to run (a pool that cannot be made, a Lua error: a bug here).
*/
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "bench_util.h"
#include "luapool.h"

#define CACHE_LINE 64
#define MAX_THREADS 256 /* per --threads entry; workload 4 runs twice as many */
#define MAX_THREAD_COUNTS 16
#define MAX_REPS BENCH_MAX_REPS
#define TL_SIZE 4      /* states in the thread-local array: luapool's default magazine_size */
#define RING_SIZE 8    /* workload 4's hand-off ring: a power of 2 */
#define SAMPLE_MASK 15 /* time every 16th acquire */

#define W6_THREADS 4
#define W6_HOLD 32 /* states one request holds in a burst */
#define W6_WATCHDOG_MS 100
#define W6_MAX_IDLE 16
#define W6_SAMPLE_MS 20
#define W6_START_S 0.3 /* quiet time before the first burst */

/* ---- the Lua code ------------------------------------------------------------------------ */

/* A request handler: about a microsecond of work, returning a number (workloads 3 and 5). */
static const char handler_src[] = "local t = {}\n"
                                  "for i = 1, 12 do t[i] = i * 3 end\n"
                                  "local s = string.format('%d items, last %d', #t, t[#t])\n"
                                  "return #s + t[1]\n";

/* A tiny one (workload 7): about 0.2 us pinned, a few table reads and a string.sub. */
static const char tiny_src[] = "local t = {3, 4}\n"
                               "return t[1] * t[2] + #string.sub('abcdef', 2, 4)\n";

/* Workload 6: about 150 KB of live data in a global, until the reset (if any) drops it. */
static const char data_src[] = "local t = {}\n"
                               "for i = 1, 2000 do t[i] = string.rep('x', 40) .. i end\n"
                               "data = t\n";

/* ---- clocks ------------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static void sleep_until_ns(uint64_t deadline) {
  for (uint64_t now = now_ns(); now < deadline; now = now_ns())
    sleep_ns(deadline - now);
}

/* What one clock_gettime costs, seen from the acquire timing: the median of back-to-back pairs. */
static uint64_t clock_overhead_ns(void) {
  uint64_t best[64];
  for (int i = 0; i < 64; i++) {
    uint64_t t0 = now_ns();
    best[i] = now_ns() - t0;
  }
  for (int i = 1; i < 64; i++) /* insertion sort: 64 values */
    for (int j = i; j > 0 && best[j - 1] > best[j]; j--) {
      uint64_t t = best[j];
      best[j] = best[j - 1];
      best[j - 1] = t;
    }
  return best[32];
}

/* ---- latency histogram ------------------------------------------------------------------- */

/*
** Log-linear: values below 64 ns exactly; above, 64 buckets per power of two (1.6% wide).  A
** thread records into its own; the main thread merges them after the run.
*/
#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_MAX_EXP 40 /* values are clamped below 2^40 ns (18 minutes) */
#define H_BUCKETS (H_SUB + (H_MAX_EXP - H_SUB_BITS) * H_SUB)

typedef struct hist {
  uint64_t count[H_BUCKETS];
  uint64_t total, max;
} hist;

static void hist_record(hist *h, uint64_t v) {
  if (v > h->max)
    h->max = v;
  h->total++;
  if (v >= UINT64_C(1) << H_MAX_EXP)
    v = (UINT64_C(1) << H_MAX_EXP) - 1;
  if (v < H_SUB) {
    h->count[v]++;
    return;
  }
  unsigned shift = 63 - (unsigned)__builtin_clzll(v) - H_SUB_BITS;
  h->count[H_SUB + shift * H_SUB + (unsigned)((v >> shift) & (H_SUB - 1))]++;
}

static void hist_merge(hist *into, const hist *h) {
  for (unsigned b = 0; b < H_BUCKETS; b++)
    into->count[b] += h->count[b];
  into->total += h->total;
  if (h->max > into->max)
    into->max = h->max;
}

/* The lowest value of bucket b. */
static uint64_t hist_value(unsigned b) {
  if (b < H_SUB)
    return b;
  unsigned shift = (b - H_SUB) / H_SUB, sub = (b - H_SUB) % H_SUB;
  return (uint64_t)(H_SUB + sub) << shift;
}

/* The q-quantile (0 < q < 1), rounded down by 1.6% at most. */
static uint64_t hist_percentile(const hist *h, double q) {
  uint64_t rank = (uint64_t)ceil(q * (double)h->total), seen = 0;
  if (rank < 1)
    rank = 1;
  for (unsigned b = 0; b < H_BUCKETS; b++) {
    seen += h->count[b];
    if (seen >= rank) {
      return hist_value(b);
    }
  }
  return h->max;
}

/* ---- workers ----------------------------------------------------------------------------- */

typedef struct impl_ops impl_ops;

/* Workload 4's hand-off: one acquirer pushes, one releaser pops. */
typedef struct ring {
  _Alignas(CACHE_LINE) atomic_size_t head; /* the next slot to read: written by the releaser */
  _Alignas(CACHE_LINE) atomic_size_t tail; /* the next slot to write: written by the acquirer */
  _Alignas(CACHE_LINE) atomic_bool done;   /* the acquirer pushes no more */
  lua_State *slot[RING_SIZE];
} ring;

enum { PHASE_QUIET, PHASE_BURST, PHASE_STOP };

/*
** What the workers of one run share.  stop and phase have cache lines of their own: every
** worker reads them on every iteration, so a write beside them would cost them all a miss.
*/
typedef struct run {
  _Alignas(CACHE_LINE) atomic_bool stop;
  _Alignas(CACHE_LINE) atomic_int phase; /* workload 6 */
  _Alignas(CACHE_LINE) pthread_barrier_t start;
  const impl_ops *ops;
  void *h;             /* the implementation's instance */
  const char *handler; /* the request handler's source (NULL: none) */
} run;

/* One per thread, each on its own cache lines: the benchmark adds no false sharing. */
typedef struct worker {
  _Alignas(CACHE_LINE) uint64_t ops; /* operations completed */
  bool failed;
  char error[256];
  lua_State *pinned; /* the pinned state's, with its compiled handler at index 1 */
  hist *lat;         /* NULL: acquires not timed */
  ring *ring;        /* workload 4 */
  pthread_t thread;
  run *run;
} worker;

static int worker_fail(worker *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->error, sizeof w->error, fmt, ap);
  va_end(ap);
  w->failed = true;
  return -1;
}

/* The error object on top of L's stack, popped, into w->error. */
static int lua_failed(worker *w, lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  worker_fail(w, "%s: Lua error: %s", what, msg != NULL ? msg : "(error object is not a string)");
  lua_pop(L, 1);
  return -1;
}

/* ---- how each implementation runs the handler -------------------------------------------- */

/* A pooled state: luapool_load (compiled once per state), lua_pcall. */
static int run_cached(worker *w, lua_State *L) {
  const char *src = w->run->handler;
  int status = luapool_load(L, "=handler", src, strlen(src));
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 1, 0);
  if (status != LUA_OK)
    return lua_failed(w, L, "handler");
  lua_pop(L, 1);
  return 0;
}

/* A fresh state: compiled each time. */
static int run_compiled(worker *w, lua_State *L) {
  const char *src = w->run->handler;
  int status = luaL_loadbufferx(L, src, strlen(src), "=handler", "t");
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 1, 0);
  if (status != LUA_OK)
    return lua_failed(w, L, "handler");
  lua_pop(L, 1);
  return 0;
}

/* The pinned state: the function compiled once, at stack index 1. */
static int run_pinned(worker *w, lua_State *L) {
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK)
    return lua_failed(w, L, "handler");
  lua_pop(L, 1);
  return 0;
}

static int run_data(worker *w, lua_State *L) {
  int status = luapool_load(L, "=data", data_src, sizeof data_src - 1);
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 0, 0);
  return status == LUA_OK ? 0 : lua_failed(w, L, "data chunk");
}

/* ---- the implementations ----------------------------------------------------------------- */

typedef struct pool_params {
  unsigned reset;       /* luapool's: LUAPOOL_RESET_STACK or LUAPOOL_RESET_FULL */
  unsigned cap;         /* max_states; 0: none */
  unsigned watchdog_ms; /* 0: no watchdog thread */
  unsigned max_idle;    /* 0: luapool's default */
} pool_params;

/* Every function that can fail returns LUAPOOL_OK or a LUAPOOL_E* code. */
struct impl_ops {
  const char *name; /* in the tables and the plots */
  const char *key;  /* in the CSV files */
  int (*open)(const pool_params *pp, void **h);
  void (*close)(void *h);                  /* every state is back */
  int (*thread_start)(void *h, worker *w); /* before the start barrier: 0, or -1 (w->error) */
  void (*thread_end)(void *h, worker *w);
  int (*acquire)(void *h, worker *w, lua_State **out); /* waits without limit */
  int (*run)(worker *w, lua_State *L);                 /* the handler: 0, or -1 (w->error) */
  void (*release)(void *h, worker *w, lua_State *L);
  bool timed; /* has an acquire to time (the pinned state has none) */
};

/* luapool, with or without magazines. */
static int lp_open_with(const pool_params *pp, bool magazines, void **h) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.reset = pp->reset;
  cfg.max_states = pp->cap;
  cfg.watchdog_interval_ms = pp->watchdog_ms;
  if (pp->max_idle != 0)
    cfg.max_idle = pp->max_idle;
  if (!magazines)
    cfg.magazine_size = 0;
  luapool *p;
  int rc = luapool_create(&cfg, &p);
  if (rc == LUAPOOL_OK)
    *h = p;
  return rc;
}

static int lp_open(const pool_params *pp, void **h) {
  return lp_open_with(pp, true, h);
}

static int lp0_open(const pool_params *pp, void **h) {
  return lp_open_with(pp, false, h);
}

static void lp_close(void *h) {
  (void)luapool_shutdown(h, -1); /* every state is back: the drain is immediate */
  luapool_destroy(h);
}

static int lp_acquire(void *h, worker *w, lua_State **out) {
  (void)w;
  return luapool_acquire(h, -1, out);
}

static void lp_release(void *h, worker *w, lua_State *L) {
  (void)w;
  luapool_release(h, L);
}

/* Where the other implementations get their states: a luapool with the defaults, no watchdog. */
static int source_open(const pool_params *pp, void **h) {
  (void)pp;
  pool_params defaults = {.reset = LUAPOOL_RESET_FULL};
  return lp_open_with(&defaults, true, h);
}

/* The mutex pool: a stack of states under one mutex; with a cap, a condition variable. */
typedef struct mutex_pool {
  pthread_mutex_t lock;
  pthread_cond_t freed;
  lua_State **states; /* the idle states: the last released is the next acquired */
  size_t count, capacity;
  unsigned live, cap, waiting;
  uint64_t acquires, waits;
  luapool *source;
} mutex_pool;

static int mp_open(const pool_params *pp, void **h) {
  mutex_pool *m = calloc(1, sizeof *m);
  if (m == NULL)
    return LUAPOOL_ENOMEM;
  m->cap = pp->cap;
  m->capacity = 64;
  m->states = malloc(m->capacity * sizeof *m->states);
  void *source = NULL;
  int rc = m->states == NULL ? LUAPOOL_ENOMEM : source_open(pp, &source);
  if (rc == LUAPOOL_OK && pthread_mutex_init(&m->lock, NULL) != 0)
    rc = LUAPOOL_ENOMEM;
  if (rc == LUAPOOL_OK && pthread_cond_init(&m->freed, NULL) != 0) {
    pthread_mutex_destroy(&m->lock);
    rc = LUAPOOL_ENOMEM;
  }
  if (rc != LUAPOOL_OK) {
    if (source != NULL)
      lp_close(source);
    free(m->states);
    free(m);
    return rc;
  }
  m->source = source;
  *h = m;
  return LUAPOOL_OK;
}

static void mp_close(void *h) {
  mutex_pool *m = h;
  for (size_t i = 0; i < m->count; i++)
    luapool_release(m->source, m->states[i]);
  lp_close(m->source);
  pthread_cond_destroy(&m->freed);
  pthread_mutex_destroy(&m->lock);
  free(m->states);
  free(m);
}

static int mp_acquire(void *h, worker *w, lua_State **out) {
  (void)w;
  mutex_pool *m = h;
  pthread_mutex_lock(&m->lock);
  m->acquires++;
  if (m->count == 0 && m->cap != 0 && m->live >= m->cap) {
    m->waits++;
    m->waiting++;
    do
      pthread_cond_wait(&m->freed, &m->lock);
    while (m->count == 0 && m->live >= m->cap);
    m->waiting--;
  }
  if (m->count > 0) {
    *out = m->states[--m->count];
    pthread_mutex_unlock(&m->lock);
    return LUAPOOL_OK;
  }
  m->live++;
  pthread_mutex_unlock(&m->lock);
  /* Empty: make one outside the lock, as a hand-written pool does, so others are not held up. */
  int rc = luapool_acquire(m->source, -1, out);
  if (rc != LUAPOOL_OK) {
    pthread_mutex_lock(&m->lock);
    m->live--;
    if (m->waiting > 0)
      pthread_cond_signal(&m->freed);
    pthread_mutex_unlock(&m->lock);
  }
  return rc;
}

/* Under m->lock.  Rare: the stack only grows to the most states ever out at once. */
static bool mp_grow_locked(mutex_pool *m) {
  lua_State **states = realloc(m->states, 2 * m->capacity * sizeof *states);
  if (states == NULL)
    return false;
  m->states = states;
  m->capacity *= 2;
  return true;
}

static void mp_release(void *h, worker *w, lua_State *L) {
  (void)w;
  mutex_pool *m = h;
  lua_settop(L, 0); /* the only reset a hand-written pool does; outside the lock */
  pthread_mutex_lock(&m->lock);
  bool kept = m->count < m->capacity || mp_grow_locked(m);
  if (kept)
    m->states[m->count++] = L;
  else
    m->live--; /* no room to keep it: give it back, which frees a place under the cap */
  if (m->waiting > 0)
    pthread_cond_signal(&m->freed);
  pthread_mutex_unlock(&m->lock);
  if (!kept)
    luapool_release(m->source, L);
}

static int fresh_open(const pool_params *pp, void **h) {
  (void)pp;
  *h = NULL;
  return LUAPOOL_OK;
}

static void fresh_close(void *h) {
  (void)h;
}

static int fresh_acquire(void *h, worker *w, lua_State **out) {
  (void)h;
  (void)w;
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return LUAPOOL_ENOMEM;
  lua_pushcfunction(L, bench_open_safe_libs); /* protected: out of memory raises, never aborts */
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_close(L);
    return LUAPOOL_EINIT;
  }
  *out = L;
  return LUAPOOL_OK;
}

static void fresh_release(void *h, worker *w, lua_State *L) {
  (void)h;
  (void)w;
  lua_close(L);
}

/* The pinned state: taken from the source once per thread, its handler compiled once. */
static int pinned_start(void *h, worker *w) {
  int rc = luapool_acquire(h, -1, &w->pinned);
  if (rc != LUAPOOL_OK) {
    w->pinned = NULL;
    return worker_fail(w, "pinned state: %s", luapool_strerror(rc));
  }
  const char *src = w->run->handler != NULL ? w->run->handler : handler_src;
  if (luapool_load(w->pinned, "=handler", src, strlen(src)) != LUA_OK)
    return lua_failed(w, w->pinned, "handler");
  return 0;
}

static void pinned_end(void *h, worker *w) {
  if (w->pinned != NULL) {
    lua_settop(w->pinned, 0);
    luapool_release(h, w->pinned);
    w->pinned = NULL;
  }
}

static int pinned_acquire(void *h, worker *w, lua_State **out) {
  (void)h;
  *out = w->pinned;
  return LUAPOOL_OK;
}

static void pinned_release(void *h, worker *w, lua_State *L) {
  (void)h;
  (void)w;
  (void)L;
}

/* The thread-local array: filled from the source once per thread. */
static _Thread_local lua_State *tl_states[TL_SIZE];
static _Thread_local int tl_count;

static int tl_start(void *h, worker *w) {
  while (tl_count < TL_SIZE) {
    int rc = luapool_acquire(h, -1, &tl_states[tl_count]);
    if (rc != LUAPOOL_OK)
      return worker_fail(w, "thread-local array: %s", luapool_strerror(rc));
    tl_count++;
  }
  return 0;
}

static void tl_end(void *h, worker *w) {
  (void)w;
  while (tl_count > 0)
    luapool_release(h, tl_states[--tl_count]);
}

static int tl_acquire(void *h, worker *w, lua_State **out) {
  (void)h;
  (void)w;
  if (tl_count == 0)
    return LUAPOOL_EINVAL; /* never: each acquire is released before the next */
  *out = tl_states[--tl_count];
  return LUAPOOL_OK;
}

static void tl_release(void *h, worker *w, lua_State *L) {
  (void)h;
  (void)w;
  lua_settop(L, 0);
  tl_states[tl_count++] = L;
}

enum { IMPL_LUAPOOL, IMPL_MAG0, IMPL_MUTEX, IMPL_FRESH, IMPL_PINNED, IMPL_TL, IMPL_COUNT };

static const impl_ops impls[IMPL_COUNT] = {
    [IMPL_LUAPOOL] = {"luapool", "luapool", lp_open, lp_close, NULL, NULL, lp_acquire, run_cached,
                      lp_release, true},
    [IMPL_MAG0] = {"luapool mag=0", "luapool_mag0", lp0_open, lp_close, NULL, NULL, lp_acquire,
                   run_cached, lp_release, true},
    [IMPL_MUTEX] = {"mutex pool", "mutex_pool", mp_open, mp_close, NULL, NULL, mp_acquire,
                    run_cached, mp_release, true},
    [IMPL_FRESH] = {"fresh state", "fresh_state", fresh_open, fresh_close, NULL, NULL,
                    fresh_acquire, run_compiled, fresh_release, true},
    [IMPL_PINNED] = {"pinned state", "pinned_state", source_open, lp_close, pinned_start,
                     pinned_end, pinned_acquire, run_pinned, pinned_release, false},
    [IMPL_TL] = {"thread-local", "thread_local_array", source_open, lp_close, tl_start, tl_end,
                 tl_acquire, run_cached, tl_release, true},
};

/* The share of acquires that slept, for the pools that count it; -1 otherwise. */
static double waited_share(int impl, void *h) {
  uint64_t acquires, waits;
  if (impl == IMPL_LUAPOOL || impl == IMPL_MAG0) {
    luapool_stats st;
    luapool_stats_get(h, &st);
    acquires = st.acquires;
    waits = st.waits;
  } else if (impl == IMPL_MUTEX) {
    mutex_pool *m = h;
    pthread_mutex_lock(&m->lock);
    acquires = m->acquires;
    waits = m->waits;
    pthread_mutex_unlock(&m->lock);
  } else
    return -1;
  return acquires > 0 ? (double)waits / (double)acquires : 0;
}

/* ---- the workloads ----------------------------------------------------------------------- */

enum { KIND_LOOP, KIND_CROSS, KIND_BURSTS };

#define BIT(i) (1u << (i))
#define POOLS (BIT(IMPL_LUAPOOL) | BIT(IMPL_MAG0) | BIT(IMPL_MUTEX))

typedef struct workload {
  int id;
  const char *key; /* the CSV file's name, less .csv */
  const char *title;
  int kind;
  unsigned reset;      /* luapool's */
  const char *handler; /* the request handler run between acquire and release, or NULL */
  bool latency;        /* every 16th acquire timed */
  bool capped;         /* max_states max(1, threads / 2) */
  unsigned impls;      /* BIT(IMPL_*) measured */
} workload;

static const workload workloads[] = {
    {1, "w1-acquire-release-stack", "acquire + release, LUAPOOL_RESET_STACK: pure pool overhead",
     KIND_LOOP, LUAPOOL_RESET_STACK, NULL, true, false, POOLS | BIT(IMPL_TL)},
    {2, "w2-acquire-release-full", "acquire + release of an untouched state, LUAPOOL_RESET_FULL",
     KIND_LOOP, LUAPOOL_RESET_FULL, NULL, false, false, POOLS | BIT(IMPL_FRESH) | BIT(IMPL_TL)},
    {3, "w3-request", "request: acquire, cached handler, release (LUAPOOL_RESET_FULL)", KIND_LOOP,
     LUAPOOL_RESET_FULL, handler_src, true, false,
     POOLS | BIT(IMPL_FRESH) | BIT(IMPL_PINNED) | BIT(IMPL_TL)},
    {4, "w4-cross-thread", "cross-thread: N threads acquire, N others release (RESET_STACK)",
     KIND_CROSS, LUAPOOL_RESET_STACK, NULL, false, false, POOLS},
    {5, "w5-capped", "capped: the request under max_states max(1, threads/2), RESET_STACK",
     KIND_LOOP, LUAPOOL_RESET_STACK, handler_src, true, true, POOLS},
    {6, "rss", "bursts, then quiet: the watchdog trims; resident memory over time", KIND_BURSTS,
     LUAPOOL_RESET_FULL, NULL, false, false, BIT(IMPL_LUAPOOL) | BIT(IMPL_MUTEX)},
    {7, "w7-request-tiny", "request, tiny handler (~0.2 us): acquire, cached handler, release",
     KIND_LOOP, LUAPOOL_RESET_FULL, tiny_src, true, false,
     POOLS | BIT(IMPL_FRESH) | BIT(IMPL_PINNED) | BIT(IMPL_TL)},
};
enum { WORKLOAD_COUNT = sizeof workloads / sizeof workloads[0] };

/* ---- options ----------------------------------------------------------------------------- */

typedef struct options {
  bool full;
  double seconds; /* measured time of one repetition */
  double warmup;  /* the warm-up run's */
  int reps;
  int threads[MAX_THREAD_COUNTS];
  int n_threads;
  bool run[WORKLOAD_COUNT];
  const char *csv_dir;
  bool plot;
  int cycles; /* workload 6: bursts */
  double burst_s, quiet_s;
} options;

/* ---- running threads --------------------------------------------------------------------- */

static void *loop_main(void *arg) {
  worker *w = arg;
  run *r = w->run;
  const impl_ops *ops = r->ops;
  void *h = r->h;
  hist *lat = w->lat;
  bool ok = ops->thread_start == NULL || ops->thread_start(h, w) == 0;
  pthread_barrier_wait(&r->start);
  uint64_t n = 0; /* a local: the loop writes nothing but the implementation's own memory */
  /* Relaxed: the flag only has to be seen eventually; pthread_join publishes the results. */
  while (ok && !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
    lua_State *L;
    int rc;
    if (lat != NULL && (n & SAMPLE_MASK) == 0) {
      uint64_t t0 = now_ns();
      rc = ops->acquire(h, w, &L);
      hist_record(lat, now_ns() - t0);
    } else
      rc = ops->acquire(h, w, &L);
    if (rc != LUAPOOL_OK) {
      worker_fail(w, "acquire: %s", luapool_strerror(rc));
      break;
    }
    if (r->handler != NULL && ops->run(w, L) != 0)
      ok = false;
    ops->release(h, w, L);
    n++;
  }
  w->ops = n;
  if (ops->thread_end != NULL)
    ops->thread_end(h, w);
  return NULL;
}

static void *acquirer_main(void *arg) {
  worker *w = arg;
  run *r = w->run;
  ring *q = w->ring;
  size_t tail = 0;
  pthread_barrier_wait(&r->start);
  while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
    lua_State *L;
    int rc = r->ops->acquire(r->h, w, &L);
    if (rc != LUAPOOL_OK) {
      worker_fail(w, "acquire: %s", luapool_strerror(rc));
      break;
    }
    while (L != NULL && tail - atomic_load_explicit(&q->head, memory_order_acquire) == RING_SIZE) {
      if (atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        r->ops->release(r->h, w, L);
        L = NULL;
      } else
        sched_yield(); /* full: let the partner run, on a machine with fewer cores */
    }
    if (L == NULL)
      break;
    q->slot[tail % RING_SIZE] = L;
    atomic_store_explicit(&q->tail, ++tail, memory_order_release);
  }
  atomic_store_explicit(&q->done, true, memory_order_release);
  return NULL;
}

static void *releaser_main(void *arg) {
  worker *w = arg;
  run *r = w->run;
  ring *q = w->ring;
  size_t head = 0;
  uint64_t n = 0;
  pthread_barrier_wait(&r->start);
  for (;;) {
    /* done before tail: once done is seen, tail has its last value. */
    bool done = atomic_load_explicit(&q->done, memory_order_acquire);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (head == tail) {
      if (done)
        break;
      sched_yield();
      continue;
    }
    for (; head != tail; n++) {
      lua_State *L = q->slot[head % RING_SIZE];
      atomic_store_explicit(&q->head, ++head, memory_order_release);
      r->ops->release(r->h, w, L);
    }
  }
  w->ops = n;
  return NULL;
}

static void start_thread(worker *w, void *(*main_fn)(void *)) {
  int err = pthread_create(&w->thread, NULL, main_fn, w);
  if (err != 0) {
    /* The workers started so far wait at a barrier that can never open now: nothing can be
       cleaned up safely, so the process ends here. */
    fprintf(stderr, "bench_suite: cannot start a thread: %s\n", strerror(err));
    exit(1);
  }
}

/* The first worker that failed, reported; 0 if none. */
static int report_workers(const char *what, int nthreads, const worker *workers, int n) {
  for (int i = 0; i < n; i++)
    if (workers[i].failed) {
      fprintf(stderr, "bench_suite: %s at %d thread(s): %s\n", what, nthreads, workers[i].error);
      return -1;
    }
  return 0;
}

/*
** One run of impl on workload wl with nthreads (2 * nthreads for KIND_CROSS) for seconds:
** *ops_per_sec, and the acquire latencies merged into lat when it is not NULL.  0, or -1 when a
** worker failed (reported).
*/
static int run_once(const workload *wl, int impl, void *h, int nthreads, double seconds, hist *lat,
                    double *ops_per_sec) {
  const impl_ops *ops = &impls[impl];
  bool cross = wl->kind == KIND_CROSS;
  int nworkers = cross ? 2 * nthreads : nthreads;
  worker *workers = aligned_alloc(CACHE_LINE, (size_t)nworkers * sizeof *workers);
  ring *rings = cross ? aligned_alloc(CACHE_LINE, (size_t)nthreads * sizeof *rings) : NULL;
  run *r = aligned_alloc(CACHE_LINE, sizeof *r);
  bool timed = lat != NULL && ops->timed;
  if (workers == NULL || (cross && rings == NULL) || r == NULL ||
      pthread_barrier_init(&r->start, NULL, (unsigned)nworkers + 1) != 0) {
    fprintf(stderr, "bench_suite: out of memory\n");
    free(workers);
    free(rings);
    free(r);
    return -1;
  }
  memset(workers, 0, (size_t)nworkers * sizeof *workers);
  atomic_init(&r->stop, false);
  atomic_init(&r->phase, PHASE_QUIET);
  r->ops = ops;
  r->h = h;
  r->handler = wl->handler;
  int rc = 0;
  for (int i = 0; i < nworkers && timed; i++)
    if ((workers[i].lat = calloc(1, sizeof(hist))) == NULL) {
      fprintf(stderr, "bench_suite: out of memory\n");
      exit(1); /* nothing started yet, but the cleanup is not worth the lines */
    }
  for (int i = 0; i < nthreads && cross; i++) {
    atomic_init(&rings[i].head, 0);
    atomic_init(&rings[i].tail, 0);
    atomic_init(&rings[i].done, false);
    workers[i].ring = workers[nthreads + i].ring = &rings[i];
  }
  for (int i = 0; i < nworkers; i++) {
    workers[i].run = r;
    start_thread(&workers[i], !cross ? loop_main : i < nthreads ? acquirer_main : releaser_main);
  }

  /* The clock starts when every worker is released, not while threads are still being made. */
  pthread_barrier_wait(&r->start);
  uint64_t begin = now_ns();
  sleep_until_ns(begin + (uint64_t)(seconds * 1e9));
  atomic_store_explicit(&r->stop, true, memory_order_relaxed);
  uint64_t end = now_ns();

  uint64_t total = 0;
  for (int i = 0; i < nworkers; i++) {
    pthread_join(workers[i].thread, NULL);
    total += workers[i].ops;
    if (workers[i].lat != NULL) {
      hist_merge(lat, workers[i].lat);
      free(workers[i].lat);
    }
  }
  char what[96];
  snprintf(what, sizeof what, "workload %d, %s", wl->id, ops->name);
  rc = report_workers(what, nthreads, workers, nworkers);
  pthread_barrier_destroy(&r->start);
  free(workers);
  free(rings);
  free(r);
  *ops_per_sec = (double)total / ((double)(end - begin) / 1e9);
  return rc;
}

/* ---- summaries --------------------------------------------------------------------------- */

typedef struct cell {
  bool done;
  bench_summary ops; /* operations per second */
  bool has_lat;
  uint64_t p50, p99, p999, max; /* acquire latency, ns */
  double waited;                /* the share of acquires that slept; -1: not counted */
} cell;

/* Every workload's cells, by thread count index and implementation. */
static cell results[WORKLOAD_COUNT][MAX_THREAD_COUNTS][IMPL_COUNT];

/* ---- output helpers ---------------------------------------------------------------------- */

/* v with three significant digits and units[i], i the times v was divided by 1000. */
static void fmt_units(char *buf, size_t size, double v, const char *const units[4],
                      bool whole_first) {
  int i = 0;
  while (v >= 999.5 && i < 3) {
    v /= 1000;
    i++;
  }
  int decimals = v >= 99.95 || (i == 0 && whole_first) ? 0 : v >= 9.995 ? 1 : 2;
  snprintf(buf, size, "%.*f%s", decimals, v, units[i]);
}

/* Operations per second: 850k, 22.3M. */
static void fmt_si(char *buf, size_t size, double v) {
  static const char *const suffix[] = {"", "k", "M", "G"};
  fmt_units(buf, size, v, suffix, false);
}

/* Nanoseconds with a unit: 41ns, 1.23us, 15.2ms. */
static void fmt_ns(char *buf, size_t size, uint64_t ns) {
  static const char *const unit[] = {"ns", "us", "ms", "s"};
  fmt_units(buf, size, (double)ns, unit, true);
}

/* The threads a row runs, as the table shows them: "4", or "4+4" for the hand-off. */
static void fmt_threads(char *buf, size_t size, const workload *wl, int n) {
  if (wl->kind == KIND_CROSS)
    snprintf(buf, size, "%d+%d", n, n);
  else
    snprintf(buf, size, "%d", n);
}

static int total_threads(const workload *wl, int n) {
  return wl->kind == KIND_CROSS ? 2 * n : n;
}

static FILE *open_output(const options *opt, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", opt->csv_dir, name);
  FILE *f = fopen(path, "w");
  if (f == NULL)
    fprintf(stderr, "bench_suite: cannot write %s: %s\n", path, strerror(errno));
  return f;
}

static void close_output(const options *opt, FILE *f, const char *name) {
  if (fclose(f) != 0)
    fprintf(stderr, "bench_suite: cannot write %s/%s: %s\n", opt->csv_dir, name, strerror(errno));
}

/* ---- workloads 1 to 5 -------------------------------------------------------------------- */

static void print_table_header(const workload *wl) {
  printf("\n== workload %d: %s ==\n", wl->id, wl->title);
  printf("%-8s %-14s %-21s %7s", "threads", "implementation", "ops/s median [min-max]", "x mutex");
  if (wl->latency)
    printf(" %8s %8s %8s %8s", "p50", "p99", "p99.9", "max");
  if (wl->capped)
    printf(" %4s %7s", "cap", "waited");
  printf("\n");
  fflush(stdout);
}

static void print_row(const workload *wl, int nthreads, long cores, unsigned cap,
                      const cell row[IMPL_COUNT]) {
  double mutex = row[IMPL_MUTEX].ops.median;
  for (int i = 0; i < IMPL_COUNT; i++) {
    if (!row[i].done)
      continue;
    const cell *c = &row[i];
    char threads[24], med[16], lo[16], hi[16], ops[64], ratio[16];
    fmt_threads(threads, sizeof threads, wl, nthreads);
    fmt_si(med, sizeof med, c->ops.median);
    fmt_si(lo, sizeof lo, c->ops.min);
    fmt_si(hi, sizeof hi, c->ops.max);
    snprintf(ops, sizeof ops, "%s [%s-%s]", med, lo, hi);
    snprintf(ratio, sizeof ratio, "%.2fx", c->ops.median / mutex);
    printf("%7s%c %-14s %-21s %7s", threads, total_threads(wl, nthreads) > cores ? '*' : ' ',
           impls[i].name, ops, ratio);
    if (wl->latency) {
      char p[4][16];
      if (c->has_lat) {
        fmt_ns(p[0], sizeof p[0], c->p50);
        fmt_ns(p[1], sizeof p[1], c->p99);
        fmt_ns(p[2], sizeof p[2], c->p999);
        fmt_ns(p[3], sizeof p[3], c->max);
      } else
        for (int k = 0; k < 4; k++)
          snprintf(p[k], sizeof p[k], "-");
      printf(" %8s %8s %8s %8s", p[0], p[1], p[2], p[3]);
    }
    if (wl->capped) {
      char waited[16] = "-";
      if (c->waited >= 0)
        snprintf(waited, sizeof waited, "%.1f%%", 100 * c->waited);
      printf(" %4u %7s", cap, waited);
    }
    printf("\n");
  }
  fflush(stdout);
}

/* Where luapool's states came from, over the whole workload. */
static void print_pool_notes(int impl, void *h) {
  if (impl == IMPL_LUAPOOL || impl == IMPL_MAG0) {
    luapool_stats st;
    luapool_stats_get(h, &st);
    double acquires = st.acquires > 0 ? (double)st.acquires : 1;
    printf("  %s: %llu state(s) made; acquires %.2f%% from the magazine, %.2f%% the global "
           "list, %.2f%% elsewhere\n",
           impls[impl].name, (unsigned long long)st.created,
           100.0 * (double)st.magazine_hits / acquires, 100.0 * (double)st.global_hits / acquires,
           100.0 * (double)st.misses / acquires);
  } else if (impl == IMPL_MUTEX) {
    printf("  %s: %u state(s) made\n", impls[impl].name, ((mutex_pool *)h)->live);
  }
}

/*
** Measures one thread count on every implementation of wl: a warm-up run each, then the
** repetitions with the implementations interleaved.
*/
static int measure_row(const workload *wl, void *handles[IMPL_COUNT], int nthreads,
                       const options *opt, cell out[IMPL_COUNT]) {
  static double samples[IMPL_COUNT][MAX_REPS];
  hist *lat[IMPL_COUNT] = {NULL};
  double ignored;
  int rc = 0;
  for (int i = 0; i < IMPL_COUNT && rc == 0; i++) {
    out[i] = (cell){.done = false, .waited = -1};
    if (!(wl->impls & BIT(i)))
      continue;
    if (wl->latency && impls[i].timed && (lat[i] = calloc(1, sizeof(hist))) == NULL) {
      fprintf(stderr, "bench_suite: out of memory\n");
      rc = -1;
    }
    if (rc == 0)
      rc = run_once(wl, i, handles[i], nthreads, opt->warmup, NULL, &ignored);
  }
  for (int rep = 0; rep < opt->reps && rc == 0; rep++)
    for (int i = 0; i < IMPL_COUNT && rc == 0; i++)
      if (wl->impls & BIT(i))
        rc = run_once(wl, i, handles[i], nthreads, opt->seconds, lat[i], &samples[i][rep]);
  for (int i = 0; i < IMPL_COUNT && rc == 0; i++) {
    if (!(wl->impls & BIT(i)))
      continue;
    out[i].done = true;
    out[i].ops = bench_summarize(samples[i], opt->reps);
    if (lat[i] != NULL && lat[i]->total > 0) {
      out[i].has_lat = true;
      out[i].p50 = hist_percentile(lat[i], 0.50);
      out[i].p99 = hist_percentile(lat[i], 0.99);
      out[i].p999 = hist_percentile(lat[i], 0.999);
      out[i].max = lat[i]->max;
    }
    if (wl->capped)
      out[i].waited = waited_share(i, handles[i]);
  }
  for (int i = 0; i < IMPL_COUNT; i++)
    free(lat[i]);
  return rc;
}

static int open_impls(const workload *wl, unsigned cap, void *handles[IMPL_COUNT]) {
  pool_params pp = {.reset = wl->reset, .cap = cap};
  for (int i = 0; i < IMPL_COUNT; i++) {
    handles[i] = NULL;
    if (!(wl->impls & BIT(i)))
      continue;
    int rc = impls[i].open(&pp, &handles[i]);
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "bench_suite: workload %d: cannot make the %s: %s\n", wl->id, impls[i].name,
              luapool_strerror(rc));
      for (int j = 0; j < i; j++)
        if (wl->impls & BIT(j))
          impls[j].close(handles[j]);
      return -1;
    }
  }
  return 0;
}

static void close_impls(const workload *wl, void *handles[IMPL_COUNT]) {
  for (int i = 0; i < IMPL_COUNT; i++)
    if (wl->impls & BIT(i))
      impls[i].close(handles[i]);
}

static unsigned cap_for(const workload *wl, int nthreads) {
  return !wl->capped ? 0 : nthreads >= 2 ? (unsigned)nthreads / 2 : 1;
}

static void write_csv(const workload *wl, const options *opt) {
  char name[128];
  snprintf(name, sizeof name, "%s.csv", wl->key);
  FILE *f = open_output(opt, name);
  if (f == NULL)
    return;
  fprintf(f, "implementation,threads,ops_per_sec_median,min,max,ratio_to_mutex,p50_ns,p99_ns,"
             "p999_ns,max_ns\n");
  for (int t = 0; t < opt->n_threads; t++) {
    const cell *row = results[wl->id - 1][t];
    for (int i = 0; i < IMPL_COUNT; i++) {
      const cell *c = &row[i];
      if (!c->done)
        continue;
      fprintf(f, "%s,%d,%.0f,%.0f,%.0f,%.4f,", impls[i].key, opt->threads[t], c->ops.median,
              c->ops.min, c->ops.max, c->ops.median / row[IMPL_MUTEX].ops.median);
      if (c->has_lat)
        fprintf(f, "%llu,%llu,%llu,%llu\n", (unsigned long long)c->p50, (unsigned long long)c->p99,
                (unsigned long long)c->p999, (unsigned long long)c->max);
      else
        fprintf(f, ",,,\n");
    }
  }
  close_output(opt, f, name);
}

static int measure_workload(const workload *wl, const options *opt, long cores) {
  void *handles[IMPL_COUNT];
  print_table_header(wl);
  if (!wl->capped && open_impls(wl, 0, handles) != 0)
    return -1;
  int rc = 0;
  for (int t = 0; t < opt->n_threads && rc == 0; t++) {
    int n = opt->threads[t];
    unsigned cap = cap_for(wl, n);
    if (wl->capped && open_impls(wl, cap, handles) != 0)
      return -1;
    cell *row = results[wl->id - 1][t];
    rc = measure_row(wl, handles, n, opt, row);
    if (rc == 0)
      print_row(wl, n, cores, cap, row);
    if (wl->capped)
      close_impls(wl, handles);
  }
  if (!wl->capped) {
    if (rc == 0)
      for (int i = 0; i < IMPL_COUNT; i++)
        if (wl->impls & BIT(i))
          print_pool_notes(i, handles[i]);
    close_impls(wl, handles);
  }
  if (rc == 0)
    write_csv(wl, opt);
  return rc;
}

/* ---- workload 6: bursts and resident memory ---------------------------------------------- */

typedef struct rss_sample {
  uint32_t t_ms, kb;
  int phase; /* 0: before the first burst; 2c - 1: burst c; 2c: the quiet after it */
} rss_sample;

typedef struct burst_result {
  bool done;
  rss_sample *rss;
  size_t n_rss;
  double per_sec; /* states served per second of burst */
  unsigned live;  /* states at the end */
  uint64_t trimmed, collections, recycled;
} burst_result;

static burst_result bursts[IMPL_COUNT];

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  long size, resident;
  int n = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return n == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

static void phase_name(char *buf, size_t size, int phase) {
  if (phase == 0)
    snprintf(buf, size, "start");
  else
    snprintf(buf, size, "%s %d", phase % 2 ? "burst" : "quiet", (phase + 1) / 2);
}

static void *burst_main(void *arg) {
  worker *w = arg;
  run *r = w->run;
  lua_State *held[W6_HOLD];
  uint64_t n = 0;
  for (;;) {
    int phase = atomic_load_explicit(&r->phase, memory_order_relaxed);
    if (phase == PHASE_STOP)
      break;
    if (phase == PHASE_QUIET) {
      sleep_ns(2000000); /* quiet: no acquire, so the watchdog counts this thread as idle */
      continue;
    }
    int k = 0;
    bool ok = true;
    while (ok && k < W6_HOLD) {
      int rc = r->ops->acquire(r->h, w, &held[k]);
      if (rc != LUAPOOL_OK) {
        ok = worker_fail(w, "acquire: %s", luapool_strerror(rc)) == 0;
        break;
      }
      ok = run_data(w, held[k++]) == 0;
    }
    for (int i = 0; i < k; i++)
      r->ops->release(r->h, w, held[i]);
    if (!ok)
      break;
    n += W6_HOLD;
  }
  w->ops = n;
  return NULL;
}

static int burst_run(int impl, const options *opt, burst_result *res) {
  const impl_ops *ops = &impls[impl];
  pool_params pp = {.reset = LUAPOOL_RESET_FULL};
  if (impl == IMPL_LUAPOOL) {
    pp.watchdog_ms = W6_WATCHDOG_MS;
    pp.max_idle = W6_MAX_IDLE;
  }
  int phases = 1 + 2 * opt->cycles;
  double total_s = W6_START_S + opt->cycles * (opt->burst_s + opt->quiet_s);
  size_t cap = (size_t)(total_s * 1000 / W6_SAMPLE_MS) + 16;
  res->rss = malloc(cap * sizeof *res->rss);
  worker *workers = aligned_alloc(CACHE_LINE, W6_THREADS * sizeof *workers);
  run *r = aligned_alloc(CACHE_LINE, sizeof *r);
  if (res->rss == NULL || workers == NULL || r == NULL) {
    fprintf(stderr, "bench_suite: out of memory\n");
    free(workers);
    free(r);
    return -1;
  }
#ifdef __GLIBC__
  malloc_trim(0); /* each implementation starts from the memory the process really uses */
#endif
  void *h;
  int rc = ops->open(&pp, &h);
  if (rc != LUAPOOL_OK) {
    fprintf(stderr, "bench_suite: workload 6: cannot make the %s: %s\n", ops->name,
            luapool_strerror(rc));
    free(workers);
    free(r);
    return -1;
  }
  memset(workers, 0, W6_THREADS * sizeof *workers);
  atomic_init(&r->stop, false);
  atomic_init(&r->phase, PHASE_QUIET);
  r->ops = ops;
  r->h = h;
  for (int i = 0; i < W6_THREADS; i++) {
    workers[i].run = r;
    start_thread(&workers[i], burst_main);
  }

  uint64_t t0 = now_ns(), phase_end = t0, next = t0;
  for (int p = 0; p < phases; p++) {
    double len = p == 0 ? W6_START_S : p % 2 ? opt->burst_s : opt->quiet_s;
    phase_end += (uint64_t)(len * 1e9);
    atomic_store_explicit(&r->phase, p % 2 ? PHASE_BURST : PHASE_QUIET, memory_order_relaxed);
    for (; next < phase_end; next += W6_SAMPLE_MS * 1000000u) {
      sleep_until_ns(next);
      long kb = rss_kb();
      if (res->n_rss < cap)
        res->rss[res->n_rss++] =
            (rss_sample){(uint32_t)((now_ns() - t0) / 1000000u), kb > 0 ? (uint32_t)kb : 0, p};
    }
  }
  atomic_store_explicit(&r->phase, PHASE_STOP, memory_order_relaxed);
  uint64_t served = 0;
  for (int i = 0; i < W6_THREADS; i++) {
    pthread_join(workers[i].thread, NULL);
    served += workers[i].ops;
  }
  char what[64];
  snprintf(what, sizeof what, "workload 6, %s", ops->name);
  rc = report_workers(what, W6_THREADS, workers, W6_THREADS);
  res->per_sec = (double)served / (opt->cycles * opt->burst_s);
  if (impl == IMPL_LUAPOOL) {
    luapool_stats st;
    luapool_stats_get(h, &st);
    res->live = st.live;
    res->trimmed = st.trimmed;
    res->collections = st.collections;
    res->recycled = st.recycled;
  } else if (impl == IMPL_MUTEX)
    res->live = ((mutex_pool *)h)->live;
  ops->close(h);
  free(workers);
  free(r);
  res->done = rc == 0;
  return rc;
}

/* The largest RSS in burst c and the quiet after it; the last one in phase p. */
static uint32_t rss_peak(const burst_result *b, int c) {
  uint32_t peak = 0;
  for (size_t i = 0; i < b->n_rss; i++)
    if ((b->rss[i].phase + 1) / 2 == c && b->rss[i].phase != 0 && b->rss[i].kb > peak)
      peak = b->rss[i].kb;
  return peak;
}

static uint32_t rss_last(const burst_result *b, int phase) {
  uint32_t last = 0;
  for (size_t i = 0; i < b->n_rss; i++)
    if (b->rss[i].phase == phase)
      last = b->rss[i].kb;
  return last;
}

static const int burst_impls[] = {IMPL_LUAPOOL, IMPL_MUTEX};
enum { BURST_IMPLS = sizeof burst_impls / sizeof burst_impls[0] };

static void print_bursts(const options *opt) {
  printf("%-26s", "");
  for (int j = 0; j < BURST_IMPLS; j++)
    printf(" %14s", impls[burst_impls[j]].name);
  printf("\n%-26s", "states served/s in bursts");
  for (int j = 0; j < BURST_IMPLS; j++) {
    char v[16];
    fmt_si(v, sizeof v, bursts[burst_impls[j]].per_sec);
    printf(" %14s", v);
  }
  for (int p = 0; p <= 2 * opt->cycles; p++) {
    char label[48];
    if (p == 0)
      snprintf(label, sizeof label, "RSS before the bursts");
    else if (p % 2)
      snprintf(label, sizeof label, "RSS peak, burst %d", (p + 1) / 2);
    else
      snprintf(label, sizeof label, "RSS end of quiet %d", p / 2);
    printf("\n%-26s", label);
    for (int j = 0; j < BURST_IMPLS; j++) {
      const burst_result *b = &bursts[burst_impls[j]];
      uint32_t kb = p % 2 ? rss_peak(b, (p + 1) / 2) : rss_last(b, p);
      char v[24];
      snprintf(v, sizeof v, "%.1f MB", kb / 1024.0);
      printf(" %14s", v);
    }
  }
  printf("\n%-26s", "states live at the end");
  for (int j = 0; j < BURST_IMPLS; j++)
    printf(" %14u", bursts[burst_impls[j]].live);
  const burst_result *lp = &bursts[IMPL_LUAPOOL];
  printf("\n  luapool: %llu state(s) trimmed by the watchdog, %llu background collection(s),\n"
         "  %llu state(s) recycled (replaced by fresh ones, recycle_kb);\n"
         "  max_idle %d is below the %d states a burst holds, so the watchdog also trims during\n"
         "  a burst (between one request's release and the next acquire), and they are remade\n",
         (unsigned long long)lp->trimmed, (unsigned long long)lp->collections,
         (unsigned long long)lp->recycled, W6_MAX_IDLE, W6_THREADS * W6_HOLD);
  printf("  luapool / mutex pool, states served/s in bursts: %.2fx\n",
         lp->per_sec / bursts[IMPL_MUTEX].per_sec);
  fflush(stdout);
}

static void write_rss_csv(const options *opt) {
  FILE *f = open_output(opt, "rss.csv");
  if (f == NULL)
    return;
  fprintf(f, "implementation,time_ms,rss_kb,phase\n");
  for (int j = 0; j < BURST_IMPLS; j++) {
    const burst_result *b = &bursts[burst_impls[j]];
    for (size_t i = 0; i < b->n_rss; i++) {
      char phase[32];
      phase_name(phase, sizeof phase, b->rss[i].phase);
      fprintf(f, "%s,%u,%u,%s\n", impls[burst_impls[j]].key, b->rss[i].t_ms, b->rss[i].kb, phase);
    }
  }
  close_output(opt, f, "rss.csv");
}

static int measure_bursts(const options *opt) {
  printf("\n== workload 6: bursts, then quiet; resident memory (RSS) over time ==\n");
  printf("%d threads; in a burst each request holds %d states with ~170 KB of Lua data each;\n"
         "%d burst(s) of %.2f s, each followed by %.2f s quiet; RSS every %d ms.\n"
         "luapool: watchdog_interval_ms %d, max_idle %d; the mutex pool keeps every state.\n",
         W6_THREADS, W6_HOLD, opt->cycles, opt->burst_s, opt->quiet_s, W6_SAMPLE_MS, W6_WATCHDOG_MS,
         W6_MAX_IDLE);
  fflush(stdout);
  for (int j = 0; j < BURST_IMPLS; j++)
    if (burst_run(burst_impls[j], opt, &bursts[burst_impls[j]]) != 0)
      return -1;
  print_bursts(opt);
  write_rss_csv(opt);
  return 0;
}

/* ---- targets ----------------------------------------------------------------------------- */

/* The index of 2 in the thread list, or -1. */
static int two_threads(const options *opt) {
  for (int t = 0; t < opt->n_threads; t++)
    if (opt->threads[t] == 2)
      return t;
  return -1;
}

/* figure = a / b of two cells' medians against target (at_most: figure <= target). */
static void print_target(const char *what, const cell *a, const cell *b, bool at_most,
                         double target) {
  char tgt[24];
  snprintf(tgt, sizeof tgt, "%s %gx", at_most ? "<=" : ">=", target);
  if (!a->done || !b->done) {
    printf("  %-44s %9s   target %-8s not measured\n", what, "-", tgt);
    return;
  }
  double figure = a->ops.median / b->ops.median;
  bool met = at_most ? figure <= target : figure >= target;
  char fig[24];
  snprintf(fig, sizeof fig, "%.2fx", figure);
  printf("  %-44s %9s   target %-8s %s\n", what, fig, tgt, met ? "met" : "missed");
}

static void print_targets(const options *opt) {
  printf("\n== targets: 2 threads, ratios of medians measured side by side in this run ==\n");
  int t = two_threads(opt);
  static const cell none = {.done = false};
  const cell *w1 = t >= 0 && opt->run[0] ? results[0][t] : NULL;
  const cell *w3 = t >= 0 && opt->run[2] ? results[2][t] : NULL;
  const cell *w7 = t >= 0 && opt->run[6] ? results[6][t] : NULL;
  print_target("w1 RESET_STACK: luapool / mutex pool", w1 ? &w1[IMPL_LUAPOOL] : &none,
               w1 ? &w1[IMPL_MUTEX] : &none, false, 20);
  print_target("w1 RESET_STACK: thread-local array / luapool", w1 ? &w1[IMPL_TL] : &none,
               w1 ? &w1[IMPL_LUAPOOL] : &none, true, 3);
  print_target("w3 request: luapool / fresh state", w3 ? &w3[IMPL_LUAPOOL] : &none,
               w3 ? &w3[IMPL_FRESH] : &none, false, 15);
  print_target("w3 request: pinned state / luapool", w3 ? &w3[IMPL_PINNED] : &none,
               w3 ? &w3[IMPL_LUAPOOL] : &none, true, 1.5);
  print_target("w3 request: luapool / pinned state", w3 ? &w3[IMPL_LUAPOOL] : &none,
               w3 ? &w3[IMPL_PINNED] : &none, false, 0.9);
  print_target("w7 tiny request: luapool / pinned state", w7 ? &w7[IMPL_LUAPOOL] : &none,
               w7 ? &w7[IMPL_PINNED] : &none, false, 0.9);
  fflush(stdout);
}

/* ---- plots ------------------------------------------------------------------------------- */

static bool on_path(const char *prog) {
  const char *path = getenv("PATH");
  if (path == NULL)
    return false;
  for (const char *p = path; *p != '\0';) {
    size_t len = strcspn(p, ":");
    char full[4096];
    snprintf(full, sizeof full, "%.*s/%s", (int)len, len > 0 ? p : ".", prog);
    if (access(full, X_OK) == 0)
      return true;
    p += len + (p[len] == ':');
  }
  return false;
}

/* One panel: ops/s against threads, one line (with the min-max as error bars) per impl. */
static void plot_panel(FILE *f, const options *opt, int wl_index, long cores) {
  const workload *wl = &workloads[wl_index];
  char title[160];
  snprintf(title, sizeof title, "workload %d: %s", wl->id, wl->title);
  for (char *c = title; *c != '\0'; c++)
    if (*c == '\'')
      *c = ' '; /* a quote would end the string */
  fprintf(f, "set title '%s'\n", title);
  fprintf(f, "set arrow 1 from %ld, graph 0 to %ld, graph 1 nohead dashtype 2 lc rgb 'gray'\n",
          cores, cores);
  for (int i = 0; i < IMPL_COUNT; i++) {
    if (!(wl->impls & BIT(i)))
      continue;
    fprintf(f, "$w%d_%d << EOD\n", wl->id, i);
    for (int t = 0; t < opt->n_threads; t++) {
      const cell *c = &results[wl_index][t][i];
      if (c->done)
        fprintf(f, "%d %.0f %.0f %.0f\n", opt->threads[t], c->ops.median, c->ops.min, c->ops.max);
    }
    fprintf(f, "EOD\n");
  }
  fprintf(f, "plot ");
  bool first = true;
  for (int i = 0; i < IMPL_COUNT; i++) {
    if (!(wl->impls & BIT(i)))
      continue;
    fprintf(f, "%s$w%d_%d using 1:2:3:4 with yerrorlines lt %d lw 2 title '%s'",
            first ? "" : ", \\\n  ", wl->id, i, i + 1, impls[i].name);
    first = false;
  }
  fprintf(f, "\n");
}

static void write_plot_script(FILE *f, const options *opt, long cores, int panels, bool rss) {
  char cpu[128];
  bench_cpu_model(cpu, sizeof cpu);
  for (char *c = cpu; *c != '\0'; c++)
    if (*c == '\'')
      *c = ' ';
  fprintf(f, "# Written by bench_suite; run it again with: gnuplot plots.gp (in this directory)\n"
             "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
             "  set terminal pngcairo size 1400,560 font 'sans,10'\n"
             "} else {\n"
             "  set terminal png size 1400,560\n"
             "}\n"
             "set termoption noenhanced\n"
             "set grid\n");
  if (panels > 0) {
    int max_threads = 1;
    for (int t = 0; t < opt->n_threads; t++)
      if (opt->threads[t] > max_threads)
        max_threads = opt->threads[t];
    fprintf(f,
            "set output 'throughput.png'\n"
            "set multiplot layout 1,%d title 'luapool bench_suite: throughput against threads "
            "(%s, %ld cores; dashed: the core count)'\n"
            "set logscale xy\n"
            "set xrange [0.8:%d]\n"
            "set xtics (",
            panels, cpu, cores, max_threads * 5 / 4 + 1);
    for (int t = 0; t < opt->n_threads; t++)
      fprintf(f, "%s%d", t ? ", " : "", opt->threads[t]);
    fprintf(f, ")\n"
               "set xlabel 'threads'\n"
               "set ylabel 'operations per second (median, bars: min-max)'\n"
               "set format y '%%.0s%%c'\n"
               "set key outside right top vertical\n");
    if (opt->run[0])
      plot_panel(f, opt, 0, cores);
    if (opt->run[2])
      plot_panel(f, opt, 2, cores);
    fprintf(f, "unset multiplot\nunset arrow 1\nunset logscale\nunset xtics\nset xtics\n"
               "set xrange [*:*]\n");
  }
  if (rss) {
    fprintf(f,
            "set output 'rss.png'\n"
            "set title 'workload 6: resident memory, %d threads in bursts (shaded), then "
            "quiet (%s)'\n"
            "set xlabel 'time (s)'\nset ylabel 'RSS (MB)'\nset format y '%%g'\n"
            "set key inside right center vertical box opaque\n",
            W6_THREADS, cpu);
    for (int c = 0; c < opt->cycles; c++) {
      double from = W6_START_S + c * (opt->burst_s + opt->quiet_s);
      fprintf(f,
              "set object %d rect from first %.3f, graph 0 to first %.3f, graph 1 behind "
              "fillcolor rgb '#e4e4e4' fillstyle solid noborder\n",
              c + 1, from, from + opt->burst_s);
    }
    for (int j = 0; j < BURST_IMPLS; j++) {
      const burst_result *b = &bursts[burst_impls[j]];
      fprintf(f, "$rss_%d << EOD\n", j);
      for (size_t i = 0; i < b->n_rss; i++)
        fprintf(f, "%.3f %.1f\n", b->rss[i].t_ms / 1000.0, b->rss[i].kb / 1024.0);
      fprintf(f, "EOD\n");
    }
    fprintf(f,
            "plot $rss_0 using 1:2 with lines lt %d lw 2 title 'luapool (watchdog %d ms, "
            "max_idle %d)', \\\n  $rss_1 using 1:2 with lines lt %d lw 2 title 'mutex pool'\n",
            IMPL_LUAPOOL + 1, W6_WATCHDOG_MS, W6_MAX_IDLE, IMPL_MUTEX + 1);
  }
}

/* Runs gnuplot on plots.gp in the output directory. */
static void run_gnuplot(const options *opt) {
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "bench_suite: fork: %s\n", strerror(errno));
    return;
  }
  if (pid == 0) {
    if (chdir(opt->csv_dir) == 0)
      execlp("gnuplot", "gnuplot", "plots.gp", (char *)NULL);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "bench_suite: gnuplot failed on %s/plots.gp\n", opt->csv_dir);
}

static void make_plots(const options *opt, long cores) {
  int panels = opt->run[0] + opt->run[2];
  bool rss = opt->run[5] && bursts[IMPL_LUAPOOL].done && bursts[IMPL_MUTEX].done;
  if (!opt->plot || (panels == 0 && !rss))
    return;
  if (!on_path("gnuplot")) {
    printf("\ngnuplot not found: apt-get install gnuplot-nox to get %s/*.png\n", opt->csv_dir);
    return;
  }
  FILE *f = open_output(opt, "plots.gp");
  if (f == NULL)
    return;
  write_plot_script(f, opt, cores, panels, rss);
  close_output(opt, f, "plots.gp");
  fflush(stdout);
  run_gnuplot(opt);
  printf("\nplots:");
  if (panels > 0)
    printf(" %s/throughput.png (workloads 1 and 3)%s", opt->csv_dir, rss ? "," : "");
  if (rss)
    printf(" %s/rss.png (workload 6)", opt->csv_dir);
  printf("; the script: %s/plots.gp\n", opt->csv_dir);
}

/* ---- options ----------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: bench_suite [--quick | --full] [--threads LIST] [--seconds S] [--reps N]\n"
      "                   [--workloads LIST] [--csv DIR] [--no-plot] [--help]\n"
      "  --quick           short runs (the default; `make bench`): 5 repetitions of 0.1 s\n"
      "  --full            thorough (`make bench-full`): 7 repetitions of 0.5 s, longer bursts\n"
      "  --threads LIST    comma-separated thread counts, each 1 to %d, at most %d of them\n"
      "                    (default 1,2,4,8,16); workload 4 runs twice as many\n"
      "  --seconds S       measured time of one repetition, above 0, at most 3600; the\n"
      "                    warm-up runs half as long\n"
      "  --reps N          repetitions per cell, 1 to %d; the median is reported\n"
      "  --workloads LIST  comma-separated workloads, 1 to 7 (default all)\n"
      "  --csv DIR         where the CSV files and plots go (default bench/results; made)\n"
      "  --no-plot         no gnuplot\n",
      MAX_THREADS, MAX_THREAD_COUNTS, MAX_REPS);
}

static bool parse_threads(const char *text, options *opt) {
  return bench_parse_list(text, 1, MAX_THREADS, opt->threads, MAX_THREAD_COUNTS, &opt->n_threads);
}

static bool parse_workloads(const char *text, options *opt) {
  int ids[WORKLOAD_COUNT * 4], n;
  if (!bench_parse_list(text, 1, WORKLOAD_COUNT, ids, WORKLOAD_COUNT * 4, &n))
    return false;
  for (int i = 0; i < WORKLOAD_COUNT; i++)
    opt->run[i] = false;
  for (int i = 0; i < n; i++)
    opt->run[ids[i] - 1] = true;
  return true;
}

static int one_option(void *o, const char *arg, const char *value) {
  options *opt = o;
  if (strcmp(arg, "--full") == 0 || strcmp(arg, "--quick") == 0)
    return BENCH_OPT_FLAG; /* read before the others */
  if (strcmp(arg, "--no-plot") == 0) {
    opt->plot = false;
    return BENCH_OPT_FLAG;
  }
  bool ok;
  if (strcmp(arg, "--seconds") == 0)
    ok = bench_parse_seconds(value, &opt->seconds);
  else if (strcmp(arg, "--reps") == 0)
    ok = bench_parse_reps(value, &opt->reps);
  else if (strcmp(arg, "--threads") == 0)
    ok = parse_threads(value, opt);
  else if (strcmp(arg, "--workloads") == 0)
    ok = parse_workloads(value, opt);
  else if (strcmp(arg, "--csv") == 0)
    ok = *(opt->csv_dir = value) != '\0';
  else
    return BENCH_OPT_UNKNOWN;
  return ok ? BENCH_OPT_GOOD : BENCH_OPT_BAD;
}

/* 0: run; 1: --help printed; -1: bad options (reported). */
static int parse_args(int argc, char **argv, options *opt) {
  bool full = false;
  for (int i = 1; i < argc; i++) { /* the mode first: the other options override it */
    if (strcmp(argv[i], "--full") == 0)
      full = true;
    else if (strcmp(argv[i], "--quick") == 0)
      full = false;
  }
  *opt = (options){.full = full,
                   .seconds = full ? 0.5 : 0.1,
                   .reps = full ? 7 : 5,
                   .threads = {1, 2, 4, 8, 16},
                   .n_threads = 5,
                   .csv_dir = "bench/results",
                   .plot = true,
                   .cycles = full ? 3 : 2,
                   .burst_s = full ? 1.0 : 0.3,
                   .quiet_s = full ? 2.0 : 0.7};
  for (int i = 0; i < WORKLOAD_COUNT; i++)
    opt->run[i] = true;
  int rc = bench_parse_options(argc, argv, "bench_suite", usage, one_option, opt);
  opt->warmup = opt->seconds / 2;
  return rc;
}

/* mkdir -p. */
static int make_dir(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return -1;
    *p = c;
    if (c == '\0')
      break;
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static void print_header(const options *opt, long cores) {
  char cpu[128];
  bench_cpu_model(cpu, sizeof cpu);
  struct utsname u;
  if (uname(&u) != 0)
    snprintf(u.release, sizeof u.release, "?");
  printf("bench_suite (%s): the contention benchmark suite\n", opt->full ? "full" : "quick");
  printf("machine: %s, %ld online core(s), Linux %s, %s\n", cpu, cores, u.release, LUA_RELEASE);
  printf("each cell: %d repetition(s) of %.2f s after a %.2f s warm-up, implementations "
         "interleaved\n",
         opt->reps, opt->seconds, opt->warmup);
  printf("threads:");
  for (int t = 0; t < opt->n_threads; t++)
    printf("%s%d", t ? "," : " ", opt->threads[t]);
  printf(" (*: more threads than the %ld online core(s))\n", cores);
  printf("\nimplementations measured by each workload:\n"
         "  %-38s luapool mag=0 mutex fresh pinned thread-local\n",
         "");
  for (int w = 0; w < WORKLOAD_COUNT; w++) {
    const workload *wl = &workloads[w];
    static const int width[IMPL_COUNT] = {7, 5, 5, 5, 6, 12};
    char name[40];
    snprintf(name, sizeof name, "%d %s", wl->id, wl->key);
    printf("  %-38s", name);
    for (int i = 0; i < IMPL_COUNT; i++)
      printf(" %*s", width[i], wl->impls & BIT(i) ? "x" : ".");
    printf("\n");
  }
  printf("  (luapool: the defaults with the workload's reset and no watchdog thread; the mutex\n"
         "  pool, the thread-local array and the pinned state reset the stack only; fresh: a\n"
         "  new state with the same libraries, opened by hand, no sandbox)\n");
  fflush(stdout);
}

static void print_legend(uint64_t clock_ns) {
  printf("\nops/s: operations per second, all threads together (1, 2: acquire + release pairs;\n"
         "3, 5, 7: requests; 4: hand-offs), median [min-max] over the repetitions.  x mutex: the\n"
         "median over the mutex pool's, measured side by side (above 1: faster).  p50 ... max:\n"
         "the acquire's latency (luapool_acquire or its counterpart) over every 16th acquire, all\n"
         "threads and repetitions, rounded down by up to 1.6%%, including one clock_gettime\n"
         "(~%llu ns here).  *: more threads than online cores.  Targets are reported, never\n"
         "asserted.\n",
         (unsigned long long)clock_ns);
}

int main(int argc, char **argv) {
  options opt;
  int args = parse_args(argc, argv, &opt);
  if (args != 0)
    return args > 0 ? 0 : 2;
  if (make_dir(opt.csv_dir) != 0) {
    fprintf(stderr, "bench_suite: cannot make %s: %s\n", opt.csv_dir, strerror(errno));
    return 1;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t clock_ns = clock_overhead_ns();
  print_header(&opt, cores);
  for (int w = 0; w < WORKLOAD_COUNT; w++) {
    if (!opt.run[w])
      continue;
    int rc = workloads[w].kind == KIND_BURSTS ? measure_bursts(&opt)
                                              : measure_workload(&workloads[w], &opt, cores);
    if (rc != 0)
      return 1;
  }
  if (opt.run[0] || opt.run[2])
    print_targets(&opt);
  bool tables = false;
  for (int w = 0; w < WORKLOAD_COUNT; w++)
    tables = tables || (opt.run[w] && workloads[w].kind != KIND_BURSTS);
  printf("\nCSV: %s/%s%s%s\n", opt.csv_dir, tables ? "w<N>-*.csv" : "",
         tables && opt.run[5] ? ", " : "", opt.run[5] ? "rss.csv" : "");
  make_plots(&opt, cores);
  print_legend(clock_ns);
  for (int i = 0; i < IMPL_COUNT; i++)
    free(bursts[i].rss);
  return 0;
}
