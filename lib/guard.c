/*
** guard.c: the library wrappers that keep the budget whole (guard.h), in every profile.
**
** A count hook sees VM instructions only.  The wrappers close what it cannot see:
**   - coroutines: each thread has its own count, so a coroutine that runs fewer instructions
**     than the hook's period and dies was never charged.  coroutine.create and coroutine.wrap
**     charge that period up front; resume, wrap's function and close make sure the coroutine
**     carries the hook, tell the allocator's gate which thread runs (lp_budget_enter_thread),
**     and raise in the resumer at once when the request stopped inside the coroutine.  A stopped
**     request closes no coroutine: one that died of the budget's error may have its hooks off
**     for good (Lua's allowhook), and its __close handlers would run unbounded.
**   - library functions whose one call walks a long string or table without allocating
**     (table.move, table.insert, table.sort, utf8.len, string.format...) or that collect
**     garbage: each charges its work before it starts (budget.h: LP_BUDGET_BYTES per
**     instruction); allocations are charged by the allocator.  A charge is a look at the
**     deadline and the interrupt, which a call charged before gets only at its start, so the
**     longest ones (table.move, string.rep, a long table.sort, a long utf8.len) are the guard's
**     and also look as they go (doc/security.md, class 21).
**   - the pattern functions (find, match, gmatch, gsub), whose one call can backtrack for as
**     long as the pattern likes: luapool's own matcher (pattern.c), which charges as it goes.
**   - debug.sethook (LUAPOOL_LIB_DEBUG) is refused while a budget is set (a script's own hook
**     would replace the budget's), and debug.gethook does not show the budget's hook.
** Most wrappers call the library's own C function on its own stack frame, so arguments, results
** and error messages are the library's; those that replace one (insert, remove, move, rep, and
** concat, unpack, sort in some cases) keep Lua 5.4.4's semantics and messages, and
** tests/fidelity compares them with stock Lua.  The wrappers have no upvalues (the reset has
** nothing more to check, and no debug.setupvalue can point one elsewhere): the originals are Lua's
*own
** library functions, the same for every state of the process, kept in `originals`.  Every
** creation stores each slot (relaxed: every store writes the same value) before any code of its
** state can call the wrapper, so a wrapper's load sees that value.  None of those library
** functions reads its upvalues.
*/
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "base.h"
#include "budget.h"
#include "fault.h"
#include "frames.h"
#include "guard.h"
#include "pattern.h"

/* The wrapped functions, by index into `originals` and `wrappers`. */
enum {
  W_COLLECTGARBAGE,
  W_TONUMBER,
  W_LOAD,
  W_ERROR,
  W_CREATE,
  W_RESUME,
  W_CLOSE,
  W_REP,
  W_FIND,
  W_MATCH,
  W_GMATCH,
  W_GSUB,
  W_BYTE,
  W_FORMAT,
  W_PACK,
  W_PACKSIZE,
  W_UNPACK_STR,
  W_MOVE,
  W_INSERT,
  W_REMOVE,
  W_SORT,
  W_CONCAT,
  W_UNPACK,
  W_LEN,
  W_OFFSET,
  W_CODEPOINT,
  W_SETHOOK,
  W_GETHOOK,
  W_GETINFO,
  W_GETLOCAL,
  W_SETLOCAL,
  W_TRACEBACK,
  W_COUNT
};

static _Atomic(lua_CFunction) originals[W_COUNT];

static int call_original(lua_State *L, int w) {
  return atomic_load_explicit(&originals[w], memory_order_relaxed)(L);
}

/* ---- what a call costs ---------------------------------------------------------------------- */

static uint64_t string_bytes(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TSTRING ? (uint64_t)lua_rawlen(L, i) : 0;
}

static uint64_t table_length(lua_State *L, int i) {
  return lua_type(L, i) == LUA_TTABLE ? (uint64_t)lua_rawlen(L, i) : 0;
}

/* An integer argument, or def when absent; false when it is neither (the library complains). */
static bool integer_arg(lua_State *L, int i, lua_Integer def, lua_Integer *v) {
  if (lua_isnoneornil(L, i)) {
    *v = def;
    return true;
  }
  int isnum;
  *v = lua_tointegerx(L, i, &isnum);
  return isnum != 0;
}

/* n x k, saturating: a charge never wraps around to a small one. */
static uint64_t times(uint64_t n, uint64_t k) {
  return k != 0 && n > UINT64_MAX / k ? UINT64_MAX : n * k;
}

/* Elements from i to j (0 if none), overflow-safe. */
static uint64_t span(lua_Integer i, lua_Integer j) {
  return j >= i ? (uint64_t)j - (uint64_t)i + 1 : 0;
}

/* ---- the wrappers ----------------------------------------------------------------------------- */

/*
** The charges, in instructions (one ~3 ns on the machine they were measured on: a VM
** instruction of a numeric for loop), per byte or element each function walks, rounded up from
** what Lua 5.4.4 took there per byte or element (doc/security.md has the table).
*/
#define LP_COST_PATTERN 2 /* per format byte: format, pack, packsize, unpack */
#define LP_COST_BYTE 1    /* per byte: utf8.len, utf8.offset, tonumber */
#define LP_COST_COMPILE 4 /* per byte load compiles: dense code, 10; blanks, 0.5 */
#define LP_COST_SORT 5    /* per element and level of table.sort's n log n */
#define LP_COST_MOVE 3    /* per element table.move, insert and remove move */
#define LP_COST_CONCAT 16 /* per element of table.concat (a number is converted) */
#define LP_COST_UNPACK 2  /* per value table.unpack, string.byte, utf8.codepoint push */

/* A walk over argument 1's bytes, at n instructions per byte. */
static int scan(lua_State *L, int w, uint64_t n) {
  lp_budget_charge(L, times(string_bytes(L, 1), n) + 1);
  return call_original(L, w);
}

#define SCAN(fn, w, cost)                                                                          \
  static int fn(lua_State *L) {                                                                    \
    return scan(L, w, cost);                                                                       \
  }
SCAN(g_tonumber, W_TONUMBER, LP_COST_BYTE)
SCAN(g_format, W_FORMAT, LP_COST_PATTERN)
SCAN(g_pack, W_PACK, LP_COST_PATTERN)
SCAN(g_packsize, W_PACKSIZE, LP_COST_PATTERN)
SCAN(g_unpack_str, W_UNPACK_STR, LP_COST_PATTERN)
SCAN(g_offset, W_OFFSET, LP_COST_BYTE)

