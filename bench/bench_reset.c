/*
** bench_reset.c: what LUAPOOL_RESET_FULL costs, against making a fresh state, on one thread.
**
** For each profile (LUAPOOL_LIBS_SAFE, the sandbox, and LUAPOOL_LIBS_ALL), with no watchdog
** thread, it times these cases in nanoseconds per operation:
**   untouched  acquire + release with nothing run: the reset finds nothing to undo;
**   touch      acquire, a cached chunk that sets 10 globals and one library field, release; and
**              the same chunk run again and again on a pinned state (no acquire, no reset), so
**              that the difference is the share of the acquire and of the reset that undoes it;
**   fresh      a new state with the profile's libraries made the way a server without a pool
**              makes one (luaL_newstate, the libraries, lua_close), and one made by luapool
**              itself (acquire from a pool that keeps nothing, then discard: adds the sandbox);
**   request    acquire, a small handler (about a microsecond of work), release; against a fresh
**              state per request, and a pinned state running the handler compiled once, with no
**              reset at all: the limit no pool can beat.
** Each case runs once as a warm-up (not reported); then each repetition runs every case in turn,
** so that all of them see the same machine noise.  The project's targets are printed next to
** the figures they are about, with "met" or "missed".
**
** A benchmark measures and never asserts: it exits 1 only when something fails to run (a pool
** that cannot be made, or a Lua error, which is a bug in the benchmark, not a measurement).
*/
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdarg.h>
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

#define MAX_REPS BENCH_MAX_REPS
#define WARMUP_SECONDS 0.05 /* per case, at most --seconds */
#define BATCH_NS 2e5        /* the clock is read about every 200 us of operations */

/* ---- the Lua code ------------------------------------------------------------------------ */

/*
** 10 globals and one library field.  Under the sandbox the library tables are read-only and the
** assignment raises an error: the pcall catches it, so the chunk succeeds in both profiles.  It
** returns whether the assignment took (checked once, outside the timed runs).
*/
static const char touch_src[] = "g1 = 1; g2 = 2; g3 = 3; g4 = 4; g5 = 5\n"
                                "g6 = 6; g7 = 7; g8 = 8; g9 = 9; g10 = 10\n"
                                "return (pcall(function() string.x = 1 end))\n";

/* A request handler: about a microsecond of work, returning a number. */
static const char handler_src[] = "local t = {}\n"
                                  "for i = 1, 12 do t[i] = i * 3 end\n"
                                  "local s = string.format('%d items, last %d', #t, t[#t])\n"
                                  "return #s + t[1]\n";

/* ---- profiles ---------------------------------------------------------------------------- */

static int open_all_libs(lua_State *L) {
  luaL_openlibs(L);
  return 0;
}

typedef struct profile {
  const char *name; /* as --profile spells it */
  const char *what;
  unsigned libs;           /* luapool_config.libs */
  lua_CFunction open_libs; /* the same libraries on a bare state */
  const char *bare_how;    /* how a bare state gets them */
} profile;

static const profile profiles[] = {
    {"safe", "LUAPOOL_LIBS_SAFE (the default sandbox)", LUAPOOL_LIBS_SAFE, bench_open_safe_libs,
     "luaL_requiref of base, coroutine, table, string, math, utf8"},
    {"all", "LUAPOOL_LIBS_ALL (every standard library, no sandbox)", LUAPOOL_LIBS_ALL,
     open_all_libs, "luaL_openlibs"},
};
enum { PROFILE_COUNT = sizeof profiles / sizeof profiles[0] };

/* ---- one profile's pools and states ------------------------------------------------------ */

/*
** One pool per case that uses one, so that each pool's counters tell about one case (and each
** case keeps its own warm states).  A thread keeps magazines for 8 pools at most: only one
** profile's pools exist at a time.
*/
typedef struct bench {
  const profile *prof;
  luapool *untouched, *touch, *request;
  luapool *pin;      /* the pinned state's */
  luapool *fresh;    /* magazine_size 0, max_idle 0: each acquire makes a state */
  lua_State *pinned; /* from pin, held for the whole profile; the compiled handler at index 1 */
  char error[512];   /* what failed, when an operation returns -1 */
} bench;

static int fail(bench *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->error, sizeof b->error, fmt, ap);
  va_end(ap);
  return -1;
}

