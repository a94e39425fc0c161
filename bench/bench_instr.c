/*
** bench_instr.c: one operation of luapool's hot paths, N times, for callgrind to count
** (bench/instr.sh runs it; `make bench-instr`).  `bench_instr MODE N`: one setup, then N
** iterations of MODE's operation, then the teardown.  Measures; never asserts: it exits nonzero
** only when an operation fails (with a message on stderr).
**
** How the count is made exact.  Only bench_instr_measured, which runs the N iterations, is
** counted: instr.sh runs callgrind with --collect-atstart=no --toggle-collect=bench_instr_measured
** so that Lua's and luapool's setup, the warm-up, the teardown and the process's own start and
** exit are left out.  instr.sh then runs each mode with N and 2N and takes
** (Ir(2N) - Ir(N)) / N: what the measured function does once per call whatever N is (its loop's
** entry and exit, the first operations' one-time work such as a magazine's first fill) cancels
** out, leaving the cost of one operation, averaged over N (a full reset's garbage collector steps
** come every few operations, not each one).
**
** For shutdown and close-bare the operation is closing one state: setup makes the N states
** (not counted), and the measured function only closes them (luapool_destroy, or N lua_close);
** (Ir(2N) - Ir(N)) / N is then the cost of closing one more state, creation excluded and the
** pool's fixed teardown (its free list, its magazines) cancelled out.  Counting creation and
** closing together and subtracting a creation mode's figure would assume that the states made
** here cost what that mode's do (they do not: the pool's magazine and free list, a release's
** reset); counting the closing alone assumes nothing.
**
** Lua's string hash seed made the counts change from run to run, by up to 2%: it mixes time()
** and a stack address.  This file's time() and run_mode's thread fix both (their comments).
*/
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "luapool.h"

/*
** Lua seeds each state's string hashes with time(NULL) (luai_makeseed in lstate.c; luaopen_math
** too): with a seed that changes every second, the hash chains, and so the counts, changed from
** run to run (by up to 2% for a state's creation).  The dynamic linker binds liblua's calls to
** this definition (an executable's comes before libc's), whose constant makes every run count
** the same instructions: the figures are exact for this one seed.  Nothing here reads the time.
*/
time_t time(time_t *t) {
  const time_t fixed = 1000000000;
  if (t != NULL)
    *t = fixed;
  return fixed;
}

/* What the modes share: the pool or the pinned state the setup made. */
typedef struct bench {
  long n;              /* iterations (shutdown, close-bare: states) */
  luapool *pool;       /* NULL for the bare and pinned modes */
  lua_State *pinned;   /* the pinned state: the chunk compiled once at stack index 1 */
  lua_State **states;  /* shutdown, close-bare: the n states to close */
  unsigned long fails; /* an operation failed inside the measured loop */
} bench;

typedef struct mode {
  const char *name;
  const char *what; /* for the usage text */
  int (*setup)(bench *b);
  void (*run)(bench *b); /* the measured part; sets b->fails on a failure */
  int (*teardown)(bench *b);
} mode;

static const char globals_src[] = "for i = 1, 10 do _G['g' .. i] = i end";
static const char handler_src[] = "local t = {} for i = 1, 8 do t[i] = i end return #t";

/* ---- helpers --------------------------------------------------------------------------------- */

static int fail(const char *what, int rc) {
  fprintf(stderr, "bench_instr: %s: %s\n", what, luapool_strerror(rc));
  return -1;
}

static int lua_fail(lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "bench_instr: %s: %s\n", what, msg != NULL ? msg : "(no message)");
  return -1;
}

static int pool_open(bench *b, unsigned libs, unsigned reset) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.watchdog_interval_ms = 0; /* no thread: only the calling thread's work is counted */
  cfg.libs = libs;
  cfg.reset = reset;
  cfg.min_idle = 0; /* every state is made by an acquire */
  if (b->n > (long)cfg.max_idle)
    cfg.max_idle = (unsigned)b->n; /* shutdown: the pool keeps all n idle */
  int rc = luapool_create(&cfg, &b->pool);
  return rc == LUAPOOL_OK ? 0 : fail("luapool_create", rc);
}

static int pool_close(bench *b) {
  if (b->pool != NULL)
    luapool_destroy(b->pool);
  b->pool = NULL;
  return 0;
}

/* The pool's counters agree with what the mode meant to measure (created: states made). */
static int expect_created(bench *b, uint64_t created, const char *why) {
  luapool_stats st;
  luapool_stats_get(b->pool, &st);
  if (st.created == created)
    return 0;
  fprintf(stderr, "bench_instr: %s: %llu states created, not %llu\n", why,
          (unsigned long long)st.created, (unsigned long long)created);
  return -1;
}