/*
** utf8.len(s [, i [, j [, lax]]]) over more than LP_LEN_SLICE bytes: the library's count, slice
** by slice, with a look between (charged before as it was; one call over 3e7 bytes took 104 ms
** with no look).  A slice ends before a byte that is no continuation byte, so every character
** that starts in it ends in it (a character's continuation bytes follow its first byte), and
** the next character starts where the next slice does; the positions, messages and results
** are the library's.  Where no such byte comes within 8 bytes of the slice's end, the slice takes
** them in: a character has at most 5 continuation bytes, so the library's count fails on one of
** them, as it would in one call.
*/
#define LP_LEN_SLICE ((lua_Integer)1 << 20)

static bool continuation_byte(char c) {
  return ((unsigned char)c & 0xC0) == 0x80;
}

/* A position relative to the end when negative, as the utf8 library's. */
static lua_Integer utf8_position(lua_Integer pos, size_t len) {
  if (pos >= 0)
    return pos;
  if (0U - (size_t)pos > len)
    return 0;
  return (lua_Integer)len + pos + 1;
}

static int g_len(lua_State *L) {
  lp_budget_charge(L, times(string_bytes(L, 1), LP_COST_BYTE) + 1);
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer first = utf8_position(luaL_optinteger(L, 2, 1), len);
  lua_Integer last = utf8_position(luaL_optinteger(L, 3, -1), len);
  luaL_argcheck(L, 1 <= first && first - 1 <= (lua_Integer)len, 2,
                "initial position out of bounds");
  luaL_argcheck(L, last - 1 < (lua_Integer)len, 3, "final position out of bounds");
  if (last - first < LP_LEN_SLICE)
    return call_original(L, W_LEN);
  int lax = lua_toboolean(L, 4);
  lua_Integer n = 0;
  while (first <= last) {
    lua_Integer end = last;
    if (last - first >= LP_LEN_SLICE) {
      end = first + LP_LEN_SLICE - 1; /* s[end] (0-based) is then inside the string */
      for (int k = 0; k < 8 && end < last && continuation_byte(s[end]); k++)
        end++;
    }
    lua_pushcfunction(L, atomic_load_explicit(&originals[W_LEN], memory_order_relaxed));
    lua_pushvalue(L, 1);
    lua_pushinteger(L, first);
    lua_pushinteger(L, end);
    lua_pushboolean(L, lax);
    lua_call(L, 4, 2);
    if (!lua_isinteger(L, -2))
      return 2; /* fail and the position of the bad byte */
    n += lua_tointeger(L, -2);
    lua_pop(L, 2);
    first = end + 1;
    LP_POINT(LP_POINT_GUARD_LOOK);
    lp_budget_charge(L, 0);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* ---- load: the chunk in charged pieces ---------------------------------------------------- */

/*
** Lua's compiler runs inside one C call, and some chains cost it the square of their length: each
** `or` or `and` of one expression, each `elseif` of one statement, each pending `goto` walks a
** list as long as the chain so far (40,000 `or`s: 2.6 s for 200 KB of source).  So load reads
** its chunk in pieces of LP_LOAD_PIECE bytes, and before the compiler gets a piece the piece is
** charged: LP_COST_COMPILE per byte, and for the words that make chains (or, and, elseif, goto,
** counted wherever they stand as whole words: a comment or a string only overcounts) the growth
** of a quarter of their count's square, an upper bound of every chain's walks (a walk's step is
** about a quarter of an instruction's time; the words need not be in one chain, so code with
** many short chains pays for chains it does not have: 6,000 words, 9 M).  Deterministic: the
** charge depends on the bytes only.  A charge that stops the
** request raises inside the reader: the compiler's protected call catches it, load returns the
** error, and the stopped request fails at its next instruction.  Between two charges the compiler
** reads one piece; the deadline and the interrupt are looked at with each.
*/
#define LP_LOAD_PIECE 1024

typedef struct load_src {
  const char *s; /* what is left of the string chunk, or of the reader function's piece */
  size_t left;
  bool reader; /* a function chunk: load's argument 1, its pieces kept in slot 5 */
  bool done;
  uint64_t words; /* the chain words so far */
  size_t run;     /* the identifier being read across pieces: its length so far */
  char head[7];   /* its first bytes (a chain word is at most 6) */
} load_src;

static bool ident_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool chain_word(const char *w, size_t n) {
  return (n == 2 && memcmp(w, "or", 2) == 0) || (n == 3 && memcmp(w, "and", 3) == 0) ||
         (n == 4 && memcmp(w, "goto", 4) == 0) || (n == 6 && memcmp(w, "elseif", 6) == 0);
}

/* Counts the chain words that end in p..p+n (a word still open at the end stays in src). */
static void count_words(load_src *src, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ident_byte((unsigned char)p[i])) {
      if (src->run < sizeof src->head)
        src->head[src->run] = p[i];
      src->run++;
    } else {
      src->words += src->run > 0 && chain_word(src->head, src->run);
      src->run = 0;
    }
  }
}

/* What the next piece of p..p+n costs: its bytes, and a quarter of the words' square growing. */
static uint64_t piece_cost(load_src *src, const char *p, size_t n) {
  uint64_t before = src->words;
  count_words(src, p, n);
  uint64_t after = src->words;
  return times(n, LP_COST_COMPILE) + (after - before) * (after + before) / 4 + 1;
}

static const char *load_reader(lua_State *L, void *ud, size_t *size) {
  load_src *src = ud;
  if (src->left == 0 && src->reader && !src->done) {
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
    } else if (!lua_isstring(L, -1)) {
      luaL_error(L, "reader function must return a string");
    } else {
      lua_replace(L, 5);
      src->s = lua_tolstring(L, 5, &src->left);
    }
    src->done = src->left == 0; /* nil or "" ends the chunk, as in stock Lua */
  }
  size_t n = src->left < LP_LOAD_PIECE ? src->left : LP_LOAD_PIECE;
  if (n == 0) {
    *size = 0;
    return NULL;
  }
  lp_budget_charge(L, piece_cost(src, src->s, n));
  const char *piece = src->s;
  src->s += n;
  src->left -= n;
  *size = n;
  return piece;
}