/* The error object on top of L's stack, popped, into b->error. */
static int fail_lua(bench *b, lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  fail(b, "%s: Lua error: %s", what, msg != NULL ? msg : "(error object is not a string)");
  lua_pop(L, 1);
  return -1;
}

/* luapool_load of src (compiled once per state), then lua_pcall keeping nresults results. */
static int run_cached(bench *b, lua_State *L, const char *name, const char *src, size_t len,
                      int nresults) {
  int status = luapool_load(L, name, src, len);
  if (status == LUA_OK)
    status = lua_pcall(L, 0, nresults, 0);
  return status == LUA_OK ? 0 : fail_lua(b, L, name + 1);
}

/* A state with the profile's libraries, made without luapool. */
static int bare_state(bench *b, lua_State **out) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return fail(b, "luaL_newstate: out of memory");
  lua_pushcfunction(L, b->prof->open_libs);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fail_lua(b, L, "opening the libraries");
    lua_close(L);
    return -1;
  }
  *out = L;
  return 0;
}

static int acquire(bench *b, luapool *p, lua_State **out) {
  int rc = luapool_acquire(p, -1, out);
  return rc == LUAPOOL_OK ? 0 : fail(b, "luapool_acquire: %s", luapool_strerror(rc));
}

/* ---- the cases: one operation each; 0, or -1 with b->error set ------------------------- */

static int op_untouched(bench *b) {
  lua_State *L;
  if (acquire(b, b->untouched, &L) != 0)
    return -1;
  luapool_release(b->untouched, L);
  return 0;
}

static int op_touch(bench *b) {
  lua_State *L;
  if (acquire(b, b->touch, &L) != 0)
    return -1;
  int rc = run_cached(b, L, "=touch", touch_src, sizeof touch_src - 1, 0);
  luapool_release(b->touch, L);
  return rc;
}

static int op_touch_pinned(bench *b) {
  return run_cached(b, b->pinned, "=touch", touch_src, sizeof touch_src - 1, 0);
}

static int op_fresh(bench *b) {
  lua_State *L;
  if (bare_state(b, &L) != 0)
    return -1;
  lua_close(L);
  return 0;
}

static int op_fresh_luapool(bench *b) {
  lua_State *L;
  if (acquire(b, b->fresh, &L) != 0)
    return -1;
  luapool_discard(b->fresh, L); /* no watchdog thread: closed here */
  return 0;
}

static int op_request(bench *b) {
  lua_State *L;
  if (acquire(b, b->request, &L) != 0)
    return -1;
  int rc = run_cached(b, L, "=handler", handler_src, sizeof handler_src - 1, 1);
  if (rc == 0)
    lua_pop(L, 1);
  luapool_release(b->request, L);
  return rc;
}

static int op_request_fresh(bench *b) {
  lua_State *L;
  if (bare_state(b, &L) != 0)
    return -1;
  int status = luaL_loadbufferx(L, handler_src, sizeof handler_src - 1, "=handler", "t");
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 1, 0);
  int rc = status == LUA_OK ? 0 : fail_lua(b, L, "handler");
  lua_close(L);
  return rc;
}

static int op_request_pinned(bench *b) {
  lua_State *L = b->pinned;
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK)
    return fail_lua(b, L, "handler");
  lua_pop(L, 1);
  return 0;
}

enum {
  C_UNTOUCHED,
  C_TOUCH,
  C_TOUCH_PINNED,
  C_FRESH,
  C_FRESH_LUAPOOL,
  C_REQUEST,
  C_REQUEST_FRESH,
  C_REQUEST_PINNED,
  C_COUNT
};

typedef struct bench_case {
  const char *label;
  int (*op)(bench *b);
} bench_case;

static const bench_case cases[C_COUNT] = {
    [C_UNTOUCHED] = {"1 untouched: acquire + release", op_untouched},
    [C_TOUCH] = {"2 10 globals + string.x: acquire, run, release", op_touch},
    [C_TOUCH_PINNED] = {"  the same chunk on a pinned state, no reset", op_touch_pinned},
    [C_FRESH] = {"3 fresh state: newstate, libraries, close", op_fresh},
    [C_FRESH_LUAPOOL] = {"  fresh state by luapool: acquire + discard", op_fresh_luapool},
    [C_REQUEST] = {"4 request: acquire, handler, release", op_request},
    [C_REQUEST_FRESH] = {"  a fresh state per request", op_request_fresh},
    [C_REQUEST_PINNED] = {"  a pinned state, handler compiled once", op_request_pinned},
};

