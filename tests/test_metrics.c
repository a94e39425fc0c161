/*
** Metrics a server can serve: the acquire wait histogram (luapool_wait_histogram_get), the heap
** figures of the stats (heap_bytes, heap_max) and the Prometheus text (luapool_stats_prometheus).
** Nothing here asserts a duration: a wait is bounded below by construction (the other thread
** sleeps before it releases), never above.
*/
#include <lauxlib.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "util.h"

#define MS 1000000U /* nanoseconds */

static void start(pthread_t *t, void *(*fn)(void *), void *arg) {
  ck_assert_int_eq(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t) {
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

static luapool_wait_histogram histogram(luapool *p) {
  luapool_wait_histogram h;
  memset(&h, 0xAB, sizeof h);
  ck_assert_int_eq(luapool_wait_histogram_get(p, &h), LUAPOOL_OK);
  return h;
}

static uint64_t counted(const luapool_wait_histogram *h) {
  uint64_t n = 0;
  for (int i = 0; i < LUAPOOL_WAIT_BUCKETS; i++)
    n += h->count[i];
  return n;
}

/* The one bucket that grew by one from a to b, the others unchanged; fails otherwise. */
static int the_bucket_that_grew(const luapool_wait_histogram *a, const luapool_wait_histogram *b) {
  int grew = -1;
  for (int i = 0; i < LUAPOOL_WAIT_BUCKETS; i++) {
    if (b->count[i] == a->count[i])
      continue;
    ck_assert_msg(grew < 0 && b->count[i] == a->count[i] + 1,
                  "more than one acquire was counted: bucket %d went from %llu to %llu", i,
                  (unsigned long long)a->count[i], (unsigned long long)b->count[i]);
    grew = i;
  }
  ck_assert_msg(grew >= 0, "the acquire was counted in no bucket");
  return grew;
}

/* ---- the histogram ------------------------------------------------------------------------ */

START_TEST(the_buckets_are_documented_powers_of_two_from_4_us) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  luapool_wait_histogram h = histogram(p);
  for (int i = 0; i < LUAPOOL_WAIT_BUCKETS - 1; i++)
    ck_assert_uint_eq(h.le_ns[i], (uint64_t)4000 << i);
  ck_assert_uint_eq(h.le_ns[LUAPOOL_WAIT_BUCKETS - 1], UINT64_MAX);
  ck_assert_uint_eq(h.total, 0);
  ck_assert_uint_eq(counted(&h), 0);
  ck_assert_uint_eq(h.sum_ns, 0);
  luapool_destroy(p);
}
END_TEST

/* The slow path's bucketing (counters.h): every time lands in the first bucket that holds it. */
START_TEST(a_time_lands_in_the_first_bucket_whose_bound_holds_it) {
  ck_assert_int_eq(lp_counters_wait_bucket(0), -1); /* bucket 0: not counted */
  ck_assert_int_eq(lp_counters_wait_bucket(4000), -1);
  for (int i = 1; i < LP_WAIT_BUCKETS - 1; i++) {
    uint64_t le = lp_counters_wait_le_ns(i), below = lp_counters_wait_le_ns(i - 1);
    ck_assert_int_eq(lp_counters_wait_bucket(below + 1), LP_C_WAIT_BUCKET1 + i - 1);
    ck_assert_int_eq(lp_counters_wait_bucket(le), LP_C_WAIT_BUCKET1 + i - 1);
    ck_assert_int_eq(lp_counters_wait_bucket(le + 1), LP_C_WAIT_BUCKET1 + i);
  }
  ck_assert_int_eq(lp_counters_wait_bucket(UINT64_MAX), LP_C_WAIT_BUCKET_LAST);
  ck_assert_int_eq(lp_counters_wait_bucket((uint64_t)3600 * 1000 * MS), LP_C_WAIT_BUCKET_LAST);
}
END_TEST

START_TEST(the_total_is_acquires_plus_timeouts) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  cfg.magazine_size = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p), *M;
  ck_assert_int_eq(luapool_acquire(p, 0, &M), LUAPOOL_ETIMEDOUT);
  ck_assert_int_eq(luapool_acquire(p, 5, &M), LUAPOOL_ETIMEDOUT);
  luapool_release(p, L);
  for (int i = 0; i < 5; i++)
    luapool_release(p, util_acquire(p));
  luapool_stats st = util_stats(p);
  luapool_wait_histogram h = histogram(p);
  ck_assert_uint_eq(st.acquires, 6);
  ck_assert_uint_eq(st.timeouts, 2);
  ck_assert_uint_eq(h.total, st.acquires + st.timeouts);
  ck_assert_uint_eq(counted(&h), h.total);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_magazine_hit_lands_in_bucket_0_untimed) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.magazine_size = 1;
  luapool *p = util_pool(&cfg);
  luapool_release(p, util_acquire(p)); /* a new state: the slow path; now in the magazine */
  luapool_wait_histogram before = histogram(p);
  luapool_stats st = util_stats(p);
  lua_State *L = util_acquire(p);
  ck_assert_uint_eq(util_stats(p).magazine_hits, st.magazine_hits + 1);
  luapool_wait_histogram after = histogram(p);
  ck_assert_int_eq(the_bucket_that_grew(&before, &after), 0);
  ck_assert_uint_eq(after.sum_ns, before.sum_ns); /* not timed: the fast path reads no clock */
  ck_assert_uint_eq(after.total, before.total + 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

static bool one_waiter(luapool *p, void *arg) {
  (void)arg;
  return util_waiters(p) == 1;
}

/*
** The waiter is inside luapool_acquire before the waiter count reads 1, and the state comes back
** 20 ms after that: its time in luapool_acquire is at least 20 ms, so its bucket's bound is too.
*/
START_TEST(an_acquire_that_waits_lands_at_or_above_the_time_it_waited) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  luapool_wait_histogram before = histogram(p);
  util_waiter w = {p, 10000, 1, NULL};
  pthread_t t;
  start(&t, util_wait_for_state, &w);
  ck_assert_msg(util_wait_until(one_waiter, p, NULL, 10), "the acquire never waited");
  util_sleep_ms(20);
  luapool_release(p, L);
  join(t);
  ck_assert_int_eq(w.rc, LUAPOOL_OK);
  luapool_wait_histogram after = histogram(p);
  int b = the_bucket_that_grew(&before, &after);
  ck_assert_msg(after.le_ns[b] >= 20 * MS, "a wait of at least 20 ms in the bucket up to %llu ns",
                (unsigned long long)after.le_ns[b]);
  ck_assert_uint_ge(after.sum_ns - before.sum_ns, 20 * MS);
  ck_assert_uint_ge(util_stats(p).waits, 1);
  luapool_destroy(p);
}
END_TEST

