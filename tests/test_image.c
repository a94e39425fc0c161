/*
** The reset's table image (lib/image.h): the probe accepts this Lua, make check runs in verify
** mode, every shape of change makes the image differ (it may call a changed table clean never),
** a random differential run against a check through the C API, and the reset's handling of a
** table whose bytes changed without its contents.
*/
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gimage.h"
#include "image.h"
#include "internal.h"
#include "sx.h"
#include "util.h"

/* The snapshot of the state L (acquired from p). */
static lp_snapshot *snapshot_of(luapool *p, lua_State *L) {
  lp_slot *s = lp_slot_check(&p->arena, L);
  ck_assert_ptr_nonnull(s);
  return &s->x->snapshot;
}

static int imaged_tables(const lp_snapshot *s) {
  int n = 0;
  for (int i = 0; i < s->ntab; i++)
    n += s->tab[i].img.t != NULL;
  return n;
}

/* LUAPOOL_TABLE_IMAGE set to value for a test; returns what to give image_env_restore. */
static char *image_env_set(const char *value) {
  const char *was = getenv("LUAPOOL_TABLE_IMAGE");
  char *saved = was != NULL ? strdup(was) : NULL;
  setenv("LUAPOOL_TABLE_IMAGE", value, 1);
  return saved;
}

static void image_env_restore(char *saved) {
  if (saved != NULL)
    setenv("LUAPOOL_TABLE_IMAGE", saved, 1);
  else
    unsetenv("LUAPOOL_TABLE_IMAGE");
  free(saved);
}

/* A pool of one LUAPOOL_LIBS_ALL state (each acquire gets the same one back). */
static luapool *one_all_state_pool(void) {
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_ALL);
  cfg.max_states = 1;
  return util_pool(&cfg);
}

START_TEST(the_probe_accepts_this_lua_and_make_check_verifies) {
  const char *env = getenv("LUAPOOL_TABLE_IMAGE");
  static const unsigned libs[] = {LUAPOOL_LIBS_SAFE, LUAPOOL_LIBS_ALL};
  for (int k = 0; k < 2; k++) {
    luapool_config cfg;
    util_config_libs(&cfg, libs[k]);
    luapool *p = util_pool(&cfg);
    lua_State *L = util_acquire(p);
    lp_snapshot *s = snapshot_of(p, L);
    if (!LP_IMAGE_BUILT || (env != NULL && strcmp(env, "off") == 0)) {
      ck_assert_int_eq(s->image, LP_IMAGE_OFF);
    } else {
      /* the probe passed on Debian's 5.4.4; make check asks for verify mode */
      ck_assert_int_eq(s->image,
                       env != NULL && strcmp(env, "verify") == 0 ? LP_IMAGE_VERIFY : LP_IMAGE_ON);
      ck_assert_int_gt(imaged_tables(s), 0);
    }
    /* the global image: built for 5.4.4 only, taken where the table images are */
    if (!LP_GIMAGE_BUILT || s->image == LP_IMAGE_OFF)
      ck_assert_ptr_null(s->gimage.g);
    else
      ck_assert_ptr_nonnull(s->gimage.g);
    luapool_release(p, L);
    luapool_destroy(p);
  }
}
END_TEST

/* With the image off, the reset walks, and still finds and undoes a change. */
START_TEST(off_in_the_environment_leaves_the_walk) {
  char *saved = image_env_set("off");
  luapool *p = one_all_state_pool();
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(snapshot_of(p, L)->image, LP_IMAGE_OFF);
  ck_assert_int_eq(imaged_tables(snapshot_of(p, L)), 0);
  ck_assert_ptr_null(snapshot_of(p, L)->gimage.g);
  util_run(L, "string.x = 1 math.pi = 3 table.insert = nil debug.setmetatable(1, {}) "
              "collectgarbage('stop')");
  luapool_release(p, L);
  L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "return (string.x == nil and math.pi > 3.14 and "
                                    "type(table.insert) == 'function' and getmetatable(1) == nil "
                                    "and collectgarbage('isrunning')) and 1 or 0"),
                   1);
  luapool_release(p, L);
  luapool_destroy(p);
  image_env_restore(saved);
}
END_TEST

/* ---- the image against shapes of change, on a bare state ------------------------------- */

static void run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK)
    ck_abort_msg("%s: %s", code, lua_tostring(L, -1));
}