/* ---- setup ------------------------------------------------------------------------------- */

static int make_pool(bench *b, luapool **out, bool keeps_nothing) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.libs = b->prof->libs;
  cfg.reset = LUAPOOL_RESET_FULL;
  cfg.watchdog_interval_ms = 0;
  if (keeps_nothing) {
    cfg.magazine_size = 0;
    cfg.max_idle = 0;
  }
  int rc = luapool_create(&cfg, out);
  return rc == LUAPOOL_OK ? 0 : fail(b, "luapool_create: %s", luapool_strerror(rc));
}

static void close_pool(luapool **p) {
  if (*p == NULL)
    return;
  (void)luapool_shutdown(*p, -1); /* every state is back: the drain is immediate */
  luapool_destroy(*p);
  *p = NULL;
}

static void bench_close(bench *b) {
  if (b->pinned != NULL) {
    lua_settop(b->pinned, 0);
    luapool_release(b->pin, b->pinned);
    b->pinned = NULL;
  }
  close_pool(&b->untouched);
  close_pool(&b->touch);
  close_pool(&b->request);
  close_pool(&b->pin);
  close_pool(&b->fresh);
}

/* The pools, and the pinned state with the handler compiled at its stack index 1. */
static int bench_open(bench *b, const profile *prof) {
  *b = (bench){.prof = prof};
  if (make_pool(b, &b->untouched, false) != 0 || make_pool(b, &b->touch, false) != 0 ||
      make_pool(b, &b->request, false) != 0 || make_pool(b, &b->pin, false) != 0 ||
      make_pool(b, &b->fresh, true) != 0 || acquire(b, b->pin, &b->pinned) != 0)
    return -1;
  if (luapool_load(b->pinned, "=handler", handler_src, sizeof handler_src - 1) != LUA_OK)
    return fail_lua(b, b->pinned, "handler");
  return 0;
}

/*
** Runs each chunk once and looks at what it returns (outside the timed runs): the handler
** returns a number; *field_set: whether string.x = 1 took in the touch chunk.
*/
static int check_chunks(bench *b, bool *field_set) {
  lua_State *L = b->pinned;
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK)
    return fail_lua(b, L, "handler");
  bool number = lua_type(L, -1) == LUA_TNUMBER;
  lua_pop(L, 1);
  if (!number)
    return fail(b, "handler: returned no number");
  if (acquire(b, b->touch, &L) != 0)
    return -1;
  int rc = run_cached(b, L, "=touch", touch_src, sizeof touch_src - 1, 1);
  if (rc == 0) {
    *field_set = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  luapool_release(b->touch, L);
  return rc;
}

/* ---- timing ------------------------------------------------------------------------------ */

/* Runs c for at least seconds, reading the clock every batch operations; ns per operation. */
static int time_case(bench *b, const bench_case *c, double seconds, long batch, double *ns) {
  struct timespec begin, now;
  uint64_t ops = 0;
  double elapsed;
  clock_gettime(CLOCK_MONOTONIC, &begin);
  do {
    for (long i = 0; i < batch; i++)
      if (c->op(b) != 0)
        return -1;
    ops += (uint64_t)batch;
    clock_gettime(CLOCK_MONOTONIC, &now);
    elapsed = bench_seconds_between(&begin, &now);
  } while (elapsed < seconds);
  *ns = elapsed * 1e9 / (double)ops;
  return 0;
}

typedef struct options {
  double seconds; /* measured time of one repetition of one case */
  int reps;
  bool run_profile[PROFILE_COUNT];
} options;

static double warmup_seconds(const options *opt) {
  return opt->seconds < WARMUP_SECONDS ? opt->seconds : WARMUP_SECONDS;
}

