/*
** luahttpd's Lua side: the states of each --strategy behind one interface (luahttpd.h), the
** host functions the handler sees (req.method() and the rest), running the handler and turning
** what it returns, or why it failed, into an answer, and the script's hot reload.
**
** The luapool strategies get everything from the pool: the reset, the budgets (budget_ms,
** budget_instructions, mem_limit), luapool_interrupt, luapool_status, luapool_context, the
** chunk cache of luapool_load.  The others own stock states (luaL_newstate's allocator replaced
** by a counting one, luaL_openlibs) and do the same by hand, so that a comparison is fair: a
** record per state (struct lh_own) in the state's extra space carries the request, a count hook
** every LH_HOOK_STEP instructions checks the interrupt flag, the instruction budget and the
** deadline, and the allocator refuses what would pass the memory limit.
*/
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "luahttpd.h"

#define LH_HOOK_STEP 1000 /* instructions between two checks of the hand-made budget */

/* One version of the script: its source, read once at start and once per accepted reload.
   Every version stays allocated until lh_destroy (a state made by an old generation, or a
   request that read the old pointer, may still use it until then). */
struct lh_gen {
  char *src;
  size_t len;
  struct lh_gen *next; /* older versions */
};

/* The version requests run.  Written by the reloading thread with release order after the
   version's source is complete; read with acquire order by each request, which so sees the
   whole source of whichever version it reads. */
static _Atomic(struct lh_gen *) current;
static struct lh_gen *gens; /* every version, newest first (the reloading thread only) */

static struct lh_settings cfg;
static luapool *pool;

void lh_log(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "luahttpd: %s\n", line); /* one fprintf: lines of two threads never mix */
}

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static bool is_luapool(void) {
  return cfg.strategy == LH_LUAPOOL || cfg.strategy == LH_LUAPOOL_ALL;
}

/* ---- the non-luapool strategies' states ------------------------------------------------------ */

struct lh_own {
  lua_State *L;
  struct lh_request *req; /* the request being served, or NULL */
  size_t used;            /* bytes the allocator has given out */
  bool mem_hit;           /* an allocation was refused for the limit in this request */
  int stop;               /* LUAPOOL_STATUS_* of a hand-made stop in this request, or 0 */
  uint64_t count;         /* instructions run in this request, in LH_HOOK_STEPs */
  uint64_t deadline_ms;   /* 0: no time budget */
  /* Set by the monitor thread (lh_interrupt), read by the hook on the request's thread.  Relaxed:
     it publishes nothing but itself; its reset at each acquire happens before the request enters
     the monitor's list, whose mutex orders it before any lh_interrupt of that request. */
  atomic_bool interrupted;
  const struct lh_gen *gen; /* the version whose compiled handler is at ref, or NULL */
  int ref;
  struct lh_own *next; /* in the mutex strategy's idle list */
};

static struct lh_own *own_of(lua_State *L) {
  return *(struct lh_own **)lua_getextraspace(L);
}

static void *own_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct lh_own *o = ud;
  if (ptr == NULL)
    osize = 0; /* osize is then the type of the object */
  if (nsize == 0) {
    free(ptr);
    o->used -= osize;
    return NULL;
  }
  if (cfg.mem_limit != 0 && nsize > osize && o->used - osize + nsize > cfg.mem_limit) {
    o->mem_hit = true;
    return NULL;
  }
  void *n = realloc(ptr, nsize);
  if (n == NULL) {
    o->mem_hit = true;
    return NULL;
  }
  o->used = o->used - osize + nsize;
  return n;
}

/* The hand-made budget: the stop is sticky, as luapool's is (a pcall that catches it fails again
   at the next check). */
static void own_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  struct lh_own *o = own_of(L);
  o->count += LH_HOOK_STEP;
  if (o->stop == 0) {
    if (atomic_load_explicit(&o->interrupted, memory_order_relaxed))
      o->stop = LUAPOOL_STATUS_INTERRUPTED;
    else if (cfg.budget_instructions != 0 && o->count > cfg.budget_instructions)
      o->stop = LUAPOOL_STATUS_INSTRUCTIONS;
    else if (o->deadline_ms != 0 && now_ms() >= o->deadline_ms)
      o->stop = LUAPOOL_STATUS_TIME;
  }
  if (o->stop != 0)
    luaL_error(L, "request stopped");
}

