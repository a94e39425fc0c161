/*
** pattern.c: Lua 5.4's patterns (the manual, section 6.4.1) on the budget (pattern.h).
**
** The semantics are Lua 5.4.4's, to the byte: the same backtracking order (so the same match
** wins), the same captures, the same treatment of '^' (an anchor for find, match and gsub, a
** plain character for gmatch), of an empty match right after the previous one (skipped by gmatch
** and gsub), of embedded zeros, and the same error messages.  tests/test_pattern.c compares every
** function with the stock library on fixed and random patterns.  The code is luapool's own.
**
** What it adds: every step counts (a try of the pattern at a position, a character an item
** tests, the bytes a set, a %b or a back reference reads), and every LP_PM_SLICE steps the count
** is charged to the budget (lp_budget_charge), which raises the budget's error once the request
** is stopped.  So between two looks at the budget a call does at most LP_PM_SLICE steps, however
** the pattern backtracks.  The error unwinds through the matcher, which holds nothing but C
** stack (gsub's buffer is on the Lua stack, gmatch's state in a userdata: both collected).
** A plain find (no specials, or `plain`) is linear in the subject and the needle (find_plain;
** Lua's own can take their product), charged before it runs.
*/
/* memmem: glibc declares it for _GNU_SOURCE, the feature-test macro its manual names */
#define _GNU_SOURCE /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp) */
#include <ctype.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "budget.h"
#include "pattern.h"

/* Steps between two charges; a step is about one VM instruction's time, and is charged as one. */
#define LP_PM_SLICE 256
/* Bytes a step stands for where a loop reads bytes (a set, %b, a back reference, a replacement). */
#define LP_PM_BYTES 8
/* %b reads a long run in chunks of this many bytes, charged one by one. */
#define LP_PM_CHUNK 4096
/* A substitution's work in gsub besides matching (the buffer): the charge guard.c made. */
#define LP_PM_SUBST 16
/* Captures in one pattern, as Lua's LUA_MAXCAPTURES. */
#define LP_PM_CAPTURES 32
/* Recursion of the matcher, as Lua's MAXCCALLS: deeper raises "pattern too complex". */
#define LP_PM_DEPTH 200

#define CAP_OPEN (-1)     /* a capture begun, not closed */
#define CAP_POSITION (-2) /* a () capture */
#define ESC '%'

typedef struct pm {
  lua_State *L;
  const char *s0; /* the subject */
  const char *s1; /* its end (Lua strings end with a '\0' there, which some reads rely on) */
  const char *p1; /* the pattern's end (its '\0') */
  int depth;      /* recursion left */
  int ncap;       /* captures begun */
  uint64_t steps; /* not yet charged */
  struct {
    const char *at;
    ptrdiff_t len; /* or CAP_OPEN, CAP_POSITION */
  } cap[LP_PM_CAPTURES];
} pm;

/* ---- the budget -------------------------------------------------------------------------- */

static void pay(pm *m) {
  uint64_t n = m->steps;
  m->steps = 0;
  lp_budget_charge(m->L, n);
}

static inline void step(pm *m, uint64_t n) {
  m->steps += n;
  if (m->steps >= LP_PM_SLICE)
    pay(m);
}

static inline uint64_t bytes_steps(size_t n) {
  return (uint64_t)(n / LP_PM_BYTES) + 1;
}

/* ---- one item ---------------------------------------------------------------------------- */

/* p at an item (a single-character class): just past it.  Raises on a malformed one. */
static const char *item_end(pm *m, const char *p) {
  const char *q = p + 1;
  if (*p == ESC) {
    if (q == m->p1)
      luaL_error(m->L, "malformed pattern (ends with '%%')");
    return q + 1;
  }
  if (*p != '[')
    return q;
  if (*q == '^')
    q++;
  do { /* the first member may be ']' itself */
    if (q == m->p1)
      luaL_error(m->L, "malformed pattern (missing ']')");
    if (*q++ == ESC && q < m->p1)
      q++;
  } while (*q != ']');
  step(m, bytes_steps((size_t)(q - p)));
  return q + 1;
}

