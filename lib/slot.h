/*
** slot.h: the slot arena.  A slot is the pool's record of one Lua state.  Slots live in chunks
** that only luapool_destroy frees, so a ck_stack pop may read entry.next of a slot another thread
** already took (freelist.c), and a slot whose state was closed carries the next state.
*/
#ifndef LUAPOOL_SLOT_H
#define LUAPOOL_SLOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <ck_stack.h>
#include <lua.h>

#include "base.h"
#include "upkeep.h"

/* Slot states (lp_slot.state), and the moves between them (lp_slot_move). */
enum {
  LP_SLOT_EMPTY = 0, /* no Lua state; on the spare list or being filled */
  LP_SLOT_IDLE,      /* in a magazine or on the global free list, or being reset by its releaser */
  LP_SLOT_OUT,       /* held by a caller */
  LP_SLOT_CLOSING    /* on the close list, waiting for the watchdog */
};

struct lp_sx; /* sx.h: the state's per-module parts */

/*
** The slot's host part: what the holder of the state says about its request, read by the
** watchdog from another thread while the holder runs (lp_slot_each_concurrent).  A line of its
** own, so the pass's reads never share the hot line that acquire and release write.
**
** held is a sequence number: even while the slot is not held (with held_warn_ms on), odd from
** the acquire that wrote since_ms and tid until its request ends.  Only the holder writes
** context, held, since_ms and tid, and the hand-offs between holders order their writes (as
** for lp_upkeep).  The argument for the watchdog's reads is at lp_slot_held_read and in
** doc/design.md ("Per-request context and held-too-long").
*/
typedef struct lp_slot_host {
  _Atomic(void *) context;   /* luapool_set_context's pointer; NULL between requests */
  _Atomic uint64_t held;     /* the acquire sequence (above); stays 0 when held_warn_ms is 0 */
  _Atomic uint64_t since_ms; /* the coarse clock at the acquire numbered held */
  _Atomic long tid;          /* the acquiring thread (lp_thread_id) */
  _Atomic(lua_State *) L;    /* the state it was given (the log names it) */
  uint64_t reported;         /* the pass's only: the held value it last reported */
} lp_slot_host;

/* What lp_slot_held_read found: one acquire's record, read whole. */
typedef struct lp_slot_held_view {
  uint64_t seq;      /* the acquire's sequence number (odd) */
  uint64_t since_ms; /* when it began, on the coarse clock */
  long tid;          /* by which thread */
  lua_State *L;      /* the state it was given */
  void *context;     /* its context at the time of the read */
} lp_slot_held_view;

/*
** The state's extra space (lua_getextraspace) points back to its slot.  Two cache lines per slot:
** the first is what acquire and release touch (release writes state, and neighbours belong to
** other threads), the second what other threads read while the holder runs: the host part
** (the watchdog) and the heap figure (the stats), so that those reads never pull the first line
** away.
*/
typedef struct lp_slot {
  _Alignas(LP_CACHELINE) ck_stack_entry_t entry; /* first member: the lists' link */
  _Atomic(lua_State *) L; /* atomic: read by luapool_release's check on any thread */
  _Atomic int state;      /* LP_SLOT_* */
  int close_reason;       /* LUAPOOL_CLOSE_*, while on the close list (watchdog.c) */
  lp_upkeep upkeep;       /* upkeep.h; the holder's */
  struct lp_slot *spare;  /* the spare list's link (under the arena's mutex); a maintenance
                             pass's private chain while it holds the slot */
  struct lp_sx *x;        /* the state's parts, while it has a state (state.c) */
  _Alignas(LP_CACHELINE) lp_slot_host host; /* the second line: the holder's word to the pass */
  _Atomic uint64_t heap_seen; /* the state's Lua heap as last measured (lp_slot_heap_note); 0
                                 while the slot has no state; on the second line */
} lp_slot;

typedef struct lp_slot_chunk {
  struct lp_slot_chunk *next;
  size_t n;
  lp_slot slots[];
} lp_slot_chunk;

