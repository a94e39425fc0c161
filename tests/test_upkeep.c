/*
** The watchdog's upkeep rules, each checked deterministically: a fake clock and luapool_maintain
** on the test's thread, no sleeping.
*/
#include <lauxlib.h>
#include <semaphore.h>
#include <string.h>

#include "util.h"

static uint64_t fake_now;

static uint64_t fake_clock(void *ud) {
  (void)ud;
  return fake_now;
}

/* No watchdog thread, the fake clock at 0, the global list only (no magazines). */
static void upkeep_config(luapool_config *cfg) {
  util_config(cfg);
  cfg->clock_ms = fake_clock;
  cfg->magazine_size = 0;
  cfg->max_idle = 100;
  cfg->idle_timeout_ms = 0;
  cfg->bloat_kb = 0;
  fake_now = 0;
}

static void maintain_at(luapool *p, uint64_t now) {
  fake_now = now;
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
}

/* Acquires n distinct states and releases them all. */
static void cycle(luapool *p, int n) {
  lua_State *L[64];
  ck_assert_int_le(n, 64);
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
  for (int i = 0; i < n; i++)
    luapool_release(p, L[i]);
}

START_TEST(config_init_sets_the_upkeep_defaults) {
  luapool_config cfg;
  luapool_config_init(&cfg);
  ck_assert_uint_eq(cfg.idle_timeout_ms, 60000);
  ck_assert_uint_eq(cfg.max_uses, 0);
  ck_assert_uint_eq(cfg.max_lifetime_ms, 0);
  ck_assert_uint_eq(cfg.bloat_kb, 8192);
  ck_assert_uint_eq(cfg.gc_per_pass, 32);
  ck_assert_uint_eq(cfg.recycle_kb, 1024);
  ck_assert_ptr_null(cfg.on_state);
  ck_assert_ptr_null(cfg.clock_ms);
}
END_TEST

START_TEST(idle_timeout_closes_unused_states_but_keeps_min_idle) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.idle_timeout_ms = 1000;
  cfg.min_idle = 1;
  luapool *p = util_pool(&cfg);
  cycle(p, 4); /* four states, last used at 0 */
  maintain_at(p, 999);
  ck_assert_uint_eq(util_stats(p).expired_idle, 0);
  maintain_at(p, 1000);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.expired_idle, 3);
  ck_assert_uint_eq(s.idle, 1); /* never below min_idle */
  ck_assert_uint_eq(s.closed, 3);
  maintain_at(p, 5000);
  ck_assert_uint_eq(util_stats(p).idle, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_state_used_again_is_not_idle) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.idle_timeout_ms = 1000;
  luapool *p = util_pool(&cfg);
  cycle(p, 2);
  maintain_at(p, 800);
  cycle(p, 1); /* one of them is used again at 800 (the coarse clock of the last pass) */
  maintain_at(p, 1500);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.expired_idle, 1);
  ck_assert_uint_eq(s.idle, 1);
  maintain_at(p, 1800);
  ck_assert_uint_eq(util_stats(p).idle, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(max_uses_closes_a_state_after_that_many_acquires) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.max_uses = 3;
  luapool *p = util_pool(&cfg);
  lua_State *first, *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &first), LUAPOOL_OK);
  luapool_release(p, first);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
    ck_assert_ptr_eq(L, first);
    luapool_release(p, L); /* the third release closes it */
  }
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.expired_uses, 1);
  ck_assert_uint_eq(s.live, 0);
  ck_assert_uint_eq(s.releases, 3);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(p).created, 2);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(max_lifetime_closes_old_states_with_jitter) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.max_lifetime_ms = 10000;
  luapool *p = util_pool(&cfg);
  cycle(p, 40);         /* forty states made at 0 */
  maintain_at(p, 8999); /* the jitter takes at most 10%: none is due yet */
  ck_assert_uint_eq(util_stats(p).expired_lifetime, 0);
  maintain_at(p, 9500); /* about half are due: made together, they do not expire together */
  uint64_t half = util_stats(p).expired_lifetime;
  ck_assert_uint_gt(half, 0);
  ck_assert_uint_lt(half, 40);
  maintain_at(p, 10000);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.expired_lifetime, 40);
  ck_assert_uint_eq(s.live, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_state_past_its_lifetime_is_closed_when_released) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.max_lifetime_ms = 10000;
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  maintain_at(p, 20000); /* the state is out: the pass does not touch it */
  ck_assert_uint_eq(util_stats(p).live, 1);
  luapool_release(p, L);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.expired_lifetime, 1);
  ck_assert_uint_eq(s.live, 0);
  luapool_destroy(p);
}
END_TEST

