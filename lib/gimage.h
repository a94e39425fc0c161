/*
** gimage.h: an image of the global state's words the reset asks about, its shortcut past the C
** API for them: the types' metatables (seven lua_getmetatable calls) and the collector's
** settings (two lua_gc calls, one of them variadic).
**
** Every thread of a state shares one global_State, which holds the metatable of each type that
** has one per type (nil, boolean, light userdata, number, string, function, thread) and the
** collector's mode, stop flag and parameters.  The reset puts both back as they were in a new
** state.  The image reads them where Lua keeps them: if the metatable pointers are the recorded
** ones, no type's metatable changed; if the collector's bytes are a new state's, the lua_gc calls
** would set nothing.  Anything else sends the reset to the API as before, which decides and puts
** back (doc/design.md, "The global image").
**
** It reads Lua 5.4.4's private global_State layout (lstate.h; 5.4.0-5.4.3 and 5.4.6 on lay it
** out otherwise), so it is built only for 5.4.4 (LP_GLOBAL_IMAGE), and a probe on a state of
** its own, once per process, checks the layout: the pointers around the metatables (the main
** thread, the allocator, the registry, the metamethod names) and how each metatable and each
** collector setting reads after it was set through the API.  When the probe fails, the API
** decides every time.  LUAPOOL_TABLE_IMAGE turns it off (=off) or makes every reset ask the API
** too and abort if the two disagree (=verify), as for the table image.
*/
#ifndef LUAPOOL_GIMAGE_H
#define LUAPOOL_GIMAGE_H

#include <stdbool.h>

#include <lua.h>

#include "config.h"

/* The layout of Lua 5.4.4's lua_State and global_State (gimage.c) is described for 5.4.4 only. */
#if LUA_VERSION_RELEASE_NUM == 50404
#define LP_LAYOUT_BUILT 1
#else
#define LP_LAYOUT_BUILT 0
#endif

#if defined(LP_TABLE_IMAGE) && LP_TABLE_IMAGE && LP_LAYOUT_BUILT
#define LP_GIMAGE_BUILT 1
#else
#define LP_GIMAGE_BUILT 0
#endif

/* Lua 5.4's collector defaults (lgc.h: LUAI_GCPAUSE, LUAI_GCMUL, LUAI_GCSTEPSIZE,
   LUAI_GENMINORMUL, LUAI_GENMAJORMUL): the settings of a new state, which the reset puts back. */
#define LP_GC_PAUSE 200
#define LP_GC_STEPMUL 100
#define LP_GC_STEPSIZE 13
#define LP_GC_GENMINOR 20
#define LP_GC_GENMAJOR 100

/* Lua's type tags 0..8 (LUA_NUMTYPES): the global state's metatable array. */
#define LP_GIMAGE_TYPES 9

typedef struct lp_gimage {
  const void *g;                   /* the state's global_State; NULL: no image, the API decides */
  const void *mt[LP_GIMAGE_TYPES]; /* the types' metatables when the image was taken */
} lp_gimage;

/*
** The image of the global state of L (any thread of the state) if the probe accepted this Lua
** (the probe runs on a state of its own the first time); g stays NULL when it did not, or when
** images are not built.  The snapshot takes it where its table images are on (not for
** LUAPOOL_TABLE_IMAGE=off).  Allocates nothing in L.
*/
void lp_gimage_take(lp_gimage *im, lua_State *L);
/* Are the types' metatables the ones imaged?  False when there is no image. */
bool lp_gimage_mt_same(const lp_gimage *im);
/* Is the collector as lp_gimage's reset leaves it (running, incremental, the LP_GC_ settings)?
   False when there is no image. */
bool lp_gimage_gc_clean(const lp_gimage *im);
/* Of the collector's settings, do the generational ones differ from a new state's (a request
   switched to generational mode and back)?  False when there is no image. */
bool lp_gimage_gc_gen_changed(const lp_gimage *im);
/*
** A thread's stack, read in place (Lua 5.4.4's lua_State: stack, stack_last, top), for the
** budget's cap on its size (budget.c).  Lua allocates a stack as a new vector of its size plus
** LP_STACK_EXTRA slots of 16 bytes (ldo.c, luaD_reallocstack: EXTRA_STACK), and grows it to
** twice its size, or to what a lua_checkstack needs when that is more.  The stack probe checks
** all of it once per process, on a state of its own: lp_gimage_stack_known runs it (allocating;
** never inside an allocation) and says whether it accepted; lp_gimage_stack then reads size and
** slots in use of any thread of any state, allocating nothing, and is false where the probe did
** not accept (or never ran) or the layout is not built.  Unlike the image, it is no shortcut:
** LUAPOOL_TABLE_IMAGE does not govern it.
*/
#define LP_STACK_EXTRA 5
#define LP_STACK_SLOT 16
bool lp_gimage_stack_known(void);
bool lp_gimage_stack(lua_State *L, size_t *size, size_t *inuse);

/* Verify mode: the image called something unchanged that the API found changed.  Logs to stderr
   and aborts. */
void lp_gimage_disagree(const char *what);

#endif /* LUAPOOL_GIMAGE_H */
