/*
** budget.h: the per-acquire budget, an instruction count and a wall-clock deadline, enforced by
** a count hook; it owns the hooks of a pooled state's main thread.
*/
#ifndef LUAPOOL_BUDGET_H
#define LUAPOOL_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

typedef struct lp_budget {
  bool armed, tripped;
  const char *why;   /* "instructions" or "time", once tripped */
  uint64_t left;     /* instructions; UINT64_MAX: no count */
  uint64_t deadline; /* CLOCK_MONOTONIC ns; 0: none */
} lp_budget;

void lp_budget_init(lp_budget *b);
/* Arms (or, with both 0, removes) the budget of the state L belongs to, from now. */
void lp_budget_arm(lua_State *L, lp_budget *b, uint64_t instructions, unsigned ms);
/*
** The request on L (a main thread) is over: the budget and every hook of L are removed (every
** release asks, so the common case, no budget and no hook, is inline).  Returns whether the
** budget ran out.
*/
static inline bool lp_budget_end(lua_State *L, lp_budget *b) {
  bool tripped = b->tripped;
  if (b->armed || tripped || lua_gethook(L) != NULL)
    lp_budget_arm(L, b, 0, 0);
  return tripped;
}

#endif /* LUAPOOL_BUDGET_H */
