/*
** The complete reset, channel by channel, under both profiles: user A plants something in a
** state, user B of the same state looks.  Each test first evaluates the look on the pristine
** state, then checks that the plant really changed what the look sees (so the test has teeth),
** then that after release and reacquire the look sees the pristine value again.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Runs chunk, returns whether it ran without error. */
static bool run(lua_State *L, const char *chunk) {
  int top = lua_gettop(L);
  bool ok = luaL_loadbufferx(L, chunk, strlen(chunk), "=plant", "t") == LUA_OK &&
            lua_pcall(L, 0, 0, 0) == LUA_OK;
  lua_settop(L, top);
  return ok;
}

typedef void (*c_plant)(lua_State *L);

enum { SAFE_ANY = 0, SAFE_REFUSES = 1, SAFE_ALLOWS = 2 };

/* A pool under util_profiles[profile] that hands the same state back. */
static luapool *pool_of(int profile) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[profile]);
  return util_pool(&cfg);
}

/* A pool of libraries libs whose states on_create (given ud) sets up. */
static luapool *pool_with(unsigned libs, int (*on_create)(lua_State *L, void *ud), void *ud) {
  luapool_config cfg;
  util_config_libs(&cfg, libs);
  cfg.on_create = on_create;
  cfg.on_create_ud = ud;
  return util_pool(&cfg);
}

/* The same, with on_create running the Lua chunk. */
static luapool *pool_running(unsigned libs, const char *chunk) {
  return pool_with(libs, util_on_create_lua, (void *)chunk);
}

/* Every reset of p's one state vouched for it (none closed); then p goes. */
static void expect_one_state_kept(luapool *p) {
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.created, 1);
  ck_assert_uint_eq(st.tainted, 0);
  luapool_destroy(p);
}

/*
** The pattern of every channel test.  plant (Lua) and/or cplant (C) change the state; under
** LUAPOOL_LIBS_ALL the Lua plant must succeed; under the sandbox it must fail (SAFE_REFUSES),
** succeed (SAFE_ALLOWS) or may do either (SAFE_ANY).
*/
static void channel(int profile, const char *plant, c_plant cplant, const char *look, int safe) {
  luapool *p = pool_of(profile);
  const char *pn = util_profile_names[profile];
  char before[512], planted[512], after[512];
  lua_State *L = util_acquire(p);
  eval(L, look, before, sizeof before);
  luapool_release(p, L);

  lua_State *A = util_acquire(p);
  ck_assert_ptr_eq(A, L);
  bool ok = plant == NULL || run(A, plant);
  if (profile == 1 || safe == SAFE_ALLOWS)
    ck_assert_msg(ok, "%s: the plant failed: %s", pn, plant);
  if (profile == 0 && safe == SAFE_REFUSES)
    ck_assert_msg(!ok, "%s: the sandbox let this plant through: %s", pn, plant);
  if (cplant != NULL)
    cplant(A);
  lua_settop(A, 0);
  eval(A, look, planted, sizeof planted);
  if (ok || cplant != NULL)
    ck_assert_msg(strcmp(planted, before) != 0, "%s: the plant changed nothing the look sees (%s)",
                  pn, before);
  luapool_release(p, A);

  lua_State *B = util_acquire(p);
  ck_assert_msg(B == L, "%s: the state was closed, not reset", pn);
  eval(B, look, after, sizeof after);
  ck_assert_msg(strcmp(after, before) == 0, "%s: user B sees '%s', a new state shows '%s'", pn,
                after, before);
  luapool_release(p, B);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.tainted, 0);
  luapool_destroy(p);
}

/* ---- globals ------------------------------------------------------------------------------ */

START_TEST(globals_added) {
  channel(_i, "secret = 'tenant A'; counter = 41", NULL,
          "return tostring(secret) .. tostring(counter)", SAFE_ALLOWS);
}
END_TEST

START_TEST(globals_changed) {
  channel(_i, "tostring = function() return 'pwned' end; type = function() return 'x' end", NULL,
          "return tostring(12) .. type(1)", SAFE_ALLOWS);
}
END_TEST

START_TEST(builtins_set_to_nil) {
  if (_i == 1) {
    channel(_i, "pairs = nil; error = nil; select = nil", NULL,
            "return type(pairs) .. type(error) .. type(select)", SAFE_ANY);
    return;
  }
  /* The sandbox's builtins cannot be removed (documented): assigning nil only removes a
     value that shadowed one, so there is nothing for user B to miss. */
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  ck_assert(run(L, "pairs = 1; pairs = nil; error = nil"));
  ck_assert_int_eq(util_eval_int(L, "return type(pairs) == 'function' and error ~= nil"), 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(globals_metatable) {
  channel(_i, "setmetatable(_G, {__index = function() return 'ghost' end})", NULL,
          "return tostring(undefined_name)", SAFE_REFUSES);
}
END_TEST

static void plant_globals_metatable_from_c(lua_State *L) {
  lua_pushglobaltable(L);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "ghost");
  lua_setfield(L, -2, "undefined_name");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

START_TEST(globals_metatable_from_c) {
  channel(_i, NULL, plant_globals_metatable_from_c, "return tostring(undefined_name)", SAFE_ANY);
}
END_TEST

START_TEST(globals_G_field) {
  channel(_i, "_G._G = {}", NULL, "return tostring(_G._G == _G)", SAFE_ALLOWS);
  channel(_i, "_G = 5", NULL, "return tostring(_G)", SAFE_ALLOWS);
}
END_TEST

START_TEST(many_globals_taint_the_state) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  ck_assert(run(L, "for i = 1, 1000 do _G['g' .. i] = i end"));
  luapool_release(p, L);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.tainted, 1); /* 1000 emptied nodes would slow every later check */
  lua_State *B = util_acquire(p);
  ck_assert_int_eq(util_eval_int(B, "return g1 == nil and g1000 == nil"), 1);
  luapool_release(p, B);
  luapool_destroy(p);
}
END_TEST

