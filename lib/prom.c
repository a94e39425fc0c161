/*
** prom.c: luapool_stats_prometheus, the stats and the wait histogram in Prometheus's text
** exposition format (version 0.0.4), written the way snprintf writes: the text is cut to the
** buffer and the length of the whole is returned, so a caller can retry with a bigger one.
**
** The metrics are a table over luapool_stats (rows), one row a field: a new field of the stats is
** exported by adding its row.  Every value comes from one reading of the counters (lp_stats_read),
** so the histogram's _count and the acquires and timeouts agree within one text.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "base.h"
#include "internal.h"
#include "stats.h"

enum { LP_PROM_COUNTER, LP_PROM_GAUGE };

typedef struct lp_prom_row {
  const char *name; /* after "<prefix>_"; a counter's ends in _total */
  int type;         /* LP_PROM_COUNTER or LP_PROM_GAUGE */
  bool seconds;     /* the field is in nanoseconds: written in seconds, Prometheus's unit */
  size_t offset;    /* offsetof(luapool_stats, field) */
  size_t size;      /* sizeof the field: sizeof(unsigned) or sizeof(uint64_t) */
  const char *help; /* one line, no backslash (the format would want it escaped) */
} lp_prom_row;

#define LP_PROM_FIELD(f) offsetof(luapool_stats, f), sizeof(((luapool_stats *)0)->f)
#define LP_PROM_C(name, f, help)                                                                   \
  { name, LP_PROM_COUNTER, false, LP_PROM_FIELD(f), help }
#define LP_PROM_G(name, f, help)                                                                   \
  { name, LP_PROM_GAUGE, false, LP_PROM_FIELD(f), help }

/* Every field of luapool_stats but the padding and the reserved space, in its order. */
static const lp_prom_row rows[] = {
    LP_PROM_C("created_total", created, "States created."),
    LP_PROM_C("closed_total", closed, "States closed, for any reason."),
    LP_PROM_C("acquires_total", acquires, "Successful luapool_acquire calls."),
    LP_PROM_C("releases_total", releases, "luapool_release calls accepted."),
    LP_PROM_C("magazine_hits_total", magazine_hits,
              "Acquires served from the calling thread's magazine."),
    LP_PROM_C("global_hits_total", global_hits, "Acquires served from the global free list."),
    LP_PROM_C("misses_total", misses,
              "Acquires served otherwise: a new state, another thread's magazine, after a wait."),
    LP_PROM_C("waits_total", waits, "Acquires that had to sleep."),
    LP_PROM_C("timeouts_total", timeouts, "Acquires that returned LUAPOOL_ETIMEDOUT."),
    LP_PROM_C("trimmed_total", trimmed, "Idle states closed to keep max_idle."),
    LP_PROM_C("discarded_total", discarded, "States closed through luapool_discard."),
    LP_PROM_C("tainted_total", tainted, "States closed because the reset could not restore them."),
    LP_PROM_G("live", live, "States that exist: created - closed."),
    LP_PROM_G("idle", idle, "States held by no caller (magazines, global free list)."),
    LP_PROM_G("in_use", in_use, "States checked out: live - idle."),
    LP_PROM_C("expired_idle_total", expired_idle, "States closed after idle_timeout_ms."),
    LP_PROM_C("expired_uses_total", expired_uses, "States closed after max_uses acquires."),
    LP_PROM_C("expired_lifetime_total", expired_lifetime, "States closed after max_lifetime_ms."),
    LP_PROM_C("bloated_total", bloated, "Idle states closed for bloat_kb."),
    LP_PROM_C("shutdown_closed_total", shutdown_closed,
              "States closed by shutdown or destroy, or released after shutdown."),
    LP_PROM_C("collections_total", collections,
              "Full collections the watchdog ran on idle states."),
    LP_PROM_C("reclaimed_total", reclaimed,
              "States moved from quiet threads' magazines to the global free list."),
    LP_PROM_C("passes_total", passes, "Maintenance passes run."),
    {"pass_seconds_total", LP_PROM_COUNTER, true, LP_PROM_FIELD(pass_ns_total),
     "Time of the maintenance passes, summed."},
    {"pass_seconds_max", LP_PROM_GAUGE, true, LP_PROM_FIELD(pass_ns_max),
     "Time of the longest maintenance pass."},
    {"pass_seconds_last", LP_PROM_GAUGE, true, LP_PROM_FIELD(pass_ns_last),
     "Time of the latest maintenance pass."},
    LP_PROM_C("mem_errors_total", mem_errors, "Acquires in which an allocation hit mem_limit."),
    LP_PROM_C("budget_exceeded_total", budget_exceeded, "Acquires whose budget ran out."),
    LP_PROM_C("restored_total", restored, "Releases whose reset found and undid a change."),
    LP_PROM_C("cache_hits_total", cache_hits, "luapool_load calls served by the chunk cache."),
    LP_PROM_C("cache_misses_total", cache_misses, "luapool_load calls that compiled."),
    LP_PROM_C("recycled_total", recycled, "Idle states replaced for recycle_kb."),
    LP_PROM_C("interrupted_total", interrupted, "Acquires luapool_interrupt stopped."),
    LP_PROM_C("held_too_long_total", held_too_long,
              "Acquires the watchdog saw held for held_warn_ms or longer."),
    LP_PROM_G("heap_bytes", heap_bytes,
              "Lua heaps of the live states, summed, as last measured (bytes)."),
    LP_PROM_G("heap_max_bytes", heap_max,
              "Largest Lua heap a state reached, as seen at a release (bytes)."),
    LP_PROM_C("reloads_total", reloads, "luapool_reload calls that started a generation."),
    LP_PROM_C("reload_closed_total", reload_closed,
              "States closed for an older generation (LUAPOOL_CLOSE_RELOADED)."),
    LP_PROM_G("generation", generation, "The current generation: 1 until the first reload."),
};