/*
** The chunk's name (argument 2; a string chunk is its own name without one): Lua makes it a
** string before it reads a piece (luaS_new: a strlen, and a strcmp with each string of the API's
** cache that may match), work in proportion to its length that no allocation shows once the name
** is cached.  Charged as a comparison (table.sort's rate): a byte is 1/8 of an instruction.
*/
static uint64_t name_cost(lua_State *L, const char *s, size_t len) {
  uint64_t n = !lua_isnoneornil(L, 2) ? string_bytes(L, 2) : s != NULL ? len : 0;
  return n / 8 + 1;
}

int lp_guard_load_chunk(lua_State *L, const char *s, size_t len, const char *name,
                        const char *mode, bool env) {
  load_src src = {s, s != NULL ? len : 0, s == NULL, false, 0, 0, {0}};
  lp_budget_charge(L, name_cost(L, s, len));
  if (s == NULL) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 5);
  }
  int status = lua_load(L, load_reader, &src, name, mode);
  if (status != LUA_OK && lp_budget_request_stopped(L))
    lp_budget_raise(L); /* the compiler caught the stop: not load's error to return */
  if (status != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, 4);
    if (lua_setupvalue(L, -2, 1) == NULL)
      lua_pop(L, 1);
  }
  return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]), as the base library's, on lp_guard_load_chunk. */
static int g_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  const char *mode = luaL_optstring(L, 3, "bt");
  bool env = !lua_isnone(L, 4);
  const char *name = luaL_optstring(L, 2, s != NULL ? s : "=(load)");
  return lp_guard_load_chunk(L, s, len, name, mode, env);
}

/* The bytes of s's slice from argument i to j (j defaults to i), as string.byte reads them
   (lstrlib.c: posrelatI, getendpos); 0 when an argument is no integer (the library complains). */
static uint64_t slice_bytes(lua_State *L, uint64_t len) {
  lua_Integer i, j, l = (lua_Integer)len;
  if (!integer_arg(L, 2, 1, &i) || !integer_arg(L, 3, i, &j))
    return 0;
  if (i < 0)
    i = i < -l ? 1 : l + i + 1;
  else if (i == 0)
    i = 1;
  if (j > l)
    j = l;
  else if (j < 0)
    j = j < -l ? 0 : l + j + 1;
  return span(i, j);
}

/*
** string.byte(s, i, j), utf8.codepoint(s, i, j): one result per byte, at most.  Both make room
** on the stack for the slice's bytes (the library's luaL_checkstack), a growth past the gate's
** test: refused here past the stack's cap, with the library's message (budget.c).
*/
static int results(lua_State *L, int w) {
  uint64_t n = string_bytes(L, 1);
  lp_budget_charge(L, (lua_gettop(L) >= 3 ? times(n, LP_COST_UNPACK) : n) + 1);
  if (n > LUA_MINSTACK && !lp_budget_stack_room(L, (size_t)n) &&
      !lp_budget_stack_room(L, (size_t)slice_bytes(L, n)))
    return luaL_error(L, "stack overflow (string slice too long)"); /* charged: a loop ends */
  return call_original(L, w);
}

static int g_byte(lua_State *L) {
  return results(L, W_BYTE);
}

static int g_codepoint(lua_State *L) {
  return results(L, W_CODEPOINT);
}

/*
** string.rep(s, n [, sep]): Lua 5.4.4's semantics and messages, written here.  The library's
** loop makes n copies with a memcpy each: 6e7 copies of one byte took it 140 ms in one call, with
** nothing to look at a deadline or an interrupt meanwhile (the allocation is charged by the
** allocator, the n copies before).  Here the first copy (and separator) is doubled in place, at
** most LP_REP_PIECE bytes at a time, with a look between pieces.  n copies of nothing return at
** once (Lua's loop copies nothing n times).
*/
#define LP_REP_PIECE ((size_t)1 << 20)
#define LP_REP_MAX ((size_t)INT_MAX) /* the library's limit on the result (lstrlib.c's MAXSIZE) */

static int g_rep(lua_State *L) {
  size_t l, lsep;
  const char *str = luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  const char *sep = luaL_optlstring(L, 3, "", &lsep);
  if (n <= 0 || l + lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (l + lsep < l || l + lsep > LP_REP_MAX / (lua_Unsigned)n)
    return luaL_error(L, "resulting string too large");
  lp_budget_charge(L, (uint64_t)n);
  size_t unit = l + lsep, total = (size_t)n * unit - lsep;
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, total);
  memcpy(out, str, l);
  size_t done = l;
  if (n > 1) {
    memcpy(out + l, sep, lsep);
    done = unit;
  }
  /* done is a whole number of units until the last piece, so out[0, k) is what follows it */
  size_t most = LP_REP_PIECE < unit ? unit : LP_REP_PIECE - LP_REP_PIECE % unit;
  while (done < total) {
    size_t k = done < most ? done : most;
    if (k > total - done)
      k = total - done;
    memcpy(out + done, out, k);
    done += k;
    LP_POINT(LP_POINT_GUARD_LOOK);
    lp_budget_charge(L, 0); /* a look: the deadline, the interrupt */
  }
  luaL_pushresultsize(&b, total);
  return 1;
}

/*
** table.insert, table.remove: the table library's (Lua 5.4.4's semantics and messages, written
** here), with the shift charged as it goes.  The length is the one the library uses (__len
** included), so a table whose __len claims 2^40 elements is charged for every element it
** shifts, and stopped, where a charge on the raw length charged nothing.
*/
enum { TAB_READ = 1, TAB_WRITE = 2, TAB_LEN = 4 };

static bool has_field(lua_State *L, const char *key, int n) {
  lua_pushstring(L, key);
  return lua_rawget(L, -n) != LUA_TNIL;
}

/* Argument arg is a table, or has the metamethods that let it act as one for `what`. */
static void check_table_arg(lua_State *L, int arg, int what) {
  if (lua_type(L, arg) == LUA_TTABLE)
    return;
  int n = 1;
  if (lua_getmetatable(L, arg) && (!(what & TAB_READ) || has_field(L, "__index", ++n)) &&
      (!(what & TAB_WRITE) || has_field(L, "__newindex", ++n)) &&
      (!(what & TAB_LEN) || has_field(L, "__len", ++n)))
    lua_pop(L, n);
  else
    luaL_checktype(L, arg, LUA_TTABLE); /* the library's error */
}