START_TEST(a_timeout_lands_at_or_above_the_timeout) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  luapool_wait_histogram before = histogram(p);
  util_waiter w = {p, 30, 1, NULL}; /* on another thread: this one has a magazine */
  pthread_t t;
  start(&t, util_wait_for_state, &w);
  join(t);
  ck_assert_int_eq(w.rc, LUAPOOL_ETIMEDOUT);
  luapool_wait_histogram after = histogram(p);
  int b = the_bucket_that_grew(&before, &after);
  ck_assert_uint_ge(after.le_ns[b], 30 * MS);
  ck_assert_uint_ge(after.sum_ns - before.sum_ns, 30 * MS);
  ck_assert_uint_eq(after.total, before.total + 1);
  ck_assert_uint_eq(util_stats(p).timeouts, 1);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* Failures that are neither an acquire nor a timeout are in no count of the histogram. */
START_TEST(a_refused_acquire_is_not_counted) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK);
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_ECLOSED);
  luapool_wait_histogram h = histogram(p);
  ck_assert_uint_eq(h.total, 0);
  ck_assert_uint_eq(counted(&h), 0);
  luapool_destroy(p);
}
END_TEST

#define MERGE_THREADS 4
#define MERGE_ROUNDS 200

typedef struct merge_run {
  luapool *p;
  pthread_barrier_t go;
} merge_run;

