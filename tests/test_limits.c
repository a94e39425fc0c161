/*
** Resource limits: mem_limit, the instruction and time budget (config and per acquire), deep
** recursion.  Each hostile script fails with a clear error, and the pool and that very state stay
** healthy for the next request.
*/
#include <string.h>

#include "util.h"

/* Runs chunk expecting an error; returns the message in a static buffer. */
static const char *fails_with(lua_State *L, const char *chunk) {
  const char *msg = util_error_of(L, "=hostile", chunk);
  ck_assert_msg(msg[0] != '\0', "the hostile script succeeded: %s", chunk);
  return msg;
}

/* The next request on the same state works normally. */
static void healthy(luapool *p, lua_State *was) {
  lua_State *L = util_acquire(p);
  ck_assert_ptr_eq(L, was);
  /* no clock in the probe: a loaded machine (a sanitizer build, say) must not fail it */
  ck_assert_int_eq(luapool_set_budget(L, 0, 0), LUAPOOL_OK);
  ck_assert_int_eq(util_eval_int(L, "local t = {} for i = 1, 100000 do t[i] = i end "
                                    "return #t + #string.rep('x', 1000)"),
                   101000);
  luapool_release(p, L);
}

static luapool *pool_with(int profile, size_t mem_limit, uint64_t instructions, unsigned ms) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[profile]);
  cfg.mem_limit = mem_limit;
  cfg.budget_instructions = instructions;
  cfg.budget_ms = ms;
  return util_pool(&cfg);
}

