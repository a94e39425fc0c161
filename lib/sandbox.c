/*
** sandbox.c: what a state's libraries look like.
**
** Every profile: a setmetatable (and under LUAPOOL_LIB_DEBUG a debug.setmetatable) that notes
** finalizers, so that the reset can close a state in which a script set one.
**
** LUAPOOL_LIB_SANDBOX (part of LUAPOOL_LIBS_SAFE), after on_create has run:
**   - the globals table becomes an empty overlay O whose __index is a view of the table of
**     builtins B: a request's globals live in the overlay, which the reset empties;
**   - scripts see every table reachable from B (the libraries, on_create's modules, nested
**     tables) through an empty read-only proxy (__index reading the real table and handing out
**     proxies of the tables in it, __newindex an error, __len, __pairs, __metatable false), so a
**     script cannot write them; the real tables stay as on_create left them (but B's entries
**     for the libraries, which become their proxies), for on_create's own functions to use;
**   - rawset refuses the proxies; setmetatable refuses metatables with __gc; load reads text
**     only; require loads only package.preload's modules (registry._PRELOAD), into a
**     per-request table; dofile, loadfile, print and string.dump are gone; metatables of other
**     types (strings) and of userdata values are protected with __metatable.
** The FROZEN kinds (lptable.h) tell the reset's snapshot what the sandbox made and what only
** its proxies read; the snapshot skips a real table only where every way the walk finds to it
** is such a read-only one, and records it otherwise (snapshot.c).
*/
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "lptable.h"
#include "sandbox.h"
#include "sx.h"

/* ---- setmetatable: notes finalizers (every profile), refuses them (sandbox) ------------- */

static bool has_gc(lua_State *L, int mt) {
  if (lua_type(L, mt) != LUA_TTABLE)
    return false;
  lua_pushliteral(L, "__gc");
  bool gc = lua_rawget(L, mt) != LUA_TNIL; /* Lua's own test is raw and takes any non-nil */
  lua_pop(L, 1);
  return gc;
}

/* Notes that a script gave the object at 1 a finalizer: the reset closes the state, and the close
   defuses it (lp_sandbox_defuse_finalizers). */
static void note_finalizer(lua_State *L) {
  lp_sandbox *sb = &lp_sx_of(L)->sandbox;
  if (!sb->settled)
    return; /* on_create's: the host's own */
  sb->finalizer = true;
  lp_lptable_get(L, LP_T_FINALIZERS);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int set_mt(lua_State *L, bool sandbox) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  if (has_gc(L, 2)) {
    if (sandbox)
      return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox");
    note_finalizer(L);
  }
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

static int all_setmetatable(lua_State *L) {
  return set_mt(L, false);
}

static int sb_setmetatable(lua_State *L) {
  return set_mt(L, true);
}

/* debug.setmetatable under LUAPOOL_LIB_DEBUG: stock behaviour, finalizers noted. */
static int all_debug_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  int target = lua_type(L, 1);
  if ((target == LUA_TTABLE || target == LUA_TUSERDATA) && has_gc(L, 2))
    note_finalizer(L);
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* ---- the sandbox's base functions --------------------------------------------------------- */

/* load(chunk [, chunkname [, mode [, env]]]), text chunks only. */
static int sb_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len); /* a number is a chunk too, as in stock Lua */
  const char *name = luaL_optstring(L, 2, s != NULL ? s : "=(load)");
  const char *mode = luaL_optstring(L, 3, "bt");
  bool env = !lua_isnone(L, 4);
  if (strchr(mode, 't') == NULL) {
    luaL_pushfail(L);
    lua_pushfstring(L, "attempt to load a chunk with mode '%s': the sandbox loads text only", mode);
    return 2;
  }
  return lp_guard_load_chunk(L, s, len, name, "t", env); /* charged as it is read */
}

/* rawset refusing the read-only proxies (upvalue 1: the set of proxies). */
static int sb_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return luaL_error(L, "rawset: the table is read-only in the sandbox");
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