/* Setup makes global T; its image is taken; change must make the image differ. */
static const struct {
  const char *setup, *change;
} changes[] = {
    {"T = {1, 2, 3}", "T[2] = 5"},
    {"T = {1, 2, 3}", "T[2] = 2.0"}, /* integer to float of the same value */
    {"T = {0.0}", "T[1] = -0.0"},    /* equal to Lua, not to math.type or 1/x */
    {"T = {0/0}", "T[1] = -(0/0)"},  /* another NaN */
    {"T = {true}", "T[1] = false"},
    {"T = {false}", "T[1] = nil"},
    {"T = {x = 'a'}", "T.x = 'b'"},
    {"T = {x = {}}", "T.x = {}"},      /* another table */
    {"T = {x = print}", "T.x = type"}, /* another light C function */
    {"T = {x = function() end}", "T.x = function() end"},
    {"T = {x = string.rep('a', 50)}", "T.x = string.rep('a', 50)"}, /* an equal long string */
    {"T = {x = 1}", "T.y = 2"},                                     /* a new key */
    {"T = {x = 1, y = 2}", "T.y = nil"},                            /* a key removed */
    {"T = {x = 1}", "for i = 1, 40 do T['k' .. i] = i end for i = 1, 40 do T['k' .. i] = nil end"},
    {"T = {1, 2, 3}", "T[4] = 4"}, /* an append */
    {"T = {1, 2, 3}", "T[3] = nil"},
    {"T = {1, 2, 3}", "table.insert(T, 1, 0)"},
    {"T = {1, 2, 3}", "table.remove(T, 1)"},
    {"T = {}", "T[100] = 1"}, /* an integer key in the node part */
    {"T = {[1.5] = 1}", "T[1.5] = 2"},
    {"T = {}", "setmetatable(T, {})"},
    {"T = setmetatable({}, {})", "setmetatable(T, {})"},
    {"T = setmetatable({}, {})", "setmetatable(T, nil)"},
    {"T = setmetatable({}, {__mode = 'v'}) T.a = {}", "collectgarbage() collectgarbage()"},
    {"T = setmetatable({}, {__mode = 'k'}) T[{}] = 1", "collectgarbage() collectgarbage()"},
    {"T = {x = 1, y = 2, z = 3}", "T.x, T.z = T.z, T.x"},
    {"T = {a = true}", "T.a = nil T.b = true"}, /* one key for another, maybe the same node */
};

START_TEST(every_shape_of_change_makes_the_image_differ) {
  if (!LP_IMAGE_BUILT)
    return;
  for (size_t c = 0; c < sizeof changes / sizeof changes[0]; c++) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    run(L, changes[c].setup);
    lua_getglobal(L, "T");
    lp_image im = {0};
    lp_image_take(&im, lua_topointer(L, -1));
    ck_assert_ptr_nonnull(im.t);
    ck_assert_msg(lp_image_same(&im), "%s: not the same right after the image", changes[c].setup);
    run(L, changes[c].change);
    ck_assert_msg(!lp_image_same(&im), "%s then %s: the image missed the change", changes[c].setup,
                  changes[c].change);
    lp_image_free(&im);
    lua_close(L);
  }
}
END_TEST

/* ---- a random differential run ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15u;
static unsigned next_random(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

/* Same as luapool's fingerprints tell values apart: type, integer or float bits, identity. */
static bool same_value(lua_State *L, int a, int b) {
  if (lua_type(L, a) != lua_type(L, b))
    return false;
  if (lua_type(L, a) == LUA_TNUMBER) {
    if (lua_isinteger(L, a) != lua_isinteger(L, b))
      return false;
    if (lua_isinteger(L, a))
      return lua_tointeger(L, a) == lua_tointeger(L, b);
    lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    return memcmp(&x, &y, sizeof x) == 0;
  }
  return lua_rawequal(L, a, b);
}

/* Does table t (at ti) hold exactly what copy (at ci) holds, with metatable mt (at mi)? */
static bool same_contents(lua_State *L, int ti, int ci, int mi) {
  int n = 0, m = 0;
  lua_pushnil(L);
  while (lua_next(L, ti) != 0) {
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, ci);
    bool same = same_value(L, -1, -2);
    lua_pop(L, 2);
    if (!same) {
      lua_pop(L, 1);
      return false;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, ci) != 0) {
    m++;
    lua_pop(L, 1);
  }
  if (n != m)
    return false;
  if (!lua_getmetatable(L, ti))
    lua_pushboolean(L, 0);
  bool same = lua_rawequal(L, -1, mi);
  lua_pop(L, 1);
  return same;
}

