/*
** State behind on_create's code, and upvalue identity: request A changes, through the functions
** on_create left (Lua and C), what those functions keep (module fields, nested caches, the
** globals they captured, tables in upvalues, C upvalues, coroutines), or rebinds upvalues with
** debug.upvaluejoin; request B, on the same state, must see what a new state shows.  Each test
** evaluates the look on the pristine state, checks that the plant changed what the look sees
** (so the test has teeth), then looks again after release and reacquire.  Loop tests run under
** both profiles (util_profiles: the sandbox, then LUAPOOL_LIBS_ALL).
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Runs chunk; its result (tostring of the first value), or "ERR: message", into out. */
static void eval(lua_State *L, const char *chunk, char *out, size_t n) {
  int top = lua_gettop(L);
  if (luaL_loadbufferx(L, chunk, strlen(chunk), "=look", "t") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    snprintf(out, n, "ERR: %s", lua_tostring(L, -1));
  else
    snprintf(out, n, "%s", luaL_tolstring(L, -1, NULL));
  lua_settop(L, top);
}

/* Runs chunk; NULL when it ran, else its error message (a static buffer). */
static const char *run(lua_State *L, const char *chunk) {
  static char msg[512];
  int top = lua_gettop(L);
  const char *err = NULL;
  if (luaL_loadbufferx(L, chunk, strlen(chunk), "=plant", "t") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK) {
    snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1));
    err = msg;
  }
  lua_settop(L, top);
  return err;
}

typedef int (*create_fn)(lua_State *L, void *ud);
typedef void (*c_plant)(lua_State *L);

/* What the plant must do in request A, and what the reset then does. */
enum {
  WORKS = 0,        /* the plant runs in both profiles; the state is restored */
  SAFE_REFUSES = 1, /* the sandbox refuses the plant (an error); under ALL it runs */
  TAINTS = 2,       /* the plant runs; the reset cannot restore it: the state is closed */
  REFUSED = 4       /* both profiles refuse the plant (an error); nothing changes */
};

typedef struct channel_case {
  int profile;
  create_fn create; /* NULL: util_on_create_lua over src */
  const char *src;
  const char *plant;
  c_plant cplant;
  const char *look;
  int expect;
} channel_case;

static void check_channel(const channel_case *k) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[k->profile]);
  cfg.on_create = k->create != NULL ? k->create : util_on_create_lua;
  cfg.on_create_ud = (void *)k->src;
  luapool *p = util_pool(&cfg);
  const char *pn = util_profile_names[k->profile];
  char before[512], planted[512], after[512];

  lua_State *L = util_acquire(p);
  eval(L, k->look, before, sizeof before);
  ck_assert_msg(strncmp(before, "ERR", 3) != 0, "%s: the look fails on a new state: %s", pn,
                before);
  luapool_release(p, L);

  lua_State *A = util_acquire(p);
  ck_assert_ptr_eq(A, L);
  const char *err = k->plant != NULL ? run(A, k->plant) : NULL;
  bool refused = (k->expect & REFUSED) || ((k->expect & SAFE_REFUSES) && k->profile == 0);
  if (refused)
    ck_assert_msg(err != NULL, "%s: the plant was not refused: %s", pn, k->plant);
  else
    ck_assert_msg(err == NULL, "%s: the plant failed: %s", pn, err);
  if (k->cplant != NULL)
    k->cplant(A);
  lua_settop(A, 0);
  eval(A, k->look, planted, sizeof planted);
  if (!refused || k->cplant != NULL)
    ck_assert_msg(strcmp(planted, before) != 0, "%s: the plant changed nothing the look sees (%s)",
                  pn, before);
  luapool_release(p, A);

  bool taints = (k->expect & TAINTS) != 0;
  for (int round = 0; round < 2; round++) {
    lua_State *B = util_acquire(p);
    if (!taints)
      ck_assert_msg(B == L, "%s: the state was closed, not reset", pn);
    eval(B, k->look, after, sizeof after);
    ck_assert_msg(strcmp(after, before) == 0, "%s: user B sees '%s', a new state shows '%s'", pn,
                  after, before);
    luapool_release(p, B);
  }
  luapool_stats st = util_stats(p);
  ck_assert_msg(st.tainted == (taints ? 1u : 0u), "%s: %llu states tainted", pn,
                (unsigned long long)st.tainted);
  ck_assert_uint_eq(st.created, taints ? 2 : 1);
  ck_assert_uint_eq(st.in_use, 0);
  luapool_destroy(p);
}