static void check_table_like(lua_State *L, int what) {
  check_table_arg(L, 1, what);
}

/* Charges, every LP_SHIFT_SLICE elements done, the next slice of the `left` still to do. */
#define LP_SHIFT_SLICE 256
static void charge_elements(lua_State *L, lua_Unsigned done, lua_Unsigned left, uint64_t cost) {
  if (done % LP_SHIFT_SLICE == 0)
    lp_budget_charge(L, (left < LP_SHIFT_SLICE ? left : LP_SHIFT_SLICE) * cost);
}

static void charge_shift(lua_State *L, lua_Unsigned done, lua_Unsigned left) {
  charge_elements(L, done, left, LP_COST_MOVE);
}

/*
** table.move(a1, f, e, t [, a2]): Lua 5.4.4's semantics and messages, written here.  The whole
** span is charged before (an instruction budget that cannot pay stops it at once); with a
** deadline or an interrupt only, the library's one loop of up to 2^63 moves (of nils, which no
** heap limit bounds) never looked at either, so this one looks every LP_SHIFT_SLICE elements.
*/
static void move_one(lua_State *L, int tt, lua_Integer from, lua_Integer to, lua_Integer done) {
  if (done % LP_SHIFT_SLICE == 0) {
    LP_POINT(LP_POINT_GUARD_LOOK);
    lp_budget_charge(L, 0);
  }
  lua_geti(L, 1, from);
  lua_seti(L, tt, to);
}

static int g_move(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 2);
  lua_Integer e = luaL_checkinteger(L, 3);
  lua_Integer t = luaL_checkinteger(L, 4);
  int tt = !lua_isnoneornil(L, 5) ? 5 : 1; /* the destination */
  check_table_arg(L, 1, TAB_READ);
  check_table_arg(L, tt, TAB_WRITE);
  if (e >= f) {
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
    lua_Integer n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
    lp_budget_charge(L, times((uint64_t)n, LP_COST_MOVE));
    if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
      for (lua_Integer i = 0; i < n; i++)
        move_one(L, tt, f + i, t + i, i);
    } else { /* overlapping, upwards: from the end */
      for (lua_Integer i = n - 1; i >= 0; i--)
        move_one(L, tt, f + i, t + i, n - 1 - i);
    }
  }
  lua_pushvalue(L, tt);
  return 1;
}