/* The text so far: written into buf up to len - 1 bytes, NUL-terminated; need counts it all. */
typedef struct lp_prom_out {
  char *buf;
  size_t len;
  size_t need;
} lp_prom_out;

static void put(lp_prom_out *o, const char *fmt, ...) LP_PRINTF(2, 3);

/*
** vsnprintf at the end of what is written: it cuts at the room left and writes the NUL, and
** returns what it would have written; with no room left it writes nothing and only counts.
*/
static void put(lp_prom_out *o, const char *fmt, ...) {
  size_t room = o->need < o->len ? o->len - o->need : 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(room != 0 ? o->buf + o->need : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->need += (size_t)n;
}

/* ns in seconds, exactly (no floating point): "1.048576000"; trimmed, its trailing zeros go. */
static const char *seconds_text(char text[32], uint64_t ns, bool trimmed) {
  (void)snprintf(text, 32, "%" PRIu64 ".%09" PRIu64, ns / 1000000000U, ns % 1000000000U);
  if (trimmed) {
    char *end = text;
    while (*end != '\0')
      end++;
    while (end[-1] == '0')
      *--end = '\0';
    if (end[-1] == '.')
      end[-1] = '\0';
  }
  return text;
}

static uint64_t field_of(const luapool_stats *st, const lp_prom_row *r) {
  const char *at = (const char *)st + r->offset;
  if (r->size == sizeof(unsigned))
    return *(const unsigned *)(const void *)at;
  return *(const uint64_t *)(const void *)at;
}

static void put_row(lp_prom_out *o, const char *prefix, const lp_prom_row *r,
                    const luapool_stats *st) {
  const char *type = r->type == LP_PROM_COUNTER ? "counter" : "gauge";
  put(o, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", prefix, r->name, r->help, prefix, r->name, type);
  uint64_t v = field_of(st, r);
  if (r->seconds) {
    char text[32];
    put(o, "%s_%s %s\n", prefix, r->name, seconds_text(text, v, false));
  } else {
    put(o, "%s_%s %" PRIu64 "\n", prefix, r->name, v);
  }
}

/*
** Prometheus's buckets are cumulative, luapool's are not (luapool.h).  _count is the +Inf
** bucket, so the two agree even when bucket 0 was clamped at 0 (stats.c).
*/
static void put_histogram(lp_prom_out *o, const char *prefix, const luapool_wait_histogram *h) {
  const char *name = "acquire_wait_seconds";
  put(o,
      "# HELP %s_%s Time spent in luapool_acquire; a magazine hit is not timed and counts in "
      "the first bucket.\n# TYPE %s_%s histogram\n",
      prefix, name, prefix, name);
  uint64_t cumulative = 0;
  char text[32];
  for (int i = 0; i < LUAPOOL_WAIT_BUCKETS; i++) {
    cumulative += h->count[i];
    const char *le = h->le_ns[i] == UINT64_MAX ? "+Inf" : seconds_text(text, h->le_ns[i], true);
    put(o, "%s_%s_bucket{le=\"%s\"} %" PRIu64 "\n", prefix, name, le, cumulative);
  }
  put(o, "%s_%s_sum %s\n", prefix, name, seconds_text(text, h->sum_ns, false));
  put(o, "%s_%s_count %" PRIu64 "\n", prefix, name, cumulative);
}

/* A metric name's form: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool prefix_ok(const char *prefix) {
  for (const char *c = prefix; *c != '\0'; c++) {
    bool letter = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' || *c == ':';
    if (!letter && (c == prefix || *c < '0' || *c > '9'))
      return false;
  }
  return *prefix != '\0';
}

/* What is wrong with the arguments, or NULL. */
static const char *refusal(const luapool *p, const char *prefix, const char *buf, size_t len) {
  if (p == NULL)
    return "NULL pool";
  if (buf == NULL && len != 0)
    return "NULL buf with a nonzero len";
  if (!prefix_ok(prefix))
    return "prefix is no metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)";
  return NULL;
}

long luapool_stats_prometheus(luapool *p, const char *prefix, char *buf, size_t len) {
  if (prefix == NULL)
    prefix = "luapool";
  const char *why = refusal(p, prefix, buf, len);
  if (why != NULL) {
    lp_log(p != NULL ? &p->cfg : NULL, LUAPOOL_LOG_ERROR, "luapool_stats_prometheus: %s (refused)",
           why);
    return LUAPOOL_EINVAL;
  }
  luapool_stats st = {0};
  luapool_wait_histogram h = {{0}, {0}, 0, 0};
  lp_stats_read(p, &st, &h);
  lp_prom_out o = {buf, len, 0};
  if (len != 0)
    buf[0] = '\0';
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    put_row(&o, prefix, &rows[i], &st);
  put_histogram(&o, prefix, &h);
  return (long)o.need;
}
