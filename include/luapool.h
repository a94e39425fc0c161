/*
** luapool: a pool of Lua 5.4 interpreter states for multi-threaded servers.
**
** One thread acquires a state, runs a request on it, and releases it; the pool resets the state
** and hands it to the next caller.  Idle states live in small per-thread magazines and a
** lock-free global free list; a watchdog thread closes surplus states and keeps spares ready.
** See luapool(3) for the overview and doc/design.md for how it works.
*/
#ifndef LUAPOOL_H
#define LUAPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct luapool luapool; /* opaque */
typedef struct luapool_notifier luapool_notifier; /* opaque: one per event loop (its thread) */

/* Error codes: every function that can fail returns one of these (never exits the process). */
enum {
  LUAPOOL_OK = 0,
  LUAPOOL_ETIMEDOUT = -1, /* no state became free in time (or the drain did not finish) */
  LUAPOOL_ECLOSED = -2,   /* the pool is shut down */
  LUAPOOL_ENOMEM = -3,    /* an allocation failed */
  LUAPOOL_EINVAL = -4,    /* a bad argument or configuration */
  LUAPOOL_EINIT = -5,     /* creating a state failed: a library or on_create raised an error */
  LUAPOOL_EAGAIN = -6     /* luapool_acquire_async: no state now; the notifier's descriptor
                             becomes readable when one may be */
};

/* Standard libraries a state opens (luapool_config.libs). */
enum {
  LUAPOOL_LIB_BASE = 1 << 0,
  LUAPOOL_LIB_PACKAGE = 1 << 1,
  LUAPOOL_LIB_COROUTINE = 1 << 2,
  LUAPOOL_LIB_TABLE = 1 << 3,
  LUAPOOL_LIB_IO = 1 << 4,
  LUAPOOL_LIB_OS = 1 << 5,
  LUAPOOL_LIB_STRING = 1 << 6,
  LUAPOOL_LIB_MATH = 1 << 7,
  LUAPOOL_LIB_UTF8 = 1 << 8,
  LUAPOOL_LIB_DEBUG = 1 << 9,
  LUAPOOL_LIB_OS_TIME = 1 << 10, /* os.clock, os.time, os.date and os.difftime only */
  LUAPOOL_LIB_SANDBOX = 1 << 11, /* the sandbox: read-only libraries, text-only load, no __gc,
                                    require of preloaded modules only (luapool_config_init(3)) */
  LUAPOOL_LIBS_SAFE = LUAPOOL_LIB_BASE | LUAPOOL_LIB_COROUTINE | LUAPOOL_LIB_TABLE |
                      LUAPOOL_LIB_STRING | LUAPOOL_LIB_MATH | LUAPOOL_LIB_UTF8 |
                      LUAPOOL_LIB_SANDBOX,
  LUAPOOL_LIBS_ALL = LUAPOOL_LIB_BASE | LUAPOOL_LIB_PACKAGE | LUAPOOL_LIB_COROUTINE |
                     LUAPOOL_LIB_TABLE | LUAPOOL_LIB_IO | LUAPOOL_LIB_OS | LUAPOOL_LIB_STRING |
                     LUAPOOL_LIB_MATH | LUAPOOL_LIB_UTF8 | LUAPOOL_LIB_DEBUG
};

/* What luapool_release does to a state before the next caller gets it (luapool_config.reset). */
enum {
  LUAPOOL_RESET_FULL = 0, /* as clean as a new state: see "What reset guarantees" in luapool(3) */
  LUAPOOL_RESET_STACK = 1 /* empty the stack only: the caller vouches for the rest */
};

/* Severity passed to luapool_config.log. */
enum { LUAPOOL_LOG_ERROR = 0, LUAPOOL_LOG_WARN = 1 };

