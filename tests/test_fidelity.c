/*
** Fidelity: a pooled state runs Lua programs exactly as stock Lua does, on its first use and
** when it comes back after a reset.
**
** Each program in tests/fidelity/ exercises one area of the language or its libraries and
** returns one string.  The string from a new stock state (luaL_newstate + luaL_openlibs) is the
** expected one; a pool with magazine_size 1 then hands out the same state four times and each
** run must return exactly that string: twice through luaL_loadbufferx, then twice through
** luapool_load (compiled, then from the chunk cache).  Every run uses the same chunk name, so
** that messages with positions match.  The programs set globals and change libraries,
** metatables, the collector and hooks on purpose: whatever the reset misses shows up as a
** difference in the next run.  finalizers.lua sets __gc metatables, which make luapool close
** the state at release (by design): there each run must get a new state, and still match.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifndef FIDELITY_DIR
#error "FIDELITY_DIR must be the absolute path of tests/fidelity (see Makefile.am)"
#endif

/* check_program's flags. */
enum {
  F_TAINTS = 1 /* sets __gc metatables: each release closes the state */
};

typedef struct text {
  char *s;
  size_t len;
} text;

/* One program's run: what abort_run() must give back before it aborts the test. */
typedef struct ctx {
  const char *file;
  char chunk[64]; /* "=name": the same chunk name for every run */
  text src;
  text expected;
  text again; /* a second stock run */
  luapool *pool;
  lua_State *L; /* checked out of pool, or NULL */
} ctx;

static void ctx_free(ctx *c) {
  if (c->L != NULL)
    luapool_release(c->pool, c->L);
  if (c->pool != NULL)
    luapool_destroy(c->pool);
  free(c->src.s);
  free(c->expected.s);
  free(c->again.s);
  memset(c, 0, sizeof *c);
}

/* Fails the test with a message naming the program.  The message is formatted before anything
   is freed: its arguments may point into the state or the buffers. */
static void abort_run(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void abort_run(ctx *c, const char *fmt, ...) {
  static char msg[8192];
  char file[64];
  snprintf(file, sizeof file, "%s", c->file);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ctx_free(c);
  ck_abort_msg("%s: %s", file, msg);
  abort(); /* not reached: ck_abort_msg does not return */
}

static void read_program(ctx *c) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", FIDELITY_DIR, c->file);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    abort_run(c, "cannot open %s", path);
  size_t cap = 1 << 14, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) {
      fclose(f);
      abort_run(c, "out of memory reading %s", path);
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap)
      break;
    char *bigger = realloc(buf, cap * 2);
    if (bigger == NULL)
      free(buf);
    buf = bigger;
    cap *= 2;
  }
  bool bad = ferror(f) != 0;
  fclose(f);
  c->src.s = buf;
  c->src.len = len;
  if (bad)
    abort_run(c, "cannot read %s", path);
}

/* The number of lines of s (n bytes) that differ from the same line of t (m bytes). */
static int lines_differing(const char *s, size_t n, const char *t, size_t m) {
  int count = 0;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    const char *se = memchr(s + i, '\n', n - i), *te = memchr(t + j, '\n', m - j);
    size_t sl = (se != NULL ? (size_t)(se - s) : n) - i,
           tl = (te != NULL ? (size_t)(te - t) : m) - j;
    if (i >= n || j >= m || sl != tl || memcmp(s + i, t + j, sl) != 0)
      count++;
    i = i < n ? i + sl + 1 : n;
    j = j < m ? j + tl + 1 : m;
  }
  return count;
}