static int heap_kb(lua_State *L) {
  return lua_gc(L, LUA_GCCOUNT);
}

START_TEST(background_collection_frees_garbage_of_idle_states) {
  luapool_config cfg;
  upkeep_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  util_run(L, "collectgarbage('stop'); local t = {} for i = 1, 20000 do t[i] = {i} end");
  luapool_release(p, L); /* the reset restarts the collector; the garbage stays until a cycle */
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  int before = heap_kb(L);
  luapool_release(p, L);
  maintain_at(p, 1);
  ck_assert_uint_eq(util_stats(p).collections, 1);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  int after = heap_kb(L);
  ck_assert_msg(after * 4 < before, "heap %d KB before, %d KB after the pass", before, after);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

START_TEST(background_collection_is_bounded_per_pass_and_skips_clean_states) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.gc_per_pass = 2;
  luapool *p = util_pool(&cfg);
  cycle(p, 5); /* five used states */
  maintain_at(p, 1);
  ck_assert_uint_eq(util_stats(p).collections, 2);
  maintain_at(p, 2);
  ck_assert_uint_eq(util_stats(p).collections, 4);
  maintain_at(p, 3);
  ck_assert_uint_eq(util_stats(p).collections, 5);
  maintain_at(p, 4); /* all clean: nothing to do */
  ck_assert_uint_eq(util_stats(p).collections, 5);
  ck_assert_uint_eq(util_stats(p).idle, 5);
  luapool_destroy(p);
}
END_TEST

START_TEST(bloat_closes_an_idle_state_whose_heap_stays_large) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.bloat_kb = 1024;
  cfg.reset = LUAPOOL_RESET_STACK; /* so that the data survives the reset */
  luapool *p = util_pool(&cfg);
  lua_State *big, *small;
  ck_assert_int_eq(luapool_acquire(p, 0, &big), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &small), LUAPOOL_OK);
  util_run(big, "keep = string.rep('x', 2 * 1024 * 1024)");
  util_run(small, "keep = string.rep('x', 1024)");
  luapool_release(p, big);
  luapool_release(p, small);
  maintain_at(p, 1);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.bloated, 1);
  ck_assert_uint_eq(s.idle, 1);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_ptr_eq(L, small);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

typedef struct events {
  int created;
  int closed[LUAPOOL_CLOSE_RECYCLED + 1];
  int null_states;
} events;

static void count_event(void *ud, int event, int reason, lua_State *L) {
  events *e = ud;
  if (L == NULL)
    e->null_states++;
  if (event == LUAPOOL_STATE_CREATED && reason == 0)
    e->created++;
  else if (event == LUAPOOL_STATE_CLOSED && reason >= 1 && reason <= LUAPOOL_CLOSE_RECYCLED)
    e->closed[reason]++;
}

/* ---- recycling ------------------------------------------------------------------------------ */

/* The global "marker" of a state (the reset keeps globals under LUAPOOL_RESET_STACK), or "". */
static const char *marker_of(lua_State *L) {
  lua_getglobal(L, "marker");
  const char *m = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return m; /* still referenced from _G */
}

/* Two idle states that ran these scripts, each marked with its name (which the reset keeps). */
static luapool *two_used_states(luapool_config *cfg, const char *a_script, const char *b_script) {
  cfg->reset = LUAPOOL_RESET_STACK;
  luapool *p = util_pool(cfg);
  lua_State *a, *b;
  ck_assert_int_eq(luapool_acquire(p, 0, &a), LUAPOOL_OK);
  ck_assert_int_eq(luapool_acquire(p, 0, &b), LUAPOOL_OK);
  util_run(a, "marker = 'a'");
  util_run(b, "marker = 'b'");
  util_run(a, a_script);
  util_run(b, b_script);
  luapool_release(p, a);
  luapool_release(p, b);
  return p;
}

/* The markers of the idle states ("-" for none), all acquired at once, in sorted order. */
static void idle_markers(luapool *p, char *out, size_t size) {
  lua_State *L[8];
  unsigned n = util_stats(p).idle;
  char m[8][4];
  ck_assert_uint_le(n, 8);
  for (unsigned i = 0; i < n; i++) {
    ck_assert_int_eq(luapool_acquire(p, 0, &L[i]), LUAPOOL_OK);
    snprintf(m[i], sizeof m[i], "%s", marker_of(L[i]));
  }
  ck_assert_uint_eq(util_stats(p).created, util_stats(p).closed + n); /* none was made */
  for (unsigned i = 0; i < n; i++)
    for (unsigned j = i + 1; j < n; j++)
      if (strcmp(m[j], m[i]) < 0) {
        char t[4];
        memcpy(t, m[i], sizeof t);
        memcpy(m[i], m[j], sizeof t);
        memcpy(m[j], t, sizeof t);
      }
  out[0] = '\0';
  for (unsigned i = 0; i < n; i++) {
    size_t used = strlen(out);
    snprintf(out + used, size - used, "%s%s", i != 0 ? "," : "", m[i][0] != 0 ? m[i] : "-");
  }
  for (unsigned i = 0; i < n; i++)
    luapool_release(p, L[i]);
}

