/*
** bench_close.c: how long luapool_shutdown takes to close many idle states, against closing the
** same number of bare states with lua_close in a loop (the floor: shutdown cannot be cheaper
** than closing each state).  Measures; never asserts.
*/
#define _POSIX_C_SOURCE 200809L

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"
#include "luapool.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The same libraries luapool's default profile opens. */
static lua_State *bare_state(void) {
  lua_State *L = luaL_newstate();
  if (L != NULL)
    bench_open_safe_libs(L);
  return L;
}

int main(int argc, char **argv) {
  unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 10000;
  if (n == 0) {
    fprintf(stderr, "usage: bench_close [STATES]\n");
    return 2;
  }
  luapool_config cfg;
  luapool_config_init(&cfg);
  cfg.min_idle = n; /* all made by luapool_create */
  cfg.max_idle = n;
  luapool *p;
  double t0 = now_s();
  int rc = luapool_create(&cfg, &p);
  if (rc != LUAPOOL_OK) {
    fprintf(stderr, "luapool_create: %s\n", luapool_strerror(rc));
    return 1;
  }
  double made = now_s() - t0;
  t0 = now_s();
  luapool_shutdown(p, 0);
  double shut = now_s() - t0;
  luapool_destroy(p);

  lua_State **bare = malloc(n * sizeof *bare);
  if (bare == NULL)
    return 1;
  for (unsigned i = 0; i < n; i++)
    if ((bare[i] = bare_state()) == NULL)
      return 1;
  t0 = now_s();
  for (unsigned i = 0; i < n; i++)
    lua_close(bare[i]);
  double loop = now_s() - t0;
  free(bare);

  printf("bench_close: %u idle states (LUAPOOL_LIBS_SAFE)\n", n);
  printf("  luapool_create with min_idle=%u   %8.1f ms  (%.1f us per state)\n", n, made * 1e3,
         made * 1e6 / n);
  printf("  luapool_shutdown closing them     %8.1f ms  (%.1f us per state)\n", shut * 1e3,
         shut * 1e6 / n);
  printf("  lua_close of as many bare states  %8.1f ms  (%.1f us per state)\n", loop * 1e3,
         loop * 1e6 / n);
  printf("  shutdown / bare close loop        %8.2f\n", shut / loop);
  return 0;
}