/* Fails unless got (from `who`) is exactly want, showing the first line where they differ. */
static void compare(ctx *c, const char *what, const char *who, const char *want, size_t want_len,
                    const char *got, size_t got_len) {
  if (got_len == want_len && memcmp(got, want, got_len) == 0)
    return;
  size_t i = 0, line_start = 0;
  int line = 1;
  while (i < want_len && i < got_len && want[i] == got[i]) {
    if (want[i] == '\n') {
      line++;
      line_start = i + 1;
    }
    i++;
  }
  const char *w = want + line_start, *g = got + line_start;
  const char *wend = memchr(w, '\n', want_len - line_start);
  const char *gend = memchr(g, '\n', got_len - line_start);
  int wn = (int)((wend != NULL ? wend : want + want_len) - w);
  int gn = (int)((gend != NULL ? gend : got + got_len) - g);
  abort_run(c,
            "%s: differs from stock Lua at line %d of the result (%d lines differ)\n"
            "  stock Lua: %.*s\n  %-9s: %.*s",
            what, line, lines_differing(want, want_len, got, got_len), wn > 1000 ? 1000 : wn, w,
            who, gn > 1000 ? 1000 : gn, g);
}

/* Calls the chunk loaded with `status` on top of L; returns its string (in L, at the top). */
static const char *call_chunk(ctx *c, lua_State *L, int status, const char *what, size_t *len) {
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 1, 0);
  if (status != LUA_OK) {
    const char *err = lua_tostring(L, -1);
    abort_run(c, "%s: Lua error: %s", what, err != NULL ? err : "(error object is not a string)");
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    abort_run(c, "%s: the program returned a %s, not a string", what, luaL_typename(L, -1));
  return lua_tolstring(L, -1, len);
}

/* Runs the program in a new stock state; the result is malloc'ed. */
static text run_stock(ctx *c) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    abort_run(c, "luaL_newstate failed");
  luaL_openlibs(L);
  int status = luaL_loadbufferx(L, c->src.s, c->src.len, c->chunk, "t");
  size_t len;
  const char *s;
  if (status == LUA_OK)
    status = lua_pcall(L, 0, 1, 0);
  if (status != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    char err[4096];
    const char *e = lua_tostring(L, -1);
    snprintf(err, sizeof err, "%s",
             status != LUA_OK ? (e != NULL ? e : "(not a string)")
                              : "the program did not return a string");
    lua_close(L);
    abort_run(c, "stock Lua: %s", err);
  }
  s = lua_tolstring(L, -1, &len);
  text t = {malloc(len + 1), len};
  if (t.s == NULL) {
    lua_close(L);
    abort_run(c, "out of memory");
  }
  memcpy(t.s, s, len + 1);
  lua_close(L);
  return t;
}

/* The runs on the pooled state: how each loads the program. */
static const struct {
  bool via_cache; /* luapool_load rather than luaL_loadbufferx */
  const char *what;
} runs[] = {
    {false, "first use (luaL_loadbufferx)"},
    {false, "reuse (luaL_loadbufferx)"},
    {true, "reuse (luapool_load, compiled)"},
    {true, "reuse (luapool_load, from the chunk cache)"},
};
#define NRUNS ((int)(sizeof runs / sizeof runs[0]))

