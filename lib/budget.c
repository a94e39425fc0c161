/*
** budget.c: the per-acquire budget, the interrupt, and why a request stopped (budget.h).
**
** Three checks share one state (lp_budget) and one rule, check():
**   - the count hook, on every thread of the state (installed at creation on the main thread;
**     Lua gives a new coroutine its creator's hook), every LP_BUDGET_PERIOD instructions: it
**     charges what the thread ran plus the heap growth since the last look;
**   - the allocator's gate (alloc.h), on every allocation of LP_ALLOC_GATE_BYTES or more and on
**     every allocation mem_limit refuses: it stops the request when the budget would run out
**     (letting that one allocation through), refuses every big allocation after, and makes the
**     running thread's hook look at its next instruction, so that a C function that allocates
**     in a loop is stopped within two allocations;
**   - the charges of the library wrappers (guard.c), before a call whose work the count cannot
**     see (a coroutine's first instructions, a collection, a walk over a long string or table).
**
** Stopping: the hook raises "budget exceeded (...)" (or "request interrupted") and sets its
** thread's count to 1, so a script that catches the error fails again at its next instruction.
** An error raised inside a hook runs with Lua's hooks off (allowhook) until a pcall catches it,
** and Lua calls the innermost xpcall's message handler before that: so each raise first replaces
** the handler of every xpcall frame on the thread with one that returns the error untouched
** (disarm_handlers).  The __close handlers the unwinding runs run after the pcall restored the
** hooks, and fail at their first instruction.  The coroutine wrappers raise in the resumer too,
** and never close a coroutine of a stopped request (its hooks may be off for good).
*/
#include <lauxlib.h>

#include "base.h"
#include "budget.h"
#include "frames.h"
#include "gimage.h"
#include "lptable.h"
#include "sx.h"

void lp_budget_init(lp_budget *b) {
  b->any = 0; /* armed, why, touched and spare */
  b->left = UINT64_MAX;
  b->deadline = 0;
  b->pending = 0;
  atomic_init(&b->interrupt, false);
  b->main = NULL;
  b->current = NULL;
  b->xpcall = NULL;
  b->hook = NULL;
  b->stack_limit = 0;
}

/*
** The count between two looks: LP_BUDGET_PERIOD, fewer when less is left, and, while a budget is
** set, fewer as the heap grows past LP_BUDGET_HEAP_STEP: one VM instruction can do work in
** proportion to the heap without calling a function (comparing, hashing or converting a long
** string, a collection step), so the looks come often enough that the time between two of them
** stays bounded whatever the heap holds.
*/
static int period_for(const lp_budget *b, size_t heap) {
  uint64_t n = LP_BUDGET_PERIOD;
  if (b->armed && heap > LP_BUDGET_HEAP_STEP)
    n = (uint64_t)LP_BUDGET_PERIOD * LP_BUDGET_HEAP_STEP / heap + 1;
  return b->left < n ? (int)b->left : (int)n;
}

static int period(const lp_budget *b) {
  return period_for(b, 0);
}

