/*
** budget.h: the per-acquire budget (an instruction count and a wall-clock deadline), the
** interrupt, and why a request stopped.  Enforced by a count hook that every thread of a pooled
** state carries from its creation (coroutines inherit it), by the allocator's gate on big
** allocations (alloc.h), and by the charges of the library wrappers (guard.c).
**
** Once the budget runs out (or an interrupt arrives) the request is "stopped": every later check
** raises again at once, so no more of the request's code runs (doc/security.md has the argument).
*/
#ifndef LUAPOOL_BUDGET_H
#define LUAPOOL_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "luapool.h"

/* Instructions between two looks of the hook on each thread (fewer when less is left). */
#define LP_BUDGET_PERIOD 1000
/* Above this heap, the period shrinks in proportion while a budget is set (budget.c). */
#define LP_BUDGET_HEAP_STEP ((size_t)128 << 10)
/* What the instruction budget charges besides instructions: one per this many bytes of heap
   growth, and per this many bytes of heap a collection walks (doc/security.md, "What each budget
   bounds"); the library wrappers' charges are in guard.c. */
#define LP_BUDGET_BYTES 4
#define LP_BUDGET_GC_BYTES 8

/* luapool_config.stack_limit's default and least value (budget.c, the stack's cap). */
#define LP_STACK_LIMIT 16384
#define LP_STACK_LIMIT_MIN 1024

struct lp_sx;

typedef struct lp_budget {
  /* lp_budget_end's first test reads the three flags as one word (any): each is 0 when unset */
  union {
    struct {
      bool armed;    /* an instruction count or a deadline is set */
      uint8_t why;   /* LUAPOOL_STATUS_INSTRUCTIONS, _TIME or _INTERRUPTED once stopped; 0 */
      bool touched;  /* the main thread's hook or count changed since lp_budget_end cleared */
      uint8_t spare; /* always 0: any has no byte that no member names */
    };
    uint32_t any;
  };
  uint64_t left;       /* instructions; UINT64_MAX: no count */
  uint64_t deadline;   /* CLOCK_MONOTONIC ns; 0: none */
  uint64_t pending;    /* instructions charged since the last look (refused allocations) */
  _Atomic bool interrupt; /* luapool_interrupt, from any thread: a signal, it carries no data */
  lua_State *main;     /* the state's main thread */
  lua_State *current;  /* the thread running the request's code, as far as the wrappers know */
  lua_CFunction xpcall; /* the base library's xpcall, whose message handlers a stop disarms */
  lua_Hook hook;        /* the budget's hook (budget.c), for lp_budget_end's inline test */
  size_t stack_limit;   /* slots a thread's stack may grow to (budget.c); 0: Lua's own */
} lp_budget;

void lp_budget_init(lp_budget *b);
/* At creation, after the libraries: installs the hook on the main thread and the allocator's
   gate.  Raises nothing. */
void lp_budget_open(lua_State *L, struct lp_sx *x, unsigned stack_limit);
/* May a C function push n more values on L's stack, within stack_limit?  (The library wrappers
   that push one result per element ask first: a growth to what lua_checkstack needs is past
   the gate's test, budget.c.) */
bool lp_budget_stack_room(lua_State *L, size_t n);
/* Arms (or, with both 0, removes) the budget of the state L belongs to, from now. */
void lp_budget_arm(lua_State *L, lp_budget *b, uint64_t instructions, unsigned ms);
/* The slow part of lp_budget_end: why the request stopped (0: it did not); then the budget, the
   interrupt and the main thread's hook are as creation left them. */
int lp_budget_end_slow(lp_budget *b);
bool lp_budget_hook_is_ours(lua_State *L);

/* Has luapool_interrupt been called?  Relaxed: the flag carries no data (budget.c). */
static inline bool lp_budget_interrupted(lp_budget *b) {
  return atomic_load_explicit(&b->interrupt, memory_order_relaxed);
}

/*
** The request on the state is over: the budget and the interrupt go, and the main thread gets
** back its hook as creation left it.  Returns why the request stopped (0: it did not).  Every
** release asks, so the common case is inline: lp_budget_quiet, true when there is nothing to
** clear (no budget, no stop, no interrupt, the main thread running and hooked as creation left it).
*/
static inline bool lp_budget_quiet(lp_budget *b) {
  return b->any == 0 && b->current == b->main && !lp_budget_interrupted(b) &&
         lua_gethook(b->main) == b->hook; /* the host's own lua_sethook */
}

static inline int lp_budget_end(lp_budget *b) {
  if (__builtin_expect(lp_budget_quiet(b), 1))
    return 0; /* any == 0: why is 0 */
  return lp_budget_end_slow(b);
}

/* An acquire begins: an interrupt meant for an earlier holder (a late call) is dropped. */
static inline void lp_budget_begin(lp_budget *b) {
  if (lp_budget_interrupted(b))
    atomic_store_explicit(&b->interrupt, false, memory_order_relaxed);
}


/* The library wrappers (guard.c), on the thread L that calls them. */
/* Charges n instructions; raises the budget's error if the request is or gets stopped. */
void lp_budget_charge(lua_State *L, uint64_t n);
/* Raises the budget's error on L (the request must be stopped), disarming what could run. */
int lp_budget_raise(lua_State *L);
/* Before L resumes co (or closes it): co carries the hook if a budget or interrupt needs it, and
   runs; after, lp_budget_left_thread: L runs again. */
void lp_budget_enter_thread(lua_State *L, lua_State *co);
void lp_budget_left_thread(lua_State *L);
bool lp_budget_request_stopped(lua_State *L);
/* Whether a budget is set or the request stopped (debug.sethook is refused then). */
bool lp_budget_engaged(lua_State *L);
/* Puts the hook back on co if it has none (after a script removed its own). */
void lp_budget_rehook(lua_State *co);

/* luapool_interrupt and luapool_status. */
void lp_budget_interrupt(lp_budget *b);
int lp_budget_status(struct lp_sx *x);

#endif /* LUAPOOL_BUDGET_H */
