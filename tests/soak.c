/*
** soak: a long run of everything at once, checking invariants as it goes (issue 15).
**
**   tests/soak [SECONDS]      (default: $SOAK_SECONDS, else 600)
**
** Worker threads come and go (each serves a random number of requests and exits; the main
** thread starts new ones).  The watchdog runs every 1 ms with max_uses, idle_timeout_ms and
** max_lifetime_ms on.  max_states is below the number of workers plus the states parked in the
** hand-off queue, so acquires wait and time out.  Each request checks that a marker global is
** nil, sets its own, and runs one of: a cached handler (luapool_load), a script that raises, one
** that hits mem_limit, one that runs out of its instruction budget, one that runs out of its
** time budget, one that another thread stops with luapool_interrupt; then holds the state a
** random time and releases it, discards it, or parks it in a hand-off queue from which another
** thread releases it.  The main thread reports every few seconds, reloads the pool (shutdown
** with states out, destroy, create) every few seconds and forks children that use the pool
** briefly and exit 0.
**
** It fails (exit 1, with the reason on stderr) on:
**  - a state held twice (a per-state atomic flag, exchanged at acquire, cleared before release);
**  - a request that sees another's marker global;
**  - a script whose outcome is not the expected one (status and error);
**  - stats that disagree: closed > created, live != created - closed, idle + in_use != live; and
**    at each quiet point (before a reload, no state out): in_use == 0, acquires == releases +
**    discarded, created and closed equal to what on_state saw;
**  - resident memory (/proc/self/statm) at the end above the peak seen during the warm-up (the
**    first fifth of the run, at least 5 s) by more than RSS_TOL_PCT % + RSS_TOL_MB MiB;
**  - a forked child that does not exit 0 within 30 s.
**
** SOAK_SEED=N repeats a run's choices (as far as threads allow); SOAK_SELFTEST_NO_RESET=1 runs
** with LUAPOOL_RESET_STACK, where the marker check must fail within seconds (the check works).
** SOAK_NO_FORK=1 forks no children: for ThreadSanitizer, whose forked child that starts threads
** (the pool's new watchdog) can die with "dup thread with used id" (a TSan limit, not luapool).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "luapool.h"

#define MAX_WORKERS 6    /* at most this many worker threads at once */
#define MAX_STATES 4     /* the pool's cap: below the workers, so acquires wait */
#define HANDOFF_CAP 4    /* states parked for another thread to release */
#define RSS_TOL_PCT 25   /* the end RSS may exceed the warm-up peak by this much ... */
#define RSS_TOL_MB 16    /* ... plus this */
#define REPORT_MS 5000   /* a report line this often */
#define RELOAD_MS 7000   /* a pool reload this often */
#define FORK_MS 3000     /* a forked child this often */
#define MEM_LIMIT (2u << 20)

/* Under AddressSanitizer or ThreadSanitizer the RSS is the sanitizer's (quarantine, shadow,
   history) and grows by design: the RSS check reports only. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_CHECKED 0
#else
#define RSS_CHECKED 1
#endif

static _Atomic bool failed;
static _Atomic bool stopping;
static bool in_child; /* set in a forked child: on_state keeps out of the parent's table */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak: VIOLATION: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  if (in_child)
    _exit(1);
  atomic_store(&failed, true);
  atomic_store(&stopping, true);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (!f)
    return -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2)
    res = -1;
  fclose(f);
  return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- The ownership table: one atomic flag per live state, kept by on_state. ---- */

#define OWN_SLOTS 1024 /* power of two, well above MAX_STATES */
static struct {
  lua_State *L; /* NULL: free */
  _Atomic int held;
} own[OWN_SLOTS];
static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t seen_created, seen_closed; /* on_state's counts for the current pool */

static size_t own_hash(lua_State *L) { return ((uintptr_t)L >> 4) * 0x9E3779B97F4A7C15ULL >> 54; }

static _Atomic int *own_flag(lua_State *L) {
  _Atomic int *f = NULL;
  pthread_mutex_lock(&own_mu);
  for (size_t i = own_hash(L), n = 0; n < OWN_SLOTS; i = (i + 1) & (OWN_SLOTS - 1), n++)
    if (own[i].L == L) {
      f = &own[i].held;
      break;
    }
  pthread_mutex_unlock(&own_mu);
  if (!f)
    fail("state %p acquired but on_state never reported its creation", (void *)L);
  return f;
}

