/*
** The sandbox profile (LUAPOOL_LIBS_SAFE): each removal, the read-only libraries, text-only
** load, no __gc, require of preloaded modules only, the os opt-in; and that LUAPOOL_LIBS_ALL
** keeps what the sandbox takes away.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "util.h"

static luapool *pool_with(unsigned libs, int (*on_create)(lua_State *, void *)) {
  luapool_config cfg;
  util_config_libs(&cfg, libs);
  cfg.on_create = on_create;
  return util_pool(&cfg);
}

/* Runs chunk, named "=t"; returns its error message ("" when it succeeded) in a static buffer. */
static const char *error_of(lua_State *L, const char *chunk) {
  return util_error_of(L, "=t", chunk);
}

START_TEST(what_the_sandbox_removes) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, NULL);
  lua_State *L = util_acquire(p);
  static const char *const absent[] = {"dofile", "loadfile", "print", "io", "os", "debug",
                                       "package", "string.dump", "newproxy", "unpack"};
  for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
    char chunk[128];
    snprintf(chunk, sizeof chunk, "return %s == nil", absent[i]);
    ck_assert_msg(util_eval_int(L, chunk) == 1, "the sandbox has %s", absent[i]);
  }
  static const char *const present[] = {
      "assert",   "error",   "getmetatable", "ipairs",       "load",      "next",
      "pairs",    "pcall",   "rawequal",     "rawget",       "rawlen",    "rawset",
      "select",   "setmetatable", "tonumber", "tostring",    "type",      "xpcall",
      "warn",     "require", "collectgarbage", "coroutine.wrap", "table.sort", "string.format",
      "math.floor", "utf8.char", "math.random"};
  for (size_t i = 0; i < sizeof present / sizeof present[0]; i++) {
    char chunk[128];
    snprintf(chunk, sizeof chunk, "return type(%s) == 'function'", present[i]);
    ck_assert_msg(util_eval_int(L, chunk) == 1, "the sandbox lacks %s", present[i]);
  }
  ck_assert_str_eq(error_of(L, "assert(_VERSION == 'Lua 5.4') assert(_G._G == _G)"), "");
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(os_time_is_an_opt_in) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE | LUAPOOL_LIB_OS_TIME, NULL);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return type(os.time()) == 'number' and "
                                    "type(os.clock()) == 'number' and "
                                    "os.date('!%Y', 0) == '1970' and os.difftime(2, 1) == 1"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "return os.execute == nil and os.getenv == nil and "
                                    "os.exit == nil and os.remove == nil and os.rename == nil "
                                    "and os.tmpname == nil and os.setlocale == nil"),
                   1);
  ck_assert_ptr_nonnull(strstr(error_of(L, "os.exit = print"), "read-only"));
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(config_refuses_the_sandbox_with_outside_libraries) {
  static const unsigned bad[] = {LUAPOOL_LIB_IO, LUAPOOL_LIB_OS, LUAPOOL_LIB_DEBUG,
                                 LUAPOOL_LIB_PACKAGE};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    luapool_config cfg;
    util_config(&cfg);
    cfg.libs = LUAPOOL_LIBS_SAFE | bad[i];
    luapool *p = NULL;
    ck_assert_int_eq(luapool_create(&cfg, &p), LUAPOOL_EINVAL);
    ck_assert_ptr_null(p);
  }
  ck_assert(util_log_has("LUAPOOL_LIB_SANDBOX excludes"));
}
END_TEST

START_TEST(libraries_are_read_only_but_readable) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, NULL);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(error_of(L, "string.rep = nil"),
                               "cannot set field 'rep': the table is read-only"));
  ck_assert_ptr_nonnull(strstr(error_of(L, "table.insert(math, 1)"), "read-only"));
  ck_assert_ptr_nonnull(strstr(error_of(L, "rawset(string, 'x', 1)"), "read-only"));
  ck_assert_ptr_nonnull(strstr(error_of(L, "setmetatable(string, {})"), "protected metatable"));
  ck_assert_ptr_nonnull(
      strstr(error_of(L, "getmetatable('').__index = {}"), "attempt to index a boolean"));
  ck_assert_int_eq(util_eval_int(L, "local n = 0 for k, v in pairs(string) do "
                                    "assert(type(v) == 'function') n = n + 1 end return n"),
                   16); /* string.dump is gone */
  ck_assert_int_eq(util_eval_int(L, "return getmetatable(string) == false and "
                                    "getmetatable('') == false and rawget(string, 'len') == nil"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "return ('%d'):format(7) == '7' and ('x'):rep(3) == 'xxx'"),
                   1);
  /* rawset still works on the request's own tables and on _G */
  ck_assert_str_eq(error_of(L, "local t = {} rawset(t, 1, 2) assert(t[1] == 2) "
                               "rawset(_G, 'g', 1) assert(g == 1)"),
                   "");
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(load_reads_text_only) {
  /* a binary chunk, made on a stock state */
  lua_State *S = luaL_newstate();
  luaL_openlibs(S);
  ck_assert_int_eq(luaL_dostring(S, "return string.dump(function() return 'ghost' end)"), LUA_OK);
  size_t len;
  const char *bin = lua_tolstring(S, -1, &len);

  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, NULL);
  lua_State *L = util_acquire(p);
  lua_pushlstring(L, bin, len);
  lua_setglobal(L, "bin");
  lua_close(S);
  ck_assert_int_eq(util_eval_int(L, "local f, err = load(bin) "
                                    "return f == nil and err:find('binary chunk') ~= nil"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "local f, err = load(bin, 'b', 'b') "
                                    "return f == nil and err:find('text only') ~= nil"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "local i, parts = 0, {'return ', '4', '2'} "
                                    "return load(function() i = i + 1 return parts[i] end)()"),
                   42);
  ck_assert_int_eq(util_eval_int(L, "return load('return x', 'c', 't', {x = 5})()"), 5);
  ck_assert_int_eq(util_eval_int(L, "local f, err = load('return (') "
                                    "return f == nil and err:find('unexpected') ~= nil"),
                   1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(finalizers_are_refused) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, NULL);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(error_of(L, "setmetatable({}, {__gc = tostring})"),
                               "__gc metamethods are not allowed in the sandbox"));
  ck_assert_ptr_nonnull(strstr(error_of(L, "setmetatable({}, {__gc = false})"), "__gc"));
  ck_assert_str_eq(error_of(L, "local t <close> = setmetatable({}, {__close = function() end})"),
                   "");
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

