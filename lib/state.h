/*
** state.h: creating and closing the pool's Lua states, and the max_states reservation.
*/
#ifndef LUAPOOL_STATE_H
#define LUAPOOL_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base.h"
#include "slot.h"

/* A pool's part.  Written on the slow paths only. */
typedef struct lp_states {
  _Alignas(LP_CACHELINE) _Atomic unsigned live;           /* existing or being created */
  _Atomic uint64_t created;                               /* states made */
  _Atomic uint64_t closed_by[LUAPOOL_CLOSE_RECYCLED + 1]; /* states closed, by reason */
} lp_states;

void lp_state_init(luapool *p);
/* Claims room for one more live state under max_states.  Any thread. */
bool lp_state_reserve(luapool *p);
/* Gives it back (a creation failed), and wakes a waiter, who may now create one. */
void lp_state_unreserve(luapool *p);
/* Creates a state into a fresh slot (EMPTY), under a reservation the caller holds and keeps on
   success; on failure the reservation is the caller's to give back. */
int lp_state_new(luapool *p, lp_slot **out);
/* Closes the state of a slot nobody else can reach, for reason (LUAPOOL_CLOSE_*). */
void lp_state_close(luapool *p, lp_slot *s, int reason);
/* Counts: created, and closed by reason (closed_by[0]: unused), for the stats. */
uint64_t lp_state_counts(luapool *p, uint64_t closed_by[LUAPOOL_CLOSE_RECYCLED + 1]);
/* States that exist: created minus closed (a snapshot). */
unsigned lp_state_live(luapool *p);

#endif /* LUAPOOL_STATE_H */
