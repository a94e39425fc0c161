/*
** entropy.h: math.random's seeds, from the kernel.  A per-thread buffer of getrandom(2) bytes
** (one getrandom per reset would cost ~450 ns), refilled after fork; and each state's seed
** record, which tells whether anybody drew from math.random since the last seed.
*/
#ifndef LUAPOOL_ENTROPY_H
#define LUAPOOL_ENTROPY_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#define LP_SEED_BYTES 32 /* lmathlib's xoshiro256** state */

typedef struct lp_seed {
  unsigned char *ranstate;           /* math.random's state (a userdata upvalue), or NULL */
  unsigned char last[LP_SEED_BYTES]; /* what the last seed wrote there: unchanged means unused */
} lp_seed;

/* Protected, once the libraries are open: finds math.random's state and seeds it from the
   kernel (Lua seeds from the time and addresses: a guess away); raises an error if it cannot. */
int lp_entropy_seed_open(lua_State *L, lp_seed *s);

/* A new seed, unless nobody drew since the last one; false if the kernel gave no bytes. */
bool lp_entropy_reseed(lp_seed *s);

/*
** In a fork's child (pool.c's handler, which may run before entropy.c's own): the calling
** thread's buffer holds bytes its parent holds too, so the next draw refills it; and a new seed
** for an idle state whether anybody drew from it or not, since the parent holds the same state
** and would play the same sequence.  false if the kernel gave no bytes.
*/
void lp_entropy_after_fork(void);
bool lp_entropy_reseed_now(lp_seed *s);

#endif /* LUAPOOL_ENTROPY_H */