/*
** The same emptied nodes when the request removes its keys itself, which the restore never
** counts: a table once grown to 20,000 keys keeps its slots (Lua shrinks a table only when an
** insertion rehashes it), and every later reset would compare or walk them all.  The reset closes
** the state.  Each shape: the globals (both profiles), and under LIBS_ALL a library table and the
** array part of on_create's table; a request that churns 500 keys keeps its state.
*/
static const char on_create_list[] = "list = {1, 2, 3}";

START_TEST(a_table_grown_and_emptied_by_the_request_closes_the_state) {
  static const char *const shapes[] = {
      "for i = 1, 20000 do _G['g' .. i] = i end for i = 1, 20000 do _G['g' .. i] = nil end",
      "for i = 1, 20000 do string['s' .. i] = i end for i = 1, 20000 do string['s' .. i] = nil end",
      "for i = 4, 20000 do list[i] = i end for i = 20000, 4, -1 do list[i] = nil end",
  };
  int profile = _i / 3, shape = _i % 3;
  if (profile == 0 && shape != 0)
    return; /* the sandbox's libraries and on_create's tables are read-only to scripts */
  luapool *p = pool_running(util_profiles[profile], on_create_list);
  lua_State *A = util_acquire(p);
  ck_assert_msg(run(A, shapes[shape]), "shape %d", shape);
  luapool_release(p, A);
  /* the sizes come from the table image: with it off, the state is kept (doc/security.md) */
  const char *image = getenv("LUAPOOL_TABLE_IMAGE");
  unsigned closed = image != NULL && strcmp(image, "off") == 0 ? 0 : 1;
  ck_assert_uint_eq(util_stats(p).tainted, closed);
  lua_State *B = util_acquire(p);
  ck_assert_uint_eq(util_stats(p).created, 1 + closed);
  ck_assert_int_eq(util_eval_int(B, "return g1 == nil and #list == 3"), 1);
  /* a smaller churn keeps the state: 500 keys (at most 1,024 slots, 24 KiB: under the floor) */
  ck_assert(
      run(B, "for i = 1, 500 do _G['h' .. i] = i end for i = 1, 500 do _G['h' .. i] = nil end"));
  luapool_release(p, B);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.tainted, closed);
  ck_assert_uint_eq(st.idle, 1);
  lua_State *C = util_acquire(p);
  ck_assert_uint_eq(util_stats(p).created, 1 + closed); /* B's state, not a new one */
  luapool_release(p, C);
  luapool_destroy(p);
}
END_TEST

/* ---- library tables -------------------------------------------------------------------------- */

START_TEST(library_field_changed) {
  channel(_i, "string.rep = function() return 'ghost' end", NULL, "return string.rep('a', 2)",
          SAFE_REFUSES);
}
END_TEST

START_TEST(library_field_added) {
  channel(_i, "math.evil = 'ghost'", NULL, "return tostring(math.evil)", SAFE_REFUSES);
}
END_TEST

START_TEST(library_field_removed) {
  channel(_i, "table.insert = nil", NULL, "return type(table.insert)", SAFE_REFUSES);
}
END_TEST

START_TEST(library_field_rawset) {
  channel(_i, "rawset(utf8, 'char', function() return 'ghost' end)", NULL,
          "return utf8.char(65)", SAFE_REFUSES);
}
END_TEST

START_TEST(library_metatable) {
  channel(_i, "setmetatable(coroutine, {__index = function() return 'ghost' end})", NULL,
          "return tostring(coroutine.nothing)", SAFE_REFUSES);
}
END_TEST

START_TEST(library_global_replaced) {
  channel(_i, "string = {rep = function() return 'ghost' end}", NULL, "return string.rep('a', 2)",
          SAFE_ALLOWS);
}
END_TEST

static void plant_library_from_c(lua_State *L) {
  lua_getglobal(L, "math");
  lua_pushliteral(L, "ghost");
  lua_rawsetp(L, -2, (void *)plant_library_from_c); /* a key no script could make */
  lua_pushliteral(L, "ghost");
  lua_setfield(L, -2, "pi");
  lua_pop(L, 1);
}

START_TEST(library_changed_from_c) {
  /* ALL only: under the sandbox the libraries are read-only proxies, and a host writing into
     them from C gets the proxy's error (documented: the host keeps off the frozen tables) */
  channel(1, NULL, plant_library_from_c,
          "return tostring(math.pi) .. tostring(next(math, nil) ~= nil)", SAFE_ANY);
}
END_TEST

/* ---- the string metatable and the other types' ---------------------------------------------- */