typedef struct lp_arena {
  pthread_mutex_t mutex;           /* growth and the spare list */
  _Atomic(lp_slot_chunk *) chunks; /* read without the lock by lp_slot_check */
  size_t nslots;
  lp_slot *spare;
  _Atomic uint64_t heap_max; /* the largest heap_seen peak noted (lp_slot_heap_note) */
} lp_arena;

int lp_slot_arena_init(lp_arena *a);
void lp_slot_arena_fini(lp_arena *a);
lp_slot *lp_slot_alloc(lp_arena *a);
void lp_slot_free(lp_arena *a, lp_slot *s);
lp_slot *lp_slot_check_older(lp_slot_chunk *newest, uintptr_t addr, lua_State *L);
/* Calls fn for every slot that has a state.  Only when nothing else touches the pool (destroy,
   a fork's child). */
void lp_slot_each_state(lp_arena *a, void (*fn)(lp_slot *s, void *ud), void *ud);
/*
** Calls fn for every slot of the arena, with or without a state, while other threads acquire,
** release, create and close states: fn may read only the slot's atomics (and what no other
** thread writes).  Slots are never freed before luapool_destroy, and a chunk is on the list
** whole before it is reachable (grow_locked's release store), so the walk reads no freed or
** half-made memory.  Slots added during the walk may be missed.
*/
void lp_slot_each_concurrent(lp_arena *a, void (*fn)(lp_slot *s, void *ud), void *ud);
/* fork (pool.c's handlers): the arena's mutex, taken before the fork and released after it. */
void lp_slot_arena_fork_prepare(lp_arena *a);
void lp_slot_arena_fork_parent(lp_arena *a);
void lp_slot_arena_fork_child(lp_arena *a);

#define LP_SLOT_OF_ENTRY(e) ((lp_slot *)(void *)(e))

/*
** Stranded, in a fork's child: the slot has a state that no list held at the fork, so a thread
** that does not exist in the child had it (checked out, or between a list and its holder, or
** being created or closed).  It may be halfway through a change, so luapool_destroy leaves it
** unclosed.  The mark is kept in spare, which is NULL in every slot that has a state and is not
** in a pass's chain (no pass runs at a fork: its mutex is held); a release or discard in the
** child (of a state the forking thread held) clears it, and only a list's holder reads spare.
*/
extern lp_slot lp_slot_stranded_mark;

static inline void lp_slot_strand(lp_slot *s) {
  s->spare = &lp_slot_stranded_mark;
}

static inline void lp_slot_unstrand(lp_slot *s) {
  s->spare = NULL;
}

static inline bool lp_slot_stranded(const lp_slot *s) {
  return s->spare == &lp_slot_stranded_mark;
}

/* The slot of a state luapool made (any of its threads); no check: the caller knows. */
static inline lp_slot *lp_slot_of(lua_State *L) {
  return *(lp_slot **)lua_getextraspace(L);
}

/*
** The slot of L if L is a state of this arena, else NULL.  L's extra space is read, never trusted:
** for a foreign state it holds anything, so the pointer is compared (as an integer) against this
** arena's chunks before it is dereferenced, it must fall on a slot boundary, and the slot must
** name L back (a coroutine of a pooled state copies its main thread's extra space, and fails
** here).  The newest chunk is compared inline: chunks double, so it holds at least half of the
** slots (all of them in a pool of up to 16 states), and a release finds its slot there in O(1);
** the older chunks, out of line (lp_slot_check_older).  The chunk list is published with release
** (grow_locked) and loaded with acquire: a chunk's n and slots are initialized before it is
** reachable, and chunks are freed only by luapool_destroy.
*/
static inline lp_slot *lp_slot_check(lp_arena *a, lua_State *L) {
  uintptr_t addr = (uintptr_t)lp_slot_of(L);
  lp_slot_chunk *c = atomic_load_explicit(&a->chunks, memory_order_acquire);
  if (c == NULL)
    return NULL;
  uintptr_t off = addr - (uintptr_t)&c->slots[0]; /* wraps above the range if addr is below */
  if (off >= c->n * sizeof(lp_slot))
    return lp_slot_check_older(c, addr, L);
  if (off % sizeof(lp_slot) != 0)
    return NULL;
  lp_slot *s = &c->slots[off / sizeof(lp_slot)];
  return atomic_load_explicit(&s->L, memory_order_relaxed) == L ? s : NULL;
}