static void channel(int profile, const char *src, const char *plant, const char *look, int expect) {
  channel_case k = {profile, NULL, src, plant, NULL, look, expect};
  check_channel(&k);
}

/* ---- 6: what on_create's modules keep in their own tables -------------------------------- */

/* A module reached as a global by its own functions: they write its fields through _ENV. */
static const char global_module[] =
    "M = {count = 0, cache = {sub = {}}}\n"
    "function M.inc() M.count = M.count + 1 return M.count end\n"
    "function M.put(k, v) M.cache[k] = v M.cache.sub[k] = v end\n"
    "function M.get(k) return tostring(M.cache[k]) .. tostring(M.cache.sub[k]) end\n";

START_TEST(a_module_field_its_function_writes) {
  channel(_i, global_module, "M.inc() M.inc()", "return M.count .. ',' .. M.inc()", WORKS);
}
END_TEST

START_TEST(a_nested_cache_its_function_writes) {
  /* the module's own write into its nested tables works in the sandbox (no read-only error) */
  channel(_i, global_module, "M.put('k', 'A-secret')",
          "return M.get('k') .. tostring(M.cache.k) .. tostring(M.cache.sub.k)", WORKS);
}
END_TEST

/* The same with the module local to its chunk: its functions reach it through an upvalue. */
static const char local_module[] =
    "local M = {count = 0, cache = {sub = {}}}\n"
    "function M.inc() M.count = M.count + 1 return M.count end\n"
    "function M.put(k, v) M.cache[k] = v M.cache.sub[k] = v end\n"
    "function M.get(k) return tostring(M.cache[k]) .. tostring(M.cache.sub[k]) end\n"
    "mod = M\n";

START_TEST(a_local_module_written_through_an_upvalue) {
  channel(_i, local_module, "mod.inc() mod.put('k', 'A-secret')",
          "return mod.count .. mod.get('k') .. tostring(mod.cache.sub.k) .. mod.inc()", WORKS);
}
END_TEST

START_TEST(scripts_still_cannot_write_the_modules_in_the_sandbox) {
  channel(_i, local_module, "mod.cache.sub.k = 'A-secret'", "return tostring(mod.cache.sub.k)",
          SAFE_REFUSES);
  channel(_i, local_module, "rawset(mod.cache, 'k', 'A-secret')", "return tostring(mod.cache.k)",
          SAFE_REFUSES);
}
END_TEST

/* The globals table on_create's functions captured as _ENV (the builtins, in the sandbox). */
static const char env_functions[] =
    "function remember(v) last = v end\n"
    "function recall() return last end\n"
    "function clobber() tostring = function() return 'pwned' end end\n"
    "function show(x) return tostring(x) end\n"
    "function drop() table = nil end\n"
    "function has_table() return type(table) end\n"
    "function env() return _ENV end\n";

START_TEST(a_global_that_on_creates_function_sets) {
  channel(_i, env_functions, "remember('A-secret')", "return tostring(recall()) .. tostring(last)",
          WORKS);
}
END_TEST

START_TEST(a_builtin_that_on_creates_function_replaces) {
  channel(_i, env_functions, "clobber()", "return show(1) .. tostring(2)", WORKS);
  channel(_i, env_functions, "drop()", "return has_table() .. type(table)", WORKS);
}
END_TEST

START_TEST(the_globals_table_a_function_hands_out) {
  /* env() hands the script the real globals table on_create's functions use */
  channel(_i, env_functions, "local g = env() g.last = 'A-secret' g.string = nil g.extra = {}",
          "local g = env() return tostring(recall()) .. type(g.string) .. tostring(g.extra)",
          WORKS);
}
END_TEST