/*
** Is c in class cl (the letter after '%'; an upper-case letter is the complement)?  Only ASCII
** letters name classes, no other byte has one of them as cl | 0x20, and for those letters
** cl | 0x20 is tolower(cl) and cl & 0x20 islower(cl): Lua's test without two calls into ctype.
*/
static bool in_class(int c, int cl) {
  bool in;
  switch (cl | 0x20) {
  case 'a':
    in = isalpha(c);
    break;
  case 'c':
    in = iscntrl(c);
    break;
  case 'd':
    in = isdigit(c);
    break;
  case 'g':
    in = isgraph(c);
    break;
  case 'l':
    in = islower(c);
    break;
  case 'p':
    in = ispunct(c);
    break;
  case 's':
    in = isspace(c);
    break;
  case 'u':
    in = isupper(c);
    break;
  case 'w':
    in = isalnum(c);
    break;
  case 'x':
    in = isxdigit(c);
    break;
  case 'z':
    in = c == 0;
    break; /* deprecated, still in 5.4 */
  default:
    return cl == c; /* %. and the like: the character itself */
  }
  return (cl & 0x20) != 0 ? in : !in;
}

/* Is c in the set from '[' at p to its closing ']' at close? */
static bool in_set(int c, const char *p, const char *close) {
  bool yes = true;
  if (p[1] == '^') {
    yes = false;
    p++;
  }
  while (++p < close) {
    if (*p == ESC) {
      p++;
      if (in_class(c, (unsigned char)*p))
        return yes;
    } else if (p[1] == '-' && p + 2 < close) {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
        return yes;
      p += 2;
    } else if ((unsigned char)*p == c) {
      return yes;
    }
  }
  return !yes;
}

/* Does the item from p to end match the character at s (none at the subject's end)?  What it
   costs is the caller's to count (test_cost). */
static inline bool item_matches(const pm *m, const char *s, const char *p, const char *end) {
  if (s >= m->s1)
    return false;
  int c = (unsigned char)*s;
  switch (*p) {
  case '.':
    return true;
  case ESC:
    return in_class(c, (unsigned char)p[1]);
  case '[':
    return in_set(c, p, end - 1);
  default:
    return (unsigned char)*p == c;
  }
}

/* The steps of one item_matches: a step, and a set's bytes. */
static inline uint64_t test_cost(const char *p, const char *end) {
  return *p == '[' ? 1 + bytes_steps((size_t)(end - p)) : 1;
}

/* ---- the matcher ------------------------------------------------------------------------- */

static const char *match(pm *m, const char *s, const char *p);

/* %bxy at s (p just past "%b"): past the balanced run, or NULL. */
static const char *balanced(pm *m, const char *s, const char *p) {
  if (p >= m->p1 - 1)
    luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->s1 || *s != p[0])
    return NULL;
  char open = p[0], close = p[1];
  size_t depth = 1;
  const char *q = s + 1;
  for (; q < m->s1; q++) {
    if (((q - s) & (LP_PM_CHUNK - 1)) == 0)
      step(m, LP_PM_CHUNK / LP_PM_BYTES); /* a long run is charged as it is read */
    if (*q == close) {
      if (--depth == 0)
        break;
    } else if (*q == open) {
      depth++;
    }
  }
  step(m, bytes_steps((size_t)((q - s) & (LP_PM_CHUNK - 1))));
  return q < m->s1 ? q + 1 : NULL;
}

/* Capture l ('1' to '9') as a back reference at s. */
static const char *same_as_capture(pm *m, const char *s, int l) {
  l -= '1';
  if (l < 0 || l >= m->ncap || m->cap[l].len == CAP_OPEN)
    luaL_error(m->L, "invalid capture index %%%d", l + 1);
  size_t len = (size_t)m->cap[l].len; /* a position capture is (size_t)-2: never fits */
  if ((size_t)(m->s1 - s) < len)
    return NULL;
  step(m, bytes_steps(len));
  return memcmp(m->cap[l].at, s, len) == 0 ? s + len : NULL;
}

/* The item p..end repeated as often as it matches from s, then as few times as the rest needs. */
/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static const char *greedy(pm *m, const char *s, const char *p, const char *end) {
  uint64_t cost = test_cost(p, end);
  size_t n = 0;
  while (item_matches(m, s + n, p, end)) {
    n++;
    if ((n & (LP_PM_SLICE - 1)) == 0)
      step(m, LP_PM_SLICE * cost); /* a long run is charged as it goes */
  }
  step(m, (n & (LP_PM_SLICE - 1)) * cost);
  for (;;) {
    const char *e = match(m, s + n, end + 1);
    if (e != NULL || n == 0)
      return e;
    n--;
  }
}

