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

#include "base.h"
#include "budget.h"
#include "sx.h"

#define LP_BUDGET_PERIOD 1000 /* instructions between two looks at the clock */

void lp_budget_init(lp_budget *b) {
  b->armed = false;
  b->tripped = false;
  b->why = NULL;
  b->left = UINT64_MAX;
  b->deadline = 0;
}

static int period(const lp_budget *b) {
  return b->left < LP_BUDGET_PERIOD ? (int)b->left : LP_BUDGET_PERIOD;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lp_budget *b = &lp_sx_of(L)->budget;
  if (!b->tripped) {
    uint64_t ran = (uint64_t)lua_gethookcount(L); /* since this thread's last count event */
    const char *why = NULL;
    if (b->left != UINT64_MAX) {
      if (ran >= b->left)
        why = "instructions";
      else
        b->left -= ran;
    }
    if (why == NULL && b->deadline != 0 && lp_time_ns() >= b->deadline)
      why = "time";
    if (why == NULL) {
      if (period(b) != lua_gethookcount(L))
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, period(b));
      return;
    }
    b->tripped = true;
    b->why = why;
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "budget exceeded (%s)", b->why);
}

static lua_State *main_thread(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M;
}

void lp_budget_arm(lua_State *L, lp_budget *b, uint64_t instructions, unsigned ms) {
  b->tripped = false;
  b->left = instructions != 0 ? instructions : UINT64_MAX;
  b->deadline = ms != 0 ? lp_time_ns() + (uint64_t)ms * 1000000u : 0;
  b->armed = instructions != 0 || ms != 0;
  lua_Hook hook = b->armed ? budget_hook : NULL;
  int mask = b->armed ? LUA_MASKCOUNT : 0;
  lua_sethook(L, hook, mask, b->armed ? period(b) : 0);
  lua_State *M = main_thread(L);
  if (M != NULL && M != L)
    lua_sethook(M, hook, mask, b->armed ? period(b) : 0);
}

int luapool_set_budget(lua_State *L, uint64_t instructions, unsigned ms) {
  lp_sx *x = lp_sx_check(L);
  if (x == NULL)
    return LUAPOOL_EINVAL; /* no state, or not one of a pool's */
  lp_budget_arm(L, &x->budget, instructions, ms);
  return LUAPOOL_OK;
}