static void on_state(void *ud, int event, int reason, lua_State *L) {
  (void)ud;
  (void)reason;
  if (in_child)
    return;
  pthread_mutex_lock(&own_mu);
  size_t i = own_hash(L), n = 0;
  if (event == LUAPOOL_STATE_CREATED) {
    atomic_fetch_add(&seen_created, 1);
    while (n < OWN_SLOTS && own[i].L != NULL && own[i].L != L)
      i = (i + 1) & (OWN_SLOTS - 1), n++;
    if (n == OWN_SLOTS || own[i].L == L) {
      pthread_mutex_unlock(&own_mu);
      fail(n == OWN_SLOTS ? "ownership table full" : "state %p created twice", (void *)L);
      return;
    }
    own[i].L = L;
    atomic_store(&own[i].held, 0);
  } else {
    atomic_fetch_add(&seen_closed, 1);
    while (n < OWN_SLOTS && own[i].L != L)
      i = (i + 1) & (OWN_SLOTS - 1), n++;
    if (n == OWN_SLOTS) {
      pthread_mutex_unlock(&own_mu);
      fail("state %p closed but never created", (void *)L);
      return;
    }
    if (atomic_load(&own[i].held)) {
      pthread_mutex_unlock(&own_mu);
      fail("state %p closed while a request holds it", (void *)L);
      return;
    }
    /* Remove with backward-shift so that probes stay unbroken. */
    size_t j = i;
    for (;;) {
      own[i].L = NULL;
      for (;;) {
        j = (j + 1) & (OWN_SLOTS - 1);
        if (own[j].L == NULL)
          goto done;
        size_t k = own_hash(own[j].L);
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
          continue;
        break;
      }
      own[i].L = own[j].L;
      atomic_store(&own[i].held, atomic_load(&own[j].held));
      i = j;
    }
  done:;
  }
  pthread_mutex_unlock(&own_mu);
}

static void own_take(lua_State *L) {
  _Atomic int *f = own_flag(L);
  if (f && atomic_exchange(f, 1) != 0)
    fail("state %p handed out while another request holds it", (void *)L);
}

static void own_drop(lua_State *L) {
  _Atomic int *f = own_flag(L);
  if (f && atomic_exchange(f, 0) != 1)
    fail("state %p released but not held", (void *)L);
}

/* ---- The pool and its gate: a reload waits for every state out to come back. ---- */

static luapool *pool;
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool reloading;
static unsigned out_states; /* acquired and not yet released or discarded */

/* The pool's log: on stderr, except a child's warning that its parent's threads held states
   at the fork (expected: the child closes the pool with them out). */
static void pool_log(void *ud, int level, const char *msg) {
  (void)ud;
  if (in_child && strstr(msg, "did not survive a fork"))
    return;
  fprintf(stderr, "luapool(%s): %s\n", level == LUAPOOL_LOG_ERROR ? "error" : "warn", msg);
}

static void make_pool(void) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.max_states = MAX_STATES;
  cfg.max_idle = 3;
  cfg.min_idle = 1;
  cfg.magazine_size = 2;
  cfg.watchdog_interval_ms = 1;
  cfg.max_uses = 50;
  cfg.idle_timeout_ms = 20;
  cfg.max_lifetime_ms = 300;
  cfg.mem_limit = MEM_LIMIT;
  cfg.budget_instructions = 2000000; /* every request's default; some set their own */
  cfg.budget_ms = 2000;
  cfg.on_state = on_state;
  cfg.log = pool_log;
  if (getenv("SOAK_SELFTEST_NO_RESET"))
    cfg.reset = LUAPOOL_RESET_STACK; /* the checks' own test: the marker check must fail */
  atomic_store(&seen_created, 0);
  atomic_store(&seen_closed, 0);
  int rc = luapool_create(&cfg, &pool);
  if (rc != LUAPOOL_OK) {
    fprintf(stderr, "soak: luapool_create: %s\n", luapool_strerror(rc));
    exit(2);
  }
}

/* Counters over the whole run (every pool). */
static _Atomic uint64_t n_requests, n_timeouts, n_closed_acq, n_errors, n_memerr, n_budget,
    n_time, n_interrupts, n_handoffs, n_discards, n_forks, n_reloads, n_threads, n_loads;
