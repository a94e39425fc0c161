/* Internals the public API cannot show: the free list's alignment and its Treiber stack. */
#include <lauxlib.h>
#include <stdint.h>

#include "internal.h"
#include "util.h"

START_TEST(the_free_list_is_aligned_for_the_double_width_cas) {
  luapool_config cfg;
  util_config(&cfg);
  for (int i = 0; i < 8; i++) {
    luapool *p = util_pool(&cfg);
    ck_assert_uint_eq((uintptr_t)&p->idle.stack % 16, 0);
    ck_assert_uint_eq((uintptr_t)&p->closing.stack % 16, 0);
    luapool_destroy(p);
  }
}
END_TEST

START_TEST(the_free_list_is_last_in_first_out_and_pop_all_takes_every_entry) {
  static lp_freelist f; /* static storage honours _Alignas */
  lp_slot s[3];
  lp_freelist_init(&f);
  ck_assert_ptr_null(lp_freelist_pop_mpmc(&f));
  for (int i = 0; i < 3; i++)
    lp_freelist_push_mpmc(&f, &s[i]);
  ck_assert_ptr_eq(lp_freelist_pop_mpmc(&f), &s[2]);
  lp_slot *all = lp_freelist_pop_all_spmc(&f);
  ck_assert_ptr_eq(all, &s[1]);
  ck_assert_ptr_eq(LP_SLOT_OF_ENTRY(all->entry.next), &s[0]);
  ck_assert_ptr_null(s[0].entry.next);
  ck_assert_ptr_null(lp_freelist_pop_mpmc(&f));
}
END_TEST

START_TEST(slot_check_never_trusts_the_extra_space) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  lp_slot *s = lp_slot_check(p, L);
  ck_assert_ptr_nonnull(s);
  /* A foreign state whose extra space points into the arena, misaligned, or anywhere. */
  lua_State *bare = luaL_newstate();
  void **extra = lua_getextraspace(bare);
  *extra = s;
  ck_assert_ptr_null(lp_slot_check(p, bare)); /* the slot does not name it back */
  *extra = (char *)s + 1;
  ck_assert_ptr_null(lp_slot_check(p, bare));
  *extra = (void *)(uintptr_t)0xdeadbeef;
  ck_assert_ptr_null(lp_slot_check(p, bare));
  lua_close(bare);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("internal");
  TCase *tc = tcase_create("freelist");
  tcase_add_test(tc, the_free_list_is_aligned_for_the_double_width_cas);
  tcase_add_test(tc, the_free_list_is_last_in_first_out_and_pop_all_takes_every_entry);
  tcase_add_test(tc, slot_check_never_trusts_the_extra_space);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