/*
** require(name) for package.preload's modules only.  Upvalues: 1 the pristine modules (_LOADED
** before the freeze, their proxies after), 2 _PRELOAD, 3 the modules this request loaded
** (emptied by the reset).
*/
static int sb_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  for (int up = 1; up <= 3; up += 2) {
    lua_pushvalue(L, 1);
    if (lua_rawget(L, lua_upvalueindex(up)) != LUA_TNIL)
      return 1;
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 1);
  if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TNIL)
    return luaL_error(L, "module '%s' not found: the sandbox loads package.preload's modules only",
                      name);
  lua_pushvalue(L, 1);
  lua_pushliteral(L, ":preload:");
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, lua_upvalueindex(3));
  lua_pushliteral(L, ":preload:");
  return 2;
}

/* ---- read-only proxies -------------------------------------------------------------------- */

/*
** A proxy is an empty table whose metatable (the sandbox's, protected) reads the real table:
** its __index is the real table itself when that holds no table a script could then write (a
** "flat" table: no table keys or values, no metatable), else ro_index, which hands out the
** proxy of every table it reads.  The real tables stay as on_create left them, so a module's
** own functions write their tables as they would in stock Lua; the snapshot records whatever
** such a function can reach (snapshot.c), and skips what only the proxies read.
*/

/* The key, in a proxy's metatable, of the real table behind it: a light userdata, which no
   script can make. */
static const char real_key = 0;

/* The real table behind the proxy at index i, pushed; nil if i is no proxy. */
static void push_real(lua_State *L, int i) {
  if (!lua_getmetatable(L, i)) {
    lua_pushnil(L);
    return;
  }
  lua_rawgetp(L, -1, &real_key);
  lua_remove(L, -2);
}

/* A key a script passes (index i): a proxy stands for its real table. */
static void map_in(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TTABLE)
    return;
  push_real(L, i);
  if (lua_istable(L, -1))
    lua_replace(L, i);
  else
    lua_pop(L, 1);
}

/* The value on top, read from a real table: a table that has a proxy becomes its proxy. */
static void map_out(lua_State *L, int memo) {
  if (lua_type(L, -1) != LUA_TTABLE)
    return;
  lua_pushvalue(L, -1);
  if (lua_rawget(L, memo) != LUA_TNIL)
    lua_replace(L, -2);
  else
    lua_pop(L, 1);
}

/* __index of a proxy of a table that is not flat.  Upvalues: 1 the real table, 2 the memo. */
static int ro_index(lua_State *L) {
  lua_settop(L, 2);
  map_in(L, 2);
  lua_gettable(L, lua_upvalueindex(1)); /* the real table's own metatable counts, as in Lua */
  map_out(L, lua_upvalueindex(2));
  return 1;
}

static int ro_newindex(lua_State *L) {
  lua_settop(L, 2);
  return luaL_error(L, "cannot set field '%s': the table is read-only in the sandbox",
                    luaL_tolstring(L, 2, NULL));
}

