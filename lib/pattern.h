/*
** pattern.h: string.find, string.match, string.gmatch and string.gsub, with Lua 5.4's pattern
** semantics, on the budget (budget.h).  Lua's own matcher backtracks inside one C call, where no
** count hook runs, so one call could hold the thread for as long as the pattern likes:
** ("a"):rep(30):match(("a*"):rep(30) .. "b") does 2^30 steps and never allocates.  This one
** counts its steps and charges them as it goes (pattern.c), so a budget, a deadline or
** luapool_interrupt stops it.  guard.c installs them in place of the string library's.
*/
#ifndef LUAPOOL_PATTERN_H
#define LUAPOOL_PATTERN_H

#include <lua.h>

/* The library functions, called as string.find (and so on) are, with the same arguments,
   results and error messages. */
int lp_pattern_find(lua_State *L);
int lp_pattern_match(lua_State *L);
int lp_pattern_gmatch(lua_State *L);
int lp_pattern_gsub(lua_State *L);

#endif /* LUAPOOL_PATTERN_H */
