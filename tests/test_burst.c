/*
** Memory after a burst: 8 threads each hold 32 states holding about 1 MB of Lua data, release
** them, and go quiet; three maintenance passes later the process's resident memory is back
** within 20% plus 8 MB of what it was before the burst, with the default config (64 idle
** states kept, recycle_kb 1024: luapool_maintain(3), "Memory after a burst").
** Skipped under AddressSanitizer and ThreadSanitizer, whose allocators hold freed memory.
*/
#include <stdio.h>
#include <unistd.h>

#include "util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LP_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LP_TEST_SANITIZED 1
#endif
#endif

#ifndef LP_TEST_SANITIZED
enum { THREADS = 8, STATES = 32 };

static long rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct burst {
  luapool *p;
  pthread_barrier_t started, held, loaded, done;
} burst;

static void *burst_worker(void *arg) {
  burst *b = arg;
  lua_State *L[STATES];
  pthread_barrier_wait(&b->started);
  for (int i = 0; i < STATES; i++) {
    ck_assert_int_eq(luapool_acquire(b->p, -1, &L[i]), LUAPOOL_OK);
    /* about 1 MB: 8192 distinct strings of ~110 bytes in a table */
    util_run(L[i], "data = {} for i = 1, 8192 do data[i] = string.rep('x', 100) .. i end");
  }
  pthread_barrier_wait(&b->held); /* all 256 states out at once */
  for (int i = 0; i < STATES; i++)
    luapool_release(b->p, L[i]);
  pthread_barrier_wait(&b->loaded);
  pthread_barrier_wait(&b->done); /* quiet, but alive: the magazines are not given back by exit */
  return NULL;
}

/* Resident memory before the burst, at its peak, and three passes after it. */
typedef struct figures {
  long before, peak, after;
  luapool_stats stats;
} figures;

static figures run_burst(const luapool_config *cfg) {
  figures f;
  burst b;
  b.p = util_pool(cfg);
  pthread_barrier_init(&b.started, NULL, THREADS + 1);
  pthread_barrier_init(&b.held, NULL, THREADS + 1);
  pthread_barrier_init(&b.loaded, NULL, THREADS + 1);
  pthread_barrier_init(&b.done, NULL, THREADS + 1);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, burst_worker, &b), 0);
  f.before = rss_kb();
  pthread_barrier_wait(&b.started);
  pthread_barrier_wait(&b.held);
  f.peak = rss_kb();
  pthread_barrier_wait(&b.loaded);
  ck_assert_uint_eq(util_stats(b.p).created, THREADS * STATES);
  for (int pass = 0; pass < 3; pass++) /* three quiet intervals, deterministically */
    ck_assert_int_eq(luapool_maintain(b.p), LUAPOOL_OK);
  f.after = rss_kb();
  f.stats = util_stats(b.p);
  printf("RSS before the burst %ld KB, at its peak %ld KB, three passes later %ld KB "
         "(recycle_kb %u: %u idle states kept, %lu trimmed, %lu recycled, %lu collections)\n",
         f.before, f.peak, f.after, cfg->recycle_kb, f.stats.idle,
         (unsigned long)f.stats.trimmed, (unsigned long)f.stats.recycled,
         (unsigned long)f.stats.collections);
  ck_assert_msg(f.peak > f.before + 100 * 1024, "the burst did not happen: %ld -> %ld KB",
                f.before, f.peak);
  pthread_barrier_wait(&b.done);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  luapool_destroy(b.p);
  return f;
}

START_TEST(resident_memory_returns_after_a_burst) {
  luapool_config cfg;
  util_config(&cfg); /* the defaults, but no watchdog thread: the test runs the passes */
  figures f = run_burst(&cfg);
  ck_assert_msg(f.after <= f.before + f.before / 5 + 8 * 1024,
                "RSS %ld KB three passes after the burst: before %ld KB, peak %ld KB", f.after,
                f.before, f.peak);
  ck_assert_uint_eq(f.stats.idle, cfg.max_idle); /* the pool stays warm: fresh states */
  ck_assert_uint_eq(f.stats.recycled, cfg.max_idle);
}
END_TEST

/*
** Without recycling the kept states pin some pages (15 MB here), but the garbage their
** collections free goes back: the passes that collect them close nothing, and trim all the same
** (54 MB stayed when only a close made a pass trim).
*/
START_TEST(collected_garbage_goes_back_without_recycling) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.recycle_kb = 0;
  figures f = run_burst(&cfg);
  ck_assert_uint_eq(f.stats.recycled, 0);
  ck_assert_msg(f.after - f.before <= (f.peak - f.before) / 10,
                "RSS %ld KB three passes after the burst: before %ld KB, peak %ld KB", f.after,
                f.before, f.peak);
}
END_TEST

int main(void) {
  Suite *s = suite_create("burst");
  TCase *tc = tcase_create("memory");
  tcase_add_test(tc, resident_memory_returns_after_a_burst);
  tcase_add_test(tc, collected_garbage_goes_back_without_recycling);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}

#else /* LP_TEST_SANITIZED */
int main(void) {
  puts("SKIP: RSS is not meaningful under ASan or TSan (freed memory is held in quarantine)");
  return 77; /* Automake's "skipped" */
}
#endif
