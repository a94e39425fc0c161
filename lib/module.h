/*
** module.h: modules loaded once per state (luapool_module, luapool_module_source) and the
** reset functions of those that keep state out of Lua's sight.
*/
#ifndef LUAPOOL_MODULE_H
#define LUAPOOL_MODULE_H

#include <stdbool.h>

#include <lua.h>

/* A state's part (sx.h).  Written by the thread that creates or holds the state. */
typedef struct lp_modules {
  bool creating;   /* inside on_create: the one time luapool_module may be called */
  unsigned resets; /* reset functions in LP_T_MODRESET */
} lp_modules;

/* state.c, around on_create. */
static inline void lp_module_begin(lp_modules *m) {
  m->creating = true;
}

static inline void lp_module_end(lp_modules *m) {
  m->creating = false;
}

/*
** reset.c, after the snapshot's restore: calls every reset function with its module, on L
** emptied; false if one raised an error (the state is then closed as tainted).  Nothing to do,
** and no call, for a state with none.
*/
bool lp_module_reset_slow(lp_modules *m, lua_State *L);

static inline bool lp_module_reset(lp_modules *m, lua_State *L) {
  return m->resets == 0 || lp_module_reset_slow(m, L);
}

#endif /* LUAPOOL_MODULE_H */
