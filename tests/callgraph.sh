#!/bin/sh
# The calls between lib/'s files form no cycle: from the public API (pool.c) down to the slot
# arena, the free lists and base.c, each file calls only files below it (doc/design.md, "Module
# map").  Read off the objects with nm: every lp_ and luapool_ symbol a file uses but does not
# define is an edge to the file that defines it; tsort fails on a cycle and prints it.  Prints
# the files in an order from top to bottom.  $1: the archive (default: the built core library).
set -eu
ar=${1:-${top_builddir:-.}/lib/.libs/libluapool_core.a}
if [ ! -f "$ar" ]; then
  echo "callgraph: $ar not found: build the library first" >&2
  exit 99
fi
edges=$(nm -A "$ar" | awk '
  {
    # archive:member.o: [addr] type name
    split($1, part, ":"); m = part[2]; sub(/^lib[a-z_]*_la-/, "", m); sub(/\.o$/, "", m)
    type = $(NF - 1); sym = $NF
    if (sym !~ /^(lp_|luapool_)/) next
    if (type == "U") use[m, sym] = 1
    else if (type ~ /^[TDBRVWC]$/) def[sym] = m
    mods[m] = 1
  }
  END {
    for (m in mods) print m, m
    for (k in use) {
      split(k, mk, SUBSEP)
      if (!(mk[2] in def)) { printf "callgraph: %s uses %s, defined nowhere\n", mk[1], mk[2] > "/dev/stderr"; bad = 1; continue }
      if (def[mk[2]] != mk[1]) print mk[1], def[mk[2]]
    }
    exit bad
  }')
if ! order=$(printf '%s\n' "$edges" | tsort 2>&1); then
  printf 'callgraph: the calls between lib/ files have a cycle:\n%s\n' "$order" >&2
  printf '%s\n' "$edges" | awk '$1 != $2' | sort >&2
  exit 1
fi
echo "lib/ files, each calling only files after it:" $order