/* a + b, saturating: a charge of UINT64_MAX means "more than any budget". */
static uint64_t sum(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
** Charges ran instructions; the reason to stop, or 0.  The interrupt is a relaxed load: it
** carries no data, and the next look after the store sees it (C11's coherence order).
*/
static int check(lp_budget *b, uint64_t ran) {
  if (lp_budget_interrupted(b))
    return LUAPOOL_STATUS_INTERRUPTED;
  ran = sum(ran, b->pending);
  b->pending = 0;
  if (b->left != UINT64_MAX) {
    if (ran >= b->left) {
      b->left = 0;
      return LUAPOOL_STATUS_INSTRUCTIONS;
    }
    b->left -= ran;
  }
  if (b->deadline != 0 && lp_time_ns() >= b->deadline)
    return LUAPOOL_STATUS_TIME;
  return 0;
}

static const char *message(int why) {
  switch (why) {
  case LUAPOOL_STATUS_INSTRUCTIONS:
    return "budget exceeded (instructions)";
  case LUAPOOL_STATUS_TIME:
    return "budget exceeded (time)";
  default:
    return "request interrupted (luapool_interrupt)";
  }
}

/* The message handler a stop leaves in every xpcall frame: the error goes through as it is. */
static int inert_handler(lua_State *L) {
  lua_settop(L, 1);
  return 1;
}

/*
** Replaces the message handler (stack slot 2 of the base library's xpcall, where Lua's
** lua_pcallk reads it) of every xpcall frame on L's stack, one step a frame (frames.h: a stack of
** 150,000 frames took 30 s through lua_getstack).  Pushes at most 2 values: a hook and a C
** function have LUA_MINSTACK free slots.
*/
static void disarm_handlers(lua_State *L, const lp_budget *b) {
  if (b->xpcall == NULL)
    return;
  lp_frame f;
  for (bool more = lp_frame_first(L, &f); more; more = lp_frame_next(&f)) {
    if (!lua_getinfo(L, "f", &f.ar))
      continue;
    bool is_xpcall = lua_tocfunction(L, -1) == b->xpcall;
    lua_pop(L, 1);
    if (!is_xpcall || lua_getlocal(L, &f.ar, 2) == NULL)
      continue;
    lua_pop(L, 1);
    lua_pushcfunction(L, inert_handler);
    if (lua_setlocal(L, &f.ar, 2) == NULL)
      lua_pop(L, 1);
  }
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/*
** The running thread, for the gate to poke.  Anchored in the luapool table (an existing array
** slot: storing allocates nothing), so that a coroutine the host resumed and then dropped is
** never poked after the collector freed it.  L is any thread of the state.
*/
static void set_current(lua_State *L, lp_budget *b, lua_State *co) {
  if (b->current == co)
    return;
  if (!lua_checkstack(L, 2) || !lua_checkstack(co, 1)) {
    b->current = b->main; /* always alive (the registry holds it); only less precise */
    return;
  }
  b->current = co;
  lp_lptable_push(L);
  (void)lua_pushthread(co); /* on co's own stack, then over to L */
  lua_xmove(co, L, 1);
  lua_rawseti(L, -2, LP_T_CURRENT);
  lua_pop(L, 1);
}

/*
** The hook of a stopped thread: every instruction, and every return.  The return catches what a
** call returns that caught the stop: `return pcall(f)` from the chunk is a tail call, with no
** next instruction to raise again, and the host's lua_pcall got LUA_OK for a stopped request
** (the same for xpcall, or load whose reader was stopped).  The return hook fires when the call
** returns, C function or not, and raises there.
*/
#define LP_STOPPED_MASK (LUA_MASKCOUNT | LUA_MASKRET)

int lp_budget_raise(lua_State *L) {
  lp_budget *b = &lp_sx_of(L)->budget;
  lp_assert(b->why != 0);
  disarm_handlers(L, b);
  lua_sethook(L, budget_hook, LP_STOPPED_MASK, 1);
  if (b->main != L)
    lua_sethook(b->main, budget_hook, LP_STOPPED_MASK, 1); /* the host's next call fails too */
  return luaL_error(L, "%s", message(b->why));
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lp_sx *x = lp_sx_of(L);
  lp_budget *b = &x->budget;
  set_current(L, b, L); /* a coroutine the host resumes is known from its first look on */
  if (b->why == 0) {
    uint64_t ran = sum((uint64_t)lua_gethookcount(L), lp_alloc_take_grown(&x->alloc) / LP_BUDGET_BYTES);
    b->why = check(b, ran);
    if (b->why == 0) {
      int n = period_for(b, lp_alloc_bytes(&x->alloc));
      if (n != lua_gethookcount(L))
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, n);
      return;
    }
  }
  lp_budget_raise(L);
}

bool lp_budget_hook_is_ours(lua_State *L) {
  int mask = lua_gethookmask(L);
  return lua_gethook(L) == budget_hook && (mask == LUA_MASKCOUNT || mask == LP_STOPPED_MASK);
}

/* Makes the running thread's hook (and the main thread's) look at its next instruction. */
static void poke(lp_budget *b) {
  if (b->current != NULL)
    lua_sethook(b->current, budget_hook, LUA_MASKCOUNT, 1);
  if (b->main != NULL && b->main != b->current)
    lua_sethook(b->main, budget_hook, LUA_MASKCOUNT, 1); /* the host's next call looks too */
  b->touched = true;
}

/*
** The stack's cap (doc/security.md, "The stack's cap").  One VM instruction can do work in
** proportion to the free slots of its thread's stack with no hook, call or allocation between
** (a __call chain: Lua 5.4.4 follows it inside one call instruction, shifting the arguments up
** one slot a step, k^2/2 copies for k steps, until the stack is full); a stack grown once (a
** deep recursion) stays grown.  So no thread's stack may grow past stack_limit slots: the growth
** of the running thread's stack (or the main thread's) is refused here, which Lua raises as a
** memory error (luaD_reallocstack), and the work up to it is bounded by stack_limit^2/2 copies.
**
** Lua grows a stack by a new vector of its new size plus LP_STACK_EXTRA slots: to twice its size
** when it lacks a few slots (a call, an instruction, a small lua_checkstack), or to what a larger
** lua_checkstack needs.  The first is recognized here: a vector of exactly twice the size of the
** running thread's stack (as far as the wrappers and the hook know), the main thread's or the
** newest thread's (a coroutine the host made; alloc.h), past stack_limit (gimage.h reads the
** sizes).  The second
** comes from C functions that push one value per element (table.unpack, string.byte,
** utf8.codepoint), whose wrappers ask lp_budget_stack_room first (guard.c), and from the VM
** copying values that are on a capped stack already (varargs, a resume's arguments): at most the
** cap again.  Another vector of exactly that size refused while a stack that large is running
** would be a memory error the stack did not cause.  An older coroutine the host resumes from C
** is not capped until the hook has looked at it (within LP_BUDGET_PERIOD instructions).
**
** A refused growth charges the instruction budget the work that the free slots allowed (size^2/4:
** a copy is about a quarter of an instruction's time) and makes the hook look, so a loop of
** chains under a budget ends within one chain of it.  Returns the thread whose stack it is.
*/
static lua_State *stack_past_limit(const lp_budget *b, const lp_alloc *alloc, size_t grow,
                                   uint64_t *cost) {
  size_t slots = grow / LP_STACK_SLOT;
  if (b->stack_limit == 0 || grow % LP_STACK_SLOT != 0 || slots <= b->stack_limit + LP_STACK_EXTRA)
    return NULL;
  slots -= LP_STACK_EXTRA;
  lua_State *const threads[3] = {b->current, b->main, lp_alloc_newest_thread(alloc)};
  for (int i = 0; i < 3; i++) {
    size_t size, inuse;
    if (threads[i] == NULL || !lp_gimage_stack(threads[i], &size, &inuse))
      continue;
    if (slots == 2 * size || (2 * size > LUAI_MAXSTACK && slots == LUAI_MAXSTACK)) {
      *cost = (uint64_t)size * size / 4;
      return threads[i];
    }
  }
  return NULL;
}

bool lp_budget_stack_room(lua_State *L, size_t n) {
  const lp_budget *b = &lp_sx_of(L)->budget;
  size_t size, inuse;
  if (b->stack_limit == 0 || !lp_gimage_stack(L, &size, &inuse))
    return true;
  return inuse <= b->stack_limit && n <= b->stack_limit - inuse;
}

/*
** The allocator's gate (alloc.h), inside an allocation: allocates nothing and raises nothing.
** A refused allocation costs Lua a full collection before it gives up: charged as one.
*/
static bool gate(void *ud, size_t grow, bool refused, bool vector) {
  lp_sx *x = ud;
  lp_budget *b = &x->budget;
  uint64_t cost;
  lua_State *grower = vector ? stack_past_limit(b, &x->alloc, grow, &cost) : NULL;
  if (grower != NULL) {
    b->pending = sum(b->pending, cost);
    poke(b);
    lua_sethook(grower, budget_hook, LUA_MASKCOUNT, 1); /* the running thread, if not current */
    return false;
  }
  if (refused) {
    b->pending = sum(b->pending, lp_alloc_bytes(&x->alloc) / LP_BUDGET_GC_BYTES);
    poke(b);
    return false;
  }
  if (b->why != 0) {
    poke(b);
    return false; /* stopped: a C function that allocates in a loop ends here */
  }
  if (lp_budget_interrupted(b))
    b->why = LUAPOOL_STATUS_INTERRUPTED;
  else if (!b->armed)
    return true; /* NOLINT(bugprone-branch-clone): the order of the tests is the point */
  else if (b->left != UINT64_MAX &&
           sum((x->alloc.grown + grow) / LP_BUDGET_BYTES, b->pending) >= b->left)
    b->why = LUAPOOL_STATUS_INSTRUCTIONS;
  else if (b->deadline != 0 && lp_time_ns() >= b->deadline)
    b->why = LUAPOOL_STATUS_TIME;
  else
    return true;
  /* The stop begins: this allocation goes through, so that a call that allocates once ends and
     the hook raises the budget's error (not Lua's memory error) at the next instruction. */
  poke(b);
  return true;
}

void lp_budget_open(lua_State *L, lp_sx *x, unsigned stack_limit) {
  lp_budget *b = &x->budget;
  b->stack_limit = stack_limit != 0 && lp_gimage_stack_known() ? stack_limit : 0;
  b->main = L;
  b->current = NULL;
  b->hook = budget_hook;
  b->touched = false;
  set_current(L, b, L);
  if (lua_getglobal(L, "xpcall") == LUA_TFUNCTION)
    b->xpcall = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, LP_BUDGET_PERIOD);
  lp_alloc_set_gate(&x->alloc, gate, x);
}

void lp_budget_arm(lua_State *L, lp_budget *b, uint64_t instructions, unsigned ms) {
  b->why = 0;
  b->pending = 0;
  /* from now: growth since the last look (an earlier request's, the reset's restore) is not
     this budget's */
  (void)lp_alloc_take_grown(&lp_sx_of(L)->alloc);
  b->left = instructions != 0 ? instructions : UINT64_MAX;
  b->deadline = ms != 0 ? lp_time_ns() + (uint64_t)ms * 1000000U : 0;
  b->armed = instructions != 0 || ms != 0;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, period(b));
  if (b->main != L)
    lua_sethook(b->main, budget_hook, LUA_MASKCOUNT, period(b));
}