static int ro_len(lua_State *L) {
  push_real(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
  return 1;
}

/* next over a proxy: the real table's entries, tables mapped to proxies.  Upvalue: the memo. */
static int ro_next(lua_State *L) {
  lua_settop(L, 2);
  push_real(L, 1);
  if (!lua_istable(L, 3))
    return 0;
  map_in(L, 2);
  lua_pushvalue(L, 2);
  if (!lua_next(L, 3)) {
    lua_pushnil(L);
    return 1;
  }
  map_out(L, lua_upvalueindex(1)); /* the value */
  lua_pushvalue(L, -2);
  map_out(L, lua_upvalueindex(1)); /* the key */
  lua_replace(L, -3);
  return 2;
}

/* __pairs of a proxy.  Upvalue: ro_next. */
static int ro_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Stack indices of the working tables while freezing (see lp_sandbox_freeze). */
typedef struct freeze_ctx {
  int memo;     /* real table -> its proxy (B -> O) */
  int proxies;  /* set of proxies (rawset's upvalue) */
  int frozen;   /* the FROZEN kinds */
  int builtins; /* the globals table on_create left: the builtins, B */
  int overlay;  /* the new globals table, O */
  int loaded;   /* _LOADED */
  int pristine; /* require's view of the modules: name -> proxy */
  int pairs;    /* the proxies' __pairs */
} freeze_ctx;

static void mark_kind(lua_State *L, const freeze_ctx *c, int i, int kind) {
  lua_pushvalue(L, i);
  lua_pushinteger(L, kind);
  lua_rawset(L, c->frozen);
}

static int kind_of(lua_State *L, const freeze_ctx *c, int i) {
  lua_pushvalue(L, i);
  lua_rawget(L, c->frozen);
  int k = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return k;
}

/* A C closure of the sandbox's, which never changes (set_wrapper's mark). */
static void mark_frozen(lua_State *L, const freeze_ctx *c, int i) {
  mark_kind(L, c, i, LP_K_WRAPPER);
}

/* Protects the metatable of the value at i (userdata, or a type's) with __metatable. */
static void protect_mt(lua_State *L, const freeze_ctx *c, int i) {
  if (!lua_getmetatable(L, i))
    return;
  lua_pushliteral(L, "__metatable");
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pushliteral(L, "__metatable");
    lua_pushboolean(L, 0);
    lua_rawset(L, -4);
  }
  lua_pop(L, 1);
  if (kind_of(L, c, -1) == 0)
    mark_kind(L, c, lua_gettop(L), LP_K_PROTMT);
  lua_pop(L, 1);
}

static bool proxy_entries(lua_State *L, const freeze_ctx *c, int t, bool *leaf);

/* Pushes a metatable of the sandbox's: __metatable false, and __index the value on top. */
static void push_sandbox_mt(lua_State *L, const freeze_ctx *c, int nrec) {
  lua_createtable(L, 0, nrec);
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  mark_kind(L, c, lua_gettop(L), LP_K_PROXYMT);
}

/* Pushes ro_index over the real table at t, a closure of the sandbox's. */
static void push_ro_index(lua_State *L, const freeze_ctx *c, int t) {
  lua_pushvalue(L, t);
  lua_pushvalue(L, c->memo);
  lua_pushcclosure(L, ro_index, 2);
  mark_frozen(L, c, lua_gettop(L));
}

/*
** Pushes the proxy of the real table at index t (made once per table), after making proxies
** for the tables t holds, recursively.  t itself is not changed.
*/
/* Recursive over the nesting of the tables frozen (the libraries the host sets up, not request
   data); luaL_checkstack bounds the depth with a Lua error. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void proxy_of(lua_State *L, const freeze_ctx *c, int t) {
  t = lua_absindex(L, t);
  luaL_checkstack(L, 8, "tables nested too deeply to freeze");
  lua_pushvalue(L, t);
  if (lua_rawget(L, c->memo) != LUA_TNIL)
    return;
  lua_pop(L, 1);
  lua_newtable(L); /* the proxy */
  int proxy = lua_gettop(L);
  lua_pushvalue(L, t);
  lua_pushvalue(L, proxy);
  lua_rawset(L, c->memo);
  mark_kind(L, c, t, LP_K_MAPPED);
  mark_kind(L, c, proxy, LP_K_FIXED);
  lua_pushvalue(L, proxy);
  lua_pushboolean(L, 1);
  lua_rawset(L, c->proxies);
  bool leaf;
  bool flat = proxy_entries(L, c, t, &leaf) && !lua_getmetatable(L, t);
  if (leaf && flat)
    mark_kind(L, c, t, LP_K_LEAF); /* the freeze adds no object to t after this (doc/design.md) */
  lua_settop(L, proxy);
  if (flat)
    lua_pushvalue(L, t);
  else
    push_ro_index(L, c, t);
  push_sandbox_mt(L, c, 6);
  lua_pushcfunction(L, ro_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, ro_len);
  lua_setfield(L, -2, "__len");
  lua_pushvalue(L, c->pairs);
  lua_setfield(L, -2, "__pairs");
  lua_pushvalue(L, t);
  lua_rawsetp(L, -2, &real_key);
  lua_setmetatable(L, proxy);
}