START_TEST(string_metatable_index) {
  channel(_i, "getmetatable('').__index = {rep = function() return 'ghost' end}", NULL,
          "return ('a'):rep(2)", SAFE_REFUSES);
}
END_TEST

START_TEST(string_metatable_arithmetic) {
  channel(_i, "getmetatable('').__add = function() return 'ghost' end", NULL,
          "return tostring('10' + 1)", SAFE_REFUSES);
  channel(_i, "getmetatable('').__unm = function() return 'ghost' end", NULL,
          "return tostring(-'2')", SAFE_REFUSES);
}
END_TEST

START_TEST(string_metatable_key_added) {
  channel(_i, "getmetatable('').evil = 'ghost'", NULL,
          "local mt = getmetatable('') return tostring(type(mt) == 'table' and mt.evil)",
          SAFE_REFUSES);
}
END_TEST

static void plant_string_metatable_from_c(lua_State *L) {
  lua_pushliteral(L, "");
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "ghost");
  lua_setfield(L, -2, "rep");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

START_TEST(string_metatable_from_c) {
  channel(_i, NULL, plant_string_metatable_from_c, "return tostring(('a').rep)", SAFE_ANY);
}
END_TEST

START_TEST(type_metatables_with_debug) {
  /* ALL only: debug.setmetatable is how Lua code reaches them, and the sandbox has no debug */
  const char *look = "local function probe(v) return tostring((pcall(function() return v.x end))) "
                     "end return probe(nil) .. probe(true) .. probe(1) .. probe(print or type) .. "
                     "probe(coroutine.running())";
  channel(1,
          "local mt = {__index = function() return 'ghost' end} "
          "for _, v in ipairs{true, 1, print, (coroutine.running())} do "
          "debug.setmetatable(v, mt) end debug.setmetatable(nil, mt)",
          NULL, look, SAFE_ANY);
}
END_TEST

static int ghost(lua_State *L) {
  lua_pushliteral(L, "ghost");
  return 1;
}

static void plant_type_metatables_from_c(lua_State *L) {
  lua_pushnil(L);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, 1);
  lua_pushcfunction(L, ghost);
  lua_pushthread(L);
  lua_pushlightuserdata(L, (void *)ghost);
  for (int i = 1; i <= 6; i++) {
    lua_newtable(L);
    lua_pushcfunction(L, ghost);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, i);
  }
  lua_settop(L, 0);
}

static int has_lightuserdata_metatable(lua_State *L) {
  lua_pushlightuserdata(L, (void *)ghost);
  int has = lua_getmetatable(L, -1);
  lua_settop(L, 0);
  return has;
}

