/*
** sandbox.h: what a state's libraries look like: the setmetatable that notes finalizers (every
** profile) and, under LUAPOOL_LIB_SANDBOX, the sandbox itself (sandbox.c has its threat model).
*/
#ifndef LUAPOOL_SANDBOX_H
#define LUAPOOL_SANDBOX_H

#include <stdbool.h>

#include <lua.h>

typedef struct lp_sandbox {
  bool finalizer; /* a script set a metatable with __gc (LUAPOOL_LIBS_ALL) since creation */
  bool settled;   /* creation is over: what setmetatable sees is a script's */
} lp_sandbox;

/* Protected, after the libraries and before on_create: trims and wraps the base functions. */
int lp_sandbox_open(lua_State *L, unsigned libs);
/* Protected, after on_create, under LUAPOOL_LIB_SANDBOX: the overlay and the proxies. */
int lp_sandbox_freeze(lua_State *L);
/* Creation is over: what on_create did is trusted. */
void lp_sandbox_settle(lp_sandbox *sb);

/*
** Before lua_close of a state in which a script set a finalizer: those finalizers lose their
** __gc (lua_close would run them with no hook, unbounded).  The host's own finalizers (set from
** C, or by on_create) stay.  Raises nothing.
*/
void lp_sandbox_defuse_finalizers(lua_State *L);

/* Could a finalizer set since creation run in a later request?  (The reset taints the state.) */
static inline bool lp_sandbox_has_finalizer(const lp_sandbox *sb) {
  return sb->finalizer;
}

#endif /* LUAPOOL_SANDBOX_H */