/* Replaces the copy (at ci) and metatable (at mi) with t's (at ti) contents now. */
static void recopy(lua_State *L, int ti, int ci, int mi) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, ti) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_replace(L, ci);
  if (!lua_getmetatable(L, ti))
    lua_pushboolean(L, 0);
  lua_replace(L, mi);
}

/* Pushes one of a few values, chosen at random: nil, numbers (signed zeros, a NaN), strings
   short and long, booleans, tables (a few kept, so that identity repeats), a function. */
static void push_random_value(lua_State *L, int keep) {
  switch (next_random(12)) {
  case 0:
    lua_pushnil(L);
    break;
  case 1:
    lua_pushinteger(L, (lua_Integer)next_random(4));
    break;
  case 2:
    lua_pushnumber(L, (lua_Number)next_random(3));
    break;
  case 3:
    lua_pushnumber(L, next_random(2) ? 0.0 : -0.0);
    break;
  case 4:
    lua_pushnumber(L, NAN);
    break;
  case 5:
    lua_pushstring(L, next_random(2) ? "a" : "b");
    break;
  case 6: {
    char s[64];
    memset(s, 'x', sizeof s);
    lua_pushlstring(L, s, sizeof s); /* a long string: a new object each time */
    break;
  }
  case 7:
    lua_pushboolean(L, (int)next_random(2));
    break;
  case 8:
    lua_rawgeti(L, keep, 1 + next_random(3));
    break;
  case 9:
    lua_newtable(L);
    break;
  case 10:
    lua_pushcfunction(L, lua_gettop);
    break;
  default:
    lua_pushinteger(L, 1000 + (lua_Integer)next_random(50)); /* mostly integers */
    break;
  }
}

static void push_random_key(lua_State *L) {
  unsigned k = next_random(40);
  if (k < 16)
    lua_pushinteger(L, (lua_Integer)k + 1); /* the array part's range */
  else if (k < 32)
    lua_pushfstring(L, "k%d", (int)k);
  else
    lua_pushnumber(L, (lua_Number)k + 0.5);
}

START_TEST(the_image_never_calls_clean_what_the_walk_finds_changed) {
  if (!LP_IMAGE_BUILT)
    return;
  enum { NT = 6, STEPS = 30000 };
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_createtable(L, 3, 0); /* kept tables and metatables, to repeat identities */
  int keep = lua_gettop(L);
  for (int i = 1; i <= 3; i++) {
    lua_newtable(L);
    lua_rawseti(L, keep, i);
  }
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  int weak_mt = lua_gettop(L);
  int base = lua_gettop(L);
  lp_image im[NT];
  memset(im, 0, sizeof im);
  for (int i = 0; i < NT; i++) { /* at base + 3i + 1: table, copy, metatable-or-false */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushboolean(L, 0);
    lp_image_take(&im[i], lua_topointer(L, base + 3 * i + 1));
  }
  long clean_calls = 0, false_differs = 0, changes = 0;
  for (int step = 0; step < STEPS; step++) {
    int i = (int)next_random(NT), t = base + 3 * i + 1;
    switch (next_random(10)) {
    case 0:
      lua_gc(L, LUA_GCSTEP, 0);
      break;
    case 1: /* a metatable: none, a kept one, a weak one */
      switch (next_random(3)) {
      case 0:
        lua_pushnil(L);
        break;
      case 1:
        lua_rawgeti(L, keep, 1 + next_random(3));
        break;
      default:
        lua_pushvalue(L, weak_mt);
        break;
      }
      lua_setmetatable(L, t);
      break;
    case 2: /* the length operator may move the array part's limit */
      (void)lua_rawlen(L, t);
      break;
    default:
      push_random_key(L);
      push_random_value(L, keep);
      lua_rawset(L, t);
      break;
    }
    bool same = same_contents(L, t, t + 1, t + 2);
    if (lp_image_same(&im[i])) {
      clean_calls++;
      ck_assert_msg(same, "step %d: the image called table %d clean, but it changed", step, i);
    } else if (same) {
      false_differs++; /* bytes without contents: the reset re-images after its walk */
      lp_image_take(&im[i], lua_topointer(L, t));
    } else {
      changes++;
      recopy(L, t, t + 1, t + 2);
      lp_image_take(&im[i], lua_topointer(L, t));
    }
  }
  /* the run exercised every branch */
  ck_assert_int_gt(clean_calls, 1000);
  ck_assert_int_gt(changes, 1000);
  ck_assert_int_gt(false_differs, 0);
  for (int i = 0; i < NT; i++)
    lp_image_free(&im[i]);
  lua_close(L);
}
END_TEST