START_TEST(type_metatables_from_c) {
  const char *look = "local function probe(v) return tostring((pcall(function() return v.x end))) "
                     "end return probe(nil) .. probe(true) .. probe(1) .. probe(tostring) .. "
                     "probe(coroutine.running())";
  channel(_i, NULL, plant_type_metatables_from_c, look, SAFE_ANY);
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  plant_type_metatables_from_c(L);
  ck_assert_int_eq(has_lightuserdata_metatable(L), 1);
  luapool_release(p, L);
  L = util_acquire(p);
  ck_assert_int_eq(has_lightuserdata_metatable(L), 0);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- the registry and package ------------------------------------------------------------------ */

static int planted_ref = LUA_NOREF;

static void plant_registry(lua_State *L) {
  lua_pushliteral(L, "ghost");
  planted_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushliteral(L, "ghost");
  lua_setfield(L, LUA_REGISTRYINDEX, "evil");
}

START_TEST(registry_entries) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  lua_Unsigned len = lua_rawlen(L, LUA_REGISTRYINDEX);
  plant_registry(L);
  ck_assert_int_eq(lua_rawgeti(L, LUA_REGISTRYINDEX, planted_ref), LUA_TSTRING);
  lua_pop(L, 1);
  luapool_release(p, L);
  L = util_acquire(p);
  ck_assert_int_eq(lua_rawgeti(L, LUA_REGISTRYINDEX, planted_ref), LUA_TNIL);
  ck_assert_int_eq(lua_getfield(L, LUA_REGISTRYINDEX, "evil"), LUA_TNIL);
  lua_pop(L, 2);
  ck_assert_uint_eq(lua_rawlen(L, LUA_REGISTRYINDEX), len);
  /* a ref taken now gets the same number as on a new state */
  lua_pushboolean(L, 1);
  int again = luaL_ref(L, LUA_REGISTRYINDEX);
  ck_assert_int_eq(again, planted_ref);
  luapool_release(p, L);
  luapool_stats st = util_stats(p);
  ck_assert_uint_ge(st.restored, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(registry_from_lua_with_debug) {
  channel(1, "debug.getregistry().evil = 'ghost'; debug.getregistry()._LOADED.string = {}", NULL,
          "return tostring(debug.getregistry().evil) .. tostring(require('string') == string)",
          SAFE_ANY);
}
END_TEST

START_TEST(package_tables) {
  channel(1, "package.loaded.string = {}", NULL, "return tostring(require('string') == string)",
          SAFE_ANY);
  channel(1, "package.preload.evil = function() return 'ghost' end", NULL,
          "return tostring(package.preload.evil)", SAFE_ANY);
  channel(1, "package.path = 'x'; package.cpath = 'y'", NULL,
          "return package.path .. package.cpath", SAFE_ANY);
  channel(1, "table.insert(package.searchers, 1, function() return function() return 'ghost' end "
             "end)",
          NULL, "return tostring(#package.searchers) .. tostring(pcall(require, 'nothing'))",
          SAFE_ANY);
  /* the sandbox has no package: a global of that name is only the request's own */
  channel(0, "package = {loaded = {}}", NULL, "return tostring(package)", SAFE_ALLOWS);
}
END_TEST

/* ---- math.random ---------------------------------------------------------------------------- */

START_TEST(random_is_reseeded_at_every_reset) {
  luapool *p = pool_of(_i);
  /* what math.randomseed(42) gives, on a stock state */
  lua_State *S = luaL_newstate();
  luaL_openlibs(S);
  long long seeded = util_eval_int(S, "math.randomseed(42) return math.random(1 << 40)");
  lua_close(S);
  long long seen[4];
  for (int i = 0; i < 4; i++) {
    lua_State *L = util_acquire(p);
    seen[i] = util_eval_int(L, "return math.random(1 << 40)");
    ck_assert(run(L, "math.randomseed(42)")); /* A fixes the seed... */
    luapool_release(p, L);
    L = util_acquire(p);
    long long next = util_eval_int(L, "return math.random(1 << 40)");
    ck_assert_msg(next != seeded, "user A set user B's sequence"); /* ...B is not bound by it */
    luapool_release(p, L);
  }
  for (int i = 0; i < 4; i++) /* and no two users get the same sequence */
    for (int j = i + 1; j < 4; j++)
      ck_assert(seen[i] != seen[j]);
  luapool_destroy(p);
}
END_TEST

/* ---- the collector --------------------------------------------------------------------------- */

START_TEST(collector_stopped) {
  channel(_i, "collectgarbage('stop')", NULL, "return tostring(collectgarbage('isrunning'))",
          SAFE_ALLOWS);
}
END_TEST

/*
** The creation stops the collector around luapool's own parts (what they make, the state keeps):
** on_create runs with it running, a state is handed out with it running, and a collector that
** on_create stopped stays stopped until the first reset, as before.
*/
/* One request on p: look's integer result. */
static long long one_request(luapool *p, const char *look) {
  lua_State *L = util_acquire(p);
  long long v = util_eval_int(L, look);
  luapool_release(p, L);
  return v;
}

START_TEST(collector_running_in_on_create_and_after) {
  static const char running[] = "return collectgarbage('isrunning') and 1 or 0";
  luapool *p = pool_running(util_profiles[_i], "seen_running = collectgarbage('isrunning') "
                                               "local t = {} for i = 1, 20000 do t[i] = {} end "
                                               "t = nil collectgarbage()");
  ck_assert_int_eq(
      one_request(p, "return (seen_running and collectgarbage('isrunning')) and 1 or 0"), 1);
  expect_one_state_kept(p);
  p = pool_running(util_profiles[_i], "collectgarbage('stop')");
  ck_assert_int_eq(one_request(p, running), 0); /* as on_create left it */
  ck_assert_int_eq(one_request(p, running), 1); /* the first reset restarted it */
  expect_one_state_kept(p);
}
END_TEST

START_TEST(collector_mode_and_parameters) {
  channel(_i, "collectgarbage('generational')", NULL,
          "local m = collectgarbage('incremental') return m", SAFE_ALLOWS);
  channel(_i, "collectgarbage('incremental', 1000, 400)", NULL,
          "local p = collectgarbage('setpause', 200) local s = collectgarbage('setstepmul', 100) "
          "return p .. ',' .. s",
          SAFE_ALLOWS);
}
END_TEST

/* ---- finalizers and to-be-closed variables ----------------------------------------------------- */

static int ghosts; /* finalizers that ran */

static int count_ghost(lua_State *L) {
  (void)L;
  ghosts++;
  return 0;
}

static int on_create_ghost(lua_State *L, void *ud) {
  (void)ud;
  lua_pushcfunction(L, count_ghost);
  lua_setglobal(L, "ghost");
  return 0;
}

/* A finalizer that re-arms itself, as ALL allows; the sandbox refuses __gc. */
START_TEST(finalizers_never_run_in_the_next_turn) {
  static const char *const plants[] = {
      "setmetatable({}, {__gc = function() ghost() end})",
      "local mt = {} mt.__gc = function(o) ghost() keep = o setmetatable({}, mt) end "
      "setmetatable({}, mt)",
  };
  for (size_t k = 0; k < 2; k++) {
    luapool *p = pool_with(util_profiles[_i], on_create_ghost, NULL);
    ghosts = 0;
    lua_State *A = util_acquire(p);
    bool ok = run(A, plants[k]);
    ck_assert_msg(ok == (_i == 1), "%s: __gc %s", util_profile_names[_i],
                  ok ? "accepted by the sandbox" : "refused under ALL");
    luapool_release(p, A);
    int at_release = ghosts;
    lua_State *B = util_acquire(p);
    util_run(B, "collectgarbage() collectgarbage() local t = {} for i = 1, 1e4 do t[i] = {} end");
    ck_assert_msg(ghosts == at_release, "%s: a finalizer ran in the next user's turn",
                  util_profile_names[_i]);
    if (_i == 1) {
      /* tainted: closed, and a new state made (which malloc may place at the same address) */
      ck_assert_uint_eq(util_stats(p).tainted, 1);
      ck_assert_uint_eq(util_stats(p).created, 2);
    }
    luapool_release(p, B);
    luapool_destroy(p);
  }
}
END_TEST

START_TEST(gc_added_after_setmetatable_never_runs) {
  luapool *p = pool_with(util_profiles[_i], on_create_ghost, NULL);
  ghosts = 0;
  lua_State *A = util_acquire(p);
  util_run(A, "local mt = {} setmetatable({}, mt) mt.__gc = function() ghost() end");
  luapool_release(p, A);
  lua_State *B = util_acquire(p);
  ck_assert_ptr_eq(B, A); /* Lua does not mark the object: nothing to taint */
  util_run(B, "collectgarbage() collectgarbage()");
  ck_assert_int_eq(ghosts, 0);
  luapool_release(p, B);
  luapool_destroy(p);
}
END_TEST

START_TEST(close_handlers_of_suspended_coroutines) {
  luapool *p = pool_with(util_profiles[_i], on_create_ghost, NULL);
  ghosts = 0;
  lua_State *A = util_acquire(p);
  util_run(A, "co = coroutine.create(function() "
              "local x <close> = setmetatable({}, {__close = function() ghost() end}) "
              "coroutine.yield() end) coroutine.resume(co)");
  if (_i == 1)
    util_run(A, "string.co = co"); /* stashed where a new state has nothing */
  luapool_release(p, A);
  lua_State *B = util_acquire(p);
  ck_assert_ptr_eq(B, A);
  util_run(B, "collectgarbage() collectgarbage() assert(co == nil and string.co == nil)");
  ck_assert_int_eq(ghosts, 0);
  luapool_release(p, B);
  luapool_destroy(p);
}
END_TEST

/* ---- hooks, warn, the stack, the heap ---------------------------------------------------------- */

START_TEST(hooks_from_lua) {
  channel(1, "debug.sethook(function() hooked = true end, '', 1)", NULL,
          "local h = debug.gethook() return tostring(h)", SAFE_ANY);
}
END_TEST

static void hook_fn(lua_State *L, lua_Debug *ar) {
  (void)L;
  (void)ar;
}

START_TEST(hooks_from_c) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  lua_sethook(L, hook_fn, LUA_MASKCALL | LUA_MASKCOUNT, 10);
  luapool_release(p, L);
  L = util_acquire(p);
  /* the host's hook is gone; what is left is luapool's own count hook (budgets, interrupts) */
  ck_assert(lua_gethook(L) != hook_fn);
  ck_assert_int_eq(lua_gethookmask(L), LUA_MASKCOUNT);
  util_run(L, "assert(debug == nil or debug.gethook() == nil)");
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(warn_switch) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  util_run(L, "warn('@on') warn('planted ', 'warning')");
  ck_assert(util_log_has("Lua warning: planted warning"));
  luapool_release(p, L);
  L = util_acquire(p);
  util_run(L, "warn('user B warning')");
  ck_assert(!util_log_has("user B warning")); /* warnings are off again, as on a new state */
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* A request logs at most 16 warnings and a line that says the rest were dropped; the next
   request starts again from none. */
START_TEST(warnings_are_capped_per_request) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  int before = util_log_count();
  util_run(L, "warn('@on') for i = 1, 100 do warn('capped ', tostring(i), '.') end");
  ck_assert_int_eq(util_log_count() - before, 17);
  ck_assert(util_log_has("capped 16."));
  ck_assert(!util_log_has("capped 17."));
  ck_assert(util_log_has("more warnings in this request dropped"));
  luapool_release(p, L);
  L = util_acquire(p);
  before = util_log_count();
  util_run(L, "warn('@on') warn('after the cap')");
  ck_assert_int_eq(util_log_count() - before, 1);
  ck_assert(util_log_has("after the cap"));
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(values_left_on_the_stack) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  lua_pushliteral(L, "left behind");
  lua_newtable(L);
  luapool_release(p, L);
  L = util_acquire(p);
  ck_assert_int_eq(lua_gettop(L), 0);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_big_heap_is_not_handed_out) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.bloat_kb = 4096;
  luapool *p = util_pool(&cfg);
  lua_State *A = util_acquire(p);
  util_run(A, "big = {} for i = 1, 8 do big[i] = string.rep('x', 1 << 20) .. i end "
              "local garbage = {} for i = 1, 1e5 do garbage[i] = {i} end");
  ck_assert_int_gt(util_eval_int(A, "return math.floor(collectgarbage('count'))"), 8192);
  luapool_release(p, A);
  lua_State *B = util_acquire(p);
  ck_assert_ptr_eq(B, A); /* kept, since its own data is small once the reset has run */
  ck_assert_int_le(util_eval_int(B, "return math.floor(collectgarbage('count'))"), 4096);
  luapool_release(p, B);
  ck_assert_uint_eq(util_stats(p).bloated, 0);
  luapool_destroy(p);
}
END_TEST

