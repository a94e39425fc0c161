/*
** Modules loaded once per state (luapool_module, luapool_module_source): loaded by on_create,
** returned by every request's require without loading again, and reset like the rest of the
** state; reset functions for what a C module keeps out of Lua's sight; Debian's lua-cjson and
** lua-lpeg (when configure found them) as the real cases.
*/
#include "config.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef HAVE_LUA_CJSON
#include <lua-cjson.h>
#endif
#ifdef HAVE_LUA_LPEG
#include <lua-lpeg.h>
#endif

/* ---- a C module with a hidden setting (a C static, as lua-cjson keeps its in a userdata) ---- */

static atomic_int opens;       /* luaopen calls, over every state */
static atomic_int resets;      /* reset function calls */
static atomic_int hidden = 7;  /* the module's setting, out of Lua's sight; 7 by default */
static atomic_int reset_fails; /* nonzero: the reset function raises an error */

static int hidden_set(lua_State *L) {
  atomic_store(&hidden, (int)luaL_checkinteger(L, 1));
  return 0;
}

static int hidden_get(lua_State *L) {
  lua_pushinteger(L, atomic_load(&hidden));
  return 1;
}

static int open_hidden(lua_State *L) {
  atomic_fetch_add(&opens, 1);
  static const luaL_Reg fns[] = {{"set", hidden_set}, {"get", hidden_get}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "version");
  return 1;
}

static int reset_hidden(lua_State *L) {
  atomic_fetch_add(&resets, 1);
  luaL_checktype(L, 1, LUA_TTABLE); /* the module itself, the real table */
  if (atomic_load(&reset_fails))
    return luaL_error(L, "reset_hidden fails on purpose");
  atomic_store(&hidden, 7);
  return 0;
}

/* A reset function that calls back into the pool it serves. */
static luapool *reentered_pool;
static atomic_int reentered_rc = 1;

static int reset_reenters(lua_State *L) {
  atomic_store(&reentered_rc, luapool_maintain(reentered_pool));
  luapool_destroy(reentered_pool); /* refused: the release that runs it holds the pool */
  (void)L;
  return 0;
}

static int on_create_reenters(lua_State *L, void *ud) {
  (void)ud;
  return luapool_module(L, "hidden", open_hidden, reset_reenters) != LUAPOOL_OK;
}

static int open_fails(lua_State *L) {
  return luaL_error(L, "open_fails fails on purpose");
}

/* A pure-Lua module with state in upvalues and a table, and one that returns nothing. */
static const char counter_src[] = "local n, cache = 0, {}\n"
                                  "local M = {}\n"
                                  "function M.set(v) n = v end\n"
                                  "function M.get() return n end\n"
                                  "function M.put(k, v) cache[k] = v end\n"
                                  "function M.look(k) return cache[k] end\n"
                                  "return M\n";

/* on_create: what each test asks for, through ud. */
enum { MOD_HIDDEN = 1, MOD_HIDDEN_RESET = 2, MOD_COUNTER = 4, MOD_CJSON = 8, MOD_LPEG = 16 };

#ifdef HAVE_LUA_CJSON
static atomic_int cjson_opens;

static int open_cjson_counted(lua_State *L) {
  atomic_fetch_add(&cjson_opens, 1);
  return luaopen_cjson(L);
}

/* lua-cjson 2.1.0's settings live in a userdata upvalue of its functions: each call below puts
   one back to its default (the figures of lua_cjson.c's DEFAULT_* macros). */
static void cjson_call(lua_State *L, const char *fn, int nargs, const lua_Integer *args) {
  lua_getfield(L, 1, fn);
  for (int i = 0; i < nargs; i++)
    lua_pushinteger(L, args[i]);
  lua_call(L, nargs, 0);
}

static int reset_cjson(lua_State *L) {
  lua_getfield(L, 1, "encode_sparse_array");
  lua_pushboolean(L, 0);
  lua_pushinteger(L, 2);
  lua_pushinteger(L, 10);
  lua_call(L, 3, 0);
  cjson_call(L, "encode_max_depth", 1, (lua_Integer[]){1000});
  cjson_call(L, "decode_max_depth", 1, (lua_Integer[]){1000});
  cjson_call(L, "encode_number_precision", 1, (lua_Integer[]){14});
  const char *const flags[][2] = {{"encode_keep_buffer", "on"},
                                  {"encode_invalid_numbers", "off"},
                                  {"decode_invalid_numbers", "on"}};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    lua_getfield(L, 1, flags[i][0]);
    lua_pushstring(L, flags[i][1]);
    lua_call(L, 1, 0);
  }
  return 0;
}
#endif