/* A luaL_newstate with every standard library: the pinned and bare modes' state. */
static lua_State *bare_state(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL)
    luaL_openlibs(L);
  return L;
}

/* A luaL_newstate with the libraries of luapool's default profile (LUAPOOL_LIBS_SAFE), as
   bench_close's: the bare state that create and shutdown compare with. */
static lua_State *safe_state(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL)
    bench_open_safe_libs(L);
  return L;
}

/* A pinned state with src compiled once at stack index 1. */
static int pinned_open(bench *b, const char *src, size_t len, const char *name) {
  b->pinned = bare_state();
  if (b->pinned == NULL)
    return fail("luaL_newstate", LUAPOOL_ENOMEM);
  if (luaL_loadbufferx(b->pinned, src, len, name, "t") != LUA_OK)
    return lua_fail(b->pinned, "luaL_loadbufferx");
  return 0;
}

static int pinned_close(bench *b) {
  if (b->pinned != NULL)
    lua_close(b->pinned);
  b->pinned = NULL;
  return 0;
}

/* One request on a pooled state: the chunk from the chunk cache, called; results dropped.
   lua_pcall, not lua_call, so that a failure is reported (both sides of each ratio do it). */
static int run_cached(lua_State *L, const char *name, const char *src, size_t len, int nres) {
  int status = luapool_load(L, name, src, len);
  if (status == LUA_OK)
    status = lua_pcall(L, 0, nres, 0);
  if (status != LUA_OK)
    return lua_fail(L, name);
  lua_pop(L, nres);
  return 0;
}

/* The same on the pinned state: the function compiled once, at stack index 1. */
static int run_pinned(lua_State *L, int nres) {
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, nres, 0) != LUA_OK)
    return lua_fail(L, "pinned chunk");
  lua_pop(L, nres);
  return 0;
}

/* ---- pair, untouched, all-untouched: acquire + release --------------------------------------- */

static int pairs_setup(bench *b, unsigned libs, unsigned reset) {
  lua_State *L;
  if (pool_open(b, libs, reset) != 0)
    return -1;
  /* The warm-up: makes the one state and puts it in the magazine. */
  int rc = luapool_acquire(b->pool, 0, &L);
  if (rc != LUAPOOL_OK)
    return fail("luapool_acquire (warm-up)", rc);
  luapool_release(b->pool, L);
  return 0;
}

static int pair_setup(bench *b) {
  return pairs_setup(b, LUAPOOL_LIBS_SAFE, LUAPOOL_RESET_STACK);
}

static int untouched_setup(bench *b) {
  return pairs_setup(b, LUAPOOL_LIBS_SAFE, LUAPOOL_RESET_FULL);
}

static int all_untouched_setup(bench *b) {
  return pairs_setup(b, LUAPOOL_LIBS_ALL, LUAPOOL_RESET_FULL);
}

/* n acquires, each followed by a release or (discard) a luapool_discard; inlined with a constant
   discard, so the measured loop is the same as a loop written out for each. */
static inline void acquire_loop(bench *b, bool discard) {
  for (long i = 0; i < b->n; i++) {
    lua_State *L;
    int rc = luapool_acquire(b->pool, 0, &L);
    if (rc != LUAPOOL_OK) {
      b->fails++;
      fail("luapool_acquire", rc);
      return;
    }
    if (discard)
      luapool_discard(b->pool, L);
    else
      luapool_release(b->pool, L);
  }
}

static void pair_run(bench *b) {
  acquire_loop(b, false);
}

/* Every acquire a magazine hit: the warm-up's state, and no other. */
static int pairs_teardown(bench *b) {
  luapool_stats st;
  luapool_stats_get(b->pool, &st);
  int rc = expect_created(b, 1, "acquire + release");
  if (rc == 0 && st.magazine_hits != (uint64_t)b->n) {
    fprintf(stderr, "bench_instr: acquire + release: %llu magazine hits, not %ld\n",
            (unsigned long long)st.magazine_hits, b->n);
    rc = -1;
  }
  pool_close(b);
  return rc;
}

/* ---- array: the thread-local lower bound ----------------------------------------------------- */