/* ---- what on_create set up is pristine ---------------------------------------------------------- */

static int on_create_host(lua_State *L, void *ud) {
  (void)ud;
  lua_pushcfunction(L, ghost);
  lua_setglobal(L, "host_fn");
  return luaL_dostring(L, "local n = 0 function counter() n = n + 1 return n end "
                          "config = {limits = {depth = 3}, name = 'svc'}") != LUA_OK;
}

START_TEST(on_create_state_survives_and_is_restored) {
  luapool *p = pool_with(util_profiles[_i], on_create_host, NULL);
  for (int round = 0; round < 3; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, "return host_fn() == 'ghost' and counter() == 1 and "
                                      "config.limits.depth == 3"),
                     1);
    run(L, "counter() counter() host_fn = nil config.limits.depth = 99 config.name = 'x'");
    luapool_release(p, L);
  }
  ck_assert_uint_eq(util_stats(p).created, 1);
  luapool_destroy(p);
}
END_TEST

/*
** Values that rawequal calls equal but a script tells apart (-0.0 and 0.0 by 1/x, 0 and 0.0 by
** math.type): the restore compares what it puts back by fingerprint.  Each round changes the
** recorded table zeros one way: values only (the restore's one traversal), a recorded key removed
** too (its copy put back whole), keys added and removed, and nothing (the state as recorded).
** LUAPOOL_LIBS_ALL, where a request writes on_create's tables.
*/
static const char on_create_zeros[] =
    "zeros = {pos = 0.0, int = 0, name = 'n', [1] = 0.0, [2] = 7}";