static int register_host(lua_State *L);

static int own_open(lua_State *L) {
  luaL_openlibs(L);
  return register_host(L);
}

static struct lh_own *own_new(void) {
  struct lh_own *o = calloc(1, sizeof *o);
  if (o == NULL)
    return NULL;
  o->ref = LUA_NOREF;
  o->L = lua_newstate(own_alloc, o);
  if (o->L == NULL) {
    free(o);
    return NULL;
  }
  *(struct lh_own **)lua_getextraspace(o->L) = o;
  lua_pushcfunction(o->L, own_open);
  if (lua_pcall(o->L, 0, 0, 0) != LUA_OK) {
    lh_log("cannot make a state: %s", lua_tostring(o->L, -1));
    lua_close(o->L);
    free(o);
    return NULL;
  }
  lua_sethook(o->L, own_hook, LUA_MASKCOUNT, LH_HOOK_STEP);
  return o;
}

static void own_free(struct lh_own *o) {
  if (o == NULL)
    return;
  lua_close(o->L);
  free(o);
}

/* Pushes the handler of version g, compiled once per state and version (a fresh state compiles
   it every time: that is the strategy's cost). */
static int own_load(struct lh_own *o, const struct lh_gen *g) {
  lua_State *L = o->L;
  if (o->gen != g) {
    luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
    o->ref = LUA_NOREF;
    o->gen = NULL;
    int rc = luaL_loadbufferx(L, g->src, g->len, "=handler", "t");
    if (rc != LUA_OK)
      return rc;
    o->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o->gen = g;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, o->ref);
  return LUA_OK;
}

/* pinned: one state per thread, closed when the thread exits (the key's destructor). */
static pthread_key_t pinned_key;

static void pinned_free(void *p) {
  own_free(p);
}

/* mutex: idle states in a list, at most max_states live (0: no limit). */
static pthread_mutex_t mx_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mx_cv;
static struct lh_own *mx_idle;
static unsigned mx_live;

static int mutex_acquire(long timeout_ms, struct lh_own **out) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&mx_mu);
  while (mx_idle == NULL && cfg.max_states != 0 && mx_live >= cfg.max_states) {
    if (pthread_cond_timedwait(&mx_cv, &mx_mu, &until) == ETIMEDOUT && mx_idle == NULL &&
        mx_live >= cfg.max_states) {
      pthread_mutex_unlock(&mx_mu);
      return LUAPOOL_ETIMEDOUT;
    }
  }
  struct lh_own *o = mx_idle;
  if (o != NULL) {
    mx_idle = o->next;
    pthread_mutex_unlock(&mx_mu);
  } else {
    mx_live++; /* room taken before the creation, outside the lock */
    pthread_mutex_unlock(&mx_mu);
    o = own_new();
    if (o == NULL) {
      pthread_mutex_lock(&mx_mu);
      mx_live--;
      pthread_cond_signal(&mx_cv);
      pthread_mutex_unlock(&mx_mu);
      return LUAPOOL_ENOMEM;
    }
  }
  *out = o;
  return LUAPOOL_OK;
}

static void mutex_release(struct lh_own *o) {
  lua_settop(o->L, 0); /* the stack only: what mod_lua's reslist does */
  pthread_mutex_lock(&mx_mu);
  o->next = mx_idle;
  mx_idle = o;
  pthread_cond_signal(&mx_cv);
  pthread_mutex_unlock(&mx_mu);
}

/* ---- the host functions ------------------------------------------------------------------------
 */

static struct lh_request *request_of(lua_State *L) {
  struct lh_request *r = is_luapool() ? luapool_context(L) : own_of(L)->req;
  if (r == NULL)
    luaL_error(L, "req: no request"); /* e.g. called from a __gc during a reset */
  return r;
}

static int host_method(lua_State *L) {
  lua_pushstring(L, request_of(L)->method);
  return 1;
}

static int host_path(lua_State *L) {
  lua_pushstring(L, request_of(L)->url);
  return 1;
}

static int host_lookup(lua_State *L, enum MHD_ValueKind kind) {
  struct lh_request *r = request_of(L);
  const char *v = MHD_lookup_connection_value(r->conn, kind, luaL_checkstring(L, 1));
  if (v == NULL)
    lua_pushnil(L);
  else
    lua_pushstring(L, v);
  return 1;
}

