/*
** Patterns: luapool's string.find, match, gmatch and gsub (lib/pattern.c) give what Lua 5.4's
** own give, results and error messages, on hand-picked cases and on random ones: each case runs
** through one driver in a stock state (luaL_newstate + luaL_openlibs) and in a pooled state of
** each profile, and the two serializations must be equal.  Then the reason they exist: a pattern
** that backtracks for ages is stopped by the instruction budget, the deadline and
** luapool_interrupt (test_hostile.c has the same class among its shapes).
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/*
** The driver: (kind, subject, pattern, a3, a4) -> one string that says everything the call
** did (each result's type and value, or the error).  a3 "T" and "F" stand for a table and a
** function replacement.  gmatch's loop stops after 64 matches.
*/
static const char driver[] =
    "local function ser(...)\n"
    "  local t = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    t[i] = type(v) .. ':' .. (type(v) == 'string' and ('%q'):format(v) or tostring(v))\n"
    "  end\n"
    "  return table.concat(t, '|')\n"
    "end\n"
    "local repl_t = {a = 'A', b = false, ab = 7, [''] = 'E', ['1'] = 'one', x = {}}\n"
    "local function repl_f(c, ...)\n"
    "  if c == 'a' then return nil elseif c == 'b' then return 42\n"
    "  elseif c == 'c' then return false end\n"
    "  return '<' .. ser(c, ...) .. '>'\n"
    "end\n"
    "return function(kind, s, p, a3, a4)\n"
    "  if kind == 'find' then return ser(pcall(string.find, s, p, a3, a4)) end\n"
    "  if kind == 'match' then return ser(pcall(string.match, s, p, a3)) end\n"
    "  if kind == 'gmatch' then\n"
    "    return ser(pcall(function()\n"
    "      local out = {}\n"
    "      for a, b, c in string.gmatch(s, p, a3) do\n"
    "        out[#out + 1] = ser(a, b, c)\n"
    "        if #out == 64 then break end\n"
    "      end\n"
    "      return table.concat(out, ';')\n"
    "    end))\n"
    "  end\n"
    "  local r = a3\n"
    "  if r == 'T' then r = repl_t elseif r == 'F' then r = repl_f end\n"
    "  return ser(pcall(string.gsub, s, p, r, a4))\n"
    "end\n";

typedef struct side {
  lua_State *L;
  int fn;        /* the driver's stack index */
  luapool *pool; /* the pooled side's (NULL: the stock side) */
} side;

static void side_open(side *d, lua_State *L) {
  d->L = L;
  ck_assert_int_eq(luaL_loadbufferx(L, driver, sizeof driver - 1, "=driver", "t"), LUA_OK);
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  d->fn = lua_gettop(L);
}

/* An argument: a string (n bytes, may hold zeros), an integer, or nil (s NULL, n < 0). */
typedef struct arg {
  const char *s;
  long n; /* s == NULL: n is the integer; n == LONG_MIN: nil */
} arg;

#define NIL ((arg){NULL, -0x7fffffffL - 1})
#define INT(i) ((arg){NULL, (i)})
#define STR(x) ((arg){(x), (long)strlen(x)}) /* x: no side effects */

static void push_arg(lua_State *L, arg a) {
  if (a.s != NULL)
    lua_pushlstring(L, a.s, (size_t)a.n);
  else if (a.n == NIL.n)
    lua_pushnil(L);
  else
    lua_pushinteger(L, a.n);
}

/* Runs the driver on one side: its string (at most n bytes into out). */
static void side_run(side *d, const char *kind, arg s, arg p, arg a3, arg a4, char *out, size_t n) {
  lua_State *L = d->L;
  lua_pushvalue(L, d->fn);
  lua_pushstring(L, kind);
  push_arg(L, s);
  push_arg(L, p);
  push_arg(L, a3);
  push_arg(L, a4);
  if (lua_pcall(L, 5, 1, 0) != LUA_OK)
    snprintf(out, n, "driver error: %s", lua_tostring(L, -1));
  else
    snprintf(out, n, "%s", lua_tostring(L, -1));
  lua_settop(L, d->fn);
}

static lua_State *stock;
static side stock_side;