static inline int lp_slot_state(const lp_slot *s) {
  return atomic_load_explicit(&s->state, memory_order_relaxed);
}

/* The moves a slot may make: every one luapool makes is checked in debug builds. */
static inline bool lp_slot_move_ok(int from, int to) {
  switch (to) {
  case LP_SLOT_EMPTY: /* closed (slot_free) */
    return from != LP_SLOT_EMPTY;
  case LP_SLOT_IDLE: /* made for the free list; released */
    return from == LP_SLOT_EMPTY || from == LP_SLOT_OUT;
  case LP_SLOT_OUT: /* made for an acquire; acquired */
    return from == LP_SLOT_EMPTY || from == LP_SLOT_IDLE;
  case LP_SLOT_CLOSING: /* discarded; released and retired */
    return from == LP_SLOT_OUT || from == LP_SLOT_IDLE;
  default:
    return false;
  }
}

/*
** Moves a slot its caller owns from one state to the next (relaxed: the hand-off that gave the
** caller the slot orders it).
*/
static inline void lp_slot_move(lp_slot *s, int from, int to) {
  lp_assert(lp_slot_state(s) == from);
  lp_assert(lp_slot_move_ok(from, to));
  (void)from;
  atomic_store_explicit(&s->state, to, memory_order_relaxed);
}

/*
** Moves a slot that other threads may be moving too (a caller's double release): only one mover
** succeeds.  acq_rel: the winner sees what the previous holder wrote to the state.
*/
static inline bool lp_slot_try_move(lp_slot *s, int from, int to) {
  lp_assert(lp_slot_move_ok(from, to));
  return atomic_compare_exchange_strong_explicit(&s->state, &from, to, memory_order_acq_rel,
                                                 memory_order_relaxed);
}

/* ---- the host part (lp_slot_host) --------------------------------------------------------- */

/*
** The holder's context.  The pointer is the only datum (luapool never reads what it points to),
** the holder reads back its own store (coherence), and the next holder's read follows the clear
** at the end of the request through the hand-off that gave it the slot.  Release and acquire
** only for the watchdog's seqlock read (lp_slot_held_read): a context stored by a later holder
** makes that read drop the record.  On x86 both are plain moves.
*/
static inline void lp_slot_context_set(lp_slot *s, void *ctx) {
  atomic_store_explicit(&s->host.context, ctx, memory_order_release);
}

static inline void *lp_slot_context(lp_slot *s) {
  return atomic_load_explicit(&s->host.context, memory_order_acquire);
}

/*
** The holder, at acquire (held_warn_ms on): the record of this acquire, then the odd sequence
** number that makes it visible.  Each field is a release store: it is ordered after the end of
** the previous request (its even store, sequenced or handed off before), so a reader whose
** acquire load of a field reads one of these sees that even store in its second look at held,
** and drops its read.  The release store of the odd number publishes the fields to a reader
** whose acquire load reads it.  (No fences: ThreadSanitizer does not model them.)
*/
static inline void lp_slot_held_begin(lp_slot *s, uint64_t now_ms, long tid, lua_State *L) {
  uint64_t seq = atomic_load_explicit(&s->host.held, memory_order_relaxed); /* the holder's own */
  lp_assert(seq % 2 == 0);
  atomic_store_explicit(&s->host.since_ms, now_ms, memory_order_release);
  atomic_store_explicit(&s->host.tid, tid, memory_order_release);
  atomic_store_explicit(&s->host.L, L, memory_order_release);
  atomic_store_explicit(&s->host.held, seq + 1, memory_order_release);
}