static int host_query(lua_State *L) {
  return host_lookup(L, MHD_GET_ARGUMENT_KIND);
}
static int host_header(lua_State *L) {
  return host_lookup(L, MHD_HEADER_KIND);
}

static int host_body(lua_State *L) {
  struct lh_request *r = request_of(L);
  lua_pushlstring(L, r->body != NULL ? r->body : "", r->body_len);
  return 1;
}

/* The global table req (see the handler contract in luahttpd.c). */
static int register_host(lua_State *L) {
  static const luaL_Reg fns[] = {{"method", host_method}, {"path", host_path},
                                 {"query", host_query},   {"header", host_header},
                                 {"body", host_body},     {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setglobal(L, "req");
  return 0;
}

/* The luapool strategies' on_create: the host functions, and the version's handler compiled
   once to refuse a broken one (luapool_reload then keeps the old generation).  ud is the
   version, kept allocated until lh_destroy. */
static int on_create(lua_State *L, void *ud) {
  const struct lh_gen *g = ud;
  register_host(L);
  if (luaL_loadbufferx(L, g->src, g->len, "=handler", "t") != LUA_OK)
    return 1; /* the message is on the stack */
  lua_pop(L, 1);
  return 0;
}

/* ---- versions of the script --------------------------------------------------------------------
 */

static struct lh_gen *gen_read(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    lh_log("cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  struct lh_gen *g = calloc(1, sizeof *g);
  size_t cap = 4096;
  char *buf = malloc(cap);
  size_t len = 0, n;
  while (g != NULL && buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      char *b = realloc(buf, cap * 2);
      if (b == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = b;
      cap *= 2;
    }
  }
  bool bad = ferror(f) != 0;
  fclose(f);
  if (g == NULL || buf == NULL || bad) {
    lh_log("cannot read %s", path);
    free(g);
    free(buf);
    return NULL;
  }
  g->src = buf;
  g->len = len;
  return g;
}

/* Compiles g on a scratch state: a script that does not compile is never served. */
static bool gen_compiles(const struct lh_gen *g, const char *path) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return false;
  bool ok = luaL_loadbufferx(L, g->src, g->len, "=handler", "t") == LUA_OK;
  if (!ok)
    lh_log("%s does not compile: %s", path, lua_tostring(L, -1));
  lua_close(L);
  return ok;
}

static void gen_free(struct lh_gen *g) {
  if (g != NULL)
    free(g->src);
  free(g);
}

static void gen_publish(struct lh_gen *g) {
  g->next = gens;
  gens = g;
  atomic_store_explicit(&current, g, memory_order_release); /* see current */
}

int lh_reload(const char *script_path) {
  struct lh_gen *g = gen_read(script_path);
  if (g == NULL || !gen_compiles(g, script_path)) {
    gen_free(g);
    lh_log("reload refused: the old script keeps serving");
    return -1;
  }
  if (is_luapool()) {
    uint64_t generation;
    /* ETIMEDOUT: max_states states are live and all checked out, no room for the new
       generation's first state: retry after a release, for a while. */
    int rc;
    uint64_t until = now_ms() + 5000;
    while ((rc = luapool_reload(pool, on_create, g, &generation)) == LUAPOOL_ETIMEDOUT &&
           now_ms() < until) {
      const struct timespec pause = {0, 10 * 1000000L};
      nanosleep(&pause, NULL);
    }
    if (rc != LUAPOOL_OK) {
      gen_free(g);
      lh_log("reload refused (%s): the old script keeps serving", luapool_strerror(rc));
      return -1;
    }
    gen_publish(g);
    lh_log("reloaded %s: generation %llu", script_path, (unsigned long long)generation);
  } else {
    gen_publish(g); /* each state compiles the new version at its next request */
    lh_log("reloaded %s", script_path);
  }
  return 0;
}

/* ---- the interface -----------------------------------------------------------------------------
 */

int lh_init(const struct lh_settings *s, const char *script_path) {
  cfg = *s;
  struct lh_gen *g = gen_read(script_path);
  if (g == NULL || !gen_compiles(g, script_path)) {
    gen_free(g);
    return LUAPOOL_EINIT;
  }
  gen_publish(g);
  if (is_luapool()) {
    luapool_config pc;
    luapool_config_init(&pc);
    pc.libs = cfg.strategy == LH_LUAPOOL_ALL ? LUAPOOL_LIBS_ALL : LUAPOOL_LIBS_SAFE;
    pc.max_states = cfg.max_states;
    pc.min_idle = cfg.min_idle;
    if (pc.max_idle < cfg.min_idle)
      pc.max_idle = cfg.min_idle;
    pc.mem_limit = cfg.mem_limit;
    pc.budget_ms = cfg.budget_ms;
    pc.budget_instructions = cfg.budget_instructions;
    pc.on_create = on_create;
    pc.on_create_ud = g;
    int rc = luapool_create(&pc, &pool);
    if (rc != LUAPOOL_OK) {
      lh_log("luapool_create: %s", luapool_strerror(rc));
      return rc;
    }
  } else if (cfg.strategy == LH_PINNED) {
    if (pthread_key_create(&pinned_key, pinned_free) != 0)
      return LUAPOOL_ENOMEM;
  } else if (cfg.strategy == LH_MUTEX) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mx_cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  return LUAPOOL_OK;
}

luapool *lh_pool(void) {
  return pool;
}

/* A held state's per-request start: the hand-made budget's counters (the luapool strategies
   have theirs from the acquire). */
static void own_begin(struct lh_own *o) {
  o->req = NULL;
  o->mem_hit = false;
  o->stop = 0;
  o->count = 0;
  o->deadline_ms = cfg.budget_ms != 0 ? now_ms() + cfg.budget_ms : 0;
  atomic_store_explicit(&o->interrupted, false, memory_order_relaxed); /* see interrupted */
}

int lh_acquire(long timeout_ms, struct lh_slot *slot) {
  slot->own = NULL;
  slot->L = NULL;
  if (is_luapool())
    return luapool_acquire(pool, timeout_ms, &slot->L);
  struct lh_own *o = NULL;
  int rc = LUAPOOL_OK;
  switch (cfg.strategy) {
  case LH_FRESH:
    o = own_new();
    break;
  case LH_PINNED:
    o = pthread_getspecific(pinned_key);
    if (o == NULL && (o = own_new()) != NULL && pthread_setspecific(pinned_key, o) != 0) {
      own_free(o);
      o = NULL;
    }
    break;
  default:
    rc = mutex_acquire(timeout_ms, &o);
  }
  if (rc == LUAPOOL_OK && o == NULL)
    rc = LUAPOOL_ENOMEM;
  if (rc != LUAPOOL_OK)
    return rc;
  own_begin(o);
  slot->own = o;
  slot->L = o->L;
  return LUAPOOL_OK;
}

int lh_acquire_async(luapool_notifier *n, struct lh_slot *slot) {
  slot->own = NULL;
  slot->L = NULL;
  return luapool_acquire_async(n, &slot->L);
}

void lh_release(struct lh_slot *slot) {
  if (slot->own == NULL) {
    luapool_release(pool, slot->L); /* the reset: the next request sees nothing of this one */
    return;
  }
  struct lh_own *o = slot->own;
  o->req = NULL;
  switch (cfg.strategy) {
  case LH_FRESH:
    own_free(o);
    break;
  case LH_PINNED:
    lua_settop(o->L, 0); /* never reset: globals stay for the thread's next request */
    break;
  default:
    mutex_release(o);
  }
}

void lh_interrupt(const struct lh_slot *slot) {
  if (slot->own == NULL)
    luapool_interrupt(slot->L);
  else
    atomic_store_explicit(&slot->own->interrupted, true, memory_order_relaxed);
}

static int slot_status(const struct lh_slot *slot) {
  if (slot->own == NULL)
    return luapool_status(slot->L);
  if (slot->own->stop != 0)
    return slot->own->stop;
  return slot->own->mem_hit ? LUAPOOL_STATUS_MEMORY : LUAPOOL_STATUS_OK;
}

static void answer_text(struct lh_answer *a, unsigned status, const char *text) {
  a->status = status;
  a->body = strdup(text);
  a->body_len = a->body != NULL ? strlen(text) : 0;
}

void lh_answer_free(struct lh_answer *a) {
  for (size_t i = 0; i < 2 * a->nheaders; i++)
    free(a->headers[i]);
  free(a->headers);
  free(a->body);
  memset(a, 0, sizeof *a);
}

/* The handler's three results (at -3, -2, -1) into a; false: they break the contract. */
static bool take_results(lua_State *L, struct lh_answer *a) {
  int isnum;
  lua_Integer status = lua_tointegerx(L, -3, &isnum);
  if (!isnum || lua_type(L, -3) != LUA_TNUMBER || status < 100 || status > 599)
    return false;
  a->status = (unsigned)status;
  if (lua_type(L, -2) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -2, &len);
    if (len > 0 && (a->body = malloc(len)) == NULL)
      return false;
    if (len > 0)
      memcpy(a->body, s, len);
    a->body_len = len;
  } else if (!lua_isnil(L, -2)) {
    return false;
  }
  if (lua_isnil(L, -1))
    return true;
  if (!lua_istable(L, -1))
    return false;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) { /* raw: no metamethod of the script runs here */
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      return false;
    char **h = realloc(a->headers, (a->nheaders + 1) * 2 * sizeof *h);
    if (h == NULL)
      return false;
    a->headers = h;
    h[2 * a->nheaders] = strdup(lua_tostring(L, -2));
    h[2 * a->nheaders + 1] = strdup(lua_tostring(L, -1));
    a->nheaders++;
    if (h[2 * a->nheaders - 2] == NULL || h[2 * a->nheaders - 1] == NULL)
      return false;
    lua_pop(L, 1);
  }
  return true;
}