/* ---- the reset with images ---------------------------------------------------------------- */

static int make_table(lua_State *L, void *ud) {
  (void)ud;
  return luaL_dostring(L, "T = {1, 2, 3, 4, 5, x = 1}") == LUA_OK ? 0 : 1;
}

/* A request that changes T's bytes but not its contents: the reset's one traversal of T finds
   nothing to put back (not counted restored), and T gets a new image. */
START_TEST(bytes_without_contents_cost_one_walk_and_no_restore) {
  luapool_config cfg;
  util_config_libs(&cfg, LUAPOOL_LIBS_ALL);
  cfg.max_states = 1;
  cfg.on_create = make_table;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  luapool_release(p, L);
  uint64_t restored = util_stats(p).restored;
  static const char *const requests[] = {
      "T.y = 1 T.y = nil",   /* a key in, then out */
      "T[6] = 6 T[6] = nil", /* the array part */
      "for i = 1, 100 do T['k' .. i] = i end for i = 1, 100 do T['k' .. i] = nil end",
      "T[3] = nil local n = #T T[3] = 3", /* a length hint */
  };
  for (size_t r = 0; r < sizeof requests / sizeof requests[0]; r++) {
    L = util_acquire(p);
    util_run(L, requests[r]);
    luapool_release(p, L);
    L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, "local n = 0 for k in pairs(T) do n = n + 1 end "
                                      "return (n == 6 and T[5] == 5 and T.x == 1) and 1 or 0"),
                     1);
    luapool_release(p, L);
  }
  /* a rehash may reorder the entries: the traversal then meets them in another order, finds
     each recorded, and sets none */
  ck_assert_uint_eq(util_stats(p).restored - restored, 0);
  L = util_acquire(p);
  lp_snapshot *s = snapshot_of(p, L);
  if (s->image != LP_IMAGE_OFF)
    ck_assert_int_gt(imaged_tables(s), 0);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* ---- the global image (gimage.h) -------------------------------------------------------- */

/* Pushes a value of the i-th type with a per-type metatable (the snapshot's samples' order). */
static void push_type_sample(lua_State *L, int i) {
  switch (i) {
  case 0:
    lua_pushnil(L);
    break;
  case 1:
    lua_pushboolean(L, 0);
    break;
  case 2:
    lua_pushlightuserdata(L, (void *)&push_type_sample);
    break;
  case 3:
    lua_pushnumber(L, 2.5);
    break;
  case 4:
    lua_pushliteral(L, "s");
    break;
  case 5:
    lua_pushcfunction(L, lua_error);
    break;
  default:
    lua_pushthread(L);
    break;
  }
}

