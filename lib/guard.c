/*
** guard.c: the library wrappers that keep the budget whole (guard.h), in every profile.
**
** A count hook sees VM instructions only.  The wrappers close what it cannot see:
**   - coroutines: each thread has its own count, so a coroutine that runs fewer instructions
**     than the hook's period and dies was never charged.  coroutine.create and coroutine.wrap
**     charge that period up front; resume, wrap's function and close make sure the coroutine
**     carries the hook, tell the allocator's gate which thread runs (lp_budget_enter_thread),
**     and raise in the resumer at once when the request stopped inside the coroutine.  A stopped
**     request closes no coroutine: one that died of the budget's error may have its hooks off
**     for good (Lua's allowhook), and its __close handlers would run unbounded.
**   - library functions whose one call walks a long string or table without allocating
**     (table.move, table.insert, table.sort, utf8.len, string.find...) or that collect garbage:
**     each charges its work before it starts (budget.h: LP_BUDGET_BYTES per instruction);
**     allocations are charged by the allocator.  string.rep of an empty string and separator
**     returns at once (Lua's loops n times copying nothing).
**   - debug.sethook (LUAPOOL_LIB_DEBUG) is refused while a budget is set (a script's own hook
**     would replace the budget's), and debug.gethook does not show the budget's hook.
** Each wrapper calls the library's own C function (its upvalue) on its own stack frame, so
** arguments, results and error messages are the library's.  None of those functions reads its
** upvalues.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <string.h>

#include "budget.h"
#include "guard.h"

static int call_original(lua_State *L) {
  return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

/* ---- what a call costs ---------------------------------------------------------------------- */

static uint64_t string_bytes(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TSTRING ? (uint64_t)lua_rawlen(L, i) : 0;
}

static uint64_t table_length(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TTABLE ? (uint64_t)lua_rawlen(L, i) : 0;
}

/* An integer argument, or def when absent; false when it is neither (the library complains). */
static bool integer_arg(lua_State *L, int i, lua_Integer def, lua_Integer *v) {
  if (lua_isnoneornil(L, i)) {
    *v = def;
    return true;
  }
  int isnum;
  *v = lua_tointegerx(L, i, &isnum);
  return isnum != 0;
}

/* Elements from i to j (0 if none), overflow-safe. */
static uint64_t span(lua_Integer i, lua_Integer j) {
  return j >= i ? (uint64_t)j - (uint64_t)i + 1 : 0;
}

/* ---- the wrappers ----------------------------------------------------------------------------- */

/*
** The charges, in instructions (one ~3 ns on the machine they were measured on: a VM
** instruction of a numeric for loop), per byte or element each function walks, rounded up from
** what Lua 5.4.4 took there per byte or element (doc/security.md has the table).
*/
#define LP_COST_PATTERN 2 /* per subject or format byte: find, match, gmatch, gsub, format,
                             pack, packsize, unpack */
#define LP_COST_BYTE 1    /* per byte: utf8.len, utf8.offset, tonumber, load (Lua's lexer reads
                             blanks without allocating) */
#define LP_COST_SORT 5    /* per element and level of table.sort's n log n */
#define LP_COST_MOVE 3    /* per element table.move, insert and remove move */
#define LP_COST_CONCAT 16 /* per element of table.concat (a number is converted) */
#define LP_COST_UNPACK 2  /* per value table.unpack, string.byte, utf8.codepoint push */

/* A walk over argument 1's bytes, at n instructions per byte. */
static int scan(lua_State *L, uint64_t n) {
  lp_budget_charge(L, string_bytes(L, 1) * n + 1);
  return call_original(L);
}

static int g_pattern(lua_State *L) {
  return scan(L, LP_COST_PATTERN);
}

static int g_scan(lua_State *L) {
  return scan(L, LP_COST_BYTE);
}

/* string.byte(s, i, j), utf8.codepoint(s, i, j): one result per byte, at most. */
static int g_results(lua_State *L) {
  uint64_t n = string_bytes(L, 1);
  lp_budget_charge(L, (lua_gettop(L) >= 3 ? n * LP_COST_UNPACK : n) + 1);
  return call_original(L);
}