/*
** Makes proxies for the tables table t holds (keys and values), and protects the metatables of
** the userdata it holds.  Changes nothing in t.  Returns whether t is flat: it holds no table
** that has or gets a proxy (proxies themselves map to themselves).  *leaf: whether t holds no
** object at all that the walk would queue (snapshot.c, reach): no table, userdata, thread or
** function with upvalues.
*/
/* NOLINTNEXTLINE(misc-no-recursion): with proxy_of, bounded by its luaL_checkstack */
static bool proxy_entries(lua_State *L, const freeze_ctx *c, int t, bool *leaf) {
  bool flat = true;
  *leaf = true;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    int v = lua_gettop(L);
    for (int i = v - 1; i <= v; i++) {
      switch (lua_type(L, i)) {
      case LUA_TTABLE: {
        *leaf = false;
        lua_pushvalue(L, i);
        bool is_proxy = lua_rawget(L, c->proxies) != LUA_TNIL;
        lua_pop(L, 1);
        if (!is_proxy) {
          proxy_of(L, c, i);
          flat = false;
        }
        break;
      }
      case LUA_TUSERDATA:
        *leaf = false;
        protect_mt(L, c, i);
        break;
      case LUA_TFUNCTION:
        if (lua_getupvalue(L, i, 1) != NULL)
          *leaf = false; /* the upvalue goes with the settop below */
        break;
      case LUA_TTHREAD:
        *leaf = false;
        break;
      default:
        break;
      }
      lua_settop(L, v);
    }
    lua_pop(L, 1);
  }
  return flat;
}

/*
** Sizes for the freeze's tables, so that the stock libraries fill them without a rehash (each
** growth is one, from 1 slot up): the marks note_stock and the freeze make in FROZEN (53 in
** 5.4.4), the libraries' proxies (5, and _G's overlay in the memo; the modules in the pristine
** view), the view's entries (27).  More (on_create's modules) only grow them as before.
*/
#define LP_SANDBOX_MARKS 64
#define LP_SANDBOX_LIBS 8
#define LP_SANDBOX_VIEW 32

/*
** Before on_create (the end of lp_sandbox_open): marks in FROZEN what luapool opened, which the
** freeze tells from what on_create adds: the libraries' tables (LP_K_LIB) and the C functions
** in the globals and the C closures in the libraries (LP_K_FIXED: the libraries' C code never
** changes their upvalues).  A light C function in a library (most of them) is not marked: the
** walk passes over every function with no upvalues before it asks its kind (snapshot.c,
** reach_object), and only the globals' functions are asked for by the freeze (push_view).
*/
static void note_stock(lua_State *L, int g) {
  lp_lptable_get(L, LP_T_FROZEN);
  int frozen = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, g) != 0) {
    int v = lua_gettop(L);
    if (lua_istable(L, v) && !lua_rawequal(L, v, g)) {
      lua_pushvalue(L, v);
      lua_pushinteger(L, LP_K_LIB);
      lua_rawset(L, frozen);
      lua_pushnil(L);
      while (lua_next(L, v) != 0) {
        if (lua_iscfunction(L, -1) && lua_getupvalue(L, -1, 1) != NULL) {
          lua_pop(L, 1);
          lua_pushinteger(L, LP_K_FIXED);
          lua_rawset(L, frozen); /* frozen[function] = mark: pops both, leaves the key */
        } else {
          lua_pop(L, 1);
        }
      }
    } else if (lua_iscfunction(L, v)) {
      lua_pushvalue(L, v);
      lua_pushinteger(L, LP_K_FIXED);
      lua_rawset(L, frozen);
    }
    lua_settop(L, v - 1);
  }
  lua_pop(L, 1);
}