static void budget_clear(lp_budget *b);

int lp_budget_end_slow(lp_budget *b) {
  int why = b->why;
  budget_clear(b);
  return why;
}

static void budget_clear(lp_budget *b) {
  lp_budget_arm(b->main, b, 0, 0);
  atomic_store_explicit(&b->interrupt, false, memory_order_relaxed);
  set_current(b->main, b, b->main);
  b->touched = false;
}

void lp_budget_charge(lua_State *L, uint64_t n) {
  lp_sx *x = lp_sx_of(L);
  lp_budget *b = &x->budget;
  set_current(L, b, L); /* a wrapper runs on the running thread: the stack's cap knows it */
  if (b->why == 0) {
    if (!b->armed && !lp_budget_interrupted(b))
      return;
    b->why = check(b, sum(n, lp_alloc_take_grown(&x->alloc) / LP_BUDGET_BYTES));
    if (b->why == 0)
      return;
  }
  lp_budget_raise(L);
}

void lp_budget_enter_thread(lua_State *L, lua_State *co) {
  lp_budget *b = &lp_sx_of(L)->budget;
  if (b->why != 0)
    lp_budget_raise(L);
  if ((b->armed || lp_budget_interrupted(b)) &&
      !lp_budget_hook_is_ours(co)) {
    /* a thread without the hook (a script's own hook, set before the budget): it gets it, and
       what its count may miss is charged now */
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, period(b));
    b->touched = true;
    lp_budget_charge(L, LP_BUDGET_PERIOD);
  }
  set_current(L, b, co);
}