/* string.rep(s, n [, sep]): n copies. */
static int g_rep(lua_State *L) {
  lua_Integer n;
  if (integer_arg(L, 2, 0, &n) && n > 0) {
    uint64_t piece = string_bytes(L, 1) + string_bytes(L, 3);
    if (piece == 0 && lua_type(L, 1) == LUA_TSTRING &&
        (lua_isnoneornil(L, 3) || lua_type(L, 3) == LUA_TSTRING)) {
      lua_pushliteral(L, ""); /* what Lua returns, after n copies of nothing */
      return 1;
    }
    lp_budget_charge(L, (uint64_t)n);
  }
  return call_original(L);
}

/* table.move(a1, f, e, t [, a2]). */
static int g_move(lua_State *L) {
  lua_Integer f, e;
  if (integer_arg(L, 2, 0, &f) && integer_arg(L, 3, 0, &e))
    lp_budget_charge(L, span(f, e) * LP_COST_MOVE);
  return call_original(L);
}

/* table.insert, table.remove: they shift the elements after the position. */
static int g_shift(lua_State *L) {
  lp_budget_charge(L, table_length(L, 1) * LP_COST_MOVE + 1);
  return call_original(L);
}

/* table.concat(t [, sep [, i [, j]]]), table.unpack(t [, i [, j]]). */
static int g_range(lua_State *L, int first, uint64_t cost) {
  lua_Integer i, j;
  if (integer_arg(L, first, 1, &i) &&
      integer_arg(L, first + 1, (lua_Integer)table_length(L, 1), &j)) {
    uint64_t n = span(i, j);
    lp_budget_charge(L, n > UINT64_MAX / cost ? UINT64_MAX : n * cost);
  }
  return call_original(L);
}

static int g_concat(lua_State *L) {
  return g_range(L, 3, LP_COST_CONCAT);
}

static int g_unpack(lua_State *L) {
  return g_range(L, 2, LP_COST_UNPACK);
}

/* table.sort: n log n comparisons. */
static int g_sort(lua_State *L) {
  uint64_t n = table_length(L, 1);
  lp_budget_charge(L, n * (uint64_t)(1 + log2((double)n + 1)) * LP_COST_SORT);
  return call_original(L);
}

/* collectgarbage: a collection (or a switch of mode, which runs one) walks the heap. */
static int g_collectgarbage(lua_State *L) {
  static const char *const cheap[] = {"count", "isrunning", "stop", "restart", "setpause",
                                      "setstepmul"};
  const char *opt = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : "collect";
  bool walks = true;
  for (size_t i = 0; i < sizeof cheap / sizeof cheap[0]; i++)
    walks = walks && strcmp(opt, cheap[i]) != 0;
  if (walks)
    lp_budget_charge(L, (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 / LP_BUDGET_GC_BYTES + 1);
  return call_original(L);
}

/* coroutine.create: a new thread's count starts afresh, so its first period is charged now. */
static int g_create(lua_State *L) {
  lp_budget_charge(L, LP_BUDGET_PERIOD);
  return call_original(L);
}

/* coroutine.resume(co, ...). */
static int g_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL)
    return call_original(L); /* the library names the bad argument */
  lua_State *prev = lp_budget_enter_thread(L, co);
  int n = call_original(L);
  lp_budget_left_thread(L, prev);
  return n;
}

/* coroutine.close(co): runs co's pending __close handlers, on co. */
static int g_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL || co == L)
    return call_original(L);
  lua_State *prev = lp_budget_enter_thread(L, co);
  int n = call_original(L);
  lp_budget_left_thread(L, prev);
  return n;
}

/*
** Resumes co with narg arguments from L's top: the number of results moved to L, or -1 with the
** error on L's top (the semantics of coroutine.resume).
*/
static int resume_with(lua_State *L, lua_State *co, int narg) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_xmove(co, L, 1);
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

/* The function coroutine.wrap returns; upvalue 1: its coroutine. */
static int g_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  lua_State *prev = lp_budget_enter_thread(L, co);
  int r = resume_with(L, co, lua_gettop(L));
  if (r >= 0) {
    lp_budget_left_thread(L, prev);
    return r;
  }
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD && !lp_budget_request_stopped(L)) {
    status = lua_resetthread(co); /* its pending __close handlers, under the budget */
    lua_xmove(co, L, 1);
  }
  lp_budget_left_thread(L, prev);
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1); /* where the wrapped function was called, as Lua's own wrap */
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.wrap(f). */
static int g_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lp_budget_charge(L, LP_BUDGET_PERIOD);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, g_wrapped, 1);
  return 1;
}

