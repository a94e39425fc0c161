/*
** budget.c: the per-acquire budget, an instruction count and a wall-clock deadline, enforced by
** a count hook.  The hook runs every LP_BUDGET_PERIOD instructions (fewer when less is left);
** when the budget runs out it raises "budget exceeded" and re-arms itself at every instruction,
** so a script that catches the error with pcall fails again at once.  Coroutines inherit the
** hook when they are created and share the budget: it lives in the state's lp_sx.
**
** Blind spots (documented in luapool_set_budget(3)): a count hook cannot interrupt one long C
** call (string.rep, a pattern that backtracks, table.sort of a huge table) nor run inside a
** finalizer; mem_limit bounds the memory such a call can take, not its time.
*/
#include <lauxlib.h>
#include <time.h>

#include "internal.h"

#define LP_BUDGET_PERIOD 1000 /* instructions between two looks at the clock */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int period(const lp_sx *x) {
  return x->budget_left < LP_BUDGET_PERIOD ? (int)x->budget_left : LP_BUDGET_PERIOD;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lp_sx *x = lp_sx_of(L);
  if (!x->budget_tripped) {
    uint64_t ran = (uint64_t)lua_gethookcount(L); /* since this thread's last count event */
    const char *why = NULL;
    if (x->budget_left != UINT64_MAX) {
      if (ran >= x->budget_left)
        why = "instructions";
      else
        x->budget_left -= ran;
    }
    if (why == NULL && x->budget_deadline != 0 && now_ns() >= x->budget_deadline)
      why = "time";
    if (why == NULL) {
      if (period(x) != lua_gethookcount(L))
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, period(x));
      return;
    }
    x->budget_tripped = true;
    x->budget_why = why;
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "budget exceeded (%s)", x->budget_why);
}

static lua_State *main_thread(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M;
}

/* Arms (or, with both 0, removes) the budget of the state L belongs to, from now. */
void lp_budget_arm(lua_State *L, lp_sx *x, uint64_t instructions, unsigned ms) {
  x->budget_tripped = false;
  x->budget_left = instructions != 0 ? instructions : UINT64_MAX;
  x->budget_deadline = ms != 0 ? now_ns() + (uint64_t)ms * 1000000u : 0;
  x->budget_armed = instructions != 0 || ms != 0;
  lua_Hook hook = x->budget_armed ? budget_hook : NULL;
  int mask = x->budget_armed ? LUA_MASKCOUNT : 0;
  lua_sethook(L, hook, mask, x->budget_armed ? period(x) : 0);
  lua_State *M = main_thread(L);
  if (M != NULL && M != L)
    lua_sethook(M, hook, mask, x->budget_armed ? period(x) : 0);
}

void lp_budget_clear(lua_State *L, lp_sx *x) {
  if (x->budget_armed || x->budget_tripped || lua_gethook(L) != NULL)
    lp_budget_arm(L, x, 0, 0);
}

int luapool_set_budget(lua_State *L, uint64_t instructions, unsigned ms) {
  if (L == NULL)
    return LUAPOOL_EINVAL;
  lp_budget_arm(L, lp_sx_of(L), instructions, ms);
  return LUAPOOL_OK;
}