static void *acquire_release_rounds(void *arg) {
  merge_run *r = arg;
  pthread_barrier_wait(&r->go);
  for (int i = 0; i < MERGE_ROUNDS; i++) {
    lua_State *L;
    if (luapool_acquire(r->p, -1, &L) == LUAPOOL_OK)
      luapool_release(r->p, L);
  }
  return NULL;
}

/* Each thread counts into its own lp_local; exited threads' counts move to the pool's. */
START_TEST(counts_merge_across_threads_that_exited_and_live_ones) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 2; /* some acquires wait */
  merge_run r = {.p = util_pool(&cfg)};
  pthread_barrier_init(&r.go, NULL, MERGE_THREADS);
  pthread_t t[MERGE_THREADS];
  for (int i = 0; i < MERGE_THREADS; i++)
    start(&t[i], acquire_release_rounds, &r);
  for (int i = 0; i < MERGE_THREADS; i++)
    join(t[i]); /* each exited: its counters were folded into the pool's */
  for (int i = 0; i < MERGE_ROUNDS; i++)
    luapool_release(r.p, util_acquire(r.p)); /* this thread's, live */
  luapool_wait_histogram h = histogram(r.p);
  luapool_stats st = util_stats(r.p);
  ck_assert_uint_eq(st.acquires, (MERGE_THREADS + 1) * MERGE_ROUNDS);
  ck_assert_uint_eq(h.total, (MERGE_THREADS + 1) * MERGE_ROUNDS);
  ck_assert_uint_eq(counted(&h), h.total);
  luapool_destroy(r.p);
  pthread_barrier_destroy(&r.go);
}
END_TEST

/* ---- the heap figures --------------------------------------------------------------------- */

static uint64_t heap_of(lua_State *L) {
  return (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (uint64_t)lua_gc(L, LUA_GCCOUNTB, 0);
}

START_TEST(heap_bytes_sums_the_live_states_and_drops_as_they_close) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  ck_assert_uint_eq(util_stats(p).heap_bytes, 0);
  lua_State *L[3];
  uint64_t sum = 0;
  for (int i = 0; i < 3; i++) {
    L[i] = util_acquire(p);
    sum += heap_of(L[i]);
  }
  luapool_stats st = util_stats(p);
  ck_assert_uint_gt(st.heap_bytes, 0);
  ck_assert_uint_eq(st.heap_bytes, sum); /* measured at the acquire that made each */
  for (int i = 0; i < 3; i++)
    luapool_release(p, L[i]);
  uint64_t all = util_stats(p).heap_bytes;
  ck_assert_uint_gt(all, 0);
  lua_State *one = util_acquire(p);
  luapool_discard(p, one); /* no watchdog thread: closed at once */
  uint64_t two = util_stats(p).heap_bytes;
  ck_assert_uint_lt(two, all);
  ck_assert_uint_gt(two, 0);
  ck_assert_int_eq(luapool_shutdown(p, 0), LUAPOOL_OK);
  st = util_stats(p);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.heap_bytes, 0);
  luapool_destroy(p);
}
END_TEST

/* States that min_idle made are measured by the pass (or create) that made them. */
START_TEST(heap_bytes_counts_prewarmed_states) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.min_idle = 2;
  luapool *p = util_pool(&cfg);
  luapool_stats st = util_stats(p);
  ck_assert_uint_eq(st.live, 2);
  ck_assert_uint_gt(st.heap_bytes, 0);
  ck_assert_uint_ge(st.heap_max, st.heap_bytes / 2);
  luapool_destroy(p);
}
END_TEST

