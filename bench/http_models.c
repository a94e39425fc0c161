/*
** http_models: what a server's thread model does with luapool, measured over HTTP (libmicrohttpd
** on loopback, driven by wrk from bench/http_models.sh).  Measures, never asserts.
**
**   http_models --port N --model pool|tpc --threads N --strategy luapool|pinned
**
** --model pool: libmicrohttpd's thread pool of --threads workers, each serving the connections
**   it accepted (a worker pool: nginx's or Apache's event MPM's shape);
** --model tpc: a thread per connection (Apache's prefork/worker shape, mod_lua's per-thread
**   states).
** --strategy luapool: a pool with the default sandbox and full reset, the handler cached with
**   luapool_load, a 200 ms time budget (budget_ms) per request;
** --strategy pinned: one stock state per server thread, made on its first request, the handler
**   compiled once, never reset (the upper bound: no isolation at all), and the same 200 ms
**   budget done by hand with a count hook and a deadline.
**
** Routes: /hello answers "hello <path>" from a tiny Lua handler; /spin runs `while true do end`,
** which the budget stops after 200 ms (503).  Runs until stdin closes or SIGINT/SIGTERM.
*/
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "luapool.h"

#define BUDGET_MS 200

static const char hello_src[] = "local path = ...\nreturn 'hello ' .. path\n";
static const char spin_src[] = "while true do end\n";

static luapool *pool;
static int use_pool;

/* ---- pinned: one stock state per server thread, with a hand-made time budget -------------- */

typedef struct pinned {
  lua_State *L;
  int hello, spin; /* registry references of the compiled handlers */
  struct timespec deadline;
} pinned;

static __thread pinned *mine;

static double ms_until(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(t->tv_sec - now.tv_sec) * 1e3 + (double)(t->tv_nsec - now.tv_nsec) / 1e6;
}

static void pinned_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  pinned *pn = *(pinned **)lua_getextraspace(L);
  if (ms_until(&pn->deadline) <= 0)
    luaL_error(L, "time budget exceeded");
}

static pinned *pinned_get(void) {
  if (mine != NULL)
    return mine;
  pinned *pn = calloc(1, sizeof *pn);
  if (pn == NULL)
    return NULL;
  pn->L = luaL_newstate();
  if (pn->L == NULL) {
    free(pn);
    return NULL;
  }
  luaL_openlibs(pn->L);
  *(pinned **)lua_getextraspace(pn->L) = pn;
  if (luaL_loadstring(pn->L, hello_src) != LUA_OK || luaL_loadstring(pn->L, spin_src) != LUA_OK)
    abort();
  pn->spin = luaL_ref(pn->L, LUA_REGISTRYINDEX);
  pn->hello = luaL_ref(pn->L, LUA_REGISTRYINDEX);
  lua_sethook(pn->L, pinned_hook, LUA_MASKCOUNT, 1000);
  mine = pn; /* a thread's state lives as long as the process: the bench never frees it */
  return pn;
}

/* Runs the route's handler; writes the body into out and returns the HTTP status. */
static int run_pinned(const char *url, char *out, size_t len) {
  pinned *pn = pinned_get();
  if (pn == NULL)
    return 500;
  clock_gettime(CLOCK_MONOTONIC, &pn->deadline);
  pn->deadline.tv_sec += BUDGET_MS / 1000;
  pn->deadline.tv_nsec += (long)(BUDGET_MS % 1000) * 1000000L;
  if (pn->deadline.tv_nsec >= 1000000000L) {
    pn->deadline.tv_sec++;
    pn->deadline.tv_nsec -= 1000000000L;
  }
  bool spin = strcmp(url, "/spin") == 0;
  lua_rawgeti(pn->L, LUA_REGISTRYINDEX, spin ? pn->spin : pn->hello);
  lua_pushstring(pn->L, url);
  int status = lua_pcall(pn->L, 1, 1, 0);
  int code = status == LUA_OK ? 200 : spin ? 503 : 500;
  snprintf(out, len, "%s", lua_tostring(pn->L, -1) ? lua_tostring(pn->L, -1) : "?");
  lua_settop(pn->L, 0);
  return code;
}

/* ---- luapool ----------------------------------------------------------------------------------
 */

static int run_luapool(const char *url, char *out, size_t len) {
  lua_State *L;
  if (luapool_acquire(pool, 5000, &L) != LUAPOOL_OK) {
    snprintf(out, len, "no state");
    return 503;
  }
  bool spin = strcmp(url, "/spin") == 0;
  int code = 200;
  if (luapool_load(L, spin ? "=spin" : "=hello", spin ? spin_src : hello_src,
                   spin ? sizeof spin_src - 1 : sizeof hello_src - 1) != LUA_OK) {
    code = 500;
  } else {
    lua_pushstring(L, url);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
      code = luapool_status(L) == LUAPOOL_STATUS_TIME ? 503 : 500;
  }
  snprintf(out, len, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  luapool_release(pool, L);
  return code;
}

/* ---- the server ---------------------------------------------------------------------------- */

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **con_cls) {
  (void)cls, (void)method, (void)version, (void)upload, (void)upload_len, (void)con_cls;
  char body[256];
  int code = use_pool ? run_luapool(url, body, sizeof body) : run_pinned(url, body, sizeof body);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return MHD_NO;
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)code, r);
  MHD_destroy_response(r);
  return ok;
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s --port N --model pool|tpc --threads N --strategy luapool|pinned\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv) {
  unsigned port = 0, threads = 2;
  const char *model = "pool", *strategy = "luapool";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0)
      port = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--model") == 0)
      model = argv[i + 1];
    else if (strcmp(argv[i], "--threads") == 0)
      threads = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--strategy") == 0)
      strategy = argv[i + 1];
    else
      usage(argv[0]);
  }
  bool tpc = strcmp(model, "tpc") == 0;
  use_pool = strcmp(strategy, "luapool") == 0;
  if (port == 0 || threads == 0 || (!tpc && strcmp(model, "pool") != 0) ||
      (!use_pool && strcmp(strategy, "pinned") != 0))
    usage(argv[0]);
  if (use_pool) {
    luapool_config cfg;
    luapool_config_init(&cfg);
    cfg.budget_ms = BUDGET_MS;
    cfg.min_idle = tpc ? 4 : threads;
    cfg.max_idle = tpc ? 256 : threads * 2;
    int rc = luapool_create(&cfg, &pool);
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "luapool_create: %s\n", luapool_strerror(rc));
      return 1;
    }
  }
  struct MHD_Daemon *d;
  if (tpc)
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_ERROR_LOG,
                         (uint16_t)port, NULL, NULL, answer, NULL, MHD_OPTION_CONNECTION_LIMIT,
                         1000u, MHD_OPTION_END);
  else
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                         (uint16_t)port, NULL, NULL, answer, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                         threads, MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
  if (d == NULL) {
    fprintf(stderr, "http_models: cannot start the server on port %u\n", port);
    return 1;
  }
  fprintf(stderr, "http_models: %s model, %u threads, %s, port %u\n", model, threads, strategy,
          port);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  int sig;
  sigwait(&set, &sig);
  MHD_stop_daemon(d);
  if (use_pool) {
    luapool_stats s;
    luapool_stats_get(pool, &s);
    fprintf(stderr, "http_models: %llu acquires, %llu budget stops, %u states\n",
            (unsigned long long)s.acquires, (unsigned long long)s.budget_exceeded, s.live);
    luapool_destroy(pool);
  }
  return 0;
}
