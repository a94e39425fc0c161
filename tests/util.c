#include "util.h"

#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void util_config(luapool_config *cfg) {
  luapool_config_init(cfg);
  cfg->watchdog_interval_ms = 0;
  cfg->log = util_log;
}

void util_config_libs(luapool_config *cfg, unsigned libs) {
  util_config(cfg);
  cfg->libs = libs;
  cfg->magazine_size = 1; /* the same state comes back */
}

const unsigned util_profiles[2] = {LUAPOOL_LIBS_SAFE, LUAPOOL_LIBS_ALL};
const char *const util_profile_names[2] = {"SAFE", "ALL"};

luapool *util_pool(const luapool_config *cfg) {
  luapool *p = NULL;
  int rc = luapool_create(cfg, &p);
  ck_assert_msg(rc == LUAPOOL_OK, "luapool_create: %s", luapool_strerror(rc));
  ck_assert_ptr_nonnull(p);
  return p;
}

lua_State *util_acquire(luapool *p) {
  lua_State *L;
  ck_assert_int_eq(luapool_acquire(p, 0, &L), LUAPOOL_OK);
  return L;
}

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static int log_count;
static char log_all[8192];

void util_log(void *ud, int level, const char *msg) {
  (void)ud;
  (void)level;
  pthread_mutex_lock(&log_mutex);
  log_count++;
  size_t used = strlen(log_all);
  snprintf(log_all + used, sizeof log_all - used, "%s\n", msg);
  pthread_mutex_unlock(&log_mutex);
}

int util_log_count(void) {
  pthread_mutex_lock(&log_mutex);
  int n = log_count;
  pthread_mutex_unlock(&log_mutex);
  return n;
}

bool util_log_has(const char *needle) {
  pthread_mutex_lock(&log_mutex);
  bool found = strstr(log_all, needle) != NULL;
  pthread_mutex_unlock(&log_mutex);
  return found;
}

void util_run(lua_State *L, const char *chunk) {
  int top = lua_gettop(L);
  if (luaL_dostring(L, chunk) != LUA_OK)
    ck_abort_msg("Lua error: %s", lua_tostring(L, -1));
  lua_settop(L, top);
}

int util_on_create_lua(lua_State *L, void *ud) {
  if (luaL_dostring(L, ud) != LUA_OK) {
    fprintf(stderr, "on_create: %s\n", lua_tostring(L, -1));
    return 1;
  }
  return 0;
}

long long util_eval_int(lua_State *L, const char *chunk) {
  int top = lua_gettop(L);
  if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    ck_abort_msg("Lua error: %s", lua_tostring(L, -1));
  long long v = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : (long long)lua_tointeger(L, -1);
  lua_settop(L, top);
  return v;
}

const char *util_error_of(lua_State *L, const char *chunkname, const char *chunk) {
  static char msg[512];
  msg[0] = '\0';
  int status = luaL_loadbufferx(L, chunk, strlen(chunk), chunkname, "t");
  ck_assert_msg(status == LUA_OK, "the chunk does not compile: %s", lua_tostring(L, -1));
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    snprintf(msg, sizeof msg, "%s", m != NULL ? m : "(error object is not a string)");
  }
  lua_settop(L, 0);
  return msg;
}

luapool_stats util_stats(luapool *p) {
  luapool_stats s;
  luapool_stats_get(p, &s);
  return s;
}

double util_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void util_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

bool util_wait_until(bool (*cond)(luapool *p, void *arg), luapool *p, void *arg, double seconds) {
  double end = util_now_ms() + seconds * 1e3;
  for (;;) {
    if (cond(p, arg))
      return true;
    if (util_now_ms() > end)
      return false;
    util_sleep_ms(1);
  }
}

static int stderr_saved = -1, stderr_pipe = -1;

void util_stderr_begin(void) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  fflush(stderr);
  stderr_saved = dup(2);
  ck_assert_int_ge(stderr_saved, 0);
  ck_assert_int_ge(dup2(fds[1], 2), 0);
  close(fds[1]);
  stderr_pipe = fds[0];
}

const char *util_stderr_end(void) {
  static char text[8192];
  fflush(stderr);
  ck_assert_int_ge(dup2(stderr_saved, 2), 0); /* closes the pipe's last write end */
  close(stderr_saved);
  size_t used = 0;
  ssize_t n;
  while (used < sizeof text - 1 && (n = read(stderr_pipe, text + used, sizeof text - 1 - used)) > 0)
    used += (size_t)n;
  text[used] = '\0';
  close(stderr_pipe);
  stderr_saved = stderr_pipe = -1;
  return text;
}

int util_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}

void *util_wait_for_state(void *arg) {
  util_waiter *w = arg;
  w->rc = luapool_acquire(w->p, w->timeout_ms, &w->L);
  if (w->rc == LUAPOOL_OK)
    luapool_release(w->p, w->L);
  return NULL;
}

typedef struct interrupter {
  lua_State *L;
  long delay_ms;
  atomic_int started;
} interrupter;

static interrupter *the_interrupter;

static int interrupter_started(lua_State *L) {
  (void)L;
  atomic_store(&the_interrupter->started, 1);
  return 0;
}

static void *interrupter_main(void *arg) {
  interrupter *in = arg;
  while (atomic_load(&in->started) == 0)
    util_sleep_ms(1);
  if (in->delay_ms > 0)
    util_sleep_ms(in->delay_ms);
  ck_assert_int_eq(luapool_interrupt(in->L), LUAPOOL_OK);
  return NULL;
}

const char *util_error_interrupted(lua_State *L, const char *chunk, long delay_ms) {
  interrupter in = {L, delay_ms, 0};
  the_interrupter = &in;
  lua_pushcfunction(L, interrupter_started);
  lua_setglobal(L, "started");
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, interrupter_main, &in), 0);
  const char *msg = util_error_of(L, "=interrupted", chunk);
  pthread_join(t, NULL);
  the_interrupter = NULL;
  return msg;
}