/*
** heap_max is the high-water mark of a state's heap as seen at a release: what a request reached,
** even if it let go of it before the release, and even though the reset then drops the rest.
*/
START_TEST(heap_max_holds_the_largest_heap_a_request_reached) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.magazine_size = 1;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  uint64_t base = util_stats(p).heap_max;
  ck_assert_uint_lt(base, 1 << 20);
  util_run(L, "big = string.rep('x', 1 << 20)");
  luapool_release(p, L); /* the reset drops the global */
  luapool_stats st = util_stats(p);
  ck_assert_uint_ge(st.heap_max, 1 << 20);
  ck_assert_uint_lt(st.heap_bytes, st.heap_max);
  uint64_t max = st.heap_max;

  /* 2 MiB, let go of and collected before the release: still the request's peak */
  L = util_acquire(p);
  util_run(L, "do local s = string.rep('y', 2 << 20) end collectgarbage()");
  ck_assert_uint_lt(heap_of(L), 1 << 20);
  luapool_release(p, L);
  ck_assert_uint_ge(util_stats(p).heap_max, 2 << 20);
  ck_assert_uint_gt(util_stats(p).heap_max, max);

  /* a small request never lowers it */
  max = util_stats(p).heap_max;
  L = util_acquire(p);
  util_run(L, "x = 1");
  luapool_release(p, L);
  ck_assert_uint_eq(util_stats(p).heap_max, max);
  luapool_destroy(p);
}
END_TEST

START_TEST(the_stats_keep_their_size_and_the_heap_fields_their_place) {
  if (sizeof(void *) == 8) {
    ck_assert_uint_eq(sizeof(luapool_stats), 328);
    ck_assert_uint_eq(offsetof(luapool_stats, heap_bytes),
                      offsetof(luapool_stats, held_too_long) + 8);
    ck_assert_uint_eq(offsetof(luapool_stats, heap_max), offsetof(luapool_stats, heap_bytes) + 8);
    ck_assert_uint_eq(offsetof(luapool_stats, reloads), offsetof(luapool_stats, heap_max) + 8);
  }
  luapool_stats st;
  memset(&st, 0xAB, sizeof st);
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  luapool_stats_get(p, &st);
  for (size_t i = 0; i < sizeof st.reserved / sizeof st.reserved[0]; i++)
    ck_assert_uint_eq(st.reserved[i], 0);
  luapool_destroy(p);
}
END_TEST

/* ---- concurrent readers --------------------------------------------------------------------- */

#define BUSY_WORKERS 3
#define BUSY_ROUNDS 300

typedef struct busy_run {
  luapool *p;
  atomic_int workers_left;
  atomic_int errors;
  char error[256];
} busy_run;

static void *busy_worker(void *arg) {
  busy_run *r = arg;
  for (int i = 0; i < BUSY_ROUNDS; i++) {
    lua_State *L;
    if (luapool_acquire(r->p, -1, &L) != LUAPOOL_OK)
      continue;
    if (i % 5 == 0)
      (void)luaL_dostring(L, "t = {} for i = 1, 2000 do t[i] = i end");
    if (i % 17 == 0)
      luapool_discard(r->p, L); /* closed by the watchdog thread */
    else
      luapool_release(r->p, L);
  }
  atomic_fetch_sub(&r->workers_left, 1);
  return NULL;
}

static void busy_fail(busy_run *r, const char *what) {
  if (atomic_fetch_add(&r->errors, 1) == 0)
    snprintf(r->error, sizeof r->error, "%s", what);
}

/* Reads everything while the workers and the watchdog thread change it: under ThreadSanitizer,
   a read of a heap figure or a counter that is not race-free is a report. */
static void *busy_reader(void *arg) {
  busy_run *r = arg;
  static char text[16384];
  uint64_t max_seen = 0;
  while (atomic_load(&r->workers_left) > 0) {
    luapool_stats st;
    luapool_stats_get(r->p, &st);
    if (st.heap_max < max_seen)
      busy_fail(r, "heap_max went down");
    max_seen = st.heap_max;
    luapool_wait_histogram h;
    if (luapool_wait_histogram_get(r->p, &h) != LUAPOOL_OK)
      busy_fail(r, "luapool_wait_histogram_get failed");
    long n = luapool_stats_prometheus(r->p, NULL, text, sizeof text);
    if (n <= 0 || (size_t)n >= sizeof text || strlen(text) != (size_t)n)
      busy_fail(r, "luapool_stats_prometheus: a wrong length");
  }
  return NULL;
}

