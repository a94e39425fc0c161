/*
** state.h: creating and closing the pool's Lua states, the max_states reservation, and the
** generations that luapool_reload starts.
*/
#ifndef LUAPOOL_STATE_H
#define LUAPOOL_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "slot.h"
#include "snapshot.h"

/* closed_by's size: the reasons are 1 to the last LUAPOOL_CLOSE_* (0 unused). */
#define LP_CLOSE_REASONS (LUAPOOL_CLOSE_RELOADED + 1)

/*
** One generation (luapool_reload): how its states are made.  on_create, its ud and the number
** never change once the generation is published; a creation that loaded it may still be running
** on another thread after the next reload, so it is freed only by luapool_destroy (lp_state_fini).
*/
typedef struct lp_gen {
  int (*on_create)(lua_State *L, void *ud);
  void *on_create_ud;
  uint64_t number;       /* 1 for luapool_create's, then one more per reload */
  struct lp_gen *older;  /* the one it replaced: the chain lp_state_fini frees */
  _Atomic unsigned live; /* its states that exist: a slow-path count (creation, close), which tells
                            the pass whether any older state is left (lp_state_any_old) */
} lp_gen;

/* A pool's part.  Written on the slow paths only (a reload is one). */
typedef struct lp_states {
  _Alignas(LP_CACHELINE) _Atomic unsigned live; /* existing or being created */
  _Atomic uint64_t created;                     /* states made */
  _Atomic uint64_t closed_by[LP_CLOSE_REASONS]; /* states closed, by reason */
  /*
  ** The current generation, on a line of its own: every acquire and release loads generation
  ** (lp_pool_generation), and only a reload writes the line.  A reload stores current, then
  ** generation, both with release; readers load them with acquire (the argument: lp_state_new,
  ** lp_state_gen_publish, doc/design.md "Hot reload").  Reloads are serialized by the caller
  ** (the pass mutex), so these have one writer at a time.
  */
  _Alignas(LP_CACHELINE) _Atomic uint64_t generation; /* current->number */
  /*
  ** The magazine hit's one test (lp_pool_hit_key, internal.h): generation while the pool is open
  ** and its acquires arm nothing (held_warn_ms, budget_instructions and budget_ms all 0); 0,
  ** which numbers no generation, from luapool_shutdown on (lp_state_key_close) and for a pool
  ** whose acquires arm.  A reload stores it before generation, with release (lp_state_gen_publish
  ** says why before).
  */
  _Atomic uint64_t hit_key;
  _Atomic(lp_gen *) current;
  _Atomic uint64_t reloads; /* generations started by luapool_reload */
  /* luapool_create's generation (cfg's on_create and ud, number 1): its live count is written
     by every creation and close, so not on the line above */
  _Alignas(LP_CACHELINE) lp_gen first;
  lp_walk_cache walk; /* the creations' scratch blocks (snapshot.h) */
} lp_states;

void lp_state_init(luapool *p);
/* luapool_destroy, once every state is closed: frees the generations reloads made. */
void lp_state_fini(luapool *p);
/* Claims room for one more live state under max_states.  Any thread. */
bool lp_state_reserve(luapool *p);
/* Gives it back (a creation failed), and wakes a waiter, who may now create one. */
void lp_state_unreserve(luapool *p);
/* Creates a state into a fresh slot (EMPTY), under a reservation the caller holds and keeps on
   success; on failure the reservation is the caller's to give back.  The current generation
   makes it. */
int lp_state_new(luapool *p, lp_slot **out);
/* The same, by generation g (luapool_reload's check of a generation not yet published). */
int lp_state_new_of(luapool *p, lp_gen *g, lp_slot **out);
/* Closes the state of a slot nobody else can reach, for reason (LUAPOOL_CLOSE_*). */
void lp_state_close(luapool *p, lp_slot *s, int reason);
/* The same, but the state's max_states reservation passes to the caller instead of going back. */
void lp_state_close_keep(luapool *p, lp_slot *s, int reason);
/* Counts: created, and closed by reason (closed_by[0]: unused), for the stats. */
uint64_t lp_state_counts(luapool *p, uint64_t closed_by[LP_CLOSE_REASONS]);
/* States that exist: created minus closed (a snapshot). */
unsigned lp_state_live(luapool *p);

/*
** Reloads (their caller serializes them: the pass mutex).  gen_next makes the generation after
** the current one, with on_create and ud (on_create NULL: the current pair), unpublished; NULL
** when out of memory.  gen_publish makes it current; gen_drop frees one never published (its
** states, if any, closed).
*/
lp_gen *lp_state_gen_next(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud);
void lp_state_gen_publish(luapool *p, lp_gen *g);
void lp_state_gen_drop(lp_gen *g);
/* luapool_shutdown: no magazine hit from now on (hit_key 0). */
void lp_state_key_close(luapool *p);
/* Whether states of older generations may still exist (a snapshot while threads work; exact
   when the pool is quiet).  Any thread. */
bool lp_state_any_old(luapool *p);
uint64_t lp_state_reloads(luapool *p);

#endif /* LUAPOOL_STATE_H */
