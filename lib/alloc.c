/*
** alloc.c: every pooled state's allocator (alloc.h).
*/
#include <stdint.h>
#include <stdlib.h>

#include "alloc.h"
#include "fault.h"

void lp_alloc_init(lp_alloc *a, size_t mem_limit) {
  a->bytes = 0;
  a->peak = 0;
  a->limit = mem_limit != 0 ? mem_limit : SIZE_MAX;
  a->grown = 0;
  a->hit = false;
  a->refusing = false;
  a->gate = NULL;
  a->gate_ud = NULL;
  a->newest_thread = NULL;
}

/*
** A refused growth makes Lua collect in full and retry the same call (lmem.c, tryagain), then
** raise a memory error if the retry is refused too.  A retry that succeeds was no memory error:
** the garbage (often the previous request's, which the reset does not collect) made room.  So a
** refusal stays "refusing" until the next growth call: the same call succeeding cures it; the
** same call refused again, or any other growth (Lua gave up without retrying, raising or, as for
** the string table's resize, ignoring it) makes it a hit.  lp_alloc_was_refused counts a
** refusal still unresolved, which Lua is out of once the host asks.
**
** Lua counts every block as the size it asked for, and names that size back on the next call, so
** the count follows Lua's even when a shrink that realloc refused leaves the block larger.
**
** The limit test cannot wrap: a heap already above the limit (a restore lifts it, alloc.h)
** refuses every growth, and grow > limit - bytes is computed only when bytes <= limit.
*/
/*
** May the block at ptr grow from osize to nsize?  A refusal for mem_limit stays pending until
** Lua's next growth: Lua collects and retries the same call once, and only a refusal the retry
** does not cure is a memory error (hit).
*/
static bool may_grow(lp_alloc *a, void *ptr, size_t osize, size_t nsize, bool vector) {
  if (LP_FAULT(LP_FAULT_LUA))
    return false; /* an injected failure (fault.h): as a failed realloc, not a mem_limit hit */
  size_t grow = nsize - osize;
  bool over = a->bytes > a->limit || grow > a->limit - a->bytes;
  bool retry = false;
  if (a->refusing) {
    retry = ptr == a->refused_ptr && osize == a->refused_osize && nsize == a->refused_nsize;
    a->refusing = false;
    if (!retry || over)
      a->hit = true; /* the refusal was final: no retry, or the retry refused too */
  }
  if (over) {
    if (!retry) { /* a first try: Lua may collect and retry it */
      a->refusing = true;
      a->refused_ptr = ptr;
      a->refused_osize = osize;
      a->refused_nsize = nsize;
    }
    if (a->gate != NULL)
      (void)a->gate(a->gate_ud, grow, true, false);
    return false;
  }
  if (grow >= LP_ALLOC_GATE_BYTES && a->gate != NULL && !a->gate(a->gate_ud, grow, false, vector))
    return false;
  a->grown += grow;
  return true;
}

/* alloc_f past a free: a new block, a growth or a shrink (osize 0 for a new block, whose Lua
   type is tag: 0 for a vector). */
static __attribute__((noinline)) void *alloc_resize(lp_alloc *a, void *ptr, size_t osize,
                                                    size_t nsize, size_t tag) {
  if (nsize > osize && !may_grow(a, ptr, osize, nsize, ptr == NULL && tag == 0))
    return NULL;
  void *q = realloc(ptr, nsize);
  if (ptr == NULL && tag == LUA_TTHREAD && q != NULL)
    a->newest_thread = q;
  if (q == NULL) {
    if (nsize > osize)
      return NULL;
    q = ptr; /* Lua expects shrinking to succeed */
  }
  a->bytes = a->bytes - osize + nsize;
  if (a->bytes > a->peak)
    a->peak = a->bytes;
  return q;
}

/*
** Lua's allocator for every pooled state.  A free is the one path short enough to need no saved
** register: lua_close frees a state's few hundred blocks through it, and the collector every
** block it sweeps (the rest is alloc_resize, out of line, a tail call).
*/
static void *alloc_f(void *ud, void *ptr, size_t osize, size_t nsize) {
  lp_alloc *a = ud;
  if (nsize == 0) {
    if (ptr != NULL) /* with no block, osize is the new object's type */
      a->bytes -= osize;
    if (ptr == a->newest_thread)
      a->newest_thread = NULL;
    free(ptr);
    return NULL;
  }
  return ptr != NULL ? alloc_resize(a, ptr, osize, nsize, 0)
                     : alloc_resize(a, ptr, 0, nsize, osize);
}

lua_State *lp_alloc_newstate(lp_alloc *a) {
  return lua_newstate(alloc_f, a);
}

lp_alloc *lp_alloc_of(lua_State *L) {
  void *ud;
  return L != NULL && lua_getallocf(L, &ud) == alloc_f ? ud : NULL;
}

void lp_alloc_settle(lp_alloc *a) {
  a->peak = a->bytes;
  a->hit = false;
  a->refusing = false;
}

size_t lp_alloc_lift_limit(lp_alloc *a) {
  size_t limit = a->limit;
  a->limit = SIZE_MAX;
  return limit;
}

void lp_alloc_restore_limit(lp_alloc *a, size_t limit) {
  a->limit = limit;
}
