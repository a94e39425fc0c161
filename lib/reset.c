/*
** reset.c: the reset, a sequence over the state's parts, each reset by its own module.
**
** LUAPOOL_RESET_STACK empties the stack (reset.h).  LUAPOOL_RESET_FULL makes the state as clean
** as a new one (doc/design.md, "What reset guarantees"): a state in which a finalizer was set is
** closed; then the stack, what the snapshot finds changed (restored with mem_limit lifted), the
** types' metatables, the heap (bloat_kb), the collector, the warn switch, math.random's seed.
** What cannot be restored cheaply and surely taints the state.  The hooks went with the budget
** (lp_budget_end), before the reset.
*/
#include "reset.h"
#include "config.h"

/* Lua 5.4's collector defaults (lgc.h: LUAI_GCPAUSE, LUAI_GCMUL, LUAI_GCSTEPSIZE). */
#define LP_GC_PAUSE 200
#define LP_GC_STEPMUL 100
#define LP_GC_STEPSIZE 13
#define LP_GC_GENMINOR 20  /* LUAI_GENMINORMUL */
#define LP_GC_GENMAJOR 100 /* LUAI_GENMAJORMUL */

/*
** A table that lost this many keys keeps their empty nodes, which every later check would
** traverse: it is cheaper and surer to close the state and make a new one.
*/
#define LP_RESET_MAX_REMOVED 128

/*
** Closes pending to-be-closed variables, unwinds and shrinks the stack.  Only when something is
** left: a to-be-closed value lives on the stack, and an empty stack at the base level with
** status LUA_OK has nothing to unwind (5.4.4's lua_resetthread reallocates the stack each
** time; the collector shrinks a stack that grew).
*/
static void reset_stack(lua_State *L) {
  if (lua_gettop(L) == 0 && lua_status(L) == LUA_OK)
    return;
#if defined(HAVE_LUA_CLOSETHREAD)
  (void)lua_closethread(L, L);
#else
  (void)lua_resetthread(L);
#endif
  lua_settop(L, 0); /* an error from a __close handler is left on the stack */
}

/* Restores what a request changed; false if it cannot (memory, too many keys removed, or a
   coroutine from the record changed: LP_SNAPSHOT_UNRESTORABLE). */
static bool restore_changes(lua_State *L, lp_sx *x) {
  size_t limit = lp_alloc_lift_limit(&x->alloc); /* putting the state back never fails for it */
  int removed;
  int status = lp_snapshot_restore(L, &x->snapshot, &removed);
  lp_alloc_restore_limit(&x->alloc, limit);
  return status == LUA_OK && removed <= LP_RESET_MAX_REMOVED;
}

/*
** Above bloat_kb: rare (a request that allocated megabytes), so paid here, once what the user
** kept is unreachable: the garbage goes.  No user finalizer can run: a state with one is tainted
** before this.  True if the heap stays above the bound.
*/
static bool bloated(const luapool_config *cfg, lua_State *L, const lp_alloc *a) {
  if (cfg->bloat_kb == 0 || !lp_alloc_above_kb(a, cfg->bloat_kb))
    return false;
  lua_gc(L, LUA_GCCOLLECT);
  return lp_alloc_above_kb(a, cfg->bloat_kb);
}

/* The collector as in a new state: running, incremental, Lua's default parameters. */
static void reset_collector(lua_State *L) {
  if (!lua_gc(L, LUA_GCISRUNNING))
    lua_gc(L, LUA_GCRESTART);
  if (lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE) == LUA_GCGEN) {
    /* left generational: its parameters go back too (switching runs a full collection, paid
       only by states whose user chose that mode) */
    lua_gc(L, LUA_GCGEN, LP_GC_GENMINOR, LP_GC_GENMAJOR);
    lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE);
  }
}

int lp_reset_full(const luapool_config *cfg, lp_sx *x, lua_State *L) {
  if (lp_sandbox_has_finalizer(&x->sandbox))
    return LP_RESET_TAINTED; /* a user finalizer could run in the next user's turn */
  reset_stack(L);
  bool changed = lp_snapshot_find_dirty(&x->snapshot) > 0;
  if (changed && !restore_changes(L, x))
    return LP_RESET_TAINTED;
  changed |= lp_snapshot_restore_type_metatables(&x->snapshot);
  if (bloated(cfg, L, &x->alloc))
    return LP_RESET_BLOAT;
  reset_collector(L);
  lp_warn_reset(&x->warn);
  if (!lp_entropy_reseed(&x->seed))
    return LP_RESET_TAINTED; /* never hand out a sequence someone may know */
  lp_assert(lua_gettop(L) == 0);
  return changed ? LP_RESET_RESTORED : LP_RESET_CLEAN;
}