/* A table a Lua function holds as an upvalue, also reachable as a global (read-only there). */
static const char upvalue_tables[] = "local seen = {} seen_view = seen\n"
                                     "function mark(k) seen[k] = true end\n"
                                     "local box = {inner = {}}\n"
                                     "function getbox() return box end\n";

START_TEST(a_table_a_lua_function_holds_as_an_upvalue) {
  channel(_i, upvalue_tables, "mark('x')", "return tostring(seen_view.x)", WORKS);
}
END_TEST

START_TEST(an_upvalue_table_a_function_hands_out) {
  /* the function hands the real table to the script, which writes it */
  channel(_i, upvalue_tables, "getbox().x = 'A' getbox().inner.y = 'A' rawset(getbox(), 'z', 1)",
          "local b = getbox() return tostring(b.x) .. tostring(b.inner.y) .. tostring(b.z)", WORKS);
}
END_TEST

START_TEST(a_table_key_reached_through_pairs) {
  static const char src[] = "local k = {} keyed = {[k] = 'v'} function key_x() return k.x end";
  channel(_i, src, "for k in pairs(keyed) do k.x = 'A' end",
          "local s = tostring(key_x()) for k in pairs(keyed) do s = s .. tostring(k.x) end "
          "return s",
          SAFE_REFUSES);
}
END_TEST

START_TEST(a_table_that_memoizes_through_its_metatable) {
  static const char src[] =
      "memo = setmetatable({}, {__index = function(t, k) local v = k .. '!' rawset(t, k, v) "
      "return v end})";
  channel(_i, src, "local _ = memo.a .. memo.b",
          "local n = 0 for _ in pairs(memo) do n = n + 1 end return n .. memo.c", WORKS);
}
END_TEST

/* C closures: a counter in the upvalue itself, and a table upvalue that is also a global. */
static int c_tick(lua_State *L) {
  lua_Integer n = lua_tointeger(L, lua_upvalueindex(1)) + 1;
  lua_pushinteger(L, n);
  lua_copy(L, -1, lua_upvalueindex(1));
  return 1;
}

static int c_put(lua_State *L) {
  lua_settop(L, 2);
  lua_rawset(L, lua_upvalueindex(1));
  return 0;
}

static int c_get(lua_State *L) {
  lua_settop(L, 1);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* Pops the table on top into the upvalue of two C closures, the globals put and get. */
static void set_put_get(lua_State *L, const char *put, const char *get) {
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, c_put, 1);
  lua_setglobal(L, put);
  lua_pushcclosure(L, c_get, 1);
  lua_setglobal(L, get);
}

static int on_create_c_closures(lua_State *L, void *ud) {
  (void)ud;
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, c_tick, 1);
  lua_setglobal(L, "tick");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "store");
  set_put_get(L, "put", "get");
  /* a C closure that is a field of a module table, reached only through the table */
  lua_newtable(L);
  lua_pushinteger(L, 100);
  lua_pushcclosure(L, c_tick, 1);
  lua_setfield(L, -2, "tick");
  lua_setglobal(L, "cmod");
  return 0;
}

START_TEST(a_c_closures_own_upvalue) {
  channel_case k = {_i,   on_create_c_closures,
                    NULL, "tick() tick() cmod.tick()",
                    NULL, "return tick() .. ',' .. cmod.tick()",
                    WORKS};
  check_channel(&k);
}
END_TEST

START_TEST(a_c_closures_table_upvalue_that_is_also_a_global) {
  channel_case k = {_i,   on_create_c_closures,
                    NULL, "put('k', 'A-secret')",
                    NULL, "return tostring(get('k')) .. tostring(store.k)",
                    WORKS};
  check_channel(&k);
}
END_TEST

