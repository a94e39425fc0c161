/*
** upkeep.h: the rules that retire a state (max_uses, max_lifetime_ms, idle_timeout_ms) and the
** coarse clock they are judged by.  Header only: the release path applies them inline.
**
** A state's lp_upkeep is written by whoever holds the state (the caller between acquire and
** release, the maintenance pass while it holds an idle state); the hand-offs between holders
** order those writes (doc/design.md, "Memory ordering").
*/
#ifndef LUAPOOL_UPKEEP_H
#define LUAPOOL_UPKEEP_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "luapool.h"

typedef struct lp_upkeep {
  /* acquires left before max_uses closes the state: counts down from max_uses, or from
     UINT_MAX without one (lp_upkeep_on_release) */
  unsigned uses_left;
  unsigned gc_mark;      /* uses_left at the last background collection */
  uint64_t last_used_ms; /* the coarse clock at the last release (or at creation) */
  uint64_t expires_ms;   /* max_lifetime_ms, jittered; UINT64_MAX when none */
} lp_upkeep;

/*
** The coarse clock: set by each maintenance pass (lp_upkeep_tick), read by every release with a
** relaxed load of a line written once per interval, so the release path never reads a clock.
*/
typedef struct lp_upkeep_clock {
  _Atomic uint64_t now_ms;
} lp_upkeep_clock;

static inline void lp_upkeep_clock_init(lp_upkeep_clock *c, uint64_t now) {
  atomic_init(&c->now_ms, now);
}

static inline void lp_upkeep_tick(lp_upkeep_clock *c, uint64_t now) {
  atomic_store_explicit(&c->now_ms, now, memory_order_relaxed);
}

static inline uint64_t lp_upkeep_now(lp_upkeep_clock *c) {
  return atomic_load_explicit(&c->now_ms, memory_order_relaxed);
}

/* splitmix64: a well-mixed value from a counter, for the lifetime jitter. */
static inline uint64_t lp_upkeep_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15U;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9U;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebU;
  return x ^ (x >> 31);
}

/*
** A new state's upkeep, the nth the pool made.  Its lifetime loses up to 10% at random (a hash of
** the pool's serial and n: no shared random state), so that states made together (a prewarm, a
** burst) do not all expire in the same pass.
*/
static inline void lp_upkeep_init(lp_upkeep *u, const luapool_config *cfg, uint64_t now,
                                  uint64_t serial, uint64_t nth) {
  u->uses_left = cfg->max_uses != 0 ? cfg->max_uses : UINT_MAX;
  u->gc_mark = u->uses_left;
  u->last_used_ms = now;
  u->expires_ms = UINT64_MAX;
  uint64_t life = cfg->max_lifetime_ms;
  if (life != 0)
    u->expires_ms = now + life - lp_upkeep_mix64(serial * 0x100000001b3U + nth) % (life / 10 + 1);
}

static inline void lp_upkeep_acquired(lp_upkeep *u) {
  u->uses_left--; /* never below 0: a state with none left is closed at its release */
}

/*
** max_uses and max_lifetime_ms, as a state comes back: the reason to close it, or 0.  Without
** max_uses, a state that served UINT_MAX acquires is closed too (as LUAPOOL_CLOSE_MAX_USES), and
** its slot gets a new one: the count is 32 bits.
*/
static inline int lp_upkeep_on_release(lp_upkeep *u, uint64_t now) {
  u->last_used_ms = now;
  if (__builtin_expect(u->uses_left != 0 && u->expires_ms > now, 1))
    return 0;
  return u->uses_left == 0 ? LUAPOOL_CLOSE_MAX_USES : LUAPOOL_CLOSE_LIFETIME;
}

/* Lifetime and idle timeout, for an idle state (above_min: idle states exceed min_idle). */
static inline int lp_upkeep_on_idle(const lp_upkeep *u, const luapool_config *cfg, uint64_t now,
                                    bool above_min) {
  if (u->expires_ms <= now)
    return LUAPOOL_CLOSE_LIFETIME;
  if (cfg->idle_timeout_ms != 0 && now - u->last_used_ms >= cfg->idle_timeout_ms && above_min)
    return LUAPOOL_CLOSE_IDLE_TIMEOUT;
  return 0;
}

/* Used since its last background collection? */
static inline bool lp_upkeep_needs_gc(const lp_upkeep *u) {
  return u->uses_left != u->gc_mark;
}

static inline void lp_upkeep_collected(lp_upkeep *u) {
  u->gc_mark = u->uses_left;
}

#endif /* LUAPOOL_UPKEEP_H */
