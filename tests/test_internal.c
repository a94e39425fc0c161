/*
** Internals the public API cannot show: the free list's alignment and its Treiber stacks, the
** slot check, and the moves a slot may make (checked by assertions in --enable-debug builds).
*/
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdint.h>

#include "frames.h"
#include "freelist.h"
#include "internal.h"
#include "util.h"

START_TEST(the_free_list_is_aligned_for_the_double_width_cas) {
  luapool_config cfg;
  util_config(&cfg);
  for (int i = 0; i < 8; i++) {
    luapool *p = util_pool(&cfg);
    ck_assert_uint_eq((uintptr_t)&p->idle.stack % 16, 0);
    ck_assert_uint_eq((uintptr_t)&p->wd.closing.stack % 16, 0);
    luapool_destroy(p);
  }
}
END_TEST

START_TEST(the_free_list_is_last_in_first_out_and_pop_all_takes_every_entry) {
  static lp_freelist f; /* static storage honours _Alignas */
  static lp_closelist c;
  static lp_slot s[3];
  lp_freelist_init(&f);
  lp_closelist_init(&c);
  ck_assert_ptr_null(lp_freelist_pop_mpmc(&f));
  for (int i = 0; i < 3; i++) {
    atomic_init(&s[i].state, LP_SLOT_IDLE);
    lp_freelist_push_mpmc(&f, &s[i]);
  }
  ck_assert_ptr_eq(lp_freelist_pop_mpmc(&f), &s[2]);
  ck_assert_ptr_eq(lp_freelist_pop_mpmc(&f), &s[1]);
  ck_assert_ptr_eq(lp_freelist_pop_mpmc(&f), &s[0]);
  ck_assert_ptr_null(lp_freelist_pop_mpmc(&f));
  /* the close list: pop_all takes every entry, most recent first */
  for (int i = 0; i < 3; i++) {
    atomic_store(&s[i].state, LP_SLOT_CLOSING);
    lp_closelist_push_mpsc(&c, &s[i]);
  }
  lp_slot *all = lp_closelist_pop_all_mpsc(&c);
  ck_assert_ptr_eq(all, &s[2]);
  ck_assert_ptr_eq(lp_closelist_next(all), &s[1]);
  ck_assert_ptr_eq(LP_SLOT_OF_ENTRY(s[1].entry.next), &s[0]);
  ck_assert_ptr_null(lp_closelist_next(&s[0]));
  ck_assert_ptr_null(lp_closelist_pop_all_mpsc(&c));
}
END_TEST

START_TEST(slot_check_never_trusts_the_extra_space) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  lp_slot *s = lp_slot_check(&p->arena, L);
  ck_assert_ptr_nonnull(s);
  /* A foreign state whose extra space points into the arena, misaligned, or anywhere. */
  lua_State *bare = luaL_newstate();
  void **extra = lua_getextraspace(bare);
  *extra = s;
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare)); /* the slot does not name it back */
  *extra = (char *)s + 1;
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare));
  *extra = (void *)(uintptr_t)0xdeadbeef;
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare));
  lua_close(bare);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/*
** The check compares the newest chunk inline and walks the older ones out of line: 40 states make
** three chunks (16, 16, 32 slots), and every state's slot is found whichever chunk holds it,
** while a pointer into an older chunk that is off a slot boundary, or between chunks, is not.
*/
START_TEST(slot_check_finds_a_slot_in_any_chunk) {
  enum { N = 40 };
  luapool_config cfg;
  util_config(&cfg);
  cfg.magazine_size = 0;
  luapool *p = util_pool(&cfg);
  lua_State *L[N];
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
  lp_slot_chunk *newest = atomic_load(&p->arena.chunks);
  ck_assert_ptr_nonnull(newest->next); /* more than one chunk */
  int in_older = 0;
  for (int i = 0; i < N; i++) {
    lp_slot *s = lp_slot_check(&p->arena, L[i]);
    ck_assert_ptr_eq(s, lp_slot_of(L[i]));
    uintptr_t off = (uintptr_t)s - (uintptr_t)&newest->slots[0];
    in_older += off >= newest->n * sizeof(lp_slot);
  }
  ck_assert_int_gt(in_older, 0);
  lua_State *bare = luaL_newstate();
  void **extra = lua_getextraspace(bare);
  lp_slot_chunk *oldest = newest;
  while (oldest->next != NULL)
    oldest = oldest->next;
  *extra = &oldest->slots[1];
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare)); /* a slot of an older chunk: not bare's */
  *extra = (char *)&oldest->slots[1] + 8;
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare));
  *extra = &oldest->slots[oldest->n]; /* one past the chunk's end */
  ck_assert_ptr_null(lp_slot_check(&p->arena, bare));
  lua_close(bare);
  for (int i = 0; i < N; i++)
    luapool_release(p, L[i]);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_slot_makes_only_the_documented_moves) {
  enum { E = LP_SLOT_EMPTY, I = LP_SLOT_IDLE, O = LP_SLOT_OUT, C = LP_SLOT_CLOSING };
  /* from (row) -> to (column): EMPTY IDLE OUT CLOSING */
  static const bool ok[4][4] = {
      [E] = {false, true, true, false}, /* made for the free list, or for an acquire */
      [I] = {true, false, true, true},  /* closed; acquired; retired by its releaser */
      [O] = {true, true, false, true},  /* closed by destroy; released; discarded */
      [C] = {true, false, false, false} /* closed */
  };
  for (int from = 0; from < 4; from++)
    for (int to = 0; to < 4; to++)
      ck_assert_msg(lp_slot_move_ok(from, to) == ok[from][to], "move %d -> %d", from, to);
  ck_assert(!lp_slot_move_ok(LP_SLOT_IDLE, 17));
}
END_TEST