START_TEST(readers_run_concurrently_with_acquires_closes_and_passes) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.watchdog_interval_ms = 1;
  cfg.max_states = 4;
  cfg.min_idle = 1;
  busy_run r = {.p = util_pool(&cfg)};
  atomic_init(&r.workers_left, BUSY_WORKERS);
  pthread_t w[BUSY_WORKERS], reader;
  start(&reader, busy_reader, &r);
  for (int i = 0; i < BUSY_WORKERS; i++)
    start(&w[i], busy_worker, &r);
  for (int i = 0; i < BUSY_WORKERS; i++)
    join(w[i]);
  join(reader);
  ck_assert_msg(atomic_load(&r.errors) == 0, "%s", r.error);
  luapool_wait_histogram h = histogram(r.p);
  luapool_stats st = util_stats(r.p);
  ck_assert_uint_eq(h.total, st.acquires + st.timeouts);
  ck_assert_uint_eq(counted(&h), h.total);
  ck_assert_uint_eq(st.acquires, BUSY_WORKERS * BUSY_ROUNDS);
  ck_assert_int_eq(luapool_shutdown(r.p, 1000), LUAPOOL_OK);
  ck_assert_uint_eq(util_stats(r.p).heap_bytes, 0);
  luapool_destroy(r.p);
}
END_TEST

/* ---- Prometheus ------------------------------------------------------------------------------ */

/* A sample line: name, optional {labels}, one space, value; returns false if malformed. */
static bool parse_sample(const char *line, char *name, size_t name_len, char *le, size_t le_len,
                         char *value, size_t value_len) {
  size_t n = strcspn(line, "{ ");
  if (n == 0 || n >= name_len)
    return false;
  memcpy(name, line, n);
  name[n] = '\0';
  const char *at = line + n;
  le[0] = '\0';
  if (*at == '{') {
    const char *end = strchr(at, '}');
    if (end == NULL || strncmp(at, "{le=\"", 5) != 0 || end[-1] != '"')
      return false;
    size_t l = (size_t)(end - 1 - (at + 5));
    if (l >= le_len)
      return false;
    memcpy(le, at + 5, l);
    le[l] = '\0';
    at = end + 1;
  }
  if (*at != ' ' || at[1] == '\0' || strlen(at + 1) >= value_len)
    return false;
  strcpy(value, at + 1);
  char *end;
  (void)strtod(value, &end);
  return *end == '\0';
}

static bool name_ok(const char *name) {
  for (const char *c = name; *c != '\0'; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == ':' ||
          (c != name && *c >= '0' && *c <= '9')))
      return false;
  return *name != '\0';
}

typedef struct prom_seen {
  char family[64][128]; /* TYPE'd names */
  char type[64][16];
  int families;
  uint64_t bucket_last, bucket_inf, count;
  int buckets;
  double le_last;
} prom_seen;

static const char *type_of(prom_seen *s, const char *family) {
  for (int i = 0; i < s->families; i++)
    if (strcmp(s->family[i], family) == 0)
      return s->type[i];
  return NULL;
}

static bool ends_with(const char *s, const char *tail) {
  size_t a = strlen(s), b = strlen(tail);
  return a >= b && strcmp(s + a - b, tail) == 0;
}

/* The value of the sample named name (no labels) in text; fails if absent. */
static uint64_t sample(const char *text, const char *name) {
  char needle[160];
  snprintf(needle, sizeof needle, "\n%s ", name);
  const char *at = strstr(text, needle);
  ck_assert_msg(at != NULL, "no sample %s", name);
  return strtoull(at + strlen(needle), NULL, 10);
}