/* The item p..end repeated as few times as the rest of the pattern allows. */
/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static const char *lazy(pm *m, const char *s, const char *p, const char *end) {
  for (;;) {
    const char *e = match(m, s, end + 1);
    if (e != NULL)
      return e;
    step(m, test_cost(p, end));
    if (!item_matches(m, s, p, end))
      return NULL;
    s++;
  }
}

/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static const char *open_capture(pm *m, const char *s, const char *p, ptrdiff_t kind) {
  if (m->ncap >= LP_PM_CAPTURES)
    luaL_error(m->L, "too many captures");
  m->cap[m->ncap].at = s;
  m->cap[m->ncap].len = kind;
  m->ncap++;
  const char *e = match(m, s, p);
  if (e == NULL)
    m->ncap--;
  return e;
}

/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static const char *close_capture(pm *m, const char *s, const char *p) {
  int l = m->ncap - 1;
  while (l >= 0 && m->cap[l].len != CAP_OPEN)
    l--;
  if (l < 0)
    luaL_error(m->L, "invalid pattern capture");
  m->cap[l].len = s - m->cap[l].at;
  const char *e = match(m, s, p);
  if (e == NULL)
    m->cap[l].len = CAP_OPEN;
  return e;
}

/* %f[set] at s (p at its '['): past it, or NULL.  The characters around the subject are '\0'. */
static const char *frontier(pm *m, const char *s, const char *p, const char **next) {
  if (*p != '[')
    luaL_error(m->L, "missing '[' after '%%f' in pattern");
  const char *end = item_end(m, p);
  int before = s == m->s0 ? 0 : (unsigned char)s[-1];
  *next = end;
  return !in_set(before, p, end - 1) && in_set((unsigned char)*s, p, end - 1) ? s : NULL;
}

/*
** An item with a repetition suffix (or none) at (*sp, *pp): true to go on with the pair it
** updated, false when *sp is the end of the whole match (NULL: no match).  The repetitions that
** may have to be undone call match for the rest; the others go on in match's loop.
*/
/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static inline bool repeated_item(pm *m, const char **sp, const char **pp) {
  const char *s = *sp, *p = *pp, *end = item_end(m, p);
  if (!item_matches(m, s, p, end)) {
    *pp = end + 1; /* zero repetitions, if the suffix allows them */
    if (*end == '*' || *end == '?' || *end == '-')
      return true;
    *sp = NULL;
    return false;
  }
  switch (*end) {
  case '?': {
    const char *e = match(m, s + 1, end + 1);
    if (e != NULL) {
      *sp = e;
      return false;
    }
    *pp = end + 1;
    return true;
  }
  case '+':
    *sp = greedy(m, s + 1, p, end);
    return false;
  case '*':
    *sp = greedy(m, s, p, end);
    return false;
  case '-':
    *sp = lazy(m, s, p, end);
    return false;
  default:
    *sp = s + 1;
    *pp = end;
    return true;
  }
}

/* One item of match at (*sp, *pp), as repeated_item. */
/* NOLINTNEXTLINE(misc-no-recursion): with match, bounded by its depth */
static inline bool match_item(pm *m, const char **sp, const char **pp) {
  const char *s = *sp, *p = *pp;
  switch (*p) {
  case '(':
    *sp =
        p[1] == ')' ? open_capture(m, s, p + 2, CAP_POSITION) : open_capture(m, s, p + 1, CAP_OPEN);
    return false;
  case ')':
    *sp = close_capture(m, s, p + 1);
    return false;
  case '$':
    if (p + 1 != m->p1)
      break; /* not the last: the character itself */
    *sp = s == m->s1 ? s : NULL;
    return false;
  case ESC:
    if (p[1] == 'b') {
      *sp = balanced(m, s, p + 2);
      *pp = p + 4;
      return true;
    }
    if (p[1] == 'f') {
      *sp = frontier(m, s, p + 2, pp);
      return true;
    }
    if (isdigit((unsigned char)p[1])) {
      *sp = same_as_capture(m, s, (unsigned char)p[1]);
      *pp = p + 2;
      return true;
    }
    break; /* a class */
  default:
    break;
  }
  return repeated_item(m, sp, pp);
}

/* The end of a match of pattern p (up to p1) at s, or NULL.  Lua's order of trying, so the same
   match wins. */