static uint64_t tot_created, tot_closed, tot_acquires, tot_waits, tot_timeouts; /* finished pools */

/* ---- Hand-off queue: states released by another thread than the one that acquired them. ---- */

static pthread_mutex_t ho_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *ho_q[HANDOFF_CAP];
static unsigned ho_n;

static bool ho_push(lua_State *L) {
  bool ok = false;
  pthread_mutex_lock(&ho_mu);
  if (ho_n < HANDOFF_CAP) {
    ho_q[ho_n++] = L;
    ok = true;
  }
  pthread_mutex_unlock(&ho_mu);
  return ok;
}

static lua_State *ho_pop(void) {
  lua_State *L = NULL;
  pthread_mutex_lock(&ho_mu);
  if (ho_n > 0)
    L = ho_q[--ho_n];
  pthread_mutex_unlock(&ho_mu);
  return L;
}

static void give_back(lua_State *L, bool discard) {
  own_drop(L);
  if (discard)
    luapool_discard(pool, L);
  else
    luapool_release(pool, L);
  pthread_mutex_lock(&gate_mu);
  out_states--;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
}

/* ---- Interrupt targets: requests that loop until another thread stops them. ---- */

static pthread_mutex_t int_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *int_target[MAX_WORKERS + 1];

static void int_register(int slot, lua_State *L) {
  pthread_mutex_lock(&int_mu);
  int_target[slot] = L;
  pthread_mutex_unlock(&int_mu);
}

/* Runs until every worker is joined (not only until `stopping`): a worker may still be inside an
** interrupt-kind request when the run ends, and it waits for this thread, not for its 5 s backstop. */
static _Atomic bool int_stopping;

static void *interrupter(void *arg) {
  uint64_t seed = (uintptr_t)arg | 1;
  while (!atomic_load(&int_stopping)) {
    sleep_us(200 + rnd(&seed) % 1000);
    pthread_mutex_lock(&int_mu);
    for (int i = 0; i <= MAX_WORKERS; i++)
      if (int_target[i] && rnd(&seed) % 2 == 0) {
        luapool_interrupt(int_target[i]); /* under int_mu: the request still holds it */
        int_target[i] = NULL;
      }
    pthread_mutex_unlock(&int_mu);
  }
  return NULL;
}

/* ---- One request. ---- */

static const char handler_src[] = "local n, id = ...\n"
                                  "local t = {}\n"
                                  "for i = 1, n do t[i] = i * 2 end\n"
                                  "local s = table.concat(t, ',', 1, math.min(n, 20))\n"
                                  "leaked_global = id\n"
                                  "pcall(function() string.soak = id end)\n" /* read-only */
                                  "assert(string.soak == nil)\n"
                                  "return #t + #s\n";

static const char *const kind_src[] = {
    NULL, /* 0: the cached handler */
    "local x = {}; error('soak error ' .. tostring(#x))",
    "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end",
    "local i = 0 while true do i = i + 1 end",
    "while true do end",
    "local co = coroutine.wrap(function() while true do coroutine.yield() end end) "
    "while true do co() end",
};
enum { K_HANDLER, K_ERROR, K_MEM, K_BUDGET, K_TIME, K_INTERRUPT, K_N };

