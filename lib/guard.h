/*
** guard.h: the library wrappers that keep the budget whole (budget.h): the coroutine functions,
** load, the library functions whose work a count hook cannot see, and the debug library's
** hooks.
*/
#ifndef LUAPOOL_GUARD_H
#define LUAPOOL_GUARD_H

#include <lua.h>

/* Protected, at creation, after the libraries and lp_budget_open, before on_create. */
void lp_guard_open(lua_State *L);
/*
** load's lua_load of its chunk: the string s (len bytes), or, with s NULL, the reader function
** at index 1 (raises if it is none; slot 5 keeps its pieces).  The chunk goes to the compiler in
** pieces, each charged to the budget first (guard.c).  Returns lua_load's status.
*/
int lp_guard_load_chunk(lua_State *L, const char *s, size_t len, const char *name,
                        const char *mode);

#endif /* LUAPOOL_GUARD_H */