/* Why a state was closed: luapool_config.on_state's reason, and the stats that count each. */
enum {
  LUAPOOL_CLOSE_TRIMMED = 1,  /* idle beyond max_idle */
  LUAPOOL_CLOSE_IDLE_TIMEOUT, /* idle longer than idle_timeout_ms */
  LUAPOOL_CLOSE_MAX_USES,     /* served max_uses acquires */
  LUAPOOL_CLOSE_LIFETIME,     /* older than max_lifetime_ms (with jitter) */
  LUAPOOL_CLOSE_BLOAT,        /* idle, heap above bloat_kb after a full collection */
  LUAPOOL_CLOSE_TAINTED,      /* reset could not restore it */
  LUAPOOL_CLOSE_DISCARDED,    /* luapool_discard */
  LUAPOOL_CLOSE_SHUTDOWN,     /* luapool_shutdown, a release after it, or luapool_destroy */
  LUAPOOL_CLOSE_RECYCLED,     /* idle, its heap once grew recycle_kb above what it keeps: a
                                 fresh state takes its place (luapool_maintain(3)) */
  LUAPOOL_CLOSE_RELOADED      /* made by an older generation than luapool_reload's latest */
};

/* Why a request stopped, or which limit it ran into (luapool_status). */
enum {
  LUAPOOL_STATUS_OK = 0,           /* none */
  LUAPOOL_STATUS_INSTRUCTIONS = 1, /* the instruction budget ran out */
  LUAPOOL_STATUS_TIME = 2,         /* the time budget ran out */
  LUAPOOL_STATUS_MEMORY = 3,       /* an allocation was refused for mem_limit */
  LUAPOOL_STATUS_INTERRUPTED = 4   /* luapool_interrupt */
};

/* luapool_config.on_state's event. */
enum { LUAPOOL_STATE_CREATED = 1, LUAPOOL_STATE_CLOSED = 2 };

/* luapool_config.version as set by luapool_config_init. */
#define LUAPOOL_CONFIG_VERSION 1u

/*
** Pool configuration.  Always start from luapool_config_init(), then change the fields you need:
** luapool_create refuses (LUAPOOL_EINVAL) a struct whose version luapool_config_init did not
** set.  The struct has a fixed size (reserved space at the end): later versions of the library
** take new fields from the reserved space and luapool_config_init gives them their defaults, so
** a binary built against this header keeps working with a newer library.
*/
typedef struct luapool_config {
  unsigned version;              /* LUAPOOL_CONFIG_VERSION; set by luapool_config_init */
  unsigned max_states;           /* hard cap on live states; acquire waits beyond it; 0 = none */
  unsigned max_idle;             /* the watchdog closes idle states beyond this many */
  unsigned min_idle;             /* made ready at create, kept by the watchdog */
  unsigned magazine_size;        /* idle states each thread caches; 0 = no per-thread cache */
  unsigned watchdog_interval_ms; /* 0 = no watchdog thread: call luapool_maintain yourself */
  unsigned libs;                 /* LUAPOOL_LIB_* bits; default LUAPOOL_LIBS_SAFE */
  unsigned reset;                /* LUAPOOL_RESET_FULL (default) or LUAPOOL_RESET_STACK */
  int (*on_create)(lua_State *L, void *ud); /* after the libraries: preload modules, host
                                               functions; nonzero fails that creation */
  void *on_create_ud;
  void (*log)(void *ud, int level, const char *msg); /* NULL: "luapool: msg" on stderr */
  void *log_ud;

  /* Upkeep by the watchdog (luapool_maintain(3)); 0 turns each rule off. */
  unsigned idle_timeout_ms;  /* close states idle this long (not below min_idle); 60000 */
  unsigned max_uses;         /* close a state after this many acquires; 0 */
  unsigned max_lifetime_ms;  /* close a state this old, minus up to 10% jitter; 0 */
  unsigned bloat_kb;         /* close an idle state whose heap stays above this after a full
                                collection; 8192 */
  unsigned gc_per_pass;      /* idle states a pass collects at most (background GC); 32 */
  unsigned recycle_kb;       /* replace a collected idle state whose heap once grew this far
                                above what it keeps, so the memory goes back; 1024 */
  void (*on_state)(void *ud, int event, int reason, lua_State *L); /* each create (reason 0)
                                and close (LUAPOOL_CLOSE_*), on the thread that does it */
  void *on_state_ud;
  uint64_t (*clock_ms)(void *ud); /* the upkeep's clock in ms; NULL: CLOCK_MONOTONIC */
  void *clock_ud;

  /* Limits on what one request may use (luapool_set_budget(3)); 0 turns each off. */
  size_t mem_limit;             /* bytes of Lua heap per state; 64 MiB */
  uint64_t budget_instructions; /* VM instructions per acquire; 0 */
  unsigned budget_ms;           /* wall-clock ms per acquire; 0 */
  unsigned chunk_cache;         /* chunks luapool_load keeps compiled per state; 32 */

  unsigned held_warn_ms; /* the watchdog logs (once per acquire) and counts a state held this
                            long (held_too_long); 0 = off, the default */
  unsigned stack_limit;  /* slots a thread's stack may grow to: bounds recursion and what one
                            call can do with the stack (a __call chain); 0 = Lua's own
                            (1,000,000); 16384, at least 1024 */
  void *reserved[13];    /* room for the fields of later versions; leave zero */
} luapool_config;

