/*
** frames.h: walking a thread's call frames in one step each.
**
** Lua's lua_getstack(L, level) walks from the running frame down to level, so visiting every
** frame with it costs the square of the depth: at 150,000 frames (a plain recursion) ~10^10 steps,
** 30 s, which is what a budget's stop took to disarm the message handlers of a deep stack
** (doc/security.md, class 20).  lp_frame_next steps from a frame to the one below through the
** CallInfo's link instead (lstate.h: func, top, previous, next, the same in Lua 5.4.0 to 5.4.8),
** once lp_frames_probe checked that layout on frames of known shape; without it (another Lua, or
** the probe failed) it falls back on lua_getstack, correct and quadratic.
**
** A frame's lua_Debug serves lua_getinfo, lua_getlocal and lua_setlocal as lua_getstack's does:
** they read only its CallInfo.  The walk must not outlive a change of L's frames (a call, a
** return, an error): the CallInfo of a frame that ended is Lua's to reuse.
*/
#ifndef LUAPOOL_FRAMES_H
#define LUAPOOL_FRAMES_H

#include <stdbool.h>

#include <lua.h>

typedef struct lp_frame {
  lua_State *L;
  int level; /* 0: the running function */
  bool fast; /* lp_frame_next steps through the CallInfo's link */
  lua_Debug ar;
} lp_frame;

/*
** On L, protected (it calls into Lua; any thread of any state: the verdict is the process's, as
** every state runs the same Lua library): checks the layout lp_frame_next reads, once.
*/
void lp_frames_probe(lua_State *L);
/* The running frame of L (level 0); false when L runs none. */
bool lp_frame_first(lua_State *L, lp_frame *f);
/* The frame below f's; false at the bottom (f is then unusable). */
bool lp_frame_next(lp_frame *f);

#endif /* LUAPOOL_FRAMES_H */