/* One pass, then: how many states it recycled, and the markers of the idle states. */
static void pass_then_expect(luapool *p, uint64_t recycled, const char *markers) {
  maintain_at(p, 1);
  ck_assert_uint_eq(util_stats(p).recycled, recycled);
  char m[64];
  idle_markers(p, m, sizeof m);
  ck_assert_str_eq(m, markers);
}

static const char *const PEAK_2MB = "local s = string.rep('x', 2 * 1024 * 1024) s = nil";

START_TEST(recycle_replaces_a_state_whose_heap_peaked_with_a_fresh_one) {
  events e;
  memset(&e, 0, sizeof e);
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.on_state = count_event;
  cfg.on_state_ud = &e;
  luapool *p = two_used_states(&cfg, PEAK_2MB, "local s = string.rep('x', 1000)");
  ck_assert_int_eq(e.created, 2);
  maintain_at(p, 1);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.collections, 2);
  ck_assert_uint_eq(s.recycled, 1);
  ck_assert_uint_eq(s.bloated, 0);
  ck_assert_int_eq(e.closed[LUAPOOL_CLOSE_RECYCLED], 1);
  ck_assert_int_eq(e.created, 3); /* its replacement, made by the pass */
  ck_assert_uint_eq(s.idle, 2);   /* the pool is as warm as before */
  char m[64];
  idle_markers(p, m, sizeof m);
  ck_assert_str_eq(m, "-,b"); /* "a" is gone; the fresh state has no marker */
  maintain_at(p, 2);          /* the fresh state is not recycled again */
  ck_assert_uint_eq(util_stats(p).recycled, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(recycle_leaves_a_state_that_keeps_its_heap_or_never_peaked) {
  luapool_config cfg;
  upkeep_config(&cfg);
  /* "a" keeps its 2 MB (an array grows in place: no peak above what it keeps); "b" peaked by
     less than recycle_kb (string.rep's buffer and result: 512 KB) */
  luapool *p = two_used_states(&cfg, "keep = {} for i = 1, 128 * 1024 do keep[i] = i end",
                               "local s = string.rep('x', 256 * 1024)");
  pass_then_expect(p, 0, "a,b");
  ck_assert_uint_eq(util_stats(p).collections, 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(recycle_kb_0_keeps_states_that_peaked) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.recycle_kb = 0;
  luapool *p = two_used_states(&cfg, PEAK_2MB, PEAK_2MB);
  pass_then_expect(p, 0, "a,b");
  luapool_destroy(p);
}
END_TEST

/* What on_create leaves is the state's own: a large module is no peak. */
static int load_big_module(lua_State *L, void *ud) {
  (void)ud;
  return luaL_dostring(L, "big = string.rep('m', 4 * 1024 * 1024)") != LUA_OK;
}

START_TEST(recycle_measures_the_peak_from_what_on_create_left) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.on_create = load_big_module;
  cfg.libs = LUAPOOL_LIBS_ALL; /* on_create's global stays a global, not a frozen builtin */
  luapool *p = two_used_states(&cfg, "local s = string.rep('x', 256 * 1024)", PEAK_2MB);
  pass_then_expect(p, 1, "-,a");
  luapool_destroy(p);
}
END_TEST

START_TEST(recycled_states_are_replaced_within_max_states) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.max_states = 2;
  luapool *p = two_used_states(&cfg, PEAK_2MB, PEAK_2MB);
  maintain_at(p, 1);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.recycled, 2);
  ck_assert_uint_eq(s.live, 2);
  ck_assert_uint_eq(s.idle, 2);
  luapool_destroy(p);
}
END_TEST