#ifdef HAVE_LUA_LPEG
static atomic_int lpeg_opens;

static int open_lpeg_counted(lua_State *L) {
  atomic_fetch_add(&lpeg_opens, 1);
  return luaopen_lpeg(L);
}
#endif

static int on_create(lua_State *L, void *ud) {
  int what = (int)(intptr_t)ud;
  if ((what & MOD_HIDDEN) &&
      luapool_module(L, "hidden", open_hidden, (what & MOD_HIDDEN_RESET) ? reset_hidden : NULL) !=
          LUAPOOL_OK)
    return 1;
  if ((what & MOD_COUNTER) &&
      luapool_module_source(L, "counter", counter_src, sizeof counter_src - 1) != LUAPOOL_OK)
    return 2;
#ifdef HAVE_LUA_CJSON
  if ((what & MOD_CJSON) && luapool_module(L, "cjson", open_cjson_counted, reset_cjson) != 0)
    return 3;
#endif
#ifdef HAVE_LUA_LPEG
  if ((what & MOD_LPEG) && luapool_module(L, "lpeg", open_lpeg_counted, NULL) != LUAPOOL_OK)
    return 4;
#endif
  return 0;
}

static luapool *module_pool(unsigned libs, int what) {
  luapool_config cfg;
  util_config_libs(&cfg, libs);
  cfg.max_states = 1; /* one state: every request gets the one the last one left */
  cfg.on_create = on_create;
  cfg.on_create_ud = (void *)(intptr_t)what;
  atomic_store(&opens, 0);
  atomic_store(&resets, 0);
  atomic_store(&hidden, 7);
  atomic_store(&reset_fails, 0);
  return util_pool(&cfg);
}

/* Runs chunk as one request on p and returns its integer result. */
static long long request_int(luapool *p, const char *chunk) {
  lua_State *L = util_acquire(p);
  long long v = util_eval_int(L, chunk);
  luapool_release(p, L);
  return v;
}

/* Runs chunk as one request and returns its string result (a static copy). */
static const char *request_str(luapool *p, const char *chunk) {
  static char out[512];
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(luaL_dostring(L, chunk), LUA_OK);
  const char *s = lua_tostring(L, -1);
  ck_assert_ptr_nonnull(s);
  strncpy(out, s, sizeof out - 1);
  out[sizeof out - 1] = 0;
  luapool_release(p, L);
  return out;
}

/* ---- loaded once ---------------------------------------------------------------------------- */

