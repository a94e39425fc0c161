#!/bin/sh
# The example program printed in README.md is doc/example.c, which make check compiles and
# runs: the README's copy must not drift from it.  The README's context example compiles.
set -eu
src=${top_srcdir:-.}
tmp=${TMPDIR:-/tmp}/luapool-readme-example.$$
trap 'rm -f "$tmp"' EXIT
# The block between the markers, without its ```c fence lines.
sed -n '/<!-- example:begin -->/,/<!-- example:end -->/p' "$src/README.md" |
  sed '1d;$d' | sed '1d;$d' >"$tmp"
if ! diff -u "$src/doc/example.c" "$tmp"; then
  echo "README.md's example differs from doc/example.c (diff above)" >&2
  exit 1
fi
# The context example (a fragment: functions only) compiles against the public header.
ctx=$tmp.ctx.c
trap 'rm -f "$tmp" "$ctx"' EXIT
sed -n '/<!-- context-example:begin -->/,/<!-- context-example:end -->/p' "$src/README.md" |
  sed '1d;$d' | sed '1d;$d' >"$ctx"
if [ ! -s "$ctx" ]; then
  echo "README.md has no context example between its markers" >&2
  exit 1
fi
# shellcheck disable=SC2086
if ! ${CC:-cc} -fsyntax-only -std=c11 -Wall -Werror -Wno-unused-function -I"$src/include" \
  ${LUA_CFLAGS:-} "$ctx"; then
  echo "README.md's context example does not compile (above)" >&2
  exit 1
fi
echo "PASS: README.md's example is doc/example.c, and its context example compiles"
