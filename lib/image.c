/*
** image.c: the table image (image.h).
**
** The layout below describes Lua 5.4's Table, Node and TValue (lobject.h, unchanged from 5.4.0
** to 5.4.8) in luapool's own names.  Only this file reads it, and only for tables the snapshot
** recorded and keeps alive, so every pointer it follows is to a live table's parts.
*/
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "fault.h"
#include "image.h"

#if LP_IMAGE_BUILT

/* A value: 8 bytes of payload, then its type tag (Lua's Value and TValue). */
typedef union lp_lval {
  void *gc;
  void *p;
  lua_CFunction f;
  lua_Integer i;
  lua_Number n;
} lp_lval;

typedef struct lp_ltv {
  lp_lval v;
  unsigned char tt;
} lp_ltv;

/* A hash node: its value's payload and tag, its key's tag, the chain link, its key's payload. */
typedef union lp_lnode {
  struct {
    lp_lval v;
    unsigned char tt;
    unsigned char key_tt;
    int next;
    lp_lval key;
  } u;
  lp_ltv val;
} lp_lnode;

/* The table: the collector's header (next, tt, marked), the metamethod-absence flags (bit 7: the
   array size is not alimit), log2 of the node count, and the parts. */
typedef struct lp_ltable {
  void *next;
  unsigned char tt, marked;
  unsigned char flags, lsizenode;
  unsigned alimit;
  lp_ltv *array;
  lp_lnode *node;
  lp_lnode *lastfree;
  const void *metatable;
  void *gclist;
} lp_ltable;

/* Lua's type tags (lobject.h): the variant in bits 4-5, collectable in bit 6. */
#define LT_VNIL 0
#define LT_VTRUE (LUA_TBOOLEAN | (1 << 4))
#define LT_VNUMINT LUA_TNUMBER
#define LT_VNUMFLT (LUA_TNUMBER | (1 << 4))
#define LT_CSHRSTR (LUA_TSTRING | (1 << 6))
#define LT_BITRAS (1 << 7)