static int marker_check(lua_State *L) {
  /* Upvalue-free: arg 1 is this request's id. */
  if (lua_getglobal(L, "soak_marker") != LUA_TNIL)
    return luaL_error(L, "marker %s seen", luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  if (lua_getglobal(L, "leaked_global") != LUA_TNIL)
    return luaL_error(L, "leaked_global %s seen", luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  lua_setglobal(L, "soak_marker");
  return 0;
}

/* Runs one request on L (held by this thread); returns false for a violation already reported. */
static bool run_request(lua_State *L, int slot, uint64_t id, uint64_t *seed) {
  lua_settop(L, 0);
  lua_pushcfunction(L, marker_check);
  lua_pushinteger(L, (lua_Integer)id);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fail("request %llu: %s", (unsigned long long)id, lua_tostring(L, -1));
    return false;
  }
  int kind = (int)(rnd(seed) % 16);
  kind = kind < 10 ? K_HANDLER : kind - 10; /* handlers most of the time */
  if (kind == K_INTERRUPT && in_child)
    kind = K_ERROR; /* no interrupter thread in a child */
  int rc;
  switch (kind) {
  case K_HANDLER:
    if (luapool_load(L, "=handler", handler_src, sizeof handler_src - 1) != LUA_OK) {
      fail("luapool_load: %s", lua_tostring(L, -1));
      return false;
    }
    atomic_fetch_add(&n_loads, 1);
    lua_pushinteger(L, (lua_Integer)(1 + rnd(seed) % 200));
    lua_pushinteger(L, (lua_Integer)id);
    rc = lua_pcall(L, 2, 1, 0);
    if (rc != LUA_OK || !lua_isinteger(L, -1)) {
      fail("handler failed (%d): %s", rc, lua_tostring(L, -1));
      return false;
    }
    break;
  case K_BUDGET:
    luapool_set_budget(L, 10000 + rnd(seed) % 100000, 0);
    break;
  case K_TIME:
    luapool_set_budget(L, 0, 1 + (unsigned)(rnd(seed) % 3));
    break;
  case K_MEM:
    luapool_set_budget(L, 0, 5000); /* string.rep is charged per byte: no instruction cap */
    break;
  case K_INTERRUPT:
    luapool_set_budget(L, 0, 5000); /* a backstop: the interrupter comes within ~1 ms */
    break;
  default:
    break;
  }
  if (kind != K_HANDLER) {
    if (luaL_loadstring(L, kind_src[kind]) != LUA_OK) {
      fail("load: %s", lua_tostring(L, -1));
      return false;
    }
    if (kind == K_INTERRUPT)
      int_register(slot, L);
    rc = lua_pcall(L, 0, 0, 0);
    if (kind == K_INTERRUPT)
      int_register(slot, NULL);
    int st = luapool_status(L);
    int want = kind == K_ERROR       ? LUAPOOL_STATUS_OK
               : kind == K_MEM       ? LUAPOOL_STATUS_MEMORY
               : kind == K_BUDGET    ? LUAPOOL_STATUS_INSTRUCTIONS
               : kind == K_TIME      ? LUAPOOL_STATUS_TIME
                                     : LUAPOOL_STATUS_INTERRUPTED;
    if (rc == LUA_OK || st != want) {
      fail("script kind %d: rc %d status %d (wanted %d): %s", kind, rc, st, want,
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      return false;
    }
    _Atomic uint64_t *c[] = {NULL, &n_errors, &n_memerr, &n_budget, &n_time, &n_interrupts};
    atomic_fetch_add(c[kind], 1);
  }
  lua_settop(L, 0);
  return true;
}

/* ---- Workers. ---- */

typedef struct {
  pthread_t tid;
  _Atomic int state; /* 0 free, 1 running, 2 finished (join me) */
  uint64_t seed;
} worker;
static worker workers[MAX_WORKERS];
static _Atomic uint64_t next_id = 1;

static void *worker_main(void *arg) {
  worker *w = arg;
  int slot = (int)(w - workers);
  uint64_t seed = w->seed;
  long left = 50 + (long)(rnd(&seed) % 3000);
  while (left-- > 0 && !atomic_load(&stopping)) {
    /* Some hand-offs to release first. */
    lua_State *H = ho_pop();
    if (H)
      give_back(H, false);

    pthread_mutex_lock(&gate_mu);
    while (reloading && !atomic_load(&stopping))
      pthread_cond_wait(&gate_cv, &gate_mu);
    out_states++; /* counted before the acquire so that a reload waits for it */
    luapool *p = pool;
    pthread_mutex_unlock(&gate_mu);

    lua_State *L;
    int rc = luapool_acquire(p, (long)(rnd(&seed) % 6), &L);
    if (rc != LUAPOOL_OK) {
      if (rc == LUAPOOL_ETIMEDOUT)
        atomic_fetch_add(&n_timeouts, 1);
      else if (rc == LUAPOOL_ECLOSED)
        atomic_fetch_add(&n_closed_acq, 1);
      else
        fail("luapool_acquire: %s", luapool_strerror(rc));
      pthread_mutex_lock(&gate_mu);
      out_states--;
      pthread_cond_broadcast(&gate_cv);
      pthread_mutex_unlock(&gate_mu);
      continue;
    }
    own_take(L);
    uint64_t id = atomic_fetch_add(&next_id, 1);
    bool ok = run_request(L, slot, id, &seed);
    atomic_fetch_add(&n_requests, 1);
    uint64_t r = rnd(&seed) % 100;
    if (r < 30)
      sleep_us((long)(rnd(&seed) % 2000)); /* a random hold */
    if (!ok || r < 5) {
      atomic_fetch_add(&n_discards, 1);
      give_back(L, true);
    } else if (r < 25 && ho_push(L)) {
      atomic_fetch_add(&n_handoffs, 1); /* another thread releases it */
    } else {
      give_back(L, false);
    }
  }
  atomic_store(&w->state, 2);
  return NULL;
}

static void spawn_workers(uint64_t *seed) {
  for (int i = 0; i < MAX_WORKERS; i++) {
    if (atomic_load(&workers[i].state) == 2) {
      pthread_join(workers[i].tid, NULL);
      atomic_store(&workers[i].state, 0);
    }
    if (atomic_load(&workers[i].state) == 0 && !atomic_load(&stopping)) {
      workers[i].seed = rnd(seed) | 1;
      atomic_store(&workers[i].state, 1);
      if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
        fprintf(stderr, "soak: pthread_create failed\n");
        exit(2);
      }
      atomic_fetch_add(&n_threads, 1);
    }
  }
}

/* ---- Checks of the stats. ---- */

static void check_stats(const luapool_stats *s, bool quiet) {
  if (s->closed > s->created)
    fail("stats: closed %llu > created %llu", (unsigned long long)s->closed,
         (unsigned long long)s->created);
  if (s->live != s->created - s->closed)
    fail("stats: live %u != created %llu - closed %llu", s->live, (unsigned long long)s->created,
         (unsigned long long)s->closed);
  if (s->idle + s->in_use != s->live)
    fail("stats: idle %u + in_use %u != live %u", s->idle, s->in_use, s->live);
  if (!quiet)
    return;
  if (s->live > MAX_STATES)
    fail("stats (quiet): live %u above max_states %u", s->live, MAX_STATES);
  if (s->in_use != 0)
    fail("stats (quiet): in_use %u with no state out", s->in_use);
  if (s->acquires != s->releases + s->discarded)
    fail("stats (quiet): acquires %llu != releases %llu + discarded %llu",
         (unsigned long long)s->acquires, (unsigned long long)s->releases,
         (unsigned long long)s->discarded);
  if (s->created != atomic_load(&seen_created) || s->closed != atomic_load(&seen_closed))
    fail("stats (quiet): created %llu closed %llu, on_state saw %llu and %llu",
         (unsigned long long)s->created, (unsigned long long)s->closed,
         (unsigned long long)atomic_load(&seen_created),
         (unsigned long long)atomic_load(&seen_closed));
}

/* Waits until no state is out, releasing the parked ones itself. */
static void drain_out(void) {
  double deadline = now_ms() + 30000;
  pthread_mutex_lock(&gate_mu);
  while (out_states > 0) {
    pthread_mutex_unlock(&gate_mu);
    lua_State *H;
    while ((H = ho_pop()) != NULL)
      give_back(H, false);
    pthread_mutex_lock(&gate_mu);
    if (out_states == 0)
      break;
    if (now_ms() > deadline) {
      pthread_mutex_unlock(&gate_mu);
      fail("%u states still out 30 s into a reload", out_states);
      pthread_mutex_lock(&gate_mu);
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 1000000;
    if (ts.tv_nsec >= 1000000000)
      ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&gate_cv, &gate_mu, &ts);
  }
  pthread_mutex_unlock(&gate_mu);
}

/* Shutdown (with states still out: their acquires see ECLOSED, their releases close them),
   then destroy and create.  Returns the finished pool's stats in *s. */
static void reload(luapool_stats *s, bool recreate) {
  pthread_mutex_lock(&gate_mu);
  reloading = true;
  pthread_mutex_unlock(&gate_mu);
  int rc = luapool_shutdown(pool, 100);
  if (rc != LUAPOOL_OK && rc != LUAPOOL_ETIMEDOUT)
    fail("luapool_shutdown: %s", luapool_strerror(rc));
  drain_out();
  luapool_stats_get(pool, s);
  check_stats(s, true);
  if (s->live != 0)
    fail("after shutdown and drain: live %u", s->live);
  tot_created += s->created;
  tot_closed += s->closed;
  tot_acquires += s->acquires;
  tot_waits += s->waits;
  tot_timeouts += s->timeouts;
  luapool_destroy(pool);
  pool = NULL;
  atomic_fetch_add(&n_reloads, 1);
  if (recreate)
    make_pool();
  pthread_mutex_lock(&gate_mu);
  reloading = false;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
}

/* ---- Forked children. ---- */

static void child_main(luapool *p, uint64_t seed) {
  in_child = true;
  signal(SIGALRM, SIG_DFL);
  alarm(30);
  for (int i = 0; i < 20; i++) {
    lua_State *L;
    int rc = luapool_acquire(p, 50, &L);
    if (rc == LUAPOOL_ETIMEDOUT)
      continue; /* states the parent's other threads held at the fork stay out for good */
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "soak child: acquire: %s\n", luapool_strerror(rc));
      _exit(1);
    }
    if (!run_request(L, MAX_WORKERS, 1000000000ULL + (uint64_t)i, &seed))
      _exit(1);
    luapool_release(p, L);
  }
  luapool_maintain(p);
  luapool_stats s;
  luapool_stats_get(p, &s);
  if (s.live != s.created - s.closed || s.idle + s.in_use != s.live) {
    fprintf(stderr, "soak child: stats inconsistent\n");
    _exit(1);
  }
  luapool_shutdown(p, 200); /* the parent's checked-out states stay out: ETIMEDOUT is fine */
  luapool_destroy(p);
  _exit(0);
}

