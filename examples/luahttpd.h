/*
** luahttpd's two halves: luahttpd.c (libmicrohttpd, the options, the signals, the monitor of
** disconnected clients, the event-loop model) and luahttpd_lua.c (the Lua states behind one
** interface for every --strategy, the host functions, running the handler, hot reload).
*/
#ifndef LUAHTTPD_H
#define LUAHTTPD_H

#include <lua.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "luapool.h"

#define LH_BODY_MAX (1024u * 1024u) /* an upload beyond this is answered 413 */

/* What the states are (--strategy). */
enum lh_strategy {
  LH_LUAPOOL,     /* luapool, the default sandbox (LUAPOOL_LIBS_SAFE), full reset */
  LH_LUAPOOL_ALL, /* luapool, LUAPOOL_LIBS_ALL, full reset */
  LH_MUTEX,       /* a mutex-protected list of stock states, stack-only reset (apr_reslist) */
  LH_FRESH,       /* a new stock state per request, closed after it */
  LH_PINNED       /* one stock state per server thread, never reset */
};

struct lh_settings {
  enum lh_strategy strategy;
  unsigned max_states; /* 0: none (luapool), unbounded (mutex) */
  unsigned min_idle;
  size_t mem_limit; /* bytes; 0 = none */
  unsigned budget_ms;
  uint64_t budget_instructions;
  bool quiet; /* no log line per failed request */
};

/* One HTTP request: MHD's con_cls, from the first call of the access handler to the completed
   callback.  method and url are MHD's, valid for as long. */
struct lh_request {
  struct MHD_Connection *conn;
  const char *method, *url;
  char *body; /* the upload, at most LH_BODY_MAX bytes */
  size_t body_len, body_cap;
  bool too_large;
  /* the event-loop model's bookkeeping (luahttpd.c), under its mutex */
  struct lh_loop *loop;     /* the worker whose queue holds it, or NULL */
  struct lh_request *qnext; /* in that queue */
  bool queued, timed_out;   /* waiting for a state; waited past --acquire-timeout-ms */
  bool resumed;             /* MHD_resume_connection called, the handler not yet back */
  uint64_t deadline_ms;     /* when queued: give up then */
};

/* A state held for one request, whatever the strategy. */
struct lh_slot {
  lua_State *L;
  struct lh_own *own; /* the non-luapool strategies' record of the state, else NULL */
};

/* The handler's answer, ready to become an MHD response. */
struct lh_answer {
  unsigned status;
  char *body; /* malloc'd (or NULL for empty) */
  size_t body_len;
  char **headers; /* malloc'd name, value pairs */
  size_t nheaders;
};

int lh_init(const struct lh_settings *s, const char *script_path);
/* LUAPOOL_OK, LUAPOOL_ETIMEDOUT (no state in time), LUAPOOL_ECLOSED, or another error. */
int lh_acquire(long timeout_ms, struct lh_slot *slot);
/* luapool strategies only: as luapool_acquire_async. */
int lh_acquire_async(luapool_notifier *n, struct lh_slot *slot);
/* Runs the handler for r on the held state and fills a (never fails: errors become a 5xx). */
void lh_run(struct lh_slot *slot, struct lh_request *r, struct lh_answer *a);
void lh_release(struct lh_slot *slot);
/* Stops the request on slot at its next check; any thread, while the slot is held. */
void lh_interrupt(const struct lh_slot *slot);
/* Re-reads the script; 0 when the new one serves, -1 (logged) when the old one keeps serving. */
int lh_reload(const char *script_path);
/* The /metrics text (malloc'd), or NULL when the strategy has none. */
char *lh_metrics(size_t *len);
luapool *lh_pool(void); /* the pool, or NULL for the non-luapool strategies */
int lh_shutdown(long drain_ms);
void lh_destroy(void);
void lh_answer_free(struct lh_answer *a);
void lh_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
