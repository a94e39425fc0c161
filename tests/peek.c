/*
** The tests' one window into the pool's internals besides test_internal.c: what a test polls
** instead of sleeping and hoping another thread got there.  When lib/ renames these fields, this
** is the file to change.
*/
#include "internal.h"
#include "util.h"
#include "wait.h"

unsigned util_waiters(luapool *p) {
  return atomic_load_explicit(&p->wait.waiters, memory_order_seq_cst);
}

bool util_pool_closed(luapool *p) {
  return lp_pool_closed(p);
}