/* The two sides: a stock state, and into d a pooled state of profile (util_profiles). */
static void both_open(side *d, int profile) {
  luapool_config cfg;
  util_config_libs(&cfg, util_profiles[profile]);
  d->pool = util_pool(&cfg);
  side_open(d, util_acquire(d->pool));
  stock = luaL_newstate();
  luaL_openlibs(stock);
  side_open(&stock_side, stock);
}

static void both_close(side *d) {
  lua_close(stock);
  luapool_release(d->pool, d->L);
  luapool_destroy(d->pool);
}

static long compared;

/* One case on both sides: the same string, or the test fails naming the case. */
static void same(side *pooled, const char *kind, arg s, arg p, arg a3, arg a4) {
  static char want[8192], got[8192];
  side_run(&stock_side, kind, s, p, a3, a4, want, sizeof want);
  side_run(pooled, kind, s, p, a3, a4, got, sizeof got);
  if (strcmp(want, got) != 0) {
    char sub[256], pat[256];
    snprintf(sub, sizeof sub, "%.*s", s.s != NULL ? (int)s.n : 0, s.s != NULL ? s.s : "");
    snprintf(pat, sizeof pat, "%.*s", p.s != NULL ? (int)p.n : 0, p.s != NULL ? p.s : "");
    ck_abort_msg("%s(\"%s\", \"%s\", ...): stock Lua gives\n  %s\nluapool gives\n  %s", kind, sub,
                 pat, want, got);
  }
  compared++;
}

/* Every kind on one subject and pattern, with one extra argument set. */
static void all_kinds(side *d, arg s, arg p) {
  same(d, "find", s, p, NIL, NIL);
  same(d, "match", s, p, NIL, NIL);
  same(d, "gmatch", s, p, NIL, NIL);
  same(d, "gsub", s, p, STR("<%0>"), NIL);
  same(d, "gsub", s, p, STR("T"), NIL);
  same(d, "gsub", s, p, STR("F"), NIL);
}

typedef struct fixed_case {
  const char *s, *p;
} fixed_case;

static const fixed_case fixed[] = {
    {"hello world", "o w"},
    {"hello world", "(o)(.)"},
    {"hello", "l+"},
    {"hello", "l*"},
    {"hello", "l-"},
    {"hello", "l?"},
    {"hello", "^h"},
    {"hello", "^e"},
    {"hello", "o$"},
    {"hello", "l$"},
    {"a$b", "$b"},
    {"a^b", "a^b"},
    {"^^", "^^"},
    {"", ""},
    {"", "^"},
    {"", "$"},
    {"", "^$"},
    {"abc", ""},
    {"abc", "()"},
    {"abc", "()b()"},
    {"abc", "(a)(b)(c)"},
    {"  trim me  ", "^%s*(.-)%s*$"},
    {"key = value", "(%w+)%s*=%s*(%w+)"},
    {"THE (quick) fox", "%f[%a]%a+"},
    {"THE (quick) fox", "%f[%A]"},
    {"x(a(b)c)y", "%b()"},
    {"x(a(b)c", "%b()"},
    {"[[x]]", "%b[]"},
    {"aaa", "%baa"},
    {"abc", "%b"},
    {"abc", "%ba"},
    {"abab", "(ab)%1"},
    {"abab", "(a)(b)%2"},
    {"abab", "%1"},
    {"abab", "(a%1)"},
    {"abab", "%0"},
    {"abab", "()%1"},
    {"a.b", "%."},
    {"a.b", "[.]"},
    {"a]b", "[]]"},
    {"a]b", "[^]]+"},
    {"a-b", "[a-]"},
    {"a-b", "[-a]"},
    {"a-b", "[%-]"},
    {"abc", "[a-c]+"},
    {"abc", "[c-a]"},
    {"a%b", "%%"},
    {"abc", "%"},
    {"abc", "[a"},
    {"abc", "[a%"},
    {"abc", "[%"},
    {"abc", "[^"},
    {"abc", "("},
    {"abc", ")"},
    {"abc", "(()"},
    {"abc", "%f"},
    {"abc", "%fa"},
    {"abc", "%g+"},
    {"a\0b", "%z"},
    {"a\0b", "%Z+"},
    {"a1_ B", "%w+"},
    {"a1_ B", "%W"},
    {"a1_ B", "%p"},
    {"a1_ B", "%u"},
    {"a1_ B", "%l"},
    {"a1_ B", "%x+"},
    {"a1_ B", "%c"},
    {"a1_ B", "%d"},
    {"a1_ B", "%q"},
    {"a1_ B", "%_"},
    {"aaab", "a-b"},
    {"aaab", "a*ab"},
    {"aaab", ".-b"},
    {"<<a>><<b>>", "<<(.-)>>"},
    {"<<a>><<b>>", "<<(.*)>>"},
    {"abc", "((a)(b))"},
    {"abc", "(a(b(c)))"},
    {"say \"hi\" or 'bye'", "([\"'])(.-)%1"},
    {"abc", ".-"},
    {"abc", ".*"},
    {"abc", "x*"},
    {"abc", "a?b?c?d?"},
    {"ab", "%f[%z]"},
    {"ab", "%f[^%z]"},
    {"ab", "%f[b]"},
};