void lp_budget_left_thread(lua_State *L) {
  lp_budget *b = &lp_sx_of(L)->budget;
  set_current(L, b, L); /* the resumer runs again (what ran before it may be a stale guess) */
  if (b->why != 0)
    lp_budget_raise(L); /* stopped in the coroutine: not one more instruction here */
}

bool lp_budget_request_stopped(lua_State *L) {
  return lp_sx_of(L)->budget.why != 0;
}

bool lp_budget_engaged(lua_State *L) {
  lp_budget *b = &lp_sx_of(L)->budget;
  return b->armed || b->why != 0;
}

void lp_budget_rehook(lua_State *co) {
  lp_sx_of(co)->budget.touched = true; /* a script set or removed its own hook */
  if (lua_gethook(co) == NULL)
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, LP_BUDGET_PERIOD);
}

void lp_budget_interrupt(lp_budget *b) {
  atomic_store_explicit(&b->interrupt, true, memory_order_relaxed);
}

int lp_budget_status(lp_sx *x) {
  lp_budget *b = &x->budget;
  if (b->why != 0)
    return b->why;
  if (lp_budget_interrupted(b))
    return LUAPOOL_STATUS_INTERRUPTED;
  return lp_alloc_was_refused(&x->alloc) ? LUAPOOL_STATUS_MEMORY : LUAPOOL_STATUS_OK;
}

int luapool_set_budget(lua_State *L, uint64_t instructions, unsigned ms) {
  lp_sx *x = lp_sx_check(L);
  if (x == NULL)
    return LUAPOOL_EINVAL; /* no state, or not one of a pool's */
  lp_budget_arm(L, &x->budget, instructions, ms);
  return LUAPOOL_OK;
}

int luapool_interrupt(lua_State *L) {
  lp_sx *x = lp_sx_check(L);
  if (x == NULL)
    return LUAPOOL_EINVAL;
  lp_budget_interrupt(&x->budget);
  return LUAPOOL_OK;
}

int luapool_status(lua_State *L) {
  lp_sx *x = lp_sx_check(L);
  return x != NULL ? lp_budget_status(x) : LUAPOOL_EINVAL;
}