START_TEST(a_module_is_loaded_once_per_state_not_per_request) {
  luapool *p = module_pool(util_profiles[_i], MOD_HIDDEN | MOD_COUNTER);
  for (int i = 0; i < 50; i++) {
    ck_assert_int_eq(request_int(p, "return require('hidden').version"), 1);
    ck_assert_int_eq(request_int(p, "return require('counter').get()"), 0);
    /* the same module each time in a request */
    ck_assert_int_eq(request_int(p, "return require('hidden') == require('hidden') and 1 or 0"), 1);
  }
  ck_assert_int_eq(atomic_load(&opens), 1);
  ck_assert_uint_eq(util_stats(p).created, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(without_require_the_module_is_a_global) {
  luapool *p = module_pool(LUAPOOL_LIB_BASE | LUAPOOL_LIB_STRING, MOD_HIDDEN | MOD_COUNTER);
  ck_assert_int_eq(request_int(p, "return hidden.version + counter.get()"), 1);
  ck_assert_int_eq(request_int(p, "hidden = nil; counter = nil; return 0"), 0);
  ck_assert_int_eq(request_int(p, "return hidden.version"), 1); /* the reset put it back */
  ck_assert_int_eq(atomic_load(&opens), 1);
  luapool_destroy(p);
}
END_TEST

/* ---- the reset covers what the module's Lua values reach --------------------------------------
 */

START_TEST(a_modules_upvalues_and_tables_are_reset) {
  luapool *p = module_pool(util_profiles[_i], MOD_COUNTER);
  ck_assert_int_eq(request_int(p, "local m = require 'counter'\n"
                                  "m.set(42); m.put('secret', 'tenant A'); return m.get()"),
                   42);
  ck_assert_int_eq(request_int(p, "local m = require 'counter'\n"
                                  "return m.get() + (m.look('secret') and 1000 or 0)"),
                   0);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_modules_table_is_read_only_or_restored) {
  luapool *p = module_pool(util_profiles[_i], MOD_HIDDEN);
  /* The sandbox refuses the writes; LIBS_ALL allows them and the reset undoes them. */
  (void)request_int(p, "local m = require 'hidden'\n"
                       "pcall(function() m.get = function() return 666 end end)\n"
                       "pcall(function() m.version = 2 end)\n"
                       "pcall(function() m.leak = 'tenant A' end)\n"
                       "if package then package.loaded.hidden = {version = 3} end\n"
                       "return 0");
  ck_assert_int_eq(request_int(p, "local m = require 'hidden'\n"
                                  "return m.version * 100 + m.get() + (m.leak and 1000 or 0)"),
                   107);
  luapool_destroy(p);
}
END_TEST

/* ---- reset functions: what Lua cannot see ------------------------------------------------------
 */

START_TEST(a_reset_function_puts_back_the_hidden_state) {
  luapool *p = module_pool(util_profiles[_i], MOD_HIDDEN | MOD_HIDDEN_RESET);
  ck_assert_int_eq(request_int(p, "local m = require 'hidden'; m.set(99); return m.get()"), 99);
  ck_assert_int_eq(request_int(p, "return require('hidden').get()"), 7);
  /* Every release runs it, with the module as its argument (checked by reset_hidden). */
  ck_assert_int_eq(atomic_load(&resets), 2);
  ck_assert_uint_eq(util_stats(p).tainted, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(without_a_reset_function_the_hidden_state_is_the_hosts) {
  /* The documented limit: luapool cannot see a C static.  This test pins the behaviour the man
     page states, so that the page and the code cannot drift. */
  luapool *p = module_pool(util_profiles[_i], MOD_HIDDEN);
  (void)request_int(p, "require('hidden').set(99); return 0");
  ck_assert_int_eq(request_int(p, "return require('hidden').get()"), 99);
  ck_assert_int_eq(atomic_load(&resets), 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_failing_reset_function_closes_the_state) {
  luapool *p = module_pool(util_profiles[_i], MOD_HIDDEN | MOD_HIDDEN_RESET);
  ck_assert_int_eq(request_int(p, "require('hidden').set(99); return 0"), 0);
  atomic_store(&reset_fails, 1);
  ck_assert_int_eq(request_int(p, "require('hidden').set(98); return 0"), 0);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.tainted, 1);
  atomic_store(&reset_fails, 0);
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK); /* the close list */
  /* The next request gets a new state; its module was opened again. */
  ck_assert_int_eq(request_int(p, "return require('hidden').version"), 1);
  ck_assert_int_eq(atomic_load(&opens), 2);
  ck_assert_uint_eq(util_stats(p).created, 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_reset_function_does_not_run_under_reset_stack) {
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_SAFE);
  cfg.reset = LUAPOOL_RESET_STACK;
  cfg.on_create = on_create;
  cfg.on_create_ud = (void *)(intptr_t)(MOD_HIDDEN | MOD_HIDDEN_RESET);
  atomic_store(&resets, 0);
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(request_int(p, "return require('hidden').version"), 1);
  ck_assert_int_eq(atomic_load(&resets), 0); /* the caller vouches for the state */
  luapool_destroy(p);
}
END_TEST

START_TEST(a_reset_function_cannot_maintain_or_destroy_the_pool) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.on_create = on_create_reenters;
  reentered_pool = util_pool(&cfg);
  ck_assert_int_eq(request_int(reentered_pool, "return require('hidden').version"), 1);
  ck_assert_int_eq(atomic_load(&reentered_rc), LUAPOOL_EINVAL);
  ck_assert(util_log_has("called from the module reset callback"));
  /* The pool is whole: the state came back and serves again. */
  ck_assert_int_eq(request_int(reentered_pool, "return require('hidden').version"), 1);
  ck_assert_uint_eq(util_stats(reentered_pool).created, 1);
  luapool_destroy(reentered_pool);
}
END_TEST

/* ---- errors and misuse --------------------------------------------------------------------------
 */

static int on_create_errors(lua_State *L, void *ud) {
  int *rc = ud;
  rc[0] = luapool_module(L, "bad", open_fails, NULL);
  ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "open_fails fails on purpose"));
  lua_pop(L, 1);
  rc[1] = luapool_module_source(L, "syntax", "return {", 8);
  ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "syntax"));
  lua_pop(L, 1);
  static const char binary[] = "\x1bLua\x54";
  rc[2] = luapool_module_source(L, "binary", binary, sizeof binary - 1);
  ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "binary"));
  lua_pop(L, 1);
  rc[3] = luapool_module(L, NULL, open_hidden, NULL);
  rc[4] = luapool_module(L, "x", NULL, NULL);
  rc[5] = luapool_module_source(L, "y", NULL, 0);
  rc[6] = lua_gettop(L);
  rc[7] = luapool_module(L, "hidden", open_hidden, NULL); /* still works after the errors */
  return 0;
}

