/*
** guard.h: the library wrappers that keep the budget whole (budget.h): the coroutine functions,
** the library functions whose work a count hook cannot see, and the debug library's hooks.
*/
#ifndef LUAPOOL_GUARD_H
#define LUAPOOL_GUARD_H

#include <lua.h>

/* Protected, at creation, after the libraries and lp_budget_open, before on_create. */
void lp_guard_open(lua_State *L);

#endif /* LUAPOOL_GUARD_H */