START_TEST(fixed_cases_agree_with_stock_lua) {
  side d;
  both_open(&d, _i);
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    all_kinds(&d, STR(fixed[i].s), STR(fixed[i].p));
  /* embedded zeros, in the subject and in the pattern (a string literal stops at the first) */
  all_kinds(&d, (arg){"a\0b\0c", 5}, (arg){"\0", 1});
  all_kinds(&d, (arg){"a\0b\0c", 5}, (arg){"b\0", 2});
  all_kinds(&d, (arg){"a\0b\0c", 5}, (arg){"[\0b]+", 5});
  all_kinds(&d, (arg){"a\0b\0c", 5}, (arg){"%b\0c", 4});
  all_kinds(&d, (arg){"a\0b\0c", 5}, (arg){".\0.", 3});
  /* init: negative, zero, past the end; plain */
  static const long inits[] = {-100, -3, -1, 0, 1, 2, 3, 4, 5, 100};
  for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) {
    same(&d, "find", STR("abcabc"), STR("b"), INT(inits[i]), NIL);
    same(&d, "find", STR("abcabc"), STR("b."), INT(inits[i]), INT(1));
    same(&d, "find", STR("abcabc"), STR(""), INT(inits[i]), NIL);
    same(&d, "find", STR("abcabc"), STR("^b"), INT(inits[i]), NIL);
    same(&d, "match", STR("abcabc"), STR("(b)(.)"), INT(inits[i]), NIL);
    same(&d, "match", STR("abcabc"), STR("()$"), INT(inits[i]), NIL);
    same(&d, "gmatch", STR("abcabc"), STR("b?"), INT(inits[i]), NIL);
    same(&d, "gmatch", STR("abcabc"), STR("^a"), INT(inits[i]), NIL);
  }
  /* gsub: replacement strings, numbers, the count, anchors, empty matches */
  static const char *const repls[] = {"",  "x",  "%0", "%1", "%2", "%%", "<%1|%0>",
                                      "%", "%x", "a%", "%9", "T",  "F"};
  static const char *const subjects[] = {"hello world", "abc", "", "aaa"};
  static const char *const pats[] = {"o",      "(o)", "()o", "^h", "",     "x*",
                                     "(l)(l)", "%w+", "^",   "a-", "(a)()"};
  static const long counts[] = {-1, 0, 1, 2};
  for (size_t r = 0; r < sizeof repls / sizeof repls[0]; r++)
    for (size_t s = 0; s < sizeof subjects / sizeof subjects[0]; s++)
      for (size_t q = 0; q < sizeof pats / sizeof pats[0]; q++) {
        same(&d, "gsub", STR(subjects[s]), STR(pats[q]), STR(repls[r]), NIL);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
          same(&d, "gsub", STR(subjects[s]), STR(pats[q]), STR(repls[r]), INT(counts[c]));
      }
  same(&d, "gsub", STR("abc"), STR("%w"), INT(7), NIL);
  same(&d, "gsub", STR("abc"), STR("%w"), NIL, NIL);
  /* argument errors: the library's messages */
  same(&d, "find", NIL, STR("a"), NIL, NIL);
  same(&d, "find", STR("a"), NIL, NIL, NIL);
  same(&d, "match", STR("a"), STR("a"), STR("x"), NIL);
  same(&d, "gmatch", INT(12), STR("2"), NIL, NIL);
  same(&d, "gsub", STR("a"), STR("a"), STR("b"), STR("x"));
  /* depth: right at Lua's limit and past it */
  char deep[1024];
  for (int n = 190; n <= 210; n += 2) {
    deep[0] = '\0';
    for (int i = 0; i < n; i++)
      strcat(deep, "a?");
    same(&d, "match", STR("aaaa"), STR(deep), NIL, NIL);
    deep[0] = '\0';
    for (int i = 0; i < n && i < 300; i++)
      strcat(deep, "(");
    same(&d, "find", STR("aaaa"), STR(deep), NIL, NIL);
  }
  /* captures: 32 is the most */
  char caps[200] = "";
  for (int i = 0; i < 33; i++) {
    strcat(caps, "()");
    same(&d, "find", STR("abc"), STR(caps), NIL, NIL);
  }
  both_close(&d);
}
END_TEST