/* Every line a comment or a sample, of the prefix; the histogram cumulative; +Inf == _count. */
static void check_exposition(const char *text, const char *prefix) {
  static prom_seen s;
  memset(&s, 0, sizeof s);
  ck_assert_msg(ends_with(text, "\n"), "the text ends with a newline");
  char *copy = strdup(text);
  ck_assert_ptr_nonnull(copy);
  size_t plen = strlen(prefix);
  char *save = NULL;
  for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char name[128], le[64], value[64];
    if (strncmp(line, "# HELP ", 7) == 0) {
      ck_assert_msg(strncmp(line + 7, prefix, plen) == 0 && line[7 + plen] == '_', "%s", line);
      ck_assert_msg(strchr(line + 7, ' ') != NULL, "a HELP line with no text: %s", line);
      continue;
    }
    if (strncmp(line, "# TYPE ", 7) == 0) {
      char type[16];
      ck_assert_msg(sscanf(line + 7, "%127s %15s", name, type) == 2, "%s", line);
      ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0,
                    "%s", line);
      ck_assert_msg(type_of(&s, name) == NULL, "TYPE twice: %s", line);
      ck_assert_int_lt(s.families, 64);
      strcpy(s.family[s.families], name);
      strcpy(s.type[s.families++], type);
      if (strcmp(type, "counter") == 0)
        ck_assert_msg(ends_with(name, "_total"), "a counter not named _total: %s", name);
      continue;
    }
    ck_assert_msg(line[0] != '#', "a comment that is neither HELP nor TYPE: %s", line);
    ck_assert_msg(parse_sample(line, name, sizeof name, le, sizeof le, value, sizeof value),
                  "not a sample line: %s", line);
    ck_assert_msg(name_ok(name) && strncmp(name, prefix, plen) == 0 && name[plen] == '_',
                  "a name without the prefix: %s", line);
    const char *type = type_of(&s, name);
    if (type == NULL) { /* a histogram's series */
      char family[128];
      strcpy(family, name);
      char *cut = strrchr(family, '_');
      ck_assert_ptr_nonnull(cut);
      *cut = '\0';
      type = type_of(&s, family);
      ck_assert_msg(type != NULL && strcmp(type, "histogram") == 0, "no TYPE for %s", name);
      uint64_t v = strtoull(value, NULL, 10);
      if (ends_with(name, "_bucket")) {
        ck_assert_msg(le[0] != '\0', "a bucket without le: %s", line);
        ck_assert_msg(s.buckets == 0 || v >= s.bucket_last, "buckets not cumulative: %s", line);
        if (strcmp(le, "+Inf") == 0) {
          s.bucket_inf = v;
        } else {
          double bound = strtod(le, NULL);
          ck_assert_msg(s.buckets == 0 || bound > s.le_last, "le not increasing: %s", line);
          s.le_last = bound;
        }
        s.bucket_last = v;
        s.buckets++;
      } else if (ends_with(name, "_count")) {
        s.count = v;
      } else {
        ck_assert_msg(ends_with(name, "_sum"), "a histogram series of no known kind: %s", line);
      }
    } else {
      ck_assert_msg(le[0] == '\0', "labels on a plain metric: %s", line);
    }
  }
  free(copy);
  ck_assert_int_eq(s.buckets, LUAPOOL_WAIT_BUCKETS);
  ck_assert_uint_eq(s.bucket_inf, s.count);
  ck_assert_uint_eq(s.bucket_last, s.count);
}

/* A pool with some of everything: acquires of each kind, a timeout, a discard, a wait. */
static luapool *busy_pool(void) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.max_states = 2;
  cfg.magazine_size = 1;
  luapool *p = util_pool(&cfg);
  lua_State *a = util_acquire(p), *b = util_acquire(p), *c;
  ck_assert_int_eq(luapool_acquire(p, 1, &c), LUAPOOL_ETIMEDOUT);
  luapool_release(p, a);
  luapool_discard(p, b);
  for (int i = 0; i < 10; i++)
    luapool_release(p, util_acquire(p));
  ck_assert_int_eq(luapool_maintain(p), LUAPOOL_OK);
  return p;
}