static int mod_loader(lua_State *L) {
  lua_newtable(L);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "count");
  lua_newtable(L);
  lua_setfield(L, -2, "items");
  return 1;
}

static int on_create_modules(lua_State *L, void *ud) {
  (void)ud;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, mod_loader);
  lua_setfield(L, -2, "mod");
  lua_pushcfunction(L, mod_loader);
  lua_setfield(L, -2, "early");
  lua_pop(L, 1);
  /* a module on_create loads is part of the pristine state */
  return luaL_dostring(L, "early = require('early')") != LUA_OK;
}

START_TEST(require_loads_preloaded_modules_per_request) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, on_create_modules);
  for (int round = 0; round < 3; round++) {
    lua_State *L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, "local m = require('mod') assert(require('mod') == m) "
                                      "m.count = m.count + 1 table.insert(m.items, 1) "
                                      "return m.count + #m.items"),
                     2);
    ck_assert_ptr_nonnull(strstr(error_of(L, "require('io')"), "not found"));
    ck_assert_ptr_nonnull(strstr(error_of(L, "require('nothing')"), "not found"));
    ck_assert_int_eq(util_eval_int(L, "return require('early') == early and early.count == 0"),
                     1);
    ck_assert_ptr_nonnull(strstr(error_of(L, "early.count = 5"), "read-only"));
    ck_assert_ptr_nonnull(strstr(error_of(L, "early.items[1] = 5"), "read-only"));
    ck_assert_int_eq(util_eval_int(L, "return require('string') == string"), 1);
    luapool_release(p, L);
  }
  ck_assert_uint_eq(util_stats(p).created, 1);
  luapool_destroy(p);
}
END_TEST

static int on_create_userdata(lua_State *L, void *ud) {
  (void)ud;
  lua_newuserdatauv(L, 8, 0);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, mod_loader);
  lua_setfield(L, -2, "make");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "handle");
  return 0;
}

START_TEST(host_userdata_metatables_are_protected) {
  luapool *p = pool_with(LUAPOOL_LIBS_SAFE, on_create_userdata);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return getmetatable(handle) == false and "
                                    "type(handle.make) == 'function'"),
                   1);
  ck_assert_ptr_nonnull(strstr(error_of(L, "getmetatable(handle).__index.make = nil"),
                               "attempt to index a boolean"));
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(all_keeps_stock_lua) {
  luapool *p = pool_with(LUAPOOL_LIBS_ALL, NULL);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return type(io.write) == 'function' and "
                                    "type(os.execute) == 'function' and type(dofile) == "
                                    "'function' and type(string.dump) == 'function' and "
                                    "type(debug.getinfo) == 'function' and type(package.path) "
                                    "== 'string' and type(print) == 'function'"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "return type(getmetatable('')) == 'table' and "
                                    "getmetatable('').__index == string and "
                                    "rawget(string, 'len') == string.len"),
                   1);
  ck_assert_int_eq(util_eval_int(L, "return load(string.dump(function() return 7 end))()"), 7);
  ck_assert_int_eq(util_eval_int(L, "print = nil return print == nil"), 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

static Suite *sandbox_suite(void) {
  Suite *s = suite_create("sandbox");
  TCase *tc = tcase_create("profile");
  tcase_add_test(tc, what_the_sandbox_removes);
  tcase_add_test(tc, os_time_is_an_opt_in);
  tcase_add_test(tc, config_refuses_the_sandbox_with_outside_libraries);
  tcase_add_test(tc, libraries_are_read_only_but_readable);
  tcase_add_test(tc, load_reads_text_only);
  tcase_add_test(tc, finalizers_are_refused);
  tcase_add_test(tc, require_loads_preloaded_modules_per_request);
  tcase_add_test(tc, host_userdata_metatables_are_protected);
  tcase_add_test(tc, all_keeps_stock_lua);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return util_run_suite(sandbox_suite());
}