/* Adds the wrapper fn (with nup upvalues on the stack) as t[name], frozen. */
static void set_wrapper(lua_State *L, const freeze_ctx *c, int t, const char *name,
                        lua_CFunction fn, int nup) {
  lua_pushcclosure(L, fn, nup);
  if (c != NULL)
    mark_frozen(L, c, lua_gettop(L));
  lua_setfield(L, t, name);
}

/* Every profile: setmetatable notes finalizers; and under LIBS_ALL so does debug.setmetatable. */
static void wrap_setmetatable(lua_State *L, int g, bool sandbox) {
  if (lua_getfield(L, g, "setmetatable") != LUA_TNIL) {
    lua_pushcfunction(L, sandbox ? sb_setmetatable : all_setmetatable);
    lua_setfield(L, g, "setmetatable");
  }
  lua_pop(L, 1);
  if (!sandbox && lua_getfield(L, g, LUA_DBLIBNAME) == LUA_TTABLE) {
    lua_pushcfunction(L, all_debug_setmetatable);
    lua_setfield(L, -2, "setmetatable");
  }
  lua_settop(L, g);
}

int lp_sandbox_open(lua_State *L, unsigned libs) {
  bool sandbox = (libs & LUAPOOL_LIB_SANDBOX) != 0;
  if (!sandbox) {
    lp_lptable_get(L, LP_T_FINALIZERS); /* weak keys: a finalized object leaves it */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
  }
  lua_pushglobaltable(L);
  int g = lua_gettop(L);
  wrap_setmetatable(L, g, sandbox);
  if (!sandbox) {
    lua_settop(L, g - 1);
    return 0;
  }
  static const char *const removed[] = {"dofile", "loadfile", "print"};
  for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) {
    lua_pushnil(L);
    lua_setfield(L, g, removed[i]);
  }
  if (lua_getfield(L, g, "load") != LUA_TNIL) {
    lua_pushcfunction(L, sb_load);
    lua_setfield(L, g, "load");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, g, LUA_STRLIBNAME) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
  }
  lua_pop(L, 1);
  /* require: the registry's _PRELOAD (on_create fills it), and this request's modules */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_newtable(L);
  set_wrapper(L, NULL, g, "require", sb_require, 3);
  /* FROZEN, empty until here, sized once for the ~50 marks the sandbox makes, not grown
     (rehashed) six times */
  lua_createtable(L, 0, LP_SANDBOX_MARKS);
  lp_lptable_set(L, LP_T_FROZEN);
  note_stock(L, g);
  lua_settop(L, g - 1);
  return 0;
}

void lp_sandbox_settle(lp_sandbox *sb) {
  sb->finalizer = false;
  sb->settled = true;
}

void lp_sandbox_defuse_finalizers(lua_State *L) {
  if (!lua_checkstack(L, 6))
    return; /* only after out of memory */
  int base = lua_gettop(L);
  lp_lptable_get(L, LP_T_FINALIZERS);
  int set = base + 1;
  lua_pushnil(L);
  while (lua_next(L, set) != 0) {
    lua_pop(L, 1);
    if (lua_getmetatable(L, -1)) {
      lua_pushliteral(L, "__gc"); /* a metamethod name: pushing it allocates nothing */
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_pushliteral(L, "__gc");
        lua_pushnil(L);
        lua_rawset(L, -4); /* an existing key: allocates nothing */
      }
      lua_pop(L, 2);
    }
  }
  lua_settop(L, base);
}

/* The sandbox's require and its per-request modules table, from _G (before the freeze). */
static void push_require_modules(lua_State *L, int g) {
  lua_getfield(L, g, "require");
  if (lua_tocfunction(L, -1) != sb_require || lua_getupvalue(L, -1, 3) == NULL)
    lua_pushnil(L);
  lua_remove(L, -2);
}

