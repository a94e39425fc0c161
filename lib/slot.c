/*
** slot.c: the slot arena.  Slots are allocated in chunks that double in size and are freed only
** by luapool_destroy (the free list's pops may read a slot after another thread took it: see
** freelist.c).  A slot whose state was closed goes on the spare list and carries the next state.
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LP_CHUNK_MIN 16

int lp_slot_init(luapool *p) {
  atomic_init(&p->chunks, NULL);
  p->nslots = 0;
  p->spare = NULL;
  return pthread_mutex_init(&p->slot_mutex, NULL) == 0 ? LUAPOOL_OK : LUAPOOL_ENOMEM;
}

void lp_slot_fini(luapool *p) {
  lp_chunk *c = atomic_load_explicit(&p->chunks, memory_order_relaxed);
  while (c != NULL) {
    lp_chunk *next = c->next;
    free(c);
    c = next;
  }
  atomic_store_explicit(&p->chunks, NULL, memory_order_relaxed);
  pthread_mutex_destroy(&p->slot_mutex);
}

/* Grows the arena by a chunk as large as all before it; under slot_mutex. */
static int slot_grow_locked(luapool *p) {
  size_t n = p->nslots < LP_CHUNK_MIN ? LP_CHUNK_MIN : p->nslots;
  size_t bytes = sizeof(lp_chunk) + n * sizeof(lp_slot); /* slots are a cache line each */
  lp_chunk *c = aligned_alloc(LP_CACHELINE, bytes);
  if (c == NULL)
    return LUAPOOL_ENOMEM;
  memset(c, 0, bytes);
  c->n = n;
  for (size_t i = n; i-- > 0;) {
    lp_slot *s = &c->slots[i];
    atomic_init(&s->L, NULL);
    atomic_init(&s->state, LP_SLOT_EMPTY);
    s->spare = p->spare;
    p->spare = s;
  }
  c->next = atomic_load_explicit(&p->chunks, memory_order_relaxed);
  /* release: lp_slot_check walks the chunk list without the lock */
  atomic_store_explicit(&p->chunks, c, memory_order_release);
  p->nslots += n;
  return LUAPOOL_OK;
}

lp_slot *lp_slot_alloc(luapool *p) {
  lp_slot *s = NULL;
  pthread_mutex_lock(&p->slot_mutex);
  if (p->spare != NULL || slot_grow_locked(p) == LUAPOOL_OK) {
    s = p->spare;
    p->spare = s->spare;
    s->spare = NULL;
  }
  pthread_mutex_unlock(&p->slot_mutex);
  return s;
}

void lp_slot_free(luapool *p, lp_slot *s) {
  atomic_store_explicit(&s->L, NULL, memory_order_relaxed);
  atomic_store_explicit(&s->state, LP_SLOT_EMPTY, memory_order_relaxed);
  pthread_mutex_lock(&p->slot_mutex);
  s->spare = p->spare;
  p->spare = s;
  pthread_mutex_unlock(&p->slot_mutex);
}

/* The slot a pooled state's extra space names (no check: the caller knows L is pooled). */
static lp_slot *slot_of(lua_State *L) {
  return *(lp_slot **)lua_getextraspace(L);
}

/*
** The slot of L if L is a state of this pool, else NULL.  L's extra space is read, never trusted:
** for a foreign state it holds anything, so the pointer is compared against this pool's chunks
** before it is dereferenced, and the slot must name L back (a coroutine of a pooled state copies
** its main thread's extra space, and fails here).
*/
lp_slot *lp_slot_check(luapool *p, lua_State *L) {
  uintptr_t a = (uintptr_t)slot_of(L);
  for (lp_chunk *c = atomic_load_explicit(&p->chunks, memory_order_acquire); c != NULL;
       c = c->next) {
    uintptr_t base = (uintptr_t)&c->slots[0];
    if (a >= base && a < base + c->n * sizeof(lp_slot)) {
      if ((a - base) % sizeof(lp_slot) != 0)
        return NULL;
      lp_slot *s = (lp_slot *)a;
      return atomic_load_explicit(&s->L, memory_order_relaxed) == L ? s : NULL;
    }
  }
  return NULL;
}