static int g_insert(lua_State *L) {
  check_table_like(L, TAB_READ | TAB_WRITE | TAB_LEN);
  lua_Integer e = (lua_Integer)((lua_Unsigned)luaL_len(L, 1) + 1U); /* wraps, as the library's */
  lua_Integer pos;
  switch (lua_gettop(L)) {
  case 2:
    pos = e;
    break;
  case 3:
    pos = luaL_checkinteger(L, 2);
    luaL_argcheck(L, (lua_Unsigned)pos - 1U < (lua_Unsigned)e, 2, "position out of bounds");
    for (lua_Integer i = e; i > pos; i--) {
      charge_shift(L, (lua_Unsigned)e - (lua_Unsigned)i, (lua_Unsigned)i - (lua_Unsigned)pos);
      lua_geti(L, 1, i - 1);
      lua_seti(L, 1, i);
    }
    break;
  default:
    return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

static int g_remove(lua_State *L) {
  check_table_like(L, TAB_READ | TAB_WRITE | TAB_LEN);
  lua_Integer size = luaL_len(L, 1);
  lua_Integer pos = luaL_optinteger(L, 2, size);
  if (pos != size) /* argument 1 in the message, as Lua 5.4.4's */
    luaL_argcheck(L, (lua_Unsigned)pos - 1U <= (lua_Unsigned)size, 1, "position out of bounds");
  lua_geti(L, 1, pos);
  for (lua_Integer first = pos; pos < size; pos++) {
    charge_shift(L, (lua_Unsigned)pos - (lua_Unsigned)first,
                 (lua_Unsigned)size - (lua_Unsigned)pos);
    lua_geti(L, 1, pos + 1);
    lua_seti(L, 1, pos);
  }
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

/* table.concat(t [, sep [, i [, j]]]), table.unpack(t [, i [, j]]) on a table with no
   metatable: the span, charged before. */
static int g_range(lua_State *L, int w, int first, uint64_t cost) {
  lua_Integer i, j;
  if (integer_arg(L, first, 1, &i) &&
      integer_arg(L, first + 1, (lua_Integer)table_length(L, 1), &j)) {
    uint64_t n = span(i, j);
    lp_budget_charge(L, times(n, cost));
    if (w == W_UNPACK && n > LUA_MINSTACK && (n > SIZE_MAX || !lp_budget_stack_room(L, (size_t)n)))
      return luaL_error(L, "too many results to unpack"); /* the stack's cap (results) */
  }
  return call_original(L, w);
}

/* Argument 1 is a table with no metatable: the library reads its raw length and elements. */
static bool raw_table(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE)
    return false;
  if (!lua_getmetatable(L, 1))
    return true;
  lua_pop(L, 1);
  return false;
}

/*
** Otherwise __len gives the length and __index the elements (a table whose __len claims 2^20
** elements read from a table of empty strings cost a concat 56 ms, charged nothing): the
** library's functions (Lua 5.4.4's semantics and messages), charged every LP_SHIFT_SLICE
** elements.
*/
static void concat_field(lua_State *L, luaL_Buffer *b, lua_Integer i) {
  lua_geti(L, 1, i);
  if (!lua_isstring(L, -1))
    luaL_error(L, "invalid value (%s) at index %I in table for 'concat'", luaL_typename(L, -1),
               (LUAI_UACINT)i);
  luaL_addvalue(b);
}

static int g_concat(lua_State *L) {
  if (raw_table(L))
    return g_range(L, W_CONCAT, 3, LP_COST_CONCAT);
  check_table_like(L, TAB_READ | TAB_LEN);
  lua_Integer last = luaL_len(L, 1);
  size_t lsep;
  const char *sep = luaL_optlstring(L, 2, "", &lsep);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  last = luaL_optinteger(L, 4, last);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer first = i; i < last; i++) { /* the last one apart: no overflow at maxinteger */
    charge_elements(L, (lua_Unsigned)i - (lua_Unsigned)first, (lua_Unsigned)last - (lua_Unsigned)i,
                    LP_COST_CONCAT);
    concat_field(L, &b, i);
    luaL_addlstring(&b, sep, lsep);
  }
  if (i == last)
    concat_field(L, &b, i);
  luaL_pushresult(&b);
  return 1;
}

static int g_unpack(lua_State *L) {
  if (raw_table(L))
    return g_range(L, W_UNPACK, 2, LP_COST_UNPACK);
  lua_Integer i = luaL_optinteger(L, 2, 1);
  lua_Integer e = lua_isnoneornil(L, 3) ? luaL_len(L, 1) : luaL_checkinteger(L, 3);
  if (i > e)
    return 0;
  lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i; /* one less than the count */
  if (n < (unsigned int)INT_MAX && !lp_budget_stack_room(L, (size_t)n + 1)) {
    lp_budget_charge(L, times(n, LP_COST_UNPACK)); /* the stack's cap (results) */
    return luaL_error(L, "too many results to unpack");
  }
  if (n >= (unsigned int)INT_MAX || !lua_checkstack(L, (int)(++n)))
    return luaL_error(L, "too many results to unpack");
  for (lua_Integer first = i; i < e; i++) {
    charge_elements(L, (lua_Unsigned)i - (lua_Unsigned)first, (lua_Unsigned)e - (lua_Unsigned)i,
                    LP_COST_UNPACK);
    lua_geti(L, 1, i);
  }
  lua_geti(L, 1, e);
  return (int)n;
}

/*
** table.sort: n log n comparisons, charged before the sort where the charge can know them: a
** table with no metatable (its raw length is the sort's), compared by a Lua function (whose own
** instructions the hook counts) or by `<` on numbers and strings only (a string comparison reads
** up to the shorter string: the longest one is charged per comparison).  Otherwise (a metatable,
** whose __len can claim any length and whose elements can come from __index; a C function as the
** comparison; elements whose __lt could put long strings in the table meanwhile) each comparison
** is charged as it happens, by a comparison function of luapool's around the one given.
*/
static int sort_compare(lua_State *L) {
  uint64_t a = string_bytes(L, 1), b = string_bytes(L, 2);
  lp_budget_charge(L, LP_COST_SORT + (a < b ? a : b) / 8);
  if (lua_isnil(L, lua_upvalueindex(1))) {
    lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    return 1;
  }
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/*
** A plain table of numbers and strings, sorted with `<`, is sorted here when it is big enough
** for the sort's one call to matter (LP_SORT_OWN units of work): the library's sort runs its
** n log n comparisons without a look at a deadline or an interrupt (2e6 numbers: 0.78 s in one
** call, under a 50 ms budget).  An introsort over the table, through the same API calls the
** library makes (lua_geti, lua_compare, lua_seti), with a look every LP_SORT_LOOK units: a
** comparison is 1 + longest / 64 units (in a table of both numbers and strings, where a __lt
** may run and put longer strings there, 1 + the shorter string's bytes / 64, measured).  The
** table stays a permutation of its elements at every look and every error (values move only by
** swaps, and nothing raises between a swap's two writes: they overwrite present keys of a table
** with no metatable), as the library's does.  The order of
** elements that compare equal but differ (1 and 1.0) is unspecified, as it is in the library's
** (its pivots are random past 100 elements); what the comparisons allow is the same.
*/
#define LP_SORT_OWN 32768
#define LP_SORT_LOOK 256
#define LP_SORT_SMALL 8 /* ranges up to this many elements: insertion sort */

typedef struct sorter {
  lua_State *L;
  unsigned work;    /* units since the last look */
  unsigned per;     /* units per comparison, for the longest string */
  uint64_t longest; /* the longest string at the start, charged for per comparison */
  bool mixed;       /* numbers and strings: a comparison of the two may run a __lt (a string
                       metatable's), which may put longer strings there; otherwise no
                       comparison runs code, and none is of strings longer than longest */
} sorter;

/* t[a] < t[b] for the values at stack indices a and b, with the accounting. */
static bool sort_less(sorter *s, int a, int b) {
  lua_State *L = s->L;
  if (!s->mixed) {
    s->work += s->per;
  } else if (lua_type(L, a) == LUA_TSTRING && lua_type(L, b) == LUA_TSTRING) {
    size_t la = lua_rawlen(L, a), lb = lua_rawlen(L, b), m = la < lb ? la : lb;
    s->work += (unsigned)(m >> 6 < LP_SORT_LOOK ? m >> 6 : LP_SORT_LOOK) + 1;
    if (m > s->longest) /* put there meanwhile, by a __lt */
      lp_budget_charge(L, (m - s->longest) / 8);
  } else {
    s->work++;
  }
  if (s->work >= LP_SORT_LOOK) {
    s->work = 0;
    LP_POINT(LP_POINT_GUARD_LOOK);
    lp_budget_charge(L, 0);
  }
  return lua_compare(L, a, b, LUA_OPLT) != 0;
}

/* Whether t[i] < t[j]. */
static bool sort_less_at(sorter *s, lua_Integer i, lua_Integer j) {
  lua_geti(s->L, 1, i);
  lua_geti(s->L, 1, j);
  bool lt = sort_less(s, -2, -1);
  lua_pop(s->L, 2);
  return lt;
}

static void sort_swap(lua_State *L, lua_Integer i, lua_Integer j) {
  lua_geti(L, 1, i);
  lua_geti(L, 1, j);
  lua_seti(L, 1, i);
  lua_seti(L, 1, j);
}

/* Insertion sort of t[lo..hi], by swaps of neighbours: t[k] stays on the stack as it sinks. */
static void sort_insertion(sorter *s, lua_Integer lo, lua_Integer hi) {
  lua_State *L = s->L;
  for (lua_Integer k = lo + 1; k <= hi; k++) {
    lua_geti(L, 1, k);
    for (lua_Integer j = k; j > lo; j--) {
      lua_geti(L, 1, j - 1);
      if (!sort_less(s, -2, -1)) {
        lua_pop(L, 1);
        break;
      }
      lua_seti(L, 1, j); /* the swap's two writes: t[j] = t[j - 1], t[j - 1] = t[k] */
      lua_pushvalue(L, -1);
      lua_seti(L, 1, j - 1);
    }
    lua_pop(L, 1);
  }
}

/* Swaps t[i] and t[j] if t[j] < t[i]; whether it did. */
static bool sort_order(sorter *s, lua_Integer i, lua_Integer j) {
  lua_State *L = s->L;
  lua_geti(L, 1, i);
  lua_geti(L, 1, j);
  if (sort_less(s, -1, -2)) {
    lua_seti(L, 1, i);
    lua_seti(L, 1, j);
    return true;
  }
  lua_pop(L, 2);
  return false;
}

/* Heapsort of t[lo..hi]: the depth limit's fallback, n log n whatever the order. */
static void sort_sift(sorter *s, lua_Integer lo, lua_Integer k, lua_Integer m) {
  for (lua_Integer c; (c = 2 * k + 1) < m; k = c) {
    if (c + 1 < m && sort_less_at(s, lo + c, lo + c + 1))
      c++;
    if (!sort_order(s, lo + c, lo + k)) /* the parent below its larger child: swapped */
      return;
  }
}

static void sort_heap(sorter *s, lua_Integer lo, lua_Integer hi) {
  lua_Integer n = hi - lo + 1;
  for (lua_Integer k = n / 2 - 1; k >= 0; k--)
    sort_sift(s, lo, k, n);
  for (lua_Integer m = n - 1; m > 0; m--) {
    sort_swap(s->L, lo, lo + m);
    sort_sift(s, lo, 0, m);
  }
}

/*
** Hoare's partition of t[lo..hi] around the median of three: returns p, with every element of
** lo..p not above the pivot and every one of p+1..hi not below it.  The scans stop at the
** pivot's value or at what a swap put behind them; a comparison that is no order (a __lt) could
** still run them off the range: that is the library's error.
*/
static lua_Integer sort_partition(sorter *s, lua_Integer lo, lua_Integer hi) {
  lua_State *L = s->L;
  lua_Integer mid = lo + (hi - lo) / 2;
  sort_order(s, lo, mid);
  sort_order(s, mid, hi);
  sort_order(s, lo, mid);
  lua_geti(L, 1, mid); /* the pivot, at the top */
  int pivot = lua_gettop(L);
  lua_Integer i = lo - 1, j = hi + 1;
  for (;;) { /* each scan leaves the element it stopped at on the stack */
    for (;;) {
      if (++i > hi)
        luaL_error(L, "invalid order function for sorting");
      lua_geti(L, 1, i);
      if (!sort_less(s, -1, pivot))
        break;
      lua_pop(L, 1);
    }
    for (;;) {
      if (--j < lo)
        luaL_error(L, "invalid order function for sorting");
      lua_geti(L, 1, j);
      if (!sort_less(s, pivot, -1))
        break;
      lua_pop(L, 1);
    }
    if (i >= j) {
      lua_pop(L, 3); /* t[j], t[i], the pivot */
      return j;
    }
    lua_seti(L, 1, i); /* the swap */
    lua_seti(L, 1, j);
  }
}

/*
** Introsort of t[1..n]: a range is partitioned until it has fewer than LP_SORT_SMALL elements
** (insertion sort) or depth partitions were made above it (heapsort: the bound also ends a
** comparison that is no order, whose partitions may not shrink the range).  The larger side of
** each partition waits on a stack while the smaller one goes on, so each waiting range is more
** than twice the one in hand: with n < 2^31, fewer than 32 wait.
*/
typedef struct sort_span {
  lua_Integer lo, hi;
  int depth;
} sort_span;

static void sort_all(sorter *s, lua_Integer n, int depth) {
  sort_span waiting[64];
  int count = 0;
  lua_Integer lo = 1, hi = n;
  for (;;) {
    while (hi - lo >= LP_SORT_SMALL) {
      if (depth == 0) {
        sort_heap(s, lo, hi);
        lo = hi; /* nothing left for the insertion sort */
        break;
      }
      depth--;
      lua_Integer p = sort_partition(s, lo, hi);
      lp_assert(count < 64);
      if (p - lo < hi - p) {
        waiting[count++] = (sort_span){p + 1, hi, depth};
        hi = p;
      } else {
        waiting[count++] = (sort_span){lo, p, depth};
        lo = p + 1;
      }
    }
    sort_insertion(s, lo, hi);
    if (count == 0)
      return;
    sort_span next = waiting[--count];
    lo = next.lo;
    hi = next.hi;
    depth = next.depth;
  }
}

static void sort_own(lua_State *L, lua_Integer n, uint64_t longest, bool mixed) {
  luaL_argcheck(L, n < INT_MAX, 1, "array too big");
  lua_settop(L, 1);
  luaL_checkstack(L, 8, NULL);
  uint64_t per = 1 + longest / 64;
  sorter s = {L, 0, per < LP_SORT_LOOK ? (unsigned)per : LP_SORT_LOOK, longest, mixed};
  int depth = 0;
  for (lua_Integer k = n; k > 1; k >>= 1)
    depth += 2;
  sort_all(&s, n, depth);
}

/* The longest string among t's elements 1..n, or -1 if one is neither a number nor a string;
   sets mixed to whether there are both. */
static int64_t longest_element(lua_State *L, uint64_t n, bool *mixed) {
  uint64_t longest = 0;
  bool strings = false, numbers = false;
  for (uint64_t i = 1; i <= n; i++) {
    int type = lua_rawgeti(L, 1, (lua_Integer)i);
    strings |= type == LUA_TSTRING;
    numbers |= type == LUA_TNUMBER;
    if (type == LUA_TSTRING && lua_rawlen(L, -1) > longest)
      longest = lua_rawlen(L, -1);
    lua_pop(L, 1);
    if (type != LUA_TSTRING && type != LUA_TNUMBER)
      return -1;
  }
  *mixed = strings && numbers;
  return (int64_t)longest;
}

static int g_sort(lua_State *L) {
  bool no_cmp = lua_isnoneornil(L, 2);
  bool lua_cmp = lua_type(L, 2) == LUA_TFUNCTION && !lua_iscfunction(L, 2);
  bool plain = lua_type(L, 1) == LUA_TTABLE;
  if (plain && lua_getmetatable(L, 1)) {
    lua_pop(L, 1);
    plain = false;
  }
  if (plain && (no_cmp || lua_cmp)) {
    uint64_t n = table_length(L, 1);
    bool mixed = false;
    int64_t longest = lua_cmp ? 0 : longest_element(L, n, &mixed);
    if (longest >= 0) {
      uint64_t per = LP_COST_SORT + (uint64_t)longest / 8;
      uint64_t compares = times(n, (uint64_t)(1 + log2((double)n + 1)));
      lp_budget_charge(L, n + times(compares, per));
      if (no_cmp && times(compares, 1 + (uint64_t)longest / 64) > LP_SORT_OWN) {
        sort_own(L, (lua_Integer)n, (uint64_t)longest, mixed);
        return 0;
      }
      return call_original(L, W_SORT);
    }
  }
  if (!no_cmp && lua_type(L, 2) != LUA_TFUNCTION)
    return call_original(L, W_SORT); /* the library's error */
  lua_settop(L, 2);
  lua_pushvalue(L, 2); /* nil without a comparison */
  lua_pushcclosure(L, sort_compare, 1);
  lua_replace(L, 2);
  return call_original(L, W_SORT);
}

/* collectgarbage: a collection (or a switch of mode, which runs one) walks the heap. */
static int g_collectgarbage(lua_State *L) {
  static const char *const cheap[] = {"count", "isrunning", "stop", "restart", "setpause",
                                      "setstepmul"};
  const char *opt = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : "collect";
  bool walks = true;
  for (size_t i = 0; i < sizeof cheap / sizeof cheap[0]; i++)
    walks = walks && strcmp(opt, cheap[i]) != 0;
  if (walks)
    lp_budget_charge(L, (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 / LP_BUDGET_GC_BYTES + 1);
  return call_original(L, W_COLLECTGARBAGE);
}

/* coroutine.create: a new thread's count starts afresh, so its first period is charged now. */
static int g_create(lua_State *L) {
  lp_budget_charge(L, LP_BUDGET_PERIOD);
  return call_original(L, W_CREATE);
}

/* coroutine.resume(co, ...). */
static int g_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL)
    return call_original(L, W_RESUME); /* the library names the bad argument */
  lp_budget_enter_thread(L, co);
  int n = call_original(L, W_RESUME);
  lp_budget_left_thread(L);
  return n;
}

/* coroutine.close(co): runs co's pending __close handlers, on co. */
static int g_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL || co == L)
    return call_original(L, W_CLOSE);
  lp_budget_enter_thread(L, co);
  int n = call_original(L, W_CLOSE);
  lp_budget_left_thread(L);
  return n;
}

