/*
** frames.c: walking a thread's call frames in one step each (frames.h).
*/
#include <stdatomic.h>

#include "frames.h"

#if LUA_VERSION_RELEASE_NUM >= 50400 && LUA_VERSION_RELEASE_NUM <= 50408
#define LP_FRAMES_BUILT 1
#else
#define LP_FRAMES_BUILT 0
#endif

/*
** The probe's verdict, once per process (0: not probed yet, 1: passed, -1: failed).  Relaxed: a
** thread that finds 0 walks through lua_getstack; each prober stores the same verdict, and the
** flag publishes nothing else.
*/
static _Atomic int verdict;

#if LP_FRAMES_BUILT

/* CallInfo's dynamic links (lstate.h): after func and top, previous then next. */
static void *ci_link(const void *ci, int which) {
  void *p;
  __builtin_memcpy(&p, (const char *)ci + (size_t)(2 + which) * sizeof(void *), sizeof p);
  return p;
}
#define CI_PREVIOUS(ci) ci_link((ci), 0)
#define CI_NEXT(ci) ci_link((ci), 1)

/*
** The frames the probe runs in: inner (level 0), called by outer (1), called by whoever called
** the probe (2 and below).  Each link must join level k to k + 1 both ways, and the bottom frame's
** previous must be the base CallInfo, the one whose previous is NULL (lua_getstack's end).
*/
static int probe_inner(lua_State *L) {
  int *ok = lua_touserdata(L, lua_upvalueindex(1));
  lua_Debug a[3];
  for (int k = 0; k < 3; k++)
    if (!lua_getstack(L, k, &a[k]))
      return 0;
  for (int k = 0; k < 2; k++)
    if (CI_PREVIOUS(a[k].i_ci) != a[k + 1].i_ci || CI_NEXT(a[k + 1].i_ci) != a[k].i_ci)
      return 0;
  lua_Debug bottom = a[2], below;
  int level = 2;
  while (lua_getstack(L, level + 1, &below)) {
    if (CI_PREVIOUS(bottom.i_ci) != below.i_ci)
      return 0;
    bottom = below;
    level++;
  }
  const void *base = CI_PREVIOUS(bottom.i_ci);
  *ok = base != NULL && CI_PREVIOUS(base) == NULL && CI_NEXT(base) == bottom.i_ci;
  return 0;
}

static int probe_outer(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, probe_inner, 1);
  lua_call(L, 0, 0);
  return 0;
}

void lp_frames_probe(lua_State *L) {
  if (atomic_load_explicit(&verdict, memory_order_relaxed) != 0)
    return;
  int ok = 0;
  lua_pushlightuserdata(L, &ok);
  lua_pushcclosure(L, probe_outer, 1);
  lua_call(L, 0, 0);
  atomic_store_explicit(&verdict, ok ? 1 : -1, memory_order_relaxed);
}

#else /* another Lua: lua_getstack only */

void lp_frames_probe(lua_State *L) {
  (void)L;
  atomic_store_explicit(&verdict, -1, memory_order_relaxed);
}

#endif

bool lp_frame_first(lua_State *L, lp_frame *f) {
  f->L = L;
  f->level = 0;
  f->fast = LP_FRAMES_BUILT && atomic_load_explicit(&verdict, memory_order_relaxed) == 1;
  return lua_getstack(L, 0, &f->ar) != 0;
}

bool lp_frame_next(lp_frame *f) {
  f->level++;
#if LP_FRAMES_BUILT
  if (f->fast) {
    struct CallInfo *below = CI_PREVIOUS(f->ar.i_ci);
    if (below == NULL || CI_PREVIOUS(below) == NULL)
      return false; /* f was the bottom frame: below it is the base CallInfo */
    f->ar.i_ci = below;
    return true;
  }
#endif
  return lua_getstack(f->L, f->level, &f->ar) != 0;
}