#ifdef LP_DEBUG
/* A move from a state the slot is not in is a bug in luapool: the debug build aborts. */
START_TEST(a_wrong_slot_move_aborts_in_a_debug_build) {
  static lp_slot s;
  atomic_init(&s.state, LP_SLOT_IDLE);
  lp_slot_move(&s, LP_SLOT_OUT, LP_SLOT_IDLE); /* not OUT: a second release's path */
}
END_TEST

START_TEST(a_forbidden_slot_move_aborts_in_a_debug_build) {
  static lp_slot s;
  atomic_init(&s.state, LP_SLOT_CLOSING);
  lp_slot_move(&s, LP_SLOT_CLOSING, LP_SLOT_IDLE); /* a closing state back into use */
}
END_TEST
#endif

/* lp_frame_next's frames are lua_getstack's, level for level (frames.h). */
static int frames_agree(lua_State *L) {
  lp_frame f;
  lua_Debug ar;
  bool more = lp_frame_first(L, &f);
#if LUA_VERSION_RELEASE_NUM >= 50400 && LUA_VERSION_RELEASE_NUM <= 50408
  ck_assert_msg(f.fast, "the probe failed on a Lua whose CallInfo it knows");
#endif
  int level = 0;
  for (;; level++) {
    bool api = lua_getstack(L, level, &ar) != 0;
    ck_assert_int_eq(more, api);
    if (!api)
      break;
    ck_assert_ptr_eq(f.ar.i_ci, ar.i_ci);
    ck_assert_int_eq(f.level, level);
    more = lp_frame_next(&f);
  }
  lua_pushinteger(L, level);
  return 1;
}

static int probe_frames(lua_State *L) {
  lp_frames_probe(L);
  return 0;
}

static void hook_agrees(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  frames_agree(L);
  lua_pop(L, 1);
}

START_TEST(the_frame_walk_steps_through_the_frames_lua_getstack_finds) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, probe_frames);
  ck_assert_int_eq(lua_pcall(L, 0, 0, 0), LUA_OK);
  lua_register(L, "agree", frames_agree);
  util_run(L, "local function rec(n)"
              "  if n == 0 then return agree() end"
              "  local k = n % 4"
              "  if k == 0 then local ok, v = pcall(rec, n - 1) assert(ok) return v + 0"
              "  elseif k == 1 then return (rec(n - 1)) + 0"
              "  elseif k == 2 then return table.unpack({rec(n - 1)}) + 0"
              "  else return select(2, xpcall(rec, print, n - 1)) + 0 end"
              " end"
              " assert(agree() == 2)"
              " assert(rec(80) > 80)"
              " assert(coroutine.wrap(function() return rec(40) end)() > 40)"
              " local co = coroutine.create(function() coroutine.yield(rec(9)) return rec(21) end)"
              " local ok, a = coroutine.resume(co) assert(ok and a > 9)"
              " local ok2, b = coroutine.resume(co) assert(ok2 and b > 21)"
              " local deep = 0 local function d(n) if n == 0 then deep = agree() return 0 end"
              "   return d(n - 1) + 1 end d(5000) assert(deep > 5000)");
  /* from a hook, inside a Lua function */
  lua_sethook(L, hook_agrees, LUA_MASKCOUNT, 5);
  util_run(L, "local function r(n) if n == 0 then for i = 1, 20 do end return 0 end"
              " return r(n - 1) + 1 end r(30)");
  lua_sethook(L, NULL, 0, 0);
  lua_close(L);
}
END_TEST

int main(void) {
  Suite *s = suite_create("internal");
  TCase *tc = tcase_create("freelist");
  tcase_add_test(tc, the_free_list_is_aligned_for_the_double_width_cas);
  tcase_add_test(tc, the_free_list_is_last_in_first_out_and_pop_all_takes_every_entry);
  tcase_add_test(tc, slot_check_never_trusts_the_extra_space);
  tcase_add_test(tc, slot_check_finds_a_slot_in_any_chunk);
  tcase_add_test(tc, a_slot_makes_only_the_documented_moves);
  tcase_add_test(tc, the_frame_walk_steps_through_the_frames_lua_getstack_finds);
#ifdef LP_DEBUG
  tcase_add_test_raise_signal(tc, a_wrong_slot_move_aborts_in_a_debug_build, SIGABRT);
  tcase_add_test_raise_signal(tc, a_forbidden_slot_move_aborts_in_a_debug_build, SIGABRT);
#endif
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