/* A tiny deterministic generator (the test must not depend on the run). */
static unsigned long long rng_state;
static unsigned rnd(unsigned n) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (unsigned)(rng_state >> 33) % n;
}

static const char *const atoms[] = {
    "a",      "b",   "c",    "(",    ")",   "%",    "[",    "]",      "^",      "$",
    ".",      "*",   "+",    "-",    "?",   "%a",   "%d",   "%s",     "%w",     "%A",
    "%S",     "%p",  "%x",   "%z",   "%.",  "%%",   "%]",   "[ab]",   "[^a]",   "[a-c]",
    "[%a%d]", "[]]", "[^]]", "[a-]", "[%]", "%b()", "%bab", "%f[%w]", "%f[%W]", "%f[a]",
    "%1",     "%2",  "%0",   "()",   "x",   " ",    "(a",   "b)",     "[",      "%b",
};

/* Random subjects and patterns, short enough that no case backtracks for long. */
START_TEST(random_cases_agree_with_stock_lua) {
  side d;
  both_open(&d, _i);
  rng_state = 20261202;
  static const char subject_chars[] = "aabbc()%% x1_-]\0";
  static const char *const repls[] = {"<%0>", "%1", "%2|%1", "%%", "T", "F", "%", ""};
  char s[16], pat[64];
  for (int k = 0; k < 12000; k++) {
    size_t ls = rnd(12);
    for (size_t i = 0; i < ls; i++)
      s[i] = subject_chars[rnd(sizeof subject_chars - 1)];
    size_t lp = 0;
    for (unsigned n = rnd(7), i = 0; i < n; i++) {
      const char *a = atoms[rnd(sizeof atoms / sizeof atoms[0])];
      size_t la = strlen(a);
      memcpy(pat + lp, a, la);
      lp += la;
    }
    arg as = {s, (long)ls}, ap = {pat, (long)lp};
    arg init = rnd(3) == 0 ? INT((long)rnd(16) - 8) : NIL;
    switch (rnd(4)) {
    case 0:
      same(&d, "find", as, ap, init, rnd(4) == 0 ? INT(1) : NIL);
      break;
    case 1:
      same(&d, "match", as, ap, init, NIL);
      break;
    case 2:
      same(&d, "gmatch", as, ap, init, NIL);
      break;
    default: {
      const char *r = repls[rnd(sizeof repls / sizeof repls[0])]; /* STR evaluates it twice */
      same(&d, "gsub", as, ap, STR(r), rnd(3) == 0 ? INT((long)rnd(4) - 1) : NIL);
      break;
    }
    }
  }
  ck_assert_int_ge(compared, 12000);
  both_close(&d);
}
END_TEST

/* ---- what the matcher is for: a call that backtracks is stopped -------------------------- */

/* Shapes that each take from seconds to ages in Lua's own matcher, in one call. */
static const char *const backtracking[] = {
    /* 2^30 ways to split the a's */
    "return (('a'):rep(30)):match(('a*'):rep(30) .. 'b')",
    /* lazy repetitions: the fifth power of the length */
    "return ((' '):rep(3000)):find('.-.-.-.-.-x')",
    /* %b from every position: quadratic in a long unbalanced run */
    "return (('('):rep(1 << 20)):find('%b()')",
    /* a back reference tried at every split */
    "return (('a'):rep(1 << 16)):find('(a*)%1x')",
    /* gmatch and gsub backtrack the same way */
    "for _ in (('a'):rep(28)):gmatch(('a?'):rep(28) .. ('a'):rep(28) .. 'b') do end",
    "return (('a'):rep(28)):gsub(('a?'):rep(28) .. ('a'):rep(28) .. 'b', '')",
    /* a huge set tested at every character */
    "return (('b'):rep(1 << 16)):find('[' .. ('a'):rep(1 << 20) .. ']')",
    /* a long replacement scanned at every (empty) match, adding nothing */
    "return (('a'):rep(1 << 16)):gsub('(b?)', ('%1'):rep(1 << 17))",
};
#define NBACKTRACKING ((int)(sizeof backtracking / sizeof backtracking[0]))