/*
** Counters since luapool_create.  A snapshot: each counter is exact once the pool is quiet, and
** may lag by the operations in flight while threads are working.
*/
typedef struct luapool_stats {
  uint64_t created;       /* states created */
  uint64_t closed;        /* states closed, for any reason */
  uint64_t acquires;      /* successful luapool_acquire calls */
  uint64_t releases;      /* luapool_release calls accepted */
  uint64_t magazine_hits; /* acquires served from the calling thread's magazine */
  uint64_t global_hits;   /* acquires served from the global free list */
  uint64_t misses;        /* acquires served otherwise: a new state, one taken from another
                             thread's magazine, or one that came after waiting */
  uint64_t waits;         /* acquires that had to sleep */
  uint64_t timeouts;      /* acquires that returned LUAPOOL_ETIMEDOUT */
  uint64_t trimmed;       /* idle states the watchdog closed to keep max_idle */
  uint64_t discarded;     /* states closed through luapool_discard */
  uint64_t tainted;       /* states closed because reset could not restore them */
  unsigned live;          /* created - closed */
  unsigned idle;          /* held by no caller (in magazines or the global list) */
  unsigned in_use;        /* live - idle */
  unsigned reserved_u;    /* padding */
  uint64_t expired_idle;     /* closed after idle_timeout_ms */
  uint64_t expired_uses;     /* closed after max_uses acquires */
  uint64_t expired_lifetime; /* closed after max_lifetime_ms */
  uint64_t bloated;          /* closed for bloat_kb */
  uint64_t shutdown_closed;  /* closed by shutdown or destroy, or released after shutdown */
  uint64_t collections;      /* full collections the watchdog ran on idle states */
  uint64_t reclaimed;        /* states taken from quiet threads' magazines to the global list */
  uint64_t passes;           /* maintenance passes run */
  uint64_t pass_ns_total;    /* their time, summed */
  uint64_t pass_ns_max;      /* the longest one */
  uint64_t pass_ns_last;     /* the latest one */
  uint64_t mem_errors;       /* acquires in which an allocation hit mem_limit */
  uint64_t budget_exceeded;  /* acquires whose budget ran out */
  uint64_t restored;         /* releases whose reset found and undid a change */
  uint64_t cache_hits;       /* luapool_load calls served by the chunk cache */
  uint64_t cache_misses;     /* luapool_load calls that compiled */
  uint64_t recycled;         /* replaced for recycle_kb */
  uint64_t interrupted;      /* acquires luapool_interrupt stopped */
  uint64_t held_too_long;    /* acquires the watchdog saw held for held_warn_ms or longer */
  uint64_t heap_bytes;       /* the Lua heaps of the live states, summed, as last measured */
  uint64_t heap_max;         /* the largest Lua heap a state reached, as seen at a release */
  uint64_t reloads;          /* luapool_reload calls that started a generation */
  uint64_t reload_closed;    /* states closed for an older generation (LUAPOOL_CLOSE_RELOADED) */
  uint64_t generation;       /* the current generation: 1 until the first reload */
  uint64_t async_notified;   /* wake-ups sent to notifiers (luapool_acquire_async) */
  uint64_t reserved[2];      /* room for the counters of later versions */
} luapool_stats;

/*
** How long luapool_acquire took (luapool_wait_histogram_get(3)).  Bucket i counts the acquires
** whose time was at most le_ns[i] and above le_ns[i - 1]: not cumulative.  le_ns[i] is 4 us
** times 2^i (4 us to about 1.05 s), the last UINT64_MAX.  A magazine hit is not timed: it is in
** bucket 0.
*/
#define LUAPOOL_WAIT_BUCKETS 20
typedef struct luapool_wait_histogram {
  uint64_t count[LUAPOOL_WAIT_BUCKETS]; /* acquires in bucket i only */
  uint64_t le_ns[LUAPOOL_WAIT_BUCKETS]; /* upper bounds, ns; the last is UINT64_MAX */
  uint64_t sum_ns;                      /* the time of the timed (slow-path) acquires, summed */
  uint64_t total;                       /* acquires counted: successful and timed out */
} luapool_wait_histogram;