START_TEST(the_prometheus_text_parses_and_agrees_with_the_stats) {
  luapool *p = busy_pool();
  static char text[32768];
  long n = luapool_stats_prometheus(p, NULL, text, sizeof text);
  ck_assert_int_gt(n, 0);
  ck_assert_uint_lt((size_t)n, sizeof text);
  ck_assert_uint_eq(strlen(text), (size_t)n);
  check_exposition(text, "luapool");
  luapool_stats st = util_stats(p);
  luapool_wait_histogram h = histogram(p);
  ck_assert_uint_eq(sample(text, "luapool_created_total"), st.created);
  ck_assert_uint_eq(sample(text, "luapool_closed_total"), st.closed);
  ck_assert_uint_eq(sample(text, "luapool_acquires_total"), st.acquires);
  ck_assert_uint_eq(sample(text, "luapool_releases_total"), st.releases);
  ck_assert_uint_eq(sample(text, "luapool_magazine_hits_total"), st.magazine_hits);
  ck_assert_uint_eq(sample(text, "luapool_timeouts_total"), st.timeouts);
  ck_assert_uint_eq(sample(text, "luapool_discarded_total"), st.discarded);
  ck_assert_uint_eq(sample(text, "luapool_passes_total"), st.passes);
  ck_assert_uint_eq(sample(text, "luapool_interrupted_total"), st.interrupted);
  ck_assert_uint_eq(sample(text, "luapool_live"), st.live);
  ck_assert_uint_eq(sample(text, "luapool_idle"), st.idle);
  ck_assert_uint_eq(sample(text, "luapool_in_use"), st.in_use);
  ck_assert_uint_eq(sample(text, "luapool_heap_bytes"), st.heap_bytes);
  ck_assert_uint_eq(sample(text, "luapool_heap_max_bytes"), st.heap_max);
  ck_assert_uint_eq(sample(text, "luapool_acquire_wait_seconds_count"), h.total);
  ck_assert_uint_eq(h.total, st.acquires + st.timeouts);
  ck_assert_uint_gt(st.timeouts, 0);
  ck_assert_uint_gt(st.heap_bytes, 0);
  /* the first bucket's bound, and the sum in seconds (exact: ns as a decimal fraction) */
  ck_assert_ptr_nonnull(strstr(text, "\nluapool_acquire_wait_seconds_bucket{le=\"0.000004\"} "));
  ck_assert_ptr_nonnull(strstr(text, "\nluapool_acquire_wait_seconds_bucket{le=\"1.048576\"} "));
  char sum[64];
  snprintf(sum, sizeof sum, "\nluapool_acquire_wait_seconds_sum %llu.%09llu\n",
           (unsigned long long)(h.sum_ns / 1000000000U),
           (unsigned long long)(h.sum_ns % 1000000000U));
  ck_assert_msg(strstr(text, sum) != NULL, "no %s", sum + 1);
  ck_assert_ptr_nonnull(strstr(text, "# TYPE luapool_acquires_total counter\n"));
  ck_assert_ptr_nonnull(strstr(text, "# TYPE luapool_live gauge\n"));
  ck_assert_ptr_nonnull(strstr(text, "# TYPE luapool_acquire_wait_seconds histogram\n"));
  luapool_destroy(p);
}
END_TEST

START_TEST(the_prometheus_text_is_written_as_snprintf_writes) {
  luapool *p = busy_pool();
  long need = luapool_stats_prometheus(p, NULL, NULL, 0);
  ck_assert_int_gt(need, 0);
  char *full = malloc((size_t)need + 1);
  ck_assert_ptr_nonnull(full);
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, full, (size_t)need + 1), need);
  ck_assert_uint_eq(strlen(full), (size_t)need);
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, NULL, 0), need); /* quiet: stable */
  /* exactly too small by one: the whole text but its last byte */
  char *cut = malloc((size_t)need);
  ck_assert_ptr_nonnull(cut);
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, cut, (size_t)need), need);
  ck_assert_uint_eq(strlen(cut), (size_t)need - 1);
  ck_assert_int_eq(memcmp(cut, full, (size_t)need - 1), 0);
  char small[10];
  memset(small, 'Z', sizeof small);
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, small, sizeof small), need);
  ck_assert_uint_eq(strlen(small), sizeof small - 1);
  ck_assert_int_eq(memcmp(small, full, sizeof small - 1), 0);
  char one = 'Z';
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, &one, 1), need);
  ck_assert_int_eq(one, '\0');
  free(cut);
  free(full);
  luapool_destroy(p);
}
END_TEST