START_TEST(upvalues_set_with_the_debug_library) {
  /* LIBS_ALL: debug.setupvalue on a C closure and on a Lua function from on_create */
  channel_case k = {1,    on_create_c_closures,
                    NULL, "debug.setupvalue(get, 1, {k = 'ghost'}) debug.setupvalue(tick, 1, 41)",
                    NULL, "return tostring(get('k')) .. tick()",
                    WORKS};
  check_channel(&k);
  channel(1, upvalue_tables, "debug.setupvalue(mark, 1, {}) mark('x')",
          "mark('y') return tostring(seen_view.y)", WORKS);
}
END_TEST

/*
** The libraries' own tables (the real ones behind the proxies) that on_create's code holds and
** hands out raw: through a Lua upvalue, a table it keeps, a C closure's upvalue.  The walk passes
** over a library table that holds no object (LP_K_LEAF: string, table, utf8, coroutine) only
** where it finds it mapped; here it is found exposed, so it must be recorded.
*/
static const char library_holders[] = "local s, t, u, co = string, table, utf8, coroutine\n"
                                      "function libs() return s, t, u, co end\n"
                                      "local box = {lib = table, inner = {lib = utf8}}\n"
                                      "function getbox() return box end\n";

START_TEST(a_library_table_a_function_hands_out) {
  channel(_i, library_holders,
          "local s, t, u, co = libs() s.rep = nil s.secret = 'A' t.insert = nil u.char = 'x' "
          "co.extra = {}",
          "local s, t, u, co = libs() return tostring(s.secret) .. type(s.rep) .. type(t.insert) "
          ".. type(u.char) .. tostring(co.extra) .. string.rep('x', 2) .. type(table.insert)",
          WORKS);
  channel(_i, library_holders, "getbox().lib.concat = nil getbox().inner.lib.len = 'A'",
          "return type(getbox().lib.concat) .. type(table.concat) .. type(utf8.len) .. "
          "type(getbox().inner.lib.len)",
          WORKS);
}
END_TEST

static int on_create_library_closures(lua_State *L, void *ud) {
  (void)ud;
  lua_getglobal(L, "string");
  set_put_get(L, "sput", "sget");
  return 0;
}

START_TEST(a_library_table_in_a_c_closures_upvalue) {
  channel_case k = {_i,
                    on_create_library_closures,
                    NULL,
                    "sput('secret', 'A') sput('format', false)",
                    NULL,
                    "return tostring(sget('secret')) .. tostring(string.secret) .. "
                    "type(sget('format')) .. string.format('%d', 7)",
                    WORKS};
  check_channel(&k);
}
END_TEST

/* A module that package.preload holds, required by on_create and per request. */
static const char counter_module[] =
    "local shared = {n = 0}\n"
    "return function()\n"
    "  local M = {n = 0}\n"
    "  function M.inc() M.n = M.n + 1 shared.n = shared.n + 1 return M.n .. '/' .. shared.n "
    "end\n"
    "  return M\n"
    "end\n";

static int on_create_preload(lua_State *L, void *ud) {
  (void)ud;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  if (luaL_dostring(L, counter_module) != LUA_OK)
    return 1;
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "early");
  lua_setfield(L, -2, "late");
  lua_pop(L, 1);
  return luaL_dostring(L, "early = require('early')") != LUA_OK;
}

START_TEST(a_preloaded_modules_state) {
  channel_case k = {_i,   on_create_preload,
                    NULL, "require('early').inc() require('late').inc()",
                    NULL, "return require('early').inc() .. ',' .. require('late').inc()",
                    WORKS};
  check_channel(&k);
}
END_TEST

/* A userdata whose methods table a method writes. */
static int on_create_handle(lua_State *L, void *ud) {
  (void)ud;
  lua_newuserdatauv(L, 8, 1);
  if (luaL_dostring(L, "local methods = {} "
                       "function methods.set(self, v) methods.last = v end "
                       "return {__index = methods}") != LUA_OK)
    return 1;
  lua_setmetatable(L, -2);
  lua_setglobal(L, "handle");
  return 0;
}

