/*
** slot.c: the slot arena.  Slots are allocated in chunks that double in size and are freed only
** by luapool_destroy (the free list's pops may read a slot after another thread took it: see
** freelist.c).  A slot whose state was closed goes on the spare list and carries the next state.
*/
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "slot.h"

#define LP_CHUNK_MIN 16

lp_slot lp_slot_stranded_mark; /* its address marks a stranded slot (slot.h); never used */

int lp_slot_arena_init(lp_arena *a) {
  atomic_init(&a->chunks, NULL);
  a->nslots = 0;
  a->spare = NULL;
  atomic_init(&a->heap_max, 0);
  return pthread_mutex_init(&a->mutex, NULL) == 0 ? LUAPOOL_OK : LUAPOOL_ENOMEM;
}

void lp_slot_arena_fini(lp_arena *a) {
  lp_slot_chunk *c = atomic_load_explicit(&a->chunks, memory_order_relaxed);
  while (c != NULL) {
    lp_slot_chunk *next = c->next;
    lp_free(c);
    c = next;
  }
  atomic_store_explicit(&a->chunks, NULL, memory_order_relaxed);
  pthread_mutex_destroy(&a->mutex);
}

/* Grows the arena by a chunk as large as all before it; under the mutex. */
static int grow_locked(lp_arena *a) {
  size_t n = a->nslots < LP_CHUNK_MIN ? LP_CHUNK_MIN : a->nslots;
  size_t bytes = sizeof(lp_slot_chunk) + n * sizeof(lp_slot); /* slots are two cache lines each */
  lp_slot_chunk *c = lp_aligned_alloc(LP_CACHELINE, bytes);
  if (c == NULL)
    return LUAPOOL_ENOMEM;
  memset(c, 0, bytes);
  c->n = n;
  for (size_t i = n; i-- > 0;) {
    lp_slot *s = &c->slots[i];
    atomic_init(&s->L, NULL);
    atomic_init(&s->state, LP_SLOT_EMPTY);
    atomic_init(&s->host.context, NULL);
    atomic_init(&s->host.held, 0);
    atomic_init(&s->host.since_ms, 0);
    atomic_init(&s->host.tid, 0);
    atomic_init(&s->host.L, NULL);
    s->host.reported = 0;
    atomic_init(&s->heap_seen, 0);
    s->spare = a->spare;
    a->spare = s;
  }
  c->next = atomic_load_explicit(&a->chunks, memory_order_relaxed);
  /* release: lp_slot_check walks the chunk list without the lock */
  atomic_store_explicit(&a->chunks, c, memory_order_release);
  a->nslots += n;
  return LUAPOOL_OK;
}

lp_slot *lp_slot_alloc(lp_arena *a) {
  lp_slot *s = NULL;
  pthread_mutex_lock(&a->mutex);
  if (a->spare != NULL || grow_locked(a) == LUAPOOL_OK) {
    s = a->spare;
    a->spare = s->spare;
    s->spare = NULL;
  }
  pthread_mutex_unlock(&a->mutex);
  lp_assert(s == NULL || (lp_slot_state(s) == LP_SLOT_EMPTY && s->x == NULL));
  return s;
}

void lp_slot_free(lp_arena *a, lp_slot *s) {
  lp_assert(lp_slot_state(s) != LP_SLOT_EMPTY || atomic_load(&s->L) == NULL);
  atomic_store_explicit(&s->L, NULL, memory_order_relaxed);
  atomic_store_explicit(&s->state, LP_SLOT_EMPTY, memory_order_relaxed);
  /* relaxed: a figure only (slot.h); the stats stop counting the closed state's heap */
  atomic_store_explicit(&s->heap_seen, 0, memory_order_relaxed);
  s->x = NULL;
  lp_slot_context_set(s, NULL); /* a state closed while out (destroy) leaves none to the next */
  pthread_mutex_lock(&a->mutex);
  s->spare = a->spare;
  a->spare = s;
  pthread_mutex_unlock(&a->mutex);
}

/* lp_slot_check past the newest chunk (slot.h has the argument): the older chunks, walked. */
lp_slot *lp_slot_check_older(lp_slot_chunk *newest, uintptr_t addr, lua_State *L) {
  for (lp_slot_chunk *c = newest->next; c != NULL; c = c->next) {
    uintptr_t base = (uintptr_t)&c->slots[0];
    if (addr >= base && addr < base + c->n * sizeof(lp_slot)) {
      if ((addr - base) % sizeof(lp_slot) != 0)
        return NULL;
      lp_slot *s = &c->slots[(addr - base) / sizeof(lp_slot)];
      return atomic_load_explicit(&s->L, memory_order_relaxed) == L ? s : NULL;
    }
  }
  return NULL;
}

void lp_slot_each_state(lp_arena *a, void (*fn)(lp_slot *s, void *ud), void *ud) {
  for (lp_slot_chunk *c = atomic_load_explicit(&a->chunks, memory_order_acquire); c != NULL;
       c = c->next)
    for (size_t i = 0; i < c->n; i++)
      if (atomic_load_explicit(&c->slots[i].L, memory_order_relaxed) != NULL)
        fn(&c->slots[i], ud);
}

void lp_slot_each_concurrent(lp_arena *a, void (*fn)(lp_slot *s, void *ud), void *ud) {
  /* acquire: pairs with grow_locked's release store, so each chunk's next, n and initialized
     slots are visible; the slots' own fields are the callback's to read atomically */
  for (lp_slot_chunk *c = atomic_load_explicit(&a->chunks, memory_order_acquire); c != NULL;
       c = c->next)
    for (size_t i = 0; i < c->n; i++)
      fn(&c->slots[i], ud);
}

void lp_slot_arena_fork_prepare(lp_arena *a) {
  pthread_mutex_lock(&a->mutex);
}

void lp_slot_arena_fork_parent(lp_arena *a) {
  pthread_mutex_unlock(&a->mutex);
}

/* The child's one thread took the mutex before the fork: it releases it. */
void lp_slot_arena_fork_child(lp_arena *a) {
  pthread_mutex_unlock(&a->mutex);
}

_Static_assert(sizeof(lp_slot) == (size_t)2 * LP_CACHELINE,
               "a slot is two cache lines: the hot one, and the host part the pass reads");
_Static_assert(offsetof(lp_slot, heap_seen) >= LP_CACHELINE, "heap_seen is on the second line");