START_TEST(the_prometheus_prefix_is_checked_and_used) {
  luapool *p = busy_pool();
  static char text[32768];
  const char *bad[] = {"", "9lives", "a-b", "a b", "a.b", "caf\xc3\xa9", "x{"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strcpy(text, "untouched");
    ck_assert_int_eq(luapool_stats_prometheus(p, bad[i], text, sizeof text), LUAPOOL_EINVAL);
    ck_assert_str_eq(text, "untouched");
  }
  ck_assert(util_log_has("luapool_stats_prometheus: prefix is no metric name"));
  const char *good[] = {"my_app:luapool", "_x", ":", "A9_"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    long n = luapool_stats_prometheus(p, good[i], text, sizeof text);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_lt((size_t)n, sizeof text);
    check_exposition(text, good[i]);
  }
  luapool_destroy(p);
}
END_TEST

START_TEST(misuse_is_refused_with_einval) {
  char text[64];
  util_stderr_begin();
  ck_assert_int_eq(luapool_stats_prometheus(NULL, NULL, text, sizeof text), LUAPOOL_EINVAL);
  luapool_wait_histogram h;
  ck_assert_int_eq(luapool_wait_histogram_get(NULL, &h), LUAPOOL_EINVAL);
  const char *err = util_stderr_end();
  ck_assert_ptr_nonnull(strstr(err, "luapool_stats_prometheus: NULL pool (refused)"));
  ck_assert_ptr_nonnull(strstr(err, "luapool_wait_histogram_get: NULL pool (refused)"));
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  ck_assert_int_eq(luapool_wait_histogram_get(p, NULL), LUAPOOL_EINVAL);
  ck_assert_int_eq(luapool_stats_prometheus(p, NULL, NULL, 5), LUAPOOL_EINVAL);
  ck_assert(util_log_has("luapool_wait_histogram_get: NULL out (refused)"));
  ck_assert(util_log_has("luapool_stats_prometheus: NULL buf with a nonzero len (refused)"));
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("histogram");
  tcase_add_test(tc, the_buckets_are_documented_powers_of_two_from_4_us);
  tcase_add_test(tc, a_time_lands_in_the_first_bucket_whose_bound_holds_it);
  tcase_add_test(tc, the_total_is_acquires_plus_timeouts);
  tcase_add_test(tc, a_magazine_hit_lands_in_bucket_0_untimed);
  tcase_add_test(tc, an_acquire_that_waits_lands_at_or_above_the_time_it_waited);
  tcase_add_test(tc, a_timeout_lands_at_or_above_the_timeout);
  tcase_add_test(tc, a_refused_acquire_is_not_counted);
  tcase_add_test(tc, counts_merge_across_threads_that_exited_and_live_ones);
  suite_add_tcase(s, tc);
  tc = tcase_create("heap");
  tcase_add_test(tc, heap_bytes_sums_the_live_states_and_drops_as_they_close);
  tcase_add_test(tc, heap_bytes_counts_prewarmed_states);
  tcase_add_test(tc, heap_max_holds_the_largest_heap_a_request_reached);
  tcase_add_test(tc, the_stats_keep_their_size_and_the_heap_fields_their_place);
  suite_add_tcase(s, tc);
  tc = tcase_create("concurrent");
  tcase_set_timeout(tc, 120); /* a hang fails instead */
  tcase_add_test(tc, readers_run_concurrently_with_acquires_closes_and_passes);
  suite_add_tcase(s, tc);
  tc = tcase_create("prometheus");
  tcase_add_test(tc, the_prometheus_text_parses_and_agrees_with_the_stats);
  tcase_add_test(tc, the_prometheus_text_is_written_as_snprintf_writes);
  tcase_add_test(tc, the_prometheus_prefix_is_checked_and_used);
  tcase_add_test(tc, misuse_is_refused_with_einval);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