/*
** Resumes co with narg arguments from L's top: the number of results moved to L, or -1 with the
** error on L's top (the semantics of coroutine.resume).
*/
static int resume_with(lua_State *L, lua_State *co, int narg) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  int nres;
  int status = lua_resume(co, L, narg, &nres);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_xmove(co, L, 1);
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

/* The function coroutine.wrap returns; upvalue 1: its coroutine. */
static int g_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  if (co == NULL)
    return luaL_error(L, "coroutine.wrap: the function's coroutine was replaced");
  lp_budget_enter_thread(L, co);
  int r = resume_with(L, co, lua_gettop(L));
  if (r >= 0) {
    lp_budget_left_thread(L);
    return r;
  }
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD && !lp_budget_request_stopped(L)) {
    status = lua_resetthread(co); /* its pending __close handlers, under the budget */
    lua_xmove(co, L, 1);
  }
  lp_budget_left_thread(L);
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1); /* where the wrapped function was called, as Lua's own wrap */
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.wrap(f). */
static int g_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lp_budget_charge(L, LP_BUDGET_PERIOD);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, g_wrapped, 1);
  return 1;
}

/* debug.sethook([thread,] hook, mask [, count]). */
static int g_sethook(lua_State *L) {
  if (lp_budget_engaged(L))
    return luaL_error(L, "debug.sethook: not available while the request has a budget");
  lua_State *co = lua_type(L, 1) == LUA_TTHREAD ? lua_tothread(L, 1) : L;
  int n = call_original(L, W_SETHOOK);
  lp_budget_rehook(co); /* a script that removes its hook gets the budget's back */
  return n;
}

