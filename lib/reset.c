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
#include "frames.h"

/*
** A table that lost this many keys keeps their empty nodes, which every later check would
** traverse: it is cheaper and surer to close the state and make a new one.
*/
#define LP_RESET_MAX_REMOVED 128

/*
** The bound on the Lua code a reset runs: the __close handlers a request left pending (a host
** that ran it with lua_resume, or a to-be-closed slot it left on the stack).
*/
#define LP_CLEANUP_INSTRUCTIONS 1000000u

/*
** Closes pending to-be-closed variables, unwinds and empties the stack, under the cleanup bound;
** false if it ran out or cannot run (the state is then closed, defused: lp_reset_defuse).  Only
** when something is left: an empty stack at the base level with status LUA_OK has nothing to
** unwind (5.4.4's lua_resetthread reallocates the stack each time).  A main thread that died of
** the budget's error inside lua_resume may have its hooks off for good (Lua's allowhook is
** restored only by a pcall that catches the error): its handlers are never run.
*/
int lp_reset_stack(lp_sx *x, lua_State *L, bool stopped) {
  int status = lua_status(L);
  if (lua_gettop(L) == 0 && status == LUA_OK)
    return LP_RESET_CLEAN;
  if (stopped && status != LUA_OK && status != LUA_YIELD)
    return LP_RESET_TAINTED;
  lp_budget_arm(L, &x->budget, LP_CLEANUP_INSTRUCTIONS, 0);
  if (status == LUA_OK) {
    lua_settop(L, 0); /* closes what the host marked to-be-closed */
  } else {
#if defined(HAVE_LUA_CLOSETHREAD)
    (void)lua_closethread(L, L);
#else
    (void)lua_resetthread(L);
#endif
  }
  bool ran_out = lp_budget_end(&x->budget) != 0;
  lua_settop(L, 0); /* an error from a __close handler is left on the stack */
  return ran_out ? LP_RESET_TAINTED : LP_RESET_CLEAN;
}

/* Restores what a request changed; false if it cannot (memory, too many keys removed, or a
   coroutine from the record changed: LP_SNAPSHOT_UNRESTORABLE).  *changed: something was put
   back. */
static bool restore_changes(lua_State *L, lp_sx *x, bool *changed) {
  size_t limit = lp_alloc_lift_limit(&x->alloc); /* putting the state back never fails for it */
  int removed;
  int status = lp_snapshot_restore(L, &x->snapshot, &removed, changed);
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

/*
** The collector as in a new state: running, incremental, Lua's default parameters (LP_GC_,
** gimage.h).  An image that finds it so says the calls would set nothing (in verify mode they
** run anyway, and must find it so too).  Where the image sees what the API cannot, generational
** settings a request changed and then left that mode, they go back too.
*/
static void reset_collector(lua_State *L, const lp_snapshot *s) {
  if (lp_gimage_gc_clean(&s->gimage)) {
    if (s->image == LP_IMAGE_VERIFY &&
        (!lua_gc(L, LUA_GCISRUNNING) ||
         lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE) != LUA_GCINC))
      lp_gimage_disagree("the collector");
    return;
  }
  if (!lua_gc(L, LUA_GCISRUNNING))
    lua_gc(L, LUA_GCRESTART);
  if (lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE) == LUA_GCGEN ||
      lp_gimage_gc_gen_changed(&s->gimage)) {
    /* left generational (or was, during the request): its parameters go back too (switching
       runs a full collection, paid only by states whose user chose that mode) */
    lua_gc(L, LUA_GCGEN, LP_GC_GENMINOR, LP_GC_GENMAJOR);
    lua_gc(L, LUA_GCINC, LP_GC_PAUSE, LP_GC_STEPMUL, LP_GC_STEPSIZE);
  }
  lp_assert(s->gimage.g == NULL || lp_gimage_gc_clean(&s->gimage));
}

/* The invariant after every reset: the heap within mem_limit (a restore lifts it), or closed. */
static bool within_limit(lua_State *L, const lp_alloc *a) {
  if (lp_alloc_within_limit(a))
    return true;
  lua_gc(L, LUA_GCCOLLECT);
  return lp_alloc_within_limit(a);
}

/* The reset functions of luapool_module's modules, with the request's mem_limit lifted (as the
   restore): host code putting the state back must not fail for what the request used. */
static bool module_resets(lua_State *L, lp_sx *x) {
  if (x->modules.resets == 0)
    return true;
  size_t limit = lp_alloc_lift_limit(&x->alloc);
  bool ok = lp_module_reset(&x->modules, L);
  lp_alloc_restore_limit(&x->alloc, limit);
  return ok;
}

int lp_reset_full(const luapool_config *cfg, lp_sx *x, lua_State *L, bool stopped) {
  if (lp_sandbox_has_finalizer(&x->sandbox))
    return LP_RESET_TAINTED; /* a user finalizer could run in the next user's turn */
  if (lp_reset_stack(x, L, stopped) != LP_RESET_CLEAN)
    return LP_RESET_TAINTED;
  bool changed = false;
  if (lp_snapshot_find_dirty(&x->snapshot) > 0 && !restore_changes(L, x, &changed))
    return LP_RESET_TAINTED;
  changed |= lp_snapshot_restore_type_metatables(&x->snapshot);
  if (!module_resets(L, x))
    return LP_RESET_TAINTED; /* a module's hidden state may still be the request's */
  if (bloated(cfg, L, &x->alloc))
    return LP_RESET_BLOAT;
  if (!within_limit(L, &x->alloc))
    return LP_RESET_TAINTED;
  reset_collector(L, &x->snapshot);
  lp_warn_reset(&x->warn);
  if (!lp_entropy_reseed(&x->seed))
    return LP_RESET_TAINTED; /* never hand out a sequence someone may know */
  lp_assert(lua_gettop(L) == 0);
  return changed ? LP_RESET_RESTORED : LP_RESET_CLEAN;
}

/* Removes the raw __close of the metatable of the value at i (the state is being closed). */
static void strip_close(lua_State *L, int i) {
  if (!lua_getmetatable(L, i))
    return;
  lua_pushliteral(L, "__close"); /* a metamethod name: pushing it allocates nothing */
  if (lua_rawget(L, -2) != LUA_TNIL) {
    lua_pushliteral(L, "__close");
    lua_pushnil(L);
    lua_rawset(L, -4); /* an existing key: allocates nothing */
  }
  lua_pop(L, 2);
}

/*
** lua_close runs the main thread's pending __close handlers with no hook: every value on the
** stack and in a local of a live frame loses its metatable's __close first.  The pushes fit in
** the LUA_MINSTACK slots any thread has free.
*/
static void defuse_stack(lua_State *L) {
  if (!lua_checkstack(L, 4))
    return; /* only after out of memory; nothing better is possible */
  int top = lua_gettop(L);
  for (int i = 1; i <= top; i++)
    strip_close(L, i);
  lp_frame f;
  for (bool more = lp_frame_first(L, &f); more; more = lp_frame_next(&f)) {
    for (int n = 1; lua_getlocal(L, &f.ar, n) != NULL; n++) {
      strip_close(L, -1);
      lua_pop(L, 1);
    }
  }
}

void lp_reset_defuse(lp_sx *x, lua_State *L) {
  if (lua_status(L) != LUA_OK || lua_gettop(L) != 0)
    defuse_stack(L);
  if (lp_sandbox_has_finalizer(&x->sandbox))
    lp_sandbox_defuse_finalizers(L);
  (void)lp_snapshot_restore_type_metatables(&x->snapshot); /* a nil with __call, and the like */
}