/*
** bench/bench_suite.c's "thread-local array": a _Thread_local array of 4 states (luapool's
** default magazine_size) filled from a luapool once; acquire pops one, release empties its stack
** (lua_settop(L, 0), the only reset a hand-written pool does) and pushes it back.  Acquire and
** release are out-of-line functions, as the suite's (called through its table) and luapool's are.
*/
#define TL_SIZE 4
static _Thread_local lua_State *tl_states[TL_SIZE];
static _Thread_local int tl_count;

static __attribute__((noinline)) int tl_acquire(lua_State **out) {
  if (tl_count == 0)
    return LUAPOOL_EINVAL; /* never: each acquire is released before the next */
  *out = tl_states[--tl_count];
  return LUAPOOL_OK;
}

static __attribute__((noinline)) void tl_release(lua_State *L) {
  lua_settop(L, 0);
  tl_states[tl_count++] = L;
}

static int array_setup(bench *b) {
  if (pool_open(b, LUAPOOL_LIBS_SAFE, LUAPOOL_RESET_FULL) != 0)
    return -1;
  while (tl_count < TL_SIZE) {
    int rc = luapool_acquire(b->pool, 0, &tl_states[tl_count]);
    if (rc != LUAPOOL_OK)
      return fail("luapool_acquire (the array's states)", rc);
    tl_count++;
  }
  return 0;
}

static void array_run(bench *b) {
  for (long i = 0; i < b->n; i++) {
    lua_State *L;
    int rc = tl_acquire(&L);
    if (rc != LUAPOOL_OK) {
      b->fails++;
      fail("thread-local array", rc);
      return;
    }
    tl_release(L);
  }
}

static int array_teardown(bench *b) {
  while (tl_count > 0)
    luapool_release(b->pool, tl_states[--tl_count]);
  return pool_close(b);
}

/* ---- globals, all-globals, request: acquire, a cached chunk, release ------------------------- */

typedef struct chunk {
  const char *name;
  const char *src;
  size_t len;
  int nres;
} chunk;

static const chunk globals_chunk = {"=globals", globals_src, sizeof globals_src - 1, 0};
static const chunk handler_chunk = {"=handler", handler_src, sizeof handler_src - 1, 1};

static int request(bench *b, const chunk *c) {
  lua_State *L;
  int rc = luapool_acquire(b->pool, 0, &L);
  if (rc != LUAPOOL_OK)
    return fail("luapool_acquire", rc);
  rc = run_cached(L, c->name, c->src, c->len, c->nres);
  luapool_release(b->pool, L); /* a full reset: undoes the globals */
  return rc;
}

/* The warm-up compiles the chunk into the state's cache: the loop's loads are cache hits. */
static int requests_setup(bench *b, unsigned libs, const chunk *c) {
  if (pool_open(b, libs, LUAPOOL_RESET_FULL) != 0)
    return -1;
  return request(b, c);
}

static int globals_setup(bench *b) {
  return requests_setup(b, LUAPOOL_LIBS_SAFE, &globals_chunk);
}

static int all_globals_setup(bench *b) {
  return requests_setup(b, LUAPOOL_LIBS_ALL, &globals_chunk);
}

static int request_setup(bench *b) {
  return requests_setup(b, LUAPOOL_LIBS_SAFE, &handler_chunk);
}

static void requests_run(bench *b, const chunk *c) {
  for (long i = 0; i < b->n; i++)
    if (request(b, c) != 0) {
      b->fails++;
      return;
    }
}

static void globals_run(bench *b) {
  requests_run(b, &globals_chunk);
}

static void request_run(bench *b) {
  requests_run(b, &handler_chunk);
}

/* One state, every chunk compiled once (a single miss): what a full reset must keep. */
static int requests_teardown(bench *b) {
  luapool_stats st;
  luapool_stats_get(b->pool, &st);
  int rc = expect_created(b, 1, "requests");
  if (rc == 0 && st.cache_misses != 1) {
    fprintf(stderr, "bench_instr: requests: %llu chunk cache misses, not 1\n",
            (unsigned long long)st.cache_misses);
    rc = -1;
  }
  pool_close(b);
  return rc;
}

/* ---- globals-pinned, request-pinned: the same chunk on a state never reset ------------------- */

static int pinned_setup_chunk(bench *b, const chunk *c) {
  if (pinned_open(b, c->src, c->len, c->name) != 0)
    return -1;
  return run_pinned(b->pinned, c->nres); /* the warm-up, as the pooled modes' */
}

static int globals_pinned_setup(bench *b) {
  return pinned_setup_chunk(b, &globals_chunk);
}

static int request_pinned_setup(bench *b) {
  return pinned_setup_chunk(b, &handler_chunk);
}