START_TEST(a_userdatas_methods_table) {
  channel_case k = {
      _i,   on_create_handle, NULL, "handle:set('A-secret')", NULL, "return tostring(handle.last)",
      WORKS};
  check_channel(&k);
}
END_TEST

/* The sandbox's proxies read as the real tables would: mapped keys, lengths, pairs, identity. */
START_TEST(proxies_read_like_the_real_tables) {
  static const char src[] = "local k = {} keyed = {[k] = 'v', list = {10, 20, 30}} key = k\n"
                            "M = {sub = {x = 1}, self = nil} M.self = M\n";
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_SAFE);
  cfg.on_create = util_on_create_lua;
  cfg.on_create_ud = (void *)src;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return keyed[key] == 'v' and #keyed.list == 3 and "
                                    "keyed.list[2] == 20 and M.sub == M.sub and M.self == M "
                                    "and rawequal(M.sub, M.self.sub)"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "local n, s = 0, 0 for k, v in pairs(keyed) do n = n + 1 "
                                    "if k == key then s = s + 1 end end "
                                    "for i, v in ipairs(keyed.list) do s = s + v end "
                                    "return n * 1000 + s"),
                   2061);
  ck_assert_int_eq(util_eval_int(L, "return ('x'):rep(2) == 'xx' and string.rep == ('').rep "
                                    "and getmetatable('') == false and _G._G == _G and "
                                    "_G.string == string and require('string') == string"),
                   1);
  ck_assert_ptr_nonnull(strstr(util_error_of(L, "=t", "M.sub.x = 2"), "read-only"));
  ck_assert_ptr_nonnull(strstr(util_error_of(L, "=t", "table.insert(keyed.list, 4)"), "read-only"));
  ck_assert_ptr_nonnull(strstr(util_error_of(L, "=t", "setmetatable(M, {})"), "protected"));
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- 6: coroutines on_create left ------------------------------------------------------------ */

START_TEST(a_suspended_coroutine_fails_the_creation) {
  static const char *const srcs[] = {
      "gen = coroutine.wrap(function() local n = 0 while true do n = n + 1 "
      "coroutine.yield(n) end end) gen()",
      "local co = coroutine.create(function() coroutine.yield() end) coroutine.resume(co) "
      "function resume() return coroutine.resume(co) end",
      "co = coroutine.create(function() error('x') end) coroutine.resume(co)",
  };
  for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
    luapool_config cfg;
    util_config_libs(&cfg, util_profiles[_i]);
    cfg.on_create = util_on_create_lua;
    cfg.on_create_ud = (void *)srcs[i];
    luapool *p = NULL;
    int rc = luapool_create(&cfg, &p);
    if (rc == LUAPOOL_OK) { /* nothing prewarmed: the first acquire creates the state */
      lua_State *L;
      rc = luapool_acquire(p, 0, &L);
      ck_assert_int_ne(rc, LUAPOOL_OK);
      luapool_destroy(p);
    }
    ck_assert_msg(util_log_has("coroutine reachable that is suspended"),
                  "%s: no clear error for a suspended coroutine", util_profile_names[_i]);
  }
}
END_TEST

static const char coroutines[] =
    "co = coroutine.create(function(a) local x = a coroutine.yield(x) return 'done' end)\n"
    "gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)\n"
    "local done = coroutine.create(function() return 1 end) coroutine.resume(done)\n"
    "finished = done\n";

/*
** Request A changes a coroutine on_create left: the state is closed (tainted), and the next
** acquire gets a new state whose look shows fresh (a literal: the look itself may resume).
*/
static void tainted_case(int profile, const char *src, const char *plant, const char *look,
                         const char *fresh) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[profile]);
  cfg.on_create = util_on_create_lua;
  cfg.on_create_ud = (void *)src;
  luapool *p = util_pool(&cfg);
  const char *pn = util_profile_names[profile];
  char seen[512];
  lua_State *A = util_acquire(p);
  const char *err = run(A, plant);
  ck_assert_msg(err == NULL, "%s: the plant failed: %s", pn, err);
  luapool_release(p, A);
  ck_assert_msg(util_stats(p).tainted == 1, "%s: the state was kept after: %s", pn, plant);
  lua_State *B = util_acquire(p);
  eval(B, look, seen, sizeof seen);
  ck_assert_msg(strcmp(seen, fresh) == 0, "%s: user B sees '%s', a new state shows '%s'", pn, seen,
                fresh);
  luapool_release(p, B);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.created, 2);
  ck_assert_uint_eq(st.in_use, 0);
  luapool_destroy(p);
}