/* Sets the metatable of sample i to the value on top (popped). */
static void set_type_mt(lua_State *L, int i) {
  push_type_sample(L, i);
  lua_insert(L, -2);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

/* Each change of a type's metatable or of the collector makes the image differ, and putting it
   back through the API makes it match again; on a state a pool made (LUAPOOL_LIBS_ALL). */
START_TEST(the_global_image_sees_each_change) {
  luapool *p = one_all_state_pool();
  lua_State *L = util_acquire(p);
  luapool_release(p, L); /* the first reset leaves the collector as every later one */
  L = util_acquire(p);
  const lp_gimage *im = &snapshot_of(p, L)->gimage;
  if (im->g == NULL) { /* not built, or LUAPOOL_TABLE_IMAGE=off: nothing to look at */
    ck_assert(!lp_gimage_mt_same(im) && !lp_gimage_gc_clean(im));
    luapool_release(p, L);
    luapool_destroy(p);
    return;
  }
  ck_assert(lp_gimage_mt_same(im));
  ck_assert(lp_gimage_gc_clean(im));
  for (int i = 0; i < 7; i++) {
    push_type_sample(L, i);
    int had = lua_getmetatable(L, -1); /* the string metatable, for strings */
    if (!had)
      lua_pushnil(L);
    lua_newtable(L);
    set_type_mt(L, i);
    ck_assert_msg(!lp_gimage_mt_same(im), "a new metatable for type sample %d", i);
    set_type_mt(L, i); /* the one it had */
    ck_assert_msg(lp_gimage_mt_same(im), "type sample %d's metatable put back", i);
    lua_pop(L, 1);
  }
  static const struct {
    const char *change, *undo;
    bool gen; /* the change leaves the generational settings changed */
  } gc[] = {
      {"collectgarbage('stop')", "collectgarbage('restart')", false},
      {"collectgarbage('incremental', 300)", "collectgarbage('incremental', 200)", false},
      {"collectgarbage('incremental', 0, 400)", "collectgarbage('incremental', 0, 100)", false},
      {"collectgarbage('incremental', 0, 0, 20)", "collectgarbage('incremental', 0, 0, 13)", false},
      {"collectgarbage('setpause', 100)", "collectgarbage('setpause', 200)", false},
      {"collectgarbage('generational')", "collectgarbage('incremental')", false},
      {"collectgarbage('generational', 10, 60) collectgarbage('incremental')",
       "collectgarbage('generational', 20, 100) collectgarbage('incremental')", true},
  };
  for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++) {
    util_run(L, gc[i].change);
    ck_assert_msg(!lp_gimage_gc_clean(im), "%s", gc[i].change);
    ck_assert_msg(lp_gimage_gc_gen_changed(im) == gc[i].gen, "%s", gc[i].change);
    util_run(L, gc[i].undo);
    ck_assert_msg(lp_gimage_gc_clean(im), "%s", gc[i].undo);
  }
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/*
** With the image on alone (not verify: the API is not asked when the image matches), the reset
** still finds and undoes every change of the types' metatables and of the collector, and the
** generational settings a request changed and left (which the API alone does not see).
*/
START_TEST(with_the_image_alone_the_reset_undoes_the_global_changes) {
  char *saved = image_env_set("on");
  luapool *p = one_all_state_pool();
  static const char *const requests[] = {
      "debug.setmetatable(nil, {__index = function() return 'ghost' end})",
      "debug.setmetatable(true, {__index = function() return 'ghost' end})",
      "debug.setmetatable(1, {__index = function() return 'ghost' end})",
      "debug.setmetatable(print, {__index = function() return 'ghost' end})",
      "debug.setmetatable(coroutine.running(), {__index = function() return 'ghost' end})",
      "debug.setmetatable('', {__index = function() return 'ghost' end})",
      "collectgarbage('stop')",
      "collectgarbage('incremental', 1000, 400, 20)",
      "collectgarbage('generational', 10, 60)",
      "collectgarbage('generational', 10, 60) collectgarbage('incremental')",
  };
  const char *look = "local function probe(v) return (pcall(function() return v.x end)) end "
                     "return (not probe(nil) and not probe(true) and not probe(1) and "
                     "not probe(print) and not probe(coroutine.running()) and ('').x == nil "
                     "and ('a'):rep(2) == 'aa' and collectgarbage('isrunning') and "
                     "collectgarbage('incremental') == 'incremental') and 1 or 0";
  for (size_t r = 0; r < sizeof requests / sizeof requests[0]; r++) {
    lua_State *L = util_acquire(p);
    util_run(L, requests[r]);
    luapool_release(p, L);
    L = util_acquire(p);
    const lp_gimage *im = &snapshot_of(p, L)->gimage;
    if (LP_GIMAGE_BUILT && snapshot_of(p, L)->image != LP_IMAGE_OFF) {
      ck_assert_ptr_nonnull(im->g);
      ck_assert_msg(lp_gimage_mt_same(im) && lp_gimage_gc_clean(im), "after %s", requests[r]);
    }
    ck_assert_msg(util_eval_int(L, look) == 1, "after %s", requests[r]);
    luapool_release(p, L);
  }
  luapool_destroy(p);
  image_env_restore(saved);
}
END_TEST

int main(void) {
  Suite *s = suite_create("image");
  TCase *tc = tcase_create("image");
  tcase_add_test(tc, the_probe_accepts_this_lua_and_make_check_verifies);
  tcase_add_test(tc, off_in_the_environment_leaves_the_walk);
  tcase_add_test(tc, every_shape_of_change_makes_the_image_differ);
  tcase_add_test(tc, the_image_never_calls_clean_what_the_walk_finds_changed);
  tcase_add_test(tc, bytes_without_contents_cost_one_walk_and_no_restore);
  tcase_add_test(tc, the_global_image_sees_each_change);
  tcase_add_test(tc, with_the_image_alone_the_reset_undoes_the_global_changes);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
