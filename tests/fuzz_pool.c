/*
** fuzz_pool: a libFuzzer target for the pool's API and the reset (issue 15).
**
**   make fuzz && ./tests/fuzz_pool -max_total_time=60 tests/fuzz-corpus
**
** Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined straight from lib/'s
** sources; never part of the normal build.
**
** The input: byte 0 picks 2 or 3 threads; the rest is phases separated by PHASE_END bytes.  In
** each phase the threads run at once, thread t taking every n-th byte of the phase as its own
** stream: an op byte, then what the op reads.  The ops: acquire (try), run a generated script on
** a held state, release, discard, luapool_maintain, hand a state to another thread (a shared
** slot: released by whoever takes it), interrupt a held state and run a loop on it, set a
** budget, and (rarely) luapool_shutdown while the other threads work.  Between phases the main
** thread reloads the pool (shutdown, destroy, create).  Scripts come from a small grammar
** (globals, locals, table constructors, bounded loops, string ops, pcall/error, coroutines,
** setmetatable, library calls) and run in the sandbox under a small instruction and time budget
** and mem_limit, so that no input hangs.
**
** It aborts on a crash or a sanitizer report (libFuzzer), on a request that sees a marker global
** or a generated global of an earlier request, on an interrupted request whose status is not
** LUAPOOL_STATUS_INTERRUPTED, and on stats that disagree (live != created - closed) once the
** threads have joined.  Built with -DFUZZ_SELFTEST_NO_RESET (LUAPOOL_RESET_STACK) it must abort
** within seconds: the check that globals do not leak works.
*/
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luapool.h"

#define PHASE_END 0xFE
#define MAX_THREADS 3
#define MAX_HELD 4
#define NGLOBALS 6
#define SCRIPT_MAX 4096

static luapool *pool;
static _Atomic bool shut; /* the shutdown op ran: the pool is reloaded before the next input */
static _Atomic uint64_t next_id = 1;

static void die(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_pool: %s: %s\n", what, detail ? detail : "");
  abort();
}

static void quiet_log(void *ud, int level, const char *msg) {
  (void)ud;
  (void)level;
  (void)msg; /* misuse is never fuzzed; warnings (e.g. a reset that closes a state) are noise */
}

static void make_pool(void) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.max_states = 3;
  cfg.max_idle = 2;
  cfg.magazine_size = 1;
  cfg.watchdog_interval_ms = 0; /* the maintain op runs the passes */
  cfg.max_uses = 5;
  cfg.idle_timeout_ms = 1;
  cfg.max_lifetime_ms = 50;
  cfg.libs = LUAPOOL_LIBS_SAFE;
  cfg.mem_limit = (size_t)1 << 20;
  cfg.budget_instructions = 50000;
  cfg.budget_ms = 200;
  cfg.log = quiet_log;
#ifdef FUZZ_SELFTEST_NO_RESET
  cfg.reset = LUAPOOL_RESET_STACK; /* the checks' own test: a global must reach a later request */
#endif
  if (luapool_create(&cfg, &pool) != LUAPOOL_OK)
    die("luapool_create", NULL);
}

/* ---- A byte stream. ---- */

typedef struct {
  const uint8_t *p;
  size_t n, i;
} stream;

static bool more(const stream *s) { return s->i < s->n; }
static unsigned byte(stream *s) { return s->i < s->n ? s->p[s->i++] : 0; }

/* ---- The script grammar. ---- */

typedef struct {
  char buf[SCRIPT_MAX];
  size_t len;
  bool full;
} sbuf;