/* Modules on_create required become pristine: into _LOADED, out of the request's table. */
static void keep_required_modules(lua_State *L, const freeze_ctx *c) {
  push_require_modules(L, c->builtins);
  int mods = lua_gettop(L);
  if (lua_istable(L, mods)) {
    lua_pushnil(L);
    while (lua_next(L, mods) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, c->loaded);
    }
    lua_pushnil(L);
    while (lua_next(L, mods) != 0) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, mods);
    }
    lua_pushvalue(L, mods);
    lp_lptable_set(L, LP_T_MODULES);
  }
  lua_settop(L, mods - 1);
}

/* The libraries' tables in B become their proxies there too (below): on_create's functions read
   them as before, and what these functions can write stays what the walk records. */
static void proxy_libraries(lua_State *L, const freeze_ctx *c) {
  int b = c->builtins;
  lua_pushnil(L);
  while (lua_next(L, b) != 0) {
    if (lua_type(L, -1) == LUA_TTABLE && kind_of(L, c, -1) == LP_K_LIB) {
      proxy_of(L, c, -1);
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, b); /* an existing field: allowed during the traversal */
    }
    lua_pop(L, 1);
  }
}

/*
** Pushes the view V: B's entries that luapool opened (the library functions, the libraries'
** proxies, _G as O), for scripts to find without a C call; its __index reads B through
** ro_index for the rest (on_create's globals), so scripts always see B's current values there.
*/
static void push_view(lua_State *L, const freeze_ctx *c) {
  lua_createtable(L, 0, LP_SANDBOX_VIEW);
  int view = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, c->builtins) != 0) {
    int k = kind_of(L, c, -1);
    bool proxy = false;
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushvalue(L, -1);
      proxy = lua_rawget(L, c->proxies) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (lua_rawequal(L, -1, c->builtins)) {
      lua_pushvalue(L, -2);
      lua_pushvalue(L, c->overlay);
      lua_rawset(L, view);
    } else if (proxy ||
               (lua_type(L, -1) == LUA_TFUNCTION && (k == LP_K_FIXED || k == LP_K_WRAPPER))) {
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, view);
    }
    lua_pop(L, 1);
  }
  mark_kind(L, c, view, LP_K_MAPPED);
  push_ro_index(L, c, c->builtins);
  push_sandbox_mt(L, c, 2);
  lua_setmetatable(L, view);
}

/* Sets the overlay's metatable: __index the view V (pushed and popped), protected. */
static void set_overlay_mt(lua_State *L, const freeze_ctx *c) {
  push_view(L, c);
  push_sandbox_mt(L, c, 2);
  lua_setmetatable(L, c->overlay);
}

/*
** Pushes require's view of the pristine modules: their proxies.  _LOADED itself, which no script
** reaches, keeps the real tables, so that Lua names a function in an error message
** ('string.rep') as it does in stock Lua (luaL_traceback and argument errors search it).
*/
static void push_pristine(lua_State *L, const freeze_ctx *c) {
  lua_createtable(L, 0, LP_SANDBOX_LIBS);
  int pristine = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, c->loaded) != 0) {
    int v = lua_gettop(L);
    if (lua_type(L, v) == LUA_TTABLE)
      proxy_of(L, c, v); /* B maps to O through the memo */
    else
      lua_pushvalue(L, v);
    lua_pushvalue(L, v - 1);
    lua_insert(L, -2);
    lua_rawset(L, pristine);
    lua_settop(L, v - 1);
  }
  mark_kind(L, c, pristine, LP_K_MAPPED);
}

/* rawset, now that the proxies are known; require is frozen (its third upvalue is not). */
static void wrap_rawset_require(lua_State *L, const freeze_ctx *c) {
  int b = c->builtins;
  if (lua_getfield(L, b, "rawset") != LUA_TNIL) {
    lua_pushvalue(L, c->proxies);
    set_wrapper(L, c, b, "rawset", sb_rawset, 1);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, b, "require") != LUA_TNIL) {
    mark_frozen(L, c, lua_gettop(L));
    lua_pushvalue(L, c->pristine);
    lua_setupvalue(L, -2, 1);
  }
  lua_pop(L, 1);
}

