/*
** warn.c: luapool's warn function (warn.h).
*/
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "warn.h"

static void emit(const lp_warn *w, const char *text) {
  if (w->cfg != NULL && w->cfg->log != NULL)
    lp_log(w->cfg, LUAPOOL_LOG_WARN, "Lua warning: %s", text);
  else
    (void)fprintf(stderr, "Lua warning: %s\n", text);
}

/* The warning in buf, if the request has not used up its LP_WARN_LINES. */
static void flush(lp_warn *w) {
  if (w->lines < LP_WARN_LINES)
    emit(w, w->buf);
  else if (w->lines == LP_WARN_LINES)
    emit(w, "(more warnings in this request dropped)");
  if (w->lines <= LP_WARN_LINES)
    w->lines++;
  w->len = 0;
  w->buf[0] = '\0';
}

static void warn_f(void *ud, const char *msg, int tocont) {
  lp_warn *w = ud;
  if (!w->cont && !tocont && msg[0] == '@') { /* a control message */
    if (strcmp(msg, "@on") == 0)
      w->on = true;
    else if (strcmp(msg, "@off") == 0)
      w->on = false;
    return;
  }
  w->cont = tocont != 0;
  if (!w->on)
    return;
  /* Reads no further than the room (a longer piece is cut): a piece can be a string of mem_limit
     bytes, and strlen would be work in proportion to it inside one budgeted call. */
  size_t room = sizeof w->buf - 1 - w->len;
  const char *end = memchr(msg, '\0', room);
  size_t n = end != NULL ? (size_t)(end - msg) : room;
  memcpy(w->buf + w->len, msg, n);
  w->len += n;
  w->buf[w->len] = '\0';
  if (!tocont)
    flush(w);
}

void lp_warn_open(lua_State *L, lp_warn *w, const luapool_config *cfg) {
  w->cfg = cfg;
  lp_warn_reset(w);
  lua_setwarnf(L, warn_f, w);
}

void lp_warn_reset(lp_warn *w) {
  w->on = false;
  w->cont = false;
  w->lines = 0;
  w->len = 0;
  w->buf[0] = '\0';
}
