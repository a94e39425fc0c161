/*
** alloc.h: every pooled state's allocator.  malloc, with the state's Lua heap counted against
** mem_limit and its high-water mark kept for recycle_kb.  The one measure of a state's heap:
** the reset and the watchdog judge bloat by it.
**
** The fields are written by the allocator, on whichever thread runs the state; everyone else
** reads them only while holding the state.
*/
#ifndef LUAPOOL_ALLOC_H
#define LUAPOOL_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/*
** The gate: called on every growth of LP_ALLOC_GATE_BYTES or more (refused false: return false
** to refuse it) and on every growth mem_limit refuses (refused true).  It must allocate nothing
** and raise nothing.  budget.c installs it: the budget sees big allocations as they happen.
** vector: a new block with no old one and an old size of 0 (Lua's vectors: a stack, a table's
** parts, a buffer; its objects name their type as the old size).
*/
typedef bool (*lp_alloc_gate_f)(void *ud, size_t grow, bool refused, bool vector);
#define LP_ALLOC_GATE_BYTES ((size_t)16 << 10)

typedef struct lp_alloc {
  size_t bytes; /* the Lua heap */
  size_t peak;  /* its high-water mark since lp_alloc_settle (recycle_kb) */
  size_t limit; /* mem_limit; SIZE_MAX for none, and while lifted */
  size_t grown; /* bytes the heap grew by since lp_alloc_take_grown (the budget charges them) */
  union {
    struct {
      bool hit; /* an allocation was refused since lp_alloc_take_hit */
      /* A refusal Lua may still retry after its emergency collection (alloc.c): the call
         refused, and whether it is unresolved.  Only a refusal the retry does not cure counts
         as hit. */
      bool refusing;
    };
    uint16_t hit_or_refusing; /* both flags, for lp_alloc_take_hit's one test */
  };
  const void *refused_ptr;
  size_t refused_osize, refused_nsize;
  lp_alloc_gate_f gate;
  void *gate_ud;
  /* The thread Lua allocated last (lua_newthread: a block whose old size is LUA_TTHREAD), while
     it lives; NULL.  For the stack's cap (budget.c): a coroutine the host makes and resumes. */
  void *newest_thread;
} lp_alloc;

/* lp_alloc.newest_thread as a lua_State (Lua 5.4's LX: the extra space, then the state), or
   NULL. */
static inline lua_State *lp_alloc_newest_thread(const lp_alloc *a) {
  return a->newest_thread != NULL ? (lua_State *)(void *)((char *)a->newest_thread + LUA_EXTRASPACE)
                                  : NULL;
}

void lp_alloc_init(lp_alloc *a, size_t mem_limit); /* mem_limit 0: none */
/* A new Lua state that allocates through a (lua_newstate); NULL when out of memory. */
lua_State *lp_alloc_newstate(lp_alloc *a);
/* The allocator of L if L (or the state L is a thread of) was made by lp_alloc_newstate, else
   NULL: the one sure test that a lua_State is luapool's, whatever its extra space holds. */
lp_alloc *lp_alloc_of(lua_State *L);
/* Creation is over: what it used and let go is not a request's peak. */
void lp_alloc_settle(lp_alloc *a);
/* Lifts the limit (the reset's restore must not fail for it); returns what to pass back to
   lp_alloc_restore_limit. */
size_t lp_alloc_lift_limit(lp_alloc *a);
void lp_alloc_restore_limit(lp_alloc *a, size_t limit);

static inline void lp_alloc_set_gate(lp_alloc *a, lp_alloc_gate_f gate, void *ud) {
  a->gate = gate;
  a->gate_ud = ud;
}

/* The growth since the last call (the budget's charge). */
static inline size_t lp_alloc_take_grown(lp_alloc *a) {
  size_t g = a->grown;
  a->grown = 0;
  return g;
}

/* Was an allocation refused for mem_limit since lp_alloc_take_hit? */
static inline bool lp_alloc_was_refused(const lp_alloc *a) {
  return a->hit || a->refusing; /* one not retried yet is final: Lua is out of the call */
}

/* Within mem_limit?  The reset's invariant: after it, yes, or the state is closed. */
static inline bool lp_alloc_within_limit(const lp_alloc *a) {
  return a->bytes <= a->limit;
}

/* Was an allocation refused since the last call?  Clears the flag (every release asks). */
static inline bool lp_alloc_take_hit(lp_alloc *a) {
  if (a->hit_or_refusing == 0)
    return false;
  a->hit = false;
  a->refusing = false;
  return true;
}

static inline size_t lp_alloc_bytes(const lp_alloc *a) {
  return a->bytes;
}

/* The heap's high-water mark since the state was made (lp_alloc_settle): the stats' heap_max. */
static inline size_t lp_alloc_peak(const lp_alloc *a) {
  return a->peak;
}

/* The heap above kb KiB (bloat_kb)? */
static inline bool lp_alloc_above_kb(const lp_alloc *a, unsigned kb) {
  return a->bytes / 1024 > kb;
}

/* How far the heap once grew above what it holds now (recycle_kb). */
static inline size_t lp_alloc_peak_excess(const lp_alloc *a) {
  return a->peak - a->bytes;
}

#endif /* LUAPOOL_ALLOC_H */