static void pinned_run(bench *b, int nres) {
  for (long i = 0; i < b->n; i++)
    if (run_pinned(b->pinned, nres) != 0) {
      b->fails++;
      return;
    }
}

static void globals_pinned_run(bench *b) {
  pinned_run(b, globals_chunk.nres);
}

static void request_pinned_run(bench *b) {
  pinned_run(b, handler_chunk.nres);
}

/* ---- create, create-all, create-bare: a state made and closed -------------------------------- */

/* min_idle 0 and a discard each time: the magazines and the free list stay empty, so each
   acquire makes a new state and each discard closes it (no watchdog: at once, on this thread). */
static int creates_setup(bench *b, unsigned libs) {
  if (pool_open(b, libs, LUAPOOL_RESET_FULL) != 0)
    return -1;
  lua_State *L;
  int rc = luapool_acquire(b->pool, 0, &L); /* the warm-up */
  if (rc != LUAPOOL_OK)
    return fail("luapool_acquire (warm-up)", rc);
  luapool_discard(b->pool, L);
  return 0;
}

static int create_setup(bench *b) {
  return creates_setup(b, LUAPOOL_LIBS_SAFE);
}

static int create_all_setup(bench *b) {
  return creates_setup(b, LUAPOOL_LIBS_ALL);
}

static void create_run(bench *b) {
  acquire_loop(b, true);
}

/* The warm-up's state and one per iteration. */
static int create_teardown(bench *b) {
  int rc = expect_created(b, (uint64_t)b->n + 1, "create");
  pool_close(b);
  return rc;
}

static int none_setup(bench *b) {
  (void)b;
  return 0;
}

static int none_teardown(bench *b) {
  (void)b;
  return 0;
}

static void bare_loop(bench *b, lua_State *(*make)(void)) {
  for (long i = 0; i < b->n; i++) {
    lua_State *L = make();
    if (L == NULL) {
      b->fails++;
      fail("luaL_newstate", LUAPOOL_ENOMEM);
      return;
    }
    lua_close(L);
  }
}

static void create_bare_run(bench *b) {
  bare_loop(b, safe_state);
}

static void create_bare_all_run(bench *b) {
  bare_loop(b, bare_state);
}

/* ---- shutdown, close-bare: n states closed --------------------------------------------------- */

/* n states made by acquires (every one new: none is released before the last is acquired),
   then all released: the pool holds n idle states, n - 4 of them on its free list. */
static int shutdown_setup(bench *b) {
  if (pool_open(b, LUAPOOL_LIBS_SAFE, LUAPOOL_RESET_FULL) != 0)
    return -1;
  b->states = calloc((size_t)b->n, sizeof *b->states);
  if (b->states == NULL)
    return fail("calloc", LUAPOOL_ENOMEM);
  for (long i = 0; i < b->n; i++) {
    int rc = luapool_acquire(b->pool, 0, &b->states[i]);
    if (rc != LUAPOOL_OK)
      return fail("luapool_acquire", rc);
  }
  for (long i = 0; i < b->n; i++)
    luapool_release(b->pool, b->states[i]);
  luapool_stats st;
  luapool_stats_get(b->pool, &st);
  if (st.created != (uint64_t)b->n || st.idle != (unsigned)b->n) {
    fprintf(stderr, "bench_instr: shutdown: %llu created, %u idle, not %ld\n",
            (unsigned long long)st.created, st.idle, b->n);
    return -1;
  }
  return 0;
}

static void shutdown_run(bench *b) {
  luapool_destroy(b->pool); /* shuts the pool down: closes its n idle states */
  b->pool = NULL;
}

static int close_bare_setup(bench *b) {
  b->states = calloc((size_t)b->n, sizeof *b->states);
  if (b->states == NULL)
    return fail("calloc", LUAPOOL_ENOMEM);
  for (long i = 0; i < b->n; i++)
    if ((b->states[i] = safe_state()) == NULL)
      return fail("luaL_newstate", LUAPOOL_ENOMEM);
  return 0;
}

static void close_bare_run(bench *b) {
  for (long i = 0; i < b->n; i++) {
    lua_close(b->states[i]);
    b->states[i] = NULL;
  }
}

static int states_teardown(bench *b) {
  free(b->states);
  b->states = NULL;
  return pool_close(b);
}

/* ---- the modes ------------------------------------------------------------------------------- */