void luapool_config_init(luapool_config *cfg);
int luapool_create(const luapool_config *cfg, luapool **out);
int luapool_acquire(luapool *p, long timeout_ms, lua_State **out); /* 0: try; < 0: no limit */
void luapool_release(luapool *p, lua_State *L); /* reset, then keep for reuse (or close) */
void luapool_discard(luapool *p, lua_State *L); /* close it: the caller knows it is spoiled */
void luapool_stats_get(luapool *p, luapool_stats *out);
int luapool_wait_histogram_get(luapool *p, luapool_wait_histogram *out);
/* The stats and the histogram in Prometheus's text format (0.0.4), snprintf-style: returns the
   length the whole text needs (without the NUL), or a negative LUAPOOL_E* code.  prefix: the
   metric names' prefix, NULL for "luapool". */
long luapool_stats_prometheus(luapool *p, const char *prefix, char *buf, size_t len);
int luapool_maintain(luapool *p); /* one watchdog pass now, on the calling thread */
int luapool_shutdown(luapool *p, long drain_timeout_ms); /* < 0: no limit */
void luapool_destroy(luapool *p);
const char *luapool_strerror(int err);

/*
** Acquiring from an event loop (epoll, libuv): a notifier per loop thread, whose descriptor the
** loop polls for readability; luapool_notifier_open(3).  A notifier is used by one thread at a
** time.  Close every notifier before luapool_destroy.
*/
int luapool_notifier_open(luapool *p, luapool_notifier **out); /* an eventfd, non-blocking */
int luapool_notifier_fd(const luapool_notifier *n);            /* poll it for POLLIN/EPOLLIN */
int luapool_acquire_async(luapool_notifier *n, lua_State **out); /* LUAPOOL_EAGAIN: registered;
                 call again once the descriptor is readable (it reads the descriptor itself) */
void luapool_notifier_cancel(luapool_notifier *n); /* wants no state any more: unregisters, and
                 a wake-up sent to n and not consumed goes on to another waiter */
void luapool_notifier_close(luapool_notifier *n);  /* cancel, close the descriptor, free */

/* For a state between luapool_acquire and luapool_release (any of its threads). */
int luapool_set_budget(lua_State *L, uint64_t instructions, unsigned ms); /* from now; 0 = none */
int luapool_load(lua_State *L, const char *name, const char *src, size_t len); /* as
                 luaL_loadbufferx(L, src, len, name, "t"), compiled once per state */
int luapool_status(lua_State *L); /* LUAPOOL_STATUS_*: why this acquire's request stopped */
/* Any thread, while L is checked out: stops its request at the next check, uncatchably. */
int luapool_interrupt(lua_State *L);
/* The host's pointer for this acquire (the request, the tenant), for host functions to find;
   cleared when the state is released or discarded.  L may be any thread of the state. */
int luapool_set_context(lua_State *L, void *ctx); /* LUAPOOL_EINVAL: not checked out */
void *luapool_context(lua_State *L);              /* NULL: none, or not checked out */

/* From on_create only: a module loaded once per state, kept across resets (luapool_module(3)).
   reset, if not NULL, puts back what the module keeps out of Lua's sight, after every request. */
int luapool_module(lua_State *L, const char *name, lua_CFunction open, lua_CFunction reset);
int luapool_module_source(lua_State *L, const char *name, const char *src, size_t len);

/*
** Hot reload: a new generation of states.  From its return no acquire gets a state made by an
** older generation; on_create NULL keeps the current on_create and its ud.  The new on_create
** runs once before the switch: if it fails, LUAPOOL_EINIT and nothing changes.
*/
int luapool_reload(luapool *p, int (*on_create)(lua_State *L, void *ud), void *ud,
                   uint64_t *generation);
uint64_t luapool_generation(luapool *p); /* the current generation (1 at create); 0 for NULL */

#ifdef __cplusplus
}
#endif

#endif /* LUAPOOL_H */
