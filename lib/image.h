/*
** image.h: a byte image of a Lua table's internals, the reset's shortcut past lua_next.
**
** A table's contents are its array part, its node array and its header (sizes, part pointers,
** metatable pointer): in the parts, each value's and key's type tag, the payload of those whose
** tag has one, and the nodes' chain links.  If all of them are what they were when the image
** was taken (a copy of the parts' bytes, compared field by field: image.c), the table holds what
** it held then: same keys, same values, same metatable; the reset need not walk it.  If anything differs (a change, or only Lua's own upkeep: a rehash, a dead key, a new
** length hint), the reset walks it through the C API as before and decides there.  So the image
** can only ever send a table to the walk; it never hides a change the walk would see
** (doc/design.md, "The table image").
**
** It reads Lua 5.4's private table layout (lobject.h), the same in 5.4.0 to 5.4.8: configure
** enables it only for those releases (LP_TABLE_IMAGE), and lp_image_probe checks the layout on
** tables of known contents at each state's creation; when it fails, no image is taken and every
** reset walks.  LUAPOOL_TABLE_IMAGE=off in the environment turns it off; =verify makes every
** reset walk every table too and abort the process if an image ever called clean a table the
** walk found changed (make check runs that way throughout).
*/
#ifndef LUAPOOL_IMAGE_H
#define LUAPOOL_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <lua.h>

#include "config.h"

#if defined(LP_TABLE_IMAGE) && LP_TABLE_IMAGE && LUA_VERSION_RELEASE_NUM >= 50400 &&               \
    LUA_VERSION_RELEASE_NUM <= 50408
#define LP_IMAGE_BUILT 1
#else
#define LP_IMAGE_BUILT 0
#endif

/* What a state's snapshot does with images (lp_image_mode). */
enum { LP_IMAGE_OFF, LP_IMAGE_ON, LP_IMAGE_VERIFY };

/* The header fields that decide a table's contents, and a copy of its two parts' bytes. */
typedef struct lp_image {
  const void *t; /* the table (a Lua Table); NULL: no image, the walk decides */
  const void *array, *node, *mt;
  unsigned alimit;
  unsigned char lsizenode, realsize; /* realsize: the array size is alimit (Lua's BITRAS clear) */
  size_t abytes, nbytes, cap;
  unsigned char *bytes; /* abytes of the array part, then nbytes of the node array */
} lp_image;

/*
** On L (protected: it allocates in L): does this Lua lay tables out as image.c reads them?  Then
** the mode the environment asks (LP_IMAGE_ON by default); else LP_IMAGE_OFF.
*/
int lp_image_mode(lua_State *L);
/* Takes the image of table t (lua_topointer of a table).  Without memory, im->t is NULL. */
void lp_image_take(lp_image *im, const void *t);
/* How many entries lua_next would give for table t (lua_topointer of a table), read from its
   parts; only where lp_image_mode did not say LP_IMAGE_OFF.  -1 when images are not built. */
int lp_image_count(const void *t);
/* Is table im->t as imaged?  False when there is no image.  Allocates nothing. */
bool lp_image_same(const lp_image *im);
/* Verify mode: an image called a changed table clean.  Logs to stderr and aborts. */
void lp_image_disagree(int table);
/* Verify mode: lp_image_count and lua_next disagree on a table's entries.  The same. */
void lp_image_disagree_count(int table, int layout, int api);
void lp_image_free(lp_image *im);

#endif /* LUAPOOL_IMAGE_H */