START_TEST(restored_values_that_rawequal_cannot_tell_apart) {
  static const char *const plants[] = {
      "zeros.pos = -0.0 zeros.int = 0.0 zeros[1] = -0.0",
      "zeros.name = nil zeros.pos = -0.0 zeros[2] = nil",
      "zeros.extra = 1 zeros[3] = 3 zeros.int = nil for i = 1, 40 do zeros['k' .. i] = i end",
      "",
  };
  static const char look[] = "return 1 / zeros.pos == math.huge and math.type(zeros.int) == "
                             "'integer' and zeros.name == 'n' and 1 / zeros[1] == math.huge and "
                             "zeros[2] == 7 and zeros.extra == nil and zeros[3] == nil and "
                             "zeros.k40 == nil and #zeros == 2";
  luapool *p = pool_running(LUAPOOL_LIBS_ALL, on_create_zeros);
  for (int round = 0; round < 2; round++)
    for (size_t i = 0; i < sizeof plants / sizeof plants[0]; i++) {
      lua_State *L = util_acquire(p);
      ck_assert_msg(util_eval_int(L, look) == 1, "before plant %zu (round %d)", i, round);
      ck_assert_msg(run(L, plants[i]), "plant %zu failed", i);
      luapool_release(p, L);
    }
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, look), 1);
  luapool_release(p, L);
  expect_one_state_kept(p);
}
END_TEST

/*
** The restore against random requests: on_create leaves a table of 40 mixed entries (integers,
** floats, -0.0, strings short and long, booleans, tables, an array part); each round a request
** makes 1 to 12 random changes to it (set a key that is there, add one, remove one, with values
** that rawequal confuses among them), and the next request finds it exactly as on_create left it:
** every key, every value by %q (which tells -0.0 from 0.0 and 0 from 0.0) and by identity for
** tables, and traversal by next() visiting each entry once.  LUAPOOL_LIBS_ALL, where requests
** write on_create's tables; make check runs it with the table image in verify mode.
*/
static const char on_create_mixed[] =
    "local t1, t2 = {}, {} mixed_t1, mixed_t2 = t1, t2\n"
    "mixed = {1, 2.5, -0.0, 'a', true}\n"
    "for i = 1, 35 do\n"
    "  local k = ({'k' .. i, i + 100, i + 0.5, ('long'):rep(12) .. i})[i % 4 + 1]\n"
    "  mixed[k] = ({i, i + 0.0, -0.0, 's' .. i, false, t1, t2, ('v'):rep(50)})[i % 8 + "
    "1]\n"
    "end";

static const char mixed_dump[] =
    "local function q(v) if v == mixed_t1 then return 't1' elseif v == mixed_t2 then return 't2'"
    " elseif type(v) == 'table' then return 'table?' end"
    " local ok, s = pcall(string.format, '%q', v) return ok and s or tostring(v) end"
    " local keys, seen = {}, {}"
    " for k in next, mixed do local s = q(k) if seen[s] then return 'twice: ' .. s end"
    " seen[s] = true keys[#keys + 1] = s .. '=' .. q(mixed[k]) end"
    " table.sort(keys) return #keys .. ':' .. table.concat(keys, ',')";

