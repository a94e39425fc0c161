#include <lauxlib.h>
#include <luapool.h>
#include <stdio.h>

/* A host function every state gets, set up once per state by on_create. */
static int host_greet(lua_State *L) {
  lua_pushfstring(L, "hello, %s", luaL_checkstring(L, 1));
  return 1;
}

static int setup(lua_State *L, void *ud) {
  (void)ud;
  lua_register(L, "greet", host_greet);
  return 0;
}

int main(void) {
  luapool_config cfg;
  luapool_config_init(&cfg); /* defaults first, then what you need */
  cfg.max_states = 64;
  cfg.on_create = setup;

  luapool *pool;
  int rc = luapool_create(&cfg, &pool);
  if (rc != LUAPOOL_OK) {
    fprintf(stderr, "luapool_create: %s\n", luapool_strerror(rc));
    return 1;
  }

  for (int request = 1; request <= 2; request++) {
    lua_State *L;
    rc = luapool_acquire(pool, 100, &L); /* wait at most 100 ms */
    if (rc != LUAPOOL_OK) {
      fprintf(stderr, "luapool_acquire: %s\n", luapool_strerror(rc));
      break;
    }
    /* The previous request's global `seen` is gone: every request starts clean. */
    if (luaL_dostring(L, "local first = (seen == nil); seen = true\n"
                         "return greet('request'), first") == LUA_OK)
      printf("%s (clean: %s)\n", lua_tostring(L, -2), lua_toboolean(L, -1) ? "yes" : "no");
    else
      fprintf(stderr, "script error: %s\n", lua_tostring(L, -1));
    luapool_release(pool, L); /* reset, then kept for the next request */
  }

  luapool_shutdown(pool, 1000);
  luapool_destroy(pool);
  return 0;
}