START_TEST(errors_in_on_create_are_reported_and_leave_the_state_usable) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  int rc[8] = {0};
  cfg.on_create = on_create_errors;
  cfg.on_create_ud = rc;
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(request_int(p, "return require('hidden').version"), 1);
  ck_assert_int_eq(rc[0], LUAPOOL_EINIT);
  ck_assert_int_eq(rc[1], LUAPOOL_EINIT);
  ck_assert_int_eq(rc[2], LUAPOOL_EINIT); /* text only */
  ck_assert_int_eq(rc[3], LUAPOOL_EINVAL);
  ck_assert_int_eq(rc[4], LUAPOOL_EINVAL);
  ck_assert_int_eq(rc[5], LUAPOOL_EINVAL);
  ck_assert_int_eq(rc[6], 0); /* nothing left on the stack */
  ck_assert_int_eq(rc[7], LUAPOOL_OK);
  /* A module whose loading failed is not there. */
  ck_assert_str_eq(request_str(p, "return tostring((pcall(require, 'bad')))"), "false");
  luapool_destroy(p);
}
END_TEST

static int call_module(lua_State *L) {
  lua_pushinteger(L, luapool_module(L, "late", open_hidden, NULL));
  lua_pushinteger(L, luapool_module_source(L, "late2", "return {}", 9));
  return 2;
}

START_TEST(outside_on_create_it_is_refused) {
  luapool *p = module_pool(util_profiles[_i], 0);
  lua_State *L = util_acquire(p);
  lua_pushcfunction(L, call_module);
  ck_assert_int_eq(lua_pcall(L, 0, 2, 0), LUA_OK);
  ck_assert_int_eq(lua_tointeger(L, -2), LUAPOOL_EINVAL);
  ck_assert_int_eq(lua_tointeger(L, -1), LUAPOOL_EINVAL);
  lua_settop(L, 0);
  luapool_release(p, L);
  ck_assert_int_eq(atomic_load(&opens), 0);
  /* A state luapool did not make, and NULL. */
  lua_State *F = luaL_newstate();
  ck_assert_int_eq(luapool_module(F, "x", open_hidden, NULL), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_module_source(F, "x", "return {}", 9), LUAPOOL_EINVAL);
  ck_assert_int_eq(lua_gettop(F), 0);
  lua_close(F);
  ck_assert_int_eq(luapool_module(NULL, "x", open_hidden, NULL), LUAPOOL_EINVAL);
  luapool_destroy(p);
}
END_TEST

/* ---- Debian's modules
 * ---------------------------------------------------------------------------- */