/*
** Runs tests/fidelity/<file> in stock Lua (twice, in two new states: the program itself must be
** deterministic), then NRUNS times in one pool with the given libraries.
*/
static void check_program(const char *file, unsigned libs, int flags) {
  ctx c;
  memset(&c, 0, sizeof c);
  c.file = file;
  const char *dot = strrchr(file, '.');
  size_t stem = dot != NULL ? (size_t)(dot - file) : strlen(file);
  snprintf(c.chunk, sizeof c.chunk, "=%.*s", (int)stem, file);
  read_program(&c);
  c.expected = run_stock(&c);
  c.again = run_stock(&c);
  compare(&c, "not deterministic", "stock too", c.expected.s, c.expected.len, c.again.s,
          c.again.len);

  luapool_config cfg;
  util_config_libs(&cfg, libs); /* the released state is the next one acquired */
  cfg.stack_limit = 0;          /* Lua's own stack limit: its tests overflow the stack on purpose */
  c.pool = util_pool(&cfg);
  lua_State *first = NULL;
  for (int r = 0; r < NRUNS; r++) {
    luapool_stats before = util_stats(c.pool);
    int rc = luapool_acquire(c.pool, 1000, &c.L);
    if (rc != LUAPOOL_OK)
      abort_run(&c, "%s: luapool_acquire: %s", runs[r].what, luapool_strerror(rc));
    if (lua_gettop(c.L) != 0)
      abort_run(&c, "%s: the stack holds %d values at acquire", runs[r].what, lua_gettop(c.L));
    luapool_stats now = util_stats(c.pool);
    if (flags & F_TAINTS) {
      /* the previous release closed the state: this one is new, and counted as tainted */
      if (before.tainted != (uint64_t)r || now.created != (uint64_t)r + 1)
        abort_run(
            &c, "%s: expected a new state after %d tainted releases: created %llu, tainted %llu",
            runs[r].what, r, (unsigned long long)now.created, (unsigned long long)before.tainted);
    } else if (r == 0) {
      first = c.L;
    } else if (c.L != first || now.created != 1) {
      abort_run(&c, "%s: the released state did not come back (created %llu)", runs[r].what,
                (unsigned long long)now.created);
    }
    int status = runs[r].via_cache ? luapool_load(c.L, c.chunk, c.src.s, c.src.len)
                                   : luaL_loadbufferx(c.L, c.src.s, c.src.len, c.chunk, "t");
    size_t len;
    const char *got = call_chunk(&c, c.L, status, runs[r].what, &len);
    compare(&c, runs[r].what, "pooled", c.expected.s, c.expected.len, got, len);
    lua_settop(c.L, 0);
    lua_State *L = c.L;
    c.L = NULL;
    luapool_release(c.pool, L);
  }

  luapool_stats s = util_stats(c.pool);
  if (flags & F_TAINTS) {
    if (s.tainted != NRUNS || s.created != NRUNS || s.cache_hits != 0)
      abort_run(&c, "stats: created %llu, tainted %llu, cache hits %llu: expected %d, %d, 0",
                (unsigned long long)s.created, (unsigned long long)s.tainted,
                (unsigned long long)s.cache_hits, NRUNS, NRUNS);
  } else {
    /* one state throughout; the second luapool_load found the first one's chunk */
    if (s.created != 1 || s.tainted != 0 || s.closed != 0 || s.cache_misses != 1 ||
        s.cache_hits != 1)
      abort_run(&c, "stats: created %llu, closed %llu, tainted %llu, cache misses %llu, hits %llu",
                (unsigned long long)s.created, (unsigned long long)s.closed,
                (unsigned long long)s.tainted, (unsigned long long)s.cache_misses,
                (unsigned long long)s.cache_hits);
  }
  ctx_free(&c);
}

/* ---- the programs ------------------------------------------------------------------------ */

enum {
  P_STRINGS,
  P_PACK,
  P_METATABLES,
  P_CLOSURES,
  P_COROUTINES,
  P_ERRORS,
  P_GOTO,
  P_MATH,
  P_TABLES,
  P_UTF8,
  P_GC,
  P_FINALIZERS,
  P_DEBUG,
  P_LOAD,
  P_COUNT
};