START_TEST(every_create_and_close_is_reported_with_its_reason) {
  events e;
  memset(&e, 0, sizeof e);
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.on_state = count_event;
  cfg.on_state_ud = &e;
  cfg.min_idle = 1;
  cfg.max_idle = 2;
  cfg.max_uses = 2;
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(e.created, 1);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_discard(p, L);
  ck_assert_int_eq(e.closed[LUAPOOL_CLOSE_DISCARDED], 1);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_release(p, L);
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  luapool_release(p, L); /* second use */
  ck_assert_int_eq(e.closed[LUAPOOL_CLOSE_MAX_USES], 1);
  cycle(p, 4);
  maintain_at(p, 1); /* four idle, max_idle 2 */
  ck_assert_int_eq(e.closed[LUAPOOL_CLOSE_TRIMMED], 2);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK);
  ck_assert_int_eq(e.closed[LUAPOOL_CLOSE_SHUTDOWN], 2);
  luapool_stats s = util_stats(p);
  ck_assert_int_eq(e.created, (int)s.created);
  int closed = 0;
  for (int r = 1; r <= LUAPOOL_CLOSE_RECYCLED; r++)
    closed += e.closed[r];
  ck_assert_int_eq(closed, (int)s.closed);
  ck_assert_uint_eq(s.trimmed, 2);
  ck_assert_uint_eq(s.expired_uses, 1);
  ck_assert_uint_eq(s.discarded, 1);
  ck_assert_uint_eq(s.shutdown_closed, 2);
  ck_assert_int_eq(e.null_states, 0);
  luapool_destroy(p);
}
END_TEST

START_TEST(each_pass_is_counted_and_timed) {
  luapool_config cfg;
  upkeep_config(&cfg);
  luapool *p = util_pool(&cfg);
  cycle(p, 3);
  maintain_at(p, 1);
  maintain_at(p, 2);
  luapool_stats s = util_stats(p);
  ck_assert_uint_eq(s.passes, 2);
  ck_assert_uint_gt(s.pass_ns_last, 0);
  ck_assert_uint_ge(s.pass_ns_max, s.pass_ns_last);
  ck_assert_uint_ge(s.pass_ns_total, s.pass_ns_max);
  luapool_destroy(p);
}
END_TEST

/* ---- magazines of quiet threads ------------------------------------------------------------ */

typedef struct quiet {
  luapool *p;
  sem_t cached, go;
} quiet;

/* Caches four states in its magazine, then goes quiet until told to end. */
static void *cache_then_quiet(void *arg) {
  quiet *q = arg;
  cycle(q->p, 4);
  sem_post(&q->cached);
  sem_wait(&q->go);
  return NULL;
}

START_TEST(a_quiet_threads_magazine_is_reclaimed_within_two_passes) {
  luapool_config cfg;
  upkeep_config(&cfg);
  cfg.magazine_size = 4;
  luapool *p = util_pool(&cfg);
  quiet q = {.p = p};
  sem_init(&q.cached, 0, 0);
  sem_init(&q.go, 0, 0);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, cache_then_quiet, &q), 0);
  sem_wait(&q.cached);
  maintain_at(p, 1); /* the thread acquired since the last pass: not quiet yet */
  ck_assert_uint_eq(util_stats(p).reclaimed, 0);
  maintain_at(p, 2); /* no acquire since: its magazine goes to the global list */
  ck_assert_uint_eq(util_stats(p).reclaimed, 4);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(p).global_hits, 1);
  luapool_release(p, L);
  sem_post(&q.go);
  pthread_join(t, NULL);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("upkeep");
  TCase *tc = tcase_create("rules");
  tcase_add_test(tc, config_init_sets_the_upkeep_defaults);
  tcase_add_test(tc, idle_timeout_closes_unused_states_but_keeps_min_idle);
  tcase_add_test(tc, a_state_used_again_is_not_idle);
  tcase_add_test(tc, max_uses_closes_a_state_after_that_many_acquires);
  tcase_add_test(tc, max_lifetime_closes_old_states_with_jitter);
  tcase_add_test(tc, a_state_past_its_lifetime_is_closed_when_released);
  tcase_add_test(tc, background_collection_frees_garbage_of_idle_states);
  tcase_add_test(tc, background_collection_is_bounded_per_pass_and_skips_clean_states);
  tcase_add_test(tc, bloat_closes_an_idle_state_whose_heap_stays_large);
  tcase_add_test(tc, recycle_replaces_a_state_whose_heap_peaked_with_a_fresh_one);
  tcase_add_test(tc, recycle_leaves_a_state_that_keeps_its_heap_or_never_peaked);
  tcase_add_test(tc, recycle_kb_0_keeps_states_that_peaked);
  tcase_add_test(tc, recycle_measures_the_peak_from_what_on_create_left);
  tcase_add_test(tc, recycled_states_are_replaced_within_max_states);
  tcase_add_test(tc, every_create_and_close_is_reported_with_its_reason);
  tcase_add_test(tc, each_pass_is_counted_and_timed);
  tcase_add_test(tc, a_quiet_threads_magazine_is_reclaimed_within_two_passes);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