static void do_fork(uint64_t *seed) {
  uint64_t cseed = rnd(seed) | 1;
  pthread_mutex_lock(&gate_mu); /* no reload while the child forks: the pool stays the same */
  luapool *p = pool;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0)
    child_main(p, cseed); /* gate_mu is held in the child too: it never takes it */
  pthread_mutex_unlock(&gate_mu);
  if (pid < 0) {
    fail("fork: %s", strerror(errno));
    return;
  }
  int status;
  double deadline = now_ms() + 30000;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 || now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail("forked child %d hangs", (int)pid);
      return;
    }
    sleep_us(1000);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("forked child %d: %s %d", (int)pid, WIFEXITED(status) ? "exit" : "signal",
         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  atomic_fetch_add(&n_forks, 1);
}

/* ---- Main: spawn, report, reload, fork. ---- */

static void report(double t, long rss, const luapool_stats *s) {
  printf("soak: t=%5.0fs rss=%ldkB requests=%llu threads=%llu timeouts=%llu eclosed=%llu "
         "errors=%llu mem=%llu budget=%llu time=%llu interrupts=%llu handoffs=%llu "
         "discards=%llu loads=%llu reloads=%llu forks=%llu | pool: created=%llu closed=%llu "
         "live=%u idle=%u in_use=%u waits=%llu timeouts=%llu passes=%llu\n",
         t / 1e3, rss, (unsigned long long)n_requests, (unsigned long long)n_threads,
         (unsigned long long)n_timeouts, (unsigned long long)n_closed_acq,
         (unsigned long long)n_errors, (unsigned long long)n_memerr, (unsigned long long)n_budget,
         (unsigned long long)n_time, (unsigned long long)n_interrupts,
         (unsigned long long)n_handoffs, (unsigned long long)n_discards,
         (unsigned long long)n_loads, (unsigned long long)n_reloads, (unsigned long long)n_forks,
         (unsigned long long)s->created, (unsigned long long)s->closed, s->live, s->idle,
         s->in_use, (unsigned long long)s->waits, (unsigned long long)s->timeouts,
         (unsigned long long)s->passes);
  fflush(stdout);
}