static void emit(sbuf *b, const char *s) {
  size_t n = strlen(s);
  if (b->len + n >= sizeof b->buf) {
    b->full = true;
    return;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}

static void emitf(sbuf *b, const char *fmt, unsigned v) {
  char tmp[64];
  snprintf(tmp, sizeof tmp, fmt, v);
  emit(b, tmp);
}

static const char *const strings[] = {"'a'", "'hello'", "''", "'%d'", "'x y z'", "'\\0\\1'",
                                      "'10'", "'abcabc'"};

static void expr(sbuf *b, stream *s, int depth);

static void expr(sbuf *b, stream *s, int depth) {
  unsigned c = byte(s) % (depth > 3 ? 4 : 16);
  switch (c) {
  case 0: emitf(b, "%u", byte(s)); break;
  case 1: emit(b, strings[byte(s) % 8]); break;
  case 2: emitf(b, "g%u", byte(s) % NGLOBALS); break;
  case 3: emitf(b, "l%u", byte(s) % 4); break;
  case 4:
    emit(b, "{");
    for (unsigned k = byte(s) % 4; k > 0; k--) {
      if (byte(s) % 2)
        emitf(b, "k%u = ", byte(s) % 3);
      expr(b, s, depth + 1);
      emit(b, ", ");
    }
    emit(b, "}");
    break;
  case 5: emit(b, "("); expr(b, s, depth + 1); emit(b, " .. "); expr(b, s, depth + 1); emit(b, ")"); break;
  case 6: emit(b, "("); expr(b, s, depth + 1); emit(b, " + "); expr(b, s, depth + 1); emit(b, ")"); break;
  case 7: emit(b, "#tostring("); expr(b, s, depth + 1); emit(b, ")"); break;
  case 8: emit(b, "string.rep("); expr(b, s, depth + 1); emitf(b, ", %u)", byte(s) % 2 ? byte(s) % 64 : byte(s) << 10); break;
  case 9: emit(b, "string.format('%s:%d', tostring("); expr(b, s, depth + 1); emitf(b, "), %u)", byte(s)); break;
  case 10: emit(b, "tostring("); expr(b, s, depth + 1); emit(b, "):upper():rep(2)"); break;
  case 11: emit(b, "select('#', "); expr(b, s, depth + 1); emit(b, ", "); expr(b, s, depth + 1); emit(b, ")"); break;
  case 12: emit(b, "math.floor("); expr(b, s, depth + 1); emit(b, " or 0)"); break;
  case 13: emit(b, "setmetatable({}, {__index = function(t, k) return "); expr(b, s, depth + 1); emit(b, " end, __add = function(a, b) return 1 end})"); break;
  case 14: emit(b, "(string.gsub(tostring("); expr(b, s, depth + 1); emit(b, "), '%w', '%0%0'))"); break;
  default: emit(b, "(pcall(error, "); expr(b, s, depth + 1); emit(b, "))"); break;
  }
}

static void stmts(sbuf *b, stream *s, int depth, unsigned n);

static void stmt(sbuf *b, stream *s, int depth) {
  unsigned c = byte(s) % (depth > 2 ? 5 : 14);
  switch (c) {
  case 0: emitf(b, "g%u = ", byte(s) % NGLOBALS); expr(b, s, depth); break;
  case 1: emitf(b, "l%u = ", byte(s) % 4); expr(b, s, depth); break;
  case 2: emitf(b, "T[%u] = ", byte(s) % 8); expr(b, s, depth); break;
  case 3: emit(b, "table.insert(T, "); expr(b, s, depth); emit(b, ")"); break;
  case 4: emit(b, "N = (N or 0) + #table.concat({tostring(l0), tostring(l1)}, ',')"); break;
  case 5: emitf(b, "for i = 1, %u do ", byte(s) % 9); stmts(b, s, depth + 1, 1 + byte(s) % 3); emit(b, " end"); break;
  case 6: emit(b, "pcall(function() "); stmts(b, s, depth + 1, 1 + byte(s) % 3); emit(b, " end)"); break;
  case 7: emit(b, "error("); expr(b, s, depth); emit(b, ")"); break;
  case 8:
    emit(b, "do local co = coroutine.wrap(function(...) ");
    stmts(b, s, depth + 1, 1 + byte(s) % 2);
    emit(b, " coroutine.yield(1) ");
    stmts(b, s, depth + 1, byte(s) % 2);
    emit(b, " end) pcall(co) pcall(co) pcall(co) end");
    break;
  case 9: emit(b, "if "); expr(b, s, depth); emit(b, " then "); stmts(b, s, depth + 1, 1); emit(b, " else "); stmts(b, s, depth + 1, 1); emit(b, " end"); break;
  case 10: emit(b, "setmetatable(T, {__newindex = function(t, k, v) rawset(t, k, v) end, __len = function() return 3 end})"); break;
  case 11: emit(b, "while true do end"); break; /* the budget stops it */
  case 12: emit(b, "local s = string.rep('x', 1 << 19) s = s .. s .. s"); break; /* mem_limit */
  default: emit(b, "string.foo = 1"); break; /* the sandbox's read-only libraries refuse it */
  }
  emit(b, "\n");
}

static void stmts(sbuf *b, stream *s, int depth, unsigned n) {
  while (n-- > 0 && !b->full)
    stmt(b, s, depth);
}

static void gen_script(sbuf *b, stream *s) {
  b->len = 0;
  b->full = false;
  b->buf[0] = '\0';
  emit(b, "local l0, l1, l2, l3 = 1, 'two', {}, nil\nT = {}\n");
  stmts(b, s, 0, 1 + byte(s) % 8);
}

/* ---- Requests. ---- */

static int marker_check(lua_State *L) {
  if (lua_getglobal(L, "fuzz_marker") != LUA_TNIL)
    return luaL_error(L, "marker %s seen", luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  static const char *const names[] = {"g0", "g1", "g2", "g3", "g4", "g5", "T", "N"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    if (lua_getglobal(L, names[k]) != LUA_TNIL)
      return luaL_error(L, "global %s of an earlier request seen", names[k]);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_setglobal(L, "fuzz_marker");
  return 0;
}

static void check_fresh(lua_State *L) {
  lua_settop(L, 0);
  lua_pushcfunction(L, marker_check);
  lua_pushinteger(L, (lua_Integer)atomic_fetch_add(&next_id, 1));
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    die("a request saw another's globals", lua_tostring(L, -1));
}

static void run_script(lua_State *L, stream *s, bool cached) {
  sbuf b;
  gen_script(&b, s);
  int rc = cached ? luapool_load(L, "=cached", b.buf, b.len)
                  : luaL_loadbufferx(L, b.buf, b.len, "=gen", "t");
  if (rc == LUA_OK)
    (void)lua_pcall(L, 0, 0, 0);
  lua_settop(L, 0);
}

/* ---- Threads. ---- */

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *shared_slot[2];

typedef struct {
  stream s;
  lua_State *held[MAX_HELD];
  int nheld;
} thread_ctx;

static void drop(thread_ctx *t, bool discard) {
  lua_State *L = t->held[--t->nheld];
  if (discard)
    luapool_discard(pool, L);
  else
    luapool_release(pool, L);
}

static void *thread_main(void *arg) {
  thread_ctx *t = arg;
  stream *s = &t->s;
  while (more(s)) {
    unsigned op = byte(s) % 11;
    lua_State *L = t->nheld > 0 ? t->held[t->nheld - 1] : NULL;
    switch (op) {
    case 0:
    case 1: {
      if (t->nheld == MAX_HELD)
        drop(t, false);
      lua_State *N;
      int rc = luapool_acquire(pool, 0, &N);
      if (rc == LUAPOOL_OK) {
        check_fresh(N);
        t->held[t->nheld++] = N;
      } else if (rc != LUAPOOL_ETIMEDOUT && rc != LUAPOOL_ECLOSED) {
        die("luapool_acquire", luapool_strerror(rc));
      }
      break;
    }
    case 2:
    case 3:
      if (L)
        run_script(L, s, op == 3 && byte(s) % 2);
      else
        byte(s);
      break;
    case 4:
      if (L)
        drop(t, false);
      break;
    case 5:
      if (L)
        drop(t, true);
      break;
    case 6:
      luapool_maintain(pool);
      break;
    case 7: { /* hand a state to another thread, or take one */
      unsigned k = byte(s) % 2;
      pthread_mutex_lock(&slot_mu);
      if (L && shared_slot[k] == NULL) {
        shared_slot[k] = L;
        t->nheld--;
      } else if (shared_slot[k] != NULL && t->nheld < MAX_HELD) {
        t->held[t->nheld++] = shared_slot[k];
        shared_slot[k] = NULL;
      }
      pthread_mutex_unlock(&slot_mu);
      break;
    }
    case 8:
      if (L) {
        int before = luapool_status(L); /* a stop this acquire already had takes precedence */
        luapool_interrupt(L);
        luaL_loadstring(L, "local i = 0 while true do i = i + 1 end");
        int rc = lua_pcall(L, 0, 0, 0);
        bool want = before == LUAPOOL_STATUS_OK || before == LUAPOOL_STATUS_MEMORY;
        if (rc == LUA_OK || (want && luapool_status(L) != LUAPOOL_STATUS_INTERRUPTED))
          die("interrupt", lua_tostring(L, -1));
        lua_settop(L, 0);
      }
      break;
    case 9:
      if (L)
        luapool_set_budget(L, (1 + byte(s)) * 100u, byte(s) % 4 == 0 ? 1 : 0); /* never none */
      break;
    default:
      if (byte(s) == 0x5A) {
        atomic_store(&shut, true);
        luapool_shutdown(pool, 0);
      } /* the others see ECLOSED; their releases close states */
      break;
    }
  }
  while (t->nheld > 0)
    drop(t, false);
  return NULL;
}

static void check_stats(void) {
  luapool_stats st;
  luapool_stats_get(pool, &st);
  if (st.closed > st.created || st.live != st.created - st.closed ||
      st.idle + st.in_use != st.live || st.in_use != 0 || st.live > 3)
    die("stats", "inconsistent once quiet");
}

static void run_phase(const uint8_t *p, size_t n, int nthreads) {
  static uint8_t bufs[MAX_THREADS][1 << 16];
  thread_ctx ctx[MAX_THREADS];
  pthread_t tid[MAX_THREADS];
  for (int t = 0; t < nthreads; t++) {
    size_t m = 0;
    for (size_t i = (size_t)t; i < n && m < sizeof bufs[t]; i += (size_t)nthreads)
      bufs[t][m++] = p[i];
    ctx[t] = (thread_ctx){.s = {bufs[t], m, 0}, .nheld = 0};
  }
  for (int t = 1; t < nthreads; t++)
    if (pthread_create(&tid[t], NULL, thread_main, &ctx[t]) != 0)
      die("pthread_create", NULL);
  thread_main(&ctx[0]);
  for (int t = 1; t < nthreads; t++)
    pthread_join(tid[t], NULL);
  for (int k = 0; k < 2; k++)
    if (shared_slot[k]) {
      luapool_release(pool, shared_slot[k]);
      shared_slot[k] = NULL;
    }
  check_stats();
}

static void reload(void) {
  int rc = luapool_shutdown(pool, 1000);
  if (rc == LUAPOOL_ETIMEDOUT)
    die("luapool_shutdown", "states still out with every thread joined");
  check_stats();
  luapool_destroy(pool);
  make_pool();
  atomic_store(&shut, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (pool == NULL)
    make_pool();
  if (size == 0)
    return 0;
  int nthreads = 2 + data[0] % 2;
  size_t start = 1;
  while (start < size) {
    size_t end = start;
    while (end < size && data[end] != PHASE_END)
      end++;
    run_phase(data + start, end - start, nthreads);
    if (end < size)
      reload();
    start = end + 1;
  }
  if (atomic_load(&shut))
    reload();
  return 0;
}