/* NOLINTNEXTLINE(misc-no-recursion): bounded by depth, as Lua's */
static const char *match(pm *m, const char *s, const char *p) {
  if (m->depth-- == 0)
    luaL_error(m->L, "pattern too complex");
  bool more = true;
  while (more && s != NULL && p != m->p1) {
    step(m, 1); /* each item, not each call: one call may go over the whole pattern */
    more = match_item(m, &s, &p);
  }
  m->depth++;
  return s;
}

/* ---- captures ---------------------------------------------------------------------------- */

static void pm_begin(pm *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp) {
  m->L = L;
  m->s0 = s;
  m->s1 = s + ls;
  m->p1 = p + lp;
  m->steps = 0;
}

/* Ready for a try at a new position. */
static void pm_try(pm *m) {
  m->depth = LP_PM_DEPTH;
  m->ncap = 0;
}

/*
** Capture i of the match s..e: its bytes (*at, the length), or CAP_POSITION with the position
** pushed.  Without captures, capture 0 is the whole match.
*/
static ptrdiff_t capture(pm *m, int i, const char *s, const char *e, const char **at) {
  if (i >= m->ncap) {
    if (i != 0)
      luaL_error(m->L, "invalid capture index %%%d", i + 1);
    *at = s;
    return e - s;
  }
  ptrdiff_t len = m->cap[i].len;
  *at = m->cap[i].at;
  if (len == CAP_OPEN)
    luaL_error(m->L, "unfinished capture");
  if (len == CAP_POSITION)
    lua_pushinteger(m->L, (lua_Integer)(m->cap[i].at - m->s0) + 1);
  return len;
}

static void push_capture(pm *m, int i, const char *s, const char *e) {
  const char *at;
  ptrdiff_t len = capture(m, i, s, e, &at);
  if (len != CAP_POSITION)
    lua_pushlstring(m->L, at, (size_t)len);
}

/* The captures of the match s..e (the whole match when there are none, unless s is NULL). */
static int push_captures(pm *m, const char *s, const char *e) {
  int n = m->ncap == 0 && s != NULL ? 1 : m->ncap;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; i++)
    push_capture(m, i, s, e);
  return n;
}

/* ---- the library functions --------------------------------------------------------------- */

/* An initial position as the library reads it: negative from the end, clipped to 1. */
static size_t start_of(lua_Integer pos, size_t len) {
  if (pos > 0)
    return (size_t)pos;
  if (pos == 0 || pos < -(lua_Integer)len)
    return 1;
  return len + (size_t)pos + 1;
}

/* Does the pattern hold a character that is not itself (zeros included, which are)? */
static bool has_specials(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++) {
    switch (p[i]) {
    case '^':
    case '$':
    case '*':
    case '+':
    case '?':
    case '.':
    case '(':
    case '[':
    case '%':
    case '-':
      return true;
    default:
      break;
    }
  }
  return false;
}

/*
** The first n bytes equal to needle (nl bytes) in h (hl bytes), or NULL.  Lua's way first (memchr
** for the needle's first byte, memcmp for the rest: fastest on real text), while what the memcmps
** could have read stays under twice the lengths; then memmem, linear whatever the input.
*/
static const char *find_plain(const char *h, size_t hl, const char *n, size_t nl) {
  if (nl == 0)
    return h;
  if (nl > hl)
    return NULL;
  const char *last = h + (hl - nl); /* the last place the needle fits */
  size_t allowed = 2 * (hl + nl);
  for (const char *at = h; at <= last; at++) {
    at = memchr(at, n[0], (size_t)(last - at) + 1);
    if (at == NULL)
      return NULL;
    if (memcmp(at + 1, n + 1, nl - 1) == 0)
      return at;
    if (allowed < nl)
      return memmem(at + 1, (size_t)(h + hl - (at + 1)), n, nl);
    allowed -= nl;
  }
  return NULL;
}