START_TEST(a_coroutine_resumed_taints_the_state) {
  tainted_case(_i, coroutines, "coroutine.resume(co, 'A-secret')",
               "return coroutine.status(co) .. tostring(select(2, coroutine.resume(co, 'B')))",
               "suspendedB");
  tainted_case(_i, coroutines, "gen()", "return gen()", "1");
  tainted_case(_i, coroutines, "coroutine.close(co)", "return coroutine.status(co)", "suspended");
}
END_TEST

START_TEST(a_coroutine_left_alone_keeps_the_state) {
  /* a finished coroutine resumed again changes nothing: the state is kept */
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.on_create = util_on_create_lua;
  cfg.on_create_ud = (void *)coroutines;
  luapool *p = util_pool(&cfg);
  lua_State *A = util_acquire(p);
  ck_assert_int_eq(util_eval_int(A, "return coroutine.status(finished) == 'dead' and "
                                    "not coroutine.resume(finished) and "
                                    "coroutine.status(co) == 'suspended'"),
                   1);
  luapool_release(p, A);
  lua_State *B = util_acquire(p);
  ck_assert_ptr_eq(B, A);
  ck_assert_int_eq(util_eval_int(B, "return select(2, coroutine.resume(co, 7))"), 7);
  luapool_release(p, B);
  ck_assert_uint_eq(util_stats(p).tainted, 1); /* B resumed co */
  luapool_destroy(p);
}
END_TEST

START_TEST(a_hook_on_a_coroutine_taints_the_state) {
  channel(1, coroutines, "debug.sethook(co, function() hooked = true end, 'l')",
          "return tostring(debug.gethook(co))", TAINTS);
}
END_TEST

/* ---- 7: upvalue identity ------------------------------------------------------------------- */

static const char cells[] = "local a, b = 0, 0\n"
                            "function inca() a = a + 1 return a end\n"
                            "function geta() return a end\n"
                            "function incb() b = b + 1 return b end\n"
                            "function setg(v) gvar = v end\n"
                            "function getg() return gvar end\n";

START_TEST(upvaluejoin_of_two_closures_with_equal_values) {
  channel(1, cells, "debug.upvaluejoin(inca, 1, incb, 1)", "inca() return geta() .. ',' .. incb()",
          WORKS);
}
END_TEST

START_TEST(upvaluejoin_to_a_fresh_cell_with_an_equal_value) {
  channel(1, cells, "local z = 0 debug.upvaluejoin(inca, 1, function() return z end, 1)",
          "inca() return geta()", WORKS);
  /* the shared _ENV cell, joined to a fresh cell that holds the same table */
  channel(1, cells, "local g = _G debug.upvaluejoin(setg, 1, function() return g end, 1)",
          "return tostring(debug.upvalueid(setg, 1) == debug.upvalueid(getg, 1))", WORKS);
}
END_TEST

START_TEST(upvaluejoin_of_every_closure_that_shared_a_cell) {
  /* nothing reachable keeps a's cell any more: the reset's own keeper does */
  channel(1, cells, "debug.upvaluejoin(inca, 1, incb, 1) debug.upvaluejoin(geta, 1, incb, 1)",
          "inca() return geta() .. ',' .. incb()", WORKS);
}
END_TEST

