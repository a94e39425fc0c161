/*
** freelist.h: the pool's Treiber stacks of slots, over ConcurrencyKit's ck_stack, named as ck
** names its variants (operation_producers-consumers).  Two types, so that the compiler keeps
** each list to the operations that are safe on it:
**   lp_freelist   the idle states: push_mpmc and pop_mpmc, any thread, concurrently;
**   lp_closelist  states waiting to be closed: push_mpsc from any thread, pop_all_mpsc by one
**                 consumer at a time (the maintenance pass), never pop_mpmc.
** Both are aligned to a cache line: pop_mpmc's 16-byte CAS needs 16.
*/
#ifndef LUAPOOL_FREELIST_H
#define LUAPOOL_FREELIST_H

#include <ck_stack.h>

#include "slot.h"

typedef struct lp_freelist {
  _Alignas(LP_CACHELINE) ck_stack_t stack;
} lp_freelist;

typedef struct lp_closelist {
  _Alignas(LP_CACHELINE) ck_stack_t stack;
} lp_closelist;

void lp_freelist_init(lp_freelist *f);
void lp_freelist_push_mpmc(lp_freelist *f, lp_slot *s);
lp_slot *lp_freelist_pop_mpmc(lp_freelist *f);

/* Calls fn for every slot on the list.  Only while no other thread exists (a fork's child). */
void lp_freelist_each_alone(lp_freelist *f, void (*fn)(lp_slot *s, void *ud), void *ud);

void lp_closelist_init(lp_closelist *c);
void lp_closelist_push_mpsc(lp_closelist *c, lp_slot *s);
lp_slot *lp_closelist_pop_all_mpsc(lp_closelist *c);
void lp_closelist_each_alone(lp_closelist *c, void (*fn)(lp_slot *s, void *ud), void *ud);

/* The next slot of a chain lp_closelist_pop_all_mpsc returned. */
static inline lp_slot *lp_closelist_next(const lp_slot *s) {
  return s->entry.next != NULL ? LP_SLOT_OF_ENTRY(s->entry.next) : NULL;
}

#endif /* LUAPOOL_FREELIST_H */