void lh_run(struct lh_slot *slot, struct lh_request *r, struct lh_answer *a) {
  lua_State *L = slot->L;
  memset(a, 0, sizeof *a);
  const struct lh_gen *g = atomic_load_explicit(&current, memory_order_acquire); /* see current */
  int rc;
  if (slot->own == NULL) {
    luapool_set_context(L, r); /* until the release */
    rc = luapool_load(L, "=handler", g->src, g->len);
  } else {
    slot->own->req = r;
    rc = own_load(slot->own, g);
  }
  if (rc == LUA_OK)
    rc = lua_pcall(L, 0, 3, 0);
  if (rc == LUA_OK) {
    if (!take_results(L, a)) {
      lh_answer_free(a);
      if (!cfg.quiet)
        lh_log("%s %s: the handler's results break the contract", r->method, r->url);
      answer_text(a, 500, "script error");
    }
    lua_settop(L, 0);
    return;
  }
  int why = slot_status(slot);
  const char *text;
  unsigned status = 500;
  switch (why) {
  case LUAPOOL_STATUS_INSTRUCTIONS:
  case LUAPOOL_STATUS_TIME:
    status = 503;
    text = "budget";
    break;
  case LUAPOOL_STATUS_INTERRUPTED:
    status = 503;
    text = "interrupted";
    break;
  case LUAPOOL_STATUS_MEMORY:
    text = "memory limit";
    break;
  default:
    text = rc == LUA_ERRMEM ? "memory limit" : "script error";
  }
  if (!cfg.quiet) {
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)";
    lh_log("%s %s: %s: %s", r->method, r->url, text, msg);
  }
  lua_settop(L, 0);
  answer_text(a, status, text);
}