START_TEST(memory_bomb) {
  static const char *const bombs[] = {
      "local t = {} while true do t[#t + 1] = string.rep('x', 1 << 16) .. #t end",
      "local s = string.rep('x', 1 << 30)", /* one long C call: bounded by mem_limit */
      "local t = {} for i = 1, 1e9 do t[i] = i end",
  };
  luapool *p = pool_with(_i, (size_t)16 << 20, 0, 0);
  for (size_t k = 0; k < sizeof bombs / sizeof bombs[0]; k++) {
    lua_State *L = util_acquire(p);
    ck_assert_ptr_nonnull(strstr(fails_with(L, bombs[k]), "not enough memory"));
    luapool_release(p, L);
    healthy(p, L);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.mem_errors, 3);
  ck_assert_uint_eq(st.created, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(infinite_loop) {
  luapool *p = pool_with(_i, 0, 1000000, 0);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(fails_with(L, "while true do end"), "budget exceeded (instructions)"));
  luapool_release(p, L);
  healthy(p, L);
  ck_assert_uint_eq(util_stats(p).budget_exceeded, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(infinite_loop_inside_pcall) {
  static const char *const loops[] = {
      "while true do pcall(function() while true do end end) end",
      "while true do local ok, e = pcall(error, 'x') end",
      ("local co = coroutine.wrap(function() while true do pcall(coroutine.yield) end end) "
       "while true do pcall(co) end"),
  };
  luapool *p = pool_with(_i, 0, 1000000, 0);
  for (size_t k = 0; k < sizeof loops / sizeof loops[0]; k++) {
    lua_State *L = util_acquire(p);
    ck_assert_ptr_nonnull(strstr(fails_with(L, loops[k]), "budget exceeded"));
    /* it keeps failing for the rest of this acquire... */
    ck_assert_ptr_nonnull(strstr(fails_with(L, "local x = 1 x = x + 1"), "budget exceeded"));
    luapool_release(p, L);
    healthy(p, L); /* ...and not in the next one */
  }
  ck_assert_uint_eq(util_stats(p).budget_exceeded, 3);
  luapool_destroy(p);
}
END_TEST

START_TEST(deadline) {
  luapool *p = pool_with(_i, 0, 0, 50);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(fails_with(L, "while true do end"), "budget exceeded (time)"));
  luapool_release(p, L);
  healthy(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(budget_set_for_one_acquire) {
  luapool *p = pool_with(_i, 0, 0, 0);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(luapool_set_budget(L, 10000, 0), LUAPOOL_OK);
  ck_assert_ptr_nonnull(strstr(fails_with(L, "for i = 1, 1e6 do end"), "budget exceeded"));
  luapool_release(p, L);
  /* the next acquire has the config's budget: none */
  L = util_acquire(p);
  util_run(L, "for i = 1, 1e6 do end");
  /* set_budget(0, 0) lifts a budget for the rest of an acquire */
  ck_assert_int_eq(luapool_set_budget(L, 10000, 0), LUAPOOL_OK);
  ck_assert_int_eq(luapool_set_budget(L, 0, 0), LUAPOOL_OK);
  util_run(L, "for i = 1, 1e6 do end");
  luapool_release(p, L);
  ck_assert_int_eq(luapool_set_budget(NULL, 1, 1), LUAPOOL_EINVAL);
  luapool_destroy(p);
}
END_TEST

START_TEST(budget_is_per_acquire) {
  /* 60% of the budget in each of several acquires: never exceeded */
  luapool *p = pool_with(_i, 0, 1000000, 0);
  for (int round = 0; round < 4; round++) {
    lua_State *L = util_acquire(p);
    util_run(L, "for i = 1, 150000 do end"); /* about 600,000 instructions */
    luapool_release(p, L);
  }
  ck_assert_uint_eq(util_stats(p).budget_exceeded, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(deep_recursion) {
  static const char *const deep[] = {
      "local function f(n) return 1 + f(n + 1) end f(1)",
      "local function f() return select(2, pcall(f)) end error(f())",
      "local t = setmetatable({}, {__index = function(t, k) return t[k + 1] end}) return t[1]",
      "local s = string.rep('(', 100000) assert(load('return ' .. s))()",
  };
  /* with Lua's own limit, Lua's messages; with the stack's cap (the default), a growth past it
     is Lua's memory error */
  for (int capped = 0; capped < 2; capped++) {
    luapool_config cfg;
    util_config_libs(&cfg, util_profiles[_i]);
    if (!capped)
      cfg.stack_limit = 0;
    luapool *p = util_pool(&cfg);
    for (size_t k = 0; k < sizeof deep / sizeof deep[0]; k++) {
      lua_State *L = util_acquire(p);
      const char *msg = fails_with(L, deep[k]);
      ck_assert_msg(strstr(msg, "stack overflow") != NULL || strstr(msg, "overflow") != NULL ||
                        strstr(msg, "too many") != NULL || strstr(msg, "C levels") != NULL ||
                        (capped && strcmp(msg, "not enough memory") == 0),
                    "unexpected error: %s", msg);
      ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_OK); /* no mem_limit hit */
      luapool_release(p, L);
      healthy(p, L);
    }
    luapool_destroy(p);
  }
}
END_TEST

/* How deep a plain recursion gets on the pool's state before its error. */
static long long recursion_depth(luapool *p) {
  lua_State *L = util_acquire(p);
  long long d = util_eval_int(L, "local d = 0 local function f() d = d + 1 return f() + 1 end "
                                 "assert(not pcall(f)) return d");
  luapool_release(p, L);
  return d;
}

/*
** stack_limit (doc/security.md, class 22): a thread's stack grows to at most that many slots and
** to at least half as many; the C functions that push one result per element refuse past it,
** with Lua's messages; the state serves the next request; below 1024 the config is refused.
*/
START_TEST(the_stack_stops_at_its_cap) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[_i]);
  cfg.stack_limit = 100;
  luapool *bad = NULL;
  ck_assert_int_eq(luapool_create(&cfg, &bad), LUAPOOL_EINVAL);
  ck_assert_ptr_null(bad);

  cfg.stack_limit = 4096;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  long long d =
      util_eval_int(L, "local d = 0 local function f() d = d + 1 return f() + 1 end "
                       "local ok, e = pcall(f) assert(not ok and e == 'not enough memory', e) "
                       "return d");
  ck_assert_int_lt(d, 4096); /* a frame takes a slot at least */
  ck_assert_int_ge(d, 2048 / 8);
  ck_assert_int_eq(util_eval_int(L, "local a = {} for i = 1, 5000 do a[i] = i end "
                                    "return select('#', table.unpack(a, 1, 1500))"),
                   1500);
  ck_assert_str_eq(util_error_of(L, "=unpack",
                                 "local a = {} for i = 1, 5000 do a[i] = i end "
                                 "return table.unpack(a)"),
                   "unpack:1: too many results to unpack");
  ck_assert_str_eq(util_error_of(L, "=unpack",
                                 "local a = setmetatable({}, {__index = function() return 1 end}) "
                                 "return table.unpack(a, 1, 5000)"),
                   "unpack:1: too many results to unpack");
  ck_assert_str_eq(util_error_of(L, "=byte", "return ('x'):rep(5000):byte(1, -1)"),
                   "byte:1: stack overflow (string slice too long)");
  ck_assert_str_eq(util_error_of(L, "=cp", "return utf8.codepoint(('x'):rep(5000), 1, -1)"),
                   "cp:1: stack overflow (string slice too long)");
  ck_assert_int_eq(util_eval_int(L, "return #{('x'):rep(5000):byte(1, 1500)}"), 1500);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_OK); /* none of it was a mem_limit hit */
  luapool_release(p, L);
  healthy(p, L);
  luapool_destroy(p);

  cfg.stack_limit = 0; /* Lua's own: far deeper */
  p = util_pool(&cfg);
  ck_assert_int_gt(recursion_depth(p), 100000);
  luapool_destroy(p);
}
END_TEST

/*
** Found by tests/soak: a request that fills mem_limit leaves its garbage (below bloat_kb the
** reset does not collect), so the next request's first allocation is refused, Lua collects in
** full and retries, and the retry succeeds.  That request hit no memory error: its status stays
** LUAPOOL_STATUS_OK and mem_errors does not count it.  A memory error the script catches still
** counts.
*/
START_TEST(refusal_cured_by_collection_is_no_memory_error) {
  luapool *p = pool_with(_i, (size_t)2 << 20, 0, 0);
  lua_State *L = util_acquire(p);
  ck_assert_ptr_nonnull(strstr(fails_with(L, "local t = {} for i = 1, 1e9 do "
                                             "t[i] = string.rep('x', 1000) .. i end"),
                               "not enough memory"));
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_MEMORY);
  luapool_release(p, L);
  for (int k = 0; k < 2; k++) {
    L = util_acquire(p);
    const char *msg = util_error_of(L, "=after", k == 0 ? "local t = {} for i = 1, 100 do "
                                                          "t[i] = {i} end return #t"
                                                        : "error('plain')");
    ck_assert_str_eq(msg, k == 0 ? "" : "after:1: plain");
    ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_OK);
    luapool_release(p, L);
  }
  L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return pcall(string.rep, 'x', 4 << 20) and 1 or 0"), 0);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_MEMORY); /* caught, still counted */
  luapool_release(p, L);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.mem_errors, 2);
  ck_assert_uint_eq(st.created, 1);
  luapool_destroy(p);
}
END_TEST

static Suite *limits_suite(void) {
  Suite *s = suite_create("limits");
  TCase *tc = tcase_create("limits");
  tcase_add_loop_test(tc, memory_bomb, 0, 2);
  tcase_add_loop_test(tc, infinite_loop, 0, 2);
  tcase_add_loop_test(tc, infinite_loop_inside_pcall, 0, 2);
  tcase_add_loop_test(tc, budget_set_for_one_acquire, 0, 2);
  tcase_add_loop_test(tc, budget_is_per_acquire, 0, 2);
  tcase_add_loop_test(tc, deep_recursion, 0, 2);
  tcase_add_loop_test(tc, the_stack_stops_at_its_cap, 0, 2);
  tcase_add_loop_test(tc, refusal_cured_by_collection_is_no_memory_error, 0, 2);
  suite_add_tcase(s, tc);
  /* Tagged timing: a 50 ms budget must let healthy()'s loop finish, which needs native speed
     (.ci/run skips it under valgrind). */
  tc = tcase_create("deadline");
  tcase_set_tags(tc, "timing");
  tcase_add_loop_test(tc, deadline, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return util_run_suite(limits_suite());
}
