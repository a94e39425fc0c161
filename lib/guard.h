/*
** guard.h: the library wrappers that keep the budget whole (budget.h): the coroutine functions,
** load, the library functions whose work a count hook cannot see, and the debug library's
** hooks.
*/
#ifndef LUAPOOL_GUARD_H
#define LUAPOOL_GUARD_H

#include <stdbool.h>

#include <lua.h>

/* Protected, at creation, after the libraries and lp_budget_open, before on_create. */
void lp_guard_open(lua_State *L);
/*
** The rest of load once its arguments are read: compiles its chunk, the string s (len bytes),
** or, with s NULL, the reader function at index 1 (raises if it is none; slot 5 keeps its
** pieces), in pieces each charged to the budget first (guard.c); then load's results: the
** function (its first upvalue set to argument 4 if env), or fail and the message.
*/
int lp_guard_load_chunk(lua_State *L, const char *s, size_t len, const char *name,
                        const char *mode, bool env);

#endif /* LUAPOOL_GUARD_H */