int main(int argc, char **argv) {
  double seconds = 600;
  const char *env = getenv("SOAK_SECONDS");
  if (argc > 1)
    env = argv[1];
  if (env && *env) {
    char *end;
    seconds = strtod(env, &end);
    if (*end || seconds <= 0) {
      fprintf(stderr, "usage: %s [SECONDS] (or SOAK_SECONDS; default 600)\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  uint64_t seed = (uint64_t)time(NULL) * 2654435761u | 1;
  if (getenv("SOAK_SEED"))
    seed = strtoull(getenv("SOAK_SEED"), NULL, 0) | 1;
  printf("soak: %.0f s, seed %llu, %d workers, max_states %d, watchdog 1 ms\n", seconds,
         (unsigned long long)seed, MAX_WORKERS, MAX_STATES);

  bool no_fork = getenv("SOAK_NO_FORK") != NULL;
  make_pool();
  pthread_t intr;
  pthread_create(&intr, NULL, interrupter, (void *)(uintptr_t)rnd(&seed));

  double start = now_ms(), end = start + seconds * 1e3;
  double warm = seconds / 5 < 5 ? 5 : seconds / 5;
  if (warm > seconds)
    warm = seconds;
  double next_report = start + REPORT_MS, next_reload = start + RELOAD_MS,
         next_fork = start + FORK_MS;
  long rss_warm_peak = 0, rss_first = rss_kb(), rss_max = 0;
  bool warmed = false;

  while (!atomic_load(&stopping) && now_ms() < end) {
    spawn_workers(&seed);
    sleep_us(5000);
    double t = now_ms();
    long rss = rss_kb();
    if (rss > rss_max)
      rss_max = rss;
    if (t - start <= warm * 1e3) {
      if (rss > rss_warm_peak)
        rss_warm_peak = rss;
    } else if (!warmed) {
      warmed = true;
      printf("soak: warm-up over at %.0f s: peak rss %ld kB\n", (t - start) / 1e3,
             rss_warm_peak);
    }
    if (t >= next_report) {
      luapool_stats s;
      pthread_mutex_lock(&gate_mu);
      luapool_stats_get(pool, &s);
      pthread_mutex_unlock(&gate_mu);
      check_stats(&s, false);
      report(t - start, rss, &s);
      next_report += REPORT_MS;
    }
    if (t >= next_reload) {
      luapool_stats s;
      reload(&s, true);
      next_reload = now_ms() + RELOAD_MS;
    }
    if (t >= next_fork && !no_fork) {
      do_fork(&seed);
      next_fork = now_ms() + FORK_MS;
    }
  }

  long rss_end = rss_kb();
  atomic_store(&stopping, true);
  pthread_mutex_lock(&gate_mu);
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
  for (int i = 0; i < MAX_WORKERS; i++)
    if (atomic_load(&workers[i].state) != 0)
      pthread_join(workers[i].tid, NULL);
  atomic_store(&int_stopping, true);
  pthread_join(intr, NULL);
  luapool_stats s;
  reload(&s, false);

  long limit = rss_warm_peak + rss_warm_peak * RSS_TOL_PCT / 100 + RSS_TOL_MB * 1024L;
  if (!RSS_CHECKED && rss_end > limit)
    printf("soak: rss %ld kB above the limit %ld kB: not checked under a sanitizer\n", rss_end,
           limit);
  else if (rss_end > limit)
    fail("rss grew: %ld kB at the end, warm-up peak %ld kB (limit %ld kB: +%d%% +%d MiB)",
         rss_end, rss_warm_peak, limit, RSS_TOL_PCT, RSS_TOL_MB);
  printf("soak: %s after %.0f s: rss first %ld kB, warm-up peak %ld kB, end %ld kB (limit %ld "
         "kB), max %ld kB; requests %llu, threads %llu, reloads %llu, forks %llu, "
         "timeouts %llu, eclosed %llu, errors %llu, mem %llu, budget %llu, time %llu, "
         "interrupts %llu, handoffs %llu, discards %llu, loads %llu; all pools: created %llu "
         "closed %llu acquires %llu waits %llu timeouts %llu\n",
         atomic_load(&failed) ? "FAIL" : "PASS", (now_ms() - start) / 1e3, rss_first,
         rss_warm_peak, rss_end, limit, rss_max, (unsigned long long)n_requests,
         (unsigned long long)n_threads, (unsigned long long)n_reloads,
         (unsigned long long)n_forks, (unsigned long long)n_timeouts,
         (unsigned long long)n_closed_acq, (unsigned long long)n_errors,
         (unsigned long long)n_memerr, (unsigned long long)n_budget, (unsigned long long)n_time,
         (unsigned long long)n_interrupts, (unsigned long long)n_handoffs,
         (unsigned long long)n_discards, (unsigned long long)n_loads,
         (unsigned long long)tot_created, (unsigned long long)tot_closed,
         (unsigned long long)tot_acquires, (unsigned long long)tot_waits,
         (unsigned long long)tot_timeouts);
  return atomic_load(&failed) ? 1 : 0;
}