/* debug.gethook([thread]): the budget's hook is no script's. */
static int g_gethook(lua_State *L) {
  lua_State *co = lua_type(L, 1) == LUA_TTHREAD ? lua_tothread(L, 1) : L;
  if (lp_budget_hook_is_ours(co)) {
    luaL_pushfail(L);
    return 1;
  }
  return call_original(L, W_GETHOOK);
}

/* ---- levels: lua_getstack walks down to the level it is given ------------------------------ */

/*
** A frame n levels down costs lua_getstack n steps of a linked list (never more than the frames
** there are: LUAI_MAXSTACK bounds both): error's position, debug.getinfo, getlocal and setlocal
** of a level, each inside one call.  Charged a quarter of an instruction a level; `error('x',
** 1e9)` at the bottom of 150,000 frames in a loop ran a 10^7 budget past 100 s.
*/
#define LP_LEVELS_MAX 1000000 /* LUAI_MAXSTACK: no thread has more frames */

static void charge_level(lua_State *L, int i) {
  lua_Integer level;
  if (lua_type(L, i) == LUA_TNUMBER && integer_arg(L, i, 0, &level) && level > 1)
    lp_budget_charge(L, (uint64_t)(level < LP_LEVELS_MAX ? level : LP_LEVELS_MAX) / 4 + 1);
}

/*
** error(message [, level]): a string message gets the position `level` frames down.  Every call
** leaves by Lua's longjmp, which Debian's liblua makes through glibc's __longjmp_chk (fortified),
** past ThreadSanitizer's longjmp interceptors: an instrumented frame here would never pop from
** its shadow call stack, and a loop of pcall(error) overflowed it (test_limits,
** infinite_loop_inside_pcall: 82,000 frames, then a crash inside the sanitizer).  So the frame
** the longjmp leaves carries no ThreadSanitizer instrumentation (charge_level returns before it);
** it reads only its own state's stack and the relaxed atomic pointer to the original.
*/
__attribute__((no_sanitize("thread"))) static int g_error(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING)
    charge_level(L, 2);
  /* the original called here, not through call_original: its frame would be the one left */
  return atomic_load_explicit(&originals[W_ERROR], memory_order_relaxed)(L);
}