START_TEST(upvaluejoin_of_a_c_function_is_refused) {
  channel_case k = {1,    on_create_c_closures, NULL,   "debug.upvaluejoin(tick, 1, get, 1)",
                    NULL, "return tick()",      REFUSED};
  check_channel(&k);
  channel_case k2 = {1,      on_create_c_closures,
                     NULL,   "local z = 0 debug.upvaluejoin(function() return z end, 1, tick, 1)",
                     NULL,   "return tick()",
                     REFUSED};
  check_channel(&k2);
}
END_TEST

static void join_from_c(lua_State *L) {
  lua_getglobal(L, "inca");
  lua_getglobal(L, "incb");
  lua_upvaluejoin(L, -2, 1, -1, 1);
  lua_pop(L, 2);
}

START_TEST(upvaluejoin_from_the_host) {
  channel_case k = {_i,   NULL, cells, NULL, join_from_c, "inca() return geta() .. ',' .. incb()",
                    WORKS};
  check_channel(&k);
}
END_TEST

/*
** A cached chunk whose _ENV cell a request joined to an on_create function's upvalue (LIBS_ALL):
** every later hit would write the globals into that cell.  The cache sees the rebinding and
** compiles again; the function's counter keeps counting.
*/
START_TEST(upvaluejoin_of_a_cached_chunks_env) {
  static const char oc[] = "local n = 0 function counter() n = n + 1 return n end";
  static const char chunk[] = "local me = debug.getinfo(1, 'f').func"
                              " if evil then debug.upvaluejoin(me, 1, counter, 1) end return 1";
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_ALL);
  cfg.on_create = util_on_create_lua;
  cfg.on_create_ud = (void *)oc;
  luapool *p = util_pool(&cfg);
  for (int round = 0; round < 3; round++) {
    lua_State *L = util_acquire(p);
    if (round == 0)
      util_run(L, "evil = true");
    ck_assert_int_eq(luapool_load(L, "=c", chunk, sizeof chunk - 1), LUA_OK);
    ck_assert_int_eq(lua_pcall(L, 0, 0, 0), LUA_OK);
    ck_assert_int_eq(util_eval_int(L, "return counter()"), 1);
    luapool_release(p, L);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.cache_misses, 2); /* the first compile, and the one after the join */
  ck_assert_uint_eq(st.cache_hits, 1);
  luapool_destroy(p);
}
END_TEST

/*
** LIBS_ALL: a request swaps every table the registry holds at an integer key (the chunk cache's
** is one; 1 and 2 are Lua's) for a table of its own functions.  A cached
** chunk loaded afterwards in the same request must still be the host's (compiled again), and the
** next request gets the registry back and hits the cache.
*/
START_TEST(a_request_that_swaps_the_registrys_tables_gets_no_foreign_chunk) {
  static const char chunk[] = "return 'genuine'";
  static const char swap[] =
      "local r = debug.getregistry()"
      " local evil = {} for i = 1, 64 do evil[i] = function() return 'evil' end end"
      " for k, v in pairs(r) do"
      "   if math.type(k) == 'integer' and k > 2 and type(v) == 'table' then r[k] = evil end"
      " end";
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_ALL);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  for (int round = 0; round < 3; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(luapool_load(L, "=c", chunk, sizeof chunk - 1), LUA_OK);
    ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
    ck_assert_str_eq(lua_tostring(L, -1), "genuine");
    lua_pop(L, 1);
    if (round == 1) {
      util_run(L, swap);
      ck_assert_int_eq(luapool_load(L, "=c", chunk, sizeof chunk - 1), LUA_OK);
      ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
      ck_assert_str_eq(lua_tostring(L, -1), "genuine");
      lua_pop(L, 1);
    }
    luapool_release(p, L);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.tainted, 0);
  ck_assert_uint_ge(st.restored, 1);   /* the registry put back */
  ck_assert_uint_ge(st.cache_hits, 2); /* rounds 1 and 2 hit */
  luapool_destroy(p);
}
END_TEST

/* A coroutine on_create made (not started) and a request resumes: it runs under the request's
   budget, and the state is then closed (a coroutine cannot be put back). */
