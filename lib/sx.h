/*
** sx.h: a pooled state's parts, one per module, as Lua's global_State gathers the parts of its
** modules.  Each part is defined, initialized, reset and freed by its own module; state.c
** allocates the whole, calls each module's init and free in order, and reset.c calls each reset.
** No module writes another's part.
**
** Reached from any thread of the state (lua_getextraspace names the slot, the slot the parts) by
** the allocator, the hooks and the wrappers; written only by the thread that holds the state.
*/
#ifndef LUAPOOL_SX_H
#define LUAPOOL_SX_H

#include <stddef.h>

#include "alloc.h"
#include "base.h"
#include "budget.h"
#include "chunk.h"
#include "entropy.h"
#include "module.h"
#include "sandbox.h"
#include "slot.h"
#include "snapshot.h"
#include "warn.h"

typedef struct lp_sx {
  lp_alloc alloc;       /* alloc.c: the heap, mem_limit, the peak */
  lp_budget budget;     /* budget.c: instructions and deadline of this acquire */
  uint64_t generation;  /* state.c: the generation that made it (luapool_reload); set once */
  struct lp_gen *gen;   /* state.c: that generation's record, which counts it (state.h) */
  lp_snapshot snapshot; /* snapshot.c: what the reset checks */
  lp_seed seed;         /* entropy.c: math.random's seed */
  lp_warn warn;         /* warn.c: the warn switch */
  lp_chunks chunks;     /* chunk.c: luapool_load's cache */
  lp_sandbox sandbox;   /* sandbox.c: finalizers noted */
  lp_modules modules;   /* module.c: luapool_module's reset functions */
} lp_sx;

/*
** Made by a generation older than generation (luapool_reload): closed, never handed out or kept.
** Read by whoever holds the state; written once, before the state was first handed over.
*/
static inline bool lp_sx_stale(const lp_sx *x, uint64_t generation) {
  return x->generation < generation;
}

/*
** The parts of the state L belongs to, or NULL if L is no pooled state: the check of every
** public function that takes a lua_State * and no pool.  The allocator decides (alloc.h), so no
** pointer a foreign state holds is followed.
*/
static inline lp_sx *lp_sx_check(lua_State *L) {
  lp_alloc *a = lp_alloc_of(L);
  return a != NULL ? (lp_sx *)(void *)((char *)a - offsetof(lp_sx, alloc)) : NULL;
}

/* The parts of a state luapool made (any of its threads), from luapool's own callbacks. */
static inline lp_sx *lp_sx_of(lua_State *L) {
  lp_sx *x = lp_slot_of(L)->x;
  lp_assert(x != NULL && x == lp_sx_check(L));
  return x;
}

#endif /* LUAPOOL_SX_H */