START_TEST(the_restore_against_random_requests) {
  luapool *p = pool_running(LUAPOOL_LIBS_ALL, on_create_mixed);
  char want[8192], got[8192], plant[1024];
  lua_State *L = util_acquire(p);
  eval(L, mixed_dump, want, sizeof want);
  ck_assert_msg(strncmp(want, "40:", 3) == 0, "on_create's table: %s", want);
  luapool_release(p, L);
  unsigned seed = 12345;
  for (int round = 0; round < 200; round++) {
    seed = seed * 1103515245u + 12345u;
    snprintf(plant, sizeof plant,
             "local x = %u local function r(n) x = (x * 1103515245 + 12345) %% 2147483648"
             " return x %% n + 1 end"
             " local keys = {} for k in pairs(mixed) do keys[#keys + 1] = k end"
             " local vals = {0, 0.0, -0.0, 1, 1.0, 'k1', ('long'):rep(12) .. '1', true, false,"
             " mixed_t1, mixed_t2, {}, 0/0, 1/0}"
             " for _ = 1, r(12) do local op = r(3)"
             "  if op == 1 then mixed[keys[r(#keys)]] = vals[r(#vals)]"
             "  elseif op == 2 then mixed['new' .. r(50)] = vals[r(#vals)]"
             "  else mixed[keys[r(#keys)]] = nil end end",
             seed >> 1);
    L = util_acquire(p);
    ck_assert_msg(run(L, plant), "round %d: the plant failed", round);
    luapool_release(p, L);
    L = util_acquire(p);
    eval(L, mixed_dump, got, sizeof got);
    ck_assert_msg(strcmp(got, want) == 0, "round %d: after the reset\n%s\nnot\n%s", round, got,
                  want);
    luapool_release(p, L);
  }
  ck_assert_uint_ge(util_stats(p).restored, 190);
  expect_one_state_kept(p);
}
END_TEST

/*
** An on_create that leaves more objects pending at once than the walk's to-do list keeps on the
** check thread's stack (LP_TODO_ON_STACK pairs, lib/snapshot.c): the rest go to its spill
** table, and every one of them is still walked.  Under LIBS_ALL the inner tables are recorded,
** so a request's writes to the last ones (pushed last, spilled) are put back; under the sandbox
** they are frozen, so the writes are refused.
*/
static const char on_create_wide[] = "wide = {} for i = 1, 6000 do wide[i] = {i} end";

START_TEST(a_wide_on_create_is_walked_whole) {
  luapool *p = pool_running(util_profiles[_i], on_create_wide);
  static const char *const write =
      "local n = 0 for _, i in ipairs({1, 3000, 4500, 5999, 6000}) do"
      " if pcall(function() wide[i][1] = 'x' wide[i].extra = true end) then n = n + 1 end end"
      " return n";
  static const char *const pristine =
      "for i = 1, 6000 do local t = wide[i] if t[1] ~= i or t.extra ~= nil then return 0 end end"
      " return 1";
  for (int round = 0; round < 2; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, pristine), 1);
    ck_assert_int_eq(util_eval_int(L, write), util_profiles[_i] == LUAPOOL_LIBS_ALL ? 5 : 0);
    luapool_release(p, L);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.created, 1);
  ck_assert_uint_eq(st.tainted, 0);
  luapool_destroy(p);
}
END_TEST

/* ---- the chunk cache ----------------------------------------------------------------------------- */

static const char handler[] = "hits = (hits or 0) + 1 return hits";

START_TEST(chunk_cache_survives_reset_and_sees_fresh_globals) {
  luapool *p = pool_of(_i);
  for (int round = 0; round < 3; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(luapool_load(L, "=handler", handler, strlen(handler)), LUA_OK);
    ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
    ck_assert_int_eq(lua_tointeger(L, -1), 1); /* never a previous user's `hits` */
    luapool_release(p, L);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.cache_misses, 1);
  ck_assert_uint_eq(st.cache_hits, 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(chunk_cache_recompiles_changed_source) {
  luapool *p = pool_of(_i);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(luapool_load(L, "=h", "return 1", 8), LUA_OK);
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  ck_assert_int_eq(lua_tointeger(L, -1), 1);
  lua_settop(L, 0);
  ck_assert_int_eq(luapool_load(L, "=h", "return 2", 8), LUA_OK); /* same name and length */
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  ck_assert_int_eq(lua_tointeger(L, -1), 2);
  lua_settop(L, 0);
  ck_assert_int_eq(luapool_load(L, "=h", "return (", 9), LUA_ERRSYNTAX);
  ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "unexpected symbol"));
  lua_settop(L, 0);
  ck_assert_int_eq(luapool_load(L, "=h", "return 2", 8), LUA_OK);
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  ck_assert_int_eq(lua_tointeger(L, -1), 2);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(chunk_cache_env_cannot_be_kept) {
  /* A chunk that replaces its own _ENV: the next run still gets the clean globals. */
  static const char src[] = "local before = x x = 1 _ENV = {x = 'ghost'} return before";
  luapool *p = pool_of(_i);
  for (int round = 0; round < 2; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(luapool_load(L, "=env", src, strlen(src)), LUA_OK);
    ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
    ck_assert(lua_isnil(L, -1));
    luapool_release(p, L);
  }
  luapool_destroy(p);
}
END_TEST

START_TEST(chunk_cache_evicts_and_stays_correct) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.chunk_cache = 2;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  for (int round = 0; round < 3; round++)
    for (int k = 0; k < 5; k++) {
      char name[16], src[32];
      snprintf(name, sizeof name, "=c%d", k);
      snprintf(src, sizeof src, "return %d", k * 10);
      ck_assert_int_eq(luapool_load(L, name, src, strlen(src)), LUA_OK);
      ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
      ck_assert_int_eq(lua_tointeger(L, -1), k * 10);
      lua_settop(L, 0);
    }
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* The cache's entries grow as chunks are kept (4, 8, ... up to chunk_cache, chunk.c): every
   chunk up to the size stays cached across releases, one more evicts one. */
START_TEST(chunk_cache_grows_to_its_size) {
  static const unsigned caps[] = {5, 32};
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    luapool_config cfg;
    util_config_libs(&cfg, util_profiles[_i]);
    cfg.chunk_cache = caps[c];
    luapool *p = util_pool(&cfg);
    for (int round = 0; round < 3; round++) {
      lua_State *L = util_acquire(p);
      for (unsigned k = 0; k < caps[c] + (round == 2); k++) {
        char name[16], src[32];
        snprintf(name, sizeof name, "=c%u", k);
        snprintf(src, sizeof src, "return %u", k * 10);
        ck_assert_int_eq(luapool_load(L, name, src, strlen(src)), LUA_OK);
        ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
        ck_assert_int_eq(lua_tointeger(L, -1), (lua_Integer)k * 10);
        lua_settop(L, 0);
      }
      luapool_release(p, L);
    }
    luapool_stats st = util_stats(p);
    ck_assert_uint_eq(st.cache_misses, caps[c] + 1); /* each once, and the one past the size */
    ck_assert_uint_eq(st.cache_hits, 2 * caps[c]);
    ck_assert_uint_eq(st.created, 1);
    luapool_destroy(p);
  }
}
END_TEST