static const mode modes[] = {
    {"pair", "acquire + release, LUAPOOL_RESET_STACK (a magazine hit)", pair_setup, pair_run,
     pairs_teardown},
    {"array", "pop a state from a thread-local array, lua_settop(L, 0), push it back", array_setup,
     array_run, array_teardown},
    {"untouched", "acquire + release, LUAPOOL_RESET_FULL, the sandbox (LUAPOOL_LIBS_SAFE)",
     untouched_setup, pair_run, pairs_teardown},
    {"globals", "acquire, a cached chunk setting 10 globals, release (full reset)", globals_setup,
     globals_run, requests_teardown},
    {"globals-pinned", "the same chunk on a pinned luaL_openlibs state, never reset",
     globals_pinned_setup, globals_pinned_run, pinned_close},
    {"all-untouched", "untouched, LUAPOOL_LIBS_ALL", all_untouched_setup, pair_run, pairs_teardown},
    {"all-globals", "globals, LUAPOOL_LIBS_ALL", all_globals_setup, globals_run, requests_teardown},
    {"request", "acquire, a cached handler (a table of 8), lua_pcall, release", request_setup,
     request_run, requests_teardown},
    {"request-pinned", "the same handler on a pinned luaL_openlibs state, never reset",
     request_pinned_setup, request_pinned_run, pinned_close},
    {"create", "acquire (a new state, the sandbox) + luapool_discard", create_setup, create_run,
     create_teardown},
    {"create-all", "create, LUAPOOL_LIBS_ALL", create_all_setup, create_run, create_teardown},
    {"create-bare", "luaL_newstate + the sandbox's six libraries + lua_close", none_setup,
     create_bare_run, none_teardown},
    {"create-bare-all", "luaL_newstate + luaL_openlibs + lua_close", none_setup,
     create_bare_all_run, none_teardown},
    {"shutdown", "luapool_destroy of a pool of N idle states (the sandbox)", shutdown_setup,
     shutdown_run, states_teardown},
    {"close-bare", "lua_close of N states with the sandbox's six libraries", close_bare_setup,
     close_bare_run, states_teardown},
};

/*
** The only function callgrind counts (instr.sh: --toggle-collect).  External and out of line so
** that its name stays in the symbol table as it is (no inlined or cloned copy elsewhere).
*/
void bench_instr_measured(const mode *m, bench *b);
__attribute__((noinline)) void bench_instr_measured(const mode *m, bench *b) {
  m->run(b);
}

typedef struct run_args {
  const mode *m;
  long n;
  int rc; /* 0: every operation succeeded */
} run_args;

/*
** The mode, on a thread of its own.  Lua seeds each state's string hashes with addresses, one
** of them on the C stack (luai_makeseed in lstate.c), so the counts depend on where the stack
** is.  The main thread's stack starts below the environment and the arguments (a longer one
** moved it, and the counts by up to 2%); a thread's stack is mapped by pthread_create, whose
** address under valgrind is the same from run to run, whatever the environment or the path.
*/
static void *run_mode(void *arg) {
  run_args *a = arg;
  bench b = {.n = a->n};
  if (a->m->setup(&b) != 0) {
    fprintf(stderr, "bench_instr: %s: the setup failed\n", a->m->name);
    return NULL;
  }
  bench_instr_measured(a->m, &b);
  int rc = b.fails == 0 ? 0 : -1;
  if (a->m->teardown(&b) != 0)
    rc = -1;
  a->rc = rc;
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_instr MODE N\n  N iterations of MODE's operation (for callgrind: "
             "bench/instr.sh); MODE is one of:\n");
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    fprintf(f, "  %-15s %s\n", modes[i].name, modes[i].what);
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  char *end = NULL;
  long n = argc == 3 ? strtol(argv[2], &end, 10) : 0;
  if (argc != 3 || end == argv[2] || *end != '\0' || n <= 0 || n > 100000000) {
    usage(stderr);
    return 2;
  }
  const mode *m = NULL;
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (strcmp(argv[1], modes[i].name) == 0)
      m = &modes[i];
  if (m == NULL) {
    fprintf(stderr, "bench_instr: no mode '%s'\n", argv[1]);
    usage(stderr);
    return 2;
  }
  run_args a = {m, n, -1};
  pthread_t t;
  int err = pthread_create(&t, NULL, run_mode, &a);
  if (err != 0) {
    fprintf(stderr, "bench_instr: pthread_create: %s\n", strerror(err));
    return 1;
  }
  pthread_join(t, NULL);
  if (a.rc != 0) {
    fprintf(stderr, "bench_instr: %s: failed\n", m->name);
    return 1;
  }
  return 0;
}