/* debug.sethook([thread,] hook, mask [, count]). */
static int g_sethook(lua_State *L) {
  if (lp_budget_engaged(L))
    return luaL_error(L, "debug.sethook: not available while the request has a budget");
  lua_State *co = lua_type(L, 1) == LUA_TTHREAD ? lua_tothread(L, 1) : L;
  int n = call_original(L);
  lp_budget_rehook(co); /* a script that removes its hook gets the budget's back */
  return n;
}

/* debug.gethook([thread]): the budget's hook is no script's. */
static int g_gethook(lua_State *L) {
  lua_State *co = lua_type(L, 1) == LUA_TTHREAD ? lua_tothread(L, 1) : L;
  if (lp_budget_hook_is_ours(co)) {
    luaL_pushfail(L);
    return 1;
  }
  return call_original(L);
}

/* ---- installing ------------------------------------------------------------------------------- */

typedef struct wrapper {
  const char *lib; /* a global table, or NULL for the globals */
  const char *name;
  lua_CFunction fn;
} wrapper;

static const wrapper wrappers[] = {
    {NULL, "collectgarbage", g_collectgarbage},
    {NULL, "tonumber", g_scan},
    {NULL, "load", g_scan},
    {LUA_COLIBNAME, "create", g_create},
    {LUA_COLIBNAME, "resume", g_resume},
    {LUA_COLIBNAME, "close", g_close},
    {LUA_STRLIBNAME, "rep", g_rep},
    {LUA_STRLIBNAME, "find", g_pattern},
    {LUA_STRLIBNAME, "match", g_pattern},
    {LUA_STRLIBNAME, "gmatch", g_pattern},
    {LUA_STRLIBNAME, "gsub", g_pattern},
    {LUA_STRLIBNAME, "byte", g_results},
    {LUA_STRLIBNAME, "format", g_pattern},
    {LUA_STRLIBNAME, "pack", g_pattern},
    {LUA_STRLIBNAME, "packsize", g_pattern},
    {LUA_STRLIBNAME, "unpack", g_pattern},
    {LUA_TABLIBNAME, "move", g_move},
    {LUA_TABLIBNAME, "insert", g_shift},
    {LUA_TABLIBNAME, "remove", g_shift},
    {LUA_TABLIBNAME, "sort", g_sort},
    {LUA_TABLIBNAME, "concat", g_concat},
    {LUA_TABLIBNAME, "unpack", g_unpack},
    {LUA_UTF8LIBNAME, "len", g_scan},
    {LUA_UTF8LIBNAME, "offset", g_scan},
    {LUA_UTF8LIBNAME, "codepoint", g_results},
    {LUA_DBLIBNAME, "sethook", g_sethook},
    {LUA_DBLIBNAME, "gethook", g_gethook},
};

/* Replaces t[name] (a C function) with fn, which gets the original as upvalue 1. */
static void wrap_field(lua_State *L, int t, const char *name, lua_CFunction fn) {
  if (lua_getfield(L, t, name) == LUA_TFUNCTION && lua_tocfunction(L, -1) != NULL) {
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, t, name);
  } else {
    lua_pop(L, 1);
  }
}

void lp_guard_open(lua_State *L) {
  int base = lua_gettop(L);
  for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++) {
    const wrapper *w = &wrappers[i];
    if (w->lib == NULL)
      lua_pushglobaltable(L);
    else if (lua_getglobal(L, w->lib) != LUA_TTABLE)
      goto next;
    wrap_field(L, lua_gettop(L), w->name, w->fn);
  next:
    lua_settop(L, base);
  }
  if (lua_getglobal(L, LUA_COLIBNAME) == LUA_TTABLE && lua_getfield(L, -1, "wrap") != LUA_TNIL) {
    lua_pushcfunction(L, g_wrap);
    lua_setfield(L, -3, "wrap");
  }
  lua_settop(L, base);
}