#ifdef HAVE_LUA_CJSON
START_TEST(cjson_is_loaded_once_and_its_settings_are_reset) {
  atomic_store(&cjson_opens, 0);
  luapool *p = module_pool(util_profiles[_i], MOD_CJSON);
  ck_assert_str_eq(request_str(p, "local c = require 'cjson'\n"
                                  "return c.encode({1, 2, {a = true}})"),
                   "[1,2,{\"a\":true}]");
  /* A tenant changes every setting it can reach... */
  (void)request_int(p, "local c = require 'cjson'\n"
                       "c.encode_max_depth(2); c.decode_max_depth(2)\n"
                       "c.encode_number_precision(3); c.encode_sparse_array(true, 1, 1)\n"
                       "c.encode_keep_buffer(false); c.encode_invalid_numbers(true)\n"
                       "c.decode_invalid_numbers(false); return 0");
  /* ...and the next request sees the defaults. */
  ck_assert_str_eq(request_str(p,
                               "local c = require 'cjson'\n"
                               "return c.encode(math.pi) .. ' ' .. c.encode({{{{1}}}}) .. ' ' ..\n"
                               "  tostring(pcall(c.encode, {[20] = 1})) .. ' ' ..\n"
                               "  tostring(pcall(c.encode, 0/0)) .. ' ' ..\n"
                               "  tostring(c.encode_max_depth()) .. ' ' ..\n"
                               "  tostring(c.decode('[[[[1]]]]')[1][1][1][1] == 1)"),
                   "3.1415926535898 [[[[1]]]] false false 1000 true");
  for (int i = 0; i < 20; i++)
    ck_assert_int_eq(request_int(p, "return #require('cjson').decode('[1,2,3]')"), 3);
  ck_assert_int_eq(atomic_load(&cjson_opens), 1);
  ck_assert_uint_eq(util_stats(p).tainted, 0);
  luapool_destroy(p);
}
END_TEST
#endif

#ifdef HAVE_LUA_LPEG
START_TEST(lpeg_is_loaded_once_and_its_registry_setting_is_reset) {
  atomic_store(&lpeg_opens, 0);
  luapool *p = module_pool(util_profiles[_i], MOD_LPEG);
  /* A choice per character: the backtrack stack grows with the input. */
  static const char deep[] =
      "local l = require 'lpeg'\n"
      "local p = l.P{ l.P'(' * l.V(1) * l.P')' + l.P'x' }\n"
      "local ok, r = pcall(l.match, p, ('('):rep(300) .. 'x' .. (')'):rep(300))\n"
      "return ok and r or -1";
  ck_assert_int_eq(request_int(p, deep), 602);
  /* lpeg keeps setmaxstack's value in the registry: the snapshot covers it. */
  ck_assert_int_eq(request_int(p, "require('lpeg').setmaxstack(1); return 0"), 0);
  ck_assert_int_eq(request_int(p, deep), 602);
  /* Its pattern metatable: the sandbox protects it; LIBS_ALL's writes are undone. */
  (void)request_int(
      p, "local mt = (debug and debug.getmetatable or getmetatable)(require('lpeg').P'a')\n"
         "if type(mt) == 'table' then pcall(function() mt.__add = nil; mt.__index = nil end) end\n"
         "return 0");
  ck_assert_int_eq(request_int(p, "local l = require 'lpeg'\n"
                                  "return l.match(l.P'a' + l.P'b', 'b')"),
                   2);
  ck_assert_int_eq(atomic_load(&lpeg_opens), 1);
  luapool_destroy(p);
}
END_TEST
#endif

int main(void) {
  Suite *s = suite_create("modules");
  TCase *tc = tcase_create("modules");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, a_module_is_loaded_once_per_state_not_per_request, 0, 2);
  tcase_add_test(tc, without_require_the_module_is_a_global);
  tcase_add_loop_test(tc, a_modules_upvalues_and_tables_are_reset, 0, 2);
  tcase_add_loop_test(tc, a_modules_table_is_read_only_or_restored, 0, 2);
  tcase_add_loop_test(tc, a_reset_function_puts_back_the_hidden_state, 0, 2);
  tcase_add_loop_test(tc, without_a_reset_function_the_hidden_state_is_the_hosts, 0, 2);
  tcase_add_loop_test(tc, a_failing_reset_function_closes_the_state, 0, 2);
  tcase_add_test(tc, a_reset_function_does_not_run_under_reset_stack);
  tcase_add_loop_test(tc, a_reset_function_cannot_maintain_or_destroy_the_pool, 0, 2);
  tcase_add_loop_test(tc, errors_in_on_create_are_reported_and_leave_the_state_usable, 0, 2);
  tcase_add_loop_test(tc, outside_on_create_it_is_refused, 0, 2);
#ifdef HAVE_LUA_CJSON
  tcase_add_loop_test(tc, cjson_is_loaded_once_and_its_settings_are_reset, 0, 2);
#endif
#ifdef HAVE_LUA_LPEG
  tcase_add_loop_test(tc, lpeg_is_loaded_once_and_its_registry_setting_is_reset, 0, 2);
#endif
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
