/*
** warn.c: luapool's warn function (warn.h).
*/
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "warn.h"

static void flush(lp_warn *w) {
  if (w->cfg != NULL && w->cfg->log != NULL)
    lp_log(w->cfg, LUAPOOL_LOG_WARN, "Lua warning: %s", w->buf);
  else
    (void)fprintf(stderr, "Lua warning: %s\n", w->buf);
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
  size_t room = sizeof w->buf - 1 - w->len, n = strlen(msg);
  if (n > room)
    n = room; /* a longer warning is cut */
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
  w->len = 0;
  w->buf[0] = '\0';
}