char *lh_metrics(size_t *len) {
  if (pool == NULL)
    return NULL;
  size_t cap = 8192;
  for (;;) {
    char *buf = malloc(cap);
    if (buf == NULL)
      return NULL;
    long need = luapool_stats_prometheus(pool, NULL, buf, cap);
    if (need < 0) {
      free(buf);
      return NULL;
    }
    if ((size_t)need < cap) {
      *len = (size_t)need;
      return buf;
    }
    free(buf);
    cap = (size_t)need + 256; /* the counters may grow meanwhile */
  }
}

int lh_shutdown(long drain_ms) {
  return pool != NULL ? luapool_shutdown(pool, drain_ms) : LUAPOOL_OK;
}

void lh_destroy(void) {
  if (pool != NULL)
    luapool_destroy(pool);
  pool = NULL;
  if (cfg.strategy == LH_PINNED)
    pthread_key_delete(pinned_key); /* the server threads are gone: each closed its state */
  if (cfg.strategy == LH_MUTEX) {
    while (mx_idle != NULL) {
      struct lh_own *o = mx_idle;
      mx_idle = o->next;
      own_free(o);
    }
    pthread_cond_destroy(&mx_cv);
  }
  while (gens != NULL) {
    struct lh_gen *g = gens;
    gens = g->next;
    gen_free(g);
  }
}