START_TEST(backtracking_is_stopped_by_the_instruction_budget) {
  for (int profile = 0; profile < 2; profile++) {
    luapool_config cfg;
    util_config_libs(&cfg, util_profiles[profile]);
    cfg.budget_instructions = 20000000;
    luapool *p = util_pool(&cfg);
    lua_State *L = util_acquire(p);
    const char *msg = util_error_of(L, "=backtrack", backtracking[_i]);
    ck_assert_msg(strstr(msg, "budget exceeded") != NULL, "%s: %s", backtracking[_i], msg);
    ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_INSTRUCTIONS);
    luapool_release(p, L);
    L = util_acquire(p);
    ck_assert_int_eq(util_eval_int(L, "return select(2, ('aXa'):gsub('a', 'b'))"), 2);
    luapool_release(p, L);
    luapool_destroy(p);
  }
}
END_TEST

START_TEST(backtracking_is_stopped_by_the_deadline) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.budget_ms = 50;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  const char *msg = util_error_of(L, "=backtrack", backtracking[_i]);
  ck_assert_msg(strstr(msg, "budget exceeded") != NULL, "%s: %s", backtracking[_i], msg);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_TIME);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* A plain find is linear in the subject and the needle: Lua's own compares the needle at every
   position (here 2^21 x 2^21 bytes, hours), luapool's charges about 2^22 + 2^21 a call. */
START_TEST(plain_find_is_linear) {
  luapool_config cfg;
  util_config(&cfg);
  cfg.budget_instructions = 100000000;
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  ck_assert_int_eq(util_eval_int(L, "local s = ('a'):rep(1 << 22)"
                                    " local n = ('a'):rep(1 << 21) .. 'b'"
                                    " return (s:find(n, 1, true) == nil and s:find(n) == nil"
                                    " and s:find(n:sub(1, -2), 3, true) == 3) and 1 or 0"),
                   1);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_OK);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

/* No budget at all: only the interrupt can stop the call, and it does. */
START_TEST(backtracking_is_stopped_by_an_interrupt) {
  luapool_config cfg;
  util_config(&cfg);
  luapool *p = util_pool(&cfg);
  lua_State *L = util_acquire(p);
  char chunk[512];
  snprintf(chunk, sizeof chunk, "started() %s", backtracking[_i]);
  /* 5 ms: most likely inside the match by then; if not, the next look stops it */
  const char *msg = util_error_interrupted(L, chunk, 5);
  ck_assert_msg(strstr(msg, "interrupted") != NULL, "%s: %s", backtracking[_i], msg);
  ck_assert_int_eq(luapool_status(L), LUAPOOL_STATUS_INTERRUPTED);
  luapool_release(p, L);
  luapool_destroy(p);
}
END_TEST

int main(void) {
  Suite *s = suite_create("pattern");
  TCase *tc = tcase_create("semantics");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, fixed_cases_agree_with_stock_lua, 0, 2);
  tcase_add_loop_test(tc, random_cases_agree_with_stock_lua, 0, 2);
  suite_add_tcase(s, tc);
  /* heavy: budgets of 10^7 steps and more, pure C work that valgrind's CI step skips (.ci/run) */
  tc = tcase_create("stops");
  tcase_set_tags(tc, "heavy");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, backtracking_is_stopped_by_the_instruction_budget, 0, NBACKTRACKING);
  tcase_add_loop_test(tc, backtracking_is_stopped_by_the_deadline, 0, NBACKTRACKING);
  tcase_add_test(tc, plain_find_is_linear);
  tcase_add_loop_test(tc, backtracking_is_stopped_by_an_interrupt, 0, NBACKTRACKING);
  suite_add_tcase(s, tc);
  return util_run_suite(s);
}
