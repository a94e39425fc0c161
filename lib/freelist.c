/*
** freelist.c: the pool's Treiber stacks of slots, over ConcurrencyKit's ck_stack.
**
** Why this use of ck_stack is safe (the whole argument is in doc/design.md):
** - Alignment: ck_stack_pop_mpmc swaps {head, generation} with a 16-byte CAS (cmpxchg16b on
**   x86-64), which faults on a misaligned operand; both list types align the stack to a line.
** - Memory safety: a pop reads head->next of an entry that another thread may have popped in the
**   meantime.  Entries are slots, and slots are freed only by luapool_destroy, so that read
**   always hits valid memory; its possibly stale value is discarded by the failing CAS.
** - ABA: every pop_mpmc bumps the generation in the same CAS that moves head, so a head that was
**   popped and pushed back no longer matches.  Pushes need no generation: a push's CAS succeeds
**   only if head is what its entry->next says.  ck 0.7.1's batch_pop_mpmc swaps head alone and
**   is not ABA-safe against a concurrent pop_mpmc; only lp_closelist uses it, and that type has
**   no pop_mpmc.
** - Ordering: push writes entry->next and fences stores before its CAS; pop fences loads after
**   reading head.  Together with the CAS (a full barrier on x86) they order the releasing
**   thread's writes to the Lua state before the acquiring thread's reads.
**
** ThreadSanitizer cannot see ck_pr's inline-assembly atomics, and pop's read of entry->next
** races with a re-push by design.  In a TSan build this file is compiled uninstrumented and
** tells TSan about each hand-off instead (LP_TSAN_ANNOTATE, set by configure).
*/
#include "freelist.h"

#ifdef LP_TSAN_ANNOTATE
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define LP_TSAN_RELEASE(s) __tsan_release(s)
#define LP_TSAN_ACQUIRE(s) __tsan_acquire(s)
#else
#define LP_TSAN_RELEASE(s) ((void)(s))
#define LP_TSAN_ACQUIRE(s) ((void)(s))
#endif

void lp_freelist_init(lp_freelist *f) {
  lp_assert((uintptr_t)&f->stack % 16 == 0);
  ck_stack_init(&f->stack);
}

/* Any thread.  Publishes everything the caller wrote to the slot and its state. */
void lp_freelist_push_mpmc(lp_freelist *f, lp_slot *s) {
  lp_assert(lp_slot_state(s) == LP_SLOT_IDLE);
  LP_TSAN_RELEASE(s);
  ck_stack_push_mpmc(&f->stack, &s->entry);
}

/* Any thread, concurrently with pushes and other pop_mpmc calls. */
lp_slot *lp_freelist_pop_mpmc(lp_freelist *f) {
  ck_stack_entry_t *e = ck_stack_pop_mpmc(&f->stack);
  if (e == NULL)
    return NULL;
  lp_slot *s = LP_SLOT_OF_ENTRY(e);
  LP_TSAN_ACQUIRE(s);
  lp_assert(lp_slot_state(s) == LP_SLOT_IDLE);
  return s;
}

/*
** A fork's child: the other threads are gone, and each of their pushes and pops was one CAS,
** done or not done, so the list is a well-formed chain that nobody else walks.
*/
static void each_alone(ck_stack_t *stack, void (*fn)(lp_slot *s, void *ud), void *ud) {
  for (ck_stack_entry_t *e = stack->head; e != NULL; e = e->next)
    fn(LP_SLOT_OF_ENTRY(e), ud);
}

void lp_freelist_each_alone(lp_freelist *f, void (*fn)(lp_slot *s, void *ud), void *ud) {
  each_alone(&f->stack, fn, ud);
}

void lp_closelist_init(lp_closelist *c) {
  lp_assert((uintptr_t)&c->stack % 16 == 0);
  ck_stack_init(&c->stack);
}

/* Any thread. */
void lp_closelist_push_mpsc(lp_closelist *c, lp_slot *s) {
  lp_assert(lp_slot_state(s) == LP_SLOT_CLOSING);
  LP_TSAN_RELEASE(s);
  ck_stack_push_mpmc(&c->stack, &s->entry);
}

/*
** One consumer at a time (the maintenance pass, under the watchdog's pass mutex), concurrently
** with pushes.  Returns the chain of slots linked through entry.next (lp_closelist_next).
*/
lp_slot *lp_closelist_pop_all_mpsc(lp_closelist *c) {
  ck_stack_entry_t *e = ck_stack_batch_pop_mpmc(&c->stack);
  for (ck_stack_entry_t *it = e; it != NULL; it = it->next) {
    LP_TSAN_ACQUIRE(LP_SLOT_OF_ENTRY(it));
    lp_assert(lp_slot_state(LP_SLOT_OF_ENTRY(it)) == LP_SLOT_CLOSING);
  }
  return e == NULL ? NULL : LP_SLOT_OF_ENTRY(e);
}

void lp_closelist_each_alone(lp_closelist *c, void (*fn)(lp_slot *s, void *ud), void *ud) {
  each_alone(&c->stack, fn, ud);
}