START_TEST(an_on_create_coroutine_runs_under_the_budget) {
  static const char oc[] = "spin = coroutine.create(function() while true do end end)"
                           " spinwrap = coroutine.wrap(function() while true do end end)";
  static const char *const plants[] = {"coroutine.resume(spin) while true do end",
                                       "pcall(spinwrap) while true do end"};
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i / 2]);
  cfg.on_create = util_on_create_lua;
  cfg.on_create_ud = (void *)oc;
  cfg.budget_instructions = 1000000;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(run(L, plants[_i % 2]), "budget exceeded"));
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_INSTRUCTIONS);
  luapool_release(p, L);
  ck_assert_uint_eq(util_stats(p).tainted, 1);
  luapool_destroy(p);
}
END_TEST

static Suite *channels_suite(void) {
  Suite *s = suite_create("channels");
  TCase *tc = tcase_create("on_create_state");
  tcase_add_loop_test(tc, a_module_field_its_function_writes, 0, 2);
  tcase_add_loop_test(tc, a_nested_cache_its_function_writes, 0, 2);
  tcase_add_loop_test(tc, a_local_module_written_through_an_upvalue, 0, 2);
  tcase_add_loop_test(tc, scripts_still_cannot_write_the_modules_in_the_sandbox, 0, 2);
  tcase_add_loop_test(tc, a_global_that_on_creates_function_sets, 0, 2);
  tcase_add_loop_test(tc, a_builtin_that_on_creates_function_replaces, 0, 2);
  tcase_add_loop_test(tc, the_globals_table_a_function_hands_out, 0, 2);
  tcase_add_loop_test(tc, a_table_a_lua_function_holds_as_an_upvalue, 0, 2);
  tcase_add_loop_test(tc, an_upvalue_table_a_function_hands_out, 0, 2);
  tcase_add_loop_test(tc, a_table_key_reached_through_pairs, 0, 2);
  tcase_add_loop_test(tc, a_table_that_memoizes_through_its_metatable, 0, 2);
  tcase_add_loop_test(tc, a_c_closures_own_upvalue, 0, 2);
  tcase_add_loop_test(tc, a_c_closures_table_upvalue_that_is_also_a_global, 0, 2);
  tcase_add_test(tc, upvalues_set_with_the_debug_library);
  tcase_add_loop_test(tc, a_library_table_a_function_hands_out, 0, 2);
  tcase_add_loop_test(tc, a_library_table_in_a_c_closures_upvalue, 0, 2);
  tcase_add_loop_test(tc, a_preloaded_modules_state, 0, 2);
  tcase_add_loop_test(tc, a_userdatas_methods_table, 0, 2);
  tcase_add_test(tc, proxies_read_like_the_real_tables);
  suite_add_tcase(s, tc);
  tc = tcase_create("coroutines");
  tcase_add_loop_test(tc, a_suspended_coroutine_fails_the_creation, 0, 2);
  tcase_add_loop_test(tc, a_coroutine_resumed_taints_the_state, 0, 2);
  tcase_add_loop_test(tc, a_coroutine_left_alone_keeps_the_state, 0, 2);
  tcase_add_test(tc, a_hook_on_a_coroutine_taints_the_state);
  tcase_add_loop_test(tc, an_on_create_coroutine_runs_under_the_budget, 0, 4);
  suite_add_tcase(s, tc);
  tc = tcase_create("upvalue_identity");
  tcase_add_test(tc, upvaluejoin_of_two_closures_with_equal_values);
  tcase_add_test(tc, upvaluejoin_to_a_fresh_cell_with_an_equal_value);
  tcase_add_test(tc, upvaluejoin_of_every_closure_that_shared_a_cell);
  tcase_add_test(tc, upvaluejoin_of_a_c_function_is_refused);
  tcase_add_loop_test(tc, upvaluejoin_from_the_host, 0, 2);
  tcase_add_test(tc, upvaluejoin_of_a_cached_chunks_env);
  tcase_add_test(tc, a_request_that_swaps_the_registrys_tables_gets_no_foreign_chunk);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return util_run_suite(channels_suite());
}