/* The array part's size: alimit, or (a length hint in alimit) the power of 2 above it. */
static size_t array_size(const lp_ltable *t) {
  size_t n = t->alimit;
  if (!(t->flags & LT_BITRAS) || (n & (n - 1)) == 0)
    return n;
  size_t p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

void lp_image_take(lp_image *im, const void *table) {
  const lp_ltable *t = table;
  size_t abytes = array_size(t) * sizeof(lp_ltv);
  size_t nbytes = ((size_t)1 << t->lsizenode) * sizeof(lp_lnode);
  if (abytes + nbytes > im->cap) {
    unsigned char *b = lp_realloc(im->bytes, abytes + nbytes);
    if (b == NULL) {
      im->t = NULL; /* the walk decides for this table from now on */
      return;
    }
    im->bytes = b;
    im->cap = abytes + nbytes;
  }
  im->t = t;
  im->array = t->array;
  im->node = t->node;
  im->mt = t->metatable;
  im->alimit = t->alimit;
  im->lsizenode = t->lsizenode;
  im->realsize = !(t->flags & LT_BITRAS);
  im->abytes = abytes;
  im->nbytes = nbytes;
  if (abytes != 0)
    memcpy(im->bytes, t->array, abytes);
  memcpy(im->bytes + abytes, t->node, nbytes);
}

int lp_image_count(const void *table) {
  const lp_ltable *t = table;
  int n = 0;
  for (size_t i = 0, size = array_size(t); i < size; i++)
    n += (t->array[i].tt & 0x0f) != LUA_TNIL; /* lua_next skips Lua's three nils */
  for (size_t i = 0, size = (size_t)1 << t->lsizenode; i < size; i++)
    n += (t->node[i].u.tt & 0x0f) != LUA_TNIL; /* a dead key's value is nil too */
  return n;
}

/*
** Whether a tag's value has a payload: nil, false and true (and Lua's empty and absent-key nils)
** are their tag alone, and Lua never writes their 8 payload bytes, nor the padding after a tag.
** So the compare reads tags, chain links and only the payloads that mean something: it never
** looks at bytes Lua left uninitialised (valgrind's memcheck holds it to that), and garbage in
** them makes no false difference.  A dead key (the collector's) keeps its pointer: compared.
*/
static bool has_payload(unsigned char tt) {
  return (tt & 0x0f) > LUA_TBOOLEAN;
}

static bool same_value(const lp_lval *a, unsigned char att, const lp_lval *b, unsigned char btt) {
  return att == btt && (!has_payload(att) || a->i == b->i);
}

/*
** On 64-bit targets a node is three words: the value's payload, then its tag, its key's tag, two
** bytes of padding and the chain link, then the key's payload.  The middle word's mask keeps the
** tags and the link and drops the padding (Lua never writes it), whatever the byte order.  Where
** the node is laid out otherwise (a 32-bit ABI), the fields are compared one by one.
*/
#define LP_NODE_WORDS                                                                              \
  (sizeof(lp_lnode) == 3 * sizeof(uint64_t) && offsetof(lp_lnode, u.tt) == 8 &&                    \
   offsetof(lp_lnode, u.key_tt) == 9 && offsetof(lp_lnode, u.next) == 12 &&                        \
   offsetof(lp_lnode, u.key) == 16)

static uint64_t tags_and_link(void) {
  lp_lnode n;
  memset(&n, 0, sizeof n);
  n.u.tt = 0xff;
  n.u.key_tt = 0xff;
  n.u.next = -1;
  uint64_t w[3];
  memcpy(w, &n, sizeof w);
  return w[1];
}

/* Word k of node n (a load: memcpy keeps it within the rules on aliasing). */
static uint64_t node_word(const lp_lnode *n, int k) {
  uint64_t w;
  memcpy(&w, (const unsigned char *)n + (size_t)k * sizeof w, sizeof w);
  return w;
}

/* Nodes a and b (n of each) the same: tags and links, and the payloads that mean something. */
static bool same_nodes(const lp_lnode *a, const lp_lnode *b, size_t n) {
  if (!LP_NODE_WORDS) { /* a constant: one of the two loops is compiled */
    for (size_t i = 0; i < n; i++)
      if (a[i].u.next != b[i].u.next || !same_value(&a[i].u.v, a[i].u.tt, &b[i].u.v, b[i].u.tt) ||
          !same_value(&a[i].u.key, a[i].u.key_tt, &b[i].u.key, b[i].u.key_tt))
        return false;
    return true;
  }
  const uint64_t mask = tags_and_link();
  for (size_t i = 0; i < n; i++) {
    if ((node_word(&a[i], 1) ^ node_word(&b[i], 1)) & mask)
      return false; /* equal tags from here on: the payload test is the same for both */
    if (has_payload(a[i].u.tt) && node_word(&a[i], 0) != node_word(&b[i], 0))
      return false;
    if (has_payload(a[i].u.key_tt) && node_word(&a[i], 2) != node_word(&b[i], 2))
      return false;
  }
  return true;
}

bool lp_image_same(const lp_image *im) {
  const lp_ltable *t = im->t;
  if (t == NULL)
    return false;
  if ((const void *)t->array != im->array || (const void *)t->node != im->node ||
      t->metatable != im->mt || t->alimit != im->alimit || t->lsizenode != im->lsizenode ||
      (!(t->flags & LT_BITRAS)) != im->realsize)
    return false;
  /* the same sizes and parts: the entries decide */
  const lp_ltv *a = (const lp_ltv *)(const void *)im->bytes;
  for (size_t i = 0, n = im->abytes / sizeof *a; i < n; i++)
    if (!same_value(&t->array[i].v, t->array[i].tt, &a[i].v, a[i].tt))
      return false;
  return same_nodes(t->node, (const lp_lnode *)(const void *)(im->bytes + im->abytes),
                    im->nbytes / sizeof(lp_lnode));
}

/* ---- the probe ---------------------------------------------------------------------------- */

/* The node of t whose key is the short string s, if exactly one has it. */
static const lp_lnode *node_of(const lp_ltable *t, const void *s) {
  const lp_lnode *found = NULL;
  for (size_t i = 0; i < ((size_t)1 << t->lsizenode); i++) {
    const lp_lnode *n = &t->node[i];
    if (n->u.key_tt == LT_CSHRSTR && n->u.key.gc == s) {
      if (found != NULL)
        return NULL;
      found = n;
    }
  }
  return found;
}

/* An image that must say "same" (want) after each step of the probe. */
static bool probe_step(lp_image *im, bool want) {
  return lp_image_same(im) == want;
}

/*
** Tables of known contents, read through the layout: sizes, tags and payloads of the array part
** and of a node, the metatable pointer, an empty table's parts; then the image must see each
** change made through the API and none when it is undone.  Leaves L's stack as it was.  1: the
** layout is the one described above; -1: it is not; 0: no memory for the probe's image (no
** verdict: a transient failure must not turn the image off for the process).
*/
static int probe(lua_State *L) {
  int top = lua_gettop(L);
  int verdict = -1;
  lp_image im = {0};
  lua_newtable(L);
  const lp_ltable *e = lua_topointer(L, -1);
  if (e->tt != LUA_TTABLE || e->alimit != 0 || e->lsizenode != 0 || e->lastfree != NULL ||
      e->metatable != NULL)
    goto out;
  lua_createtable(L, 2, 2);
  int t = lua_gettop(L);
  const lp_ltable *p = lua_topointer(L, t);
  lua_pushinteger(L, 7);
  lua_rawseti(L, t, 1);
  lua_pushnumber(L, 0.5);
  lua_rawseti(L, t, 2);
  lua_pushliteral(L, "luapool image probe"); /* a short string: one object per contents */
  const void *key = lua_topointer(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
  lua_newtable(L);
  const void *mt = lua_topointer(L, -1);
  lua_setmetatable(L, t);
  if (p->tt != LUA_TTABLE || p->alimit != 2 || (p->flags & LT_BITRAS) || p->lsizenode != 1 ||
      p->metatable != mt || array_size(p) != 2)
    goto out;
  if (p->array[0].tt != LT_VNUMINT || p->array[0].v.i != 7 || p->array[1].tt != LT_VNUMFLT ||
      p->array[1].v.n != 0.5)
    goto out;
  const lp_lnode *n = node_of(p, key);
  if (n == NULL || n->u.tt != LT_VTRUE)
    goto out;
  lp_image_take(&im, p);
  if (im.t == NULL) {
    verdict = 0;
    goto out;
  }
  if (!probe_step(&im, true))
    goto out;
  lua_pushinteger(L, 8);
  lua_rawseti(L, t, 1);
  if (!probe_step(&im, false))
    goto out;
  lua_pushinteger(L, 7);
  lua_rawseti(L, t, 1);
  if (!probe_step(&im, true))
    goto out;
  lua_pushliteral(L, "luapool image probe");
  lua_pushboolean(L, 0);
  lua_rawset(L, t);
  if (!probe_step(&im, false))
    goto out;
  lua_pushliteral(L, "luapool image probe");
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
  if (!probe_step(&im, true))
    goto out;
  lua_pushnil(L);
  lua_setmetatable(L, t);
  if (probe_step(&im, false) && p->metatable == NULL)
    verdict = 1;
out:
  lp_image_free(&im);
  lua_settop(L, top);
  return verdict;
}

/*
** The probe's verdict, once per process (0: not probed yet, 1: passed, -1: failed): every state
** of a process runs the same Lua library.  Relaxed: each thread that finds 0 probes for itself
** and stores the same verdict; the flag publishes nothing else.
*/
static _Atomic int probed;

int lp_image_mode(lua_State *L) {
  const char *env = getenv("LUAPOOL_TABLE_IMAGE");
  if (env != NULL && strcmp(env, "off") == 0)
    return LP_IMAGE_OFF;
  int verdict = atomic_load_explicit(&probed, memory_order_relaxed);
  if (verdict == 0) {
    verdict = probe(L);
    if (verdict != 0)
      atomic_store_explicit(&probed, verdict, memory_order_relaxed);
  }
  if (verdict <= 0)
    return LP_IMAGE_OFF;
  return env != NULL && strcmp(env, "verify") == 0 ? LP_IMAGE_VERIFY : LP_IMAGE_ON;
}

#else /* not built: every reset walks */

int lp_image_mode(lua_State *L) {
  (void)L;
  return LP_IMAGE_OFF;
}

void lp_image_take(lp_image *im, const void *t) {
  (void)t;
  im->t = NULL;
}

int lp_image_count(const void *table) {
  (void)table;
  return -1;
}

bool lp_image_same(const lp_image *im) {
  (void)im;
  return false;
}

#endif

void lp_image_disagree_count(int table, int layout, int api) {
  (void)fprintf(stderr,
                "luapool: LUAPOOL_TABLE_IMAGE=verify: recorded table %d has %d entries by its "
                "layout but %d by lua_next: the layout is misread here; aborting\n",
                table, layout, api);
  abort();
}

void lp_image_disagree(int table) {
  (void)fprintf(
      stderr,
      "luapool: LUAPOOL_TABLE_IMAGE=verify: the image of recorded table %d called it unchanged "
      "but the walk found a change: the image is unsound here; aborting\n",
      table);
  abort();
}

void lp_image_free(lp_image *im) {
  lp_free(im->bytes);
  memset(im, 0, sizeof *im);
}