/*
** Every program in tests/fidelity/ (Makefile.am's FIDELITY_LUA lists the same files).  `sandbox`:
** it touches nothing the sandbox changes (no io, os, debug, print, binary chunks, library tables
** used as tables, the string metatable, __gc), so it must behave as in stock Lua under the
** default profile too.  The others use what the sandbox leaves out (errors.lua, for one, uses
** debug.traceback) or show its documented differences.
*/
static const struct program {
  const char *file;
  int flags;
  bool sandbox;
} programs[P_COUNT] = {
    [P_STRINGS] = {"strings.lua", 0, true},
    [P_PACK] = {"pack.lua", 0, true},
    [P_METATABLES] = {"metatables.lua", 0, false},
    [P_CLOSURES] = {"closures.lua", 0, true},
    [P_COROUTINES] = {"coroutines.lua", 0, true},
    [P_ERRORS] = {"errors.lua", 0, false},
    [P_GOTO] = {"goto.lua", 0, true},
    [P_MATH] = {"math.lua", 0, true},
    [P_TABLES] = {"tables.lua", 0, true},
    [P_UTF8] = {"utf8.lua", 0, true},
    [P_GC] = {"gc.lua", 0, true},
    [P_FINALIZERS] = {"finalizers.lua", F_TAINTS, false},
    [P_DEBUG] = {"debug.lua", 0, false},
    [P_LOAD] = {"load.lua", 0, false},
};

/* ---- every library (LUAPOOL_LIBS_ALL) ---------------------------------------------------- */

static void check_all_libs(int p) {
  check_program(programs[p].file, LUAPOOL_LIBS_ALL, programs[p].flags);
}

START_TEST(strings_and_patterns) {
  check_all_libs(P_STRINGS);
}
END_TEST

START_TEST(string_pack_and_unpack) {
  check_all_libs(P_PACK);
}
END_TEST

START_TEST(metatables_and_events) {
  check_all_libs(P_METATABLES);
}
END_TEST

START_TEST(closures_and_upvalues) {
  check_all_libs(P_CLOSURES);
}
END_TEST

START_TEST(coroutines) {
  check_all_libs(P_COROUTINES);
}
END_TEST

START_TEST(errors_and_messages) {
  check_all_libs(P_ERRORS);
}
END_TEST

START_TEST(goto_and_labels) {
  check_all_libs(P_GOTO);
}
END_TEST

START_TEST(integer_and_float_math) {
  check_all_libs(P_MATH);
}
END_TEST

START_TEST(table_library) {
  check_all_libs(P_TABLES);
}
END_TEST

START_TEST(utf8_library) {
  check_all_libs(P_UTF8);
}
END_TEST

START_TEST(collector_and_weak_tables) {
  check_all_libs(P_GC);
}
END_TEST

START_TEST(finalizers_on_a_new_state_each_time) {
  check_all_libs(P_FINALIZERS);
}
END_TEST

START_TEST(debug_library) {
  check_all_libs(P_DEBUG);
}
END_TEST

START_TEST(load_and_require) {
  check_all_libs(P_LOAD);
}
END_TEST

/* ---- the default profile (LUAPOOL_LIBS_SAFE, luapool_config_init's) --------------------- */

START_TEST(sandbox_matches_stock_lua) {
  int done = 0;
  for (int p = 0; p < P_COUNT; p++) {
    if (programs[p].sandbox) {
      check_program(programs[p].file, LUAPOOL_LIBS_SAFE, programs[p].flags);
      done++;
    }
  }
  ck_assert_int_ge(done, 6);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fidelity");
  TCase *tc = tcase_create("all_libs");
  tcase_add_test(tc, strings_and_patterns);
  tcase_add_test(tc, string_pack_and_unpack);
  tcase_add_test(tc, metatables_and_events);
  tcase_add_test(tc, closures_and_upvalues);
  tcase_add_test(tc, coroutines);
  tcase_add_test(tc, errors_and_messages);
  tcase_add_test(tc, goto_and_labels);
  tcase_add_test(tc, integer_and_float_math);
  tcase_add_test(tc, table_library);
  tcase_add_test(tc, utf8_library);
  tcase_add_test(tc, collector_and_weak_tables);
  tcase_add_test(tc, finalizers_on_a_new_state_each_time);
  tcase_add_test(tc, debug_library);
  tcase_add_test(tc, load_and_require);
  suite_add_tcase(s, tc);

  tc = tcase_create("sandbox");
  tcase_add_test(tc, sandbox_matches_stock_lua);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