/*
** The holder, at the end of its request (held_warn_ms on).  Relaxed: it writes no data, and a
** reader that misses it reports a state released a moment ago, held as long as it says.
*/
static inline void lp_slot_held_end(lp_slot *s) {
  uint64_t seq = atomic_load_explicit(&s->host.held, memory_order_relaxed);
  lp_assert(seq % 2 == 1);
  atomic_store_explicit(&s->host.held, seq + 1, memory_order_relaxed);
}

/*
** Any thread (the pass): the record of the acquire now holding s, read whole, or false when s
** is not held or its record changed during the read (a release, a new acquire: the next pass
** looks again).  A seqlock's reader: the sequence, the fields, the sequence again, every load
** acquire.  If both reads of the sequence return the same odd n, every field read is the one
** acquire n wrote: the first read synchronizes with n's release store, so the fields are n's or
** later; a later one is a release store that follows n's end (n + 1) in happens-before, and the
** field's acquire load synchronizes with it, so the second read, sequenced after, returns n + 1
** or later, not n.  The context likewise (a later holder's store is a release store too).
*/
static inline bool lp_slot_held_read(lp_slot *s, lp_slot_held_view *v) {
  uint64_t seq = atomic_load_explicit(&s->host.held, memory_order_acquire);
  if (seq % 2 == 0)
    return false;
  v->since_ms = atomic_load_explicit(&s->host.since_ms, memory_order_acquire);
  v->tid = atomic_load_explicit(&s->host.tid, memory_order_acquire);
  v->L = atomic_load_explicit(&s->host.L, memory_order_acquire);
  v->context = lp_slot_context(s);
  if (atomic_load_explicit(&s->host.held, memory_order_acquire) != seq)
    return false;
  v->seq = seq;
  return true;
}

/*
** The heap figures of luapool_stats.  Each slot's heap_seen is written only by the state's
** holder (a releaser after the reset, an acquirer past the magazine, the pass that creates it),
** and zeroed by lp_slot_free once the state is closed; any thread may sum them.
*/

/*
** Holder only: notes the state's heap (bytes) and the high-water mark it reached (peak).  The
** store is relaxed: the figure publishes nothing, and the next holder's write is ordered after
** this one by the hand-off that gives it the slot, so the figure a slot shows is its latest
** holder's.  The maximum only grows: a CAS loop, entered only when peak beats the maximum read
** (rarely, once the pool has run a while), so the common case is a load of a line that is
** written almost never.  Relaxed: the maximum is a value, not a publication, and the CAS
** retries on any newer value, so no larger maximum is ever lost.
*/
static inline void lp_slot_heap_note(lp_arena *a, lp_slot *s, uint64_t bytes, uint64_t peak) {
  atomic_store_explicit(&s->heap_seen, bytes, memory_order_relaxed);
  uint64_t max = atomic_load_explicit(&a->heap_max, memory_order_relaxed);
  while (peak > max && !atomic_compare_exchange_weak_explicit(
                           &a->heap_max, &max, peak, memory_order_relaxed, memory_order_relaxed)) {
  }
}

/*
** Any thread, concurrently with everything but luapool_destroy: the heap_seen of every slot,
** summed.  The chunk list is walked as lp_slot_check walks it (published with release, loaded
** with acquire: a chunk's n and slots are initialized before it is published, and chunks are
** freed only by luapool_destroy); each heap_seen is one relaxed atomic load, so a slot being
** noted or freed meanwhile shows its old figure or its new one, never a torn one.  A snapshot.
*/
static inline uint64_t lp_slot_heap_sum_concurrent(lp_arena *a) {
  uint64_t sum = 0;
  for (lp_slot_chunk *c = atomic_load_explicit(&a->chunks, memory_order_acquire); c != NULL;
       c = c->next)
    for (size_t i = 0; i < c->n; i++)
      sum += atomic_load_explicit(&c->slots[i].heap_seen, memory_order_relaxed);
  return sum;
}

/* Any thread: the largest peak noted. */
static inline uint64_t lp_slot_heap_max_concurrent(lp_arena *a) {
  return atomic_load_explicit(&a->heap_max, memory_order_relaxed);
}

#endif /* LUAPOOL_SLOT_H */
