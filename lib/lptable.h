/*
** lptable.h: each state's luapool table, an array in the registry (under a light userdata key)
** whose slots hold what luapool keeps on the Lua side.  Each slot has one owner:
*/
#ifndef LUAPOOL_LPTABLE_H
#define LUAPOOL_LPTABLE_H

#include <lua.h>

enum {
  LP_T_SNAP = 1, /* snapshot.c: table, copy, metatable-or-false triples of the checked tables */
  LP_T_FSNAP,    /* snapshot.c: function, upvalues pairs of the checked functions */
  LP_T_FROZEN,   /* sandbox.c fills, snapshot.c reads: object -> LP_K_* kind, what the sandbox
                    made or found that the walk may skip (below) */
  LP_T_CACHE,    /* chunk.c: the chunk cache's functions */
  LP_T_TYPEMT,   /* snapshot.c: the types' metatables (or false), by sample index */
  LP_T_PROXIES,  /* sandbox.c: the set of the read-only proxies */
  LP_T_MODULES,  /* sandbox.c: the modules this request required */
  LP_T_CHECK,    /* snapshot.c: the reset's check thread */
  LP_T_FINALIZERS, /* sandbox.c: the objects scripts gave a __gc metatable (weak keys) */
  LP_T_CURRENT,  /* budget.c: the thread running the request (the main thread between two) */
  LP_T_TSNAP,    /* snapshot.c: the coroutines the reset checks (never restored: a change taints) */
  LP_T_MODRESET, /* module.c: reset function, module pairs of luapool_module's modules */
  LP_T_COUNT = LP_T_MODRESET
};

/*
** The kinds in LP_T_FROZEN (sandbox.c marks them, snapshot.c's walk reads them; doc/design.md,
** "What reset guarantees").  An object with no kind is recorded wherever the walk finds it.
*/
enum {
  LP_K_FIXED = 1, /* never changes, never recorded: a proxy, a C function of the libraries
                     luapool opened, the luapool table; what it holds is walked */
  LP_K_WRAPPER,   /* never changes, never recorded: a C closure of the sandbox's; its upvalues
                     reach scripts only mapped (proxies for real tables) */
  LP_K_MAPPED,    /* a real table scripts see only through a proxy (or the overlay) */
  LP_K_PROXYMT,   /* a metatable of the sandbox's (a proxy's, the overlay's, the view's) */
  LP_K_PROTMT,    /* a metatable the freeze protected with __metatable (userdata, types) */
  LP_K_BOOK,      /* bookkeeping of the sandbox's: never walked */
  LP_K_LIB,       /* lp_sandbox_open to the freeze only: a library table luapool opened */
  LP_K_LEAF       /* an LP_K_MAPPED table with no metatable, holding no object the walk would
                     queue (a table, userdata, thread, or function with upvalues; as key or
                     value): passed over by the walk where it is not found exposed */
};

/* Protected: makes L's luapool table, with an empty table in every slot but those whose owner
   makes its own (lptable.c: the snapshot's, the chunk cache's, and the sandbox's FROZEN and
   PROXIES, which stay nil in a state without the sandbox). */
void lp_lptable_create(lua_State *L);
/* Pushes L's luapool table. */
void lp_lptable_push(lua_State *L);
/* Pushes slot i of L's luapool table; returns its type. */
int lp_lptable_get(lua_State *L, int i);
/* Protected: pops a value into slot i of L's luapool table. */
void lp_lptable_set(lua_State *L, int i);

/* One value of each type that has a per-type metatable: nil, boolean, light userdata, number,
   string, function, thread. */
#define LP_TYPE_SAMPLES 7
/* Pushes the LP_TYPE_SAMPLES samples, allocating nothing. */
void lp_lptable_push_type_samples(lua_State *L);

#endif /* LUAPOOL_LPTABLE_H */