/*
** Type metatables (the string library's, and any on_create set from C): protected; an __index
** that is a real table with a proxy becomes the proxy, so that ("").rep reads string's proxy.
*/
static void protect_type_metatables(lua_State *L, const freeze_ctx *c) {
  lp_lptable_push_type_samples(L);
  int first = lua_gettop(L) - LP_TYPE_SAMPLES + 1;
  for (int i = first; i < first + LP_TYPE_SAMPLES; i++) {
    protect_mt(L, c, i);
    if (!lua_getmetatable(L, i))
      continue;
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      map_out(L, c->memo);
      lua_pushliteral(L, "__index");
      lua_insert(L, -2);
      lua_rawset(L, -3);
    }
    lua_settop(L, first + LP_TYPE_SAMPLES - 1);
  }
  lua_settop(L, first - 1);
}

/* The proxies' shared __pairs (and its ro_next), closures of the sandbox's over the memo. */
static void push_pairs(lua_State *L, const freeze_ctx *c) {
  lua_pushvalue(L, c->memo);
  lua_pushcclosure(L, ro_next, 1);
  mark_frozen(L, c, lua_gettop(L));
  lua_pushcclosure(L, ro_pairs, 1);
  mark_frozen(L, c, lua_gettop(L));
}

/*
** Stores the FROZEN kinds, the proxies set and the per-request modules table in the state's
** luapool table, and makes the overlay the globals table.  Pushes nothing.  Nothing on_create
** made is changed but the libraries' entries in B (their proxies) and __metatable in the
** metatables it protects.
*/
int lp_sandbox_freeze(lua_State *L) {
  int base = lua_gettop(L);
  freeze_ctx c;
  lua_createtable(L, 0, LP_SANDBOX_LIBS);
  c.memo = lua_gettop(L);
  lua_createtable(L, 0, LP_SANDBOX_LIBS);
  c.proxies = lua_gettop(L);
  lp_lptable_get(L, LP_T_FROZEN);
  c.frozen = lua_gettop(L);
  mark_kind(L, &c, c.memo, LP_K_BOOK);
  /* module.c's reset list: no script reaches the registry here, and the modules in it are
     walked from _LOADED; recording it would cost every reset a table for nothing */
  lp_lptable_get(L, LP_T_MODRESET);
  mark_kind(L, &c, lua_gettop(L), LP_K_BOOK);
  lua_pop(L, 1);
  lp_lptable_push(L);
  mark_kind(L, &c, lua_gettop(L), LP_K_FIXED);
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  c.builtins = lua_gettop(L);
  mark_kind(L, &c, c.builtins, LP_K_MAPPED);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  c.loaded = lua_gettop(L);
  mark_kind(L, &c, c.loaded, LP_K_MAPPED);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  mark_kind(L, &c, lua_gettop(L), LP_K_MAPPED);
  lua_pop(L, 1);
  push_pairs(L, &c);
  c.pairs = lua_gettop(L);

  keep_required_modules(L, &c);
  lua_newtable(L);
  c.overlay = lua_gettop(L);
  /* B maps to O: a script that reads _G (or any table's field holding B) gets O */
  lua_pushvalue(L, c.builtins);
  lua_pushvalue(L, c.overlay);
  lua_rawset(L, c.memo);
  proxy_libraries(L, &c);
  bool leaf;
  proxy_entries(L, &c, c.builtins, &leaf); /* B stays LP_K_MAPPED: the freeze writes it after */
  push_pristine(L, &c);
  c.pristine = lua_gettop(L);
  wrap_rawset_require(L, &c);
  protect_type_metatables(L, &c);
  set_overlay_mt(L, &c);

  lua_pushvalue(L, c.overlay);
  lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushvalue(L, c.proxies);
  lp_lptable_set(L, LP_T_PROXIES);
  lua_settop(L, base);
  return 0;
}