static Suite *reset_suite(void) {
  Suite *s = suite_create("reset");
  TCase *tc = tcase_create("globals");
  tcase_add_loop_test(tc, globals_added, 0, 2);
  tcase_add_loop_test(tc, globals_changed, 0, 2);
  tcase_add_loop_test(tc, builtins_set_to_nil, 0, 2);
  tcase_add_loop_test(tc, globals_metatable, 0, 2);
  tcase_add_loop_test(tc, globals_metatable_from_c, 0, 2);
  tcase_add_loop_test(tc, globals_G_field, 0, 2);
  tcase_add_loop_test(tc, many_globals_taint_the_state, 0, 2);
  tcase_add_loop_test(tc, a_table_grown_and_emptied_by_the_request_closes_the_state, 0, 6);
  suite_add_tcase(s, tc);
  tc = tcase_create("libraries");
  tcase_add_loop_test(tc, library_field_changed, 0, 2);
  tcase_add_loop_test(tc, library_field_added, 0, 2);
  tcase_add_loop_test(tc, library_field_removed, 0, 2);
  tcase_add_loop_test(tc, library_field_rawset, 0, 2);
  tcase_add_loop_test(tc, library_metatable, 0, 2);
  tcase_add_loop_test(tc, library_global_replaced, 0, 2);
  tcase_add_test(tc, library_changed_from_c);
  suite_add_tcase(s, tc);
  tc = tcase_create("metatables");
  tcase_add_loop_test(tc, string_metatable_index, 0, 2);
  tcase_add_loop_test(tc, string_metatable_arithmetic, 0, 2);
  tcase_add_loop_test(tc, string_metatable_key_added, 0, 2);
  tcase_add_loop_test(tc, string_metatable_from_c, 0, 2);
  tcase_add_test(tc, type_metatables_with_debug);
  tcase_add_loop_test(tc, type_metatables_from_c, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("registry");
  tcase_add_loop_test(tc, registry_entries, 0, 2);
  tcase_add_test(tc, registry_from_lua_with_debug);
  tcase_add_test(tc, package_tables);
  suite_add_tcase(s, tc);
  tc = tcase_create("random");
  tcase_add_loop_test(tc, random_is_reseeded_at_every_reset, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("collector");
  tcase_add_loop_test(tc, collector_stopped, 0, 2);
  tcase_add_loop_test(tc, collector_mode_and_parameters, 0, 2);
  tcase_add_loop_test(tc, collector_running_in_on_create_and_after, 0, 2);
  tcase_add_loop_test(tc, finalizers_never_run_in_the_next_turn, 0, 2);
  tcase_add_loop_test(tc, gc_added_after_setmetatable_never_runs, 0, 2);
  tcase_add_loop_test(tc, close_handlers_of_suspended_coroutines, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("thread");
  tcase_add_test(tc, hooks_from_lua);
  tcase_add_loop_test(tc, hooks_from_c, 0, 2);
  tcase_add_loop_test(tc, warn_switch, 0, 2);
  tcase_add_loop_test(tc, warnings_are_capped_per_request, 0, 2);
  tcase_add_loop_test(tc, values_left_on_the_stack, 0, 2);
  tcase_add_loop_test(tc, a_big_heap_is_not_handed_out, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("pristine");
  tcase_add_loop_test(tc, on_create_state_survives_and_is_restored, 0, 2);
  tcase_add_test(tc, restored_values_that_rawequal_cannot_tell_apart);
  tcase_add_test(tc, the_restore_against_random_requests);
  tcase_add_loop_test(tc, a_wide_on_create_is_walked_whole, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("chunk_cache");
  tcase_add_loop_test(tc, chunk_cache_survives_reset_and_sees_fresh_globals, 0, 2);
  tcase_add_loop_test(tc, chunk_cache_recompiles_changed_source, 0, 2);
  tcase_add_loop_test(tc, chunk_cache_env_cannot_be_kept, 0, 2);
  tcase_add_loop_test(tc, chunk_cache_grows_to_its_size, 0, 2);
  tcase_add_loop_test(tc, chunk_cache_evicts_and_stays_correct, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return util_run_suite(reset_suite());
}