/* debug.getinfo, getlocal, setlocal([thread,] level, ...): argument 1, or 2 after a thread. */
static int leveled(lua_State *L, int w) {
  charge_level(L, lua_type(L, 1) == LUA_TTHREAD ? 2 : 1);
  return call_original(L, w);
}

#define LEVELED(fn, w)                                                                             \
  static int fn(lua_State *L) {                                                                    \
    return leveled(L, w);                                                                          \
  }
LEVELED(g_getinfo, W_GETINFO)
LEVELED(g_getlocal, W_GETLOCAL)
LEVELED(g_setlocal, W_SETLOCAL)

/*
** debug.traceback([thread,] [message [, level]]): luaL_traceback finds the last level by a binary
** search of lua_getstack calls, then reads 22 levels near both ends, so it walks the frames about
** 40 times, whatever the level: charged 16 instructions a frame, the frames counted one step each
** (frames.h).
*/
static int g_traceback(lua_State *L) {
  uint64_t frames = 0;
  if (lp_budget_engaged(L)) { /* without a budget the count would charge nothing */
    lua_State *co = lua_type(L, 1) == LUA_TTHREAD ? lua_tothread(L, 1) : L;
    lp_frame f;
    for (bool more = lp_frame_first(co, &f); more; more = lp_frame_next(&f))
      frames++;
  }
  lp_budget_charge(L, times(frames, 16) + 1);
  return call_original(L, W_TRACEBACK);
}

/* ---- installing ------------------------------------------------------------------------------- */

typedef struct wrapper {
  const char *lib; /* a global table, or NULL for the globals */
  const char *name;
  lua_CFunction fn;
} wrapper;

static const wrapper wrappers[W_COUNT] = {
    [W_COLLECTGARBAGE] = {NULL, "collectgarbage", g_collectgarbage},
    [W_TONUMBER] = {NULL, "tonumber", g_tonumber},
    [W_LOAD] = {NULL, "load", g_load},
    [W_ERROR] = {NULL, "error", g_error},
    [W_CREATE] = {LUA_COLIBNAME, "create", g_create},
    [W_RESUME] = {LUA_COLIBNAME, "resume", g_resume},
    [W_CLOSE] = {LUA_COLIBNAME, "close", g_close},
    [W_REP] = {LUA_STRLIBNAME, "rep", g_rep},
    [W_FIND] = {LUA_STRLIBNAME, "find", lp_pattern_find},
    [W_MATCH] = {LUA_STRLIBNAME, "match", lp_pattern_match},
    [W_GMATCH] = {LUA_STRLIBNAME, "gmatch", lp_pattern_gmatch},
    [W_GSUB] = {LUA_STRLIBNAME, "gsub", lp_pattern_gsub},
    [W_BYTE] = {LUA_STRLIBNAME, "byte", g_byte},
    [W_FORMAT] = {LUA_STRLIBNAME, "format", g_format},
    [W_PACK] = {LUA_STRLIBNAME, "pack", g_pack},
    [W_PACKSIZE] = {LUA_STRLIBNAME, "packsize", g_packsize},
    [W_UNPACK_STR] = {LUA_STRLIBNAME, "unpack", g_unpack_str},
    [W_MOVE] = {LUA_TABLIBNAME, "move", g_move},
    [W_INSERT] = {LUA_TABLIBNAME, "insert", g_insert},
    [W_REMOVE] = {LUA_TABLIBNAME, "remove", g_remove},
    [W_SORT] = {LUA_TABLIBNAME, "sort", g_sort},
    [W_CONCAT] = {LUA_TABLIBNAME, "concat", g_concat},
    [W_UNPACK] = {LUA_TABLIBNAME, "unpack", g_unpack},
    [W_LEN] = {LUA_UTF8LIBNAME, "len", g_len},
    [W_OFFSET] = {LUA_UTF8LIBNAME, "offset", g_offset},
    [W_CODEPOINT] = {LUA_UTF8LIBNAME, "codepoint", g_codepoint},
    [W_SETHOOK] = {LUA_DBLIBNAME, "sethook", g_sethook},
    [W_GETHOOK] = {LUA_DBLIBNAME, "gethook", g_gethook},
    [W_GETINFO] = {LUA_DBLIBNAME, "getinfo", g_getinfo},
    [W_GETLOCAL] = {LUA_DBLIBNAME, "getlocal", g_getlocal},
    [W_SETLOCAL] = {LUA_DBLIBNAME, "setlocal", g_setlocal},
    [W_TRACEBACK] = {LUA_DBLIBNAME, "traceback", g_traceback},
};

/*
** Replaces t[name] (the library's C function, with no upvalues) with wrapper w.  A field that is
** something else, or a function that differs from the one another state recorded (which no
** stock library does), is left alone.
*/
static void wrap_field(lua_State *L, int t, int w) {
  lua_getfield(L, t, wrappers[w].name);
  lua_CFunction f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  if (f == NULL)
    return;
  lua_CFunction expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(&originals[w], &expected, f, memory_order_relaxed,
                                               memory_order_relaxed) &&
      expected != f)
    return;
  lua_pushcfunction(L, wrappers[w].fn);
  lua_setfield(L, t, wrappers[w].name);
}

/* Do wrappers a and b wrap functions of the same table? */
static bool same_lib(const wrapper *a, const wrapper *b) {
  return a->lib == b->lib || (a->lib != NULL && b->lib != NULL && strcmp(a->lib, b->lib) == 0);
}

void lp_guard_open(lua_State *L) {
  int base = lua_gettop(L);
  for (int w = 0; w < W_COUNT; w++) {
    if (w == 0 || !same_lib(&wrappers[w], &wrappers[w - 1])) { /* the list is by table */
      lua_settop(L, base);
      if (wrappers[w].lib == NULL)
        lua_pushglobaltable(L);
      else
        lua_getglobal(L, wrappers[w].lib);
    }
    if (lua_istable(L, base + 1))
      wrap_field(L, base + 1, w);
  }
  lua_settop(L, base);
  if (lua_getglobal(L, LUA_COLIBNAME) == LUA_TTABLE && lua_getfield(L, -1, "wrap") != LUA_TNIL) {
    lua_pushcfunction(L, g_wrap);
    lua_setfield(L, -3, "wrap");
  }
  lua_settop(L, base);
}