static int find_or_match(lua_State *L, bool find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  pm m;
  pm_begin(&m, L, s, ls, p, lp);
  step(&m, bytes_steps(lp));
  if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
    lp_budget_charge(L, (ls - init + lp) / LP_PM_BYTES * 3 + 1); /* find_plain's bound */
    const char *at = find_plain(s + init, ls - init, p, lp);
    if (at != NULL) {
      lua_pushinteger(L, (lua_Integer)(at - s) + 1);
      lua_pushinteger(L, (lua_Integer)(at - s) + (lua_Integer)lp);
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  bool anchored = *p == '^';
  if (anchored)
    p++; /* m.p1 stays the end */
  const char *at = s + init;
  do {
    pm_try(&m);
    const char *e = match(&m, at, p);
    if (e != NULL) {
      pay(&m);
      if (!find)
        return push_captures(&m, at, e);
      lua_pushinteger(L, (lua_Integer)(at - s) + 1);
      lua_pushinteger(L, (lua_Integer)(e - s));
      return push_captures(&m, NULL, NULL) + 2;
    }
  } while (at++ < m.s1 && !anchored);
  pay(&m);
  luaL_pushfail(L);
  return 1;
}

int lp_pattern_find(lua_State *L) {
  return find_or_match(L, true);
}

int lp_pattern_match(lua_State *L) {
  return find_or_match(L, false);
}

/* gmatch's iterator state, in a userdata (upvalue 3; 1 and 2 keep the subject and pattern). */
typedef struct gm_state {
  pm m;
  const char *at;   /* where the next try starts */
  const char *p;    /* the pattern */
  const char *last; /* the end of the last match: an empty match there is skipped */
} gm_state;

static int gmatch_next(lua_State *L) {
  gm_state *g = lua_touserdata(L, lua_upvalueindex(3));
  g->m.L = L; /* the thread that calls it now */
  for (const char *at = g->at; at <= g->m.s1; at++) {
    pm_try(&g->m);
    const char *e = match(&g->m, at, g->p);
    if (e != NULL && e != g->last) {
      g->at = g->last = e;
      pay(&g->m);
      return push_captures(&g->m, at, e);
    }
  }
  pay(&g->m);
  return 0;
}

int lp_pattern_gmatch(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls)
    init = ls + 1;  /* nothing left to try; not beyond, where s + init would not be valid */
  lua_settop(L, 2); /* the closure keeps both strings */
  gm_state *g = lua_newuserdatauv(L, sizeof *g, 0);
  pm_begin(&g->m, L, s, ls, p, lp);
  g->at = s + init;
  g->p = p;
  g->last = NULL;
  lua_pushcclosure(L, gmatch_next, 3);
  return 1;
}

/* A replacement string (argument 3) for the match s..e: %0-%9 and %% expanded. */
static void add_expansion(pm *m, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = m->L;
  size_t len;
  const char *r = lua_tolstring(L, 3, &len);
  step(m, bytes_steps(len));
  const char *esc;
  while ((esc = memchr(r, ESC, len)) != NULL) {
    luaL_addlstring(b, r, (size_t)(esc - r));
    int c = (unsigned char)esc[1]; /* the string's '\0' if the '%' is its last byte */
    if (c == ESC) {
      luaL_addchar(b, ESC);
    } else if (c == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit(c)) {
      const char *at;
      ptrdiff_t n = capture(m, c - '1', s, e, &at);
      if (n == CAP_POSITION)
        luaL_addvalue(b);
      else
        luaL_addlstring(b, at, (size_t)n);
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", ESC);
    }
    step(m, 1);
    len -= (size_t)(esc + 2 - r);
    r = esc + 2;
  }
  luaL_addlstring(b, r, len);
}

/* The replacement of the match s..e into b; whether it changed the subject (a function or a
   table that gives nil or false keeps the match as it was). */
static bool add_replacement(pm *m, luaL_Buffer *b, const char *s, const char *e, int how) {
  lua_State *L = m->L;
  step(m, LP_PM_SUBST);
  if (how == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = push_captures(m, s, e);
    lua_call(L, n, 1);
  } else if (how == LUA_TTABLE) {
    push_capture(m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    add_expansion(m, b, s, e);
    return true;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return false;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return true;
}

int lp_pattern_gsub(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int how = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(
      L, how == LUA_TNUMBER || how == LUA_TSTRING || how == LUA_TFUNCTION || how == LUA_TTABLE, 3,
      "string/function/table");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  bool anchored = *p == '^';
  pm m;
  pm_begin(&m, L, s, ls, p, lp);
  if (anchored)
    p++;
  const char *at = s, *last = NULL;
  lua_Integer n = 0;
  bool changed = false;
  while (n < max) {
    pm_try(&m);
    const char *e = match(&m, at, p);
    if (e != NULL && e != last) {
      n++;
      changed = add_replacement(&m, &b, at, e, how) || changed;
      at = last = e;
    } else if (at < m.s1) {
      luaL_addchar(&b, *at++);
    } else {
      break;
    }
    if (anchored)
      break;
  }
  pay(&m);
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, at, (size_t)(m.s1 - at));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}