/* The warm-up (which also sizes each case's batch), then the repetitions, cases interleaved. */
static int measure_profile(bench *b, const options *opt, bench_summary out[C_COUNT]) {
  static double samples[C_COUNT][MAX_REPS];
  long batch[C_COUNT];
  for (int c = 0; c < C_COUNT; c++) {
    double ns;
    if (time_case(b, &cases[c], warmup_seconds(opt), 1, &ns) != 0)
      return -1;
    double n = BATCH_NS / ns;
    batch[c] = n < 1 ? 1 : n > 1e6 ? 1000000 : (long)n;
  }
  for (int rep = 0; rep < opt->reps; rep++)
    for (int c = 0; c < C_COUNT; c++)
      if (time_case(b, &cases[c], opt->seconds, batch[c], &samples[c][rep]) != 0)
        return -1;
  for (int c = 0; c < C_COUNT; c++)
    out[c] = bench_summarize(samples[c], opt->reps);
  return 0;
}

/* ---- output ------------------------------------------------------------------------------ */

static void print_header(const options *opt) {
  char cpu[128];
  bench_cpu_model(cpu, sizeof cpu);
  printf("bench_reset: LUAPOOL_RESET_FULL against a fresh state, one thread, no watchdog\n");
  printf("machine: %s, %ld online core(s), %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), LUA_RELEASE);
  printf("each case: %d repetition(s) of %.2f s after a %.2f s warm-up, cases interleaved\n",
         opt->reps, opt->seconds, warmup_seconds(opt));
  fflush(stdout);
}

static void print_table(const bench *b, const bench_summary s[C_COUNT]) {
  printf("\nprofile %s: %s\n", b->prof->name, b->prof->what);
  printf("  %-48s %s\n", "case", "ns/op median [min-max]");
  for (int c = 0; c < C_COUNT; c++) {
    char cell[80];
    snprintf(cell, sizeof cell, "%.1f [%.1f-%.1f]", s[c].median, s[c].min, s[c].max);
    printf("  %-48s %s\n", cases[c].label, cell);
  }
}

/* One figure against its target: at_most, figure <= target; otherwise figure >= target. */
static void print_target(const char *what, double figure, const char *unit, bool at_most,
                         double target) {
  bool met = at_most ? figure <= target : figure >= target;
  char fig[32], tgt[32];
  snprintf(fig, sizeof fig, "%.*f%s", *unit == 'x' ? 2 : 1, figure, unit);
  snprintf(tgt, sizeof tgt, "%s %g%s", at_most ? "<=" : ">=", target, unit);
  printf("  %-38s %12s   target %-11s %s\n", what, fig, tgt, met ? "met" : "missed");
}

static void print_pool_counters(const char *what, luapool *p) {
  luapool_stats st;
  luapool_stats_get(p, &st);
  printf("    %-22s %10llu releases, %10llu restored, %llu tainted\n", what,
         (unsigned long long)st.releases, (unsigned long long)st.restored,
         (unsigned long long)st.tainted);
}

static void print_results(const bench *b, const bench_summary s[C_COUNT], bool field_set) {
  print_table(b, s);
  double untouched = s[C_UNTOUCHED].median, touch = s[C_TOUCH].median;
  double fresh = s[C_FRESH].median, fresh_lp = s[C_FRESH_LUAPOOL].median;
  double request = s[C_REQUEST].median;
  double pinned_touch = s[C_TOUCH_PINNED].median, pinned_request = s[C_REQUEST_PINNED].median;
  bool sandbox = (b->prof->libs & LUAPOOL_LIB_SANDBOX) != 0;
  /* the targets of the reset's cost (the project's issue "a full reset at the cost of none") */
  printf("  targets (medians; \"fresh\" is case 3's bare state)\n");
  if (sandbox) {
    print_target("untouched reset", untouched, " ns", true, 150);
    print_target("10 globals case / its pinned run", touch / pinned_touch, "x", true, 4);
    print_target("request: pooled / pinned", request / pinned_request, "x", true, 1.11);
  } else {
    print_target("fresh / untouched", fresh / untouched, "x", false, 25);
    print_target("request: pooled / pinned", request / pinned_request, "x", true, 2);
  }
  print_target("fresh state by luapool / bare", fresh_lp / fresh, "x", true, 2);
  print_target("request: fresh per request / pooled", s[C_REQUEST_FRESH].median / request, "x",
               false, 15);
  printf("  (request: pooled / pinned <= 1.11x is >= 0.9x the pinned state's throughput)\n");

  double share = touch - s[C_TOUCH_PINNED].median;
  printf("  10 globals case less its pinned run: %.1f ns (%.0f%% of the case): acquire + the "
         "reset;\n    less the untouched case too: %.1f ns, finding and undoing the change\n",
         share, 100 * share / touch, share - untouched);
  printf("  fresh state by luapool: %.2fx the bare one; / untouched %.1fx, / 10 globals case "
         "%.1fx\n",
         fresh_lp / fresh, fresh_lp / untouched, fresh_lp / touch);
  printf("  string.x = 1 in the 10 globals chunk: %s\n",
         field_set ? "assigned (the reset must undo it)"
                   : "refused, read-only library (caught by the chunk's pcall)");
  printf("  reset counters over all runs (luapool_stats):\n");
  print_pool_counters("untouched pool:", b->untouched);
  print_pool_counters("10 globals pool:", b->touch);
  print_pool_counters("request pool:", b->request);
  fflush(stdout);
}

static void print_legend(void) {
  printf("\nns/op: one operation's time on one thread, median [min-max] over the repetitions;\n"
         "ratios: of the medians; pinned: one state kept by the thread, never released nor reset;\n"
         "restored: releases whose reset found and undid a change; tainted: states the reset\n"
         "could not restore (closed).  Targets are reported, never asserted.\n");
}

/* ---- options ----------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_reset [--seconds S] [--reps N] [--profile safe|all|both] [--help]\n"
          "  --seconds S   measured time of one repetition of one case: above 0, at most 3600\n"
          "                (default 0.2; 8 cases a profile, so the default run takes ~17 s)\n"
          "  --reps N      repetitions per case, 1 to %d; the median is reported (default 5)\n"
          "  --profile P   safe (LUAPOOL_LIBS_SAFE), all (LUAPOOL_LIBS_ALL) or both (default)\n",
          MAX_REPS);
}

static bool parse_profile(const char *text, options *opt) {
  bool both = strcmp(text, "both") == 0, found = both;
  for (int i = 0; i < PROFILE_COUNT; i++) {
    opt->run_profile[i] = both || strcmp(text, profiles[i].name) == 0;
    found = found || opt->run_profile[i];
  }
  return found;
}

static int one_option(void *o, const char *arg, const char *value) {
  options *opt = o;
  bool ok;
  if (strcmp(arg, "--seconds") == 0)
    ok = bench_parse_seconds(value, &opt->seconds);
  else if (strcmp(arg, "--reps") == 0)
    ok = bench_parse_reps(value, &opt->reps);
  else if (strcmp(arg, "--profile") == 0)
    ok = parse_profile(value, opt);
  else
    return BENCH_OPT_UNKNOWN;
  return ok ? BENCH_OPT_GOOD : BENCH_OPT_BAD;
}

/* 0: run; 1: --help printed; -1: bad options (reported). */
static int parse_args(int argc, char **argv, options *opt) {
  *opt = (options){.seconds = 0.2, .reps = 5};
  for (int i = 0; i < PROFILE_COUNT; i++)
    opt->run_profile[i] = true;
  return bench_parse_options(argc, argv, "bench_reset", usage, one_option, opt);
}

/* ---- main -------------------------------------------------------------------------------- */

/* Measures and reports one profile; 0, or -1 with the failure reported. */
static int run_profile(const profile *prof, const options *opt) {
  bench b;
  bench_summary s[C_COUNT];
  bool field_set = false;
  int rc = bench_open(&b, prof);
  if (rc == 0)
    rc = check_chunks(&b, &field_set);
  if (rc == 0)
    rc = measure_profile(&b, opt, s);
  if (rc == 0)
    print_results(&b, s, field_set);
  else
    fprintf(stderr, "bench_reset: profile %s: %s\n", prof->name, b.error);
  bench_close(&b);
  return rc;
}

int main(int argc, char **argv) {
  options opt;
  int args = parse_args(argc, argv, &opt);
  if (args != 0)
    return args > 0 ? 0 : 2;
  print_header(&opt);
  for (int i = 0; i < PROFILE_COUNT; i++)
    if (opt.run_profile[i] && run_profile(&profiles[i], &opt) != 0)
      return 1;
  print_legend();
  return 0;
}
