#!/bin/sh
# The example program printed in README.md is doc/example.c, which make check compiles and
# runs: the README's copy must not drift from it.
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
echo "PASS: README.md's example is doc/example.c"
