/*
** entropy.c: math.random's seeds, from the kernel (entropy.h).
*/
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

#include "entropy.h"

#define LP_RNG_BUF 1024

static _Thread_local struct {
  unsigned char buf[LP_RNG_BUF];
  unsigned pos;
  unsigned gen;
} rng = {{0}, LP_RNG_BUF, 0};

static _Atomic unsigned fork_gen = 1; /* a forked child must not replay its parent's bytes */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork(void) {
  atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

void lp_entropy_after_fork(void) {
  after_fork();
}

static void install_atfork(void) {
  pthread_atfork(NULL, NULL, after_fork);
}

/* n <= LP_RNG_BUF bytes from the kernel, through the calling thread's buffer; false if it gives
   none. */
static bool entropy_bytes(void *out, size_t n) {
  pthread_once(&atfork_once, install_atfork);
  unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  if (rng.gen != gen || LP_RNG_BUF - rng.pos < n) {
    size_t got = 0;
    while (got < LP_RNG_BUF) {
      ssize_t r = getrandom(rng.buf + got, LP_RNG_BUF - got, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return false;
      got += (size_t)r;
    }
    rng.pos = 0;
    rng.gen = gen;
  }
  memcpy(out, rng.buf + rng.pos, n);
  memset(rng.buf + rng.pos, 0, n); /* used bytes do not linger */
  rng.pos += (unsigned)n;
  return true;
}

/* The xoshiro256** state behind math.random (lmathlib's 32-byte upvalue), or NULL. */
static unsigned char *find_ranstate(lua_State *L) {
  unsigned char *st = NULL;
  int top = lua_gettop(L);
  lua_getglobal(L, LUA_MATHLIBNAME);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "random") == LUA_TFUNCTION &&
      lua_getupvalue(L, -1, 1) != NULL) {
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_rawlen(L, -1) == LP_SEED_BYTES)
      st = lua_touserdata(L, -1);
  }
  lua_settop(L, top);
  return st;
}

int lp_entropy_seed_open(lua_State *L, lp_seed *s) {
  s->ranstate = find_ranstate(L);
  if (s->ranstate == NULL)
    return 0; /* no math library, or not lmathlib's: nothing luapool can reseed */
  memset(s->last, 0, sizeof s->last);
  memcpy(s->ranstate, s->last, sizeof s->last);
  s->ranstate[0] = 1; /* differs from last: the reseed below is not skipped */
  if (!lp_entropy_reseed(s))
    return luaL_error(L, "no random bytes from the kernel for math.random's seed");
  return 0;
}

/*
** Unless math.random's state is still the one the last reseed wrote: then nobody drew from it,
** so nobody has seen the sequence the next user will get.
*/
bool lp_entropy_reseed(lp_seed *s) {
  if (s->ranstate == NULL || memcmp(s->ranstate, s->last, sizeof s->last) == 0)
    return true;
  return lp_entropy_reseed_now(s);
}

bool lp_entropy_reseed_now(lp_seed *s) {
  if (s->ranstate == NULL)
    return true;
  if (!entropy_bytes(s->last, sizeof s->last))
    return false;
  s->last[0] |= 1; /* xoshiro's state must not be all zero */
  memcpy(s->ranstate, s->last, sizeof s->last);
  return true;
}
